//! YAML text -> [`Node`] tree with spans, merge keys (`<<`) applied.
//!
//! saphyr's parser gives the events, [`TreeLoader`] keeps every mapping entry in order (aliases
//! resolved, with a budget against alias bombs), and the [`Builder`] makes hashes the way GitLab's
//! Psych does (`revive_hash`): entries in document order, a repeated key replaces the earlier
//! value (with a warning naming both places), and each `<<` is a `Hash#merge!` at its place, once,
//! before anything else looks at the tree. Scalars are kept as written (`early_parse(false)`) so
//! that `1.10` stays `1.10` and YAML 1.1 words like `yes` can be read the way GitLab reads them.

use super::events::{Raw, RawData, TreeLoader};
use super::node::{Entry, Map, Node, Scalar, Value};
use crate::diagnostic::{Diagnostic, Diags};
use crate::limits::{Limits, raise_with};
use crate::span::Span;
use saphyr_parser::{Event, ScalarStyle, SpannedEventReceiver};
use std::collections::BTreeMap;

/// Budget (in nodes) for alias expansion during loading: generous for real pipelines (which
/// alias a few hundred nodes at most) and small enough that a "billion laughs" file fails fast.
const ALIAS_NODE_LIMIT: usize = 200_000;

/// Converts saphyr's character-based markers to our spans (which also carry byte offsets).
pub(crate) struct SourceMap<'a> {
    file: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
    /// Spaces put before lines (1-based) of the text saphyr read (see [`Relaxed`]): its columns
    /// on those lines are this many further right than in `text`.
    pads: BTreeMap<usize, usize>,
}

impl<'a> SourceMap<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            file,
            text,
            line_starts,
            pads: BTreeMap::new(),
        }
    }

    /// The column (0-based, in characters) in `text` of a marker of the text saphyr read.
    fn column(&self, m: &saphyr_parser::Marker) -> usize {
        let pad = self.pads.get(&m.line()).copied().unwrap_or(0);
        m.col().saturating_sub(pad)
    }

    fn byte_offset(&self, m: &saphyr_parser::Marker) -> usize {
        let Some(&start) = self.line_starts.get(m.line().saturating_sub(1)) else {
            return self.text.len();
        };
        let line = &self.text[start..];
        start
            + line
                .char_indices()
                .nth(self.column(m))
                .map_or(line.len(), |(i, _)| i)
    }

    /// The character just before `m` on its line, if any.
    fn char_before(&self, m: &saphyr_parser::Marker) -> Option<char> {
        let col = self.column(m).checked_sub(1)?;
        let start = *self.line_starts.get(m.line().checked_sub(1)?)?;
        self.text[start..].chars().nth(col)
    }

    pub fn marker(&self, m: &saphyr_parser::Marker) -> Span {
        Span {
            file: self.file.to_string(),
            line: m.line().max(1),
            column: self.column(m) + 1,
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
    let mut map = SourceMap::new(file, text);
    let start = map.marker(&saphyr_parser::Marker::new(0, 1, 0));
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
    let mut relaxed = Relaxed::default();
    let (guard, result) = loop {
        let read = relaxed.text.as_deref().unwrap_or(text);
        let (guard, result) = read_events(read, limits);
        if let Err(e) = &result {
            if guard.too_deep.is_none() && relaxed.indent_further(text, e, &guard.open) {
                continue;
            }
        }
        break (guard, result);
    };
    map.pads = std::mem::take(&mut relaxed.pads);
    if let Some(at) = guard.too_deep {
        diags
            .push(depth_error(file, map.span(&at), limits))
            .help(raise_with("--max-yaml-depth N"));
        return None;
    }
    let loader = &guard.inner;
    if let Some(e) = result.as_ref().err() {
        // saphyr counts flow nesting (`[[[`) in a byte and scans ahead, so this can come before
        // the guard sees the depth limit.
        if e.info() == "recursion limit exceeded" {
            let at = map.marker(e.marker());
            let error = if limits.depth() < FLOW_NESTING_LIMIT {
                depth_error(file, at, limits)
                    .help(raise_with("--max-yaml-depth N"))
                    .clone()
            } else {
                Diagnostic::error(
                    Some(at),
                    format!(
                        "`{file}` nests flow lists or maps (`[`, `{{`) more than {FLOW_NESTING_LIMIT} levels deep, the YAML parser's own limit"
                    ),
                )
            };
            diags.push(error);
            return None;
        }
    }
    let read = relaxed.text.as_deref().unwrap_or(text);
    let error = match result {
        // Left by [`Relaxed`] only where libyaml refuses it too (a `:` starting its line).
        Err(e) if e.info() == TAB_AFTER_COLON && !relaxed.out_of_budget => {
            Some((*e.marker(), refused_tab(':')))
        }
        Err(e) => Some((*e.marker(), e.info().to_string())),
        Ok(()) => loader.error.clone().or_else(|| {
            tab_after_indicator(read, guard.content)
                .map(|(at, indicator)| (at, refused_tab(indicator)))
        }),
    };
    if let Some((at, info)) = error {
        let pushed = diags.push(Diagnostic::error(
            Some(map.marker(&at)),
            format!("invalid YAML: {info}"),
        ));
        if relaxed.out_of_budget {
            // GitLab would take the file.
            pushed.help(
                "GitLab accepts this, but the file has too many such places for wharf to read \
                 it again for each: indent the lines inside `[...]`, `{...}` or quotes past \
                 the key they belong to, and separate values from their `:` with spaces",
            );
        }
        return None;
    }
    let mut builder = Builder {
        map: &map,
        max_depth: limits.depth(),
        diags,
    };
    Some(loader.docs.iter().map(|d| builder.build(d, 0)).collect())
}

/// Reads `text`'s events into a [`DepthGuard`]; the error that stopped saphyr, if any.
fn read_events(text: &str, limits: &Limits) -> (DepthGuard, Result<(), saphyr_parser::ScanError>) {
    let mut guard = DepthGuard {
        inner: TreeLoader::new(ALIAS_NODE_LIMIT),
        depth: 0,
        max: limits.depth(),
        skipping: 0,
        too_deep: None,
        open: Vec::new(),
        flow_starts: Vec::new(),
        content: Vec::new(),
    };
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    // Events are pulled here rather than with `Parser::load`, which recurses once per nesting
    // level and so would exhaust the stack on deep input before the guard could stop it.
    while let Some(next) = parser.next_event() {
        match next {
            Ok((event, span)) => {
                let end = event == Event::StreamEnd;
                guard.on_event(event, span);
                if end || guard.too_deep.is_some() {
                    break;
                }
            }
            Err(e) => return (guard, Err(e)),
        }
    }
    (guard, Ok(()))
}

fn refused_tab(indicator: char) -> String {
    format!(
        "a tab after `{indicator}`: GitLab's YAML parser (libyaml) refuses it (\"found character \
         that cannot start any token\"); use spaces there"
    )
}

/// The first tab right after a block indicator (`-`, `?`, or `:` starting a line, and
/// `- - `, `- ? ` chains after them), and that indicator. saphyr reads such a tab as a space;
/// libyaml, GitLab's parser, refuses it, since a tab there could only be indentation. `content`
/// (character ranges of `text`, see [`DepthGuard::content`]) is skipped: a `-` in a script or a
/// flow list is not an indicator.
fn tab_after_indicator(
    text: &str,
    mut content: Vec<(usize, usize)>,
) -> Option<(saphyr_parser::Marker, char)> {
    content.sort_unstable();
    // Merged into disjoint ranges: a flow collection holds scalars of its own.
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(content.len());
    for (start, end) in content {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let in_content = |at: usize| {
        let i = merged.partition_point(|&(start, _)| start <= at);
        i > 0 && at < merged[i - 1].1
    };
    let blank = |b: Option<&u8>| matches!(b, None | Some(b' ' | b'\t' | b'\r' | b'\n'));
    let mut line_start = 0; // in characters
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let bytes = line.as_bytes();
        // Up to the tab, everything looked at is ASCII: byte offsets are character columns.
        let mut at = bytes.iter().take_while(|&&b| b == b' ').count();
        if !in_content(line_start + at) {
            let mut first = true;
            while let Some(&b) = bytes.get(at) {
                let indicator = match b {
                    b'-' | b'?' => b,
                    // `:` as an indicator of its own only starts a line (an explicit value).
                    b':' if first => b,
                    _ => break,
                };
                if !blank(bytes.get(at + 1)) {
                    break;
                }
                at += 1;
                at += bytes[at..].iter().take_while(|&&b| b == b' ').count();
                if bytes.get(at) == Some(&b'\t') {
                    let marker = saphyr_parser::Marker::new(line_start + at, index + 1, at);
                    return Some((marker, char::from(indicator)));
                }
                first = false;
            }
        }
        line_start += line.chars().count();
    }
    None
}

/// saphyr's messages for what [`Relaxed`] lets through.
const RELAXED_ERRORS: [&str; 4] = [
    "invalid indentation",
    "invalid indentation in flow construct",
    "invalid indentation in quoted scalar",
    TAB_AFTER_COLON,
];

/// saphyr's message for a tab between a `:` and a value that starts with a letter or a `-`.
const TAB_AFTER_COLON: &str = "':' must be followed by a valid YAML whitespace";

/// How much more [`Relaxed`] may read again, in bytes, before it lets saphyr's error stand:
/// each line it indents costs a read of the whole file, and a hostile file could ask for one per
/// line. 256 reads of a 64 KiB pipeline; 8 of one at GitLab's 2 MiB limit.
const MAX_RELAXED_BYTES: usize = 16 << 20;

/// saphyr refuses three indentations that libyaml, the parser GitLab reads pipelines with
/// (through Psych), never checks:
/// - inside a flow collection (`[`, `{`), a line that starts at or left of the block around it,
///   like the closing `]` of a `needs: [` list written under `needs`;
/// - the same for a plain scalar there;
/// - a line of a multi-line quoted scalar left of the block around it.
///
/// In both places a line's leading spaces mean nothing (YAML folds them away, and flow
/// collections have no indentation), so such a line is indented past the block and the file is
/// read again; [`SourceMap`] gives spans in the text as written.
///
/// saphyr also refuses a tab between a mapping's `:` and its value (`image:\tpython:3.10`),
/// which libyaml separates like a space: those tabs become spaces, column for column.
#[derive(Default)]
struct Relaxed {
    /// The text with the lines indented further; `None` until a line needed it.
    text: Option<String>,
    /// Spaces added before each of those lines (1-based).
    pads: BTreeMap<usize, usize>,
    /// Bytes read again so far.
    reread: usize,
    /// An indentation GitLab accepts was left refused: re-reading would have passed
    /// [`MAX_RELAXED_BYTES`].
    out_of_budget: bool,
}

impl Relaxed {
    /// Indents the lines that `error` is about, when it is one of the three and they can be
    /// found; false to let the error stand. `error` and `open` (the collections open where saphyr
    /// stopped, see [`DepthGuard::open`]) come from reading [`Self::text`], else `original`.
    fn indent_further(
        &mut self,
        original: &str,
        error: &saphyr_parser::ScanError,
        open: &[saphyr_parser::Span],
    ) -> bool {
        if !RELAXED_ERRORS.contains(&error.info()) {
            return false;
        }
        let read = self.text.as_deref().unwrap_or(original);
        if self.reread + read.len() > MAX_RELAXED_BYTES {
            self.out_of_budget = true;
            return false;
        }
        self.reread += read.len();
        let map = SourceMap::new("", read);
        let at = error.marker();
        if error.info() == TAB_AFTER_COLON {
            // The marker is the value's first character; a tab is one character, as a space.
            let value = map.byte_offset(at);
            let key = read[..value].trim_end_matches([' ', '\t']);
            let line = &key[key.rfind('\n').map_or(0, |i| i + 1)..];
            // A `:` that starts its line is an explicit value (after `? key`), and libyaml
            // refuses a tab after it as after `-` (see [`tab_after_indicator`]).
            if !key.ends_with(':') || line.trim_start_matches(' ') == ":" {
                return false;
            }
            let mut out = String::with_capacity(read.len());
            out.push_str(key);
            out.extend(std::iter::repeat_n(' ', value - key.len()));
            out.push_str(&read[value..]);
            self.text = Some(out);
            return true;
        }
        // The block the flow collection or the scalar is in: the innermost open collection that
        // is not a flow one. Its column is the indentation saphyr holds the lines to.
        let Some(block) = open.iter().rev().find_map(|span| {
            match map.char_before(&span.end) {
                Some('[' | '{') => None,
                // An indentless sequence's start covers its `-`.
                Some('-') => Some(span.end.col().saturating_sub(1)),
                _ => Some(span.end.col()),
            }
        }) else {
            return false;
        };
        let wanted = block + 1;
        let lines: Vec<usize> = match error.info() {
            "invalid indentation" | "invalid indentation in flow construct" => {
                // Only inside a flow collection that began on an earlier line: the whole line is
                // in it (or in one of its scalars), from its first character.
                let line = at.line();
                match first_column(read, &map, line) {
                    Some(col) if col <= at.col() && col < wanted => vec![line],
                    _ => return false,
                }
            }
            "invalid indentation in quoted scalar" => {
                let Some(last) = closing_quote_line(read, &map, at) else {
                    return false;
                };
                (at.line() + 1..=last)
                    .filter(|&line| first_column(read, &map, line).is_some_and(|c| c < wanted))
                    .collect()
            }
            _ => return false,
        };
        if lines.is_empty() || lines.iter().any(|line| self.pads.contains_key(line)) {
            return false;
        }
        let mut out = String::with_capacity(read.len() + lines.len() * wanted);
        for (index, line_text) in read.split_inclusive('\n').enumerate() {
            let line = index + 1;
            if lines.contains(&line) {
                let pad = wanted - first_column(read, &map, line).unwrap_or(wanted);
                out.extend(std::iter::repeat_n(' ', pad));
                self.pads.insert(line, pad);
            }
            out.push_str(line_text);
        }
        self.text = Some(out);
        true
    }
}

/// The column (0-based, in characters) of the first character of `line` (1-based) that is not
/// a space or a tab; `None` for a blank line or one past the end.
fn first_column(text: &str, map: &SourceMap<'_>, line: usize) -> Option<usize> {
    let start = *map.line_starts.get(line.checked_sub(1)?)?;
    let line_text = text[start..].split('\n').next().unwrap_or("");
    let line_text = line_text.strip_suffix('\r').unwrap_or(line_text);
    line_text.chars().position(|c| c != ' ' && c != '\t')
}

/// The line (1-based) of the quote that closes the quoted scalar opening at `open`.
fn closing_quote_line(
    text: &str,
    map: &SourceMap<'_>,
    open: &saphyr_parser::Marker,
) -> Option<usize> {
    let start = map.byte_offset(open);
    let mut chars = text[start..].chars().peekable();
    let quote = chars.next()?;
    let mut line = open.line();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            // An escaped character, a line break included.
            '\\' if quote == '"' => line += usize::from(chars.next()? == '\n'),
            // `''` is a quote inside a single-quoted scalar.
            '\'' if quote == '\'' && chars.next_if_eq(&'\'').is_some() => {}
            c if c == quote => return Some(line),
            _ => {}
        }
    }
    None
}

/// How deep saphyr's scanner lets flow collections (`[`, `{`) nest.
const FLOW_NESTING_LIMIT: usize = 255;

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
struct DepthGuard {
    inner: TreeLoader,
    /// Collections open around the current event.
    depth: usize,
    max: usize,
    /// Collections open inside the one that was cut (0: not cutting).
    skipping: usize,
    /// Where the first collection too deep starts.
    too_deep: Option<saphyr_parser::Span>,
    /// Every collection open around the current event (the cut ones too), outermost first.
    open: Vec<saphyr_parser::Span>,
    /// For each of `open`, where it starts if it is a flow collection (`[`, `{`).
    flow_starts: Vec<Option<saphyr_parser::Marker>>,
    /// What the text holds as content rather than structure: every scalar, and every flow
    /// collection from its bracket to its closing one (see [`tab_after_indicator`]).
    content: Vec<(usize, usize)>,
}

impl<'input> SpannedEventReceiver<'input> for DepthGuard {
    fn on_event(&mut self, ev: Event<'input>, span: saphyr_parser::Span) {
        let opens = matches!(ev, Event::SequenceStart(..) | Event::MappingStart(..));
        let closes = matches!(ev, Event::SequenceEnd | Event::MappingEnd);
        if opens {
            self.open.push(span);
            // A flow collection's start covers its bracket; a block one's is empty.
            let flow = span.end.index() > span.start.index();
            self.flow_starts.push(flow.then_some(span.start));
        } else if closes {
            self.open.pop();
            if let Some(Some(start)) = self.flow_starts.pop() {
                self.content.push((start.index(), span.end.index()));
            }
        } else if matches!(ev, Event::Scalar(..)) && span.end.index() > span.start.index() {
            self.content.push((span.start.index(), span.end.index()));
        }
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
    fn build(&mut self, y: &Raw, depth: usize) -> Node {
        let span = self.map.span(&y.span);
        // `depth` counts the collections around `y`, as the DepthGuard does.
        let collection = matches!(y.data, RawData::Seq(..) | RawData::Map(..));
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
        let (value, tag) = match &y.data {
            RawData::Scalar { text, style, tag } => {
                let scalar = Scalar {
                    text: text.clone(),
                    plain: *style == ScalarStyle::Plain,
                };
                let value = match tag {
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
                };
                (value, None)
            }
            RawData::Seq(items, tag) => (
                Value::Seq(items.iter().map(|i| self.build(i, depth + 1)).collect()),
                tag.as_ref(),
            ),
            RawData::Map(pairs, tag) => (Value::Map(self.build_map(pairs, depth)), tag.as_ref()),
            RawData::Empty => (Value::Null, None),
        };
        match tag {
            Some(tag) => Node {
                span: span.clone(),
                value: Value::Tagged(tag.to_string(), Box::new(Node { span, value })),
            },
            None => Node { span, value },
        }
    }

    /// A mapping as Psych's `revive_hash` builds it: entries in document order, a repeated key
    /// replaces the earlier value where the earlier key stands (Ruby keeps a hash key's first
    /// position), and each `<<` is a `Hash#merge!` at its place, so it replaces keys written
    /// before it and keys written after it replace its keys.
    fn build_map(&mut self, pairs: &[(Raw, Raw)], depth: usize) -> Map {
        let mut out = Map::new();
        // Keys written in this mapping (not merged), with where: to warn when one is replaced.
        let mut written: std::collections::HashMap<String, Span> = Default::default();
        for (k, v) in pairs {
            let key_span = self.map.span(&k.span);
            let Some(text) = key_text(k) else {
                self.diags.push(Diagnostic::error(
                    Some(key_span),
                    "mapping keys must be strings",
                ));
                continue;
            };
            if is_merge_key(k) {
                let merged = self.build(v, depth + 1);
                for (mk, me) in self.merge_sources(merged) {
                    if let Some(first) = written.remove(&mk) {
                        self.diags.push(
                            Diagnostic::warning(
                                Some(key_span.clone()),
                                format!(
                                    "this merge key `<<` replaces `{mk}` written before it at {first}: GitLab applies `<<` at its place in the mapping, so keys written before it lose"
                                ),
                            )
                            .with_help(format!("write `{mk}` after the `<<` line to keep it")),
                        );
                    }
                    out.insert(mk, me);
                }
                continue;
            }
            if let Some(first) = written.get(&text) {
                self.diags.push(
                    Diagnostic::warning(
                        Some(key_span.clone()),
                        format!(
                            "duplicate key `{text}`: this one replaces the one at {first}, as GitLab does (the last one wins)"
                        ),
                    )
                    .with_help(format!("remove one of the two `{text}` keys")),
                );
            }
            written.insert(text.clone(), key_span.clone());
            let value = self.build(v, depth + 1);
            out.insert(text, Entry { key_span, value });
        }
        out
    }

    /// The entries a `<<` value contributes, in the order `Hash#merge!` applies them: one
    /// mapping's, or for a list of mappings Psych's `reverse_each` merge (the first mapping wins
    /// among them).
    fn merge_sources(&mut self, merged: Node) -> Map {
        let mut out = Map::new();
        for source in self.merge_maps(merged).into_iter().rev() {
            for (k, e) in source {
                out.insert(k, e);
            }
        }
        out
    }

    /// The maps a `<<` value names: one mapping, or a list of mappings in order.
    fn merge_maps(&mut self, merged: Node) -> Vec<Map> {
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

fn key_text(k: &Raw) -> Option<String> {
    match &k.data {
        RawData::Scalar { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn is_merge_key(k: &Raw) -> bool {
    match &k.data {
        RawData::Scalar { text, style, tag } => {
            text == "<<"
                && *style == ScalarStyle::Plain
                && tag.as_ref().is_none_or(|t| t.is_yaml_core_schema())
        }
        _ => false,
    }
}
