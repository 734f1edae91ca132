//! `needs:` (also `needs: parallel: matrix`), and the cross-job references every job keeps
//! until all jobs are known.

use super::parallel;
use crate::diagnostic::Diags;
use crate::model::*;
use crate::read::*;
use crate::span::Span;
use crate::yaml::{Node, Value};

/// Cross-job references kept with their spans until every job is known.
#[derive(Debug, Default, Clone)]
pub(crate) struct JobRefs {
    /// (job, where, optional)
    pub needs: Vec<(String, Span, bool)>,
    pub dependencies: Vec<(String, Span)>,
    /// Where `stage:` is written, for stage errors.
    pub stage_span: Option<Span>,
    /// `parallel:`, expanded once every job is converted ([`parallel::expand`]).
    pub parallel: Option<parallel::Spec>,
    /// `environment: action:` (`None`: `start`).
    pub environment_action: Option<String>,
    /// `environment: on_stop:`, the job that stops the environment, and where it is named.
    pub on_stop: Option<(String, Span)>,
}

/// Each need `refs` names again after its first time, where it is written again: GitLab's
/// `validate_needs_specification!` ("has the following needs duplicated") refuses them, for a
/// job's `needs:` and a rule's alike.
pub(crate) fn repeated_needs(refs: &JobRefs) -> Vec<(&str, &Span)> {
    let mut seen = std::collections::HashSet::new();
    refs.needs
        .iter()
        .filter(|(need, _, _)| !seen.insert(need.as_str()))
        .map(|(need, span, _)| (need.as_str(), span))
        .collect()
}

/// The job names `needs:` node `n` writes (lone names and maps' `job:`, lists from aliases
/// spliced in); cross-project and cross-pipeline needs are not jobs of this pipeline.
pub(crate) fn needed_jobs(n: &Node) -> Vec<String> {
    let items = match &n.value {
        Value::Seq(_) => flattened(n),
        Value::Map(_) => vec![n],
        _ => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|item| match &item.value {
            Value::Scalar(s) => Some(s.text.clone()),
            Value::Map(m) if !m.contains_key("project") && !m.contains_key("pipeline") => {
                match &m.get("job")?.value.value {
                    Value::Scalar(s) => Some(s.text.clone()),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
}

pub(crate) fn needs(
    n: &Node,
    what: &str,
    refs: &mut JobRefs,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Vec<Need>> {
    let items: Vec<&Node> = match &n.value {
        // GitLab reads `[@config].flatten` and drops nulls: nested lists from aliases
        // (`needs: [*common, build]`) are spliced in, and an empty entry is no need.
        Value::Seq(_) => flattened(n).into_iter().filter(|i| !i.is_null()).collect(),
        // A single map is one need: `Entry::Needs` takes a Hash or an Array and composes
        // `[@config].flatten`. It refuses anything else, a lone job name included.
        Value::Map(m) if !m.is_empty() => vec![n],
        Value::Map(_) => {
            d.error(
                &n.span,
                format!("{what} cannot be an empty map (GitLab refuses it)"),
            )
            .help("list the jobs, `needs: [build]`, or `needs: []` to start at once");
            return None;
        }
        Value::Scalar(s) => {
            d.error(
                &n.span,
                format!("{what} must be a list or a map, found the single name `{}` (GitLab refuses it)", s.text),
            )
            .help(format!("write it as a list: `needs: [{}]`", s.text));
            return None;
        }
        _ => {
            d.error(
                &n.span,
                format!(
                    "{what} must be a list of job names or maps, found {}",
                    n.kind()
                ),
            );
            return None;
        }
    };
    let mut out = Vec::new();
    for item in items {
        match &item.value {
            Value::Scalar(s) => {
                refs.needs.push((s.text.clone(), item.span.clone(), false));
                out.push(Need {
                    job: s.text.clone(),
                    artifacts: true,
                    optional: false,
                    span: item.span.clone(),
                });
            }
            Value::Map(m) => {
                check_keys(
                    m,
                    what,
                    &[
                        "job",
                        "artifacts",
                        "optional",
                        "pipeline",
                        "project",
                        "ref",
                        "parallel",
                    ],
                    d,
                );
                for key in ["pipeline", "project", "ref"] {
                    if let Some(e) = m.get(key) {
                        unsupported.push((format!("needs:{key}"), e.key_span.clone()));
                    }
                }
                let artifacts = match m.get("artifacts") {
                    Some(e) => boolean(&e.value, &format!("{what} `artifacts`"), d).unwrap_or(true),
                    None => true,
                };
                let optional = match m.get("optional") {
                    Some(e) => boolean(&e.value, &format!("{what} `optional`"), d).unwrap_or(false),
                    None => false,
                };
                // Cross-project/pipeline needs have no `job` we could run here.
                if m.contains_key("project") || m.contains_key("pipeline") {
                    continue;
                }
                match m.get("job") {
                    Some(e) => {
                        let Some(job) = string(&e.value, &format!("{what} `job`"), d) else {
                            continue;
                        };
                        // `parallel: matrix`: specific instances of a matrix job, by the names
                        // GitLab gives them; an unknown combination is then "not a job", unless
                        // the need is `optional` (GitLab's normalizer gives each instance the
                        // need's `optional`; `Need::JobHash` takes both together).
                        let names = match m.get("parallel").filter(|p| !p.value.is_null()) {
                            None => vec![job],
                            Some(p) => match need_instances(&job, &p.value, what, d) {
                                Some(names) => names,
                                None => continue,
                            },
                        };
                        for job in names {
                            refs.needs
                                .push((job.clone(), e.value.span.clone(), optional));
                            out.push(Need {
                                job,
                                artifacts,
                                optional,
                                span: e.value.span.clone(),
                            });
                        }
                    }
                    None => {
                        d.error(&item.span, format!("{what}: a map entry needs `job:`"));
                    }
                }
            }
            _ => {
                d.error(
                    &item.span,
                    format!(
                        "{what} must be a list of job names or maps, found {} in the list",
                        item.kind()
                    ),
                );
            }
        }
    }
    Some(out)
}

/// `needs: [{job, parallel: {matrix: [...]}}]` -> the names of the instances it names, built as
/// GitLab builds them: the values in the order the need writes them (GitLab documents that this
/// order must match the matrix job's).
fn need_instances(job: &str, n: &Node, what: &str, d: &mut Diags) -> Option<Vec<String>> {
    let what = format!("{what} `parallel`");
    if !matches!(n.value, Value::Map(_)) {
        d.error(
            &n.span,
            format!("{what} must be a map with `matrix:`, found {}", n.kind()),
        );
        return None;
    }
    match parallel::parse(n, &what, d)? {
        parallel::Spec::Matrix(list) => Some(
            list.iter()
                .map(|vars| parallel::instance_name(job, vars.iter().map(|(_, v, _)| v.as_str())))
                .collect(),
        ),
        // Unreachable for a map, which parses only as `matrix`.
        parallel::Spec::Count(_) => None,
    }
}
