//! Garbage collection: mark and sweep, safe while the server runs.
//!
//! Mark: every manifest a tag points to, every manifest younger than the grace period, and
//! (repeatedly) every manifest whose `subject` is marked; then everything those reference
//! (config, layers, index children). Sweep: unmarked manifest revisions older than the grace
//! period leave their repository, and unmarked blobs older than the grace period are deleted,
//! with their repository links. Expired uploads and stale temporary files go too.
//!
//! # Deleting a blob while other replicas push
//!
//! The processes share only the storage (a folder, a bucket), whose single operations are
//! atomic and strongly consistent; nothing else is assumed to be. Whatever starts to depend on
//! a blob (a manifest push, for its config, layers, children and own body; a mount; an upload
//! whose blob already exists or that just committed it) calls [`Registry::use_blob`] (an upload's
//! commit, whose write is already the touch U1, calls `use_written_blob`; where that write is
//! only a touch of content already stored, the commit calls `use_blob` first, while it still
//! holds the upload's bytes to store anew if gc took the blob):
//!
//! ```text
//! user  U1 touch the blob (its time becomes now)      gc  G1 write flag _gc/deleting/<hex>/<run>
//!       U2 read the flags of the blob                     G2 re-read the blob's time: young -> keep
//!          any live flag: wait until none, back to U1     G3 set the blob aside (out of sight)
//!       U3 re-read that the blob exists                   G4 re-read its time: young -> restore it
//!       -> depend on it (link, commit the manifest)       G5 drop it for good (or restore), then
//!                                                            remove the flag
//! ```
//!
//! Why no accepted push loses its blob, interleaving by interleaving (times are the order of the
//! operations on the storage):
//! - U2 before G1: then U1 < G1 < G2, so G2 sees U1's touch and keeps the blob, provided the
//!   push's U1 is younger than the grace period at G2 (the one timing assumption: a push takes
//!   less than the grace period from touching a blob to committing its manifest; the mark phase
//!   of any later gc then sees the manifest).
//! - U2 inside G1..G5: the push sees the flag and waits for G5; it then starts over, and finds
//!   the blob restored (and touches it again) or gone (`MANIFEST_BLOB_UNKNOWN`, a clean refusal;
//!   a mount answers "not mounted" and the client uploads). This is the pause the old protocol
//!   lost blobs in: a push between gc's last re-read and its delete.
//! - U2 after G5 (the flag is gone): U3 > G5, so U3 sees the blob gone if G5 dropped it, even
//!   when the touch U1 landed on the copy set aside (a touch is "check it exists, then write
//!   its time", not atomic).
//! - A touch between G2 and G3 (the old window): it lands on the blob (the filesystem renames
//!   the same inode aside; S3 keeps the separate touch object), so G4 sees it and restores.
//!
//! A new upload of the same content during a hold writes a fresh blob under the blob's name;
//! G5 drops only the copy set aside, never that one. A storage error during a hold makes gc
//! put the blob back before it removes its flag; if that fails too, it leaves the flag, as a gc
//! that dies during a hold does. Pushes ignore flags older than [`STALE_FLAG`] (and then find
//! the blob gone or there), and the next gc restores what such a gc had set aside. A failure
//! to set a blob aside (S3's copy) leaves it where it was (restored if half done), counted in
//! the report as skipped: the next gc decides about it, and the pass goes on. A deleted blob's
//! repository links go under the flag too, so a push that waited on it and then linked the
//! blob anew (a new upload of the same content) keeps its link.
//!
//! # Two gc runs at once
//!
//! Two runs (two replicas' upkeep, `wharf registry gc` beside a server) hold with different
//! flags, so one's end never clears the other's, and they take turns on a digest: a run writes
//! its flag, then reads the flags; when another live run's flag is there, it removes its own,
//! waits until no live flag is left and starts over (deciding anew: the other may have deleted
//! the blob, or a use may have made it young). Of two runs flagging a digest at once, at least
//! one sees the other: each reads after its own write, so if R1's read came before R2's write,
//! R2's read comes after R1's write. So at most one run holds a digest at a time, and within a
//! hold the argument above is unchanged. Two runs that saw each other both step back; a random
//! pause before they flag again breaks the tie (a run still waiting after [`GC_WAIT`] leaves
//! the digest to the other and counts it as kept). What can still meet a hold, and why it is
//! harmless (S3: set aside = copy, then delete the blob; restore = copy back unless the blob is
//! there, then delete the aside; drop = delete the aside; the filesystem renames, atomically):
//! - The recovery of abandoned holds, of this run or another: it acts only when no live flag
//!   is there, and only restores. A hold that begins after its check finds the blob out of
//!   sight (G2 sees none: kept), or restored: by a copy whose time is now on S3 (young: kept),
//!   by one rename on the filesystem (done before the hold touches it). Two
//!   recoveries at once both restore: each copy back either succeeds (the same bytes twice) or
//!   fails because the other already removed the aside, which a restore counts as done:
//!   nothing is out of sight any more (the other put it back).
//! - A run whose flag went stale while it still held (a hold longer than [`STALE_FLAG`]: gc
//!   assumes it dead, as users do): a restore whose copy fails because that run dropped the
//!   aside counts as done too (that run decided on an old last use, as a single run does); a
//!   set aside whose copy fails because the blob is gone (that run has it aside) keeps its hands
//!   off and leaves the decision to it. Neither fails the pass, and neither deletes a blob a run
//!   decided to keep: only a drop deletes content, and only the copy set aside.
//!
//! A manifest leaves its repository the same way, under a flag on its digest: gc re-reads its
//! revision (young: pushed again since the mark phase) and the tags (one points to it now), then
//! removes the revision. A push writes its revision (and an index push rewrites its children's)
//! with [`Registry::keep_revision`]: write, read the flags (wait, write again), re-read that it
//! is there. The sweep never deletes tags. All times are the storage's, so this holds across
//! replicas sharing one bucket.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::config::Config;
use crate::error::RegistryError;
use crate::names::{Digest, RepoName};
use crate::services::{Limits, Registry, digests_of, keys};
use crate::storage::fs::FsStorage;
use crate::storage::{ObjectInfo, Storage, StorageError};

/// How long a user of a blob waits for a gc deciding whether to delete it (a few storage
/// requests, or a server-side copy of the blob on S3) before answering "try again".
const GC_WAIT: Duration = Duration::from_secs(60);
/// How often a waiting user looks at the flags again.
const GC_POLL: Duration = Duration::from_millis(25);
/// A deletion flag this old belongs to a gc that died during its hold: users ignore it, and the
/// next gc restores what it had set aside and removes it.
pub(crate) const STALE_FLAG: Duration = Duration::from_secs(600);

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
    /// Unused blobs left for the next gc because setting them aside failed (a storage error,
    /// logged with the digest); never deleted, never out of sight.
    pub blobs_skipped: Vec<Digest>,
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("garbage collection of {root}: {source}")]
    Registry { root: String, source: RegistryError },
    #[error(
        "garbage collection of {root}: the storage is full, and refused even the empty flag gc \
         writes for each blob or manifest it removes (so that pushes running meanwhile never \
         lose one): {source}. Expired upload sessions and temporary files were removed first; \
         free a few MiB more and run gc again"
    )]
    Full { root: String, source: RegistryError },
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
    let wrap = move |source: RegistryError| match &source {
        RegistryError::Storage(e) if e.is_full() => GcError::Full {
            root: name.clone(),
            source,
        },
        _ => GcError::Registry {
            root: name.clone(),
            source,
        },
    };
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(GcError::Runtime)?;
        runtime.block_on(async {
            let storage = open().map_err(&wrap)?;
            // A wrong endpoint or credentials said at once, with the fix, not after retrying
            // every LIST; a real gc deletes, so it checks it may write too.
            let checked = if opts.dry_run {
                storage.check_reachable().await
            } else {
                storage.check_server().await
            };
            checked.map_err(|e| wrap(e.into()))?;
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
    /// Makes `digest` safe to depend on, against a gc on any process sharing the storage (the
    /// user's side of the protocol in the module docs): touches it, waits while a gc decides
    /// about it, and confirms it is still there. Returns the blob's size and time, `None` when
    /// it does not exist; when it does, no gc deletes it within the grace period.
    pub(crate) async fn use_blob(
        &self,
        digest: &Digest,
    ) -> Result<Option<ObjectInfo>, RegistryError> {
        use_blob(&*self.storage, digest, false).await
    }

    /// [`Self::use_blob`] for a blob the caller has just written or touched itself (an upload's
    /// commit): that write was the touch.
    pub(crate) async fn use_written_blob(
        &self,
        digest: &Digest,
    ) -> Result<Option<ObjectInfo>, RegistryError> {
        use_blob(&*self.storage, digest, true).await
    }

    /// Writes manifest `digest`'s revision in `repo` (its media type) so that no gc removes it:
    /// the same protocol as [`Self::use_blob`], the write being the touch. Also keeps the
    /// revision of an index's child that a push is about to depend on.
    pub(crate) async fn keep_revision(
        &self,
        repo: &RepoName,
        digest: &Digest,
        media_type: Bytes,
    ) -> Result<(), RegistryError> {
        keep_revision(&*self.storage, repo, digest, media_type).await
    }

    /// gc's side of the protocol (module docs): deletes `digest` and its links from `repos`
    /// unless something used it within `grace`, under the flag of this `run`.
    async fn delete_blob_unless_used(
        &self,
        digest: &Digest,
        grace: Duration,
        run: &str,
        repos: &[RepoName],
    ) -> Result<Swept, RegistryError> {
        let decided = self
            .holding(digest, run, || {
                self.delete_flagged_blob(digest, grace, repos)
            })
            .await?;
        // Another run decided about it (module docs: two gc runs at once).
        Ok(decided.unwrap_or(Swept::Kept))
    }

    /// Runs `decide` (gc deciding whether `digest` goes) under this `run`'s flag on it, once no
    /// other live run holds the digest (module docs: two gc runs at once); `None` when another
    /// run held it for all of [`GC_WAIT`]. The flag is removed whatever happened, except after
    /// a failure that may have left the blob set aside ([`Held::Aside`]): then it stays, so the
    /// next gc puts the blob back once the flag is stale (users wait on it meanwhile, and are
    /// refused cleanly rather than lose it).
    async fn holding<T, F>(
        &self,
        digest: &Digest,
        run: &str,
        decide: impl Fn() -> F,
    ) -> Result<Option<T>, RegistryError>
    where
        F: Future<Output = Result<T, Held>>,
    {
        let storage = self.storage.as_ref();
        let flag = keys::gc_deleting(digest, run);
        let deadline = tokio::time::Instant::now() + GC_WAIT;
        loop {
            // Empty: only its name (which holds the run) and its time are read, and an empty
            // file takes no data block, so gc can still free a full disk.
            storage.meta_put(&flag, Bytes::new()).await?;
            // Read after the write: of two runs flagging at once, one sees the other.
            if !gc_deciding_besides(storage, digest, Some(run)).await? {
                break;
            }
            storage.meta_delete(&flag).await?;
            while gc_deciding(storage, digest).await? {
                if tokio::time::Instant::now() >= deadline {
                    return Ok(None);
                }
                tokio::time::sleep(GC_POLL).await;
            }
            // Two runs that saw each other's flags must not flag again in step forever.
            let jitter = rand::random::<u64>() % (GC_POLL.as_millis() as u64 + 1);
            tokio::time::sleep(Duration::from_millis(jitter)).await;
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
        }
        let decided = match decide().await {
            Ok(decided) => Ok(decided),
            Err(Held::Failed(e)) => Err(e),
            Err(Held::Aside(e)) => {
                tracing::error!(%digest, flag, error = %e,
                    "garbage collection failed with the blob set aside and could not put it back: \
                     the next gc does, once the flag is stale");
                return Err(e);
            }
        };
        // Users of the digest wait while it is there.
        let unflagged = storage.meta_delete(&flag).await;
        let decided = decided?;
        unflagged?;
        Ok(Some(decided))
    }

    async fn delete_flagged_blob(
        &self,
        digest: &Digest,
        grace: Duration,
        repos: &[RepoName],
    ) -> Result<Swept, Held> {
        let storage = self.storage.as_ref();
        let unused = |t: SystemTime| older_than(t, SystemTime::now(), grace);
        // G2: after the flag, so a use that did not see the flag shows here.
        match storage.blob_info(digest).await? {
            Some(fresh) if unused(fresh.modified) => {}
            _ => return Ok(Swept::Kept),
        }
        // G3, G4: a touch that came between the re-read and now shows on the copy set aside.
        match storage.blob_set_aside(digest).await {
            Ok(true) => {}
            Ok(false) => return Ok(Swept::Kept),
            // A copy that failed (S3) left the blob where it was; a delete that failed after it
            // left both copies: the restore makes sure the blob is in sight, and the next gc
            // decides again. One blob's trouble must not stop the whole pass.
            Err(e) => {
                return match storage.blob_restore(digest).await {
                    Ok(()) => Ok(Swept::Left(e)),
                    Err(_) => Err(Held::Aside(e.into())),
                };
            }
        }
        let decided: Result<Swept, StorageError> = async {
            match storage.blob_aside_last_use(digest).await? {
                Some(last) if unused(last) => {
                    storage.blob_drop_aside(digest).await?;
                    // Under the flag: a push that waited on it links the blob anew afterwards
                    // (a new upload of the same content), and must not lose that link to us.
                    for repo in repos {
                        storage.meta_delete(&keys::layer_link(repo, digest)).await?;
                    }
                    Ok(Swept::Deleted)
                }
                Some(_) => {
                    storage.blob_restore(digest).await?;
                    Ok(Swept::Kept)
                }
                None => Ok(Swept::Kept),
            }
        }
        .await;
        match decided {
            Ok(decided) => Ok(decided),
            // Whatever failed, the blob must not stay out of sight: nothing else would put it
            // back once the flag is gone (dropping it is the last step, and restoring nothing
            // is harmless).
            Err(e) => match storage.blob_restore(digest).await {
                Ok(()) => Err(Held::Failed(e.into())),
                Err(_) => Err(Held::Aside(e.into())),
            },
        }
    }

    /// Restores what gc runs that died during a hold had set aside (their flags are older than
    /// [`STALE_FLAG`]), and removes those flags. Returns how many blobs it looked at.
    async fn recover_abandoned_holds(&self) -> Result<usize, RegistryError> {
        let storage = self.storage.as_ref();
        let mut recovered = 0;
        for digest in digests_of(storage.meta_list(&keys::gc_deleting_root()).await?) {
            let runs = storage.meta_list(&keys::gc_deleting_all(&digest)).await?;
            let mut stale = Vec::new();
            for run in runs {
                let flag = keys::gc_deleting(&digest, &run);
                match storage.meta_info(&flag).await? {
                    Some(info) if older_than(info.modified, SystemTime::now(), STALE_FLAG) => {
                        stale.push(flag);
                    }
                    Some(_) => {}
                    None => continue,
                }
            }
            if stale.is_empty() || gc_deciding(storage, &digest).await? {
                continue;
            }
            storage.blob_restore(&digest).await?;
            for flag in stale {
                storage.meta_delete(&flag).await?;
            }
            recovered += 1;
        }
        Ok(recovered)
    }

    /// Removes manifest `rev` from `repo` unless it was pushed again since the mark phase (by a
    /// client of this or another replica): under a flag on `rev` (module docs; a push writes
    /// its revision with [`Self::keep_revision`]), its revision is re-read, young ones stay, and
    /// so do ones a tag points to now. Tags are never deleted here, so a concurrent push's tag
    /// is never lost. Returns whether it was removed.
    async fn remove_unused_manifest(
        &self,
        repo: &RepoName,
        rev: &Digest,
        grace: Duration,
        run: &str,
    ) -> Result<bool, RegistryError> {
        let removed = self
            .holding(rev, run, || self.remove_flagged_manifest(repo, rev, grace))
            .await?;
        // Another run decided about it.
        Ok(removed.unwrap_or(false))
    }

    async fn remove_flagged_manifest(
        &self,
        repo: &RepoName,
        rev: &Digest,
        grace: Duration,
    ) -> Result<bool, Held> {
        let storage = self.storage.as_ref();
        match storage.meta_info(&keys::revision(repo, rev)).await? {
            Some(fresh) if older_than(fresh.modified, SystemTime::now(), grace) => {}
            _ => return Ok(false),
        }
        for tag in storage.meta_list(&keys::tags(repo)).await? {
            if self.tag_target(repo, &tag).await?.as_ref() == Some(rev) {
                return Ok(false);
            }
        }
        self.remove_revision(repo, rev).await?;
        Ok(true)
    }

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
        if !opts.dry_run {
            self.recover_abandoned_holds().await?;
        }
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

        // Expired uploads and leftovers of interrupted writes first: they go without a flag,
        // so on a full disk they make the room the flags below need.
        if opts.dry_run {
            report.uploads_removed = storage
                .upload_list()
                .await?
                .iter()
                .filter(|(_, info)| older_than(info.modified, now, opts.upload_expiry))
                .count();
        } else {
            report.uploads_removed = self.expire_uploads(now).await?;
            // Leftovers include the records of multipart uploads (S3), whose writer may be a
            // live push on another replica: dead only after the upload expiry, as for upkeep,
            // however short the grace period for content.
            let stale = opts.grace.max(opts.upload_expiry);
            report.temporary_files_removed = storage
                .clean_temporary(now.checked_sub(stale).unwrap_or(SystemTime::UNIX_EPOCH))
                .await?;
        }

        // Sweep manifests out of repositories, then blobs, each under a flag (module docs).
        let run = format!("{:032x}", rand::random::<u128>());
        for repo in &repos {
            for rev in revisions.get(repo).into_iter().flatten() {
                if marked_manifests.contains(&(repo.clone(), rev.clone())) {
                    continue;
                }
                if !opts.dry_run
                    && !self
                        .remove_unused_manifest(repo, rev, opts.grace, &run)
                        .await?
                {
                    continue;
                }
                report.manifests_removed.push(format!("{repo}@{rev}"));
            }
        }

        // Sweep blobs.
        for (digest, info) in storage.blob_list().await? {
            if marked_blobs.contains(&digest) || !older_than(info.modified, now, opts.grace) {
                report.blobs_kept += 1;
                continue;
            }
            if !opts.dry_run {
                match self
                    .delete_blob_unless_used(&digest, opts.grace, &run, &repos)
                    .await?
                {
                    Swept::Deleted => {}
                    Swept::Kept => {
                        report.blobs_kept += 1;
                        continue;
                    }
                    Swept::Left(e) => {
                        tracing::warn!(%digest, error = %e,
                            "garbage collection left an unused blob for its next pass: setting it \
                             aside failed");
                        report.blobs_skipped.push(digest);
                        continue;
                    }
                }
            }
            report.bytes_freed += info.size;
            report.blobs_removed.push(digest);
        }

        Ok(report)
    }
}

/// What the sweep did with an unused blob ([`Registry::delete_blob_unless_used`]).
enum Swept {
    Deleted,
    /// Used meanwhile, gone meanwhile, or decided by another gc run.
    Kept,
    /// Setting it aside failed: it stays where it was, for the next gc.
    Left(StorageError),
}

/// How a decision under a gc flag failed ([`Registry::holding`]).
enum Held {
    /// Nothing is out of sight: the flag goes.
    Failed(RegistryError),
    /// The blob may still be set aside: the flag stays for the next gc's recovery.
    Aside(RegistryError),
}

impl From<RegistryError> for Held {
    fn from(e: RegistryError) -> Held {
        Held::Failed(e)
    }
}

impl From<StorageError> for Held {
    fn from(e: StorageError) -> Held {
        Held::Failed(e.into())
    }
}

/// [`Registry::use_blob`] on `storage` (for writers without a `Registry`: the pull-through
/// cache's background stores); `touched_already` when the caller's own write was the touch.
pub(crate) async fn use_blob(
    storage: &dyn Storage,
    digest: &Digest,
    mut touched_already: bool,
) -> Result<Option<ObjectInfo>, RegistryError> {
    let deadline = tokio::time::Instant::now() + GC_WAIT;
    loop {
        let touched = if std::mem::take(&mut touched_already) {
            true
        } else {
            match storage.blob_touch(digest).await {
                Ok(()) => true,
                Err(StorageError::BlobUnknown(_)) => false,
                Err(e) => return Err(e.into()),
            }
        };
        if !gc_deciding(storage, digest).await? {
            if !touched {
                return Ok(None);
            }
            return Ok(storage.blob_info(digest).await?);
        }
        wait_for_gc(storage, digest, deadline).await?;
    }
}

/// [`Registry::keep_revision`] on `storage` (for writers without a `Registry`).
pub(crate) async fn keep_revision(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
    media_type: Bytes,
) -> Result<(), RegistryError> {
    let deadline = tokio::time::Instant::now() + GC_WAIT;
    keep_revision_until(storage, repo, digest, media_type, deadline).await
}

/// [`keep_revision`], giving up at `deadline`.
async fn keep_revision_until(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
    media_type: Bytes,
    deadline: tokio::time::Instant,
) -> Result<(), RegistryError> {
    let key = keys::revision(repo, digest);
    loop {
        storage.meta_put(&key, media_type.clone()).await?;
        if gc_deciding(storage, digest).await? {
            wait_for_gc(storage, digest, deadline).await?;
            continue;
        }
        if storage.meta_info(&key).await?.is_some() {
            return Ok(());
        }
        // Removed right after the write: by a gc that finished just now (written again: it
        // has no flag now), or by something that removes it each time (a client's DELETE of
        // the manifest in a loop): not forever, nor in a busy loop.
        if tokio::time::Instant::now() >= deadline {
            return Err(RegistryError::TooManyRequests {
                message: format!(
                    "the revision {key} of manifest {digest} was removed each time it was \
                     written for {} s (a DELETE of the manifest, or garbage collection on this \
                     registry's storage): try again",
                    GC_WAIT.as_secs()
                ),
                retry_after: Some(GC_WAIT.as_secs()),
            });
        }
        tokio::time::sleep(GC_POLL).await;
    }
}

/// Waits until no live gc flags `digest`, or fails at `deadline`.
async fn wait_for_gc(
    storage: &dyn Storage,
    digest: &Digest,
    deadline: tokio::time::Instant,
) -> Result<(), RegistryError> {
    while gc_deciding(storage, digest).await? {
        if tokio::time::Instant::now() >= deadline {
            return Err(RegistryError::TooManyRequests {
                message: format!(
                    "{digest} is being garbage-collected on this registry's storage \
                     (flag {}); try again in a minute",
                    keys::gc_deleting_all(digest)
                ),
                retry_after: Some(GC_WAIT.as_secs()),
            });
        }
        tokio::time::sleep(GC_POLL).await;
    }
    Ok(())
}

/// Whether a live gc has flagged `digest` (stale flags of dead ones aside).
async fn gc_deciding(storage: &dyn Storage, digest: &Digest) -> Result<bool, RegistryError> {
    gc_deciding_besides(storage, digest, None).await
}

/// Whether a live gc other than the run `own` has flagged `digest`.
async fn gc_deciding_besides(
    storage: &dyn Storage,
    digest: &Digest,
    own: Option<&str>,
) -> Result<bool, RegistryError> {
    for run in storage.meta_list(&keys::gc_deleting_all(digest)).await? {
        if Some(run.as_str()) == own {
            continue;
        }
        let flag = keys::gc_deleting(digest, &run);
        if let Some(info) = storage.meta_info(&flag).await?
            && !older_than(info.modified, SystemTime::now(), STALE_FLAG)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Reference;
    use crate::storage::{
        Appended, ByteStream, ObjectInfo, StorageError, UploadStatus, UploadVersion,
    };
    use bytes::Bytes;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Hook = Box<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

    /// A storage that runs `hook` (another client's push) when gc reads the revision `watched`
    /// for the second time: after the mark phase, as the sweep is about to remove it; and fails
    /// the operations the test tells it to.
    struct Scripted {
        inner: Arc<dyn Storage>,
        watched: String,
        reads: AtomicUsize,
        hook: Mutex<Option<Hook>>,
        /// `watched` is never found (a revision removed as soon as it is written).
        hide_watched: bool,
        /// How many of the next `blob_aside_last_use`, `blob_restore` and `blob_set_aside`
        /// calls fail.
        failing_aside_reads: AtomicUsize,
        failing_restores: AtomicUsize,
        failing_set_asides: AtomicUsize,
        /// Runs once, right after gc removes one of its flags (the end of a hold).
        unflagged_hook: Mutex<Option<Hook>>,
    }

    impl Scripted {
        /// Forwards everything to `inner`: no hook, nothing watched, nothing failing.
        fn over(inner: Arc<dyn Storage>) -> Scripted {
            Scripted {
                inner,
                watched: String::new(),
                reads: AtomicUsize::new(0),
                hook: Mutex::new(None),
                hide_watched: false,
                failing_aside_reads: AtomicUsize::new(0),
                failing_restores: AtomicUsize::new(0),
                failing_set_asides: AtomicUsize::new(0),
                unflagged_hook: Mutex::new(None),
            }
        }
    }

    /// Counts one call of an operation failing `failing` more times: its error, if it fails.
    fn scripted_failure(failing: &AtomicUsize, op: &'static str) -> Result<(), StorageError> {
        match failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => Err(StorageError::Io {
                op,
                path: "scripted".to_string(),
                source: std::io::Error::other("the storage failed (scripted)"),
            }),
            Err(_) => Ok(()),
        }
    }

    #[async_trait::async_trait]
    impl Storage for Scripted {
        async fn blob_info(&self, d: &Digest) -> Result<Option<ObjectInfo>, StorageError> {
            self.inner.blob_info(d).await
        }
        async fn blob_read(&self, d: &Digest, o: u64, l: u64) -> Result<ByteStream, StorageError> {
            self.inner.blob_read(d, o, l).await
        }
        async fn blob_read_small(&self, d: &Digest, limit: u64) -> Result<Bytes, StorageError> {
            self.inner.blob_read_small(d, limit).await
        }
        async fn blob_put(&self, d: &Digest, data: Bytes) -> Result<(), StorageError> {
            self.inner.blob_put(d, data).await
        }
        async fn blob_touch(&self, d: &Digest) -> Result<(), StorageError> {
            self.inner.blob_touch(d).await
        }
        async fn blob_delete(&self, d: &Digest) -> Result<bool, StorageError> {
            self.inner.blob_delete(d).await
        }
        async fn blob_set_aside(&self, d: &Digest) -> Result<bool, StorageError> {
            scripted_failure(&self.failing_set_asides, "set aside")?;
            self.inner.blob_set_aside(d).await
        }
        async fn blob_aside_last_use(
            &self,
            d: &Digest,
        ) -> Result<Option<SystemTime>, StorageError> {
            scripted_failure(&self.failing_aside_reads, "read the last use of")?;
            self.inner.blob_aside_last_use(d).await
        }
        async fn blob_restore(&self, d: &Digest) -> Result<(), StorageError> {
            scripted_failure(&self.failing_restores, "restore")?;
            self.inner.blob_restore(d).await
        }
        async fn blob_drop_aside(&self, d: &Digest) -> Result<(), StorageError> {
            self.inner.blob_drop_aside(d).await
        }
        async fn blob_list(&self) -> Result<Vec<(Digest, ObjectInfo)>, StorageError> {
            self.inner.blob_list().await
        }
        async fn upload_create(&self, id: &str, info: Bytes) -> Result<(), StorageError> {
            self.inner.upload_create(id, info).await
        }
        async fn upload_info(&self, id: &str) -> Result<Option<UploadStatus>, StorageError> {
            self.inner.upload_info(id).await
        }
        async fn upload_append(
            &self,
            id: &str,
            offset: u64,
            data: ByteStream,
        ) -> Result<Appended, StorageError> {
            self.inner.upload_append(id, offset, data).await
        }
        async fn upload_read(&self, id: &str) -> Result<ByteStream, StorageError> {
            self.inner.upload_read(id).await
        }
        async fn upload_commit(
            &self,
            id: &str,
            d: &Digest,
            verified: Option<UploadVersion>,
        ) -> Result<(), StorageError> {
            self.inner.upload_commit(id, d, verified).await
        }
        async fn upload_delete(&self, id: &str) -> Result<(), StorageError> {
            self.inner.upload_delete(id).await
        }
        async fn upload_list(&self) -> Result<Vec<(String, ObjectInfo)>, StorageError> {
            self.inner.upload_list().await
        }
        async fn meta_put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
            self.inner.meta_put(key, data).await
        }
        async fn meta_get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
            self.inner.meta_get(key).await
        }
        async fn meta_info(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
            if key == self.watched && self.reads.fetch_add(1, Ordering::SeqCst) == 1 {
                let hook = self.hook.lock().expect("hook").take();
                if let Some(hook) = hook {
                    hook().await;
                }
            }
            if self.hide_watched && key == self.watched {
                return Ok(None);
            }
            self.inner.meta_info(key).await
        }
        async fn meta_delete(&self, key: &str) -> Result<bool, StorageError> {
            let deleted = self.inner.meta_delete(key).await;
            if key.starts_with(&keys::gc_deleting_root()) {
                let hook = self.unflagged_hook.lock().expect("hook").take();
                if let Some(hook) = hook {
                    hook().await;
                }
            }
            deleted
        }
        async fn meta_list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
            self.inner.meta_list(prefix).await
        }
        async fn clean_temporary(&self, _older_than: SystemTime) -> Result<usize, StorageError> {
            // The test's gc runs two hours ahead ("everything looks old"), so it would take the
            // temporary files of the push running beside it; temporary files are not its topic.
            Ok(0)
        }
    }

    /// One gc pass by `gc`, now, with a minute's grace period.
    async fn gc_pass(gc: &Registry) -> Result<GcReport, RegistryError> {
        let opts = GcOptions {
            grace: Duration::from_secs(60),
            ..GcOptions::default()
        };
        gc.collect_garbage(&opts, SystemTime::now()).await
    }

    /// Makes blob `digest` of the filesystem registry at `root` two hours old.
    fn age_blob(root: &Path, digest: &Digest) {
        std::fs::File::options()
            .write(true)
            .open(
                root.join("blobs/sha256")
                    .join(&digest.hex()[..2])
                    .join(digest.hex()),
            )
            .and_then(|f| f.set_modified(SystemTime::now() - Duration::from_secs(7200)))
            .expect("age the blob");
    }

    /// Unused blobs of `repo` holding each of `bytes` (100 of it), old enough for gc.
    async fn old_unused_blobs(
        registry: &Registry,
        root: &Path,
        repo: &RepoName,
        bytes: &[u8],
    ) -> Vec<Digest> {
        let mut blobs = Vec::new();
        for byte in bytes {
            let blob = registry
                .import_blob(repo, Bytes::from(vec![*byte; 100]))
                .await
                .expect("blob");
            age_blob(root, &blob);
            blobs.push(blob);
        }
        blobs
    }

    async fn push(registry: &Registry, repo: &RepoName, config: &[u8], layer: &[u8]) -> Bytes {
        let mut descriptors = Vec::new();
        for blob in [config, layer] {
            let digest = registry
                .import_blob(repo, Bytes::copy_from_slice(blob))
                .await
                .expect("blob");
            descriptors.push(serde_json::json!({
                "mediaType": "application/octet-stream",
                "digest": digest.to_string(),
                "size": blob.len(),
            }));
        }
        let manifest = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": descriptors[0],
                "layers": [descriptors[1]],
            }))
            .expect("json"),
        );
        registry
            .put_manifest(
                repo,
                &Reference::Tag("latest".into()),
                Some("application/vnd.oci.image.manifest.v1+json"),
                manifest.clone(),
            )
            .await
            .expect("manifest");
        manifest
    }

    /// An old untagged manifest pushed again (and tagged) by another client between gc's mark
    /// and its sweep keeps its tag, its revision and its blobs. Before the fix, the sweep removed
    /// it like a user's DELETE does, tags included: a successful push lost its image.
    #[tokio::test]
    async fn a_manifest_pushed_again_during_the_sweep_keeps_its_tag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).expect("storage"));
        let direct = Arc::new(Registry::new(inner.clone(), Limits::default()));
        let repo = RepoName::parse("team/app").expect("name");
        let old = push(&direct, &repo, b"{\"v\":1}", b"layer one").await;
        push(&direct, &repo, b"{\"v\":2}", b"layer two").await;
        let old_digest = Digest::of(&old);

        let storage = Arc::new(Scripted {
            watched: keys::revision(&repo, &old_digest),
            ..Scripted::over(inner)
        });
        let (client, again) = (direct.clone(), repo.clone());
        let pushing = Arc::new(Mutex::new(None));
        let started = pushing.clone();
        *storage.hook.lock().expect("hook") = Some(Box::new(move || {
            let (client, repo) = (client.clone(), again.clone());
            // Another client: it may have to wait for gc's decision (its flag), so gc goes on.
            let push = tokio::spawn(async move {
                push(&client, &repo, b"{\"v\":1}", b"layer one").await;
            });
            *started.lock().expect("push") = Some(push);
            Box::pin(async {})
        }));
        let gc = Registry::new(storage.clone(), Limits::default());
        let opts = GcOptions {
            grace: Duration::from_secs(60),
            ..GcOptions::default()
        };
        // Everything looks old to the mark phase.
        let later = SystemTime::now() + Duration::from_secs(7200);
        gc.collect_garbage(&opts, later).await.expect("gc");
        assert_eq!(storage.reads.load(Ordering::SeqCst), 2, "the push started");
        let push = pushing.lock().expect("push").take().expect("push started");
        push.await.expect("the push");

        assert_eq!(
            direct.tag_target(&repo, "latest").await.expect("tag"),
            Some(old_digest.clone())
        );
        let (_, body) = direct
            .get_manifest(&repo, &Reference::Digest(old_digest))
            .await
            .expect("the manifest pushed during gc");
        assert_eq!(body, old);
        for blob in [&b"{\"v\":1}"[..], b"layer one"] {
            assert!(
                direct
                    .has_blob(&repo, &Digest::of(blob))
                    .await
                    .expect("blob")
            );
        }
    }

    /// A revision removed right after each write (here: never found again) is written again,
    /// but not forever: `keep_revision` ends with an error at its deadline. Before, it went
    /// round its loop without a pause or a deadline, holding the push (or the pull-through
    /// cache's store) and hammering the storage for as long as the removals went on.
    #[tokio::test]
    async fn a_revision_removed_each_time_it_is_written_is_not_written_forever() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).expect("storage"));
        let repo = RepoName::parse("team/app").expect("name");
        let digest = Digest::of(b"a manifest");
        let storage = Scripted {
            watched: keys::revision(&repo, &digest),
            hide_watched: true,
            ..Scripted::over(inner)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        let kept = tokio::time::timeout(
            Duration::from_secs(20),
            keep_revision_until(&storage, &repo, &digest, Bytes::from_static(b"x"), deadline),
        )
        .await
        .expect("keep_revision ends");
        assert!(
            matches!(&kept, Err(RegistryError::TooManyRequests { message, .. }) if message.contains("removed each time")),
            "{kept:?}"
        );
        assert!(storage.reads.load(Ordering::SeqCst) >= 2, "written again");
    }

    /// A storage failure while gc holds a blob aside (reading its last use) fails the gc but
    /// leaves the blob where it was; when putting it back fails too, gc's flag stays, so the
    /// next gc puts it back. Before, the flag went whatever happened and the blob stayed out of
    /// sight for good: a blob a push had touched meanwhile was lost.
    #[tokio::test]
    async fn a_failure_while_gc_holds_a_blob_aside_does_not_lose_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).expect("storage"));
        let repo = RepoName::parse("team/app").expect("name");
        let direct = Registry::new(inner.clone(), Limits::default());
        let opts = GcOptions {
            grace: Duration::from_secs(60),
            ..GcOptions::default()
        };
        // Unreferenced and old (aged below): gc sets it aside.
        let later = SystemTime::now();
        for restores_failing in [0, 1] {
            let blob = Digest::of(&[restores_failing as u8; 100]);
            direct
                .import_blob(&repo, Bytes::from(vec![restores_failing as u8; 100]))
                .await
                .expect("blob");
            age_blob(dir.path(), &blob);
            let storage = Arc::new(Scripted {
                failing_aside_reads: AtomicUsize::new(1),
                failing_restores: AtomicUsize::new(restores_failing),
                ..Scripted::over(inner.clone())
            });
            let gc = Registry::new(storage.clone(), Limits::default());
            gc.collect_garbage(&opts, later)
                .await
                .expect_err("the storage failed");
            let flagged = !inner
                .meta_list(&keys::gc_deleting_all(&blob))
                .await
                .expect("flags")
                .is_empty();
            if restores_failing == 0 {
                assert!(
                    inner.blob_info(&blob).await.expect("info").is_some(),
                    "put back"
                );
                assert!(!flagged, "nothing left to recover: the flag goes");
            } else {
                assert!(
                    inner.blob_info(&blob).await.expect("info").is_none(),
                    "still aside"
                );
                assert!(
                    flagged,
                    "the flag stays for the next gc to recover the blob"
                );
            }
        }
    }

    /// A gc that died while it held a blob aside (its flag is stale) loses nothing: the next
    /// gc puts the blob back and removes the flag, and pushes meanwhile ignore that flag.
    #[tokio::test]
    async fn the_next_gc_restores_a_blob_a_dead_gc_had_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).expect("storage"));
        let registry = Registry::new(storage.clone(), Limits::default());
        let repo = RepoName::parse("team/app").expect("name");
        push(&registry, &repo, b"{\"v\":1}", b"layer one").await;
        let layer = Digest::of(b"layer one");

        // What the dead gc left: the layer out of sight, its flag written long ago.
        assert!(storage.blob_set_aside(&layer).await.expect("aside"));
        let flag = keys::gc_deleting(&layer, "dead");
        storage
            .meta_put(&flag, Bytes::from_static(b"dead"))
            .await
            .expect("flag");
        std::fs::File::options()
            .write(true)
            .open(dir.path().join(&flag))
            .and_then(|f| f.set_modified(SystemTime::now() - STALE_FLAG * 2))
            .expect("age the flag");
        assert!(
            !gc_deciding(&*registry.storage, &layer)
                .await
                .expect("flags")
        );

        registry
            .collect_garbage(&GcOptions::default(), SystemTime::now())
            .await
            .expect("gc");
        assert!(registry.has_blob(&repo, &layer).await.expect("blob"));
        assert_eq!(
            storage.blob_aside_last_use(&layer).await.expect("aside"),
            None
        );
        assert_eq!(storage.meta_info(&flag).await.expect("flag"), None);
    }

    /// A storage failure setting an unused blob aside (S3's copy failing transiently) leaves
    /// that blob where it was, counted as skipped, for the next pass, which deletes it; the pass
    /// goes on with the other blobs and succeeds. Before, the error failed the whole pass.
    #[tokio::test]
    async fn a_failure_setting_a_blob_aside_leaves_it_for_the_next_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).expect("storage"));
        let repo = RepoName::parse("team/app").expect("name");
        let direct = Registry::new(inner.clone(), Limits::default());
        let mut blobs = old_unused_blobs(&direct, dir.path(), &repo, &[1, 2]).await;
        blobs.sort();
        let storage = Arc::new(Scripted {
            failing_set_asides: AtomicUsize::new(1),
            ..Scripted::over(inner.clone())
        });
        let gc = Registry::new(storage, Limits::default());
        let report = gc_pass(&gc).await.expect("the pass goes on");
        // The sweep goes in digest order: the first one's setting aside failed.
        assert_eq!(report.blobs_skipped, vec![blobs[0].clone()]);
        assert_eq!(report.blobs_removed, vec![blobs[1].clone()]);
        assert!(direct.has_blob(&repo, &blobs[0]).await.expect("blob"));
        assert_eq!(
            inner.blob_aside_last_use(&blobs[0]).await.expect("aside"),
            None
        );
        assert!(!gc_deciding(&*inner, &blobs[0]).await.expect("flags"));

        let next = gc_pass(&gc).await.expect("gc");
        assert_eq!(next.blobs_removed, vec![blobs[0].clone()]);
        assert!(next.blobs_skipped.is_empty());
    }

    /// Two gc runs take turns on a digest: while another live run's flag is on an unused blob,
    /// this run leaves the blob alone, and decides about it once that flag is gone. Before, both
    /// held it at once (two replicas' upkeep, or `wharf registry gc` beside a server), and on S3
    /// one run's restore could remove the copy the other had just set aside. The other run is
    /// its flag here: the filesystem cannot stop a real one in the middle of its hold.
    #[tokio::test]
    async fn a_gc_run_waits_for_another_run_holding_the_same_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).expect("storage"));
        let registry = Registry::new(storage.clone(), Limits::default());
        let repo = RepoName::parse("team/app").expect("name");
        let blob = old_unused_blobs(&registry, dir.path(), &repo, &[7])
            .await
            .remove(0);
        let other = keys::gc_deleting(&blob, "other");
        storage
            .meta_put(&other, Bytes::from_static(b"other"))
            .await
            .expect("the other run's flag");
        let other_run = tokio::spawn({
            let (storage, blob) = (storage.clone(), blob.clone());
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let untouched = storage.blob_info(&blob).await.expect("info").is_some()
                    && storage
                        .blob_aside_last_use(&blob)
                        .await
                        .expect("aside")
                        .is_none();
                storage
                    .meta_delete(&other)
                    .await
                    .expect("the other run ends");
                untouched
            }
        });
        let report = gc_pass(&registry).await.expect("gc");
        assert!(
            other_run.await.expect("the other run"),
            "left alone while the other run held it"
        );
        assert_eq!(report.blobs_removed, vec![blob]);
    }

    /// A deleted blob's repository links go while gc still holds it: an upload of the same
    /// content that stored and linked the blob anew right after gc's hold keeps its link.
    /// Before, gc removed the links after its flag, so a push right then kept its blob but lost
    /// its link (the repository no longer had the layer it had just pushed).
    #[tokio::test]
    async fn a_blob_uploaded_again_right_after_gc_deleted_it_stays_linked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).expect("storage"));
        let repo = RepoName::parse("team/app").expect("name");
        let direct = Arc::new(Registry::new(inner.clone(), Limits::default()));
        let blob = old_unused_blobs(&direct, dir.path(), &repo, &[9])
            .await
            .remove(0);
        let storage = Arc::new(Scripted::over(inner));
        let (client, name) = (direct.clone(), repo.clone());
        *storage.unflagged_hook.lock().expect("hook") = Some(Box::new(move || {
            let (client, name) = (client.clone(), name.clone());
            Box::pin(async move {
                client
                    .import_blob(&name, Bytes::from(vec![9u8; 100]))
                    .await
                    .expect("uploaded again");
            })
        }));
        let gc = Registry::new(storage.clone(), Limits::default());
        let report = gc_pass(&gc).await.expect("gc");
        assert_eq!(report.blobs_removed, vec![blob.clone()]);
        assert!(
            storage.unflagged_hook.lock().expect("hook").is_none(),
            "the upload ran"
        );
        assert!(
            direct.has_blob(&repo, &blob).await.expect("blob"),
            "the upload's link stays"
        );
    }
}
