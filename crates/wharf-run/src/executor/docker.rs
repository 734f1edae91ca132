//! The Docker executor: each script runs in a fresh container of the job's image, with the job's
//! build folder mounted at `/builds/<project>`, next to the job's services (`crate::services`).

pub(crate) mod pull;
pub(crate) mod user;

use super::{Executor, ExecutorContext, Layout, ScriptRun, memory_limit_reached};
use crate::engine::{ContainerSpec, Engine, EngineError};
use crate::failure::{JobFailure, Stop};
use crate::files::{self, slug};
use crate::log::JobLog;
use crate::script::{self, HandBack};
use crate::services::{self, JobNetwork, Services};
use crate::vars::VarSet;
use files::HandOver;
use std::collections::HashMap;
use user::{JobUser, UnknownName, UserSpec};
use wharf_ci::{Image, Job};
use wharf_oci::ImageRef;

/// The most of an image's `/etc/passwd` or `/etc/group` wharf reads to find the job's user.
const ACCOUNT_FILE_LIMIT: u64 = 1024 * 1024;

/// How the containers of one job are named and labelled: the job's script containers and its
/// service containers alike (and so found and removed together).
struct ContainerNames {
    /// `wharf-<project>-<pipeline>-<job>`: a script container adds `-<script>`, a service
    /// `-service-<n>-<alias>`.
    prefix: String,
    /// `wharf.job` and `wharf.pipeline`.
    labels: HashMap<String, String>,
}

impl ContainerNames {
    fn new(context: &ExecutorContext<'_>, job: &Job) -> Self {
        let project: String = context
            .project_name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        Self {
            prefix: format!(
                "wharf-{project}-{}-{}",
                context.pipeline_id,
                slug(&job.name)
            ),
            labels: HashMap::from([
                ("wharf.job".to_string(), job.name.clone()),
                (
                    "wharf.pipeline".to_string(),
                    context.pipeline_id.to_string(),
                ),
            ]),
        }
    }
}

/// What `prepare` made ready for the scripts.
struct Prepared<'a> {
    engine: &'a Engine,
    image_name: String,
    entrypoint: Option<Vec<String>>,
    services: Services,
    /// Where the script containers join the services; looked at before the first script.
    network: Option<JobNetwork>,
    /// `image: docker: user:`, expanded: the script containers' user instead of the image's.
    container_user: Option<String>,
}

/// How the job's folders pass between wharf's user and the user the job's scripts run as.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Access {
    hand_over: Option<HandOver>,
    hand_back: Option<HandBack>,
}

impl Access {
    /// `dirs`: the job's folders as the job sees them. `remapped`: the daemon maps container
    /// users to host users wharf does not know (`userns-remap`, rootless), so no uid can be
    /// matched or given: the folders are opened both ways, whoever the job runs as.
    pub(crate) fn between(job: JobUser, wharf: JobUser, remapped: bool, dirs: Vec<String>) -> Self {
        if remapped {
            return Self::open_both_ways(dirs);
        }
        if job.uid == wharf.uid {
            return Self::default();
        }
        if job.uid == 0 {
            // Root in the container reads everything; what it makes is given back.
            return Self {
                hand_over: None,
                hand_back: Some(HandBack::Chown {
                    owner: wharf.to_string(),
                    dirs,
                }),
            };
        }
        if wharf.uid == 0 {
            // wharf reads and removes whatever the job makes.
            return Self {
                hand_over: Some(HandOver::Chown {
                    uid: job.uid,
                    gid: job.gid,
                }),
                hand_back: None,
            };
        }
        // Neither can give files to the other.
        Self::open_both_ways(dirs)
    }

    /// Give the job's build and script folders to the job's user (see [`Access::between`]).
    pub(crate) fn hand_over_folders(&self, layout: &Layout) -> Result<(), JobFailure> {
        let Some(how) = self.hand_over else {
            return Ok(());
        };
        let fail = |e: files::FilesError| JobFailure::system(e.to_string());
        for dir in [&layout.build_dir, &layout.tmp_dir] {
            if how == HandOver::OpenModes {
                files::fence(dir).map_err(fail)?;
            }
            files::hand_over(dir, how).map_err(fail)?;
        }
        Ok(())
    }

    /// Again for the script folder, after wharf wrote a script into it.
    pub(crate) fn hand_over_script_folder(&self, layout: &Layout) -> Result<(), JobFailure> {
        match self.hand_over {
            Some(how) => files::hand_over(&layout.tmp_dir, how)
                .map_err(|e| JobFailure::system(e.to_string())),
            None => Ok(()),
        }
    }

    pub(crate) fn hand_back(&self) -> Option<HandBack> {
        self.hand_back.clone()
    }

    /// Open the folders up, as gitlab-runner's umask 0000, and what the job made on its way out.
    fn open_both_ways(dirs: Vec<String>) -> Self {
        Self {
            hand_over: Some(HandOver::OpenModes),
            hand_back: Some(HandBack::OpenModes { dirs }),
        }
    }
}

pub(crate) struct DockerExecutor<'a> {
    context: ExecutorContext<'a>,
    layout: Layout,
    names: ContainerNames,
    /// Known once the image is: who its scripts run as decides it.
    access: Access,
    prepared: Option<Prepared<'a>>,
}

impl<'a> DockerExecutor<'a> {
    pub(crate) fn new(context: &ExecutorContext<'a>, job: &Job) -> Self {
        let (build_dir, tmp_dir) = Layout::host_dirs(context, job);
        let project_dir_in_job = format!("/builds/{}", context.project_name);
        let layout = Layout {
            build_dir,
            tmp_dir,
            builds_dir_in_job: "/builds".to_string(),
            tmp_dir_in_job: format!("{project_dir_in_job}.tmp"),
            project_dir_in_job,
        };
        Self {
            context: *context,
            names: ContainerNames::new(context, job),
            layout,
            access: Access::default(),
            prepared: None,
        }
    }

    /// Who the job's scripts run as: `image: docker: user:` (expanded), else the image's
    /// `User`, resolved against the image's own `/etc/passwd` and `/etc/group` as Docker will.
    /// Also the user to ask Docker for (`None`: the image's).
    async fn job_user(
        &self,
        engine: &Engine,
        image_spec: &Image,
        image_name: &str,
        image_user: &str,
        vars: &VarSet,
    ) -> Result<(Option<String>, JobUser), JobFailure> {
        let container_user = requested_user(image_spec, vars);
        let spec = UserSpec::parse(container_user.as_deref().unwrap_or(image_user));
        if spec.is_plainly_root() {
            return Ok((container_user, JobUser::ROOT));
        }
        let (passwd, group) = if spec.needs_lookup() {
            let files = engine
                .read_image_files(
                    image_name,
                    &["/etc/passwd", "/etc/group"],
                    ACCOUNT_FILE_LIMIT,
                    &self.names.labels,
                )
                .await
                .map_err(|e| {
                    JobFailure::system(format!("reading the users of image {image_name}: {e}"))
                })?;
            let text = |n: usize| {
                files
                    .get(n)
                    .cloned()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            };
            (text(0), text(1))
        } else {
            (None, None)
        };
        let given = container_user.is_some().then_some(image_spec);
        let job_user = resolve_job_user(
            &spec,
            passwd.as_deref(),
            group.as_deref(),
            image_name,
            given,
        )?;
        Ok((container_user, job_user))
    }

    async fn engine(&self) -> Result<&'a Engine, JobFailure> {
        connect(&self.context)
            .await
            .map_err(|e| JobFailure::configuration(e.to_string()))
    }
}

/// The pipeline run's Docker connection, made by the first job that asks.
pub(crate) async fn connect<'a>(context: &ExecutorContext<'a>) -> Result<&'a Engine, &'a str> {
    let context = *context;
    context
        .engine
        .get_or_init(|| async {
            Engine::connect(context.opts.env.docker_host.as_deref())
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .as_ref()
        .map_err(String::as_str)
}

impl Executor for DockerExecutor<'_> {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn prepare(&mut self, job: &Job, vars: &VarSet, log: &mut JobLog) -> Result<(), Stop> {
        log.section("Preparing the \"docker\" executor");
        let Some(image_spec) = &job.image else {
            return Err(super::no_image(job, "docker"));
        };
        let image_name = vars.expand(&image_spec.name);
        let image_ref = ImageRef::parse(&image_name)
            .map_err(|e| JobFailure::configuration(format!("{}: {e}", image_spec.span)))?;
        let engine = self.engine().await?;
        log.info(&format!(
            "Using Docker executor with image {image_name} ..."
        ));
        let limits = self.context.opts.limits;
        if !limits.is_empty() {
            log.info(&format!(
                "Limits of every job container: {}",
                limits.describe()
            ));
        }
        let job_auth_config = vars.docker_auth_config();
        let puller = pull::ImagePuller {
            context: &self.context,
            engine,
            job_auth_config: job_auth_config.as_deref(),
        };
        let image_info = puller
            .pull(&image_name, &image_ref, &image_spec.pull_policy, log)
            .await?;
        let image_user = image_info.map(|i| i.user).unwrap_or_default();
        let (container_user, job_user) = self
            .job_user(engine, image_spec, &image_name, &image_user, vars)
            .await?;
        let wharf = wharf_user();
        self.access = Access::between(
            job_user,
            wharf,
            engine.remaps_users(),
            vec![
                self.layout.project_dir_in_job.clone(),
                self.layout.tmp_dir_in_job.clone(),
            ],
        );
        if self.access.hand_over.is_some() {
            let namespace = if engine.remaps_users() {
                " in dockerd's user namespace"
            } else {
                ""
            };
            log.info(&format!(
                "The job runs as {job_user}{namespace}: its folders are handed over to that user"
            ));
        }

        // Services: pulled like the job image, started before the job.
        let planned = services::plan(job, vars)?;
        for svc in &planned {
            log.info(&format!("Starting service {} ...", svc.image));
            puller
                .pull(&svc.image, &svc.image_ref, &svc.pull_policy, log)
                .await?;
        }
        // GitLab mounts the builds volume into every service too (a service sees the job's files
        // at the same path, e.g. for `docker run -v $CI_PROJECT_DIR:...` against a dind service).
        // The folder exists before the services start and is filled in place afterwards.
        let builds_bind = if planned.is_empty() {
            Vec::new()
        } else {
            files::clear_dir(&self.layout.build_dir)
                .map_err(|e| JobFailure::system(e.to_string()))?;
            vec![format!(
                "{}:{}",
                self.layout.build_dir.display(),
                self.layout.project_dir_in_job
            )]
        };
        let start = services::StartOptions {
            name_prefix: &self.names.prefix,
            labels: &self.names.labels,
            binds: &builds_bind,
            timeout: services::DEFAULT_TIMEOUT,
            cancel: self.context.opts.cancel.clone(),
        };
        let services = services::start(engine, &planned, start, log).await?;
        self.prepared = Some(Prepared {
            engine,
            image_name,
            entrypoint: image_spec.entrypoint.clone(),
            services,
            network: None,
            container_user,
        });
        Ok(())
    }

    fn hand_over(&self) -> Result<(), JobFailure> {
        self.access.hand_over_folders(&self.layout)
    }

    fn hand_back(&self) -> Option<HandBack> {
        self.access.hand_back()
    }

    async fn run_script(&mut self, script: ScriptRun<'_>, log: &mut JobLog) -> Result<i64, Stop> {
        let Some(prepared) = self.prepared.as_mut() else {
            return Err(JobFailure::system(
                "the Docker executor ran a script before it was prepared",
            )
            .into());
        };
        let engine = prepared.engine;
        if prepared.network.is_none() {
            prepared.network = Some(prepared.services.job_network(engine, log).await);
        }
        let network = prepared.network.clone().unwrap_or_default();
        let layout = &self.layout;
        let file_name = layout.write_script(&script)?;
        tokio::task::block_in_place(|| self.access.hand_over_script_folder(layout))?;
        let spec = ContainerSpec {
            name: format!("{}-{}", self.names.prefix, script.name),
            image: prepared.image_name.clone(),
            entrypoint: prepared.entrypoint.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                script::DETECT_SHELL.into(),
                "sh".into(),
                format!("{}/{file_name}", layout.tmp_dir_in_job),
            ],
            env: script.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            binds: [
                format!(
                    "{}:{}",
                    layout.build_dir.display(),
                    layout.project_dir_in_job
                ),
                format!("{}:{}", layout.tmp_dir.display(), layout.tmp_dir_in_job),
            ]
            .into_iter()
            .chain(self.context.opts.volumes.iter().cloned())
            .collect(),
            working_dir: layout.project_dir_in_job.clone(),
            labels: self.names.labels.clone(),
            user: prepared.container_user.clone(),
            network_mode: network.network_mode,
            extra_hosts: network.extra_hosts,
            memory: self.context.opts.limits.memory,
            pids_limit: self.context.opts.limits.pids,
        };
        let id = engine.create(&spec).await.map_err(|e| {
            JobFailure::system(format!(
                "creating the job container from {}: {e}",
                prepared.image_name
            ))
        })?;
        let mut cancel = script.cancel.clone();
        let result = engine
            .run(&id, &mut |bytes| log.output(bytes), &mut cancel)
            .await;
        log.flush_output();
        if let (Ok(_), Some(memory)) = (&result, spec.memory) {
            if engine
                .container_state(&id)
                .await
                .is_ok_and(|s| s.oom_killed)
            {
                log.warn(&memory_limit_reached(memory));
            }
        }
        // Always removed, whatever happened above.
        engine.remove(&id).await;
        match result {
            Ok(code) => Ok(code),
            Err(EngineError::Canceled) => Err(Stop::Canceled),
            Err(e) => Err(JobFailure::system(e.to_string()).into()),
        }
    }

    async fn cleanup(&mut self, _log: &mut JobLog) {
        if let Some(prepared) = self.prepared.take() {
            prepared.services.remove(prepared.engine).await;
        }
    }
}

/// `image: docker: user:`, expanded: it replaces the image's `User` (`None`: not given).
pub(crate) fn requested_user(image_spec: &Image, vars: &VarSet) -> Option<String> {
    image_spec
        .docker_user
        .as_ref()
        .map(|u| vars.expand(u))
        .filter(|u| !u.is_empty())
}

/// `spec` against the image's account files; an unknown name is a configuration error naming
/// the image, the name, the file and where the user came from (`given`: the job's
/// `image: docker: user:`, else the image's config).
pub(crate) fn resolve_job_user(
    spec: &UserSpec<'_>,
    passwd: Option<&str>,
    group: Option<&str>,
    image_name: &str,
    given: Option<&Image>,
) -> Result<JobUser, JobFailure> {
    spec.resolve(passwd, group).map_err(|unknown| {
        let from = match given {
            Some(image_spec) => format!("`image: docker: user:` ({})", image_spec.span),
            None => "the image's config `User`".to_string(),
        };
        let (kind, name, file) = match unknown {
            UnknownName::User(name) => ("user", name, "/etc/passwd"),
            UnknownName::Group(name) => ("group", name, "/etc/group"),
        };
        JobFailure::configuration(format!(
            "image {image_name} has no {kind} `{name}` in its {file} (the {kind} comes from {from})"
        ))
        .with_hint(
            "name a user the image has, or give numbers (`docker: user: \"1001:1001\"`), or add the user to the image",
        )
    })
}

/// The user wharf runs as.
pub(crate) fn wharf_user() -> JobUser {
    JobUser {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs() -> Vec<String> {
        vec!["/builds/p".into(), "/builds/p.tmp".into()]
    }

    #[test]
    fn access_follows_who_can_give_files_to_whom() {
        let user = |uid, gid| JobUser { uid, gid };
        let (root, wharf, job) = (JobUser::ROOT, user(1000, 1000), user(1001, 2002));
        // Same user on both sides, root ones included: nothing to do.
        assert_eq!(
            Access::between(root, root, false, dirs()),
            Access::default()
        );
        assert_eq!(
            Access::between(wharf, user(1000, 5), false, dirs()),
            Access::default()
        );
        // A root job gives its files back to a non-root wharf.
        assert_eq!(
            Access::between(root, wharf, false, dirs()),
            Access {
                hand_over: None,
                hand_back: Some(HandBack::Chown {
                    owner: "1000:1000".into(),
                    dirs: dirs()
                }),
            }
        );
        // A root wharf gives the folders to the job's user and needs nothing back.
        assert_eq!(
            Access::between(job, root, false, dirs()),
            Access {
                hand_over: Some(HandOver::Chown {
                    uid: 1001,
                    gid: 2002
                }),
                hand_back: None,
            }
        );
        // Two non-root users: open modes both ways.
        let open = Access {
            hand_over: Some(HandOver::OpenModes),
            hand_back: Some(HandBack::OpenModes { dirs: dirs() }),
        };
        assert_eq!(Access::between(job, wharf, false, dirs()), open);
        // A daemon remapping users: no uid means the same on both sides, root's included.
        for (job, wharf) in [(root, root), (job, root), (root, wharf), (wharf, wharf)] {
            assert_eq!(Access::between(job, wharf, true, dirs()), open);
        }
    }
}
