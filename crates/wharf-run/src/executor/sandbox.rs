//! The sandbox executor: each script runs in the job's image with no Docker daemon. The image
//! comes from wharf's own store (`wharf-image`: pulled with the same credentials and rules as the
//! Docker executor), and each script gets a fresh overlay of the image's layers in its own
//! namespaces (`wharf-sandbox`), with the build and script folders bound at the paths Docker
//! uses (`/builds/<project>`, `/builds/<project>.tmp`).

use super::docker::user::{JobUser, UserSpec};
use super::docker::{Access, requested_user, resolve_job_user, wharf_user};
use super::{Executor, ExecutorContext, Layout, ScriptRun, output_of};
use crate::failure::{JobFailure, Stop};
use crate::files::slug;
use crate::log::JobLog;
use crate::script::{self, HandBack};
use crate::vars::VarSet;
use serde::Deserialize;
use std::path::PathBuf;
use tokio::sync::mpsc;
use wharf_ci::{Job, PullPolicy};
use wharf_oci::{CredentialSources, Secret};
use wharf_sandbox::cgroup::{JobCgroup, Limits, Support};
use wharf_sandbox::{Bind, IdMapping, Network, RootFs, SETUP_ERROR_PREFIX, SETUP_FAILED, Spec};

/// The parts of an image's config a job's process takes (Docker's `config` object).
#[derive(Debug, Default, Deserialize)]
struct ImageConfigFile {
    #[serde(default)]
    config: RuntimeConfig,
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "User", default)]
    user: Option<String>,
}

/// What `prepare` made ready for the scripts.
struct Prepared {
    image_name: String,
    /// The image's layer folders, top first.
    lower: Vec<PathBuf>,
    /// `KEY=value` from the image, as Docker gives them to its containers.
    image_env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    /// Who the scripts run as inside the sandbox.
    user: JobUser,
    /// How ids inside map to the host (read once: it reads /etc/subuid and /etc/subgid).
    ids: IdMapping,
}

pub(crate) struct SandboxExecutor<'a> {
    context: ExecutorContext<'a>,
    layout: Layout,
    /// Per-script overlay folders (upper, work, mount point), under `.wharf/sandbox/<job>`.
    state_dir: PathBuf,
    hostname: String,
    prepared: Option<Prepared>,
    /// Why `auto` chose this executor, said in the log.
    why: Option<String>,
    /// Known once the image is: who its scripts run as decides it.
    access: Access,
    /// How each script's sandbox gets the run's limits; `None`: no limits asked for, or none
    /// possible here (`prepare` said so).
    limits: Option<Support>,
}

impl<'a> SandboxExecutor<'a> {
    pub(crate) fn new(context: &ExecutorContext<'a>, job: &Job, why: Option<String>) -> Self {
        let (build_dir, tmp_dir) = Layout::host_dirs(context, job);
        let project_dir_in_job = format!("/builds/{}", context.project_name);
        let job_slug = slug(&job.name);
        Self {
            context: *context,
            layout: Layout {
                build_dir,
                tmp_dir,
                builds_dir_in_job: "/builds".to_string(),
                tmp_dir_in_job: format!("{project_dir_in_job}.tmp"),
                project_dir_in_job,
            },
            state_dir: context.wharf_dir.join("sandbox").join(&job_slug),
            hostname: format!("runner-wharf-{job_slug}")
                .chars()
                .take(63)
                .collect(),
            prepared: None,
            why,
            access: Access::default(),
            limits: None,
        }
    }

    /// The job's folders as the job sees them.
    fn job_dirs(&self) -> Vec<String> {
        vec![
            self.layout.project_dir_in_job.clone(),
            self.layout.tmp_dir_in_job.clone(),
        ]
    }

    fn sources(&self, vars: &VarSet) -> CredentialSources {
        let env = &self.context.opts.env;
        CredentialSources {
            job_auth_config: vars.docker_auth_config().map(Secret),
            runner_auth_config: env.docker_auth_config.clone().map(Secret),
            docker_config_dir: env.docker_config.clone(),
            home_dir: env.home.clone(),
            path: env.path.clone(),
        }
    }
}

impl Executor for SandboxExecutor<'_> {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn prepare(&mut self, job: &Job, vars: &VarSet, log: &mut JobLog) -> Result<(), Stop> {
        log.section("Preparing the \"sandbox\" executor");
        if let Some(why) = &self.why {
            log.info(why);
        }
        let Some(image_spec) = &job.image else {
            return Err(super::no_image(job, "sandbox"));
        };
        if !job.services.is_empty() {
            return Err(JobFailure::configuration(format!(
                "job `{}` ({}) has `services:`, which the sandbox executor does not run yet",
                job.name, job.span
            ))
            .with_hint("run it with `--executor docker`")
            .into());
        }
        let image_name = vars.expand(&image_spec.name);
        log.info(&format!(
            "Using sandbox executor with image {image_name} ..."
        ));
        self.limits = limits_support(self.context.opts.limits, log);
        let home = self
            .context
            .opts
            .env
            .wharf_home
            .clone()
            .or_else(wharf_image::Store::default_home)
            .ok_or_else(|| {
                JobFailure::configuration("no image store: set WHARF_HOME (or HOME)".to_string())
            })?;
        let store = wharf_image::Store::open(&home)
            .map_err(|e| JobFailure::system(format!("image store {}: {e}", home.display())))?;
        let policies = match self.context.opts.pull_policy {
            Some(p) => vec![p],
            None => image_spec.pull_policy.clone(),
        };
        let options = wharf_image::PullOptions {
            policies: policies.iter().map(|p| pull_policy(*p)).collect(),
            sources: self.sources(vars),
            ..wharf_image::PullOptions::default()
        };
        let (events, mut received) = mpsc::unbounded_channel();
        let on_event = move |e: wharf_image::PullEvent| {
            let _ = events.send(e);
        };
        let pulled = wharf_image::pull(&store, &image_name, &options, &on_event).await;
        while let Ok(event) = received.try_recv() {
            log_pull_event(event, log);
        }
        let record = pulled.map_err(|e| {
            let hint = e.hint().map(str::to_string);
            let failure = JobFailure::configuration(format!("pulling {image_name}: {e}"));
            match hint {
                Some(h) => failure.with_hint(&h),
                None => failure,
            }
        })?;
        let config: ImageConfigFile = store
            .read_blob(&record.config_digest)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut lower = Vec::new();
        for layer in record.layers.iter().rev() {
            lower.push(
                store
                    .layer_dir(&layer.chain_id)
                    .map_err(|e| JobFailure::system(e.to_string()))?,
            );
        }
        let entrypoint = match &image_spec.entrypoint {
            Some(e) => e.iter().filter(|s| !s.is_empty()).cloned().collect(),
            None => config.config.entrypoint.clone().unwrap_or_default(),
        };
        let requested = requested_user(image_spec, vars);
        let spec = UserSpec::parse(
            requested
                .as_deref()
                .or(config.config.user.as_deref())
                .unwrap_or(""),
        );
        let user = if spec.is_plainly_root() {
            JobUser::ROOT
        } else {
            let (passwd, group) = if spec.needs_lookup() {
                (
                    read_from_layers(&lower, "etc/passwd"),
                    read_from_layers(&lower, "etc/group"),
                )
            } else {
                (None, None)
            };
            let given = requested.is_some().then_some(image_spec);
            resolve_job_user(
                &spec,
                passwd.as_deref(),
                group.as_deref(),
                &image_name,
                given,
            )?
        };
        let ids = wharf_sandbox::probe::id_mapping();
        if !ids.maps(user.uid, user.gid) {
            return Err(JobFailure::configuration(format!(
                "image {image_name} runs as {user}, and a sandbox started without root maps only root (wharf's own user): this user has no subordinate ids"
            ))
            .with_hint("give the user a range (`wharf doctor` says how), run wharf as root, set `image: docker: user: \"0\"`, or use `--executor docker`")
            .into());
        }
        self.access = match ids {
            IdMapping::Host => Access::between(user, wharf_user(), false, self.job_dirs()),
            // Root inside is wharf's own user: nothing to hand over for a root job.
            IdMapping::SingleId { .. } => Access::default(),
            // Inside ids are subordinate host ids wharf cannot chown to: open the folders both
            // ways, as for a Docker daemon that remaps users.
            IdMapping::Subordinate { .. } => {
                Access::between(user, JobUser::ROOT, true, self.job_dirs())
            }
        };
        let image_env = config
            .config
            .env
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.prepared = Some(Prepared {
            image_name,
            lower,
            image_env,
            entrypoint,
            user,
            ids,
        });
        Ok(())
    }

    /// As the Docker executor: a non-root image user gets the job's folders (wharf is root
    /// then); root inside a user namespace is wharf's own user.
    fn hand_over(&self) -> Result<(), JobFailure> {
        self.access.hand_over_folders(&self.layout)
    }

    fn hand_back(&self) -> Option<HandBack> {
        self.access.hand_back()
    }

    async fn run_script(&mut self, script: ScriptRun<'_>, log: &mut JobLog) -> Result<i64, Stop> {
        let Some(prepared) = self.prepared.as_ref() else {
            return Err(JobFailure::system(
                "the sandbox executor ran a script before it was prepared",
            )
            .into());
        };
        let layout = &self.layout;
        let file_name = layout.write_script(&script)?;
        tokio::task::block_in_place(|| self.access.hand_over_script_folder(layout))?;
        // A fresh container per script, as Docker's executor makes: its own upper folder.
        let state = self.state_dir.join(script.name);
        let _ = std::fs::remove_dir_all(&state);
        let [upper, work, merged] = ["upper", "work", "merged"].map(|d| state.join(d));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d)
                .map_err(|e| JobFailure::system(format!("creating {}: {e}", d.display())))?;
        }
        let ids = prepared.ids;
        let mut argv = prepared.entrypoint.clone();
        argv.extend([
            "sh".to_string(),
            "-c".to_string(),
            script::DETECT_SHELL.to_string(),
            "sh".to_string(),
            format!("{}/{file_name}", layout.tmp_dir_in_job),
        ]);
        // The image's variables first; the job's win (as `docker run -e` over `ENV`).
        let mut env = prepared.image_env.clone();
        env.retain(|(k, _)| !script.env.iter().any(|(j, _)| j == k));
        env.extend(script.env.iter().cloned());
        let mut binds = vec![
            Bind {
                source: layout.build_dir.clone(),
                target: layout.project_dir_in_job.clone(),
                read_only: false,
            },
            Bind {
                source: layout.tmp_dir.clone(),
                target: layout.tmp_dir_in_job.clone(),
                read_only: false,
            },
        ];
        // The host's name resolution, so the job reaches what the host reaches.
        for file in ["/etc/resolv.conf", "/etc/hosts"] {
            if std::path::Path::new(file).exists() {
                binds.push(Bind {
                    source: file.into(),
                    target: file.into(),
                    read_only: true,
                });
            }
        }
        let cgroup = self.job_cgroup(log);
        let spec = Spec {
            root: RootFs::Overlay {
                lower: prepared.lower.clone(),
                upper,
                work,
                merged,
                options: if ids.in_user_namespace() {
                    vec!["userxattr".into()]
                } else {
                    Vec::new()
                },
            },
            binds,
            argv,
            env,
            cwd: layout.project_dir_in_job.clone(),
            user: Some((prepared.user.uid, prepared.user.gid)),
            hostname: self.hostname.clone(),
            ids,
            network: Network::Host,
            cgroups: cgroup.as_ref().map_or_else(Vec::new, |c| c.dirs().to_vec()),
        };
        let init = std::env::current_exe()
            .map_err(|e| JobFailure::system(format!("finding wharf's own executable: {e}")))?;
        let mut child = wharf_sandbox::spawn(&spec, &init)
            .await
            .map_err(|e| JobFailure::system(format!("sandbox for {}: {e}", prepared.image_name)))?;
        let mut rx = output_of(&mut child);
        // The first stderr bytes, to tell a setup failure (exit 125 with its line) from a
        // script that exits 125.
        let mut stderr_start = Vec::new();
        let mut cancel = script.cancel.clone();
        let outcome = loop {
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Some(c) => {
                        if c.stderr && stderr_start.len() < 4096 {
                            stderr_start.extend_from_slice(&c.bytes);
                        }
                        log.output(&c.bytes);
                    }
                    None => break None,
                },
                _ = cancel.changed() => {
                    // Killing the first stage takes the whole sandbox down (PR_SET_PDEATHSIG).
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    break Some(Stop::Canceled);
                }
            }
        };
        log.flush_output();
        let status = child.wait().await;
        let _ = std::fs::remove_dir_all(&state);
        if let Some(cgroup) = cgroup {
            if let (true, Some(memory)) = (cgroup.memory_limit_reached(), cgroup.limits().memory) {
                log.warn(&super::memory_limit_reached(memory));
            }
            if let Err(e) = tokio::task::block_in_place(|| cgroup.remove()) {
                log.warn(&format!("{e}: remove it with `rmdir`"));
            }
        }
        if let Some(stop) = outcome {
            return Err(stop);
        }
        let code = match status {
            Ok(s) => s.code().unwrap_or(128 + 9),
            Err(e) => {
                return Err(JobFailure::system(format!("waiting for the sandbox: {e}")).into());
            }
        };
        let stderr = String::from_utf8_lossy(&stderr_start);
        if code == SETUP_FAILED {
            if let Some(line) = stderr.lines().find(|l| l.starts_with(SETUP_ERROR_PREFIX)) {
                return Err(
                    JobFailure::system(format!("{line} (image {})", prepared.image_name))
                        .with_hint("`wharf doctor` checks what this machine lets the sandbox do")
                        .into(),
                );
            }
        }
        Ok(i64::from(code))
    }

    async fn cleanup(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

impl SandboxExecutor<'_> {
    /// A cgroup with the run's limits for one script's sandbox; `None` when there are none to
    /// apply, or it could not be made (said in the log: the script runs without limits).
    fn job_cgroup(&self, log: &mut JobLog) -> Option<JobCgroup> {
        let support = self.limits.as_ref()?;
        let limits = self.context.opts.limits;
        match JobCgroup::create(support, limits) {
            Ok(cgroup) => cgroup,
            Err(e) => {
                log.warn(&format!(
                    "{} not applied: {e}; `wharf doctor` checks what this machine allows",
                    limits.describe()
                ));
                None
            }
        }
    }
}

/// Whether and how the sandboxes get `limits`, said once in the job log: how they apply, or
/// which are not applied, why, and the fix.
fn limits_support(limits: Limits, log: &mut JobLog) -> Option<Support> {
    if limits.is_empty() {
        return None;
    }
    match Support::detect() {
        Support::Unavailable { why, fix } => {
            log.warn(&format!(
                "{} not applied: {why}; the job runs without them. Fix: {fix}",
                limits.describe()
            ));
            None
        }
        support => {
            log.info(&format!(
                "Limits: {} ({})",
                limits.describe(),
                support.describe()
            ));
            Some(support)
        }
    }
}

/// `path` (e.g. `etc/passwd`) as the image shows it: from the topmost layer that has it, read
/// inside that layer (`InRoot`: a link cannot lead out of it). At most 1 MiB.
fn read_from_layers(layers_top_first: &[PathBuf], path: &str) -> Option<String> {
    use std::io::Read;
    for layer in layers_top_first {
        let root = wharf_fs::Root::open(layer, wharf_fs::Resolve::InRoot).ok()?;
        match root.try_metadata(path) {
            Ok(Some(meta)) => {
                // A whiteout (character device 0/0) hides the file of the layers below.
                if meta.file_type().is_file() || meta.file_type().is_symlink() {
                    let mut text = String::new();
                    root.open_read(path)
                        .ok()?
                        .take(1 << 20)
                        .read_to_string(&mut text)
                        .ok()?;
                    return Some(text);
                }
                return None;
            }
            Ok(None) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Whether a sandbox runs on this machine: a test sandbox, once per process (the machine does not
/// change under a run); `Err` says why not.
pub(crate) async fn usable(context: &ExecutorContext<'_>) -> Result<(), String> {
    static PROBE: tokio::sync::OnceCell<Result<(), String>> = tokio::sync::OnceCell::const_new();
    let scratch = context.wharf_dir.join("sandbox").join(".probe");
    PROBE
        .get_or_init(|| async move {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let finding = wharf_sandbox::probe::sandbox_runs(&exe, &scratch).await;
            match finding.verdict {
                wharf_sandbox::probe::Verdict::Fail => Err(finding.detail),
                _ => Ok(()),
            }
        })
        .await
        .clone()
}

fn pull_policy(p: PullPolicy) -> wharf_image::PullPolicy {
    match p {
        PullPolicy::Always => wharf_image::PullPolicy::Always,
        PullPolicy::IfNotPresent => wharf_image::PullPolicy::IfNotPresent,
        PullPolicy::Never => wharf_image::PullPolicy::Never,
    }
}

fn log_pull_event(event: wharf_image::PullEvent, log: &mut JobLog) {
    use wharf_image::PullEvent as E;
    match event {
        E::Credentials(source) => {
            log.info(&format!("Authenticating with credentials from {source}"));
        }
        E::Warning(w) => log.warn(&w),
        E::Info(i) => log.info(&i),
        E::Manifest(digest) => log.info(&format!("Using image {digest}")),
        E::LayerDone { digest, .. } => log.info(&format!("Pulled layer {digest}")),
        E::LayerStart { .. } | E::LayerProgress { .. } | E::LayerPresent { .. } => {}
    }
}
