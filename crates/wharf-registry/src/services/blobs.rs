//! Blobs of a repository: stat, read, delete, and cross-repository mount.

use crate::error::RegistryError;
use crate::names::{Digest, RepoName};
use crate::services::tags::RepoWalk;
use crate::services::{Registry, keys};
use crate::storage::{ByteStream, ObjectInfo, StorageError};

impl Registry {
    /// Whether `repo` may serve `digest`: pushed or mounted there, or one of its manifests.
    async fn linked(&self, repo: &RepoName, digest: &Digest) -> Result<bool, RegistryError> {
        Ok(self
            .storage
            .meta_info(&keys::layer_link(repo, digest))
            .await?
            .is_some()
            || self
                .storage
                .meta_info(&keys::revision(repo, digest))
                .await?
                .is_some())
    }

    pub async fn stat_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<ObjectInfo, RegistryError> {
        let unknown = || RegistryError::BlobUnknown {
            digest: digest.to_string(),
        };
        if !self.linked(repo, digest).await? {
            return Err(unknown());
        }
        self.storage.blob_info(digest).await?.ok_or_else(unknown)
    }

    /// Streams `len` bytes from `offset` (checked by the caller against [`Self::stat_blob`]).
    pub async fn read_blob(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream, RegistryError> {
        match self.storage.blob_read(digest, offset, len).await {
            Ok(s) => Ok(s),
            Err(StorageError::BlobUnknown(_)) => Err(RegistryError::BlobUnknown {
                digest: digest.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the blob from `repo` (the content goes at the next gc if nothing else uses it).
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<(), RegistryError> {
        if !self
            .storage
            .meta_delete(&keys::layer_link(repo, digest))
            .await?
        {
            return Err(RegistryError::BlobUnknown {
                digest: digest.to_string(),
            });
        }
        Ok(())
    }

    /// Links `digest` from `from` into `target` if `from` has it. Returns whether it did.
    pub async fn mount_blob(
        &self,
        target: &RepoName,
        digest: &Digest,
        from: &RepoName,
    ) -> Result<bool, RegistryError> {
        if self
            .storage
            .meta_info(&keys::layer_link(from, digest))
            .await?
            .is_none()
        {
            return Ok(false);
        }
        // So that a concurrent gc keeps the content we are about to link (`services::gc`).
        if self.use_blob(digest).await?.is_none() {
            return Ok(false);
        }
        self.link_blob(target, digest).await?;
        Ok(true)
    }

    /// Whether `repo` already has the blob (mount requests for a blob already present succeed).
    pub async fn has_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool, RegistryError> {
        Ok(self
            .storage
            .meta_info(&keys::layer_link(repo, digest))
            .await?
            .is_some()
            && self.storage.blob_info(digest).await?.is_some())
    }

    /// The next repository of `walk` that holds `digest` as a blob: a candidate source for a
    /// mount without `from`. Each link checked is charged to the walk's budget, like its
    /// listings, so the search ends when the budget is spent.
    pub async fn next_repo_with_blob(
        &self,
        walk: &mut RepoWalk,
        digest: &Digest,
    ) -> Result<Option<RepoName>, RegistryError> {
        while let Some(repo) = walk.next(self).await? {
            if !walk.spend() {
                return Ok(None);
            }
            if self
                .storage
                .meta_info(&keys::layer_link(&repo, digest))
                .await?
                .is_some()
            {
                return Ok(Some(repo));
            }
        }
        Ok(None)
    }
}

impl Registry {
    /// Stores blob `digest` of `repo` from `body` without a client (an offline import, e.g. of
    /// an OCI layout): streamed through an upload session and checked against `digest` as a push
    /// is, so a blob of any size takes no more memory than a push. A blob already stored is only
    /// linked, and `body` is not read.
    pub async fn import_blob_stream(
        &self,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<(), RegistryError> {
        if self.use_blob(digest).await?.is_some() {
            return self.link_blob(repo, digest).await;
        }
        self.upload_monolithic(repo, "import", digest, body).await
    }

    /// Store `data` as a blob of `repo` without an upload session (for tests that need blobs
    /// in place): its digest, computed here.
    pub async fn import_blob(
        &self,
        repo: &RepoName,
        data: bytes::Bytes,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::of(&data);
        if self.use_blob(&digest).await?.is_none() {
            self.storage.blob_put(&digest, data).await?;
        }
        self.link_blob(repo, &digest).await?;
        Ok(digest)
    }
}
