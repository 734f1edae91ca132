//! `variables:` of a job or of the pipeline, values read as GitLab reads them.

use crate::diagnostic::Diags;
use crate::model::*;
use crate::read::*;
use crate::yaml::{Node, Psych, Value};

/// Where a `variables:` is written: GitLab's `Variable` takes different data keys in each
/// (`allowed_value_data`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The top level: `value`, `description`, `expand`, `options`.
    Global,
    /// A job: `value` and `expand` (`Processable`).
    Job,
    /// A rule or a service: plain values only ("must be a string").
    PlainOnly,
}

/// `variables:`: `NAME: scalar` or `NAME: {value, description, expand, options}` where `scope`
/// takes those keys (`scope_name` names it in messages).
pub(crate) fn variables(n: &Node, scope_name: &str, scope: Scope, d: &mut Diags) -> Vec<Variable> {
    if n.is_null() {
        return Vec::new();
    }
    let Some(m) = map(n, &format!("{scope_name} variables"), d) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, e) in m {
        let what = format!("variable `{name}`");
        let v = &e.value;
        let (value, expand) = match &v.value {
            Value::Scalar(s) => (variable_value(s, &e.value, &what, d), Some(true)),
            Value::Map(_) if scope == Scope::PlainOnly => {
                d.error(
                    &v.span,
                    format!("{what} of {scope_name} must be a string (GitLab takes `value:` maps only in `variables:` of the pipeline and of jobs)"),
                );
                (None, None)
            }
            Value::Map(vm) => {
                let keys: &[&str] = match scope {
                    Scope::Global => &["value", "description", "expand", "options"],
                    _ => &["value", "expand"],
                };
                for (k, ke) in vm {
                    if !keys.contains(&k.as_str())
                        && ["description", "options"].contains(&k.as_str())
                    {
                        d.error(
                            &ke.key_span,
                            format!("{what} of {scope_name} cannot have `{k}` (GitLab: \"uses invalid data keys\"); only the pipeline's `variables:` can"),
                        );
                    }
                }
                let known: Vec<&str> = keys
                    .iter()
                    .chain(["description", "options"].iter())
                    .copied()
                    .collect();
                check_keys(vm, &what, &known, d);
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
                if let Some(o) = vm.get("options").filter(|_| scope == Scope::Global) {
                    // GitLab: `validates :config_options, array_of_strings: true`, and "value
                    // must be present in options".
                    let options = strict_string_list(&o.value, &format!("{what} `options`"), d);
                    if let (Some(options), Some(value)) = (options, &value) {
                        if !options.is_empty() && !options.contains(value) {
                            d.error(
                                &o.value.span,
                                format!("{what} `options` must include its value `{value}` (GitLab: \"value must be present in options\")"),
                            );
                        }
                    }
                }
                (value, expand)
            }
            // A null reads as `{}` there, which a rule's or a service's variable refuses.
            Value::Null if scope == Scope::PlainOnly => {
                d.error(
                    &v.span,
                    format!("{what} of {scope_name} has no value (GitLab: \"must be a string\")"),
                )
                .help("write `\"\"` for an empty value");
                (None, None)
            }
            Value::Null => {
                // GitLab turns nil into "" (Ruby's `nil.to_s`). A written `null` or `~` reads as
                // an empty value, which may not be what was meant.
                if v.span.len > 0 {
                    d.warning(
                        &v.span,
                        format!("GitLab reads this null as the empty string, so {what} is \"\""),
                    )
                    .help("write `\"\"` for an empty value, or quote the text");
                }
                (Some(String::new()), Some(true))
            }
            _ => {
                not_a_variable_value(v, &what, d);
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
/// `to_s` (`1.10` -> "1.1", `010` -> "8", `yes` -> "true"), with a warning when that differs from
/// what is written.
/// The error for a variable whose value has a shape GitLab does not take; `variables:` and a
/// variables file (variables_file.rs) word it alike.
pub(super) fn not_a_variable_value(v: &Node, what: &str, d: &mut Diags) {
    d.error(
        &v.span,
        format!(
            "{what} must be a string, a number or a map with `value`, found {}",
            v.kind()
        ),
    );
}

fn variable_value(s: &crate::yaml::Scalar, n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    match s.psych() {
        Psych::Bool(_) => {
            let text = s.ruby_text();
            if text != s.text {
                d.warning(
                    &n.span,
                    format!(
                        "GitLab reads `{}` as the boolean {text}, so {what} is \"{text}\"",
                        s.text
                    ),
                )
                .help(format!("quote it to keep the text: \"{}\"", s.text));
            }
            Some(text)
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
