//! The shell executor: scripts run on this host, in the job's build folder, as wharf's user.

use super::{Executor, ExecutorContext, Layout, ScriptRun};
use crate::failure::{JobFailure, Stop};
use crate::log::JobLog;
use crate::script::HandBack;
use crate::vars::VarSet;
use std::path::Path;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use wharf_ci::Job;

pub(crate) struct ShellExecutor {
    layout: Layout,
    shell: &'static str,
    /// Why a job with `image:` runs here (from `auto`), said instead of the plain notice.
    image_warning: Option<String>,
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
        }
    }
}

impl Executor for ShellExecutor {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    async fn prepare(&mut self, job: &Job, _vars: &VarSet, log: &mut JobLog) -> Result<(), Stop> {
        log.section("Preparing the \"shell\" executor");
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
        let file_name = format!("{}.sh", script.name);
        let path = self.layout.tmp_dir.join(&file_name);
        self.layout
            .write_tmp(&file_name, script.text)
            .map_err(|e| JobFailure::system(format!("writing {}: {e}", path.display())))?;
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
        // Bounded: a job printing faster than the log is written waits for it (its pipe fills)
        // instead of piling its output up in memory.
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(OUTPUT_CHUNKS_IN_FLIGHT);
        if let Some(out) = child.stdout.take() {
            pump(out, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            pump(err, tx.clone());
        }
        drop(tx);
        let mut cancel = script.cancel.clone();
        loop {
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Some(c) => log.output(&c),
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

    async fn cleanup(&mut self) {}
}

/// Forward a pipe's bytes to the log channel until EOF.
fn pump<R>(mut reader: R, tx: mpsc::Sender<Vec<u8>>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    });
}

/// Chunks (of at most 16 KiB) of a job's output waiting to be logged: at most 1 MiB held.
const OUTPUT_CHUNKS_IN_FLIGHT: usize = 64;

fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
    }
}
