//! Fewer wakeups while a large request body streams in, with the socket's receive low-water mark
//! (`SO_RCVLOWAT`).
//!
//! Why: a client such as curl sends an upload in 64 KiB writes, and the connection's task woke
//! for each of them: on a 256 MiB upload with a core busy, a third of the server's task switches
//! and a good share of its CPU went into waking up for 64 KiB at a time. With the low-water mark
//! raised the kernel wakes the task once [`PACED_READ`] bytes are waiting, and it reads them in
//! one call.
//!
//! The danger is a wait that never ends: a client that has sent its last bytes and waits for the
//! answer while fewer than the mark are queued would wait forever. So the mark is raised only
//! while the rest of a body of known length (`Content-Length`, HTTP/1 without TLS) still to come
//! from the socket is at least [`PACED_READ`], counted from the bytes the connection has read,
//! and set back to 1 for everything else: the head of the next request, a chunked body, the end
//! of the body, and as soon as the body's reader is dropped. What the server may already have
//! read of the body before the route asked (hyper's read buffer) is allowed for with
//! [`READ_AHEAD_BOUND`]. A read never waits for the mark itself (the socket is non-blocking): it
//! only changes when the kernel reports the socket readable.
//!
//! A client that slows down mid-body must not look idle: the connection's idle timeout counts
//! from its last read. So a paced wait lasts at most [`MAX_PACED_WAIT`]: then the mark drops to 1
//! for one read, which takes whatever has come (and counts as traffic), and pacing resumes.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Bytes the kernel gathers before waking a body's reader. 256 KiB took about twice as many
/// task switches per upload as 1 MiB (`perf stat` on 256 MiB uploads with a core busy:
/// 1,900-3,000 vs 1,200-1,350; 4,000-7,400 without pacing); 2 and 4 MiB were no faster.
pub const PACED_READ: u64 = 1024 * 1024;
/// More than hyper can have read from a connection beyond a request's head before the route
/// reads the body: its read buffer grows to 400 KiB by default (`max_buf_size`), and a reserve
/// may double an allocation.
const READ_AHEAD_BOUND: u64 = 2 * 1024 * 1024;
/// The longest a paced read waits before taking what has come, however little.
const MAX_PACED_WAIT: Duration = Duration::from_millis(500);

/// What one connection has read, and where the body being read ends at the earliest. Shared by
/// the connection's [`PacedIo`] and its requests (as a request extension).
#[derive(Debug, Default)]
pub struct BodyPacing {
    /// Bytes read from the socket so far.
    read: AtomicU64,
    /// A lower bound of the socket offset where the body being read ends; 0 when no body of
    /// known length is being read.
    body_end_at_least: AtomicU64,
}

impl BodyPacing {
    /// A body of `length` bytes, none of it handed to the route yet, is about to be read on this
    /// connection. Pacing lasts while the returned guard lives.
    pub fn expect_body(self: &Arc<Self>, length: u64) -> BodyPacingGuard {
        let read = self.read.load(Ordering::Relaxed);
        // The length is the client's word (`Content-Length`): no overflow, whatever it says.
        let end = read.saturating_add(length).saturating_sub(READ_AHEAD_BOUND);
        self.body_end_at_least.store(end, Ordering::Relaxed);
        BodyPacingGuard(self.clone())
    }

    /// The low-water mark for the next wait: [`PACED_READ`] while at least that much of the body
    /// is surely still to come, else 1.
    fn wanted_mark(&self) -> u64 {
        let read = self.read.load(Ordering::Relaxed);
        let end = self.body_end_at_least.load(Ordering::Relaxed);
        if end.saturating_sub(read) >= PACED_READ {
            PACED_READ
        } else {
            1
        }
    }
}

/// Ends a body's pacing when dropped (the body read to its end, or abandoned).
#[derive(Debug)]
pub struct BodyPacingGuard(Arc<BodyPacing>);

impl Drop for BodyPacingGuard {
    fn drop(&mut self) {
        self.0.body_end_at_least.store(0, Ordering::Relaxed);
    }
}

/// A plain TCP connection whose receive low-water mark follows its [`BodyPacing`].
#[derive(Debug)]
pub struct PacedIo<T> {
    inner: T,
    pacing: Arc<BodyPacing>,
    /// The mark set on the socket (1, the kernel's default, until raised).
    mark: u64,
    /// Setting the mark failed once: left at its default for this connection.
    unsupported: bool,
    /// Ends a paced wait that lasts [`MAX_PACED_WAIT`]; made on the first paced wait.
    paced_wait: Option<Pin<Box<Sleep>>>,
    /// `paced_wait` is set for the current wait.
    waiting: bool,
    /// The current wait outlasted `paced_wait`: the next read is not paced.
    overdue: bool,
}

impl<T: AsFd> PacedIo<T> {
    pub fn new(inner: T, pacing: Arc<BodyPacing>) -> PacedIo<T> {
        PacedIo {
            inner,
            pacing,
            mark: 1,
            unsupported: false,
            paced_wait: None,
            waiting: false,
            overdue: false,
        }
    }

    fn follow_pacing(&mut self) {
        if self.unsupported {
            return;
        }
        let wanted = if self.overdue {
            1
        } else {
            self.pacing.wanted_mark()
        };
        if wanted == self.mark {
            return;
        }
        match set_receive_low_water_mark(&self.inner, wanted) {
            Ok(()) => self.mark = wanted,
            Err(e) => {
                tracing::debug!(error = %e, "SO_RCVLOWAT refused: reading without pacing");
                self.unsupported = true;
                if self.mark != 1 && set_receive_low_water_mark(&self.inner, 1).is_ok() {
                    self.mark = 1;
                }
            }
        }
    }
}

#[allow(unsafe_code)]
fn set_receive_low_water_mark(socket: &impl AsFd, bytes: u64) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).map_err(io::Error::other)?;
    let fd = socket.as_fd();
    // SAFETY: `fd` is a socket borrowed for the call; the option value is a c_int on our stack,
    // passed with its exact size, and only read by the kernel.
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl<T: AsFd + AsyncRead + Unpin> AsyncRead for PacedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Before reading: if this read finds nothing, its wait uses the mark set here.
        this.follow_pacing();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got = buf.filled().len() - before;
        if got > 0 {
            this.pacing.read.fetch_add(got as u64, Ordering::Relaxed);
            this.waiting = false;
            this.overdue = false;
        }
        if result.is_pending() && this.mark > 1 {
            let wait = this
                .paced_wait
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(MAX_PACED_WAIT)));
            if !this.waiting {
                wait.as_mut().reset(Instant::now() + MAX_PACED_WAIT);
                this.waiting = true;
            }
            if wait.as_mut().poll(cx).is_ready() {
                // Lowering the mark (next poll) makes the kernel report what is waiting.
                this.overdue = true;
                this.waiting = false;
                cx.waker().wake_by_ref();
            }
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PacedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const MIB: usize = 1024 * 1024;

    /// A connected pair: the client's end, and the server's end read through [`PacedIo`].
    async fn paced_pair() -> (TcpStream, PacedIo<TcpStream>, Arc<BodyPacing>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let pacing = Arc::new(BodyPacing::default());
        (client, PacedIo::new(server, pacing.clone()), pacing)
    }

    /// Reads once into a buffer larger than anything sent; `None` if nothing came within `wait`.
    async fn read_once(server: &mut PacedIo<TcpStream>, wait: Duration) -> Option<usize> {
        let mut buf = vec![0u8; 16 * MIB];
        tokio::time::timeout(wait, server.read(&mut buf))
            .await
            .ok()
            .map(|read| read.expect("read"))
    }

    /// A read that finds nothing: the reader now waits for the kernel to report the socket
    /// readable (bytes already waiting are read whatever the mark).
    async fn wait_for_more(server: &mut PacedIo<TcpStream>) {
        assert_eq!(read_once(server, Duration::from_millis(50)).await, None);
    }

    #[tokio::test]
    async fn a_body_s_reader_is_woken_once_a_megabyte_is_waiting() {
        let (mut client, mut server, pacing) = paced_pair().await;
        let _body = pacing.expect_body(64 * MIB as u64);
        wait_for_more(&mut server).await;
        client.write_all(&[7; 100 * 1024]).await.expect("write");
        assert_eq!(
            read_once(&mut server, Duration::from_millis(300)).await,
            None,
            "100 KiB of a 64 MiB body does not wake the reader"
        );
        client.write_all(&vec![7; MIB]).await.expect("write");
        let got = read_once(&mut server, Duration::from_secs(10))
            .await
            .expect("a megabyte waiting wakes the reader");
        assert!(
            got >= MIB,
            "the reader takes everything waiting in one read: {got} bytes"
        );
    }

    #[tokio::test]
    async fn the_end_of_a_body_is_read_without_waiting_for_more() {
        let (mut client, mut server, pacing) = paced_pair().await;
        let length = 3 * MIB + 12_345;
        let _body = pacing.expect_body(length as u64);
        let sending = tokio::spawn(async move {
            for piece in vec![9u8; length].chunks(64 * 1024) {
                client.write_all(piece).await.expect("write");
            }
            // The client now waits for an answer: nothing more comes.
            client
        });
        let mut got = 0;
        while got < length {
            got += read_once(&mut server, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("the reader hangs after {got} of {length} bytes"));
        }
        assert_eq!(got, length);
        drop(sending.await.expect("client"));
    }

    #[tokio::test]
    async fn bytes_after_a_dropped_body_are_read_at_once() {
        let (mut client, mut server, pacing) = paced_pair().await;
        let body = pacing.expect_body(64 * MIB as u64);
        wait_for_more(&mut server).await;
        client.write_all(&[1; 100 * 1024]).await.expect("write");
        assert_eq!(
            read_once(&mut server, Duration::from_millis(300)).await,
            None,
            "paced while the body is read"
        );
        // The route gave up on the body (an error answer): the client sends nothing more.
        drop(body);
        assert_eq!(
            read_once(&mut server, Duration::from_secs(10)).await,
            Some(100 * 1024),
            "what is waiting is read once the body is dropped"
        );
    }

    #[tokio::test]
    async fn a_body_that_slows_down_is_still_read_as_it_comes() {
        let (mut client, mut server, pacing) = paced_pair().await;
        let _body = pacing.expect_body(64 * MIB as u64);
        wait_for_more(&mut server).await;
        client.write_all(&[3; 100 * 1024]).await.expect("write");
        // Far less than the mark, and nothing more for now: read once the paced wait ends, so
        // the connection does not look idle while its client is slow.
        assert_eq!(
            read_once(&mut server, Duration::from_secs(10)).await,
            Some(100 * 1024)
        );
        // Then paced again.
        wait_for_more(&mut server).await;
        client.write_all(&[3; 1024]).await.expect("write");
        assert_eq!(
            read_once(&mut server, Duration::from_millis(100)).await,
            None,
            "paced again after the slow read"
        );
    }

    #[test]
    fn the_mark_is_raised_only_while_a_megabyte_of_the_body_is_surely_to_come() {
        let pacing = Arc::new(BodyPacing::default());
        assert_eq!(pacing.wanted_mark(), 1, "no body");
        pacing.read.store(1000, Ordering::Relaxed);
        let body = pacing.expect_body(READ_AHEAD_BOUND + PACED_READ);
        assert_eq!(pacing.wanted_mark(), PACED_READ);
        pacing.read.fetch_add(1, Ordering::Relaxed);
        assert_eq!(
            pacing.wanted_mark(),
            1,
            "less than the mark may be left once hyper's read-ahead is allowed for"
        );
        drop(body);
        pacing.read.store(0, Ordering::Relaxed);
        assert_eq!(pacing.wanted_mark(), 1, "the body's reader is gone");
        let small = pacing.expect_body(READ_AHEAD_BOUND);
        assert_eq!(pacing.wanted_mark(), 1, "a small body is not paced");
        drop(small);
        // A client's absurd Content-Length: paced (a wait still ends after MAX_PACED_WAIT),
        // never an overflow.
        pacing.read.store(u64::MAX - 10, Ordering::Relaxed);
        let absurd = pacing.expect_body(u64::MAX);
        assert_eq!(pacing.wanted_mark(), 1, "nothing surely left past u64::MAX");
        drop(absurd);
        pacing.read.store(5, Ordering::Relaxed);
        let absurd = pacing.expect_body(u64::MAX);
        assert_eq!(pacing.wanted_mark(), PACED_READ);
        drop(absurd);
    }

    #[tokio::test]
    async fn without_a_body_every_byte_wakes_the_reader() {
        let (mut client, mut server, _pacing) = paced_pair().await;
        client
            .write_all(b"GET /v2/ HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(
            read_once(&mut server, Duration::from_secs(10)).await,
            Some(21)
        );
    }
}
