//! `/v2/<name>/blobs/uploads/`: POST starts an upload (or mounts a blob from another repository,
//! or takes it whole with `?digest=`); `/v2/<name>/blobs/uploads/<id>`: GET its progress, PATCH a
//! chunk, PUT the last one with the digest, DELETE to cancel.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, Method, StatusCode, header};

use super::call::{Call, body_stream, content_length, repo_access};
use super::reply::{DOCKER_CONTENT_DIGEST, Empty, hv};
use crate::auth::{Action, AuthOutcome, Identity};
use crate::error::RegistryError;
use crate::names::{Digest, RepoName};
use crate::services::tags::RepoWalk;

const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");

/// `POST /v2/<name>/blobs/uploads/`, with `?mount=&from=` or `?digest=` or neither.
pub(super) async fn start(
    call: &mut Call<'_>,
    repo: &RepoName,
    body: Body,
) -> Result<Response, RegistryError> {
    if *call.method() != Method::POST {
        return Err(call.method_not_allowed());
    }
    let target = repo_access(repo, &[Action::Pull, Action::Push]);
    match call.authorize(std::slice::from_ref(&target)).await {
        Ok(()) => {}
        Err(unauthorized @ RegistryError::Unauthorized { .. }) => {
            // A mount also reads `from`: name its pull scope in the challenge too, so a client
            // that asks for the scopes the challenge lists gets a token good for the mount (as
            // Docker's registry does). Not required: without it the mount falls back to an
            // upload.
            let source = call
                .query("mount")
                .and(call.query("from"))
                .and_then(|f| RepoName::parse(f).ok())
                .filter(|from| from != repo);
            let Some(source) = source else {
                return Err(unauthorized);
            };
            call.authorize(&[target, repo_access(&source, &[Action::Pull])])
                .await?;
            return Err(unauthorized);
        }
        Err(e) => return Err(e),
    }
    let subject = upload_subject(call);
    if let Some(mount) = call.query("mount") {
        let digest = Digest::parse(mount)?;
        if try_mount(call, repo, &digest).await? {
            return Ok(BlobCreated { repo, digest }.into_response());
        }
        // Not mountable: the spec's fallback is an ordinary upload session.
        let id = call.registry().start_upload(repo, &subject).await?;
        return Ok(UploadAccepted::new(StatusCode::ACCEPTED, repo, &id, 0).into_response());
    }
    if let Some(digest) = call.query("digest") {
        let digest = Digest::parse(digest)?;
        call.registry()
            .upload_monolithic(repo, &subject, &digest, body_stream(body, &call.parts))
            .await?;
        return Ok(BlobCreated { repo, digest }.into_response());
    }
    let id = call.registry().start_upload(repo, &subject).await?;
    Ok(UploadAccepted::new(StatusCode::ACCEPTED, repo, &id, 0).into_response())
}

/// `/v2/<name>/blobs/uploads/<id>`: GET, PATCH, PUT, DELETE.
pub(super) async fn session(
    call: &mut Call<'_>,
    repo: &RepoName,
    id: &str,
    body: Body,
) -> Result<Response, RegistryError> {
    if !matches!(
        *call.method(),
        Method::GET | Method::PATCH | Method::PUT | Method::DELETE
    ) {
        return Err(call.method_not_allowed());
    }
    call.authorize_repo(repo, &[Action::Pull, Action::Push])
        .await?;
    match call.method().clone() {
        Method::GET => {
            let size = call.registry().upload_size(repo, id).await?;
            Ok(UploadAccepted::new(StatusCode::NO_CONTENT, repo, id, size).into_response())
        }
        Method::PATCH => {
            let range = parse_content_range(call.headers())?;
            if let (Some((start, end)), Some(len)) = (range, content_length(call.headers())) {
                if end.checked_sub(start).map(|d| d + 1) != Some(len) {
                    return Err(RegistryError::SizeInvalid(format!(
                        "Content-Range {start}-{end} does not match Content-Length {len}"
                    )));
                }
            }
            let size = call
                .registry()
                .append_upload(repo, id, range, body_stream(body, &call.parts))
                .await?;
            Ok(UploadAccepted::new(StatusCode::ACCEPTED, repo, id, size).into_response())
        }
        Method::PUT => {
            let digest = call.query("digest").ok_or_else(|| {
                RegistryError::DigestInvalid("the digest query parameter is required".to_string())
            })?;
            let digest = Digest::parse(digest)?;
            let range = parse_content_range(call.headers())?;
            call.registry()
                .finish_upload(
                    repo,
                    id,
                    &digest,
                    range,
                    Some(body_stream(body, &call.parts)),
                )
                .await?;
            Ok(BlobCreated { repo, digest }.into_response())
        }
        _ => {
            call.registry().cancel_upload(repo, id).await?;
            Ok(Empty(StatusCode::NO_CONTENT).into_response())
        }
    }
}

/// How many storage calls (folder listings and link checks) a mount without `from` may spend
/// looking for a repository that holds the blob: about 128 repositories. Any client allowed to
/// push may send such mounts, so their cost must not grow with the number of repositories (on S3
/// each call is a request). Clients that know the source send `from` (docker, podman, skopeo,
/// containerd), and a mount that finds none is an ordinary upload, as the spec allows.
const AUTO_MOUNT_STORAGE_CALLS: usize = 256;

/// Cross-repository mount. With `from`, the caller must be allowed to pull from it; without,
/// any repository holding the blob that the caller may pull from will do, among those a bounded
/// search reaches (`AUTO_MOUNT_STORAGE_CALLS`).
async fn try_mount(
    call: &Call<'_>,
    target: &RepoName,
    digest: &Digest,
) -> Result<bool, RegistryError> {
    let registry = call.registry();
    let from = call.query("from").map(RepoName::parse).transpose()?;
    if registry.has_blob(target, digest).await? {
        return Ok(true);
    }
    if let Some(source) = from {
        return Ok(source != *target
            && may_pull(call, &source).await
            && registry.mount_blob(target, digest, &source).await?);
    }
    if registry.storage().blob_info(digest).await?.is_none() {
        return Ok(false);
    }
    let mut walk = RepoWalk::with_budget(AUTO_MOUNT_STORAGE_CALLS);
    while let Some(source) = registry.next_repo_with_blob(&mut walk, digest).await? {
        if source != *target
            && may_pull(call, &source).await
            && registry.mount_blob(target, digest, &source).await?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn may_pull(call: &Call<'_>, repo: &RepoName) -> bool {
    matches!(
        call.state
            .authorizer
            .authorize(call.headers(), &[repo_access(repo, &[Action::Pull])])
            .await,
        AuthOutcome::Allowed(_)
    )
}

/// Whom an upload session is counted against: the user, else the client's address.
fn upload_subject(call: &Call<'_>) -> String {
    if let Some(user) = call
        .identity
        .as_ref()
        .and_then(|i: &Identity| i.subject.as_deref())
    {
        return format!("user {user}");
    }
    match call
        .parts
        .extensions
        .get::<crate::client_addr::ClientAddr>()
    {
        Some(client) => format!("address {}", crate::throttle::address_key(client.0)),
        None => "anonymous".to_string(),
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

/// An open upload session: where to send the next chunk and how much has arrived, as
/// `Range: 0-<last byte>` (`0-0` when empty, as the spec reports it).
struct UploadAccepted {
    status: StatusCode,
    location: String,
    id: String,
    size: u64,
}

impl UploadAccepted {
    fn new(status: StatusCode, repo: &RepoName, id: &str, size: u64) -> UploadAccepted {
        UploadAccepted {
            status,
            location: format!("/v2/{repo}/blobs/uploads/{id}"),
            id: id.to_string(),
            size,
        }
    }
}

impl IntoResponse for UploadAccepted {
    fn into_response(self) -> Response {
        let mut r = Empty(self.status).into_response();
        let h = r.headers_mut();
        h.insert(header::LOCATION, hv(&self.location));
        h.insert(
            header::RANGE,
            hv(&format!("0-{}", self.size.saturating_sub(1))),
        );
        h.insert(DOCKER_UPLOAD_UUID, hv(&self.id));
        r
    }
}

/// 201 for a blob now in the repository (uploaded or mounted).
struct BlobCreated<'a> {
    repo: &'a RepoName,
    digest: Digest,
}

impl IntoResponse for BlobCreated<'_> {
    fn into_response(self) -> Response {
        let mut r = Empty(StatusCode::CREATED).into_response();
        r.headers_mut().insert(
            header::LOCATION,
            hv(&format!("/v2/{}/blobs/{}", self.repo, self.digest)),
        );
        r.headers_mut()
            .insert(DOCKER_CONTENT_DIGEST, hv(&self.digest.to_string()));
        r
    }
}
