//! `wharf runner run-single` against a GitLab coordinator we did not write: Collabora's
//! `gitlab-runner-mock` (the mock their Rust runners are tested with). It hands out jobs,
//! checks every trace patch's range and token, and keeps the job's state and log.
//! The mock's payload names a repository that does not exist, so these jobs set
//! `GIT_STRATEGY: none` (sources from git are tested in wharf-gitlab).

use crate::support::Project;
use gitlab_runner_mock::{
    GitlabRunnerMock, MockJob, MockJobState, MockJobStepName, MockJobStepWhen,
};
use std::process::Output;
use std::time::Duration;

/// A shell job (`GIT_STRATEGY: none`: the mock names no real repository) running `script`,
/// not yet enqueued.
pub(crate) fn job_builder(
    mock: &GitlabRunnerMock,
    name: &str,
    script: &[&str],
) -> gitlab_runner_mock::MockJobBuilder {
    let mut builder = mock.job_builder(name.to_string());
    builder.add_step(
        MockJobStepName::Script,
        script.iter().map(|s| s.to_string()).collect(),
        3600,
        MockJobStepWhen::OnSuccess,
        false,
    );
    builder.add_variable("GIT_STRATEGY".into(), "none".into(), true, false);
    builder
}

/// A shell job with `script` and the variables given (`(key, value, masked)`), enqueued.
pub(crate) fn shell_job(
    mock: &GitlabRunnerMock,
    script: &[&str],
    variables: &[(&str, &str, bool)],
) -> MockJob {
    let mut builder = job_builder(mock, "build", script);
    for (key, value, masked) in variables {
        builder.add_variable(key.to_string(), value.to_string(), !masked, *masked);
    }
    let job = builder.build();
    mock.enqueue_job(job.clone());
    job
}

/// Start `wharf runner` with `args` against the coordinator at `url` (token in the environment).
pub(crate) fn spawn_runner(
    project: &Project,
    url: &str,
    token: &str,
    args: &[&str],
) -> tokio::process::Child {
    let mut cmd: tokio::process::Command = project.wharf().into();
    cmd.arg("runner")
        .args(args)
        .env("CI_SERVER_URL", url)
        .env("CI_SERVER_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().unwrap()
}

/// What most tests run: one job, then stop.
pub(crate) const ONE_JOB: &[&str] = &["run-single", "--max-builds", "1", "--check-interval", "1"];

/// `wharf runner run-single --max-builds 1` (shell) against the mock.
fn runner(project: &Project, mock: &GitlabRunnerMock) -> tokio::process::Child {
    spawn_runner(project, mock.uri().as_str(), mock.runner_token(), ONE_JOB)
}

/// Polls `ready` until it holds (a guard of one minute against a hung runner, not a timing
/// assertion: the caller asserts what it waited for).
pub(crate) async fn wait_until(ready: impl Fn() -> bool) {
    for _ in 0..600 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM to the runner we started.
fn terminate(child: &tokio::process::Child) {
    signal(child, "-TERM");
}

pub(crate) fn signal(child: &tokio::process::Child, which: &str) {
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args([which, &pid])
        .status()
        .unwrap();
    assert!(killed.success());
}

/// The runner's exit; a guard against a hung runner, not a timing assertion.
pub(crate) async fn finished(child: tokio::process::Child) -> Output {
    tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the runner did not stop")
        .unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn assert_no_token(what: &str, text: &str, job: &MockJob, mock: &GitlabRunnerMock) {
    assert!(!text.contains(job.token()), "job token in {what}:\n{text}");
    assert!(
        !text.contains(mock.runner_token()),
        "runner token in {what}:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shell_job_from_gitlab_runs_and_its_trace_and_success_reach_gitlab() {
    let mock = GitlabRunnerMock::start().await;
    let job = shell_job(
        &mock,
        &["echo hello from $GREETING", "echo secret is $MY_SECRET"],
        &[
            ("MY_SECRET", "s3cr3t-value-42", true),
            ("GREETING", "wharf", false),
        ],
    );
    let project = Project::new(&[]);
    let out = finished(runner(&project, &mock)).await;
    let trace = text(&job.log());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(job.state(), MockJobState::Success, "{trace}");
    assert!(trace.contains("$ echo hello from $GREETING"), "{trace}");
    assert!(trace.contains("hello from wharf\n"), "{trace}");
    // GitLab's collapsible sections, as gitlab-runner writes them.
    assert!(
        trace.contains(":executing_step_script_stage_of_the_job_script\r\x1b[0K"),
        "{trace:?}"
    );
    assert!(trace.contains("section_end:"), "{trace:?}");
    assert!(
        trace.contains(":getting_source_from_git_repository\r\x1b[0K"),
        "{trace:?}"
    );
    assert!(trace.contains("secret is [MASKED]"), "{trace}");
    assert!(!trace.contains("s3cr3t-value-42"), "{trace}");
    for (what, output) in [
        ("the trace", &trace),
        ("stdout", &text(&out.stdout)),
        ("stderr", &text(&out.stderr)),
    ] {
        assert_no_token(what, output, &job, &mock);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_script_fails_the_job_at_gitlab_with_its_exit_code_in_the_trace() {
    let mock = GitlabRunnerMock::start().await;
    let job = shell_job(&mock, &["echo before", "exit 3", "echo never"], &[]);
    let project = Project::new(&[]);
    let out = finished(runner(&project, &mock)).await;
    let trace = text(&job.log());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(job.state(), MockJobState::Failed, "{trace}");
    assert!(trace.contains("before\n"), "{trace}");
    assert!(!trace.contains("never\n"), "{trace}");
    assert!(trace.contains("Job failed: exit code 3"), "{trace}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trace_over_one_mib_reaches_gitlab_whole_in_several_patches() {
    let mock = GitlabRunnerMock::start().await;
    // 1.5 MB of output in lines of 100 characters.
    let job = shell_job(
        &mock,
        &["i=0; while [ $i -lt 15000 ]; do printf '%099d\\n' $i; i=$((i+1)); done"],
        &[],
    );
    let project = Project::new(&[]);
    let out = finished(runner(&project, &mock)).await;
    let trace = job.log();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(job.state(), MockJobState::Success);
    assert!(trace.len() > 1_500_000, "{}", trace.len());
    assert!(job.log_patches() >= 2, "{} patches", job.log_patches());
    let trace = text(&trace);
    assert!(trace.contains(&format!("{:099}\n", 0)));
    assert!(trace.contains(&format!("{:099}\n", 14999)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_canceled_in_gitlab_stops_on_the_runner() {
    let mock = GitlabRunnerMock::start().await;
    mock.set_update_interval(1);
    let job = shell_job(
        &mock,
        &["i=0; while [ $i -lt 600 ]; do echo tick $i; i=$((i+1)); sleep 0.2; done; echo all done"],
        &[],
    );
    let project = Project::new(&[]);
    let child = runner(&project, &mock);
    // Wait until the job is running and its output reached GitLab.
    wait_until(|| text(&job.log()).contains("tick 1\n")).await;
    assert!(
        text(&job.log()).contains("tick 1\n"),
        "{}",
        text(&job.log())
    );
    job.cancel();
    let out = finished(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(job.state(), MockJobState::Cancelled);
    let trace = text(&job.log());
    assert!(!trace.contains("\nall done"), "{trace}");
    assert!(
        text(&out.stderr).contains(&format!("Job {} finished: failed", job.id())),
        "{}",
        text(&out.stderr)
    );
}

/// A stand-in GitLab written here, declared as such: the mock above answers neither 416 with a
/// `Range` nor 202 to the final update, does not show the update's fields, names a
/// repository that does not exist, and has no `runners/verify` nor unregister endpoints. This one hands out one job whose sources come from a local
/// bare repository (served as git's "dumb" HTTP, only with the job token as Basic credentials),
/// answers the first trace patch with 416 and the first final updates with 500, then 202.
pub(crate) mod stand_in {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    pub const JOB_TOKEN: &str = "stand-in-job-token-5150";
    pub const RUNNER_TOKEN: &str = "glrt-stand-in-runner-token";
    /// A registration-token-era runner token (no `glrt-`): unregistered with `DELETE runners`.
    pub const LEGACY_TOKEN: &str = "stand-in-legacy-runner-token";

    #[derive(Default)]
    pub struct Seen {
        pub trace: Vec<u8>,
        pub patches: usize,
        pub range_mismatches: usize,
        pub final_updates: Vec<serde_json::Value>,
        pub git_requests: usize,
        pub git_refused: usize,
        pub job_given: bool,
        /// `DELETE` unregister calls that GitLab accepted: the path and the body.
        pub unregistered: Vec<(String, serde_json::Value)>,
        /// Set by a test: trace patches are answered `Job-Status: canceled` (the job was
        /// canceled in GitLab's UI).
        pub cancel: bool,
    }

    pub struct Coordinator {
        pub url: String,
        pub seen: Arc<Mutex<Seen>>,
    }

    pub fn start(repo: PathBuf, sha: String, script: Vec<String>) -> Coordinator {
        start_with_image(repo, sha, script, None, serde_json::json!([]))
    }

    /// As [`start`], the job with `image:` (for the image executors) and the payload's
    /// `credentials` (a JSON array).
    pub fn start_with_image(
        repo: PathBuf,
        sha: String,
        script: Vec<String>,
        image: Option<&str>,
        credentials: serde_json::Value,
    ) -> Coordinator {
        let image =
            image.map(|name| serde_json::json!({"name": name, "pull_policy": ["if-not-present"]}));
        start_with(
            repo,
            sha,
            script,
            serde_json::json!({"image": image, "credentials": credentials}),
        )
    }

    /// As [`start`], with more fields of the job payload (`image`, `cache`...).
    pub fn start_with(
        repo: PathBuf,
        sha: String,
        script: Vec<String>,
        payload_fields: serde_json::Value,
    ) -> Coordinator {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = seen.clone();
        let repo_url = format!("{url}/group/project.git");
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let mut body = Vec::new();
                let _ = request.as_reader().read_to_end(&mut body);
                let header = |name: &str| {
                    request
                        .headers()
                        .iter()
                        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
                        .map(|h| h.value.as_str().to_string())
                };
                let path = request.url().split('?').next().unwrap_or("").to_string();
                let mut seen = state.lock().unwrap();
                let (status, headers, answer): (u16, Vec<(&str, String)>, Vec<u8>) = match (
                    request.method().as_str(),
                    path.as_str(),
                ) {
                    ("POST", "/api/v4/jobs/request") if !seen.job_given => {
                        seen.job_given = true;
                        let mut payload = serde_json::json!({
                            "id": 1, "token": JOB_TOKEN,
                            "job_info": {"name": "from-git", "stage": "test", "project_id": 9, "project_full_path": "group/project"},
                            "git_info": {"repo_url": repo_url, "ref": "main", "sha": sha, "ref_type": "branch",
                                         "refspecs": ["+refs/heads/main:refs/remotes/origin/main"], "depth": 0},
                            "runner_info": {"timeout": 600},
                            "variables": [{"key": "CI_JOB_TOKEN", "value": JOB_TOKEN, "masked": true, "public": false}],
                            "steps": [{"name": "script", "script": script, "timeout": 600, "when": "on_success"}],
                            "features": {"trace_sections": true, "token_mask_prefixes": ["glpat-"],
                                         "failure_reasons": ["script_failure", "unknown_failure", "runner_interrupted"]}
                        });
                        if let Some(fields) = payload_fields.as_object() {
                            for (key, value) in fields {
                                payload[key] = value.clone();
                            }
                        }
                        (201, vec![], payload.to_string().into_bytes())
                    }
                    ("POST", "/api/v4/jobs/request") => (204, vec![], vec![]),
                    ("POST", "/api/v4/runners/verify") => {
                        let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        if header("RUNNER-TOKEN").as_deref() == Some(RUNNER_TOKEN)
                            && request["token"] == RUNNER_TOKEN
                        {
                            let answer = serde_json::json!({"id": 42, "token": RUNNER_TOKEN, "token_expires_at": null});
                            (200, vec![], answer.to_string().into_bytes())
                        } else {
                            (403, vec![], br#"{"message":"403 Forbidden"}"#.to_vec())
                        }
                    }
                    ("DELETE", path @ ("/api/v4/runners/managers" | "/api/v4/runners")) => {
                        // As gitlab-runner's own test handlers: the header and body tokens
                        // match; a runner manager is named by a system_id.
                        let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let token = request["token"].as_str().unwrap_or_default().to_string();
                        let known = if path.ends_with("managers") {
                            token == RUNNER_TOKEN
                                && request["system_id"].as_str().is_some_and(|id| {
                                    id.len() == 14 && (id.starts_with("s_") || id.starts_with("r_"))
                                })
                        } else {
                            token == LEGACY_TOKEN
                        };
                        if header("RUNNER-TOKEN").as_deref() == Some(token.as_str()) && known {
                            seen.unregistered.push((path.to_string(), request));
                            (204, vec![], vec![])
                        } else {
                            (403, vec![], br#"{"message":"403 Forbidden"}"#.to_vec())
                        }
                    }
                    ("PATCH", "/api/v4/jobs/1/trace") => {
                        assert_eq!(header("JOB-TOKEN").as_deref(), Some(JOB_TOKEN));
                        seen.patches += 1;
                        let range = header("Content-Range").unwrap_or_default();
                        let start: usize = range
                            .split('-')
                            .next()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(usize::MAX);
                        if seen.patches == 1 || start != seen.trace.len() {
                            seen.range_mismatches += 1;
                            let size = seen.trace.len();
                            (416, vec![("Range", format!("0-{size}"))], vec![])
                        } else {
                            seen.trace.extend_from_slice(&body);
                            let size = seen.trace.len();
                            (
                                202,
                                vec![
                                    ("Range", format!("0-{size}")),
                                    ("X-GitLab-Trace-Update-Interval", "1".into()),
                                    (
                                        "Job-Status",
                                        if seen.cancel { "canceled" } else { "running" }.into(),
                                    ),
                                ],
                                vec![],
                            )
                        }
                    }
                    ("PUT", "/api/v4/jobs/1") => {
                        let update: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        if update.get("output").is_some() {
                            seen.final_updates.push(update);
                        }
                        // One failure, then "not yet", then taken.
                        let status = match seen.final_updates.len() {
                            1 => 500,
                            2 => 202,
                            _ => 200,
                        };
                        let mut headers = vec![("X-GitLab-Trace-Update-Interval", "1".into())];
                        if seen.cancel {
                            headers.push(("Job-Status", "canceled".into()));
                        }
                        (status, headers, vec![])
                    }
                    ("GET", git_path) if git_path.starts_with("/group/project.git/") => {
                        seen.git_requests += 1;
                        let expected = format!(
                            "Basic {}",
                            crate::support::b64(&format!("gitlab-ci-token:{JOB_TOKEN}"))
                        );
                        let file = repo.join(&git_path["/group/project.git/".len()..]);
                        if header("Authorization").as_deref() != Some(expected.as_str()) {
                            seen.git_refused += 1;
                            (
                                401,
                                vec![("WWW-Authenticate", "Basic realm=\"git\"".into())],
                                vec![],
                            )
                        } else {
                            match std::fs::read(&file) {
                                Ok(bytes) => (200, vec![], bytes),
                                Err(_) => (404, vec![], vec![]),
                            }
                        }
                    }
                    _ => (404, vec![], vec![]),
                };
                drop(seen);
                let mut response = tiny_http::Response::from_data(answer).with_status_code(status);
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
}

/// A registry with htpasswd (`user`, `pass` only) holding a seed image, and that image's name.
fn private_ci_image(user: &str, pass: &str) -> (wharf_testkit::Registry, String) {
    let reg = wharf_testkit::Registry::start_basic(&[(user, pass)]).unwrap();
    let image = format!("{}/group/project/ci:1", reg.host());
    let layout = tempfile::tempdir().unwrap();
    crate::support::unique_seed_layout(layout.path())
        .push(&image, Some((user, pass)))
        .unwrap();
    (reg, image)
}

/// A bare repository holding `hello.txt`, ready for git's dumb HTTP; its commit.
pub(crate) fn bare_repository(root: &std::path::Path) -> (std::path::PathBuf, String) {
    use crate::support::git;
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("hello.txt"), "hello from git\n").unwrap();
    git(&work, &["add", "hello.txt"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    let bare = root.join("project.git");
    git(root, &["clone", "-q", "--bare", "work", "project.git"]);
    git(&bare, &["update-server-info"]);
    let sha = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&work)
        .output()
        .unwrap();
    (bare, text(&sha.stdout).trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn sources_come_from_git_info_and_the_final_update_survives_416_500_and_202() {
    let project = Project::new(&[]);
    let (repo, sha) = bare_repository(project.home.path());
    let coordinator = stand_in::start(
        repo,
        sha,
        vec![
            "cat hello.txt".into(),
            "echo token $CI_JOB_TOKEN".into(),
            "echo personal glpat-Abc123_def-XYZ end".into(),
            "exit 4".into(),
        ],
    );
    let runner = spawn_runner(&project, &coordinator.url, stand_in::RUNNER_TOKEN, ONE_JOB);
    let out = finished(runner).await;
    let seen = coordinator.seen.lock().unwrap();
    let trace = text(&seen.trace);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(trace.contains("\nhello from git\n"), "{trace}");
    assert!(trace.contains("token [MASKED]"), "{trace}");
    // GitLab's token_mask_prefixes: the token after the prefix is masked.
    assert!(trace.contains("personal glpat-[MASKED] end"), "{trace}");
    assert!(!trace.contains("Abc123_def-XYZ"), "{trace}");
    assert!(
        seen.git_requests > 0 && seen.git_refused == 0,
        "git requests: {}, refused: {}",
        seen.git_requests,
        seen.git_refused
    );
    assert!(seen.range_mismatches >= 1);
    assert_eq!(
        seen.final_updates.len(),
        3,
        "a 500, then a 202, make the runner send the final update again"
    );
    let last = &seen.final_updates[2];
    assert_eq!(last["state"], "failed");
    assert_eq!(last["failure_reason"], "script_failure");
    assert_eq!(last["exit_code"], 4);
    assert_eq!(
        last["output"]["checksum"],
        format!("crc32:{:08x}", crc32fast::hash(&seen.trace))
    );
    assert_eq!(last["output"]["bytesize"], seen.trace.len());
    for output in [&trace, &text(&out.stdout), &text(&out.stderr)] {
        assert!(!output.contains(stand_in::JOB_TOKEN), "{output}");
        assert!(!output.contains(stand_in::RUNNER_TOKEN), "{output}");
    }
    // Nor in any file the runner wrote: the working copy (git's config, no token in the
    // remote), wharf's logs and build folders.
    let builds = project.path().join("builds");
    assert!(builds.join("group/project/.git/config").is_file());
    for entry in walkdir::WalkDir::new(&builds)
        .into_iter()
        .filter_map(Result::ok)
    {
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            let content = String::from_utf8_lossy(&bytes);
            assert!(
                !content.contains(stand_in::JOB_TOKEN),
                "{}",
                entry.path().display()
            );
            assert!(
                !content.contains(stand_in::RUNNER_TOKEN),
                "{}",
                entry.path().display()
            );
        }
    }
}

/// A runner (no --max-builds) running a job that prints `tick N` every 0.2 s, `ticks` times;
/// returned once GitLab has its first ticks.
async fn ticking_job(
    project: &Project,
    ticks: u32,
) -> (stand_in::Coordinator, tokio::process::Child) {
    let (repo, sha) = bare_repository(project.home.path());
    let script =
        format!("i=0; while [ $i -lt {ticks} ]; do echo tick $i; i=$((i+1)); sleep 0.2; done");
    let coordinator = stand_in::start(repo, sha, vec![script]);
    let args = ["run-single", "--check-interval", "1"];
    let child = spawn_runner(project, &coordinator.url, stand_in::RUNNER_TOKEN, &args);
    let ticking = || text(&coordinator.seen.lock().unwrap().trace).contains("tick 1\n");
    wait_until(&ticking).await;
    assert!(
        ticking(),
        "{}",
        text(&coordinator.seen.lock().unwrap().trace)
    );
    (coordinator, child)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_running_job_and_gitlab_hears_runner_interrupted() {
    let project = Project::new(&[]);
    let (coordinator, child) = ticking_job(&project, 600).await;
    terminate(&child);
    let out = finished(child).await;
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let seen = coordinator.seen.lock().unwrap();
    let last = seen.final_updates.last().expect("a final update");
    assert_eq!(last["state"], "failed");
    assert_eq!(last["failure_reason"], "runner_interrupted");
}

#[tokio::test(flavor = "multi_thread")]
async fn register_writes_a_private_config_and_run_takes_jobs_for_its_runners() {
    let project = Project::new(&[]);
    let (repo, sha) = bare_repository(project.home.path());
    let coordinator = stand_in::start(
        repo,
        sha,
        vec!["cat hello.txt".into(), "echo env $FROM_CONFIG".into()],
    );
    let config = project.path().join("etc/config.toml");
    let config_arg = config.to_str().unwrap();
    let wrong = project
        .wharf()
        .args([
            "runner", "register", "--name", "ci-1", "--config", config_arg,
        ])
        .env("CI_SERVER_URL", &coordinator.url)
        .env("CI_SERVER_TOKEN", "glrt-wrong")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("403"),
        "{}",
        text(&wrong.stderr)
    );
    assert!(!config.exists());
    let registered = project
        .wharf()
        .args([
            "runner", "register", "--name", "ci-1", "--config", config_arg,
        ])
        .env("CI_SERVER_URL", &coordinator.url)
        .env("CI_SERVER_TOKEN", stand_in::RUNNER_TOKEN)
        .output()
        .unwrap();
    assert!(registered.status.success(), "{}", text(&registered.stderr));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let written: toml::Value = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(written["concurrent"].as_integer(), Some(1));
    assert_eq!(written["runners"][0]["name"].as_str(), Some("ci-1"));
    assert_eq!(written["runners"][0]["id"].as_integer(), Some(42));
    assert_eq!(
        written["runners"][0]["token"].as_str(),
        Some(stand_in::RUNNER_TOKEN)
    );
    let listed = project
        .wharf()
        .args(["runner", "list", "--config", config_arg])
        .output()
        .unwrap();
    assert!(text(&listed.stdout).contains("ci-1\texecutor=shell\turl=http://127.0.0.1:"));
    assert!(!text(&listed.stdout).contains(stand_in::RUNNER_TOKEN));
    // A key gitlab-runner has and wharf does not use is said, not ignored silently.
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.insert_str(0, "log_level = \"debug\"\n");
    // The runner's `environment` (the last table is the [[runners]] entry).
    text_config.push_str("environment = [\"FROM_CONFIG=runner-level\"]\n");
    std::fs::write(&config, text_config).unwrap();

    // The URL and token come from the config file; these are not used.
    let args = ["run", "--config", config_arg];
    let child = spawn_runner(&project, "http://unused.invalid", "unused", &args);
    let done = || !coordinator.seen.lock().unwrap().final_updates.is_empty();
    wait_until(done).await;
    terminate(&child);
    let out = finished(child).await;
    let seen = coordinator.seen.lock().unwrap();
    assert!(
        text(&seen.trace).contains("\nhello from git\n"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(seen.final_updates.last().unwrap()["state"], "success");
    assert!(text(&seen.trace).contains("\nenv runner-level\n"));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`log_level` is not supported by wharf"),
        "{stderr}"
    );
    for output in [
        &stderr,
        &text(&out.stdout),
        &text(&registered.stdout),
        &text(&registered.stderr),
    ] {
        assert!(!output.contains(stand_in::RUNNER_TOKEN), "{output}");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs dockerd: run by scripts/test-all.sh"]
async fn a_docker_job_from_gitlab_runs_in_its_image_with_its_sources() {
    crate::support::load_busybox_into_docker("wharf-runner-busybox:1");
    let project = Project::new(&[]);
    let (repo, sha) = bare_repository(project.home.path());
    let coordinator = stand_in::start_with_image(
        repo,
        sha,
        vec!["cat hello.txt".into(), "echo in $CI_PROJECT_DIR".into()],
        Some("wharf-runner-busybox:1"),
        serde_json::json!([]),
    );
    let args = [ONE_JOB, &["--executor", "docker"]].concat();
    let runner = spawn_runner(&project, &coordinator.url, stand_in::RUNNER_TOKEN, &args);
    let out = finished(runner).await;
    let seen = coordinator.seen.lock().unwrap();
    let trace = text(&seen.trace);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(trace.contains("\nhello from git\n"), "{trace}");
    assert!(trace.contains("wharf-runner-busybox:1"), "{trace}");
    assert_eq!(
        seen.final_updates.last().unwrap()["state"],
        "success",
        "{trace}"
    );
    assert!(!trace.contains(stand_in::JOB_TOKEN), "{trace}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigquit_lets_the_running_job_finish_and_takes_no_more() {
    let project = Project::new(&[]);
    let (coordinator, child) = ticking_job(&project, 10).await;
    signal(&child, "-QUIT");
    let out = finished(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let seen = coordinator.seen.lock().unwrap();
    assert!(
        text(&seen.trace).contains("tick 9\n"),
        "{}",
        text(&seen.trace)
    );
    assert_eq!(
        seen.final_updates.last().expect("a final update")["state"],
        "success"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_gitlab_refuses_stops_the_runner_with_the_fix_and_without_the_token() {
    let mock = GitlabRunnerMock::start().await;
    let project = Project::new(&[]);
    let runner = spawn_runner(&project, mock.uri().as_str(), "glrt-not-this-one", ONE_JOB);
    let out = finished(runner).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/api/v4/jobs/request: 403"), "{stderr}");
    assert!(stderr.contains("fix: "), "{stderr}");
    assert!(!stderr.contains("glrt-not-this-one"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
async fn the_payloads_registry_credentials_pull_a_private_image_into_the_sandbox() {
    const USER: &str = "gitlab-ci-token";
    const PASS: &str = "job-registry-s3cr3t";
    let (reg, image) = private_ci_image(USER, PASS);
    let project = Project::new(&[]);
    let (repo, sha) = bare_repository(project.home.path());
    let credentials = serde_json::json!([
        {"type": "registry", "url": reg.host(), "username": USER, "password": PASS}
    ]);
    let coordinator = stand_in::start_with_image(
        repo,
        sha,
        vec!["cat hello.txt".into(), "cat /etc/wharf-test-image".into()],
        Some(&image),
        credentials,
    );
    let store = tempfile::tempdir().unwrap();
    let args = [ONE_JOB, &["--executor", "sandbox"]].concat();
    let mut cmd: tokio::process::Command = project.wharf().into();
    cmd.arg("runner")
        .args(&args)
        .env("CI_SERVER_URL", &coordinator.url)
        .env("CI_SERVER_TOKEN", stand_in::RUNNER_TOKEN)
        .env("WHARF_HOME", store.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = finished(cmd.spawn().unwrap()).await;
    let seen = coordinator.seen.lock().unwrap();
    let trace = text(&seen.trace);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        trace.contains(
            "Authenticating with credentials from the job's registry credentials from GitLab"
        ),
        "{trace}"
    );
    assert!(trace.contains("\nhello from git\n"), "{trace}");
    assert_eq!(
        seen.final_updates.last().unwrap()["state"],
        "success",
        "{trace}"
    );
    for shown in [&trace, &text(&out.stdout), &text(&out.stderr)] {
        assert!(!shown.contains(PASS), "{shown}");
    }
}

/// A Docker job from GitLab whose private image and service come from a registry with
/// htpasswd: the payload's registry credentials are wrong and `DOCKER_AUTH_CONFIG` (a job
/// variable) is right, so the pull works only if `DOCKER_AUTH_CONFIG` comes first, as in
/// gitlab-runner. Canceled in GitLab mid-script, the job stops and its containers (script and
/// service) are removed; no password reaches the trace or the runner's output. The job prints
/// nothing after `started`, so no trace patch tells it: the keep-alive `PUT` (every 30 s, as
/// gitlab-runner) must read GitLab's `Job-Status`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
async fn a_private_docker_job_with_a_service_canceled_in_gitlab_leaves_no_container() {
    const USER: &str = "ci-puller";
    const PASS: &str = "right-registry-s3cr3t";
    const WRONG: &str = "stale-payload-s3cr3t";
    let (reg, image) = private_ci_image(USER, PASS);
    let project = Project::new(&[]);
    let (repo, sha) = bare_repository(project.home.path());
    let job_name = format!(
        "cancel-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let auth = crate::support::b64(&format!("{USER}:{PASS}"));
    let docker_auth_config = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host());
    let coordinator = stand_in::start_with(
        repo,
        sha,
        vec![
            "cat hello.txt".into(),
            "echo started; sleep 300; echo never printed".into(),
        ],
        serde_json::json!({
            "job_info": {"name": job_name, "stage": "test", "project_id": 9,
                         "project_full_path": "group/project"},
            "image": {"name": image, "pull_policy": ["if-not-present"]},
            "services": [{"name": image, "alias": "helper-svc", "command": ["sleep", "300"]}],
            "credentials": [
                {"type": "registry", "url": reg.host(), "username": USER, "password": WRONG}
            ],
            "variables": [
                {"key": "CI_JOB_TOKEN", "value": stand_in::JOB_TOKEN, "masked": true, "public": false},
                {"key": "DOCKER_AUTH_CONFIG", "value": docker_auth_config, "masked": false, "public": false}
            ],
        }),
    );
    let args = [ONE_JOB, &["--executor", "docker"]].concat();
    let runner = spawn_runner(&project, &coordinator.url, stand_in::RUNNER_TOKEN, &args);
    let job_containers = || {
        let out = std::process::Command::new("docker")
            .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
            .arg(format!("label=wharf.job={job_name}"))
            .output()
            .unwrap();
        text(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    wait_until(|| text(&coordinator.seen.lock().unwrap().trace).contains("\nstarted\n")).await;
    let running = job_containers();
    assert!(
        running.len() >= 2 && running.iter().any(|name| name.contains("helper-svc")),
        "the job's and the service's containers: {running:?}\n{}",
        text(&coordinator.seen.lock().unwrap().trace)
    );
    coordinator.seen.lock().unwrap().cancel = true;
    let out = finished(runner).await;
    let seen = coordinator.seen.lock().unwrap();
    let trace = text(&seen.trace);
    assert!(out.status.success(), "{}\n{trace}", text(&out.stderr));
    assert!(
        trace.contains("Authenticating with credentials from $DOCKER_AUTH_CONFIG"),
        "{trace}"
    );
    assert!(trace.contains("\nhello from git\n"), "{trace}");
    assert!(!trace.contains("\nnever printed"), "{trace}");
    assert_eq!(job_containers(), Vec::<String>::new(), "containers left");
    for shown in [&trace, &text(&out.stdout), &text(&out.stderr)] {
        for secret in [PASS, WRONG, auth.as_str(), stand_in::JOB_TOKEN] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
    }
}
