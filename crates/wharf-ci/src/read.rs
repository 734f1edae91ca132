//! The read layer: generic readers of YAML nodes (a string, a list of strings, a script, a
//! boolean, one of a few words, a map with known keys, an integer). Each reports what is wrong
//! at the value's own position and returns `None`, so callers carry on and one run shows every
//! problem.

use crate::diagnostic::Diags;
use crate::span::Span;
use crate::suggest::did_you_mean;
use crate::yaml::{Entry, Map, Node, Psych, Value};

/// GitLab allows script arrays nested this deep (they come from anchors of lists).
const MAX_SCRIPT_NESTING: usize = 10;

pub(crate) fn string(n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    match &n.value {
        // A plain `yes` in a script line is text to the shell, not a boolean: keep what is written.
        Value::Scalar(s) => Some(s.text.clone()),
        _ => {
            d.error(
                &n.span,
                format!("{what} must be a string, found {}", n.kind()),
            );
            None
        }
    }
}

/// A string where GitLab's entry says `type: String`: a plain number or boolean is refused
/// (Psych does not read it as a string), where [`string`] keeps what is written.
pub(crate) fn typed_string(n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    typed_string_as(n, what, "a string", d)
}

/// [`typed_string`], whose message names what is wanted (`"a ref"`, `"an image name"`).
pub(crate) fn typed_string_as(n: &Node, what: &str, wanted: &str, d: &mut Diags) -> Option<String> {
    if let Value::Scalar(s) = &n.value {
        if !typed_as_string(n, s, what, wanted, "", d) {
            return None;
        }
    }
    string(n, what, d)
}

/// The entries of `m` that are set: GitLab reads `key:` (null) as if the key were not written.
pub(crate) fn set_entries(m: &Map) -> impl Iterator<Item = (&String, &Entry)> {
    m.iter().filter(|(_, e)| !e.value.is_null())
}

/// Entry `key` of `m` if it is set (see [`set_entries`]).
pub(crate) fn set_entry<'m>(m: &'m Map, key: &str) -> Option<&'m Entry> {
    m.get(key).filter(|e| !e.value.is_null())
}

/// A list of strings where GitLab takes nothing else (its `array_of_strings` validator): a
/// lone string is refused, with how to write it as a list.
pub(crate) fn strict_string_list(n: &Node, what: &str, d: &mut Diags) -> Option<Vec<String>> {
    if let Value::Scalar(s) = &n.value {
        d.error(
            &n.span,
            format!("{what} must be a list of strings, found {}", n.kind()),
        )
        .help(format!("write it as a list: `[{}]`", s.text));
        return None;
    }
    strings(n, what, "a list of strings", d)
}

/// A string or a list of strings.
pub(crate) fn string_list(n: &Node, what: &str, d: &mut Diags) -> Option<Vec<String>> {
    strings(n, what, "a string or a list of strings", d)
}

/// A lone string as a one-item list, or a list of strings; `wanted` names what the caller
/// takes, for the messages. As in GitLab's validators (`validate_string`: a `String` or a
/// `Symbol`), a number or a boolean is not a string.
fn strings(n: &Node, what: &str, wanted: &str, d: &mut Diags) -> Option<Vec<String>> {
    match &n.value {
        Value::Scalar(s) => {
            typed_as_string(n, s, what, wanted, "", d).then(|| vec![s.text.clone()])
        }
        Value::Seq(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for item in items {
                match &item.value {
                    Value::Scalar(s) => {
                        if typed_as_string(item, s, what, wanted, " in the list", d) {
                            out.push(s.text.clone());
                        } else {
                            ok = false;
                        }
                    }
                    _ => {
                        ok = false;
                        d.error(
                            &item.span,
                            format!("{what} must be {wanted}, found {} in the list", item.kind()),
                        );
                    }
                }
            }
            ok.then_some(out)
        }
        _ => {
            d.error(
                &n.span,
                format!("{what} must be {wanted}, found {}", n.kind()),
            );
            None
        }
    }
}

/// Whether GitLab reads scalar `s` (at `n`) as a string; if not, says so: a plain `1.0`,
/// `42` or `yes` is a number or a boolean to Psych, and GitLab's string validators refuse it.
pub(crate) fn typed_as_string(
    n: &Node,
    s: &crate::yaml::Scalar,
    what: &str,
    wanted: &str,
    place: &str,
    d: &mut Diags,
) -> bool {
    let kind = match s.psych() {
        Psych::Str => return true,
        Psych::Bool(_) => "a boolean",
        Psych::Int(_) | Psych::Float(_) => "a number",
    };
    d.error(
        &n.span,
        format!(
            "{what} must be {wanted}, found `{}` ({kind} to GitLab's YAML reader){place}",
            s.text
        ),
    )
    .help(format!("quote it to keep the text: `'{}'`", s.text));
    false
}

/// `script`-like: a string, or a list whose items are strings or (from anchors) nested lists,
/// which GitLab flattens.
pub(crate) fn script(n: &Node, what: &str, d: &mut Diags) -> Option<Vec<String>> {
    fn walk(n: &Node, what: &str, depth: usize, out: &mut Vec<String>, d: &mut Diags) -> bool {
        match &n.value {
            // GitLab's `Commands` takes strings only: `- true` is a boolean, `- 1` a number.
            Value::Scalar(s) if s.psych() != Psych::Str => {
                typed_as_string(n, s, what, "a string or a list of strings", "", d)
            }
            Value::Scalar(s) => {
                out.push(s.text.clone());
                true
            }
            Value::Seq(items) if depth < MAX_SCRIPT_NESTING => {
                let mut ok = true;
                for item in items {
                    ok &= walk(item, what, depth + 1, out, d);
                }
                ok
            }
            Value::Seq(_) => {
                d.error(
                    &n.span,
                    format!("{what} is nested more than {MAX_SCRIPT_NESTING} lists deep"),
                );
                false
            }
            Value::Map(m) => {
                let e = d.error(
                    &n.span,
                    format!("{what} must be a string or a list of strings, found a map"),
                );
                // The usual cause: an unquoted `: ` inside a command line.
                if depth > 0 && m.len() == 1 {
                    e.help("a line containing `: ` is read as a map; quote the whole line");
                }
                false
            }
            _ => {
                d.error(
                    &n.span,
                    format!(
                        "{what} must be a string or a list of strings, found {}",
                        n.kind()
                    ),
                );
                false
            }
        }
    }
    let mut out = Vec::new();
    walk(n, what, 0, &mut out, d).then_some(out)
}

pub(crate) fn boolean(n: &Node, what: &str, d: &mut Diags) -> Option<bool> {
    match &n.value {
        Value::Scalar(s) if s.as_bool().is_some() => s.as_bool(),
        _ => {
            d.error(
                &n.span,
                format!("{what} must be true or false, found {}", describe(n)),
            );
            None
        }
    }
}

/// One of a fixed set of words.
pub(crate) fn one_of<T: Copy>(
    n: &Node,
    what: &str,
    choices: &[(&str, T)],
    d: &mut Diags,
) -> Option<T> {
    let text = string(n, what, d)?;
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == text) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    d.error(
        &n.span,
        format!("{what} must be one of {}, found `{text}`", names.join(", ")),
    )
    .help_opt(did_you_mean(&text, names.iter().copied()));
    None
}

/// How a value is shown in "found X" messages: a scalar as written, else its kind.
pub(crate) fn describe(n: &Node) -> String {
    match &n.value {
        Value::Scalar(s) => format!("`{}`", s.text),
        _ => n.kind(),
    }
}

pub(crate) fn map<'a>(n: &'a Node, what: &str, d: &mut Diags) -> Option<&'a Map> {
    let m = n.as_map();
    if m.is_none() {
        d.error(&n.span, format!("{what} must be a map, found {}", n.kind()));
    }
    m
}

/// Report keys of `m` outside `known`, with a did-you-mean.
pub(crate) fn check_keys(m: &Map, what: &str, known: &[&str], d: &mut Diags) {
    for (k, e) in m {
        if !known.contains(&k.as_str()) {
            d.error(&e.key_span, format!("unknown key `{k}` in {what}"))
                .help_opt(did_you_mean(k, known.iter().copied()));
        }
    }
}

/// Spans of the items of a list (or of the scalar itself), aligned with `string_list` output.
pub(crate) fn item_spans(n: &Node) -> Vec<Span> {
    match &n.value {
        Value::Seq(items) => items.iter().map(|i| i.span.clone()).collect(),
        _ => vec![n.span.clone()],
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

/// The items of a list with nested lists spliced in, as Ruby's `[config].flatten` gives them
/// (GitLab's `needs:` and `cache:`): a list built from an alias that is itself a list
/// (`needs: [*common, build]`) reads as one flat list. A value that is not a list is one item.
pub(crate) fn flattened(n: &Node) -> Vec<&Node> {
    let mut out = Vec::new();
    let mut stack = vec![n];
    while let Some(node) = stack.pop() {
        match &node.value {
            Value::Seq(items) => stack.extend(items.iter().rev()),
            _ => out.push(node),
        }
    }
    out
}
