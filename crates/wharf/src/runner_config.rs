//! gitlab-runner's `config.toml` (`common/config.go`), the part wharf acts on: `concurrent`,
//! `check_interval` and `[[runners]]` with `name`, `url`, `id`, `token`, `executor`, `limit`,
//! `builds_dir`, `environment`, `output_limit`, `pre_build_script`, `post_build_script`,
//! `[runners.cache]` (S3) and `[runners.docker]` (`image`, `pull_policy`,
//! `allowed_pull_policies`, `allowed_images`, `allowed_services`, `volumes`, `memory`,
//! `pids_limit`, `privileged`). Every other key whose value would change what gitlab-runner
//! does is reported once when the runners start, never ignored silently; one set to
//! gitlab-runner's default is not (see `changed_keys`). `register` and `unregister` edit the
//! file in place (toml_edit): comments, order and keys wharf does not know stay as written.
//! The file holds runner tokens: it is always written with mode 0600.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
pub(crate) struct Config {
    #[serde(default = "one")]
    pub concurrent: usize,
    /// Seconds between job requests; 0: gitlab-runner's default (3 s).
    #[serde(default)]
    pub check_interval: u64,
    #[serde(default)]
    pub runners: Vec<RunnerConfig>,
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

fn one() -> usize {
    1
}

fn shell() -> String {
    "shell".into()
}

/// One `[[runners]]` entry. No `Debug`: it holds the token.
#[derive(Deserialize, Clone)]
pub(crate) struct RunnerConfig {
    /// Optional, as in gitlab-runner; a runner without one is named by its short token (see
    /// [`Config::parse`]).
    #[serde(default)]
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub id: u64,
    /// Empty or missing: the runner does not start (the error says where to get one).
    #[serde(default)]
    pub token: String,
    /// GitLab's, written by `register`; known so that they are not reported as unsupported.
    #[serde(default)]
    #[allow(dead_code)]
    pub token_expires_at: Option<toml::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    pub token_obtained_at: Option<toml::Value>,
    #[serde(default = "shell")]
    pub executor: String,
    /// Jobs of this runner at once; 0: no limit of its own (only `concurrent`).
    #[serde(default)]
    pub limit: usize,
    #[serde(default)]
    pub builds_dir: Option<PathBuf>,
    /// `KEY=VALUE` variables every job of this runner gets, below the job's own.
    #[serde(default)]
    pub environment: Vec<String>,
    /// KiB of a job's log GitLab gets (gitlab-runner's default: 4096).
    #[serde(default)]
    pub output_limit: Option<usize>,
    /// Commands run before the job's script (after its sources), in the same shell.
    #[serde(default)]
    pub pre_build_script: Option<String>,
    /// Commands run after the job's script succeeded, before `after_script`.
    #[serde(default)]
    pub post_build_script: Option<String>,
    #[serde(default)]
    pub docker: Option<DockerConfig>,
    #[serde(default)]
    pub cache: Option<CacheConfig>,
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

/// `[runners.docker]`: what wharf acts on for the docker, sandbox and auto executors.
#[derive(Deserialize, Clone, Default, Debug)]
pub(crate) struct DockerConfig {
    /// The image of jobs that name none.
    #[serde(default)]
    pub image: Option<String>,
    /// A policy or a list of them (`always`, `if-not-present`, `never`).
    #[serde(default)]
    pub pull_policy: Option<OneOrMany>,
    #[serde(default)]
    pub allowed_pull_policies: Vec<String>,
    #[serde(default)]
    pub allowed_images: Vec<String>,
    #[serde(default)]
    pub allowed_services: Vec<String>,
    /// `HOST:CONTAINER[:MODE]` binds, and container paths alone (`/cache`): a Docker volume
    /// of the runner's, kept across its jobs of a project.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// `512m`, `1g`...: Docker's memory size.
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub pids_limit: Option<i64>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

/// `[runners.cache]` (gitlab-runner `cache/cacheconfig`): the distributed cache. wharf knows
/// `Type = "s3"`; no `Type` (what `gitlab-runner register` writes: the section with
/// `MaxUploadedArchiveSize = 0` and empty `s3`/`gcs`/`azure` tables) means the local cache only.
/// No `Debug`: it holds the secret key.
#[derive(Deserialize, Clone)]
pub(crate) struct CacheConfig {
    #[serde(rename = "Type", default)]
    pub kind: String,
    /// A prefix of every object name.
    #[serde(rename = "Path", default)]
    pub path: String,
    /// Runners share caches (no per-runner namespace).
    #[serde(rename = "Shared", default)]
    pub shared: bool,
    /// The largest archive uploaded (and downloaded), in bytes; 0: no limit.
    #[serde(rename = "MaxUploadedArchiveSize", default)]
    pub max_uploaded_archive_size: u64,
    #[serde(rename = "s3", default)]
    pub s3: Option<S3CacheConfig>,
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

/// `[runners.cache.s3]`.
#[derive(Deserialize, Clone)]
pub(crate) struct S3CacheConfig {
    /// `host:port`, no scheme (`Insecure` says http).
    #[serde(rename = "ServerAddress", default)]
    pub server_address: String,
    #[serde(rename = "AccessKey", default)]
    pub access_key: String,
    #[serde(rename = "SecretKey", default)]
    pub secret_key: String,
    #[serde(rename = "BucketName", default)]
    pub bucket_name: String,
    #[serde(rename = "BucketLocation", default)]
    pub bucket_location: String,
    #[serde(rename = "Insecure", default)]
    pub insecure: bool,
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

/// gitlab-runner's `StringOrArray`: `pull_policy = "always"` or `["always", "if-not-present"]`.
#[derive(Deserialize, Clone, Debug)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        }
    }
}

/// `$XDG_CONFIG_HOME/wharf/config.toml` (`~/.config/wharf/config.toml`).
pub(crate) fn default_path() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .context("neither XDG_CONFIG_HOME nor HOME is set: give --config FILE")?;
    Ok(base.join("wharf").join("config.toml"))
}

/// `file:line:column` of byte `offset` in `text` (both 1-based, columns in characters).
fn position(path: &Path, text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    format!("{}:{line}:{column}", path.display())
}

impl Config {
    /// The file at `path`; an empty configuration when there is none. Errors name
    /// `file:line:column`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config {
                    concurrent: 1,
                    check_interval: 0,
                    runners: Vec::new(),
                    other: BTreeMap::new(),
                });
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let at = match e.span() {
                Some(span) => position(path, text, span.start),
                None => path.display().to_string(),
            };
            anyhow::anyhow!(
                "{at}: not a runner configuration: {}",
                e.message().trim_end()
            )
        })?;
        if config.concurrent == 0 {
            bail!(
                "{}: concurrent = 0 would never run a job: set it to 1 or more",
                path.display()
            );
        }
        // gitlab-runner's logs name such a runner by its short token; so do wharf's messages.
        for (index, runner) in config.runners.iter_mut().enumerate() {
            if runner.name.is_empty() {
                runner.name = match short_token(&runner.token) {
                    "" => format!("#{} (no name)", index + 1),
                    short => short.to_string(),
                };
            }
        }
        Ok(config)
    }

    /// Keys wharf does not act on and whose value would change what gitlab-runner does, as
    /// `section.key` (said once at start). See [`changed_keys`] for the rule.
    pub fn unsupported_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        // gitlab-runner starts no session server without `listen_address` ("session endpoints
        // disabled"): the rest of the section then changes nothing.
        let session_server_off = |key: &String, value: &toml::Value| {
            key == "session_server"
                && value
                    .get("listen_address")
                    .and_then(toml::Value::as_str)
                    .is_none_or(str::is_empty)
        };
        for (key, value) in &self.other {
            if !session_server_off(key, value) {
                changed_leaves(key.clone(), key, value, &mut keys);
            }
        }
        for runner in &self.runners {
            let at = format!("runners[{}].", runner.name);
            changed_keys(&at, &runner.other, &mut keys);
            // A cache `Type` wharf does not speak is the runner's own warning (settings_of).
            if let Some(cache) = &runner.cache {
                changed_keys(&format!("{at}cache."), &cache.other, &mut keys);
                if let Some(s3) = &cache.s3 {
                    changed_keys(&format!("{at}cache.s3."), &s3.other, &mut keys);
                }
            }
            // gitlab-runner's shell executor, as wharf's, reads nothing of [runners.docker]: a
            // section left over from another executor changes nothing.
            if let Some(docker) = runner
                .docker
                .as_ref()
                .filter(|_| runner.executor != "shell")
            {
                changed_keys(&format!("{at}docker."), &docker.other, &mut keys);
            }
        }
        keys
    }
}

/// The rule for reporting keys wharf does not act on: a key is reported when its value would
/// make gitlab-runner behave differently from a file without it. `gitlab-runner register`
/// writes many keys with their default values (`tls_verify = false`, `shm_size = 0`, an empty
/// `[runners.custom_build_dir]`, `[session_server] session_timeout = 1800`...): those change
/// nothing, so reporting them as "not supported" would only be noise that hides the keys that
/// matter. A value is gitlab-runner's default when it is
/// - Go's zero value (`false`, `0`, `""`, an empty list or table), which is what gitlab-runner
///   reads for a missing key, except for the keys in [`ZERO_IS_NOT_DEFAULT`], which
///   gitlab-runner reads into pointers: there an explicit zero differs from a missing key;
/// - or the value gitlab-runner puts in place of a missing key ([`NON_ZERO_DEFAULTS`],
///   feature flags from [`FEATURE_FLAGS_ON_BY_DEFAULT`]).
///
/// Tables are looked into: each key below is judged on its own and named with its path
/// (`session_server.listen_address`), so an empty `[runners.cache.gcs]` says nothing.
fn changed_keys(prefix: &str, table: &BTreeMap<String, toml::Value>, keys: &mut Vec<String>) {
    for (key, value) in table {
        changed_leaves(format!("{prefix}{key}"), key, value, keys);
    }
}

fn changed_leaves(path: String, key: &str, value: &toml::Value, keys: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (inner, value) in table {
                changed_leaves(format!("{path}.{}", toml_key(inner)), inner, value, keys);
            }
        }
        _ if is_gitlab_runner_default(&path, key, value) => {}
        _ => keys.push(path),
    }
}

/// `key` as TOML writes it: quoted unless bare (`sysctls."net.ipv4.ip_forward"`).
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// gitlab-runner reads these into pointers (`*int`, `*bool`): an explicit `0` or `false` is
/// not the same as a missing key (`services_limit = 0` allows no service at all,
/// `clean_git_config = false` keeps the job's git config).
const ZERO_IS_NOT_DEFAULT: &[&str] = &[
    "services_limit",
    "clean_git_config",
    "safe_directory_checkout",
];

/// Keys whose missing value gitlab-runner replaces with something other than the zero value,
/// and that `register` or the docs write with it (`common/config.go`, `commands/register.go`).
const NON_ZERO_DEFAULTS: &[(&str, &[&str])] = &[
    ("session_timeout", &["1800"]),
    ("connection_max_age", &["\"15m0s\"", "\"15m\""]),
    ("log_level", &["\"info\""]),
    ("log_format", &["\"runner\""]),
    ("request_concurrency", &["1"]),
    ("shutdown_timeout", &["30"]),
    ("services_limit", &["-1"]),
    ("wait_for_services_timeout", &["30"]),
    ("cpu_shares", &["1024"]),
    ("DualStack", &["true"]),
    // wharf's shell executor runs bash as gitlab-runner's does on Linux.
    ("shell", &["\"bash\""]),
];

/// gitlab-runner's feature flags that are on unless turned off (`helpers/featureflags/flags.go`);
/// every other flag is off by default.
const FEATURE_FLAGS_ON_BY_DEFAULT: &[&str] = &[
    "FF_USE_DIRECT_DOWNLOAD",
    "FF_USE_FASTZIP",
    "FF_USE_POD_ACTIVE_DEADLINE_SECONDS",
    "FF_SECRET_RESOLVING_FAILS_IF_MISSING",
    "FF_USE_GIT_BUNDLE_URIS",
    "FF_USE_DOCKER_AUTOSCALER_DIAL_STDIO",
    "FF_TIMESTAMPS",
    "FF_MASK_ALL_DEFAULT_TOKENS",
    "FF_USE_EXPONENTIAL_BACKOFF_STAGE_RETRY",
    "FF_USE_ADAPTIVE_REQUEST_CONCURRENCY",
    "FF_USE_GITALY_CORRELATION_ID",
    "FF_ENABLE_JOB_INPUTS_INTERPOLATION",
];

fn is_gitlab_runner_default(path: &str, key: &str, value: &toml::Value) -> bool {
    if path.contains("feature_flags.") {
        let on_by_default = FEATURE_FLAGS_ON_BY_DEFAULT.contains(&key);
        return value.as_bool() == Some(on_by_default);
    }
    if let Some((_, defaults)) = NON_ZERO_DEFAULTS.iter().find(|(name, _)| *name == key)
        && defaults.contains(&value.to_string().as_str())
    {
        return true;
    }
    if ZERO_IS_NOT_DEFAULT.contains(&key) {
        return false;
    }
    match value {
        toml::Value::Boolean(b) => !b,
        toml::Value::Integer(i) => *i == 0,
        toml::Value::Float(f) => *f == 0.0,
        toml::Value::String(s) => s.is_empty(),
        toml::Value::Array(items) => items.is_empty(),
        toml::Value::Table(table) => table.is_empty(),
        toml::Value::Datetime(_) => false,
    }
}

/// A new `[[runners]]` entry, as `register` writes it.
pub(crate) struct NewRunner<'a> {
    pub name: &'a str,
    pub url: &'a str,
    pub id: u64,
    pub token: &'a str,
    pub token_expires_at: Option<&'a str>,
    pub executor: &'a str,
}

/// Add a runner to the file at `path` (created with `concurrent = 1` when missing).
pub(crate) fn append_runner(path: &Path, runner: &NewRunner<'_>) -> Result<()> {
    edit(path, |doc| {
        if doc.is_empty() {
            doc["concurrent"] = toml_edit::value(1);
            doc["check_interval"] = toml_edit::value(0);
        }
        let mut table = toml_edit::Table::new();
        table["name"] = toml_edit::value(runner.name);
        table["url"] = toml_edit::value(runner.url);
        table["id"] = toml_edit::value(i64::try_from(runner.id).unwrap_or(i64::MAX));
        table["token"] = toml_edit::value(runner.token);
        if let Some(expires) = runner.token_expires_at {
            table["token_expires_at"] = toml_edit::value(expires);
        }
        table["executor"] = toml_edit::value(runner.executor);
        let runners = doc
            .entry("runners")
            .or_insert_with(|| toml_edit::Item::ArrayOfTables(Default::default()))
            .as_array_of_tables_mut()
            .context("`runners` is not an array of [[runners]] tables")?;
        runners.push(table);
        Ok(())
    })
}

/// Remove the `[[runners]]` entries `remove` says (given each entry's name and token); the
/// rest of the file stays as written. How many were removed.
pub(crate) fn remove_runners(path: &Path, remove: impl Fn(&str, &str) -> bool) -> Result<usize> {
    let mut removed = 0;
    edit(path, |doc| {
        let Some(runners) = doc
            .get_mut("runners")
            .and_then(|r| r.as_array_of_tables_mut())
        else {
            return Ok(());
        };
        let before = runners.len();
        runners.retain(|table| {
            let field = |key: &str| table.get(key).and_then(|v| v.as_str()).unwrap_or("");
            !remove(field("name"), field("token"))
        });
        removed = before - runners.len();
        Ok(())
    })?;
    Ok(removed)
}

/// Read `path` (empty when missing), change it, write it back with mode 0600, by rename:
/// never half written.
fn edit(path: &Path, change: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<()>) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        let at = match e.span() {
            Some(span) => position(path, &text, span.start),
            None => path.display().to_string(),
        };
        anyhow::anyhow!(
            "{at}: not a runner configuration: {}",
            e.message().trim_end()
        )
    })?;
    change(&mut doc).with_context(|| path.display().to_string())?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(".config.toml.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let written = file
        .write_all(doc.to_string().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// gitlab-runner's `helpers.ShortenToken`: the token's first characters after its prefix.
pub(crate) fn short_token(token: &str) -> &str {
    let after =
        |prefix: &str, len: usize| token.strip_prefix(prefix).and_then(|rest| rest.get(..len));
    after("glrt-", 9)
        .or_else(|| after("glrtr-", 9))
        .or_else(|| after("glcbt-", 9))
        .or_else(|| token.get(..8))
        .unwrap_or(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITLAB_RUNNER_CONFIG: &str = r#"
# Written by gitlab-runner; edited by hand.
concurrent = 4
check_interval = 0
log_level = "info"

[[runners]]
  name = "ci-1"
  url = "https://gitlab.example.com"
  id = 12
  token = "glrt-abc"
  token_obtained_at = 2024-01-01T00:00:00Z
  executor = "docker"
  limit = 2
  [runners.docker]
    image = "alpine"
    pull_policy = ["always", "if-not-present"]
    volumes = ["/cache"]
    shm_size = 0

[[runners]]
  # the old one
  name = "ci-2"
  url = "https://gitlab.example.com"
  token = "legacy-token"
  executor = "shell"
"#;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_gitlab_runner_config_reads_and_says_what_wharf_does_not_use() {
        let config = Config::parse(Path::new("config.toml"), GITLAB_RUNNER_CONFIG).unwrap();
        assert_eq!(config.concurrent, 4);
        assert_eq!(config.runners[0].executor, "docker");
        assert_eq!(config.runners[0].limit, 2);
        assert_eq!(config.runners[1].limit, 0);
        let docker = config.runners[0].docker.as_ref().unwrap();
        assert_eq!(
            docker.pull_policy.as_ref().unwrap().to_vec(),
            ["always", "if-not-present"]
        );
        // `log_level = "info"`, `token_obtained_at` and `shm_size = 0` change nothing.
        assert!(config.unsupported_keys().is_empty());
    }

    /// What `gitlab-runner register` (17.x) writes for a Docker runner: every key it adds on
    /// its own has gitlab-runner's default value.
    const REGISTER_WRITTEN: &str = r#"
concurrent = 1
check_interval = 0
shutdown_timeout = 0
connection_max_age = "15m0s"
log_level = "info"
log_format = "runner"

[session_server]
  session_timeout = 1800

[[runners]]
  name = "build-box"
  url = "https://gitlab.example.com"
  id = 42
  token = "glrt-t3_example"
  token_obtained_at = 2025-06-01T10:00:00Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "docker"
  request_concurrency = 1
  shell = "bash"
  clone_url = ""
  [runners.custom_build_dir]
  [runners.cache]
    MaxUploadedArchiveSize = 0
    [runners.cache.s3]
    [runners.cache.gcs]
    [runners.cache.azure]
  [runners.feature_flags]
    FF_NETWORK_PER_BUILD = false
    FF_USE_FASTZIP = true
  [runners.docker]
    tls_verify = false
    image = "alpine:latest"
    privileged = false
    disable_entrypoint_overwrite = false
    oom_kill_disable = false
    disable_cache = false
    volumes = ["/cache"]
    shm_size = 0
    network_mtu = 0
    cache_dir = ""
    services_limit = -1
    wait_for_services_timeout = 30
    cpu_shares = 1024
    [runners.docker.tmpfs]
"#;

    #[test]
    fn keys_register_writes_with_default_values_are_not_reported() {
        let config = Config::parse(Path::new("config.toml"), REGISTER_WRITTEN).unwrap();
        assert_eq!(config.unsupported_keys(), Vec::<String>::new());
    }

    #[test]
    fn keys_whose_values_change_what_gitlab_runner_does_are_reported_by_path() {
        let text = r#"
log_format = "json"
listen_address = ":9252"
[session_server]
  listen_address = "0.0.0.0:8093"
  session_timeout = 1800
[[runners]]
  name = "r"
  url = "https://gitlab.example.com"
  token = "glrt-x"
  executor = "docker"
  request_concurrency = 4
  shell = "pwsh"
  [runners.custom_build_dir]
    enabled = true
  [runners.feature_flags]
    FF_NETWORK_PER_BUILD = true
    FF_TIMESTAMPS = false
    FF_USE_FASTZIP = true
  [runners.cache]
    [runners.cache.gcs]
      BucketName = "team-cache"
  [runners.docker]
    services_limit = 0
    shm_size = 268435456
    network_mode = "ci-net"
    dns = []
    [runners.docker.sysctls]
      "net.ipv4.ip_forward" = "1"
    [[runners.docker.services]]
      name = "postgres:16"
"#;
        let config = Config::parse(Path::new("config.toml"), text).unwrap();
        assert_eq!(
            config.unsupported_keys(),
            [
                "listen_address",
                "log_format",
                "session_server.listen_address",
                "runners[r].custom_build_dir.enabled",
                "runners[r].feature_flags.FF_NETWORK_PER_BUILD",
                "runners[r].feature_flags.FF_TIMESTAMPS",
                "runners[r].request_concurrency",
                "runners[r].shell",
                "runners[r].cache.gcs.BucketName",
                "runners[r].docker.network_mode",
                "runners[r].docker.services",
                // 0 is "no service at all" for gitlab-runner, not its default.
                "runners[r].docker.services_limit",
                "runners[r].docker.shm_size",
                "runners[r].docker.sysctls.\"net.ipv4.ip_forward\"",
            ]
        );
    }

    #[test]
    fn a_docker_section_left_in_a_shell_runner_is_not_reported() {
        let text = "[[runners]]\n  name = \"sh\"\n  url = \"https://gitlab.example.com\"\n  token = \"glrt-x\"\n  executor = \"shell\"\n  [runners.docker]\n    network_mode = \"host\"\n";
        let config = Config::parse(Path::new("config.toml"), text).unwrap();
        assert!(config.unsupported_keys().is_empty());
        let docker = text.replace("\"shell\"", "\"docker\"");
        let config = Config::parse(Path::new("config.toml"), &docker).unwrap();
        assert_eq!(
            config.unsupported_keys(),
            ["runners[sh].docker.network_mode"]
        );
    }

    #[test]
    fn a_session_server_without_listen_address_is_off_whatever_its_timeout() {
        let text = "[session_server]\n  session_timeout = 4000\n";
        let config = Config::parse(Path::new("config.toml"), text).unwrap();
        assert!(config.unsupported_keys().is_empty());
    }

    #[test]
    fn gitlab_runner_value_types_are_read() {
        // Types gitlab-runner's own structs take, as its docs write them.
        let text = r#"
concurrent = 8
[[runners]]
  name = "typed"
  url = "https://gitlab.example.com"
  token = "glrt-x"
  token_obtained_at = 2025-06-01T10:00:00Z
  executor = "docker"
  limit = 3
  output_limit = 8192
  environment = ["A=1", "B=two words"]
  [runners.docker]
    pull_policy = "if-not-present"
    memory = "1g"
    cpus = "1.5"
    pids_limit = -1
    shm_size = 300000
    helper_image = "registry.example.com/helper:x86_64-latest"
    extra_hosts = ["gitlab.example.com:10.0.0.2"]
    dns = ["10.0.0.53"]
    volumes = ["/cache", "/srv/data:/data:ro"]
"#;
        let config = Config::parse(Path::new("config.toml"), text).unwrap();
        let runner = &config.runners[0];
        assert_eq!((runner.limit, runner.output_limit), (3, Some(8192)));
        let docker = runner.docker.as_ref().unwrap();
        assert_eq!(
            docker.pull_policy.as_ref().unwrap().to_vec(),
            ["if-not-present"]
        );
        assert_eq!(docker.memory.as_deref(), Some("1g"));
    }

    #[test]
    fn a_runner_without_token_reads_so_that_the_check_can_name_it() {
        let text = "[[runners]]\n  name = \"todo\"\n  url = \"https://gitlab.example.com\"\n";
        let config = Config::parse(Path::new("config.toml"), text).unwrap();
        assert_eq!(config.runners[0].token, "");
    }

    #[test]
    fn a_broken_config_names_file_line_and_column() {
        let text = "concurrent = 2\n[[runners]]\n  name = \"x\"\n  limit = \"many\"\n";
        let err = Config::parse(Path::new("/etc/wharf/config.toml"), text)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("/etc/wharf/config.toml:4:11: "), "{err}");
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn removing_a_runner_keeps_comments_other_entries_unknown_keys_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, GITLAB_RUNNER_CONFIG).unwrap();
        let removed =
            remove_runners(&path, |name, token| name == "ci-1" && token == "glrt-abc").unwrap();
        assert_eq!(removed, 1);
        assert_eq!(mode(&path), 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("\n# Written by gitlab-runner; edited by hand.\n"));
        assert!(text.contains("log_level = \"info\""), "{text}");
        assert!(
            text.contains("  # the old one\n  name = \"ci-2\""),
            "{text}"
        );
        assert!(
            !text.contains("ci-1") && !text.contains("glrt-abc"),
            "{text}"
        );
        let config = Config::parse(&path, &text).unwrap();
        assert_eq!(config.runners.len(), 1);
        assert_eq!(config.runners[0].token, "legacy-token");
    }

    #[test]
    fn appending_a_runner_creates_a_private_file_and_keeps_an_existing_ones_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/config.toml");
        let runner = NewRunner {
            name: "new",
            url: "https://gitlab.example.com",
            id: 7,
            token: "glrt-new",
            token_expires_at: None,
            executor: "shell",
        };
        append_runner(&path, &runner).unwrap();
        assert_eq!(mode(&path), 0o600);
        let config = Config::load(&path).unwrap();
        assert_eq!(config.concurrent, 1);
        assert_eq!(config.runners[0].id, 7);

        std::fs::write(&path, GITLAB_RUNNER_CONFIG).unwrap();
        append_runner(&path, &runner).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(GITLAB_RUNNER_CONFIG), "{text}");
        assert_eq!(Config::load(&path).unwrap().runners[2].name, "new");
    }
}
