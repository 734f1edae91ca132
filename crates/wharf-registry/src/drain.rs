//! Answering early without losing the connection.
//!
//! A handler that answers before reading the request body (a 401 to an upload sent before
//! credentials, a 404, a 413) leaves the body unread. hyper then closes the connection after the
//! answer without saying so, and a keep-alive client (Go's `net/http`, Python's `http.client`)
//! sends its retry into a closed socket. As Go's server does, up to [`DRAIN_LIMIT_BYTES`] of the
//! rest is read and dropped so the connection stays usable; a larger or slower rest, or a body
//! the client holds back behind `Expect: 100-continue`, gets `Connection: close` on the answer.
//!
//! The body handed to the routes also ends with an error when the client sends nothing for the
//! idle timeout, so a stalled upload does not hold a connection forever.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Version, header};
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tower::ServiceExt as _;

use crate::limits::DRAIN_LIMIT_BYTES;

#[derive(Default)]
struct Slot {
    body: Option<Body>,
    finished: bool,
    polled: bool,
}

/// The request body as the routes see it; what they leave unread stays in the shared slot.
struct SharedBody {
    slot: Arc<Mutex<Slot>>,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let mut slot = lock(&this.slot);
        slot.polled = true;
        let Some(body) = slot.body.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(None) => {
                slot.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                if let Some(timer) = &mut this.timer {
                    timer
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.idle);
                }
                Poll::Ready(Some(frame))
            }
            Poll::Pending => {
                drop(slot);
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the client sent no request body bytes for {} s",
                            idle.as_secs()
                        ),
                    )))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let slot = lock(&self.slot);
        slot.finished || slot.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.slot)
            .body
            .as_ref()
            .map(HttpBody::size_hint)
            .unwrap_or_default()
    }
}

/// Calls `app` and, for HTTP/1, makes sure the connection survives a body left unread: drains
/// up to [`DRAIN_LIMIT_BYTES`] within `deadline`, else marks the answer `Connection: close`.
/// `body_idle` ends a request body that sends nothing for that long.
pub async fn call_keeping_connection(
    app: Router,
    req: Request,
    body_idle: Duration,
    deadline: Duration,
) -> Response {
    let http1 = req.version() <= Version::HTTP_11;
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = req.into_parts();
    let slot = Arc::new(Mutex::new(Slot {
        body: Some(body),
        ..Slot::default()
    }));
    let shared = SharedBody {
        slot: slot.clone(),
        idle: body_idle,
        timer: None,
    };
    let mut response = match app
        .oneshot(Request::from_parts(parts, Body::new(shared)))
        .await
    {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if !http1 {
        // HTTP/2 ends an unread stream on its own, without touching the connection.
        return response;
    }
    let leftover = {
        let mut slot = lock(&slot);
        let done = slot.finished || slot.body.as_ref().is_none_or(HttpBody::is_end_stream);
        if done {
            None
        } else {
            Some((slot.body.take(), slot.polled))
        }
    };
    let keep = match leftover {
        None => true,
        // The client waits for `100 Continue` before sending the body, which it never got: it
        // may still send it, so the connection's framing is unknown.
        Some((_, false)) if expects_continue => false,
        Some((None, _)) => false,
        Some((Some(body), _)) => drain(body, deadline).await,
    };
    if !keep {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads and drops the rest of `body`; true if it ended within the limit and the deadline.
async fn drain(mut body: Body, deadline: Duration) -> bool {
    if body.size_hint().lower() > DRAIN_LIMIT_BYTES {
        return false;
    }
    let read = async {
        let mut total: u64 = 0;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            if let Some(data) = frame.data_ref() {
                total += data.len() as u64;
                if total > DRAIN_LIMIT_BYTES {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(deadline, read).await.unwrap_or(false)
}
