//! The resolved configuration tree back to YAML text (for `wharf config`), with saphyr's emitter.

use super::node::{Map, Node, Scalar, Value};
use super::number::Psych;
use saphyr::{Scalar as YScalar, ScalarStyle, Yaml};
use std::borrow::Cow;

/// The tree as block-style YAML, with a `# ...` comment line above each top-level key for which `note` (given the
/// file the key is written in) has something to say: where an included job came from.
pub(crate) fn to_yaml_annotated(
    root: &Map,
    note: &dyn Fn(&str) -> Option<String>,
) -> Result<String, saphyr::EmitError> {
    if root.is_empty() {
        return emit(root);
    }
    let mut out = String::new();
    let mut plain = Map::new();
    for (k, e) in root {
        match note(&e.key_span.file) {
            None => {
                plain.insert(k.clone(), e.clone());
            }
            Some(comment) => {
                // Keys emitted one by one read back as the same map: the top level is block style.
                if !plain.is_empty() {
                    out.push_str(&emit(&std::mem::take(&mut plain))?);
                }
                out.push_str(&format!("# {comment}\n"));
                let mut one = Map::new();
                one.insert(k.clone(), e.clone());
                out.push_str(&emit(&one)?);
            }
        }
    }
    if !plain.is_empty() {
        out.push_str(&emit(&plain)?);
    }
    Ok(out)
}

fn emit(root: &Map) -> Result<String, saphyr::EmitError> {
    let doc = map(root);
    let mut out = String::new();
    let mut emitter = saphyr::YamlEmitter::new(&mut out);
    emitter.multiline(true);
    emitter.dump(&doc)?;
    // The emitter writes a `---` header and no final newline.
    let body = out.strip_prefix("---\n").unwrap_or(&out).to_string();
    Ok(if body.ends_with('\n') {
        body
    } else {
        body + "\n"
    })
}

fn map(m: &Map) -> Yaml<'static> {
    let mut out = saphyr::Mapping::new();
    for (k, e) in m {
        out.insert(key(k), node(&e.value));
    }
    Yaml::Mapping(out)
}

/// Keys are written plain when that reads back as the same string (`.base`, `job 1/3`).
fn key(k: &str) -> Yaml<'static> {
    let scalar = Scalar {
        text: k.to_string(),
        plain: true,
    };
    let reads_as_string =
        matches!(scalar.psych(), Psych::Str) && !matches!(k, "~" | "null" | "Null" | "NULL" | "<<");
    if reads_as_string && plain_safe(k) {
        Yaml::Representation(Cow::Owned(k.to_string()), ScalarStyle::Plain, None)
    } else {
        Yaml::Value(YScalar::String(Cow::Owned(k.to_string())))
    }
}

fn node(n: &Node) -> Yaml<'static> {
    match &n.value {
        Value::Null => Yaml::Value(YScalar::Null),
        // Plain scalars are written as they were (so `1.10`, `yes` and `on` keep the meaning
        // GitLab gives them); their text cannot need quoting, since it was valid plain YAML.
        // Multi-line or indicator-leading text (possible only from flow context) is quoted.
        Value::Scalar(s) if s.plain && plain_safe(&s.text) => {
            Yaml::Representation(Cow::Owned(s.text.clone()), ScalarStyle::Plain, None)
        }
        Value::Scalar(s) => Yaml::Value(YScalar::String(Cow::Owned(s.text.clone()))),
        Value::Seq(items) => Yaml::Sequence(items.iter().map(node).collect()),
        Value::Map(m) => map(m),
        Value::Tagged(tag, inner) => {
            let (handle, suffix) = match tag.strip_prefix('!') {
                Some(rest) => ("!".to_string(), rest.to_string()),
                None => (String::new(), tag.clone()),
            };
            Yaml::Tagged(
                Cow::Owned(saphyr::Tag { handle, suffix }),
                Box::new(node(inner)),
            )
        }
    }
}

/// Whether `text`, read as a plain scalar in block context, is `text` again.
fn plain_safe(text: &str) -> bool {
    const INDICATORS: &[char] = &[
        ',', '[', ']', '{', '}', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`', ' ', '\t',
    ];
    // `-`, `?` and `:` start a plain scalar only when a non-space follows (`-1`, `-rf`).
    let dash_like =
        text.starts_with(['-', '?', ':']) && text.chars().nth(1).is_none_or(char::is_whitespace);
    let breaks = text.contains(['\n', '\r', '#', '\t']) || text.contains(": ");
    let bad_end = text.ends_with([':', ' ']);
    !text.is_empty() && !text.starts_with(INDICATORS) && !dash_like && !breaks && !bad_end
}
