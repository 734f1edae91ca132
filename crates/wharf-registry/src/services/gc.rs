//! Garbage collection: mark and sweep, safe while the server runs.
//!
//! Mark: every manifest a tag points to, every manifest younger than the grace period, and
//! (repeatedly) every manifest whose `subject` is marked; then everything those reference
//! (config, layers, index children). Sweep: unmarked manifest revisions older than the grace
//! period leave their repository, and unmarked blobs older than the grace period are deleted,
//! with their repository links. Expired uploads and stale temporary files go too.
//!
//! Safety with concurrent pushes: a blob's modification time is refreshed whenever something
//! starts to depend on it (upload commit writes it, manifest push and mount "touch" it before
//! checking it exists), and the sweep re-reads that time just before deleting. So a push either
//! sees the blob gone (and fails cleanly with `MANIFEST_BLOB_UNKNOWN`) or gc sees it as young.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::error::RegistryError;
use crate::names::{Digest, RepoName};
use crate::services::{Limits, Registry, digests_of, keys};
use crate::storage::Storage;
use crate::storage::fs::FsStorage;

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
    /// Nothing written or used more recently than this is removed.
    pub grace: Duration,
    /// Upload sessions idle longer than this are removed.
    pub upload_expiry: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            grace: Duration::from_secs(3600),
            upload_expiry: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    pub blobs_kept: usize,
    /// Blobs (layers, configs and manifests) deleted, or that would be.
    pub blobs_removed: Vec<Digest>,
    pub bytes_freed: u64,
    /// Manifests removed from repositories, as `repo@digest`.
    pub manifests_removed: Vec<String>,
    pub uploads_removed: usize,
    pub temporary_files_removed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("garbage collection of {root}: {source}")]
    Registry { root: String, source: RegistryError },
    #[error("garbage collection could not start its runtime: {0}")]
    Runtime(std::io::Error),
}

/// Collects garbage in the filesystem registry at `root`. Runs on its own thread and runtime, so
/// it may be called from anywhere, including from inside a tokio runtime.
pub fn gc(root: &Path, opts: &GcOptions) -> Result<GcReport, GcError> {
    let root = root.to_path_buf();
    let name = root.display().to_string();
    gc_on(name, opts, Vec::new(), move || {
        Ok(Arc::new(FsStorage::open(&root).map_err(RegistryError::from)?) as Arc<dyn Storage>)
    })
}

/// Collects garbage in the registry `config` describes (filesystem or S3), like [`gc`].
pub fn gc_with_config(config: &Config, opts: &GcOptions) -> Result<GcReport, GcError> {
    let name = config
        .storage_location()
        .map(|l| l.to_string())
        .unwrap_or_else(|_| config.root.display().to_string());
    let expiries = config
        .proxy
        .iter()
        .filter_map(|p| Some((p.prefix.clone(), p.expire_unpulled?)))
        .collect();
    let config = config.clone();
    gc_on(name, opts, expiries, move || {
        Ok(crate::backend::open_storage(&config)?)
    })
}

fn gc_on(
    name: String,
    opts: &GcOptions,
    expiries: Vec<(String, Duration)>,
    open: impl FnOnce() -> Result<Arc<dyn Storage>, RegistryError> + Send + 'static,
) -> Result<GcReport, GcError> {
    let opts = opts.clone();
    let wrap = move |source| GcError::Registry {
        root: name.clone(),
        source,
    };
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(GcError::Runtime)?;
        runtime.block_on(async {
            let storage = open().map_err(&wrap)?;
            let limits = Limits {
                upload_expiry: opts.upload_expiry,
                ..Limits::default()
            };
            let registry = Registry::new(storage, limits);
            let now = SystemTime::now();
            let mut expired = registry
                .expire_unpulled(&expiries, opts.dry_run, now)
                .await
                .map_err(&wrap)?;
            let mut report = registry.collect_garbage(&opts, now).await.map_err(wrap)?;
            expired.append(&mut report.manifests_removed);
            report.manifests_removed = expired;
            Ok(report)
        })
    });
    thread.join().unwrap_or_else(|_| {
        Err(GcError::Runtime(std::io::Error::other(
            "gc thread panicked",
        )))
    })
}

fn older_than(t: SystemTime, now: SystemTime, grace: Duration) -> bool {
    now.duration_since(t)
        .map(|age| age >= grace)
        .unwrap_or(false)
}

impl Registry {
    /// Removes the manifests (and their tags) of pull-through caches not pulled for longer than
    /// their `(prefix, expire_unpulled)`: the last pull is the `_proxy/pulled` record's time,
    /// or the manifest's own when it has none. Returns them as `repo@digest`; what they
    /// referenced goes in the sweep that follows.
    pub async fn expire_unpulled(
        &self,
        expiries: &[(String, Duration)],
        dry_run: bool,
        now: SystemTime,
    ) -> Result<Vec<String>, RegistryError> {
        let mut removed = Vec::new();
        if expiries.is_empty() {
            return Ok(removed);
        }
        for name in self.catalog().await? {
            // The longest prefix decides, as for requests.
            let Some((_, expiry)) = expiries
                .iter()
                .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
            else {
                continue;
            };
            let Ok(repo) = RepoName::parse(&name) else {
                continue;
            };
            for rev in digests_of(self.storage.meta_list(&keys::revisions(&repo)).await?) {
                let pulled = match self.storage.meta_info(&keys::pulled(&repo, &rev)).await? {
                    Some(info) => Some(info),
                    None => self.storage.meta_info(&keys::revision(&repo, &rev)).await?,
                };
                if pulled.is_none_or(|info| !older_than(info.modified, now, *expiry)) {
                    continue;
                }
                removed.push(format!("{repo}@{rev}"));
                if !dry_run {
                    self.delete_manifest(&repo, &crate::names::Reference::Digest(rev.clone()))
                        .await?;
                    self.storage.meta_delete(&keys::pulled(&repo, &rev)).await?;
                }
            }
            // Pull records of manifests that went another way (deleted, or swept untagged).
            if !dry_run {
                for noted in digests_of(self.storage.meta_list(&keys::pulled_all(&repo)).await?) {
                    if self
                        .storage
                        .meta_info(&keys::revision(&repo, &noted))
                        .await?
                        .is_none()
                    {
                        self.storage
                            .meta_delete(&keys::pulled(&repo, &noted))
                            .await?;
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Mark and sweep over this registry's storage (see the module docs).
    pub async fn collect_garbage(
        &self,
        opts: &GcOptions,
        now: SystemTime,
    ) -> Result<GcReport, RegistryError> {
        let storage: &dyn Storage = self.storage.as_ref();
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let repos: Vec<RepoName> = self
            .catalog()
            .await?
            .iter()
            .filter_map(|n| RepoName::parse(n).ok())
            .collect();

        // Roots per repository: tagged manifests and young revisions.
        let mut revisions: HashMap<RepoName, Vec<Digest>> = HashMap::new();
        let mut marked_manifests: BTreeSet<(RepoName, Digest)> = BTreeSet::new();
        for repo in &repos {
            let revs = digests_of(storage.meta_list(&keys::revisions(repo)).await?);
            for rev in &revs {
                let young = match storage.meta_info(&keys::revision(repo, rev)).await? {
                    Some(info) => !older_than(info.modified, now, opts.grace),
                    None => false,
                };
                if young {
                    marked_manifests.insert((repo.clone(), rev.clone()));
                }
            }
            for tag in storage.meta_list(&keys::tags(repo)).await? {
                if let Some(d) = self.tag_target(repo, &tag).await? {
                    marked_manifests.insert((repo.clone(), d));
                }
            }
            revisions.insert(repo.clone(), revs);
        }

        // Closure: index children, then referrers of anything marked, until nothing changes.
        let mut marked_blobs: BTreeSet<Digest> = BTreeSet::new();
        let mut queue: Vec<(RepoName, Digest)> = marked_manifests.iter().cloned().collect();
        // Each (repository, manifest) enters the queue once: only when first inserted.
        while let Some((repo, manifest)) = queue.pop() {
            marked_blobs.insert(manifest.clone());
            let body = match storage
                .blob_read_small(&manifest, self.limits.manifest_max_bytes as u64)
                .await
            {
                Ok(b) => b,
                Err(_) => continue,
            };
            for child in Registry::manifest_children(&body) {
                if marked_manifests.insert((repo.clone(), child.clone())) {
                    queue.push((repo.clone(), child));
                }
            }
            marked_blobs.extend(Registry::manifest_references(&body));
            for referrer in digests_of(
                storage
                    .meta_list(&keys::referrers(&repo, &manifest))
                    .await?,
            ) {
                if marked_manifests.insert((repo.clone(), referrer.clone())) {
                    queue.push((repo.clone(), referrer));
                }
            }
        }

        // Sweep manifests out of repositories.
        for repo in &repos {
            for rev in revisions.get(repo).into_iter().flatten() {
                if marked_manifests.contains(&(repo.clone(), rev.clone())) {
                    continue;
                }
                report.manifests_removed.push(format!("{repo}@{rev}"));
                if !opts.dry_run {
                    self.delete_manifest(repo, &crate::names::Reference::Digest(rev.clone()))
                        .await?;
                }
            }
        }

        // Sweep blobs, re-checking each one's time just before deleting it.
        for (digest, info) in storage.blob_list().await? {
            if marked_blobs.contains(&digest) || !older_than(info.modified, now, opts.grace) {
                report.blobs_kept += 1;
                continue;
            }
            if !opts.dry_run {
                match storage.blob_info(&digest).await? {
                    Some(fresh) if older_than(fresh.modified, SystemTime::now(), opts.grace) => {}
                    _ => {
                        report.blobs_kept += 1;
                        continue;
                    }
                }
                storage.blob_delete(&digest).await?;
                for repo in &repos {
                    storage
                        .meta_delete(&keys::layer_link(repo, &digest))
                        .await?;
                }
            }
            report.bytes_freed += info.size;
            report.blobs_removed.push(digest);
        }

        // Expired uploads and leftovers of interrupted writes.
        if opts.dry_run {
            report.uploads_removed = storage
                .upload_list()
                .await?
                .iter()
                .filter(|(_, info)| older_than(info.modified, now, opts.upload_expiry))
                .count();
        } else {
            report.uploads_removed = self.expire_uploads(now).await?;
            report.temporary_files_removed = storage
                .clean_temporary(
                    now.checked_sub(opts.grace)
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                )
                .await?;
        }
        Ok(report)
    }
}
