//! wharf-ci: GitLab CI YAML -> [`Pipeline`]. No IO of its own: files arrive through [`Loader`].
//! Returns every diagnostic it finds instead of stopping at the first.

//!
//! A one-way stack; each layer uses only the ones below it (ARCHITECTURE.md has the map, and
//! tests/architecture.rs holds the line):
//! basics (`span`, `diagnostic`, `suggest`, `duration`, `re2`, `expr`, `limits`) -> `model` and
//! `evaluate` -> `yaml` (tree, parser, deep merge, writer) -> `read` (generic node readers) ->
//! `keywords` (one converter per keyword family, declared once in `keywords::table`) -> `load`
//! (include, inputs, extends, reference, parallel, pipeline, checks) -> this file.

mod diagnostic;
mod duration;
mod evaluate;
pub mod expr;
mod keywords;
mod limits;
mod load;
pub mod model;
pub mod re2;
mod read;
mod span;
pub mod suggest;
mod yaml;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use evaluate::{
    RefContext, RuleContext, RulesOutcome, WorkflowOutcome, evaluate_only_except, evaluate_rules,
    evaluate_workflow, rule_holds,
};
pub use limits::Limits;
pub use load::{External, FetchFailure, Fetched, LoadOptions, Loader};
pub use model::*;

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
    let pipeline = load::load(path, loader, options, &mut d);
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
    let pipeline = load::child_config(trigger, loader, options, &mut d)
        .and_then(|c| load::build(c, &options.limits, &mut d));
    loaded(pipeline, d)
}

/// The fully merged configuration, as GitLab's "merged YAML" view shows it: includes merged,
/// anchors and merge keys applied, `extends` and `!reference` resolved; hidden jobs are kept and
/// `default:` is not copied into jobs. A top-level key written in an included file has a
/// `# from <file>, included by <chain>` comment line above it. Ends with a newline.
pub fn merged_yaml(
    path: &str,
    loader: &dyn Loader,
    options: &LoadOptions,
) -> Result<String, Diagnostics> {
    merged_yaml_with_warnings(path, loader, options).map(|(yaml, _)| yaml)
}

/// [`merged_yaml`], with the warnings found on the way (a duplicate key, a value whose text
/// GitLab changes): the merged view shows GitLab's reading, the warnings say where it may
/// surprise.
pub fn merged_yaml_with_warnings(
    path: &str,
    loader: &dyn Loader,
    options: &LoadOptions,
) -> Result<(String, Vec<Diagnostic>), Diagnostics> {
    let mut d = diagnostic::Diags::default();
    let config = load::config(path, loader, options, &mut d);
    match config {
        Some(config) if !d.has_errors() => match yaml::to_yaml_annotated(&config.root, &|file| {
            let included = config.includes.iter().find(|i| i.name == file)?;
            Some(format!("from {}", included.describe()))
        }) {
            Ok(yaml) => Ok((yaml, d.0)),
            Err(e) => Err(Diagnostics(vec![Diagnostic::error(
                None,
                format!("cannot write the merged YAML: {e}"),
            )])),
        },
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
    let vars = keywords::variables_file(name, text, &mut d);
    if d.has_errors() {
        Err(errors_first(d))
    } else {
        Ok(vars)
    }
}
