//! The seam between a job's flow (`job.rs`) and where its scripts run. An executor decides where
//! the job's files are seen from inside the job ([`Layout`]), gets ready for the job (an image,
//! services), passes the job's folders to the user its scripts run as and back, runs one script
//! at a time, and cleans up after itself. The job module does the rest
//! (sources, caches, artifacts), the same for every executor.
//!
//! A new executor is one file here implementing [`Executor`], plus one arm where `job.rs` chooses
//! the executor.

pub(crate) mod docker;
pub(crate) mod sandbox;
pub(crate) mod shell;

use crate::engine::Engine;
use crate::failure::{JobFailure, Stop};
use crate::files::slug;
use crate::log::JobLog;
use crate::options::RunOptions;
use crate::script::HandBack;
use crate::vars::VarSet;
use std::path::{Path, PathBuf};
use tokio::sync::{OnceCell, mpsc, watch};
use wharf_ci::Job;

/// What an executor takes from its pipeline run.
#[derive(Clone, Copy)]
pub(crate) struct ExecutorContext<'a> {
    pub(crate) opts: &'a RunOptions,
    /// The `.wharf` folder of the project.
    pub(crate) wharf_dir: &'a Path,
    pub(crate) project_name: &'a str,
    pub(crate) pipeline_id: u64,
    /// One Docker connection per pipeline run, made by the first job that needs it.
    pub(crate) engine: &'a OnceCell<Result<Engine, String>>,
}

/// Where a job runs and how paths look from inside it.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) build_dir: PathBuf,
    pub(crate) tmp_dir: PathBuf,
    /// `CI_BUILDS_DIR` as the job sees it.
    pub(crate) builds_dir_in_job: String,
    /// `CI_PROJECT_DIR` as the job sees it.
    pub(crate) project_dir_in_job: String,
    pub(crate) tmp_dir_in_job: String,
}

impl Layout {
    /// The job's folders on this host: `.wharf/builds/<job>` and `.wharf/tmp/<job>`.
    fn host_dirs(context: &ExecutorContext<'_>, job: &Job) -> (PathBuf, PathBuf) {
        let slug = slug(&job.name);
        (
            context.wharf_dir.join("builds").join(&slug),
            context.wharf_dir.join("tmp").join(&slug),
        )
    }

    /// Write `name` (a script, a file variable) in the job's temporary folder. That folder is
    /// mounted into the job's container, so the job may have left a link or anything else under
    /// that name: the file is written under a temporary name and renamed over it, never through
    /// it.
    pub(crate) fn write_tmp(&self, name: &str, value: &str) -> Result<(), wharf_fs::Error> {
        wharf_fs::Root::open(&self.tmp_dir, wharf_fs::Resolve::NoSymlinks)?.replace_file(
            name,
            0o600,
            value.as_bytes(),
        )
    }
}

impl Layout {
    /// Write `script` into the job's temporary folder as `<name>.sh` (see [`Layout::write_tmp`]);
    /// its file name.
    pub(crate) fn write_script(&self, script: &ScriptRun<'_>) -> Result<String, JobFailure> {
        let file_name = format!("{}.sh", script.name);
        self.write_tmp(&file_name, script.text).map_err(|e| {
            JobFailure::system(format!(
                "writing {}: {e}",
                self.tmp_dir.join(&file_name).display()
            ))
        })?;
        Ok(file_name)
    }
}

/// A piece (at most 16 KiB) of a script's output, and whether it came from stderr.
pub(crate) struct OutputChunk {
    pub(crate) bytes: Vec<u8>,
    pub(crate) stderr: bool,
}

/// Chunks of a job's output waiting to be logged: at most 1 MiB held.
const OUTPUT_CHUNKS_IN_FLIGHT: usize = 64;

/// The child's stdout and stderr (taken from it) as one stream of chunks, ending when both close.
/// Bounded: a job printing faster than the log is written waits for it (its pipe fills) instead
/// of piling its output up in memory.
pub(crate) fn output_of(child: &mut tokio::process::Child) -> mpsc::Receiver<OutputChunk> {
    let (tx, rx) = mpsc::channel(OUTPUT_CHUNKS_IN_FLIGHT);
    if let Some(out) = child.stdout.take() {
        pump(out, tx.clone(), false);
    }
    if let Some(err) = child.stderr.take() {
        pump(err, tx, true);
    }
    rx
}

/// Forward a pipe's bytes to the channel until EOF.
fn pump<R>(mut reader: R, tx: mpsc::Sender<OutputChunk>, stderr: bool)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            let chunk = OutputChunk {
                bytes: buf[..n].to_vec(),
                stderr,
            };
            if n == 0 || tx.send(chunk).await.is_err() {
                break;
            }
        }
    });
}

/// The failure of an image executor asked to run a job without `image:`.
pub(crate) fn no_image(job: &Job, executor: &str) -> Stop {
    JobFailure::configuration(format!(
        "job `{}` ({}) has no `image:` but --executor {executor} was asked for",
        job.name, job.span
    ))
    .with_hint("add `image: <name>` to the job or to `default:`, or use `--executor auto`")
    .into()
}

/// The job log's line when the kernel killed a process of a job for its memory limit (that
/// process ends with 137: SIGKILL).
pub(crate) fn memory_limit_reached(memory: u64) -> String {
    format!(
        "the job's memory limit ({}) was reached: the kernel killed a process of the job (exit code 137); raise --memory or make the job use less",
        wharf_sandbox::cgroup::human_bytes(memory)
    )
}

/// One script to run: `step_script` (before_script + script) or `after_script`.
pub(crate) struct ScriptRun<'a> {
    /// The shell script (see `crate::script::build`).
    pub(crate) text: &'a str,
    /// `step_script` or `after_script`: names the script file and the container.
    pub(crate) name: &'a str,
    /// The job's environment, file variables already written (`NAME=<path>`).
    pub(crate) env: &'a [(String, String)],
    /// Ends the script: Ctrl-C, the job's timeout, or after_script's own timeout.
    pub(crate) cancel: &'a watch::Receiver<bool>,
}

/// Where a job's scripts run.
pub(crate) trait Executor {
    /// Where the job's files are, and how the job sees them. Fixed from creation: the job's
    /// variables (`CI_PROJECT_DIR`, `CI_BUILDS_DIR`) are built from it.
    fn layout(&self) -> &Layout;

    /// Get ready for the job, before its sources are copied: says which executor runs it, and
    /// for Docker pulls the image and starts the services.
    async fn prepare(&mut self, job: &Job, vars: &VarSet, log: &mut JobLog) -> Result<(), Stop>;

    /// Make the job's folders, once prepared (sources, caches, artifacts, file variables),
    /// usable by the user its scripts run as, when that is not wharf's user. Blocking file work.
    fn hand_over(&self) -> Result<(), JobFailure>;

    /// How the files the scripts make get back to wharf's user after each script, when the
    /// scripts run as another user than wharf.
    fn hand_back(&self) -> Option<HandBack>;

    /// Run one script to its end; its exit code, or why it could not run.
    async fn run_script(&mut self, script: ScriptRun<'_>, log: &mut JobLog) -> Result<i64, Stop>;

    /// Remove what `prepare` started (services, the sandbox's state folder); what cannot be
    /// removed is a warning in `log`. Runs after the scripts, or after a failed preparation.
    async fn cleanup(&mut self, log: &mut JobLog);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_in_the_tmp_folder_replace_a_link_left_there_never_write_through_it() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("after-target");
        let d = tempfile::tempdir().unwrap();
        let layout = Layout {
            build_dir: d.path().join("build"),
            tmp_dir: d.path().join("tmp"),
            builds_dir_in_job: String::new(),
            project_dir_in_job: String::new(),
            tmp_dir_in_job: String::new(),
        };
        std::fs::create_dir_all(&layout.tmp_dir).unwrap();
        std::os::unix::fs::symlink(&target, layout.tmp_dir.join("after_script.sh")).unwrap();
        layout.write_tmp("after_script.sh", "echo after").unwrap();
        assert!(!target.exists());
        assert_eq!(
            std::fs::read_to_string(layout.tmp_dir.join("after_script.sh")).unwrap(),
            "echo after"
        );
        assert!(layout.write_tmp("../escape", "x").is_err());
        assert!(!d.path().join("escape").exists());
    }
}
