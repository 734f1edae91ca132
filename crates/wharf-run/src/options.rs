//! The public options of a pipeline run (what the command line decides) and its error type,
//! apart from the job flow that reads them.

use crate::log::Console;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wharf_ci::{FileVariable, PullPolicy};
/// Every job's memory and pids limits (`wharf run --memory/--pids-limit`, GitLab runner's
/// `[runners.docker] memory` and `pids_limit`): the Docker executor gives them to dockerd, the
/// sandbox applies them through cgroups, the shell executor cannot (it says so).
pub use wharf_sandbox::cgroup::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorChoice {
    /// Jobs with `image:` use Docker when a daemon answers, else the sandbox when this machine
    /// can run it, else the shell (with a warning saying why); jobs without `image:` the shell.
    Auto,
    Docker,
    /// wharf's own daemonless executor (namespaces + overlayfs, images from wharf's store).
    Sandbox,
    Shell,
}

/// What wharf takes from its own environment (the runner level).
#[derive(Clone, Default)]
pub struct RunnerEnv {
    pub docker_auth_config: Option<String>,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub path: Option<OsString>,
    pub docker_host: Option<String>,
    /// `$WHARF_HOME`: the image store of the sandbox executor (default
    /// `$XDG_DATA_HOME/wharf`).
    pub wharf_home: Option<PathBuf>,
    /// The registry credentials GitLab sent with the job (`wharf runner`), the last credential
    /// source; `None` for `wharf run`.
    pub job_credentials: Option<Vec<wharf_oci::RegistryCredential>>,
}

impl std::fmt::Debug for RunnerEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerEnv")
            .field(
                "docker_auth_config",
                &self.docker_auth_config.as_ref().map(|_| "<redacted>"),
            )
            .field("docker_config", &self.docker_config)
            .field("home", &self.home)
            .field("docker_host", &self.docker_host)
            .field("job_credentials", &self.job_credentials)
            .finish()
    }
}

#[derive(Clone)]
pub struct RunOptions {
    /// Absolute path of the project folder.
    pub project_dir: PathBuf,
    /// Which jobs to run (names, `--stage`, `--needs`, `--manual`).
    pub selection: crate::plan::Selection,
    /// How many jobs may run at once (`--concurrency`, default: the number of cores).
    pub concurrency: usize,
    /// `--json`: newline-delimited JSON events go here (the human output goes to `console`).
    pub events: Option<Arc<Console>>,
    /// Reads pipeline files (the child pipelines of `trigger:`), as the main file was read.
    pub loader: Option<Arc<dyn wharf_ci::Loader + Send + Sync>>,
    /// Bounds on child pipelines' configuration, as on the main file's.
    pub load_limits: wharf_ci::Limits,
    /// Bounds on what a job's `artifacts: reports: dotenv` may pass on.
    pub dotenv_limits: DotenvLimits,
    pub cli_variables: Vec<(String, String)>,
    pub file_variables: Vec<FileVariable>,
    pub executor: ExecutorChoice,
    /// `--pull-policy`: replaces the pipeline's `image:pull_policy`.
    pub pull_policy: Option<PullPolicy>,
    pub env: RunnerEnv,
    pub console: Arc<Console>,
    /// Becomes `true` on Ctrl-C.
    pub cancel: watch::Receiver<bool>,
    /// Waits between pull attempts after network errors (GitLab: jittered 2-10 s).
    pub pull_retry_delays: Vec<Duration>,
    /// Memory and pids limits of every job.
    pub limits: Limits,
    /// More binds of every job container of the Docker executor (`[runners.docker] volumes`
    /// of `wharf runner`): `HOST:CONTAINER[:MODE]` or `VOLUME:CONTAINER[:MODE]`, as Docker
    /// reads them. Empty for `wharf run`.
    pub volumes: Vec<String>,
    /// The network of sandbox jobs that have services.
    pub sandbox_network: SandboxNetwork,
    /// GitLab's `token_mask_prefixes` (`glpat-`...): tokens after them are masked in job logs
    /// (`wharf runner` takes them from the job; empty for `wharf run`).
    pub token_mask_prefixes: Vec<String>,
    /// Where dependencies' artifacts come from and the job's own go besides `.wharf/artifacts/`
    /// (`wharf runner`: GitLab); `None` for `wharf run`.
    pub artifact_transfer: Option<Arc<dyn crate::transfer::ArtifactTransfer>>,
    /// Where caches are shared with other machines besides `.wharf/cache/` (`wharf runner`'s
    /// `[runners.cache]`); `None` for `wharf run`.
    pub cache_transfer: Option<Arc<dyn crate::cache::CacheTransfer>>,
}

/// Runs `work` to its end, or stops it (`None`) once `cancel` ([`RunOptions::cancel`]) turns
/// true. A sender that goes away never cancels: `work` then runs to its end.
pub async fn unless_canceled<T>(
    cancel: &watch::Receiver<bool>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let mut cancel = cancel.clone();
    // The cancel first: `select!` polls its branches in a random order, and a first poll of
    // `work` may start what outlives it (a cache pack on a blocking thread, taking the key's
    // lock) for a job that was already canceled.
    tokio::select! {
        biased;
        Ok(_) = cancel.wait_for(|canceled| *canceled) => None,
        done = work => Some(done),
    }
}

/// The network a sandbox job with `services:` and its services share (jobs without services
/// always use the host's network).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SandboxNetwork {
    /// A network namespace of the job's own with only loopback: services are isolated from the
    /// host and from other jobs, and the job does not reach the host's network.
    #[default]
    Isolated,
    /// The host's network: the job reaches what the host reaches, and its services listen on
    /// the host's loopback (two jobs, or a job and the host, may collide on a port).
    Host,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    #[error(transparent)]
    Files(#[from] crate::files::FilesError),
}

/// Limits on `artifacts: reports: dotenv`: GitLab's plan limits `dotenv_size` and
/// `dotenv_variables`. By default GitLab's: the files of one job together hold less than 5 KiB
/// and at most 20 variables (`wharf run --max-dotenv-size/--max-dotenv-variables` change them,
/// as a GitLab admin changes the plan limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DotenvLimits {
    pub max_bytes: u64,
    pub max_variables: usize,
}

impl Default for DotenvLimits {
    fn default() -> Self {
        Self {
            max_bytes: 5 * 1024,
            max_variables: 20,
        }
    }
}

/// A memory size as Docker and GitLab's runner read `memory`: bytes, or a number (decimals
/// allowed) with `b`, `k`, `m`, `g`, `t` or `p` in any case, optionally followed by `i` and/or
/// `b` (`512m`, `1g`, `1.5GiB`, `300MB`), every unit a power of 1024.
pub fn parse_memory_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let number_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => {
            return Err(format!(
                "`{text}` is not a memory size: use bytes or a number with k, m, g or t (e.g. 512m, 1g)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a memory size: it needs a number (e.g. 512m, 1g)"))?;
    let bytes = (value * (1u64 << shift) as f64).floor();
    if !(1.0..1.8e19).contains(&bytes) {
        return Err(format!("`{text}` is not a memory size a job can have"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_read_as_docker_reads_them() {
        for (text, bytes) in [
            ("1024", 1024),
            ("512m", 512 << 20),
            ("512M", 512 << 20),
            ("1g", 1 << 30),
            ("1GiB", 1 << 30),
            ("300MB", 300 << 20),
            ("1.5g", 3 << 29),
            ("64 k", 64 << 10),
            ("10b", 10),
        ] {
            assert_eq!(parse_memory_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "m", "12x", "1..2g", "0", "-1g", "99999999999p"] {
            assert!(parse_memory_size(bad).is_err(), "{bad}");
        }
    }

    /// Regression: `select!` polled the work first half of the time, so a job canceled before
    /// its cache upload still started packing it (and took the key's lock) on a blocking thread.
    #[tokio::test]
    async fn canceled_work_is_never_started() {
        let (_tx, cancel) = watch::channel(true);
        for _ in 0..64 {
            let started = std::sync::atomic::AtomicBool::new(false);
            let work = async {
                started.store(true, std::sync::atomic::Ordering::SeqCst);
            };
            assert_eq!(unless_canceled(&cancel, work).await, None);
            assert!(!started.load(std::sync::atomic::Ordering::SeqCst));
        }
        let (_tx, running) = watch::channel(false);
        assert_eq!(unless_canceled(&running, async { 7 }).await, Some(7));
    }
}
