//! What the project's git work tree tells the pipeline: the commit, the ref it runs for, the
//! default branch, and the changed files (`rules: changes`, `only: changes`).

use std::path::Path;
use std::process::{Command, Stdio};

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
    pub fn read(dir: &Path) -> Self {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let Some(sha) = git(&["rev-parse", "HEAD"]).filter(|s| !s.is_empty()) else {
            return Self::default();
        };
        let branch = git(&["symbolic-ref", "--short", "-q", "HEAD"]).filter(|b| !b.is_empty());
        let tag = if branch.is_none() {
            git(&["tag", "--points-at", "HEAD"])
                .and_then(|t| t.lines().next().map(str::to_string))
                .filter(|t| !t.is_empty())
        } else {
            None
        };
        let default_branch = git(&["symbolic-ref", "--short", "-q", "refs/remotes/origin/HEAD"])
            .and_then(|r| r.strip_prefix("origin/").map(str::to_string))
            .or_else(|| {
                ["main", "master"].into_iter().find_map(|b| {
                    git(&["rev-parse", "--verify", "-q", &format!("refs/heads/{b}")])
                        .map(|_| b.to_string())
                })
            })
            .or_else(|| branch.clone());
        let mut changed_files: Vec<String> = Vec::new();
        for out in [
            git(&["diff", "--name-only", "HEAD"]),
            git(&["ls-files", "--others", "--exclude-standard"]),
        ]
        .into_iter()
        .flatten()
        {
            changed_files.extend(out.lines().filter(|l| !l.is_empty()).map(str::to_string));
        }
        changed_files.sort();
        changed_files.dedup();
        Self {
            commit_message: git(&["log", "-1", "--format=%B"]),
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
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
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
