//! `--variables-file` in YAML form: `KEY: value` or `KEY: {value, masked, type: file|env_var}`.

use crate::diagnostic::Diags;
use crate::model::FileVariable;
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
                    d.error(
                        &v.span,
                        format!(
                            "{what} must be a string, a number or a map with `value`, found {}",
                            v.kind()
                        ),
                    );
                }
            }
        }
    }
    out
}
