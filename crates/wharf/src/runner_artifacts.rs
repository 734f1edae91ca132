//! `wharf runner`: a GitLab job's artifacts. Before the scripts, each dependency with an
//! archive is downloaded (with that dependency's token) and unpacked into the build folder;
//! after them, each of the payload's `artifacts` entries whose `when` matches is collected (as
//! `wharf run` collects its own), archived in its `artifact_format` and uploaded with its
//! `artifact_type` — one upload per entry, as gitlab-runner does (`reports:` are their own
//! entries). The log lines are gitlab-runner's; tokens never appear in them.

use std::sync::Arc;
use std::time::Duration;
use wharf_fs::{Resolve, Root};
use wharf_gitlab::runner::JobPayload;
use wharf_gitlab::runner::RunnerError;
use wharf_gitlab::runner::artifacts::{
    ArchiveError, ArchiveFormat, ArtifactUpload, ArtifactsClient, unpack_zip, write_archive,
};
use wharf_gitlab::runner::spec::{ArtifactSpec, Dependency};
use wharf_run::FailureReason;
use wharf_run::log::JobLog;
use wharf_run::transfer::{ArtifactTransfer, BuildFolder, Patterns, TransferFailure};

/// The most a dependency's or a shared cache's archive may hold once unpacked (and a
/// dependency's download weigh): a bound against archives that would fill the runner's disk,
/// far above GitLab's default maximum artifacts size (100 MB compressed).
pub(crate) const MAX_UNPACKED_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// Tries of one upload or download when GitLab answers 5xx or cannot be reached
/// (gitlab-runner's `defaultTries`; `serviceUnavailableTries` for 503).
const TRIES: usize = 3;
const TRIES_WHEN_UNAVAILABLE: usize = 6;

/// The job's artifacts at its GitLab.
pub(crate) struct GitLabArtifacts {
    client: ArtifactsClient,
    payload: JobPayload,
    /// Waits between tries (the last one repeats).
    retry_delays: Vec<Duration>,
}

impl GitLabArtifacts {
    pub(crate) fn new(client: ArtifactsClient, payload: JobPayload) -> Arc<GitLabArtifacts> {
        Arc::new(GitLabArtifacts {
            client,
            payload,
            retry_delays: vec![Duration::from_secs(1), Duration::from_secs(2)],
        })
    }

    /// `call` until it succeeds, fails for good (4xx) or has been tried as often as
    /// gitlab-runner tries; each failed try is a warning in the job's log.
    async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        log: &mut JobLog,
        mut call: F,
    ) -> Result<T, RunnerError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RunnerError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !error.is_transient() {
                return Err(error);
            }
            let limit = if error.status() == Some(503) {
                TRIES_WHEN_UNAVAILABLE
            } else {
                TRIES
            };
            if tries >= limit {
                return Err(error);
            }
            let delay = self
                .retry_delays
                .get(tries - 1)
                .or(self.retry_delays.last())
                .copied()
                .unwrap_or_default();
            log.warn(&format!(
                "{what}: {error} (try {tries} of {limit}; trying again)"
            ));
            tokio::time::sleep(delay).await;
        }
    }

    async fn download_one(
        &self,
        dependency: &Dependency,
        build: &BuildFolder<'_>,
        log: &mut JobLog,
    ) -> Result<(), TransferFailure> {
        log.info(&format!(
            "Downloading artifacts for {} ({})...",
            dependency.name, dependency.id
        ));
        let staging = build.staging_dir().map_err(|e| {
            TransferFailure::system(format!(
                "artifacts of {} ({}): a staging folder: {e}",
                dependency.name, dependency.id
            ))
        })?;
        let archive = staging.path().join("artifacts.zip");
        let files = staging.path().join("files");
        let what = format!(
            "Downloading artifacts from coordinator ({})",
            dependency.name
        );
        self.with_retries(&what, log, || {
            self.client
                .download(dependency, &archive, MAX_UNPACKED_BYTES)
        })
        .await
        .map_err(|e| {
            script_failure(format!(
                "Downloading artifacts for {} ({}) from coordinator: {e}",
                dependency.name, dependency.id
            ))
        })?;
        log.info("Downloading artifacts from coordinator... ok");
        let unpacked = {
            let (archive, files) = (archive.clone(), files.clone());
            tokio::task::spawn_blocking(move || -> Result<_, ArchiveError> {
                std::fs::create_dir(&files).map_err(|source| ArchiveError::Io {
                    action: "creating",
                    path: files.clone(),
                    source,
                })?;
                let dest = Root::open(&files, Resolve::NoSymlinks)?;
                unpack_zip(&archive, &dest, MAX_UNPACKED_BYTES)
            })
            .await
            .map_err(|e| TransferFailure::system(format!("unpacking artifacts: {e}")))?
        };
        let unpacked = unpacked.map_err(|e| {
            script_failure(format!(
                "artifacts of {} ({}): {e}",
                dependency.name, dependency.id
            ))
        })?;
        for (entry, why) in &unpacked.refused {
            log.warn(&format!("{entry}: not extracted: {why}"));
        }
        build.restore(&files, log)
    }

    async fn upload_one(
        &self,
        artifact: &ArtifactSpec,
        build: &BuildFolder<'_>,
        log: &mut JobLog,
    ) -> Result<(), TransferFailure> {
        let artifact_type = artifact.artifact_type.as_deref().unwrap_or("archive");
        log.info("Uploading artifacts...");
        let format = ArchiveFormat::parse(artifact.artifact_format.as_deref())
            .map_err(|e| TransferFailure::configuration(e.to_string()))?;
        let patterns = Patterns {
            paths: &artifact.paths,
            exclude: &artifact.exclude,
            untracked: artifact.untracked,
        };
        let collected = build.collect(patterns, log)?;
        if collected.entries.is_empty() {
            // gitlab-runner's words; not a failure.
            log.error("No files to upload");
            return Ok(());
        }
        for entry in &collected.entries {
            // gitlab-runner's count: the entry and, for a folder, everything in it.
            let inside = collected.root.walk(entry).map(|all| all.len()).unwrap_or(0);
            log.info(&format!(
                "{}: found {} matching artifact files and directories",
                entry.display(),
                1 + inside
            ));
        }
        let staging = build
            .staging_dir()
            .map_err(|e| TransferFailure::system(format!("artifacts: a staging folder: {e}")))?;
        let name = build.expand(artifact.name.as_deref().unwrap_or("artifacts"));
        let file_name = format.file_name(&name);
        let archive = staging.path().join("archive");
        let archived = {
            let archive = archive.clone();
            tokio::task::spawn_blocking(move || -> Result<usize, ArchiveError> {
                let mut out =
                    std::fs::File::create(&archive).map_err(|source| ArchiveError::Io {
                        action: "creating",
                        path: archive.clone(),
                        source,
                    })?;
                write_archive(
                    format,
                    &collected.root,
                    &collected.entries,
                    &mut out,
                    &archive,
                )
            })
            .await
            .map_err(|e| TransferFailure::system(format!("archiving artifacts: {e}")))?
        };
        archived.map_err(|e| match e {
            ArchiveError::RawNeedsOneFile { .. } | ArchiveError::UnknownFormat(_) => {
                TransferFailure::configuration(e.to_string())
            }
            other => TransferFailure::system(format!("archiving artifacts: {other}")),
        })?;
        let upload = ArtifactUpload {
            file_name: &file_name,
            format,
            artifact_type,
            expire_in: artifact.expire_in.as_deref(),
        };
        let what = format!("Uploading artifacts as \"{artifact_type}\" to coordinator");
        match self
            .with_retries(&what, log, || {
                self.client.upload(&self.payload, &archive, upload)
            })
            .await
        {
            Ok(()) => {
                log.info(&format!(
                    "Uploading artifacts as \"{artifact_type}\" to coordinator... 201 Created  id={}",
                    self.payload.id
                ));
                Ok(())
            }
            Err(e) => Err(script_failure(format!("{what}... failed: {e}"))),
        }
    }
}

/// What gitlab-runner's helper exiting 1 gives: the job fails with `exit code 1`.
fn script_failure(message: String) -> TransferFailure {
    TransferFailure {
        reason: FailureReason::ScriptFailure,
        exit_code: Some(1),
        ..TransferFailure::system(message)
    }
}

/// `artifacts:when` of a payload entry against the scripts' outcome (default `on_success`).
fn when_matches(when: Option<&str>, succeeded: bool) -> bool {
    match when.unwrap_or("on_success") {
        "always" => true,
        "on_failure" => !succeeded,
        _ => succeeded,
    }
}

#[async_trait::async_trait]
impl ArtifactTransfer for GitLabArtifacts {
    async fn download(
        &self,
        build: &BuildFolder<'_>,
        log: &mut JobLog,
    ) -> Result<(), TransferFailure> {
        let with_archives: Vec<&Dependency> = self
            .payload
            .dependencies
            .iter()
            .filter(|d| d.artifacts_file.is_some())
            .collect();
        if with_archives.is_empty() {
            return Ok(());
        }
        log.section("Downloading artifacts");
        for dependency in with_archives {
            self.download_one(dependency, build, log).await?;
        }
        Ok(())
    }

    async fn upload(
        &self,
        build: &BuildFolder<'_>,
        succeeded: bool,
        log: &mut JobLog,
    ) -> Result<(), TransferFailure> {
        let due: Vec<&ArtifactSpec> = self
            .payload
            .artifacts
            .iter()
            .filter(|a| when_matches(a.when.as_deref(), succeeded))
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        log.section(if succeeded {
            "Uploading artifacts for successful job"
        } else {
            "Uploading artifacts for failed job"
        });
        // As gitlab-runner's script stops at its first failing upload.
        for artifact in due {
            self.upload_one(artifact, build, log).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_when_defaults_to_on_success() {
        assert!(when_matches(None, true));
        assert!(!when_matches(None, false));
        assert!(when_matches(Some("on_failure"), false));
        assert!(!when_matches(Some("on_failure"), true));
        assert!(when_matches(Some("always"), false));
    }
}
