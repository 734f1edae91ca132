//! Stage 3: resolved YAML trees -> typed model values. Each function reports what is wrong at the
//! value's own location and carries on, so one run shows every problem.

use crate::diagnostic::Diags;
use crate::keywords;
use crate::model::{
    Artifacts, Cache, CachePolicy, CacheWhen, Image, Job, Need, Retry, Span, Variable, When,
};
use crate::parallel;
use crate::rules;
use crate::suggest::did_you_mean;
use crate::yaml::{Map, Node, Psych, Value};

/// Every keyword GitLab accepts in a job.
pub(crate) const JOB_KEYWORDS: &[&str] = &[
    "after_script",
    "allow_failure",
    "artifacts",
    "before_script",
    "cache",
    "coverage",
    "dast_configuration",
    "dependencies",
    "environment",
    "except",
    "extends",
    "hooks",
    "id_tokens",
    "identity",
    "image",
    "inherit",
    "interruptible",
    "manual_confirmation",
    "needs",
    "only",
    "pages",
    "parallel",
    "publish",
    "release",
    "resource_group",
    "retry",
    "rules",
    "run",
    "script",
    "secrets",
    "services",
    "stage",
    "start_in",
    "tags",
    "timeout",
    "trigger",
    "variables",
    "when",
];

/// The job keywords this slice acts on; the other [`JOB_KEYWORDS`] end up in `Job::unsupported`.
const SUPPORTED_JOB_KEYWORDS: &[&str] = &[
    "after_script",
    "allow_failure",
    "artifacts",
    "before_script",
    "cache",
    "coverage",
    "dependencies",
    "environment",
    "except",
    "extends",
    "image",
    "inherit",
    "interruptible",
    "needs",
    "only",
    "parallel",
    "resource_group",
    "retry",
    "rules",
    "script",
    "services",
    "stage",
    "start_in",
    "tags",
    "timeout",
    "trigger",
    "variables",
    "when",
];

/// GitLab allows script arrays nested this deep (they come from anchors of lists).
const MAX_SCRIPT_NESTING: usize = 10;

pub(crate) fn string(n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    match &n.value {
        // A plain `yes` in a script line is text to the shell, not a boolean: keep what is written.
        Value::Scalar(s) => Some(s.text.clone()),
        _ => {
            d.error(
                &n.span,
                format!("{what} must be a string, found {}", n.kind()),
            );
            None
        }
    }
}

/// A string or a list of strings.
pub(crate) fn string_list(n: &Node, what: &str, d: &mut Diags) -> Option<Vec<String>> {
    match &n.value {
        Value::Scalar(s) => Some(vec![s.text.clone()]),
        Value::Seq(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for item in items {
                match &item.value {
                    Value::Scalar(s) => out.push(s.text.clone()),
                    _ => {
                        ok = false;
                        d.error(
                            &item.span,
                            format!(
                                "{what} must be a string or a list of strings, found {} in the list",
                                item.kind()
                            ),
                        );
                    }
                }
            }
            ok.then_some(out)
        }
        _ => {
            d.error(
                &n.span,
                format!(
                    "{what} must be a string or a list of strings, found {}",
                    n.kind()
                ),
            );
            None
        }
    }
}

/// `script`-like: a string, or a list whose items are strings or (from anchors) nested lists,
/// which GitLab flattens.
pub(crate) fn script(n: &Node, what: &str, d: &mut Diags) -> Option<Vec<String>> {
    fn walk(n: &Node, what: &str, depth: usize, out: &mut Vec<String>, d: &mut Diags) -> bool {
        match &n.value {
            Value::Scalar(s) => {
                out.push(s.text.clone());
                true
            }
            Value::Seq(items) if depth < MAX_SCRIPT_NESTING => {
                let mut ok = true;
                for item in items {
                    ok &= walk(item, what, depth + 1, out, d);
                }
                ok
            }
            Value::Seq(_) => {
                d.error(
                    &n.span,
                    format!("{what} is nested more than {MAX_SCRIPT_NESTING} lists deep"),
                );
                false
            }
            Value::Map(m) => {
                let e = d.error(
                    &n.span,
                    format!("{what} must be a string or a list of strings, found a map"),
                );
                // The usual cause: an unquoted `: ` inside a command line.
                if depth > 0 && m.len() == 1 {
                    e.help("a line containing `: ` is read as a map; quote the whole line");
                }
                false
            }
            _ => {
                d.error(
                    &n.span,
                    format!(
                        "{what} must be a string or a list of strings, found {}",
                        n.kind()
                    ),
                );
                false
            }
        }
    }
    let mut out = Vec::new();
    walk(n, what, 0, &mut out, d).then_some(out)
}

pub(crate) fn boolean(n: &Node, what: &str, d: &mut Diags) -> Option<bool> {
    match &n.value {
        Value::Scalar(s) if s.as_bool().is_some() => s.as_bool(),
        _ => {
            d.error(
                &n.span,
                format!("{what} must be true or false, found {}", describe(n)),
            );
            None
        }
    }
}

/// One of a fixed set of words.
fn one_of<T: Copy>(n: &Node, what: &str, choices: &[(&str, T)], d: &mut Diags) -> Option<T> {
    let text = string(n, what, d)?;
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == text) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    d.error(
        &n.span,
        format!("{what} must be one of {}, found `{text}`", names.join(", ")),
    )
    .help_opt(did_you_mean(&text, names.iter().copied()));
    None
}

fn describe(n: &Node) -> String {
    match &n.value {
        Value::Scalar(s) => format!("`{}`", s.text),
        _ => n.kind(),
    }
}

pub(crate) fn map<'a>(n: &'a Node, what: &str, d: &mut Diags) -> Option<&'a Map> {
    let m = n.as_map();
    if m.is_none() {
        d.error(&n.span, format!("{what} must be a map, found {}", n.kind()));
    }
    m
}

/// Report keys of `m` outside `known`, with a did-you-mean.
pub(crate) fn check_keys(m: &Map, what: &str, known: &[&str], d: &mut Diags) {
    for (k, e) in m {
        if !known.contains(&k.as_str()) {
            d.error(&e.key_span, format!("unknown key `{k}` in {what}"))
                .help_opt(did_you_mean(k, known.iter().copied()));
        }
    }
}

/// `variables:` (global or job): `NAME: scalar` or `NAME: {value, description, expand, options}`.
pub(crate) fn variables(n: &Node, scope: &str, d: &mut Diags) -> Vec<Variable> {
    if n.is_null() {
        return Vec::new();
    }
    let Some(m) = map(n, &format!("{scope} variables"), d) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, e) in m {
        let what = format!("variable `{name}`");
        let v = &e.value;
        let (value, expand) = match &v.value {
            Value::Scalar(s) => (variable_value(s, &e.value, &what, d), Some(true)),
            Value::Map(vm) => {
                check_keys(vm, &what, &["value", "description", "expand", "options"], d);
                let value = match vm.get("value") {
                    Some(ve) if ve.value.is_null() => Some(String::new()),
                    Some(ve) => match &ve.value.value {
                        Value::Scalar(s) => variable_value(s, &ve.value, &what, d),
                        _ => string(&ve.value, &format!("{what} value"), d),
                    },
                    // `{description: ...}` alone declares a variable with an empty default.
                    None => Some(String::new()),
                };
                let expand = match vm.get("expand") {
                    Some(x) => boolean(&x.value, &format!("{what} `expand`"), d),
                    None => Some(true),
                };
                if let Some(o) = vm.get("options") {
                    string_list(&o.value, &format!("{what} `options`"), d);
                }
                (value, expand)
            }
            Value::Null => {
                // An empty value has no useful position of its own: point at the name.
                d.error(&e.key_span, format!("{what} has no value"))
                    .help(format!("write `{name}: \"\"` for an empty value"));
                (None, None)
            }
            _ => {
                d.error(
                    &v.span,
                    format!(
                        "{what} must be a string, a number or a map with `value`, found {}",
                        v.kind()
                    ),
                );
                (None, None)
            }
        };
        if let (Some(value), Some(expand)) = (value, expand) {
            out.push(Variable {
                name: name.clone(),
                value,
                expand,
                span: Some(e.key_span.clone()),
            });
        }
    }
    out
}

/// A variable's value as GitLab reads it: Psych's YAML 1.1 types turned into text with Ruby's
/// `to_s` (`1.10` -> "1.1", `010` -> "8"), with a warning when that differs from what is written.
/// Booleans are not variable values in GitLab.
fn variable_value(s: &crate::yaml::Scalar, n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    match s.psych() {
        Psych::Bool(_) => {
            d.error(
                &n.span,
                format!(
                    "{what} must be a string or a number, found the boolean `{}`",
                    s.text
                ),
            )
            .help(format!(
                "GitLab reads an unquoted `{}` as a boolean (YAML 1.1): write \"{}\"",
                s.text, s.text
            ));
            None
        }
        Psych::Str => Some(s.text.clone()),
        Psych::Int(_) | Psych::Float(_) => {
            let text = s.ruby_text();
            if text != s.text {
                d.warning(
                    &n.span,
                    format!(
                        "GitLab reads `{}` as the number {text}, so {what} is \"{text}\"",
                        s.text
                    ),
                )
                .help(format!("quote it to keep the text: \"{}\"", s.text));
            }
            Some(text)
        }
    }
}

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
}

/// Convert one resolved (extends + default applied) job.
pub(crate) fn job(
    name: &str,
    span: &Span,
    m: &Map,
    stages: &[String],
    d: &mut Diags,
) -> Option<(Job, JobRefs)> {
    let errors_before = d.0.iter().filter(|x| x.is_error()).count();
    let mut job = Job {
        name: name.to_string(),
        span: span.clone(),
        stage: "test".to_string(),
        image: None,
        before_script: Vec::new(),
        script: Vec::new(),
        after_script: Vec::new(),
        variables: Vec::new(),
        cache: Vec::new(),
        artifacts: None,
        when: When::OnSuccess,
        allow_failure: false,
        needs: None,
        dependencies: None,
        unsupported: Vec::new(),
        services: Vec::new(),
        rules: Vec::new(),
        only: None,
        except: None,
        allow_failure_exit_codes: Vec::new(),
        start_in: None,
        retry: Retry::default(),
        timeout: None,
        interruptible: false,
        tags: Vec::new(),
        coverage: None,
        environment: None,
        environment_url: None,
        resource_group: None,
        parallel: None,
        trigger: None,
        inherit_variables: None,
    };
    let mut refs = JobRefs::default();
    let mut allow_failure_set = false;
    let mut start_in_span: Option<Span> = None;
    // A script that is there but wrong is reported as such, not also as missing.
    let mut script_invalid = false;
    for (key, e) in m {
        let v = &e.value;
        if !JOB_KEYWORDS.contains(&key.as_str()) {
            d.error(
                &e.key_span,
                format!("unknown keyword `{key}` in job `{name}`"),
            )
            .help_opt(did_you_mean(key, JOB_KEYWORDS.iter().copied()));
            continue;
        }
        if !SUPPORTED_JOB_KEYWORDS.contains(&key.as_str()) {
            job.unsupported.push((key.clone(), e.key_span.clone()));
            continue;
        }
        // `key: null` (or empty) means "not set"; it also blocks inheriting from `default:`.
        if v.is_null() {
            continue;
        }
        let what = format!("`{key}` of job `{name}`");
        match key.as_str() {
            "script" => match script(v, &what, d) {
                Some(lines) => job.script = lines,
                None => script_invalid = true,
            },
            "before_script" => job.before_script = script(v, &what, d).unwrap_or_default(),
            "after_script" => job.after_script = script(v, &what, d).unwrap_or_default(),
            "stage" => {
                refs.stage_span = Some(v.span.clone());
                if let Some(s) = string(v, &what, d) {
                    job.stage = s;
                }
            }
            "image" => job.image = image(v, &what, &mut job.unsupported, d),
            "variables" => job.variables = variables(v, &format!("job `{name}`"), d),
            "cache" => job.cache = caches(v, &what, &mut job.unsupported, d),
            "artifacts" => job.artifacts = artifacts(v, &what, &mut job.unsupported, d),
            "when" => {
                // GitLab's job entry accepts only these (`ALLOWED_WHEN` in
                // lib/gitlab/ci/config/entry/job.rb); `never` exists only in rules.
                if matches!(&v.value, Value::Scalar(s) if s.text == "never") {
                    d.error(
                        &v.span,
                        format!("{what} cannot be `never`: GitLab allows `when: never` only in `rules:` and `workflow: rules:`"),
                    )
                    .help("to keep the job out of the pipeline, use `rules: [{when: never}]` (or delete the job)");
                } else {
                    job.when = one_of(v, &what, WHEN_CHOICES, d).unwrap_or(When::OnSuccess);
                }
            }
            "allow_failure" => {
                allow_failure_set = true;
                match &v.value {
                    Value::Map(m) => {
                        job.allow_failure = false;
                        job.allow_failure_exit_codes = keywords::exit_codes(v, m, &what, d);
                    }
                    _ => job.allow_failure = boolean(v, &what, d).unwrap_or(false),
                }
            }
            "services" => job.services = keywords::services(v, &what, &mut job.unsupported, d),
            "retry" => job.retry = keywords::retry(v, &what, d),
            "timeout" => job.timeout = keywords::timeout(v, &what, d),
            "start_in" => {
                start_in_span = Some(v.span.clone());
                job.start_in = keywords::start_in(v, &what, d);
            }
            "interruptible" => job.interruptible = boolean(v, &what, d).unwrap_or(false),
            "tags" => job.tags = keywords::tags(v, &what, d),
            "coverage" => job.coverage = keywords::coverage(v, &what, d),
            "environment" => {
                (job.environment, job.environment_url) = keywords::environment(v, &what, d);
            }
            "resource_group" => job.resource_group = string(v, &what, d),
            "trigger" => job.trigger = keywords::trigger(v, &what, &mut job.unsupported, d),
            "parallel" => refs.parallel = parallel::parse(v, &what, d),
            "needs" => job.needs = needs(v, &what, &mut refs, &mut job.unsupported, d),
            "rules" => job.rules = rules::job_rules(v, name, &mut job.unsupported, d),
            "only" => job.only = rules::only_except(v, key, name, &mut job.unsupported, d),
            "except" => job.except = rules::only_except(v, key, name, &mut job.unsupported, d),
            "dependencies" => {
                let list = string_list(v, &what, d).unwrap_or_default();
                for (dep, span) in list.iter().zip(item_spans(v)) {
                    refs.dependencies.push((dep.clone(), span));
                }
                job.dependencies = Some(list);
            }
            // "extends" is consumed by the resolver.
            _ => {}
        }
    }
    rules::check_job_conflicts(name, m, d);
    match (&start_in_span, job.when) {
        (None, When::Delayed) => {
            d.error(
                span,
                format!("job `{name}` is `when: delayed` but has no `start_in`"),
            )
            .help("add `start_in: 30 minutes` (at most one week)");
        }
        (Some(s), w) if w != When::Delayed => {
            d.error(
                s,
                format!("`start_in` of job `{name}` needs `when: delayed`"),
            );
        }
        _ => {}
    }
    // GitLab: manual jobs (without rules) may fail without failing the pipeline.
    if !allow_failure_set && job.when == When::Manual {
        job.allow_failure = true;
    }
    let has_alternative = m.contains_key("trigger") || m.contains_key("run");
    if !has_alternative && job.script.is_empty() && !script_invalid {
        d.error(span, format!("job `{name}` has no script")).help(
            "add `script:` with at least one command, or start the name with `.` to make it a hidden template",
        );
    }
    check_stage(&job, &refs, stages, d);
    (count_errors(d) == errors_before).then_some((job, refs))
}

fn count_errors(d: &Diags) -> usize {
    d.0.iter().filter(|x| x.is_error()).count()
}

fn check_stage(job: &Job, refs: &JobRefs, stages: &[String], d: &mut Diags) {
    if stages.contains(&job.stage) {
        return;
    }
    let listed = stages.join(", ");
    match &refs.stage_span {
        Some(span) => {
            let e = d.error(
                span,
                format!(
                    "stage `{}` of job `{}` is not in `stages`",
                    job.stage, job.name
                ),
            );
            let help = match did_you_mean(&job.stage, stages.iter().map(String::as_str)) {
                Some(h) => format!("{h} (stages: {listed})"),
                None => format!("add it to `stages:` (stages: {listed})"),
            };
            e.help(help);
        }
        None => {
            d.error(
                &job.span,
                format!(
                    "job `{}` has no `stage:` and the default stage `test` is not in `stages`",
                    job.name
                ),
            )
            .help(format!("set `stage:` to one of: {listed}"));
        }
    }
}

const WHEN_CHOICES: &[(&str, When)] = &[
    ("on_success", When::OnSuccess),
    ("on_failure", When::OnFailure),
    ("always", When::Always),
    ("manual", When::Manual),
    ("delayed", When::Delayed),
];

const CACHE_WHEN_CHOICES: &[(&str, CacheWhen)] = &[
    ("on_success", CacheWhen::OnSuccess),
    ("on_failure", CacheWhen::OnFailure),
    ("always", CacheWhen::Always),
];

/// Spans of the items of a list (or of the scalar itself), aligned with `string_list` output.
pub(crate) fn item_spans(n: &Node) -> Vec<Span> {
    match &n.value {
        Value::Seq(items) => items.iter().map(|i| i.span.clone()).collect(),
        _ => vec![n.span.clone()],
    }
}

fn image(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Image> {
    if let Value::Scalar(s) = &n.value {
        return Some(Image {
            name: s.text.clone(),
            entrypoint: None,
            pull_policy: Vec::new(),
            docker_user: None,
            docker_platform: None,
            span: n.span.clone(),
        });
    }
    let Some(m) = n.as_map() else {
        d.error(
            &n.span,
            format!(
                "{what} must be a string or a map with `name`, found {}",
                n.kind()
            ),
        );
        return None;
    };
    check_keys(
        m,
        what,
        &["name", "entrypoint", "pull_policy", "docker", "kubernetes"],
        d,
    );
    if let Some(e) = m.get("kubernetes") {
        unsupported.push(("image:kubernetes".into(), e.key_span.clone()));
    }
    let (mut docker_user, mut docker_platform) = (None, None);
    if let Some(e) = m.get("docker").filter(|e| !e.value.is_null()) {
        let what = format!("{what} `docker`");
        if let Some(dm) = map(&e.value, &what, d) {
            check_keys(dm, &what, &["user", "platform"], d);
            docker_user = dm
                .get("user")
                .and_then(|u| string(&u.value, &format!("{what} `user`"), d));
            docker_platform = dm
                .get("platform")
                .and_then(|p| string(&p.value, &format!("{what} `platform`"), d));
        }
    }
    let name = match m.get("name") {
        Some(e) => string(&e.value, &format!("{what} `name`"), d)?,
        None => {
            d.error(&n.span, format!("{what} has no `name`"));
            return None;
        }
    };
    let entrypoint = match m.get("entrypoint") {
        Some(e) if !e.value.is_null() => {
            Some(string_list(&e.value, &format!("{what} `entrypoint`"), d)?)
        }
        _ => None,
    };
    let pull_policy = m
        .get("pull_policy")
        .filter(|e| !e.value.is_null())
        .map(|e| keywords::pull_policies(&e.value, &format!("{what} `pull_policy`"), d))
        .unwrap_or_default();
    Some(Image {
        name,
        entrypoint,
        pull_policy,
        docker_user,
        docker_platform,
        span: n.span.clone(),
    })
}

fn caches(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Vec<Cache> {
    match &n.value {
        Value::Seq(items) => items
            .iter()
            .filter_map(|i| cache(i, what, unsupported, d))
            .collect(),
        _ => cache(n, what, unsupported, d).into_iter().collect(),
    }
}

fn cache(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Cache> {
    let m = match &n.value {
        Value::Map(m) => m,
        _ => {
            d.error(
                &n.span,
                format!("{what} must be a map or a list of maps, found {}", n.kind()),
            );
            return None;
        }
    };
    check_keys(
        m,
        what,
        &[
            "key",
            "paths",
            "untracked",
            "policy",
            "when",
            "fallback_keys",
            "unprotect",
        ],
        d,
    );
    let mut c = Cache {
        key: "default".to_string(),
        key_files: Vec::new(),
        fallback_keys: Vec::new(),
        paths: Vec::new(),
        untracked: false,
        policy: CachePolicy::PullPush,
        when: CacheWhen::OnSuccess,
        span: n.span.clone(),
    };
    for (k, e) in m {
        let v = &e.value;
        if v.is_null() {
            continue;
        }
        let what = format!("{what} `{k}`");
        match k.as_str() {
            "key" => match &v.value {
                Value::Map(km) => {
                    check_keys(km, &what, &["files", "prefix"], d);
                    c.key = km
                        .get("prefix")
                        .filter(|p| !p.value.is_null())
                        .and_then(|p| string(&p.value, &format!("{what} `prefix`"), d))
                        .unwrap_or_default();
                    match km.get("files") {
                        Some(f) => {
                            let files = string_list(&f.value, &format!("{what} `files`"), d)
                                .unwrap_or_default();
                            if files.is_empty() || files.len() > 2 {
                                d.error(
                                    &f.value.span,
                                    format!(
                                        "{what} `files` must list one or two files, found {}",
                                        files.len()
                                    ),
                                );
                            }
                            c.key_files = files;
                        }
                        None => {
                            d.error(&v.span, format!("{what} as a map needs `files`"));
                        }
                    }
                }
                _ => c.key = string(v, &what, d).unwrap_or(c.key),
            },
            "paths" => c.paths = string_list(v, &what, d).unwrap_or_default(),
            "untracked" => c.untracked = boolean(v, &what, d).unwrap_or(false),
            "policy" => match &v.value {
                // `policy: $VAR` is expanded at run time by GitLab: not done yet.
                Value::Scalar(s) if s.text.starts_with('$') => {
                    unsupported.push(("cache:policy:variable".into(), e.key_span.clone()));
                }
                _ => {
                    c.policy = one_of(
                        v,
                        &what,
                        &[
                            ("pull-push", CachePolicy::PullPush),
                            ("pull", CachePolicy::Pull),
                            ("push", CachePolicy::Push),
                        ],
                        d,
                    )
                    .unwrap_or(CachePolicy::PullPush);
                }
            },
            "when" => {
                c.when = one_of(v, &what, CACHE_WHEN_CHOICES, d).unwrap_or(CacheWhen::OnSuccess);
            }
            "fallback_keys" => {
                c.fallback_keys = string_list(v, &what, d).unwrap_or_default();
                if c.fallback_keys.len() > 5 {
                    d.error(
                        &v.span,
                        format!("{what} lists more than 5 keys (GitLab's limit)"),
                    );
                }
            }
            "unprotect" => {
                unsupported.push((format!("cache:{k}"), e.key_span.clone()));
            }
            _ => {}
        }
    }
    Some(c)
}

fn artifacts(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Artifacts> {
    let m = map(n, what, d)?;
    check_keys(
        m,
        what,
        &[
            "paths",
            "exclude",
            "untracked",
            "when",
            "name",
            "expire_in",
            "expose_as",
            "reports",
            "public",
            "access",
        ],
        d,
    );
    let mut a = Artifacts {
        paths: Vec::new(),
        exclude: Vec::new(),
        untracked: false,
        when: CacheWhen::OnSuccess,
        name: None,
        expire_in: None,
        reports_dotenv: Vec::new(),
        reports_other: Vec::new(),
        span: n.span.clone(),
    };
    for (k, e) in m {
        let v = &e.value;
        if v.is_null() {
            continue;
        }
        let what = format!("{what} `{k}`");
        match k.as_str() {
            "paths" => a.paths = string_list(v, &what, d).unwrap_or_default(),
            "exclude" => a.exclude = string_list(v, &what, d).unwrap_or_default(),
            "untracked" => a.untracked = boolean(v, &what, d).unwrap_or(false),
            "when" => {
                a.when = one_of(v, &what, CACHE_WHEN_CHOICES, d).unwrap_or(CacheWhen::OnSuccess);
            }
            "name" => a.name = string(v, &what, d),
            "expire_in" => a.expire_in = string(v, &what, d),
            "reports" => reports(v, &what, &mut a, d),
            "expose_as" | "public" | "access" => {
                unsupported.push((format!("artifacts:{k}"), e.key_span.clone()));
            }
            _ => {}
        }
    }
    Some(a)
}

/// `artifacts: reports:`: `dotenv` files feed later jobs; the other reports' paths are kept with
/// the artifacts.
fn reports(n: &Node, what: &str, a: &mut Artifacts, d: &mut Diags) {
    let Some(m) = map(n, what, d) else {
        return;
    };
    for (k, e) in m {
        let what = format!("{what} `{k}`");
        let v = &e.value;
        if v.is_null() {
            continue;
        }
        match (k.as_str(), &v.value) {
            ("dotenv", _) => a
                .reports_dotenv
                .extend(string_list(v, &what, d).unwrap_or_default()),
            // `coverage_report: {coverage_format, path}`.
            (_, Value::Map(rm)) => match rm.get("path") {
                Some(p) => a.reports_other.extend(
                    string_list(&p.value, &format!("{what} `path`"), d).unwrap_or_default(),
                ),
                None => {
                    d.error(&v.span, format!("{what} needs `path`"));
                }
            },
            _ => a
                .reports_other
                .extend(string_list(v, &what, d).unwrap_or_default()),
        }
    }
}

pub(crate) fn needs(
    n: &Node,
    what: &str,
    refs: &mut JobRefs,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Vec<Need>> {
    let items: Vec<&Node> = match &n.value {
        Value::Seq(items) => items.iter().collect(),
        // A single string is accepted by GitLab too.
        Value::Scalar(_) => vec![n],
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
                        // GitLab gives them; an unknown combination is then "not a job".
                        let names = match m.get("parallel").filter(|p| !p.value.is_null()) {
                            None => vec![job],
                            Some(p) => {
                                if optional {
                                    d.error(
                                        &p.key_span,
                                        format!("{what}: `optional` cannot be used with `parallel: matrix` (GitLab rejects it)"),
                                    );
                                }
                                match need_instances(&job, &p.value, what, d) {
                                    Some(names) => names,
                                    None => continue,
                                }
                            }
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
