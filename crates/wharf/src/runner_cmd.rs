//! `wharf runner`: wharf as a GitLab runner. Jobs come from GitLab (wharf-gitlab's runner
//! protocol), run with wharf-run's job engine (`run_single_job`, the same phases and executors
//! as `wharf run`), and their log goes back to GitLab as the job's trace.

use crate::{Executor, runner_env};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
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
    /// is), at most `concurrent` at once and each runner's `limit` (0: no limit of its own).
    /// The file is read again when it changes (checked every 3 s) or on SIGHUP: new runners
    /// start, removed ones take no new jobs, changed settings apply to the next job; a broken
    /// file is reported and the runners keep the previous one. SIGINT/SIGTERM stop the running
    /// jobs (runner_interrupted); SIGQUIT lets them finish and takes no new ones.
    Run(RunArgs),
    /// The runners of a config file: name, executor, URL, id (never the token).
    List(RunArgs),
    /// Remove runners from GitLab and from the config file (the rest of the file stays as it
    /// is): a glrt- token removes this machine's runner manager (`DELETE
    /// /api/v4/runners/managers`), a legacy token the runner (`DELETE /api/v4/runners`).
    Unregister(UnregisterArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["name", "all_runners"])))]
pub(crate) struct UnregisterArgs {
    /// The runner's `name` in the config file.
    #[arg(long, short = 'n')]
    name: Option<String>,
    /// Every runner of the config file.
    #[arg(long)]
    all_runners: bool,
    /// Default: $XDG_CONFIG_HOME/wharf/config.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
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
    pub(crate) config: Option<PathBuf>,
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

pub(crate) fn executor_name(executor: Executor) -> &'static str {
    match executor {
        Executor::Docker => "docker",
        Executor::Sandbox => "sandbox",
        Executor::Auto => "auto",
        Executor::Shell => "shell",
    }
}

pub(crate) fn executor_of(name: &str) -> Option<Executor> {
    [
        Executor::Shell,
        Executor::Docker,
        Executor::Sandbox,
        Executor::Auto,
    ]
    .into_iter()
    .find(|e| executor_name(*e) == name)
}

pub(crate) async fn register(args: RegisterArgs) -> Result<ExitCode> {
    let executor = executor_name(args.executor);
    let client = RunnerClient::new(&args.connect.url, &args.connect.token, executor)?;
    let verified = client.verify().await?;
    let path = match args.config {
        Some(p) => p,
        None => crate::runner_config::default_path()?,
    };
    let name = args.name.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "wharf-runner".into())
    });
    crate::runner_config::append_runner(
        &path,
        &crate::runner_config::NewRunner {
            name: &name,
            url: &args.connect.url,
            id: verified.id,
            token: &args.connect.token,
            token_expires_at: verified.token_expires_at.as_deref(),
            executor,
        },
    )?;
    println!(
        "Runner {name} (id {}) registered at {} in {}",
        verified.id,
        args.connect.url,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `--config`, else the default file, loaded.
pub(crate) fn load_config(
    given: Option<PathBuf>,
) -> Result<(PathBuf, crate::runner_config::Config)> {
    let path = match given {
        Some(p) => p,
        None => crate::runner_config::default_path()?,
    };
    let config = crate::runner_config::Config::load(&path)?;
    Ok((path, config))
}

pub(crate) fn list(args: RunArgs) -> Result<ExitCode> {
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

/// `wharf runner unregister`: GitLab first, then the file; a runner GitLab did not let go of
/// stays in the file.
pub(crate) async fn unregister(args: UnregisterArgs) -> Result<ExitCode> {
    let (path, config) = load_config(args.config)?;
    let chosen: Vec<_> = match &args.name {
        Some(name) => {
            let found: Vec<_> = config.runners.iter().filter(|r| &r.name == name).collect();
            if found.is_empty() {
                let names: Vec<&str> = config.runners.iter().map(|r| r.name.as_str()).collect();
                anyhow::bail!(
                    "{}: no runner named `{name}` (runners: {})",
                    path.display(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
            found
        }
        None => config.runners.iter().collect(),
    };
    let mut done = Vec::new();
    let mut failed = 0;
    for runner in chosen {
        let client = RunnerClient::new(&runner.url, &runner.token, &runner.executor)?;
        match client.unregister().await {
            Ok(()) => {
                println!("Runner {} unregistered from {}", runner.name, runner.url);
                done.push(runner.token.clone());
            }
            Err(e) => {
                failed += 1;
                eprintln!("ERROR: runner {}: {e}", runner.name);
            }
        }
    }
    if !done.is_empty() {
        // By token: every entry with a token GitLab let go of is dead (an entry without
        // `name` in the file is named by its token here).
        crate::runner_config::remove_runners(&path, |_name, token| {
            done.iter().any(|t| t == token)
        })?;
        println!("Updated {}", path.display());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(crate) async fn verify(args: ConnectArgs) -> Result<ExitCode> {
    let client = RunnerClient::new(&args.url, &args.token, "shell")?;
    let runner = client.verify().await?;
    println!("Runner {} is valid at {}", runner.id, args.url);
    Ok(ExitCode::SUCCESS)
}

/// Longest wait between job requests after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What one runner's job loop needs besides its client. A reload replaces it: each job runs
/// with the settings of when it was taken.
pub(crate) struct RunnerSettings {
    pub executor: Executor,
    pub builds_dir: PathBuf,
    pub check_interval: Duration,
    pub max_builds: u64,
    pub wait_timeout: u64,
    /// `environment` / `--env`: variables every job gets, below its own.
    pub environment: Vec<FileVariable>,
    /// `[runners.docker]`.
    pub docker: crate::runner_docker::DockerSettings,
    /// Bytes of a job's log GitLab gets (`output_limit`, KiB in the config).
    pub output_limit: usize,
    /// `pre_build_script` / `post_build_script`: around the job's script, as gitlab-runner.
    pub pre_build_script: Option<String>,
    pub post_build_script: Option<String>,
    /// `[runners.cache]` (S3): the cache shared with other runners.
    pub shared_cache: Option<Arc<crate::runner_cache::SharedCache>>,
}

/// `KEY=VALUE` entries as job variables.
pub(crate) fn environment_of(entries: &[String]) -> Result<Vec<FileVariable>> {
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

pub(crate) async fn run_single(args: RunSingleArgs) -> Result<ExitCode> {
    let executor = executor_name(args.executor);
    let client = RunnerClient::new(&args.connect.url, &args.connect.token, executor)?;
    let settings = RunnerSettings {
        executor: args.executor,
        builds_dir: std::path::absolute(&args.builds_dir)?,
        check_interval: Duration::from_secs(args.check_interval),
        max_builds: args.max_builds,
        wait_timeout: args.wait_timeout,
        environment: environment_of(&args.environment)?,
        docker: Default::default(),
        shared_cache: None,
        pre_build_script: None,
        post_build_script: None,
        output_limit: wharf_gitlab::runner::trace::DEFAULT_OUTPUT_LIMIT,
    };
    let (_settings_tx, settings) = watch::channel(Arc::new(settings));
    let (_stop_tx, stop) = watch::channel(false);
    let slots = JobSlots {
        own: Slots::new(1),
        global: Slots::new(1),
    };
    Ok(take_jobs(client, settings, Signals::listen(), stop, slots).await)
}

/// One runner: ask for jobs while it has a slot (its `limit` and the global `concurrent`), run
/// each in a task of its own, until a signal, `stop` (the runner left the config), a 403,
/// `--max-builds` or `--wait-timeout`; then wait for its running jobs.
pub(crate) async fn take_jobs(
    mut client: RunnerClient,
    settings: watch::Receiver<Arc<RunnerSettings>>,
    signals: Signals,
    mut stop: watch::Receiver<bool>,
    slots: JobSlots,
) -> ExitCode {
    let Signals {
        interrupted,
        mut quitting,
        ..
    } = signals;
    let mut jobs = tokio::task::JoinSet::new();
    let mut builds = 0u64;
    let mut backoff = settings.borrow().check_interval;
    let mut waiting_since = Instant::now();
    let mut code = ExitCode::SUCCESS;
    {
        let current = settings.borrow();
        eprintln!(
            "Runner started at {} (executor {}, builds in {})",
            client.url(),
            executor_name(current.executor),
            current.builds_dir.display()
        );
    }
    loop {
        while jobs.try_join_next().is_some() {}
        if *interrupted.borrow() || *quitting.borrow() || *stop.borrow() {
            break;
        }
        let current = settings.borrow().clone();
        if current.max_builds > 0 && builds >= current.max_builds {
            break;
        }
        if current.wait_timeout > 0
            && jobs.is_empty()
            && waiting_since.elapsed() >= Duration::from_secs(current.wait_timeout)
        {
            eprintln!(
                "No job came within {} s (--wait-timeout): stopping",
                current.wait_timeout
            );
            break;
        }
        // A job is asked for only when one may run now.
        let busy = !jobs.is_empty();
        let slot = tokio::select! {
            slot = slots.acquire() => slot,
            () = no_more_jobs(&mut quitting, &mut stop) => continue,
        };
        if busy {
            waiting_since = Instant::now();
        }
        let pause = match client.request_job().await {
            Ok(Some(payload)) => {
                builds += 1;
                backoff = current.check_interval;
                let client = client.clone();
                let interrupted = interrupted.clone();
                jobs.spawn(async move {
                    run_job(&client, &payload, &current, &interrupted).await;
                    drop(slot);
                });
                waiting_since = Instant::now();
                continue;
            }
            Ok(None) => current.check_interval,
            Err(e) if e.status() == Some(403) => {
                eprintln!("ERROR: {e}");
                code = ExitCode::from(1);
                break;
            }
            Err(e) => {
                eprintln!("WARNING: {e} (trying again in {} s)", backoff.as_secs());
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        drop(slot);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            () = no_more_jobs(&mut quitting, &mut stop) => {}
        }
    }
    while jobs.join_next().await.is_some() {}
    if *interrupted.borrow() {
        ExitCode::from(130)
    } else {
        code
    }
}

/// Resolves when the runner is to take no new job (SIGQUIT, or `stop`). A channel whose sender
/// is gone without saying so never resolves.
async fn no_more_jobs(quitting: &mut watch::Receiver<bool>, stop: &mut watch::Receiver<bool>) {
    async fn raised(flag: &mut watch::Receiver<bool>) {
        if flag.wait_for(|set| *set).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    tokio::select! {
        () = raised(quitting) => {}
        () = raised(stop) => {}
    }
}

/// The two bounds a runner's next job waits for: its own `limit` and the global `concurrent`.
pub(crate) struct JobSlots {
    pub own: Arc<Slots>,
    pub global: Arc<Slots>,
}

impl JobSlots {
    async fn acquire(&self) -> (Slot, Slot) {
        let own = self.own.acquire().await;
        let global = self.global.acquire().await;
        (own, global)
    }
}

/// A counting bound whose limit a reload may change (0: unbounded). Unlike a semaphore's
/// permits, lowering the limit never waits for running jobs: they finish, and no new one
/// starts until fewer than the new limit run.
pub(crate) struct Slots {
    state: std::sync::Mutex<(usize, usize)>,
    freed: tokio::sync::Notify,
}

/// One taken slot, given back when dropped.
pub(crate) struct Slot(Arc<Slots>);

impl Slots {
    pub fn new(limit: usize) -> Arc<Slots> {
        Arc::new(Slots {
            state: std::sync::Mutex::new((limit, 0)),
            freed: tokio::sync::Notify::new(),
        })
    }

    pub fn set_limit(&self, limit: usize) {
        self.lock().0 = limit;
        self.freed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        // The counts stay consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = self.lock();
                let (limit, used) = *state;
                if limit == 0 || used < limit {
                    state.1 += 1;
                    return Slot(self.clone());
                }
            }
            freed.await;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.lock().1 -= 1;
        self.0.freed.notify_waiters();
    }
}

/// The signals a runner obeys: SIGINT/SIGTERM interrupt (the running jobs stop), SIGQUIT quits
/// (no new jobs; the running ones finish), as gitlab-runner.
/// SIGHUP asks `wharf runner run` to read its config again.
#[derive(Clone)]
pub(crate) struct Signals {
    pub interrupted: watch::Receiver<bool>,
    pub quitting: watch::Receiver<bool>,
    pub reload: Arc<tokio::sync::Notify>,
}

impl Signals {
    pub(crate) fn listen() -> Signals {
        let (interrupt_tx, interrupted) = watch::channel(false);
        let (quit_tx, quitting) = watch::channel(false);
        let reload = Arc::new(tokio::sync::Notify::new());
        let reload_tx = reload.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut hup)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::quit()),
                signal(SignalKind::hangup()),
            ) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                    _ = hup.recv() => {
                        reload_tx.notify_one();
                        continue;
                    }
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
            reload,
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
    let trace = TraceBuffer::with_limit(settings.output_limit);
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
    let (project_dir, _claim) = claim_project_dir(builds_dir, payload);
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
    // `[runners.docker]` is about images: the shell executor has none (as gitlab-runner).
    let uses_images = !matches!(settings.executor, Executor::Shell);
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
        cancel: cancel.clone(),
        pull_retry_delays: vec![Duration::from_secs(2), Duration::from_secs(4)],
        token_mask_prefixes: payload.features.token_mask_prefixes.clone(),
        limits: if uses_images {
            settings.docker.limits
        } else {
            wharf_run::Limits::default()
        },
        volumes: if uses_images {
            settings.docker.binds(payload.job_info.project_id)
        } else {
            Vec::new()
        },
        sandbox_network: wharf_run::SandboxNetwork::default(),
        artifact_transfer: Some(crate::runner_artifacts::GitLabArtifacts::new(
            artifacts,
            payload.clone(),
        )),
        cache_transfer: settings.shared_cache.as_ref().map(|shared| {
            crate::runner_cache::ProjectCache::new(
                shared.clone(),
                payload.job_info.project_id,
                cancel.clone(),
            ) as Arc<dyn wharf_run::cache::CacheTransfer>
        }),
    };
    let wharf_dir = wharf_dir_of(builds_dir, &project_dir);
    let mut job = job_of(payload);
    // gitlab-runner runs them in the script's own step: a failing pre_build_script fails the
    // job, post_build_script runs only when the script succeeded.
    if let Some(pre) = &settings.pre_build_script {
        job.script.insert(0, pre.clone());
    }
    if let Some(post) = &settings.post_build_script {
        job.script.push(post.clone());
    }
    // The runner's environment first: the job's own variables win (later ones replace).
    let mut variables = settings.environment.clone();
    variables.extend(variables_of(payload));
    let expand = |text: &str| {
        wharf_run::vars::expand_with(text, &|name| {
            variables
                .iter()
                .rev()
                .find(|v| v.name == name)
                .map(|v| v.value.clone())
        })
    };
    if uses_images {
        if let Err(refusal) = settings.docker.apply(&mut job, &expand) {
            return failed(FailureReason::RunnerConfigurationError, &console, refusal.0);
        }
    }
    match wharf_run::run_single_job(&job, variables, &opts, wharf_dir.clone()).await {
        Ok(report) => outcome_of(&report.status, *interrupted.borrow()),
        Err(e) => failed(FailureReason::RunnerSystemFailure, &console, e.to_string()),
    }
}

/// Working copies of the jobs running in this process: two jobs of one project at once never
/// share one (nor wharf's state beside it). As gitlab-runner's `concurrent-N` folders, the
/// first job of a project uses `<builds>/<project path>`, one running beside it
/// `<builds>/.concurrent-1/<project path>`, and so on (GitLab paths never start with `.`).
static RUNNING_IN: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// A working copy taken by a running job; free again when dropped.
struct ProjectDirClaim(PathBuf);

impl Drop for ProjectDirClaim {
    fn drop(&mut self) {
        RUNNING_IN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

fn claim_project_dir(builds_dir: &Path, payload: &JobPayload) -> (PathBuf, ProjectDirClaim) {
    let first = source::project_dir(builds_dir, payload);
    let relative = first
        .strip_prefix(builds_dir)
        .unwrap_or(&first)
        .to_path_buf();
    let mut running = RUNNING_IN.lock().unwrap_or_else(|e| e.into_inner());
    let mut dir = first;
    let mut next = 1;
    while !running.insert(dir.clone()) {
        dir = builds_dir
            .join(format!(".concurrent-{next}"))
            .join(&relative);
        next += 1;
    }
    (dir.clone(), ProjectDirClaim(dir))
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
