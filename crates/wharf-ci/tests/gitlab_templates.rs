//! GitLab's own CI templates (tests/gitlab-templates, the files of `lib/gitlab/ci/templates/` of
//! gitlabhq/gitlabhq, each listed with its commit in SOURCES.json): real files GitLab validates
//! in its own test suite, written by people other than us.
//!
//! GitLab's `spec/lib/gitlab/ci/templates/templates_spec.rb` takes every template of the
//! categories `Gitlab::Template::GitlabCiYmlTemplate` lists (the top folder, `Pages/`, `Verify/`;
//! no `.latest.` file, no `Verify/Browser-Performance*`), minus a few exceptions, and expects
//! this pipeline to be valid, with the default stages among its stages:
//!
//! ```yaml
//! include:
//!   - template: <name>
//!
//! concrete_build_implemented_by_a_user:
//!   stage: test
//!   script: do something
//! ```
//!
//! Each of those is loaded here twice: as the project's own `.gitlab-ci.yml` (its job set kept
//! as an insta snapshot), and wrapped as GitLab's spec does. The templates under `Jobs/`,
//! `Security/` and `Workflows/` are not on that list: GitLab tests them through the templates
//! that include them (`Auto-DevOps.gitlab-ci.yml`, `5-Minute-Production-App.gitlab-ci.yml`), and
//! the ones GitLab's `Jobs/*_spec.rb` files use as a project's whole CI file are loaded that way
//! too.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use wharf_ci::{External, FetchFailure, Fetched, Loader, Severity, load_pipeline};

mod common;
use common::{job_set, job_set_without};

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gitlab-templates")
}

/// A project holding only its `.gitlab-ci.yml`; `include: template` reads the templates folder.
struct Project {
    main: String,
}

impl Loader for Project {
    fn load(&self, path: &str) -> Result<String, std::io::Error> {
        if path == ".gitlab-ci.yml" {
            Ok(self.main.clone())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                path.to_string(),
            ))
        }
    }

    fn list_files(&self) -> Result<Vec<String>, std::io::Error> {
        Ok(vec![".gitlab-ci.yml".to_string()])
    }

    fn fetch(&self, file: &External) -> Result<Fetched, FetchFailure> {
        let External::Template { name } = file else {
            return Err(FetchFailure {
                message: format!("{}: only templates are served here", file.describe()),
                help: None,
            });
        };
        match std::fs::read_to_string(templates().join(name)) {
            Ok(text) => Ok(Fetched {
                text,
                name: format!("templates/{name}"),
                project: None,
            }),
            Err(e) => Err(FetchFailure {
                message: format!("{}: {e}", file.describe()),
                help: None,
            }),
        }
    }
}

/// The templates GitLab's templates_spec.rb includes one by one and expects valid (of those
/// collected here).
const SPEC_VALID: &[&str] = &[
    "5-Minute-Production-App.gitlab-ci.yml",
    "Auto-DevOps.gitlab-ci.yml",
    "Bash.gitlab-ci.yml",
    "Docker.gitlab-ci.yml",
    "Pages/Hugo.gitlab-ci.yml",
    // An older templates_spec.rb (22e9f240) excluded this one by name; the newer one (8bee0028)
    // no longer does.
    "Terraform.gitlab-ci.yml",
];

/// Templates GitLab's own `Jobs/*_spec.rb` files use as a project's whole `.gitlab-ci.yml`.
const STANDALONE_JOBS: &[&str] = &[
    "Jobs/Build.gitlab-ci.yml",
    "Jobs/Code-Quality.gitlab-ci.yml",
    "Jobs/Test.gitlab-ci.yml",
];

/// Collected templates that are only included by others, and what loads them here.
const INCLUDED_ONLY: &[(&str, &str)] = &[
    (
        "Jobs/Browser-Performance-Testing.gitlab-ci.yml",
        "Auto-DevOps",
    ),
    ("Jobs/Code-Intelligence.gitlab-ci.yml", "Auto-DevOps"),
    (
        "Jobs/DAST-Default-Branch-Deploy.gitlab-ci.yml",
        "Auto-DevOps",
    ),
    ("Jobs/Deploy.gitlab-ci.yml", "Auto-DevOps"),
    ("Jobs/Deploy/EC2.gitlab-ci.yml", "Auto-DevOps"),
    ("Jobs/Deploy/ECS.gitlab-ci.yml", "Auto-DevOps"),
    ("Jobs/Helm-2to3.gitlab-ci.yml", "Auto-DevOps"),
    (
        "Jobs/Secret-Detection.gitlab-ci.yml",
        "Auto-DevOps, via Security/Secret-Detection",
    ),
    ("Security/Container-Scanning.gitlab-ci.yml", "Auto-DevOps"),
    ("Security/DAST.gitlab-ci.yml", "Auto-DevOps"),
    ("Security/Dependency-Scanning.gitlab-ci.yml", "Auto-DevOps"),
    ("Security/License-Scanning.gitlab-ci.yml", "Auto-DevOps"),
    ("Security/SAST.gitlab-ci.yml", "Auto-DevOps"),
    ("Security/Secret-Detection.gitlab-ci.yml", "Auto-DevOps"),
    (
        "Workflows/Branch-Pipelines.gitlab-ci.yml",
        "5-Minute-Production-App",
    ),
];

/// Templates of hidden jobs only, included from a minimal pipeline that declares the stages they
/// need and extends each hidden job, as their documentation tells users to: (template, pipeline).
const INCLUDED_WITH_STAGES: &[(&str, &str)] = &[(
    "Terraform/Base.gitlab-ci.yml",
    "include:\n  - template: Terraform/Base.gitlab-ci.yml\n\nstages: [validate, build, deploy, cleanup]\n\n\
     fmt: {extends: .terraform:fmt}\nvalidate: {extends: .terraform:validate}\n\
     build: {extends: .terraform:build}\ndeploy: {extends: .terraform:deploy}\n\
     cleanup: {extends: .terraform:destroy}\n",
)];

/// Templates GitLab accepts that wharf still refuses or loads differently: (template, wharf's
/// error, what GitLab does). The test fails when one of them starts loading.
const STILL_REFUSED: &[(&str, &str, &str)] = &[];

fn snapshot_name(template: &str) -> String {
    template
        .trim_end_matches(".gitlab-ci.yml")
        .replace(['/', '.'], "__")
}

fn wrapped(template: &str) -> String {
    format!(
        "include:\n  - template: {template}\n\nconcrete_build_implemented_by_a_user:\n  stage: test\n  script: do something\n"
    )
}

fn first_error(errors: &wharf_ci::Diagnostics) -> String {
    errors
        .0
        .iter()
        .find(|d| d.severity == Severity::Error)
        .map(|d| match &d.span {
            Some(s) => format!("{}:{}: {}", s.file, s.line, d.message),
            None => d.message.clone(),
        })
        .unwrap_or_default()
}

/// Loads `main` as the project's `.gitlab-ci.yml`: the job set, or wharf's first error.
fn load(main: String) -> Result<(wharf_ci::Pipeline, usize), String> {
    match load_pipeline(".gitlab-ci.yml", &Project { main }) {
        Ok(loaded) => Ok((loaded.pipeline, loaded.warnings.len())),
        Err(errors) => Err(first_error(&errors)),
    }
}

#[test]
fn sources_list_every_template_and_nothing_else() {
    let text = std::fs::read_to_string(templates().join("SOURCES.json")).unwrap();
    let sources: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut on_disk = Vec::new();
    let mut stack = vec![templates()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".gitlab-ci.yml") {
                let rel = path.strip_prefix(templates()).unwrap();
                on_disk.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    on_disk.sort();
    let listed: Vec<String> = sources.keys().cloned().collect();
    assert_eq!(on_disk, listed);
    for (path, source) in &sources {
        assert_eq!(source["repo"], "gitlabhq/gitlabhq", "{path}");
        assert_eq!(
            source["path"],
            format!("lib/gitlab/ci/templates/{path}"),
            "{path}"
        );
        assert_eq!(source["commit"].as_str().unwrap().len(), 40, "{path}");
    }
    // Every template is tested one way or another.
    for path in &listed {
        let known = SPEC_VALID.contains(&path.as_str())
            || STANDALONE_JOBS.contains(&path.as_str())
            || INCLUDED_ONLY.iter().any(|(t, _)| t == path)
            || INCLUDED_WITH_STAGES.iter().any(|(t, _)| t == path);
        assert!(known, "{path}: not placed in any list of this test");
    }
}

#[test]
fn every_template_gitlab_validates_loads() {
    let mut refused = Vec::new();
    let mut loaded = 0;
    let mut warnings = 0;
    // Each template with the main file that loads it: itself, or a pipeline giving its stages.
    let standalone = SPEC_VALID.iter().chain(STANDALONE_JOBS).map(|template| {
        let main = std::fs::read_to_string(templates().join(template)).unwrap();
        (*template, main)
    });
    let with_stages = INCLUDED_WITH_STAGES
        .iter()
        .map(|(template, main)| (*template, main.to_string()));
    for (template, main) in standalone.chain(with_stages) {
        let expected_refusal = STILL_REFUSED.iter().find(|(t, _, _)| *t == template);
        match load(main) {
            Ok((pipeline, w)) => {
                loaded += 1;
                warnings += w;
                insta::assert_snapshot!(snapshot_name(template), job_set(&pipeline));
                assert!(
                    expected_refusal.is_none(),
                    "{template} loads now: remove it from STILL_REFUSED"
                );
            }
            Err(error) => match expected_refusal {
                Some((_, known, _)) => {
                    assert_eq!(error, *known, "{template}: refused for another reason")
                }
                None => refused.push(format!("{template}: {error}")),
            },
        }
    }
    eprintln!("gitlab templates: {loaded} loaded, {warnings} warnings");
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
}

/// GitLab's templates_spec.rb: the template included, plus one job of the user's in `test`.
#[test]
fn every_template_loads_as_gitlabs_spec_includes_it() {
    let mut refused = Vec::new();
    for template in SPEC_VALID {
        let expected_refusal = STILL_REFUSED.iter().find(|(t, _, _)| t == template);
        match load(wrapped(template)) {
            Ok((pipeline, _)) => {
                for stage in [".pre", "build", "test", "deploy", ".post"] {
                    assert!(
                        pipeline.stages.iter().any(|s| s == stage),
                        "{template}: no default stage {stage}"
                    );
                }
                let user_job = "concrete_build_implemented_by_a_user";
                assert!(
                    pipeline
                        .jobs
                        .iter()
                        .any(|j| j.name == user_job && j.stage == "test"),
                    "{template}: the user's job is missing"
                );
                let own = std::fs::read_to_string(templates().join(template)).unwrap();
                if let Ok((alone, _)) = load(own) {
                    assert_eq!(
                        job_set_without(&pipeline, user_job),
                        job_set(&alone),
                        "{template}: including it gives other jobs than loading it"
                    );
                }
            }
            Err(error) => {
                if expected_refusal.is_none() {
                    refused.push(format!("{template}: {error}"));
                }
            }
        }
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
}
