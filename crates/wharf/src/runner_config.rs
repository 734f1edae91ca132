//! gitlab-runner's `config.toml` (`common/config.go`), the part wharf acts on: `concurrent`,
//! `check_interval` and `[[runners]]` with `name`, `url`, `id`, `token`, `executor`,
//! `builds_dir`, `environment`. Every other key is kept when the file is rewritten and reported once when the
//! runners start, never ignored silently. The file holds runner tokens: written with mode 0600.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
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
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct RunnerConfig {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub id: u64,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<toml::Value>,
    #[serde(default = "shell")]
    pub executor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builds_dir: Option<PathBuf>,
    /// `KEY=VALUE` variables every job of this runner gets, below the job's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            concurrent: 1,
            check_interval: 0,
            runners: Vec::new(),
            other: BTreeMap::new(),
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

impl Config {
    /// The file at `path`; an empty configuration when there is none.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let config: Config = toml::from_str(&text)
            .with_context(|| format!("{}: not a runner configuration", path.display()))?;
        if config.concurrent == 0 {
            bail!(
                "{}: concurrent = 0 would never run a job: set it to 1 or more",
                path.display()
            );
        }
        Ok(config)
    }

    /// Write to `path` with mode 0600 (it holds tokens), by rename: never half written.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = toml::to_string(self).context("writing the runner configuration")?;
        let tmp = dir.join(format!(".config.toml.{}", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    }

    /// Keys wharf does not act on, as `section.key` (said once at start).
    pub fn unsupported_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.other.keys().cloned().collect();
        for runner in &self.runners {
            keys.extend(
                runner
                    .other
                    .keys()
                    .map(|k| format!("runners[{}].{k}", runner.name)),
            );
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gitlab_runner_config_reads_and_keeps_what_wharf_does_not_use() {
        let text = r#"
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
  [runners.docker]
    image = "alpine"
    volumes = ["/cache"]
"#;
        let config: Config = toml::from_str(text).unwrap();
        assert_eq!(config.concurrent, 4);
        assert_eq!(config.runners[0].executor, "docker");
        assert_eq!(
            config.unsupported_keys(),
            [
                "log_level",
                "runners[ci-1].docker",
                "runners[ci-1].token_obtained_at"
            ]
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        config.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Config::load(&path).unwrap();
        assert_eq!(again.unsupported_keys(), config.unsupported_keys());
        assert_eq!(again.runners[0].token, "glrt-abc");
    }
}
