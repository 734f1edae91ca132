//! wharf-ci behaviour through its public API, with an in-memory loader.

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
