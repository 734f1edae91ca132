//! The public options of a pipeline run (what the command line decides) and its error type,
//! apart from the job flow that reads them.

use crate::log::Console;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wharf_ci::{FileVariable, PullPolicy};

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
    /// GitLab's `token_mask_prefixes` (`glpat-`...): tokens after them are masked in job logs
    /// (`wharf runner` takes them from the job; empty for `wharf run`).
    pub token_mask_prefixes: Vec<String>,
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
