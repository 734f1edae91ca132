//! What the loader is given: a [`Loader`] for the files and [`LoadOptions`].

use crate::limits::Limits;

/// Where wharf-ci gets file contents from. Paths are project-relative: as given for the main file,
/// or as written in `include:local` (without its leading `/`).
pub trait Loader {
    fn load(&self, path: &str) -> Result<String, std::io::Error>;

    /// Every file of the project, as project-relative paths with `/` separators. Needed for
    /// `include:local` wildcards and `include` `rules:exists`; loaders that cannot list files
    /// keep this default, and those features then report that they are unavailable.
    fn list_files(&self) -> Result<Vec<String>, std::io::Error> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "this loader cannot list project files",
        ))
    }
}

/// What loading may depend on besides the files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Variables known before the pipeline is read (CLI `--variable`s, the variables file,
    /// predefined `CI_*`); of two entries with one name, the later wins. `include`
    /// `rules:if` and `$VAR`s in include paths see these, as GitLab's includes see project and
    /// predefined variables (not the pipeline's own `variables:`).
    pub variables: Vec<(String, String)>,
    /// Names among `variables` whose values are secret: `expand_vars` in an input refuses
    /// them, as GitLab does, so a secret never lands in job names or scripts.
    pub masked: Vec<String>,
    /// GitLab's bounds on the configuration ([`Limits::default`]); a pipeline beyond them is
    /// refused with an error that names the limit.
    pub limits: Limits,
}
