//! wharf's runner requests checked field by field against what gitlab-runner's own tests expect
//! of its requests and answers (`network/gitlab_test.go` of gitlabhq/gitlab-runner, read at
//! commit 39f012ee; function names cited per test). The server here records each request and
//! answers as that file's handlers do; it is ours, declared as such.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use wharf_gitlab::runner::artifacts::{ArchiveFormat, ArtifactUpload};
use wharf_gitlab::runner::trace::TraceSender;
use wharf_gitlab::runner::{
    FailureReason, JobOutcome, JobPayload, JobState, PatchResult, RemoteJobStatus, RunnerClient,
    TraceBuffer, UpdateResult, job_of,
};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query.
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// A query parameter or, failing that, a multipart text field: Go's `r.FormValue`, which
    /// gitlab-runner's artifacts handler reads.
    fn form_value(&self, name: &str) -> Option<String> {
        let query = self.url.split_once('?').map(|(_, q)| q).unwrap_or("");
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                if k == name {
                    return Some(v.to_string());
                }
            }
        }
        multipart_parts(self).into_iter().find_map(|(n, _, value)| {
            (n == name).then(|| String::from_utf8_lossy(&value).into_owned())
        })
    }
}

/// (name, filename, content) of each part: Go's `r.FormFile`/`FormValue` reading.
fn multipart_parts(seen: &Seen) -> Vec<(String, Option<String>, Vec<u8>)> {
    let Some(boundary) = seen
        .header("Content-Type")
        .and_then(|ct| ct.split_once("boundary="))
        .map(|(_, b)| format!("--{}", b.trim_matches('"')))
    else {
        return Vec::new();
    };
    let body = &seen.body;
    let find = |from: usize, needle: &[u8]| {
        body[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut at = find(0, boundary.as_bytes()).unwrap();
    loop {
        let start = at + boundary.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let head_end = find(start, b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&body[start..head_end])
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .unwrap_or_default()
            .to_string();
        let next = find(head_end, format!("\r\n{boundary}").as_bytes()).unwrap();
        let content = body[head_end + 4..next].to_vec();
        let field = |key: &str| {
            head.split(';')
                .map(str::trim)
                .find_map(|p| p.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        parts.push((
            field("name").unwrap_or_default(),
            field("filename"),
            content,
        ));
        at = next + 2;
    }
    parts
}

type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

/// Answers each request with the next scripted answer (the last one repeats) and records it.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn serve(host: &str, answers: Vec<Answer>) -> Server {
    let server = tiny_http::Server::http(format!("{host}:0")).unwrap();
    let port = server.server_addr().to_ip().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let mut answers: VecDeque<Answer> = answers.into();
    std::thread::spawn(move || {
        for mut request in server.incoming_requests() {
            let mut body = Vec::new();
            let _ = request.as_reader().read_to_end(&mut body);
            recorded.lock().unwrap().push(Seen {
                method: request.method().as_str().to_string(),
                url: request.url().to_string(),
                headers: request
                    .headers()
                    .iter()
                    .map(|h| {
                        (
                            h.field.as_str().as_str().to_string(),
                            h.value.as_str().to_string(),
                        )
                    })
                    .collect(),
                body,
            });
            let (status, headers, answer) = if answers.len() > 1 {
                answers.pop_front().unwrap()
            } else {
                answers.front().cloned().unwrap()
            };
            let mut response = tiny_http::Response::from_data(answer).with_status_code(status);
            for (name, value) in headers {
                response.add_header(
                    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap(),
                );
            }
            let _ = request.respond(response);
        }
    });
    Server {
        url: format!("http://{host}:{port}"),
        seen,
    }
}

impl Server {
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// `getRequestJobResponse()` of gitlab_test.go, as JSON.
fn gitlab_runner_job_response() -> serde_json::Value {
    serde_json::json!({
        "id": 10, "token": "job-token", "allow_git_fetch": false,
        "job_info": {"name": "test-job", "stage": "test", "project_id": 123, "project_name": "test-project"},
        "git_info": {"repo_url": "https://gitlab-ci-token:testTokenHere1234@gitlab.example.com/test/test-project.git",
                     "ref": "main", "sha": "abcdef123456", "before_sha": "654321fedcba", "ref_type": "branch"},
        "runner_info": {"timeout": 3600},
        "variables": [{"key": "CI_REF_NAME", "value": "main", "public": true, "file": true, "raw": true}],
        "steps": [
            {"name": "script", "script": ["date", "ls -ls"], "timeout": 3600, "when": "on_success", "allow_failure": false},
            {"name": "after_script", "script": ["ls -ls"], "timeout": 3600, "when": "always", "allow_failure": true}
        ],
        "image": {"name": "ruby:2.7", "entrypoint": ["/bin/sh"]},
        "services": [
            {"name": "postgresql:9.5", "entrypoint": ["/bin/sh"], "command": ["sleep", "30"], "alias": "db-pg"},
            {"name": "mysql:5.6", "alias": "db-mysql"}
        ],
        "artifacts": [{"name": "artifact.zip", "untracked": false, "paths": ["out/*"], "when": "always", "expire_in": "7d"}],
        "cache": [{"key": "$CI_COMMIT_SHA", "untracked": false, "paths": ["vendor/*"], "policy": "push"}],
        "credentials": [{"type": "Registry", "url": "http://registry.gitlab.example.com/", "username": "gitlab-ci-token", "password": "job-token"}],
        "dependencies": [{"id": 9, "name": "other-job", "token": "other-job-token",
                          "artifacts_file": {"filename": "binaries.zip", "size": 13631488}}]
    })
}

fn payload(id: u64, token: &str) -> JobPayload {
    serde_json::from_value(serde_json::json!({"id": id, "token": token})).unwrap()
}

/// `TestRequestJob`: the job's image, services, variables; and what wharf reads of the rest.
#[tokio::test]
async fn gitlab_runners_job_response_reads_field_by_field() {
    let server = serve(
        "127.0.0.1",
        vec![
            (
                201,
                vec![],
                gitlab_runner_job_response().to_string().into_bytes(),
            ),
            (
                204,
                vec![("X-GitLab-Last-Update", "a nice timestamp".into())],
                vec![],
            ),
            (403, vec![], vec![]),
        ],
    );
    let mut client = RunnerClient::new(&server.url, "valid", "shell").unwrap();
    let job = client.request_job().await.unwrap().unwrap();
    assert_eq!(job.id, 10);
    let image = job.image.as_ref().unwrap();
    assert_eq!(
        (image.name.as_str(), image.entrypoint.as_slice()),
        ("ruby:2.7", &["/bin/sh".to_string()][..])
    );
    assert_eq!(job.services.len(), 2);
    assert_eq!(job.services[0].name, "postgresql:9.5");
    assert_eq!(job.services[0].entrypoint, ["/bin/sh"]);
    assert_eq!(job.services[0].command, ["sleep", "30"]);
    assert_eq!(job.services[0].alias, "db-pg");
    assert_eq!(
        (
            job.services[1].name.as_str(),
            job.services[1].alias.as_str()
        ),
        ("mysql:5.6", "db-mysql")
    );
    assert_eq!(job.variables.len(), 1);
    let variable = &job.variables[0];
    assert_eq!(
        (variable.key.as_str(), variable.value.as_str()),
        ("CI_REF_NAME", "main")
    );
    assert!(variable.public && variable.file && variable.raw);
    // What the runner acts on besides: artifacts, dependencies with their own tokens, cache.
    assert_eq!(job.artifacts[0].paths, ["out/*"]);
    assert_eq!(job.artifacts[0].when.as_deref(), Some("always"));
    assert_eq!(job.artifacts[0].expire_in.as_deref(), Some("7d"));
    assert_eq!(job.dependencies[0].id, 9);
    assert_eq!(
        job.dependencies[0]
            .artifacts_file
            .as_ref()
            .unwrap()
            .filename,
        "binaries.zip"
    );
    assert_eq!(job.cache[0].policy.as_deref(), Some("push"));
    let wharf_job = job_of(&job);
    assert_eq!(wharf_job.script, ["date", "ls -ls"]);
    assert_eq!(wharf_job.after_script, ["ls -ls"]);
    assert!(
        wharf_job.unsupported.is_empty(),
        "{:?}",
        wharf_job.unsupported
    );

    // 204 with `X-GitLab-Last-Update`: sent back as `last_update` next time.
    assert!(client.request_job().await.unwrap().is_none());
    let refused = client.request_job().await.unwrap_err();
    assert_eq!(refused.status(), Some(403));

    let requests = server.requests();
    let first = &requests[0];
    assert_eq!(
        (first.method.as_str(), first.url.as_str()),
        ("POST", "/api/v4/jobs/request")
    );
    assert_eq!(first.header("Accept"), Some("application/json"));
    // The token in the body and in RUNNER-TOKEN (gitlab_test.go asserts both match).
    assert_eq!(first.header("RUNNER-TOKEN"), Some("valid"));
    let body = first.json();
    assert_eq!(body["token"], "valid");
    assert_eq!(body["system_id"], client.system_id());
    assert!(body.get("last_update").is_none());
    let features = &body["info"]["features"];
    for claimed in [
        "variables",
        "image",
        "services",
        "artifacts",
        "cache",
        "upload_multiple_artifacts",
        "upload_raw_artifacts",
        "refspecs",
        "masking",
        "raw_variables",
        "artifacts_exclude",
        "multi_build_steps",
        "trace_reset",
        "trace_checksum",
        "trace_size",
        "cancelable",
        "two_phase_job_commit",
    ] {
        assert_eq!(
            features[claimed], true,
            "info.features.{claimed}: {features}"
        );
    }
    // Not done by wharf: never claimed.
    for not_claimed in [
        "session",
        "terminal",
        "proxy",
        "vault_secrets",
        "cancel_gracefully",
    ] {
        assert_eq!(features[not_claimed], false, "info.features.{not_claimed}");
    }
    assert_eq!(requests[2].json()["last_update"], "a nice timestamp");
}

/// `TestUpdateJob`: the answers' meanings; and the body's `token`, `state`, `failure_reason`,
/// `output`.
#[tokio::test]
async fn job_updates_send_gitlabs_fields_and_read_its_answers() {
    let server = serve(
        "127.0.0.1",
        vec![
            (200, vec![], vec![]),
            (
                202,
                vec![("X-GitLab-Trace-Update-Interval", "7".into())],
                vec![],
            ),
            (412, vec![], vec![]),
            (403, vec![], vec![]),
            (404, vec![], vec![]),
            (
                400,
                vec![],
                br#"{"message":"invalid failure reason"}"#.to_vec(),
            ),
        ],
    );
    let client = RunnerClient::new(&server.url, "runner-token", "shell").unwrap();
    let job = payload(200, "token");
    let failed = JobOutcome {
        state: JobState::Failed,
        failure_reason: Some(FailureReason::ScriptFailure),
        exit_code: Some(1),
    };
    let output = wharf_gitlab::runner::TraceOutput {
        checksum: "checksum".into(),
        bytesize: 42,
    };
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(
            client
                .update_job(&job, &failed, Some(output.clone()))
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        results,
        [
            UpdateResult::Accepted,
            UpdateResult::TryAgain {
                interval: Some(std::time::Duration::from_secs(7))
            },
            UpdateResult::TryAgain { interval: None },
            UpdateResult::Rejected,
            UpdateResult::Rejected,
        ]
    );
    let error = client
        .update_job(&job, &failed, Some(output))
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(400));
    assert!(
        error.to_string().contains("invalid failure reason"),
        "{error}"
    );
    let request = &server.requests()[0];
    assert_eq!(
        (request.method.as_str(), request.url.as_str()),
        ("PUT", "/api/v4/jobs/200")
    );
    assert_eq!(request.header("JOB-TOKEN"), Some("token"));
    let body = request.json();
    assert_eq!(body["token"], "token");
    assert_eq!(body["state"], "failed");
    assert_eq!(body["failure_reason"], "script_failure");
    assert_eq!(body["exit_code"], 1);
    assert_eq!(
        body["output"],
        serde_json::json!({"checksum": "checksum", "bytesize": 42})
    );
    assert_eq!(body["info"]["name"], "wharf");
}

/// `getPatchServer`, `TestPatchTrace`, `TestRangeMismatchPatchTrace`,
/// `TestForbiddenPatchTrace`, `TestUnknownPatchTrace`.
#[tokio::test]
async fn trace_patches_carry_inclusive_ranges_and_their_answers_are_read_as_gitlab_runner_does() {
    let content = b"trace trace trace";
    let server = serve(
        "127.0.0.1",
        vec![
            (202, vec![("Job-Status", "running".into())], vec![]),
            (202, vec![("Job-Status", "canceling".into())], vec![]),
            (416, vec![("Range", "0-10".into())], vec![]),
            (403, vec![], vec![]),
            (404, vec![], vec![]),
        ],
    );
    let client = RunnerClient::new(&server.url, "runner-token", "shell").unwrap();
    let job = payload(1, "token");
    let first = client.patch_trace(&job, 0, content).await.unwrap();
    assert_eq!(
        (first.result, first.job_status),
        (PatchResult::Accepted, RemoteJobStatus::Running)
    );
    let second = client.patch_trace(&job, 3, &content[3..10]).await.unwrap();
    assert_eq!(second.job_status, RemoteJobStatus::Canceling);
    let mismatch = client.patch_trace(&job, 11, &content[11..]).await.unwrap();
    assert_eq!(mismatch.result, PatchResult::RangeMismatch { offset: 10 });
    assert_eq!(
        client.patch_trace(&job, 0, content).await.unwrap().result,
        PatchResult::Rejected
    );
    assert_eq!(
        client.patch_trace(&job, 0, content).await.unwrap().result,
        PatchResult::Rejected
    );
    let requests = server.requests();
    // `patchTraceContent[offset:limit+1] == body`: the range's end is inclusive.
    for (request, (start, end)) in requests.iter().zip([(0, 16), (3, 9), (11, 16)]) {
        assert_eq!(request.method, "PATCH");
        assert!(
            request.url.starts_with("/api/v4/jobs/1/trace"),
            "{}",
            request.url
        );
        assert_eq!(request.header("JOB-TOKEN"), Some("token"));
        assert_eq!(
            request.header("Content-Range"),
            Some(format!("{start}-{end}").as_str())
        );
        assert_eq!(request.body, &content[start..=end]);
    }
}

/// `testArtifactsUploadHandler` and `checkTestArtifactsUploadHandlerContent`: the archive is
/// the multipart `file` part, `artifact_format`/`artifact_type` are form values, the job token
/// is `JOB-TOKEN`; 413 is "too large", 503 is worth another try.
#[tokio::test]
async fn artifact_uploads_are_what_gitlab_runners_handler_reads() {
    let server = serve(
        "127.0.0.1",
        vec![
            (201, vec![], vec![]),
            (413, vec![], vec![]),
            (503, vec![("Retry-After", "1".into())], vec![]),
        ],
    );
    let client = RunnerClient::new(&server.url, "runner-token", "shell").unwrap();
    let artifacts = client.artifacts_client().unwrap();
    let job = payload(10, "token");
    let archive = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(archive.path(), "content").unwrap();
    let junit = ArtifactUpload {
        file_name: "junit.xml.gz",
        format: ArchiveFormat::Gzip,
        artifact_type: "junit",
        expire_in: Some("7d"),
    };
    artifacts.upload(&job, archive.path(), junit).await.unwrap();
    let too_large = artifacts
        .upload(&job, archive.path(), junit)
        .await
        .unwrap_err();
    assert_eq!(too_large.status(), Some(413));
    assert!(too_large.to_string().contains("fix: "), "{too_large}");
    assert!(!too_large.to_string().contains("token"), "{too_large}");
    let unavailable = artifacts
        .upload(&job, archive.path(), junit)
        .await
        .unwrap_err();
    assert_eq!(unavailable.status(), Some(503));

    let request = &server.requests()[0];
    assert_eq!(request.method, "POST");
    assert!(
        request.url.starts_with("/api/v4/jobs/10/artifacts?"),
        "{}",
        request.url
    );
    assert_eq!(request.header("JOB-TOKEN"), Some("token"));
    assert_eq!(
        request.form_value("artifact_format").as_deref(),
        Some("gzip")
    );
    assert_eq!(
        request.form_value("artifact_type").as_deref(),
        Some("junit")
    );
    assert_eq!(request.form_value("expire_in").as_deref(), Some("7d"));
    let parts = multipart_parts(request);
    let file = parts.iter().find(|(name, _, _)| name == "file").unwrap();
    assert_eq!(file.1.as_deref(), Some("junit.xml.gz"));
    assert_eq!(file.2, b"content");
}

/// `testArtifactsUploadHandler`'s "redirect" case: a 307 names GitLab's new place; the upload
/// goes there once, on the same API path.
#[tokio::test]
async fn an_upload_answered_307_is_sent_to_gitlabs_new_place() {
    let moved = serve("localhost", vec![(201, vec![], vec![])]);
    let gitlab = serve(
        "127.0.0.1",
        vec![(
            307,
            vec![("Location", format!("{}/new-location", moved.url))],
            vec![],
        )],
    );
    let client = RunnerClient::new(&gitlab.url, "runner-token", "shell").unwrap();
    let archive = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(archive.path(), "content").unwrap();
    let upload = ArtifactUpload {
        file_name: "artifacts.zip",
        format: ArchiveFormat::Zip,
        artifact_type: "archive",
        expire_in: None,
    };
    client
        .artifacts_client()
        .unwrap()
        .upload(&payload(10, "token"), archive.path(), upload)
        .await
        .unwrap();
    let request = &moved.requests()[0];
    assert!(
        request.url.starts_with("/api/v4/jobs/10/artifacts?"),
        "{}",
        request.url
    );
    assert_eq!(request.header("JOB-TOKEN"), Some("token"));
    let parts = multipart_parts(request);
    assert_eq!(
        parts.iter().find(|(n, _, _)| n == "file").unwrap().2,
        b"content"
    );
}

/// A dependency's archive: its own token to GitLab, none to the object storage GitLab
/// redirects to (another origin), where the archive comes from.
#[tokio::test]
async fn dependency_downloads_follow_redirects_without_taking_the_token_along() {
    let storage = serve("localhost", vec![(200, vec![], b"zip bytes".to_vec())]);
    let gitlab = serve(
        "127.0.0.1",
        vec![(
            302,
            vec![(
                "Location",
                format!(
                    "{}/bucket/artifacts.zip?X-Amz-Signature=s3cr3t",
                    storage.url
                ),
            )],
            vec![],
        )],
    );
    let client = RunnerClient::new(&gitlab.url, "runner-token", "shell").unwrap();
    let dependency: wharf_gitlab::runner::spec::Dependency = serde_json::from_value(
        serde_json::json!({"id": 9, "name": "other-job", "token": "other-job-token"}),
    )
    .unwrap();
    let into = tempfile::NamedTempFile::new().unwrap();
    let written = client
        .artifacts_client()
        .unwrap()
        .download(&dependency, into.path(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(written, 9);
    assert_eq!(std::fs::read(into.path()).unwrap(), b"zip bytes");
    let asked = &gitlab.requests()[0];
    assert_eq!(
        (asked.method.as_str(), asked.url.as_str()),
        ("GET", "/api/v4/jobs/9/artifacts")
    );
    assert_eq!(asked.header("JOB-TOKEN"), Some("other-job-token"));
    let fetched = &storage.requests()[0];
    assert_eq!(fetched.url, "/bucket/artifacts.zip?X-Amz-Signature=s3cr3t");
    assert_eq!(fetched.header("JOB-TOKEN"), None);

    // Past the size limit: refused, and not worth another try.
    let too_large = client
        .artifacts_client()
        .unwrap()
        .download(&dependency, into.path(), 4)
        .await
        .unwrap_err();
    assert!(!too_large.is_transient(), "{too_large}");
    assert!(
        too_large.to_string().contains("larger than 4 bytes"),
        "{too_large}"
    );
    assert!(!too_large.to_string().contains("s3cr3t"), "{too_large}");

    // Gone artifacts: the status and what to do, without the token or the signed query.
    let gone = serve("127.0.0.1", vec![(404, vec![], vec![])]);
    let client = RunnerClient::new(&gone.url, "runner-token", "shell").unwrap();
    let error = client
        .artifacts_client()
        .unwrap()
        .download(&dependency, into.path(), 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404));
    assert!(error.to_string().contains("fix: "), "{error}");
    assert!(!error.to_string().contains("other-job-token"), "{error}");
}

/// Two-phase commit: the job is taken with `PUT state=running` first; the final update
/// answered 202 twice is sent again at GitLab's interval until 200 (gitlab-runner
/// `network/trace.go` `finalUpdate`; gitlab_test.go "Update returns accepted, but not
/// completed if server returns `202 StatusAccepted`").
#[tokio::test]
async fn the_final_update_is_sent_again_while_gitlab_answers_202() {
    let interval = ("X-GitLab-Trace-Update-Interval", "1".to_string());
    let server = serve(
        "127.0.0.1",
        vec![
            (200, vec![], vec![]),
            (202, vec![interval.clone()], vec![]),
            (202, vec![interval.clone()], vec![]),
            (200, vec![], vec![]),
        ],
    );
    let client = RunnerClient::new(&server.url, "runner-token", "shell").unwrap();
    let job = payload(5, "token");
    let mut sender = TraceSender::new(&client, &job, TraceBuffer::default());
    sender.acknowledge(&|e| panic!("{e}")).await.unwrap();
    let success = JobOutcome {
        state: JobState::Success,
        failure_reason: None,
        exit_code: Some(0),
    };
    sender.finish(&success).await.unwrap();
    let states: Vec<(String, bool)> = server
        .requests()
        .iter()
        .map(|r| {
            let body = r.json();
            (
                body["state"].as_str().unwrap().to_string(),
                body.get("output").is_some(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("running".to_string(), false),
            ("success".to_string(), true),
            ("success".to_string(), true),
            ("success".to_string(), true),
        ]
    );
}

/// A GitLab call answered with a redirect to another origin is not followed: the request's
/// `JOB-TOKEN` header (reqwest strips only `Authorization`-like ones) would go to that host.
/// A redirect within GitLab's origin is followed.
#[tokio::test]
async fn job_calls_follow_redirects_only_within_gitlab() {
    let elsewhere = serve("127.0.0.2", vec![(202, vec![], vec![])]);
    let gitlab = serve(
        "127.0.0.1",
        vec![
            (
                307,
                vec![("Location", format!("{}/api/v4/jobs/1/trace", elsewhere.url))],
                vec![],
            ),
            (
                307,
                vec![("Location", "/api/v4/jobs/1/trace-moved".into())],
                vec![],
            ),
            (202, vec![("Job-Status", "running".into())], vec![]),
        ],
    );
    let client = RunnerClient::new(&gitlab.url, "runner-token", "shell").unwrap();
    let job = payload(1, "secret-job-token");
    let away = client.patch_trace(&job, 0, b"log").await;
    assert!(
        !matches!(&away, Ok(patch) if patch.result == PatchResult::Accepted),
        "a redirect to another host counted as accepted: {away:?}"
    );
    assert!(
        elsewhere.requests().is_empty(),
        "the job token went to another host"
    );
    let moved = client.patch_trace(&job, 0, b"log").await.unwrap();
    assert_eq!(moved.result, PatchResult::Accepted);
    let requests = gitlab.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[2].url.starts_with("/api/v4/jobs/1/trace-moved"));
    assert_eq!(requests[2].header("JOB-TOKEN"), Some("secret-job-token"));
}

/// `createUpdateJobResult`: the answer to a `PUT jobs/:id` carries `Job-Status`, and a
/// `canceled` there is a cancel request (`CancelRequested`) even with 200. The keep-alive of a
/// job printing nothing is how such a job hears of its cancel.
#[tokio::test]
async fn the_keep_alive_update_reads_gitlabs_job_status() {
    let server = serve(
        "127.0.0.1",
        vec![
            (200, vec![("Job-Status", "running".into())], vec![]),
            (200, vec![("Job-Status", "canceling".into())], vec![]),
            (200, vec![("Job-Status", "canceled".into())], vec![]),
            (404, vec![], vec![]),
        ],
    );
    let client = RunnerClient::new(&server.url, "runner-token", "shell").unwrap();
    let job = payload(1, "token");
    let mut heard = Vec::new();
    for _ in 0..4 {
        heard.push(client.touch_job(&job).await.unwrap());
    }
    assert_eq!(
        heard,
        [
            RemoteJobStatus::Running,
            RemoteJobStatus::Canceling,
            RemoteJobStatus::Aborted,
            RemoteJobStatus::Aborted
        ]
    );
    let requests = server.requests();
    assert_eq!(requests[0].method, "PUT");
    assert_eq!(requests[0].json()["state"], "running");
    assert!(requests[0].json().get("output").is_none());
}

/// A coordinator answering every request with `head` (status line and headers, without the
/// blank line) and then what `body` writes, counting the bytes in its second argument, until it
/// is done or a write fails (the client stopped reading). Returns its URL and, once the last
/// answer's body ended, the bytes of it sent.
fn raw_coordinator(
    head: &'static str,
    body: impl Fn(&mut std::net::TcpStream, &mut u64) -> std::io::Result<()> + Send + 'static,
) -> (String, Arc<Mutex<Option<u64>>>) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(Mutex::new(None));
    let counted = sent.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            // The whole request (its head and JSON body), so that closing sends no reset.
            let mut request = Vec::new();
            let mut buf = [0u8; 16 * 1024];
            let complete = |r: &[u8]| {
                let Some(end) = r.windows(4).position(|w| w == b"\r\n\r\n") else {
                    return false;
                };
                let head = String::from_utf8_lossy(&r[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                r.len() >= end + 4 + length
            };
            while !complete(&request) {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(format!("{head}\r\n\r\n").as_bytes());
            let mut n = 0;
            let _ = body(&mut stream, &mut n);
            *counted.lock().unwrap() = Some(n);
        }
    });
    (url, sent)
}

/// A job's answer that breaks off mid-body is a failed request, worth another try, said as
/// such: it used to be read as an empty body and reported as JSON the runner did not expect.
#[tokio::test]
async fn a_job_answer_that_breaks_off_is_a_transient_error_not_bad_json() {
    use std::io::Write as _;
    let (url, _) = raw_coordinator(
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 1000",
        |stream, _| stream.write_all(b"{\"id\": 10, \"token\": \"job-tok"),
    );
    let mut client = RunnerClient::new(&url, "valid", "shell").unwrap();
    let err = client.request_job().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the answer broke off before its end"),
        "{text}"
    );
    assert!(err.is_transient(), "{err:?}");
    assert!(!text.contains("job-tok"), "{text}");
}

/// A job's answer without end (chunked, or announced larger than any GitLab answer) is refused
/// at 64 MiB, naming the bound, and the runner stops reading: it used to read until the memory
/// was full.
#[tokio::test]
async fn a_job_answer_without_end_is_refused_at_the_bound() {
    use std::io::Write as _;
    const BOUND: u64 = 64 << 20;
    let (url, sent) = raw_coordinator(
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
        |stream, n| {
            let spaces = vec![b' '; 64 * 1024];
            let chunk = [
                format!("{:x}\r\n", spaces.len()).as_bytes(),
                &spaces,
                b"\r\n",
            ]
            .concat();
            stream.write_all(b"1\r\n[\r\n")?;
            *n = 1;
            // Until the runner closes the connection (or far past the bound, as a guard).
            while *n < 4 * BOUND {
                stream.write_all(&chunk)?;
                *n += spaces.len() as u64;
            }
            Ok(())
        },
    );
    let mut client = RunnerClient::new(&url, "valid", "shell").unwrap();
    let err = client.request_job().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("larger than 64 MiB, which no GitLab answer is: refused unread"),
        "{text}"
    );
    assert!(!err.is_transient(), "{err:?}");
    drop(client);
    // The coordinator's writes fail once the runner is gone: it sent about the bound, no more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let sent = loop {
        if let Some(sent) = *sent.lock().unwrap() {
            break sent;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the coordinator is still sending"
        );
        // Awaited: the connection's task must run to close the socket.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        sent < BOUND + (16 << 20),
        "the runner read on: {sent} bytes sent"
    );

    // Announced over the bound: refused before a byte of the body.
    let (url, _) = raw_coordinator(
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 1000000000",
        |_, _| Ok(()),
    );
    let mut client = RunnerClient::new(&url, "valid", "shell").unwrap();
    let text = client.request_job().await.unwrap_err().to_string();
    assert!(text.contains("larger than 64 MiB"), "{text}");
}
