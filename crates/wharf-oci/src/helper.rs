//! Docker credential helpers: `docker-credential-<name> get|list`.
//!
//! Protocol (docker/docker-credential-helpers): `get` reads the server URL on stdin and prints
//! `{"ServerURL": "...", "Username": "...", "Secret": "..."}`; `list` prints `{"<url>": "<user>"}`.
//! A username of `<token>` means the secret is an identity (refresh) token. A helper that has
//! nothing for the URL exits non-zero printing `credentials not found in native keychain`.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::RegistryAuth;

/// Helpers such as `pass` may wait on a pinentry prompt forever; a pull must not hang on that.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);
const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";
const TOKEN_USERNAME: &str = "<token>";

/// Why a helper could not be used. Never contains the helper's stdout (it carries secrets); stderr
/// is reduced to its first line with known secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelperError {
    #[error("helper name `{0}` contains a path separator; give the name only")]
    BadName(String),
    #[error("{program} not found on PATH{}", if *.path_set { "" } else { " (PATH is not set)" })]
    NotFound { program: String, path_set: bool },
    #[error("could not run {program}: {detail}")]
    Spawn { program: String, detail: String },
    #[error("{program} {action} did not finish within {}s and was killed", HELPER_TIMEOUT.as_secs())]
    Timeout { program: String, action: String },
    #[error("{program} {action} failed ({status}){}", stderr_suffix(.first_line))]
    Failed {
        program: String,
        action: String,
        status: String,
        first_line: Option<String>,
    },
    #[error("{program} {action} printed invalid JSON (line {line} column {column})")]
    BadOutput {
        program: String,
        action: String,
        line: usize,
        column: usize,
    },
}

fn stderr_suffix(line: &Option<String>) -> String {
    line.as_ref().map(|l| format!(": {l}")).unwrap_or_default()
}

/// A helper located on a given PATH.
#[derive(Debug, Clone)]
pub struct CredentialHelper {
    name: String,
    program: PathBuf,
    search_path: Option<OsString>,
}

impl CredentialHelper {
    /// The program name, `docker-credential-<name>`.
    pub fn program_name(name: &str) -> String {
        format!("docker-credential-{name}")
    }

    /// Find `docker-credential-<name>` on `search_path` (not the process's PATH, so callers and
    /// tests decide where helpers come from).
    pub fn find(name: &str, search_path: Option<&OsStr>) -> Result<Self, HelperError> {
        if name.is_empty() || name.contains('/') || name.contains('\\') {
            return Err(HelperError::BadName(name.to_owned()));
        }
        let program = Self::program_name(name);
        let found = search_path.and_then(|path| {
            std::env::split_paths(path)
                .filter(|dir| !dir.as_os_str().is_empty())
                .map(|dir| dir.join(&program))
                .find(|candidate| is_executable(candidate))
        });
        match found {
            Some(path) => Ok(CredentialHelper {
                name: name.to_owned(),
                program: path,
                search_path: search_path.map(OsStr::to_owned),
            }),
            None => Err(HelperError::NotFound {
                program,
                path_set: search_path.is_some(),
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.program
    }

    /// `get`: credentials for `server_url`, `None` when the helper has none.
    /// `mask` lists secrets to hide should the helper echo them on stderr.
    pub fn get(
        &self,
        server_url: &str,
        mask: &[String],
    ) -> Result<Option<RegistryAuth>, HelperError> {
        let action = "get";
        let out = self.run(action, server_url, mask)?;
        let stdout = match out {
            RunOutcome::Ok(stdout) => stdout,
            RunOutcome::NotFound => return Ok(None),
        };
        #[derive(serde::Deserialize)]
        struct Creds {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let creds: Creds =
            serde_json::from_str(&stdout).map_err(|e| self.bad_output(action, &e))?;
        if creds.username.is_empty() && creds.secret.is_empty() {
            return Ok(None);
        }
        let mut auth = RegistryAuth {
            server_address: server_url.to_owned(),
            ..RegistryAuth::default()
        };
        if creds.username == TOKEN_USERNAME {
            auth.identity_token = Some(creds.secret).filter(|s| !s.is_empty());
        } else {
            auth.username = Some(creds.username).filter(|s| !s.is_empty());
            auth.password = Some(creds.secret).filter(|s| !s.is_empty());
        }
        Ok(Some(auth))
    }

    /// `list`: server URL -> username.
    pub fn list(&self, mask: &[String]) -> Result<BTreeMap<String, String>, HelperError> {
        let action = "list";
        match self.run(action, "", mask)? {
            RunOutcome::NotFound => Ok(BTreeMap::new()),
            RunOutcome::Ok(stdout) if stdout.trim().is_empty() => Ok(BTreeMap::new()),
            RunOutcome::Ok(stdout) => {
                serde_json::from_str(&stdout).map_err(|e| self.bad_output(action, &e))
            }
        }
    }

    fn bad_output(&self, action: &str, e: &serde_json::Error) -> HelperError {
        HelperError::BadOutput {
            program: Self::program_name(&self.name),
            action: action.to_owned(),
            line: e.line(),
            column: e.column(),
        }
    }

    fn run(&self, action: &str, stdin: &str, mask: &[String]) -> Result<RunOutcome, HelperError> {
        let program = Self::program_name(&self.name);
        let mut command = Command::new(&self.program);
        command
            .arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Helpers may run other programs (gpg, aws): give them the PATH they were found on.
        if let Some(path) = &self.search_path {
            command.env("PATH", path);
        }
        let mut child = spawn_unless_busy(&mut command).map_err(|e| HelperError::Spawn {
            program: program.clone(),
            detail: e.to_string(),
        })?;
        // Read both pipes on threads so a chatty helper cannot block on a full pipe while we wait.
        let stdout_reader = child.stdout.take().map(read_to_end_thread);
        let stderr_reader = child.stderr.take().map(read_to_end_thread);
        if let Some(mut input) = child.stdin.take() {
            // A helper that exits without reading stdin (e.g. `list`) closes the pipe: ignore.
            let _ = input.write_all(stdin.as_bytes());
        }
        let deadline = Instant::now() + HELPER_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HelperError::Timeout {
                        program,
                        action: action.to_owned(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    return Err(HelperError::Spawn {
                        program,
                        detail: e.to_string(),
                    });
                }
            }
        };
        let stdout = join(stdout_reader);
        let stderr = join(stderr_reader);
        if status.success() {
            return Ok(RunOutcome::Ok(stdout));
        }
        // The official helpers report "not found" on stdout with a non-zero exit.
        if stdout.trim() == NOT_FOUND_MESSAGE || stderr.trim() == NOT_FOUND_MESSAGE {
            return Ok(RunOutcome::NotFound);
        }
        // Helpers print their error on stdout by convention; stdout that looks like JSON may be
        // credentials, so only a plain-text first line is shown, masked and truncated.
        let first_line = [stderr.as_str(), stdout.as_str()]
            .into_iter()
            .filter_map(|text| text.lines().map(str::trim).find(|l| !l.is_empty()))
            .find(|line| !line.starts_with('{'))
            .map(|line| mask_line(line, mask));
        Err(HelperError::Failed {
            program,
            action: action.to_owned(),
            status: status.to_string(),
            first_line,
        })
    }
}

enum RunOutcome {
    Ok(String),
    NotFound,
}

fn read_to_end_thread<R: Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn join(handle: Option<std::thread::JoinHandle<String>>) -> String {
    handle.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// Hide known secrets and anything that looks like a token in one line of helper output.
fn mask_line(line: &str, mask: &[String]) -> String {
    let mut out = line.to_owned();
    for secret in mask.iter().filter(|s| s.len() >= 3) {
        out = out.replace(secret.as_str(), "[MASKED]");
    }
    // Long unbroken base64/hex-like words with letters and digits are most likely tokens (paths
    // and words rarely have digits, so they stay readable).
    let out: Vec<String> = out
        .split(' ')
        .map(|word| {
            let tokenish = word.len() >= 24
                && word.chars().any(|c| c.is_ascii_digit())
                && word.chars().any(|c| c.is_ascii_alphabetic())
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=_-.".contains(c));
            if tokenish {
                "[MASKED]".to_owned()
            } else {
                word.to_owned()
            }
        })
        .collect();
    let mut out = out.join(" ");
    if out.chars().count() > 200 {
        out = out.chars().take(200).collect::<String>() + "...";
    }
    out
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Spawn `command`, retrying briefly on ETXTBSY. A helper that was just written (by an
/// installer, or by a test) can still be open for writing in a child forked by another thread
/// that has not reached `exec` yet; the kernel then refuses to execute it for a moment.
fn spawn_unless_busy(command: &mut Command) -> std::io::Result<std::process::Child> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..6 {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
    command.spawn()
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file() || path.with_extension("exe").is_file()
}

#[cfg(all(test, unix))]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Write `docker-credential-<name>` as a shell script into `dir`.
    pub(crate) fn write_helper(dir: &Path, name: &str, script: &str) {
        let path = dir.join(CredentialHelper::program_name(name));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write helper");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn get_list_token_and_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_helper(
            dir.path(),
            "t",
            r#"read url
case "$1:$url" in
  get:r.io) echo '{"ServerURL":"r.io","Username":"u","Secret":"hunter2"}' ;;
  get:tok.io) echo '{"ServerURL":"tok.io","Username":"<token>","Secret":"refresh"}' ;;
  list:*) echo '{"r.io":"u","tok.io":"<token>"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#,
        );
        let path = OsString::from(format!("/nonexistent:{}", dir.path().display()));
        let h = CredentialHelper::find("t", Some(&path)).expect("found");
        let a = h.get("r.io", &[]).expect("ok").expect("some");
        assert_eq!(a.username.as_deref(), Some("u"));
        assert_eq!(a.password.as_deref(), Some("hunter2"));
        let t = h.get("tok.io", &[]).expect("ok").expect("some");
        assert_eq!(t.identity_token.as_deref(), Some("refresh"));
        assert_eq!(t.username, None);
        assert!(h.get("other.io", &[]).expect("ok").is_none());
        assert_eq!(h.list(&[]).expect("ok").len(), 2);
    }

    /// Regression (CI, Text file busy): a helper still open for writing somewhere (a sibling
    /// test thread's fork that has not exec'd yet) is retried, not reported as unspawnable.
    #[test]
    fn helper_busy_for_a_moment_is_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_helper(
            dir.path(),
            "busy",
            r#"echo '{"ServerURL":"r.io","Username":"u","Secret":"s"}'"#,
        );
        let program = dir.path().join(CredentialHelper::program_name("busy"));
        let writer = std::fs::OpenOptions::new()
            .append(true)
            .open(&program)
            .expect("open for writing");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(writer);
        });
        let path = OsString::from(dir.path());
        let h = CredentialHelper::find("busy", Some(&path)).expect("found");
        let a = h.get("r.io", &[]).expect("retried past ETXTBSY");
        assert_eq!(a.and_then(|a| a.username).as_deref(), Some("u"));
        release.join().expect("join");
    }

    #[test]
    fn failures_are_reported_without_secrets() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_helper(
            dir.path(),
            "bad",
            "echo 'error: gpg failed for password hunter2 token QUJDREVGR0hJSktMTU5PUFFSU1RVVldY' >&2; exit 3",
        );
        write_helper(dir.path(), "json", "echo '{\"Secret\": \"hunter2\"'");
        let path = dir.path().as_os_str().to_owned();
        let err = CredentialHelper::find("bad", Some(&path))
            .expect("found")
            .get("r.io", &["hunter2".into()])
            .expect_err("fails")
            .to_string();
        assert!(err.contains("docker-credential-bad get failed"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("gpg failed"), "{err}");
        assert!(
            !err.contains("hunter2") && !err.contains("QUJDREVG"),
            "{err}"
        );
        let err = CredentialHelper::find("json", Some(&path))
            .expect("found")
            .get("r.io", &[])
            .expect_err("bad json")
            .to_string();
        assert!(
            err.contains("invalid JSON") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(matches!(
            CredentialHelper::find("missing", Some(&path)),
            Err(HelperError::NotFound { .. })
        ));
        assert!(matches!(
            CredentialHelper::find("../bad", Some(&path)),
            Err(HelperError::BadName(_))
        ));
        assert!(CredentialHelper::find("bad", None).is_err());
    }
}
