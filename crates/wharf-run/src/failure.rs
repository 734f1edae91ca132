//! One typed job failure: GitLab's [`FailureReason`], what went wrong and how to fix it. A job's
//! phases and its executor return it instead of logging; the job module (`job.rs`) logs it once
//! and turns it into the job's status.

use crate::log::JobLog;
use crate::report::{FailureReason, JobStatus};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobFailure {
    pub(crate) reason: FailureReason,
    /// What went wrong, naming the file:line, image, registry or credential source at fault.
    pub(crate) message: String,
    /// How to fix it, when there is something the user can do.
    pub(crate) hint: Option<String>,
}

impl JobFailure {
    pub(crate) fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            hint: None,
        }
    }

    /// The user must fix configuration (a pipeline value, credentials, an image name): never a
    /// "system failure".
    pub(crate) fn configuration(message: impl Into<String>) -> Self {
        Self::new(FailureReason::RunnerConfigurationError, message)
    }

    /// The machine failed the job (a file not written, a Docker API error).
    pub(crate) fn system(message: impl Into<String>) -> Self {
        Self::new(FailureReason::RunnerSystemFailure, message)
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Write it to the job's log: the message, then the fix on its own line.
    pub(crate) fn log(&self, log: &mut JobLog) {
        log.error(&self.to_string());
    }

    pub(crate) fn status(&self) -> JobStatus {
        JobStatus::Failed {
            reason: self.reason,
            exit_code: None,
        }
    }
}

impl From<crate::transfer::TransferFailure> for JobFailure {
    fn from(failure: crate::transfer::TransferFailure) -> JobFailure {
        JobFailure {
            reason: failure.reason,
            message: failure.message,
            hint: failure.hint,
        }
    }
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  fix: {hint}")?;
        }
        Ok(())
    }
}

/// Why a phase of a job ended it early: a failure, or Ctrl-C (or the job's timeout, which ends a
/// script through the same cancel signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    Failed(JobFailure),
    Canceled,
}

impl From<JobFailure> for Stop {
    fn from(failure: JobFailure) -> Self {
        Self::Failed(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_reads_as_its_message_then_its_fix() {
        let failure =
            JobFailure::configuration("image x is not present locally").with_hint("pull it first");
        assert_eq!(
            failure.to_string(),
            "image x is not present locally\n  fix: pull it first"
        );
        assert_eq!(
            failure.status(),
            JobStatus::Failed {
                reason: FailureReason::RunnerConfigurationError,
                exit_code: None
            }
        );
        assert_eq!(JobFailure::system("disk full").to_string(), "disk full");
    }
}
