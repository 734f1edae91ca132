//! `/v2/<name>/manifests/<reference>`: GET and HEAD by tag or digest, PUT (size-capped before the
//! body is read), DELETE.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderName, Method, StatusCode, header};

use super::call::{Call, content_length};
use super::reply::{DOCKER_CONTENT_DIGEST, Empty, hv};
use crate::auth::Action;
use crate::error::RegistryError;
use crate::names::{NameError, Reference, RepoName};
use crate::services::manifests::{PushedManifest, StoredManifest};

const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");

pub(super) async fn handle(
    call: &mut Call<'_>,
    repo: &RepoName,
    reference: &str,
    body: Body,
) -> Result<Response, RegistryError> {
    let actions: &[Action] = match *call.method() {
        Method::GET | Method::HEAD => &[Action::Pull],
        Method::PUT => &[Action::Pull, Action::Push],
        Method::DELETE => &[Action::Delete],
        _ => return Err(call.method_not_allowed()),
    };
    call.authorize_repo(repo, actions).await?;
    let reference = match Reference::parse(reference) {
        Ok(reference) => reference,
        // No manifest can carry a tag outside the grammar, so reading or deleting one finds
        // nothing (404, as the conformance suite expects for `.INVALID_MANIFEST_NAME`); only
        // pushing one is the client's mistake (400).
        Err(NameError::Tag { tag }) if *call.method() != Method::PUT => {
            return Err(RegistryError::ManifestUnknown { reference: tag });
        }
        Err(e) => return Err(e.into()),
    };
    let registry = call.registry();
    let proxies = &call.state.proxy;
    if let Some(target) = proxies.target(repo) {
        if let Some(refusal) = proxies.write_refusal(repo)
            && !matches!(*call.method(), Method::GET | Method::HEAD)
        {
            return Err(refusal);
        }
        let (stored, body) = proxies
            .manifest(registry, repo, &target, &reference)
            .await?;
        let body = if *call.method() == Method::HEAD {
            Bytes::new()
        } else {
            body
        };
        return Ok(ManifestReply { stored, body }.into_response());
    }
    match *call.method() {
        Method::GET => {
            let (stored, body) = registry.get_manifest(repo, &reference).await?;
            Ok(ManifestReply { stored, body }.into_response())
        }
        Method::HEAD => {
            let stored = registry.stat_manifest(repo, &reference).await?;
            Ok(ManifestReply {
                stored,
                body: Bytes::new(),
            }
            .into_response())
        }
        Method::PUT => {
            let limit = registry.limits().manifest_max_bytes;
            if content_length(call.headers()).is_some_and(|n| n > limit as u64) {
                return Err(RegistryError::ManifestTooLarge { limit });
            }
            let content_type = call
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = read_limited(body, limit).await?;
            let pushed = call
                .registry()
                .put_manifest(repo, &reference, content_type.as_deref(), body)
                .await?;
            Ok(ManifestCreated {
                repo: repo.clone(),
                pushed,
            }
            .into_response())
        }
        _ => {
            registry.delete_manifest(repo, &reference).await?;
            Ok(Empty(StatusCode::ACCEPTED).into_response())
        }
    }
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

/// A stored manifest: its body (empty for HEAD) under its own media type, length and digest.
struct ManifestReply {
    stored: StoredManifest,
    body: Bytes,
}

impl IntoResponse for ManifestReply {
    fn into_response(self) -> Response {
        let ManifestReply { stored, body } = self;
        let mut r = Response::new(Body::from(body));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, hv(&stored.media_type));
        h.insert(header::CONTENT_LENGTH, hv(&stored.size.to_string()));
        h.insert(DOCKER_CONTENT_DIGEST, hv(&stored.digest.to_string()));
        h.insert(header::ETAG, hv(&format!("\"{}\"", stored.digest)));
        r
    }
}

/// 201 for a pushed manifest: where it lives, its digest, and its subject when it has one.
struct ManifestCreated {
    repo: RepoName,
    pushed: PushedManifest,
}

impl IntoResponse for ManifestCreated {
    fn into_response(self) -> Response {
        let ManifestCreated { repo, pushed } = self;
        let mut r = Empty(StatusCode::CREATED).into_response();
        let h = r.headers_mut();
        h.insert(
            header::LOCATION,
            hv(&format!("/v2/{repo}/manifests/{}", pushed.digest)),
        );
        h.insert(DOCKER_CONTENT_DIGEST, hv(&pushed.digest.to_string()));
        if let Some(subject) = &pushed.subject {
            h.insert(OCI_SUBJECT, hv(&subject.to_string()));
        }
        r
    }
}
