//! The image store at `$WHARF_HOME`:
//!
//! ```text
//! lock                       flock: shared while pulling, exclusive for rm and prune
//! locks/<manifest hex>       flock: one pull of an image at a time (others wait, then find it);
//!                            taken only under the shared `lock`, so removed whenever the
//!                            exclusive one is held (else one empty file per image ever pulled
//!                            would stay forever)
//! blobs/sha256/<hex>         manifests, configs, compressed layers (renamed in once verified)
//! layers/<chain id hex>/     one unpacked layer (renamed in once complete)
//! layers/<chain id hex>.json what it held (LayerMeta), written before the folder is renamed in
//! images/<sha256 of ref>.json  ImageRecord
//! tmp/                       work in progress (emptied by prune, and by a pull when no other
//!                            pull runs)
//! ```
//!
//! Every publish is a rename of a finished file or folder, so a crash leaves only `tmp/` debris,
//! and two processes doing the same work end with the same result. A `Range` resume happens
//! within one download, so a killed pull's partial files are never picked up again: the next
//! pull that finds no other pull running ([`Store::reap_tmp`]) removes them.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::error::{ImageError, store_err};
use crate::manifest::{sha256_digest, sha256_hex};
use crate::unpack::LayerReport;

/// One layer of an image record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The compressed blob's digest (as in the manifest).
    pub digest: String,
    pub diff_id: String,
    pub chain_id: String,
    /// Compressed size.
    pub size: u64,
}

/// An image known by reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `registry/repository:tag` or `registry/repository@digest`.
    pub reference: String,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layers: Vec<LayerRecord>,
    /// RFC 3339.
    pub pulled_at: String,
    /// The base URL that answered (`http://127.0.0.1:5000`), tried first next time.
    #[serde(default)]
    pub endpoint: Option<String>,
}

impl ImageRecord {
    /// Compressed size of all layers.
    pub fn compressed_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// What an unpacked layer held (`layers/<hex>.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub diff_id: String,
    pub report: LayerReport,
}

/// What prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs: u64,
    pub layers: u64,
    pub bytes: u64,
}

/// The store (see the module docs).
#[derive(Debug, Clone)]
pub struct Store {
    home: PathBuf,
}

/// A held flock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// `$WHARF_HOME`, else `$XDG_DATA_HOME/wharf`, else `~/.local/share/wharf`.
    pub fn default_home() -> Option<PathBuf> {
        let env = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("WHARF_HOME")
            .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("wharf")))
            .or_else(|| env("HOME").map(|h| h.join(".local/share/wharf")))
    }

    /// Open (creating its folders) the store at `home`.
    pub fn open(home: impl Into<PathBuf>) -> Result<Store, ImageError> {
        let home = home.into();
        for sub in ["blobs/sha256", "layers", "images", "tmp", "locks"] {
            let dir = home.join(sub);
            fs::create_dir_all(&dir).map_err(store_err(&dir, "creating the folder"))?;
        }
        Ok(Store { home })
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    fn lock(&self, path: PathBuf, op: FlockOperation) -> Result<StoreLock, ImageError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(store_err(&path, "opening the lock file"))?;
        rustix::fs::flock(&file, op).map_err(|e| ImageError::Store {
            path,
            action: "locking",
            source: e.into(),
        })?;
        Ok(StoreLock { _file: file })
    }

    /// Held while pulling: prune and rm wait for it.
    pub fn lock_shared(&self) -> Result<StoreLock, ImageError> {
        self.lock(self.home.join("lock"), FlockOperation::LockShared)
    }

    /// Remove everything in `tmp/` when no pull runs (none holds the shared lock): what is
    /// there was left by a killed pull. `None` when a pull runs (its work is there); else how
    /// many entries were removed.
    pub fn reap_tmp(&self) -> Result<Option<u64>, ImageError> {
        let _lock = match self.lock(
            self.home.join("lock"),
            FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(lock) => lock,
            Err(ImageError::Store { source, .. })
                if source.kind() == std::io::ErrorKind::WouldBlock =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let removed = self.clear_tmp()?;
        self.clear_image_locks()?;
        Ok(Some(removed))
    }

    /// Remove every `locks/` file (the caller holds the exclusive lock, so no pull holds one:
    /// image locks are taken only under the shared lock).
    fn clear_image_locks(&self) -> Result<(), ImageError> {
        let locks = self.home.join("locks");
        for entry in fs::read_dir(&locks).map_err(store_err(&locks, "listing"))? {
            let entry = entry.map_err(store_err(&locks, "listing"))?;
            match fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(store_err(entry.path(), "removing")(e)),
            }
        }
        Ok(())
    }

    /// Remove everything in `tmp/` (the caller holds the exclusive lock); how many entries.
    fn clear_tmp(&self) -> Result<u64, ImageError> {
        let tmp = self.home.join("tmp");
        let mut removed = 0;
        for entry in fs::read_dir(&tmp).map_err(store_err(&tmp, "listing"))? {
            let entry = entry.map_err(store_err(&tmp, "listing"))?;
            if entry.path().is_dir() {
                remove_tree(&entry.path())?;
            } else {
                fs::remove_file(entry.path()).map_err(store_err(entry.path(), "removing"))?;
            }
            removed += 1;
        }
        Ok(removed)
    }

    /// Held by rm and prune.
    pub fn lock_exclusive(&self) -> Result<StoreLock, ImageError> {
        self.lock(self.home.join("lock"), FlockOperation::LockExclusive)
    }

    /// One pull of the image with this manifest at a time.
    pub fn lock_image(&self, manifest_digest: &str) -> Result<StoreLock, ImageError> {
        let hex = self.hex(manifest_digest)?;
        self.lock(
            self.home.join("locks").join(hex),
            FlockOperation::LockExclusive,
        )
    }

    fn hex<'a>(&self, digest: &'a str) -> Result<&'a str, ImageError> {
        sha256_hex(digest).ok_or_else(|| ImageError::Store {
            path: self.home.clone(),
            action: "naming a blob",
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("unsupported digest `{digest}` (only sha256 is stored)"),
            ),
        })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.home.join("blobs/sha256").join(self.hex(digest)?))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest)?;
        fs::read(&path).map_err(store_err(path, "reading the blob"))
    }

    /// Store `data` as the blob `digest` (checked first).
    pub fn write_blob(&self, digest: &str, data: &[u8]) -> Result<(), ImageError> {
        let actual = sha256_digest(data);
        if actual != digest {
            return Err(ImageError::Store {
                path: self.home.clone(),
                action: "storing a blob",
                source: std::io::Error::other(format!("content is {actual}, not {digest}")),
            });
        }
        let (temp, mut file) = self.temp_file()?;
        file.write_all(data)
            .map_err(store_err(&temp, "writing the blob"))?;
        self.publish_blob(&temp, digest)
    }

    /// A new file under `tmp/`.
    pub fn temp_file(&self) -> Result<(PathBuf, File), ImageError> {
        let path = self.temp_path("blob");
        let file =
            File::create_new(&path).map_err(store_err(&path, "creating a temporary file"))?;
        Ok((path, file))
    }

    /// A fresh path under `tmp/` (nothing created).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.home
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Rename the verified temporary file `temp` in as the blob `digest`.
    pub fn publish_blob(&self, temp: &Path, digest: &str) -> Result<(), ImageError> {
        let dest = self.blob_path(digest)?;
        fs::rename(temp, &dest).map_err(store_err(&dest, "storing the blob"))
    }

    pub fn layer_dir(&self, chain_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.home.join("layers").join(self.hex(chain_id)?))
    }

    pub fn has_layer(&self, chain_id: &str) -> bool {
        self.layer_dir(chain_id).is_ok_and(|p| p.is_dir())
    }

    pub fn layer_meta(&self, chain_id: &str) -> Option<LayerMeta> {
        let path = self.layer_dir(chain_id).ok()?.with_extension("json");
        serde_json::from_slice(&fs::read(path).ok()?).ok()
    }

    /// Publish the finished layer folder `temp` as `chain_id`. Another process may have
    /// published the same layer first: then `temp` is removed and theirs kept (same content).
    pub fn publish_layer(
        &self,
        temp: &Path,
        chain_id: &str,
        meta: &LayerMeta,
    ) -> Result<(), ImageError> {
        let dest = self.layer_dir(chain_id)?;
        let meta_path = dest.with_extension("json");
        let json = serde_json::to_vec_pretty(meta).unwrap_or_default();
        self.write_atomic(&meta_path, &json)?;
        match fs::rename(temp, &dest) {
            Ok(()) => Ok(()),
            Err(e) if dest.is_dir() => {
                let _ = e;
                remove_tree(temp)
            }
            Err(e) => Err(store_err(&dest, "storing the unpacked layer")(e)),
        }
    }

    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), ImageError> {
        let (temp, mut file) = self.temp_file()?;
        file.write_all(data).map_err(store_err(&temp, "writing"))?;
        fs::rename(&temp, path).map_err(store_err(path, "writing"))
    }

    fn record_path(&self, reference: &str) -> PathBuf {
        let key = sha256_digest(reference.as_bytes());
        self.home
            .join("images")
            .join(format!("{}.json", &key["sha256:".len()..]))
    }

    /// The record for `reference` (`registry/repository:tag`), if pulled.
    pub fn image(&self, reference: &str) -> Option<ImageRecord> {
        let data = fs::read(self.record_path(reference)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// Whether every layer of `record` is unpacked.
    pub fn is_complete(&self, record: &ImageRecord) -> bool {
        record.layers.iter().all(|l| self.has_layer(&l.chain_id))
    }

    pub fn save_image(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let json = serde_json::to_vec_pretty(record).unwrap_or_default();
        self.write_atomic(&self.record_path(&record.reference), &json)
    }

    /// Every image record, sorted by reference.
    pub fn images(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let dir = self.home.join("images");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(store_err(&dir, "listing"))? {
            let entry = entry.map_err(store_err(&dir, "listing"))?;
            if entry.path().extension().is_some_and(|e| e == "json")
                && let Ok(data) = fs::read(entry.path())
                && let Ok(record) = serde_json::from_slice::<ImageRecord>(&data)
            {
                out.push(record);
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Unpacked size of an image (sum of its layers' file bytes), when known.
    pub fn unpacked_size(&self, record: &ImageRecord) -> u64 {
        record
            .layers
            .iter()
            .filter_map(|l| self.layer_meta(&l.chain_id))
            .map(|m| m.report.bytes)
            .sum()
    }

    /// Forget the image `reference` (its blobs and layers stay until [`Store::prune`]).
    pub fn remove_image(&self, reference: &str) -> Result<(), ImageError> {
        let _lock = self.lock_exclusive()?;
        let path = self.record_path(reference);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ImageError::UnknownImage {
                reference: reference.to_owned(),
                home: self.home.clone(),
            }),
            Err(e) => Err(store_err(path, "removing the image record")(e)),
        }
    }

    /// Remove every blob and layer no image references, and all of `tmp/` (no pull runs while
    /// the exclusive lock is held).
    pub fn prune(&self) -> Result<PruneReport, ImageError> {
        let _lock = self.lock_exclusive()?;
        let images = self.images()?;
        let mut keep_blobs = std::collections::HashSet::new();
        let mut keep_layers = std::collections::HashSet::new();
        for image in &images {
            for digest in [&image.manifest_digest, &image.config_digest] {
                keep_blobs.insert(self.hex(digest)?.to_owned());
            }
            for layer in &image.layers {
                keep_blobs.insert(self.hex(&layer.digest)?.to_owned());
                keep_layers.insert(self.hex(&layer.chain_id)?.to_owned());
            }
        }
        // (An index is never stored: only the manifest chosen from it.)
        let mut report = PruneReport::default();
        let blobs = self.home.join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(store_err(&blobs, "listing"))? {
            let entry = entry.map_err(store_err(&blobs, "listing"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&name) {
                report.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).map_err(store_err(entry.path(), "removing"))?;
                report.blobs += 1;
            }
        }
        let layers = self.home.join("layers");
        for entry in fs::read_dir(&layers).map_err(store_err(&layers, "listing"))? {
            let entry = entry.map_err(store_err(&layers, "listing"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.trim_end_matches(".json");
            if keep_layers.contains(id) {
                continue;
            }
            if entry.path().is_dir() {
                remove_tree(&entry.path())?;
                report.layers += 1;
            } else {
                fs::remove_file(entry.path()).map_err(store_err(entry.path(), "removing"))?;
            }
        }
        self.clear_tmp()?;
        self.clear_image_locks()?;
        Ok(report)
    }

    /// Materialise the merged tree of `record` into `dest` (created; must not exist).
    pub fn flatten(&self, record: &ImageRecord, dest: &Path) -> Result<(), ImageError> {
        fs::create_dir(dest).map_err(store_err(dest, "creating the folder"))?;
        let mut layers = Vec::new();
        for layer in &record.layers {
            layers.push(wharf_fs::Root::open(
                self.layer_dir(&layer.chain_id)?,
                wharf_fs::Resolve::NoSymlinks,
            )?);
        }
        let dest_root = wharf_fs::Root::open(dest, wharf_fs::Resolve::NoSymlinks)?;
        crate::flatten::flatten_layers(&layers, &dest_root, crate::is_root()).map_err(|e| {
            ImageError::Layer {
                image: record.reference.clone(),
                digest: String::new(),
                detail: format!("flattening into {}: {e}", dest.display()),
            }
        })
    }
}

/// Remove a folder of the store (layer trees may hold 0000 folders: made writable first).
pub(crate) fn remove_tree(path: &Path) -> Result<(), ImageError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or_default();
    let root = wharf_fs::Root::open(parent, wharf_fs::Resolve::NoSymlinks)?;
    make_writable(&root, Path::new(name))?;
    root.remove_all(name)?;
    Ok(())
}

fn make_writable(root: &wharf_fs::Root, dir: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = root.metadata(dir)?;
    if meta.permissions().mode() & 0o700 != 0o700 {
        root.set_permissions(dir, meta.permissions().mode() | 0o700)?;
    }
    for entry in root.read_dir(dir)? {
        if entry.kind == wharf_fs::FileKind::Dir {
            make_writable(root, &dir.join(entry.name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_is_reaped_only_when_no_pull_holds_the_store() {
        let home = tempfile::tempdir().expect("home");
        let store = Store::open(home.path()).expect("store");
        let (partial, _) = store.temp_file().expect("temp file");
        fs::create_dir_all(store.temp_path("layer").join("usr/bin")).expect("layer dir");
        let pulling = store.lock_shared().expect("shared");
        let image_lock = store
            .lock_image(&format!("sha256:{}", "a".repeat(64)))
            .expect("image lock");
        assert_eq!(store.reap_tmp().expect("reap"), None, "a pull runs");
        assert!(partial.exists(), "a running pull's file was removed");
        assert_eq!(
            count(&home.path().join("locks")),
            1,
            "a held image lock was removed"
        );
        drop((pulling, image_lock));
        assert_eq!(store.reap_tmp().expect("reap"), Some(2));
        assert_eq!(count(&home.path().join("tmp")), 0);
        assert_eq!(
            count(&home.path().join("locks")),
            0,
            "image locks stay forever"
        );
    }

    #[test]
    fn prune_removes_image_locks() {
        let home = tempfile::tempdir().expect("home");
        let store = Store::open(home.path()).expect("store");
        drop(store.lock_image(&format!("sha256:{}", "b".repeat(64))));
        assert_eq!(count(&home.path().join("locks")), 1);
        store.prune().expect("prune");
        assert_eq!(count(&home.path().join("locks")), 0);
    }

    fn count(dir: &Path) -> usize {
        fs::read_dir(dir).expect("list").count()
    }
}
