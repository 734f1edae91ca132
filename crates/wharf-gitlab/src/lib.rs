//! wharf's side of a GitLab instance. Today: the files an `include:` names outside the project
//! (`remote`, `template`, `project`, `component`), fetched over the instance's API (or plain
//! `git` when the API cannot be reached) into a content-addressed cache, for wharf-ci's
//! [`wharf_ci::Loader::fetch`]. wharf-ci itself stays free of IO. And [`runner`]: GitLab's runner
//! protocol (take jobs, send their traces and states) for `wharf runner`.
//!
//! Invariants: a token is sent only to the instance's host, in a header, and appears in no
//! error, warning or `Debug` output; cache files are written by rename (never half written).

mod cache;
mod error;
mod git;
mod http;
mod instance;
pub mod runner;
mod settings;
mod version;

pub use error::{Error, SettingsError};
pub use instance::Instance;
pub use settings::{
    DEFAULT_GITLAB_URL, DEFAULT_MAX_FILE_BYTES, GitTransport, Resolve, Settings, Token, TokenKind,
    default_cache_dir, instance_url,
};
