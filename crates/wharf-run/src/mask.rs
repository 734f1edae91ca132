//! Streaming secret masker: every occurrence of a secret becomes `[MASKED]`, also when the secret
//! is split across writes (the tail that could start a secret is held back until it can't).

pub const MASK: &[u8] = b"[MASKED]";

/// Secrets shorter than this are not masked: masking one- or two-character values would destroy
/// the log and protect nothing. GitLab itself refuses to mask values under 8 characters.
pub const MIN_SECRET_LEN: usize = 3;

/// The longest token after a prefix that is masked whole; a longer run is masked up to here.
const MAX_PREFIXED_TOKEN: usize = 256;

#[derive(Clone, Default)]
pub struct Masker {
    /// Longest first, so the longest overlapping secret wins.
    secrets: Vec<Vec<u8>>,
    /// GitLab's `token_mask_prefixes` (`glpat-`...): what follows one of them, up to the first
    /// byte that cannot be part of a token, is masked (the prefix stays, as gitlab-runner
    /// shows it).
    token_prefixes: Vec<Vec<u8>>,
    pending: Vec<u8>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} secrets)", self.secrets.len())
    }
}

impl Masker {
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut m = Self::default();
        for s in secrets {
            m.add(s.as_ref());
        }
        m
    }

    pub fn add(&mut self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        // A secret that spans lines is also registered line by line: a program may print it
        // with different line endings or only partly.
        let mut parts = vec![secret.as_bytes().to_vec()];
        if secret.contains('\n') {
            parts.extend(
                secret
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.len() >= 8)
                    .map(|l| l.as_bytes().to_vec()),
            );
        }
        for p in parts {
            if !self.secrets.contains(&p) {
                self.secrets.push(p);
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Mask the token after each of these prefixes wherever it appears (GitLab's
    /// `token_mask_prefixes`).
    pub fn add_token_prefixes(&mut self, prefixes: &[String]) {
        for prefix in prefixes.iter().filter(|p| !p.is_empty()) {
            let prefix = prefix.as_bytes().to_vec();
            if !self.token_prefixes.contains(&prefix) {
                self.token_prefixes.push(prefix);
            }
        }
    }

    /// Every secret of a job's variables: masked values (and their expansions), and the
    /// credentials inside a `DOCKER_AUTH_CONFIG` (the job's, then the runner's own).
    pub fn for_variables(vars: &crate::vars::VarSet, runner_auth_config: Option<&str>) -> Self {
        let mut masker = Self::new(vars.secrets());
        let job_auth_config = vars.docker_auth_config();
        for doc in job_auth_config
            .iter()
            .map(String::as_str)
            .chain(runner_auth_config)
        {
            masker.add(doc);
            for s in wharf_oci::secrets_in_auth_config(doc) {
                masker.add(&s);
            }
        }
        masker
    }

    /// The secrets, longest first.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        // Only whole strings were ever added, and their lines split at '\n' stay valid UTF-8.
        self.secrets
            .iter()
            .filter_map(|s| std::str::from_utf8(s).ok())
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.token_prefixes.is_empty()
    }

    /// Mask a whole string at once (for error messages and other one-shot text).
    pub fn mask_str(&self, text: &str) -> String {
        let mut m = Masker {
            pending: Vec::new(),
            ..self.clone()
        };
        let mut out = m.push(text.as_bytes());
        out.extend(m.finish());
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Feed bytes; returns the bytes that are safe to emit now.
    pub fn push(&mut self, data: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() && self.token_prefixes.is_empty() {
            return data.to_vec();
        }
        self.pending.extend_from_slice(data);
        let mut out = Vec::with_capacity(self.pending.len());
        let buf = std::mem::take(&mut self.pending);
        let mut i = 0;
        'scan: while i < buf.len() {
            for s in &self.secrets {
                if buf[i..].starts_with(s) {
                    out.extend_from_slice(MASK);
                    i += s.len();
                    continue 'scan;
                }
            }
            match self.prefixed_token(&buf[i..]) {
                PrefixedToken::Whole { prefix, token } => {
                    out.extend_from_slice(&buf[i..i + prefix]);
                    out.extend_from_slice(MASK);
                    i += prefix + token;
                    continue 'scan;
                }
                PrefixedToken::Unfinished => {
                    self.pending = buf[i..].to_vec();
                    return out;
                }
                PrefixedToken::None => {}
            }
            // Could a secret start here but continue past what we have? Hold the rest back.
            let rest = &buf[i..];
            if self
                .secrets
                .iter()
                .any(|s| s.len() > rest.len() && s.starts_with(rest))
            {
                self.pending = rest.to_vec();
                return out;
            }
            out.push(buf[i]);
            i += 1;
        }
        out
    }

    /// End of stream: emit what was held back (a token cut by the end is still masked).
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        if let Some(prefix) = self.token_prefixes.iter().find(|p| rest.starts_with(p)) {
            let token = token_len(&rest[prefix.len()..]);
            if token > 0 {
                let mut out = rest[..prefix.len()].to_vec();
                out.extend_from_slice(MASK);
                out.extend_from_slice(&rest[prefix.len() + token..]);
                return out;
            }
        }
        rest
    }

    /// Whether `rest` starts with a prefixed token, and whether all of it is there yet.
    fn prefixed_token(&self, rest: &[u8]) -> PrefixedToken {
        for prefix in &self.token_prefixes {
            if rest.starts_with(prefix) {
                let after = &rest[prefix.len()..];
                let token = token_len(after);
                if token == after.len() && token < MAX_PREFIXED_TOKEN {
                    // The token may go on in the next write.
                    return PrefixedToken::Unfinished;
                }
                if token > 0 {
                    return PrefixedToken::Whole {
                        prefix: prefix.len(),
                        token,
                    };
                }
            } else if prefix.len() > rest.len() && prefix.starts_with(rest) {
                return PrefixedToken::Unfinished;
            }
        }
        PrefixedToken::None
    }
}

enum PrefixedToken {
    None,
    Unfinished,
    Whole { prefix: usize, token: usize },
}

/// How many bytes of a token start `text` (GitLab tokens: letters, digits, `_`, `-`, `.`), at
/// most [`MAX_PREFIXED_TOKEN`].
fn token_len(text: &[u8]) -> usize {
    text.iter()
        .take(MAX_PREFIXED_TOKEN)
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_whole_and_split_secrets() {
        let mut m = Masker::new(["s3cr3t-pass"]);
        let mut out = m.push(b"login s3cr");
        out.extend(m.push(b"3t-pass ok s3cr3t-pass"));
        out.extend(m.push(b" s3c"));
        out.extend(m.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "login [MASKED] ok [MASKED] s3c"
        );
    }

    #[test]
    fn byte_by_byte_is_masked() {
        let mut m = Masker::new(["abcdef", "abcxyz"]);
        let mut out = Vec::new();
        for b in b"1abcxyz2abcdef3abc" {
            out.extend(m.push(&[*b]));
        }
        out.extend(m.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "1[MASKED]2[MASKED]3abc");
    }

    #[test]
    fn longest_secret_wins_and_short_ones_are_ignored() {
        let m = Masker::new(["pass", "password123", "ab"]);
        assert_eq!(m.mask_str("password123 pass ab"), "[MASKED] [MASKED] ab");
    }

    #[test]
    fn multiline_secret_lines_are_masked_too() {
        let m = Masker::new(["{\n  \"auths\": {\"r.example.com\": {}}\n}"]);
        let out = m.mask_str("value was   \"auths\": {\"r.example.com\": {}} here");
        assert!(!out.contains("r.example.com"), "{out}");
    }

    #[test]
    fn tokens_after_gitlabs_prefixes_are_masked_also_when_split() {
        let mut m = Masker::default();
        m.add_token_prefixes(&["glpat-".to_string(), "glrt-".to_string()]);
        let mut out = Vec::new();
        for chunk in [
            &b"use gl"[..],
            b"pat-abc",
            b"DEF_12 and glrt-x.y-z\nend glpat-",
        ] {
            out.extend(m.push(chunk));
        }
        out.extend(m.push(b"tail"));
        out.extend(m.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "use glpat-[MASKED] and glrt-[MASKED]\nend glpat-[MASKED]"
        );
        let mut lone = Masker::default();
        lone.add_token_prefixes(&["glpat-".to_string()]);
        assert_eq!(lone.mask_str("a glpat- b glpa"), "a glpat- b glpa");
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let m = Masker::new(["hunter22"]);
        assert!(!format!("{m:?}").contains("hunter22"));
    }
}
