//! Artifacts that come from, and go to, somewhere other than `.wharf/artifacts/` (the folders
//! `wharf run` passes them through): `wharf runner` takes its dependencies' artifacts from
//! GitLab and sends the job's own there. The job engine calls an [`ArtifactTransfer`] at
//! gitlab-runner's two points of a job: after the sources and caches (before the build folder
//! is handed to the job's user and the scripts run), and after the scripts. Collecting the
//! files is the engine's (the same matching as `wharf run`: globs, `exclude`, `untracked`,
//! never outside the build folder); what happens to them is the transfer's.

use crate::artifacts;
use crate::failure::JobFailure;
use crate::files::{self, JobDirs};
use crate::log::JobLog;
use crate::report::FailureReason;
use crate::vars::VarSet;
use std::path::{Path, PathBuf};
use wharf_fs::Root;

/// A job's artifacts beyond the local folders.
#[async_trait::async_trait]
pub trait ArtifactTransfer: Send + Sync {
    /// Before the scripts: bring the dependencies' artifacts into the build folder
    /// ([`BuildFolder::restore`]).
    async fn download(
        &self,
        build: &BuildFolder<'_>,
        log: &mut JobLog,
    ) -> Result<(), TransferFailure>;

    /// After the scripts (`succeeded`: they passed): collect ([`BuildFolder::collect`]) and
    /// send the job's artifacts. A failure fails a job that had succeeded.
    async fn upload(
        &self,
        build: &BuildFolder<'_>,
        succeeded: bool,
        log: &mut JobLog,
    ) -> Result<(), TransferFailure>;
}

/// Why a transfer failed the job: GitLab's reason, what went wrong and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFailure {
    pub reason: FailureReason,
    pub exit_code: Option<i64>,
    pub message: String,
    pub hint: Option<String>,
}

impl From<TransferFailure> for JobFailure {
    fn from(failure: TransferFailure) -> JobFailure {
        let mut job_failure = JobFailure::new(failure.reason, failure.message);
        job_failure.hint = failure.hint;
        job_failure
    }
}

/// The job's build folder as a transfer sees it.
pub struct BuildFolder<'a> {
    pub(crate) dirs: JobDirs<'a>,
    pub(crate) vars: &'a VarSet,
    pub(crate) project_dir_in_job: &'a str,
}

/// Files collected for one artifact set: `entries` (files, links, folders, relative to the
/// build folder) are read through `root`, which never leads outside it.
pub struct Collected {
    pub root: Root,
    pub entries: Vec<PathBuf>,
}

/// One artifact set's patterns, as `artifacts:` gives them (variables not yet expanded).
#[derive(Debug, Clone, Copy)]
pub struct Patterns<'p> {
    pub paths: &'p [String],
    pub exclude: &'p [String],
    pub untracked: bool,
}

impl BuildFolder<'_> {
    /// The build folder on this machine.
    pub fn path(&self) -> &Path {
        self.dirs.build_dir
    }

    /// `text` with the job's variables expanded (artifact names and paths hold `$VAR`s).
    pub fn expand(&self, text: &str) -> String {
        self.vars.expand(text)
    }

    /// The files `patterns` match, as `wharf run` collects its artifacts (warnings for paths
    /// that match nothing or lead outside the build folder go to `log`).
    pub fn collect(
        &self,
        patterns: Patterns<'_>,
        log: &mut JobLog,
    ) -> Result<Collected, TransferFailure> {
        artifacts::collect(
            patterns,
            self.vars,
            &self.dirs,
            self.project_dir_in_job,
            log,
        )
        .map_err(|failure| TransferFailure {
            reason: failure.reason,
            exit_code: None,
            message: failure.message,
            hint: failure.hint,
        })
    }

    /// A new empty folder of wharf's (not in the build folder), removed when dropped: where a
    /// transfer unpacks what it brings before [`BuildFolder::restore`].
    pub fn staging_dir(&self) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(".transfer-")
            .tempdir_in(self.dirs.wharf_dir)
    }

    /// Copy the folder `staged` into the build folder, merging, as `wharf run` restores its
    /// dependencies' artifacts: links are copied as links and never followed on either side, a
    /// folder replaces a link in its way, FIFOs and devices are skipped (a warning).
    pub fn restore(&self, staged: &Path, log: &mut JobLog) -> Result<(), TransferFailure> {
        let system = |e: files::FilesError| TransferFailure {
            reason: FailureReason::RunnerSystemFailure,
            exit_code: None,
            message: format!("artifacts: {e}"),
            hint: None,
        };
        let build = files::job_tree(self.dirs.build_dir).map_err(system)?;
        let skipped = files::restore_tree(staged, &build).map_err(system)?;
        crate::cache::warn_skipped(&skipped, log);
        Ok(())
    }
}
