//! [`AccessControl`]: the [`Authorizer`] for `basic` and `token` modes.
//!
//! - No `Authorization`: anonymous, allowed only what the policy gives `anonymous`; the `/v2/`
//!   ping always gets a challenge so clients learn how to log in.
//! - `Basic`: a password (cached by header hash), then the policy. Wrong password: 401; right
//!   password but not permitted: 403 `DENIED`. Accepted in token mode too, for simple clients.
//! - `Bearer` (token mode): a JWT of ours or of a trusted external issuer. The token's `access`
//!   claim is the grant; a valid token without the needed scope gets 401 with
//!   `error="insufficient_scope"`, and the challenge names the scope to ask for.
//!
//! Every refusal is logged with the user name and the scopes, never a credential.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::{VerifiedCache, key_of};
use super::jwt::{AccessClaims, Verifier, unix_now};
use super::passwords::{Checked, Passwords};
use super::policy::Policy;
use super::scope::format_access;
use super::seam::{Access, AuthErrorCode, AuthOutcome, Authorizer, Identity};

/// How long a verified bearer token is kept (never past its `exp`).
const BEARER_CACHE_SECONDS: u64 = 60;

/// Where the token service lives, for the `Bearer` challenge.
#[derive(Debug, Clone)]
pub struct TokenChallenge {
    /// A fixed realm URL; `None`: `<scheme>://<Host of the request>/token`.
    pub realm: Option<String>,
    pub service: String,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The `host[:port]` used when a request carries no usable `Host` header.
    pub default_host: String,
    /// The path of the built-in token service.
    pub path: &'static str,
}

impl TokenChallenge {
    fn realm(&self, headers: &http::HeaderMap) -> String {
        if let Some(r) = &self.realm {
            return r.clone();
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| is_host(h))
            .unwrap_or(&self.default_host);
        format!("{}://{host}{}", self.scheme, self.path)
    }
}

/// host[:port] or [v6]:port: nothing that could break out of the quoted realm.
fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

#[derive(Debug)]
pub enum Mode {
    Basic { realm: String },
    Token(TokenChallenge),
}

pub struct AccessControl {
    pub(super) mode: Mode,
    pub(super) passwords: Option<Arc<Passwords>>,
    pub(super) policy: Arc<Policy>,
    pub(super) verifier: Option<Arc<Verifier>>,
    pub(super) bearer_cache: VerifiedCache<Arc<AccessClaims>>,
}

impl std::fmt::Debug for AccessControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessControl")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

fn scopes_text(wanted: &[Access]) -> String {
    wanted
        .iter()
        .map(format_access)
        .collect::<Vec<_>>()
        .join(" ")
}

impl AccessControl {
    pub fn new(
        mode: Mode,
        passwords: Option<Arc<Passwords>>,
        policy: Arc<Policy>,
        verifier: Option<Arc<Verifier>>,
    ) -> AccessControl {
        AccessControl {
            mode,
            passwords,
            policy,
            verifier,
            bearer_cache: VerifiedCache::new(Duration::from_secs(BEARER_CACHE_SECONDS)),
        }
    }

    /// The `WWW-Authenticate` value of a 401.
    fn challenge(
        &self,
        headers: &http::HeaderMap,
        wanted: &[Access],
        error: Option<&str>,
    ) -> String {
        match &self.mode {
            Mode::Basic { realm } => format!("Basic realm=\"{realm}\""),
            Mode::Token(t) => {
                let mut v = format!(
                    "Bearer realm=\"{}\",service=\"{}\"",
                    t.realm(headers),
                    t.service
                );
                if !wanted.is_empty() {
                    v.push_str(&format!(",scope=\"{}\"", scopes_text(wanted)));
                }
                if let Some(e) = error {
                    v.push_str(&format!(",error=\"{e}\""));
                }
                v
            }
        }
    }

    /// A 401 with the challenge for `wanted`; `why` is for the client (see
    /// `AuthOutcome::Challenge`).
    fn unauthorized(
        &self,
        headers: &http::HeaderMap,
        wanted: &[Access],
        error: Option<&str>,
        why: String,
    ) -> AuthOutcome {
        AuthOutcome::Challenge {
            www_authenticate: self.challenge(headers, wanted, error),
            error: AuthErrorCode::Unauthorized,
            why,
        }
    }

    /// Why a request without credentials is refused, and what to send.
    fn no_credentials(&self, wanted: &[Access]) -> String {
        let fix = match self.mode {
            Mode::Basic { .. } => "log in with a user of this registry",
            Mode::Token(_) => "send a token from the realm in WWW-Authenticate",
        };
        if wanted.is_empty() {
            format!("no credentials were sent: {fix}")
        } else {
            format!(
                "no credentials were sent: {fix} (the request needs {})",
                scopes_text(wanted)
            )
        }
    }

    fn by_policy(&self, user: &str, wanted: &[Access]) -> AuthOutcome {
        if self.policy.permits(Some(user), wanted) {
            return AuthOutcome::Allowed(Identity {
                subject: Some(user.to_string()),
            });
        }
        let scopes = scopes_text(wanted);
        tracing::warn!(user, scopes = %scopes, "access denied by policy");
        AuthOutcome::Challenge {
            www_authenticate: String::new(),
            error: AuthErrorCode::Denied,
            why: format!("user {user} is not allowed {scopes} by this registry's access policy"),
        }
    }

    async fn decide(&self, headers: &http::HeaderMap, wanted: &[Access]) -> AuthOutcome {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            if !wanted.is_empty() && self.policy.permits(None, wanted) {
                return AuthOutcome::Allowed(Identity::default());
            }
            tracing::info!(user = "anonymous", scopes = %scopes_text(wanted), "authentication required");
            return self.unauthorized(headers, wanted, None, self.no_credentials(wanted));
        };
        let Ok(value) = value.to_str() else {
            tracing::warn!("refused a request with an unreadable Authorization header");
            let why = "the Authorization header is not readable text".to_string();
            return self.unauthorized(headers, wanted, None, why);
        };
        let scheme = value.split_whitespace().next().unwrap_or_default();
        if scheme.eq_ignore_ascii_case("basic") {
            let Some(passwords) = &self.passwords else {
                tracing::warn!("refused Basic credentials: this registry has no password users");
                let why = "Basic credentials are not accepted: this registry has no password users"
                    .to_string();
                return self.unauthorized(headers, wanted, None, why);
            };
            return match passwords.check_header(value).await {
                Checked::Valid(user) => self.by_policy(&user, wanted),
                Checked::Invalid { user } => {
                    tracing::warn!(user, scopes = %scopes_text(wanted), "wrong user name or password");
                    let why = "wrong user name or password".to_string();
                    self.unauthorized(headers, wanted, None, why)
                }
                Checked::Malformed => {
                    tracing::warn!("refused a malformed Basic Authorization header");
                    let why =
                        "malformed Basic credentials: base64 of user:password expected".to_string();
                    self.unauthorized(headers, wanted, None, why)
                }
            };
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(verifier) = &self.verifier {
                return self.bearer(headers, verifier, value, wanted);
            }
        }
        // Only a word-like scheme is logged: a header without a scheme may be a bare secret.
        let scheme = if !scheme.is_empty()
            && scheme.len() <= 16
            && scheme.bytes().all(|b| b.is_ascii_alphabetic())
        {
            scheme
        } else {
            "(unrecognised)"
        };
        tracing::warn!(scheme, "refused an unsupported Authorization scheme");
        let why = format!("the Authorization scheme {scheme} is not accepted here");
        self.unauthorized(headers, wanted, None, why)
    }

    fn bearer(
        &self,
        headers: &http::HeaderMap,
        verifier: &Verifier,
        value: &str,
        wanted: &[Access],
    ) -> AuthOutcome {
        let key = key_of(value.trim().as_bytes());
        let claims = match self.bearer_cache.get(&key, 0) {
            Some(c) => c,
            None => {
                let token = value.trim()["bearer".len()..].trim();
                match verifier.verify(token) {
                    Ok(c) => {
                        let c = Arc::new(c);
                        let left = c.exp.saturating_sub(unix_now());
                        self.bearer_cache.insert(
                            key,
                            c.clone(),
                            Instant::now() + Duration::from_secs(left),
                            0,
                        );
                        c
                    }
                    Err(e) => {
                        tracing::warn!(reason = %e, scopes = %scopes_text(wanted), "refused a bearer token");
                        let why = format!(
                            "the bearer token was refused ({e}): ask the token service for a new one"
                        );
                        return self.unauthorized(headers, wanted, Some("invalid_token"), why);
                    }
                }
            }
        };
        if claims.covers(wanted) {
            return AuthOutcome::Allowed(Identity {
                subject: claims.subject().map(str::to_string),
            });
        }
        let scopes = scopes_text(wanted);
        tracing::warn!(
            user = claims.subject().unwrap_or("anonymous"),
            scopes = %scopes,
            "bearer token lacks the scope"
        );
        let why = format!(
            "the bearer token does not grant {scopes}: ask the token service for a token with this scope (the scope in WWW-Authenticate)"
        );
        self.unauthorized(headers, wanted, Some("insufficient_scope"), why)
    }
}

impl Authorizer for AccessControl {
    fn authorize<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        wanted: &'a [Access],
    ) -> Pin<Box<dyn Future<Output = AuthOutcome> + Send + 'a>> {
        Box::pin(self.decide(headers, wanted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers_that_could_break_the_challenge_are_ignored() {
        let t = TokenChallenge {
            realm: None,
            service: "svc".into(),
            scheme: "http",
            default_host: "127.0.0.1:5000".into(),
            path: "/token",
        };
        let mut h = http::HeaderMap::new();
        assert_eq!(t.realm(&h), "http://127.0.0.1:5000/token");
        h.insert(http::header::HOST, "reg.example:5443".parse().unwrap());
        assert_eq!(t.realm(&h), "http://reg.example:5443/token");
        h.insert(http::header::HOST, "evil\",x=\"y".parse().unwrap());
        assert_eq!(t.realm(&h), "http://127.0.0.1:5000/token");
    }
}
