//! The runner protocol's bodies, as gitlab-runner reads and writes them (`common/spec/spec.go`,
//! `common/network.go`). Only what wharf acts on or reports is typed; unknown fields are
//! ignored, as GitLab adds fields over time. Values that may be secrets (tokens, variable values,
//! registry passwords) never show in `Debug`.

use crate::settings::{Token, TokenKind};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// `null` reads as the default: GitLab sends `"services": null` and the like.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn job_token<'de, D: Deserializer<'de>>(d: D) -> Result<Token, D::Error> {
    String::deserialize(d).map(|secret| Token::new(TokenKind::Job, secret))
}

/// A job as `POST /api/v4/jobs/request` hands it over (201).
#[derive(Debug, Clone, Deserialize)]
pub struct JobPayload {
    pub id: u64,
    /// The job token: `JOB-TOKEN` of this job's trace and updates, and git's password.
    #[serde(deserialize_with = "job_token")]
    pub token: Token,
    #[serde(default)]
    pub allow_git_fetch: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub job_info: JobInfo,
    #[serde(default, deserialize_with = "nullable")]
    pub git_info: GitInfo,
    #[serde(default, deserialize_with = "nullable")]
    pub runner_info: RunnerInfo,
    #[serde(default, deserialize_with = "nullable")]
    pub variables: Vec<JobVariable>,
    #[serde(default, deserialize_with = "nullable")]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub image: Option<ImageSpec>,
    #[serde(default, deserialize_with = "nullable")]
    pub services: Vec<ImageSpec>,
    #[serde(default, deserialize_with = "nullable")]
    pub artifacts: Vec<ArtifactSpec>,
    #[serde(default, deserialize_with = "nullable")]
    pub cache: Vec<CacheSpec>,
    #[serde(default, deserialize_with = "nullable")]
    pub credentials: Vec<Credential>,
    #[serde(default, deserialize_with = "nullable")]
    pub dependencies: Vec<Dependency>,
    #[serde(default, deserialize_with = "nullable")]
    pub features: JobFeatures,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub project_id: u64,
    #[serde(default)]
    pub project_name: String,
    #[serde(default)]
    pub project_full_path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct GitInfo {
    #[serde(default)]
    pub repo_url: String,
    #[serde(default, rename = "ref")]
    pub ref_name: String,
    #[serde(default)]
    pub sha: String,
    #[serde(default)]
    pub before_sha: String,
    #[serde(default)]
    pub ref_type: String,
    #[serde(default, deserialize_with = "nullable")]
    pub refspecs: Vec<String>,
    /// 0: full history.
    #[serde(default)]
    pub depth: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunnerInfo {
    /// The job's timeout in seconds (the project's, or the runner's maximum).
    #[serde(default)]
    pub timeout: u64,
}

/// One variable as GitLab computed it (predefined ones included).
#[derive(Clone, Deserialize)]
pub struct JobVariable {
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub public: bool,
    /// `type: file`: the job sees a path to a file holding the value.
    #[serde(default)]
    pub file: bool,
    #[serde(default)]
    pub masked: bool,
    /// `expand: false` in the YAML: `$` stays literal.
    #[serde(default)]
    pub raw: bool,
}

impl fmt::Debug for JobVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.public && !self.masked {
            self.value.as_str()
        } else {
            "<hidden>"
        };
        f.debug_struct("JobVariable")
            .field("key", &self.key)
            .field("value", &value)
            .field("file", &self.file)
            .field("masked", &self.masked)
            .field("raw", &self.raw)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    /// `script`, `after_script` or `release`.
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub script: Vec<String>,
    /// Seconds.
    #[serde(default)]
    pub timeout: u64,
    #[serde(default)]
    pub when: StepWhen,
    #[serde(default)]
    pub allow_failure: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepWhen {
    #[default]
    OnSuccess,
    OnFailure,
    Always,
}

/// `image:` and each of `services:`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageSpec {
    pub name: String,
    #[serde(default)]
    pub alias: String,
    #[serde(default, deserialize_with = "nullable")]
    pub command: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub pull_policy: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub variables: Vec<JobVariable>,
    #[serde(default, deserialize_with = "nullable")]
    pub executor_opts: ExecutorOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ExecutorOptions {
    #[serde(default, deserialize_with = "nullable")]
    pub docker: DockerOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DockerOptions {
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ArtifactSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub untracked: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub paths: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub artifact_format: Option<String>,
    #[serde(default)]
    pub expire_in: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CacheSpec {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub untracked: bool,
    /// `pull-push`, `pull` or `push`.
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub paths: Vec<String>,
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub fallback_keys: Vec<String>,
}

/// A registry credential GitLab gives the job (its own registry, the dependency proxy).
#[derive(Clone, Deserialize)]
pub struct Credential {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("type", &self.kind)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Dependency {
    pub id: u64,
    #[serde(deserialize_with = "job_token")]
    pub token: Token,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub artifacts_file: Option<ArtifactsFile>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ArtifactsFile {
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub size: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobFeatures {
    #[serde(default)]
    pub trace_sections: bool,
    /// Token prefixes (`glpat-`...) whose tokens are masked wherever they appear.
    #[serde(default, deserialize_with = "nullable")]
    pub token_mask_prefixes: Vec<String>,
    /// The failure reasons this GitLab knows; others are sent as `script_failure`.
    #[serde(default, deserialize_with = "nullable")]
    pub failure_reasons: Vec<String>,
}

/// `info` of every runner request: who asks, and what it can do.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerDescription {
    pub name: &'static str,
    pub version: &'static str,
    pub revision: &'static str,
    pub platform: &'static str,
    pub architecture: &'static str,
    pub executor: String,
    pub shell: &'static str,
    pub features: RunnerFeatures,
}

impl RunnerDescription {
    pub fn new(executor: &str) -> RunnerDescription {
        RunnerDescription {
            name: "wharf",
            version: env!("CARGO_PKG_VERSION"),
            revision: "unknown",
            platform: std::env::consts::OS,
            architecture: go_architecture(),
            executor: executor.to_string(),
            shell: "bash",
            features: RunnerFeatures::default(),
        }
    }
}

/// Go's name for this machine's architecture, as gitlab-runner reports it.
fn go_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// What wharf's runner really supports (`common/network.go` `FeaturesInfo`): GitLab hands some
/// jobs only to runners with some features, so nothing is claimed that wharf does not do.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerFeatures {
    pub variables: bool,
    pub image: bool,
    pub services: bool,
    pub artifacts: bool,
    pub cache: bool,
    pub upload_multiple_artifacts: bool,
    pub upload_raw_artifacts: bool,
    pub session: bool,
    pub terminal: bool,
    pub refspecs: bool,
    pub masking: bool,
    pub proxy: bool,
    pub raw_variables: bool,
    pub artifacts_exclude: bool,
    pub multi_build_steps: bool,
    pub trace_reset: bool,
    pub trace_checksum: bool,
    pub trace_size: bool,
    pub vault_secrets: bool,
    pub cancelable: bool,
    pub return_exit_code: bool,
    pub service_variables: bool,
    pub service_multiple_aliases: bool,
    pub image_executor_opts: bool,
    pub service_executor_opts: bool,
    pub cancel_gracefully: bool,
    pub two_phase_job_commit: bool,
}

impl Default for RunnerFeatures {
    fn default() -> Self {
        RunnerFeatures {
            variables: true,
            image: true,
            services: true,
            artifacts: true,
            cache: true,
            // Each `artifacts` entry (reports included) is its own upload.
            upload_multiple_artifacts: true,
            upload_raw_artifacts: true,
            session: false,
            terminal: false,
            refspecs: true,
            masking: true,
            proxy: false,
            raw_variables: true,
            artifacts_exclude: true,
            multi_build_steps: true,
            trace_reset: true,
            trace_checksum: true,
            trace_size: true,
            vault_secrets: false,
            cancelable: true,
            return_exit_code: true,
            service_variables: true,
            service_multiple_aliases: false,
            image_executor_opts: true,
            service_executor_opts: false,
            cancel_gracefully: false,
            // The job is taken with a first `PUT state=running` (`TraceSender::acknowledge`).
            two_phase_job_commit: true,
        }
    }
}

/// The job states a runner reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    Success,
    Failed,
}

/// GitLab's failure reasons a runner reports (`common/network.go`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    ScriptFailure,
    RunnerSystemFailure,
    JobExecutionTimeout,
    ImagePullFailure,
    UnknownFailure,
    RunnerConfigurationError,
    RunnerInterrupted,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::ScriptFailure => "script_failure",
            FailureReason::RunnerSystemFailure => "runner_system_failure",
            FailureReason::JobExecutionTimeout => "job_execution_timeout",
            FailureReason::ImagePullFailure => "image_pull_failure",
            FailureReason::UnknownFailure => "unknown_failure",
            FailureReason::RunnerConfigurationError => "runner_configuration_error",
            FailureReason::RunnerInterrupted => "runner_interrupted",
        }
    }

    /// The name sent to a GitLab that lists `known` reasons: an unknown one becomes
    /// `script_failure`, as gitlab-runner maps it for older GitLabs. An empty list (a GitLab
    /// that does not say) takes every reason.
    pub fn for_gitlab(self, known: &[String]) -> &'static str {
        let name = self.as_str();
        if known.is_empty() || known.iter().any(|k| k == name) {
            name
        } else {
            FailureReason::ScriptFailure.as_str()
        }
    }
}

/// The end of a job as the runner saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobOutcome {
    pub state: JobState,
    pub failure_reason: Option<FailureReason>,
    pub exit_code: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_with_nulls_and_unknown_fields_reads_and_hides_its_secrets() {
        let payload: JobPayload = serde_json::from_value(serde_json::json!({
            "id": 7, "token": "job-secret", "unknown_field": {"x": 1},
            "git_info": {"repo_url": "https://h/p.git", "ref": "main", "sha": "abc", "refspecs": null, "depth": 20},
            "variables": [{"key": "K", "value": "hidden-value", "masked": true, "public": false}],
            "steps": [{"name": "script", "script": ["true"], "timeout": 60, "when": "on_success", "allow_failure": false}],
            "image": null, "services": null,
            "credentials": [{"type": "registry", "url": "r", "username": "u", "password": "registry-secret"}],
            "features": {"failure_reasons": ["script_failure"]}
        }))
        .unwrap();
        assert_eq!(payload.git_info.ref_name, "main");
        assert_eq!(payload.git_info.depth, 20);
        assert!(payload.services.is_empty());
        let debug = format!("{payload:?}");
        for secret in ["job-secret", "hidden-value", "registry-secret"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn a_reason_gitlab_does_not_know_is_sent_as_script_failure() {
        let known = vec!["script_failure".to_string(), "job_execution_timeout".into()];
        assert_eq!(
            FailureReason::JobExecutionTimeout.for_gitlab(&known),
            "job_execution_timeout"
        );
        assert_eq!(
            FailureReason::RunnerInterrupted.for_gitlab(&known),
            "script_failure"
        );
        assert_eq!(
            FailureReason::RunnerInterrupted.for_gitlab(&[]),
            "runner_interrupted"
        );
    }
}
