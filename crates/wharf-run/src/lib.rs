//! wharf-run: runs a [`wharf_ci::Pipeline`]: stage scheduling, variables, masking, logs, caches,
//! artifacts, and the shell and Docker executors.

mod artifacts;
pub mod cache;
pub mod engine;
mod executor;
mod failure;
pub mod files;
pub mod git;
mod job;
pub mod log;
pub mod mask;
mod options;
mod pipeline;
pub mod plan;
pub mod predefined;
pub mod report;
mod rules_eval;
pub mod scheduler;
pub mod script;
pub mod services;
pub mod transfer;
pub mod vars;

pub use log::Console;
pub use options::{
    DotenvLimits, ExecutorChoice, Limits, RunError, RunOptions, RunnerEnv, SandboxNetwork,
    parse_memory_size, unless_canceled,
};
pub use pipeline::{DEFAULT_TIMEOUT, load_options, plan_pipeline, run_pipeline, run_single_job};
pub use plan::Selection;
pub use report::{FailureReason, JobReport, JobStatus, PipelineReport};
pub use vars::parse_dotenv;
