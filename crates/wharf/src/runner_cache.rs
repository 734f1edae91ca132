//! `[runners.cache]` with `Type = "s3"`: the distributed cache that lets runners on several
//! machines share caches, as gitlab-runner's (`cache/cache.go`, `cache/s3`). The runner signs
//! a URL for each object (GET to restore, PUT to save) and moves the archive through it; the
//! object names are gitlab-runner's: `<Path>/runner/<short token>/project/<id>/<key>`, or
//! `<Path>/project/<id>/<key>` when `Shared`.
//!
//! It syncs the runner's local cache (wharf-run's `.wharf/cache/<key>/` folders, under the same
//! per-key locks): before the job, a key found in S3 replaces the local folder; after it, the
//! folder the job saved is uploaded. The archive is a gzipped tar of that folder (not
//! gitlab-runner's `cache.zip`): wharf runners share caches with each other, not with
//! gitlab-runner. The secret key is never logged; signed URLs are not either.

use crate::runner_config::CacheConfig;
use anyhow::{Context, Result, bail};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::signer::Signer as _;
use std::path::Path;
use std::time::Duration;
use wharf_ci::{CachePolicy, Job};
use wharf_run::Console;

/// How long a signed URL is good for (gitlab-runner: the job's timeout; one transfer here).
const URL_EXPIRY: Duration = Duration::from_secs(3600);

pub(crate) struct SharedCache {
    store: AmazonS3,
    /// Where objects go: `bucket` for messages.
    bucket: String,
    /// `Path`, then `runner/<short token>` unless `Shared`.
    prefix: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCache")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// gitlab-runner's `helpers.ShortenToken`: the token's first characters after its prefix.
fn short_token(token: &str) -> &str {
    let after =
        |prefix: &str, len: usize| token.strip_prefix(prefix).and_then(|rest| rest.get(..len));
    after("glrt-", 9)
        .or_else(|| after("glrtr-", 9))
        .or_else(|| after("glcbt-", 9))
        .or_else(|| token.get(..8))
        .unwrap_or(token)
}

impl SharedCache {
    /// From `[runners.cache]`; errors name the key (the caller adds the file and runner).
    pub fn of(config: &CacheConfig, token: &str) -> Result<SharedCache> {
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
            prefix.extend(["runner", short_token(token)]);
        }
        Ok(SharedCache {
            store,
            bucket: s3.bucket_name.clone(),
            prefix: prefix.join("/"),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(15))
                .build()
                .context("starting the HTTP client of the shared cache")?,
        })
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

    /// Before the job: each cache it pulls, from S3 into the local cache folder.
    pub async fn download(
        &self,
        job: &Job,
        keys: &[String],
        project_id: u64,
        wharf_dir: &Path,
        console: &Console,
    ) {
        for (cache, key) in job.cache.iter().zip(keys) {
            if cache.policy == CachePolicy::Push || key.is_empty() {
                continue;
            }
            match self.download_one(project_id, key, wharf_dir).await {
                Ok(true) => console.line(&format!(
                    "Downloaded cache \"{key}\" from the shared cache (bucket {})",
                    self.bucket
                )),
                Ok(false) => console.line(&format!(
                    "No cache \"{key}\" in the shared cache (bucket {}) yet",
                    self.bucket
                )),
                Err(e) => console.line(&format!(
                    "WARNING: shared cache \"{key}\" not downloaded: {e:#}"
                )),
            }
        }
    }

    async fn download_one(&self, project_id: u64, key: &str, wharf_dir: &Path) -> Result<bool> {
        let Some(object) = self.object(project_id, key) else {
            bail!("the key climbs out of the project's folder: remove `../` from it");
        };
        let url = self.signed(http::Method::GET, &object).await?;
        let answer =
            self.http.get(url).send().await.map_err(|e| {
                anyhow::anyhow!("GET from bucket {}: {}", self.bucket, e.without_url())
            })?;
        match answer.status().as_u16() {
            404 => return Ok(false),
            200 => {}
            status => bail!("GET from bucket {}: HTTP {status}", self.bucket),
        }
        let bytes = answer
            .bytes()
            .await
            .map_err(|e| anyhow::anyhow!("GET from bucket {}: {}", self.bucket, e.without_url()))?;
        let wharf_dir = wharf_dir.to_path_buf();
        let key = key.to_string();
        tokio::task::spawn_blocking(move || unpack(&bytes, &wharf_dir, &key)).await??;
        Ok(true)
    }

    /// After the job: each cache it pushes (and whose `when` matches), from the local cache
    /// folder the job saved to S3.
    pub async fn upload(
        &self,
        job: &Job,
        keys: &[String],
        passed: bool,
        project_id: u64,
        wharf_dir: &Path,
        console: &Console,
    ) {
        for (cache, key) in job.cache.iter().zip(keys) {
            if cache.policy == CachePolicy::Pull
                || key.is_empty()
                || !wharf_run::cache::when_matches(cache.when, passed)
            {
                continue;
            }
            let dir = wharf_run::cache::key_dir(wharf_dir, key);
            if !dir.is_dir() {
                continue;
            }
            match self.upload_one(project_id, key, wharf_dir).await {
                Ok(size) => console.line(&format!(
                    "Uploaded cache \"{key}\" to the shared cache (bucket {}, {size} bytes)",
                    self.bucket
                )),
                Err(e) => console.line(&format!(
                    "WARNING: shared cache \"{key}\" not uploaded: {e:#}"
                )),
            }
        }
    }

    async fn upload_one(&self, project_id: u64, key: &str, wharf_dir: &Path) -> Result<usize> {
        let Some(object) = self.object(project_id, key) else {
            bail!("the key climbs out of the project's folder: remove `../` from it");
        };
        let archive = {
            let wharf_dir = wharf_dir.to_path_buf();
            let key = key.to_string();
            tokio::task::spawn_blocking(move || pack(&wharf_dir, &key)).await??
        };
        let size = archive.len();
        let url = self.signed(http::Method::PUT, &object).await?;
        let answer =
            self.http.put(url).body(archive).send().await.map_err(|e| {
                anyhow::anyhow!("PUT to bucket {}: {}", self.bucket, e.without_url())
            })?;
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

/// The local folder of `key`, as a gzipped tar (read under the key's shared lock).
fn pack(wharf_dir: &Path, key: &str) -> Result<Vec<u8>> {
    let _lock = wharf_run::cache::lock_key(wharf_dir, key, false)?;
    let dir = wharf_run::cache::key_dir(wharf_dir, key);
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut archive = tar::Builder::new(gzip);
    archive.follow_symlinks(false);
    archive
        .append_dir_all(".", &dir)
        .with_context(|| format!("archiving {}", dir.display()))?;
    Ok(archive.into_inner()?.finish()?)
}

/// An archive from S3 replaces the local folder of `key` (under the key's exclusive lock):
/// unpacked aside, then renamed, so a restore never sees half of it.
fn unpack(bytes: &[u8], wharf_dir: &Path, key: &str) -> Result<()> {
    let _lock = wharf_run::cache::lock_key(wharf_dir, key, true)?;
    let dir = wharf_run::cache::key_dir(wharf_dir, key);
    let parent = dir.parent().context("the cache folder has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let aside = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a folder in {}", parent.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive.set_preserve_permissions(true);
    // `unpack` keeps every entry inside the folder (no absolute paths, no `..`).
    archive
        .unpack(aside.path())
        .context("unpacking the shared cache's archive")?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    std::fs::rename(aside.keep(), &dir)
        .with_context(|| format!("renaming to {}", dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(text: &str) -> Result<SharedCache> {
        let config: CacheConfig = toml::from_str(text).unwrap();
        SharedCache::of(&config, "glrt-abcdefghijklmnop")
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
        assert_eq!(short_token("legacy-token-1234"), "legacy-t");
        assert!(!format!("{own:?}").contains("\"s\""));
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

    #[test]
    fn an_archive_replaces_the_local_folder_of_its_key() {
        let from = tempfile::tempdir().unwrap();
        let dir = wharf_run::cache::key_dir(from.path(), "k/1");
        std::fs::create_dir_all(dir.join("deps")).unwrap();
        std::fs::write(dir.join("deps/file"), "cached").unwrap();
        let archive = pack(from.path(), "k/1").unwrap();
        let to = tempfile::tempdir().unwrap();
        let old = wharf_run::cache::key_dir(to.path(), "k/1");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("stale"), "old").unwrap();
        unpack(&archive, to.path(), "k/1").unwrap();
        assert_eq!(
            std::fs::read_to_string(old.join("deps/file")).unwrap(),
            "cached"
        );
        assert!(!old.join("stale").exists());
    }
}
