//! One grammar for repository names, tags and digests, as distribution/reference and the OCI
//! distribution spec define them, shared by the client (`wharf-oci`, which parses image
//! references) and the server (`wharf-registry`, which checks every name before it builds a
//! storage path). Each side words its own errors from [`NameError`].
//!
//! - repository path: `/`-separated components, each `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`;
//! - tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (never starts with `.`, so it is a safe file name);
//! - digest: `algorithm:hex`, the algorithm lowercase components joined by `+ . _ -`, the hex at
//!   least 32 lowercase digits, exactly 64 for sha256 and 128 for sha512.

/// Longest repository name (distribution's limit; the client counts the registry host in it).
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 128;

/// What is wrong with a name, tag or digest. The messages are the client's wording; the
/// registry maps each kind to its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the repository name is empty")]
    EmptyRepository,
    #[error("the repository path has an empty component (`//` or a trailing `/`)")]
    EmptyComponent,
    #[error("repository name must be lowercase (`{component}`)")]
    Uppercase { component: String },
    #[error(
        "invalid repository path component `{component}`: use lowercase letters and digits \
         separated by `.`, `_`, `__` or `-`"
    )]
    InvalidComponent { component: String },
    #[error(
        "invalid tag `{tag}`: a tag is 1 to {MAX_TAG_LEN} letters, digits, `_`, `.` and `-`, not \
         starting with `.` or `-`"
    )]
    InvalidTag { tag: String },
    #[error("invalid digest `{digest}`: expected `algorithm:hex`, e.g. `sha256:<64 hex digits>`")]
    NotAlgorithmHex { digest: String },
    #[error("invalid digest `{digest}`: invalid algorithm `{algorithm}`")]
    InvalidAlgorithm { digest: String, algorithm: String },
    #[error("invalid digest `{digest}`: the hash must be at least 32 lowercase hex digits")]
    InvalidHex { digest: String, algorithm: String },
    #[error("invalid digest `{digest}`: {algorithm} needs exactly {expected} hex digits")]
    WrongHexLength {
        digest: String,
        algorithm: String,
        expected: usize,
    },
}

/// Checks a repository path (without registry host, tag or digest). Its length is the caller's
/// to check: the client counts the host in [`MAX_NAME_LEN`], the server does not.
pub fn check_repository_path(path: &str) -> Result<(), NameError> {
    if path.is_empty() {
        return Err(NameError::EmptyRepository);
    }
    for component in path.split('/') {
        if component.is_empty() {
            return Err(NameError::EmptyComponent);
        }
        if component.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(NameError::Uppercase {
                component: component.to_owned(),
            });
        }
        if !is_path_component(component) {
            return Err(NameError::InvalidComponent {
                component: component.to_owned(),
            });
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`: no `..`, no leading `_`, never empty.
pub fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut expect_alnum = true;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            while i < bytes.len() && alnum(bytes[i]) {
                i += 1;
            }
            expect_alnum = false;
            continue;
        }
        if expect_alnum {
            return false;
        }
        // A separator: `.`, `_`, `__` or one or more `-`.
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        expect_alnum = true;
    }
    !expect_alnum
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), NameError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag.chars().next().is_some_and(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(NameError::InvalidTag {
            tag: tag.to_owned(),
        })
    }
}

/// Checks a digest and splits it into algorithm and hex.
pub fn check_digest(digest: &str) -> Result<(&str, &str), NameError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| NameError::NotAlgorithmHex {
            digest: digest.to_owned(),
        })?;
    let algo_ok = !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !algo_ok {
        return Err(NameError::InvalidAlgorithm {
            digest: digest.to_owned(),
            algorithm: algorithm.to_owned(),
        });
    }
    let hex_ok = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if hex.len() < 32 || !hex.chars().all(hex_ok) {
        return Err(NameError::InvalidHex {
            digest: digest.to_owned(),
            algorithm: algorithm.to_owned(),
        });
    }
    let expected = match algorithm {
        "sha256" => Some(64),
        "sha512" => Some(128),
        _ => None,
    };
    if let Some(expected) = expected.filter(|&len| hex.len() != len) {
        return Err(NameError::WrongHexLength {
            digest: digest.to_owned(),
            algorithm: algorithm.to_owned(),
            expected,
        });
    }
    Ok((algorithm, hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths_follow_the_spec_grammar() {
        for ok in [
            "a",
            "library/busybox",
            "a.b_c__d---e/f0",
            "team/sub/app",
            "x-1",
        ] {
            assert_eq!(check_repository_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "_a",
            "a_",
            "a___b",
            "a.-b",
            "a%2fb",
            "a b",
            "a/_layers",
        ] {
            assert!(check_repository_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_repository_path("a/Team"),
            Err(NameError::Uppercase {
                component: "Team".into()
            })
        );
        assert_eq!(
            check_repository_path("a//b"),
            Err(NameError::EmptyComponent)
        );
    }

    #[test]
    fn tags() {
        for ok in ["v1.0_rc-2", "_x", "LATEST", &"a".repeat(128)] {
            assert_eq!(check_tag(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "..", "é", &"a".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digests() {
        let hex64 = "0123456789abcdef".repeat(4);
        let sha256 = format!("sha256:{hex64}");
        assert_eq!(check_digest(&sha256), Ok(("sha256", hex64.as_str())));
        assert!(check_digest(&format!("multi+part.alg:{}", "a".repeat(32))).is_ok());
        let kind = |d: &str| match check_digest(d) {
            Ok(_) => "ok",
            Err(NameError::NotAlgorithmHex { .. }) => "not algorithm:hex",
            Err(NameError::InvalidAlgorithm { .. }) => "algorithm",
            Err(NameError::InvalidHex { .. }) => "hex",
            Err(NameError::WrongHexLength { .. }) => "length",
            Err(_) => "other",
        };
        assert_eq!(kind("sha256"), "not algorithm:hex");
        assert_eq!(kind(&format!("SHA256:{hex64}")), "algorithm");
        assert_eq!(kind(&format!(":{hex64}")), "algorithm");
        assert_eq!(kind("sha256:../../etc/passwd"), "hex");
        assert_eq!(kind(&format!("sha256:{}", hex64.to_uppercase())), "hex");
        assert_eq!(kind(&format!("sha512:{hex64}")), "length");
        assert_eq!(kind(&format!("sha256:{hex64}00")), "length");
    }
}
