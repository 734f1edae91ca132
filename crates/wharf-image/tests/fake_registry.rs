//! Pull paths that need a misbehaving registry: a connection cut in the middle of a layer
//! (resumed with `Range`), a corrupted blob (refused, nothing stored), a multi-platform index,
//! a schema 1 manifest. The registry is a few lines over a loopback socket, so every answer is
//! exactly as written here.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{Layer, fingerprint, write_layout, write_layout_compressed};
use sha2::{Digest as _, Sha256};
use wharf_image::{ImageError, Platform, PullEvent, PullOptions, Store};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Blobs {
    AsStored,
    /// The first GET of each layer stops halfway and closes; `Range` requests are honoured.
    CutOnce,
    /// One byte of every layer is changed.
    Corrupt,
    /// Bearer auth: the token server at `/token` numbers its tokens; manifests take any, blobs
    /// only the second and later ones (the first has "expired" by then).
    ExpiringTokens,
    /// The first layer GET (of any layer) sends half, then stalls for a minute.
    StallOnce,
    /// Every layer GET sends the layer without a `Content-Length`, then more bytes until the
    /// client stops reading.
    Endless,
}

/// Manifests by tag or digest: (content type, body).
type Manifests = Arc<Mutex<HashMap<String, (String, Vec<u8>)>>>;

struct Fake {
    host: String,
    manifests: Manifests,
    blobs: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    range_requests: Arc<AtomicUsize>,
    tokens_issued: Arc<AtomicUsize>,
    /// Bytes sent past the layers' ends ([`Blobs::Endless`]).
    sent_past_the_end: Arc<AtomicUsize>,
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl Fake {
    fn start(mode: Blobs) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let manifests: Manifests = Arc::default();
        let blobs: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let range_requests = Arc::new(AtomicUsize::new(0));
        let tokens_issued = Arc::new(AtomicUsize::new(0));
        let sent_past_the_end = Arc::new(AtomicUsize::new(0));
        let past_the_end = sent_past_the_end.clone();
        let tokens = tokens_issued.clone();
        let realm = format!("http://{host}/token");
        let cut: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let (m, b, r) = (manifests.clone(), blobs.clone(), range_requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut range = None;
                let mut bearer: Option<usize> = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("authorization: Bearer t") {
                        bearer = v.trim().parse().ok();
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                    }
                }
                let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
                let reply = |stream: &mut std::net::TcpStream,
                             status: &str,
                             headers: &str,
                             body: &[u8],
                             send: usize| {
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&body[..send]);
                };
                if path.starts_with("/token") {
                    let n = tokens.fetch_add(1, Ordering::SeqCst) + 1;
                    let body = format!(r#"{{"token":"t{n}"}}"#);
                    reply(&mut stream, "200 OK", "", body.as_bytes(), body.len());
                    continue;
                }
                if mode == Blobs::ExpiringTokens && path != "/v2/" {
                    let is_blob = path.contains("/blobs/");
                    let accepted = match bearer {
                        Some(n) => !is_blob || n >= 2,
                        None => false,
                    };
                    if !accepted {
                        let challenge = format!(
                            "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\"\r\n"
                        );
                        reply(&mut stream, "401 Unauthorized", &challenge, b"{}", 2);
                        continue;
                    }
                }
                if path == "/v2/" {
                    reply(&mut stream, "200 OK", "", b"{}", 2);
                } else if let Some(reference) = path.split("/manifests/").nth(1) {
                    match m.lock().expect("lock").get(reference) {
                        Some((ct, body)) => reply(
                            &mut stream,
                            "200 OK",
                            &format!("Content-Type: {ct}\r\n"),
                            body,
                            body.len(),
                        ),
                        None => reply(&mut stream, "404 Not Found", "", b"{}", 2),
                    }
                } else if let Some(digest) = path.split("/blobs/").nth(1) {
                    let Some(mut body) = b.lock().expect("lock").get(digest).cloned() else {
                        reply(&mut stream, "404 Not Found", "", b"{}", 2);
                        continue;
                    };
                    let is_layer = body.starts_with(&[0x1f, 0x8b]);
                    if mode == Blobs::Corrupt && is_layer {
                        let last = body.len() - 9; // inside the deflate data, before the trailer
                        body[last] ^= 0xff;
                    }
                    match range {
                        Some(start) => {
                            r.fetch_add(1, Ordering::SeqCst);
                            let rest = body[start..].to_vec();
                            let headers = format!(
                                "Content-Range: bytes {start}-{}/{}\r\n",
                                body.len() - 1,
                                body.len()
                            );
                            reply(
                                &mut stream,
                                "206 Partial Content",
                                &headers,
                                &rest,
                                rest.len(),
                            );
                        }
                        None if mode == Blobs::CutOnce
                            && is_layer
                            && cut.lock().expect("lock").insert(digest.to_string()) =>
                        {
                            let half = body.len() / 2;
                            reply(&mut stream, "200 OK", "", &body, half);
                        }
                        None if mode == Blobs::StallOnce
                            && is_layer
                            && cut.lock().expect("lock").insert("stalled".into()) =>
                        {
                            let half = body.len() / 2;
                            reply(&mut stream, "200 OK", "", &body, half);
                            // Keep the connection open without a byte more (in its own thread:
                            // other requests are answered meanwhile).
                            std::thread::spawn(move || {
                                std::thread::sleep(std::time::Duration::from_secs(60));
                                drop(stream);
                            });
                        }
                        None if mode == Blobs::Endless && is_layer => {
                            let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
                            let _ = stream.write_all(head.as_bytes());
                            let _ = stream.write_all(&body);
                            let past_the_end = past_the_end.clone();
                            std::thread::spawn(move || {
                                let more = [0u8; 1 << 16];
                                while stream.write_all(&more).is_ok() {
                                    past_the_end.fetch_add(more.len(), Ordering::SeqCst);
                                }
                            });
                        }
                        None => reply(&mut stream, "200 OK", "", &body, body.len()),
                    }
                } else {
                    reply(&mut stream, "404 Not Found", "", b"{}", 2);
                }
            }
        });
        Fake {
            host,
            manifests,
            blobs,
            range_requests,
            tokens_issued,
            sent_past_the_end,
        }
    }

    /// Serve the image of an OCI layout as `repo:tag` (its manifest and blobs).
    fn serve_layout(&self, layout: &wharf_testkit::OciLayout, tag: &str) -> String {
        let blobs_dir = layout.path.join("blobs/sha256");
        for entry in std::fs::read_dir(&blobs_dir).expect("blobs") {
            let entry = entry.expect("entry");
            let data = std::fs::read(entry.path()).expect("blob");
            self.blobs.lock().expect("lock").insert(sha(&data), data);
        }
        let manifest = self.blobs.lock().expect("lock")[&layout.manifest_digest].clone();
        self.add_manifest(tag, "application/vnd.oci.image.manifest.v1+json", manifest);
        layout.manifest_digest.clone()
    }

    fn add_manifest(&self, reference: &str, content_type: &str, body: Vec<u8>) {
        let mut m = self.manifests.lock().expect("lock");
        m.insert(sha(&body), (content_type.to_string(), body.clone()));
        m.insert(reference.to_string(), (content_type.to_string(), body));
    }
}

fn big_layers() -> Vec<Vec<u8>> {
    // Incompressible content, so "halfway" is well inside the layer.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..300_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    vec![
        Layer::new()
            .dir("data", 0o755)
            .file("data/noise", &noise, 0o644)
            .finish(),
        Layer::new()
            .file("data/second", &noise[..100_000], 0o600)
            .finish(),
    ]
}

fn pull(
    store: &Store,
    image: &str,
    opts: &PullOptions,
) -> (Result<wharf_image::ImageRecord, ImageError>, Vec<PullEvent>) {
    let events = Mutex::new(Vec::new());
    let on_event = |e: PullEvent| events.lock().expect("lock").push(e);
    let result = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(wharf_image::pull(store, image, opts, &on_event));
    (result, events.into_inner().expect("lock"))
}

/// The fake registry answering with `blobs`, serving the big layers' image as tag `1`; the
/// layout folder lives as long as the guard.
fn serving_big_layers(blobs: Blobs) -> (Fake, tempfile::TempDir) {
    let fake = Fake::start(blobs);
    let layout_dir = tempfile::tempdir().expect("tempdir");
    let layout = write_layout(layout_dir.path(), &big_layers());
    fake.serve_layout(&layout, "1");
    (fake, layout_dir)
}

/// An empty store in a folder of its own.
fn fresh_store() -> (tempfile::TempDir, Store) {
    let home = tempfile::tempdir().expect("home");
    let store = Store::open(home.path()).expect("store");
    (home, store)
}

fn store_is_empty(home: &std::path::Path) -> bool {
    ["layers", "images", "tmp"].iter().all(|d| {
        std::fs::read_dir(home.join(d))
            .map(|mut e| e.next().is_none())
            .unwrap_or(true)
    })
}

#[test]
fn a_connection_cut_mid_layer_is_resumed_with_range() {
    let (fake, _layout) = serving_big_layers(Blobs::CutOnce);
    let (home, store) = fresh_store();
    let (result, events) = pull(
        &store,
        &format!("{}/cut/app:1", fake.host),
        &PullOptions::default(),
    );
    let record = result.expect("pull resumes");
    assert_eq!(
        fake.range_requests.load(Ordering::SeqCst),
        2,
        "one resume per layer"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, PullEvent::Warning(w) if w.contains("resuming")))
    );
    let merged = home.path().join("merged");
    store.flatten(&record, &merged).expect("flatten");
    assert_eq!(
        std::fs::metadata(merged.join("data/noise"))
            .expect("noise")
            .len(),
        300_000
    );
}

#[test]
fn a_corrupted_layer_is_refused_and_nothing_is_stored() {
    let (fake, _layout) = serving_big_layers(Blobs::Corrupt);
    let (home, store) = fresh_store();
    let (result, _) = pull(
        &store,
        &format!("{}/bad/app:1", fake.host),
        &PullOptions::default(),
    );
    let err = result.expect_err("corrupt");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
    assert!(store_is_empty(home.path()));
}

/// Regression: a layer was read for as long as the registry sent it and the unpacker took it,
/// past the size its manifest gives: a registry sending an endless compressed file filled the
/// disk. Now the size bounds the download (and so what it can unpack to). Here the bytes past
/// the end follow a whole layer; the pull is refused as soon as they start.
#[test]
fn a_layer_longer_than_its_manifest_says_is_cut_there_and_nothing_is_stored() {
    let (fake, _layout) = serving_big_layers(Blobs::Endless);
    let (home, store) = fresh_store();
    let (result, _) = pull(
        &store,
        &format!("{}/bad/app:1", fake.host),
        &PullOptions::default(),
    );
    let err = result.expect_err("refused").to_string();
    assert!(
        err.contains("bytes the manifest gives for it: refused, nothing kept"),
        "{err}"
    );
    assert!(store_is_empty(home.path()));
    // The server writes until its writes fail: the client stopped reading near the end.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let past = fake.sent_past_the_end.load(Ordering::SeqCst);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        past,
        fake.sent_past_the_end.load(Ordering::SeqCst),
        "still read"
    );
    assert!(past < 32 << 20, "{past} bytes past the end");
}

/// Docker stacks at most 125 layers ("max depth exceeded"); so does wharf, and a deeper image
/// is refused before anything is fetched: each layer is a folder of its own and a lower layer
/// of every mount, and a 4 MiB manifest can name about 28,000.
#[test]
fn an_image_of_more_than_125_layers_is_refused_before_anything_is_fetched() {
    let fake = Fake::start(Blobs::AsStored);
    let layers = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                Layer::new()
                    .file(&format!("layer-{i:03}"), format!("{i}").as_bytes(), 0o644)
                    .finish()
            })
            .collect()
    };
    let deepest_dir = tempfile::tempdir().expect("tempdir");
    fake.serve_layout(&write_layout(deepest_dir.path(), &layers(125)), "deepest");
    let deeper_dir = tempfile::tempdir().expect("tempdir");
    fake.serve_layout(&write_layout(deeper_dir.path(), &layers(126)), "too-deep");

    let (home, store) = fresh_store();
    let record = pull(
        &store,
        &format!("{}/deep/app:deepest", fake.host),
        &PullOptions::default(),
    )
    .0
    .expect("125 layers pull");
    let merged = home.path().join("merged");
    store.flatten(&record, &merged).expect("flatten");
    assert!(merged.join("layer-000").is_file() && merged.join("layer-124").is_file());

    let (home, store) = fresh_store();
    let (result, events) = pull(
        &store,
        &format!("{}/deep/app:too-deep", fake.host),
        &PullOptions::default(),
    );
    let err = result.expect_err("126 layers");
    let message = err.to_string();
    assert!(
        message.contains("126 layers, more than the 125")
            && message.contains("max depth exceeded")
            && message.contains("deep/app:too-deep"),
        "{message}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, PullEvent::LayerStart { .. } | PullEvent::Manifest(_))),
        "nothing fetched past the manifest"
    );
    assert!(store_is_empty(home.path()));
}

#[test]
fn an_index_gives_the_asked_platform_and_schema1_is_refused() {
    let fake = Fake::start(Blobs::AsStored);
    let amd_dir = tempfile::tempdir().expect("tempdir");
    let amd = write_layout(
        amd_dir.path(),
        &[Layer::new().file("arch", b"amd64", 0o644).finish()],
    );
    let arm_dir = tempfile::tempdir().expect("tempdir");
    let arm = write_layout(
        arm_dir.path(),
        &[Layer::new().file("arch", b"arm64", 0o644).finish()],
    );
    let amd_digest = fake.serve_layout(&amd, "amd-only");
    let arm_digest = fake.serve_layout(&arm, "arm-only");
    let entry = |digest: &str, arch: &str, variant: Option<&str>| {
        let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": 1, "platform": platform})
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&arm_digest, "arm64", Some("v8")), entry(&amd_digest, "amd64", None)],
    });
    fake.add_manifest(
        "multi",
        "application/vnd.oci.image.index.v1+json",
        serde_json::to_vec(&index).expect("json"),
    );
    let image = format!("{}/multi/app:multi", fake.host);

    for (platform, want) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
        let home = tempfile::tempdir().expect("home");
        let store = Store::open(home.path()).expect("store");
        let opts = PullOptions {
            platform: Platform::parse(platform).expect("platform"),
            ..PullOptions::default()
        };
        let record = pull(&store, &image, &opts).0.expect("pull");
        let merged = home.path().join("merged");
        store.flatten(&record, &merged).expect("flatten");
        assert_eq!(
            std::fs::read(merged.join("arch")).expect("arch"),
            want.as_bytes()
        );
    }

    let (home, store) = fresh_store();
    let s390 = PullOptions {
        platform: Platform::parse("linux/s390x").expect("platform"),
        ..PullOptions::default()
    };
    let err = pull(&store, &image, &s390).0.expect_err("no s390x");
    assert!(
        err.to_string()
            .contains("has no linux/s390x variant (it has: linux/arm64/v8, linux/amd64)"),
        "{err}"
    );

    fake.add_manifest(
        "old",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        br#"{"schemaVersion":1,"name":"old/app","tag":"old","fsLayers":[]}"#.to_vec(),
    );
    let err = pull(
        &store,
        &format!("{}/old/app:old", fake.host),
        &PullOptions::default(),
    )
    .0
    .expect_err("schema 1");
    assert!(matches!(err, ImageError::Schema1 { .. }), "{err}");
    assert!(store_is_empty(home.path()));
}

#[test]
fn zstd_layers_of_several_frames_unpack_like_gzip_ones() {
    let fake = Fake::start(Blobs::AsStored);
    let layers = big_layers();
    let mut trees = Vec::new();
    for (tag, zstd) in [("gzip", false), ("zstd", true)] {
        let layout_dir = tempfile::tempdir().expect("tempdir");
        let layout = write_layout_compressed(layout_dir.path(), &layers, zstd);
        fake.serve_layout(&layout, tag);
        let home = tempfile::tempdir().expect("home");
        let store = Store::open(home.path()).expect("store");
        let record = pull(
            &store,
            &format!("{}/z/app:{tag}", fake.host),
            &PullOptions::default(),
        )
        .0
        .expect("pull");
        let merged = home.path().join("merged");
        store.flatten(&record, &merged).expect("flatten");
        trees.push(fingerprint(&merged, &[]));
    }
    assert_eq!(trees[0], trees[1]);
    assert!(trees[1].contains_key("data/noise"));
}

#[test]
fn an_expired_bearer_token_is_refreshed_once() {
    let (fake, _layout) = serving_big_layers(Blobs::ExpiringTokens);
    let (_home, store) = fresh_store();
    let (result, _) = pull(
        &store,
        &format!("{}/tok/app:1", fake.host),
        &PullOptions::default(),
    );
    result.expect("pull with a refreshed token");
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 2);
}

/// The child side of `a_killed_pull_leaves_nothing_half_done`: pulls `WHARF_TEST_PULL_REF` into
/// `WHARF_TEST_PULL_HOME` when set; does nothing otherwise.
#[test]
fn child_pull_when_asked() {
    let (Ok(reference), Ok(home)) = (
        std::env::var("WHARF_TEST_PULL_REF"),
        std::env::var("WHARF_TEST_PULL_HOME"),
    ) else {
        return;
    };
    let store = Store::open(&home).expect("store");
    let _ = pull(&store, &reference, &PullOptions::default());
}

#[test]
fn a_killed_pull_leaves_nothing_half_done() {
    let (fake, _layout) = serving_big_layers(Blobs::StallOnce);
    let reference = format!("{}/stall/app:1", fake.host);
    let home = tempfile::tempdir().expect("home");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_pull_when_asked"])
        .env("WHARF_TEST_PULL_REF", &reference)
        .env("WHARF_TEST_PULL_HOME", home.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Wait until it is mid-layer: a layer folder in tmp/ with something unpacked in it.
    let mid_layer = || {
        std::fs::read_dir(home.path().join("tmp")).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with("layer-")
                    && std::fs::read_dir(e.path()).is_ok_and(|mut d| d.next().is_some())
            })
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !mid_layer() {
        assert!(
            std::time::Instant::now() < deadline,
            "the child never got mid-layer"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");

    let store = Store::open(home.path()).expect("store");
    let visible = |dir: &str| {
        std::fs::read_dir(home.path().join(dir))
            .expect("dir")
            .count()
    };
    assert_eq!(visible("layers"), 0, "no half layer published");
    assert_eq!(visible("images"), 0);
    assert!(store.images().expect("images").is_empty());

    assert!(visible("tmp") > 0, "the killed pull left its partial files");

    // The next pull (the registry answers normally now) completes, and removes the killed
    // pull's debris first: nobody would ever resume or remove it otherwise.
    let (record, events) = pull(&store, &reference, &PullOptions::default());
    let record = record.expect("pull again");
    assert!(store.is_complete(&record));
    assert_eq!(visible("tmp"), 0);
    assert!(
        events.iter().any(
            |e| matches!(e, PullEvent::Info(i) if i.contains("leftover(s) of interrupted pulls"))
        ),
        "{events:?}"
    );
    let merged = home.path().join("merged");
    store.flatten(&record, &merged).expect("flatten");
    assert_eq!(
        std::fs::metadata(merged.join("data/noise"))
            .expect("noise")
            .len(),
        300_000
    );
}

/// A registry whose manifest answers never end: `/manifests/big` a 200, anything else a 404,
/// each with a chunked body of spaces (at most 256 MiB, then it closes). Returns its host and
/// the bytes it managed to send.
fn endless_registry() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                let path = request_line.split(' ').nth(1).unwrap_or("");
                if path == "/v2/" {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    );
                    return;
                }
                let status = if path.ends_with("/manifests/big") {
                    "200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json"
                } else {
                    "404 Not Found\r\nContent-Type: application/json"
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                for _ in 0..4096 {
                    if stream.write_all(chunk.as_bytes()).is_err() {
                        return;
                    }
                    counter.fetch_add(0x10000, Ordering::SeqCst);
                }
            });
        }
    });
    (host, sent)
}

/// Regression: a manifest, an image config and an error answer were read whole, whatever
/// their length: a registry streaming an endless one made `wharf pull` hold all of it. Now a
/// manifest stops at 4 MiB (refused, naming the URL) and an error's message at 1 MiB.
#[test]
fn an_endless_manifest_or_error_answer_is_cut_not_held() {
    for (tag, expected) in [
        ("big", "is larger than 4 MiB: refused"),
        ("missing", "not found on registry"),
    ] {
        let (host, sent) = endless_registry();
        let (_home, store) = fresh_store();
        let (result, _) = pull(
            &store,
            &format!("{host}/team/app:{tag}"),
            &PullOptions::default(),
        );
        let err = result.expect_err("refused").to_string();
        assert!(
            err.contains(expected),
            "{tag}: {}",
            &err[..err.len().min(400)]
        );
        assert!(err.len() < 2000, "{tag}: a message of {} bytes", err.len());
        // The server goes on until its writes fail: the client stopped reading.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let sent = sent.load(Ordering::SeqCst);
        assert!(sent < 32 << 20, "{tag}: {sent} bytes sent");
    }
}

/// Regression: a layer that arrives whole (its digest checks) but is no tar was reported as
/// "does not match its digest ... a broken proxy or a corrupt registry": the download stopped
/// when the unpacker failed and checked the digest of the part it had. The unpacker's error is
/// the one reported now (bytes damaged on the way are still a digest mismatch, above), and
/// nothing is stored. Its header's bytes reach the message: `wharf` prints it through
/// `wharf_oci::printable`, so the escape sequences in it are no terminal commands.
#[test]
fn a_whole_layer_that_is_no_tar_reports_the_unpacker_s_error() {
    let mut header = vec![0u8; 512];
    header[..5].copy_from_slice(b"hello");
    header[148..156].copy_from_slice(b"\x1b]0;pwn\x07");
    // Long enough (and incompressible) to still be arriving when the unpacker gives up.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    header.extend((0..4 << 20).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    }));
    let fake = Fake::start(Blobs::AsStored);
    let layout_dir = tempfile::tempdir().expect("tempdir");
    let layout = write_layout(layout_dir.path(), &[header]);
    fake.serve_layout(&layout, "1");
    let (home, store) = fresh_store();
    let (result, _) = pull(
        &store,
        &format!("{}/notar/app:1", fake.host),
        &PullOptions::default(),
    );
    let err = result.expect_err("no tar");
    assert!(matches!(err, ImageError::Layer { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("\u{1b}]0;pwn"), "the premise: {text:?}");
    assert!(!wharf_oci::printable(&text).contains('\u{1b}'));
    assert!(store_is_empty(home.path()));
}
