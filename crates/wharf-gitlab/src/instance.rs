//! A GitLab instance as the source of included files: how each `include:` kind is resolved
//! (as GitLab's `lib/gitlab/ci/config/external/file/*.rb` do), through the cache.

use crate::cache::{Cache, Entry};
use crate::error::{Error, SettingsError};
use crate::git;
use crate::http::{Answer, Http};
use crate::settings::Settings;
use crate::version::{VersionSpec, pick};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use url::Url;
use wharf_ci::{External, FetchFailure, Fetched};

/// Items asked for per page of an API list (GitLab's maximum).
const LIST_PAGE_SIZE: usize = 100;
/// Pages read at most for one list (10,000 tags or releases).
const MAX_LIST_PAGES: usize = 100;

/// Where GitLab keeps its CI templates; nested ones (`Jobs/Build.gitlab-ci.yml`) are read from
/// here because the templates API serves only top-level names.
const TEMPLATES_PROJECT: &str = "gitlab-org/gitlab";
const TEMPLATES_FOLDER: &str = "lib/gitlab/ci/templates";

/// A GitLab instance, its HTTP client and the include cache. Safe to share between threads;
/// its methods block (callers may be on an async runtime's thread).
pub struct Instance {
    settings: Settings,
    /// Built on the first request: a run served wholly from the cache never pays for loading
    /// the system's trusted roots.
    http: OnceLock<Result<Http, String>>,
    cache: Cache,
    /// Each include fetched once per process (a pipeline may name a file many times).
    fetched: Mutex<HashMap<External, Fetched>>,
    warnings: Mutex<Vec<String>>,
}

/// What a request to the network gave, for [`Instance::through_cache`].
enum Fresh {
    NotModified,
    New {
        text: String,
        name: String,
        project: Option<(String, String)>,
        etag: Option<String>,
        immutable: bool,
    },
}

impl Instance {
    pub fn new(settings: Settings) -> Result<Instance, SettingsError> {
        if let Some(path) = &settings.ca_file {
            // Checked now, so a wrong --gitlab-ca-file fails at once, not at the first request.
            Http::read_ca_file(path)?;
        }
        Ok(Instance {
            http: OnceLock::new(),
            cache: Cache::new(settings.cache_dir.clone()),
            settings,
            fetched: Mutex::new(HashMap::new()),
            warnings: Mutex::new(Vec::new()),
        })
    }

    fn http(&self) -> Result<&Http, Error> {
        self.http
            .get_or_init(|| Http::new(&self.settings).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Resolve(e.clone()))
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Warnings since the last call (a cached copy used because the network failed).
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.warnings))
    }

    /// The text of a file fetched before, by its [`Fetched::name`].
    pub fn fetched_text(&self, name: &str) -> Option<String> {
        lock(&self.fetched)
            .values()
            .find(|f| f.name == name)
            .map(|f| f.text.clone())
    }

    /// Fetch what an `include:` names outside the project; the failure says what was tried
    /// and how to fix it, and never holds the token.
    pub fn fetch_include(&self, file: &External) -> Result<Fetched, FetchFailure> {
        if let Some(done) = lock(&self.fetched).get(file) {
            return Ok(done.clone());
        }
        let result = match file {
            External::Remote { url } => self.remote(url),
            External::Template { name } => self.template(name),
            External::Project {
                project,
                reference,
                file,
            } => self
                .project_file(project, reference.as_deref(), file)
                .map(|(fetched, _)| fetched),
            External::Component { address } => self.component(address),
        };
        match result {
            Ok(fetched) => {
                lock(&self.fetched).insert(file.clone(), fetched.clone());
                Ok(fetched)
            }
            Err(error) => Err(self.failure(file, &error)),
        }
    }

    fn failure(&self, file: &External, error: &Error) -> FetchFailure {
        let instance = self.settings.url.as_str().trim_end_matches('/');
        let from_instance = !matches!(file, External::Remote { .. });
        let help = match error {
            Error::NotCached { .. } => Some(
                "run once without --offline (with network access) to fill the include cache"
                    .to_string(),
            ),
            _ if error.is_unreachable() => Some(format!(
                "check the network and --gitlab-url (now {instance}); with --offline wharf uses the include cache only"
            )),
            _ if from_instance && matches!(error.status(), Some(401 | 403 | 404)) => {
                Some(match &self.settings.token {
                    None => format!(
                        "if the project is private, give a token that can read it: --gitlab-token-file FILE, or GITLAB_TOKEN (CI_JOB_TOKEN in a job); check the names and --gitlab-url (now {instance})"
                    ),
                    Some(token) => format!(
                        "{token} was sent: check it can read the project (scope read_api or read_repository), and the names and --gitlab-url (now {instance})"
                    ),
                })
            }
            _ => None,
        };
        FetchFailure {
            message: format!("{}: {error}", file.describe()),
            help,
        }
    }

    /// Serve `key` from the cache or from `fetch` (given the cached ETag), as its mutability
    /// and `--offline` allow; a network failure falls back to a cached copy with a warning.
    fn through_cache(
        &self,
        key: &str,
        what: &str,
        known_immutable: bool,
        fetch: impl FnOnce(Option<&str>) -> Result<Fresh, Error>,
    ) -> Result<(Entry, String), Error> {
        let cached = self.cache.lookup(key);
        if self.settings.offline {
            return cached.ok_or_else(|| Error::NotCached {
                what: what.to_string(),
                cache: self.cache.dir().display().to_string(),
            });
        }
        if let Some(hit) = cached
            .as_ref()
            .filter(|(e, _)| e.immutable || known_immutable)
        {
            return Ok(hit.clone());
        }
        let etag = cached.as_ref().and_then(|(e, _)| e.etag.as_deref());
        match fetch(etag) {
            Ok(Fresh::NotModified) => cached.ok_or_else(|| {
                Error::Resolve(format!("{what}: the server answered 304 Not Modified to a request wharf has no copy for"))
            }),
            Ok(Fresh::New {
                text,
                name,
                project,
                etag,
                immutable,
            }) => {
                let entry = self.cache.store(
                    key,
                    &text,
                    &name,
                    project,
                    etag,
                    immutable || known_immutable,
                )?;
                Ok((entry, text))
            }
            Err(error) if error.is_unreachable() && cached.is_some() => {
                lock(&self.warnings).push(format!(
                    "{what}: {error}; using the copy in the include cache {}",
                    self.cache.dir().display()
                ));
                cached.ok_or(error)
            }
            Err(error) => Err(error),
        }
    }

    fn api(&self, path: &str) -> Url {
        let base = self.settings.url.as_str().trim_end_matches('/');
        // Paths are built from percent-encoded parts only, so this cannot fail for a valid base.
        Url::parse(&format!("{base}/api/v4/{path}")).unwrap_or_else(|_| self.settings.url.clone())
    }

    fn remote(&self, url: &str) -> Result<Fetched, Error> {
        let parsed =
            Url::parse(url).map_err(|e| Error::Resolve(format!("`{url}` is not a URL ({e})")))?;
        let (entry, text) = self.through_cache(
            &format!("remote {url}"),
            &format!("remote file {url}"),
            is_immutable_raw_url(&parsed),
            |etag| {
                Ok(match self.http()?.get(&parsed, etag)? {
                    Answer::NotModified => Fresh::NotModified,
                    Answer::Body(body) => Fresh::New {
                        text: body.text,
                        name: url.to_string(),
                        project: None,
                        etag: body.etag,
                        immutable: false,
                    },
                })
            },
        )?;
        Ok(fetched(entry, text))
    }

    fn template(&self, name: &str) -> Result<Fetched, Error> {
        let Some(short) = name.strip_suffix(".gitlab-ci.yml") else {
            return Err(Error::Resolve(format!(
                "a template name ends with `.gitlab-ci.yml` (e.g. `Jobs/Build.gitlab-ci.yml`), found `{name}`"
            )));
        };
        let instance = self.settings.url.as_str().trim_end_matches('/');
        let (entry, text) = self.through_cache(
            &format!("template {instance} {name}"),
            &format!("template {name}"),
            false,
            |etag| {
                let mut tried = Vec::new();
                // Top-level names: the templates API. Nested ones: only the source project has them.
                if !short.contains('/') {
                    let url = self.api(&format!("templates/gitlab_ci_ymls/{}", encode(short)));
                    #[derive(serde::Deserialize)]
                    struct Template {
                        content: String,
                    }
                    match self.http()?.get_json::<Template>(&url) {
                        Ok(template) => {
                            return Ok(Fresh::New {
                                text: template.content,
                                name: format!("template {name}"),
                                project: None,
                                etag: None,
                                immutable: false,
                            });
                        }
                        Err(e) if e.is_unreachable() => return Err(e),
                        Err(e) => tried.push(e),
                    }
                }
                let url = self.files_url(
                    TEMPLATES_PROJECT,
                    &format!("{TEMPLATES_FOLDER}/{name}"),
                    None,
                );
                match self.http()?.get(&url, etag) {
                    Ok(Answer::NotModified) => Ok(Fresh::NotModified),
                    Ok(Answer::Body(body)) => Ok(Fresh::New {
                        text: body.text,
                        name: format!("template {name}"),
                        project: None,
                        etag: body.etag,
                        immutable: false,
                    }),
                    Err(e) if tried.is_empty() => Err(e),
                    Err(e) => {
                        tried.push(e);
                        Err(Error::AllFailed(tried))
                    }
                }
            },
        )?;
        Ok(fetched(entry, text))
    }

    fn files_url(&self, project: &str, file: &str, reference: Option<&str>) -> Url {
        let mut path = format!(
            "projects/{}/repository/files/{}/raw",
            encode(project),
            encode(file)
        );
        if let Some(reference) = reference {
            path.push_str("?ref=");
            path.push_str(&encode(reference));
        }
        self.api(&path)
    }

    /// A project's file at a ref; also says whether it can never change (SHA or tag).
    fn project_file(
        &self,
        project: &str,
        reference: Option<&str>,
        file: &str,
    ) -> Result<(Fetched, bool), Error> {
        let instance = self.settings.url.as_str().trim_end_matches('/');
        let key = format!(
            "project {instance} {} {} {file}",
            project.to_ascii_lowercase(),
            reference.unwrap_or("")
        );
        let what = match reference {
            Some(r) => format!("{project} file {file} at {r}"),
            None => format!("{project} file {file} at its default branch"),
        };
        let (entry, text) = self.through_cache(
            &key,
            &what,
            reference.is_some_and(is_commit_sha),
            |etag| match self.project_file_api(project, reference, file, etag) {
                Err(api) if falls_back_to_git(&api) => {
                    match git::fetch_file(&self.settings, project, reference, file) {
                        Ok(found) => Ok(Fresh::New {
                            name: format!("{project}@{}:{file}", reference.unwrap_or("HEAD")),
                            project: Some((project.to_string(), found.commit)),
                            text: found.text,
                            etag: None,
                            immutable: reference.is_some_and(is_commit_sha),
                        }),
                        Err(git) => Err(Error::AllFailed(vec![api, git])),
                    }
                }
                other => other,
            },
        )?;
        let immutable = entry.immutable;
        Ok((fetched(entry, text), immutable))
    }

    fn project_file_api(
        &self,
        project: &str,
        reference: Option<&str>,
        file: &str,
        etag: Option<&str>,
    ) -> Result<Fresh, Error> {
        let url = self.files_url(project, file, reference);
        let body = match self.http()?.get(&url, etag)? {
            Answer::NotModified => return Ok(Fresh::NotModified),
            Answer::Body(body) => body,
        };
        let (shown_ref, immutable) = match reference {
            Some(r) if is_commit_sha(r) => (r.to_string(), true),
            Some(r) => (r.to_string(), self.is_tag(project, r)?),
            None => (self.project_info(project)?.default_branch, false),
        };
        let commit = body
            .commit
            .or_else(|| reference.filter(|r| is_commit_sha(r)).map(str::to_string))
            .ok_or_else(|| Error::BadBody {
                url: url.to_string(),
                reason: "no X-Gitlab-Commit-Id header: is this a GitLab instance?".into(),
            })?;
        Ok(Fresh::New {
            text: body.text,
            name: format!("{project}@{shown_ref}:{file}"),
            project: Some((project.to_string(), commit)),
            etag: body.etag,
            immutable,
        })
    }

    fn is_tag(&self, project: &str, reference: &str) -> Result<bool, Error> {
        let url = self.api(&format!(
            "projects/{}/repository/tags/{}",
            encode(project),
            encode(reference)
        ));
        match self.http()?.get(&url, None) {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn project_info(&self, project: &str) -> Result<ProjectInfo, Error> {
        self.http()?
            .get_json(&self.api(&format!("projects/{}", encode(project))))
    }

    fn tags(&self, project: &str) -> Result<Vec<String>, Error> {
        self.names(
            &format!("projects/{}/repository/tags", encode(project)),
            "name",
        )
    }

    fn release_tags(&self, project: &str) -> Result<Vec<String>, Error> {
        self.names(
            &format!("projects/{}/releases", encode(project)),
            "tag_name",
        )
    }

    /// The `field` of each object of an API list (tags, releases), page after page (GitLab's
    /// lists are paginated: a page shorter than asked for is the last).
    fn names(&self, path: &str, field: &str) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for page in 1..=MAX_LIST_PAGES {
            let items: Vec<serde_json::Map<String, serde_json::Value>> = self
                .http()?
                .get_json(&self.api(&format!("{path}?per_page={LIST_PAGE_SIZE}&page={page}")))?;
            let last = items.len() < LIST_PAGE_SIZE;
            names.extend(
                items
                    .iter()
                    .filter_map(|item| item.get(field)?.as_str().map(str::to_string)),
            );
            if last {
                break;
            }
        }
        Ok(names)
    }

    fn component(&self, address: &str) -> Result<Fetched, Error> {
        let parsed = ComponentAddress::parse(address)?;
        let host = self.settings.host();
        if !parsed.host.eq_ignore_ascii_case(&host) {
            return Err(Error::Resolve(format!(
                "the component is on `{}` but the GitLab instance is `{host}`: GitLab includes components of its own instance only; run with --gitlab-url https://{}",
                parsed.host, parsed.host
            )));
        }
        let instance = self.settings.url.as_str().trim_end_matches('/');
        let (entry, text) = self.through_cache(
            &format!("component {instance} {address}"),
            &format!("component {address}"),
            is_commit_sha(&parsed.version),
            |_| self.resolve_component(&parsed),
        )?;
        Ok(fetched(entry, text))
    }

    fn resolve_component(&self, address: &ComponentAddress) -> Result<Fresh, Error> {
        let spec = VersionSpec::parse(&address.version);
        let (project, name, version) = match self.find_component_project(&address.path) {
            Ok((project, name)) => {
                let version = self.component_version(&project, &spec, &address.version)?;
                (project, name, version)
            }
            // No API: the project is what is before the last `/`, versions are its git tags.
            Err(api) if falls_back_to_git(&api) => {
                let (project, name) = address.path.rsplit_once('/').unwrap_or_default();
                let version = match &spec {
                    VersionSpec::Exact(v) => v.clone(),
                    _ => {
                        let tags = git::tags(&self.settings, project)
                            .map_err(|git| Error::AllFailed(vec![api, git]))?;
                        pick(&spec, tags.iter().map(String::as_str))
                            .map(str::to_string)
                            .ok_or_else(|| no_version(project, &address.version, &tags))?
                    }
                };
                (project.to_string(), name.to_string(), version)
            }
            Err(other) => return Err(other),
        };
        let mut tried = Vec::new();
        for file in [
            format!("templates/{name}.yml"),
            format!("templates/{name}/template.yml"),
        ] {
            match self.project_file(&project, Some(&version), &file) {
                Ok((found, immutable)) => {
                    return Ok(Fresh::New {
                        text: found.text,
                        name: format!("{}/{project}/{name}@{version}", address.host),
                        project: found.project,
                        etag: None,
                        immutable: immutable && matches!(spec, VersionSpec::Exact(_)),
                    });
                }
                Err(e) if e.status() == Some(404) || matches!(e, Error::AllFailed(_)) => {
                    tried.push(e)
                }
                Err(e) => return Err(e),
            }
        }
        if matches!(spec, VersionSpec::Exact(_)) {
            if let Ok(tags) = self.tags(&project) {
                tried.push(Error::Resolve(format!(
                    "version `{version}` of `{project}` may not exist; its tags: {}",
                    list_or_none(&tags)
                )));
            }
        }
        Err(Error::AllFailed(tried))
    }

    /// The ref a component version names, from the releases and tags APIs.
    fn component_version(
        &self,
        project: &str,
        spec: &VersionSpec,
        asked: &str,
    ) -> Result<String, Error> {
        Ok(match spec {
            VersionSpec::Exact(v) => v.clone(),
            VersionSpec::Latest => {
                let releases = self.release_tags(project)?;
                match pick(spec, releases.iter().map(String::as_str)) {
                    Some(v) => v.to_string(),
                    None => self.pick_tag(project, spec, asked)?,
                }
            }
            VersionSpec::Partial { .. } => self.pick_tag(project, spec, asked)?,
        })
    }

    fn pick_tag(&self, project: &str, spec: &VersionSpec, asked: &str) -> Result<String, Error> {
        let tags = self.tags(project)?;
        pick(spec, tags.iter().map(String::as_str))
            .map(str::to_string)
            .ok_or_else(|| no_version(project, asked, &tags))
    }

    /// The project and component name of `path`: as GitLab's `InstancePath`, the last `/`
    /// separates them (`group/sub/project/name`).
    fn find_component_project(&self, path: &str) -> Result<(String, String), Error> {
        let Some((project, name)) = path.rsplit_once('/') else {
            return Err(Error::Resolve(format!(
                "`{path}` names no project and component: expected <host>/<project path>/<component name>@<version>"
            )));
        };
        let info = self.project_info(project)?;
        Ok((
            info.path_with_namespace
                .unwrap_or_else(|| project.to_string()),
            name.to_string(),
        ))
    }
}

#[derive(serde::Deserialize)]
struct ProjectInfo {
    #[serde(default)]
    path_with_namespace: Option<String>,
    default_branch: String,
}

/// `<host>/<path>@<version>`.
struct ComponentAddress {
    host: String,
    path: String,
    version: String,
}

impl ComponentAddress {
    fn parse(address: &str) -> Result<ComponentAddress, Error> {
        let bad = || {
            Error::Resolve(format!(
                "`{address}` is not a component address: expected <host>/<project path>/<component name>@<version>"
            ))
        };
        // GitLab splits at the first `@`.
        let (path, version) = address.split_once('@').ok_or_else(bad)?;
        let (host, path) = path.split_once('/').ok_or_else(bad)?;
        if host.is_empty() || version.is_empty() || !path.contains('/') {
            return Err(bad());
        }
        Ok(ComponentAddress {
            host: host.to_string(),
            path: path.trim_end_matches('/').to_string(),
            version: version.to_string(),
        })
    }
}

fn fetched(entry: Entry, text: String) -> Fetched {
    Fetched {
        text,
        name: entry.name,
        project: entry.project,
    }
}

/// Whether an API failure means "no API here" rather than "no such file": no answer, or a
/// 401/404 that is not GitLab's JSON (a git server, a proxy).
fn falls_back_to_git(error: &Error) -> bool {
    match error {
        Error::Status {
            status: 401 | 404,
            json,
            ..
        } => !json,
        other => other.is_unreachable(),
    }
}

/// A full commit SHA (SHA-1 or SHA-256): names one commit forever.
pub(crate) fn is_commit_sha(reference: &str) -> bool {
    matches!(reference.len(), 40 | 64) && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `.../-/raw/<sha>/...` and the legacy `.../raw/<sha>/...`.
fn is_immutable_raw_url(url: &Url) -> bool {
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    segments
        .windows(2)
        .any(|pair| pair[0] == "raw" && is_commit_sha(pair[1]))
}

/// Percent-encode everything but RFC 3986's unreserved characters (GitLab's `:id` and
/// `:file_path` need `/` as `%2F`).
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn no_version(project: &str, asked: &str, tags: &[String]) -> Error {
    Error::Resolve(format!(
        "no released version of `{project}` matches `{asked}`; its tags: {}",
        list_or_none(tags)
    ))
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_urls_at_a_sha_never_change() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        for (url, immutable) in [
            (format!("https://h/g/p/-/raw/{sha}/ci.yml"), true),
            (format!("https://h/g/p/raw/{sha}/ci.yml"), true),
            ("https://h/g/p/-/raw/main/ci.yml".to_string(), false),
        ] {
            assert_eq!(
                is_immutable_raw_url(&Url::parse(&url).unwrap()),
                immutable,
                "{url}"
            );
        }
    }

    #[test]
    fn project_paths_and_files_are_encoded_for_the_api() {
        assert_eq!(encode("group/sub/p"), "group%2Fsub%2Fp");
        assert_eq!(encode("ci/a b.yml"), "ci%2Fa%20b.yml");
    }
}
