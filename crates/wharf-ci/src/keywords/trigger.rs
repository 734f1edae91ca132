//! `trigger:` -> a child pipeline from local files.

use crate::diagnostic::Diags;
use crate::model::*;
use crate::read::*;
use crate::span::Span;
use crate::yaml::{Map, Node, Value};

/// What a trigger job may hold: GitLab's `Bridge::ALLOWED_KEYS` and
/// `Processable::PROCESSABLE_ALLOWED_KEYS` (no `script`, `image`, `tags`, `retry`...).
const BRIDGE_KEYS: &[&str] = &[
    "trigger",
    "parallel",
    "extends",
    "stage",
    "only",
    "except",
    "rules",
    "variables",
    "inherit",
    "allow_failure",
    "when",
    "needs",
    "resource_group",
    "environment",
    "interruptible",
];

/// Whether GitLab reads job `m` (`extends` applied) as a trigger job (`Entry::Bridge`): it
/// has `trigger:` and neither `script:` nor `run:` (with one, it is an `Entry::Job`).
pub(crate) fn is_bridge(m: &Map) -> bool {
    m.contains_key("trigger") && !m.contains_key("script") && !m.contains_key("run")
}

/// Whether a trigger job inherits key `k` of `default:`: only what `Entry::Bridge` has an entry
/// for takes a default.
pub(crate) fn bridge_takes(k: &str) -> bool {
    BRIDGE_KEYS.contains(&k)
}

/// GitLab's checks of a trigger job `m` (`extends` applied, `default:` not): its keys, and the
/// `when`, `allow_failure` and `parallel` forms `Entry::Bridge` narrows; and `trigger:` beside
/// `script:` or `run:` in a job (`mutually_exclusive_keys`).
pub(crate) fn check_trigger_job(name: &str, m: &Map, d: &mut Diags) {
    if !m.contains_key("trigger") {
        return;
    }
    for other in ["script", "run"] {
        if let Some(e) = m.get(other) {
            d.error(
                &e.key_span,
                format!("job `{name}` has both `trigger` and `{other}` (GitLab refuses them together)"),
            )
            .help("a trigger job starts a downstream pipeline and runs no script of its own: move the script to another job");
            return;
        }
    }
    for (k, e) in m {
        if !BRIDGE_KEYS.contains(&k.as_str()) {
            d.error(
                &e.key_span,
                format!("trigger job `{name}` cannot use `{k}` (GitLab: \"config contains unknown keys\")"),
            )
            .help(format!(
                "a trigger job takes only {}; if `{k}` comes from `extends:`, keep it out of the template the trigger job extends",
                BRIDGE_KEYS.join(", ")
            ));
        }
    }
    if let Some(e) = set_entry(m, "when") {
        if let Value::Scalar(s) = &e.value.value {
            if !["on_success", "on_failure", "always", "manual"].contains(&s.text.as_str()) {
                d.error(
                    &e.value.span,
                    format!("`when` of trigger job `{name}` must be one of on_success, on_failure, always, manual, found `{}`", s.text),
                );
            }
        }
    }
    if let Some(e) = set_entry(m, "allow_failure") {
        if matches!(e.value.value, Value::Map(_)) {
            d.error(
                &e.value.span,
                format!("`allow_failure` of trigger job `{name}` must be true or false (GitLab takes no `exit_codes` there)"),
            );
        }
    }
    if let Some(e) = set_entry(m, "parallel") {
        if matches!(e.value.value, Value::Scalar(_)) {
            d.error(
                &e.value.span,
                format!("`parallel` of trigger job `{name}` must be `matrix:` (GitLab: cannot use \"parallel: <number>\")"),
            );
        }
    }
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
    if let Some(e) = set_entry(m, "strategy") {
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
                            inputs: inputs.map(|i| TriggerInputs {
                                key_span: i.key_span.clone(),
                                value: i.value.to_written(),
                            }),
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
