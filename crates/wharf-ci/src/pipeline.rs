//! Stage 2: the top-level document -> resolved job trees (`extends`, then `default:`), then
//! stage 3 ([`crate::convert`]) per job and the checks that need every job (`needs`,
//! `dependencies`). Later GitLab features (`include`, `!reference`, `rules`) slot in here as
//! further passes over the resolved trees.

use crate::convert::{self, JobRefs};
use crate::diagnostic::{Diagnostic, Diags};
use crate::model::{Job, Pipeline, Span};
use crate::suggest::did_you_mean;
use crate::yaml::{self, Entry, Map, Node, Value};
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
const DEFAULT_KEYWORDS: &[&str] = &[
    "after_script",
    "artifacts",
    "before_script",
    "cache",
    "hooks",
    "id_tokens",
    "identity",
    "image",
    "interruptible",
    "retry",
    "services",
    "tags",
    "timeout",
];

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

pub(crate) fn load(file: &str, text: &str, d: &mut Diags) -> Option<Pipeline> {
    let docs = yaml::parse(file, text, d)?;
    let start = Span {
        file: file.to_string(),
        line: 1,
        column: 1,
        offset: 0,
        len: 0,
    };
    let root = match docs.as_slice() {
        [] => None,
        [doc] => Some(doc),
        [header, ..] => {
            match header.as_map().and_then(|m| m.get("spec")) {
                Some(spec) => d.error(
                    &spec.key_span,
                    "a `spec:` header (inputs) is not supported yet",
                ),
                None => d.error(&docs[1].span, "the file has more than one YAML document"),
            };
            return None;
        }
    };
    let Some(root) = root.and_then(Node::as_map) else {
        let span = root.map_or(start.clone(), |r| r.span.clone());
        let found = root.map_or("nothing".to_string(), Node::kind);
        d.error(
            &span,
            format!("a pipeline must be a map of keywords and jobs, found {found}"),
        );
        return None;
    };

    if let Some(e) = root.get("include") {
        d.error(&e.key_span, "`include` is not supported yet").help(
            "wharf would run a different pipeline without the included files; inline them for now",
        );
    }
    if let Some(e) = root.get("workflow") {
        d.warning(
            &e.key_span,
            "`workflow` is not supported yet: it is ignored",
        );
    }

    let stages = stages(root, d);
    let variables = root
        .get("variables")
        .map(|e| convert::variables(&e.value, "global", d))
        .unwrap_or_default();
    let default = default_map(root, d);

    let mut resolver = Resolver {
        root,
        memo: HashMap::new(),
        d,
    };
    let mut converted: Vec<(Job, JobRefs)> = Vec::new();
    let mut total_nodes = 0usize;
    for (name, e) in root {
        if GLOBAL_KEYWORDS.contains(&name.as_str()) || name.starts_with('.') {
            continue;
        }
        if e.value.as_map().is_none() {
            let err = resolver.d.error(
                &e.key_span,
                format!(
                    "`{name}` is not a keyword, so it is a job, and a job must be a map, found {}",
                    e.value.kind()
                ),
            );
            err.help_opt(did_you_mean(name, GLOBAL_KEYWORDS.iter().copied()));
            continue;
        }
        let Some(mut job) = resolver.resolve(name, &mut Vec::new()) else {
            continue;
        };
        for (k, v) in &default {
            if !job.contains_key(k) {
                job.insert(k.clone(), v.clone());
            }
        }
        total_nodes += job.values().map(|e| e.value.count() + 1).sum::<usize>();
        if total_nodes > MAX_RESOLVED_NODES {
            resolver.d.error(
                &e.key_span,
                format!("the pipeline expands to more than {MAX_RESOLVED_NODES} YAML nodes"),
            );
            return None;
        }
        if let Some(j) = convert::job(name, &e.key_span, &job, &stages, resolver.d) {
            converted.push(j);
        }
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
        workflow: None,
    })
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
    /// `None` when resolving failed (already reported).
    memo: HashMap<String, Option<Map>>,
    d: &'d mut Diags,
}

impl Resolver<'_, '_> {
    /// The job `name` with everything it extends merged in (its own keys win), without `extends`.
    fn resolve(&mut self, name: &str, chain: &mut Vec<String>) -> Option<Map> {
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

    fn resolve_uncached(&mut self, name: &str, own: &Map, chain: &mut Vec<String>) -> Option<Map> {
        let Some(ext) = own.get("extends").filter(|e| !e.value.is_null()) else {
            return Some(own.clone());
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
            // `chain` holds the job itself plus one entry per level already followed.
            if chain.len() > MAX_EXTENDS_DEPTH {
                self.d.error(
                    &span,
                    format!(
                        "`extends` is nested too deeply (more than {MAX_EXTENDS_DEPTH} levels): {} -> {target}",
                        chain.join(" -> ")
                    ),
                );
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
                Some(_) => match self.resolve(&target, chain) {
                    Some(base) => merged = deep_merge(&merged, &base),
                    None => ok = false,
                },
            }
        }
        if !ok {
            return None;
        }
        let mut own = own.clone();
        own.shift_remove("extends");
        Some(deep_merge(&merged, &own))
    }
}

/// GitLab's `extends` merge: maps merge recursively with `over` winning; anything else
/// (including lists) is replaced by `over`'s value.
fn deep_merge(base: &Map, over: &Map) -> Map {
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
}
