//! GitLab's limits on a pipeline's configuration, applied by default so that a hostile or
//! runaway file is refused with a clear error instead of exhausting memory or the stack.
//!
//! The defaults are GitLab's own (self-managed defaults in `application_settings`, as of 17.3):
//! `max_yaml_size_bytes` 2 MiB, `max_yaml_depth` 100, `ci_max_includes` 150,
//! `ci_max_total_yaml_size_bytes` 314,572,800 (= 2 MiB x 150), and 2,000 jobs (GitLab.com's
//! `ci_pipeline_size`; self-managed instances leave it off unless an admin sets it).

/// Bounds on what one pipeline may contain. Every field is a maximum; see [`Limits::none`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Bytes of one YAML file (GitLab: `max_yaml_size_bytes`).
    pub max_yaml_bytes: usize,
    /// Nesting of maps and lists in one YAML file, the top-level map at depth 1
    /// (GitLab: `max_yaml_depth`). Capped at [`Limits::HARD_MAX_DEPTH`] in any case.
    pub max_yaml_depth: usize,
    /// Included files, nested and repeated ones too (GitLab: `ci_max_includes`).
    pub max_includes: usize,
    /// Bytes of every YAML file of the pipeline together (GitLab:
    /// `ci_max_total_yaml_size_bytes`).
    pub max_total_yaml_bytes: usize,
    /// Jobs in the pipeline, after `parallel:` expansion (GitLab: `ci_pipeline_size`).
    pub max_jobs: usize,
}

impl Limits {
    /// GitLab's `max_yaml_size_bytes` default.
    pub const GITLAB_MAX_YAML_BYTES: usize = 2 * 1024 * 1024;
    /// GitLab's `max_yaml_depth` default.
    pub const GITLAB_MAX_YAML_DEPTH: usize = 100;
    /// GitLab's `ci_max_includes` default.
    pub const GITLAB_MAX_INCLUDES: usize = 150;
    /// GitLab's `ci_max_total_yaml_size_bytes` default (`max_yaml_size_bytes` x `ci_max_includes`).
    pub const GITLAB_MAX_TOTAL_YAML_BYTES: usize = 314_572_800;
    /// GitLab.com's `ci_pipeline_size`.
    pub const GITLAB_MAX_JOBS: usize = 2_000;
    /// Nesting wharf never goes beyond, whatever is asked: the tree is walked recursively, and
    /// deeper input would exhaust the stack.
    pub const HARD_MAX_DEPTH: usize = 500;

    /// No limit beyond what protects wharf itself ([`Limits::HARD_MAX_DEPTH`], the alias
    /// expansion budget).
    pub fn none() -> Self {
        Self {
            max_yaml_bytes: usize::MAX,
            max_yaml_depth: Self::HARD_MAX_DEPTH,
            max_includes: usize::MAX,
            max_total_yaml_bytes: usize::MAX,
            max_jobs: usize::MAX,
        }
    }

    /// The depth actually enforced.
    pub(crate) fn depth(&self) -> usize {
        self.max_yaml_depth.min(Self::HARD_MAX_DEPTH)
    }
}

impl Default for Limits {
    /// GitLab's defaults.
    fn default() -> Self {
        Self {
            max_yaml_bytes: Self::GITLAB_MAX_YAML_BYTES,
            max_yaml_depth: Self::GITLAB_MAX_YAML_DEPTH,
            max_includes: Self::GITLAB_MAX_INCLUDES,
            max_total_yaml_bytes: Self::GITLAB_MAX_TOTAL_YAML_BYTES,
            max_jobs: Self::GITLAB_MAX_JOBS,
        }
    }
}

/// How to raise a limit, for the help line of the error that names it: the `wharf` flag.
pub(crate) fn raise_with(flag: &str) -> String {
    format!(
        "GitLab refuses such a pipeline too; if it is intended, raise the limit with `{flag}` (wharf run, lint, list and config take it)"
    )
}
