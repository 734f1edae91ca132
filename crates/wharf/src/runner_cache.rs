//! `[runners.cache]` with `Type = "s3"`: the distributed cache that lets runners on several
//! machines share caches, as gitlab-runner's (`cache/cache.go`, `cache/s3`). The runner signs
//! a URL for each object (GET to restore, PUT to save) and moves the archive through it; the
//! object names are gitlab-runner's: `<Path>/runner/<short token>/project/<id>/<key>`, or
//! `<Path>/project/<id>/<key>` when `Shared`.
//!
//! It syncs the runner's local cache (wharf-run's `.wharf/cache/<key>/` folders, under the same
//! per-key locks) through the job engine's `CacheTransfer` seam: each key the job tries to
//! restore is first fetched (a key found in S3 replaces the local folder), and each folder the
//! job saved is uploaded. The archive is gitlab-runner's `cache.zip` (paths relative to the
//! project folder, made and unpacked by wharf-gitlab's artifact code, which confines every
//! entry to the folder), so wharf runners and gitlab-runners on one bucket (`Shared = true`)
//! share caches both ways. Archives go through a temporary file beside the local caches, never whole
//! in memory (a job decides how big its cache is; another runner wrote what is downloaded),
//! and `MaxUploadedArchiveSize` bounds both directions. The secret key is never logged; signed
//! URLs are not either.

use crate::error_text::error_text;
use crate::runner_config::CacheConfig;
use anyhow::{Context, Result, bail};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::signer::Signer as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use wharf_fs::{Resolve, Root};
use wharf_gitlab::runner::artifacts::{
    ArchiveError, ArchiveFormat, Unpacked, io_error, unpack_tar, unpack_zip, write_archive,
    write_tar,
};
use wharf_image::zstd_frames::{ZSTD_MAGIC, ZstdFrames};
use wharf_run::cache::CacheTransfer;
use wharf_run::log::JobLog;
use wharf_run::vars::VarSet;

/// How long a signed URL is good for (gitlab-runner: the job's timeout; one transfer here).
const URL_EXPIRY: Duration = Duration::from_secs(3600);
/// A download that receives nothing for this long has failed.
const STALLED_AFTER: Duration = Duration::from_secs(300);

pub(crate) struct SharedCache {
    store: AmazonS3,
    /// Where objects go: `bucket` for messages.
    bucket: String,
    /// `Path`, then `runner/<short token>` unless `Shared`.
    prefix: String,
    /// `MaxUploadedArchiveSize`: 0 is no limit.
    max_archive_size: u64,
    http: reqwest::Client,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl SharedCache {
    /// From `[runners.cache]`: `None` without a `Type` (the local cache only, as gitlab-runner);
    /// errors name the key (the caller adds the file and runner).
    pub fn of(config: &CacheConfig, token: &str) -> Result<Option<SharedCache>> {
        if config.kind.is_empty() {
            return Ok(None);
        }
        if !config.kind.eq_ignore_ascii_case("s3") {
            bail!(
                "cache.Type `{}`: wharf's distributed cache speaks S3 only (`Type = \"s3\"`); gcs and azure are not supported",
                config.kind
            );
        }
        let Some(s3) = &config.s3 else {
            bail!("cache: `Type = \"s3\"` needs a [runners.cache.s3] section");
        };
        if s3.server_address.is_empty() || s3.bucket_name.is_empty() {
            bail!("cache.s3: ServerAddress and BucketName are needed");
        }
        if s3.access_key.is_empty() || s3.secret_key.is_empty() {
            bail!(
                "cache.s3: AccessKey and SecretKey are needed (wharf does not take IAM credentials from the machine)"
            );
        }
        let address = s3.server_address.trim_end_matches('/');
        let endpoint = if address.contains("://") {
            address.to_string()
        } else if s3.insecure {
            format!("http://{address}")
        } else {
            format!("https://{address}")
        };
        let store = AmazonS3Builder::new()
            .with_bucket_name(&s3.bucket_name)
            .with_region(if s3.bucket_location.is_empty() {
                "us-east-1"
            } else {
                &s3.bucket_location
            })
            .with_endpoint(&endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_access_key_id(&s3.access_key)
            .with_secret_access_key(&s3.secret_key)
            .build()
            .map_err(|e| anyhow::anyhow!("cache.s3: {e}"))?;
        let mut prefix: Vec<&str> = config.path.split('/').filter(|p| !p.is_empty()).collect();
        if !config.shared {
            prefix.extend(["runner", crate::runner_config::short_token(token)]);
        }
        Ok(Some(SharedCache {
            store,
            bucket: s3.bucket_name.clone(),
            prefix: prefix.join("/"),
            max_archive_size: config.max_uploaded_archive_size,
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(15))
                // A server that stops sending ends the download with a warning, not never.
                .read_timeout(STALLED_AFTER)
                .build()
                .context("starting the HTTP client of the shared cache")?,
        }))
    }

    /// The object of `key` for project `project_id`; `None` when the key would climb out of
    /// the project's folder (gitlab-runner refuses those too).
    fn object(&self, project_id: u64, key: &str) -> Option<object_store::path::Path> {
        if key
            .split('/')
            .any(|part| part == ".." || part == "." || part.is_empty())
        {
            return None;
        }
        let mut name = self.prefix.clone();
        if !name.is_empty() {
            name.push('/');
        }
        name.push_str(&format!("project/{project_id}/{key}"));
        object_store::path::Path::parse(name).ok()
    }

    async fn signed(
        &self,
        method: http::Method,
        object: &object_store::path::Path,
    ) -> Result<url::Url> {
        self.store
            .signed_url(method, object, URL_EXPIRY)
            .await
            .map_err(|e| anyhow::anyhow!("signing a URL in bucket {}: {e}", self.bucket))
    }

    /// Downloads and unpacks the archive of `key`: `None` when the bucket has none, else the
    /// entries not unpacked, with why.
    async fn download_one(
        &self,
        project_id: u64,
        key: &str,
        wharf_dir: &Path,
    ) -> Result<Option<Vec<(String, String)>>> {
        let Some(object) = self.object(project_id, key) else {
            bail!("the key climbs out of the project's folder: remove `../` from it");
        };
        let url = self.signed(http::Method::GET, &object).await?;
        let mut answer =
            self.http.get(url).send().await.map_err(|e| {
                anyhow::anyhow!("GET from bucket {}: {}", self.bucket, e.without_url())
            })?;
        match answer.status().as_u16() {
            404 => return Ok(None),
            200 => {}
            status => bail!("GET from bucket {}: HTTP {status}", self.bucket),
        }
        if let Some(size) = answer.content_length() {
            self.check_size(size)?;
        }
        // Named: the zip reader needs a file it can seek in, by path.
        let archive = archive_file(wharf_dir)?;
        let mut file = tokio::fs::File::from_std(
            archive
                .reopen()
                .context("opening the temporary file for the download")?,
        );
        let mut size = 0u64;
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|e| anyhow::anyhow!("GET from bucket {}: {}", self.bucket, e.without_url()))?
        {
            size += chunk.len() as u64;
            self.check_size(size)?;
            file.write_all(&chunk)
                .await
                .context("writing the downloaded archive to a temporary file")?;
        }
        file.flush().await?;
        drop(file);
        let wharf_dir = wharf_dir.to_path_buf();
        let key = key.to_string();
        let refused = tokio::task::spawn_blocking(move || {
            unpack(
                archive.path(),
                &wharf_dir,
                &key,
                crate::runner_artifacts::MAX_UNPACKED_BYTES,
            )
        })
        .await??;
        Ok(Some(refused))
    }

    /// An archive over `MaxUploadedArchiveSize` is not moved, either way.
    fn check_size(&self, size: u64) -> Result<()> {
        if self.max_archive_size != 0 && size > self.max_archive_size {
            bail!(
                "the archive is over MaxUploadedArchiveSize ({} bytes) of [runners.cache]: raise it, or cache fewer paths",
                self.max_archive_size
            );
        }
        Ok(())
    }

    async fn upload_one(
        &self,
        project_id: u64,
        key: &str,
        wharf_dir: &Path,
        format: CacheArchive,
    ) -> Result<u64> {
        let Some(object) = self.object(project_id, key) else {
            bail!("the key climbs out of the project's folder: remove `../` from it");
        };
        let archive = {
            let wharf_dir = wharf_dir.to_path_buf();
            let key = key.to_string();
            tokio::task::spawn_blocking(move || pack(&wharf_dir, &key, format)).await??
        };
        let size = archive.as_file().metadata()?.len();
        self.check_size(size)?;
        let url = self.signed(http::Method::PUT, &object).await?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(
            tokio::fs::File::from_std(archive.reopen()?),
        ));
        // S3 takes no chunked bodies on a presigned PUT: the length is said up front.
        let answer = self
            .http
            .put(url)
            .header(http::header::CONTENT_LENGTH, size)
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("PUT to bucket {}: {}", self.bucket, e.without_url()))?;
        if !answer.status().is_success() {
            bail!(
                "PUT to bucket {}: HTTP {}",
                self.bucket,
                answer.status().as_u16()
            );
        }
        Ok(size)
    }
}

/// The shared cache as one job of project `project_id` sees it: the job engine fetches each
/// key it restores and sends each key it saves, in the job's log.
/// A cancel of the job in GitLab stops a transfer in progress (a slow or silent bucket, a big
/// archive): a download stopped midway leaves the local folder as it was (it is unpacked aside
/// first), an upload stopped midway leaves no object (S3 writes one whole or not at all).
pub(crate) struct ProjectCache {
    shared: Arc<SharedCache>,
    project_id: u64,
    cancel: tokio::sync::watch::Receiver<bool>,
}

impl ProjectCache {
    pub fn new(
        shared: Arc<SharedCache>,
        project_id: u64,
        cancel: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<ProjectCache> {
        Arc::new(ProjectCache {
            shared,
            project_id,
            cancel,
        })
    }

    /// Runs `transfer` to its end, or `None` once the job is canceled.
    fn unless_canceled<T>(&self, transfer: impl Future<Output = T>) -> Option<T> {
        tokio::runtime::Handle::current()
            .block_on(wharf_run::unless_canceled(&self.cancel, transfer))
    }
}

// The engine calls these on a blocking thread of the runtime (`block_in_place`), where
// `Handle::block_on` may wait for the transfer.
impl CacheTransfer for ProjectCache {
    fn fetch(&self, key: &str, wharf_dir: &Path, log: &mut JobLog) {
        let shared = &self.shared;
        let fetched = self.unless_canceled(shared.download_one(self.project_id, key, wharf_dir));
        let Some(fetched) = fetched else {
            log.warn(&format!(
                "shared cache \"{key}\" not downloaded: the job was canceled"
            ));
            return;
        };
        match fetched {
            Ok(Some(refused)) => {
                for (entry, why) in refused {
                    log.warn(&format!("{entry}: not extracted: {why}"));
                }
                log.info(&format!(
                    "Downloaded cache \"{key}\" from the shared cache (bucket {})",
                    shared.bucket
                ))
            }
            Ok(None) => log.info(&format!(
                "No cache \"{key}\" in the shared cache (bucket {}) yet",
                shared.bucket
            )),
            Err(e) => log.warn(&format!(
                "shared cache \"{key}\" not downloaded: {}",
                error_text(&e)
            )),
        }
    }

    fn send(&self, key: &str, wharf_dir: &Path, vars: &VarSet, log: &mut JobLog) {
        let shared = &self.shared;
        let format = CacheArchive::of(vars, log);
        let sent = self.unless_canceled(shared.upload_one(self.project_id, key, wharf_dir, format));
        let Some(sent) = sent else {
            log.warn(&format!(
                "shared cache \"{key}\" not uploaded: the job was canceled"
            ));
            return;
        };
        match sent {
            Ok(size) => log.info(&format!(
                "Uploaded cache \"{key}\" to the shared cache (bucket {}, {size} bytes)",
                shared.bucket
            )),
            Err(e) => log.warn(&format!(
                "shared cache \"{key}\" not uploaded: {}",
                error_text(&e)
            )),
        }
    }
}

/// A temporary file beside the local caches (not in a `/tmp` that may be memory), removed
/// when dropped.
fn archive_file(wharf_dir: &Path) -> Result<tempfile::NamedTempFile> {
    std::fs::create_dir_all(wharf_dir)
        .with_context(|| format!("creating {}", wharf_dir.display()))?;
    tempfile::Builder::new()
        .prefix(".cache-archive-")
        .tempfile_in(wharf_dir)
        .with_context(|| format!("creating a temporary file in {}", wharf_dir.display()))
}

/// The archive formats of gitlab-runner's cache (`CACHE_COMPRESSION_FORMAT`). Both are
/// uploaded under one name; a reader tells them apart by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheArchive {
    Zip,
    /// A tar compressed with zstd.
    TarZstd,
}

impl CacheArchive {
    /// As gitlab-runner's cache-archiver reads the job's variable: `tarzstd` (in any case) is
    /// a zstd tar, anything else a zip. `zipzstd` (zip entries compressed with zstd) is made
    /// as a zip with deflate, which every gitlab-runner reads too, and the log says so.
    fn of(vars: &VarSet, log: &mut JobLog) -> CacheArchive {
        let asked = vars
            .resolved("CACHE_COMPRESSION_FORMAT")
            .unwrap_or_default();
        match asked.trim().to_ascii_lowercase().as_str() {
            "tarzstd" => CacheArchive::TarZstd,
            "zipzstd" => {
                log.info(
                    "CACHE_COMPRESSION_FORMAT=zipzstd: wharf makes the cache a zip with deflate \
                     (gitlab-runner reads both); set tarzstd for zstd",
                );
                CacheArchive::Zip
            }
            _ => CacheArchive::Zip,
        }
    }
}

/// The local folder of `key` as gitlab-runner's `cache.zip` (paths relative to the project
/// folder) in `format`, in a temporary file (read under the key's shared lock, through the
/// folder: a link in it is archived as a link, never followed).
fn pack(wharf_dir: &Path, key: &str, format: CacheArchive) -> Result<tempfile::NamedTempFile> {
    let _lock = wharf_run::cache::lock_key(wharf_dir, key, false)?;
    let dir = wharf_run::cache::key_dir(wharf_dir, key);
    let root = Root::open(&dir, Resolve::NoSymlinks)?;
    let mut entries: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|entry| entry.map(|e| e.file_name().into()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort();
    let mut archive = archive_file(wharf_dir)?;
    let path = archive.path().to_path_buf();
    match format {
        CacheArchive::Zip => {
            write_archive(
                ArchiveFormat::Zip,
                &root,
                &entries,
                archive.as_file_mut(),
                &path,
            )?;
        }
        CacheArchive::TarZstd => {
            let mut tar = archive_file(wharf_dir)?;
            let tar_path = tar.path().to_path_buf();
            tar_into(&root, &entries, tar.as_file_mut(), &tar_path)?;
            std::io::Seek::rewind(tar.as_file_mut())?;
            compress_zstd(tar.as_file_mut(), archive.as_file_mut()).with_context(|| {
                format!("compressing the cache archive into {}", path.display())
            })?;
        }
    }
    Ok(archive)
}

/// The tar of `entries` (relative to `root`) written to `out` through a buffer, flushed here
/// and not when dropped (which drops its error): a full disk fails the archive, never cuts it.
fn tar_into(
    root: &Root,
    entries: &[std::path::PathBuf],
    out: impl std::io::Write,
    path: &Path,
) -> Result<()> {
    use std::io::Write as _;
    let mut buffered = std::io::BufWriter::new(out);
    write_tar(root, entries, &mut buffered, path)?;
    buffered
        .flush()
        .with_context(|| format!("writing {}", path.display()))
}

/// `source` compressed with zstd into `out`, as one frame. ruzstd's encoder panics on an I/O
/// error, so both ends go through [`KeepingError`]: the first error ends the input (reading) or
/// drops the rest of the output (writing), and is returned here.
fn compress_zstd(source: &mut std::fs::File, out: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut reading = KeepingError::new(std::io::BufReader::new(source));
    let mut writing = KeepingError::new(std::io::BufWriter::new(out));
    ruzstd::encoding::compress(
        &mut reading,
        &mut writing,
        ruzstd::encoding::CompressionLevel::Fastest,
    );
    if let Some(e) = reading.error.take() {
        return Err(e);
    }
    let flushed = writing.inner.flush();
    writing.error.take().map_or(flushed, Err)
}

/// A reader or writer that keeps its first error instead of returning it.
struct KeepingError<T> {
    inner: T,
    error: Option<std::io::Error>,
}

impl<T> KeepingError<T> {
    fn new(inner: T) -> Self {
        KeepingError { inner, error: None }
    }
}

impl<R: std::io::Read> std::io::Read for KeepingError<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Ok(0);
        }
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error = Some(e);
                    return Ok(0);
                }
                read => return read,
            }
        }
    }
}

impl<W: std::io::Write> std::io::Write for KeepingError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_none() {
            if let Err(e) = self.inner.write_all(buf) {
                self.error = Some(e);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.error.is_none() {
            if let Err(e) = self.inner.flush() {
                self.error = Some(e);
            }
        }
        Ok(())
    }
}

/// Unpack `archive` as gitlab-runner's cache extractor does: whatever its name (always
/// `cache.zip`), a zstd stream is a `tarzstd` archive (`CACHE_COMPRESSION_FORMAT`), anything
/// else a zip.
fn unpack_archive(archive: &Path, into: &Root, max_bytes: u64) -> Result<Unpacked, ArchiveError> {
    use std::io::BufRead as _;
    let opened = std::fs::File::open(archive).map_err(io_error("opening", archive))?;
    let mut file = std::io::BufReader::new(opened);
    // As the image puller tells its layers apart: by the first bytes, read once.
    let head = file.fill_buf().map_err(io_error("reading", archive))?;
    if head.starts_with(&ZSTD_MAGIC) {
        unpack_tar(ZstdFrames::new(file), archive, into, max_bytes)
    } else {
        unpack_zip(archive, into, max_bytes)
    }
}

/// The archive at `archive` (gitlab-runner's `cache.zip`, zip or tarzstd, or ours) replaces the local folder of
/// `key` (under the key's exclusive lock): unpacked aside, then renamed, so a restore never
/// sees half of it. Another runner's job made it, so it goes through wharf-gitlab's
/// `unpack_zip`, as a dependency's artifacts do: nothing written outside the folder or through
/// a link, permission bits only (never set-user-ID), and it fails whole past `max_bytes`
/// unpacked (a few KiB of zip can claim terabytes). Returns the entries not unpacked, with why.
fn unpack(
    archive: &Path,
    wharf_dir: &Path,
    key: &str,
    max_bytes: u64,
) -> Result<Vec<(String, String)>> {
    let _lock = wharf_run::cache::lock_key(wharf_dir, key, true)?;
    let dir = wharf_run::cache::key_dir(wharf_dir, key);
    let parent = dir.parent().context("the cache folder has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let aside = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a folder in {}", parent.display()))?;
    let into = Root::open(aside.path(), Resolve::NoSymlinks)?;
    let unpacked = match unpack_archive(archive, &into, max_bytes) {
        Ok(unpacked) => unpacked,
        Err(ArchiveError::TooLarge { limit, .. }) => bail!(
            "the archive unpacks to more than {limit} bytes: the runner refuses it so as not to fill its disk; if a job made it, clear the caches (the project's Pipelines page, \"Clear runner caches\")"
        ),
        Err(e) => return Err(e.into()),
    };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    std::fs::rename(aside.keep(), &dir)
        .with_context(|| format!("renaming to {}", dir.display()))?;
    Ok(unpacked.refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(text: &str) -> Result<SharedCache> {
        let config: CacheConfig = toml::from_str(text).unwrap();
        SharedCache::of(&config, "glrt-abcdefghijklmnop").map(|c| c.expect("a Type"))
    }

    const S3: &str = "[s3]\nServerAddress = \"127.0.0.1:7480\"\nAccessKey = \"a\"\nSecretKey = \"s\"\nBucketName = \"b\"\nInsecure = true\n";

    #[test]
    fn object_names_are_gitlab_runners() {
        let own = cache(&format!("Type = \"s3\"\nPath = \"ci/\"\n{S3}")).unwrap();
        assert_eq!(
            own.object(12, "deps-main").unwrap().as_ref(),
            "ci/runner/abcdefghi/project/12/deps-main"
        );
        let shared = cache(&format!("Type = \"s3\"\nShared = true\n{S3}")).unwrap();
        assert_eq!(
            shared.object(12, "feature/x").unwrap().as_ref(),
            "project/12/feature/x"
        );
        assert!(shared.object(12, "../../other").is_none());
        assert_eq!(
            crate::runner_config::short_token("legacy-token-1234"),
            "legacy-t"
        );
        assert!(!format!("{own:?}").contains("\"s\""));
    }

    /// Regression: `gitlab-runner register` writes this cache section into every runner; wharf
    /// refused to start on it ("cache.Type ``: S3 only").
    #[test]
    fn the_cache_section_gitlab_runner_register_writes_means_the_local_cache() {
        let text = r#"
concurrent = 1
[[runners]]
  name = "runner-v2"
  url = "http://gitlab.local/"
  id = 2
  token = "glrt-abcdefghijklmnop"
  executor = "shell"
  [runners.cache]
    MaxUploadedArchiveSize = 0
    [runners.cache.s3]
    [runners.cache.gcs]
    [runners.cache.azure]
"#;
        let config = crate::runner_config::Config::parse(Path::new("config.toml"), text).unwrap();
        let runner = &config.runners[0];
        let cache = runner.cache.as_ref().unwrap();
        assert!(SharedCache::of(cache, &runner.token).unwrap().is_none());
        // Empty tables hold nothing to act on; `MaxUploadedArchiveSize` is acted on.
        let unsupported = config.unsupported_keys();
        assert!(
            !unsupported.iter().any(|k| k.contains(".cache.")),
            "{unsupported:?}"
        );
        let with_gcs = text.replace(
            "[runners.cache.gcs]",
            "[runners.cache.gcs]\n      BucketName = \"b\"",
        );
        let config =
            crate::runner_config::Config::parse(Path::new("config.toml"), &with_gcs).unwrap();
        assert!(
            config
                .unsupported_keys()
                .contains(&"runners[runner-v2].cache.gcs.BucketName".to_string()),
            "{:?}",
            config.unsupported_keys()
        );
    }

    #[test]
    fn an_archive_over_the_limit_is_not_moved() {
        let shared = cache(&format!(
            "Type = \"s3\"\nMaxUploadedArchiveSize = 100\n{S3}"
        ))
        .unwrap();
        assert!(shared.check_size(100).is_ok());
        let err = shared.check_size(101).unwrap_err().to_string();
        assert!(err.contains("MaxUploadedArchiveSize (100 bytes)"), "{err}");
        let unlimited = cache(&format!("Type = \"s3\"\n{S3}")).unwrap();
        assert!(unlimited.check_size(u64::MAX).is_ok());
    }

    #[test]
    fn what_wharf_cannot_use_is_said_when_the_config_loads() {
        let err = |text: &str| cache(text).unwrap_err().to_string();
        assert!(err("Type = \"gcs\"").contains("S3 only"));
        assert!(err("Type = \"s3\"").contains("needs a [runners.cache.s3]"));
        assert!(
            err("Type = \"s3\"\n[s3]\nServerAddress = \"x:1\"\nBucketName = \"b\"\n")
                .contains("AccessKey and SecretKey")
        );
    }

    /// A key's folder with a file, an executable, a long path and a link, in `wharf_dir`.
    fn cached_folder(wharf_dir: &Path, key: &str) -> String {
        let dir = wharf_run::cache::key_dir(wharf_dir, key);
        let long = format!("deps/{}/lib.rs", "nested-".repeat(20));
        std::fs::create_dir_all(dir.join(&long).parent().unwrap()).unwrap();
        std::fs::write(dir.join(&long), "pub fn f() {}\n").unwrap();
        std::fs::write(dir.join("deps/file"), "cached").unwrap();
        std::fs::write(dir.join("deps/tool"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.join("deps/tool"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        std::os::unix::fs::symlink("deps/file", dir.join("link")).unwrap();
        long
    }

    /// What [`cached_folder`] made, unpacked under `key` of `wharf_dir`.
    fn assert_cached_folder(wharf_dir: &Path, key: &str, long: &str) {
        let dir = wharf_run::cache::key_dir(wharf_dir, key);
        assert_eq!(
            std::fs::read_to_string(dir.join("deps/file")).unwrap(),
            "cached"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(long)).unwrap(),
            "pub fn f() {}\n"
        );
        assert_eq!(
            std::fs::read_link(dir.join("link")).unwrap(),
            Path::new("deps/file")
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("deps/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
    }

    #[test]
    fn an_archive_replaces_the_local_folder_of_its_key() {
        for format in [CacheArchive::Zip, CacheArchive::TarZstd] {
            let from = tempfile::tempdir().unwrap();
            let long = cached_folder(from.path(), "k/1");
            let archive = pack(from.path(), "k/1", format).unwrap();
            let magic = std::fs::read(archive.path()).unwrap()[..4].to_vec();
            match format {
                CacheArchive::Zip => assert_eq!(magic, b"PK\x03\x04"),
                CacheArchive::TarZstd => assert_eq!(magic, ZSTD_MAGIC),
            }
            let to = tempfile::tempdir().unwrap();
            let old = wharf_run::cache::key_dir(to.path(), "k/1");
            std::fs::create_dir_all(&old).unwrap();
            std::fs::write(old.join("stale"), "old").unwrap();
            let refused = unpack(archive.path(), to.path(), "k/1", 1 << 20).unwrap();
            assert!(refused.is_empty(), "{format:?}: {refused:?}");
            assert_cached_folder(to.path(), "k/1", &long);
            assert!(!old.join("stale").exists());
        }
    }

    fn quiet_log(dir: &Path) -> JobLog {
        let console = wharf_run::log::Console::new(false, Box::new(std::io::sink()));
        JobLog::create(
            console,
            &dir.join("job.log"),
            wharf_run::mask::Masker::new(Vec::<String>::new()),
        )
        .unwrap()
    }

    /// gitlab-runner's reading of the variable: `tarzstd` in any case; `zipzstd` is a zip
    /// here, and the job's log says so; anything else a zip.
    #[test]
    fn cache_compression_format_picks_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = quiet_log(dir.path());
        let of = |value: Option<&str>, log: &mut JobLog| {
            let mut vars = VarSet::default();
            if let Some(value) = value {
                vars.set_plain("CACHE_COMPRESSION_FORMAT", value);
            }
            CacheArchive::of(&vars, log)
        };
        assert_eq!(of(Some("tarzstd"), &mut log), CacheArchive::TarZstd);
        assert_eq!(of(Some(" TarZstd "), &mut log), CacheArchive::TarZstd);
        assert_eq!(of(None, &mut log), CacheArchive::Zip);
        assert_eq!(of(Some("zip"), &mut log), CacheArchive::Zip);
        assert_eq!(of(Some("rar"), &mut log), CacheArchive::Zip);
        assert_eq!(of(Some("zipzstd"), &mut log), CacheArchive::Zip);
        drop(log);
        let said = std::fs::read_to_string(dir.path().join("job.log")).unwrap();
        assert_eq!(
            said.matches("CACHE_COMPRESSION_FORMAT=zipzstd").count(),
            1,
            "{said}"
        );
    }

    /// A writer that takes `room` bytes, then fails every write (a disk filling up).
    struct FillingUp {
        room: usize,
    }

    impl std::io::Write for FillingUp {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if buf.len() > self.room {
                return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.room -= buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Regression: the tar went through a buffer whose last flush happened when it was
    /// dropped, which drops the error: a disk full at that moment cut the tar, and the cut
    /// archive was uploaded. Here the disk fills up exactly at that last flush.
    #[test]
    fn a_disk_full_at_the_tars_last_bytes_fails_the_archive() {
        let from = tempfile::tempdir().unwrap();
        cached_folder(from.path(), "k");
        let dir = wharf_run::cache::key_dir(from.path(), "k");
        let root = Root::open(&dir, Resolve::NoSymlinks).unwrap();
        let entries = [std::path::PathBuf::from("deps"), "link".into()];
        let mut whole = Vec::new();
        tar_into(&root, &entries, &mut whole, &dir).unwrap();
        let full = FillingUp {
            room: whole.len() - 1,
        };
        let err = tar_into(&root, &entries, full, &dir).unwrap_err();
        assert_eq!(
            err.root_cause().to_string(),
            std::io::Error::from_raw_os_error(libc::ENOSPC).to_string()
        );
    }

    /// ruzstd's encoder panics on an I/O error: a full disk fails the archive instead.
    #[test]
    fn a_full_disk_fails_the_compression_without_a_panic() {
        let mut source = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut source, &vec![1u8; 1 << 20]).unwrap();
        std::io::Seek::rewind(&mut source).unwrap();
        let mut full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let err = compress_zstd(&mut source, &mut full).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    }

    /// The other way round: GNU tar (through the `zstd` tool) reads the tarzstd archive wharf
    /// uploads, as gitlab-runner's extractor (Go's archive/tar and klauspost's zstd) does.
    #[test]
    #[ignore = "needs GNU tar and zstd: run by scripts/test-all.sh"]
    fn gnu_tar_reads_wharfs_tarzstd_archive() {
        let from = tempfile::tempdir().unwrap();
        let long = cached_folder(from.path(), "k");
        let archive = pack(from.path(), "k", CacheArchive::TarZstd).unwrap();
        let to = tempfile::tempdir().unwrap();
        let dest = wharf_run::cache::key_dir(to.path(), "k");
        std::fs::create_dir_all(&dest).unwrap();
        let out = std::process::Command::new("tar")
            .arg("--zstd")
            .arg("-xf")
            .arg(archive.path())
            .arg("-C")
            .arg(&dest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_cached_folder(to.path(), "k", &long);
    }

    #[derive(Clone, Copy)]
    enum Entry<'a> {
        Dir(&'a str),
        File(&'a str, u32, &'a [u8]),
        Link(&'a str, &'a str),
        /// A tar entry of another type (a hard link's target as its link name).
        Special(&'a str, tar::EntryType, &'a str, &'a [u8]),
    }

    /// A zip written with the zip crate directly, as gitlab-runner's cache-archiver writes
    /// `cache.zip`: paths relative to the project folder, folders as `name/` entries.
    fn zip_of(entries: &[Entry<'_>]) -> tempfile::NamedTempFile {
        use std::io::Write as _;
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for entry in entries {
            match entry {
                Entry::Dir(name) => zip.add_directory(*name, options).unwrap(),
                Entry::File(name, mode, data) => {
                    zip.start_file(*name, options.unix_permissions(*mode))
                        .unwrap();
                    zip.write_all(data).unwrap();
                }
                Entry::Link(name, target) => zip.add_symlink(*name, *target, options).unwrap(),
                Entry::Special(..) => unreachable!("a zip has no special files"),
            }
        }
        zip.finish().unwrap();
        file
    }

    /// A tar compressed with zstd in `frames` frames, as gitlab-runner's `tarzstd` cache
    /// archiver writes `cache.zip` (Go's archive/tar: folders as `name/`). Short names go into
    /// the header as they are (`../x` included, as a hostile archiver would write them); long
    /// ones through the tar crate's extension entries.
    fn tar_zstd_of(entries: &[Entry<'_>], frames: usize) -> tempfile::NamedTempFile {
        let mut tar = tar::Builder::new(Vec::new());
        for entry in entries {
            let (name, kind, mode, link, data) = match *entry {
                Entry::Dir(name) => (name, tar::EntryType::Directory, 0o755, None, &b""[..]),
                Entry::File(name, mode, data) => (name, tar::EntryType::Regular, mode, None, data),
                Entry::Link(name, target) => {
                    (name, tar::EntryType::Symlink, 0o777, Some(target), &b""[..])
                }
                Entry::Special(name, kind, target, data) => (name, kind, 0o644, Some(target), data),
            };
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(data.len() as u64);
            if let Some(target) = link.filter(|t| !t.is_empty()) {
                header.set_link_name(target).unwrap();
            }
            if name.len() < 100 {
                header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
                header.set_cksum();
                tar.append(&header, data).unwrap();
            } else {
                tar.append_data(&mut header, name, data).unwrap();
            }
        }
        let plain = tar.into_inner().unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut compressed = Vec::new();
        for part in plain.chunks(plain.len().div_ceil(frames)) {
            compressed.extend(ruzstd::encoding::compress_to_vec(
                part,
                ruzstd::encoding::CompressionLevel::Fastest,
            ));
        }
        std::fs::write(file.path(), compressed).unwrap();
        file
    }

    /// The permission bits (set-ID bits included) of the file at `path`.
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Restoring `archive` into key `k` fails, the local folder of the key stays as it was,
    /// and nothing is left beside it. The error's text.
    fn failed_restore_keeps_the_folder(archive: &Path, max_bytes: u64) -> String {
        let to = tempfile::tempdir().unwrap();
        let old = wharf_run::cache::key_dir(to.path(), "k");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("kept"), "old").unwrap();
        let err = format!(
            "{:#}",
            unpack(archive, to.path(), "k", max_bytes).unwrap_err()
        );
        assert_eq!(std::fs::read_to_string(old.join("kept")).unwrap(), "old");
        let left: Vec<_> = std::fs::read_dir(old.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the key's folder stays: {left:?}");
        // A hostile archive's text can be long: messages are read in part.
        err.chars().take(400).collect()
    }

    /// gitlab-runner's `cache.zip` in either format: paths relative to the project folder,
    /// folders as `name/` entries. `CACHE_COMPRESSION_FORMAT: tarzstd` makes gitlab-runner
    /// upload a zstd tar under the same name; a wharf runner on the same bucket restores it
    /// (it failed as "not a readable zip archive"), here in two frames, as a parallel
    /// compressor writes them, with a long name, a link and a hard link.
    #[test]
    fn gitlab_runners_cache_unpacks_into_the_keys_folder() {
        let long = format!("node_modules/{}/index.js", "deep".repeat(30));
        let common = [
            Entry::Dir("node_modules/"),
            Entry::Dir("node_modules/left-pad/"),
            Entry::File(
                "node_modules/left-pad/index.js",
                0o644,
                b"module.exports = 1;\n",
            ),
            Entry::File("node_modules/.bin-tool", 0o755, b"#!/bin/sh\n"),
        ];
        let tar_only = [
            Entry::Link("node_modules/pad", "left-pad"),
            Entry::Special(
                "node_modules/again.js",
                tar::EntryType::Link,
                "./node_modules/left-pad/index.js",
                b"",
            ),
            Entry::File(&long, 0o644, &[7u8; 300_000]),
        ];
        for (archive, is_tar) in [
            (zip_of(&common), false),
            (tar_zstd_of(&[&common[..], &tar_only[..]].concat(), 2), true),
        ] {
            let to = tempfile::tempdir().unwrap();
            let refused = unpack(archive.path(), to.path(), "deps-main", 1 << 20).unwrap();
            assert!(refused.is_empty(), "{refused:?}");
            let dir = wharf_run::cache::key_dir(to.path(), "deps-main");
            let index = dir.join("node_modules/left-pad/index.js");
            assert_eq!(
                std::fs::read_to_string(index).unwrap(),
                "module.exports = 1;\n"
            );
            assert_eq!(mode_of(&dir.join("node_modules/.bin-tool")), 0o755);
            if is_tar {
                let through_link = dir.join("node_modules/pad/index.js");
                assert_eq!(
                    std::fs::read_to_string(through_link).unwrap(),
                    "module.exports = 1;\n"
                );
                assert_eq!(std::fs::read(dir.join(&long)).unwrap(), [7u8; 300_000]);
                assert_eq!(
                    std::fs::read_to_string(dir.join("node_modules/again.js")).unwrap(),
                    "module.exports = 1;\n",
                    "a hard link is a copy of the file it names"
                );
            }
        }
    }

    /// An archive nobody here wrote: GNU tar piping through the `zstd` tool (long names in
    /// GNU's own extension, a `./` prefix on every name, a hard link it makes for a second
    /// name of one file).
    #[test]
    #[ignore = "needs GNU tar and zstd: run by scripts/test-all.sh"]
    fn a_gnu_tar_zstd_archive_unpacks_like_gitlab_runners() {
        let project = tempfile::tempdir().unwrap();
        let deep = format!("vendor/{}", "pkg-".repeat(40));
        std::fs::create_dir_all(project.path().join(&deep)).unwrap();
        std::fs::write(project.path().join(&deep).join("lib.rs"), "pub fn f() {}\n").unwrap();
        std::fs::write(project.path().join("vendor/a"), "same file").unwrap();
        std::fs::hard_link(
            project.path().join("vendor/a"),
            project.path().join("vendor/b"),
        )
        .unwrap();
        std::os::unix::fs::symlink("a", project.path().join("vendor/c")).unwrap();
        let archive = project.path().join("cache.zip");
        let made = std::process::Command::new("tar")
            .arg("--zstd")
            .arg("-cf")
            .arg(&archive)
            .arg("-C")
            .arg(project.path())
            .arg("./vendor")
            .status()
            .unwrap();
        assert!(made.success());
        let to = tempfile::tempdir().unwrap();
        let refused = unpack(&archive, to.path(), "k", 1 << 20).unwrap();
        let dir = wharf_run::cache::key_dir(to.path(), "k");
        assert_eq!(
            std::fs::read_to_string(dir.join(&deep).join("lib.rs")).unwrap(),
            "pub fn f() {}\n"
        );
        assert_eq!(
            std::fs::read_link(dir.join("vendor/c")).unwrap(),
            Path::new("a")
        );
        assert!(refused.is_empty(), "{refused:?}");
        // GNU tar stores one of the two names as a hard link to the other: a copy here.
        for name in ["vendor/a", "vendor/b"] {
            assert_eq!(
                std::fs::read_to_string(dir.join(name)).unwrap(),
                "same file"
            );
        }
    }

    /// Regression: the tar reader held a GNU long name or a PAX extension whole in memory,
    /// whatever size it claimed (a few KiB of zstd can claim gigabytes); now past 4 MiB the
    /// archive is refused naming why, and the local folder stays.
    #[test]
    fn a_tarzstd_archive_with_an_oversized_header_is_refused() {
        for kind in [tar::EntryType::GNULongName, tar::EntryType::XHeader] {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(16 << 20);
            header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
            header.set_cksum();
            let mut plain = header.as_bytes().to_vec();
            plain.resize(plain.len() + (16 << 20), b'a');
            plain.extend([0; 1024]);
            let archive = tempfile::NamedTempFile::new().unwrap();
            let compressed = ruzstd::encoding::compress_to_vec(
                &plain[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            );
            std::fs::write(archive.path(), compressed).unwrap();
            let err = failed_restore_keeps_the_folder(archive.path(), 1 << 30);
            assert!(err.contains("larger than 4 MiB"), "{kind:?}: {err}");
        }
    }

    /// A few KiB of zip or zstd unpack to whatever they say: past the bound the archive fails
    /// whole, whether the bytes are a file's or those of a tar entry never unpacked (which the
    /// tar reader reads through), and the local folder stays (regression: a few KiB of gzip
    /// unpacked to whatever it claimed, into the runner's disk).
    #[test]
    fn an_archive_unpacking_past_the_bound_fails_and_keeps_the_local_folder() {
        let zeros = vec![0u8; 4 << 20];
        let big = [Entry::File("big", 0o644, &zeros)];
        for bomb in [
            zip_of(&big),
            tar_zstd_of(&big, 1),
            tar_zstd_of(
                &[Entry::Special("fifo", tar::EntryType::Fifo, "", &zeros)],
                1,
            ),
        ] {
            assert!(bomb.as_file().metadata().unwrap().len() < 64 << 10);
            let err = failed_restore_keeps_the_folder(bomb.path(), 1 << 20);
            assert!(err.contains("unpacks to more than 1048576 bytes"), "{err}");
        }
    }

    /// gitlab-runner's `zipzstd` (zip entries compressed with zstd, method 93) is not read:
    /// the restore fails whole with the archive's reason, and the local folder stays.
    #[test]
    fn a_zipzstd_archive_is_refused_whole_and_keeps_the_local_folder() {
        let file = zip_of(&[Entry::File("deps/file", 0o644, b"hello")]);
        // The method, 8 (deflate), becomes 93 (zstd) in the local and the central header.
        let mut bytes = std::fs::read(file.path()).unwrap();
        bytes[8..10].copy_from_slice(&93u16.to_le_bytes());
        let central = bytes.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        bytes[central + 10..central + 12].copy_from_slice(&93u16.to_le_bytes());
        std::fs::write(file.path(), bytes).unwrap();
        let err = failed_restore_keeps_the_folder(file.path(), 1 << 20);
        assert!(err.contains("not a readable zip archive"), "{err}");
    }

    /// Another runner's job made the archive, zip or tarzstd: a link in it never leads a write
    /// outside the key's folder, nor does a name with `..` or an absolute one, and set-user-ID
    /// bits are never kept (regression: the tar unpacking kept them on files root owns). A
    /// tar's hard link to a file outside, devices and FIFOs are refused too.
    #[test]
    fn links_never_lead_outside_and_set_id_bits_are_dropped() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "host file").unwrap();
        let secret_path = secret.to_str().unwrap();
        let common = [
            Entry::Link("up", outside.path().to_str().unwrap()),
            Entry::File("up/secret", 0o644, b"written"),
            Entry::File("../escape", 0o644, b"written"),
            Entry::File("/tmp/absolute-escape", 0o644, b"written"),
            Entry::File("tool", 0o4755, b"#!/bin/sh\n"),
        ];
        let tar_only = [
            Entry::Special("hard", tar::EntryType::Link, secret_path, b""),
            Entry::Special("hard-through-link", tar::EntryType::Link, "up/secret", b""),
            Entry::Special("hard-up", tar::EntryType::Link, "../../etc/passwd", b""),
            Entry::Special("fifo", tar::EntryType::Fifo, "", b""),
        ];
        let refused_by_both = ["up/secret", "../escape", "/tmp/absolute-escape"];
        let refused_by_tar = ["hard", "hard-through-link", "hard-up", "fifo"];
        for (archive, also_refused) in [
            (zip_of(&common), &[][..]),
            (
                tar_zstd_of(&[&common[..], &tar_only[..]].concat(), 1),
                &refused_by_tar[..],
            ),
        ] {
            let to = tempfile::tempdir().unwrap();
            let refused = unpack(archive.path(), to.path(), "k", 1 << 20).unwrap();
            let names: Vec<&str> = refused.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [&refused_by_both[..], also_refused].concat(),
                "{refused:?}"
            );
            assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host file");
            assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
            assert!(!to.path().join("escape").exists());
            assert!(!Path::new("/tmp/absolute-escape").exists());
            let dir = wharf_run::cache::key_dir(to.path(), "k");
            for special in also_refused {
                let made = std::fs::symlink_metadata(dir.join(special));
                assert!(made.is_err(), "{special}");
            }
            assert_eq!(mode_of(&dir.join("tool")), 0o755);
        }
    }

    /// Regression: a bucket that accepted the connection and never answered held the job (and
    /// its cancel) until the runner stopped.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_cancel_stops_a_transfer_the_bucket_never_answers() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = silent.local_addr().unwrap();
        let shared = Arc::new(
            cache(&format!(
                "Type = \"s3\"\n[s3]\nServerAddress = \"{address}\"\nAccessKey = \"a\"\nSecretKey = \"s\"\nBucketName = \"b\"\nInsecure = true\n"
            ))
            .unwrap(),
        );
        let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
        let project = ProjectCache::new(shared, 7, cancel);
        let dir = tempfile::tempdir().unwrap();
        let kept = wharf_run::cache::key_dir(dir.path(), "deps");
        std::fs::create_dir_all(&kept).unwrap();
        std::fs::write(kept.join("file"), "local").unwrap();
        let canceler = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel_tx.send(true).unwrap();
            cancel_tx
        });
        let log_path = dir.path().join("job.log");
        let mut log = quiet_log(dir.path());
        tokio::task::block_in_place(|| {
            project.fetch("deps", dir.path(), &mut log);
            project.send("deps", dir.path(), &VarSet::default(), &mut log);
        });
        drop(log);
        let _cancel_tx = canceler.await.unwrap();
        let text = std::fs::read_to_string(&log_path).unwrap();
        assert!(
            text.contains("\"deps\" not downloaded: the job was canceled"),
            "{text}"
        );
        assert!(
            text.contains("\"deps\" not uploaded: the job was canceled"),
            "{text}"
        );
        assert_eq!(std::fs::read_to_string(kept.join("file")).unwrap(), "local");
    }
}
