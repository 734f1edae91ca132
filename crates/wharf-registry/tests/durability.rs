//! The registry under failure and load, in process and over a real socket: pushes interrupted
//! mid-body never expose a partial blob, concurrent pushes of one blob and tag are safe, gc keeps
//! exactly the tagged closure, the socket server shuts down gracefully, and (ignored) a skopeo
//! round trip. Each runs on the filesystem and (an ignored tier, on a real Ceph RGW) on S3, but
//! for the filesystem's own leftovers of a kill -9. The endpoints one by one are in `api.rs`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{Method, StatusCode};
use wharf_registry::auth::AllowAll;
use wharf_registry::{GcOptions, app_state, router};

mod common;

use common::*;

/// A request body that delivers some bytes and then fails, like a client killed mid-push.
fn failing_body(prefix: &'static [u8]) -> Body {
    let chunks: Vec<Result<Bytes, io::Error>> = vec![
        Ok(Bytes::from_static(prefix)),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    Body::from_stream(futures_util::stream::iter(chunks))
}

async fn interrupted_pushes_never_make_a_partial_blob_visible() {
    let reg = registry();
    let full = b"the complete layer content";
    let digest = digest_of(full);

    // Monolithic push cut off mid-body.
    let r = reg
        .send(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={digest}"),
            &[],
            failing_body(b"the compl"),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
    let parsed = wharf_registry::names::Digest::parse(&digest).expect("digest");
    assert_eq!(reg.storage.blob_info(&parsed).await.expect("info"), None);

    // Chunked push cut off: the received part stays in the session, the client resumes from it.
    let location = reg
        .call(Method::POST, "/v2/app/blobs/uploads/", &[], b"")
        .await
        .header("location")
        .to_string();
    let r = reg
        .send(Method::PATCH, &location, &[], failing_body(b"the comp"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let status = reg.get(&location).await;
    assert_eq!(status.header("range"), "0-7");
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );

    // A "restart" (new router on the same storage, sessions only there): the upload resumes and
    // the digest is verified by re-reading what was stored.
    let app = app_with(&reg.config, Arc::new(AllowAll));
    let r = send(
        &app,
        Method::PATCH,
        &location,
        &[("content-range", "8-25")],
        Body::from(&full[8..]),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = send(
        &app,
        Method::PUT,
        &format!("{location}?digest={digest}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let got = send(
        &app,
        Method::GET,
        &format!("/v2/app/blobs/{digest}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(
        &follow_blob_redirect(got, Method::GET, &[]).await.body[..],
        full
    );
}

/// A push of several MiB cut off mid-body in its closing PUT (larger than the filesystem's 4 MiB
/// write blocks, the cut inside one): no blob appears, the session reports what arrived, and
/// the client finishes from there with a digest checked over the whole upload. Filesystem only:
/// S3 takes a whole upload in its closing request straight to the blob, and a cut there leaves
/// the session empty (see `put_whole_upload`).
#[tokio::test]
async fn a_big_push_cut_mid_body_resumes_from_what_arrived() {
    let reg = registry();
    let full: Vec<u8> = (0..9 * 1024 * 1024 + 321)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = digest_of(&full);
    let arrived = 5 * 1024 * 1024 + 777;
    let location = reg
        .call(Method::POST, "/v2/app/blobs/uploads/", &[], b"")
        .await
        .header("location")
        .to_string();
    let mut chunks: Vec<Result<Bytes, io::Error>> = full[..arrived]
        .chunks(64 * 1024 + 1)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    chunks.push(Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "client went away",
    )));
    let r = reg
        .send(
            Method::PUT,
            &with_digest(&location, &digest),
            &[],
            Body::from_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
    let status = reg.get(&location).await;
    assert_eq!(status.header("range"), format!("0-{}", arrived - 1));

    let rest = format!("{arrived}-{}", full.len() - 1);
    let r = reg
        .send(
            Method::PATCH,
            &location,
            &[("content-range", &rest)],
            Body::from(full[arrived..].to_vec()),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = reg
        .send(
            Method::PUT,
            &with_digest(&location, &digest),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let got = reg.get(&format!("/v2/app/blobs/{digest}")).await;
    assert!(got.body[..] == full[..], "the blob's bytes differ");
}

/// What a kill -9 leaves on the filesystem: a temporary file and an upload folder. Neither is
/// ever served, and gc removes them once stale. (On S3: the multipart uploads of `s3.rs`.)
#[tokio::test]
async fn kill_9_leftovers_are_never_served_and_gc_removes_them() {
    let reg = registry();
    let stray = digest_of(b"stray");
    std::fs::create_dir_all(reg.root().join("tmp")).expect("mkdir");
    std::fs::write(reg.root().join("tmp/0123abcd"), b"stray").expect("write");
    std::fs::create_dir_all(reg.root().join("uploads/deadbeef")).expect("mkdir");
    std::fs::write(reg.root().join("uploads/deadbeef/data"), b"stray").expect("write");
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{stray}")).await.status,
        StatusCode::NOT_FOUND
    );
    let report = wharf_registry::gc(
        &reg.root(),
        &GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
            upload_expiry: Duration::ZERO,
        },
    )
    .expect("gc");
    assert!(report.uploads_removed >= 1);
    assert!(report.temporary_files_removed >= 1);
    assert!(!reg.root().join("uploads/deadbeef").exists());
    assert!(!reg.root().join("tmp/0123abcd").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_the_same_blob_and_tag_are_safe() {
    concurrent_pushes().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: run by scripts/test-all.sh"]
async fn concurrent_pushes_of_the_same_blob_and_tag_are_safe_on_s3() {
    on_s3(concurrent_pushes()).await
}

async fn concurrent_pushes() {
    let reg = Arc::new(registry());
    let layer: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let digest = digest_of(&layer);
    let config = reg.push_blob("app", b"{}").await;

    let mut tasks = Vec::new();
    for i in 0..8 {
        let reg = reg.clone();
        let layer = layer.clone();
        let digest = digest.clone();
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            // Half chunked, half monolithic.
            if i % 2 == 0 {
                let r = reg
                    .call(
                        Method::POST,
                        &format!("/v2/app/blobs/uploads/?digest={digest}"),
                        &[],
                        &layer,
                    )
                    .await;
                assert_eq!(r.status, StatusCode::CREATED);
            } else {
                let loc = reg
                    .call(Method::POST, "/v2/app/blobs/uploads/", &[], b"")
                    .await
                    .header("location")
                    .to_string();
                let (a, b) = layer.split_at(70_000);
                reg.call(Method::PATCH, &loc, &[], a).await;
                let r = reg
                    .call(Method::PUT, &format!("{loc}?digest={digest}"), &[], b)
                    .await;
                assert_eq!(r.status, StatusCode::CREATED);
            }
            // Each pushes a distinct manifest (annotation) to the same tag.
            let mut m: serde_json::Value =
                serde_json::from_slice(&image_manifest(&config, 2, &digest, layer.len(), None))
                    .expect("json");
            m["annotations"] = serde_json::json!({"writer": i.to_string()});
            let m = serde_json::to_vec(&m).expect("json");
            let r = reg.push_manifest("app", "latest", OCI_MANIFEST, &m).await;
            assert_eq!(r.status, StatusCode::CREATED);
            m
        }));
    }
    let mut pushed = Vec::new();
    for t in tasks {
        pushed.push(t.await.expect("task"));
    }
    let got = reg.get(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(got.body.len(), layer.len());
    assert_eq!(digest_of(&got.body), digest);
    let latest = reg.get("/v2/app/manifests/latest").await;
    assert_eq!(latest.status, StatusCode::OK);
    assert!(
        pushed.iter().any(|m| m[..] == latest.body[..]),
        "the tag names one complete manifest"
    );
    assert_eq!(
        reg.storage.upload_list().await.expect("list").len(),
        0,
        "no session left behind"
    );
}

async fn gc_keeps_the_tagged_closure_and_removes_the_rest() {
    let reg = registry();
    let kept = reg.push_image("app", "v1", b"kept layer").await;
    let orphan = reg.push_blob("app", b"orphan layer").await;
    // An untagged manifest (and its own layer) and a referrer of the tagged one.
    let config = digest_of(br#"{"architecture":"amd64","os":"linux"}"#);
    let untagged_layer = reg.push_blob("app", b"untagged layer").await;
    let untagged = image_manifest(&config, 37, &untagged_layer, 14, None);
    assert_eq!(
        reg.push_manifest("app", &digest_of(&untagged), OCI_MANIFEST, &untagged)
            .await
            .status,
        StatusCode::CREATED
    );
    let sig_layer = reg.push_blob("app", b"sig").await;
    let sig = image_manifest(
        &config,
        37,
        &sig_layer,
        3,
        Some((&digest_of(&kept), kept.len())),
    );
    assert_eq!(
        reg.push_manifest("app", &digest_of(&sig), OCI_MANIFEST, &sig)
            .await
            .status,
        StatusCode::CREATED
    );

    // Within the grace period nothing goes.
    let young = wharf_registry::gc_with_config(&reg.config, &GcOptions::default()).expect("gc");
    assert!(
        young.blobs_removed.is_empty() && young.manifests_removed.is_empty(),
        "{young:?}"
    );

    let dry = GcOptions {
        dry_run: true,
        grace: Duration::ZERO,
        upload_expiry: Duration::from_secs(3600),
    };
    let report = wharf_registry::gc_with_config(&reg.config, &dry).expect("gc");
    let mut removed: Vec<String> = report.blobs_removed.iter().map(|d| d.to_string()).collect();
    removed.sort();
    let mut expected = vec![orphan.clone(), untagged_layer.clone(), digest_of(&untagged)];
    expected.sort();
    assert_eq!(removed, expected);
    assert_eq!(
        report.manifests_removed,
        vec![format!("app@{}", digest_of(&untagged))]
    );
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{orphan}")).await.status,
        StatusCode::OK,
        "dry run removes nothing"
    );

    let real = GcOptions {
        dry_run: false,
        ..dry
    };
    let report = wharf_registry::gc_with_config(&reg.config, &real).expect("gc");
    assert_eq!(report.blobs_removed.len(), 3);
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{orphan}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        reg.get(&format!("/v2/app/manifests/{}", digest_of(&untagged)))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(reg.get("/v2/app/manifests/v1").await.body[..], kept[..]);
    assert_eq!(
        reg.get(&format!("/v2/app/manifests/{}", digest_of(&sig)))
            .await
            .status,
        StatusCode::OK,
        "referrers of kept manifests stay"
    );
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{}", digest_of(b"kept layer")))
            .await
            .status,
        StatusCode::OK
    );
}

/// Serves `state` with `serve_on` on a free loopback port, as `wharf registry serve` would, until
/// the returned sender is used (or dropped).
async fn serve_on_loopback(
    config: wharf_registry::Config,
    state: wharf_registry::AppState,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), wharf_registry::ServeError>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(wharf_registry::serve_on(
        listener,
        config,
        state,
        Router::new(),
        async {
            let _ = stop_rx.await;
        },
    ));
    // Ready once `/v2/` answers, as clients and load balancers see it: on S3 the server first
    // checks the bucket, and a cold RGW can take longer than a test's pauses (a stop sent
    // before then ends a server that never served, and its queued connections with it).
    // (The listener queues the request until then.)
    let ready = send_over_socket(addr, Method::GET, "/v2/", &[], Body::empty()).await;
    assert_eq!(ready.status, StatusCode::OK);
    (addr, stop_tx, server)
}

/// A real server on a loopback port: HEAD keeps Content-Length through hyper, and graceful
/// shutdown lets an upload that is in flight finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_serves_and_shuts_down_gracefully() {
    graceful_shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: run by scripts/test-all.sh"]
async fn real_server_serves_and_shuts_down_gracefully_on_s3() {
    on_s3(graceful_shutdown()).await
}

async fn graceful_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let state = app_state(&config, Arc::new(AllowAll)).expect("state");
    let (addr, stop_tx, server) = serve_on_loopback(config.clone(), state).await;

    let data = b"sent slowly";
    let digest = digest_of(data);
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /v2/app/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        data.len()
    );
    conn.write_all(head.as_bytes()).await.expect("write");
    conn.write_all(&data[..4]).await.expect("write");
    conn.flush().await.expect("flush");
    // Let the request reach the handler, then ask the server to stop mid-upload.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop_tx.send(());
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.write_all(&data[4..]).await.expect("write rest");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .expect("join")
        .expect("serve");

    // Stored whole: read back by a new server on the same storage.
    let got = send(
        &app_with(&config, Arc::new(AllowAll)),
        Method::GET,
        &format!("/v2/app/blobs/{digest}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(
        &follow_blob_redirect(got, Method::GET, &[]).await.body[..],
        data
    );
}

/// skopeo pushes an image to `serve` on loopback and copies it back.
#[test]
#[ignore = "needs skopeo and busybox-static: run by scripts/test-all.sh"]
fn skopeo_round_trip_against_serve() {
    skopeo_round_trip(Backend::Fs)
}

/// The same on S3, blobs redirected to presigned URLs: skopeo follows them to the bucket.
#[test]
#[ignore = "needs Ceph RGW, skopeo and busybox-static: run by scripts/test-all.sh"]
fn skopeo_round_trip_against_serve_on_s3() {
    skopeo_round_trip(Backend::S3)
}

fn skopeo_round_trip(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let data = dir.path().join("data");
    let config = match backend {
        Backend::Fs => config(&data),
        Backend::S3 => runtime.block_on(on_s3(async { config(&data) })),
    };
    let state = app_state(&config, Arc::new(AllowAll)).expect("state");
    let (addr, stop_tx, server) = runtime.block_on(serve_on_loopback(config, state));

    let image = wharf_testkit::build_busybox_image(&dir.path().join("image"), &[]).expect("image");
    let reference = format!("{addr}/team/busybox:1");
    image.push(&reference, None).expect("skopeo push");
    let raw = wharf_testkit::inspect_raw(&reference, None).expect("skopeo inspect");
    assert!(raw.contains("\"layers\""), "{raw}");
    let out = dir.path().join("pulled");
    let status = std::process::Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:t", out.display()),
        ])
        .status()
        .expect("skopeo runs");
    assert!(status.success());
    // Re-push: every blob is already there.
    image.push(&reference, None).expect("skopeo re-push");

    let _ = stop_tx.send(());
    runtime.block_on(server).expect("join").expect("serve");
}

/// Through hyper, a HEAD keeps the real Content-Length (clients read blob sizes from it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_head_reports_the_blob_size() {
    head_reports_the_blob_size().await
}

/// On S3 with blobs streamed through the registry (`redirect = false`): the size comes from the
/// bucket's metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: run by scripts/test-all.sh"]
async fn real_server_head_reports_the_blob_size_on_s3() {
    on_s3(head_reports_the_blob_size()).await
}

async fn head_reports_the_blob_size() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.storage.redirect = false;
    let state = app_state(&config, Arc::new(AllowAll)).expect("state");
    let data = b"twelve bytes";
    let digest = digest_of(data);
    let r = send(
        &router(state.clone(), Router::new()),
        Method::POST,
        &format!("/v2/app/blobs/uploads/?digest={digest}"),
        &[],
        Body::from(&data[..]),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let (addr, stop_tx, server) = serve_on_loopback(config, state).await;
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request =
        format!("HEAD /v2/app/blobs/{digest} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await.expect("read");
    let response = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 200"), "{response}");
    assert!(response.contains("content-length: 12\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\n"), "no body: {response}");
    let _ = stop_tx.send(());
    server.await.expect("join").expect("serve");
}

on_each_backend!(
    interrupted_pushes_never_make_a_partial_blob_visible,
    gc_keeps_the_tagged_closure_and_removes_the_rest
);

/// A full disk (regression, found by pushing to a registry on a small tmpfs): a push that
/// filled it kept the bytes it got onto disk in its session until the session expired, so
/// every later write (manifests, tags, other blobs) failed too; the client read a `500` naming
/// the server's paths. Now the failed request keeps nothing (the session is where the client
/// last saw it and accepts the same chunk again once there is room), the answer is `507` with
/// what to do, and tags written before are untouched by a manifest write the disk refused.
#[tokio::test]
#[ignore = "needs root (mounts a tmpfs): run by scripts/test-all.sh"]
async fn a_full_disk_keeps_nothing_of_the_refused_request_and_says_so() {
    let disk = wharf_testkit::Tmpfs::mount("size=8m").expect("a tmpfs");
    let root = disk.path().join("registry");
    let reg = registry_configured(
        tempfile::tempdir().expect("tempdir"),
        config(&root),
        Arc::new(AllowAll),
    );
    let before = reg.push_image("app", "v1", b"layer one").await;
    let big: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let root_text = root.display().to_string();
    let says_full = |r: &Resp| assert_storage_full(r, &root_text);

    // A chunked push larger than the disk: refused, and its session keeps none of it.
    let (location, r) = reg.patch_new_upload("app", &big).await;
    says_full(&r);
    assert_eq!(
        reg.upload_size(&location).await,
        0,
        "the refused chunk's bytes stayed"
    );
    // The same session takes a chunk that fits, and finishes with a checked digest.
    let small = &big[..64 * 1024];
    let r = reg.call(Method::PATCH, &location, &[], small).await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let done = reg
        .call(
            Method::PUT,
            &with_digest(&location, &digest_of(small)),
            &[],
            b"",
        )
        .await;
    assert_eq!(
        done.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&done.body)
    );

    // A monolithic push larger than the disk: refused, no blob, no session left behind.
    let digest = digest_of(&big);
    says_full(
        &reg.call(
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={digest}"),
            &[],
            &big,
        )
        .await,
    );
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
    let sessions = reg.storage.upload_list().await.expect("list");
    assert!(sessions.is_empty(), "sessions left: {sessions:?}");

    // With no room at all, an upload cannot start, and leaves no session without its info;
    // a manifest write is refused and the tag keeps its manifest.
    let filler = disk.fill().expect("fill the disk");
    says_full(
        &reg.call(Method::POST, "/v2/app/blobs/uploads/", &[], b"")
            .await,
    );
    let sessions = reg.storage.upload_list().await.expect("list");
    assert!(sessions.is_empty(), "sessions left: {sessions:?}");
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let c = digest_of(config);
    let l = digest_of(b"layer one");
    let changed = image_manifest(
        &c,
        config.len(),
        &l,
        9,
        Some((&digest_of(&before), before.len())),
    );
    says_full(&reg.push_manifest("app", "v1", OCI_MANIFEST, &changed).await);
    assert_eq!(&reg.get("/v2/app/manifests/v1").await.body[..], &before[..]);

    // Room again: the same write succeeds.
    std::fs::remove_file(filler).expect("remove filler");
    let r = reg.push_manifest("app", "v1", OCI_MANIFEST, &changed).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        &reg.get("/v2/app/manifests/v1").await.body[..],
        &changed[..]
    );
}

/// A storage failure other than a full disk (here a file where the registry needs a folder) is
/// a `500` that says which operation failed; the server's paths stay in its log (regression:
/// the client read the whole path, and on S3 the endpoint, bucket and key).
#[tokio::test]
async fn a_storage_failure_names_the_operation_but_no_server_path() {
    let reg = registry();
    let blob = reg.push_blob("app", b"layer").await;
    std::fs::write(
        reg.root().join("repositories").join("other"),
        b"not a folder",
    )
    .expect("plant a file");
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/other/blobs/uploads/?mount={blob}&from=app"),
            &[],
            b"",
        )
        .await;
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body.contains("the registry's storage failed ("), "{body}");
    let root = reg.root().display().to_string();
    assert!(
        !body.contains(&root),
        "a server path reached the client: {body}"
    );
}

/// gc on a full disk (regression): it wrote each flag of its protocol with the run's id in it
/// and removed expired uploads only after the blobs, so on a full disk it failed at its first
/// flag and freed nothing, exactly when it was needed. Now the flags are empty (no data block)
/// and expired uploads go first: gc frees a full disk. When even an empty file cannot be
/// made (no inode left), it says so and what to do.
#[tokio::test]
#[ignore = "needs root (mounts a tmpfs): run by scripts/test-all.sh"]
async fn gc_frees_a_full_disk() {
    let disk = wharf_testkit::Tmpfs::mount("size=8m,nr_inodes=400").expect("a tmpfs");
    let root = disk.path().join("registry");
    let reg = registry_configured(
        tempfile::tempdir().expect("tempdir"),
        config(&root),
        Arc::new(AllowAll),
    );
    let kept = reg.push_image("app", "v1", b"layer one").await;
    let orphan: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let orphan = reg.push_blob("app", &orphan).await;
    let filler = disk.fill().expect("fill the disk");
    let now = GcOptions {
        dry_run: false,
        grace: Duration::ZERO,
        upload_expiry: Duration::from_secs(3600),
    };
    let report = wharf_registry::gc_with_config(&reg.config, &now).expect("gc on a full disk");
    assert_eq!(
        report
            .blobs_removed
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>(),
        vec![orphan.clone()]
    );
    assert_eq!(&reg.get("/v2/app/manifests/v1").await.body[..], &kept[..]);
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{orphan}")).await.status,
        StatusCode::NOT_FOUND
    );
    std::fs::remove_file(filler).expect("remove filler");

    // No inode left at all: gc cannot make its flags, and says so.
    let orphan = reg.push_blob("app", b"another unused blob").await;
    let mut made = 0;
    while std::fs::write(disk.path().join(format!("inode-{made}")), b"").is_ok() {
        made += 1;
    }
    let err = wharf_registry::gc_with_config(&reg.config, &now).expect_err("no inode left");
    let text = err.to_string();
    assert!(text.contains("the storage is full"), "{text}");
    assert!(text.contains("free a few MiB more"), "{text}");
    assert_eq!(
        reg.get(&format!("/v2/app/blobs/{orphan}")).await.status,
        StatusCode::OK,
        "a gc that failed removed nothing"
    );
}
