//! Keywords wharf records but does not act on (`release:`, `pages:`, `id_tokens:`, `hooks:`,
//! `manual_confirmation:`), checked as GitLab checks them: `wharf lint` must not pass a value
//! GitLab refuses just because wharf does not run it.

use crate::diagnostic::Diags;
use crate::read::*;
use crate::yaml::{Node, Value};

/// GitLab's checks of keyword `key`'s value `v` (`what` names it), where wharf has them.
pub(crate) fn check(key: &str, v: &Node, what: &str, d: &mut Diags) {
    match key {
        "release" => release(v, what, d),
        "pages" => pages(v, what, d),
        "id_tokens" => id_tokens(v, what, d),
        "hooks" => hooks(v, what, d),
        // `Job`: `validates :manual_confirmation, type: String`.
        "manual_confirmation" => {
            typed_string(v, what, d);
        }
        _ => {}
    }
}

/// `Release`: its keys, and `tag_name` and `description` present, as strings.
fn release(v: &Node, what: &str, d: &mut Diags) {
    let Some(m) = map(v, what, d) else {
        return;
    };
    let keys = [
        "tag_name",
        "tag_message",
        "name",
        "description",
        "ref",
        "released_at",
        "milestones",
        "assets",
    ];
    check_keys(m, what, &keys, d);
    for required in ["tag_name", "description"] {
        match m.get(required).filter(|e| !e.value.is_null()) {
            Some(e) => {
                typed_string(&e.value, &format!("{what} `{required}`"), d);
            }
            None => {
                d.error(
                    &v.span,
                    format!("{what} needs `{required}` (GitLab: \"can't be blank\")"),
                );
            }
        }
    }
}

/// `Pages`: `true`/`false` or a map of `path_prefix`, `expire_in`, `publish`.
fn pages(v: &Node, what: &str, d: &mut Diags) {
    match &v.value {
        Value::Map(m) => check_keys(m, what, &["path_prefix", "expire_in", "publish"], d),
        _ => {
            boolean(v, what, d);
        }
    }
}

/// `id_tokens`: names, each a map with `aud` only (`IdToken`: `required_keys` and
/// `allowed_keys` `aud`, a string or a list of strings).
fn id_tokens(v: &Node, what: &str, d: &mut Diags) {
    let Some(m) = map(v, what, d) else {
        return;
    };
    for (name, e) in m {
        let what = format!("{what} `{name}`");
        let Some(token) = map(&e.value, &what, d) else {
            continue;
        };
        check_keys(token, &what, &["aud"], d);
        match token.get("aud") {
            Some(aud) => {
                string_list(&aud.value, &format!("{what} `aud`"), d);
            }
            None => {
                d.error(&e.value.span, format!("{what} needs `aud`"));
            }
        }
    }
}

/// `Hooks`: `pre_get_sources_script` only, a script.
fn hooks(v: &Node, what: &str, d: &mut Diags) {
    let Some(m) = map(v, what, d) else {
        return;
    };
    check_keys(m, what, &["pre_get_sources_script"], d);
    if let Some(e) = m
        .get("pre_get_sources_script")
        .filter(|e| !e.value.is_null())
    {
        script(&e.value, &format!("{what} `pre_get_sources_script`"), d);
    }
}
