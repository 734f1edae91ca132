//! wharf as a GitLab runner, the protocol side (gitlab-runner 19.x is the reference:
//! `network/gitlab.go`, `common/network.go`, `common/spec/spec.go`): the bodies
//! ([`spec`]), the calls ([`RunnerClient`]), the trace ([`trace`]), the payload as a wharf job
//! ([`job_of`], [`variables_of`]) and its sources from git ([`source`]). Running the job is
//! wharf-run's business; the `wharf runner` command joins the two.

pub mod artifacts;
mod client;
mod job;
pub mod source;
pub mod spec;
pub mod trace;

pub use client::{
    PatchAnswer, PatchResult, RemoteJobStatus, RunnerClient, RunnerError, TraceOutput,
    UpdateResult, VerifiedRunner,
};
pub use job::{job_of, variables_of};
pub use spec::{FailureReason, JobOutcome, JobPayload, JobState};
pub use trace::{TraceBuffer, run_with_trace};
