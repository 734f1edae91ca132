//! Opening the storage backend the configuration names: a sibling of `storage/` so the trait's
//! module never imports its implementations (the layers test forbids that cycle).

use std::sync::Arc;

use crate::config::{Config, StorageLocation};
use crate::storage::fs::FsStorage;
use crate::storage::s3::{S3Settings, S3Storage};
use crate::storage::{Storage, StorageError};

/// The configured backend. S3 credentials the config lacks come from the three standard
/// variables `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` (and no other).
pub fn open_storage(config: &Config) -> Result<Arc<dyn Storage>, StorageError> {
    Ok(
        match config.storage_location().map_err(StorageError::Config)? {
            StorageLocation::File(root) => Arc::new(FsStorage::open(root)?),
            StorageLocation::S3 { bucket, prefix } => {
                let settings = S3Settings::from_config(bucket, prefix, &config.storage, |k| {
                    std::env::var(k).ok()
                });
                Arc::new(S3Storage::open(&settings)?)
            }
        },
    )
}
