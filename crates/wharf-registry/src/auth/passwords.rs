//! Password checks as the HTTP layer needs them: parse `Authorization: Basic`, look the header's
//! hash up in the cache, and otherwise run bcrypt on a blocking thread (once per header, however
//! many requests carry it at the same time).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::cache::{VerifiedCache, key_of};
use super::credentials::Credentials;
use super::jwt::unix_now;

/// How often, at most, the credential files are checked for changes on cache hits.
const RELOAD_CHECK_EVERY_SECONDS: u64 = 1;

/// The outcome of a password check. `user` is the name the client claimed (safe to log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Valid(String),
    Invalid {
        user: String,
    },
    /// Not `Basic base64(user:password)`.
    Malformed,
}

pub struct Passwords {
    credentials: Arc<Credentials>,
    cache: VerifiedCache<String>,
    last_reload_check: AtomicU64,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("credentials", &self.credentials)
            .field("cached", &self.cache.len())
            .finish()
    }
}

/// `(user, password)` of a `Basic` header value, `None` when it is not one.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASE64.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The `Authorization` value a client would send for these credentials.
pub fn basic_header(user: &str, password: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
}

impl Passwords {
    pub fn new(credentials: Arc<Credentials>, ttl: Duration) -> Passwords {
        Passwords {
            credentials,
            cache: VerifiedCache::new(ttl),
            last_reload_check: AtomicU64::new(0),
        }
    }

    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Check an `Authorization: Basic ...` header value.
    pub async fn check_header(&self, value: &str) -> Checked {
        let Some((user, password)) = parse_basic(value) else {
            return Checked::Malformed;
        };
        // Notice edits of htpasswd or robot secrets even while every request hits the cache.
        let now = unix_now();
        let last = self.last_reload_check.load(Ordering::Relaxed);
        if now >= last + RELOAD_CHECK_EVERY_SECONDS
            && self
                .last_reload_check
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let creds = self.credentials.clone();
            let _ = tokio::task::spawn_blocking(move || creds.reload_if_changed()).await;
        }
        let key = key_of(value.trim().as_bytes());
        let generation = self.credentials.generation();
        let ttl = self.cache.ttl();
        let creds = self.credentials.clone();
        let claimed = user.clone();
        let verified = self
            .cache
            .get_or_verify(key, generation, move || async move {
                let name = user.clone();
                let ok = tokio::task::spawn_blocking(move || creds.verify(&user, &password))
                    .await
                    .unwrap_or(false);
                ok.then(|| (name, Instant::now() + ttl))
            })
            .await;
        match verified {
            Some(u) => Checked::Valid(u),
            None => Checked::Invalid { user: claimed },
        }
    }

    /// Check a user name and password (the token service's `grant_type=password`), through the
    /// same cache as the header they are equivalent to.
    pub async fn check(&self, user: &str, password: &str) -> Checked {
        if user.contains(':') {
            return Checked::Invalid {
                user: user.to_string(),
            };
        }
        self.check_header(&basic_header(user, password)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passwords() -> (tempfile::TempDir, Passwords) {
        let dir = tempfile::tempdir().unwrap();
        let ht = dir.path().join("htpasswd");
        std::fs::write(
            &ht,
            format!(
                "alice:{}\n",
                super::super::htpasswd::hash_password("pw", 4).unwrap()
            ),
        )
        .unwrap();
        let creds = Credentials::load(Some(ht), vec![], [0; 32]).unwrap();
        (
            dir,
            Passwords::new(Arc::new(creds), Duration::from_secs(60)),
        )
    }

    #[test]
    fn basic_headers_parse() {
        assert_eq!(
            parse_basic(&basic_header("a", "p:q")),
            Some(("a".into(), "p:q".into()))
        );
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(parse_basic("basic YTpi"), Some(("a".into(), "b".into())));
    }

    #[tokio::test]
    async fn only_valid_credentials_are_cached() {
        let (_d, p) = passwords();
        assert_eq!(
            p.check_header(&basic_header("alice", "bad")).await,
            Checked::Invalid {
                user: "alice".into()
            }
        );
        assert_eq!(p.cached(), 0);
        assert_eq!(
            p.check_header(&basic_header("alice", "pw")).await,
            Checked::Valid("alice".into())
        );
        assert_eq!(p.cached(), 1);
        // The form of the token service's password grant shares the entry.
        assert_eq!(p.check("alice", "pw").await, Checked::Valid("alice".into()));
        assert_eq!(p.cached(), 1);
        assert_eq!(p.check_header("Bearer x").await, Checked::Malformed);
    }
}
