//! Runs a pipeline: stages in order, jobs' variables, caches, artifacts, and the executor per job.

use crate::engine::{ContainerSpec, Engine, EngineError, PullEvent, PullFailure};
use crate::files::{self, slug};
use crate::log::JobLog;
use crate::mask::Masker;
use crate::report::{FailureReason, JobReport, JobStatus};
use crate::script;
use crate::services;
use crate::vars::VarSet;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{OnceCell, mpsc, watch};
use wharf_ci::{CacheWhen, Job, Pipeline, PullPolicy};
use wharf_oci::{CredentialSources, ImageRef, Secret};

/// Everything a job needs from its pipeline run, borrowed from the pipeline's shared state
/// (see `dag.rs`); built per job run.
pub(crate) struct Ctx<'a> {
    pub(crate) opts: &'a crate::options::RunOptions,
    pub(crate) pipeline: &'a Pipeline,
    pub(crate) wharf_dir: PathBuf,
    pub(crate) project_name: String,
    pub(crate) snapshot: &'a [PathBuf],
    pub(crate) pipeline_id: u64,
    pub(crate) engine: &'a OnceCell<Result<Engine, String>>,
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

/// Where a job runs and how paths look from inside it.
struct Layout {
    build_dir: PathBuf,
    tmp_dir: PathBuf,
    /// `CI_PROJECT_DIR` as the job sees it.
    project_dir_in_job: String,
    tmp_dir_in_job: String,
}

pub(crate) async fn run_job(ctx: &Ctx<'_>, job: &Job) -> JobReport {
    let job_id = ctx.run.job_id;
    let started = Instant::now();
    let slug = slug(&job.name);
    let use_docker = match ctx.opts.executor {
        crate::options::ExecutorChoice::Docker => true,
        crate::options::ExecutorChoice::Shell => false,
        crate::options::ExecutorChoice::Auto => job.image.is_some(),
    };
    let build_dir = ctx.wharf_dir.join("builds").join(&slug);
    let tmp_dir = ctx.wharf_dir.join("tmp").join(&slug);
    let layout = if use_docker {
        let p = format!("/builds/{}", ctx.project_name);
        Layout {
            build_dir,
            tmp_dir,
            tmp_dir_in_job: format!("{p}.tmp"),
            project_dir_in_job: p,
        }
    } else {
        Layout {
            project_dir_in_job: build_dir.to_string_lossy().into_owned(),
            tmp_dir_in_job: tmp_dir.to_string_lossy().into_owned(),
            build_dir,
            tmp_dir,
        }
    };

    let vars = job_variables(ctx, job, job_id, &layout, use_docker);
    let job_auth_config = vars.docker_auth_config();
    let masker = Masker::for_variables(&vars, ctx.opts.env.docker_auth_config.as_deref());
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

    let mut outcome = if use_docker {
        run_in_docker(ctx, job, &vars, job_auth_config, &layout, &mut log).await
    } else {
        log.section("Preparing the \"shell\" executor");
        if let Some(image) = &job.image {
            log.warn(&format!(
                "`image: {}` ignored by the shell executor",
                image.name
            ));
        }
        match tokio::task::block_in_place(|| prepare(ctx, job, &vars, &layout, &mut log)) {
            Err(o) => o,
            Ok(env) => run_in_shell(ctx, job, env, &layout, &mut log).await,
        }
    };

    if matches!(outcome, JobStatus::Canceled)
        && ctx.run.timed_out.load(std::sync::atomic::Ordering::SeqCst)
    {
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
        let uploaded = tokio::task::block_in_place(|| {
            save_caches(ctx, job, &vars, &layout, ok, &mut log);
            upload_artifacts(ctx, job, &vars, &layout, ok, &mut log)
        });
        if let Err(failure) = uploaded {
            if ok {
                outcome = failure;
            }
        }
        // GitLab collects reports whatever the job's result.
        if let Err(failure) = save_dotenv_reports(ctx, job, &layout, &mut log) {
            if matches!(outcome, JobStatus::Passed) {
                outcome = failure;
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

fn finish(job: &Job, started: Instant, status: JobStatus) -> JobReport {
    JobReport::new(job, status, started.elapsed())
}

/// `coverage:`: the last match of the job's regex in its log, as a percentage.
fn coverage_of(job: &Job, log_path: &Path) -> Option<String> {
    let pattern = job.coverage.as_ref()?;
    use std::io::BufRead as _;
    let re = regex::Regex::new(pattern).ok()?;
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

/// Where a job's `artifacts: reports: dotenv` variables are kept for later jobs.
pub(crate) fn dotenv_path(wharf_dir: &Path, job_name: &str) -> PathBuf {
    wharf_dir
        .join("dotenv")
        .join(format!("{}.json", slug(job_name)))
}

/// GitLab's default limits on `artifacts: reports: dotenv` (its plan limits `dotenv_size` and
/// `dotenv_variables`): the files of one job together hold less than 5 KiB and at most 20
/// variables.
pub const DOTENV_MAX_BYTES: u64 = 5 * 1024;
pub const DOTENV_MAX_VARIABLES: usize = 20;

/// Read the job's dotenv reports from its build folder and keep their variables for later jobs.
/// The files are read confined to the build folder (an absolute path, `..` or a symbolic link is
/// refused), within GitLab's limits; names follow GitLab's grammar. Any of that wrong: nothing is
/// kept and the job fails, as GitLab refuses such an artifact.
fn save_dotenv_reports(
    ctx: &Ctx<'_>,
    job: &Job,
    layout: &Layout,
    log: &mut JobLog,
) -> Result<(), JobStatus> {
    let Some(art) = &job.artifacts else {
        return Ok(());
    };
    if art.reports_dotenv.is_empty() {
        return Ok(());
    }
    let dest = dotenv_path(&ctx.wharf_dir, &job.name);
    let vars = match read_dotenv_reports(&layout.build_dir, &art.reports_dotenv, log) {
        Ok(vars) => vars,
        Err(e) => {
            log.error(&format!("artifacts: reports: dotenv ({}): {e}", art.span));
            // Later jobs must not see a previous run's variables instead.
            let _ = std::fs::remove_file(&dest);
            return Err(config_error());
        }
    };
    let written = dest
        .parent()
        .map(std::fs::create_dir_all)
        .unwrap_or(Ok(()))
        .and_then(|()| {
            let json = serde_json::to_string(&vars).map_err(std::io::Error::other)?;
            write_private(&dest, &json)
        });
    match written {
        Ok(()) => log.info(&format!(
            "Saved {} dotenv report variables for later jobs",
            vars.len()
        )),
        Err(e) => log.warn(&format!("dotenv report not saved: {e}")),
    }
    Ok(())
}

/// The variables of the dotenv `files` in `build_dir`, later ones winning (see
/// [`save_dotenv_reports`] for the rules).
fn read_dotenv_reports(
    build_dir: &Path,
    files: &[String],
    log: &mut JobLog,
) -> Result<Vec<(String, String)>, String> {
    use std::io::Read as _;
    let build = files::job_tree(build_dir).map_err(|e| e.to_string())?;
    let mut total: u64 = 0;
    let mut vars: indexmap::IndexMap<String, String> = indexmap::IndexMap::new();
    for file in files {
        let opened = match build.open_read(file) {
            Ok(f) => f,
            // As GitLab: a report the job did not write is a warning, not a failure.
            Err(e) if e.is_not_found() => {
                log.warn(&format!(
                    "artifacts: reports: dotenv: {file}: no matching files"
                ));
                continue;
            }
            Err(wharf_fs::Error::WrongKind { found, .. }) => {
                return Err(format!(
                    "{file} is {found}: a dotenv report must be a regular file inside the project folder"
                ));
            }
            Err(other) => return Err(other.to_string()),
        };
        // Never read more than the limit, whatever the file's size claims.
        let mut bytes = Vec::new();
        opened
            .take(DOTENV_MAX_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading {file}: {e}"))?;
        total += bytes.len() as u64;
        if total >= DOTENV_MAX_BYTES {
            return Err(format!(
                "the dotenv reports reach {DOTENV_MAX_BYTES} bytes: GitLab takes less than 5 KiB\n  fix: write fewer or shorter variables (pass the rest in an artifact file)"
            ));
        }
        let text = String::from_utf8_lossy(&bytes);
        for (name, value) in crate::parse_dotenv(file, &text)? {
            if !crate::vars::is_variable_name(&name) {
                return Err(format!(
                    "{file}: `{}` is not a valid variable name: letters, digits and `_` only, at most {} characters",
                    name.chars().take(64).collect::<String>(),
                    crate::vars::MAX_NAME_LEN
                ));
            }
            vars.insert(name, value);
        }
    }
    if vars.len() > DOTENV_MAX_VARIABLES {
        return Err(format!(
            "{} variables: GitLab takes at most {DOTENV_MAX_VARIABLES} from a job's dotenv reports\n  fix: write fewer variables (pass the rest in an artifact file)",
            vars.len()
        ));
    }
    Ok(vars.into_iter().collect())
}

/// The dotenv report variables of the jobs whose artifacts `job` takes, later jobs winning.
pub(crate) fn dotenv_for(ctx: &Ctx<'_>, job: &Job) -> Vec<(String, String)> {
    dependency_jobs(ctx, job)
        .into_iter()
        .filter_map(|d| std::fs::read_to_string(dotenv_path(&ctx.wharf_dir, &d.name)).ok())
        .filter_map(|text| serde_json::from_str::<Vec<(String, String)>>(&text).ok())
        .flatten()
        .collect()
}

fn config_error() -> JobStatus {
    JobStatus::Failed {
        reason: FailureReason::RunnerConfigurationError,
        exit_code: None,
    }
}

fn system_failure() -> JobStatus {
    JobStatus::Failed {
        reason: FailureReason::RunnerSystemFailure,
        exit_code: None,
    }
}

fn job_variables(ctx: &Ctx<'_>, job: &Job, job_id: u64, layout: &Layout, docker: bool) -> VarSet {
    let builds_dir = if docker {
        "/builds".to_string()
    } else {
        ctx.wharf_dir.join("builds").to_string_lossy().into_owned()
    };
    let predefined =
        crate::predefined::job_runtime(job, job_id, builds_dir, layout.project_dir_in_job.clone());
    ctx.sources.build(
        &predefined,
        &job.variables,
        job.inherit_variables.as_deref(),
        &ctx.run.dotenv,
    )
}

/// Fresh build folder with the project's files, the job's caches and its dependencies' artifacts;
/// file-type variables written. Returns the environment for the job.
fn prepare(
    ctx: &Ctx<'_>,
    job: &Job,
    vars: &VarSet,
    layout: &Layout,
    log: &mut JobLog,
) -> Result<Vec<(String, String)>, JobStatus> {
    log.section("Preparing environment");
    let fail = |log: &mut JobLog, e: files::FilesError| {
        log.error(&e.to_string());
        system_failure()
    };
    // Emptied, not recreated: the job's services may already have the build folder mounted.
    files::clear_dir(&layout.build_dir).map_err(|e| fail(log, e))?;
    files::clear_dir(&layout.tmp_dir).map_err(|e| fail(log, e))?;
    log.section("Getting source from the project folder");
    files::copy_files(&ctx.opts.project_dir, ctx.snapshot, &layout.build_dir)
        .map_err(|e| fail(log, e))?;
    log.info(&format!(
        "Copied {} files into {}",
        ctx.snapshot.len(),
        layout.project_dir_in_job
    ));

    // Caches (crate::cache): keys, fallback keys, per-key locks.
    crate::cache::restore(&job.cache, vars, &cache_dirs(ctx, layout), log)
        .map_err(|e| fail(log, e))?;

    let deps: Vec<&Job> = dependency_jobs(ctx, job);
    let with_artifacts: Vec<(&Job, PathBuf)> = deps
        .into_iter()
        .map(|d| (d, ctx.wharf_dir.join("artifacts").join(slug(&d.name))))
        .filter(|(_, p)| p.is_dir())
        .collect();
    if !with_artifacts.is_empty() {
        log.section("Downloading artifacts");
        let build = files::job_tree(&layout.build_dir).map_err(|e| fail(log, e))?;
        for (dep, dir) in with_artifacts {
            log.info(&format!("Downloading artifacts for {}", dep.name));
            let skipped = files::restore_tree(&dir, &build).map_err(|e| fail(log, e))?;
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
                log.error(&format!(
                    "file variable `{}`: a variable name is made of letters, digits and `_`, at most {} characters",
                    var.name.chars().take(64).collect::<String>(),
                    crate::vars::MAX_NAME_LEN
                ));
                return Err(config_error());
            }
            if let Err(e) = write_job_tmp(layout, &var.name, &value) {
                return Err(fail(log, e.into()));
            }
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

/// Write `name` (a script, a file variable) in the job's temporary folder. That folder is
/// mounted into the job's container, so the job may have left a link or anything else under that
/// name: the file is written under a temporary name and renamed over it, never through it.
fn write_job_tmp(layout: &Layout, name: &str, value: &str) -> Result<(), wharf_fs::Error> {
    wharf_fs::Root::open(&layout.tmp_dir, wharf_fs::Resolve::NoSymlinks)?.replace_file(
        name,
        0o600,
        value.as_bytes(),
    )
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(value.as_bytes())
}

fn relative(ctx: &Ctx<'_>, p: &Path) -> String {
    p.strip_prefix(&ctx.opts.project_dir)
        .unwrap_or(p)
        .display()
        .to_string()
}

/// GitLab: artifacts of every job in earlier stages, or only those named in `dependencies`
/// (or `needs`).
fn dependency_jobs<'p>(ctx: &Ctx<'p>, job: &Job) -> Vec<&'p Job> {
    let stage_pos = |s: &str| {
        ctx.pipeline
            .stages
            .iter()
            .position(|x| x == s)
            .unwrap_or(usize::MAX)
    };
    let mine = stage_pos(&job.stage);
    // `dependencies` wins over `needs`; a need with `artifacts: false` brings none.
    let named: Option<Vec<&str>> = match (&job.dependencies, &job.needs) {
        (Some(deps), _) => Some(deps.iter().map(String::as_str).collect()),
        (None, Some(needs)) => Some(
            needs
                .iter()
                .filter(|n| n.artifacts)
                .map(|n| n.job.as_str())
                .collect(),
        ),
        (None, None) => None,
    };
    ctx.pipeline
        .jobs
        .iter()
        .filter(|d| match &named {
            Some(names) => names.contains(&d.name.as_str()),
            None => stage_pos(&d.stage) < mine,
        })
        .collect()
}

/// Where `crate::cache` finds the caches, the key files and the job's build folder.
fn cache_dirs<'c>(ctx: &'c Ctx<'_>, layout: &'c Layout) -> crate::cache::CacheDirs<'c> {
    crate::cache::CacheDirs {
        wharf_dir: &ctx.wharf_dir,
        project_dir: &ctx.opts.project_dir,
        snapshot: ctx.snapshot,
        build_dir: &layout.build_dir,
    }
}

fn when_matches(when: CacheWhen, ok: bool) -> bool {
    match when {
        CacheWhen::OnSuccess => ok,
        CacheWhen::OnFailure => !ok,
        CacheWhen::Always => true,
    }
}

fn save_caches(
    ctx: &Ctx<'_>,
    job: &Job,
    vars: &VarSet,
    layout: &Layout,
    ok: bool,
    log: &mut JobLog,
) {
    crate::cache::save(&job.cache, vars, &cache_dirs(ctx, layout), ok, log);
}

fn upload_artifacts(
    ctx: &Ctx<'_>,
    job: &Job,
    vars: &VarSet,
    layout: &Layout,
    ok: bool,
    log: &mut JobLog,
) -> Result<(), JobStatus> {
    let Some(art) = &job.artifacts else {
        return Ok(());
    };
    if !when_matches(art.when, ok) {
        return Ok(());
    }
    log.section(if ok {
        "Uploading artifacts for successful job"
    } else {
        "Uploading artifacts for failed job"
    });
    let project_dir = Some(layout.project_dir_in_job.as_str());
    let expand = |p: &String| files::relative_to_project(&vars.expand(p), project_dir);
    let mut paths: Vec<String> = art.paths.iter().map(expand).collect();
    // `reports:` other than dotenv are kept as files with the artifacts.
    let reports: Vec<String> = art.reports_other.iter().map(expand).collect();
    paths.extend(reports.iter().cloned());
    let exclude: Vec<String> = art.exclude.iter().map(expand).collect();
    let build = match files::job_tree(&layout.build_dir) {
        Ok(b) => b,
        Err(e) => {
            log.error(&format!("artifacts: {e}"));
            return Err(system_failure());
        }
    };
    let mut m = match files::match_paths(&build, &paths, &exclude) {
        Ok(m) => m,
        Err(e) => {
            log.error(&format!("artifacts: {e}"));
            return Err(config_error());
        }
    };
    if art.untracked {
        match files::untracked(&build, &ctx.opts.project_dir, ctx.snapshot, &exclude) {
            Ok(u) => m.add_entries(u),
            Err(e) => {
                log.error(&format!("artifacts: untracked files: {e}"));
                return Err(system_failure());
            }
        }
    }
    for p in &m.unmatched {
        log.warn(&format!("{p}: no matching files. Ensure that the artifact path is relative to the working directory"));
    }
    for (p, why) in &m.outside {
        log.warn(&format!("{p}: not uploaded: {why}"));
    }
    let dest = ctx.wharf_dir.join("artifacts").join(slug(&job.name));
    let meta_root = ctx.wharf_dir.join("artifacts");
    if m.entries.is_empty() {
        log.error("No files to upload");
        let _ = files::remove_tree(&dest);
        let _ = std::fs::remove_file(meta_root.join(format!("{}.json", slug(&job.name))));
        return Ok(());
    }
    match files::publish(&build, &m.entries, &dest) {
        Ok(skipped) => {
            crate::cache::warn_skipped(&skipped, log);
            for e in &m.entries {
                log.info(&format!(
                    "{}: found, saved to {}",
                    e.display(),
                    relative(ctx, &dest.join(e))
                ));
            }
            // `name` and `expire_in` are recorded, not acted on (wharf never expires artifacts).
            let meta = files::ArtifactsMeta {
                job: job.name.clone(),
                name: art
                    .name
                    .as_ref()
                    .map(|n| vars.expand(n))
                    .unwrap_or_else(|| "artifacts".to_string()),
                expire_in: art.expire_in.clone(),
                paths: m.entries.iter().map(|e| e.display().to_string()).collect(),
                reports,
                created: files::rfc3339_utc(std::time::SystemTime::now()),
            };
            if let Err(e) = files::write_artifacts_meta(&meta_root, &slug(&job.name), &meta) {
                log.warn(&format!("artifacts metadata not saved: {e}"));
            }
            Ok(())
        }
        Err(e) => {
            log.error(&format!("artifacts not saved: {e}"));
            Err(system_failure())
        }
    }
}

// ---------------------------------------------------------------- shell executor

async fn run_in_shell(
    ctx: &Ctx<'_>,
    job: &Job,
    env: Vec<(String, String)>,
    layout: &Layout,
    log: &mut JobLog,
) -> JobStatus {
    let shell = ["/bin/bash", "/usr/bin/bash", "/bin/sh"]
        .into_iter()
        .find(|s| Path::new(s).exists())
        .unwrap_or("sh");
    let runner = ShellScripts { shell, env, layout };
    run_job_scripts(ctx, job, layout, None, &runner, log).await
}

/// Where a job's scripts run: the host's shell or a container of the job's image.
trait ScriptRunner {
    /// Run one script named `name` (`step_script`, `after_script`); `job_status` is
    /// `CI_JOB_STATUS` for after_script.
    async fn run(
        &self,
        text: &str,
        name: &str,
        job_status: Option<&str>,
        cancel: &watch::Receiver<bool>,
        log: &mut JobLog,
    ) -> Result<i64, JobStatus>;
}

/// GitLab's script flow, the same for every executor: `before_script` + `script` in one shell,
/// then `after_script` in its own (also after a failure), which cannot fail the job.
async fn run_job_scripts(
    ctx: &Ctx<'_>,
    job: &Job,
    layout: &Layout,
    chown: Option<(&str, &[&str])>,
    runner: &impl ScriptRunner,
    log: &mut JobLog,
) -> JobStatus {
    let mut commands = job.before_script.clone();
    commands.extend(job.script.iter().cloned());
    log.section("Executing \"step_script\" stage of the job script");
    let step = script::build(&commands, &layout.project_dir_in_job, chown);
    let mut status = match runner
        .run(&step, "step_script", None, &ctx.opts.cancel, log)
        .await
    {
        Ok(0) => JobStatus::Passed,
        Ok(code) => JobStatus::Failed {
            reason: FailureReason::ScriptFailure,
            exit_code: Some(code),
        },
        Err(s) => s,
    };
    if after_script_runs(job, &status, &ctx.run) {
        log.section("Running after_script");
        let after = script::build(&job.after_script, &layout.project_dir_in_job, chown);
        let word = after_script_status_word(&status, &ctx.run);
        let cancel = &ctx.run.after_script_cancel;
        match runner
            .run(&after, "after_script", Some(word), cancel, log)
            .await
        {
            Ok(0) => {}
            Ok(code) => log.warn(&format!("after_script failed: exit code {code}")),
            Err(JobStatus::Canceled) => status = JobStatus::Canceled,
            Err(_) => {}
        }
    }
    status
}

struct ShellScripts<'a> {
    shell: &'a str,
    env: Vec<(String, String)>,
    layout: &'a Layout,
}

impl ScriptRunner for ShellScripts<'_> {
    async fn run(
        &self,
        text: &str,
        name: &str,
        job_status: Option<&str>,
        cancel: &watch::Receiver<bool>,
        log: &mut JobLog,
    ) -> Result<i64, JobStatus> {
        let mut env = self.env.clone();
        if let Some(word) = job_status {
            env.push((crate::predefined::CI_JOB_STATUS.into(), word.into()));
        }
        shell_script(self.shell, text, name, &env, self.layout, cancel, log).await
    }
}

fn job_status_word(status: &JobStatus) -> &'static str {
    match status {
        JobStatus::Passed => "success",
        JobStatus::Canceled => "canceled",
        _ => "failed",
    }
}

async fn shell_script(
    shell: &str,
    text: &str,
    name: &str,
    env: &[(String, String)],
    layout: &Layout,
    cancel: &watch::Receiver<bool>,
    log: &mut JobLog,
) -> Result<i64, JobStatus> {
    let path = layout.tmp_dir.join(format!("{name}.sh"));
    if let Err(e) = write_job_tmp(layout, &format!("{name}.sh"), text) {
        log.error(&format!("writing {}: {e}", path.display()));
        return Err(system_failure());
    }
    let mut cmd = tokio::process::Command::new(shell);
    cmd.arg(&path)
        .current_dir(&layout.build_dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            log.error(&format!("cannot start {shell}: {e}"));
            return Err(system_failure());
        }
    };
    // Bounded: a job printing faster than the log is written waits for it (its pipe fills)
    // instead of piling its output up in memory.
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(OUTPUT_CHUNKS_IN_FLIGHT);
    if let Some(out) = child.stdout.take() {
        pump(out, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        pump(err, tx.clone());
    }
    drop(tx);
    let mut cancel = cancel.clone();
    loop {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(c) => log.output(&c),
                None => break,
            },
            _ = cancel.changed() => {
                kill_group(&child);
                let _ = child.wait().await;
                log.flush_output();
                return Err(JobStatus::Canceled);
            }
        }
    }
    log.flush_output();
    match child.wait().await {
        Ok(status) => Ok(status.code().map(i64::from).unwrap_or(128 + 9)),
        Err(e) => {
            log.error(&format!("waiting for {shell}: {e}"));
            Err(system_failure())
        }
    }
}

/// Forward a pipe's bytes to the log channel until EOF.
fn pump<R>(mut reader: R, tx: mpsc::Sender<Vec<u8>>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    });
}

/// Chunks (of at most 16 KiB) of a job's output waiting to be logged: at most 1 MiB held.
const OUTPUT_CHUNKS_IN_FLIGHT: usize = 64;

fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
    }
}

// ---------------------------------------------------------------- docker executor

async fn run_in_docker(
    ctx: &Ctx<'_>,
    job: &Job,
    vars: &VarSet,
    job_auth_config: Option<String>,
    layout: &Layout,
    log: &mut JobLog,
) -> JobStatus {
    log.section("Preparing the \"docker\" executor");
    let Some(image_spec) = &job.image else {
        log.error(&format!(
            "job `{}` ({}) has no `image:` but --executor docker was asked for\n  fix: add `image: <name>` to the job or to `default:`, or use `--executor auto`",
            job.name, job.span
        ));
        return config_error();
    };
    let image_name = vars.expand(&image_spec.name);
    let image_ref = match ImageRef::parse(&image_name) {
        Ok(r) => r,
        Err(e) => {
            log.error(&format!("{}: {e}", image_spec.span));
            return config_error();
        }
    };
    let engine = match ctx
        .engine
        .get_or_init(|| async {
            Engine::connect(ctx.opts.env.docker_host.as_deref())
                .await
                .map_err(|e| e.to_string())
        })
        .await
    {
        Ok(e) => e,
        Err(e) => {
            log.error(e);
            return config_error();
        }
    };
    log.info(&format!(
        "Using Docker executor with image {image_name} ..."
    ));

    if let Err(status) = pull_image(
        ctx,
        engine,
        &image_name,
        &image_ref,
        &image_spec.pull_policy,
        job_auth_config.as_deref(),
        log,
    )
    .await
    {
        return status;
    }

    // ---- services (crate::services): pulled like the job image, started before the job.
    let planned = match services::plan(job, vars, log) {
        Ok(p) => p,
        Err(s) => return s,
    };
    for svc in &planned {
        log.info(&format!("Starting service {} ...", svc.image));
        if let Err(status) = pull_image(
            ctx,
            engine,
            &svc.image,
            &svc.image_ref,
            &svc.pull_policy,
            job_auth_config.as_deref(),
            log,
        )
        .await
        {
            return status;
        }
    }
    let container_prefix = format!(
        "wharf-{}-{}-{}",
        ctx.project_name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>(),
        ctx.pipeline_id,
        slug(&job.name)
    );
    let labels = HashMap::from([
        ("wharf.job".to_string(), job.name.clone()),
        ("wharf.pipeline".to_string(), ctx.pipeline_id.to_string()),
    ]);
    // GitLab mounts the builds volume into every service too (a service sees the job's files
    // at the same path, e.g. for `docker run -v $CI_PROJECT_DIR:...` against a dind service).
    // The folder exists before the services start and is filled in place afterwards.
    let builds_bind = if planned.is_empty() {
        Vec::new()
    } else {
        if let Err(e) = files::clear_dir(&layout.build_dir) {
            log.error(&e.to_string());
            return system_failure();
        }
        vec![format!(
            "{}:{}",
            layout.build_dir.display(),
            layout.project_dir_in_job
        )]
    };
    let start = services::StartOptions {
        name_prefix: &container_prefix,
        labels: &labels,
        binds: &builds_bind,
        timeout: services::DEFAULT_TIMEOUT,
        cancel: ctx.opts.cancel.clone(),
    };
    let services = match services::start(engine, &planned, start, log).await {
        Ok(s) => s,
        Err(s) => return s,
    };
    // ---- end services

    let env = match prepare(ctx, job, vars, layout, log) {
        Ok(env) => env,
        Err(s) => {
            services.remove(engine).await;
            return s;
        }
    };
    let net = services.job_network(engine, log).await;
    let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let owner = host_owner();
    let dirs = [
        layout.project_dir_in_job.as_str(),
        layout.tmp_dir_in_job.as_str(),
    ];
    let chown = owner.as_deref().map(|o| (o, &dirs[..]));

    let runner = ContainerScripts {
        ctx,
        engine,
        job,
        image_name: &image_name,
        image_spec,
        env,
        layout,
        net: &net,
    };
    let status = run_job_scripts(ctx, job, layout, chown, &runner, log).await;
    services.remove(engine).await;
    status
}

/// Resolve credentials for `image_name` (GitLab's sources and rules), then make sure dockerd has
/// the image under the pull policies (`--pull-policy` wins over the pipeline's). Used for the job
/// image and for every service image.
async fn pull_image(
    ctx: &Ctx<'_>,
    engine: &Engine,
    image_name: &str,
    image_ref: &ImageRef,
    pull_policy: &[PullPolicy],
    job_auth_config: Option<&str>,
    log: &mut JobLog,
) -> Result<(), JobStatus> {
    let sources = CredentialSources {
        job_auth_config: job_auth_config.map(|c| Secret(c.to_string())),
        runner_auth_config: ctx.opts.env.docker_auth_config.clone().map(Secret),
        docker_config_dir: ctx.opts.env.docker_config.clone(),
        home_dir: ctx.opts.env.home.clone(),
        path: ctx.opts.env.path.clone(),
    };
    // Credential helpers are programs: run them off the async workers.
    let resolution = tokio::task::block_in_place(|| wharf_oci::resolve(image_ref, &sources));
    for w in &resolution.warnings {
        log.warn(w);
    }
    let auth = resolution.found.as_ref().map(|f| f.auth.clone());
    if let Some(found) = &resolution.found {
        // Secrets from helpers are only known now: register them before anything else is logged.
        for s in found.auth.secrets() {
            log.add_secret(&s);
        }
        log.info(&format!(
            "Authenticating with credentials from {}",
            found.source
        ));
    }

    let policies: Vec<PullPolicy> = match (ctx.opts.pull_policy, pull_policy.is_empty()) {
        (Some(p), _) => vec![p],
        (None, false) => pull_policy.to_vec(),
        (None, true) => vec![PullPolicy::Always],
    };
    let known = ensure_image(
        ctx,
        engine,
        image_name,
        image_ref,
        &policies,
        auth.as_ref(),
        &resolution,
        log,
    )
    .await?;
    let info = match known {
        Some(info) => Ok(Some(info)),
        None => engine.inspect_image(image_name).await,
    };
    match info {
        Ok(Some(info)) => {
            let digest = info
                .repo_digests
                .first()
                .map(|d| format!(" with digest {d}"))
                .unwrap_or_default();
            log.info(&format!(
                "Using docker image {} for {image_name}{digest} ...",
                info.id
            ));
        }
        Ok(None) => {}
        Err(e) => log.warn(&e.to_string()),
    }
    Ok(())
}

/// `uid:gid` to give files back to when wharf does not run as root.
fn host_owner() -> Option<String> {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return None;
    }
    Some(format!(
        "{}:{}",
        uid.as_raw(),
        rustix::process::getegid().as_raw()
    ))
}

#[allow(clippy::too_many_arguments)]
async fn ensure_image(
    ctx: &Ctx<'_>,
    engine: &Engine,
    image_name: &str,
    image_ref: &ImageRef,
    policies: &[PullPolicy],
    auth: Option<&wharf_oci::RegistryAuth>,
    resolution: &wharf_oci::Resolution,
    log: &mut JobLog,
) -> Result<Option<crate::engine::ImageInfo>, JobStatus> {
    let mut last: Option<JobStatus> = None;
    for (attempt, policy) in policies.iter().enumerate() {
        if attempt > 0 {
            log.info(&format!(
                "Attempt #{}: Trying \"{}\" pull policy",
                attempt + 1,
                policy.as_str()
            ));
        }
        // `always` pulls whatever is there: asking the daemon first would be a wasted round trip.
        let local = match policy {
            PullPolicy::Always => None,
            _ => engine.inspect_image(image_name).await.ok().flatten(),
        };
        let result = match policy {
            PullPolicy::IfNotPresent if local.is_some() => {
                log.info("Using locally found image version due to \"if-not-present\" pull policy");
                Ok(local)
            }
            PullPolicy::Never if local.is_some() => Ok(local),
            PullPolicy::Never => {
                log.error(&format!(
                    "image {image_name} is not present locally and the pull policy is \"never\"\n  fix: pull it first (`docker pull {image_name}`) or allow pulling with `--pull-policy if-not-present`"
                ));
                Err(config_error())
            }
            _ => pull_with_retries(ctx, engine, image_name, image_ref, auth, resolution, log)
                .await
                .map(|()| None),
        };
        match result {
            Ok(info) => return Ok(info),
            Err(s) => {
                if attempt + 1 < policies.len() {
                    log.warn(&format!(
                        "Failed to pull image with policy \"{}\"",
                        policy.as_str()
                    ));
                }
                last = Some(s);
            }
        }
    }
    Err(last.unwrap_or_else(config_error))
}

async fn pull_with_retries(
    ctx: &Ctx<'_>,
    engine: &Engine,
    image_name: &str,
    image_ref: &ImageRef,
    auth: Option<&wharf_oci::RegistryAuth>,
    resolution: &wharf_oci::Resolution,
    log: &mut JobLog,
) -> Result<(), JobStatus> {
    let tries = ctx.opts.pull_retry_delays.len() + 1;
    for attempt in 0..tries {
        log.info(&format!("Pulling docker image {image_name} ..."));
        let color = ctx.opts.console.color;
        let prefixed = log.is_prefixed();
        let console = ctx.opts.console.clone();
        let mut statuses = Vec::new();
        let result = {
            let mut on_event = |ev: PullEvent| match ev {
                PullEvent::Status(s) => statuses.push(s),
                // Progress bars redraw one line: only when this job has the console to itself.
                PullEvent::Progress(p) if color && !prefixed => {
                    console.write(format!("\r\x1b[2K{p}").as_bytes())
                }
                PullEvent::Progress(_) => {}
            };
            let mut cancel = ctx.opts.cancel.clone();
            tokio::select! {
                r = engine.pull(image_name, auth, &mut on_event) => r,
                _ = cancel.changed() => return Err(JobStatus::Canceled),
            }
        };
        if color && !prefixed {
            console.write(b"\r\x1b[2K");
        }
        for s in statuses {
            log.info(&s);
        }
        let failure = match result {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        let registry = &image_ref.registry;
        match failure {
            PullFailure::Network(msg) if attempt + 1 < tries => {
                let delay = ctx.opts.pull_retry_delays[attempt];
                log.warn(&format!(
                    "Failed to pull image {image_name}: cannot reach registry {registry}: {msg}\nWill be retried in {:.0?} ...",
                    delay
                ));
                tokio::time::sleep(delay).await;
            }
            PullFailure::Network(msg) => {
                log.error(&format!(
                    "Failed to pull image {image_name}: cannot reach registry {registry} after {tries} attempts: {msg}\n  fix: check that the registry is up and reachable from the Docker daemon"
                ));
                return Err(JobStatus::Failed {
                    reason: FailureReason::ExternalDependencyFailure,
                    exit_code: None,
                });
            }
            // Without credentials, a registry's "denied" also means "tell me who you are".
            PullFailure::NoCredentials(msg) | PullFailure::Denied(msg)
                if resolution.found.is_none() =>
            {
                log.error(&format!("Failed to pull image {image_name}: registry {registry} requires credentials ({msg})"));
                log.error(&resolution.explain_missing(image_ref));
                return Err(config_error());
            }
            PullFailure::NoCredentials(msg) | PullFailure::Denied(msg) => {
                let source = resolution
                    .found
                    .as_ref()
                    .map(|f| f.source.as_str())
                    .unwrap_or("none");
                let key = resolution
                    .found
                    .as_ref()
                    .map(|f| f.key.as_str())
                    .unwrap_or(registry);
                log.error(&format!(
                    "Failed to pull image {image_name}: registry {registry} rejected the credentials from {source} (entry \"{key}\"): {msg}\n  fix: check the username and password of that entry (run `wharf login {registry} -u <user> --password-stdin` to test and store new ones), and that the user may pull {}",
                    image_ref.repository
                ));
                return Err(config_error());
            }
            PullFailure::NotFound(msg) => {
                log.error(&format!(
                    "Failed to pull image {image_name}: not found on registry {registry}: {msg}\n  fix: check the image name and tag in `image:`"
                ));
                return Err(config_error());
            }
            PullFailure::Other(msg) => {
                log.error(&format!("Failed to pull image {image_name}: {msg}"));
                return Err(JobStatus::Failed {
                    reason: FailureReason::ImagePullFailure,
                    exit_code: None,
                });
            }
        }
    }
    Err(config_error())
}

struct ContainerScripts<'a, 'c> {
    ctx: &'a Ctx<'c>,
    engine: &'a Engine,
    job: &'a Job,
    image_name: &'a str,
    image_spec: &'a wharf_ci::Image,
    env: Vec<String>,
    layout: &'a Layout,
    net: &'a services::JobNetwork,
}

impl ScriptRunner for ContainerScripts<'_, '_> {
    async fn run(
        &self,
        text: &str,
        name: &str,
        job_status: Option<&str>,
        cancel: &watch::Receiver<bool>,
        log: &mut JobLog,
    ) -> Result<i64, JobStatus> {
        let mut env = self.env.clone();
        if let Some(word) = job_status {
            env.push(format!("{}={word}", crate::predefined::CI_JOB_STATUS));
        }
        container_script(
            self.ctx,
            self.engine,
            self.job,
            self.image_name,
            self.image_spec,
            text,
            name,
            &env,
            self.layout,
            self.net,
            cancel,
            log,
        )
        .await
    }
}

#[allow(clippy::too_many_arguments)]
async fn container_script(
    ctx: &Ctx<'_>,
    engine: &Engine,
    job: &Job,
    image_name: &str,
    image_spec: &wharf_ci::Image,
    text: &str,
    name: &str,
    env: &[String],
    layout: &Layout,
    net: &services::JobNetwork,
    cancel: &watch::Receiver<bool>,
    log: &mut JobLog,
) -> Result<i64, JobStatus> {
    let path = layout.tmp_dir.join(format!("{name}.sh"));
    if let Err(e) = write_job_tmp(layout, &format!("{name}.sh"), text) {
        log.error(&format!("writing {}: {e}", path.display()));
        return Err(system_failure());
    }
    let mut labels = HashMap::new();
    labels.insert("wharf.job".to_string(), job.name.clone());
    labels.insert("wharf.pipeline".to_string(), ctx.pipeline_id.to_string());
    let spec = ContainerSpec {
        name: format!(
            "wharf-{}-{}-{}-{name}",
            ctx.project_name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>(),
            ctx.pipeline_id,
            slug(&job.name)
        ),
        image: image_name.to_string(),
        entrypoint: image_spec.entrypoint.clone(),
        cmd: vec![
            "sh".into(),
            "-c".into(),
            script::DETECT_SHELL.into(),
            "sh".into(),
            format!("{}/{name}.sh", layout.tmp_dir_in_job),
        ],
        env: env.to_vec(),
        binds: vec![
            format!(
                "{}:{}",
                layout.build_dir.display(),
                layout.project_dir_in_job
            ),
            format!("{}:{}", layout.tmp_dir.display(), layout.tmp_dir_in_job),
        ],
        working_dir: layout.project_dir_in_job.clone(),
        labels,
        user: None,
        network_mode: net.network_mode.clone(),
        extra_hosts: net.extra_hosts.clone(),
    };
    let id = match engine.create(&spec).await {
        Ok(id) => id,
        Err(e) => {
            log.error(&format!(
                "creating the job container from {image_name}: {e}"
            ));
            return Err(system_failure());
        }
    };
    let mut cancel = cancel.clone();
    let result = engine
        .run(&id, &mut |bytes| log.output(bytes), &mut cancel)
        .await;
    log.flush_output();
    // Always removed, whatever happened above.
    engine.remove(&id).await;
    match result {
        Ok(code) => Ok(code),
        Err(EngineError::Canceled) => Err(JobStatus::Canceled),
        Err(e) => {
            log.error(&e.to_string());
            Err(system_failure())
        }
    }
}

// ---------------------------------------------------------------- helpers

pub(crate) fn next_id(path: &Path) -> u64 {
    let n = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let _ = std::fs::write(path, n.to_string());
    n
}

/// The closest name by edit distance, if close enough to be a plausible typo.
pub fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(name, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Console;

    fn dotenv(build: &Path, files: &[&str]) -> Result<Vec<(String, String)>, String> {
        let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        let console = Console::new(false, Box::new(std::io::sink()));
        let mut log = JobLog::create(
            console,
            &build.join("job.log"),
            Masker::new(Vec::<String>::new()),
        )
        .unwrap();
        read_dotenv_reports(build, &files, &mut log)
    }

    #[test]
    fn dotenv_reports_are_confined_limited_and_named_as_gitlab_wants() {
        let outside = tempfile::tempdir().unwrap();
        let host_file = outside.path().join("hostname");
        std::fs::write(&host_file, "LEAK=host\n").unwrap();
        let d = tempfile::tempdir().unwrap();
        let build = d.path();
        std::fs::write(build.join("ok.env"), "A=1\nB=two\n").unwrap();
        std::fs::write(build.join("later.env"), "A=3\n").unwrap();
        assert_eq!(
            dotenv(build, &["ok.env", "missing.env", "later.env"]).unwrap(),
            [("A".into(), "3".into()), ("B".into(), "two".into())]
        );
        let warned = std::fs::read_to_string(build.join("job.log")).unwrap();
        assert!(
            warned.contains("missing.env: no matching files"),
            "{warned}"
        );

        std::os::unix::fs::symlink(&host_file, build.join("link.env")).unwrap();
        std::os::unix::fs::symlink(outside.path(), build.join("dir")).unwrap();
        let absolute = host_file.to_str().unwrap().to_string();
        let dotdot = format!("{}{}", "../".repeat(30), absolute.trim_start_matches('/'));
        for bad in [
            "link.env",
            "dir/hostname",
            absolute.as_str(),
            dotdot.as_str(),
        ] {
            let e = dotenv(build, &[bad]).unwrap_err();
            assert!(!e.contains("LEAK"), "{e}");
            assert!(
                e.contains("symbolic link") || e.contains("outside") || e.contains("absolute"),
                "{bad}: {e}"
            );
        }

        let many: String = (0..21).map(|i| format!("V{i}={i}\n")).collect();
        std::fs::write(build.join("many.env"), many).unwrap();
        assert!(
            dotenv(build, &["many.env"])
                .unwrap_err()
                .contains("at most 20")
        );
        let twenty: String = (0..20).map(|i| format!("V{i}={i}\n")).collect();
        std::fs::write(build.join("twenty.env"), twenty).unwrap();
        assert_eq!(dotenv(build, &["twenty.env"]).unwrap().len(), 20);

        let big = format!("BIG={}\n", "x".repeat(5200));
        std::fs::write(build.join("big.env"), big).unwrap();
        assert!(
            dotenv(build, &["big.env"])
                .unwrap_err()
                .contains("less than 5 KiB")
        );

        std::fs::write(build.join("name.env"), "BAD.NAME=1\n").unwrap();
        assert!(
            dotenv(build, &["name.env"])
                .unwrap_err()
                .contains("`BAD.NAME` is not a valid variable name")
        );
    }

    #[test]
    fn files_in_the_tmp_folder_replace_a_link_left_there_never_write_through_it() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("after-target");
        let d = tempfile::tempdir().unwrap();
        let layout = Layout {
            build_dir: d.path().join("build"),
            tmp_dir: d.path().join("tmp"),
            project_dir_in_job: String::new(),
            tmp_dir_in_job: String::new(),
        };
        std::fs::create_dir_all(&layout.tmp_dir).unwrap();
        std::os::unix::fs::symlink(&target, layout.tmp_dir.join("after_script.sh")).unwrap();
        write_job_tmp(&layout, "after_script.sh", "echo after").unwrap();
        assert!(!target.exists());
        assert_eq!(
            std::fs::read_to_string(layout.tmp_dir.join("after_script.sh")).unwrap(),
            "echo after"
        );
        assert!(write_job_tmp(&layout, "../escape", "x").is_err());
        assert!(!d.path().join("escape").exists());
    }
}
