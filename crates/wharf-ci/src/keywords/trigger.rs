//! `trigger:` -> a child pipeline from local files.

use crate::diagnostic::Diags;
use crate::model::*;
use crate::read::*;
use crate::span::Span;
use crate::yaml::{Node, Value};

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
