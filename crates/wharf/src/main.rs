//! The `wharf` command line: parse flags, resolve them into validated options, call the libraries.
//! `anyhow` lives here only.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use wharf_ci::{FileVariable, PullPolicy};
use wharf_run::{Console, ExecutorChoice, RunOptions, RunnerEnv, Selection};

mod doctor;
mod error_text;
mod image_cmd;
mod includes;
mod registry_cmd;
mod registry_import;
mod runner_artifacts;
mod runner_cache;
mod runner_cmd;
mod runner_config;
mod runner_docker;
mod runner_fleet;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "Run GitLab CI pipelines locally, with registry credentials resolved exactly as GitLab's runner does",
    long_about = "Run GitLab CI pipelines (.gitlab-ci.yml) on this machine with a shell or Docker executor.\n\
Job images are pulled with credentials resolved exactly as GitLab's runner resolves them \
(DOCKER_AUTH_CONFIG, docker config files, credential helpers), and when they are missing or \
rejected wharf says which registry, which sources it looked at, and how to fix it.\n\n\
Everything wharf writes goes under .wharf/ in the project: builds/, logs/<job>.log, \
artifacts/<job>/, cache/<key>/."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline's jobs (all of them, or those named), stage by stage.
    ///
    /// Exit status: 0 when every job passed (allowed failures count as passed), 1 when a job
    /// failed, 2 for usage or pipeline errors, 130 when interrupted.
    Run(RunArgs),
    /// List the pipeline's jobs: stage, job, when, what the rules decided, needs.
    List(ListArgs),
    /// Validate the pipeline. Exit status 0 when valid, 2 with every problem listed.
    Lint(LintArgs),
    /// Print the fully merged configuration (includes, anchors, extends and !reference resolved).
    Config(PipelineArgs),
    /// Check credentials against a registry, then store them like `docker login` (or print a
    /// DOCKER_AUTH_CONFIG value for GitLab).
    Login(LoginArgs),
    /// Serve an access-controlled OCI registry, collect its garbage, manage its users.
    Registry(registry_cmd::RegistryArgs),
    /// What this machine can do for wharf's executors (Docker, user namespaces, overlayfs,
    /// cgroups...), each problem with the command that fixes it. Exit status 1 when a check fails.
    Doctor(doctor::DoctorArgs),
    /// Pull an image into wharf's own store (no Docker needed): credentials as for jobs,
    /// layers verified and unpacked once, shared by all jobs.
    Pull(image_cmd::PullArgs),
    /// List the images of wharf's store with their sizes; `rm` and `prune` them.
    Images(image_cmd::ImagesArgs),
    /// Take jobs from a GitLab instance and run them with wharf's executors, as a GitLab
    /// runner does.
    #[command(subcommand)]
    Runner(runner_cmd::RunnerCommand),
}

#[derive(Args)]
struct RunArgs {
    /// Jobs to run; default: every job of the pipeline. Naming a `when: manual` job runs it.
    #[arg(value_name = "JOB")]
    jobs: Vec<String>,
    /// Also run what the named jobs `need`, transitively.
    #[arg(long)]
    needs: bool,
    /// Run every job of this stage (repeatable).
    #[arg(long = "stage", value_name = "STAGE")]
    stages: Vec<String>,
    /// Play this manual job in this run (repeatable).
    #[arg(long = "manual", value_name = "JOB")]
    manual: Vec<String>,
    /// How many jobs may run at once (default: the number of CPU cores).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Print newline-delimited JSON events on standard output (pipeline_started, job_started,
    /// job_finished, pipeline_finished); the human output goes to standard error.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// auto: jobs with `image:` run in Docker when a daemon answers (DOCKER_HOST or
    /// /var/run/docker.sock), else in wharf's daemonless sandbox when this machine can run it
    /// (`wharf doctor`), else in the shell with a warning; jobs without `image:` run in the shell.
    /// sandbox: the job's image from wharf's store ($WHARF_HOME), in namespaces, no daemon.
    #[arg(long, value_enum, default_value_t = Executor::Auto)]
    executor: Executor,
    /// When to pull job images (GitLab's runner defaults to always). Replaces the pipeline's
    /// `image: pull_policy`.
    #[arg(long = "pull-policy", value_enum, value_name = "POLICY")]
    pull_policy: Option<Pull>,
    /// Largest total of a job's `artifacts: reports: dotenv` files, in bytes (suffixes as
    /// --max-yaml-size); GitLab's plan limit `dotenv_size`, default 5KiB.
    #[arg(long = "max-dotenv-size", value_name = "BYTES", value_parser = parse_bytes)]
    max_dotenv_size: Option<usize>,
    /// Most variables a job's dotenv reports may pass on; GitLab's plan limit
    /// `dotenv_variables`, default 20.
    #[arg(long = "max-dotenv-variables", value_name = "N")]
    max_dotenv_variables: Option<usize>,
    /// Memory limit of every job, swap included (GitLab runner's `[runners.docker] memory`):
    /// bytes or a number with k, m, g (powers of 1024), e.g. `512m`, `1g`. A job that goes over
    /// has a process killed (exit code 137) and its log says the limit was reached. Docker and
    /// sandbox executors (the sandbox through cgroups: v2 delegated, or v1 as root; where it
    /// cannot, the job log says why); the shell executor cannot limit and says so.
    #[arg(long, value_name = "SIZE", value_parser = wharf_run::parse_memory_size)]
    memory: Option<u64>,
    /// Most processes and threads a job may have at once (GitLab runner's `pids_limit`): a fork
    /// beyond it fails. Same executors as --memory.
    #[arg(long = "pids-limit", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pids_limit: Option<u64>,
    /// The network a sandbox job with `services:` shares with them. isolated: a network of
    /// their own with only loopback (services on 127.0.0.1 and by alias; the host's network is
    /// not reachable). host: the host's network (the job reaches what the host reaches; the
    /// services listen on the host's loopback, where ports may collide).
    #[arg(long = "sandbox-network", value_enum, default_value_t = SandboxNet::Isolated)]
    sandbox_network: SandboxNet,
}

#[derive(Clone, Copy, ValueEnum)]
enum SandboxNet {
    Isolated,
    Host,
}

#[derive(Args)]
struct ListArgs {
    /// Print one JSON object per job instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

/// Where the pipeline is, and the variables it is read with.
#[derive(Args)]
struct LintArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Make warnings errors: what GitLab accepts but reads in a way that may surprise
    /// (a duplicate key, `yes` read as "true", a `<<` that replaces a key written before it).
    #[arg(long)]
    strict: bool,
}

#[derive(Args)]
struct PipelineArgs {
    /// Project folder (where the pipeline file and the sources are).
    #[arg(
        short = 'C',
        long = "directory",
        value_name = "DIR",
        default_value = "."
    )]
    directory: PathBuf,
    /// Pipeline file, relative to the project folder.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = ".gitlab-ci.yml"
    )]
    file: String,
    /// A pipeline variable (like GitLab's Settings > CI/CD > Variables); beats every variable
    /// of the pipeline file. Repeatable. `--variable DOCKER_AUTH_CONFIG=<json>` gives
    /// registry credentials.
    #[arg(long = "variable", value_name = "KEY=VALUE")]
    variables: Vec<String>,
    /// A file of variables: YAML (`.yml`/`.yaml`: `KEY: value` or
    /// `KEY: {value: ..., masked: true, type: file}`) or dotenv (any other name: `KEY=value`).
    /// Repeatable; later files win; `--variable` beats them.
    #[arg(long = "variables-file", value_name = "FILE")]
    variables_files: Vec<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    includes: includes::IncludeArgs,
}

/// GitLab's limits on the configuration, which wharf applies too (defaults: GitLab's).
#[derive(Args)]
struct LimitArgs {
    /// Largest YAML file, in bytes (suffixes k, M, G, KiB, MiB, GiB); GitLab's
    /// `max_yaml_size_bytes`, default 2MiB.
    #[arg(long = "max-yaml-size", value_name = "BYTES", value_parser = parse_bytes)]
    max_yaml_size: Option<usize>,
    /// Deepest nesting of maps and lists in a YAML file (at most 500); GitLab's
    /// `max_yaml_depth`, default 100.
    #[arg(long = "max-yaml-depth", value_name = "N")]
    max_yaml_depth: Option<usize>,
    /// Most included files, nested and repeated ones too; GitLab's `ci_max_includes`,
    /// default 150.
    #[arg(long = "max-includes", value_name = "N")]
    max_includes: Option<usize>,
    /// Largest total of all the pipeline's YAML files, in bytes; GitLab's
    /// `ci_max_total_yaml_size_bytes`, default 300MiB.
    #[arg(long = "max-total-yaml-size", value_name = "BYTES", value_parser = parse_bytes)]
    max_total_yaml_size: Option<usize>,
    /// Most jobs in the pipeline, `parallel:` instances counted; GitLab's `ci_pipeline_size`,
    /// default 2000.
    #[arg(long = "max-jobs", value_name = "N")]
    max_jobs: Option<usize>,
}

impl LimitArgs {
    fn limits(&self) -> Result<wharf_ci::Limits> {
        let mut limits = wharf_ci::Limits::default();
        if let Some(depth) = self.max_yaml_depth {
            if depth > wharf_ci::Limits::HARD_MAX_DEPTH {
                bail!(
                    "--max-yaml-depth {depth}: wharf reads at most {} levels (deeper YAML would exhaust its stack)",
                    wharf_ci::Limits::HARD_MAX_DEPTH
                );
            }
            limits.max_yaml_depth = depth;
        }
        let set = |flag: Option<usize>, field: &mut usize| {
            if let Some(v) = flag {
                *field = v;
            }
        };
        set(self.max_yaml_size, &mut limits.max_yaml_bytes);
        set(self.max_includes, &mut limits.max_includes);
        set(self.max_total_yaml_size, &mut limits.max_total_yaml_bytes);
        set(self.max_jobs, &mut limits.max_jobs);
        Ok(limits)
    }
}

/// `123`, `4k`, `2M`, `1G` (powers of 1000) or `4KiB`, `2MiB`, `1GiB` (powers of 1024).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let factor: usize = match unit {
        "" | "B" => 1,
        "k" | "K" | "kB" | "KB" => 1_000,
        "M" | "MB" => 1_000_000,
        "G" | "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` (use k, M, G, KiB, MiB or GiB)"
            ));
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a number of bytes"))?;
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Executor {
    Auto,
    Docker,
    Sandbox,
    Shell,
}

/// What the jobs take from wharf's own environment (the runner level).
fn runner_env() -> RunnerEnv {
    RunnerEnv {
        docker_auth_config: std::env::var("DOCKER_AUTH_CONFIG")
            .ok()
            .filter(|v| !v.is_empty()),
        docker_config: std::env::var_os("DOCKER_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        home: std::env::var_os("HOME").map(PathBuf::from),
        path: std::env::var_os("PATH"),
        docker_host: std::env::var("DOCKER_HOST").ok(),
        wharf_home: std::env::var_os("WHARF_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        job_credentials: None,
    }
}

impl Executor {
    fn choice(self) -> ExecutorChoice {
        match self {
            Executor::Auto => ExecutorChoice::Auto,
            Executor::Docker => ExecutorChoice::Docker,
            Executor::Sandbox => ExecutorChoice::Sandbox,
            Executor::Shell => ExecutorChoice::Shell,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Pull {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Args)]
struct LoginArgs {
    /// Registry host[:port] (e.g. registry.example.com, 127.0.0.1:5000).
    registry: String,
    /// User name.
    #[arg(short = 'u', long = "username")]
    username: String,
    /// Read the password (or access token) from standard input.
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// Do not store anything: print a DOCKER_AUTH_CONFIG value to paste into GitLab's
    /// Settings > CI/CD > Variables (or to pass with `wharf run --variable`).
    #[arg(long = "print-auth-config")]
    print_auth_config: bool,
    /// Allow plain HTTP for a registry that is not on loopback.
    #[arg(long)]
    insecure: bool,
}

fn main() -> ExitCode {
    // The sandbox executor re-executes wharf as the init of a job's namespaces. This comes before
    // anything else: entering a user namespace needs a process without threads.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = wharf_sandbox::dispatch(&args) {
        return ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX));
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args).await,
            Command::List(args) => list(args),
            Command::Lint(args) => lint(args),
            Command::Config(args) => config(args),
            Command::Login(args) => login(args).await,
            Command::Registry(args) => registry_cmd::run(args).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Pull(args) => image_cmd::pull(args).await,
            Command::Images(args) => image_cmd::images(args),
            Command::Runner(command) => runner_fleet::dispatch(command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text::error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// A pipeline read from disk with the variables it was read with.
struct Opened {
    project_dir: PathBuf,
    loader: Arc<ProjectLoader>,
    loaded: wharf_ci::Loaded,
    cli_variables: Vec<(String, String)>,
    file_variables: Vec<FileVariable>,
    limits: wharf_ci::Limits,
}

/// Read the flags' variables and load the pipeline; `Err(code)` when it does not load (the
/// diagnostics are printed).
/// What loading a pipeline takes, read once from the arguments for every command.
struct Loading {
    project_dir: PathBuf,
    loader: Arc<ProjectLoader>,
    options: wharf_ci::LoadOptions,
    cli_variables: Vec<(String, String)>,
    file_variables: Vec<FileVariable>,
    limits: wharf_ci::Limits,
}

fn loading(args: &PipelineArgs) -> Result<Loading> {
    let project_dir = std::fs::canonicalize(&args.directory)
        .with_context(|| format!("project folder {}", args.directory.display()))?;
    let cli_variables = args
        .variables
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if wharf_run::vars::is_variable_name(k) => {
                Ok((k.to_string(), v.to_string()))
            }
            // Never echo the value: it may be a secret. The name alone is safe to show.
            Some((k, _)) => {
                bail!("--variable {k}=...: a variable name is made of letters, digits and `_`, at most {} characters", wharf_run::vars::MAX_VARIABLE_NAME_LEN)
            }
            None => bail!("--variable expects KEY=VALUE (the argument has no `=`)"),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut file_variables = Vec::new();
    for path in &args.variables_files {
        file_variables.extend(read_variables_file(path)?);
    }
    let limits = args.limits.limits()?;
    let loader = Arc::new(ProjectLoader {
        root: project_dir.clone(),
        network: args.includes.network(limits.max_yaml_bytes)?,
    });
    let mut options = wharf_run::load_options(
        wharf_run::predefined::for_loading(&project_dir),
        &file_variables,
        &cli_variables,
    );
    options.limits = limits.clone();
    Ok(Loading {
        project_dir,
        loader,
        options,
        cli_variables,
        file_variables,
        limits,
    })
}

fn open(args: &PipelineArgs) -> Result<Result<Opened, ExitCode>> {
    let Loading {
        project_dir,
        loader,
        options,
        cli_variables,
        file_variables,
        limits,
    } = loading(args)?;
    let loaded = match wharf_ci::load_pipeline_with(&args.file, loader.as_ref(), &options) {
        Ok(l) => l,
        Err(diags) => {
            eprintln!("{}", diags.render(&|f| loader.text(f)));
            return Ok(Err(ExitCode::from(2)));
        }
    };
    print_warnings(&loaded.warnings, loader.as_ref());
    Ok(Ok(Opened {
        project_dir,
        loader,
        loaded,
        cli_variables,
        file_variables,
        limits,
    }))
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let opened = match open(&args.pipeline)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    // With --json, stdout carries only events; the human output moves to stderr.
    let (console, events, color) = if args.json {
        let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        (
            Console::new(color, Box::new(std::io::stderr())),
            Some(Console::stdout(false)),
            color,
        )
    } else {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        (Console::stdout(color), None, color)
    };
    let concurrency = match args.concurrency {
        Some(0) => bail!("--concurrency must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };

    let env = runner_env();
    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nInterrupted: stopping the running jobs and removing their containers...");
            let _ = cancel_tx.send(true);
        }
    });
    let opts = RunOptions {
        project_dir: opened.project_dir,
        selection: Selection {
            jobs: args.jobs,
            stages: args.stages,
            with_needs: args.needs,
            manual: args.manual,
        },
        concurrency,
        events,
        loader: Some(opened.loader.clone()),
        load_limits: opened.limits,
        dotenv_limits: {
            // GitLab's defaults live in DotenvLimits::default(); a flag replaces one of them.
            let defaults = wharf_run::DotenvLimits::default();
            wharf_run::DotenvLimits {
                max_bytes: args
                    .max_dotenv_size
                    .map_or(defaults.max_bytes, |bytes| bytes as u64),
                max_variables: args.max_dotenv_variables.unwrap_or(defaults.max_variables),
            }
        },
        cli_variables: opened.cli_variables,
        file_variables: opened.file_variables,
        executor: args.executor.choice(),
        pull_policy: args.pull_policy.map(|p| match p {
            Pull::Always => PullPolicy::Always,
            Pull::IfNotPresent => PullPolicy::IfNotPresent,
            Pull::Never => PullPolicy::Never,
        }),
        env,
        console: console.clone(),
        cancel: cancel_rx,
        pull_retry_delays: vec![Duration::from_secs(2), Duration::from_secs(4)],
        limits: wharf_run::Limits {
            memory: args.memory,
            pids: args.pids_limit,
        },
        volumes: Vec::new(),
        sandbox_network: match args.sandbox_network {
            SandboxNet::Isolated => wharf_run::SandboxNetwork::Isolated,
            SandboxNet::Host => wharf_run::SandboxNetwork::Host,
        },
        token_mask_prefixes: Vec::new(),
        artifact_transfer: None,
        cache_transfer: None,
    };
    let report = match wharf_run::run_pipeline(&opened.loaded.pipeline, &opts).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    console.write(report.summary(color).as_bytes());
    Ok(if report.canceled {
        ExitCode::from(130)
    } else if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn list(args: ListArgs) -> Result<ExitCode> {
    let opened = match open(&args.pipeline)? {
        Ok(o) => o,
        Err(code) => return Ok(code),
    };
    let plan = match wharf_run::plan_pipeline(
        &opened.loaded.pipeline,
        &opened.project_dir,
        &opened.cli_variables,
        &opened.file_variables,
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let created = plan.workflow.is_ok();
    if let Err(why) = &plan.workflow {
        eprintln!("Pipeline not created: {why}");
    }
    let pipeline = &opened.loaded.pipeline;
    let rows: Vec<[String; 6]> = plan
        .jobs
        .iter()
        .map(|pj| {
            let when = if pj.outcome.included && created {
                when_word(pj.job.when).to_string()
            } else {
                "-".to_string()
            };
            let needs = match &pj.job.needs {
                None => "(stage order)".to_string(),
                Some(n) if n.is_empty() => "[]".to_string(),
                Some(n) => n
                    .iter()
                    .map(|n| n.job.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let outcome = if pj.outcome.included {
                format!("runs ({})", pj.outcome.why)
            } else {
                format!("not in pipeline ({})", pj.outcome.why)
            };
            let from = format!("{}:{}", pj.job.span.file, pj.job.span.line);
            [
                pj.job.stage.clone(),
                pj.job.name.clone(),
                when,
                outcome,
                needs,
                from,
            ]
        })
        .collect();
    if args.json {
        for (pj, row) in plan.jobs.iter().zip(&rows) {
            let needs: Option<Vec<&str>> = pj
                .job
                .needs
                .as_ref()
                .map(|n| n.iter().map(|n| n.job.as_str()).collect());
            println!(
                "{}",
                serde_json::json!({
                    "stage": row[0],
                    "job": row[1],
                    "when": when_word(pj.job.when),
                    "included": pj.outcome.included && created,
                    "rules": pj.outcome.why,
                    "allow_failure": pj.job.allow_failure,
                    "needs": needs,
                    "from": {
                        "file": pj.job.span.file,
                        "line": pj.job.span.line,
                        "included_by": pipeline.included(&pj.job.span.file).map(|i| &i.via),
                    },
                })
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let header = [
        "stage".to_string(),
        "job".to_string(),
        "when".to_string(),
        "rules".to_string(),
        "needs".to_string(),
        "from".to_string(),
    ];
    let mut widths = [0usize; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if !pipeline.includes.is_empty() {
        println!("\nincluded files:");
        for file in &pipeline.includes {
            println!("  {}", file.describe());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn when_word(w: wharf_ci::When) -> &'static str {
    match w {
        wharf_ci::When::OnSuccess => "on_success",
        wharf_ci::When::OnFailure => "on_failure",
        wharf_ci::When::Always => "always",
        wharf_ci::When::Manual => "manual",
        wharf_ci::When::Delayed => "delayed",
        wharf_ci::When::Never => "never",
    }
}

fn lint(lint: LintArgs) -> Result<ExitCode> {
    let args = lint.pipeline;
    match open(&args)? {
        Ok(o) => {
            let warnings = o.loaded.warnings.len();
            if lint.strict && warnings > 0 {
                eprintln!(
                    "{}: {warnings} warning{}, which --strict makes errors",
                    args.file,
                    if warnings == 1 { "" } else { "s" }
                );
                return Ok(ExitCode::from(2));
            }
            let jobs = o.loaded.pipeline.jobs.len();
            println!(
                "{}: valid ({jobs} job{})",
                args.file,
                if jobs == 1 { "" } else { "s" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(code) => Ok(code),
    }
}

fn config(args: PipelineArgs) -> Result<ExitCode> {
    // The same variables, checks and loader as every other command.
    let Loading {
        loader, options, ..
    } = loading(&args)?;
    match wharf_ci::merged_yaml_with_warnings(&args.file, loader.as_ref(), &options) {
        Ok((yaml, warnings)) => {
            print_warnings(&warnings, &loader);
            print!("{yaml}");
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            eprintln!("{}", diags.render(&|f| loader.text(f)));
            Ok(ExitCode::from(2))
        }
    }
}

/// Each warning on stderr with its source excerpt.
fn print_warnings(warnings: &[wharf_ci::Diagnostic], loader: &ProjectLoader) {
    for w in warnings {
        let file = w.span.as_ref().map(|s| s.file.clone()).unwrap_or_default();
        eprintln!("{}", w.render(&loader.text(&file).unwrap_or_default()));
    }
}

fn read_variables_file(path: &Path) -> Result<Vec<FileVariable>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --variables-file {}", path.display()))?;
    let name = path.display().to_string();
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    );
    if yaml {
        // No source excerpt: the offending line may hold a secret value.
        wharf_ci::parse_variables_yaml(&name, &text).map_err(|d| anyhow::anyhow!("{d}"))
    } else {
        let pairs = wharf_run::parse_dotenv(&name, &text).map_err(anyhow::Error::msg)?;
        if let Some((bad, _)) = pairs
            .iter()
            .find(|(k, _)| !wharf_run::vars::is_variable_name(k))
        {
            bail!(
                "{name}: `{}` is not a valid variable name: letters, digits and `_` only, at most {} characters",
                bad.chars().take(64).collect::<String>(),
                wharf_run::vars::MAX_VARIABLE_NAME_LEN
            );
        }
        Ok(pairs
            .into_iter()
            .map(|(name, value)| FileVariable {
                name,
                value,
                masked: false,
                file: false,
            })
            .collect())
    }
}

struct ProjectLoader {
    root: PathBuf,
    /// Files from outside the project.
    network: includes::Network,
}

impl ProjectLoader {
    fn read(&self, path: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.root.join(path))
    }

    /// A file's text for diagnostics: fetched from outside the project, or a project file.
    fn text(&self, name: &str) -> Option<String> {
        self.network
            .fetched_text(name)
            .or_else(|| self.read(name).ok())
    }
}

impl wharf_ci::Loader for ProjectLoader {
    fn load(&self, path: &str) -> Result<String, std::io::Error> {
        self.read(path)
    }

    fn list_files(&self) -> Result<Vec<String>, std::io::Error> {
        let files = wharf_run::files::snapshot(&self.root).map_err(std::io::Error::other)?;
        Ok(files
            .iter()
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .collect())
    }

    fn fetch(
        &self,
        file: &wharf_ci::External,
    ) -> Result<wharf_ci::Fetched, wharf_ci::FetchFailure> {
        self.network.fetch(file)
    }
}

async fn login(args: LoginArgs) -> Result<ExitCode> {
    if !args.password_stdin {
        bail!(
            "give the password on standard input: `printf '%s' \"$PASSWORD\" | wharf login {} -u {} --password-stdin` (a password on the command line would end up in your shell history)",
            args.registry,
            args.username
        );
    }
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("the password read from standard input is empty");
    }
    let request = wharf_oci::login::LoginRequest {
        registry: args.registry.clone(),
        username: args.username.clone(),
        password: wharf_oci::Secret(password.clone()),
        insecure: args.insecure,
    };
    let outcome = match wharf_oci::login::login(&request).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    if args.print_auth_config {
        println!(
            "{}",
            wharf_oci::auth_config_json(&outcome.key, &args.username, &password)
        );
        eprintln!(
            "Credentials checked against {}. Paste the JSON above as the value of a variable named DOCKER_AUTH_CONFIG \
(GitLab: Settings > CI/CD > Variables), or pass it with `wharf run --variable DOCKER_AUTH_CONFIG=...`.",
            args.registry
        );
        return Ok(ExitCode::SUCCESS);
    }
    let dir = wharf_oci::default_docker_config_dir(
        std::env::var_os("DOCKER_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
    .context("neither DOCKER_CONFIG nor HOME is set: cannot tell where to store the credentials")?;
    let path = wharf_oci::store_login(&dir, &outcome)?;
    println!(
        "Login Succeeded (credentials for {} stored in {})",
        outcome.key,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn byte_sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_bytes("123").unwrap(), 123);
        assert_eq!(parse_bytes("4k").unwrap(), 4_000);
        assert_eq!(parse_bytes("2M").unwrap(), 2_000_000);
        assert_eq!(parse_bytes("2MiB").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert!(
            parse_bytes("2XB")
                .unwrap_err()
                .contains("unknown unit `XB`")
        );
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999999999999GiB").is_err());
    }

    #[test]
    fn limit_flags_override_gitlabs_defaults() {
        let cli = Cli::try_parse_from([
            "wharf",
            "lint",
            "--max-yaml-size",
            "4MiB",
            "--max-jobs",
            "300000",
        ])
        .unwrap();
        let Command::Lint(args) = cli.command else {
            panic!("expected lint");
        };
        let limits = args.pipeline.limits.limits().unwrap();
        assert_eq!(limits.max_yaml_bytes, 4 * 1024 * 1024);
        assert_eq!(limits.max_jobs, 300_000);
        assert_eq!(limits.max_includes, wharf_ci::Limits::GITLAB_MAX_INCLUDES);
        let too_deep = LimitArgs {
            max_yaml_size: None,
            max_yaml_depth: Some(501),
            max_includes: None,
            max_total_yaml_size: None,
            max_jobs: None,
        };
        assert!(
            too_deep
                .limits()
                .unwrap_err()
                .to_string()
                .contains("at most 500")
        );
    }
}
