//! Fast tier: the shell executor, variables, masking, files, exit codes, diagnostics.

use crate::support::*;

#[test]
fn seed_pipeline_runs_with_shell_executor_and_keeps_the_source_tree() {
    let p = Project::seed(None);
    let before = p.user_tree();
    let run = p.run(&["run", "--executor", "shell"]);
    run.assert_code(0)
        .assert_contains("$ source build-vars.sh")
        .assert_contains("$ npm run build:${SERVER_ENV}")
        .assert_contains("<h1>built for staging</h1>")
        .assert_contains("api: https://api.staging.example.com")
        .assert_contains("Job succeeded")
        .assert_contains("pipeline passed");
    // Artifact with its relative path, containing what the script put in it.
    let tar = p
        .path()
        .join(".wharf/artifacts/build-staging/dist-staging.tar");
    let entries = tar_list(&tar);
    assert!(
        entries.contains(&"dist/index.html".to_string()),
        "{entries:?}"
    );
    // Full log, plain text.
    let log = p.read(".wharf/logs/build-staging.log");
    assert!(
        log.contains("$ npm install") && log.contains("Job succeeded"),
        "{log}"
    );
    assert!(!log.contains('\x1b'), "log has colour codes");
    // Cache saved, and restored by the next run.
    assert_eq!(
        p.read(".wharf/cache/default/node_modules/.install-count")
            .trim(),
        "1"
    );
    p.run(&["run", "--executor", "shell"])
        .assert_code(0)
        .assert_contains("cache hit, install #2");
    // The user's files are exactly as before: no dist/, no tar, no node_modules.
    assert_eq!(before, p.user_tree());
}

#[test]
fn git_work_tree_gives_tracked_untracked_and_edited_files_but_not_ignored_ones() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            "job:\n  script:\n    - ls -a > listing.txt\n    - cat tracked.txt >> listing.txt\n  artifacts:\n    paths: [listing.txt]\n",
        ),
        ("tracked.txt", "committed\n"),
        (".gitignore", "ignored.txt\n"),
    ]);
    let git = |args: &[&str]| git(p.path(), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "init"]);
    write(&p.path().join("tracked.txt"), "edited, not committed\n");
    write(&p.path().join("untracked.txt"), "new\n");
    write(&p.path().join("ignored.txt"), "secret local file\n");
    p.run(&["run"]).assert_code(0);
    let listing = p.read(".wharf/artifacts/job/listing.txt");
    assert!(listing.contains("untracked.txt"), "{listing}");
    assert!(listing.contains("edited, not committed"), "{listing}");
    assert!(!listing.contains("ignored.txt"), "{listing}");
    assert!(!listing.contains(".git\n"), "{listing}");
}

#[test]
fn failing_command_stops_the_script_runs_after_script_and_exits_1() {
    let p = Project::pipeline(
        "job:\n  script:\n    - echo before\n    - exit 7\n    - echo never-printed\n  after_script:\n    - echo \"after status=$CI_JOB_STATUS\"\n",
    );
    p.run(&["run"])
        .assert_code(1)
        .assert_contains("before")
        .assert_lacks("never-printed")
        .assert_contains("after status=failed")
        .assert_contains("ERROR: Job failed: exit code 7")
        .assert_contains("script_failure, exit code 7");
}

#[test]
fn allowed_failure_passes_and_later_stage_runs() {
    let p = Project::pipeline(
        "flaky:\n  stage: build\n  allow_failure: true\n  script: [\"false\"]\nnext:\n  stage: test\n  script: [echo next-ran]\n",
    );
    p.run(&["run"])
        .assert_code(0)
        .assert_contains("next-ran")
        .assert_contains("(allowed to fail)");
}

#[test]
fn a_failed_stage_skips_later_stages_but_runs_on_failure_jobs() {
    let p = Project::pipeline(
        "b:\n  stage: build\n  script: [\"false\"]\nt:\n  stage: test\n  script: [echo t-ran]\ncleanup:\n  stage: deploy\n  when: on_failure\n  script: [echo cleanup-ran]\n",
    );
    p.run(&["run"])
        .assert_code(1)
        .assert_lacks("t-ran")
        .assert_contains("cleanup-ran")
        .assert_contains("an earlier stage failed");
}

#[test]
fn artifacts_of_earlier_stages_reach_later_jobs() {
    let p = Project::pipeline(
        "make:\n  stage: build\n  script: [mkdir -p out, echo hello > out/a.txt]\n  artifacts:\n    paths: [out/]\nuse:\n  stage: test\n  script: [cat out/a.txt]\n",
    );
    p.run(&["run"]).assert_code(0).assert_contains("hello");
    assert_eq!(p.read(".wharf/artifacts/make/out/a.txt"), "hello\n");
}

#[test]
fn variable_precedence_cli_over_file_over_job_over_global() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            "variables:\n  A: global\n  B: global\n  C: global\n  D: global\njob:\n  variables:\n    B: job\n    C: job\n    D: job\n  script:\n    - echo \"A=$A B=$B C=$C D=$D name=$CI_JOB_NAME stage=$CI_JOB_STAGE ci=$CI\"\n",
        ),
        ("vars.yml", "C: file\nD: file\n"),
    ]);
    p.run(&["run", "--variables-file", "vars.yml", "--variable", "D=cli"])
        .assert_code(0)
        .assert_contains("A=global B=job C=file D=cli name=job stage=test ci=true");
}

#[test]
fn dotenv_variables_file_and_nested_expansion() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            "variables:\n  URL: https://${ENV_NAME}.example.com\njob:\n  script: [echo \"url=$URL\"]\n",
        ),
        ("ci.env", "# comment\nENV_NAME=staging\n"),
    ]);
    p.run(&["run", "--variables-file", "ci.env"])
        .assert_code(0)
        .assert_contains("url=https://staging.example.com");
}

#[test]
fn masked_and_file_variables_never_reach_logs() {
    let secret = "pa55-w0rd-XYZZY";
    let p = Project::pipeline(
        "job:\n  script:\n    - echo \"token is $TOKEN\"\n    - echo \"file holds $(cat $KEYFILE)\"\n    - test -f \"$KEYFILE\"\n",
    );
    // Kept outside the project, as users keep such files.
    let secrets = p.home.path().join("secrets.yml");
    write(
        &secrets,
        &format!(
            "TOKEN: {{value: {secret}, masked: true}}\nKEYFILE: {{value: key-{secret}, type: file, masked: true}}\n"
        ),
    );
    let run = p.run(&["run", "--variables-file", secrets.to_str().unwrap()]);
    run.assert_code(0)
        .assert_contains("token is [MASKED]")
        .assert_contains("file holds [MASKED]");
    p.assert_no_secrets(&run, &[secret]);
    // File-type variables are deleted with the job's temp folder.
    assert!(!p.path().join(".wharf/tmp/job/KEYFILE").exists());
}

#[test]
fn masked_values_are_masked_in_json_events_too() {
    // Regression: `environment: name` expanded a masked variable into the job_finished event.
    // The secret holds a quote, which JSON escapes: masking must happen before encoding.
    let secret = r#"env-s3cr3t"quoted"#;
    let p = Project::pipeline(
        "deploy:\n  environment:\n    name: review/$TOKEN\n  script: [echo \"to $CI_ENVIRONMENT_NAME\"]\n",
    );
    let secrets = p.home.path().join("secrets.yml");
    write(
        &secrets,
        &format!("TOKEN: {{value: '{secret}', masked: true}}\n"),
    );
    let run = p.run(&[
        "run",
        "--json",
        "--variables-file",
        secrets.to_str().unwrap(),
    ]);
    run.assert_code(0);
    let finished: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .filter(|e: &serde_json::Value| e["type"] == "job_finished")
        .collect();
    assert_eq!(finished.len(), 1, "{}", run.stdout);
    assert_eq!(finished[0]["environment"], "review/[MASKED]");
    p.assert_no_secrets(&run, &[secret, r#"env-s3cr3t\"quoted"#]);
}

#[test]
fn docker_auth_config_given_as_variable_is_masked_even_if_echoed() {
    let auth = r#"{"auths":{"r.example.com":{"auth":"dXNlcjpzM2NyZXQtcGFzc3dvcmQ="}}}"#;
    let p = Project::pipeline(
        "job:\n  script:\n    - echo \"$DOCKER_AUTH_CONFIG\"\n    - printf 'user:s3cret-pass%s\\n' word\n",
    );
    let run = p.run(&["run", "--variable", &format!("DOCKER_AUTH_CONFIG={auth}")]);
    run.assert_code(0).assert_contains("[MASKED]");
    p.assert_no_secrets(
        &run,
        &[auth, "dXNlcjpzM2NyZXQtcGFzc3dvcmQ=", "s3cret-password"],
    );
}

#[test]
fn yaml_errors_exit_2_with_file_line_column() {
    let p = Project::pipeline("job:\n  stage: build\n  scirpt:\n    - echo hi\n");
    p.run(&["run"])
        .assert_code(2)
        .assert_contains(".gitlab-ci.yml:3:3")
        .assert_contains("script");
}

#[test]
fn unknown_job_name_is_a_usage_error() {
    let p = Project::new(&[(".gitlab-ci.yml", "build-app:\n  script: [echo]\n")]);
    p.run(&["run", "build-ap"])
        .assert_code(2)
        .assert_contains("did you mean `build-app`");
}

#[test]
fn bad_variable_flag_does_not_echo_the_value() {
    let p = Project::new(&[(".gitlab-ci.yml", "job:\n  script: [echo]\n")]);
    let run = p.run(&["run", "--variable", "novalue-hunter2"]);
    run.assert_code(2);
    assert!(!run.all().contains("hunter2"), "{}", run.all());
}

#[test]
fn docker_jobs_without_a_daemon_fail_clearly() {
    let p = Project::pipeline("job:\n  image: busybox\n  script: [echo hi]\n");
    let run = Run::from(
        p.wharf()
            .args(["run"])
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap(),
    );
    run.assert_code(1)
        .assert_contains("cannot reach the Docker daemon at unix:///nonexistent/docker.sock")
        .assert_contains("--executor shell")
        .assert_contains("runner_configuration_error");
}

#[test]
fn manual_jobs_are_skipped_unless_named() {
    let p = Project::pipeline("deploy:\n  when: manual\n  script: [echo deployed]\n");
    p.run(&["run"])
        .assert_code(0)
        .assert_lacks("deployed")
        .assert_contains("manual job");
    p.run(&["run", "deploy"])
        .assert_code(0)
        .assert_contains("deployed");
}

#[test]
fn help_lists_the_contract() {
    let p = Project::new(&[]);
    let run = p.run(&["run", "--help"]);
    for flag in [
        "--directory",
        "--file",
        "--variable",
        "--variables-file",
        "--executor",
        "--pull-policy",
        "--memory",
        "--pids-limit",
    ] {
        run.assert_contains(flag);
    }
    let run = p.run(&["login", "--help"]);
    for flag in ["--username", "--password-stdin", "--print-auth-config"] {
        run.assert_contains(flag);
    }
}

#[test]
fn malformed_variables_files_are_reported_without_their_values() {
    let p = Project::new(&[(".gitlab-ci.yml", "job:\n  script: [echo]\n")]);
    let file = p.home.path().join("bad.yml");
    write(
        &file,
        "TOKEN: {value: hunter2-s3cret, masked: tru, bogus: 1}\nOTHER: [a, b]\n",
    );
    let run = p.run(&["run", "--variables-file", file.to_str().unwrap()]);
    run.assert_code(2)
        .assert_contains("bad.yml:1:")
        .assert_contains("bad.yml:2:");
    assert!(!run.all().contains("hunter2-s3cret"), "{}", run.all());
}
