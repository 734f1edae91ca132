//! A crate's modules as a one-way stack of layers: reads every source file's `use crate::...` /
//! `use super::...` imports (and inline `crate::a::b` paths) and reports any import from a
//! higher layer and any import cycle between files. A crate's `tests/architecture.rs` holds its
//! layer table and asserts [`layer_violations`] is empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every rule broken by the crate whose sources are under `src`, against `layers`.
pub fn layer_violations(src: &Path, layers: &[(&str, usize)]) -> Vec<String> {
    violations(&sources(src), layers)
}

/// Module path (`keywords::table`) -> source text, for every file under `src`.
fn sources(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("the source folder is readable") {
            let path = entry.expect("the source folder is readable").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(src)
                .expect("found under src")
                .with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            out.insert(
                parts.join("::"),
                std::fs::read_to_string(&path).expect("a source file is readable"),
            );
        }
    }
    out
}

/// The text without comments (doc links name modules without importing them), without string
/// and character literals' contents, and without the unit tests at the end (`#[cfg(test)] mod
/// tests`, whose `super` is the file itself). Strings may run over several lines (with `\`
/// continuations), and hold `//`, `;` or `use `.
fn code_only(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let after_word = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '"' {
            out.push_str("\"\"");
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        // A raw string: `r"..."`, `r#"..."#`.
        if c == 'r' && !after_word && matches!(next, Some('"' | '#')) {
            let hashes = chars[i + 1..].iter().take_while(|&&h| h == '#').count();
            if chars.get(i + 1 + hashes) == Some(&'"') {
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                i += 2 + hashes;
                while i < chars.len() && !chars[i..].starts_with(&close) {
                    i += 1;
                }
                i += close.len();
                out.push_str("\"\"");
                continue;
            }
        }
        // A character literal (`'"'`, `'\''`); a lifetime (`'a`) has no closing quote.
        if c == '\'' {
            let len = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&q| q == '\'')
                    .map(|p| p + 3)
            } else {
                (chars.get(i + 2) == Some(&'\'')).then_some(3)
            };
            if let Some(len) = len {
                out.push_str("' '");
                i += len;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// `a::{b, c::{d, e}}` -> [`a::b`, `a::c::d`, `a::c::e`].
fn expand_braces(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_string()];
    };
    let prefix = &tree[..open];
    let close = tree.rfind('}').unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(expand_braces)
        .map(|p| format!("{prefix}{p}"))
        .collect()
}

/// The modules `module` imports, given every module's name.
fn imports(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = code_only(text);
    let mut paths: Vec<String> = Vec::new();
    // `use` statements, possibly over several lines.
    let mut rest = code.as_str();
    while let Some(i) = rest.find("use ") {
        let at_word_start = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        let after = &rest[i + 4..];
        let Some(end) = after.find(';') else { break };
        if at_word_start {
            let tree: String = after[..end]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            paths.extend(expand_braces(&tree));
        }
        rest = &after[end..];
    }
    // Inline paths such as `crate::yaml::parse(...)` or `super::table::KEYWORDS`, and calls
    // into a child module (`table::lookup(...)` in the module that declares `mod table`).
    let child_prefix = if module.is_empty() {
        String::new()
    } else {
        format!("{module}::")
    };
    let children = modules.iter().filter_map(|m| {
        let child = m.strip_prefix(&child_prefix)?;
        (!child.is_empty() && !child.contains("::")).then(|| format!("{child}::"))
    });
    let anchors: Vec<String> = ["crate::".to_string(), "super::".to_string()]
        .into_iter()
        .chain(children)
        .collect();
    for anchor in &anchors {
        for (i, _) in code.match_indices(anchor.as_str()) {
            if i > 0
                && (code.as_bytes()[i - 1].is_ascii_alphanumeric()
                    || matches!(code.as_bytes()[i - 1], b':' | b'_'))
            {
                continue;
            }
            let path: String = code[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            // `use super::{a, b}` is a brace group, read with the `use` statements above.
            if !path.ends_with("::") {
                paths.push(path);
            }
        }
    }
    let own: Vec<&str> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").collect()
    };
    let mut out = BTreeSet::new();
    for path in paths {
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let absolute: Vec<&str> = match segments.first() {
            Some(&"crate") => segments[1..].to_vec(),
            Some(&"super") => {
                let mut base = own.clone();
                let mut rest = &segments[..];
                while rest.first() == Some(&"super") {
                    // A file's `super` is its parent module.
                    base.pop();
                    rest = &rest[1..];
                }
                base.into_iter().chain(rest.iter().copied()).collect()
            }
            Some(&"self") => own
                .iter()
                .copied()
                .chain(segments[1..].iter().copied())
                .collect(),
            // `use child::x` in a module that declares `mod child`.
            Some(first) => {
                let child: Vec<&str> = own.iter().copied().chain([*first]).collect();
                if modules.contains(&child.join("::")) {
                    own.iter()
                        .copied()
                        .chain(segments.iter().copied())
                        .collect()
                } else {
                    continue; // std, an external crate or a local item
                }
            }
            None => continue,
        };
        // The longest prefix that names a module; none means the crate root.
        let target = (0..=absolute.len())
            .rev()
            .map(|n| absolute[..n].join("::"))
            .find(|m| modules.contains(m))
            .unwrap_or_default();
        if target != module {
            out.insert(target);
        }
    }
    out
}

fn layer(module: &str, layers: &[(&str, usize)]) -> Option<usize> {
    let first = module.split("::").next().unwrap_or("");
    layers
        .iter()
        .find(|(name, _)| *name == first)
        .map(|(_, l)| *l)
}

/// Every rule broken by the import graph of `sources` (module path -> text): an import from a
/// higher layer of `layers` (each module's first path segment and its layer; "" is the crate
/// root), a module without a layer, or an import cycle between files.
pub fn violations(sources: &BTreeMap<String, String>, layers: &[(&str, usize)]) -> Vec<String> {
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let graph: BTreeMap<String, BTreeSet<String>> = sources
        .iter()
        .map(|(m, text)| (m.clone(), imports(m, text, &modules)))
        .collect();
    let mut problems = Vec::new();
    for (from, targets) in &graph {
        let Some(from_layer) = layer(from, layers) else {
            problems.push(format!("module `{from}` has no layer in the table"));
            continue;
        };
        for to in targets {
            if let Some(to_layer) = layer(to, layers)
                && to_layer > from_layer
            {
                problems.push(format!(
                    "`{from}` (layer {from_layer}) imports `{to}` (layer {to_layer}), a higher layer"
                ));
            }
        }
    }
    // Cycles: depth-first search; a back edge closes one.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        problems: &mut Vec<String>,
    ) {
        state.insert(node, 1);
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                None => visit(next, graph, state, path, problems),
                Some(1) => {
                    let from = path.iter().position(|m| m == next).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[from..].to_vec();
                    cycle.push(next);
                    problems.push(format!("import cycle: {}", cycle.join(" -> ")));
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node, 2);
    }
    for node in graph.keys() {
        if !state.contains_key(node.as_str()) {
            visit(node, &graph, &mut state, &mut Vec::new(), &mut problems);
        }
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    const LAYERS: &[(&str, usize)] = &[("span", 0), ("keywords", 4), ("load", 5), ("", 6)];

    #[test]
    fn the_checker_sees_upward_imports_and_cycles() {
        let files = |list: &[(&str, &str)]| -> BTreeMap<String, String> {
            list.iter()
                .map(|(m, t)| (m.to_string(), t.to_string()))
                .collect()
        };
        // A basic module importing the load layer (through a brace list over two lines).
        let up = files(&[
            ("", "mod span;\nmod load;\n"),
            ("span", "use crate::{\n    load::Loader,\n};\n"),
            ("load", "use crate::span::Span;\n"),
        ]);
        let problems = violations(&up, LAYERS);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`span` (layer 0) imports `load` (layer 5)")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("import cycle")),
            "{problems:?}"
        );
        // Within one layer: a child importing its parent facade, which re-exports the child.
        let facade = files(&[
            ("", "mod keywords;\n"),
            ("keywords", "mod table;\npub(crate) use table::KEYWORDS;\n"),
            (
                "keywords::table",
                "use super::KEYWORDS as _; // comment: crate::load\n",
            ),
        ]);
        let problems = violations(&facade, LAYERS);
        assert_eq!(
            problems,
            ["import cycle: keywords -> keywords::table -> keywords"],
        );
        // A parent calling into its child, which imports the parent back.
        let calls_down = files(&[
            ("", "mod keywords;\n"),
            ("keywords", "mod table;\nfn find() { table::lookup() }\n"),
            ("keywords::table", "use super::Entry;\n"),
        ]);
        assert_eq!(
            violations(&calls_down, LAYERS),
            ["import cycle: keywords -> keywords::table -> keywords"],
        );
        // Comments and strings do not count.
        let quiet = files(&[
            ("", "mod span;\n"),
            (
                "span",
                "/// see [`crate::load`]\nconst A: &str = \"crate::load\";\n",
            ),
        ]);
        assert!(violations(&quiet, LAYERS).is_empty());
        // Nor do strings over several lines (which once read `use ` inside a message as an
        // import, and panicked on one), raw strings and character literals; code after them
        // still counts.
        let literals = "const A: &str = \"a \\\"quoted\\\" word \\\n  use crate::load::x; // no\";\n\
             const B: &str = r#\"use crate::load; \"# ;\nconst C: char = '\"';\n\
             const D: char = '\\'';\nfn f<'a>(_: &'a str) {}\n";
        let only_literals = files(&[
            ("", "mod span;\nmod load;\n"),
            ("span", literals),
            ("load", ""),
        ]);
        assert!(violations(&only_literals, LAYERS).is_empty());
        let then_code = format!("{literals}fn g() {{ crate::load::go() }}\n");
        let then_code = files(&[
            ("", "mod span;\nmod load;\n"),
            ("span", &then_code),
            ("load", ""),
        ]);
        assert_eq!(
            violations(&then_code, LAYERS),
            ["`span` (layer 0) imports `load` (layer 5), a higher layer"]
        );
    }
}
