//! The registry's TOML configuration file.
//!
//! ```toml
//! addr = "127.0.0.1:5000"
//! root = "/var/lib/wharf-registry"
//! upload_expiry = "1h"       # idle upload sessions are removed after this
//! gc_grace = "1h"            # gc never removes what was written or used more recently
//! shutdown_timeout = "60s"   # how long in-flight requests (then pull-through writes) may finish after SIGTERM
//! metrics = true             # serve Prometheus metrics at /metrics
//! allow_plain_http = false   # plain HTTP on a non-loopback address needs this
//! trusted_proxies = ["10.0.0.0/24"]  # load balancers whose X-Forwarded-For names the client
//! proxy_protocol = false     # connections from trusted_proxies start with a PROXY protocol header
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
//! max_upload_chunks = 10000  # chunks (PATCH requests) one upload may have on S3
//!
//! [[proxy]]                  # a pull-through cache: repositories under `prefix` mirror `upstream`
//! prefix = "hub/"            # hub/library/node -> library/node upstream
//! upstream = "https://registry-1.docker.io"  # http:// only when written so (or insecure = true)
//! upstream_prefix = ""       # prepended to the upstream repository name
//! ttl = "5m"                 # a cached tag is checked against the upstream after this
//! expire_unpulled = "30d"    # gc drops cached manifests not pulled for this long (default: never)
//! max_blob_size = "32GiB"    # largest blob fetched from the upstream (or a number of bytes)
//! docker_config = "/etc/wharf/hub-config.json"  # credentials: a Docker config.json,
//! # or credential_helper = "pass" (docker-credential-pass), or username + password inline
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

fn trusted_proxies<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|entry| {
            crate::client_addr::parse_trusted_proxy(entry).map_err(serde::de::Error::custom)
        })
        .collect()
}

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
    /// Load balancers (addresses or networks) whose `X-Forwarded-For` names the client that the
    /// per-address limits count: see [`crate::client_addr`].
    #[serde(default, deserialize_with = "trusted_proxies")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Connections from `trusted_proxies` start with a PROXY protocol header (v1 or v2) naming
    /// the client: for balancers in TCP mode. See [`crate::proxy_header`].
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The `[auth]` table, kept raw: the auth module owns its schema.
    #[serde(default)]
    pub auth: toml::Table,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    /// `[[proxy]]` entries: pull-through caches of upstream registries.
    #[serde(default)]
    pub proxy: Vec<ProxyConfig>,
}

/// One `[[proxy]]` entry: repositories under `prefix` are a pull-through cache of `upstream`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Repository-name prefix, normalised to end with `/` (`hub/`).
    pub prefix: String,
    /// `https://host[:port]` or `http://host[:port]` (plain http only when written so).
    pub upstream: String,
    /// Prepended to the rest of the name upstream (`library/`), normalised to end with `/`.
    #[serde(default)]
    pub upstream_prefix: String,
    /// A tag cached longer than this is checked against the upstream on its next pull.
    #[serde(default = "five_minutes", deserialize_with = "duration")]
    pub ttl: Duration,
    /// Accept an invalid TLS certificate, and plain http, from the upstream.
    #[serde(default)]
    pub insecure: bool,
    /// Cached manifests (and their tags) not pulled for this long are removed by gc.
    #[serde(default, deserialize_with = "optional_duration")]
    pub expire_unpulled: Option<Duration>,
    /// Tags asked of the upstream per page of its tag list (`n`); every page is read (following
    /// `Link: <...>; rel="next"`), at most 1000 pages.
    #[serde(default = "default_tag_page_size")]
    pub tag_page_size: usize,
    /// The largest blob fetched from the upstream (`"32GiB"`, or a number of bytes): a bigger
    /// `Content-Length` is refused before a byte is read, and an answer without one is cut
    /// there, so an upstream sending an endless blob cannot fill the cache's storage.
    #[serde(default = "default_max_blob_size")]
    pub max_blob_size: bytesize::ByteSize,
    /// Credentials: a Docker `config.json` (its `auths`, `credsStore` or `credHelpers`), read
    /// again when its modification time changes...
    #[serde(default)]
    pub docker_config: Option<PathBuf>,
    /// ...or a credential helper (`pass` runs `docker-credential-pass`)...
    #[serde(default)]
    pub credential_helper: Option<String>,
    /// ...or a user and password given here.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
}

impl ProxyConfig {
    /// Normalises and checks the entry; the message says what to fix.
    fn check(&mut self) -> Result<(), String> {
        let name = format!("[[proxy]] prefix = {:?}", self.prefix);
        let trimmed = self.prefix.trim_matches('/');
        if trimmed.is_empty() || crate::names::RepoName::parse(trimmed).is_err() {
            return Err(format!(
                "{name}: the prefix must be the start of repository names, like \"hub/\""
            ));
        }
        self.prefix = format!("{trimmed}/");
        let upstream_prefix = self.upstream_prefix.trim_matches('/');
        if !upstream_prefix.is_empty() && crate::names::RepoName::parse(upstream_prefix).is_err() {
            return Err(format!(
                "{name}: upstream_prefix {:?} is not the start of a repository name",
                self.upstream_prefix
            ));
        }
        self.upstream_prefix = if upstream_prefix.is_empty() {
            String::new()
        } else {
            format!("{upstream_prefix}/")
        };
        let shown = without_userinfo(&self.upstream);
        let url = url::Url::parse(&self.upstream).map_err(|e| {
            format!(
                "{name}: upstream {shown:?} is not a URL ({e}); write it like \"https://registry-1.docker.io\""
            )
        })?;
        if !matches!(url.scheme(), "https" | "http")
            || url.host_str().is_none()
            || !url.path().trim_matches('/').is_empty()
            || url.query().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(format!(
                "{name}: upstream {shown:?} must be https://host[:port] or http://host[:port], without a path or credentials (those go in the entry's username and password, docker_config or credential_helper)"
            ));
        }
        self.upstream = self.upstream.trim_end_matches('/').to_string();
        if self.tag_page_size == 0 {
            return Err(format!(
                "{name}: tag_page_size must be at least 1 (tags per page of the upstream's tag list)"
            ));
        }
        let sources = [
            self.docker_config.is_some(),
            self.credential_helper.is_some(),
            self.username.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(format!(
                "{name}: give one credential source: docker_config, credential_helper, or username and password"
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err(format!("{name}: a password needs a username"));
        }
        if self.max_blob_size.as_u64() == 0 {
            return Err(format!(
                "{name}: max_blob_size must be more than 0 bytes (like \"32GiB\")"
            ));
        }
        if self.ttl.is_zero() {
            return Err(format!(
                "{name}: ttl must be at least 1s (a tag is then checked upstream on nearly every pull)"
            ));
        }
        Ok(())
    }
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
    /// S3 only: the most chunks (PATCH requests with a body) one upload may have. Each append
    /// lists the upload's chunks, so an upload of many tiny chunks would cost more with each.
    #[serde(default = "ten_thousand")]
    pub max_upload_chunks: usize,
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
            max_upload_chunks: ten_thousand(),
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
        // Messages show the URL without any `user:password@` written into it.
        let shown = without_userinfo(url);
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "storage `{shown}`: a file URL needs an absolute path (file:///var/lib/wharf-registry)"
                ));
            }
            return Ok(StorageLocation::File(PathBuf::from(path)));
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(format!(
                "storage `{shown}`: expected s3://BUCKET[/PREFIX] or file:///path"
            ));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains('@') {
            return Err(format!(
                "storage `{shown}`: credentials do not go in the storage URL: set \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or access_key_id and \
                 secret_access_key in [storage]"
            ));
        }
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!(
                "storage `{shown}`: `{bucket}` is not a bucket name (3-63 lowercase letters, digits, `-`, `.`)"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix
            .split('/')
            .any(|c| c == "." || c == ".." || (c.is_empty() && !prefix.is_empty()))
        {
            return Err(format!(
                "storage `{shown}`: the prefix `{prefix}` has an empty, `.` or `..` component"
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
fn default_tag_page_size() -> usize {
    100
}
/// Larger than the layers of CUDA and other machine-learning images (a few GiB each), smaller
/// than a disk an endless upstream answer would fill.
fn default_max_blob_size() -> bytesize::ByteSize {
    bytesize::ByteSize::gib(32)
}
fn five_minutes() -> Duration {
    Duration::from_secs(5 * 60)
}
fn optional_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}
fn twenty_minutes() -> Duration {
    Duration::from_secs(20 * 60)
}
/// S3's own limit of parts per multipart upload.
fn ten_thousand() -> usize {
    10_000
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
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            tls: None,
            auth: toml::Table::new(),
            limits: LimitsConfig::default(),
            storage: StorageConfig::default(),
            proxy: Vec::new(),
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
        let parse_error = |message: String| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        };
        let mut prefixes = std::collections::BTreeSet::new();
        for proxy in &mut config.proxy {
            proxy.check().map_err(parse_error)?;
            if !prefixes.insert(proxy.prefix.clone()) {
                return Err(parse_error(format!(
                    "two [[proxy]] entries have the prefix {:?}: each prefix maps to one upstream",
                    proxy.prefix
                )));
            }
        }
        if config.storage.max_upload_chunks == 0 {
            return Err(parse_error(
                "[storage] max_upload_chunks must be at least 1 (chunks one upload may have)"
                    .to_string(),
            ));
        }
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
        for proxy in &mut self.proxy {
            if let Some(file) = &mut proxy.docker_config {
                resolve(file);
            }
        }
    }
}

/// `url` with any `user:password@` after the scheme cut out, for messages about a URL that
/// may not even parse.
pub(crate) fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let host_and_path = &rest[at + 1..];
    if scheme.is_empty() {
        format!("…@{host_and_path}")
    } else {
        format!("{scheme}://…@{host_and_path}")
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
    fn trusted_proxies_are_addresses_or_networks() {
        let c = Config::parse(
            "trusted_proxies = [\"10.0.0.5\", \"fd00::/8\"]",
            Path::new("r.toml"),
        )
        .expect("valid");
        let shown: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.5/32", "fd00::/8"]);
        assert!(
            Config::parse("", Path::new("r.toml"))
                .expect("valid")
                .trusted_proxies
                .is_empty()
        );
        let e = Config::parse("trusted_proxies = [\"lb.internal\"]", Path::new("r.toml"))
            .expect_err("a host name is not an address");
        assert!(
            e.to_string().contains("r.toml") && e.to_string().contains("\"lb.internal\""),
            "{e}"
        );
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
            "s3://AKIAKEY:very-secret@bucket/prefix",
        ] {
            assert!(StorageLocation::parse(bad).is_err(), "{bad}");
        }
        let e = StorageLocation::parse("s3://AKIAKEY:very-secret@bucket").expect_err("userinfo");
        assert!(
            e.contains("s3://…@bucket")
                && e.contains("AWS_ACCESS_KEY_ID")
                && !e.contains("very-secret"),
            "{e}"
        );
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
        assert_eq!(c.storage.max_upload_chunks, 10_000);
        let e = Config::parse("[storage]\nmax_upload_chunks = 0\n", Path::new("r.toml"))
            .expect_err("no chunks at all");
        assert!(e.to_string().contains("max_upload_chunks"), "{e}");
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
    fn proxy_entries_are_normalised_and_checked() {
        let c = Config::parse(
            "[[proxy]]\nprefix = \"/hub\"\nupstream = \"https://registry-1.docker.io/\"\nupstream_prefix = \"library\"\nttl = \"10m\"\nexpire_unpulled = \"30d\"\ndocker_config = \"hub.json\"\nmax_blob_size = \"500MiB\"\n\n[[proxy]]\nprefix = \"local/\"\nupstream = \"http://127.0.0.1:5001\"\nmax_blob_size = 4096\nusername = \"u\"\npassword = \"hunter2-secret\"\n",
            Path::new("/etc/wharf/r.toml"),
        )
        .expect("valid");
        let hub = &c.proxy[0];
        assert_eq!(hub.prefix, "hub/");
        assert_eq!(hub.upstream, "https://registry-1.docker.io");
        assert_eq!(hub.upstream_prefix, "library/");
        assert_eq!(hub.ttl, Duration::from_secs(600));
        assert_eq!(hub.expire_unpulled, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(hub.max_blob_size.as_u64(), 500 << 20);
        assert_eq!(
            hub.docker_config.as_deref(),
            Some(Path::new("/etc/wharf/hub.json"))
        );
        let local = &c.proxy[1];
        assert_eq!(local.ttl, Duration::from_secs(300));
        assert_eq!(local.expire_unpulled, None);
        assert_eq!(local.max_blob_size.as_u64(), 4096);
        assert!(!format!("{c:?}").contains("hunter2"));

        let bad = |text: &str, needle: &str| {
            let e = Config::parse(text, Path::new("r.toml")).expect_err(text);
            assert!(
                e.to_string().contains(needle) && e.to_string().contains("r.toml"),
                "{e}"
            );
        };
        let entry = |rest: &str| format!("[[proxy]]\nprefix = \"hub/\"\n{rest}");
        bad(&entry("upstream = \"ftp://x\""), "https://host");
        bad(&entry("upstream = \"https://x/v2/\""), "without a path");
        bad(&entry("upstream = \"registry-1.docker.io\""), "not a URL");
        // Credentials in the URL: refused, and never echoed (a password alone too).
        for upstream in [
            "https://u:pw-very-secret@x",
            "https://:pw-very-secret@x",
            "https://u:pw very-secret@x/v2",
        ] {
            let text = entry(&format!("upstream = \"{upstream}\""));
            let e = Config::parse(&text, Path::new("r.toml")).expect_err(&text);
            assert!(e.to_string().contains("https://…@x"), "{e}");
            assert!(!e.to_string().contains("very-secret"), "{e}");
        }
        bad(
            &entry("upstream = \"https://x\"\nusername = \"u\"\ncredential_helper = \"pass\""),
            "one credential source",
        );
        bad(
            &entry("upstream = \"https://x\"\npassword = \"p\""),
            "needs a username",
        );
        bad(&entry("upstream = \"https://x\"\nttl = 0"), "ttl");
        bad(
            &entry("upstream = \"https://x\"\nmax_blob_size = 0"),
            "max_blob_size must be more than 0",
        );
        bad(
            &entry("upstream = \"https://x\"\nmax_blob_size = \"lots\""),
            "max_blob_size",
        );
        bad(
            "[[proxy]]\nprefix = \"UPPER/\"\nupstream = \"https://x\"",
            "start of repository names",
        );
        bad(
            &format!(
                "{}\n{}",
                entry("upstream = \"https://x\""),
                entry("upstream = \"https://y\"")
            ),
            "two [[proxy]] entries",
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
