//! Upload sessions: monolithic, POST+PUT and chunked (PATCH with `Content-Range`) uploads.
//!
//! Bytes are hashed as they stream into storage, so finishing an upload needs no second read.
//! Where replicas share sessions (S3), the hash state is saved with the session after every
//! chunk, and the replica that gets the next request picks it up. Only when no state fits (a
//! restart on the filesystem, a failed chunk, a replica that died before saving) is the upload
//! re-read once at commit instead.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::RegistryError;
use crate::names::{Digest, RepoName};
use crate::services::sessions::{Sessions, UploadSession, VANISHED_GRACE};
use crate::services::upload_hasher;
use crate::services::{Registry, keys};
use crate::storage::{ByteStream, StorageError, UploadVersion};

#[derive(Serialize, Deserialize)]
struct SessionInfo {
    repo: String,
    started_unix: u64,
    /// Who opened it (user, or client address when anonymous); absent in older sessions.
    #[serde(default)]
    subject: String,
}

impl Registry {
    /// Opens a new upload session in `repo` for `subject` (the user, or the client address
    /// when anonymous); returns its id. Refused with `TOOMANYREQUESTS` when the subject, the
    /// repository or the registry has as many open sessions as its limit allows.
    pub async fn start_upload(
        &self,
        repo: &RepoName,
        subject: &str,
    ) -> Result<String, RegistryError> {
        let id = format!("{:032x}", rand::random::<u128>());
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let info = serde_json::to_vec(&SessionInfo {
            repo: repo.to_string(),
            started_unix,
            subject: subject.to_string(),
        })
        .map_err(|e| RegistryError::BlobUploadInvalid(e.to_string()))?;
        let session = UploadSession {
            id: id.clone(),
            repo: repo.clone(),
            size: 0,
            hasher: Some(Sha256::new()),
            version: self
                .storage
                .shared_between_servers()
                .then_some(UploadVersion::EMPTY),
            last_write: self.storage.shared_between_servers().then(SystemTime::now),
        };
        {
            // Counted before it exists on disk, so parallel starts cannot overshoot the limits.
            let mut sessions = self.sessions_map();
            sessions.check(&self.limits, repo.as_str(), subject)?;
            sessions.insert(&id, session, subject);
        }
        if let Err(e) = self.storage.upload_create(&id, Bytes::from(info)).await {
            self.sessions_map().remove(&id);
            return Err(e.into());
        }
        Ok(id)
    }

    fn sessions_map(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session `id` of `repo`, from memory or (after a restart) from storage.
    async fn session(
        &self,
        repo: &RepoName,
        id: &str,
    ) -> Result<Arc<tokio::sync::Mutex<UploadSession>>, RegistryError> {
        let unknown = || RegistryError::BlobUploadUnknown { id: id.to_string() };
        let cached = self.sessions_map().get(id);
        let session = match cached {
            Some(s) if self.storage.shared_between_servers() => {
                // Another replica may have appended since this one last saw the session (or
                // replaced the chunk this one appended): the stored size and version are the
                // truth, and a hash of other bytes is useless.
                let Some(status) = self.storage.upload_info(id).await? else {
                    self.sessions_map().remove(id);
                    return Err(unknown());
                };
                {
                    let mut session = s.lock().await;
                    if session.size != status.object.size
                        || session.hasher.is_none()
                        || session.version.is_none()
                        || session.version != status.version
                    {
                        session.size = status.object.size;
                        session.hasher = self
                            .saved_hasher(id, status.object.size, status.version)
                            .await?;
                        session.version = status.version;
                    }
                    session.last_write = Some(status.object.modified);
                }
                s
            }
            Some(s) => s,
            None => {
                let status = self.storage.upload_info(id).await?.ok_or_else(unknown)?;
                let info: SessionInfo =
                    serde_json::from_slice(&status.info).map_err(|_| unknown())?;
                let repo = RepoName::parse(&info.repo).map_err(|_| unknown())?;
                let session = UploadSession {
                    id: id.to_string(),
                    repo,
                    size: status.object.size,
                    hasher: self
                        .saved_hasher(id, status.object.size, status.version)
                        .await?,
                    version: status.version,
                    last_write: Some(status.object.modified),
                };
                self.sessions_map().insert(id, session, &info.subject)
            }
        };
        // A session belongs to one repository: its id is no key to another.
        if session.lock().await.repo != *repo {
            return Err(unknown());
        }
        Ok(session)
    }

    /// A hasher that continues session `id` after its first `size` bytes: a fresh one when
    /// nothing was received yet (a POST served by another replica, or before a restart), the
    /// state another replica saved for the upload at `version`, else none (the commit re-reads
    /// the upload).
    async fn saved_hasher(
        &self,
        id: &str,
        size: u64,
        version: Option<UploadVersion>,
    ) -> Result<Option<Sha256>, RegistryError> {
        if size == 0 {
            return Ok(Some(Sha256::new()));
        }
        let Some(version) = version else {
            return Ok(None);
        };
        let saved = self.storage.upload_saved_hash(id, size).await?;
        Ok(saved.and_then(|state| upload_hasher::resumed(&state, &version)))
    }

    /// Bytes received so far.
    pub async fn upload_size(&self, repo: &RepoName, id: &str) -> Result<u64, RegistryError> {
        let session = self.session(repo, id).await?;
        let size = session.lock().await.size;
        // A session removed by expiry or cancel while we waited is gone.
        if self.storage.upload_info(id).await?.is_none() {
            return Err(RegistryError::BlobUploadUnknown { id: id.to_string() });
        }
        Ok(size)
    }

    /// Appends a chunk. `range` is the client's `Content-Range` (first and last byte offsets);
    /// it must start where the upload ends.
    pub async fn append_upload(
        &self,
        repo: &RepoName,
        id: &str,
        range: Option<(u64, u64)>,
        body: ByteStream,
    ) -> Result<u64, RegistryError> {
        let session = self.session(repo, id).await?;
        let mut session = session.lock().await;
        let size = append_locked(self, &mut session, range, body).await?;
        // Only where replicas share sessions: elsewhere no other process continues it.
        let saved = (session.hasher.as_ref())
            .zip(session.version.as_ref())
            .filter(|_| self.storage.shared_between_servers())
            .map(|(hasher, version)| upload_hasher::saved_state(hasher, version));
        if let Some(state) = saved {
            // Best effort: without it, the commit reads the upload back once.
            if let Err(e) = self
                .storage
                .upload_save_hash(id, size, Bytes::from(state))
                .await
            {
                tracing::warn!(upload = %id, error = %e, "saving an upload's hash state");
            }
        }
        Ok(size)
    }

    /// Finishes an upload with an optional last chunk: verifies the digest and makes the blob
    /// visible in `repo`. A digest mismatch cancels the upload.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        range: Option<(u64, u64)>,
        last_chunk: Option<ByteStream>,
    ) -> Result<(), RegistryError> {
        let session = self.session(repo, id).await?;
        let mut session = session.lock().await;
        let whole_in_this_request = session.size == 0 && range.is_none_or(|(start, _)| start == 0);
        if let Some(body) = last_chunk {
            if whole_in_this_request && self.storage.puts_verified_blobs() {
                return self.put_whole_upload(repo, id, digest, body).await;
            }
            append_locked(self, &mut session, range, body).await?;
        }
        let actual = match session.hasher.take() {
            Some(h) => Digest::from_hasher(h),
            None => {
                let mut h = Sha256::new();
                let mut stream = self.storage.upload_read(id).await?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| StorageError::Io {
                        op: "read upload",
                        path: id.to_string(),
                        source: e,
                    })?;
                    sha2::Digest::update(&mut h, &chunk);
                }
                Digest::from_hasher(h)
            }
        };
        if actual != *digest {
            self.storage.upload_delete(id).await?;
            self.sessions_map().remove(id);
            return Err(RegistryError::DigestInvalid(format!(
                "upload has digest {actual}, not {digest}"
            )));
        }
        if self.storage.shared_between_servers() {
            let settled = self.use_blob_if_stored(digest);
            self.keeping_alive(id, session.last_write, settled).await?;
        }
        // Reading many chunks back into the blob takes a while: meanwhile they must stay.
        let commit = self.storage.upload_commit(id, digest, session.version);
        match self.keeping_alive(id, session.last_write, commit).await {
            Ok(()) => {}
            // The session stays: the client's next attempt verifies what it holds now.
            Err(e @ StorageError::UploadChanged { .. }) => {
                session.version = None;
                return Err(RegistryError::BlobUploadInvalid(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        self.sessions_map().remove(id);
        self.use_committed_blob(repo, digest).await
    }

    /// Where servers share the storage, a commit of content already stored there only touches
    /// the blob and removes the session, and a gc on another replica that read the blob's last
    /// use just before that touch landed still drops it (`services::gc`: a touch is "check it
    /// exists, then write its time"); the upload's own bytes are gone by then, and the client
    /// had to upload them again. Depending on the blob first, as a manifest push does, settles
    /// it while those bytes are still here: the blob is kept, or it is gone and the commit
    /// stores it anew.
    async fn use_blob_if_stored(&self, digest: &Digest) -> Result<(), RegistryError> {
        if self.storage.blob_info(digest).await?.is_some() {
            self.use_blob(digest).await?;
        }
        Ok(())
    }

    /// Links a blob an upload just stored into `repo`, once it is safe from a concurrent gc
    /// (`services::gc`): on S3, a commit of content that was already there only touches it.
    async fn use_committed_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        if self.use_written_blob(digest).await?.is_none() {
            return Err(RegistryError::BlobUploadInvalid(format!(
                "blob {digest} was garbage-collected on another server as this upload finished \
                 (it had been stored before and was unused): upload it again"
            )));
        }
        self.link_blob(repo, digest).await
    }

    /// The whole upload arrived in its closing request: straight to the blob, verified before it
    /// becomes visible (see [`crate::storage::Storage::blob_put_verified`]). A digest mismatch
    /// cancels the upload as below.
    async fn put_whole_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<(), RegistryError> {
        let result = self.storage.blob_put_verified(digest, body).await;
        // Done with the session on success and on a wrong digest (as below); after a cut-off
        // body or a storage failure it stays, empty, for the client to try again.
        if matches!(result, Ok(_) | Err(StorageError::DigestMismatch { .. })) {
            self.storage.upload_delete(id).await?;
            self.sessions_map().remove(id);
        }
        match result {
            Ok(_) => self.use_committed_blob(repo, digest).await,
            Err(StorageError::DigestMismatch { actual, .. }) => Err(RegistryError::DigestInvalid(
                format!("upload has digest {actual}, not {digest}"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Pushes a whole blob in one request (POST with `digest`).
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        subject: &str,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<(), RegistryError> {
        let id = self.start_upload(repo, subject).await?;
        let result = self
            .finish_upload(repo, &id, digest, None, Some(body))
            .await;
        if result.is_err() {
            let _ = self.storage.upload_delete(&id).await;
            self.sessions_map().remove(&id);
        }
        result
    }

    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<(), RegistryError> {
        let session = self.session(repo, id).await?;
        let _guard = session.lock().await;
        self.storage.upload_delete(id).await?;
        self.sessions_map().remove(id);
        Ok(())
    }

    /// Removes sessions idle for longer than the expiry; returns how many. Sessions receiving
    /// data right now are left alone.
    pub async fn expire_uploads(&self, now: SystemTime) -> Result<usize, RegistryError> {
        let mut removed = 0;
        let listed = self.storage.upload_list().await?;
        // Sessions removed behind the server's back (`wharf registry gc`) must not count
        // against their subject's limit forever. Younger ones may still be being created.
        let on_disk: std::collections::HashSet<&str> =
            listed.iter().map(|(id, _)| id.as_str()).collect();
        self.sessions_map()
            .forget_vanished(&on_disk, std::time::Instant::now(), VANISHED_GRACE);
        for (id, info) in listed {
            let idle = now.duration_since(info.modified).unwrap_or(Duration::ZERO);
            if idle < self.limits.upload_expiry {
                continue;
            }
            let cached = self.sessions_map().get(&id);
            let _guard = match &cached {
                Some(s) => match s.try_lock() {
                    Ok(g) => Some(g),
                    Err(_) => continue,
                },
                None => None,
            };
            self.storage.upload_delete(&id).await?;
            self.sessions_map().remove(&id);
            removed += 1;
        }
        Ok(removed)
    }
}

/// The shortest interval between [`Storage::upload_keep_alive`] marks, however short the upload
/// expiry (tests use seconds).
const KEEP_ALIVE_MIN: Duration = Duration::from_millis(250);

impl Registry {
    /// Runs `work`, a request streaming into upload `id` or committing it, and meanwhile keeps
    /// the upload from looking idle where other servers judge that ([`Storage::upload_keep_alive`]
    /// every quarter of the upload expiry, the first time once the upload's latest stored write,
    /// `last_write`, is that old): one PATCH streaming longer than the expiry must not be expired
    /// under its writer by another replica's upkeep, or by `wharf registry gc`. A replica with a
    /// request in progress skips its own sessions ([`Self::expire_uploads`]); others cannot see it.
    async fn keeping_alive<T>(
        &self,
        id: &str,
        last_write: Option<SystemTime>,
        work: impl Future<Output = T>,
    ) -> T {
        let Some(last_write) = last_write.filter(|_| self.storage.shared_between_servers()) else {
            return work.await;
        };
        let every = (self.limits.upload_expiry / 4).max(KEEP_ALIVE_MIN);
        let idle = SystemTime::now()
            .duration_since(last_write)
            .unwrap_or(Duration::ZERO);
        let beat = async {
            tokio::time::sleep(every.saturating_sub(idle)).await;
            loop {
                // Best effort: a missed mark only risks what happened without them.
                if let Err(e) = self.storage.upload_keep_alive(id).await {
                    tracing::warn!(upload = %id, error = %e, "marking an upload in use");
                }
                tokio::time::sleep(every).await;
            }
        };
        tokio::select! {
            done = work => done,
            () = beat => unreachable!("the marks go on until the work ends"),
        }
    }
}

async fn append_locked(
    registry: &Registry,
    session: &mut UploadSession,
    range: Option<(u64, u64)>,
    body: ByteStream,
) -> Result<u64, RegistryError> {
    if let Some((start, end)) = range {
        if start != session.size || end < start {
            return Err(RegistryError::RangeInvalid {
                message: format!(
                    "chunk {start}-{end} does not continue the upload at {}",
                    session.size
                ),
                size: session.size,
                upload: true,
            });
        }
    }
    let append = registry.storage.upload_append_hashed(
        &session.id,
        session.size,
        body,
        session.hasher.take(),
    );
    let result = registry
        .keeping_alive(&session.id, session.last_write, append)
        .await;
    match result {
        Ok((appended, hasher)) => {
            session.last_write = session.last_write.map(|_| SystemTime::now());
            session.size = appended.size;
            // The hash continued is of this chunk's bytes only if it was of the upload this
            // chunk was appended to (another replica may have replaced a chunk meanwhile).
            session.hasher = hasher.filter(|_| appended.before == session.version);
            session.version = appended.after;
            Ok(appended.size)
        }
        Err(StorageError::UploadUnknown(_)) => Err(RegistryError::BlobUploadUnknown {
            id: session.id.clone(),
        }),
        Err(e) => {
            // Part of the chunk may be on disk: learn the real size, re-hash at commit.
            if let Ok(Some(status)) = registry.storage.upload_info(&session.id).await {
                session.size = status.object.size;
            }
            session.hasher = None;
            session.version = None;
            Err(e.into())
        }
    }
}

impl Registry {
    /// Makes `digest` (already stored) part of `repo`.
    pub(crate) async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        self.storage
            .meta_put(
                &keys::layer_link(repo, digest),
                Bytes::from(digest.to_string()),
            )
            .await?;
        Ok(())
    }
}
