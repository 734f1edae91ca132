//! `include:` with GitLab's semantics: `local` files (also as bare strings, lists and `*`/`**`
//! wildcards), `remote`, `template`, `project` and `component` files (fetched through
//! [`Loader::fetch`]), `rules` on includes, nesting with GitLab's limits, cycles.
//!
//! Merging is GitLab's: the included files are deep-merged in order (a later file wins over an
//! earlier one), then the including file is deep-merged over the result (its own keys win).
//! A file that was already included elsewhere (with the same `inputs`) is skipped, as GitLab
//! skips duplicates; it still counts towards the total. `inputs` and `spec:` headers: see
//! `load::inputs`. A `local` include inside a file of another project (a `project` or
//! `component` file) reads that project at the same commit, as GitLab's include context does;
//! inside a `remote` or `template` file it reads the pipeline's own project.

use super::inputs;
use super::options::{External, LoadOptions, Loader};
use super::variables::{eval_if, expand_vars};
use crate::diagnostic::Diags;
use crate::limits::raise_with;
use crate::model::IncludedFile;
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
    /// Files already merged somewhere, by [`Target::identity`].
    seen: HashSet<String>,
    /// The root is a child pipeline's `trigger: include:` list, not a file.
    trigger: bool,
    /// Every file merged in, with the chain that led to it.
    included: Vec<IncludedFile>,
    d: &'d mut Diags,
}

/// Where a file to include lives.
#[derive(Debug, Clone)]
enum Source {
    /// A file of the project being loaded, project-relative.
    Local(String),
    External(External),
}

impl Source {
    /// What names it before it is read (cycle and duplicate checks).
    fn key(&self) -> String {
        match self {
            Source::Local(path) => path.clone(),
            Source::External(e) => format!("{e:?}"),
        }
    }
}

/// One file to include, with where the include that named it is written and the `inputs:` it
/// passes.
struct Target {
    source: Source,
    span: Span,
    inputs: Option<Entry>,
}

impl Target {
    /// What makes two includes the same for GitLab's duplicate skipping: the file, and the
    /// inputs it gets (one file included with different inputs is two configurations).
    fn identity(&self) -> String {
        match &self.inputs {
            None => self.source.key(),
            Some(e) => format!("{} {}", self.source.key(), canonical(&e.value)),
        }
    }
}

/// A file read: its content, its name, and the project its `local` includes point into.
struct Read {
    map: Map,
    name: String,
    project: Option<(String, String)>,
}

/// One level of the include chain: the file's key (cycles) and its name (messages).
struct Link {
    key: String,
    name: String,
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
            included: Vec::new(),
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

    /// `root` (the content of `file`) with everything it includes merged in, without `include`,
    /// and the files merged in.
    pub fn expand(mut self, root: Map, file: &str) -> (Map, Vec<IncludedFile>) {
        self.seen.insert(file.to_string());
        let mut chain = vec![Link {
            key: file.to_string(),
            name: file.to_string(),
        }];
        let map = self.expand_in(root, None, &mut chain);
        (map, self.included)
    }

    /// `chain` is the path of files from the main file to the one `root` came from; `project`
    /// is where that file's `local` includes point (`None`: the pipeline's project).
    fn expand_in(
        &mut self,
        mut root: Map,
        project: Option<&(String, String)>,
        chain: &mut Vec<Link>,
    ) -> Map {
        let Some(include) = root.shift_remove("include") else {
            return root;
        };
        let mut merged = Map::new();
        for target in self.targets(&include.value, project) {
            let key = target.source.key();
            if chain.iter().any(|c| c.key == key) {
                self.cycle(&target, chain, &key);
                continue;
            }
            if chain.len() > MAX_INCLUDE_DEPTH {
                let names: Vec<&str> = chain.iter().map(|c| c.name.as_str()).collect();
                self.d.error(
                    &target.span,
                    format!(
                        "includes are nested more than {MAX_INCLUDE_DEPTH} levels deep (GitLab's limit): {} -> {}",
                        names.join(" -> "),
                        display(&target.source)
                    ),
                );
                continue;
            }
            self.total += 1;
            let max = self.options.limits.max_includes;
            if self.total > max {
                let message = format!(
                    "more than {max} files are included (GitLab's `ci_max_includes`; nested and repeated includes count too): `{}` includes `{}`",
                    chain.last().map_or("", |c| c.name.as_str()),
                    display(&target.source)
                );
                self.over_limit(&target.span, message, "--max-includes N");
                continue;
            }
            if !self.seen.insert(target.identity()) {
                continue;
            }
            let via_trigger = self.trigger && chain.len() == 1;
            let Some(read) = self.load(&target, via_trigger) else {
                continue;
            };
            // A fetched file may turn out to be one already on the chain under another
            // spelling (a branch and its commit, say).
            if chain.iter().any(|c| c.name == read.name) {
                self.cycle(&target, chain, &read.name);
                continue;
            }
            self.included.push(IncludedFile {
                name: read.name.clone(),
                via: chain.iter().map(|c| c.name.clone()).collect(),
            });
            chain.push(Link {
                key,
                name: read.name,
            });
            let content = self.expand_in(read.map, read.project.as_ref(), chain);
            chain.pop();
            merged = deep_merge(&merged, &content);
        }
        deep_merge(&merged, &root)
    }

    fn cycle(&mut self, target: &Target, chain: &[Link], again: &str) {
        let pos = chain
            .iter()
            .position(|c| c.key == again || c.name == again)
            .unwrap_or(0);
        let mut cycle: Vec<&str> = chain[pos..].iter().map(|c| c.name.as_str()).collect();
        let shown = display(&target.source);
        cycle.push(&shown);
        self.d.error(
            &target.span,
            format!("circular `include`: {}", cycle.join(" -> ")),
        );
    }

    /// Read (or fetch) and parse an included file, which must be one YAML document holding a
    /// map. `via_trigger`: named by a child pipeline's `trigger: include:`.
    fn load(&mut self, target: &Target, via_trigger: bool) -> Option<Read> {
        let (text, name, project) = match &target.source {
            Source::Local(path) => match self.loader.load(path) {
                Ok(text) => (text, path.clone(), None),
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
            },
            Source::External(external) => match self.loader.fetch(external) {
                Ok(f) => (f.text, f.name, f.project),
                Err(failure) => {
                    self.d
                        .error(&target.span, failure.message)
                        .help_opt(failure.help);
                    return None;
                }
            },
        };
        let path = &name;
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
            Value::Map(map) => Some(Read { map, name, project }),
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

    /// The files an `include:` value names, in order, after rules and wildcards. `project`:
    /// where `local` paths point (`None`: the pipeline's project).
    fn targets(&mut self, n: &Node, project: Option<&(String, String)>) -> Vec<Target> {
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
                    if is_url(&location) {
                        self.remote(location, &item.span, None, &mut out);
                    } else {
                        self.local(&location, &item.span, None, project, &mut out);
                    }
                }
                Value::Map(m) => self.include_map(item, m, project, &mut out),
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

    fn include_map(
        &mut self,
        item: &Node,
        m: &Map,
        project: Option<&(String, String)>,
        out: &mut Vec<Target>,
    ) {
        // GitLab reads an include's source keys and `rules` (`External::Mapper`) and drops the
        // `include:` key once files are merged, so `Entry::Include`'s key check never sees it:
        // another key is ignored, not refused. A typo is still worth saying.
        for (k, e) in m {
            if !INCLUDE_KEYS.contains(&k.as_str()) {
                self.d
                    .warning(
                        &e.key_span,
                        format!(
                            "unknown key `{k}` in `include`: GitLab ignores it, and so does wharf"
                        ),
                    )
                    .help_opt(did_you_mean(k, INCLUDE_KEYS.iter().copied()));
            }
        }
        // `External::Rules`: no rules (`rules:` null) include the file.
        if let Some(rules) = m.get("rules").filter(|r| !r.value.is_null()) {
            match self.rules_include(&rules.value) {
                Some(true) => {}
                // Excluded by its rules, or the rules are wrong (reported).
                _ => return,
            }
        }
        let inputs = m.get("inputs");
        let kinds: Vec<&str> = ["local", "remote", "project", "template", "component"]
            .into_iter()
            .filter(|k| m.contains_key(*k))
            .collect();
        if kinds.len() > 1 {
            self.d.error(
                &item.span,
                format!(
                    "an `include` names one file source, this one has {}",
                    kinds
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            );
            return;
        }
        let Some(kind) = kinds.first() else {
            let typo = m
                .keys()
                .find_map(|k| did_you_mean(k, INCLUDE_KEYS.iter().copied()));
            self.d
                .error(
                    &item.span,
                    "`include` needs one of `local`, `remote`, `project`, `template` or `component`",
                )
                .help_opt(typo);
            return;
        };
        let e = &m[*kind];
        let what = format!("`include` `{kind}`");
        let Some(value) = read::string(&e.value, &what, self.d) else {
            return;
        };
        let value = self.expand_vars(&value);
        let span = &e.value.span;
        match *kind {
            "local" => self.local(&value, span, inputs, project, out),
            "remote" => {
                if is_url(&value) {
                    self.remote(value, span, inputs, out);
                } else {
                    self.d.error(
                        span,
                        format!("`include` `remote` must be an http(s) URL, found `{value}`"),
                    );
                }
            }
            "template" => {
                if has_yaml_extension(&value, span, self.d) {
                    out.push(Target {
                        source: Source::External(External::Template { name: value }),
                        span: span.clone(),
                        inputs: inputs.cloned(),
                    });
                }
            }
            "component" => out.push(Target {
                source: Source::External(External::Component { address: value }),
                span: span.clone(),
                inputs: inputs.cloned(),
            }),
            _ => self.project(value, m, item, inputs, out),
        }
    }

    /// `include: project:` with its `file:` (one path or a list) and `ref:`.
    fn project(
        &mut self,
        project: String,
        m: &Map,
        item: &Node,
        inputs: Option<&Entry>,
        out: &mut Vec<Target>,
    ) {
        let project = project.trim_matches('/').to_string();
        let Some(file) = m.get("file") else {
            self.d.error(
                &item.span,
                format!("`include` `project: {project}` needs `file:` (a path or a list of paths)"),
            );
            return;
        };
        let reference = match m.get("ref") {
            None => None,
            Some(e) => match read::string(&e.value, "`include` `ref`", self.d) {
                Some(r) => Some(self.expand_vars(&r)),
                None => return,
            },
        };
        let Some(files) = read::string_list(&file.value, "`include` `file`", self.d) else {
            return;
        };
        for path in files {
            let path = self.expand_vars(&path).trim_start_matches('/').to_string();
            if !has_yaml_extension(&path, &file.value.span, self.d) {
                continue;
            }
            out.push(Target {
                source: Source::External(External::Project {
                    project: project.clone(),
                    reference: reference.clone(),
                    file: path,
                }),
                span: file.value.span.clone(),
                inputs: inputs.cloned(),
            });
        }
    }

    fn remote(&mut self, url: String, span: &Span, inputs: Option<&Entry>, out: &mut Vec<Target>) {
        if has_yaml_extension(url.split(['?', '#']).next().unwrap_or(&url), span, self.d) {
            out.push(Target {
                source: Source::External(External::Remote { url }),
                span: span.clone(),
                inputs: inputs.cloned(),
            });
        }
    }

    /// A local path (maybe a wildcard) -> the files it names, each given `inputs`. Inside a
    /// file of another project (`project`), the path names a file of that project at the same
    /// commit.
    fn local(
        &mut self,
        path: &str,
        span: &Span,
        inputs: Option<&Entry>,
        project: Option<&(String, String)>,
        out: &mut Vec<Target>,
    ) {
        let path = path.trim_start_matches('/').to_string();
        if !has_yaml_extension(&path, span, self.d) {
            return;
        }
        if let Some((project, commit)) = project {
            if path.contains('*') {
                self.d.error(
                    span,
                    format!("`include` wildcard `{path}` in a file of project `{project}`: wharf cannot list another project's files; name the files"),
                );
                return;
            }
            out.push(Target {
                source: Source::External(External::Project {
                    project: project.clone(),
                    reference: Some(commit.clone()),
                    file: path,
                }),
                span: span.clone(),
                inputs: inputs.cloned(),
            });
            return;
        }
        if !path.contains('*') {
            out.push(Target {
                source: Source::Local(path),
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
            source: Source::Local(path),
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
        // `Include::Rules` and `Include::Rules::Rule`: `validates :config, presence: true`.
        if rules.is_empty() {
            self.d
                .error(
                    &n.span,
                    "`include` `rules` can't be blank (GitLab refuses the pipeline)",
                )
                .help("remove `rules:` to always include the file");
            return None;
        }
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
            if m.is_empty() {
                self.d.error(
                    &rule.span,
                    "an `include` rule is empty (GitLab: \"can't be blank\")",
                );
                valid = false;
                continue;
            }
            // `Rules::Rule::Changes`: a list or `{paths, compare_to}`, never a lone string.
            if let Some(e) = m.get("changes") {
                if let Value::Scalar(s) = &e.value.value {
                    self.d
                        .error(&e.value.span, "`changes` in an `include` rule must be a list of paths or a map with `paths`, found a string")
                        .help(format!("write it as a list: `[{}]`", s.text));
                    valid = false;
                }
            }
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
                        "`exists` in another project: wharf cannot list another project's files",
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

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// GitLab includes only `.yml`/`.yaml` files (components excepted); `false` after reporting.
fn has_yaml_extension(path: &str, span: &Span, d: &mut Diags) -> bool {
    let ok = path.ends_with(".yml") || path.ends_with(".yaml");
    if !ok {
        d.error(
            span,
            format!("included file `{path}` does not have a YAML extension (.yml or .yaml)"),
        );
    }
    ok
}

/// How a file to include is named before it is read.
fn display(source: &Source) -> String {
    match source {
        Source::Local(path) => path.clone(),
        Source::External(External::Remote { url }) => url.clone(),
        Source::External(External::Template { name }) => format!("template {name}"),
        Source::External(External::Project {
            project,
            reference,
            file,
        }) => match reference {
            Some(r) => format!("{project}@{r}:{file}"),
            None => format!("{project}:{file}"),
        },
        Source::External(External::Component { address }) => address.clone(),
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
