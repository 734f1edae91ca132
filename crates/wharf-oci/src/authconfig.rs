//! Auth config documents: `DOCKER_AUTH_CONFIG`, `config.json` and the legacy `.dockercfg`.
//!
//! Parsed from a `serde_json::Value` walk rather than typed serde structs for two reasons:
//! Docker reads these documents with Go's `encoding/json`, which matches field names
//! case-insensitively (`"Auth"` works), and serde's own error messages quote the offending value,
//! which here may be a password. Every message produced in this module names keys, field names
//! and JSON types only, never values.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};

use crate::RegistryAuth;
use crate::reference::DOCKER_HUB;

/// Docker's key for Docker Hub in `config.json` (what `docker login` writes).
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Standard base64, padding optional: Go requires padding, but a missing `=` is an obvious
/// copy-paste slip that carries no ambiguity.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A parsed auth config document. Debug is safe: entries redact their secrets.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// `auths` entries in document order, including ones without credentials.
    pub auths: Vec<AuthEntry>,
    /// `credsStore`: the helper name (`desktop` for `docker-credential-desktop`).
    pub creds_store: Option<String>,
    /// `credHelpers`: registry key -> helper name, in document order.
    pub cred_helpers: Vec<HelperEntry>,
    /// Non-fatal problems (an entry dropped or repaired), with line/column, without secrets.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AuthEntry {
    /// The key as written (`https://index.docker.io/v1/`).
    pub key: String,
    /// The key as matched against images (`docker.io`), see [`normalize_key`].
    pub normalized_key: String,
    pub auth: RegistryAuth,
}

#[derive(Debug, Clone)]
pub struct HelperEntry {
    pub key: String,
    pub normalized_key: String,
    /// Helper name: the program is `docker-credential-<helper>`.
    pub helper: String,
}

/// Why a whole document could not be used. Never contains a value from the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{what}{}", at(*.position))]
    Structure {
        what: String,
        /// Line and column of the offending value, when it could be located.
        position: Option<(usize, usize)>,
    },
}

fn at(position: Option<(usize, usize)>) -> String {
    match position {
        Some((line, column)) => format!(" (line {line} column {column})"),
        None => String::new(),
    }
}

impl AuthConfig {
    /// Parse a `DOCKER_AUTH_CONFIG` value or a `config.json`.
    pub fn parse(json: &str) -> Result<Self, AuthConfigError> {
        let root = parse_value(json)?;
        let Value::Object(root) = root else {
            return Err(AuthConfigError::Structure {
                what: format!(
                    "the document must be a JSON object like {{\"auths\": {{...}}}}, not {}",
                    type_name(&root)
                ),
                position: locate(json, &[]),
            });
        };
        let mut config = AuthConfig::default();
        // Go's encoding/json: case-insensitive field names, the last duplicate wins.
        let (mut auths, mut store, mut helpers) = (None, None, None);
        for (name, value) in &root {
            if name.eq_ignore_ascii_case("auths") {
                auths = Some((name, value));
            } else if name.eq_ignore_ascii_case("credsStore") {
                store = Some((name, value));
            } else if name.eq_ignore_ascii_case("credHelpers") {
                helpers = Some((name, value));
            }
        }
        match auths {
            None | Some((_, Value::Null)) => {}
            Some((name, Value::Object(map))) => config.read_entries(json, &[name], map),
            Some((name, other)) => {
                return Err(structure(
                    json,
                    &[name],
                    format!(
                        "`{name}` must be an object mapping registry to credentials, not {}",
                        type_name(other)
                    ),
                ));
            }
        }
        match store {
            None | Some((_, Value::Null)) => {}
            Some((_, Value::String(s))) if s.is_empty() => {}
            Some((name, Value::String(s))) => {
                check_helper_name(json, &[name], name, s)?;
                config.creds_store = Some(s.clone());
            }
            Some((name, other)) => {
                return Err(structure(
                    json,
                    &[name],
                    format!(
                        "`{name}` must be a helper name such as \"desktop\", not {}",
                        type_name(other)
                    ),
                ));
            }
        }
        match helpers {
            None | Some((_, Value::Null)) => {}
            Some((name, Value::Object(map))) => {
                for (key, value) in map {
                    match value {
                        Value::String(helper) if !helper.is_empty() => {
                            check_helper_name(json, &[name, key], name, helper)?;
                            config.cred_helpers.push(HelperEntry {
                                key: key.clone(),
                                normalized_key: normalize_key(key),
                                helper: helper.clone(),
                            });
                        }
                        other => {
                            return Err(structure(
                                json,
                                &[name, key],
                                format!(
                                    "`{name}` entry `{key}` must be a helper name such as \
                                     \"ecr-login\", not {}",
                                    describe(other)
                                ),
                            ));
                        }
                    }
                }
            }
            Some((name, other)) => {
                return Err(structure(
                    json,
                    &[name],
                    format!(
                        "`{name}` must be an object mapping registry to helper name, like \
                         {{\"<registry>\": \"ecr-login\"}}, not {}",
                        type_name(other)
                    ),
                ));
            }
        }
        Ok(config)
    }

    /// Parse the legacy `~/.dockercfg`: either a JSON object of entries without the `auths`
    /// wrapper, or the even older two-line `auth = <base64>` / `email = ...` form for Docker Hub.
    pub fn parse_legacy(text: &str) -> Result<Self, AuthConfigError> {
        let mut config = AuthConfig::default();
        match parse_value(text) {
            Ok(Value::Object(map)) => {
                config.read_entries(text, &[], &map);
                Ok(config)
            }
            Ok(other) => Err(structure(
                text,
                &[],
                format!(
                    "the document must be a JSON object, not {}",
                    type_name(&other)
                ),
            )),
            Err(json_err) => {
                let auth = text.lines().find_map(|line| {
                    let (name, value) = line.split_once('=')?;
                    (name.trim() == "auth").then(|| value.trim().to_owned())
                });
                let Some(auth) = auth else {
                    return Err(json_err);
                };
                let mut entry = Map::new();
                entry.insert("auth".into(), Value::String(auth));
                let mut map = Map::new();
                map.insert(DOCKER_HUB_KEY.into(), Value::Object(entry));
                config.read_entries(text, &[], &map);
                Ok(config)
            }
        }
    }

    /// Secrets found in the document (for masking helper output and the job log).
    pub fn secrets(&self) -> Vec<String> {
        self.auths.iter().flat_map(|e| e.auth.secrets()).collect()
    }

    fn read_entries(&mut self, text: &str, parent: &[&str], map: &Map<String, Value>) {
        let section = parent.first().map_or("", |s| s);
        let label = |key: &str| {
            if section.is_empty() {
                format!("entry `{key}`")
            } else {
                format!("`{section}` entry `{key}`")
            }
        };
        for (key, value) in map {
            let mut path: Vec<&str> = parent.to_vec();
            path.push(key);
            let fields = match value {
                Value::Object(fields) => fields,
                // Go decodes `null` into an empty entry.
                Value::Null => &Map::new(),
                other => {
                    self.problems.push(format!(
                        "{} ignored: it must be an object like {{\"auth\": \"...\"}}, not {}{}",
                        label(key),
                        type_name(other),
                        at(locate(text, &path))
                    ));
                    continue;
                }
            };
            match read_entry(key, fields) {
                Ok((auth, notes)) => {
                    for note in notes {
                        self.problems.push(format!("{}: {note}", label(key)));
                    }
                    self.auths.push(AuthEntry {
                        key: key.clone(),
                        normalized_key: normalize_key(key),
                        auth,
                    });
                }
                Err((field, why)) => {
                    path.push(field);
                    self.problems.push(format!(
                        "{} ignored: {why}{}",
                        label(key),
                        at(locate(text, &path))
                    ));
                }
            }
        }
    }
}

/// Read one entry. Errors name the offending field (a key of `fields`) and the reason.
fn read_entry<'a>(
    key: &str,
    fields: &'a Map<String, Value>,
) -> Result<(RegistryAuth, Vec<String>), (&'a str, String)> {
    let mut auth = RegistryAuth {
        server_address: key.to_owned(),
        ..RegistryAuth::default()
    };
    let mut encoded: Option<(&str, &str)> = None;
    for (name, value) in fields {
        let lower = name.to_ascii_lowercase();
        let slot = match lower.as_str() {
            "auth" | "username" | "password" | "identitytoken" | "registrytoken" => lower.as_str(),
            // `email` is obsolete and `serveraddress` is replaced by the key, as in Docker; both
            // must still be strings for Go to accept the document.
            "email" | "serveraddress" => "",
            _ => continue,
        };
        let text = match value {
            Value::String(s) => s.as_str(),
            Value::Null => continue,
            other => {
                return Err((
                    name.as_str(),
                    format!("`{name}` must be a string, not {}", type_name(other)),
                ));
            }
        };
        // Go treats "" as unset.
        let text = (!text.is_empty()).then(|| text.to_owned());
        match slot {
            "auth" => encoded = text.is_some().then_some((name.as_str(), value_str(value))),
            "username" => auth.username = text,
            "password" => auth.password = text,
            "identitytoken" => auth.identity_token = text,
            "registrytoken" => auth.registry_token = text,
            _ => {}
        }
    }
    let mut notes = Vec::new();
    // `auth` overrides `username`/`password`, as in Docker.
    if let Some((field, b64)) = encoded {
        let decoded = decode_auth(b64).map_err(|why| (field, format!("`{field}` {why}")))?;
        if decoded.trimmed_whitespace {
            notes.push(
                "the decoded `auth` value ends with a newline or spaces (made with `echo ... | \
                 base64`?); wharf drops them, but GitLab's runner sends them as part of the \
                 password. Recreate it with `printf '%s' 'username:password' | base64`"
                    .to_owned(),
            );
        }
        auth.username = Some(decoded.username);
        auth.password = Some(decoded.password).filter(|p| !p.is_empty());
    }
    Ok((auth, notes))
}

fn value_str(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

pub(crate) struct DecodedAuth {
    pub(crate) username: String,
    pub(crate) password: String,
    /// Whitespace (typically the newline `echo` adds) was removed from the end.
    pub(crate) trimmed_whitespace: bool,
    /// The decoded `user:password` text exactly as it was encoded.
    pub(crate) raw: String,
}

/// Decode an `auth` value: base64 of `user:password`, split at the first `:`.
pub(crate) fn decode_auth(b64: &str) -> Result<DecodedAuth, &'static str> {
    // Whitespace inside is line wrapping (GNU base64 wraps at 76 columns) or a pasted newline.
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = LENIENT_BASE64
        .decode(compact.as_bytes())
        .map_err(|_| "is not valid base64 (expected base64 of `username:password`)")?;
    let raw = String::from_utf8(bytes).map_err(|_| "does not decode to UTF-8 text")?;
    let (user, password) = raw
        .split_once(':')
        .ok_or("decodes to text without the `:` between username and password")?;
    if user.is_empty() {
        return Err("decodes to an empty username (expected `username:password`)");
    }
    // Docker trims NULs from the password; the trailing newline is our addition (see notes).
    let nul_trimmed = password.trim_matches('\0');
    let trimmed = nul_trimmed.trim_end();
    Ok(DecodedAuth {
        username: user.to_owned(),
        password: trimmed.to_owned(),
        trimmed_whitespace: trimmed.len() != nul_trimmed.len(),
        raw: raw.clone(),
    })
}

/// Normalise a credentials key for matching against `registry/path`:
/// a key with an `http(s)://` scheme keeps only its lowercased `host[:port]`; without a scheme a
/// trailing `/` and `:tag` are dropped, the host lowercased and the path kept. `index.docker.io`
/// becomes `docker.io`.
pub fn normalize_key(key: &str) -> String {
    let key = key.trim();
    let lower = key.to_ascii_lowercase();
    let (host, path) = if let Some(rest) = ["http://", "https://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
    {
        (
            rest.split('/').next().unwrap_or_default().to_owned(),
            String::new(),
        )
    } else {
        let mut trimmed = key.trim_end_matches('/');
        if let Some(slash) = trimmed.rfind('/') {
            if let Some(colon) = trimmed[slash..].find(':') {
                trimmed = &trimmed[..slash + colon];
            }
        }
        match trimmed.split_once('/') {
            Some((h, p)) => (h.to_ascii_lowercase(), format!("/{p}")),
            None => (trimmed.to_ascii_lowercase(), String::new()),
        }
    };
    let host = if host == "index.docker.io" {
        DOCKER_HUB.to_owned()
    } else {
        host
    };
    format!("{host}{path}")
}

/// The `host[:port]` part of a normalised key.
pub(crate) fn key_host(normalized: &str) -> &str {
    normalized.split('/').next().unwrap_or(normalized)
}

fn check_helper_name(
    json: &str,
    path: &[&str],
    section: &str,
    helper: &str,
) -> Result<(), AuthConfigError> {
    if helper.contains('/') || helper.contains('\\') {
        return Err(structure(
            json,
            path,
            format!(
                "`{section}`: helper name `{helper}` contains a path separator; give the name \
                 only (`pass` runs `docker-credential-pass` from PATH)"
            ),
        ));
    }
    Ok(())
}

fn structure(json: &str, path: &[&str], what: String) -> AuthConfigError {
    AuthConfigError::Structure {
        what,
        position: locate(json, path),
    }
}

fn parse_value(json: &str) -> Result<Value, AuthConfigError> {
    serde_json::from_str(json).map_err(|e| {
        // Syntax errors from serde_json ("expected `,` or `}`", "EOF while parsing a string")
        // describe the grammar, not the input, so they are safe to show. Drop the position suffix
        // it appends; we print our own.
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        let message = if e.is_data() {
            // Not expected when parsing into a Value, but data errors may quote input.
            "unexpected value".to_owned()
        } else {
            message
        };
        AuthConfigError::Syntax {
            line: e.line(),
            column: e.column(),
            message,
        }
    })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::String(s) if s.is_empty() => "an empty string",
        other => type_name(other),
    }
}

/// Line and column (1-based) of the value at `path` (object keys from the root) in `json`, which
/// must be valid JSON. serde_json's `Value` keeps no positions, so this re-scans the text.
pub(crate) fn locate(json: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut scanner = Scanner { text: json, i: 0 };
    let offset = scanner.find(path)?;
    let before = &json[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    let column = json[line_start..offset].chars().count() + 1;
    Some((line, column))
}

struct Scanner<'a> {
    text: &'a str,
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.i += 1;
        }
    }

    fn find(&mut self, path: &[&str]) -> Option<usize> {
        self.skip_ws();
        let Some((first, rest)) = path.split_first() else {
            return Some(self.i);
        };
        if self.peek()? != b'{' {
            return None;
        }
        self.i += 1;
        loop {
            self.skip_ws();
            match self.peek()? {
                b'}' => return None,
                b',' => {
                    self.i += 1;
                    continue;
                }
                _ => {}
            }
            let start = self.i;
            self.string()?;
            let key: String = serde_json::from_str(&self.text[start..self.i]).ok()?;
            self.skip_ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            if key == *first {
                return self.find(rest);
            }
            self.skip_value()?;
        }
    }

    fn string(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                _ => self.i += 1,
            }
        }
    }

    fn skip_value(&mut self) -> Option<()> {
        self.skip_ws();
        match self.peek()? {
            b'"' => self.string(),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
                ) {
                    self.i += 1;
                }
                Some(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn key_normalisation() {
        let cases = [
            ("https://index.docker.io/v1/", "docker.io"),
            ("HTTPS://Index.Docker.IO/v1/", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("docker.io", "docker.io"),
            ("http://r.example.com:5000/v2/", "r.example.com:5000"),
            ("https://r.example.com/team", "r.example.com"),
            ("R.Example.com:5000", "r.example.com:5000"),
            ("r.example.com/", "r.example.com"),
            ("registry.example.com/team", "registry.example.com/team"),
            ("registry.example.com/team/", "registry.example.com/team"),
            (
                "registry.example.com/team/app:1.0",
                "registry.example.com/team/app",
            ),
            ("r.example.com:443", "r.example.com:443"),
            ("R.example.com/Team", "r.example.com/Team"),
        ];
        for (key, want) in cases {
            assert_eq!(normalize_key(key), want, "{key}");
        }
    }

    #[test]
    fn entries_auth_username_password_tokens() {
        let json = format!(
            r#"{{"auths": {{
                "a.io": {{"auth": "{}", "username": "ignored", "email": "x@y"}},
                "b.io": {{"username": "bob", "password": "pw"}},
                "c.io": {{"auth": "{}", "identitytoken": "refresh"}},
                "d.io": {{"registrytoken": "bearer", "serveraddress": "elsewhere"}},
                "e.io": {{}},
                "f.io": {{"Auth": "{}"}},
                "g.io": {{"auth": "{}"}}
            }}}}"#,
            b64("alice:s3:cret"),
            b64("carol:"),
            b64("frank:pw\0\0"),
            b64("gina"),
        );
        let c = AuthConfig::parse(&json).expect("valid");
        let get = |k: &str| {
            c.auths
                .iter()
                .find(|e| e.key == k)
                .map(|e| e.auth.clone())
                .unwrap_or_else(|| panic!("{k}"))
        };
        let a = get("a.io");
        assert_eq!(a.username.as_deref(), Some("alice"));
        assert_eq!(a.password.as_deref(), Some("s3:cret"));
        let b = get("b.io");
        assert_eq!(
            (b.username.as_deref(), b.password.as_deref()),
            (Some("bob"), Some("pw"))
        );
        let cc = get("c.io");
        assert_eq!(cc.username.as_deref(), Some("carol"));
        assert_eq!(cc.password, None);
        assert_eq!(cc.identity_token.as_deref(), Some("refresh"));
        let d = get("d.io");
        assert_eq!(d.registry_token.as_deref(), Some("bearer"));
        assert_eq!(d.server_address, "d.io");
        assert!(!get("e.io").has_credentials());
        assert_eq!(get("f.io").password.as_deref(), Some("pw"));
        // `gina` has no `:`: dropped with a problem naming the entry, not the value.
        assert!(c.auths.iter().all(|e| e.key != "g.io"));
        assert_eq!(c.problems.len(), 1, "{:?}", c.problems);
        assert!(c.problems[0].contains("`g.io`") && c.problems[0].contains("`:`"));
        assert!(c.problems[0].contains("line 8"), "{}", c.problems[0]);
    }

    #[test]
    fn trailing_newline_from_echo_is_accepted_with_a_note() {
        let json = format!(
            r#"{{"auths": {{"r.io": {{"auth": "{}\n"}}}}}}"#,
            b64("u:pw\n")
        );
        // JSON "\n" inside the string: the base64 itself also ends with a newline.
        let c = AuthConfig::parse(&json).expect("valid");
        assert_eq!(c.auths[0].auth.password.as_deref(), Some("pw"));
        assert_eq!(c.problems.len(), 1);
        assert!(c.problems[0].contains("printf"), "{}", c.problems[0]);
        assert!(!c.problems[0].contains("pw"));
    }

    #[test]
    fn malformed_documents_name_position_without_values() {
        let cases: Vec<(&str, &str)> = vec![
            (
                r#"{"credHelpers": "ecr-login"}"#,
                "`credHelpers` must be an object",
            ),
            (r#"{"auths": ["s3cret"]}"#, "`auths` must be an object"),
            (
                r#"{"credsStore": {"x": "s3cret"}}"#,
                "`credsStore` must be a helper name",
            ),
            (r#"{"credHelpers": {"r.io": 5}}"#, "entry `r.io`"),
            (r#"{"credHelpers": {"r.io": "../evil"}}"#, "path separator"),
            (r#"["s3cret"]"#, "must be a JSON object"),
            (
                r#"{"auths": {"r.io": {"auth": "s3cret"}"#,
                "invalid JSON at line 1",
            ),
            (
                "{\"auths\": {\n  \"r.io\": {\"auth\": s3cret}}}",
                "invalid JSON at line 2",
            ),
        ];
        for (json, needle) in cases {
            let err = AuthConfig::parse(json).expect_err(json).to_string();
            assert!(err.contains(needle), "{json}: {err}");
            assert!(err.contains("line "), "{json}: {err}");
            assert!(!err.contains("s3cret"), "{json}: {err}");
        }
        let err = AuthConfig::parse(r#"{"credHelpers": "ecr-login"}"#).expect_err("bad");
        assert!(err.to_string().ends_with("(line 1 column 17)"), "{err}");
    }

    #[test]
    fn bad_entries_are_dropped_with_problems() {
        let json = r#"{"auths": {"a.io": "s3cret", "b.io": {"password": 5}, "c.io": {"auth": "%%%"}, "d.io": {"auth": "OnB3"}}}"#;
        let c = AuthConfig::parse(json).expect("document is usable");
        assert!(c.auths.is_empty());
        assert_eq!(c.problems.len(), 4, "{:?}", c.problems);
        for p in &c.problems {
            assert!(!p.contains("s3cret") && !p.contains("%%%"), "{p}");
        }
        assert!(c.problems[3].contains("empty username"));
    }

    #[test]
    fn legacy_formats() {
        let json = format!(
            r#"{{"https://index.docker.io/v1/": {{"auth": "{}", "email": "e"}}}}"#,
            b64("u:p")
        );
        let c = AuthConfig::parse_legacy(&json).expect("valid");
        assert_eq!(c.auths[0].normalized_key, "docker.io");
        let old = format!("auth = {}\nemail = e@x\n", b64("u:p"));
        let c = AuthConfig::parse_legacy(&old).expect("valid");
        assert_eq!(c.auths[0].auth.password.as_deref(), Some("p"));
        assert!(AuthConfig::parse_legacy("garbage").is_err());
    }

    #[test]
    fn locate_finds_nested_values() {
        let json = "{\n  \"a\": {\"x\": [1, \"}\"], \"b\": {\n    \"c\": true}}}";
        assert_eq!(locate(json, &["a", "b", "c"]), Some((3, 10)));
        assert_eq!(locate(json, &["a", "x"]), Some((2, 14)));
        assert_eq!(locate(json, &["nope"]), None);
    }
}
