//! The main file -> [`Config`]: `include` merged (see `load::include`), `extends` resolved per
//! job (`load::extends`), `!reference` resolved (`load::reference`). Then per visible job
//! `default:` (filtered by `inherit:`), the keyword converters (`keywords`), `parallel:`
//! expansion, and the checks that need every job (`load::checks`).

use super::extends::Resolver;
use super::options::{LoadOptions, Loader};
use super::{checks, include, inputs, parallel, reference};
use crate::diagnostic::{Diagnostic, Diags};
use crate::keywords::{self, JobRefs};
use crate::limits::{Limits, raise_with};
use crate::model::{IncludedFile, Job, Pipeline, Span, Trigger};
use crate::read;
use crate::suggest::did_you_mean;
use crate::yaml::{self, Entry, Map, Node, Scalar, Value};

/// Bound on the total size of resolved jobs: `extends` copies trees, so many jobs extending a big
/// template multiply it, like aliases do.
const MAX_RESOLVED_NODES: usize = 2_000_000;

/// The whole configuration after `include`, `extends` and `!reference`, as GitLab has it before
/// building jobs: every top-level key in order, hidden jobs included, `extends` applied and
/// removed, `default:` not yet copied into jobs.
pub(crate) struct Config {
    pub root: Map,
    /// The start of the main file (for diagnostics about the whole pipeline).
    pub start: Span,
    /// Every file `include:` merged in.
    pub includes: Vec<IncludedFile>,
}

pub(crate) fn config(
    file: &str,
    loader: &dyn Loader,
    options: &LoadOptions,
    d: &mut Diags,
) -> Option<Config> {
    let start = Span {
        file: file.to_string(),
        line: 1,
        column: 1,
        offset: 0,
        len: 0,
    };
    let text = match loader.load(file) {
        Ok(text) => text,
        Err(e) => {
            d.push(Diagnostic::error(None, format!("cannot read {file}: {e}")));
            return None;
        }
    };
    let root = document_map(file, &text, &start, options, d)?;
    let (root, includes) = include::Includer::new(loader, options, d)
        .with_main_bytes(text.len())
        .expand(root, file);
    resolve(root, start, includes, d)
}

/// What a child pipeline's configuration is called in `include` chains: not a file, so no
/// real file can be mistaken for it.
const CHILD_ROOT: &str = "(trigger:include)";

/// A child pipeline's configuration: its `trigger: include:` files, merged as the includes of an
/// otherwise empty file, as GitLab builds a child pipeline. Each file's `spec: inputs:` header
/// gets that entry's `inputs:`, checked like an `include`'s (errors point at the trigger).
pub(crate) fn child_config(
    trigger: &Trigger,
    loader: &dyn Loader,
    options: &LoadOptions,
    d: &mut Diags,
) -> Option<Config> {
    let entries = trigger
        .include
        .iter()
        .map(|inc| {
            let mut m = Map::new();
            let local = Node {
                span: inc.span.clone(),
                // Quoted: a path is text however it reads.
                value: Value::Scalar(Scalar {
                    text: inc.path.clone(),
                    plain: false,
                }),
            };
            m.insert(
                "local".into(),
                Entry {
                    key_span: inc.span.clone(),
                    value: local,
                },
            );
            if let Some(inputs) = &inc.inputs {
                let entry = Entry {
                    key_span: inputs.key_span.clone(),
                    value: Node::from_written(&inputs.value),
                };
                m.insert("inputs".into(), entry);
            }
            Node {
                span: inc.span.clone(),
                value: Value::Map(m),
            }
        })
        .collect();
    let mut root = Map::new();
    root.insert(
        "include".into(),
        Entry {
            key_span: trigger.span.clone(),
            value: Node {
                span: trigger.span.clone(),
                value: Value::Seq(entries),
            },
        },
    );
    let (root, includes) = include::Includer::new(loader, options, d)
        .for_trigger()
        .expand(root, CHILD_ROOT);
    resolve(root, trigger.span.clone(), includes, d)
}

/// `extends` and `!reference` resolved in the merged configuration.
fn resolve(root: Map, start: Span, includes: Vec<IncludedFile>, d: &mut Diags) -> Option<Config> {
    let mut resolver = Resolver::new(&root, d);
    let mut resolved = Map::new();
    let mut total_nodes = 0usize;
    for (name, e) in &root {
        if !is_job_key(name) || e.value.as_map().is_none() {
            resolved.insert(name.clone(), e.clone());
            continue;
        }
        // A job whose `extends` failed is left out; the failure is already reported.
        let Some(job) = resolver.resolve(name, &mut Vec::new()) else {
            continue;
        };
        total_nodes += job.values().map(|e| e.value.count() + 1).sum::<usize>();
        if total_nodes > MAX_RESOLVED_NODES {
            resolver.d.error(
                &e.key_span,
                format!("the pipeline expands to more than {MAX_RESOLVED_NODES} YAML nodes"),
            );
            return None;
        }
        let value = Node {
            span: e.value.span.clone(),
            value: Value::Map(job),
        };
        resolved.insert(
            name.clone(),
            Entry {
                key_span: e.key_span.clone(),
                value,
            },
        );
    }
    reference::resolve(&mut resolved, d);
    Some(Config {
        root: resolved,
        start,
        includes,
    })
}

/// Top-level keys that name jobs (visible or hidden).
pub(super) fn is_job_key(name: &str) -> bool {
    !keywords::is_top_level(name)
}

/// The main file's configuration document, which must be a map. A `spec: inputs:` header is
/// applied with every input at its default (see [`crate::inputs`]).
fn document_map(
    file: &str,
    text: &str,
    start: &Span,
    options: &LoadOptions,
    d: &mut Diags,
) -> Option<Map> {
    let docs = yaml::parse(file, text, &options.limits, d)?;
    let root = inputs::content(docs, &inputs::Given::Pipeline, options, d)?;
    let Some(root_map) = root.as_ref().and_then(Node::as_map) else {
        let span = root.as_ref().map_or(start.clone(), |r| r.span.clone());
        let found = root.as_ref().map_or("nothing".to_string(), Node::kind);
        d.error(
            &span,
            format!("a pipeline must be a map of keywords and jobs, found {found}"),
        );
        return None;
    };
    Some(root_map.clone())
}

pub(crate) fn load(
    file: &str,
    loader: &dyn Loader,
    options: &LoadOptions,
    d: &mut Diags,
) -> Option<Pipeline> {
    let config = config(file, loader, options, d)?;
    build(config, &options.limits, d)
}

/// The jobs and pipeline-wide keywords of a merged configuration, checked across jobs.
pub(crate) fn build(config: Config, limits: &Limits, d: &mut Diags) -> Option<Pipeline> {
    let Config {
        root,
        start,
        includes,
    } = config;
    let root = &root;
    // Counted before converting anything, so a pipeline of a million jobs costs nothing more.
    let visible = root.keys().filter(|k| is_visible_job(k)).count();
    if visible > limits.max_jobs {
        too_many_jobs(visible, &start, limits, d);
        return None;
    }

    let workflow = root
        .get("workflow")
        .and_then(|e| keywords::workflow(&e.value, d));

    // GitLab's `has_workflow_rules`: the key is written, whatever its rules.
    let has_workflow_rules = root
        .get("workflow")
        .and_then(|e| e.value.as_map())
        .is_some_and(|w| w.contains_key("rules"));

    let stages = stages(root, d);
    let variables = root
        .get("variables")
        .map(|e| keywords::variables(&e.value, "global", keywords::VariableScope::Global, d))
        .unwrap_or_default();
    let default = default_map(root, d);

    let mut converted: Vec<(Job, JobRefs)> = Vec::new();
    for (name, e) in root {
        if is_job_key(name) && name.starts_with('.') && blank(&e.value) {
            // `Hidden`: `validates :config, presence: true` (a null reads as `{}`).
            d.error(
                &e.key_span,
                format!("hidden job `{name}` is empty (GitLab: \"config can't be blank\")"),
            )
            .help("give it content, or remove it");
        }
        if !is_visible_job(name) {
            continue;
        }
        let Some(own) = e.value.as_map() else {
            let err = d.error(
                &e.key_span,
                format!(
                    "`{name}` is not a keyword, so it is a job, and a job must be a map, found {}",
                    e.value.kind()
                ),
            );
            err.help_opt(did_you_mean(name, keywords::top_level()));
            continue;
        };
        let inherit = keywords::inherit(own.get("inherit"), name, d);
        keywords::check_trigger_job(name, own, d);
        let bridge = keywords::is_bridge(own);
        let mut job = own.clone();
        for (k, v) in &default {
            let takes = !bridge || keywords::bridge_takes(k);
            if takes && inherit.default.allows(k) && !job.contains_key(k) {
                job.insert(k.clone(), v.clone());
            }
        }
        if let Some((mut j, refs)) = keywords::job(name, &e.key_span, &job, &stages, d) {
            j.inherit_variables = inherit.variables.into_option();
            if !has_workflow_rules {
                warn_of_unconditional_last_rule(name, &job, d);
            }
            converted.push((j, refs));
        }
    }
    let mut converted = parallel::expand(converted, d);
    if converted.len() > limits.max_jobs {
        too_many_jobs(converted.len(), &start, limits, d);
        return None;
    }
    checks::check_references(&mut converted, &stages, d);
    if converted.is_empty() && !d.has_errors() {
        d.push(Diagnostic::error(
            Some(start),
            "the pipeline has no visible jobs (names starting with `.` are hidden templates)",
        ));
    }
    if d.has_errors() {
        return None;
    }
    Some(Pipeline {
        stages,
        variables,
        jobs: converted.into_iter().map(|(j, _)| j).collect(),
        workflow,
        includes,
    })
}

/// GitLab's `Processable#validate_against_warnings`, without `workflow: rules`: a job whose
/// last rule is a lone `when:` (not `never`) runs in a branch pipeline and in a merge request
/// pipeline for the same push. GitLab shows it as a warning, and so does wharf.
fn warn_of_unconditional_last_rule(name: &str, job: &crate::yaml::Map, d: &mut Diags) {
    let Some(rules) = job
        .get("rules")
        .filter(|e| matches!(e.value.value, Value::Seq(_)))
    else {
        return;
    };
    let Some(last) = crate::read::flattened(&rules.value).pop() else {
        return;
    };
    let Some(rule) = last.as_map() else { return };
    let lone_when = rule.len() == 1
        && rule
            .get("when")
            .is_some_and(|w| matches!(&w.value.value, Value::Scalar(s) if s.text != "never"));
    if lone_when {
        d.warning(
            &last.span,
            format!(
                "job `{name}` may allow multiple pipelines to run for a single action due to `rules:when` clause with no `workflow:rules` (GitLab warns the same)"
            ),
        )
        .help("a push to a branch with an open merge request then starts a branch pipeline and a merge request pipeline, both running this job; add `workflow: rules` that choose one, or a condition to this last rule");
    }
}

/// Ruby's `blank?` for a YAML value: null, an empty string, list or map, or `false`.
fn blank(n: &Node) -> bool {
    match &n.value {
        Value::Null => true,
        Value::Scalar(s) => s.text.trim().is_empty() || s.as_bool() == Some(false),
        Value::Seq(items) => items.is_empty(),
        Value::Map(m) => m.is_empty(),
        Value::Tagged(..) => false,
    }
}

fn is_visible_job(name: &str) -> bool {
    is_job_key(name) && !name.starts_with('.')
}

fn too_many_jobs(count: usize, start: &Span, limits: &Limits, d: &mut Diags) {
    d.error(
        start,
        format!(
            "the pipeline has {count} jobs (`parallel:` instances counted), more than {} (GitLab's `ci_pipeline_size`)",
            limits.max_jobs
        ),
    )
    .help(raise_with("--max-jobs N"));
}

/// `stages:` with GitLab's `.pre` first and `.post` last.
fn stages(root: &Map, d: &mut Diags) -> Vec<String> {
    // GitLab removed `types:` in 15.0 (it is now read as a job, which fails). Older pipelines
    // still write it, so it stays readable as `stages:`, with a warning (`--strict`: an error).
    if let Some(e) = root.get("types") {
        d.warning(
            &e.key_span,
            "`types` was removed in GitLab 15.0, which reads it as a job now and refuses it",
        )
        .help("rename `types:` to `stages:`");
    }
    // Jobs are still checked against what was meant, so one mistake gives one error.
    let entry = root.get("stages").or_else(|| root.get("types"));
    let listed: Vec<String> = match entry {
        // `Stages`: `nested_array_of_strings`; a lone name is not a list.
        Some(Entry {
            value:
                Node {
                    value: Value::Scalar(s),
                    span,
                },
            ..
        }) => {
            d.error(
                span,
                "`stages` must be a list of stage names, found a string",
            )
            .help(format!("write it as a list: `stages: [{}]`", s.text));
            vec![s.text.clone()]
        }
        Some(e) if !e.value.is_null() => {
            // Lists of stages may be spliced in from anchors: flatten like scripts.
            read::script(&e.value, "`stages`", d).unwrap_or_default()
        }
        _ => vec!["build".into(), "test".into(), "deploy".into()],
    };
    let mut out = vec![".pre".to_string()];
    for s in listed {
        if s != ".pre" && s != ".post" && !out.contains(&s) {
            out.push(s);
        }
    }
    out.push(".post".into());
    out
}

/// The map each job inherits from: `default:` plus the deprecated top-level keywords.
fn default_map(root: &Map, d: &mut Diags) -> Map {
    let mut out = Map::new();
    if let Some(e) = root.get("default") {
        match &e.value.value {
            Value::Map(m) => {
                for (k, v) in m {
                    if keywords::is_default_keyword(k) {
                        out.insert(k.clone(), v.clone());
                    } else {
                        let hint = did_you_mean(k, keywords::default_keywords());
                        let err = d.error(&v.key_span, format!("`default` cannot set `{k}`"));
                        match hint {
                            Some(h) => err.help(h),
                            None => err.help(format!(
                                "`default` can set: {}",
                                keywords::default_keywords().collect::<Vec<_>>().join(", ")
                            )),
                        };
                    }
                }
            }
            Value::Null => {}
            _ => {
                d.error(
                    &e.value.span,
                    format!("`default` must be a map, found {}", e.value.kind()),
                );
            }
        }
    }
    for k in keywords::legacy_default_keywords() {
        if let Some(v) = root.get(k) {
            // `Default#overwrite_entry`: the top-level value fills a `default:` that does not
            // set it, and both set raise `InheritError`, which fails the pipeline.
            let in_default = out.get(k).is_some_and(|e| !e.value.is_null());
            if in_default && !v.value.is_null() {
                d.error(
                    &v.key_span,
                    format!(
                        "`{k}` is set both at the top level and in `default:` (GitLab refuses it: \"{k} is defined in top-level and `default:` entry\")"
                    ),
                )
                .help(format!("keep one: the top-level `{k}` is the older form of `default: {k}:`"));
            } else if !in_default {
                out.insert(k.to_string(), v.clone());
            }
        }
    }
    out
}
