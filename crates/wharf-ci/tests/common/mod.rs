//! What several test files share: an in-memory project.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashMap;
use wharf_ci::{
    Diagnostics, Job, LoadOptions, Loaded, Loader, Pipeline, Span, Variable, load_pipeline,
};

/// A project held in memory: path -> content. It can list its files (for `include` wildcards
/// and `rules:exists`).
pub struct Mem(pub HashMap<String, String>);

impl Loader for Mem {
    fn load(&self, path: &str) -> Result<String, std::io::Error> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, path.to_string()))
    }
    fn list_files(&self) -> Result<Vec<String>, std::io::Error> {
        Ok(self.0.keys().cloned().collect())
    }
}

/// The project made of `files` (path, content).
pub fn mem(files: &[(&str, &str)]) -> Mem {
    Mem(files
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Load options with `vars` known up front (as a runner passes them).
pub fn options_with(vars: &[(&str, &str)]) -> LoadOptions {
    LoadOptions {
        variables: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..LoadOptions::default()
    }
}

/// `file:line:col: message` of each error, for assertions that name the file.
pub fn errors_with_file(diagnostics: &Diagnostics) -> Vec<String> {
    error_lines(diagnostics, |s| s.to_string())
}

/// `line:col: message` of each error, for compact assertions on a single file.
pub fn errors_at(diagnostics: &Diagnostics) -> Vec<String> {
    error_lines(diagnostics, |s| format!("{}:{}", s.line, s.column))
}

fn error_lines(diagnostics: &Diagnostics, place: impl Fn(&Span) -> String) -> Vec<String> {
    diagnostics
        .0
        .iter()
        .filter(|d| d.is_error())
        .map(|d| match &d.span {
            Some(s) => format!("{}: {}", place(s), d.message),
            None => d.message.clone(),
        })
        .collect()
}

/// The job called `name`; the panic lists the jobs there are.
pub fn job<'a>(pipeline: &'a Pipeline, name: &str) -> &'a Job {
    pipeline
        .jobs
        .iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no job {name} in {:?}", job_names(pipeline)))
}

pub fn job_names(pipeline: &Pipeline) -> Vec<&str> {
    pipeline.jobs.iter().map(|j| j.name.as_str()).collect()
}

/// `(name, value)` of each variable, in order.
pub fn name_values(variables: &[Variable]) -> Vec<(&str, &str)> {
    variables
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect()
}

/// The main file of a single-file project.
pub const FILE: &str = ".gitlab-ci.yml";

/// Load a project whose only file is `FILE` with text `yaml`.
pub fn load(yaml: &str) -> Result<Loaded, Diagnostics> {
    load_pipeline(FILE, &mem(&[(FILE, yaml)]))
}

/// The pipeline `yaml` loads to; the panic shows the rendered errors.
pub fn ok(yaml: &str) -> Pipeline {
    match load(yaml) {
        Ok(l) => l.pipeline,
        Err(e) => panic!(
            "expected success, got:\n{}",
            e.render(&|_| Some(yaml.to_string()))
        ),
    }
}

/// `line:col: message` of each error `yaml` loads with.
pub fn brief(yaml: &str) -> Vec<String> {
    match load(yaml) {
        Ok(l) => panic!("expected errors, got {:#?}", l.pipeline),
        Err(e) => errors_at(&e),
    }
}

/// The job set as GitLab would create it: stages in order, each with its jobs, without the job
/// named `skip` (`""`: none). The public corpus and GitLab's templates keep it as snapshots.
pub fn job_set_without(pipeline: &Pipeline, skip: &str) -> String {
    let mut by_stage: std::collections::BTreeMap<usize, Vec<&str>> = Default::default();
    for job in pipeline.jobs.iter().filter(|j| j.name != skip) {
        let stage = pipeline.stages.iter().position(|s| *s == job.stage);
        by_stage
            .entry(stage.unwrap_or(usize::MAX))
            .or_default()
            .push(&job.name);
    }
    let mut out = String::new();
    for (stage, jobs) in by_stage {
        let name = pipeline.stages.get(stage).map_or("?", String::as_str);
        out.push_str(&format!("{name}: {}\n", jobs.join(", ")));
    }
    out
}

/// [`job_set_without`] of every job.
pub fn job_set(pipeline: &Pipeline) -> String {
    job_set_without(pipeline, "")
}
