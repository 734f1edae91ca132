//! `image:`, `services:` and their `pull_policy`.

use super::variables::{Scope, variables};
use crate::diagnostic::Diags;
use crate::model::*;
use crate::read::*;
use crate::span::Span;
use crate::suggest::did_you_mean;
use crate::yaml::{Node, Value};

/// An image's name as GitLab's `Imageable` takes it: `validates :name, type: String,
/// presence: true` (a number, `""` or spaces are refused).
fn image_name(n: &Node, what: &str, d: &mut Diags) -> Option<String> {
    let name = typed_string_as(n, what, "an image name", d)?;
    if name.trim().is_empty() {
        d.error(
            &n.span,
            format!("{what} is empty (GitLab: \"can't be blank\")"),
        );
        return None;
    }
    Some(name)
}

/// `docker:` of an image or a service, as GitLab's `executor_opts.json` takes it: a map with
/// `user` (1 to 255 characters) and `platform` (1 to 64); `(user, platform)`.
fn docker_options(n: &Node, what: &str, d: &mut Diags) -> (Option<String>, Option<String>) {
    let what = format!("{what} `docker`");
    let Some(m) = map(n, &what, d) else {
        return (None, None);
    };
    check_keys(m, &what, &["user", "platform"], d);
    let mut option = |key: &str, max: usize| {
        let e = m.get(key)?;
        let what = format!("{what} `{key}`");
        let text = typed_string(&e.value, &what, d)?;
        let fits = schema_length(&text, &what, &e.value, max, d);
        fits.then_some(text)
    };
    (option("user", 255), option("platform", 64))
}

/// `kubernetes:` of an image or a service, which wharf records without using, checked as
/// GitLab's `executor_opts.json` checks it: a map with only `user`, an integer (a UID) or a
/// string of 1 to 255 characters (`1000:1000`).
fn kubernetes_options(n: &Node, what: &str, d: &mut Diags) {
    let what = format!("{what} `kubernetes`");
    let Some(m) = map(n, &what, d) else { return };
    check_keys(m, &what, &["user"], d);
    let Some(user) = m.get("user") else { return };
    let what = format!("{what} `user`");
    if let Value::Scalar(s) = &user.value.value {
        if matches!(s.psych(), crate::yaml::Psych::Int(_)) {
            return;
        }
    }
    if let Some(text) = typed_string_as(&user.value, &what, "a user name or UID", d) {
        schema_length(&text, &what, &user.value, 255, d);
    }
}

/// Whether `text` has GitLab's schema's `minLength: 1` and `maxLength: max`; says why not.
fn schema_length(text: &str, what: &str, n: &Node, max: usize, d: &mut Diags) -> bool {
    let len = text.chars().count();
    if len == 0 {
        d.error(
            &n.span,
            format!("{what} is empty (GitLab's schema wants 1 to {max} characters)"),
        );
    } else if len > max {
        d.error(
            &n.span,
            format!("{what} is {len} characters long, more than GitLab's schema's {max}"),
        );
    }
    (1..=max).contains(&len)
}

pub(crate) fn image(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Option<Image> {
    if let Value::Scalar(_) = &n.value {
        return Some(Image {
            name: image_name(n, what, d)?,
            entrypoint: None,
            pull_policy: Vec::new(),
            docker_user: None,
            docker_platform: None,
            span: n.span.clone(),
        });
    }
    let Some(m) = n.as_map() else {
        d.error(
            &n.span,
            format!(
                "{what} must be a string or a map with `name`, found {}",
                n.kind()
            ),
        );
        return None;
    };
    check_keys(
        m,
        what,
        &["name", "entrypoint", "pull_policy", "docker", "kubernetes"],
        d,
    );
    if let Some(e) = set_entry(m, "kubernetes") {
        kubernetes_options(&e.value, what, d);
        unsupported.push(("image:kubernetes".into(), e.key_span.clone()));
    }
    let (docker_user, docker_platform) = match set_entry(m, "docker") {
        Some(e) => docker_options(&e.value, what, d),
        None => (None, None),
    };
    let name = match m.get("name") {
        Some(e) => image_name(&e.value, &format!("{what} `name`"), d)?,
        None => {
            d.error(&n.span, format!("{what} has no `name`"));
            return None;
        }
    };
    let entrypoint = match m.get("entrypoint") {
        Some(e) if !e.value.is_null() => {
            // GitLab: `validates :entrypoint, array_of_strings: true`.
            Some(strict_string_list(
                &e.value,
                &format!("{what} `entrypoint`"),
                d,
            )?)
        }
        _ => None,
    };
    let pull_policy = m
        .get("pull_policy")
        .filter(|e| !e.value.is_null())
        .map(|e| pull_policies(&e.value, &format!("{what} `pull_policy`"), d))
        .unwrap_or_default();
    Some(Image {
        name,
        entrypoint,
        pull_policy,
        docker_user,
        docker_platform,
        span: n.span.clone(),
    })
}

pub(crate) fn services(
    n: &Node,
    what: &str,
    unsupported: &mut Vec<(String, Span)>,
    d: &mut Diags,
) -> Vec<Service> {
    let Value::Seq(items) = &n.value else {
        d.error(
            &n.span,
            format!("{what} must be a list, found {}", n.kind()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        if let Value::Scalar(_) = &item.value {
            let Some(name) = image_name(item, what, d) else {
                continue;
            };
            out.push(Service {
                name,
                alias: Vec::new(),
                entrypoint: None,
                command: None,
                variables: Vec::new(),
                pull_policy: Vec::new(),
                span: item.span.clone(),
            });
            continue;
        }
        let Some(m) = item.as_map() else {
            d.error(
                &item.span,
                format!(
                    "{what} entries must be an image name or a map with `name`, found {}",
                    item.kind()
                ),
            );
            continue;
        };
        check_keys(
            m,
            what,
            &[
                "name",
                "alias",
                "entrypoint",
                "command",
                "variables",
                "pull_policy",
                "docker",
                "kubernetes",
            ],
            d,
        );
        if let Some(e) = set_entry(m, "docker") {
            docker_options(&e.value, what, d);
        }
        if let Some(e) = set_entry(m, "kubernetes") {
            kubernetes_options(&e.value, what, d);
        }
        for key in ["docker", "kubernetes"] {
            if let Some(e) = set_entry(m, key) {
                unsupported.push((format!("services:{key}"), e.key_span.clone()));
            }
        }
        let Some(name) = m
            .get("name")
            .and_then(|e| image_name(&e.value, &format!("{what} `name`"), d))
        else {
            if !m.contains_key("name") {
                d.error(&item.span, format!("{what}: a service needs `name`"));
            }
            continue;
        };
        let opt_list = |key: &str, d: &mut Diags| {
            m.get(key)
                .filter(|e| !e.value.is_null())
                // `entrypoint` and `command`: arrays of strings on GitLab.
                .and_then(|e| strict_string_list(&e.value, &format!("{what} `{key}`"), d))
        };
        let alias = m
            .get("alias")
            .filter(|e| !e.value.is_null())
            // `Service`: `validates :alias, type: String`.
            .and_then(|e| typed_string(&e.value, &format!("{what} `alias`"), d))
            .map(|a| {
                // GitLab accepts several aliases separated by commas or spaces.
                a.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let entrypoint = opt_list("entrypoint", d);
        let command = opt_list("command", d);
        let vars = m
            .get("variables")
            .map(|e| variables(&e.value, &format!("service `{name}`"), Scope::PlainOnly, d))
            .unwrap_or_default();
        let pull_policy = m
            .get("pull_policy")
            .filter(|e| !e.value.is_null())
            .map(|e| pull_policies(&e.value, &format!("{what} `pull_policy`"), d))
            .unwrap_or_default();
        out.push(Service {
            name,
            alias,
            entrypoint,
            command,
            variables: vars,
            pull_policy,
            span: item.span.clone(),
        });
    }
    out
}

pub(crate) fn pull_policies(n: &Node, what: &str, d: &mut Diags) -> Vec<PullPolicy> {
    // `PullPolicy`: `validates :config, presence: true, if: :array?`.
    if matches!(&n.value, Value::Seq(items) if items.is_empty()) {
        d.error(
            &n.span,
            format!("{what} is an empty list (GitLab: \"can't be blank\")"),
        )
        .help("remove it for the runner's default, or list `always`, `if-not-present` or `never`");
        return Vec::new();
    }
    let list = string_list(n, what, d).unwrap_or_default();
    let mut out = Vec::new();
    for (p, span) in list.iter().zip(item_spans(n)) {
        match PullPolicy::parse(p) {
            Some(p) => out.push(p),
            None => {
                d.error(
                    &span,
                    format!("{what} must be always, if-not-present or never, found `{p}`"),
                )
                .help_opt(did_you_mean(p, ["always", "if-not-present", "never"]));
            }
        }
    }
    out
}
