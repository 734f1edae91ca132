//! gc on one replica while another pushes, on each backend: the interleavings of gc's
//! flag / re-read / set aside / re-check / drop protocol (`services::gc`) against a manifest
//! push, made deterministic by pausing gc inside a storage wrapper and letting the push run in
//! that pause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use wharf_registry::GcOptions;
use wharf_registry::error::RegistryError;
use wharf_registry::names::{Digest, Reference, RepoName};
use wharf_registry::services::{Limits, Registry};

mod common;

use common::interposed::{Pause, interposed};
use common::*;

fn image(config: &[u8], layer: &[u8]) -> Bytes {
    Bytes::from(image_manifest(
        &digest_of(config),
        config.len(),
        &digest_of(layer),
        layer.len(),
        None,
    ))
}

async fn put_image(
    registry: &Registry,
    repo: &RepoName,
    tag: &str,
    config: &[u8],
    layer: &[u8],
) -> Result<Digest, RegistryError> {
    for blob in [config, layer] {
        registry
            .import_blob(repo, Bytes::copy_from_slice(blob))
            .await?;
    }
    let pushed = registry
        .put_manifest(
            repo,
            &Reference::Tag(tag.into()),
            Some(OCI_MANIFEST),
            image(config, layer),
        )
        .await?;
    Ok(pushed.digest)
}

/// Makes what the registry at `config` holds old enough for gc; returns the grace period to
/// give it. The filesystem's times are set back; S3's cannot be, so the test waits (S3 times
/// have whole seconds: a grace of 3 s keeps a touch made just before gc's check young).
async fn age_everything(config: &wharf_registry::Config) -> Duration {
    if backend() == Backend::S3 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        return Duration::from_secs(3);
    }
    let past = SystemTime::now() - Duration::from_secs(7200);
    let files = [
        walk(&config.root.join("blobs")),
        walk(&config.root.join("repositories")),
    ];
    for entry in files.iter().flatten() {
        std::fs::File::options()
            .write(true)
            .open(entry)
            .and_then(|f| f.set_modified(past))
            .expect("set a file's time back");
    }
    Duration::from_secs(60)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The image tagged `tag` in `repo`, pulled whole: its manifest and every blob it references
/// read back and checked against their digests.
async fn pull_whole(registry: &Registry, repo: &RepoName, tag: &str) -> Result<(), String> {
    let (_, body) = registry
        .get_manifest(repo, &Reference::Tag(tag.into()))
        .await
        .map_err(|e| format!("manifest {tag}: {e}"))?;
    let doc: serde_json::Value = serde_json::from_slice(&body).expect("manifest json");
    let descriptors = std::iter::once(&doc["config"]).chain(
        doc["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
    );
    for descriptor in descriptors {
        let digest = Digest::parse(descriptor["digest"].as_str().expect("digest")).expect("digest");
        let info = registry
            .stat_blob(repo, &digest)
            .await
            .map_err(|e| format!("blob {digest}: {e}"))?;
        let mut stream = registry
            .read_blob(&digest, 0, info.size)
            .await
            .map_err(|e| format!("blob {digest}: {e}"))?;
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk.map_err(|e| format!("blob {digest}: {e}"))?);
        }
        if Digest::of(&data) != digest {
            return Err(format!("blob {digest} reads back as {}", Digest::of(&data)));
        }
    }
    Ok(())
}

struct Race {
    repo: RepoName,
    layer: Digest,
    /// The registry the pushing replica serves, and whether its push was accepted.
    pusher: Arc<Registry>,
    pusher_storage: Arc<common::interposed::Interposed>,
    pushed: Arc<Mutex<Option<Result<Digest, RegistryError>>>>,
    hook_ran: Arc<AtomicBool>,
    _reg: Reg,
}

/// An unreferenced, old layer; gc collecting it pauses at `pause` while another replica
/// pushes a manifest (tag `new`, a fresh config) that references it. Returns after gc.
/// With [`Pause::RevisionReRead`], the old image is only untagged instead, and the push
/// is the same manifest again (tag `new`) as gc removes its revision.
async fn gc_racing_a_push(pause: Pause) -> Race {
    let again = pause == Pause::RevisionReRead;
    let reg = registry();
    let direct = Registry::new(reg.storage.clone(), Limits::default());
    let repo = RepoName::parse("team/app").expect("name");
    let layer_bytes = b"the layer two images share".to_vec();
    let layer = Digest::of(&layer_bytes);
    let old = put_image(&direct, &repo, "old", b"{\"v\":1}", &layer_bytes)
        .await
        .expect("first push");
    let (removed, watched) = if again {
        (Reference::Tag("old".into()), old)
    } else {
        (Reference::Digest(old), layer.clone())
    };
    direct
        .delete_manifest(&repo, &removed)
        .await
        .expect("delete the first image or its tag");
    let grace = age_everything(&reg.config).await;

    // The pushing replica: its own connection to the same storage.
    let pusher_storage = Arc::new(interposed(
        wharf_registry::open_storage(&reg.config).expect("storage"),
        &watched,
        None,
    ));
    let flags_read = pusher_storage.flags_read.clone();
    let pusher = Arc::new(Registry::new(pusher_storage.clone(), Limits::default()));

    let gc_storage = Arc::new(interposed(reg.storage.clone(), &watched, Some(pause)));
    let pushed = Arc::new(Mutex::new(None));
    let hook_ran = Arc::new(AtomicBool::new(false));
    let (client, name, result, ran) = (
        pusher.clone(),
        repo.clone(),
        pushed.clone(),
        hook_ran.clone(),
    );
    *gc_storage.hook.lock().expect("hook") = Some(Box::new(move || {
        Box::pin(async move {
            ran.store(true, Ordering::SeqCst);
            // As a client does: the layer is there (HEAD), so only the new config is uploaded.
            let push = tokio::spawn(async move {
                let config: &[u8] = if again { b"{\"v\":1}" } else { b"{\"v\":2}" };
                let outcome = async {
                    if !again {
                        client
                            .import_blob(&name, Bytes::from_static(config))
                            .await?;
                    }
                    let manifest = image(config, &layer_bytes);
                    let tag = Reference::Tag("new".into());
                    let pushed = client
                        .put_manifest(&name, &tag, Some(OCI_MANIFEST), manifest)
                        .await?;
                    Ok(pushed.digest)
                }
                .await;
                *result.lock().expect("result") = Some(outcome);
            });
            // gc resumes once the push has finished, or is waiting for gc to decide.
            tokio::select! {
                _ = flags_read.notified() => {}
                done = push => done.expect("push task"),
            }
        })
    }));
    let gc = Registry::new(gc_storage, Limits::default());
    let opts = GcOptions {
        grace,
        ..GcOptions::default()
    };
    gc.collect_garbage(&opts, SystemTime::now())
        .await
        .expect("gc");
    // A push still waiting for gc goes on now; wait for its answer.
    for _ in 0..2000 {
        if !hook_ran.load(Ordering::SeqCst) || pushed.lock().expect("result").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Race {
        repo,
        layer,
        pusher,
        pusher_storage,
        pushed,
        hook_ran,
        _reg: reg,
    }
}

/// The push lands between gc's last re-read of the layer and its delete (what lost referenced
/// blobs before the two-step delete): it is accepted, the layer stays, the image pulls whole.
async fn a_push_between_gc_reading_a_blob_and_deleting_it_keeps_the_blob() {
    let race = gc_racing_a_push(Pause::BlobReRead).await;
    assert!(race.hook_ran.load(Ordering::SeqCst), "gc reached the layer");
    let pushed = race.pushed.lock().expect("result").take();
    assert!(
        matches!(pushed, Some(Ok(_))),
        "the push is accepted: {pushed:?}"
    );
    assert!(
        race.pusher
            .has_blob(&race.repo, &race.layer)
            .await
            .expect("has")
    );
    pull_whole(&race.pusher, &race.repo, "new")
        .await
        .expect("the image pushed during gc pulls whole");
    assert!(
        race.pusher_storage.flags_seen.load(Ordering::SeqCst) > 0,
        "the push saw gc's flag and waited for its decision"
    );
}

/// The push lands when gc has the layer out of sight, before its last check: the push waits for
/// gc, finds the layer gone and is refused with MANIFEST_BLOB_UNKNOWN (the client uploads it
/// again); nothing points at missing content.
async fn a_push_while_gc_holds_a_blob_aside_is_refused_cleanly() {
    let race = gc_racing_a_push(Pause::BlobSetAside).await;
    assert!(race.hook_ran.load(Ordering::SeqCst), "gc reached the layer");
    let pushed = race.pushed.lock().expect("result").take();
    assert!(
        matches!(pushed, Some(Err(RegistryError::ManifestBlobUnknown { .. }))),
        "the push is refused: {pushed:?}"
    );
    assert!(
        !race
            .pusher
            .has_blob(&race.repo, &race.layer)
            .await
            .expect("has")
    );
    let tag = race
        .pusher
        .tag_target(&race.repo, "new")
        .await
        .expect("tag");
    assert_eq!(tag, None, "no tag points at an image missing a layer");
}

/// The old image was only untagged: gc is removing its manifest from the repository when
/// another replica pushes the same manifest again with a tag, between gc's re-read of the
/// revision and its removal. The push is accepted, and the tag pulls whole.
async fn a_manifest_pushed_again_while_gc_removes_it_from_its_repository_stays() {
    let race = gc_racing_a_push(Pause::RevisionReRead).await;
    assert!(
        race.hook_ran.load(Ordering::SeqCst),
        "gc reached the manifest"
    );
    let pushed = race.pushed.lock().expect("result").take();
    assert!(
        matches!(pushed, Some(Ok(_))),
        "the push is accepted: {pushed:?}"
    );
    pull_whole(&race.pusher, &race.repo, "new")
        .await
        .expect("the manifest pushed again during gc pulls whole");
}

on_each_backend!(
    a_push_between_gc_reading_a_blob_and_deleting_it_keeps_the_blob,
    a_push_while_gc_holds_a_blob_aside_is_refused_cleanly,
    a_manifest_pushed_again_while_gc_removes_it_from_its_repository_stays,
);

/// Two gc runs at once on one bucket (two replicas' upkeep, or `wharf registry gc` beside a
/// server), round after round: both passes succeed, every tagged image still pulls whole, and
/// the unused old blobs are gone, none left set aside. The runs take turns on each digest
/// (`services::gc`, two gc runs at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Ceph RGW: run by scripts/test-all.sh"]
async fn two_gc_runs_at_once_on_s3_lose_nothing_and_fail_nothing() {
    on_s3(async {
        let reg = registry();
        let direct = Registry::new(reg.storage.clone(), Limits::default());
        let repo = RepoName::parse("team/app").expect("name");
        let replica = || {
            let storage = wharf_registry::open_storage(&reg.config).expect("storage");
            Registry::new(storage, Limits::default())
        };
        for round in 0..3u8 {
            let layer = vec![round; 5000];
            let config = format!("{{\"v\":{round}}}");
            put_image(
                &direct,
                &repo,
                &format!("v{round}"),
                config.as_bytes(),
                &layer,
            )
            .await
            .expect("push");
            let mut unused = Vec::new();
            for i in 0..8u8 {
                let blob = Bytes::from(vec![round * 16 + i; 3000]);
                unused.push(direct.import_blob(&repo, blob).await.expect("blob"));
            }
            let grace = age_everything(&reg.config).await;
            let (first, second) = (replica(), replica());
            let opts = GcOptions {
                grace,
                ..GcOptions::default()
            };
            let now = SystemTime::now();
            let (a, b) = tokio::join!(
                first.collect_garbage(&opts, now),
                second.collect_garbage(&opts, now)
            );
            let (a, b) = (a.expect("the first run"), b.expect("the second run"));
            for tag in 0..=round {
                pull_whole(&direct, &repo, &format!("v{tag}"))
                    .await
                    .expect("a tagged image pulls whole after two gc runs");
            }
            for blob in &unused {
                assert!(
                    reg.storage.blob_info(blob).await.expect("info").is_none(),
                    "round {round}: {blob} is gone"
                );
                assert_eq!(
                    reg.storage.blob_aside_last_use(blob).await.expect("aside"),
                    None,
                    "round {round}: nothing of {blob} left aside"
                );
                assert!(
                    a.blobs_removed.contains(blob) || b.blobs_removed.contains(blob),
                    "round {round}: one of the runs removed {blob}"
                );
            }
            assert!(a.blobs_skipped.is_empty() && b.blobs_skipped.is_empty());
        }
    })
    .await
}
