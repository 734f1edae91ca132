//! The `[auth]` table of the registry's TOML configuration file.
//!
//! ```toml
//! [auth]
//! mode = "token"                 # none | basic | token
//! htpasswd = "htpasswd"          # made by `htpasswd -B` or `wharf registry user add`
//!
//! [auth.groups]
//! devs = ["bob", "ci"]
//!
//! [auth.admins]                  # may list the catalog (GET /v2/_catalog)
//! users = ["alice"]
//!
//! [[auth.allow]]
//! users = ["anonymous"]          # "anonymous": no credentials; "*": any signed-in user
//! repositories = ["public/**"]   # `*`: within one segment; `**`: any depth
//! actions = ["pull"]             # pull | push | delete | "*"
//!
//! [[auth.allow]]
//! groups = ["devs"]
//! repositories = ["team/*"]
//! actions = ["pull", "push"]
//!
//! [auth.robots.ci]               # a CI user whose secret is rotated by rewriting this file
//! secret_file = "robots/ci.secret"
//! groups = ["devs"]
//!
//! [auth.token]                   # the built-in token service (mode = "token")
//! service = "wharf-registry"
//! expires_in = 300
//!
//! [auth.external]                # also accept tokens of another token server
//! issuer = "auth.example.com"
//! rootcertbundle = "token-ca.pem"   # and/or jwks = "jwks.json"
//! ```
//!
//! Relative paths are resolved against the configuration file's folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Everyone may do everything. Only when asked for explicitly.
    None,
    /// HTTP Basic against the htpasswd file (and robots).
    Basic,
    /// Docker token authentication with the built-in token service.
    Token,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(AuthMode::None),
            "basic" => Ok(AuthMode::Basic),
            "token" => Ok(AuthMode::Token),
            other => Err(format!(
                "unknown auth mode {other:?} (none, basic or token)"
            )),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Unset means "not configured": the server refuses to start.
    pub mode: Option<AuthMode>,
    pub htpasswd: Option<PathBuf>,
    /// The Basic realm shown to clients.
    pub realm: Option<String>,
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub admins: SubjectsConfig,
    #[serde(default)]
    pub allow: Vec<AllowRule>,
    #[serde(default)]
    pub robots: BTreeMap<String, RobotConfig>,
    #[serde(default)]
    pub token: TokenConfig,
    pub external: Option<ExternalConfig>,
    /// How long a verified password stays cached, in seconds (default 60).
    pub cache_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SubjectsConfig {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotConfig {
    /// A file holding the robot's secret (its first line). Rewrite it to rotate the secret: the
    /// running server notices, and people's passwords are never touched.
    pub secret_file: PathBuf,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The `service` (JWT audience). Default `wharf-registry`.
    pub service: Option<String>,
    /// The JWT issuer. Default `wharf-registry`.
    pub issuer: Option<String>,
    /// Lifetime of access tokens in seconds (at least 60; default 300).
    pub expires_in: Option<u64>,
    /// Lifetime of refresh tokens (docker's `identitytoken`) in seconds (default 90 days).
    pub refresh_expires_in: Option<u64>,
    /// The realm URL put in challenges. Default: `http(s)://<Host of the request>/token`.
    /// Point it at another token server when only external tokens are used.
    pub realm: Option<String>,
    /// The signing key (PEM, PKCS#8, P-256). Default `<root>/auth/token-signing-key.pem`,
    /// created on first start.
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    /// The `iss` its tokens must carry.
    pub issuer: String,
    /// The `aud` its tokens must carry. Default: the registry's `auth.token.service`.
    pub service: Option<String>,
    /// PEM certificates whose keys sign its tokens (Docker registry's `rootcertbundle`).
    pub rootcertbundle: Option<PathBuf>,
    /// A JWKS file with its signing keys.
    pub jwks: Option<PathBuf>,
}

impl AllowRule {
    pub fn subjects(&self) -> SubjectsConfig {
        SubjectsConfig {
            users: self.users.clone(),
            groups: self.groups.clone(),
        }
    }
}

impl AuthConfig {
    /// Read the `[auth]` table of the registry configuration (kept raw by the server's config)
    /// and resolve its relative paths against `base`, the configuration file's folder.
    pub fn from_table(
        table: &toml::Table,
        base: &Path,
    ) -> Result<AuthConfig, super::error::AuthError> {
        let mut cfg: AuthConfig =
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| {
                    super::error::AuthError::Config(format!("[auth]: {}", e.message()))
                })?;
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    /// Resolve relative paths against `base` (the configuration file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.htpasswd.as_mut() {
            fix(p);
        }
        for robot in self.robots.values_mut() {
            fix(&mut robot.secret_file);
        }
        if let Some(p) = self.token.key_file.as_mut() {
            fix(p);
        }
        if let Some(ext) = self.external.as_mut() {
            if let Some(p) = ext.rootcertbundle.as_mut() {
                fix(p);
            }
            if let Some(p) = ext.jwks.as_mut() {
                fix(p);
            }
        }
    }

    /// True when no policy is written: `allow` and `admins` are both empty.
    pub fn has_policy(&self) -> bool {
        !self.allow.is_empty() || self.admins != SubjectsConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
[auth]
mode = "token"
htpasswd = "htpasswd"

[auth.groups]
devs = ["bob", "ci"]

[auth.admins]
users = ["alice"]

[[auth.allow]]
users = ["anonymous"]
repositories = ["public/**"]
actions = ["pull"]

[[auth.allow]]
groups = ["devs"]
repositories = ["team/*"]
actions = ["pull", "push"]

[auth.robots.ci]
secret_file = "robots/ci.secret"
groups = ["devs"]

[auth.token]
service = "wharf-registry"
expires_in = 300

[auth.external]
issuer = "auth.example.com"
rootcertbundle = "token-ca.pem"
"#;
        #[derive(Deserialize)]
        struct File {
            auth: AuthConfig,
        }
        let mut cfg = toml::from_str::<File>(text).unwrap().auth;
        cfg.resolve_paths(Path::new("/etc/wharf"));
        assert_eq!(cfg.mode, Some(AuthMode::Token));
        assert_eq!(
            cfg.htpasswd.as_deref(),
            Some(Path::new("/etc/wharf/htpasswd"))
        );
        assert_eq!(cfg.allow.len(), 2);
        assert_eq!(cfg.allow[1].groups, vec!["devs"]);
        assert_eq!(
            cfg.robots["ci"].secret_file,
            Path::new("/etc/wharf/robots/ci.secret")
        );
        assert!(cfg.has_policy());
        let ext = cfg.external.unwrap();
        assert_eq!(
            ext.rootcertbundle.as_deref(),
            Some(Path::new("/etc/wharf/token-ca.pem"))
        );
    }

    #[test]
    fn from_the_servers_raw_table() {
        let table: toml::Table = toml::from_str("mode = \"basic\"\nhtpasswd = \"h\"\n").unwrap();
        let cfg = AuthConfig::from_table(&table, Path::new("/etc/w")).unwrap();
        assert_eq!(cfg.mode, Some(AuthMode::Basic));
        assert_eq!(cfg.htpasswd.as_deref(), Some(Path::new("/etc/w/h")));
        let bad: toml::Table = toml::from_str("mode = \"kerberos\"\n").unwrap();
        let e = AuthConfig::from_table(&bad, Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[auth]"), "{e}");
        assert!(
            AuthConfig::from_table(&toml::Table::new(), Path::new("/"))
                .unwrap()
                .mode
                .is_none()
        );
    }

    #[test]
    fn typos_are_errors() {
        #[derive(Deserialize, Debug)]
        struct File {
            #[allow(dead_code)]
            auth: AuthConfig,
        }
        assert!(toml::from_str::<File>("[auth]\nmdoe = \"basic\"\n").is_err());
        assert!(toml::from_str::<File>("[[auth.allow]]\nuser = [\"a\"]\n").is_err());
    }
}
