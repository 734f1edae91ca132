//! `parallel: N` and `parallel: matrix`, expanded into one job per instance, named as GitLab
//! names them (`test 1/3`, `deploy: [aws, app1]`). `needs:` and `dependencies:` of other jobs that
//! name the job as written are rewritten to every instance, so the runner only ever sees real
//! job names. A need with `parallel: matrix` names its instances already (see
//! `keywords::needs`) and is left as it is, except for matrix expressions (`$[[ matrix.X ]]`),
//! which take each instance's own values.

use crate::diagnostic::Diags;
use crate::keywords::{JobRefs, Spec, instance_name};
use crate::model::{Job, Need, ParallelInstance, Variable};
use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;

/// `$[[ matrix.NAME ]]` in `text` replaced by the instance's value of `NAME` (GitLab 18.6);
/// names the matrix does not have stay as written, so the need names no job and says so.
fn matrix_expressions(text: &str, vars: &[Variable]) -> String {
    static EXPR: LazyLock<Option<Regex>> =
        LazyLock::new(|| Regex::new(r"\$\[\[\s*matrix\.([A-Za-z0-9_]+)\s*\]\]").ok());
    let Some(re) = EXPR.as_ref() else {
        return text.to_string();
    };
    re.replace_all(text, |c: &regex::Captures<'_>| {
        vars.iter()
            .find(|v| v.name == c[1])
            .map_or_else(|| c[0].to_string(), |v| v.value.clone())
    })
    .into_owned()
}

/// Replace each parallel job by its instances, then point `needs`/`dependencies` at them.
pub(crate) fn expand(jobs: Vec<(Job, JobRefs)>, d: &mut Diags) -> Vec<(Job, JobRefs)> {
    let mut out = Vec::with_capacity(jobs.len());
    let mut instances_of: HashMap<String, Vec<String>> = HashMap::new();
    for (job, mut refs) in jobs {
        let Some(spec) = refs.parallel.take() else {
            out.push((job, refs));
            continue;
        };
        let named: Vec<(String, Vec<Variable>)> = match spec {
            Spec::Count(n) => (1..=n)
                .map(|i| (format!("{} {i}/{n}", job.name), Vec::new()))
                .collect(),
            Spec::Matrix(list) => list
                .into_iter()
                .map(|vars| {
                    let name = instance_name(&job.name, vars.iter().map(|(_, v, _)| v.as_str()));
                    let vars = vars
                        .into_iter()
                        .map(|(name, value, span)| Variable {
                            name,
                            value,
                            expand: true,
                            span: Some(span),
                        })
                        .collect();
                    (name, vars)
                })
                .collect(),
        };
        let total = u32::try_from(named.len()).unwrap_or(u32::MAX);
        let mut names = Vec::new();
        for (i, (name, vars)) in named.into_iter().enumerate() {
            if names.contains(&name) {
                d.error(
                    &job.span,
                    format!(
                        "`parallel: matrix` of `{}` makes the job `{name}` twice",
                        job.name
                    ),
                );
                continue;
            }
            let mut instance = job.clone();
            let mut instance_refs = refs.clone();
            if !vars.is_empty() {
                // Matrix expressions (`$[[ matrix.OS ]]` in `needs:parallel:matrix`) take this
                // instance's values: 1:1 needs between two matrix jobs.
                for need in instance.needs.iter_mut().flatten() {
                    need.job = matrix_expressions(&need.job, &vars);
                }
                for (need, _, _) in &mut instance_refs.needs {
                    *need = matrix_expressions(need, &vars);
                }
            }
            instance.name = name.clone();
            // Matrix variables win over the job's own, as in GitLab.
            instance
                .variables
                .retain(|v| !vars.iter().any(|m| m.name == v.name));
            instance.variables.extend(vars);
            instance.parallel = Some(ParallelInstance {
                base_name: job.name.clone(),
                index: u32::try_from(i + 1).unwrap_or(u32::MAX),
                total,
            });
            names.push(name);
            out.push((instance, instance_refs));
        }
        instances_of.insert(job.name.clone(), names);
    }
    if instances_of.is_empty() {
        return out;
    }
    for (job, refs) in &mut out {
        if let Some(needs) = &mut job.needs {
            *needs = needs
                .drain(..)
                .flat_map(|n| match instances_of.get(&n.job) {
                    Some(names) => names
                        .iter()
                        .map(|name| Need {
                            job: name.clone(),
                            ..n.clone()
                        })
                        .collect(),
                    None => vec![n],
                })
                .collect();
        }
        if let Some(deps) = &mut job.dependencies {
            *deps = deps
                .drain(..)
                .flat_map(|dep| match instances_of.get(&dep) {
                    Some(names) => names.clone(),
                    None => vec![dep],
                })
                .collect();
        }
        refs.needs = refs
            .needs
            .drain(..)
            .flat_map(|(name, span, optional)| match instances_of.get(&name) {
                Some(names) => names
                    .iter()
                    .map(|n| (n.clone(), span.clone(), optional))
                    .collect(),
                None => vec![(name, span, optional)],
            })
            .collect();
        refs.dependencies = refs
            .dependencies
            .drain(..)
            .flat_map(|(name, span)| match instances_of.get(&name) {
                Some(names) => names.iter().map(|n| (n.clone(), span.clone())).collect(),
                None => vec![(name, span)],
            })
            .collect();
    }
    out
}
