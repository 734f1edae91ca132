//! `--variables-file` in YAML form: `KEY: value` or `KEY: {value, masked, type: file|env_var}`.

use super::variables::not_a_variable_value;
use crate::diagnostic::Diags;
use crate::model::{FileVariable, MAX_VARIABLE_NAME_LEN, is_variable_name};
use crate::read::{boolean, string};
use crate::suggest::did_you_mean;
use crate::yaml::{self, Value};

const KEYS: &[&str] = &["value", "masked", "type", "description"];

pub(crate) fn parse(name: &str, text: &str, d: &mut Diags) -> Vec<FileVariable> {
    let Some(docs) = yaml::parse(name, text, &crate::limits::Limits::default(), d) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for doc in &docs {
        let m = match &doc.value {
            Value::Map(m) => m,
            // An empty file defines nothing.
            Value::Null => continue,
            _ => {
                d.error(
                    &doc.span,
                    format!(
                        "a variables file must be a map of `NAME: value`, found {}",
                        doc.kind()
                    ),
                );
                continue;
            }
        };
        for (var, e) in m {
            if !is_variable_name(var) {
                // A file variable's name becomes a file name: `../x` must never get that far.
                d.error(
                    &e.key_span,
                    format!(
                        "`{}` is not a valid variable name: GitLab allows letters, digits and `_` only, at most {MAX_VARIABLE_NAME_LEN} characters",
                        var.chars().take(64).collect::<String>()
                    ),
                );
                continue;
            }
            let what = format!("variable `{var}`");
            let v = &e.value;
            match &v.value {
                Value::Scalar(s) => out.push(FileVariable {
                    name: var.clone(),
                    value: s.text.clone(),
                    masked: false,
                    file: false,
                }),
                Value::Map(vm) => {
                    for (k, ke) in vm {
                        if !KEYS.contains(&k.as_str()) {
                            d.error(&ke.key_span, format!("unknown key `{k}` in {what}"))
                                .help_opt(did_you_mean(k, KEYS.iter().copied()));
                        }
                    }
                    let value = match vm.get("value") {
                        Some(x) => string(&x.value, &format!("{what} value"), d),
                        None => {
                            d.error(&e.key_span, format!("{what} has no `value`"));
                            None
                        }
                    };
                    let masked = match vm.get("masked") {
                        Some(x) => boolean(&x.value, &format!("{what} `masked`"), d),
                        None => Some(false),
                    };
                    let file = match vm.get("type") {
                        None => Some(false),
                        Some(x) => {
                            match string(&x.value, &format!("{what} `type`"), d).as_deref() {
                                Some("file") => Some(true),
                                Some("env_var") => Some(false),
                                Some(other) => {
                                    d.error(
                                    &x.value.span,
                                    format!("{what} `type` must be `file` or `env_var`, found `{other}`"),
                                );
                                    None
                                }
                                None => None,
                            }
                        }
                    };
                    if let (Some(value), Some(masked), Some(file)) = (value, masked, file) {
                        out.push(FileVariable {
                            name: var.clone(),
                            value,
                            masked,
                            file,
                        });
                    }
                }
                _ => {
                    not_a_variable_value(v, &what, d);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_outside_gitlab_grammar_are_refused_at_their_key() {
        let long = "A".repeat(256);
        let text = format!(
            "GOOD: {{value: v, type: file}}\n\"../../x\": {{value: v, type: file}}\n\"a/b\": v\n{long}: v\n\"\": v\n"
        );
        let e = crate::parse_variables_yaml("v.yml", &text).unwrap_err();
        let got: Vec<String> =
            e.0.iter()
                .map(|d| {
                    let s = d.span.as_ref().unwrap();
                    format!("{}:{}:{}", s.file, s.line, s.column)
                })
                .collect();
        assert_eq!(got, ["v.yml:2:1", "v.yml:3:1", "v.yml:4:1", "v.yml:5:1"]);
        assert!(
            e.0[0]
                .message
                .contains("`../../x` is not a valid variable name"),
            "{}",
            e.0[0].message
        );
        let ok = crate::parse_variables_yaml("v.yml", &format!("{}: v\n", &long[1..])).unwrap();
        assert_eq!(ok.len(), 1);
    }
}
