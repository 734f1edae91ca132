//! RE2's pattern syntax in the `regex` crate's. GitLab compiles a pipeline's patterns (`coverage:`,
//! `=~` in `rules: if:`, `only: refs` patterns, an input's `regex:`) with RE2, through
//! `Gitlab::UntrustedRegexp`. The two syntaxes are nearly one, but RE2 reads some text
//! literally where the crate refuses it or reads it another way:
//! - a `{` that does not start a repetition (`{n}`, `{n,}`, `{n,m}`): `/"pct": {(\d+)/`, `/{skip}/`;
//! - `\Q...\E`, which quotes everything between;
//! - inside a character class, a `[` that does not start `[:name:]`, and `&&`, `--`, `~~`
//!   (set operations in the crate, literal characters in RE2);
//! - `\d`, `\w`, `\s`, `\b` and their negations, ASCII in RE2 and Unicode in the crate.
//!
//! [`to_rust`] rewrites those into the crate's escapes and ASCII sets, so a pattern GitLab takes compiles here
//! and matches the same text.

/// `pattern` (RE2 syntax) written for the `regex` crate.
pub fn to_rust(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1) == Some(&'Q') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '\\' && chars.get(i + 1) == Some(&'E')) {
                    let mut buf = [0; 4];
                    out.push_str(&regex::escape(chars[i].encode_utf8(&mut buf)));
                    i += 1;
                }
                i += 2; // past `\E` (or the end: RE2 quotes to the end without one)
                continue;
            }
            '\\' => {
                let next = chars.get(i + 1).copied();
                match next.and_then(|n| ascii_class(n, in_class)) {
                    Some(set) => out.push_str(set),
                    None => {
                        out.push(c);
                        out.extend(next);
                    }
                }
                i += 2;
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                // A `]` first in a class is one of its characters.
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
                continue;
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                // `[:alpha:]` inside a class: the same in both.
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == ':' && chars[j + 1] == ']');
                match end {
                    Some(end) => {
                        out.extend(&chars[i..end + 2]);
                        i = end + 2;
                    }
                    None => {
                        out.push_str("\\[");
                        i += 1;
                    }
                }
                continue;
            }
            '[' => out.push_str("\\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '-' if in_class && chars.get(i + 1) == Some(&'-') => out.push_str("\\-"),
            '{' if !in_class => match repetition_len(&chars[i..]) {
                Some(len) => {
                    out.extend(&chars[i..i + len]);
                    i += len;
                    continue;
                }
                None => out.push_str("\\{"),
            },
            '}' if !in_class => out.push_str("\\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// What RE2's Perl classes and word boundaries mean, in the crate's syntax: RE2 reads `\d`,
/// `\w`, `\s` and `\b` as ASCII (`[0-9]`, `[0-9A-Za-z_]`, `[\t\n\f\r ]`), the crate as
/// Unicode, so `\d` would match `٣` and `\w` `é` where GitLab's do not. Inside a class the
/// set is written as a nested class, which the crate unites with the rest.
fn ascii_class(letter: char, in_class: bool) -> Option<&'static str> {
    Some(match (letter, in_class) {
        ('d', _) => "[0-9]",
        ('D', _) => "[^0-9]",
        ('w', _) => "[0-9A-Za-z_]",
        ('W', _) => "[^0-9A-Za-z_]",
        ('s', _) => r"[\t\n\x0C\r ]",
        ('S', _) => r"[^\t\n\x0C\r ]",
        ('b', false) => r"(?-u:\b)",
        ('B', false) => r"(?-u:\B)",
        _ => return None,
    })
}

/// The length of the repetition `{n}`, `{n,}` or `{n,m}` that `text` starts with, if it does
/// (RE2's `MaybeParseRepeat`: anything else is a literal `{`).
fn repetition_len(text: &[char]) -> Option<usize> {
    let digits = |from: usize| {
        text[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut at = 1;
    let min = digits(at);
    if min == 0 {
        return None;
    }
    at += min;
    if text.get(at) == Some(&',') {
        at += 1;
        at += digits(at);
    }
    (text.get(at) == Some(&'}')).then_some(at + 1)
}

/// Why RE2 refuses `pattern` where the `regex` crate would take it, if it does: a repetition
/// of a repetition (`a**`, `a+*`; `a*?` is lazy and fine), a count over RE2's 1000
/// (`a{1001}`), a flag RE2 does not have (`(?x)`: it knows `i`, `m`, `s`, `U`).
pub fn refused(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut in_class = false;
    let mut i = 0;
    // Where the last repetition operator ended, to see one follow it.
    let mut after_repetition = None;
    while i < chars.len() {
        let c = chars[i];
        if in_class {
            match c {
                '\\' => i += 1,
                ']' => in_class = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let repetition = match c {
            '*' | '+' | '?' => Some(1),
            '{' => repetition_len(&chars[i..]),
            _ => None,
        };
        if let Some(len) = repetition {
            if after_repetition == Some(i) {
                let op: String = chars[i..i + len].iter().collect();
                return Some(format!("bad repetition operator: {op}"));
            }
            if c == '{' {
                let counts: String = chars[i + 1..i + len - 1].iter().collect();
                if counts
                    .split(',')
                    .any(|n| n.parse::<u32>().is_ok_and(|n| n > 1000))
                {
                    return Some(format!("bad repetition operator: {{{counts}}}"));
                }
            }
            i += len;
            // A lazy `?` belongs to the operator.
            if chars.get(i) == Some(&'?') {
                i += 1;
            }
            after_repetition = Some(i);
            continue;
        }
        match c {
            '\\' if chars.get(i + 1) == Some(&'Q') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '\\' && chars.get(i + 1) == Some(&'E')) {
                    i += 1;
                }
                i += 2;
                continue;
            }
            '\\' => i += 1,
            '[' => {
                in_class = true;
                if chars.get(i + 1) == Some(&'^') {
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    i += 1;
                }
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                let flags: String = chars[i + 2..]
                    .iter()
                    .take_while(|f| f.is_ascii_alphabetic() || **f == '-')
                    .collect();
                let ends = matches!(chars.get(i + 2 + flags.len()), Some(')' | ':'));
                let named = flags.starts_with('P') || chars.get(i + 2) == Some(&'<');
                if ends && !named {
                    if let Some(f) = flags.chars().find(|f| !"imsU-".contains(*f)) {
                        return Some(format!("invalid or unsupported Perl syntax: (?{f}"));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `(body, flags)` of `text` written `/body/flags` (flags among `imsU`), as GitLab's
/// `RubySyntax` tells a pattern from a name: the body runs to the last `/`.
pub fn ruby_syntax(text: &str) -> Option<(&str, &str)> {
    text.strip_prefix('/')
        .and_then(|t| t.rsplit_once('/'))
        .filter(|(_, flags)| flags.chars().all(|f| "ismU".contains(f)))
}

/// `body` (RE2 syntax) with Ruby's `flags` (`imsU`, written `/body/flags`) as the `regex`
/// crate's source, `(?flags)` in front; `Err` is why RE2 refuses it (see [`refused`]).
pub fn rust_source(body: &str, flags: &str) -> Result<String, String> {
    if let Some(why) = refused(body) {
        return Err(why);
    }
    let body = to_rust(body);
    Ok(if flags.is_empty() {
        body
    } else {
        format!("(?{flags}){body}")
    })
}

/// `pattern` (RE2 syntax) compiled; `Err` says why RE2 or the crate refuses it.
pub fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&rust_source(pattern, "")?).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_re2_reads_literally_is_escaped_and_the_rest_kept() {
        for (re2, rust) in [
            (r#""pct": {(\d+)"#, r#""pct": \{([0-9]+)"#),
            ("{skip}", r"\{skip\}"),
            ("a{,5}", r"a\{,5\}"),
            ("a{2", r"a\{2"),
            ("a{2}b{1,}c{3,4}", "a{2}b{1,}c{3,4}"),
            (r"\Qa.b\E+", r"a\.b+"),
            (r"\Qa{b", r"a\{b"),
            ("[[]", r"[\[]"),
            ("[]a]", r"[\]a]"),
            ("[^]a]", r"[^\]a]"),
            ("[[:alpha:]x]", "[[:alpha:]x]"),
            ("[a-z&&b]", r"[a-z\&\&b]"),
            ("[a~~b]", r"[a\~\~b]"),
            (r"\{\}\[", r"\{\}\["),
            (r"^v\d+\.\d+$", r"^v[0-9]+\.[0-9]+$"),
            (r"[\w.-]+\s\bx", r"[[0-9A-Za-z_].-]+[\t\n\x0C\r ](?-u:\b)x"),
            (
                r"[^\D]\S\W\B",
                r"[^[^0-9]][^\t\n\x0C\r ][^0-9A-Za-z_](?-u:\B)",
            ),
            (r"\.\\d", r"\.\\d"),
        ] {
            assert_eq!(to_rust(re2), rust, "{re2}");
            assert!(compile(re2).is_ok(), "{re2} -> {rust}");
        }
    }

    #[test]
    fn what_re2_refuses_is_refused_though_the_crate_takes_it() {
        for (pattern, why) in [
            ("a**", "bad repetition operator: *"),
            ("a+*", "bad repetition operator: *"),
            ("a*??", "bad repetition operator: ?"),
            ("a{2}{3}", "bad repetition operator: {3}"),
            ("a{1001}", "bad repetition operator: {1001}"),
            ("a{1,1001}", "bad repetition operator: {1,1001}"),
            ("(?x)a b", "invalid or unsupported Perl syntax: (?x"),
            ("(?ix:a)", "invalid or unsupported Perl syntax: (?x"),
        ] {
            assert_eq!(refused(pattern).as_deref(), Some(why), "{pattern}");
            assert!(
                regex::Regex::new(&to_rust(pattern)).is_ok(),
                "the crate takes {pattern}"
            );
        }
        for fine in [
            "a*?", "a+?b", "a??", "a{2}?", "a{1000}", "(?i)a", "(?-s:a.)", "(?P<n>a)", "(?<n>a)",
            "(?:a)*", r"\**", "[*+]+", r"\Qa**\E", "x{skip}*",
        ] {
            assert_eq!(refused(fine), None, "{fine}");
            assert!(compile(fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn the_translation_matches_what_re2_matches() {
        let m = |re: &str, text: &str| compile(re).unwrap().is_match(text);
        assert!(m(r#""pct": {(\d+)"#, r#"{"pct": {93"#));
        assert!(m("{skip}", "ci {skip} please"));
        assert!(!m("{skip}", "ci skip"));
        assert!(m(r"\Qa.b\E", "a.b") && !m(r"\Qa.b\E", "axb"));
        assert!(m("[a&]", "&") && m("[[]", "["));
        assert!(m("x{2}", "xx") && !m("^x{2}$", "x"));
    }

    #[test]
    fn perl_classes_and_word_boundaries_are_ascii_as_in_re2() {
        let m = |re: &str, text: &str| compile(re).unwrap().is_match(text);
        // RE2: `\d` is [0-9], `\w` [0-9A-Za-z_], `\s` [\t\n\f\r ], `\b` between ASCII word
        // characters and the rest; the `regex` crate's are Unicode.
        assert!(m(r"^\d+$", "42") && !m(r"^\d+$", "٤٢"));
        assert!(m(r"^\w+$", "abc_9") && !m(r"^\w+$", "café"));
        assert!(m(r"^\W$", "é") && m(r"^\D$", "٣"));
        assert!(m(r"^\s$", "\x0C") && !m(r"^\s$", "\u{a0}") && !m(r"^\s$", "\x0B"));
        assert!(m(r"^\S$", "\u{a0}"));
        assert!(m(r"\bfoo", "éfoo") && !m(r"\Bfoo", "éfoo"));
        assert!(m(r"^[\d.]+$", "1.2") && !m(r"^[\d.]+$", "١.٢"));
        assert!(m(r"^[^\w]$", "é") && !m(r"^[^\w]$", "e"));
        assert!(m(r"(?i)^\w+$", "ABC") && m(r"^\d+\s\w$", "12 x"));
    }
}
