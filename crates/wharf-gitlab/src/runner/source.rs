//! The job's sources from `git_info`, as gitlab-runner's default `fetch` strategy gets them:
//! one working copy per project in the runner's builds folder, fetched (refspecs, depth) and
//! checked out at the job's commit, then cleaned. The job token goes to git as an HTTP header
//! through git's environment (`GIT_CONFIG_*`), never on a command line or in the remote URL.

use super::spec::JobPayload;
use crate::settings::strip_userinfo;
use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the sources could not be had. Messages never hold the token.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("git {action} in {dir}: {stderr}")]
    Git {
        action: String,
        dir: PathBuf,
        stderr: String,
    },
    #[error("preparing {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("git_info.repo_url `{url}` is not a URL git can fetch over http(s): {reason}")]
    Url { url: String, reason: String },
}

/// `GIT_STRATEGY`: how the sources get into the build folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitStrategy {
    Fetch,
    Clone,
    /// No sources: an empty folder.
    None,
}

impl GitStrategy {
    pub fn of(payload: &JobPayload) -> GitStrategy {
        match payload
            .variables
            .iter()
            .rev()
            .find(|v| v.key == "GIT_STRATEGY")
            .map(|v| v.value.as_str())
        {
            Some("none" | "empty") => GitStrategy::None,
            Some("clone") => GitStrategy::Clone,
            _ => GitStrategy::Fetch,
        }
    }
}

/// The folder of this project's working copy under `builds_dir`.
pub fn project_dir(builds_dir: &Path, payload: &JobPayload) -> PathBuf {
    let path = payload
        .job_info
        .project_full_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("project-{}", payload.job_info.project_id));
    // Only plain path segments: the path comes from the server.
    let safe: PathBuf = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "." && *s != "..")
        .collect();
    builds_dir.join(safe)
}

/// Get the sources into `dir` as `strategy` says; `log` gets gitlab-runner's lines.
pub fn get_sources(
    payload: &JobPayload,
    dir: &Path,
    strategy: GitStrategy,
    log: &mut dyn FnMut(&str),
) -> Result<(), SourceError> {
    let io = |source| SourceError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    if strategy != GitStrategy::Fetch && dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    if strategy == GitStrategy::None {
        log("Skipping Git repository setup (GIT_STRATEGY: none)");
        return Ok(());
    }
    let git = &payload.git_info;
    let (url, user) = split_credentials(&git.repo_url)?;
    let header = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            user.as_deref().unwrap_or("gitlab-ci-token"),
            payload.token.secret()
        ))
    );
    let run = |action: &str, args: &[&str]| -> Result<(), SourceError> {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", &header)
            .output()
            .map_err(io)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(SourceError::Git {
                action: action.to_string(),
                dir: dir.to_path_buf(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    };
    if dir.join(".git").is_dir() {
        log(&format!(
            "Reinitialized existing Git repository in {}",
            dir.display()
        ));
        run("remote set-url", &["remote", "set-url", "origin", &url])?;
    } else {
        log(&format!(
            "Initialized empty Git repository in {}",
            dir.join(".git").display()
        ));
        run("init", &["init", "-q"])?;
        run("remote add", &["remote", "add", "origin", &url])?;
    }
    let mut fetch: Vec<String> = vec!["fetch".into(), "-q".into(), "--prune".into()];
    if git.depth > 0 {
        log(&format!(
            "Fetching changes with git depth set to {}...",
            git.depth
        ));
        fetch.push(format!("--depth={}", git.depth));
    } else {
        log("Fetching changes...");
    }
    fetch.push("origin".into());
    if git.refspecs.is_empty() {
        fetch.push(format!("+{}", git.sha));
    } else {
        fetch.extend(git.refspecs.iter().cloned());
    }
    let args: Vec<&str> = fetch.iter().map(String::as_str).collect();
    run("fetch", &args)?;
    let short = git.sha.get(..8).unwrap_or(&git.sha);
    log(&format!(
        "Checking out {short} as detached HEAD (ref is {})...",
        git.ref_name
    ));
    run("checkout", &["checkout", "-f", "-q", &git.sha])?;
    run("clean", &["clean", "-ffdx", "-q"])?;
    Ok(())
}

/// The URL without user and password, and the user GitLab put in it (`gitlab-ci-token`):
/// the token then goes in a header only.
fn split_credentials(repo_url: &str) -> Result<(String, Option<String>), SourceError> {
    let bad = |reason: &str| SourceError::Url {
        url: strip_userinfo(repo_url),
        reason: reason.to_string(),
    };
    let mut url = url::Url::parse(repo_url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http and https are supported"));
    }
    let user = (!url.username().is_empty()).then(|| url.username().to_string());
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url.to_string(), user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_in_a_repo_url_is_taken_out() {
        let (url, user) =
            split_credentials("https://gitlab-ci-token:secret@gitlab.example.com/g/p.git").unwrap();
        assert_eq!(url, "https://gitlab.example.com/g/p.git");
        assert_eq!(user.as_deref(), Some("gitlab-ci-token"));
        let err = split_credentials("ssh://gitlab-ci-token:secret@h/p.git").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
