//! Single-flight blob fetches: the first request for a blob starts one download from the
//! upstream; every request for the same blob while it runs (the first included) reads the bytes
//! as they arrive, from memory, so no one waits for the whole blob before its first byte.
//!
//! Readers end as soon as every byte is in and the digest checked ([`Flight::verified`]), not
//! once the blob is durably stored: a client that reuses its connection for its next request
//! does not wait for the storage's fsync. The flight stays joinable until it is stored.
//!
//! A flight remembers the repository that started it: a request through another repository
//! must first learn from its own upstream that it may have the blob (see `Proxies::blob`).
//!
//! Memory: bytes every reader has passed are dropped once more than [`RETAIN_BYTES`] are held,
//! so a large layer is not held whole. A request that arrives after that cannot start from the
//! first byte: it waits for the end of the fetch and reads the blob from storage.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

use crate::names::Digest;
use crate::storage::ByteStream;

/// Why a fetch gave nothing usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlightError {
    /// The upstream does not have the blob.
    NotFound(String),
    /// The upstream failed, cut the stream, or sent other bytes than the digest says.
    Failed(String),
}

impl FlightError {
    pub(crate) fn message(&self) -> &str {
        match self {
            FlightError::NotFound(m) | FlightError::Failed(m) => m,
        }
    }
}

/// Up to this much of a blob is kept for readers that may still join from the first byte.
pub(crate) const RETAIN_BYTES: usize = 64 << 20;

#[derive(Default)]
struct FlightState {
    /// Set once the upstream answered: `Some(length)` when it sent one.
    started: Option<Option<u64>>,
    /// The chunks from number `first` on (the earlier ones were dropped).
    chunks: VecDeque<Bytes>,
    first: usize,
    held_bytes: usize,
    /// The next chunk number of every reader, by reader id.
    readers: HashMap<u64, usize>,
    next_reader: u64,
    /// Every byte is in and has the expected digest: readers end here.
    verified: bool,
    outcome: Option<Result<(), FlightError>>,
}

impl FlightState {
    /// Drops the chunks every reader has passed, once more than [`RETAIN_BYTES`] are held.
    fn trim(&mut self) {
        if self.held_bytes <= RETAIN_BYTES {
            return;
        }
        let passed = self
            .readers
            .values()
            .copied()
            .min()
            .unwrap_or(self.first + self.chunks.len());
        while self.first < passed {
            let Some(chunk) = self.chunks.pop_front() else {
                break;
            };
            self.held_bytes -= chunk.len();
            self.first += 1;
        }
    }
}

/// One blob being fetched; readers follow it through [`Flight::reader`].
pub(crate) struct Flight {
    /// The (local) repository whose request started the fetch.
    repository: String,
    state: Mutex<FlightState>,
    /// Bumped on every change of `state`, so readers wait without polling.
    changed: watch::Sender<()>,
}

impl Flight {
    fn state(&self) -> std::sync::MutexGuard<'_, FlightState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(&mut FlightState)) {
        f(&mut self.state());
        self.changed.send_replace(());
    }

    /// The upstream answered; `length` from its `Content-Length`.
    pub(crate) fn started(&self, length: Option<u64>) {
        self.update(|s| s.started = Some(length));
    }

    pub(crate) fn push(&self, chunk: Bytes) {
        self.update(|s| {
            s.held_bytes += chunk.len();
            s.chunks.push_back(chunk);
            s.trim();
        });
    }

    /// The repository whose request started the fetch.
    pub(crate) fn repository(&self) -> &str {
        &self.repository
    }

    /// Every byte arrived and has the expected digest: readers end normally now, before the
    /// blob is stored.
    pub(crate) fn verified(&self) {
        self.update(|s| s.verified = true);
    }

    /// The end: `Ok` once the blob is verified and stored.
    pub(crate) fn finish(&self, outcome: Result<(), FlightError>) {
        self.update(|s| s.outcome = Some(outcome));
    }

    /// Waits until the upstream answered (its length, if it sent one) or the fetch failed.
    pub(crate) async fn wait_started(&self) -> Result<Option<u64>, FlightError> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let s = self.state();
                if let Some(Err(e)) = &s.outcome {
                    return Err(e.clone());
                }
                if let Some(length) = s.started {
                    return Ok(length);
                }
                if s.outcome.is_some() {
                    return Ok(None);
                }
            }
            if rx.changed().await.is_err() {
                return Err(FlightError::Failed("the fetch stopped".into()));
            }
        }
    }

    /// Every byte of the blob from the start, as it arrives; `None` when the first bytes were
    /// already dropped (then wait for [`Flight::ended`] and read the blob from storage). Ends
    /// with an error (the client's connection is then cut, so it never takes a short or wrong
    /// blob for a whole one) when the fetch fails; ends normally once all bytes are verified.
    pub(crate) fn reader(self: Arc<Self>) -> Option<ByteStream> {
        let id = {
            let mut s = self.state();
            if s.first > 0 {
                return None;
            }
            let id = s.next_reader;
            s.next_reader += 1;
            s.readers.insert(id, 0);
            id
        };
        let rx = self.changed.subscribe();
        let reader = Reader { flight: self, id };
        Some(Box::pin(futures_util::stream::unfold(
            (reader, rx, 0usize, false),
            |(reader, mut rx, next, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let item = {
                        let mut s = reader.flight.state();
                        if let Some(chunk) = next
                            .checked_sub(s.first)
                            .and_then(|i| s.chunks.get(i))
                            .cloned()
                        {
                            s.readers.insert(reader.id, next + 1);
                            Some(Ok(chunk))
                        } else if s.verified {
                            return None;
                        } else {
                            match &s.outcome {
                                Some(Ok(())) => return None,
                                Some(Err(e)) => {
                                    Some(Err(io::Error::other(e.message().to_string())))
                                }
                                None => None,
                            }
                        }
                    };
                    match item {
                        Some(Ok(chunk)) => {
                            return Some((Ok(chunk), (reader, rx, next + 1, false)));
                        }
                        Some(Err(e)) => return Some((Err(e), (reader, rx, next, true))),
                        None => {
                            if rx.changed().await.is_err() {
                                let e = io::Error::other("the upstream fetch stopped");
                                return Some((Err(e), (reader, rx, next, true)));
                            }
                        }
                    }
                }
            },
        )))
    }

    /// Waits for the end of the fetch: `Ok` once the blob is in storage.
    pub(crate) async fn ended(&self) -> Result<(), FlightError> {
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(outcome) = self.state().outcome.clone() {
                return outcome;
            }
            if rx.changed().await.is_err() {
                return Err(FlightError::Failed("the upstream fetch stopped".into()));
            }
        }
    }
}

/// A reader's place in a flight; gone readers no longer hold chunks back.
struct Reader {
    flight: Arc<Flight>,
    id: u64,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut s = self.flight.state();
        s.readers.remove(&self.id);
        s.trim();
    }
}

/// The fetches running in this process, by digest.
#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<Digest, Arc<Flight>>>,
}

impl Flights {
    /// The running fetch of `digest`, or a new one for `repository` (then `true`: the caller
    /// starts it and calls [`Flights::done`] when it ends).
    pub(crate) fn join_or_create(&self, digest: &Digest, repository: &str) -> (Arc<Flight>, bool) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = running.get(digest) {
            return (flight.clone(), false);
        }
        let flight = Arc::new(Flight {
            repository: repository.to_string(),
            state: Mutex::new(FlightState::default()),
            changed: watch::channel(()).0,
        });
        running.insert(digest.clone(), flight.clone());
        (flight, true)
    }

    /// Forgets the fetch of `digest`: later requests find the blob in storage (or start over).
    pub(crate) fn done(&self, digest: &Digest) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(digest);
    }
}

/// The end of a fetch, also when its task panics or is cancelled: the flight is forgotten first
/// (a request arriving after the end finds the blob in storage, or starts over, never a finished
/// flight), then its readers learn the outcome. Without an outcome the fetch failed.
pub(crate) struct Ending {
    flights: Arc<Flights>,
    flight: Arc<Flight>,
    digest: Digest,
    outcome: Option<Result<(), FlightError>>,
}

impl Ending {
    pub(crate) fn new(flights: Arc<Flights>, flight: Arc<Flight>, digest: Digest) -> Ending {
        Ending {
            flights,
            flight,
            digest,
            outcome: None,
        }
    }

    pub(crate) fn finish(mut self, outcome: Result<(), FlightError>) {
        self.outcome = Some(outcome);
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        self.flights.done(&self.digest);
        let outcome = self
            .outcome
            .take()
            .unwrap_or_else(|| Err(FlightError::Failed("the upstream fetch stopped".into())));
        self.flight.finish(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use std::time::Duration;

    #[tokio::test]
    async fn readers_get_bytes_as_they_arrive_and_late_readers_from_the_start() {
        let flights = Flights::default();
        let digest = Digest::of(b"abcdef");
        let (flight, first) = flights.join_or_create(&digest, "r");
        assert!(first);
        let (joined, again) = flights.join_or_create(&digest, "r");
        assert!(!again && Arc::ptr_eq(&flight, &joined));
        flight.started(Some(6));
        flight.push(Bytes::from_static(b"abc"));
        let mut early = flight.clone().reader().expect("from the start");
        // The first chunk is readable before the fetch ends.
        assert_eq!(early.next().await.expect("chunk").expect("ok"), "abc");
        flight.push(Bytes::from_static(b"def"));
        let late = flight.clone().reader().expect("from the start");
        flight.finish(Ok(()));
        assert_eq!(early.next().await.expect("chunk").expect("ok"), "def");
        assert!(early.next().await.is_none());
        let all: Vec<Bytes> = late.map(|c| c.expect("ok")).collect().await;
        assert_eq!(all.concat(), b"abcdef");
        assert_eq!(flight.wait_started().await, Ok(Some(6)));
        flights.done(&digest);
        assert!(
            flights.join_or_create(&digest, "r").1,
            "a new fetch after done"
        );
    }

    #[tokio::test]
    async fn passed_bytes_are_dropped_beyond_the_limit_and_late_readers_wait_for_storage() {
        let flights = Flights::default();
        let (flight, _) = flights.join_or_create(&Digest::of(b"big"), "r");
        flight.started(None);
        let mut reader = flight.clone().reader().expect("from the start");
        let chunk = Bytes::from(vec![0u8; 1 << 20]);
        for _ in 0..(RETAIN_BYTES >> 20) + 8 {
            flight.push(chunk.clone());
        }
        // The reader has passed nothing yet: everything is held for it.
        assert!(flight.clone().reader().is_some());
        for _ in 0..(RETAIN_BYTES >> 20) + 8 {
            assert_eq!(
                reader.next().await.expect("chunk").expect("ok").len(),
                1 << 20
            );
        }
        flight.push(chunk.clone());
        assert!(flight.state().held_bytes <= RETAIN_BYTES + (1 << 20));
        assert!(
            flight.clone().reader().is_none(),
            "the first bytes are gone: a late reader reads storage"
        );
        flight.finish(Ok(()));
        assert_eq!(flight.ended().await, Ok(()));
    }

    #[tokio::test]
    async fn a_fetch_dropped_without_an_outcome_fails_its_readers_and_is_forgotten() {
        let flights = Arc::new(Flights::default());
        let digest = Digest::of(b"y");
        let (flight, _) = flights.join_or_create(&digest, "r");
        drop(Ending::new(flights.clone(), flight.clone(), digest.clone()));
        assert!(matches!(
            flight.wait_started().await,
            Err(FlightError::Failed(_))
        ));
        assert!(flights.join_or_create(&digest, "r").1);
    }

    #[tokio::test]
    async fn readers_end_once_the_bytes_are_verified_before_the_blob_is_stored() {
        let flights = Flights::default();
        let (flight, _) = flights.join_or_create(&Digest::of(b"v"), "r");
        flight.started(Some(1));
        flight.push(Bytes::from_static(b"v"));
        let reader = flight.clone().reader().expect("from the start");
        flight.verified();
        // No outcome yet (the storage is still writing): the reader ends all the same.
        let all: Vec<_> = tokio::time::timeout(Duration::from_secs(10), reader.collect())
            .await
            .expect("the reader ends before the blob is stored");
        assert_eq!(all.len(), 1);
        assert!(all[0].is_ok());
    }

    #[tokio::test]
    async fn a_failed_fetch_ends_every_reader_with_an_error() {
        let flights = Flights::default();
        let (flight, _) = flights.join_or_create(&Digest::of(b"x"), "r");
        flight.started(None);
        flight.push(Bytes::from_static(b"partial"));
        let reader = flight.clone().reader().expect("from the start");
        flight.finish(Err(FlightError::Failed("cut".into())));
        let items: Vec<_> = reader.collect().await;
        assert_eq!(items.len(), 2);
        assert!(items[1].is_err());
    }
}
