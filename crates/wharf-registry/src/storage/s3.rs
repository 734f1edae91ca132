//! S3 storage (AWS, Ceph RGW, MinIO, Garage...) through `object_store`.
//!
//! ```text
//! <prefix>/blobs/sha256/<hex>              content, appears whole (PUT, copy or multipart complete)
//! <prefix>/touch/sha256/<hex>              empty; its time is the blob's last use (S3 objects
//!                                          cannot be touched), gc takes the later of the two
//! <prefix>/aside/sha256/<hex>              a blob gc is deleting, copied out of sight until it
//!                                          decides (see `services::gc`)
//! <prefix>/_gc/...                         gc's deletion flags (metadata documents)
//! <prefix>/uploads/<id>/info               an upload session's info document
//! <prefix>/uploads/<id>/chunks/<offset>    its chunks, one object each, named by start offset
//! <prefix>/uploads/<id>/hash-<offset>      the hash state of its first <offset> bytes, so the
//!                                          replica that gets the next request goes on hashing
//! <prefix>/uploads/<id>/alive              empty, rewritten while a request streams into the
//!                                          upload: its time keeps the upload from looking idle
//! <prefix>/uploads/<id>/commit-<random>    a commit's copy of a single chunk, checked before it
//!                                          is copied on to the blob (removed with the upload)
//! <prefix>/uploads/<id>/attempts/<offset>/a-<random>
//!                                          empty, left by every multipart write of the chunk at
//!                                          <offset> before it starts (removed with the upload)
//! <prefix>/multipart/<random>              a multipart upload in progress (key and id),
//!                                          rewritten with every part, so upkeep can abort one
//!                                          whose writer died
//! <prefix>/repositories/...                metadata documents (keys map to object names)
//! <prefix>/_probe/conditional-put-<random> a start-up check's object (`check_server`), deleted
//!                                          at once; upkeep removes one a crash left
//! ```
//!
//! Everything lives in the bucket, so any number of replicas can serve one registry: any request
//! of an upload may land on any of them. Chunks are their own objects because S3 refuses
//! multipart parts under 5 MiB (and `object_store` has no UploadPartCopy to stitch them). An
//! upload sent whole in its closing request skips the chunk and goes straight to the blob,
//! completed only once its digest matches. A chunk is written with `If-None-Match: *` when
//! small (most are), so two replicas appending at the same offset cannot both win. A chunk of a
//! part or more is a multipart upload, whose completion S3 does not make conditional: the last
//! one completed replaces the other. The upload's version ([`UploadVersion`], a chain over the
//! chunks' ETags) then tells the services that a hash state saved for the replaced bytes is not
//! of the upload (see `services::upload_hasher`).
//!
//! The commit puts only verified bytes under `blobs/sha256/<hex>`, ever: readers, and other
//! commits of the same digest (which find the blob there and only touch it), trust whatever
//! is there. It checks the listed chunks against the version the caller verified; a late
//! completion can still replace a chunk after that listing, so:
//! - a single chunk (monolithic and POST+PUT uploads) is copied server-side to a staging object
//!   of the upload (`commit-<random>`, its own per commit), checked there (the copy keeps the
//!   listed chunk's ETag, else it is read back and hashed; always hashed when the caller gave
//!   no version), and only then copied on to the blob's name: CopyObject is atomic for readers.
//!   The ETag vouches for the chunk only if no other multipart write went to its offset (the
//!   `attempts` marks, listed after the copy): a multipart ETag is an MD5 of the parts' MD5s,
//!   which a hostile client can make collide for other bytes (a test does, with a published
//!   MD5 collision) and send as a late request replacing the verified chunk.
//!   One copy more than a direct one; the staging object goes in `upload_delete`'s single
//!   DeleteObjects request with the chunks, and on a failed check at once.
//! - several chunks, or one past CopyObject's 5 GiB limit, are read back in order and written
//!   to the blob's name (a single PUT when small, else a multipart upload with parts of
//!   `PART_SIZE`, 8 MiB), hashed on the way: the PUT, or the multipart completion, is sent
//!   only when the digest matches, else the multipart upload is aborted and nothing appears.
//!
//! A mismatch found by either is the upload changing after its verification (the caller
//! verified these bytes, at its version or by reading them back): `UploadChanged`, which the
//! services answer with "send it again", keeping the session. Nothing is ever deleted from the
//! blob's name on a failed commit, so a concurrent correct commit's blob stays; and a commit
//! that fails while another commit of the same digest stored it (another session's, or this
//! session's retried on another replica, whose end removed this one's staging object) is done:
//! the blob it was for is there, with verified bytes.
//!
//! The client is configured explicitly, never from the environment: a machine's unrelated
//! `AWS_*` variables (`AWS_CA_BUNDLE`...) must not change how the registry talks to S3.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientConfigKey, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig,
};
use sha2::{Digest as _, Sha256};

use super::{
    Appended, ByteStream, ObjectInfo, Storage, StorageError, UploadStatus, UploadVersion,
    valid_meta_key,
};
use crate::config::{Secret, StorageConfig, without_userinfo};
use crate::names::Digest;

/// How long the start-up checks (`check_server`, `check_reachable`) wait for the server: for
/// one answer, and for all their retries together.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Size of a multipart part (S3's minimum is 5 MiB for all but the last). Up to
/// [`PARTS_IN_FLIGHT`] + 1 of these are buffered per upload request.
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts sent concurrently while the next one is received.
const PARTS_IN_FLIGHT: usize = 2;
/// CopyObject's limit; bigger single-chunk uploads are re-written part by part.
const COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// How to reach the bucket; credentials are never printed.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// No leading or trailing `/`; may be empty.
    pub prefix: String,
    /// An S3-compatible server (`http://127.0.0.1:7480`): path-style requests, plain http allowed.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// Blob GET/HEAD answer 307 to a presigned URL valid this long; `None` streams them.
    pub redirect: Option<Duration>,
    /// The most chunks one upload may have (`[storage] max_upload_chunks`).
    pub max_upload_chunks: usize,
}

impl S3Settings {
    /// From the `[storage]` table, with credentials the table lacks taken from `env` (the
    /// standard `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and nothing
    /// else; pass `|k| std::env::var(k).ok()`).
    pub fn from_config(
        bucket: String,
        prefix: String,
        config: &StorageConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> S3Settings {
        let secret = |own: &Option<Secret>, var: &str| {
            own.clone()
                .or_else(|| env(var).filter(|v| !v.is_empty()).map(Secret::new))
        };
        S3Settings {
            bucket,
            prefix,
            endpoint: config.endpoint.clone(),
            region: config.region.clone(),
            access_key_id: secret(&config.access_key_id, "AWS_ACCESS_KEY_ID"),
            secret_access_key: secret(&config.secret_access_key, "AWS_SECRET_ACCESS_KEY"),
            session_token: secret(&config.session_token, "AWS_SESSION_TOKEN"),
            redirect: config.redirect.then_some(config.redirect_expiry),
            max_upload_chunks: config.max_upload_chunks,
        }
    }

    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[derive(Debug, Clone)]
pub struct S3Storage {
    store: Arc<AmazonS3>,
    /// The same store with few retries and [`CHECK_TIMEOUT`], for the start-up checks: a wrong
    /// endpoint is said in about a second, a silent server in 10 s, instead of after
    /// object_store's 10 retries of up to 30 s each.
    checking: Arc<AmazonS3>,
    /// `""` or `"<prefix>/"`.
    prefix: String,
    /// `s3://bucket[/prefix]`, for messages.
    location: String,
    /// The endpoint, or `AWS S3 (region R)`, for messages.
    server: String,
    redirect: Option<Duration>,
    max_upload_chunks: usize,
}

/// A multipart upload recorded in the bucket until it is completed or aborted.
#[derive(serde::Serialize, serde::Deserialize)]
struct MultipartRecord {
    key: String,
    id: String,
}

/// A bucket that does not exist, with the fix (and without the server's XML).
fn missing_bucket(storage: &str, bucket: &str) -> StorageError {
    StorageError::Config(format!(
        "{storage}: the bucket {bucket} does not exist: create it, or name an existing one in \
         --storage or [storage] url"
    ))
}

/// Credentials the server refused for `op` on `object`, with where they come from; the
/// server's answer adds nothing to the fix.
fn refused_credentials(storage: &str, bucket: &str, op: &str, object: &str) -> StorageError {
    StorageError::Config(format!(
        "{storage}: the server refused these credentials ({op} {object}): check the access key \
         id and secret (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or access_key_id and \
         secret_access_key in [storage]) and that the key may read and write the bucket {bucket}"
    ))
}

/// A request that never reached the server (connection refused, unknown host, TLS handshake),
/// or that a server accepting connections never answered: object_store's message ends at
/// "error sending request", so the deepest cause says which.
fn unreachable_server(storage: &str, e: &object_store::Error) -> Option<StorageError> {
    let mut deepest: &(dyn std::error::Error + 'static) = e;
    let (mut connecting, mut timed_out) = (false, false);
    loop {
        if let Some(http) = deepest.downcast_ref::<reqwest::Error>() {
            connecting |= http.is_connect();
            timed_out |= http.is_timeout();
        }
        match deepest.source() {
            Some(cause) => deepest = cause,
            None => break,
        }
    }
    let failure = if connecting {
        "cannot connect to the server"
    } else if timed_out {
        "the server accepted the connection but did not answer in time"
    } else {
        return None;
    };
    Some(StorageError::Config(format!(
        "{storage}: {failure} ({deepest}): check the endpoint (--s3-endpoint, or endpoint in \
         [storage]), that the server is running, and that this machine can reach it"
    )))
}

fn os_error(op: &'static str, key: &str, e: object_store::Error) -> StorageError {
    let source = if over_quota(&e) {
        // object_store calls RGW's `403 QuotaExceeded` a lack of privileges: the fix is room
        // in the bucket, not other keys.
        io::Error::new(
            io::ErrorKind::QuotaExceeded,
            format!("the bucket is over its quota, or the server out of space: {e}"),
        )
    } else {
        io::Error::other(e)
    };
    StorageError::Io {
        op,
        path: key.to_string(),
        source,
    }
}

/// The server refused a write for want of room: a bucket quota (Ceph RGW, MinIO) or a full
/// server (MinIO's `507`). Known only from the S3 error code in the answer's text.
fn over_quota(e: &object_store::Error) -> bool {
    let text = e.to_string();
    [
        "<Code>QuotaExceeded</Code>",
        "<Code>XMinioStorageFull</Code>",
        "<Code>XMinioAdminBucketQuotaExceeded</Code>",
        "507 Insufficient Storage",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

fn info_of(meta: &ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        size: meta.size,
        modified: SystemTime::from(meta.last_modified),
    }
}

fn later(a: Option<ObjectInfo>, touched: Option<SystemTime>) -> Option<ObjectInfo> {
    a.map(|mut info| {
        if let Some(t) = touched {
            info.modified = info.modified.max(t);
        }
        info
    })
}

/// An object's ETag without the quotes some servers put around it in one answer and not another.
fn bare_e_tag(e_tag: &str) -> &str {
    e_tag.trim_matches('"')
}

/// The version of an upload with these chunks (in order); `None` if one has no ETag.
fn version_of(chunks: &[(u64, ObjectMeta)]) -> Option<UploadVersion> {
    chunks
        .iter()
        .try_fold(UploadVersion::EMPTY, |version, (offset, meta)| {
            Some(version.then(*offset, bare_e_tag(meta.e_tag.as_deref()?)))
        })
}

/// What [`S3Storage::write_stream`] wrote.
struct Written {
    bytes: u64,
    /// The request body failed after `bytes` (which are stored).
    stream_error: Option<io::Error>,
    /// The ETag of the object written, if one was (and the server said).
    e_tag: Option<String>,
}

/// Upload ids are made by the services from random hex; anything else names no object.
fn valid_upload_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

impl S3Storage {
    pub fn open(settings: &S3Settings) -> Result<S3Storage, StorageError> {
        let location = settings.location();
        let fail =
            |message: String| StorageError::Config(format!("S3 storage {location}: {message}"));
        // new(), never from_env(): see the module docs.
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(settings.region.as_deref().unwrap_or("us-east-1"));
        if let Some(endpoint) = &settings.endpoint {
            let shown = without_userinfo(endpoint);
            let url = url::Url::parse(endpoint).map_err(|e| {
                fail(format!(
                    "endpoint `{shown}` is not a URL ({e}): give e.g. http://127.0.0.1:7480"
                ))
            })?;
            // The endpoint is in messages and logs (and object_store's errors carry request
            // URLs): credentials in it would show there.
            if !url.username().is_empty() || url.password().is_some() {
                return Err(fail(format!(
                    "endpoint `{shown}` carries credentials (`user:password@`): remove them from \
                     it and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or access_key_id \
                     and secret_access_key in [storage]"
                )));
            }
            builder = builder
                .with_endpoint(endpoint.trim_end_matches('/'))
                .with_virtual_hosted_style_request(false)
                .with_allow_http(url.scheme() == "http");
        }
        match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_access_key_id(id.expose())
                    .with_secret_access_key(secret.expose());
                if let Some(token) = &settings.session_token {
                    builder = builder.with_token(token.expose());
                }
            }
            (None, None) => {
                return Err(fail(
                    "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or access_key_id and secret_access_key in [storage]".to_string(),
                ));
            }
            _ => {
                return Err(fail(
                    "only half of the credentials: the access key id and the secret access key go together".to_string(),
                ));
            }
        }
        // The builder's errors name settings, not their values (checked by a test).
        // A server that accepts connections and never answers (a half-open port, a stopped
        // process) holds the start-up check for this long, not object_store's 30 s per try.
        let checking = builder
            .clone()
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{}s", CHECK_TIMEOUT.as_secs()),
            )
            .with_retry(RetryConfig {
                max_retries: 4,
                retry_timeout: CHECK_TIMEOUT,
                ..RetryConfig::default()
            })
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let store = builder.build().map_err(|e| fail(e.to_string()))?;
        Ok(S3Storage {
            store: Arc::new(store),
            checking: Arc::new(checking),
            prefix: if settings.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", settings.prefix)
            },
            location,
            server: match &settings.endpoint {
                Some(endpoint) => endpoint.clone(),
                None => format!(
                    "AWS S3 (region {})",
                    settings.region.as_deref().unwrap_or("us-east-1")
                ),
            },
            redirect: settings.redirect,
            max_upload_chunks: settings.max_upload_chunks,
        })
    }

    /// A failed `op` on `path`: a missing bucket, refused credentials and an unreachable or
    /// silent server, the usual set-up mistakes, are said with their fix (and without the
    /// server's XML); others as they come.
    fn request_error(&self, op: &'static str, path: &Path, e: object_store::Error) -> StorageError {
        // object_store reports some failures (a LIST's) as generic: the S3 error code in the
        // server's answer still says which.
        let text = e.to_string();
        let code = |name: &str| text.contains(&format!("<Code>{name}</Code>"));
        let missing = matches!(e, object_store::Error::NotFound { .. }) || code("NoSuchBucket");
        let refused = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || [
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
        ]
        .into_iter()
        .any(code);
        if missing {
            missing_bucket(&self.described(), self.bucket())
        } else if over_quota(&e) {
            os_error(op, &self.name(path), e)
        } else if refused {
            refused_credentials(&self.described(), self.bucket(), op, &self.name(path))
        } else if let Some(unreachable) = unreachable_server(&self.described(), &e) {
            unreachable
        } else {
            os_error(op, &self.name(path), e)
        }
    }

    /// `S3 storage s3://bucket[/prefix] on <endpoint>`, the start of messages about set-up.
    fn described(&self) -> String {
        format!("S3 storage {} on {}", self.location, self.server)
    }

    /// `s3://bucket[/prefix]`.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, rel: &str) -> Result<Path, StorageError> {
        Path::parse(format!("{}{rel}", self.prefix))
            .map_err(|_| StorageError::InvalidKey(rel.to_string()))
    }

    /// The bucket's name, for messages.
    fn bucket(&self) -> &str {
        self.location
            .trim_start_matches("s3://")
            .split('/')
            .next()
            .unwrap_or("")
    }

    /// `s3://bucket/<key>` of a path, for messages.
    fn name(&self, path: &Path) -> String {
        format!("s3://{}/{path}", self.bucket())
    }

    fn blob_path(&self, digest: &Digest) -> Result<Path, StorageError> {
        self.path(&format!("blobs/sha256/{}", digest.hex()))
    }

    fn touch_path(&self, digest: &Digest) -> Result<Path, StorageError> {
        self.path(&format!("touch/sha256/{}", digest.hex()))
    }

    fn aside_path(&self, digest: &Digest) -> Result<Path, StorageError> {
        self.path(&format!("aside/sha256/{}", digest.hex()))
    }

    /// Copies the object `from` (of `size` bytes) to `to`: server-side when S3 allows it
    /// (CopyObject stops at 5 GiB), else read back and written part by part.
    async fn copy_object(&self, from: &Path, to: &Path, size: u64) -> Result<(), StorageError> {
        if size <= COPY_LIMIT {
            return self
                .store
                .copy(from, to)
                .await
                .map_err(|e| os_error("COPY", &self.name(to), e));
        }
        let got = self
            .store
            .get(from)
            .await
            .map_err(|e| os_error("GET", &self.name(from), e))?;
        let stream: ByteStream = Box::pin(got.into_stream().map_err(io::Error::other));
        let written = self
            .write_stream(to, stream, false, None, None, None)
            .await?;
        match written.stream_error {
            None => Ok(()),
            Some(e) => {
                let _ = self.delete_quietly(to).await;
                Err(StorageError::Io {
                    op: "copy",
                    path: self.name(from),
                    source: e,
                })
            }
        }
    }

    fn upload_path(&self, id: &str, rest: &str) -> Result<Path, StorageError> {
        if !valid_upload_id(id) {
            return Err(StorageError::UploadUnknown(id.to_string()));
        }
        self.path(&format!("uploads/{id}/{rest}"))
    }

    fn hash_path(&self, id: &str, offset: u64) -> Result<Path, StorageError> {
        // Not a number: `upload_state` takes only numbers for chunks.
        self.upload_path(id, &format!("hash-{offset:020}"))
    }

    /// The folder where every multipart write of the chunk at `offset` leaves a mark before it
    /// starts (see `multipart_rivals`), or with `mark`, that write's mark. Marks are named so
    /// that no listing of the upload takes one for a chunk (those are numbers).
    fn attempts_path(
        &self,
        id: &str,
        offset: u64,
        mark: Option<u128>,
    ) -> Result<Path, StorageError> {
        let dir = format!("attempts/{offset:020}");
        match mark {
            Some(mark) => self.upload_path(id, &format!("{dir}/a-{mark:032x}")),
            None => self.upload_path(id, &dir),
        }
    }

    fn chunk_path(&self, id: &str, offset: u64) -> Result<Path, StorageError> {
        // Zero-padded so names sort like offsets.
        self.upload_path(id, &format!("chunks/{offset:020}"))
    }

    async fn head(&self, path: &Path) -> Result<Option<ObjectMeta>, StorageError> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(os_error("HEAD", &self.name(path), e)),
        }
    }

    /// The whole object at `path` with its metadata, or `None` when there is none.
    async fn get(&self, path: &Path) -> Result<Option<(ObjectMeta, Bytes)>, StorageError> {
        let got = match self.store.get(path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(os_error("GET", &self.name(path), e)),
        };
        let meta = got.meta.clone();
        let bytes = got
            .bytes()
            .await
            .map_err(|e| os_error("GET", &self.name(path), e))?;
        Ok(Some((meta, bytes)))
    }

    async fn list_all(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, StorageError> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            // A LIST answered 404 is a missing bucket (an empty prefix lists nothing).
            .map_err(|e| self.request_error("LIST", prefix, e))
    }

    async fn delete_quietly(&self, path: &Path) -> Result<(), StorageError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(os_error("DELETE", &self.name(path), e)),
        }
    }

    /// An upload's info document (if the session exists) and its chunks as (offset, object),
    /// in order. Chunks must follow each other without gaps.
    ///
    /// Lists the chunks alone, not the whole session folder: it also holds a hash state per
    /// append (`hash_path`), which doubled every append's listing. Then reads the info: a
    /// deletion removes the info first (`upload_delete`), so a listing that missed chunks being
    /// deleted is followed by a read that finds the session gone.
    async fn upload_state(
        &self,
        id: &str,
    ) -> Result<Option<(ObjectMeta, Vec<(u64, ObjectMeta)>)>, StorageError> {
        Ok(self
            .upload_state_reading(id, false)
            .await?
            .map(|(info, _, chunks)| (info, chunks)))
    }

    /// [`Self::upload_state`], with the info document's content too when `read_doc` (a GET
    /// instead of a HEAD: one request either way).
    async fn upload_state_reading(
        &self,
        id: &str,
        read_doc: bool,
    ) -> Result<Option<(ObjectMeta, Option<Bytes>, Vec<(u64, ObjectMeta)>)>, StorageError> {
        let mut chunks = BTreeMap::new();
        for meta in self.list_all(&self.upload_path(id, "chunks")?).await? {
            if let Some(offset) = meta.location.filename().and_then(|n| n.parse::<u64>().ok()) {
                chunks.insert(offset, meta);
            }
        }
        let info_path = self.upload_path(id, "info")?;
        let (info, doc) = if read_doc {
            match self.get(&info_path).await? {
                Some((meta, doc)) => (meta, Some(doc)),
                None => return Ok(None),
            }
        } else {
            match self.head(&info_path).await? {
                Some(meta) => (meta, None),
                None => return Ok(None),
            }
        };
        let mut expected = 0;
        let mut ordered = Vec::with_capacity(chunks.len());
        for (offset, meta) in chunks {
            if offset != expected {
                return Err(StorageError::Io {
                    op: "read upload",
                    path: self.name(&meta.location),
                    source: io::Error::other(format!(
                        "the upload's chunks leave a gap at byte {expected}"
                    )),
                });
            }
            expected += meta.size;
            ordered.push((offset, meta));
        }
        Ok(Some((info, doc, ordered)))
    }

    /// Streams `data` into the object at `path`: one PUT if it fits in a part (conditional on
    /// the object not existing when `create_only`), else a multipart upload. What arrived
    /// before a stream error is still written. Returns the bytes written, that error and the
    /// object's ETag. With `hasher`, every byte is hashed on the way.
    async fn write_stream(
        &self,
        path: &Path,
        mut data: ByteStream,
        create_only: bool,
        mut hasher: Option<&mut Sha256>,
        verify: Option<&Digest>,
        multipart_marker: Option<&Path>,
    ) -> Result<Written, StorageError> {
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0usize;
        let mut written = 0u64;
        let mut multipart: Option<MultipartWriter> = None;
        let mut stream_error = None;
        loop {
            match data.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => {}
                Some(Ok(chunk)) => {
                    if let Some(h) = hasher.as_deref_mut() {
                        h.update(&chunk);
                    }
                    pending_len += chunk.len();
                    written += chunk.len() as u64;
                    pending.push(chunk);
                    if pending_len >= PART_SIZE {
                        let writer = match multipart.as_mut() {
                            Some(w) => w,
                            None => {
                                if let Some(marker) = multipart_marker {
                                    self.put_bytes(marker, Bytes::new()).await?;
                                }
                                multipart.insert(MultipartWriter::start(self, path).await?)
                            }
                        };
                        let part = PutPayload::from_iter(std::mem::take(&mut pending));
                        pending_len = 0;
                        if let Err(e) = writer.put_part(part).await {
                            if let Some(w) = multipart.take() {
                                w.abort().await;
                            }
                            return Err(e);
                        }
                    }
                }
                Some(Err(e)) => {
                    stream_error = Some(e);
                    break;
                }
                None => break,
            }
        }
        if let Some(expected) = verify {
            // Checked before anything becomes visible: on a mismatch or a cut-off stream the
            // multipart upload is aborted and no object appears.
            let actual = hasher
                .as_deref()
                .map(|h| Digest::from_hasher(h.clone()))
                .unwrap_or_else(|| Digest::of(b""));
            let problem = match stream_error.take() {
                Some(e) => Some(StorageError::Stream(e)),
                None if actual != *expected => Some(StorageError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                }),
                None => None,
            };
            if let Some(problem) = problem {
                if let Some(writer) = multipart {
                    writer.abort().await;
                }
                return Err(problem);
            }
        }
        let e_tag = match multipart {
            Some(mut writer) => {
                if pending_len > 0 {
                    let part = PutPayload::from_iter(pending);
                    if let Err(e) = writer.put_part(part).await {
                        writer.abort().await;
                        return Err(e);
                    }
                }
                writer.complete().await?
            }
            // An empty blob is an object too (an empty upload chunk is not).
            None if pending_len > 0 || verify.is_some() => {
                let mode = if create_only {
                    PutMode::Create
                } else {
                    PutMode::Overwrite
                };
                let opts = PutOptions {
                    mode,
                    ..PutOptions::default()
                };
                match self
                    .store
                    .put_opts(path, PutPayload::from_iter(pending), opts)
                    .await
                {
                    Ok(done) => done.e_tag,
                    Err(object_store::Error::AlreadyExists { .. }) => {
                        return Err(StorageError::Io {
                            op: "PUT",
                            path: self.name(path),
                            source: io::Error::new(
                                io::ErrorKind::AlreadyExists,
                                "written meanwhile by another request (another replica?)",
                            ),
                        });
                    }
                    Err(e) => return Err(os_error("PUT", &self.name(path), e)),
                }
            }
            None => None,
        };
        Ok(Written {
            bytes: written,
            stream_error,
            e_tag,
        })
    }

    /// Whether the object at `copy`, just copied from `chunk` (as listed after its digest was
    /// verified at that version), holds the verified bytes: its ETag is the chunk's (Ceph RGW
    /// keeps the ETag, a multipart one included, through a copy), else read back and hashed (a
    /// server that gives copies ETags of their own costs one read, never a wrong blob). Without
    /// a verified version (`chunk` None) the listed ETag proves nothing: always hashed.
    async fn copied_verified(
        &self,
        copy: &Path,
        chunk: Option<&ObjectMeta>,
        digest: &Digest,
    ) -> Result<bool, StorageError> {
        let e_tag = |meta: &ObjectMeta| meta.e_tag.as_deref().map(bare_e_tag).map(str::to_string);
        if let Some(chunk) = chunk {
            let copied = self.head(copy).await?;
            if copied
                .as_ref()
                .and_then(e_tag)
                .is_some_and(|t| Some(t) == e_tag(chunk))
            {
                return Ok(true);
            }
        }
        let got = match self.store.get(copy).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(os_error("GET", &self.name(copy), e)),
        };
        let mut stream = got.into_stream();
        let mut hasher = Sha256::new();
        while let Some(bytes) = stream.next().await {
            hasher.update(bytes.map_err(|e| os_error("GET", &self.name(copy), e))?);
        }
        Ok(Digest::from_hasher(hasher) == *digest)
    }

    /// Whether the chunk at `offset`, listed as `chunk`, may have been replaced by another
    /// request's multipart write (only those complete unconditionally): a multipart write of
    /// that offset left its mark besides the one that stored `chunk`, if that was one (a chunk
    /// of a part or more). Whatever the chunk's size: a small chunk's plain MD5 ETag is no
    /// safer to compare with a server's multipart ETag than two multipart ones.
    async fn multipart_rivals(
        &self,
        id: &str,
        offset: u64,
        chunk: &ObjectMeta,
    ) -> Result<bool, StorageError> {
        let own_marks = usize::from(chunk.size >= PART_SIZE as u64);
        let marks = self
            .list_all(&self.attempts_path(id, offset, None)?)
            .await?;
        Ok(marks.len() > own_marks)
    }

    /// Stores the upload's `chunks`, verified by the caller (at `verified`, or by reading them
    /// back), under `target`, putting nothing there unless its digest is `digest` (module docs).
    async fn store_verified_blob(
        &self,
        id: &str,
        digest: &Digest,
        target: &Path,
        chunks: Vec<(u64, ObjectMeta)>,
        verified: Option<UploadVersion>,
    ) -> Result<(), StorageError> {
        let changed = || StorageError::UploadChanged { id: id.to_string() };
        if let [(offset, only)] = chunks.as_slice()
            && only.size <= COPY_LIMIT
        {
            // One chunk (monolithic and POST+PUT uploads): server-side copies, each atomic for
            // readers. The chunk may have been replaced between the listing and the copy, so it
            // is copied to a staging object of this commit and checked there; only verified
            // bytes are copied on to the blob's name.
            let staging =
                self.upload_path(id, &format!("commit-{:032x}", rand::random::<u128>()))?;
            self.store
                .copy(&only.location, &staging)
                .await
                .map_err(|e| os_error("COPY", &self.name(&staging), e))?;
            // The listed ETag vouches for the copy only if no other multipart write ever went
            // to this offset: a replacement whose parts collide in MD5 would carry the same
            // ETag. Asked after the copy, so a replacement the copy could have read shows.
            let listed = if verified.is_some() && !self.multipart_rivals(id, *offset, only).await? {
                Some(only)
            } else {
                None
            };
            let stored = match self.copied_verified(&staging, listed, digest).await {
                Ok(true) => self
                    .store
                    .copy(&staging, target)
                    .await
                    .map_err(|e| os_error("COPY", &self.name(target), e)),
                Ok(false) => Err(changed()),
                Err(e) => Err(e),
            };
            if stored.is_err() {
                // The session stays for the client's next attempt; on success `upload_delete`
                // removes the staging object with the rest of the upload.
                let _ = self.delete_quietly(&staging).await;
            }
            return stored;
        }
        // Several chunks (or one past CopyObject's limit) are read back into the blob, hashed
        // on the way and checked before the object appears: the PUT, or the multipart
        // completion, is sent only for the verified digest, else nothing is.
        let mut hasher = Sha256::new();
        let stream = self.chunks_stream(chunks);
        match self
            .write_stream(target, stream, false, Some(&mut hasher), Some(digest), None)
            .await
        {
            Ok(_) => Ok(()),
            // Other bytes than the caller verified: a late request replaced a chunk since.
            Err(StorageError::DigestMismatch { .. }) => Err(changed()),
            Err(StorageError::Stream(e)) => Err(StorageError::Io {
                op: "read upload",
                path: self.name(&self.upload_path(id, "chunks")?),
                source: e,
            }),
            Err(e) => Err(e),
        }
    }

    /// An upload's chunks, read back in order as one stream. Small chunks are fetched up to
    /// `CHUNK_READ_AHEAD` at once, whole: a client that sent 2,000 chunks of a few bytes made
    /// the commit 2,000 GETs one after another (62 s on RGW here). A large chunk is fetched
    /// only when its turn comes, so no response sits unread while the ones before it are copied.
    fn chunks_stream(&self, chunks: Vec<(u64, ObjectMeta)>) -> ByteStream {
        let this = self.clone();
        let stream = futures_util::stream::iter(chunks)
            .map(move |(_, meta)| {
                let store = this.store.clone();
                async move {
                    if meta.size > SMALL_CHUNK {
                        let lazy = futures_util::stream::once(async move {
                            store.get(&meta.location).await.map(|got| got.into_stream())
                        });
                        return Ok::<_, io::Error>(
                            lazy.try_flatten().map_err(io::Error::other).boxed(),
                        );
                    }
                    let got = store.get(&meta.location).await.map_err(io::Error::other)?;
                    let bytes = got.bytes().await.map_err(io::Error::other)?;
                    Ok(futures_util::stream::once(async move { Ok(bytes) }).boxed())
                }
            })
            .buffered(CHUNK_READ_AHEAD)
            .try_flatten();
        Box::pin(stream)
    }

    async fn put_bytes(&self, path: &Path, data: Bytes) -> Result<(), StorageError> {
        self.store
            .put(path, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| os_error("PUT", &self.name(path), e))
    }
}

/// How many small chunks of an upload are fetched at once when it is read back.
const CHUNK_READ_AHEAD: usize = 16;
/// Chunks up to this size are read back whole, ahead of their turn (at most
/// `CHUNK_READ_AHEAD` of them: 16 MiB).
const SMALL_CHUNK: u64 = 1 << 20;

/// One multipart upload: parts sent while the next is received, recorded in the bucket so an
/// upload whose writer died is aborted by upkeep ([`Storage::clean_temporary`]). The record is
/// rewritten with every part, so its time says when the writer was last alive: a long upload
/// (a slow client, a big layer) is never taken for a dead one by upkeep or gc on any replica.
struct MultipartWriter {
    storage: S3Storage,
    path: Path,
    id: String,
    record: Path,
    record_doc: Bytes,
    parts: Vec<PartId>,
    in_flight: FuturesOrdered<
        std::pin::Pin<Box<dyn Future<Output = object_store::Result<PartId>> + Send>>,
    >,
    next_index: usize,
}

impl MultipartWriter {
    async fn start(storage: &S3Storage, path: &Path) -> Result<MultipartWriter, StorageError> {
        let id = storage
            .store
            .create_multipart(path)
            .await
            .map_err(|e| os_error("create multipart upload", &storage.name(path), e))?;
        let record = storage.path(&format!("multipart/{:032x}", rand::random::<u128>()))?;
        let doc = Bytes::from(
            serde_json::to_vec(&MultipartRecord {
                key: path.to_string(),
                id: id.clone(),
            })
            .unwrap_or_default(),
        );
        if let Err(e) = storage.put_bytes(&record, doc.clone()).await {
            let _ = storage.store.abort_multipart(path, &id).await;
            return Err(e);
        }
        Ok(MultipartWriter {
            storage: storage.clone(),
            path: path.clone(),
            id,
            record,
            record_doc: doc,
            parts: Vec::new(),
            in_flight: FuturesOrdered::new(),
            next_index: 0,
        })
    }

    async fn put_part(&mut self, data: PutPayload) -> Result<(), StorageError> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.finish_one().await?;
        }
        let store = self.storage.store.clone();
        let (path, id, index) = (self.path.clone(), self.id.clone(), self.next_index);
        // The first part's record was just written by `start`.
        let refresh = (index > 0).then(|| (self.record.clone(), self.record_doc.clone()));
        self.next_index += 1;
        self.in_flight.push_back(Box::pin(async move {
            if let Some((record, doc)) = refresh {
                // Best effort: a failed refresh only risks what happened before the fix, an
                // abort by upkeep once the record is older than its threshold.
                if let Err(e) = store.put(&record, PutPayload::from(doc)).await {
                    tracing::warn!(record = %record, error = %e, "refreshing a multipart upload's record");
                }
            }
            store.put_part(&path, &id, index, data).await
        }));
        Ok(())
    }

    async fn finish_one(&mut self) -> Result<(), StorageError> {
        if let Some(done) = self.in_flight.next().await {
            let part =
                done.map_err(|e| os_error("upload part", &self.storage.name(&self.path), e))?;
            self.parts.push(part);
        }
        Ok(())
    }

    /// Returns the object's ETag, if the server gave one.
    async fn complete(mut self) -> Result<Option<String>, StorageError> {
        let result = async {
            while !self.in_flight.is_empty() {
                self.finish_one().await?;
            }
            self.storage
                .store
                .complete_multipart(&self.path, &self.id, std::mem::take(&mut self.parts))
                .await
                .map_err(|e| {
                    os_error(
                        "complete multipart upload",
                        &self.storage.name(&self.path),
                        e,
                    )
                })
        }
        .await;
        match result {
            Ok(done) => {
                let _ = self.storage.delete_quietly(&self.record).await;
                Ok(done.e_tag)
            }
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    /// Best effort: what fails here is aborted later by upkeep, from the record.
    async fn abort(self) {
        drop(self.in_flight);
        if self
            .storage
            .store
            .abort_multipart(&self.path, &self.id)
            .await
            .is_ok()
        {
            let _ = self.storage.delete_quietly(&self.record).await;
        }
    }
}

#[async_trait::async_trait]
impl Storage for S3Storage {
    async fn blob_info(&self, digest: &Digest) -> Result<Option<ObjectInfo>, StorageError> {
        let (blob, touch) = (self.blob_path(digest)?, self.touch_path(digest)?);
        let (blob, touch) = tokio::join!(self.head(&blob), self.head(&touch));
        Ok(later(
            blob?.as_ref().map(info_of),
            touch?.map(|t| info_of(&t).modified),
        ))
    }

    async fn blob_read(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> Result<ByteStream, StorageError> {
        let path = self.blob_path(digest)?;
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(offset..offset + len)),
            ..GetOptions::default()
        };
        match self.store.get_opts(&path, opts).await {
            Ok(got) => Ok(Box::pin(got.into_stream().map_err(io::Error::other))),
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::BlobUnknown(digest.clone()))
            }
            Err(e) => Err(os_error("GET", &self.name(&path), e)),
        }
    }

    async fn blob_read_small(&self, digest: &Digest, limit: u64) -> Result<Bytes, StorageError> {
        let path = self.blob_path(digest)?;
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::BlobUnknown(digest.clone()));
            }
            Err(e) => return Err(os_error("GET", &self.name(&path), e)),
        };
        let mut stream = got.into_stream();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| os_error("GET", &self.name(&path), e))?;
            let room = (limit as usize).saturating_sub(out.len());
            out.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if out.len() as u64 >= limit {
                break;
            }
        }
        Ok(Bytes::from(out))
    }

    async fn blob_put(&self, digest: &Digest, data: Bytes) -> Result<(), StorageError> {
        self.put_bytes(&self.blob_path(digest)?, data).await
    }

    fn puts_verified_blobs(&self) -> bool {
        true
    }

    async fn blob_put_verified(
        &self,
        digest: &Digest,
        data: ByteStream,
    ) -> Result<u64, StorageError> {
        let target = self.blob_path(digest)?;
        let mut hasher = Sha256::new();
        let written = self
            .write_stream(&target, data, false, Some(&mut hasher), Some(digest), None)
            .await?;
        Ok(written.bytes)
    }

    async fn blob_touch(&self, digest: &Digest) -> Result<(), StorageError> {
        if self.head(&self.blob_path(digest)?).await?.is_none() {
            return Err(StorageError::BlobUnknown(digest.clone()));
        }
        self.put_bytes(&self.touch_path(digest)?, Bytes::new())
            .await
    }

    async fn blob_delete(&self, digest: &Digest) -> Result<bool, StorageError> {
        let path = self.blob_path(digest)?;
        let existed = self.head(&path).await?.is_some();
        self.delete_quietly(&path).await?;
        self.delete_quietly(&self.touch_path(digest)?).await?;
        Ok(existed)
    }

    async fn blob_set_aside(&self, digest: &Digest) -> Result<bool, StorageError> {
        let (blob, aside) = (self.blob_path(digest)?, self.aside_path(digest)?);
        let Some(meta) = self.head(&blob).await? else {
            return Ok(false);
        };
        // The touch object stays: a touch racing with this lands there, and it is what
        // `blob_aside_last_use` reads (the copy's own time is now, not the blob's).
        match self.copy_object(&blob, &aside, meta.size).await {
            Ok(()) => {}
            // Gone meanwhile (set aside by another gc, which decides about it): nothing to do.
            Err(StorageError::Io { .. }) if self.head(&blob).await?.is_none() => return Ok(false),
            Err(e) => return Err(e),
        }
        self.delete_quietly(&blob).await?;
        Ok(true)
    }

    async fn blob_aside_last_use(
        &self,
        digest: &Digest,
    ) -> Result<Option<SystemTime>, StorageError> {
        let (aside, touch) = (self.aside_path(digest)?, self.touch_path(digest)?);
        if self.head(&aside).await?.is_none() {
            return Ok(None);
        }
        // gc sets a blob aside only after finding its last use old: only a touch can be newer.
        let touched = self.head(&touch).await?.map(|t| info_of(&t).modified);
        Ok(Some(touched.unwrap_or(SystemTime::UNIX_EPOCH)))
    }

    async fn blob_restore(&self, digest: &Digest) -> Result<(), StorageError> {
        let (blob, aside) = (self.blob_path(digest)?, self.aside_path(digest)?);
        let Some(meta) = self.head(&aside).await? else {
            return Ok(());
        };
        if self.head(&blob).await?.is_none() {
            match self.copy_object(&aside, &blob, meta.size).await {
                Ok(()) => {}
                // Another gc (a recovery beside this one) restored it or, deciding, dropped it
                // meanwhile: nothing is out of sight any more, which is what a restore is for.
                Err(StorageError::Io { .. }) if self.head(&aside).await?.is_none() => {
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        self.delete_quietly(&aside).await
    }

    async fn blob_drop_aside(&self, digest: &Digest) -> Result<(), StorageError> {
        self.delete_quietly(&self.aside_path(digest)?).await?;
        // The touch object belongs to the blob stored under this name meanwhile, if any.
        if self.head(&self.blob_path(digest)?).await?.is_none() {
            self.delete_quietly(&self.touch_path(digest)?).await?;
        }
        Ok(())
    }

    async fn blob_list(&self) -> Result<Vec<(Digest, ObjectInfo)>, StorageError> {
        let (blob_dir, touch_dir) = (self.path("blobs/sha256")?, self.path("touch/sha256")?);
        let (blobs, touches) = tokio::join!(self.list_all(&blob_dir), self.list_all(&touch_dir));
        let parse = |meta: &ObjectMeta| {
            meta.location
                .filename()
                .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
        };
        let touched: BTreeMap<Digest, SystemTime> = touches?
            .iter()
            .filter_map(|m| parse(m).map(|d| (d, info_of(m).modified)))
            .collect();
        let mut out: Vec<(Digest, ObjectInfo)> = blobs?
            .iter()
            .filter_map(|m| {
                let digest = parse(m)?;
                let info = later(Some(info_of(m)), touched.get(&digest).copied())?;
                Some((digest, info))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn blob_redirect(
        &self,
        digest: &Digest,
        method: &http::Method,
    ) -> Result<Option<String>, StorageError> {
        let Some(expiry) = self.redirect else {
            return Ok(None);
        };
        let path = self.blob_path(digest)?;
        let url = self
            .store
            .signed_url(method.clone(), &path, expiry)
            .await
            .map_err(|e| os_error("presign", &self.name(&path), e))?;
        Ok(Some(url.to_string()))
    }

    fn shared_between_servers(&self) -> bool {
        true
    }

    /// A LIST (of the start-up check's folder, small): unlike a HEAD, it also says a missing
    /// bucket.
    async fn check_reachable(&self) -> Result<(), StorageError> {
        let probes = self.path("_probe")?;
        self.checking
            .list_with_delimiter(Some(&probes))
            .await
            .map(drop)
            .map_err(|e| self.request_error("LIST", &probes, e))
    }

    /// The server must honour `If-None-Match: *` on PUT (AWS S3 has since August 2024; Ceph
    /// RGW does): without it, two replicas appending at one offset would both be told they
    /// won, and two replicas starting at once could each keep a token signing key of their
    /// own. A server that ignores the header says nothing; only a second create-only PUT of
    /// one object shows it.
    async fn check_server(&self) -> Result<(), StorageError> {
        let probe = self.path(&format!(
            "_probe/conditional-put-{:032x}",
            rand::random::<u128>()
        ))?;
        let create_only = || PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        // The first request to the server: a wrong endpoint or a server not running shows here.
        self.checking
            .put_opts(&probe, PutPayload::from_static(b"1"), create_only())
            .await
            .map_err(|e| self.request_error("PUT", &probe, e))?;
        let again = self
            .store
            .put_opts(&probe, PutPayload::from_static(b"2"), create_only())
            .await;
        if let Err(e) = self.store.delete(&probe).await {
            tracing::warn!(object = %self.name(&probe), error = %e,
                "removing the start-up check's object (upkeep removes it later)");
        }
        match again {
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(()),
            Ok(_) => Err(StorageError::Config(format!(
                "{}: the server ignores `If-None-Match: *` (a create-only PUT replaced an \
                 existing object). Replicas rely on it so that two of them cannot both append \
                 at one offset of an upload or both create the token signing key: use a server \
                 with conditional writes (AWS S3, Ceph RGW), or upgrade this one",
                self.described()
            ))),
            Err(e) => Err(os_error("PUT", &self.name(&probe), e)),
        }
    }

    async fn upload_create(&self, id: &str, info: Bytes) -> Result<(), StorageError> {
        self.put_bytes(&self.upload_path(id, "info")?, info).await
    }

    async fn upload_info(&self, id: &str) -> Result<Option<UploadStatus>, StorageError> {
        if !valid_upload_id(id) {
            return Ok(None);
        }
        let Some((info, Some(doc), chunks)) = self.upload_state_reading(id, true).await? else {
            return Ok(None);
        };
        let mut object = info_of(&info);
        object.size = 0;
        for (_, chunk) in &chunks {
            object.size += chunk.size;
            object.modified = object.modified.max(info_of(chunk).modified);
        }
        Ok(Some(UploadStatus {
            info: doc,
            object,
            version: version_of(&chunks),
        }))
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: u64,
        data: ByteStream,
    ) -> Result<Appended, StorageError> {
        let Some((_, chunks)) = self.upload_state(id).await? else {
            return Err(StorageError::UploadUnknown(id.to_string()));
        };
        let before = version_of(&chunks);
        let actual: u64 = chunks.iter().map(|(_, c)| c.size).sum();
        if actual != offset {
            return Err(StorageError::OffsetMismatch {
                id: id.to_string(),
                expected: offset,
                actual,
            });
        }
        // Every append lists the chunks: without a bound, a client sending bytes one at a time
        // makes each append cost more than the last, for the registry and the bucket. Only a
        // chunk with bytes counts: the closing PUT of a full upload has an empty body.
        let mut data = data;
        let first = loop {
            match data.next().await {
                Some(Ok(bytes)) if bytes.is_empty() => {}
                other => break other,
            }
        };
        let data: ByteStream = match first {
            None => {
                return Ok(Appended {
                    size: offset,
                    before,
                    after: before,
                });
            }
            Some(Err(e)) => return Err(StorageError::Stream(e)),
            Some(Ok(_)) if chunks.len() >= self.max_upload_chunks => {
                return Err(StorageError::TooManyChunks {
                    id: id.to_string(),
                    max: self.max_upload_chunks,
                });
            }
            Some(Ok(bytes)) => {
                Box::pin(futures_util::stream::once(async { Ok(bytes) }).chain(data))
            }
        };
        let path = self.chunk_path(id, offset)?;
        let marker = self.attempts_path(id, offset, Some(rand::random()))?;
        let written = match self
            .write_stream(&path, data, true, None, None, Some(&marker))
            .await
        {
            Ok(done) => done,
            // Another request (on another replica) appended at this offset meanwhile: to the
            // client, the same as a chunk that does not continue the upload.
            Err(StorageError::Io { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                let actual = match self.upload_state(id).await? {
                    Some((_, chunks)) => chunks.iter().map(|(_, c)| c.size).sum(),
                    None => return Err(StorageError::UploadUnknown(id.to_string())),
                };
                return Err(StorageError::OffsetMismatch {
                    id: id.to_string(),
                    expected: offset,
                    actual,
                });
            }
            Err(e) => return Err(e),
        };
        // A chunk of 8 MiB or more is a multipart upload, whose completion S3 cannot make
        // conditional: a concurrent one at this offset may replace it, and the ETag is how the
        // versions tell the two apart.
        let e_tag = match written.e_tag.filter(|t| !bare_e_tag(t).is_empty()) {
            Some(e_tag) => Some(e_tag),
            // Ceph RGW answers a multipart completion with an empty ETag: read it from the
            // chunk (it must have this chunk's size). Left open: a replacement of the same size
            // completing in the instant between the completion and this read would be taken
            // for this chunk, its version for the one these bytes were hashed at.
            None if written.bytes > 0 => self
                .head(&path)
                .await?
                .filter(|meta| meta.size == written.bytes)
                .and_then(|meta| meta.e_tag),
            None => None,
        };
        let after = if written.bytes == 0 {
            before
        } else {
            before
                .zip(e_tag)
                .map(|(before, e_tag)| before.then(offset, bare_e_tag(&e_tag)))
        };
        match written.stream_error {
            Some(e) => Err(StorageError::Stream(e)),
            None => Ok(Appended {
                size: offset + written.bytes,
                before,
                after,
            }),
        }
    }

    async fn upload_read(&self, id: &str) -> Result<ByteStream, StorageError> {
        let Some((_, chunks)) = self.upload_state(id).await? else {
            return Err(StorageError::UploadUnknown(id.to_string()));
        };
        Ok(self.chunks_stream(chunks))
    }

    async fn upload_save_hash(
        &self,
        id: &str,
        offset: u64,
        state: Bytes,
    ) -> Result<(), StorageError> {
        self.put_bytes(&self.hash_path(id, offset)?, state).await
    }

    async fn upload_saved_hash(
        &self,
        id: &str,
        offset: u64,
    ) -> Result<Option<Bytes>, StorageError> {
        let path = self.hash_path(id, offset)?;
        Ok(self.get(&path).await?.map(|(_, state)| state))
    }

    async fn upload_keep_alive(&self, id: &str) -> Result<(), StorageError> {
        // `upload_list` takes the latest time of anything under the upload; `upload_state` reads
        // only `info` and the chunks (numbers), so this name is safe beside them.
        self.put_bytes(&self.upload_path(id, "alive")?, Bytes::new())
            .await
    }

    async fn upload_commit(
        &self,
        id: &str,
        digest: &Digest,
        verified: Option<UploadVersion>,
    ) -> Result<(), StorageError> {
        let Some((_, chunks)) = self.upload_state(id).await? else {
            return Err(StorageError::UploadUnknown(id.to_string()));
        };
        // A chunk of a part or more completes unconditionally (module docs): a late request at
        // its offset may have replaced it since the caller hashed it.
        if verified.is_some() && version_of(&chunks) != verified {
            return Err(StorageError::UploadChanged { id: id.to_string() });
        }
        let target = self.blob_path(digest)?;
        if self.head(&target).await?.is_some() {
            // Pushed before (or by a concurrent commit): the same verified bytes. Mark it used.
            self.put_bytes(&self.touch_path(digest)?, Bytes::new())
                .await?;
        } else if let Err(e) = self
            .store_verified_blob(id, digest, &target, chunks, verified)
            .await
            // Another commit of this digest may have stored it meanwhile: another session's, or
            // this one's retried on another replica (whose end removed this commit's staging
            // object or chunks). Only verified bytes are ever under the name, so the blob this
            // commit was for is there, and the commit is done.
            && !matches!(self.head(&target).await, Ok(Some(_)))
        {
            return Err(e);
        }
        self.upload_delete(id).await
    }

    async fn upload_delete(&self, id: &str) -> Result<(), StorageError> {
        let dir = self.upload_path(id, "")?;
        let objects = self.list_all(&dir).await?;
        // The info document first: from then on no request takes the session for a live one,
        // so none can write a chunk where this deletion removed one. (With the info last, an
        // append listing in between found the session with no chunk at 0 and stored one, a
        // chunk a commit that listed the session before could then copy as the verified one.)
        // What is left of a session deleted halfway still lists (`upload_list`) and expires.
        let (info, rest): (Vec<_>, Vec<_>) = objects
            .into_iter()
            .partition(|m| m.location.filename() == Some("info"));
        for meta in &info {
            self.delete_quietly(&meta.location).await?;
        }
        // The rest (chunks, hash states, a commit's staging object) in one DeleteObjects
        // request: a commit ends with this, and its cost is per request.
        let rest = futures_util::stream::iter(rest.into_iter().map(|m| Ok(m.location))).boxed();
        let mut deleted = self.store.delete_stream(rest);
        while let Some(done) = deleted.next().await {
            match done {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(os_error("DELETE", &self.name(&dir), e)),
            }
        }
        Ok(())
    }

    async fn upload_list(&self) -> Result<Vec<(String, ObjectInfo)>, StorageError> {
        let dir = self.path("uploads")?;
        let mut sessions: BTreeMap<String, ObjectInfo> = BTreeMap::new();
        for meta in self.list_all(&dir).await? {
            let Some(id) = meta
                .location
                .prefix_match(&dir)
                .and_then(|mut parts| parts.next())
                .map(|p| p.as_ref().to_string())
            else {
                continue;
            };
            let info = info_of(&meta);
            let entry = sessions.entry(id).or_insert(ObjectInfo {
                size: 0,
                modified: info.modified,
            });
            // Chunks only (named by their offset), not the info document or hash states.
            if meta
                .location
                .filename()
                .is_some_and(|n| n.parse::<u64>().is_ok())
            {
                entry.size += info.size;
            }
            entry.modified = entry.modified.max(info.modified);
        }
        Ok(sessions.into_iter().collect())
    }

    async fn meta_put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        valid_meta_key(key)?;
        self.put_bytes(&self.path(key)?, data).await
    }

    async fn meta_get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        valid_meta_key(key)?;
        let path = self.path(key)?;
        Ok(self.get(&path).await?.map(|(_, doc)| doc))
    }

    async fn meta_info(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        valid_meta_key(key)?;
        Ok(self.head(&self.path(key)?).await?.as_ref().map(info_of))
    }

    async fn meta_delete(&self, key: &str) -> Result<bool, StorageError> {
        valid_meta_key(key)?;
        let path = self.path(key)?;
        let existed = self.head(&path).await?.is_some();
        if existed {
            self.delete_quietly(&path).await?;
        }
        Ok(existed)
    }

    async fn meta_list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let key = prefix.trim_end_matches('/');
        valid_meta_key(key)?;
        let path = self.path(key)?;
        let listed = self
            .store
            .list_with_delimiter(Some(&path))
            .await
            .map_err(|e| self.request_error("LIST", &path, e))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .chain(listed.objects.iter().map(|m| &m.location))
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn shared_document(
        &self,
        name: &str,
        initial: Bytes,
    ) -> Result<Option<Bytes>, StorageError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(StorageError::InvalidKey(name.to_string()));
        }
        let path = self.path(&format!("shared/{name}"))?;
        let read = || async { self.get(&path).await.map(|got| got.map(|(_, doc)| doc)) };
        if let Some(existing) = read().await? {
            return Ok(Some(existing));
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(initial.clone()), opts)
            .await
        {
            Ok(_) => Ok(Some(initial)),
            // Another replica created it first: theirs is the one.
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => read().await?.map(Some).ok_or_else(|| StorageError::Io {
                op: "GET",
                path: self.name(&path),
                source: io::Error::other("created by another server, then gone"),
            }),
            Err(e) => Err(os_error("PUT", &self.name(&path), e)),
        }
    }

    async fn clean_temporary(&self, older_than: SystemTime) -> Result<usize, StorageError> {
        let mut aborted = 0;
        for meta in self.list_all(&self.path("multipart")?).await? {
            if info_of(&meta).modified >= older_than {
                continue;
            }
            let Ok(got) = self.store.get(&meta.location).await else {
                continue;
            };
            let Ok(doc) = got.bytes().await else { continue };
            if let Ok(record) = serde_json::from_slice::<MultipartRecord>(&doc)
                && let Ok(path) = Path::parse(&record.key)
            {
                match self.store.abort_multipart(&path, &record.id).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!(object = %self.name(&path), error = %e, "aborting an abandoned multipart upload");
                        continue;
                    }
                }
            }
            self.delete_quietly(&meta.location).await?;
            aborted += 1;
        }
        // A start-up check's object that a crash left (it is deleted at once otherwise).
        for meta in self.list_all(&self.path("_probe")?).await? {
            if info_of(&meta).modified < older_than {
                self.delete_quietly(&meta.location).await?;
                aborted += 1;
            }
        }
        Ok(aborted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> S3Settings {
        S3Settings::from_config(
            "reg".into(),
            "prod/eu".into(),
            &StorageConfig {
                endpoint: Some("http://127.0.0.1:7480".into()),
                ..StorageConfig::default()
            },
            |k| match k {
                "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".into()),
                "AWS_SECRET_ACCESS_KEY" => Some("wJalrXUtnFEMI-very-secret".into()),
                "AWS_CA_BUNDLE" => panic!("only the three credential variables are read"),
                _ => None,
            },
        )
    }

    #[test]
    fn layout_under_the_prefix() {
        let s = S3Storage::open(&settings()).expect("client");
        let d = Digest::of(b"x");
        assert_eq!(
            s.blob_path(&d).expect("path").to_string(),
            format!("prod/eu/blobs/sha256/{}", d.hex())
        );
        assert_eq!(
            s.chunk_path("abc123", 7).expect("path").to_string(),
            "prod/eu/uploads/abc123/chunks/00000000000000000007"
        );
        assert!(matches!(
            s.upload_path("../x", "info"),
            Err(StorageError::UploadUnknown(_))
        ));
        assert_eq!(s.location(), "s3://reg/prod/eu");
        assert_eq!(
            s.name(&s.path("repositories/a/_manifests/tags/v1").expect("path")),
            "s3://reg/prod/eu/repositories/a/_manifests/tags/v1"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let s = settings();
        assert!(!format!("{s:?}").contains("very-secret"));
        let storage = S3Storage::open(&s).expect("client");
        assert!(!format!("{storage:?}").contains("very-secret"));
        let half = S3Settings {
            access_key_id: None,
            ..s.clone()
        };
        let e = S3Storage::open(&half).expect_err("half the credentials");
        assert!(!e.to_string().contains("very-secret"), "{e}");
        assert!(e.to_string().contains("s3://reg/prod/eu"), "{e}");
        let bad = S3Settings {
            endpoint: Some("not a url".into()),
            ..s
        };
        let e = S3Storage::open(&bad).expect_err("bad endpoint");
        assert!(e.to_string().contains("not a url"), "{e}");
        assert!(!e.to_string().contains("very-secret"), "{e}");
        for (endpoint, shown) in [
            (
                "http://admin:pass-very-secret@127.0.0.1:7480",
                "http://…@127.0.0.1:7480",
            ),
            ("http://key-very-secret@s3.local/", "http://…@s3.local/"),
            (
                "http://admin:pass very-secret@127.0.0.1:7480",
                "http://…@127.0.0.1:7480",
            ),
        ] {
            let with_credentials = S3Settings {
                endpoint: Some(endpoint.into()),
                ..bad.clone()
            };
            let e = S3Storage::open(&with_credentials).expect_err("credentials in the endpoint");
            assert!(!e.to_string().contains("very-secret"), "{e}");
            assert!(e.to_string().contains(shown), "{e}");
        }
    }
}
