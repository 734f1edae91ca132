//! `wharf runner` artifacts: uploaded to GitLab after the scripts, dependencies' archives
//! downloaded (with their own tokens) and unpacked before them. Against Collabora's
//! `gitlab-runner-mock` (it keeps what a job uploads and serves it to the jobs that depend on
//! it) and, for what the mock does not do (413, 202 to the final update, redirects to object
//! storage, images), a stand-in written here, declared as such.

use crate::runner::{ONE_JOB, assert_no_token, finished, job_builder, spawn_runner, text};
use crate::support::Project;
use gitlab_runner_mock::{GitlabRunnerMock, MockJob, MockJobState};
use std::io::Write as _;

fn enqueue(mock: &GitlabRunnerMock, builder: gitlab_runner_mock::MockJobBuilder) -> MockJob {
    let job = builder.build();
    mock.enqueue_job(job.clone());
    job
}

/// Every file under `dir` whose name is `name`.
fn files_named(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == name)
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// `wharf runner` with `args` against the coordinator at `url` until it stops (successfully):
/// its project and output.
async fn run_runner(url: &str, token: &str, args: &[&str]) -> (Project, std::process::Output) {
    let project = Project::new(&[]);
    let out = finished(spawn_runner(&project, url, token, args)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    (project, out)
}

/// A runner (shell) takes one job from the mock and stops; its project once it has.
async fn run_one_job(mock: &GitlabRunnerMock) -> Project {
    run_runner(mock.uri().as_str(), mock.runner_token(), ONE_JOB)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_pass_from_one_job_to_the_next_through_gitlab() {
    let mock = GitlabRunnerMock::start().await;
    let mut producer = job_builder(
        &mock,
        "produce",
        &[
            "mkdir -p out/deep && echo made by produce > out/deep/result.txt && echo not me > skip.txt",
        ],
    );
    producer.add_artifact_paths(vec!["out/".into()]);
    let producer = enqueue(&mock, producer);
    let mut consumer = job_builder(
        &mock,
        "consume",
        &["cat out/deep/result.txt", "test ! -e skip.txt"],
    );
    consumer.dependency(producer.clone());
    let consumer = enqueue(&mock, consumer);
    let args = ["run-single", "--max-builds", "2", "--check-interval", "1"];
    let (_project, out) = run_runner(mock.uri().as_str(), mock.runner_token(), &args).await;
    let (produced, consumed) = (text(&producer.log()), text(&consumer.log()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(producer.state(), MockJobState::Success, "{produced}");
    assert!(
        produced.contains("Uploading artifacts for successful job"),
        "{produced}"
    );
    assert!(
        produced.contains("Uploading artifacts as \"archive\" to coordinator... 201 Created"),
        "{produced}"
    );
    let uploaded: Vec<_> = producer.uploaded_artifacts().collect();
    assert_eq!(uploaded.len(), 1);
    assert_eq!(uploaded[0].filename.as_deref(), Some("artifacts.zip"));
    assert_eq!(uploaded[0].artifact_type.as_deref(), Some("archive"));
    assert_eq!(uploaded[0].artifact_format.as_deref(), Some("zip"));
    // What GitLab holds is a zip with the collected paths, and only them.
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(uploaded[0].data.to_vec())).unwrap();
    let mut names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).unwrap().name().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["out/", "out/deep/", "out/deep/result.txt"]);

    assert_eq!(consumer.state(), MockJobState::Success, "{consumed}");
    assert!(
        consumed.contains(&format!(
            "Downloading artifacts for produce ({})...",
            producer.id()
        )),
        "{consumed}"
    );
    assert!(consumed.contains("\nmade by produce\n"), "{consumed}");
    for (what, shown) in [
        ("the producer's trace", &produced),
        ("the consumer's trace", &consumed),
        ("stderr", &text(&out.stderr)),
    ] {
        assert_no_token(what, shown, &producer, &mock);
        assert_no_token(what, shown, &consumer, &mock);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_when_on_failure_are_uploaded_for_a_failed_job_only() {
    let mock = GitlabRunnerMock::start().await;
    let mut failing = job_builder(&mock, "failing", &["echo trace > debug.log", "exit 2"]);
    failing.add_artifact(
        Some("debug".into()),
        false,
        vec!["debug.log".into()],
        Some(gitlab_runner_mock::MockJobArtifactWhen::OnFailure),
        "archive".into(),
        Some("zip".into()),
        Some("1 week".into()),
    );
    let failing = enqueue(&mock, failing);
    run_one_job(&mock).await;
    let trace = text(&failing.log());
    assert_eq!(failing.state(), MockJobState::Failed, "{trace}");
    assert!(
        trace.contains("Uploading artifacts for failed job"),
        "{trace}"
    );
    let uploaded: Vec<_> = failing.uploaded_artifacts().collect();
    assert_eq!(uploaded.len(), 1, "{trace}");
    assert_eq!(uploaded[0].filename.as_deref(), Some("debug.zip"));
    // The job's own failure stays its failure.
    assert!(trace.contains("Job failed: exit code 2"), "{trace}");
}

/// A zip that tries every way out of the folder it is unpacked in, plus one honest file.
fn hostile_zip(outside: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut bytes);
    let options = zip::write::SimpleFileOptions::default();
    let absolute = outside.join("absolute.txt").to_string_lossy().into_owned();
    for name in [
        "../../../../escaped.txt",
        "a/../../escaped2.txt",
        absolute.as_str(),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(b"escaped\n").unwrap();
    }
    // A link out, then a file through it.
    zip.add_symlink("door", outside.to_string_lossy(), options)
        .unwrap();
    zip.start_file("door/through-link.txt", options).unwrap();
    zip.write_all(b"escaped\n").unwrap();
    zip.start_file("honest.txt", options).unwrap();
    zip.write_all(b"honest content\n").unwrap();
    zip.finish().unwrap();
    bytes.into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_dependency_archive_writes_nothing_outside_the_build_folder() {
    let mock = GitlabRunnerMock::start().await;
    let outside = tempfile::tempdir().unwrap();
    // The hostile archive is uploaded as a finished job's, over the protocol, by wharf's own
    // client (the mock serves only uploads with an `artifact_type`, which the archive given to
    // `add_completed_job` lacks).
    let attacker = mock.add_completed_job("attacker".into(), Vec::new());
    let archive = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(archive.path(), hostile_zip(outside.path())).unwrap();
    let payload: wharf_gitlab::runner::JobPayload =
        serde_json::from_value(serde_json::json!({"id": attacker.id(), "token": attacker.token()}))
            .unwrap();
    let client =
        wharf_gitlab::runner::RunnerClient::new(mock.uri().as_str(), mock.runner_token(), "shell")
            .unwrap();
    use wharf_gitlab::runner::artifacts::{ArchiveFormat, ArtifactUpload};
    client
        .artifacts_client()
        .unwrap()
        .upload(
            &payload,
            archive.path(),
            ArtifactUpload {
                file_name: "artifacts.zip",
                format: ArchiveFormat::Zip,
                artifact_type: "archive",
                expire_in: None,
            },
        )
        .await
        .unwrap();
    let mut victim = job_builder(&mock, "victim", &["cat honest.txt", "ls -la"]);
    victim.dependency(attacker.clone());
    let victim = enqueue(&mock, victim);
    let project = run_one_job(&mock).await;
    let trace = text(&victim.log());
    assert_eq!(victim.state(), MockJobState::Success, "{trace}");
    assert!(trace.contains("\nhonest content\n"), "{trace}");
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "written through the archive's absolute path or link"
    );
    for escaped in ["escaped.txt", "escaped2.txt"] {
        for root in [project.path(), project.home.path()] {
            assert!(
                files_named(root, escaped).is_empty(),
                "{escaped} under {}",
                root.display()
            );
        }
    }
    for refused in [
        "../../../../escaped.txt",
        "a/../../escaped2.txt",
        "door/through-link.txt",
    ] {
        assert!(
            trace.contains(&format!("{refused}: not extracted")),
            "{trace}"
        );
    }
}

/// A stand-in GitLab written here, declared as such, for what the mock does not do: answer an
/// upload with 413 or 500, redirect a dependency's download to object storage (another
/// origin, which must never see a job token), answer each job's final update 202 twice before
/// 200 (two-phase commit), and hand out jobs with `image:`. It hands out
/// the given payloads in order, keeps each job's uploads, trace and final updates.
mod stand_in {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    pub struct Seen {
        pub traces: HashMap<u64, Vec<u8>>,
        pub final_updates: HashMap<u64, Vec<serde_json::Value>>,
        /// Per job: (query, archive bytes) of each upload try.
        pub uploads: HashMap<u64, Vec<(String, Vec<u8>)>>,
        /// `JOB-TOKEN` headers the object storage received.
        pub tokens_at_storage: Vec<String>,
        pub storage_downloads: usize,
    }

    pub struct Coordinator {
        pub url: String,
        pub seen: Arc<Mutex<Seen>>,
    }

    fn header(request: &tiny_http::Request, name: &str) -> Option<String> {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    }

    /// The multipart part named `file`.
    fn file_part(content_type: &str, body: &[u8]) -> Vec<u8> {
        let boundary = format!("--{}", content_type.split("boundary=").nth(1).unwrap());
        let find = |from: usize, needle: &[u8]| {
            body[from..]
                .windows(needle.len())
                .position(|w| w == needle)
                .map(|p| p + from)
                .unwrap()
        };
        let named = find(0, b"name=\"file\"");
        let start = find(named, b"\r\n\r\n") + 4;
        let end = find(start, format!("\r\n{boundary}").as_bytes());
        body[start..end].to_vec()
    }

    /// `jobs`: (id, job token, payload). `upload_statuses`: the answers to the uploads, in
    /// order (then 201).
    pub fn start(
        jobs: Vec<(u64, String, serde_json::Value)>,
        upload_statuses: Vec<u16>,
    ) -> Coordinator {
        start_stalling(jobs, upload_statuses, false)
    }

    /// As [`start`]; with `stall`, the object storage never answers and GitLab cancels the job
    /// (`Job-Status: canceled` in its trace answers).
    pub fn start_stalling(
        jobs: Vec<(u64, String, serde_json::Value)>,
        upload_statuses: Vec<u16>,
        stall: bool,
    ) -> Coordinator {
        start_with_modes(jobs, upload_statuses, stall, false)
    }

    /// As [`start`]; artifact uploads are received but never answered, and once one arrived
    /// GitLab cancels the job (`Job-Status: canceled` in its trace and update answers).
    pub fn start_holding_uploads(jobs: Vec<(u64, String, serde_json::Value)>) -> Coordinator {
        start_with_modes(jobs, Vec::new(), false, true)
    }

    fn start_with_modes(
        jobs: Vec<(u64, String, serde_json::Value)>,
        upload_statuses: Vec<u16>,
        stall: bool,
        hold_uploads: bool,
    ) -> Coordinator {
        let seen = Arc::new(Mutex::new(Seen::default()));
        // Object storage on another origin (`localhost`, not `127.0.0.1`).
        let storage = tiny_http::Server::http("localhost:0").unwrap();
        let storage_url = format!(
            "http://localhost:{}",
            storage.server_addr().to_ip().unwrap().port()
        );
        let state = seen.clone();
        std::thread::spawn(move || {
            let mut stalled = Vec::new();
            for request in storage.incoming_requests() {
                if stall {
                    // Held unanswered until the test ends.
                    stalled.push(request);
                    continue;
                }
                let mut seen = state.lock().unwrap();
                if let Some(token) = header(&request, "JOB-TOKEN") {
                    seen.tokens_at_storage.push(token);
                }
                seen.storage_downloads += 1;
                let id: u64 = request
                    .url()
                    .trim_start_matches("/bucket/")
                    .split('.')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                let archive = seen
                    .uploads
                    .get(&id)
                    .and_then(|u| u.last())
                    .map(|(_, b)| b.clone());
                drop(seen);
                let response = match archive {
                    Some(bytes) => tiny_http::Response::from_data(bytes).with_status_code(200),
                    None => tiny_http::Response::from_data(Vec::new()).with_status_code(404),
                };
                let _ = request.respond(response);
            }
        });
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}",
            server.server_addr().to_ip().unwrap().port()
        );
        let state = seen.clone();
        let tokens: HashMap<u64, String> = jobs
            .iter()
            .map(|(id, token, _)| (*id, token.clone()))
            .collect();
        let mut pending: std::collections::VecDeque<_> =
            jobs.into_iter().map(|(_, _, p)| p).collect();
        let mut upload_statuses: std::collections::VecDeque<u16> = upload_statuses.into();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut request in server.incoming_requests() {
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                let (path, query) = match request.url().split_once('?') {
                    Some((p, q)) => (p.to_string(), q.to_string()),
                    None => (request.url().to_string(), String::new()),
                };
                let segments: Vec<&str> = path.trim_start_matches("/api/v4/").split('/').collect();
                let job_id = segments.get(1).and_then(|s| s.parse::<u64>().ok());
                let token_ok = job_id
                    .is_some_and(|id| header(&request, "JOB-TOKEN").as_ref() == tokens.get(&id));
                let mut seen = state.lock().unwrap();
                let (status, headers): (u16, Vec<(&str, String)>) =
                    match (request.method().as_str(), segments.as_slice()) {
                        ("POST", ["jobs", "request"]) => match pending.pop_front() {
                            Some(payload) => {
                                drop(seen);
                                let _ = request.respond(
                                    tiny_http::Response::from_data(payload.to_string())
                                        .with_status_code(201),
                                );
                                continue;
                            }
                            None => (204, vec![]),
                        },
                        (_, ["jobs", _, ..]) if !token_ok => (403, vec![]),
                        ("PUT", ["jobs", _]) => {
                            let update: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            if update.get("output").is_none() {
                                let status = if hold_uploads && !seen.uploads.is_empty() {
                                    "canceled"
                                } else {
                                    "running"
                                };
                                (200, vec![("Job-Status", status.into())])
                            } else {
                                // Two-phase commit: "not yet" twice, then taken.
                                let finals = seen.final_updates.entry(job_id.unwrap()).or_default();
                                finals.push(update);
                                let status = if finals.len() <= 2 { 202 } else { 200 };
                                (status, vec![("X-GitLab-Trace-Update-Interval", "1".into())])
                            }
                        }
                        ("PATCH", ["jobs", _, "trace"]) => {
                            let trace = seen.traces.entry(job_id.unwrap()).or_default();
                            trace.extend_from_slice(&body);
                            let size = trace.len();
                            let canceled = stall || (hold_uploads && !seen.uploads.is_empty());
                            let status = if canceled { "canceled" } else { "running" };
                            (
                                202,
                                vec![
                                    ("Range", format!("0-{size}")),
                                    ("X-GitLab-Trace-Update-Interval", "1".into()),
                                    ("Job-Status", status.into()),
                                ],
                            )
                        }
                        ("POST", ["jobs", _, "artifacts"]) => {
                            let content_type = header(&request, "Content-Type").unwrap();
                            let archive = file_part(&content_type, &body);
                            seen.uploads
                                .entry(job_id.unwrap())
                                .or_default()
                                .push((query.clone(), archive));
                            if hold_uploads {
                                // Held unanswered until the test ends.
                                held.push(request);
                                continue;
                            }
                            (upload_statuses.pop_front().unwrap_or(201), vec![])
                        }
                        // GitLab answers with a presigned object storage URL.
                        ("GET", ["jobs", id, "artifacts"]) => (
                            302,
                            vec![(
                                "Location",
                                format!("{storage_url}/bucket/{id}.zip?X-Amz-Signature=presigned"),
                            )],
                        ),
                        _ => (404, vec![]),
                    };
                drop(seen);
                let mut response =
                    tiny_http::Response::from_data(Vec::new()).with_status_code(status);
                for (name, value) in headers {
                    response.add_header(
                        tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap(),
                    );
                }
                let _ = request.respond(response);
            }
        });
        Coordinator { url, seen }
    }

    /// A job's payload: `GIT_STRATEGY: none`, the job token as a masked variable.
    pub fn payload(
        id: u64,
        token: &str,
        name: &str,
        script: &[&str],
        image: Option<&str>,
        artifacts: serde_json::Value,
        dependencies: serde_json::Value,
    ) -> (u64, String, serde_json::Value) {
        let image =
            image.map(|name| serde_json::json!({"name": name, "pull_policy": ["if-not-present"]}));
        let payload = serde_json::json!({
            "id": id, "token": token,
            "job_info": {"name": name, "stage": "test", "project_id": 9, "project_full_path": "group/project"},
            "git_info": {"repo_url": "http://127.0.0.1:9/none.git", "ref": "main", "sha": "0", "ref_type": "branch"},
            "runner_info": {"timeout": 600},
            "variables": [
                {"key": "CI_JOB_TOKEN", "value": token, "masked": true, "public": false},
                {"key": "GIT_STRATEGY", "value": "none", "public": true}
            ],
            "steps": [{"name": "script", "script": script, "timeout": 600, "when": "on_success"}],
            "image": image,
            "artifacts": artifacts,
            "dependencies": dependencies,
            "features": {"trace_sections": true, "failure_reasons": ["script_failure", "runner_system_failure", "unknown_failure"]}
        });
        (id, token.to_string(), payload)
    }
}

const PRODUCER_TOKEN: &str = "stand-in-producer-token-777";
const CONSUMER_TOKEN: &str = "stand-in-consumer-token-888";

/// Job 1 writes `out/result.txt` and uploads it (`artifacts:name` with a variable, `expire_in`);
/// job 2 depends on it, downloads it through GitLab's redirect to object storage, and cats it.
fn producer_and_consumer(image: Option<&str>) -> stand_in::Coordinator {
    let producer = stand_in::payload(
        1,
        PRODUCER_TOKEN,
        "produce",
        &["mkdir -p out && echo made by produce > out/result.txt"],
        image,
        serde_json::json!([{"name": "build-$CI_JOB_NAME", "paths": ["out/"], "when": "on_success",
                            "artifact_type": "archive", "artifact_format": "zip", "expire_in": "1 week"}]),
        serde_json::json!([]),
    );
    let consumer = stand_in::payload(
        2,
        CONSUMER_TOKEN,
        "consume",
        &["cat out/result.txt"],
        image,
        serde_json::json!([]),
        serde_json::json!([{"id": 1, "token": PRODUCER_TOKEN, "name": "produce",
                            "artifacts_file": {"filename": "artifacts.zip", "size": 1}}]),
    );
    stand_in::start(vec![producer, consumer], Vec::new())
}

fn assert_passed_through_object_storage(
    coordinator: &stand_in::Coordinator,
    out: &std::process::Output,
) {
    let seen = coordinator.seen.lock().unwrap();
    let consumed = text(&seen.traces[&2]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        seen.final_updates[&1].last().unwrap()["state"],
        "success",
        "{}",
        text(&seen.traces[&1])
    );
    assert_eq!(
        seen.final_updates[&2].last().unwrap()["state"],
        "success",
        "{consumed}"
    );
    assert!(consumed.contains("\nmade by produce\n"), "{consumed}");
    // Each final update was sent again after the two 202s, then taken.
    assert_eq!(seen.final_updates[&1].len(), 3);
    assert_eq!(seen.final_updates[&2].len(), 3);
    let (query, _) = &seen.uploads[&1][0];
    assert!(query.contains("expire_in=1+week"), "{query}");
    assert!(
        query.contains("artifact_type=archive") && query.contains("artifact_format=zip"),
        "{query}"
    );
    assert_eq!(seen.storage_downloads, 1);
    assert!(
        seen.tokens_at_storage.is_empty(),
        "a job token reached object storage"
    );
    for trace in seen.traces.values() {
        let trace = text(trace);
        for token in [PRODUCER_TOKEN, CONSUMER_TOKEN] {
            assert!(!trace.contains(token), "{trace}");
        }
        assert!(!trace.contains("presigned"), "{trace}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependency_comes_through_gitlabs_redirect_to_object_storage_without_the_token() {
    let coordinator = producer_and_consumer(None);
    let args = ["run-single", "--max-builds", "2", "--check-interval", "1"];
    let (_project, out) = run_runner(&coordinator.url, "glrt-stand-in", &args).await;
    assert_passed_through_object_storage(&coordinator, &out);
    let seen = coordinator.seen.lock().unwrap();
    // gitlab-runner's count: the folder and what is in it.
    let produced = text(&seen.traces[&1]);
    assert!(
        produced.contains("out: found 2 matching artifact files and directories"),
        "{produced}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs dockerd: run by scripts/test-all.sh"]
async fn artifacts_pass_between_two_docker_jobs_through_gitlab() {
    crate::support::load_busybox_into_docker("wharf-runner-busybox:1");
    let coordinator = producer_and_consumer(Some("wharf-runner-busybox:1"));
    let args = [
        "run-single",
        "--max-builds",
        "2",
        "--check-interval",
        "1",
        "--executor",
        "docker",
    ];
    let (_project, out) = run_runner(&coordinator.url, "glrt-stand-in", &args).await;
    assert_passed_through_object_storage(&coordinator, &out);
}

/// One shell job (id 1) that writes `file` and uploads it as `artifacts` says, against a
/// stand-in answering the uploads with `upload_statuses`: the coordinator once the runner is done.
async fn one_upload(
    file: &str,
    artifacts: serde_json::Value,
    upload_statuses: Vec<u16>,
) -> stand_in::Coordinator {
    let script = format!("echo data > {file}");
    let job = stand_in::payload(
        1,
        PRODUCER_TOKEN,
        "upload",
        &[&script],
        None,
        artifacts,
        serde_json::json!([]),
    );
    let coordinator = stand_in::start(vec![job], upload_statuses);
    run_runner(&coordinator.url, "glrt-stand-in", ONE_JOB).await;
    coordinator
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_gitlab_finds_too_large_fails_the_job_with_the_fix_and_is_not_sent_again() {
    let artifacts = serde_json::json!([{"paths": ["big.bin"], "artifact_type": "archive", "artifact_format": "zip"}]);
    let coordinator = one_upload("big.bin", artifacts, vec![413]).await;
    let seen = coordinator.seen.lock().unwrap();
    let trace = text(&seen.traces[&1]);
    let last = seen.final_updates[&1].last().unwrap();
    assert_eq!(last["state"], "failed", "{trace}");
    assert_eq!(last["failure_reason"], "script_failure");
    assert_eq!(last["exit_code"], 1);
    assert_eq!(seen.uploads[&1].len(), 1, "413 is not worth another try");
    assert!(trace.contains("413"), "{trace}");
    assert!(trace.contains("fix: "), "{trace}");
    assert!(trace.contains("Job failed: exit code 1"), "{trace}");
    assert!(!trace.contains(PRODUCER_TOKEN), "{trace}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_answered_500_is_sent_again() {
    let artifacts = serde_json::json!([{"name": "junit", "paths": ["report.xml"], "when": "always",
                                        "artifact_type": "junit", "artifact_format": "gzip"}]);
    let coordinator = one_upload("report.xml", artifacts, vec![500]).await;
    let seen = coordinator.seen.lock().unwrap();
    let trace = text(&seen.traces[&1]);
    assert_eq!(
        seen.final_updates[&1].last().unwrap()["state"],
        "success",
        "{trace}"
    );
    assert_eq!(seen.uploads[&1].len(), 2, "{trace}");
    assert!(
        trace.contains("Uploading artifacts as \"junit\" to coordinator... 201 Created"),
        "{trace}"
    );
    // A gzip report: one member, named after the file.
    let mut decoder = flate2::read::GzDecoder::new(&seen.uploads[&1][1].1[..]);
    let mut contents = String::new();
    std::io::Read::read_to_string(&mut decoder, &mut contents).unwrap();
    assert_eq!(contents, "data\n");
    assert_eq!(
        decoder.header().unwrap().filename(),
        Some(&b"report.xml"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn artifact_paths_never_take_files_from_outside_the_build_folder() {
    let mock = GitlabRunnerMock::start().await;
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "outside secret\n").unwrap();
    let secret = outside.path().join("secret.txt");
    let script = format!(
        "mkdir -p out && echo mine > out/mine.txt && ln -s {dir} out/door && ln -s {dir} door && ln -s {file} out/secret-link",
        dir = outside.path().display(),
        file = secret.display()
    );
    let mut job = job_builder(&mock, "hostile-paths", &[&script]);
    job.add_artifact_paths(vec![
        "out/".into(),
        "../".into(),
        secret.display().to_string(),
        "door/secret.txt".into(),
    ]);
    let job = enqueue(&mock, job);
    run_one_job(&mock).await;
    let trace = text(&job.log());
    assert_eq!(job.state(), MockJobState::Success, "{trace}");
    let uploaded: Vec<_> = job.uploaded_artifacts().collect();
    assert_eq!(uploaded.len(), 1, "{trace}");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(uploaded[0].data.to_vec())).unwrap();
    let mut names = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).unwrap();
        names.push(entry.name().to_string());
        let mut contents = String::new();
        std::io::Read::read_to_string(&mut entry, &mut contents).unwrap();
        // Links are archived as links (their target as content), never followed.
        assert!(
            !contents.contains("outside secret"),
            "{} holds the file outside",
            entry.name()
        );
    }
    names.sort();
    assert_eq!(
        names,
        ["out/", "out/door", "out/mine.txt", "out/secret-link"],
        "{trace}"
    );
    for refused in ["../", &secret.display().to_string(), "door/secret.txt"] {
        assert!(
            trace.contains(&format!("{refused}: not uploaded")),
            "{refused}: {trace}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn canceling_the_job_in_gitlab_stops_a_stalled_dependency_download() {
    let consumer = stand_in::payload(
        2,
        CONSUMER_TOKEN,
        "consume",
        &["echo the script ran"],
        None,
        serde_json::json!([]),
        serde_json::json!([{"id": 1, "token": PRODUCER_TOKEN, "name": "produce",
                            "artifacts_file": {"filename": "artifacts.zip", "size": 1}}]),
    );
    // The producer is listed for its token only: the runner takes one job, the consumer.
    let producer = stand_in::payload(
        1,
        PRODUCER_TOKEN,
        "produce",
        &["true"],
        None,
        serde_json::json!([]),
        serde_json::json!([]),
    );
    let coordinator = stand_in::start_stalling(vec![consumer, producer], Vec::new(), true);
    // Without the cancel, the runner would wait for the storage forever (`finished` guards).
    let (_project, out) = run_runner(&coordinator.url, "glrt-stand-in", ONE_JOB).await;
    let seen = coordinator.seen.lock().unwrap();
    let trace = text(&seen.traces[&2]);
    assert!(
        trace.contains("Downloading artifacts for produce (1)..."),
        "{trace}"
    );
    assert!(!trace.contains("the script ran"), "{trace}");
    assert!(!trace.contains("ERROR: Downloading"), "{trace}");
    // GitLab already holds the job as canceled: the runner only ends it on its side.
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Job 2 finished: failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn canceling_the_job_in_gitlab_stops_an_artifacts_upload_gitlab_does_not_answer() {
    let artifacts = serde_json::json!([{"paths": ["out.txt"], "artifact_type": "archive", "artifact_format": "zip"}]);
    let job = stand_in::payload(
        1,
        PRODUCER_TOKEN,
        "upload",
        &["echo made > out.txt; echo quiet from here"],
        None,
        artifacts,
        serde_json::json!([]),
    );
    let coordinator = stand_in::start_holding_uploads(vec![job]);
    // Without the cancel, the runner would wait for GitLab's answer forever (`finished` guards).
    let (_project, out) = run_runner(&coordinator.url, "glrt-stand-in", ONE_JOB).await;
    let seen = coordinator.seen.lock().unwrap();
    let trace = text(&seen.traces[&1]);
    assert_eq!(seen.uploads[&1].len(), 1, "{trace}");
    assert!(
        trace.contains("Uploading artifacts stopped: the job was canceled"),
        "{trace}"
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Job 1 finished: failed"), "{stderr}");
}
