//! The running SHA-256 of an upload session. A chunked upload on shared storage (S3) may send
//! each request to another replica: the state of the hash is stored with the session after
//! every chunk, and the next replica continues from it instead of the commit reading every byte
//! back. The state is `sha2`'s own (`SerializableState`: the hasher's words, the length and the
//! incomplete block), so it is the same SHA-NI code everywhere.

use sha2::Sha256;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

/// The state of `hasher`, to store with the session for the replica that gets the next request.
pub(crate) fn saved_state(hasher: &Sha256) -> Vec<u8> {
    hasher.serialize().to_vec()
}

/// Picks up a state [`saved_state`] wrote; `None` for bytes it did not write.
pub(crate) fn resumed(saved: &[u8]) -> Option<Sha256> {
    let state = SerializedState::<Sha256>::try_from(saved).ok()?;
    Sha256::deserialize(&state).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Digest;
    use sha2::Digest as _;

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
                let mut first = Sha256::new();
                first.update(&data[..split]);
                let mut resumed = resumed(&saved_state(&first)).expect("its own bytes");
                for piece in data[split..].chunks(17) {
                    resumed.update(piece);
                }
                assert_eq!(
                    Digest::from_hasher(resumed),
                    expected,
                    "len {len}, split {split}"
                );
            }
        }
    }

    #[test]
    fn foreign_bytes_are_refused() {
        assert!(resumed(b"short").is_none());
        let mut h = Sha256::new();
        h.update(b"abc");
        let mut bytes = saved_state(&h);
        bytes.pop();
        assert!(resumed(&bytes).is_none());
    }
}
