//! The registry's TOML configuration file.
//!
//! ```toml
//! addr = "127.0.0.1:5000"
//! root = "/var/lib/wharf-registry"
//! upload_expiry = "1h"       # idle upload sessions are removed after this
//! gc_grace = "1h"            # gc never removes what was written or used more recently
//! shutdown_timeout = "60s"   # how long in-flight requests may finish after SIGTERM
//! metrics = true             # serve Prometheus metrics at /metrics
//! allow_plain_http = false   # plain HTTP on a non-loopback address needs this
//!
//! [tls]
//! cert = "cert.pem"          # PEM chain
//! key = "key.pem"            # PEM private key
//!
//! [auth]                     # access control: parsed by the auth module
//!
//! [limits]                   # what one client may hold: see `crate::limits`
//! ```
//!
//! Durations are `<number><unit>` with unit `s`, `m`, `h` or `d`, or a plain number of seconds.
//! Relative paths are resolved against the file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::duration;
pub use crate::duration::parse_duration;
use crate::limits::LimitsConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_addr")]
    pub addr: SocketAddr,
    #[serde(default = "default_root")]
    pub root: PathBuf,
    #[serde(default = "one_hour", deserialize_with = "duration")]
    pub upload_expiry: Duration,
    #[serde(default = "one_hour", deserialize_with = "duration")]
    pub gc_grace: Duration,
    #[serde(default = "one_minute", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
    #[serde(default = "yes")]
    pub metrics: bool,
    #[serde(default)]
    pub allow_plain_http: bool,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The `[auth]` table, kept raw: the auth module owns its schema.
    #[serde(default)]
    pub auth: toml::Table,
    #[serde(default)]
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn default_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5000))
}
fn default_root() -> PathBuf {
    PathBuf::from("/var/lib/wharf-registry")
}
fn one_hour() -> Duration {
    Duration::from_secs(3600)
}
fn one_minute() -> Duration {
    Duration::from_secs(60)
}
fn yes() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: default_addr(),
            root: default_root(),
            upload_expiry: one_hour(),
            gc_grace: one_hour(),
            shutdown_timeout: one_minute(),
            metrics: true,
            allow_plain_http: false,
            tls: None,
            auth: toml::Table::new(),
            limits: LimitsConfig::default(),
        }
    }
}

impl Config {
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        config
            .limits
            .check()
            .map_err(|message| ConfigError::Parse {
                path: path.display().to_string(),
                message,
            })?;
        if let Some(base) = path.parent() {
            config.resolve_paths(base);
        }
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, path)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.root);
        if let Some(tls) = &mut self.tls {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults_and_relative_paths() {
        let c = Config::parse("root = \"data\"\nupload_expiry = \"15m\"\ngc_grace = 30\n[tls]\ncert = \"c.pem\"\nkey = \"/k.pem\"\n[auth]\nmode = \"basic\"\n", Path::new("/etc/wharf/registry.toml"))
            .expect("valid");
        assert_eq!(c.addr, default_addr());
        assert_eq!(c.root, PathBuf::from("/etc/wharf/data"));
        assert_eq!(c.upload_expiry, Duration::from_secs(900));
        assert_eq!(c.gc_grace, Duration::from_secs(30));
        let tls = c.tls.expect("tls");
        assert_eq!(tls.cert, PathBuf::from("/etc/wharf/c.pem"));
        assert_eq!(tls.key, PathBuf::from("/k.pem"));
        assert_eq!(c.auth.get("mode").and_then(|v| v.as_str()), Some("basic"));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_durations() {
        assert!(Config::parse("adr = \"x\"", Path::new("r.toml")).is_err());
        assert!(Config::parse("gc_grace = \"1w\"", Path::new("r.toml")).is_err());
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172800)));
        assert!(Config::parse("[limits]\nmax_conections = 5", Path::new("r.toml")).is_err());
        let e = Config::parse("[limits]\nidle_timeout = 0", Path::new("r.toml"))
            .expect_err("zero idle timeout");
        assert!(e.to_string().contains("at least 1s"), "{e}");
    }

    #[test]
    fn limits_table_overrides_defaults() {
        let c = Config::parse(
            "[limits]\nmax_connections = 50\nheader_timeout = \"3s\"\nupload_sessions_per_subject = 7\n",
            Path::new("r.toml"),
        )
        .expect("valid");
        assert_eq!(c.limits.max_connections, 50);
        assert_eq!(c.limits.header_timeout, Duration::from_secs(3));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.limits.upload_sessions_per_subject, 7);
    }
}
