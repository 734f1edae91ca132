//! Real public `.gitlab-ci.yml` files (tests/public-corpus, listed with repository and commit in
//! its manifest.json), all accepted by GitLab. Each one that needs nothing from the network must
//! load, with its job set kept as an insta snapshot. Those that include templates, other
//! projects, components or remote URLs are listed in the manifest only (issue 8 part 2).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use wharf_ci::{Loader, load_pipeline};

mod common;
use common::job_set;

/// A fixture repository on disk: paths are relative to its folder.
struct Folder(PathBuf);

impl Loader for Folder {
    fn load(&self, path: &str) -> Result<String, std::io::Error> {
        std::fs::read_to_string(self.0.join(path))
    }
    fn list_files(&self) -> Result<Vec<String>, std::io::Error> {
        let mut out = Vec::new();
        let mut stack = vec![self.0.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.0) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        Ok(out)
    }
}

/// Files GitLab accepts that wharf still refuses, with why; the test fails when one of them
/// starts loading, so the list stays honest.
const STILL_REFUSED: &[(&str, &str)] = &[];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/public-corpus")
}

/// (repository, folder) of every manifest entry that loads offline.
fn offline_entries() -> Vec<(String, PathBuf)> {
    let text = std::fs::read_to_string(corpus().join("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "offline")
        .map(|e| {
            let repo = e["repo"].as_str().unwrap().to_string();
            let folder = corpus().join(repo.replace('/', "__"));
            (repo, folder)
        })
        .collect()
}

#[test]
fn every_offline_pipeline_of_the_public_corpus_loads() {
    let mut refused = Vec::new();
    let mut loaded = 0;
    for (repo, folder) in offline_entries() {
        assert!(
            folder.join(".gitlab-ci.yml").exists(),
            "{repo}: files missing"
        );
        match load_pipeline(".gitlab-ci.yml", &Folder(folder)) {
            Ok(result) => {
                loaded += 1;
                let name = repo.replace('/', "__");
                insta::assert_snapshot!(name, job_set(&result.pipeline));
                assert!(
                    !STILL_REFUSED.iter().any(|(r, _)| *r == repo),
                    "{repo} loads now: remove it from STILL_REFUSED"
                );
            }
            Err(errors) => {
                let first = errors.0.first().map(|d| d.message.clone());
                if !STILL_REFUSED.iter().any(|(r, _)| *r == repo) {
                    refused.push(format!("{repo}: {}", first.unwrap_or_default()));
                }
            }
        }
    }
    eprintln!("public corpus: {loaded} loaded");
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
}
