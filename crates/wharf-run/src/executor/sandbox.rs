//! The sandbox executor: each script runs in the job's image with no Docker daemon. The image
//! comes from wharf's own store (`wharf-image`: pulled with the same credentials and rules as the
//! Docker executor), and each script gets a fresh overlay of the image's layers in its own
//! namespaces (`wharf-sandbox`), with the build and script folders bound at the paths Docker
//! uses (`/builds/<project>`, `/builds/<project>.tmp`).

use super::docker::user::JobUser;
use super::docker::{Access, requested_user, wharf_user};
use super::{Executor, ExecutorContext, Layout, ScriptRun, output_of};
use crate::failure::{JobFailure, Stop};
use crate::files::slug;
use crate::log::JobLog;
use crate::script::{self, HandBack};
use crate::vars::VarSet;
use std::path::PathBuf;
use wharf_ci::Job;
use wharf_oci::{CredentialSources, Secret};
use wharf_sandbox::cgroup::{JobCgroup, Limits, Support};
use wharf_sandbox::state::{StateDir, remove_tree};
use wharf_sandbox::{Bind, IdMapping, Network, SETUP_ERROR_PREFIX, SETUP_FAILED, Spec};

mod image;
mod root;
mod services;
use image::{image_user, pull};
use root::{name_binds, overlay_root};
use services::SandboxServices;

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
    /// The job's services and the network the scripts share with them.
    services: Option<SandboxServices>,
}

pub(crate) struct SandboxExecutor<'a> {
    context: ExecutorContext<'a>,
    layout: Layout,
    /// Where sandboxes keep their state folders (`.wharf/sandbox`).
    sandbox_dir: PathBuf,
    job_slug: String,
    /// This job's state folder, claimed in `prepare`: per-script overlay folders (upper, work,
    /// mount point) under `.wharf/sandbox/<job>-<pid>-<n>`.
    state: Option<ClaimedState>,
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
            sandbox_dir: context.wharf_dir.join("sandbox"),
            hostname: format!("runner-wharf-{job_slug}")
                .chars()
                .take(63)
                .collect(),
            job_slug,
            state: None,
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
            job_credentials: env.job_credentials.clone(),
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
        let ids = self.claim_state(log)?;
        let Some(image_spec) = &job.image else {
            return Err(super::no_image(job, "sandbox"));
        };
        let image_name = vars.expand(&image_spec.name);
        log.info(&format!(
            "Using sandbox executor with image {image_name} ..."
        ));
        self.limits = limits_support(self.context.opts.limits, log);
        let store = self.store()?;
        let policies = match self.context.opts.pull_policy {
            Some(p) => vec![p],
            None => image_spec.pull_policy.clone(),
        };
        let image = pull(&store, &image_name, &policies, self.sources(vars), log).await?;
        let lower = image.lower;
        let config = image.config;
        let entrypoint = match &image_spec.entrypoint {
            Some(e) => e.iter().filter(|s| !s.is_empty()).cloned().collect(),
            None => config.entrypoint.clone().unwrap_or_default(),
        };
        let requested = requested_user(image_spec, vars);
        let given = requested.is_some().then_some(image_spec);
        let user = image_user(
            &image_name,
            &lower,
            requested.as_deref().or(config.user.as_deref()),
            given,
        )?;
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
        let image_env = config.env_pairs();
        let services = self.start_services(job, vars, &store, ids, log).await?;
        self.prepared = Some(Prepared {
            image_name,
            lower,
            image_env,
            entrypoint,
            user,
            ids,
            services,
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
        let Some(claimed) = self.state.as_ref() else {
            return Err(
                JobFailure::system("the sandbox ran a script without a state folder").into(),
            );
        };
        let state = claimed.dir.path().join(script.name);
        claimed.remove(&state, log);
        let ids = prepared.ids;
        let root = overlay_root(&state, &prepared.lower, ids)?;
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
        let network = match &prepared.services {
            // With services: their network and their names.
            Some(services) => {
                binds.extend(services.name_binds());
                services.network()
            }
            // The host's network and name resolution: the job reaches what the host reaches.
            None => {
                binds.extend(name_binds(std::path::Path::new("/etc/hosts")));
                Network::Host
            }
        };
        let cgroup = self.job_cgroup(log);
        let spec = Spec {
            root,
            binds,
            argv,
            env,
            cwd: layout.project_dir_in_job.clone(),
            user: Some((prepared.user.uid, prepared.user.gid)),
            hostname: self.hostname.clone(),
            ids,
            network,
            cgroups: cgroup.as_ref().map_or_else(Vec::new, |c| c.dirs().to_vec()),
        };
        let mut child = wharf_sandbox::spawn(&spec, &claimed.init)
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
        claimed.remove(&state, log);
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

    async fn cleanup(&mut self, log: &mut JobLog) {
        if let Some(services) = self.prepared.as_mut().and_then(|p| p.services.take()) {
            services.stop().await;
        }
        if let Some(claimed) = self.state.take() {
            if let Err(e) = claimed.dir.remove(claimed.ids, &claimed.init) {
                log.warn(&e.to_string());
            }
        }
    }
}

/// The job's state folder, and what removing what its scripts left there takes.
struct ClaimedState {
    dir: StateDir,
    ids: IdMapping,
    /// wharf itself: the init of every sandbox of the job, and what removes from inside a user
    /// namespace what a job's subordinate ids own (found once, in `prepare`).
    init: PathBuf,
}

impl ClaimedState {
    /// Remove `path` (a script's folder); a failure is a warning naming it.
    fn remove(&self, path: &std::path::Path, log: &mut JobLog) {
        if let Err(e) = remove_tree(path, self.ids, &self.init) {
            log.warn(&e.to_string());
        }
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

impl SandboxExecutor<'_> {
    /// Remove the state folders a killed wharf left (one line each), then claim this job's own;
    /// how ids map into this job's sandboxes.
    fn claim_state(&mut self, log: &mut JobLog) -> Result<IdMapping, Stop> {
        let ids = wharf_sandbox::probe::id_mapping();
        let init = std::env::current_exe()
            .map_err(|e| JobFailure::system(format!("finding wharf's own executable: {e}")))?;
        for line in reap(&self.sandbox_dir, ids, &init) {
            match line {
                Ok(done) => log.info(&done),
                Err(problem) => log.warn(&problem),
            }
        }
        let dir = StateDir::claim(&self.sandbox_dir, &self.job_slug)
            .map_err(|e| JobFailure::system(e.to_string()))?;
        self.state = Some(ClaimedState { dir, ids, init });
        Ok(ids)
    }
}

/// Reap the state folders under `sandbox_dir` that no live wharf owns: one line per folder,
/// `Ok` when it was removed, `Err` (a warning) when it could not be.
fn reap(
    sandbox_dir: &std::path::Path,
    ids: IdMapping,
    init: &std::path::Path,
) -> Vec<Result<String, String>> {
    match wharf_sandbox::state::reap(sandbox_dir, ids, init) {
        Ok(reaped) => reaped
            .into_iter()
            .map(|r| match r.removed {
                Ok(()) => Ok(format!(
                    "Removed {}, left by a wharf that was killed",
                    r.path.display()
                )),
                Err(e) => Err(e.to_string()),
            })
            .collect(),
        Err(e) => vec![Err(e.to_string())],
    }
}

/// Whether a sandbox runs on this machine: a test sandbox, once per process (the machine does not
/// change under a run); `Err` says why not.
pub(crate) async fn usable(context: &ExecutorContext<'_>) -> Result<(), String> {
    static PROBE: tokio::sync::OnceCell<Result<(), String>> = tokio::sync::OnceCell::const_new();
    let sandbox_dir = context.wharf_dir.join("sandbox");
    let console = &context.opts.console;
    PROBE
        .get_or_init(|| async move {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let ids = wharf_sandbox::probe::id_mapping();
            let warn = |line: &str| console.line(&format!("WARNING: {line}"));
            for line in reap(&sandbox_dir, ids, &exe) {
                match line {
                    Ok(done) => console.line(&done),
                    Err(problem) => warn(&problem),
                }
            }
            let state = StateDir::claim(&sandbox_dir, "probe").map_err(|e| e.to_string())?;
            let finding =
                wharf_sandbox::probe::sandbox_runs(&exe, &state.path().join("probe")).await;
            if let Err(e) = state.remove(ids, &exe) {
                warn(&e.to_string());
            }
            match finding.verdict {
                wharf_sandbox::probe::Verdict::Fail => Err(finding.detail),
                _ => Ok(()),
            }
        })
        .await
        .clone()
}

impl SandboxExecutor<'_> {
    /// Pull and start the job's services (`None` for a job without any).
    async fn start_services(
        &self,
        job: &Job,
        vars: &VarSet,
        store: &wharf_image::Store,
        ids: IdMapping,
        log: &mut JobLog,
    ) -> Result<Option<SandboxServices>, Stop> {
        let planned = crate::services::plan(job, vars)?;
        if planned.is_empty() {
            return Ok(None);
        }
        let mut images = Vec::new();
        for svc in &planned {
            log.info(&format!("Starting service {} ...", svc.image));
            let policies = match self.context.opts.pull_policy {
                Some(p) => vec![p],
                None => svc.pull_policy.clone(),
            };
            images.push(pull(store, &svc.image, &policies, self.sources(vars), log).await?);
        }
        // GitLab mounts the builds volume into every service: the folder exists before the
        // services start and is filled in place afterwards (so it is emptied, not replaced).
        crate::files::clear_dir(&self.layout.build_dir)
            .map_err(|e| JobFailure::system(e.to_string()))?;
        let Some(claimed) = self.state.as_ref() else {
            return Err(
                JobFailure::system("the sandbox started services without a state folder").into(),
            );
        };
        let setup = services::Setup {
            ids,
            network: self.context.opts.sandbox_network,
            state_dir: claimed.dir.path(),
            hostname: &self.hostname,
            build_dir: &self.layout.build_dir,
            project_dir_in_job: &self.layout.project_dir_in_job,
            cancel: self.context.opts.cancel.clone(),
            init: &claimed.init,
        };
        services::start(planned, images, setup, log).await.map(Some)
    }

    /// wharf's image store (`$WHARF_HOME`).
    fn store(&self) -> Result<wharf_image::Store, JobFailure> {
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
        wharf_image::Store::open(&home)
            .map_err(|e| JobFailure::system(format!("image store {}: {e}", home.display())))
    }
}
