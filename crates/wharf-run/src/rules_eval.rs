//! The one place where `rules`, `only`/`except` and `workflow: rules` are evaluated: wharf-ci's
//! evaluators (`wharf_ci::evaluate_*`, GitLab's semantics) fed with what this machine knows (the
//! variables, the work tree's changes, the project's files, the checked-out ref).

use crate::git::GitInfo;
use crate::vars::VarSet;
use std::path::Path;
use std::time::Duration;
use wharf_ci::{Job, Need, Rule, RuleContext, Variable, When, Workflow};

/// The result of a job's `rules` or `only`/`except`.
#[derive(Debug, Clone)]
pub struct RuleOutcome {
    /// `false`: the job is not added to the pipeline.
    pub included: bool,
    pub when: When,
    pub allow_failure: bool,
    /// `rules: variables` of the matching rule.
    pub variables: Vec<Variable>,
    pub needs: Option<Vec<Need>>,
    pub start_in: Option<Duration>,
    /// Human words for `wharf list` ("rule 2 matched", "except: refs matched"...).
    pub why: String,
}

/// `workflow: rules`: `Err(why)` when the pipeline is not created.
#[derive(Debug, Clone, Default)]
pub struct WorkflowOutcome {
    pub variables: Vec<Variable>,
    pub why: String,
}

/// What rules see: variables (expanded), the work tree's changes, the project files.
pub struct RulesEnv<'a> {
    pub vars: &'a VarSet,
    pub git: &'a GitInfo,
    pub project_dir: &'a Path,
    /// The project's files, listed the first time `exists` asks.
    pub files: &'a std::sync::OnceLock<Vec<String>>,
}

impl RulesEnv<'_> {
    pub fn project_files(&self) -> &[String] {
        self.files.get_or_init(|| {
            crate::files::snapshot(self.project_dir)
                .map(|files| {
                    files
                        .iter()
                        .map(|p| p.to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default()
        })
    }
}

/// Call `f` with the [`RuleContext`] for `env`.
fn with_context<T>(
    env: &RulesEnv<'_>,
    default_when: When,
    f: impl FnOnce(&RuleContext<'_>) -> T,
) -> T {
    let variables = |name: &str| env.vars.resolved(name);
    let changed = |compare_to: Option<&str>| match compare_to {
        None => Some(env.git.changed_files.clone()),
        Some(base) => crate::git::changed_since(env.project_dir, base),
    };
    let ctx = RuleContext {
        variables: &variables,
        changed_files: &changed,
        project_files: env.project_files(),
        default_when,
    };
    f(&ctx)
}

fn describe(n: usize, rule: &Rule) -> String {
    match &rule.if_expr {
        Some(src) => format!("rule {} (if: {src})", n + 1),
        None => format!("rule {}", n + 1),
    }
}

/// `Ok(Ok(..))`: the pipeline is created; `Ok(Err(why))`: it is not.
pub fn workflow(
    workflow: &Workflow,
    env: &RulesEnv<'_>,
) -> Result<Result<WorkflowOutcome, String>, String> {
    let outcome = with_context(env, When::Always, |ctx| {
        wharf_ci::evaluate_workflow(Some(workflow), ctx)
    });
    let which = outcome.matched.map(|n| describe(n, &workflow.rules[n]));
    Ok(match (outcome.create, which) {
        (true, which) => Ok(WorkflowOutcome {
            variables: outcome.variables,
            why: which.map_or_else(|| "no workflow rules".into(), |w| format!("{w} matched")),
        }),
        (false, Some(which)) => Err(format!("{which} matched with when: never")),
        (false, None) => Err("no rule matched".into()),
    })
}

/// The first matching rule decides; without a match the job is not in the pipeline.
pub fn job_rules(job: &Job, env: &RulesEnv<'_>) -> Result<RuleOutcome, String> {
    let outcome = with_context(env, job.when, |ctx| {
        wharf_ci::evaluate_rules(&job.rules, ctx)
    });
    let why = match outcome.matched {
        Some(n) if outcome.when == When::Never => {
            format!("{}: when: never", describe(n, &job.rules[n]))
        }
        Some(n) => format!("{} matched", describe(n, &job.rules[n])),
        None => "no rule matched".into(),
    };
    Ok(RuleOutcome {
        included: outcome.included(),
        when: outcome.when,
        // The loader leaves a job with rules at its own `allow_failure` (GitLab: a rule's
        // `when: manual` does not turn it on).
        allow_failure: outcome.allow_failure.unwrap_or(job.allow_failure),
        variables: outcome.variables,
        needs: outcome.needs,
        start_in: outcome.start_in,
        why,
    })
}

/// `Ok(Ok(why))`: included; `Ok(Err(why))`: left out.
pub fn only_except(job: &Job, env: &RulesEnv<'_>) -> Result<Result<String, String>, String> {
    let variables = |name: &str| env.vars.resolved(name);
    let ref_name = env.vars.resolved("CI_COMMIT_REF_NAME").unwrap_or_default();
    let source = env
        .vars
        .resolved("CI_PIPELINE_SOURCE")
        .unwrap_or_else(|| "push".into());
    let is_tag = env
        .vars
        .resolved("CI_COMMIT_TAG")
        .is_some_and(|t| !t.is_empty());
    let project_path = env.vars.resolved("CI_PROJECT_PATH");
    let ctx = wharf_ci::RefContext {
        variables: &variables,
        ref_name: &ref_name,
        is_tag,
        source: &source,
        project_path: project_path.as_deref(),
        changed_files: Some(&env.git.changed_files),
    };
    let included = wharf_ci::evaluate_only_except(job.only.as_ref(), job.except.as_ref(), &ctx);
    let which = match (&job.only, &job.except) {
        (Some(_), Some(_)) => "only/except",
        (Some(_), None) => "only",
        _ => "except",
    };
    Ok(if included {
        Ok(format!("{which} matched {ref_name}"))
    } else {
        Err(format!("{which} excluded {ref_name}"))
    })
}
