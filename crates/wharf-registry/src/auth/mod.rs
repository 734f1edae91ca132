//! Access control: the seam between the HTTP layer and auth, and its implementations.
//!
//! The routes describe what each request wants as Docker token scopes ([`Access`]) and ask an
//! [`Authorizer`] for a verdict. The names of the seam are the contract both sides code against
//! and stay stable.
//!
//! - [`build`] turns the `[auth]` configuration into an [`Authorizer`] and, in token mode, the
//!   token service's routes to serve next to `/v2/`.
//! - `seam`: the vocabulary above (re-exported here), which every file below imports.
//! - `htpasswd` (bcrypt files), `credentials` (people and robots, reloaded on change),
//!   `passwords` (Basic checks behind a cache keyed by the header's SHA-256), `policy` (who may
//!   do what), `scope` (Docker scopes), `jwt` (signing key, tokens, external trust),
//!   `service` (the [`Authorizer`]), `token_service` (the realm).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub mod cache;
pub mod config;
pub mod credentials;
mod error;
pub mod htpasswd;
pub mod jwt;
pub mod passwords;
pub mod policy;
pub mod scope;
mod seam;
pub mod service;
pub mod token_service;

pub use config::{AuthConfig, AuthMode};
pub use error::AuthError;
pub use seam::{
    Access, Action, AllowAll, AuthErrorCode, AuthOutcome, Authorizer, Identity, ResourceKind,
};

/// Default `service` (JWT audience) and issuer of the built-in token service.
pub const DEFAULT_SERVICE: &str = "wharf-registry";
/// Default Basic realm.
pub const DEFAULT_REALM: &str = "wharf-registry";
/// Default lifetime of access tokens.
pub const DEFAULT_EXPIRES_IN: u64 = 300;
/// Default lifetime of refresh tokens (docker's `identitytoken`): 90 days.
pub const DEFAULT_REFRESH_EXPIRES_IN: u64 = 90 * 24 * 3600;
/// Default time a verified password stays cached.
pub const DEFAULT_CACHE_SECONDS: u64 = 60;

/// What the server needs to know about itself to build access control.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    /// The registry's root folder (the token signing key is kept under `<root>/auth/`).
    pub root: PathBuf,
    /// Whether clients reach the server over TLS (the realm URL's scheme).
    pub tls: bool,
    /// host:port for the realm URL when a request has no `Host` header.
    pub default_host: String,
}

/// Access control, ready to serve.
pub struct AuthSetup {
    pub authorizer: Arc<dyn Authorizer>,
    /// Routes to serve next to `/v2/` (the token service in token mode).
    pub routes: Option<axum::Router>,
    /// One line for the startup log: mode, users, realm.
    pub summary: String,
}

impl std::fmt::Debug for AuthSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSetup")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// The signing key's default place.
pub fn default_key_file(root: &Path) -> PathBuf {
    root.join("auth").join("token-signing-key.pem")
}

/// Build access control from the `[auth]` configuration (paths already resolved; `mode`
/// already merged with the command line). Every file is read and checked now, so mistakes
/// stop the server at start with a message naming the file and line.
pub fn build(cfg: &AuthConfig, facts: &ServerFacts) -> Result<AuthSetup, AuthError> {
    let mode = cfg.mode.ok_or_else(|| {
        AuthError::Config(
            "no authentication configured: use --auth basic|token with --htpasswd FILE (or [auth] in the config file), or --auth none to serve without any"
                .to_string(),
        )
    })?;
    if mode == AuthMode::None {
        tracing::warn!(
            "authentication is OFF (--auth none): anyone who reaches this server may pull, push and delete anything"
        );
        return Ok(AuthSetup {
            authorizer: Arc::new(AllowAll),
            routes: None,
            summary: "auth none (everyone may do everything)".to_string(),
        });
    }
    for name in cfg.robots.keys() {
        if cfg.groups.contains_key(name) {
            // Not ambiguous for the policy, but confusing to read: keep names apart.
            tracing::warn!(robot = %name, "a robot and a group share a name");
        }
    }
    if mode == AuthMode::Basic && cfg.external.is_some() {
        return Err(AuthError::Config(
            "[auth.external] (tokens of another token server) needs mode = \"token\"".to_string(),
        ));
    }
    let token_cfg = &cfg.token;
    let expires_in = token_cfg.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
    if expires_in < 60 {
        return Err(AuthError::Config(format!(
            "auth.token.expires_in = {expires_in}: must be at least 60 seconds (clients expect it)"
        )));
    }
    let key = match mode {
        AuthMode::Token => {
            let path = token_cfg
                .key_file
                .clone()
                .unwrap_or_else(|| default_key_file(&facts.root));
            Some(jwt::SigningKey::load_or_create(&path)?)
        }
        _ => None,
    };
    let fingerprint_key = match &key {
        Some(k) => k.derived_secret(),
        None => {
            let mut b = [0u8; 32];
            rand::fill(&mut b[..]);
            b
        }
    };
    let robots: Vec<(String, PathBuf)> = cfg
        .robots
        .iter()
        .map(|(name, r)| (name.clone(), r.secret_file.clone()))
        .collect();
    let credentials = if cfg.htpasswd.is_some() || !robots.is_empty() {
        Some(Arc::new(credentials::Credentials::load(
            cfg.htpasswd.clone(),
            robots,
            fingerprint_key,
        )?))
    } else {
        None
    };
    let policy = if cfg.has_policy() {
        let mut groups = cfg.groups.clone();
        for (name, robot) in &cfg.robots {
            for g in &robot.groups {
                groups.entry(g.clone()).or_default().push(name.clone());
            }
        }
        policy::Policy::from_config(&cfg.allow, &cfg.admins, &groups)?
    } else {
        policy::Policy::every_user_everything()
    };
    let anonymous_rules = cfg
        .allow
        .iter()
        .any(|r| r.users.iter().any(|u| u == policy::ANONYMOUS));
    let users = credentials.as_ref().map_or(0, |c| c.user_count());
    if users == 0 && cfg.external.is_none() && !anonymous_rules {
        return Err(AuthError::Config(format!(
            "{} auth with no users: give --htpasswd FILE (create it with `wharf registry user add USER --htpasswd FILE`), robots, or anonymous rules",
            if mode == AuthMode::Basic {
                "basic"
            } else {
                "token"
            }
        )));
    }
    let policy = Arc::new(policy);
    let cache_ttl = Duration::from_secs(cfg.cache_seconds.unwrap_or(DEFAULT_CACHE_SECONDS));
    let passwords = credentials.map(|c| Arc::new(passwords::Passwords::new(c, cache_ttl)));
    let realm = cfg
        .realm
        .clone()
        .unwrap_or_else(|| DEFAULT_REALM.to_string());
    if realm.contains('"') {
        return Err(AuthError::Config(
            "auth.realm must not contain `\"`".to_string(),
        ));
    }
    let policy_text = if cfg.has_policy() {
        format!("{} allow rules", cfg.allow.len())
    } else {
        "every user may pull, push and delete; anonymous nothing".to_string()
    };

    let Some(key) = key else {
        let authorizer = service::AccessControl::new(
            service::Mode::Basic {
                realm: realm.clone(),
            },
            passwords,
            policy,
            None,
        );
        return Ok(AuthSetup {
            authorizer: Arc::new(authorizer),
            routes: None,
            summary: format!("auth basic (realm {realm:?}, {users} users; {policy_text})"),
        });
    };

    let service_name = token_cfg
        .service
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICE.to_string());
    let issuer_name = token_cfg
        .issuer
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICE.to_string());
    let mut own = jwt::TrustDomain::new(&issuer_name, &service_name);
    own.add_key(key.kid().to_string(), key.verifying_key());
    let mut domains = vec![own];
    let mut external_text = String::new();
    if let Some(ext) = &cfg.external {
        let audience = ext.service.clone().unwrap_or_else(|| service_name.clone());
        let mut d = jwt::TrustDomain::new(&ext.issuer, audience);
        let mut n = 0;
        if let Some(p) = &ext.rootcertbundle {
            n += d.add_cert_bundle(p)?;
        }
        if let Some(p) = &ext.jwks {
            n += d.add_jwks(p)?;
        }
        if n == 0 {
            return Err(AuthError::Config(
                "[auth.external] needs rootcertbundle or jwks (the keys its tokens are signed with)"
                    .to_string(),
            ));
        }
        external_text = format!("; also tokens of {:?} ({n} keys)", ext.issuer);
        domains.push(d);
    }
    if let Some(r) = &token_cfg.realm {
        if r.contains('"') || !(r.starts_with("http://") || r.starts_with("https://")) {
            return Err(AuthError::Config(format!(
                "auth.token.realm {r:?}: must be an http:// or https:// URL"
            )));
        }
    }
    let challenge = service::TokenChallenge {
        realm: token_cfg.realm.clone(),
        service: service_name.clone(),
        scheme: if facts.tls { "https" } else { "http" },
        default_host: facts.default_host.clone(),
        path: token_service::TOKEN_PATH,
    };
    let realm_text = challenge
        .realm
        .clone()
        .unwrap_or_else(|| format!("{}://<host>{}", challenge.scheme, challenge.path));
    let issuer = jwt::Issuer {
        key,
        issuer: issuer_name,
        service: service_name.clone(),
        expires_in,
        refresh_expires_in: token_cfg
            .refresh_expires_in
            .unwrap_or(DEFAULT_REFRESH_EXPIRES_IN),
    };
    let token_service = Arc::new(token_service::TokenService {
        issuer,
        passwords: passwords.clone(),
        policy: policy.clone(),
        basic_realm: realm,
    });
    let authorizer = service::AccessControl::new(
        service::Mode::Token(challenge),
        passwords,
        policy,
        Some(Arc::new(jwt::Verifier::new(domains))),
    );
    Ok(AuthSetup {
        authorizer: Arc::new(authorizer),
        routes: Some(token_service.router()),
        summary: format!(
            "auth token (realm {realm_text}, service {service_name:?}, {users} users; {policy_text}{external_text})"
        ),
    })
}
