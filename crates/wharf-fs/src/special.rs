//! Special files and extended attributes, for unpacking image layers: device nodes, FIFOs,
//! overlayfs whiteouts (character device 0/0) and xattrs, always on the last component without
//! following it.

use crate::error::{FileKind, Result};
use crate::{Root, proc_fd_path};
use rustix::fs::{FileType, Mode, XattrFlags};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

impl Root {
    /// Create a device node or FIFO at `path` (`mknodat`). `kind` must be
    /// [`FileKind::CharDevice`], [`FileKind::BlockDevice`] or [`FileKind::Fifo`]; `major`/`minor`
    /// are ignored for a FIFO. Unprivileged callers get `EPERM` for devices other than the
    /// overlayfs whiteout (character device 0/0).
    pub fn mknod(
        &self,
        path: impl AsRef<Path>,
        kind: FileKind,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<()> {
        let path = path.as_ref();
        let file_type = match kind {
            FileKind::CharDevice => FileType::CharacterDevice,
            FileKind::BlockDevice => FileType::BlockDevice,
            FileKind::Fifo => FileType::Fifo,
            _ => {
                return Err(self.io(
                    "creating a special file at",
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("mknod cannot create {}", kind.describe()),
                    ),
                ));
            }
        };
        let (dir, name) = self.entry(path, "created")?;
        rustix::fs::mknodat(
            &dir,
            &name,
            file_type,
            Mode::from_raw_mode(mode & 0o7777),
            rustix::fs::makedev(major, minor),
        )
        .map_err(|e| self.io("creating the special file", path, e.into()))
    }

    /// Set the extended attribute `name` of `path` to `value`, without following a symbolic
    /// link there (`lsetxattr` on `/proc/self/fd/<parent>/<entry>`: the parent was resolved
    /// confined, the entry is not followed).
    pub fn set_xattr(&self, path: impl AsRef<Path>, name: &OsStr, value: &[u8]) -> Result<()> {
        let path = path.as_ref();
        let full = self.xattr_path(path)?;
        rustix::fs::lsetxattr(full.as_os_str(), name, value, XattrFlags::empty())
            .map_err(|e| self.io("setting an extended attribute of", path, e.into()))
    }

    /// The value of the extended attribute `name` of `path` (not following a link there);
    /// `None` when it is not set.
    pub fn xattr(&self, path: impl AsRef<Path>, name: &OsStr) -> Result<Option<Vec<u8>>> {
        let path = path.as_ref();
        let full = self.xattr_path(path)?;
        let mut buf = vec![0u8; 256];
        loop {
            match rustix::fs::lgetxattr(full.as_os_str(), name, &mut buf[..]) {
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Err(rustix::io::Errno::NODATA) => return Ok(None),
                Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 16 => {
                    buf.resize(buf.len() * 4, 0);
                }
                Err(e) => {
                    return Err(self.io("reading an extended attribute of", path, e.into()));
                }
            }
        }
    }

    /// `/proc/self/fd/<dir>/<name>` for the entry at `path`, and the descriptor that keeps it
    /// valid.
    fn xattr_path(&self, path: &Path) -> Result<XattrPath> {
        let (dir, name) = match self.target(path)? {
            (dir, Some(name)) => (dir, name),
            (dir, None) => (dir, ".".into()),
        };
        let mut full = std::ffi::OsString::from(proc_fd_path(&dir));
        full.push("/");
        full.push(&name);
        // The kernel resolves the magic link to the very directory `dir` holds; the entry name
        // has no `/`, so nothing else is resolved.
        debug_assert!(!name.as_bytes().contains(&b'/'));
        Ok(XattrPath { _dir: dir, full })
    }
}

struct XattrPath {
    _dir: rustix::fd::OwnedFd,
    full: std::ffi::OsString,
}

impl XattrPath {
    fn as_os_str(&self) -> &OsStr {
        &self.full
    }
}

/// Whether `kind` with device numbers `(major, minor)` is an overlayfs whiteout.
pub fn is_whiteout(kind: FileKind, major: u32, minor: u32) -> bool {
    kind == FileKind::CharDevice && major == 0 && minor == 0
}
