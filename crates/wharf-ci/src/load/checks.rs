//! The checks that need every job: `needs:` and `dependencies:` name visible jobs in suitable
//! stages, and `needs:` form no cycle.

use crate::diagnostic::Diags;
use crate::keywords::{self, JobRefs};
use crate::model::Job;
use crate::span::Span;
use crate::suggest::did_you_mean;
use std::collections::HashMap;

/// `needs:` and `dependencies:` must name visible jobs in suitable stages.
pub(super) fn check_references(jobs: &mut [(Job, JobRefs)], stages: &[String], d: &mut Diags) {
    let stage_of: HashMap<String, usize> = jobs
        .iter()
        .map(|(j, _)| {
            let idx = stages.iter().position(|s| *s == j.stage).unwrap_or(0);
            (j.name.clone(), idx)
        })
        .collect();
    let names: Vec<String> = jobs.iter().map(|(j, _)| j.name.clone()).collect();
    for (job, refs) in jobs.iter_mut() {
        let my_stage = stage_of.get(&job.name).copied().unwrap_or(0);
        let mut dropped = Vec::new();
        for (need, span, optional) in &refs.needs {
            match stage_of.get(need) {
                None if *optional => dropped.push(need.clone()),
                None => {
                    d.error(
                        span,
                        format!("job `{}` needs `{need}`, which is not a job", job.name),
                    )
                    .help_opt(did_you_mean(need, names.iter().map(String::as_str)));
                }
                Some(_) if *need == job.name => {
                    d.error(span, format!("job `{}` needs itself", job.name));
                }
                Some(&s) if s > my_stage => {
                    d.error(
                        span,
                        format!(
                            "job `{}` needs `{need}`, which is in a later stage (`{}`)",
                            job.name, stages[s]
                        ),
                    );
                }
                Some(_) => {}
            }
        }
        for (need, span) in keywords::repeated_needs(refs) {
            d.error(
                span,
                format!(
                    "job `{}` needs `{need}` twice (GitLab refuses duplicated needs)",
                    job.name
                ),
            )
            .help("list each job once; an anchor or `!reference` may have brought it in again");
        }
        if let Some(needs) = &mut job.needs {
            needs.retain(|n| !dropped.contains(&n.job));
        }
        for (dep, span) in &refs.dependencies {
            match stage_of.get(dep) {
                None => {
                    d.error(
                        span,
                        format!("job `{}` depends on `{dep}`, which is not a job", job.name),
                    )
                    .help_opt(did_you_mean(dep, names.iter().map(String::as_str)));
                }
                // GitLab's check is "current or prior stages" (`validate_job_dependency!`).
                Some(&s) if s > my_stage => {
                    d.error(
                        span,
                        format!(
                            "job `{}` depends on `{dep}`, which is in a later stage (`{}`)",
                            job.name, stages[s]
                        ),
                    )
                    .help("GitLab allows `dependencies:` on jobs of the current or earlier stages");
                }
                Some(_) => {}
            }
        }
    }
    check_on_stop(jobs, d);
    check_needs_cycles(jobs, d);
}

/// GitLab's `validate_on_stop_job!`: the job an environment's `on_stop` names exists, has an
/// environment of the same name, and `action: stop`.
fn check_on_stop(jobs: &[(Job, JobRefs)], d: &mut Diags) {
    let by_name: HashMap<&str, &(Job, JobRefs)> =
        jobs.iter().map(|jr| (jr.0.name.as_str(), jr)).collect();
    for (job, refs) in jobs {
        let Some((stop, span)) = &refs.on_stop else {
            continue;
        };
        let problem = match by_name.get(stop.as_str()) {
            None => "is not defined".to_string(),
            Some((stop_job, stop_refs)) => match &stop_job.environment {
                None => "does not have environment defined".to_string(),
                Some(name) if Some(name) != job.environment.as_ref() => {
                    format!("has environment `{name}`, another name")
                }
                Some(_) if stop_refs.environment_action.as_deref() != Some("stop") => {
                    "needs to have `action: stop` in its environment".to_string()
                }
                Some(_) => continue,
            },
        };
        d.error(
            span,
            format!(
                "`on_stop` job `{stop}` of job `{}` {problem} (GitLab refuses the pipeline)",
                job.name
            ),
        );
    }
}

/// GitLab rejects circular `needs:`; without this check the scheduler would wait forever.
fn check_needs_cycles(jobs: &[(Job, JobRefs)], d: &mut Diags) {
    let index: HashMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, (j, _))| (j.name.as_str(), i))
        .collect();
    let edges: Vec<Vec<(usize, &Span)>> = jobs
        .iter()
        .enumerate()
        .map(|(i, (j, _))| {
            j.needs
                .iter()
                .flatten()
                .filter_map(|n| index.get(n.job.as_str()).map(|&t| (t, &n.span)))
                // A job needing itself is reported on its own.
                .filter(|&(t, _)| t != i)
                .collect()
        })
        .collect();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; jobs.len()];
    for start in 0..jobs.len() {
        if state[start] != 0 {
            continue;
        }
        let mut path: Vec<usize> = vec![start];
        let mut next_edge: Vec<usize> = vec![0];
        state[start] = 1;
        while let Some(&node) = path.last() {
            let at = next_edge.last().copied().unwrap_or(0);
            match edges[node].get(at) {
                Some(&(target, span)) => {
                    if let Some(e) = next_edge.last_mut() {
                        *e += 1;
                    }
                    match state[target] {
                        0 => {
                            state[target] = 1;
                            path.push(target);
                            next_edge.push(0);
                        }
                        1 => {
                            let from = path.iter().position(|&n| n == target).unwrap_or(0);
                            let mut chain: Vec<&str> = path[from..]
                                .iter()
                                .map(|&n| jobs[n].0.name.as_str())
                                .collect();
                            chain.push(jobs[target].0.name.as_str());
                            d.error(
                                span,
                                format!("circular needs: {}", chain.join(" -> ")),
                            )
                            .help_opt(Some(
                                "remove one of these needs: GitLab rejects a pipeline whose needs form a cycle"
                                    .to_string(),
                            ));
                        }
                        _ => {}
                    }
                }
                None => {
                    state[node] = 2;
                    path.pop();
                    next_edge.pop();
                }
            }
        }
    }
}
