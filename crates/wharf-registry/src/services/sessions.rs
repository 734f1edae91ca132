//! The open upload sessions kept in memory, and how many each subject and repository holds:
//! the counting behind the upload-session limits (see [`crate::limits`]). The upload operations
//! themselves are in `uploads.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::RegistryError;
use crate::limits::Limits;
use crate::names::RepoName;
use crate::storage::UploadVersion;
use sha2::Sha256;

/// The in-memory state of one upload session.
#[derive(Debug)]
pub struct UploadSession {
    pub id: String,
    pub repo: RepoName,
    pub size: u64,
    /// Hash of the first `size` bytes; `None` when unknown (after a restart or a failed chunk).
    pub(crate) hasher: Option<Sha256>,
    /// Where storage is shared: the upload's version `hasher` hashed (see `upload_hasher`).
    pub(crate) version: Option<UploadVersion>,
    /// Where storage is shared: the time of the upload's latest stored write as last read, what
    /// other servers judge its idleness by (see `Registry::keeping_alive`).
    pub(crate) last_write: Option<SystemTime>,
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
pub(crate) const VANISHED_GRACE: Duration = Duration::from_secs(60);

impl Sessions {
    pub(crate) fn get(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<UploadSession>>> {
        self.open.get(id).map(|o| o.session.clone())
    }

    /// Refuses a new session of `subject` in `repo` when a limit is reached.
    pub(crate) fn check(
        &self,
        limits: &Limits,
        repo: &str,
        subject: &str,
    ) -> Result<(), RegistryError> {
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
    pub(crate) fn insert(
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
    pub(crate) fn forget_vanished(
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

    pub(crate) fn remove(&mut self, id: &str) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, repo: &str) -> UploadSession {
        UploadSession {
            id: id.to_string(),
            repo: RepoName::parse(repo).expect("valid name"),
            size: 0,
            hasher: None,
            version: None,
            last_write: None,
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
