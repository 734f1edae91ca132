//! `inherit:` (which `default:` keywords and global variables a job takes).

use super::table::default_keywords;
use crate::diagnostic::Diags;
use crate::read::*;
use crate::suggest::did_you_mean;
use crate::yaml::{Entry, Node, Value};

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
            Some(&default_keywords().collect::<Vec<_>>()),
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
