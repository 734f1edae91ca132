//! The load layer: from the main file (through a [`Loader`]) to the checked [`crate::Pipeline`]:
//! `include` (with `inputs` and interpolation), `extends`, `!reference`, `default:` and
//! `inherit`, the keyword converters per job, `parallel:` expansion and the checks across jobs.
//! Uses every layer below it; only `lib.rs` uses it.

mod checks;
mod extends;
mod include;
mod inputs;
mod interpolate;
mod options;
mod parallel;
mod pipeline;
mod reference;
mod variables;

pub use options::{External, FetchFailure, Fetched, LoadOptions, Loader};
pub(crate) use pipeline::{build, child_config, config, load};
