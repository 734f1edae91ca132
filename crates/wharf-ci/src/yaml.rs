//! Stage 1: YAML text -> [`Node`] tree with spans, merge keys (`<<`) applied.
//!
//! saphyr resolves anchors/aliases (with an expansion budget against alias bombs) and keeps tags,
//! but leaves `<<` as an ordinary key; GitLab (Ruby's Psych) applies it, so we do it here, once,
//! before anything else looks at the tree. Scalars are kept as written (`early_parse(false)`) so
//! that `1.10` stays `1.10` and YAML 1.1 words like `yes` can be read the way GitLab reads them.

use crate::diagnostic::{Diagnostic, Diags};
use crate::limits::{Limits, raise_with};
use crate::model::Span;
use indexmap::IndexMap;
use saphyr::{MarkedYaml, ScalarStyle, YamlData, YamlLoader};
use saphyr_parser::{Event, SpannedEventReceiver};

/// Budget (in nodes) for alias expansion during loading: generous for real pipelines (which
/// alias a few hundred nodes at most) and small enough that a "billion laughs" file fails fast.
const ALIAS_NODE_LIMIT: usize = 200_000;

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

/// A plain scalar as Ruby's Psych (which GitLab uses, YAML 1.1) types it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Psych {
    Bool(bool),
    Int(i128),
    Float(f64),
    /// A string (also every quoted or block scalar).
    Str,
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

fn psych_number(text: &str) -> Option<Psych> {
    let (neg, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let sign = |v: i128| if neg { -v } else { v };
    let fsign = |v: f64| if neg { -v } else { v };
    let lower = body.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf") {
        return Some(Psych::Float(fsign(f64::INFINITY)));
    }
    if lower == ".nan" && text == body {
        return Some(Psych::Float(f64::NAN));
    }
    if body.is_empty() || !body.as_bytes()[0].is_ascii_digit() && !body.starts_with('.') {
        return None;
    }
    // Sexagesimal (base 60): `1:30`, `1:02:03`, optionally with a fraction on the last part.
    if body.contains(':') {
        let (ints, frac) = match body.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        let parts: Vec<&str> = ints.split(':').collect();
        if parts.len() > 3 {
            return None;
        }
        let first = parts[0].replace('_', "");
        if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut total: i128 = first.parse().ok()?;
        for p in &parts[1..] {
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let v: i128 = p.parse().ok()?;
            if v > 59 {
                return None;
            }
            total = total * 60 + v;
        }
        return match frac {
            None => Some(Psych::Int(sign(total))),
            Some(f) if f.bytes().all(|b| b.is_ascii_digit() || b == b'_') => {
                let f: f64 = format!("0.{}", f.replace('_', "")).parse().ok()?;
                Some(Psych::Float(fsign(total as f64 + f)))
            }
            Some(_) => None,
        };
    }
    let digits: String = body.chars().filter(|c| *c != '_' && *c != ',').collect();
    if let Some(bin) = body.strip_prefix("0b") {
        if !bin.is_empty() && bin.bytes().all(|b| matches!(b, b'0' | b'1' | b'_' | b',')) {
            return i128::from_str_radix(&digits[2..], 2)
                .ok()
                .map(|v| Psych::Int(sign(v)));
        }
        return None;
    }
    if let Some(hex) = body.strip_prefix("0x") {
        if !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b'_' || b == b',')
        {
            return i128::from_str_radix(&digits[2..], 16)
                .ok()
                .map(|v| Psych::Int(sign(v)));
        }
        return None;
    }
    if body
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'_' || b == b',')
    {
        if body.len() > 1 && body.starts_with('0') {
            // YAML 1.1 octal.
            if body.bytes().all(|b| matches!(b, b'0'..=b'7' | b'_' | b',')) {
                return i128::from_str_radix(&digits, 8)
                    .ok()
                    .map(|v| Psych::Int(sign(v)));
            }
            return None;
        }
        // Decimal: `_` and `,` only between digits.
        if body.ends_with(['_', ',']) || body.contains("__") || body.contains(",,") {
            return None;
        }
        return digits.parse().ok().map(|v| Psych::Int(sign(v)));
    }
    // Float: [digits[_,]] . [digits] [e[+-]digits] (Psych needs the exponent's sign).
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int_part, frac_part) = mantissa.split_once('.')?;
    let int_ok = int_part.is_empty()
        || (int_part.as_bytes()[0].is_ascii_digit()
            && int_part
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'_' || b == b','));
    let frac_ok = frac_part.bytes().all(|b| b.is_ascii_digit());
    let exp_ok = exponent.is_none_or(|e| {
        e.len() > 1
            && (e.starts_with('+') || e.starts_with('-'))
            && e[1..].bytes().all(|b| b.is_ascii_digit())
    });
    if !(int_ok && frac_ok && exp_ok) || (int_part.is_empty() && frac_part.is_empty()) {
        return None;
    }
    let clean: String = mantissa
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    let mut f: f64 = format!("0{clean}0").parse().ok()?;
    if let Some(e) = exponent {
        let e: i32 = e.parse().ok()?;
        f = format!("{f}e{e}").parse().ok()?;
    }
    Some(Psych::Float(fsign(f)))
}

/// Ruby's `Float#to_s`: shortest round-trip digits, fixed notation for 1e-4 <= |f| < 1e16
/// (always with a fraction, `2.0`), scientific (`1.0e+16`, `1.0e-05`) otherwise.
pub(crate) fn ruby_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-Infinity" } else { "Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "1.1e0", "-1.25e-5".
    let sci = format!("{:e}", f.abs());
    let Some((mant, exp)) = sci.split_once('e') else {
        return f.to_string();
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let decpt = exp + 1;
    if !(-3..=16).contains(&decpt) {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}.{rest}e{esign}{:02}", exp.abs());
    }
    if decpt <= 0 {
        let zeros = "0".repeat(usize::try_from(-decpt).unwrap_or(0));
        return format!("{sign}0.{zeros}{digits}");
    }
    let decpt = usize::try_from(decpt).unwrap_or(0);
    if digits.len() <= decpt {
        format!("{sign}{digits}{}.0", "0".repeat(decpt - digits.len()))
    } else {
        format!("{sign}{}.{}", &digits[..decpt], &digits[decpt..])
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

/// Converts saphyr's character-based markers to our spans (which also carry byte offsets).
pub(crate) struct SourceMap<'a> {
    file: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            file,
            text,
            line_starts,
        }
    }

    fn byte_offset(&self, m: &saphyr::Marker) -> usize {
        let Some(&start) = self.line_starts.get(m.line().saturating_sub(1)) else {
            return self.text.len();
        };
        let line = &self.text[start..];
        start
            + line
                .char_indices()
                .nth(m.col())
                .map_or(line.len(), |(i, _)| i)
    }

    pub fn marker(&self, m: &saphyr::Marker) -> Span {
        Span {
            file: self.file.to_string(),
            line: m.line().max(1),
            column: m.col() + 1,
            offset: self.byte_offset(m),
            len: 0,
        }
    }

    pub fn span(&self, s: &saphyr_parser::Span) -> Span {
        let mut span = self.marker(&s.start);
        span.len = self.byte_offset(&s.end).saturating_sub(span.offset);
        span
    }
}

/// Parse `text` into its YAML documents. On a syntax error, pushes one diagnostic and returns
/// `None`; structural problems (bad merge keys, non-string keys) are pushed and parsing goes on.
/// A file over `limits` (size, nesting) is refused before any tree is built.
pub(crate) fn parse(
    file: &str,
    text: &str,
    limits: &Limits,
    diags: &mut Diags,
) -> Option<Vec<Node>> {
    let map = SourceMap::new(file, text);
    let start = map.marker(&saphyr::Marker::new(0, 1, 0));
    if text.len() > limits.max_yaml_bytes {
        diags
            .push(Diagnostic::error(
                Some(start),
                format!(
                    "`{file}` is {} bytes, more than the limit of {} bytes for one YAML file (GitLab's `max_yaml_size_bytes`)",
                    text.len(),
                    limits.max_yaml_bytes
                ),
            ))
            .help(raise_with("--max-yaml-size BYTES"));
        return None;
    }
    let mut loader: YamlLoader<MarkedYaml> = YamlLoader::default();
    loader.early_parse(false);
    loader.alias_limit(ALIAS_NODE_LIMIT);
    let mut guard = DepthGuard {
        inner: loader,
        depth: 0,
        max: limits.depth(),
        skipping: 0,
        too_deep: None,
    };
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    let result = parser.load(&mut guard, true);
    if let Some(at) = guard.too_deep {
        diags
            .push(depth_error(file, map.span(&at), limits))
            .help(raise_with("--max-yaml-depth N"));
        return None;
    }
    let loader = guard.inner;
    if let Some(e) = result.err().or_else(|| loader.error().cloned()) {
        diags.push(Diagnostic::error(
            Some(map.marker(e.marker())),
            format!("invalid YAML: {}", e.info()),
        ));
        return None;
    }
    let mut builder = Builder {
        map: &map,
        max_depth: limits.depth(),
        diags,
    };
    Some(
        loader
            .into_documents()
            .iter()
            .map(|d| builder.build(d, 0))
            .collect(),
    )
}

fn depth_error(file: &str, at: Span, limits: &Limits) -> Diagnostic {
    let max = limits.depth();
    let which = if max < limits.max_yaml_depth {
        "wharf's own limit, which protects its stack".to_string()
    } else {
        "GitLab's `max_yaml_depth`".to_string()
    };
    Diagnostic::error(
        Some(at),
        format!("`{file}` nests maps and lists more than {max} levels deep ({which})"),
    )
}

/// Sits between the parser and saphyr's loader and stops the nesting at the depth limit, before
/// saphyr builds (and later drops, recursively) a tree deep enough to exhaust the stack: a
/// collection too deep reaches the loader as a null, and everything inside it is dropped.
struct DepthGuard<'input> {
    inner: YamlLoader<'input, MarkedYaml<'input>>,
    /// Collections open around the current event.
    depth: usize,
    max: usize,
    /// Collections open inside the one that was cut (0: not cutting).
    skipping: usize,
    /// Where the first collection too deep starts.
    too_deep: Option<saphyr_parser::Span>,
}

impl<'input> SpannedEventReceiver<'input> for DepthGuard<'input> {
    fn on_event(&mut self, ev: Event<'input>, span: saphyr_parser::Span) {
        let opens = matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..));
        let closes = matches!(ev, Event::SequenceEnd | Event::MappingEnd);
        if self.skipping > 0 {
            if opens {
                self.skipping += 1;
            } else if closes {
                self.skipping -= 1;
            }
            return;
        }
        if opens {
            if self.depth >= self.max {
                self.too_deep.get_or_insert(span);
                self.skipping = 1;
                let null = Event::Scalar("~".into(), saphyr_parser::ScalarStyle::Plain, 0, None);
                self.inner.on_event(null, span);
                return;
            }
            self.depth += 1;
        } else if closes {
            self.depth = self.depth.saturating_sub(1);
        }
        self.inner.on_event(ev, span);
    }
}

struct Builder<'m, 'd> {
    map: &'m SourceMap<'m>,
    /// Aliases can nest what the [`DepthGuard`] let through; this bounds the result too.
    max_depth: usize,
    diags: &'d mut Diags,
}

impl Builder<'_, '_> {
    fn build(&mut self, y: &MarkedYaml, depth: usize) -> Node {
        let span = self.map.span(&y.span);
        // `depth` counts the collections around `y`, as the DepthGuard does.
        let collection = matches!(y.data, YamlData::Sequence(_) | YamlData::Mapping(_));
        if collection && depth >= self.max_depth {
            let file = span.file.clone();
            let error = Diagnostic::error(
                Some(span.clone()),
                format!(
                    "`{file}` nests maps and lists more than {} levels deep (through aliases)",
                    self.max_depth
                ),
            );
            self.diags
                .push(error)
                .help(raise_with("--max-yaml-depth N"));
            return Node {
                span,
                value: Value::Null,
            };
        }
        let value = match &y.data {
            YamlData::Representation(text, style, tag) => {
                let scalar = Scalar {
                    text: text.to_string(),
                    plain: *style == ScalarStyle::Plain,
                };
                match tag {
                    Some(tag) if tag.is_yaml_core_schema() => match tag.suffix.as_str() {
                        "str" => Value::Scalar(Scalar {
                            plain: false,
                            ..scalar
                        }),
                        "null" => Value::Null,
                        _ => Value::Scalar(scalar),
                    },
                    Some(tag) => Value::Tagged(
                        tag.to_string(),
                        Box::new(Node {
                            span: span.clone(),
                            value: scalar_value(scalar),
                        }),
                    ),
                    None => scalar_value(scalar),
                }
            }
            // Only reachable with early parsing, which we turn off; kept total for safety.
            YamlData::Value(v) => Value::Scalar(Scalar {
                text: format!("{v:?}"),
                plain: true,
            }),
            YamlData::Sequence(items) => {
                Value::Seq(items.iter().map(|i| self.build(i, depth + 1)).collect())
            }
            YamlData::Mapping(m) => Value::Map(self.build_map(m, depth)),
            YamlData::Tagged(tag, inner) => {
                Value::Tagged(tag.to_string(), Box::new(self.build(inner, depth)))
            }
            YamlData::Alias(_) | YamlData::BadValue => {
                self.diags.push(Diagnostic::error(
                    Some(span.clone()),
                    "invalid YAML value (unknown alias?)",
                ));
                Value::Null
            }
        };
        Node { span, value }
    }

    fn build_map(&mut self, m: &saphyr::AnnotatedMapping<MarkedYaml>, depth: usize) -> Map {
        // Explicit keys win over merged ones wherever they appear in the mapping, so collect
        // them first.
        let explicit: Vec<Option<String>> = m.keys().map(key_text).collect();
        let explicit_set: std::collections::HashSet<&str> =
            explicit.iter().flatten().map(String::as_str).collect();
        let mut out = Map::new();
        let mut seen_explicit = std::collections::HashSet::new();
        for ((k, v), text) in m.iter().zip(&explicit) {
            let key_span = self.map.span(&k.span);
            let Some(text) = text else {
                self.diags.push(Diagnostic::error(
                    Some(key_span),
                    "mapping keys must be strings",
                ));
                continue;
            };
            if is_merge_key(k) {
                let merged = self.build(v, depth + 1);
                for source in self.merge_sources(merged) {
                    for (mk, me) in source {
                        let overridden = explicit_set.contains(mk.as_str());
                        // First source wins among merged maps (YAML merge-key spec).
                        if !overridden && !out.contains_key(&mk) {
                            out.insert(mk, me);
                        }
                    }
                }
                continue;
            }
            if !seen_explicit.insert(text.clone()) {
                // saphyr only catches exact duplicates; `a` and `"a"` collide here.
                self.diags.push(Diagnostic::error(
                    Some(key_span),
                    format!("duplicate key `{text}` in mapping"),
                ));
                continue;
            }
            let value = self.build(v, depth + 1);
            out.insert(text.clone(), Entry { key_span, value });
        }
        out
    }

    /// The maps a `<<` value contributes: one mapping, or a list of mappings in order.
    fn merge_sources(&mut self, merged: Node) -> Vec<Map> {
        match merged.value {
            Value::Map(m) => vec![m],
            Value::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    let kind = item.kind();
                    match item.value {
                        Value::Map(m) => out.push(m),
                        _ => {
                            self.diags.push(Diagnostic::error(
                                Some(item.span),
                                format!("merge key `<<` needs mappings, found {kind} in the list"),
                            ));
                        }
                    }
                }
                out
            }
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        Some(merged.span.clone()),
                        format!(
                            "merge key `<<` needs a mapping or a list of mappings, found {}",
                            merged.kind()
                        ),
                    )
                    .with_help("write `<<: *anchor` or `<<: [*a, *b]`"),
                );
                Vec::new()
            }
        }
    }
}

fn scalar_value(s: Scalar) -> Value {
    if s.plain && matches!(s.text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
        Value::Null
    } else {
        Value::Scalar(s)
    }
}

fn key_text(k: &MarkedYaml) -> Option<String> {
    match &k.data {
        YamlData::Representation(text, _, _) => Some(text.to_string()),
        YamlData::Tagged(_, inner) => key_text(inner),
        _ => None,
    }
}

fn is_merge_key(k: &MarkedYaml) -> bool {
    match &k.data {
        YamlData::Representation(text, style, tag) => {
            text == "<<"
                && *style == ScalarStyle::Plain
                && tag.as_ref().is_none_or(|t| t.is_yaml_core_schema())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> Scalar {
        Scalar {
            text: text.into(),
            plain: true,
        }
    }

    #[test]
    fn psych_reads_yaml_1_1_numbers_like_ruby() {
        let cases = [
            ("1.10", "1.1"),
            ("3.10", "3.1"),
            ("010", "8"),
            ("0x1F", "31"),
            ("0b101", "5"),
            ("1_000", "1000"),
            ("1,000", "1000"),
            ("1:30", "90"),
            ("1:02:03", "3723"),
            ("1.0", "1.0"),
            ("2.", "2.0"),
            (".5", "0.5"),
            ("1.0e+20", "1.0e+20"),
            ("1.5e-7", "1.5e-07"),
            ("0.0001", "0.0001"),
            ("123456789012345678.0", "1.2345678901234568e+17"),
            ("-7", "-7"),
            ("+7", "7"),
            ("1e3", "1e3"),
            ("09", "09"),
            ("yes", "true"),
            ("Off", "false"),
            ("1.2.3", "1.2.3"),
            ("12:60", "12:60"),
            ("v1.10", "v1.10"),
            (".inf", "Infinity"),
            ("0", "0"),
        ];
        for (written, ruby) in cases {
            assert_eq!(plain(written).ruby_text(), ruby, "{written}");
        }
        let quoted = Scalar {
            text: "1.10".into(),
            plain: false,
        };
        assert_eq!(quoted.ruby_text(), "1.10");
    }
}
