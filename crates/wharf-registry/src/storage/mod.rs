//! The storage trait: everything the services need from a backend, and nothing HTTP.
//!
//! Three kinds of data, chosen so an object store (S3 via `object_store`) maps onto them without
//! touching the services or routes:
//! - content-addressed blobs (`blob_*`), shared by every repository, written only by
//!   [`Storage::blob_put`] (small, already verified) or [`Storage::upload_commit`] (the atomic
//!   "this upload is now blob D" step: rename here, multipart-complete + copy on S3);
//! - upload sessions (`upload_*`): append-only byte streams with a small info document;
//! - small metadata documents (`meta_*`: tags, repository links, referrer descriptors) under
//!   `/`-separated keys that the services build from validated names only.
//!
//! Digests are verified by the services (hashing on the fly), never trusted from the backend.

pub mod fs;
mod fs_append;
pub mod s3;

use std::io;
use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

use crate::names::Digest;

/// A stream of bytes in or out of storage.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: io::Error,
    },
    /// The incoming stream (the client's request body) failed: a client problem, not ours.
    #[error("reading the request body: {0}")]
    Stream(io::Error),
    #[error("upload {id} is at offset {actual}, not {expected}")]
    OffsetMismatch {
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("no such upload: {0}")]
    UploadUnknown(String),
    #[error("no such blob: {0}")]
    BlobUnknown(Digest),
    #[error("invalid storage key {0:?}")]
    InvalidKey(String),
    /// What [`Storage::blob_put_verified`] received does not have the expected digest; nothing
    /// was stored.
    #[error("the content has digest {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// The upload's bytes are no longer those its digest was verified on: a late request at
    /// the same offset (a client's retry on another replica) replaced a chunk. Nothing stored.
    #[error(
        "upload {id} changed after its digest was verified (a late request replaced a chunk): \
         send it again"
    )]
    UploadChanged { id: String },
    /// An upload on S3 storage already has as many chunks as one may have
    /// (`[storage] max_upload_chunks`); nothing was written.
    #[error(
        "upload {id} already has {max} chunks, the most one upload may have here \
         ([storage] max_upload_chunks): upload the blob again in larger chunks, or in one request"
    )]
    TooManyChunks { id: String, max: usize },
    /// The configured location or client settings are unusable; the message says the fix.
    #[error("{0}")]
    Config(String),
}

impl StorageError {
    /// The storage has no room left: a full disk or a quota. The filesystem backend keeps
    /// nothing of an upload's request that hit it (the append is rolled back); a pull-through
    /// download's file stays for its readers, and its fetch removes it.
    pub fn is_full(&self) -> bool {
        matches!(self, StorageError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// Last write (or touch): the garbage collector's grace period is measured from here.
    pub modified: SystemTime,
}

/// Names the exact bytes an upload holds where servers share uploads (S3): a chain over its
/// chunks' ETags, so it changes with every chunk written, including one that overwrote another
/// (two replicas completing multipart uploads at one offset: S3 cannot make that conditional).
/// A saved hash state is used only with the version it was computed on (`services::uploads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadVersion([u8; 32]);

impl UploadVersion {
    /// An upload with no bytes yet.
    pub const EMPTY: UploadVersion = UploadVersion([0; 32]);
    /// Length of [`UploadVersion::as_bytes`].
    pub const LEN: usize = 32;

    /// The version after the chunk at `offset` whose stored object is tagged `chunk_tag`.
    pub fn then(&self, offset: u64, chunk_tag: &str) -> UploadVersion {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(offset.to_be_bytes());
        h.update(chunk_tag.as_bytes());
        UploadVersion(h.finalize().into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; 32]) -> UploadVersion {
        UploadVersion(bytes)
    }
}

/// What [`Storage::upload_info`] knows of a session.
#[derive(Debug, Clone)]
pub struct UploadStatus {
    /// The info document given to [`Storage::upload_create`].
    pub info: Bytes,
    /// Its size (bytes received) and last write.
    pub object: ObjectInfo,
    /// Where [`Storage::shared_between_servers`]: the bytes it holds now.
    pub version: Option<UploadVersion>,
}

/// What [`Storage::upload_append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The upload's size after the chunk.
    pub size: u64,
    /// Where [`Storage::shared_between_servers`]: the upload's version the chunk was appended to
    /// (as this append found it) and the version with exactly this request's chunk. A hash of
    /// the bytes before is continued into a hash of `after` only if it was of `before`.
    pub before: Option<UploadVersion>,
    pub after: Option<UploadVersion>,
}

impl Appended {
    /// An append where uploads are not shared (no versions).
    pub fn unversioned(size: u64) -> Appended {
        Appended {
            size,
            before: None,
            after: None,
        }
    }
}

#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    // --- blobs ---
    async fn blob_info(&self, digest: &Digest) -> Result<Option<ObjectInfo>, StorageError>;
    /// `len` bytes starting at `offset` (the caller has checked the range against the size).
    async fn blob_read(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream, StorageError>;
    /// Reads a whole blob known to be small (manifests), up to `limit` bytes.
    async fn blob_read_small(&self, digest: &Digest, limit: u64) -> Result<Bytes, StorageError>;
    /// Stores a small blob whose digest the caller has computed; atomic, idempotent.
    async fn blob_put(&self, digest: &Digest, data: Bytes) -> Result<(), StorageError>;
    /// Whether [`Storage::blob_put_verified`] is worth using: an upload sent in one request then
    /// goes straight to its blob, skipping the session's copy (S3, where that copy is a second
    /// write of every byte).
    fn puts_verified_blobs(&self) -> bool {
        false
    }
    /// Streams `data` into blob `digest`, hashing it on the way: it becomes visible only if the
    /// digest matches (else [`StorageError::DigestMismatch`], nothing stored), and a stream error
    /// stores nothing either. Atomic and idempotent like [`Storage::upload_commit`].
    async fn blob_put_verified(
        &self,
        digest: &Digest,
        _data: ByteStream,
    ) -> Result<u64, StorageError> {
        Err(StorageError::BlobUnknown(digest.clone()))
    }
    /// Marks a blob as recently used, so a concurrent gc keeps it (see `services::gc`).
    async fn blob_touch(&self, digest: &Digest) -> Result<(), StorageError>;
    async fn blob_delete(&self, digest: &Digest) -> Result<bool, StorageError>;
    /// gc's revocable delete, step 1: moves the blob out of sight (reads, touches and
    /// [`Storage::blob_info`] no longer find it) to a place of its own, keeping what
    /// [`Storage::blob_aside_last_use`] needs. Returns false when there was no blob. Followed by
    /// [`Storage::blob_restore`] or [`Storage::blob_drop_aside`] (see `services::gc`).
    async fn blob_set_aside(&self, digest: &Digest) -> Result<bool, StorageError>;
    /// The last use of a blob set aside, including a touch that raced with setting it aside;
    /// `None` when nothing of that digest is set aside.
    async fn blob_aside_last_use(
        &self,
        digest: &Digest,
    ) -> Result<Option<SystemTime>, StorageError>;
    /// Puts a blob set aside back where it was (if the same content was stored there meanwhile,
    /// that copy stays); nothing when nothing is set aside.
    async fn blob_restore(&self, digest: &Digest) -> Result<(), StorageError>;
    /// Deletes a blob set aside, for good; never the blob stored under its name meanwhile.
    async fn blob_drop_aside(&self, digest: &Digest) -> Result<(), StorageError>;
    async fn blob_list(&self) -> Result<Vec<(Digest, ObjectInfo)>, StorageError>;
    /// A URL the client may fetch the blob from itself with `method` (GET or HEAD), instead of
    /// through the registry (S3's presigned URLs); `None` streams it (the default).
    async fn blob_redirect(
        &self,
        _digest: &Digest,
        _method: &http::Method,
    ) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    // --- upload sessions ---
    /// Whether other servers (replicas) write to the same storage: sessions cached in memory
    /// are then re-checked against storage on every request.
    fn shared_between_servers(&self) -> bool {
        false
    }
    /// Checks, once at start, that the storage server does what this backend relies on; the
    /// error says what is missing and the fix. The filesystem needs nothing.
    async fn check_server(&self) -> Result<(), StorageError> {
        Ok(())
    }
    /// The read-only part of [`Storage::check_server`]: the server answers, and these
    /// credentials may read (for `gc --dry-run`, which must not write).
    async fn check_reachable(&self) -> Result<(), StorageError> {
        Ok(())
    }
    async fn upload_create(&self, id: &str, info: Bytes) -> Result<(), StorageError>;
    /// The session's info document, current size and version, if the session exists.
    async fn upload_info(&self, id: &str) -> Result<Option<UploadStatus>, StorageError>;
    /// Appends `data` if the upload is exactly `offset` bytes long; returns the new size (and
    /// versions where shared). On a stream error, what was received stays appended (the size
    /// tells the client where to resume).
    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
    ) -> Result<Appended, StorageError>;
    /// [`Storage::upload_append`] that also feeds every byte it appends, in order, to `hasher`
    /// and hands the hasher back. A backend may hash where it touches the bytes anyway (the
    /// filesystem does, on its write thread); by default they are hashed on a thread of their
    /// own. After an error the hasher is gone: it may have seen bytes that were not stored.
    async fn upload_append_hashed(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
        hasher: Option<Sha256>,
    ) -> Result<(Appended, Option<Sha256>), StorageError> {
        let (data, hashed) = hash_in_background(data, hasher);
        let result = self.upload_append(id, offset, data).await;
        // The stream is dropped by now, so the hashing thread has seen every chunk and ends.
        let hasher = hashed.await.ok().flatten();
        result.map(|appended| (appended, hasher))
    }
    /// Whether the bytes an append has reported ([`Storage::upload_append_reporting`]) can be
    /// read ([`Storage::upload_read_range`]) while the append goes on: the filesystem, not S3
    /// (the parts of a multipart upload in flight cannot be read).
    fn reads_uploads_while_appending(&self) -> bool {
        false
    }
    /// [`Storage::upload_append`] that sets `progress` to the upload's size each time more of
    /// it is readable with [`Storage::upload_read_range`]. By default only the end is reported.
    async fn upload_append_reporting(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
        progress: tokio::sync::watch::Sender<u64>,
    ) -> Result<u64, StorageError> {
        let size = self.upload_append(id, offset, data).await?.size;
        progress.send_replace(size);
        Ok(size)
    }
    /// `len` bytes of upload `id` from `offset`, all of them reported readable by an append
    /// that may still be running; only where [`Storage::reads_uploads_while_appending`].
    /// [`StorageError::UploadUnknown`] once the session is gone (committed or deleted).
    async fn upload_read_range(
        &self,
        id: &str,
        _offset: u64,
        _len: u64,
    ) -> Result<ByteStream, StorageError> {
        Err(StorageError::Io {
            op: "read while appending",
            path: id.to_string(),
            source: io::ErrorKind::Unsupported.into(),
        })
    }
    async fn upload_read(&self, id: &str) -> Result<ByteStream, StorageError>;
    /// Keeps `state`, the hash of the upload's first `offset` bytes, with the session, so the
    /// server that gets its next request continues hashing instead of reading it all back at
    /// commit. Only where [`Storage::shared_between_servers`]; elsewhere nothing is kept.
    /// `state` is opaque here: the services put the [`UploadVersion`] it is of in it.
    async fn upload_save_hash(
        &self,
        _id: &str,
        _offset: u64,
        _state: Bytes,
    ) -> Result<(), StorageError> {
        Ok(())
    }
    /// The state [`Storage::upload_save_hash`] kept for exactly `offset` bytes, if any.
    async fn upload_saved_hash(
        &self,
        _id: &str,
        _offset: u64,
    ) -> Result<Option<Bytes>, StorageError> {
        Ok(None)
    }
    /// Marks upload `id` as in use now: a request is streaming into it (or committing it).
    /// Where servers share uploads, another server's upkeep judges an upload's idleness by its
    /// latest stored write ([`Storage::upload_list`]), and a chunk on its way is stored only
    /// when it ends; the services call this while such a request lasts (`services::uploads`).
    /// [`Storage::upload_delete`] removes the mark with the session. Nothing by default.
    async fn upload_keep_alive(&self, _id: &str) -> Result<(), StorageError> {
        Ok(())
    }
    /// Atomically makes the upload's content visible as blob `digest` (verified by the caller)
    /// and removes the session. Concurrent commits of the same digest are safe. `verified` is
    /// the version the caller hashed, where [`Storage::shared_between_servers`]: the commit
    /// stores exactly those bytes, or fails with [`StorageError::UploadChanged`] when a late
    /// request (another replica's) replaced a chunk since. Other bytes never appear under the
    /// digest, not even briefly, and a failed commit removes nothing stored there (another
    /// commit of the same digest may have stored, or only touched, it meanwhile).
    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        verified: Option<UploadVersion>,
    ) -> Result<(), StorageError>;
    async fn upload_delete(&self, id: &str) -> Result<(), StorageError>;
    /// Every session with its last write time (a [`Storage::upload_keep_alive`] mark included).
    async fn upload_list(&self) -> Result<Vec<(String, ObjectInfo)>, StorageError>;

    // --- small metadata documents ---
    /// Atomically replaces the document at `key`.
    async fn meta_put(&self, key: &str, data: Bytes) -> Result<(), StorageError>;
    async fn meta_get(&self, key: &str) -> Result<Option<Bytes>, StorageError>;
    async fn meta_info(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError>;
    async fn meta_delete(&self, key: &str) -> Result<bool, StorageError>;
    /// Names directly below `prefix` (documents and "folders"), sorted; empty if none.
    async fn meta_list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;

    /// A small document every server on this storage must agree on (the token signing key),
    /// created from `initial` by whichever server asks first; the stored one is returned.
    /// `None` when the storage is not shared between servers (keep such things locally).
    async fn shared_document(
        &self,
        _name: &str,
        _initial: Bytes,
    ) -> Result<Option<Bytes>, StorageError> {
        Ok(None)
    }

    // --- housekeeping ---
    /// Removes leftovers of interrupted writes older than `older_than`; returns how many.
    async fn clean_temporary(&self, older_than: SystemTime) -> Result<usize, StorageError>;
}

/// Where gc's own metadata documents live (its deletion flags), beside `repositories/`.
pub(crate) const GC_META_ROOT: &str = "_gc";

/// Chunks queued between a stream and its hashing thread.
const HASH_QUEUE_DEPTH: usize = 16;

/// Passes every chunk of `stream` on unchanged and feeds it, in order, to `hasher` on a
/// blocking thread; the task returns the hasher once the stream is dropped. sha256 was half the
/// server's CPU on a large upload: done inline it ran in turn with reading the socket on one
/// task, on its own thread it overlaps with it. With no hasher the stream is returned as is.
pub(crate) fn hash_in_background(
    stream: ByteStream,
    hasher: Option<Sha256>,
) -> (ByteStream, tokio::task::JoinHandle<Option<Sha256>>) {
    let Some(mut hasher) = hasher else {
        return (stream, tokio::task::spawn(async { None }));
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(HASH_QUEUE_DEPTH);
    let task = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
        }
        Some(hasher)
    });
    let stream = stream.then(move |item| {
        let tx = tx.clone();
        async move {
            if let Ok(chunk) = &item {
                // Fails only if the hashing thread died; its join error then drops the hash.
                let _ = tx.send(chunk.clone()).await;
            }
            item
        }
    });
    (Box::pin(stream), task)
}

/// Defense in depth for metadata keys: they come from validated names, but never let one leave
/// the `repositories/` tree (or gc's [`GC_META_ROOT`]) or carry an empty, `.` or `..` component.
pub(crate) fn valid_meta_key(key: &str) -> Result<(), StorageError> {
    let ok = key
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains(['\\', '\0']))
        && ["repositories", GC_META_ROOT]
            .iter()
            .any(|root| key == *root || key.strip_prefix(root).is_some_and(|r| r.starts_with('/')));
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(key.to_string()))
    }
}
