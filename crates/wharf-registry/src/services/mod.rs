//! The registry's operations, independent of HTTP: manifests, blobs, uploads, tags, catalog,
//! referrers and garbage collection, all over the [`Storage`] trait.
//!
//! Repository links (as in Docker's registry): a blob is served from a repository only if it was
//! pushed to it, mounted into it, or is a manifest of it. Blobs themselves are stored once,
//! content-addressed, and shared.

pub mod blobs;
pub mod gc;
pub mod manifests;
mod sessions;
pub mod tags;
mod upload_hasher;
pub mod uploads;

pub use crate::limits::Limits;
use crate::names::Digest;
use crate::storage::Storage;
use std::sync::{Arc, Mutex};

pub use sessions::UploadSession;

/// The registry: storage plus the in-memory state of open upload sessions.
pub struct Registry {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) limits: Limits,
    /// Open upload sessions, each behind its own lock so chunks of one upload are serialized
    /// while different uploads run in parallel. Sessions not in memory (after a restart) are
    /// reloaded from storage on first use.
    pub(crate) sessions: Mutex<sessions::Sessions>,
}

impl Registry {
    pub fn new(storage: Arc<dyn Storage>, limits: Limits) -> Registry {
        Registry {
            storage,
            limits,
            sessions: Mutex::new(sessions::Sessions::default()),
        }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// Storage keys. Built only from validated names, tags and digests.
pub(crate) mod keys {
    use crate::names::{Digest, RepoName};

    pub fn repo(repo: &RepoName) -> String {
        format!("repositories/{repo}")
    }
    pub fn layer_link(repo: &RepoName, digest: &Digest) -> String {
        format!("repositories/{repo}/_layers/sha256/{}", digest.hex())
    }
    pub fn revision(repo: &RepoName, digest: &Digest) -> String {
        format!(
            "repositories/{repo}/_manifests/revisions/sha256/{}",
            digest.hex()
        )
    }
    pub fn revisions(repo: &RepoName) -> String {
        format!("repositories/{repo}/_manifests/revisions/sha256")
    }
    pub fn tag(repo: &RepoName, tag: &str) -> String {
        format!("repositories/{repo}/_manifests/tags/{tag}")
    }
    pub fn tags(repo: &RepoName) -> String {
        format!("repositories/{repo}/_manifests/tags")
    }
    /// A cached manifest's last pull (its modification time), for a pull-through cache's
    /// `expire_unpulled`.
    pub fn pulled(repo: &RepoName, digest: &Digest) -> String {
        format!("{}/{}", pulled_all(repo), digest.hex())
    }
    pub fn pulled_all(repo: &RepoName) -> String {
        format!("repositories/{repo}/_proxy/pulled/sha256")
    }
    /// A gc run's flag "deciding whether to delete this blob" (see `services::gc`).
    pub fn gc_deleting(digest: &Digest, run: &str) -> String {
        format!("{}/{run}", gc_deleting_all(digest))
    }
    pub fn gc_deleting_all(digest: &Digest) -> String {
        format!("{}/{}", gc_deleting_root(), digest.hex())
    }
    pub fn gc_deleting_root() -> String {
        format!("{}/deleting/sha256", crate::storage::GC_META_ROOT)
    }
    pub fn referrers(repo: &RepoName, subject: &Digest) -> String {
        format!(
            "repositories/{repo}/_referrers/sha256/{}/sha256",
            subject.hex()
        )
    }
    pub fn referrer(repo: &RepoName, subject: &Digest, referrer: &Digest) -> String {
        format!(
            "repositories/{repo}/_referrers/sha256/{}/sha256/{}",
            subject.hex(),
            referrer.hex()
        )
    }
}

/// Parses the hex file names of a `sha256` link folder into digests, skipping anything else.
pub(crate) fn digests_of(names: Vec<String>) -> Vec<Digest> {
    names
        .into_iter()
        .filter_map(|n| Digest::parse(&format!("sha256:{n}")).ok())
        .collect()
}
