//! Who may do what: users, groups and `anonymous` get actions on repository glob patterns; the
//! catalog is for admins; everything else is denied.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::config::{AllowRule, SubjectsConfig};
use super::error::AuthError;
use super::seam::{Access, Action, ResourceKind};

/// The user name that stands for a request without credentials.
pub const ANONYMOUS: &str = "anonymous";
/// In a rule's `users`, any authenticated user (never anonymous).
pub const ANY_USER: &str = "*";

/// A set of repository actions (`pull`, `push`, `delete`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const PULL: Actions = Actions(1);
    pub const PUSH: Actions = Actions(2);
    pub const DELETE: Actions = Actions(4);
    pub const ALL: Actions = Actions(7);

    pub fn parse(name: &str) -> Option<Actions> {
        match name {
            "pull" => Some(Self::PULL),
            "push" => Some(Self::PUSH),
            "delete" => Some(Self::DELETE),
            "*" => Some(Self::ALL),
            _ => None,
        }
    }

    fn of(action: Action) -> Actions {
        match action {
            Action::Pull => Self::PULL,
            Action::Push => Self::PUSH,
            Action::Delete => Self::DELETE,
            Action::All => Self::ALL,
        }
    }

    pub fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }

    fn union(self, other: Actions) -> Actions {
        Actions(self.0 | other.0)
    }
}

/// A repository name pattern: `/`-separated segments; in a segment `*` matches any run of
/// characters and `?` one character (never `/`); a `**` segment matches any number of segments.
/// A trailing `/**` needs at least one segment: `team/**` matches `team/a` and `team/a/b`, not
/// `team`. `**` alone matches every repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<String>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("empty repository pattern".to_string());
        }
        let segments: Vec<String> = text.split('/').map(str::to_string).collect();
        for s in &segments {
            if s.is_empty() {
                return Err(format!("repository pattern {text:?} has an empty segment"));
            }
            if s.contains("**") && s != "**" {
                return Err(format!(
                    "repository pattern {text:?}: `**` must be a whole segment (`team/**`)"
                ));
            }
            let allowed =
                |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-*?".contains(c);
            if !s.chars().all(allowed) {
                return Err(format!(
                    "repository pattern {text:?}: only a-z 0-9 . _ - and the wildcards * ? ** are allowed"
                ));
            }
        }
        Ok(Pattern {
            text: text.to_string(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, name: &str) -> bool {
        let parts: Vec<&str> = name.split('/').collect();
        let segs: Vec<&str> = self.segments.iter().map(String::as_str).collect();
        // A trailing `**` after other segments means "inside", i.e. at least one more segment.
        if segs.len() > 1 && segs.last() == Some(&"**") {
            let head = &segs[..segs.len() - 1];
            return (0..parts.len()).any(|k| match_segments(head, &parts[..k]));
        }
        match_segments(&segs, &parts)
    }
}

fn match_segments(pattern: &[&str], name: &[&str]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((&"**", rest)) => (0..=name.len()).any(|skip| match_segments(rest, &name[skip..])),
        Some((first, rest)) => match name.split_first() {
            Some((n, name_rest)) => {
                match_glob(first.as_bytes(), n.as_bytes()) && match_segments(rest, name_rest)
            }
            None => false,
        },
    }
}

/// `*` and `?` within one segment.
fn match_glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Who a rule is for.
#[derive(Debug, Clone, Default)]
struct Subjects {
    users: HashSet<String>,
    groups: HashSet<String>,
    anonymous: bool,
    any_user: bool,
}

impl Subjects {
    fn from_config(cfg: &SubjectsConfig) -> Subjects {
        let mut s = Subjects {
            groups: cfg.groups.iter().cloned().collect(),
            ..Subjects::default()
        };
        for u in &cfg.users {
            match u.as_str() {
                ANONYMOUS => s.anonymous = true,
                ANY_USER => s.any_user = true,
                _ => {
                    s.users.insert(u.clone());
                }
            }
        }
        s
    }

    fn includes(&self, user: Option<&str>, groups_of: &HashMap<String, Vec<String>>) -> bool {
        match user {
            None => self.anonymous,
            Some(u) => {
                self.any_user
                    || self.users.contains(u)
                    || groups_of
                        .get(u)
                        .is_some_and(|gs| gs.iter().any(|g| self.groups.contains(g)))
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    subjects: Subjects,
    patterns: Vec<Pattern>,
    actions: Actions,
}

/// The access policy, deny by default.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    admins: Subjects,
    /// user -> the groups they belong to.
    groups_of: HashMap<String, Vec<String>>,
}

impl Policy {
    /// The policy used when the configuration has no `allow` rules and no `admins`: every
    /// authenticated user may pull, push and delete everywhere and list the catalog (they can
    /// see every repository anyway); anonymous gets nothing.
    pub fn every_user_everything() -> Policy {
        let all = Subjects {
            any_user: true,
            ..Subjects::default()
        };
        Policy {
            rules: vec![Rule {
                subjects: all.clone(),
                patterns: vec![Pattern {
                    text: "**".to_string(),
                    segments: vec!["**".to_string()],
                }],
                actions: Actions::ALL,
            }],
            admins: all,
            groups_of: HashMap::new(),
        }
    }

    /// Build from the configuration. `groups` maps group name -> members (robots' `groups`
    /// already merged in by the caller).
    pub fn from_config(
        rules: &[AllowRule],
        admins: &SubjectsConfig,
        groups: &BTreeMap<String, Vec<String>>,
    ) -> Result<Policy, AuthError> {
        let mut groups_of: HashMap<String, Vec<String>> = HashMap::new();
        for (group, members) in groups {
            for m in members {
                groups_of.entry(m.clone()).or_default().push(group.clone());
            }
        }
        let check_groups = |where_: &str, cfg: &SubjectsConfig| -> Result<(), AuthError> {
            for g in &cfg.groups {
                if !groups.contains_key(g) {
                    return Err(AuthError::Config(format!(
                        "{where_}: group {g:?} is not defined in [auth.groups]"
                    )));
                }
            }
            Ok(())
        };
        check_groups("auth.admins", admins)?;
        if admins.users.iter().any(|u| u == ANONYMOUS) {
            return Err(AuthError::Config(
                "auth.admins: anonymous may never list the catalog".to_string(),
            ));
        }
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let where_ = format!("auth.allow[{i}]");
            let subjects = rule.subjects();
            check_groups(&where_, &subjects)?;
            if subjects.users.is_empty() && subjects.groups.is_empty() {
                return Err(AuthError::Config(format!(
                    "{where_}: names no users and no groups"
                )));
            }
            if rule.repositories.is_empty() {
                return Err(AuthError::Config(format!(
                    "{where_}: names no repositories (use \"**\" for all)"
                )));
            }
            let patterns = rule
                .repositories
                .iter()
                .map(|p| Pattern::parse(p).map_err(|e| AuthError::Config(format!("{where_}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            let mut actions = Actions::NONE;
            for a in &rule.actions {
                actions = actions.union(Actions::parse(a).ok_or_else(|| {
                    AuthError::Config(format!(
                        "{where_}: unknown action {a:?} (use pull, push, delete or \"*\")"
                    ))
                })?);
            }
            if actions == Actions::NONE {
                return Err(AuthError::Config(format!("{where_}: names no actions")));
            }
            out.push(Rule {
                subjects: Subjects::from_config(&subjects),
                patterns,
                actions,
            });
        }
        Ok(Policy {
            rules: out,
            admins: Subjects::from_config(admins),
            groups_of,
        })
    }

    /// The repository actions `user` (None: anonymous) has on `repository`.
    pub fn repository_actions(&self, user: Option<&str>, repository: &str) -> Actions {
        self.rules
            .iter()
            .filter(|r| r.subjects.includes(user, &self.groups_of))
            .filter(|r| r.patterns.iter().any(|p| p.matches(repository)))
            .fold(Actions::NONE, |acc, r| acc.union(r.actions))
    }

    pub fn is_admin(&self, user: Option<&str>) -> bool {
        user.is_some() && self.admins.includes(user, &self.groups_of)
    }

    /// The part of `wanted` that is permitted: same resource, only permitted actions; `None`
    /// when nothing is.
    pub fn grant(&self, user: Option<&str>, wanted: &Access) -> Option<Access> {
        let actions: Vec<Action> = match wanted.kind {
            ResourceKind::Repository => {
                let have = self.repository_actions(user, &wanted.name);
                wanted
                    .actions
                    .iter()
                    .copied()
                    .filter(|a| have.contains(Actions::of(*a)))
                    .collect()
            }
            ResourceKind::Registry => {
                if wanted.name == "catalog" && self.is_admin(user) {
                    wanted.actions.clone()
                } else {
                    Vec::new()
                }
            }
        };
        (!actions.is_empty()).then(|| Access {
            kind: wanted.kind,
            name: wanted.name.clone(),
            actions,
        })
    }

    /// Whether every action of every wanted access is permitted.
    pub fn permits(&self, user: Option<&str>, wanted: &[Access]) -> bool {
        wanted.iter().all(|w| {
            self.grant(user, w)
                .is_some_and(|g| g.actions.len() == w.actions.len())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> Pattern {
        Pattern::parse(p).unwrap()
    }

    #[test]
    fn single_star_stays_in_one_segment() {
        assert!(pat("team/*").matches("team/app"));
        assert!(!pat("team/*").matches("team/app/sub"));
        assert!(!pat("team/*").matches("team"));
        assert!(!pat("team/*").matches("other/app"));
        assert!(pat("team/app-*").matches("team/app-web"));
        assert!(!pat("team/app-*").matches("team/web"));
        assert!(pat("team/a?c").matches("team/abc"));
        assert!(!pat("team/a?c").matches("team/a/c"));
    }

    #[test]
    fn double_star_crosses_segments() {
        assert!(pat("**").matches("a"));
        assert!(pat("**").matches("a/b/c"));
        assert!(pat("team/**").matches("team/a"));
        assert!(pat("team/**").matches("team/a/b/c"));
        assert!(!pat("team/**").matches("team"), "trailing /** means inside");
        assert!(!pat("team/**").matches("teamx/a"));
        assert!(pat("a/**/z").matches("a/z"));
        assert!(pat("a/**/z").matches("a/b/c/z"));
        assert!(!pat("a/**/z").matches("a/b/c"));
        assert!(pat("**/base").matches("x/y/base"));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for bad in ["", "team//x", "team/a**", "Team/*", "team/%"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }

    fn rule(users: &[&str], groups: &[&str], repos: &[&str], actions: &[&str]) -> AllowRule {
        AllowRule {
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
            repositories: repos.iter().map(|s| s.to_string()).collect(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn repo(name: &str, actions: &[Action]) -> Access {
        Access {
            kind: ResourceKind::Repository,
            name: name.into(),
            actions: actions.to_vec(),
        }
    }

    #[test]
    fn grant_is_wanted_intersect_permitted() {
        let groups = BTreeMap::from([("devs".to_string(), vec!["bob".to_string()])]);
        let p = Policy::from_config(
            &[
                rule(&["anonymous"], &[], &["public/**"], &["pull"]),
                rule(&[], &["devs"], &["team/*"], &["pull", "push"]),
                rule(&["alice"], &[], &["**"], &["*"]),
            ],
            &SubjectsConfig {
                users: vec!["alice".into()],
                groups: vec![],
            },
            &groups,
        )
        .unwrap();
        let all = [Action::Pull, Action::Push, Action::Delete];
        assert_eq!(
            p.grant(Some("bob"), &repo("team/app", &all))
                .unwrap()
                .actions,
            vec![Action::Pull, Action::Push]
        );
        assert_eq!(p.grant(Some("bob"), &repo("team/app/x", &all)), None);
        assert_eq!(
            p.grant(None, &repo("public/x/y", &all)).unwrap().actions,
            vec![Action::Pull]
        );
        // Anonymous rules are for anonymous requests only; users get only what they are given.
        assert_eq!(p.grant(Some("bob"), &repo("public/x", &all)), None);
        assert_eq!(
            p.grant(Some("alice"), &repo("x", &all)).unwrap().actions,
            all
        );
        let catalog = Access {
            kind: ResourceKind::Registry,
            name: "catalog".into(),
            actions: vec![Action::All],
        };
        assert!(p.grant(Some("alice"), &catalog).is_some());
        assert!(p.grant(Some("bob"), &catalog).is_none());
        assert!(p.grant(None, &catalog).is_none());
        assert!(p.permits(
            Some("bob"),
            &[repo("team/a", &[Action::Pull, Action::Push])]
        ));
        assert!(!p.permits(
            Some("bob"),
            &[repo("team/a", &[Action::Pull, Action::Delete])]
        ));
        assert!(!p.permits(Some("carol"), &[repo("team/a", &[Action::Pull])]));
    }

    #[test]
    fn default_policy_gives_users_everything_and_anonymous_nothing() {
        let p = Policy::every_user_everything();
        let all = [Action::Pull, Action::Push, Action::Delete];
        assert!(p.permits(Some("anyone"), &[repo("a/b/c", &all)]));
        assert!(p.is_admin(Some("anyone")));
        assert!(!p.permits(None, &[repo("a", &[Action::Pull])]));
        assert!(!p.is_admin(None));
    }

    #[test]
    fn config_mistakes_are_reported() {
        let none = SubjectsConfig::default();
        let g = BTreeMap::new();
        for (rules, admins) in [
            (
                vec![rule(&[], &["nogroup"], &["**"], &["pull"])],
                none.clone(),
            ),
            (vec![rule(&["a"], &[], &["**"], &["fly"])], none.clone()),
            (vec![rule(&["a"], &[], &[], &["pull"])], none.clone()),
            (vec![rule(&[], &[], &["**"], &["pull"])], none.clone()),
            (vec![rule(&["a"], &[], &["**"], &[])], none.clone()),
            (vec![rule(&["a"], &[], &["Bad"], &["pull"])], none.clone()),
            (
                vec![],
                SubjectsConfig {
                    users: vec!["anonymous".into()],
                    groups: vec![],
                },
            ),
        ] {
            assert!(Policy::from_config(&rules, &admins, &g).is_err());
        }
    }
}
