//! Converters for the job keywords beyond the basics in [`crate::convert`]: `inherit`,
//! `services`, `retry`, `timeout`/`start_in`, `allow_failure: {exit_codes}`, `coverage`,
//! `environment`, `trigger`, `tags`. Each reports at the value's own position and carries on.

use crate::convert::{boolean, check_keys, item_spans, string, string_list, variables};
use crate::diagnostic::Diags;
use crate::duration;
use crate::model::{PullPolicy, Retry, Service, Span, Trigger, TriggerInclude, TriggerInputs};
use crate::suggest::did_you_mean;
use crate::yaml::{Entry, Node, Psych, Value};
use std::time::Duration;

/// What `default:` may set (and so what `inherit: default: [...]` may name).
pub(crate) const DEFAULT_KEYWORDS: &[&str] = &[
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

/// GitLab's failure reasons for `retry: when`.
pub(crate) const RETRY_REASONS: &[&str] = &[
    "always",
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
];

/// GitLab's cap on `start_in`.
const MAX_START_IN: Duration = Duration::from_secs(7 * 24 * 3600);
/// GitLab's cap on a job `timeout` (one month as Rails counts it).
const MAX_TIMEOUT: Duration = Duration::from_secs(2_629_746);

/// One half of `inherit:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inherit {
    All,
    Nothing,
    Only(Vec<String>),
}

impl Inherit {
    pub fn allows(&self, key: &str) -> bool {
        match self {
            Inherit::All => true,
            Inherit::Nothing => false,
            Inherit::Only(keys) => keys.iter().any(|k| k == key),
        }
    }
    /// The model's form: `None` for all, else the names (empty for none).
    pub fn into_option(self) -> Option<Vec<String>> {
        match self {
            Inherit::All => None,
            Inherit::Nothing => Some(Vec::new()),
            Inherit::Only(v) => Some(v),
        }
    }
}

pub(crate) struct InheritSpec {
    pub default: Inherit,
    pub variables: Inherit,
}

/// `inherit: {default: bool | [keywords], variables: bool | [names]}`.
pub(crate) fn inherit(e: Option<&Entry>, job: &str, d: &mut Diags) -> InheritSpec {
    let mut spec = InheritSpec {
        default: Inherit::All,
        variables: Inherit::All,
    };
    let Some(e) = e.filter(|e| !e.value.is_null()) else {
        return spec;
    };
    let what = format!("`inherit` of job `{job}`");
    let Some(m) = e.value.as_map() else {
        d.error(
            &e.value.span,
            format!(
                "{what} must be a map with `default` and/or `variables`, found {}",
                e.value.kind()
            ),
        );
        return spec;
    };
    check_keys(m, &what, &["default", "variables"], d);
    if let Some(x) = m.get("default") {
        spec.default = inherit_half(
            &x.value,
            &format!("{what} `default`"),
            Some(DEFAULT_KEYWORDS),
            d,
        );
    }
    if let Some(x) = m.get("variables") {
        spec.variables = inherit_half(&x.value, &format!("{what} `variables`"), None, d);
    }
    spec
}

fn inherit_half(n: &Node, what: &str, allowed: Option<&[&str]>, d: &mut Diags) -> Inherit {
    match &n.value {
        Value::Seq(_) => {
            let names = string_list(n, what, d).unwrap_or_default();
            if let Some(allowed) = allowed {
                for (name, span) in names.iter().zip(item_spans(n)) {
                    if !allowed.contains(&name.as_str()) {
                        d.error(
                            &span,
                            format!("{what}: `{name}` cannot be set by `default`"),
                        )
                        .help_opt(did_you_mean(name, allowed.iter().copied()));
                    }
                }
            }
            Inherit::Only(names)
        }
        _ => match boolean(n, &format!("{what} (true, false or a list)"), d) {
            Some(false) => Inherit::Nothing,
            _ => Inherit::All,
        },
    }
}

/// An integer as Psych reads it (so `0x10` is 16), or an error at `n`.
pub(crate) fn integer(n: &Node, what: &str, d: &mut Diags) -> Option<i128> {
    if let Value::Scalar(s) = &n.value {
        if let Psych::Int(i) = s.psych() {
            return Some(i);
        }
    }
    d.error(
        &n.span,
        format!("{what} must be an integer, found {}", describe(n)),
    );
    None
}

fn describe(n: &Node) -> String {
    match &n.value {
        Value::Scalar(s) => format!("`{}`", s.text),
        _ => n.kind(),
    }
}

/// A GitLab duration ("1 hour and 30 minutes", "90m", "3600").
pub(crate) fn duration(n: &Node, what: &str, max: Duration, d: &mut Diags) -> Option<Duration> {
    let text = string(n, what, d)?;
    match duration::parse(&text) {
        Ok(v) if v > max => {
            d.error(
                &n.span,
                format!(
                    "{what} must be at most {} (GitLab's limit), found `{text}`",
                    human(max)
                ),
            );
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            d.error(&n.span, format!("{what} is not a duration: {e}"))
                .help("write it like `30 minutes`, `1 hour and 30 minutes`, `1h 30m` or `2 days`");
            None
        }
    }
}

fn human(v: Duration) -> String {
    match v.as_secs() {
        s if s % (24 * 3600) == 0 => format!("{} days", s / (24 * 3600)),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

pub(crate) fn timeout(n: &Node, what: &str, d: &mut Diags) -> Option<Duration> {
    duration(n, what, MAX_TIMEOUT, d)
}

pub(crate) fn start_in(n: &Node, what: &str, d: &mut Diags) -> Option<Duration> {
    duration(n, what, MAX_START_IN, d)
}

/// `retry: 0..2` or `retry: {max, when, exit_codes}`.
pub(crate) fn retry(n: &Node, what: &str, d: &mut Diags) -> Retry {
    let mut r = Retry::default();
    let max_node = match &n.value {
        Value::Map(m) => {
            check_keys(m, what, &["max", "when", "exit_codes"], d);
            if let Some(e) = m.get("exit_codes").filter(|e| !e.value.is_null()) {
                r.exit_codes = Some(exit_code_list(&e.value, &format!("{what} `exit_codes`"), d));
            }
            if let Some(e) = m.get("when").filter(|e| !e.value.is_null()) {
                let whens = string_list(&e.value, &format!("{what} `when`"), d).unwrap_or_default();
                for (w, span) in whens.iter().zip(item_spans(&e.value)) {
                    if !RETRY_REASONS.contains(&w.as_str()) {
                        d.error(
                            &span,
                            format!("{what} `when`: `{w}` is not a failure reason"),
                        )
                        .help_opt(did_you_mean(w, RETRY_REASONS.iter().copied()));
                    }
                }
                r.when = whens;
            }
            m.get("max").map(|e| &e.value)
        }
        _ => Some(n),
    };
    if let Some(max) = max_node.filter(|m| !m.is_null()) {
        if let Some(v) = integer(max, &format!("{what} `max`"), d) {
            match u32::try_from(v) {
                Ok(v) if v <= 2 => r.max = v,
                _ => {
                    d.error(
                        &max.span,
                        format!("{what} must be 0, 1 or 2 (GitLab's limit), found {v}"),
                    );
                }
            }
        }
    }
    r
}

/// `allow_failure: {exit_codes: 1 | [1, 2]}`.
pub(crate) fn exit_codes(n: &Node, m: &crate::yaml::Map, what: &str, d: &mut Diags) -> Vec<i64> {
    check_keys(m, what, &["exit_codes"], d);
    let Some(e) = m.get("exit_codes") else {
        d.error(&n.span, format!("{what} as a map needs `exit_codes`"));
        return Vec::new();
    };
    exit_code_list(&e.value, &format!("{what} `exit_codes`"), d)
}

/// `exit_codes: 137` or `exit_codes: [137, 255]` (of `allow_failure` and `retry`).
fn exit_code_list(n: &Node, what: &str, d: &mut Diags) -> Vec<i64> {
    let items: Vec<&Node> = match &n.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![n],
    };
    items
        .into_iter()
        .filter_map(|i| integer(i, what, d).and_then(|v| i64::try_from(v).ok()))
        .collect()
}

/// `tags:` must be a list of strings in GitLab.
pub(crate) fn tags(n: &Node, what: &str, d: &mut Diags) -> Vec<String> {
    if !matches!(n.value, Value::Seq(_)) {
        d.error(
            &n.span,
            format!("{what} must be a list of strings, found {}", n.kind()),
        )
        .help("write `tags: [name]`");
        return Vec::new();
    }
    string_list(n, what, d).unwrap_or_default()
}

/// `coverage: /regex/` -> the regex without its slashes, checked.
pub(crate) fn coverage(n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    let text = string(n, what, d)?;
    let Some(pattern) = text
        .strip_prefix('/')
        .and_then(|t| t.strip_suffix('/'))
        .filter(|p| !p.is_empty())
    else {
        d.error(
            &n.span,
            format!("{what} must be a regular expression between slashes, found `{text}`"),
        )
        .help("write it like `coverage: '/Total: \\d+\\.\\d+%/'`");
        return None;
    };
    if let Err(e) = regex::Regex::new(pattern) {
        d.error(
            &n.span,
            format!("{what} is not a valid regular expression: {e}"),
        );
        return None;
    }
    Some(pattern.to_string())
}

/// `environment: name` or `{name, url, action, ...}` -> `(name, url)`. Both are recorded as
/// written; the runner expands them with the job's variables, as GitLab does.
pub(crate) fn environment(n: &Node, what: &str, d: &mut Diags) -> (Option<String>, Option<String>) {
    match &n.value {
        Value::Map(m) => {
            check_keys(
                m,
                what,
                &[
                    "name",
                    "url",
                    "on_stop",
                    "action",
                    "auto_stop_in",
                    "kubernetes",
                    "deployment_tier",
                ],
                d,
            );
            let url = m
                .get("url")
                .and_then(|e| string(&e.value, &format!("{what} `url`"), d));
            let name = match m.get("name") {
                Some(e) => string(&e.value, &format!("{what} `name`"), d),
                None => {
                    d.error(&n.span, format!("{what} needs `name`"));
                    None
                }
            };
            (name, url)
        }
        _ => (string(n, what, d), None),
    }
}

/// `services:` entries: `name` or `{name, alias, entrypoint, command, variables, pull_policy}`.
pub(crate) fn services(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Vec<Service> {
    let Value::Seq(items) = &n.value else {
        d.error(
            &n.span,
            format!("{what} must be a list, found {}", n.kind()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        if let Value::Scalar(s) = &item.value {
            out.push(Service {
                name: s.text.clone(),
                alias: Vec::new(),
                entrypoint: None,
                command: None,
                variables: Vec::new(),
                pull_policy: Vec::new(),
                span: item.span.clone(),
            });
            continue;
        }
        let Some(m) = item.as_map() else {
            d.error(
                &item.span,
                format!(
                    "{what} entries must be an image name or a map with `name`, found {}",
                    item.kind()
                ),
            );
            continue;
        };
        check_keys(
            m,
            what,
            &[
                "name",
                "alias",
                "entrypoint",
                "command",
                "variables",
                "pull_policy",
                "docker",
                "kubernetes",
            ],
            d,
        );
        for key in ["docker", "kubernetes"] {
            if let Some(e) = m.get(key) {
                unsupported.push((format!("services:{key}"), e.key_span.clone()));
            }
        }
        let Some(name) = m
            .get("name")
            .and_then(|e| string(&e.value, &format!("{what} `name`"), d))
        else {
            if !m.contains_key("name") {
                d.error(&item.span, format!("{what}: a service needs `name`"));
            }
            continue;
        };
        let opt_list = |key: &str, d: &mut Diags| {
            m.get(key)
                .filter(|e| !e.value.is_null())
                .and_then(|e| string_list(&e.value, &format!("{what} `{key}`"), d))
        };
        let alias = m
            .get("alias")
            .filter(|e| !e.value.is_null())
            .and_then(|e| string(&e.value, &format!("{what} `alias`"), d))
            .map(|a| {
                // GitLab accepts several aliases separated by commas or spaces.
                a.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let entrypoint = opt_list("entrypoint", d);
        let command = opt_list("command", d);
        let vars = m
            .get("variables")
            .map(|e| variables(&e.value, &format!("service `{name}`"), d))
            .unwrap_or_default();
        let pull_policy = m
            .get("pull_policy")
            .filter(|e| !e.value.is_null())
            .map(|e| pull_policies(&e.value, &format!("{what} `pull_policy`"), d))
            .unwrap_or_default();
        out.push(Service {
            name,
            alias,
            entrypoint,
            command,
            variables: vars,
            pull_policy,
            span: item.span.clone(),
        });
    }
    out
}

pub(crate) fn pull_policies(n: &Node, what: &str, d: &mut Diags) -> Vec<PullPolicy> {
    let list = string_list(n, what, d).unwrap_or_default();
    let mut out = Vec::new();
    for (p, span) in list.iter().zip(item_spans(n)) {
        match PullPolicy::parse(p) {
            Some(p) => out.push(p),
            None => {
                d.error(
                    &span,
                    format!("{what} must be always, if-not-present or never, found `{p}`"),
                )
                .help_opt(did_you_mean(p, ["always", "if-not-present", "never"]));
            }
        }
    }
    out
}

/// Keys of a `trigger: include:` entry that names a local file.
const TRIGGER_INCLUDE_KEYS: &[&str] = &["local", "inputs"];

/// `trigger:` -> a child pipeline from local files. Other projects and generated
/// configurations are recorded as unsupported.
pub(crate) fn trigger(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Trigger> {
    let m = match &n.value {
        // `trigger: group/project` is a multi-project pipeline.
        Value::Scalar(_) => {
            unsupported.push(("trigger:project".into(), n.span.clone()));
            return None;
        }
        Value::Map(m) => m,
        _ => {
            d.error(
                &n.span,
                format!("{what} must be a project path or a map, found {}", n.kind()),
            );
            return None;
        }
    };
    check_keys(
        m,
        what,
        &[
            "include", "project", "branch", "strategy", "forward", "inputs",
        ],
        d,
    );
    let mut depend = false;
    if let Some(e) = m.get("strategy").filter(|e| !e.value.is_null()) {
        match string(&e.value, &format!("{what} `strategy`"), d).as_deref() {
            Some("depend") => depend = true,
            Some("mirror") => depend = true,
            Some(other) => {
                d.error(
                    &e.value.span,
                    format!("{what} `strategy` must be `depend` or `mirror`, found `{other}`"),
                );
            }
            None => {}
        }
    }
    if let Some(e) = m.get("forward") {
        unsupported.push(("trigger:forward".into(), e.key_span.clone()));
    }
    if let Some(e) = m.get("project") {
        unsupported.push(("trigger:project".into(), e.key_span.clone()));
        if let Some(e) = m.get("inputs") {
            unsupported.push(("trigger:inputs".into(), e.key_span.clone()));
        }
        return None;
    }
    // `trigger:inputs` belongs to multi-project pipelines; GitLab refuses it next to `include`
    // (unknown key), since a child pipeline takes inputs per file.
    if let Some(e) = m.get("inputs") {
        d.error(
            &e.key_span,
            format!("`inputs` in {what} is only for multi-project pipelines (`trigger: project`)"),
        )
        .help("a child pipeline takes inputs per file: `include: [{local: child.yml, inputs: {NAME: value}}]`");
    }
    let Some(inc) = m.get("include") else {
        d.error(
            &n.span,
            format!("{what} needs `include` (a child pipeline) or `project`"),
        );
        return None;
    };
    let items: Vec<&Node> = match &inc.value.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![&inc.value],
    };
    let mut include = Vec::new();
    for item in items {
        match &item.value {
            Value::Scalar(s) => include.push(TriggerInclude {
                path: s.text.trim_start_matches('/').to_string(),
                span: item.span.clone(),
                inputs: None,
            }),
            Value::Map(im) => match im.get("local") {
                Some(e) => {
                    check_keys(
                        im,
                        &format!("an `include` entry in {what}"),
                        TRIGGER_INCLUDE_KEYS,
                        d,
                    );
                    let inputs = im.get("inputs").filter(|i| !i.value.is_null());
                    // The values are checked against the child's header when the child is
                    // loaded; their shape can be checked now, as GitLab does.
                    let inputs_ok = match inputs {
                        Some(i) if i.value.as_map().is_none() => {
                            d.error(
                                &i.value.span,
                                format!(
                                    "`inputs` of an `include` entry in {what} must be a map of input names to values, found {}",
                                    i.value.kind()
                                ),
                            );
                            false
                        }
                        _ => true,
                    };
                    if let Some(p) = string(&e.value, &format!("{what} `include` `local`"), d)
                        && inputs_ok
                    {
                        include.push(TriggerInclude {
                            path: p.trim_start_matches('/').to_string(),
                            span: e.value.span.clone(),
                            inputs: inputs.cloned().map(TriggerInputs),
                        });
                    }
                }
                // `artifact:` (generated child pipelines), `template:`, `project:`, `remote:`.
                None => {
                    let kind = im.keys().next().cloned().unwrap_or_default();
                    unsupported.push((format!("trigger:include:{kind}"), item.span.clone()));
                }
            },
            _ => {
                d.error(
                    &item.span,
                    format!(
                        "{what} `include` entries must be paths or maps, found {}",
                        item.kind()
                    ),
                );
            }
        }
    }
    if include.is_empty() {
        return None;
    }
    Some(Trigger {
        include,
        depend,
        span: n.span.clone(),
    })
}
