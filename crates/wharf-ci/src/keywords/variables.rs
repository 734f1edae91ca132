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
                    // GitLab: `validates :config_options, array_of_strings: true`.
                    strict_string_list(&o.value, &format!("{what} `options`"), d);
                }
                (value, expand)
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
