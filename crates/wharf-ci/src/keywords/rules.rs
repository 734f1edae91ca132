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

use super::needs::{JobRefs, needs as job_needs, repeated_needs};
use super::settings::start_in;
use crate::diagnostic::Diags;
use crate::expr;
use crate::model::*;
use crate::read::*;
use crate::span::Span;
use crate::yaml::{Map, Node, Value};

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

/// GitLab's `Workflow` takes a job rule's `allow_failure`, `needs` and `start_in` too ("should
/// not be allowed but we can't break this behavior now", gitlab#436473); they do nothing there,
/// and `start_in` still needs a `when: delayed` that workflow rules cannot have.
const WORKFLOW_RULE_KEYS: &[&str] = &[
    "if",
    "changes",
    "exists",
    "when",
    "variables",
    "auto_cancel",
    "allow_failure",
    "needs",
    "start_in",
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
    // `Rules::Rule`: `validates :config, presence: true`.
    if m.is_empty() {
        d.error(
            &n.span,
            format!("a rule of {what} is empty (GitLab: \"can't be blank\")"),
        )
        .help("give it `if:`, `changes:`, `exists:` or `when:`, or remove it");
        return None;
    }
    let known = if workflow {
        WORKFLOW_RULE_KEYS
    } else {
        JOB_RULE_KEYS
    };
    check_keys(m, &format!("a rule of {what}"), known, d);
    if workflow {
        for key in ["allow_failure", "needs"] {
            if let Some(e) = m.get(key) {
                d.warning(
                    &e.key_span,
                    format!("`{key}` has no effect in a rule of {what} (GitLab accepts it and ignores it)"),
                );
            }
        }
    }
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
    for (k, e) in set_entries(m) {
        let v = &e.value;
        let field = format!("`{k}` in a rule of {what}");
        match k.as_str() {
            "if" => r.if_expr = if_expression(v, &field, d),
            "changes" => {
                let (paths, compare_to) = changes(v, &field, d);
                r.changes = paths;
                r.changes_compare_to = compare_to;
            }
            "exists" => r.exists = exists(v, &field, unsupported, d),
            "when" if workflow => r.when = one_of(v, &field, WORKFLOW_WHEN, d),
            "when" => r.when = one_of(v, &field, RULE_WHEN, d),
            "allow_failure" => r.allow_failure = boolean(v, &field, d),
            "variables" => {
                r.variables = super::variables::variables(
                    v,
                    &format!("rule ({what})"),
                    super::variables::Scope::PlainOnly,
                    d,
                )
            }
            "needs" => r.needs = needs(v, &field, unsupported, d),
            "start_in" => {
                start_in_span = Some(v.span.clone());
                r.start_in = start_in(v, &field, d);
            }
            // `Rules::Rule`: `interruptible` a boolean, `auto_cancel` an `AutoCancel`.
            "interruptible" => {
                let valid = boolean(v, &field, d).is_some();
                unsupported.extend(valid.then(|| (format!("rules:{k}"), e.key_span.clone())));
            }
            "auto_cancel" => {
                auto_cancel(v, &field, d);
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

/// `changes:` as a list of globs or `{paths, compare_to}`; GitLab takes no lone string there
/// (`Rules::Rule::Changes`: "should be an array or a hash", its `paths` an array of strings).
fn changes(n: &Node, what: &str, d: &mut Diags) -> (Option<Vec<String>>, Option<String>) {
    match &n.value {
        Value::Map(m) => {
            check_keys(m, what, &["paths", "compare_to"], d);
            let paths = match m.get("paths") {
                Some(e) => strict_string_list(&e.value, &format!("{what} `paths`"), d),
                None => {
                    d.error(&n.span, format!("{what} as a map needs `paths`"));
                    None
                }
            };
            let compare_to = m.get("compare_to").and_then(|e| {
                typed_string_as(&e.value, &format!("{what} `compare_to`"), "a ref", d)
            });
            (at_most_50_paths(paths, n, what, d), compare_to)
        }
        _ => (
            at_most_50_paths(strict_string_list(n, what, d), n, what, d),
            None,
        ),
    }
}

/// `Rules::Rule::Changes` and `Exists` take at most 50 paths (`length: { maximum: 50 }`,
/// `MAX_PATHS`).
fn at_most_50_paths(
    paths: Option<Vec<String>>,
    n: &Node,
    what: &str,
    d: &mut Diags,
) -> Option<Vec<String>> {
    let paths = paths?;
    if paths.len() > 50 {
        d.error(
            &n.span,
            format!("{what} has {} paths, more than GitLab's 50", paths.len()),
        )
        .help("use globs (`src/**/*`) to cover several paths with one");
        return None;
    }
    Some(paths)
}

/// `exists:` as a glob, a list of globs or `{paths, project, ref}` (another project: not
/// offline). GitLab takes a lone string for `exists:` itself but not for its `paths`.
fn exists(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Vec<String>> {
    match &n.value {
        // `Exists` takes a blank config as `SimpleExists` (no paths): a rule that never holds.
        Value::Map(m) if m.is_empty() => Some(Vec::new()),
        Value::Map(m) => {
            check_keys(m, what, &["paths", "project", "ref"], d);
            for key in ["project", "ref"] {
                if let Some(e) = m.get(key) {
                    unsupported.push((format!("rules:exists:{key}"), e.key_span.clone()));
                }
            }
            match m.get("paths") {
                Some(e) => at_most_50_paths(
                    strict_string_list(&e.value, &format!("{what} `paths`"), d),
                    n,
                    what,
                    d,
                ),
                None => {
                    d.error(&n.span, format!("{what} as a map needs `paths`"));
                    None
                }
            }
        }
        _ => at_most_50_paths(string_list(n, what, d), n, what, d),
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
    let mut refs = JobRefs::default();
    let needs = job_needs(n, what, &mut refs, unsupported, d);
    for (need, span) in repeated_needs(&refs) {
        d.error(
            span,
            format!("{what} names `{need}` twice (GitLab refuses duplicated needs)"),
        );
    }
    needs
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
        // GitLab's `Entry::Policy` takes a list of refs or a map, nothing else.
        Value::Scalar(s) => {
            d.error(
                &n.span,
                format!(
                    "{what} must be a list of refs or a map, found a string (GitLab refuses it)"
                ),
            )
            .help(format!("write it as a list: `{key}: [{}]`", s.text));
            None
        }
        Value::Seq(_) => Some(OnlyExcept {
            refs: checked_refs(n, string_list(n, &what, d)?, &what, d),
            ..OnlyExcept::default()
        }),
        // `ComplexPolicy`: `validates :config, presence: true`.
        Value::Map(m) if m.is_empty() => {
            d.error(
                &n.span,
                format!("{what} is an empty map (GitLab refuses it: \"can't be blank\")"),
            )
            .help(format!(
                "remove `{key}:`, or give it `refs`, `variables` or `changes`"
            ));
            None
        }
        Value::Map(m) => {
            check_keys(m, &what, ONLY_EXCEPT_KEYS, d);
            let mut out = OnlyExcept::default();
            for (k, e) in set_entries(m) {
                let v = &e.value;
                let field = format!("{what} `{k}`");
                // `ComplexPolicy` validates `refs` with `array_of_strings_or_regexps`, `variables`
                // and `changes` with `array_of_strings` (no `{paths, compare_to}` map as in a
                // rule), and `kubernetes` with `allowed_values: %w[active]`.
                match k.as_str() {
                    "refs" => {
                        let refs = strict_string_list(v, &field, d).unwrap_or_default();
                        out.refs = checked_refs(v, refs, &field, d);
                    }
                    "variables" => {
                        if let (Some(_), Value::Seq(items)) =
                            (strict_string_list(v, &field, d), &v.value)
                        {
                            out.variables = expressions(items, &field, d);
                        }
                    }
                    "changes" => out.changes = strict_string_list(v, &field, d).unwrap_or_default(),
                    "kubernetes" => {
                        if one_of(v, &field, &[("active", ())], d).is_none() {
                            continue;
                        }
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

/// `only`/`except` refs as `ComplexPolicy` checks them (`array_of_strings_or_regexps`): an
/// entry written `/pattern/flags` must be a valid RE2 pattern.
fn checked_refs(n: &Node, refs: Vec<String>, what: &str, d: &mut Diags) -> Vec<String> {
    for (entry, span) in refs.iter().zip(item_spans(n)) {
        if crate::re2::ruby_syntax(entry).is_none() {
            continue;
        }
        // `RubySyntax`: the text between the first and the last `/`, so `/^staging/.*$/`
        // is the pattern `^staging/.*$`.
        if let Err(e) = expr::Pattern::compile(entry) {
            d.error(&span, format!("{what}: {e}"))
                .help("GitLab compiles `/.../` refs as RE2 patterns; quote the ref's name without slashes to match it as written");
        }
    }
    refs
}

/// A list of expressions (`only:variables`), each checked like `if:`.
fn expressions(items: &[Node], what: &str, d: &mut Diags) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| if_expression(i, what, d))
        .collect()
}

/// GitLab rejects `only`/`except` next to `rules` ("key may not be used with `rules`").
pub(crate) fn check_job_conflicts(job: &str, m: &Map, d: &mut Diags) {
    if m.get("rules").is_none_or(|e| e.value.is_null()) {
        return;
    }
    // `Processable`: `disallowed_keys: { in: %i[only except start_in] }, if: :has_rules_value?`.
    for key in ["only", "except", "start_in"] {
        if let Some(e) = m.get(key).filter(|e| !e.value.is_null()) {
            d.error(
                &e.key_span,
                format!("job `{job}` uses `{key}` and `rules`: GitLab does not allow both"),
            )
            .help(if key == "start_in" {
                "give the rule `when: delayed` and `start_in:` instead"
            } else {
                "express the condition as a rule instead"
            });
        }
    }
}

/// `auto_cancel:` as GitLab's `AutoCancel` takes it: `on_new_commit` among conservative,
/// interruptible, none; `on_job_failure` among none, all.
fn auto_cancel(n: &Node, what: &str, d: &mut Diags) {
    let Some(m) = map(n, what, d) else {
        return;
    };
    check_keys(m, what, &["on_new_commit", "on_job_failure"], d);
    for (key, values) in [
        (
            "on_new_commit",
            &["conservative", "interruptible", "none"][..],
        ),
        ("on_job_failure", &["none", "all"][..]),
    ] {
        if let Some(e) = m.get(key).filter(|e| !e.value.is_null()) {
            let choices: Vec<(&str, ())> = values.iter().map(|v| (*v, ())).collect();
            one_of(&e.value, &format!("{what} `{key}`"), &choices, d);
        }
    }
}

/// `workflow:`. Keys GitLab has but wharf does not act on are warnings.
pub(crate) fn workflow(n: &Node, d: &mut Diags) -> Option<Workflow> {
    if n.is_null() {
        return None;
    }
    let m = map(n, "`workflow`", d)?;
    check_keys(m, "`workflow`", WORKFLOW_KEYS, d);
    let mut out = Workflow::default();
    let mut unsupported = Vec::new();
    for (k, e) in set_entries(m) {
        let v = &e.value;
        match k.as_str() {
            // `Workflow`: `validates :name, length: { minimum: 1, maximum: 255 }`.
            "name" => {
                out.name = typed_string(v, "`workflow` `name`", d).filter(|name| {
                    let fits = (1..=255).contains(&name.chars().count());
                    if !fits {
                        d.error(
                            &v.span,
                            "`workflow` `name` must be 1 to 255 characters long",
                        );
                    }
                    fits
                });
            }
            "rules" => {
                // `Rules`: `validates :config, presence: true`.
                if matches!(&v.value, Value::Seq(items) if items.is_empty()) {
                    d.error(
                        &v.span,
                        "`rules` of `workflow` can't be blank: GitLab refuses the pipeline",
                    )
                    .help("remove `rules:` to always run pipelines");
                }
                out.rules = rule_list(v, "`workflow`", true, &mut unsupported, d);
            }
            "auto_cancel" => {
                auto_cancel(v, "`workflow` `auto_cancel`", d);
                unsupported.push(("workflow:auto_cancel".into(), e.key_span.clone()));
            }
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
