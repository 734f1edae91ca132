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
    if let Some(e) = m.get("kubernetes") {
        unsupported.push(("image:kubernetes".into(), e.key_span.clone()));
    }
    let (mut docker_user, mut docker_platform) = (None, None);
    if let Some(e) = set_entry(m, "docker") {
        let what = format!("{what} `docker`");
        if let Some(dm) = map(&e.value, &what, d) {
            check_keys(dm, &what, &["user", "platform"], d);
            // `executor_opts.json`: `docker.user` a string of at least one character.
            docker_user = dm.get("user").and_then(|u| {
                let what = format!("{what} `user`");
                let user = typed_string(&u.value, &what, d)?;
                if user.is_empty() {
                    d.error(
                        &u.value.span,
                        format!("{what} is empty (GitLab's schema wants a user)"),
                    );
                    return None;
                }
                Some(user)
            });
            docker_platform = dm
                .get("platform")
                .and_then(|p| string(&p.value, &format!("{what} `platform`"), d));
        }
    }
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
        for key in ["docker", "kubernetes"] {
            if let Some(e) = m.get(key) {
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
