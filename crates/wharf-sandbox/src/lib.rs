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
//! - What stays on disk (each script's overlay upper, work and mount point folders) lives in a
//!   state folder locked for the life of its owner ([`state`]): the next wharf removes the
//!   folders of a killed one, from inside a user namespace when a job's files belong to
//!   subordinate ids.

pub mod cgroup;
mod init;
pub mod probe;
pub mod state;

pub use init::{INIT_ARG, NET_ARG, NOOP_ARG, PID1_ARG, REMOVE_ARG, dispatch};

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
    /// The network namespace of a [`NetworkHolder`] (process id `holder`), shared with other
    /// sandboxes: a job and its services. With a user namespace, the holder's is joined too (it
    /// has the same mapping), as joining its network needs privileges in that namespace.
    Join { holder: u32 },
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
    #[error("the network for the services could not be set up: {0}")]
    Network(String),
    #[error("cannot put the sandbox in its cgroup: {0}")]
    Cgroup(#[from] cgroup::CgroupError),
}

/// The line the network holder prints once its namespaces exist.
pub(crate) const HOLDER_READY: &str = "ready";

/// A process holding a network namespace (loopback only) and, with a user namespace mapping,
/// its user namespace, for sandboxes started with [`Network::Join`]. The namespaces live as long
/// as this value (dropping it kills the holder; a killed wharf takes it down too).
pub struct NetworkHolder {
    child: tokio::process::Child,
    pid: u32,
}

impl NetworkHolder {
    /// Start the holder through `init_exe` (`init_exe __sandbox-net`) with the mapping `ids`,
    /// and wait until its namespaces exist.
    pub async fn start(ids: IdMapping, init_exe: &Path) -> Result<Self, SandboxError> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let mut child = start_stage(init_exe, NET_ARG)?;
        let pid = child.id().unwrap_or(0);
        let mut line = serde_json::to_string(&ids).map_err(|e| SandboxError::Handoff(e.into()))?;
        line.push('\n');
        let Some(stdin) = child.stdin.as_mut() else {
            return Err(SandboxError::Network("no stdin to the holder".into()));
        };
        stdin
            .write_all(line.as_bytes())
            .await
            .map_err(SandboxError::Handoff)?;
        let mut said = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = tokio::io::BufReader::new(stdout).read_line(&mut said).await;
        }
        if said.trim_end() != HOLDER_READY {
            let mut why = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut why).await;
            }
            let _ = child.kill().await;
            let why = why.trim();
            let why = why.strip_prefix(SETUP_ERROR_PREFIX).unwrap_or(why);
            return Err(SandboxError::Network(if why.is_empty() {
                "the holder ended before its namespaces existed".into()
            } else {
                why.to_string()
            }));
        }
        Ok(Self { child, pid })
    }

    /// What sandboxes that share this network are started with.
    pub fn network(&self) -> Network {
        Network::Join { holder: self.pid }
    }

    /// TCP ports something listens on in this network (IPv4 and IPv6), from the holder's
    /// `/proc/<pid>/net/tcp{,6}`; `None` when the holder is gone.
    pub fn listening_ports(&self) -> Option<Vec<u16>> {
        listening_ports_of(&format!("/proc/{}", self.pid))
    }

    /// End the holder (its namespaces go when the last sandbox in them ends).
    pub async fn stop(mut self) {
        // Closing stdin ends it; kill in case it is stuck.
        drop(self.child.stdin.take());
        let _ = self.child.kill().await;
    }
}

/// TCP ports something listens on in the network of the process whose `/proc` folder is
/// `proc_dir` (`/proc/self`: this process's network); `None` when it cannot be read.
pub fn listening_ports_of(proc_dir: &str) -> Option<Vec<u16>> {
    let mut ports = Vec::new();
    let mut read_any = false;
    for table in ["tcp", "tcp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("{proc_dir}/net/{table}")) {
            read_any = true;
            ports.extend(listening_ports(&text));
        }
    }
    ports.sort_unstable();
    ports.dedup();
    read_any.then_some(ports)
}

/// Ports in state LISTEN in a `/proc/<pid>/net/tcp` or `tcp6` table.
pub fn listening_ports(table: &str) -> Vec<u16> {
    const LISTEN: &str = "0A";
    let mut ports: Vec<u16> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != LISTEN {
                return None;
            }
            let (_, port) = local.rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// `init_exe stage` with a clean environment and piped stdio; killed when dropped.
fn start_stage(init_exe: &Path, stage: &str) -> Result<tokio::process::Child, SandboxError> {
    tokio::process::Command::new(init_exe)
        .arg(stage)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| SandboxError::Start {
            exe: init_exe.to_path_buf(),
            source,
        })
}

/// Start `spec` through the init executable `init_exe` (run as `init_exe __sandbox-init`).
/// The child's stdout and stderr are piped (the command's output, plus setup errors prefixed
/// with [`SETUP_ERROR_PREFIX`] and exit code [`SETUP_FAILED`]); killing the child kills
/// everything in the sandbox, and so does dropping it.
pub async fn spawn(spec: &Spec, init_exe: &Path) -> Result<tokio::process::Child, SandboxError> {
    let mut child = start_stage(init_exe, INIT_ARG)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_ports_from_proc_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n";
        assert_eq!(listening_ports(tcp), [5432]);
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 131265 1 00000000caff96cc 100 0 0 10 0\n";
        assert_eq!(listening_ports(tcp6), [8080]);
        assert!(listening_ports("header only\n").is_empty());
    }
}
