//! The one place where `rules`, `only`/`except` and `workflow: rules` are evaluated. The
//! expression language is wharf-ci's (`wharf_ci::expr`); `changes` and `exists` match against
//! the work tree here.

use crate::plan::{RuleOutcome, RulesEnv, WorkflowOutcome};
use wharf_ci::{Job, OnlyExcept, Rule, When, Workflow};

/// The conditions of one rule (`if`, `changes`, `exists`; all must hold).
fn rule_matches(rule: &Rule, env: &RulesEnv<'_>) -> Result<bool, String> {
    if let Some(src) = &rule.if_expr {
        let expr = wharf_ci::expr::parse(src)
            .map_err(|e| format!("{}: rules: if `{src}`: {e}", rule.span))?;
        if !expr.evaluate(&|name| env.vars.resolved(name)) {
            return Ok(false);
        }
    }
    if let Some(globs) = &rule.changes {
        let globs = expand_all(globs, env);
        if !any_matches(&globs, &env.git.changed_files, &rule.span)? {
            return Ok(false);
        }
    }
    if let Some(globs) = &rule.exists {
        let globs = expand_all(globs, env);
        if !any_matches(&globs, env.project_files(), &rule.span)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn expand_all(globs: &[String], env: &RulesEnv<'_>) -> Vec<String> {
    globs.iter().map(|g| env.vars.expand(g)).collect()
}

/// GitLab matches `changes`/`exists` with `File.fnmatch` (`**` crosses folders, `*` does not,
/// dot files match).
fn any_matches(
    globs: &[String],
    files: &[String],
    at: &impl std::fmt::Display,
) -> Result<bool, String> {
    let mut set = globset::GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|e| format!("{at}: pattern `{g}`: {e}"))?;
        set.add(glob);
    }
    let set = set.build().map_err(|e| format!("{at}: {e}"))?;
    Ok(files.iter().any(|f| set.is_match(f)))
}

/// `Ok(Ok(..))`: the pipeline is created; `Ok(Err(why))`: it is not.
pub fn workflow(
    workflow: &Workflow,
    env: &RulesEnv<'_>,
) -> Result<Result<WorkflowOutcome, String>, String> {
    for (n, rule) in workflow.rules.iter().enumerate() {
        if !rule_matches(rule, env)? {
            continue;
        }
        let which = describe(n, rule);
        return Ok(match rule.when {
            Some(When::Never) => Err(format!("{which} matched with when: never")),
            _ => Ok(WorkflowOutcome {
                variables: rule.variables.clone(),
                why: format!("{which} matched"),
            }),
        });
    }
    Ok(Err("no rule matched".into()))
}

fn describe(n: usize, rule: &Rule) -> String {
    match &rule.if_expr {
        Some(src) => format!("rule {} (if: {src})", n + 1),
        None => format!("rule {}", n + 1),
    }
}

/// The first matching rule decides; without a match the job is not in the pipeline.
pub fn job_rules(job: &Job, env: &RulesEnv<'_>) -> Result<RuleOutcome, String> {
    for (n, rule) in job.rules.iter().enumerate() {
        if !rule_matches(rule, env)? {
            continue;
        }
        // GitLab: a rule without `when` uses the job's `when` (default on_success).
        let when = rule.when.unwrap_or(job.when);
        let which = describe(n, rule);
        return Ok(RuleOutcome {
            included: when != When::Never,
            when,
            allow_failure: rule.allow_failure.unwrap_or(job.allow_failure),
            variables: rule.variables.clone(),
            needs: rule.needs.clone(),
            start_in: rule.start_in,
            why: if when == When::Never {
                format!("{which}: when: never")
            } else {
                format!("{which} matched")
            },
        });
    }
    Ok(RuleOutcome {
        included: false,
        when: When::Never,
        allow_failure: job.allow_failure,
        variables: Vec::new(),
        needs: None,
        start_in: None,
        why: "no rule matched".into(),
    })
}

/// `Ok(Ok(why))`: included; `Ok(Err(why))`: left out. Each of `only`/`except` holds when every
/// key it gives (`refs`, `variables`, `changes`) has a matching entry, as GitLab evaluates them.
pub fn only_except(job: &Job, env: &RulesEnv<'_>) -> Result<Result<String, String>, String> {
    if let Some(only) = &job.only {
        if !holds(only, env, &job.span)? {
            return Ok(Err("only: did not match".into()));
        }
    }
    if let Some(except) = &job.except {
        if holds(except, env, &job.span)? {
            return Ok(Err("except: matched".into()));
        }
    }
    Ok(Ok(match (&job.only, &job.except) {
        (Some(_), _) => "only: matched".into(),
        _ => "except: did not match".into(),
    }))
}

fn holds(spec: &OnlyExcept, env: &RulesEnv<'_>, at: &wharf_ci::Span) -> Result<bool, String> {
    if !spec.refs.is_empty() {
        let mut any = false;
        for r in &spec.refs {
            if ref_matches(r, env, at)? {
                any = true;
                break;
            }
        }
        if !any {
            return Ok(false);
        }
    }
    if !spec.variables.is_empty() {
        let mut any = false;
        for src in &spec.variables {
            let expr = wharf_ci::expr::parse(src)
                .map_err(|e| format!("{at}: only/except variables `{src}`: {e}"))?;
            if expr.evaluate(&|name| env.vars.resolved(name)) {
                any = true;
                break;
            }
        }
        if !any {
            return Ok(false);
        }
    }
    if !spec.changes.is_empty() {
        let globs = expand_all(&spec.changes, env);
        if !any_matches(&globs, &env.git.changed_files, at)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One `refs` entry: a keyword, a `/regex/`, or a branch or tag name. Locally the pipeline is a
/// `push` pipeline for the checked-out branch (or tag), unless `CI_PIPELINE_SOURCE` says else.
fn ref_matches(r: &str, env: &RulesEnv<'_>, at: &wharf_ci::Span) -> Result<bool, String> {
    let source = env
        .vars
        .resolved("CI_PIPELINE_SOURCE")
        .unwrap_or_else(|| "push".into());
    let branch = env
        .vars
        .resolved("CI_COMMIT_BRANCH")
        .filter(|b| !b.is_empty());
    let tag = env.vars.resolved("CI_COMMIT_TAG").filter(|t| !t.is_empty());
    let ref_name = env.vars.resolved("CI_COMMIT_REF_NAME").unwrap_or_default();
    Ok(match r {
        "branches" => branch.is_some(),
        "tags" => tag.is_some(),
        "pushes" => source == "push",
        "merge_requests" => source == "merge_request_event",
        "api" | "chat" | "external" | "pipelines" | "schedules" | "triggers" | "web" => {
            let want = match r {
                "pipelines" => "pipeline",
                "schedules" => "schedule",
                "triggers" => "trigger",
                "external_pull_requests" => "external_pull_request_event",
                other => other,
            };
            source == want
        }
        "external_pull_requests" => source == "external_pull_request_event",
        _ if r.starts_with('/') && r.len() > 1 => {
            let (body, flags) = match r.rfind('/') {
                Some(end) if end > 0 => (&r[1..end], &r[end + 1..]),
                _ => (&r[1..], ""),
            };
            let source = if flags.is_empty() {
                body.to_string()
            } else {
                format!("(?{flags}){body}")
            };
            let re =
                regex::Regex::new(&source).map_err(|e| format!("{at}: refs pattern {r}: {e}"))?;
            re.is_match(&ref_name)
        }
        // `name@project/path`: the project part cannot be checked locally; the name can.
        _ => {
            let name = r.split('@').next().unwrap_or(r);
            name == ref_name
        }
    })
}
