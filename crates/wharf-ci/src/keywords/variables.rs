//! `variables:` of a job or of the pipeline, values read as GitLab reads them.

use crate::diagnostic::Diags;
use crate::model::*;
use crate::read::*;
use crate::yaml::{Node, Psych, Value};

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
