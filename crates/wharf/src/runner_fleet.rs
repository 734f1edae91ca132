//! `wharf runner run`: every runner of a config file, each in a job loop of its own
//! (`take_jobs`), under one `concurrent` bound. The file is read again when its modification
//! time changes (checked every 3 s, as gitlab-runner's `ReloadConfigInterval`) or on SIGHUP:
//! runners are matched by URL and token; new ones start, removed ones take no new jobs (their
//! running jobs finish), changed settings apply to each runner's next job. A file that does
//! not load is reported with its file:line:column and the runners keep the previous one.

use crate::error_text::error_text;
use crate::runner_cmd::{
    self, JobSlots, RunnerCommand, RunnerSettings, Signals, Slots, environment_of, executor_name,
    executor_of, take_jobs,
};
use crate::runner_config::{Config, RunnerConfig};
use crate::runner_docker::DockerSettings;
use anyhow::{Context, Result, bail};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use wharf_gitlab::runner::RunnerClient;

/// `wharf runner ...`: each subcommand to its place (`run`, the fleet, is here; the others and
/// the job engine in `runner_cmd`).
pub(crate) async fn dispatch(command: RunnerCommand) -> Result<ExitCode> {
    match command {
        RunnerCommand::RunSingle(args) => runner_cmd::run_single(args).await,
        RunnerCommand::Verify(args) => runner_cmd::verify(args).await,
        RunnerCommand::Register(args) => runner_cmd::register(args).await,
        RunnerCommand::Run(args) => run_config(args).await,
        RunnerCommand::List(args) => runner_cmd::list(args),
        RunnerCommand::Unregister(args) => runner_cmd::unregister(args).await,
    }
}

async fn run_config(args: runner_cmd::RunArgs) -> Result<ExitCode> {
    let (path, config) = runner_cmd::load_config(args.config)?;
    if config.runners.is_empty() {
        anyhow::bail!(
            "{}: no [[runners]]: add one with `wharf runner register`",
            path.display()
        );
    }
    run(path, config, Signals::listen()).await
}

/// How often the file's modification time is looked at.
const RELOAD_CHECK: Duration = Duration::from_secs(3);

/// A runner is the same runner across reloads when its URL and token are.
#[derive(PartialEq, Eq, Hash, Clone)]
struct Identity {
    url: String,
    token: String,
}

struct Member {
    name: String,
    settings: watch::Sender<Arc<RunnerSettings>>,
    stop: watch::Sender<bool>,
    own: Arc<Slots>,
    task: tokio::task::JoinHandle<ExitCode>,
}

struct Fleet {
    path: PathBuf,
    signals: Signals,
    global: Arc<Slots>,
    members: HashMap<Identity, Member>,
    /// Loops of removed runners, finishing their jobs.
    leaving: Vec<tokio::task::JoinHandle<ExitCode>>,
    /// Warnings already given (unsupported keys...): each is said once.
    said: HashSet<String>,
}

pub(crate) async fn run(path: PathBuf, config: Config, signals: Signals) -> Result<ExitCode> {
    let mut fleet = Fleet {
        global: Slots::new(config.concurrent),
        path,
        signals: signals.clone(),
        members: HashMap::new(),
        leaving: Vec::new(),
        said: HashSet::new(),
    };
    fleet.apply(config)?;
    let mut seen = modified(&fleet.path);
    let mut quitting = signals.quitting.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RELOAD_CHECK) => {
                let now = modified(&fleet.path);
                if now == seen {
                    continue;
                }
                seen = now;
            }
            () = signals.reload.notified() => {
                eprintln!("SIGHUP: reading {} again", fleet.path.display());
                seen = modified(&fleet.path);
            }
            _ = quitting.wait_for(|q| *q) => break,
        }
        match Config::load(&fleet.path).and_then(|config| fleet.apply(config)) {
            Ok(()) => {}
            Err(e) => eprintln!(
                "ERROR: {}\n  the runners keep the configuration loaded before; fix the file and save it (or send SIGHUP)",
                error_text(&e)
            ),
        }
    }
    for (_, member) in fleet.members.drain() {
        fleet.leaving.push(member.task);
    }
    for task in fleet.leaving {
        let _ = task.await;
    }
    Ok(if *signals.interrupted.borrow() {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The executor of a runner wharf can serve; else why not (an executor wharf does not have,
/// no token), naming the file and the runner and saying the fix. gitlab-runner would start
/// such a runner with the others: wharf leaves it out and starts the others.
fn servable(path: &Path, runner: &RunnerConfig) -> Result<crate::Executor, String> {
    let at = format!("{}: runner {}", path.display(), runner.name);
    let Some(executor) = executor_of(&runner.executor) else {
        return Err(format!(
            "{at}: executor `{}` is not one of wharf's: set `executor` to shell, docker, sandbox or auto (they run jobs on this machine), or leave this runner to gitlab-runner and take its [[runners]] entry out of the file wharf reads",
            runner.executor
        ));
    };
    if runner.token.trim().is_empty() {
        return Err(format!(
            "{at}: `token` is empty: put the runner's authentication token (glrt-...) there, or add the runner with `wharf runner register --url URL --token glrt-... --config {}`",
            path.display()
        ));
    }
    Ok(executor)
}

/// A runner's settings from its entry, checked; errors name the file and the runner and say
/// the fix. Warnings (things the runner does without) come back with the settings.
fn settings_of(
    path: &Path,
    config: &Config,
    runner: &RunnerConfig,
) -> Result<(RunnerSettings, Vec<String>)> {
    let at = || format!("{}: runner {}", path.display(), runner.name);
    let mut warnings = Vec::new();
    let executor = servable(path, runner).map_err(anyhow::Error::msg)?;
    let docker = match &runner.docker {
        Some(docker) => DockerSettings::of(docker, &runner.url, &runner.token).with_context(at)?,
        None => DockerSettings::default(),
    };
    // gitlab-runner never fails a job over its distributed cache: a cache it cannot use is a
    // warning and the job goes on with the local cache. wharf says it once, at start.
    let shared_cache = match &runner.cache {
        Some(cache) => match crate::runner_cache::SharedCache::of(cache, &runner.token) {
            Ok(shared) => shared.map(Arc::new),
            Err(e) => {
                warnings.push(format!(
                    "{}: {}: this runner's jobs use the local cache only",
                    at(),
                    error_text(&e)
                ));
                None
            }
        },
        None => None,
    };
    // The shell executor reads nothing of [runners.docker], as gitlab-runner's.
    if !matches!(executor, crate::Executor::Shell) {
        if docker.has_volumes() && !matches!(executor, crate::Executor::Docker) {
            warnings.push(format!(
                "{}: `docker.volumes` apply to the Docker executor only (executor `{}`: jobs in the sandbox do not get them)",
                at(),
                executor_name(executor)
            ));
        }
        if docker.privileged {
            warnings.push(format!(
                "{}: `privileged = true`: wharf runs no privileged containers; jobs that need one (docker-in-docker) fail",
                at()
            ));
        }
    }
    let script = |text: &Option<String>| text.clone().filter(|t| !t.trim().is_empty());
    let settings = RunnerSettings {
        output_limit: match runner.output_limit {
            Some(0) | None => wharf_gitlab::runner::trace::DEFAULT_OUTPUT_LIMIT,
            Some(kib) => kib.saturating_mul(1024),
        },
        pre_build_script: script(&runner.pre_build_script),
        post_build_script: script(&runner.post_build_script),
        shared_cache,
        executor,
        // `builds_dir = ""` is gitlab-runner's default, as a missing key.
        builds_dir: std::path::absolute(
            runner
                .builds_dir
                .clone()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from("builds")),
        )
        .with_context(at)?,
        check_interval: Duration::from_secs(if config.check_interval == 0 {
            3
        } else {
            config.check_interval
        }),
        max_builds: 0,
        wait_timeout: 0,
        environment: environment_of(&runner.environment).with_context(at)?,
        docker,
    };
    Ok((settings, warnings))
}

/// Takes out of `runners` those wharf cannot serve and returns why, one message each.
fn leave_out_unservable(path: &Path, runners: &mut Vec<RunnerConfig>) -> Vec<String> {
    let mut left_out = Vec::new();
    // gitlab-runner starts two entries with one url and token (two workers polling for the
    // same jobs); one is enough, and the file's other runners still start.
    let mut first_with: HashMap<Identity, String> = HashMap::new();
    runners.retain(|runner| {
        let refused = servable(path, runner).err().or_else(|| {
            let identity = Identity {
                url: runner.url.clone(),
                token: runner.token.clone(),
            };
            match first_with.get(&identity) {
                Some(first) => Some(format!(
                    "{}: runner {}: runner {first} has the same url and token (GitLab would give both the same jobs)",
                    path.display(),
                    runner.name
                )),
                None => {
                    first_with.insert(identity, runner.name.clone());
                    None
                }
            }
        });
        match refused {
            None => true,
            Some(reason) => {
                left_out.push(reason);
                false
            }
        }
    });
    left_out
}

impl Fleet {
    fn say_once(&mut self, warning: String) {
        if self.said.insert(warning.clone()) {
            eprintln!("WARNING: {warning}");
        }
    }

    /// Make the running runners those of `config`. Nothing changes unless every runner's
    /// settings are good; runners wharf cannot serve at all are left out (said once), and a
    /// file with no other runner is refused.
    fn apply(&mut self, mut config: Config) -> Result<()> {
        // Left-out runners are not looked at further: their keys are not reported either.
        let left_out = leave_out_unservable(&self.path, &mut config.runners);
        if config.runners.is_empty() && !left_out.is_empty() {
            bail!("{}", left_out.join("\n"));
        }
        let mut wanted = Vec::new();
        let mut runner_warnings = Vec::new();
        for runner in &config.runners {
            let (settings, warnings) = settings_of(&self.path, &config, runner)?;
            runner_warnings.extend(warnings);
            let identity = Identity {
                url: runner.url.clone(),
                token: runner.token.clone(),
            };
            let client =
                RunnerClient::new(&runner.url, &runner.token, executor_name(settings.executor))
                    .with_context(|| format!("{}: runner {}", self.path.display(), runner.name))?;
            wanted.push((identity, runner, settings, client));
        }
        for key in config.unsupported_keys() {
            self.say_once(format!(
                "{}: `{key}` is not supported by wharf and has no effect",
                self.path.display()
            ));
        }
        for reason in left_out {
            self.say_once(format!(
                "{reason}\n  this runner is not started; the file's other runners are"
            ));
        }
        for warning in runner_warnings {
            self.say_once(warning);
        }
        self.global.set_limit(config.concurrent);
        let mut added = Vec::new();
        let mut kept = HashSet::new();
        for (identity, runner, settings, client) in wanted {
            kept.insert(identity.clone());
            let settings = Arc::new(settings);
            if let Some(member) = self.members.get_mut(&identity) {
                member.name = runner.name.clone();
                member.own.set_limit(runner.limit);
                let _ = member.settings.send(settings);
                continue;
            }
            let (settings_tx, settings_rx) = watch::channel(settings);
            let (stop_tx, stop_rx) = watch::channel(false);
            let own = Slots::new(runner.limit);
            let slots = JobSlots {
                own: own.clone(),
                global: self.global.clone(),
            };
            let task = tokio::spawn(take_jobs(
                client,
                settings_rx,
                self.signals.clone(),
                stop_rx,
                slots,
            ));
            added.push(runner.name.clone());
            self.members.insert(
                identity,
                Member {
                    name: runner.name.clone(),
                    settings: settings_tx,
                    stop: stop_tx,
                    own,
                    task,
                },
            );
        }
        let gone: Vec<Identity> = self
            .members
            .keys()
            .filter(|k| !kept.contains(*k))
            .cloned()
            .collect();
        for identity in gone {
            if let Some(member) = self.members.remove(&identity) {
                eprintln!(
                    "Runner {} left {}: it takes no new jobs; its running jobs finish",
                    member.name,
                    self.path.display()
                );
                let _ = member.stop.send(true);
                self.leaving.push(member.task);
            }
        }
        self.leaving.retain(|task| !task.is_finished());
        eprintln!(
            "Configuration loaded from {}: {} runner(s), concurrent = {}{}",
            self.path.display(),
            self.members.len(),
            config.concurrent,
            if added.is_empty() {
                String::new()
            } else {
                format!(", started: {}", added.join(", "))
            }
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot if one is free now: tokio's timeout polls the future once before looking at
    /// its (zero) delay, so nothing here depends on time.
    async fn free(slots: &Arc<Slots>) -> Option<crate::runner_cmd::Slot> {
        tokio::time::timeout(Duration::ZERO, slots.acquire())
            .await
            .ok()
    }

    #[tokio::test]
    async fn a_lowered_limit_waits_for_running_jobs_and_a_raised_one_frees_waiters() {
        let slots = Slots::new(2);
        let first = free(&slots).await.expect("1 of 2");
        let second = free(&slots).await.expect("2 of 2");
        assert!(free(&slots).await.is_none());
        // A reload lowers the limit to 1: both running jobs keep their slots, and one slot
        // comes free only when both are done.
        slots.set_limit(1);
        drop(first);
        assert!(free(&slots).await.is_none());
        drop(second);
        let only = free(&slots).await.expect("1 of 1");
        // Raised again: a waiting job starts without anything finishing.
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire().await }
        });
        slots.set_limit(2);
        let _second = tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("the waiter was woken")
            .unwrap();
        drop(only);
        // 0: no limit.
        slots.set_limit(0);
        let _many: Vec<_> = take_free(&slots, 5).await;
    }

    /// The first runner of `text` through the checks `wharf runner run` makes at start.
    fn first_runner(text: &str) -> Result<(RunnerSettings, Vec<String>)> {
        let path = Path::new("/etc/wharf/config.toml");
        let config = Config::parse(path, text).unwrap();
        settings_of(path, &config, &config.runners[0])
    }

    fn runner_with(entries: &str) -> String {
        format!(
            "[[runners]]\n  name = \"box\"\n  url = \"https://gitlab.example.com\"\n  token = \"glrt-x\"\n  executor = \"docker\"\n{entries}"
        )
    }

    #[test]
    fn empty_strings_gitlab_runner_reads_as_its_defaults_start_the_runner() {
        let (settings, warnings) = first_runner(&runner_with(
            "  builds_dir = \"\"\n  [runners.docker]\n    memory = \"\"\n",
        ))
        .unwrap();
        assert_eq!(settings.builds_dir, std::path::absolute("builds").unwrap());
        assert_eq!(settings.docker.limits.memory, None);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_docker_section_left_in_a_shell_runner_warns_of_nothing() {
        let docker = "  [runners.docker]\n    privileged = true\n    volumes = [\"/cache\"]\n";
        let shell = runner_with(docker).replace("\"docker\"", "\"shell\"");
        assert_eq!(first_runner(&shell).unwrap().1, Vec::<String>::new());
        let sandbox = runner_with(docker).replace("\"docker\"", "\"sandbox\"");
        let warnings = first_runner(&sandbox).unwrap().1;
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("`docker.volumes` apply to the Docker executor only"));
        assert!(warnings[1].contains("`privileged = true`"));
    }

    #[test]
    fn a_cache_wharf_cannot_use_is_a_warning_and_the_local_cache_as_in_gitlab_runner() {
        for cache in [
            "  [runners.cache]\n    Type = \"gcs\"\n    [runners.cache.gcs]\n      BucketName = \"b\"\n",
            // IAM credentials from the machine: wharf needs the keys in the file.
            "  [runners.cache]\n    Type = \"s3\"\n    [runners.cache.s3]\n      ServerAddress = \"s3.amazonaws.com\"\n      BucketName = \"b\"\n      AuthenticationType = \"iam\"\n",
        ] {
            let (settings, warnings) = first_runner(&runner_with(cache)).unwrap();
            assert!(settings.shared_cache.is_none());
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].starts_with("/etc/wharf/config.toml: runner box: cache")
                    && warnings[0].ends_with("this runner's jobs use the local cache only"),
                "{}",
                warnings[0]
            );
        }
    }

    #[test]
    fn a_runner_without_token_or_with_a_foreign_executor_is_refused_with_the_fix() {
        let text = "[[runners]]\n  name = \"todo\"\n  url = \"https://gitlab.example.com\"\n  token = \"\"\n";
        for text in [text.to_string(), text.replace("  token = \"\"\n", "")] {
            let err = format!("{:#}", first_runner(&text).err().unwrap());
            assert!(
                err.starts_with("/etc/wharf/config.toml: runner todo: `token` is empty: ")
                    && err.contains("wharf runner register --url URL --token glrt-... --config /etc/wharf/config.toml"),
                "{err}"
            );
        }
        let text = runner_with("").replace("\"docker\"", "\"docker+machine\"");
        let err = format!("{:#}", first_runner(&text).err().unwrap());
        assert!(
            err.starts_with("/etc/wharf/config.toml: runner box: executor `docker+machine` is not one of wharf's: set `executor` to shell, docker, sandbox or auto"),
            "{err}"
        );
    }

    /// Regression: two entries with one url and token refused the whole file (gitlab-runner
    /// starts both), and an entry without `name` was not a configuration at all.
    #[test]
    fn a_second_entry_with_the_same_url_and_token_is_left_out_and_names_are_optional() {
        let path = Path::new("/etc/wharf/config.toml");
        let entry = |name: &str, token: &str| {
            format!(
                "[[runners]]\n{name}  url = \"https://gitlab.example.com\"\n  token = \"{token}\"\n  executor = \"shell\"\n"
            )
        };
        let text = [
            entry("  name = \"first\"\n", "glrt-abcdefghijklmnop"),
            entry("", "glrt-abcdefghijklmnop"),
            entry("", "glrt-zyxwvutsrqponmlk"),
        ]
        .concat();
        let mut config = Config::parse(path, &text).unwrap();
        let left_out = leave_out_unservable(path, &mut config.runners);
        let names: Vec<&str> = config.runners.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["first", "zyxwvutsr"]);
        assert_eq!(
            left_out,
            [
                "/etc/wharf/config.toml: runner abcdefghi: runner first has the same url and token (GitLab would give both the same jobs)"
            ]
        );
    }

    async fn take_free(slots: &Arc<Slots>, n: usize) -> Vec<crate::runner_cmd::Slot> {
        let mut taken = Vec::new();
        for _ in 0..n {
            taken.push(free(slots).await.expect("unlimited"));
        }
        taken
    }
}
