//! Runs one job through its phases: prepare (the executor's), sources, cache restore,
//! dependencies' artifacts, hand over (to the user the scripts run as), steps
//! (`before_script` and `script`, then `after_script`), cache save, artifacts, cleanup. Where the scripts run is the [`Executor`]'s business; every failure of a
//! phase comes back as a [`JobFailure`] or a [`Stop`], logged here once.

use crate::artifacts;
use crate::executor::docker::DockerExecutor;
use crate::executor::sandbox::SandboxExecutor;
use crate::executor::shell::ShellExecutor;
use crate::executor::{Executor, ExecutorContext, Layout, ScriptRun};
use crate::failure::{JobFailure, Stop};
use crate::files::{self, JobDirs, slug};
use crate::log::JobLog;
use crate::mask::Masker;
use crate::options::{ExecutorChoice, RunOptions};
use crate::report::{FailureReason, JobReport, JobStatus};
use crate::script;
use crate::vars::VarSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, watch};
use wharf_ci::{Job, Pipeline};

/// Everything a job needs from its pipeline run, borrowed from the pipeline's shared state
/// (see `pipeline.rs`); built per job run.
pub(crate) struct Ctx<'a> {
    pub(crate) opts: &'a RunOptions,
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) wharf_dir: PathBuf,
    pub(crate) project_name: String,
    pub(crate) snapshot: &'a [PathBuf],
    pub(crate) pipeline_id: u64,
    pub(crate) engine: &'a OnceCell<Result<crate::engine::Engine, String>>,
    pub(crate) sources: &'a crate::vars::VarSources,
    pub(crate) run: JobRun,
}

/// This run (attempt) of one job.
pub(crate) struct JobRun {
    /// `CI_JOB_ID`: unique per job run.
    pub(crate) job_id: u64,
    /// `artifacts: reports: dotenv` variables of the jobs it takes artifacts from.
    pub(crate) dotenv: Vec<(String, String)>,
    /// Console prefix when several jobs run at once.
    pub(crate) prefix: Option<String>,
    /// 1-based; later attempts append to the job's log.
    pub(crate) attempt: u32,
    /// `retry: max` + 1.
    pub(crate) max_attempts: u32,
    /// Set when the job's `timeout` ended it (its cancel signal then means "timed out").
    pub(crate) timed_out: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) timeout: Duration,
    /// Stops `after_script`: Ctrl-C, or `AFTER_SCRIPT_TIMEOUT` after the job's timeout ended
    /// the script (GitLab runs after_script after a timeout too).
    pub(crate) after_script_cancel: watch::Receiver<bool>,
}

/// GitLab runner's default `after_script` timeout (5 minutes).
pub(crate) const AFTER_SCRIPT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

impl JobRun {
    fn timed_out(&self) -> bool {
        self.timed_out.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Whether `after_script` runs: after anything but a cancel; a timeout (which ends the script
/// through the cancel signal) is not a cancel.
fn after_script_runs(job: &Job, status: &JobStatus, run: &JobRun) -> bool {
    !job.after_script.is_empty() && (!matches!(status, JobStatus::Canceled) || run.timed_out())
}

/// `CI_JOB_STATUS` for after_script: a timed-out job is failing, not canceled.
fn after_script_status_word(status: &JobStatus, run: &JobRun) -> &'static str {
    if run.timed_out() {
        "failed"
    } else {
        job_status_word(status)
    }
}

pub(crate) fn skipped(job: &Job, why: &str) -> JobReport {
    JobReport::new(job, JobStatus::Skipped(why.to_string()), Duration::ZERO)
}

impl Ctx<'_> {
    fn executor_context(&self) -> ExecutorContext<'_> {
        ExecutorContext {
            opts: self.opts,
            wharf_dir: &self.wharf_dir,
            project_name: &self.project_name,
            pipeline_id: self.pipeline_id,
            engine: self.engine,
        }
    }
}

/// Run one job with the executor `--executor` (and the job's `image:`) choose.
pub(crate) async fn run_job(ctx: &Ctx<'_>, job: &Job) -> JobReport {
    let context = ctx.executor_context();
    match choose_executor(&context, job).await {
        Chosen::Docker => run_with(ctx, job, DockerExecutor::new(&context, job)).await,
        Chosen::Sandbox(why) => run_with(ctx, job, SandboxExecutor::new(&context, job, why)).await,
        Chosen::Shell(warning) => {
            run_with(ctx, job, ShellExecutor::new(&context, job, warning)).await
        }
    }
}

enum Chosen {
    Docker,
    /// With why `auto` chose it.
    Sandbox(Option<String>),
    /// With the warning that says why an image job runs in the shell.
    Shell(Option<String>),
}

/// `auto`: a job with `image:` runs in Docker when a daemon answers, else in the sandbox when
/// this machine can run one (a test sandbox, once per pipeline run), else in the shell with a
/// warning that says why.
async fn choose_executor(context: &ExecutorContext<'_>, job: &Job) -> Chosen {
    match context.opts.executor {
        ExecutorChoice::Docker => Chosen::Docker,
        ExecutorChoice::Sandbox => Chosen::Sandbox(None),
        ExecutorChoice::Shell => Chosen::Shell(None),
        ExecutorChoice::Auto if job.image.is_none() => Chosen::Shell(None),
        ExecutorChoice::Auto => {
            let docker = crate::executor::docker::connect(context).await;
            let Err(docker_error) = docker else {
                return Chosen::Docker;
            };
            match crate::executor::sandbox::usable(context).await {
                Ok(()) => Chosen::Sandbox(Some(format!(
                    "No Docker daemon ({docker_error}): the job runs in wharf's sandbox"
                ))),
                Err(why) => Chosen::Shell(Some(format!(
                    "the job's image is ignored: no Docker daemon ({docker_error}), and the sandbox cannot run here ({why}; `wharf doctor` says how to fix it)"
                ))),
            }
        }
    }
}

async fn run_with(ctx: &Ctx<'_>, job: &Job, mut executor: impl Executor) -> JobReport {
    let started = Instant::now();
    let slug = slug(&job.name);
    let layout = executor.layout().clone();
    let vars = job_variables(ctx, job, &layout);
    let mut masker = Masker::for_variables(&vars, ctx.opts.env.docker_auth_config.as_deref());
    masker.add_token_prefixes(&ctx.opts.token_mask_prefixes);
    let log_path = ctx.wharf_dir.join("logs").join(format!("{slug}.log"));
    let created = if ctx.run.attempt > 1 {
        JobLog::append(ctx.opts.console.clone(), &log_path, masker)
    } else {
        JobLog::create(ctx.opts.console.clone(), &log_path, masker)
    };
    let mut log = match created.map(|l| l.with_prefix(ctx.run.prefix.clone())) {
        Ok(l) => l,
        Err(e) => {
            ctx.opts.console.line(&format!(
                "ERROR: cannot write the log {}: {e}",
                log_path.display()
            ));
            return finish(
                job,
                started,
                JobStatus::Failed {
                    reason: FailureReason::RunnerSystemFailure,
                    exit_code: None,
                },
            );
        }
    };
    if ctx.run.attempt > 1 {
        log.warn(&format!(
            "Retrying job (attempt {} of {})",
            ctx.run.attempt, ctx.run.max_attempts
        ));
    }
    log.section(&format!(
        "Running job \"{}\" (stage {})",
        job.name, job.stage
    ));
    for (keyword, span) in &job.unsupported {
        log.warn(&format!(
            "`{keyword}` ({span}) is not supported by wharf yet and was ignored"
        ));
    }

    let mut outcome = match prepare_and_run(ctx, job, &vars, &mut executor, &mut log).await {
        Ok(status) => status,
        Err(stop) => settle(stop, &mut log),
    };

    if matches!(outcome, JobStatus::Canceled) && ctx.run.timed_out() {
        log.error(&format!(
            "Job failed: execution took longer than {} (timeout)",
            crate::report::human_duration(ctx.run.timeout)
        ));
        outcome = JobStatus::Failed {
            reason: FailureReason::JobExecutionTimeout,
            exit_code: None,
        };
    }
    // Caches and artifacts: both honour `when` against the script's outcome.
    if !matches!(outcome, JobStatus::Canceled) && layout.build_dir.exists() {
        let ok = matches!(outcome, JobStatus::Passed);
        // File copies are blocking: keep the other jobs' output flowing meanwhile.
        let dirs = job_dirs(ctx, &layout);
        let uploaded = tokio::task::block_in_place(|| {
            let shared = ctx.opts.cache_transfer.as_deref();
            crate::cache::save(&job.cache, &vars, &dirs, ok, shared, &mut log);
            artifacts::upload(job, &vars, &dirs, &layout.project_dir_in_job, ok, &mut log)
        });
        if let Err(failure) = uploaded {
            failure.log(&mut log);
            if ok {
                outcome = failure.status();
            }
        }
        if let Some(transfer) = &ctx.opts.artifact_transfer {
            let build = build_folder(ctx, &vars, &layout);
            // A cancel stops an upload in progress (a slow GitLab, a big archive), as it stops
            // a dependency download.
            let uploaded = crate::options::unless_canceled(
                &ctx.opts.cancel,
                transfer.upload(&build, ok, &mut log),
            )
            .await;
            match uploaded {
                Some(Ok(())) => {}
                Some(Err(failure)) => {
                    let status = JobStatus::Failed {
                        reason: failure.reason,
                        exit_code: failure.exit_code,
                    };
                    JobFailure::from(failure).log(&mut log);
                    if matches!(outcome, JobStatus::Passed) {
                        outcome = status;
                    }
                }
                None => {
                    log.warn("Uploading artifacts stopped: the job was canceled");
                    outcome = JobStatus::Canceled;
                }
            }
        }
        // GitLab collects reports whatever the job's result.
        if let Err(failure) =
            artifacts::save_dotenv_reports(job, &dirs, ctx.opts.dotenv_limits, &mut log)
        {
            failure.log(&mut log);
            if matches!(outcome, JobStatus::Passed) {
                outcome = failure.status();
            }
        }
    }
    log.section("Cleaning up project directory and file based variables");
    // File-type variables may hold secrets: never leave them behind.
    if let Err(e) = files::remove_tree(&layout.tmp_dir) {
        log.warn(&e.to_string());
    }
    match &outcome {
        JobStatus::Passed => log.message(crate::log::Level::Success, "Job succeeded"),
        JobStatus::Failed {
            reason: FailureReason::ScriptFailure,
            exit_code: Some(code),
        } => log.error(&format!("Job failed: exit code {code}")),
        JobStatus::Failed { reason, .. } => log.error(&format!("Job failed ({reason})")),
        JobStatus::Canceled => log.error("Job canceled"),
        JobStatus::Skipped(_) => {}
    }
    log.info("");
    drop(log);
    let mut report = finish(job, started, outcome);
    report.coverage = coverage_of(job, &log_path);
    report
}

/// The one place a phase's failure is logged: it becomes the job's status.
fn settle(stop: Stop, log: &mut JobLog) -> JobStatus {
    match stop {
        Stop::Failed(failure) => {
            failure.log(log);
            failure.status()
        }
        Stop::Canceled => JobStatus::Canceled,
    }
}

/// The executor's preparation, the build folder (handed over to the job's user), then the
/// scripts; the executor cleans up whatever happened, a failed preparation included.
async fn prepare_and_run(
    ctx: &Ctx<'_>,
    job: &Job,
    vars: &VarSet,
    executor: &mut impl Executor,
    log: &mut JobLog,
) -> Result<JobStatus, Stop> {
    if let Err(stop) = executor.prepare(job, vars, log).await {
        // What a preparation got as far as making (a sandbox's state folder) goes too.
        executor.cleanup(log).await;
        return Err(stop);
    }
    let layout = executor.layout().clone();
    let env = match tokio::task::block_in_place(|| prepare_build(ctx, job, vars, &layout, log)) {
        Ok(env) => env,
        Err(stop) => {
            executor.cleanup(log).await;
            return Err(stop);
        }
    };
    if let Some(transfer) = &ctx.opts.artifact_transfer {
        let build = build_folder(ctx, vars, &layout);
        // A cancel (or the job's timeout) stops a long download.
        let downloaded =
            match crate::options::unless_canceled(&ctx.opts.cancel, transfer.download(&build, log))
                .await
            {
                Some(result) => result.map_err(|failure| Stop::from(JobFailure::from(failure))),
                None => Err(Stop::Canceled),
            };
        if let Err(stop) = downloaded {
            executor.cleanup(log).await;
            return Err(stop);
        }
    }
    if let Err(failure) = tokio::task::block_in_place(|| executor.hand_over()) {
        executor.cleanup(log).await;
        return Err(failure.into());
    }
    let status = run_job_scripts(ctx, job, &env, executor, log).await;
    executor.cleanup(log).await;
    Ok(status)
}

fn finish(job: &Job, started: Instant, status: JobStatus) -> JobReport {
    JobReport::new(job, status, started.elapsed())
}

/// `coverage:`: the last match of the job's regex in its log, as a percentage.
fn coverage_of(job: &Job, log_path: &Path) -> Option<String> {
    let pattern = job.coverage.as_ref()?;
    use std::io::BufRead as _;
    // RE2's syntax, as GitLab reads it (`/{(\d+)%/` is valid there).
    let re = wharf_ci::re2::compile(pattern).ok()?;
    let number = regex::Regex::new(r"\d+(?:\.\d+)?").ok()?;
    // Line by line: a job's log can be far larger than memory should hold.
    let mut reader = std::io::BufReader::new(std::fs::File::open(log_path).ok()?);
    let mut line = Vec::new();
    let mut last = None;
    while reader.read_until(b'\n', &mut line).ok()? > 0 {
        let text = String::from_utf8_lossy(&line);
        if let Some(m) = re.find_iter(&text).last() {
            last = number.find(m.as_str()).map(|n| n.as_str().to_string());
        }
        line.clear();
    }
    last
}

fn job_variables(ctx: &Ctx<'_>, job: &Job, layout: &Layout) -> VarSet {
    let predefined = crate::predefined::job_runtime(
        job,
        ctx.run.job_id,
        layout.builds_dir_in_job.clone(),
        layout.project_dir_in_job.clone(),
    );
    ctx.sources.build(
        &predefined,
        &job.variables,
        job.inherit_variables.as_deref(),
        &ctx.run.dotenv,
    )
}

/// Fresh build folder with the project's files, the job's caches and its dependencies' artifacts;
/// file-type variables written. Returns the environment for the job.
fn prepare_build(
    ctx: &Ctx<'_>,
    job: &Job,
    vars: &VarSet,
    layout: &Layout,
    log: &mut JobLog,
) -> Result<Vec<(String, String)>, Stop> {
    log.section("Preparing environment");
    let fail = |e: files::FilesError| Stop::from(JobFailure::system(e.to_string()));
    // Emptied, not recreated: the job's services may already have the build folder mounted.
    files::clear_dir(&layout.build_dir).map_err(fail)?;
    files::clear_dir(&layout.tmp_dir).map_err(fail)?;
    log.section("Getting source from the project folder");
    files::copy_files(&ctx.opts.project_dir, ctx.snapshot, &layout.build_dir).map_err(fail)?;
    log.info(&format!(
        "Copied {} files into {}",
        ctx.snapshot.len(),
        layout.project_dir_in_job
    ));

    // Caches (crate::cache): keys, fallback keys, per-key locks.
    let shared = ctx.opts.cache_transfer.as_deref();
    crate::cache::restore(&job.cache, vars, &job_dirs(ctx, layout), shared, log).map_err(fail)?;

    let deps: Vec<&Job> = artifacts::dependency_jobs(ctx.pipeline, job);
    let with_artifacts: Vec<(&Job, PathBuf)> = deps
        .into_iter()
        .map(|d| (d, artifacts::artifacts_dir(&ctx.wharf_dir, &d.name)))
        .filter(|(_, p)| p.is_dir())
        .collect();
    if !with_artifacts.is_empty() {
        log.section("Downloading artifacts");
        let build = files::job_tree(&layout.build_dir).map_err(fail)?;
        for (dep, dir) in with_artifacts {
            log.info(&format!("Downloading artifacts for {}", dep.name));
            let skipped = files::restore_tree(&dir, &build).map_err(fail)?;
            crate::cache::warn_skipped(&skipped, log);
        }
    }

    let mut env = Vec::new();
    for var in vars.iter() {
        let value = if var.expand {
            vars.resolved(&var.name).unwrap_or_default()
        } else {
            var.value.clone()
        };
        if var.file {
            // Names are checked when the variables file is read; this guards every other way
            // in. The file is written confined to the temporary folder in any case.
            if !crate::vars::is_variable_name(&var.name) {
                return Err(JobFailure::configuration(format!(
                    "file variable `{}`: a variable name is made of letters, digits and `_`, at most {} characters",
                    var.name.chars().take(64).collect::<String>(),
                    crate::vars::MAX_VARIABLE_NAME_LEN
                ))
                .into());
            }
            layout
                .write_tmp(&var.name, &value)
                .map_err(|e| fail(e.into()))?;
            env.push((
                var.name.clone(),
                format!("{}/{}", layout.tmp_dir_in_job, var.name),
            ));
        } else {
            env.push((var.name.clone(), value));
        }
    }
    Ok(env)
}

/// The build folder as an artifact transfer (`wharf runner`'s GitLab) sees it.
fn build_folder<'c>(
    ctx: &'c Ctx<'_>,
    vars: &'c VarSet,
    layout: &'c Layout,
) -> crate::transfer::BuildFolder<'c> {
    crate::transfer::BuildFolder {
        dirs: job_dirs(ctx, layout),
        vars,
        project_dir_in_job: &layout.project_dir_in_job,
    }
}

/// The folders of this job's run, for caches and artifacts.
fn job_dirs<'c>(ctx: &'c Ctx<'_>, layout: &'c Layout) -> JobDirs<'c> {
    JobDirs {
        wharf_dir: &ctx.wharf_dir,
        project_dir: &ctx.opts.project_dir,
        snapshot: ctx.snapshot,
        build_dir: &layout.build_dir,
    }
}

/// GitLab's script flow, the same for every executor: `before_script` + `script` in one shell,
/// then `after_script` in its own (also after a failure), which cannot fail the job.
async fn run_job_scripts(
    ctx: &Ctx<'_>,
    job: &Job,
    env: &[(String, String)],
    executor: &mut impl Executor,
    log: &mut JobLog,
) -> JobStatus {
    let project_dir = executor.layout().project_dir_in_job.clone();
    let hand_back = executor.hand_back();
    let mut commands = job.before_script.clone();
    commands.extend(job.script.iter().cloned());
    log.section("Executing \"step_script\" stage of the job script");
    let step = script::build(&commands, &project_dir, hand_back.as_ref());
    let run = ScriptRun {
        text: &step,
        name: "step_script",
        env,
        cancel: &ctx.opts.cancel,
    };
    let mut status = match executor.run_script(run, log).await {
        Ok(0) => JobStatus::Passed,
        Ok(code) => JobStatus::Failed {
            reason: FailureReason::ScriptFailure,
            exit_code: Some(code),
        },
        Err(stop) => settle(stop, log),
    };
    if after_script_runs(job, &status, &ctx.run) {
        log.section("Running after_script");
        let after = script::build(&job.after_script, &project_dir, hand_back.as_ref());
        let word = after_script_status_word(&status, &ctx.run);
        let mut after_env = env.to_vec();
        after_env.push((crate::predefined::CI_JOB_STATUS.into(), word.into()));
        let run = ScriptRun {
            text: &after,
            name: "after_script",
            env: &after_env,
            cancel: &ctx.run.after_script_cancel,
        };
        match executor.run_script(run, log).await {
            Ok(0) => {}
            Ok(code) => log.warn(&format!("after_script failed: exit code {code}")),
            Err(Stop::Canceled) => status = JobStatus::Canceled,
            // after_script cannot fail the job: its failure is only reported.
            Err(Stop::Failed(failure)) => failure.log(log),
        }
    }
    status
}

fn job_status_word(status: &JobStatus) -> &'static str {
    match status {
        JobStatus::Passed => "success",
        JobStatus::Canceled => "canceled",
        _ => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Console;

    /// Stands in for a real executor: records what the job flow asks of it.
    struct FakeExecutor {
        layout: Layout,
        calls: Arc<std::sync::Mutex<Vec<String>>>,
        prepare_fails: bool,
        step_exit: i64,
    }

    impl Executor for FakeExecutor {
        fn layout(&self) -> &Layout {
            &self.layout
        }

        async fn prepare(&mut self, _: &Job, vars: &VarSet, _: &mut JobLog) -> Result<(), Stop> {
            let project_dir = vars.resolved("CI_PROJECT_DIR").unwrap_or_default();
            self.record(format!("prepare CI_PROJECT_DIR={project_dir}"));
            if self.prepare_fails {
                return Err(JobFailure::configuration("image `nope` is not here")
                    .with_hint("pull it")
                    .into());
            }
            Ok(())
        }

        fn hand_over(&self) -> Result<(), JobFailure> {
            self.record("hand_over".to_string());
            Ok(())
        }

        fn hand_back(&self) -> Option<script::HandBack> {
            None
        }

        async fn run_script(&mut self, script: ScriptRun<'_>, _: &mut JobLog) -> Result<i64, Stop> {
            let status = script
                .env
                .iter()
                .find(|(k, _)| k == crate::predefined::CI_JOB_STATUS)
                .map(|(_, v)| v.as_str())
                .unwrap_or("-");
            self.record(format!("{} CI_JOB_STATUS={status}", script.name));
            Ok(if script.name == "step_script" {
                self.step_exit
            } else {
                0
            })
        }

        async fn cleanup(&mut self, _log: &mut JobLog) {
            self.record("cleanup".to_string());
        }
    }

    impl FakeExecutor {
        fn record(&self, call: String) {
            self.calls.lock().unwrap().push(call);
        }
    }

    /// Runs the one job of a pipeline with `executor`; its report and its log.
    async fn run_fake(prepare_fails: bool, step_exit: i64) -> (JobReport, Vec<String>, String) {
        struct OneFile;
        impl wharf_ci::Loader for OneFile {
            fn load(&self, _: &str) -> Result<String, std::io::Error> {
                Ok("build:\n  script: [make]\n  after_script: [tidy]\n".into())
            }
        }
        let pipeline = wharf_ci::load_pipeline(".gitlab-ci.yml", &OneFile)
            .unwrap()
            .pipeline;
        let project = tempfile::tempdir().unwrap();
        let wharf_dir = project.path().join(".wharf");
        std::fs::create_dir_all(wharf_dir.join("logs")).unwrap();
        let (_cancel_tx, cancel) = watch::channel(false);
        let opts = RunOptions {
            project_dir: project.path().to_path_buf(),
            selection: Default::default(),
            concurrency: 1,
            events: None,
            loader: None,
            load_limits: wharf_ci::Limits::default(),
            dotenv_limits: Default::default(),
            cli_variables: Vec::new(),
            file_variables: Vec::new(),
            executor: ExecutorChoice::Shell,
            pull_policy: None,
            env: crate::options::RunnerEnv::default(),
            console: Console::new(false, Box::new(std::io::sink())),
            cancel: cancel.clone(),
            pull_retry_delays: Vec::new(),
            limits: Default::default(),
            volumes: Vec::new(),
            sandbox_network: Default::default(),
            token_mask_prefixes: Vec::new(),
            artifact_transfer: None,
            cache_transfer: None,
        };
        let engine = OnceCell::new();
        let sources = crate::vars::VarSources::default();
        let ctx = Ctx {
            opts: &opts,
            pipeline: &pipeline,
            wharf_dir: wharf_dir.clone(),
            project_name: "p".into(),
            snapshot: &[],
            pipeline_id: 1,
            engine: &engine,
            sources: &sources,
            run: JobRun {
                job_id: 1001,
                dotenv: Vec::new(),
                prefix: None,
                attempt: 1,
                max_attempts: 1,
                timed_out: Arc::default(),
                timeout: Duration::from_secs(60),
                after_script_cancel: cancel,
            },
        };
        let calls = Arc::default();
        let executor = FakeExecutor {
            layout: Layout {
                build_dir: wharf_dir.join("builds/build"),
                tmp_dir: wharf_dir.join("tmp/build"),
                builds_dir_in_job: "/in-job".into(),
                project_dir_in_job: "/in-job/p".into(),
                tmp_dir_in_job: "/in-job/p.tmp".into(),
            },
            calls: Arc::clone(&calls),
            prepare_fails,
            step_exit,
        };
        let report = run_with(&ctx, &pipeline.jobs[0], executor).await;
        let log = std::fs::read_to_string(wharf_dir.join("logs/build.log")).unwrap();
        let calls = calls.lock().unwrap().clone();
        (report, calls, log)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_job_runs_its_phases_against_the_executor_with_the_executors_paths() {
        let (report, calls, _) = run_fake(false, 3).await;
        assert_eq!(
            calls,
            [
                "prepare CI_PROJECT_DIR=/in-job/p",
                "hand_over",
                "step_script CI_JOB_STATUS=-",
                "after_script CI_JOB_STATUS=failed",
                "cleanup",
            ]
        );
        assert_eq!(
            report.status,
            JobStatus::Failed {
                reason: FailureReason::ScriptFailure,
                exit_code: Some(3)
            }
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_failed_preparation_is_logged_once_with_its_fix_and_is_the_jobs_status() {
        let (report, calls, log) = run_fake(true, 0).await;
        // Cleaned up all the same: a preparation may have made something (a sandbox's state
        // folder) before it failed.
        assert_eq!(calls, ["prepare CI_PROJECT_DIR=/in-job/p", "cleanup"]);
        assert_eq!(log.matches("image `nope` is not here").count(), 1, "{log}");
        assert!(
            log.contains("ERROR: image `nope` is not here\n  fix: pull it\n"),
            "{log}"
        );
        assert_eq!(
            report.status,
            JobStatus::Failed {
                reason: FailureReason::RunnerConfigurationError,
                exit_code: None
            }
        );
    }
}
