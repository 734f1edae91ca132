//! Pull-through caches: repositories under a `[[proxy]]` prefix mirror an upstream registry.
//!
//! - Manifests by digest are immutable: fetched once, verified, served from storage forever.
//! - Manifests by tag are served from storage while younger than the entry's `ttl` (the age of
//!   the stored tag document); after that the upstream is asked (HEAD; GET only when the digest
//!   moved). When it is down, rate-limits or refuses, the cached manifest is served and the log
//!   says so; with nothing cached the client gets an error naming the upstream. Concurrent
//!   requests for the same manifest send one request upstream ([`refresh`]); a fetched
//!   manifest is answered at once and stored in the background, with gc's protocol
//!   (`services::gc`: its content used, its revision kept) like a push.
//! - Blobs are fetched once per process however many clients ask at the same time
//!   ([`flight`]), streamed to all of them as they arrive (from the download's upload file for
//!   bytes no longer held in memory), and written into storage on the way;
//!   the blob becomes visible only once its digest is verified. A request through another
//!   repository joins a running fetch only once its own upstream repository has the blob.
//! - Everything is stored as if pushed (tags, revisions, links), so reads, access control and
//!   gc treat cached content like any other; writes to a proxied repository are refused.
//! - Writes in the background (manifests, fresh tags, links, blob fetches and their commits) are
//!   tracked: a graceful shutdown waits for them, within its timeout
//!   ([`Proxies::finish_background_writes`]), so a manifest answered just before a SIGTERM is
//!   stored.

mod flight;
mod refresh;
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
use crate::services::{Registry, gc, keys};
use crate::storage::{ByteStream, Storage, StorageError};

/// Chunks queued between the upstream download and the storage write: enough that a slow disk
/// (an fsync of the background flusher) does not hold the clients' bytes back. The chunks are
/// the same `Bytes` the flight holds for its readers, not copies.
const STORE_QUEUE_DEPTH: usize = 64;

/// Every `[[proxy]]` entry of the configuration, and the blob fetches running now.
#[derive(Default)]
pub struct Proxies {
    /// Longest prefix first, so `hub/private/` wins over `hub/`.
    upstreams: Vec<Arc<Upstream>>,
    flights: Arc<Flights>,
    manifest_flights: Arc<refresh::ManifestFlights>,
    /// The writes running in the background, for the shutdown to wait for.
    background: tokio_util::task::TaskTracker,
}

/// What storage holds for a manifest request of a proxied repository.
enum Cached {
    /// Servable as is: by digest, or a tag younger than the TTL.
    Fresh((StoredManifest, Bytes)),
    /// A tag past its TTL: the upstream is asked whether it moved.
    Stale((StoredManifest, Bytes)),
    Missing,
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
            manifest_flights: Arc::default(),
            background: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Waits until the writes running in the background are done, or until `deadline`; true
    /// when they are. For a graceful shutdown, once no request runs: what is not done by then
    /// is lost with the process (fetched again on its next pull).
    pub async fn finish_background_writes(&self, deadline: tokio::time::Instant) -> bool {
        self.background.close();
        tokio::time::timeout_at(deadline, self.background.wait())
            .await
            .is_ok()
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
    /// module docs for when each). Requests that need the upstream for the same manifest at
    /// the same time share one upstream request ([`refresh`]).
    pub async fn manifest(
        &self,
        registry: &Registry,
        repo: &RepoName,
        target: &Target,
        reference: &Reference,
    ) -> Result<(StoredManifest, Bytes), RegistryError> {
        if let Cached::Fresh(found) = self.cached(registry, repo, target, reference).await? {
            return Ok(found);
        }
        let key = match reference {
            Reference::Digest(digest) => format!("{repo}@{digest}"),
            Reference::Tag(tag) => format!("{repo}:{tag}"),
        };
        self.manifest_flights
            .run(key, |hold| async move {
                // Looked up again by the request that leads: a refresh that ended (and stored
                // its manifest) between the lookup above and joining would otherwise be
                // followed by a second one.
                let cached = match self.cached(registry, repo, target, reference).await {
                    Ok(Cached::Fresh(found)) => {
                        return refresh::Outcome::new(Ok(found), Some(hold));
                    }
                    Ok(Cached::Stale(found)) => Some(found),
                    Ok(Cached::Missing) => None,
                    Err(e) => return refresh::Outcome::new(Err(e), Some(hold)),
                };
                let (answer, hold) = self
                    .refresh_manifest(registry, repo, target, reference, cached, hold)
                    .await;
                refresh::Outcome::new(answer, hold)
            })
            .await
    }

    /// The stored manifest `reference` of proxied `repo`, and whether it may be served without
    /// asking the upstream (by digest always, by tag within the TTL); a pull is recorded then.
    async fn cached(
        &self,
        registry: &Registry,
        repo: &RepoName,
        target: &Target,
        reference: &Reference,
    ) -> Result<Cached, RegistryError> {
        let found = match registry.get_manifest(repo, reference).await {
            Ok(found) => found,
            Err(RegistryError::ManifestUnknown { .. }) => return Ok(Cached::Missing),
            Err(e) => return Err(e),
        };
        let fresh = match reference {
            Reference::Digest(_) => true,
            Reference::Tag(tag) => registry
                .storage()
                .meta_info(&keys::tag(repo, tag))
                .await?
                .is_some_and(|info| younger_than(info.modified, target.upstream.config.ttl)),
        };
        if !fresh {
            return Ok(Cached::Stale(found));
        }
        self.record_pull(registry, repo, target, &found.0.digest)
            .await;
        Ok(Cached::Fresh(found))
    }

    /// Asks the upstream for a manifest not cached, or cached by a tag past its TTL (the only
    /// request doing so for this manifest now). The hold comes back unless a background write
    /// took it, to be released once every waiter has the answer.
    async fn refresh_manifest(
        &self,
        registry: &Registry,
        repo: &RepoName,
        target: &Target,
        reference: &Reference,
        cached: Option<(StoredManifest, Bytes)>,
        hold: refresh::Hold,
    ) -> (refresh::Answer, Option<refresh::Hold>) {
        let upstream = &target.upstream;
        let limit = registry.limits().manifest_max_bytes;
        let tag = match reference {
            Reference::Digest(digest) => {
                let fetched = match upstream
                    .manifest(&target.repository, &digest.to_string(), limit)
                    .await
                {
                    Ok(fetched) => fetched,
                    Err(e) => return (Err(upstream_error(e, repo, reference)), Some(hold)),
                };
                let actual = Digest::of(&fetched.body);
                if actual != *digest {
                    let message = format!(
                        "upstream {} of the pull-through cache {} sent a manifest with digest {actual} for {digest}: nothing was cached",
                        upstream.config.upstream, upstream.config.prefix
                    );
                    return (Err(RegistryError::Upstream { message }), Some(hold));
                }
                let stored = self.store_manifest(registry, repo, target, None, fetched, hold);
                return (Ok(stored), None);
            }
            Reference::Tag(tag) => tag,
        };

        if let Some(found) = &cached {
            match upstream.manifest_digest(&target.repository, tag).await {
                Ok(Some(digest)) if digest == found.0.digest.to_string() => {
                    // Unchanged upstream: the tag is fresh again (written in the background,
                    // the flight held until then).
                    let storage = registry.storage().clone();
                    let key = keys::tag(repo, tag);
                    self.background.spawn(async move {
                        if let Err(e) = storage.meta_put(&key, Bytes::from(digest)).await {
                            tracing::warn!(key, error = %e, "marking a pull-through tag fresh");
                        }
                        drop(hold);
                    });
                    self.record_pull(registry, repo, target, &found.0.digest)
                        .await;
                    return (Ok(found.clone()), None);
                }
                Ok(_) => {}
                Err(UpstreamError::NotFound(message)) => {
                    let e = RegistryError::ManifestUnknown {
                        reference: format!("{tag} ({message})"),
                    };
                    return (Err(e), Some(hold));
                }
                Err(UpstreamError::Unavailable(message)) => {
                    let stale = self
                        .serve_stale(registry, repo, target, found, &message)
                        .await;
                    return (Ok(stale), Some(hold));
                }
            }
        }
        match (
            upstream.manifest(&target.repository, tag, limit).await,
            &cached,
        ) {
            (Ok(fetched), _) => {
                let stored = self.store_manifest(registry, repo, target, Some(tag), fetched, hold);
                (Ok(stored), None)
            }
            (Err(UpstreamError::Unavailable(message)), Some(found)) => {
                let stale = self
                    .serve_stale(registry, repo, target, found, &message)
                    .await;
                (Ok(stale), Some(hold))
            }
            (Err(e), _) => (Err(upstream_error(e, repo, reference)), Some(hold)),
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
    /// its blobs: they are fetched when asked for), in the background: the answer does not
    /// wait for the durable writes. `hold` keeps the flight open (under the digest too) until
    /// they are done, so requests meanwhile get this answer rather than ask the upstream again.
    fn store_manifest(
        &self,
        registry: &Registry,
        repo: &RepoName,
        target: &Target,
        tag: Option<&str>,
        fetched: upstream::UpstreamManifest,
        mut hold: refresh::Hold,
    ) -> (StoredManifest, Bytes) {
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
        hold.also_under(format!("{repo}@{digest}"));
        let storage = registry.storage().clone();
        let expire_unpulled = target.upstream.config.expire_unpulled;
        let (repo, tag) = (repo.clone(), tag.map(str::to_string));
        let (body, stored_digest, stored_type) =
            (fetched.body.clone(), digest.clone(), media_type.clone());
        self.background.spawn(async move {
            // The three writes at once: each is durable (fsync) on the filesystem. A crash
            // between them leaves a tag or revision without content, which reads as not cached
            // and is fetched again. Content and revision go through gc's protocol as a push's
            // do (`services::gc`), so a gc running on any replica keeps them or this store
            // fails (and the manifest is fetched again).
            let digest = stored_digest;
            let content = async {
                // Stored when missing (or just taken by a gc): a blob written now is young.
                if gc::use_blob(&*storage, &digest, false).await?.is_none() {
                    storage.blob_put(&digest, body).await?;
                }
                Ok::<(), RegistryError>(())
            };
            let revision = gc::keep_revision(&*storage, &repo, &digest, Bytes::from(stored_type));
            let tagged = async {
                match &tag {
                    Some(tag) => Ok(storage
                        .meta_put(&keys::tag(&repo, tag), Bytes::from(digest.to_string()))
                        .await?),
                    None => Ok::<(), RegistryError>(()),
                }
            };
            let (content, revision, tagged) = tokio::join!(content, revision, tagged);
            if let Err(e) = content.and(revision).and(tagged) {
                tracing::warn!(repository = %repo, %digest, error = %e,
                    "storing a pull-through manifest; it is fetched again on its next pull");
            } else {
                record_pull(&*storage, &repo, expire_unpulled, &digest).await;
            }
            drop(hold);
        });
        (
            StoredManifest {
                digest,
                media_type,
                size: fetched.body.len() as u64,
            },
            fetched.body,
        )
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
        let expiry = target.upstream.config.expire_unpulled;
        record_pull(&**registry.storage(), repo, expiry, digest).await;
    }

    /// The tags of proxied `repo`: the upstream's (every page) and the cached ones; only the
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
        // At once, not one after the other: each is a trip to a blocking thread (or to S3).
        let (link_key, revision_key) =
            (keys::layer_link(repo, digest), keys::revision(repo, digest));
        let (layer_link, revision, stored) = tokio::join!(
            storage.meta_info(&link_key),
            storage.meta_info(&revision_key),
            storage.blob_info(digest),
        );
        let linked = layer_link?.is_some() || revision?.is_some();
        let stored = stored?;
        let unknown = |message: String| RegistryError::BlobUnknown {
            digest: format!("{digest} ({message})"),
        };
        if stored.is_some() && linked {
            return Ok(BlobAnswer::Stored);
        }
        // Whether this repository's upstream has the blob, with this repository's credentials.
        let upstream_length = || async {
            target
                .upstream
                .blob_length(&target.repository, &digest.to_string())
                .await
                .map_err(|e| match e {
                    UpstreamError::NotFound(m) => unknown(m),
                    UpstreamError::Unavailable(message) => RegistryError::Upstream { message },
                })
        };
        if stored.is_some() || head {
            // Stored for another repository (the upstream must say this one has it too), or a
            // HEAD, which need not fetch anything.
            let length = upstream_length().await?;
            if stored.is_none() {
                return Ok(BlobAnswer::Length(length));
            }
            registry.link_blob(repo, digest).await?;
            return Ok(BlobAnswer::Stored);
        }
        let repo_name = repo.to_string();
        let (flight, start) = self.flights.join_or_create(digest, &repo_name);
        if !start && flight.repository() != repo_name {
            // Started through another repository: join only once this one's upstream says it
            // has the blob, as if it were stored for the other repository (above).
            upstream_length().await?;
        }
        if start {
            let task = FetchTask {
                flight: flight.clone(),
                flights: self.flights.clone(),
                storage: storage.clone(),
                target: target.clone(),
                digest: digest.clone(),
            };
            self.background.spawn(task.run());
        }
        // A link without content is harmless (reads check both), and linking here means
        // whoever finishes the fetch need not know every repository that asked. Written in the
        // background: its fsync stays off the first byte's path, and a missing link only costs
        // a later request one HEAD to the upstream (see above).
        {
            let storage = storage.clone();
            let key = keys::layer_link(repo, digest);
            let value = Bytes::from(digest.to_string());
            self.background.spawn(async move {
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

/// [`Proxies::record_pull`], for a background task.
async fn record_pull(
    storage: &dyn Storage,
    repo: &RepoName,
    expire_unpulled: Option<Duration>,
    digest: &Digest,
) {
    let Some(expiry) = expire_unpulled else {
        return;
    };
    let every = (expiry / 20).min(Duration::from_secs(3600));
    let key = keys::pulled(repo, digest);
    let recent = matches!(storage.meta_info(&key).await,
        Ok(Some(info)) if younger_than(info.modified, every));
    if !recent && let Err(e) = storage.meta_put(&key, Bytes::new()).await {
        tracing::warn!(repository = %repo, error = %e, "recording the pull time");
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
                "pull-through cache: nothing stored: {}",
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
        // hyper reads no further than a Content-Length; without one, the count below stops it.
        let limit = upstream.config.max_blob_size.as_u64();
        if let Some(length) = response.content_length()
            && length > limit
        {
            return Err(FlightError::Failed(upstream.blob_too_large(
                &fetch.url,
                &format!("it announces {length} bytes"),
            )));
        }
        self.flight.started(response.content_length());
        let read = (response, upstream.clone(), fetch.url, 0u64);
        let mut body: ByteStream = Box::pin(futures_util::stream::unfold(
            read,
            move |(mut response, upstream, url, received)| async move {
                let item =
                    match response.chunk().await {
                        Ok(Some(chunk)) if received + chunk.len() as u64 > limit => Err(upstream
                            .blob_too_large(&url, "it sends more, without a Content-Length")),
                        Ok(Some(chunk)) => Ok(chunk),
                        Ok(None) => return None,
                        Err(e) => Err(upstream.read_failed(&url, &e)),
                    };
                let received = received + item.as_ref().map_or(0, |c| c.len() as u64);
                Some((
                    item.map_err(std::io::Error::other),
                    (response, upstream, url, received),
                ))
            },
        ));
        // Hashed here, chunk by chunk as it arrives (a chunk is tens of µs of SHA-256): a
        // hashing thread of its own cost a hand-off and a wake-up per chunk, and measured 3-10 %
        // more of wharf's CPU per cold pull (bench/README.md, twelfth session).
        let mut hasher = Sha256::new();

        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(STORE_QUEUE_DEPTH);
        let writer = tokio::spawn(write_blob(
            self.storage.clone(),
            self.digest.clone(),
            rx,
            self.flight.clone(),
        ));
        let mut failure = None;
        let mut storing = true;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    hasher.update(&chunk);
                    self.flight.push(chunk.clone());
                    if storing && tx.send(Ok(chunk)).await.is_err() {
                        // The storage writer failed (a full disk): the clients still get the
                        // whole blob, checked; only the cache goes without it. Stopping here
                        // cut every client's pull short, and the digest of the part received
                        // was then logged as the upstream's fault.
                        storing = false;
                        self.flight.unstored();
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
        let actual = Digest::from_hasher(hasher);
        let verified = failure.is_none() && actual == self.digest;
        if verified {
            // The readers have every byte, checked: they end now, not after the storage's
            // fsync and rename below (a client waits for the end before reusing its connection).
            self.flight.verified();
        }
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
                // This writer's own session: no other request appends to it.
                .upload_commit(&id, &self.digest, None)
                .await
                .map_err(|e| FlightError::Failed(format!("storing blob {}: {e}", self.digest))),
            Err((e, id)) => {
                // Readers behind may still be reading the part written: removed after them.
                let (flight, storage) = (self.flight.clone(), self.storage.clone());
                tokio::spawn(async move {
                    flight.readers_gone().await;
                    discard(&*storage, id).await;
                });
                Err(FlightError::Failed(format!(
                    "blob {} was served but not cached: storing it failed: {e}",
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

/// Writes the download into storage; where the upload can be read while it is written, the
/// flight's readers that fall behind read it from there (see [`Flight::backed_by`]).
async fn write_blob(
    storage: Arc<dyn Storage>,
    digest: Digest,
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    flight: Arc<Flight>,
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
    let (progress, readable) = tokio::sync::watch::channel(0);
    if storage.reads_uploads_while_appending() {
        let file = flight::FileBacking {
            storage: storage.clone(),
            digest,
            session: id.clone(),
        };
        flight.backed_by(file, readable);
    }
    // Elsewhere (S3) the progress is reported at the end only, and nobody follows it.
    match storage
        .upload_append_reporting(&id, 0, stream, progress)
        .await
    {
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
