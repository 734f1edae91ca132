//! wharf-fs: file operations confined to a directory tree.
//!
//! A [`Root`] holds a directory as a file descriptor. Every path given to it is relative to that
//! directory and is resolved under it, so nothing in the tree (a symbolic link, `..`, a folder
//! swapped for a link between two calls) can make an operation read or write outside it:
//!
//! - the folders leading to an entry are resolved with `openat2` and `RESOLVE_BENEATH` or
//!   `RESOLVE_IN_ROOT` (plus `RESOLVE_NO_MAGICLINKS`), or, on kernels without `openat2`
//!   (before 5.6, e.g. RHEL 8) and where a seccomp filter blocks it, by a checked walk, one
//!   component at a time with `O_NOFOLLOW`;
//! - the entry itself (the last component) is never followed: a symbolic link there is acted on
//!   as a link (removed, replaced, read with [`Root::read_link`]) and refused where a file or a
//!   folder is needed;
//! - regular files are opened for reading only after checking, on an `O_PATH` descriptor, that
//!   they are regular files, so a FIFO or a device node is never opened (no hang, no read of a
//!   host disk through a device node a container made);
//! - files are never written in place: new ones are created with `O_EXCL`, replaced ones are
//!   written to a temporary name and renamed over, so a hard link in the tree never carries a
//!   write to the file it shares its inode with.
//!
//! Three resolution modes ([`Resolve`]): `Beneath` for trees a job controls (an escape is an
//! error), `InRoot` for image layers (absolute links and `..` stay in the root, as in a
//! container), `NoSymlinks` for trees whose shape only the caller makes (no link at all on the
//! way to an entry).
//!
//! The root directory itself is opened by its path, following symbolic links: the caller trusts
//! that path. Sub-trees are opened with [`Root::open_dir`], confined like any other path.
//!
//! [`read_limit`] bounds what the tar reader may hold in memory between two entries of a
//! hostile archive, for the unpackers that write through a [`Root`].

mod error;
pub mod read_limit;
mod resolve;
mod special;
mod tree;

pub use error::{Error, FileKind, Result};
pub use special::is_whiteout;
pub use tree::CopyReport;

use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::Write as _;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// How paths under a [`Root`] are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// For trees a job controls: symbolic links are followed on the way to an entry only while
    /// they stay inside the root; `..` above the root, an absolute path and an absolute or
    /// escaping link are errors ([`Error::Escapes`], [`Error::Absolute`]). `RESOLVE_BENEATH`.
    Beneath,
    /// For image layers: the root acts as `/`. Absolute paths and links start at the root and
    /// `..` at the root stays there, as inside a container. `RESOLVE_IN_ROOT`.
    InRoot,
    /// For trees only the caller shapes (its own state folders): no symbolic link at all on the
    /// way to an entry ([`Error::Symlink`]), no `..` above the root, no absolute path.
    NoSymlinks,
}

/// A directory tree, held open; every operation stays inside it (see the crate docs).
pub struct Root {
    fd: OwnedFd,
    /// The path it was opened by (or derived from), for messages only.
    path: PathBuf,
    resolve: Resolve,
    /// Resolve with the checked walk even where `openat2` works.
    walk_only: bool,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root")
            .field("path", &self.path)
            .field("resolve", &self.resolve)
            .field("walk_only", &self.walk_only)
            .finish()
    }
}

/// One entry of [`Root::read_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub kind: FileKind,
}

impl From<std::fs::FileType> for FileKind {
    fn from(t: std::fs::FileType) -> Self {
        use std::os::unix::fs::FileTypeExt;
        if t.is_symlink() {
            Self::Symlink
        } else if t.is_dir() {
            Self::Dir
        } else if t.is_file() {
            Self::File
        } else if t.is_fifo() {
            Self::Fifo
        } else if t.is_socket() {
            Self::Socket
        } else if t.is_char_device() {
            Self::CharDevice
        } else if t.is_block_device() {
            Self::BlockDevice
        } else {
            Self::Unknown
        }
    }
}

impl Root {
    /// Open the directory at `path` (trusted: symbolic links in it are followed) as a root.
    pub fn open(path: impl AsRef<Path>, resolve: Resolve) -> Result<Root> {
        let path = path.as_ref();
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::Io {
            root: path.to_path_buf(),
            path: PathBuf::new(),
            action: "opening the folder",
            source: e.into(),
        })?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            resolve,
            walk_only: !resolve::openat2_available(),
        })
    }

    /// Resolve paths with the checked walk instead of `openat2`, as on kernels without it.
    /// (Sub-roots opened from this one inherit the choice.)
    pub fn force_walk(mut self) -> Root {
        self.walk_only = true;
        self
    }

    /// Whether paths are resolved with `openat2` (else with the checked walk).
    pub fn uses_openat2(&self) -> bool {
        !self.walk_only
    }

    /// The path this root was opened by (for messages; operations never use it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn resolve(&self) -> Resolve {
        self.resolve
    }

    /// Another handle on the same directory.
    pub fn try_clone(&self) -> Result<Root> {
        Ok(Root {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| self.io("opening", Path::new(""), e))?,
            path: self.path.clone(),
            resolve: self.resolve,
            walk_only: self.walk_only,
        })
    }

    /// The directory at `path` as a root of its own, resolved with `resolve` from then on.
    /// `path` must be a directory: a symbolic link there is refused, not followed.
    pub fn open_dir(&self, path: impl AsRef<Path>, resolve: Resolve) -> Result<Root> {
        let path = path.as_ref();
        let fd = match self.target(path)? {
            (dir, Some(name)) => {
                let fd = self.open_path(&dir, &name, path)?;
                self.expect_kind(&fd, path, FileKind::Dir)?;
                fd
            }
            (dir, None) => dir,
        };
        Ok(Root {
            fd,
            path: self.path.join(path),
            resolve,
            walk_only: self.walk_only,
        })
    }

    /// Create the directory `path` (its parent must exist). `mode` is reduced by the umask.
    pub fn create_dir(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.entry(path, "created")?;
        rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(mode))
            .map_err(|e| self.io("creating the folder", path, e.into()))
    }

    /// Create the directory `path` and every missing one above it. An existing directory is
    /// fine; so is a symbolic link to one inside the root, where the mode allows following it.
    pub fn create_dir_all(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let path = path.as_ref();
        let comps = self.components(path)?;
        for i in 0..comps.len() {
            let resolve::Comp::Name(name) = &comps[i] else {
                continue;
            };
            let parent = self.resolve_dir(&comps[..i], path)?;
            match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(mode)) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    let fd = self.open_path(&parent, name, path)?;
                    match self.kind_of(&fd, path)? {
                        FileKind::Dir => {}
                        FileKind::Symlink if self.resolve != Resolve::NoSymlinks => {
                            // Where it leads is checked (and refused if outside) like any
                            // other resolution.
                            self.resolve_dir(&comps[..=i], path)?;
                        }
                        found => {
                            return Err(Error::WrongKind {
                                root: self.path.clone(),
                                path: comps[..=i].iter().map(comp_str).collect(),
                                found,
                                expected: FileKind::Dir,
                            });
                        }
                    }
                }
                Err(e) => return Err(self.io("creating the folder", path, e.into())),
            }
        }
        Ok(())
    }

    /// Open the regular file `path` for reading. A symbolic link, FIFO, socket or device there
    /// is refused ([`Error::WrongKind`]) without being opened.
    pub fn open_read(&self, path: impl AsRef<Path>) -> Result<File> {
        let path = path.as_ref();
        let (dir, name) = self.entry(path, "read")?;
        let opath = self.open_path(&dir, &name, path)?;
        self.expect_kind(&opath, path, FileKind::File)?;
        self.reopen(&opath, &dir, &name, path, OFlags::RDONLY)
    }

    /// Create the file `path`, which must not exist (`O_EXCL`: never follows a link there).
    /// `mode` is reduced by the umask.
    pub fn create_new(&self, path: impl AsRef<Path>, mode: u32) -> Result<File> {
        let path = path.as_ref();
        let (dir, name) = self.entry(path, "created")?;
        rustix::fs::openat(
            &dir,
            &name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map(File::from)
        .map_err(|e| self.io("creating", path, e.into()))
    }

    /// Open the file `path` for appending, creating it if missing. An existing entry must be a
    /// regular file.
    pub fn open_append(&self, path: impl AsRef<Path>, mode: u32) -> Result<File> {
        let path = path.as_ref();
        let (dir, name) = self.entry(path, "written")?;
        let flags = OFlags::WRONLY | OFlags::APPEND;
        match rustix::fs::openat(
            &dir,
            &name,
            flags | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::EXIST) => {
                let opath = self.open_path(&dir, &name, path)?;
                self.expect_kind(&opath, path, FileKind::File)?;
                self.reopen(&opath, &dir, &name, path, flags)
            }
            Err(e) => Err(self.io("creating", path, e.into())),
        }
    }

    /// Write `contents` to `path` atomically: to a temporary file beside it, renamed over
    /// whatever file or link was there (a directory there is an error). The file gets exactly
    /// `mode`.
    pub fn replace_file(&self, path: impl AsRef<Path>, mode: u32, contents: &[u8]) -> Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.entry(path, "written")?;
        self.write_replacing(&dir, &name, path, mode, |f| {
            f.write_all(contents)?;
            Ok(contents.len() as u64)
        })
        .map(|_| ())
    }

    /// Create a symbolic link at `path` pointing to `target` (stored as given; where it points
    /// is never checked, and never followed by this crate's other operations when out).
    pub fn symlink(&self, target: impl AsRef<Path>, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.entry(path, "created")?;
        rustix::fs::symlinkat(target.as_ref(), &dir, &name)
            .map_err(|e| self.io("creating the symbolic link", path, e.into()))
    }

    /// Make `new` a hard link to `existing` (both in this root; `existing` itself is not
    /// followed if it is a symbolic link: the link is linked).
    pub fn hard_link(&self, existing: impl AsRef<Path>, new: impl AsRef<Path>) -> Result<()> {
        let (existing, new) = (existing.as_ref(), new.as_ref());
        let (from_dir, from) = self.entry(existing, "linked")?;
        let (to_dir, to) = self.entry(new, "created")?;
        rustix::fs::linkat(&from_dir, &from, &to_dir, &to, AtFlags::empty())
            .map_err(|e| self.io("creating a hard link to", existing, e.into()))
    }

    /// Rename `from` to `to` (replacing a file or an empty directory there, as `rename(2)`).
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let (from_dir, from_name) = self.entry(from, "renamed")?;
        let (to_dir, to_name) = self.entry(to, "replaced")?;
        rustix::fs::renameat(&from_dir, &from_name, &to_dir, &to_name)
            .map_err(|e| self.io("renaming", from, e.into()))
    }

    /// Swap `a` and `b` atomically (`RENAME_EXCHANGE`); both must exist.
    pub fn exchange(&self, a: impl AsRef<Path>, b: impl AsRef<Path>) -> Result<()> {
        let (a, b) = (a.as_ref(), b.as_ref());
        let (a_dir, a_name) = self.entry(a, "exchanged")?;
        let (b_dir, b_name) = self.entry(b, "exchanged")?;
        rustix::fs::renameat_with(
            &a_dir,
            &a_name,
            &b_dir,
            &b_name,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| self.io("exchanging", a, e.into()))
    }

    /// Remove the file, symbolic link (the link, not its target) or special file `path`.
    pub fn remove_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.entry(path, "removed")?;
        rustix::fs::unlinkat(&dir, &name, AtFlags::empty())
            .map_err(|e| self.io("removing", path, e.into()))
    }

    /// Remove the empty directory `path`.
    pub fn remove_dir(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let (dir, name) = self.entry(path, "removed")?;
        rustix::fs::unlinkat(&dir, &name, AtFlags::REMOVEDIR)
            .map_err(|e| self.io("removing the folder", path, e.into()))
    }

    /// What is at `path`, without following a symbolic link there (`lstat`). `path` may be
    /// empty: the root itself.
    pub fn metadata(&self, path: impl AsRef<Path>) -> Result<Metadata> {
        let path = path.as_ref();
        let fd = match self.target(path)? {
            (dir, Some(name)) => self.open_path(&dir, &name, path)?,
            (dir, None) => dir,
        };
        File::from(fd)
            .metadata()
            .map_err(|e| self.io("reading the attributes of", path, e))
    }

    /// Like [`Root::metadata`], with `None` when `path` (or a folder on the way) does not exist.
    pub fn try_metadata(&self, path: impl AsRef<Path>) -> Result<Option<Metadata>> {
        match self.metadata(path) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() || is_errno(&e, Errno::NOTDIR) => Ok(None),
            Err(Error::WrongKind {
                expected: FileKind::Dir,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The target of the symbolic link `path`.
    pub fn read_link(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let path = path.as_ref();
        let (dir, name) = self.entry(path, "read")?;
        match rustix::fs::readlinkat(&dir, &name, Vec::new()) {
            Ok(target) => Ok(PathBuf::from(OsString::from_vec(target.into_bytes()))),
            Err(Errno::INVAL) => {
                let fd = self.open_path(&dir, &name, path)?;
                Err(Error::WrongKind {
                    root: self.path.clone(),
                    path: path.to_path_buf(),
                    found: self.kind_of(&fd, path)?,
                    expected: FileKind::Symlink,
                })
            }
            Err(e) => Err(self.io("reading the symbolic link", path, e.into())),
        }
    }

    /// The entries of the directory `path` (empty: the root), sorted by name. A symbolic link
    /// at `path` is refused, not followed.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> Result<Vec<DirEntry>> {
        let path = path.as_ref();
        let fd = self.open_dir_fd(path)?;
        let mut out = Vec::new();
        let reading = |e: Errno| self.io("listing", path, e.into());
        let mut dir =
            rustix::fs::Dir::new(fd.try_clone().map_err(|e| self.io("listing", path, e))?)
                .map_err(reading)?;
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(reading)?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = OsString::from_vec(name.to_vec());
            let mut kind = FileKind::from_raw(entry.file_type());
            if kind == FileKind::Unknown {
                // Some filesystems do not fill d_type.
                let stat =
                    rustix::fs::statat(&fd, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(reading)?;
                kind = FileKind::from_raw(rustix::fs::FileType::from_raw_mode(stat.st_mode));
            }
            out.push(DirEntry { name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Set the permission bits of `path` (`chmod` without following: a symbolic link there is
    /// left alone, as Linux gives links no mode of their own).
    pub fn set_permissions(&self, path: impl AsRef<Path>, mode: u32) -> Result<()> {
        let path = path.as_ref();
        let (fd, entry) = match self.target(path)? {
            (dir, Some(name)) => (self.open_path(&dir, &name, path)?, Some((dir, name))),
            (dir, None) => (dir, None),
        };
        let kind = self.kind_of(&fd, path)?;
        if kind == FileKind::Symlink {
            return Ok(());
        }
        let mode = Mode::from_raw_mode(mode);
        match rustix::fs::chmod(proc_fd_path(&fd), mode) {
            Ok(()) => Ok(()),
            // No /proc: open the file or folder itself (never a special file: opening one can
            // have effects) and check it is still the same inode.
            Err(Errno::NOENT) if matches!(kind, FileKind::File | FileKind::Dir) => {
                let file = match &entry {
                    Some((dir, name)) => self.reopen(&fd, dir, name, path, OFlags::RDONLY)?,
                    None => File::from(
                        rustix::fs::openat(
                            &fd,
                            ".",
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(|e| self.io("opening", path, e.into()))?,
                    ),
                };
                rustix::fs::fchmod(&file, mode)
                    .map_err(|e| self.io("changing the mode of", path, e.into()))
            }
            Err(e) => Err(self.io("changing the mode of", path, e.into())),
        }
    }

    /// Set the owner and/or group of `path` without following a symbolic link there (`lchown`).
    pub fn set_owner(
        &self,
        path: impl AsRef<Path>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<()> {
        let path = path.as_ref();
        let uid = uid.map(rustix::fs::Uid::from_raw);
        let gid = gid.map(rustix::fs::Gid::from_raw);
        let result = match self.target(path)? {
            (dir, Some(name)) => {
                rustix::fs::chownat(&dir, &name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            }
            (dir, None) => rustix::fs::chownat(&dir, "", uid, gid, AtFlags::EMPTY_PATH),
        };
        result.map_err(|e| self.io("changing the owner of", path, e.into()))
    }

    /// Set the access and/or modification time of `path` without following a symbolic link
    /// there (`None` leaves that time as it is).
    pub fn set_times(
        &self,
        path: impl AsRef<Path>,
        accessed: Option<SystemTime>,
        modified: Option<SystemTime>,
    ) -> Result<()> {
        let path = path.as_ref();
        let times = rustix::fs::Timestamps {
            last_access: timespec(accessed),
            last_modification: timespec(modified),
        };
        let result = match self.target(path)? {
            (dir, Some(name)) => {
                rustix::fs::utimensat(&dir, &name, &times, AtFlags::SYMLINK_NOFOLLOW)
            }
            (dir, None) => rustix::fs::utimensat(&dir, "", &times, AtFlags::EMPTY_PATH),
        };
        result.map_err(|e| self.io("setting the times of", path, e.into()))
    }

    // ------------------------------------------------------------------ internals

    /// An `O_PATH` descriptor on the entry `name` of `dir`, not following it.
    fn open_path(&self, dir: &OwnedFd, name: &OsStr, path: &Path) -> Result<OwnedFd> {
        rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.io("opening", path, e.into()))
    }

    fn kind_of(&self, fd: &OwnedFd, path: &Path) -> Result<FileKind> {
        let stat = rustix::fs::fstat(fd)
            .map_err(|e| self.io("reading the attributes of", path, e.into()))?;
        Ok(FileKind::from_raw(rustix::fs::FileType::from_raw_mode(
            stat.st_mode,
        )))
    }

    fn expect_kind(&self, fd: &OwnedFd, path: &Path, expected: FileKind) -> Result<()> {
        let found = self.kind_of(fd, path)?;
        if found == expected {
            Ok(())
        } else {
            Err(Error::WrongKind {
                root: self.path.clone(),
                path: path.to_path_buf(),
                found,
                expected,
            })
        }
    }

    /// A readable directory descriptor for `path` (the root when empty).
    fn open_dir_fd(&self, path: &Path) -> Result<OwnedFd> {
        let (dir, name) = match self.target(path)? {
            (dir, Some(name)) => (dir, name),
            (dir, None) => (dir, OsString::from(".")),
        };
        match rustix::fs::openat(
            &dir,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOTDIR | Errno::LOOP) => {
                let fd = self.open_path(&dir, &name, path)?;
                self.expect_kind(&fd, path, FileKind::Dir)?;
                Err(self.io("listing", path, Errno::NOTDIR.into()))
            }
            Err(e) => Err(self.io("listing", path, e.into())),
        }
    }

    /// Reopen an `O_PATH` descriptor with real access `flags`, through `/proc/self/fd` (the same
    /// inode, whatever happened to the name since). Without `/proc`, the name is opened again
    /// with `O_NOFOLLOW` and must still be the same inode.
    fn reopen(
        &self,
        opath: &OwnedFd,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        flags: OFlags,
    ) -> Result<File> {
        let flags = flags | OFlags::CLOEXEC | OFlags::NOCTTY;
        match rustix::fs::open(proc_fd_path(opath), flags, Mode::empty()) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::NOENT) => {
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    flags | OFlags::NOFOLLOW | OFlags::NONBLOCK,
                    Mode::empty(),
                )
                .map_err(|e| self.io("opening", path, e.into()))?;
                let (a, b) = (
                    rustix::fs::fstat(opath).map_err(|e| self.io("opening", path, e.into()))?,
                    rustix::fs::fstat(&fd).map_err(|e| self.io("opening", path, e.into()))?,
                );
                if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
                    return Err(self.io(
                        "opening",
                        path,
                        std::io::Error::other("the entry was replaced while it was being opened"),
                    ));
                }
                rustix::fs::fcntl_setfl(&fd, flags & !OFlags::NONBLOCK & !OFlags::CLOEXEC)
                    .map_err(|e| self.io("opening", path, e.into()))?;
                Ok(File::from(fd))
            }
            Err(e) => Err(self.io("opening", path, e.into())),
        }
    }

    /// Write a new file at a temporary name in `dir` with `fill`, give it `mode`, and rename it
    /// over `name`. Returns what `fill` returned (bytes written).
    pub(crate) fn write_replacing(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        mode: u32,
        fill: impl FnOnce(&mut File) -> std::io::Result<u64>,
    ) -> Result<u64> {
        let temp = temp_name();
        let mut file = File::from(
            rustix::fs::openat(
                dir,
                &temp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| self.io("creating a temporary file for", path, e.into()))?,
        );
        let written = fill(&mut file)
            .map_err(|e| self.io("writing", path, e))
            .and_then(|n| {
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                    .map_err(|e| self.io("changing the mode of", path, e.into()))?;
                Ok(n)
            })
            .and_then(|n| {
                rustix::fs::renameat(dir, &temp, dir, name)
                    .map_err(|e| self.io("replacing", path, e.into()))?;
                Ok(n)
            });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
        }
        written
    }
}

fn comp_str(c: &resolve::Comp) -> &OsStr {
    match c {
        resolve::Comp::Name(n) => n,
        resolve::Comp::Parent => OsStr::new(".."),
        resolve::Comp::Root => OsStr::new("/"),
    }
}

fn is_errno(e: &Error, errno: Errno) -> bool {
    e.io_error()
        .and_then(std::io::Error::raw_os_error)
        .is_some_and(|code| code == errno.raw_os_error())
}

/// `/proc/self/fd/N`: opening it reaches the very inode `fd` holds.
fn proc_fd_path(fd: &impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// A name no one else picks: `.wharf-fs-<pid>-<counter>.tmp`.
pub(crate) fn temp_name() -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    OsString::from(format!(".wharf-fs-{}-{n}.tmp", std::process::id()))
}

fn timespec(t: Option<SystemTime>) -> rustix::fs::Timespec {
    match t {
        None => rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(t) => {
            let (secs, nanos) = match t.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
                Err(e) => {
                    let d = e.duration();
                    if d.subsec_nanos() == 0 {
                        (-(d.as_secs() as i64), 0)
                    } else {
                        (
                            -(d.as_secs() as i64) - 1,
                            1_000_000_000 - i64::from(d.subsec_nanos()),
                        )
                    }
                }
            };
            rustix::fs::Timespec {
                tv_sec: secs,
                tv_nsec: nanos as _,
            }
        }
    }
}

/// The directory's descriptor (`O_PATH`), e.g. to mount onto `/proc/self/fd/N`: a mount there
/// lands on exactly the directory this root resolved, never on where a path would lead later.
impl AsFd for Root {
    fn as_fd(&self) -> rustix::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
