//! Job caches under `.wharf/cache/<key>/`: keys (a string, or `{files, prefix}`), `fallback_keys`
//! and `CACHE_FALLBACK_KEY`, `paths` plus `untracked` files, `policy` and `when`.
//!
//! Concurrency: jobs run at the same time (and two wharf processes may share a project), so every
//! key has a lock file, `.wharf/locks/cache/<key>.lock` (`flock`): restoring holds it shared,
//! saving holds it exclusive. A restore never copies from a cache being replaced, and two jobs
//! saving one key replace it one after the other (the last one wins, as in GitLab), never mixed.
//! The lock is held only while copying, never across an `await`.
//!
//! `key: {files: [...], prefix}`: GitLab's key is `prefix-<sha1 of the ids of the last commits
//! that changed those files>` (or `prefix-default` when none of them has a commit). Locally the
//! user's uncommitted edits matter, so wharf hashes *contents* instead:
//! `digest = first 40 hex digits of SHA-256( for each existing file, sorted by path:
//! "<path>\0<hex SHA-256 of its content>\n" )`, `default` when no listed file exists, and
//! `key = prefix + "-" + digest` (just `digest` without a prefix). Paths are relative to the
//! project folder and may be globs (matched against the project's files). The same files give
//! the same key on every run and machine; any edit to them gives a new key.

use crate::files::{self, FilesError, JobDirs};
use crate::log::JobLog;
use crate::vars::VarSet;
use globset::GlobBuilder;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use wharf_ci::{Cache, CachePolicy, CacheWhen};

impl JobDirs<'_> {
    fn cache_dir(&self, key: &str) -> PathBuf {
        key_dir(self.wharf_dir, key)
    }
}

/// The folder of the cache `key` (sanitised) under `wharf_dir`: what a restore copies from and
/// a save replaces (`wharf runner` syncs it with a shared cache).
pub fn key_dir(wharf_dir: &Path, key: &str) -> PathBuf {
    wharf_dir.join("cache").join(key_folder(key))
}

/// A held per-key lock; released when dropped.
pub struct KeyLock {
    _file: File,
}

/// Lock `key` under `wharf_dir` (blocking until it is free): shared for readers, exclusive for
/// writers.
pub fn lock_key(wharf_dir: &Path, key: &str, exclusive: bool) -> Result<KeyLock, FilesError> {
    let dir = wharf_dir.join("locks").join("cache");
    std::fs::create_dir_all(&dir).map_err(|e| FilesError::Io {
        action: "creating",
        path: dir.clone(),
        source: e,
    })?;
    let path = dir.join(format!("{}.lock", key_folder(key)));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| FilesError::Io {
            action: "opening the lock",
            path: path.clone(),
            source: e,
        })?;
    let op = if exclusive {
        rustix::fs::FlockOperation::LockExclusive
    } else {
        rustix::fs::FlockOperation::LockShared
    };
    rustix::fs::flock(&file, op).map_err(|e| FilesError::Io {
        action: "locking",
        path,
        source: e.into(),
    })?;
    Ok(KeyLock { _file: file })
}

/// GitLab runner's sanitising of a cache key (`sanitizeCacheKey` in its shells): `%2F` and `%2E`
/// decoded, `\\` read as `/`, the key cleaned as a path rooted at `/` (so `..` never climbs out),
/// trailing white space of the last element and empty last elements dropped. The result may hold
/// `/` (`feature/x` from a branch name); `None` when nothing is left.
pub fn sanitize_key(key: &str) -> Option<String> {
    let decoded = ["%2f", "%2F"]
        .iter()
        .fold(key.to_string(), |k, enc| k.replace(enc, "/"));
    let decoded = ["%2e", "%2E"]
        .iter()
        .fold(decoded, |k, enc| k.replace(enc, "."))
        .replace('\\', "/");
    let mut parts: Vec<&str> = Vec::new();
    for part in decoded.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    while let Some(last) = parts.pop() {
        match last.trim_end() {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            trimmed => {
                parts.push(trimmed);
                return Some(parts.join("/"));
            }
        }
    }
    None
}

/// The folder (and lock file) name of a sanitised key: one flat name, so that the keys `a` and
/// `a/b` never share a folder. `%` and `/` are percent-encoded (a one-to-one mapping); a name too
/// long for the filesystem becomes `key-<sha256>`.
fn key_folder(key: &str) -> String {
    let name = key.replace('%', "%25").replace('/', "%2F");
    if name.len() > 200 {
        format!("key-{}", hex::encode(Sha256::digest(key.as_bytes())))
    } else {
        name
    }
}

/// The cache's key, variables expanded and sanitised as GitLab's runner does (with its warning);
/// `None` (after a warning) when nothing usable is left.
pub fn key_of(
    cache: &Cache,
    vars: &VarSet,
    dirs: &JobDirs<'_>,
    log: &mut JobLog,
) -> Option<String> {
    let raw = if cache.key_files.is_empty() {
        vars.expand(&cache.key).trim().to_string()
    } else {
        let files: Vec<String> = cache.key_files.iter().map(|f| vars.expand(f)).collect();
        let prefix = vars.expand(&cache.key);
        let digest = files_digest(dirs.project_dir, dirs.snapshot, &files);
        join_key(prefix.trim(), &digest)
    };
    match sanitize_key(&raw) {
        Some(key) => {
            if key != raw {
                log.warn(&format!("cache key \"{raw}\" sanitized to \"{key}\""));
            }
            Some(key)
        }
        None => {
            log.warn(&format!(
                "cache key \"{raw}\" could not be sanitized (nothing is left once `..`, `/` and spaces are cleaned): cache skipped"
            ));
            None
        }
    }
}

fn join_key(prefix: &str, digest: &str) -> String {
    if prefix.is_empty() {
        digest.to_string()
    } else {
        format!("{prefix}-{digest}")
    }
}

/// The content hash of `key: files:` (see the module docs for the formula).
pub fn files_digest(project_dir: &Path, snapshot: &[PathBuf], patterns: &[String]) -> String {
    let mut found: Vec<PathBuf> = Vec::new();
    for raw in patterns {
        let pattern = raw.trim().trim_start_matches("./");
        let rel = Path::new(pattern);
        if pattern.is_empty()
            || rel.is_absolute()
            || rel.components().any(|c| matches!(c, Component::ParentDir))
        {
            continue;
        }
        if pattern.contains(['*', '?', '[', '{']) {
            let Ok(glob) = GlobBuilder::new(pattern).literal_separator(true).build() else {
                continue;
            };
            let m = glob.compile_matcher();
            found.extend(snapshot.iter().filter(|p| m.is_match(p)).cloned());
        } else {
            found.push(rel.to_path_buf());
        }
    }
    found.sort();
    found.dedup();
    let mut outer = Sha256::new();
    let mut any = false;
    for rel in found {
        let Ok(bytes) = std::fs::read(project_dir.join(&rel)) else {
            continue;
        };
        any = true;
        outer.update(rel.to_string_lossy().as_bytes());
        outer.update([0u8]);
        outer.update(hex::encode(Sha256::digest(&bytes)).as_bytes());
        outer.update(b"\n");
    }
    if !any {
        return "default".to_string();
    }
    let mut digest = hex::encode(outer.finalize());
    digest.truncate(40);
    digest
}

/// Caches shared beyond this machine (`wharf runner`'s `[runners.cache]`: S3). The engine calls
/// it inside its cache phases, so what it says lands in the job's log under "Restoring cache"
/// and "Saving cache ...", before the job's last line, as gitlab-runner's do. It moves the
/// local cache folder of a key (`key_dir`, under the key's lock) and never fails
/// a job: problems are warnings in the log. Its methods block (the cache phases run on a
/// blocking thread).
pub trait CacheTransfer: Send + Sync {
    /// Before restoring `key`: replace its local folder with the shared copy, if there is one
    /// (a key missing there keeps the local folder as it is).
    fn fetch(&self, key: &str, wharf_dir: &Path, log: &mut JobLog);

    /// After the job saved `key` into its local folder: send that folder to the shared place.
    /// `vars` are the job's (gitlab-runner reads `CACHE_COMPRESSION_FORMAT` from them).
    fn send(&self, key: &str, wharf_dir: &Path, vars: &VarSet, log: &mut JobLog);
}

/// The keys to try when restoring, in order: the key, `fallback_keys`, then the runner-wide
/// `CACHE_FALLBACK_KEY` variable, sanitised as the key; empty and repeated ones are dropped.
pub fn restore_candidates(key: &str, cache: &Cache, vars: &VarSet) -> Vec<String> {
    let mut out = vec![key.to_string()];
    let fallbacks = cache
        .fallback_keys
        .iter()
        .map(|k| vars.expand(k).trim().to_string())
        .chain(
            vars.resolved("CACHE_FALLBACK_KEY")
                .map(|k| k.trim().to_string()),
        );
    for k in fallbacks.filter_map(|k| sanitize_key(&k)) {
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// Restore every cache whose policy pulls, into the build folder; each key tried is first
/// fetched from `shared` (when there is one), so a shared copy wins over a local one.
pub fn restore(
    caches: &[Cache],
    vars: &VarSet,
    dirs: &JobDirs<'_>,
    shared: Option<&dyn CacheTransfer>,
    log: &mut JobLog,
) -> Result<(), FilesError> {
    if caches.is_empty() {
        return Ok(());
    }
    log.section("Restoring cache");
    for cache in caches {
        if cache.policy == CachePolicy::Push {
            continue;
        }
        let Some(key) = key_of(cache, vars, dirs, log) else {
            continue;
        };
        let mut restored = false;
        for (i, candidate) in restore_candidates(&key, cache, vars).iter().enumerate() {
            if let Some(shared) = shared {
                shared.fetch(candidate, dirs.wharf_dir, log);
            }
            let dir = dirs.cache_dir(candidate);
            let _lock = lock_key(dirs.wharf_dir, candidate, false)?;
            if !dir.is_dir() {
                continue;
            }
            if i > 0 {
                log.info(&format!(
                    "No cache \"{key}\" yet: using the fallback key \"{candidate}\""
                ));
            }
            log.info(&format!(
                "Restoring cache \"{candidate}\" from {}",
                dirs.relative(&dir)
            ));
            let skipped = files::restore_tree(&dir, &files::job_tree(dirs.build_dir)?)?;
            warn_skipped(&skipped, log);
            restored = true;
            break;
        }
        if !restored {
            log.info(&format!("No cache \"{key}\" yet: nothing to restore"));
        }
    }
    Ok(())
}

/// FIFOs, sockets and devices a job left are never opened nor copied: say so.
pub(crate) fn warn_skipped(skipped: &[(PathBuf, wharf_fs::FileKind)], log: &mut JobLog) {
    for (path, kind) in skipped {
        log.warn(&format!("{}: {kind}, not copied", path.display()));
    }
}

pub fn when_matches(when: CacheWhen, ok: bool) -> bool {
    match when {
        CacheWhen::OnSuccess => ok,
        CacheWhen::OnFailure => !ok,
        CacheWhen::Always => true,
    }
}

/// Save every cache whose policy pushes and whose `when` matches the job's outcome, then send it
/// to `shared` (when there is one). Problems are warnings: a cache never fails a job.
pub fn save(
    caches: &[Cache],
    vars: &VarSet,
    dirs: &JobDirs<'_>,
    ok: bool,
    shared: Option<&dyn CacheTransfer>,
    log: &mut JobLog,
) {
    for cache in caches {
        if cache.policy == CachePolicy::Pull || !when_matches(cache.when, ok) {
            continue;
        }
        log.section(if ok {
            "Saving cache for successful job"
        } else {
            "Saving cache for failed job"
        });
        let Some(key) = key_of(cache, vars, dirs, log) else {
            continue;
        };
        match save_one(cache, &key, vars, dirs, log) {
            Ok(()) => {
                if let Some(shared) = shared {
                    shared.send(&key, dirs.wharf_dir, vars, log);
                }
            }
            Err(e) => log.warn(&format!("cache not saved: {e}")),
        }
    }
}

fn save_one(
    cache: &Cache,
    key: &str,
    vars: &VarSet,
    dirs: &JobDirs<'_>,
    log: &mut JobLog,
) -> Result<(), FilesError> {
    let project_dir = vars.resolved("CI_PROJECT_DIR");
    let paths: Vec<String> = cache
        .paths
        .iter()
        .map(|p| files::relative_to_project(&vars.expand(p), project_dir.as_deref()))
        .collect();
    let build = files::job_tree(dirs.build_dir)?;
    let mut m = files::match_paths(&build, &paths, &[])?;
    for p in &m.unmatched {
        log.warn(&format!("{p}: no matching files"));
    }
    for (p, why) in &m.outside {
        log.warn(&format!("{p}: not cached: {why}"));
    }
    if cache.untracked {
        let untracked = files::untracked(&build, dirs.project_dir, dirs.snapshot, &[])?;
        m.add_entries(untracked);
    }
    let dest = dirs.cache_dir(key);
    let _lock = lock_key(dirs.wharf_dir, key, true)?;
    let skipped = files::publish(&build, &m.entries, &dest)?;
    warn_skipped(&skipped, log);
    log.info(&format!(
        "Created cache \"{key}\" ({} paths) in {}",
        m.entries.len(),
        dirs.relative(&dest)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Console;
    use crate::mask::Masker;
    use wharf_ci::Span;

    fn span() -> Span {
        Span {
            file: ".gitlab-ci.yml".into(),
            line: 1,
            column: 1,
            offset: 0,
            len: 0,
        }
    }

    fn cache(key: &str) -> Cache {
        Cache {
            key: key.into(),
            key_files: Vec::new(),
            fallback_keys: Vec::new(),
            paths: vec!["deps".into()],
            untracked: false,
            policy: CachePolicy::PullPush,
            when: CacheWhen::OnSuccess,
            span: span(),
        }
    }

    fn test_log(dir: &Path) -> JobLog {
        let console = Console::new(false, Box::new(std::io::sink()));
        JobLog::create(
            console,
            &dir.join("job.log"),
            Masker::new(Vec::<String>::new()),
        )
        .unwrap()
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn key_files_hash_contents_with_prefix_and_default() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "package-lock.json", "{\"v\":1}");
        write(d.path(), "yarn.lock", "a");
        let snap = vec![
            PathBuf::from("package-lock.json"),
            PathBuf::from("yarn.lock"),
        ];
        let files = vec!["package-lock.json".to_string(), "yarn.lock".to_string()];
        let a = files_digest(d.path(), &snap, &files);
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        // Order of the list does not matter; the contents do.
        let reversed: Vec<String> = files.iter().rev().cloned().collect();
        assert_eq!(files_digest(d.path(), &snap, &reversed), a);
        write(d.path(), "yarn.lock", "b");
        let b = files_digest(d.path(), &snap, &files);
        assert_ne!(a, b);
        // The documented formula, computed independently.
        let inner = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
        let text = format!(
            "package-lock.json\0{}\nyarn.lock\0{}\n",
            inner("{\"v\":1}"),
            inner("b")
        );
        assert_eq!(b, hex::encode(Sha256::digest(text.as_bytes()))[..40]);
        // Globs match the project's files; missing files give GitLab's `default`.
        assert_eq!(
            files_digest(d.path(), &snap, &["*.lock".to_string()]).len(),
            40
        );
        assert_eq!(
            files_digest(d.path(), &snap, &["missing.txt".to_string()]),
            "default"
        );
        assert_eq!(
            files_digest(d.path(), &snap, &["../etc/passwd".to_string()]),
            "default"
        );

        let mut vars = VarSet::default();
        vars.set_plain("ENV", "staging");
        let mut c = cache("$ENV");
        c.key_files = vec!["yarn.lock".into()];
        let dirs = JobDirs {
            wharf_dir: &d.path().join(".wharf"),
            project_dir: d.path(),
            snapshot: &snap,
            build_dir: d.path(),
        };
        let mut log = test_log(d.path());
        let key = key_of(&c, &vars, &dirs, &mut log).unwrap();
        assert_eq!(
            key,
            format!(
                "staging-{}",
                files_digest(d.path(), &snap, &["yarn.lock".into()])
            )
        );
        c.key = String::new();
        c.key_files = vec!["nothing-here".into()];
        assert_eq!(key_of(&c, &vars, &dirs, &mut log).unwrap(), "default");
    }

    #[test]
    fn keys_are_sanitised_as_gitlab_runner_does_and_stay_one_folder() {
        let cases = [
            ("plain", Some("plain")),
            ("feature/x", Some("feature/x")),
            ("../../../etc/cron.d", Some("etc/cron.d")),
            ("a/../../b", Some("b")),
            ("%2e%2e%2F%2E%2E%2fx", Some("x")),
            ("a\\..\\..\\y", Some("y")),
            ("key   ", Some("key")),
            ("a/b/  ", Some("a/b")),
            ("..", None),
            ("/", None),
            ("../..", None),
            ("   ", None),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitize_key(raw).as_deref(), want, "{raw}");
        }
        // One flat folder per key, never a path: `a` and `a/b` do not nest.
        assert_eq!(key_folder("a/b"), "a%2Fb");
        assert_ne!(key_folder("a/b"), key_folder("a%2Fb"));
        assert_eq!(key_folder(&"k".repeat(300)).len(), 4 + 64);
        let d = tempfile::tempdir().unwrap();
        let vars = VarSet::default();
        let dirs = JobDirs {
            wharf_dir: &d.path().join(".wharf"),
            project_dir: d.path(),
            snapshot: &[],
            build_dir: d.path(),
        };
        assert!(
            !dirs
                .cache_dir("../../x")
                .starts_with(d.path().join(".wharf/x"))
        );
        let mut log = test_log(d.path());
        let key = key_of(&cache("../../../outside"), &vars, &dirs, &mut log).unwrap();
        assert_eq!(key, "outside");
        assert!(key_of(&cache(".."), &vars, &dirs, &mut log).is_none());
        let text = std::fs::read_to_string(d.path().join("job.log")).unwrap();
        assert!(text.contains("sanitized to \"outside\""), "{text}");
        assert!(text.contains("could not be sanitized"), "{text}");
    }

    #[test]
    fn fallback_keys_in_order_then_cache_fallback_key() {
        let mut vars = VarSet::default();
        vars.set_plain("CI_DEFAULT_BRANCH", "main");
        vars.set_plain("CACHE_FALLBACK_KEY", "global");
        let mut c = cache("feature-x");
        c.fallback_keys = vec![
            "cache-$CI_DEFAULT_BRANCH".into(),
            "../..".into(),
            "feature-x".into(),
            "cache-default".into(),
        ];
        assert_eq!(
            restore_candidates("feature-x", &c, &vars),
            ["feature-x", "cache-main", "cache-default", "global"]
        );
    }

    #[test]
    fn restore_uses_the_first_fallback_that_exists() {
        let d = tempfile::tempdir().unwrap();
        let wharf = d.path().join(".wharf");
        write(&wharf.join("cache/second"), "deps/from.txt", "second");
        write(&wharf.join("cache/third"), "deps/from.txt", "third");
        let build = d.path().join("build");
        std::fs::create_dir_all(&build).unwrap();
        let mut c = cache("missing");
        c.fallback_keys = vec!["first".into(), "second".into(), "third".into()];
        let dirs = JobDirs {
            wharf_dir: &wharf,
            project_dir: d.path(),
            snapshot: &[],
            build_dir: &build,
        };
        let mut log = test_log(d.path());
        restore(&[c.clone()], &VarSet::default(), &dirs, None, &mut log).unwrap();
        assert_eq!(
            std::fs::read_to_string(build.join("deps/from.txt")).unwrap(),
            "second"
        );
        let text = std::fs::read_to_string(d.path().join("job.log")).unwrap();
        assert!(text.contains("using the fallback key \"second\""), "{text}");

        // policy: push never restores.
        std::fs::remove_dir_all(&build).unwrap();
        std::fs::create_dir_all(&build).unwrap();
        c.policy = CachePolicy::Push;
        restore(&[c], &VarSet::default(), &dirs, None, &mut log).unwrap();
        assert!(!build.join("deps").exists());
    }

    /// A shared place holding `held` keys: fetching one writes it into the local cache.
    struct SharedStandIn {
        held: Vec<&'static str>,
        calls: std::sync::Mutex<Vec<String>>,
    }

    impl CacheTransfer for SharedStandIn {
        fn fetch(&self, key: &str, wharf_dir: &Path, log: &mut JobLog) {
            self.calls.lock().unwrap().push(format!("fetch {key}"));
            if self.held.contains(&key) {
                write(&key_dir(wharf_dir, key), "deps/from.txt", "shared");
                log.info(&format!("Downloaded shared cache \"{key}\""));
            }
        }

        fn send(&self, key: &str, wharf_dir: &Path, _vars: &VarSet, log: &mut JobLog) {
            let sent = key_dir(wharf_dir, key).join("deps/lib.a").exists();
            self.calls
                .lock()
                .unwrap()
                .push(format!("send {key} {sent}"));
            log.info(&format!("Uploaded shared cache \"{key}\""));
        }
    }

    #[test]
    fn a_shared_cache_is_fetched_per_candidate_key_and_sent_after_the_local_save() {
        let d = tempfile::tempdir().unwrap();
        let wharf = d.path().join(".wharf");
        // Locally only `second`; the shared place has `third`, which `second` precedes.
        write(&wharf.join("cache/second"), "deps/from.txt", "local");
        let build = d.path().join("build");
        write(&build, "deps/lib.a", "lib");
        let dirs = JobDirs {
            wharf_dir: &wharf,
            project_dir: d.path(),
            snapshot: &[],
            build_dir: &build,
        };
        let shared = SharedStandIn {
            held: vec!["third"],
            calls: Default::default(),
        };
        let mut c = cache("missing");
        c.paths = vec!["deps".into()];
        c.fallback_keys = vec!["second".into(), "third".into()];
        let mut log = test_log(d.path());
        let restored = |c: &Cache, log: &mut JobLog| {
            restore(
                std::slice::from_ref(c),
                &VarSet::default(),
                &dirs,
                Some(&shared),
                log,
            )
            .unwrap();
            std::fs::read_to_string(build.join("deps/from.txt")).unwrap()
        };
        // Each key is fetched before it is looked for; the first found (locally) ends the search.
        assert_eq!(restored(&c, &mut log), "local");
        assert_eq!(
            *shared.calls.lock().unwrap(),
            ["fetch missing", "fetch second"]
        );
        // A shared copy replaces a local one of the same key.
        write(&wharf.join("cache/third"), "deps/from.txt", "stale");
        c.fallback_keys = vec!["third".into()];
        assert_eq!(restored(&c, &mut log), "shared");
        // Sent after the local save (the folder holds the job's files), inside the job's log.
        shared.calls.lock().unwrap().clear();
        save(
            &[c],
            &VarSet::default(),
            &dirs,
            true,
            Some(&shared),
            &mut log,
        );
        assert_eq!(*shared.calls.lock().unwrap(), ["send missing true"]);
        let text = std::fs::read_to_string(d.path().join("job.log")).unwrap();
        let saving = text.find("Saving cache for successful job").unwrap();
        assert!(
            text[saving..].contains("Uploaded shared cache \"missing\""),
            "{text}"
        );
        assert!(text.contains("Downloaded shared cache \"third\""), "{text}");
    }

    #[test]
    fn save_honours_policy_when_and_untracked() {
        let d = tempfile::tempdir().unwrap();
        let project = d.path().join("project");
        write(&project, "src/main.c", "int main;");
        let snap = vec![PathBuf::from("src/main.c")];
        let build = d.path().join("build");
        write(&build, "src/main.c", "int main;");
        write(&build, "deps/lib.a", "lib");
        write(&build, "out/app", "bin");
        let wharf = d.path().join(".wharf");
        let dirs = JobDirs {
            wharf_dir: &wharf,
            project_dir: &project,
            snapshot: &snap,
            build_dir: &build,
        };
        let mut log = test_log(d.path());
        let vars = VarSet::default();

        let mut pull_only = cache("pull-only");
        pull_only.policy = CachePolicy::Pull;
        let mut on_failure = cache("on-failure");
        on_failure.when = CacheWhen::OnFailure;
        let mut untracked = cache("untracked");
        untracked.paths = Vec::new();
        untracked.untracked = true;
        save(
            &[pull_only, on_failure.clone(), untracked],
            &vars,
            &dirs,
            true,
            None,
            &mut log,
        );
        assert!(!wharf.join("cache/pull-only").exists());
        assert!(!wharf.join("cache/on-failure").exists());
        // Untracked: everything the job created, none of the project's own files.
        assert!(wharf.join("cache/untracked/deps/lib.a").exists());
        assert!(wharf.join("cache/untracked/out/app").exists());
        assert!(!wharf.join("cache/untracked/src/main.c").exists());

        save(&[on_failure], &vars, &dirs, false, None, &mut log);
        assert!(wharf.join("cache/on-failure/deps/lib.a").exists());
    }

    #[test]
    fn key_lock_is_exclusive_against_readers_and_writers() {
        let d = tempfile::tempdir().unwrap();
        let wharf = d.path().to_path_buf();
        let writer = lock_key(&wharf, "k", true).unwrap();
        // Another open file description cannot take the key while the writer holds it.
        let path = wharf.join("locks/cache/k.lock");
        let other = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let busy = |op| rustix::fs::flock(&other, op).is_err();
        assert!(busy(rustix::fs::FlockOperation::NonBlockingLockShared));
        assert!(busy(rustix::fs::FlockOperation::NonBlockingLockExclusive));
        // Another key is independent.
        drop(lock_key(&wharf, "other", true).unwrap());
        drop(writer);
        // Readers share.
        let r1 = lock_key(&wharf, "k", false).unwrap();
        assert!(!busy(rustix::fs::FlockOperation::NonBlockingLockShared));
        rustix::fs::flock(&other, rustix::fs::FlockOperation::Unlock).unwrap();
        assert!(busy(rustix::fs::FlockOperation::NonBlockingLockExclusive));
        drop(r1);
        assert!(!busy(rustix::fs::FlockOperation::NonBlockingLockExclusive));
    }

    #[test]
    fn concurrent_saves_of_one_key_never_mix() {
        let d = tempfile::tempdir().unwrap();
        let wharf = d.path().join(".wharf");
        let mut handles = Vec::new();
        for n in 0..4 {
            let wharf = wharf.clone();
            let root = d.path().to_path_buf();
            handles.push(std::thread::spawn(move || {
                let build = root.join(format!("build-{n}"));
                for f in 0..20 {
                    write(&build, &format!("deps/f{f}.txt"), &n.to_string());
                }
                let dirs = JobDirs {
                    wharf_dir: &wharf,
                    project_dir: &root,
                    snapshot: &[],
                    build_dir: &build,
                };
                let console = Console::new(false, Box::new(std::io::sink()));
                let mut log = JobLog::create(
                    console,
                    &root.join(format!("log-{n}")),
                    Masker::new(Vec::<String>::new()),
                )
                .unwrap();
                for _ in 0..5 {
                    save(
                        &[cache("shared")],
                        &VarSet::default(),
                        &dirs,
                        true,
                        None,
                        &mut log,
                    );
                    let text = std::fs::read_to_string(root.join(format!("log-{n}"))).unwrap();
                    assert!(!text.contains("cache not saved"), "{text}");
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        // One writer's complete set: all 20 files, all from the same job.
        let dir = wharf.join("cache/shared/deps");
        let contents: Vec<String> = (0..20)
            .map(|f| std::fs::read_to_string(dir.join(format!("f{f}.txt"))).unwrap())
            .collect();
        assert!(contents.iter().all(|c| c == &contents[0]), "{contents:?}");
    }
}
