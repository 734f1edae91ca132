//! Pull-through caches: repositories under a `[[proxy]]` prefix mirror an upstream registry.
//!
//! - Manifests by digest are immutable: fetched once, verified, served from storage forever.
//! - Manifests by tag are served from storage while younger than the entry's `ttl` (the age of
//!   the stored tag document); after that the upstream is asked (HEAD; GET only when the digest
//!   moved). When it is down, rate-limits or refuses, the cached manifest is served and the log
//!   says so; with nothing cached the client gets an error naming the upstream.
//! - Blobs are fetched once per process however many clients ask at the same time
//!   ([`flight`]), streamed to all of them as they arrive, and written into storage on the way;
//!   the blob becomes visible only once its digest is verified.
//! - Everything is stored as if pushed (tags, revisions, links), so reads, access control and
//!   gc treat cached content like any other; writes to a proxied repository are refused.

mod flight;
mod upstream;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};

use self::flight::{Ending, Flight, FlightError, Flights};
use self::upstream::{Upstream, UpstreamError};
use crate::config::ProxyConfig;
use crate::error::RegistryError;
use crate::names::{Digest, Reference, RepoName};
use crate::services::manifests::StoredManifest;
use crate::services::manifests::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::services::{Registry, keys};
use crate::storage::{ByteStream, Storage, StorageError, hash_in_background};

/// Chunks queued between the upstream download and the storage write.
const STORE_QUEUE_DEPTH: usize = 16;

/// Every `[[proxy]]` entry of the configuration, and the blob fetches running now.
#[derive(Default)]
pub struct Proxies {
    /// Longest prefix first, so `hub/private/` wins over `hub/`.
    upstreams: Vec<Arc<Upstream>>,
    flights: Arc<Flights>,
}

/// A repository of a pull-through cache: its upstream and the name there.
#[derive(Clone)]
pub struct Target {
    upstream: Arc<Upstream>,
    repository: String,
}

/// How to answer a blob request of a proxied repository.
pub enum BlobAnswer {
    /// In storage and linked: answer as for any repository.
    Stored,
    /// Not stored; a HEAD answered from the upstream's length.
    Length(Option<u64>),
    /// Being fetched: these bytes, as they arrive.
    Streaming {
        length: Option<u64>,
        body: ByteStream,
    },
}

impl Proxies {
    pub fn new(configs: &[ProxyConfig]) -> Proxies {
        let mut upstreams: Vec<Arc<Upstream>> = configs
            .iter()
            .map(|c| Arc::new(Upstream::new(c.clone())))
            .collect();
        upstreams.sort_by_key(|u| std::cmp::Reverse(u.config.prefix.len()));
        Proxies {
            upstreams,
            flights: Arc::default(),
        }
    }

    /// The upstream `repo` mirrors, if it is under a `[[proxy]]` prefix.
    pub fn target(&self, repo: &RepoName) -> Option<Target> {
        let name = repo.to_string();
        self.upstreams.iter().find_map(|u| {
            let rest = name.strip_prefix(&u.config.prefix)?;
            Some(Target {
                upstream: u.clone(),
                repository: u.repository(rest),
            })
        })
    }

    /// The refusal of a write (push, delete) to `repo`, if it is in a pull-through cache.
    pub fn write_refusal(&self, repo: &RepoName) -> Option<RegistryError> {
        let target = self.target(repo)?;
        Some(RegistryError::ProxyReadOnly {
            repo: repo.to_string(),
            upstream: target.upstream.config.upstream.clone(),
            prefix: target.upstream.config.prefix.clone(),
        })
    }

    /// The manifest `reference` of proxied `repo`, from storage or the upstream (see the
    /// module docs for when each).
    pub async fn manifest(
        &self,
        registry: &Registry,
        repo: &RepoName,
        target: &Target,
        reference: &Reference,
    ) -> Result<(StoredManifest, Bytes), RegistryError> {
        let upstream = &target.upstream;
        let cached = match registry.get_manifest(repo, reference).await {
            Ok(found) => Some(found),
            Err(RegistryError::ManifestUnknown { .. }) => None,
            Err(e) => return Err(e),
        };
        let tag = match reference {
            Reference::Digest(digest) => {
                if let Some(found) = cached {
                    self.record_pull(registry, repo, target, &found.0.digest)
                        .await;
                    return Ok(found);
                }
                let fetched = upstream
                    .manifest(
                        &target.repository,
                        &digest.to_string(),
                        registry.limits().manifest_max_bytes,
                    )
                    .await
                    .map_err(|e| upstream_error(e, repo, reference))?;
                let actual = Digest::of(&fetched.body);
                if actual != *digest {
                    return Err(RegistryError::Upstream {
                        message: format!(
                            "upstream {} of the pull-through cache {} sent a manifest with digest {actual} for {digest}: nothing was cached",
                            upstream.config.upstream, upstream.config.prefix
                        ),
                    });
                }
                return self
                    .store_manifest(registry, repo, target, None, fetched)
                    .await;
            }
            Reference::Tag(tag) => tag,
        };

        if let Some(found) = &cached {
            let fresh = registry
                .storage()
                .meta_info(&keys::tag(repo, tag))
                .await?
                .is_some_and(|info| younger_than(info.modified, upstream.config.ttl));
            if fresh {
                self.record_pull(registry, repo, target, &found.0.digest)
                    .await;
                return Ok(found.clone());
            }
            match upstream.manifest_digest(&target.repository, tag).await {
                Ok(Some(digest)) if digest == found.0.digest.to_string() => {
                    // Unchanged upstream: the tag is fresh again.
                    registry
                        .storage()
                        .meta_put(&keys::tag(repo, tag), Bytes::from(digest))
                        .await?;
                    self.record_pull(registry, repo, target, &found.0.digest)
                        .await;
                    return Ok(found.clone());
                }
                Ok(_) => {}
                Err(UpstreamError::NotFound(message)) => {
                    return Err(RegistryError::ManifestUnknown {
                        reference: format!("{tag} ({message})"),
                    });
                }
                Err(UpstreamError::Unavailable(message)) => {
                    return Ok(self
                        .serve_stale(registry, repo, target, found, &message)
                        .await);
                }
            }
        }
        let fetched = upstream
            .manifest(
                &target.repository,
                tag,
                registry.limits().manifest_max_bytes,
            )
            .await;
        match (fetched, &cached) {
            (Ok(fetched), _) => {
                self.store_manifest(registry, repo, target, Some(tag), fetched)
                    .await
            }
            (Err(UpstreamError::Unavailable(message)), Some(found)) => Ok(self
                .serve_stale(registry, repo, target, found, &message)
                .await),
            (Err(e), _) => Err(upstream_error(e, repo, reference)),
        }
    }

    async fn serve_stale(
        &self,
        registry: &Registry,
        repo: &RepoName,
        target: &Target,
        found: &(StoredManifest, Bytes),
        message: &str,
    ) -> (StoredManifest, Bytes) {
        tracing::warn!(
            repository = %repo,
            upstream = %target.upstream.config.upstream,
            "serving the cached manifest {}: {message}",
            found.0.digest
        );
        self.record_pull(registry, repo, target, &found.0.digest)
            .await;
        found.clone()
    }

    /// Stores a manifest fetched from the upstream as if it had been pushed (without requiring
    /// its blobs: they are fetched when asked for).
    async fn store_manifest(
        &self,
        registry: &Registry,
        repo: &RepoName,
        target: &Target,
        tag: Option<&str>,
        fetched: upstream::UpstreamManifest,
    ) -> Result<(StoredManifest, Bytes), RegistryError> {
        let digest = Digest::of(&fetched.body);
        let media_type = fetched
            .media_type
            .filter(|t| {
                [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&t.as_str())
            })
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&fetched.body)
                    .ok()?
                    .get("mediaType")?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        // The three writes at once, not one after the other: each is durable (fsync) on the
        // filesystem, and a first pull waits for them. A crash between them leaves a tag or
        // revision without content, which reads as not cached and is fetched again.
        let storage = registry.storage();
        let content = async {
            if storage.blob_info(&digest).await?.is_none() {
                storage.blob_put(&digest, fetched.body.clone()).await
            } else {
                storage.blob_touch(&digest).await
            }
        };
        let revision_key = keys::revision(repo, &digest);
        let revision = storage.meta_put(&revision_key, Bytes::from(media_type.clone()));
        let tagged = async {
            match tag {
                Some(tag) => {
                    storage
                        .meta_put(&keys::tag(repo, tag), Bytes::from(digest.to_string()))
                        .await
                }
                None => Ok(()),
            }
        };
        let (content, revision, tagged) = tokio::join!(content, revision, tagged);
        content?;
        revision?;
        tagged?;
        self.record_pull(registry, repo, target, &digest).await;
        Ok((
            StoredManifest {
                digest,
                media_type,
                size: fetched.body.len() as u64,
            },
            fetched.body,
        ))
    }

    /// Notes that a manifest was pulled, for `expire_unpulled`: at most once per 1/20 of the
    /// expiry (and once an hour), so a busy tag costs one small read per pull, not a write.
    async fn record_pull(
        &self,
        registry: &Registry,
        repo: &RepoName,
        target: &Target,
        digest: &Digest,
    ) {
        let Some(expiry) = target.upstream.config.expire_unpulled else {
            return;
        };
        let every = (expiry / 20).min(Duration::from_secs(3600));
        let key = keys::pulled(repo, digest);
        let storage = registry.storage();
        let recent = matches!(storage.meta_info(&key).await,
            Ok(Some(info)) if younger_than(info.modified, every));
        if !recent {
            if let Err(e) = storage.meta_put(&key, Bytes::new()).await {
                tracing::warn!(repository = %repo, error = %e, "recording the pull time");
            }
        }
    }

    /// The tags of proxied `repo`: the upstream's (its first page) and the cached ones; only the
    /// cached ones, with a warning, when the upstream is unusable.
    pub async fn tags(
        &self,
        registry: &Registry,
        repo: &RepoName,
        target: &Target,
    ) -> Result<Vec<String>, RegistryError> {
        let cached = match registry.tags(repo).await {
            Ok(tags) => tags,
            Err(RegistryError::NameUnknown { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut tags = match target.upstream.tags(&target.repository).await {
            Ok(upstream) => upstream,
            Err(UpstreamError::NotFound(_)) if !cached.is_empty() => Vec::new(),
            Err(UpstreamError::NotFound(_)) => {
                return Err(RegistryError::NameUnknown {
                    name: repo.to_string(),
                });
            }
            Err(UpstreamError::Unavailable(message)) if !cached.is_empty() => {
                tracing::warn!(repository = %repo, "listing the cached tags only: {message}");
                Vec::new()
            }
            Err(UpstreamError::Unavailable(message)) => {
                return Err(RegistryError::Upstream { message });
            }
        };
        tags.extend(cached);
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// A blob of proxied `repo`: from storage, or fetched from the upstream (once per process
    /// however many ask; see [`flight`]).
    pub async fn blob(
        &self,
        registry: &Registry,
        repo: &RepoName,
        target: &Target,
        digest: &Digest,
        head: bool,
    ) -> Result<BlobAnswer, RegistryError> {
        let storage = registry.storage();
        let linked = storage
            .meta_info(&keys::layer_link(repo, digest))
            .await?
            .is_some()
            || storage
                .meta_info(&keys::revision(repo, digest))
                .await?
                .is_some();
        let stored = storage.blob_info(digest).await?;
        let unknown = |message: String| RegistryError::BlobUnknown {
            digest: format!("{digest} ({message})"),
        };
        if stored.is_some() && linked {
            return Ok(BlobAnswer::Stored);
        }
        if stored.is_some() || head {
            // Stored for another repository (the upstream must say this one has it too), or a
            // HEAD, which need not fetch anything.
            let length = target
                .upstream
                .blob_length(&target.repository, &digest.to_string())
                .await
                .map_err(|e| match e {
                    UpstreamError::NotFound(m) => unknown(m),
                    UpstreamError::Unavailable(message) => RegistryError::Upstream { message },
                })?;
            if stored.is_none() {
                return Ok(BlobAnswer::Length(length));
            }
            registry.link_blob(repo, digest).await?;
            return Ok(BlobAnswer::Stored);
        }
        let (flight, start) = self.flights.join_or_create(digest);
        if start {
            let task = FetchTask {
                flight: flight.clone(),
                flights: self.flights.clone(),
                storage: storage.clone(),
                target: target.clone(),
                digest: digest.clone(),
            };
            tokio::spawn(task.run());
        }
        // A link without content is harmless (reads check both), and linking here means
        // whoever finishes the fetch need not know every repository that asked. Written in the
        // background: its fsync stays off the first byte's path, and a missing link only costs
        // a later request one HEAD to the upstream (see above).
        {
            let storage = storage.clone();
            let key = keys::layer_link(repo, digest);
            let value = Bytes::from(digest.to_string());
            tokio::spawn(async move {
                if let Err(e) = storage.meta_put(&key, value).await {
                    tracing::warn!(key, error = %e, "linking a pull-through blob");
                }
            });
        }
        match flight.wait_started().await {
            Ok(length) => match Flight::reader(flight.clone()) {
                Some(body) => Ok(BlobAnswer::Streaming { length, body }),
                // Joined too late to read from the first byte: from storage once it is there.
                None => match flight.ended().await {
                    Ok(()) => Ok(BlobAnswer::Stored),
                    Err(FlightError::NotFound(m)) => Err(unknown(m)),
                    Err(FlightError::Failed(message)) => Err(RegistryError::Upstream { message }),
                },
            },
            Err(FlightError::NotFound(m)) => Err(unknown(m)),
            Err(FlightError::Failed(message)) => Err(RegistryError::Upstream { message }),
        }
    }
}

fn upstream_error(e: UpstreamError, repo: &RepoName, reference: &Reference) -> RegistryError {
    match e {
        UpstreamError::NotFound(message) => RegistryError::ManifestUnknown {
            reference: format!("{reference} ({message})"),
        },
        UpstreamError::Unavailable(message) => RegistryError::Upstream {
            message: format!(
                "{message}; nothing cached for {repo}{}{reference} could answer instead",
                if matches!(reference, Reference::Digest(_)) {
                    "@"
                } else {
                    ":"
                }
            ),
        },
    }
}

fn younger_than(t: SystemTime, age: Duration) -> bool {
    SystemTime::now()
        .duration_since(t)
        .map(|elapsed| elapsed < age)
        .unwrap_or(true)
}

/// One blob download: from the upstream into the flight's readers and into storage at once.
struct FetchTask {
    flight: Arc<Flight>,
    flights: Arc<Flights>,
    storage: Arc<dyn Storage>,
    target: Target,
    digest: Digest,
}

impl FetchTask {
    async fn run(self) {
        let ending = Ending::new(
            self.flights.clone(),
            self.flight.clone(),
            self.digest.clone(),
        );
        let outcome = self.fetch().await;
        if let Err(e) = &outcome {
            tracing::warn!(
                digest = %self.digest,
                upstream = %self.target.upstream.config.upstream,
                "pull-through fetch failed, nothing stored: {}",
                e.message()
            );
        }
        ending.finish(outcome);
    }

    async fn fetch(&self) -> Result<(), FlightError> {
        // Stored by the fetch that just ended (its clients can have all the bytes before it
        // commits): serve it from storage rather than ask the upstream again.
        if let Ok(Some(info)) = self.storage.blob_info(&self.digest).await {
            return self.replay_stored(info.size).await;
        }
        let upstream = &self.target.upstream;
        let digest_text = self.digest.to_string();
        let fetch = upstream
            .blob(&self.target.repository, &digest_text)
            .await
            .map_err(|e| match e {
                UpstreamError::NotFound(m) => FlightError::NotFound(m),
                UpstreamError::Unavailable(m) => FlightError::Failed(m),
            })?;
        let response = fetch.response;
        self.flight.started(response.content_length());
        let read = (response, upstream.clone(), fetch.url);
        let body: ByteStream = Box::pin(futures_util::stream::unfold(
            read,
            |(mut response, upstream, url)| async move {
                match response.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), (response, upstream, url))),
                    Ok(None) => None,
                    Err(e) => {
                        let message = upstream.read_failed(&url, &e);
                        Some((
                            Err(std::io::Error::other(message)),
                            (response, upstream, url),
                        ))
                    }
                }
            },
        ));
        // Hashed on a blocking thread, as uploads are: inline it would hold an async worker
        // for every concurrent fetch and delay the first bytes of the other requests.
        let (mut body, hashing) = hash_in_background(body, Some(Sha256::new()));

        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(STORE_QUEUE_DEPTH);
        let writer = tokio::spawn(write_blob(self.storage.clone(), self.digest.clone(), rx));
        let mut failure = None;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    self.flight.push(chunk.clone());
                    if tx.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    let _ = tx.send(Err(e)).await;
                    failure = Some(message);
                    break;
                }
            }
        }
        drop(body);
        let hasher = hashing
            .await
            .ok()
            .flatten()
            .ok_or_else(|| FlightError::Failed("the hashing thread failed".into()))?;
        let actual = Digest::parse(&format!("sha256:{}", hex::encode(hasher.finalize())))
            .map_err(|e| FlightError::Failed(e.to_string()))?;
        let verified = failure.is_none() && actual == self.digest;
        drop(tx);
        let written = writer
            .await
            .map_err(|e| FlightError::Failed(format!("the storage writer failed: {e}")))?;
        if let Some(message) = failure {
            discard(&*self.storage, session_of(written)).await;
            return Err(FlightError::Failed(message));
        }
        if !verified {
            discard(&*self.storage, session_of(written)).await;
            return Err(FlightError::Failed(format!(
                "upstream {} of the pull-through cache {} sent content with digest {actual} for blob {}: nothing was stored",
                upstream.config.upstream, upstream.config.prefix, self.digest
            )));
        }
        match written {
            Ok(Written::Blob) => Ok(()),
            Ok(Written::Upload(id)) => self
                .storage
                .upload_commit(&id, &self.digest)
                .await
                .map_err(|e| FlightError::Failed(format!("storing blob {}: {e}", self.digest))),
            Err((e, id)) => {
                discard(&*self.storage, id).await;
                Err(FlightError::Failed(format!(
                    "storing blob {}: {e}",
                    self.digest
                )))
            }
        }
    }
}

impl FetchTask {
    async fn replay_stored(&self, size: u64) -> Result<(), FlightError> {
        use futures_util::StreamExt as _;
        let failed = |e: &dyn std::fmt::Display| {
            FlightError::Failed(format!("reading stored blob {}: {e}", self.digest))
        };
        let mut stream = self
            .storage
            .blob_read(&self.digest, 0, size)
            .await
            .map_err(|e| failed(&e))?;
        self.flight.started(Some(size));
        while let Some(chunk) = stream.next().await {
            self.flight.push(chunk.map_err(|e| failed(&e))?);
        }
        Ok(())
    }
}

/// What the storage writer left: a verified blob (S3's streaming put checks the digest
/// itself), or an upload session to commit once the digest is checked here.
enum Written {
    Blob,
    Upload(String),
}

async fn write_blob(
    storage: Arc<dyn Storage>,
    digest: Digest,
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Result<Written, (StorageError, Option<String>)> {
    let stream: ByteStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    if storage.puts_verified_blobs() {
        return match storage.blob_put_verified(&digest, stream).await {
            Ok(_) => Ok(Written::Blob),
            Err(e) => Err((e, None)),
        };
    }
    // An upload session is the backend's atomic "bytes now, blob later" (expired by upkeep
    // if this process dies before committing it).
    let id = format!("{:032x}", rand::random::<u128>());
    let info = serde_json::json!({
        "repo": "_proxy",
        "started_unix": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "subject": "pull-through cache",
    });
    if let Err(e) = storage
        .upload_create(&id, Bytes::from(info.to_string()))
        .await
    {
        return Err((e, None));
    }
    match storage.upload_append(&id, 0, stream).await {
        Ok(_) => Ok(Written::Upload(id)),
        Err(e) => Err((e, Some(id))),
    }
}

/// The upload session a write left behind, if any (a streaming put that saw a stream error or
/// a wrong digest stored nothing).
fn session_of(written: Result<Written, (StorageError, Option<String>)>) -> Option<String> {
    match written {
        Ok(Written::Upload(id)) | Err((_, Some(id))) => Some(id),
        Ok(Written::Blob) | Err((_, None)) => None,
    }
}

/// Removes what a failed fetch wrote.
async fn discard(storage: &dyn Storage, session: Option<String>) {
    let Some(id) = session else {
        return;
    };
    if let Err(e) = storage.upload_delete(&id).await {
        tracing::warn!(upload = %id, error = %e, "removing a failed pull-through fetch");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(prefix: &str, upstream: &str, upstream_prefix: &str) -> ProxyConfig {
        let text = format!(
            "[[proxy]]\nprefix = {prefix:?}\nupstream = {upstream:?}\nupstream_prefix = {upstream_prefix:?}\n"
        );
        crate::config::Config::parse(&text, std::path::Path::new("r.toml"))
            .expect("valid")
            .proxy
            .remove(0)
    }

    fn mapped(proxies: &Proxies, name: &str) -> Option<(String, String)> {
        let target = proxies.target(&RepoName::parse(name).expect("name"))?;
        Some((
            target.upstream.config.upstream.clone(),
            target.repository.clone(),
        ))
    }

    #[test]
    fn prefixes_map_to_upstream_repositories_longest_first() {
        let proxies = Proxies::new(&[
            entry("hub", "https://registry-1.docker.io", ""),
            entry("hub/team/", "http://127.0.0.1:5001", "mirrored"),
            entry("quay/", "https://quay.io", ""),
        ]);
        let hub = "https://registry-1.docker.io".to_string();
        // Docker Hub's official images live under library/.
        assert_eq!(
            mapped(&proxies, "hub/node"),
            Some((hub.clone(), "library/node".into()))
        );
        assert_eq!(
            mapped(&proxies, "hub/bitnami/redis"),
            Some((hub, "bitnami/redis".into()))
        );
        assert_eq!(
            mapped(&proxies, "hub/team/app"),
            Some(("http://127.0.0.1:5001".into(), "mirrored/app".into()))
        );
        // Elsewhere no library/ is added.
        assert_eq!(
            mapped(&proxies, "quay/coreos"),
            Some(("https://quay.io".into(), "coreos".into()))
        );
        assert_eq!(mapped(&proxies, "hubx/node"), None);
        assert_eq!(mapped(&proxies, "hub"), None);
        assert_eq!(mapped(&proxies, "team/app"), None);
        let refused = proxies
            .write_refusal(&RepoName::parse("hub/node").expect("name"))
            .expect("read-only");
        assert!(
            refused
                .to_string()
                .contains("pull-through cache of https://registry-1.docker.io"),
            "{refused}"
        );
        assert!(
            proxies
                .write_refusal(&RepoName::parse("team/app").expect("name"))
                .is_none()
        );
    }
}
