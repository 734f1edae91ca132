//! Tags list and catalog, with `n`/`last` pagination.

use crate::error::RegistryError;
use crate::names::{Digest, RepoName};
use crate::services::{Registry, keys};

/// One page of a sorted listing; `more` says whether a next page exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    pub more: bool,
}

/// Sorted `all` after `last`, at most `n` of them.
pub fn paginate(mut all: Vec<String>, n: Option<usize>, last: Option<&str>) -> Page {
    all.sort();
    let start = match last {
        Some(last) => all.partition_point(|t| t.as_str() <= last),
        None => 0,
    };
    let rest = &all[start..];
    match n {
        // n=0 asks for nothing; no "next" link, or a client following links would loop.
        Some(0) => Page {
            items: Vec::new(),
            more: false,
        },
        Some(n) if n < rest.len() => Page {
            items: rest[..n].to_vec(),
            more: true,
        },
        _ => Page {
            items: rest.to_vec(),
            more: false,
        },
    }
}

impl Registry {
    /// Whether the repository exists (has anything pushed to it).
    pub async fn repo_exists(&self, repo: &RepoName) -> Result<bool, RegistryError> {
        Ok(!self.storage.meta_list(&keys::repo(repo)).await?.is_empty())
    }

    pub async fn tags(&self, repo: &RepoName) -> Result<Vec<String>, RegistryError> {
        let tags = self.storage.meta_list(&keys::tags(repo)).await?;
        if tags.is_empty() && !self.repo_exists(repo).await? {
            return Err(RegistryError::NameUnknown {
                name: repo.to_string(),
            });
        }
        Ok(tags)
    }

    pub async fn tag_target(
        &self,
        repo: &RepoName,
        tag: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let Some(data) = self.storage.meta_get(&keys::tag(repo, tag)).await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&data);
        Ok(Digest::parse(text.trim()).ok())
    }

    /// Every repository name, sorted. A folder is a repository when it holds `_manifests` or
    /// `_layers`; names never contain components starting with `_`, so the two cannot collide.
    pub async fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        let mut walk = RepoWalk::unbounded();
        let mut out = Vec::new();
        while let Some(repo) = walk.next(self).await? {
            out.push(repo.to_string());
        }
        out.sort();
        Ok(out)
    }
}

/// The repository names, one at a time and in no particular order: one storage listing per
/// folder, made only when the walk gets there. A walk may be given a budget of storage calls
/// (its own listings and whatever its user charges with [`RepoWalk::spend`]) and then ends when
/// the budget is spent, so that a request may look through the repositories without its cost
/// growing with their number.
#[derive(Debug)]
pub struct RepoWalk {
    /// Folders still to list: `None` is the root.
    pending: Vec<Option<RepoName>>,
    calls_left: usize,
}

impl RepoWalk {
    pub fn unbounded() -> Self {
        Self::with_budget(usize::MAX)
    }

    pub fn with_budget(storage_calls: usize) -> Self {
        Self {
            pending: vec![None],
            calls_left: storage_calls,
        }
    }

    /// Charges one storage call made on the walk's behalf; false when the budget is spent.
    pub fn spend(&mut self) -> bool {
        if self.calls_left == 0 {
            return false;
        }
        self.calls_left -= 1;
        true
    }

    /// The next repository, or `None` when all were seen or the budget is spent.
    pub async fn next(&mut self, registry: &Registry) -> Result<Option<RepoName>, RegistryError> {
        while let Some(folder) = self.pending.pop() {
            if !self.spend() {
                self.pending.clear();
                return Ok(None);
            }
            let key = match &folder {
                None => "repositories".to_string(),
                Some(repo) => keys::repo(repo),
            };
            let children = registry.storage.meta_list(&key).await?;
            let is_repo =
                folder.is_some() && children.iter().any(|c| c == "_manifests" || c == "_layers");
            for child in children.into_iter().filter(|c| !c.starts_with('_')) {
                let name = match &folder {
                    None => child,
                    Some(repo) => format!("{repo}/{child}"),
                };
                // Only descend into names that could be repositories (never `..` or odd files).
                if let Ok(repo) = RepoName::parse(&name) {
                    self.pending.push(Some(repo));
                }
            }
            if is_repo {
                return Ok(folder);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination() {
        let all = || vec!["c".to_string(), "a".to_string(), "b".to_string()];
        assert_eq!(paginate(all(), None, None).items, ["a", "b", "c"]);
        assert_eq!(
            paginate(all(), Some(2), None),
            Page {
                items: vec!["a".into(), "b".into()],
                more: true
            }
        );
        assert_eq!(
            paginate(all(), Some(2), Some("b")),
            Page {
                items: vec!["c".into()],
                more: false
            }
        );
        assert_eq!(
            paginate(all(), Some(0), None),
            Page {
                items: vec![],
                more: false
            }
        );
        assert_eq!(paginate(all(), None, Some("bb")).items, ["c"]);
    }
}
