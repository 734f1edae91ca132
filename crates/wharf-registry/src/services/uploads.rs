//! Upload sessions: monolithic, POST+PUT and chunked (PATCH with `Content-Range`) uploads.
//!
//! Bytes are hashed as they stream into storage, so finishing an upload needs no second read;
//! after a restart the hash state is gone and the upload is re-read once at commit instead.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::RegistryError;
use crate::names::{Digest, RepoName};
use crate::services::{Limits, Registry, keys};
use crate::storage::{ByteStream, StorageError};

/// The in-memory state of one upload session.
#[derive(Debug)]
pub struct UploadSession {
    pub id: String,
    pub repo: RepoName,
    pub size: u64,
    /// Hash of the first `size` bytes; `None` when unknown (after a restart or a failed chunk).
    hasher: Option<Sha256>,
}

#[derive(Serialize, Deserialize)]
struct SessionInfo {
    repo: String,
    started_unix: u64,
    /// Who opened it (user, or client address when anonymous); absent in older sessions.
    #[serde(default)]
    subject: String,
}

/// Open upload sessions, and how many each repository and subject holds (a client must not
/// fill the disk with sessions: see [`crate::limits`]).
#[derive(Default)]
pub(crate) struct Sessions {
    open: HashMap<String, OpenSession>,
    per_repository: HashMap<String, usize>,
    per_subject: HashMap<String, usize>,
}

struct OpenSession {
    session: Arc<tokio::sync::Mutex<UploadSession>>,
    repo: String,
    subject: String,
    opened: std::time::Instant,
}

/// A session in memory but not on disk is forgotten only once it is older than this (it may be
/// being created right now).
const VANISHED_GRACE: Duration = Duration::from_secs(60);

impl Sessions {
    fn get(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<UploadSession>>> {
        self.open.get(id).map(|o| o.session.clone())
    }

    /// Refuses a new session of `subject` in `repo` when a limit is reached.
    fn check(&self, limits: &Limits, repo: &str, subject: &str) -> Result<(), RegistryError> {
        let full = |what: String, limit: usize, key: &str| {
            Err(RegistryError::TooManyRequests {
                message: format!(
                    "{what} has {limit} open upload sessions, the limit ([limits] {key}): finish or cancel one (DELETE its location), or wait for idle ones to expire"
                ),
                retry_after: Some(60),
            })
        };
        let count = |map: &HashMap<String, usize>, k: &str| map.get(k).copied().unwrap_or(0);
        if count(&self.per_subject, subject) >= limits.upload_sessions_per_subject {
            return full(
                format!("{subject:?}"),
                limits.upload_sessions_per_subject,
                "upload_sessions_per_subject",
            );
        }
        if count(&self.per_repository, repo) >= limits.upload_sessions_per_repository {
            return full(
                format!("repository {repo}"),
                limits.upload_sessions_per_repository,
                "upload_sessions_per_repository",
            );
        }
        if self.open.len() >= limits.upload_sessions_total {
            return full(
                "the registry".to_string(),
                limits.upload_sessions_total,
                "upload_sessions_total",
            );
        }
        Ok(())
    }

    /// Adds a session unless one with this id is already open; returns the open one.
    fn insert(
        &mut self,
        id: &str,
        session: UploadSession,
        subject: &str,
    ) -> Arc<tokio::sync::Mutex<UploadSession>> {
        if let Some(open) = self.open.get(id) {
            return open.session.clone();
        }
        let repo = session.repo.to_string();
        *self.per_repository.entry(repo.clone()).or_default() += 1;
        *self.per_subject.entry(subject.to_string()).or_default() += 1;
        let session = Arc::new(tokio::sync::Mutex::new(session));
        self.open.insert(
            id.to_string(),
            OpenSession {
                session: session.clone(),
                repo,
                subject: subject.to_string(),
                opened: std::time::Instant::now(),
            },
        );
        session
    }

    /// Forgets sessions opened more than `grace` ago that are neither in `on_disk` nor in use.
    fn forget_vanished(
        &mut self,
        on_disk: &std::collections::HashSet<&str>,
        now: std::time::Instant,
        grace: Duration,
    ) {
        let vanished: Vec<String> = self
            .open
            .iter()
            .filter(|(id, o)| {
                !on_disk.contains(id.as_str())
                    && now.duration_since(o.opened) > grace
                    && o.session.try_lock().is_ok()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in vanished {
            self.remove(&id);
        }
    }

    fn remove(&mut self, id: &str) {
        let Some(gone) = self.open.remove(id) else {
            return;
        };
        for (map, key) in [
            (&mut self.per_repository, gone.repo),
            (&mut self.per_subject, gone.subject),
        ] {
            if let Some(n) = map.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&key);
                }
            }
        }
    }
}

/// Chunks queued between the request body and the hashing thread.
const HASH_QUEUE_DEPTH: usize = 16;

/// Passes every chunk of `stream` on unchanged and feeds it, in order, to `hasher` on a
/// blocking thread; the task returns the hasher once the stream is dropped. sha256 was half the
/// server's CPU on a large upload: done inline it ran in turn with reading the socket on one
/// task, on its own thread it overlaps with it. With no hasher the stream is returned as is.
fn hash_in_background(
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
            Some(s) => s,
            None => {
                let (info, object) = self.storage.upload_info(id).await?.ok_or_else(unknown)?;
                let info: SessionInfo = serde_json::from_slice(&info).map_err(|_| unknown())?;
                let repo = RepoName::parse(&info.repo).map_err(|_| unknown())?;
                let session = UploadSession {
                    id: id.to_string(),
                    repo,
                    size: object.size,
                    hasher: None,
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
        append_locked(self, &mut session, range, body).await
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
        if let Some(body) = last_chunk {
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
                    h.update(&chunk);
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
        self.storage.upload_commit(id, digest).await?;
        self.sessions_map().remove(id);
        self.link_blob(repo, digest).await
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
    let (body, hashed) = hash_in_background(body, session.hasher.take());
    let result = registry
        .storage
        .upload_append(&session.id, session.size, body)
        .await;
    // The body stream is dropped by now, so the hashing thread has seen every chunk and ends.
    let hasher = hashed.await.ok().flatten();
    match result {
        Ok(size) => {
            session.size = size;
            session.hasher = hasher;
            Ok(size)
        }
        Err(StorageError::UploadUnknown(_)) => Err(RegistryError::BlobUploadUnknown {
            id: session.id.clone(),
        }),
        Err(e) => {
            // Part of the chunk may be on disk: learn the real size, re-hash at commit.
            if let Ok(Some((_, info))) = registry.storage.upload_info(&session.id).await {
                session.size = info.size;
            }
            session.hasher = None;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, repo: &str) -> UploadSession {
        UploadSession {
            id: id.to_string(),
            repo: RepoName::parse(repo).expect("valid name"),
            size: 0,
            hasher: None,
        }
    }

    #[test]
    fn sessions_gone_from_disk_stop_counting_unless_in_use() {
        let limits = Limits {
            upload_sessions_per_subject: 2,
            ..Limits::default()
        };
        let mut sessions = Sessions::default();
        sessions.insert("a", session("a", "team/app"), "user alice");
        let busy = sessions.insert("b", session("b", "team/app"), "user alice");
        assert!(sessions.check(&limits, "team/app", "user alice").is_err());
        let _in_use = busy.try_lock().expect("unlocked");
        let later = std::time::Instant::now() + Duration::from_secs(120);
        sessions.forget_vanished(&std::collections::HashSet::new(), later, VANISHED_GRACE);
        assert!(
            sessions.get("a").is_none(),
            "removed behind our back: forgotten"
        );
        assert!(sessions.get("b").is_some(), "in use: kept");
        assert!(sessions.check(&limits, "team/app", "user alice").is_ok());
        // Young sessions may still be being created: kept.
        sessions.insert("c", session("c", "team/app"), "user alice");
        sessions.forget_vanished(
            &std::collections::HashSet::new(),
            std::time::Instant::now(),
            VANISHED_GRACE,
        );
        assert!(sessions.get("c").is_some());
    }
}
