//! The running SHA-256 of an upload session. A chunked upload on shared storage (S3) may send
//! each request to another replica: the state of the hash is stored with the session after
//! every chunk, and the next replica continues from it instead of the commit reading every byte
//! back. The state is `sha2`'s own (`SerializableState`: the hasher's words, the length and the
//! incomplete block), so it is the same SHA-NI code everywhere.
//!
//! A state is saved with the [`UploadVersion`] it hashed and used only while the upload is still
//! at that version. Two replicas may append at one offset at once (a client's retry through the
//! balancer): a chunk small enough for one PUT is created conditionally and only one wins, but a
//! chunk of 8 MiB or more is a multipart upload, and S3 lets the last completion replace the
//! other's object. Each replica then saves a state of its own bytes, in either order, so the
//! saved state may describe bytes that are no longer stored. The version (from the chunks'
//! ETags) tells: a state whose version differs is ignored and the commit reads the upload back
//! once. Making the second append fail instead would need a conditional multipart completion
//! (`If-None-Match: *` on CompleteMultipartUpload), which `object_store` does not expose and not
//! every S3 server enforces; the version keeps resumes on other replicas as cheap as before (the
//! ETags come with the listing each request makes anyway).

use sha2::Sha256;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};

use crate::storage::UploadVersion;

/// The state of `hasher`, which hashed the upload at `version`, to store with the session for
/// the replica that gets the next request.
pub(crate) fn saved_state(hasher: &Sha256, version: &UploadVersion) -> Vec<u8> {
    let mut saved = version.as_bytes().to_vec();
    saved.extend_from_slice(&hasher.serialize());
    saved
}

/// Picks up a state [`saved_state`] wrote for the upload at `version`; `None` for a state of
/// another version, or bytes it did not write.
pub(crate) fn resumed(saved: &[u8], version: &UploadVersion) -> Option<Sha256> {
    let (saved_version, state) = saved.split_at_checked(UploadVersion::LEN)?;
    if saved_version != version.as_bytes() {
        return None;
    }
    let state = SerializedState::<Sha256>::try_from(state).ok()?;
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
                let version = UploadVersion::EMPTY.then(0, "etag");
                let mut resumed =
                    resumed(&saved_state(&first, &version), &version).expect("its own bytes");
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
        let version = UploadVersion::EMPTY;
        assert!(resumed(b"short", &version).is_none());
        let mut h = Sha256::new();
        h.update(b"abc");
        let mut bytes = saved_state(&h, &version);
        bytes.pop();
        assert!(resumed(&bytes, &version).is_none());
    }

    #[test]
    fn a_state_of_another_version_is_refused() {
        let mut h = Sha256::new();
        h.update(b"the bytes this replica appended");
        let mine = UploadVersion::EMPTY.then(0, "\"etag-of-mine-2\"");
        let stored = UploadVersion::EMPTY.then(0, "\"etag-of-theirs-2\"");
        let saved = saved_state(&h, &mine);
        assert!(resumed(&saved, &mine).is_some());
        assert!(resumed(&saved, &stored).is_none());
    }
}
