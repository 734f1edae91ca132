//! Job and pipeline outcomes, with GitLab's failure reasons.

use crate::log::{Level, paint};
use std::fmt;
use std::time::Duration;
use wharf_ci::Retry;

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
    /// The job ran longer than its `timeout` (GitLab's default: 1 h).
    JobExecutionTimeout,
    /// A `trigger: strategy: depend` job whose child pipeline failed.
    DownstreamPipelineFailure,
    /// A `trigger:` job whose child pipeline could not be created (a bad child file, its
    /// inputs, or `workflow: rules` keeping nothing), GitLab's reason for that.
    DownstreamPipelineCreationFailed,
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
            Self::JobExecutionTimeout => "job_execution_timeout",
            Self::DownstreamPipelineFailure => "downstream_pipeline_failure",
            Self::DownstreamPipelineCreationFailed => "downstream_pipeline_creation_failed",
        }
    }

    /// Whether `retry:` retries a failure for this reason with this script exit code, by
    /// GitLab's rule (`Gitlab::Ci::Build::AutoRetry`): without `when` and `exit_codes` every
    /// failure is retried; otherwise a failure whose reason is in `when` (or `when` has
    /// `always`) or whose exit code is in `exit_codes`. Configuration errors are never retried:
    /// the same configuration fails the same way.
    pub fn retried_by(self, retry: &Retry, exit_code: Option<i64>) -> bool {
        if self == Self::RunnerConfigurationError || self == Self::JobCanceled {
            return false;
        }
        if retry.when.is_empty() && retry.exit_codes.is_none() {
            return true;
        }
        let by_reason = retry.when.iter().any(|w| {
            w == "always"
                || w == self.as_str()
                || (w == "stuck_or_timeout_failure" && self == Self::JobExecutionTimeout)
                || (w == "unknown_failure" && self == Self::DownstreamPipelineFailure)
        });
        let by_exit_code = exit_code.is_some_and(|code| {
            retry
                .exit_codes
                .as_ref()
                .is_some_and(|codes| codes.contains(&code))
        });
        by_reason || by_exit_code
    }
}

/// `1h`, `5m 30s`, `2s`: how GitLab writes durations.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
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
    /// `allow_failure: exit_codes`: only these exit codes may fail (empty = any, when
    /// `allow_failure` is set).
    pub allow_failure_exit_codes: Vec<i64>,
    pub duration: Duration,
    /// `coverage:` percentage found in the log.
    pub coverage: Option<String>,
    /// How many times it ran (`retry:`).
    pub attempts: u32,
    /// `environment:` name (recorded only).
    pub environment: Option<String>,
    pub interruptible: bool,
    /// A job of a child pipeline (`trigger:`): its trigger job carries its status.
    pub downstream: bool,
}

impl JobReport {
    pub fn new(job: &wharf_ci::Job, status: JobStatus, duration: Duration) -> Self {
        Self {
            name: job.name.clone(),
            stage: job.stage.clone(),
            status,
            allow_failure: job.allow_failure,
            allow_failure_exit_codes: job.allow_failure_exit_codes.clone(),
            duration,
            coverage: None,
            attempts: 1,
            environment: job.environment.clone(),
            interruptible: job.interruptible,
            downstream: false,
        }
    }

    /// A failure the pipeline tolerates: `allow_failure`, narrowed by `exit_codes` when given.
    pub fn failure_allowed(&self) -> bool {
        match &self.status {
            JobStatus::Failed { exit_code, .. } if !self.allow_failure_exit_codes.is_empty() => {
                exit_code.is_some_and(|c| self.allow_failure_exit_codes.contains(&c))
            }
            JobStatus::Failed { .. } => self.allow_failure,
            _ => false,
        }
    }

    /// Failed in a way that fails the pipeline.
    pub fn blocks(&self) -> bool {
        if self.downstream {
            return false;
        }
        match self.status {
            JobStatus::Failed { .. } => !self.failure_allowed(),
            JobStatus::Canceled => true,
            _ => false,
        }
    }

    pub fn status_word(&self) -> &'static str {
        match self.status {
            JobStatus::Passed => "passed",
            JobStatus::Failed { .. } => "failed",
            JobStatus::Skipped(_) => "skipped",
            JobStatus::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PipelineReport {
    pub jobs: Vec<JobReport>,
    pub canceled: bool,
    /// `workflow: rules` did not create the pipeline: why.
    pub not_created: Option<String>,
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
        if let Some(why) = &self.not_created {
            return format!("\nPipeline not created: {why}\n");
        }
        let with_coverage = self.jobs.iter().any(|j| j.coverage.is_some());
        let mut s = format!(
            "\n{:<w_job$}  {:<w_stage$}  {:<8}  {:>8}  {}{}\n",
            "job",
            "stage",
            "status",
            "duration",
            if with_coverage { "coverage  " } else { "" },
            "reason"
        );
        for j in &self.jobs {
            let (status, level, reason) = match &j.status {
                JobStatus::Passed => ("passed", Level::Success, String::new()),
                JobStatus::Failed { reason, exit_code } if j.failure_allowed() => (
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
            let coverage = match (&j.coverage, with_coverage) {
                (Some(c), _) => format!("{:>8}  ", format!("{c}%")),
                (None, true) => format!("{:>8}  ", ""),
                (None, false) => String::new(),
            };
            let attempts = if j.attempts > 1 {
                format!(" (after {} attempts)", j.attempts)
            } else {
                String::new()
            };
            let reason = format!("{reason}{attempts}");
            let line = format!(
                "{:<w_job$}  {:<w_stage$}  {status_cell}  {dur:>8}  {coverage}{reason}",
                j.name, j.stage
            );
            s.push_str(line.trim_end());
            s.push('\n');
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: JobStatus, allow: bool, codes: &[i64]) -> JobReport {
        JobReport {
            name: "j".into(),
            stage: "test".into(),
            status,
            allow_failure: allow,
            allow_failure_exit_codes: codes.to_vec(),
            duration: Duration::from_millis(1500),
            coverage: None,
            attempts: 1,
            environment: None,
            interruptible: false,
            downstream: false,
        }
    }

    fn failed(code: i64) -> JobStatus {
        JobStatus::Failed {
            reason: FailureReason::ScriptFailure,
            exit_code: Some(code),
        }
    }

    #[test]
    fn exit_codes_narrow_allow_failure() {
        assert!(!report(failed(3), true, &[]).blocks());
        assert!(!report(failed(3), true, &[3, 4]).blocks());
        assert!(report(failed(5), true, &[3, 4]).blocks());
        assert!(report(failed(3), false, &[]).blocks());
    }

    #[test]
    fn retry_reasons_use_gitlab_names() {
        let when = |w: &[&str]| Retry {
            max: 2,
            when: w.iter().map(|s| s.to_string()).collect(),
            exit_codes: None,
        };
        let script = FailureReason::ScriptFailure;
        assert!(script.retried_by(&when(&[]), Some(1)));
        assert!(script.retried_by(&when(&["script_failure"]), Some(1)));
        assert!(!script.retried_by(&when(&["runner_system_failure"]), Some(1)));
        assert!(
            FailureReason::JobExecutionTimeout
                .retried_by(&when(&["stuck_or_timeout_failure"]), None)
        );
        assert!(!FailureReason::RunnerConfigurationError.retried_by(&when(&["always"]), None));
    }

    #[test]
    fn retry_exit_codes_follow_gitlab() {
        let retry = |w: &[&str], codes: &[i64]| Retry {
            max: 2,
            when: w.iter().map(|s| s.to_string()).collect(),
            exit_codes: Some(codes.to_vec()),
        };
        let script = FailureReason::ScriptFailure;
        // `exit_codes` alone: only the listed codes, not every failure.
        assert!(script.retried_by(&retry(&[], &[137, 255]), Some(137)));
        assert!(!script.retried_by(&retry(&[], &[137, 255]), Some(1)));
        // A failure without an exit code (a timeout) is not matched by `exit_codes`.
        assert!(!FailureReason::JobExecutionTimeout.retried_by(&retry(&[], &[137]), None));
        // With `when`: the reason OR the exit code.
        let both = retry(&["runner_system_failure"], &[137]);
        assert!(script.retried_by(&both, Some(137)));
        assert!(!script.retried_by(&both, Some(1)));
        assert!(FailureReason::RunnerSystemFailure.retried_by(&both, None));
        // `exit_codes: []` retries nothing (GitLab's `when` default is then empty).
        assert!(!script.retried_by(&retry(&[], &[]), Some(1)));
        // Configuration errors never, whatever the codes say.
        assert!(
            !FailureReason::RunnerConfigurationError.retried_by(&retry(&["always"], &[1]), Some(1))
        );
    }

    #[test]
    fn summary_shows_coverage_and_attempts() {
        let mut r = report(JobStatus::Passed, false, &[]);
        r.coverage = Some("87.5".into());
        r.attempts = 2;
        let p = PipelineReport {
            jobs: vec![r],
            ..Default::default()
        };
        let s = p.summary(false);
        assert!(s.contains("coverage"), "{s}");
        assert!(s.contains("87.5%"), "{s}");
        assert!(s.contains("(after 2 attempts)"), "{s}");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(human_duration(Duration::from_secs(90)), "1m 30s");
    }
}
