//! Moving files between the user's project, job build folders, caches and artifacts.
//! Nothing here writes outside `.wharf/` of the project, and published folders (cache,
//! artifacts) are written to a temporary sibling first and renamed into place, so an interrupted
//! job never leaves a half-written cache or artifact set.

use globset::{GlobBuilder, GlobMatcher};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid pattern `{pattern}`: {reason}")]
    Pattern { pattern: String, reason: String },
}

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> FilesError + 'p {
    move |source| FilesError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The project's files as a job sees them: in a git work tree, tracked plus untracked files that
/// are not ignored (uncommitted edits included); elsewhere every file. `.git/` and `.wharf/` are
/// never part of it. Paths are relative to the project folder.
pub fn snapshot(project: &Path) -> Result<Vec<PathBuf>, FilesError> {
    let git = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(project)
        .stderr(std::process::Stdio::null())
        .output();
    let mut files: Vec<PathBuf> = match git {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            // Deleted-but-tracked files are listed by --cached; a job must not see them.
            .filter(|p| project.join(p).symlink_metadata().is_ok())
            .collect(),
        _ => walkdir::WalkDir::new(project)
            .min_depth(1)
            .into_iter()
            .filter_entry(|e| {
                !(e.depth() == 1 && (e.file_name() == ".git" || e.file_name() == ".wharf"))
            })
            .filter_map(Result::ok)
            .filter(|e| !e.file_type().is_dir())
            .filter_map(|e| e.path().strip_prefix(project).ok().map(Path::to_path_buf))
            .collect(),
    };
    files.retain(|p| !p.starts_with(".wharf") && !p.starts_with(".git"));
    files.sort();
    Ok(files)
}

/// Copy `files` (relative to `from`) into `to`, keeping modes and symlinks.
pub fn copy_files(from: &Path, files: &[PathBuf], to: &Path) -> Result<(), FilesError> {
    for rel in files {
        copy_entry(&from.join(rel), &to.join(rel))?;
    }
    Ok(())
}

fn copy_entry(src: &Path, dst: &Path) -> Result<(), FilesError> {
    let meta = src.symlink_metadata().map_err(io_err("reading", src))?;
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(io_err("reading link", src))?;
        let _ = std::fs::remove_file(dst);
        std::os::unix::fs::symlink(&target, dst).map_err(io_err("creating link", dst))?;
    } else if meta.is_dir() {
        copy_tree(src, dst)?;
    } else {
        std::fs::copy(src, dst).map_err(io_err("copying to", dst))?;
    }
    Ok(())
}

/// Copy a whole folder tree (for caches and artifacts).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), FilesError> {
    std::fs::create_dir_all(dst).map_err(io_err("creating", dst))?;
    for entry in walkdir::WalkDir::new(src).min_depth(1) {
        let entry = entry.map_err(|e| FilesError::Io {
            action: "walking",
            path: src.to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let target = dst.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).map_err(io_err("creating", &target))?;
        } else {
            copy_entry(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Remove a folder tree if it exists.
pub fn remove_tree(path: &Path) -> Result<(), FilesError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FilesError::Io {
            action: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Empties `path` (creating it if missing) but keeps the folder itself: it may be bind-mounted
/// into running containers (a job's services), which would keep seeing a removed folder.
pub fn clear_dir(path: &Path) -> Result<(), FilesError> {
    std::fs::create_dir_all(path).map_err(io_err("creating", path))?;
    for entry in std::fs::read_dir(path).map_err(io_err("reading", path))? {
        let entry = entry.map_err(io_err("reading", path))?;
        let child = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(io_err("reading", &child))?
            .is_dir();
        if is_dir {
            remove_tree(&child)?;
        } else {
            std::fs::remove_file(&child).map_err(io_err("removing", &child))?;
        }
    }
    Ok(())
}

/// Result of matching artifact or cache `paths:` in a build folder.
#[derive(Debug, Default)]
pub struct Matched {
    /// Relative paths of files, symlinks and folders to copy.
    pub entries: Vec<PathBuf>,
    /// Patterns that matched nothing (GitLab warns "no matching files").
    pub unmatched: Vec<String>,
    /// Patterns refused because they leave the build folder.
    pub outside: Vec<String>,
}

impl Matched {
    /// Add more entries (e.g. untracked files), keeping the list sorted, without duplicates and
    /// without entries already covered by a listed folder.
    pub fn add_entries(&mut self, more: Vec<PathBuf>) {
        self.entries.extend(more);
        self.entries.sort();
        self.entries.dedup();
        let mut kept: Vec<PathBuf> = Vec::new();
        for e in std::mem::take(&mut self.entries) {
            if !kept.iter().any(|k| e.starts_with(k)) {
                kept.push(e);
            }
        }
        self.entries = kept;
    }
}

/// The project's files that git tracks (`git ls-files --cached`), or `None` outside a git work
/// tree.
pub fn tracked(project: &Path) -> Option<Vec<PathBuf>> {
    let out = Command::new("git")
        .args(["ls-files", "-z", "--cached"])
        .current_dir(project)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        out.stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect(),
    )
}

/// GitLab's `untracked: true`: the files in the build folder that git does not track (ignored
/// ones included, as `git ls-files --others` without excludes lists them), minus `exclude`
/// patterns. Tracked means tracked in the project's repository; outside a git work tree, every
/// file that was not part of the source `snapshot` (what the job created) counts as untracked.
pub fn untracked(
    build_dir: &Path,
    project: &Path,
    snapshot: &[PathBuf],
    exclude: &[String],
) -> Result<Vec<PathBuf>, FilesError> {
    let known: std::collections::HashSet<PathBuf> = tracked(project)
        .unwrap_or_else(|| snapshot.to_vec())
        .into_iter()
        .collect();
    let excludes = exclude
        .iter()
        .map(|p| glob(p))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(build_dir)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| !(e.depth() == 1 && e.file_name() == ".git"))
    {
        let entry = entry.map_err(|e| FilesError::Io {
            action: "walking",
            path: build_dir.to_path_buf(),
            source: e.into(),
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(build_dir) else {
            continue;
        };
        if !known.contains(rel) && !excludes.iter().any(|g| g.is_match(rel)) {
            out.push(rel.to_path_buf());
        }
    }
    out.sort();
    Ok(out)
}

/// What `.wharf/artifacts/<job>.json` records about a job's artifacts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArtifactsMeta {
    pub job: String,
    /// `artifacts:name` expanded; GitLab's default is `artifacts`.
    pub name: String,
    /// `artifacts:expire_in` as written: recorded only, wharf never deletes artifacts.
    pub expire_in: Option<String>,
    /// The saved paths, relative to the artifacts folder.
    pub paths: Vec<String>,
    /// `reports:` files other than dotenv that were kept (relative paths).
    pub reports: Vec<String>,
    /// RFC 3339, UTC.
    pub created: String,
}

/// Write `meta` next to the artifacts folder as `<slug>.json`, atomically.
pub fn write_artifacts_meta(
    artifacts_root: &Path,
    slug: &str,
    meta: &ArtifactsMeta,
) -> Result<PathBuf, FilesError> {
    std::fs::create_dir_all(artifacts_root).map_err(io_err("creating", artifacts_root))?;
    let path = artifacts_root.join(format!("{slug}.json"));
    let mut text = serde_json::to_string_pretty(meta).unwrap_or_default();
    text.push('\n');
    let tmp = artifacts_root.join(format!(".{slug}.json.tmp"));
    std::fs::write(&tmp, text).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err("publishing", &path))?;
    Ok(path)
}

/// `time` as RFC 3339 in UTC to the second (`2024-05-01T12:00:00Z`).
pub fn rfc3339_utc(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Match GitLab `paths:` patterns (plain paths, folders, `*`, `**` globs) inside `root`, minus
/// `exclude` patterns.
pub fn match_paths(
    root: &Path,
    patterns: &[String],
    exclude: &[String],
) -> Result<Matched, FilesError> {
    let mut out = Matched::default();
    let excludes = exclude
        .iter()
        .map(|p| glob(p))
        .collect::<Result<Vec<_>, _>>()?;
    let excluded = |rel: &Path| excludes.iter().any(|g| g.is_match(rel));
    let mut all_files: Option<Vec<PathBuf>> = None;
    for raw in patterns {
        let pattern = raw.trim_start_matches("./").trim_end_matches('/');
        let rel = Path::new(pattern);
        if pattern.is_empty()
            || rel.is_absolute()
            || rel.components().any(|c| matches!(c, Component::ParentDir))
        {
            out.outside.push(raw.clone());
            continue;
        }
        let before = out.entries.len();
        if pattern.contains(['*', '?', '[', '{']) {
            let matcher = glob(pattern)?;
            let files = all_files.get_or_insert_with(|| {
                walkdir::WalkDir::new(root)
                    .min_depth(1)
                    .into_iter()
                    .filter_map(Result::ok)
                    .filter_map(|e| e.path().strip_prefix(root).ok().map(Path::to_path_buf))
                    .collect()
            });
            for f in files.iter() {
                if matcher.is_match(f) && !excluded(f) {
                    out.entries.push(f.clone());
                }
            }
        } else if root.join(rel).symlink_metadata().is_ok() && !excluded(rel) {
            if excludes.is_empty() || !root.join(rel).is_dir() {
                out.entries.push(rel.to_path_buf());
            } else {
                // A folder with excludes: list its files one by one.
                for e in walkdir::WalkDir::new(root.join(rel))
                    .into_iter()
                    .filter_map(Result::ok)
                {
                    if let Ok(r) = e.path().strip_prefix(root) {
                        if !e.file_type().is_dir() && !excluded(r) {
                            out.entries.push(r.to_path_buf());
                        }
                    }
                }
            }
        }
        if out.entries.len() == before {
            out.unmatched.push(raw.clone());
        }
    }
    // A folder already listed covers everything below it.
    out.entries.sort();
    out.entries.dedup();
    let mut kept: Vec<PathBuf> = Vec::new();
    for e in std::mem::take(&mut out.entries) {
        if !kept.iter().any(|k| e.starts_with(k)) {
            kept.push(e);
        }
    }
    out.entries = kept;
    Ok(out)
}

fn glob(pattern: &str) -> Result<GlobMatcher, FilesError> {
    GlobBuilder::new(pattern.trim_start_matches("./"))
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| FilesError::Pattern {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })
}

/// Copy `entries` from `root` into a fresh folder that replaces `dest` atomically.
pub fn publish(root: &Path, entries: &[PathBuf], dest: &Path) -> Result<(), FilesError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(parent)
        .map_err(io_err("creating a staging folder in", parent))?;
    for rel in entries {
        copy_entry(&root.join(rel), &staging.path().join(rel))?;
    }
    let staged = staging.keep();
    let old = parent.join(format!(
        ".old-{}",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    remove_tree(&old)?;
    if dest.exists() {
        std::fs::rename(dest, &old).map_err(io_err("replacing", dest))?;
    }
    std::fs::rename(&staged, dest).map_err(io_err("publishing", dest))?;
    remove_tree(&old)
}

/// A job name as a folder name: GitLab job names may hold spaces, `/` and `:` (`job 1/3`).
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_dir_empties_in_place_without_following_links() {
        use std::os::unix::fs::MetadataExt;
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "keep.txt");
        let dir = tempfile::tempdir().unwrap();
        let build = dir.path().join("build");
        clear_dir(&build).unwrap();
        let inode = std::fs::metadata(&build).unwrap().ino();
        touch(&build, "a/b/c.txt");
        touch(&build, ".hidden");
        std::os::unix::fs::symlink(outside.path(), build.join("link")).unwrap();
        clear_dir(&build).unwrap();
        assert_eq!(std::fs::read_dir(&build).unwrap().count(), 0);
        assert_eq!(std::fs::metadata(&build).unwrap().ino(), inode);
        assert!(outside.path().join("keep.txt").exists());
    }

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    }

    #[test]
    fn matches_plain_folders_globs_and_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "dist/index.html",
            "dist/a/b.js",
            "out-1.tar",
            "out-2.tar",
            "src/x.rs",
        ] {
            touch(d.path(), f);
        }
        let pats: Vec<String> = ["dist/", "out-*.tar", "missing.txt", "../etc/passwd", "/etc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = match_paths(d.path(), &pats, &[]).unwrap();
        let names: Vec<_> = m
            .entries
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["dist", "out-1.tar", "out-2.tar"]);
        assert_eq!(m.unmatched, ["missing.txt"]);
        assert_eq!(m.outside, ["../etc/passwd", "/etc"]);
    }

    #[test]
    fn double_star_and_exclude() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a/x.log", "a/b/y.log", "a/b/keep.txt", "z.log"] {
            touch(d.path(), f);
        }
        let m = match_paths(d.path(), &["a/**/*.log".into()], &[]).unwrap();
        assert_eq!(
            m.entries,
            [PathBuf::from("a/b/y.log"), PathBuf::from("a/x.log")]
        );
        let m = match_paths(
            d.path(),
            &["a".into()],
            &["a/**/*.log".into(), "a/*.log".into()],
        )
        .unwrap();
        assert_eq!(m.entries, [PathBuf::from("a/b/keep.txt")]);
    }

    #[test]
    fn publish_replaces_atomically() {
        let d = tempfile::tempdir().unwrap();
        let build = d.path().join("build");
        touch(&build, "dist/new.txt");
        let dest = d.path().join("artifacts/job");
        touch(&dest, "stale.txt");
        publish(&build, &[PathBuf::from("dist")], &dest).unwrap();
        assert!(dest.join("dist/new.txt").exists());
        assert!(!dest.join("stale.txt").exists());
        let leftovers: Vec<_> = std::fs::read_dir(d.path().join("artifacts"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn untracked_lists_what_git_does_not_track() {
        let d = tempfile::tempdir().unwrap();
        let project = d.path().join("project");
        touch(&project, "src/a.c");
        touch(&project, "notes.txt");
        let git = |args: &[&str]| {
            assert!(
                Command::new("git")
                    .args(args)
                    .current_dir(&project)
                    .output()
                    .unwrap()
                    .status
                    .success()
            );
        };
        git(&["init", "-q"]);
        git(&["add", "src/a.c"]);
        let build = d.path().join("build");
        for f in ["src/a.c", "notes.txt", "out/bin", "out/x.log", ".git/HEAD"] {
            touch(&build, f);
        }
        let snapshot = vec![PathBuf::from("notes.txt"), PathBuf::from("src/a.c")];
        let got = untracked(&build, &project, &snapshot, &["out/*.log".into()]).unwrap();
        // notes.txt is untracked in git (not added), so it counts, as in GitLab.
        assert_eq!(got, [PathBuf::from("notes.txt"), PathBuf::from("out/bin")]);
        // Outside git: whatever the snapshot did not hold.
        let plain = d.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let got = untracked(&build, &plain, &snapshot, &[]).unwrap();
        assert_eq!(got, [PathBuf::from("out/bin"), PathBuf::from("out/x.log")]);
    }

    #[test]
    fn add_entries_keeps_folders_covering_files() {
        let mut m = Matched {
            entries: vec![PathBuf::from("dist")],
            ..Default::default()
        };
        m.add_entries(vec![PathBuf::from("dist/a.js"), PathBuf::from("b.txt")]);
        assert_eq!(m.entries, [PathBuf::from("b.txt"), PathBuf::from("dist")]);
    }

    #[test]
    fn artifacts_meta_round_trips_and_dates_format() {
        let d = tempfile::tempdir().unwrap();
        let meta = ArtifactsMeta {
            job: "build 1/2".into(),
            name: "build-main".into(),
            expire_in: Some("1 week".into()),
            paths: vec!["dist".into()],
            reports: vec!["junit.xml".into()],
            created: rfc3339_utc(std::time::UNIX_EPOCH),
        };
        let path = write_artifacts_meta(d.path(), "build_1_2", &meta).unwrap();
        assert_eq!(path, d.path().join("build_1_2.json"));
        let back: ArtifactsMeta =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.created, "1970-01-01T00:00:00Z");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_827_696);
        assert_eq!(rfc3339_utc(t), "2000-02-29T12:34:56Z");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_735_689_599);
        assert_eq!(rfc3339_utc(t), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("build-staging"), "build-staging");
        assert_eq!(slug("job 1/3"), "job_1_3");
        assert_eq!(slug(".hidden"), "_.hidden");
    }
}
