//! The span-carrying YAML tree, and how Psych (GitLab) types its scalars.

use super::number::{Psych, psych_number, ruby_float};
use crate::model::{Written, WrittenValue};
use crate::span::Span;
use indexmap::IndexMap;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Map),
    /// A non-core tag such as `!reference`, with the tagged node.
    Tagged(String, Box<Node>),
}

/// A scalar as written. `plain` is false for quoted, block and `!!str` scalars: those are always
/// strings, while plain ones may read as booleans or numbers depending on the field.
#[derive(Debug, Clone)]
pub(crate) struct Scalar {
    pub text: String,
    pub plain: bool,
}

impl Scalar {
    /// YAML 1.1 booleans as Psych (GitLab) reads them: case-insensitive yes/no/true/false/on/off.
    pub fn as_bool(&self) -> Option<bool> {
        if !self.plain {
            return None;
        }
        match self.text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Some(true),
            "false" | "no" | "off" => Some(false),
            _ => None,
        }
    }
}

impl Scalar {
    /// What Psych makes of this scalar (null is [`Value::Null`], never a scalar).
    pub fn psych(&self) -> Psych {
        if !self.plain {
            return Psych::Str;
        }
        if let Some(b) = self.as_bool() {
            return Psych::Bool(b);
        }
        psych_number(&self.text).unwrap_or(Psych::Str)
    }

    /// The text GitLab sees when it turns this value into a string (Ruby's `to_s` of what Psych
    /// loaded): `1.10` is the float 1.1 and becomes "1.1", `010` is octal 8, `1_000` is 1000,
    /// `1:30` is sexagesimal 90.
    pub fn ruby_text(&self) -> String {
        match self.psych() {
            Psych::Bool(b) => b.to_string(),
            Psych::Int(i) => i.to_string(),
            Psych::Float(f) => ruby_float(f),
            Psych::Str => self.text.clone(),
        }
    }
}

/// A mapping with string keys, in file order.
pub(crate) type Map = IndexMap<String, Entry>;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key_span: Span,
    pub value: Node,
}

impl Node {
    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }
    /// How the value is described in "expected X, found Y" messages.
    pub fn kind(&self) -> String {
        match &self.value {
            Value::Null => "null".into(),
            Value::Scalar(s) => match s.psych() {
                Psych::Bool(_) => "a boolean".into(),
                Psych::Int(_) | Psych::Float(_) => "a number".into(),
                Psych::Str => "a string".into(),
            },
            Value::Seq(_) => "a list".into(),
            Value::Map(_) => "a map".into(),
            Value::Tagged(t, _) => format!("a `{t}` tag"),
        }
    }
    /// Number of nodes in this tree (used to bound the size of `extends` results).
    pub fn count(&self) -> usize {
        1 + match &self.value {
            Value::Seq(v) => v.iter().map(Node::count).sum(),
            Value::Map(m) => m.values().map(|e| e.value.count()).sum(),
            Value::Tagged(_, n) => n.count(),
            Value::Null | Value::Scalar(_) => 0,
        }
    }
}

/// A node as text that is equal for equal values (spans left out).
pub(crate) fn canonical(n: &Node) -> String {
    match &n.value {
        Value::Null => "~".into(),
        Value::Scalar(s) => format!("{:?}{}", s.text, if s.plain { "p" } else { "q" }),
        Value::Seq(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        Value::Map(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, e)| format!("{k:?}:{}", canonical(&e.value)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Tagged(t, inner) => format!("!{t} {}", canonical(inner)),
    }
}

impl Node {
    /// The model's copy of this value (for YAML the model keeps as written).
    pub fn to_written(&self) -> Written {
        let value = match &self.value {
            Value::Null => WrittenValue::Null,
            Value::Scalar(s) => WrittenValue::Scalar {
                text: s.text.clone(),
                plain: s.plain,
            },
            Value::Seq(items) => WrittenValue::Seq(items.iter().map(Node::to_written).collect()),
            Value::Map(m) => WrittenValue::Map(
                m.iter()
                    .map(|(k, e)| (k.clone(), e.key_span.clone(), e.value.to_written()))
                    .collect(),
            ),
            Value::Tagged(t, inner) => {
                WrittenValue::Tagged(t.clone(), Box::new(inner.to_written()))
            }
        };
        Written {
            span: self.span.clone(),
            value,
        }
    }

    /// A tree again from the model's copy.
    pub fn from_written(w: &Written) -> Node {
        let value = match &w.value {
            WrittenValue::Null => Value::Null,
            WrittenValue::Scalar { text, plain } => Value::Scalar(Scalar {
                text: text.clone(),
                plain: *plain,
            }),
            WrittenValue::Seq(items) => Value::Seq(items.iter().map(Node::from_written).collect()),
            WrittenValue::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, key_span, v)| {
                        let entry = Entry {
                            key_span: key_span.clone(),
                            value: Node::from_written(v),
                        };
                        (k.clone(), entry)
                    })
                    .collect(),
            ),
            WrittenValue::Tagged(t, inner) => {
                Value::Tagged(t.clone(), Box::new(Node::from_written(inner)))
            }
        };
        Node {
            span: w.span.clone(),
            value,
        }
    }
}
