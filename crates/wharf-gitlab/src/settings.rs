//! Where the GitLab instance is and how to reach it: URL, token, extra CA, DNS overrides, cache.

use crate::error::SettingsError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use url::Url;

/// GitLab's `ci_max_yaml_size`: the largest file fetched for an include, unless set otherwise.
pub const DEFAULT_MAX_FILE_BYTES: usize = 2 * 1024 * 1024;

/// The instance used when neither `--gitlab-url` nor `CI_SERVER_URL` is given.
pub const DEFAULT_GITLAB_URL: &str = "https://gitlab.com";

/// How to reach a GitLab instance and where to keep what was fetched from it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The instance, e.g. `https://gitlab.com` (no trailing `/`).
    pub url: Url,
    /// Sent to the instance's host only, never to `remote:` URLs on other hosts.
    pub token: Option<Token>,
    /// A PEM file of extra trusted roots (a self-hosted instance with a private CA).
    pub ca_file: Option<PathBuf>,
    /// DNS overrides: connect to `addr` for `host` (TLS still verifies `host`).
    pub resolve: Vec<Resolve>,
    /// The include cache folder (`blobs/`, `index/`, `git/` below it).
    pub cache_dir: PathBuf,
    /// Use only the cache; never touch the network.
    pub offline: bool,
    /// How the `git` fallback reaches projects.
    pub git: GitTransport,
    /// The largest file accepted (GitLab's `max_yaml_size_bytes`).
    pub max_file_bytes: usize,
}

impl Settings {
    /// Settings for `url` with nothing else set: no token, the given cache, online.
    pub fn new(url: Url, cache_dir: PathBuf) -> Settings {
        Settings {
            url,
            token: None,
            ca_file: None,
            resolve: Vec::new(),
            cache_dir,
            offline: false,
            git: GitTransport::Https,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }

    /// `host` or `host:port` of the instance, as component addresses and token checks compare it.
    pub fn host(&self) -> String {
        host_of(&self.url)
    }
}

/// `host` or `host:port` (the port only when the URL names one).
pub(crate) fn host_of(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The instance URL from `--gitlab-url`, else `CI_SERVER_URL`, else gitlab.com.
pub fn instance_url(flag: Option<&str>, ci_server_url: Option<&str>) -> Result<Url, SettingsError> {
    let given = flag
        .or(ci_server_url.filter(|v| !v.is_empty()))
        .unwrap_or(DEFAULT_GITLAB_URL);
    let bad = |reason: &str| SettingsError::Url {
        url: strip_userinfo(given),
        reason: reason.to_string(),
    };
    let mut url = Url::parse(given.trim_end_matches('/')).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(bad(
            "expected an http(s) URL such as https://gitlab.example.com",
        ));
    }
    // The URL is in every message about a request: credentials in it would show there.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials do not go in the URL: give the token with --gitlab-token-file or \
             CI_JOB_TOKEN",
        ));
    }
    if url.path() == "/" {
        url.set_path("");
    }
    Ok(url)
}

/// For messages: `url` with any `user:password@` before its host removed, even when it does
/// not parse.
pub(crate) fn strip_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The default cache folder: `$XDG_CACHE_HOME/wharf/includes`, else `~/.cache/wharf/includes`.
pub fn default_cache_dir(xdg_cache_home: Option<&Path>, home: Option<&Path>) -> PathBuf {
    match (xdg_cache_home.filter(|p| p.is_absolute()), home) {
        (Some(xdg), _) => xdg.join("wharf/includes"),
        (None, Some(home)) => home.join(".cache/wharf/includes"),
        (None, None) => PathBuf::from(".wharf/includes"),
    }
}

/// Which header carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A personal, project or group access token (`GITLAB_TOKEN`, `--gitlab-token-file`).
    Private,
    /// A CI job token (`CI_JOB_TOKEN`).
    Job,
    /// A runner authentication token (`glrt-...`): the runner protocol's job requests.
    Runner,
}

/// A GitLab token. Its `Debug` and `Display` never show the secret.
#[derive(Clone)]
pub struct Token {
    kind: TokenKind,
    secret: String,
}

impl Token {
    pub fn new(kind: TokenKind, secret: impl Into<String>) -> Token {
        Token {
            kind,
            secret: secret.into(),
        }
    }

    /// `--gitlab-token-file` (trailing newline dropped), else `GITLAB_TOKEN`, else `CI_JOB_TOKEN`.
    pub fn from_sources(
        file: Option<&Path>,
        gitlab_token: Option<&str>,
        ci_job_token: Option<&str>,
    ) -> Result<Option<Token>, SettingsError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| SettingsError::TokenFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(SettingsError::TokenFile {
                    path: path.display().to_string(),
                    reason: "the file is empty".into(),
                });
            }
            return Ok(Some(Token::new(TokenKind::Private, secret)));
        }
        let non_empty = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_string);
        Ok(non_empty(gitlab_token)
            .map(|t| Token::new(TokenKind::Private, t))
            .or_else(|| non_empty(ci_job_token).map(|t| Token::new(TokenKind::Job, t))))
    }

    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The header GitLab reads this token from.
    pub fn header_name(&self) -> &'static str {
        match self.kind {
            TokenKind::Private => "PRIVATE-TOKEN",
            TokenKind::Job => "JOB-TOKEN",
            TokenKind::Runner => "RUNNER-TOKEN",
        }
    }

    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}, <hidden>)", self.header_name())
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a {} token", self.header_name())
    }
}

/// `--resolve HOST=IP:PORT`: connect to `addr` whenever `host` is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolve {
    pub host: String,
    pub addr: SocketAddr,
}

impl std::str::FromStr for Resolve {
    type Err = SettingsError;
    fn from_str(given: &str) -> Result<Resolve, SettingsError> {
        let bad = || SettingsError::Resolve {
            given: given.to_string(),
        };
        let (host, addr) = given.split_once('=').ok_or_else(bad)?;
        let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
        if host.is_empty() || addr.port() == 0 {
            return Err(bad());
        }
        Ok(Resolve {
            host: host.to_ascii_lowercase(),
            addr,
        })
    }
}

/// How the `git` fallback clones: `https://<instance>/<project>.git` with the user's git
/// credentials, or `git@<host>:<project>.git` with their ssh keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GitTransport {
    #[default]
    Https,
    Ssh,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_gitlab_url_are_refused_and_never_shown() {
        for given in [
            "https://root:pw-very-secret@gitlab.example.com",
            "https://:pw-very-secret@gitlab.example.com",
            "https://root:pw very-secret@gitlab example.com/x@y",
        ] {
            let e = instance_url(Some(given), None).expect_err(given);
            assert!(!e.to_string().contains("very-secret"), "{e}");
            assert!(e.to_string().contains("gitlab"), "{e}");
        }
        assert_eq!(
            strip_userinfo("https://u:p@host/a@b?c=@d"),
            "https://host/a@b?c=@d"
        );
        assert_eq!(strip_userinfo("no scheme u:p@host"), "no scheme u:p@host");
    }
}
