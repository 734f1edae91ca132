//! Errors of access-control setup (configuration, files, keys). Requests never fail with these:
//! they get challenges. No variant ever carries a password, hash, secret or token.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth configuration: {0}")]
    Config(String),
    #[error("{}:{line}: {message}", path.display())]
    Htpasswd {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token signing key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("trusted token keys {}: {message}", path.display())]
    Trust { path: PathBuf, message: String },
    #[error("password hashing: {0}")]
    Hash(String),
}

impl AuthError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuthError {
        let path = path.into();
        move |source| AuthError::Io { path, source }
    }
}
