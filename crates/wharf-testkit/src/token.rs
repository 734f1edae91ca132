//! A hand-rolled Docker token server (distribution ships none): issues ES256 JWTs that
//! CNCF distribution 2.8 accepts, for the users it was started with.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::PublicKeyData as _;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::error::IoContext as _;

/// The `service` (JWT audience) the token registry is configured with.
pub const SERVICE: &str = "wharf-test-registry";
/// The JWT issuer the token registry is configured with.
pub const ISSUER: &str = "wharf-testkit";
/// Lifetime of issued access tokens, in seconds.
pub const EXPIRES_IN: u64 = 300;

/// One request the token server saw. Never holds a password or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestLog {
    /// `GET` or `POST`.
    pub method: String,
    /// The OAuth2 `grant_type` of a POST (`password`, `refresh_token`, ...); `None` for GET.
    pub grant_type: Option<String>,
    /// The authenticated (or claimed, when authentication failed) user; `None` when anonymous.
    pub user: Option<String>,
    /// Whether the request carried a `refresh_token`.
    pub had_refresh_token: bool,
    /// Whether the client asked for a refresh token (`offline_token=true` / `access_type=offline`).
    pub offline: bool,
    /// The `client_id` parameter, if any.
    pub client_id: Option<String>,
    /// Requested scopes, one per entry (space-separated values are split).
    pub scopes: Vec<String>,
    /// The HTTP status answered.
    pub status: u16,
}

/// One entry of the JWT `access` claim.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: &'a [Access],
}

/// Signing key, its self-signed certificate (the registry's `rootcertbundle`) and the
/// libtrust key id the registry resolves the JWT `kid` against.
pub(crate) struct Signer {
    key: EncodingKey,
    kid: String,
    cert_pem: String,
    secret: [u8; 32],
    counter: AtomicU64,
}

impl Signer {
    pub(crate) fn generate() -> Result<Self, Error> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wharf-testkit token signer");
        let cert = params.self_signed(&key_pair)?;
        let key = EncodingKey::from_ec_der(key_pair.serialized_der());
        let kid = libtrust_key_id(&key_pair.subject_public_key_info());
        let mut secret = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut secret))
            .ctx(|| "reading /dev/urandom".to_string())?;
        Ok(Signer {
            key,
            kid,
            cert_pem: cert.pem(),
            secret,
            counter: AtomicU64::new(0),
        })
    }

    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A fresh unguessable identifier (hex).
    fn random_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(n.to_le_bytes());
        hex::encode(&h.finalize()[..20])
    }

    pub(crate) fn sign(&self, subject: &str, access: &[Access]) -> Result<String, Error> {
        let now = unix_now();
        let claims = Claims {
            iss: ISSUER,
            sub: subject,
            aud: SERVICE,
            exp: now + EXPIRES_IN,
            nbf: now.saturating_sub(10),
            iat: now,
            jti: self.random_id(),
            access,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".to_string());
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

/// libtrust key id: base32 (no padding) of the first 30 bytes of sha256(SPKI DER),
/// in 12 groups of 4 characters joined with `:`.
pub(crate) fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let b32 = base32_nopad(&digest[..30]);
    b32.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

fn base32_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// RFC 3339 UTC timestamp for a unix time.
pub(crate) fn rfc3339(secs: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Split `type[(class)]:name:actions`; the name may itself contain `host:port`.
pub(crate) fn parse_scope(scope: &str) -> Option<(String, String, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let kind = kind.split('(').next().unwrap_or(kind);
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    let actions = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    Some((kind.to_string(), name.to_string(), actions))
}

/// Requested ∩ permitted: known users get pull and push on every repository; anonymous
/// callers (`user == None`) get nothing.
pub(crate) fn grant<S: AsRef<str>>(user: Option<&str>, scopes: &[S]) -> Vec<Access> {
    if user.is_none() {
        return Vec::new();
    }
    let mut out: Vec<Access> = Vec::new();
    for scope in scopes {
        let Some((kind, name, actions)) = parse_scope(scope.as_ref()) else {
            continue;
        };
        if kind != "repository" {
            continue;
        }
        let allowed: Vec<String> = ["pull", "push"]
            .into_iter()
            .filter(|p| actions.iter().any(|a| a == p || a == "*"))
            .map(str::to_string)
            .collect();
        if allowed.is_empty() {
            continue;
        }
        match out.iter_mut().find(|a| a.name == name) {
            Some(existing) => {
                for a in allowed {
                    if !existing.actions.contains(&a) {
                        existing.actions.push(a);
                    }
                }
            }
            None => out.push(Access {
                kind,
                name,
                actions: allowed,
            }),
        }
    }
    out
}

/// Shared state of the token server.
pub(crate) struct TokenState {
    pub(crate) signer: Signer,
    users: HashMap<String, String>,
    refresh_tokens: Mutex<HashMap<String, String>>,
    log: Mutex<Vec<TokenRequestLog>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TokenState {
    pub(crate) fn knows(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    fn check(&self, user: &str, password: &str) -> bool {
        self.users.get(user).is_some_and(|p| p == password)
    }

    pub(crate) fn log(&self) -> Vec<TokenRequestLog> {
        lock(&self.log).clone()
    }

    fn new_refresh_token(&self, user: &str) -> String {
        let token = format!("wharf-refresh-{}", self.signer.random_id());
        lock(&self.refresh_tokens).insert(token.clone(), user.to_string());
        token
    }
}

/// The token server: a tiny_http server on 127.0.0.1 served by one thread.
pub(crate) struct TokenServer {
    pub(crate) state: Arc<TokenState>,
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    pub(crate) fn start(users: &[(&str, &str)]) -> Result<Self, Error> {
        let state = Arc::new(TokenState {
            signer: Signer::generate()?,
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_string(), (*p).to_string()))
                .collect(),
            refresh_tokens: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        });
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| Error::Invalid(format!("starting the token server: {e}")))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::Invalid("token server has no IP address".to_string()))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (server, state, stop) = (server.clone(), state.clone(), stop.clone());
            std::thread::Builder::new()
                .name("wharf-token-server".to_string())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        if let Ok(request) = server.recv() {
                            handle(&state, request);
                        }
                    }
                })
                .ctx(|| "spawning the token server thread".to_string())?
        };
        Ok(TokenServer {
            state,
            addr,
            server,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Outcome {
    status: u16,
    body: serde_json::Value,
    challenge: bool,
}

impl Outcome {
    fn error(status: u16, code: &str, message: &str) -> Self {
        Outcome {
            status,
            body: json!({ "error": code, "error_description": message,
                          "errors": [{ "code": code, "message": message }] }),
            challenge: status == 401,
        }
    }
}

fn handle(state: &TokenState, mut request: tiny_http::Request) {
    let method = request.method().as_str().to_string();
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let basic = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Authorization"))
        .and_then(|h| parse_basic(h.value.as_str()));

    let mut entry = TokenRequestLog {
        method: method.clone(),
        grant_type: None,
        user: None,
        had_refresh_token: false,
        offline: false,
        client_id: None,
        scopes: Vec::new(),
        status: 0,
    };

    let outcome = if path != "/token" {
        Outcome::error(404, "NOT_FOUND", "only /token is served")
    } else if method == "GET" {
        handle_get(state, &params, basic, &mut entry)
    } else if method == "POST" {
        let mut body = String::new();
        match request.as_reader().read_to_string(&mut body) {
            Ok(_) => {
                params.extend(url::form_urlencoded::parse(body.as_bytes()).into_owned());
                handle_post(state, &params, &mut entry)
            }
            Err(_) => Outcome::error(400, "invalid_request", "unreadable body"),
        }
    } else {
        Outcome::error(405, "UNSUPPORTED", "use GET or POST")
    };

    entry.status = outcome.status;
    lock(&state.log).push(entry);

    let mut response =
        tiny_http::Response::from_string(outcome.body.to_string()).with_status_code(outcome.status);
    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", "application/json") {
        response.add_header(h);
    }
    if outcome.challenge {
        if let Ok(h) =
            tiny_http::Header::from_bytes("WWW-Authenticate", "Basic realm=\"wharf-testkit\"")
        {
            response.add_header(h);
        }
    }
    let _ = request.respond(response);
}

fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn scopes_of(params: &[(String, String)]) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_string))
        .collect()
}

fn handle_get(
    state: &TokenState,
    params: &[(String, String)],
    basic: Option<(String, String)>,
    entry: &mut TokenRequestLog,
) -> Outcome {
    entry.scopes = scopes_of(params);
    entry.offline = param(params, "offline_token") == Some("true");
    entry.client_id = param(params, "client_id").map(str::to_string);
    entry.had_refresh_token = param(params, "refresh_token").is_some();
    if param(params, "service").is_some_and(|s| s != SERVICE) {
        return Outcome::error(400, "invalid_request", "unknown service");
    }
    let user = match basic {
        Some((user, password)) => {
            entry.user = Some(user.clone());
            if !state.check(&user, &password) {
                return Outcome::error(401, "UNAUTHORIZED", "invalid username or password");
            }
            Some(user)
        }
        None => None,
    };
    let refresh = match (&user, entry.offline) {
        (Some(u), true) => Some(state.new_refresh_token(u)),
        _ => None,
    };
    issue(state, user.as_deref(), &entry.scopes, refresh)
}

fn handle_post(
    state: &TokenState,
    params: &[(String, String)],
    entry: &mut TokenRequestLog,
) -> Outcome {
    entry.scopes = scopes_of(params);
    entry.client_id = param(params, "client_id").map(str::to_string);
    entry.grant_type = param(params, "grant_type").map(str::to_string);
    entry.had_refresh_token = param(params, "refresh_token").is_some();
    entry.offline = param(params, "access_type") == Some("offline");
    if param(params, "service").is_some_and(|s| s != SERVICE) {
        return Outcome::error(400, "invalid_request", "unknown service");
    }
    match entry.grant_type.as_deref() {
        Some("password") => {
            let user = param(params, "username").unwrap_or_default().to_string();
            let password = param(params, "password").unwrap_or_default();
            entry.user = Some(user.clone());
            if !state.check(&user, password) {
                return Outcome::error(401, "invalid_grant", "invalid username or password");
            }
            let refresh = entry.offline.then(|| state.new_refresh_token(&user));
            issue(state, Some(&user), &entry.scopes, refresh)
        }
        Some("refresh_token") => {
            let token = param(params, "refresh_token").unwrap_or_default();
            let user = lock(&state.refresh_tokens).get(token).cloned();
            match user {
                Some(user) => {
                    entry.user = Some(user.clone());
                    issue(state, Some(&user), &entry.scopes, None)
                }
                None => Outcome::error(401, "invalid_grant", "unknown refresh token"),
            }
        }
        _ => Outcome::error(
            400,
            "unsupported_grant_type",
            "use password or refresh_token",
        ),
    }
}

fn issue(
    state: &TokenState,
    user: Option<&str>,
    scopes: &[String],
    refresh: Option<String>,
) -> Outcome {
    let access = grant(user, scopes);
    let token = match state.signer.sign(user.unwrap_or_default(), &access) {
        Ok(t) => t,
        Err(e) => return Outcome::error(500, "server_error", &e.to_string()),
    };
    let granted: Vec<String> = access
        .iter()
        .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
        .collect();
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": EXPIRES_IN,
        "issued_at": rfc3339(unix_now()),
        "scope": granted.join(" "),
    });
    if let (Some(r), Some(obj)) = (refresh, body.as_object_mut()) {
        obj.insert("refresh_token".to_string(), json!(r));
    }
    Outcome {
        status: 200,
        body,
        challenge: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_may_hold_ports() {
        assert_eq!(
            parse_scope("repository:127.0.0.1:5000/x/y:pull,push"),
            Some((
                "repository".into(),
                "127.0.0.1:5000/x/y".into(),
                vec!["pull".into(), "push".into()]
            ))
        );
        assert_eq!(
            parse_scope("repository(plugin):a/b:pull"),
            Some(("repository".into(), "a/b".into(), vec!["pull".into()]))
        );
        assert_eq!(parse_scope("nonsense"), None);
    }

    #[test]
    fn grant_is_requested_intersect_pull_push() {
        let g = grant(
            Some("alice"),
            &[
                "repository:a:pull,push,delete",
                "registry:catalog:*",
                "repository:a:pull",
                "repository:b:*",
            ],
        );
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].actions, vec!["pull", "push"]);
        assert_eq!(g[1].name, "b");
        assert!(grant(None, &["repository:a:pull"]).is_empty());
    }

    #[test]
    fn key_id_has_libtrust_shape() {
        let kid = libtrust_key_id(b"anything");
        let groups: Vec<&str> = kid.split(':').collect();
        assert_eq!(groups.len(), 12);
        assert!(groups.iter().all(|g| g.len() == 4));
        assert_eq!(base32_nopad(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
