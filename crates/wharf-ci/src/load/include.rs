//! `include:` with GitLab's semantics, offline: `local` files (also as bare strings, lists and
//! `*`/`**` wildcards), `rules` on includes, nesting with GitLab's limits, cycles. `remote`,
//! `project`, `template` and `component` need a GitLab server or the network, so they are errors
//! that name the include.
//!
//! Merging is GitLab's: the included files are deep-merged in order (a later file wins over an
//! earlier one), then the including file is deep-merged over the result (its own keys win).
//! A file that was already included elsewhere (with the same `inputs`) is skipped, as GitLab
//! skips duplicates; it still counts towards the total. `inputs` and `spec:` headers: see
//! `load::inputs`.

use super::inputs;
use super::options::{LoadOptions, Loader};
use super::variables::{eval_if, expand_vars};
use crate::diagnostic::Diags;
use crate::limits::raise_with;
use crate::read;
use crate::span::Span;
use crate::suggest::did_you_mean;
use crate::yaml::{self, Entry, Map, Node, Value, canonical, deep_merge};
use std::collections::HashSet;

/// GitLab's limit on include nesting (the main file includes a file: depth 1).
pub(crate) const MAX_INCLUDE_DEPTH: usize = 100;

const INCLUDE_KEYS: &[&str] = &[
    "local",
    "remote",
    "project",
    "file",
    "ref",
    "template",
    "component",
    "rules",
    "inputs",
    "cache",
    "integrity",
];

const INCLUDE_RULE_KEYS: &[&str] = &["if", "exists", "changes", "when"];

pub(crate) struct Includer<'a, 'd> {
    loader: &'a dyn Loader,
    /// Load-time variables (`include: rules`, paths, inputs' `expand_vars`).
    options: &'a LoadOptions,
    /// The project's files, listed once on first need (`Err` holds why they cannot be listed).
    files: Option<Result<Vec<String>, String>>,
    /// Includes counted so far (towards `Limits::max_includes`).
    total: usize,
    /// Bytes of YAML read so far, the main file's included (towards
    /// `Limits::max_total_yaml_bytes`).
    bytes: usize,
    /// A limit was reported (once is enough).
    limit_reported: bool,
    /// Files already merged somewhere, by path.
    seen: HashSet<String>,
    /// The root is a child pipeline's `trigger: include:` list, not a file.
    trigger: bool,
    d: &'d mut Diags,
}

/// One file to include, with where the include that named it is written and the `inputs:` it
/// passes.
struct Target {
    path: String,
    span: Span,
    inputs: Option<Entry>,
}

impl Target {
    /// What makes two includes the same for GitLab's duplicate skipping: the file, and the
    /// inputs it gets (one file included with different inputs is two configurations).
    fn identity(&self) -> String {
        match &self.inputs {
            None => self.path.clone(),
            Some(e) => format!("{} {}", self.path, canonical(&e.value)),
        }
    }
}

impl<'a, 'd> Includer<'a, 'd> {
    pub fn new(loader: &'a dyn Loader, options: &'a LoadOptions, d: &'d mut Diags) -> Self {
        Self {
            loader,
            options,
            files: None,
            total: 0,
            bytes: 0,
            limit_reported: false,
            seen: HashSet::new(),
            trigger: false,
            d,
        }
    }

    /// The root to expand is a child pipeline's `trigger: include:` list, so messages about its
    /// entries name `trigger:include`.
    pub fn for_trigger(mut self) -> Self {
        self.trigger = true;
        self
    }

    /// Report the first limit the includes go over (the rest follow from it), with the flag
    /// that raises it.
    fn over_limit(&mut self, span: &Span, message: String, flag: &str) {
        if !self.limit_reported {
            self.limit_reported = true;
            self.d.error(span, message).help(raise_with(flag));
        }
    }

    /// The main file's bytes, which count towards the total YAML size.
    pub fn with_main_bytes(mut self, bytes: usize) -> Self {
        self.bytes = bytes;
        self
    }

    /// `root` (the content of `file`) with everything it includes merged in, without `include`.
    pub fn expand(&mut self, root: Map, file: &str) -> Map {
        self.seen.insert(file.to_string());
        self.expand_in(root, &mut vec![file.to_string()])
    }

    /// `chain` is the path of files from the main file to the one `root` came from.
    fn expand_in(&mut self, mut root: Map, chain: &mut Vec<String>) -> Map {
        let Some(include) = root.shift_remove("include") else {
            return root;
        };
        let mut merged = Map::new();
        for target in self.targets(&include.value) {
            if let Some(pos) = chain.iter().position(|c| *c == target.path) {
                let mut cycle: Vec<&str> = chain[pos..].iter().map(String::as_str).collect();
                cycle.push(&target.path);
                self.d.error(
                    &target.span,
                    format!("circular `include`: {}", cycle.join(" -> ")),
                );
                continue;
            }
            if chain.len() > MAX_INCLUDE_DEPTH {
                self.d
                    .error(
                        &target.span,
                        format!(
                            "includes are nested more than {MAX_INCLUDE_DEPTH} levels deep (GitLab's limit): {} -> {}",
                            chain.join(" -> "),
                            target.path
                        ),
                    );
                continue;
            }
            self.total += 1;
            let max = self.options.limits.max_includes;
            if self.total > max {
                let message = format!(
                    "more than {max} files are included (GitLab's `ci_max_includes`; nested and repeated includes count too): `{}` includes `{}`",
                    chain.last().map_or("", String::as_str),
                    target.path
                );
                self.over_limit(&target.span, message, "--max-includes N");
                continue;
            }
            if !self.seen.insert(target.identity()) {
                continue;
            }
            let via_trigger = self.trigger && chain.len() == 1;
            let Some(content) = self.load(&target, via_trigger) else {
                continue;
            };
            chain.push(target.path.clone());
            let content = self.expand_in(content, chain);
            chain.pop();
            merged = deep_merge(&merged, &content);
        }
        deep_merge(&merged, &root)
    }

    /// Read and parse an included file, which must be one YAML document holding a map.
    /// `via_trigger`: named by a child pipeline's `trigger: include:`.
    fn load(&mut self, target: &Target, via_trigger: bool) -> Option<Map> {
        let path = &target.path;
        let text = match self.loader.load(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.d.error(
                    &target.span,
                    format!("included file `{path}` does not exist"),
                );
                return None;
            }
            Err(e) => {
                self.d.error(
                    &target.span,
                    format!("cannot read included file `{path}`: {e}"),
                );
                return None;
            }
        };
        self.bytes = self.bytes.saturating_add(text.len());
        let max_total = self.options.limits.max_total_yaml_bytes;
        if self.bytes > max_total {
            let message = format!(
                "with `{path}`, the pipeline's YAML files add up to {} bytes, more than {max_total} (GitLab's `ci_max_total_yaml_size_bytes`)",
                self.bytes
            );
            self.over_limit(&target.span, message, "--max-total-yaml-size BYTES");
            return None;
        }
        let docs = yaml::parse(path, &text, &self.options.limits, self.d)?;
        let given = inputs::Given::Include {
            file: path,
            at: &target.span,
            inputs: target.inputs.as_ref(),
            via_trigger,
        };
        let content = inputs::content(docs, &given, self.options, self.d)?;
        let Some(doc) = content.filter(|doc| !doc.is_null()) else {
            self.d
                .error(&target.span, format!("included file `{path}` is empty"));
            return None;
        };
        match doc.value {
            Value::Map(m) => Some(m),
            _ => {
                self.d.error(
                    &doc.span,
                    format!(
                        "included file `{path}` must be a map of keywords and jobs, found {}",
                        doc.kind()
                    ),
                );
                None
            }
        }
    }

    /// The files an `include:` value names, in order, after rules and wildcards.
    fn targets(&mut self, n: &Node) -> Vec<Target> {
        let items: Vec<&Node> = match &n.value {
            Value::Null => Vec::new(),
            Value::Seq(items) => items.iter().collect(),
            _ => vec![n],
        };
        let mut out = Vec::new();
        for item in items {
            match &item.value {
                Value::Scalar(s) => {
                    let location = self.expand_vars(&s.text);
                    if location.starts_with("http://") || location.starts_with("https://") {
                        self.offline(item, "remote", &location);
                    } else {
                        self.local(&location, &item.span, None, &mut out);
                    }
                }
                Value::Map(m) => self.include_map(item, m, &mut out),
                Value::Null => {}
                _ => {
                    self.d.error(
                        &item.span,
                        format!(
                            "`include` must be a file path, a map (`local:`, `remote:`...) or a list of them, found {}",
                            item.kind()
                        ),
                    );
                }
            }
        }
        out
    }

    fn include_map(&mut self, item: &Node, m: &Map, out: &mut Vec<Target>) {
        for (k, e) in m {
            if !INCLUDE_KEYS.contains(&k.as_str()) {
                self.d
                    .error(&e.key_span, format!("unknown key `{k}` in `include`"))
                    .help_opt(did_you_mean(k, INCLUDE_KEYS.iter().copied()));
            }
        }
        if let Some(rules) = m.get("rules") {
            match self.rules_include(&rules.value) {
                Some(true) => {}
                // Excluded by its rules, or the rules are wrong (reported).
                _ => return,
            }
        }
        for kind in ["remote", "project", "template", "component"] {
            if let Some(e) = m.get(kind) {
                let what = match &e.value.value {
                    Value::Scalar(s) => self.expand_vars(&s.text),
                    _ => String::new(),
                };
                self.offline(item, kind, &what);
                return;
            }
        }
        match m.get("local") {
            Some(e) => {
                if let Some(path) = read::string(&e.value, "`include` `local`", self.d) {
                    let path = self.expand_vars(&path);
                    self.local(&path, &e.value.span, m.get("inputs"), out);
                }
            }
            None => {
                self.d.error(
                    &item.span,
                    "`include` needs one of `local`, `remote`, `project`, `template` or `component`",
                );
            }
        }
    }

    fn offline(&mut self, item: &Node, kind: &str, what: &str) {
        let named = if what.is_empty() {
            String::new()
        } else {
            format!(" `{what}`")
        };
        self.d
            .error(
                &item.span,
                format!("`include:{kind}`{named} is not available offline"),
            )
            .help("wharf reads only files of the project: copy the file into the project and use `include: local`");
    }

    /// A local path (maybe a wildcard) -> the files it names, each given `inputs`.
    fn local(&mut self, path: &str, span: &Span, inputs: Option<&Entry>, out: &mut Vec<Target>) {
        let path = path.trim_start_matches('/').to_string();
        if !(path.ends_with(".yml") || path.ends_with(".yaml")) {
            self.d.error(
                span,
                format!("included file `{path}` does not have a YAML extension (.yml or .yaml)"),
            );
            return;
        }
        if !path.contains('*') {
            out.push(Target {
                path,
                span: span.clone(),
                inputs: inputs.cloned(),
            });
            return;
        }
        let Some(files) = self.files(span, "`include` wildcards") else {
            return;
        };
        let re = match wildcard_regex(&path) {
            Ok(re) => re,
            Err(e) => {
                self.d
                    .error(span, format!("invalid `include` wildcard `{path}`: {e}"));
                return;
            }
        };
        let mut matched: Vec<String> = files.into_iter().filter(|f| re.is_match(f)).collect();
        matched.sort();
        if matched.is_empty() {
            // GitLab includes nothing, silently; say so, since it is usually a typo.
            self.d
                .warning(span, format!("`include` `{path}` matches no files"));
        }
        out.extend(matched.into_iter().map(|path| Target {
            path,
            span: span.clone(),
            inputs: inputs.cloned(),
        }));
    }

    /// The project's files, or `None` after reporting at `span` why they are unavailable.
    fn files(&mut self, span: &Span, feature: &str) -> Option<Vec<String>> {
        let loader = self.loader;
        let listed = self.files.get_or_insert_with(|| {
            loader.list_files().map_err(|e| e.to_string()).map(|files| {
                files
                    .into_iter()
                    .map(|f| f.trim_start_matches("./").to_string())
                    .collect()
            })
        });
        match listed {
            Ok(files) => Some(files.clone()),
            Err(e) => {
                let message = format!("{feature} need the list of project files: {e}");
                self.d.error(span, message);
                None
            }
        }
    }

    /// `rules:` of an include: whether the file is included (`None`: the rules are invalid).
    /// The first rule whose clauses all hold decides; without one, the file is left out.
    fn rules_include(&mut self, n: &Node) -> Option<bool> {
        let Value::Seq(rules) = &n.value else {
            self.d.error(
                &n.span,
                format!(
                    "`include` `rules` must be a list of rules, found {}",
                    n.kind()
                ),
            );
            return None;
        };
        let mut valid = true;
        let mut decision = None;
        for rule in flatten(rules) {
            let Some(m) = rule.as_map() else {
                self.d.error(
                    &rule.span,
                    format!("an `include` rule must be a map, found {}", rule.kind()),
                );
                valid = false;
                continue;
            };
            for (k, e) in m {
                if !INCLUDE_RULE_KEYS.contains(&k.as_str()) {
                    self.d
                        .error(
                            &e.key_span,
                            format!("unknown key `{k}` in an `include` rule"),
                        )
                        .help_opt(did_you_mean(k, INCLUDE_RULE_KEYS.iter().copied()));
                    valid = false;
                }
            }
            let included = match m.get("when") {
                None => true,
                Some(e) => match &e.value.value {
                    Value::Scalar(s) if s.text == "always" => true,
                    Value::Scalar(s) if s.text == "never" => false,
                    _ => {
                        self.d.error(
                            &e.value.span,
                            "`when` in an `include` rule must be `always` or `never`",
                        );
                        valid = false;
                        continue;
                    }
                },
            };
            let mut holds = true;
            if let Some(e) = m.get("if") {
                match self.rule_if(&e.value) {
                    Some(b) => holds &= b,
                    None => valid = false,
                }
            }
            if let Some(e) = m.get("exists") {
                match self.rule_exists(&e.value) {
                    Some(b) => holds &= b,
                    None => valid = false,
                }
            }
            // `changes:` compares with the previous push on GitLab; a local run has no push, and
            // GitLab treats pipelines without one (new branches, tags...) as "changed".
            if decision.is_none() && holds {
                decision = Some(included);
            }
        }
        valid.then_some(decision.unwrap_or(false))
    }

    fn rule_if(&mut self, n: &Node) -> Option<bool> {
        let src = read::string(n, "`if` in an `include` rule", self.d)?;
        match eval_if(&src, &self.options.variables) {
            Ok(b) => Some(b),
            Err(e) => {
                self.d.error(
                    &n.span,
                    format!("invalid `if` expression in an `include` rule: {e}"),
                );
                None
            }
        }
    }

    fn rule_exists(&mut self, n: &Node) -> Option<bool> {
        let paths_node = match &n.value {
            Value::Map(m) => {
                if let Some(e) = m.get("project") {
                    self.d.error(
                        &e.key_span,
                        "`exists` in another project is not available offline",
                    );
                    return None;
                }
                match m.get("paths") {
                    Some(e) => &e.value,
                    None => {
                        self.d.error(&n.span, "`exists` as a map needs `paths`");
                        return None;
                    }
                }
            }
            _ => n,
        };
        let patterns = read::string_list(paths_node, "`exists` in an `include` rule", self.d)?;
        let mut builder = globset::GlobSetBuilder::new();
        for p in &patterns {
            let p = self.expand_vars(p);
            let glob = globset::GlobBuilder::new(p.trim_start_matches('/'))
                .literal_separator(true)
                .build();
            match glob {
                Ok(g) => {
                    builder.add(g);
                }
                Err(e) => {
                    self.d.error(
                        &paths_node.span,
                        format!("invalid `exists` pattern `{p}`: {e}"),
                    );
                    return None;
                }
            }
        }
        let set = match builder.build() {
            Ok(set) => set,
            Err(e) => {
                self.d
                    .error(&paths_node.span, format!("invalid `exists` patterns: {e}"));
                return None;
            }
        };
        let files = self.files(&n.span, "`exists` in `include` rules")?;
        Some(files.iter().any(|f| set.is_match(f)))
    }

    /// `$NAME` and `${NAME}` replaced by the load-time variables; unknown names stay as written,
    /// so that the error about the resulting path shows them.
    fn expand_vars(&self, s: &str) -> String {
        expand_vars(s, &self.options.variables)
    }
}

/// Rules may splice in lists from `!reference`: flatten one level.
fn flatten(items: &[Node]) -> Vec<&Node> {
    let mut out = Vec::new();
    for i in items {
        match &i.value {
            Value::Seq(inner) => out.extend(inner.iter()),
            _ => out.push(i),
        }
    }
    out
}

/// GitLab's include wildcards: `*` matches within one folder, `**` across folders
/// (`configs/**.yml` is every `.yml` under `configs`, `configs/**/*.yml` only those in
/// subfolders). Everything else is literal.
fn wildcard_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '*' {
            if chars.peek() == Some(&'*') {
                chars.next();
                re.push_str(".*");
            } else {
                re.push_str("[^/]*");
            }
        } else {
            re.push_str(&regex::escape(&c.to_string()));
        }
    }
    re.push('$');
    regex::Regex::new(&re)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_gitlab() {
        let one = wildcard_regex("configs/*.yml").unwrap();
        assert!(one.is_match("configs/a.yml"));
        assert!(!one.is_match("configs/sub/a.yml"));
        let deep = wildcard_regex("configs/**.yml").unwrap();
        assert!(deep.is_match("configs/a.yml"));
        assert!(deep.is_match("configs/sub/a.yml"));
        let sub = wildcard_regex("configs/**/*.yml").unwrap();
        assert!(!sub.is_match("configs/a.yml"));
        assert!(sub.is_match("configs/sub/a.yml"));
        assert!(!wildcard_regex("c.yml").unwrap().is_match("cxyml"));
    }
}
