//! A stand-in GitLab on 127.0.0.1 over TLS, for include fetching tests: the files, projects,
//! tags, releases and templates APIs, raw URLs, and `git http-backend` for the git fallback,
//! answering for several host names (by `Host` header) from a fixture folder:
//!
//! ```text
//! <root>/<host>/<project path>/refs.json   {"default_branch": "master",
//!                                           "refs": {"master": "branch", "25.5": "tag", "<40-hex>": "commit"},
//!                                           "visibility": "private",      (optional: needs GitLab::TOKEN)
//!                                           "releases": ["25.5"]}         (optional: releases API)
//! <root>/<host>/<project path>/<ref>/<file path>   (a ref containing `/` is stored with `%2F`)
//! <root>/<host>/_templates/<template name>          (e.g. Security/SAST.gitlab-ci.yml)
//! <root>/<host>/_redirects/<url path>               (a 302 to the URL the file holds)
//! <root>/_remote/<host>/<url path>                  (raw files of non-GitLab hosts)
//! ```
//!
//! Commit ids (`X-Gitlab-Commit-Id`): the ref itself when it is 40 hex digits, else the first 40
//! hex digits of SHA-256(`host/project/ref`), and such an id is served as that ref. The server's
//! certificate names every host of the fixture; its CA is written to [`GitLab::ca_file`].
//! Every request is logged (host, path, `If-None-Match`, token) so tests can assert caching.

use crate::Error;
use crate::error::IoContext;
use axum::body::Body;
use http::{HeaderMap, Method, Response, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The token private fixture projects accept (as `PRIVATE-TOKEN` or `JOB-TOKEN`).
pub const TOKEN: &str = "glpat-stand-in-secret-4f1c";

/// One request the stand-in saw.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `Host` without the port.
    pub host: String,
    pub method: String,
    /// Path and query as sent (percent-encoded).
    pub path: String,
    pub if_none_match: Option<String>,
    /// The value of `PRIVATE-TOKEN` or `JOB-TOKEN`, if sent.
    pub token: Option<String>,
}

/// A running stand-in GitLab; stopped when dropped.
pub struct GitLab {
    port: u16,
    dir: tempfile::TempDir,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    root: PathBuf,
    /// Bare repositories for `git http-backend`: `<git root>/<host>/<project>.git`.
    git_root: Option<PathBuf>,
    api_down: AtomicBool,
    log: Mutex<Vec<Logged>>,
}

#[derive(Deserialize)]
struct Refs {
    default_branch: String,
    refs: BTreeMap<String, String>,
    #[serde(default)]
    visibility: Option<String>,
    #[serde(default)]
    releases: Vec<String>,
}

/// A fixture project found by a (case-insensitive) path.
struct Project {
    dir: PathBuf,
    /// The path as the fixture spells it.
    path: String,
    refs: Refs,
}

impl GitLab {
    /// Serve `root` (see the module docs) on a free loopback port.
    pub fn start(root: &Path) -> Result<GitLab, Error> {
        GitLab::start_inner(root, false)
    }

    /// As [`GitLab::start`], plus `git http-backend` serving a bare repository per fixture
    /// project (one commit per branch and tag ref folder; HEAD is the default branch).
    pub fn start_with_git(root: &Path) -> Result<GitLab, Error> {
        GitLab::start_inner(root, true)
    }

    fn start_inner(root: &Path, git: bool) -> Result<GitLab, Error> {
        let dir = tempfile::tempdir().ctx(|| "temporary folder for the stand-in GitLab".into())?;
        let hosts = fixture_hosts(root)?;
        let (ca_pem, cert_pem, key_pem) = certificates(&hosts)?;
        std::fs::write(dir.path().join("ca.pem"), ca_pem).ctx(|| "writing ca.pem".into())?;
        let git_root = if git {
            let git_root = dir.path().join("git");
            build_git_repos(root, &git_root)?;
            Some(git_root)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            git_root,
            api_down: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        });
        let acceptor = tls_acceptor(&cert_pem, &key_pem)?;
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").ctx(|| "binding 127.0.0.1:0".into())?;
        let port = listener.local_addr().ctx(|| "local address".into())?.port();
        listener
            .set_nonblocking(true)
            .ctx(|| "non-blocking listener".into())?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let state = shared.clone();
        let thread = std::thread::spawn(move || serve(listener, acceptor, state, stop_rx));
        Ok(GitLab {
            port,
            dir,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `HOST=127.0.0.1:PORT`, the value of a `--resolve` flag that reaches this server as `host`.
    pub fn resolve_arg(&self, host: &str) -> String {
        format!("{host}=127.0.0.1:{}", self.port)
    }

    /// Answer every `/api/` request with a plain 404 (a host without GitLab's API); git and raw
    /// URLs keep working.
    pub fn set_api_down(&self, down: bool) {
        self.shared.api_down.store(down, Ordering::SeqCst);
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Logged> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many requests had a path containing `fragment`.
    pub fn count(&self, fragment: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.contains(fragment))
            .count()
    }

    /// The X-Gitlab-Commit-Id served for `ref` of `project` on `host`.
    pub fn commit_id(host: &str, project: &str, reference: &str) -> String {
        if is_sha(reference) {
            return reference.to_string();
        }
        hex::encode(Sha256::digest(
            format!("{host}/{project}/{reference}").as_bytes(),
        ))[..40]
            .to_string()
    }
}

impl Drop for GitLab {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn is_sha(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Every host name of the fixture: the folders of `root` and of `root/_remote`.
fn fixture_hosts(root: &Path) -> Result<Vec<String>, Error> {
    let mut hosts = Vec::new();
    for dir in [root.to_path_buf(), root.join("_remote")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && name != "_remote" {
                hosts.push(name);
            }
        }
    }
    Ok(hosts)
}

/// A CA, and a server certificate for every host signed by it: (CA PEM, cert PEM, key PEM).
fn certificates(hosts: &[String]) -> Result<(String, String, String), Error> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        "wharf-testkit stand-in GitLab CA",
    );
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let mut names = hosts.to_vec();
    names.push("localhost".into());
    let cert = rcgen::CertificateParams::new(names)?.signed_by(&key, &issuer)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

fn tls_acceptor(cert_pem: &str, key_pem: &str) -> Result<tokio_rustls::TlsAcceptor, Error> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let bad = |e: String| Error::Invalid(format!("stand-in GitLab TLS: {e}"));
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn serve(
    listener: std::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(_) => continue,
                },
                _ = &mut stop => return,
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
}

async fn handle(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    request: axum::extract::Request,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        shared.respond(&parts.method, &parts.uri, &parts.headers, &body)
    })
    .await
    .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "handler panicked"))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Body::from(text.to_string()))
        .unwrap_or_default()
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .unwrap_or_default()
}

fn not_found(what: &str) -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        serde_json::json!({ "message": format!("404 {what} Not Found") }),
    )
}

fn decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A file's answer: the text, an ETag of its content, 304 when `If-None-Match` has it.
fn file(path: &Path, if_none_match: Option<&str>, commit: Option<&str>) -> Response<Body> {
    let Ok(bytes) = std::fs::read(path) else {
        return not_found("File");
    };
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&bytes))[..16]);
    let mut response = Response::builder().header("etag", &etag);
    if let Some(commit) = commit {
        response = response.header("x-gitlab-commit-id", commit);
    }
    if if_none_match == Some(etag.as_str()) {
        return response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default();
    }
    response
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::from(bytes))
        .unwrap_or_default()
}

impl Shared {
    fn respond(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response<Body> {
        let host = header(headers, "host")
            .unwrap_or_default()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let token = header(headers, "private-token").or_else(|| header(headers, "job-token"));
        let if_none_match = header(headers, "if-none-match");
        let path = uri.path().to_string();
        let query = uri.query().unwrap_or_default().to_string();
        if let Ok(mut log) = self.log.lock() {
            log.push(Logged {
                host: host.clone(),
                method: method.to_string(),
                path: uri
                    .path_and_query()
                    .map_or(path.clone(), |p| p.as_str().to_string()),
                if_none_match: if_none_match.clone(),
                token: token.clone(),
            });
        }
        let authorized = token.as_deref() == Some(TOKEN);
        if let Some(api) = path.strip_prefix("/api/v4/") {
            if self.api_down.load(Ordering::SeqCst) {
                return plain(StatusCode::NOT_FOUND, "Not Found");
            }
            return self.api(&host, api, &query, authorized, if_none_match.as_deref());
        }
        if path.contains(".git/") {
            return match &self.git_root {
                Some(git_root) => {
                    git_http_backend(&git_root.join(&host), method, &path, &query, headers, body)
                }
                None => plain(StatusCode::NOT_FOUND, "no git here"),
            };
        }
        // A redirect: the file's text is the Location.
        let redirect = self
            .root
            .join(&host)
            .join("_redirects")
            .join(decode(path.trim_start_matches('/')));
        if let Ok(location) = std::fs::read_to_string(redirect) {
            return Response::builder()
                .status(StatusCode::FOUND)
                .header("location", location.trim())
                .body(Body::empty())
                .unwrap_or_default();
        }
        let remote = self.root.join("_remote").join(&host);
        if remote.is_dir() {
            return file(
                &remote.join(decode(path.trim_start_matches('/'))),
                if_none_match.as_deref(),
                None,
            );
        }
        self.raw(&host, &path, authorized, if_none_match.as_deref())
    }

    /// The fixture project at `path` (case-insensitive, as GitLab's paths).
    fn project(&self, host: &str, path: &str) -> Option<Project> {
        let mut dir = self.root.join(host);
        let mut spelled = Vec::new();
        for segment in path.split('/') {
            let entry = std::fs::read_dir(&dir).ok()?.flatten().find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .eq_ignore_ascii_case(segment)
                    && e.path().is_dir()
            })?;
            spelled.push(entry.file_name().to_string_lossy().into_owned());
            dir = entry.path();
        }
        let refs: Refs =
            serde_json::from_slice(&std::fs::read(dir.join("refs.json")).ok()?).ok()?;
        Some(Project {
            dir,
            path: spelled.join("/"),
            refs,
        })
    }

    /// The ref folder a ref (or a commit id served before) names.
    fn ref_name(&self, host: &str, project: &Project, reference: &str) -> Option<String> {
        if project.refs.refs.contains_key(reference) {
            return Some(reference.to_string());
        }
        project
            .refs
            .refs
            .keys()
            .find(|r| GitLab::commit_id(host, &project.path, r) == reference)
            .cloned()
    }

    fn project_file(
        &self,
        host: &str,
        project: &Project,
        reference: &str,
        file_path: &str,
        if_none_match: Option<&str>,
    ) -> Response<Body> {
        let Some(name) = self.ref_name(host, project, reference) else {
            return not_found("Commit");
        };
        let commit = if is_sha(reference) {
            reference.to_string()
        } else {
            GitLab::commit_id(host, &project.path, &name)
        };
        file(
            &project.dir.join(name.replace('/', "%2F")).join(file_path),
            if_none_match,
            Some(&commit),
        )
    }

    fn api(
        &self,
        host: &str,
        api: &str,
        query: &str,
        authorized: bool,
        if_none_match: Option<&str>,
    ) -> Response<Body> {
        let query: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        if let Some(key) = api.strip_prefix("templates/gitlab_ci_ymls/") {
            let key = decode(key);
            let path = self
                .root
                .join(host)
                .join("_templates")
                .join(format!("{key}.gitlab-ci.yml"));
            return match std::fs::read_to_string(path) {
                Ok(content) => json(
                    StatusCode::OK,
                    serde_json::json!({"name": key, "content": content}),
                ),
                Err(_) => not_found("Template"),
            };
        }
        let Some(rest) = api.strip_prefix("projects/") else {
            return not_found("Route");
        };
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let id = decode(id);
        let Some(project) = self.project(host, &id) else {
            // GitLab's own templates, read through its project's files API.
            if id.eq_ignore_ascii_case("gitlab-org/gitlab") {
                if let Some(name) = tail
                    .strip_prefix("repository/files/")
                    .and_then(|f| f.strip_suffix("/raw"))
                    .map(decode)
                    .and_then(|f| {
                        f.strip_prefix("lib/gitlab/ci/templates/")
                            .map(str::to_string)
                    })
                {
                    return file(
                        &self.root.join(host).join("_templates").join(name),
                        if_none_match,
                        None,
                    );
                }
            }
            return not_found("Project");
        };
        if project.refs.visibility.as_deref() == Some("private") && !authorized {
            return not_found("Project");
        }
        let tags = || {
            project
                .refs
                .refs
                .iter()
                .filter(|(_, kind)| kind.as_str() == "tag")
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>()
        };
        match tail {
            "" => json(
                StatusCode::OK,
                serde_json::json!({
                    "path_with_namespace": project.path,
                    "default_branch": project.refs.default_branch,
                    "visibility": project.refs.visibility.as_deref().unwrap_or("public"),
                }),
            ),
            "repository/tags" => json(
                StatusCode::OK,
                page_of(
                    tags()
                        .iter()
                        .map(|t| serde_json::json!({"name": t, "commit": {"id": GitLab::commit_id(host, &project.path, t)}}))
                        .collect(),
                    &query,
                ),
            ),
            "releases" => json(
                StatusCode::OK,
                page_of(
                    project.refs.releases.iter().map(|t| serde_json::json!({"tag_name": t})).collect(),
                    &query,
                ),
            ),
            _ => {
                if let Some(tag) = tail.strip_prefix("repository/tags/") {
                    let tag = decode(tag);
                    return if tags().contains(&tag) {
                        json(StatusCode::OK, serde_json::json!({"name": tag}))
                    } else {
                        not_found("Tag")
                    };
                }
                if let Some(file_path) = tail
                    .strip_prefix("repository/files/")
                    .and_then(|f| f.strip_suffix("/raw"))
                {
                    let reference = query
                        .get("ref")
                        .cloned()
                        .unwrap_or_else(|| project.refs.default_branch.clone());
                    return self.project_file(host, &project, &reference, &decode(file_path), if_none_match);
                }
                not_found("Route")
            }
        }
    }

    /// `/<project>/-/raw/<ref>/<path>` and the legacy `/<project>/raw/<ref>/<path>` (a ref
    /// with `/` is not supported here).
    fn raw(
        &self,
        host: &str,
        path: &str,
        authorized: bool,
        if_none_match: Option<&str>,
    ) -> Response<Body> {
        let path = decode(path.trim_start_matches('/'));
        let Some((project, rest)) = path
            .split_once("/-/raw/")
            .or_else(|| path.split_once("/raw/"))
        else {
            return plain(StatusCode::NOT_FOUND, "Not Found");
        };
        let Some(project) = self.project(host, project) else {
            return plain(StatusCode::NOT_FOUND, "Not Found");
        };
        if project.refs.visibility.as_deref() == Some("private") && !authorized {
            return plain(StatusCode::NOT_FOUND, "Not Found");
        }
        let Some((reference, file_path)) = rest.split_once('/') else {
            return plain(StatusCode::NOT_FOUND, "Not Found");
        };
        self.project_file(host, &project, reference, file_path, if_none_match)
    }
}

/// Run `git http-backend` (CGI) for one request against the bare repositories in `repos`.
fn git_http_backend(
    repos: &Path,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response<Body> {
    use std::io::Write;
    let mut command = std::process::Command::new("/usr/lib/git-core/git-http-backend");
    command
        .env_clear()
        .env("GIT_PROJECT_ROOT", repos)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", decode(path))
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", method.as_str())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (cgi, name) in [
        ("CONTENT_TYPE", "content-type"),
        ("GIT_PROTOCOL", "git-protocol"),
        ("HTTP_CONTENT_ENCODING", "content-encoding"),
    ] {
        if let Some(value) = header(headers, name) {
            command.env(cgi, value);
        }
    }
    let Ok(mut child) = command.spawn() else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot run git-http-backend",
        );
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(body);
    }
    let Ok(output) = child.wait_with_output() else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "git-http-backend failed");
    };
    let out = output.stdout;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| {
            out.windows(2)
                .position(|w| w == b"\n\n")
                .map(|i| (i, i + 2))
        });
    let Some((head_end, body_start)) = split else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "git-http-backend gave no headers",
        );
    };
    let mut response = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(&out[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            response = response.status(code);
        } else {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from(out[body_start..].to_vec()))
        .unwrap_or_default()
}

/// A bare repository per fixture project: one commit per branch and tag ref folder.
fn build_git_repos(root: &Path, git_root: &Path) -> Result<(), Error> {
    for refs_file in walk_refs(root)? {
        let project_dir = refs_file.parent().unwrap_or(root);
        let Ok(relative) = project_dir.strip_prefix(root) else {
            continue;
        };
        let refs: Refs = serde_json::from_slice(
            &std::fs::read(&refs_file).ctx(|| format!("reading {}", refs_file.display()))?,
        )
        .map_err(|e| Error::Invalid(format!("{}: {e}", refs_file.display())))?;
        let bare = git_root.join(format!("{}.git", relative.display()));
        std::fs::create_dir_all(&bare).ctx(|| format!("creating {}", bare.display()))?;
        let index = bare.join("wharf-testkit-index");
        run_git(&bare, None, &index, &["init", "--bare", "--quiet"])?;
        run_git(
            &bare,
            None,
            &index,
            &["config", "uploadpack.allowAnySHA1InWant", "true"],
        )?;
        for (name, kind) in &refs.refs {
            let tree_dir = project_dir.join(name.replace('/', "%2F"));
            let prefix = match kind.as_str() {
                "branch" => "refs/heads/",
                "tag" => "refs/tags/",
                _ => continue,
            };
            if !tree_dir.is_dir() {
                continue;
            }
            let _ = std::fs::remove_file(&index);
            run_git(&bare, Some(&tree_dir), &index, &["add", "--all", "."])?;
            let tree = run_git(&bare, Some(&tree_dir), &index, &["write-tree"])?;
            let commit = run_git(
                &bare,
                None,
                &index,
                &["commit-tree", tree.trim(), "-m", name],
            )?;
            run_git(
                &bare,
                None,
                &index,
                &["update-ref", &format!("{prefix}{name}"), commit.trim()],
            )?;
        }
        let _ = std::fs::remove_file(&index);
        run_git(
            &bare,
            None,
            &index,
            &[
                "symbolic-ref",
                "HEAD",
                &format!("refs/heads/{}", refs.default_branch),
            ],
        )?;
    }
    Ok(())
}

fn walk_refs(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).ctx(|| format!("listing {}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir()
                && !["_remote", "_templates", "_redirects"]
                    .iter()
                    .any(|n| name == *n)
            {
                if path.join("refs.json").is_file() {
                    found.push(path.join("refs.json"));
                } else {
                    stack.push(path);
                }
            }
        }
    }
    Ok(found)
}

fn run_git(
    bare: &Path,
    work_tree: Option<&Path>,
    index: &Path,
    args: &[&str],
) -> Result<String, Error> {
    let mut command = std::process::Command::new("git");
    command.arg("--git-dir").arg(bare);
    if let Some(tree) = work_tree {
        command.arg("--work-tree").arg(tree).current_dir(tree);
    }
    command
        .args(args)
        .env("GIT_INDEX_FILE", index)
        .env("GIT_AUTHOR_NAME", "stand-in")
        .env("GIT_AUTHOR_EMAIL", "stand-in@gitlab.test")
        .env("GIT_COMMITTER_NAME", "stand-in")
        .env("GIT_COMMITTER_EMAIL", "stand-in@gitlab.test")
        .env("GIT_AUTHOR_DATE", "2025-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2025-01-01T00:00:00Z");
    crate::error::command_output(&mut command, || format!("git {}", args.join(" ")))
}

/// One page of an API list, as GitLab paginates (`per_page` default 20, at most 100; `page`
/// from 1).
fn page_of(items: Vec<serde_json::Value>, query: &BTreeMap<String, String>) -> serde_json::Value {
    let per_page = query
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let page = query
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    serde_json::Value::Array(
        items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect(),
    )
}
