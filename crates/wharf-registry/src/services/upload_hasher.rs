//! The running SHA-256 of an upload session. A chunked upload on shared storage (S3) may send
//! each request to another replica: the state of the hash is stored with the session after
//! every chunk, and the next replica continues from it instead of the commit reading every byte
//! back. The state is `sha2`'s own (`SerializableState`: the hasher's words, the length and the
//! incomplete block), so it is the same SHA-NI code everywhere.

use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use sha2::{Digest as _, Sha256};

use crate::names::Digest;

#[derive(Clone, Debug)]
pub(crate) struct UploadHasher {
    hasher: Sha256,
    /// Replicas share the session: its state is saved after every chunk.
    shared: bool,
}

impl UploadHasher {
    pub fn new(shared: bool) -> Self {
        UploadHasher {
            hasher: Sha256::new(),
            shared,
        }
    }

    /// Picks up a state [`Self::saved`] wrote; `None` for bytes it did not write.
    pub fn resume(saved: &[u8]) -> Option<Self> {
        let state = SerializedState::<Sha256>::try_from(saved).ok()?;
        let hasher = Sha256::deserialize(&state).ok()?;
        Some(UploadHasher {
            hasher,
            shared: true,
        })
    }

    /// The state to store with the session, for the replica that gets the next request.
    pub fn saved(&self) -> Option<Vec<u8>> {
        self.shared.then(|| self.hasher.serialize().to_vec())
    }

    /// The `sha2` hasher and whether replicas share the session, for a storage that hashes
    /// where it writes the bytes (`Storage::upload_append_hashed`); [`Self::from_parts`] is
    /// the way back.
    pub fn into_parts(self) -> (Sha256, bool) {
        (self.hasher, self.shared)
    }

    pub fn from_parts(hasher: Sha256, shared: bool) -> Self {
        UploadHasher { hasher, shared }
    }

    pub fn finish(self) -> Digest {
        Digest::from_hasher(self.hasher)
    }
}

impl sha2::digest::Update for UploadHasher {
    fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(&mut self.hasher, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::digest::Update as _;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn a_resumed_hash_is_sha256_of_the_whole_for_any_split() {
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 70_000] {
            let data = pattern(len);
            let expected = Digest::of(&data);
            for split in [0, 1, 3, 63, 64, 65, len / 2, len] {
                let split = split.min(len);
                let mut first = UploadHasher::new(true);
                first.update(&data[..split]);
                let saved = first.saved().expect("a shared session saves its state");
                let mut resumed = UploadHasher::resume(&saved).expect("its own bytes");
                for piece in data[split..].chunks(17) {
                    resumed.update(piece);
                }
                assert_eq!(resumed.finish(), expected, "len {len}, split {split}");
            }
        }
    }

    #[test]
    fn only_shared_sessions_save_and_foreign_bytes_are_refused() {
        assert_eq!(UploadHasher::new(false).saved(), None);
        assert!(UploadHasher::resume(b"short").is_none());
        let mut h = UploadHasher::new(true);
        h.update(b"abc");
        let mut bytes = h.saved().unwrap();
        bytes.pop();
        assert!(UploadHasher::resume(&bytes).is_none());
    }
}
