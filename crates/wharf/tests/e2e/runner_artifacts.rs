//! `wharf runner` artifacts: uploaded to GitLab after the scripts, dependencies' archives
//! downloaded (with their own tokens) and unpacked before them. Against Collabora's
//! `gitlab-runner-mock` (it keeps what a job uploads and serves it to the jobs that depend on
//! it) and, for what the mock does not do (413, 202 to the final update, redirects to object
//! storage, images), a stand-in written here, declared as such.

use crate::runner::{ONE_JOB, assert_no_token, finished, spawn_runner, text};
use crate::support::Project;
use gitlab_runner_mock::{
    GitlabRunnerMock, MockJob, MockJobState, MockJobStepName, MockJobStepWhen,
};
use std::io::Write as _;

/// A shell job (`GIT_STRATEGY: none`: the mock names no real repository) running `script`.
fn job_builder(
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
    let project = Project::new(&[]);
    let args = ["run-single", "--max-builds", "2", "--check-interval", "1"];
    let out = finished(spawn_runner(
        &project,
        mock.uri().as_str(),
        mock.runner_token(),
        &args,
    ))
    .await;
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
    let project = Project::new(&[]);
    let out = finished(spawn_runner(
        &project,
        mock.uri().as_str(),
        mock.runner_token(),
        ONE_JOB,
    ))
    .await;
    let trace = text(&failing.log());
    assert!(out.status.success(), "{}", text(&out.stderr));
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
    let project = Project::new(&[]);
    let out = finished(spawn_runner(
        &project,
        mock.uri().as_str(),
        mock.runner_token(),
        ONE_JOB,
    ))
    .await;
    let trace = text(&victim.log());
    assert!(out.status.success(), "{}", text(&out.stderr));
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
