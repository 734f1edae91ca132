//! Password checks as the HTTP layer needs them: parse `Authorization: Basic`, look the
//! credential's hash up in the cache, and otherwise run bcrypt on a blocking thread (once per
//! credential, however many requests carry it at the same time).
//!
//! A refused credential is remembered too, for [`WRONG_PASSWORD_MEMORY_SECONDS`] and only as its
//! hash: clients resend a wrong password several times per command (containerd up to five times
//! per request), and each resend would otherwise cost a bcrypt check. A change of the credential
//! files forgets it, like the verified ones.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::cache::{Key, VerifiedCache, key_of};
use super::credentials::Credentials;
use super::jwt::unix_now;

/// How often, at most, the credential files are checked for changes on cache hits.
const RELOAD_CHECK_EVERY_SECONDS: u64 = 1;
/// How long a refused credential is answered from memory instead of by bcrypt.
pub const WRONG_PASSWORD_MEMORY_SECONDS: u64 = 60;

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
    /// Credentials bcrypt refused (their hashes), with nothing else.
    refused: VerifiedCache<()>,
    last_reload_check: AtomicU64,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("credentials", &self.credentials)
            .field("cached", &self.cache.len())
            .field("refused", &self.refused.len())
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

/// The fingerprint a credential is cached and throttled under: the SHA-256 of its canonical
/// Basic header, the same whichever way (header spelling, token form) it was sent.
pub fn credential_key(user: &str, password: &str) -> Key {
    key_of(basic_header(user, password).as_bytes())
}

impl Passwords {
    pub fn new(credentials: Arc<Credentials>, ttl: Duration) -> Passwords {
        Passwords {
            credentials,
            cache: VerifiedCache::new(ttl),
            refused: VerifiedCache::new(Duration::from_secs(WRONG_PASSWORD_MEMORY_SECONDS)),
            last_reload_check: AtomicU64::new(0),
        }
    }

    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.credentials
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// How many refused credentials are remembered.
    pub fn refused(&self) -> usize {
        self.refused.len()
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
        let key = credential_key(&user, &password);
        let generation = self.credentials.generation();
        if self.refused.get(&key, generation).is_some() {
            return Checked::Invalid { user };
        }
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
            None => {
                let until = Instant::now() + Duration::from_secs(WRONG_PASSWORD_MEMORY_SECONDS);
                self.refused.insert(key, (), until, generation);
                Checked::Invalid { user: claimed }
            }
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
    async fn valid_and_refused_credentials_are_remembered_apart() {
        let (_d, p) = passwords();
        assert_eq!(
            p.check_header(&basic_header("alice", "bad")).await,
            Checked::Invalid {
                user: "alice".into()
            }
        );
        assert_eq!((p.cached(), p.refused()), (0, 1));
        // Sent again, as a header spelled another way or as a token form: the same memory.
        assert_eq!(
            p.check_header("basic  YWxpY2U6YmFk ").await,
            Checked::Invalid {
                user: "alice".into()
            }
        );
        assert_eq!(
            p.check("alice", "bad").await,
            Checked::Invalid {
                user: "alice".into()
            }
        );
        assert_eq!((p.cached(), p.refused()), (0, 1));
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

    #[tokio::test]
    async fn a_refused_password_is_forgotten_when_the_credential_files_change() {
        let (d, p) = passwords();
        let new = basic_header("alice", "new-pw");
        for _ in 0..2 {
            assert_eq!(
                p.check_header(&new).await,
                Checked::Invalid {
                    user: "alice".into()
                }
            );
        }
        assert_eq!(p.refused(), 1, "refused once, then answered from memory");
        // The admin sets alice's password to it (a new file renamed over the old one).
        let next = d.path().join("htpasswd.new");
        std::fs::write(
            &next,
            format!(
                "alice:{}\n",
                super::super::htpasswd::hash_password("new-pw", 4).unwrap()
            ),
        )
        .unwrap();
        std::fs::rename(&next, d.path().join("htpasswd")).unwrap();
        p.credentials().reload_if_changed();
        assert_eq!(
            p.check_header(&new).await,
            Checked::Valid("alice".into()),
            "the memory of refusals went with the old file"
        );
    }
}
