//! The pipeline model that wharf-run executes. Everything here is already merged (anchors, merge
//! keys, `extends`, `default:`) and validated; variable *values* are still unexpanded, because
//! expansion depends on the runtime (CLI variables, predefined variables).

pub use crate::span::Span;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Stage names in order (GitLab's default: build, test, deploy; `.pre`/`.post` added).
    pub stages: Vec<String>,
    /// Global `variables:` in file order.
    pub variables: Vec<Variable>,
    /// Visible jobs (hidden `.name` jobs removed), in file order.
    pub jobs: Vec<Job>,
    /// `workflow:` (`None` when absent).
    pub workflow: Option<Workflow>,
    /// Every file `include:` merged in (nested ones too), in the order they were read.
    pub includes: Vec<IncludedFile>,
}

/// A file merged into the pipeline by `include:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludedFile {
    /// Its name as spans carry it: a project path, a URL, or `<project>@<ref>:<file>`.
    pub name: String,
    /// The files that led to it, from the main file to the one whose `include:` names it.
    pub via: Vec<String>,
}

impl Pipeline {
    /// How `file` came into the pipeline (`None`: the main file, or a file not included).
    pub fn included(&self, file: &str) -> Option<&IncludedFile> {
        self.includes.iter().find(|i| i.name == file)
    }
}

impl IncludedFile {
    /// `<name>, included by <main> -> ... -> <includer>`: where a job of this file came from.
    pub fn describe(&self) -> String {
        format!("{}, included by {}", self.name, self.via.join(" -> "))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workflow {
    pub name: Option<String>,
    pub rules: Vec<Rule>,
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
    /// A need of a `parallel:` job is already replaced by one need per instance (`test 1/2`,
    /// `test 2/2`), so every name here is the name of a job in [`Pipeline::jobs`].
    pub needs: Option<Vec<Need>>,
    /// `dependencies:`; `None` when absent (all artifacts of earlier stages). Like `needs`,
    /// names of `parallel:` jobs are replaced by their instances' names.
    pub dependencies: Option<Vec<String>>,
    /// Keywords that are valid GitLab but not acted on yet, with where they are written, so the
    /// runner can say so instead of silently ignoring them.
    pub unsupported: Vec<(String, Span)>,
    /// `services:` in order.
    pub services: Vec<Service>,
    /// `rules:` in order; empty when the job has none.
    pub rules: Vec<Rule>,
    /// `only:` / `except:` (`None` when absent). GitLab's default for a job with neither and no
    /// rules is `only: [branches, tags]`, which is always true locally.
    pub only: Option<OnlyExcept>,
    pub except: Option<OnlyExcept>,
    /// `allow_failure: {exit_codes: [...]}`: only these exit codes are allowed to fail
    /// (`allow_failure` is then `false`: any other failure fails the pipeline).
    pub allow_failure_exit_codes: Vec<i64>,
    /// `when: delayed` + `start_in`.
    pub start_in: Option<std::time::Duration>,
    /// `retry:` (max 0-2, `when` failure reasons, `exit_codes`; see [`Retry`]).
    pub retry: Retry,
    /// `timeout:`; `None` = the runner default (GitLab: 1 h).
    pub timeout: Option<std::time::Duration>,
    pub interruptible: bool,
    pub tags: Vec<String>,
    /// `coverage:` regex (without the slashes).
    pub coverage: Option<String>,
    /// `environment:` name (recorded only).
    pub environment: Option<String>,
    /// `environment: url` (sets `CI_ENVIRONMENT_URL`).
    pub environment_url: Option<String>,
    /// Jobs of one resource group never run at once.
    pub resource_group: Option<String>,
    /// `parallel:`: set on each expanded instance (`job 1/3`, `job: [a, b]`).
    pub parallel: Option<ParallelInstance>,
    /// `trigger:` with local includes: a child pipeline.
    pub trigger: Option<Trigger>,
    /// `inherit: variables:`: which global `variables:` the job sees. `None` = all of them
    /// (GitLab's default), `Some(names)` = only those (`inherit: variables: false` gives an empty
    /// list). `inherit: default:` is already applied to the job's fields.
    pub inherit_variables: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub job: String,
    /// `artifacts: false` turns off downloading its artifacts.
    pub artifacts: bool,
    /// `optional: true`: fine if the job is not in the pipeline.
    pub optional: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub alias: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    /// Visible to this service only.
    pub variables: Vec<Variable>,
    pub pull_policy: Vec<PullPolicy>,
    pub span: Span,
}

/// One entry of `rules:` (job or `workflow:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The `if:` expression source, unparsed here (see `expr`); evaluated at run time, when the
    /// variables are known.
    pub if_expr: Option<String>,
    pub changes: Option<Vec<String>>,
    /// `changes: {compare_to: ref}`: compare with this ref instead of the pipeline's default.
    pub changes_compare_to: Option<String>,
    pub exists: Option<Vec<String>>,
    pub when: Option<When>,
    pub allow_failure: Option<bool>,
    pub variables: Vec<Variable>,
    pub needs: Option<Vec<Need>>,
    pub start_in: Option<std::time::Duration>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OnlyExcept {
    /// Branch/tag names, `/regex/`, or keywords (`branches`, `tags`, `merge_requests`...).
    pub refs: Vec<String>,
    /// Expressions, all of which must hold (for `only`).
    pub variables: Vec<String>,
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Retry {
    pub max: u32,
    /// Failure reasons (`script_failure`, `runner_system_failure`, `always`...).
    pub when: Vec<String>,
    /// `exit_codes:` (GitLab 16.10+): a failure whose script exit code is listed is retried too.
    /// `None` when absent. GitLab's rule: without both `when` and `exit_codes` every failure is
    /// retried; with either, a failure is retried when its reason is in `when` OR its exit code
    /// is in `exit_codes` (`exit_codes` alone means `when` is empty, not `always`).
    pub exit_codes: Option<Vec<i64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParallelInstance {
    /// The job's name as written (what `needs:` of other jobs named; those needs are already
    /// expanded to every instance, or with `needs: {job, parallel: {matrix}}` to the named ones).
    pub base_name: String,
    /// 1-based, for `CI_NODE_INDEX`.
    pub index: u32,
    /// `CI_NODE_TOTAL`.
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// `include:` local files of the child pipeline, in order.
    pub include: Vec<TriggerInclude>,
    /// `strategy: depend`: the trigger job mirrors the child pipeline's status.
    pub depend: bool,
    pub span: Span,
}

impl Trigger {
    /// The child pipeline's files, in order.
    pub fn files(&self) -> Vec<&str> {
        self.include.iter().map(|i| i.path.as_str()).collect()
    }
}

/// One `trigger: include:` file of a child pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerInclude {
    /// Project-relative, without a leading `/`.
    pub path: String,
    /// Where the path is written in the parent pipeline.
    pub span: Span,
    /// The entry's `inputs:`, for the child file's `spec: inputs:` header.
    pub inputs: Option<TriggerInputs>,
}

/// The `inputs:` of a `trigger: include:` entry, as written (with the parent's own
/// `$[[ inputs.X ]]` already interpolated). Kept as written YAML with its places, because the
/// values are checked only when the child pipeline is loaded ([`crate::load_child_pipeline`]),
/// against the child file's header, and errors point at the parent file.
#[derive(Debug, Clone)]
pub struct TriggerInputs {
    /// Where `inputs:` is written.
    pub(crate) key_span: Span,
    pub(crate) value: Written,
}

impl TriggerInputs {
    /// Where `inputs:` is written.
    pub fn span(&self) -> &Span {
        &self.key_span
    }

    /// The values as written.
    pub fn value(&self) -> &Written {
        &self.value
    }
}

impl PartialEq for TriggerInputs {
    /// Equal values (places aside), as for GitLab's duplicate include detection.
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for TriggerInputs {}

/// A YAML value as written in the pipeline, with its place: what the model keeps of YAML that
/// is interpreted later (a child pipeline's `inputs:`).
#[derive(Debug, Clone)]
pub struct Written {
    pub span: Span,
    pub value: WrittenValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WrittenValue {
    Null,
    /// A scalar as written; `plain` is false for quoted and block scalars (always strings).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Written>),
    /// Keys in file order, each with where it is written.
    Map(Vec<(String, Span, Written)>),
    /// A non-core tag such as `!reference`, with the tagged value.
    Tagged(String, Box<Written>),
}

impl PartialEq for Written {
    /// Equal values, places aside (also the places of map keys).
    fn eq(&self, other: &Self) -> bool {
        match (&self.value, &other.value) {
            (WrittenValue::Map(a), WrittenValue::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, _, va), (kb, _, vb))| ka == kb && va == vb)
            }
            (a, b) => a == b,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Unexpanded image name (`$VAR` allowed).
    pub name: String,
    /// `entrypoint:`; `Some(vec![""])` clears the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// `pull_policy:` (one or a list), in order.
    pub pull_policy: Vec<PullPolicy>,
    /// `docker: {user}`.
    pub docker_user: Option<String>,
    /// `docker: {platform}`.
    pub docker_platform: Option<String>,
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
    /// Unexpanded key; GitLab's default is `default`. With `key: {files, prefix}` this is the
    /// prefix (empty without `prefix:`).
    pub key: String,
    /// `key: {files: [...]}` (one or two files): the key is a hash of these files' contents,
    /// after `key` (the prefix) and a `-` when there is a prefix. GitLab uses `default` (with
    /// the prefix) when none of the files exists.
    pub key_files: Vec<String>,
    /// `fallback_keys:` (at most 5), tried in order when `key` has no cache.
    pub fallback_keys: Vec<String>,
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
    /// `reports: dotenv` files: their variables feed later jobs.
    pub reports_dotenv: Vec<String>,
    /// Other `reports:` (junit, coverage_report...): kept as files with the artifacts.
    pub reports_other: Vec<String>,
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

/// GitLab's longest variable name.
pub const MAX_VARIABLE_NAME_LEN: usize = 255;

/// GitLab's variable-name grammar (`Ci::HasVariable`): ASCII letters, digits and `_`, 1 to 255
/// of them. File-type variables become file names, so this is also what keeps them in their
/// folder.
pub fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_VARIABLE_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
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
