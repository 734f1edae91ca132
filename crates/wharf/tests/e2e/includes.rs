//! Includes from outside the project through `wharf list/config/lint`, against the stand-in
//! GitLab (wharf_testkit::gitlab) on loopback: every kind, a private project with and without a
//! token, and `--offline` from the cache once the server is gone.

use crate::support::{Project, Run, write};
use std::path::{Path, PathBuf};
use wharf_testkit::gitlab::{GitLab, TOKEN};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wharf-gitlab/tests/fixtures/gitlab")
}

const EVERY_KIND: &str =
    include_str!("../../../wharf-gitlab/tests/fixtures/every-include.gitlab-ci.yml");

/// `wharf <command>` reaching the stand-in as https://gitlab.test, with its own cache.
fn wharf(p: &Project, server: Option<&GitLab>, cache: &Path, args: &[&str]) -> Run {
    let mut cmd = p.wharf();
    cmd.args(args)
        .args(["--gitlab-url", "https://gitlab.test", "--include-cache"])
        .arg(cache)
        .env_remove("GITLAB_TOKEN")
        .env_remove("CI_JOB_TOKEN")
        .env_remove("CI_SERVER_URL");
    if let Some(server) = server {
        cmd.arg("--gitlab-ca-file").arg(server.ca_file());
        for host in ["gitlab.test", "example.test"] {
            cmd.args(["--resolve", &server.resolve_arg(host)]);
        }
    }
    Run::from(cmd.output().unwrap())
}

#[test]
fn every_include_kind_lists_and_merges_then_works_offline_from_the_cache() {
    let p = Project::pipeline(EVERY_KIND);
    let cache = tempfile::tempdir().unwrap();
    let server = GitLab::start(&fixture()).unwrap();
    let listed = wharf(&p, Some(&server), cache.path(), &["list"]);
    listed.assert_code(0);
    for job in [
        "remote-job",
        "bash-template",
        "build-template",
        "tools-a",
        "tools-inner-v1",
        "tools-inner ",
        "lint-1.0.0",
        "lint-1.2.3",
        "lint-2.0.0",
        "build-2.0.0",
        "build-main",
        "local-job",
    ] {
        listed.assert_contains(job);
    }
    let config = wharf(&p, Some(&server), cache.path(), &["config"]);
    config.assert_code(0).assert_contains("echo inner v1");
    config.assert_contains("lint-2.0.0:\n  stage: deploy");
    wharf(&p, Some(&server), cache.path(), &["lint"])
        .assert_code(0)
        .assert_contains("valid (12 jobs)");
    drop(server);

    let offline = wharf(&p, None, cache.path(), &["list", "--offline"]);
    offline.assert_code(0).assert_contains("lint-2.0.0");
    assert_eq!(offline.stdout, listed.stdout);

    // A file never fetched: the error is at the include and says how to fill the cache.
    let q = Project::pipeline("include:\n  - project: group/tools\n    file: ci/other.yml\n");
    wharf(&q, None, cache.path(), &["list", "--offline"])
        .assert_code(2)
        .assert_contains(".gitlab-ci.yml:3:11")
        .assert_contains("--offline and the include cache")
        .assert_contains("run once without --offline");
}

#[test]
fn a_private_project_needs_a_token_that_is_never_printed() {
    let p = Project::pipeline("include:\n  - project: group/private\n    file: ci.yml\n");
    let cache = tempfile::tempdir().unwrap();
    let server = GitLab::start(&fixture()).unwrap();
    wharf(&p, Some(&server), cache.path(), &["list"])
        .assert_code(2)
        .assert_contains(".gitlab-ci.yml:3:11")
        .assert_contains("404 (404 Project Not Found)")
        .assert_contains("--gitlab-token-file");

    let token_file = p.home.path().join("token");
    write(&token_file, &format!("{TOKEN}\n"));
    let token_arg = token_file.to_str().unwrap();
    wharf(
        &p,
        Some(&server),
        cache.path(),
        &["list", "--gitlab-token-file", token_arg],
    )
    .assert_code(0)
    .assert_contains("private-job");

    // A failing fetch with the token given both ways: it is in no output.
    let q = Project::pipeline("include:\n  - project: group/private\n    file: missing.yml\n");
    for run in [
        wharf(
            &q,
            Some(&server),
            cache.path(),
            &["list", "--gitlab-token-file", token_arg],
        ),
        Run::from(
            q.wharf()
                .args([
                    "config",
                    "--gitlab-url",
                    "https://gitlab.test",
                    "--include-cache",
                ])
                .arg(cache.path())
                .arg("--gitlab-ca-file")
                .arg(server.ca_file())
                .args(["--resolve", &server.resolve_arg("gitlab.test")])
                .env("GITLAB_TOKEN", TOKEN)
                .output()
                .unwrap(),
        ),
    ] {
        run.assert_code(2)
            .assert_contains("404 (404 File Not Found)")
            .assert_contains("PRIVATE-TOKEN token was sent");
        q.assert_no_secrets(&run, &[TOKEN]);
    }
}

#[test]
fn a_fetched_file_with_an_error_is_quoted_by_its_name() {
    let fixture_copy = tempfile::tempdir().unwrap();
    let project = fixture_copy.path().join("gitlab.test/group/broken");
    write(
        &project.join("refs.json"),
        r#"{"default_branch": "main", "refs": {"main": "branch"}}"#,
    );
    write(
        &project.join("main/ci.yml"),
        "broken:\n  script: [x]\n  when: sometimes\n",
    );
    let server = GitLab::start(fixture_copy.path()).unwrap();
    let p = Project::pipeline("include:\n  - project: group/broken\n    file: ci.yml\n");
    let cache = tempfile::tempdir().unwrap();
    wharf(&p, Some(&server), cache.path(), &["lint"])
        .assert_code(2)
        .assert_contains("group/broken@main:ci.yml:3:9")
        .assert_contains("when: sometimes");
}

#[test]
fn wharf_run_runs_a_job_from_a_component() {
    let p = Project::pipeline(EVERY_KIND);
    let cache = tempfile::tempdir().unwrap();
    let server = GitLab::start(&fixture()).unwrap();
    wharf(
        &p,
        Some(&server),
        cache.path(),
        &["run", "lint-1.2.3", "remote-job", "--executor", "shell"],
    )
    .assert_code(0)
    .assert_contains("lint 1.2.3")
    .assert_contains("remote");
}
