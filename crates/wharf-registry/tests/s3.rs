//! What only the S3 backend does, on a real Ceph RGW (`rgw::` tests) and on moto's S3 server, a
//! second implementation (`moto::` tests; both `#[ignore]`d tiers run by
//! `scripts/test-all.sh`): replicas sharing a bucket continue each other's chunked uploads (chunks
//! from 1 KB to over a multipart part, S3 refusing parts under 5 MiB), blobs stream through the
//! registry when redirects are off, and upkeep aborts the multipart uploads of a writer that died.
//! The API and conformance suites also run on both (`s3::` and `moto::` tests of `api.rs`,
//! `conformance.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use bytes::Bytes;
use http::{Method, StatusCode};
use wharf_registry::auth::AllowAll;
use wharf_registry::{app_state, router};

mod common;

use common::*;

/// Deterministic bytes that do not repeat with a short period.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Opens an upload session in `repo` on `reg`; returns its location.
async fn start_upload(reg: &Reg, repo: &str) -> String {
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    r.header("location").to_string()
}

/// Multipart uploads open in the bucket of `reg` (S3's ListMultipartUploads, signed by curl).
fn open_multipart_uploads(reg: &Reg) -> usize {
    open_multipart_uploads_in(&reg.config)
}

/// Multipart uploads open in the bucket of `config`.
fn open_multipart_uploads_in(config: &wharf_registry::Config) -> usize {
    let server = s3_server();
    let bucket = config
        .storage
        .url
        .as_deref()
        .and_then(|u| u.strip_prefix("s3://"))
        .and_then(|u| u.split('/').next())
        .expect("bucket");
    server
        .s3_request("GET", &format!("/{bucket}?uploads="))
        .expect("ListMultipartUploads")
        .matches("<UploadId>")
        .count()
}

/// An upload sent whole in its closing request goes straight to its blob (no copy), and only if
/// the digest matches: a wrong one leaves no object and no open multipart upload.
async fn a_whole_upload_in_one_request_is_verified_before_it_appears() {
    on_s3(async {
        let reg = registry();
        let blob = pattern(20 * 1024 * 1024 + 5, 21);
        let digest = digest_of(&blob);
        let wrong = digest_of(b"not this");
        for (claimed, status) in [
            (&wrong, StatusCode::BAD_REQUEST),
            (&digest, StatusCode::CREATED),
        ] {
            let location = start_upload(&reg, "app").await;
            let r = reg
                .call(Method::PUT, &with_digest(&location, claimed), &[], &blob)
                .await;
            assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
            assert_eq!(open_multipart_uploads(&reg), 0);
        }
        assert_eq!(
            reg.get(&format!("/v2/app/blobs/{wrong}")).await.status,
            StatusCode::NOT_FOUND
        );
        let got = reg.get(&format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(digest_of(&got.body), digest);
        assert!(reg.storage.upload_list().await.expect("list").is_empty());
    })
    .await
}

/// Regression: an empty blob pushed in its closing request was answered 201 but never written
/// (an empty stream wrote no object), so it could not be pulled; gc's check after the commit
/// then refused the push.
async fn an_empty_blob_pushed_whole_is_stored() {
    on_s3(async {
        let reg = registry();
        let empty = digest_of(b"");
        let location = start_upload(&reg, "app").await;
        let r = reg
            .call(Method::PUT, &with_digest(&location, &empty), &[], b"")
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let got = reg.get(&format!("/v2/app/blobs/{empty}")).await;
        assert_eq!(got.status, StatusCode::OK);
        assert!(got.body.is_empty());
    })
    .await
}

async fn chunked_upload_hops_between_replicas_on_one_bucket() {
    on_s3(async {
        let one = registry_on_socket().await;
        let two = replica_on_socket(&one.config).await;
        let replicas = [&one, &two];
        // Sizes around S3's 5 MiB part minimum and the registry's 8 MiB part size.
        let sizes = [
            1024,
            6_000_000,
            3 * 1024,
            20 * 1024 * 1024 + 17,
            1,
            5 * 1024 * 1024,
        ];
        let total: usize = sizes.iter().sum();
        let blob = pattern(total + 4096, 7);
        let digest = digest_of(&blob);

        let mut location = start_upload(&one, "team/app").await;
        let mut offset = 0;
        for (i, size) in sizes.iter().enumerate() {
            // Every request on the other replica than the one before.
            let reg = replicas[(i + 1) % 2];
            let range = format!("{}-{}", offset, offset + size - 1);
            let r = reg
                .call(
                    Method::PATCH,
                    &location,
                    &[
                        ("content-range", &range),
                        ("content-type", "application/octet-stream"),
                    ],
                    &blob[offset..offset + size],
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::ACCEPTED,
                "chunk {i} ({size} bytes): {}",
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(r.header("range"), format!("0-{}", offset + size - 1));
            offset += size;
            location = r.header("location").to_string();
            // The other replica knows where the upload stands.
            let status = replicas[i % 2].get(&location).await;
            assert_eq!(status.status, StatusCode::NO_CONTENT);
            assert_eq!(status.header("range"), format!("0-{}", offset - 1));
        }
        // A chunk that does not continue the upload is refused, whichever replica gets it.
        let r = one
            .call(
                Method::PATCH,
                &location,
                &[("content-range", "0-9")],
                &blob[..10],
            )
            .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);

        // The last bytes with the closing PUT, on the replica that did not take the last chunk.
        let finisher = replicas[sizes.len() % 2];
        let r = finisher
            .call(
                Method::PUT,
                &with_digest(&location, &digest),
                &[],
                &blob[offset..],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        for reg in replicas {
            let got = reg.get(&format!("/v2/team/app/blobs/{digest}")).await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.body.len(), blob.len());
            assert_eq!(digest_of(&got.body), digest);
            let part = reg
                .call(
                    Method::GET,
                    &format!("/v2/team/app/blobs/{digest}"),
                    &[("range", "bytes=8388600-8388615")],
                    b"",
                )
                .await;
            assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
            assert_eq!(&part.body[..], &blob[8_388_600..8_388_616]);
        }
        assert!(
            one.storage.upload_list().await.expect("list").is_empty(),
            "the session's chunks are gone"
        );

        // A wrong digest is refused by the replica that did not see the chunks, and nothing
        // appears under either name.
        let location = start_upload(&two, "team/app").await;
        let r = one.call(Method::PATCH, &location, &[], b"12345").await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let wrong = digest_of(b"something else");
        let r = two
            .call(Method::PUT, &with_digest(&location, &wrong), &[], b"")
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.code(), "DIGEST_INVALID");
        for d in [wrong, digest_of(b"12345")] {
            assert_eq!(
                one.get(&format!("/v2/team/app/blobs/{d}")).await.status,
                StatusCode::NOT_FOUND
            );
        }
    })
    .await
}

async fn blobs_stream_through_the_registry_when_redirects_are_off() {
    on_s3(async {
        let mut config = config(tempfile::tempdir().expect("tempdir").path());
        config.storage.redirect = false;
        let app = router(
            app_state(&config, Arc::new(AllowAll)).expect("state"),
            Router::new(),
        );
        let data = pattern(100_000, 3);
        let digest = digest_of(&data);
        let r = send(
            &app,
            Method::POST,
            &format!("/v2/app/blobs/uploads/?digest={digest}"),
            &[],
            axum::body::Body::from(data.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
        let get = |range: Option<&'static str>| {
            let app = app.clone();
            let digest = digest.clone();
            async move {
                let headers: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
                send(
                    &app,
                    Method::GET,
                    &format!("/v2/app/blobs/{digest}"),
                    &headers,
                    axum::body::Body::empty(),
                )
                .await
            }
        };
        let whole = get(None).await;
        assert_eq!(whole.status, StatusCode::OK, "no redirect");
        assert_eq!(&whole.body[..], &data[..]);
        assert_eq!(whole.header("docker-content-digest"), digest);
        let part = get(Some("bytes=99990-")).await;
        assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(&part.body[..], &data[99_990..]);
        assert_eq!(part.header("content-range"), "bytes 99990-99999/100000");

        // With redirects (the default) the answer is a 307 to a presigned URL that works without
        // any credential, for GET and HEAD alike.
        let reg = registry();
        let digest = reg.push_blob("app", &data).await;
        let r = send(
            &reg.app,
            Method::HEAD,
            &format!("/v2/app/blobs/{digest}"),
            &[],
            axum::body::Body::empty(),
        )
        .await;
        assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(r.header("docker-content-digest"), digest);
        assert!(r.header("location").contains("X-Amz-Signature="));
        let head = reg
            .call(Method::HEAD, &format!("/v2/app/blobs/{digest}"), &[], b"")
            .await;
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.header("content-length"), "100000");
    })
    .await
}

/// The storage of another replica on `config`'s bucket, pausing at `pause` (of any upload).
fn replica_storage(
    config: &wharf_registry::Config,
    pause: Option<common::interposed::Pause>,
) -> Arc<common::interposed::Interposed> {
    let inner = wharf_registry::open_storage(config).expect("storage");
    let any = wharf_registry::names::Digest::of(b"");
    Arc::new(common::interposed::interposed(inner, &any, pause))
}

/// A request body that is whatever is sent on the returned channel, until it is dropped.
fn body_fed_by_hand() -> (
    tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    wharf_registry::storage::ByteStream,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let body = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    (tx, body)
}

/// A new upload session `id` and an append at offset 0 running in a task, its body whatever is
/// sent on the returned channel until the channel is dropped.
async fn append_fed_by_hand(
    reg: &Reg,
    id: &'static str,
) -> (
    tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
    tokio::task::JoinHandle<Result<u64, wharf_registry::storage::StorageError>>,
) {
    reg.storage
        .upload_create(id, Bytes::from_static(b"{}"))
        .await
        .expect("create");
    let (tx, body) = body_fed_by_hand();
    let storage = reg.storage.clone();
    (
        tx,
        tokio::spawn(async move { storage.upload_append(id, 0, body).await.map(|a| a.size) }),
    )
}

/// A chunk bigger than a part is sent as a multipart upload; if its writer dies (here: the
/// request is dropped mid-body, as a killed replica would leave it), the multipart upload stays
/// open in S3, costing storage, until upkeep aborts it.
async fn upkeep_aborts_multipart_uploads_of_a_writer_that_died() {
    on_s3(async {
        let reg = registry();
        let (tx, writer) = append_fed_by_hand(&reg, "0123456789abcdef0123456789abcdef").await;
        // Two parts' worth: the first part is on its way, the upload and its record exist.
        for i in 0..18 {
            tx.send(Ok(Bytes::from(pattern(1024 * 1024, i))))
                .await
                .expect("the writer takes data");
        }
        let open_uploads = || open_multipart_uploads(&reg);
        let mut waited = 0;
        while open_uploads() == 0 {
            waited += 1;
            assert!(waited < 300, "the multipart upload was never started");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The writer dies.
        writer.abort();
        let _ = writer.await;
        drop(tx);
        assert_eq!(open_uploads(), 1);

        // Upkeep of a young upload leaves it alone (it may be a live writer on another replica).
        let young = reg
            .storage
            .clean_temporary(SystemTime::now() - Duration::from_secs(3600))
            .await
            .expect("upkeep");
        assert_eq!(young, 0);
        assert_eq!(open_uploads(), 1);
        let aborted = reg
            .storage
            .clean_temporary(SystemTime::now() + Duration::from_secs(60))
            .await
            .expect("upkeep");
        assert_eq!(aborted, 1);
        assert_eq!(open_uploads(), 0, "aborted in S3");
    })
    .await
}

/// The times of the multipart records in `reg`'s bucket (S3's ListObjects, signed by curl), as
/// `LastModified` strings.
fn multipart_record_times(reg: &Reg) -> Vec<String> {
    let server = s3_server();
    let url = reg.config.storage.url.as_deref().expect("an S3 registry");
    let (bucket, prefix) = url
        .trim_start_matches("s3://")
        .split_once('/')
        .expect("s3://bucket/prefix");
    let listing = server
        // `/` escaped: curl signs the query as written, S3 checks it canonically escaped.
        .s3_request("GET", &format!("/{bucket}?prefix={prefix}%2Fmultipart%2F"))
        .expect("list");
    listing
        .split("<LastModified>")
        .skip(1)
        .filter_map(|rest| {
            rest.split_once("</LastModified>")
                .map(|(t, _)| t.to_string())
        })
        .collect()
}

/// A writer that is alive keeps its multipart upload: every part refreshes the record, so upkeep
/// (or gc, on any replica) with a threshold between the upload's start and its latest part leaves
/// it alone and the upload completes. Before, the record kept its first time and an upload
/// longer than the threshold was aborted under its writer.
async fn upkeep_leaves_a_slow_but_live_multipart_upload_alone() {
    on_s3(async {
        let reg = registry();
        let (tx, writer) = append_fed_by_hand(&reg, "00112233445566778899aabbccddeeff").await;
        let part = |i: u32| Bytes::from(pattern(8 * 1024 * 1024, i));
        tx.send(Ok(part(1))).await.expect("the writer takes data");
        let mut waited = 0;
        let first = loop {
            if let Some(t) = multipart_record_times(&reg).pop() {
                break t;
            }
            waited += 1;
            assert!(waited < 300, "the multipart upload was never recorded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Some S3 servers keep times in whole seconds: the next part comes in a later one.
        let started = SystemTime::now();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        tx.send(Ok(part(2))).await.expect("the writer takes data");
        tx.send(Ok(part(3))).await.expect("the writer takes data");
        let mut waited = 0;
        while multipart_record_times(&reg).pop().as_ref() == Some(&first) {
            waited += 1;
            assert!(
                waited < 100,
                "the record keeps its first time ({first}): a live writer looks dead"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Upkeep whose threshold falls after the start but before the latest part.
        let aborted = reg
            .storage
            .clean_temporary(started + Duration::from_secs(1))
            .await
            .expect("upkeep");
        assert_eq!(aborted, 0);
        tx.send(Ok(Bytes::from_static(b"the end")))
            .await
            .expect("data");
        drop(tx);
        let size = writer.await.expect("join").expect("the upload completes");
        assert_eq!(size, 3 * 8 * 1024 * 1024 + 7);
        assert_eq!(open_multipart_uploads(&reg), 0);
    })
    .await
}

/// gc's grace period is for content; a multipart upload in progress (another replica's push)
/// is aborted only once its writer looks dead for the upload expiry, as upkeep does. Before, a
/// gc with a short grace period (the three-replica test runs it with 8 s) aborted a live
/// writer's multipart upload when its record was older than the grace period: the push failed.
async fn gc_with_a_short_grace_period_leaves_a_live_multipart_upload_alone() {
    use wharf_registry::GcOptions;
    use wharf_registry::services::{Limits, Registry};
    on_s3(async {
        let reg = registry();
        let (tx, writer) = append_fed_by_hand(&reg, "0123456789abcdef0123456789abcdee").await;
        let mib = 1024 * 1024;
        for i in 0..9 {
            tx.send(Ok(Bytes::from(pattern(mib, i))))
                .await
                .expect("the writer takes data");
        }
        let mut waited = 0;
        while open_multipart_uploads(&reg) == 0 {
            waited += 1;
            assert!(waited < 300, "the multipart upload was never started");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // gc on another replica, its grace period shorter than the record's age.
        let gc = Registry::new(
            wharf_registry::open_storage(&reg.config).expect("storage"),
            Limits::default(),
        );
        let opts = GcOptions {
            grace: Duration::ZERO,
            upload_expiry: Duration::from_secs(3600),
            dry_run: false,
        };
        gc.collect_garbage(&opts, SystemTime::now() + Duration::from_secs(10))
            .await
            .expect("gc");
        assert_eq!(open_multipart_uploads(&reg), 1, "the live upload stays");
        tx.send(Ok(Bytes::from_static(b"the end")))
            .await
            .expect("data");
        drop(tx);
        let size = writer.await.expect("join").expect("the upload completes");
        assert_eq!(size, 9 * mib as u64 + 7);
    })
    .await
}

/// A chunk cut off mid-body on one replica (the client or the replica went away): what arrived is
/// stored, the other replica reports it, and the client resumes there; no partial blob is ever
/// visible.
async fn an_interrupted_chunk_resumes_on_another_replica() {
    on_s3(async {
        let one = registry();
        let two = replica_on_socket(&one.config).await;
        let full = pattern(300_000, 11);
        let digest = digest_of(&full);
        let location = start_upload(&one, "app").await;
        let cut = axum::body::Body::from_stream(futures_util::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from(full[..123_456].to_vec())),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "client went away",
            )),
        ]));
        let r = one.send(Method::PATCH, &location, &[], cut).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            two.get(&format!("/v2/app/blobs/{digest}")).await.status,
            StatusCode::NOT_FOUND
        );
        let status = two.get(&location).await;
        assert_eq!(status.status, StatusCode::NO_CONTENT);
        assert_eq!(status.header("range"), "0-123455");
        let r = two
            .call(
                Method::PATCH,
                &location,
                &[("content-range", "123456-299999")],
                &full[123_456..],
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        let r = one
            .call(Method::PUT, &with_digest(&location, &digest), &[], b"")
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let got = two.get(&format!("/v2/app/blobs/{digest}")).await;
        assert_eq!(digest_of(&got.body), digest);
    })
    .await
}

/// Two requests appending at the same offset at once (on two replicas): the chunk object is
/// created with `If-None-Match: *`, so one wins and the other is told the upload moved on
/// (416 to the client), never a silent overwrite or a 500.
async fn concurrent_appends_at_one_offset_cannot_both_win() {
    on_s3(async {
        let reg = registry();
        let id = "00112233445566778899aabbccddeeff";
        // The first request has checked the offset and is receiving its body...
        let (tx, first) = append_fed_by_hand(&reg, id).await;
        tx.send(Ok(Bytes::from_static(b"first")))
            .await
            .expect("send");
        // ...while the second appends at the same offset and finishes.
        let quick: wharf_registry::storage::ByteStream = Box::pin(futures_util::stream::iter(
            vec![Ok(Bytes::from_static(b"second!"))],
        ));
        assert_eq!(
            reg.storage
                .upload_append(id, 0, quick)
                .await
                .expect("append")
                .size,
            7
        );
        drop(tx);
        match first.await.expect("task") {
            Err(wharf_registry::storage::StorageError::OffsetMismatch {
                expected: 0,
                actual: 7,
                ..
            }) => {}
            other => panic!("expected an offset mismatch, got {other:?}"),
        }
        let status = reg
            .storage
            .upload_info(id)
            .await
            .expect("info")
            .expect("session");
        assert_eq!(status.object.size, 7, "the winner's chunk only");
    })
    .await
}

/// Issue 11: two replicas append a chunk of 8 MiB or more at one offset at once (a client's
/// retry through the balancer). Such a chunk is a multipart upload, whose completion S3 does not
/// make conditional: the last one completed is the chunk, while the hash state saved last may be
/// the other replica's. The commit must verify the bytes stored, never the other ones: before
/// the hash state carried the upload's version, the replica that closed the upload took the
/// state of the replaced bytes (accepting their digest for the stored chunk, a blob under the
/// wrong name, and refusing the stored one's).
async fn a_hash_state_of_a_replaced_chunk_is_not_used_to_verify_the_upload() {
    use common::interposed::Pause;
    use wharf_registry::error::RegistryError;
    use wharf_registry::names::{Digest, RepoName};
    use wharf_registry::services::{Limits, Registry};
    on_s3(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let storage = |pause| replica_storage(&config, pause);
        let repo = RepoName::parse("team/app").expect("name");
        let len = 9 * 1024 * 1024;
        let replaced = pattern(len, 21);
        let stored = pattern(len, 22);
        for (claimed, accepted) in [(&replaced, false), (&stored, true)] {
            // `slow` saves its hash state only once `quick` is done with everything.
            let slow_storage = storage(Some(Pause::UploadHashSave));
            let (reached, release) = slow_storage.gate();
            let slow = Arc::new(Registry::new(slow_storage, Limits::default()));
            let quick = Arc::new(Registry::new(storage(None), Limits::default()));
            let closing = Registry::new(storage(None), Limits::default());
            let id = closing.start_upload(&repo, "tester").await.expect("start");
            let range = Some((0, len as u64 - 1));

            // `quick`'s request has checked the offset and is receiving its body...
            let (tx, body) = body_fed_by_hand();
            let quick_append = {
                let (quick, repo, id) = (quick.clone(), repo.clone(), id.clone());
                tokio::spawn(async move { quick.append_upload(&repo, &id, range, body).await })
            };
            let mib = 1024 * 1024;
            for piece in 0..2 {
                let bytes = Bytes::copy_from_slice(&stored[piece * mib..(piece + 1) * mib]);
                tx.send(Ok(bytes)).await.expect("quick takes its body");
            }
            // ...while `slow` appends its whole chunk at the same offset...
            let slow_append = {
                let (slow, repo, id) = (slow.clone(), repo.clone(), id.clone());
                let body: wharf_registry::storage::ByteStream = Box::pin(
                    futures_util::stream::iter([Ok(Bytes::copy_from_slice(&replaced))]),
                );
                tokio::spawn(async move { slow.append_upload(&repo, &id, range, body).await })
            };
            reached
                .await
                .expect("slow's chunk is stored, its hash state not yet");
            // ...then `quick` completes, replacing `slow`'s chunk, and saves its state...
            for piece in stored[2 * mib..].chunks(mib) {
                tx.send(Ok(Bytes::copy_from_slice(piece)))
                    .await
                    .expect("quick takes its body");
            }
            drop(tx);
            let appended = quick_append.await.expect("task").expect("quick's append");
            assert_eq!(appended, len as u64);
            // ...and `slow` saves its state last, of the bytes replaced.
            release.send(()).expect("slow waits");
            slow_append.await.expect("task").expect("slow's append");

            let result = closing
                .finish_upload(&repo, &id, &Digest::of(claimed), None, None)
                .await;
            if accepted {
                result.expect("the stored bytes' digest is accepted");
                let got = closing
                    .storage()
                    .blob_read_small(&Digest::of(&stored), len as u64)
                    .await
                    .expect("blob");
                assert!(got == stored, "the blob holds the stored chunk");
            } else {
                match result {
                    Err(RegistryError::DigestInvalid(_)) => {}
                    other => panic!("the replaced bytes' digest must be refused: {other:?}"),
                }
                assert!(
                    !closing
                        .has_blob(&repo, &Digest::of(&replaced))
                        .await
                        .expect("has"),
                    "no blob under the replaced bytes' digest"
                );
            }
        }
    })
    .await
}

/// Issue 11: a chunked upload whose every request lands on another replica is verified from
/// the hash state each replica saves with the session, not by reading the chunks back at commit
/// (the commit still reads them once, to write the blob: S3 has no copy of parts from objects).
async fn a_chunked_upload_hopping_replicas_is_not_read_back_to_verify_it() {
    use wharf_registry::names::{Digest, RepoName};
    use wharf_registry::services::{Limits, Registry};
    on_s3(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let storages: Vec<_> = (0..4).map(|_| replica_storage(&config, None)).collect();
        let replicas: Vec<_> = storages
            .iter()
            .map(|s| Registry::new(s.clone(), Limits::default()))
            .collect();
        let repo = RepoName::parse("team/app").expect("name");
        let sizes = [1024, 6_000_000, 3 * 1024];
        let blob = pattern(sizes.iter().sum::<usize>() + 100, 11);
        let digest = Digest::of(&blob);
        let chunk = |from: usize, len: usize| -> wharf_registry::storage::ByteStream {
            let bytes = Bytes::copy_from_slice(&blob[from..from + len]);
            Box::pin(futures_util::stream::iter([Ok(bytes)]))
        };

        let id = replicas[0]
            .start_upload(&repo, "tester")
            .await
            .expect("start");
        let mut offset = 0;
        for (i, size) in sizes.iter().enumerate() {
            let range = (offset as u64, (offset + size - 1) as u64);
            replicas[1 + i % 2]
                .append_upload(&repo, &id, Some(range), chunk(offset, *size))
                .await
                .expect("chunk");
            offset += size;
        }
        let last = Some((offset as u64, (blob.len() - 1) as u64));
        replicas[3]
            .finish_upload(
                &repo,
                &id,
                &digest,
                last,
                Some(chunk(offset, blob.len() - offset)),
            )
            .await
            .expect("finish");

        let reads: usize = storages
            .iter()
            .map(|s| s.upload_reads.load(std::sync::atomic::Ordering::SeqCst))
            .sum();
        assert_eq!(reads, 0, "no replica read the upload back to hash it");
        assert!(replicas[0].has_blob(&repo, &digest).await.expect("blob"));
        let info = replicas[2].stat_blob(&repo, &digest).await.expect("stat");
        assert_eq!(info.size, blob.len() as u64);
    })
    .await
}

/// A chunk of a part or more is a multipart upload, whose completion Ceph RGW answers with an
/// empty ETag: the upload's version must still be that of the stored chunk, so that the closing
/// request commits it, on the replica that received it (the commit refused it as replaced
/// before) and on another one, which continues the saved hash state instead of reading the
/// chunk back (it could not match the listed version before).
async fn a_multipart_chunk_is_committed_on_its_replica_and_on_another() {
    use wharf_registry::names::{Digest, RepoName};
    use wharf_registry::services::{Limits, Registry};
    on_s3(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let storages: Vec<_> = (0..2).map(|_| replica_storage(&config, None)).collect();
        let replicas: Vec<_> = storages
            .iter()
            .map(|s| Registry::new(s.clone(), Limits::default()))
            .collect();
        let repo = RepoName::parse("team/app").expect("name");
        for (seed, closing) in [(41, 0), (42, 1)] {
            let blob = pattern(9 * 1024 * 1024 + 17, seed);
            let digest = Digest::of(&blob);
            let id = replicas[0]
                .start_upload(&repo, "tester")
                .await
                .expect("start");
            let body: wharf_registry::storage::ByteStream =
                Box::pin(futures_util::stream::iter([Ok(Bytes::copy_from_slice(
                    &blob,
                ))]));
            let range = Some((0, blob.len() as u64 - 1));
            replicas[0]
                .append_upload(&repo, &id, range, body)
                .await
                .expect("the chunk");
            let reads_before: usize = storages
                .iter()
                .map(|s| s.upload_reads.load(std::sync::atomic::Ordering::SeqCst))
                .sum();
            replicas[closing]
                .finish_upload(&repo, &id, &digest, None, None)
                .await
                .unwrap_or_else(|e| panic!("closing on replica {closing}: {e}"));
            let reads: usize = storages
                .iter()
                .map(|s| s.upload_reads.load(std::sync::atomic::Ordering::SeqCst))
                .sum();
            assert_eq!(reads, reads_before, "replica {closing} read the chunk back");
            let info = replicas[1 - closing]
                .stat_blob(&repo, &digest)
                .await
                .expect("stat");
            assert_eq!(info.size, blob.len() as u64);
        }
    })
    .await
}

/// One PATCH streaming longer than the upload expiry keeps its upload alive for every replica:
/// another replica's expiry run (its upkeep, or `wharf registry gc`) meanwhile leaves it alone
/// and the chunk is stored, while an idle upload beside it expires. Before, the other replica
/// judged the upload by its latest stored object, the info document (a chunk is stored only
/// when its request ends), and removed it under its writer.
async fn a_patch_streaming_longer_than_the_expiry_is_not_expired_by_another_replica() {
    use wharf_registry::names::{Digest, RepoName};
    use wharf_registry::services::{Limits, Registry};
    on_s3(async {
        let reg = registry();
        let replica = || {
            let limits = Limits {
                upload_expiry: Duration::from_secs(4),
                ..Limits::default()
            };
            let storage = wharf_registry::open_storage(&reg.config).expect("storage");
            Arc::new(Registry::new(storage, limits))
        };
        let (writer, other) = (replica(), replica());
        let repo = RepoName::parse("app").expect("name");
        let streaming = writer.start_upload(&repo, "tester").await.expect("upload");
        let idle = writer.start_upload(&repo, "tester").await.expect("upload");
        let (tx, body) = body_fed_by_hand();
        let append = tokio::spawn({
            let (writer, repo, id) = (writer.clone(), repo.clone(), streaming.clone());
            async move { writer.append_upload(&repo, &id, None, body).await }
        });
        // Pieces over seven seconds: well past the expiry, in one request.
        let mut sent = Vec::new();
        for i in 0..7 {
            let piece = pattern(1000, i);
            sent.extend_from_slice(&piece);
            tx.send(Ok(Bytes::from(piece)))
                .await
                .expect("the writer takes data");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let removed = other
            .expire_uploads(SystemTime::now())
            .await
            .expect("the other replica's expiry run");
        assert_eq!(removed, 1, "only the idle upload expires");
        let last = pattern(1000, 99);
        sent.extend_from_slice(&last);
        tx.send(Ok(Bytes::from(last))).await.expect("data");
        drop(tx);
        let size = append.await.expect("join").expect("the chunk is stored");
        assert_eq!(size, sent.len() as u64);
        let digest = Digest::of(&sent);
        other
            .finish_upload(&repo, &streaming, &digest, None, None)
            .await
            .expect("the upload finishes, on any replica");
        assert!(other.has_blob(&repo, &digest).await.expect("blob"));
        assert!(writer.upload_size(&repo, &idle).await.is_err(), "expired");
    })
    .await
}

/// Two restores of one blob set aside, at once (two gc runs recovering what a dead one left):
/// both succeed and the blob is back, nothing left aside, whichever copy back lost the race.
/// Before, a copy back that failed because the other restore had already removed the copy set
/// aside was an error, failing that gc pass. RGW on loopback rarely loses that race on its own,
/// so a relay in front of RGW holds the first restore's copy back until the second restore has
/// finished (removed the aside copy included): the first copy then finds no source.
async fn two_restores_of_one_blob_at_once_both_succeed() {
    use wharf_registry::names::Digest;
    on_s3(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let (relayed_storage, relay) = relayed(&config).await;
        let other = wharf_registry::open_storage(&config).expect("storage");
        let data = pattern(2000, 7);
        let digest = Digest::of(&data);
        other
            .blob_put(&digest, Bytes::from(data.clone()))
            .await
            .expect("blob");
        assert!(other.blob_set_aside(&digest).await.expect("aside"));
        relay.hold(|seen, _| seen.copy_source.is_some(), {
            let (other, digest) = (other.clone(), digest.clone());
            move || {
                Box::pin(async move {
                    other
                        .blob_restore(&digest)
                        .await
                        .expect("the second restore");
                })
            }
        });
        relayed_storage
            .blob_restore(&digest)
            .await
            .expect("the first restore, whose copy back found no source");
        assert_eq!(
            relay.pending(),
            0,
            "the second restore ran during the first"
        );
        assert_eq!(
            other
                .blob_read_small(&digest, u64::MAX)
                .await
                .expect("the blob is back")
                .as_ref(),
            &data[..]
        );
        assert_eq!(
            other.blob_aside_last_use(&digest).await.expect("aside"),
            None,
            "nothing is left aside"
        );
    })
    .await
}

/// A late request at offset 0 (a client's retry that went to another replica) whose multipart
/// chunk completes after the upload was verified and before the commit copies its only chunk:
/// S3 lets that completion replace the chunk. The commit then refuses cleanly (the client sends
/// the upload again), and no blob holds the late bytes under the verified digest. Before, the
/// commit copied whatever the chunk held by then. The pause before the commit is a storage
/// wrapper's: nothing else makes the late completion land in that window.
async fn a_chunk_replaced_after_verification_is_not_committed_under_the_digest() {
    use wharf_registry::error::RegistryError;
    on_s3(async {
        let len = 9 * 1024 * 1024;
        let verified = pattern(len, 31);
        let (result, storage) =
            commit_with_a_late_replacement(&verified, pattern(len, 32), len).await;
        assert!(
            matches!(&result, Err(RegistryError::BlobUploadInvalid(m)) if m.contains("send it again")),
            "the commit is refused cleanly: {result:?}"
        );
        assert_eq!(
            storage
                .blob_info(&wharf_registry::names::Digest::of(&verified))
                .await
                .expect("info"),
            None,
            "no blob of other bytes under the verified digest"
        );
    })
    .await
}

/// The client's own request stores `verified` in `piece`-byte pieces at offset 0 of a new upload
/// while a late request at the same offset (another replica's) receives `late`; the late one
/// completes, replacing the chunk, just before the commit of `verified`'s digest. Returns the
/// commit's result and the storage.
async fn commit_with_a_late_replacement(
    verified: &[u8],
    late: Vec<u8>,
    piece: usize,
) -> (
    Result<(), wharf_registry::error::RegistryError>,
    Arc<dyn wharf_registry::storage::Storage>,
) {
    use common::interposed::Pause;
    use wharf_registry::names::{Digest, RepoName};
    use wharf_registry::services::{Limits, Registry};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let storage = |pause| replica_storage(&config, pause);
    let committing = storage(Some(Pause::UploadCommit));
    let closing = Registry::new(committing.clone(), Limits::default());
    let late_replica = Arc::new(Registry::new(storage(None), Limits::default()));
    let repo = RepoName::parse("team/app").expect("name");
    let id = closing.start_upload(&repo, "tester").await.expect("start");

    // The late request has checked the offset and is receiving its body...
    let complete_late = late_request(late_replica, &repo, &id, 0, late).await;
    // ...while the client's own request stores the chunk that gets verified...
    let pieces: Vec<_> = verified
        .chunks(piece)
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    closing
        .append_upload(
            &repo,
            &id,
            Some((0, verified.len() as u64 - 1)),
            Box::pin(futures_util::stream::iter(pieces)),
        )
        .await
        .expect("the client's chunk");
    // ...and the late one completes, replacing it, just before the commit.
    *committing.hook.lock().expect("hook") = Some(Box::new(complete_late));
    let result = closing
        .finish_upload(&repo, &id, &Digest::of(verified), None, None)
        .await;
    assert!(
        committing.hook.lock().expect("hook").is_none(),
        "the late chunk completed before the commit"
    );
    (result, closing.storage().clone())
}

/// Two 128-byte messages with one MD5 (Wang and Yu's published collision): with the same bytes
/// after them, any prefix-aligned part holding them has one MD5 too.
const MD5_TWINS: [&str; 2] = [
    "d131dd02c5e6eec4693d9a0698aff95c2fcab58712467eab4004583eb8fb7f8955ad340609f4b30283e488832571415a085125e8f7cdc99fd91dbdf280373c5bd8823e3156348f5bae6dacd436c919c6dd53e2b487da03fd02396306d248cda0e99f33420f577ee8ce54b67080a80d1ec69821bcb6a8839396f9652b6ff72a70",
    "d131dd02c5e6eec4693d9a0698aff95c2fcab50712467eab4004583eb8fb7f8955ad340609f4b30283e4888325f1415a085125e8f7cdc99fd91dbd7280373c5bd8823e3156348f5bae6dacd436c919c6dd53e23487da03fd02396306d248cda0e99f33420f577ee8ce54b67080280d1ec69821bcb6a8839396f965ab6ff72a70",
];

/// Regression (a hostile pusher): the late request of the test above, but with bytes made to
/// give the replacement the verified chunk's ETag. S3's multipart ETag is an MD5 of the parts'
/// MD5s, so two chunks that differ only in MD5-colliding blocks, sent in the same pieces (the
/// same part boundaries), have one ETag: the commit took the ETag for the verified bytes and
/// stored the replacement under the verified digest. Now a multipart chunk that another
/// multipart write of its offset ever targeted is hashed, not vouched for by its ETag.
async fn a_replacement_with_md5_colliding_parts_is_not_committed_under_the_digest() {
    use wharf_registry::error::RegistryError;
    use wharf_registry::names::Digest;
    on_s3(async {
        let len = 9 * 1024 * 1024;
        let rest = pattern(len - 128, 33);
        let [verified, hostile] =
            MD5_TWINS.map(|twin| [hex::decode(twin).expect("hex"), rest.clone()].concat());
        assert_ne!(Digest::of(&verified), Digest::of(&hostile));
        // In 1 MiB pieces like the late request's body: the same parts, so the same ETag.
        let (result, storage) =
            commit_with_a_late_replacement(&verified, hostile, 1024 * 1024).await;
        match storage
            .blob_read_small(&Digest::of(&verified), u64::MAX)
            .await
        {
            Ok(stored) => assert!(
                stored.as_ref() == verified.as_slice(),
                "other bytes stored under the verified digest (commit: {result:?})"
            ),
            Err(_) => assert!(
                matches!(&result, Err(RegistryError::BlobUploadInvalid(m)) if m.contains("send it again")),
                "nothing stored, and the commit is refused cleanly: {result:?}"
            ),
        }
    })
    .await
}

/// A request at `offset` of upload `id` sent through `late` (another replica) that has checked
/// the offset and is receiving its body: the returned hook sends the rest, and ends once the
/// chunk is stored (a multipart completion, which S3 does not make conditional: it replaces
/// whatever was stored at that offset meanwhile).
async fn late_request(
    late: Arc<wharf_registry::services::Registry>,
    repo: &wharf_registry::names::RepoName,
    id: &str,
    offset: u64,
    bytes: Vec<u8>,
) -> impl FnOnce() -> futures_util::future::BoxFuture<'static, ()> + Send + 'static {
    let mib = 1024 * 1024;
    let range = Some((offset, offset + bytes.len() as u64 - 1));
    let (tx, body) = body_fed_by_hand();
    let append = {
        let (repo, id) = (repo.clone(), id.to_string());
        tokio::spawn(async move { late.append_upload(&repo, &id, range, body).await })
    };
    for piece in bytes[..2 * mib].chunks(mib) {
        tx.send(Ok(Bytes::copy_from_slice(piece)))
            .await
            .expect("the late request takes its body");
    }
    move || {
        Box::pin(async move {
            for piece in bytes[2 * mib..].chunks(mib) {
                tx.send(Ok(Bytes::copy_from_slice(piece)))
                    .await
                    .expect("the late request takes its body");
            }
            drop(tx);
            append
                .await
                .expect("task")
                .expect("the late chunk completes");
        })
    }
}

/// One chunk as one request body.
fn one_piece(data: &[u8]) -> wharf_registry::storage::ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::copy_from_slice(
        data,
    ))]))
}

/// A storage on `config`'s bucket whose requests go through a [`Relay`] (returned with it).
async fn relayed(
    config: &wharf_registry::Config,
) -> (
    Arc<dyn wharf_registry::storage::Storage>,
    common::s3_relay::Relay,
) {
    let server = s3_server();
    let relay = common::s3_relay::Relay::start(server.endpoint()).await;
    let mut relayed = config.clone();
    relayed.storage.endpoint = Some(relay.endpoint.clone());
    let storage = wharf_registry::open_storage(&relayed).expect("storage");
    (storage, relay)
}

/// Regression: the commit of a single chunk copied it straight to the blob's name and checked
/// the copy there. A late request replacing the chunk between the commit's listing and its copy
/// (held there by a relay in front of RGW) put other bytes under the digest until the check
/// deleted them; meanwhile a second session committing the right bytes found the blob there,
/// only touched it and was told it was stored, and the first commit's clean-up then deleted
/// it. Now the copy goes to a staging object of the upload, is checked there and only then
/// copied to the blob's name: the wrong bytes never appear under the digest, and the second
/// session's blob stays. And since the blob the first commit was for is then stored (by the
/// second session), the first commit is done too, not refused (it was "send it again", and the
/// client's retry then failed on the late bytes although the registry had the blob).
async fn a_failed_commit_never_shows_other_bytes_nor_deletes_a_concurrent_commits_blob() {
    use wharf_registry::names::{Digest, RepoName};
    use wharf_registry::services::{Limits, Registry};
    on_s3(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let (relayed_storage, relay) = relayed(&config).await;
        let closing = Registry::new(relayed_storage, Limits::default());
        let direct = || wharf_registry::open_storage(&config).expect("storage");
        let late = Arc::new(Registry::new(direct(), Limits::default()));
        let other = Arc::new(Registry::new(direct(), Limits::default()));
        let repo = RepoName::parse("team/app").expect("name");
        let len = 9 * 1024 * 1024;
        let verified = pattern(len, 41);
        let digest = Digest::of(&verified);
        let blob_key = format!("blobs/sha256/{}", digest.hex());

        let id = closing.start_upload(&repo, "tester").await.expect("start");
        let complete_late = late_request(late, &repo, &id, 0, pattern(len, 42)).await;
        closing
            .append_upload(&repo, &id, Some((0, len as u64 - 1)), one_piece(&verified))
            .await
            .expect("the client's chunk");
        // Another client's session with the same content, ready to commit.
        let second = other.start_upload(&repo, "tester").await.expect("start");
        other
            .append_upload(&repo, &second, None, one_piece(&verified))
            .await
            .expect("the second client's chunk");

        // The late chunk lands after the commit listed the upload (the listing of its chunks,
        // then a look at its info; its look at the blob's name comes next; an earlier look,
        // before the listing, checks whether the content is stored already)...
        relay.hold(
            {
                let key = blob_key.clone();
                move |seen, before| {
                    let [.., listing, info] = before else {
                        return false;
                    };
                    seen.method == "HEAD"
                        && seen.is_on(&key)
                        && listing.target.contains("list-type=")
                        && info.method == "HEAD"
                        && info
                            .target
                            .split('?')
                            .next()
                            .is_some_and(|p| p.ends_with("/info"))
                }
            },
            complete_late,
        );
        // ...and once the commit's copy is answered, the blob's name is read and the second
        // session commits, before the first one checks what it copied.
        let under_digest: Arc<std::sync::Mutex<Option<Option<Bytes>>>> = Arc::default();
        relay.hold(
            |seen, before| seen.method == "HEAD" && before.iter().any(|s| s.copy_source.is_some()),
            {
                let (other, repo, second, digest) =
                    (other.clone(), repo.clone(), second.clone(), digest.clone());
                let under_digest = under_digest.clone();
                move || {
                    Box::pin(async move {
                        let stored = other.storage().blob_read_small(&digest, u64::MAX).await;
                        *under_digest.lock().expect("seen") = Some(stored.ok());
                        other
                            .finish_upload(&repo, &second, &digest, None, None)
                            .await
                            .expect("the second session's commit");
                    })
                }
            },
        );
        let result = closing.finish_upload(&repo, &id, &digest, None, None).await;
        assert_eq!(relay.pending(), 0, "both interleavings happened");
        assert!(
            result.is_ok(),
            "the blob the first commit was for is stored (by the second session): {result:?}"
        );
        let seen = under_digest.lock().expect("seen").clone().expect("read");
        assert!(
            seen.as_ref().is_none_or(|b| Digest::of(b) == digest),
            "other bytes under the digest while the first commit checked its copy"
        );
        let writes: Vec<_> = relay
            .take_log()
            .into_iter()
            .filter(|s| s.writes() && s.is_on(&blob_key))
            .collect();
        assert!(
            writes.is_empty(),
            "the failed commit wrote the blob: {writes:?}"
        );
        assert!(other.has_blob(&repo, &digest).await.expect("has"));
        let stored = other
            .storage()
            .blob_read_small(&digest, u64::MAX)
            .await
            .expect("the second session's blob is still there");
        assert_eq!(Digest::of(&stored), digest);
        assert!(closing.has_blob(&repo, &digest).await.expect("has"));
    })
    .await
}

/// Regression: a chunked upload of content already stored, unused, committed as a gc on another
/// replica dropped that blob: the commit found the blob, touched it and removed the session,
/// but gc had read the blob's last use before the touch landed (a touch is "check it exists,
/// then write its time"), so the blob was gone and the client was told to upload it again
/// (a flake of the gc-during-pushes test). Now the commit depends on the blob before it lets
/// go of the upload's bytes: finding it gone, it stores them, and the push succeeds.
async fn an_upload_of_content_gc_drops_as_it_commits_is_stored_anew() {
    use wharf_registry::GcOptions;
    use wharf_registry::names::{Digest, RepoName};
    use wharf_registry::services::{Limits, Registry};
    on_s3(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let (relayed_storage, relay) = relayed(&config).await;
        let pusher = Registry::new(relayed_storage, Limits::default());
        let gc = Arc::new(Registry::new(
            wharf_registry::open_storage(&config).expect("storage"),
            Limits::default(),
        ));
        let repo = RepoName::parse("team/app").expect("name");
        let layer = pattern(300 * 1024, 91);
        let digest = gc
            .import_blob(&repo, Bytes::from(layer.clone()))
            .await
            .expect("the layer, stored before and unused since");
        // S3's times have whole seconds: past a grace of 3 s, the blob is old for gc.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let grace = Duration::from_secs(3);

        let id = pusher.start_upload(&repo, "tester").await.expect("start");
        pusher
            .append_upload(&repo, &id, None, one_piece(&layer))
            .await
            .expect("the layer in one chunk");
        // The commit's first touch of the blob waits until a whole gc has run on another
        // replica: gc reads the old last use, sets the blob aside and drops it.
        let removed: Arc<std::sync::Mutex<Option<Vec<Digest>>>> = Arc::default();
        let touch_key = format!("touch/sha256/{}", digest.hex());
        relay.hold(
            move |seen, _| seen.method == "PUT" && seen.is_on(&touch_key),
            {
                let (gc, removed) = (gc.clone(), removed.clone());
                move || {
                    Box::pin(async move {
                        let opts = GcOptions {
                            grace,
                            ..GcOptions::default()
                        };
                        let report = gc
                            .collect_garbage(&opts, SystemTime::now())
                            .await
                            .expect("gc");
                        *removed.lock().expect("report") = Some(report.blobs_removed);
                    })
                }
            },
        );
        let result = pusher.finish_upload(&repo, &id, &digest, None, None).await;
        assert_eq!(relay.pending(), 0, "the commit touched the blob");
        let removed = removed.lock().expect("report").clone();
        assert_eq!(
            removed,
            Some(vec![digest.clone()]),
            "gc dropped the blob as the upload committed"
        );
        assert!(result.is_ok(), "the upload is stored: {result:?}");
        assert!(pusher.has_blob(&repo, &digest).await.expect("has"));
        let stored = gc
            .storage()
            .blob_read_small(&digest, u64::MAX)
            .await
            .expect("the blob is there again");
        assert_eq!(Digest::of(&stored), digest);
        assert!(
            gc.storage().upload_info(&id).await.expect("info").is_none(),
            "the session is gone with the commit"
        );
    })
    .await
}

/// Regression: a commit of several chunks, one replaced by a late request after the upload was
/// verified (and after the commit listed it), was answered 500 (a storage error) where the
/// same event on a single chunk answers 400 BLOB_UPLOAD_INVALID "send it again" and keeps the
/// session; and the rewritten blob appeared under the digest before its check. Now the digest
/// is checked before the blob's multipart upload completes, and the answer is the same.
async fn a_chunk_of_several_replaced_during_the_commit_answers_send_it_again() {
    use wharf_registry::error::RegistryError;
    use wharf_registry::names::{Digest, RepoName};
    use wharf_registry::services::{Limits, Registry};
    on_s3(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let (relayed_storage, relay) = relayed(&config).await;
        let closing = Registry::new(relayed_storage, Limits::default());
        let late = Arc::new(Registry::new(
            wharf_registry::open_storage(&config).expect("storage"),
            Limits::default(),
        ));
        let repo = RepoName::parse("team/app").expect("name");
        let small = pattern(1024 * 1024, 51);
        let len = 9 * 1024 * 1024;
        let verified = pattern(len, 52);
        let offset = small.len() as u64;
        let whole = [small.clone(), verified.clone()].concat();
        let digest = Digest::of(&whole);
        let blob_key = format!("blobs/sha256/{}", digest.hex());

        let id = closing.start_upload(&repo, "tester").await.expect("start");
        closing
            .append_upload(&repo, &id, None, one_piece(&small))
            .await
            .expect("the first chunk");
        let complete_late = late_request(late, &repo, &id, offset, pattern(len, 53)).await;
        closing
            .append_upload(
                &repo,
                &id,
                Some((offset, offset + len as u64 - 1)),
                one_piece(&verified),
            )
            .await
            .expect("the client's second chunk");
        relay.hold(
            {
                let key = blob_key.clone();
                move |seen, _| seen.method == "HEAD" && seen.is_on(&key)
            },
            complete_late,
        );
        let result = closing
            .finish_upload(&repo, &id, &digest, None, None)
            .await;
        assert_eq!(relay.pending(), 0, "the late chunk landed during the commit");
        assert!(
            matches!(&result, Err(RegistryError::BlobUploadInvalid(m)) if m.contains("send it again")),
            "{result:?}"
        );
        let writes: Vec<_> = relay
            .take_log()
            .into_iter()
            .filter(|s| s.writes() && s.is_on(&blob_key))
            .collect();
        assert!(writes.is_empty(), "the failed commit wrote the blob: {writes:?}");
        assert_eq!(closing.storage().blob_info(&digest).await.expect("info"), None);
        assert_eq!(open_multipart_uploads_in(&config), 0);
        // The session stayed: the client's next attempt is judged on what it holds now.
        let retry = closing
            .finish_upload(&repo, &id, &digest, None, None)
            .await;
        assert!(
            matches!(&retry, Err(RegistryError::DigestInvalid(_))),
            "{retry:?}"
        );
    })
    .await
}

/// Regression: a commit without a verified version (the caller read the upload back to verify
/// it: after a failed chunk, or a refused commit) copied a single chunk to the blob's name
/// unchecked, so a chunk replaced since the caller's read was stored under the digest; with
/// several chunks the mismatch was a storage error (500). Now the staged copy of a single
/// chunk is hashed before it is copied on, and both answer `UploadChanged` (the client's
/// digest was right when the caller checked it), the session kept, nothing under the digest.
async fn a_commit_without_a_verified_version_checks_what_it_stores() {
    use wharf_registry::names::Digest;
    use wharf_registry::storage::StorageError;
    on_s3(async {
        let reg = registry();
        for (id, chunks) in [
            ("00112233445566778899aabbccddeeff", vec![pattern(3000, 62)]),
            (
                "00112233445566778899aabbccddee00",
                vec![pattern(1000, 63), pattern(3000, 64)],
            ),
        ] {
            reg.storage
                .upload_create(id, Bytes::from_static(b"{}"))
                .await
                .expect("create");
            let mut offset = 0;
            for chunk in &chunks {
                offset = reg
                    .storage
                    .upload_append(id, offset, one_piece(chunk))
                    .await
                    .expect("chunk")
                    .size;
            }
            // What the caller hashed had this digest; the chunks hold other bytes by the commit.
            let digest = Digest::of(&pattern(offset as usize, 61));
            let result = reg.storage.upload_commit(id, &digest, None).await;
            assert!(
                matches!(result, Err(StorageError::UploadChanged { .. })),
                "{} chunks: {result:?}",
                chunks.len()
            );
            assert_eq!(reg.storage.blob_info(&digest).await.expect("info"), None);
            assert!(
                reg.storage.upload_info(id).await.expect("info").is_some(),
                "the session stays"
            );
        }
    })
    .await
}

/// What a commit costs in S3 requests (the relay's log), printed for the bench notes: the
/// single-chunk commit makes one server-side copy more than a direct one (to its staging
/// object and on), several chunks none; each writes the blob's name exactly once.
async fn s3_requests_of_a_commit() {
    use wharf_registry::names::Digest;
    on_s3(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let (storage, relay) = relayed(&config).await;
        for (name, chunks) in [
            ("single chunk, 3 KB", vec![pattern(3000, 71)]),
            ("single chunk, 9 MiB", vec![pattern(9 << 20, 72)]),
            (
                "two chunks, 1 KB + 3 KB",
                vec![pattern(1000, 73), pattern(3000, 74)],
            ),
            (
                "two chunks, 1 MiB + 9 MiB",
                vec![pattern(1 << 20, 75), pattern(9 << 20, 76)],
            ),
        ] {
            let id = format!("{:032x}", rand::random::<u128>());
            storage
                .upload_create(&id, Bytes::from_static(b"{}"))
                .await
                .expect("create");
            let mut offset = 0;
            let mut version = Some(wharf_registry::storage::UploadVersion::EMPTY);
            for chunk in &chunks {
                let appended = storage
                    .upload_append(&id, offset, one_piece(chunk))
                    .await
                    .expect("chunk");
                offset = appended.size;
                version = appended.after;
            }
            let digest = Digest::of(&chunks.concat());
            relay.take_log();
            storage
                .upload_commit(&id, &digest, version)
                .await
                .expect("commit");
            let log = relay.take_log();
            let count =
                |f: &dyn Fn(&common::s3_relay::Seen) -> bool| log.iter().filter(|s| f(s)).count();
            let copies = count(&|s| s.copy_source.is_some());
            let blob_key = format!("blobs/sha256/{}", digest.hex());
            let compact: Vec<String> = log
                .iter()
                .map(|s| {
                    let (path, query) = s.target.split_once('?').unwrap_or((&s.target, ""));
                    let object = path.rsplit('/').next().unwrap_or("");
                    let object = object.get(..12).unwrap_or(object);
                    let kind = if s.copy_source.is_some() {
                        "COPY"
                    } else {
                        &s.method
                    };
                    format!("{kind} {object}?{}", query.get(..12).unwrap_or(query))
                })
                .collect();
            eprintln!("{name}: {} requests: {compact:?}", log.len());
            assert_eq!(
                copies,
                if chunks.len() == 1 { 2 } else { 0 },
                "{name}: {log:#?}"
            );
            assert_eq!(
                count(&|s| s.writes() && s.is_on(&blob_key)),
                1,
                "{name}: {log:#?}"
            );
        }
    })
    .await
}

/// A commit that dies after copying a single chunk to its staging object (a replica killed
/// there) leaves that object under the upload: it is no chunk (the upload's size and version
/// are the chunk's), the session lists with it, and expiry removes it with the session.
async fn a_commit_that_died_after_staging_leaves_nothing_expiry_keeps() {
    use wharf_registry::names::Digest;
    use wharf_registry::services::{Limits, Registry};
    on_s3(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let (dying, relay) = relayed(&config).await;
        let direct = wharf_registry::open_storage(&config).expect("storage");
        let id = "0123456789abcdef0123456789abcdef";
        let data = pattern(3000, 81);
        dying
            .upload_create(id, Bytes::from_static(b"{}"))
            .await
            .expect("create");
        let appended = dying
            .upload_append(id, 0, one_piece(&data))
            .await
            .expect("chunk");
        let (reached, at_staging) = tokio::sync::oneshot::channel::<()>();
        relay.hold(
            |seen, _| seen.method == "HEAD" && seen.target.contains("/commit-"),
            move || {
                Box::pin(async move {
                    let _ = reached.send(());
                    std::future::pending::<()>().await
                })
            },
        );
        let mut commit = tokio::spawn({
            let digest = Digest::of(&data);
            async move { dying.upload_commit(id, &digest, appended.after).await }
        });
        tokio::select! {
            reached = at_staging => reached.expect("the commit copied its chunk"),
            done = &mut commit => panic!("the commit ended without a staging copy: {done:?}"),
        }
        commit.abort();

        let status = direct
            .upload_info(id)
            .await
            .expect("info")
            .expect("session");
        assert_eq!(status.object.size, data.len() as u64);
        assert_eq!(status.version, appended.after);
        let listed = direct.upload_list().await.expect("list");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].1.size, data.len() as u64);
        let upkeep = Registry::new(direct, Limits::default());
        let removed = upkeep
            .expire_uploads(SystemTime::now() + Duration::from_secs(365 * 24 * 3600))
            .await
            .expect("expiry");
        assert_eq!(removed, 1);
        // Lists every object under `uploads/`, grouped by session: the staging object too.
        let left = upkeep.storage().upload_list().await.expect("list");
        assert!(left.is_empty(), "left under uploads/: {left:?}");
    })
    .await
}

/// Regression: a session's deletion removed its chunks first and its info document last. An
/// append that listed the session in between found it live with no chunk at 0 and stored one:
/// a chunk where the deletion had just removed the verified one, which a commit of the same
/// session that listed it before (on another replica) could copy as the verified bytes. Now
/// the info document goes first: an append held into the deletion's last request finds no
/// session, and nothing is left under the upload.
async fn no_chunk_is_written_into_a_session_being_deleted() {
    use wharf_registry::storage::StorageError;
    on_s3(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let (deleting, relay) = relayed(&config).await;
        let other = wharf_registry::open_storage(&config).expect("storage");
        let id = "0123456789abcdef0123456789abcdef";
        other
            .upload_create(id, Bytes::from_static(b"{}"))
            .await
            .expect("create");
        other
            .upload_append(id, 0, one_piece(&pattern(3000, 91)))
            .await
            .expect("chunk");
        // The deletion's last request waits for an append at offset 0 on another replica:
        // object_store deletes with DeleteObjects requests (`POST ?delete`), one for the info
        // document and one for the rest, so the second of them, whichever order they come in.
        let is_delete = |seen: &common::s3_relay::Seen| {
            seen.method == "POST" && seen.target.ends_with("?delete")
        };
        let appended: Arc<std::sync::Mutex<Option<Result<u64, String>>>> = Arc::default();
        relay.hold(
            move |seen, before| {
                is_delete(seen) && before.iter().filter(|s| is_delete(s)).count() == 1
            },
            {
                let (other, appended) = (other.clone(), appended.clone());
                move || {
                    Box::pin(async move {
                        let result = other
                            .upload_append(id, 0, one_piece(&pattern(3000, 92)))
                            .await
                            .map(|a| a.size)
                            .map_err(|e| format!("{e:?}"));
                        *appended.lock().expect("appended") = Some(result);
                    })
                }
            },
        );
        deleting.upload_delete(id).await.expect("delete");
        assert_eq!(relay.pending(), 0, "the append ran during the deletion");
        let result = appended.lock().expect("appended").clone().expect("ran");
        assert!(
            result.is_err(),
            "an append was stored in a session being deleted"
        );
        assert!(matches!(
            other.upload_info(id).await,
            Ok(None) | Err(StorageError::UploadUnknown(_))
        ));
        let left = other.upload_list().await.expect("list");
        assert!(left.is_empty(), "left under uploads/: {left:?}");
    })
    .await
}

/// Regression: `upload_commit` of an upload with no chunk wrote no object (an empty stream
/// wrote nothing) and reported success. The HTTP routes do not get there today (an empty
/// closing PUT goes through `blob_put_verified`), but the trait promises the blob; the checked
/// write now stores it.
async fn an_upload_committed_with_no_chunk_stores_the_empty_blob() {
    use wharf_registry::names::Digest;
    use wharf_registry::storage::UploadVersion;
    on_s3(async {
        let reg = registry();
        let id = "ffeeddccbbaa99887766554433221100";
        reg.storage
            .upload_create(id, Bytes::from_static(b"{}"))
            .await
            .expect("create");
        let empty = Digest::of(b"");
        reg.storage
            .upload_commit(id, &empty, Some(UploadVersion::EMPTY))
            .await
            .expect("commit");
        let info = reg.storage.blob_info(&empty).await.expect("info");
        assert_eq!(info.map(|i| i.size), Some(0));
    })
    .await
}

/// The error of the start-up check of a storage on `config`, which must fail.
async fn start_check_error(config: &wharf_registry::Config) -> String {
    let storage = wharf_registry::open_storage(config).expect("storage");
    storage
        .check_server()
        .await
        .expect_err("the start-up check fails")
        .to_string()
}

/// A bucket that does not exist is found at start (the check's first write), not by the first
/// push: the message names the bucket and the fix, not the server's XML.
async fn a_missing_bucket_is_refused_at_start_naming_it() {
    on_s3(async {
        let mut config = registry().config;
        config.storage.url = Some("s3://no-such-bucket-here/registry".to_string());
        let message = start_check_error(&config).await;
        let endpoint = config.storage.endpoint.clone().expect("endpoint");
        for part in [
            "s3://no-such-bucket-here/registry",
            &endpoint,
            "the bucket no-such-bucket-here does not exist: create it",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        assert!(!message.contains("<Error>"), "{message}");
    })
    .await
}

/// Credentials the server refuses are found at start too, naming where they come from and
/// never the secret. (RGW only: moto checks no signatures.)
#[tokio::test]
#[ignore = "needs Ceph RGW: run by scripts/test-all.sh"]
async fn refused_credentials_are_found_at_start_without_the_secret() {
    on_s3(async {
        let mut config = registry().config;
        let wrong = "wrong-secret-key-0123456789";
        config.storage.secret_access_key = Some(wharf_registry::config::Secret::new(wrong));
        let message = start_check_error(&config).await;
        for part in [
            "the server refused these credentials (PUT s3://",
            "AWS_SECRET_ACCESS_KEY",
            "secret_access_key in [storage]",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        assert!(!message.contains(wrong), "{message}");
    })
    .await
}

/// A server that ignores `If-None-Match: *` is refused when a replica starts, naming the
/// storage, the server and the fix: replicas rely on conditional writes (two appends at one
/// offset, the token signing key), and such a server would not say it ignored one. The lax
/// server is moto behind a relay that drops the header (moto checks no signatures, so the
/// request stays valid without it: a stand-in for servers without conditional writes). The same
/// server with the header passes, and the check leaves no object behind.
#[tokio::test]
#[ignore = "needs moto's S3 server: run by scripts/test-all.sh"]
async fn a_server_that_ignores_conditional_writes_is_refused_at_start() {
    on_moto(async {
        let reg = registry();
        reg.storage
            .check_server()
            .await
            .expect("moto honours If-None-Match");

        let (storage, relay) = relayed(&reg.config).await;
        relay.drop_header("If-None-Match");
        let message = storage
            .check_server()
            .await
            .expect_err("a server ignoring If-None-Match")
            .to_string();
        let bucket = reg.config.storage.url.clone().expect("url");
        for part in [
            "If-None-Match",
            &relay.endpoint,
            &bucket,
            "conditional writes",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }

        let mut lax = reg.config.clone();
        lax.storage.endpoint = Some(relay.endpoint.clone());
        let state = app_state(&lax, Arc::new(AllowAll)).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let served = tokio::time::timeout(
            Duration::from_secs(30),
            wharf_registry::serve_on(listener, lax, state, Router::new(), std::future::pending()),
        )
        .await
        .expect("serve_on returns at once");
        let refused = served
            .expect_err("serving on a server ignoring If-None-Match")
            .to_string();
        assert!(refused.contains("If-None-Match"), "{refused}");

        let bucket_name = bucket
            .trim_start_matches("s3://")
            .split('/')
            .next()
            .expect("bucket");
        let left = s3_server()
            .s3_request(
                "GET",
                &format!("/{bucket_name}?list-type=2&prefix=registry/_probe/"),
            )
            .expect("ListObjectsV2");
        assert!(!left.contains("<Key>"), "{left}");
    })
    .await
}

/// An upload of many small chunks: each append lists the upload's chunks, so their number is
/// bounded (`[storage] max_upload_chunks`, 40 here): one more is refused with the setting named,
/// nothing is written, and the upload still completes with what it has. The commit reads small
/// chunks ahead of their turn and large ones (over 1 MiB) in turn: the blob reads back byte for
/// byte, in order.
async fn an_upload_has_at_most_max_upload_chunks_and_its_small_chunks_read_back_in_order() {
    on_s3(at_most_max_upload_chunks()).await
}

async fn at_most_max_upload_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config(dir.path());
    config.storage.max_upload_chunks = 40;
    let reg = registry_configured(dir, config, Arc::new(AllowAll));
    let mut location = start_upload(&reg, "team/app").await;
    // Mostly a few bytes; one of 1 MiB (still read ahead) and two over it (read in turn).
    let sizes: Vec<usize> = (0..40)
        .map(|i| match i {
            10 => (2 << 20) + 5,
            20 => 1 << 20,
            30 => (1 << 20) + 1,
            _ => 1 + (i * 37) % 500,
        })
        .collect();
    let data = pattern(sizes.iter().sum::<usize>() + 1, 41);
    let patch = |location: String, offset: usize, chunk: &[u8]| {
        let range = format!("{offset}-{}", offset + chunk.len() - 1);
        let chunk = chunk.to_vec();
        let reg = &reg;
        async move {
            let headers = [
                ("content-range", range.as_str()),
                ("content-type", "application/octet-stream"),
            ];
            reg.call(Method::PATCH, &location, &headers, &chunk).await
        }
    };
    let mut offset = 0;
    for (i, size) in sizes.iter().enumerate() {
        let r = patch(location.clone(), offset, &data[offset..offset + size]).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "chunk {i}");
        offset += size;
        location = r.header("location").to_string();
    }
    let r = patch(location.clone(), offset, &data[offset..]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "the 41st chunk");
    assert_eq!(r.code(), "BLOB_UPLOAD_INVALID");
    let message = r.json()["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains("max_upload_chunks") && message.contains("40 chunks"),
        "{message}"
    );
    let status = reg.get(&location).await;
    assert_eq!(
        status.header("range"),
        format!("0-{}", offset - 1),
        "nothing written"
    );

    let stored = &data[..offset];
    let digest = digest_of(stored);
    let r = reg
        .call(Method::PUT, &with_digest(&location, &digest), &[], b"")
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = reg.get(&format!("/v2/team/app/blobs/{digest}")).await;
    let r = follow_blob_redirect(r, Method::GET, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == stored, "the blob reads back as uploaded");
}

on_each_s3_server!(
    a_missing_bucket_is_refused_at_start_naming_it,
    a_whole_upload_in_one_request_is_verified_before_it_appears,
    an_empty_blob_pushed_whole_is_stored,
    chunked_upload_hops_between_replicas_on_one_bucket,
    blobs_stream_through_the_registry_when_redirects_are_off,
    upkeep_aborts_multipart_uploads_of_a_writer_that_died,
    upkeep_leaves_a_slow_but_live_multipart_upload_alone,
    gc_with_a_short_grace_period_leaves_a_live_multipart_upload_alone,
    an_interrupted_chunk_resumes_on_another_replica,
    concurrent_appends_at_one_offset_cannot_both_win,
    a_hash_state_of_a_replaced_chunk_is_not_used_to_verify_the_upload,
    a_chunked_upload_hopping_replicas_is_not_read_back_to_verify_it,
    a_multipart_chunk_is_committed_on_its_replica_and_on_another,
    a_patch_streaming_longer_than_the_expiry_is_not_expired_by_another_replica,
    two_restores_of_one_blob_at_once_both_succeed,
    a_chunk_replaced_after_verification_is_not_committed_under_the_digest,
    a_replacement_with_md5_colliding_parts_is_not_committed_under_the_digest,
    a_failed_commit_never_shows_other_bytes_nor_deletes_a_concurrent_commits_blob,
    an_upload_of_content_gc_drops_as_it_commits_is_stored_anew,
    a_chunk_of_several_replaced_during_the_commit_answers_send_it_again,
    a_commit_without_a_verified_version_checks_what_it_stores,
    s3_requests_of_a_commit,
    a_commit_that_died_after_staging_leaves_nothing_expiry_keeps,
    no_chunk_is_written_into_a_session_being_deleted,
    an_upload_committed_with_no_chunk_stores_the_empty_blob,
    an_upload_has_at_most_max_upload_chunks_and_its_small_chunks_read_back_in_order,
);

fn bucket_of(config: &wharf_registry::Config) -> String {
    config
        .storage
        .url
        .as_deref()
        .and_then(|u| u.strip_prefix("s3://"))
        .and_then(|u| u.split('/').next())
        .expect("bucket")
        .to_string()
}

/// A bucket over its quota (Ceph RGW's bucket quota: `403 QuotaExceeded`) was reported as
/// refused credentials, telling the operator to check keys that were fine, and answered `500`.
/// Now it is a full storage like a full disk: `507`, the quota named in the log, and nothing of
/// the refused request kept in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: run by scripts/test-all.sh"]
async fn a_bucket_over_its_quota_is_a_full_storage() {
    on_s3(async {
        let reg = registry();
        reg.push_image("app", "v1", b"layer one").await;
        s3_server()
            .limit_bucket(&bucket_of(&reg.config), 2 * 1024 * 1024)
            .expect("quota");
        let bucket = bucket_of(&reg.config);
        let says_full = |r: &Resp| assert_storage_full(r, &bucket);
        // One PUT per chunk, and a multipart upload (a chunk of 8 MiB or more).
        for size in [3 * 1024 * 1024, 12 * 1024 * 1024] {
            let blob = pattern(size, 3);
            let (location, r) = reg.patch_new_upload("app", &blob).await;
            says_full(&r);
            assert_eq!(
                reg.upload_size(&location).await,
                0,
                "a chunk of {size} bytes"
            );
            assert_eq!(open_multipart_uploads(&reg), 0);

            let digest = digest_of(&blob);
            says_full(
                &reg.call(
                    Method::POST,
                    &format!("/v2/app/blobs/uploads/?digest={digest}"),
                    &[],
                    &blob,
                )
                .await,
            );
            assert_eq!(
                reg.get(&format!("/v2/app/blobs/{digest}")).await.status,
                StatusCode::NOT_FOUND
            );
            assert_eq!(open_multipart_uploads(&reg), 0);
        }
        // What was pushed before is still whole.
        let r = reg.get("/v2/app/manifests/v1").await;
        assert_eq!(r.status, StatusCode::OK);
    })
    .await
}
