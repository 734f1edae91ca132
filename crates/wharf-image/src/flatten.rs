//! Materialise the merged tree of a stack of unpacked layers into one directory: what overlayfs
//! shows when it stacks them (whiteouts remove, opaque folders hide what is below, an upper
//! non-folder replaces a lower folder and the other way round). For tests that compare with
//! Docker's tree, and for a run step where overlayfs cannot be mounted.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use wharf_fs::{FileKind, Root};

use crate::unpack::{USER_OPAQUE_XATTR, UnpackError};

/// Merge `layers` (bottom first) into `dest` (an empty directory). Hard links inside one layer
/// stay hard links; owners are copied as root only.
pub fn flatten_layers(layers: &[Root], dest: &Root, as_root: bool) -> Result<(), UnpackError> {
    let mut dir_meta: HashMap<PathBuf, std::fs::Metadata> = HashMap::new();
    for layer in layers {
        // Within a layer: (dev, ino) of a file already copied -> its path in dest.
        let mut copied: HashMap<(u64, u64), PathBuf> = HashMap::new();
        apply_dir(
            layer,
            dest,
            Path::new(""),
            as_root,
            &mut copied,
            &mut dir_meta,
        )?;
    }
    let mut dirs: Vec<(PathBuf, std::fs::Metadata)> = dir_meta.into_iter().collect();
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, meta) in dirs {
        if dest.try_metadata(&path)?.is_some_and(|m| m.is_dir()) {
            set_meta(dest, &path, &meta, as_root)?;
        }
    }
    Ok(())
}

/// What a higher layer replaces (or whites out) at `path`: a whole folder (and the modes kept
/// for its folders), or one entry.
fn remove_existing(
    dest: &Root,
    path: &Path,
    existing: Option<&std::fs::Metadata>,
    dir_meta: &mut HashMap<PathBuf, std::fs::Metadata>,
) -> Result<(), UnpackError> {
    match existing {
        Some(m) if m.is_dir() => {
            dest.remove_all(path)?;
            dir_meta.retain(|p, _| !p.starts_with(path));
        }
        Some(_) => dest.remove_file(path)?,
        None => {}
    }
    Ok(())
}

fn apply_dir(
    layer: &Root,
    dest: &Root,
    dir: &Path,
    as_root: bool,
    copied: &mut HashMap<(u64, u64), PathBuf>,
    dir_meta: &mut HashMap<PathBuf, std::fs::Metadata>,
) -> Result<(), UnpackError> {
    for entry in layer.read_dir(dir)? {
        let path = dir.join(&entry.name);
        let meta = layer.metadata(&path)?;
        let existing = dest.try_metadata(&path)?;
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            // A whiteout: what is below goes.
            remove_existing(dest, &path, existing.as_ref(), dir_meta)?;
            continue;
        }
        if entry.kind == FileKind::Dir {
            let restore = grant_owner_access(layer, &path, &meta, 0o500, as_root)?;
            let opaque = layer
                .xattr(&path, OsStr::new(USER_OPAQUE_XATTR))?
                .as_deref()
                == Some(b"y");
            match existing {
                Some(m) if m.is_dir() => {
                    if opaque {
                        dest.clear_dir(&path)?;
                        dir_meta.retain(|p, _| !p.starts_with(&path) || p == &path);
                    }
                }
                Some(_) => {
                    dest.remove_file(&path)?;
                    dest.create_dir(&path, 0o700)?;
                }
                None => dest.create_dir(&path, 0o700)?,
            }
            dir_meta.insert(path.clone(), meta);
            let applied = apply_dir(layer, dest, &path, as_root, copied, dir_meta);
            if let Some(mode) = restore {
                layer.set_permissions(&path, mode)?;
            }
            applied?;
            continue;
        }
        remove_existing(dest, &path, existing.as_ref(), dir_meta)?;
        match entry.kind {
            FileKind::File => {
                if let Some(first) = copied.get(&(meta.dev(), meta.ino())) {
                    dest.hard_link(first, &path)?;
                    continue;
                }
                let restore = grant_owner_access(layer, &path, &meta, 0o400, as_root)?;
                let opened = layer.open_read(&path);
                if let Some(mode) = restore {
                    layer.set_permissions(&path, mode)?;
                }
                let mut from = opened?;
                let mut to = dest.create_new(&path, 0o600)?;
                io::copy(&mut from, &mut to)?;
                drop(to);
                if meta.nlink() > 1 {
                    copied.insert((meta.dev(), meta.ino()), path.clone());
                }
                set_meta(dest, &path, &meta, as_root)?;
            }
            FileKind::Symlink => {
                dest.symlink(layer.read_link(&path)?, &path)?;
                if as_root {
                    dest.set_owner(&path, Some(meta.uid()), Some(meta.gid()))?;
                }
                dest.set_times(&path, None, meta.modified().ok())?;
            }
            FileKind::CharDevice | FileKind::BlockDevice | FileKind::Fifo => {
                let rdev = meta.rdev() as rustix::fs::Dev;
                dest.mknod(
                    &path,
                    entry.kind,
                    meta.mode(),
                    rustix::fs::major(rdev),
                    rustix::fs::minor(rdev),
                )?;
                set_meta(dest, &path, &meta, as_root)?;
            }
            // Sockets are never in layers; nothing else exists.
            _ => {}
        }
    }
    Ok(())
}

/// Without root, a layer's 0000 folder or file cannot be read even by its owner: give the owner
/// `bits` for the moment (the caller restores the returned mode). Root reads anything.
fn grant_owner_access(
    layer: &Root,
    path: &Path,
    meta: &std::fs::Metadata,
    bits: u32,
    as_root: bool,
) -> Result<Option<u32>, wharf_fs::Error> {
    let mode = meta.mode() & 0o7777;
    if as_root || mode & bits == bits {
        return Ok(None);
    }
    layer.set_permissions(path, mode | bits)?;
    Ok(Some(mode))
}

fn set_meta(
    dest: &Root,
    path: &Path,
    meta: &std::fs::Metadata,
    as_root: bool,
) -> Result<(), wharf_fs::Error> {
    if as_root {
        dest.set_owner(path, Some(meta.uid()), Some(meta.gid()))?;
    }
    dest.set_permissions(path, meta.mode() & 0o7777)?;
    dest.set_times(path, None, meta.modified().ok())
}
