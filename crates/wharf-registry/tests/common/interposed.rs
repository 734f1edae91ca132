//! A storage wrapper for deterministic interleavings: it forwards everything to another
//! storage, pauses at chosen steps of gc to let another client run, and counts reads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use wharf_registry::names::Digest;
use wharf_registry::storage::{
    Appended, ByteStream, ObjectInfo, Storage, StorageError, UploadStatus, UploadVersion,
};

/// Where gc pauses, on the watched blob.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    /// After gc's last re-read of the blob, before it removes anything (its first destructive
    /// call: setting the blob aside; `blob_delete` in the protocol this replaced).
    BlobReRead,
    /// After the blob is out of sight, before gc re-reads its last use.
    BlobSetAside,
    /// After gc's re-read of the manifest `watched` in its repository, before it removes it.
    RevisionReRead,
    /// Before an upload's hash state is saved (any upload: `watched` plays no part).
    UploadHashSave,
    /// Before the watched blob is stored whole (`blob_put`: a manifest's content).
    BlobPut,
    /// Before an upload is committed, its digest verified (any upload).
    UploadCommit,
}

pub type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// Forwards to `inner`. gc's side runs `hook` at its `pause` on `watched`; a pusher's side
/// raises `flags_read` when it finds a gc flag on `watched` (and will wait for gc). Counts `upload_read`s (the
/// commit reading an upload back to verify it).
pub struct Interposed {
    pub inner: Arc<dyn Storage>,
    pub watched: Digest,
    pub pause: Option<Pause>,
    pub hook: Mutex<Option<Hook>>,
    pub flags_read: Arc<tokio::sync::Notify>,
    pub upload_reads: AtomicUsize,
    /// Reads of `watched`'s gc flags that found one.
    pub flags_seen: AtomicUsize,
    /// Metadata lookups of any kind (`meta_info`, `meta_list`): what walking the repositories costs.
    pub meta_lookups: AtomicUsize,
}

impl Interposed {
    /// Makes the pause a gate: the first receiver is told when the pause is reached, and the
    /// paused operation goes on once the sender is used (or dropped).
    pub fn gate(
        &self,
    ) -> (
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (reached_tx, reached) = tokio::sync::oneshot::channel::<()>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        *self.hook.lock().expect("hook") = Some(Box::new(move || {
            Box::pin(async move {
                let _ = reached_tx.send(());
                let _ = released.await;
            })
        }));
        (reached, release)
    }

    async fn at(&self, pause: Pause, digest: &Digest) {
        if *digest == self.watched {
            self.at_any(pause).await;
        }
    }

    /// At `pause`, whatever it concerns.
    async fn at_any(&self, pause: Pause) {
        if self.pause == Some(pause) {
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
        self.at(Pause::BlobPut, d).await;
        self.inner.blob_put(d, data).await
    }
    async fn blob_touch(&self, d: &Digest) -> Result<(), StorageError> {
        self.inner.blob_touch(d).await
    }
    async fn blob_delete(&self, d: &Digest) -> Result<bool, StorageError> {
        self.at(Pause::BlobReRead, d).await;
        self.inner.blob_delete(d).await
    }
    async fn blob_set_aside(&self, d: &Digest) -> Result<bool, StorageError> {
        self.at(Pause::BlobReRead, d).await;
        self.inner.blob_set_aside(d).await
    }
    async fn blob_aside_last_use(&self, d: &Digest) -> Result<Option<SystemTime>, StorageError> {
        self.at(Pause::BlobSetAside, d).await;
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
    async fn upload_info(&self, id: &str) -> Result<Option<UploadStatus>, StorageError> {
        self.inner.upload_info(id).await
    }
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
    ) -> Result<Appended, StorageError> {
        self.inner.upload_append(id, offset, data).await
    }
    async fn upload_read(&self, id: &str) -> Result<ByteStream, StorageError> {
        self.upload_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.upload_read(id).await
    }
    async fn upload_save_hash(
        &self,
        id: &str,
        offset: u64,
        state: Bytes,
    ) -> Result<(), StorageError> {
        self.at_any(Pause::UploadHashSave).await;
        self.inner.upload_save_hash(id, offset, state).await
    }
    async fn upload_saved_hash(
        &self,
        id: &str,
        offset: u64,
    ) -> Result<Option<Bytes>, StorageError> {
        self.inner.upload_saved_hash(id, offset).await
    }
    fn shared_between_servers(&self) -> bool {
        self.inner.shared_between_servers()
    }
    fn puts_verified_blobs(&self) -> bool {
        self.inner.puts_verified_blobs()
    }
    async fn upload_commit(
        &self,
        id: &str,
        d: &Digest,
        verified: Option<UploadVersion>,
    ) -> Result<(), StorageError> {
        self.at_any(Pause::UploadCommit).await;
        self.inner.upload_commit(id, d, verified).await
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
        self.meta_lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.meta_info(key).await
    }
    async fn meta_delete(&self, key: &str) -> Result<bool, StorageError> {
        if key.contains("/_manifests/revisions/") && key.ends_with(self.watched.hex()) {
            self.at(Pause::RevisionReRead, &self.watched).await;
        }
        self.inner.meta_delete(key).await
    }
    async fn meta_list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.meta_lookups.fetch_add(1, Ordering::SeqCst);
        let listed = self.inner.meta_list(prefix).await;
        if prefix.starts_with("_gc/")
            && prefix.contains(self.watched.hex())
            && listed.as_ref().is_ok_and(|names| !names.is_empty())
        {
            self.flags_seen.fetch_add(1, Ordering::SeqCst);
            self.flags_read.notify_one();
        }
        listed
    }
    async fn clean_temporary(&self, older_than: SystemTime) -> Result<usize, StorageError> {
        self.inner.clean_temporary(older_than).await
    }
}

pub fn interposed(inner: Arc<dyn Storage>, watched: &Digest, pause: Option<Pause>) -> Interposed {
    Interposed {
        inner,
        watched: watched.clone(),
        pause,
        hook: Mutex::new(None),
        flags_read: Arc::new(tokio::sync::Notify::new()),
        upload_reads: AtomicUsize::new(0),
        flags_seen: AtomicUsize::new(0),
        meta_lookups: AtomicUsize::new(0),
    }
}
