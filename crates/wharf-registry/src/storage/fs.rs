//! Filesystem storage.
//!
//! ```text
//! <root>/blobs/sha256/<first two hex>/<hex>     content, written once by rename
//! <root>/uploads/<id>/data, info                upload sessions
//! <root>/repositories/...                       metadata documents (keys map to paths)
//! <root>/tmp/                                   temporary files, renamed into place
//! <root>/aside/<hex>                             a blob gc is deleting (renamed out of sight
//!                                                until it decides; see `services::gc`)
//! <root>/_gc/...                                 gc's deletion flags (metadata documents)
//! ```
//!
//! Every visible file appears by `rename(2)` from `tmp/` (or from an upload's `data`) after an
//! fsync, so a crash (even `kill -9`) leaves either the old state or the new one, never a partial
//! blob or tag. Blocking file IO runs on tokio's blocking pool; an upload's bytes are moved
//! through a bounded channel to a blocking thread that hashes them and hands large blocks to a
//! writer thread (`O_DIRECT`, see `fs_append.rs`), so network, hashing and disk IO overlap.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

use super::fs_append::{self, DIRECT_ALIGN};
use super::{
    Appended, ByteStream, ObjectInfo, Storage, StorageError, UploadStatus, UploadVersion,
    valid_meta_key,
};
use crate::names::Digest;

/// Read size for streaming blobs out: large enough that per-chunk overhead is negligible.
const READ_CHUNK: usize = 512 * 1024;
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

fn info_of(meta: &fs::Metadata) -> ObjectInfo {
    ObjectInfo {
        size: meta.len(),
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) => Err(StorageError::Io {
            op: "run blocking task",
            path: String::new(),
            source: io::Error::other(join.to_string()),
        }),
    }
}

fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Creates `dir` (under `root`) and the folders missing above it, making each new folder
/// durable in its parent: a file renamed into a new folder (a blob's `sha256/ab/`, a new
/// repository's `_manifests/tags/v1/`) is only as durable as the folder's own entry, and
/// fsyncing the file's folder does not write that entry. Returns the parents fsynced, outermost
/// first. The root itself is never made here: a root that is gone (an unmounted volume) is an
/// error naming it, not a fresh empty registry written where the volume was.
fn create_dir_durably(root: &Path, dir: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match fs::metadata(at) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound && at != root => {
                missing.push(at);
                match at.parent() {
                    Some(parent) => at = parent,
                    None => break,
                }
            }
            Err(e) if at == root => return Err(io_err("open the storage root", at)(e)),
            Err(e) => return Err(io_err("stat", at)(e)),
        }
    }
    let mut synced = Vec::with_capacity(missing.len());
    for new in missing.into_iter().rev() {
        match fs::create_dir(new) {
            Ok(()) => {}
            // Another request made it a moment ago and may not have synced its parent yet:
            // syncing it here too keeps this request's answer honest.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create folder", new)(e)),
        }
        let parent = new.parent().unwrap_or(Path::new("/"));
        fsync_dir(parent)?;
        synced.push(parent.to_path_buf());
    }
    Ok(synced)
}

/// Renames `from` to `to` (under `root`), creating `to`'s folder, and makes the rename durable.
fn rename_into_place(root: &Path, from: &Path, to: &Path) -> Result<(), StorageError> {
    let parent = to.parent().unwrap_or(Path::new("/"));
    create_dir_durably(root, parent)?;
    fs::rename(from, to).map_err(io_err("rename into", to))?;
    fsync_dir(parent)
}

/// [`rename_into_place`], or false when `from` does not exist.
fn rename_if_there(root: &Path, from: &Path, to: &Path) -> Result<bool, StorageError> {
    if !from.exists() {
        return Ok(false);
    }
    match rename_into_place(root, from, to) {
        Ok(()) => Ok(true),
        Err(StorageError::Io { source, .. })
            if source.kind() == io::ErrorKind::NotFound && !from.exists() =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn not_found_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Streams `len` bytes of `file` from its current position through a blocking thread.
fn stream_file(mut file: File, mut len: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        while len > 0 {
            let want = len.min(READ_CHUNK as u64) as usize;
            let mut buf = BytesMut::zeroed(want);
            let result = match file.read(&mut buf) {
                Ok(0) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "blob shorter than expected",
                )),
                Ok(n) => {
                    buf.truncate(n);
                    len -= n as u64;
                    Ok(buf.freeze())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = result.is_err();
            // The receiver is gone when the client went away: stop reading.
            if tx.blocking_send(result).is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// `len` bytes of the file at `path` from `offset`; `missing` when there is no such file.
async fn read_range(
    path: PathBuf,
    offset: u64,
    len: u64,
    missing: StorageError,
) -> Result<ByteStream, StorageError> {
    let file = blocking(move || {
        let Some(mut file) = not_found_is_none(File::open(&path)).map_err(io_err("open", &path))?
        else {
            return Err(missing);
        };
        if offset > 0 {
            file.seek(SeekFrom::Start(offset))
                .map_err(io_err("seek", &path))?;
        }
        Ok(file)
    })
    .await?;
    Ok(stream_file(file, len))
}

/// How [`FsStorage::append`] writes.
enum AppendHow {
    /// In large blocks with `O_DIRECT`, hashing on the way (uploads).
    Blocks(Option<Sha256>),
    /// Each chunk as it comes, reporting the readable length (see
    /// [`fs_append::append_each_chunk`]).
    EachChunk(watch::Sender<u64>),
}

impl FsStorage {
    /// Opens (creating if needed) a storage root.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsStorage, StorageError> {
        let root = root.into();
        if !root.is_dir() {
            fs::create_dir_all(&root).map_err(io_err("create folder", &root))?;
            fsync_dir(root.parent().unwrap_or(Path::new("/")))?;
        }
        for sub in ["blobs/sha256", "uploads", "repositories", "tmp", "aside"] {
            create_dir_durably(&root, &root.join(sub))?;
        }
        Ok(FsStorage { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    fn aside_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("aside").join(digest.hex())
    }

    fn upload_dir(&self, id: &str) -> Result<PathBuf, StorageError> {
        // Ids are made by the services from random hex; anything else never names a path.
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
        if !ok {
            return Err(StorageError::UploadUnknown(id.to_string()));
        }
        Ok(self.root.join("uploads").join(id))
    }

    fn meta_path(&self, key: &str) -> Result<PathBuf, StorageError> {
        valid_meta_key(key)?;
        Ok(self.root.join(key))
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{:032x}", rand::random::<u128>()))
    }

    /// Appends `data` to upload `id` (see [`Storage::upload_append_hashed`]).
    async fn append(
        &self,
        id: &str,
        offset: u64,
        mut data: ByteStream,
        how: AppendHow,
    ) -> Result<(u64, Option<Sha256>), StorageError> {
        let blocks = matches!(how, AppendHow::Blocks(_));
        let path = self.upload_dir(id)?.join("data");
        let id_owned = id.to_string();
        let open_path = path.clone();
        let (file, direct) = blocking(move || {
            let Some(file) = not_found_is_none(OpenOptions::new().write(true).open(&open_path))
                .map_err(io_err("open", &open_path))?
            else {
                return Err(StorageError::UploadUnknown(id_owned));
            };
            let actual = file.metadata().map_err(io_err("stat", &open_path))?.len();
            if actual != offset {
                return Err(StorageError::OffsetMismatch {
                    id: id_owned,
                    expected: offset,
                    actual,
                });
            }
            let direct = (blocks && offset % DIRECT_ALIGN == 0)
                .then(|| fs_append::open_direct(&open_path))
                .flatten();
            Ok((file, direct))
        })
        .await?;

        let (tx, rx) = fs_append::chunk_queue();
        let writer = tokio::task::spawn_blocking(move || match how {
            AppendHow::Blocks(hasher) => fs_append::append(file, direct, offset, rx, hasher),
            AppendHow::EachChunk(progress) => (
                fs_append::append_each_chunk(file, offset, rx, progress),
                None,
            ),
        });
        let mut stream_error = None;
        while let Some(item) = data.next().await {
            match item {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => {
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let (written, hasher) = match writer.await {
            Ok(done) => done,
            Err(join) => (Err(io::Error::other(join.to_string())), None),
        };
        let written = match written {
            Ok(written) => written,
            // A pull-through download's file is read by requests behind it: its fetch
            // removes it once they are done.
            Err(e) if !blocks => return Err(io_err("write", &path)(e)),
            Err(e) => {
                // A request whose write failed leaves the upload as the client last saw it: the
                // bytes it got onto disk go. On a full disk that gives the space back now, not
                // when the session expires, so smaller writes (manifests, tags) still succeed.
                let data = path.clone();
                let rolled_back = blocking(move || {
                    OpenOptions::new()
                        .write(true)
                        .open(&data)
                        .and_then(|file| file.set_len(offset))
                        .map_err(io_err("truncate", &data))
                })
                .await;
                if let Err(undo) = rolled_back {
                    tracing::warn!(upload = %id, "rolling back a failed append: {undo}");
                }
                return Err(io_err("write", &path)(e));
            }
        };
        match stream_error {
            Some(e) => Err(StorageError::Stream(e)),
            None => Ok((offset + written, hasher)),
        }
    }

    /// Writes `data` to a temporary file, fsyncs it, and renames it to `to`.
    fn write_atomically(&self, to: &Path, data: &[u8]) -> Result<(), StorageError> {
        let tmp = self.temp_path();
        let result = (|| {
            let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(data).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("fsync", &tmp))?;
            rename_into_place(&self.root, &tmp, to)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

#[async_trait::async_trait]
impl Storage for FsStorage {
    async fn blob_info(&self, digest: &Digest) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.blob_path(digest);
        blocking(move || {
            let meta = not_found_is_none(fs::metadata(&path)).map_err(io_err("stat", &path))?;
            Ok(meta.map(|m| info_of(&m)))
        })
        .await
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream, StorageError> {
        let missing = StorageError::BlobUnknown(digest.clone());
        read_range(self.blob_path(digest), offset, len, missing).await
    }

    async fn blob_read_small(&self, digest: &Digest, limit: u64) -> Result<Bytes, StorageError> {
        let path = self.blob_path(digest);
        let digest = digest.clone();
        blocking(move || {
            let Some(file) = not_found_is_none(File::open(&path)).map_err(io_err("open", &path))?
            else {
                return Err(StorageError::BlobUnknown(digest));
            };
            let mut data = Vec::new();
            file.take(limit)
                .read_to_end(&mut data)
                .map_err(io_err("read", &path))?;
            Ok(Bytes::from(data))
        })
        .await
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> Result<(), StorageError> {
        let this = self.clone();
        let path = self.blob_path(digest);
        blocking(move || this.write_atomically(&path, &data)).await
    }

    async fn blob_touch(&self, digest: &Digest) -> Result<(), StorageError> {
        let path = self.blob_path(digest);
        let digest = digest.clone();
        blocking(move || {
            let Some(file) = not_found_is_none(OpenOptions::new().write(true).open(&path))
                .map_err(io_err("open", &path))?
            else {
                return Err(StorageError::BlobUnknown(digest));
            };
            file.set_modified(SystemTime::now())
                .map_err(io_err("touch", &path))
        })
        .await
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<bool, StorageError> {
        let path = self.blob_path(digest);
        blocking(move || {
            Ok(not_found_is_none(fs::remove_file(&path))
                .map_err(io_err("remove", &path))?
                .is_some())
        })
        .await
    }

    async fn blob_set_aside(&self, digest: &Digest) -> Result<bool, StorageError> {
        // A rename keeps the inode, so a touch that opened the blob before still lands on it.
        let (from, to) = (self.blob_path(digest), self.aside_path(digest));
        let root = self.root.clone();
        blocking(move || rename_if_there(&root, &from, &to)).await
    }

    async fn blob_aside_last_use(
        &self,
        digest: &Digest,
    ) -> Result<Option<SystemTime>, StorageError> {
        let path = self.aside_path(digest);
        blocking(move || {
            let meta = not_found_is_none(fs::metadata(&path)).map_err(io_err("stat", &path))?;
            Ok(meta.map(|m| info_of(&m).modified))
        })
        .await
    }

    async fn blob_restore(&self, digest: &Digest) -> Result<(), StorageError> {
        // Over a copy stored meanwhile is harmless: the same verified bytes.
        let (from, to) = (self.aside_path(digest), self.blob_path(digest));
        let root = self.root.clone();
        blocking(move || rename_if_there(&root, &from, &to).map(|_| ())).await
    }

    async fn blob_drop_aside(&self, digest: &Digest) -> Result<(), StorageError> {
        let path = self.aside_path(digest);
        blocking(move || {
            not_found_is_none(fs::remove_file(&path)).map_err(io_err("remove", &path))?;
            Ok(())
        })
        .await
    }

    async fn blob_list(&self) -> Result<Vec<(Digest, ObjectInfo)>, StorageError> {
        let dir = self.root.join("blobs/sha256");
        blocking(move || {
            let mut out = Vec::new();
            for shard in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
                let shard = shard.map_err(io_err("list", &dir))?.path();
                if !shard.is_dir() {
                    continue;
                }
                for entry in fs::read_dir(&shard).map_err(io_err("list", &shard))? {
                    let entry = entry.map_err(io_err("list", &shard))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    // Skip anything that is not a blob name (never produced by us).
                    let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else {
                        continue;
                    };
                    if let Some(meta) = not_found_is_none(entry.metadata())
                        .map_err(io_err("stat", &entry.path()))?
                    {
                        out.push((digest, info_of(&meta)));
                    }
                }
            }
            out.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
        .await
    }

    async fn upload_create(&self, id: &str, info: Bytes) -> Result<(), StorageError> {
        let dir = self.upload_dir(id)?;
        blocking(move || {
            // Not `create_dir_all`: `uploads/` was made with the root, and a root that is gone
            // is an error, not made again (see `create_dir_durably`).
            match fs::create_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(io_err("create folder", &dir)(e));
                }
                _ => {}
            }
            let created = (|| {
                let data = dir.join("data");
                File::create(&data).map_err(io_err("create", &data))?;
                let info_path = dir.join("info");
                fs::write(&info_path, &info).map_err(io_err("write", &info_path))
            })();
            if created.is_err() {
                // A full disk took the info's bytes: no session without its info.
                let _ = fs::remove_dir_all(&dir);
            }
            created
        })
        .await
    }

    async fn upload_info(&self, id: &str) -> Result<Option<UploadStatus>, StorageError> {
        let dir = match self.upload_dir(id) {
            Ok(dir) => dir,
            Err(_) => return Ok(None),
        };
        blocking(move || {
            let data = dir.join("data");
            let Some(meta) =
                not_found_is_none(fs::metadata(&data)).map_err(io_err("stat", &data))?
            else {
                return Ok(None);
            };
            let info_path = dir.join("info");
            let Some(info) =
                not_found_is_none(fs::read(&info_path)).map_err(io_err("read", &info_path))?
            else {
                return Ok(None);
            };
            Ok(Some(UploadStatus {
                info: Bytes::from(info),
                object: info_of(&meta),
                version: None,
            }))
        })
        .await
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
    ) -> Result<Appended, StorageError> {
        let (appended, _) = self.upload_append_hashed(id, offset, data, None).await?;
        Ok(appended)
    }

    async fn upload_append_hashed(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
        hasher: Option<Sha256>,
    ) -> Result<(Appended, Option<Sha256>), StorageError> {
        let (size, hasher) = self
            .append(id, offset, data, AppendHow::Blocks(hasher))
            .await?;
        Ok((Appended::unversioned(size), hasher))
    }

    fn reads_uploads_while_appending(&self) -> bool {
        true
    }

    async fn upload_append_reporting(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
        progress: watch::Sender<u64>,
    ) -> Result<u64, StorageError> {
        let how = AppendHow::EachChunk(progress);
        let (size, _) = self.append(id, offset, data, how).await?;
        Ok(size)
    }

    async fn upload_read_range(
        &self,
        id: &str,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream, StorageError> {
        let missing = StorageError::UploadUnknown(id.to_string());
        read_range(self.upload_dir(id)?.join("data"), offset, len, missing).await
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream, StorageError> {
        let path = self.upload_dir(id)?.join("data");
        let id = id.to_string();
        let (file, len) = blocking(move || {
            let Some(file) = not_found_is_none(File::open(&path)).map_err(io_err("open", &path))?
            else {
                return Err(StorageError::UploadUnknown(id));
            };
            let len = file.metadata().map_err(io_err("stat", &path))?.len();
            Ok((file, len))
        })
        .await?;
        Ok(stream_file(file, len))
    }

    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        // Only one server writes an upload here, and it holds the session's lock.
        _verified: Option<UploadVersion>,
    ) -> Result<(), StorageError> {
        let dir = self.upload_dir(id)?;
        let target = self.blob_path(digest);
        let (id, root) = (id.to_string(), self.root.clone());
        blocking(move || {
            let data = dir.join("data");
            let Some(file) = not_found_is_none(OpenOptions::new().write(true).open(&data))
                .map_err(io_err("open", &data))?
            else {
                return Err(StorageError::UploadUnknown(id));
            };
            // Its time is its last write, which may be long ago (an upload left idle before
            // its closing request): a blob is new when it appears, or gc may take it at once.
            file.set_modified(SystemTime::now())
                .map_err(io_err("touch", &data))?;
            file.sync_all().map_err(io_err("fsync", &data))?;
            drop(file);
            // Renaming over an existing blob (a concurrent push of the same content) is atomic
            // and harmless: both files hold the same verified bytes.
            rename_into_place(&root, &data, &target)?;
            let _ = fs::remove_dir_all(&dir);
            Ok(())
        })
        .await
    }

    async fn upload_delete(&self, id: &str) -> Result<(), StorageError> {
        let dir = self.upload_dir(id)?;
        blocking(move || {
            not_found_is_none(fs::remove_dir_all(&dir)).map_err(io_err("remove", &dir))?;
            Ok(())
        })
        .await
    }

    async fn upload_list(&self) -> Result<Vec<(String, ObjectInfo)>, StorageError> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut out = Vec::new();
            for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
                let entry = entry.map_err(io_err("list", &dir))?;
                let id = entry.file_name().to_string_lossy().into_owned();
                let data = entry.path().join("data");
                // A session whose data file is gone is a leftover: report it with its folder's time.
                let meta =
                    match not_found_is_none(fs::metadata(&data)).map_err(io_err("stat", &data))? {
                        Some(m) => m,
                        None => entry.metadata().map_err(io_err("stat", &entry.path()))?,
                    };
                out.push((id, info_of(&meta)));
            }
            Ok(out)
        })
        .await
    }

    async fn meta_put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let path = self.meta_path(key)?;
        let this = self.clone();
        blocking(move || this.write_atomically(&path, &data)).await
    }

    async fn meta_get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let path = self.meta_path(key)?;
        blocking(move || {
            match fs::read(&path) {
                Ok(data) => Ok(Some(Bytes::from(data))),
                // A folder at a document's key (or a missing one) is "no document".
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound
                            | io::ErrorKind::IsADirectory
                            | io::ErrorKind::NotADirectory
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(io_err("read", &path)(e)),
            }
        })
        .await
    }

    async fn meta_info(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = self.meta_path(key)?;
        blocking(move || {
            let meta = not_found_is_none(fs::metadata(&path)).map_err(io_err("stat", &path))?;
            Ok(meta.filter(|m| m.is_file()).map(|m| info_of(&m)))
        })
        .await
    }

    async fn meta_delete(&self, key: &str) -> Result<bool, StorageError> {
        let path = self.meta_path(key)?;
        blocking(move || {
            let removed = not_found_is_none(fs::remove_file(&path))
                .map_err(io_err("remove", &path))?
                .is_some();
            if removed {
                // Empty folders left behind are harmless; remove the nearest one to keep lists short.
                if let Some(parent) = path.parent() {
                    let _ = fs::remove_dir(parent);
                }
            }
            Ok(removed)
        })
        .await
    }

    async fn meta_list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let path = self.meta_path(prefix.trim_end_matches('/'))?;
        blocking(move || {
            let entries = match fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    return Ok(Vec::new());
                }
                Err(e) => return Err(io_err("list", &path)(e)),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.map_err(io_err("list", &path))?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn clean_temporary(&self, older_than: SystemTime) -> Result<usize, StorageError> {
        let dir = self.root.join("tmp");
        blocking(move || {
            let mut removed = 0;
            for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
                let entry = entry.map_err(io_err("list", &dir))?;
                let Ok(meta) = entry.metadata() else { continue };
                if meta.modified().map(|m| m < older_than).unwrap_or(false)
                    && fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_new_folder_is_synced_in_its_parent_and_existing_ones_are_left_alone() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let deep = root.join("repositories/team/app/_manifests/tags/v1");
        let synced = create_dir_durably(root, &deep).expect("create");
        let expected: Vec<PathBuf> = [
            "",
            "repositories",
            "repositories/team",
            "repositories/team/app",
            "repositories/team/app/_manifests",
            "repositories/team/app/_manifests/tags",
        ]
        .iter()
        .map(|sub| {
            if sub.is_empty() {
                root.to_path_buf()
            } else {
                root.join(sub)
            }
        })
        .collect();
        assert_eq!(synced, expected);
        assert!(deep.is_dir());

        // A sibling under folders that exist: only its own parent is synced.
        let sibling = root.join("repositories/team/app/_manifests/tags/v2");
        assert_eq!(
            create_dir_durably(root, &sibling).expect("create"),
            vec![sibling.parent().expect("parent").to_path_buf()]
        );
        assert_eq!(
            create_dir_durably(root, &deep).expect("again"),
            Vec::<PathBuf>::new()
        );

        // A file where a folder should be is an error naming it, not a silent success.
        fs::write(root.join("blobs"), b"not a folder").expect("file");
        let err =
            create_dir_durably(root, &root.join("blobs/sha256")).expect_err("a file in the way");
        assert!(err.to_string().contains("blobs"), "{err}");
    }

    /// Regression: a root that went away (an unmounted volume, a test's removed folder) was
    /// made again, empty, by the next write, which then stored blobs where the volume had been.
    #[tokio::test]
    async fn a_root_that_is_gone_is_an_error_naming_it_and_is_not_made_again() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("registry");
        let storage = FsStorage::open(&root).expect("open");
        storage
            .upload_create("abc1", Bytes::new())
            .await
            .expect("upload");
        fs::remove_dir_all(&root).expect("the volume goes");

        let err = storage
            .upload_create("abc2", Bytes::new())
            .await
            .expect_err("no uploads/ any more");
        assert!(err.to_string().contains("uploads"), "{err}");
        // gc restoring a blob it had set aside: nothing to restore, and no folder made for it.
        let digest = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).expect("digest");
        storage
            .blob_restore(&digest)
            .await
            .expect("nothing to restore");
        let dir = root.join("blobs/sha256/ab");
        let err = create_dir_durably(&root, &dir).expect_err("the root is gone");
        assert_eq!(
            err.to_string(),
            format!(
                "open the storage root {}: No such file or directory (os error 2)",
                root.display()
            )
        );
        assert!(!root.exists(), "nothing made the root again");
    }
}
