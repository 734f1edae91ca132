//! The registry under hostile clients, over real loopback sockets: silent and slow sockets,
//! idle keep-alive connections, floods of upload sessions and wrong passwords, passwords past
//! bcrypt's 72 bytes, and keep-alive clients after an early 401 (Python's `http.client`, a
//! client nobody here wrote). Every wait is bounded (no test waits longer than ~30 s). Each runs
//! on the filesystem and (an ignored tier, on a real Ceph RGW) on S3.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use wharf_registry::app_state;
use wharf_registry::auth::htpasswd::hash_password;
use wharf_registry::auth::{AuthConfig, ServerFacts, build};
use wharf_registry::limits::LimitsConfig;

mod common;

/// A guard against a hung server, not a timing assertion.
const GUARD: Duration = Duration::from_secs(30);

const ALICE_PW: &str = "alice-pw";
/// Exactly bcrypt's 72 bytes.
const LONG_PW: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef01234567";

struct Server {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A registry with users `alice`, `bob` and `long` (72-byte password) in `mode` (basic or
/// token), serving on 127.0.0.1 with `limits`.
async fn server(mode: &str, limits: LimitsConfig) -> Server {
    server_with(mode, limits, Vec::new()).await
}

/// [`server`], believing `X-Forwarded-For` from `trusted_proxies`.
async fn server_with(
    mode: &str,
    limits: LimitsConfig,
    trusted_proxies: Vec<ipnet::IpNet>,
) -> Server {
    server_configured(mode, |config| {
        config.limits = limits;
        config.trusted_proxies = trusted_proxies;
    })
    .await
}

/// [`server`], with `tweak` applied to its config.
async fn server_configured(mode: &str, tweak: impl FnOnce(&mut wharf_registry::Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let users = [("alice", ALICE_PW), ("bob", "bob-pw"), ("long", LONG_PW)];
    let lines: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", hash_password(p, 4).unwrap()))
        .collect();
    std::fs::write(dir.path().join("htpasswd"), lines).unwrap();
    let table: toml::Table =
        toml::from_str(&format!("mode = \"{mode}\"\nhtpasswd = \"htpasswd\"\n")).unwrap();
    let auth = AuthConfig::from_table(&table, dir.path()).unwrap();
    let root = dir.path().join("root");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let setup = build(
        &auth,
        &ServerFacts {
            root: root.clone(),
            tls: false,
            default_host: addr.to_string(),
        },
    )
    .unwrap();
    // The filesystem, or a fresh bucket when the test runs on S3 (see `common`).
    let mut config = common::config(&root);
    tweak(&mut config);
    let state = app_state(&config, setup.authorizer).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wharf_registry::serve_on(
        listener,
        config,
        state,
        setup.routes.unwrap_or_default(),
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        addr,
        _dir: dir,
        _stop: stop,
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Connects from `from` (any 127.0.0.0/8 address: distinct client addresses on loopback).
async fn connect_from(addr: SocketAddr, from: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Sends `head` (whole, with `Connection: close` and the blank line) and `body` on a connection
/// of its own from `from`; the whole answer as text.
async fn exchange_from(addr: SocketAddr, from: Ipv4Addr, head: &str, body: &[u8]) -> String {
    let exchange = async {
        let mut conn = connect_from(addr, from).await;
        conn.write_all(head.as_bytes()).await.unwrap();
        conn.write_all(body).await.unwrap();
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(GUARD, exchange)
        .await
        .expect("the server answers");
    String::from_utf8_lossy(&raw).into_owned()
}

/// One request on its own connection (`Connection: close`); returns status and body.
async fn request_from(
    addr: SocketAddr,
    from: Ipv4Addr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let text = exchange_from(addr, from, &head, body).await;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    request_from(addr, Ipv4Addr::LOCALHOST, method, path, &headers, body).await
}

/// Waits until the server closes `conn` (EOF or reset); panics if it stays open past `GUARD`.
async fn assert_closed_by_server(conn: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(GUARD, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "{what}: the server kept the connection open"
    );
}

/// The test process holds both ends of every socket: give it room for the floods (the
/// registry's own cap is set explicitly in those tests).
fn raise_fd_limit_to(n: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let want = limit.maximum.map_or(n, |max| max.min(n));
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(want),
            maximum: limit.maximum,
        },
    );
}

fn quick_timeouts() -> LimitsConfig {
    LimitsConfig {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..LimitsConfig::default()
    }
}

async fn a_request_head_that_never_ends_is_cut_at_the_header_timeout() {
    let s = server("basic", quick_timeouts()).await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert_closed_by_server(&mut conn, "a silent half-sent head").await;
    // A socket that sends nothing at all is closed too (by the idle timeout).
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    assert_closed_by_server(&mut silent, "a silent socket").await;
}

async fn a_head_dripped_a_byte_at_a_time_is_cut_at_the_header_timeout() {
    let s = server("basic", quick_timeouts()).await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let drip = async {
        for byte in b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().cycle() {
            if conn.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let cut = tokio::time::timeout(GUARD, drip).await;
    assert!(cut.is_ok(), "a head sent a byte every 200 ms was never cut");
}

async fn a_request_body_that_stalls_ends_at_the_idle_timeout() {
    let s = server("basic", quick_timeouts()).await;
    let alice = basic("alice", ALICE_PW);
    let (status, body) = request(
        s.addr,
        "POST",
        "/v2/team/a/blobs/uploads/",
        Some(&alice),
        b"",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    // Promise 1,000 bytes, send 10, then nothing.
    conn.write_all(
        format!(
            "POST /v2/team/a/blobs/uploads/?digest=sha256:{} HTTP/1.1\r\nHost: x\r\nAuthorization: {alice}\r\nContent-Length: 1000\r\n\r\n0123456789",
            "0".repeat(64)
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    let answered = tokio::time::timeout(GUARD, conn.read_to_end(&mut raw)).await;
    assert!(
        answered.is_ok(),
        "a stalled upload body held its connection"
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
}

/// One request on its own connection with a raw head (`Connection: close` added) and body; the
/// whole answer as text.
async fn raw_exchange(addr: SocketAddr, head: &str, body: &[u8]) -> String {
    let head = format!("{head}Connection: close\r\n\r\n");
    exchange_from(addr, Ipv4Addr::LOCALHOST, &head, body).await
}

fn header_of<'a>(answer: &'a str, name: &str) -> &'a str {
    answer
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {answer:?}"))
}

/// A body large enough to be read paced (`body_pacing`: its end is megabytes away, so reads wait
/// for 1 MiB at a time) that stops mid-way: the paced wait must not hide the silence from the
/// idle timeout. The connection is closed, the session holds every byte sent, and the client
/// resumes from there: the blob then completes with the right digest.
async fn a_large_paced_chunk_that_stalls_mid_way_ends_at_the_idle_timeout_and_resumes() {
    const MIB: usize = 1024 * 1024;
    let s = server("basic", quick_timeouts()).await;
    let alice = basic("alice", ALICE_PW);
    let blob: Vec<u8> = (0..8 * MIB).map(|i| (i % 253) as u8).collect();
    let digest = common::digest_of(&blob);
    let answer = raw_exchange(
        s.addr,
        &format!(
            "POST /v2/team/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nAuthorization: {alice}\r\nContent-Length: 0\r\n"
        ),
        b"",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let location = header_of(&answer, "location").to_string();
    let patch = |from: usize, length: usize| {
        format!(
            "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: {alice}\r\n\
             Content-Type: application/octet-stream\r\nContent-Range: {from}-{}\r\n\
             Content-Length: {length}\r\n",
            from + length - 1
        )
    };
    let answer = raw_exchange(s.addr, &patch(0, MIB), &blob[..MIB]).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    // Promise the other 7 MiB, send 3 MiB, then nothing.
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(format!("{}\r\n", patch(MIB, 7 * MIB)).as_bytes())
        .await
        .unwrap();
    conn.write_all(&blob[MIB..4 * MIB]).await.unwrap();
    let mut raw = Vec::new();
    let closed = tokio::time::timeout(GUARD, conn.read_to_end(&mut raw)).await;
    assert!(closed.is_ok(), "a stalled paced body held its connection");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );

    // The session says how much it holds; resuming from there completes the blob.
    let status = raw_exchange(
        s.addr,
        &format!("GET {location} HTTP/1.1\r\nHost: x\r\nAuthorization: {alice}\r\n"),
        b"",
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 204"), "{status}");
    let held: usize = header_of(&status, "range")
        .strip_prefix("0-")
        .and_then(|end| end.parse::<usize>().ok())
        .map(|end| end + 1)
        .unwrap_or_else(|| panic!("no range in {status}"));
    // Every byte that reached the registry before the stall is kept: the paced read's last
    // bytes (below its 1 MiB mark) were read once its wait ran out.
    assert_eq!(held, 4 * MIB, "the session holds what was sent");
    let answer = raw_exchange(s.addr, &patch(held, blob.len() - held), &blob[held..]).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let separator = if location.contains('?') { '&' } else { '?' };
    let answer = raw_exchange(
        s.addr,
        &format!(
            "PUT {location}{separator}digest={digest} HTTP/1.1\r\nHost: x\r\nAuthorization: {alice}\r\nContent-Length: 0\r\n"
        ),
        b"",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

async fn idle_keep_alive_connections_are_closed_but_not_before_the_idle_timeout() {
    let s = server(
        "basic",
        LimitsConfig {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(4),
            ..LimitsConfig::default()
        },
    )
    .await;
    let auth = basic("alice", ALICE_PW);
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let ping = format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n");
    let mut buf = vec![0u8; 4096];
    for round in 0..2 {
        conn.write_all(ping.as_bytes()).await.unwrap();
        let n = tokio::time::timeout(GUARD, conn.read(&mut buf))
            .await
            .expect("answer")
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(head.starts_with("HTTP/1.1 200"), "round {round}: {head}");
        // Longer than the header timeout: an idle keep-alive connection is not a slow head.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_closed_by_server(&mut conn, "an idle keep-alive connection").await;
}

async fn a_flood_of_silent_sockets_does_not_lock_legitimate_clients_out() {
    // Without a cap, 1,100 accepted sockets plus the test's own 1,100 ends run the process out
    // of its 2,048 descriptors and nothing is served any more.
    raise_fd_limit_to(2048);
    let s = server(
        "basic",
        LimitsConfig {
            max_connections: 300,
            ..LimitsConfig::default()
        },
    )
    .await;
    let mut flood = Vec::new();
    for _ in 0..1100 {
        let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(s.addr)).await
        else {
            continue;
        };
        let _ = conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").await;
        flood.push(conn);
    }
    assert!(flood.len() >= 1000, "opened only {} sockets", flood.len());
    let auth = basic("alice", ALICE_PW);
    for i in 0..20 {
        let (status, body) = request(s.addr, "GET", "/v2/", Some(&auth), b"").await;
        assert_eq!(
            status, 200,
            "legitimate request {i} during the flood: {body}"
        );
    }
    drop(flood);
}

/// Regression: a client that requested `max_connections` blobs and read none of them held
/// every connection for good (each busy sending an answer), and the registry refused everyone
/// else. An answer the client stops reading for the idle timeout now closes its connection,
/// as nginx's `send_timeout` does.
async fn a_client_that_stops_reading_its_downloads_does_not_lock_others_out() {
    let s = server_for_stalled_downloads().await;
    let auth = basic("alice", ALICE_PW);
    let blob = pushed_blob(&s, &auth).await;
    let digest = wharf_registry::names::Digest::of(&blob).to_string();

    let mut stalled = Vec::new();
    for _ in 0..4 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut conn = socket.connect(s.addr).await.unwrap();
        let head = format!(
            "GET /v2/team/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut start = [0u8; 64];
        let n = conn.read(&mut start).await.unwrap();
        assert!(
            start[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&start[..n])
        );
        stalled.push(conn);
    }
    // Past the idle timeout (1 s) and the reaper's next round, with room for a loaded machine.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    for i in 0..3 {
        let (status, body) = request(s.addr, "GET", "/v2/", Some(&auth), b"").await;
        assert_eq!(status, 200, "another client, request {i}: {body}");
    }
    // Each stalled answer was cut: what the kernel had buffered, then the end.
    for mut conn in stalled {
        let mut received = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let read_all = tokio::time::timeout(GUARD, async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received += n,
                }
            }
        });
        read_all
            .await
            .expect("the server closed the stalled connection");
        assert!(
            received < blob.len(),
            "the whole blob came after all ({received} bytes)"
        );
    }
}

/// A server for the stalled-download tests: 4 connections at most, an idle timeout of 1 s, and
/// blobs streamed through the registry on S3 too (not redirected).
async fn server_for_stalled_downloads() -> Server {
    server_configured("basic", |config| {
        config.limits = LimitsConfig {
            max_connections: 4,
            idle_timeout: Duration::from_secs(1),
            ..LimitsConfig::default()
        };
        config.storage.redirect = false;
    })
    .await
}

/// Pushes a 16 MiB blob to `team/app`; returns its bytes.
async fn pushed_blob(s: &Server, auth: &str) -> Vec<u8> {
    let blob: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    let digest = wharf_registry::names::Digest::of(&blob);
    let (status, body) = request(
        s.addr,
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={digest}"),
        Some(auth),
        &blob,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    blob
}

/// [`a_client_that_stops_reading_its_downloads_does_not_lock_others_out`] over HTTP/2, where
/// the stall is a stream's flow-control window, not the socket (Node's `node:http2`).
async fn http2_downloads_a_client_stops_reading_do_not_lock_others_out() {
    installed("node", "nodejs");
    let s = server_for_stalled_downloads().await;
    let auth = basic("alice", ALICE_PW);
    let blob = pushed_blob(&s, &auth).await;
    let digest = wharf_registry::names::Digest::of(&blob).to_string();
    let run = tokio::process::Command::new("node")
        .arg(client("h2_stalled_downloads.mjs"))
        .args([
            &s.addr.to_string(),
            "alice",
            ALICE_PW,
            "team/app",
            &digest,
            "4",
            "4000",
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(GUARD, run)
        .await
        .expect("the node client finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn upload_sessions_are_capped_per_subject_and_per_repository() {
    let s = server(
        "basic",
        LimitsConfig {
            upload_sessions_per_subject: 5,
            upload_sessions_per_repository: 8,
            ..LimitsConfig::default()
        },
    )
    .await;
    let alice = basic("alice", ALICE_PW);
    let bob = basic("bob", "bob-pw");
    let start = |auth: String, repo: &'static str| {
        let addr = s.addr;
        async move {
            let (status, body) = request(
                addr,
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                Some(&auth),
                b"",
            )
            .await;
            (status, body)
        }
    };
    for _ in 0..5 {
        assert_eq!(start(alice.clone(), "team/a").await.0, 202);
    }
    let (status, body) = start(alice.clone(), "team/b").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("TOOMANYREQUESTS"), "{body}");
    assert!(
        body.contains("user alice") && body.contains("upload_sessions_per_subject"),
        "{body}"
    );
    for _ in 0..3 {
        assert_eq!(start(bob.clone(), "team/a").await.0, 202);
    }
    let (status, body) = start(bob.clone(), "team/a").await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("upload_sessions_per_repository"), "{body}");
    // Another repository is still open to bob.
    assert_eq!(start(bob.clone(), "team/b").await.0, 202);
}

async fn finished_and_cancelled_sessions_make_room_again() {
    let s = server(
        "basic",
        LimitsConfig {
            upload_sessions_per_subject: 1,
            ..LimitsConfig::default()
        },
    )
    .await;
    let alice = basic("alice", ALICE_PW);
    for round in 0..3 {
        let exchange = async {
            let mut conn = TcpStream::connect(s.addr).await.unwrap();
            conn.write_all(
                format!(
                    "POST /v2/team/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nAuthorization: {alice}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let mut raw = String::new();
            conn.read_to_string(&mut raw).await.unwrap();
            raw
        };
        let raw = tokio::time::timeout(GUARD, exchange).await.unwrap();
        assert!(raw.starts_with("HTTP/1.1 202"), "round {round}: {raw}");
        let location = raw
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap()
            .trim()
            .to_string();
        let (status, body) = request(s.addr, "DELETE", &location, Some(&alice), b"").await;
        assert_eq!(status, 204, "{body}");
    }
}

async fn passwords_past_72_bytes_never_log_in_on_any_path() {
    for mode in ["basic", "token"] {
        let s = server(mode, LimitsConfig::default()).await;
        let good = basic("long", LONG_PW);
        let padded = basic("long", &format!("{LONG_PW}anything"));
        assert_eq!(
            request(s.addr, "GET", "/v2/", Some(&good), b"").await.0,
            200
        );
        assert_eq!(
            request(s.addr, "GET", "/v2/", Some(&padded), b"").await.0,
            401,
            "{mode}: Basic on /v2/"
        );
        if mode == "token" {
            let path = "/token?service=wharf-registry&scope=repository:team/a:pull";
            assert_eq!(request(s.addr, "GET", path, Some(&good), b"").await.0, 200);
            assert_eq!(
                request(s.addr, "GET", path, Some(&padded), b"").await.0,
                401,
                "token GET"
            );
            for (password, want) in [(LONG_PW.to_string(), 200), (format!("{LONG_PW}x"), 401)] {
                let form = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([
                        ("grant_type", "password"),
                        ("service", "wharf-registry"),
                        ("username", "long"),
                        ("password", password.as_str()),
                    ])
                    .finish();
                let (status, body) = request_from(
                    s.addr,
                    Ipv4Addr::LOCALHOST,
                    "POST",
                    "/token",
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    form.as_bytes(),
                )
                .await;
                assert_eq!(status, want, "token POST password grant: {body}");
            }
        }
    }
}

async fn a_wrong_password_flood_is_throttled_without_locking_the_user_out() {
    let s = server(
        "token",
        LimitsConfig {
            login_failures_per_address: 20,
            login_failures_before_backoff: 5,
            ..LimitsConfig::default()
        },
    )
    .await;
    // Right passwords spend nothing: a busy CI host with many parallel requests is never
    // throttled.
    let busy_host = Ipv4Addr::new(127, 0, 0, 9);
    let good = basic("bob", "bob-pw");
    let good = [("Authorization", good.as_str())];
    let parallel = (0..60).map(|_| request_from(s.addr, busy_host, "GET", "/v2/", &good, b""));
    for (status, body) in futures_util::future::join_all(parallel).await {
        assert_eq!(status, 200, "{body}");
    }
    // A client resending one wrong password (containerd tries each request five times, several
    // at once) is told 401 every time, and spends one failure, not sixty: new guesses from
    // that address are still checked.
    let typo_host = Ipv4Addr::new(127, 0, 0, 7);
    let typo = basic("bob", "bob-pq");
    let typo = [("Authorization", typo.as_str())];
    for _ in 0..2 {
        let resent = (0..30).map(|_| request_from(s.addr, typo_host, "GET", "/v2/", &typo, b""));
        for (status, body) in futures_util::future::join_all(resent).await {
            assert_eq!(
                status, 401,
                "a resent wrong password is refused, not throttled: {body}"
            );
        }
    }
    for guess in ["bob-pw1", "bob-pw2", "bob-pw3"] {
        let other = basic("bob", guess);
        let (status, body) = request_from(
            s.addr,
            typo_host,
            "GET",
            "/v2/",
            &[("Authorization", &other)],
            b"",
        )
        .await;
        assert_eq!(status, 401, "a new guess is checked: {body}");
    }

    let attacker = Ipv4Addr::new(127, 0, 0, 66);
    // 30 parallel connections, each with another guess, three times over.
    let mut throttled = 0;
    for wave in 0..3 {
        let guesses: Vec<[(&str, String); 1]> = (0..30)
            .map(|n| {
                [(
                    "Authorization",
                    basic("alice", &format!("guess-{wave}-{n}")),
                )]
            })
            .collect();
        let headers: Vec<[(&str, &str); 1]> = guesses
            .iter()
            .map(|[(name, value)]| [(*name, value.as_str())])
            .collect();
        let attempts = headers
            .iter()
            .map(|auth| request_from(s.addr, attacker, "GET", "/v2/", auth, b""));
        for (status, body) in futures_util::future::join_all(attempts).await {
            match status {
                401 => {}
                429 => {
                    assert!(body.contains("TOOMANYREQUESTS"), "{body}");
                    throttled += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }
    assert!(
        throttled >= 60,
        "only {throttled} of 90 wrong attempts were throttled"
    );
    // The token service's password grant from the same address is throttled too.
    let form = "grant_type=password&service=wharf-registry&username=alice&password=guess";
    let (status, _) = request_from(
        s.addr,
        attacker,
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .await;
    assert_eq!(status, 429);
    // Meanwhile alice, from her own address, logs in at once, on every path.
    let alice_host = Ipv4Addr::new(127, 0, 0, 5);
    let good = basic("alice", ALICE_PW);
    let good = [("Authorization", good.as_str())];
    assert_eq!(
        request_from(s.addr, alice_host, "GET", "/v2/", &good, b"")
            .await
            .0,
        200
    );
    let path = "/token?service=wharf-registry&scope=repository:team/a:pull";
    assert_eq!(
        request_from(s.addr, alice_host, "GET", path, &good, b"")
            .await
            .0,
        200
    );
    // A few typos of her own do not lock her out either.
    let typo = basic("alice", "alice-pq");
    for _ in 0..3 {
        let (status, _) = request_from(
            s.addr,
            alice_host,
            "GET",
            "/v2/",
            &[("Authorization", &typo)],
            b"",
        )
        .await;
        assert_eq!(status, 401);
    }
    assert_eq!(
        request_from(s.addr, alice_host, "GET", "/v2/", &good, b"")
            .await
            .0,
        200
    );
}

/// Behind a load balancer every connection comes from the balancer. Trusting it
/// (`trusted_proxies`), the limits count the client its `X-Forwarded-For` names: a guesser out
/// of failed logins does not put alice out, and a header sent by anyone else (here straight from
/// 127.0.0.66, forging alice's address) is ignored. Without trusting it, the same flood put
/// alice out: that is what the setting is for.
async fn behind_a_trusted_balancer_each_client_is_counted_apart() {
    let limits = || LimitsConfig {
        login_failures_per_address: 10,
        login_failures_before_backoff: 5,
        ..LimitsConfig::default()
    };
    let balancer = Ipv4Addr::LOCALHOST;
    // What haproxy's `option forwardfor` sends: the client's address, appended.
    let through = |client: &'static str, auth: String| {
        [
            ("X-Forwarded-For", client.to_string()),
            ("Authorization", auth),
        ]
    };
    let status_of = |s: SocketAddr, from: Ipv4Addr, headers: [(&'static str, String); 2]| async move {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request_from(s, from, "GET", "/v2/", &headers, b"").await.0
    };
    // 15 guesses of alice's password from `from`, claiming to be `claimed`: their statuses.
    let guesses_from = |s: SocketAddr, from: Ipv4Addr, claimed: &'static str| async move {
        let mut statuses = Vec::new();
        for i in 0..15 {
            let guess = basic("alice", &format!("guess-{i}"));
            statuses.push(status_of(s, from, through(claimed, guess)).await);
        }
        statuses
    };
    let alice_logs_in = |s: SocketAddr| {
        status_of(
            s,
            balancer,
            through("198.51.100.5", basic("alice", ALICE_PW)),
        )
    };

    for trusted in [true, false] {
        let nets = if trusted {
            vec!["127.0.0.1/32".parse().unwrap()]
        } else {
            Vec::new()
        };
        let s = server_with("basic", limits(), nets).await;
        let refused = guesses_from(s.addr, balancer, "198.51.100.66").await;
        assert!(
            refused.contains(&429),
            "the guesser runs out of attempts: {refused:?}"
        );
        let alice = alice_logs_in(s.addr).await;
        if trusted {
            assert_eq!(alice, 200, "alice, another client of the balancer, logs in");
        } else {
            assert_eq!(
                alice, 429,
                "without trusting the balancer, everyone behind it shares one budget"
            );
            continue;
        }
        // Straight to the replica, forging alice's address: counted under the real peer.
        let forged = guesses_from(s.addr, Ipv4Addr::new(127, 0, 0, 66), "198.51.100.5").await;
        assert!(
            forged.contains(&429),
            "the forger's own address runs out of attempts: {forged:?}"
        );
        let alice = alice_logs_in(s.addr).await;
        assert_eq!(
            alice, 200,
            "a forged X-Forwarded-For spent nothing of alice's"
        );
    }
}

/// A balancer in TCP mode sends a PROXY protocol header first (`proxy_protocol = true`): the
/// client it names is counted, as with `X-Forwarded-For`. A trusted peer without the header is
/// closed unanswered; an untrusted peer's "header" is read as HTTP and refused; an untrusted
/// peer without one is served as usual.
async fn a_proxy_protocol_header_from_a_trusted_balancer_names_the_client() {
    let s = server_configured("basic", |config| {
        config.limits = LimitsConfig {
            login_failures_per_address: 10,
            login_failures_before_backoff: 5,
            ..LimitsConfig::default()
        };
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        config.proxy_protocol = true;
    })
    .await;
    let balancer = Ipv4Addr::LOCALHOST;
    let v2 = |client: [u8; 4]| {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
        h.extend_from_slice(&client);
        h.extend_from_slice(&[127, 0, 0, 1, 0xc8, 0x01, 0x13, 0x88]);
        h
    };
    let get = |auth: &str| {
        format!(
            "GET /v2/ HTTP/1.1\r\nHost: r\r\nConnection: close\r\nAuthorization: {auth}\r\n\r\n"
        )
    };
    let status = |answer: &str| -> u16 {
        answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let mut guesses = Vec::new();
    for i in 0..15 {
        // Version 1 for the guesser, version 2 for alice: both are read.
        let head = format!(
            "PROXY TCP4 198.51.100.66 127.0.0.1 5{i:04} 5000\r\n{}",
            get(&basic("alice", &format!("guess-{i}")))
        );
        guesses.push(status(&exchange_from(s.addr, balancer, &head, b"").await));
    }
    assert!(guesses.contains(&429), "the guesser runs out: {guesses:?}");
    let mut alice = v2([198, 51, 100, 5]);
    alice.extend_from_slice(get(&basic("alice", ALICE_PW)).as_bytes());
    let answer = exchange_from(s.addr, balancer, "", &alice).await;
    assert_eq!(
        status(&answer),
        200,
        "alice behind the same balancer: {answer}"
    );

    // The balancer without the header: closed (or reset), nothing answered.
    let mut conn = connect_from(s.addr, balancer).await;
    conn.write_all(get(&basic("alice", ALICE_PW)).as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(GUARD, conn.read_to_end(&mut raw))
        .await
        .expect("the server closes");
    assert!(
        read.is_err() || raw.is_empty(),
        "a trusted peer must send the header: {}",
        String::from_utf8_lossy(&raw)
    );
    // Anyone else sending one: it is not HTTP.
    let forged = format!(
        "PROXY TCP4 198.51.100.5 127.0.0.1 1 5000\r\n{}",
        get(&basic("alice", ALICE_PW))
    );
    let answer = exchange_from(s.addr, Ipv4Addr::new(127, 0, 0, 9), &forged, b"").await;
    assert_eq!(status(&answer), 400, "{answer}");
    // And served as usual without one.
    let answer = exchange_from(
        s.addr,
        Ipv4Addr::new(127, 0, 0, 9),
        &get(&basic("alice", ALICE_PW)),
        b"",
    )
    .await;
    assert_eq!(status(&answer), 200, "{answer}");
}

async fn token_requests_are_bounded() {
    let s = server("token", LimitsConfig::default()).await;
    let alice = basic("alice", ALICE_PW);
    let scopes = |n: usize| {
        (0..n)
            .map(|i| format!("&scope=repository:team/r{i}:pull"))
            .collect::<String>()
    };
    let path = |n| format!("/token?service=wharf-registry{}", scopes(n));
    assert_eq!(
        request(s.addr, "GET", &path(64), Some(&alice), b"").await.0,
        200
    );
    let (status, body) = request(s.addr, "GET", &path(65), Some(&alice), b"").await;
    assert_eq!(status, 400, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("at most 64 scope"), "{body}");
    // A password-grant form is a few hundred bytes: 100 KiB is refused before it is parsed.
    let mut form = b"grant_type=password&username=alice&password=".to_vec();
    form.resize(100 * 1024, b'x');
    let (status, _) = request_from(
        s.addr,
        Ipv4Addr::LOCALHOST,
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    )
    .await;
    assert_eq!(status, 413);
}

/// A client that is not ours (`program` with its arguments before ours), run against a fresh
/// server in each auth mode: it must print "all ok". `deadline` allows for a client that
/// compiles itself first.
async fn outside_client_passes_in_both_auth_modes(
    program: &str,
    args: &[&std::ffi::OsStr],
    envs: &[(&str, PathBuf)],
    deadline: Duration,
) {
    for mode in ["basic", "token"] {
        let s = server(mode, LimitsConfig::default()).await;
        let run = tokio::process::Command::new(program)
            .args(args)
            .arg(s.addr.to_string())
            .arg(mode)
            .arg("alice")
            .arg(ALICE_PW)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(deadline, run)
            .await
            .unwrap_or_else(|_| panic!("the {program} client finishes"))
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("all ok"),
            "{program}, {mode} mode:\n{stdout}\n{stderr}"
        );
    }
}

fn client(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(file)
}

fn installed(program: &str, package: &str) {
    let found = std::process::Command::new(program)
        .arg(if program == "go" {
            "version"
        } else {
            "--version"
        })
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "this test needs {program} (apt-get install {package})"
    );
}

async fn python_keep_alive_client_survives_early_answers_in_both_auth_modes() {
    installed("python3", "python3");
    let script = client("keepalive_after_401.py");
    outside_client_passes_in_both_auth_modes("python3", &[script.as_os_str()], &[], GUARD).await;
}

/// Node's HTTP clients: `node:http` on one keep-alive socket, `fetch` (undici) with buffered
/// and streamed bodies, and `node:http2` on one cleartext HTTP/2 session (`node` from Debian's
/// nodejs).
async fn node_keep_alive_clients_survive_early_answers_in_both_auth_modes() {
    installed("node", "nodejs");
    let script = client("keepalive_after_401.mjs");
    outside_client_passes_in_both_auth_modes("node", &[script.as_os_str()], &[], GUARD).await;
}

/// HTTP/2 "rapid reset" (CVE-2023-44487) from Node's `node:http2`: 20,000 streams opened and
/// cancelled at once on one session end that session (GOAWAY), and the server still answers
/// another client.
async fn an_http2_rapid_reset_flood_ends_that_session_and_others_are_served() {
    installed("node", "nodejs");
    let script = client("h2_rapid_reset.mjs");
    outside_client_passes_in_both_auth_modes("node", &[script.as_os_str()], &[], GUARD).await;
}

/// Go's net/http, the client of containerd, ORAS, crane and the OCI conformance suite: the
/// client the issue saw break after a 401 (`go` from Debian's golang-go, run with `go run`).
async fn go_keep_alive_client_survives_early_answers_in_both_auth_modes() {
    installed("go", "golang-go");
    let program = client("keepalive_after_401.go");
    // Go's build cache in a folder of the test's own: no $HOME needed, nothing left behind.
    let cache = tempfile::tempdir().unwrap();
    let envs = [
        ("GOCACHE", cache.path().join("build")),
        ("GOPATH", cache.path().join("path")),
        ("GO111MODULE", PathBuf::from("off")),
        ("GOFLAGS", PathBuf::new()),
    ];
    let run = std::ffi::OsStr::new("run");
    // The first `go run` compiles net/http: allow for it on a loaded machine.
    outside_client_passes_in_both_auth_modes("go", &[run, program.as_os_str()], &envs, GUARD * 4)
        .await;
}

on_each_backend!(
    a_request_head_that_never_ends_is_cut_at_the_header_timeout,
    a_head_dripped_a_byte_at_a_time_is_cut_at_the_header_timeout,
    a_request_body_that_stalls_ends_at_the_idle_timeout,
    a_large_paced_chunk_that_stalls_mid_way_ends_at_the_idle_timeout_and_resumes,
    idle_keep_alive_connections_are_closed_but_not_before_the_idle_timeout,
    a_flood_of_silent_sockets_does_not_lock_legitimate_clients_out,
    a_client_that_stops_reading_its_downloads_does_not_lock_others_out,
    http2_downloads_a_client_stops_reading_do_not_lock_others_out,
    upload_sessions_are_capped_per_subject_and_per_repository,
    finished_and_cancelled_sessions_make_room_again,
    passwords_past_72_bytes_never_log_in_on_any_path,
    a_wrong_password_flood_is_throttled_without_locking_the_user_out,
    behind_a_trusted_balancer_each_client_is_counted_apart,
    a_proxy_protocol_header_from_a_trusted_balancer_names_the_client,
    token_requests_are_bounded,
    python_keep_alive_client_survives_early_answers_in_both_auth_modes,
    go_keep_alive_client_survives_early_answers_in_both_auth_modes,
    node_keep_alive_clients_survive_early_answers_in_both_auth_modes,
    an_http2_rapid_reset_flood_ends_that_session_and_others_are_served,
);
