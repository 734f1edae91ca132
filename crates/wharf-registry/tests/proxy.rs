//! The pull-through cache (`[[proxy]]`): against a stand-in upstream written here (for what a
//! real registry never does: truncated or wrong bytes), and, in the ignored tiers, against
//! Debian's `docker-registry` with htpasswd on loopback, pulled through wharf by skopeo (and
//! docker when a daemon runs), and on Ceph's RGW.

mod common;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use wharf_registry::auth::AllowAll;
use wharf_registry::config::{ProxyConfig, Secret};
use wharf_registry::storage::Storage as _;
use wharf_registry::{Config, app_state, router};

use common::{digest_of, image_manifest};

/// One canned answer of the stand-in upstream.
#[derive(Clone, Default)]
struct Canned {
    content_type: &'static str,
    body: Vec<u8>,
    /// Announce `body.len()` but send only this many bytes, then close: a cut stream.
    cut_after: Option<usize>,
    /// Send this many bytes, wait this long, then send the rest: a slow upstream, so a download
    /// is still running when the next request comes.
    pause_after: Option<(usize, Duration)>,
    /// Send this many bytes, then nothing until the flag is set: a stall the test ends.
    stall_after: Option<(usize, Arc<std::sync::atomic::AtomicBool>)>,
    /// A `Link` header (the next page of a tag list).
    link: Option<&'static str>,
    /// No `Content-Length`: `body` sent again and again until the client stops reading.
    endless: bool,
}

/// A stand-in upstream registry (not a registry: a few canned answers over HTTP/1.1 on
/// loopback), for failures a real registry does not produce. Counts the GETs per path.
struct StandIn {
    port: u16,
    gets: Arc<Mutex<HashMap<String, usize>>>,
    /// When set, every request is answered `429 Too Many Requests` (Docker Hub's rate limit).
    rate_limited: Arc<std::sync::atomic::AtomicBool>,
    /// Bytes of endless answers written so far.
    endless_sent: Arc<std::sync::atomic::AtomicU64>,
}

impl StandIn {
    fn start(answers: HashMap<String, Canned>) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let gets = Arc::new(Mutex::new(HashMap::new()));
        let counted = gets.clone();
        let rate_limited = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let limited = rate_limited.clone();
        let endless_sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sent = endless_sent.clone();
        let answers = Arc::new(answers);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let answers = answers.clone();
                let counted = counted.clone();
                let limited = limited.clone();
                let sent = sent.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                    }
                    let mut parts = request_line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let path = parts.next().unwrap_or("").to_string();
                    if method == "GET" {
                        *counted
                            .lock()
                            .expect("lock")
                            .entry(path.clone())
                            .or_insert(0) += 1;
                    }
                    // An answer for the path with its query (a page of a tag list), else for the
                    // path alone (`tags/list?n=100` as `tags/list`).
                    let answer = answers
                        .get(&path)
                        .or_else(|| answers.get(path.split('?').next().unwrap_or("")));
                    let (status, canned) = match answer {
                        _ if limited.load(std::sync::atomic::Ordering::SeqCst) => (
                            "429 Too Many Requests",
                            Canned {
                                content_type: "application/json",
                                body: br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit"}]}"#
                                    .to_vec(),
                                ..Canned::default()
                            },
                        ),
                        Some(c) => ("200 OK", c.clone()),
                        None if path == "/v2/" => (
                            "200 OK",
                            Canned {
                                content_type: "application/json",
                                body: b"{}".to_vec(),
                                ..Canned::default()
                            },
                        ),
                        None => (
                            "404 Not Found",
                            Canned {
                                content_type: "application/json",
                                body:
                                    br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown"}]}"#
                                        .to_vec(),
                                ..Canned::default()
                            },
                        ),
                    };
                    let mut head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nConnection: close\r\n",
                        canned.content_type,
                    );
                    if !canned.endless {
                        head.push_str(&format!("Content-Length: {}\r\n", canned.body.len()));
                    }
                    if let Some(link) = canned.link {
                        head.push_str(&format!("Link: {link}\r\n"));
                    }
                    if path.contains("/manifests/") {
                        head.push_str(&format!(
                            "Docker-Content-Digest: {}\r\n",
                            digest_of(&canned.body)
                        ));
                    }
                    head.push_str("\r\n");
                    let _ = stream.write_all(head.as_bytes());
                    if method != "HEAD" && canned.endless {
                        while stream.write_all(&canned.body).is_ok() {
                            sent.fetch_add(
                                canned.body.len() as u64,
                                std::sync::atomic::Ordering::SeqCst,
                            );
                        }
                    } else if method != "HEAD" {
                        let end = canned.cut_after.unwrap_or(canned.body.len());
                        let mut from = 0;
                        if let Some((first, pause)) = canned.pause_after {
                            let first = first.min(end);
                            let _ = stream.write_all(&canned.body[..first]);
                            let _ = stream.flush();
                            std::thread::sleep(pause);
                            from = first;
                        }
                        if let Some((first, released)) = &canned.stall_after {
                            let first = (*first).min(end);
                            let _ = stream.write_all(&canned.body[..first]);
                            let _ = stream.flush();
                            while !released.load(std::sync::atomic::Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(10));
                            }
                            from = first;
                        }
                        let _ = stream.write_all(&canned.body[from..end]);
                    }
                    let _ = stream.flush();
                });
            }
        });
        StandIn {
            port,
            gets,
            rate_limited,
            endless_sent,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn gets(&self, path: &str) -> usize {
        self.gets
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn proxy_entry(prefix: &str, upstream: &str) -> ProxyConfig {
    let text = format!("prefix = {prefix:?}\nupstream = {upstream:?}\n");
    let mut config = Config::parse(
        &format!("[[proxy]]\n{text}"),
        Path::new("/nonexistent/registry.toml"),
    )
    .expect("valid proxy entry");
    config.proxy.remove(0)
}

/// A config with the current backend (see `common::config`) and `proxy`.
fn config_with(root: &Path, proxy: Vec<ProxyConfig>) -> Config {
    let mut config = common::config(root);
    config.proxy = proxy;
    config
}

/// An image whose layer the stand-in serves as `layer` (maybe wrong or cut).
struct Fixture {
    answers: HashMap<String, Canned>,
    manifest: Vec<u8>,
    layer_digest: String,
}

fn fixture(layer_sent: Canned) -> Fixture {
    fixture_with_layer(&[7u8; 300_000], layer_sent)
}

/// An image whose layer is `layer`, which the stand-in serves as `layer_sent`.
fn fixture_with_layer(layer: &[u8], layer_sent: Canned) -> Fixture {
    let config_blob =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer_digest = digest_of(layer);
    let config_digest = digest_of(config_blob);
    let manifest = image_manifest(
        &config_digest,
        config_blob.len(),
        &layer_digest,
        layer.len(),
        None,
    );
    let blob = |body: Vec<u8>| Canned {
        content_type: "application/octet-stream",
        body,
        ..Canned::default()
    };
    let mut answers = HashMap::new();
    answers.insert(
        "/v2/team/app/manifests/1".to_string(),
        Canned {
            content_type: common::OCI_MANIFEST,
            body: manifest.clone(),
            ..Canned::default()
        },
    );
    answers.insert(
        format!("/v2/team/app/blobs/{config_digest}"),
        blob(config_blob.to_vec()),
    );
    answers.insert(format!("/v2/team/app/blobs/{layer_digest}"), layer_sent);
    answers.insert(
        "/v2/team/app/tags/list".to_string(),
        Canned {
            content_type: "application/json",
            body: br#"{"name":"team/app","tags":["1","2-upstream-only"]}"#.to_vec(),
            ..Canned::default()
        },
    );
    Fixture {
        answers,
        manifest,
        layer_digest,
    }
}

/// The layer as the stand-in should send it.
fn good_layer() -> Canned {
    Canned {
        content_type: "application/octet-stream",
        body: vec![7u8; 300_000],
        ..Canned::default()
    }
}

/// A registry with `config` and no access control, driven in process.
fn open_app(config: &Config) -> axum::Router {
    router(
        app_state(config, Arc::new(AllowAll)).expect("state"),
        axum::Router::new(),
    )
}

fn error_message(r: &common::Resp) -> String {
    r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// GET `uri`, expecting `502 Bad Gateway`: its error message.
async fn bad_gateway(app: &axum::Router, uri: &str) -> String {
    let r = common::send(app, Method::GET, uri, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    error_message(&r)
}

/// A stand-in upstream sending `layer` for the fixture's layer, and the configuration of a
/// cache of it under `hub/` (in a fresh folder) with `tweak` applied to its `[[proxy]]` entry.
struct Cache {
    f: Fixture,
    upstream: StandIn,
    dir: tempfile::TempDir,
    config: Config,
}

fn cache_of(layer: Canned, tweak: impl FnOnce(&mut ProxyConfig)) -> Cache {
    let f = fixture(layer);
    let upstream = StandIn::start(f.answers.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entry = proxy_entry("hub/", &upstream.url());
    tweak(&mut entry);
    let config = config_with(dir.path(), vec![entry]);
    Cache {
        f,
        upstream,
        dir,
        config,
    }
}

/// GET through the router, keeping a body error (a cut answer) as `Err`.
async fn get_through(app: &axum::Router, uri: &str) -> (StatusCode, Result<Vec<u8>, String>) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .map_err(|e| e.to_string());
    (status, body)
}

fn stored_blob_names(root: &Path) -> Vec<String> {
    walkdir(root.join("blobs/sha256"))
}

fn walkdir(dir: std::path::PathBuf) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(path));
        } else {
            out.push(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    out
}

/// Waits (up to 10 s) for `path` to be written: a manifest fetched from the upstream is
/// answered at once and stored (tag, revision, pull record) in the background.
async fn wait_until_stored(path: &Path) {
    for _ in 0..1000 {
        if path.exists() && (path.is_file() || !walkdir(path.to_path_buf()).is_empty()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Pulls the fixture's manifest and its layer through wharf; returns the layer answer.
async fn pull_layer(app: &axum::Router, f: &Fixture) -> (StatusCode, Result<Vec<u8>, String>) {
    let (status, manifest) = get_through(app, "/v2/hub/team/app/manifests/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(manifest.expect("manifest body"), f.manifest);
    get_through(app, &format!("/v2/hub/team/app/blobs/{}", f.layer_digest)).await
}

/// Pulls through a stand-in that sends `layer_sent` for the fixture's layer (to a cache with
/// `tweak` applied to its entry): the client never gets a whole answer, and neither the blob
/// nor an upload session stays in storage. Returns the stand-in.
async fn assert_a_bad_upstream_blob_leaves_nothing(
    layer_sent: Canned,
    tweak: impl FnOnce(&mut ProxyConfig),
) -> StandIn {
    let Cache {
        f,
        upstream,
        dir,
        config,
    } = cache_of(layer_sent, tweak);
    let app = open_app(&config);
    let (status, body) = pull_layer(&app, &f).await;
    // The first bytes may already be on their way: the answer is then cut, never completed.
    assert!(
        status != StatusCode::OK || body.is_err(),
        "a bad blob was served whole: {status}"
    );
    let layer_hex = &f.layer_digest[7..];
    assert!(!stored_blob_names(dir.path()).iter().any(|n| n == layer_hex));
    assert!(
        walkdir(dir.path().join("uploads")).is_empty(),
        "no session left"
    );
    // Nothing cached, so the next pull asks the upstream again.
    let _ = pull_layer(&app, &f).await;
    assert_eq!(
        upstream.gets(&format!("/v2/team/app/blobs/{}", f.layer_digest)),
        2
    );
    upstream
}

#[tokio::test]
async fn a_wrong_digest_from_the_upstream_leaves_no_blob_in_storage() {
    assert_a_bad_upstream_blob_leaves_nothing(
        Canned {
            content_type: "application/octet-stream",
            body: vec![8u8; 300_000],
            ..Canned::default()
        },
        |_| {},
    )
    .await;
}

#[tokio::test]
async fn a_cut_upstream_stream_leaves_no_blob_in_storage() {
    assert_a_bad_upstream_blob_leaves_nothing(
        Canned {
            content_type: "application/octet-stream",
            body: vec![7u8; 300_000],
            cut_after: Some(100_000),
            ..Canned::default()
        },
        |_| {},
    )
    .await;
}

/// Regression: a blob from the upstream had no bound: an answer without a `Content-Length`
/// that never ended filled the cache's storage. Now `max_blob_size` cuts it, and nothing is
/// stored. (A stand-in: no registry sends such an answer.)
#[tokio::test]
async fn an_endless_upstream_blob_is_cut_at_max_blob_size_and_nothing_is_stored() {
    let endless = Canned {
        content_type: "application/octet-stream",
        body: vec![7u8; 64 << 10],
        endless: true,
        ..Canned::default()
    };
    let upstream = assert_a_bad_upstream_blob_leaves_nothing(endless, |e| {
        e.max_blob_size = bytesize::ByteSize::mib(1)
    })
    .await;
    // Both pulls stopped reading (and closed) near the limit, not after the socket buffers
    // filled: what the stand-in managed to write stays small and stops growing.
    let sent = upstream
        .endless_sent
        .load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = upstream
        .endless_sent
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 32 << 20, "the upstream sent {sent} bytes");
    assert_eq!(sent, later, "the upstream is still being read");
}

/// A `Content-Length` over `max_blob_size` is refused before the body is read, naming the
/// entry and the fix; one at the limit is fetched.
#[tokio::test]
async fn an_upstream_blob_announced_over_max_blob_size_is_refused_naming_the_fix() {
    let Cache {
        f,
        upstream,
        dir,
        config,
    } = cache_of(good_layer(), |e| {
        e.max_blob_size = bytesize::ByteSize::b(299_999)
    });
    let app = open_app(&config);
    let (status, manifest) = get_through(&app, "/v2/hub/team/app/manifests/1").await;
    assert_eq!(
        (status, manifest.expect("manifest")),
        (StatusCode::OK, f.manifest.clone())
    );
    let message = bad_gateway(&app, &format!("/v2/hub/team/app/blobs/{}", f.layer_digest)).await;
    for part in [
        upstream.url().as_str(),
        f.layer_digest.as_str(),
        "larger than max_blob_size (299999 bytes): it announces 300000 bytes",
        "raise max_blob_size in the [[proxy]] entry with prefix \"hub/\"",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    let layer_hex = &f.layer_digest[7..];
    assert!(!stored_blob_names(dir.path()).iter().any(|n| n == layer_hex));

    let at_limit = cache_of(good_layer(), |e| {
        e.max_blob_size = bytesize::ByteSize::b(300_000)
    });
    let state = app_state(&at_limit.config, Arc::new(AllowAll)).expect("state");
    let (status, body) = pull_layer(&router(state.clone(), axum::Router::new()), &at_limit.f).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.expect("layer").len(), 300_000);
    // The link is written in the background: done before the storage folder goes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    assert!(state.proxy.finish_background_writes(deadline).await);
}

on_each_backend!(a_good_upstream_blob_is_cached_and_served_from_storage);

async fn a_good_upstream_blob_is_cached_and_served_from_storage() {
    let layer = vec![7u8; 300_000];
    let f = fixture(Canned {
        content_type: "application/octet-stream",
        body: layer.clone(),
        ..Canned::default()
    });
    let upstream = StandIn::start(f.answers.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with(dir.path(), vec![proxy_entry("hub/", &upstream.url())]);
    let reg = common::replica_on_socket(&config).await;

    let manifest = reg.get("/v2/hub/team/app/manifests/1").await;
    assert_eq!(manifest.status, StatusCode::OK);
    assert_eq!(manifest.body.as_ref(), f.manifest.as_slice());
    let uri = format!("/v2/hub/team/app/blobs/{}", f.layer_digest);
    let first = reg.get(&uri).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body.as_ref(), layer.as_slice());
    // Second time from storage (a presigned redirect on S3), not from the upstream.
    let second = reg.get(&uri).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.body.as_ref(), layer.as_slice());
    assert_eq!(
        upstream.gets(&format!("/v2/team/app/blobs/{}", f.layer_digest)),
        1
    );
    // By digest: the cached manifest, with the upstream never asked for it.
    let by_digest = reg
        .get(&format!(
            "/v2/hub/team/app/manifests/{}",
            digest_of(&f.manifest)
        ))
        .await;
    assert_eq!(by_digest.status, StatusCode::OK);
    assert_eq!(
        upstream.gets(&format!(
            "/v2/team/app/manifests/{}",
            digest_of(&f.manifest)
        )),
        0
    );
}

/// The parts of a pull-through cache of the fixture with a storage of the test's: the
/// manifest's digest, the storage the cache writes through (pausing as `pause` says on the
/// manifest), its state, and the storage underneath.
struct Interposed {
    f: Fixture,
    _upstream: StandIn,
    _dir: tempfile::TempDir,
    config: Config,
    manifest: wharf_registry::names::Digest,
    storage: Arc<common::interposed::Interposed>,
    state: wharf_registry::AppState,
}

fn cache_through(pause: Option<common::interposed::Pause>) -> Interposed {
    use wharf_registry::services::{Limits, Registry};
    let f = fixture(good_layer());
    let upstream = StandIn::start(f.answers.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with(dir.path(), vec![proxy_entry("hub/", &upstream.url())]);
    let manifest = wharf_registry::names::Digest::parse(&digest_of(&f.manifest)).expect("digest");
    let inner = wharf_registry::open_storage(&config).expect("storage");
    let storage = Arc::new(common::interposed::interposed(inner, &manifest, pause));
    let state = wharf_registry::AppState {
        registry: Arc::new(Registry::new(storage.clone(), Limits::default())),
        authorizer: Arc::new(AllowAll),
        metrics: Arc::default(),
        proxy: Arc::new(wharf_registry::proxy::Proxies::new(&config.proxy)),
        throttle: Arc::new(wharf_registry::throttle::LoginThrottle::new(30, 5)),
        trusted_proxies: Arc::default(),
    };
    Interposed {
        f,
        _upstream: upstream,
        _dir: dir,
        config,
        manifest,
        storage,
        state,
    }
}

/// Whether the manifest `digest` is cached in `hub/team/app`: content and revision.
async fn manifest_cached(
    storage: &dyn wharf_registry::storage::Storage,
    digest: &wharf_registry::names::Digest,
) -> bool {
    let revision = format!(
        "repositories/hub/team/app/_manifests/revisions/sha256/{}",
        digest.hex()
    );
    storage.blob_info(digest).await.expect("blob").is_some()
        && storage
            .meta_info(&revision)
            .await
            .expect("revision")
            .is_some()
}

/// Issue 11: a fetched manifest is answered at once and stored in the background. A graceful
/// shutdown (SIGTERM) right after a cold pull waits for that store: the manifest is in storage
/// when the server has stopped. Before, the server stopped once the connections were closed,
/// and the store died with the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_right_after_a_cold_manifest_pull_waits_for_its_store() {
    use common::interposed::Pause;
    let cache = cache_through(Some(Pause::BlobPut));
    let (reached, release) = cache.storage.gate();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = cache.config.clone();
    config.shutdown_timeout = Duration::from_secs(120);
    let server = tokio::spawn(wharf_registry::serve_on(
        listener,
        config,
        cache.state.clone(),
        axum::Router::new(),
        async {
            let _ = stopped.await;
        },
    ));

    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        write!(
            stream,
            "GET /v2/hub/team/app/manifests/1 HTTP/1.1\r\nHost: {addr}\r\nAccept: {}\r\nConnection: close\r\n\r\n",
            common::OCI_MANIFEST
        )
        .expect("request");
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).expect("answer");
        answer
    })
    .await
    .expect("client");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    reached
        .await
        .expect("the manifest is being stored in the background");

    // SIGTERM: the server stops accepting; the manifest's store is still running.
    stop.send(()).expect("server runs");
    let releasing = tokio::spawn(async move {
        // Gives a server that does not wait time to stop first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = release.send(());
    });
    tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("the server stops once the store is done")
        .expect("server task")
        .expect("server");
    assert!(
        manifest_cached(&*cache.storage.inner, &cache.manifest).await,
        "the manifest answered before the shutdown is stored"
    );
    releasing.await.expect("release");
    drop(cache.f);
}

/// Issue 11: the cache stores a fetched manifest as a push does, through gc's protocol
/// (`services::gc`): while a gc on another replica is deciding about its digest (a live
/// deletion flag), the store waits, then writes. Before, it wrote the content and revision
/// regardless, which a gc about to remove them would not have seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_manifest_is_stored_with_gc_s_protocol() {
    let cache = cache_through(None);
    let flag = format!(
        "_gc/deleting/sha256/{}/another-replica",
        cache.manifest.hex()
    );
    cache
        .storage
        .meta_put(&flag, bytes::Bytes::new())
        .await
        .expect("a gc's flag");
    let flags_read = cache.storage.flags_read.clone();
    let waiting = flags_read.notified();
    let app = router(cache.state.clone(), axum::Router::new());
    let (status, body) = get_through(&app, "/v2/hub/team/app/manifests/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.expect("body"), cache.f.manifest);
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the store reads gc's flags on the manifest");
    assert!(
        cache
            .storage
            .blob_info(&cache.manifest)
            .await
            .expect("blob")
            .is_none(),
        "no content written while a gc decides about it"
    );
    cache.storage.meta_delete(&flag).await.expect("gc done");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    assert!(
        cache.state.proxy.finish_background_writes(deadline).await,
        "the store ends once the gc is done"
    );
    assert!(manifest_cached(&*cache.storage.inner, &cache.manifest).await);
}

/// A download running for one proxied repository is joined through another repository only
/// once the upstream said that repository has the blob too: no one gets a blob through a
/// repository they could not pull it from upstream.
#[tokio::test]
async fn a_running_download_is_joined_through_another_repository_only_if_its_upstream_has_it() {
    let layer = vec![7u8; 300_000];
    let slow = Canned {
        content_type: "application/octet-stream",
        body: layer.clone(),
        pause_after: Some((100_000, Duration::from_millis(1500))),
        ..Canned::default()
    };
    let mut f = fixture(slow.clone());
    let in_app = format!("/v2/team/app/blobs/{}", f.layer_digest);
    let in_mirror = format!("/v2/team/mirror/blobs/{}", f.layer_digest);
    f.answers.insert(in_mirror.clone(), slow);
    let upstream = StandIn::start(f.answers.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with(dir.path(), vec![proxy_entry("hub/", &upstream.url())]);
    let app = open_app(&config);

    let first = {
        let app = app.clone();
        let uri = format!("/v2/hub/team/app/blobs/{}", f.layer_digest);
        tokio::spawn(async move { get_through(&app, &uri).await })
    };
    for _ in 0..500 {
        if upstream.gets(&in_app) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(upstream.gets(&in_app), 1, "the download started");

    // team/other does not have the blob upstream: refused, not joined.
    let (status, body) = get_through(
        &app,
        &format!("/v2/hub/team/other/blobs/{}", f.layer_digest),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:?}");
    // team/mirror has it upstream: joins the running download (no second GET upstream).
    let (status, body) = get_through(
        &app,
        &format!("/v2/hub/team/mirror/blobs/{}", f.layer_digest),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.expect("layer"), layer);
    assert_eq!(upstream.gets(&in_mirror), 0, "joined, not fetched again");

    let (status, body) = first.await.expect("first pull");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.expect("layer"), layer);
    assert_eq!(upstream.gets(&in_app), 1);
}

/// Bytes that differ from one offset to the next (a reordered or repeated chunk shows).
fn patterned(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

/// What the stand-in sends before it stalls: far more than the flight keeps in memory (2 MiB).
const SENT_BEFORE_STALL: usize = 8 << 20;

/// A 12 MiB layer the stand-in sends up to [`SENT_BEFORE_STALL`], then holds until
/// `released`, then sends up to `cut_after` (all of it if `None`) and closes.
fn stalled_layer_cache(
    cut_after: Option<usize>,
    released: &Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<u8>, Cache) {
    let layer = patterned(12 << 20);
    let f = fixture_with_layer(
        &layer,
        Canned {
            content_type: "application/octet-stream",
            body: layer.clone(),
            cut_after,
            stall_after: Some((SENT_BEFORE_STALL, released.clone())),
            ..Canned::default()
        },
    );
    let upstream = StandIn::start(f.answers.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with(dir.path(), vec![proxy_entry("hub/", &upstream.url())]);
    (
        layer,
        Cache {
            f,
            upstream,
            dir,
            config,
        },
    )
}

/// Starts a GET through the router: its status and body, to read as it arrives.
async fn start_get(app: &axum::Router, uri: &str) -> (StatusCode, Body) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    (response.status(), response.into_body())
}

/// Reads `body` until at least `want` bytes or its end; fails the test if that takes a minute
/// (the bytes are there: only a reader waiting for the stalled upstream takes that long).
async fn read_at_least(body: &mut Body, want: usize, what: &str) -> Vec<u8> {
    let read = async {
        let mut got = Vec::new();
        while got.len() < want {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        got.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => panic!("{what}: the body failed after {} bytes: {e}", got.len()),
                None => break,
            }
        }
        got
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("{what}: fewer than {want} bytes while the upstream stalls"))
}

/// The rest of `body`, or its error.
async fn read_rest(body: Body) -> Result<Vec<u8>, String> {
    body.collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .map_err(|e| e.to_string())
}

/// Waits (up to a minute) until the download's upload file holds `len` bytes: the writer has
/// written them, so the flight no longer holds them all in memory.
async fn wait_until_written(root: &Path, len: u64) {
    for _ in 0..6000 {
        let written = std::fs::read_dir(root.join("uploads"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::metadata(e.path().join("data")).ok())
            .any(|m| m.len() >= len);
        if written {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the download's upload file never reached {len} bytes");
}

/// A client that asks for a blob when far more of it than the flight keeps in memory has
/// passed gets every byte from the first, in order, while the upstream is still stalled (the
/// bytes already written come from the download's file), then the rest as it arrives.
#[tokio::test]
async fn a_late_joiner_gets_the_bytes_already_downloaded_before_the_upstream_goes_on() {
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (layer, cache) = stalled_layer_cache(None, &released);
    let app = open_app(&cache.config);
    let uri = format!("/v2/hub/team/app/blobs/{}", cache.f.layer_digest);

    let (status, mut first) = start_get(&app, &uri).await;
    assert_eq!(status, StatusCode::OK);
    let first_bytes = read_at_least(&mut first, SENT_BEFORE_STALL, "the first client").await;
    wait_until_written(cache.dir.path(), SENT_BEFORE_STALL as u64).await;

    let (status, mut late) = start_get(&app, &uri).await;
    assert_eq!(status, StatusCode::OK);
    let late_bytes = read_at_least(&mut late, SENT_BEFORE_STALL, "the late joiner").await;
    assert!(
        late_bytes[..] == layer[..late_bytes.len()],
        "the late joiner's first {} bytes differ from the blob's",
        late_bytes.len()
    );

    released.store(true, std::sync::atomic::Ordering::SeqCst);
    let late_all = [late_bytes, read_rest(late).await.expect("the rest")].concat();
    let first_all = [first_bytes, read_rest(first).await.expect("the rest")].concat();
    assert!(late_all == layer, "the late joiner's blob is not the layer");
    assert!(
        first_all == layer,
        "the first client's blob is not the layer"
    );
    assert_eq!(
        cache
            .upstream
            .gets(&format!("/v2/team/app/blobs/{}", cache.f.layer_digest)),
        1,
        "one download for both"
    );
}

/// A late joiner reading the bytes already written when the upstream then cuts the stream:
/// its answer ends in an error (never a short blob taken for a whole one), nothing is stored.
#[tokio::test]
async fn a_late_joiner_of_a_download_the_upstream_cuts_gets_an_error_and_nothing_is_stored() {
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (_, cache) = stalled_layer_cache(Some(10 << 20), &released);
    let app = open_app(&cache.config);
    let uri = format!("/v2/hub/team/app/blobs/{}", cache.f.layer_digest);

    let (status, mut first) = start_get(&app, &uri).await;
    assert_eq!(status, StatusCode::OK);
    read_at_least(&mut first, SENT_BEFORE_STALL, "the first client").await;
    wait_until_written(cache.dir.path(), SENT_BEFORE_STALL as u64).await;
    let (status, mut late) = start_get(&app, &uri).await;
    assert_eq!(status, StatusCode::OK);
    read_at_least(&mut late, SENT_BEFORE_STALL, "the late joiner").await;

    released.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        read_rest(late).await.is_err(),
        "the late joiner's answer must fail"
    );
    assert!(
        read_rest(first).await.is_err(),
        "the first answer must fail"
    );
    let layer_hex = &cache.f.layer_digest[7..];
    assert!(
        !stored_blob_names(cache.dir.path())
            .iter()
            .any(|n| n == layer_hex)
    );
    assert!(
        walkdir(cache.dir.path().join("uploads")).is_empty(),
        "no session left"
    );
}

#[tokio::test]
async fn writes_to_a_proxied_prefix_are_refused_naming_the_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with(
        dir.path(),
        vec![proxy_entry("hub/", "https://registry.invalid")],
    );
    let app = open_app(&config);
    let manifest = image_manifest(&digest_of(b"c"), 1, &digest_of(b"l"), 1, None);
    for (method, uri, body) in [
        (
            Method::POST,
            "/v2/hub/team/app/blobs/uploads/".to_string(),
            Vec::new(),
        ),
        (
            Method::PUT,
            "/v2/hub/team/app/manifests/1".to_string(),
            manifest,
        ),
        (
            Method::DELETE,
            "/v2/hub/team/app/manifests/1".to_string(),
            Vec::new(),
        ),
        (
            Method::DELETE,
            format!("/v2/hub/team/app/blobs/{}", digest_of(b"l")),
            Vec::new(),
        ),
    ] {
        let r = common::send(
            &app,
            method.clone(),
            &uri,
            &[("content-type", common::OCI_MANIFEST)],
            Body::from(body),
        )
        .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(r.code(), "UNSUPPORTED");
        let message = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            message.contains("pull-through cache of https://registry.invalid"),
            "{message}"
        );
    }
    // Outside the prefix, pushing works as ever.
    let r = common::send(
        &app,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn an_unreachable_upstream_with_nothing_cached_is_a_clear_error() {
    let port = wharf_testkit::free_port().expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = format!("http://127.0.0.1:{port}");
    let config = config_with(dir.path(), vec![proxy_entry("hub/", &upstream)]);
    let app = open_app(&config);
    let message = bad_gateway(&app, "/v2/hub/team/app/manifests/1").await;
    assert!(
        message.contains(&upstream) && message.contains("hub/"),
        "{message}"
    );
}

#[tokio::test]
async fn tag_lists_merge_the_upstream_and_the_cache() {
    let Cache {
        f,
        upstream,
        config,
        dir,
    } = cache_of(good_layer(), |_| {});
    let app = open_app(&config);
    let tags = |r: common::Resp| r.json()["tags"].clone();
    let listed = common::send(
        &app,
        Method::GET,
        "/v2/hub/team/app/tags/list",
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(tags(listed), serde_json::json!(["1", "2-upstream-only"]));
    let (status, _) = pull_layer(&app, &f).await;
    assert_eq!(status, StatusCode::OK);
    wait_until_stored(
        &dir.path()
            .join("repositories/hub/team/app/_manifests/tags/1"),
    )
    .await;
    // The upstream rate-limits: the cached tags still list.
    upstream
        .rate_limited
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let listed = common::send(
        &app,
        Method::GET,
        "/v2/hub/team/app/tags/list",
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(tags(listed), serde_json::json!(["1"]));
    let message = bad_gateway(&app, "/v2/hub/team/other/tags/list").await;
    assert!(message.contains("429"), "{message}");
}

/// A tag list page: `{"name":"team/app","tags":<tags>}` (`tags` a JSON array), with `link`.
fn tag_page(tags: &[u8], link: Option<&'static str>) -> Canned {
    let mut body = br#"{"name":"team/app","tags":"#.to_vec();
    body.extend_from_slice(tags);
    body.push(b'}');
    Canned {
        content_type: "application/json",
        body,
        link,
        ..Canned::default()
    }
}

/// A stand-in upstream answering `pages` (by path and query), and a cache of it under `hub/`
/// listing its tags 2 at a time.
fn tag_pages_cache(pages: &[(&str, Canned)]) -> (StandIn, tempfile::TempDir, axum::Router) {
    let upstream = StandIn::start(
        pages
            .iter()
            .map(|(path, answer)| (path.to_string(), answer.clone()))
            .collect(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut entry = proxy_entry("hub/", &upstream.url());
    entry.tag_page_size = 2;
    let app = open_app(&config_with(dir.path(), vec![entry]));
    (upstream, dir, app)
}

/// The tags `GET /v2/<repo>/tags/list` answers with, expecting 200.
async fn listed_tags(app: &axum::Router, repo: &str) -> serde_json::Value {
    let listed = common::send(
        app,
        Method::GET,
        &format!("/v2/{repo}/tags/list"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    listed.json()["tags"].clone()
}

/// Every page of the upstream's tag list, `tag_page_size` tags each, following its `Link`
/// headers. (A stand-in: Debian's docker-registry 2.8 ignores `n` and sends one page.)
#[tokio::test]
async fn every_page_of_the_upstream_tag_list_is_listed() {
    let pages = [
        (
            "/v2/team/app/tags/list?n=2",
            tag_page(
                br#"["a","b"]"#,
                Some(r#"</v2/team/app/tags/list?last=b&n=2>; rel="next""#),
            ),
        ),
        (
            "/v2/team/app/tags/list?last=b&n=2",
            tag_page(
                br#"["c","d"]"#,
                Some(r#"</v2/team/app/tags/list?last=d&n=2>; rel="next""#),
            ),
        ),
        (
            "/v2/team/app/tags/list?last=d&n=2",
            tag_page(br#"["e"]"#, None),
        ),
    ];
    let (upstream, _dir, app) = tag_pages_cache(&pages);
    assert_eq!(
        listed_tags(&app, "hub/team/app").await,
        serde_json::json!(["a", "b", "c", "d", "e"])
    );
    for (path, _) in pages {
        assert_eq!(upstream.gets(path), 1, "{path}");
    }
}

/// Regression: an upstream's tag list was read whole, however large, so an upstream sending a
/// huge or endless one made the cache hold all of it. Now all pages together are read up to
/// 16 MiB: a page past that ends the list at the pages before it, and a first page past it is
/// a clear error. (A stand-in: no registry sends such a list.)
#[tokio::test]
async fn a_huge_upstream_tag_list_is_cut_at_its_limit_not_held_whole() {
    const LIMIT: usize = 16 << 20;
    let huge = || {
        let mut tags = b"[\"".to_vec();
        tags.resize(tags.len() + LIMIT, b'x');
        tags.extend_from_slice(b"\"]");
        tag_page(&tags, None)
    };
    let (upstream, _dir, app) = tag_pages_cache(&[
        (
            "/v2/team/app/tags/list?n=2",
            tag_page(
                br#"["a","b"]"#,
                Some(r#"</v2/team/app/tags/list?last=b&n=2>; rel="next""#),
            ),
        ),
        ("/v2/team/app/tags/list?last=b&n=2", huge()),
        ("/v2/team/big/tags/list?n=2", huge()),
    ]);
    assert_eq!(
        listed_tags(&app, "hub/team/app").await,
        serde_json::json!(["a", "b"])
    );

    let message = bad_gateway(&app, "/v2/hub/team/big/tags/list").await;
    assert!(
        message.contains(&upstream.url())
            && message.contains("/v2/team/big/tags/list")
            && message.contains(&format!("larger than the tag list limit of {LIMIT} bytes")),
        "{message}"
    );
}

#[tokio::test]
async fn a_rate_limited_upstream_is_stood_in_for_by_the_cache() {
    let Cache {
        f,
        upstream,
        config,
        dir: _dir,
    } = cache_of(good_layer(), |e| e.ttl = Duration::from_secs(1));
    let app = open_app(&config);
    let (status, _) = pull_layer(&app, &f).await;
    assert_eq!(status, StatusCode::OK);
    upstream
        .rate_limited
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Past the TTL: the refresh gets 429, the cached manifest and blob answer.
    std::thread::sleep(Duration::from_millis(1200));
    let (status, body) = pull_layer(&app, &f).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.expect("cached layer").len(), 300_000);
    // Nothing cached: the client learns the upstream and its answer.
    let message = bad_gateway(&app, "/v2/hub/team/other/manifests/1").await;
    assert!(
        message.contains(&upstream.url()) && message.contains("429"),
        "{message}"
    );
}

#[tokio::test]
async fn gc_expires_cached_manifests_not_pulled_for_expire_unpulled() {
    let Cache {
        f,
        config,
        dir,
        upstream: _upstream,
    } = cache_of(good_layer(), |e| {
        e.expire_unpulled = Some(Duration::from_secs(1))
    });
    let app = open_app(&config);
    let (status, body) = pull_layer(&app, &f).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_ok());
    let pulled = dir
        .path()
        .join("repositories/hub/team/app/_proxy/pulled/sha256");
    wait_until_stored(&pulled).await;
    // The answers end once the bytes are verified; the blobs are committed just after (under
    // load, after gc had already run: it then found no layer to remove).
    for digest in [digest_of(&f.manifest), f.layer_digest.clone()] {
        let hex = &digest["sha256:".len()..];
        wait_until_stored(&dir.path().join("blobs/sha256").join(&hex[..2]).join(hex)).await;
    }
    // A pull record whose manifest went otherwise (deleted, swept untagged) goes too.
    std::fs::write(pulled.join(&digest_of(b"gone")[7..]), "").expect("stray record");

    let opts = wharf_registry::GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
        upload_expiry: Duration::from_secs(3600),
    };
    // Just pulled: kept.
    let report = wharf_registry::gc_with_config(&config, &opts).expect("gc");
    assert!(report.manifests_removed.is_empty(), "{report:?}");
    std::thread::sleep(Duration::from_millis(1500));
    let report = wharf_registry::gc_with_config(&config, &opts).expect("gc");
    assert_eq!(
        report.manifests_removed,
        vec![format!("hub/team/app@{}", digest_of(&f.manifest))]
    );
    // The manifest and the layer (the config was never pulled, so never cached).
    let mut removed: Vec<String> = report.blobs_removed.iter().map(|d| d.to_string()).collect();
    removed.sort();
    let mut expected = vec![digest_of(&f.manifest), f.layer_digest.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(walkdir(pulled).is_empty(), "no pull record left");
}

// --- real upstream: Debian's docker-registry, pulled through with skopeo (and docker) ---

const NEEDS: &str = "needs docker-registry, skopeo, podman, busybox-static, apache2-utils";
const UPSTREAM_USER: (&str, &str) = ("mirror", "upstream-pw-not-to-be-printed");

/// A wharf registry on loopback proxying `hub/` to `upstream` with `entry` tweaks, run on its
/// own runtime thread for blocking clients (skopeo, docker).
struct Wharf {
    runtime: tokio::runtime::Runtime,
    reg: Option<common::Reg>,
    dir: tempfile::TempDir,
}

impl Wharf {
    fn start(upstream: &wharf_testkit::Registry, tweak: impl FnOnce(&mut ProxyConfig)) -> Wharf {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut entry = proxy_entry("hub/", &upstream.url());
        entry.username = Some(UPSTREAM_USER.0.to_string());
        entry.password = Some(Secret::new(UPSTREAM_USER.1));
        tweak(&mut entry);
        let config = config_with(&dir.path().join("data"), vec![entry]);
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let reg = runtime.block_on(common::replica_on_socket(&config));
        Wharf {
            runtime,
            reg: Some(reg),
            dir,
        }
    }

    fn host(&self) -> String {
        let addr = self
            .reg
            .as_ref()
            .and_then(|r| r.socket.as_ref())
            .expect("socket")
            .addr;
        addr.to_string()
    }

    fn get(&self, uri: &str) -> common::Resp {
        let reg = self.reg.as_ref().expect("reg");
        self.runtime.block_on(reg.get(uri))
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        let reg = self.reg.take();
        self.runtime.block_on(async move { drop(reg) });
    }
}

/// `skopeo copy docker://<reference> oci:<dir>`; its stderr on failure.
fn skopeo_pull(reference: &str, into: &Path) -> Result<(), String> {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:t", into.display()),
        ])
        .output()
        .expect("skopeo runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn upstream_with_image(extra: &[u8]) -> (wharf_testkit::Registry, tempfile::TempDir) {
    let upstream =
        wharf_testkit::Registry::start_basic_logged(&[UPSTREAM_USER]).expect("docker-registry");
    let dir = tempfile::tempdir().expect("tempdir");
    push_fixture(&upstream, dir.path(), extra);
    (upstream, dir)
}

fn push_fixture(upstream: &wharf_testkit::Registry, dir: &Path, extra: &[u8]) -> String {
    let image = wharf_testkit::build_busybox_image(
        &dir.join(format!("image-{}", &digest_of(extra)[7..19])),
        &[("/etc/fixture", extra, 0o644)],
    )
    .expect("image");
    image
        .push(
            &format!("{}/team/busybox:1", upstream.host()),
            Some(UPSTREAM_USER),
        )
        .expect("push upstream");
    image.manifest_digest
}

/// `skopeo` pulls the fixture (`team/busybox:1`) through `wharf`'s `hub/` into `into`, and the
/// manifest it serves is the upstream's byte for byte; returns that manifest.
fn pulls_through_byte_for_byte(
    wharf: &Wharf,
    upstream: &wharf_testkit::Registry,
    into: &Path,
) -> String {
    let reference = format!("{}/hub/team/busybox:1", wharf.host());
    skopeo_pull(&reference, into).expect("pull through wharf");
    let through = wharf_testkit::inspect_raw(&reference, None).expect("inspect via wharf");
    let direct = wharf_testkit::inspect_raw(
        &format!("{}/team/busybox:1", upstream.host()),
        Some(UPSTREAM_USER),
    )
    .expect("inspect upstream");
    assert_eq!(through, direct, "the manifest is served byte for byte");
    through
}

/// `docker pull` through the daemon (127.0.0.0/8 registries are plain http to it by default).
fn docker_pull(reference: &str) {
    let out = Command::new("docker")
        .args(["pull", "-q", reference])
        .output()
        .expect("docker");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `podman pull` (removed first, so every layer is fetched again).
fn podman_pull(reference: &str) {
    let _ = Command::new("podman")
        .args(["rmi", "-f", reference])
        .output();
    let out = Command::new("podman")
        .args(["pull", "-q", "--tls-verify=false", reference])
        .output()
        .expect("podman (Debian package podman)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = Command::new("podman")
        .args(["rmi", "-f", reference])
        .output();
}

fn docker_available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ID}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
#[ignore = "needs docker-registry, skopeo, podman, busybox-static, apache2-utils"]
fn pulls_through_then_from_the_cache_with_the_upstream_down() {
    let _ = NEEDS;
    let (mut upstream, work) = upstream_with_image(b"one");
    let wharf = Wharf::start(&upstream, |e| e.ttl = Duration::from_secs(1));
    let reference = format!("{}/hub/team/busybox:1", wharf.host());
    let through = pulls_through_byte_for_byte(&wharf, &upstream, &work.path().join("first"));
    let docker = docker_available();
    if docker {
        docker_pull(&reference);
    }
    podman_pull(&reference);

    upstream.stop();
    // Past the TTL: the refresh fails, the cached manifest answers.
    std::thread::sleep(Duration::from_millis(1200));
    skopeo_pull(&reference, &work.path().join("second")).expect("pull with the upstream down");
    let by_digest = format!(
        "{}/hub/team/busybox@{}",
        wharf.host(),
        digest_of(through.as_bytes())
    );
    skopeo_pull(&by_digest, &work.path().join("third")).expect("pull by digest, upstream down");
    if docker {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &reference])
            .output();
        docker_pull(&reference);
        let _ = Command::new("docker")
            .args(["rmi", "-f", &reference])
            .output();
    }
    podman_pull(&reference);
    // Never cached and the upstream down: an error naming the upstream.
    let missing = wharf.get("/v2/hub/team/other/manifests/1");
    assert_eq!(missing.status, StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(&missing.body).contains(&upstream.url()));
}

/// Docker Hub's shape as the upstream: Docker token authentication, and blobs on S3 that a blob
/// GET answers with a 307 to a presigned URL of the S3 server (Debian's docker-registry on the
/// Ceph RGW; Hub redirects to its CDN the same way). The cache follows the redirect to another
/// host, without the registry's bearer token, and serves the image byte for byte.
#[test]
#[ignore = "needs Ceph RGW, docker-registry, skopeo, busybox-static: run by scripts/test-all.sh"]
fn an_upstream_with_tokens_and_blobs_redirected_to_s3_is_pulled_through() {
    let rgw = wharf_testkit::rgw::shared().expect("Ceph RGW");
    let upstream = wharf_testkit::Registry::start_token_on_s3(
        &[UPSTREAM_USER],
        &rgw.new_s3_bucket().expect("bucket"),
    )
    .expect("docker-registry with tokens on S3");
    let work = tempfile::tempdir().expect("tempdir");
    push_fixture(&upstream, work.path(), b"hub-shaped");

    // The premise: the upstream sends blob GETs to the S3 server.
    let token = upstream
        .issue_token(UPSTREAM_USER.0, "repository:team/busybox:pull")
        .expect("token");
    let bearer = format!("Bearer {token}");
    let accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
    let manifest = wharf_testkit::http::get(
        &format!("{}/v2/team/busybox/manifests/1", upstream.url()),
        &[("Authorization", &bearer), ("Accept", accept)],
    )
    .expect("manifest");
    assert_eq!(manifest.status, 200, "{}", manifest.text());
    let layer = manifest.json().expect("json")["layers"][0]["digest"]
        .as_str()
        .expect("a layer")
        .to_string();
    let blob = wharf_testkit::http::get(
        &format!("{}/v2/team/busybox/blobs/{layer}", upstream.url()),
        &[("Authorization", &bearer)],
    )
    .expect("blob");
    assert_eq!(blob.status, 307, "{}", blob.text());
    let location = blob.header("location").expect("location").to_string();
    assert!(location.starts_with(rgw.endpoint()), "{location}");
    // And S3 refuses the presigned URL if the registry's token comes along (two ways to
    // authenticate): a client that forwards it cannot pull.
    let with_token =
        wharf_testkit::http::get(&location, &[("Authorization", &bearer)]).expect("s3");
    assert_eq!(with_token.status, 400, "{}", with_token.text());
    let without = wharf_testkit::http::get(&location, &[]).expect("s3");
    assert_eq!(without.status, 200, "{}", without.text());

    let wharf = Wharf::start(&upstream, |_| {});
    pulls_through_byte_for_byte(&wharf, &upstream, &work.path().join("through"));
    let cached = wharf.get(&format!("/v2/hub/team/busybox/blobs/{layer}"));
    assert_eq!(cached.status, StatusCode::OK, "the layer is cached");
    assert_eq!(
        digest_of(&cached.body),
        layer,
        "the cached layer is the upstream's"
    );
}

#[test]
#[ignore = "needs docker-registry, skopeo, busybox-static, apache2-utils"]
fn a_tag_is_refreshed_from_the_upstream_after_its_ttl() {
    let (upstream, work) = upstream_with_image(b"one");
    let wharf = Wharf::start(&upstream, |e| e.ttl = Duration::from_secs(2));
    let reference = format!("{}/hub/team/busybox:1", wharf.host());
    let first = wharf_testkit::inspect_raw(&reference, None).expect("inspect");
    let moved = push_fixture(&upstream, work.path(), b"two");
    assert_ne!(digest_of(first.as_bytes()), moved);
    // Within the TTL: still the cached one.
    let cached = wharf_testkit::inspect_raw(&reference, None).expect("inspect");
    assert_eq!(cached, first);
    std::thread::sleep(Duration::from_millis(2500));
    let refreshed = wharf_testkit::inspect_raw(&reference, None).expect("inspect");
    assert_eq!(digest_of(refreshed.as_bytes()), moved);
    skopeo_pull(&reference, &work.path().join("pulled")).expect("pull the new image");
}

#[test]
#[ignore = "needs docker-registry, skopeo, busybox-static, apache2-utils"]
fn twenty_concurrent_cold_pulls_fetch_the_manifest_and_each_blob_once_from_the_upstream() {
    let (upstream, work) = upstream_with_image(&vec![b'x'; 4 << 20]);
    let wharf = Wharf::start(&upstream, |_| {});
    let reference = format!("{}/hub/team/busybox:1", wharf.host());
    let pulls: Vec<_> = (0..20)
        .map(|i| {
            let reference = reference.clone();
            let into = work.path().join(format!("pull-{i}"));
            std::thread::spawn(move || skopeo_pull(&reference, &into))
        })
        .collect();
    for pull in pulls {
        pull.join().expect("thread").expect("pull through wharf");
    }
    let manifest = wharf_testkit::inspect_raw(&reference, None).expect("inspect");
    let doc: serde_json::Value = serde_json::from_str(&manifest).expect("json");
    let mut blobs = vec![
        doc["config"]["digest"]
            .as_str()
            .expect("config")
            .to_string(),
    ];
    for layer in doc["layers"].as_array().expect("layers") {
        blobs.push(layer["digest"].as_str().expect("digest").to_string());
    }
    let log = upstream.access_log();
    // The tag's manifest too: one GET upstream, however many clients asked at once.
    let manifest_gets = log
        .lines()
        // Answered 200: the first request of a client goes out anonymous and gets a 401.
        .filter(|l| l.contains("\"GET /v2/team/busybox/manifests/") && l.contains("\" 200 "))
        .count();
    assert_eq!(
        manifest_gets, 1,
        "the manifest was fetched {manifest_gets} times:\n{log}"
    );
    for blob in &blobs {
        let gets = log
            .lines()
            .filter(|l| l.contains(&format!("\"GET /v2/team/busybox/blobs/{blob} ")))
            .count();
        assert_eq!(gets, 1, "{blob} was fetched {gets} times:\n{log}");
    }
}

#[test]
#[ignore = "needs docker-registry, skopeo, busybox-static, apache2-utils"]
fn wrong_upstream_credentials_name_the_upstream_and_the_source_not_the_secret() {
    let (upstream, work) = upstream_with_image(b"one");
    let config_json = work.path().join("upstream-auth.json");
    let wrong = "wrong-pw-never-printed";
    std::fs::write(
        &config_json,
        wharf_oci::auth_config_json(&upstream.host(), UPSTREAM_USER.0, wrong),
    )
    .expect("write auth file");
    let wharf = Wharf::start(&upstream, |e| {
        e.username = None;
        e.password = None;
        e.docker_config = Some(config_json.clone());
    });
    let r = wharf.get("/v2/hub/team/busybox/manifests/1");
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(text.contains(&upstream.url()), "{text}");
    assert!(text.contains(&config_json.display().to_string()), "{text}");
    assert!(
        !text.contains(wrong) && !text.contains(UPSTREAM_USER.1),
        "{text}"
    );
    let err = skopeo_pull(
        &format!("{}/hub/team/busybox:1", wharf.host()),
        &work.path().join("pulled"),
    )
    .expect_err("refused upstream");
    // skopeo shows only the status of a 502, never a secret.
    assert!(err.contains("502"), "{err}");
    assert!(!err.contains(wrong), "{err}");
    eprintln!("{text}");
}

#[test]
#[ignore = "needs docker-registry, skopeo, busybox-static, apache2-utils"]
fn a_changed_docker_config_is_read_again_without_a_restart() {
    let (upstream, work) = upstream_with_image(b"one");
    let config_json = work.path().join("upstream-auth.json");
    let write = |password: &str| {
        std::fs::write(
            &config_json,
            wharf_oci::auth_config_json(&upstream.host(), UPSTREAM_USER.0, password),
        )
        .expect("write auth file");
    };
    write("wrong-pw");
    let wharf = Wharf::start(&upstream, |e| {
        e.username = None;
        e.password = None;
        e.docker_config = Some(config_json.clone());
    });
    let manifest = "/v2/hub/team/busybox/manifests/1";
    assert_eq!(wharf.get(manifest).status, StatusCode::BAD_GATEWAY);
    write(UPSTREAM_USER.1);
    // A later modification time, even on a file system with coarse timestamps.
    let later = std::time::SystemTime::now() + Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(&config_json)
        .and_then(|f| f.set_modified(later))
        .expect("set mtime");
    let r = wharf.get(manifest);
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[test]
#[ignore = "needs docker-registry, skopeo, busybox-static, apache2-utils"]
fn skopeo_push_to_a_proxied_prefix_is_refused() {
    let (upstream, work) = upstream_with_image(b"one");
    let wharf = Wharf::start(&upstream, |_| {});
    let image = wharf_testkit::build_busybox_image(&work.path().join("local"), &[]).expect("image");
    let err = image
        .push(&format!("{}/hub/team/mine:1", wharf.host()), None)
        .expect_err("push refused");
    assert!(err.to_string().contains("pull-through cache"), "{err}");
    let _ = wharf.dir.path();
}

/// Access control decides before the cache does anything: no upstream request for a caller the
/// policy refuses, and the push refusal only for callers allowed to push.
#[tokio::test]
async fn access_control_applies_to_proxied_repositories() {
    use wharf_registry::auth::htpasswd::hash_password;
    use wharf_registry::auth::{AuthConfig, ServerFacts, build};
    let f = fixture(good_layer());
    let upstream = StandIn::start(f.answers.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let users = [("alice", "a-pw"), ("bob", "b-pw")];
    let lines: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", hash_password(p, 4).expect("hash")))
        .collect();
    std::fs::write(dir.path().join("htpasswd"), lines).expect("htpasswd");
    let table: toml::Table = toml::from_str(
        r#"
mode = "basic"
htpasswd = "htpasswd"
[[allow]]
users = ["alice"]
repositories = ["hub/**"]
actions = ["pull", "push"]
[[allow]]
users = ["bob"]
repositories = ["team/**"]
actions = ["*"]
"#,
    )
    .expect("toml");
    let auth = AuthConfig::from_table(&table, dir.path()).expect("auth config");
    let root = dir.path().join("root");
    let setup = build(
        &auth,
        &ServerFacts {
            root: root.clone(),
            tls: false,
            default_host: "127.0.0.1:5000".into(),
        },
    )
    .expect("auth");
    let config = config_with(&root, vec![proxy_entry("hub/", &upstream.url())]);
    let app = router(
        app_state(&config, setup.authorizer).expect("state"),
        setup.routes.unwrap_or_default(),
    );
    let basic = |user: &str, pass: &str| {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let manifest = "/v2/hub/team/app/manifests/1";
    let uploads = "/v2/hub/team/app/blobs/uploads/";
    let call = |method: Method, uri: &'static str, user: Option<(&str, &str)>| {
        let app = app.clone();
        let authorization = user.map(|(u, p)| basic(u, p));
        async move {
            let headers: Vec<(&str, &str)> = authorization
                .as_deref()
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            common::send(&app, method, uri, &headers, Body::empty()).await
        }
    };
    let (alice, bob) = (Some(("alice", "a-pw")), Some(("bob", "b-pw")));

    assert_eq!(
        call(Method::GET, manifest, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(Method::GET, manifest, bob).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(Method::POST, uploads, bob).await.status,
        StatusCode::FORBIDDEN,
        "denied before refused"
    );
    assert_eq!(
        upstream.gets("/v2/team/app/manifests/1"),
        0,
        "the upstream was not asked"
    );

    let pulled = call(Method::GET, manifest, alice).await;
    assert_eq!(pulled.status, StatusCode::OK);
    assert_eq!(pulled.body.as_ref(), f.manifest.as_slice());
    assert_eq!(
        call(Method::POST, uploads, alice).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // Cached now, yet still refused to bob.
    assert_eq!(
        call(Method::GET, manifest, bob).await.status,
        StatusCode::FORBIDDEN
    );
}

/// Pull-through onto a full disk (regression, found pulling through a cache on a small tmpfs):
/// when the storage refused the download, the fetch stopped reading the upstream, so every
/// client's pull was cut short, and the log blamed the upstream for the digest of the part
/// received. Now the clients get the whole blob, checked, a client behind the bytes held reads
/// the part written from the download's file, and nothing is stored or left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root (mounts a tmpfs): run by scripts/test-all.sh"]
async fn a_full_disk_still_serves_pulls_through_the_cache() {
    let disk = wharf_testkit::Tmpfs::mount("size=4m").expect("a tmpfs");
    let layer = patterned(12 << 20);
    let f = fixture_with_layer(
        &layer,
        Canned {
            content_type: "application/octet-stream",
            body: layer.clone(),
            ..Canned::default()
        },
    );
    let upstream = StandIn::start(f.answers.clone());
    let root = disk.path().join("registry");
    let config = config_with(&root, vec![proxy_entry("hub/", &upstream.url())]);
    let app = open_app(&config);
    let (status, manifest) = get_through(&app, "/v2/hub/team/app/manifests/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(manifest.expect("manifest"), f.manifest);
    let uri = format!("/v2/hub/team/app/blobs/{}", f.layer_digest);

    // A slow client: its first MiB, then nothing while the download fills the disk.
    let (status, mut slow) = start_get(&app, &uri).await;
    assert_eq!(status, StatusCode::OK);
    let mut slow_got = read_at_least(&mut slow, 1 << 20, "the slow client").await;
    // A client that reads as fast as it can, meanwhile.
    let (status, fast) = get_through(&app, &uri).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        fast.expect("the fast client's body") == layer,
        "the fast client's blob differs"
    );
    slow_got.extend(read_rest(slow).await.expect("the slow client's body"));
    assert!(slow_got == layer, "the slow client's blob differs");

    // Nothing stored, and the download's session goes once its readers are done.
    for _ in 0..500 {
        if walkdir(root.join("uploads")).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(walkdir(root.join("uploads")), Vec::<String>::new());
    assert!(!stored_blob_names(&root).contains(&f.layer_digest[7..].to_string()));
    // And the next pull is served again, from the upstream.
    let (status, again) = get_through(&app, &uri).await;
    assert_eq!(status, StatusCode::OK);
    assert!(again.expect("body") == layer);
}
