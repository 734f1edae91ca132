//! GitLab's leniencies (issue 8 part 1), each with the minimal YAML that shows it: what GitLab
//! accepts loads, and where the meaning may surprise, a warning says so instead of an error.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{FILE, job, mem, name_values as vars};
use wharf_ci::{Diagnostic, Loaded, load_pipeline};

fn load(yaml: &str) -> Loaded {
    match load_pipeline(FILE, &mem(&[(FILE, yaml)])) {
        Ok(loaded) => loaded,
        Err(e) => panic!(
            "GitLab accepts this, wharf refused it:\n{}",
            e.render(&|_| Some(yaml.to_string()))
        ),
    }
}

/// `line:column: message` of each warning.
fn warnings(loaded: &Loaded) -> Vec<String> {
    loaded
        .warnings
        .iter()
        .map(|w: &Diagnostic| {
            let s = w.span.as_ref().unwrap();
            format!("{}:{}: {}", s.line, s.column, w.message)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// duplicate mapping keys: Psych builds hashes entry by entry, the last one wins

#[test]
fn a_repeated_key_keeps_the_last_value_with_a_warning_naming_both_places() {
    let loaded = load("j:\n  script: [a]\n  script: [b]\n");
    assert_eq!(job(&loaded.pipeline, "j").script, ["b"]);
    assert_eq!(
        warnings(&loaded),
        [
            "3:3: duplicate key `script`: this one replaces the one at .gitlab-ci.yml:2:3, as GitLab does (the last one wins)"
        ]
    );
}

#[test]
fn a_job_defined_twice_is_the_second_definition_at_the_first_place() {
    let loaded = load("a:\n  script: [first]\nb:\n  script: [b]\na:\n  script: [second]\n");
    let p = &loaded.pipeline;
    // Ruby keeps a hash key where it was first written.
    let names: Vec<&str> = p.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(job(p, "a").script, ["second"]);
    assert_eq!(warnings(&loaded).len(), 1);
}

#[test]
fn keys_repeated_inside_artifacts_and_only_keep_the_last() {
    let loaded = load(
        "j:\n  script: [x]\n  artifacts:\n    paths: [a]\n    paths: [b]\n  only:\n    refs: [main]\n    refs: [tags]\n",
    );
    let j = job(&loaded.pipeline, "j");
    assert_eq!(j.artifacts.as_ref().unwrap().paths, ["b"]);
    assert_eq!(j.only.as_ref().unwrap().refs, ["tags"]);
    assert_eq!(
        warnings(&loaded),
        [
            "5:5: duplicate key `paths`: this one replaces the one at .gitlab-ci.yml:4:5, as GitLab does (the last one wins)",
            "8:5: duplicate key `refs`: this one replaces the one at .gitlab-ci.yml:7:5, as GitLab does (the last one wins)",
        ]
    );
}

#[test]
fn two_merge_keys_in_one_mapping_are_each_merged_at_their_place() {
    let loaded = load(
        "
.a: &a
  stage: build
  tags: [from-a]
.b: &b
  tags: [from-b]
  script: [from-b]
j:
  <<: *a
  <<: *b
",
    );
    let j = job(&loaded.pipeline, "j");
    assert_eq!(j.stage, "build");
    // The second `Hash#merge!` replaces what the first one brought: no warning, that is the idiom.
    assert_eq!(j.tags, ["from-b"]);
    assert_eq!(j.script, ["from-b"]);
    assert!(loaded.warnings.is_empty(), "{:?}", warnings(&loaded));
}

#[test]
fn a_merge_key_replaces_keys_written_before_it_and_says_so() {
    let loaded = load(
        "
.base: &base
  script: [from-base]
j:
  script: [mine]
  <<: *base
  stage: test
",
    );
    let j = job(&loaded.pipeline, "j");
    assert_eq!(j.script, ["from-base"]);
    assert_eq!(
        warnings(&loaded),
        [
            "6:3: this merge key `<<` replaces `script` written before it at .gitlab-ci.yml:5:3: GitLab applies `<<` at its place in the mapping, so keys written before it lose"
        ]
    );
}

#[test]
fn a_list_of_merges_lets_the_first_map_win_and_later_keys_win_over_it() {
    let loaded = load(
        "
.a: &a {script: [a], stage: build}
.b: &b {script: [b], tags: [b]}
j:
  <<: [*a, *b]
  tags: [mine]
",
    );
    let j = job(&loaded.pipeline, "j");
    assert_eq!(j.script, ["a"]);
    assert_eq!(j.stage, "build");
    assert_eq!(j.tags, ["mine"]);
    assert!(loaded.warnings.is_empty());
}

// ---------------------------------------------------------------------------------------------
// variable values: every scalar is text through Ruby's `to_s`, null is ""

#[test]
fn boolean_variable_values_are_ruby_text_with_a_warning_where_the_spelling_changes() {
    let loaded = load(
        "variables:\n  FF_TIMESTAMPS: true\n  A: no\n  B: off\n  C: Yes\n  D: {value: false}\nj: {script: [x]}\n",
    );
    assert_eq!(
        vars(&loaded.pipeline.variables),
        [
            ("FF_TIMESTAMPS", "true"),
            ("A", "false"),
            ("B", "false"),
            ("C", "true"),
            ("D", "false"),
        ]
    );
    assert_eq!(
        warnings(&loaded),
        [
            "3:6: GitLab reads `no` as the boolean false, so variable `A` is \"false\"",
            "4:6: GitLab reads `off` as the boolean false, so variable `B` is \"false\"",
            "5:6: GitLab reads `Yes` as the boolean true, so variable `C` is \"true\"",
        ]
    );
}

#[test]
fn a_null_variable_is_the_empty_string() {
    let loaded = load("variables:\n  X: null\n  Y:\nj:\n  script: [x]\n  variables: {Z: ~}\n");
    assert_eq!(vars(&loaded.pipeline.variables), [("X", ""), ("Y", "")]);
    assert_eq!(vars(&job(&loaded.pipeline, "j").variables), [("Z", "")]);
    // `Y:` is written empty: nothing to warn about. `null` and `~` read as empty text.
    let lines: Vec<String> = warnings(&loaded);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("2:6: GitLab reads this null as the empty string"));
}

// ---------------------------------------------------------------------------------------------
// needs and cache: `[@config].flatten`

#[test]
fn needs_from_an_alias_list_are_flattened_and_nulls_dropped() {
    let loaded = load(
        "
.common-needs: &common-needs [a, b]
a: {stage: build, script: [x]}
b: {stage: build, script: [x]}
c: {stage: build, script: [x]}
t:
  stage: test
  script: [x]
  needs: [*common-needs, c, null]
",
    );
    let needs: Vec<&str> = job(&loaded.pipeline, "t")
        .needs
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.job.as_str())
        .collect();
    assert_eq!(needs, ["a", "b", "c"]);
}

#[test]
fn a_single_map_of_needs_is_one_need() {
    // espressif/esp-modbus' .gitlab-ci.yml:299 (public corpus).
    let loaded = load(
        "
stages: [build, test]
build: {stage: build, script: [x]}
test:
  stage: test
  script: [x]
  needs:
    job: build
    artifacts: false
",
    );
    let needs = job(&loaded.pipeline, "test").needs.as_ref().unwrap();
    let needs: Vec<(&str, bool)> = needs
        .iter()
        .map(|n| (n.job.as_str(), n.artifacts))
        .collect();
    assert_eq!(needs, [("build", false)]);
}

#[test]
fn cache_from_an_alias_list_is_flattened() {
    let loaded = load(
        "
.cached_go: &cached_go
  - key: go
    paths: [.go]
  - key: build
    paths: [target]
j:
  script: [x]
  cache: [*cached_go]
",
    );
    let keys: Vec<&str> = job(&loaded.pipeline, "j")
        .cache
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(keys, ["go", "build"]);
}

// ---------------------------------------------------------------------------------------------
// indentation inside flow collections and quoted scalars: libyaml (GitLab's parser, through
// Psych) does not check it

fn needs_of<'a>(loaded: &'a Loaded, name: &str) -> Vec<&'a str> {
    let needs = job(&loaded.pipeline, name).needs.as_ref().unwrap();
    needs.iter().map(|n| n.job.as_str()).collect()
}

fn refused(yaml: &str) -> Vec<Diagnostic> {
    match load_pipeline(FILE, &mem(&[(FILE, yaml)])) {
        Ok(_) => panic!("GitLab refuses this, wharf loaded it:\n{yaml}"),
        Err(e) => e.0,
    }
}

#[test]
fn a_flow_list_closed_under_its_key_loads() {
    // The shape of oly-exams/exam_tools' .gitlab/ci/test.yml:119 (public corpus).
    let loaded = load(
        r#"
build: {stage: build, script: [x]}
lint: {stage: build, script: [x]}
test:
    stage: test
    script: [x]
    needs: [
        "build",
        "lint",
    ]
    variables:
        AFTER: "the block goes on"
"#,
    );
    assert_eq!(needs_of(&loaded, "test"), ["build", "lint"]);
    assert_eq!(
        vars(&job(&loaded.pipeline, "test").variables),
        [("AFTER", "the block goes on")]
    );
}

#[test]
fn flow_entries_at_or_left_of_their_key_load() {
    let loaded = load(
        r#"
test:
  script: [
  echo one,
"echo two",
  ]
  variables: {
  A: a,
B: b
  }
"#,
    );
    let test = job(&loaded.pipeline, "test");
    assert_eq!(test.script, ["echo one", "echo two"]);
    assert_eq!(vars(&test.variables), [("A", "a"), ("B", "b")]);
}

#[test]
fn a_quoted_scalar_continued_left_of_its_block_folds_as_gitlab_does() {
    let loaded = load(
        r#"
test:
  script:
    - "echo one
  two"
    - 'echo it''s
three'
"#,
    );
    assert_eq!(
        job(&loaded.pipeline, "test").script,
        ["echo one two", "echo it's three"]
    );
}

#[test]
fn a_tab_between_a_key_and_its_value_separates_like_a_space() {
    let loaded = load(
        "image:\tpython:3.10\ntest:\n  stage:\ttest\n  script:\t[echo a]\n  variables:\n    A:\t\t-x\n",
    );
    let test = job(&loaded.pipeline, "test");
    assert_eq!(test.image.as_ref().unwrap().name, "python:3.10");
    assert_eq!(
        (test.stage.as_str(), &test.script[..]),
        ("test", &["echo a".to_string()][..])
    );
    assert_eq!(vars(&test.variables), [("A", "-x")]);
}

#[test]
fn a_tab_after_a_block_indicator_is_refused_as_libyaml_refuses_it() {
    // libyaml skips tabs only where no key may start: after `-`, `?` and a `:` that starts its
    // line, a tab can only be indentation ("found character that cannot start any token").
    // saphyr read it as a space, so `wharf lint` passed files that fail on GitLab.
    for (yaml, at, indicator) in [
        ("test:\n  script:\n    -\techo a\n", (3, 6), '-'),
        (
            "test:\n  script:\n    - echo a\n    -  \techo b\n",
            (4, 8),
            '-',
        ),
        ("test:\n  script:\n    - - \techo a\n", (3, 9), '-'),
        ("test:\n  script:\n    -\t\n", (3, 6), '-'),
        (
            "test:\n  script: [x]\n  variables:\n    ? A\n    : \tb\n",
            (5, 7),
            ':',
        ),
    ] {
        let errors = refused(yaml);
        let span = errors[0].span.as_ref().unwrap();
        assert_eq!(
            (span.line, span.column),
            at,
            "{yaml:?}: {}",
            errors[0].message
        );
        assert!(
            errors[0]
                .message
                .contains(&format!("a tab after `{indicator}`")),
            "{yaml:?}: {}",
            errors[0].message
        );
    }
    // The same characters as text (in a script, a quoted or plain scalar running on, a comment),
    // and tabs libyaml skips (after a key's `:`, after an anchor, inside a flow list), load.
    let loaded = load(
        "test:\n  script:\n    - |\n      -\tliteral\n    - \"quoted\n      -\tgoes on\"\n    - plain\n      -\tgoes on\n    - &a\tanchored  # -\tcomment\n    - [\tflow,\n      \tlist]\n  variables:\n    A:\tb\n",
    );
    let test = job(&loaded.pipeline, "test");
    assert_eq!(
        test.script,
        [
            "-\tliteral\n",
            "quoted -\tgoes on",
            "plain -\tgoes on",
            "anchored",
            "flow",
            "list"
        ]
    );
    assert_eq!(vars(&test.variables), [("A", "b")]);
}

#[test]
fn an_error_on_a_line_indented_for_the_parser_points_where_it_was_written() {
    let errors = refused(
        "
test:
  script: [x]
  needs: [
  nope ]
",
    );
    let error = errors.iter().find(|d| d.message.contains("nope")).unwrap();
    let span = error.span.as_ref().unwrap();
    assert_eq!((span.line, span.column), (5, 3), "{}", error.message);
}

#[test]
fn a_file_that_would_be_read_again_too_often_is_refused_with_the_fix() {
    // Each line left of `needs` costs one more read of the whole file; wharf stops at 16 MiB
    // read again (here after about 1,100 of the 3,000 lines) instead of reading on.
    let yaml = format!(
        "test:\n  script: [x]\n  needs: [\n{}  ]\n",
        "  a,\n".repeat(3000)
    );
    let errors = refused(&yaml);
    assert!(
        errors[0]
            .message
            .starts_with("invalid YAML: invalid indentation")
    );
    let help = errors[0].help.as_deref().unwrap_or_default();
    assert!(help.contains("indent the lines inside"), "{help}");
}

#[test]
fn a_block_indented_wrongly_is_still_an_error() {
    for yaml in [
        "a:\n  b: 1\n c: 2\n",
        "test:\n  script: [x,\n  y\nother: 1\n",
        "test:\n  script: \"never closed\n",
    ] {
        let errors = refused(yaml);
        assert!(
            errors[0].message.starts_with("invalid YAML"),
            "{yaml:?}: {}",
            errors[0].message
        );
    }
}

// ---------------------------------------------------------------------------------------------
// retry, parallel, dependencies

#[test]
fn retry_when_accepts_every_failure_reason_gitlab_knows() {
    let loaded = load(
        "j:\n  script: [x]\n  retry:\n    max: 2\n    when: [runner_interrupted, protected_environment_failure, deployment_rejected]\n",
    );
    assert_eq!(
        job(&loaded.pipeline, "j").retry.when,
        [
            "runner_interrupted",
            "protected_environment_failure",
            "deployment_rejected"
        ]
    );
}

#[test]
fn parallel_one_makes_one_numbered_job() {
    let loaded = load("j:\n  script: [x]\n  parallel: 1\n");
    let names: Vec<&str> = loaded
        .pipeline
        .jobs
        .iter()
        .map(|j| j.name.as_str())
        .collect();
    assert_eq!(names, ["j 1/1"]);
}

#[test]
fn dependencies_may_name_a_job_of_the_same_stage() {
    let loaded = load(
        "a:\n  stage: test\n  script: [x]\nb:\n  stage: test\n  script: [x]\n  dependencies: [a]\n",
    );
    assert_eq!(
        job(&loaded.pipeline, "b").dependencies.as_deref(),
        Some(&["a".to_string()][..])
    );
}
