//! Artifacts that come from, and go to, somewhere other than `.wharf/artifacts/` (the folders
//! `wharf run` passes them through): `wharf runner` takes its dependencies' artifacts from
//! GitLab and sends the job's own there. The job engine calls an [`ArtifactTransfer`] at
//! gitlab-runner's two points of a job: after the sources and caches (before the build folder
//! is handed to the job's user and the scripts run), and after the scripts. Collecting the
//! files is the engine's (the same matching as `wharf run`: globs, `exclude`, `untracked`,
//! never outside the build folder); what happens to them is the transfer's.

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

impl TransferFailure {
    /// The machine failed (a file not written, an archive not made).
    pub fn system(message: impl Into<String>) -> TransferFailure {
        TransferFailure {
            reason: FailureReason::RunnerSystemFailure,
            exit_code: None,
            message: message.into(),
            hint: None,
        }
    }

    /// The job's configuration is at fault (a bad pattern, a format wharf does not make).
    pub fn configuration(message: impl Into<String>) -> TransferFailure {
        TransferFailure {
            reason: FailureReason::RunnerConfigurationError,
            ..TransferFailure::system(message)
        }
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
        collect(
            patterns,
            self.vars,
            &self.dirs,
            self.project_dir_in_job,
            log,
        )
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
        let system = |e: files::FilesError| TransferFailure::system(format!("artifacts: {e}"));
        let build = files::job_tree(self.dirs.build_dir).map_err(system)?;
        let skipped = files::restore_tree(staged, &build).map_err(system)?;
        crate::cache::warn_skipped(&skipped, log);
        Ok(())
    }
}

/// The files of the build folder that `patterns` match (variables expanded; absolute paths
/// under `project_dir_in_job`, `CI_PROJECT_DIR` as the job saw it, taken as relative), with
/// GitLab's warnings for patterns that match nothing or lead outside the build folder. The
/// one artifact collection: `wharf run`'s (`artifacts.rs`) and a transfer's.
pub(crate) fn collect(
    patterns: Patterns<'_>,
    vars: &VarSet,
    dirs: &JobDirs<'_>,
    project_dir_in_job: &str,
    log: &mut JobLog,
) -> Result<Collected, TransferFailure> {
    let project_dir = Some(project_dir_in_job);
    let expand = |p: &String| files::relative_to_project(&vars.expand(p), project_dir);
    let paths: Vec<String> = patterns.paths.iter().map(expand).collect();
    let exclude: Vec<String> = patterns.exclude.iter().map(expand).collect();
    let build = files::job_tree(dirs.build_dir)
        .map_err(|e| TransferFailure::system(format!("artifacts: {e}")))?;
    let mut m = files::match_paths(&build, &paths, &exclude)
        .map_err(|e| TransferFailure::configuration(format!("artifacts: {e}")))?;
    if patterns.untracked {
        let untracked = files::untracked(&build, dirs.project_dir, dirs.snapshot, &exclude)
            .map_err(|e| TransferFailure::system(format!("artifacts: untracked files: {e}")))?;
        m.add_entries(untracked);
    }
    for p in &m.unmatched {
        log.warn(&format!("{p}: no matching files. Ensure that the artifact path is relative to the working directory"));
    }
    for (p, why) in &m.outside {
        log.warn(&format!("{p}: not uploaded: {why}"));
    }
    Ok(Collected {
        root: build,
        entries: m.entries,
    })
}
