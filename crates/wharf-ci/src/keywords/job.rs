//! One resolved job (extends and `default:` applied) -> [`Job`], keyword by keyword through
//! the [`super::table`].

use super::draft::JobDraft;
use super::needs::{JobRefs, needed_jobs};
use super::rules::check_job_conflicts;
use super::table::{Reader, job_keyword, job_keywords};
use crate::diagnostic::Diags;
use crate::model::{Job, When};
use crate::read::{flattened, set_entry};
use crate::span::Span;
use crate::suggest::did_you_mean;
use crate::yaml::{Map, Value};

/// Convert one resolved (extends + default applied) job.
pub(crate) fn job(
    name: &str,
    span: &Span,
    m: &Map,
    stages: &[String],
    d: &mut Diags,
) -> Option<(Job, JobRefs)> {
    let errors_before = count_errors(d);
    // `Processable`: `validates :name, length: { maximum: 255 }`.
    if name.chars().count() > 255 {
        d.error(
            span,
            format!(
                "job name `{}...` is {} characters long, more than GitLab's 255",
                name.chars().take(40).collect::<String>(),
                name.chars().count()
            ),
        );
    }
    let mut draft = JobDraft::new(name, span);
    for (key, e) in m {
        let v = &e.value;
        let Some(keyword) = job_keyword(key) else {
            d.error(
                &e.key_span,
                format!("unknown keyword `{key}` in job `{name}`"),
            )
            .help_opt(did_you_mean(key, job_keywords()));
            continue;
        };
        let read = match keyword.reader {
            Reader::Job(read) => read,
            Reader::Unsupported => {
                if !v.is_null() {
                    super::recorded::check(key, v, &format!("`{key}` of job `{name}`"), d);
                }
                draft
                    .job
                    .unsupported
                    .push((key.clone(), e.key_span.clone()));
                continue;
            }
            // `extends` and `inherit` are applied before a job gets here.
            Reader::Loader => continue,
        };
        // `key: null` (or empty) means "not set"; it also blocks inheriting from `default:`.
        if v.is_null() {
            continue;
        }
        read(&mut draft, v, &format!("`{key}` of job `{name}`"), d);
    }
    let JobDraft {
        mut job,
        refs,
        allow_failure_set,
        start_in_span,
        script_invalid,
        stage_invalid,
    } = draft;
    check_job_conflicts(name, m, d);
    match (&start_in_span, job.when) {
        (None, When::Delayed) => {
            d.error(
                span,
                format!("job `{name}` is `when: delayed` but has no `start_in`"),
            )
            .help("add `start_in: 30 minutes` (at most one week)");
        }
        (Some(s), w) if w != When::Delayed => {
            d.error(
                s,
                format!("`start_in` of job `{name}` needs `when: delayed`"),
            );
        }
        _ => {}
    }
    // GitLab: manual jobs (without rules) may fail without failing the pipeline.
    if !allow_failure_set && job.when == When::Manual {
        job.allow_failure = true;
    }
    // `Job`: `mutually_exclusive_keys: %i[script run]`; `publish` "can only be used within a
    // `pages` job" (one named `pages` or with `pages:`).
    if let (Some(_), Some(run)) = (m.get("script"), m.get("run")) {
        d.error(
            &run.key_span,
            format!("job `{name}` has both `script` and `run` (GitLab refuses them together)"),
        );
    }
    if let Some(publish) = m.get("publish") {
        let pages_job = name == "pages"
            || m.get("pages").is_some_and(|p| match &p.value.value {
                Value::Null => false,
                Value::Scalar(s) => s.as_bool() != Some(false),
                _ => true,
            });
        if !pages_job {
            d.error(
                &publish.key_span,
                format!("`publish` of job `{name}` can only be used within a `pages` job (GitLab refuses it)"),
            )
            .help("name the job `pages`, or give it `pages: true`");
        }
    }
    let has_alternative = m.contains_key("trigger") || m.contains_key("run");
    if !has_alternative && job.script.is_empty() && !script_invalid {
        d.error(span, format!("job `{name}` has no script")).help(
            "add `script:` with at least one command, or start the name with `.` to make it a hidden template",
        );
    }
    check_dependencies_are_needed(name, m, &refs, d);
    if !stage_invalid {
        check_stage(&job, &refs, stages, d);
    }
    (count_errors(d) == errors_before).then_some((job, refs))
}

/// GitLab's `Job` (`validate on: :composed`): with both `needs:` and `dependencies:`, every
/// dependency must be among the needed jobs ("should be part of needs"), by the names written
/// (a `parallel: matrix` need names its job).
/// With needs on other pipelines' jobs only, no dependency can be among them ("must be from
/// the same pipeline").
fn check_dependencies_are_needed(name: &str, m: &Map, refs: &JobRefs, d: &mut Diags) {
    let Some(needs) = set_entry(m, "needs") else {
        return;
    };
    let needed = needed_jobs(&needs.value);
    if needed.is_empty() {
        let other_pipelines = flattened(&needs.value).into_iter().any(|item| {
            item.as_map()
                .is_some_and(|n| n.contains_key("project") || n.contains_key("pipeline"))
        });
        if other_pipelines && !refs.dependencies.is_empty() {
            d.error(
                &needs.value.span,
                format!("job `{name}` has `dependencies:`, but its `needs:` name only jobs of other pipelines (GitLab: \"needs corresponding to dependencies must be from the same pipeline\")"),
            )
            .help("add the jobs of `dependencies:` to `needs:`, or drop `dependencies:`");
        }
        return;
    }
    for (dep, span) in &refs.dependencies {
        if !needed.contains(dep) {
            d.error(
                span,
                format!("job `{name}` depends on `{dep}`, which is not in its `needs:` (GitLab: \"should be part of needs\")"),
            )
            .help(format!("add `{dep}` to `needs:`, or drop it from `dependencies:`"));
        }
    }
}

fn count_errors(d: &Diags) -> usize {
    d.0.iter().filter(|x| x.is_error()).count()
}

fn check_stage(job: &Job, refs: &JobRefs, stages: &[String], d: &mut Diags) {
    if stages.contains(&job.stage) {
        return;
    }
    let listed = stages.join(", ");
    match &refs.stage_span {
        Some(span) => {
            let e = d.error(
                span,
                format!(
                    "stage `{}` of job `{}` is not in `stages`",
                    job.stage, job.name
                ),
            );
            let help = match did_you_mean(&job.stage, stages.iter().map(String::as_str)) {
                Some(h) => format!("{h} (stages: {listed})"),
                None => format!("add it to `stages:` (stages: {listed})"),
            };
            e.help(help);
        }
        None => {
            d.error(
                &job.span,
                format!(
                    "job `{}` has no `stage:` and the default stage `test` is not in `stages`",
                    job.name
                ),
            )
            .help(format!("set `stage:` to one of: {listed}"));
        }
    }
}
