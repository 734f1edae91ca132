//! Appending to an upload's file on the filesystem: each chunk is hashed, copied into a large
//! page-aligned block while it is still in the CPU's cache, and the blocks are written by a
//! second thread with `O_DIRECT`.
//!
//! Why: on a 256 MiB upload the kernel's copy of every byte into the page cache cost as much CPU
//! as sha256 itself (perf: `copy_folio_from_iter_atomic` 29 %, `digest_blocks` 30 %), and the
//! commit has to get all of it onto the disk anyway (fsync before the rename). With `O_DIRECT`
//! the disk reads the blocks straight from our memory, and the upload's data is on the disk
//! while it arrives. A filesystem that refuses `O_DIRECT`, an append that starts at an unaligned
//! offset, and the unaligned tail of an append go through the page cache instead (flushed in the
//! background as they grow, so the commit's fsync finds little left to do).
//!
//! A pull-through download is written differently ([`append_each_chunk`]): each chunk through
//! the page cache as it comes, so that requests reading the download while it runs find every
//! byte received in the file at once.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{Semaphore, watch};

/// What `O_DIRECT` needs the buffer address, file offset and length to be multiples of (the
/// device's logical block size: 512 or 4096 on the devices we meet).
pub(super) const DIRECT_ALIGN: u64 = 4096;
/// One write to the disk. `dd oflag=direct` on the reference VM: 1.5-1.6 GB/s with 4-8 MiB
/// writes, 1.0-1.4 GB/s with 1 MiB ones.
const BLOCK_SIZE: usize = 4 * 1024 * 1024;
/// Blocks per append: one being filled, one being written, one queued, so hashing does not wait
/// for the disk unless the disk is slower than hashing.
const BLOCKS: usize = 3;
/// Blocks kept for the next upload once one ends. Without them, every blocking thread that had
/// run an upload kept its blocks' memory in its own malloc arena: 60-80 MiB resident after the
/// registry bench instead of 23 (freed memory of that size stays with the arena it came from).
const SPARE_BLOCKS_MAX: usize = BLOCKS;
/// Page-cache bytes written between background flushes (see [`BackgroundFlusher`]).
const EARLY_FLUSH_BYTES: u64 = 8 * 1024 * 1024;

/// Received bytes waiting to be hashed, at most: beyond it the request body waits. With the
/// blocks, an upload holds at most 16 MiB (the two channels of 16 chunks it replaced: ~13 MiB).
const QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Room in the queue is given back in steps this large, so the body's side is woken once per
/// step and not after every chunk: per-chunk wakeups, two thread switches each, were a tenth of
/// the server's CPU on an upload (perf: `finish_task_switch`, eventfd writes, futexes).
const ROOM_STEP: usize = 1024 * 1024;

/// The queue from the request body (async) to the hashing thread, bounded in bytes.
pub(super) fn chunk_queue() -> (ChunkSender, ChunkReceiver) {
    let (chunks, receiver) = unbounded_channel();
    let room = Arc::new(Semaphore::new(QUEUE_BYTES));
    let sender = ChunkSender {
        chunks,
        room: room.clone(),
    };
    let receiver = ChunkReceiver {
        chunks: receiver,
        room,
        unreleased: 0,
        last_cost: 0,
    };
    (sender, receiver)
}

/// The room a chunk takes in the queue. Capped so that one huge chunk still fits while the
/// receiver holds back less than a step.
fn queue_cost(chunk: &Bytes) -> usize {
    chunk.len().min(QUEUE_BYTES - ROOM_STEP)
}

pub(super) struct ChunkSender {
    chunks: UnboundedSender<Bytes>,
    room: Arc<Semaphore>,
}

impl ChunkSender {
    /// Queues `chunk` once there is room; `Err` when the receiver is gone (the writer failed).
    pub(super) async fn send(&self, chunk: Bytes) -> Result<(), Bytes> {
        let Ok(cost) = u32::try_from(queue_cost(&chunk)) else {
            return Err(chunk);
        };
        match self.room.acquire_many(cost).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(chunk),
        }
        self.chunks.send(chunk).map_err(|e| e.0)
    }
}

pub(super) struct ChunkReceiver {
    chunks: UnboundedReceiver<Bytes>,
    room: Arc<Semaphore>,
    /// Room taken by chunks already processed, not yet given back.
    unreleased: usize,
    /// Room taken by the chunk returned last (processed once the next one is asked for).
    last_cost: usize,
}

impl ChunkReceiver {
    /// The next chunk, waiting for it; `None` once the sender is gone and the queue is empty.
    fn blocking_recv(&mut self) -> Option<Bytes> {
        self.unreleased += std::mem::take(&mut self.last_cost);
        if self.unreleased >= ROOM_STEP {
            self.release();
        }
        let chunk = match self.chunks.try_recv() {
            Ok(chunk) => chunk,
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                // About to sleep: the sender may have all the room.
                self.release();
                self.chunks.blocking_recv()?
            }
        };
        self.last_cost = queue_cost(&chunk);
        Some(chunk)
    }

    fn release(&mut self) {
        self.room.add_permits(std::mem::take(&mut self.unreleased));
    }
}

impl Drop for ChunkReceiver {
    /// Wakes a sender waiting for room that will never come.
    fn drop(&mut self) {
        self.room.close();
    }
}

/// Opens `path` for `O_DIRECT` writes, or `None` where the filesystem does not allow them.
pub(super) fn open_direct(path: &Path) -> Option<File> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::DIRECT | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
    .map(File::from)
}

/// Appends every chunk `chunks` delivers to `file` (whose length is `offset`), feeding it to
/// `hasher` first; `direct`, if given, is the same file opened by [`open_direct`]. Returns the
/// number of bytes written, stopping at the first write error, and the hasher. Chunks already
/// received when the sender goes away (a body cut off mid-upload) are written too: they stay in
/// the session for the client to resume after.
pub(super) fn append(
    file: File,
    direct: Option<File>,
    offset: u64,
    mut chunks: ChunkReceiver,
    mut hasher: Option<Sha256>,
) -> (io::Result<u64>, Option<Sha256>) {
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = sync_channel::<AlignedBlock>(1);
        let (free_tx, free_rx) = sync_channel::<AlignedBlock>(BLOCKS);
        let writer = std::thread::Builder::new()
            .name("upload-write".into())
            .spawn_scoped(scope, move || {
                write_blocks(Sink::new(file, direct, offset, None), full_rx, free_tx)
            });
        let writer = match writer {
            Ok(writer) => writer,
            Err(e) => return (Err(e), None),
        };
        let mut block = AlignedBlock::take();
        let mut allocated = 1;
        'receive: while let Some(chunk) = chunks.blocking_recv() {
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&chunk);
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                rest = &rest[block.fill(rest)..];
                if block.is_full() {
                    let next = match free_rx.try_recv() {
                        Ok(free) => free,
                        Err(_) if allocated < BLOCKS => {
                            allocated += 1;
                            AlignedBlock::take()
                        }
                        Err(_) => match free_rx.recv() {
                            Ok(free) => free,
                            Err(_) => break 'receive, // the writer failed
                        },
                    };
                    if full_tx.send(std::mem::replace(&mut block, next)).is_err() {
                        break 'receive;
                    }
                }
            }
        }
        // Stop the body's sender at once if the writer failed (it sees the channel closed).
        drop(chunks);
        if block.len() > 0 {
            let _ = full_tx.send(block);
        } else {
            // Kept, not freed: freeing a block this large raises glibc's mmap threshold above
            // it, and from then on hyper's 400 KiB read buffers stay in the malloc arenas
            // (29 MiB more resident after a few uploads).
            AlignedBlock::give_back(block);
        }
        drop(full_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the upload writer thread panicked")));
        free_rx.try_iter().for_each(AlignedBlock::give_back);
        (written, hasher)
    })
}

/// Appends every chunk `chunks` delivers to `file` (whose length is `offset`) as it comes,
/// through the page cache, and tells `progress` the file's length after each: for a download
/// that other requests read while it is written (the pull-through cache). Blocks would keep up
/// to 4 MiB unreadable until they fill (and those bytes held in memory for the readers), and
/// their fresh pages were most of a cold pull's page faults. Returns the bytes written.
pub(super) fn append_each_chunk(
    file: File,
    offset: u64,
    mut chunks: ChunkReceiver,
    progress: watch::Sender<u64>,
) -> io::Result<u64> {
    let mut sink = Sink::new(file, None, offset, Some(progress));
    while let Some(chunk) = chunks.blocking_recv() {
        sink.write(&chunk)?;
    }
    Ok(sink.written)
}

/// The writer thread: writes the full blocks in order and hands them back for reuse.
fn write_blocks(
    mut sink: Sink,
    full: Receiver<AlignedBlock>,
    free: SyncSender<AlignedBlock>,
) -> io::Result<u64> {
    for mut block in full {
        sink.write(block.filled())?;
        block.clear();
        // Never full (at most BLOCKS blocks exist); closed only once the filler is done.
        let _ = free.try_send(block);
    }
    Ok(sink.written)
}

/// A `BLOCK_SIZE` buffer starting at a `DIRECT_ALIGN` address, filled from its start. Its
/// memory is reserved, not zeroed: a small upload touches only the pages it fills.
struct AlignedBlock {
    memory: Vec<u8>,
    start: usize,
}

/// See [`SPARE_BLOCKS_MAX`].
static SPARE_BLOCKS: Mutex<Vec<AlignedBlock>> = Mutex::new(Vec::new());

impl AlignedBlock {
    /// A spare block, or a new one.
    fn take() -> AlignedBlock {
        let spare = SPARE_BLOCKS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        spare.unwrap_or_else(AlignedBlock::new)
    }

    /// Keeps `block` for the next upload, if fewer than [`SPARE_BLOCKS_MAX`] are kept.
    fn give_back(mut block: AlignedBlock) {
        block.clear();
        let mut spare = SPARE_BLOCKS.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < SPARE_BLOCKS_MAX {
            spare.push(block);
        }
    }

    fn new() -> AlignedBlock {
        let align = DIRECT_ALIGN as usize;
        let mut memory = Vec::with_capacity(BLOCK_SIZE + align);
        let start = (align - memory.as_ptr() as usize % align) % align;
        memory.resize(start, 0);
        AlignedBlock { memory, start }
    }

    fn len(&self) -> usize {
        self.memory.len() - self.start
    }

    /// Copies as much of `data` as fits; returns how much.
    fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(BLOCK_SIZE - self.len());
        self.memory.extend_from_slice(&data[..n]);
        n
    }

    fn is_full(&self) -> bool {
        self.len() == BLOCK_SIZE
    }

    fn filled(&self) -> &[u8] {
        &self.memory[self.start..]
    }

    fn clear(&mut self) {
        self.memory.truncate(self.start);
    }
}

/// Where the blocks go: through the `O_DIRECT` handle while it works and the offset is aligned,
/// else (and for an unaligned tail) through the page cache.
struct Sink {
    buffered: File,
    direct: Option<File>,
    offset: u64,
    written: u64,
    flusher: Option<BackgroundFlusher>,
    unflushed: u64,
    /// Told the file's length after each write.
    progress: Option<watch::Sender<u64>>,
}

impl Sink {
    fn new(
        buffered: File,
        direct: Option<File>,
        offset: u64,
        progress: Option<watch::Sender<u64>>,
    ) -> Sink {
        Sink {
            buffered,
            direct,
            offset,
            written: 0,
            flusher: None,
            unflushed: 0,
            progress,
        }
    }

    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        let aligned_len = data.len() - data.len() % DIRECT_ALIGN as usize;
        if let Some(direct) = &self.direct {
            if aligned_len > 0 && self.offset % DIRECT_ALIGN == 0 {
                match direct.write_at(&data[..aligned_len], self.offset) {
                    Ok(n) => {
                        self.advance(n);
                        data = &data[n..];
                        // A short write (a full disk, say) leaves an unaligned offset: the rest,
                        // and the error if there is one, go through the page cache.
                        if n < aligned_len {
                            self.direct = None;
                        }
                    }
                    // Alignment stricter than ours, or no O_DIRECT after all: page cache from
                    // here on (its error, if any, is the one to report).
                    Err(_) => self.direct = None,
                }
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        self.buffered.write_all_at(data, self.offset)?;
        self.advance(data.len());
        self.unflushed += data.len() as u64;
        if self.unflushed >= EARLY_FLUSH_BYTES {
            self.flusher
                .get_or_insert_with(|| BackgroundFlusher::new(&self.buffered))
                .flush_soon();
            self.unflushed = 0;
        }
        Ok(())
    }

    fn advance(&mut self, n: usize) {
        self.offset += n as u64;
        self.written += n as u64;
        if let Some(progress) = &self.progress {
            progress.send_replace(self.offset);
        }
    }
}

/// Flushes a file's data to disk on its own thread, on request, while writes go on. The commit
/// must fsync the whole upload before the rename; flushing page-cache writes as they arrive
/// overlaps that disk work with the network instead of paying all of it at the end (a 256 MiB
/// upload spent half its time in that fsync). Only a speed aid: durability still comes from the
/// fsync at commit, so a failed flush here is ignored.
struct BackgroundFlusher {
    request: Option<SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundFlusher {
    fn new(file: &File) -> BackgroundFlusher {
        let Ok(file) = file.try_clone() else {
            return BackgroundFlusher {
                request: None,
                thread: None,
            };
        };
        let (tx, rx) = sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("upload-flush".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let _ = file.sync_data();
                }
            })
            .ok();
        BackgroundFlusher {
            request: thread.as_ref().map(|_| tx),
            thread,
        }
    }

    /// Asks for a flush; dropped when one is already pending (it will cover these bytes too).
    fn flush_soon(&self) {
        if let Some(tx) = &self.request {
            let _ = tx.try_send(());
        }
    }
}

impl Drop for BackgroundFlusher {
    fn drop(&mut self) {
        self.request = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use bytes::Bytes;
    use sha2::{Digest as _, Sha256};

    use super::{BLOCK_SIZE, QUEUE_BYTES, ROOM_STEP, chunk_queue};
    use crate::storage::fs::FsStorage;
    use crate::storage::{ByteStream, Storage, StorageError};

    /// Deterministic, incompressible-looking bytes.
    fn content(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    }

    /// `data` in chunks of `chunk` bytes (the last one shorter), then `tail` if given.
    fn chunked(data: &[u8], chunk: usize, tail: Option<io::Error>) -> ByteStream {
        let mut items: Vec<Result<Bytes, io::Error>> = data
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        items.extend(tail.map(Err));
        Box::pin(futures_util::stream::iter(items))
    }

    async fn session(storage: &FsStorage) -> &'static str {
        let id = "0123456789abcdef";
        storage
            .upload_create(id, Bytes::from_static(b"{}"))
            .await
            .expect("create");
        id
    }

    fn stored(storage: &FsStorage, id: &str) -> Vec<u8> {
        std::fs::read(storage.root().join("uploads").join(id).join("data")).expect("read")
    }

    /// Several whole blocks, chunks that straddle block boundaries, an unaligned tail: the file
    /// holds exactly the bytes in order and the hash is theirs.
    #[tokio::test]
    async fn chunks_across_block_boundaries_are_stored_and_hashed_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = FsStorage::open(dir.path()).expect("open");
        let id = session(&storage).await;
        let data = content(2 * BLOCK_SIZE + 3 * 4096 + 123);
        let (appended, hasher) = storage
            .upload_append_hashed(id, 0, chunked(&data, 100_003, None), Some(Sha256::new()))
            .await
            .expect("append");
        assert_eq!(appended.size, data.len() as u64);
        assert_eq!(
            hasher.expect("hasher").finalize(),
            Sha256::digest(&data),
            "hash of what was appended"
        );
        assert!(stored(&storage, id) == data, "stored bytes differ");
    }

    /// A second append continues at the unaligned end of the first one (the page-cache path),
    /// a third at an aligned end again.
    #[tokio::test]
    async fn appends_at_unaligned_and_aligned_offsets_continue_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = FsStorage::open(dir.path()).expect("open");
        let id = session(&storage).await;
        let data = content(3 * BLOCK_SIZE);
        let cuts = [0, 5, BLOCK_SIZE, data.len()];
        for pair in cuts.windows(2) {
            let part = &data[pair[0]..pair[1]];
            let (appended, _) = storage
                .upload_append_hashed(id, pair[0] as u64, chunked(part, 65_536, None), None)
                .await
                .expect("append");
            assert_eq!(appended.size, pair[1] as u64);
        }
        assert!(stored(&storage, id) == data, "stored bytes differ");
    }

    /// A body cut off mid-block: everything received is stored (the client resumes after it),
    /// the error says the body failed, and a wrong offset is refused.
    #[tokio::test]
    async fn a_cut_body_keeps_what_arrived_and_the_upload_resumes_there() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = FsStorage::open(dir.path()).expect("open");
        let id = session(&storage).await;
        let data = content(2 * BLOCK_SIZE);
        let received = BLOCK_SIZE + 70_001;
        let cut = io::Error::new(io::ErrorKind::ConnectionReset, "client went away");
        let result = storage
            .upload_append_hashed(
                id,
                0,
                chunked(&data[..received], 30_000, Some(cut)),
                Some(Sha256::new()),
            )
            .await;
        assert!(
            matches!(result, Err(StorageError::Stream(_))),
            "{:?}",
            result.map(|(appended, _)| appended.size)
        );
        let status = storage
            .upload_info(id)
            .await
            .expect("info")
            .expect("session");
        assert_eq!(status.object.size, received as u64);
        assert!(
            matches!(
                storage
                    .upload_append(id, 0, chunked(&data, 4096, None))
                    .await,
                Err(StorageError::OffsetMismatch { .. })
            ),
            "an append must start where the upload ends"
        );
        let size = storage
            .upload_append(id, received as u64, chunked(&data[received..], 4096, None))
            .await
            .expect("resume")
            .size;
        assert_eq!(size, data.len() as u64);
        assert!(stored(&storage, id) == data, "stored bytes differ");
    }

    /// A chunk larger than the whole queue still goes through, between small ones.
    #[tokio::test]
    async fn a_chunk_larger_than_the_queue_is_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = FsStorage::open(dir.path()).expect("open");
        let id = session(&storage).await;
        let data = content(QUEUE_BYTES + BLOCK_SIZE + 10);
        let parts = vec![
            Ok(Bytes::copy_from_slice(&data[..10])),
            Ok(Bytes::copy_from_slice(&data[10..QUEUE_BYTES + BLOCK_SIZE])),
            Ok(Bytes::copy_from_slice(&data[QUEUE_BYTES + BLOCK_SIZE..])),
        ];
        let size = storage
            .upload_append(id, 0, Box::pin(futures_util::stream::iter(parts)))
            .await
            .expect("append")
            .size;
        assert_eq!(size, data.len() as u64);
        assert!(stored(&storage, id) == data, "stored bytes differ");
    }

    /// A body waiting for room in the queue is released, with its chunk refused, when the
    /// hashing thread goes away (as it does when a write fails).
    #[tokio::test]
    async fn a_sender_waiting_for_room_fails_when_the_receiver_goes() {
        let (sender, receiver) = chunk_queue();
        let full = Bytes::from(vec![0u8; QUEUE_BYTES - ROOM_STEP]);
        sender.send(full.clone()).await.expect("room for the first");
        let waiting = tokio::spawn(async move { sender.send(full).await.is_err() });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the second chunk must wait for room"
        );
        drop(receiver);
        let refused = tokio::time::timeout(std::time::Duration::from_secs(30), waiting)
            .await
            .expect("the waiting send must end")
            .expect("join");
        assert!(refused, "the send must fail");
    }
}
