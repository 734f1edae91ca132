//! The `git` fallback for project and component files when the instance's API cannot be
//! reached: a bare repository per project in the cache, `git fetch --depth 1 <url> <ref>`, then
//! `git show FETCH_HEAD:<file>`. Authentication is the user's own git setup (credential helpers,
//! ssh keys); wharf's token is never given to git, and git never prompts.

use crate::cache::sha256_hex;
use crate::error::Error;
use crate::settings::{GitTransport, Settings};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A file read from git and the commit it was read at.
pub(crate) struct GitFile {
    pub text: String,
    pub commit: String,
}

/// The clone URL of `project` on the instance.
pub(crate) fn project_url(settings: &Settings, project: &str) -> String {
    match settings.git {
        GitTransport::Https => format!(
            "{}/{project}.git",
            settings.url.as_str().trim_end_matches('/')
        ),
        GitTransport::Ssh => format!(
            "git@{}:{project}.git",
            settings.url.host_str().unwrap_or_default()
        ),
    }
}

/// `file` of `project` at `reference` (`None`: the default branch, git's `HEAD`).
pub(crate) fn fetch_file(
    settings: &Settings,
    project: &str,
    reference: Option<&str>,
    file: &str,
) -> Result<GitFile, Error> {
    let url = project_url(settings, project);
    let repo = cached_repo(settings, &url)?;
    let reference = reference.unwrap_or("HEAD");
    git(
        settings,
        &repo,
        &[
            "fetch",
            "--quiet",
            "--depth",
            "1",
            "--no-tags",
            &url,
            reference,
        ],
        &format!("fetch {reference} from"),
        &url,
    )?;
    let text = git(
        settings,
        &repo,
        &["show", &format!("FETCH_HEAD:{file}")],
        &format!("show {file} at {reference} of"),
        &url,
    )?;
    let commit = git(
        settings,
        &repo,
        &["rev-parse", "FETCH_HEAD"],
        "rev-parse",
        &url,
    )?;
    Ok(GitFile {
        text,
        commit: commit.trim().to_string(),
    })
}

/// The tag names of `project` (`git ls-remote --tags`), for component versions.
pub(crate) fn tags(settings: &Settings, project: &str) -> Result<Vec<String>, Error> {
    let url = project_url(settings, project);
    let repo = cached_repo(settings, &url)?;
    let listing = git(
        settings,
        &repo,
        &["ls-remote", "--tags", "--refs", &url],
        "ls-remote --tags",
        &url,
    )?;
    Ok(listing
        .lines()
        .filter_map(|line| {
            line.split_once("refs/tags/")
                .map(|(_, tag)| tag.to_string())
        })
        .collect())
}

/// The cache's bare repository for `url`, created on first use.
fn cached_repo(settings: &Settings, url: &str) -> Result<PathBuf, Error> {
    let repo = settings
        .cache_dir
        .join("git")
        .join(format!("{}.git", &sha256_hex(url.as_bytes())[..24]));
    if !repo.join("HEAD").exists() {
        std::fs::create_dir_all(&repo).map_err(|e| Error::cache(&repo, e))?;
        git(settings, &repo, &["init", "--bare", "--quiet"], "init", url)?;
    }
    Ok(repo)
}

fn git(
    settings: &Settings,
    repo: &Path,
    args: &[&str],
    action: &str,
    url: &str,
) -> Result<String, Error> {
    let mut command = Command::new("git");
    command.arg("--git-dir").arg(repo);
    for option in git_options(settings) {
        command.arg("-c").arg(option);
    }
    if let Some(ca) = &settings.ca_file {
        // The environment variable, not `-c http.sslCAInfo`: an inherited GIT_SSL_CAINFO
        // would beat the option.
        command.env("GIT_SSL_CAINFO", absolute(ca));
    }
    let output = command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "")
        .output()
        .map_err(|e| Error::Git {
            action: action.to_string(),
            url: url.to_string(),
            stderr: format!("cannot run git ({e}); install git or give a token for the API"),
        })?;
    if !output.status.success() {
        return Err(Error::Git {
            action: action.to_string(),
            url: url.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    String::from_utf8(output.stdout).map_err(|_| Error::Git {
        action: action.to_string(),
        url: url.to_string(),
        stderr: "the file is not UTF-8 text".into(),
    })
}

/// `--resolve` in git's terms. curl's resolve cannot change the port, so an override applies
/// to git only when its port is the instance URL's.
fn git_options(settings: &Settings) -> Vec<String> {
    let mut options = Vec::new();
    let port = settings.url.port_or_known_default().unwrap_or(443);
    for entry in &settings.resolve {
        if entry.addr.port() == port {
            options.push(format!(
                "http.curloptResolve={}:{port}:{}",
                entry.host,
                entry.addr.ip()
            ));
        }
    }
    options
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
