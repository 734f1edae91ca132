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
    let asked_range = call.headers().get(header::RANGE);
    let range = match asked_range {
        Some(range) => parse_range(range, info.size)?,
        None => None,
    };
    // After the access, link and range checks: the URL lets anyone holding it read the blob until it
    // expires. A `Range` header is re-sent by the client to the URL (S3 answers 206 itself); one
    // this registry ignores is answered here, whole, as S3 servers differ on it.
    let ignored_range = asked_range.is_some() && range.is_none();
    if !ignored_range
        && let Some(url) = registry
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

/// A `Range: bytes=...` request header against a blob of `size` bytes: `(offset, len)`, or
/// `None` for a header to ignore and answer with the whole blob (200), as RFC 9110 (14.2) has
/// it: a range unit other than bytes must be ignored, and several ranges may be (AWS S3
/// ignores them too). A last byte past the end, however many digits it has, means the end. A
/// malformed or unsatisfiable range is refused with 416.
fn parse_range(value: &HeaderValue, size: u64) -> Result<Option<(u64, u64)>, RegistryError> {
    let bad = |message: &str| RegistryError::RangeInvalid {
        message: message.to_string(),
        size,
        upload: false,
    };
    let s = value.to_str().map_err(|_| bad("not ASCII"))?.trim();
    let Some((unit, spec)) = s.split_once('=') else {
        return Err(bad("expected bytes=<start>-<end>"));
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| bad("expected bytes=<start>-<end>"))?;
    let (a, b) = (a.trim(), b.trim());
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|c| c.is_ascii_digit());
    // Digits only (Rust's parse takes a `+`); past u64, further than any blob reaches.
    let number = |text: &str, what: &str| {
        if digits(text) {
            Ok(text.parse::<u64>().unwrap_or(u64::MAX))
        } else {
            Err(bad(what))
        }
    };
    let (start, end) = if a.is_empty() {
        let suffix = number(b, "invalid suffix length")?;
        if suffix == 0 {
            return Err(bad("empty suffix range"));
        }
        (size.saturating_sub(suffix), size.saturating_sub(1))
    } else {
        let start = number(a, "invalid start")?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            number(b, "invalid end")?
        };
        if end < start {
            return Err(bad("the range ends before it starts"));
        }
        (start, end.min(size.saturating_sub(1)))
    };
    if size == 0 || start >= size {
        return Err(bad("range outside the blob"));
    }
    Ok(Some((start, end - start + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = |s: &str, size| parse_range(&HeaderValue::from_str(s).expect("ascii"), size);
        let served = |s: &str, size| r(s, size).expect(s);
        let refused = |s: &str, size| {
            assert!(
                matches!(r(s, size), Err(RegistryError::RangeInvalid { .. })),
                "{s}: {:?}",
                r(s, size)
            )
        };
        assert_eq!(served("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(served("bytes=90-", 100), Some((90, 10)));
        assert_eq!(served("bytes=-10", 100), Some((90, 10)));
        assert_eq!(served("bytes=-1000", 100), Some((0, 100)));
        assert_eq!(served("bytes=50-1000", 100), Some((50, 50)));
        assert_eq!(served("Bytes=0-1", 100), Some((0, 2)));
        assert_eq!(served("bytes= 0-1", 100), Some((0, 2)));
        // RFC 9110: a last byte past the end means the end, however large the number.
        assert_eq!(served("bytes=0-99999999999999999999", 100), Some((0, 100)));
        assert_eq!(served("bytes=-99999999999999999999", 100), Some((0, 100)));
        // An unknown unit must be ignored, several ranges may be: the whole blob, 200.
        assert_eq!(served("items=0-1", 100), None);
        assert_eq!(served("bytes=0-1,4-5", 100), None);
        assert_eq!(served("bytes=0-0,1-1,2-2", 100), None);
        refused("bytes=100-", 100);
        refused("bytes=99999999999999999999-", 100);
        refused("bytes=5-2", 100);
        refused("bytes=a-b", 100);
        refused("bytes=-0", 100);
        refused("bytes=0-1", 0);
        refused("bytes", 100);
        refused("bytes=+1-2", 100);
    }
}
