//! `wharf runner run` with a config file, several jobs and runners at once: each runner's
//! `limit` under `concurrent`, SIGQUIT and SIGTERM with several jobs in flight, the config read
//! again on change and on SIGHUP, `[runners.docker]` refusing an image, and `unregister`.
//! Coordinators: Collabora's gitlab-runner-mock, and the stand-in of `runner.rs` where the mock
//! has no endpoint (unregister) or no image in its jobs.

use crate::runner::{bare_repository, finished, shell_job, signal, stand_in, text, wait_until};
use crate::support::Project;
use gitlab_runner_mock::{GitlabRunnerMock, MockJob, MockJobState};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `wharf runner run --config <config>`, its stderr going to a file the test can read while it
/// runs.
fn run_config(project: &Project, config: &Path) -> (tokio::process::Child, PathBuf) {
    let log = project.path().join("runner.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let mut cmd: tokio::process::Command = project.wharf().into();
    cmd.args(["runner", "run", "--config", config.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    (cmd.spawn().unwrap(), log)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A `[[runners]]` entry for `mock`, with extra lines.
fn runner_entry(name: &str, mock: &GitlabRunnerMock, extra: &str) -> String {
    format!(
        "[[runners]]\nname = \"{name}\"\nurl = \"{}\"\ntoken = \"{}\"\nexecutor = \"shell\"\n{extra}\n",
        mock.uri(),
        mock.runner_token()
    )
}

/// A config file's text replaced: written aside and renamed, as editors and tools save.
fn save(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Jobs that mark `marks/started-<n>` and wait for `marks/release`. They also stop waiting
/// when `marks` is gone (the test's temporary folder removed): a failing test kills its runner
/// with SIGKILL, which leaves shell jobs running, and they must not loop forever.
fn waiting_jobs(mock: &GitlabRunnerMock, marks: &Path, count: usize) -> Vec<MockJob> {
    std::fs::create_dir_all(marks).unwrap();
    let script = "pwd > \"$MARKS/dir-$MARK\"; touch \"$MARKS/started-$MARK\"; while [ -d \"$MARKS\" ] && [ ! -e \"$MARKS/release\" ]; do sleep 0.1; done; echo released $MARK";
    (1..=count)
        .map(|n| {
            shell_job(
                mock,
                &[script],
                &[
                    ("MARKS", marks.to_str().unwrap(), false),
                    ("MARK", &n.to_string(), false),
                ],
            )
        })
        .collect()
}

fn started(marks: &Path) -> usize {
    std::fs::read_dir(marks)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("started-"))
        .count()
}

fn count_in(jobs: &[MockJob], state: MockJobState) -> usize {
    jobs.iter().filter(|j| j.state() == state).count()
}

/// Not a timing assertion: a window in which a runner breaking the rule under test would take
/// a job it must not (three job requests at `check_interval = 1`).
async fn give_a_wrong_runner_time() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runners_limit_bounds_its_jobs_and_sigquit_lets_every_running_one_finish() {
    let mock = GitlabRunnerMock::start().await;
    let project = Project::new(&[]);
    let marks = project.path().join("marks");
    let jobs = waiting_jobs(&mock, &marks, 3);
    let config = project.path().join("config.toml");
    let entry = runner_entry("limited", &mock, "limit = 2");
    save(
        &config,
        &format!("concurrent = 4\ncheck_interval = 1\n{entry}"),
    );
    let (child, log) = run_config(&project, &config);
    wait_until(|| started(&marks) >= 2).await;
    give_a_wrong_runner_time().await;
    assert_eq!(started(&marks), 2, "{}", read(&log));
    assert_eq!(count_in(&jobs, MockJobState::Pending), 1);
    // Two jobs of one project at once: each its own working copy.
    let dirs: std::collections::BTreeSet<String> = (1..=3)
        .filter_map(|n| std::fs::read_to_string(marks.join(format!("dir-{n}"))).ok())
        .collect();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    signal(&child, "-QUIT");
    std::fs::write(marks.join("release"), "").unwrap();
    let out = finished(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", read(&log));
    assert_eq!(count_in(&jobs, MockJobState::Success), 2, "{}", read(&log));
    // SIGQUIT: no new job, even though a slot came free.
    assert_eq!(count_in(&jobs, MockJobState::Pending), 1);
    for job in jobs.iter().filter(|j| j.state() == MockJobState::Success) {
        assert!(
            text(&job.log()).contains("released "),
            "{}",
            text(&job.log())
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_bounds_all_runners_and_sigterm_interrupts_every_running_job() {
    let mock = GitlabRunnerMock::start().await;
    let project = Project::new(&[]);
    let marks = project.path().join("marks");
    let jobs = waiting_jobs(&mock, &marks, 3);
    let config = project.path().join("config.toml");
    // No limit of its own (0): `concurrent` bounds it.
    let entry = runner_entry("unlimited", &mock, "limit = 0");
    save(
        &config,
        &format!("concurrent = 2\ncheck_interval = 1\n{entry}"),
    );
    let (child, log) = run_config(&project, &config);
    wait_until(|| started(&marks) >= 2).await;
    give_a_wrong_runner_time().await;
    assert_eq!(started(&marks), 2, "{}", read(&log));
    signal(&child, "-TERM");
    let out = finished(child).await;
    assert_eq!(out.status.code(), Some(130), "{}", read(&log));
    assert_eq!(count_in(&jobs, MockJobState::Failed), 2, "{}", read(&log));
    assert_eq!(count_in(&jobs, MockJobState::Pending), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_is_read_again_on_change_and_sighup_and_a_broken_one_keeps_the_last_good() {
    let first = GitlabRunnerMock::start().await;
    let second = GitlabRunnerMock::start().await;
    let project = Project::new(&[]);
    let config = project.path().join("config.toml");
    let head = "concurrent = 2\ncheck_interval = 1\n";
    save(&config, &format!("{head}{}", runner_entry("a", &first, "")));
    let (child, log) = run_config(&project, &config);
    let one = shell_job(&first, &["echo one"], &[]);
    wait_until(|| one.finished()).await;
    assert_eq!(one.state(), MockJobState::Success, "{}", read(&log));

    // A runner added to the file starts taking jobs (the file's change is noticed).
    let with_b = |env: &str| {
        runner_entry(
            "b",
            &second,
            &format!("environment = [\"FROM_CONFIG={env}\"]"),
        )
    };
    save(
        &config,
        &format!("{head}{}{}", runner_entry("a", &first, ""), with_b("first")),
    );
    let two = shell_job(&second, &["echo env $FROM_CONFIG"], &[]);
    wait_until(|| two.finished()).await;
    assert!(text(&two.log()).contains("env first\n"), "{}", read(&log));

    // A broken file is reported where it breaks; the runners go on as they were.
    save(
        &config,
        &format!("{head}[[runners]]\nname = \"a\"\nlimit = \"many\"\n"),
    );
    wait_until(|| read(&log).contains("keep the configuration loaded before")).await;
    let said = read(&log);
    assert!(
        said.contains(&format!("{}:5:9: ", config.display())),
        "{said}"
    );
    let three = shell_job(&first, &["echo three"], &[]);
    wait_until(|| three.finished()).await;
    assert_eq!(three.state(), MockJobState::Success, "{said}");

    // Runner a removed and b's environment changed, applied on SIGHUP (the file's change
    // would do it too): a takes no more jobs, b's next job has the new value.
    save(&config, &format!("{head}{}", with_b("second")));
    signal(&child, "-HUP");
    wait_until(|| read(&log).contains("Runner a left")).await;
    let four = shell_job(&second, &["echo env $FROM_CONFIG"], &[]);
    let not_taken = shell_job(&first, &["echo never"], &[]);
    wait_until(|| four.finished()).await;
    assert!(text(&four.log()).contains("env second\n"), "{}", read(&log));
    give_a_wrong_runner_time().await;
    assert_eq!(not_taken.state(), MockJobState::Pending, "{}", read(&log));

    signal(&child, "-TERM");
    let out = finished(child).await;
    let said = read(&log);
    assert_eq!(out.status.code(), Some(130), "{said}");
    for mock in [&first, &second] {
        assert!(!said.contains(mock.runner_token()), "{said}");
    }
}

/// A gitlab-runner file mixing runners wharf serves with ones it cannot (another executor, a
/// token never filled in): the others start, each left-out one is named with the fix; a file
/// of only such runners is refused.
#[tokio::test(flavor = "multi_thread")]
async fn runners_wharf_cannot_serve_are_left_out_and_the_others_take_jobs() {
    let mock = GitlabRunnerMock::start().await;
    let project = Project::new(&[]);
    let config = project.path().join("config.toml");
    let elsewhere = "[[runners]]\nname = \"k8s\"\nurl = \"https://gitlab.example.com\"\ntoken = \"glrt-k8s\"\nexecutor = \"kubernetes\"\n[runners.kubernetes]\nnamespace = \"ci\"\n";
    let unfilled = "[[runners]]\nname = \"todo\"\nurl = \"https://gitlab.example.com\"\ntoken = \"\"\nexecutor = \"docker\"\n";
    save(
        &config,
        &format!(
            "check_interval = 1\n{elsewhere}{}{unfilled}",
            runner_entry("here", &mock, "")
        ),
    );
    let (child, log) = run_config(&project, &config);
    let job = shell_job(&mock, &["echo served"], &[]);
    wait_until(|| job.finished()).await;
    assert_eq!(job.state(), MockJobState::Success, "{}", read(&log));
    let said = read(&log);
    let at = config.display();
    assert!(
        said.contains(&format!("WARNING: {at}: runner k8s: executor `kubernetes` is not one of wharf's: set `executor` to shell, docker, sandbox or auto"))
            && said.contains(&format!("WARNING: {at}: runner todo: `token` is empty: "))
            && said.contains("this runner is not started; the file's other runners are"),
        "{said}"
    );
    signal(&child, "-TERM");
    finished(child).await;

    save(&config, &format!("{elsewhere}{unfilled}"));
    let (child, log) = run_config(&project, &config);
    let out = finished(child).await;
    let said = read(&log);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("runner k8s: executor `kubernetes`")
            && said.contains("runner todo: `token` is empty"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_outside_allowed_images_is_refused_as_gitlab_runner_refuses_it() {
    let project = Project::new(&[]);
    let (repo, sha) = bare_repository(project.home.path());
    let coordinator = stand_in::start_with_image(
        repo,
        sha,
        vec!["echo never".into()],
        Some("evil/image:1"),
        serde_json::json!([]),
    );
    let config = project.path().join("config.toml");
    save(
        &config,
        &format!(
            "[[runners]]\nname = \"strict\"\nurl = \"{}\"\ntoken = \"{}\"\nexecutor = \"docker\"\n[runners.docker]\nallowed_images = [\"alpine:*\", \"registry.example.com/**\"]\n",
            coordinator.url,
            stand_in::RUNNER_TOKEN
        ),
    );
    let (child, log) = run_config(&project, &config);
    let done = || !coordinator.seen.lock().unwrap().final_updates.is_empty();
    wait_until(done).await;
    signal(&child, "-TERM");
    finished(child).await;
    let seen = coordinator.seen.lock().unwrap();
    let trace = text(&seen.trace);
    let last = seen
        .final_updates
        .last()
        .unwrap_or_else(|| panic!("no final update: {}", read(&log)));
    assert_eq!(last["state"], "failed");
    // runner_configuration_error, which this GitLab does not list: sent as script_failure.
    assert_eq!(last["failure_reason"], "script_failure");
    assert!(
        trace.contains(
            "The evil/image:1 is not present on list of allowed images\n- alpine:*\n- registry.example.com/**\n"
        ),
        "{trace}"
    );
    assert!(!trace.contains("\nnever\n"), "{trace}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unregister_tells_gitlab_and_removes_only_that_entry_from_the_file() {
    let project = Project::new(&[]);
    let (repo, sha) = bare_repository(project.home.path());
    let coordinator = stand_in::start(repo, sha, vec!["true".into()]);
    let config = project.path().join("etc/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let entry = |name: &str, token: &str| {
        format!(
            "[[runners]]\n  name = \"{name}\"\n  url = \"{}\"\n  token = \"{token}\"\n  executor = \"shell\"\n",
            coordinator.url
        )
    };
    let original = format!(
        "# our runners\nconcurrent = 3\nlog_level = \"debug\"\n\n{}  [runners.docker]\n    image = \"alpine\"\n\n{}\n{}",
        entry("ci-1", stand_in::RUNNER_TOKEN),
        entry("old", stand_in::LEGACY_TOKEN),
        entry("gone", "glrt-removed-in-gitlab"),
    );
    std::fs::write(&config, &original).unwrap();
    let unregister = |args: &[&str]| {
        project
            .wharf()
            .args(["runner", "unregister", "--config", config.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };

    let unknown = unregister(&["--name", "nope"]);
    assert!(!unknown.status.success());
    let said = text(&unknown.stderr);
    assert!(
        said.contains("no runner named `nope` (runners: ci-1, old, gone)"),
        "{said}"
    );

    let one = unregister(&["--name", "ci-1"]);
    assert!(one.status.success(), "{}", text(&one.stderr));
    {
        let seen = coordinator.seen.lock().unwrap();
        assert_eq!(seen.unregistered.len(), 1);
        assert_eq!(seen.unregistered[0].0, "/api/v4/runners/managers");
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let left = std::fs::read_to_string(&config).unwrap();
    assert!(
        left.starts_with("# our runners\nconcurrent = 3\nlog_level = \"debug\"\n"),
        "{left}"
    );
    assert!(!left.contains(stand_in::RUNNER_TOKEN), "{left}");
    assert!(
        left.contains(&entry("old", stand_in::LEGACY_TOKEN)),
        "{left}"
    );

    // The legacy token is removed with DELETE /runners; GitLab refuses the third: it stays.
    let all = unregister(&["--all-runners"]);
    assert_eq!(all.status.code(), Some(1));
    let said = text(&all.stderr);
    assert!(
        said.contains("runner gone: DELETE http://127.0.0.1:"),
        "{said}"
    );
    assert!(said.contains("/api/v4/runners/managers: 403"), "{said}");
    assert!(said.contains("fix: "), "{said}");
    {
        let seen = coordinator.seen.lock().unwrap();
        assert_eq!(seen.unregistered.len(), 2);
        assert_eq!(seen.unregistered[1].0, "/api/v4/runners");
        assert!(seen.unregistered[1].1.get("system_id").is_none());
    }
    let left = std::fs::read_to_string(&config).unwrap();
    assert!(!left.contains("name = \"old\""), "{left}");
    assert!(
        left.contains(&entry("gone", "glrt-removed-in-gitlab")),
        "{left}"
    );
    for output in [&one, &all] {
        for shown in [text(&output.stdout), text(&output.stderr)] {
            for token in [
                stand_in::RUNNER_TOKEN,
                stand_in::LEGACY_TOKEN,
                "glrt-removed-in-gitlab",
            ] {
                assert!(!shown.contains(token), "{shown}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs dockerd: run by scripts/test-all.sh"]
async fn docker_settings_give_the_job_container_its_volumes_and_limits() {
    crate::support::load_busybox_into_docker("wharf-runner-busybox:1");
    let project = Project::new(&[]);
    let (repo, sha) = bare_repository(project.home.path());
    let data = project.home.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("hello"), "hello from the host\n").unwrap();
    let coordinator = stand_in::start_with_image(
        repo,
        sha,
        vec!["cat /data/hello".into(), "echo run >> /cache/runs".into()],
        None,
        serde_json::json!([]),
    );
    let config = project.path().join("config.toml");
    save(
        &config,
        &format!(
            "[[runners]]\nname = \"docker\"\nurl = \"{}\"\ntoken = \"{}\"\nexecutor = \"docker\"\n[runners.docker]\nimage = \"wharf-runner-busybox:1\"\npull_policy = \"if-not-present\"\nvolumes = [\"{}:/data:ro\", \"/cache\"]\nmemory = \"64m\"\npids_limit = 50\n",
            coordinator.url,
            stand_in::RUNNER_TOKEN,
            data.display()
        ),
    );
    let (child, log) = run_config(&project, &config);
    let done = || !coordinator.seen.lock().unwrap().final_updates.is_empty();
    wait_until(done).await;
    signal(&child, "-TERM");
    finished(child).await;
    let seen = coordinator.seen.lock().unwrap();
    let trace = text(&seen.trace);
    let last = seen
        .final_updates
        .last()
        .unwrap_or_else(|| panic!("no final update: {}", read(&log)));
    assert_eq!(last["state"], "success", "{trace}\n{}", read(&log));
    // The runner's default image ran the job (it names none).
    assert!(trace.contains("wharf-runner-busybox:1"), "{trace}");
    assert!(trace.contains("\nhello from the host\n"), "{trace}");
    // What reaches Docker's HostConfig from these limits is tested in `limits.rs`.
    assert!(
        trace.contains("Limits of every job container: --memory 64 MiB and --pids-limit 50"),
        "{trace}"
    );
    // `/cache` is a volume of the runner and project (9), kept after the job.
    let volumes = std::process::Command::new("docker")
        .args(["volume", "ls", "-q", "--filter", "name=wharf-runner-"])
        .output()
        .unwrap();
    let names = text(&volumes.stdout);
    let mut kept = false;
    for name in names.lines().filter(|n| n.contains("-project-9-cache-")) {
        let runs = std::process::Command::new("docker")
            .args([
                "run",
                "--rm",
                "-v",
                &format!("{name}:/cache"),
                "wharf-runner-busybox:1",
                "cat",
                "/cache/runs",
            ])
            .output()
            .unwrap();
        kept |= text(&runs.stdout).contains("run\n");
        let _ = std::process::Command::new("docker")
            .args(["volume", "rm", name])
            .output();
    }
    assert!(kept, "no cache volume with the job's file among: {names}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Ceph's RADOS gateway (ceph-mon, ceph-osd, radosgw): run by scripts/test-all.sh"]
async fn two_runner_processes_with_their_own_builds_folders_share_a_cache_through_s3() {
    assert!(
        wharf_testkit::rgw::rgw_available(),
        "Ceph's daemons are not installed"
    );
    share_a_cache_through_s3(wharf_testkit::rgw::shared().expect("rgw")).await;
}

/// The same on moto's S3 server, a second implementation of the API.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto's S3 server: run by scripts/test-all.sh"]
async fn two_runner_processes_share_a_cache_through_s3_on_moto() {
    share_a_cache_through_s3(wharf_testkit::moto::shared().expect("moto's S3 server")).await;
}

async fn share_a_cache_through_s3(s3: &wharf_testkit::S3Server) {
    let bucket = s3.bucket().unwrap();
    let cache = serde_json::json!([{"key": "deps-$CI_COMMIT_REF_NAME", "paths": ["deps"],
                                    "policy": "pull-push", "when": "on_success"}]);
    let project = Project::new(&[]);
    let (repo, sha) = bare_repository(project.home.path());
    // The same runner (token) on two machines: each its own builds folder and config.
    let run_one = |name: &str, script: &str, cache_settings: &str, format: &str| {
        let coordinator = stand_in::start_with(
            repo.clone(),
            sha.clone(),
            vec![script.to_string()],
            serde_json::json!({"cache": cache, "variables": [
                {"key": "CI_COMMIT_REF_NAME", "value": "main", "public": true},
                {"key": "CACHE_COMPRESSION_FORMAT", "value": format, "public": true},
            ]}),
        );
        let config = project.path().join(format!("{name}.toml"));
        let endpoint = s3.endpoint().trim_start_matches("http://");
        save(
            &config,
            &format!(
                "[[runners]]\nname = \"{name}\"\nurl = \"{}\"\ntoken = \"{}\"\nexecutor = \"shell\"\nbuilds_dir = \"{name}-builds\"\n[runners.cache]\nType = \"s3\"\nPath = \"ci\"\n{cache_settings}\n[runners.cache.s3]\nServerAddress = \"{endpoint}\"\nAccessKey = \"{}\"\nSecretKey = \"{}\"\nBucketName = \"{bucket}\"\nInsecure = true\n",
                coordinator.url,
                stand_in::RUNNER_TOKEN,
                s3.access_key(),
                s3.secret_key()
            ),
        );
        (coordinator, config)
    };
    let mut traces = Vec::new();
    // gitlab-runner's object name: <Path>/runner/<token after glrt-, 9 characters>/project/<id>/<key>.
    let short = &stand_in::RUNNER_TOKEN["glrt-".len().."glrt-".len() + 9];
    // 12 MiB that gzip cannot shrink: the archive streams through a file both ways, in many
    // pieces, with its length said to S3 up front.
    let big = "head -c 12582912 /dev/urandom > deps/big";
    // The first job asks for gitlab-runner's tarzstd archive; the others take the default.
    for (name, script, cache_settings, format) in [
        (
            "first",
            &*format!("mkdir -p deps && echo made by the first runner > deps/file && {big}"),
            "",
            "tarzstd",
        ),
        ("second", "cat deps/file && wc -c < deps/big", "", ""),
        (
            "capped",
            &*format!("mkdir -p deps && {big}"),
            "MaxUploadedArchiveSize = 4096",
            "",
        ),
    ] {
        let (coordinator, config) = run_one(name, script, cache_settings, format);
        let (child, log) = run_config(&project, &config);
        let done = || !coordinator.seen.lock().unwrap().final_updates.is_empty();
        wait_until(done).await;
        signal(&child, "-TERM");
        finished(child).await;
        let seen = coordinator.seen.lock().unwrap();
        let trace = text(&seen.trace);
        let last = seen
            .final_updates
            .last()
            .unwrap_or_else(|| panic!("no final update: {}", read(&log)));
        assert_eq!(last["state"], "success", "{trace}\n{}", read(&log));
        for shown in [&trace, &read(&log)] {
            assert!(!shown.contains(s3.secret_key()), "{shown}");
            assert!(!shown.contains("X-Amz-Signature"), "{shown}");
        }
        traces.push(trace);
        if format == "tarzstd" {
            // The job's CACHE_COMPRESSION_FORMAT: a zstd stream (28 b5 2f fd, read here as
            // lossy text) under gitlab-runner's object name, not a zip's "PK" (the next job
            // uploads a zip over it).
            let object = s3
                .s3_request(
                    "GET",
                    &format!("/{bucket}/ci/runner/{short}/project/9/deps-main"),
                )
                .unwrap();
            assert!(
                object.starts_with("(\u{fffd}/\u{fffd}"),
                "{:?}",
                &object[..8.min(object.len())]
            );
        }
    }
    assert!(
        traces[0].contains("No cache \"deps-main\" in the shared cache"),
        "{}",
        traces[0]
    );
    // In the job's log, in its sections, before its last line (as gitlab-runner's).
    let uploaded = traces[0].find("Uploaded cache \"deps-main\"");
    let saving = traces[0].find("Saving cache for successful job");
    let succeeded = traces[0].find("Job succeeded");
    assert!(
        saving < uploaded && uploaded < succeeded && saving.is_some(),
        "{}",
        traces[0]
    );
    let restoring = traces[1].find("Restoring cache");
    let downloaded = traces[1].find("Downloaded cache \"deps-main\"");
    assert!(
        restoring.is_some() && restoring < downloaded,
        "{}",
        traces[1]
    );
    assert!(
        traces[1].contains("\nmade by the first runner\n12582912\n"),
        "{}",
        traces[1]
    );
    // A runner whose MaxUploadedArchiveSize is smaller moves the archive neither way.
    for direction in ["not downloaded", "not uploaded"] {
        assert!(
            traces[2].contains(&format!(
                "shared cache \"deps-main\" {direction}: the archive is over MaxUploadedArchiveSize (4096 bytes)"
            )),
            "{}",
            traces[2]
        );
    }
    let listing = s3
        .s3_request("GET", &format!("/{bucket}?list-type=2"))
        .unwrap();
    assert!(
        listing.contains(&format!("<Key>ci/runner/{short}/project/9/deps-main</Key>")),
        "{listing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pre_and_post_build_scripts_surround_the_jobs_script_and_output_limit_cuts_the_log() {
    let mock = GitlabRunnerMock::start().await;
    let project = Project::new(&[]);
    let config = project.path().join("config.toml");
    let entry = runner_entry(
        "scripted",
        &mock,
        "pre_build_script = \"echo before from the runner\"\npost_build_script = \"echo after from the runner\"\noutput_limit = 8",
    );
    save(&config, &format!("check_interval = 1\n{entry}"));
    let (child, log) = run_config(&project, &config);
    let passing = shell_job(&mock, &["echo the job"], &[]);
    wait_until(|| passing.finished()).await;
    let failing = shell_job(&mock, &["echo failing; exit 1"], &[]);
    wait_until(|| failing.finished()).await;
    // 8 KiB of log, then gitlab-runner's notice; the job goes on.
    let long = shell_job(&mock, &["seq 100000 120000", "echo the end"], &[]);
    wait_until(|| long.finished()).await;
    signal(&child, "-TERM");
    finished(child).await;
    let trace = text(&passing.log());
    let order: Vec<usize> = [
        "\nbefore from the runner\n",
        "\nthe job\n",
        "\nafter from the runner\n",
    ]
    .iter()
    .map(|line| {
        trace
            .find(line)
            .unwrap_or_else(|| panic!("{line:?} in {trace}\n{}", read(&log)))
    })
    .collect();
    assert!(order[0] < order[1] && order[1] < order[2], "{trace}");
    let trace = text(&failing.log());
    assert!(trace.contains("\nbefore from the runner\n"), "{trace}");
    assert!(!trace.contains("\nafter from the runner\n"), "{trace}");
    let trace = text(&long.log());
    assert_eq!(long.state(), MockJobState::Success);
    assert!(
        trace.contains("Job's log exceeded limit of 8192 bytes."),
        "{trace}"
    );
    assert!(trace.len() < 8192 + 1024, "{}", trace.len());
}
