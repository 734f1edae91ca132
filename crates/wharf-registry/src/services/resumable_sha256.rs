//! SHA-256 whose state can be written down and picked up again by another process: a chunked
//! upload on shared storage (S3) may send each request to another replica, and each replica
//! continues the hash from the state the previous one stored with the session, instead of the
//! commit reading every byte back to hash it. `sha2`'s own hasher has no such state; this one is
//! its compression function (the same SHA-NI code) with the standard padding around it.

use sha2::digest::generic_array::GenericArray;
use sha2::{Digest as _, Sha256};

use crate::names::Digest;

const INITIAL_STATE: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
const BLOCK: usize = 64;
/// Blocks handed to the compression function at once (copied into place, 16 KiB).
const BATCH: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumableSha256 {
    state: [u32; 8],
    /// Bytes hashed so far, including `tail`.
    len: u64,
    /// The bytes of the last, incomplete block (fewer than 64).
    tail: Vec<u8>,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        ResumableSha256 {
            state: INITIAL_STATE,
            len: 0,
            tail: Vec::with_capacity(BLOCK),
        }
    }
}

fn compress(state: &mut [u32; 8], blocks: &[u8]) {
    let mut batch = Vec::with_capacity(BATCH);
    for chunk in blocks.chunks(BATCH * BLOCK) {
        batch.clear();
        batch.extend(
            chunk
                .chunks_exact(BLOCK)
                .map(|b| *GenericArray::from_slice(b)),
        );
        sha2::compress256(state, &batch);
    }
}

impl ResumableSha256 {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if !self.tail.is_empty() {
            let take = (BLOCK - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < BLOCK {
                return;
            }
            compress(&mut self.state, &self.tail);
            self.tail.clear();
        }
        let whole = data.len() - data.len() % BLOCK;
        compress(&mut self.state, &data[..whole]);
        self.tail.extend_from_slice(&data[whole..]);
    }

    pub fn finish(&self) -> Digest {
        let mut state = self.state;
        let mut last = self.tail.clone();
        last.push(0x80);
        while last.len() % BLOCK != BLOCK - 8 {
            last.push(0);
        }
        last.extend_from_slice(&(self.len.wrapping_mul(8)).to_be_bytes());
        compress(&mut state, &last);
        let hex: String = state.iter().map(|w| format!("{w:08x}")).collect();
        Digest::parse(&format!("sha256:{hex}")).expect("64 hex characters")
    }

    /// The state as bytes: 8 big-endian words, the length, the incomplete block.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 8 + self.tail.len());
        for word in self.state {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.tail);
        out
    }

    /// The inverse of [`Self::to_bytes`]; `None` for anything it did not write.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < 40 {
            return None;
        }
        let mut state = [0u32; 8];
        for (i, word) in state.iter_mut().enumerate() {
            *word = u32::from_be_bytes(bytes[i * 4..i * 4 + 4].try_into().ok()?);
        }
        let len = u64::from_be_bytes(bytes[32..40].try_into().ok()?);
        let tail = bytes[40..].to_vec();
        (tail.len() as u64 == len % BLOCK as u64).then_some(ResumableSha256 { state, len, tail })
    }
}

impl sha2::digest::Update for ResumableSha256 {
    fn update(&mut self, data: &[u8]) {
        ResumableSha256::update(self, data);
    }
}

/// The running hash of an upload session: `sha2`'s own where a session stays in one process,
/// the resumable one where replicas share sessions (and save it after every chunk).
#[derive(Clone, Debug)]
pub(crate) enum UploadHasher {
    Local(Sha256),
    Shared(ResumableSha256),
}

impl UploadHasher {
    pub fn new(shared: bool) -> Self {
        if shared {
            UploadHasher::Shared(ResumableSha256::new())
        } else {
            UploadHasher::Local(Sha256::new())
        }
    }

    /// Picks up a state [`Self::saved`] wrote.
    pub fn resume(saved: &[u8]) -> Option<Self> {
        ResumableSha256::from_bytes(saved).map(UploadHasher::Shared)
    }

    /// The state to store with the session, for the replica that gets the next request.
    pub fn saved(&self) -> Option<Vec<u8>> {
        match self {
            UploadHasher::Local(_) => None,
            UploadHasher::Shared(h) => Some(h.to_bytes()),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            UploadHasher::Local(h) => Digest::from_hasher(h),
            UploadHasher::Shared(h) => h.finish(),
        }
    }
}

impl sha2::digest::Update for UploadHasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            UploadHasher::Local(h) => sha2::Digest::update(h, data),
            UploadHasher::Shared(h) => h.update(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn matches_sha256_for_any_split_and_after_a_round_trip() {
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 70_000] {
            let data = pattern(len);
            let expected = Digest::of(&data);
            for split in [0, 1, 3, 63, 64, 65, len / 2, len] {
                let split = split.min(len);
                let mut first = ResumableSha256::new();
                first.update(&data[..split]);
                let mut resumed =
                    ResumableSha256::from_bytes(&first.to_bytes()).expect("its own bytes");
                for piece in data[split..].chunks(17) {
                    resumed.update(piece);
                }
                assert_eq!(resumed.finish(), expected, "len {len}, split {split}");
                assert_eq!(resumed.len, len as u64);
            }
        }
    }

    #[test]
    fn rejects_what_it_did_not_write() {
        assert_eq!(ResumableSha256::from_bytes(b"short"), None);
        let mut h = ResumableSha256::new();
        h.update(b"abc");
        let mut bytes = h.to_bytes();
        bytes.pop();
        assert_eq!(ResumableSha256::from_bytes(&bytes), None);
    }
}
