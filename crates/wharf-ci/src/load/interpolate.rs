//! `$[[ inputs.NAME | function ... ]]` interpolation in keys and values of a file whose header
//! declares inputs (see `load::inputs`): a value that is exactly one block takes the input's
//! typed value; a block inside a longer string is replaced by the value's text.

use super::options::LoadOptions;
use crate::diagnostic::Diags;
use crate::span::Span;
use crate::suggest::did_you_mean;
use crate::yaml::{Entry, Map, Node, Psych, Scalar, Value};
use indexmap::IndexMap;
use std::sync::LazyLock;

/// GitLab's limit on functions in one interpolation block.
const MAX_FUNCTIONS: usize = 3;

/// `$[[ <data> ]]` as GitLab's `Interpolation::Template` finds it (data: at least two
/// characters, trimmed, on one line).
static BLOCK: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"\$\[\[\s*(\S.*?\S)\s*\]\]").ok());

static TRUNCATE: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"^truncate\(\s*(\d+)\s*,\s*(\d+)\s*\)$").ok());

/// The text of a value inside a longer string: Ruby's `to_s` of what GitLab loaded.
pub(super) fn to_text(n: &Node) -> String {
    match &n.value {
        Value::Null => String::new(),
        Value::Scalar(s) => s.ruby_text(),
        _ => inspect(n),
    }
}

/// Ruby's `inspect` (what `to_s` gives for arrays and hashes): `["a", 1, true, nil]`.
fn inspect(n: &Node) -> String {
    match &n.value {
        Value::Null => "nil".into(),
        Value::Scalar(s) => match s.psych() {
            Psych::Str => format!("{:?}", s.text),
            _ => s.ruby_text(),
        },
        Value::Seq(items) => format!(
            "[{}]",
            items.iter().map(inspect).collect::<Vec<_>>().join(", ")
        ),
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, e)| format!("{k:?} => {}", inspect(&e.value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Tagged(_, inner) => inspect(inner),
    }
}

/// Ruby's `Shellwords.escape`: a backslash before every character that is not
/// `[A-Za-z0-9_\-.,:+/@\n]`, newlines quoted as `'\n'`, and `''` for the empty string.
fn posix_escape(s: &str) -> String {
    if s.is_empty() {
        return "''".into();
    }
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("'\n'"),
            c if c.is_ascii_alphanumeric() || "_-.,:+/@".contains(c) => out.push(c),
            c => {
                out.push('\\');
                out.push(c);
            }
        }
    }
    out
}

/// Whether `text` uses the variable `name` as `$name` or `${name}`.
fn references(text: &str, name: &str) -> bool {
    text.contains(&format!("${{{name}}}"))
        || text.match_indices(&format!("${name}")).any(|(i, m)| {
            !text[i + m.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        })
}

pub(super) struct Interpolator<'a, 'd> {
    pub values: &'a IndexMap<String, Node>,
    pub options: &'a LoadOptions,
    pub d: &'d mut Diags,
}

/// The result of one block.
enum Block {
    Value(Node),
    /// `$[[ matrix.X ]]`: not ours, kept as written.
    Keep,
}

impl Interpolator<'_, '_> {
    pub fn node(&mut self, n: Node) -> Node {
        let span = n.span;
        let value = match n.value {
            Value::Scalar(s) if s.text.contains("$[[") && s.psych() == Psych::Str => {
                return self.scalar(s, span);
            }
            Value::Seq(items) => Value::Seq(items.into_iter().map(|i| self.node(i)).collect()),
            Value::Map(m) => Value::Map(self.map(m)),
            Value::Tagged(tag, inner) => Value::Tagged(tag, Box::new(self.node(*inner))),
            other => other,
        };
        Node { span, value }
    }

    fn map(&mut self, m: Map) -> Map {
        let mut out = Map::new();
        for (k, e) in m {
            let key = if k.contains("$[[") {
                self.text(&k, &e.key_span)
            } else {
                k
            };
            let value = self.node(e.value);
            if out.contains_key(&key) {
                self.d.error(
                    &e.key_span,
                    format!("duplicate key `{key}` in mapping after interpolating inputs"),
                );
                continue;
            }
            out.insert(
                key,
                Entry {
                    key_span: e.key_span,
                    value,
                },
            );
        }
        out
    }

    /// A string scalar with blocks: exactly one block takes the typed value; otherwise text.
    fn scalar(&mut self, s: Scalar, span: Span) -> Node {
        let whole = BLOCK
            .as_ref()
            .and_then(|re| re.find(&s.text))
            .filter(|m| m.start() == 0 && m.end() == s.text.len());
        if let Some(m) = whole {
            return match self.block(m.as_str(), &span) {
                Some(Block::Value(mut v)) => {
                    v.span = span;
                    v
                }
                Some(Block::Keep) | None => Node {
                    span,
                    value: Value::Scalar(s),
                },
            };
        }
        let text = self.text(&s.text, &span);
        Node {
            span,
            value: Value::Scalar(Scalar {
                text,
                plain: s.plain,
            }),
        }
    }

    /// Every block in `text` replaced by its value's text.
    fn text(&mut self, text: &str, span: &Span) -> String {
        let Some(re) = BLOCK.as_ref() else {
            return text.to_string();
        };
        let mut out = String::new();
        let mut last = 0;
        for m in re.find_iter(text) {
            out.push_str(&text[last..m.start()]);
            match self.block(m.as_str(), span) {
                Some(Block::Value(v)) => out.push_str(&to_text(&v)),
                Some(Block::Keep) | None => out.push_str(m.as_str()),
            }
            last = m.end();
        }
        out.push_str(&text[last..]);
        out
    }

    /// One `$[[ access | function ... ]]` block; `None` after reporting at `span`.
    fn block(&mut self, block: &str, span: &Span) -> Option<Block> {
        let data = block
            .trim_start_matches("$[[")
            .trim_end_matches("]]")
            .trim();
        let mut parts = data.split('|').map(str::trim);
        let access = parts.next().unwrap_or_default();
        let functions: Vec<&str> = parts.collect();
        let objects: Vec<&str> = access.split('.').collect();
        if objects.first() == Some(&"matrix") {
            return Some(Block::Keep);
        }
        let fail = |d: &mut Diags, message: String| {
            d.error(span, format!("in `{block}`: {message}"));
            None
        };
        if objects.len() <= 1 {
            return fail(
                self.d,
                "invalid interpolation access pattern (write `inputs.NAME`)".into(),
            );
        }
        if objects[0] != "inputs" {
            return fail(
                self.d,
                format!("unknown interpolation key: `{}`", objects[0]),
            );
        }
        let Some(value) = self.values.get(objects[1]) else {
            let help = did_you_mean(objects[1], self.values.keys().map(String::as_str));
            self.d
                .error(
                    span,
                    format!(
                        "in `{block}`: unknown interpolation key: `{}` (the header defines no such input)",
                        objects[1]
                    ),
                )
                .help_opt(help);
            return None;
        };
        if let Some(extra) = objects.get(2) {
            return fail(self.d, format!("unknown interpolation key: `{extra}`"));
        }
        if functions.len() > MAX_FUNCTIONS {
            return fail(
                self.d,
                format!("too many functions in interpolation block (at most {MAX_FUNCTIONS})"),
            );
        }
        let mut value = value.clone();
        for f in functions {
            let text = match &value.value {
                Value::Scalar(s) if s.psych() == Psych::Str => s.text.clone(),
                _ => {
                    let name = f.split('(').next().unwrap_or(f);
                    return fail(
                        self.d,
                        format!("invalid input type: `{name}` can only be used with string inputs"),
                    );
                }
            };
            let result = if f == "expand_vars" {
                if let Some(secret) = self
                    .options
                    .masked
                    .iter()
                    .find(|name| references(&text, name))
                {
                    return fail(
                        self.d,
                        format!(
                            "`expand_vars` cannot expand the masked variable `{secret}`: its value would end up in the configuration"
                        ),
                    );
                }
                super::variables::expand_vars(&text, &self.options.variables)
            } else if f == "posix_escape" {
                posix_escape(&text)
            } else if let Some(c) = TRUNCATE.as_ref().and_then(|re| re.captures(f)) {
                let offset: usize = c[1].parse().unwrap_or(usize::MAX);
                let length: usize = c[2].parse().unwrap_or(usize::MAX);
                text.chars().skip(offset).take(length).collect()
            } else {
                return fail(
                    self.d,
                    format!(
                        "no function matching `{f}`: the functions are `expand_vars`, `truncate(offset,length)` and `posix_escape`"
                    ),
                );
            };
            value = Node {
                span: value.span,
                value: Value::Scalar(Scalar {
                    text: result,
                    plain: false,
                }),
            };
        }
        Some(Block::Value(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_references_are_found_by_whole_name() {
        assert!(references("a-$TOKEN-b", "TOKEN"));
        assert!(references("${TOKEN}x", "TOKEN"));
        assert!(references("$TOKEN", "TOKEN"));
        assert!(!references("$TOKENS", "TOKEN"));
        assert!(!references("$MY_TOKEN", "TOKEN"));
        assert!(references("$TOKENS $TOKEN", "TOKEN"));
    }

    #[test]
    fn posix_escape_is_rubys_shellwords_escape() {
        assert_eq!(posix_escape(""), "''");
        assert_eq!(posix_escape("a-b_c.d,e:f+g/h@i"), "a-b_c.d,e:f+g/h@i");
        assert_eq!(
            posix_escape("it's \"x\"  $y"),
            "it\\'s\\ \\\"x\\\"\\ \\ \\$y"
        );
        assert_eq!(posix_escape("a\nb"), "a'\n'b");
    }
}
