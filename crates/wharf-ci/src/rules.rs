//! `rules:`, `only:`/`except:` and `workflow:`: YAML -> model at load time (every `if:` is parsed
//! then, and a syntax error points at its exact column), and their evaluation for the runner,
//! with GitLab's semantics:
//!
//! - `rules`: the first rule whose clauses (`if`, `changes`, `exists`) all hold decides; a rule
//!   with none of them always holds. Its `when` defaults to the job's own `when` (itself
//!   `on_success` by default). No rule holding means the job is not added (`when: never`).
//!   `when: manual` from a rule does *not* make `allow_failure` default to true (GitLab's docs:
//!   "`false` for jobs that use `when: manual` inside `rules`"); [`RulesOutcome::allow_failure`]
//!   is `None` when the rule does not set it, and the job's own `allow_failure:` applies.
//! - `changes` holds when a changed file matches one of the globs. Where GitLab has nothing to
//!   compare with (new branches, tags, schedules, web pipelines) it always holds; the runner says
//!   so by returning `None` for the changed files.
//! - `only`/`except`: a job with neither (and no `rules`) has `only: [branches, tags]`. `only`
//!   holds when every key given holds (`refs`: any pattern, `variables`: any expression,
//!   `changes`: any file); `except` excludes the job when *any* of its keys holds, as GitLab's
//!   `none_of_except?` does.
//! - `workflow: rules`: the first matching rule creates the pipeline unless it says
//!   `when: never`; no match means no pipeline. Without `workflow: rules` the pipeline is created.
//!
//! Globs (`changes`, `exists`) follow Ruby's `File.fnmatch` with `FNM_PATHNAME | FNM_DOTMATCH |
//! FNM_EXTGLOB` as GitLab uses it: `*` stays inside one folder, `**/` crosses folders, dot files
//! match, `{a,b}` alternates. `$VAR`/`${VAR}` in them are expanded (unknown ones become empty).

use crate::convert::{self, boolean, check_keys, string};
use crate::diagnostic::Diags;
use crate::expr;
use crate::model::{Need, OnlyExcept, Rule, Span, Variable, When, Workflow};
use crate::suggest::did_you_mean;
use crate::yaml::{Map, Node, Value};
use std::time::Duration;

const JOB_RULE_KEYS: &[&str] = &[
    "if",
    "changes",
    "exists",
    "when",
    "allow_failure",
    "variables",
    "needs",
    "start_in",
    "interruptible",
];

const WORKFLOW_RULE_KEYS: &[&str] = &[
    "if",
    "changes",
    "exists",
    "when",
    "variables",
    "auto_cancel",
];

const WORKFLOW_KEYS: &[&str] = &["rules", "name", "auto_cancel"];

const ONLY_EXCEPT_KEYS: &[&str] = &["refs", "variables", "changes", "kubernetes"];

const RULE_WHEN: &[(&str, When)] = &[
    ("on_success", When::OnSuccess),
    ("on_failure", When::OnFailure),
    ("always", When::Always),
    ("manual", When::Manual),
    ("delayed", When::Delayed),
    ("never", When::Never),
];

const WORKFLOW_WHEN: &[(&str, When)] = &[("always", When::Always), ("never", When::Never)];

/// `!reference` may splice a list of rules into the list: flatten nested lists like GitLab.
const MAX_RULES_NESTING: usize = 10;

fn flatten<'a>(n: &'a Node, depth: usize, out: &mut Vec<&'a Node>) {
    match &n.value {
        Value::Seq(items) if depth < MAX_RULES_NESTING => {
            for item in items {
                flatten(item, depth + 1, out);
            }
        }
        _ => out.push(n),
    }
}

/// The `rules:` of job `job`.
pub(crate) fn job_rules(
    n: &Node,
    job: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Vec<Rule> {
    if matches!(&n.value, Value::Seq(items) if items.is_empty()) {
        // GitLab refuses the whole pipeline here ("jobs:<job>:rules config can't be blank"),
        // rather than reading it as "no rules" or as "never".
        d.error(
            &n.span,
            format!("`rules` of job `{job}` can't be blank: GitLab refuses the pipeline"),
        )
        .help("remove `rules:` to always add the job, or write `- when: never` to never add it");
        return Vec::new();
    }
    rule_list(n, &format!("`rules` of job `{job}`"), false, unsupported, d)
}

fn rule_list(
    n: &Node,
    what: &str,
    workflow: bool,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Vec<Rule> {
    if !matches!(n.value, Value::Seq(_)) {
        d.error(
            &n.span,
            format!("{what} must be a list of rules, found {}", n.kind()),
        )
        .help("write each rule as a list item: `- if: $CI_COMMIT_BRANCH`");
        return Vec::new();
    }
    let mut items = Vec::new();
    flatten(n, 0, &mut items);
    items
        .into_iter()
        .filter_map(|item| rule(item, what, workflow, unsupported, d))
        .collect()
}

fn rule(
    n: &Node,
    what: &str,
    workflow: bool,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Rule> {
    let Some(m) = n.as_map() else {
        d.error(
            &n.span,
            format!("each rule in {what} must be a map, found {}", n.kind()),
        );
        return None;
    };
    let known = if workflow {
        WORKFLOW_RULE_KEYS
    } else {
        JOB_RULE_KEYS
    };
    check_keys(m, &format!("a rule of {what}"), known, d);
    let mut r = Rule {
        if_expr: None,
        changes: None,
        changes_compare_to: None,
        exists: None,
        when: None,
        allow_failure: None,
        variables: Vec::new(),
        needs: None,
        start_in: None,
        span: n.span.clone(),
    };
    let mut start_in_span = None;
    for (k, e) in m {
        let v = &e.value;
        if v.is_null() {
            continue;
        }
        let field = format!("`{k}` in a rule of {what}");
        match k.as_str() {
            "if" => r.if_expr = if_expression(v, &field, d),
            "changes" => {
                let (paths, compare_to) = changes(v, &field, d);
                r.changes = paths;
                r.changes_compare_to = compare_to;
            }
            "exists" => r.exists = exists(v, &field, unsupported, d),
            "when" if workflow => r.when = choice(v, &field, WORKFLOW_WHEN, d),
            "when" => r.when = choice(v, &field, RULE_WHEN, d),
            "allow_failure" => r.allow_failure = boolean(v, &field, d),
            "variables" => r.variables = convert::variables(v, &format!("rule ({what})"), d),
            "needs" => r.needs = needs(v, &field, unsupported, d),
            "start_in" => {
                start_in_span = Some(v.span.clone());
                r.start_in = crate::keywords::start_in(v, &field, d);
            }
            "interruptible" | "auto_cancel" => {
                unsupported.push((format!("rules:{k}"), e.key_span.clone()));
            }
            _ => {}
        }
    }
    match (start_in_span, r.when) {
        (Some(span), w) if w != Some(When::Delayed) => {
            d.error(
                &span,
                format!("`start_in` in a rule of {what} needs `when: delayed`"),
            );
        }
        (None, Some(When::Delayed)) => {
            d.error(
                &n.span,
                format!("a rule of {what} has `when: delayed` but no `start_in`"),
            )
            .help("add `start_in: 30 minutes` (at most one week)");
        }
        _ => {}
    }
    Some(r)
}

/// One of `choices`, by name.
fn choice(n: &Node, what: &str, choices: &[(&str, When)], d: &mut Diags) -> Option<When> {
    let text = string(n, what, d)?;
    if let Some((_, w)) = choices.iter().find(|(c, _)| *c == text) {
        return Some(*w);
    }
    let names: Vec<&str> = choices.iter().map(|(c, _)| *c).collect();
    d.error(
        &n.span,
        format!("{what} must be one of {}, found `{text}`", names.join(", ")),
    )
    .help_opt(did_you_mean(&text, names.iter().copied()));
    None
}

/// An `if:` expression, parsed now so that a syntax error is reported where it is written.
pub(crate) fn if_expression(n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    let Value::Scalar(s) = &n.value else {
        d.error(
            &n.span,
            format!(
                "{what} must be an expression (a string), found {}",
                n.kind()
            ),
        );
        return None;
    };
    match expr::parse(&s.text) {
        Ok(_) => Some(s.text.clone()),
        Err(e) => {
            let span = expression_span(n, &s.text, s.plain, e.column);
            let help = if s.text.contains('\n') {
                None
            } else {
                Some(format!("the expression: {}", s.text))
            };
            d.error(
                &span,
                format!("invalid expression in {what}: {}", e.message),
            )
            .help_opt(help);
            None
        }
    }
}

/// Where character `column` of a scalar's text is in the file. Exact for one-line plain scalars
/// and for quoted ones without escapes (the only ones whose written length is the text's own,
/// plus the quotes); otherwise the scalar's start.
pub(crate) fn expression_span(n: &Node, text: &str, plain: bool, column: usize) -> Span {
    let mut span = n.span.clone();
    let skip = match (plain, span.len) {
        (true, len) if len == text.len() => 0,
        (false, len) if len == text.len() + 2 => 1,
        _ => return span,
    };
    if text.contains(['\n', '\r']) {
        return span;
    }
    let (byte, width) = text
        .char_indices()
        .nth(column)
        .map_or((text.len(), 0), |(i, c)| (i, c.len_utf8()));
    span.offset += skip + byte;
    span.column += skip + column;
    span.len = width;
    span
}

/// `changes:` as a list of globs or `{paths, compare_to}`.
fn changes(n: &Node, what: &str, d: &mut Diags) -> (Option<Vec<String>>, Option<String>) {
    match &n.value {
        Value::Map(m) => {
            check_keys(m, what, &["paths", "compare_to"], d);
            let paths = match m.get("paths") {
                Some(e) => convert::string_list(&e.value, &format!("{what} `paths`"), d),
                None => {
                    d.error(&n.span, format!("{what} as a map needs `paths`"));
                    None
                }
            };
            let compare_to = m
                .get("compare_to")
                .and_then(|e| string(&e.value, &format!("{what} `compare_to`"), d));
            (paths, compare_to)
        }
        _ => (convert::string_list(n, what, d), None),
    }
}

/// `exists:` as a list of globs or `{paths, project, ref}` (another project: not offline).
fn exists(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Vec<String>> {
    match &n.value {
        Value::Map(m) => {
            check_keys(m, what, &["paths", "project", "ref"], d);
            for key in ["project", "ref"] {
                if let Some(e) = m.get(key) {
                    unsupported.push((format!("rules:exists:{key}"), e.key_span.clone()));
                }
            }
            match m.get("paths") {
                Some(e) => convert::string_list(&e.value, &format!("{what} `paths`"), d),
                None => {
                    d.error(&n.span, format!("{what} as a map needs `paths`"));
                    None
                }
            }
        }
        _ => convert::string_list(n, what, d),
    }
}

/// `needs:` of a rule: the same forms as a job's `needs:` (job names or `{job, artifacts,
/// optional}`), parsed by the same code.
fn needs(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Vec<Need>> {
    let mut refs = crate::convert::JobRefs::default();
    crate::convert::needs(n, what, &mut refs, unsupported, d)
}

/// `only:` or `except:` (`key` says which) of job `job`.
pub(crate) fn only_except(
    n: &Node,
    key: &str,
    job: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<OnlyExcept> {
    let what = format!("`{key}` of job `{job}`");
    match &n.value {
        Value::Scalar(_) | Value::Seq(_) => Some(OnlyExcept {
            refs: convert::string_list(n, &what, d)?,
            ..OnlyExcept::default()
        }),
        Value::Map(m) => {
            check_keys(m, &what, ONLY_EXCEPT_KEYS, d);
            let mut out = OnlyExcept::default();
            for (k, e) in m {
                let v = &e.value;
                if v.is_null() {
                    continue;
                }
                let field = format!("{what} `{k}`");
                match k.as_str() {
                    "refs" => out.refs = convert::string_list(v, &field, d).unwrap_or_default(),
                    "variables" => {
                        out.variables = expressions(v, &field, d);
                    }
                    "changes" => out.changes = changes(v, &field, d).0.unwrap_or_default(),
                    "kubernetes" => {
                        unsupported.push((format!("{key}:kubernetes"), e.key_span.clone()));
                    }
                    _ => {}
                }
            }
            Some(out)
        }
        _ => {
            d.error(
                &n.span,
                format!(
                    "{what} must be a list of refs or a map with `refs`, `variables`, `changes`, found {}",
                    n.kind()
                ),
            );
            None
        }
    }
}

/// A list of expressions (`only:variables`), each checked like `if:`.
fn expressions(n: &Node, what: &str, d: &mut Diags) -> Vec<String> {
    let items: Vec<&Node> = match &n.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![n],
    };
    items
        .into_iter()
        .filter_map(|i| if_expression(i, what, d))
        .collect()
}

/// GitLab rejects `only`/`except` next to `rules` ("key may not be used with `rules`").
pub(crate) fn check_job_conflicts(job: &str, m: &Map, d: &mut Diags) {
    if m.get("rules").is_none_or(|e| e.value.is_null()) {
        return;
    }
    for key in ["only", "except"] {
        if let Some(e) = m.get(key).filter(|e| !e.value.is_null()) {
            d.error(
                &e.key_span,
                format!("job `{job}` uses `{key}` and `rules`: GitLab does not allow both"),
            )
            .help("express the condition as a rule instead");
        }
    }
}

/// `workflow:`. Keys GitLab has but wharf does not act on are warnings.
pub(crate) fn workflow(n: &Node, d: &mut Diags) -> Option<Workflow> {
    if n.is_null() {
        return None;
    }
    let m = convert::map(n, "`workflow`", d)?;
    check_keys(m, "`workflow`", WORKFLOW_KEYS, d);
    let mut out = Workflow::default();
    let mut unsupported = Vec::new();
    for (k, e) in m {
        let v = &e.value;
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "name" => out.name = string(v, "`workflow` `name`", d),
            "rules" => {
                out.rules = rule_list(v, "`workflow`", true, &mut unsupported, d);
            }
            "auto_cancel" => unsupported.push(("workflow:auto_cancel".into(), e.key_span.clone())),
            _ => {}
        }
    }
    for (k, span) in unsupported {
        d.warning(
            &span,
            format!("`{k}` has no effect in a local run: it is ignored"),
        );
    }
    Some(out)
}

// ---- evaluation ----

/// What rules see while a pipeline is planned.
pub struct RuleContext<'a> {
    /// The job's variables as GitLab's rules see them (predefined, CLI, global and job).
    pub variables: &'a dyn Fn(&str) -> Option<String>,
    /// The changed files (project-relative, `/`-separated), given `changes:compare_to`'s ref
    /// (`None`: the pipeline's own comparison). `None` when there is nothing to compare with;
    /// `changes` then holds, as on GitLab for new branches, tags and scheduled pipelines.
    pub changed_files: &'a dyn Fn(Option<&str>) -> Option<Vec<String>>,
    /// Every file of the project (project-relative, `/`-separated), for `exists`.
    pub project_files: &'a [String],
    /// The job's own `when:` (`on_success` when absent), used by a rule without `when`.
    pub default_when: When,
}

/// The result of a job's `rules:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesOutcome {
    /// Index of the rule that decided; `None` when no rule matched (or there are no rules).
    pub matched: Option<usize>,
    /// `Never`: the job is not added to the pipeline.
    pub when: When,
    /// Set by the rule; `None`: the job's own `allow_failure` applies.
    pub allow_failure: Option<bool>,
    /// The rule's `variables:`, which override the job's.
    pub variables: Vec<Variable>,
    /// The rule's `needs:`, which replace the job's.
    pub needs: Option<Vec<Need>>,
    pub start_in: Option<Duration>,
}

impl RulesOutcome {
    /// The job is part of the pipeline.
    pub fn included(&self) -> bool {
        self.when != When::Never
    }
}

/// Evaluate a job's `rules:`. Without rules the job is added with `ctx.default_when`.
pub fn evaluate_rules(rules: &[Rule], ctx: &RuleContext<'_>) -> RulesOutcome {
    let mut outcome = RulesOutcome {
        matched: None,
        when: ctx.default_when,
        allow_failure: None,
        variables: Vec::new(),
        needs: None,
        start_in: None,
    };
    if rules.is_empty() {
        return outcome;
    }
    match rules.iter().position(|r| rule_holds(r, ctx)) {
        Some(i) => {
            let r = &rules[i];
            outcome.matched = Some(i);
            outcome.when = r.when.unwrap_or(ctx.default_when);
            outcome.allow_failure = r.allow_failure;
            outcome.variables = r.variables.clone();
            outcome.needs = r.needs.clone();
            outcome.start_in = r.start_in;
        }
        None => outcome.when = When::Never,
    }
    outcome
}

/// Whether every clause of `r` holds. An `if:` that does not parse (only possible for a model
/// built by hand: the loader rejects them) is false, as GitLab's `truthful?` rescues errors.
pub fn rule_holds(r: &Rule, ctx: &RuleContext<'_>) -> bool {
    if let Some(src) = &r.if_expr {
        match expr::parse(src) {
            Ok(e) if e.evaluate(ctx.variables) => {}
            _ => return false,
        }
    }
    if let Some(globs) = &r.changes {
        let changed = (ctx.changed_files)(r.changes_compare_to.as_deref());
        if let Some(files) = changed {
            if !any_match(globs, &files, ctx.variables) {
                return false;
            }
        }
    }
    if let Some(globs) = &r.exists {
        if !any_match(globs, ctx.project_files, ctx.variables) {
            return false;
        }
    }
    true
}

/// The result of `workflow:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowOutcome {
    /// Whether GitLab would create the pipeline at all.
    pub create: bool,
    /// Index of the rule that decided.
    pub matched: Option<usize>,
    /// The matched rule's `variables:` (they apply to every job).
    pub variables: Vec<Variable>,
    /// `workflow:name`, unexpanded.
    pub name: Option<String>,
}

/// Evaluate `workflow:` (`ctx.default_when` is not used: workflow rules default to `always`).
pub fn evaluate_workflow(workflow: Option<&Workflow>, ctx: &RuleContext<'_>) -> WorkflowOutcome {
    let mut outcome = WorkflowOutcome {
        create: true,
        matched: None,
        variables: Vec::new(),
        name: workflow.and_then(|w| w.name.clone()),
    };
    let Some(w) = workflow.filter(|w| !w.rules.is_empty()) else {
        return outcome;
    };
    match w.rules.iter().position(|r| rule_holds(r, ctx)) {
        Some(i) => {
            let r = &w.rules[i];
            outcome.matched = Some(i);
            outcome.create = r.when != Some(When::Never);
            if outcome.create {
                outcome.variables = r.variables.clone();
            }
        }
        None => outcome.create = false,
    }
    outcome
}

/// What `only`/`except` see.
pub struct RefContext<'a> {
    pub variables: &'a dyn Fn(&str) -> Option<String>,
    /// The branch or tag name (`CI_COMMIT_REF_NAME`).
    pub ref_name: &'a str,
    pub is_tag: bool,
    /// `CI_PIPELINE_SOURCE`: `push`, `web`, `schedule`, `api`, `trigger`, `merge_request_event`...
    pub source: &'a str,
    /// `group/project`, for refs written `branch@group/project`; `None`: such refs never match.
    pub project_path: Option<&'a str>,
    /// Changed files; `None` when there is nothing to compare with (`changes` then holds).
    pub changed_files: Option<&'a [String]>,
}

/// Whether `only`/`except` let the job into the pipeline (GitLab's `all_of_only? &&
/// none_of_except?`). A missing `only` is GitLab's default `only: [branches, tags]`.
pub fn evaluate_only_except(
    only: Option<&OnlyExcept>,
    except: Option<&OnlyExcept>,
    ctx: &RefContext<'_>,
) -> bool {
    let default_only = OnlyExcept {
        refs: vec!["branches".into(), "tags".into()],
        ..OnlyExcept::default()
    };
    let only = only.unwrap_or(&default_only);
    let specs = |p: &OnlyExcept| {
        let mut held = Vec::new();
        if !p.refs.is_empty() {
            held.push(p.refs.iter().any(|r| ref_matches(r, ctx)));
        }
        if !p.variables.is_empty() {
            held.push(
                p.variables
                    .iter()
                    .any(|src| expr::parse(src).is_ok_and(|e| e.evaluate(ctx.variables))),
            );
        }
        if !p.changes.is_empty() {
            held.push(match ctx.changed_files {
                None => true,
                Some(files) => any_match(&p.changes, files, ctx.variables),
            });
        }
        held
    };
    let only_holds = specs(only).iter().all(|h| *h);
    let except_holds = except.is_some_and(|e| specs(e).iter().any(|h| *h));
    only_holds && !except_holds
}

/// One `only/except:refs` entry: a keyword, a `/regex/`, or a branch/tag name, optionally with
/// `@group/project`.
fn ref_matches(pattern: &str, ctx: &RefContext<'_>) -> bool {
    let (pattern, path) = match pattern.split_once('@') {
        Some((p, path)) => (p, Some(path)),
        None => (pattern, None),
    };
    if path.is_some_and(|path| ctx.project_path != Some(path)) {
        return false;
    }
    let merge_request = ctx.source == "merge_request_event";
    let branch = !ctx.is_tag && !merge_request;
    if (pattern == "tags" && ctx.is_tag) || (pattern == "branches" && branch) {
        return true;
    }
    // GitLab compares keywords with the pipeline source, `_event` dropped, as is or pluralised:
    // `pushes`, `schedules`, `merge_requests`, `triggers`, `web`, `api`, `external`...
    let source = ctx.source.strip_suffix("_event").unwrap_or(ctx.source);
    if pattern == source || pattern == pluralize(source) {
        return true;
    }
    // Names and patterns only apply to branch and tag pipelines.
    if !(branch || ctx.is_tag) {
        return false;
    }
    if pattern.starts_with('/') {
        // `/regex/flags` (RE2); a pattern that does not compile is compared as a name.
        if let Ok(expr::Expr::Match {
            right: expr::MatchTarget::Pattern(p),
            ..
        }) = expr::parse(&format!("$R =~ {pattern}"))
        {
            return p.is_match(ctx.ref_name);
        }
    }
    pattern == ctx.ref_name
}

/// ActiveSupport's `pluralize` for the pipeline sources GitLab has.
fn pluralize(word: &str) -> String {
    if word.ends_with('s') || word.ends_with("sh") || word.ends_with("ch") || word.ends_with('x') {
        format!("{word}es")
    } else {
        format!("{word}s")
    }
}

/// `$NAME` and `${NAME}` replaced by their values (unknown: empty), as GitLab expands paths.
fn expand(s: &str, variables: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        if name.is_empty() {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(&variables(name).unwrap_or_default());
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Whether any of `files` matches any of `globs` (after expanding variables in the globs).
fn any_match(
    globs: &[String],
    files: &[String],
    variables: &dyn Fn(&str) -> Option<String>,
) -> bool {
    let mut builder = globset::GlobSetBuilder::new();
    let mut literal = Vec::new();
    for g in globs {
        let g = expand(g, variables);
        let g = g
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_string();
        match globset::GlobBuilder::new(&g)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
        {
            Ok(glob) => {
                builder.add(glob);
            }
            // fnmatch never fails: a glob globset cannot read is compared as a plain path.
            Err(_) => literal.push(g),
        }
    }
    let set = builder.build().ok();
    files
        .iter()
        .any(|f| set.as_ref().is_some_and(|s| s.is_match(f)) || literal.iter().any(|l| l == f))
}
