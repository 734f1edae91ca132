//! From a loaded pipeline to the jobs of this run: `workflow: rules`, job `rules` /
//! `only` / `except`, and the user's selection (job names, `--needs`, `--stage`, `--manual`).

use crate::git::GitInfo;
pub use crate::rules_eval::{RuleOutcome, RulesEnv, WorkflowOutcome};
use crate::vars::{VarSet, VarSources};
use std::path::Path;
use wharf_ci::{Job, Pipeline, When};

/// What the user asked to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Jobs named on the command line (a `parallel` job's name selects all its instances);
    /// empty with no `stages` = every job.
    pub jobs: Vec<String>,
    /// `--stage`: every job of these stages.
    pub stages: Vec<String>,
    /// `--needs`: also run what the selected jobs need, transitively.
    pub with_needs: bool,
    /// `--manual`: manual jobs to play in this run (named jobs are played too).
    pub manual: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no job named `{name}` in the pipeline{hint}")]
    UnknownJob { name: String, hint: String },
    #[error("no stage named `{name}` in the pipeline (stages: {stages})")]
    UnknownStage { name: String, stages: String },
    #[error("{0}")]
    Rules(String),
    #[error(
        "job `{job}` needs `{need}`, which is not in the pipeline ({why})\n  fix: make the need optional (`needs: [{{job: {need}, optional: true}}]`) or align the two jobs' rules"
    )]
    MissingNeed {
        job: String,
        need: String,
        why: String,
    },
}

/// One job of the pipeline with the decision about it.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// The job with `when`, `allow_failure`, `needs`, `start_in` and `variables` as its
    /// matching rule set them.
    pub job: Job,
    pub outcome: RuleOutcome,
    /// Part of this run (created by the rules and selected).
    pub selected: bool,
    /// A manual job the user asked for.
    pub play: bool,
    /// Indices (in `Plan::jobs`) of the selected jobs it waits for; `None` = stage order.
    pub needs: Option<Vec<usize>>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub workflow: Result<WorkflowOutcome, String>,
    pub jobs: Vec<PlannedJob>,
}

impl Plan {
    pub fn selected(&self) -> impl Iterator<Item = (usize, &PlannedJob)> {
        self.jobs.iter().enumerate().filter(|(_, j)| j.selected)
    }
}

/// Evaluate workflow and job rules with `vars` (predefined, global, variables file and CLI
/// variables), then apply the selection.
pub fn plan(
    pipeline: &Pipeline,
    sources: &VarSources,
    git: &GitInfo,
    project_dir: &Path,
    selection: &Selection,
) -> Result<Plan, PlanError> {
    check_selection(pipeline, selection)?;
    let vars = sources.build(&[], &[], None, &[]);
    let files = std::sync::OnceLock::new();
    let env = RulesEnv {
        vars: &vars,
        git,
        project_dir,
        files: &files,
    };
    let workflow = evaluate_workflow(pipeline, &env)
        .map_err(PlanError::Rules)?
        .map_err(|why| format!("workflow: rules: {why}"));
    let mut sources = sources.clone();
    if let Ok(w) = &workflow {
        sources.workflow = w.variables.clone();
    }
    let mut jobs = Vec::with_capacity(pipeline.jobs.len());
    for job in &pipeline.jobs {
        let job_vars = sources.build(
            &crate::predefined::job(job),
            &job.variables,
            job.inherit_variables.as_deref(),
            &[],
        );
        let job_env = RulesEnv {
            vars: &job_vars,
            git,
            project_dir,
            files: &files,
        };
        let outcome = evaluate_job(job, &job_env).map_err(PlanError::Rules)?;
        let mut effective = job.clone();
        effective.when = outcome.when;
        effective.allow_failure = outcome.allow_failure;
        if outcome.needs.is_some() {
            effective.needs = outcome.needs.clone();
        }
        if outcome.start_in.is_some() {
            effective.start_in = outcome.start_in;
        }
        effective
            .variables
            .extend(outcome.variables.iter().cloned());
        expand_environment(&mut effective, &job_vars);
        jobs.push(PlannedJob {
            job: effective,
            outcome,
            selected: false,
            play: false,
            needs: None,
        });
    }
    let mut plan = Plan { workflow, jobs };
    if plan.workflow.is_ok() {
        if let Some(why) = nothing_to_create(&plan.jobs) {
            plan.workflow = Err(why);
        }
    }
    if plan.workflow.is_ok() {
        select(&mut plan, selection);
        resolve_needs(&mut plan, selection)?;
    }
    Ok(plan)
}

/// Why GitLab creates no pipeline of these jobs, if it does not (`Chain::Populate`): no job is
/// left once the rules ran, or only jobs of `.pre` and `.post`, which "alone are not considered
/// a complete pipeline". A selection does not count: it picks from the pipeline GitLab makes.
fn nothing_to_create(jobs: &[PlannedJob]) -> Option<String> {
    let included = || jobs.iter().filter(|j| j.outcome.included);
    if included().next().is_none() {
        return Some(
            "the rules configuration prevented any jobs from being added to the pipeline".into(),
        );
    }
    let edges_only = included().all(|j| matches!(j.job.stage.as_str(), ".pre" | ".post"));
    edges_only.then(|| {
        "only `.pre` and `.post` jobs would run, and GitLab creates no pipeline of those alone (add a job of another stage, or check its rules)".into()
    })
}

/// GitLab expands `environment: name` and then `url` with the job's variables; the url may use
/// the environment's own `CI_ENVIRONMENT_NAME`/`CI_ENVIRONMENT_SLUG` (a common review-app idiom).
fn expand_environment(job: &mut Job, vars: &VarSet) {
    let Some(name) = &job.environment else {
        return;
    };
    let name = vars.expand(name);
    if let Some(url) = &job.environment_url {
        let slug = crate::predefined::environment_slug(&name);
        let lookup = |n: &str| match n {
            crate::predefined::CI_ENVIRONMENT_NAME => Some(name.clone()),
            crate::predefined::CI_ENVIRONMENT_SLUG => Some(slug.clone()),
            _ => vars.resolved(n),
        };
        job.environment_url = Some(crate::vars::expand_with(url, &lookup));
    }
    job.environment = Some(name);
}

fn matches_name(job: &Job, name: &str) -> bool {
    job.name == name || job.parallel.as_ref().is_some_and(|p| p.base_name == name)
}

fn check_selection(pipeline: &Pipeline, selection: &Selection) -> Result<(), PlanError> {
    for name in selection.jobs.iter().chain(&selection.manual) {
        if !pipeline.jobs.iter().any(|j| matches_name(j, name)) {
            let names: Vec<&str> = pipeline.jobs.iter().map(|j| j.name.as_str()).collect();
            let hint = wharf_ci::suggest::closest(name, names.iter().copied())
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_else(|| format!(" (jobs: {})", names.join(", ")));
            return Err(PlanError::UnknownJob {
                name: name.clone(),
                hint,
            });
        }
    }
    for stage in &selection.stages {
        if !pipeline.stages.contains(stage) {
            return Err(PlanError::UnknownStage {
                name: stage.clone(),
                stages: pipeline.stages.join(", "),
            });
        }
    }
    Ok(())
}

fn select(plan: &mut Plan, selection: &Selection) {
    let everything = selection.jobs.is_empty() && selection.stages.is_empty();
    for pj in &mut plan.jobs {
        let named = selection.jobs.iter().any(|n| matches_name(&pj.job, n));
        let by_stage = selection.stages.contains(&pj.job.stage);
        // A job the rules leave out runs only when named explicitly (it is then reported as
        // skipped with the rules' reason, not run).
        pj.selected = (everything || by_stage) && pj.outcome.included || named;
        pj.play = named || selection.manual.iter().any(|n| matches_name(&pj.job, n));
    }
    if selection.with_needs {
        // Transitive closure over `needs` (by name, parallel instances included).
        loop {
            let wanted: Vec<String> = plan
                .jobs
                .iter()
                .filter(|j| j.selected)
                .flat_map(|j| j.job.needs.iter().flatten().map(|n| n.job.clone()))
                .collect();
            let mut changed = false;
            for pj in &mut plan.jobs {
                if !pj.selected
                    && pj.outcome.included
                    && wanted.iter().any(|n| matches_name(&pj.job, n))
                {
                    pj.selected = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }
}

fn resolve_needs(plan: &mut Plan, selection: &Selection) -> Result<(), PlanError> {
    let full_run = selection.jobs.is_empty() && selection.stages.is_empty();
    let mut resolved = Vec::with_capacity(plan.jobs.len());
    for pj in &plan.jobs {
        let Some(needs) = &pj.job.needs else {
            resolved.push(None);
            continue;
        };
        let mut indices = Vec::new();
        for need in needs {
            let targets: Vec<usize> = plan
                .jobs
                .iter()
                .enumerate()
                .filter(|(_, other)| matches_name(&other.job, &need.job))
                .map(|(i, _)| i)
                .collect();
            let in_run: Vec<usize> = targets
                .iter()
                .copied()
                .filter(|&i| plan.jobs[i].selected)
                .collect();
            if in_run.is_empty() && full_run && pj.selected && !need.optional {
                let why = targets
                    .first()
                    .map(|&i| plan.jobs[i].outcome.why.clone())
                    .unwrap_or_else(|| "no such job".into());
                return Err(PlanError::MissingNeed {
                    job: pj.job.name.clone(),
                    need: need.job.clone(),
                    why,
                });
            }
            // In a partial run, a need outside the selection is taken as done: its artifacts
            // from an earlier run are used.
            indices.extend(in_run);
        }
        resolved.push(Some(indices));
    }
    for (pj, needs) in plan.jobs.iter_mut().zip(resolved) {
        pj.needs = needs;
    }
    Ok(())
}

/// `workflow: rules`. Without rules every pipeline is created.
pub fn evaluate_workflow(
    pipeline: &Pipeline,
    env: &RulesEnv<'_>,
) -> Result<Result<WorkflowOutcome, String>, String> {
    let Some(workflow) = &pipeline.workflow else {
        return Ok(Ok(WorkflowOutcome {
            variables: Vec::new(),
            why: "no workflow rules".into(),
        }));
    };
    if workflow.rules.is_empty() {
        return Ok(Ok(WorkflowOutcome::default()));
    }
    crate::rules_eval::workflow(workflow, env)
}

/// A job's `rules`, or `only`/`except`, or GitLab's default (`only: [branches, tags]`, which
/// always holds locally).
pub fn evaluate_job(job: &Job, env: &RulesEnv<'_>) -> Result<RuleOutcome, String> {
    let default = RuleOutcome {
        included: job.when != When::Never,
        when: job.when,
        allow_failure: job.allow_failure,
        variables: Vec::new(),
        needs: None,
        start_in: None,
        why: if job.when == When::Never {
            "when: never".into()
        } else {
            "always".into()
        },
    };
    if !job.rules.is_empty() {
        return crate::rules_eval::job_rules(job, env);
    }
    if job.only.is_some() || job.except.is_some() {
        let included = crate::rules_eval::only_except(job, env)?;
        return Ok(match included {
            Ok(why) => RuleOutcome { why, ..default },
            Err(why) => RuleOutcome {
                included: false,
                why,
                ..default
            },
        });
    }
    Ok(default)
}
