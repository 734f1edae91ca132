//! The built-in Docker token service (the realm of the `Bearer` challenge, on the same server).
//!
//! - `GET <realm>?service=..&scope=..[&scope=..][&offline_token=true]` with HTTP Basic (or none:
//!   anonymous): `{token, access_token, expires_in, issued_at, scope[, refresh_token]}`.
//! - `POST <realm>` (form) `grant_type=password` (+`username`, `password`, `access_type=offline`
//!   for a refresh token) or `grant_type=refresh_token` (+`refresh_token`).
//!
//! The grant is what was asked intersected with what the policy permits: a partial or empty
//! grant is a normal answer, not an error. Bad credentials are 401.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use subtle::ConstantTimeEq as _;

use super::credentials::Credentials;
use super::jwt::{Issuer, unix_now};
use super::passwords::{Checked, Passwords};
use super::policy::Policy;
use super::scope::{format_access, parse_scopes};
use super::seam::Access;

/// The path of the token service.
pub const TOKEN_PATH: &str = "/token";

/// `scope` parameters accepted in one token request (clients send one per repository of an
/// operation: a handful).
pub const MAX_SCOPES: usize = 64;

pub struct TokenService {
    pub(super) issuer: Issuer,
    pub(super) passwords: Option<Arc<Passwords>>,
    pub(super) policy: Arc<Policy>,
    pub(super) basic_realm: String,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// A token-service answer.
struct Answer {
    status: StatusCode,
    body: serde_json::Value,
    challenge: Option<String>,
}

impl Answer {
    fn error(status: StatusCode, code: &str, message: &str) -> Answer {
        Answer {
            status,
            body: json!({
                "error": code,
                "error_description": message,
                "errors": [{"code": code.to_ascii_uppercase(), "message": message}],
            }),
            challenge: None,
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body.to_string(),
        )
            .into_response();
        if let Some(c) = self.challenge.and_then(|c| c.parse().ok()) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        // Tokens must not end up in shared caches.
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        r
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// RFC 3339 UTC for a unix time (days-to-civil conversion of the proleptic Gregorian calendar).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl TokenService {
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route(TOKEN_PATH, axum::routing::get(get_token).post(post_token))
            .with_state(self)
    }

    fn credentials(&self) -> Option<&Arc<Credentials>> {
        self.passwords.as_ref().map(|p| p.credentials())
    }

    fn wrong_service(&self, params: &[(String, String)]) -> Option<Answer> {
        let service = param(params, "service")?;
        (service != self.issuer.service).then(|| {
            tracing::warn!(service, "token request for another service refused");
            Answer::error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!(
                    "unknown service: this token service issues tokens for service {:?} (the service in the registry's WWW-Authenticate)",
                    self.issuer.service
                ),
            )
        })
    }

    fn bad_credentials(&self, user: &str, how: &str) -> Answer {
        tracing::warn!(
            user,
            how,
            "token request with wrong user name or password refused"
        );
        let mut a = Answer::error(
            StatusCode::UNAUTHORIZED,
            if how == "basic" {
                "unauthorized"
            } else {
                "invalid_grant"
            },
            "invalid user name or password",
        );
        a.challenge = Some(format!("Basic realm=\"{}\"", self.basic_realm));
        a
    }

    async fn user_of_basic(&self, headers: &HeaderMap) -> Result<Option<String>, Answer> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let value = value.to_str().unwrap_or_default();
        let Some(passwords) = &self.passwords else {
            return Err(self.bad_credentials("", "basic"));
        };
        match passwords.check_header(value).await {
            Checked::Valid(u) => Ok(Some(u)),
            Checked::Invalid { user } => Err(self.bad_credentials(&user, "basic")),
            Checked::Malformed => Err(self.bad_credentials("", "basic")),
        }
    }

    /// Grant what was asked and is permitted, and sign it.
    fn issue(&self, user: Option<&str>, params: &[(String, String)], offline: bool) -> Answer {
        let scope_values = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str());
        if scope_values.clone().count() > MAX_SCOPES {
            // Each scope is checked against the policy and signed into the token: bound both.
            return Answer::error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("at most {MAX_SCOPES} scope parameters per token request"),
            );
        }
        let (scopes, bad) = parse_scopes(scope_values);
        for e in &bad {
            tracing::info!(user = user.unwrap_or("anonymous"), error = %e, "ignored a scope");
        }
        let mut granted: Vec<Access> = Vec::new();
        let mut refused: Vec<String> = Vec::new();
        for scope in &scopes {
            let Some(wanted) = scope.to_access() else {
                refused.push(format!(
                    "{}:{}:{}",
                    scope.kind,
                    scope.name,
                    scope.actions.join(",")
                ));
                continue;
            };
            match self.policy.grant(user, &wanted) {
                Some(g) => {
                    if g.actions.len() < wanted.actions.len() {
                        refused.push(format_access(&wanted));
                    }
                    match granted
                        .iter_mut()
                        .find(|a| a.kind == g.kind && a.name == g.name)
                    {
                        Some(existing) => {
                            for a in g.actions {
                                if !existing.actions.contains(&a) {
                                    existing.actions.push(a);
                                }
                            }
                        }
                        None => granted.push(g),
                    }
                }
                None => refused.push(format_access(&wanted)),
            }
        }
        if !refused.is_empty() {
            tracing::warn!(
                user = user.unwrap_or("anonymous"),
                refused = %refused.join(" "),
                "token request: not everything asked was granted"
            );
        }
        let now = unix_now();
        let token = match self.issuer.access_token(user, &granted, now) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a token");
                return Answer::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "cannot sign the token",
                );
            }
        };
        let scope: Vec<String> = granted.iter().map(format_access).collect();
        let mut body = json!({
            "token": token,
            "access_token": token,
            "expires_in": self.issuer.expires_in,
            "issued_at": rfc3339(now),
            "scope": scope.join(" "),
        });
        if let (true, Some(u)) = (offline, user) {
            let refresh = self
                .credentials()
                .and_then(|c| c.fingerprint(u))
                .and_then(|fp| self.issuer.refresh_token(u, &fp, now).ok());
            if let (Some(r), Some(obj)) = (refresh, body.as_object_mut()) {
                obj.insert("refresh_token".to_string(), json!(r));
            }
        }
        tracing::debug!(user = user.unwrap_or("anonymous"), scope = %scope.join(" "), "issued a token");
        Answer {
            status: StatusCode::OK,
            body,
            challenge: None,
        }
    }

    async fn get(&self, headers: &HeaderMap, uri: &Uri) -> Answer {
        let params: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        if let Some(a) = self.wrong_service(&params) {
            return a;
        }
        let user = match self.user_of_basic(headers).await {
            Ok(u) => u,
            Err(a) => return a,
        };
        let offline = param(&params, "offline_token") == Some("true");
        self.issue(user.as_deref(), &params, offline)
    }

    async fn post(&self, body: &[u8]) -> Answer {
        let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        if let Some(a) = self.wrong_service(&params) {
            return a;
        }
        match param(&params, "grant_type") {
            Some("password") => {
                let (Some(user), Some(password)) =
                    (param(&params, "username"), param(&params, "password"))
                else {
                    return Answer::error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "username and password are required",
                    );
                };
                let Some(passwords) = &self.passwords else {
                    return self.bad_credentials(user, "password");
                };
                match passwords.check(user, password).await {
                    Checked::Valid(u) => {
                        let offline = param(&params, "access_type") == Some("offline");
                        self.issue(Some(&u), &params, offline)
                    }
                    _ => self.bad_credentials(user, "password"),
                }
            }
            Some("refresh_token") => {
                let Some(token) = param(&params, "refresh_token") else {
                    return Answer::error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "refresh_token is required",
                    );
                };
                let (user, fingerprint) = match self.issuer.check_refresh_token(token) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(reason = %e, "refused a refresh token");
                        return Answer::error(
                            StatusCode::UNAUTHORIZED,
                            "invalid_grant",
                            "invalid refresh token",
                        );
                    }
                };
                let current = self.credentials().and_then(|c| c.fingerprint(&user));
                let still_valid =
                    current.is_some_and(|c| bool::from(c.as_bytes().ct_eq(fingerprint.as_bytes())));
                if !still_valid {
                    tracing::warn!(
                        user,
                        "refused a refresh token issued before a password change (or for a removed user)"
                    );
                    return Answer::error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_grant",
                        "the refresh token is no longer valid: log in again",
                    );
                }
                self.issue(Some(&user), &params, false)
            }
            other => {
                tracing::warn!(grant_type = other.unwrap_or(""), "unsupported grant type");
                Answer::error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "use grant_type=password or grant_type=refresh_token",
                )
            }
        }
    }
}

async fn get_token(State(svc): State<Arc<TokenService>>, headers: HeaderMap, uri: Uri) -> Response {
    svc.get(&headers, &uri).await.into_response()
}

async fn post_token(State(svc): State<Arc<TokenService>>, body: Bytes) -> Response {
    svc.post(&body).await.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
