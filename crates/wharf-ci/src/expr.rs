//! GitLab's CI/CD variable expressions: the language of `rules:if`, `workflow:rules:if` and
//! `only/except:variables`.
//!
//! The grammar is GitLab's (docs: "CI/CD variable expressions" in `ci/jobs/job_rules.md`, and the
//! lexer in `lib/gitlab/ci/pipeline/expression/`):
//!
//! ```text
//! expr    := and ( "||" and )*
//! and     := compare ( "&&" compare )*
//! compare := "(" expr ")" | operand [ ("==" | "!=") operand | ("=~" | "!~") target ]
//! operand := $NAME | "text" | 'text' | null
//! target  := /pattern/flags | operand
//! ```
//!
//! `&&` binds tighter than `||`, both are left-associative, and whitespace between tokens is
//! optional. A variable name is `$` followed by ASCII letters, digits and `_` (Ruby's `\w`).
//! Strings have no escapes: `"..."` may hold `'` and `'...'` may hold `"`, neither may span lines.
//! A pattern is `/.../` with optional flags `i`, `m`, `s`, `U`, lexed exactly as GitLab does
//! (`\/` is a slash inside it; a one-character pattern such as `/./` is a syntax error, as GitLab
//! documents), compiled as RE2 syntax by the `regex` crate, and matched unanchored: anchors only
//! where written. GitLab accepts at most 99 tokens (its lexer stops at 100); so does this parser,
//! which also bounds the nesting depth.
//!
//! Evaluation, following GitLab's documentation and, where it is silent, its implementation:
//! - `$VAR` alone is true when the variable is defined and not blank. Blank is Rails' `blank?`:
//!   empty or whitespace only (the docs say "defined and not empty").
//! - `==` / `!=` compare values, where an undefined variable is `null`: `$UNDEF == null` is true,
//!   `$UNDEF == ""` is false, `$EMPTY == ""` is true and `$EMPTY == null` is false.
//! - `=~` / `!~` match the left value (an undefined variable as `""`) against a pattern. When the
//!   right side is a variable (or a string), its value is the pattern if it has the form
//!   `/pattern/flags` and compiles; variables inside it are not expanded. If the value is not
//!   such a pattern, GitLab checks whether the left value is a *substring* of the right one (its
//!   docs, "Troubleshooting": `"23" =~ "1234"` is true); wharf does the same. An undefined right
//!   variable makes `=~` false and `!~` true.
//! - `&&` and `||` are logical and/or of their operands' truth as defined above. This is what the
//!   docs describe; GitLab itself evaluates them with Ruby's `&&`/`||` on raw values, so that a
//!   defined-but-empty variable counts as true *inside* `&&`/`||` (gitlab-org/gitlab#321371 and
//!   #463528, open bugs). wharf follows the documentation, not the bug.
//!
//! Where wharf is stricter than GitLab (each is a parse error with a fix in the message):
//! `${NAME}` (GitLab's lexer rejects it too, with "unknown lexeme"), `true`/`false` (GitLab lexes
//! them for `inputs`, but a variable, always a string, never equals them), a pattern anywhere but
//! on the right of `=~`/`!~`, and chained comparisons such as `$A == $B == $C`.
//!
//! Known difference: the `regex` crate's `\w`, `\d`, `\s` and `\b` are Unicode-aware, RE2's are
//! ASCII-only; they differ only on non-ASCII text.

use regex::Regex;
use std::fmt;
use std::sync::LazyLock;

/// GitLab's lexer gives up at its 100th token (`MAX_TOKENS = 100`, checked after the loop).
pub const MAX_TOKENS: usize = 99;

/// A parsed expression. `Display` prints a canonical form that parses back to the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A value alone: true when it is defined and not blank (`$VAR`).
    Value(Operand),
    /// `left == right` (or `!=` when `negated`).
    Compare {
        left: Operand,
        negated: bool,
        right: Operand,
    },
    /// `left =~ right` (or `!~` when `negated`).
    Match {
        left: Operand,
        negated: bool,
        right: MatchTarget,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// `$NAME` (the name without `$`).
    Variable(String),
    /// A quoted string literal (without its quotes).
    String(String),
    Null,
}

/// What `=~` / `!~` match against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchTarget {
    Pattern(Pattern),
    /// A variable (or string) whose value is used as `/pattern/flags` (see the module docs).
    Value(Operand),
}

/// A compiled `/pattern/flags`.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The lexeme as written, slashes and flags included (`/^v\d+/i`).
    written: String,
    regex: Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.written == other.written
    }
}
impl Eq for Pattern {}

impl Pattern {
    /// The pattern as written, with slashes and flags.
    pub fn as_str(&self) -> &str {
        &self.written
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }

    /// GitLab's `RubySyntax.fabricate`: `\/` becomes `/`, then the text must be
    /// `/body/flags` on one line; the body is compiled with the flags as `(?flags)body`.
    /// `Err` holds why it is not a pattern.
    pub(crate) fn compile(written: &str) -> Result<Self, String> {
        // `(?m)`: Ruby's `^`/`$` are line anchors and its `.` stops at newlines.
        static RUBY_SYNTAX: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"(?m)^/(.*)/([ismU]*)$").expect("constant regex is valid")
        });
        let unescaped = written.replace("\\/", "/");
        let caps = RUBY_SYNTAX
            .captures(&unescaped)
            .ok_or_else(|| "a regular expression must be written as /pattern/flags".to_string())?;
        let body = caps.get(1).map_or("", |m| m.as_str());
        let flags = caps.get(2).map_or("", |m| m.as_str());
        let source = crate::re2::rust_source(body, flags)
            .map_err(|why| format!("invalid regular expression {written}: {why}"))?;
        if let Some(regex) = COMPILED.with(|c| c.borrow().get(&source).cloned()) {
            return Ok(Self {
                written: written.to_string(),
                regex,
            });
        }
        let regex = Regex::new(&source).map_err(|e| {
            // The regex crate's messages span several lines with a caret diagram; the last
            // line says what is wrong.
            let text = e.to_string();
            let why = text.lines().last().unwrap_or("").trim();
            let why = why.strip_prefix("error: ").unwrap_or(why);
            format!("invalid regular expression {written}: {why}")
        })?;
        COMPILED.with(|c| {
            let mut compiled = c.borrow_mut();
            if compiled.len() >= COMPILED_MAX {
                compiled.clear();
            }
            compiled.insert(source, regex.clone())
        });
        Ok(Self {
            written: written.to_string(),
            regex,
        })
    }
}

// A pipeline repeats its patterns (rules copied by `extends`, anchors, `!reference`), and
// compiling one costs far more than parsing the rest of a job: each distinct source is compiled
// once per thread (a `Regex` clone shares the compiled program). Bounded: a process that loads
// pipeline after pipeline (or the fuzzer, which grew it past 2 GiB) starts over when full.
const COMPILED_MAX: usize = 1024;
thread_local! {
    static COMPILED: std::cell::RefCell<std::collections::HashMap<String, Regex>> =
        std::cell::RefCell::default();
}

/// A syntax error: where (0-based character column in the expression) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {})", .column + 1)]
pub struct ExprError {
    /// 0-based column in characters.
    pub column: usize,
    pub message: String,
}

fn err<T>(column: usize, message: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError {
        column,
        message: message.into(),
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Var(String),
    Str(String),
    Pattern(Pattern),
    Null,
    Eq,
    Ne,
    Match,
    NotMatch,
    And,
    Or,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Open => "`(`".into(),
            Tok::Close => "`)`".into(),
            Tok::Var(n) => format!("`${n}`"),
            Tok::Str(s) => format!("the string {}", quote(s)),
            Tok::Pattern(p) => format!("the regular expression `{}`", p.written),
            Tok::Null => "`null`".into(),
            Tok::Eq => "`==`".into(),
            Tok::Ne => "`!=`".into(),
            Tok::Match => "`=~`".into(),
            Tok::NotMatch => "`!~`".into(),
            Tok::And => "`&&`".into(),
            Tok::Or => "`||`".into(),
        }
    }
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    /// 0-based character column.
    col: usize,
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Ruby's `\s`: space, \t, \n, \v, \f, \r.
fn is_ruby_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Splits `src` into tokens the way GitLab's lexer does, in its lexeme order.
fn lex(src: &str) -> Result<Vec<Token>, ExprError> {
    // GitLab's Pattern lexeme, anchored at the scan position.
    static PATTERN_LEXEME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^/(?:[^/]|\\/)+[^\\]/[ismU]*").expect("constant regex is valid")
    });
    // Byte offset -> char column, for error positions.
    let col_of = |byte: usize| src[..byte].chars().count();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &src[pos..];
        let trimmed = rest.trim_start_matches(is_ruby_space);
        pos += rest.len() - trimmed.len();
        let rest = trimmed;
        let Some(c) = rest.chars().next() else {
            return Ok(tokens);
        };
        let col = col_of(pos);
        if tokens.len() == MAX_TOKENS {
            return err(
                col,
                format!(
                    "the expression is too long: GitLab accepts at most {MAX_TOKENS} tokens (values, operators and parentheses)"
                ),
            );
        }
        let two = rest.get(..2).unwrap_or("");
        let (tok, len) = match c {
            '(' => (Tok::Open, 1),
            ')' => (Tok::Close, 1),
            '$' => {
                let name: String = rest[1..].chars().take_while(|&c| is_word(c)).collect();
                if name.is_empty() {
                    return err(col, dollar_error(&rest[1..]));
                }
                let len = 1 + name.len();
                (Tok::Var(name), len)
            }
            '"' | '\'' => {
                let body = &rest[1..];
                // Ruby's `.*?` stops at a newline: a string cannot span lines.
                let end = body.find([c, '\n']);
                match end {
                    Some(i) if body[i..].starts_with(c) => (Tok::Str(body[..i].to_string()), i + 2),
                    Some(_) => {
                        return err(
                            col,
                            format!("the string starting here has no closing {c} on its line"),
                        );
                    }
                    None => {
                        return err(col, format!("the string starting here has no closing {c}"));
                    }
                }
            }
            '/' => match PATTERN_LEXEME.find(rest) {
                Some(m) => match Pattern::compile(m.as_str()) {
                    Ok(p) => (Tok::Pattern(p), m.end()),
                    Err(message) => return err(col, message),
                },
                None => return err(col, slash_error(rest)),
            },
            _ if rest.starts_with("null") => (Tok::Null, 4),
            _ if word_at(rest, "true") || word_at(rest, "false") => {
                let word = if rest.starts_with("true") {
                    "true"
                } else {
                    "false"
                };
                return err(
                    col,
                    format!(
                        "`{word}` is not a value here: variables hold strings, write \"{word}\""
                    ),
                );
            }
            _ => match two {
                "==" => (Tok::Eq, 2),
                "=~" => (Tok::Match, 2),
                "!=" => (Tok::Ne, 2),
                "!~" => (Tok::NotMatch, 2),
                "&&" => (Tok::And, 2),
                "||" => (Tok::Or, 2),
                _ => return err(col, unknown_error(c)),
            },
        };
        tokens.push(Token { tok, col });
        pos += len;
    }
}

/// `word` at the start of `rest`, not followed by a word character (Ruby's `\b`).
fn word_at(rest: &str, word: &str) -> bool {
    rest.starts_with(word) && !rest[word.len()..].starts_with(is_word)
}

fn dollar_error(after: &str) -> String {
    if let Some(inner) = after.strip_prefix('{') {
        let name: String = inner.chars().take_while(|&c| is_word(c)).collect();
        if !name.is_empty() && inner[name.len()..].starts_with('}') {
            return format!("`${{{name}}}` is not valid in an expression: write `${name}`");
        }
    }
    if after.starts_with("[[") {
        // Interpolation runs before expressions are read; a block still here was in a file
        // without a `spec: inputs:` header, which GitLab leaves as written too.
        return "`$[[ ... ]]` is left as written: only a file with a `spec: inputs:` header (before `---`) interpolates its inputs".into();
    }
    "`$` must be followed by a variable name (letters, digits, `_`)".into()
}

fn slash_error(rest: &str) -> String {
    let mut chars = rest.chars();
    chars.next();
    match (chars.next(), chars.next()) {
        (Some(c), Some('/')) if c != '/' => {
            "one-character regular expressions like `/./` are not supported by GitLab: write for example `/^.$/` or `/(.)/`".into()
        }
        _ => "this `/` does not start a regular expression `/pattern/flags` (is the closing `/` missing?)"
            .into(),
    }
}

fn unknown_error(c: char) -> String {
    let hint = match c {
        '=' => " (did you mean `==` or `=~`?)",
        '!' => " (did you mean `!=` or `!~`?)",
        '&' => " (did you mean `&&`?)",
        '|' => " (did you mean `||`?)",
        _ => "",
    };
    format!("unexpected `{c}`{hint}")
}

/// Parse an expression. Every error carries the column where it was found.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let tokens = lex(src)?;
    if tokens.is_empty() {
        return err(0, "the expression is empty");
    }
    let mut p = Parser {
        tokens,
        pos: 0,
        end: src.chars().count(),
    };
    let expr = p.or()?;
    if let Some(t) = p.tokens.get(p.pos) {
        let message = match t.tok {
            Tok::Close => "unmatched `)`".to_string(),
            _ => format!(
                "expected `&&`, `||` or the end of the expression, found {}",
                t.tok.describe()
            ),
        };
        return err(t.col, message);
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Column just past the last character, for "expected X at the end" errors.
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn col(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |t| t.col)
    }

    fn next(&mut self) -> Option<&Token> {
        let t = self.tokens.get(self.pos);
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and_after("`||`")?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.compare()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.compare_after("`&&`")?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_after(&mut self, op: &str) -> Result<Expr, ExprError> {
        if self.peek().is_none() {
            return err(self.col(), format!("expected an expression after {op}"));
        }
        self.and()
    }

    fn compare_after(&mut self, op: &str) -> Result<Expr, ExprError> {
        if self.peek().is_none() {
            return err(self.col(), format!("expected an expression after {op}"));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, ExprError> {
        if self.peek() == Some(&Tok::Open) {
            let open = self.col();
            self.pos += 1;
            if self.peek() == Some(&Tok::Close) {
                return err(self.col(), "empty parentheses");
            }
            let inner = self.or()?;
            match self.peek() {
                Some(Tok::Close) => self.pos += 1,
                Some(t) => {
                    let found = t.describe();
                    return err(
                        self.col(),
                        format!("expected `)`, `&&` or `||`, found {found}"),
                    );
                }
                None => return err(open, "this `(` is never closed"),
            }
            if let Some(op @ (Tok::Eq | Tok::Ne | Tok::Match | Tok::NotMatch)) = self.peek() {
                let op = op.describe();
                return err(
                    self.col(),
                    format!("{op} needs a value on its left, not a parenthesised expression"),
                );
            }
            return Ok(inner);
        }
        let left = self.operand("an expression")?;
        let (negated, is_match) = match self.peek() {
            Some(Tok::Eq) => (false, false),
            Some(Tok::Ne) => (true, false),
            Some(Tok::Match) => (false, true),
            Some(Tok::NotMatch) => (true, true),
            _ => return Ok(Expr::Value(left)),
        };
        let op_col = self.col();
        let op = self.next().map(|t| t.tok.describe()).unwrap_or_default();
        let expected = format!("a value after {op}");
        let expr = if is_match {
            let right = match self.peek() {
                Some(Tok::Pattern(p)) => {
                    let p = p.clone();
                    self.pos += 1;
                    MatchTarget::Pattern(p)
                }
                _ => MatchTarget::Value(self.operand(&expected)?),
            };
            Expr::Match {
                left,
                negated,
                right,
            }
        } else {
            let right = self.operand(&expected)?;
            Expr::Compare {
                left,
                negated,
                right,
            }
        };
        if let Some(next @ (Tok::Eq | Tok::Ne | Tok::Match | Tok::NotMatch)) = self.peek() {
            let next = next.describe();
            return err(
                self.col(),
                format!(
                    "comparisons cannot be chained ({op} at character {} is followed by {next}): join them with `&&` or `||`",
                    op_col + 1
                ),
            );
        }
        Ok(expr)
    }

    /// A variable, string or `null`; `expected` names what was wanted, for the error.
    fn operand(&mut self, expected: &str) -> Result<Operand, ExprError> {
        let col = self.col();
        let Some(t) = self.tokens.get(self.pos) else {
            return err(
                col,
                format!("expected {expected}, found the end of the expression"),
            );
        };
        let operand = match &t.tok {
            Tok::Var(n) => Operand::Variable(n.clone()),
            Tok::Str(s) => Operand::String(s.clone()),
            Tok::Null => Operand::Null,
            Tok::Pattern(p) => {
                return err(
                    col,
                    format!(
                        "a regular expression can only follow `=~` or `!~`, found `{}`",
                        p.written
                    ),
                );
            }
            other => {
                let found = other.describe();
                return err(col, format!("expected {expected}, found {found}"));
            }
        };
        self.pos += 1;
        Ok(operand)
    }
}

impl Operand {
    fn value(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        match self {
            Operand::Variable(name) => lookup(name),
            Operand::String(s) => Some(s.clone()),
            Operand::Null => None,
        }
    }
}

/// Rails' `present?` for a string value: defined, and not empty or whitespace only.
fn present(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.chars().all(char::is_whitespace))
}

impl Expr {
    /// Evaluate with `lookup` giving variable values (`None`: not defined).
    pub fn evaluate(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Expr::Value(v) => present(v.value(lookup).as_deref()),
            Expr::Compare {
                left,
                negated,
                right,
            } => (left.value(lookup) == right.value(lookup)) != *negated,
            Expr::Match {
                left,
                negated,
                right,
            } => {
                let text = left.value(lookup).unwrap_or_default();
                let found = match right {
                    MatchTarget::Pattern(p) => p.is_match(&text),
                    MatchTarget::Value(v) => match v.value(lookup) {
                        // GitLab: `return false unless regexp` (`=~`), `return true ...` (`!~`).
                        None => return *negated,
                        Some(value) => match Pattern::compile(&value) {
                            Ok(p) => p.is_match(&text),
                            // Not a pattern: GitLab's String#scan, a substring test.
                            Err(_) => value.contains(text.as_str()),
                        },
                    },
                };
                found != *negated
            }
            Expr::And(a, b) => a.evaluate(lookup) && b.evaluate(lookup),
            Expr::Or(a, b) => a.evaluate(lookup) || b.evaluate(lookup),
        }
    }

    /// Names of the variables the expression reads, in order of appearance (with repeats).
    pub fn variables(&self) -> Vec<&str> {
        fn operand<'a>(o: &'a Operand, out: &mut Vec<&'a str>) {
            if let Operand::Variable(n) = o {
                out.push(n);
            }
        }
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
            match e {
                Expr::Value(v) => operand(v, out),
                Expr::Compare { left, right, .. } => {
                    operand(left, out);
                    operand(right, out);
                }
                Expr::Match { left, right, .. } => {
                    operand(left, out);
                    if let MatchTarget::Value(v) = right {
                        operand(v, out);
                    }
                }
                Expr::And(a, b) | Expr::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }
}

/// A string literal: double quotes unless the text holds one (no literal holds both).
fn quote(s: &str) -> String {
    if s.contains('"') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Variable(n) => write!(f, "${n}"),
            Operand::String(s) => f.write_str(&quote(s)),
            Operand::Null => f.write_str("null"),
        }
    }
}

impl fmt::Display for MatchTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchTarget::Pattern(p) => f.write_str(&p.written),
            MatchTarget::Value(v) => write!(f, "{v}"),
        }
    }
}

impl fmt::Display for Expr {
    /// Parentheses only where the tree differs from what precedence and left-associativity
    /// would give, so `parse(&e.to_string()) == Ok(e)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn grouped(f: &mut fmt::Formatter<'_>, e: &Expr, parens: bool) -> fmt::Result {
            if parens {
                write!(f, "({e})")
            } else {
                write!(f, "{e}")
            }
        }
        match self {
            Expr::Value(v) => write!(f, "{v}"),
            Expr::Compare {
                left,
                negated,
                right,
            } => write!(f, "{left} {} {right}", if *negated { "!=" } else { "==" }),
            Expr::Match {
                left,
                negated,
                right,
            } => write!(f, "{left} {} {right}", if *negated { "!~" } else { "=~" }),
            Expr::And(a, b) => {
                grouped(f, a, matches!(**a, Expr::Or(..)))?;
                f.write_str(" && ")?;
                grouped(f, b, matches!(**b, Expr::Or(..) | Expr::And(..)))
            }
            Expr::Or(a, b) => {
                write!(f, "{a} || ")?;
                grouped(f, b, matches!(**b, Expr::Or(..)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn var(n: &str) -> Operand {
        Operand::Variable(n.into())
    }

    /// Found by fuzzing (expr_parse ran out of 2 GiB after 350,000 distinct patterns): the
    /// cache of compiled patterns grew with every distinct one a process ever saw.
    #[test]
    fn the_compiled_pattern_cache_is_bounded() {
        for n in 0..COMPILED_MAX + 10 {
            parse(&format!("$A =~ /p{n}/")).unwrap();
        }
        let cached = COMPILED.with(|c| c.borrow().len());
        assert!(cached <= COMPILED_MAX, "{cached} patterns cached");
        // And the cache still serves: a pattern parsed again matches as before.
        let e = parse("$A =~ /p3/").unwrap();
        assert!(e.evaluate(&|_| Some("xp3".to_string())));
    }

    #[test]
    fn precedence_and_associativity() {
        let e = parse("$A || $B && $C").unwrap();
        assert_eq!(
            e,
            Expr::Or(
                Box::new(Expr::Value(var("A"))),
                Box::new(Expr::And(
                    Box::new(Expr::Value(var("B"))),
                    Box::new(Expr::Value(var("C")))
                ))
            )
        );
        let e = parse("$A && $B && $C").unwrap();
        assert!(matches!(&e, Expr::And(a, _) if matches!(**a, Expr::And(..))));
        assert_eq!(
            parse("($A || $B) && $C").unwrap().to_string(),
            "($A || $B) && $C"
        );
        assert_eq!(
            parse("$A && ($B && $C)").unwrap().to_string(),
            "$A && ($B && $C)"
        );
        assert_eq!(parse("(($A))").unwrap().to_string(), "$A");
    }

    #[test]
    fn lexes_like_gitlab() {
        // No whitespace needed; single and double quotes; the other quote inside.
        assert_eq!(
            parse(r#"$A=="x"&&$B!='it"s'"#).unwrap().to_string(),
            r#"$A == "x" && $B != 'it"s'"#
        );
        // `\/` inside a pattern; flags.
        let e = parse(r"$R =~ /^refs\/heads\/.+$/i").unwrap();
        assert!(e.evaluate(&|_| Some("REFS/heads/main".into())));
        assert_eq!(e.to_string(), r"$R =~ /^refs\/heads\/.+$/i");
        // Two-character patterns are fine, one-character ones are not (GitLab documents it).
        assert!(parse("$A =~ /ab/").is_ok());
        let e = parse("$A =~ /./").unwrap_err();
        assert_eq!(e.column, 6);
        assert!(e.message.contains("one-character"), "{e}");
    }
}
