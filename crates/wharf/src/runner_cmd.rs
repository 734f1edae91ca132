//! `wharf runner`: wharf as a GitLab runner. Jobs come from GitLab (wharf-gitlab's runner
//! protocol), run with wharf-run's job engine (`run_single_job`, the same phases and executors
//! as `wharf run`), and their log goes back to GitLab as the job's trace.

use crate::{Executor, runner_env};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wharf_ci::FileVariable;
use wharf_gitlab::runner::{
    FailureReason, JobOutcome, JobPayload, JobState, RunnerClient, RunnerError, TraceBuffer,
    job_of, run_with_trace, source, variables_of,
};
use wharf_run::{Console, JobStatus, RunOptions, RunnerEnv, Selection};

#[derive(Subcommand)]
pub(crate) enum RunnerCommand {
    /// One runner from flags, no config file: take jobs from GitLab and run them one at a time
    /// (gitlab-runner's `run-single`). SIGINT/SIGTERM stop the running job, which GitLab then
    /// shows as failed (runner_interrupted).
    RunSingle(RunSingleArgs),
    /// Check a runner authentication token with GitLab (`POST /api/v4/runners/verify`).
    Verify(ConnectArgs),
    /// Verify a runner authentication token (glrt-...) with GitLab and add the runner to a
    /// config file in gitlab-runner's `config.toml` format (mode 0600: it holds the token).
    Register(RegisterArgs),
    /// Take jobs for every runner of a config file (gitlab-runner's `config.toml` works as it
    /// is), at most `concurrent` at once, one at a time per runner. SIGINT/SIGTERM stop the
    /// running jobs (runner_interrupted); SIGQUIT lets them finish and takes no new ones.
    Run(RunArgs),
    /// The runners of a config file: name, executor, URL, id (never the token).
    List(RunArgs),
}

#[derive(Args)]
pub(crate) struct RegisterArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The runner's name in the config file (default: this machine's host name).
    #[arg(long)]
    name: Option<String>,
    #[arg(long, value_enum, default_value = "shell")]
    executor: Executor,
    /// Default: $XDG_CONFIG_HOME/wharf/config.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct RunArgs {
    /// Default: $XDG_CONFIG_HOME/wharf/config.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct ConnectArgs {
    /// The GitLab instance (e.g. https://gitlab.example.com).
    #[arg(long, env = "CI_SERVER_URL", value_name = "URL")]
    url: String,
    /// The runner authentication token (glrt-...). Prefer the environment variable: a command
    /// line is visible to every user of the machine.
    #[arg(
        long,
        env = "CI_SERVER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: String,
}

#[derive(Args)]
pub(crate) struct RunSingleArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Where jobs run: `shell` (default), `docker` (the job's image), `sandbox` (wharf's
    /// daemonless executor) or `auto` (as `wharf run` chooses).
    #[arg(long, value_enum, default_value = "shell")]
    executor: Executor,
    /// Stop after this many jobs (0: never).
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_builds: u64,
    /// Stop when no job came for this many seconds (0: wait forever).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    wait_timeout: u64,
    /// The runner's folder: one working copy per project, and wharf's per-project state in
    /// `.wharf/` (logs, caches, build folders). Default: `builds` in the current folder, as
    /// gitlab-runner's shell executor.
    #[arg(long, value_name = "DIR", default_value = "builds")]
    builds_dir: PathBuf,
    /// Seconds between job requests when GitLab has none.
    #[arg(long, value_name = "SECONDS", default_value_t = 3)]
    check_interval: u64,
    /// A variable every job gets (repeatable), below the job's own variables, as config.toml's
    /// `environment`.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    environment: Vec<String>,
}

pub(crate) async fn run(command: RunnerCommand) -> Result<ExitCode> {
    match command {
        RunnerCommand::RunSingle(args) => run_single(args).await,
        RunnerCommand::Verify(args) => verify(args).await,
        RunnerCommand::Register(args) => register(args).await,
        RunnerCommand::Run(args) => run_config(args).await,
        RunnerCommand::List(args) => list(args),
    }
}

fn executor_name(executor: Executor) -> &'static str {
    match executor {
        Executor::Docker => "docker",
        Executor::Sandbox => "sandbox",
        Executor::Auto => "auto",
        Executor::Shell => "shell",
    }
}

fn executor_of(name: &str) -> Option<Executor> {
    [
        Executor::Shell,
        Executor::Docker,
        Executor::Sandbox,
        Executor::Auto,
    ]
    .into_iter()
    .find(|e| executor_name(*e) == name)
}

async fn register(args: RegisterArgs) -> Result<ExitCode> {
    let executor = executor_name(args.executor);
    let client = RunnerClient::new(&args.connect.url, &args.connect.token, executor)?;
    let verified = client.verify().await?;
    let (path, mut config) = load_config(args.config)?;
    let name = args.name.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "wharf-runner".into())
    });
    config.runners.push(crate::runner_config::RunnerConfig {
        name: name.clone(),
        url: args.connect.url.clone(),
        id: verified.id,
        token: args.connect.token,
        token_expires_at: verified.token_expires_at.map(toml::Value::String),
        executor: executor.to_string(),
        builds_dir: None,
        environment: Vec::new(),
        other: Default::default(),
    });
    config.save(&path)?;
    println!(
        "Runner {name} (id {}) registered at {} in {}",
        verified.id,
        args.connect.url,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--config`, else the default file, loaded.
fn load_config(given: Option<PathBuf>) -> Result<(PathBuf, crate::runner_config::Config)> {
    let path = match given {
        Some(p) => p,
        None => crate::runner_config::default_path()?,
    };
    let config = crate::runner_config::Config::load(&path)?;
    Ok((path, config))
}

fn list(args: RunArgs) -> Result<ExitCode> {
    let (path, config) = load_config(args.config)?;
    println!("{} (concurrent = {})", path.display(), config.concurrent);
    for runner in &config.runners {
        println!(
            "{}\texecutor={}\turl={}\tid={}",
            runner.name, runner.executor, runner.url, runner.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_config(args: RunArgs) -> Result<ExitCode> {
    let (path, config) = load_config(args.config)?;
    if config.runners.is_empty() {
        anyhow::bail!(
            "{}: no [[runners]]: add one with `wharf runner register`",
            path.display()
        );
    }
    for key in config.unsupported_keys() {
        eprintln!(
            "WARNING: {}: `{key}` is not supported by wharf and has no effect",
            path.display()
        );
    }
    let signals = Signals::listen();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(config.concurrent));
    let check_interval = Duration::from_secs(if config.check_interval == 0 {
        3
    } else {
        config.check_interval
    });
    let mut loops = tokio::task::JoinSet::new();
    for runner in &config.runners {
        let Some(executor) = executor_of(&runner.executor) else {
            anyhow::bail!(
                "{}: runner {}: executor `{}` is not one of wharf's (shell, docker, sandbox, auto)",
                path.display(),
                runner.name,
                runner.executor
            );
        };
        let client = RunnerClient::new(&runner.url, &runner.token, executor_name(executor))?;
        let settings = RunnerSettings {
            executor,
            builds_dir: std::path::absolute(
                runner
                    .builds_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("builds")),
            )?,
            check_interval,
            max_builds: 0,
            wait_timeout: 0,
            environment: environment_of(&runner.environment)
                .with_context(|| format!("{}: runner {}", path.display(), runner.name))?,
        };
        loops.spawn(take_jobs(
            client,
            settings,
            signals.clone(),
            permits.clone(),
        ));
    }
    let mut code = ExitCode::SUCCESS;
    while let Some(done) = loops.join_next().await {
        code = done?;
    }
    Ok(code)
}

async fn verify(args: ConnectArgs) -> Result<ExitCode> {
    let client = RunnerClient::new(&args.url, &args.token, "shell")?;
    let runner = client.verify().await?;
    println!("Runner {} is valid at {}", runner.id, args.url);
    Ok(ExitCode::SUCCESS)
}

/// Longest wait between job requests after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What one runner's job loop needs besides its client.
struct RunnerSettings {
    executor: Executor,
    builds_dir: PathBuf,
    check_interval: Duration,
    max_builds: u64,
    wait_timeout: u64,
    /// `environment` / `--env`: variables every job gets, below its own.
    environment: Vec<FileVariable>,
}

/// `KEY=VALUE` entries as job variables.
fn environment_of(entries: &[String]) -> Result<Vec<FileVariable>> {
    entries
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((name, value)) if wharf_ci::is_variable_name(name) => Ok(FileVariable {
                name: name.to_string(),
                value: value.to_string(),
                masked: false,
                file: false,
            }),
            _ => anyhow::bail!(
                "environment entry `{}`: expected KEY=VALUE with a variable name as KEY",
                entry.split('=').next().unwrap_or_default()
            ),
        })
        .collect()
}

async fn run_single(args: RunSingleArgs) -> Result<ExitCode> {
    let executor = executor_name(args.executor);
    let client = RunnerClient::new(&args.connect.url, &args.connect.token, executor)?;
    let settings = RunnerSettings {
        executor: args.executor,
        builds_dir: std::path::absolute(&args.builds_dir)?,
        check_interval: Duration::from_secs(args.check_interval),
        max_builds: args.max_builds,
        wait_timeout: args.wait_timeout,
        environment: environment_of(&args.environment)?,
    };
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    Ok(take_jobs(client, settings, Signals::listen(), permits).await)
}

/// One runner: ask for jobs and run them one at a time, each with one of `permits`
/// (`concurrent`), until a signal, a 403, `--max-builds` or `--wait-timeout`.
async fn take_jobs(
    mut client: RunnerClient,
    settings: RunnerSettings,
    signals: Signals,
    permits: std::sync::Arc<tokio::sync::Semaphore>,
) -> ExitCode {
    let Signals {
        interrupted,
        quitting,
    } = signals;
    let mut builds = 0u64;
    let mut backoff = settings.check_interval;
    let mut waiting_since = Instant::now();
    eprintln!(
        "Runner started at {} (executor {}, builds in {})",
        client.url(),
        executor_name(settings.executor),
        settings.builds_dir.display()
    );
    loop {
        if *interrupted.borrow() {
            return ExitCode::from(130);
        }
        if *quitting.borrow() {
            return ExitCode::SUCCESS;
        }
        if settings.max_builds > 0 && builds >= settings.max_builds {
            return ExitCode::SUCCESS;
        }
        if settings.wait_timeout > 0
            && waiting_since.elapsed() >= Duration::from_secs(settings.wait_timeout)
        {
            eprintln!(
                "No job came within {} s (--wait-timeout): stopping",
                settings.wait_timeout
            );
            return ExitCode::SUCCESS;
        }
        // A job is asked for only when one may run now.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return ExitCode::SUCCESS;
        };
        let pause = match client.request_job().await {
            Ok(Some(payload)) => {
                builds += 1;
                run_job(&client, &payload, &settings, &interrupted).await;
                drop(permit);
                waiting_since = Instant::now();
                backoff = settings.check_interval;
                continue;
            }
            Ok(None) => settings.check_interval,
            Err(e) if e.status() == Some(403) => {
                eprintln!("ERROR: {e}");
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("WARNING: {e} (trying again in {} s)", backoff.as_secs());
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        drop(permit);
        let mut quitting = quitting.clone();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = quitting.wait_for(|q| *q) => {}
        }
    }
}

/// The signals a runner obeys: SIGINT/SIGTERM interrupt (the running jobs stop), SIGQUIT quits
/// (no new jobs; the running ones finish), as gitlab-runner.
#[derive(Clone)]
struct Signals {
    interrupted: watch::Receiver<bool>,
    quitting: watch::Receiver<bool>,
}

impl Signals {
    fn listen() -> Signals {
        let (interrupt_tx, interrupted) = watch::channel(false);
        let (quit_tx, quitting) = watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::quit()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                    _ = quit.recv() => {
                        eprintln!("SIGQUIT: no new jobs; the running ones finish");
                        let _ = quit_tx.send(true);
                        continue;
                    }
                }
                eprintln!("Interrupted: stopping the running jobs");
                let _ = quit_tx.send(true);
                let _ = interrupt_tx.send(true);
                return;
            }
        });
        Signals {
            interrupted,
            quitting,
        }
    }
}

/// One job from GitLab: its sources, then wharf's job engine, its log streamed to GitLab.
async fn run_job(
    client: &RunnerClient,
    payload: &JobPayload,
    settings: &RunnerSettings,
    interrupted: &watch::Receiver<bool>,
) {
    eprintln!(
        "Job {} ({}) of project {} received",
        payload.id, payload.job_info.name, payload.job_info.project_id
    );
    let trace = TraceBuffer::default();
    // GitLab renders ANSI colours: the trace is coloured as gitlab-runner's.
    let console = Console::gitlab_trace(Box::new(trace.clone()));
    let (cancel_tx, cancel_rx) = watch::channel(false);
    // A signal to the runner cancels the job too.
    let forward = {
        let mut interrupted = interrupted.clone();
        let cancel_tx = cancel_tx.clone();
        tokio::spawn(async move {
            if interrupted.wait_for(|i| *i).await.is_ok() {
                let _ = cancel_tx.send(true);
            }
        })
    };
    let artifacts = match client.artifacts_client() {
        Ok(artifacts) => artifacts,
        Err(e) => {
            eprintln!("ERROR: job {}: {e}", payload.id);
            forward.abort();
            return;
        }
    };
    let job = run_payload(
        payload,
        settings,
        console,
        cancel_rx,
        interrupted,
        artifacts,
    );
    let warn = |e: &RunnerError| eprintln!("WARNING: job {}: {e}", payload.id);
    match run_with_trace(client, payload, trace, &cancel_tx, job, &warn).await {
        Ok(outcome) => eprintln!(
            "Job {} finished: {}{}",
            payload.id,
            match outcome.state {
                JobState::Success => "success",
                JobState::Failed => "failed",
                JobState::Running => "running",
            },
            outcome
                .failure_reason
                .map(|r| format!(" ({})", r.as_str()))
                .unwrap_or_default()
        ),
        Err(e) => eprintln!("ERROR: job {}: {e}", payload.id),
    }
    forward.abort();
}

/// The job itself, writing its log to `console`.
async fn run_payload(
    payload: &JobPayload,
    settings: &RunnerSettings,
    console: std::sync::Arc<Console>,
    cancel: watch::Receiver<bool>,
    interrupted: &watch::Receiver<bool>,
    artifacts: wharf_gitlab::runner::artifacts::ArtifactsClient,
) -> JobOutcome {
    console.line(&format!(
        "Running with wharf {} (GitLab runner mode)",
        env!("CARGO_PKG_VERSION")
    ));
    let builds_dir = settings.builds_dir.as_path();
    let project_dir = source::project_dir(builds_dir, payload);
    let strategy = source::GitStrategy::of(payload);
    // A GitLab section of its own, as the job engine's sections that follow.
    let sources_section = wharf_run::log::section_name("Getting source from Git repository");
    console.write(wharf_run::log::section_marker("start", &sources_section).as_bytes());
    console.line(&wharf_run::log::paint(
        true,
        wharf_run::log::Level::Section,
        "Getting source from Git repository",
    ));
    let fetched = {
        let payload = payload.clone();
        let project_dir = project_dir.clone();
        let console = console.clone();
        tokio::task::spawn_blocking(move || {
            source::get_sources(&payload, &project_dir, strategy, &mut |line| {
                console.line(line)
            })
        })
        .await
    };
    let failed = |reason, console: &Console, why: String| {
        console.line(&wharf_run::log::paint(
            true,
            wharf_run::log::Level::Error,
            &format!("ERROR: Job failed: {why}"),
        ));
        JobOutcome {
            state: JobState::Failed,
            failure_reason: Some(reason),
            exit_code: None,
        }
    };
    console.write(wharf_run::log::section_marker("end", &sources_section).as_bytes());
    match fetched {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return failed(FailureReason::ScriptFailure, &console, e.to_string()),
        Err(e) => return failed(FailureReason::RunnerSystemFailure, &console, e.to_string()),
    }
    let opts = RunOptions {
        project_dir: project_dir.clone(),
        selection: Selection::default(),
        concurrency: 1,
        events: None,
        loader: None,
        load_limits: wharf_ci::Limits::default(),
        dotenv_limits: wharf_run::DotenvLimits::default(),
        cli_variables: Vec::new(),
        file_variables: Vec::new(),
        executor: settings.executor.choice(),
        pull_policy: None,
        env: RunnerEnv {
            job_credentials: Some(registry_credentials(payload)),
            ..runner_env()
        },
        console: console.clone(),
        cancel,
        pull_retry_delays: vec![Duration::from_secs(2), Duration::from_secs(4)],
        token_mask_prefixes: payload.features.token_mask_prefixes.clone(),
        // `[runners.docker] memory` / `pids_limit` are not read from the config yet.
        limits: wharf_run::Limits::default(),
        sandbox_network: wharf_run::SandboxNetwork::default(),
        artifact_transfer: Some(crate::runner_artifacts::GitLabArtifacts::new(
            artifacts,
            payload.clone(),
        )),
    };
    let wharf_dir = wharf_dir_of(builds_dir, &project_dir);
    let job = job_of(payload);
    // The runner's environment first: the job's own variables win (later ones replace).
    let mut variables = settings.environment.clone();
    variables.extend(variables_of(payload));
    match wharf_run::run_single_job(&job, variables, &opts, wharf_dir).await {
        Ok(report) => outcome_of(&report.status, *interrupted.borrow()),
        Err(e) => failed(FailureReason::RunnerSystemFailure, &console, e.to_string()),
    }
}

/// wharf's own state for a project's jobs: beside the working copy, never in it (git's clean
/// would remove it).
fn wharf_dir_of(builds_dir: &Path, project_dir: &Path) -> PathBuf {
    let relative = project_dir.strip_prefix(builds_dir).unwrap_or(project_dir);
    builds_dir.join(".wharf").join(relative)
}

/// GitLab's words for how the job ended.
fn outcome_of(status: &JobStatus, interrupted: bool) -> JobOutcome {
    let failed = |reason, exit_code| JobOutcome {
        state: JobState::Failed,
        failure_reason: Some(reason),
        exit_code,
    };
    match status {
        JobStatus::Passed => JobOutcome {
            state: JobState::Success,
            failure_reason: None,
            exit_code: Some(0),
        },
        JobStatus::Failed { reason, exit_code } => {
            use wharf_run::FailureReason as Wharf;
            let reason = match reason {
                Wharf::ScriptFailure => FailureReason::ScriptFailure,
                Wharf::RunnerConfigurationError => FailureReason::RunnerConfigurationError,
                Wharf::ImagePullFailure => FailureReason::ImagePullFailure,
                Wharf::RunnerSystemFailure => FailureReason::RunnerSystemFailure,
                Wharf::JobExecutionTimeout => FailureReason::JobExecutionTimeout,
                _ => FailureReason::UnknownFailure,
            };
            failed(reason, *exit_code)
        }
        // A cancel from GitLab: GitLab already marked the job; the update only closes it.
        JobStatus::Canceled if !interrupted => failed(FailureReason::UnknownFailure, None),
        JobStatus::Canceled => failed(FailureReason::RunnerInterrupted, None),
        JobStatus::Skipped(_) => failed(FailureReason::UnknownFailure, None),
    }
}

/// The payload's `credentials` of type `registry` (GitLab's own registry with the job token,
/// the dependency proxy): the last credential source of the job's image pulls.
fn registry_credentials(payload: &JobPayload) -> Vec<wharf_oci::RegistryCredential> {
    payload
        .credentials
        .iter()
        .filter(|c| c.kind == "registry" && !c.url.is_empty())
        .map(|c| wharf_oci::RegistryCredential {
            url: c.url.clone(),
            username: c.username.clone(),
            password: wharf_oci::Secret(c.password.clone()),
        })
        .collect()
}
