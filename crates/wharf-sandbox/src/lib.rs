//! wharf-sandbox: run one command in Linux namespaces on an overlayfs of image layers, with no
//! daemon and no `unsafe`.
//!
//! How (see ARCHITECTURE.md for the invariants):
//! - The caller ([`spawn`]) starts an init executable (wharf itself, `wharf __sandbox-init`) with
//!   the [`Spec`] as JSON on its stdin. That process is single-threaded, so it may enter a new
//!   user namespace; it then unshares the mount, pid, uts and ipc (and net) namespaces and starts
//!   itself again (`__sandbox-pid1`), which becomes PID 1 of the new pid namespace.
//! - PID 1 builds the root: overlayfs (or a bind of a plain folder), `/proc`, a minimal `/dev`,
//!   the binds the executor asks for — every mount target resolved inside the new root with
//!   `openat2(RESOLVE_IN_ROOT)` (wharf-fs) and mounted through `/proc/self/fd/N`, so a symbolic
//!   link in an image cannot redirect a mount onto the host — then `pivot_root`s into it, starts
//!   the command and reaps every process until the command ends.
//! - When PID 1 exits, the kernel kills everything left in the pid namespace; the mount namespace
//!   and its mounts go with its last process. Each stage dies with its parent
//!   (`PR_SET_PDEATHSIG`), so killing the first stage (timeout, cancel, or `kill -9` of wharf
//!   itself) takes the whole tree down.

pub mod cgroup;
mod init;
pub mod probe;

pub use init::{INIT_ARG, NOOP_ARG, PID1_ARG, dispatch};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

/// Exit code of the init stages when the sandbox itself could not be set up (the command never
/// ran); the reason is on stderr, prefixed with [`SETUP_ERROR_PREFIX`].
pub const SETUP_FAILED: i32 = 125;
/// Prefix of the stderr line that says why the sandbox could not be set up.
pub const SETUP_ERROR_PREFIX: &str = "wharf sandbox: ";

/// What to run, and in what.
#[derive(Clone, Serialize, Deserialize)]
pub struct Spec {
    pub root: RootFs,
    /// Host paths mounted into the root, in order (a later one may land inside an earlier one).
    pub binds: Vec<Bind>,
    /// The command: `argv[0]` is looked up in the sandbox's `PATH` (from `env`).
    pub argv: Vec<String>,
    /// The whole environment of the command.
    pub env: Vec<(String, String)>,
    /// Working folder inside the root (created if missing).
    pub cwd: String,
    /// `uid:gid` the command runs as inside the sandbox (the caller resolves an image's `User`
    /// names); `None`: root.
    pub user: Option<(u32, u32)>,
    pub hostname: String,
    pub ids: IdMapping,
    pub network: Network,
    /// Cgroup folders (made and limited by the caller: [`cgroup::JobCgroup`]) [`spawn`] moves
    /// the first stage into before it hands it this spec, so every process of the command is
    /// under their limits. Empty: no limits. Not passed to the init stages.
    #[serde(skip)]
    pub cgroups: Vec<PathBuf>,
}

/// Secrets live in `env`: only its names are shown.
impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("root", &self.root)
            .field("binds", &self.binds)
            .field("argv", &self.argv)
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .field("cwd", &self.cwd)
            .field("user", &self.user)
            .field("hostname", &self.hostname)
            .field("ids", &self.ids)
            .field("network", &self.network)
            .field("cgroups", &self.cgroups)
            .finish()
    }
}

/// The root file system.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RootFs {
    /// overlayfs: `lower` folders top first (the image's layers), the job's writes go to `upper`.
    /// `work` must be an empty folder on the same file system as `upper`; `merged` is where the
    /// overlay is mounted (inside the sandbox's private mount namespace only).
    Overlay {
        lower: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        merged: PathBuf,
        /// Extra mount options (e.g. `userxattr` for layers whose whiteouts are `user.*`
        /// xattrs, as in a user namespace).
        options: Vec<String>,
    },
    /// A plain folder used as the root, writable (no overlay).
    Folder(PathBuf),
}

/// A host path mounted at `target` inside the root.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the root; created (folder or empty file, like `source`) if missing.
    pub target: String,
    pub read_only: bool,
}

/// How ids inside the sandbox map to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdMapping {
    /// No user namespace: ids are the host's (wharf runs as root).
    Host,
    /// A user namespace where root is the calling user and no other id exists: files the image
    /// owns by other users show as `nobody`, and the command runs as root inside.
    SingleId { uid: u32, gid: u32 },
    /// A user namespace where root is the calling user and ids 1..=count are the user's
    /// subordinate range (`/etc/subuid`, `/etc/subgid`), mapped by the setuid `newuidmap` and
    /// `newgidmap`: the command may run as an image's non-root user.
    Subordinate {
        uid: u32,
        gid: u32,
        /// First host id of the ranges, and how many ids each has.
        uid_start: u32,
        gid_start: u32,
        count: u32,
    },
}

impl IdMapping {
    /// Whether the sandbox has a user namespace.
    pub fn in_user_namespace(self) -> bool {
        self != IdMapping::Host
    }

    /// Whether `uid:gid` exists inside the sandbox.
    pub fn maps(self, uid: u32, gid: u32) -> bool {
        match self {
            IdMapping::Host => true,
            IdMapping::SingleId { .. } => (uid, gid) == (0, 0),
            IdMapping::Subordinate { count, .. } => uid <= count && gid <= count,
        }
    }
}

/// The network the command sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// The host's network (the job reaches what the host reaches).
    Host,
    /// A network namespace of its own with only loopback, up.
    Loopback,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start the sandbox init `{}`: {source}", exe.display())]
    Start {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot hand the sandbox its specification: {0}")]
    Handoff(std::io::Error),
    #[error("cannot put the sandbox in its cgroup: {0}")]
    Cgroup(#[from] cgroup::CgroupError),
}

/// Start `spec` through the init executable `init_exe` (run as `init_exe __sandbox-init`).
/// The child's stdout and stderr are piped (the command's output, plus setup errors prefixed
/// with [`SETUP_ERROR_PREFIX`] and exit code [`SETUP_FAILED`]); killing the child kills
/// everything in the sandbox, and so does dropping it.
pub async fn spawn(spec: &Spec, init_exe: &Path) -> Result<tokio::process::Child, SandboxError> {
    let mut child = tokio::process::Command::new(init_exe)
        .arg(INIT_ARG)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SandboxError::Start {
            exe: init_exe.to_path_buf(),
            source,
        })?;
    if let Some(pid) = child.id().filter(|_| !spec.cgroups.is_empty()) {
        // The init waits for its spec before it starts anything. Moving a process costs the
        // kernel an RCU grace period (15 ms measured here, cgroup v1), paid while the init
        // executable is still loading instead of after.
        let dirs = spec.cgroups.clone();
        tokio::task::spawn_blocking(move || cgroup::move_into(&dirs, pid))
            .await
            .map_err(|e| SandboxError::Handoff(std::io::Error::other(e)))??;
    }
    let json = serde_json::to_vec(spec).map_err(|e| SandboxError::Handoff(e.into()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&json)
            .await
            .map_err(SandboxError::Handoff)?;
        // Dropping stdin closes it: the init reads to the end.
    }
    Ok(child)
}
