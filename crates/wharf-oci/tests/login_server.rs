//! `login()` against a tiny in-process HTTP registry (std::net only), then `store_login()` and
//! `resolve()` reading back what was stored.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use wharf_oci::{
    AuthScheme, CredentialSources, ImageRef, LoginError, LoginRequest, Secret, login, resolve,
    store_login,
};

const PASSWORD: &str = "hunter2-pw";

#[derive(Debug, Clone)]
struct Request {
    target: String,
    headers: HashMap<String, String>,
}

struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn respond(status: u16) -> Response {
    Response {
        status,
        headers: Vec::new(),
        body: String::new(),
    }
}

type Handler = dyn Fn(&Request, SocketAddr) -> Response + Send + Sync;

/// Serve `handler` on 127.0.0.1; returns the address and the log of requests.
fn serve(handler: Box<Handler>) -> (SocketAddr, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            handle(stream, &*handler, addr, &log2);
        }
    });
    (addr, log)
}

fn handle(stream: TcpStream, handler: &Handler, addr: SocketAddr, log: &Mutex<Vec<Request>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream);
    let mut first = [0u8; 1];
    // The client tries TLS first; a TLS handshake starts with 0x16. Hang up, as a plain-http
    // server effectively does, so it falls back to http.
    if reader.read_exact(&mut first).is_err() || first[0] == 0x16 {
        return;
    }
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let request_line = format!("{}{}", first[0] as char, line.trim_end());
    let target = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let request = Request { target, headers };
    log.lock().expect("lock").push(request.clone());
    let response = handler(&request, addr);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (name, value) in response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&response.body);
    let mut stream = reader.into_inner();
    let _ = stream.write_all(out.as_bytes());
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn request(addr: SocketAddr, password: &str) -> LoginRequest {
    LoginRequest {
        registry: addr.to_string(),
        username: "alice".into(),
        password: Secret(password.into()),
        insecure: false,
    }
}

fn basic_registry() -> Box<Handler> {
    Box::new(|req, _| {
        if req.headers.get("authorization") == Some(&basic("alice", PASSWORD)) {
            respond(200)
        } else {
            let mut r = respond(401);
            r.headers
                .push(("WWW-Authenticate", r#"Basic realm="test, registry""#.into()));
            r
        }
    })
}

fn token_registry() -> Box<Handler> {
    Box::new(|req, addr| {
        if req.target == "/v2/" {
            let mut r = respond(401);
            r.headers.push((
                "WWW-Authenticate",
                format!(r#"Bearer realm="http://{addr}/token",service="test registry""#),
            ));
            return r;
        }
        if req.target.starts_with("/token?") {
            if req.headers.get("authorization") == Some(&basic("alice", PASSWORD)) {
                let mut r = respond(200);
                r.body = r#"{"token": "access-tok", "refresh_token": "refresh-tok"}"#.into();
                return r;
            }
            let mut r = respond(401);
            r.body = r#"{"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]}"#
                .into();
            return r;
        }
        respond(404)
    })
}

#[tokio::test]
async fn basic_auth_registry() {
    let (addr, log) = serve(basic_registry());
    let outcome = login(&request(addr, PASSWORD)).await.expect("login");
    assert_eq!(outcome.key, addr.to_string());
    assert_eq!(outcome.scheme, AuthScheme::Basic);
    assert!(outcome.identity_token.is_none());
    // Challenge first, then the same endpoint with credentials.
    let log = log.lock().expect("lock").clone();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|r| r.target == "/v2/"));

    let err = login(&request(addr, "wrong-pw"))
        .await
        .expect_err("rejected");
    assert!(matches!(err, LoginError::Unauthorized { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(!text.contains("wrong-pw"), "{text}");
}

#[tokio::test]
async fn token_registry_stores_identity_token_and_resolves_back() {
    let (addr, log) = serve(token_registry());
    let outcome = login(&request(addr, PASSWORD)).await.expect("login");
    assert_eq!(outcome.scheme, AuthScheme::Bearer);
    assert_eq!(
        outcome.identity_token.as_ref().map(|t| t.0.as_str()),
        Some("refresh-tok")
    );
    let token_request = log
        .lock()
        .expect("lock")
        .iter()
        .find(|r| r.target.starts_with("/token?"))
        .cloned()
        .expect("token request");
    for part in [
        "service=test+registry",
        "offline_token=true",
        "client_id=wharf",
    ] {
        assert!(
            token_request.target.contains(part),
            "{}",
            token_request.target
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_login(dir.path(), &outcome).expect("store");
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(
        !text.contains(PASSWORD),
        "the refresh token is stored instead"
    );
    let sources = CredentialSources {
        docker_config_dir: Some(dir.path().to_owned()),
        ..CredentialSources::default()
    };
    let image = ImageRef::parse(&format!("{addr}/team/app")).expect("image");
    let found = resolve(&image, &sources).found.expect("found");
    assert_eq!(found.auth.username.as_deref(), Some("alice"));
    assert_eq!(found.auth.identity_token.as_deref(), Some("refresh-tok"));

    let err = login(&request(addr, "wrong-pw"))
        .await
        .expect_err("rejected");
    let text = err.to_string();
    assert!(matches!(err, LoginError::Unauthorized { .. }), "{text}");
    assert!(text.contains("invalid credentials"), "{text}");
    assert!(!text.contains("wrong-pw"), "{text}");
}

#[tokio::test]
async fn open_registry_and_non_registry() {
    let (addr, _) = serve(Box::new(|_, _| respond(200)));
    let outcome = login(&request(addr, PASSWORD))
        .await
        .expect("no auth needed");
    assert_eq!(outcome.scheme, AuthScheme::Basic);

    let (addr, _) = serve(Box::new(|_, _| respond(404)));
    let err = login(&request(addr, PASSWORD)).await.expect_err("404");
    assert!(
        matches!(err, LoginError::NotARegistry { status: 404, .. }),
        "{err:?}"
    );

    let (addr, _) = serve(Box::new(|_, _| respond(401)));
    let err = login(&request(addr, PASSWORD))
        .await
        .expect_err("no challenge");
    assert!(
        err.to_string().contains("without a WWW-Authenticate"),
        "{err}"
    );
}

#[tokio::test]
async fn unreachable_registry_names_the_url() {
    // Bind then drop: nothing listens on this port any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let err = login(&request(addr, PASSWORD)).await.expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, LoginError::Connect { .. }), "{text}");
    assert!(text.contains(&format!("https://{addr}/v2/")), "{text}");
    assert!(!text.contains(PASSWORD));
}
