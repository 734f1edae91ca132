//! Evaluation of `rules:`, `only`/`except` and `workflow:` for the runner, with GitLab's
//! semantics (see the keywords' converters in `keywords::rules` for what each clause means).
//!
//! Globs (`changes`, `exists`) follow Ruby's `File.fnmatch` with `FNM_PATHNAME | FNM_DOTMATCH |
//! FNM_EXTGLOB` as GitLab uses it: `*` stays inside one folder, `**/` crosses folders, dot files
//! match, `{a,b}` alternates. `$VAR`/`${VAR}` in them are expanded (unknown ones become empty).

use crate::expr;
use crate::model::{Need, OnlyExcept, Rule, Variable, When, Workflow};
use std::time::Duration;

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
        // `/regex/flags` as `RubySyntax` reads it: the text between the first and the last
        // `/` (`/^staging/.*$/` is `^staging/.*$`), RE2. One that does not compile (the loader
        // refuses it) is compared as a name.
        if let Ok(p) = expr::Pattern::compile(pattern) {
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
