//! wharf-ci behaviour through its public API, with an in-memory loader.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use wharf_ci::*;

struct Mem(HashMap<String, String>);

impl Loader for Mem {
    fn load(&self, path: &str) -> Result<String, std::io::Error> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, path.to_string()))
    }
}

const FILE: &str = ".gitlab-ci.yml";

fn load(yaml: &str) -> Result<Loaded, Diagnostics> {
    let mem = Mem(HashMap::from([(FILE.to_string(), yaml.to_string())]));
    load_pipeline(FILE, &mem)
}

fn ok(yaml: &str) -> Pipeline {
    match load(yaml) {
        Ok(l) => l.pipeline,
        Err(e) => panic!(
            "expected success, got:\n{}",
            e.render(&|_| Some(yaml.to_string()))
        ),
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

/// `line:col: message` of each error, for compact assertions.
fn brief(yaml: &str) -> Vec<String> {
    errors(yaml)
        .iter()
        .map(|d| match &d.span {
            Some(s) => format!("{}:{}: {}", s.line, s.column, d.message),
            None => d.message.clone(),
        })
        .collect()
}

fn job<'a>(p: &'a Pipeline, name: &str) -> &'a Job {
    p.jobs
        .iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no job {name}"))
}

fn vars(v: &[Variable]) -> Vec<(&str, &str)> {
    v.iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect()
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
fn merge_key_explicit_keys_win_wherever_written() {
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
    let before = job(&p, "before");
    assert_eq!(before.script, ["mine"]);
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
.template: {}
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
image: legacy-global
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
        "j:\n  script: [x]\n  release: {tag_name: v1}\n  services: [db]\n  tags: [t]\n  timeout: 1h\n  pages: true\n",
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
            "6:9: `when` of job `a` must be one of on_success, on_failure, always, manual, delayed, never, found `sometimes`",
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
            "3:3: variable `B` has no value",
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
    - yes
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
  needs: [b, {job: b, artifacts: true}, {job: gone, optional: true}]
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
    assert_eq!(need_names, ["b", "b"]);
    assert_eq!(t.dependencies.as_deref(), Some(&["b".to_string()][..]));
    assert_eq!(job(&p, "u").needs, Some(vec![]));
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
            "10:18: job `c` depends on `b`, which is not in an earlier stage",
            "14:11: job `b` needs `zzz`, which is not a job",
        ]
    );
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
fn workflow_is_a_warning() {
    let l = load("workflow:\n  rules: [{when: always}]\nj: {script: [x]}\n").unwrap();
    assert_eq!(l.warnings.len(), 1);
    assert_eq!(l.warnings[0].severity, Severity::Warning);
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
        brief("spec:\n  inputs: {}\n---\nj: {script: [x]}\n"),
        ["1:1: a `spec:` header (inputs) is not supported yet"]
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

.gitlab-ci.yml:5:9: error: `when` of job `b` must be one of on_success, on_failure, always, manual, delayed, never, found `later`
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
        deploy.needs.iter().flatten().map(|n| n.job.as_str()).collect::<Vec<_>>(),
        ["build 1/2", "build 2/2"]
    );
    let un: Vec<_> = deploy.unsupported.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(un, ["release", "id_tokens", "secrets"]);
    assert!(deploy.allow_failure);
    assert_eq!(deploy.image.as_ref().unwrap().name, "alpine");
}

#[test]
fn duplicate_keys_and_crlf() {
    let e = brief("j:\n  script: [a]\n  script: [b]\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].contains("duplicate"), "{e:?}");
    let e = brief("j:\r\n  script: [a]\r\n  stage: nope\r\n");
    assert_eq!(e, ["3:10: stage `nope` of job `j` is not in `stages`"]);
}
