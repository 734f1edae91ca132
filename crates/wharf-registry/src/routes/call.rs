//! One request on its way through an endpoint family: its head, its query, and the identity the
//! authorizer granted; plus the request-side helpers the families share.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use futures_util::StreamExt;
use http::request::Parts;
use http::{HeaderMap, Method, header};

use crate::auth::{Access, Action, AuthErrorCode, AuthOutcome, Authorizer, Identity, ResourceKind};
use crate::body_pacing::BodyPacing;
use crate::client_addr::TrustedProxies;
use crate::error::RegistryError;
use crate::metrics::Metrics;
use crate::names::RepoName;
use crate::proxy::Proxies;
use crate::services::Registry;
use crate::storage::ByteStream;
use crate::throttle::LoginThrottle;

/// What the routes need: the registry, who may do what, and the metrics.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub authorizer: Arc<dyn Authorizer>,
    pub metrics: Arc<Metrics>,
    /// The `[[proxy]]` pull-through caches.
    pub proxy: Arc<Proxies>,
    /// The failed-login throttle (`[limits]`).
    pub throttle: Arc<LoginThrottle>,
    /// Whose `X-Forwarded-For` names the client (`trusted_proxies`).
    pub trusted_proxies: Arc<TrustedProxies>,
}

/// One request on its way through an endpoint: its head (the body goes separately to the
/// endpoints that read one), its query, and who the authorizer said the caller is (kept for the
/// access log even when the operation fails).
pub(super) struct Call<'a> {
    pub(super) state: &'a AppState,
    pub(super) parts: Parts,
    pub(super) query: Vec<(String, String)>,
    pub(super) identity: Option<Identity>,
}

impl Call<'_> {
    pub(super) fn registry(&self) -> &Registry {
        &self.state.registry
    }

    pub(super) fn method(&self) -> &Method {
        &self.parts.method
    }

    pub(super) fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    pub(super) fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Asks the authorizer for `wanted`; remembers the identity when allowed.
    pub(super) async fn authorize(&mut self, wanted: &[Access]) -> Result<(), RegistryError> {
        let identity = authorize(self.state, &self.parts.headers, wanted).await?;
        self.identity = Some(identity);
        Ok(())
    }

    /// Asks for `actions` on `repo`.
    pub(super) async fn authorize_repo(
        &mut self,
        repo: &RepoName,
        actions: &[Action],
    ) -> Result<(), RegistryError> {
        self.authorize(&[repo_access(repo, actions)]).await
    }

    pub(super) fn method_not_allowed(&self) -> RegistryError {
        RegistryError::MethodNotAllowed {
            method: self.method().to_string(),
        }
    }
}

/// A request body as a stream into storage. A body of known length on a plain HTTP/1
/// connection is read with [`BodyPacing`] (fewer, larger reads) while the stream lives.
pub(super) fn body_stream(body: Body, parts: &Parts) -> ByteStream {
    let pacing = parts
        .extensions
        .get::<Arc<BodyPacing>>()
        .zip(content_length(&parts.headers))
        .map(|(pacing, length)| pacing.expect_body(length));
    Box::pin(body.into_data_stream().map(move |r| {
        let _paced_while_read = &pacing;
        r.map_err(io::Error::other)
    }))
}

pub(super) fn query_pairs(parts: &Parts) -> Vec<(String, String)> {
    parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub(super) fn repo_access(repo: &RepoName, actions: &[Action]) -> Access {
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
            why,
        } => Err(RegistryError::Unauthorized {
            www_authenticate,
            why,
        }),
        AuthOutcome::Challenge {
            www_authenticate,
            error: AuthErrorCode::Denied,
            why,
        } => Err(RegistryError::Denied {
            www_authenticate: Some(www_authenticate),
            why,
        }),
    }
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
