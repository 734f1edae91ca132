//! Who a job's scripts run as in its container: the image's `User`, or `image: docker: user:`
//! over it, resolved to numbers the way Docker (runc) resolves it when it starts the container,
//! so wharf can make the job's folders usable by that user before the scripts run.

use std::fmt;

/// The numeric user and group a container runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl JobUser {
    pub(crate) const ROOT: JobUser = JobUser { uid: 0, gid: 0 };
}

impl fmt::Display for JobUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

/// A `User` as Docker takes it: `user` or `user:group`, each a name or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserSpec<'a> {
    user: &'a str,
    group: Option<&'a str>,
}

/// A name Docker would not find when it starts the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnknownName {
    User(String),
    Group(String),
}

impl<'a> UserSpec<'a> {
    pub(crate) fn parse(text: &'a str) -> Self {
        match text.split_once(':') {
            Some((user, group)) => Self {
                user,
                group: Some(group),
            },
            None => Self {
                user: text,
                group: None,
            },
        }
    }

    /// Root without looking anything up: no user at all, or root named. (gitlab-runner reads
    /// an image whose `User` is empty or `root` as running as root the same way.)
    pub(crate) fn is_plainly_root(&self) -> bool {
        matches!(self.user, "" | "root" | "0") && matches!(self.group, None | Some("" | "0"))
    }

    /// Whether the image's `/etc/passwd` and `/etc/group` are needed to resolve this: a name,
    /// or a uid alone (its group comes from its passwd entry).
    pub(crate) fn needs_lookup(&self) -> bool {
        number(self.user).is_none() || self.group.is_none_or(|g| number(g).is_none())
    }

    /// As runc resolves it: a name must be in `/etc/passwd` (a group name in `/etc/group`); a
    /// uid alone takes the group of its passwd entry, or 0 when it has none; a group given
    /// replaces the entry's.
    pub(crate) fn resolve(
        &self,
        passwd: Option<&str>,
        group_file: Option<&str>,
    ) -> Result<JobUser, UnknownName> {
        // No user before the `:` is root, as with no `User` at all.
        let user = if self.user.is_empty() { "0" } else { self.user };
        let entry = passwd
            .into_iter()
            .flat_map(str::lines)
            .filter_map(passwd_entry)
            .find(|(name, uid, _)| *name == user || Some(*uid) == number(user));
        let (uid, primary_gid) = match (entry, number(user)) {
            (Some((_, uid, gid)), _) => (uid, gid),
            (None, Some(uid)) => (uid, 0),
            (None, None) => return Err(UnknownName::User(user.to_string())),
        };
        let gid = match self.group.filter(|g| !g.is_empty()) {
            None => primary_gid,
            Some(group) => match number(group) {
                Some(gid) => gid,
                None => group_file
                    .into_iter()
                    .flat_map(str::lines)
                    .filter_map(group_entry)
                    .find(|(name, _)| *name == group)
                    .map(|(_, gid)| gid)
                    .ok_or_else(|| UnknownName::Group(group.to_string()))?,
            },
        };
        Ok(JobUser { uid, gid })
    }
}

fn number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `name:password:uid:gid:...`
fn passwd_entry(line: &str) -> Option<(&str, u32, u32)> {
    let mut fields = line.split(':');
    let name = fields.next()?;
    let _password = fields.next()?;
    let uid = number(fields.next()?)?;
    let gid = number(fields.next()?)?;
    Some((name, uid, gid))
}

/// `name:password:gid:members`
fn group_entry(line: &str) -> Option<(&str, u32)> {
    let mut fields = line.split(':');
    let name = fields.next()?;
    let _password = fields.next()?;
    let gid = number(fields.next()?)?;
    Some((name, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# a comment\nbuilder:x:1001:1001::/home/builder:/bin/sh\nbroken line\nweb:x:33:33::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nbuilder:x:1001:\nstaff:x:50:builder\n";

    fn resolve(spec: &str) -> Result<JobUser, UnknownName> {
        UserSpec::parse(spec).resolve(Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn users_resolve_as_docker_resolves_them() {
        let user = |uid, gid| Ok(JobUser { uid, gid });
        assert_eq!(resolve("builder"), user(1001, 1001));
        assert_eq!(resolve("1001"), user(1001, 1001));
        assert_eq!(resolve("1001:2002"), user(1001, 2002));
        assert_eq!(resolve("builder:staff"), user(1001, 50));
        assert_eq!(resolve("web:1001"), user(33, 1001));
        // A uid with no entry: Docker gives it the group 0.
        assert_eq!(resolve("1234"), user(1234, 0));
        assert_eq!(resolve("1234:"), user(1234, 0));
        assert_eq!(resolve(":staff"), user(0, 50));
        assert_eq!(UserSpec::parse("1234").resolve(None, None), user(1234, 0));
    }

    #[test]
    fn names_the_image_lacks_are_errors() {
        assert_eq!(resolve("ghost"), Err(UnknownName::User("ghost".into())));
        assert_eq!(
            resolve("builder:nogroup"),
            Err(UnknownName::Group("nogroup".into()))
        );
        assert_eq!(
            UserSpec::parse("builder").resolve(None, None),
            Err(UnknownName::User("builder".into()))
        );
    }

    #[test]
    fn lookups_only_when_a_name_or_a_lone_uid_needs_them() {
        assert!(!UserSpec::parse("1001:1001").needs_lookup());
        assert!(UserSpec::parse("1001").needs_lookup());
        assert!(UserSpec::parse("builder:1").needs_lookup());
        assert!(UserSpec::parse("1:staff").needs_lookup());
        for root in ["", "root", "0", "0:0", "root:0"] {
            assert!(UserSpec::parse(root).is_plainly_root(), "{root}");
        }
        for not_root in ["1001", "0:1001", "root:staff"] {
            assert!(!UserSpec::parse(not_root).is_plainly_root(), "{not_root}");
        }
    }
}
