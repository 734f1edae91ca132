//! What one client may hold of the server: connections, time without sending, upload sessions,
//! failed logins. The `[limits]` table of the config file; flags of `wharf registry serve`
//! override it.
//!
//! ```toml
//! [limits]
//! max_connections = 0                  # 0: derived from RLIMIT_NOFILE (3/4 of it, at most 16384)
//! header_timeout = "10s"               # a request's head must arrive within this
//! idle_timeout = "60s"                 # a connection with no traffic and no request is closed
//! upload_sessions_per_subject = 100    # open upload sessions of one user (or address)
//! upload_sessions_per_repository = 1000
//! upload_sessions_total = 10000
//! login_failures_per_address = 30      # failed logins an address may spend (refills 1 per 2 s)
//! login_failures_before_backoff = 5    # per address and user, then 1 s, 2 s, 4 s ... 60 s
//! ```

use std::time::Duration;

use serde::Deserialize;

/// Unread request bodies up to this size are read and dropped after an early answer (a 401
/// before an upload's body), so the client may keep its connection, as Go's server does.
pub const DRAIN_LIMIT_BYTES: u64 = 256 * 1024;

/// The most connections derived from the fd limit, whatever that limit.
const DERIVED_CONNECTIONS_CEILING: u64 = 16_384;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open connections at most; 0 derives it from the file descriptor limit. At the cap, the
    /// connection idle the longest (or still sending its request head) makes room.
    pub max_connections: usize,
    #[serde(deserialize_with = "crate::duration::duration")]
    pub header_timeout: Duration,
    #[serde(deserialize_with = "crate::duration::duration")]
    pub idle_timeout: Duration,
    pub upload_sessions_per_subject: usize,
    pub upload_sessions_per_repository: usize,
    pub upload_sessions_total: usize,
    pub login_failures_per_address: u32,
    pub login_failures_before_backoff: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 0,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            upload_sessions_per_subject: 100,
            upload_sessions_per_repository: 1000,
            upload_sessions_total: 10_000,
            login_failures_per_address: 30,
            login_failures_before_backoff: 5,
        }
    }
}

impl LimitsConfig {
    /// Refuses values that would make the server useless.
    pub fn check(&self) -> Result<(), String> {
        if self.header_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err("limits: header_timeout and idle_timeout must be at least 1s".to_string());
        }
        let sessions = [
            (
                "upload_sessions_per_subject",
                self.upload_sessions_per_subject,
            ),
            (
                "upload_sessions_per_repository",
                self.upload_sessions_per_repository,
            ),
            ("upload_sessions_total", self.upload_sessions_total),
        ];
        for (name, n) in sessions {
            if n == 0 {
                return Err(format!(
                    "limits: {name} = 0 would refuse every upload: give at least 1"
                ));
            }
        }
        if self.login_failures_per_address == 0 {
            return Err("limits: login_failures_per_address must be at least 1".to_string());
        }
        Ok(())
    }

    /// The connection cap in force: the configured one, else 3/4 of the soft `RLIMIT_NOFILE`
    /// (the rest is headroom for storage files, the listener and logs).
    pub fn connection_cap(&self) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        derived_connection_cap(fd_limit())
    }
}

/// 3/4 of `fd_limit`, at least 16 and at most 16384.
pub fn derived_connection_cap(fd_limit: u64) -> usize {
    let cap = (fd_limit / 4 * 3).clamp(16, DERIVED_CONNECTIONS_CEILING);
    usize::try_from(cap).unwrap_or(16)
}

/// The soft limit on open files (1024 when unknown or unlimited beyond reason).
pub fn fd_limit() -> u64 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.unwrap_or(u64::MAX).min(1 << 20)
}

/// Raises the soft open-files limit to the hard one (as Go programs do at start), so the derived
/// connection cap is not needlessly low. Returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(error = %e, "cannot raise the open-files limit");
        }
    }
    fd_limit()
}

/// Limits and timings the services enforce.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Manifests larger than this are refused (the spec suggests at least 4 MiB).
    pub manifest_max_bytes: usize,
    /// Upload sessions idle longer than this are removed.
    pub upload_expiry: Duration,
    /// Open upload sessions of one subject (user, or client address when anonymous).
    pub upload_sessions_per_subject: usize,
    /// Open upload sessions of one repository.
    pub upload_sessions_per_repository: usize,
    /// Open upload sessions in all.
    pub upload_sessions_total: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let defaults = LimitsConfig::default();
        Limits {
            manifest_max_bytes: 4 * 1024 * 1024,
            upload_expiry: Duration::from_secs(3600),
            upload_sessions_per_subject: defaults.upload_sessions_per_subject,
            upload_sessions_per_repository: defaults.upload_sessions_per_repository,
            upload_sessions_total: defaults.upload_sessions_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_cap_leaves_headroom_below_the_fd_limit() {
        assert_eq!(derived_connection_cap(1024), 768);
        assert_eq!(derived_connection_cap(20), 16);
        assert_eq!(derived_connection_cap(1 << 20), 16_384);
        let configured = LimitsConfig {
            max_connections: 5,
            ..LimitsConfig::default()
        };
        assert_eq!(configured.connection_cap(), 5);
        assert!(
            LimitsConfig::default().connection_cap()
                < usize::try_from(fd_limit()).unwrap_or(usize::MAX)
        );
    }
}
