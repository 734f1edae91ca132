//! The pipeline model that wharf-run executes. Everything here is already merged (anchors, merge
//! keys, `extends`, `default:`) and validated; variable *values* are still unexpanded, because
//! expansion depends on the runtime (CLI variables, predefined variables).

use std::fmt;

/// A place in a source file. `line` and `column` are 1-based; `column` counts characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Span {
    /// The path as given to the loader (relative to the project folder when it came from there).
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Byte offset of the start in the file's text.
    pub offset: usize,
    /// Length in bytes (0 when unknown).
    pub len: usize,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Stage names in order (GitLab's default: build, test, deploy; `.pre`/`.post` added).
    pub stages: Vec<String>,
    /// Global `variables:` in file order.
    pub variables: Vec<Variable>,
    /// Visible jobs (hidden `.name` jobs removed), in file order.
    pub jobs: Vec<Job>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub value: String,
    /// `expand: false` turns this off: `$` in the value is then literal.
    pub expand: bool,
    pub span: Option<Span>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    /// Where the job's key is written.
    pub span: Span,
    pub stage: String,
    pub image: Option<Image>,
    pub before_script: Vec<String>,
    pub script: Vec<String>,
    pub after_script: Vec<String>,
    /// Job-level `variables:` in file order (after `extends`/`default` merging).
    pub variables: Vec<Variable>,
    pub cache: Vec<Cache>,
    pub artifacts: Option<Artifacts>,
    pub when: When,
    pub allow_failure: bool,
    /// `needs:`; `None` when absent (stage ordering applies), `Some(vec![])` for `needs: []`.
    pub needs: Option<Vec<String>>,
    /// `dependencies:`; `None` when absent (all artifacts of earlier stages).
    pub dependencies: Option<Vec<String>>,
    /// Keywords that are valid GitLab but not acted on yet, with where they are written, so the
    /// runner can say so instead of silently ignoring them.
    pub unsupported: Vec<(String, Span)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Unexpanded image name (`$VAR` allowed).
    pub name: String,
    /// `entrypoint:`; `Some(vec![""])` clears the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// `pull_policy:` (one or a list), in order.
    pub pull_policy: Vec<PullPolicy>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "always" => Some(Self::Always),
            "if-not-present" => Some(Self::IfNotPresent),
            "never" => Some(Self::Never),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::IfNotPresent => "if-not-present",
            Self::Never => "never",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    /// Unexpanded key; GitLab's default is `default`.
    pub key: String,
    pub paths: Vec<String>,
    pub untracked: bool,
    pub policy: CachePolicy,
    pub when: CacheWhen,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    PullPush,
    Pull,
    Push,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheWhen {
    OnSuccess,
    OnFailure,
    Always,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifacts {
    pub paths: Vec<String>,
    pub exclude: Vec<String>,
    pub untracked: bool,
    pub when: CacheWhen,
    pub name: Option<String>,
    pub expire_in: Option<String>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    OnSuccess,
    OnFailure,
    Always,
    Manual,
    Delayed,
    Never,
}

/// One entry of a `--variables-file`.
#[derive(Clone, PartialEq, Eq)]
pub struct FileVariable {
    pub name: String,
    pub value: String,
    /// `masked: true`: replaced by `[MASKED]` in every log.
    pub masked: bool,
    /// `type: file`: the job sees a path to a file holding the value.
    pub file: bool,
}

impl fmt::Debug for FileVariable {
    // Values may be secrets: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileVariable")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("masked", &self.masked)
            .field("file", &self.file)
            .finish()
    }
}
