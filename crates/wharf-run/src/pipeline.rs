//! Drives a pipeline's jobs as a DAG: plans it (rules, selection), then drives the [`Scheduler`]
//! with real jobs: each job runs in its own task the moment the scheduler lets it, with its retries,
//! its timeout, and child pipelines for `trigger:` jobs.

use crate::engine::Engine;
use crate::files::{self, slug};
use crate::git::GitInfo;
use crate::job::{self, Ctx, JobRun};
use crate::log::Console;
use crate::mask::Masker;
use crate::options::{RunError, RunOptions};
use crate::plan::{self, Plan, Selection};
use crate::predefined;
use crate::report::{FailureReason, JobReport, JobStatus, PipelineReport};
use crate::scheduler::{Action, Node, Outcome, Scheduler};
use crate::vars::VarSources;
use serde_json::json;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, mpsc, watch};
use wharf_ci::{FileVariable, Job, Pipeline, When};

/// GitLab's default job timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// What every job of one pipeline (or child pipeline) run shares.
struct Shared {
    opts: RunOptions,
    pipeline: Pipeline,
    wharf_dir: PathBuf,
    project_name: String,
    snapshot: Vec<PathBuf>,
    pipeline_id: u64,
    engine: OnceCell<Result<Engine, String>>,
    sources: VarSources,
    git: Arc<GitInfo>,
    /// Job ids are unique per run of a job: `pipeline_id * 1000 + n`.
    next_job: Arc<AtomicU64>,
    /// `trigger-job > ` for the jobs of a child pipeline.
    name_prefix: String,
    /// Masks the JSON events: a value there (an `environment: name`, a skip reason) may come
    /// from a masked variable.
    masker: Masker,
}

enum Msg {
    Finished(usize, JobReport),
    DelayOver(usize),
    /// The jobs of a child pipeline, reported under their trigger job.
    Downstream(usize, Vec<JobReport>),
    /// A trigger job's child pipeline has ended (after `Finished`).
    ChildDone,
}

/// Run the pipeline: evaluate `workflow: rules` and the jobs' rules, then run the selected jobs
/// as soon as their `needs` (or earlier stages) allow, `opts.concurrency` at a time.
pub async fn run_pipeline(
    pipeline: &Pipeline,
    opts: &RunOptions,
) -> Result<PipelineReport, RunError> {
    let started = Instant::now();
    let wharf_dir = opts.project_dir.join(".wharf");
    create_dir(&wharf_dir)?;
    let git = Arc::new(GitInfo::read(&opts.project_dir));
    let project_name = predefined::project_name(&opts.project_dir);
    let pipeline_id = next_id(&wharf_dir.join("pipeline-id"));
    let mut sources = VarSources {
        predefined: predefined::pipeline(&project_name, pipeline_id, &git),
        global: pipeline.variables.clone(),
        workflow: Vec::new(),
        file: opts.file_variables.clone(),
        cli: opts.cli_variables.clone(),
    };
    let plan = plan::plan(pipeline, &sources, &git, &opts.project_dir, &opts.selection)?;
    let masker = event_masker(pipeline, &sources, opts);
    let names: Vec<&str> = plan.selected().map(|(_, j)| j.job.name.as_str()).collect();
    emit(
        &opts.events,
        &masker,
        json!({"type": "pipeline_started", "pipeline_id": pipeline_id, "jobs": names}),
    );
    let workflow = match &plan.workflow {
        Ok(w) => w.clone(),
        Err(why) => {
            // Said once, by the report's summary, which `wharf run` prints.
            let report = PipelineReport {
                not_created: Some(why.clone()),
                ..Default::default()
            };
            emit(
                &opts.events,
                &masker,
                json!({"type": "pipeline_finished", "status": "not_created", "reason": why,
                       "duration_ms": started.elapsed().as_millis() as u64}),
            );
            return Ok(report);
        }
    };
    sources.workflow = workflow.variables;
    let masker = event_masker(pipeline, &sources, opts);
    let shared = Arc::new(Shared {
        snapshot: files::snapshot(&opts.project_dir)?,
        opts: opts.clone(),
        pipeline: pipeline.clone(),
        wharf_dir,
        project_name,
        pipeline_id,
        engine: OnceCell::new(),
        sources,
        git,
        next_job: Arc::new(AtomicU64::new(0)),
        name_prefix: String::new(),
        masker: masker.clone(),
    });
    let report = run_plan(shared, plan).await;
    let status = if report.canceled {
        "canceled"
    } else if report.passed() {
        "passed"
    } else {
        "failed"
    };
    emit(
        &opts.events,
        &masker,
        json!({"type": "pipeline_finished", "status": status,
               "duration_ms": started.elapsed().as_millis() as u64}),
    );
    Ok(report)
}

/// One job handed over whole instead of planned from a pipeline file: a GitLab runner's job
/// payload (`wharf runner`). It runs through the same phases, executors, timeout and cancel
/// signal as a job of [`run_pipeline`], with no rules, scheduler, retries or dependencies
/// (GitLab did those). `variables` are the job's as GitLab computed them (predefined ones
/// included): they win over wharf's own predefined variables and are the only others. The
/// project folder holds the job's sources; `wharf_dir` its logs, caches and build folders.
pub async fn run_single_job(
    job: &Job,
    variables: Vec<FileVariable>,
    opts: &RunOptions,
    wharf_dir: PathBuf,
) -> Result<JobReport, RunError> {
    create_dir(&wharf_dir)?;
    let git = Arc::new(GitInfo::read(&opts.project_dir));
    let project_name = predefined::project_name(&opts.project_dir);
    let pipeline = Pipeline {
        stages: vec![job.stage.clone()],
        variables: Vec::new(),
        jobs: vec![job.clone()],
        workflow: None,
        includes: Vec::new(),
    };
    let sources = VarSources {
        predefined: predefined::pipeline(&project_name, 0, &git),
        global: Vec::new(),
        workflow: Vec::new(),
        file: variables,
        cli: Vec::new(),
    };
    let shared = Shared {
        masker: event_masker(&pipeline, &sources, opts),
        snapshot: files::snapshot(&opts.project_dir)?,
        opts: opts.clone(),
        pipeline,
        wharf_dir,
        project_name,
        pipeline_id: 0,
        engine: OnceCell::new(),
        sources,
        git,
        next_job: Arc::new(AtomicU64::new(0)),
        name_prefix: String::new(),
    };
    Ok(run_once(&shared, job, 1, 1, None).await)
}

fn emit(sink: &Option<Arc<Console>>, masker: &Masker, mut event: serde_json::Value) {
    if let Some(sink) = sink {
        mask_strings(masker, &mut event);
        sink.line(&event.to_string());
    }
}

/// Masks each string of an event before it is encoded: a secret holding `"` or `\\` would no
/// longer match once JSON-escaped.
fn mask_strings(masker: &Masker, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = masker.mask_str(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| mask_strings(masker, v)),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(|v| mask_strings(masker, v))
        }
        _ => {}
    }
}

/// Every secret an event could carry: the pipeline's masked variables (variables files,
/// DOCKER_AUTH_CONFIG anywhere, the runner's own) and those a job's own variables expand to.
fn event_masker(pipeline: &Pipeline, sources: &VarSources, opts: &RunOptions) -> Masker {
    let runner_auth_config = opts.env.docker_auth_config.as_deref();
    let pipeline_vars = sources.build(&[], &[], None, &[]);
    let mut masker = Masker::for_variables(&pipeline_vars, runner_auth_config);
    for job in pipeline.jobs.iter().filter(|j| !j.variables.is_empty()) {
        let job_vars = sources.build(
            &predefined::job(job),
            &job.variables,
            job.inherit_variables.as_deref(),
            &[],
        );
        for secret in Masker::for_variables(&job_vars, None).secrets() {
            masker.add(secret);
        }
    }
    masker
}

type BoxedReport = Pin<Box<dyn Future<Output = PipelineReport> + Send>>;

/// Drive the scheduler over the plan's selected jobs until every one has ended.
fn run_plan(shared: Arc<Shared>, plan: Plan) -> BoxedReport {
    Box::pin(async move {
        let selected: Vec<usize> = plan.selected().map(|(i, _)| i).collect();
        let position = |plan_index: usize| selected.iter().position(|&i| i == plan_index);
        let mut nodes = Vec::with_capacity(selected.len());
        let mut jobs: Vec<Job> = Vec::with_capacity(selected.len());
        for &i in &selected {
            let pj = &plan.jobs[i];
            let job = pj.job.clone();
            let excluded = !pj.outcome.included;
            nodes.push(Node {
                name: job.name.clone(),
                stage: shared
                    .pipeline
                    .stages
                    .iter()
                    .position(|s| *s == job.stage)
                    .unwrap_or(usize::MAX),
                needs: pj
                    .needs
                    .as_ref()
                    .map(|n| n.iter().filter_map(|&j| position(j)).collect()),
                // A job the rules leave out but the user named is reported, not run.
                when: if excluded { When::Never } else { job.when },
                allow_failure: job.allow_failure,
                resource_group: job.resource_group.clone(),
                start_in: job.start_in,
                play: pj.play,
                takes_slot: job.trigger.is_none(),
            });
            jobs.push(job);
        }
        let why_excluded: Vec<Option<String>> = selected
            .iter()
            .map(|&i| {
                let pj = &plan.jobs[i];
                (!pj.outcome.included).then(|| format!("not in the pipeline: {}", pj.outcome.why))
            })
            .collect();
        let runnable = nodes.iter().filter(|n| n.when != When::Never).count();
        let width = jobs
            .iter()
            .map(|j| j.name.chars().count())
            .max()
            .unwrap_or(0)
            + shared.name_prefix.chars().count();
        let prefixed = shared.opts.concurrency > 1 && runnable > 1;

        let mut scheduler = Scheduler::new(nodes, shared.opts.concurrency);
        let mut reports: Vec<Option<JobReport>> = vec![None; jobs.len()];
        let mut downstream: Vec<Vec<JobReport>> = vec![Vec::new(); jobs.len()];
        let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
        let mut open_children = 0usize;
        let mut cancel = shared.opts.cancel.clone();
        let mut canceled = *cancel.borrow();
        if canceled {
            scheduler.cancel();
        }
        loop {
            let actions = scheduler.next_actions();
            for action in actions {
                match action {
                    Action::Start(i) => {
                        let job = jobs[i].clone();
                        let shared = shared.clone();
                        let tx = tx.clone();
                        let prefix = prefixed.then(|| {
                            format!("{:<width$}", format!("{}{}", shared.name_prefix, job.name))
                        });
                        if job.trigger.is_some() {
                            open_children += 1;
                            tokio::spawn(run_trigger(shared, job, i, tx));
                        } else {
                            tokio::spawn(async move {
                                let report = run_with_retries(&shared, &job, prefix).await;
                                let _ = tx.send(Msg::Finished(i, report));
                            });
                        }
                    }
                    Action::Skip(i, why) => {
                        let why = why_excluded[i].clone().unwrap_or(why);
                        let mut report = job::skipped(&jobs[i], &why);
                        report.name = format!("{}{}", shared.name_prefix, report.name);
                        job_finished_event(&shared, &report);
                        reports[i] = Some(report);
                    }
                    Action::Delay(i, wait) => {
                        shared.opts.console.line(&format!(
                            "{}{}: delayed, starts in {}",
                            shared.name_prefix,
                            jobs[i].name,
                            crate::report::human_duration(wait)
                        ));
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(wait).await;
                            let _ = tx.send(Msg::DelayOver(i));
                        });
                    }
                }
            }
            if scheduler.is_finished() && open_children == 0 {
                break;
            }
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Finished(i, report)) => {
                        let outcome = match &report.status {
                            JobStatus::Passed | JobStatus::Skipped(_) => Outcome::Success,
                            JobStatus::Failed { .. } if report.failure_allowed() => {
                                Outcome::AllowedFailure
                            }
                            JobStatus::Failed { .. } => Outcome::Failed,
                            JobStatus::Canceled => Outcome::Canceled,
                        };
                        if outcome == Outcome::Canceled {
                            canceled = true;
                        }
                        scheduler.finished(i, outcome);
                        reports[i] = Some(report);
                    }
                    Some(Msg::DelayOver(i)) => scheduler.delay_elapsed(i),
                    Some(Msg::Downstream(i, jobs)) => downstream[i] = jobs,
                    Some(Msg::ChildDone) => open_children = open_children.saturating_sub(1),
                    // Not reachable: `tx` lives in this loop.
                    None => break,
                },
                changed = cancel.changed(), if !canceled => {
                    if changed.is_err() || *cancel.borrow() {
                        canceled = true;
                        for action in scheduler.cancel() {
                            if let Action::Skip(i, why) = action {
                                reports[i] = Some(job::skipped(&jobs[i], &why));
                            }
                        }
                    }
                }
            }
        }
        let mut report = PipelineReport {
            canceled,
            ..Default::default()
        };
        for (r, children) in reports.into_iter().zip(downstream) {
            report.jobs.extend(r);
            report.jobs.extend(children);
        }
        report
    })
}

fn job_finished_event(shared: &Shared, r: &JobReport) {
    let (reason, exit_code) = match &r.status {
        JobStatus::Failed { reason, exit_code } => (Some(reason.as_str().to_string()), *exit_code),
        JobStatus::Skipped(why) => (Some(why.clone()), None),
        JobStatus::Canceled => (Some(FailureReason::JobCanceled.as_str().to_string()), None),
        JobStatus::Passed => (None, None),
    };
    emit(
        &shared.opts.events,
        &shared.masker,
        json!({
            "type": "job_finished",
            "job": r.name,
            "stage": r.stage,
            "status": r.status_word(),
            "reason": reason,
            "exit_code": exit_code,
            "allowed_failure": r.failure_allowed(),
            "duration_ms": r.duration.as_millis() as u64,
            "attempts": r.attempts,
            "coverage": r.coverage,
            "environment": r.environment,
        }),
    );
}

/// Run a job, again while it fails for a reason its `retry` names.
async fn run_with_retries(shared: &Shared, job: &Job, prefix: Option<String>) -> JobReport {
    let max_attempts = job.retry.max + 1;
    let mut attempt = 1;
    loop {
        let mut report = run_once(shared, job, attempt, max_attempts, prefix.clone()).await;
        report.attempts = attempt;
        report.name = format!("{}{}", shared.name_prefix, report.name);
        let retry = match &report.status {
            JobStatus::Failed { reason, exit_code } => {
                attempt < max_attempts && reason.retried_by(&job.retry, *exit_code)
            }
            _ => false,
        };
        if !retry || *shared.opts.cancel.borrow() {
            job_finished_event(shared, &report);
            return report;
        }
        attempt += 1;
    }
}

/// One attempt: the job's own cancel signal fires on Ctrl-C or when its timeout is over.
async fn run_once(
    shared: &Shared,
    job: &Job,
    attempt: u32,
    max_attempts: u32,
    prefix: Option<String>,
) -> JobReport {
    let (job_cancel_tx, job_cancel_rx) = watch::channel(false);
    let (after_cancel_tx, after_cancel_rx) = watch::channel(false);
    let timed_out = Arc::new(AtomicBool::new(false));
    let timeout = job.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let mut global = shared.opts.cancel.clone();
    let flag = timed_out.clone();
    let watcher = tokio::spawn(async move {
        // `false` when nobody can cancel any more: only the timeouts remain then.
        let mut canceled = Box::pin(async move { global.wait_for(|c| *c).await.is_ok() });
        let by_timeout = tokio::select! {
            true = &mut canceled => false,
            _ = tokio::time::sleep(timeout) => true,
        };
        if by_timeout {
            flag.store(true, Ordering::SeqCst);
            let _ = job_cancel_tx.send(true);
            // As GitLab's runner does, after_script still runs after a timeout, under its own
            // timeout; Ctrl-C still stops it.
            tokio::select! {
                true = &mut canceled => {}
                _ = tokio::time::sleep(job::AFTER_SCRIPT_TIMEOUT) => {}
            }
        } else {
            let _ = job_cancel_tx.send(true);
        }
        let _ = after_cancel_tx.send(true);
    });
    let mut opts = shared.opts.clone();
    opts.cancel = job_cancel_rx;
    let n = shared.next_job.fetch_add(1, Ordering::SeqCst) + 1;
    let mut ctx = Ctx {
        opts: &opts,
        pipeline: &shared.pipeline,
        wharf_dir: shared.wharf_dir.clone(),
        project_name: shared.project_name.clone(),
        snapshot: &shared.snapshot,
        pipeline_id: shared.pipeline_id,
        engine: &shared.engine,
        sources: &shared.sources,
        run: JobRun {
            job_id: shared.pipeline_id * 1000 + n,
            dotenv: Vec::new(),
            prefix,
            attempt,
            max_attempts,
            timed_out,
            timeout,
            after_script_cancel: after_cancel_rx,
        },
    };
    ctx.run.dotenv = crate::artifacts::dotenv_for(&ctx.wharf_dir, ctx.pipeline, job);
    emit(
        &shared.opts.events,
        &shared.masker,
        json!({"type": "job_started", "job": format!("{}{}", shared.name_prefix, job.name),
               "stage": job.stage, "attempt": attempt, "job_id": ctx.run.job_id}),
    );
    let report = job::run_job(&ctx, job).await;
    watcher.abort();
    report
}

/// A `trigger:` job: load and run its child pipeline. With `strategy: depend` the trigger job
/// ends with the child's status; without, it passes once the child is created.
async fn run_trigger(shared: Arc<Shared>, job: Job, i: usize, tx: mpsc::UnboundedSender<Msg>) {
    let started = Instant::now();
    let name = format!("{}{}", shared.name_prefix, job.name);
    let Some(trigger) = job.trigger.clone() else {
        return;
    };
    let console = &shared.opts.console;
    let fail = |why: String| {
        console.line(&format!("ERROR: {name}: {why}"));
        let mut r = JobReport::new(
            &job,
            JobStatus::Failed {
                reason: FailureReason::DownstreamPipelineCreationFailed,
                exit_code: None,
            },
            started.elapsed(),
        );
        r.name = name.clone();
        r
    };
    // The trigger job's variables reach the child as pipeline variables: its own and, like any
    // job, the parent's global ones it inherits (GitLab: "all jobs in a pipeline, including
    // trigger jobs, inherit global variables"; `inherit: variables` narrows them). The job's own
    // come later so they win.
    let inherited = shared.sources.global.iter().filter(|v| {
        job.inherit_variables
            .as_deref()
            .is_none_or(|names| names.contains(&v.name))
    });
    let trigger_vars = inherited.chain(&job.variables).map(|v| FileVariable {
        name: v.name.clone(),
        value: v.value.clone(),
        masked: false,
        file: false,
    });
    let mut file = trigger_vars.collect::<Vec<_>>();
    file.extend(shared.sources.file.iter().cloned());
    let mut sources = shared.sources.clone();
    for (k, v) in sources.predefined.iter_mut() {
        if k == "CI_PIPELINE_SOURCE" {
            *v = "parent_pipeline".into();
        }
    }
    sources.file = file;
    let child = match load_child(
        &shared,
        &trigger,
        &load_options(sources.predefined.clone(), &sources.file, &sources.cli),
    ) {
        Ok(p) => p,
        Err(why) => {
            let r = fail(why);
            job_finished_event(&shared, &r);
            let _ = tx.send(Msg::Finished(i, r));
            let _ = tx.send(Msg::ChildDone);
            return;
        }
    };
    sources.global = child.variables.clone();
    sources.workflow = Vec::new();
    let child_plan = match plan::plan(
        &child,
        &sources,
        &shared.git,
        &shared.opts.project_dir,
        &Selection::default(),
    ) {
        Ok(p) => p,
        Err(e) => {
            let r = fail(format!("child pipeline: {e}"));
            job_finished_event(&shared, &r);
            let _ = tx.send(Msg::Finished(i, r));
            let _ = tx.send(Msg::ChildDone);
            return;
        }
    };
    if let Err(why) = &child_plan.workflow {
        let r = fail(format!("child pipeline not created: {why}"));
        job_finished_event(&shared, &r);
        let _ = tx.send(Msg::Finished(i, r));
        let _ = tx.send(Msg::ChildDone);
        return;
    }
    if let Ok(w) = &child_plan.workflow {
        sources.workflow = w.variables.clone();
    }
    console.line(&format!(
        "{name}: triggered a child pipeline from {}{}",
        trigger.files().join(", "),
        if trigger.depend {
            " (strategy: depend: waiting for it)"
        } else {
            ""
        }
    ));
    let mut opts = shared.opts.clone();
    opts.selection = Selection::default();
    let child_masker = event_masker(&child, &sources, &shared.opts);
    let child_shared = Arc::new(Shared {
        opts,
        pipeline: child,
        wharf_dir: shared.wharf_dir.join("pipelines").join(slug(&job.name)),
        project_name: shared.project_name.clone(),
        snapshot: shared.snapshot.clone(),
        pipeline_id: shared.pipeline_id,
        engine: OnceCell::new(),
        sources,
        git: shared.git.clone(),
        next_job: shared.next_job.clone(),
        name_prefix: format!("{name} > "),
        masker: child_masker,
    });
    let mut own = JobReport::new(&job, JobStatus::Passed, Duration::ZERO);
    own.name = name.clone();
    if !trigger.depend {
        own.duration = started.elapsed();
        job_finished_event(&shared, &own);
        let _ = tx.send(Msg::Finished(i, own.clone()));
    }
    let child_report = run_plan(child_shared, child_plan).await;
    let mut jobs = child_report.jobs.clone();
    for j in &mut jobs {
        j.downstream = true;
    }
    let _ = tx.send(Msg::Downstream(i, jobs));
    if trigger.depend {
        own.duration = started.elapsed();
        own.status = if child_report.canceled {
            JobStatus::Canceled
        } else if child_report.passed() {
            JobStatus::Passed
        } else {
            JobStatus::Failed {
                reason: FailureReason::DownstreamPipelineFailure,
                exit_code: None,
            }
        };
        job_finished_event(&shared, &own);
        let _ = tx.send(Msg::Finished(i, own));
    }
    let _ = tx.send(Msg::ChildDone);
}

/// The child pipeline of a trigger: its include files (with their `inputs:`), read through
/// the same loader as the main file.
fn load_child(
    shared: &Shared,
    trigger: &wharf_ci::Trigger,
    options: &wharf_ci::LoadOptions,
) -> Result<Pipeline, String> {
    let Some(loader) = shared.opts.loader.clone() else {
        return Err("child pipelines need a pipeline loader".into());
    };
    let render = |d: wharf_ci::Diagnostics| d.render(&|f: &str| loader.load(f).ok());
    if trigger.include.is_empty() {
        return Err("`trigger:` names no file to include".into());
    }
    let options = &wharf_ci::LoadOptions {
        limits: shared.opts.load_limits.clone(),
        ..options.clone()
    };
    wharf_ci::load_child_pipeline(trigger, loader.as_ref(), options)
        .map(|l| l.pipeline)
        .map_err(render)
}

/// What a pipeline's loading may depend on (`include: rules`, include paths, `expand_vars` in
/// inputs): predefined variables, then the variables files, then `--variable` (later wins).
/// Masked file variables and `DOCKER_AUTH_CONFIG` stay out of `expand_vars`: the same secrets
/// the job log masks.
pub fn load_options(
    predefined: Vec<(String, String)>,
    file: &[wharf_ci::FileVariable],
    cli: &[(String, String)],
) -> wharf_ci::LoadOptions {
    let mut variables = predefined;
    variables.extend(file.iter().map(|v| (v.name.clone(), v.value.clone())));
    variables.extend(cli.iter().cloned());
    let mut masked: Vec<String> = file
        .iter()
        .filter(|v| v.masked)
        .map(|v| v.name.clone())
        .collect();
    masked.push("DOCKER_AUTH_CONFIG".to_string());
    wharf_ci::LoadOptions {
        variables,
        masked,
        ..Default::default()
    }
}

/// Evaluate workflow and job rules without running anything (`wharf list`).
pub fn plan_pipeline(
    pipeline: &Pipeline,
    project_dir: &std::path::Path,
    cli: &[(String, String)],
    file: &[FileVariable],
) -> Result<Plan, plan::PlanError> {
    let git = GitInfo::read(project_dir);
    let sources = VarSources {
        predefined: predefined::pipeline(&predefined::project_name(project_dir), 0, &git),
        global: pipeline.variables.clone(),
        workflow: Vec::new(),
        file: file.to_vec(),
        cli: cli.to_vec(),
    };
    plan::plan(pipeline, &sources, &git, project_dir, &Selection::default())
}

fn create_dir(dir: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        files::FilesError::Io {
            action: "creating",
            path: dir.to_path_buf(),
            source: e,
        }
        .into()
    })
}

/// The next number in the counter file `path` (pipeline ids), from 1.
pub(crate) fn next_id(path: &Path) -> u64 {
    let n = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let _ = std::fs::write(path, n.to_string());
    n
}
