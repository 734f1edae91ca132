//! What the endpoint families answer with: bodies without content, JSON documents, and the one
//! pagination of listings (catalog and tags: `n`/`last` in, a `Link` to the next page out).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode, header};

use super::call::Call;
use crate::error::RegistryError;
use crate::services::tags::{Page, paginate};

pub(super) const DOCKER_CONTENT_DIGEST: HeaderName =
    HeaderName::from_static("docker-content-digest");

pub(super) fn hv(s: &str) -> HeaderValue {
    // Every value passed here is built from validated names, digests and numbers.
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An answer without a body.
pub(super) struct Empty(pub(super) StatusCode);

impl IntoResponse for Empty {
    fn into_response(self) -> Response {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = self.0;
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        r
    }
}

/// A JSON document with its media type.
pub(super) struct Json {
    pub(super) content_type: &'static str,
    pub(super) value: serde_json::Value,
}

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        let body = self.value.to_string();
        let length = hv(&body.len().to_string());
        let mut r = Response::new(Body::from(body));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        r.headers_mut().insert(header::CONTENT_LENGTH, length);
        r
    }
}

/// The `n`/`last` parameters of a listing (catalog, tags) and the `Link` to its next page.
pub(super) struct Pagination {
    n: Option<usize>,
    last: Option<String>,
}

impl Pagination {
    pub(super) fn of(call: &Call<'_>) -> Result<Pagination, RegistryError> {
        let n = match call.query("n") {
            Some(n) => Some(
                n.parse::<usize>()
                    .map_err(|_| RegistryError::PaginationInvalid(format!("n={n:?}")))?,
            ),
            None => None,
        };
        Ok(Pagination {
            n,
            last: call.query("last").map(str::to_string),
        })
    }

    /// The page of `all` asked for, as `{"<key>": [...], ...extra}` with a `Link` header to the
    /// next page of `path` when there is one.
    pub(super) fn reply(
        &self,
        all: Vec<String>,
        path: &str,
        key: &str,
        mut document: serde_json::Map<String, serde_json::Value>,
    ) -> Response {
        let Page { items, more } = paginate(all, self.n, self.last.as_deref());
        let next = match (more, self.n, items.last()) {
            (true, Some(n), Some(last)) => Some(hv(&format!(
                "<{path}?n={n}&last={}>; rel=\"next\"",
                form_urlencoded::byte_serialize(last.as_bytes()).collect::<String>()
            ))),
            _ => None,
        };
        document.insert(key.to_string(), serde_json::json!(items));
        let mut r = Json {
            content_type: "application/json",
            value: serde_json::Value::Object(document),
        }
        .into_response();
        if let Some(link) = next {
            r.headers_mut().insert(header::LINK, link);
        }
        r
    }
}
