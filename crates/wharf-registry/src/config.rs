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
//!
//! [storage]                  # where blobs, manifests and upload sessions live
//! url = "s3://bucket/prefix" # or "file:///var/lib/wharf-registry" (the same as `root`)
//! endpoint = "http://127.0.0.1:7480"  # S3-compatible server (path-style; http allowed)
//! region = "us-east-1"
//! access_key_id = "..."      # else AWS_ACCESS_KEY_ID (likewise the secret and session token)
//! secret_access_key = "..."
//! redirect = true            # blob GET/HEAD answer 307 to a presigned URL (false: stream)
//! redirect_expiry = "20m"
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
    #[serde(default)]
    pub storage: StorageConfig,
}

/// The `[storage]` table: the backend, and for S3 how to reach it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `s3://BUCKET[/PREFIX]` or `file:///path`; absent means the filesystem at `root`.
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<Secret>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub session_token: Option<Secret>,
    #[serde(default = "yes")]
    pub redirect: bool,
    #[serde(default = "twenty_minutes", deserialize_with = "duration")]
    pub redirect_expiry: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            url: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            redirect: true,
            redirect_expiry: twenty_minutes(),
        }
    }
}

/// A credential: never printed (Debug shows its length only).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Where the registry keeps its data, from `[storage] url` (or `root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLocation {
    File(PathBuf),
    /// `prefix` has no leading or trailing `/` and may be empty.
    S3 {
        bucket: String,
        prefix: String,
    },
}

impl StorageLocation {
    /// Parses `s3://BUCKET[/PREFIX]` or `file:///path`.
    pub fn parse(url: &str) -> Result<StorageLocation, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "storage `{url}`: a file URL needs an absolute path (file:///var/lib/wharf-registry)"
                ));
            }
            return Ok(StorageLocation::File(PathBuf::from(path)));
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(format!(
                "storage `{url}`: expected s3://BUCKET[/PREFIX] or file:///path"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!(
                "storage `{url}`: `{bucket}` is not a bucket name (3-63 lowercase letters, digits, `-`, `.`)"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|c| c == "." || c == ".." || (c.is_empty() && !prefix.is_empty()))
        {
            return Err(format!(
                "storage `{url}`: the prefix `{prefix}` has an empty, `.` or `..` component"
            ));
        }
        Ok(StorageLocation::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl std::fmt::Display for StorageLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageLocation::File(path) => write!(f, "{}", path.display()),
            StorageLocation::S3 { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{bucket}")
            }
            StorageLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
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
fn twenty_minutes() -> Duration {
    Duration::from_secs(20 * 60)
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
            storage: StorageConfig::default(),
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
        // Checked now so a typo fails at start with the file's name, not at the first request.
        config
            .storage_location()
            .map_err(|message| ConfigError::Parse {
                path: path.display().to_string(),
                message,
            })?;
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// The backend: `[storage] url` if set, else the filesystem at `root`.
    pub fn storage_location(&self) -> Result<StorageLocation, String> {
        match &self.storage.url {
            Some(url) => StorageLocation::parse(url),
            None => Ok(StorageLocation::File(self.root.clone())),
        }
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
    fn storage_urls() {
        assert_eq!(
            StorageLocation::parse("s3://my-bucket/a/b/"),
            Ok(StorageLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            })
        );
        assert_eq!(
            StorageLocation::parse("s3://my-bucket"),
            Ok(StorageLocation::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            StorageLocation::parse("file:///srv/reg"),
            Ok(StorageLocation::File(PathBuf::from("/srv/reg")))
        );
        for bad in [
            "s3://B",
            "s3://ab",
            "file://rel",
            "http://x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
        ] {
            assert!(StorageLocation::parse(bad).is_err(), "{bad}");
        }
        let c = Config::parse("root = \"data\"", Path::new("/etc/r.toml")).expect("valid");
        assert_eq!(
            c.storage_location(),
            Ok(StorageLocation::File(PathBuf::from("/etc/data")))
        );
    }

    #[test]
    fn storage_table_and_secrets_stay_out_of_debug() {
        let c = Config::parse(
            "[storage]\nurl = \"s3://reg/prod\"\nendpoint = \"http://127.0.0.1:7480\"\nsecret_access_key = \"hunter2-very-secret\"\nredirect_expiry = \"5m\"\n",
            Path::new("r.toml"),
        )
        .expect("valid");
        assert_eq!(c.storage.redirect_expiry, Duration::from_secs(300));
        assert!(c.storage.redirect);
        assert_eq!(
            c.storage.secret_access_key.as_ref().map(Secret::expose),
            Some("hunter2-very-secret")
        );
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let e = Config::parse("[storage]\nurl = \"s4://x\"", Path::new("r.toml"))
            .expect_err("bad scheme");
        assert!(
            e.to_string().contains("r.toml") && e.to_string().contains("s3://"),
            "{e}"
        );
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
