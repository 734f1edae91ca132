//! Connection hygiene: every connection is known, timed and bounded.
//!
//! - A [`ConnectionTable`] holds at most `cap` connections. At the cap a new connection is still
//!   accepted and the connection idle the longest (or still sending its request head) is closed
//!   to make room, so a flood of silent sockets cannot keep legitimate clients out; only when
//!   every connection is busy with a request is the new one refused.
//! - The reaper closes a connection whose request head takes longer than the header timeout, and
//!   one without traffic and without a request in progress for the idle timeout (hyper has no
//!   idle timeout, and its header timeout would also cut idle keep-alive connections short).
//!   It also closes a busy one whose client has stopped reading an answer for the idle timeout
//!   (nginx's `send_timeout`): an answer body that handed hyper a frame and was not asked for
//!   the next one since, because the client's TCP window (HTTP/1.1) or its stream's flow-control
//!   window (HTTP/2) is shut. Without this, a client that requested `max_connections` blobs
//!   and read none of them held every connection for good, and the registry refused everyone.
//! - [`AcceptBackoff`]: accept errors (out of file descriptors) wait 10 ms doubling to 1 s and
//!   are logged once, then at most every 10 s with a count, instead of spinning and flooding.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// One open connection's timing state. Times are milliseconds since the table's start, plus one
/// (0 means "not set").
#[derive(Debug)]
pub struct Connection {
    pub peer: SocketAddr,
    /// The client a trusted balancer's PROXY protocol header named, if any.
    proxied_client: std::sync::OnceLock<SocketAddr>,
    start: Instant,
    last_io: AtomicU64,
    head_started: AtomicU64,
    handling: AtomicUsize,
    streaming: AtomicUsize,
    http2: AtomicBool,
    close: CancellationToken,
    /// The answer bodies being sent: when each last handed hyper a frame that hyper has not
    /// come back for (0: none owed). See the module docs.
    answers: Mutex<Vec<std::sync::Weak<AtomicU64>>>,
}

impl Connection {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn busy(&self) -> bool {
        self.handling.load(Ordering::Acquire) > 0 || self.streaming.load(Ordering::Acquire) > 0
    }

    fn on_read(&self) {
        let now = self.now();
        self.last_io.store(now, Ordering::Release);
        if !self.busy() {
            let _ = self
                .head_started
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn on_write(&self) {
        self.last_io.store(self.now(), Ordering::Release);
    }

    /// Marks the connection as speaking HTTP/2 (its control frames are no request head).
    pub fn set_http2(&self) {
        self.http2.store(true, Ordering::Release);
    }

    /// The client a trusted balancer named in its PROXY protocol header (set once).
    pub fn set_proxied_client(&self, client: SocketAddr) {
        let _ = self.proxied_client.set(client);
    }

    /// Whom the connection is from: the client a PROXY protocol header named, else the peer.
    pub fn client(&self) -> SocketAddr {
        self.proxied_client.get().copied().unwrap_or(self.peer)
    }

    /// Closed when the table evicts or reaps the connection.
    pub fn closed(&self) -> &CancellationToken {
        &self.close
    }

    /// A request is being handled until the guard drops.
    pub fn begin_request(self: &Arc<Self>) -> ActivityGuard {
        self.handling.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        ActivityGuard {
            conn: self.clone(),
            streaming: false,
        }
    }

    /// A response body is being sent until the guard drops.
    pub fn begin_response(self: &Arc<Self>) -> ActivityGuard {
        self.streaming.fetch_add(1, Ordering::AcqRel);
        ActivityGuard {
            conn: self.clone(),
            streaming: true,
        }
    }

    /// Registers an answer body's "frame owed since" mark (see the module docs).
    fn track_answer(&self) -> Arc<AtomicU64> {
        let owed = Arc::new(AtomicU64::new(0));
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        // Bodies of earlier requests on a keep-alive connection are gone: forget them here, so
        // the list holds about as many entries as answers in flight.
        answers.retain(|a| a.strong_count() > 0);
        answers.push(Arc::downgrade(&owed));
        owed
    }

    /// The oldest time an answer body has been waiting for hyper to ask for its next frame.
    fn oldest_unread_answer(&self) -> Option<u64> {
        let answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        answers
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|owed| owed.load(Ordering::Acquire))
            .filter(|&since| since != 0)
            .min()
    }

    /// Why the reaper should close this connection now, if it should.
    fn overdue(&self, now: u64, header_timeout: u64, idle_timeout: u64) -> Option<&'static str> {
        if self.busy() {
            let stalled = self
                .oldest_unread_answer()
                .is_some_and(|since| now.saturating_sub(since) > idle_timeout);
            return stalled.then_some("the client stopped reading the answer");
        }
        let head = self.head_started.load(Ordering::Acquire);
        if head != 0
            && !self.http2.load(Ordering::Acquire)
            && now.saturating_sub(head) > header_timeout
        {
            return Some("request head not complete within the header timeout");
        }
        let last = self.last_io.load(Ordering::Acquire);
        (now.saturating_sub(last) > idle_timeout).then_some("idle")
    }
}

/// Decrements the request or response count when dropped.
#[derive(Debug)]
pub struct ActivityGuard {
    conn: Arc<Connection>,
    streaming: bool,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let counter = if self.streaming {
            &self.conn.streaming
        } else {
            &self.conn.handling
        };
        counter.fetch_sub(1, Ordering::AcqRel);
        self.conn.on_write();
    }
}

/// The open connections, at most `cap` of them.
#[derive(Debug)]
pub struct ConnectionTable {
    start: Instant,
    cap: usize,
    header_timeout: Duration,
    idle_timeout: Duration,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    /// Refusals while every connection was busy, logged in batches.
    refused: AtomicU64,
    emptied: tokio::sync::Notify,
}

/// What [`ConnectionTable::admit`] decided.
#[derive(Debug)]
pub enum Admission {
    Admitted {
        id: u64,
        conn: Arc<Connection>,
    },
    /// At the cap with every connection busy.
    Refused,
}

impl ConnectionTable {
    pub fn new(cap: usize, header_timeout: Duration, idle_timeout: Duration) -> ConnectionTable {
        ConnectionTable {
            start: Instant::now(),
            cap: cap.max(1),
            header_timeout,
            idle_timeout,
            next_id: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            emptied: tokio::sync::Notify::new(),
        }
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn len(&self) -> usize {
        self.open().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Registers a new connection from `peer`, closing the longest idle one when at the cap.
    pub fn admit(&self, peer: SocketAddr) -> Admission {
        let mut open = self.open();
        if open.len() >= self.cap {
            let victim = open
                .iter()
                .filter(|(_, c)| !c.busy())
                .min_by_key(|(_, c)| c.last_io.load(Ordering::Acquire))
                .map(|(id, _)| *id);
            match victim.and_then(|id| open.remove(&id)) {
                Some(evicted) => {
                    tracing::debug!(peer = %evicted.peer, "connection cap reached: closed the longest idle connection");
                    evicted.close.cancel();
                }
                None => {
                    let n = self.refused.fetch_add(1, Ordering::Relaxed);
                    if n.is_power_of_two() || n == 0 {
                        tracing::warn!(
                            cap = self.cap,
                            refused = n + 1,
                            "connection cap reached and every connection is busy: refusing new connections (raise [limits] max_connections)"
                        );
                    }
                    return Admission::Refused;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Connection {
            peer,
            proxied_client: std::sync::OnceLock::new(),
            start: self.start,
            last_io: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
            streaming: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
            close: CancellationToken::new(),
            answers: Mutex::new(Vec::new()),
        });
        conn.on_write();
        open.insert(id, conn.clone());
        Admission::Admitted { id, conn }
    }

    /// Forgets a connection that ended.
    pub fn remove(&self, id: u64) {
        let mut open = self.open();
        open.remove(&id);
        if open.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Closes connections past their header or idle timeout; returns how many.
    pub fn reap(&self) -> usize {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let header = u64::try_from(self.header_timeout.as_millis()).unwrap_or(u64::MAX);
        let idle = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut open = self.open();
        let before = open.len();
        open.retain(|_, c| match c.overdue(now, header, idle) {
            Some(why) => {
                tracing::debug!(peer = %c.peer, why, "closing connection");
                c.close.cancel();
                false
            }
            None => true,
        });
        let reaped = before - open.len();
        if open.is_empty() && reaped > 0 {
            self.emptied.notify_waiters();
        }
        reaped
    }

    /// How often [`ConnectionTable::reap`] should run.
    pub fn reap_every(&self) -> Duration {
        (self.header_timeout.min(self.idle_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    /// Completes once no connection is open.
    pub async fn wait_empty(&self) {
        loop {
            let notified = self.emptied.notified();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// After the server's last answer on a connection, the client's unread bytes (the rest of an
/// upload it is still sending) are read and dropped for at most this long and this much, so
/// closing does not reset the connection before the client has read the answer.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// Reads and writes of a connection, reported to its [`Connection`] for the timeouts. Shutting
/// it down lingers (as Apache's and Go's servers do): the write side is closed first, then what
/// the client still sends is read and dropped until it closes too, for a bounded time.
#[derive(Debug)]
pub struct TrackedIo<T> {
    inner: T,
    conn: Arc<Connection>,
    linger: Option<Linger>,
    seen_first_bytes: bool,
}

#[derive(Debug)]
struct Linger {
    deadline: Pin<Box<tokio::time::Sleep>>,
    discarded: usize,
}

impl<T> TrackedIo<T> {
    pub fn new(inner: T, conn: Arc<Connection>) -> TrackedIo<T> {
        TrackedIo {
            inner,
            conn,
            linger: None,
            seen_first_bytes: false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if !self.seen_first_bytes {
                self.seen_first_bytes = true;
                // HTTP/2 with prior knowledge (h2c): its control frames are no request head.
                if buf.filled()[before..].starts_with(b"PRI * HTTP/2.0") {
                    self.conn.set_http2();
                }
            }
            self.conn.on_read();
        }
        result
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.on_write();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.on_write();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.linger = Some(Linger {
                deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                discarded: 0,
            });
        }
        let Some(linger) = this.linger.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 8192];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    linger.discarded += buf.filled().len();
                    if linger.discarded > LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                // The client closed too (or failed): done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match linger.deadline.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

/// The most an answer body hands hyper at once. hyper asks for the next frame once it has room
/// for it, so a client must read this much per idle timeout to count as reading: 64 KiB a
/// minute by default, about 1 KB/s (a blob file is read in 512 KiB pieces).
const ANSWER_FRAME_MAX: usize = 64 * 1024;

/// A response body that keeps its connection counted as busy until it is dropped, and tells
/// the reaper when hyper stops asking it for frames (the client stopped reading).
pub struct GuardedBody {
    inner: Body,
    guard: ActivityGuard,
    /// When this body last handed hyper a frame that hyper has not come back for (0: none).
    owed_since: Arc<AtomicU64>,
    /// The rest of a data frame larger than [`ANSWER_FRAME_MAX`], handed out next.
    rest: Bytes,
}

impl GuardedBody {
    pub fn new(inner: Body, guard: ActivityGuard) -> GuardedBody {
        let owed_since = guard.conn.track_answer();
        GuardedBody {
            inner,
            guard,
            owed_since,
            rest: Bytes::new(),
        }
    }

    /// At most [`ANSWER_FRAME_MAX`] bytes of `data`, the rest kept for the next poll.
    fn slice(&mut self, mut data: Bytes) -> Frame<Bytes> {
        if data.len() > ANSWER_FRAME_MAX {
            self.rest = data.split_off(ANSWER_FRAME_MAX);
        }
        Frame::data(data)
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        // Asked again: whatever was handed out was taken. A body waiting for its own data (a
        // pull-through download) owes nothing and is never the client's stall.
        self.owed_since.store(0, Ordering::Release);
        let polled = if self.rest.is_empty() {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => Poll::Ready(Some(Ok(self.slice(data)))),
                    Err(other) => Poll::Ready(Some(Ok(other))),
                },
                other => other,
            }
        } else {
            let rest = std::mem::take(&mut self.rest);
            Poll::Ready(Some(Ok(self.slice(rest))))
        };
        if let Poll::Ready(Some(Ok(_))) = &polled {
            let now = self.guard.conn.now();
            self.owed_since.store(now, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + rest);
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + rest);
        }
        hint
    }
}

/// Backs off after accept errors and keeps them from flooding the log.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    consecutive: u32,
    suppressed: u64,
    last_logged: Option<Instant>,
}

/// Accept errors are logged at most this often.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

impl AcceptBackoff {
    /// How long to wait after this error: 10 ms, doubling, at most 1 s. Logs the first error
    /// and then at most one line per 10 s, with how many were not logged.
    pub fn on_error(&mut self, error: &io::Error, now: Instant) -> Duration {
        self.consecutive = self.consecutive.saturating_add(1);
        let due = self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_ERROR_LOG_EVERY);
        if due {
            let hint = if error.raw_os_error() == Some(24) || error.raw_os_error() == Some(23) {
                ": out of file descriptors; lower [limits] max_connections or raise `ulimit -n`"
            } else {
                ""
            };
            tracing::warn!(error = %error, not_logged = self.suppressed, "accept failed{hint}");
            self.last_logged = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        let exponent = self.consecutive.saturating_sub(1).min(7);
        (Duration::from_millis(10) * 2u32.pow(exponent)).min(Duration::from_secs(1))
    }

    pub fn on_success(&mut self) {
        self.consecutive = 0;
    }

    /// Errors since the last logged one.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn admitted(a: Admission) -> (u64, Arc<Connection>) {
        match a {
            Admission::Admitted { id, conn } => (id, conn),
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let table = ConnectionTable::new(2, Duration::from_secs(10), Duration::from_secs(60));
        let (_, first) = admitted(table.admit(peer(1)));
        std::thread::sleep(Duration::from_millis(5));
        let (_, second) = admitted(table.admit(peer(2)));
        let (_, _third) = admitted(table.admit(peer(3)));
        assert!(first.closed().is_cancelled(), "the oldest idle one goes");
        assert!(!second.closed().is_cancelled());
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn busy_connections_are_never_evicted_and_a_full_busy_table_refuses() {
        let table = ConnectionTable::new(1, Duration::from_secs(10), Duration::from_secs(60));
        let (_, only) = admitted(table.admit(peer(1)));
        let guard = only.begin_request();
        assert!(matches!(table.admit(peer(2)), Admission::Refused));
        assert!(!only.closed().is_cancelled());
        drop(guard);
        let _ = admitted(table.admit(peer(3)));
        assert!(only.closed().is_cancelled());
    }

    #[test]
    fn reaper_closes_slow_heads_and_idle_connections_but_not_busy_ones() {
        let table = ConnectionTable::new(10, Duration::from_millis(20), Duration::from_millis(60));
        let (_, slow_head) = admitted(table.admit(peer(1)));
        let (_, idle) = admitted(table.admit(peer(2)));
        let (_, busy) = admitted(table.admit(peer(3)));
        slow_head.on_read();
        let _request = busy.begin_request();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(table.reap(), 1);
        assert!(slow_head.closed().is_cancelled());
        assert!(!idle.closed().is_cancelled());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(table.reap(), 1);
        assert!(idle.closed().is_cancelled());
        assert!(!busy.closed().is_cancelled());
    }

    #[test]
    fn reaper_closes_a_busy_connection_whose_client_stopped_reading_its_answer() {
        let table = ConnectionTable::new(10, Duration::from_secs(10), Duration::from_millis(60));
        let (_, reading) = admitted(table.admit(peer(1)));
        let (_, stalled) = admitted(table.admit(peer(2)));
        let (_, waiting) = admitted(table.admit(peer(3)));
        let body = || {
            Body::from_stream(futures_util::stream::iter(
                (0..3).map(|_| Ok::<_, io::Error>(Bytes::from_static(b"frame"))),
            ))
        };
        let mut read_on = GuardedBody::new(body(), reading.begin_response());
        let mut never_asked_again = GuardedBody::new(body(), stalled.begin_response());
        // Its own data has not come (an upstream's): nothing is owed, however long it takes.
        let mut still_coming = GuardedBody::new(
            Body::from_stream(futures_util::stream::pending::<Result<Bytes, io::Error>>()),
            waiting.begin_response(),
        );
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut poll = |b: &mut GuardedBody| Pin::new(b).poll_frame(&mut cx).is_ready();
        assert!(poll(&mut read_on));
        assert!(poll(&mut never_asked_again));
        assert!(!poll(&mut still_coming));
        std::thread::sleep(Duration::from_millis(40));
        assert!(poll(&mut read_on), "the reading client's next frame");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(table.reap(), 1);
        assert!(
            stalled.closed().is_cancelled(),
            "no frame asked for in 80 ms"
        );
        assert!(!reading.closed().is_cancelled());
        assert!(!waiting.closed().is_cancelled());
    }

    #[test]
    fn answer_frames_are_handed_out_in_bounded_slices_and_add_up() {
        let table = ConnectionTable::new(10, Duration::from_secs(10), Duration::from_secs(60));
        let (_, conn) = admitted(table.admit(peer(1)));
        let whole: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let parts = vec![
            Bytes::from(whole[..200_000].to_vec()),
            Bytes::from(whole[200_000..].to_vec()),
        ];
        let inner = Body::from_stream(futures_util::stream::iter(
            parts.into_iter().map(Ok::<_, io::Error>),
        ));
        let mut body = GuardedBody::new(inner, conn.begin_response());
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut received = Vec::new();
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(frame)) => {
                    let data = frame.expect("frame").into_data().expect("data");
                    assert!(data.len() <= ANSWER_FRAME_MAX, "{}", data.len());
                    received.extend_from_slice(&data);
                }
                Poll::Ready(None) => break,
                Poll::Pending => panic!("a ready stream's body waits"),
            }
        }
        assert_eq!(received, whole);
    }

    #[test]
    fn accept_errors_back_off_and_are_logged_sparingly() {
        let mut b = AcceptBackoff::default();
        let e = io::Error::from_raw_os_error(24);
        let now = Instant::now();
        let waits: Vec<Duration> = (0..10).map(|_| b.on_error(&e, now)).collect();
        assert_eq!(waits[0], Duration::from_millis(10));
        assert_eq!(waits[1], Duration::from_millis(20));
        assert_eq!(waits[9], Duration::from_secs(1));
        assert_eq!(b.suppressed(), 9, "only the first of ten errors is logged");
        b.on_error(&e, now + ACCEPT_ERROR_LOG_EVERY);
        assert_eq!(b.suppressed(), 0);
        b.on_success();
        assert_eq!(b.on_error(&e, now), Duration::from_millis(10));
    }
}
