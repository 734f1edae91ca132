//! Single-flight manifest refreshes: however many requests ask for the same manifest of a
//! proxied repository at once, one request goes upstream and the others wait for its result,
//! its error included.
//!
//! A fetched manifest is answered at once and stored in the background (each storage write is
//! durable: an fsync a first pull would otherwise wait for). Until that write is done the
//! flight stays open, under the tag and under the digest, so later requests get the same
//! answer from memory instead of asking the upstream again. A graceful shutdown waits for the
//! write (`Proxies::finish_background_writes`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::error::RegistryError;
use crate::services::manifests::StoredManifest;

pub(crate) type Answer = Result<(StoredManifest, Bytes), RegistryError>;

/// The result every waiter of one refresh gets.
pub(crate) struct Outcome {
    result: Result<(StoredManifest, Bytes), Arc<RegistryError>>,
    /// The flight's hold, when no background write took it: released once the result is out.
    hold: Mutex<Option<Hold>>,
}

impl Outcome {
    /// The refresh's answer; `hold` is dropped once every waiter has it (pass `None` when a
    /// background write keeps the flight open until it is done).
    pub(crate) fn new(answer: Answer, hold: Option<Hold>) -> Outcome {
        Outcome {
            result: answer.map_err(Arc::new),
            hold: Mutex::new(hold),
        }
    }
}

type Cell = Arc<OnceCell<Outcome>>;

/// The refreshes running now, by `repository:tag` or `repository@digest`.
#[derive(Default)]
pub(crate) struct ManifestFlights {
    running: Mutex<HashMap<String, Cell>>,
}

/// Keeps a flight open (joinable by later requests) until dropped.
pub(crate) struct Hold {
    flights: Arc<ManifestFlights>,
    keys: Vec<String>,
    cell: Cell,
}

impl Hold {
    /// Keeps the flight open under `key` too (the digest of a manifest fetched by tag).
    pub(crate) fn also_under(&mut self, key: String) {
        let mut running = self.flights.lock();
        if !running.contains_key(&key) {
            running.insert(key.clone(), self.cell.clone());
            self.keys.push(key);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut running = self.flights.lock();
        for key in &self.keys {
            if running.get(key).is_some_and(|c| Arc::ptr_eq(c, &self.cell)) {
                running.remove(key);
            }
        }
    }
}

impl ManifestFlights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cell>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The answer of the running refresh of `key`, or of `refresh` (given the flight's hold),
    /// run now as the only one for `key`.
    pub(crate) async fn run<F, Fut>(self: &Arc<Self>, key: String, refresh: F) -> Answer
    where
        F: FnOnce(Hold) -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let cell = self.lock().entry(key.clone()).or_default().clone();
        // Whoever comes first runs `refresh`; a waiter takes over if its request is dropped.
        // Only the one that runs it makes a hold: a waiter's, dropped as it got the answer,
        // closed the flight while the background write was still going (a request then found
        // neither the flight nor the stored manifest and asked the upstream again).
        let outcome = cell
            .get_or_init(|| {
                refresh(Hold {
                    flights: self.clone(),
                    keys: vec![key],
                    cell: cell.clone(),
                })
            })
            .await;
        let released = outcome
            .hold
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(released);
        match &outcome.result {
            Ok(found) => Ok(found.clone()),
            Err(e) => Err(shared_error(e)),
        }
    }
}

/// A waiter's copy of the refresh's error (what a refresh can fail with keeps its kind).
fn shared_error(e: &RegistryError) -> RegistryError {
    match e {
        RegistryError::ManifestUnknown { reference } => RegistryError::ManifestUnknown {
            reference: reference.clone(),
        },
        RegistryError::Upstream { message } => RegistryError::Upstream {
            message: message.clone(),
        },
        other => RegistryError::Upstream {
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn answer(text: &'static str) -> Answer {
        let body = Bytes::from_static(text.as_bytes());
        Ok((
            StoredManifest {
                digest: crate::names::Digest::of(&body),
                media_type: "m".into(),
                size: body.len() as u64,
            },
            body,
        ))
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_refresh_and_its_error() {
        let flights = Arc::new(ManifestFlights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let refresh = |runs: Arc<AtomicUsize>,
                       released: Option<tokio::sync::oneshot::Receiver<()>>| {
            move |hold: Hold| async move {
                runs.fetch_add(1, Ordering::SeqCst);
                if let Some(released) = released {
                    let _ = released.await;
                }
                Outcome::new(
                    Err(RegistryError::Upstream {
                        message: "upstream down".into(),
                    }),
                    Some(hold),
                )
            }
        };
        let first = tokio::spawn({
            let flights = flights.clone();
            let f = refresh(runs.clone(), Some(released));
            async move { flights.run("r:1".into(), f).await }
        });
        tokio::task::yield_now().await;
        let second = tokio::spawn({
            let flights = flights.clone();
            let f = refresh(runs.clone(), None);
            async move { flights.run("r:1".into(), f).await }
        });
        tokio::task::yield_now().await;
        let _ = release.send(());
        for joined in [first, second] {
            let e = joined.await.expect("task").expect_err("shared error");
            assert_eq!(e.to_string(), "upstream down");
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Errors are not remembered: the next request asks again.
        let again = flights
            .run("r:1".into(), |hold| async move {
                Outcome::new(answer("{}"), Some(hold))
            })
            .await;
        assert!(again.is_ok());
        assert!(flights.lock().is_empty());
    }

    #[tokio::test]
    async fn a_held_flight_answers_later_requests_until_released_under_both_keys() {
        let flights = Arc::new(ManifestFlights::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<Hold>();
        let first = flights
            .run("r:1".into(), |mut hold| async move {
                hold.also_under("r@d".into());
                let _ = tx.send(hold);
                Outcome::new(answer("{\"a\":1}"), None)
            })
            .await
            .expect("ok");
        let hold = rx.await.expect("hold");
        let asked = Arc::new(AtomicUsize::new(0));
        for key in ["r:1", "r@d"] {
            let asked = asked.clone();
            let again = flights
                .run(key.into(), |hold| async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    Outcome::new(answer("{}"), Some(hold))
                })
                .await
                .expect("ok");
            assert_eq!(again.1, first.1);
        }
        assert_eq!(
            asked.load(Ordering::SeqCst),
            0,
            "not asked again while held"
        );
        drop(hold);
        assert!(flights.lock().is_empty());
    }

    /// Regression (seen under load in the 20-pull test: two upstream GETs): a waiter's answer
    /// must not close a flight its leader keeps open for a background write.
    #[tokio::test]
    async fn a_waiter_getting_its_answer_leaves_the_held_flight_open() {
        let flights = Arc::new(ManifestFlights::default());
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (tx, rx) = tokio::sync::oneshot::channel::<Hold>();
        let leader = tokio::spawn({
            let flights = flights.clone();
            async move {
                flights
                    .run("r:1".into(), |hold| async move {
                        let _ = wait.await;
                        // The answer goes out; the hold stays with the "background write".
                        let _ = tx.send(hold);
                        Outcome::new(answer("{\"a\":1}"), None)
                    })
                    .await
            }
        });
        tokio::task::yield_now().await;
        let waiter = tokio::spawn({
            let flights = flights.clone();
            async move {
                flights
                    .run("r:1".into(), |hold| async move {
                        Outcome::new(answer("{}"), Some(hold))
                    })
                    .await
            }
        });
        tokio::task::yield_now().await;
        let _ = go.send(());
        let first = leader.await.expect("task").expect("ok");
        assert_eq!(waiter.await.expect("task").expect("ok").1, first.1);
        let hold = rx.await.expect("hold");
        let asked = Arc::new(AtomicUsize::new(0));
        let later = flights
            .run("r:1".into(), {
                let asked = asked.clone();
                |hold| async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    Outcome::new(answer("{}"), Some(hold))
                }
            })
            .await
            .expect("ok");
        assert_eq!(later.1, first.1);
        assert_eq!(asked.load(Ordering::SeqCst), 0, "the held flight answered");
        drop(hold);
        assert!(flights.lock().is_empty());
    }
}
