//! gc on one replica while another pushes, on each backend: the interleavings of gc's
//! flag / re-read / set aside / re-check / drop protocol (`services::gc`) against a manifest
//! push, made deterministic by pausing gc inside a storage wrapper and letting the push run in
//! that pause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use wharf_registry::GcOptions;
use wharf_registry::error::RegistryError;
use wharf_registry::names::{Digest, Reference, RepoName};
use wharf_registry::services::{Limits, Registry};
use wharf_registry::storage::{ByteStream, ObjectInfo, Storage, StorageError};

mod common;

use common::*;

/// Where gc pauses, on the watched blob.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pause {
    /// After gc's last re-read of the blob, before it removes anything (its first destructive
    /// call: setting the blob aside; `blob_delete` in the protocol this replaced).
    BeforeRemoving,
    /// After the blob is out of sight, before gc re-reads its last use.
    BeforeTheLastCheck,
}

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// Forwards to `inner`. gc's side runs `hook` at its `pause` on `watched`; a pusher's side
/// raises `flags_read` when it reads the gc flags of `watched`.
struct Interposed {
    inner: Arc<dyn Storage>,
    watched: Digest,
    pause: Option<Pause>,
    hook: Mutex<Option<Hook>>,
    flags_read: Arc<tokio::sync::Notify>,
}

impl Interposed {
    async fn at(&self, pause: Pause, digest: &Digest) {
        if self.pause == Some(pause) && *digest == self.watched {
            let hook = self.hook.lock().expect("hook").take();
            if let Some(hook) = hook {
                hook().await;
            }
        }
    }
}

#[async_trait::async_trait]
impl Storage for Interposed {
    async fn blob_info(&self, d: &Digest) -> Result<Option<ObjectInfo>, StorageError> {
        self.inner.blob_info(d).await
    }
    async fn blob_read(&self, d: &Digest, o: u64, l: u64) -> Result<ByteStream, StorageError> {
        self.inner.blob_read(d, o, l).await
    }
    async fn blob_read_small(&self, d: &Digest, limit: u64) -> Result<Bytes, StorageError> {
        self.inner.blob_read_small(d, limit).await
    }
    async fn blob_put(&self, d: &Digest, data: Bytes) -> Result<(), StorageError> {
        self.inner.blob_put(d, data).await
    }
    async fn blob_touch(&self, d: &Digest) -> Result<(), StorageError> {
        self.inner.blob_touch(d).await
    }
    async fn blob_delete(&self, d: &Digest) -> Result<bool, StorageError> {
        self.at(Pause::BeforeRemoving, d).await;
        self.inner.blob_delete(d).await
    }
    async fn blob_set_aside(&self, d: &Digest) -> Result<bool, StorageError> {
        self.at(Pause::BeforeRemoving, d).await;
        self.inner.blob_set_aside(d).await
    }
    async fn blob_aside_last_use(&self, d: &Digest) -> Result<Option<SystemTime>, StorageError> {
        self.at(Pause::BeforeTheLastCheck, d).await;
        self.inner.blob_aside_last_use(d).await
    }
    async fn blob_restore(&self, d: &Digest) -> Result<(), StorageError> {
        self.inner.blob_restore(d).await
    }
    async fn blob_drop_aside(&self, d: &Digest) -> Result<(), StorageError> {
        self.inner.blob_drop_aside(d).await
    }
    async fn blob_list(&self) -> Result<Vec<(Digest, ObjectInfo)>, StorageError> {
        self.inner.blob_list().await
    }
    async fn upload_create(&self, id: &str, info: Bytes) -> Result<(), StorageError> {
        self.inner.upload_create(id, info).await
    }
    async fn upload_info(&self, id: &str) -> Result<Option<(Bytes, ObjectInfo)>, StorageError> {
        self.inner.upload_info(id).await
    }
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
    ) -> Result<u64, StorageError> {
        self.inner.upload_append(id, offset, data).await
    }
    async fn upload_read(&self, id: &str) -> Result<ByteStream, StorageError> {
        self.inner.upload_read(id).await
    }
    async fn upload_commit(&self, id: &str, d: &Digest) -> Result<(), StorageError> {
        self.inner.upload_commit(id, d).await
    }
    async fn upload_delete(&self, id: &str) -> Result<(), StorageError> {
        self.inner.upload_delete(id).await
    }
    async fn upload_list(&self) -> Result<Vec<(String, ObjectInfo)>, StorageError> {
        self.inner.upload_list().await
    }
    async fn meta_put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.inner.meta_put(key, data).await
    }
    async fn meta_get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        self.inner.meta_get(key).await
    }
    async fn meta_info(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        self.inner.meta_info(key).await
    }
    async fn meta_delete(&self, key: &str) -> Result<bool, StorageError> {
        self.inner.meta_delete(key).await
    }
    async fn meta_list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let listed = self.inner.meta_list(prefix).await;
        if prefix.starts_with("_gc/") && prefix.contains(self.watched.hex()) {
            self.flags_read.notify_one();
        }
        listed
    }
    async fn clean_temporary(&self, older_than: SystemTime) -> Result<usize, StorageError> {
        self.inner.clean_temporary(older_than).await
    }
}

fn interposed(inner: Arc<dyn Storage>, watched: &Digest, pause: Option<Pause>) -> Interposed {
    Interposed {
        inner,
        watched: watched.clone(),
        pause,
        hook: Mutex::new(None),
        flags_read: Arc::new(tokio::sync::Notify::new()),
    }
}

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
    for entry in walk(&config.root.join("blobs")) {
        std::fs::File::options()
            .write(true)
            .open(&entry)
            .and_then(|f| f.set_modified(past))
            .expect("set a blob's time back");
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
    pushed: Arc<Mutex<Option<Result<Digest, RegistryError>>>>,
    hook_ran: Arc<AtomicBool>,
    _reg: Reg,
}

/// An unreferenced, old layer; gc collecting it pauses at `pause` while another replica
/// pushes a manifest (tag `new`, a fresh config) that references it. Returns after gc.
async fn gc_racing_a_push(pause: Pause) -> Race {
    let reg = registry();
    let direct = Registry::new(reg.storage.clone(), Limits::default());
    let repo = RepoName::parse("team/app").expect("name");
    let layer_bytes = b"the layer two images share".to_vec();
    let layer = Digest::of(&layer_bytes);
    let old = put_image(&direct, &repo, "old", b"{\"v\":1}", &layer_bytes)
        .await
        .expect("first push");
    direct
        .delete_manifest(&repo, &Reference::Digest(old))
        .await
        .expect("delete the first image");
    let grace = age_everything(&reg.config).await;

    // The pushing replica: its own connection to the same storage.
    let pusher_storage = Arc::new(interposed(
        wharf_registry::open_storage(&reg.config).expect("storage"),
        &layer,
        None,
    ));
    let flags_read = pusher_storage.flags_read.clone();
    let pusher = Arc::new(Registry::new(pusher_storage, Limits::default()));

    let gc_storage = Arc::new(interposed(reg.storage.clone(), &layer, Some(pause)));
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
                let config = b"{\"v\":2}";
                let outcome = async {
                    client
                        .import_blob(&name, Bytes::from_static(config))
                        .await?;
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
        pushed,
        hook_ran,
        _reg: reg,
    }
}

/// The push lands between gc's last re-read of the layer and its delete (what lost referenced
/// blobs before the two-step delete): it is accepted, the layer stays, the image pulls whole.
async fn a_push_between_gc_reading_a_blob_and_deleting_it_keeps_the_blob() {
    let race = gc_racing_a_push(Pause::BeforeRemoving).await;
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
}

/// The push lands when gc has the layer out of sight, before its last check: the push waits for
/// gc, finds the layer gone and is refused with MANIFEST_BLOB_UNKNOWN (the client uploads it
/// again); nothing points at missing content.
async fn a_push_while_gc_holds_a_blob_aside_is_refused_cleanly() {
    let race = gc_racing_a_push(Pause::BeforeTheLastCheck).await;
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

on_each_backend!(
    a_push_between_gc_reading_a_blob_and_deleting_it_keeps_the_blob,
    a_push_while_gc_holds_a_blob_aside_is_refused_cleanly,
);
