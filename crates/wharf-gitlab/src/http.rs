//! HTTP to the instance and to `remote:` hosts: async reqwest on this crate's own
//! current-thread runtime, driven from a scoped thread so callers may be inside another runtime.

use crate::error::{Error, SettingsError};
use crate::settings::{Settings, Token, host_of};
use std::time::Duration;
use url::Url;

/// Redirects followed before giving up (GitLab's own HTTP client allows as many).
const MAX_REDIRECTS: usize = 10;

/// A successful answer (2xx) or "not modified" (304 to `If-None-Match`).
#[derive(Debug)]
pub(crate) enum Answer {
    Body(Body),
    NotModified,
}

#[derive(Debug)]
pub(crate) struct Body {
    pub text: String,
    pub etag: Option<String>,
    /// GitLab's `X-Gitlab-Commit-Id` (files API): the commit the file was read at.
    pub commit: Option<String>,
}

pub(crate) struct Http {
    /// Always `Some` until dropped (see the `Drop` impl).
    runtime: Option<tokio::runtime::Runtime>,
    client: reqwest::Client,
    instance_host: String,
    token: Option<Token>,
    max_bytes: usize,
}

impl Http {
    pub fn new(settings: &Settings) -> Result<Http, SettingsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SettingsError::Client(e.to_string()))?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            // Redirects are followed by hand: the token must not follow one to another host.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60));
        for entry in &settings.resolve {
            builder = builder.resolve(&entry.host, entry.addr);
        }
        if let Some(path) = &settings.ca_file {
            builder = builder.tls_certs_merge(Http::read_ca_file(path)?);
        }
        let client = builder
            .build()
            .map_err(|e| SettingsError::Client(e.to_string()))?;
        Ok(Http {
            runtime: Some(runtime),
            client,
            instance_host: settings.host(),
            token: settings.token.clone(),
            max_bytes: settings.max_file_bytes,
        })
    }

    /// The certificates of a `--gitlab-ca-file`.
    pub fn read_ca_file(
        path: &std::path::Path,
    ) -> Result<Vec<reqwest::Certificate>, SettingsError> {
        let bad = |reason: String| SettingsError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in the file".into()));
        }
        Ok(certs)
    }

    /// GET `url`, following https redirects; the token goes only to the instance's host.
    pub fn get(&self, url: &Url, if_none_match: Option<&str>) -> Result<Answer, Error> {
        let work = self.get_async(url.clone(), if_none_match.map(str::to_string));
        let Some(runtime) = &self.runtime else {
            return Err(Error::Unreachable {
                url: url.to_string(),
                reason: "the HTTP client was shut down".into(),
            });
        };
        // On a thread of its own: `block_on` panics on a thread that already runs a runtime.
        std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(work))
                .join()
                .unwrap_or_else(|_| {
                    Err(Error::Unreachable {
                        url: url.to_string(),
                        reason: "the HTTP client thread panicked".into(),
                    })
                })
        })
    }

    /// GET a JSON API answer.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, url: &Url) -> Result<T, Error> {
        match self.get(url, None)? {
            Answer::Body(body) => serde_json::from_str(&body.text).map_err(|e| Error::BadBody {
                url: url.to_string(),
                reason: format!("not the JSON GitLab answers ({e})"),
            }),
            Answer::NotModified => Err(Error::BadBody {
                url: url.to_string(),
                reason: "304 Not Modified to a request without If-None-Match".into(),
            }),
        }
    }

    async fn get_async(&self, start: Url, if_none_match: Option<String>) -> Result<Answer, Error> {
        let mut url = start;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.client.get(url.clone());
            if let Some(token) = &self.token {
                if host_of(&url).eq_ignore_ascii_case(&self.instance_host) {
                    request = request.header(token.header_name(), token.secret());
                }
            }
            if let Some(etag) = &if_none_match {
                request = request.header(reqwest::header::IF_NONE_MATCH, etag);
            }
            let response = request.send().await.map_err(|e| Error::Unreachable {
                url: url.to_string(),
                reason: error_chain(&e),
            })?;
            let status = response.status();
            if status.is_redirection() && status.as_u16() != 304 {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| url.join(l).ok())
                    .ok_or_else(|| Error::Redirect {
                        url: url.to_string(),
                        reason: format!("{status} without a usable Location"),
                    })?;
                if location.scheme() != "https" {
                    return Err(Error::Redirect {
                        url: url.to_string(),
                        reason: format!(
                            "{status} to {location}: wharf follows redirects to https only"
                        ),
                    });
                }
                url = location;
                continue;
            }
            if status.as_u16() == 304 {
                return Ok(Answer::NotModified);
            }
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let etag = header("etag");
            let commit = header("x-gitlab-commit-id");
            let json = header("content-type").is_some_and(|t| t.contains("json"));
            let bytes = self.read_bounded(&url, response).await?;
            if !status.is_success() {
                return Err(Error::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    message: gitlab_message(&bytes),
                    json,
                });
            }
            let text = String::from_utf8(bytes).map_err(|_| Error::BadBody {
                url: url.to_string(),
                reason: "the file is not UTF-8 text".into(),
            })?;
            return Ok(Answer::Body(Body { text, etag, commit }));
        }
        Err(Error::Redirect {
            url: url.to_string(),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    async fn read_bounded(&self, url: &Url, response: reqwest::Response) -> Result<Vec<u8>, Error> {
        body_up_to(response, self.max_bytes)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => Error::TooLarge {
                    url: url.to_string(),
                    limit: self.max_bytes,
                },
                BodyError::Broken(reason) => Error::Unreachable {
                    url: url.to_string(),
                    reason,
                },
            })
    }
}

/// Why a body was not read whole.
pub(crate) enum BodyError {
    /// Past the bound (announced, or read).
    TooLarge,
    /// The connection broke (or timed out) before the end: the error with its causes.
    Broken(String),
}

/// `response`'s body, at most `limit` bytes: a larger `Content-Length` is refused before the
/// body is read, and a body without one stops being read at the bound.
pub(crate) async fn body_up_to(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|announced| announced > limit as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| BodyError::Broken(error_chain(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl Drop for Http {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside the caller's async context (wharf
        // drops its loader there); shutting down in the background does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// GitLab's error bodies are `{"message": "404 Project Not Found"}` (or `{"error": ...}`).
fn gitlab_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = value.get("message").or_else(|| value.get("error"))?;
    Some(match message {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// An error with its causes (reqwest's top level alone says only "error sending request").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
