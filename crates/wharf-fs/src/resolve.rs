//! Path resolution under a root directory fd: `openat2` with `RESOLVE_*` flags where the kernel
//! has it (Linux 5.6+), else a checked walk, one component at a time with `O_NOFOLLOW`, that
//! reads symbolic links itself and keeps its own stack of directories for `..` (it never asks
//! the filesystem for `..`, so a directory moved mid-walk cannot lead it out).
//!
//! Only the directories *leading to* an entry are resolved here; the entry itself (the last
//! component) is always acted on with `*at` calls that do not follow it.

use crate::error::{Error, FileKind, Result};
use crate::{Resolve, Root};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// Linux's own limit on symbolic links followed in one resolution (`MAXSYMLINKS`).
const MAX_SYMLINKS: u32 = 40;
/// `openat2` answers EAGAIN when a rename or mount raced with a `..`; it is safe to retry.
const EAGAIN_RETRIES: u32 = 64;

/// One step of a relative path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Comp {
    /// `/` at the start of a symbolic link's target (back to the root, in `InRoot` mode).
    Root,
    Parent,
    Name(OsString),
}

/// Whether `openat2` works here (kernel 5.6+, not blocked by a seccomp filter). The environment
/// variable `WHARF_FS_RESOLVER=walk` forces the checked walk (to test it, or to work around a
/// kernel that misbehaves).
pub(crate) fn openat2_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var_os("WHARF_FS_RESOLVER").is_some_and(|v| v == "walk") {
            return false;
        }
        rustix::fs::openat2(
            rustix::fs::CWD,
            ".",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH,
        )
        .is_ok()
    })
}

impl Root {
    /// `path` as components. An absolute path is an error, except in `InRoot` mode where it
    /// starts at the root (as inside a container image).
    pub(crate) fn components(&self, path: &Path) -> Result<Vec<Comp>> {
        let mut out = Vec::new();
        for c in path.components() {
            match c {
                Component::RootDir | Component::Prefix(_) => {
                    if self.resolve != Resolve::InRoot {
                        return Err(Error::Absolute {
                            root: self.path.clone(),
                            path: path.to_path_buf(),
                        });
                    }
                }
                Component::CurDir => {}
                Component::ParentDir => out.push(Comp::Parent),
                Component::Normal(n) => out.push(Comp::Name(n.to_os_string())),
            }
        }
        Ok(out)
    }

    /// Resolve `comps` to a directory, following symbolic links as the root's mode allows.
    /// `path` is the caller's path, for messages.
    pub(crate) fn resolve_dir(&self, comps: &[Comp], path: &Path) -> Result<OwnedFd> {
        if comps.is_empty() {
            return self.fd.try_clone().map_err(|e| self.io("opening", path, e));
        }
        if self.walk_only {
            return self.checked_walk(comps, path);
        }
        let mut joined = PathBuf::new();
        for c in comps {
            match c {
                Comp::Parent => joined.push(".."),
                Comp::Name(n) => joined.push(n),
                Comp::Root => {}
            }
        }
        let flags = match self.resolve {
            Resolve::Beneath => ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
            Resolve::InRoot => ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            Resolve::NoSymlinks => {
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
            }
        };
        let mut tries = 0;
        loop {
            let opened = rustix::fs::openat2(
                &self.fd,
                &joined,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                flags,
            );
            match opened {
                Ok(fd) => return Ok(fd),
                Err(Errno::AGAIN) if tries < EAGAIN_RETRIES => tries += 1,
                // Refused: walk the path ourselves to say which link leads out (the walk
                // refuses too, with the link in the message).
                Err(Errno::XDEV) => {
                    return Err(match self.checked_walk(comps, path) {
                        Err(e) => e,
                        Ok(_) => Error::Escapes {
                            root: self.path.clone(),
                            path: path.to_path_buf(),
                            via: None,
                        },
                    });
                }
                Err(Errno::LOOP) if self.resolve == Resolve::NoSymlinks => {
                    return Err(match self.checked_walk(comps, path) {
                        Err(e) => e,
                        Ok(_) => self.io("resolving", path, Errno::LOOP.into()),
                    });
                }
                Err(e) => return Err(self.io("resolving", path, e.into())),
            }
        }
    }

    /// The checked walk (see the module docs).
    fn checked_walk(&self, comps: &[Comp], path: &Path) -> Result<OwnedFd> {
        // Each queued component remembers the symbolic link it came from (an index into
        // `links`), so an escape can name the link.
        let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut queue: VecDeque<(Comp, Option<usize>)> =
            comps.iter().map(|c| (c.clone(), None)).collect();
        // The directories below the root we are in, with their names (for messages).
        let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
        let escapes = |via: Option<usize>, links: &[(PathBuf, PathBuf)]| Error::Escapes {
            root: self.path.clone(),
            path: path.to_path_buf(),
            via: via.and_then(|i| links.get(i).cloned()),
        };
        while let Some((comp, via)) = queue.pop_front() {
            match comp {
                Comp::Root => stack.clear(),
                Comp::Parent => {
                    if stack.pop().is_none() && self.resolve != Resolve::InRoot {
                        return Err(escapes(via, &links));
                    }
                }
                Comp::Name(name) => {
                    let here = stack.last().map_or(self.fd.as_fd(), |(fd, _)| fd.as_fd());
                    let fd = rustix::fs::openat(
                        here,
                        &name,
                        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.io("resolving", path, e.into()))?;
                    let stat =
                        rustix::fs::fstat(&fd).map_err(|e| self.io("resolving", path, e.into()))?;
                    let lexical = || -> PathBuf {
                        let mut p: PathBuf = stack.iter().map(|(_, n)| n.as_os_str()).collect();
                        p.push(&name);
                        p
                    };
                    match FileKind::from_raw(rustix::fs::FileType::from_raw_mode(stat.st_mode)) {
                        FileKind::Dir => stack.push((fd, name)),
                        FileKind::Symlink => {
                            if self.resolve == Resolve::NoSymlinks {
                                return Err(Error::Symlink {
                                    root: self.path.clone(),
                                    path: path.to_path_buf(),
                                    link: lexical(),
                                });
                            }
                            if links.len() as u32 >= MAX_SYMLINKS {
                                return Err(self.io("resolving", path, Errno::LOOP.into()));
                            }
                            let target = rustix::fs::readlinkat(&fd, "", Vec::new())
                                .map_err(|e| self.io("reading the link in", path, e.into()))?;
                            let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                            links.push((lexical(), target.clone()));
                            let index = Some(links.len() - 1);
                            let mut expanded = Vec::new();
                            for c in target.components() {
                                match c {
                                    Component::RootDir | Component::Prefix(_) => {
                                        if self.resolve != Resolve::InRoot {
                                            return Err(escapes(index, &links));
                                        }
                                        expanded.push(Comp::Root);
                                    }
                                    Component::CurDir => {}
                                    Component::ParentDir => expanded.push(Comp::Parent),
                                    Component::Normal(n) => {
                                        expanded.push(Comp::Name(n.to_os_string()))
                                    }
                                }
                            }
                            for c in expanded.into_iter().rev() {
                                queue.push_front((c, index));
                            }
                        }
                        found => {
                            return Err(Error::WrongKind {
                                root: self.path.clone(),
                                path: lexical(),
                                found,
                                expected: FileKind::Dir,
                            });
                        }
                    }
                }
            }
        }
        match stack.pop() {
            Some((fd, _)) => Ok(fd),
            None => self.fd.try_clone().map_err(|e| self.io("opening", path, e)),
        }
    }

    /// The directory holding `path`'s last component, and that component; `None` for the
    /// name when the path designates a directory without naming an entry in it (``, `.`,
    /// `a/..`, or `/` in `InRoot` mode).
    pub(crate) fn target(&self, path: &Path) -> Result<(OwnedFd, Option<OsString>)> {
        let mut comps = self.components(path)?;
        match comps.last() {
            Some(Comp::Name(_)) => {
                let Some(Comp::Name(name)) = comps.pop() else {
                    unreachable!("checked just above")
                };
                Ok((self.resolve_dir(&comps, path)?, Some(name)))
            }
            _ => Ok((self.resolve_dir(&comps, path)?, None)),
        }
    }

    /// Like [`Root::target`] for operations that need an entry name.
    pub(crate) fn entry(&self, path: &Path, action: &'static str) -> Result<(OwnedFd, OsString)> {
        match self.target(path)? {
            (dir, Some(name)) => Ok((dir, name)),
            (_, None) => Err(Error::NoName {
                root: self.path.clone(),
                path: path.to_path_buf(),
                action,
            }),
        }
    }

    pub(crate) fn io(&self, action: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            root: self.path.clone(),
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}
