//! `rules:`, `only`/`except` and `workflow:`: loading (with exact error positions) and GitLab's
//! evaluation semantics.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::time::Duration;
use wharf_ci::*;

mod common;
use common::{brief, job, load, ok};

struct Env {
    vars: HashMap<String, String>,
    changed: Option<Vec<String>>,
    files: Vec<String>,
}

impl Env {
    fn new(vars: &[(&str, &str)]) -> Self {
        Self {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            changed: None,
            files: Vec::new(),
        }
    }

    fn rules(&self, j: &Job) -> RulesOutcome {
        let lookup = |n: &str| self.vars.get(n).cloned();
        let changed = |_: Option<&str>| self.changed.clone();
        let ctx = RuleContext {
            variables: &lookup,
            changed_files: &changed,
            project_files: &self.files,
            default_when: j.when,
        };
        evaluate_rules(&j.rules, &ctx)
    }

    fn workflow(&self, p: &Pipeline) -> WorkflowOutcome {
        let lookup = |n: &str| self.vars.get(n).cloned();
        let changed = |_: Option<&str>| self.changed.clone();
        let ctx = RuleContext {
            variables: &lookup,
            changed_files: &changed,
            project_files: &self.files,
            default_when: When::OnSuccess,
        };
        evaluate_workflow(p.workflow.as_ref(), &ctx)
    }
}

#[test]
fn documented_rules_example() {
    // ci/jobs/job_rules.md, "rules examples".
    let p = ok(r#"
job:
  script: echo "Hello, Rules!"
  rules:
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
      when: manual
      allow_failure: true
    - if: $CI_PIPELINE_SOURCE == "schedule"
"#);
    let j = job(&p, "job");
    assert_eq!(j.rules.len(), 2);
    let mr = Env::new(&[("CI_PIPELINE_SOURCE", "merge_request_event")]).rules(j);
    assert_eq!(
        (mr.matched, mr.when, mr.allow_failure),
        (Some(0), When::Manual, Some(true))
    );
    let sched = Env::new(&[("CI_PIPELINE_SOURCE", "schedule")]).rules(j);
    assert_eq!(
        (sched.matched, sched.when, sched.allow_failure),
        (Some(1), When::OnSuccess, None)
    );
    let push = Env::new(&[("CI_PIPELINE_SOURCE", "push")]).rules(j);
    assert_eq!((push.matched, push.when), (None, When::Never));
    assert!(!push.included());
}

#[test]
fn rule_attributes_and_defaults() {
    let p = ok(r#"
stages: [build, test]
a:
  stage: build
  script: [x]
c:
  stage: build
  script: [x]
b:
  script: [x]
  when: manual
  rules:
    - if: $DELAY
      when: delayed
      start_in: 30 minutes
    - if: $MANUAL
      when: manual
    - if: $VARS
      variables: {DEPLOY: "yes", N: 3}
      needs: [a, {job: c, artifacts: false, optional: true}]
    - when: never
"#);
    let b = job(&p, "b");
    let out = Env::new(&[("DELAY", "1")]).rules(b);
    assert_eq!(out.when, When::Delayed);
    assert_eq!(out.start_in, Some(Duration::from_secs(1800)));
    // `when: manual` in a rule: allow_failure is not turned on (GitLab's documented default).
    let out = Env::new(&[("MANUAL", "1")]).rules(b);
    assert_eq!((out.when, out.allow_failure), (When::Manual, None));
    let out = Env::new(&[("VARS", "1")]).rules(b);
    // No `when` in the rule: the job's own `when`.
    assert_eq!(out.when, When::Manual);
    let vars: Vec<_> = out
        .variables
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(vars, [("DEPLOY", "yes"), ("N", "3")]);
    let needs = out.needs.unwrap();
    assert_eq!(needs.len(), 2);
    assert!(needs[0].artifacts && !needs[0].optional);
    assert!(!needs[1].artifacts && needs[1].optional);
    let out = Env::new(&[]).rules(b);
    assert_eq!((out.matched, out.when), (Some(3), When::Never));
    // Without rules: the job's `when`, no rule matched.
    let out = Env::new(&[]).rules(job(&p, "a"));
    assert_eq!((out.matched, out.when), (None, When::OnSuccess));
}

#[test]
fn changes_and_exists() {
    let p = ok(r#"
j:
  script: [x]
  rules:
    - changes: ["docker/**/*", Dockerfile]
      when: manual
    - exists:
        paths: ["$DIR/*.md"]
    - changes:
        paths: ["*.c"]
        compare_to: refs/heads/main
      when: always
"#);
    let j = job(&p, "j");
    assert_eq!(
        j.rules[2].changes_compare_to.as_deref(),
        Some("refs/heads/main")
    );
    let mut env = Env::new(&[("DIR", "docs")]);
    // Nothing to compare with: `changes` holds (GitLab: new branches, tags, schedules).
    assert_eq!(env.rules(j).matched, Some(0));
    env.changed = Some(vec!["docker/build/x.sh".into()]);
    assert_eq!(env.rules(j).matched, Some(0));
    // `*` stays in its folder; dot files match.
    env.changed = Some(vec!["src/a.c".into()]);
    assert_eq!(env.rules(j).matched, None);
    env.changed = Some(vec![".c".into()]);
    assert_eq!(env.rules(j).matched, Some(2));
    env.changed = Some(vec![]);
    env.files = vec!["docs/readme.md".into()];
    assert_eq!(env.rules(j).matched, Some(1));
    env.files = vec!["docs/sub/readme.md".into()];
    assert_eq!(env.rules(j).when, When::Never);
}

#[test]
fn rule_shapes_gitlab_refuses_are_refused() {
    // `Rules::Rule` and `Rules`: presence; `Changes`/`Exists`: at most 50 paths, `compare_to` a
    // String; `Processable`: `start_in` is a job key only without `rules`.
    let many: Vec<String> = (0..51).map(|i| format!("f{i}")).collect();
    let errs = brief(&format!(
        "
workflow:
  rules: []
a:
  script: [x]
  rules:
    - {{}}
    - changes: [{}]
    - changes: {{paths: [a], compare_to: 1}}
b:
  script: [x]
  when: delayed
  start_in: 1 minute
  rules: [{{when: delayed, start_in: 2 minutes}}]
",
        many.join(", ")
    ));
    assert_eq!(
        errs,
        [
            "3:10: `rules` of `workflow` can't be blank: GitLab refuses the pipeline",
            "7:7: a rule of `rules` of job `a` is empty (GitLab: \"can't be blank\")",
            "8:16: `changes` in a rule of `rules` of job `a` has 51 paths, more than GitLab's 50",
            "9:41: `changes` in a rule of `rules` of job `a` `compare_to` must be a ref, found `1` (a number to GitLab's YAML reader)",
            "13:3: job `b` uses `start_in` and `rules`: GitLab does not allow both",
        ]
    );
}

#[test]
fn workflow_name_and_auto_cancel_take_what_gitlab_takes() {
    // `Workflow`: `name` 1 to 255 characters; `AutoCancel`: its two keys' values; a rule's
    // `interruptible` a boolean.
    let errs = brief(
        "
workflow:
  name: ''
  auto_cancel: {on_new_commit: always}
  rules:
    - auto_cancel: {on_job_failure: some}
      when: always
j:
  script: [x]
  rules: [{interruptible: maybe}]
",
    );
    assert_eq!(
        errs,
        [
            "3:9: `workflow` `name` must be 1 to 255 characters long",
            "4:32: `workflow` `auto_cancel` `on_new_commit` must be one of conservative, interruptible, none, found `always`",
            "6:37: `auto_cancel` in a rule of `workflow` `on_job_failure` must be one of none, all, found `some`",
            "10:27: `interruptible` in a rule of `rules` of job `j` must be true or false, found `maybe`",
        ]
    );
}

#[test]
fn a_refs_pattern_gitlab_cannot_compile_is_refused() {
    // `ComplexPolicy`/`RefsPolicy`: `array_of_strings_or_regexps` checks each `/.../` entry.
    let errs = brief("j:\n  script: [x]\n  only: [main, '/[/']\n  except: {refs: ['/a**/']}\n");
    assert_eq!(
        errs,
        [
            "3:16: `only` of job `j`: invalid regular expression /[/: unclosed character class",
            "4:19: `except` of job `j` `refs`: invalid regular expression /a**/: bad repetition operator: *",
        ]
    );
}

#[test]
fn an_empty_exists_map_is_a_rule_that_never_holds() {
    // GitLab's `Exists` reads `{}` as a blank `SimpleExists`; its clause has no globs, and
    // `satisfied_by?` returns false for none.
    let p = ok("j:\n  script: [x]\n  rules:\n    - exists: {}\n    - when: manual\n");
    let mut env = Env::new(&[]);
    env.files = vec!["README.md".into()];
    assert_eq!(env.rules(job(&p, "j")).matched, Some(1));
}

#[test]
fn an_empty_cache_policy_is_the_default() {
    // `Cache`: `validates :policy, allow_blank: true`.
    let p = ok("j:\n  script: [x]\n  cache: {paths: [a], policy: ''}\n");
    assert_eq!(job(&p, "j").cache[0].policy, CachePolicy::PullPush);
}

#[test]
fn if_errors_point_at_the_column_inside_the_scalar() {
    let yaml = "j:\n  script: [x]\n  rules:\n    - if: $A == \n    - if: '$B =~ /x/'\n    - if: \"$C && \"\n";
    let e = brief(yaml);
    assert_eq!(
        e,
        [
            "4:16: invalid expression in `if` in a rule of `rules` of job `j`: expected a value after `==`, found the end of the expression",
            "5:18: invalid expression in `if` in a rule of `rules` of job `j`: one-character regular expressions like `/./` are not supported by GitLab: write for example `/^.$/` or `/(.)/`",
            "6:18: invalid expression in `if` in a rule of `rules` of job `j`: expected an expression after `&&`",
        ]
    );
    // With escapes inside the quotes the column is not known: the scalar's start.
    let e = brief("j:\n  script: [x]\n  rules:\n    - if: \"$A == \\\"x\"\n");
    assert!(e[0].starts_with("4:11: invalid expression"), "{e:?}");
    // only:variables are checked the same way.
    let e = brief("j:\n  script: [x]\n  only:\n    variables: [$A = 'x']\n");
    assert!(e[0].starts_with("4:20: invalid expression"), "{e:?}");
}

#[test]
fn wrong_types_and_unknown_keys() {
    let e = brief(
        "j:\n  script: [x]\n  rules:\n    - iff: $A\n      when: sometimes\n      alow_failure: true\n",
    );
    assert_eq!(
        e,
        [
            "4:7: unknown key `iff` in a rule of `rules` of job `j`",
            "5:13: `when` in a rule of `rules` of job `j` must be one of on_success, on_failure, always, manual, delayed, never, found `sometimes`",
            "6:7: unknown key `alow_failure` in a rule of `rules` of job `j`",
        ]
    );
    let l = load("j:\n  script: [x]\n  rules:\n    - iff: $A\n").unwrap_err();
    assert_eq!(l.0[0].help.as_deref(), Some("did you mean `if`?"));
    let e = brief("j:\n  script: [x]\n  rules:\n    if: $A\n");
    assert_eq!(
        e,
        ["4:5: `rules` of job `j` must be a list of rules, found a map"]
    );
    let e = brief("j:\n  script: [x]\n  rules: [$A]\n");
    assert_eq!(
        e,
        ["3:11: each rule in `rules` of job `j` must be a map, found a string"]
    );
    let e = brief("j:\n  script: [x]\n  rules:\n    - start_in: 1 hour\n");
    assert_eq!(
        e,
        ["4:17: `start_in` in a rule of `rules` of job `j` needs `when: delayed`"]
    );
    let e = brief("j:\n  script: [x]\n  rules: [{if: $A}]\n  only: [main]\n");
    assert_eq!(
        e,
        ["4:3: job `j` uses `only` and `rules`: GitLab does not allow both"]
    );
    let e = brief("j:\n  script: [x]\n  only: {refs: [main], varables: [$A]}\n");
    assert_eq!(e, ["3:24: unknown key `varables` in `only` of job `j`"]);
    let e = brief("workflow:\n  rules:\n    - when: manual\nj: {script: [x]}\n");
    assert_eq!(
        e,
        ["3:13: `when` in a rule of `workflow` must be one of always, never, found `manual`"]
    );
    let e = brief("workflow:\n  rule: []\nj: {script: [x]}\n");
    assert_eq!(e, ["2:3: unknown key `rule` in `workflow`"]);
}

#[test]
fn rules_spliced_from_references_are_flattened() {
    let p = ok(r#"
.default_rules:
  rules:
    - if: $CI_PIPELINE_SOURCE == "schedule"
      when: never
    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH
job2:
  rules:
    - !reference [.default_rules, rules]
    - if: $CI_PIPELINE_SOURCE == "merge_request_event"
  script: [x]
"#);
    let j = job(&p, "job2");
    assert_eq!(j.rules.len(), 3);
    let env = Env::new(&[
        ("CI_PIPELINE_SOURCE", "merge_request_event"),
        ("CI_DEFAULT_BRANCH", "main"),
    ]);
    assert_eq!(env.rules(j).matched, Some(2));
    // Both sides undefined are equal (`null == null`), as on GitLab.
    let env = Env::new(&[("CI_PIPELINE_SOURCE", "merge_request_event")]);
    assert_eq!(env.rules(j).matched, Some(1));
}

#[test]
fn workflow_rules_name_and_variables() {
    let p = ok(r#"
workflow:
  name: "Pipeline for $CI_COMMIT_BRANCH"
  rules:
    - if: $CI_COMMIT_TAG
      when: never
    - if: $CI_COMMIT_BRANCH == "main"
      variables: {DEPLOY: "true"}
    - if: $CI_COMMIT_BRANCH
j: {script: [x]}
"#);
    let w = Env::new(&[("CI_COMMIT_BRANCH", "main")]).workflow(&p);
    assert!(w.create);
    assert_eq!(w.name.as_deref(), Some("Pipeline for $CI_COMMIT_BRANCH"));
    assert_eq!(w.variables[0].name, "DEPLOY");
    let w = Env::new(&[("CI_COMMIT_BRANCH", "dev"), ("CI_COMMIT_TAG", "v1")]).workflow(&p);
    assert_eq!((w.create, w.matched), (false, Some(0)));
    let w = Env::new(&[]).workflow(&p);
    assert_eq!((w.create, w.matched), (false, None));
    // No workflow at all: the pipeline is created.
    let p = ok("j: {script: [x]}\n");
    assert!(Env::new(&[]).workflow(&p).create);
}

fn refs(only: Option<&OnlyExcept>, except: Option<&OnlyExcept>, ctx: &RefContext<'_>) -> bool {
    evaluate_only_except(only, except, ctx)
}

#[test]
fn only_except_refs_keywords_regexes_variables_changes() {
    let p = ok(r#"
default_job: {script: [x]}
main_only:
  script: [x]
  only: [main, /^release-\d+$/i, /^staging/.*$/]
no_schedules:
  script: [x]
  except: [schedules, tags]
mrs:
  script: [x]
  only: [merge_requests]
vars:
  script: [x]
  only:
    refs: [branches]
    variables: [$DEPLOY == "yes", $FORCE]
  except:
    changes: ["*.md"]
scoped:
  script: [x]
  only: [main@group/project]
"#);
    let no_vars = |_: &str| None;
    let deploy = |n: &str| (n == "DEPLOY").then(|| "yes".to_string());
    let ctx = |ref_name, is_tag, source| RefContext {
        variables: &no_vars,
        ref_name,
        is_tag,
        source,
        project_path: None,
        changed_files: None,
    };
    let eval = |name: &str, c: &RefContext<'_>| {
        let j = job(&p, name);
        refs(j.only.as_ref(), j.except.as_ref(), c)
    };
    // GitLab's default `only: [branches, tags]`: not in merge request pipelines.
    assert!(eval("default_job", &ctx("main", false, "push")));
    assert!(eval("default_job", &ctx("v1", true, "push")));
    assert!(!eval(
        "default_job",
        &ctx("main", false, "merge_request_event")
    ));
    assert!(eval("main_only", &ctx("main", false, "push")));
    assert!(eval("main_only", &ctx("RELEASE-12", false, "push")));
    assert!(!eval("main_only", &ctx("release-12x", false, "push")));
    assert!(!eval("main_only", &ctx("feature", false, "push")));
    // `RubySyntax` takes the text between the first and the last `/`: `/^staging/.*$/` is
    // `^staging/.*$` (freedesktop/bustle writes it so).
    assert!(eval("main_only", &ctx("staging/eu", false, "push")));
    assert!(!eval("main_only", &ctx("staging", false, "push")));
    assert!(eval("no_schedules", &ctx("main", false, "push")));
    assert!(!eval("no_schedules", &ctx("main", false, "schedule")));
    assert!(!eval("no_schedules", &ctx("v1", true, "push")));
    assert!(eval("mrs", &ctx("feature", false, "merge_request_event")));
    assert!(!eval("mrs", &ctx("feature", false, "push")));
    // Keywords match the pipeline source, as is or pluralised.
    for (kw, source) in [
        ("pushes", "push"),
        ("web", "web"),
        ("api", "api"),
        ("triggers", "trigger"),
        ("external", "external"),
    ] {
        let o = OnlyExcept {
            refs: vec![kw.into()],
            ..OnlyExcept::default()
        };
        assert!(refs(Some(&o), None, &ctx("x", false, source)), "{kw}");
        assert!(!refs(Some(&o), None, &ctx("x", false, "schedule")), "{kw}");
    }
    // variables: any expression; refs and variables must both hold.
    let none: Vec<String> = Vec::new();
    let no_changes = RefContext {
        changed_files: Some(&none),
        ..ctx("main", false, "push")
    };
    assert!(!eval("vars", &no_changes));
    let with_deploy = RefContext {
        variables: &deploy,
        ..no_changes
    };
    assert!(eval("vars", &with_deploy));
    // Nothing to compare with: `except: changes` holds, so the job is left out (GitLab).
    let no_diff = RefContext {
        variables: &deploy,
        ..ctx("main", false, "push")
    };
    assert!(!eval("vars", &no_diff));
    // except: any of its keys excludes (only `changes` here).
    let md = vec!["README.md".to_string()];
    let changed_md = RefContext {
        changed_files: Some(&md),
        ..with_deploy
    };
    assert!(!eval("vars", &changed_md));
    let rs = vec!["src/main.rs".to_string()];
    let changed_rs = RefContext {
        changed_files: Some(&rs),
        variables: &deploy,
        ..ctx("main", false, "push")
    };
    assert!(eval("vars", &changed_rs));
    // `ref@project` needs the project path.
    assert!(!eval("scoped", &ctx("main", false, "push")));
    let in_project = RefContext {
        project_path: Some("group/project"),
        ..ctx("main", false, "push")
    };
    assert!(eval("scoped", &in_project));
}

#[test]
fn only_kubernetes_is_recorded_as_unsupported() {
    let p = ok("j:\n  script: [x]\n  only:\n    kubernetes: active\n");
    let un: Vec<_> = job(&p, "j")
        .unsupported
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(un, ["only:kubernetes"]);
}
