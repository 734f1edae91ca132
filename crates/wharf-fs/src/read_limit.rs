//! A reader that stops at a limit its owner moves as it goes.
//!
//! The tar reader (the `tar` crate) reads a GNU long name, a long link name or a PAX extension
//! whole into memory, for whatever size its header claims: a few KiB of zstd or gzip decode
//! into gigabytes of such a header. The crate has no bound of its own, so the unpackers of
//! hostile tars (image layers, runner caches) wrap the stream in a [`LimitedReader`] and, after
//! each entry, allow reading up to that entry's end plus [`TAR_HEADER_ALLOWANCE`]: what the tar
//! reader may read before handing over the next entry is then its headers, not an unbounded
//! extension.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// What a tar may hold between two entries' data: headers, a long name, a long link name and
/// a PAX extension. Go's archive/tar (Docker, containerd, gitlab-runner) refuses any one of the
/// extensions over 1 MiB.
pub const TAR_HEADER_ALLOWANCE: u64 = 4 << 20;

/// Why a tar whose long name, long link name or PAX extension claims more than
/// [`TAR_HEADER_ALLOWANCE`] is refused.
pub const OVERSIZED_TAR_HEADER: &str = "a tar header (a long name, long link name or PAX \
    extension) larger than 4 MiB: refused, as Docker and containerd refuse any over 1 MiB";

/// The position of a [`LimitedReader`] and its limit, shared with its owner.
#[derive(Clone)]
pub struct ReadLimit {
    position: Rc<Cell<u64>>,
    limit: Rc<Cell<u64>>,
}

impl ReadLimit {
    /// Bytes read so far.
    pub fn position(&self) -> u64 {
        self.position.get()
    }

    /// Reading past `limit` (from the start of the stream) fails.
    pub fn set(&self, limit: u64) {
        self.limit.set(limit);
    }

    /// The limit for what follows a tar entry whose data starts at `data_start` and is `size`
    /// bytes long: the end of its data (padded to 512-byte blocks), then the next headers.
    pub fn after_tar_entry(&self, data_start: u64, size: u64) {
        let end = data_start.saturating_add(size).saturating_add(511) & !511;
        self.set(end.saturating_add(TAR_HEADER_ALLOWANCE));
    }
}

/// `inner`, failing with an error of `kind` saying `refusal` past the limit.
pub struct LimitedReader<R> {
    inner: R,
    limit: ReadLimit,
    kind: io::ErrorKind,
    refusal: &'static str,
}

impl<R> LimitedReader<R> {
    /// Reads up to `limit` are allowed until the owner moves it through the returned handle
    /// (or for good, when it drops the handle).
    pub fn new(
        inner: R,
        limit: u64,
        kind: io::ErrorKind,
        refusal: &'static str,
    ) -> (Self, ReadLimit) {
        let handle = ReadLimit {
            position: Rc::new(Cell::new(0)),
            limit: Rc::new(Cell::new(limit)),
        };
        let reader = LimitedReader {
            inner,
            limit: handle.clone(),
            kind,
            refusal,
        };
        (reader, handle)
    }

    /// A tar stream whose reader may first read [`TAR_HEADER_ALLOWANCE`] bytes; the owner
    /// calls [`ReadLimit::after_tar_entry`] for each entry. Past it: [`OVERSIZED_TAR_HEADER`].
    pub fn tar_headers(inner: R) -> (Self, ReadLimit) {
        LimitedReader::new(
            inner,
            TAR_HEADER_ALLOWANCE,
            io::ErrorKind::InvalidData,
            OVERSIZED_TAR_HEADER,
        )
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let position = self.limit.position.get();
        let room = self.limit.limit.get().saturating_sub(position);
        if room == 0 && !buf.is_empty() {
            return Err(io::Error::new(self.kind, self.refusal));
        }
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.limit.position.set(position + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_limit_and_go_on_when_it_moves() {
        let data = vec![7u8; 10_000];
        let (mut reader, limit) =
            LimitedReader::new(&data[..], 1000, io::ErrorKind::InvalidData, "too far");
        let mut first = vec![0; 4096];
        assert_eq!(reader.read(&mut first).unwrap(), 1000);
        let err = reader.read(&mut first).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(err.to_string(), "too far");
        limit.after_tar_entry(1000, 1);
        assert_eq!(limit.position(), 1000);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest.len(), 9000, "1536 + the allowance is past the end");
    }
}
