//! The fixture corpus: every folder of `crates/wharf/tests/fixtures/` is a pipeline with its
//! `expect.toml` (see the README there). Each fixture runs in a temporary copy of its folder with
//! `wharf list --json` (the plan) and `wharf run --json` (or `lint`/`config`, as its `args` say).
//!
//! Two checks per fixture:
//! 1. the hand-written expectations of `expect.toml`, taken from GitLab's documentation (the
//!    real assertions);
//! 2. an insta snapshot (`outcome.snap` in the fixture folder) of the normalised plan and
//!    outcome, so any change in what wharf decides shows up in review.
//!
//! Fixtures listed in [`KNOWN_DEVIATIONS`] state GitLab's behaviour where wharf differs: their
//! expectations must still FAIL (and they get no snapshot), so fixing wharf forces an update of
//! the list. `WHARF_CORPUS=<substring>` runs only the fixtures whose name contains it.

use crate::support::{git, load_busybox_into_docker};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Fixtures whose expectations follow GitLab's documentation and where wharf does not (yet):
/// `(fixture, what differs)`. Each must fail its expectations; when one starts passing, remove it.
const KNOWN_DEVIATIONS: &[(&str, &str)] = &[];

/// The image fixtures name in `image:`; the Docker tier loads the busybox test image as it.
const CORPUS_IMAGE: &str = "wharf-corpus-busybox:1";

/// How many fixtures run at once (each run is short and mostly waits on processes).
const THREADS: usize = 4;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// The GitLab documentation the expectations come from.
    doc: String,
    /// `wharf` arguments (`run`, `lint`, `config`, with options); `run` gets `--json` added.
    #[serde(default = "default_args")]
    args: Vec<String>,
    /// wharf's exit status.
    exit: i32,
    /// Make the copy a git repository (branch, tag, files changed after the commit).
    git: Option<Git>,
    /// Also run through the Docker executor (the Docker tier); the outcome must be the same.
    #[serde(default)]
    docker: bool,
    /// `"a < b"`: `a` finished before `b` started.
    #[serde(default)]
    order: Vec<String>,
    /// Substrings of wharf's whole output (stdout and stderr); a leading `!` means "absent".
    #[serde(default)]
    output: Vec<String>,
    /// Every job of the run, with its final status: passed, failed, allowed_failure, manual,
    /// skipped, canceled. Exactly these jobs appear (an empty table: no job ran).
    jobs: Option<BTreeMap<String, String>>,
    /// Substrings of a job's log (`!` = absent).
    #[serde(default)]
    logs: BTreeMap<String, Vec<String>>,
    /// `wharf list --json`: a job's `when`, or `excluded` when it is not in the pipeline.
    #[serde(default)]
    plan: BTreeMap<String, String>,
    /// Failure reason and exit code of failed jobs: `"script_failure"` or `"script_failure 3"`.
    #[serde(default)]
    reasons: BTreeMap<String, String>,
    /// The `environment` a job's `job_finished` event records.
    #[serde(default)]
    environments: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Git {
    #[serde(default = "default_branch")]
    branch: String,
    /// Tag the commit and check the tag out (a tag pipeline).
    tag: Option<String>,
    /// Files edited (or created) after the commit: what `changes:` sees.
    #[serde(default)]
    changed: Vec<String>,
}

fn default_args() -> Vec<String> {
    vec!["run".into()]
}

fn default_branch() -> String {
    "main".into()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Executor {
    Shell,
    Docker,
}

/// One fixture's run, in a temporary copy.
struct Outcome {
    code: i32,
    /// stdout + stderr of the main command, temp paths replaced.
    output: String,
    /// `wharf list --json` lines (when the main command is `run`).
    plan: Vec<serde_json::Value>,
    /// `--json` events of `wharf run`.
    events: Vec<serde_json::Value>,
    /// Log text per job (for `run`).
    logs: BTreeMap<String, String>,
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let name = rel.to_string_lossy();
        if name == "expect.toml" || name.ends_with(".snap") || name.ends_with(".snap.new") {
            continue;
        }
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

fn setup_git(dir: &Path, g: &Git) {
    git(dir, &["init", "-q", "-b", &g.branch]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "fixture"]);
    if let Some(tag) = &g.tag {
        git(dir, &["tag", tag]);
        git(dir, &["checkout", "-q", tag]);
    }
    for f in &g.changed {
        let path = dir.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str("changed after the commit\n");
        std::fs::write(&path, text).unwrap();
    }
}

/// wharf's file-name form of a job name (`wharf_run::files::slug`).
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The options of `args` that shape the plan too (variables, pipeline file, where includes come
/// from), for `wharf list`.
fn plan_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if matches!(
            a.as_str(),
            "--variable" | "--variables-file" | "-f" | "--file" | "--include-cache"
        ) {
            out.push(a.clone());
            if let Some(v) = it.next() {
                out.push(v.clone());
            }
        } else if a == "--offline"
            || a.starts_with("--variable=")
            || a.starts_with("--variables-file=")
        {
            out.push(a.clone());
        }
    }
    out
}

fn run_fixture(dir: &Path, expect: &Expect, executor: Executor) -> Outcome {
    let project = tempfile::Builder::new()
        .prefix("wharf-corpus-")
        .tempdir()
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    // A folder outside the project that every job may use to signal others ($SHARED).
    let shared = tempfile::tempdir().unwrap();
    copy_tree(dir, project.path());
    if let Some(g) = &expect.git {
        setup_git(project.path(), g);
    }
    let wharf = |args: &[String]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .current_dir(project.path())
            .env_remove("DOCKER_AUTH_CONFIG")
            .env_remove("DOCKER_CONFIG")
            .env_remove("NO_COLOR")
            .env_remove("CI")
            .env("HOME", home.path())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let normalise = |text: &str| {
        text.replace(&project.path().display().to_string(), "<project>")
            .replace(&shared.path().display().to_string(), "<shared>")
    };

    let is_run = expect.args.first().map(String::as_str) == Some("run");
    let mut args = expect.args.clone();
    let mut plan = Vec::new();
    if is_run {
        let mut list = vec!["list".to_string(), "--json".to_string()];
        list.extend(plan_args(&expect.args));
        let (code, stdout, stderr) = wharf(&list);
        if code == 0 {
            plan = stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("list: {l}: {e}")))
                .collect();
        } else {
            // A pipeline that does not load: the run below reports it.
            assert_eq!(code, 2, "wharf list: {stdout}{stderr}");
        }
        args.push("--json".into());
        if !args.iter().any(|a| a == "--concurrency") {
            args.extend(["--concurrency".into(), "4".into()]);
        }
        if !args.iter().any(|a| a == "--executor") {
            match executor {
                Executor::Shell => args.extend(["--executor".into(), "shell".into()]),
                Executor::Docker => {
                    args.extend(["--executor".into(), "auto".into()]);
                    args.extend(["--pull-policy".into(), "if-not-present".into()]);
                }
            }
        }
        args.extend([
            "--variable".into(),
            format!("SHARED={}", shared.path().display()),
        ]);
    }
    let (code, stdout, stderr) = wharf(&args);
    let mut events = Vec::new();
    let mut logs = BTreeMap::new();
    let output = if is_run {
        events = stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect();
        for e in &events {
            if e["type"] != "job_finished" {
                continue;
            }
            let job = e["job"].as_str().unwrap().to_string();
            // Jobs of a child pipeline (`trigger`) are `parent > child`, logged under
            // `.wharf/pipelines/<parent>/logs/`.
            let path = match job.split_once(" > ") {
                Some((parent, child)) => project.path().join(format!(
                    ".wharf/pipelines/{}/logs/{}.log",
                    slug(parent),
                    slug(child)
                )),
                None => project
                    .path()
                    .join(format!(".wharf/logs/{}.log", slug(&job))),
            };
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            logs.insert(job, normalise(&text));
        }
        normalise(&format!("{stdout}{stderr}"))
    } else {
        normalise(&format!("{stdout}{stderr}"))
    };
    Outcome {
        code,
        output,
        plan,
        events,
        logs,
    }
}

/// GitLab's word for a finished job.
fn status_of(event: &serde_json::Value) -> String {
    let status = event["status"].as_str().unwrap_or("?");
    match status {
        "failed" if event["allowed_failure"] == true => "allowed_failure".into(),
        "skipped"
            if event["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("manual job")) =>
        {
            "manual".into()
        }
        other => other.into(),
    }
}

fn finished(outcome: &Outcome) -> BTreeMap<String, &serde_json::Value> {
    outcome
        .events
        .iter()
        .filter(|e| e["type"] == "job_finished")
        .map(|e| (e["job"].as_str().unwrap().to_string(), e))
        .collect()
}

/// Position of the first event of `kind` for `job`.
fn position(outcome: &Outcome, kind: &str, job: &str) -> Option<usize> {
    outcome
        .events
        .iter()
        .position(|e| e["type"] == kind && e["job"] == job)
}

/// Every expectation that does not hold (empty: the fixture passes).
fn check(expect: &Expect, outcome: &Outcome) -> Vec<String> {
    let mut problems = Vec::new();
    if outcome.code != expect.exit {
        problems.push(format!(
            "exit status {} (expected {})",
            outcome.code, expect.exit
        ));
    }
    for needle in &expect.output {
        match needle.strip_prefix('!') {
            Some(absent) if outcome.output.contains(absent) => {
                problems.push(format!("output contains {absent:?}"))
            }
            None if !outcome.output.contains(needle.as_str()) => {
                problems.push(format!("output lacks {needle:?}"))
            }
            _ => {}
        }
    }
    let done = finished(outcome);
    if let Some(jobs) = &expect.jobs {
        let actual: BTreeMap<String, String> = done
            .iter()
            .map(|(job, e)| (job.clone(), status_of(e)))
            .collect();
        if &actual != jobs {
            problems.push(format!(
                "jobs and statuses: got {actual:?}, expected {jobs:?}"
            ));
        }
    }
    for (job, reason) in &expect.reasons {
        let got = done.get(job).map(|e| {
            let mut r = e["reason"].as_str().unwrap_or("none").to_string();
            if let Some(code) = e["exit_code"].as_i64() {
                write!(r, " {code}").unwrap();
            }
            r
        });
        if got.as_deref() != Some(reason.as_str()) {
            problems.push(format!("{job}: reason {got:?}, expected {reason:?}"));
        }
    }
    for (job, env) in &expect.environments {
        let got = done.get(job).and_then(|e| e["environment"].as_str());
        if got != Some(env.as_str()) {
            problems.push(format!("{job}: environment {got:?}, expected {env:?}"));
        }
    }
    for constraint in &expect.order {
        let Some((a, b)) = constraint.split_once(" < ") else {
            problems.push(format!("bad order constraint {constraint:?}"));
            continue;
        };
        match (
            position(outcome, "job_finished", a),
            position(outcome, "job_started", b),
        ) {
            (Some(end), Some(start)) if end < start => {}
            (end, start) => problems.push(format!(
                "order {constraint}: {a} finished at event {end:?}, {b} started at {start:?}"
            )),
        }
    }
    for (job, needles) in &expect.logs {
        let Some(log) = outcome.logs.get(job) else {
            problems.push(format!("no log for {job}"));
            continue;
        };
        for needle in needles {
            match needle.strip_prefix('!') {
                Some(absent) if log.contains(absent) => {
                    problems.push(format!("{job}'s log contains {absent:?}"))
                }
                None if !log.contains(needle.as_str()) => {
                    problems.push(format!("{job}'s log lacks {needle:?}"))
                }
                _ => {}
            }
        }
    }
    for (job, when) in &expect.plan {
        let got = outcome
            .plan
            .iter()
            .find(|j| j["job"] == job.as_str())
            .map(|j| {
                if j["included"] == true {
                    j["when"].as_str().unwrap_or("?").to_string()
                } else {
                    "excluded".to_string()
                }
            });
        if got.as_deref() != Some(when.as_str()) {
            problems.push(format!("plan of {job}: {got:?}, expected {when:?}"));
        }
    }
    problems
}

/// The normalised plan and outcome: no durations, ids or temp paths, jobs sorted by name (the
/// order of concurrent jobs varies), and from each log only the lines jobs print for the
/// corpus (`>> ...`).
fn snapshot_text(expect: &Expect, outcome: &Outcome) -> String {
    let mut s = String::new();
    writeln!(s, "args: {}", expect.args.join(" ")).unwrap();
    writeln!(s, "exit: {}", outcome.code).unwrap();
    if expect.args.first().map(String::as_str) != Some("run") {
        // lint/config: their output is the outcome.
        writeln!(s, "output:\n{}", outcome.output.trim_end()).unwrap();
        return s;
    }
    if !outcome.plan.is_empty() {
        writeln!(s, "plan:").unwrap();
        for j in &outcome.plan {
            let needs = match &j["needs"] {
                serde_json::Value::Array(n) => format!(
                    "[{}]",
                    n.iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => "-".into(),
            };
            writeln!(
                s,
                "  {} | {} | when={} included={} allow_failure={} needs={} rules={}",
                j["stage"].as_str().unwrap_or("?"),
                j["job"].as_str().unwrap_or("?"),
                j["when"].as_str().unwrap_or("?"),
                j["included"],
                j["allow_failure"],
                needs,
                j["rules"].as_str().unwrap_or("?"),
            )
            .unwrap();
        }
    }
    let pipeline = outcome
        .events
        .iter()
        .find(|e| e["type"] == "pipeline_finished")
        .map_or("(not run)".to_string(), |e| {
            e["status"].as_str().unwrap_or("?").to_string()
        });
    writeln!(s, "pipeline: {pipeline}").unwrap();
    if pipeline == "(not run)" || outcome.events.is_empty() {
        // A pipeline that did not load or was not created: say why.
        let why: Vec<&str> = outcome
            .output
            .lines()
            .filter(|l| {
                l.contains("error") || l.contains("Pipeline not created") || l.contains("ERROR")
            })
            .collect();
        writeln!(s, "why:\n  {}", why.join("\n  ")).unwrap();
    }
    for (job, e) in finished(outcome) {
        let mut line = format!(
            "  {job} [{}]: {}",
            e["stage"].as_str().unwrap_or("?"),
            status_of(e)
        );
        if let Some(r) = e["reason"].as_str() {
            write!(line, " reason={r:?}").unwrap();
        }
        if let Some(c) = e["exit_code"].as_i64() {
            write!(line, " exit_code={c}").unwrap();
        }
        if e["attempts"].as_u64().is_some_and(|a| a > 1) {
            write!(line, " attempts={}", e["attempts"]).unwrap();
        }
        for key in ["coverage", "environment"] {
            if let Some(v) = e[key].as_str() {
                write!(line, " {key}={v}").unwrap();
            }
        }
        writeln!(s, "{line}").unwrap();
        for l in outcome
            .logs
            .get(&job)
            .map(String::as_str)
            .unwrap_or("")
            .lines()
        {
            if l.starts_with(">> ") {
                writeln!(s, "    {l}").unwrap();
            }
        }
    }
    s
}

struct Fixture {
    name: String,
    dir: PathBuf,
    expect: Expect,
}

fn load_fixtures() -> Vec<Fixture> {
    let filter = std::env::var("WHARF_CORPUS").unwrap_or_default();
    let mut out: Vec<Fixture> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(dir.join("expect.toml"))
                .unwrap_or_else(|e| panic!("{name}/expect.toml: {e}"));
            let expect: Expect =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{name}/expect.toml: {e}"));
            assert!(
                expect.doc.starts_with("https://docs.gitlab.com/"),
                "{name}: `doc` must cite GitLab's documentation"
            );
            Fixture { name, dir, expect }
        })
        .filter(|f| f.name.contains(&filter))
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Run `f` over the fixtures on [`THREADS`] threads; panic listing every failure.
fn for_each_fixture(fixtures: &[Fixture], f: impl Fn(&Fixture) -> Result<(), String> + Sync) {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                while let Some(fixture) = fixtures.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let result =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(fixture)))
                            .unwrap_or_else(|panic| {
                                Err(panic
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_else(|| "panicked".into()))
                            });
                    if let Err(why) = result {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{}: {why}", fixture.name));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n\n")
    );
}

fn check_fixture(fixture: &Fixture, executor: Executor) -> Result<(), String> {
    let outcome = run_fixture(&fixture.dir, &fixture.expect, executor);
    let problems = check(&fixture.expect, &outcome);
    let deviation = KNOWN_DEVIATIONS.iter().find(|(n, _)| *n == fixture.name);
    if let Some((_, what)) = deviation {
        return if problems.is_empty() {
            Err(format!(
                "listed in KNOWN_DEVIATIONS ({what}) but now behaves as GitLab documents: remove it from the list"
            ))
        } else {
            Ok(())
        };
    }
    if !problems.is_empty() {
        return Err(format!(
            "{}\n--- output ---\n{}\n--- logs ---\n{}",
            problems.join("\n"),
            outcome.output,
            outcome
                .logs
                .iter()
                .map(|(j, l)| format!("[{j}]\n{l}"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(&fixture.dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(fixture.expect.doc.clone());
    let text = snapshot_text(&fixture.expect, &outcome);
    settings.bind(|| insta::assert_snapshot!("outcome", text));
    Ok(())
}

#[test]
fn corpus_has_at_least_100_fixtures_and_no_stray_snapshots() {
    let fixtures = load_fixtures();
    if std::env::var("WHARF_CORPUS").is_err() {
        assert!(fixtures.len() >= 100, "only {} fixtures", fixtures.len());
    }
    let names: BTreeSet<&str> = fixtures.iter().map(|f| f.name.as_str()).collect();
    for (name, _) in KNOWN_DEVIATIONS {
        assert!(
            names.contains(name),
            "KNOWN_DEVIATIONS names no fixture {name}"
        );
    }
    for f in &fixtures {
        let listed = KNOWN_DEVIATIONS.iter().any(|(n, _)| *n == f.name);
        // "Run through both executors where an image is involved" (the issue).
        let uses_image = walkdir::WalkDir::new(&f.dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".yml"))
            .any(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap()
                    .contains("wharf-corpus-busybox")
            });
        assert_eq!(
            uses_image, f.expect.docker,
            "{}: `docker = true` exactly when a job uses `image: {CORPUS_IMAGE}`",
            f.name
        );
        // A deviation must not carry a snapshot of the wrong behaviour.
        assert!(
            !(listed && f.dir.join("outcome.snap").exists()),
            "{}: a known deviation keeps no snapshot",
            f.name
        );
    }
}

#[test]
fn corpus_shell_executor() {
    let fixtures = load_fixtures();
    for_each_fixture(&fixtures, |f| check_fixture(f, Executor::Shell));
}

#[test]
#[ignore = "needs dockerd: run by scripts/test-all.sh"]
fn corpus_docker_executor() {
    load_busybox_into_docker(CORPUS_IMAGE);
    let fixtures: Vec<Fixture> = load_fixtures()
        .into_iter()
        .filter(|f| f.expect.docker)
        .collect();
    assert!(!fixtures.is_empty(), "no fixture has `docker = true`");
    for_each_fixture(&fixtures, |f| check_fixture(f, Executor::Docker));
    let _ = Command::new("docker").args(["rmi", CORPUS_IMAGE]).output();
}
