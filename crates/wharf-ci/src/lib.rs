//! wharf-ci: GitLab CI YAML -> [`Pipeline`]. No IO of its own: files arrive through [`Loader`].
//! Returns every diagnostic it finds instead of stopping at the first.

//!
//! Code map: `yaml` parses text into a span-carrying tree and applies merge keys; `pipeline`
//! resolves `extends` and `default:` per job and checks cross-job references; `convert` turns
//! a resolved job tree into the typed [`model`].

mod convert;
mod diagnostic;
mod duration;
mod emit;
pub mod expr;
mod include;
mod inputs;
mod keywords;
mod limits;
pub mod model;
mod parallel;
mod pipeline;
mod reference;
mod rules;
mod suggest;
mod variables_file;
mod yaml;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use limits::Limits;
pub use model::*;
pub use rules::{
    RefContext, RuleContext, RulesOutcome, WorkflowOutcome, evaluate_only_except, evaluate_rules,
    evaluate_workflow, rule_holds,
};

/// Where wharf-ci gets file contents from. Paths are project-relative: as given for the main file,
/// or as written in `include:local` (without its leading `/`).
pub trait Loader {
    fn load(&self, path: &str) -> Result<String, std::io::Error>;

    /// Every file of the project, as project-relative paths with `/` separators. Needed for
    /// `include:local` wildcards and `include` `rules:exists`; loaders that cannot list files
    /// keep this default, and those features then report that they are unavailable.
    fn list_files(&self) -> Result<Vec<String>, std::io::Error> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this loader cannot list project files",
        ))
    }
}

/// What loading may depend on besides the files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Variables known before the pipeline is read (CLI `--variable`s, the variables file,
    /// predefined `CI_*`); of two entries with one name, the later wins. `include`
    /// `rules:if` and `$VAR`s in include paths see these, as GitLab's includes see project and
    /// predefined variables (not the pipeline's own `variables:`).
    pub variables: Vec<(String, String)>,
    /// Names among `variables` whose values are secret: `expand_vars` in an input refuses
    /// them, as GitLab does, so a secret never lands in job names or scripts.
    pub masked: Vec<String>,
    /// GitLab's bounds on the configuration ([`Limits::default`]); a pipeline beyond them is
    /// refused with an error that names the limit.
    pub limits: Limits,
}

/// A parsed pipeline with its warnings (errors make it an `Err`).
#[derive(Debug)]
pub struct Loaded {
    pub pipeline: Pipeline,
    pub warnings: Vec<Diagnostic>,
}

/// Load and validate the pipeline whose main file is `path`, with no variables known up front.
pub fn load_pipeline(path: &str, loader: &dyn Loader) -> Result<Loaded, Diagnostics> {
    load_pipeline_with(path, loader, &LoadOptions::default())
}

/// Load and validate the pipeline whose main file is `path`.
pub fn load_pipeline_with(
    path: &str,
    loader: &dyn Loader,
    options: &LoadOptions,
) -> Result<Loaded, Diagnostics> {
    let mut d = diagnostic::Diags::default();
    let pipeline = pipeline::load(path, loader, options, &mut d);
    loaded(pipeline, d)
}

/// The pipeline with its warnings, or every diagnostic (errors first) if any is an error.
fn loaded(pipeline: Option<Pipeline>, d: diagnostic::Diags) -> Result<Loaded, Diagnostics> {
    match pipeline {
        Some(pipeline) if !d.has_errors() => Ok(Loaded {
            pipeline,
            warnings: d.0,
        }),
        _ => Err(errors_first(d)),
    }
}

/// Load and validate the child pipeline of a `trigger:` job: its `include` files merged as the
/// includes of one pipeline, as GitLab builds it, each file's `spec: inputs:` header given that
/// entry's `inputs:` (checked like `include: inputs`; errors name the trigger's place in the
/// parent file and the child file). `options` are the child's load-time variables.
pub fn load_child_pipeline(
    trigger: &Trigger,
    loader: &dyn Loader,
    options: &LoadOptions,
) -> Result<Loaded, Diagnostics> {
    let mut d = diagnostic::Diags::default();
    let pipeline = pipeline::child_config(trigger, loader, options, &mut d)
        .and_then(|c| pipeline::build(c, &options.limits, &mut d));
    loaded(pipeline, d)
}

/// The fully merged configuration, as GitLab's "merged YAML" view shows it: includes merged,
/// anchors and merge keys applied, `extends` and `!reference` resolved; hidden jobs are kept and
/// `default:` is not copied into jobs. Ends with a newline.
pub fn merged_yaml(
    path: &str,
    loader: &dyn Loader,
    options: &LoadOptions,
) -> Result<String, Diagnostics> {
    let mut d = diagnostic::Diags::default();
    let config = pipeline::config(path, loader, options, &mut d);
    match config {
        Some(config) if !d.has_errors() => emit::to_yaml(&config.root).map_err(|e| {
            Diagnostics(vec![Diagnostic::error(
                None,
                format!("cannot write the merged YAML: {e}"),
            )])
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
