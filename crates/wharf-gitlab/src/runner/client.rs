//! The runner's calls to GitLab (gitlab-runner `network/gitlab.go`): verify, request a job,
//! patch its trace, update its state. Tokens travel in headers and bodies only; no error
//! quotes a body of ours or a header.

use super::spec::{JobOutcome, JobPayload, JobState, RunnerDescription};
use crate::http::{BodyError, body_up_to, error_chain};
use crate::settings::{Token, TokenKind, strip_userinfo};
use serde::Serialize;
use std::time::Duration;
use url::Url;

/// Why a runner call failed. Messages name the method, URL and status, never a token.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("runner URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("{method} {url}: {status}{}{}", message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default(), if hint.is_empty() { String::new() } else { format!("\n  fix: {hint}") })]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        message: Option<String>,
        /// What to do about it (empty when nothing specific).
        hint: &'static str,
    },
    #[error("{method} {url}: {reason}")]
    Unreachable {
        method: &'static str,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: the answer is not the JSON expected: {reason}")]
    BadBody {
        method: &'static str,
        url: String,
        reason: String,
    },
    /// Refused on this side, not worth another try (an archive over the size limit).
    #[error("{method} {url}: {reason}")]
    Refused {
        method: &'static str,
        url: String,
        reason: String,
    },
    #[error(
        "job {id}: GitLab no longer gives this job to this runner (canceled, or taken by another runner): not run"
    )]
    JobGone { id: u64 },
    #[error("starting the HTTP client: {0}")]
    Client(String),
}

impl RunnerError {
    pub fn status(&self) -> Option<u16> {
        match self {
            RunnerError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the same request may succeed later: no answer, or a 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            RunnerError::Unreachable { .. } => true,
            RunnerError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// GitLab's view of a job, from the `Job-Status` header of trace and update answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteJobStatus {
    /// Running, or a status that does not stop the job.
    Running,
    /// `canceling`: stop gracefully (wharf stops it as it does on Ctrl-C).
    Canceling,
    /// `canceled` or `failed`: GitLab no longer wants this job's output.
    Aborted,
}

impl RemoteJobStatus {
    fn from_headers(headers: &reqwest::header::HeaderMap) -> RemoteJobStatus {
        match headers.get("Job-Status").and_then(|v| v.to_str().ok()) {
            Some("canceling") => RemoteJobStatus::Canceling,
            Some("canceled" | "failed") => RemoteJobStatus::Aborted,
            _ => RemoteJobStatus::Running,
        }
    }

    pub fn stops_the_job(self) -> bool {
        self != RemoteJobStatus::Running
    }
}

/// The answer to one trace patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchResult {
    /// 202: GitLab holds the log up to `end` (exclusive).
    Accepted,
    /// 416: GitLab holds `offset` bytes; send again from there.
    RangeMismatch { offset: usize },
    /// 403/404 (with `Job-Status`): the job is gone or over on GitLab's side.
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchAnswer {
    pub result: PatchResult,
    pub job_status: RemoteJobStatus,
    /// `X-GitLab-Trace-Update-Interval`.
    pub interval: Option<Duration>,
}

/// The answer to a job update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateResult {
    /// 200: done.
    Accepted,
    /// 202 (GitLab has not taken the whole trace yet) or 412 (checksum mismatch, GitLab
    /// re-reads): send again after the interval.
    TryAgain { interval: Option<Duration> },
    /// 403/404: the job is gone or over on GitLab's side; nothing more to send.
    Rejected,
}

/// A runner's identity at one GitLab: its URL and authentication token. Cloned for each job a
/// runner runs at once (the HTTP client inside is shared).
#[derive(Clone)]
pub struct RunnerClient {
    pub(super) http: reqwest::Client,
    /// `<url>/api/v4/`.
    pub(super) api: Url,
    token: Token,
    system_id: String,
    info: RunnerDescription,
    /// `X-GitLab-Last-Update` of the last 204: sent back so GitLab can answer quickly.
    last_update: Option<String>,
}

impl std::fmt::Debug for RunnerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerClient")
            .field("api", &self.api.as_str())
            .field("token", &self.token)
            .field("system_id", &self.system_id)
            .finish()
    }
}

#[derive(Serialize)]
struct RunnerRequest<'a> {
    info: &'a RunnerDescription,
    token: &'a str,
    system_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_update: Option<&'a str>,
}

#[derive(Serialize)]
struct UnregisterRequest<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_id: Option<&'a str>,
}

#[derive(Serialize)]
struct UpdateRequest<'a> {
    info: &'a RunnerDescription,
    token: &'a str,
    state: JobState,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<TraceOutput>,
}

/// The whole log's checksum and size, checked by GitLab against what it received.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TraceOutput {
    pub checksum: String,
    pub bytesize: u64,
}

impl TraceOutput {
    pub fn of(log: &[u8]) -> TraceOutput {
        TraceOutput {
            checksum: format!("crc32:{:08x}", crc32fast::hash(log)),
            bytesize: log.len() as u64,
        }
    }
}

/// What `POST runners/verify` says about the token.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct VerifiedRunner {
    pub id: u64,
    #[serde(default)]
    pub token_expires_at: Option<String>,
}

impl RunnerClient {
    /// A client for the GitLab at `url` (its root, e.g. `https://gitlab.example.com`).
    pub fn new(url: &str, token: &str, executor: &str) -> Result<RunnerClient, RunnerError> {
        let bad = |reason: &str| RunnerError::Url {
            url: strip_userinfo(url),
            reason: reason.to_string(),
        };
        let root = Url::parse(url.trim_end_matches('/')).map_err(|e| bad(&e.to_string()))?;
        if !matches!(root.scheme(), "http" | "https") {
            return Err(bad("expected an http:// or https:// URL"));
        }
        // The URL is in every message about a request: credentials in it would show there.
        if !root.username().is_empty() || root.password().is_some() {
            return Err(bad(
                "credentials do not go in the URL: the runner authenticates with its token",
            ));
        }
        if token.is_empty() {
            return Err(bad("the runner token is empty"));
        }
        let api = Url::parse(&format!("{}/api/v4/", root.as_str().trim_end_matches('/')))
            .map_err(|e| bad(&e.to_string()))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("wharf-runner/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            // GitLab's Workhorse holds job requests up to ~50 s (long polling).
            .timeout(Duration::from_secs(90))
            .redirect(same_origin_redirects())
            .build()
            .map_err(|e| RunnerError::Client(e.to_string()))?;
        Ok(RunnerClient {
            http,
            api,
            token: Token::new(TokenKind::Runner, token),
            system_id: system_id(),
            info: RunnerDescription::new(executor),
            last_update: None,
        })
    }

    /// The GitLab this runner belongs to (its API root), for messages.
    pub fn url(&self) -> &str {
        self.api.as_str()
    }

    /// `s_` + 12 hex characters, as gitlab-runner identifies the machine.
    pub fn system_id(&self) -> &str {
        &self.system_id
    }

    pub(super) fn endpoint(&self, path: &str) -> Url {
        // `path` is ours and relative: joining cannot fail.
        self.api.join(path).unwrap_or_else(|_| self.api.clone())
    }

    fn runner_request(&self) -> RunnerRequest<'_> {
        RunnerRequest {
            info: &self.info,
            token: self.token.secret(),
            system_id: &self.system_id,
            last_update: self.last_update.as_deref(),
        }
    }

    pub(super) async fn send(
        &self,
        method: &'static str,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RunnerError> {
        request
            .header("X-Request-Id", request_id())
            .send()
            .await
            .map_err(|e| RunnerError::Unreachable {
                method,
                url: url.to_string(),
                reason: error_chain(&e),
            })
    }

    /// `POST runners/verify`: is this token a runner's?
    pub async fn verify(&self) -> Result<VerifiedRunner, RunnerError> {
        let url = self.endpoint("runners/verify");
        let request = self
            .http
            .post(url.clone())
            .header(self.token.header_name(), self.token.secret())
            .json(&self.runner_request());
        let answer = self.send("POST", &url, request).await?;
        let status = answer.status().as_u16();
        if status == 403 {
            return Err(status_error("POST", &url, answer, "the runner token is invalid or the runner was removed: create a runner in GitLab (Settings > CI/CD > Runners) and use its glrt- token").await);
        }
        if !answer.status().is_success() {
            return Err(status_error("POST", &url, answer, "").await);
        }
        json_answer("POST", &url, answer).await
    }

    /// Remove this runner from GitLab, as `gitlab-runner unregister` (`network/gitlab.go`
    /// `UnregisterRunnerManager` / `UnregisterRunner`): a runner authentication token (`glrt-`)
    /// removes only this machine's runner manager (`DELETE runners/managers` with the
    /// `system_id` its job requests used; the runner stays in GitLab's UI), a legacy token the
    /// whole runner (`DELETE runners`). GitLab answers 204.
    pub async fn unregister(&self) -> Result<(), RunnerError> {
        let created_in_ui = self.token.secret().starts_with("glrt-");
        let (path, system_id) = if created_in_ui {
            ("runners/managers", Some(self.system_id.as_str()))
        } else {
            ("runners", None)
        };
        let url = self.endpoint(path);
        let request = self
            .http
            .delete(url.clone())
            .header(self.token.header_name(), self.token.secret())
            .json(&UnregisterRequest {
                token: self.token.secret(),
                system_id,
            });
        let answer = self.send("DELETE", &url, request).await?;
        match answer.status().as_u16() {
            204 => Ok(()),
            403 => Err(status_error(
                "DELETE",
                &url,
                answer,
                "GitLab does not know this token (the runner was removed in GitLab, or the token was reset): delete its [[runners]] entry from the config file by hand",
            )
            .await),
            _ => Err(status_error("DELETE", &url, answer, "").await),
        }
    }

    /// `POST jobs/request`: a job (201), or none (204). A 403 means the token is no longer
    /// good: the caller stops this runner.
    pub async fn request_job(&mut self) -> Result<Option<JobPayload>, RunnerError> {
        let url = self.endpoint("jobs/request");
        let request = self
            .http
            .post(url.clone())
            .header(self.token.header_name(), self.token.secret())
            .header("Accept", "application/json")
            .json(&self.runner_request());
        let answer = self.send("POST", &url, request).await?;
        match answer.status().as_u16() {
            201 => json_answer("POST", &url, answer).await.map(Some),
            204 => {
                if let Some(last) = answer
                    .headers()
                    .get("X-GitLab-Last-Update")
                    .and_then(|v| v.to_str().ok())
                {
                    self.last_update = Some(last.to_string());
                }
                Ok(None)
            }
            403 => Err(status_error(
                "POST",
                &url,
                answer,
                "the runner token is invalid or the runner was removed: register the runner again",
            )
            .await),
            _ => Err(status_error("POST", &url, answer, "").await),
        }
    }

    /// `PATCH jobs/:id/trace`: `bytes` are the log from byte `start` on.
    pub async fn patch_trace(
        &self,
        job: &JobPayload,
        start: usize,
        bytes: &[u8],
    ) -> Result<PatchAnswer, RunnerError> {
        let mut url = self.endpoint(&format!("jobs/{}/trace", job.id));
        url.set_query(Some("debug_trace=false"));
        // Inclusive, no unit: `0-99` for the first 100 bytes.
        let end = start + bytes.len().saturating_sub(1);
        let request = self
            .http
            .patch(url.clone())
            .header(job.token.header_name(), job.token.secret())
            .header("Content-Type", "text/plain")
            .header("Content-Range", format!("{start}-{end}"))
            .body(bytes.to_vec());
        let answer = self.send("PATCH", &url, request).await?;
        let headers = answer.headers();
        let job_status = RemoteJobStatus::from_headers(headers);
        let interval = update_interval(headers);
        let result = match answer.status().as_u16() {
            200..=299 => PatchResult::Accepted,
            416 => PatchResult::RangeMismatch {
                // `Range: 0-<size>`; without it, start again.
                offset: headers
                    .get("Range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(_, end)| end.trim().parse().ok())
                    .unwrap_or(0),
            },
            403 | 404 => PatchResult::Rejected,
            _ => return Err(status_error("PATCH", &url, answer, "").await),
        };
        Ok(PatchAnswer {
            result,
            job_status,
            interval,
        })
    }

    /// `PUT jobs/:id`: the job's state; with `output`, the final update.
    pub async fn update_job(
        &self,
        job: &JobPayload,
        outcome: &JobOutcome,
        output: Option<TraceOutput>,
    ) -> Result<UpdateResult, RunnerError> {
        let (answer, url) = self.put_job(job, outcome, output).await?;
        match answer.status().as_u16() {
            200 => Ok(UpdateResult::Accepted),
            202 | 412 => Ok(UpdateResult::TryAgain {
                interval: update_interval(answer.headers()),
            }),
            403 | 404 => Ok(UpdateResult::Rejected),
            _ => Err(status_error("PUT", &url, answer, "").await),
        }
    }

    /// The keep-alive of a job with no new output: `PUT jobs/:id` with `state=running`.
    /// GitLab's answer carries `Job-Status`, so a job canceled in GitLab while it prints nothing
    /// learns it here (gitlab-runner's `UpdateJobResult.CancelRequested`); trace patches, the
    /// other carrier, are only sent when there is output.
    pub async fn touch_job(&self, job: &JobPayload) -> Result<RemoteJobStatus, RunnerError> {
        let running = JobOutcome {
            state: JobState::Running,
            failure_reason: None,
            exit_code: None,
        };
        let (answer, url) = self.put_job(job, &running, None).await?;
        match answer.status().as_u16() {
            200 | 202 | 412 => Ok(RemoteJobStatus::from_headers(answer.headers())),
            403 | 404 => Ok(RemoteJobStatus::Aborted),
            _ => Err(status_error("PUT", &url, answer, "").await),
        }
    }

    async fn put_job(
        &self,
        job: &JobPayload,
        outcome: &JobOutcome,
        output: Option<TraceOutput>,
    ) -> Result<(reqwest::Response, Url), RunnerError> {
        let url = self.endpoint(&format!("jobs/{}", job.id));
        let body = UpdateRequest {
            info: &self.info,
            token: job.token.secret(),
            state: outcome.state,
            failure_reason: outcome
                .failure_reason
                .map(|r| r.for_gitlab(&job.features.failure_reasons)),
            exit_code: outcome.exit_code,
            output,
        };
        let request = self
            .http
            .put(url.clone())
            .header(job.token.header_name(), job.token.secret())
            .json(&body);
        let answer = self.send("PUT", &url, request).await?;
        Ok((answer, url))
    }
}

fn update_interval(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get("X-GitLab-Trace-Update-Interval")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        // GitLab's bounds (gitlab-runner `common/consts.go`): at most 15 minutes.
        .map(|s| Duration::from_secs(s.min(15 * 60)))
}

pub(super) async fn status_error(
    method: &'static str,
    url: &Url,
    answer: reqwest::Response,
    hint: &'static str,
) -> RunnerError {
    let status = answer.status().as_u16();
    // GitLab's errors are `{"message": ...}`; anything else is not quoted (it may be long). A
    // body that breaks off or runs past the bound is no message: the status still says it.
    let message = body_up_to(answer, MAX_ERROR_BODY)
        .await
        .ok()
        .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .and_then(|v| v.get("message").map(|m| m.to_string()));
    RunnerError::Status {
        method,
        url: url.to_string(),
        status,
        message,
        hint,
    }
}

/// The most of a JSON answer read (a job's payload, a runner check). GitLab's job payloads are
/// kilobytes, tens of them with many variables; gitlab-runner reads them without a bound. A body
/// past this is a broken coordinator or something between, not a job: refused before it fills
/// the memory.
const MAX_JSON_ANSWER: usize = 64 << 20;
/// The most of an error answer read for its message.
const MAX_ERROR_BODY: usize = 64 << 10;

/// `answer`'s body (to `method` `url`) as the JSON of a `T`, at most [`MAX_JSON_ANSWER`] bytes.
/// A body that breaks off is [`RunnerError::Unreachable`] (worth another try), not a JSON error.
async fn json_answer<T: serde::de::DeserializeOwned>(
    method: &'static str,
    url: &Url,
    answer: reqwest::Response,
) -> Result<T, RunnerError> {
    let body = match body_up_to(answer, MAX_JSON_ANSWER).await {
        Ok(body) => body,
        Err(BodyError::Broken(reason)) => {
            return Err(RunnerError::Unreachable {
                method,
                url: url.to_string(),
                reason: format!("the answer broke off before its end: {reason}"),
            });
        }
        Err(BodyError::TooLarge) => {
            return Err(RunnerError::BadBody {
                method,
                url: url.to_string(),
                reason: format!(
                    "larger than {} MiB, which no GitLab answer is: refused unread (is something between this runner and GitLab?)",
                    MAX_JSON_ANSWER >> 20
                ),
            });
        }
    };
    serde_json::from_slice(&body).map_err(|e| RunnerError::BadBody {
        method,
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// A correlation id per request (gitlab-runner sends one too): time and a counter, hex.
pub(super) fn request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    format!(
        "{nanos:016x}{:08x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `s_` + 12 hex characters from the machine id (stable across runs, as gitlab-runner keeps
/// its own in a state file); `r_` + 12 from the time and process when there is none.
fn system_id() -> String {
    use sha2::Digest as _;
    let machine = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .filter(|m| !m.trim().is_empty());
    let (prefix, seed) = match machine {
        Some(m) => ("s_", m),
        None => ("r_", format!("{}{}", request_id(), std::process::id())),
    };
    let digest = hex::encode(sha2::Sha256::digest(seed.trim().as_bytes()));
    format!("{prefix}{}", &digest[..12])
}

/// Redirects within GitLab's own origin (a moved path) are followed; one to another scheme, host
/// or port is not, so the `RUNNER-TOKEN`/`JOB-TOKEN` headers of the request (which reqwest, like
/// Go's client, only strips for `Authorization`) never reach another host. The 3xx then comes
/// back as the answer and is reported with its status. Artifact transfers follow cross-origin
/// redirects by hand, without the token (`artifacts.rs`).
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt
            .previous()
            .last()
            .is_some_and(|from| from.origin() == attempt.url().origin());
        if !same_origin {
            attempt.stop()
        } else if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_checksum_is_gitlabs_crc32_format() {
        let output = TraceOutput::of(b"hello\n");
        assert_eq!(output.checksum, "crc32:363a3020");
        assert_eq!(output.bytesize, 6);
    }

    #[test]
    fn the_system_id_has_gitlab_runners_shape() {
        let id = system_id();
        assert_eq!(id.len(), 14, "{id}");
        assert!(id.starts_with("s_") || id.starts_with("r_"), "{id}");
    }

    #[test]
    fn the_client_debug_never_shows_the_token() {
        let client = RunnerClient::new("https://gitlab.example.com/", "glrt-secret", "shell")
            .expect("client");
        assert!(!format!("{client:?}").contains("glrt-secret"));
        assert_eq!(
            client.endpoint("jobs/request").as_str(),
            "https://gitlab.example.com/api/v4/jobs/request"
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_never_shown() {
        for url in [
            "https://root:pw-very-secret@gitlab.example.com",
            "https://:pw-very-secret@gitlab.example.com/",
            "ftp://root:pw-very-secret@gitlab.example.com",
            "https://root:pw very-secret@gitlab example.com",
        ] {
            let e = RunnerClient::new(url, "glrt-secret", "shell").expect_err(url);
            assert!(!e.to_string().contains("very-secret"), "{e}");
            assert!(e.to_string().contains("gitlab"), "{e}");
        }
    }
}
