//! Single-flight blob fetches: the first request for a blob starts one download from the
//! upstream; every request for the same blob while it runs (the first included) reads the bytes
//! as they arrive, so no one waits for the whole blob before its first byte.
//!
//! Readers end as soon as every byte is in and the digest checked ([`Flight::verified`]), not
//! once the blob is durably stored: a client that reuses its connection for its next request
//! does not wait for the storage's fsync. The flight stays joinable until it is stored.
//!
//! A flight remembers the repository that started it: a request through another repository
//! must first learn from its own upstream that it may have the blob (see `Proxies::blob`).
//!
//! Memory: where the storage can read an upload while it is written (the filesystem, see
//! [`Flight::backed_by`]), the flight keeps only the bytes not yet readable from the download's
//! upload file and the last [`WINDOW_BYTES`] for readers close behind. A reader further behind
//! (one that joined late, or a slow client) reads the bytes already written from that file,
//! waits for the writer's progress when it catches up with it, and goes on from memory when it
//! reaches the window again: every reader gets every byte from the first, as they arrive,
//! however late it joins, and holds no memory of the flight's. Keeping up to 64 MiB of every
//! download in memory instead put every byte of a cold pull in freshly faulted pages (the
//! bench's 50 MiB image: 20,000-21,800 page faults per cold pull then, 9,000-9,900 now;
//! bench/README.md, "Late joiners read the download file").
//!
//! Where the storage cannot (S3: the parts of a multipart upload in flight are not readable),
//! bytes every reader has passed are dropped once more than [`RETAIN_BYTES`] are held, so a
//! large layer is not held whole; a request that arrives after that cannot start from the first
//! byte: it waits for the end of the fetch and reads the blob from storage.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::watch;

use crate::names::Digest;
use crate::storage::{ByteStream, Storage, StorageError};

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

/// Without a readable download file: up to this much of a blob is kept for readers that may
/// still join from the first byte.
pub(crate) const RETAIN_BYTES: usize = 64 << 20;

/// With a readable download file: the bytes kept in memory, beyond those not yet readable
/// there, for readers close behind (and for whole small blobs).
pub(crate) const WINDOW_BYTES: usize = 2 << 20;

/// Where the bytes of a download can be read back while it runs.
#[derive(Clone)]
pub(crate) struct FileBacking {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) digest: Digest,
    /// The upload session being written.
    pub(crate) session: String,
}

impl FileBacking {
    /// `len` bytes from `offset`, all reported readable: from the session, or from the blob
    /// once the session was committed.
    async fn read(&self, offset: u64, len: u64) -> Result<ByteStream, StorageError> {
        match self
            .storage
            .upload_read_range(&self.session, offset, len)
            .await
        {
            Err(StorageError::UploadUnknown(_)) => {
                // Committed (or removed after a failure: then there is no blob either).
                self.storage.blob_read(&self.digest, offset, len).await
            }
            other => other,
        }
    }
}

#[derive(Default)]
struct FlightState {
    /// Set once the upstream answered: `Some(length)` when it sent one.
    started: Option<Option<u64>>,
    /// The chunks held, each with the offset of its first byte (the earlier ones were dropped).
    chunks: VecDeque<(u64, Bytes)>,
    /// The offset of the first byte not received yet.
    received: u64,
    held_bytes: usize,
    /// Where readers behind the chunks held read, once the download file exists.
    file: Option<FileBacking>,
    /// How much of `file` is readable.
    readable: u64,
    /// The next offset of every reader, by reader id.
    readers: HashMap<u64, u64>,
    next_reader: u64,
    /// Every byte is in and has the expected digest: readers end here.
    verified: bool,
    /// The storage stopped writing the download (see [`Flight::unstored`]).
    unstored: bool,
    outcome: Option<Result<(), FlightError>>,
}

impl FlightState {
    /// The offset of the first byte held in memory.
    fn first_held(&self) -> u64 {
        self.chunks.front().map_or(self.received, |(at, _)| *at)
    }

    /// Drops chunks from the front: with a file, those readable there beyond the window;
    /// without (or past the end of a file no longer written), those every reader has passed,
    /// once more than [`RETAIN_BYTES`] are held.
    fn trim(&mut self) {
        if self.file.is_some() {
            while self.held_bytes > WINDOW_BYTES {
                match self.chunks.front() {
                    Some((at, chunk)) if at + chunk.len() as u64 <= self.readable => {
                        self.held_bytes -= chunk.len();
                        self.chunks.pop_front();
                    }
                    _ => break,
                }
            }
            if !self.unstored {
                return;
            }
        }
        if self.held_bytes <= RETAIN_BYTES {
            return;
        }
        let passed = self
            .readers
            .values()
            .copied()
            .min()
            .unwrap_or(self.received);
        while let Some((at, chunk)) = self.chunks.front() {
            if at + chunk.len() as u64 > passed {
                break;
            }
            self.held_bytes -= chunk.len();
            self.chunks.pop_front();
        }
    }

    /// The bytes held from `offset` on, up to the end of the chunk holding it.
    fn held_from(&self, offset: u64) -> Option<Bytes> {
        if offset < self.first_held() || offset >= self.received {
            return None;
        }
        let index = self.chunks.partition_point(|(at, _)| *at <= offset) - 1;
        let (at, chunk) = &self.chunks[index];
        Some(chunk.slice((offset - at) as usize..))
    }

    /// What a reader at `offset` does next.
    fn next_step(&self, offset: u64) -> Step {
        // Also a reader still behind, reading the file: what it got so far is no blob. Once
        // every byte is in and checked, a failure to store them fails no reader: the rest of
        // what it needs is in memory, or its read of the file fails by itself.
        if let Some(Err(e)) = &self.outcome
            && !self.verified
        {
            return Step::Fail(e.message().to_string());
        }
        if let Some(chunk) = self.held_from(offset) {
            return Step::Send(chunk);
        }
        if offset < self.first_held() {
            return match &self.file {
                Some(file) if offset < self.readable => {
                    Step::ReadFile(file.clone(), self.readable.min(self.first_held()) - offset)
                }
                // Past the end of a file no longer written: dropped once every reader had
                // passed them, and never readable again.
                Some(_) if self.unstored => Step::Fail(
                    "the storage failed, and the bytes of a running fetch were dropped".into(),
                ),
                // Dropped before the file existed (every reader then had passed them): the
                // writer reports them readable soon.
                Some(_) => Step::Wait,
                // Without a file only chunks every reader has passed are dropped.
                None => Step::Fail("the bytes of a running fetch were dropped".into()),
            };
        }
        if self.verified || matches!(self.outcome, Some(Ok(()))) {
            return Step::End;
        }
        Step::Wait
    }
}

/// What a reader does next.
enum Step {
    Send(Bytes),
    /// Read this many bytes from the file: they are no longer held.
    ReadFile(FileBacking, u64),
    End,
    Fail(String),
    /// Wait for the next change of the flight.
    Wait,
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
            let at = s.received;
            s.received += chunk.len() as u64;
            s.held_bytes += chunk.len();
            s.chunks.push_back((at, chunk));
            s.trim();
        });
    }

    /// The download is being written to `file`: from now on the flight holds only what is
    /// not readable there yet and the window, and `progress` (the readable length, from the
    /// storage's writer) moves that line. Follows `progress` until the writer drops it.
    pub(crate) fn backed_by(self: &Arc<Self>, file: FileBacking, progress: watch::Receiver<u64>) {
        self.update(|s| s.file = Some(file));
        let flight = self.clone();
        let mut progress = progress;
        tokio::spawn(async move {
            while progress.changed().await.is_ok() {
                let readable = *progress.borrow_and_update();
                flight.update(|s| {
                    s.readable = readable;
                    s.trim();
                });
            }
        });
    }

    /// The download file is no longer written (the storage failed): what is readable there
    /// stays so, and from its end on the flight keeps what some reader has not passed, as
    /// where storage cannot be read while written.
    pub(crate) fn unstored(&self) {
        self.update(|s| {
            s.unstored = true;
            s.trim();
        });
    }

    /// Waits until no reader is left (each has ended, failed or gone away).
    pub(crate) async fn readers_gone(&self) {
        let mut rx = self.changed.subscribe();
        while !self.state().readers.is_empty() {
            if rx.changed().await.is_err() {
                return;
            }
        }
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

    /// Every byte of the blob from the start, as it arrives (from the download file for what
    /// is no longer held); `None` when the first bytes were already dropped and there is no
    /// file to read them from (then wait for [`Flight::ended`] and read the blob from storage).
    /// Ends with an error (the client's connection is then cut, so it never takes a short or
    /// wrong blob for a whole one) when the fetch fails; ends normally once all bytes are
    /// verified.
    pub(crate) fn reader(self: Arc<Self>) -> Option<ByteStream> {
        let id = {
            let mut s = self.state();
            // Bytes dropped that no file holds: without one, or past the end of one the storage
            // stopped writing (see `unstored`).
            let gap = s.file.is_none() || (s.unstored && s.first_held() > s.readable);
            if s.first_held() > 0 && gap {
                return None;
            }
            let id = s.next_reader;
            s.next_reader += 1;
            s.readers.insert(id, 0);
            id
        };
        let rx = self.changed.subscribe();
        let reader = Reader {
            flight: self,
            id,
            rx,
            offset: 0,
            from_file: None,
            done: false,
        };
        Some(Box::pin(futures_util::stream::unfold(
            reader,
            |mut reader| async move {
                let item = reader.next().await?;
                Some((item, reader))
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
    rx: watch::Receiver<()>,
    /// The offset of the next byte to send.
    offset: u64,
    /// Bytes being read from the download file (no longer held).
    from_file: Option<ByteStream>,
    done: bool,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<Bytes, io::Error>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(file) = &mut self.from_file {
                match file.next().await {
                    Some(Ok(chunk)) => return Some(Ok(self.sent(chunk))),
                    Some(Err(e)) => return self.fail(e.to_string()),
                    None => self.from_file = None,
                }
                continue;
            }
            let step = self.flight.state().next_step(self.offset);
            match step {
                Step::Send(chunk) => return Some(Ok(self.sent(chunk))),
                Step::ReadFile(file, len) => match file.read(self.offset, len).await {
                    Ok(stream) => self.from_file = Some(stream),
                    Err(e) => {
                        // Removed after a failed fetch: its outcome says why.
                        let failed = self.flight.state().next_step(self.offset);
                        return match failed {
                            Step::Fail(message) => self.fail(message),
                            _ => self.fail(format!("reading the download so far: {e}")),
                        };
                    }
                },
                Step::End => {
                    self.done = true;
                    return None;
                }
                Step::Fail(message) => return self.fail(message),
                Step::Wait => {
                    if self.rx.changed().await.is_err() {
                        return self.fail("the upstream fetch stopped".into());
                    }
                }
            }
        }
    }

    /// Moves past `chunk`, which is sent now.
    fn sent(&mut self, chunk: Bytes) -> Bytes {
        self.offset += chunk.len() as u64;
        let mut s = self.flight.state();
        s.readers.insert(self.id, self.offset);
        chunk
    }

    fn fail(&mut self, message: String) -> Option<Result<Bytes, io::Error>> {
        self.done = true;
        Some(Err(io::Error::other(message)))
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Through `update`: `readers_gone` waits for this.
        self.flight.update(|s| {
            s.readers.remove(&self.id);
            s.trim();
        });
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
        // The error comes at once: the bytes of a failed fetch are no use to anyone.
        let items: Vec<_> = reader.collect().await;
        assert_eq!(items.len(), 1);
        assert!(items[0].is_err());
    }

    /// A flight writing its download the way `FetchTask` does: to an upload session of a
    /// filesystem storage, reporting progress. Returns the flight, the sender of the download's
    /// chunks to the writer, and the writer.
    async fn flight_writing_to_a_file(
        storage: Arc<crate::storage::fs::FsStorage>,
        digest: &Digest,
    ) -> (
        Arc<Flight>,
        tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
        tokio::task::JoinHandle<Result<u64, StorageError>>,
    ) {
        let flights = Flights::default();
        let (flight, _) = flights.join_or_create(digest, "r");
        flight.started(None);
        let session = "00112233445566778899aabbccddeeff".to_string();
        storage
            .upload_create(&session, Bytes::from_static(b"{}"))
            .await
            .expect("session");
        let (progress, readable) = watch::channel(0);
        let file = FileBacking {
            storage: storage.clone(),
            digest: digest.clone(),
            session: session.clone(),
        };
        flight.backed_by(file, readable);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, io::Error>>(4);
        let body: ByteStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let writer = tokio::spawn(async move {
            storage
                .upload_append_reporting(&session, 0, body, progress)
                .await
        });
        (flight, tx, writer)
    }

    /// Waits until `readable` bytes of the flight's file are readable.
    async fn wait_readable(flight: &Flight, readable: u64) {
        let mut rx = flight.changed.subscribe();
        while flight.state().readable < readable {
            tokio::time::timeout(Duration::from_secs(30), rx.changed())
                .await
                .expect("the writer reports progress")
                .expect("flight");
        }
    }

    /// After the storage failed mid-download, a reader behind still reads the part written
    /// from the file and the rest from memory; once every reader has passed more than
    /// [`RETAIN_BYTES`] beyond the file's end, those bytes go, and a reader joining then is
    /// refused (it waits for the end and reads storage) instead of waiting forever for a
    /// writer that will never report them.
    #[tokio::test]
    async fn after_the_storage_failed_a_late_joiner_is_refused_not_left_waiting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(crate::storage::fs::FsStorage::open(dir.path()).expect("open"));
        // More than `RETAIN_BYTES` past the part written.
        let data: Vec<u8> = (0..70 << 20).map(|i: usize| (i % 251) as u8).collect();
        let digest = Digest::of(&data);
        let (flight, to_writer, writer) = flight_writing_to_a_file(storage, &digest).await;
        let mut behind = flight.clone().reader().expect("from the start");
        let written = 3 << 20;
        for chunk in data[..written].chunks(256 << 10) {
            let chunk = Bytes::copy_from_slice(chunk);
            flight.push(chunk.clone());
            to_writer.send(Ok(chunk)).await.expect("writer");
        }
        wait_readable(&flight, written as u64).await;
        // The writer stops: the storage failed.
        drop(to_writer);
        writer.await.expect("join").expect("written");
        flight.unstored();
        let mut fast = flight.clone().reader().expect("from the file, then memory");
        let mut fast_got = Vec::new();
        let mut behind_got = Vec::new();
        for chunk in data[written..].chunks(256 << 10) {
            flight.push(Bytes::copy_from_slice(chunk));
            while let Some(Ok(c)) = futures_util::FutureExt::now_or_never(fast.next()).flatten() {
                fast_got.extend_from_slice(&c);
            }
        }
        // `behind` has read nothing: everything from the file's end on is still held.
        assert!(flight.state().held_bytes >= data.len() - written);
        assert!(flight.clone().reader().is_some(), "nothing dropped yet");
        while behind_got.len() < data.len() {
            let c = tokio::time::timeout(Duration::from_secs(30), behind.next())
                .await
                .expect("bytes")
                .expect("more")
                .expect("no error");
            behind_got.extend_from_slice(&c);
        }
        while fast_got.len() < data.len() {
            let c = fast.next().await.expect("more").expect("no error");
            fast_got.extend_from_slice(&c);
        }
        assert!(behind_got == data && fast_got == data);
        // Both passed everything: all but `RETAIN_BYTES` beyond the file's end went.
        flight.push(Bytes::from_static(b"+"));
        assert!(flight.state().first_held() > written as u64);
        assert!(
            flight.clone().reader().is_none(),
            "a late joiner would wait forever for the dropped bytes"
        );
    }

    /// Once written, only the window stays in memory, even with a reader that has read
    /// nothing; that reader and one joining now get every byte from the first, in order,
    /// before the download goes on (from the file, then from memory).
    #[tokio::test]
    async fn written_bytes_leave_memory_and_readers_behind_read_them_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(crate::storage::fs::FsStorage::open(dir.path()).expect("open"));
        let data: Vec<u8> = (0..12 << 20).map(|i: usize| (i % 253) as u8).collect();
        let digest = Digest::of(&data);
        let (flight, to_writer, writer) = flight_writing_to_a_file(storage, &digest).await;
        let mut early = flight.clone().reader().expect("from the start");
        // Not a multiple of any block size: every byte received is readable from the file
        // before the download goes on, not only whole blocks.
        let before_stall = (8 << 20) + 12_345;
        for chunk in data[..before_stall].chunks(300_000) {
            let chunk = Bytes::copy_from_slice(chunk);
            flight.push(chunk.clone());
            to_writer.send(Ok(chunk)).await.expect("writer");
        }
        wait_readable(&flight, before_stall as u64).await;
        assert!(
            flight.state().held_bytes <= WINDOW_BYTES,
            "{} bytes held",
            flight.state().held_bytes
        );
        let mut late = flight
            .clone()
            .reader()
            .expect("a late reader from the file");
        for reader in [&mut early, &mut late] {
            let mut got = Vec::new();
            while got.len() < before_stall {
                let chunk = tokio::time::timeout(Duration::from_secs(30), reader.next())
                    .await
                    .expect("the written bytes without waiting for the download")
                    .expect("more")
                    .expect("ok");
                got.extend_from_slice(&chunk);
            }
            assert!(got[..] == data[..before_stall], "the first bytes in order");
        }
        for chunk in data[before_stall..].chunks(300_000) {
            let chunk = Bytes::copy_from_slice(chunk);
            flight.push(chunk.clone());
            to_writer.send(Ok(chunk)).await.expect("writer");
        }
        flight.verified();
        drop(to_writer);
        for reader in [early, late] {
            let rest: Vec<Bytes> = reader.map(|c| c.expect("ok")).collect().await;
            assert!(
                rest.concat()[..] == data[before_stall..],
                "the rest in order"
            );
        }
        assert_eq!(
            writer.await.expect("join").expect("written"),
            data.len() as u64
        );
    }
}
