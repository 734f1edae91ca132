//! HTTP: one catch-all `/v2/{*rest}` route parsed by hand (repository names contain `/`), a small
//! dispatcher, and one file per endpoint family (`base`, `catalog`, `tags`, `manifests`, `blobs`,
//! `uploads`, `referrers`). Each family asks for the scopes its operations imply, calls the
//! services and answers with a typed reply. The families share `call` (the request on its way)
//! and `reply` (answers, pagination) and never import this file. No storage logic here.

mod base;
mod blobs;
mod call;
mod catalog;
mod manifests;
mod referrers;
mod reply;
mod tags;
mod uploads;

use crate::client_addr::resolve_client_addr;
use crate::throttle::throttle_logins;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::{HeaderName, HeaderValue};

pub use self::call::AppState;
use self::call::{Call, content_length, query_pairs};
use crate::auth::{Action, Identity};
use crate::error::RegistryError;
use crate::metrics::Metrics;
use crate::names::RepoName;

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// The registry's router. `extra` adds routes outside `/v2/` (the token service's realm);
/// every request, those included, goes through the access log and metrics.
pub fn router(state: AppState, extra: Router) -> Router {
    let metrics = state.metrics.clone();
    let metrics_for_route = state.metrics.clone();
    let throttle = state.throttle.clone();
    let trusted_proxies = state.trusted_proxies.clone();
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
        // Inside the access log and the metrics, so a throttled login (429) shows in both.
        .layer(middleware::from_fn_with_state(throttle, throttle_logins))
        .layer(middleware::from_fn_with_state(metrics, observe))
        // Outermost: the throttle, the log and the handlers see the client, not the balancer.
        .layer(middleware::from_fn_with_state(
            trusted_proxies,
            resolve_client_addr,
        ))
}

/// Access log (one line per request, never the `Authorization` header or query), metrics, and
/// the API version header on every response.
async fn observe(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let request_bytes = content_length(req.headers()).unwrap_or(0);
    // The address the limits count (behind a trusted balancer, the client it names).
    let client = req
        .extensions()
        .get::<crate::client_addr::ClientAddr>()
        .map(|c| c.0.to_string());
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
        client = client.as_deref().unwrap_or("-"),
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

async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut call = Call {
        state: &state,
        query: query_pairs(&parts),
        parts,
        identity: None,
    };
    let result = route(&mut call, body).await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if let Some(identity) = call.identity {
        response.extensions_mut().insert(identity);
    }
    response
}

/// Sends the call to its endpoint family. Authentication comes before any other answer, so an
/// anonymous probe learns nothing; but a malformed name is refused before authorizing anything
/// with it.
async fn route(call: &mut Call<'_>, body: Body) -> Result<Response, RegistryError> {
    let endpoint = parse_endpoint(call.parts.uri.path())?;
    // Pushes to a pull-through cache: refused once the caller is known to be allowed to push.
    if let Endpoint::UploadStart(repo) | Endpoint::Upload(repo, _) = &endpoint
        && let Some(refusal) = call.state.proxy.write_refusal(repo)
    {
        call.authorize_repo(repo, &[Action::Pull, Action::Push])
            .await?;
        return Err(refusal);
    }
    match endpoint {
        Endpoint::Ping => base::ping(call).await,
        Endpoint::Catalog => catalog::list(call).await,
        Endpoint::Tags(repo) => tags::list(call, &repo).await,
        Endpoint::Manifest(repo, reference) => {
            manifests::handle(call, &repo, &reference, body).await
        }
        Endpoint::Blob(repo, digest) => blobs::handle(call, &repo, &digest).await,
        Endpoint::UploadStart(repo) => uploads::start(call, &repo, body).await,
        Endpoint::Upload(repo, id) => uploads::session(call, &repo, &id, body).await,
        Endpoint::Referrers(repo, digest) => referrers::list(call, &repo, &digest).await,
    }
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
}
