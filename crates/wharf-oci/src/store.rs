//! Writing `config.json` the way `docker login` does, and the DOCKER_AUTH_CONFIG JSON for GitLab.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::login::{AuthScheme, LoginOutcome};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the Docker config directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not valid JSON (line {line} column {column}); refusing to overwrite it. Fix or \
         move the file away, then log in again"
    )]
    InvalidExisting {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error(
        "{path}: {what}; refusing to overwrite it. Fix or move the file away, then log in again"
    )]
    UnexpectedShape { path: PathBuf, what: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The directory `docker login` writes to: `$DOCKER_CONFIG` when set (and not empty), else
/// `$HOME/.docker`.
pub fn default_docker_config_dir(
    docker_config: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    docker_config
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| {
            home.filter(|p| !p.as_os_str().is_empty())
                .map(|h| h.join(".docker"))
        })
}

/// base64 of `username:password`, the `auth` field of an auth config entry.
pub fn encode_auth(username: &str, password: &str) -> String {
    STANDARD.encode(format!("{username}:{password}"))
}

/// Pretty DOCKER_AUTH_CONFIG JSON with one entry: `{"auths": {key: {"auth": base64}}}`.
pub fn auth_config_json(key: &str, username: &str, password: &str) -> String {
    let mut entry = Map::new();
    entry.insert(
        "auth".into(),
        Value::String(encode_auth(username, password)),
    );
    let mut auths = Map::new();
    auths.insert(key.to_owned(), Value::Object(entry));
    let mut root = Map::new();
    root.insert("auths".into(), Value::Object(auths));
    // Serialising a Value built from strings cannot fail; fall back to compact just in case.
    serde_json::to_string_pretty(&Value::Object(root.clone()))
        .unwrap_or_else(|_| Value::Object(root).to_string())
}

/// The entry `docker login` stores for `outcome`.
fn entry_for(outcome: &LoginOutcome) -> Value {
    let mut entry = Map::new();
    match (&outcome.identity_token, outcome.scheme) {
        // A token registry gave a refresh token: store it instead of the password, as Docker does.
        (Some(token), AuthScheme::Bearer) => {
            entry.insert(
                "auth".into(),
                Value::String(encode_auth(&outcome.username, "")),
            );
            entry.insert("identitytoken".into(), Value::String(token.0.clone()));
        }
        _ => {
            entry.insert(
                "auth".into(),
                Value::String(encode_auth(&outcome.username, &outcome.password.0)),
            );
        }
    }
    Value::Object(entry)
}

/// Write `<config_dir>/config.json` like `docker login`: every other key and entry kept,
/// `auths[key]` replaced. The file is 0600 and replaced atomically; a created directory is 0700.
/// An existing file that is not valid JSON is left alone and reported.
pub fn store_login(config_dir: &Path, outcome: &LoginOutcome) -> Result<PathBuf, StoreError> {
    create_dir(config_dir)?;
    let link = config_dir.join("config.json");
    // A symlinked config.json (dotfile managers) is updated in place of its target, as Docker
    // does, instead of being replaced by a regular file.
    let path = match std::fs::symlink_metadata(&link) {
        Ok(meta) if meta.file_type().is_symlink() => {
            std::fs::canonicalize(&link).map_err(|source| StoreError::Read {
                path: link.clone(),
                source,
            })?
        }
        _ => link,
    };
    let mut root = match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => Map::new(),
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(StoreError::UnexpectedShape {
                    path,
                    what: "the top level is not a JSON object".into(),
                });
            }
            Err(e) => {
                return Err(StoreError::InvalidExisting {
                    path,
                    line: e.line(),
                    column: e.column(),
                });
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(source) => return Err(StoreError::Read { path, source }),
    };

    let auths = root
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if auths.is_null() {
        *auths = Value::Object(Map::new());
    }
    let Value::Object(auths) = auths else {
        return Err(StoreError::UnexpectedShape {
            path,
            what: "`auths` is not a JSON object".into(),
        });
    };
    auths.insert(outcome.key.clone(), entry_for(outcome));

    // Tabs, like `docker login`, so diffs of the file stay small.
    let mut bytes = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
    serde::Serialize::serialize(&Value::Object(root), &mut serializer).map_err(|e| {
        StoreError::Write {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    bytes.push(b'\n');
    write_atomic(&path, &bytes)?;
    Ok(path)
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_owned(),
        source,
    })
}

/// Temp file in the same directory (so the rename is atomic), mode 0600, fsync, rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    // tempfile creates the file with mode 0600 on unix.
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    fn outcome(key: &str, scheme: AuthScheme, token: Option<&str>) -> LoginOutcome {
        LoginOutcome {
            key: key.into(),
            scheme,
            identity_token: token.map(|t| Secret(t.into())),
            username: "alice".into(),
            password: Secret("hunter2".into()),
        }
    }

    fn read(path: &Path) -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
    }

    #[test]
    fn creates_private_dir_and_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("nested/.docker");
        let path = store_login(&dir, &outcome("r.io:5000", AuthScheme::Basic, None)).expect("ok");
        assert_eq!(path, dir.join("config.json"));
        let v = read(&path);
        assert_eq!(
            v["auths"]["r.io:5000"]["auth"],
            encode_auth("alice", "hunter2")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        // Only config.json in the directory: no temp file left behind.
        assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), 1);
    }

    #[test]
    fn keeps_other_keys_and_entries() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let existing = r#"{"auths": {"other.io": {"auth": "b3RoZXI6eA=="}, "r.io": {"auth": "old", "email": "x"}},
            "credHelpers": {"ecr.io": "ecr-login"}, "psFormat": "table"}"#;
        std::fs::write(tmp.path().join("config.json"), existing).expect("write");
        let path = store_login(
            tmp.path(),
            &outcome("r.io", AuthScheme::Bearer, Some("refresh")),
        )
        .expect("ok");
        let v = read(&path);
        assert_eq!(v["auths"]["other.io"]["auth"], "b3RoZXI6eA==");
        assert_eq!(v["credHelpers"]["ecr.io"], "ecr-login");
        assert_eq!(v["psFormat"], "table");
        // Identity token stored instead of the password, with auth = base64("alice:").
        assert_eq!(v["auths"]["r.io"]["auth"], encode_auth("alice", ""));
        assert_eq!(v["auths"]["r.io"]["identitytoken"], "refresh");
        assert!(v["auths"]["r.io"].get("email").is_none());
        assert!(
            !std::fs::read_to_string(&path)
                .expect("read")
                .contains("hunter2")
        );
    }

    #[test]
    fn refuses_invalid_existing_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let file = tmp.path().join("config.json");
        for bad in ["{\"auths\": {", "[1]", "{\"auths\": 5}"] {
            std::fs::write(&file, bad).expect("write");
            let err = store_login(tmp.path(), &outcome("r.io", AuthScheme::Basic, None))
                .expect_err(bad)
                .to_string();
            assert!(err.contains("refusing to overwrite"), "{err}");
            assert!(!err.contains("hunter2"));
            assert_eq!(std::fs::read_to_string(&file).expect("read"), bad);
        }
    }

    #[cfg(unix)]
    #[test]
    fn follows_a_symlinked_config() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("real.json");
        std::fs::write(&target, "{}").expect("write");
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).expect("mkdir");
        std::os::unix::fs::symlink(&target, dir.join("config.json")).expect("symlink");
        store_login(&dir, &outcome("r.io", AuthScheme::Basic, None)).expect("ok");
        assert!(
            std::fs::symlink_metadata(dir.join("config.json"))
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        assert!(read(&target)["auths"]["r.io"].is_object());
    }

    #[test]
    fn auth_config_json_and_default_dir() {
        let json = auth_config_json("r.io:5000", "u", "p:w");
        let v: Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["auths"]["r.io:5000"]["auth"], encode_auth("u", "p:w"));
        assert!(json.contains('\n'), "pretty");
        assert_eq!(
            default_docker_config_dir(Some("/c".into()), Some("/h".into())),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            default_docker_config_dir(Some("".into()), Some("/h".into())),
            Some(PathBuf::from("/h/.docker"))
        );
        assert_eq!(default_docker_config_dir(None, None), None);
    }
}
