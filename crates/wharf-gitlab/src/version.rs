//! Component versions: `~latest`, a partial semantic version (`1`, `1.2`), or a ref as is.

/// What `@<version>` of a component address asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VersionSpec {
    /// `~latest`: the highest released version.
    Latest,
    /// `1` or `1.2`: the highest released version with this prefix.
    Partial { major: u64, minor: Option<u64> },
    /// A full version, tag, branch or commit SHA, used as a ref.
    Exact(String),
}

impl VersionSpec {
    pub fn parse(version: &str) -> VersionSpec {
        if version == "~latest" {
            return VersionSpec::Latest;
        }
        let parts: Vec<&str> = version.split('.').collect();
        let numbers: Option<Vec<u64>> = parts.iter().map(|p| number(p)).collect();
        match numbers.as_deref() {
            Some([major]) => VersionSpec::Partial {
                major: *major,
                minor: None,
            },
            Some([major, minor]) => VersionSpec::Partial {
                major: *major,
                minor: Some(*minor),
            },
            _ => VersionSpec::Exact(version.to_string()),
        }
    }
}

/// A digit string without a leading zero (as semver writes numbers).
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    text.parse().ok()
}

/// `MAJOR.MINOR.PATCH` with an optional `-prerelease`, as GitLab's CI/CD catalog requires of
/// component versions. Build metadata (`+...`) is ignored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SemVer {
    core: (u64, u64, u64),
    /// `true` for a release: releases sort above their pre-releases.
    release: bool,
    pre: String,
}

impl SemVer {
    pub fn parse(tag: &str) -> Option<SemVer> {
        let tag = tag.split('+').next()?;
        let (core, pre) = match tag.split_once('-') {
            Some((core, pre)) if !pre.is_empty() => (core, Some(pre)),
            Some(_) => return None,
            None => (tag, None),
        };
        let numbers: Vec<u64> = core.split('.').map(number).collect::<Option<_>>()?;
        let [major, minor, patch] = numbers[..] else {
            return None;
        };
        Some(SemVer {
            core: (major, minor, patch),
            release: pre.is_none(),
            pre: pre.unwrap_or_default().to_string(),
        })
    }

    fn is_release(&self) -> bool {
        self.release
    }
}

/// The highest release among `tags` that `spec` accepts (pre-releases never match `~latest` or
/// a partial version, as in GitLab's catalog).
pub(crate) fn pick<'a>(
    spec: &VersionSpec,
    tags: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    tags.into_iter()
        .filter_map(|tag| Some((SemVer::parse(tag)?, tag)))
        .filter(|(version, _)| version.is_release())
        .filter(|(version, _)| match spec {
            VersionSpec::Latest => true,
            VersionSpec::Partial { major, minor } => {
                version.core.0 == *major && minor.is_none_or(|m| version.core.1 == m)
            }
            VersionSpec::Exact(_) => false,
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, tag)| tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAGS: [&str; 7] = [
        "1.0.0",
        "1.2.0",
        "1.2.3",
        "1.10.0",
        "2.0.0-rc.1",
        "v3",
        "main",
    ];

    #[test]
    fn partial_versions_pick_the_highest_matching_release() {
        assert_eq!(pick(&VersionSpec::parse("1"), TAGS), Some("1.10.0"));
        assert_eq!(pick(&VersionSpec::parse("1.2"), TAGS), Some("1.2.3"));
        assert_eq!(pick(&VersionSpec::parse("~latest"), TAGS), Some("1.10.0"));
        assert_eq!(
            pick(&VersionSpec::parse("2"), TAGS),
            None,
            "pre-releases do not match"
        );
        assert_eq!(
            pick(&VersionSpec::parse("3"), TAGS),
            None,
            "`v3` is not semver"
        );
    }

    #[test]
    fn full_versions_refs_and_shas_are_exact() {
        for exact in ["1.2.3", "main", "v1", "01", "c0ffee"] {
            assert_eq!(VersionSpec::parse(exact), VersionSpec::Exact(exact.into()));
        }
        assert!(SemVer::parse("1.2.3") > SemVer::parse("1.2.3-rc.1"));
        assert!(SemVer::parse("1.10.0") > SemVer::parse("1.9.9"));
    }
}
