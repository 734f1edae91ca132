//! `/v2/<name>/blobs/<digest>`: GET (whole or one byte range), HEAD, DELETE.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use super::call::Call;
use super::reply::{DOCKER_CONTENT_DIGEST, Empty, hv};
use crate::auth::Action;
use crate::error::RegistryError;
use crate::names::{Digest, RepoName};
use crate::proxy::BlobAnswer;

pub(super) async fn handle(
    call: &mut Call<'_>,
    repo: &RepoName,
    digest: &str,
) -> Result<Response, RegistryError> {
    let actions: &[Action] = match *call.method() {
        Method::GET | Method::HEAD => &[Action::Pull],
        Method::DELETE => &[Action::Delete],
        _ => return Err(call.method_not_allowed()),
    };
    call.authorize_repo(repo, actions).await?;
    let digest = Digest::parse(digest)?;
    let registry = call.registry();
    if *call.method() == Method::DELETE {
        if let Some(refusal) = call.state.proxy.write_refusal(repo) {
            return Err(refusal);
        }
        registry.delete_blob(repo, &digest).await?;
        return Ok(Empty(StatusCode::ACCEPTED).into_response());
    }
    if let Some(target) = call.state.proxy.target(repo) {
        let head = *call.method() == Method::HEAD;
        // A range of a blob not stored yet waits for the whole fetch, then is read from storage.
        let answer = call
            .state
            .proxy
            .blob(registry, repo, &target, &digest, head)
            .await?;
        match answer {
            BlobAnswer::Stored => {}
            BlobAnswer::Length(length) => return Ok(streamed(digest, length, Body::empty())),
            BlobAnswer::Streaming { length, body }
                if call.headers().get(header::RANGE).is_none() =>
            {
                return Ok(streamed(digest, length, Body::from_stream(body)));
            }
            BlobAnswer::Streaming { mut body, .. } => {
                use futures_util::StreamExt as _;
                while let Some(chunk) = body.next().await {
                    chunk.map_err(|e| RegistryError::Upstream {
                        message: e.to_string(),
                    })?;
                }
            }
        }
    }
    let info = registry.stat_blob(repo, &digest).await?;
    let range = match call.headers().get(header::RANGE) {
        Some(range) => Some(parse_range(range, info.size)?),
        None => None,
    };
    // After the access, link and range checks: the URL lets anyone holding it read the blob until it
    // expires. A `Range` header is re-sent by the client to the URL (S3 answers 206 itself).
    if let Some(url) = registry
        .storage()
        .blob_redirect(&digest, call.method())
        .await?
    {
        let mut r = Empty(StatusCode::TEMPORARY_REDIRECT).into_response();
        let h = r.headers_mut();
        h.insert(header::LOCATION, hv(&url));
        h.insert(DOCKER_CONTENT_DIGEST, hv(&digest.to_string()));
        return Ok(r);
    }
    let (offset, len) = range.unwrap_or((0, info.size));
    let body = if *call.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(registry.read_blob(&digest, offset, len).await?)
    };
    Ok(BlobReply {
        digest,
        size: Some(info.size),
        range,
        body,
    }
    .into_response())
}

/// A blob of a pull-through cache on its way from the upstream (or a HEAD answered by it):
/// `Content-Length` only when the upstream sent one.
fn streamed(digest: Digest, length: Option<u64>, body: Body) -> Response {
    BlobReply {
        digest,
        size: length,
        range: None,
        body,
    }
    .into_response()
}

/// A blob's bytes (or none, for HEAD): all of it, or `range` (offset, length) with 206. The
/// size is unknown only while a pull-through cache streams a blob whose upstream sent none.
struct BlobReply {
    digest: Digest,
    size: Option<u64>,
    range: Option<(u64, u64)>,
    body: Body,
}

impl IntoResponse for BlobReply {
    fn into_response(self) -> Response {
        let BlobReply {
            digest,
            size,
            range,
            body,
        } = self;
        let mut r = Response::new(body);
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(DOCKER_CONTENT_DIGEST, hv(&digest.to_string()));
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(header::ETAG, hv(&format!("\"{digest}\"")));
        match range {
            Some((offset, len)) => {
                h.insert(header::CONTENT_LENGTH, hv(&len.to_string()));
                h.insert(
                    header::CONTENT_RANGE,
                    hv(&format!(
                        "bytes {}-{}/{}",
                        offset,
                        offset + len - 1,
                        size.unwrap_or_default()
                    )),
                );
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            }
            None => {
                if let Some(size) = size {
                    h.insert(header::CONTENT_LENGTH, hv(&size.to_string()));
                }
            }
        }
        r
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
