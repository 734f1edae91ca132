//! Single-flight blob fetches: the first request for a blob starts one download from the
//! upstream; every request for the same blob while it runs (the first included) reads the bytes
//! as they arrive, from memory, so no one waits for the whole blob before its first byte. The
//! bytes are kept until the fetch ends (then the blob is in storage, or it failed).

use std::collections::HashMap;
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

#[derive(Default)]
struct FlightState {
    /// Set once the upstream answered: `Some(length)` when it sent one.
    started: Option<Option<u64>>,
    chunks: Vec<Bytes>,
    outcome: Option<Result<(), FlightError>>,
}

/// One blob being fetched; readers follow it through [`Flight::reader`].
pub(crate) struct Flight {
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
        self.update(|s| s.chunks.push(chunk));
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

    /// Every byte of the blob from the start, as it arrives. Ends with an error (the client's
    /// connection is then cut, so it never takes a short or wrong blob for a whole one) when
    /// the fetch fails; ends normally only once the blob is verified.
    pub(crate) fn reader(self: Arc<Self>) -> ByteStream {
        let rx = self.changed.subscribe();
        Box::pin(futures_util::stream::unfold(
            (self, rx, 0usize, false),
            |(flight, mut rx, next, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let item = {
                        let s = flight.state();
                        if let Some(chunk) = s.chunks.get(next) {
                            Some(Ok(chunk.clone()))
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
                        Some(Ok(chunk)) => return Some((Ok(chunk), (flight, rx, next + 1, false))),
                        Some(Err(e)) => return Some((Err(e), (flight, rx, next, true))),
                        None => {
                            if rx.changed().await.is_err() {
                                let e = io::Error::other("the upstream fetch stopped");
                                return Some((Err(e), (flight, rx, next, true)));
                            }
                        }
                    }
                }
            },
        ))
    }
}

/// The fetches running in this process, by digest.
#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<Digest, Arc<Flight>>>,
}

impl Flights {
    /// The running fetch of `digest`, or a new one (then `true`: the caller starts it and calls
    /// [`Flights::done`] when it ends).
    pub(crate) fn join_or_create(&self, digest: &Digest) -> (Arc<Flight>, bool) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = running.get(digest) {
            return (flight.clone(), false);
        }
        let flight = Arc::new(Flight {
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

    #[tokio::test]
    async fn readers_get_bytes_as_they_arrive_and_late_readers_from_the_start() {
        let flights = Flights::default();
        let digest = Digest::of(b"abcdef");
        let (flight, first) = flights.join_or_create(&digest);
        assert!(first);
        let (joined, again) = flights.join_or_create(&digest);
        assert!(!again && Arc::ptr_eq(&flight, &joined));
        flight.started(Some(6));
        flight.push(Bytes::from_static(b"abc"));
        let mut early = flight.clone().reader();
        // The first chunk is readable before the fetch ends.
        assert_eq!(early.next().await.expect("chunk").expect("ok"), "abc");
        flight.push(Bytes::from_static(b"def"));
        let late = flight.clone().reader();
        flight.finish(Ok(()));
        assert_eq!(early.next().await.expect("chunk").expect("ok"), "def");
        assert!(early.next().await.is_none());
        let all: Vec<Bytes> = late.map(|c| c.expect("ok")).collect().await;
        assert_eq!(all.concat(), b"abcdef");
        assert_eq!(flight.wait_started().await, Ok(Some(6)));
        flights.done(&digest);
        assert!(flights.join_or_create(&digest).1, "a new fetch after done");
    }

    #[tokio::test]
    async fn a_fetch_dropped_without_an_outcome_fails_its_readers_and_is_forgotten() {
        let flights = Arc::new(Flights::default());
        let digest = Digest::of(b"y");
        let (flight, _) = flights.join_or_create(&digest);
        drop(Ending::new(flights.clone(), flight.clone(), digest.clone()));
        assert!(matches!(
            flight.wait_started().await,
            Err(FlightError::Failed(_))
        ));
        assert!(flights.join_or_create(&digest).1);
    }

    #[tokio::test]
    async fn a_failed_fetch_ends_every_reader_with_an_error() {
        let flights = Flights::default();
        let (flight, _) = flights.join_or_create(&Digest::of(b"x"));
        flight.started(None);
        flight.push(Bytes::from_static(b"partial"));
        let reader = flight.clone().reader();
        flight.finish(Err(FlightError::Failed("cut".into())));
        let items: Vec<_> = reader.collect().await;
        assert_eq!(items.len(), 2);
        assert!(items[1].is_err());
    }
}
