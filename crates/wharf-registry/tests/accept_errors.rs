//! Accept errors under fd exhaustion: the server backs off and logs sparingly instead of
//! spinning and flooding its log, and serves again once descriptors are free. Its own test
//! binary: it lowers the process's open-files limit and installs a global log subscriber.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use wharf_registry::auth::AllowAll;
use wharf_registry::limits::LimitsConfig;
use wharf_registry::{Config, app_state};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .matches(needle)
            .count()
    }
}

/// Opens N connections when told, holds them, closes them when told again.
const HOLDER: &str = r#"
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.stdin.readline()
socks = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=5)
    socks.append(s)
print("open", flush=True)
sys.stdin.readline()
for s in socks:
    s.close()
print("closed", flush=True)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_server_backs_off_logs_sparingly_and_recovers() {
    let log = Captured::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        root: dir.path().to_path_buf(),
        // Above what the descriptors allow: this test is about the accept errors themselves.
        limits: LimitsConfig {
            max_connections: 10_000,
            ..LimitsConfig::default()
        },
        ..Config::default()
    };
    let state = app_state(&config, Arc::new(AllowAll)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wharf_registry::serve_on(
        listener,
        config,
        state,
        axum::Router::new(),
        async {
            let _ = stopped.await;
        },
    ));

    // The clients live in another process, with their own descriptors.
    let mut holder = tokio::process::Command::new("python3")
        .args(["-c", HOLDER, "127.0.0.1", &addr.port().to_string(), "100"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("these tests need python3 (apt-get install python3)");
    let mut to_holder = holder.stdin.take().unwrap();
    let mut from_holder = tokio::io::BufReader::new(holder.stdout.take().unwrap()).lines();

    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let saved = getrlimit(Resource::Nofile);
    let in_use = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(in_use + 20),
            maximum: saved.maximum,
        },
    )
    .unwrap();
    to_holder.write_all(b"go\n").await.unwrap();
    let opened = tokio::time::timeout(Duration::from_secs(30), from_holder.next_line()).await;
    assert!(
        matches!(opened, Ok(Ok(Some(ref l))) if l == "open"),
        "{opened:?}"
    );
    // The kernel queues what the server cannot accept; every accept now fails with EMFILE.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let logged = log.count("accept failed");
    assert!(
        (1..=2).contains(&logged),
        "accept errors logged {logged} times in 3 s (expected once, then at most every 10 s)"
    );
    assert!(
        log.count("out of file descriptors") >= 1,
        "the log says why"
    );

    to_holder.write_all(b"close\n").await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(30), from_holder.next_line()).await;
    assert!(
        matches!(closed, Ok(Ok(Some(ref l))) if l == "closed"),
        "{closed:?}"
    );
    setrlimit(Resource::Nofile, saved).unwrap();

    // Served again once descriptors are free (the queued connections drain first).
    let answered = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(mut conn) = tokio::net::TcpStream::connect(addr).await {
                let _ = conn
                    .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await;
                let mut raw = String::new();
                let _ = conn.read_to_string(&mut raw).await;
                if raw.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(answered.is_ok(), "the server did not recover");
    let _ = std::io::stderr().flush();
}
