//! Repository names, tags and digests, validated by the spec's grammar (`wharf-names`, shared
//! with the client) before anything touches storage: a valid name or tag can never form `..`, an
//! absolute path or an empty path segment. The server's wording of each refusal is here.

use std::fmt;

use sha2::{Digest as _, Sha256};
use wharf_names::{MAX_NAME_LEN, NameError as GrammarError};

/// Why a name, tag or digest from a client is refused. It imports nothing of the crate, so every
/// layer can use names; `error.rs` turns it into the OCI error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid repository name {name:?}: {reason}")]
    Repository { name: String, reason: &'static str },
    #[error("invalid tag {tag:?}")]
    Tag { tag: String },
    #[error("invalid digest: {0}")]
    Digest(String),
}

/// A repository name matching
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(name: &str) -> Result<RepoName, NameError> {
        let invalid = |reason| NameError::Repository {
            name: name.to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid("longer than 255 characters"));
        }
        wharf_names::check_repository_path(name).map_err(|_| {
            invalid(
                "each /-separated component must be lowercase letters and digits, \
                 separated by '.', '_', '__' or dashes",
            )
        })?;
        Ok(RepoName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`. Never starts with `.`, so safe as a file name.
pub fn validate_tag(tag: &str) -> Result<(), NameError> {
    wharf_names::check_tag(tag).map_err(|_| NameError::Tag {
        tag: tag.to_string(),
    })
}

/// A content digest. Only `sha256` is stored (the only algorithm clients push in practice); other
/// well-formed algorithms are refused as unsupported rather than mis-stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, NameError> {
        let unsupported = |algorithm: &str| {
            NameError::Digest(format!(
                "unsupported digest algorithm {algorithm:?} (only sha256)"
            ))
        };
        match wharf_names::check_digest(s) {
            Ok(("sha256", hex)) => Ok(Digest {
                hex: hex.to_string(),
            }),
            Ok((algorithm, _)) => Err(unsupported(algorithm)),
            Err(GrammarError::NotAlgorithmHex { .. }) => {
                Err(NameError::Digest(format!("{s:?} is not algorithm:hex")))
            }
            Err(
                GrammarError::InvalidAlgorithm { algorithm, .. }
                | GrammarError::InvalidHex { algorithm, .. }
                | GrammarError::WrongHexLength { algorithm, .. },
            ) if algorithm != "sha256" => Err(unsupported(&algorithm)),
            Err(_) => Err(NameError::Digest(format!(
                "{s:?}: a sha256 digest is 64 lowercase hex characters"
            ))),
        }
    }

    pub fn of(data: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    pub fn from_hasher(hasher: Sha256) -> Digest {
        Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }

    /// The 64 hex characters.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, NameError> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest)
        } else {
            validate_tag(s)?;
            Ok(Reference::Tag(s.to_string()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grammar itself is tested in `wharf-names`; here, what the server adds: the length
    /// limit, its wording, and that nothing able to leave the storage root gets through.
    #[test]
    fn names_that_could_escape_storage_are_refused() {
        assert!(RepoName::parse("team/sub/app").is_ok());
        for bad in ["", "..", "a/../b", "/a", "a/", "a%2fb", "a/_layers"] {
            let error = RepoName::parse(bad).expect_err(bad);
            assert!(
                error.to_string().starts_with("invalid repository name"),
                "{error}"
            );
        }
        let long = "a".repeat(256);
        assert!(
            RepoName::parse(&long)
                .expect_err("long")
                .to_string()
                .contains("255")
        );
    }

    #[test]
    fn tags_and_digests() {
        assert!(validate_tag("v1.0_rc-2").is_ok());
        assert!(validate_tag("_x").is_ok());
        for bad in ["", ".hidden", "-x", "a/b", "..", &"a".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()).ok(), Some(d));
        let message = |s: &str| Digest::parse(s).expect_err(s).to_string();
        assert!(message("sha256:ABC").contains("64 lowercase hex"));
        assert!(message("sha512:00").contains("unsupported digest algorithm \"sha512\""));
        assert!(message(&format!("sha512:{}", "a".repeat(128))).contains("unsupported"));
        assert!(message("sha256").contains("is not algorithm:hex"));
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
    }
}
