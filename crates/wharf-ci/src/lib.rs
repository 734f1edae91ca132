//! wharf-ci: GitLab CI YAML -> [`Pipeline`]. No IO of its own: files arrive through [`Loader`].
//! Returns every diagnostic it finds instead of stopping at the first.

//!
//! Code map: `yaml` parses text into a span-carrying tree and applies merge keys; `pipeline`
//! resolves `extends` and `default:` per job and checks cross-job references; `convert` turns
//! a resolved job tree into the typed [`model`].

mod convert;
mod diagnostic;
pub mod expr;
pub mod model;
mod pipeline;
mod suggest;
mod variables_file;
mod yaml;

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
    let text = loader.load(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::error(
            None,
            format!("cannot read {path}: {e}"),
        )])
    })?;
    let mut d = diagnostic::Diags::default();
    let pipeline = pipeline::load(path, &text, &mut d);
    match pipeline {
        Some(pipeline) if !d.has_errors() => Ok(Loaded {
            pipeline,
            warnings: d.0,
        }),
        _ => Err(errors_first(d)),
    }
}

/// Errors first, then the warnings that came with them; each group in file order.
fn errors_first(d: diagnostic::Diags) -> Diagnostics {
    let mut all = d.0;
    // Stable: diagnostics at the same place keep the order they were found in.
    all.sort_by_key(|d| d.span.as_ref().map(|s| (s.file.clone(), s.offset)));
    let (mut errors, warnings): (Vec<_>, Vec<_>) = all.into_iter().partition(Diagnostic::is_error);
    if errors.is_empty() {
        // Not expected (a failure always reports why), but never return an empty error.
        errors.push(Diagnostic::error(None, "the pipeline could not be loaded"));
    }
    errors.extend(warnings);
    Diagnostics(errors)
}

/// Parse a `--variables-file` written as YAML (`KEY: value` or `KEY: {value, masked, type: file}`).
/// `name` is used in diagnostics.
pub fn parse_variables_yaml(name: &str, text: &str) -> Result<Vec<FileVariable>, Diagnostics> {
    let mut d = diagnostic::Diags::default();
    let vars = variables_file::parse(name, text, &mut d);
    if d.has_errors() {
        Err(errors_first(d))
    } else {
        Ok(vars)
    }
}
