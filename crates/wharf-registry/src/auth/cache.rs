//! A short-lived cache of verified credentials, keyed by the SHA-256 of the `Authorization`
//! header value: the password or token itself is never a key and never stored.
//!
//! Clients such as Docker send Basic credentials on every request, and a bcrypt check costs tens
//! of milliseconds; with the cache only the first request of a burst pays it. Concurrent first
//! requests with the same header share one check (single flight) instead of each running bcrypt.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tokio::sync::OnceCell;

/// SHA-256 of a credential (an `Authorization` header value).
pub type Key = [u8; 32];

/// How many entries are kept at most; past this, expired ones go, then everything.
const MAX_ENTRIES: usize = 10_000;

pub fn key_of(authorization: &[u8]) -> Key {
    Sha256::digest(authorization).into()
}

struct Entry<V> {
    value: V,
    expires: Instant,
    generation: u64,
}

type Flight<V> = Arc<OnceCell<Option<V>>>;

pub struct VerifiedCache<V: Clone> {
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry<V>>>,
    in_flight: Mutex<HashMap<Key, Flight<V>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<V: Clone> VerifiedCache<V> {
    pub fn new(ttl: Duration) -> Self {
        VerifiedCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A cached value, if present, unexpired and verified against the same `generation` of the
    /// credential files (a reload of htpasswd or a robot secret invalidates everything).
    pub fn get(&self, key: &Key, generation: u64) -> Option<V> {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some(e) if e.expires > now && e.generation == generation => Some(e.value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Cache `value` until `expires`, capped at the cache's time to live.
    pub fn insert(&self, key: Key, value: V, expires: Instant, generation: u64) {
        let now = Instant::now();
        let expires = expires.min(now + self.ttl);
        if expires <= now {
            return;
        }
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                value,
                expires,
                generation,
            },
        );
    }

    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached value, or the result of `verify` (which says until when a success may be
    /// cached). Concurrent calls with the same key run `verify` once. Failures are not cached.
    pub async fn get_or_verify<F, Fut>(&self, key: Key, generation: u64, verify: F) -> Option<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<(V, Instant)>>,
    {
        if let Some(v) = self.get(&key, generation) {
            return Some(v);
        }
        let flight: Flight<V> = lock(&self.in_flight)
            .entry(key)
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .clone();
        let result = flight
            .get_or_init(|| async {
                let verified = verify().await;
                if let Some((value, expires)) = &verified {
                    self.insert(key, value.clone(), *expires, generation);
                }
                verified.map(|(v, _)| v)
            })
            .await
            .clone();
        let mut in_flight = lock(&self.in_flight);
        if in_flight.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            in_flight.remove(&key);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn keys_are_hashes_of_the_header() {
        let k = key_of(b"Basic YWxpY2U6c2VjcmV0");
        assert_eq!(
            hex::encode(k),
            hex::encode(Sha256::digest(b"Basic YWxpY2U6c2VjcmV0"))
        );
        assert_ne!(k, key_of(b"Basic YWxpY2U6c2VjcmV1"));
    }

    #[test]
    fn entries_expire_and_die_with_their_generation() {
        let c = VerifiedCache::new(Duration::from_secs(60));
        let k = key_of(b"h");
        c.insert(k, "alice", Instant::now() + Duration::from_secs(3600), 1);
        assert_eq!(c.get(&k, 1), Some("alice"));
        assert_eq!(c.get(&k, 2), None, "a reload invalidates");
        assert_eq!(c.get(&k, 1), None, "and the entry is gone");
        c.insert(k, "alice", Instant::now(), 1);
        assert_eq!(c.get(&k, 1), None, "already expired: not cached");
        let zero = VerifiedCache::new(Duration::ZERO);
        zero.insert(k, "alice", Instant::now() + Duration::from_secs(10), 1);
        assert!(zero.is_empty(), "capped by the cache's ttl");
    }

    #[tokio::test]
    async fn a_verified_credential_is_checked_once() {
        let c = Arc::new(VerifiedCache::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let k = key_of(b"Basic x");
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, calls) = (c.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_verify(k, 0, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // Let the others pile up on the same flight.
                    tokio::task::yield_now().await;
                    Some(("bob".to_string(), Instant::now() + Duration::from_secs(60)))
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().as_deref(), Some("bob"));
        }
        assert_eq!(
            c.get_or_verify(k, 0, || async { None }).await.as_deref(),
            Some("bob")
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let c: VerifiedCache<String> = VerifiedCache::new(Duration::from_secs(60));
        let k = key_of(b"Basic bad");
        assert_eq!(c.get_or_verify(k, 0, || async { None }).await, None);
        let again = c
            .get_or_verify(k, 0, || async {
                Some((
                    "now-ok".to_string(),
                    Instant::now() + Duration::from_secs(5),
                ))
            })
            .await;
        assert_eq!(again.as_deref(), Some("now-ok"));
    }
}
