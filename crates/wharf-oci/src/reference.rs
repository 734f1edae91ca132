//! Image references: Docker's reference grammar and its Docker Hub normalisation.
//!
//! Grammar (distribution/reference):
//! `[registry/]path[/path...][:tag][@algorithm:hex]`, where the first segment is a registry only if
//! it contains `.` or `:` or is `localhost` (otherwise the image is on Docker Hub), path components
//! are lowercase `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`, tags are
//! `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`. The path, tag and digest grammar is `wharf-names`, the
//! one the registry checks too; this file adds the registry host and Docker Hub's defaults.

use std::fmt;

use wharf_names::{MAX_NAME_LEN, NameError, check_digest, check_repository_path, check_tag};

use crate::{ImageRef, ReferenceError};

/// Docker Hub as it appears in normalised references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker's historic name for Docker Hub; normalised to [`DOCKER_HUB`].
const DOCKER_HUB_LEGACY: &str = "index.docker.io";

fn invalid(reference: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_owned(),
        reason: reason.into(),
    }
}

impl ImageRef {
    pub(crate) fn parse_impl(reference: &str) -> Result<Self, ReferenceError> {
        if reference.is_empty() {
            return Err(invalid(reference, "the reference is empty"));
        }
        if reference.chars().any(char::is_whitespace) {
            return Err(invalid(
                reference,
                "it contains whitespace (check for a stray space or newline in the variable)",
            ));
        }

        // The digest is everything after the first `@`; a tag can only follow the last `/`, so a
        // `:` before that is a registry port.
        let (name_and_tag, digest) = match reference.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (reference, None),
        };
        let (name, tag) = match name_and_tag.rfind(':') {
            Some(colon) if !name_and_tag[colon..].contains('/') => {
                (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
            }
            _ => (name_and_tag, None),
        };
        if name.is_empty() {
            return Err(invalid(reference, "the image name is empty"));
        }
        if let Some(tag) = tag {
            checked(reference, check_tag(tag))?;
        }
        if let Some(digest) = digest {
            checked(reference, check_digest(digest))?;
        }

        let (registry, path) = split_registry(name);
        let registry = match registry {
            Some(r) => {
                validate_registry(reference, r)?;
                let lower = r.to_ascii_lowercase();
                if lower == DOCKER_HUB_LEGACY {
                    DOCKER_HUB.to_owned()
                } else {
                    lower
                }
            }
            None => DOCKER_HUB.to_owned(),
        };
        checked(reference, check_repository_path(path))?;
        // Official images live under `library/` on Docker Hub (`busybox` is `library/busybox`).
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid(
                reference,
                format!("the name is longer than {MAX_NAME_LEN} characters"),
            ));
        }
        Ok(ImageRef {
            registry,
            repository,
            tag: tag.map(str::to_owned),
            digest: digest.map(str::to_owned),
        })
    }

    /// The short form Docker prints (`busybox:latest`, `user/app`, `r.example.com:5000/app:1`).
    pub fn familiar(&self) -> String {
        let name = if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.repository)
                .to_owned()
        } else {
            self.registry_path()
        };
        with_tag_and_digest(name, self)
    }

    /// The tag to pull: the explicit tag, or `latest` when neither tag nor digest was given.
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// Registry paths to look credentials up under, most specific first:
    /// `h:5000/a/b/img`, `h:5000/a/b`, `h:5000/a`, `h:5000`.
    pub fn credential_candidates(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut current = self.registry_path();
        loop {
            out.push(current.clone());
            match current.rfind('/') {
                // The registry itself never contains `/`, so this stops at `host[:port]`.
                Some(slash) => current.truncate(slash),
                None => break,
            }
        }
        out
    }
}

fn with_tag_and_digest(mut name: String, image: &ImageRef) -> String {
    if let Some(tag) = &image.tag {
        name.push(':');
        name.push_str(tag);
    }
    if let Some(digest) = &image.digest {
        name.push('@');
        name.push_str(digest);
    }
    name
}

impl fmt::Display for ImageRef {
    /// The canonical, fully qualified form: `docker.io/library/busybox:1.36`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&with_tag_and_digest(self.registry_path(), self))
    }
}

/// Split off the registry: the first segment is one only if it looks like a host.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn validate_registry(reference: &str, registry: &str) -> Result<(), ReferenceError> {
    let bad = |why: &str| invalid(reference, format!("invalid registry `{registry}`: {why}"));
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // IPv6 literal: `[::1]:5000`.
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("unterminated `[`"))?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(bad("not an IPv6 address"));
        }
        match after {
            "" => (None, None),
            p => (
                None,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("unexpected text after `]`"))?,
                ),
            ),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return Err(bad(
                "host names are letters, digits and `-`, separated by `.`",
            ));
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("the port must be a number"));
        }
    }
    Ok(())
}

/// The shared grammar's verdict on a part of `reference`, worded for the reference.
fn checked<T>(reference: &str, result: Result<T, NameError>) -> Result<T, ReferenceError> {
    result.map_err(|e| invalid(reference, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_and_normalises() {
        let digest_ref = format!("busybox@{D}");
        let both = format!("r.example.com:5000/a/b:1.0@{D}");
        // (input, registry, repository, tag, digest)
        type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("busybox", "docker.io", "library/busybox", None, None),
            (
                "busybox:1.36",
                "docker.io",
                "library/busybox",
                Some("1.36"),
                None,
            ),
            (
                "library/busybox",
                "docker.io",
                "library/busybox",
                None,
                None,
            ),
            (
                "docker.io/busybox",
                "docker.io",
                "library/busybox",
                None,
                None,
            ),
            (
                "index.docker.io/busybox",
                "docker.io",
                "library/busybox",
                None,
                None,
            ),
            (
                "INDEX.docker.io/user/app",
                "docker.io",
                "user/app",
                None,
                None,
            ),
            ("user/app:v2", "docker.io", "user/app", Some("v2"), None),
            ("localhost/app", "localhost", "app", None, None),
            (
                "localhost:5000/app:x",
                "localhost:5000",
                "app",
                Some("x"),
                None,
            ),
            // No `/`: `localhost:5000` is the image `localhost` with tag `5000`, as in Docker.
            (
                "localhost:5000",
                "docker.io",
                "library/localhost",
                Some("5000"),
                None,
            ),
            (
                "R.Example.com:5000/team/app",
                "r.example.com:5000",
                "team/app",
                None,
                None,
            ),
            (
                "127.0.0.1:5000/a_b/c__d/e--f.g",
                "127.0.0.1:5000",
                "a_b/c__d/e--f.g",
                None,
                None,
            ),
            ("[::1]:5000/app", "[::1]:5000", "app", None, None),
            (
                "registry.gitlab.com/g/sub/p/img:1",
                "registry.gitlab.com",
                "g/sub/p/img",
                Some("1"),
                None,
            ),
            (&digest_ref, "docker.io", "library/busybox", None, Some(D)),
            (&both, "r.example.com:5000", "a/b", Some("1.0"), Some(D)),
        ];
        for (input, registry, repository, tag, digest) in cases {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry, registry, "{input}");
            assert_eq!(r.repository, repository, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest.as_deref(), digest, "{input}");
        }
    }

    #[test]
    fn display_is_canonical_and_familiar_is_short() {
        let cases = [
            ("busybox", "docker.io/library/busybox", "busybox"),
            ("busybox:1", "docker.io/library/busybox:1", "busybox:1"),
            ("user/app", "docker.io/user/app", "user/app"),
            ("library/a/b", "docker.io/library/a/b", "library/a/b"),
            ("r.io:5000/x:y", "r.io:5000/x:y", "r.io:5000/x:y"),
        ];
        for (input, canonical, familiar) in cases {
            let r = ImageRef::parse(input).expect(input);
            assert_eq!(r.to_string(), canonical);
            assert_eq!(r.familiar(), familiar);
            // The canonical form parses back to the same reference.
            assert_eq!(ImageRef::parse(canonical).expect(canonical), r);
        }
    }

    #[test]
    fn rejects_with_reason_naming_the_reference() {
        let cases = [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("r.example.com/Team/app", "lowercase"),
            ("busybox:", "invalid tag"),
            ("busybox:-x", "invalid tag"),
            ("busybox:a/b", "port"), // the `:` is before a `/`, so `busybox:a` is a registry
            ("busybox:bad tag", "whitespace"),
            ("busybox\n", "whitespace"),
            ("a//b", "empty component"),
            ("app/", "empty component"),
            ("a-/b", "path component"),
            ("_a", "path component"),
            ("busybox@sha256:abc", "digest"),
            ("busybox@md5", "digest"),
            ("r.example.com:port/app", "port"),
            ("bad_host.com/app", "registry"),
            (":tag", "empty"),
        ];
        for (input, needle) in cases {
            let err = ImageRef::parse(input).expect_err(input).to_string();
            assert!(err.contains(&format!("`{input}`")), "{err}");
            assert!(err.contains(needle), "{input}: {err}");
        }
        let long = format!("r.io/{}", "a".repeat(300));
        assert!(ImageRef::parse(&long).is_err());
        let long_tag = format!("busybox:{}", "a".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
    }

    #[test]
    fn candidates_walk_from_most_specific_to_host() {
        let r = ImageRef::parse("h:5000/a/b/img:1").expect("valid");
        assert_eq!(
            r.credential_candidates(),
            ["h:5000/a/b/img", "h:5000/a/b", "h:5000/a", "h:5000"]
        );
        let hub = ImageRef::parse("busybox").expect("valid");
        assert_eq!(
            hub.credential_candidates(),
            [
                "docker.io/library/busybox",
                "docker.io/library",
                "docker.io"
            ]
        );
        assert_eq!(hub.tag_or_latest(), Some("latest"));
    }
}
