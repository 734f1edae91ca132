//! GitLab's limits on a configuration (issue 7, "Bounds"): each refusal names the limit, the
//! file and the flag that raises it; `Limits::none()` lifts them.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use wharf_ci::*;

mod common;
use common::mem;

const MAIN: &str = ".gitlab-ci.yml";

fn with_limits(limits: Limits) -> LoadOptions {
    LoadOptions {
        limits,
        ..LoadOptions::default()
    }
}

/// Every error message (with its help) of loading `files` under `limits`.
fn refusal(files: &[(&str, &str)], limits: Limits) -> String {
    match load_pipeline_with(MAIN, &mem(files), &with_limits(limits)) {
        Ok(_) => panic!("expected the pipeline to be refused"),
        Err(d) => {
            d.0.iter()
                .map(|d| format!("{d} / help: {}", d.help.clone().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

fn loads(files: &[(&str, &str)], limits: Limits) -> Pipeline {
    match load_pipeline_with(MAIN, &mem(files), &with_limits(limits)) {
        Ok(l) => l.pipeline,
        Err(e) => panic!("expected success, got:\n{e}"),
    }
}

fn jobs(n: usize) -> String {
    (0..n).map(|i| format!("j{i}: {{script: [x]}}\n")).collect()
}

#[test]
fn defaults_are_gitlabs() {
    let l = Limits::default();
    assert_eq!(l.max_yaml_bytes, 2 * 1024 * 1024);
    assert_eq!(l.max_yaml_depth, 100);
    assert_eq!(l.max_includes, 150);
    assert_eq!(l.max_total_yaml_bytes, 314_572_800);
    assert_eq!(l.max_jobs, 2000);
    assert_eq!(LoadOptions::default().limits, l);
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_parsing() {
    let big = format!("job: {{script: [\"{}\"]}}\n", "x".repeat(3 * 1024 * 1024));
    let e = refusal(&[(MAIN, &big)], Limits::default());
    assert!(e.contains(".gitlab-ci.yml"), "{e}");
    assert!(e.contains("max_yaml_size_bytes"), "{e}");
    assert!(e.contains("--max-yaml-size"), "{e}");
    loads(&[(MAIN, &big)], Limits::none());
}

#[test]
fn an_included_file_over_the_size_limit_is_named() {
    let mut limits = Limits::default();
    limits.max_yaml_bytes = 100;
    let included = format!("big: {{script: [\"{}\"]}}\n", "x".repeat(200));
    let e = refusal(
        &[(MAIN, "include: ci/big.yml\n"), ("ci/big.yml", &included)],
        limits,
    );
    assert!(e.contains("`ci/big.yml` is 2"), "{e}");
}

#[test]
fn the_total_size_of_all_files_is_bounded() {
    let mut limits = Limits::default();
    limits.max_total_yaml_bytes = 120;
    let part = |n: usize| format!("j{n}: {{script: [\"{}\"]}}\n", "y".repeat(40));
    let (a, b, c) = (part(1), part(2), part(3));
    let files = [
        (MAIN, "include: [a.yml, b.yml, c.yml]\n"),
        ("a.yml", a.as_str()),
        ("b.yml", b.as_str()),
        ("c.yml", c.as_str()),
    ];
    let e = refusal(&files, limits);
    assert!(e.contains("ci_max_total_yaml_size_bytes"), "{e}");
    assert!(e.contains("--max-total-yaml-size"), "{e}");
    assert_eq!(loads(&files, Limits::default()).jobs.len(), 3);
}

#[test]
fn depth_over_the_limit_is_refused_and_deep_nesting_does_not_overflow_the_stack() {
    // 100,000 nested lists, in block style (`- - - x`) and in flow style (`[[[x]]]`): GitLab
    // refuses both at depth 100; wharf must neither overflow its stack in the parser nor while
    // building or dropping the tree.
    let n = 100_000;
    let block = format!("job:\n  script:\n    {}x\n", "- ".repeat(n));
    let flow = format!("job:\n  script: {}x{}\n", "[".repeat(n), "]".repeat(n));
    for deep in [&block, &flow] {
        let e = refusal(&[(MAIN, deep)], Limits::default());
        assert!(e.contains("more than 100 levels deep"), "{e}");
        assert!(e.contains("max_yaml_depth"), "{e}");
        assert!(e.contains("--max-yaml-depth"), "{e}");
    }
    // Without GitLab's limit, wharf's own still holds, and the parser's for flow nesting.
    let e = refusal(&[(MAIN, &block)], Limits::none());
    assert!(e.contains("more than 500 levels deep"), "{e}");
    let e = refusal(&[(MAIN, &flow)], Limits::none());
    assert!(e.contains("more than 255 levels deep"), "{e}");
}

#[test]
fn nesting_at_the_limit_loads() {
    // The top-level map is level 1, `job:` level 2, `variables:` level 3.
    let mut limits = Limits::default();
    limits.max_yaml_depth = 3;
    loads(
        &[(MAIN, "job: {script: [x], variables: {A: b}}\n")],
        limits.clone(),
    );
    limits.max_yaml_depth = 2;
    let e = refusal(&[(MAIN, "job: {script: [x], variables: {A: b}}\n")], limits);
    assert!(e.contains("more than 2 levels deep"), "{e}");
}

#[test]
fn aliases_cannot_nest_past_the_depth_limit() {
    let mut limits = Limits::default();
    limits.max_yaml_depth = 4;
    let yaml = ".a: &a [[[x]]]\njob: {script: [x], variables: {A: *a}}\n";
    let e = refusal(&[(MAIN, yaml)], limits);
    assert!(
        e.contains("more than 4 levels deep (through aliases)"),
        "{e}"
    );
}

#[test]
fn includes_over_the_limit_name_the_including_file() {
    let mut limits = Limits::default();
    limits.max_includes = 2;
    let files = [
        (MAIN, "include: [a.yml, b.yml, c.yml]\n"),
        ("a.yml", "a: {script: [x]}\n"),
        ("b.yml", "b: {script: [x]}\n"),
        ("c.yml", "c: {script: [x]}\n"),
    ];
    let e = refusal(&files, limits);
    assert!(e.contains("`.gitlab-ci.yml` includes `c.yml`"), "{e}");
    assert!(e.contains("ci_max_includes"), "{e}");
    assert!(e.contains("--max-includes"), "{e}");
    assert_eq!(loads(&files, Limits::default()).jobs.len(), 3);
}

#[test]
fn jobs_over_the_limit_are_refused() {
    let e = refusal(&[(MAIN, &jobs(2001))], Limits::default());
    assert!(e.contains("2001 jobs"), "{e}");
    assert!(e.contains("ci_pipeline_size"), "{e}");
    assert!(e.contains("--max-jobs"), "{e}");
    assert_eq!(
        loads(&[(MAIN, &jobs(2000))], Limits::default()).jobs.len(),
        2000
    );
}

#[test]
fn parallel_instances_count_as_jobs() {
    let mut limits = Limits::default();
    limits.max_jobs = 5;
    let e = refusal(&[(MAIN, "a: {script: [x], parallel: 6}\n")], limits);
    assert!(e.contains("6 jobs"), "{e}");
}
