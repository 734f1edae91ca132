//! wharf-run: runs a [`wharf_ci::Pipeline`]: stage scheduling, variables, masking, logs, caches,
//! artifacts, and the shell and Docker executors.

pub mod cache;
pub mod engine;
pub mod files;
pub mod git;
pub mod log;
pub mod mask;
mod options;
mod pipeline;
pub mod plan;
pub mod predefined;
pub mod report;
mod rules_eval;
mod runner;
pub mod scheduler;
pub mod script;
pub mod services;
pub mod vars;

pub use log::Console;
pub use options::{ExecutorChoice, RunError, RunOptions, RunnerEnv};
pub use pipeline::{DEFAULT_TIMEOUT, load_options, plan_pipeline, run_pipeline};
pub use plan::Selection;
pub use report::{FailureReason, JobReport, JobStatus, PipelineReport};
pub use runner::closest;

/// Parse a dotenv `--variables-file` (`KEY=value`, quotes, `export`, comments).
pub fn parse_dotenv(name: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    dotenvy::from_read_iter(text.as_bytes())
        .map(|item| item.map_err(|e| format!("{name}: {}", redact_dotenv_error(&e))))
        .collect()
}

/// dotenvy's parse errors quote the offending line, which may hold a secret: keep only the
/// position.
fn redact_dotenv_error(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, index) => {
            format!("cannot parse the line at byte {index} (expected KEY=value)")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dotenv_parses_and_errors_hide_values() {
        let vars =
            super::parse_dotenv("v.env", "# c\nA=1\nexport B=\"two words\"\nC='x$y'\n").unwrap();
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x$y".into())
            ]
        );
        let err =
            super::parse_dotenv("v.env", "GOOD=1\nthis is-not valid hunter2secret\n").unwrap_err();
        assert!(err.starts_with("v.env:"), "{err}");
        assert!(!err.contains("hunter2secret"), "{err}");
    }
}
