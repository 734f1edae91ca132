//! wharf-ci behaviour through its public API, with an in-memory loader.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::time::Duration;
use wharf_ci::*;

mod common;
use common::{
    FILE, Mem, brief, errors_with_file, job, job_names as names, load, mem, name_values as vars,
    ok, options_with,
};

/// Load `files` (the first is the main file) with `vars` known up front.
fn load_files(files: &[(&str, &str)], vars: &[(&str, &str)]) -> Result<Loaded, Diagnostics> {
    load_pipeline_with(files[0].0, &mem(files), &options_with(vars))
}

fn ok_files(files: &[(&str, &str)], vars: &[(&str, &str)]) -> Pipeline {
    match load_files(files, vars) {
        Ok(l) => l.pipeline,
        Err(e) => panic!("expected success, got:\n{e}"),
    }
}

/// `file:line:col: message` of each error.
fn brief_files(files: &[(&str, &str)]) -> Vec<String> {
    match load_files(files, &[]) {
        Ok(l) => panic!("expected errors, got {:#?}", l.pipeline),
        Err(e) => errors_with_file(&e),
    }
}

fn errors(yaml: &str) -> Vec<Diagnostic> {
    match load(yaml) {
        Ok(l) => panic!("expected errors, got {:#?}", l.pipeline),
        Err(e) => {
            e.0.into_iter()
                .filter(|d| d.severity == Severity::Error)
                .collect()
        }
    }
}

const SEED: &str = "stages:
  - build
.job_npm_build_template: &job_npm_build
  image: docker-registry.samchu.com/node:10-alpine
  cache:
    paths:
      - node_modules/
  before_script:
    - source build-vars.sh
    - npm install
  script:
    - npm run clean
    - npm run build:${SERVER_ENV}
    - cat dist/index.html
    - tar cvf dist-${SERVER_ENV}.tar dist
  artifacts:
    paths:
      - dist-${SERVER_ENV}.tar
build-staging:
  <<: *job_npm_build
  stage: build
  variables:
    SERVER_ENV: staging
";

#[test]
fn seed_pipeline() {
    let p = ok(SEED);
    assert_eq!(p.stages, [".pre", "build", ".post"]);
    assert_eq!(p.jobs.len(), 1);
    let j = &p.jobs[0];
    assert_eq!(j.name, "build-staging");
    assert_eq!((j.span.line, j.span.column), (19, 1));
    assert_eq!(j.span.offset, SEED.find("build-staging:").unwrap());
    assert_eq!(j.stage, "build");
    let image = j.image.as_ref().unwrap();
    assert_eq!(image.name, "docker-registry.samchu.com/node:10-alpine");
    assert_eq!((image.span.line, image.span.column), (4, 10));
    assert_eq!(j.cache.len(), 1);
    assert_eq!(j.cache[0].paths, ["node_modules/"]);
    assert_eq!(j.cache[0].key, "default");
    assert_eq!(j.cache[0].policy, CachePolicy::PullPush);
    assert_eq!(j.before_script, ["source build-vars.sh", "npm install"]);
    assert_eq!(
        j.script,
        [
            "npm run clean",
            "npm run build:${SERVER_ENV}",
            "cat dist/index.html",
            "tar cvf dist-${SERVER_ENV}.tar dist"
        ]
    );
    assert_eq!(
        j.artifacts.as_ref().unwrap().paths,
        ["dist-${SERVER_ENV}.tar"]
    );
    assert_eq!(vars(&j.variables), [("SERVER_ENV", "staging")]);
    assert_eq!(j.when, When::OnSuccess);
    assert!(!j.allow_failure);
    assert_eq!(j.needs, None);
    assert!(j.unsupported.is_empty());
}

#[test]
fn merge_key_is_applied_at_its_place_as_psych_does() {
    let p = ok("
.base: &base
  stage: build
  script: [from-base]
  variables: {A: base}
before:
  script: [mine]
  <<: *base
after:
  <<: *base
  variables: {B: mine}
");
    // Psych's `Hash#merge!` at the `<<` replaces `script` written before it.
    let before = job(&p, "before");
    assert_eq!(before.script, ["from-base"]);
    assert_eq!(before.stage, "build");
    let after = job(&p, "after");
    assert_eq!(after.script, ["from-base"]);
    // Merge keys replace whole values (no deep merge, unlike extends).
    assert_eq!(vars(&after.variables), [("B", "mine")]);
}

#[test]
fn merge_key_list_of_aliases_earlier_wins() {
    let p = ok("
.a: &a {stage: build, script: [a]}
.b: &b {stage: deploy, script: [b], when: manual}
j:
  <<: [*a, *b]
k:
  <<: [*b, *a]
  when: always
");
    let j = job(&p, "j");
    assert_eq!(
        (j.stage.as_str(), j.script.clone(), j.when),
        ("build", vec!["a".to_string()], When::Manual)
    );
    assert!(j.allow_failure, "manual jobs may fail by default");
    let k = job(&p, "k");
    assert_eq!((k.stage.as_str(), k.when), ("deploy", When::Always));
    assert!(!k.allow_failure);
}

#[test]
fn merge_key_nested_and_inside_sub_maps() {
    let p = ok("
.vars: &vars {A: '1', B: '2'}
.inner: &inner
  <<: {script: [inner]}
  stage: build
j:
  <<: *inner
  variables:
    <<: *vars
    B: override
");
    let j = job(&p, "j");
    assert_eq!(j.script, ["inner"]);
    assert_eq!(vars(&j.variables), [("A", "1"), ("B", "override")]);
}

#[test]
fn merge_key_wrong_type_is_an_error() {
    assert_eq!(
        brief("j:\n  <<: nope\n  script: [x]\n"),
        ["2:7: merge key `<<` needs a mapping or a list of mappings, found a string"]
    );
}

#[test]
fn alias_bomb_is_rejected() {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        yaml.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let errs = brief(&yaml);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("alias expansion"), "{errs:?}");
}

#[test]
fn extends_multi_level_deep_merges_maps_and_replaces_lists() {
    let p = ok("
.base:
  image: alpine
  variables: {A: base, B: base}
  script: [base]
  cache: {paths: [a], key: k}
.middle:
  extends: .base
  variables: {B: middle, C: middle}
  before_script: [mid]
other:
  script: [other]
  tags: [x]
job:
  extends: [.middle, other]
  variables: {C: job}
  cache: {paths: [b]}
");
    let j = job(&p, "job");
    assert_eq!(j.image.as_ref().unwrap().name, "alpine");
    assert_eq!(
        vars(&j.variables),
        [("A", "base"), ("B", "middle"), ("C", "job")]
    );
    assert_eq!(j.script, ["other"], "later extends win, lists replaced");
    assert_eq!(j.before_script, ["mid"]);
    assert_eq!(j.cache[0].paths, ["b"]);
    assert_eq!(j.cache[0].key, "k", "maps merge deeply");
    assert_eq!(j.tags, ["x"]);
    assert!(j.unsupported.is_empty());
    assert_eq!(
        p.jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(),
        ["other", "job"]
    );
}

#[test]
fn extends_cycle_unknown_and_depth() {
    let errs = brief(
        "
a:
  extends: b
  script: [x]
b:
  extends: a
c:
  extends: .tempalte
  script: [x]
.template: {script: [x]}
",
    );
    assert_eq!(
        errs,
        [
            "6:12: circular `extends`: a -> b -> a",
            "8:12: `c` extends unknown job `.tempalte`",
        ]
    );
    let e = errors("c:\n  extends: .tempalte\n.template: {}\n");
    assert_eq!(e[0].help.as_deref(), Some("did you mean `.template`?"));

    let mut deep = String::from(".t0: {script: [x]}\n");
    for i in 1..=12 {
        deep.push_str(&format!(".t{i}: {{extends: .t{}}}\n", i - 1));
    }
    deep.push_str("j: {extends: .t12}\n");
    let errs = brief(&deep);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("nested too deeply"), "{errs:?}");
    // 11 levels are fine.
    // Hidden templates are checked too (as GitLab does), so drop the two deepest.
    let ok_depth = deep
        .replace(".t12: {extends: .t11}\n", "")
        .replace(".t11: {extends: .t10}\n", "")
        .replace("j: {extends: .t12}", "j: {extends: .t10}");
    assert_eq!(job(&ok(&ok_depth), "j").script, ["x"]);
}

#[test]
fn default_is_inherited_unless_set() {
    let p = ok("
default:
  image: ruby:3
  before_script: [setup]
  cache: {paths: [vendor/]}
  retry: 2
a:
  script: [a]
b:
  image: python
  before_script: []
  cache: []
  script: [b]
");
    let a = job(&p, "a");
    assert_eq!(a.image.as_ref().unwrap().name, "ruby:3");
    assert_eq!(a.before_script, ["setup"]);
    assert_eq!(a.cache[0].paths, ["vendor/"]);
    assert_eq!(a.retry.max, 2);
    let b = job(&p, "b");
    assert_eq!(b.image.as_ref().unwrap().name, "python");
    assert!(b.before_script.is_empty());
    assert!(b.cache.is_empty());
    // Deprecated top-level keywords still act as defaults.
    let p = ok("image: node\nbefore_script: [npm ci]\nt:\n  script: [npm test]\n");
    assert_eq!(p.jobs[0].image.as_ref().unwrap().name, "node");
    assert_eq!(p.jobs[0].before_script, ["npm ci"]);
    // Both forms at once fail on GitLab (`Default#overwrite_entry` raises `InheritError`);
    // a null in `default:` lets the top-level one through.
    let errs = brief("image: node\ndefault:\n  image: ruby:3\nt:\n  script: [x]\n");
    assert_eq!(
        errs,
        [
            "1:1: `image` is set both at the top level and in `default:` (GitLab refuses it: \"image is defined in top-level and `default:` entry\")"
        ]
    );
    let p = ok("image: node\ndefault:\n  image:\nt:\n  script: [x]\n");
    assert_eq!(p.jobs[0].image.as_ref().unwrap().name, "node");
}

#[test]
fn default_rejects_job_only_keys() {
    let e = errors("default:\n  befor_script: [x]\n  stage: build\nj: {script: [x]}\n");
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].message, "`default` cannot set `befor_script`");
    assert_eq!(e[0].help.as_deref(), Some("did you mean `before_script`?"));
    assert_eq!(e[1].message, "`default` cannot set `stage`");
    assert!(
        e[1].help
            .as_deref()
            .unwrap()
            .starts_with("`default` can set: after_script")
    );
}

#[test]
fn hidden_jobs_are_not_run_and_stages_default() {
    let p = ok(".hidden:\n  script: [x]\n.list: &l [a, b]\nvisible:\n  script: *l\n");
    assert_eq!(p.jobs.len(), 1);
    assert_eq!(p.jobs[0].name, "visible");
    assert_eq!(p.jobs[0].stage, "test");
    assert_eq!(p.stages, [".pre", "build", "test", "deploy", ".post"]);
    assert_eq!(p.jobs[0].script, ["a", "b"]);
}

#[test]
fn no_visible_jobs_is_an_error() {
    assert_eq!(
        brief(".only-hidden: {script: [x]}\n"),
        ["1:1: the pipeline has no visible jobs (names starting with `.` are hidden templates)"]
    );
}

#[test]
fn stage_errors_name_the_stage_and_list_stages() {
    let e =
        errors("stages: [build, deploy]\na:\n  stage: deplyo\n  script: [x]\nb:\n  script: [x]\n");
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].message, "stage `deplyo` of job `a` is not in `stages`");
    let s = e[0].span.as_ref().unwrap();
    assert_eq!((s.line, s.column), (3, 10));
    assert_eq!(
        e[0].help.as_deref(),
        Some("did you mean `deploy`? (stages: .pre, build, deploy, .post)")
    );
    assert_eq!(
        e[1].message,
        "job `b` has no `stage:` and the default stage `test` is not in `stages`"
    );
    assert_eq!(
        job(&ok("stages: [a]\nj: {stage: .post, script: [x]}\n"), "j").stage,
        ".post"
    );
}

#[test]
fn unknown_keyword_did_you_mean_and_unsupported_keywords() {
    let e = errors("build:\n  scirpt: make\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].message, "job `build` has no script");
    assert_eq!(e[1].message, "unknown keyword `scirpt` in job `build`");
    assert_eq!(e[1].help.as_deref(), Some("did you mean `script`?"));
    let s = e[1].span.as_ref().unwrap();
    assert_eq!((s.line, s.column, s.offset, s.len), (2, 3, 9, 6));

    let p = ok(
        "j:\n  script: [x]\n  release: {tag_name: v1, description: x}\n  services: [db]\n  tags: [t]\n  timeout: 1h\n  pages: true\n",
    );
    let un: Vec<_> = p.jobs[0]
        .unsupported
        .iter()
        .map(|(k, s)| (k.as_str(), s.line))
        .collect();
    assert_eq!(un, [("release", 3), ("pages", 7)]);
    // Trigger jobs need no script; another project's pipeline cannot run offline.
    let p = ok("t:\n  trigger: other/project\n");
    assert_eq!(p.jobs[0].unsupported[0].0, "trigger:project");
    assert_eq!(p.jobs[0].trigger, None);
}

#[test]
fn many_errors_at_once_with_positions() {
    let yaml = "stages: [build]
include: other.yml
a:
  stage: build
  script: {x: 1}
  when: sometimes
b:
  stage: nope
  script: echo
  allow_failure: maybe
c: just a string
";
    assert_eq!(
        brief(yaml),
        [
            "2:10: included file `other.yml` does not exist",
            "5:11: `script` of job `a` must be a string or a list of strings, found a map",
            "6:9: `when` of job `a` must be one of on_success, on_failure, always, manual, delayed, found `sometimes`",
            "8:10: stage `nope` of job `b` is not in `stages`",
            "10:18: `allow_failure` of job `b` must be true or false, found `maybe`",
            "11:1: `c` is not a keyword, so it is a job, and a job must be a map, found a string",
        ]
    );
}

#[test]
fn yaml_syntax_error_has_position() {
    let e = errors("a:\n  script: [x\nb: 1\n");
    assert_eq!(e.len(), 1);
    let s = e[0].span.as_ref().unwrap();
    assert_eq!(s.file, FILE);
    assert!(e[0].message.starts_with("invalid YAML"), "{}", e[0].message);
    assert!(s.line >= 2, "{s:?}");
}

#[test]
fn variables_forms_keep_quoted_text() {
    let p = ok("
variables:
  VERSION: '1.10'
  COUNT: \"010\"
  FLAG: 'yes'
  QUOTED: 'it''s'
  RAW:
    value: $HOME/x
    expand: false
  CHOICE:
    value: a
    description: pick one
    options: [a, b]
j:
  script: [x]
  variables:
    NUM: 3
");
    assert_eq!(
        vars(&p.variables),
        [
            ("VERSION", "1.10"),
            ("COUNT", "010"),
            ("FLAG", "yes"),
            ("QUOTED", "it's"),
            ("RAW", "$HOME/x"),
            ("CHOICE", "a"),
        ]
    );
    assert!(p.variables[0].expand);
    assert!(!p.variables[4].expand);
    assert_eq!(p.variables[0].span.as_ref().unwrap().line, 3);
    assert_eq!(vars(&p.jobs[0].variables), [("NUM", "3")]);

    let errs =
        brief("variables:\n  A: [1]\n  B:\n  C: {value: x, expnd: false}\nj: {script: [x]}\n");
    assert_eq!(
        errs,
        [
            "2:6: variable `A` must be a string, a number or a map with `value`, found a list",
            "4:17: unknown key `expnd` in variable `C`",
        ]
    );
}

#[test]
fn scripts_string_list_nested_and_multiline() {
    let p = ok("
.setup: &setup [apt update, apt install -y curl]
j:
  before_script: echo one
  script:
    - *setup
    - |
      if true; then
        echo yes
      fi
    - 'yes'
    - 'quoted: colon'
  after_script: [[a, b], c]
");
    let j = job(&p, "j");
    assert_eq!(j.before_script, ["echo one"]);
    assert_eq!(
        j.script,
        [
            "apt update",
            "apt install -y curl",
            "if true; then\n  echo yes\nfi\n",
            "yes",
            "quoted: colon",
        ]
    );
    assert_eq!(j.after_script, ["a", "b", "c"]);
    let e = errors("j:\n  script:\n    - echo a: b\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        e[0].help.as_deref(),
        Some("a line containing `: ` is read as a map; quote the whole line")
    );
    // GitLab's `Commands` takes strings only: a plain `yes` or `1` is a boolean or a number
    // to Psych ("should be a string or a nested array of strings"), and so is refused.
    let errs = brief("j:\n  script: [echo, yes, 1]\n  before_script: true\n");
    assert_eq!(
        errs,
        [
            "2:18: `script` of job `j` must be a string or a list of strings, found `yes` (a boolean to GitLab's YAML reader)",
            "2:23: `script` of job `j` must be a string or a list of strings, found `1` (a number to GitLab's YAML reader)",
            "3:18: `before_script` of job `j` must be a string or a list of strings, found `true` (a boolean to GitLab's YAML reader)",
        ]
    );
    let errs = brief("j:\n  script: ' '\n");
    assert_eq!(
        errs,
        ["2:11: `script` of job `j` is empty (GitLab: \"can't be blank\")"]
    );
}

#[test]
fn image_cache_artifacts_needs_forms() {
    let p = ok("
stages: [build, test]
b:
  stage: build
  script: [x]
  image:
    name: alpine:3
    entrypoint: ['']
    pull_policy: [always, if-not-present]
  cache:
    - key: {files: [Cargo.lock]}
      paths: [target/]
      policy: pull
      when: always
    - key: second
      untracked: true
  artifacts:
    paths: [out/]
    exclude: [out/tmp]
    when: on_failure
    name: build-$CI_JOB_NAME
    expire_in: 1 week
    reports: {junit: r.xml}
  allow_failure:
    exit_codes: [3]
t:
  script: [x]
  needs: [u, {job: b, artifacts: true}, {job: gone, optional: true}]
  dependencies: [b]
u:
  stage: build
  script: [x]
  needs: []
");
    let b = job(&p, "b");
    let image = b.image.as_ref().unwrap();
    assert_eq!(image.name, "alpine:3");
    assert_eq!(image.entrypoint.as_deref(), Some(&[String::new()][..]));
    assert_eq!(
        image.pull_policy,
        [PullPolicy::Always, PullPolicy::IfNotPresent]
    );
    assert_eq!(b.cache.len(), 2);
    assert_eq!(b.cache[0].key, "", "no prefix");
    assert_eq!(b.cache[0].key_files, ["Cargo.lock"]);
    assert_eq!(b.cache[0].policy, CachePolicy::Pull);
    assert_eq!(b.cache[0].when, CacheWhen::Always);
    assert_eq!(b.cache[1].key, "second");
    assert!(b.cache[1].untracked);
    let a = b.artifacts.as_ref().unwrap();
    assert_eq!(a.exclude, ["out/tmp"]);
    assert_eq!(a.when, CacheWhen::OnFailure);
    assert_eq!(a.name.as_deref(), Some("build-$CI_JOB_NAME"));
    assert_eq!(a.expire_in.as_deref(), Some("1 week"));
    assert_eq!(a.reports_other, ["r.xml"]);
    assert!(!b.allow_failure, "only the listed exit codes may fail");
    assert_eq!(b.allow_failure_exit_codes, [3]);
    assert!(b.unsupported.is_empty(), "{:?}", b.unsupported);
    let t = job(&p, "t");
    let need_names: Vec<&str> = t.needs.iter().flatten().map(|n| n.job.as_str()).collect();
    assert_eq!(need_names, ["u", "b"]);
    assert_eq!(t.dependencies.as_deref(), Some(&["b".to_string()][..]));
    assert_eq!(job(&p, "u").needs, Some(vec![]));
}

#[test]
fn needs_are_listed_once_and_hold_every_dependency() {
    // `validate_needs_specification!`: "has the following needs duplicated"; `Job` (on
    // composed): with `needs:`, each of `dependencies:` "should be part of needs".
    let errs = brief(
        "
stages: [build, test]
a: {stage: build, script: [x]}
b: {stage: build, script: [x], parallel: {matrix: [{P: [x, y]}]}}
t:
  script: [x]
  needs: [a, {job: a, artifacts: false}]
u:
  script: [x]
  needs: [a]
  dependencies: [a, b]
r:
  script: [x]
  rules: [{needs: [a, a]}]
p:
  script: [x]
  needs: [{pipeline: $PARENT_PIPELINE_ID, job: gen}]
  dependencies: [a]
",
    );
    assert_eq!(
        errs,
        [
            "7:20: job `t` needs `a` twice (GitLab refuses duplicated needs)",
            "11:21: job `u` depends on `b`, which is not in its `needs:` (GitLab: \"should be part of needs\")",
            "14:23: `needs` in a rule of `rules` of job `r` names `a` twice (GitLab refuses duplicated needs)",
            "17:10: job `p` has `dependencies:`, but its `needs:` name only jobs of other pipelines (GitLab: \"needs corresponding to dependencies must be from the same pipeline\")",
        ]
    );
    // Beside a need in this pipeline, a parent pipeline's job may be needed too.
    ok("
a: {stage: build, script: [x]}
p:
  script: [x]
  needs: [a, {pipeline: $PARENT_PIPELINE_ID, job: gen}]
  dependencies: [a]
q:
  script: [x]
  needs: [{pipeline: $PARENT_PIPELINE_ID, job: gen}]
  dependencies: []
");
    // A need on a matrix instance names its job; without `needs:` any dependency goes.
    ok("
stages: [build, test]
a: {stage: build, script: [x]}
b: {stage: build, script: [x], parallel: {matrix: [{P: [x, y]}]}}
t:
  script: [x]
  needs: [{job: b, parallel: {matrix: [{P: x}]}}]
  dependencies: [b]
u:
  script: [x]
  dependencies: [a, b]
");
}

#[test]
fn needs_and_dependencies_must_exist_and_come_earlier() {
    let errs = brief(
        "
stages: [build, test]
a:
  stage: build
  script: [x]
  needs: [b]
c:
  stage: build
  script: [x]
  dependencies: [b]
b:
  stage: test
  script: [x]
  needs: [zzz]
",
    );
    assert_eq!(
        errs,
        [
            "6:11: job `a` needs `b`, which is in a later stage (`test`)",
            "10:18: job `c` depends on `b`, which is in a later stage (`test`)",
            "14:11: job `b` needs `zzz`, which is not a job",
        ]
    );
}

#[test]
fn needs_is_a_list_or_one_map_as_gitlab_s_entry_needs_takes_it() {
    // `Entry::Needs`: "can only be a Hash or an Array", "can not be an empty Hash".
    let errs = brief(
        "
a: {script: [x]}
b:
  script: [x]
  needs: a
c:
  script: [x]
  needs: {}
",
    );
    assert_eq!(
        errs,
        [
            "5:10: `needs` of job `b` must be a list or a map, found the single name `a` (GitLab refuses it)",
            "8:10: `needs` of job `c` cannot be an empty map (GitLab refuses it)",
        ]
    );
}

#[test]
fn a_lone_name_where_gitlab_wants_a_list_is_refused() {
    // `validates :dependencies, array_of_strings: true`; `Entry::Policy` (only, except): "has to
    // be either an array of conditions or a hash"; artifacts' `paths` and `exclude`, the cache's
    // `Entry::Paths` and `fallback_keys`: arrays of strings.
    let errs = brief(
        "
stages: [build, test]
a: {stage: build, script: [x]}
b:
  stage: test
  script: [x]
  dependencies: a
  only: main
  except: tags
  artifacts: {paths: dist, exclude: dist/*.map}
  cache: {paths: deps, fallback_keys: main}
",
    );
    assert_eq!(
        errs,
        [
            "7:17: `dependencies` of job `b` must be a list of strings, found a string",
            "8:9: `only` of job `b` must be a list of refs or a map, found a string (GitLab refuses it)",
            "9:11: `except` of job `b` must be a list of refs or a map, found a string (GitLab refuses it)",
            "10:22: `artifacts` of job `b` `paths` must be a list of strings, found a string",
            "10:37: `artifacts` of job `b` `exclude` must be a list of strings, found a string",
            "11:18: `cache` of job `b` `paths` must be a list of strings, found a string",
            "11:39: `cache` of job `b` `fallback_keys` must be a list of strings, found a string",
        ]
    );
    // rules: `changes` and its `paths` are lists; `exists` may be one glob, its `paths` not.
    // An image's `entrypoint`, a service's `entrypoint` and `command`, a variable's `options`:
    // arrays of strings.
    let errs = brief(
        "
r:
  script: [x]
  rules:
    - changes: src/*
    - changes: {paths: src/*}
    - exists: Makefile
    - exists: {paths: Makefile}
o:
  script: [x]
  only: {refs: main}
i:
  script: [x]
  image: {name: alpine, entrypoint: sh}
  services: [{name: postgres, command: postgres}]
variables:
  ENV: {value: dev, options: dev}
",
    );
    assert_eq!(
        errs,
        [
            "5:16: `changes` in a rule of `rules` of job `r` must be a list of strings, found a string",
            "6:24: `changes` in a rule of `rules` of job `r` `paths` must be a list of strings, found a string",
            "8:23: `exists` in a rule of `rules` of job `r` `paths` must be a list of strings, found a string",
            "11:16: `only` of job `o` `refs` must be a list of strings, found a string",
            "14:37: `image` of job `i` `entrypoint` must be a list of strings, found a string",
            "15:40: `services` of job `i` `command` must be a list of strings, found a string",
            "17:30: variable `ENV` `options` must be a list of strings, found a string",
        ]
    );
}

#[test]
fn only_and_except_maps_take_what_gitlab_s_complex_policy_takes() {
    // `Entry::Policy::ComplexPolicy`: `validates :config, presence: true`; `variables` and
    // `changes` with `array_of_strings` (no `{paths, compare_to}` map as in `rules:`);
    // `kubernetes` with `allowed_values: %w[active]`.
    let errs = brief(
        r#"
a:
  script: [x]
  only: {}
b:
  script: [x]
  except: {}
c:
  script: [x]
  only: {changes: {paths: [src/*]}}
d:
  script: [x]
  only: {variables: '$CI == "1"'}
e:
  script: [x]
  except: {kubernetes: inactive}
"#,
    );
    assert_eq!(
        errs,
        [
            "4:9: `only` of job `a` is an empty map (GitLab refuses it: \"can't be blank\")",
            "7:11: `except` of job `b` is an empty map (GitLab refuses it: \"can't be blank\")",
            "10:19: `only` of job `c` `changes` must be a list of strings, found a map",
            "13:21: `only` of job `d` `variables` must be a list of strings, found a string",
            "16:24: `except` of job `e` `kubernetes` must be one of active, found `inactive`",
        ]
    );
    // What GitLab takes loads.
    let l = load(
        r#"
a:
  script: [x]
  only: {changes: [src/*], variables: ['$CI == "1"'], refs: [main]}
  except: {refs: ~}
"#,
    )
    .expect("loads");
    let job = &l.pipeline.jobs[0];
    let only = job.only.as_ref().expect("only");
    assert_eq!(only.changes, ["src/*"]);
    assert_eq!(only.variables, [r#"$CI == "1""#]);
    assert_eq!(only.refs, ["main"]);
}

#[test]
fn patterns_are_read_in_re2_s_syntax_as_gitlab_reads_them() {
    // GitLab compiles `coverage:` and `=~` patterns with RE2, which reads a `{` that starts no
    // repetition as a brace and quotes `\Q...\E`; the regex crate refused both.
    let l = load(
        r#"
a:
  script: [x]
  coverage: '/"pct": {(\d+)/'
  rules:
    - if: $CI_COMMIT_MESSAGE =~ /{skip}/
      when: never
    - if: $V =~ /\Qa.b\E/
b:
  script: [x]
  coverage: //
c:
  script: [x]
  coverage: /total (\d+)%/i
"#,
    )
    .expect("loads");
    assert_eq!(
        job(&l.pipeline, "a").coverage.as_deref(),
        Some(r#""pct": {(\d+)"#)
    );
    // `Coverage#value` is the text without its first and last character.
    assert_eq!(job(&l.pipeline, "b").coverage.as_deref(), Some(""));
    assert_eq!(
        job(&l.pipeline, "c").coverage.as_deref(),
        Some(r"total (\d+)%/")
    );
    let warning = l
        .warnings
        .iter()
        .find(|w| w.message.contains("without the `i` flags"))
        .expect("a warning about the flags");
    assert_eq!(warning.span.as_ref().unwrap().line, 14);
    let rule = &job(&l.pipeline, "a").rules[0];
    let holds = |message: &str| {
        let message = message.to_string();
        let variables = move |name: &str| (name == "CI_COMMIT_MESSAGE").then(|| message.clone());
        let ctx = wharf_ci::RuleContext {
            variables: &variables,
            changed_files: &|_| None,
            project_files: &[],
            default_when: wharf_ci::When::OnSuccess,
        };
        wharf_ci::rule_holds(rule, &ctx)
    };
    assert_eq!((holds("docs {skip}"), holds("docs skip")), (true, false));
    // The other way round, RE2 refuses what the crate would take: a repeated repetition, a
    // count over 1000, a flag it does not have.
    let errs =
        brief("a:\n  script: [x]\n  coverage: '/a**/'\n  rules:\n    - if: $V =~ /(?x)a b/\n");
    assert_eq!(
        errs,
        [
            "3:13: `coverage` of job `a` is not a valid regular expression for GitLab (RE2): bad repetition operator: *",
            "5:17: invalid expression in `if` in a rule of `rules` of job `a`: invalid regular expression /(?x)a b/: invalid or unsupported Perl syntax: (?x",
        ]
    );
}

#[test]
fn workflow_rules_take_a_job_rule_s_allow_failure_and_needs_and_ignore_them() {
    // GitLab's `Workflow` lets them through (gitlab#436473); a rule list shared with jobs
    // through `!reference` carries them.
    let l = load(
        "workflow:\n  rules:\n    - if: $X\n      allow_failure: true\n      needs: [j]\n    - when: always\nj: {script: [x]}\n",
    )
    .expect("loads");
    let warned: Vec<(usize, &str)> = l
        .warnings
        .iter()
        .map(|w| (w.span.as_ref().unwrap().line, w.message.as_str()))
        .collect();
    assert_eq!(
        warned,
        [
            (
                4,
                "`allow_failure` has no effect in a rule of `workflow` (GitLab accepts it and ignores it)"
            ),
            (
                5,
                "`needs` has no effect in a rule of `workflow` (GitLab accepts it and ignores it)"
            ),
        ]
    );
}

#[test]
fn reports_take_gitlab_s_report_names_and_coverage_report_its_two_keys() {
    // `Reports::ALLOWED_KEYS`; `Reports::CoverageReport`: `coverage_format` (cobertura or
    // jacoco) and `path`, both present.
    let errs = brief(
        "j:\n  script: [x]\n  artifacts:\n    reports:\n      junitt: a.xml\n      coverage_report: {path: c.xml}\nk:\n  script: [x]\n  artifacts: {reports: {coverage_report: {coverage_format: lcov, path: c.xml}}}\n",
    );
    assert_eq!(
        errs,
        [
            "5:7: unknown key `junitt` in `artifacts` of job `j` `reports`",
            "6:24: `artifacts` of job `j` `reports` `coverage_report` needs `coverage_format` (cobertura or jacoco)",
            "9:60: `artifacts` of job `k` `reports` `coverage_report` `coverage_format` must be one of cobertura, jacoco, found `lcov`",
        ]
    );
    let p = ok(
        "j:\n  script: [x]\n  artifacts: {reports: {junit: a.xml, coverage_report: {coverage_format: jacoco, path: c.xml}}}\n",
    );
    assert_eq!(
        job(&p, "j").artifacts.as_ref().unwrap().reports_other,
        ["a.xml", "c.xml"]
    );
}

#[test]
fn environments_are_checked_as_gitlab_checks_them() {
    // `Environment`: `environment_name_regex`, `action` and `deployment_tier` among GitLab's;
    // `validate_on_stop_job!`: the stop job exists, has the same environment, `action: stop`.
    let errs = brief(
        "
a: {script: [x], environment: 'prod:eu'}
b: {script: [x], environment: {name: review/, action: deploy, deployment_tier: prod}}
c: {script: [x], environment: {name: review/$CI_COMMIT_REF_SLUG, on_stop: stop_c}}
stop_c: {script: [x], when: manual, environment: {name: review/$CI_COMMIT_REF_SLUG}}
d: {script: [x], environment: {name: staging, on_stop: nope}}
e: {script: [x], environment: {name: staging, on_stop: stop_e}}
stop_e: {script: [x], environment: {name: other, action: stop}}
",
    );
    assert_eq!(
        errs,
        [
            "2:31: `environment` of job `a` `prod:eu` is not a name GitLab takes: letters, digits and `_`, `-`, `.`, `$`, `{`, `}`, spaces and `/`, but no `/` first or last",
            "3:38: `environment` of job `b` `name` `review/` is not a name GitLab takes: letters, digits and `_`, `-`, `.`, `$`, `{`, `}`, spaces and `/`, but no `/` first or last",
            "3:55: `environment` of job `b` `action` must be one of start, stop, prepare, verify, access, found `deploy`",
            "3:80: `environment` of job `b` `deployment_tier` must be one of production, staging, testing, development, other, found `prod`",
            "4:75: `on_stop` job `stop_c` of job `c` needs to have `action: stop` in its environment (GitLab refuses the pipeline)",
            "6:56: `on_stop` job `nope` of job `d` is not defined (GitLab refuses the pipeline)",
            "7:56: `on_stop` job `stop_e` of job `e` has environment `other`, another name (GitLab refuses the pipeline)",
        ]
    );
    // `Entry::Kubernetes`: a map, not blank, of three strings; `namespace` and `agent` beside
    // `flux_resource_path`.
    let errs = brief(
        "
a: {script: [x], environment: {name: a, kubernetes: {}}}
b: {script: [x], environment: {name: b, kubernetes: {namespace: 1, cluster: x}}}
c: {script: [x], environment: {name: c, kubernetes: {flux_resource_path: p, agent: ''}}}
",
    );
    assert_eq!(
        errs,
        [
            "2:53: `environment` of job `a` `kubernetes` is empty (GitLab: \"can't be blank\")",
            "3:65: `environment` of job `b` `kubernetes` `namespace` must be a string, found `1` (a number to GitLab's YAML reader)",
            "3:68: unknown key `cluster` in `environment` of job `b` `kubernetes`",
            "4:53: `environment` of job `c` `kubernetes` `namespace` is needed beside `flux_resource_path` (GitLab: \"can't be blank\")",
            "4:53: `environment` of job `c` `kubernetes` `agent` is needed beside `flux_resource_path` (GitLab: \"can't be blank\")",
        ]
    );
    ok("
deploy:
  script: [x]
  environment:
    name: production
    kubernetes:
      namespace: prod
      agent: group/project:agent
      flux_resource_path: helm-controller/v1/namespaces/flux-system/helmreleases/app
review:
  script: [x]
  environment: {name: review, kubernetes: {namespace: review}}
");
    ok("
deploy:
  script: [x]
  environment: {name: 'review/${CI_COMMIT_REF_SLUG}', on_stop: stop, deployment_tier: staging}
stop:
  script: [x]
  when: manual
  environment: {name: 'review/${CI_COMMIT_REF_SLUG}', action: stop}
");
}

#[test]
fn cache_keys_and_counts_are_checked_as_gitlab_checks_them() {
    // `KeyValidator` (key and prefix): a string without `/` (also as `%2F`), not `.` or `..`;
    // `Files`: a list; `Caches::MULTIPLE_CACHE_LIMIT`: 4.
    let errs = brief(
        "
a:
  script: [x]
  cache:
    - {key: $CI_JOB_NAME/$CI_COMMIT_REF_SLUG, paths: [a]}
    - {key: 'x%2Fy', paths: [a]}
    - {key: .., paths: [a]}
    - {key: 1, paths: [a]}
    - {key: {files: Gemfile.lock}, paths: [a]}
",
    );
    assert_eq!(
        errs,
        [
            "5:5: `cache` of job `a` lists 5 caches; GitLab creates no more than 4",
            "5:13: `cache` of job `a` `key` `$CI_JOB_NAME/$CI_COMMIT_REF_SLUG` cannot contain the \"/\" character (GitLab refuses it)",
            "6:13: `cache` of job `a` `key` `x%2Fy` cannot contain the \"/\" character (GitLab refuses it)",
            "7:13: `cache` of job `a` `key` `..` cannot be \".\" or \"..\" (GitLab refuses it)",
            "8:13: `cache` of job `a` `key` must be a string, found `1` (a number to GitLab's YAML reader)",
            "9:21: `cache` of job `a` `key` `files` must be a list of strings, found a string",
        ]
    );
    let p = ok("a:\n  script: [x]\n  cache: {key: $CI_JOB_NAME-$CI_COMMIT_REF_SLUG, paths: [a]}\n");
    assert_eq!(
        job(&p, "a").cache[0].key,
        "$CI_JOB_NAME-$CI_COMMIT_REF_SLUG"
    );
}

#[test]
fn hidden_jobs_are_not_blank_and_tags_fewer_than_50() {
    // `Hidden`: presence (a null reads as `{}`); `Tags::TAGS_LIMIT`.
    let tags: Vec<String> = (0..50).map(|i| format!("t{i}")).collect();
    let errs = brief(&format!(
        ".empty:\n.also: {{}}\n.anchor: &v 1.0\nj:\n  script: [x]\n  tags: [{}]\n",
        tags.join(", ")
    ));
    assert_eq!(
        errs,
        [
            "1:1: hidden job `.empty` is empty (GitLab: \"config can't be blank\")",
            "2:1: hidden job `.also` is empty (GitLab: \"config can't be blank\")",
            "6:9: `tags` of job `j` lists 50 tags; GitLab takes fewer than 50",
        ]
    );
}

#[test]
fn variable_data_keys_depend_on_where_the_variable_is() {
    // `Variable::ComplexVariable` with `allowed_value_data`: the pipeline's variables take
    // `description` and `options` (whose list must hold the value), a job's `value` and
    // `expand` only, a rule's and a service's no map at all.
    let errs = brief(
        "
variables:
  ENV: {value: dev, options: [staging, prod]}
j:
  script: [x]
  variables:
    A: {value: a, description: the a}
  rules:
    - variables: {B: {value: b}, C: null}
  services:
    - name: db
      variables: {D: {value: d}}
",
    );
    assert_eq!(
        errs,
        [
            "3:30: variable `ENV` `options` must include its value `dev` (GitLab: \"value must be present in options\")",
            "7:19: variable `A` of job `j` cannot have `description` (GitLab: \"uses invalid data keys\"); only the pipeline's `variables:` can",
            "9:22: variable `B` of rule (`rules` of job `j`) must be a string (GitLab takes `value:` maps only in `variables:` of the pipeline and of jobs)",
            "9:37: variable `C` of rule (`rules` of job `j`) has no value (GitLab: \"must be a string\")",
            "12:22: variable `D` of service `db` must be a string (GitLab takes `value:` maps only in `variables:` of the pipeline and of jobs)",
        ]
    );
    ok(
        "variables:\n  ENV: {value: dev, options: [dev, prod], description: where}\nj:\n  script: [x]\n  variables: {A: {value: a, expand: false}}\n",
    );
}

#[test]
fn names_gitlab_types_as_strings_are_strings() {
    // `Imageable`: `validates :name, type: String, presence: true`; `Service`: `alias` a
    // String; `Processable`: `resource_group`; `Artifacts`: `name`; `Environment`: `name`.
    let errs = brief(
        "
a:
  script: [x]
  image: ''
  services: [{name: ' '}, {name: db, alias: 5}]
  resource_group: 123
  artifacts: {paths: [a], name: 1.0}
  environment: 1
",
    );
    assert_eq!(
        errs,
        [
            "4:10: `image` of job `a` is empty (GitLab: \"can't be blank\")",
            "5:21: `services` of job `a` `name` is empty (GitLab: \"can't be blank\")",
            "5:45: `services` of job `a` `alias` must be a string, found `5` (a number to GitLab's YAML reader)",
            "6:19: `resource_group` of job `a` must be a string, found `123` (a number to GitLab's YAML reader)",
            "7:33: `artifacts` of job `a` `name` must be a string, found `1.0` (a number to GitLab's YAML reader)",
            "8:16: `environment` of job `a` must be a string, found `1` (a number to GitLab's YAML reader)",
        ]
    );
}

#[test]
fn keywords_wharf_only_records_are_still_checked_as_gitlab_checks_them() {
    // `Release` (tag_name and description present), `Pages` (hash or boolean, its keys),
    // `IdToken` (`aud` only), `Hooks` (`pre_get_sources_script`), `Job` (`script` and `run`
    // exclusive; `publish` only in a pages job).
    let errs = brief(
        "
a:
  script: [x]
  release: {tag_name: v1}
  pages: {foo: 1}
  id_tokens: {T: {aud: x, foo: 1}}
  hooks: {pre_clone: [x]}
b:
  script: [x]
  run: [{name: s, script: x}]
c:
  script: [x]
  publish: public
",
    );
    assert_eq!(
        errs,
        [
            "4:12: `release` of job `a` needs `description` (GitLab: \"can't be blank\")",
            "5:11: unknown key `foo` in `pages` of job `a`",
            "6:27: unknown key `foo` in `id_tokens` of job `a` `T`",
            "7:11: unknown key `pre_clone` in `hooks` of job `a`",
            "10:3: job `b` has both `script` and `run` (GitLab refuses them together)",
            "13:3: `publish` of job `c` can only be used within a `pages` job (GitLab refuses it)",
        ]
    );
    ok(
        "pages:\n  script: [x]\n  publish: public\n  release: {tag_name: v1, description: d}\n  id_tokens: {T: {aud: [a, b]}}\n",
    );
}

#[test]
fn artifact_exposure_image_options_and_job_names_as_gitlab_checks_them() {
    // `Artifacts`: `access` values, not beside `public`; `expose_as` a word name with `paths`
    // free of `*`. `executor_opts.json`: `docker.user` a non-empty string. `PullPolicy`: a list
    // is present. `Processable`: a name of at most 255 characters.
    let long = "j".repeat(256);
    let errs = brief(&format!(
        "
a:
  script: [x]
  artifacts: {{paths: ['*.txt'], access: all, public: true, expose_as: 'my report!'}}
b:
  script: [x]
  image: {{name: alpine, docker: {{user: ''}}, pull_policy: []}}
{long}:
  script: [x]
c:
  script: [x]
  image: {{name: alpine, kubernetes: {{user: '', uid: 1}}}}
  services:
    - {{name: db, docker: {{platform: {long}}}, kubernetes: {{user: true}}}}
    - {{name: db, kubernetes: 1000}}
"
    ));
    assert_eq!(
        errs,
        [
            "4:23: `artifacts` of job `a` `paths` can't contain '*' when used with `expose_as` (GitLab refuses it)",
            "4:46: `artifacts` of job `a` has both `access` and `public` (GitLab refuses them together)",
            "4:71: `artifacts` of job `a` `expose_as` `my report!` can contain only letters, digits, '-', '_' and spaces (at most 100), as GitLab requires",
            "7:40: `image` of job `b` `docker` `user` is empty (GitLab's schema wants 1 to 255 characters)",
            "7:58: `image` of job `b` `pull_policy` is an empty list (GitLab: \"can't be blank\")",
            "8:1: job name `jjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjjj...` is 256 characters long, more than GitLab's 255",
            "12:44: `image` of job `c` `kubernetes` `user` is empty (GitLab's schema wants 1 to 255 characters)",
            "12:48: unknown key `uid` in `image` of job `c` `kubernetes`",
            "14:37: `services` of job `c` `docker` `platform` is 256 characters long, more than GitLab's schema's 64",
            "14:315: `services` of job `c` `kubernetes` `user` must be a user name or UID, found `true` (a boolean to GitLab's YAML reader)",
            "15:30: `services` of job `c` `kubernetes` must be a map, found a number",
        ]
    );
    ok(
        "a:\n  script: [x]\n  artifacts: {paths: [out/report.html], access: developer, expose_as: 'My report'}\n",
    );
    // `kubernetes: user` takes a UID or `UID:GID`; a null option is dropped (`compact`).
    ok("
a:
  script: [x]
  image: {name: alpine, kubernetes: {user: 1000}, docker: null}
  services:
    - {name: db, kubernetes: {user: '1000:1000'}, docker: {platform: linux/arm64, user: db}}
");
}

#[test]
fn durations_are_text_and_more_than_zero() {
    // `validate_duration`: `return false unless value.is_a?(String)`; ChronicDuration returns
    // nil for zero ("should be a duration").
    let errs = brief(
        "j:\n  script: [x]\n  timeout: 3600\n  artifacts: {paths: [a], expire_in: 7}\nk:\n  script: [x]\n  timeout: 0s\n",
    );
    assert_eq!(
        errs,
        [
            "3:12: `timeout` of job `j` must be a duration written as text, found `3600` (a number to GitLab's YAML reader)",
            "4:38: `artifacts` of job `j` `expire_in` must be a duration such as `1 week`, found `7` (a number to GitLab's YAML reader)",
            "7:12: `timeout` of job `k` is zero, which GitLab does not take as a duration, found `0s`",
        ]
    );
    let p = ok(
        "j:\n  script: [x]\n  timeout: 3600 seconds\n  artifacts: {paths: [a], expire_in: '7'}\n",
    );
    assert_eq!(job(&p, "j").timeout.map(|t| t.as_secs()), Some(3600));
}

#[test]
fn stages_is_a_list_and_removed_keywords_warn() {
    // `Stages`: `nested_array_of_strings` (a lone name is not an array).
    let errs = brief("stages: build\nj: {stage: build, script: [x]}\n");
    assert_eq!(
        errs,
        ["1:9: `stages` must be a list of stage names, found a string"]
    );
    // Older pipelines still write `types:` and `reports: cobertura:`, both removed in GitLab
    // 15.0: they load, with a warning that GitLab refuses them now (`lint --strict` fails).
    let l = load("types: [build]\nj:\n  stage: build\n  script: [x]\n  artifacts: {reports: {cobertura: c.xml}}\n")
        .expect("loads");
    let warned: Vec<&str> = l.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        warned,
        [
            "`types` was removed in GitLab 15.0, which reads it as a job now and refuses it",
            "`artifacts` of job `j` `reports` `cobertura` was removed in GitLab 15.0, which refuses it now",
        ]
    );
    assert_eq!(l.pipeline.stages, [".pre", "build", ".post"]);
}

#[test]
fn an_empty_allow_failure_map_is_a_job_that_may_not_fail() {
    // `AllowFailure`: no key is required, and `exit_codes` may be null.
    for yaml in [
        "j: {script: [x], allow_failure: {}}\n",
        "j: {script: [x], allow_failure: {exit_codes: null}}\n",
    ] {
        let l = load(yaml).expect(yaml);
        let j = job(&l.pipeline, "j");
        assert!(
            !j.allow_failure && j.allow_failure_exit_codes.is_empty(),
            "{yaml}"
        );
    }
}

#[test]
fn image_and_cache_type_errors() {
    let errs = brief(
        "
j:
  script: [x]
  image: {nme: alpine}
  cache: {paths: [a], policy: sometimes}
  artifacts: [a]
",
    );
    assert_eq!(
        errs,
        [
            "4:10: `image` of job `j` has no `name`",
            "4:11: unknown key `nme` in `image` of job `j`",
            "5:31: `cache` of job `j` `policy` must be one of pull-push, pull, push, found `sometimes`",
            "6:14: `artifacts` of job `j` must be a map, found a list",
        ]
    );
}

#[test]
fn missing_file_is_reported() {
    let mem = Mem(HashMap::new());
    let e = load_pipeline("nope.yml", &mem).unwrap_err();
    assert!(e.0[0].message.starts_with("cannot read nope.yml"));
}

#[test]
fn workflow_is_loaded() {
    let l = load("workflow:\n  rules: [{when: always}]\nj: {script: [x]}\n").unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let w = l.pipeline.workflow.unwrap();
    assert_eq!(w.rules[0].when, Some(When::Always));
}

#[test]
fn render_points_at_the_column() {
    let yaml = "build:\n  scirpt: make\n  script: [x]\n";
    let e = errors(yaml);
    assert_eq!(
        e[0].render(yaml),
        ".gitlab-ci.yml:2:3: error: unknown keyword `scirpt` in job `build`
  |
2 |   scirpt: make
  |   ^^^^^^
  = help: did you mean `script`?"
    );
    let no_span = Diagnostic::error(None, "boom");
    assert_eq!(no_span.render(""), "error: boom");
}

#[test]
fn variables_file() {
    let vars = parse_variables_yaml(
        "vars.yml",
        "TOKEN: abc\nNUM: 1.10\nKEY:\n  value: secret\n  masked: true\nCERT: {value: pem, type: file}\n",
    )
    .unwrap();
    let got: Vec<_> = vars
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str(), v.masked, v.file))
        .collect();
    assert_eq!(
        got,
        [
            ("TOKEN", "abc", false, false),
            ("NUM", "1.10", false, false),
            ("KEY", "secret", true, false),
            ("CERT", "pem", false, true),
        ]
    );
    assert!(parse_variables_yaml("v", "").unwrap().is_empty());
    let e = parse_variables_yaml("v.yml", "A: [1]\nB: {value: x, type: dir, maskd: true}\n")
        .unwrap_err();
    let got: Vec<_> =
        e.0.iter()
            .map(|d| {
                let s = d.span.as_ref().unwrap();
                format!("{}:{}:{}: {}", s.file, s.line, s.column, d.message)
            })
            .collect();
    assert_eq!(
        got,
        [
            "v.yml:1:4: variable `A` must be a string, a number or a map with `value`, found a list",
            "v.yml:2:21: variable `B` `type` must be `file` or `env_var`, found `dir`",
            "v.yml:2:26: unknown key `maskd` in variable `B`",
        ]
    );
    assert!(format!("{:?}", vars[2]).contains("redacted"));
}

#[test]
fn headers_and_non_map_documents_are_errors() {
    assert_eq!(
        brief("spec:\n  inputs:\n    x:\n---\nj: {script: [x]}\n"),
        ["3:5: input `x` of the pipeline has no `default`, and wharf passes no pipeline inputs"]
    );
    assert_eq!(
        brief("a: 1\n---\nj: {script: [x]}\n"),
        ["3:1: the file has more than one YAML document"]
    );
    assert_eq!(
        brief(""),
        ["1:1: a pipeline must be a map of keywords and jobs, found nothing"]
    );
    assert_eq!(
        brief("- a\n"),
        ["1:1: a pipeline must be a map of keywords and jobs, found a list"]
    );
}

#[test]
fn diagnostics_render_all_with_sources() {
    let yaml = "a:\n  script: [x]\n  stage: nope\nb:\n  when: later\n  script: [x]\n";
    let e = load(yaml).unwrap_err();
    let out = e.render(&|f| (f == FILE).then(|| yaml.to_string()));
    assert_eq!(
        out,
        ".gitlab-ci.yml:3:10: error: stage `nope` of job `a` is not in `stages`
  |
3 |   stage: nope
  |          ^^^^
  = help: add it to `stages:` (stages: .pre, build, test, deploy, .post)

.gitlab-ci.yml:5:9: error: `when` of job `b` must be one of on_success, on_failure, always, manual, delayed, found `later`
  |
5 |   when: later
  |         ^^^^^"
    );
}

#[test]
fn realistic_pipeline_with_unsupported_keywords_loads() {
    let p = ok("
stages: [lint, build, deploy]
variables:
  DOCKER_DRIVER: overlay2
  GIT_DEPTH: 10
workflow:
  rules:
    - if: $CI_COMMIT_BRANCH
default:
  image: rust:1.85
  interruptible: true
  tags: [docker]
.rust: &rust
  before_script: [rustc --version]
  cache:
    key: $CI_COMMIT_REF_SLUG
    paths: [target/]
lint:
  <<: *rust
  stage: lint
  script: cargo clippy
  only: [merge_requests]
  except: {variables: [$SKIP]}
build:
  extends: .rust
  stage: build
  script: [cargo build --release]
  artifacts: {paths: [target/release/app], expire_in: 1 day}
  parallel: 2
  retry: {max: 2, when: runner_system_failure}
  coverage: '/\\d+%/'
deploy:
  stage: deploy
  image: {name: alpine, entrypoint: ['']}
  script: [./deploy.sh]
  environment: {name: production, url: https://example.com}
  when: manual
  resource_group: prod
  needs: [build]
  release: {tag_name: v1, description: x}
  id_tokens: {T: {aud: x}}
  secrets: {S: {vault: a/b@c}}
  inherit: {default: false}
");
    assert_eq!(p.jobs.len(), 4);
    assert_eq!(p.stages, [".pre", "lint", "build", "deploy", ".post"]);
    let build = job(&p, "build 1/2");
    assert_eq!(build.cache[0].key, "$CI_COMMIT_REF_SLUG");
    assert!(build.unsupported.is_empty(), "{:?}", build.unsupported);
    assert_eq!(build.retry.max, 2);
    assert_eq!(build.retry.when, ["runner_system_failure"]);
    assert_eq!(build.coverage.as_deref(), Some("\\d+%"));
    assert!(build.interruptible);
    assert_eq!(build.tags, ["docker"]);
    let deploy = job(&p, "deploy");
    assert_eq!(deploy.environment.as_deref(), Some("production"));
    assert_eq!(deploy.resource_group.as_deref(), Some("prod"));
    assert!(!deploy.interruptible, "inherit: default: false");
    assert!(deploy.tags.is_empty());
    assert_eq!(
        deploy
            .needs
            .iter()
            .flatten()
            .map(|n| n.job.as_str())
            .collect::<Vec<_>>(),
        ["build 1/2", "build 2/2"]
    );
    let un: Vec<_> = deploy.unsupported.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(un, ["release", "id_tokens", "secrets"]);
    assert!(deploy.allow_failure);
    assert_eq!(deploy.image.as_ref().unwrap().name, "alpine");
}

#[test]
fn crlf_line_ends() {
    // Duplicate keys are not errors (GitLab's Psych keeps the last): tests/lenient.rs.
    let e = brief("j:\r\n  script: [a]\r\n  stage: nope\r\n");
    assert_eq!(e, ["3:10: stage `nope` of job `j` is not in `stages`"]);
}

// ---------------------------------------------------------------------------------------------
// include

#[test]
fn include_forms_and_merge_order() {
    // Bare string, `local:` map (leading `/` allowed), list; a later include wins over an earlier
    // one; the including file wins over both; maps deep-merge, lists are replaced.
    let p = ok_files(
        &[
            (
                FILE,
                "include:\n  - a.yml\n  - local: /b.yml\nvariables: {MAIN: m, SHARED: main}\nshared:\n  script: [main]\n",
            ),
            (
                "a.yml",
                "variables: {A: a, SHARED: a}\nshared:\n  stage: build\n  script: [a]\n  variables: {X: a, Y: a}\nfrom_a:\n  script: [a]\n",
            ),
            ("b.yml", "shared:\n  variables: {Y: b}\n  script: [b]\n"),
        ],
        &[],
    );
    assert_eq!(
        vars(&p.variables),
        [("A", "a"), ("SHARED", "main"), ("MAIN", "m")]
    );
    let shared = job(&p, "shared");
    assert_eq!(shared.script, ["main"]);
    assert_eq!(shared.stage, "build");
    assert_eq!(vars(&shared.variables), [("X", "a"), ("Y", "b")]);
    // Included jobs come first, as in GitLab's merged hash.
    assert_eq!(names(&p), ["shared", "from_a"]);
    // Spans of included content carry the included file's path.
    let from_a = job(&p, "from_a");
    assert_eq!(from_a.span.to_string(), "a.yml:6:1");
    assert_eq!(shared.variables[0].span.as_ref().unwrap().file, "a.yml");
}

#[test]
fn include_wildcards_follow_gitlab() {
    let files = [
        (FILE, ""),
        ("configs/a.yml", "ja: {script: [a]}\n"),
        ("configs/b.yml", "jb: {script: [b]}\n"),
        ("configs/sub/c.yml", "jc: {script: [c]}\n"),
        ("configs/d.yaml", "jd: {script: [d]}\n"),
    ];
    let cases: &[(&str, &[&str])] = &[
        ("include: 'configs/*.yml'\n", &["ja", "jb"]),
        ("include: 'configs/**.yml'\n", &["ja", "jb", "jc"]),
        ("include: 'configs/**/*.yml'\n", &["jc"]),
        ("include: {local: 'configs/*.yaml'}\n", &["jd"]),
    ];
    for (main, want) in cases {
        let mut f = files;
        f[0].1 = main;
        assert_eq!(names(&ok_files(&f, &[])), *want, "{main}");
    }
    // No match is a warning (GitLab silently includes nothing).
    let mut f = files;
    f[0].1 = "include: 'none/*.yml'\nj: {script: [x]}\n";
    let loaded = load_files(&f, &[]).unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].message.contains("matches no files"));
}

#[test]
fn include_rules_if_exists_when() {
    let inc = ("inc.yml", "inc: {script: [x]}\n");
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: &[Case] = &[
        ("[{if: '$FLAG == \"yes\"'}]", &[("FLAG", "yes")], true),
        ("[{if: '$FLAG == \"yes\"'}]", &[("FLAG", "no")], false),
        ("[{if: '$FLAG'}]", &[], false),
        (
            "[{if: '$FLAG', when: never}, {when: always}]",
            &[("FLAG", "1")],
            false,
        ),
        ("[{if: '$FLAG', when: never}, {when: always}]", &[], true),
        ("[{exists: [inc.yml]}]", &[], true),
        ("[{exists: ['**/*.md']}]", &[], false),
        ("[{exists: {paths: ['*.yml']}}]", &[], true),
        ("[{if: '$A', exists: [inc.yml]}]", &[("A", "1")], true),
        ("[{if: '$A', exists: [nope.yml]}]", &[("A", "1")], false),
    ];
    for (rules, vars, included) in cases {
        let main =
            format!("include:\n  - local: inc.yml\n    rules: {rules}\nmain: {{script: [x]}}\n");
        let p = ok_files(&[(FILE, &main), inc], vars);
        assert_eq!(
            names(&p).contains(&"inc"),
            *included,
            "{rules} with {vars:?}"
        );
    }
    // `$VAR` in include paths comes from the load-time variables.
    let p = ok_files(
        &[
            (FILE, "include: 'ci/$KIND.yml'\n"),
            ("ci/fast.yml", "fast: {script: [x]}\n"),
        ],
        &[("KIND", "fast")],
    );
    assert_eq!(names(&p), ["fast"]);
    assert_eq!(
        brief_files(&[(
            FILE,
            "include:\n  - local: a.yml\n    rules: [{when: manual}]\nj: {script: [x]}\n"
        )]),
        [".gitlab-ci.yml:3:20: `when` in an `include` rule must be `always` or `never`"]
    );
}

#[test]
fn include_nesting_duplicates_cycles_and_limits() {
    // Nested includes; a file included twice (diamond) is merged once.
    let p = ok_files(
        &[
            (FILE, "include: [b.yml, c.yml]\n"),
            ("b.yml", "include: d.yml\nb: {script: [b]}\n"),
            ("c.yml", "include: d.yml\nc: {script: [c]}\n"),
            ("d.yml", "d: {script: [d]}\n"),
        ],
        &[],
    );
    assert_eq!(names(&p), ["d", "b", "c"]);

    assert_eq!(
        brief_files(&[
            (FILE, "include: a.yml\nj: {script: [x]}\n"),
            ("a.yml", "include: b.yml\n"),
            ("b.yml", "include: a.yml\n"),
        ]),
        ["b.yml:1:10: circular `include`: a.yml -> b.yml -> a.yml"]
    );
    assert_eq!(
        brief_files(&[(FILE, "include: .gitlab-ci.yml\nj: {script: [x]}\n")]),
        [".gitlab-ci.yml:1:10: circular `include`: .gitlab-ci.yml -> .gitlab-ci.yml"]
    );

    // Depth: a chain of 101 nested files is one too many.
    let mut files: Vec<(String, String)> = vec![(FILE.into(), "include: f1.yml\n".into())];
    for i in 1..=101 {
        files.push((
            format!("f{i}.yml"),
            format!("include: f{}.yml\nj{i}: {{script: [x]}}\n", i + 1),
        ));
    }
    files.push(("f102.yml".into(), "last: {script: [x]}\n".into()));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let errs = brief_files(&refs);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("f100.yml:1:10: includes are nested more than 100 levels deep"),
        "{errs:?}"
    );
    // 100 levels are fine.
    let mut ok100 = refs.clone();
    ok100.truncate(101);
    ok100[100].1 = "j100: {script: [x]}\n";
    assert_eq!(ok_files(&ok100, &[]).jobs.len(), 100);

    // Total: 151 includes (repeats count) is over GitLab's 150.
    let many: String = (0..151).map(|_| "  - x.yml\n").collect();
    let main = format!("include:\n{many}");
    let errs = brief_files(&[(FILE, &main), ("x.yml", "x: {script: [x]}\n")]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("more than 150 files are included"),
        "{errs:?}"
    );
}

#[test]
fn an_include_s_other_keys_and_null_rules_are_ignored_as_gitlab_ignores_them() {
    // `External::Processor` drops `include:` once its files are merged, so `Entry::Include`'s
    // key check never runs on it; `External::Rules` includes a file whose `rules:` is null.
    let main = "include:
  - local: a.yml
    rules:
  - local: b.yml
    ruls: [{if: $X}]
";
    let loaded = load_files(
        &[
            (FILE, main),
            ("a.yml", "a: {script: [x]}\n"),
            ("b.yml", "b: {script: [x]}\n"),
        ],
        &[],
    )
    .expect("loads");
    assert_eq!(names(&loaded.pipeline), ["a", "b"]);
    let warning = loaded
        .warnings
        .iter()
        .find(|w| w.message.contains("unknown key `ruls` in `include`"))
        .expect("a warning for the typo");
    assert_eq!(warning.help.as_deref(), Some("did you mean `rules`?"));
}

#[test]
fn include_rules_gitlab_refuses_are_refused() {
    // `Include::Rules` and its rules: presence; `changes:` a list or a map.
    let main = "include:
  - local: a.yml
    rules: []
  - local: b.yml
    rules: [{}]
  - local: c.yml
    rules: [{changes: c.yml}]
j: {script: [x]}
";
    let files = [
        (FILE, main),
        ("a.yml", "a: {script: [x]}\n"),
        ("b.yml", "b: {script: [x]}\n"),
        ("c.yml", "c: {script: [x]}\n"),
    ];
    assert_eq!(
        brief_files(&files),
        [
            ".gitlab-ci.yml:3:12: `include` `rules` can't be blank (GitLab refuses the pipeline)",
            ".gitlab-ci.yml:5:13: an `include` rule is empty (GitLab: \"can't be blank\")",
            ".gitlab-ci.yml:7:23: `changes` in an `include` rule must be a list of paths or a map with `paths`, found a string",
        ]
    );
}

#[test]
fn include_offline_kinds_and_bad_files_are_errors_at_their_place() {
    let main = "include:
  - remote: https://example.com/ci.yml
  - project: group/project
    file: /ci.yml
  - template: Auto-DevOps.gitlab-ci.yml
  - component: gitlab.com/org/comp@1.0
  - https://example.com/other.yml
  - local: missing.yml
  - local: notes.txt
  - local: empty.yml
  - local: list.yml
  - locl: x.yml
j: {script: [x]}
";
    let errs = brief_files(&[
        (FILE, main),
        ("empty.yml", "# nothing\n"),
        ("list.yml", "- a\n"),
    ]);
    assert_eq!(
        errs,
        [
            ".gitlab-ci.yml:2:13: `include:remote` `https://example.com/ci.yml` is not available offline",
            ".gitlab-ci.yml:4:11: `include:project` `group/project` file `ci.yml` is not available offline",
            ".gitlab-ci.yml:5:15: `include:template` `Auto-DevOps.gitlab-ci.yml` is not available offline",
            ".gitlab-ci.yml:6:16: `include:component` `gitlab.com/org/comp@1.0` is not available offline",
            ".gitlab-ci.yml:7:5: `include:remote` `https://example.com/other.yml` is not available offline",
            ".gitlab-ci.yml:8:12: included file `missing.yml` does not exist",
            ".gitlab-ci.yml:9:12: included file `notes.txt` does not have a YAML extension (.yml or .yaml)",
            ".gitlab-ci.yml:10:12: included file `empty.yml` is empty",
            ".gitlab-ci.yml:12:5: `include` needs one of `local`, `remote`, `project`, `template` or `component`",
            "list.yml:1:1: included file `list.yml` must be a map of keywords and jobs, found a list",
        ]
    );
    // Errors inside an included file point into it, and render with its source.
    let files = [
        (FILE, "include: a.yml\n"),
        ("a.yml", "j:\n  scirpt: [x]\n  script: [x]\n"),
    ];
    let e = load_files(&files, &[]).unwrap_err();
    let out = e.render(&|f| {
        files
            .iter()
            .find(|(n, _)| *n == f)
            .map(|(_, t)| t.to_string())
    });
    assert!(
        out.starts_with(
            "a.yml:2:3: error: unknown keyword `scirpt` in job `j`\n  |\n2 |   scirpt: [x]"
        ),
        "{out}"
    );
    // A loader that cannot list files makes wildcards an error, not a silent no-op.
    let plain = Mem(HashMap::from([(
        FILE.to_string(),
        "include: '*.yml'\nj: {script: [x]}\n".to_string(),
    )]));
    struct NoList(Mem);
    impl Loader for NoList {
        fn load(&self, path: &str) -> Result<String, std::io::Error> {
            self.0.load(path)
        }
    }
    let e = load_pipeline(FILE, &NoList(plain)).unwrap_err();
    assert!(
        e.0[0]
            .message
            .contains("wildcards need the list of project files"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// !reference

#[test]
fn references_at_any_depth_after_extends() {
    let p = ok("
.setup:
  before_script: [setup-1, setup-2]
  variables: {URL: http://x, PORT: '80'}
.rules:
  rules:
    - if: $A
.base:
  script: [base]
.ext:
  extends: .base
j:
  before_script:
    - !reference [.setup, before_script]
    - own
  script:
    - !reference [.ext, script]
  variables:
    URL: !reference [.setup, variables, URL]
    ALL_PORT: !reference [.setup, variables, PORT]
  rules:
    - !reference [.rules, rules]
    - when: manual
k:
  variables: !reference [.setup, variables]
  script: !reference [j, before_script]
");
    let j = job(&p, "j");
    // A referenced list inside a script list is flattened.
    assert_eq!(j.before_script, ["setup-1", "setup-2", "own"]);
    // `.ext` is looked up with its `extends` applied.
    assert_eq!(j.script, ["base"]);
    assert_eq!(
        vars(&j.variables),
        [("URL", "http://x"), ("ALL_PORT", "80")]
    );
    let k = job(&p, "k");
    assert_eq!(vars(&k.variables), [("URL", "http://x"), ("PORT", "80")]);
    // A reference to a value that holds references resolves them too.
    assert_eq!(k.script, ["setup-1", "setup-2", "own"]);
    // References in `rules` are spliced into the list (checked through the merged YAML).
    let merged = merged_yaml(
        FILE,
        &mem(&[(
            FILE,
            "
.r: {rules: [{if: $A}, {if: $B}]}
j:
  script: [x]
  rules:
    - !reference [.r, rules]
    - when: manual
",
        )]),
        &LoadOptions::default(),
    )
    .unwrap();
    assert!(
        merged.contains("  rules:\n    - if: $A\n    - if: $B\n    - when: manual\n"),
        "{merged}"
    );
}

#[test]
fn reference_errors() {
    let cases: &[(&str, &str)] = &[
        (
            ".a: {script: [x]}\nj:\n  script: !reference [.b, script]\n",
            "3:11: `!reference [.b, script]`: there is no job or keyword `.b`",
        ),
        (
            ".a: {script: [x]}\nj:\n  script: !reference [.a, scirpt]\n",
            "3:11: `!reference [.a, scirpt]`: `.a` has no `scirpt`",
        ),
        (
            ".a: {script: x}\nj:\n  script: !reference [.a, script, deeper]\n",
            "3:11: `!reference [.a, script, deeper]`: `.a.script` is a string, not a map with `deeper`",
        ),
        (
            "j:\n  script: !reference .a\n",
            "2:11: `!reference` needs a list of keys, found a string",
        ),
        (
            ".a: {script: !reference [.b, script]}\n.b: {script: !reference [.a, script]}\nj:\n  script: !reference [.a, script]\n",
            "2:14: circular `!reference`: [.a, script] -> [.b, script] -> [.a, script]",
        ),
    ];
    for (yaml, want) in cases {
        let errs = brief(yaml);
        assert!(errs.iter().any(|e| e == want), "{yaml}\n{errs:#?}");
    }
    let e = errors(".a: {script: [x]}\nj:\n  script: !reference [.a, scirpt]\n");
    let e = e.iter().find(|e| e.message.contains("scirpt")).unwrap();
    assert_eq!(e.help.as_deref(), Some("did you mean `script`?"));

    // Nesting: 10 references deep are fine, 11 are not.
    let chain = |n: usize| {
        let mut y = String::from(".r0: {script: [deep]}\n");
        for i in 1..=n {
            y.push_str(&format!(
                ".r{i}: {{script: !reference [.r{}, script]}}\n",
                i - 1
            ));
        }
        y.push_str(&format!("j:\n  script: !reference [.r{n}, script]\n"));
        y
    };
    assert_eq!(job(&ok(&chain(9)), "j").script, ["deep"]);
    let errs = brief(&chain(10));
    assert!(
        errs.iter()
            .any(|e| e.contains("nested more than 10 references deep")),
        "{errs:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// inherit

#[test]
fn inherit_default_and_variables() {
    let head = "
variables: {G1: a, G2: b}
default:
  image: ruby
  before_script: [setup]
  tags: [t]
";
    let cases: &[(&str, bool, bool, Option<&[&str]>)] = &[
        // (inherit, has image, has before_script, inherit_variables)
        ("", true, true, None),
        ("inherit: {default: false}", false, false, None),
        (
            "inherit: {default: true, variables: false}",
            true,
            true,
            Some(&[]),
        ),
        (
            "inherit: {default: [image], variables: [G2]}",
            true,
            false,
            Some(&["G2"]),
        ),
    ];
    for (inherit, image, before, inherited) in cases {
        let p = ok(&format!("{head}j:\n  script: [x]\n  {inherit}\n"));
        let j = &p.jobs[0];
        assert_eq!(j.image.is_some(), *image, "{inherit}");
        assert_eq!(!j.before_script.is_empty(), *before, "{inherit}");
        assert_eq!(
            j.inherit_variables,
            inherited.map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
            "{inherit}"
        );
    }
    assert_eq!(
        brief("j:\n  script: [x]\n  inherit: {default: [imag], variabels: false}\n"),
        [
            "3:23: `inherit` of job `j` `default`: `imag` cannot be set by `default`",
            "3:30: unknown key `variabels` in `inherit` of job `j`",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// parallel

#[test]
fn parallel_count_and_matrix_names_variables_and_needs() {
    let p = ok("
stages: [build, test]
t:
  stage: build
  script: [x]
  parallel: 3
m:
  stage: build
  script: [x]
  variables: {PROVIDER: own, KEEP: k}
  parallel:
    matrix:
      - PROVIDER: aws
        STACK: [monitoring, app1]
      - PROVIDER: [gcp, vultr]
        STACK: [data, processing]
      - VERSION: 010
after:
  stage: test
  script: [x]
  needs: [t, {job: m, artifacts: false}]
  dependencies: [t]
");
    assert_eq!(
        names(&p),
        [
            "t 1/3",
            "t 2/3",
            "t 3/3",
            "m: [aws, monitoring]",
            "m: [aws, app1]",
            "m: [gcp, data]",
            "m: [gcp, processing]",
            "m: [vultr, data]",
            "m: [vultr, processing]",
            "m: [8]",
            "after",
        ]
    );
    let t2 = job(&p, "t 2/3");
    assert_eq!(
        t2.parallel,
        Some(ParallelInstance {
            base_name: "t".into(),
            index: 2,
            total: 3
        })
    );
    let m = job(&p, "m: [gcp, processing]");
    assert_eq!(m.parallel.as_ref().unwrap().index, 4);
    assert_eq!(m.parallel.as_ref().unwrap().total, 7);
    assert_eq!(
        vars(&m.variables),
        [("KEEP", "k"), ("PROVIDER", "gcp"), ("STACK", "processing")]
    );
    let after = job(&p, "after");
    let needs: Vec<(&str, bool)> = after
        .needs
        .iter()
        .flatten()
        .map(|n| (n.job.as_str(), n.artifacts))
        .collect();
    assert_eq!(needs.len(), 10);
    assert_eq!(needs[0], ("t 1/3", true));
    assert_eq!(needs[3], ("m: [aws, monitoring]", false));
    assert_eq!(
        after.dependencies.as_deref().unwrap(),
        ["t 1/3", "t 2/3", "t 3/3"]
    );

    let cases: &[(&str, &str)] = &[
        ("parallel: 0", "must be between 1 and 200, found 0"),
        ("parallel: 201", "must be between 1 and 200, found 201"),
        ("parallel: many", "must be an integer, found `many`"),
        (
            "parallel: {matrix: [{A: [{x: 1}]}]}",
            "values must be strings, found a map",
        ),
    ];
    for (yaml, want) in cases {
        let errs = brief(&format!("j:\n  script: [x]\n  {yaml}\n"));
        assert!(errs.iter().any(|e| e.contains(want)), "{yaml}: {errs:?}");
    }
    // `Product::Matrix` takes `[]` (`array_of_hashes`); the normalizer then makes no job.
    let l =
        load("j:\n  script: [x]\n  parallel: {matrix: []}\nk:\n  script: [x]\n").expect("loads");
    assert_eq!(names(&l.pipeline), ["k"]);
    assert!(
        l.warnings[0]
            .message
            .contains("makes no jobs, so the job is not created")
    );
    let big: Vec<String> = (0..15).map(|i| i.to_string()).collect();
    let yaml = format!(
        "j:\n  script: [x]\n  parallel:\n    matrix:\n      - A: [{0}]\n        B: [{0}]\n",
        big.join(", ")
    );
    let errs = brief(&yaml);
    assert!(errs[0].contains("makes more than 200 jobs"), "{errs:?}");
}

#[test]
fn needs_parallel_matrix_names_specific_instances() {
    let p = ok("
stages: [build, test]
linux:build:
  stage: build
  script: [x]
  parallel:
    matrix:
      - PROVIDER: aws
        STACK: [monitoring, app1, app2]
linux:rspec:
  stage: test
  script: [x]
  needs:
    - job: linux:build
      artifacts: false
      parallel:
        matrix:
          - PROVIDER: aws
            STACK: [app1, app2]
other:
  stage: test
  script: [x]
  rules:
    - needs:
        - job: linux:build
          parallel: {matrix: [{PROVIDER: aws, STACK: monitoring}]}
");
    let rspec = job(&p, "linux:rspec");
    assert!(rspec.unsupported.is_empty(), "{:?}", rspec.unsupported);
    let needs: Vec<(&str, bool)> = rspec
        .needs
        .iter()
        .flatten()
        .map(|n| (n.job.as_str(), n.artifacts))
        .collect();
    assert_eq!(
        needs,
        [
            ("linux:build: [aws, app1]", false),
            ("linux:build: [aws, app2]", false)
        ]
    );
    let rule_needs: Vec<&str> = job(&p, "other").rules[0]
        .needs
        .iter()
        .flatten()
        .map(|n| n.job.as_str())
        .collect();
    assert_eq!(rule_needs, ["linux:build: [aws, monitoring]"]);

    // GitLab builds the name from the need's own order, so a reversed order (or a value the
    // matrix does not have) names no job.
    let head = "stages: [build, test]\nb:\n  stage: build\n  script: [x]\n  parallel:\n    matrix:\n      - P: aws\n        S: [one, two]\nt:\n  stage: test\n  script: [x]\n  needs:\n    - job: b\n";
    let errs = brief(&format!(
        "{head}      parallel: {{matrix: [{{S: one, P: aws}}]}}\n"
    ));
    assert_eq!(
        errs,
        ["13:12: job `t` needs `b: [one, aws]`, which is not a job"],
        "{errs:?}"
    );
    let errs = brief(&format!(
        "{head}      parallel: {{matrix: [{{P: aws, S: three}}]}}\n"
    ));
    assert!(
        errs[0].contains("needs `b: [aws, three]`, which is not a job"),
        "{errs:?}"
    );
    // `optional` goes with `parallel: matrix` (`Need::JobHash` takes both): each instance is
    // an optional need, and one the matrix does not make is dropped, not an error.
    let p = ok(&format!(
        "{head}      optional: true\n      parallel: {{matrix: [{{P: aws, S: [one, three]}}]}}\n"
    ));
    let needs: Vec<(&str, bool)> = job(&p, "t")
        .needs
        .iter()
        .flatten()
        .map(|n| (n.job.as_str(), n.optional))
        .collect();
    assert_eq!(needs, [("b: [aws, one]", true)]);
    let errs = brief(&format!("{head}      parallel: 2\n"));
    assert!(errs[0].contains("must be a map with `matrix:`"), "{errs:?}");
}

#[test]
fn needs_parallel_matrix_expressions_map_instances_one_to_one() {
    let p = ok("
stages: [build, test]
build:
  stage: build
  script: [x]
  parallel:
    matrix:
      - OS: [linux, mac]
        ARCH: [arm, x86]
test:
  stage: test
  script: [x]
  parallel:
    matrix:
      - OS: [linux, mac]
  needs:
    - job: build
      parallel:
        matrix:
          - OS: ['$[[ matrix.OS ]]']
            ARCH: [x86]
");
    let needs = |name: &str| -> Vec<String> {
        job(&p, name)
            .needs
            .iter()
            .flatten()
            .map(|n| n.job.clone())
            .collect()
    };
    assert_eq!(needs("test: [linux]"), ["build: [linux, x86]"]);
    assert_eq!(needs("test: [mac]"), ["build: [mac, x86]"]);
    // An identifier the needing job's matrix lacks stays as written: no such job.
    let errs = brief(
        "b:\n  script: [x]\n  parallel: {matrix: [{OS: [a, b]}]}\nt:\n  script: [x]\n  parallel: {matrix: [{OS: [a, b]}]}\n  needs: [{job: b, parallel: {matrix: [{OS: ['$[[ matrix.ARCH ]]']}]}}]\n",
    );
    assert!(
        errs[0].contains("needs `b: [$[[ matrix.ARCH ]]]`, which is not a job"),
        "{errs:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// typed keywords

#[test]
fn services_image_docker_and_pull_policies() {
    let p = ok("
j:
  script: [x]
  image:
    name: alpine
    docker: {user: '1000', platform: linux/arm64}
  services:
    - redis:7
    - name: postgres:16
      alias: db, pg  primary
      entrypoint: [docker-entrypoint.sh]
      command: [postgres, -c, fsync=off]
      variables: {POSTGRES_PASSWORD: x}
      pull_policy: if-not-present
");
    let j = &p.jobs[0];
    let img = j.image.as_ref().unwrap();
    assert_eq!(img.docker_user.as_deref(), Some("1000"));
    assert_eq!(img.docker_platform.as_deref(), Some("linux/arm64"));
    assert_eq!(j.services.len(), 2);
    assert_eq!(j.services[0].name, "redis:7");
    let pg = &j.services[1];
    assert_eq!(pg.alias, ["db", "pg", "primary"]);
    assert_eq!(pg.entrypoint.as_deref().unwrap(), ["docker-entrypoint.sh"]);
    assert_eq!(
        pg.command.as_deref().unwrap(),
        ["postgres", "-c", "fsync=off"]
    );
    assert_eq!(vars(&pg.variables), [("POSTGRES_PASSWORD", "x")]);
    assert_eq!(pg.pull_policy, [PullPolicy::IfNotPresent]);
    assert_eq!((pg.span.line, pg.span.column), (9, 7));
}

#[test]
fn keyword_values_table() {
    // (job body, check)
    type Check = fn(&Job);
    let cases: &[(&str, Check)] = &[
        ("when: delayed\n  start_in: 30 seconds", |j| {
            assert_eq!(j.start_in, Some(Duration::from_secs(30)))
        }),
        ("when: delayed\n  start_in: 1 hour and 30 minutes", |j| {
            assert_eq!(j.start_in, Some(Duration::from_secs(5400)))
        }),
        ("when: delayed\n  start_in: 1 day", |j| {
            assert_eq!(j.start_in, Some(Duration::from_secs(86400)))
        }),
        ("timeout: 1h 30m", |j| {
            assert_eq!(j.timeout, Some(Duration::from_secs(5400)))
        }),
        ("timeout: 3 hours", |j| {
            assert_eq!(j.timeout, Some(Duration::from_secs(10800)))
        }),
        ("timeout: 90 minutes", |j| {
            assert_eq!(j.timeout, Some(Duration::from_secs(5400)))
        }),
        ("retry: 2", |j| {
            assert_eq!(
                j.retry,
                Retry {
                    max: 2,
                    when: vec![],
                    exit_codes: None,
                }
            )
        }),
        (
            "retry: {max: 1, when: [script_failure, api_failure]}",
            |j| {
                assert_eq!(j.retry.max, 1);
                assert_eq!(j.retry.when, ["script_failure", "api_failure"]);
            },
        ),
        ("retry: {max: 2, when: always}", |j| {
            assert_eq!(j.retry.when, ["always"])
        }),
        ("retry: {max: 2, exit_codes: 137}", |j| {
            assert_eq!(j.retry.exit_codes, Some(vec![137]));
            assert!(j.retry.when.is_empty());
            assert!(j.unsupported.is_empty(), "{:?}", j.unsupported);
        }),
        (
            "retry: {max: 1, when: runner_system_failure, exit_codes: [137, 255]}",
            |j| {
                assert_eq!(j.retry.exit_codes, Some(vec![137, 255]));
                assert_eq!(j.retry.when, ["runner_system_failure"]);
            },
        ),
        ("allow_failure: {exit_codes: 137}", |j| {
            assert!(!j.allow_failure);
            assert_eq!(j.allow_failure_exit_codes, [137]);
        }),
        ("allow_failure: yes", |j| assert!(j.allow_failure)),
        ("allow_failure: off", |j| assert!(!j.allow_failure)),
        ("interruptible: on", |j| assert!(j.interruptible)),
        ("tags: [docker, linux]", |j| {
            assert_eq!(j.tags, ["docker", "linux"])
        }),
        ("coverage: '/Total: (\\d+\\.\\d+)%/'", |j| {
            assert_eq!(j.coverage.as_deref(), Some("Total: (\\d+\\.\\d+)%"))
        }),
        ("environment: staging", |j| {
            assert_eq!(j.environment.as_deref(), Some("staging"))
        }),
        (
            "environment: {name: review/$CI_COMMIT_REF_SLUG, url: https://x, action: start}",
            |j| assert_eq!(j.environment.as_deref(), Some("review/$CI_COMMIT_REF_SLUG")),
        ),
        ("resource_group: production", |j| {
            assert_eq!(j.resource_group.as_deref(), Some("production"))
        }),
        (
            "cache: {key: {files: [Gemfile.lock, package.json], prefix: $CI_JOB_NAME}, fallback_keys: [a, b]}",
            |j| {
                assert_eq!(j.cache[0].key, "$CI_JOB_NAME");
                assert_eq!(j.cache[0].key_files, ["Gemfile.lock", "package.json"]);
                assert_eq!(j.cache[0].fallback_keys, ["a", "b"]);
            },
        ),
        (
            "artifacts: {reports: {dotenv: build.env, junit: [a.xml, b.xml], coverage_report: {coverage_format: cobertura, path: cov.xml}}}",
            |j| {
                let a = j.artifacts.as_ref().unwrap();
                assert_eq!(a.reports_dotenv, ["build.env"]);
                assert_eq!(a.reports_other, ["a.xml", "b.xml", "cov.xml"]);
            },
        ),
        (
            "release: {tag_name: v1, description: x}\n  pages: true\n  secrets: {}\n  id_tokens: {}\n  hooks: {}\n  identity: google_cloud\n  dast_configuration: {}\n  manual_confirmation: sure?",
            |j| {
                let un: Vec<&str> = j.unsupported.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(
                    un,
                    [
                        "release",
                        "pages",
                        "secrets",
                        "id_tokens",
                        "hooks",
                        "identity",
                        "dast_configuration",
                        "manual_confirmation"
                    ]
                );
            },
        ),
    ];
    for (body, check) in cases {
        let p = ok(&format!("j:\n  script: [x]\n  {body}\n"));
        check(&p.jobs[0]);
    }
}

#[test]
fn a_trigger_job_takes_only_what_gitlab_s_bridge_takes() {
    // `Entry::Bridge`: `allowed_keys: ALLOWED_KEYS + PROCESSABLE_ALLOWED_KEYS`, so a key that
    // `extends` brings in (a shared template's `tags:`) fails the pipeline on GitLab.
    let errs = brief(
        "
.base:
  tags: [docker]
  retry: 1
trig:
  extends: .base
  trigger: {include: child.yml}
both:
  script: [x]
  trigger: {include: child.yml}
late:
  trigger: {include: child.yml}
  when: delayed
  start_in: 1 minute
picky:
  trigger: {include: child.yml}
  allow_failure: {exit_codes: [3]}
  parallel: 2
",
    );
    assert_eq!(
        errs,
        [
            "3:3: trigger job `trig` cannot use `tags` (GitLab: \"config contains unknown keys\")",
            "4:3: trigger job `trig` cannot use `retry` (GitLab: \"config contains unknown keys\")",
            "9:3: job `both` has both `trigger` and `script` (GitLab refuses them together)",
            "13:9: `when` of trigger job `late` must be one of on_success, on_failure, always, manual, found `delayed`",
            "14:3: trigger job `late` cannot use `start_in` (GitLab: \"config contains unknown keys\")",
            "17:18: `allow_failure` of trigger job `picky` must be true or false (GitLab takes no `exit_codes` there)",
            "18:13: `parallel` of trigger job `picky` must be `matrix:` (GitLab: cannot use \"parallel: <number>\")",
        ]
    );
    // `default:` gives a trigger job only what `Entry::Bridge` has an entry for.
    let p = ok("
default:
  image: alpine
  tags: [docker]
  interruptible: true
build: {script: [x]}
trig:
  trigger: {include: child.yml}
");
    let trig = job(&p, "trig");
    assert!(trig.image.is_none() && trig.tags.is_empty(), "{trig:?}");
    assert!(trig.interruptible);
}

#[test]
fn trigger_child_pipelines() {
    let p = ok("
child:
  trigger:
    include:
      - local: /ci/child.yml
      - ci/other.yml
      - artifact: generated.yml
        job: gen
    strategy: depend
simple:
  trigger:
    include: ci/child.yml
");
    let c = job(&p, "child");
    let t = c.trigger.as_ref().unwrap();
    assert_eq!(t.files(), ["ci/child.yml", "ci/other.yml"]);
    assert!(t.depend);
    assert_eq!(c.unsupported[0].0, "trigger:include:artifact");
    let s = job(&p, "simple").trigger.as_ref().unwrap();
    assert!(!s.depend);
    assert_eq!(s.files(), ["ci/child.yml"]);
}

#[test]
fn keyword_errors_table() {
    let cases: &[(&str, &str)] = &[
        (
            "when: delayed",
            "job `j` is `when: delayed` but has no `start_in`",
        ),
        (
            "start_in: 5 minutes",
            "`start_in` of job `j` needs `when: delayed`",
        ),
        (
            "when: delayed\n  start_in: 8 days",
            "must be at most 7 days (GitLab's limit)",
        ),
        (
            "when: delayed\n  start_in: soon",
            "`start_in` of job `j` is not a duration: `soon` is not a unit of time",
        ),
        ("timeout: 2 months", "must be at most"),
        // Found by fuzzing (fuzz/fuzz_targets/load_pipeline.rs): a character of more than one
        // byte where a number or unit was expected made the duration parser slice inside it.
        (
            "timeout: 1 \u{fffd}tes",
            "`timeout` of job `j` is not a duration: unexpected `\u{fffd}`",
        ),
        (
            "when: delayed\n  start_in: 5 ✓ minutes",
            "`start_in` of job `j` is not a duration: unexpected `✓`",
        ),
        (
            "retry: 3",
            "`retry` of job `j` must be 0, 1 or 2 (GitLab's limit), found 3",
        ),
        (
            "retry: {max: 1, when: [script_failur]}",
            "`script_failur` is not a failure reason",
        ),
        (
            "retry: {max: 1, wen: always}",
            "unknown key `wen` in `retry` of job `j`",
        ),
        (
            "allow_failure: {exit_codes: [one]}",
            "`exit_codes` must be an integer, found `one`",
        ),
        (
            "retry: {max: 1, exit_codes: [137, oom]}",
            "`retry` of job `j` `exit_codes` must be an integer, found `oom`",
        ),
        (
            "coverage: 'Total: \\d+%'",
            "must be a regular expression between slashes",
        ),
        (
            "coverage: '/(unclosed/'",
            "is not a valid regular expression",
        ),
        (
            "tags: docker",
            "`tags` of job `j` must be a list of strings, found a string",
        ),
        (
            "interruptible: maybe",
            "`interruptible` of job `j` must be true or false, found `maybe`",
        ),
        (
            "environment: {url: https://x}",
            "`environment` of job `j` needs `name`",
        ),
        ("services: [{alias: db}]", "a service needs `name`"),
        (
            "services: [{name: db, pull_policy: sometimes}]",
            "must be always, if-not-present or never, found `sometimes`",
        ),
        (
            "cache: {key: {files: [a, b, c]}}",
            "`files` must list one or two files, found 3",
        ),
        ("cache: {key: {prefix: p}}", "as a map needs `files`"),
        (
            "cache: {fallback_keys: [a, b, c, d, e, f]}",
            "lists more than 5 keys",
        ),
        ("image: {name: a, docker: {usr: x}}", "unknown key `usr`"),
        (
            "trigger: {strategy: wait, include: a.yml}",
            "`strategy` must be `depend` or `mirror`, found `wait`",
        ),
    ];
    for (body, want) in cases {
        let errs = brief(&format!("j:\n  script: [x]\n  {body}\n"));
        assert!(errs.iter().any(|e| e.contains(want)), "{body}: {errs:#?}");
    }
    // The did-you-mean on retry reasons.
    let e = errors("j:\n  script: [x]\n  retry: {max: 1, when: [script_failur]}\n");
    assert_eq!(e[0].help.as_deref(), Some("did you mean `script_failure`?"));
}

// ---------------------------------------------------------------------------------------------
// YAML 1.1 scalars

#[test]
fn yaml_1_1_scalars_as_gitlab_reads_them() {
    let loaded = load(
        "
variables:
  VERSION: 1.10
  OCTAL: 010
  BIG: 1_000
  TIME: 1:30
  HEX: 0x1F
  PLAIN: 1.10.2
  QUOTED: '1.10'
  NUMBER: 42
j:
  script: [x]
",
    )
    .unwrap();
    assert_eq!(
        vars(&loaded.pipeline.variables),
        [
            ("VERSION", "1.1"),
            ("OCTAL", "8"),
            ("BIG", "1000"),
            ("TIME", "90"),
            ("HEX", "31"),
            ("PLAIN", "1.10.2"),
            ("QUOTED", "1.10"),
            ("NUMBER", "42"),
        ]
    );
    // Every value GitLab changes gets a warning that says how to keep the text.
    let warned: Vec<usize> = loaded
        .warnings
        .iter()
        .map(|w| w.span.as_ref().unwrap().line)
        .collect();
    assert_eq!(warned, [3, 4, 5, 6, 7]);
    assert_eq!(
        loaded.warnings[0].help.as_deref(),
        Some("quote it to keep the text: \"1.10\"")
    );
    // Booleans are variable values, as Ruby's `to_s` writes them: tests/lenient.rs.
    // Where GitLab wants a string (`Stages`, `Stage`, a list of strings), a number is refused
    // ("should be a string"); quoted, it is the text written.
    let errs =
        brief("stages: [1.0, build]\nj:\n  stage: 1.0\n  script: [echo 1]\n  tags: [2024]\n");
    assert_eq!(
        errs,
        [
            "1:10: `stages` must be a string or a list of strings, found `1.0` (a number to GitLab's YAML reader)",
            "3:10: `stage` of job `j` must be a string, found `1.0` (a number to GitLab's YAML reader)",
            "5:10: `tags` of job `j` must be a list of strings, found `2024` (a number to GitLab's YAML reader) in the list",
        ]
    );
    let p = ok(
        "stages: ['1.0', build]\nj:\n  stage: '1.0'\n  script: [echo 1]\n  image: python:3.10\n",
    );
    assert_eq!(p.stages, [".pre", "1.0", "build", ".post"]);
    assert_eq!(p.jobs[0].stage, "1.0");
    // Matrix values may be integers (as Ruby writes them), not floats
    // (`validate_array_value_variables`).
    let p = ok("j:\n  script: [x]\n  parallel:\n    matrix:\n      - PY: [3, 010, '3.10']\n");
    assert_eq!(names(&p), ["j: [3]", "j: [8]", "j: [3.10]"]);
    // A list one level down (an alias spliced in) passes GitLab's `flatten(1)` check and
    // becomes one value, Ruby's `Array#to_s`.
    let p = ok("j:\n  script: [x]\n  parallel:\n    matrix:\n      - V: [[1, a], '3']\n");
    assert_eq!(names(&p), ["j: [[1, \"a\"]]", "j: [3]"]);
    let errs = brief("j:\n  script: [x]\n  parallel:\n    matrix:\n      - PY: [3.9, true]\n");
    assert_eq!(
        errs,
        [
            "5:14: `parallel` of job `j` `matrix` values must be strings or integers, found `3.9` (a float to GitLab's YAML reader)",
            "5:19: `parallel` of job `j` `matrix` values must be strings or integers, found `true` (a boolean to GitLab's YAML reader)",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// merged YAML

#[test]
fn merged_yaml_resolves_everything_and_keeps_hidden_jobs() {
    let files = [
        (
            FILE,
            "include: ci/base.yml
variables:
  V: 1.10
.tpl: &tpl
  image: alpine
build:
  <<: *tpl
  extends: .base
  script:
    - !reference [.base, before_script]
    - make
  when: manual
  interruptible: yes
",
        ),
        (
            "ci/base.yml",
            ".base:\n  before_script: [setup]\n  variables: {A: 'x: y', B: \"multi\\nline\\n\"}\n",
        ),
    ];
    let out = merged_yaml(FILE, &mem(&files), &LoadOptions::default()).unwrap();
    assert_eq!(
        out,
        "# from ci/base.yml, included by .gitlab-ci.yml
.base:
  before_script:
    - setup
  variables:
    A: \"x: y\"
    B: |
      multi
      line
variables:
  V: 1.10
.tpl:
  image: alpine
build:
  before_script:
    - setup
  variables:
    A: \"x: y\"
    B: |
      multi
      line
  image: alpine
  script:
    - - setup
    - make
  when: manual
  interruptible: yes
"
    );
    // The output is itself a valid pipeline that loads to the same jobs.
    let again = ok(&out);
    let orig = ok_files(&files, &[]);
    assert_eq!(again.jobs[0].script, orig.jobs[0].script);
    assert_eq!(
        vars(&again.jobs[0].variables),
        vars(&orig.jobs[0].variables)
    );
    // Errors come back as diagnostics.
    let e = merged_yaml(
        FILE,
        &mem(&[(FILE, "include: nope.yml\n")]),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.0[0].message, "included file `nope.yml` does not exist");
}

// ---------------------------------------------------------------------------------------------
// extends / merge laws (property tests, compared through the merged YAML)

mod merge_laws {
    use super::*;
    use proptest::prelude::*;

    /// A YAML value with string scalars only (so no YAML 1.1 typing gets in the way).
    #[derive(Debug, Clone)]
    enum T {
        S(String),
        L(Vec<T>),
        M(Vec<(String, T)>),
    }

    fn flow(t: &T) -> String {
        match t {
            T::S(s) => s.clone(),
            T::L(items) => format!(
                "[{}]",
                items.iter().map(flow).collect::<Vec<_>>().join(", ")
            ),
            T::M(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", flow(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// GitLab's `extends` merge, written independently of the crate: maps merge recursively
    /// (`over` wins, its new keys appended), everything else is replaced.
    fn merge(base: &[(String, T)], over: &[(String, T)]) -> Vec<(String, T)> {
        let mut out = base.to_vec();
        for (k, v) in over {
            match out.iter_mut().find(|(bk, _)| bk == k) {
                Some((_, existing)) => {
                    *existing = match (&*existing, v) {
                        (T::M(b), T::M(o)) => T::M(merge(b, o)),
                        _ => v.clone(),
                    }
                }
                None => out.push((k.clone(), v.clone())),
            }
        }
        out
    }

    fn scalar() -> impl Strategy<Value = T> {
        prop::sample::select(vec!["x", "y", "z", "w"]).prop_map(|s| T::S(s.to_string()))
    }

    fn value() -> impl Strategy<Value = T> {
        scalar().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(T::L),
                map_of(inner).prop_map(T::M),
            ]
        })
    }

    /// Maps with unique keys from a small set, so that merges overlap often.
    fn map_of(v: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<(String, T)>> {
        prop::collection::vec((prop::sample::select(vec!["a", "b", "c", "d"]), v), 0..4).prop_map(
            |entries| {
                let mut out: Vec<(String, T)> = Vec::new();
                for (k, v) in entries {
                    if !out.iter().any(|(ok, _)| ok == k) {
                        out.push((k.to_string(), v));
                    }
                }
                out
            },
        )
    }

    fn body() -> impl Strategy<Value = Vec<(String, T)>> {
        map_of(value())
    }

    /// A job map in flow style, with `extends` first when given.
    fn job(extends: Option<&str>, body: &[(String, T)]) -> String {
        let mut entries: Vec<String> = extends
            .map(|e| format!("extends: {e}"))
            .into_iter()
            .collect();
        entries.extend(body.iter().map(|(k, v)| format!("{k}: {}", flow(v))));
        format!("{{{}}}", entries.join(", "))
    }

    fn merged(yaml: &str) -> String {
        merged_yaml(FILE, &mem(&[(FILE, yaml)]), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("{yaml}\n{e}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn extending_an_empty_template_is_identity(b in body()) {
            let extended = merged(&format!(".e: {{}}\n.j: {}\n", job(Some(".e"), &b)));
            let plain = merged(&format!(".e: {{}}\n.j: {}\n", job(None, &b)));
            prop_assert_eq!(extended, plain);
        }

        #[test]
        fn own_keys_win_maps_deep_merge_lists_are_replaced(base in body(), own in body()) {
            let extended = merged(&format!(".b: {}\n.j: {}\n", job(None, &base), job(Some(".b"), &own)));
            let expected = merged(&format!(".b: {}\n.j: {}\n", job(None, &base), job(None, &merge(&base, &own))));
            prop_assert_eq!(extended, expected);
        }

        #[test]
        fn merging_along_a_chain_is_associative(a in body(), b in body(), c in body()) {
            let chain = merged(&format!(
                ".c: {}\n.b: {}\n.a: {}\n",
                job(None, &c), job(Some(".c"), &b), job(Some(".b"), &a)
            ));
            let flattened = merged(&format!(
                ".c: {}\n.b: {}\n.a: {}\n",
                job(None, &c), job(None, &merge(&c, &b)), job(Some(".b"), &a)
            ));
            prop_assert_eq!(chain, flattened);
        }
    }
}

#[test]
fn circular_needs_are_rejected_with_the_chain() {
    let src = "a:\n  needs: [c]\n  script: [x]\nb:\n  needs: [a]\n  script: [x]\nc:\n  needs: [b]\n  script: [x]\nd:\n  needs: [a]\n  script: [x]\n";
    let err = load_files(&[(".gitlab-ci.yml", src)], &[]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("circular needs: a -> c -> b -> a"), "{text}");
    assert_eq!(text.matches("circular needs").count(), 1, "{text}");
}

#[test]
fn a_lone_last_when_rule_without_workflow_rules_is_warned_as_gitlab_warns() {
    // `Processable#validate_against_warnings`, run unless `workflow:` has `rules`: the last
    // rule's keys are exactly `[:when]` and its value is not `never`.
    let yaml = "
.tpl: {rules: [{if: $CI_COMMIT_TAG, when: never}, {when: on_success}]}
a: {extends: .tpl, script: [x]}
b: {script: [x], rules: [{if: $X}, {when: never}]}
c: {script: [x], rules: [{when: manual, allow_failure: true}]}
d: {script: [x], rules: [[{when: always}]]}
e: {script: [x]}
";
    let warned = |yaml: &str| -> Vec<(String, usize)> {
        load(yaml)
            .expect("loads")
            .warnings
            .iter()
            .filter(|w| w.message.contains("multiple pipelines"))
            .map(|w| {
                let at = w.span.as_ref().map_or(0, |s| s.line);
                (w.message.split('`').nth(1).unwrap_or("").to_string(), at)
            })
            .collect()
    };
    assert_eq!(warned(yaml), [("a".to_string(), 2), ("d".to_string(), 6)]);
    let with_workflow = format!("workflow: {{rules: [{{when: always}}]}}\n{yaml}");
    assert_eq!(warned(&with_workflow), []);
}
