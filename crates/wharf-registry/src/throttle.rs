//! Failed-login throttling, per client address and per (address, user).
//!
//! - Every wrong password (HTTP Basic on any route, the token service's password grant) spends
//!   one unit of its address's budget (`login_failures_per_address`, refilling one unit every
//!   [`REFILL_EVERY`]). An address out of budget gets 429 `TOOMANYREQUESTS` for every password
//!   attempt, without a bcrypt check, so a flood of wrong passwords neither burns the CPU nor
//!   slows other logins down (a parallel flood gets one wave through, then nothing). Right
//!   passwords spend nothing, however many requests carry them at once.
//! - After `login_failures_before_backoff` failures in a row for one user from one address,
//!   that pair waits 1 s, doubling to [`MAX_BACKOFF`], before its next attempt is checked.
//!
//! - A wrong password sent again is not another guess: clients resend the one they were given
//!   (containerd tries each request up to five times, several in parallel, so one push with a
//!   typo made five failures, and the user saw `429 Too Many Requests` instead of `401`). The
//!   last [`RECENT_WRONG`] wrong credentials of each (address, user) pair are remembered for
//!   [`REPEAT_WINDOW`], as SHA-256 fingerprints only ([`credential_key`]): sent again, one spends
//!   nothing, is never kept waiting, and is answered `401` from the password cache's memory of
//!   refused credentials, without another bcrypt check. As Microsoft Entra's smart lockout does
//!   with its last three bad password hashes.
//!
//! Nothing is counted per user alone: an attacker flooding wrong passwords for `alice` from
//! one address never delays `alice` logging in from another. IPv6 addresses count per /64.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, header};
use http_body_util::BodyExt as _;

use crate::auth::cache::Key;
use crate::auth::passwords::{WRONG_PASSWORD_MEMORY_SECONDS, credential_key, parse_basic};
use crate::auth::token_service::TOKEN_PATH;
use crate::client_addr::ClientAddr;
use crate::error::RegistryError;

/// One unit of an address's budget comes back this often.
pub const REFILL_EVERY: Duration = Duration::from_secs(2);
/// The longest wait of one (address, user) pair.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Token-service form bodies larger than this are refused (a password grant is a few hundred
/// bytes).
pub const TOKEN_FORM_MAX_BYTES: usize = 64 * 1024;
/// Entries kept at most in each map; idle ones are pruned first.
const MAX_ENTRIES: usize = 100_000;
/// How many of a pair's last wrong credentials are remembered.
pub const RECENT_WRONG: usize = 3;
/// How long a wrong credential sent again is recognised as a repeat. Half the password cache's
/// memory of refused credentials, so a repeat let through is answered from that memory, not by
/// bcrypt.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(WRONG_PASSWORD_MEMORY_SECONDS / 2);

#[derive(Debug, Clone, Copy)]
struct Budget {
    tokens: f64,
    updated: Instant,
}

#[derive(Clone)]
struct Backoff {
    failures: u32,
    until: Instant,
    /// The pair's last wrong credentials (fingerprints) and when each was first refused.
    recent_wrong: Vec<(Key, Instant)>,
}

/// Without the fingerprints: hashes of near-miss passwords have no place in any output.
impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff")
            .field("failures", &self.failures)
            .field("until", &self.until)
            .field("recent_wrong", &self.recent_wrong.len())
            .finish()
    }
}

impl Backoff {
    fn is_recent_wrong(&self, key: &Key, now: Instant) -> bool {
        self.recent_wrong
            .iter()
            .any(|(k, at)| k == key && now.duration_since(*at) < REPEAT_WINDOW)
    }
}

#[derive(Debug, Default)]
struct Ledger {
    addresses: HashMap<IpAddr, Budget>,
    pairs: HashMap<(IpAddr, String), Backoff>,
}

/// The verdict before checking a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Come back after this long.
    Wait(Duration),
}

#[derive(Debug)]
pub struct LoginThrottle {
    budget: u32,
    before_backoff: u32,
    ledger: Mutex<Ledger>,
}

/// The key an address is counted under: itself, or its /64 for IPv6.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl LoginThrottle {
    pub fn new(budget: u32, before_backoff: u32) -> LoginThrottle {
        LoginThrottle {
            budget: budget.max(1),
            before_backoff,
            ledger: Mutex::new(Ledger::default()),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn refilled(&self, b: Budget, now: Instant) -> Budget {
        let gained = now.duration_since(b.updated).as_secs_f64() / REFILL_EVERY.as_secs_f64();
        Budget {
            tokens: (b.tokens + gained).min(f64::from(self.budget)),
            updated: now,
        }
    }

    /// Before a password check of `key` (the credential's [`credential_key`]): whether it may go
    /// ahead, or how long to wait. A wrong credential sent again always goes ahead.
    pub fn attempt(&self, ip: IpAddr, user: &str, key: &Key, now: Instant) -> Verdict {
        let ip = address_key(ip);
        let ledger = self.ledger();
        if let Some(b) = ledger.pairs.get(&(ip, user.to_string())) {
            if b.is_recent_wrong(key, now) {
                return Verdict::Go;
            }
            if b.until > now {
                return Verdict::Wait(b.until - now);
            }
        }
        let Some(budget) = ledger.addresses.get(&ip).map(|b| self.refilled(*b, now)) else {
            return Verdict::Go;
        };
        if budget.tokens < 1.0 {
            let wait = REFILL_EVERY.mul_f64(1.0 - budget.tokens);
            return Verdict::Wait(wait.max(Duration::from_secs(1)));
        }
        Verdict::Go
    }

    /// After a successful login: the pair's failures are forgotten.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        let ip = address_key(ip);
        self.ledger().pairs.remove(&(ip, user.to_string()));
    }

    /// After a wrong password (`key`: the credential's [`credential_key`]). The same wrong
    /// credential again within [`REPEAT_WINDOW`] counts nothing.
    pub fn failed(&self, ip: IpAddr, user: &str, key: &Key, now: Instant) {
        let ip = address_key(ip);
        let mut ledger = self.ledger();
        if ledger
            .pairs
            .get(&(ip, user.to_string()))
            .is_some_and(|b| b.is_recent_wrong(key, now))
        {
            return;
        }
        if ledger.addresses.len() >= MAX_ENTRIES {
            let full = f64::from(self.budget);
            ledger
                .addresses
                .retain(|_, b| self.refilled(*b, now).tokens < full);
        }
        let full = Budget {
            tokens: f64::from(self.budget),
            updated: now,
        };
        let budget = ledger
            .addresses
            .get(&ip)
            .map_or(full, |b| self.refilled(*b, now));
        let left = (budget.tokens - 1.0).max(0.0);
        if budget.tokens >= 1.0 && left < 1.0 {
            // Once per exhaustion, not per refused attempt: a flood must not flood the log.
            tracing::warn!(
                address = %ip,
                "failed logins: this address is out of attempts; its password attempts get 429 until the budget refills ([limits] login_failures_per_address)"
            );
        }
        ledger.addresses.insert(
            ip,
            Budget {
                tokens: left,
                updated: now,
            },
        );
        if ledger.pairs.len() >= MAX_ENTRIES {
            ledger.pairs.retain(|_, b| b.until > now);
        }
        let entry = ledger
            .pairs
            .entry((ip, user.to_string()))
            .or_insert(Backoff {
                failures: 0,
                until: now,
                recent_wrong: Vec::with_capacity(RECENT_WRONG),
            });
        if entry.recent_wrong.len() >= RECENT_WRONG {
            entry.recent_wrong.remove(0);
        }
        entry.recent_wrong.push((*key, now));
        entry.failures = entry.failures.saturating_add(1);
        if entry.failures >= self.before_backoff {
            let doublings = (entry.failures - self.before_backoff).min(6);
            let wait = (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_BACKOFF);
            entry.until = now + wait;
            tracing::warn!(
                address = %ip,
                user,
                failures = entry.failures,
                wait_seconds = wait.as_secs(),
                "failed logins: this user's attempts from this address wait"
            );
        }
    }
}

fn too_many(wait: Duration, what: &str) -> Response {
    let seconds = wait.as_secs().max(1);
    RegistryError::TooManyRequests {
        message: format!("{what}: try again in {seconds} s"),
        retry_after: Some(seconds),
    }
    .into_response()
}

/// The user a request tries to log in as and its credential's fingerprint: its Basic header's,
/// or the token service's password grant's (the form body is read, bounded, and put back).
async fn login_user(req: Request) -> Result<(Request, Option<(String, Key)>), Response> {
    if let Some((user, password)) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic)
    {
        let key = credential_key(&user, &password);
        return Ok((req, Some((user, key))));
    }
    if req.method() != Method::POST || req.uri().path() != TOKEN_PATH {
        return Ok((req, None));
    }
    let (parts, body) = req.into_parts();
    let bytes = http_body_util::Limited::new(body, TOKEN_FORM_MAX_BYTES)
        .collect()
        .await
        .map_err(|_| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("token requests are limited to {TOKEN_FORM_MAX_BYTES} bytes"),
            )
                .into_response()
        })?
        .to_bytes();
    let mut grant = None;
    let mut user = None;
    let mut password = None;
    for (k, v) in form_urlencoded::parse(&bytes) {
        match &*k {
            "grant_type" => grant = Some(v.into_owned()),
            "username" => user = Some(v.into_owned()),
            "password" => password = Some(v.into_owned()),
            _ => {}
        }
    }
    let login = user
        .filter(|_| grant.as_deref() == Some("password"))
        .map(|user| {
            let key = credential_key(&user, password.as_deref().unwrap_or_default());
            (user, key)
        });
    Ok((Request::from_parts(parts, Body::from(bytes)), login))
}

/// The axum middleware: throttles requests that carry a password.
pub async fn throttle_logins(
    State(throttle): State<Arc<LoginThrottle>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(ip) = req.extensions().get::<ClientAddr>().map(|c| c.0) else {
        return next.run(req).await;
    };
    let (req, user) = match login_user(req).await {
        Ok(v) => v,
        Err(response) => return response,
    };
    let Some((user, key)) = user else {
        return next.run(req).await;
    };
    if let Verdict::Wait(wait) = throttle.attempt(ip, &user, &key, Instant::now()) {
        return too_many(wait, "too many failed logins from this address");
    }
    let response = next.run(req).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        throttle.failed(ip, &user, &key, Instant::now());
    } else {
        throttle.succeeded(ip, &user);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACKER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 66));
    const ALICE_HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    fn key(n: u32) -> Key {
        credential_key("someone", &format!("guess-{n}"))
    }

    #[test]
    fn an_address_out_of_budget_waits_and_refills_over_time() {
        let t = LoginThrottle::new(3, 100);
        let now = Instant::now();
        for n in 0..3 {
            assert_eq!(t.attempt(ATTACKER, "x", &key(n), now), Verdict::Go);
            t.failed(ATTACKER, "x", &key(n), now);
        }
        assert!(matches!(
            t.attempt(ATTACKER, "y", &key(99), now),
            Verdict::Wait(_)
        ));
        assert_eq!(
            t.attempt(ATTACKER, "y", &key(99), now + REFILL_EVERY),
            Verdict::Go
        );
        assert_eq!(t.attempt(ALICE_HOST, "y", &key(99), now), Verdict::Go);
    }

    #[test]
    fn right_passwords_spend_nothing() {
        let t = LoginThrottle::new(2, 100);
        let now = Instant::now();
        for _ in 0..50 {
            assert_eq!(t.attempt(ALICE_HOST, "alice", &key(99), now), Verdict::Go);
        }
        for _ in 0..50 {
            t.succeeded(ALICE_HOST, "alice");
        }
        assert_eq!(t.attempt(ALICE_HOST, "alice", &key(99), now), Verdict::Go);
    }

    #[test]
    fn a_flood_for_alice_from_one_address_does_not_delay_alice_elsewhere() {
        let t = LoginThrottle::new(1000, 3);
        let now = Instant::now();
        for n in 0..3 {
            assert_eq!(t.attempt(ATTACKER, "alice", &key(n), now), Verdict::Go);
            t.failed(ATTACKER, "alice", &key(n), now);
        }
        assert_eq!(
            t.attempt(ATTACKER, "alice", &key(99), now),
            Verdict::Wait(Duration::from_secs(1))
        );
        assert_eq!(t.attempt(ALICE_HOST, "alice", &key(99), now), Verdict::Go);
        t.failed(ATTACKER, "alice", &key(3), now + Duration::from_secs(1));
        assert_eq!(
            t.attempt(ATTACKER, "alice", &key(99), now + Duration::from_secs(1)),
            Verdict::Wait(Duration::from_secs(2)),
            "the pair's wait doubles"
        );
    }

    #[test]
    fn ipv6_counts_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap_or(ATTACKER);
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap_or(ATTACKER);
        assert_eq!(address_key(a), address_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.66".parse().unwrap_or(ALICE_HOST);
        assert_eq!(address_key(mapped), ATTACKER);
    }

    #[test]
    fn a_wrong_password_sent_again_counts_once_and_is_never_kept_waiting() {
        let t = LoginThrottle::new(3, 2);
        let now = Instant::now();
        // containerd with a typo: the same wrong credential, five tries per request.
        for _ in 0..20 {
            assert_eq!(t.attempt(ALICE_HOST, "alice", &key(1), now), Verdict::Go);
            t.failed(ALICE_HOST, "alice", &key(1), now);
        }
        // One failure spent: another guess still goes ahead, and is the second failure.
        assert_eq!(t.attempt(ALICE_HOST, "alice", &key(2), now), Verdict::Go);
        t.failed(ALICE_HOST, "alice", &key(2), now);
        assert!(
            matches!(
                t.attempt(ALICE_HOST, "alice", &key(3), now),
                Verdict::Wait(_)
            ),
            "a third new guess waits"
        );
        assert_eq!(
            t.attempt(ALICE_HOST, "alice", &key(1), now),
            Verdict::Go,
            "while a known wrong one is answered (401, from memory)"
        );
        // After the repeat window a resend is a new attempt again: counted.
        let later = now + REPEAT_WINDOW;
        t.failed(ALICE_HOST, "alice", &key(1), later);
        assert_eq!(
            t.attempt(ALICE_HOST, "alice", &key(4), later),
            Verdict::Wait(Duration::from_secs(2)),
            "the third failure doubled the pair's wait"
        );
    }

    #[test]
    fn only_the_last_wrong_credentials_are_remembered() {
        let t = LoginThrottle::new(1000, 1000);
        let now = Instant::now();
        for n in 0..=RECENT_WRONG as u32 {
            t.failed(ATTACKER, "alice", &key(n), now);
        }
        // key(0) was pushed out by the later ones: sent again, it counts.
        t.failed(ATTACKER, "alice", &key(0), now);
        t.failed(ATTACKER, "alice", &key(RECENT_WRONG as u32), now);
        let ledger = t.ledger();
        let pair = &ledger.pairs[&(ATTACKER, "alice".to_string())];
        assert_eq!(pair.failures, RECENT_WRONG as u32 + 2);
        assert_eq!(pair.recent_wrong.len(), RECENT_WRONG);
    }

    #[test]
    fn debug_output_holds_no_fingerprint_of_a_wrong_password() {
        let t = LoginThrottle::new(10, 10);
        let wrong = key(7);
        t.failed(ATTACKER, "alice", &wrong, Instant::now());
        let shown = format!("{t:?}");
        assert!(shown.contains("recent_wrong: 1"), "{shown}");
        let as_bytes = format!("{wrong:?}");
        let inner = as_bytes.trim_start_matches('[').trim_end_matches(']');
        assert!(!shown.contains(inner), "{shown}");
        assert!(!shown.contains(&hex::encode(wrong)), "{shown}");
    }
}
