//! What the project's git work tree tells the pipeline: the commit, the ref it runs for, the
//! default branch, and the changed files (`rules: changes`, `only: changes`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// A git command's standard output, or `None` when git fails (not a repository, unknown ref).
fn git_output(dir: &Path, args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

#[derive(Debug, Default, Clone)]
pub struct GitInfo {
    pub sha: Option<String>,
    /// The checked-out branch; `None` on a detached HEAD.
    pub branch: Option<String>,
    /// A tag pointing at HEAD, when HEAD is detached at it: wharf then runs a tag pipeline, as
    /// GitLab does for a pushed tag (a branch checkout runs a branch pipeline).
    pub tag: Option<String>,
    /// origin/HEAD's branch, else `main` or `master` when present, else the current branch.
    pub default_branch: Option<String>,
    /// Files changed in the work tree against HEAD, plus untracked ones (not ignored).
    pub changed_files: Vec<String>,
    pub commit_message: Option<String>,
}

impl GitInfo {
    /// Read once per project folder and process: a pipeline (with its child pipelines, and the
    /// variables that includes see) asks several times, and every `git` process costs
    /// milliseconds on a job that may take fifty.
    pub fn read(dir: &Path) -> Self {
        static CACHE: OnceLock<Mutex<HashMap<PathBuf, GitInfo>>> = OnceLock::new();
        let key = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let cache = CACHE.get_or_init(Default::default);
        if let Some(info) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return info.clone();
        }
        let info = Self::read_uncached(dir);
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, info.clone());
        info
    }

    /// Three `git` processes (four on a detached HEAD): `status` gives the commit, the branch
    /// and every changed or untracked file; `for-each-ref` the default-branch candidates; `log`
    /// the message.
    fn read_uncached(dir: &Path) -> Self {
        let git = |args: &[&str]| git_output(dir, args);
        let Some(status) = git(&[
            "status",
            "--porcelain=v2",
            "--branch",
            "-z",
            "--untracked-files=all",
        ]) else {
            return Self::default();
        };
        let mut sha = None;
        let mut branch = None;
        let mut changed_files: Vec<String> = Vec::new();
        let mut entries = status.split('\0');
        while let Some(entry) = entries.next() {
            if let Some(oid) = entry.strip_prefix("# branch.oid ") {
                sha = Some(oid.to_string()).filter(|o| o != "(initial)");
            } else if let Some(head) = entry.strip_prefix("# branch.head ") {
                branch = Some(head.to_string()).filter(|h| h != "(detached)");
            } else if let Some(path) = entry.strip_prefix("? ") {
                changed_files.push(path.to_string());
            } else if entry.starts_with("1 ") || entry.starts_with("u ") {
                // `1 XY sub mH mI mW hH hI path`: the path is the last of 9 space-separated fields.
                if let Some(path) = entry.splitn(9, ' ').nth(8) {
                    changed_files.push(path.to_string());
                }
            } else if entry.starts_with("2 ") {
                // A rename: `2 ... path` then the original path as the next NUL-separated entry.
                if let Some(path) = entry.splitn(10, ' ').nth(9) {
                    changed_files.push(path.to_string());
                }
                if let Some(orig) = entries.next() {
                    changed_files.push(orig.to_string());
                }
            }
        }
        let Some(sha) = sha else {
            return Self::default();
        };
        changed_files.sort();
        changed_files.dedup();
        let tag = if branch.is_none() {
            git(&["tag", "--points-at", "HEAD"])
                .and_then(|t| t.lines().next().map(str::to_string))
                .filter(|t| !t.is_empty())
        } else {
            None
        };
        let refs = git(&[
            "for-each-ref",
            "--format=%(refname) %(symref)",
            "refs/remotes/origin/HEAD",
            "refs/heads/main",
            "refs/heads/master",
        ])
        .unwrap_or_default();
        let origin_head = refs.lines().find_map(|l| {
            l.strip_prefix("refs/remotes/origin/HEAD refs/remotes/origin/")
                .map(str::to_string)
        });
        let default_branch = origin_head
            .or_else(|| {
                ["main", "master"]
                    .into_iter()
                    .find(|b| {
                        refs.lines()
                            .any(|l| l.trim_end() == format!("refs/heads/{b}"))
                    })
                    .map(str::to_string)
            })
            .or_else(|| branch.clone());
        Self {
            commit_message: git(&["log", "-1", "--format=%B"]).map(|m| m.trim().to_string()),
            sha: Some(sha),
            branch,
            tag,
            default_branch,
            changed_files,
        }
    }

    /// `CI_COMMIT_REF_NAME`: the branch or tag the pipeline runs for.
    pub fn ref_name(&self) -> Option<&str> {
        self.branch.as_deref().or(self.tag.as_deref())
    }
}

/// Files changed between `base` (`changes: compare_to`) and the work tree, untracked ones
/// included; `None` when git cannot compare (unknown ref, not a repository).
pub fn changed_since(dir: &Path, base: &str) -> Option<Vec<String>> {
    let run = |args: &[&str]| git_output(dir, args);
    let mut files: Vec<String> = run(&["diff", "--name-only", base, "--"])?
        .lines()
        .chain(
            run(&["ls-files", "--others", "--exclude-standard"])
                .unwrap_or_default()
                .lines(),
        )
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    files.sort();
    files.dedup();
    Some(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(ok.status.success(), "git {args:?}: {ok:?}");
    }

    #[test]
    fn reads_commit_branch_default_branch_and_changes_from_one_status() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        git(p, &["init", "-q", "-b", "main"]);
        for f in ["a.txt", "b.txt", "old name.txt"] {
            std::fs::write(p.join(f), f).unwrap();
        }
        git(p, &["add", "."]);
        git(p, &["commit", "-qm", "first\n\nbody"]);
        git(p, &["checkout", "-q", "-b", "feature/x"]);
        std::fs::write(p.join("a.txt"), "edited").unwrap();
        git(p, &["mv", "old name.txt", "new name.txt"]);
        std::fs::create_dir(p.join("dir")).unwrap();
        std::fs::write(p.join("dir/untracked.txt"), "u").unwrap();
        let info = GitInfo::read_uncached(p);
        assert_eq!(info.sha.as_deref().map(str::len), Some(40));
        assert_eq!(info.branch.as_deref(), Some("feature/x"));
        assert_eq!(info.default_branch.as_deref(), Some("main"));
        assert_eq!(info.commit_message.as_deref(), Some("first\n\nbody"));
        assert_eq!(
            info.changed_files,
            ["a.txt", "dir/untracked.txt", "new name.txt", "old name.txt"]
        );
        assert_eq!(info.ref_name(), Some("feature/x"));
        assert!(info.tag.is_none());

        // Detached at a tag: a tag pipeline.
        git(p, &["stash", "-q", "-u"]);
        git(p, &["tag", "v1.0"]);
        git(p, &["checkout", "-q", "v1.0"]);
        let info = GitInfo::read_uncached(p);
        assert_eq!(info.branch, None);
        assert_eq!(info.tag.as_deref(), Some("v1.0"));
        assert!(info.changed_files.is_empty(), "{:?}", info.changed_files);
    }

    #[test]
    fn outside_a_repository_everything_is_unknown() {
        let d = tempfile::tempdir().unwrap();
        let info = GitInfo::read_uncached(d.path());
        assert!(info.sha.is_none() && info.branch.is_none() && info.changed_files.is_empty());
    }
}
