//! Errors: each names the root folder and the path relative to it, and says why.

use std::io;
use std::path::PathBuf;

/// What kind of filesystem object an entry is (never following a symbolic link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl FileKind {
    pub(crate) fn from_raw(t: rustix::fs::FileType) -> Self {
        use rustix::fs::FileType as T;
        match t {
            T::RegularFile => Self::File,
            T::Directory => Self::Dir,
            T::Symlink => Self::Symlink,
            T::Fifo => Self::Fifo,
            T::Socket => Self::Socket,
            T::CharacterDevice => Self::CharDevice,
            T::BlockDevice => Self::BlockDevice,
            _ => Self::Unknown,
        }
    }

    /// Words for messages: "a symbolic link", "a FIFO"...
    pub fn describe(self) -> &'static str {
        match self {
            Self::File => "a regular file",
            Self::Dir => "a directory",
            Self::Symlink => "a symbolic link",
            Self::Fifo => "a FIFO (named pipe)",
            Self::Socket => "a socket",
            Self::CharDevice => "a character device",
            Self::BlockDevice => "a block device",
            Self::Unknown => "a file of unknown type",
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// A confined operation that failed or was refused. `root` is the folder the [`crate::Root`]
/// holds (as it was named when opened), `path` the path relative to it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path leads outside the root: `..` above it, or a symbolic link pointing out.
    #[error("`{}` in {} leads outside that folder{}: refused", path.display(), root.display(), via_text(via))]
    Escapes {
        root: PathBuf,
        path: PathBuf,
        /// The symbolic link (relative to the root) and its target, when one led out.
        via: Option<(PathBuf, PathBuf)>,
    },
    /// An absolute path where only paths relative to the root are allowed.
    #[error("`{}` in {} is an absolute path: only paths relative to that folder are allowed", path.display(), root.display())]
    Absolute { root: PathBuf, path: PathBuf },
    /// A symbolic link in the middle of a path, in a tree opened with [`crate::Resolve::NoSymlinks`].
    #[error("`{}` in {} goes through the symbolic link `{}`, which is not allowed in that folder", path.display(), root.display(), link.display())]
    Symlink {
        root: PathBuf,
        path: PathBuf,
        link: PathBuf,
    },
    /// The entry exists but is of the wrong kind for the operation (a symbolic link, a FIFO or
    /// a device where a regular file is needed; a file where a directory is needed).
    #[error("`{}` in {} is {found}, not {}", path.display(), root.display(), expected.describe())]
    WrongKind {
        root: PathBuf,
        path: PathBuf,
        found: FileKind,
        expected: FileKind,
    },
    /// The path names no entry (empty, `.`, or ending in `..`) where the operation needs one.
    #[error("`{}` in {} names no entry that can be {action}", path.display(), root.display())]
    NoName {
        root: PathBuf,
        path: PathBuf,
        action: &'static str,
    },
    /// A system call failed.
    #[error("{action} `{}` in {}: {source}", path.display(), root.display())]
    Io {
        root: PathBuf,
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
}

fn via_text(via: &Option<(PathBuf, PathBuf)>) -> String {
    match via {
        Some((link, target)) => format!(
            " through the symbolic link `{}` -> `{}`",
            link.display(),
            target.display()
        ),
        None => String::new(),
    }
}

impl Error {
    /// The root folder the failing operation was confined to.
    pub fn root(&self) -> &std::path::Path {
        match self {
            Self::Escapes { root, .. }
            | Self::Absolute { root, .. }
            | Self::Symlink { root, .. }
            | Self::WrongKind { root, .. }
            | Self::NoName { root, .. }
            | Self::Io { root, .. } => root,
        }
    }

    /// The path (relative to [`Error::root`]) the operation was given.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Escapes { path, .. }
            | Self::Absolute { path, .. }
            | Self::Symlink { path, .. }
            | Self::WrongKind { path, .. }
            | Self::NoName { path, .. }
            | Self::Io { path, .. } => path,
        }
    }

    /// The entry (or a folder on the way to it) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The operation was refused because the path would leave the tree or go through a
    /// symbolic link the resolution mode forbids (as opposed to an ordinary IO failure).
    pub fn is_confinement(&self) -> bool {
        matches!(
            self,
            Self::Escapes { .. } | Self::Absolute { .. } | Self::Symlink { .. }
        )
    }

    /// The underlying OS error, for [`Error::Io`].
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
