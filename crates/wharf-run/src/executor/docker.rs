//! The Docker executor: each script runs in a fresh container of the job's image, with the job's
//! build folder mounted at `/builds/<project>`, next to the job's services (`crate::services`).

pub(crate) mod pull;

use super::{Executor, ExecutorContext, Layout, ScriptRun};
use crate::engine::{ContainerSpec, Engine, EngineError};
use crate::failure::{JobFailure, Stop};
use crate::files::{self, slug};
use crate::log::JobLog;
use crate::script;
use crate::services::{self, JobNetwork, Services};
use crate::vars::VarSet;
use std::collections::HashMap;
use wharf_ci::Job;
use wharf_oci::ImageRef;

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
}

pub(crate) struct DockerExecutor<'a> {
    context: ExecutorContext<'a>,
    layout: Layout,
    names: ContainerNames,
    /// `uid:gid` to give the files back to when wharf does not run as root, and the folders.
    hand_back: Option<(String, Vec<String>)>,
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
        let hand_back = host_owner().map(|owner| {
            (
                owner,
                vec![
                    layout.project_dir_in_job.clone(),
                    layout.tmp_dir_in_job.clone(),
                ],
            )
        });
        Self {
            context: *context,
            names: ContainerNames::new(context, job),
            layout,
            hand_back,
            prepared: None,
        }
    }

    async fn engine(&self) -> Result<&'a Engine, JobFailure> {
        let context = self.context;
        context
            .engine
            .get_or_init(|| async {
                Engine::connect(context.opts.env.docker_host.as_deref())
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
            .as_ref()
            .map_err(|e| JobFailure::configuration(e.clone()))
    }
}

impl Executor for DockerExecutor<'_> {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn prepare(&mut self, job: &Job, vars: &VarSet, log: &mut JobLog) -> Result<(), Stop> {
        log.section("Preparing the \"docker\" executor");
        let Some(image_spec) = &job.image else {
            return Err(JobFailure::configuration(format!(
                "job `{}` ({}) has no `image:` but --executor docker was asked for",
                job.name, job.span
            ))
            .with_hint("add `image: <name>` to the job or to `default:`, or use `--executor auto`")
            .into());
        };
        let image_name = vars.expand(&image_spec.name);
        let image_ref = ImageRef::parse(&image_name)
            .map_err(|e| JobFailure::configuration(format!("{}: {e}", image_spec.span)))?;
        let engine = self.engine().await?;
        log.info(&format!(
            "Using Docker executor with image {image_name} ..."
        ));
        let job_auth_config = vars.docker_auth_config();
        let puller = pull::ImagePuller {
            context: &self.context,
            engine,
            job_auth_config: job_auth_config.as_deref(),
        };
        puller
            .pull(&image_name, &image_ref, &image_spec.pull_policy, log)
            .await?;

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
        });
        Ok(())
    }

    fn hand_back(&self) -> Option<(String, Vec<String>)> {
        self.hand_back.clone()
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
        let file_name = format!("{}.sh", script.name);
        layout.write_tmp(&file_name, script.text).map_err(|e| {
            JobFailure::system(format!(
                "writing {}: {e}",
                layout.tmp_dir.join(&file_name).display()
            ))
        })?;
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
            binds: vec![
                format!(
                    "{}:{}",
                    layout.build_dir.display(),
                    layout.project_dir_in_job
                ),
                format!("{}:{}", layout.tmp_dir.display(), layout.tmp_dir_in_job),
            ],
            working_dir: layout.project_dir_in_job.clone(),
            labels: self.names.labels.clone(),
            user: None,
            network_mode: network.network_mode,
            extra_hosts: network.extra_hosts,
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
        // Always removed, whatever happened above.
        engine.remove(&id).await;
        match result {
            Ok(code) => Ok(code),
            Err(EngineError::Canceled) => Err(Stop::Canceled),
            Err(e) => Err(JobFailure::system(e.to_string()).into()),
        }
    }

    async fn cleanup(&mut self) {
        if let Some(prepared) = self.prepared.take() {
            prepared.services.remove(prepared.engine).await;
        }
    }
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
