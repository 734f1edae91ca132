//! wharf-gitlab against the stand-in GitLab (wharf_testkit::gitlab) on loopback over TLS: every
//! include kind, component versions, tokens, the cache and `--offline`, and the git fallback.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use wharf_ci::{External, FetchFailure, Fetched, Loader};
use wharf_gitlab::{Instance, Settings, Token, TokenKind};
use wharf_testkit::gitlab::{GitLab, TOKEN};

const HOST: &str = "gitlab.test";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gitlab")
}

fn settings(server: &GitLab, cache: &Path) -> Settings {
    let mut settings = Settings::new(
        wharf_gitlab::instance_url(Some("https://gitlab.test"), None).unwrap(),
        cache.to_path_buf(),
    );
    settings.ca_file = Some(server.ca_file());
    settings.resolve = [HOST, "example.test"]
        .iter()
        .map(|h| server.resolve_arg(h).parse().unwrap())
        .collect();
    settings
}

fn project(project: &str, reference: Option<&str>, file: &str) -> External {
    External::Project {
        project: project.into(),
        reference: reference.map(Into::into),
        file: file.into(),
    }
}

fn component(address: &str) -> External {
    External::Component {
        address: address.into(),
    }
}

/// The pipeline's own files from memory; everything else from the instance.
struct Project<'a> {
    files: HashMap<&'static str, &'static str>,
    instance: &'a Instance,
}

impl Loader for Project<'_> {
    fn load(&self, path: &str) -> Result<String, std::io::Error> {
        self.files
            .get(path)
            .map(|t| t.to_string())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, path.to_string()))
    }
    fn fetch(&self, file: &External) -> Result<Fetched, FetchFailure> {
        self.instance.fetch_include(file)
    }
}

#[test]
fn every_include_kind_loads_through_wharf_ci() {
    let server = GitLab::start(&fixture()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let instance = Instance::new(settings(&server, cache.path())).unwrap();
    let main = "include:
  - remote: https://example.test/ci/remote.yml
  - template: Bash.gitlab-ci.yml
  - template: Jobs/Build.gitlab-ci.yml
  - project: Group/Tools
    file: /ci/a.yml
  - component: gitlab.test/group/comps/lint@1.2
    inputs: {stage: build}
";
    let loader = Project {
        files: HashMap::from([(".gitlab-ci.yml", main)]),
        instance: &instance,
    };
    let loaded =
        wharf_ci::load_pipeline(".gitlab-ci.yml", &loader).unwrap_or_else(|e| panic!("{e}"));
    let p = &loaded.pipeline;
    let mut jobs: Vec<&str> = p.jobs.iter().map(|j| j.name.as_str()).collect();
    jobs.sort_unstable();
    assert_eq!(
        jobs,
        [
            "bash-template",
            "build-template",
            "lint-1.2.3",
            "remote-job",
            "tools-a",
            "tools-inner"
        ]
    );
    let lint = p.jobs.iter().find(|j| j.name == "lint-1.2.3").unwrap();
    assert_eq!(lint.stage, "build");
    assert_eq!(lint.span.file, "gitlab.test/group/comps/lint@1.2.3");
    // The nested local include was read from the tools project at the commit GitLab reported.
    let commit = GitLab::commit_id(HOST, "group/tools", "master");
    let inner = p
        .included(&format!("Group/Tools@{commit}:ci/inner.yml"))
        .unwrap_or_else(|| panic!("{:?}", p.includes));
    assert_eq!(inner.via, [".gitlab-ci.yml", "Group/Tools@master:ci/a.yml"]);
    // Nested template names come from GitLab's own project, top-level ones from the templates API.
    assert_eq!(server.count("/templates/gitlab_ci_ymls/Bash"), 1);
    assert_eq!(
        server.count("gitlab-org%2Fgitlab/repository/files/lib%2Fgitlab%2Fci%2Ftemplates%2FJobs%2FBuild.gitlab-ci.yml/raw"),
        1
    );
}

/// The failure's message contains `needle` (the message is the report when not).
#[track_caller]
fn says(failure: &FetchFailure, needle: &str) {
    assert!(failure.message.contains(needle), "{}", failure.message);
}

fn fetch_name(instance: &Instance, file: &External) -> String {
    match instance.fetch_include(file) {
        Ok(f) => f.name,
        Err(e) => panic!("{}\nhelp: {:?}", e.message, e.help),
    }
}

#[test]
fn component_versions_resolve_as_gitlab_does() {
    let server = GitLab::start(&fixture()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let instance = Instance::new(settings(&server, cache.path())).unwrap();
    let sha = GitLab::commit_id(HOST, "group/comps", "1.0.0");
    for (version, resolved) in [
        ("~latest", "2.0.0"), // the highest release (2.1.0-rc.1 is a pre-release, not released)
        ("1", "1.2.3"),
        ("1.2", "1.2.3"),
        ("1.0.0", "1.0.0"),
        ("main", "main"),
        (sha.as_str(), sha.as_str()),
    ] {
        let got = fetch_name(
            &instance,
            &component(&format!("gitlab.test/group/comps/lint@{version}")),
        );
        assert_eq!(
            got,
            format!("gitlab.test/group/comps/lint@{resolved}"),
            "{version}"
        );
    }
    // `templates/<name>/template.yml` when there is no `templates/<name>.yml`.
    let build = instance
        .fetch_include(&component("gitlab.test/group/comps/build@2.0.0"))
        .unwrap();
    assert_eq!(build.text, "build-2.0.0:\n  script: [echo build 2.0.0]\n");
    let commit = GitLab::commit_id(HOST, "group/comps", "2.0.0");
    assert_eq!(build.project, Some(("group/comps".into(), commit)));

    let missing = instance
        .fetch_include(&component("gitlab.test/group/comps/lint@3"))
        .unwrap_err();
    says(
        &missing,
        "matches `3`; its tags: 1.0.0, 1.2.0, 1.2.3, 2.0.0, 2.1.0-rc.1",
    );
    let missing = instance
        .fetch_include(&component("gitlab.test/group/comps/lint@9.9.9"))
        .unwrap_err();
    says(&missing, "its tags: 1.0.0");
    says(&missing, "404");

    let elsewhere = instance
        .fetch_include(&component("gitlab.example.com/group/comps/lint@1"))
        .unwrap_err();
    says(&elsewhere, "the GitLab instance is `gitlab.test`");
}

#[test]
fn a_private_project_needs_a_token_which_never_shows_and_stays_on_the_instance() {
    let server = GitLab::start(&fixture()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let private = project("group/private", None, "ci.yml");

    let anonymous = Instance::new(settings(&server, cache.path())).unwrap();
    let refused = anonymous.fetch_include(&private).unwrap_err();
    says(&refused, "404 (404 Project Not Found)");
    assert!(refused.message.contains(
        "https://gitlab.test/api/v4/projects/group%2Fprivate/repository/files/ci.yml/raw"
    ));
    assert!(
        refused
            .help
            .as_deref()
            .unwrap()
            .contains("--gitlab-token-file")
    );

    let mut with_token = settings(&server, cache.path());
    with_token.token = Some(Token::new(TokenKind::Private, TOKEN));
    assert!(!format!("{with_token:?}").contains(TOKEN));
    let instance = Instance::new(with_token).unwrap();
    let got = instance.fetch_include(&private).unwrap();
    assert_eq!(got.name, "group/private@main:ci.yml");
    // A failing fetch with the token: the token is nowhere in what the user sees.
    let failed = instance
        .fetch_include(&project("group/private", None, "nope.yml"))
        .unwrap_err();
    let shown = format!("{failed:?} {} {:?}", failed.message, failed.help);
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("PRIVATE-TOKEN token was sent"), "{shown}");
    // remote: on another host gets no token; the instance's host always does.
    instance
        .fetch_include(&External::Remote {
            url: "https://example.test/ci/remote.yml".into(),
        })
        .unwrap();
    for request in server.requests() {
        match request.host.as_str() {
            HOST => {}
            _ => assert_eq!(request.token, None, "{request:?}"),
        }
    }
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.token.as_deref() == Some(TOKEN))
    );
}

#[test]
fn tags_and_shas_come_from_the_cache_branches_are_rechecked_and_offline_uses_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let tag = project("group/tools", Some("v1"), "ci/a.yml");
    let branch = project("group/tools", Some("master"), "ci/a.yml");
    let sha = GitLab::commit_id(HOST, "group/tools", "master");
    let at_sha = project("group/tools", Some(&sha), "ci/inner.yml");
    let remote = External::Remote {
        url: "https://example.test/ci/remote.yml".into(),
    };
    let all = [&tag, &branch, &at_sha, &remote];
    let first: Vec<Fetched>;
    let port;
    {
        let server = GitLab::start(&fixture()).unwrap();
        port = server.port();
        let instance = Instance::new(settings(&server, cache.path())).unwrap();
        first = all
            .iter()
            .map(|f| instance.fetch_include(f).unwrap())
            .collect();
        // A second process: the tag and the SHA ask nothing; the branch and remote URL ask
        // with the ETag they got and are answered 304.
        let before = server.requests().len();
        let again = Instance::new(settings(&server, cache.path())).unwrap();
        let second: Vec<Fetched> = all
            .iter()
            .map(|f| again.fetch_include(f).unwrap())
            .collect();
        assert_eq!(first, second);
        let asked: Vec<_> = server.requests()[before..].to_vec();
        assert_eq!(asked.len(), 2, "{asked:#?}");
        assert!(
            asked.iter().all(|r| r.if_none_match.is_some()),
            "{asked:#?}"
        );
        assert!(asked[0].path.contains("ref=master"));
        assert!(asked[1].path.ends_with("/ci/remote.yml"));
    }
    // The server is gone (its port refuses connections). --offline serves everything from
    // the cache.
    let mut offline = Settings::new(
        wharf_gitlab::instance_url(Some("https://gitlab.test"), None).unwrap(),
        cache.path().to_path_buf(),
    );
    offline.resolve = [HOST, "example.test"]
        .iter()
        .map(|h| format!("{h}=127.0.0.1:{port}").parse().unwrap())
        .collect();
    offline.offline = true;
    let instance = Instance::new(offline.clone()).unwrap();
    let got: Vec<Fetched> = all
        .iter()
        .map(|f| instance.fetch_include(f).unwrap())
        .collect();
    assert_eq!(got, first);
    let miss = instance
        .fetch_include(&project("group/tools", Some("master"), "ci/other.yml"))
        .unwrap_err();
    says(&miss, "--offline and the include cache");
    says(&miss, "group/tools file ci/other.yml at master");
    assert!(miss.help.unwrap().contains("run once without --offline"));

    // Online but unreachable: the cached copy of the branch is used, with a warning.
    offline.offline = false;
    let instance = Instance::new(offline).unwrap();
    assert_eq!(instance.fetch_include(&branch).unwrap(), first[1]);
    let warnings = instance.take_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("using the copy in the include cache"),
        "{warnings:?}"
    );
}

#[test]
fn git_fallback_reads_project_files_when_the_api_is_missing() {
    let server = GitLab::start_with_git(&fixture()).unwrap();
    server.set_api_down(true);
    let cache = tempfile::tempdir().unwrap();
    // curl (git) cannot move a port with --resolve: name the port in the URL.
    let mut settings = settings(&server, cache.path());
    settings.url = wharf_gitlab::instance_url(
        Some(&format!("https://gitlab.test:{}", server.port())),
        None,
    )
    .unwrap();
    let instance = Instance::new(settings).unwrap();
    let got = instance
        .fetch_include(&project("group/tools", Some("v1"), "ci/a.yml"))
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(
        got.text,
        "include:\n  - local: /ci/inner.yml\ntools-a:\n  script: [echo v1]\n"
    );
    let (name, commit) = got.project.unwrap();
    assert_eq!(name, "group/tools");
    assert_eq!(commit.len(), 40);
    // The nested local include at that commit, by SHA.
    let inner = instance
        .fetch_include(&project("group/tools", Some(&commit), "ci/inner.yml"))
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(inner.text, "tools-inner-v1:\n  script: [echo inner v1]\n");
    assert!(server.count("/group/tools.git/") >= 2);

    // Components too: the project is before the last `/`, versions are the git tags.
    let address = format!("gitlab.test:{}/group/comps/lint@1.2", server.port());
    let lint = instance
        .fetch_include(&component(&address))
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(
        lint.name,
        format!("gitlab.test:{}/group/comps/lint@1.2.3", server.port())
    );

    let missing = instance
        .fetch_include(&project("group/tools", Some("v1"), "ci/none.yml"))
        .unwrap_err();
    says(&missing, "404");
    says(&missing, "; then git show ci/none.yml");
}

#[test]
fn template_errors_list_every_url_tried() {
    let server = GitLab::start(&fixture()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let instance = Instance::new(settings(&server, cache.path())).unwrap();
    let err = instance
        .fetch_include(&External::Template {
            name: "Nope.gitlab-ci.yml".into(),
        })
        .unwrap_err();
    says(&err, "/api/v4/templates/gitlab_ci_ymls/Nope: 404");
    says(
        &err,
        "/api/v4/projects/gitlab-org%2Fgitlab/repository/files/lib%2Fgitlab%2Fci%2Ftemplates%2FNope.gitlab-ci.yml/raw: 404",
    );
}

#[test]
fn an_instance_is_used_and_dropped_inside_the_callers_async_runtime() {
    let server = GitLab::start(&fixture()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(&server, cache.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let instance = Instance::new(settings).unwrap();
        let got = instance.fetch_include(&project("group/tools", None, "ci/a.yml"));
        assert_eq!(got.unwrap().name, "group/tools@master:ci/a.yml");
        drop(instance);
    });
}

#[test]
fn a_ca_file_without_certificates_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let mut settings = Settings::new(
        wharf_gitlab::instance_url(None, None).unwrap(),
        dir.path().join("cache"),
    );
    settings.ca_file = Some(ca);
    let error = Instance::new(settings).err().unwrap().to_string();
    assert!(error.starts_with("--gitlab-ca-file "), "{error}");
    assert!(error.ends_with("no PEM certificate in the file"), "{error}");
}

#[test]
fn redirects_are_followed_to_https_only_and_the_token_stays_on_the_instance() {
    let server = GitLab::start(&fixture()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut with_token = settings(&server, cache.path());
    with_token.token = Some(Token::new(TokenKind::Job, TOKEN));
    let instance = Instance::new(with_token).unwrap();
    let remote = |url: &str| External::Remote { url: url.into() };

    let got = instance
        .fetch_include(&remote("https://gitlab.test/r/to-example"))
        .unwrap();
    assert_eq!(got.text, "remote-job:\n  script: [echo remote]\n");
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(
        (requests[0].host.as_str(), requests[0].token.as_deref()),
        (HOST, Some(TOKEN))
    );
    assert_eq!(
        (requests[1].host.as_str(), requests[1].token.as_deref()),
        ("example.test", None)
    );

    let refused = instance
        .fetch_include(&remote("https://gitlab.test/r/to-http"))
        .unwrap_err();
    says(
        &refused,
        "302 Found to http://example.test/ci/remote.yml: wharf follows redirects to https only",
    );
    assert_eq!(server.requests().len(), 3, "nothing was asked over http");
}

#[test]
fn a_file_over_the_size_limit_and_a_bad_template_name_are_refused() {
    let server = GitLab::start(&fixture()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut small = settings(&server, cache.path());
    small.max_file_bytes = 10;
    let instance = Instance::new(small).unwrap();
    let too_large = instance
        .fetch_include(&External::Remote {
            url: "https://example.test/ci/remote.yml".into(),
        })
        .unwrap_err();
    says(
        &too_large,
        "https://example.test/ci/remote.yml: the file is larger than 10 bytes (--max-yaml-size)",
    );
    let not_a_template = instance
        .fetch_include(&External::Template {
            name: "Bash.yml".into(),
        })
        .unwrap_err();
    says(
        &not_a_template,
        "a template name ends with `.gitlab-ci.yml`",
    );
    assert_eq!(server.count("Bash"), 0);
}

/// GitLab's lists are paginated (at most 100 a page): a component's versions are read page
/// after page, so `~latest` and partial versions see every tag.
#[test]
fn component_versions_come_from_every_page_of_the_tags() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join(HOST).join("group/many");
    let mut refs = serde_json::Map::new();
    for minor in 0..130 {
        let tag = format!("1.{minor}.0");
        let file = project.join(&tag).join("templates/lint.yml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, format!("lint-{tag}:\n  script: [x]\n")).unwrap();
        refs.insert(tag, "tag".into());
    }
    std::fs::write(
        project.join("refs.json"),
        serde_json::json!({"default_branch": "1.0.0", "refs": refs}).to_string(),
    )
    .unwrap();
    let server = GitLab::start(root.path()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let instance = Instance::new(settings(&server, cache.path())).unwrap();
    for version in ["~latest", "1"] {
        assert_eq!(
            fetch_name(
                &instance,
                &component(&format!("gitlab.test/group/many/lint@{version}"))
            ),
            "gitlab.test/group/many/lint@1.129.0",
            "{version}"
        );
    }
    assert!(server.count("page=2") >= 1, "the second page was read");
}
