//! Why talking to a GitLab instance failed. Messages name the URL and status; they never hold a
//! token (requests carry it in a header, and no header is ever quoted).

/// What went wrong while fetching one file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status. `message`: GitLab's JSON `message`, if any.
    #[error("GET {url}: {status}{}", message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Status {
        url: String,
        status: u16,
        message: Option<String>,
        /// The answer was not GitLab's JSON: the host may have no GitLab API at that path.
        json: bool,
    },
    /// No answer: DNS, connection, TLS or timeout.
    #[error("GET {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// A redirect that wharf does not follow (to plain http, or too many).
    #[error("GET {url}: {reason}")]
    Redirect { url: String, reason: String },
    /// The file is larger than the per-file limit (GitLab's `max_yaml_size_bytes`).
    #[error("GET {url}: the file is larger than {limit} bytes (--max-yaml-size)")]
    TooLarge { url: String, limit: usize },
    /// The body is not UTF-8 text, or an API answer is not the JSON expected.
    #[error("GET {url}: {reason}")]
    BadBody { url: String, reason: String },
    /// `--offline` and the cache has no copy.
    #[error("--offline and the include cache {cache} has no copy of {what}")]
    NotCached { what: String, cache: String },
    /// Reading or writing the cache failed.
    #[error("include cache {path}: {source}")]
    Cache {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The `git` fallback failed; `stderr` is git's (tokens are never on git's command line).
    #[error("git {action} {url}: {stderr}")]
    Git {
        action: String,
        url: String,
        stderr: String,
    },
    /// The include cannot be resolved as written (component on another host, no such version...).
    #[error("{0}")]
    Resolve(String),
    /// Several ways were tried and all failed: each one's error, in order.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; then "))]
    AllFailed(Vec<Error>),
}

impl Error {
    pub(crate) fn cache(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Cache {
            path: path.display().to_string(),
            source,
        }
    }

    /// The HTTP status, when the server answered (the last one of several tries).
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            Error::AllFailed(all) => all.iter().rev().find_map(Error::status),
            _ => None,
        }
    }

    /// No answer from the server at all (worth a retry from the cache or git): also the API
    /// unreachable and then the git fallback failing.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Error::Unreachable { .. } => true,
            Error::AllFailed(all) => {
                all.iter().any(Error::is_unreachable)
                    && all
                        .iter()
                        .all(|e| e.is_unreachable() || matches!(e, Error::Git { .. }))
            }
            _ => false,
        }
    }
}

/// Errors from building the client out of [`crate::Settings`].
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("--gitlab-url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("--gitlab-ca-file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("--gitlab-token-file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("--resolve `{given}`: expected HOST=IP:PORT, e.g. gitlab.example.com=127.0.0.1:8443")]
    Resolve { given: String },
    #[error("starting the HTTP client: {0}")]
    Client(String),
}
