//! `!reference [key, key, ...]`, resolved as GitLab does: after `include` and `extends`, by
//! looking the path up in the whole configuration (any top-level key, hidden jobs included, with
//! their `extends` applied). A referenced value may itself hold references, up to
//! `MAX_NESTING` levels; cycles are errors that show the chain.
//!
//! A reference stands for its value where it is written, so a list referenced inside a list
//! stays nested; `script`-like keywords flatten nested lists anyway (as GitLab does), and lists
//! in `rules:` are spliced in here, since GitLab flattens rules too.

use crate::diagnostic::Diags;
use crate::suggest::did_you_mean;
use crate::yaml::{Map, Node, Value};

/// GitLab's limit on references inside referenced values.
pub(crate) const MAX_NESTING: usize = 10;

pub(crate) const TAG: &str = "!reference";

/// Replace every `!reference` in `root` by the value it points to.
pub(crate) fn resolve(root: &mut Map, d: &mut Diags) {
    if !root.values().any(|e| has_reference(&e.value)) {
        return;
    }
    // Look-ups see the configuration as it was before any replacement, like GitLab's resolver,
    // which reads the extended configuration and resolves each value it finds on its own.
    let lookup = root.clone();
    let mut r = Resolver {
        root: &lookup,
        stack: Vec::new(),
        d,
    };
    for (key, e) in root.iter_mut() {
        if has_reference(&e.value) {
            e.value = r.walk(&e.value, key == "rules");
        }
    }
}

fn has_reference(n: &Node) -> bool {
    match &n.value {
        Value::Tagged(tag, inner) => tag == TAG || has_reference(inner),
        Value::Seq(items) => items.iter().any(has_reference),
        Value::Map(m) => m.values().any(|e| has_reference(&e.value)),
        Value::Null | Value::Scalar(_) => false,
    }
}

struct Resolver<'a, 'd> {
    root: &'a Map,
    /// References being resolved, outermost first (for cycles and the nesting limit).
    stack: Vec<Vec<String>>,
    d: &'d mut Diags,
}

impl Resolver<'_, '_> {
    /// `n` with its references resolved. `splice` is set for the items of a `rules:` list.
    fn walk(&mut self, n: &Node, splice: bool) -> Node {
        let value = match &n.value {
            Value::Tagged(tag, inner) if tag == TAG => return self.reference(n, inner),
            Value::Tagged(tag, inner) => {
                Value::Tagged(tag.clone(), Box::new(self.walk(inner, false)))
            }
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let is_ref = matches!(&item.value, Value::Tagged(t, _) if t == TAG);
                    let resolved = self.walk(item, false);
                    match resolved.value {
                        Value::Seq(inner) if splice && is_ref => out.extend(inner),
                        _ => out.push(resolved),
                    }
                }
                Value::Seq(out)
            }
            Value::Map(m) => {
                let mut out = m.clone();
                for (k, e) in out.iter_mut() {
                    if has_reference(&e.value) {
                        e.value = self.walk(&e.value, k == "rules");
                    }
                }
                Value::Map(out)
            }
            Value::Null | Value::Scalar(_) => return n.clone(),
        };
        Node {
            span: n.span.clone(),
            value,
        }
    }

    /// The value of one `!reference` tag (written at `n`, with `inner` its list of keys), or
    /// null after an error.
    fn reference(&mut self, n: &Node, inner: &Node) -> Node {
        let null = Node {
            span: n.span.clone(),
            value: Value::Null,
        };
        let Some(path) = path_of(inner) else {
            self.d
                .error(
                    &n.span,
                    format!("`!reference` needs a list of keys, found {}", inner.kind()),
                )
                .help("write it as `!reference [.job, script]`");
            return null;
        };
        let shown = format!("!reference [{}]", path.join(", "));
        if self.stack.contains(&path) {
            let chain: Vec<String> = self
                .stack
                .iter()
                .chain(std::iter::once(&path))
                .map(|p| format!("[{}]", p.join(", ")))
                .collect();
            self.d.error(
                &n.span,
                format!("circular `!reference`: {}", chain.join(" -> ")),
            );
            return null;
        }
        if self.stack.len() >= MAX_NESTING {
            self.d.error(
                &n.span,
                format!(
                    "`{shown}` is nested more than {MAX_NESTING} references deep (GitLab's limit)"
                ),
            );
            return null;
        }
        let Some(found) = self.find(&path, n) else {
            return null;
        };
        self.stack.push(path);
        let resolved = self.walk(&found, false);
        self.stack.pop();
        resolved
    }

    /// The node at `path`, or `None` after an error naming the first key that is missing.
    fn find(&mut self, path: &[String], at: &Node) -> Option<Node> {
        let shown = format!("!reference [{}]", path.join(", "));
        let mut map = self.root;
        for (i, key) in path.iter().enumerate() {
            let Some(e) = map.get(key) else {
                let message = if i == 0 {
                    format!("`{shown}`: there is no job or keyword `{key}`")
                } else {
                    format!("`{shown}`: `{}` has no `{key}`", path[..i].join("."))
                };
                self.d
                    .error(&at.span, message)
                    .help_opt(did_you_mean(key, map.keys().map(String::as_str)));
                return None;
            };
            if i + 1 == path.len() {
                return Some(e.value.clone());
            }
            match &e.value.value {
                Value::Map(m) => map = m,
                _ => {
                    self.d.error(
                        &at.span,
                        format!(
                            "`{shown}`: `{}` is {}, not a map with `{}`",
                            path[..=i].join("."),
                            e.value.kind(),
                            path[i + 1]
                        ),
                    );
                    return None;
                }
            }
        }
        None
    }
}

/// The keys of a `!reference` (a non-empty list of scalars).
fn path_of(inner: &Node) -> Option<Vec<String>> {
    let Value::Seq(items) = &inner.value else {
        return None;
    };
    let keys: Option<Vec<String>> = items
        .iter()
        .map(|i| match &i.value {
            Value::Scalar(s) => Some(s.text.clone()),
            _ => None,
        })
        .collect();
    keys.filter(|k| !k.is_empty())
}
