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
        let buf = std::mem::take(&mut self.pending);
        self.scan(&buf, false)
    }

    /// End of stream: emit what was held back, masked. A held-back tail is the start of a
    /// longer secret, but it can hold a whole shorter one (a password, and a URL made with it)
    /// or a token cut by the end: it is scanned like the rest, with nothing more to wait for.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.scan(&rest, true)
    }

    /// Masks `buf`. Unless `at_end`, a tail that could still become a secret (or a prefixed
    /// token that could go on) is kept in `pending` for the next write instead of emitted.
    fn scan(&mut self, buf: &[u8], at_end: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        'scan: while i < buf.len() {
            // Could a secret start here but continue past what we have? Hold the rest back,
            // also when a shorter secret matches here already: the longest one wins, wherever
            // the writes happen to end (masking `pass` of `password123` would leave `word123`).
            let rest = &buf[i..];
            if !at_end
                && self
                    .secrets
                    .iter()
                    .any(|s| s.len() > rest.len() && s.starts_with(rest))
            {
                self.pending = rest.to_vec();
                return out;
            }
            for s in &self.secrets {
                if rest.starts_with(s) {
                    out.extend_from_slice(MASK);
                    i += s.len();
                    continue 'scan;
                }
            }
            match self.prefixed_token(rest, at_end) {
                PrefixedToken::Whole { prefix, token } => {
                    out.extend_from_slice(&buf[i..i + prefix]);
                    out.extend_from_slice(MASK);
                    i += prefix + token;
                    continue 'scan;
                }
                PrefixedToken::Unfinished => {
                    self.pending = rest.to_vec();
                    return out;
                }
                PrefixedToken::None => {}
            }
            out.push(buf[i]);
            i += 1;
        }
        out
    }

    /// Whether `rest` starts with a prefixed token, and whether all of it is there yet (at the
    /// end of the stream, it is).
    fn prefixed_token(&self, rest: &[u8], at_end: bool) -> PrefixedToken {
        for prefix in &self.token_prefixes {
            if rest.starts_with(prefix) {
                let after = &rest[prefix.len()..];
                let token = token_len(after);
                if !at_end && token == after.len() && token < MAX_PREFIXED_TOKEN {
                    // The token may go on in the next write.
                    return PrefixedToken::Unfinished;
                }
                if token > 0 {
                    return PrefixedToken::Whole {
                        prefix: prefix.len(),
                        token,
                    };
                }
            } else if !at_end && prefix.len() > rest.len() && prefix.starts_with(rest) {
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

    /// A job's last output can end with the start of one secret that holds another whole
    /// (a password, and a URL made with it): the tail held back for the longer one was
    /// emitted unmasked at the end of the stream.
    #[test]
    fn a_secret_inside_a_held_back_tail_is_masked_at_the_end() {
        let secrets = ["hunter22", "postgres://u:hunter22@db/app"];
        let m = Masker::new(secrets);
        assert_eq!(
            m.mask_str("url postgres://u:hunter22"),
            "url postgres://u:[MASKED]"
        );
        let mut streamed = Masker::new(secrets);
        let mut out = streamed.push(b"url postgres://u:hun");
        out.extend(streamed.push(b"ter22"));
        out.extend(streamed.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "url postgres://u:[MASKED]");
        // And a token after a GitLab prefix inside such a tail.
        let mut m = Masker::new(["glpat-abc and more"]);
        m.add_token_prefixes(&["glpat-".to_string()]);
        assert_eq!(m.mask_str("x glpat-abc and"), "x glpat-[MASKED] and");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(1024))]
        /// Whatever the secrets and however the output is cut into writes: the stream masks
        /// exactly as the whole text at once does, and no secret is left in it. Secrets and
        /// text are made of a few letters so that they overlap, nest and repeat; `[MASKED]`
        /// shares none of them, so a secret found in the output was not masked.
        #[test]
        fn streaming_masks_as_the_whole_text_and_leaves_no_secret(
            // Secrets cut from one string, so that they nest and overlap, and one apart.
            base in "[abc]{4,10}",
            windows in proptest::collection::vec((0usize..10, 3usize..10), 1..4),
            apart in "[abc]{3,6}",
            // The text: starts of secrets (cut anywhere) with fillers between them; the last
            // piece has none, so the text often ends inside a secret.
            pieces in proptest::collection::vec((0usize..4, 0usize..10, "[abcx]{0,3}"), 1..8),
            cuts in proptest::collection::vec(0usize..80, 0..6),
        ) {
            let mut secrets: Vec<String> = windows
                .iter()
                .map(|(start, len)| {
                    let start = start % (base.len() - 2);
                    base[start..(start + len).min(base.len())].to_string()
                })
                .filter(|s| s.len() >= MIN_SECRET_LEN)
                .collect();
            secrets.push(apart);
            let mut text = String::new();
            let last = pieces.len() - 1;
            for (n, (which, len, filler)) in pieces.iter().enumerate() {
                let secret = &secrets[which % secrets.len()];
                text.push_str(&secret[..(*len).min(secret.len())]);
                if n != last {
                    text.push_str(filler);
                }
            }
            let whole = Masker::new(&secrets).mask_str(&text);
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|c| *c <= text.len()).collect();
            cuts.push(0);
            cuts.push(text.len());
            cuts.sort_unstable();
            let mut m = Masker::new(&secrets);
            let mut out = Vec::new();
            for pair in cuts.windows(2) {
                out.extend(m.push(&text.as_bytes()[pair[0]..pair[1]]));
            }
            out.extend(m.finish());
            let streamed = String::from_utf8(out).expect("utf-8");
            proptest::prop_assert_eq!(&streamed, &whole);
            for s in &secrets {
                proptest::prop_assert!(!whole.contains(s.as_str()), "{} left in {}", s, whole);
            }
        }
    }

    /// The longest secret wins also when a write ends right after a shorter one: masking the
    /// shorter at once left the rest of the longer in the log.
    #[test]
    fn a_write_ending_after_a_short_secret_waits_for_the_longer_one() {
        let mut m = Masker::new(["hunter2x", "hunter2x-api-key-0042"]);
        let mut out = m.push(b"key: hunter2x");
        out.extend(m.push(b"-api-key-0042 ok"));
        out.extend(m.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "key: [MASKED] ok");
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let m = Masker::new(["hunter22"]);
        assert!(!format!("{m:?}").contains("hunter22"));
    }
}
