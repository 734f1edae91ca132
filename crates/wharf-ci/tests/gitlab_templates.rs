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
//! `Security/` and `Workflows/` are meant to be included: GitLab tests them through the templates
//! that include them (`Auto-DevOps.gitlab-ci.yml`, `5-Minute-Production-App.gitlab-ci.yml`), the
//! ones GitLab's `Jobs/*_spec.rb` files use as a project's whole CI file are loaded that way too,
//! and the others are included from a small pipeline declaring the stages their jobs name.
//! Templates today's GitLab refuses (stored versions older than a keyword's removal, templates
//! of hidden jobs only as a whole file, templates_spec.rb's exceptions) must be refused here too.
//!
//! A new template's job set is written as a snapshot with
//! `INSTA_UPDATE=always cargo test -p wharf-ci --test gitlab_templates`; review the new
//! `tests/snapshots/gitlab_templates__*.snap` files before committing them.
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
/// collected here). The top folder, `Pages/` and `Verify/` are its categories; `Security/` joins
/// them (GitLabCiYmlTemplate.include_categories_for_file adds the Security category once
/// `SAST.gitlab-ci.yml` is looked up, and templates_spec.rb lists Security templates among its
/// exceptions), so the Security templates that need no stage of their own are here too.
const SPEC_VALID: &[&str] = &[
    "5-Minute-Production-App.gitlab-ci.yml",
    "Android-Fastlane.gitlab-ci.yml",
    "Android.gitlab-ci.yml",
    "Auto-DevOps.gitlab-ci.yml",
    "Bash.gitlab-ci.yml",
    "C++.gitlab-ci.yml",
    "Chef.gitlab-ci.yml",
    "Clojure.gitlab-ci.yml",
    "Code-Quality.gitlab-ci.yml",
    "Composer.gitlab-ci.yml",
    "Cosign.gitlab-ci.yml",
    "Crystal.gitlab-ci.yml",
    "Dart.gitlab-ci.yml",
    // Deprecated: its one job says the template moved and exits 1; GitLab still validates it.
    "Deploy-ECS.gitlab-ci.yml",
    "Django.gitlab-ci.yml",
    "Docker.gitlab-ci.yml",
    "Elixir.gitlab-ci.yml",
    "Flutter.gitlab-ci.yml",
    "Getting-Started.gitlab-ci.yml",
    "Go.gitlab-ci.yml",
    "Gradle.gitlab-ci.yml",
    "Grails.gitlab-ci.yml",
    "Hello-World.gitlab-ci.yml",
    "Indeni.Cloudrail.gitlab-ci.yml",
    "Julia.gitlab-ci.yml",
    "Kaniko.gitlab-ci.yml",
    "LaTeX.gitlab-ci.yml",
    "Laravel.gitlab-ci.yml",
    "MATLAB.gitlab-ci.yml",
    // Removed from GitLab since (managed apps); templates_spec.rb validated it while it existed.
    "Managed-Cluster-Applications.gitlab-ci.yml",
    "Maven.gitlab-ci.yml",
    "Mono.gitlab-ci.yml",
    "Nodejs.gitlab-ci.yml",
    "OpenShift.gitlab-ci.yml",
    "PHP.gitlab-ci.yml",
    "Packer.gitlab-ci.yml",
    "Pages/Brunch.gitlab-ci.yml",
    "Pages/Doxygen.gitlab-ci.yml",
    "Pages/Gatsby.gitlab-ci.yml",
    "Pages/HTML.gitlab-ci.yml",
    "Pages/Harp.gitlab-ci.yml",
    "Pages/Hexo.gitlab-ci.yml",
    "Pages/Hugo.gitlab-ci.yml",
    "Pages/Hyde.gitlab-ci.yml",
    "Pages/JBake.gitlab-ci.yml",
    "Pages/Jekyll.gitlab-ci.yml",
    "Pages/Jigsaw.gitlab-ci.yml",
    "Pages/Lektor.gitlab-ci.yml",
    "Pages/Metalsmith.gitlab-ci.yml",
    "Pages/Middleman.gitlab-ci.yml",
    "Pages/Nanoc.gitlab-ci.yml",
    "Pages/Octopress.gitlab-ci.yml",
    "Pages/Pelican.gitlab-ci.yml",
    "Pages/SwaggerUI.gitlab-ci.yml",
    "Pages/Zola.gitlab-ci.yml",
    "Python.gitlab-ci.yml",
    "Qualys-IaC-Security.gitlab-ci.yml",
    "Rust.gitlab-ci.yml",
    "Scala.gitlab-ci.yml",
    "Security/Cluster-Image-Scanning.gitlab-ci.yml",
    // Its fuzzing jobs are hidden (`.fuzz_base`, stage fuzz); its one visible job is in `.pre`.
    "Security/Coverage-Fuzzing.gitlab-ci.yml",
    // These three declare `stages` with `dast` themselves ("intended for internal GitLab use").
    "Security/DAST-On-Demand-API-Scan.gitlab-ci.yml",
    "Security/DAST-On-Demand-Scan.gitlab-ci.yml",
    "Security/DAST-Runner-Validation.gitlab-ci.yml",
    "Security/Fortify-FoD-sast.gitlab-ci.yml",
    "Security/SAST-IaC.gitlab-ci.yml",
    "Security/Secure-Binaries.gitlab-ci.yml",
    "Swift.gitlab-ci.yml",
    // An older templates_spec.rb (22e9f240) excluded this one by name; the newer one (8bee0028)
    // no longer does.
    "Terraform-Module.gitlab-ci.yml",
    "Terraform.gitlab-ci.yml",
    "Verify/Accessibility.gitlab-ci.yml",
    "Verify/FailFast.gitlab-ci.yml",
    "Verify/Load-Performance-Testing.gitlab-ci.yml",
    "dotNET-Core.gitlab-ci.yml",
    "dotNET.gitlab-ci.yml",
    "iOS-Fastlane.gitlab-ci.yml",
    "npm.gitlab-ci.yml",
];

/// Templates of templates_spec.rb's list that hold hidden jobs only. They are loaded only as
/// GitLab's spec includes them (with the user's job): as a project's whole `.gitlab-ci.yml`
/// GitLab refuses them ("jobs config should contain at least one visible job", Entry::Jobs).
const SPEC_VALID_HIDDEN_JOBS_ONLY: &[&str] = &[
    "Katalon.gitlab-ci.yml",
    "Security/API-Discovery.gitlab-ci.yml",
    // Removed from GitLab since; templates_spec.rb validated it while it existed.
    "Serverless.gitlab-ci.yml",
];

/// Templates of SPEC_VALID whose stored version lacks one of GitLab's default stages, which
/// templates_spec.rb's 'require default stages to be included' asks of them: valid pipelines all
/// the same (the check is the spec's, not GitLab's validation); newer versions add the stage.
const WITHOUT_DEFAULT_STAGES: &[&str] = &[
    // stages: [test, build] (5c583c8e)
    "Go.gitlab-ci.yml",
    // stages: [test, review, staging, production, cleanup] (e32c82ed)
    "OpenShift.gitlab-ci.yml",
];

/// templates_spec.rb's `exceptions`: templates it does not include with the default stages,
/// with its reason and the stages its "with defined stages" contexts add. Each is loaded as
/// those contexts do (the template, those stages, the user's job; no stages: the template as a
/// project's whole `.gitlab-ci.yml`), and as the spec includes it with the default stages,
/// which GitLab refuses: the user's job names stage `test`, not in the template's `stages`, or
/// the template's job names a stage the default stages lack.
const SPEC_EXCEPTIONS: &[(&str, &str, &[&str])] = &[
    ("Diffblue-Cover.gitlab-ci.yml", "no auto-devops", &[]),
    (
        "Security/API-Fuzzing.gitlab-ci.yml",
        "no auto-devops",
        &["build", "test", "deploy", "fuzz"],
    ),
    (
        "Security/API-Security.gitlab-ci.yml",
        "no auto-decops",
        &["build", "test", "deploy", "dast"],
    ),
    (
        "Security/DAST-API.gitlab-ci.yml",
        "no auto-devops",
        &["build", "test", "deploy", "dast"],
    ),
    (
        "Security/DAST.gitlab-ci.yml",
        "DAST stage is defined inside AutoDevops yml",
        &["build", "test", "deploy", "dast"],
    ),
    (
        "ThemeKit.gitlab-ci.yml",
        "(no reason given; its stages are deploy:staging and deploy:production)",
        &[],
    ),
];

/// Templates GitLab's own `Jobs/*_spec.rb` files use as a project's whole `.gitlab-ci.yml`.
const STANDALONE_JOBS: &[&str] = &[
    "Jobs/Build.gitlab-ci.yml",
    "Jobs/Code-Quality.gitlab-ci.yml",
    "Jobs/Test.gitlab-ci.yml",
];

/// Templates outside templates_spec.rb's categories (`AWS/`, `Database/`, and `.latest.`
/// versions, which GitLabCiYmlTemplate.excluded_patterns hides from its list) that are a
/// project's whole `.gitlab-ci.yml`, as their own specs (AWS/deploy_ecs_gitlab_ci_yaml_spec.rb,
/// terraform_latest_gitlab_ci_yaml_spec.rb) or their comments say.
const STANDALONE_OTHER: &[&str] = &[
    "AWS/CF-Provision-and-Deploy-EC2.gitlab-ci.yml",
    "AWS/Deploy-ECS.gitlab-ci.yml",
    "Android.latest.gitlab-ci.yml",
    "Database/liquibase.gitlab-ci.yml",
    "OpenTofu.latest.gitlab-ci.yml",
    "Terraform.latest.gitlab-ci.yml",
    // GitLabCiYmlTemplate.additional_excluded_patterns leaves these out of templates_spec.rb.
    "Verify/Browser-Performance.gitlab-ci.yml",
    "Verify/Browser-Performance.latest.gitlab-ci.yml",
];

/// Collected templates that are only included by others, and what loads them here.
const INCLUDED_ONLY: &[(&str, &str)] = &[
    (
        "Jobs/Browser-Performance-Testing.gitlab-ci.yml",
        "Auto-DevOps",
    ),
    (
        "Jobs/CF-Provision.gitlab-ci.yml",
        "AWS/CF-Provision-and-Deploy-EC2",
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
        "Jobs/Container-Scanning.latest.gitlab-ci.yml",
        "Security/Container-Scanning.latest",
    ),
    (
        "Jobs/Multi-Container-Scanning.latest.gitlab-ci.yml",
        "Security/Multi-Container-Scanning.latest",
    ),
    (
        "Jobs/SAST-IaC.gitlab-ci.yml",
        "Terraform-Module, Security/SAST-IaC",
    ),
    ("Jobs/SAST-IaC.latest.gitlab-ci.yml", "Terraform.latest"),
    (
        "Jobs/Secret-Detection.gitlab-ci.yml",
        "Auto-DevOps, via Security/Secret-Detection",
    ),
    ("OpenTofu/Base.latest.gitlab-ci.yml", "OpenTofu.latest"),
    ("Security/Container-Scanning.gitlab-ci.yml", "Auto-DevOps"),
    ("Security/Dependency-Scanning.gitlab-ci.yml", "Auto-DevOps"),
    ("Security/License-Scanning.gitlab-ci.yml", "Auto-DevOps"),
    ("Security/SAST.gitlab-ci.yml", "Auto-DevOps"),
    ("Security/Secret-Detection.gitlab-ci.yml", "Auto-DevOps"),
    ("Terraform/Base.latest.gitlab-ci.yml", "Terraform.latest"),
    ("Terraform/Module-Base.gitlab-ci.yml", "Terraform-Module"),
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

/// Templates meant to be included that no collected template includes, each included alone from
/// a pipeline declaring the stages its jobs name (none: GitLab's default stages): (template,
/// stages). `Workflows/*` hold only `workflow:`, so the pipeline adds one job of the user's.
const INCLUDED_WITH_STAGE_NAMES: &[(&str, &[&str])] = &[
    (
        "Jobs/Browser-Performance-Testing.latest.gitlab-ci.yml",
        &["build", "test", "deploy", "performance"],
    ),
    ("Jobs/Build.latest.gitlab-ci.yml", &[]),
    ("Jobs/Container-Scanning.gitlab-ci.yml", &[]),
    (
        "Jobs/DAST.gitlab-ci.yml",
        &["build", "test", "deploy", "dast"],
    ),
    ("Jobs/Dependency-Scanning.gitlab-ci.yml", &[]),
    ("Jobs/Dependency-Scanning.latest.gitlab-ci.yml", &[]),
    ("Jobs/Dependency-Scanning.v2.gitlab-ci.yml", &[]),
    ("Jobs/Deploy.latest.gitlab-ci.yml", AUTO_DEVOPS_STAGES),
    ("Jobs/License-Scanning.gitlab-ci.yml", &[]),
    ("Jobs/License-Scanning.latest.gitlab-ci.yml", &[]),
    (
        "Jobs/Load-Performance-Testing.gitlab-ci.yml",
        &["build", "test", "deploy", "performance"],
    ),
    (
        "Security/API-Fuzzing.latest.gitlab-ci.yml",
        &["build", "test", "deploy", "fuzz"],
    ),
    (
        "Security/API-Security.latest.gitlab-ci.yml",
        &["build", "test", "deploy", "dast"],
    ),
    (
        "Security/BAS.latest.gitlab-ci.yml",
        &["build", "test", "deploy", "dast"],
    ),
    ("Security/Container-Scanning.latest.gitlab-ci.yml", &[]),
    ("Security/Coverage-Fuzzing.latest.gitlab-ci.yml", &[]),
    (
        "Security/DAST-API.latest.gitlab-ci.yml",
        &["build", "test", "deploy", "dast"],
    ),
    (
        "Security/DAST.latest.gitlab-ci.yml",
        &["build", "test", "deploy", "dast"],
    ),
    (
        "Security/Multi-Container-Scanning.latest.gitlab-ci.yml",
        &[],
    ),
    ("Security/SAST-IaC.latest.gitlab-ci.yml", &[]),
    ("Jobs/SAST.gitlab-ci.yml", &[]),
    ("Jobs/SAST.latest.gitlab-ci.yml", &[]),
    ("Jobs/Secret-Detection.latest.gitlab-ci.yml", &[]),
    ("Workflows/MergeRequest-Pipelines.gitlab-ci.yml", &[]),
];

/// The stages Auto-DevOps.gitlab-ci.yml declares, for the jobs templates written for it.
const AUTO_DEVOPS_STAGES: &[&str] = &[
    "build",
    "test",
    "deploy",
    "review",
    "dast",
    "staging",
    "canary",
    "production",
    "incremental rollout 10%",
    "incremental rollout 25%",
    "incremental rollout 50%",
    "incremental rollout 100%",
    "performance",
    "cleanup",
];

/// Collected versions that today's GitLab refuses, and wharf must refuse too: (template, main
/// pipeline (`None`: the template itself), wharf's error, GitLab's reason).
const GITLAB_REFUSES: &[(&str, Option<&str>, &str, &str)] = &[
    (
        "Beta/Auto-DevOps.gitlab-ci.yml",
        None,
        "templates/Security/License-Management.gitlab-ci.yml:21: unknown key `license_management` \
         in `artifacts` of job `license_management` `reports`",
        "removed from GitLab (a 12.x beta); it includes Security/License-Management, refused below",
    ),
    (
        "Ruby.gitlab-ci.yml",
        None,
        ".gitlab-ci.yml:54: unknown keyword `type` in job `deploy`",
        "this stored version (e8d2c257) still has `type: deploy`; GitLab dropped the `type` \
         keyword: Entry::Job::ALLOWED_KEYS and Processable::PROCESSABLE_ALLOWED_KEYS (gitlabhq \
         7e202c4f, gisia) have no `type`, so AllowedKeysValidator refuses it",
    ),
    (
        "Security/License-Management.gitlab-ci.yml",
        Some(
            "include:\n  - template: Security/License-Management.gitlab-ci.yml\n\n\
             concrete_build_implemented_by_a_user:\n  stage: test\n  script: do something\n",
        ),
        "templates/Security/License-Management.gitlab-ci.yml:21: unknown key `license_management` \
         in `artifacts` of job `license_management` `reports`",
        "deprecated (12.x), removed since: `artifacts:reports:license_management` is not in \
         Entry::Reports::ALLOWED_KEYS (gisia lib/gitlab/ci/config/entry/reports.rb:21-26), so \
         GitLab refuses the job as templates_spec.rb includes it",
    ),
];

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

/// The pipeline of INCLUDED_WITH_STAGE_NAMES: the template, the stages, and the user's job of
/// templates_spec.rb.
fn with_stage_names(template: &str, stages: &[&str]) -> String {
    let stages = if stages.is_empty() {
        String::new()
    } else {
        format!("stages: [{}]\n\n", stages.join(", "))
    };
    format!(
        "include:\n  - template: {template}\n\n{stages}concrete_build_implemented_by_a_user:\n  stage: test\n  script: do something\n"
    )
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
    // Every template is tested one way or another, and in one list only.
    for path in &listed {
        let path = path.as_str();
        let places = [
            SPEC_VALID.contains(&path),
            SPEC_VALID_HIDDEN_JOBS_ONLY.contains(&path),
            SPEC_EXCEPTIONS.iter().any(|(t, _, _)| *t == path),
            STANDALONE_JOBS.contains(&path),
            STANDALONE_OTHER.contains(&path),
            INCLUDED_ONLY.iter().any(|(t, _)| *t == path),
            INCLUDED_WITH_STAGES.iter().any(|(t, _)| *t == path),
            INCLUDED_WITH_STAGE_NAMES.iter().any(|(t, _)| *t == path),
            GITLAB_REFUSES.iter().any(|(t, _, _, _)| *t == path),
        ];
        let count = places.iter().filter(|p| **p).count();
        assert_eq!(count, 1, "{path}: in {count} lists of this test, not one");
    }
}

#[test]
fn every_template_gitlab_validates_loads() {
    let mut refused = Vec::new();
    let mut loaded = 0;
    let mut warnings = 0;
    // Each template with the main file that loads it: itself, or a pipeline giving its stages.
    let exceptions = SPEC_EXCEPTIONS
        .iter()
        .filter(|(_, _, stages)| stages.is_empty())
        .map(|(t, _, _)| t);
    let standalone = SPEC_VALID
        .iter()
        .chain(exceptions)
        .chain(STANDALONE_JOBS)
        .chain(STANDALONE_OTHER)
        .map(|template| {
            let main = std::fs::read_to_string(templates().join(template)).unwrap();
            (*template, main)
        });
    let with_stages = INCLUDED_WITH_STAGES
        .iter()
        .map(|(template, main)| (*template, main.to_string()));
    let exceptions_with_stages = SPEC_EXCEPTIONS
        .iter()
        .filter(|(_, _, stages)| !stages.is_empty())
        .map(|(template, _, stages)| (template, stages));
    let with_stage_names = INCLUDED_WITH_STAGE_NAMES
        .iter()
        .map(|(template, stages)| (template, stages))
        .chain(exceptions_with_stages)
        .map(|(template, stages)| (*template, with_stage_names(template, stages)));
    for (template, main) in standalone.chain(with_stages).chain(with_stage_names) {
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
    for template in SPEC_VALID.iter().chain(SPEC_VALID_HIDDEN_JOBS_ONLY) {
        let expected_refusal = STILL_REFUSED.iter().find(|(t, _, _)| t == template);
        match load(wrapped(template)) {
            Ok((pipeline, _)) => {
                let lacks_default_stage = [".pre", "build", "test", "deploy", ".post"]
                    .iter()
                    .any(|stage| !pipeline.stages.iter().any(|s| s == stage));
                assert_eq!(
                    lacks_default_stage,
                    WITHOUT_DEFAULT_STAGES.contains(template),
                    "{template}: stages {:?}",
                    pipeline.stages
                );
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

/// What GitLab refuses wharf refuses: templates_spec.rb's exceptions included with the default
/// stages, templates of hidden jobs only as a whole `.gitlab-ci.yml`, and the stored versions
/// today's GitLab refuses.
#[test]
fn what_gitlab_refuses_is_refused() {
    let mut accepted = Vec::new();
    for (template, _, _) in SPEC_EXCEPTIONS {
        if load(wrapped(template)).is_ok() {
            accepted.push(format!("{template}, included as templates_spec.rb does"));
        }
    }
    for template in SPEC_VALID_HIDDEN_JOBS_ONLY {
        let own = std::fs::read_to_string(templates().join(template)).unwrap();
        if load(own).is_ok() {
            accepted.push(format!("{template}, alone (it has no visible job)"));
        }
    }
    for (template, main, error, _) in GITLAB_REFUSES {
        let main = match main {
            Some(main) => main.to_string(),
            None => std::fs::read_to_string(templates().join(template)).unwrap(),
        };
        match load(main) {
            Ok(_) => accepted.push(template.to_string()),
            Err(e) => assert_eq!(e, *error, "{template}: refused for another reason"),
        }
    }
    assert!(accepted.is_empty(), "accepted:\n{}", accepted.join("\n"));
}
