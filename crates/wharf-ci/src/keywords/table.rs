//! Every GitLab keyword, declared once: its name, where it may be written (a job, `default:`,
//! the top level) and what reads it. The lists the loader needs (job keywords, what `default:`
//! may set, the top-level keywords that are not jobs) are derived from this table, so adding a
//! keyword is one line here and its converter.

use super::artifacts::{artifacts, caches};
use super::draft::JobDraft;
use super::image::{image, services};
use super::needs::needs;
use super::parallel;
use super::rules::{job_rules, only_except};
use super::settings::{coverage, environment, exit_codes, retry, start_in, tags, timeout};
use super::trigger::trigger;
use super::variables::{Scope, variables};
use crate::diagnostic::Diags;
use crate::model::When;
use crate::read::{
    boolean, item_spans, one_of, script, strict_string_list, string, typed_as_string, typed_string,
};
use crate::yaml::{Node, Value};

/// Where a keyword may be written.
#[derive(Clone, Copy)]
pub(crate) struct Places {
    pub job: bool,
    /// In `default:` (and so in `inherit: default: [...]`).
    pub default: bool,
    /// At the top level, where it is not a job.
    pub top: bool,
}

const fn places(job: bool, default: bool, top: bool) -> Places {
    Places { job, default, top }
}

const JOB: Places = places(true, false, false);
const JOB_DEFAULT: Places = places(true, true, false);
/// Job keywords GitLab still reads at the top level as defaults (deprecated for `default:`).
const JOB_DEFAULT_TOP: Places = places(true, true, true);
const JOB_TOP: Places = places(true, false, true);
const TOP: Places = places(false, false, true);

/// What reads a keyword in a job.
#[derive(Clone, Copy)]
pub(crate) enum Reader {
    /// Fills the job: `(draft, value, "`key` of job `name`", diagnostics)`.
    Job(fn(&mut JobDraft, &Node, &str, &mut Diags)),
    /// GitLab knows it; wharf does not act on it, so it goes to `Job::unsupported`.
    Unsupported,
    /// Applied before conversion (`extends`, `inherit`), or read by the pipeline builder
    /// (top-level keywords).
    Loader,
}

pub(crate) struct Keyword {
    pub name: &'static str,
    pub places: Places,
    pub reader: Reader,
}

const fn kw(name: &'static str, places: Places, reader: Reader) -> Keyword {
    Keyword {
        name,
        places,
        reader,
    }
}

use Reader::{Job as J, Loader as L, Unsupported as U};

/// GitLab's keywords, in alphabetical order.
pub(crate) const KEYWORDS: &[Keyword] = &[
    kw(
        "after_script",
        JOB_DEFAULT_TOP,
        J(|j, v, what, d| j.job.after_script = script(v, what, d).unwrap_or_default()),
    ),
    kw("allow_failure", JOB, J(allow_failure)),
    kw(
        "artifacts",
        JOB_DEFAULT,
        J(|j, v, what, d| j.job.artifacts = artifacts(v, what, &mut j.job.unsupported, d)),
    ),
    kw(
        "before_script",
        JOB_DEFAULT_TOP,
        J(|j, v, what, d| j.job.before_script = script(v, what, d).unwrap_or_default()),
    ),
    kw(
        "cache",
        JOB_DEFAULT_TOP,
        J(|j, v, what, d| j.job.cache = caches(v, what, &mut j.job.unsupported, d)),
    ),
    kw(
        "coverage",
        JOB,
        J(|j, v, what, d| j.job.coverage = coverage(v, what, d)),
    ),
    kw("dast_configuration", JOB, U),
    kw("default", TOP, L),
    kw("dependencies", JOB, J(dependencies)),
    kw(
        "environment",
        JOB,
        J(|j, v, what, d| {
            let env = environment(v, what, d);
            (j.job.environment, j.job.environment_url) = (env.name, env.url);
            j.refs.environment_action = env.action;
            j.refs.on_stop = env.on_stop;
        }),
    ),
    kw(
        "except",
        JOB,
        J(|j, v, _, d| {
            j.job.except = only_except(v, "except", &j.job.name.clone(), &mut j.job.unsupported, d)
        }),
    ),
    kw("extends", JOB, L),
    kw("hooks", JOB_DEFAULT, U),
    kw("id_tokens", JOB_DEFAULT, U),
    kw("identity", JOB_DEFAULT, U),
    kw(
        "image",
        JOB_DEFAULT_TOP,
        J(|j, v, what, d| j.job.image = image(v, what, &mut j.job.unsupported, d)),
    ),
    kw("include", TOP, L),
    kw("inherit", JOB, L),
    kw(
        "interruptible",
        JOB_DEFAULT,
        J(|j, v, what, d| j.job.interruptible = boolean(v, what, d).unwrap_or(false)),
    ),
    kw("manual_confirmation", JOB, U),
    kw(
        "needs",
        JOB,
        J(|j, v, what, d| j.job.needs = needs(v, what, &mut j.refs, &mut j.job.unsupported, d)),
    ),
    kw(
        "only",
        JOB,
        J(|j, v, _, d| {
            j.job.only = only_except(v, "only", &j.job.name.clone(), &mut j.job.unsupported, d)
        }),
    ),
    kw("pages", JOB, U),
    kw(
        "parallel",
        JOB,
        J(|j, v, what, d| j.refs.parallel = parallel::parse(v, what, d)),
    ),
    kw("publish", JOB, U),
    kw("release", JOB, U),
    kw(
        "resource_group",
        JOB,
        // `Processable`: `validates :resource_group, type: String`.
        J(|j, v, what, d| j.job.resource_group = typed_string(v, what, d)),
    ),
    kw(
        "retry",
        JOB_DEFAULT,
        J(|j, v, what, d| j.job.retry = retry(v, what, d)),
    ),
    kw(
        "rules",
        JOB,
        J(|j, v, _, d| j.job.rules = job_rules(v, &j.job.name.clone(), &mut j.job.unsupported, d)),
    ),
    kw("run", JOB, U),
    kw(
        "script",
        JOB,
        J(|j, v, what, d| match script(v, what, d) {
            // `Job`: `validates :script, presence: true`; a blank string is not present.
            Some(_) if matches!(&v.value, Value::Scalar(s) if s.text.trim().is_empty()) => {
                d.error(
                    &v.span,
                    format!("{what} is empty (GitLab: \"can't be blank\")"),
                )
                .help("give it a command, such as `script: [make test]`");
                j.script_invalid = true;
            }
            Some(lines) => j.job.script = lines,
            None => j.script_invalid = true,
        }),
    ),
    kw("secrets", JOB, U),
    kw(
        "services",
        JOB_DEFAULT_TOP,
        J(|j, v, what, d| j.job.services = services(v, what, &mut j.job.unsupported, d)),
    ),
    kw("stage", JOB, J(stage)),
    kw("stages", TOP, L),
    kw(
        "start_in",
        JOB,
        J(|j, v, what, d| {
            j.start_in_span = Some(v.span.clone());
            j.job.start_in = start_in(v, what, d);
        }),
    ),
    kw(
        "tags",
        JOB_DEFAULT,
        J(|j, v, what, d| j.job.tags = tags(v, what, d)),
    ),
    kw(
        "timeout",
        JOB_DEFAULT,
        J(|j, v, what, d| j.job.timeout = timeout(v, what, d)),
    ),
    kw(
        "trigger",
        JOB,
        J(|j, v, what, d| j.job.trigger = trigger(v, what, &mut j.job.unsupported, d)),
    ),
    kw("types", TOP, L),
    kw(
        "variables",
        JOB_TOP,
        J(|j, v, _, d| {
            j.job.variables = variables(v, &format!("job `{}`", j.job.name), Scope::Job, d)
        }),
    ),
    kw("when", JOB, J(when)),
    kw("workflow", TOP, L),
];

/// The keyword `name` of a job, if GitLab has one.
pub(crate) fn job_keyword(name: &str) -> Option<&'static Keyword> {
    KEYWORDS.iter().find(|k| k.name == name && k.places.job)
}

/// Every keyword a job may use.
pub(crate) fn job_keywords() -> impl Iterator<Item = &'static str> + Clone {
    KEYWORDS.iter().filter(|k| k.places.job).map(|k| k.name)
}

/// What `default:` may set (and so what `inherit: default: [...]` may name).
pub(crate) fn default_keywords() -> impl Iterator<Item = &'static str> + Clone {
    KEYWORDS.iter().filter(|k| k.places.default).map(|k| k.name)
}

pub(crate) fn is_default_keyword(name: &str) -> bool {
    default_keywords().any(|k| k == name)
}

/// Top-level keys that are not jobs.
pub(crate) fn top_level() -> impl Iterator<Item = &'static str> + Clone {
    KEYWORDS.iter().filter(|k| k.places.top).map(|k| k.name)
}

pub(crate) fn is_top_level(name: &str) -> bool {
    top_level().any(|k| k == name)
}

/// Top-level keywords GitLab still reads as defaults (deprecated in favour of `default:`).
pub(crate) fn legacy_default_keywords() -> impl Iterator<Item = &'static str> + Clone {
    KEYWORDS
        .iter()
        .filter(|k| k.places.top && k.places.default)
        .map(|k| k.name)
}

const WHEN_CHOICES: &[(&str, When)] = &[
    ("on_success", When::OnSuccess),
    ("on_failure", When::OnFailure),
    ("always", When::Always),
    ("manual", When::Manual),
    ("delayed", When::Delayed),
];

fn when(j: &mut JobDraft, v: &Node, what: &str, d: &mut Diags) {
    // GitLab's job entry accepts only these (`ALLOWED_WHEN` in
    // lib/gitlab/ci/config/entry/job.rb); `never` exists only in rules.
    if matches!(&v.value, Value::Scalar(s) if s.text == "never") {
        d.error(
            &v.span,
            format!("{what} cannot be `never`: GitLab allows `when: never` only in `rules:` and `workflow: rules:`"),
        )
        .help("to keep the job out of the pipeline, use `rules: [{when: never}]` (or delete the job)");
    } else {
        j.job.when = one_of(v, what, WHEN_CHOICES, d).unwrap_or(When::OnSuccess);
    }
}

fn allow_failure(j: &mut JobDraft, v: &Node, what: &str, d: &mut Diags) {
    j.allow_failure_set = true;
    match &v.value {
        Value::Map(m) => {
            j.job.allow_failure = false;
            j.job.allow_failure_exit_codes = exit_codes(m, what, d);
        }
        _ => j.job.allow_failure = boolean(v, what, d).unwrap_or(false),
    }
}

fn stage(j: &mut JobDraft, v: &Node, what: &str, d: &mut Diags) {
    j.refs.stage_span = Some(v.span.clone());
    // `Stage`: `validates :config, type: String` (a plain `1.0` is a float there).
    if let Value::Scalar(s) = &v.value {
        if !typed_as_string(v, s, what, "a string", "", d) {
            j.stage_invalid = true;
            return;
        }
    }
    if let Some(s) = string(v, what, d) {
        j.job.stage = s;
    }
}

fn dependencies(j: &mut JobDraft, v: &Node, what: &str, d: &mut Diags) {
    // GitLab: `validates :dependencies, array_of_strings: true`.
    let list = strict_string_list(v, what, d).unwrap_or_default();
    for (dep, span) in list.iter().zip(item_spans(v)) {
        j.refs.dependencies.push((dep.clone(), span));
    }
    j.job.dependencies = Some(list);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_keyword_is_declared_once_in_order() {
        let names: Vec<&str> = KEYWORDS.iter().map(|k| k.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn the_derived_lists_are_gitlabs() {
        let top: Vec<&str> = top_level().collect();
        assert_eq!(
            top,
            [
                "after_script",
                "before_script",
                "cache",
                "default",
                "image",
                "include",
                "services",
                "stages",
                "types",
                "variables",
                "workflow"
            ]
        );
        let legacy: Vec<&str> = legacy_default_keywords().collect();
        assert_eq!(
            legacy,
            [
                "after_script",
                "before_script",
                "cache",
                "image",
                "services"
            ]
        );
        assert_eq!(job_keywords().count(), 38);
        assert_eq!(default_keywords().count(), 13);
    }
}
