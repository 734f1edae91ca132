//! Includes from outside the project (`remote`, `template`, `project`, `component`): the flags
//! that say where they come from, and the [`wharf_ci::Loader::fetch`] side of the project
//! loader, backed by wharf-gitlab.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::sync::OnceLock;
use wharf_ci::{External, FetchFailure, Fetched};
use wharf_gitlab::{GitTransport, Instance, Resolve, Settings, Token};

/// Where included files from outside the project come from.
#[derive(Args, Clone)]
pub struct IncludeArgs {
    /// The GitLab instance for `include: project/template/component` (default: CI_SERVER_URL,
    /// else https://gitlab.com).
    #[arg(long = "gitlab-url", value_name = "URL")]
    gitlab_url: Option<String>,
    /// A file holding a GitLab access token (sent as PRIVATE-TOKEN, to the instance's host only).
    /// Without it: GITLAB_TOKEN, else CI_JOB_TOKEN (as JOB-TOKEN).
    #[arg(long = "gitlab-token-file", value_name = "FILE")]
    gitlab_token_file: Option<PathBuf>,
    /// Extra trusted CA certificates (PEM) for a GitLab instance with a private CA.
    #[arg(long = "gitlab-ca-file", value_name = "PEM")]
    gitlab_ca_file: Option<PathBuf>,
    /// Connect to IP:PORT whenever HOST is asked for (TLS still checks HOST). Repeatable.
    #[arg(long = "resolve", value_name = "HOST=IP:PORT")]
    resolve: Vec<Resolve>,
    /// Where fetched include files are kept (default: $XDG_CACHE_HOME/wharf/includes, else
    /// ~/.cache/wharf/includes).
    #[arg(long = "include-cache", value_name = "DIR")]
    include_cache: Option<PathBuf>,
    /// Use only the include cache: no network at all.
    #[arg(long)]
    offline: bool,
    /// How project and component files are read with `git` when the instance's API cannot be
    /// reached: https://<instance>/<project>.git or git@<host>:<project>.git.
    #[arg(long = "include-git", value_enum, value_name = "HOW", default_value_t = GitVia::Https)]
    include_git: GitVia,
}

#[derive(Clone, Copy, ValueEnum)]
enum GitVia {
    Https,
    Ssh,
}

impl IncludeArgs {
    /// The settings from the flags and the environment, checked now (a bad flag is an error
    /// even when the pipeline includes nothing from outside).
    pub fn network(&self, max_file_bytes: usize) -> Result<Network> {
        let env = |name: &str| std::env::var(name).ok();
        let url = wharf_gitlab::instance_url(
            self.gitlab_url.as_deref(),
            env("CI_SERVER_URL").as_deref(),
        )?;
        let cache_dir = self.include_cache.clone().unwrap_or_else(|| {
            wharf_gitlab::default_cache_dir(
                std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .as_deref(),
                std::env::var_os("HOME").map(PathBuf::from).as_deref(),
            )
        });
        let mut settings = Settings::new(url, cache_dir);
        settings.token = Token::from_sources(
            self.gitlab_token_file.as_deref(),
            env("GITLAB_TOKEN").as_deref(),
            env("CI_JOB_TOKEN").as_deref(),
        )?;
        if let Some(ca) = &self.gitlab_ca_file {
            std::fs::metadata(ca).with_context(|| format!("--gitlab-ca-file {}", ca.display()))?;
        }
        settings.ca_file = self.gitlab_ca_file.clone();
        settings.resolve = self.resolve.clone();
        settings.offline = self.offline;
        settings.git = match self.include_git {
            GitVia::Https => GitTransport::Https,
            GitVia::Ssh => GitTransport::Ssh,
        };
        settings.max_file_bytes = max_file_bytes;
        Ok(Network {
            settings,
            instance: OnceLock::new(),
        })
    }
}

/// The GitLab instance, started on the first include that needs it (a pipeline with only local
/// includes builds no HTTP client).
pub struct Network {
    settings: Settings,
    instance: OnceLock<Result<Instance, String>>,
}

impl Network {
    pub fn fetch(&self, file: &External) -> Result<Fetched, FetchFailure> {
        let instance = self
            .instance
            .get_or_init(|| Instance::new(self.settings.clone()).map_err(|e| e.to_string()));
        let instance = instance.as_ref().map_err(|e| FetchFailure {
            message: format!("{}: {e}", file.describe()),
            help: None,
        })?;
        let result = instance.fetch_include(file);
        for warning in instance.take_warnings() {
            eprintln!("warning: {warning}");
        }
        result
    }

    /// The text of a file fetched before, by its name in diagnostics.
    pub fn fetched_text(&self, name: &str) -> Option<String> {
        self.instance.get()?.as_ref().ok()?.fetched_text(name)
    }
}
