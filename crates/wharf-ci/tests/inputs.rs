//! CI/CD inputs: `spec: inputs:` headers, `include` `inputs`, `$[[ inputs.X ]]` interpolation.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use wharf_ci::*;

mod common;
use common::{errors_with_file, job, job_names as names, mem, options_with as options};

const MAIN: &str = ".gitlab-ci.yml";

fn ok(files: &[(&str, &str)], vars: &[(&str, &str)]) -> Pipeline {
    match load_pipeline_with(MAIN, &mem(files), &options(vars)) {
        Ok(l) => l.pipeline,
        Err(e) => panic!("expected success, got:\n{e}"),
    }
}

/// `file:line:col: message` of each error.
fn errors(files: &[(&str, &str)]) -> Vec<String> {
    match load_pipeline_with(MAIN, &mem(files), &options(&[])) {
        Ok(l) => panic!("expected errors, got {:#?}", l.pipeline.jobs),
        Err(e) => errors_with_file(&e),
    }
}

const TEMPLATE: &str = "spec:
  inputs:
    job-prefix:
      description: a prefix for the job name
    stage:
      default: test
    environment:
      options: [test, staging, production]
    concurrency:
      type: number
      default: 2
    version:
      type: string
      regex: ^v\\d\\.\\d+(\\.\\d+)?$
    export:
      type: boolean
      default: true
    needs-list:
      type: array
      default: []
---
\"$[[ inputs.job-prefix ]]-scan\":
  stage: $[[ inputs.stage ]]
  parallel: $[[ inputs.concurrency ]]
  allow_failure: $[[ inputs.export ]]
  needs: $[[ inputs.needs-list ]]
  script:
    - echo -e $[[ inputs.environment ]] -c $[[ inputs.concurrency ]] -v $[[ inputs.version ]]
    - if $[[ inputs.export ]]; then echo export; fi
";

#[test]
fn include_inputs_are_typed_and_interpolated() {
    let p = ok(
        &[
            (
                MAIN,
                "stages: [build, deploy]
include:
  - local: scan.yml
    inputs:
      job-prefix: web
      stage: deploy
      environment: staging
      concurrency: 3
      version: v1.3.2
      export: false
      needs-list: [build]
build:
  stage: build
  script: [make]
",
            ),
            ("scan.yml", TEMPLATE),
        ],
        &[],
    );
    assert_eq!(
        names(&p),
        ["web-scan 1/3", "web-scan 2/3", "web-scan 3/3", "build"]
    );
    let scan = job(&p, "web-scan 1/3");
    assert_eq!(scan.stage, "deploy");
    // Whole-value blocks keep their type: a number makes `parallel: 2`, a boolean
    // `allow_failure: false`, an array a list of needs.
    assert!(!scan.allow_failure);
    let needs: Vec<&str> = scan
        .needs
        .iter()
        .flatten()
        .map(|n| n.job.as_str())
        .collect();
    assert_eq!(needs, ["build"]);
    // Inside a longer string, the value's text.
    assert_eq!(
        scan.script,
        [
            "echo -e staging -c 3 -v v1.3.2",
            "if false; then echo export; fi"
        ]
    );
}

#[test]
fn defaults_fill_missing_inputs_and_the_main_file_uses_its_defaults() {
    let p = ok(
        &[
            (
                MAIN,
                "spec:
  inputs:
    suffix:
      default: main
    count:
      type: number
      default: 1.10
---
include:
  - local: scan.yml
    inputs:
      job-prefix: $[[ inputs.suffix ]]
      environment: test
      version: v2.0
job-$[[ inputs.suffix ]]:
  script:
    - echo $[[ inputs.count ]]
",
            ),
            ("scan.yml", TEMPLATE),
        ],
        &[],
    );
    // The main file's own inputs are interpolated first, so they reach the include's inputs.
    assert_eq!(names(&p), ["main-scan 1/2", "main-scan 2/2", "job-main"]);
    let scan = job(&p, "main-scan 2/2");
    assert_eq!(scan.stage, "test");
    assert!(scan.allow_failure);
    assert_eq!(scan.needs.as_deref(), Some(&[][..]));
    // `1.10` is the number 1.1 to GitLab, as text too.
    assert_eq!(job(&p, "job-main").script, ["echo 1.1"]);
}

#[test]
fn interpolation_functions() {
    let p = ok(
        &[
            (
                MAIN,
                "include:
  - local: f.yml
    inputs:
      name: '0123456789'
      msg: \"it's $NAME\"
",
            ),
            (
                "f.yml",
                "spec:
  inputs:
    name:
    msg:
      default: x
---
job:
  variables:
    CUT: $[[ inputs.name | truncate(3,5) ]]
    PAST: $[[ inputs.name | truncate(20,5) ]]
    EXPANDED: $[[ inputs.msg | expand_vars ]]
    RAW: $[[ inputs.msg ]]
    ESCAPED: $[[ inputs.msg | expand_vars | posix_escape ]]
    CHAINED: $[[inputs.msg|expand_vars|truncate(0,4)|posix_escape]]
    MATRIX: $[[ matrix.OS ]]
  script: [x]
",
            ),
        ],
        &[("NAME", "wharf"), ("OTHER", "no")],
    );
    let vars: HashMap<&str, &str> = job(&p, "job")
        .variables
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(vars["CUT"], "34567");
    assert_eq!(vars["PAST"], "");
    assert_eq!(vars["EXPANDED"], "it's wharf");
    assert_eq!(vars["RAW"], "it's $NAME");
    assert_eq!(vars["ESCAPED"], "it\\'s\\ wharf");
    assert_eq!(vars["CHAINED"], "it\\'s");
    // Matrix expressions are not inputs: left as written.
    assert_eq!(vars["MATRIX"], "$[[ matrix.OS ]]");
}

#[test]
fn one_file_included_twice_with_different_inputs_makes_both() {
    let p = ok(
        &[
            (
                MAIN,
                "include:
  - local: t.yml
    inputs: {env: staging}
  - local: t.yml
    inputs: {env: production}
  - local: t.yml
    inputs: {env: staging}
",
            ),
            (
                "t.yml",
                "spec:\n  inputs:\n    env:\n---\ndeploy-$[[ inputs.env ]]:\n  script:\n    - deploy $[[ inputs.env ]]\n",
            ),
        ],
        &[],
    );
    assert_eq!(names(&p), ["deploy-staging", "deploy-production"]);
}

#[test]
fn merged_yaml_shows_inputs_resolved() {
    let files = mem(&[
        (
            MAIN,
            "include:\n  - local: t.yml\n    inputs: {n: 3, list: [a, b]}\n",
        ),
        (
            "t.yml",
            "spec:\n  inputs:\n    n: {type: number}\n    list: {type: array}\n---\njob:\n  parallel: $[[ inputs.n ]]\n  tags: $[[ inputs.list ]]\n  script:\n    - echo $[[ inputs.list ]]\n",
        ),
    ]);
    let yaml = merged_yaml(MAIN, &files, &LoadOptions::default()).unwrap();
    assert_eq!(
        yaml,
        "# from t.yml, included by .gitlab-ci.yml\njob:\n  parallel: 3\n  tags:\n    - a\n    - b\n  script:\n    - echo [\"a\", \"b\"]\n"
    );
}

fn scan_errors(inputs: &str) -> Vec<String> {
    errors(&[
        (
            MAIN,
            &format!("include:\n  - local: scan.yml\n    inputs: {inputs}\n"),
        ),
        ("scan.yml", TEMPLATE),
    ])
}

#[test]
fn each_input_error_names_the_include_and_the_input() {
    let good = "job-prefix: a, environment: test, version: v1.0";
    // Required input not given: reported at the include.
    assert_eq!(
        scan_errors("{environment: test, version: v1.0}"),
        [
            ".gitlab-ci.yml:2:12: `include` of `scan.yml`: input `job-prefix` is required (it has no `default`) and not given"
        ]
    );
    // Unknown input: at its name, with a suggestion.
    assert_eq!(
        scan_errors(&format!("{{{good}, enviroment: x}}")),
        [
            ".gitlab-ci.yml:3:63: `include` of `scan.yml`: unknown input `enviroment` (`scan.yml` does not define it)"
        ]
    );
    // Type, options and regex: at the value.
    assert_eq!(
        scan_errors(&format!("{{{good}, concurrency: two}}")),
        [
            ".gitlab-ci.yml:3:76: `include` of `scan.yml`: input `concurrency` must be a number, found a string `two`"
        ]
    );
    assert_eq!(
        scan_errors(&format!("{{{good}, export: 'yes'}}")),
        [
            ".gitlab-ci.yml:3:71: `include` of `scan.yml`: input `export` must be a boolean, found a string `yes`"
        ]
    );
    assert_eq!(
        scan_errors(&format!("{{{good}, needs-list: a}}")),
        [
            ".gitlab-ci.yml:3:75: `include` of `scan.yml`: input `needs-list` must be an array, found a string `a`"
        ]
    );
    assert_eq!(
        scan_errors("{job-prefix: a, environment: prod, version: v1.0}"),
        [
            ".gitlab-ci.yml:3:42: `include` of `scan.yml`: input `environment` is `prod`, which is not one of the allowed options (test, staging, production)"
        ]
    );
    assert_eq!(
        scan_errors("{job-prefix: a, environment: test, version: 1.0.0}"),
        [
            ".gitlab-ci.yml:3:57: `include` of `scan.yml`: input `version` is `1.0.0`, which does not match the input's `regex` `^v\\d\\.\\d+(\\.\\d+)?$`"
        ]
    );
    // A string input given a number is a type error, as in GitLab.
    assert_eq!(
        scan_errors("{job-prefix: 7, environment: test, version: v1.0}"),
        [
            ".gitlab-ci.yml:3:26: `include` of `scan.yml`: input `job-prefix` must be a string, found a number `7`"
        ]
    );
}

#[test]
fn header_and_interpolation_errors() {
    let with = |template: &str| {
        errors(&[
            (MAIN, "include:\n  - local: t.yml\n    inputs: {a: x}\n"),
            ("t.yml", template),
        ])
    };
    assert_eq!(
        with("spec:\n  inputs:\n    a:\n---\nj:\n  script: [\"$[[ inputs.b ]]\"]\n"),
        [
            "t.yml:6:12: in `$[[ inputs.b ]]`: unknown interpolation key: `b` (the header defines no such input)"
        ]
    );
    assert_eq!(
        with("spec:\n  inputs:\n    a:\n---\nj:\n  script: [\"$[[ inputs.a | upcase ]]\"]\n"),
        [
            "t.yml:6:12: in `$[[ inputs.a | upcase ]]`: no function matching `upcase`: the functions are `expand_vars`, `truncate(offset,length)` and `posix_escape`"
        ]
    );
    assert_eq!(
        with(
            "spec:\n  inputs:\n    a:\n    n: {type: number, default: 1}\n---\nj:\n  script: [\"$[[ inputs.n | truncate(0,1) ]]\"]\n"
        ),
        [
            "t.yml:7:12: in `$[[ inputs.n | truncate(0,1) ]]`: invalid input type: `truncate` can only be used with string inputs"
        ]
    );
    assert_eq!(
        with(
            "spec:\n  inputs:\n    a:\n---\nj:\n  script: [\"$[[ inputs.a | posix_escape | posix_escape | posix_escape | posix_escape ]]\"]\n"
        ),
        [
            "t.yml:6:12: in `$[[ inputs.a | posix_escape | posix_escape | posix_escape | posix_escape ]]`: too many functions in interpolation block (at most 3)"
        ]
    );
    assert_eq!(
        with("spec:\n  inputs:\n    a: {type: text}\n---\nj: {script: [x]}\n"),
        [
            "t.yml:3:15: `type` of input `a` must be one of string, number, boolean, array, found a string `text`"
        ]
    );
    assert_eq!(
        with("spec:\n  inputs:\n    a: {type: boolean, options: [true]}\n---\nj: {script: [x]}\n"),
        ["t.yml:3:24: `options` of input `a` can only be used with string and number inputs"]
    );
    assert_eq!(
        with(
            "spec:\n  inputs:\n    a:\n    n: {type: number, default: many}\n---\nj: {script: [x]}\n"
        ),
        ["t.yml:4:32: the default of input `n` must be a number, found a string `many`"]
    );
    assert_eq!(
        with("spec:\n  inputs:\n    a:\n    s: {default: x, regex: '('}\n---\nj: {script: [x]}\n"),
        [
            "t.yml:4:28: `regex` of input `s` is not a valid regular expression: regex parse error:\n    (\n    ^\nerror: unclosed group"
        ]
    );
    // Inputs for a file without a header; a header without `---`.
    assert_eq!(
        with("j: {script: [x]}\n"),
        [
            ".gitlab-ci.yml:3:5: `include` passes `inputs` to `t.yml`, which has no `spec: inputs:` header"
        ]
    );
    assert_eq!(
        with("spec:\n  inputs:\n    a:\n"),
        ["t.yml:1:1: a `spec:` header must be followed by `---` and the configuration"]
    );
}

#[test]
fn empty_inputs_need_no_header_and_a_header_without_inputs_still_interpolates() {
    let p = ok(
        &[
            (MAIN, "include:\n  - local: t.yml\n    inputs: {}\n"),
            ("t.yml", "j:\n  script: [x]\n"),
        ],
        &[],
    );
    assert_eq!(names(&p), ["j"]);
    assert_eq!(
        errors(&[
            (MAIN, "include: t.yml\n"),
            (
                "t.yml",
                "spec:\n---\nj:\n  script:\n    - $[[ inputs.a ]]\n"
            ),
        ]),
        [
            "t.yml:5:7: in `$[[ inputs.a ]]`: unknown interpolation key: `a` (the header defines no such input)"
        ]
    );
}

#[test]
fn files_without_a_header_are_not_interpolated() {
    let p = ok(
        &[
            (MAIN, "include: t.yml\n"),
            ("t.yml", "j:\n  script:\n    - echo $[[ inputs.a ]]\n"),
        ],
        &[],
    );
    assert_eq!(job(&p, "j").script, ["echo $[[ inputs.a ]]"]);
}

/// The child pipeline of the first `trigger:` job of the parent in `files`.
fn child(files: &[(&str, &str)], vars: &[(&str, &str)]) -> Result<Pipeline, Diagnostics> {
    let loader = mem(files);
    let parent = match load_pipeline_with(MAIN, &loader, &options(vars)) {
        Ok(l) => l.pipeline,
        Err(e) => panic!("expected the parent to load, got:\n{e}"),
    };
    let trigger = parent
        .jobs
        .iter()
        .find_map(|j| j.trigger.as_ref())
        .unwrap_or_else(|| panic!("no trigger job in {:?}", names(&parent)));
    load_child_pipeline(trigger, &loader, &options(vars)).map(|l| l.pipeline)
}

fn child_ok(files: &[(&str, &str)], vars: &[(&str, &str)]) -> Pipeline {
    child(files, vars).unwrap_or_else(|e| panic!("expected the child to load, got:\n{e}"))
}

/// `file:line:col: message` (and `help`) of each error loading the child.
fn child_errors(files: &[(&str, &str)]) -> Vec<String> {
    match child(files, &[]) {
        Ok(p) => panic!("expected errors, got {:?}", names(&p)),
        Err(e) => {
            e.0.iter()
                .filter(|d| d.is_error())
                .map(|d| {
                    let at = d
                        .span
                        .as_ref()
                        .map(|s| format!("{s}: "))
                        .unwrap_or_default();
                    match &d.help {
                        Some(h) => format!("{at}{} [{h}]", d.message),
                        None => format!("{at}{}", d.message),
                    }
                })
                .collect()
        }
    }
}

const CHILD: &str = "spec:
  inputs:
    env:
      options: [staging, production]
    replicas:
      type: number
      default: 1
    debug:
      type: boolean
      default: false
    tags:
      type: array
      default: []
    suffix:
      regex: ^[a-z]+$
      default: x
---
deploy-$[[ inputs.env ]]:
  tags: $[[ inputs.tags ]]
  script:
    - echo env=$[[ inputs.env ]] replicas=$[[ inputs.replicas ]] debug=$[[ inputs.debug ]] suffix=$[[ inputs.suffix ]]
";

#[test]
fn trigger_include_inputs_reach_the_child_typed() {
    let p = child_ok(
        &[
            (
                MAIN,
                "up:
  trigger:
    include:
      - local: /child.yml
        inputs:
          env: production
          replicas: 3
          debug: true
          tags: [fast, linux]
",
            ),
            ("child.yml", CHILD),
        ],
        &[],
    );
    assert_eq!(names(&p), ["deploy-production"]);
    let j = job(&p, "deploy-production");
    assert_eq!(
        j.script,
        ["echo env=production replicas=3 debug=true suffix=x"]
    );
    // A whole-value block keeps the array an array.
    assert_eq!(j.tags, ["fast", "linux"]);
}

#[test]
fn a_trigger_without_inputs_gives_the_child_its_defaults_and_requires_the_rest() {
    let child_defaults = "spec:\n  inputs:\n    env:\n      default: dev\n---\nj-$[[ inputs.env ]]:\n  script: [x]\n";
    let p = child_ok(
        &[
            (MAIN, "up:\n  trigger:\n    include: child.yml\n"),
            ("child.yml", child_defaults),
        ],
        &[],
    );
    assert_eq!(names(&p), ["j-dev"]);
    assert_eq!(
        child_errors(&[
            (
                MAIN,
                "up:\n  trigger:\n    include:\n      - local: child.yml\n"
            ),
            ("child.yml", CHILD),
        ]),
        ["\
.gitlab-ci.yml:4:16: `trigger:include` of `child.yml`: input `env` is required (it has no `default`) and not given \
[`env` is defined at child.yml:3:5; pass it under `inputs:` of this `trigger:include`]"]
    );
}

#[test]
fn trigger_include_input_errors_name_the_parent_and_the_child() {
    let parent = "up:
  trigger:
    include:
      - local: child.yml
        inputs:
          env: prod
          replicas: three
          debug: 'true'
          suffix: Upper
          replica: 2
";
    assert_eq!(
        child_errors(&[(MAIN, parent), ("child.yml", CHILD)]),
        [
            ".gitlab-ci.yml:6:16: `trigger:include` of `child.yml`: input `env` is `prod`, which is not one of the allowed options (staging, production) [`env` is defined at child.yml:3:5]",
            ".gitlab-ci.yml:7:21: `trigger:include` of `child.yml`: input `replicas` must be a number, found a string `three` [`replicas` is defined at child.yml:5:5]",
            ".gitlab-ci.yml:8:18: `trigger:include` of `child.yml`: input `debug` must be a boolean, found a string `true` [`debug` is defined at child.yml:8:5]",
            ".gitlab-ci.yml:9:19: `trigger:include` of `child.yml`: input `suffix` is `Upper`, which does not match the input's `regex` `^[a-z]+$` [`suffix` is defined at child.yml:14:5]",
            ".gitlab-ci.yml:10:11: `trigger:include` of `child.yml`: unknown input `replica` (`child.yml` does not define it) [did you mean `replicas`?]",
        ]
    );
}

#[test]
fn trigger_include_inputs_need_a_header_in_the_child() {
    assert_eq!(
        child_errors(&[
            (
                MAIN,
                "up:\n  trigger:\n    include:\n      - local: child.yml\n        inputs: {env: x}\n"
            ),
            ("child.yml", "j:\n  script: [x]\n"),
        ]),
        ["\
.gitlab-ci.yml:5:9: `trigger:include` passes `inputs` to `child.yml`, which has no `spec: inputs:` header \
[declare the inputs in a header: `spec: {inputs: {NAME: {default: ...}}}`, then a line `---`]"]
    );
}

#[test]
fn each_trigger_include_file_gets_its_own_inputs() {
    let t = "spec:\n  inputs:\n    name:\n---\n$[[ inputs.name ]]:\n  script:\n    - echo $[[ inputs.name ]]\n";
    let p = child_ok(
        &[
            (
                MAIN,
                "up:
  trigger:
    include:
      - local: t.yml
        inputs: {name: one}
      - local: t.yml
        inputs: {name: two}
      - local: u.yml
",
            ),
            ("t.yml", t),
            ("u.yml", "three:\n  script: [x]\n"),
        ],
        &[],
    );
    assert_eq!(names(&p), ["one", "two", "three"]);
}

#[test]
fn trigger_inputs_take_the_parents_inputs_and_keep_variables_as_text() {
    let parent = "spec:
  inputs:
    env:
      default: staging
---
up:
  trigger:
    include:
      - local: child.yml
        inputs:
          env: $[[ inputs.env ]]
          suffix: $CI_COMMIT_REF_SLUG
";
    let child_file = "spec:\n  inputs:\n    env:\n    suffix:\n---\nj:\n  script:\n    - echo $[[ inputs.env ]] $[[ inputs.suffix ]]\n";
    let p = child_ok(
        &[(MAIN, parent), ("child.yml", child_file)],
        &[("CI_COMMIT_REF_SLUG", "main")],
    );
    assert_eq!(job(&p, "j").script, ["echo staging $CI_COMMIT_REF_SLUG"]);

    // Without a header in the parent, its blocks stay as written (GitLab interpolates only
    // files with a header) and reach the child as text, not interpolated again there.
    let parent = "up:\n  trigger:\n    include:\n      - local: child.yml\n        inputs: {env: '$[[ inputs.env ]]', suffix: s}\n";
    let p = child_ok(&[(MAIN, parent), ("child.yml", child_file)], &[]);
    assert_eq!(job(&p, "j").script, ["echo $[[ inputs.env ]] s"]);
}

#[test]
fn a_child_file_includes_others_and_missing_child_files_are_reported_at_the_trigger() {
    let p = child_ok(
        &[
            (
                MAIN,
                "up:\n  trigger:\n    include:\n      - local: child.yml\n        inputs: {env: prod}\n",
            ),
            (
                "child.yml",
                "spec:\n  inputs:\n    env:\n---\ninclude:\n  - local: t.yml\n    inputs: {name: '$[[ inputs.env ]]-job'}\n",
            ),
            (
                "t.yml",
                "spec:\n  inputs:\n    name:\n---\n$[[ inputs.name ]]:\n  script: [x]\n",
            ),
        ],
        &[],
    );
    assert_eq!(names(&p), ["prod-job"]);
    assert_eq!(
        child_errors(&[(MAIN, "up:\n  trigger:\n    include: gone.yml\n")]),
        [".gitlab-ci.yml:3:14: included file `gone.yml` does not exist"]
    );
}

#[test]
fn trigger_inputs_are_checked_for_shape_in_the_parent() {
    assert_eq!(
        errors(&[(
            MAIN,
            "up:\n  trigger:\n    include:\n      - local: child.yml\n        inputs: [a]\n"
        )]),
        [
            ".gitlab-ci.yml:5:17: `inputs` of an `include` entry in `trigger` of job `up` must be a map of input names to values, found a list"
        ]
    );
    assert_eq!(
        errors(&[(
            MAIN,
            "up:\n  trigger:\n    include: child.yml\n    inputs: {a: 1}\n"
        )]),
        [
            ".gitlab-ci.yml:4:5: `inputs` in `trigger` of job `up` is only for multi-project pipelines (`trigger: project`)"
        ]
    );
    assert_eq!(
        errors(&[(
            MAIN,
            "up:\n  trigger:\n    include:\n      - local: child.yml\n        input: {a: 1}\n"
        )]),
        [".gitlab-ci.yml:5:9: unknown key `input` in an `include` entry in `trigger` of job `up`"]
    );
}

#[test]
fn expand_vars_refuses_masked_variables() {
    let files = [
        (
            MAIN,
            "include:\n  - local: t.yml\n    inputs:\n      greeting: \"hi $NAME and $TOKEN\"\n",
        ),
        (
            "t.yml",
            "spec:\n  inputs:\n    greeting:\n---\njob:\n  script: echo \"$[[ inputs.greeting | expand_vars ]]\"\n",
        ),
    ];
    let options = LoadOptions {
        variables: vec![
            ("NAME".into(), "world".into()),
            ("TOKEN".into(), "s3cr3t-value".into()),
        ],
        masked: vec!["TOKEN".into()],
        ..LoadOptions::default()
    };
    let e = load_pipeline_with(MAIN, &mem(&files), &options).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("masked variable `TOKEN`"), "{text}");
    assert!(!text.contains("s3cr3t-value"), "{text}");

    // Unmasked, the same value expands.
    let options = LoadOptions {
        masked: Vec::new(),
        ..options
    };
    let p = load_pipeline_with(MAIN, &mem(&files), &options)
        .unwrap()
        .pipeline;
    assert!(
        format!("{:?}", job(&p, "job").script).contains("hi world and s3cr3t-value"),
        "{:?}",
        job(&p, "job").script
    );
}

/// GNOME's `gnomeos-basic-ci` component declares optional inputs with `default: null`, of any
/// type; GitLab accepts them: an optional input with no value, `null` where it is the whole value
/// and empty text inside a string.
#[test]
fn a_null_default_makes_an_input_optional_with_no_value() {
    let p = ok(
        &[
            (
                MAIN,
                "include:\n  - local: t.yml\n    inputs: {given: [echo given]}\n",
            ),
            (
                "t.yml",
                "spec:
  inputs:
    options:
      default: null
    before:
      type: array
      default: null
    given:
      type: array
      default: null
---
build:
  before_script: $[[ inputs.before ]]
  script:
    - meson setup build $[[ inputs.options ]]
other:
  before_script: $[[ inputs.given ]]
  script: [x]
",
            ),
        ],
        &[],
    );
    let build = p.jobs.iter().find(|j| j.name == "build").unwrap();
    assert_eq!(build.script, ["meson setup build "]);
    assert!(build.before_script.is_empty(), "{:?}", build.before_script);
    let other = p.jobs.iter().find(|j| j.name == "other").unwrap();
    assert_eq!(other.before_script, ["echo given"]);
}

#[test]
fn in_a_file_of_one_document_a_job_called_spec_is_a_job() {
    // gitlab-org/release-tools' .gitlab-ci.yml (2016, public corpus): an rspec job. GitLab reads
    // a header only when a second document follows (`Yaml::Documents#has_header?`).
    let p = ok(
        &[(
            MAIN,
            "before_script: [bundle install]\nspec:\n  script: [bundle exec rake]\n",
        )],
        &[],
    );
    assert_eq!(names(&p), ["spec"]);
    let spec = job(&p, "spec");
    assert_eq!(
        (&spec.before_script, &spec.script),
        (
            &vec!["bundle install".to_string()],
            &vec!["bundle exec rake".to_string()]
        )
    );
    // What can only be a header still says that its `---` is missing.
    assert_eq!(
        errors(&[(MAIN, "spec:\n  inputs:\n    a:\n")]),
        [".gitlab-ci.yml:1:1: a `spec:` header must be followed by `---` and the configuration"]
    );
}
