//! The crate's error type.

use std::io;

/// Everything that can go wrong while starting registries, serving tokens or building fixtures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed; `context` says which.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// An external program (`docker-registry`, `skopeo`, `htpasswd`, ...) exited unsuccessfully.
    /// `command` never carries secrets.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// A server (a registry, Ceph's RGW, moto's S3 server) did not answer in time, or exited
    /// while starting.
    #[error("{server} on {addr} did not become ready: {reason}\n--- its output ---\n{stderr}")]
    NotReady {
        server: &'static str,
        addr: String,
        reason: String,
        stderr: String,
    },
    /// Signing a JWT failed.
    #[error("signing a token: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// Generating the token signing key or certificate failed.
    #[error("generating the token certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// `issue_token` was asked for a user the registry does not know.
    #[error("unknown user `{0}`")]
    UnknownUser(String),
    /// The operation needs a token-auth registry.
    #[error("this registry does not use token authentication")]
    NotTokenAuth,
    /// An HTTP exchange with the test client failed.
    #[error("http: {0}")]
    Http(String),
    /// Anything else (bad argument, malformed data).
    #[error("{0}")]
    Invalid(String),
}

/// Attach a context message to an I/O error.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> IoContext<T> for Result<T, io::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

/// Run `command` to completion: its standard output, or [`Error::Command`] naming it as `shown`
/// (which must hold no secret) with its standard error.
pub(crate) fn command_output(
    command: &mut std::process::Command,
    shown: impl FnOnce() -> String,
) -> Result<String, Error> {
    let out = command.output().map_err(|source| Error::Io {
        context: format!("running {}", shown_program(command)),
        source,
    })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: shown(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn shown_program(command: &std::process::Command) -> String {
    command.get_program().to_string_lossy().into_owned()
}
