//! Stage 2: the main file -> [`Config`]: `include` merged (see [`crate::include`]), `extends`
//! resolved per job (deep merge, depth 11, cycles), `!reference` resolved (see
//! [`crate::reference`]). Then per visible job `default:` (filtered by `inherit:`), stage 3
//! ([`crate::convert`]), `parallel:` expansion, and the checks that need every job (`needs`,
//! `dependencies`).

use crate::convert::{self, JobRefs};
use crate::diagnostic::{Diagnostic, Diags};
use crate::limits::{Limits, raise_with};
use crate::model::{Job, Pipeline, Span, Trigger};
use crate::suggest::did_you_mean;
use crate::yaml::{self, Entry, Map, Node, Scalar, Value};
use crate::{LoadOptions, Loader, include, inputs, keywords, parallel, reference};
use std::collections::HashMap;

/// Top-level keys that are not jobs.
const GLOBAL_KEYWORDS: &[&str] = &[
    "stages",
    "types",
    "variables",
    "default",
    "workflow",
    "include",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

/// Keys `default:` may set; each is inherited whole by jobs that do not set it.
use crate::keywords::DEFAULT_KEYWORDS;

/// Top-level keys GitLab still reads as defaults (deprecated in favour of `default:`).
const LEGACY_DEFAULT_KEYWORDS: &[&str] = &[
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

/// GitLab's limit on `extends` nesting.
const MAX_EXTENDS_DEPTH: usize = 11;

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
    let root = include::Includer::new(loader, options, d)
        .with_main_bytes(text.len())
        .expand(root, file);
    resolve(root, start, d)
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
                m.insert("inputs".into(), inputs.0.clone());
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
    let root = include::Includer::new(loader, options, d)
        .for_trigger()
        .expand(root, CHILD_ROOT);
    resolve(root, trigger.span.clone(), d)
}

/// `extends` and `!reference` resolved in the merged configuration.
fn resolve(root: Map, start: Span, d: &mut Diags) -> Option<Config> {
    let mut resolver = Resolver {
        root: &root,
        memo: HashMap::new(),
        d,
    };
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
    })
}

/// Top-level keys that name jobs (visible or hidden).
fn is_job_key(name: &str) -> bool {
    !GLOBAL_KEYWORDS.contains(&name)
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
    let Config { root, start } = config;
    let root = &root;
    // Counted before converting anything, so a pipeline of a million jobs costs nothing more.
    let visible = root.keys().filter(|k| is_visible_job(k)).count();
    if visible > limits.max_jobs {
        too_many_jobs(visible, &start, limits, d);
        return None;
    }

    let workflow = root
        .get("workflow")
        .and_then(|e| crate::rules::workflow(&e.value, d));

    let stages = stages(root, d);
    let variables = root
        .get("variables")
        .map(|e| convert::variables(&e.value, "global", d))
        .unwrap_or_default();
    let default = default_map(root, d);

    let mut converted: Vec<(Job, JobRefs)> = Vec::new();
    for (name, e) in root {
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
            err.help_opt(did_you_mean(name, GLOBAL_KEYWORDS.iter().copied()));
            continue;
        };
        let inherit = keywords::inherit(own.get("inherit"), name, d);
        let mut job = own.clone();
        for (k, v) in &default {
            if inherit.default.allows(k) && !job.contains_key(k) {
                job.insert(k.clone(), v.clone());
            }
        }
        if let Some((mut j, refs)) = convert::job(name, &e.key_span, &job, &stages, d) {
            j.inherit_variables = inherit.variables.into_option();
            converted.push((j, refs));
        }
    }
    let mut converted = parallel::expand(converted, d);
    if converted.len() > limits.max_jobs {
        too_many_jobs(converted.len(), &start, limits, d);
        return None;
    }
    check_references(&mut converted, &stages, d);
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
    })
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
    let entry = match (root.get("stages"), root.get("types")) {
        (Some(e), _) => Some(e),
        (None, Some(e)) => {
            d.warning(&e.key_span, "`types` is deprecated: use `stages`");
            Some(e)
        }
        (None, None) => None,
    };
    let listed: Vec<String> = match entry {
        Some(e) if !e.value.is_null() => {
            // Lists of stages may be spliced in from anchors: flatten like scripts.
            convert::script(&e.value, "`stages`", d).unwrap_or_default()
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
                    if DEFAULT_KEYWORDS.contains(&k.as_str()) {
                        out.insert(k.clone(), v.clone());
                    } else {
                        let hint = did_you_mean(k, DEFAULT_KEYWORDS.iter().copied());
                        let err = d.error(&v.key_span, format!("`default` cannot set `{k}`"));
                        match hint {
                            Some(h) => err.help(h),
                            None => err.help(format!(
                                "`default` can set: {}",
                                DEFAULT_KEYWORDS.join(", ")
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
    for k in LEGACY_DEFAULT_KEYWORDS {
        if let Some(v) = root.get(*k) {
            if out.contains_key(*k) {
                d.warning(
                    &v.key_span,
                    format!("top-level `{k}` is ignored because `default:` sets it"),
                );
            } else {
                out.insert((*k).to_string(), v.clone());
            }
        }
    }
    out
}

/// Resolves `extends` with memoisation, so each template is merged once.
struct Resolver<'a, 'd> {
    root: &'a Map,
    /// `None` when resolving failed (already reported); else the merged job and its longest
    /// `extends` chain (the job first), for the depth limit.
    memo: HashMap<String, Option<(Map, Vec<String>)>>,
    d: &'d mut Diags,
}

impl Resolver<'_, '_> {
    /// The job `name` with everything it extends merged in (its own keys win), without `extends`.
    fn resolve(&mut self, name: &str, chain: &mut Vec<String>) -> Option<Map> {
        self.resolve_with_depth(name, chain).map(|(m, _)| m)
    }

    fn resolve_with_depth(
        &mut self,
        name: &str,
        chain: &mut Vec<String>,
    ) -> Option<(Map, Vec<String>)> {
        if let Some(done) = self.memo.get(name) {
            return done.clone();
        }
        let entry = self.root.get(name)?;
        let own = entry.value.as_map()?;
        chain.push(name.to_string());
        let result = self.resolve_uncached(name, own, chain);
        chain.pop();
        self.memo.insert(name.to_string(), result.clone());
        result
    }

    fn resolve_uncached(
        &mut self,
        name: &str,
        own: &Map,
        chain: &mut Vec<String>,
    ) -> Option<(Map, Vec<String>)> {
        let Some(ext) = own.get("extends").filter(|e| !e.value.is_null()) else {
            return Some((own.clone(), vec![name.to_string()]));
        };
        let targets: Vec<(String, Span)> = match &ext.value.value {
            Value::Scalar(s) => vec![(s.text.clone(), ext.value.span.clone())],
            Value::Seq(items) => {
                let mut out = Vec::new();
                for i in items {
                    match &i.value {
                        Value::Scalar(s) => out.push((s.text.clone(), i.span.clone())),
                        _ => {
                            self.d.error(
                                &i.span,
                                format!(
                                    "`extends` of `{name}` must list job names, found {}",
                                    i.kind()
                                ),
                            );
                            return None;
                        }
                    }
                }
                out
            }
            _ => {
                self.d.error(
                    &ext.value.span,
                    format!(
                        "`extends` of `{name}` must be a job name or a list of them, found {}",
                        ext.value.kind()
                    ),
                );
                return None;
            }
        };
        let mut merged = Map::new();
        let mut longest = vec![name.to_string()];
        let mut ok = true;
        for (target, span) in targets {
            if chain.contains(&target) {
                let mut cycle = chain.clone();
                cycle.push(target.clone());
                self.d
                    .error(&span, format!("circular `extends`: {}", cycle.join(" -> ")));
                ok = false;
                continue;
            }
            match self.root.get(&target) {
                None => {
                    let candidates = self
                        .root
                        .keys()
                        .filter(|k| !GLOBAL_KEYWORDS.contains(&k.as_str()))
                        .map(String::as_str);
                    let help = did_you_mean(&target, candidates);
                    self.d
                        .error(&span, format!("`{name}` extends unknown job `{target}`"))
                        .help_opt(help);
                    ok = false;
                }
                Some(t)
                    if t.value.as_map().is_none() || GLOBAL_KEYWORDS.contains(&target.as_str()) =>
                {
                    self.d.error(
                        &span,
                        format!("`{name}` extends `{target}`, which is not a job (a map)"),
                    );
                    ok = false;
                }
                Some(_) => match self.resolve_with_depth(&target, chain) {
                    // A chain of N names is N - 1 levels of `extends`.
                    Some((_, path)) if path.len() > MAX_EXTENDS_DEPTH => {
                        self.d.error(
                            &span,
                            format!(
                                "`extends` is nested too deeply (more than {MAX_EXTENDS_DEPTH} levels): {name} -> {}",
                                path.join(" -> ")
                            ),
                        );
                        ok = false;
                    }
                    Some((base, path)) => {
                        if path.len() + 1 > longest.len() {
                            longest = std::iter::once(name.to_string()).chain(path).collect();
                        }
                        merged = deep_merge(&merged, &base);
                    }
                    None => ok = false,
                },
            }
        }
        if !ok {
            return None;
        }
        let mut own = own.clone();
        own.shift_remove("extends");
        Some((deep_merge(&merged, &own), longest))
    }
}

/// GitLab's `extends` merge: maps merge recursively with `over` winning; anything else
/// (including lists) is replaced by `over`'s value.
pub(crate) fn deep_merge(base: &Map, over: &Map) -> Map {
    let mut out = base.clone();
    for (k, e) in over {
        let merged = match (out.get(k).map(|b| &b.value.value), &e.value.value) {
            (Some(Value::Map(bm)), Value::Map(om)) => Entry {
                key_span: e.key_span.clone(),
                value: Node {
                    span: e.value.span.clone(),
                    value: Value::Map(deep_merge(bm, om)),
                },
            },
            _ => e.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

/// `needs:` and `dependencies:` must name visible jobs in suitable stages.
fn check_references(jobs: &mut [(Job, JobRefs)], stages: &[String], d: &mut Diags) {
    let stage_of: HashMap<String, usize> = jobs
        .iter()
        .map(|(j, _)| {
            let idx = stages.iter().position(|s| *s == j.stage).unwrap_or(0);
            (j.name.clone(), idx)
        })
        .collect();
    let names: Vec<String> = jobs.iter().map(|(j, _)| j.name.clone()).collect();
    for (job, refs) in jobs.iter_mut() {
        let my_stage = stage_of.get(&job.name).copied().unwrap_or(0);
        let mut dropped = Vec::new();
        for (need, span, optional) in &refs.needs {
            match stage_of.get(need) {
                None if *optional => dropped.push(need.clone()),
                None => {
                    d.error(
                        span,
                        format!("job `{}` needs `{need}`, which is not a job", job.name),
                    )
                    .help_opt(did_you_mean(need, names.iter().map(String::as_str)));
                }
                Some(_) if *need == job.name => {
                    d.error(span, format!("job `{}` needs itself", job.name));
                }
                Some(&s) if s > my_stage => {
                    d.error(
                        span,
                        format!(
                            "job `{}` needs `{need}`, which is in a later stage (`{}`)",
                            job.name, stages[s]
                        ),
                    );
                }
                Some(_) => {}
            }
        }
        if let Some(needs) = &mut job.needs {
            needs.retain(|n| !dropped.contains(&n.job));
        }
        for (dep, span) in &refs.dependencies {
            match stage_of.get(dep) {
                None => {
                    d.error(
                        span,
                        format!("job `{}` depends on `{dep}`, which is not a job", job.name),
                    )
                    .help_opt(did_you_mean(dep, names.iter().map(String::as_str)));
                }
                Some(&s)
                    if s >= my_stage
                        && job
                            .needs
                            .as_ref()
                            .is_none_or(|n| !n.iter().any(|x| &x.job == dep)) =>
                {
                    d.error(
                        span,
                        format!(
                            "job `{}` depends on `{dep}`, which is not in an earlier stage",
                            job.name
                        ),
                    );
                }
                Some(_) => {}
            }
        }
    }
    check_needs_cycles(jobs, d);
}

/// GitLab rejects circular `needs:`; without this check the scheduler would wait forever.
fn check_needs_cycles(jobs: &[(Job, JobRefs)], d: &mut Diags) {
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, (j, _))| (j.name.as_str(), i))
        .collect();
    let edges: Vec<Vec<(usize, &Span)>> = jobs
        .iter()
        .enumerate()
        .map(|(i, (j, _))| {
            j.needs
                .iter()
                .flatten()
                .filter_map(|n| index.get(n.job.as_str()).map(|&t| (t, &n.span)))
                // A job needing itself is reported on its own.
                .filter(|&(t, _)| t != i)
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; jobs.len()];
    for start in 0..jobs.len() {
        if state[start] != 0 {
            continue;
        }
        let mut path: Vec<usize> = vec![start];
        let mut next_edge: Vec<usize> = vec![0];
        state[start] = 1;
        while let Some(&node) = path.last() {
            let at = next_edge.last().copied().unwrap_or(0);
            match edges[node].get(at) {
                Some(&(target, span)) => {
                    if let Some(e) = next_edge.last_mut() {
                        *e += 1;
                    }
                    match state[target] {
                        0 => {
                            state[target] = 1;
                            path.push(target);
                            next_edge.push(0);
                        }
                        1 => {
                            let from = path.iter().position(|&n| n == target).unwrap_or(0);
                            let mut chain: Vec<&str> = path[from..]
                                .iter()
                                .map(|&n| jobs[n].0.name.as_str())
                                .collect();
                            chain.push(jobs[target].0.name.as_str());
                            d.error(
                                span,
                                format!("circular needs: {}", chain.join(" -> ")),
                            )
                            .help_opt(Some(
                                "remove one of these needs: GitLab rejects a pipeline whose needs form a cycle"
                                    .to_string(),
                            ));
                        }
                        _ => {}
                    }
                }
                None => {
                    state[node] = 2;
                    path.pop();
                    next_edge.pop();
                }
            }
        }
    }
}
