//! Docker token scopes: `type[(class)]:name:action[,action]`, parsed and written back.
//!
//! The name may itself contain `:` (`repository:127.0.0.1:5000/team/app:pull`), so a scope is
//! split at its first `:` (types never hold one) and its last `:` (actions never hold one).

use super::seam::{Access, Action, ResourceKind};

/// One parsed scope, before it is narrowed to what wharf knows ([`Access`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `repository`, `registry`, or any other type a client may send.
    pub kind: String,
    /// The optional `(class)` after the type, e.g. `plugin`; ignored for access decisions.
    pub class: Option<String>,
    pub name: String,
    /// Actions as sent (`pull`, `push`, `delete`, `*`, or anything else).
    pub actions: Vec<String>,
}

/// Why a scope string was not understood. Carries no secret: scopes are public.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {scope:?}: {reason} (expected type[(class)]:name:action[,action])")]
pub struct ScopeError {
    pub scope: String,
    pub reason: &'static str,
}

impl Scope {
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        let err = |reason| ScopeError {
            scope: text.to_string(),
            reason,
        };
        let (kind_part, rest) = text.split_once(':').ok_or_else(|| err("no `:`"))?;
        let (name, actions) = rest
            .rsplit_once(':')
            .ok_or_else(|| err("no actions part"))?;
        let (kind, class) = match kind_part.split_once('(') {
            Some((kind, class)) => {
                let class = class
                    .strip_suffix(')')
                    .ok_or_else(|| err("unclosed `(` in the type"))?;
                (kind, Some(class))
            }
            None => (kind_part, None),
        };
        let word = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if !word(kind) || class.is_some_and(|c| !word(c)) {
            return Err(err("the type must be lowercase letters and digits"));
        }
        if name.is_empty() {
            return Err(err("empty name"));
        }
        let actions: Vec<String> = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if actions.is_empty()
            || actions
                .iter()
                .any(|a| !a.bytes().all(|b| b.is_ascii_lowercase() || b == b'*'))
        {
            return Err(err("actions must be lowercase words or `*`"));
        }
        Ok(Scope {
            kind: kind.to_string(),
            class: class.map(str::to_string),
            name: name.to_string(),
            actions,
        })
    }

    /// What wharf can grant for this scope: repository actions on a valid repository name, or
    /// the catalog. Unknown types, actions and invalid names give `None` (granted nothing, which
    /// is not an error: the grant is what was asked intersected with what is permitted).
    /// A repository `*` stands for pull, push and delete.
    pub fn to_access(&self) -> Option<Access> {
        match self.kind.as_str() {
            "repository" if is_repository_name(&self.name) => {
                let mut actions = Vec::new();
                for a in &self.actions {
                    let wanted: &[Action] = match a.as_str() {
                        "pull" => &[Action::Pull],
                        "push" => &[Action::Push],
                        "delete" => &[Action::Delete],
                        "*" => &[Action::Pull, Action::Push, Action::Delete],
                        _ => &[],
                    };
                    for w in wanted {
                        if !actions.contains(w) {
                            actions.push(*w);
                        }
                    }
                }
                (!actions.is_empty()).then(|| Access {
                    kind: ResourceKind::Repository,
                    name: self.name.clone(),
                    actions,
                })
            }
            "registry" if self.name == "catalog" && self.actions.iter().any(|a| a == "*") => {
                Some(Access {
                    kind: ResourceKind::Registry,
                    name: "catalog".to_string(),
                    actions: vec![Action::All],
                })
            }
            _ => None,
        }
    }
}

/// Every scope of a token request: `scope` may repeat, and one value may hold several scopes
/// separated by spaces. Unparseable scopes are returned apart so they can be logged and skipped.
pub fn parse_scopes<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> (Vec<Scope>, Vec<ScopeError>) {
    let mut scopes = Vec::new();
    let mut errors = Vec::new();
    for value in values {
        for text in value.split_whitespace() {
            match Scope::parse(text) {
                Ok(s) => scopes.push(s),
                Err(e) => errors.push(e),
            }
        }
    }
    (scopes, errors)
}

pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Pull => "pull",
        Action::Push => "push",
        Action::Delete => "delete",
        Action::All => "*",
    }
}

pub fn kind_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Repository => "repository",
        ResourceKind::Registry => "registry",
    }
}

/// `repository:team/app:pull,push`, as challenges and token responses spell scopes.
pub fn format_access(access: &Access) -> String {
    let actions: Vec<&str> = access.actions.iter().map(|a| action_name(*a)).collect();
    format!(
        "{}:{}:{}",
        kind_name(access.kind),
        access.name,
        actions.join(",")
    )
}

/// The OCI distribution grammar for repository names:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
/// Anything else (`..`, empty components, upper case, `host:port`) is never granted.
pub fn is_repository_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.split('/').all(is_path_component)
}

fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Separators between alphanumeric runs: one `.`, one or two `_`, or any number of `-`.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_may_hold_host_and_port() {
        let s = Scope::parse("repository:127.0.0.1:5000/team/app:pull,push").unwrap();
        assert_eq!(s.kind, "repository");
        assert_eq!(s.name, "127.0.0.1:5000/team/app");
        assert_eq!(s.actions, vec!["pull", "push"]);
    }

    #[test]
    fn class_is_parsed_and_kept_apart() {
        let s = Scope::parse("repository(plugin):team/app:pull").unwrap();
        assert_eq!(s.kind, "repository");
        assert_eq!(s.class.as_deref(), Some("plugin"));
        assert_eq!(s.name, "team/app");
    }

    #[test]
    fn malformed_scopes_are_rejected() {
        for bad in [
            "nonsense",
            "repository:app",
            "repository::pull",
            "repository:app:",
            "Repository:app:pull",
            "repository(plugin:app:pull",
            "repository:app:PULL",
            ":app:pull",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn scopes_split_on_spaces_and_repeat() {
        let (scopes, errors) = parse_scopes([
            "repository:a:pull repository:b:push,pull",
            "registry:catalog:*",
            "garbage",
        ]);
        let names: Vec<&str> = scopes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "catalog"]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].scope, "garbage");
    }

    #[test]
    fn access_narrows_to_known_types_and_actions() {
        let a = Scope::parse("repository:team/app:pull,frobnicate,push,pull")
            .unwrap()
            .to_access()
            .unwrap();
        assert_eq!(a.actions, vec![Action::Pull, Action::Push]);
        let star = Scope::parse("repository:team/app:*")
            .unwrap()
            .to_access()
            .unwrap();
        assert_eq!(
            star.actions,
            vec![Action::Pull, Action::Push, Action::Delete]
        );
        let catalog = Scope::parse("registry:catalog:*")
            .unwrap()
            .to_access()
            .unwrap();
        assert_eq!(catalog.kind, ResourceKind::Registry);
        assert_eq!(catalog.actions, vec![Action::All]);
        for none in [
            "repository:team/app:frobnicate",
            "registry:catalog:pull",
            "registry:other:*",
            "thing:team/app:pull",
            "repository:../etc/passwd:pull",
            "repository:127.0.0.1:5000/app:pull",
            "repository:Team/App:pull",
        ] {
            assert_eq!(Scope::parse(none).unwrap().to_access(), None, "{none}");
        }
    }

    #[test]
    fn access_formats_back_to_a_scope() {
        let a = Access {
            kind: ResourceKind::Repository,
            name: "team/app".into(),
            actions: vec![Action::Pull, Action::Push],
        };
        assert_eq!(format_access(&a), "repository:team/app:pull,push");
        let c = Access {
            kind: ResourceKind::Registry,
            name: "catalog".into(),
            actions: vec![Action::All],
        };
        assert_eq!(format_access(&c), "registry:catalog:*");
    }

    #[test]
    fn repository_name_grammar() {
        for ok in ["a", "team/app", "a.b/c_d/e__f/g-h/i---j", "0/9"] {
            assert!(is_repository_name(ok), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "..", "a/../b", "A", "a_", "a___b", "a..b", "-a", "a:b", "a/.b",
        ] {
            assert!(!is_repository_name(bad), "{bad}");
        }
    }
}
