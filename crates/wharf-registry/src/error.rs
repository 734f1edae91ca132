//! Every OCI error code and its HTTP status, in this one file.
//!
//! Services return [`RegistryError`]; the routes turn it into the spec's error body
//! `{"errors":[{"code","message","detail"}]}`. Bad input from clients is always a 4xx: only
//! failures of the server's own storage are 500, or 507 when it is full.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::names::NameError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob unknown to registry: {digest}")]
    BlobUnknown { digest: String },
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown to registry: {id}")]
    BlobUploadUnknown { id: String },
    #[error("provided digest did not match uploaded content or is malformed: {0}")]
    DigestInvalid(String),
    #[error("manifest references a blob or manifest unknown to this repository: {digest}")]
    ManifestBlobUnknown { digest: String },
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest unknown: {reference}")]
    ManifestUnknown { reference: String },
    #[error("manifest is larger than the limit of {limit} bytes")]
    ManifestTooLarge { limit: usize },
    #[error("invalid repository name {name:?}: {reason}")]
    NameInvalid { name: String, reason: &'static str },
    #[error("repository name not known to registry: {name}")]
    NameUnknown { name: String },
    #[error("invalid tag {tag:?}: a tag is [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")]
    TagInvalid { tag: String },
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    #[error("invalid pagination parameter: {0}")]
    PaginationInvalid(String),
    /// `why` is the error's `detail` (see `AuthOutcome::Challenge`).
    #[error("authentication required")]
    Unauthorized {
        www_authenticate: String,
        why: String,
    },
    #[error("requested access to the resource is denied")]
    Denied {
        www_authenticate: Option<String>,
        why: String,
    },
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    #[error("method {method} not allowed on this endpoint")]
    MethodNotAllowed { method: String },
    #[error("no such endpoint: {path}")]
    RouteUnknown { path: String },
    #[error("too many requests: {message}")]
    TooManyRequests {
        message: String,
        /// Seconds for the `Retry-After` header.
        retry_after: Option<u64>,
    },
    #[error("requested range not satisfiable: {message}")]
    RangeInvalid {
        message: String,
        /// The size of the blob or upload, for `Content-Range: bytes */<size>` or the upload's
        /// current `Range`.
        size: u64,
        /// Upload range errors report the upload's progress in `Range` instead.
        upload: bool,
    },
    /// A write to a repository of a pull-through cache.
    #[error(
        "repository {repo} is a pull-through cache of {upstream}: it cannot be pushed to or deleted from; push to a repository outside the prefix {prefix}"
    )]
    ProxyReadOnly {
        repo: String,
        upstream: String,
        prefix: String,
    },
    /// The upstream of a pull-through cache failed and nothing cached could answer instead;
    /// `message` names the upstream (and the credential source when it refused them).
    #[error("{message}")]
    Upstream { message: String },
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
}

/// A refused name keeps the message clients have always seen, under its own OCI code.
impl From<NameError> for RegistryError {
    fn from(error: NameError) -> Self {
        match error {
            NameError::Repository { name, reason } => RegistryError::NameInvalid { name, reason },
            NameError::Tag { tag } => RegistryError::TagInvalid { tag },
            NameError::Digest(detail) => RegistryError::DigestInvalid(detail),
        }
    }
}

impl RegistryError {
    /// The OCI error code and HTTP status: the single place where both are decided.
    pub fn code_and_status(&self) -> (&'static str, StatusCode) {
        use RegistryError as E;
        match self {
            E::BlobUnknown { .. } => ("BLOB_UNKNOWN", StatusCode::NOT_FOUND),
            E::BlobUploadInvalid(_) => ("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST),
            E::BlobUploadUnknown { .. } => ("BLOB_UPLOAD_UNKNOWN", StatusCode::NOT_FOUND),
            E::DigestInvalid(_) => ("DIGEST_INVALID", StatusCode::BAD_REQUEST),
            E::ManifestBlobUnknown { .. } => ("MANIFEST_BLOB_UNKNOWN", StatusCode::BAD_REQUEST),
            E::ManifestInvalid(_) => ("MANIFEST_INVALID", StatusCode::BAD_REQUEST),
            E::ManifestUnknown { .. } => ("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND),
            E::ManifestTooLarge { .. } => ("SIZE_INVALID", StatusCode::PAYLOAD_TOO_LARGE),
            E::NameInvalid { .. } => ("NAME_INVALID", StatusCode::BAD_REQUEST),
            E::NameUnknown { .. } => ("NAME_UNKNOWN", StatusCode::NOT_FOUND),
            E::TagInvalid { .. } => ("MANIFEST_INVALID", StatusCode::BAD_REQUEST),
            E::SizeInvalid(_) => ("SIZE_INVALID", StatusCode::BAD_REQUEST),
            E::PaginationInvalid(_) => ("PAGINATION_NUMBER_INVALID", StatusCode::BAD_REQUEST),
            E::Unauthorized { .. } => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
            E::Denied { .. } => ("DENIED", StatusCode::FORBIDDEN),
            E::Unsupported(_) => ("UNSUPPORTED", StatusCode::BAD_REQUEST),
            E::MethodNotAllowed { .. } => ("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED),
            E::RouteUnknown { .. } => ("UNSUPPORTED", StatusCode::NOT_FOUND),
            E::TooManyRequests { .. } => ("TOOMANYREQUESTS", StatusCode::TOO_MANY_REQUESTS),
            E::RangeInvalid { .. } => ("RANGE_INVALID", StatusCode::RANGE_NOT_SATISFIABLE),
            E::ProxyReadOnly { .. } => ("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED),
            E::Upstream { .. } => ("UNKNOWN", StatusCode::BAD_GATEWAY),
            E::BodyRead(_) => ("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST),
            E::Storage(StorageError::OffsetMismatch { .. }) => {
                ("RANGE_INVALID", StatusCode::RANGE_NOT_SATISFIABLE)
            }
            E::Storage(StorageError::Stream(_) | StorageError::TooManyChunks { .. }) => {
                ("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST)
            }
            E::Storage(e) if e.is_full() => ("UNKNOWN", StatusCode::INSUFFICIENT_STORAGE),
            E::Storage(_) => ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// What the client reads. A failure of the storage is the registry operator's to fix:
    /// the client learns what failed, never the server's paths, bucket or endpoint (the log
    /// has them).
    fn client_message(&self) -> String {
        match self {
            RegistryError::Storage(e) if e.is_full() => "the registry's storage is full: \
                 nothing of this request was kept. Its operator must free space \
                 (`wharf registry gc` removes blobs no manifest uses) or add capacity; \
                 then push again"
                .to_string(),
            RegistryError::Storage(StorageError::Io { op, .. }) => format!(
                "the registry's storage failed ({op}); its log names the cause: try again, \
                 or tell the registry's operator if it goes on"
            ),
            RegistryError::Storage(StorageError::Config(_)) => "the registry cannot use its \
                 storage; its log names the cause: tell the registry's operator"
                .to_string(),
            _ => self.to_string(),
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let detail = match &self {
            RegistryError::Unauthorized { why, .. } | RegistryError::Denied { why, .. }
                if !why.is_empty() =>
            {
                serde_json::Value::from(why.as_str())
            }
            _ => serde_json::Value::Null,
        };
        let body = serde_json::json!({
            "errors": [{ "code": code, "message": self.client_message(), "detail": detail }]
        });
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let challenge = match &self {
            RegistryError::Unauthorized {
                www_authenticate, ..
            } => Some(www_authenticate.as_str()),
            RegistryError::Denied {
                www_authenticate, ..
            } => www_authenticate.as_deref(),
            _ => None,
        };
        if let Some(value) = challenge
            .filter(|v| !v.is_empty())
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        match &self {
            RegistryError::TooManyRequests {
                retry_after: Some(seconds),
                ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
            }
            RegistryError::RangeInvalid {
                size,
                upload: false,
                ..
            } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            RegistryError::RangeInvalid {
                size, upload: true, ..
            }
            | RegistryError::Storage(StorageError::OffsetMismatch { actual: size, .. }) => {
                let end = size.saturating_sub(1);
                if let Ok(v) = HeaderValue::from_str(&format!("0-{end}")) {
                    headers.insert(header::RANGE, v);
                }
            }
            _ => {}
        }
        response
    }
}
