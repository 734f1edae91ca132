//! htpasswd files: bcrypt only (`$2y$` from Apache's `htpasswd -B`, `$2a$`, `$2b$`).
//!
//! Serving parses strictly (any other hash type is an error naming the line); editing
//! (`wharf registry user ...`) keeps every other line byte for byte, whatever it holds.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::error::AuthError;

/// Default bcrypt cost of `wharf registry user add` (Apache's `htpasswd -B` uses 5; 10 is
/// bcrypt's usual default, ~60 ms per check here, which the credential cache hides).
pub const DEFAULT_COST: u32 = 10;

/// bcrypt reads at most this many bytes of a password.
pub const BCRYPT_MAX_PASSWORD_BYTES: usize = 72;

/// Users and their bcrypt hashes, as served.
#[derive(Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes are secrets too (offline guessing): list the names only.
        let mut names: Vec<&String> = self.users.keys().collect();
        names.sort();
        f.debug_struct("Htpasswd").field("users", &names).finish()
    }
}

impl Htpasswd {
    /// Parse strictly. `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Htpasswd, AuthError> {
        let err = |line: usize, message: String| AuthError::Htpasswd {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut users = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err(err(n, "expected user:hash".to_string()));
            };
            validate_user(user).map_err(|m| err(n, m))?;
            let hash = hash.trim();
            if let Some(kind) = unsupported_hash_kind(hash) {
                return Err(err(
                    n,
                    format!(
                        "user {user:?}: {kind} is not supported; only bcrypt ($2y$, $2a$, $2b$) is: \
recreate the entry with `htpasswd -B` or `wharf registry user passwd {user}`"
                    ),
                ));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(err(n, format!("user {user:?}: malformed bcrypt hash")));
            }
            if users.insert(user.to_string(), hash.to_string()).is_some() {
                return Err(err(n, format!("user {user:?} is listed twice")));
            }
        }
        Ok(Htpasswd { users })
    }

    pub fn load(path: &Path) -> Result<Htpasswd, AuthError> {
        let text = std::fs::read_to_string(path).map_err(AuthError::io(path))?;
        Htpasswd::parse(&text, path)
    }

    pub fn hash_of(&self, user: &str) -> Option<&str> {
        self.users.get(user).map(String::as_str)
    }

    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The highest cost in the file (for the dummy check that hides whether a user exists).
    pub fn max_cost(&self) -> Option<u32> {
        self.users
            .values()
            .filter_map(|h| h.parse::<bcrypt::HashParts>().ok())
            .map(|p| p.get_cost())
            .max()
    }
}

/// A name of the hash type when it is not bcrypt, for the error message.
fn unsupported_hash_kind(hash: &str) -> Option<&'static str> {
    if hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$") {
        None
    } else if hash.starts_with("$apr1$") {
        Some("an MD5 ($apr1$) hash")
    } else if hash.starts_with("{SHA}") {
        Some("a SHA-1 ({SHA}) hash")
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        Some("a SHA-crypt ($5$/$6$) hash")
    } else if hash.starts_with("$1$") {
        Some("an MD5-crypt ($1$) hash")
    } else if hash.starts_with("$2x$") {
        Some("a $2x$ bcrypt hash (the buggy variant)")
    } else {
        Some("a crypt() or plain-text password")
    }
}

/// A user name usable in HTTP Basic (`user:password`) and in an htpasswd line.
pub fn validate_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("empty user name".to_string());
    }
    if user.len() > 255 {
        return Err("user name longer than 255 bytes".to_string());
    }
    if user
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "user name {user:?} must not contain `:`, spaces or control characters"
        ));
    }
    if user == super::policy::ANONYMOUS || user == super::policy::ANY_USER {
        return Err(format!("{user:?} is reserved by the access policy"));
    }
    Ok(())
}

/// A bcrypt hash in Apache's `$2y$` spelling, so `htpasswd -v` and other tools read it.
pub fn hash_password(password: &str, cost: u32) -> Result<String, AuthError> {
    if !(4..=31).contains(&cost) {
        return Err(AuthError::Hash(format!(
            "bcrypt cost {cost} is out of range (4 to 31)"
        )));
    }
    if password.len() > BCRYPT_MAX_PASSWORD_BYTES {
        // bcrypt silently ignores everything past 72 bytes: refuse rather than mislead.
        return Err(AuthError::Hash(format!(
            "the password is {} bytes long; bcrypt uses only the first {BCRYPT_MAX_PASSWORD_BYTES}, so longer ones are refused: choose one of at most {BCRYPT_MAX_PASSWORD_BYTES} bytes",
            password.len()
        )));
    }
    bcrypt::hash_with_result(password, cost)
        .map(|parts| parts.format_for_version(bcrypt::Version::TwoY))
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// What an edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Added,
    Replaced,
    Removed,
}

/// Edits an htpasswd file's text, keeping every other line (comments, other users, whatever
/// hash type) exactly as it was.
pub struct HtpasswdEditor {
    lines: Vec<String>,
    trailing_newline: bool,
}

impl HtpasswdEditor {
    pub fn new(text: &str) -> HtpasswdEditor {
        HtpasswdEditor {
            lines: text.lines().map(str::to_string).collect(),
            trailing_newline: text.is_empty() || text.ends_with('\n'),
        }
    }

    fn position(&self, user: &str) -> Option<usize> {
        self.lines
            .iter()
            .position(|l| l.split_once(':').is_some_and(|(u, _)| u == user))
    }

    pub fn contains(&self, user: &str) -> bool {
        self.position(user).is_some()
    }

    /// Add or replace `user`'s entry.
    pub fn set(&mut self, user: &str, hash: &str) -> Edit {
        let line = format!("{user}:{hash}");
        match self.position(user) {
            Some(i) => {
                self.lines[i] = line;
                // A user listed twice would be ambiguous: keep only the first entry.
                let mut j = i + 1;
                while j < self.lines.len() {
                    if self.lines[j]
                        .split_once(':')
                        .is_some_and(|(u, _)| u == user)
                    {
                        self.lines.remove(j);
                    } else {
                        j += 1;
                    }
                }
                Edit::Replaced
            }
            None => {
                self.lines.push(line);
                Edit::Added
            }
        }
    }

    /// Remove every entry of `user`; false when there was none.
    pub fn remove(&mut self, user: &str) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|l| l.split_once(':').is_none_or(|(u, _)| u != user));
        before != self.lines.len()
    }

    pub fn text(&self) -> String {
        let mut out = self.lines.join("\n");
        if self.trailing_newline && !self.lines.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// Replace `path` with `text` atomically (temp file in the same folder, fsync, rename), with
/// mode 0600: a reader sees the old file or the new one, never a half-written one.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), AuthError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "htpasswd".to_string());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(AuthError::io(&tmp))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(AuthError::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(AuthError::io(path))?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    // `htpasswd -nbB -C 5 alice secret` (Apache 2.4, cost 5).
    const APACHE_LINE: &str = "alice:$2y$05$DBcu5s0E5nbliK4MKkY1y.qgfq6UrWgVe8VeZ5zGxrRRuZ4mZzKMy";

    #[test]
    fn apache_bcrypt_lines_load_and_verify() {
        let h = Htpasswd::parse(&format!("# team\n\n{APACHE_LINE}\n"), Path::new("f")).unwrap();
        assert_eq!(h.len(), 1);
        let hash = h.hash_of("alice").unwrap();
        assert!(bcrypt::verify("secret", hash).unwrap());
        assert!(!bcrypt::verify("Secret", hash).unwrap());
        assert_eq!(h.max_cost(), Some(5));
    }

    #[test]
    fn other_hash_types_are_rejected_naming_the_line_not_the_hash() {
        for (line, kind) in [
            ("bob:$apr1$abc$def", "MD5"),
            ("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("bob:plainpassword", "plain-text"),
            ("bob:$6$salt$hash", "SHA-crypt"),
        ] {
            let text = format!("{APACHE_LINE}\n{line}\n");
            let e = Htpasswd::parse(&text, Path::new("/etc/htpasswd"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("/etc/htpasswd:2: user \"bob\""), "{e}");
            assert!(e.contains(kind), "{e}");
            let hash = line.split_once(':').unwrap().1;
            assert!(!e.contains(hash), "the hash leaked: {e}");
        }
    }

    #[test]
    fn malformed_files_are_rejected() {
        for text in [
            "no-colon\n",
            ":$2y$05$DBcu5s0E5nbliK4MKkY1y.qgfq6UrWgVe8VeZ5zGxrRRuZ4mZzKMy\n",
            "a:$2y$05$short\n",
            &format!("{APACHE_LINE}\n{APACHE_LINE}\n"),
            "anonymous:$2y$05$DBcu5s0E5nbliK4MKkY1y.qgfq6UrWgVe8VeZ5zGxrRRuZ4mZzKMy\n",
        ] {
            assert!(Htpasswd::parse(text, Path::new("f")).is_err(), "{text}");
        }
    }

    #[test]
    fn debug_shows_names_only() {
        let h = Htpasswd::parse(APACHE_LINE, Path::new("f")).unwrap();
        let d = format!("{h:?}");
        assert!(d.contains("alice") && !d.contains("$2y$"), "{d}");
    }

    #[test]
    fn hashes_use_apaches_prefix_and_verify() {
        let h = hash_password("pw", 4).unwrap();
        assert!(h.starts_with("$2y$04$"), "{h}");
        assert!(bcrypt::verify("pw", &h).unwrap());
        assert!(hash_password("pw", 3).is_err());
        assert!(hash_password(&"x".repeat(72), 4).is_ok());
        let e = hash_password(&"x".repeat(73), 4).unwrap_err().to_string();
        assert!(
            e.contains("73 bytes") && e.contains("at most 72 bytes"),
            "{e}"
        );
    }

    #[test]
    fn editor_keeps_other_lines() {
        let text = "# comment\nbob:$apr1$legacy\nalice:old\n";
        let mut e = HtpasswdEditor::new(text);
        assert_eq!(e.set("alice", "NEW"), Edit::Replaced);
        assert_eq!(e.text(), "# comment\nbob:$apr1$legacy\nalice:NEW\n");
        assert_eq!(e.set("carol", "C"), Edit::Added);
        assert!(e.remove("bob"));
        assert!(!e.remove("bob"));
        assert_eq!(e.text(), "# comment\nalice:NEW\ncarol:C\n");
        let mut empty = HtpasswdEditor::new("");
        empty.set("a", "h");
        assert_eq!(empty.text(), "a:h\n");
    }

    #[test]
    fn atomic_write_makes_a_private_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, "old\n").unwrap();
        write_atomically(&path, "new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left"
        );
    }
}
