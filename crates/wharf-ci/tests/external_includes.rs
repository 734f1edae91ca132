//! `include: remote/template/project/component` as wharf-ci resolves them through
//! `Loader::fetch`: what it asks for, where nested `local` includes point, chains, cycles and
//! errors. The loader here answers from memory; fetching over HTTP and git is wharf-gitlab's,
//! tested against a stand-in GitLab.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::cell::RefCell;
use std::collections::HashMap;
use wharf_ci::*;

/// The project's files plus "the network": fetched files by their `describe()`.
struct Net {
    project: HashMap<String, String>,
    remote: HashMap<External, Fetched>,
    asked: RefCell<Vec<External>>,
}

impl Loader for Net {
    fn load(&self, path: &str) -> Result<String, std::io::Error> {
        self.project
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, path.to_string()))
    }

    fn fetch(&self, file: &External) -> Result<Fetched, FetchFailure> {
        self.asked.borrow_mut().push(file.clone());
        self.remote.get(file).cloned().ok_or_else(|| FetchFailure {
            message: format!(
                "{}: 404 Not Found at https://gitlab.test/x",
                file.describe()
            ),
            help: None,
        })
    }
}

fn project(project: &str, reference: Option<&str>, file: &str) -> External {
    External::Project {
        project: project.into(),
        reference: reference.map(Into::into),
        file: file.into(),
    }
}

fn fetched(name: &str, text: &str, project: Option<(&str, &str)>) -> Fetched {
    Fetched {
        text: text.into(),
        name: name.into(),
        project: project.map(|(p, c)| (p.into(), c.into())),
    }
}

fn net(main: &str, remote: Vec<(External, Fetched)>) -> Net {
    let mut project = HashMap::new();
    project.insert(".gitlab-ci.yml".to_string(), main.to_string());
    project.insert("mine.yml".into(), "mine: {script: [m]}\n".into());
    Net {
        project,
        remote: remote.into_iter().collect(),
        asked: RefCell::new(Vec::new()),
    }
}

fn names(p: &Pipeline) -> Vec<&str> {
    p.jobs.iter().map(|j| j.name.as_str()).collect()
}

#[test]
fn every_kind_is_fetched_and_merged_with_its_chain() {
    let main = "include:
  - remote: https://example.com/ci/remote.yml
  - template: Jobs/Build.gitlab-ci.yml
  - project: group/tools
    ref: v1
    file: [/ci/a.yml, ci/b.yml]
  - component: gitlab.test/group/comps/lint@1.2
    inputs: {stage: test}
";
    let n = net(
        main,
        vec![
            (
                External::Remote {
                    url: "https://example.com/ci/remote.yml".into(),
                },
                // A remote file's local include reads the pipeline's own project.
                fetched(
                    "https://example.com/ci/remote.yml",
                    "include: mine.yml\nremote: {script: [r]}\n",
                    None,
                ),
            ),
            (
                External::Template {
                    name: "Jobs/Build.gitlab-ci.yml".into(),
                },
                fetched(
                    "template Jobs/Build.gitlab-ci.yml",
                    "build: {script: [b]}\n",
                    None,
                ),
            ),
            (
                project("group/tools", Some("v1"), "ci/a.yml"),
                // A project file's local include reads that project at the same commit.
                fetched(
                    "group/tools@v1:ci/a.yml",
                    "include: {local: /ci/inner.yml}\na: {script: [a]}\n",
                    Some(("group/tools", "c0ffee")),
                ),
            ),
            (
                project("group/tools", Some("c0ffee"), "ci/inner.yml"),
                fetched(
                    "group/tools@c0ffee:ci/inner.yml",
                    "inner: {script: [i]}\n",
                    Some(("group/tools", "c0ffee")),
                ),
            ),
            (
                project("group/tools", Some("v1"), "ci/b.yml"),
                fetched(
                    "group/tools@v1:ci/b.yml",
                    "b: {script: [b]}\n",
                    Some(("group/tools", "c0ffee")),
                ),
            ),
            (
                External::Component {
                    address: "gitlab.test/group/comps/lint@1.2".into(),
                },
                fetched(
                    "gitlab.test/group/comps/lint@1.2.3",
                    "spec:\n  inputs:\n    stage: {default: build}\n---\nlint:\n  stage: $[[ inputs.stage ]]\n  script: [l]\n",
                    Some(("group/comps", "d00d")),
                ),
            ),
        ],
    );
    let loaded = load_pipeline(".gitlab-ci.yml", &n).unwrap_or_else(|e| panic!("{e}"));
    let p = &loaded.pipeline;
    let mut got = names(p);
    got.sort_unstable();
    assert_eq!(got, ["a", "b", "build", "inner", "lint", "mine", "remote"]);
    let lint = p.jobs.iter().find(|j| j.name == "lint").unwrap();
    assert_eq!(lint.stage, "test", "the component's inputs were applied");
    assert_eq!(lint.span.file, "gitlab.test/group/comps/lint@1.2.3");
    let inner = p.included("group/tools@c0ffee:ci/inner.yml").unwrap();
    assert_eq!(inner.via, [".gitlab-ci.yml", "group/tools@v1:ci/a.yml"]);
    let mine = p.included("mine.yml").unwrap();
    assert_eq!(
        mine.via,
        [".gitlab-ci.yml", "https://example.com/ci/remote.yml"]
    );
    assert_eq!(p.includes.len(), 7);
}

#[test]
fn a_failed_fetch_is_an_error_at_the_include_with_the_fetchers_message() {
    let main = "include:\n  - project: group/tools\n    file: ci.yml\nj: {script: [x]}\n";
    let n = net(main, vec![]);
    let errs = load_pipeline(".gitlab-ci.yml", &n).unwrap_err();
    let first = &errs.0[0];
    assert_eq!(first.span.as_ref().unwrap().line, 3);
    assert_eq!(
        first.message,
        "`include:project` `group/tools` file `ci.yml`: 404 Not Found at https://gitlab.test/x"
    );
    assert_eq!(
        n.asked.borrow().as_slice(),
        [project("group/tools", None, "ci.yml")]
    );
}

#[test]
fn a_cycle_through_another_project_is_reported_once_with_its_chain() {
    let main = "include:\n  - project: g/p\n    file: a.yml\nj: {script: [x]}\n";
    let n = net(
        main,
        vec![
            (
                project("g/p", None, "a.yml"),
                fetched("g/p@main:a.yml", "include: b.yml\n", Some(("g/p", "c1"))),
            ),
            (
                project("g/p", Some("c1"), "b.yml"),
                fetched(
                    "g/p@c1:b.yml",
                    "include: {project: g/p, file: a.yml}\n",
                    Some(("g/p", "c1")),
                ),
            ),
        ],
    );
    let errs = load_pipeline(".gitlab-ci.yml", &n).unwrap_err();
    let messages: Vec<&str> = errs.0.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        ["circular `include`: g/p@main:a.yml -> g/p@c1:b.yml -> g/p:a.yml"]
    );
}

#[test]
fn one_include_with_two_sources_and_remote_without_url_are_errors() {
    let main = "include:
  - local: a.yml
    remote: https://example.com/a.yml
  - remote: ci/a.yml
  - project: g/p
j: {script: [x]}
";
    let errs = load_pipeline(".gitlab-ci.yml", &net(main, vec![])).unwrap_err();
    let messages: Vec<&str> = errs.0.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "an `include` names one file source, this one has `local` and `remote`",
            "`include` `remote` must be an http(s) URL, found `ci/a.yml`",
            "`include` `project: g/p` needs `file:` (a path or a list of paths)",
        ]
    );
}

#[test]
fn the_merged_yaml_says_where_each_included_key_came_from() {
    let main = "include:\n  - project: g/p\n    file: a.yml\nmain_job: {script: [m]}\n";
    let n = net(
        main,
        vec![(
            project("g/p", None, "a.yml"),
            fetched(
                "g/p@main:a.yml",
                "include: mine.yml\nfrom_p: {script: [p]}\n",
                None,
            ),
        )],
    );
    let yaml = merged_yaml(".gitlab-ci.yml", &n, &LoadOptions::default()).unwrap();
    assert_eq!(
        yaml,
        "# from mine.yml, included by .gitlab-ci.yml -> g/p@main:a.yml
mine:
  script:
    - m
# from g/p@main:a.yml, included by .gitlab-ci.yml
from_p:
  script:
    - p
main_job:
  script:
    - m
"
    );
}
