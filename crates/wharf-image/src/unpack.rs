//! Applying one layer (a tar stream) to an empty directory, confined to it, in the form kernel
//! overlayfs stacks (see ARCHITECTURE.md, "wharf-image"):
//!
//! - `.wh.<name>` becomes a whiteout: a character device 0/0 at `<name>`, unless this layer
//!   itself has `<name>` (a whiteout only hides what is below);
//! - `.wh..wh..opq` marks its directory opaque: xattr `user.overlay.opaque=y` (for overlayfs
//!   with `userxattr`, in a user namespace) and, as root, `trusted.overlay.opaque=y`; content of
//!   the same layer stays, whatever the order of the entries;
//! - a hard link to a file this layer does not have (it is in a lower layer) is kept aside and
//!   later made a copy of the lower file ([`copy_up_links`]): overlayfs cannot share an inode
//!   across layers, and a copy is what a copy-up would give;
//! - every path goes through `wharf_fs::Root` in `InRoot` mode: `..`, absolute paths and links
//!   stay inside the layer, as in a chroot;
//! - owners only as root; setuid/setgid after chown (chown clears them); directory modes and
//!   times at the end, deepest first, so a 0000 directory can still be filled;
//! - device nodes that cannot be made (not root) and xattrs the kernel refuses are counted, not
//!   fatal; `*.overlay.*` xattrs from the layer are dropped (they would steer overlayfs).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use wharf_fs::read_limit::LimitedReader;
use wharf_fs::{FileKind, Root};

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";
pub const TRUSTED_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What one layer held, for the log and the store.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerReport {
    pub entries: u64,
    /// Bytes of regular files written.
    pub bytes: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    /// Device nodes that could not be created (not permitted here).
    pub skipped_devices: u64,
    /// Extended attributes not set (refused by the kernel or the filesystem, or overlayfs's own).
    pub skipped_xattrs: u64,
    /// Hard links to files of lower layers, made copies.
    pub copied_up_links: u64,
}

/// A hard link whose target is not in the layer itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerLink {
    pub link: PathBuf,
    pub target: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer: {0}")]
    Read(#[from] io::Error),
    #[error(transparent)]
    Fs(#[from] wharf_fs::Error),
    #[error("entry `{path}`: {detail}")]
    Entry { path: String, detail: String },
}

struct DirMeta {
    path: PathBuf,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Option<SystemTime>,
}

/// Apply the tar stream `reader` (already decompressed) to the empty directory `root`.
/// Returns what it held and the hard links to lower layers, for [`copy_up_links`].
pub fn apply_layer(
    reader: impl Read,
    root: &Root,
    as_root: bool,
) -> Result<(LayerReport, Vec<LowerLink>), UnpackError> {
    let (reader, limit) = LimitedReader::tar_headers(reader);
    let mut archive = tar::Archive::new(reader);
    let mut report = LayerReport::default();
    let mut dirs: HashMap<PathBuf, DirMeta> = HashMap::new();
    let mut lower_links = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        // Reading the next entry may go through the rest of this one, then headers only.
        limit.after_tar_entry(entry.raw_file_position(), entry.size());
        report.entries += 1;
        // A PAX global header (`git archive` writes one) describes the archive, not a file.
        if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
            continue;
        }
        let raw_path = entry.path()?.into_owned();
        let Some(path) = clean(&raw_path) else {
            continue; // the root itself: its metadata is the image's business, not a layer's
        };
        let shown = || raw_path.display().to_string();
        let fail = |detail: String| UnpackError::Entry {
            path: shown(),
            detail,
        };
        let name = path.file_name().unwrap_or_default().to_owned();
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if !parent.as_os_str().is_empty() {
            root.create_dir_all(&parent, 0o755)?;
        }
        let name_bytes = name.as_bytes();
        if name_bytes == OPAQUE_MARKER.as_bytes() {
            report.opaque_dirs += 1;
            mark_opaque(root, &parent, as_root, &mut report)?;
            continue;
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(fail("a whiteout without a name".into()));
            }
            report.whiteouts += 1;
            let target = parent.join(OsStr::from_bytes(hidden));
            // A whiteout hides lower layers only: what this layer has there stays.
            if root.try_metadata(&target)?.is_none() {
                root.mknod(&target, FileKind::CharDevice, 0, 0, 0)
                    .map_err(|e| fail(format!("cannot create the whiteout (character device 0/0, allowed to unprivileged users since Linux 5.8): {e}")))?;
            }
            continue;
        }
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| fail(e.to_string()))? & 0o7777;
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header
            .mtime()
            .ok()
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let xattrs = pax_xattrs(&mut entry)?;

        // What is there already (from this same layer: later entries win).
        let existing = root.try_metadata(&path)?;
        if let Some(meta) = &existing {
            let keep_dir = meta.is_dir() && kind == tar::EntryType::Directory;
            if !keep_dir {
                if meta.is_dir() {
                    root.remove_all(&path)?;
                    dirs.retain(|p, _| !p.starts_with(&path));
                } else {
                    root.remove_file(&path)?;
                }
            }
        }
        match kind {
            tar::EntryType::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    root.create_dir(&path, 0o700)?;
                }
                dirs.insert(
                    path.clone(),
                    DirMeta {
                        path: path.clone(),
                        mode,
                        uid,
                        gid,
                        mtime,
                    },
                );
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut file = root.create_new(&path, 0o600)?;
                report.bytes += io::copy(&mut entry, &mut file)?;
                drop(file);
                finish_entry(root, &path, mode, uid, gid, mtime, as_root)?;
            }
            tar::EntryType::Symlink => {
                let target = header
                    .link_name()?
                    .ok_or_else(|| fail("a symbolic link without a target".into()))?;
                root.symlink(&target, &path)?;
                if as_root {
                    root.set_owner(&path, Some(uid), Some(gid))?;
                }
                root.set_times(&path, None, mtime)?;
            }
            tar::EntryType::Link => {
                let target = header
                    .link_name()?
                    .ok_or_else(|| fail("a hard link without a target".into()))?;
                let Some(target) = clean(&target) else {
                    return Err(fail("a hard link to the root folder".into()));
                };
                match root.try_metadata(&target)? {
                    Some(m) if !m.is_dir() => root.hard_link(&target, &path)?,
                    Some(_) => return Err(fail("a hard link to a directory".into())),
                    None => lower_links.push(LowerLink {
                        link: path.clone(),
                        target,
                    }),
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_kind = match kind {
                    tar::EntryType::Char => FileKind::CharDevice,
                    tar::EntryType::Block => FileKind::BlockDevice,
                    _ => FileKind::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                match root.mknod(&path, file_kind, mode, major, minor) {
                    Ok(()) => finish_entry(root, &path, mode, uid, gid, mtime, as_root)?,
                    Err(e) if is_permission(&e) => {
                        report.skipped_devices += 1;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // PAX/GNU metadata entries are folded into the next entry by the tar crate.
            other => {
                return Err(fail(format!("unsupported tar entry type {other:?}")));
            }
        }
        for (name, value) in xattrs {
            set_layer_xattr(root, &path, &name, &value, &mut report)?;
        }
    }
    // Drain the end-of-archive blocks, so a caller hashing the stream sees all of it.
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    let mut dirs: Vec<DirMeta> = dirs.into_values().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
    for d in dirs {
        finish_entry(root, &d.path, d.mode, d.uid, d.gid, d.mtime, as_root)?;
    }
    Ok((report, lower_links))
}

/// Owner (as root), mode (after the owner: chown clears setuid) and modification time.
fn finish_entry(
    root: &Root,
    path: &Path,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Option<SystemTime>,
    as_root: bool,
) -> Result<(), wharf_fs::Error> {
    if as_root {
        root.set_owner(path, Some(uid), Some(gid))?;
    }
    root.set_permissions(path, mode)?;
    root.set_times(path, None, mtime)
}

fn mark_opaque(
    root: &Root,
    dir: &Path,
    as_root: bool,
    report: &mut LayerReport,
) -> Result<(), UnpackError> {
    if !dir.as_os_str().is_empty() {
        root.create_dir_all(dir, 0o755)?;
    }
    root.set_xattr(dir, OsStr::new(USER_OPAQUE_XATTR), b"y")
        .map_err(|e| UnpackError::Entry {
            path: dir.join(OPAQUE_MARKER).display().to_string(),
            detail: format!(
                "cannot mark the folder opaque (the store's filesystem needs user xattrs): {e}"
            ),
        })?;
    if as_root
        && root
            .set_xattr(dir, OsStr::new(TRUSTED_OPAQUE_XATTR), b"y")
            .is_err()
    {
        report.skipped_xattrs += 1;
    }
    Ok(())
}

fn set_layer_xattr(
    root: &Root,
    path: &Path,
    name: &str,
    value: &[u8],
    report: &mut LayerReport,
) -> Result<(), UnpackError> {
    if name.contains(".overlay.") {
        report.skipped_xattrs += 1;
        return Ok(());
    }
    match root.set_xattr(path, OsStr::new(name), value) {
        Ok(()) => Ok(()),
        Err(e)
            if is_permission(&e)
                || e.io_error()
                    .and_then(io::Error::raw_os_error)
                    .is_some_and(|c| {
                        c == rustix::io::Errno::OPNOTSUPP.raw_os_error()
                            || c == rustix::io::Errno::NOTSUP.raw_os_error()
                    }) =>
        {
            report.skipped_xattrs += 1;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `SCHILY.xattr.<name>` records of the entry's PAX header.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Ok(key) = ext.key()
                && let Some(name) = key.strip_prefix("SCHILY.xattr.")
            {
                out.push((name.to_owned(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

fn is_permission(e: &wharf_fs::Error) -> bool {
    e.io_error()
        .is_some_and(|io| io.kind() == io::ErrorKind::PermissionDenied)
}

/// A layer path made relative and lexical: `./`, `/` and `..` above the top are dropped (the
/// layer is applied as if chrooted into its folder). `None` for the root itself.
pub fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Make each hard link to a lower layer's file a copy of that file (the top-most lower layer
/// that has it and does not hide it). `lowers` is bottom first. A link whose target no layer has
/// is an error, as it is for every engine.
pub fn copy_up_links(
    layer: &Root,
    lowers: &[Root],
    links: &[LowerLink],
    as_root: bool,
    report: &mut LayerReport,
) -> Result<(), UnpackError> {
    for link in links {
        if layer.try_metadata(&link.link)?.is_some() {
            continue; // replaced by a later entry of the same layer
        }
        // A second link to the same lower file: link to the copy made for the first.
        if let Some(m) = layer.try_metadata(&link.target)?
            && !m.is_dir()
        {
            layer.hard_link(&link.target, &link.link)?;
            continue;
        }
        let Some(lower) = find_in_lowers(lowers, &link.target)? else {
            return Err(UnpackError::Entry {
                path: link.link.display().to_string(),
                detail: format!(
                    "a hard link to `{}`, which neither this layer nor a lower one has",
                    link.target.display()
                ),
            });
        };
        let meta = lower.metadata(&link.target)?;
        let mut from = lower.open_read(&link.target)?;
        let mut to = layer.create_new(&link.link, 0o600)?;
        report.bytes += io::copy(&mut from, &mut to)?;
        drop(to);
        let mtime = meta.modified().ok();
        finish_entry(
            layer,
            &link.link,
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid(),
            mtime,
            as_root,
        )?;
        report.copied_up_links += 1;
    }
    Ok(())
}

/// The top-most layer of `lowers` (bottom first) where `path` is a regular file visible from
/// above: no whiteout, opaque folder or non-folder on the way in a higher layer.
fn find_in_lowers<'a>(lowers: &'a [Root], path: &Path) -> Result<Option<&'a Root>, UnpackError> {
    let comps: Vec<&OsStr> = path.iter().collect();
    for layer in lowers.iter().rev() {
        let mut prefix = PathBuf::new();
        for (i, c) in comps.iter().enumerate() {
            prefix.push(c);
            let last = i + 1 == comps.len();
            let Some(meta) = layer.try_metadata(&prefix)? else {
                break; // not in this layer: look lower
            };
            let is_whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
            if is_whiteout {
                return Ok(None);
            }
            if last {
                return Ok(meta.is_file().then_some(layer));
            }
            if !meta.is_dir() {
                return Ok(None); // a file or link hides everything below this name
            }
            if layer
                .xattr(&prefix, OsStr::new(USER_OPAQUE_XATTR))?
                .as_deref()
                == Some(b"y")
            {
                // An opaque folder: nothing lower shows through; only this layer may have it.
                let rest: PathBuf = comps[i + 1..].iter().collect();
                let full = prefix.join(rest);
                return Ok(match layer.try_metadata(&full)? {
                    Some(m) if m.is_file() => Some(layer),
                    _ => None,
                });
            }
        }
    }
    Ok(None)
}
