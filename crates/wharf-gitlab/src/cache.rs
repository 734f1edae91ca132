//! The include cache: file contents by SHA-256 (`blobs/sha256/<hex>`), and one index entry per
//! request (`index/<sha256 of the key>.json`) naming its blob, commit, ETag and whether it can
//! change. Every write goes to a temporary file in the cache that is then renamed into place,
//! so a crash leaves the old entry or the new one, never half a file.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What the cache remembers about one request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The request, e.g. `project https://gitlab.com g/p v1 ci.yml` (kept for people reading the cache).
    pub key: String,
    /// SHA-256 of the text, hex.
    pub digest: String,
    /// [`wharf_ci::Fetched::name`].
    pub name: String,
    /// [`wharf_ci::Fetched::project`].
    pub project: Option<(String, String)>,
    pub etag: Option<String>,
    /// SHAs and tags: served from the cache without asking again.
    pub immutable: bool,
}

pub(crate) struct Cache {
    dir: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cache {
    pub fn new(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, key: &str) -> PathBuf {
        self.dir
            .join("index")
            .join(format!("{}.json", sha256_hex(key.as_bytes())))
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest)
    }

    /// The entry for `key` and its text; `None` when either is missing or unreadable (a
    /// damaged entry is a miss, fetched again).
    pub fn lookup(&self, key: &str) -> Option<(Entry, String)> {
        let entry: Entry =
            serde_json::from_slice(&std::fs::read(self.entry_path(key)).ok()?).ok()?;
        if entry.key != key {
            return None;
        }
        let text = std::fs::read_to_string(self.blob_path(&entry.digest)).ok()?;
        (sha256_hex(text.as_bytes()) == entry.digest).then_some((entry, text))
    }

    /// Store `text` and point `key` at it; returns the entry written.
    pub fn store(
        &self,
        key: &str,
        text: &str,
        name: &str,
        project: Option<(String, String)>,
        etag: Option<String>,
        immutable: bool,
    ) -> Result<Entry, Error> {
        let digest = sha256_hex(text.as_bytes());
        let blob = self.blob_path(&digest);
        if !blob.exists() {
            self.write_atomic(&blob, text.as_bytes())?;
        }
        let entry = Entry {
            key: key.to_string(),
            digest,
            name: name.to_string(),
            project,
            etag,
            immutable,
        };
        let json = serde_json::to_vec_pretty(&entry).map_err(|e| {
            Error::cache(&self.entry_path(key), std::io::Error::other(e.to_string()))
        })?;
        self.write_atomic(&self.entry_path(key), &json)?;
        Ok(entry)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let tmp_dir = self.dir.join("tmp");
        let parent = path.parent().unwrap_or(&self.dir);
        for dir in [&tmp_dir, &parent.to_path_buf()] {
            std::fs::create_dir_all(dir).map_err(|e| Error::cache(dir, e))?;
        }
        let tmp = tmp_dir.join(format!(
            "{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&tmp, bytes).map_err(|e| Error::cache(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::cache(path, e)
        })
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
