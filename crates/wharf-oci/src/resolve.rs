//! Credential resolution across sources, as GitLab's runner does it.
//!
//! Sources, highest priority first: the job's `DOCKER_AUTH_CONFIG` (which replaces the runner-level
//! one whole), then `$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (or `~/.dockercfg`).
//! Matching walks the image's registry path from most specific to the host and, at each step,
//! asks every source in priority order: path specificity is checked before source priority.
//!
//! Where wharf differs from the runner, on purpose:
//! - an invalid entry drops only that entry (with a warning), not the whole document, so a typo
//!   for one registry does not break pulls from all others;
//! - an entry without any credentials (`{}`) does not count as a match;
//! - helpers are asked only about keys that can match the image, instead of every key.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::authconfig::{AuthConfig, DOCKER_HUB_KEY, decode_auth, key_host, normalize_key};
use crate::helper::CredentialHelper;
use crate::reference::DOCKER_HUB;
use crate::{CredentialSources, Found, ImageRef, RegistryAuth, Resolution, SourceReport};

/// Label of the job-level `DOCKER_AUTH_CONFIG`.
pub const JOB_AUTH_CONFIG_SOURCE: &str = "$DOCKER_AUTH_CONFIG";
/// Label of the runner-level `DOCKER_AUTH_CONFIG` (wharf's own environment).
pub const RUNNER_AUTH_CONFIG_SOURCE: &str = "$DOCKER_AUTH_CONFIG (wharf's environment)";
/// How the registry credentials of a GitLab job payload are named in explanations.
pub const JOB_CREDENTIALS_SOURCE: &str = "the job's registry credentials from GitLab";
/// Says where a pipeline-level value would have come from, so users know where to put one.
const JOB_NOT_SET: &str =
    "not set in the pipeline's variables (.gitlab-ci.yml, --variable, --variables-file)";

/// How many keys an outcome lists before eliding the rest.
const MAX_KEYS_SHOWN: usize = 8;

struct Doc {
    label: String,
    config: AuthConfig,
    secrets: Vec<String>,
    /// Set when a helper failed: the whole source is then dropped, as the runner does.
    failed: Option<String>,
    /// `credsStore` `list` result, normalised key -> URLs as listed; computed on first use.
    store_list: Option<BTreeMap<String, Vec<String>>>,
    helper_reports: Vec<SourceReport>,
}

enum Slot {
    Fixed(SourceReport),
    Doc(usize),
}

enum Lookup {
    Hit {
        auth: RegistryAuth,
        via: Option<String>,
    },
    Miss,
    Failed(String),
}

impl Doc {
    fn new(label: String, config: AuthConfig) -> Self {
        let secrets = config.secrets();
        Doc {
            label,
            config,
            secrets,
            failed: None,
            store_list: None,
            helper_reports: Vec::new(),
        }
    }

    fn lookup(&mut self, candidate: &str, path: Option<&OsStr>) -> Lookup {
        // credHelpers beat credsStore beat auths for the same key.
        let helpers: Vec<(String, String)> = self
            .config
            .cred_helpers
            .iter()
            .filter(|h| h.normalized_key == candidate)
            .map(|h| (h.key.clone(), h.helper.clone()))
            .collect();
        for (key, name) in helpers {
            let label = format!(
                "{} (credHelpers in {})",
                CredentialHelper::program_name(&name),
                self.label
            );
            match CredentialHelper::find(&name, path).and_then(|h| h.get(&key, &self.secrets)) {
                Ok(Some(auth)) => {
                    self.report(&label, format!("used (key {key})"));
                    return Lookup::Hit {
                        auth,
                        via: Some(label),
                    };
                }
                Ok(None) => self.report(&label, format!("no credentials for {key}")),
                Err(e) => {
                    self.report(&label, format!("failed: {e}"));
                    return Lookup::Failed(helper_failure(&e, "credHelpers"));
                }
            }
        }

        if let Some(store) = self.config.creds_store.clone() {
            let label = format!(
                "{} (credsStore in {})",
                CredentialHelper::program_name(&store),
                self.label
            );
            let helper = match CredentialHelper::find(&store, path) {
                Ok(h) => h,
                Err(e) => {
                    self.report(&label, format!("failed: {e}"));
                    return Lookup::Failed(helper_failure(&e, "credsStore"));
                }
            };
            if self.store_list.is_none() {
                match helper.list(&self.secrets) {
                    Ok(list) => {
                        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
                        for url in list.into_keys() {
                            by_key.entry(normalize_key(&url)).or_default().push(url);
                        }
                        self.store_list = Some(by_key);
                    }
                    Err(e) => {
                        self.report(&label, format!("failed: {e}"));
                        return Lookup::Failed(helper_failure(&e, "credsStore"));
                    }
                }
            }
            let urls = self
                .store_list
                .as_ref()
                .and_then(|l| l.get(candidate))
                .cloned()
                .unwrap_or_default();
            for url in urls {
                match helper.get(&url, &self.secrets) {
                    Ok(Some(auth)) => {
                        self.report(&label, format!("used (key {url})"));
                        return Lookup::Hit {
                            auth,
                            via: Some(label),
                        };
                    }
                    Ok(None) => self.report(&label, format!("no credentials for {url}")),
                    Err(e) => {
                        self.report(&label, format!("failed: {e}"));
                        return Lookup::Failed(helper_failure(&e, "credsStore"));
                    }
                }
            }
        }

        // Several spellings of one key (`r.io`, `https://r.io/`): prefer the plain one, else the
        // first in the document, so the choice is stable (Go's map order is random).
        let mut entries = self
            .config
            .auths
            .iter()
            .filter(|e| e.normalized_key == candidate && e.auth.has_credentials());
        let first = entries.next();
        let plain = self
            .config
            .auths
            .iter()
            .find(|e| e.key == candidate && e.auth.has_credentials());
        match plain.or(first) {
            Some(entry) => Lookup::Hit {
                auth: entry.auth.clone(),
                via: None,
            },
            None => Lookup::Miss,
        }
    }

    fn report(&mut self, source: &str, outcome: String) {
        // One line per helper: a later outcome for the same helper replaces the earlier one.
        match self.helper_reports.iter_mut().find(|r| r.source == source) {
            Some(r) => r.outcome = outcome,
            None => self.helper_reports.push(SourceReport {
                source: source.to_owned(),
                outcome,
            }),
        }
    }

    /// Normalised keys this document is known to have credentials (or a helper) for.
    fn known_keys(&self) -> Vec<(String, String)> {
        let mut keys: Vec<(String, String)> = Vec::new();
        let mut add = |raw: &str, normalized: &str| {
            if !keys.iter().any(|(r, _)| r == raw) {
                keys.push((raw.to_owned(), normalized.to_owned()));
            }
        };
        for e in &self.config.auths {
            if e.auth.has_credentials() {
                add(&e.key, &e.normalized_key);
            }
        }
        for h in &self.config.cred_helpers {
            add(&h.key, &h.normalized_key);
        }
        if let Some(list) = &self.store_list {
            for (normalized, urls) in list {
                for url in urls {
                    add(url, normalized);
                }
            }
        }
        keys
    }

    /// `winner`: index of the winning document, the key matched and `Found::source`.
    fn outcome(&self, image: &ImageRef, winner: Option<(usize, &str, &str)>, me: usize) -> String {
        if let Some(failed) = &self.failed {
            return format!("ignored: {failed}");
        }
        if let Some((index, key, source)) = winner {
            if index == me {
                return if source == self.label {
                    format!("used (key {key})")
                } else {
                    format!("used (key {key}, via {source})")
                };
            }
        }
        let keys = self.known_keys();
        let candidates = image.credential_candidates();
        let best = candidates
            .iter()
            .find_map(|c| keys.iter().find(|(_, n)| n == c).map(|k| (c, k)));
        if let Some((candidate, (raw, _))) = best {
            return match winner {
                Some((_, key, source)) if key == candidate => {
                    format!("has an entry for {raw}, but {source} comes first")
                }
                Some((_, key, source)) => {
                    format!("has an entry for {raw}, but {source} has the more specific {key}")
                }
                None => format!("has an entry for {raw}, but no usable credentials in it"),
            };
        }
        let empty = self
            .config
            .auths
            .iter()
            .find(|e| !e.auth.has_credentials() && candidates.contains(&e.normalized_key));
        let mut outcome = if let Some(e) = empty {
            format!("the entry for {} has no credentials in it", e.key)
        } else if keys.is_empty() && self.config.creds_store.is_none() {
            "no credentials in it (no auths, credsStore or credHelpers entries)".to_owned()
        } else {
            let mut shown: Vec<&str> = keys.iter().map(|(r, _)| r.as_str()).collect();
            let more = shown.len().saturating_sub(MAX_KEYS_SHOWN);
            shown.truncate(MAX_KEYS_SHOWN);
            let mut list = shown.join(", ");
            if more > 0 {
                list.push_str(&format!(" and {more} more"));
            }
            if list.is_empty() {
                format!("no entry for {}", image.registry_path())
            } else {
                format!("no entry for {} (has: {list})", image.registry_path())
            }
        };
        // Ports must match exactly: point out near misses, a common cause of "no credentials".
        let image_host = host_without_port(&image.registry);
        let near: Vec<&str> = keys
            .iter()
            .map(|(_, n)| key_host(n))
            .filter(|h| *h != image.registry && host_without_port(h) == image_host)
            .collect();
        if let Some(h) = near.first() {
            outcome.push_str(&format!(
                "; note: {h} is a different registry from {} (ports must match exactly)",
                image.registry
            ));
        }
        outcome
    }
}

/// Why a source is dropped, with what to do about a missing helper (the classic "helper
/// installed on the wrong host" problem).
fn helper_failure(e: &crate::HelperError, section: &str) -> String {
    match e {
        crate::HelperError::NotFound { .. } => format!(
            "{e} (named by `{section}`): install it on this machine or remove it from `{section}`"
        ),
        _ => format!("{e} (named by `{section}`)"),
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.split(':').next().unwrap_or(host)
    }
}

fn non_blank(value: &Option<crate::Secret>) -> Option<&str> {
    value
        .as_ref()
        .map(|s| s.0.as_str())
        .filter(|s| !s.trim().is_empty())
}

/// Load an inline or file document into `docs`/`slots`, or record why it cannot be used.
fn load(
    label: String,
    text: &str,
    legacy: bool,
    docs: &mut Vec<Doc>,
    slots: &mut Vec<Slot>,
    warnings: &mut Vec<String>,
) {
    if text.trim().is_empty() {
        // Docker treats an empty config file as an empty configuration.
        slots.push(Slot::Fixed(SourceReport {
            source: label,
            outcome: "empty: no credentials in it".into(),
        }));
        return;
    }
    let parsed = if legacy {
        AuthConfig::parse_legacy(text)
    } else {
        AuthConfig::parse(text)
    };
    match parsed {
        Ok(config) => {
            for problem in &config.problems {
                warnings.push(format!("{label}: {problem}"));
            }
            slots.push(Slot::Doc(docs.len()));
            docs.push(Doc::new(label, config));
        }
        Err(e) => {
            warnings.push(format!(
                "{label} is not a valid auth config, ignoring it: {e}"
            ));
            slots.push(Slot::Fixed(SourceReport {
                source: label,
                outcome: format!("ignored: {e}"),
            }));
        }
    }
}

fn read_file(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) fn resolve_impl(image: &ImageRef, sources: &CredentialSources) -> Resolution {
    let mut warnings = Vec::new();
    let mut docs: Vec<Doc> = Vec::new();
    let mut slots: Vec<Slot> = Vec::new();
    let fixed = |source: &str, outcome: &str| {
        Slot::Fixed(SourceReport {
            source: source.to_owned(),
            outcome: outcome.to_owned(),
        })
    };

    // 1. DOCKER_AUTH_CONFIG: the job's value replaces the runner-level one whole.
    match (
        non_blank(&sources.job_auth_config),
        non_blank(&sources.runner_auth_config),
    ) {
        (Some(job), runner) => {
            load(
                JOB_AUTH_CONFIG_SOURCE.into(),
                job,
                false,
                &mut docs,
                &mut slots,
                &mut warnings,
            );
            slots.push(fixed(
                RUNNER_AUTH_CONFIG_SOURCE,
                if runner.is_some() {
                    "ignored: the job's $DOCKER_AUTH_CONFIG replaces it whole (they are never merged)"
                } else {
                    "not set"
                },
            ));
        }
        (None, Some(runner)) => {
            slots.push(fixed(JOB_AUTH_CONFIG_SOURCE, JOB_NOT_SET));
            load(
                RUNNER_AUTH_CONFIG_SOURCE.into(),
                runner,
                false,
                &mut docs,
                &mut slots,
                &mut warnings,
            );
        }
        (None, None) => {
            slots.push(fixed(JOB_AUTH_CONFIG_SOURCE, JOB_NOT_SET));
            slots.push(fixed(RUNNER_AUTH_CONFIG_SOURCE, "not set"));
        }
    }

    // 2. The Docker config file.
    let config_dir = crate::store::default_docker_config_dir(
        sources.docker_config_dir.clone(),
        sources.home_dir.clone(),
    );
    match config_dir {
        None => slots.push(fixed(
            "~/.docker/config.json",
            "not checked: neither DOCKER_CONFIG nor HOME is set",
        )),
        Some(dir) => {
            let path = dir.join("config.json");
            let label = path.display().to_string();
            match read_file(&path) {
                Ok(Some(text)) => load(label, &text, false, &mut docs, &mut slots, &mut warnings),
                Ok(None) => {
                    slots.push(fixed(&label, "file not found"));
                    // Docker falls back to the legacy file only when config.json is missing.
                    if let Some(home) = non_empty_path(&sources.home_dir) {
                        let legacy = home.join(".dockercfg");
                        let legacy_label = legacy.display().to_string();
                        match read_file(&legacy) {
                            Ok(Some(text)) => load(
                                legacy_label,
                                &text,
                                true,
                                &mut docs,
                                &mut slots,
                                &mut warnings,
                            ),
                            Ok(None) => slots.push(fixed(&legacy_label, "file not found")),
                            Err(e) => {
                                warnings.push(format!("cannot read {legacy_label}: {e}"));
                                slots.push(fixed(&legacy_label, &format!("unreadable: {e}")));
                            }
                        }
                    }
                }
                Err(e) => {
                    warnings.push(format!("cannot read {label}: {e}"));
                    slots.push(fixed(&label, &format!("unreadable: {e}")));
                }
            }
        }
    }

    // 3. The registry credentials GitLab sent with the job, last (gitlab-runner appends them
    // after the user's configuration). Read as one more auth document.
    if let Some(credentials) = &sources.job_credentials {
        if credentials.is_empty() {
            slots.push(fixed(JOB_CREDENTIALS_SOURCE, "none in this job"));
        } else {
            let auths: serde_json::Map<String, serde_json::Value> = credentials
                .iter()
                .map(|c| {
                    (
                        c.url.clone(),
                        serde_json::json!({"username": c.username, "password": c.password.0}),
                    )
                })
                .collect();
            let text = serde_json::json!({ "auths": auths }).to_string();
            load(
                JOB_CREDENTIALS_SOURCE.into(),
                &text,
                false,
                &mut docs,
                &mut slots,
                &mut warnings,
            );
        }
    }

    // 4. Match: most specific path first, then source priority.
    let path = sources.path.as_deref();
    // (index of the winning document, the found credentials)
    let mut found: Option<(usize, Found)> = None;
    'candidates: for candidate in image.credential_candidates() {
        for (index, doc) in docs.iter_mut().enumerate() {
            if doc.failed.is_some() {
                continue;
            }
            match doc.lookup(&candidate, path) {
                Lookup::Hit { auth, via } => {
                    let source = via.unwrap_or_else(|| doc.label.clone());
                    found = Some((
                        index,
                        Found {
                            source,
                            key: candidate.clone(),
                            auth,
                        },
                    ));
                    break 'candidates;
                }
                Lookup::Miss => {}
                Lookup::Failed(message) => {
                    warnings.push(format!(
                        "{}: {message}; ignoring all credentials in it",
                        doc.label
                    ));
                    doc.failed = Some(message);
                }
            }
        }
    }

    let winner = found
        .as_ref()
        .map(|(index, f)| (*index, f.key.as_str(), f.source.as_str()));
    let mut tried = Vec::new();
    for slot in slots {
        match slot {
            Slot::Fixed(report) => tried.push(report),
            Slot::Doc(index) => {
                let doc = &docs[index];
                tried.push(SourceReport {
                    source: doc.label.clone(),
                    outcome: doc.outcome(image, winner, index),
                });
                tried.extend(doc.helper_reports.iter().cloned());
            }
        }
    }
    Resolution {
        found: found.map(|(_, f)| f),
        tried,
        warnings,
    }
}

fn non_empty_path(p: &Option<PathBuf>) -> Option<&Path> {
    p.as_deref().filter(|p| !p.as_os_str().is_empty())
}

/// The `config.json` key for a registry: Docker Hub's historic URL, else `host[:port]`.
pub fn config_key_for_registry(registry: &str) -> String {
    if normalize_key(registry) == DOCKER_HUB {
        DOCKER_HUB_KEY.to_owned()
    } else {
        normalize_key(registry)
    }
}

pub(crate) fn explain_missing_impl(resolution: &Resolution, image: &ImageRef) -> String {
    let registry = &image.registry;
    let key = config_key_for_registry(registry);
    let login_target = if registry == DOCKER_HUB {
        "docker.io"
    } else {
        registry
    };
    let mut out = format!(
        "No credentials found for registry {registry} (image {}).\n",
        image.familiar()
    );
    out.push_str("Sources tried, highest priority first:\n");
    for report in &resolution.tried {
        out.push_str(&format!("  - {}: {}\n", report.source, report.outcome));
    }
    out.push_str(&format!(
        "Keys that would match, most specific first: {}\n",
        image.credential_candidates().join(", ")
    ));
    out.push_str(&format!(
        "To fix it, set the variable DOCKER_AUTH_CONFIG (GitLab: Settings -> CI/CD -> Variables; \
         wharf: --variable DOCKER_AUTH_CONFIG='...', a --variables-file, or wharf's environment) to:\n  {{\"auths\": {{\"{key}\": {{\"auth\": \"<base64 of \
         username:password>\"}}}}}}\n"
    ));
    out.push_str(
        "Make the base64 value with:\n  printf '%s' 'username:password' | base64\n\
         (printf, not echo: echo adds a newline that becomes part of the password.)\n",
    );
    out.push_str(&format!(
        "Or log in once, which writes ~/.docker/config.json for wharf to read:\n  \
         wharf login {login_target} -u <username> --password-stdin\n\
         (add --print-auth-config to print the DOCKER_AUTH_CONFIG JSON for GitLab's \
         Settings -> CI/CD -> Variables.)"
    ));
    out
}

pub(crate) fn secrets_in_auth_config_impl(json: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(value) => collect_secrets(&value, &mut out),
        // Masking must not depend on the document being valid: fall back to a textual scan.
        Err(_) => scan_secrets(json, &mut out),
    }
    let mut unique: Vec<String> = Vec::new();
    for s in out {
        if !s.is_empty() && !unique.contains(&s) {
            unique.push(s);
        }
    }
    unique
}

fn push_field_secrets(name: &str, value: &str, out: &mut Vec<String>) {
    match name.to_ascii_lowercase().as_str() {
        "auth" => {
            out.push(value.to_owned());
            out.push(value.trim().to_owned());
            if let Ok(decoded) = decode_auth(value) {
                out.push(decoded.raw.clone());
                out.push(decoded.raw.trim_end().to_owned());
                if let Some((_, password)) = decoded.raw.split_once(':') {
                    out.push(password.to_owned());
                }
                out.push(decoded.password);
            }
        }
        "password" | "identitytoken" | "registrytoken" => out.push(value.to_owned()),
        _ => {}
    }
}

fn collect_secrets(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (name, v) in map {
                match v {
                    serde_json::Value::String(s) => push_field_secrets(name, s, out),
                    other => collect_secrets(other, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_secrets(v, out)),
        _ => {}
    }
}

/// Find `"<field>" : "<value>"` pairs in text that is not valid JSON.
fn scan_secrets(text: &str, out: &mut Vec<String>) {
    let lower = text.to_ascii_lowercase();
    for field in ["auth", "password", "identitytoken", "registrytoken"] {
        let needle = format!("\"{field}\"");
        let mut from = 0;
        while let Some(pos) = lower[from..].find(&needle) {
            let after = from + pos + needle.len();
            from = after;
            let rest = text[after..].trim_start();
            let Some(rest) = rest.strip_prefix(':') else {
                continue;
            };
            let Some(rest) = rest.trim_start().strip_prefix('"') else {
                continue;
            };
            let mut value = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => {
                        if let Some(next) = chars.next() {
                            value.push(next);
                        }
                    }
                    c => value.push(c),
                }
            }
            push_field_secrets(field, &value, out);
        }
    }
}

#[cfg(all(test, unix))]
#[path = "resolve_tests.rs"]
mod tests;
