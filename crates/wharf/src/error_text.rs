//! How the CLI prints an error with its causes.
//!
//! Library errors (thiserror) put their source's message in their own and also return it as
//! `source()`, so anyhow's `{:#}`, which appends every cause, said each message once per level:
//! a missing S3 bucket printed the server's answer six times. Here a cause is appended only
//! when its text is not already in what was said, so a context added with `.context(...)` (whose
//! message does not include its cause) is still followed by it.

/// `e` and those of its causes not already said, joined with ": ", safe for a terminal.
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut said = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(&text);
    }
    // A cause can quote what a registry or an archive sent (a tar header's bytes).
    wharf_oci::printable(&said).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library error's shape: its message includes its source's, which it also returns.
    #[derive(Debug)]
    struct Wrapping {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    }

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: {}", self.what, self.source)
        }
    }

    impl std::error::Error for Wrapping {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.source)
        }
    }

    #[test]
    fn terminal_commands_in_a_cause_are_escaped() {
        let e = anyhow::Error::new(std::io::Error::other("header \u{1b}]0;pwned\u{7} bad"))
            .context("unpacking layer sha256:ab");
        assert_eq!(
            error_text(&e),
            "unpacking layer sha256:ab: header \\u{1b}]0;pwned\\u{7} bad"
        );
    }

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let e = anyhow::Error::new(Wrapping {
            what: "garbage collection of s3://b/p",
            source: Box::new(Wrapping {
                what: "LIST s3://b/p",
                source: Box::new(std::io::Error::other("404 NoSuchBucket")),
            }),
        });
        assert_eq!(
            format!("{e:#}").matches("NoSuchBucket").count(),
            3,
            "the premise: anyhow repeats each level"
        );
        assert_eq!(
            error_text(&e),
            "garbage collection of s3://b/p: LIST s3://b/p: 404 NoSuchBucket"
        );
    }

    #[test]
    fn a_context_is_followed_by_its_cause() {
        let e = anyhow::Error::new(std::io::Error::other("permission denied"))
            .context("creating /srv/registry");
        assert_eq!(error_text(&e), "creating /srv/registry: permission denied");
    }
}
