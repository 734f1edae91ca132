//! Converters of single job settings: `retry`, `timeout`/`start_in`, `allow_failure:
//! {exit_codes}`, `tags`, `coverage`, `environment`.

use crate::diagnostic::Diags;
use crate::duration;
use crate::model::*;
use crate::read::*;
use crate::suggest::did_you_mean;
use crate::yaml::{Node, Value};
use std::time::Duration;

/// `retry: when` values: `always` and every failure reason GitLab knows, the keys of
/// `Gitlab::Ci::Status::Build::Failed::REASONS` (its `Retry` entry's `possible_retry_when_values`),
/// in that file's order, plus `runner_interrupted`, which newer GitLab versions added. The one
/// list wharf checks `retry: when` against.
pub(crate) const RETRY_REASONS: &[&str] = &[
    "always",
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "missing_dependency_failure",
    "runner_unsupported",
    "stale_schedule",
    "job_execution_timeout",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
    "forward_deployment_failure",
    "protected_environment_failure",
    "pipeline_loop_detected",
    "invalid_bridge_trigger",
    "downstream_bridge_project_not_found",
    "upstream_bridge_project_not_found",
    "insufficient_bridge_permissions",
    "insufficient_upstream_permissions",
    "bridge_pipeline_is_child_pipeline",
    "downstream_pipeline_creation_failed",
    "secrets_provider_not_found",
    "reached_max_descendant_pipelines_depth",
    "reached_max_pipeline_hierarchy_size",
    "project_deleted",
    "user_blocked",
    "ci_quota_exceeded",
    "no_matching_runner",
    "trace_size_exceeded",
    "builds_disabled",
    "environment_creation_failure",
    "deployment_rejected",
    "ip_restriction_failure",
    "failed_outdated_deployment_job",
    "reached_downstream_pipeline_trigger_rate_limit",
    "runner_interrupted",
];

/// GitLab's cap on `start_in`.
const MAX_START_IN: Duration = Duration::from_secs(7 * 24 * 3600);
/// GitLab's cap on a job `timeout` (one month as Rails counts it).
const MAX_TIMEOUT: Duration = Duration::from_secs(2_629_746);

/// A GitLab duration ("1 hour and 30 minutes", "90m", "3600") as GitLab's `DurationValidator`
/// takes it: text (`validate_duration` returns false for anything but a `String`, so a plain
/// `3600` is refused) that ChronicDuration reads as more than zero (it returns nil for zero,
/// "should be a duration"), within `max`.
pub(crate) fn duration(n: &Node, what: &str, max: Duration, d: &mut Diags) -> Option<Duration> {
    let text = typed_string_as(n, what, "a duration written as text", d)?;
    match duration::parse(&text) {
        Ok(v) if v.is_zero() => {
            d.error(
                &n.span,
                format!("{what} is zero, which GitLab does not take as a duration, found `{text}`"),
            );
            None
        }
        Ok(v) if v > max => {
            d.error(
                &n.span,
                format!(
                    "{what} must be at most {} (GitLab's limit), found `{text}`",
                    human(max)
                ),
            );
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            d.error(&n.span, format!("{what} is not a duration: {e}"))
                .help("write it like `30 minutes`, `1 hour and 30 minutes`, `1h 30m` or `2 days`");
            None
        }
    }
}

fn human(v: Duration) -> String {
    match v.as_secs() {
        s if s % (24 * 3600) == 0 => format!("{} days", s / (24 * 3600)),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}

pub(crate) fn timeout(n: &Node, what: &str, d: &mut Diags) -> Option<Duration> {
    duration(n, what, MAX_TIMEOUT, d)
}

pub(crate) fn start_in(n: &Node, what: &str, d: &mut Diags) -> Option<Duration> {
    duration(n, what, MAX_START_IN, d)
}

/// `retry: 0..2` or `retry: {max, when, exit_codes}`.
pub(crate) fn retry(n: &Node, what: &str, d: &mut Diags) -> Retry {
    let mut r = Retry::default();
    let max_node = match &n.value {
        Value::Map(m) => {
            check_keys(m, what, &["max", "when", "exit_codes"], d);
            if let Some(e) = set_entry(m, "exit_codes") {
                r.exit_codes = Some(exit_code_list(&e.value, &format!("{what} `exit_codes`"), d));
            }
            if let Some(e) = set_entry(m, "when") {
                let whens = string_list(&e.value, &format!("{what} `when`"), d).unwrap_or_default();
                for (w, span) in whens.iter().zip(item_spans(&e.value)) {
                    if !RETRY_REASONS.contains(&w.as_str()) {
                        d.error(
                            &span,
                            format!("{what} `when`: `{w}` is not a failure reason"),
                        )
                        .help_opt(did_you_mean(w, RETRY_REASONS.iter().copied()));
                    }
                }
                r.when = whens;
            }
            m.get("max").map(|e| &e.value)
        }
        _ => Some(n),
    };
    if let Some(max) = max_node.filter(|m| !m.is_null()) {
        if let Some(v) = integer(max, &format!("{what} `max`"), d) {
            match u32::try_from(v) {
                Ok(v) if v <= 2 => r.max = v,
                _ => {
                    d.error(
                        &max.span,
                        format!("{what} must be 0, 1 or 2 (GitLab's limit), found {v}"),
                    );
                }
            }
        }
    }
    r
}

/// `allow_failure: {exit_codes: 1 | [1, 2]}`. GitLab's `AllowFailure` requires no key and lets
/// `exit_codes` be null (`allow_nil`): `{}` and `{exit_codes: null}` are a job that may not fail.
pub(crate) fn exit_codes(m: &crate::yaml::Map, what: &str, d: &mut Diags) -> Vec<i64> {
    check_keys(m, what, &["exit_codes"], d);
    match set_entry(m, "exit_codes") {
        Some(e) => exit_code_list(&e.value, &format!("{what} `exit_codes`"), d),
        None => Vec::new(),
    }
}

/// `exit_codes: 137` or `exit_codes: [137, 255]` (of `allow_failure` and `retry`).
fn exit_code_list(n: &Node, what: &str, d: &mut Diags) -> Vec<i64> {
    let items: Vec<&Node> = match &n.value {
        Value::Seq(items) => items.iter().collect(),
        _ => vec![n],
    };
    items
        .into_iter()
        .filter_map(|i| integer(i, what, d).and_then(|v| i64::try_from(v).ok()))
        .collect()
}

/// `tags:` must be a list of strings in GitLab.
pub(crate) fn tags(n: &Node, what: &str, d: &mut Diags) -> Vec<String> {
    let tags = strict_string_list(n, what, d).unwrap_or_default();
    // `Tags::TAGS_LIMIT`: "must be less than the limit of 50 tags".
    if tags.len() >= 50 {
        d.error(
            &n.span,
            format!(
                "{what} lists {} tags; GitLab takes fewer than 50",
                tags.len()
            ),
        );
    }
    tags
}

/// `coverage: /regex/` -> the pattern GitLab keeps, checked as GitLab checks it: the text must
/// be `/body/flags` (`RubySyntax`, flags among `ismU`) with an RE2 body, and GitLab keeps the
/// text without its first and last character (`Coverage#value`), so `/foo/i` is the pattern
/// `foo/` (a warning says so) and `//` is an empty pattern, which finds no coverage.
pub(crate) fn coverage(n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    let text = string(n, what, d)?;
    let Some((body, flags)) = crate::re2::ruby_syntax(&text) else {
        d.error(
            &n.span,
            format!("{what} must be a regular expression between slashes, found `{text}`"),
        )
        .help("write it like `coverage: '/Total: \\d+\\.\\d+%/'`");
        return None;
    };
    let source = match crate::re2::rust_source(body, flags) {
        Ok(source) => source,
        Err(why) => {
            d.error(
                &n.span,
                format!("{what} is not a valid regular expression for GitLab (RE2): {why}"),
            );
            return None;
        }
    };
    if let Err(e) = regex::Regex::new(&source) {
        d.error(
            &n.span,
            format!("{what} is not a valid regular expression: {e}"),
        );
        return None;
    }
    let kept = &text[1..text.len() - 1];
    if !flags.is_empty() {
        d.warning(
            &n.span,
            format!(
                "{what}: GitLab drops only the first and last character, so it looks for `{kept}`, without the `{flags}` flags"
            ),
        )
        .help(format!("write the flags inside the slashes: `/(?{flags}){body}/`"));
    }
    Some(kept.to_string())
}

/// What `environment:` says, as far as wharf uses or checks it.
#[derive(Default)]
pub(crate) struct EnvironmentEntry {
    pub name: Option<String>,
    pub url: Option<String>,
    /// `action:` (`start` when not written).
    pub action: Option<String>,
    /// `on_stop:` and where it is written, checked against the other jobs.
    pub on_stop: Option<(String, Span)>,
}

/// `environment: name` or `{name, url, action, ...}`, checked as GitLab's `Environment`
/// checks it: a name of letters, digits and `_/${}. -` that neither starts nor ends with `/`,
/// an `action` GitLab knows, a `deployment_tier` among GitLab's tiers. Name and URL are
/// recorded as written; the runner expands them with the job's variables, as GitLab does.
pub(crate) fn environment(n: &Node, what: &str, d: &mut Diags) -> EnvironmentEntry {
    let mut out = EnvironmentEntry::default();
    match &n.value {
        Value::Map(m) => {
            check_keys(
                m,
                what,
                &[
                    "name",
                    "url",
                    "on_stop",
                    "action",
                    "auto_stop_in",
                    "kubernetes",
                    "deployment_tier",
                ],
                d,
            );
            out.url =
                set_entry(m, "url").and_then(|e| string(&e.value, &format!("{what} `url`"), d));
            match set_entry(m, "name") {
                Some(e) => out.name = environment_name(&e.value, &format!("{what} `name`"), d),
                None => {
                    d.error(&n.span, format!("{what} needs `name`"));
                }
            }
            if let Some(e) = set_entry(m, "action") {
                out.action = one_of(
                    &e.value,
                    &format!("{what} `action`"),
                    &[
                        ("start", "start"),
                        ("stop", "stop"),
                        ("prepare", "prepare"),
                        ("verify", "verify"),
                        ("access", "access"),
                    ],
                    d,
                )
                .map(str::to_string);
            }
            if let Some(e) = set_entry(m, "deployment_tier") {
                let tiers = ["production", "staging", "testing", "development", "other"];
                let choices: Vec<(&str, ())> = tiers.iter().map(|t| (*t, ())).collect();
                one_of(&e.value, &format!("{what} `deployment_tier`"), &choices, d);
            }
            if let Some(e) = set_entry(m, "kubernetes") {
                environment_kubernetes(&e.value, &format!("{what} `kubernetes`"), d);
            }
            if let Some(e) = set_entry(m, "on_stop") {
                out.on_stop = string(&e.value, &format!("{what} `on_stop`"), d)
                    .map(|job| (job, e.value.span.clone()));
            }
        }
        _ => out.name = environment_name(n, what, d),
    }
    out
}

/// An environment's `kubernetes:` (recorded by GitLab for its deployments, unused by wharf),
/// checked as GitLab's `Entry::Kubernetes` checks it: a map, not empty, of `namespace`, `agent`
/// and `flux_resource_path` strings, the first two required beside the third.
fn environment_kubernetes(n: &Node, what: &str, d: &mut Diags) {
    let Some(m) = map(n, what, d) else { return };
    if m.is_empty() {
        d.error(
            &n.span,
            format!("{what} is empty (GitLab: \"can't be blank\")"),
        );
        return;
    }
    check_keys(m, what, &["namespace", "agent", "flux_resource_path"], d);
    let mut text = |key: &str| {
        set_entry(m, key).and_then(|e| typed_string(&e.value, &format!("{what} `{key}`"), d))
    };
    let (namespace, agent, flux) = (text("namespace"), text("agent"), text("flux_resource_path"));
    if flux.is_some_and(|f| !f.trim().is_empty()) {
        for (key, value) in [("namespace", namespace), ("agent", agent)] {
            if value.is_none_or(|v| v.trim().is_empty()) {
                d.error(
                    &n.span,
                    format!("{what} `{key}` is needed beside `flux_resource_path` (GitLab: \"can't be blank\")"),
                );
            }
        }
    }
}

/// GitLab's `environment_name_regex`: `[a-zA-Z0-9_${}. -]`, and `/` anywhere but first and last.
fn environment_name(n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    let name = typed_string(n, what, d)?;
    let plain = |c: char| c.is_ascii_alphanumeric() || "_${}. -".contains(c);
    let valid = !name.is_empty()
        && name.chars().all(|c| plain(c) || c == '/')
        && !name.starts_with('/')
        && !name.ends_with('/');
    if !valid {
        d.error(
            &n.span,
            format!("{what} `{name}` is not a name GitLab takes: letters, digits and `_`, `-`, `.`, `$`, `{{`, `}}`, spaces and `/`, but no `/` first or last"),
        );
        return None;
    }
    Some(name)
}
