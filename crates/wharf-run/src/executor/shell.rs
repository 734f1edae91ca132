//! The shell executor: scripts run on this host, in the job's build folder, as wharf's user.

use super::{Executor, ExecutorContext, Layout, ScriptRun, output_of};
use crate::failure::{JobFailure, Stop};
use crate::log::JobLog;
use crate::script::HandBack;
use crate::vars::VarSet;
use std::path::Path;
use wharf_ci::Job;

pub(crate) struct ShellExecutor {
    layout: Layout,
    shell: &'static str,
    /// Why a job with `image:` runs here (from `auto`), said instead of the plain notice.
    image_warning: Option<String>,
    /// Asked for, and not applied: said in the job log.
    limits: crate::options::Limits,
}

impl ShellExecutor {
    pub(crate) fn new(
        context: &ExecutorContext<'_>,
        job: &Job,
        image_warning: Option<String>,
    ) -> Self {
        let (build_dir, tmp_dir) = Layout::host_dirs(context, job);
        let shell = ["/bin/bash", "/usr/bin/bash", "/bin/sh"]
            .into_iter()
            .find(|s| Path::new(s).exists())
            .unwrap_or("sh");
        Self {
            layout: Layout {
                builds_dir_in_job: context
                    .wharf_dir
                    .join("builds")
                    .to_string_lossy()
                    .into_owned(),
                project_dir_in_job: build_dir.to_string_lossy().into_owned(),
                tmp_dir_in_job: tmp_dir.to_string_lossy().into_owned(),
                build_dir,
                tmp_dir,
            },
            shell,
            image_warning,
            limits: context.opts.limits,
        }
    }
}

impl Executor for ShellExecutor {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn prepare(&mut self, job: &Job, _vars: &VarSet, log: &mut JobLog) -> Result<(), Stop> {
        log.section("Preparing the \"shell\" executor");
        if !self.limits.is_empty() {
            log.warn(&format!(
                "{} not applied: the shell executor runs scripts as host processes, outside any limit; use --executor sandbox or docker to limit them",
                self.limits.describe()
            ));
        }
        if let Some(image) = &job.image {
            match &self.image_warning {
                Some(why) => log.warn(&format!("`image: {}`: {why}", image.name)),
                None => log.warn(&format!(
                    "`image: {}` ignored by the shell executor",
                    image.name
                )),
            }
        }
        Ok(())
    }

    /// The scripts run as wharf's own user: the files are theirs already.
    fn hand_over(&self) -> Result<(), JobFailure> {
        Ok(())
    }

    fn hand_back(&self) -> Option<HandBack> {
        None
    }

    async fn run_script(&mut self, script: ScriptRun<'_>, log: &mut JobLog) -> Result<i64, Stop> {
        let shell = self.shell;
        let path = self.layout.tmp_dir.join(self.layout.write_script(&script)?);
        let mut cmd = tokio::process::Command::new(shell);
        cmd.arg(&path)
            .current_dir(&self.layout.build_dir)
            .envs(script.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| JobFailure::system(format!("cannot start {shell}: {e}")))?;
        let mut rx = output_of(&mut child);
        let mut cancel = script.cancel.clone();
        loop {
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Some(c) => log.output(&c.bytes),
                    None => break,
                },
                _ = cancel.changed() => {
                    kill_group(&child);
                    let _ = child.wait().await;
                    log.flush_output();
                    return Err(Stop::Canceled);
                }
            }
        }
        log.flush_output();
        match child.wait().await {
            Ok(status) => Ok(status.code().map(i64::from).unwrap_or(128 + 9)),
            Err(e) => Err(JobFailure::system(format!("waiting for {shell}: {e}")).into()),
        }
    }

    async fn cleanup(&mut self, _log: &mut JobLog) {}
}

fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
    }
}
