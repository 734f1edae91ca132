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

/// A shell job with `script` and the variables given (`(key, value, masked)`).
fn shell_job(
    mock: &GitlabRunnerMock,
    script: &[&str],
    variables: &[(&str, &str, bool)],
) -> MockJob {
    let mut builder = mock.job_builder("build".to_string());
    builder.add_step(
        MockJobStepName::Script,
        script.iter().map(|s| s.to_string()).collect(),
        3600,
        MockJobStepWhen::OnSuccess,
        false,
    );
    builder.add_variable("GIT_STRATEGY".into(), "none".into(), true, false);
    for (key, value, masked) in variables {
        builder.add_variable(key.to_string(), value.to_string(), !masked, *masked);
    }
    let job = builder.build();
    mock.enqueue_job(job.clone());
    job
}

/// Start `wharf runner run-single --max-builds 1` against the mock (token in the environment).
fn runner(project: &Project, mock: &GitlabRunnerMock) -> tokio::process::Child {
    let mut cmd: tokio::process::Command = project.wharf().into();
    cmd.args([
        "runner",
        "run-single",
        "--max-builds",
        "1",
        "--executor",
        "shell",
        "--check-interval",
        "1",
    ])
    .env("CI_SERVER_URL", mock.uri().as_str())
    .env("CI_SERVER_TOKEN", mock.runner_token())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .kill_on_drop(true);
    cmd.spawn().unwrap()
}

/// The runner's exit; a guard against a hung runner, not a timing assertion.
async fn finished(child: tokio::process::Child) -> Output {
    tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the runner did not stop")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_no_token(what: &str, text: &str, job: &MockJob, mock: &GitlabRunnerMock) {
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
    for _ in 0..600 {
        if text(&job.log()).contains("tick 1\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
