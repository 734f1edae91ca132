//! Job and pipeline outcomes, with GitLab's failure reasons.

use crate::log::{Level, paint};
use std::fmt;
use std::time::Duration;

/// GitLab's failure reasons, so users see the same words as in GitLab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    ScriptFailure,
    /// Missing or rejected credentials, unknown image, bad pipeline values: the user must fix
    /// configuration; never retried, never a "system failure".
    RunnerConfigurationError,
    ImagePullFailure,
    /// The registry or daemon could not be reached (after retries).
    ExternalDependencyFailure,
    RunnerSystemFailure,
    JobCanceled,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScriptFailure => "script_failure",
            Self::RunnerConfigurationError => "runner_configuration_error",
            Self::ImagePullFailure => "image_pull_failure",
            Self::ExternalDependencyFailure => "runner_external_dependency_failure",
            Self::RunnerSystemFailure => "runner_system_failure",
            Self::JobCanceled => "job_canceled",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    Passed,
    Failed {
        reason: FailureReason,
        exit_code: Option<i64>,
    },
    Skipped(String),
    Canceled,
}

#[derive(Debug, Clone)]
pub struct JobReport {
    pub name: String,
    pub stage: String,
    pub status: JobStatus,
    pub allow_failure: bool,
    pub duration: Duration,
}

impl JobReport {
    /// Failed in a way that fails the pipeline.
    pub fn blocks(&self) -> bool {
        match self.status {
            JobStatus::Failed { .. } => !self.allow_failure,
            JobStatus::Canceled => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PipelineReport {
    pub jobs: Vec<JobReport>,
    pub canceled: bool,
}

impl PipelineReport {
    pub fn passed(&self) -> bool {
        !self.canceled && !self.jobs.iter().any(JobReport::blocks)
    }

    /// The final table: job, stage, status, duration, failure reason.
    pub fn summary(&self, color: bool) -> String {
        let w_job = self
            .jobs
            .iter()
            .map(|j| j.name.len())
            .max()
            .unwrap_or(3)
            .max(3);
        let w_stage = self
            .jobs
            .iter()
            .map(|j| j.stage.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut s = format!(
            "\n{:<w_job$}  {:<w_stage$}  {:<8}  {:>8}  {}\n",
            "job", "stage", "status", "duration", "reason"
        );
        for j in &self.jobs {
            let (status, level, reason) = match &j.status {
                JobStatus::Passed => ("passed", Level::Success, String::new()),
                JobStatus::Failed { reason, exit_code } if j.allow_failure => (
                    "failed",
                    Level::Warning,
                    format!(
                        "{reason}{} (allowed to fail)",
                        exit_code
                            .map(|c| format!(", exit code {c}"))
                            .unwrap_or_default()
                    ),
                ),
                JobStatus::Failed { reason, exit_code } => (
                    "failed",
                    Level::Error,
                    format!(
                        "{reason}{}",
                        exit_code
                            .map(|c| format!(", exit code {c}"))
                            .unwrap_or_default()
                    ),
                ),
                JobStatus::Skipped(why) => ("skipped", Level::Info, why.clone()),
                JobStatus::Canceled => ("canceled", Level::Warning, "job_canceled".into()),
            };
            let status_cell = paint(color, level, &format!("{status:<8}"));
            let dur = if matches!(j.status, JobStatus::Skipped(_)) {
                String::new()
            } else {
                format!("{:.2}s", j.duration.as_secs_f64())
            };
            s.push_str(&format!(
                "{:<w_job$}  {:<w_stage$}  {status_cell}  {dur:>8}  {reason}\n",
                j.name, j.stage
            ));
        }
        let verdict = if self.canceled {
            paint(color, Level::Warning, "pipeline canceled")
        } else if self.passed() {
            paint(color, Level::Success, "pipeline passed")
        } else {
            paint(color, Level::Error, "pipeline failed")
        };
        s.push_str(&verdict);
        s.push('\n');
        s
    }
}
