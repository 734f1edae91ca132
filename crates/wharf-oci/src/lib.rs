//! wharf-oci: image references, registry credentials resolved exactly as GitLab's runner resolves
//! them, and the registry login client.
//!
//! PUBLIC API CONTRACT (wharf-run and the `wharf` binary are written against these names; keep
//! them, add freely).
//!
//! Modules: [`reference`] (image references), [`authconfig`] (DOCKER_AUTH_CONFIG / config.json
//! documents and key normalisation), [`helper`] (docker-credential-* helpers), [`resolve`]
//! (precedence and matching), [`login`] (the registry login client), [`store`] (writing
//! config.json like `docker login`).

pub mod authconfig;
pub mod helper;
pub mod login;
pub mod reference;
pub mod resolve;
pub mod store;

pub use authconfig::{
    AuthConfig, AuthConfigError, AuthEntry, DOCKER_HUB_KEY, HelperEntry, normalize_key,
};
pub use helper::{CredentialHelper, HelperError};
pub use login::{
    AuthScheme, Challenge, Endpoint, LoginError, LoginOutcome, LoginRequest, MAX_MESSAGE_BODY,
    bearer_token, body_up_to, describe_http_error, endpoint, login, parse_www_authenticate,
    text_of,
};
pub use reference::DOCKER_HUB;
pub use resolve::{
    JOB_AUTH_CONFIG_SOURCE, JOB_CREDENTIALS_SOURCE, RUNNER_AUTH_CONFIG_SOURCE,
    config_key_for_registry,
};
pub use store::{
    StoreError, auth_config_json, default_docker_config_dir, encode_auth, store_login,
};

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// A parsed image reference, normalised the way Docker and GitLab's runner do it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io` for Docker Hub, else `host[:port]` lowercased.
    pub registry: String,
    /// Repository path, e.g. `library/busybox` on Docker Hub, `node` on `r.example.com:5000`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference `{reference}`: {reason}")]
    Invalid { reference: String, reason: String },
}

impl ImageRef {
    /// Parse with Docker's grammar and normalisation (`busybox` -> `docker.io/library/busybox`).
    pub fn parse(reference: &str) -> Result<Self, ReferenceError> {
        Self::parse_impl(reference)
    }
    /// `registry/repository` without tag or digest: what credential keys are matched against.
    pub fn registry_path(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

/// One set of credentials for one registry. Debug and Display never print secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: Option<String>,
    pub password: Option<String>,
    /// OAuth2 refresh token (`identitytoken`), as `docker login` stores for token registries.
    pub identity_token: Option<String>,
    /// A bearer token to use as is (`registrytoken`).
    pub registry_token: Option<String>,
    /// The key the entry was found under (e.g. `registry.example.com:5000`).
    pub server_address: String,
}

impl RegistryAuth {
    /// Every secret value in this entry (for the log masker).
    pub fn secrets(&self) -> Vec<String> {
        [&self.password, &self.identity_token, &self.registry_token]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The value of the `X-Registry-Auth` header the Docker Engine API expects for a pull:
    /// base64url of the entry's JSON (`username`, `password`, `serveraddress`, `identitytoken`,
    /// `registrytoken`; empty fields omitted). Contains secrets: never log it.
    pub fn x_registry_auth(&self) -> String {
        use base64::Engine as _;
        let mut map = serde_json::Map::new();
        let fields = [
            ("username", &self.username),
            ("password", &self.password),
            ("identitytoken", &self.identity_token),
            ("registrytoken", &self.registry_token),
        ];
        for (name, value) in fields {
            if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
                map.insert(name.into(), serde_json::Value::String(v.clone()));
            }
        }
        if !self.server_address.is_empty() {
            map.insert(
                "serveraddress".into(),
                serde_json::Value::String(self.server_address.clone()),
            );
        }
        base64::engine::general_purpose::URL_SAFE.encode(serde_json::Value::Object(map).to_string())
    }

    /// Whether the entry holds anything to authenticate with (`{}` does not).
    pub fn has_credentials(&self) -> bool {
        [
            &self.username,
            &self.password,
            &self.identity_token,
            &self.registry_token,
        ]
        .into_iter()
        .flatten()
        .any(|v| !v.is_empty())
    }
}

impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "identity_token",
                &self.identity_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "registry_token",
                &self.registry_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where credentials may come from, highest priority first.
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    /// `DOCKER_AUTH_CONFIG` from the pipeline/job/CLI variables (the contents, also for file-type
    /// variables). Replaces `runner_auth_config` whole when set.
    pub job_auth_config: Option<Secret>,
    /// `DOCKER_AUTH_CONFIG` from wharf's own environment (runner level).
    pub runner_auth_config: Option<Secret>,
    /// `$DOCKER_CONFIG`: when set, `$DOCKER_CONFIG/config.json` replaces `~/.docker/config.json`.
    pub docker_config_dir: Option<PathBuf>,
    /// `$HOME`, for `~/.docker/config.json` and `~/.dockercfg`.
    pub home_dir: Option<PathBuf>,
    /// `$PATH`, to find `docker-credential-<name>` helpers.
    pub path: Option<OsString>,
    /// The registry credentials GitLab sends with a job (`credentials` entries of type
    /// `registry`: its own registry with `gitlab-ci-token` and the job token, dependency proxy):
    /// the last source, after both of the above (gitlab-runner's `helpers/docker/auth`). `None`
    /// outside a runner job (not listed); `Some(empty)`: a runner job that got none.
    pub job_credentials: Option<Vec<RegistryCredential>>,
}

/// One registry credential from a GitLab job payload.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryCredential {
    /// The registry as GitLab names it (`registry.example.com`, `host:5050`, or a URL).
    pub url: String,
    pub username: String,
    pub password: Secret,
}

/// The password is a secret: only the registry and user are shown.
impl fmt::Debug for RegistryCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredential")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// A string whose Debug/Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The outcome of resolving credentials for one image: what was found and every source looked at.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub found: Option<Found>,
    /// Every source looked at, in priority order, with what it held for this registry.
    pub tried: Vec<SourceReport>,
    /// Non-fatal problems (a failing helper, an unreadable file), for the job log. No secrets.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Found {
    /// As printed in `Authenticating with credentials from <source>`: `$DOCKER_AUTH_CONFIG`,
    /// `/root/.docker/config.json`, ...
    pub source: String,
    /// The key that matched (e.g. `registry.example.com:5000/team`).
    pub key: String,
    pub auth: RegistryAuth,
}

#[derive(Debug, Clone)]
pub struct SourceReport {
    /// `$DOCKER_AUTH_CONFIG`, a file path, `docker-credential-<name> (credsStore in <file>)`...
    pub source: String,
    /// Human-readable, no secrets: "not set", "file not found", "no entry for r:5000 (has: a, b)",
    /// "invalid JSON at line 1 column 5: ...", "used (key r:5000)".
    pub outcome: String,
}

impl Resolution {
    /// A multi-line explanation for when no credentials were found: the registry, every source
    /// tried, and how to fix it (DOCKER_AUTH_CONFIG example with placeholders, `wharf login`).
    pub fn explain_missing(&self, image: &ImageRef) -> String {
        resolve::explain_missing_impl(self, image)
    }

    /// The explanation for a registry that refused a pull (HTTP 401/403, `detail` its message):
    /// `(message, hint)`. Without credentials: the refusal followed by where wharf looked and
    /// how to fix it; with credentials: which source and entry were rejected and how to test new
    /// ones. The same wording for every puller (the Docker executor's pull says the same).
    pub fn explain_refusal(
        &self,
        image_name: &str,
        image: &ImageRef,
        detail: &str,
    ) -> (String, String) {
        let registry = &image.registry;
        match &self.found {
            None => (
                format!(
                    "Failed to pull image {image_name}: registry {registry} requires credentials ({detail})\n{}",
                    self.explain_missing(image)
                ),
                String::new(),
            ),
            Some(found) => (
                format!(
                    "Failed to pull image {image_name}: registry {registry} rejected the credentials from {} (entry \"{}\"): {detail}",
                    found.source, found.key
                ),
                format!(
                    "check the username and password of that entry (run `wharf login {registry} -u <user> --password-stdin` to test and store new ones), and that the user may pull {}",
                    image.repository
                ),
            ),
        }
    }
}

/// Resolve credentials for `image` from `sources`, as GitLab's runner does.
///
/// Runs credential helpers (blocking, up to 30 s each): call it from a blocking context.
pub fn resolve(image: &ImageRef, sources: &CredentialSources) -> Resolution {
    resolve::resolve_impl(image, sources)
}

/// Every secret in a DOCKER_AUTH_CONFIG document (base64 `auth` values, decoded passwords,
/// identity and registry tokens), for the log masker. Never fails. For invalid JSON it falls back
/// to a textual scan for `"auth"`/`"password"`/token fields, since a malformed value still has to
/// be masked.
pub fn secrets_in_auth_config(json: &str) -> Vec<String> {
    resolve::secrets_in_auth_config_impl(json)
}

/// `text` with its control characters other than newline and tab written as escapes
/// (`\u{1b}`): what a registry, an archive or a file put in a message never reaches a terminal
/// as a command (a cursor move, a title change, a hidden line).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn printable_escapes_terminal_commands_and_keeps_the_rest() {
        assert!(matches!(
            printable("plain ✓\n\tline"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("a\u{1b}]0;pwned\u{7}b\rc\u{9b}2Jd"),
            "a\\u{1b}]0;pwned\\u{7}b\\rc\\u{9b}2Jd"
        );
    }

    #[test]
    fn x_registry_auth_is_base64url_json_of_the_entry() {
        let auth = RegistryAuth {
            username: Some("u".into()),
            password: Some("p?>".into()),
            identity_token: None,
            registry_token: Some(String::new()),
            server_address: "r.io:5000".into(),
        };
        let header = auth.x_registry_auth();
        let json = base64::engine::general_purpose::URL_SAFE
            .decode(&header)
            .expect("base64url");
        let v: serde_json::Value = serde_json::from_slice(&json).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"username": "u", "password": "p?>", "serveraddress": "r.io:5000"})
        );
        assert!(!format!("{auth:?}").contains("p?>"));
    }
}
