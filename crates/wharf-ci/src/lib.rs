//! wharf-ci: GitLab CI YAML -> [`Pipeline`]. No IO of its own: files arrive through [`Loader`].
//! Returns every diagnostic it finds instead of stopping at the first.

mod diagnostic;
pub mod model;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use model::*;

/// Where wharf-ci gets file contents from. Paths are as written in the pipeline (`include:local`
/// later) or as given for the main file.
pub trait Loader {
    fn load(&self, path: &str) -> Result<String, std::io::Error>;
}

/// A parsed pipeline with its warnings (errors make it an `Err`).
#[derive(Debug)]
pub struct Loaded {
    pub pipeline: Pipeline,
    pub warnings: Vec<Diagnostic>,
}

/// Load and validate the pipeline whose main file is `path`.
pub fn load_pipeline(path: &str, loader: &dyn Loader) -> Result<Loaded, Diagnostics> {
    let _ = (path, loader);
    Err(Diagnostics(vec![Diagnostic::error(
        None,
        "not implemented yet",
    )]))
}

/// Parse a `--variables-file` written as YAML (`KEY: value` or `KEY: {value, masked, type: file}`).
/// `name` is used in diagnostics.
pub fn parse_variables_yaml(name: &str, text: &str) -> Result<Vec<FileVariable>, Diagnostics> {
    let _ = (name, text);
    Err(Diagnostics(vec![Diagnostic::error(
        None,
        "not implemented yet",
    )]))
}
