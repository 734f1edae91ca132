//! HTTP: one catch-all `/v2/{*rest}` route parsed by hand (repository names contain `/`), the
//! authorization call with the scopes each operation implies, and headers. No storage logic here.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};

use crate::auth::{Access, Action, AuthErrorCode, AuthOutcome, Authorizer, Identity, ResourceKind};
use crate::error::RegistryError;
use crate::metrics::Metrics;
use crate::names::{Digest, NameError, Reference, RepoName};
use crate::services::Registry;
use crate::services::manifests::OCI_INDEX;
use crate::services::tags::paginate;
use crate::storage::ByteStream;

const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// What the routes need: the registry, who may do what, and the metrics.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub authorizer: Arc<dyn Authorizer>,
    pub metrics: Arc<Metrics>,
}

/// The registry's router. `extra` adds routes outside `/v2/` (the token service's realm);
/// every request, those included, goes through the access log and metrics.
pub fn router(state: AppState, extra: Router) -> Router {
    let metrics = state.metrics.clone();
    let metrics_for_route = state.metrics.clone();
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .with_state(state)
        .route(
            "/metrics",
            get(move || async move { metrics_for_route.render() }),
        )
        .merge(extra)
        .fallback(|req: Request| async move {
            RegistryError::RouteUnknown {
                path: req.uri().path().to_string(),
            }
            .into_response()
        })
        .layer(middleware::from_fn_with_state(metrics, observe))
}

/// Access log (one line per request, never the `Authorization` header or query), metrics, and
/// the API version header on every response.
async fn observe(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let request_bytes = content_length(req.headers()).unwrap_or(0);
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    let response_bytes = content_length(response.headers()).unwrap_or(0);
    let subject = response
        .extensions()
        .get::<Identity>()
        .and_then(|i| i.subject.clone());
    tracing::info!(
        target: "wharf_registry::access",
        method = %method,
        path = %path,
        status,
        bytes = response_bytes,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        subject = subject.as_deref().unwrap_or("-"),
    );
    metrics.observe(
        method.as_str(),
        status,
        elapsed,
        request_bytes,
        response_bytes,
    );
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The endpoint a `/v2/...` path names.
#[derive(Debug, PartialEq, Eq)]
enum Endpoint {
    Ping,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, String),
    Blob(RepoName, String),
    UploadStart(RepoName),
    Upload(RepoName, String),
    Referrers(RepoName, String),
}

/// Splits `/v2/<name>/<kind>/...` from the end, since `<name>` may itself contain `/`.
fn parse_endpoint(path: &str) -> Result<Endpoint, RegistryError> {
    let unknown = || RegistryError::RouteUnknown {
        path: path.to_string(),
    };
    let rest = path.strip_prefix("/v2").ok_or_else(unknown)?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Endpoint::Ping);
    }
    if rest == "_catalog" {
        return Ok(Endpoint::Catalog);
    }
    let decoded = percent_decode(rest).ok_or_else(unknown)?;
    let segs: Vec<&str> = decoded.split('/').collect();
    let n = segs.len();
    let name = |upto: usize| RepoName::parse(&segs[..upto].join("/"));
    if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
        return Ok(Endpoint::Tags(name(n - 2)?));
    }
    if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
        let repo = name(n - 3)?;
        return Ok(if segs[n - 1].is_empty() {
            Endpoint::UploadStart(repo)
        } else {
            Endpoint::Upload(repo, segs[n - 1].to_string())
        });
    }
    if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
        return Ok(Endpoint::UploadStart(name(n - 2)?));
    }
    if n >= 3 {
        let last = segs[n - 1].to_string();
        match segs[n - 2] {
            "manifests" => return Ok(Endpoint::Manifest(name(n - 2)?, last)),
            "blobs" => return Ok(Endpoint::Blob(name(n - 2)?, last)),
            "referrers" => return Ok(Endpoint::Referrers(name(n - 2)?, last)),
            _ => {}
        }
    }
    Err(unknown())
}

/// Decodes `%XX` escapes (some clients escape `:` in digests); `None` for malformed escapes.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn query_pairs(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn query<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn repo_access(repo: &RepoName, actions: &[Action]) -> Access {
    Access {
        kind: ResourceKind::Repository,
        name: repo.to_string(),
        actions: actions.to_vec(),
    }
}

async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    wanted: &[Access],
) -> Result<Identity, RegistryError> {
    match state.authorizer.authorize(headers, wanted).await {
        AuthOutcome::Allowed(identity) => Ok(identity),
        AuthOutcome::Challenge {
            www_authenticate,
            error: AuthErrorCode::Unauthorized,
        } => Err(RegistryError::Unauthorized { www_authenticate }),
        AuthOutcome::Challenge {
            www_authenticate,
            error: AuthErrorCode::Denied,
        } => Err(RegistryError::Denied {
            www_authenticate: Some(www_authenticate),
        }),
    }
}

async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let mut identity = None;
    let result = handle(&state, req, &mut identity).await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(identity) = identity {
        response.extensions_mut().insert(identity);
    }
    response
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map(|r| r.map_err(io::Error::other)))
}

/// Reads a body of at most `limit` bytes.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, RegistryError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RegistryError::BodyRead(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(RegistryError::ManifestTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn hv(s: &str) -> HeaderValue {
    // Every value passed here is built from validated names, digests and numbers.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn json(status: StatusCode, content_type: &'static str, value: &serde_json::Value) -> Response {
    let body = value.to_string();
    let mut r = Response::new(Body::from(body.clone()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, hv(&body.len().to_string()));
    r
}

/// `Range: 0-<last byte>` as the spec reports upload progress (`0-0` when empty).
fn upload_range(size: u64) -> HeaderValue {
    hv(&format!("0-{}", size.saturating_sub(1)))
}

fn upload_accepted(status: StatusCode, repo: &RepoName, id: &str, size: u64) -> Response {
    let mut r = empty(status);
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        hv(&format!("/v2/{repo}/blobs/uploads/{id}")),
    );
    h.insert(header::RANGE, upload_range(size));
    h.insert(DOCKER_UPLOAD_UUID, hv(id));
    r
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    let mut r = empty(StatusCode::CREATED);
    r.headers_mut()
        .insert(header::LOCATION, hv(&format!("/v2/{repo}/blobs/{digest}")));
    r.headers_mut()
        .insert(DOCKER_CONTENT_DIGEST, hv(&digest.to_string()));
    r
}

fn method_not_allowed(method: &Method) -> RegistryError {
    RegistryError::MethodNotAllowed {
        method: method.to_string(),
    }
}

/// `Content-Range` of a chunk: `<start>-<end>`, also accepting `bytes ` / `bytes=` prefixes and
/// a `/<total>` suffix.
fn parse_content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, RegistryError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || RegistryError::RangeInvalid {
        message: "Content-Range must be <start>-<end>".to_string(),
        size: 0,
        upload: true,
    };
    let s = value.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes")
        .map(|r| r.trim_start_matches([' ', '=']))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    Ok(Some((start, end)))
}

/// A `Range: bytes=...` request header against a blob of `size` bytes: `(offset, len)`.
fn parse_range(value: &HeaderValue, size: u64) -> Result<(u64, u64), RegistryError> {
    let bad = |message: &str| RegistryError::RangeInvalid {
        message: message.to_string(),
        size,
        upload: false,
    };
    let s = value.to_str().map_err(|_| bad("not ASCII"))?.trim();
    let spec = s
        .strip_prefix("bytes=")
        .ok_or_else(|| bad("only bytes ranges are supported"))?;
    if spec.contains(',') {
        return Err(bad("multiple ranges are not supported"));
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| bad("expected bytes=<start>-<end>"))?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let suffix: u64 = b.parse().map_err(|_| bad("invalid suffix length"))?;
        if suffix == 0 {
            return Err(bad("empty suffix range"));
        }
        (size.saturating_sub(suffix), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| bad("invalid start"))?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse().map_err(|_| bad("invalid end"))?
        };
        (start, end.min(size.saturating_sub(1)))
    };
    if size == 0 || start >= size || end < start {
        return Err(bad("range outside the blob"));
    }
    Ok((start, end - start + 1))
}

async fn handle(
    state: &AppState,
    req: Request,
    identity: &mut Option<Identity>,
) -> Result<Response, RegistryError> {
    let method = req.method().clone();
    let endpoint = parse_endpoint(req.uri().path());
    // Authentication comes before any other answer, so an anonymous probe learns nothing; but a
    // malformed name is refused before authorizing anything with it.
    let endpoint = endpoint?;
    let registry = &state.registry;
    let pairs = query_pairs(&req);
    let headers = req.headers().clone();
    let is_head = method == Method::HEAD;

    match endpoint {
        Endpoint::Ping => {
            *identity = Some(authorize(state, &headers, &[]).await?);
            match method {
                Method::GET | Method::HEAD => Ok(json(
                    StatusCode::OK,
                    "application/json",
                    &serde_json::json!({}),
                )),
                m => Err(method_not_allowed(&m)),
            }
        }
        Endpoint::Catalog => {
            let access = Access {
                kind: ResourceKind::Registry,
                name: "catalog".to_string(),
                actions: vec![Action::All],
            };
            *identity = Some(authorize(state, &headers, &[access]).await?);
            if method != Method::GET {
                return Err(method_not_allowed(&method));
            }
            let (n, last) = pagination(&pairs)?;
            let page = paginate(registry.catalog().await?, n, last);
            let mut r = json(
                StatusCode::OK,
                "application/json",
                &serde_json::json!({ "repositories": page.items }),
            );
            if page.more {
                if let (Some(n), Some(last)) = (n, page.items.last()) {
                    r.headers_mut().insert(
                        header::LINK,
                        hv(&format!(
                            "</v2/_catalog?n={n}&last={}>; rel=\"next\"",
                            encode(last)
                        )),
                    );
                }
            }
            Ok(r)
        }
        Endpoint::Tags(repo) => {
            *identity =
                Some(authorize(state, &headers, &[repo_access(&repo, &[Action::Pull])]).await?);
            if method != Method::GET {
                return Err(method_not_allowed(&method));
            }
            let (n, last) = pagination(&pairs)?;
            let page = paginate(registry.tags(&repo).await?, n, last);
            let mut r = json(
                StatusCode::OK,
                "application/json",
                &serde_json::json!({ "name": repo.as_str(), "tags": page.items }),
            );
            if page.more {
                if let (Some(n), Some(last)) = (n, page.items.last()) {
                    r.headers_mut().insert(
                        header::LINK,
                        hv(&format!(
                            "</v2/{repo}/tags/list?n={n}&last={}>; rel=\"next\"",
                            encode(last)
                        )),
                    );
                }
            }
            Ok(r)
        }
        Endpoint::Manifest(repo, reference) => {
            let actions: &[Action] = match method {
                Method::GET | Method::HEAD => &[Action::Pull],
                Method::PUT => &[Action::Pull, Action::Push],
                Method::DELETE => &[Action::Delete],
                ref m => return Err(method_not_allowed(m)),
            };
            *identity = Some(authorize(state, &headers, &[repo_access(&repo, actions)]).await?);
            let reference = match Reference::parse(&reference) {
                Ok(reference) => reference,
                // No manifest can carry a tag outside the grammar, so reading or deleting one
                // finds nothing (404, as the conformance suite expects for
                // `.INVALID_MANIFEST_NAME`); only pushing one is the client's mistake (400).
                Err(NameError::Tag { tag }) if method != Method::PUT => {
                    return Err(RegistryError::ManifestUnknown { reference: tag });
                }
                Err(e) => return Err(e.into()),
            };
            match method {
                Method::GET | Method::HEAD => {
                    let (stored, body) = if is_head {
                        (
                            registry.stat_manifest(&repo, &reference).await?,
                            Bytes::new(),
                        )
                    } else {
                        registry.get_manifest(&repo, &reference).await?
                    };
                    let mut r = Response::new(Body::from(body));
                    let h = r.headers_mut();
                    h.insert(header::CONTENT_TYPE, hv(&stored.media_type));
                    h.insert(header::CONTENT_LENGTH, hv(&stored.size.to_string()));
                    h.insert(DOCKER_CONTENT_DIGEST, hv(&stored.digest.to_string()));
                    h.insert(header::ETAG, hv(&format!("\"{}\"", stored.digest)));
                    Ok(r)
                }
                Method::PUT => {
                    let limit = registry.limits().manifest_max_bytes;
                    if content_length(&headers).is_some_and(|n| n > limit as u64) {
                        return Err(RegistryError::ManifestTooLarge { limit });
                    }
                    let content_type = headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = read_limited(req.into_body(), limit).await?;
                    let pushed = registry
                        .put_manifest(&repo, &reference, content_type.as_deref(), body)
                        .await?;
                    let mut r = empty(StatusCode::CREATED);
                    let h = r.headers_mut();
                    h.insert(
                        header::LOCATION,
                        hv(&format!("/v2/{repo}/manifests/{}", pushed.digest)),
                    );
                    h.insert(DOCKER_CONTENT_DIGEST, hv(&pushed.digest.to_string()));
                    if let Some(subject) = &pushed.subject {
                        h.insert(OCI_SUBJECT, hv(&subject.to_string()));
                    }
                    Ok(r)
                }
                _ => {
                    registry.delete_manifest(&repo, &reference).await?;
                    Ok(empty(StatusCode::ACCEPTED))
                }
            }
        }
        Endpoint::Blob(repo, digest) => {
            let actions: &[Action] = match method {
                Method::GET | Method::HEAD => &[Action::Pull],
                Method::DELETE => &[Action::Delete],
                ref m => return Err(method_not_allowed(m)),
            };
            *identity = Some(authorize(state, &headers, &[repo_access(&repo, actions)]).await?);
            let digest = Digest::parse(&digest)?;
            if method == Method::DELETE {
                registry.delete_blob(&repo, &digest).await?;
                return Ok(empty(StatusCode::ACCEPTED));
            }
            let info = registry.stat_blob(&repo, &digest).await?;
            let (status, offset, len) = match headers.get(header::RANGE) {
                Some(range) => {
                    let (offset, len) = parse_range(range, info.size)?;
                    (StatusCode::PARTIAL_CONTENT, offset, len)
                }
                None => (StatusCode::OK, 0, info.size),
            };
            let body = if is_head {
                Body::empty()
            } else {
                Body::from_stream(registry.read_blob(&digest, offset, len).await?)
            };
            let mut r = Response::new(body);
            *r.status_mut() = status;
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
            h.insert(DOCKER_CONTENT_DIGEST, hv(&digest.to_string()));
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            h.insert(header::ETAG, hv(&format!("\"{digest}\"")));
            if status == StatusCode::PARTIAL_CONTENT {
                h.insert(
                    header::CONTENT_RANGE,
                    hv(&format!(
                        "bytes {}-{}/{}",
                        offset,
                        offset + len - 1,
                        info.size
                    )),
                );
            }
            Ok(r)
        }
        Endpoint::UploadStart(repo) => {
            if method != Method::POST {
                return Err(method_not_allowed(&method));
            }
            let target = repo_access(&repo, &[Action::Pull, Action::Push]);
            match authorize(state, &headers, std::slice::from_ref(&target)).await {
                Ok(who) => *identity = Some(who),
                Err(RegistryError::Unauthorized { www_authenticate }) => {
                    // A mount also reads `from`: name its pull scope in the challenge too, so a
                    // client that asks for the scopes the challenge lists gets a token good for
                    // the mount (as Docker's registry does). Not required: without it the
                    // mount falls back to an upload.
                    let source = query(&pairs, "mount")
                        .and(query(&pairs, "from"))
                        .and_then(|f| RepoName::parse(f).ok())
                        .filter(|from| *from != repo);
                    let Some(source) = source else {
                        return Err(RegistryError::Unauthorized { www_authenticate });
                    };
                    let both = [target, repo_access(&source, &[Action::Pull])];
                    authorize(state, &headers, &both).await?;
                    return Err(RegistryError::Unauthorized { www_authenticate });
                }
                Err(e) => return Err(e),
            }
            let subject = upload_subject(&req, identity.as_ref());
            if let Some(mount) = query(&pairs, "mount") {
                let digest = Digest::parse(mount)?;
                if try_mount(state, &headers, &repo, &digest, query(&pairs, "from")).await? {
                    return Ok(blob_created(&repo, &digest));
                }
                // Not mountable: the spec's fallback is an ordinary upload session.
                let id = registry.start_upload(&repo, &subject).await?;
                return Ok(upload_accepted(StatusCode::ACCEPTED, &repo, &id, 0));
            }
            if let Some(digest) = query(&pairs, "digest") {
                let digest = Digest::parse(digest)?;
                registry
                    .upload_monolithic(&repo, &subject, &digest, body_stream(req.into_body()))
                    .await?;
                return Ok(blob_created(&repo, &digest));
            }
            let id = registry.start_upload(&repo, &subject).await?;
            Ok(upload_accepted(StatusCode::ACCEPTED, &repo, &id, 0))
        }
        Endpoint::Upload(repo, id) => {
            if !matches!(
                method,
                Method::GET | Method::PATCH | Method::PUT | Method::DELETE
            ) {
                return Err(method_not_allowed(&method));
            }
            *identity = Some(
                authorize(
                    state,
                    &headers,
                    &[repo_access(&repo, &[Action::Pull, Action::Push])],
                )
                .await?,
            );
            match method {
                Method::GET => {
                    let size = registry.upload_size(&repo, &id).await?;
                    Ok(upload_accepted(StatusCode::NO_CONTENT, &repo, &id, size))
                }
                Method::PATCH => {
                    let range = parse_content_range(&headers)?;
                    if let (Some((start, end)), Some(len)) = (range, content_length(&headers)) {
                        if end.checked_sub(start).map(|d| d + 1) != Some(len) {
                            return Err(RegistryError::SizeInvalid(format!(
                                "Content-Range {start}-{end} does not match Content-Length {len}"
                            )));
                        }
                    }
                    let size = registry
                        .append_upload(&repo, &id, range, body_stream(req.into_body()))
                        .await?;
                    Ok(upload_accepted(StatusCode::ACCEPTED, &repo, &id, size))
                }
                Method::PUT => {
                    let digest = query(&pairs, "digest").ok_or_else(|| {
                        RegistryError::DigestInvalid(
                            "the digest query parameter is required".to_string(),
                        )
                    })?;
                    let digest = Digest::parse(digest)?;
                    let range = parse_content_range(&headers)?;
                    registry
                        .finish_upload(
                            &repo,
                            &id,
                            &digest,
                            range,
                            Some(body_stream(req.into_body())),
                        )
                        .await?;
                    Ok(blob_created(&repo, &digest))
                }
                _ => {
                    registry.cancel_upload(&repo, &id).await?;
                    Ok(empty(StatusCode::NO_CONTENT))
                }
            }
        }
        Endpoint::Referrers(repo, digest) => {
            *identity =
                Some(authorize(state, &headers, &[repo_access(&repo, &[Action::Pull])]).await?);
            if method != Method::GET {
                return Err(method_not_allowed(&method));
            }
            let digest = Digest::parse(&digest)?;
            let artifact_type = query(&pairs, "artifactType");
            let manifests = registry.referrers(&repo, &digest, artifact_type).await?;
            let index = serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
            let mut r = json(StatusCode::OK, OCI_INDEX, &index);
            if artifact_type.is_some() {
                r.headers_mut().insert(
                    OCI_FILTERS_APPLIED,
                    HeaderValue::from_static("artifactType"),
                );
            }
            Ok(r)
        }
    }
}

/// Cross-repository mount. With `from`, the caller must be allowed to pull from it; without,
/// any repository holding the blob that the caller may pull from will do.
async fn try_mount(
    state: &AppState,
    headers: &HeaderMap,
    target: &RepoName,
    digest: &Digest,
    from: Option<&str>,
) -> Result<bool, RegistryError> {
    let registry = &state.registry;
    let from = from.map(RepoName::parse).transpose()?;
    if registry.has_blob(target, digest).await? {
        return Ok(true);
    }
    let candidates = match from {
        Some(from) => vec![from],
        None => registry.repos_with_blob(digest).await?,
    };
    for source in candidates {
        if source == *target {
            continue;
        }
        let allowed = matches!(
            state
                .authorizer
                .authorize(headers, &[repo_access(&source, &[Action::Pull])])
                .await,
            AuthOutcome::Allowed(_)
        );
        if allowed && registry.mount_blob(target, digest, &source).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whom an upload session is counted against: the user, else the client's address.
fn upload_subject(req: &Request, identity: Option<&Identity>) -> String {
    if let Some(user) = identity.and_then(|i| i.subject.as_deref()) {
        return format!("user {user}");
    }
    match req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
    {
        Some(peer) => format!("address {}", crate::throttle::address_key(peer.0.ip())),
        None => "anonymous".to_string(),
    }
}

fn pagination(pairs: &[(String, String)]) -> Result<(Option<usize>, Option<&str>), RegistryError> {
    let n = match query(pairs, "n") {
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| RegistryError::PaginationInvalid(format!("n={n:?}")))?,
        ),
        None => None,
    };
    Ok((n, query(pairs, "last")))
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_from_the_end() {
        let repo = |s: &str| RepoName::parse(s).expect("valid");
        assert_eq!(parse_endpoint("/v2/").ok(), Some(Endpoint::Ping));
        assert_eq!(parse_endpoint("/v2").ok(), Some(Endpoint::Ping));
        assert_eq!(
            parse_endpoint("/v2/a/blobs/tags/list").ok(),
            Some(Endpoint::Tags(repo("a/blobs")))
        );
        assert_eq!(
            parse_endpoint("/v2/a/manifests/b/manifests/latest").ok(),
            Some(Endpoint::Manifest(repo("a/manifests/b"), "latest".into()))
        );
        assert_eq!(
            parse_endpoint("/v2/a/b/blobs/uploads/").ok(),
            Some(Endpoint::UploadStart(repo("a/b")))
        );
        assert_eq!(
            parse_endpoint("/v2/a/blobs/uploads/x1").ok(),
            Some(Endpoint::Upload(repo("a"), "x1".into()))
        );
        assert_eq!(
            parse_endpoint("/v2/a/blobs/sha256%3Aab").ok(),
            Some(Endpoint::Blob(repo("a"), "sha256:ab".into()))
        );
        assert!(matches!(
            parse_endpoint("/v2/../etc/manifests/x"),
            Err(RegistryError::NameInvalid { .. })
        ));
        assert!(matches!(
            parse_endpoint("/v2/a%2F..%2Fb/manifests/x"),
            Err(RegistryError::NameInvalid { .. })
        ));
        assert!(matches!(
            parse_endpoint("/v2/a/unknown"),
            Err(RegistryError::RouteUnknown { .. })
        ));
    }

    #[test]
    fn ranges() {
        let r = |s: &str, size| parse_range(&HeaderValue::from_str(s).expect("ascii"), size).ok();
        assert_eq!(r("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(r("bytes=90-", 100), Some((90, 10)));
        assert_eq!(r("bytes=-10", 100), Some((90, 10)));
        assert_eq!(r("bytes=50-1000", 100), Some((50, 50)));
        assert_eq!(r("bytes=100-", 100), None);
        assert_eq!(r("bytes=5-2", 100), None);
        assert_eq!(r("items=0-1", 100), None);
        assert_eq!(r("bytes=0-1,4-5", 100), None);
    }
}
