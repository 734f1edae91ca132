//! Fast tier: GitLab's pipeline semantics with the shell executor: DAG scheduling, concurrency,
//! retries, timeouts, resource groups, rules, dotenv reports, parallel, child pipelines, and the
//! list/lint/config/--json outputs. Ordering is checked with timestamps the jobs write
//! themselves, never with wall-clock assertions in the test.

use crate::support::*;
use std::path::PathBuf;

/// A folder outside the project where jobs leave markers (`$MARKERS`).
struct Markers(tempfile::TempDir);

impl Markers {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
    fn arg(&self) -> String {
        format!("MARKERS={}", self.0.path().display())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    /// A nanosecond timestamp a job wrote with `date +%s%N`.
    fn time(&self, name: &str) -> u128 {
        let p = self.path(name);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .parse()
            .unwrap()
    }
}

fn stamp(name: &str) -> String {
    format!("date +%s%N > $MARKERS/{name}")
}

#[test]
fn a_job_starts_as_soon_as_its_needs_are_done() {
    let m = Markers::new();
    let yaml = format!(
        "stages: [build, test]\n\
a:\n  stage: build\n  script: [\"{a}\"]\n\
slow:\n  stage: build\n  script: [sleep 3, \"{slow}\"]\n\
b:\n  stage: test\n  needs: [a]\n  script: [\"{b}\"]\n\
t:\n  stage: test\n  script: [\"{t}\"]\n",
        a = stamp("a.end"),
        slow = stamp("slow.end"),
        b = stamp("b.start"),
        t = stamp("t.start"),
    );
    let p = Project::new(&[(".gitlab-ci.yml", &yaml)]);
    p.run(&["run", "--concurrency", "4", "--variable", &m.arg()])
        .assert_code(0);
    // b (needs a) did not wait for the build stage; t (stage order) did.
    assert!(m.time("a.end") <= m.time("b.start"));
    assert!(m.time("b.start") < m.time("slow.end"));
    assert!(m.time("slow.end") <= m.time("t.start"));
}

#[test]
fn concurrency_one_runs_jobs_one_after_the_other_without_prefixes() {
    let m = Markers::new();
    let job = |n: &str| {
        format!(
            "{n}:\n  script: [\"{}\", sleep 1, \"{}\"]\n",
            stamp(&format!("{n}.start")),
            stamp(&format!("{n}.end"))
        )
    };
    let p = Project::new(&[(".gitlab-ci.yml", &format!("{}{}", job("x"), job("y")))]);
    let run = p.run(&["run", "--concurrency", "1", "--variable", &m.arg()]);
    run.assert_code(0).assert_lacks("x | ");
    assert!(m.time("x.end") <= m.time("y.start"));
}

#[test]
fn several_jobs_at_once_get_prefixed_lines_and_plain_logs() {
    let p = Project::pipeline(
        "first:\n  script: [echo from-first]\nsecond:\n  script: [echo from-second]\n",
    );
    let run = p.run(&["run", "--concurrency", "2"]);
    run.assert_code(0)
        .assert_contains("first  | from-first")
        .assert_contains("second | from-second");
    let log = p.read(".wharf/logs/first.log");
    assert!(log.contains("\nfrom-first\n"), "{log}");
    assert!(!log.contains(" | "), "{log}");
}

#[test]
fn a_failed_need_skips_its_dependants_but_not_unrelated_jobs() {
    let p = Project::pipeline(
        "stages: [build, test, deploy]\n\
a:\n  stage: build\n  script: [exit 3]\n\
b:\n  stage: test\n  needs: [a]\n  script: [echo b-ran]\n\
c:\n  stage: deploy\n  needs: [b]\n  script: [echo c-ran]\n\
free:\n  stage: deploy\n  needs: []\n  script: [echo free-ran]\n\
rescue:\n  stage: deploy\n  needs: [a]\n  when: on_failure\n  script: [echo rescue-ran]\n",
    );
    p.run(&["run", "--concurrency", "4"])
        .assert_code(1)
        .assert_lacks("b-ran")
        .assert_lacks("c-ran")
        .assert_contains("free-ran")
        .assert_contains("rescue-ran")
        .assert_contains("a needed job failed")
        .assert_contains("a needed job did not run");
}

#[test]
fn retry_runs_a_failing_job_again_and_says_so() {
    let m = Markers::new();
    let p = Project::pipeline(
        "flaky:\n  retry: 2\n  script:\n    - n=$(cat $MARKERS/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > $MARKERS/count\n    - test $n -ge 3\n",
    );
    p.run(&["run", "--variable", &m.arg()])
        .assert_code(0)
        .assert_contains("Retrying job (attempt 2 of 3)")
        .assert_contains("Retrying job (attempt 3 of 3)")
        .assert_contains("(after 3 attempts)");
    assert_eq!(
        std::fs::read_to_string(m.path("count")).unwrap().trim(),
        "3"
    );
    // The log keeps every attempt.
    let log = p.read(".wharf/logs/flaky.log");
    assert_eq!(log.matches("Running job \"flaky\"").count(), 3, "{log}");
}

#[test]
fn retry_when_limits_the_reasons() {
    let m = Markers::new();
    let p = Project::pipeline(
        "job:\n  retry:\n    max: 2\n    when: [runner_system_failure]\n  script: [\"echo x >> $MARKERS/runs\", exit 1]\n",
    );
    p.run(&["run", "--variable", &m.arg()])
        .assert_code(1)
        .assert_lacks("Retrying job");
    assert_eq!(std::fs::read_to_string(m.path("runs")).unwrap(), "x\n");
}

#[test]
fn timeout_kills_the_job_and_fails_it_as_job_execution_timeout() {
    let m = Markers::new();
    let p = Project::pipeline(
        "slow:\n  timeout: 2 seconds\n  script: [\"sleep 30 && touch $MARKERS/not-killed\"]\nafter:\n  stage: deploy\n  when: always\n  script: [echo after-ran]\n",
    );
    p.run(&["run", "--variable", &m.arg()])
        .assert_code(1)
        .assert_contains("job_execution_timeout")
        .assert_contains("execution took longer than 2s")
        .assert_contains("after-ran");
    assert!(!m.path("not-killed").exists());
}

#[test]
fn resource_group_jobs_never_overlap() {
    let m = Markers::new();
    let job = |n: &str| {
        format!(
            "{n}:\n  resource_group: production\n  script: [\"{}\", sleep 1, \"{}\"]\n",
            stamp(&format!("{n}.start")),
            stamp(&format!("{n}.end"))
        )
    };
    let yaml = format!("{}{}{}", job("d1"), job("d2"), job("d3"));
    let p = Project::new(&[(".gitlab-ci.yml", &yaml)]);
    p.run(&["run", "--concurrency", "4", "--variable", &m.arg()])
        .assert_code(0);
    let mut spans: Vec<(u128, u128)> = ["d1", "d2", "d3"]
        .iter()
        .map(|n| (m.time(&format!("{n}.start")), m.time(&format!("{n}.end"))))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlap: {spans:?}");
    }
}

#[test]
fn allow_failure_exit_codes_allow_only_those_codes() {
    let yaml = |code: i32| {
        format!(
            "job:\n  allow_failure:\n    exit_codes: [3, 4]\n  script: [exit {code}]\nnext:\n  stage: deploy\n  script: [echo next-ran]\n"
        )
    };
    let p = Project::new(&[(".gitlab-ci.yml", &yaml(3))]);
    p.run(&["run"])
        .assert_code(0)
        .assert_contains("(allowed to fail)")
        .assert_contains("next-ran");
    let p = Project::new(&[(".gitlab-ci.yml", &yaml(5))]);
    p.run(&["run"])
        .assert_code(1)
        .assert_contains("script_failure, exit code 5")
        .assert_lacks("next-ran");
}

#[test]
fn rules_decide_which_jobs_run_with_their_variables_and_when() {
    let p = Project::pipeline(
        "variables:\n  TARGET: staging\n\
deploy:\n  rules:\n    - if: $TARGET == \"production\"\n      variables: {WHERE: prod}\n    - if: $TARGET =~ /^stag/\n      variables: {WHERE: stage}\n  script: [echo \"deploy to $WHERE\"]\n\
never:\n  rules:\n    - if: $TARGET\n      when: never\n    - when: always\n  script: [echo never-ran]\n\
nomatch:\n  rules:\n    - if: $UNSET_VAR\n  script: [echo nomatch-ran]\n",
    );
    p.run(&["run"])
        .assert_code(0)
        .assert_contains("deploy to stage")
        .assert_lacks("never-ran")
        .assert_lacks("nomatch-ran");
    p.run(&["run", "--variable", "TARGET=production"])
        .assert_code(0)
        .assert_contains("deploy to prod");
    p.run(&["run", "--variable", "UNSET_VAR=1"])
        .assert_code(0)
        .assert_contains("nomatch-ran");
}

#[test]
fn rules_changes_and_exists_look_at_the_work_tree() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            "docs:\n  rules:\n    - changes: [\"docs/**/*\"]\n  script: [echo docs-ran]\n\
code:\n  rules:\n    - changes: [\"src/*.rs\"]\n  script: [echo code-ran]\n\
docker:\n  rules:\n    - exists: [Dockerfile]\n  script: [echo docker-ran]\n",
        ),
        ("src/main.rs", "fn main() {}\n"),
        ("docs/guide/intro.md", "hi\n"),
    ]);
    git(p.path(), &["init", "-q", "-b", "main"]);
    git(p.path(), &["add", "."]);
    git(p.path(), &["commit", "-qm", "init"]);
    write(&p.path().join("docs/guide/intro.md"), "edited\n");
    p.run(&["run"])
        .assert_code(0)
        .assert_contains("docs-ran")
        .assert_lacks("code-ran")
        .assert_lacks("docker-ran");
    write(&p.path().join("Dockerfile"), "FROM scratch\n");
    p.run(&["run"]).assert_code(0).assert_contains("docker-ran");
}

#[test]
fn only_except_use_the_checked_out_branch_and_tag() {
    let p = Project::pipeline(
        "on-main:\n  only: [main]\n  script: [echo main-ran]\n\
on-feature:\n  only: [/^feature-/]\n  script: [echo feature-ran]\n\
not-tags:\n  except: [tags]\n  script: [echo branch-ran]\n\
tags-only:\n  only: [tags]\n  script: [echo \"tag-ran $CI_COMMIT_TAG\"]\n\
vars:\n  only:\n    variables: [$RELEASE == \"yes\"]\n  script: [echo vars-ran]\n",
    );
    git(p.path(), &["init", "-q", "-b", "main"]);
    git(p.path(), &["add", "."]);
    git(p.path(), &["commit", "-qm", "init"]);
    p.run(&["run"])
        .assert_code(0)
        .assert_contains("main-ran")
        .assert_contains("branch-ran")
        .assert_lacks("feature-ran")
        .assert_lacks("tag-ran")
        .assert_lacks("vars-ran");
    git(p.path(), &["checkout", "-qb", "feature-x"]);
    p.run(&["run", "--variable", "RELEASE=yes"])
        .assert_code(0)
        .assert_contains("feature-ran")
        .assert_contains("vars-ran")
        .assert_lacks("main-ran");
    git(p.path(), &["tag", "v1.0"]);
    git(p.path(), &["checkout", "-q", "v1.0"]);
    p.run(&["run"])
        .assert_code(0)
        .assert_contains("tag-ran v1.0")
        .assert_lacks("branch-ran");
}

#[test]
fn workflow_rules_can_decline_the_pipeline() {
    let p = Project::pipeline(
        "workflow:\n  rules:\n    - if: $CI_PIPELINE_SOURCE == \"schedule\"\n      when: never\n    - if: $GO\n      variables: {FROM_WORKFLOW: wf}\njob:\n  script: [echo \"job-ran $FROM_WORKFLOW\"]\n",
    );
    let declined = p.run(&["run"]);
    declined
        .assert_code(0)
        .assert_contains("Pipeline not created: workflow: rules: no rule matched")
        .assert_lacks("job-ran");
    // Said once (it was printed by the run and again by its summary).
    assert_eq!(declined.all().matches("Pipeline not created").count(), 1);
    p.run(&["run", "--variable", "GO=1"])
        .assert_code(0)
        .assert_contains("job-ran wf");
    p.run(&[
        "run",
        "--variable",
        "GO=1",
        "--variable",
        "CI_PIPELINE_SOURCE=schedule",
    ])
    .assert_code(0)
    .assert_contains("when: never")
    .assert_lacks("job-ran");
}

#[test]
fn dotenv_reports_feed_the_jobs_that_take_the_artifacts() {
    let p = Project::pipeline(
        "build:\n  stage: build\n  variables: {VERSION: from-yaml}\n  script: [echo VERSION=1.2.3 > build.env]\n  artifacts:\n    reports:\n      dotenv: build.env\n\
use:\n  stage: test\n  needs: [build]\n  variables: {VERSION: job-level}\n  script: [echo \"version=$VERSION\"]\n\
no-artifacts:\n  stage: test\n  needs: [{job: build, artifacts: false}]\n  script:\n    - echo \"none=${VERSION:-unset}\"\n\
cli:\n  stage: test\n  script: [echo \"cli=$OTHER\"]\n",
    );
    p.run(&["run", "--variable", "OTHER=x"])
        .assert_code(0)
        // dotenv beats the job's own variables (GitLab's precedence).
        .assert_contains("version=1.2.3")
        .assert_contains("none=unset")
        .assert_contains("cli=x");
}

#[test]
fn a_job_without_parallel_has_node_total_one_and_no_node_index() {
    // GitLab sets CI_NODE_TOTAL=1 for every job; only CI_NODE_INDEX is absent.
    let p = Project::pipeline(
        "test:\n  script:\n    - 'echo \"total=$CI_NODE_TOTAL index=${CI_NODE_INDEX-unset}\"'\n",
    );
    p.run(&["run"])
        .assert_code(0)
        .assert_contains("total=1 index=unset");
}

#[test]
fn parallel_instances_get_their_node_index() {
    let p = Project::pipeline(
        "test:\n  parallel: 3\n  script: [echo \"node $CI_NODE_INDEX of $CI_NODE_TOTAL id=$CI_JOB_ID\"]\n",
    );
    let run = p.run(&["run", "--concurrency", "1"]);
    run.assert_code(0)
        .assert_contains("node 1 of 3")
        .assert_contains("node 2 of 3")
        .assert_contains("node 3 of 3")
        .assert_contains("test 3/3");
    // CI_JOB_ID is unique per job.
    let ids: std::collections::BTreeSet<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("node "))
        .filter_map(|l| l.split("id=").nth(1))
        .collect();
    assert_eq!(ids.len(), 3, "{}", run.stdout);
    // Selecting the job by its name selects every instance.
    p.run(&["run", "test"])
        .assert_code(0)
        .assert_contains("node 2 of 3");
}

#[test]
fn trigger_runs_the_child_pipeline_and_depend_mirrors_it() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            "child:\n  trigger:\n    include: ci/child.yml\n    strategy: depend\nafter:\n  stage: deploy\n  script: [echo after-ran]\n",
        ),
        (
            "ci/child.yml",
            "inner:\n  script: [echo \"inner-ran $CI_PIPELINE_SOURCE\", \"exit $CODE\"]\n",
        ),
    ]);
    p.run(&["run", "--variable", "CODE=0"])
        .assert_code(0)
        .assert_contains("inner-ran parent_pipeline")
        .assert_contains("child > inner")
        .assert_contains("after-ran");
    p.run(&["run", "--variable", "CODE=1"])
        .assert_code(1)
        .assert_contains("downstream_pipeline_failure")
        .assert_lacks("after-ran");
}

#[test]
fn trigger_without_depend_passes_once_the_child_is_created() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            "child:\n  trigger:\n    include: child.yml\nafter:\n  stage: deploy\n  script: [echo after-ran]\n",
        ),
        ("child.yml", "inner:\n  script: [echo inner-ran, exit 1]\n"),
    ]);
    p.run(&["run"])
        .assert_code(0)
        .assert_contains("inner-ran")
        .assert_contains("after-ran");
}

#[test]
fn run_selects_by_stage_needs_and_manual() {
    let p = Project::pipeline(
        "stages: [build, test, deploy]\n\
compile:\n  stage: build\n  script: [echo compile-ran]\n\
unit:\n  stage: test\n  needs: [compile]\n  script: [echo unit-ran]\n\
lint:\n  stage: test\n  script: [echo lint-ran]\n\
ship:\n  stage: deploy\n  when: manual\n  script: [echo ship-ran]\n",
    );
    p.run(&["run", "unit"])
        .assert_code(0)
        .assert_contains("unit-ran")
        .assert_lacks("compile-ran");
    p.run(&["run", "unit", "--needs"])
        .assert_code(0)
        .assert_contains("compile-ran")
        .assert_contains("unit-ran")
        .assert_lacks("lint-ran");
    p.run(&["run", "--stage", "test"])
        .assert_code(0)
        .assert_contains("unit-ran")
        .assert_contains("lint-ran")
        .assert_lacks("compile-ran");
    p.run(&["run"]).assert_code(0).assert_lacks("ship-ran");
    p.run(&["run", "--manual", "ship"])
        .assert_code(0)
        .assert_contains("compile-ran")
        .assert_contains("ship-ran");
    p.run(&["run", "--stage", "nope"])
        .assert_code(2)
        .assert_contains("no stage named `nope`");
}

#[test]
fn coverage_is_read_from_the_log_and_shown_in_the_summary() {
    let p = Project::pipeline(
        "test:\n  coverage: '/Total coverage: \\d+\\.\\d+%/'\n  script:\n    - 'echo \"Total coverage: 12.0%\"'\n    - 'echo \"Total coverage: 87.5%\"'\n",
    );
    p.run(&["run"])
        .assert_code(0)
        .assert_contains("coverage")
        .assert_contains("87.5%");
    // GitLab reads the pattern with RE2, where a `{` that starts no repetition is a brace.
    let p = Project::pipeline(
        "test:\n  coverage: '/\"lines\": {\"pct\": \\d+/'\n  script:\n    - 'echo \"{\\\"lines\\\": {\\\"pct\\\": 93}}\"'\n",
    );
    p.run(&["run"]).assert_code(0).assert_contains("93%");
}

#[test]
fn json_events_go_to_stdout_and_human_output_to_stderr() {
    let p =
        Project::pipeline("ok:\n  script: [echo fine]\nbad:\n  needs: []\n  script: [exit 4]\n");
    let run = p.run(&["run", "--json"]);
    run.assert_code(1);
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"pipeline_started"));
    assert_eq!(types.last(), Some(&"pipeline_finished"));
    assert_eq!(types.iter().filter(|t| **t == "job_started").count(), 2);
    let bad = events
        .iter()
        .find(|e| e["type"] == "job_finished" && e["job"] == "bad")
        .unwrap();
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["reason"], "script_failure");
    assert_eq!(bad["exit_code"], 4);
    assert!(bad["duration_ms"].is_u64());
    assert_eq!(events.last().unwrap()["status"], "failed");
    assert!(run.stderr.contains("fine"), "{}", run.stderr);
}

#[test]
fn list_shows_stage_job_when_rules_and_needs() {
    let p = Project::pipeline(
        "build:\n  stage: build\n  script: [x]\n\
deploy:\n  stage: deploy\n  needs: [build]\n  rules:\n    - if: $DEPLOY\n      when: manual\n  script: [x]\n",
    );
    let run = p.run(&["list"]);
    run.assert_code(0)
        .assert_contains("stage")
        .assert_contains("not in pipeline (no rule matched)");
    let line = run.stdout.lines().find(|l| l.contains("deploy  ")).unwrap();
    assert!(line.contains("build"), "{line}");
    let run = p.run(&["list", "--json", "--variable", "DEPLOY=1"]);
    run.assert_code(0);
    let deploy: serde_json::Value = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["job"] == "deploy")
        .unwrap();
    assert_eq!(deploy["when"], "manual");
    assert_eq!(deploy["included"], true);
    assert_eq!(deploy["needs"][0], "build");
}

#[test]
fn list_and_config_say_where_each_job_came_from() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            "include: ci/a.yml\nmain:\n  script: [x]\n",
        ),
        ("ci/a.yml", "include: ci/b.yml\nfrom_a:\n  script: [x]\n"),
        ("ci/b.yml", "\nfrom_b:\n  script: [x]\n"),
    ]);
    let run = p.run(&["list"]);
    run.assert_code(0)
        .assert_contains("included files:")
        .assert_contains("ci/b.yml, included by .gitlab-ci.yml -> ci/a.yml");
    let line = run.stdout.lines().find(|l| l.contains("from_b")).unwrap();
    assert!(line.ends_with("ci/b.yml:2"), "{line}");
    let run = p.run(&["list", "--json"]);
    let from_b: serde_json::Value = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["job"] == "from_b")
        .unwrap();
    assert_eq!(from_b["from"]["file"], "ci/b.yml");
    assert_eq!(from_b["from"]["line"], 2);
    assert_eq!(
        from_b["from"]["included_by"],
        serde_json::json!([".gitlab-ci.yml", "ci/a.yml"])
    );
    p.run(&["config"])
        .assert_code(0)
        .assert_contains("# from ci/b.yml, included by .gitlab-ci.yml -> ci/a.yml\nfrom_b:");
}

/// `wharf config` reads variables like every other command: a bad name is refused (without
/// its value), and a good one reaches the load (`include` rules see it).
#[test]
fn config_checks_and_uses_variables_like_the_other_commands() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            "include:\n  - local: extra.yml\n    rules:\n      - if: $WITH_EXTRA\nmain:\n  script: [x]\n",
        ),
        ("extra.yml", "extra:\n  script: [y]\n"),
    ]);
    let run = p.run(&["config", "--variable", "BAD-NAME=s3cr3t"]);
    run.assert_code(2)
        .assert_contains("--variable BAD-NAME=...");
    assert!(!run.all().contains("s3cr3t"));
    p.run(&["config", "--variable", "WITH_EXTRA=1"])
        .assert_code(0)
        .assert_contains("extra:");
}

#[test]
fn lint_reports_every_problem_or_says_valid() {
    let p = Project::new(&[(".gitlab-ci.yml", "a:\n  script: [x]\nb:\n  script: [y]\n")]);
    p.run(&["lint"])
        .assert_code(0)
        .assert_contains("valid (2 jobs)");
    let p = Project::pipeline("a:\n  scirpt: [x]\nb:\n  script: [y]\n  needs: [nope]\n");
    p.run(&["lint"])
        .assert_code(2)
        .assert_contains(".gitlab-ci.yml:2:3")
        .assert_contains("nope");
}

#[test]
fn config_prints_the_merged_yaml() {
    let p = Project::new(&[
        (
            ".gitlab-ci.yml",
            "include: [common.yml]\n.base:\n  image: alpine\njob:\n  extends: .base\n  script: [echo hi]\n",
        ),
        ("common.yml", "other:\n  script: [echo other]\n"),
    ]);
    let run = p.run(&["config"]);
    run.assert_code(0)
        .assert_contains("other:")
        .assert_contains("image: alpine")
        .assert_lacks("extends");
}

#[test]
fn dotenv_limit_flags_replace_gitlabs_defaults() {
    let p = Project::pipeline(
        "build:\n  script: ['printf \"A=1\\nB=2\\nC=3\\n\" > vars.env']\n  artifacts:\n    reports:\n      dotenv: vars.env\n",
    );
    p.run(&["run"]).assert_code(0);
    p.run(&["run", "--max-dotenv-variables", "2"])
        .assert_code(1)
        .assert_contains("--max-dotenv-variables");
    p.run(&["run", "--max-dotenv-size", "4"])
        .assert_code(1)
        .assert_contains("--max-dotenv-size");
}
