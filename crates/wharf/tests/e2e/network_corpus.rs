//! The public corpus's pipelines that include files from GitLab instances (components, other
//! projects, remote URLs, templates): their dependencies are mirrored in
//! `crates/wharf-ci/tests/public-corpus/_gitlab/` and served by the stand-in GitLab on loopback
//! under their real host names (`--resolve`, its own CA). Each must load through `wharf list`
//! with the job set GitLab creates, kept as a snapshot.

use crate::support::Run;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use wharf_testkit::gitlab::GitLab;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wharf-ci/tests/public-corpus")
}

/// (repository, gitlab_url) of every entry whose includes come from the mirror.
fn network_entries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(corpus().join("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "network")
        .map(|e| {
            (
                e["repo"].as_str().unwrap().to_string(),
                e["gitlab_url"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every host the mirror serves (GitLab instances and plain remote hosts).
fn mirrored_hosts() -> Vec<String> {
    let mirror = corpus().join("_gitlab");
    let mut hosts = Vec::new();
    for entry in std::fs::read_dir(&mirror).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name == "_remote" {
            for remote in std::fs::read_dir(mirror.join("_remote")).unwrap() {
                hosts.push(remote.unwrap().file_name().to_string_lossy().into_owned());
            }
        } else if !name.ends_with(".json") {
            hosts.push(name);
        }
    }
    hosts
}

/// `folder` copied under `into` as the one commit of a git repository of its own, on branch
/// main. Run in place, the pipelines' `rules:changes` saw wharf's own work tree: an edited or
/// new `*.sh` or `*.py` file anywhere in it created GNOME/glib's `sh-and-py-check` job.
fn committed_copy(folder: &Path, into: &Path) -> PathBuf {
    let copy = into.join(folder.file_name().unwrap());
    for entry in walkdir::WalkDir::new(folder) {
        let entry = entry.unwrap();
        let to = copy.join(entry.path().strip_prefix(folder).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=corpus",
            "-c",
            "user.email=corpus@example.invalid",
            "commit",
            "-qm",
            "corpus",
        ],
    ] {
        let status = Command::new("git")
            .args(args)
            .current_dir(&copy)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?} in {}", copy.display());
    }
    copy
}

/// Stage -> jobs, as `wharf list --json` says GitLab would create them.
fn job_set(list_json: &str) -> String {
    let mut by_stage: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for line in list_json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let stage = v["stage"].as_str().unwrap().to_string();
        if !order.contains(&stage) {
            order.push(stage.clone());
        }
        let mark = if v["included"] == true {
            ""
        } else {
            " (not created)"
        };
        by_stage
            .entry(stage)
            .or_default()
            .push(format!("{}{mark}", v["job"].as_str().unwrap()));
    }
    order
        .iter()
        .map(|s| format!("{s}: {}\n", by_stage[s].join(", ")))
        .collect()
}

#[test]
fn every_network_pipeline_of_the_public_corpus_loads_through_the_stand_in_gitlab() {
    let entries = network_entries();
    assert!(
        entries.len() >= 45,
        "the mirror lost pipelines: {}",
        entries.len()
    );
    let server = GitLab::start(&corpus().join("_gitlab")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let hosts = mirrored_hosts();
    let mut refused = Vec::new();
    let projects = tempfile::tempdir().unwrap();
    for (repo, gitlab_url) in &entries {
        let folder = committed_copy(&corpus().join(repo.replace('/', "__")), projects.path());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.args(["list", "--json", "-C"])
            .arg(&folder)
            .args(["--gitlab-url", gitlab_url, "--gitlab-ca-file"])
            .arg(server.ca_file())
            .arg("--include-cache")
            .arg(cache.path())
            .env_remove("GITLAB_TOKEN")
            .env_remove("CI_JOB_TOKEN")
            .env_remove("CI_SERVER_URL")
            .env("HOME", cache.path());
        // The pipelines' rules see branch main, as in the snapshots.
        for pinned in [
            "CI_COMMIT_BRANCH",
            "CI_COMMIT_REF_NAME",
            "CI_DEFAULT_BRANCH",
        ] {
            cmd.args(["--variable", &format!("{pinned}=main")]);
        }
        for host in &hosts {
            cmd.args(["--resolve", &server.resolve_arg(host)]);
        }
        let run = Run::from(cmd.output().unwrap());
        if run.code != 0 {
            refused.push(format!("{repo}:\n{}", run.stderr));
            continue;
        }
        insta::assert_snapshot!(repo.replace('/', "__"), job_set(&run.stdout));
    }
    assert!(
        refused.is_empty(),
        "{} of {} refused:\n{}",
        refused.len(),
        entries.len(),
        refused.join("\n")
    );
}
