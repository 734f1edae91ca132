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

    /// A file outside the project (`include: remote/template/project/component`, and `local`
    /// includes inside a file of another project). Loaders without a GitLab instance or network
    /// keep this default, which refuses it.
    fn fetch(&self, file: &External) -> Result<Fetched, FetchFailure> {
        Err(FetchFailure {
            message: format!("{} is not available offline", file.describe()),
            help: Some(
                "wharf reads only files of the project: copy the file into the project and use `include: local`"
                    .into(),
            ),
        })
    }
}

/// A file an `include:` names outside the project being loaded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum External {
    /// `include: remote:` (or a bare URL): an `http(s)://` URL, variables expanded.
    Remote { url: String },
    /// `include: template:`: one of GitLab's templates by file name, e.g.
    /// `Jobs/Build.gitlab-ci.yml`.
    Template { name: String },
    /// `include: project:` (one per `file:`), and an `include: local` written inside a file of
    /// another project (GitLab reads it from that project at the same commit). `reference`:
    /// `ref:` (`None`: the project's default branch). `file` has no leading `/`.
    Project {
        project: String,
        reference: Option<String>,
        file: String,
    },
    /// `include: component:` as written, variables expanded:
    /// `<host>/<project path>/<component name>@<version>`.
    Component { address: String },
}

impl External {
    /// How messages name it: `` `include:project` `group/p` `ci/a.yml` at `v1` ``...
    pub fn describe(&self) -> String {
        match self {
            External::Remote { url } => format!("`include:remote` `{url}`"),
            External::Template { name } => format!("`include:template` `{name}`"),
            External::Project {
                project,
                reference,
                file,
            } => match reference {
                Some(r) => format!("`include:project` `{project}` file `{file}` at ref `{r}`"),
                None => format!("`include:project` `{project}` file `{file}`"),
            },
            External::Component { address } => format!("`include:component` `{address}`"),
        }
    }
}

/// A fetched file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub text: String,
    /// How diagnostics, include chains and `wharf list` name the file: a URL, or
    /// `<project>@<ref>:<file>`. Two fetches of the same content give the same name.
    pub name: String,
    /// Where `include: local` written inside this file points. `None`: the pipeline's own
    /// project (remote and template files, as in GitLab); `Some((project, commit))`: that
    /// project at that commit (project and component files).
    pub project: Option<(String, String)>,
}

/// Why a file could not be fetched: the message names the URL tried and the HTTP status; wharf-ci
/// puts it at the include's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailure {
    pub message: String,
    pub help: Option<String>,
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
