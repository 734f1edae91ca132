//! Sandbox state folders (overlay upper, work and mount point of each script) that a killed
//! wharf cannot leave behind for good.
//!
//! Every user of the sandbox claims a folder of its own under one parent (e.g.
//! `<project>/.wharf/sandbox/`) holding a `lock` file with an exclusive `flock` held for as long
//! as the [`StateDir`] lives. The kernel drops the lock when the process ends, however it ends
//! (`kill -9` included), so a folder whose lock can be taken belongs to nobody: [`reap`] removes
//! it. Claiming and reaping both hold the parent's own `.lock`, so a reaper never sees a folder
//! between its creation and its lock.
//!
//! Files a job made as one of the user's subordinate ids belong to host ids wharf's own user
//! cannot remove; [`remove_tree`] removes those from inside a user namespace with the same
//! mapping (`__sandbox-remove`), where they are the namespace root's to remove.

use crate::IdMapping;
use rustix::fs::{FlockOperation, flock};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Name of the lock file in each state folder.
const LOCK: &str = "lock";
/// Name of the parent's lock, held while a folder is claimed or reaped.
const PARENT_LOCK: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the sandbox state folder {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot list {}: {source}", path.display())]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot remove the sandbox state folder {}: {why}; remove it as root (`sudo rm -rf {}`)",
        path.display(),
        path.display()
    )]
    Remove { path: PathBuf, why: String },
}

/// A state folder this process owns: locked until dropped. Dropping it does not remove it
/// (removal may need a user namespace: [`StateDir::remove`]); a folder left so is reaped by the
/// next [`reap`] under the same parent.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Held open: the `flock` on it is the claim.
    _lock: File,
}

impl StateDir {
    /// A new folder `<prefix>-<pid>-<n>` under `parent` (created if missing), locked. The
    /// prefix (a job's name) is cut to 64 characters: a file name has at most 255 bytes.
    pub fn claim(parent: &Path, prefix: &str) -> Result<StateDir, StateError> {
        let _parent_lock = lock_parent(parent)?;
        let prefix: String = prefix.chars().take(64).collect();
        let pid = std::process::id();
        for n in 0u32.. {
            let path = parent.join(format!("{prefix}-{pid}-{n}"));
            match std::fs::create_dir(&path) {
                Ok(()) => {}
                // Another claim of this process, or a dead one with the same pid not reaped yet.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(StateError::Create { path, source }),
            }
            let lock_path = path.join(LOCK);
            let lock = open_lock(&lock_path)?;
            flock(&lock, FlockOperation::NonBlockingLockExclusive).map_err(|e| {
                StateError::Lock {
                    path: lock_path,
                    source: e.into(),
                }
            })?;
            return Ok(StateDir { path, _lock: lock });
        }
        unreachable!("u32 names run out before a folder can be created")
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the folder and everything in it ([`remove_tree`]); the lock goes with it.
    pub fn remove(self, ids: IdMapping, init_exe: &Path) -> Result<(), StateError> {
        remove_tree(&self.path, ids, init_exe)
    }
}

/// A folder [`reap`] found unowned, and whether removing it worked.
#[derive(Debug)]
pub struct Reaped {
    pub path: PathBuf,
    pub removed: Result<(), StateError>,
}

/// Remove every folder under `parent` whose lock no process holds (left by a killed wharf, or by
/// a wharf from before the locks). Folders of live processes, in this process or others, are
/// never touched. A missing `parent` has nothing to reap.
pub fn reap(parent: &Path, ids: IdMapping, init_exe: &Path) -> Result<Vec<Reaped>, StateError> {
    if !parent.is_dir() {
        return Ok(Vec::new());
    }
    let _parent_lock = lock_parent(parent)?;
    let list_error = |source| StateError::List {
        path: parent.to_path_buf(),
        source,
    };
    let mut names: Vec<_> = std::fs::read_dir(parent)
        .map_err(list_error)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != PARENT_LOCK)
        .map(|e| e.path())
        .collect();
    names.sort();
    let mut reaped = Vec::new();
    for path in names {
        // A folder without a lock file was never claimed under the parent's lock (an older
        // wharf's): nobody owns it.
        let owned = match OpenOptions::new().read(true).open(path.join(LOCK)) {
            Ok(lock) => match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => false,
                Err(rustix::io::Errno::WOULDBLOCK) => true,
                Err(e) => {
                    return Err(StateError::Lock {
                        path: path.join(LOCK),
                        source: e.into(),
                    });
                }
            },
            Err(_) => false,
        };
        if !owned {
            let removed = remove_tree(&path, ids, init_exe);
            reaped.push(Reaped { path, removed });
        }
    }
    Ok(reaped)
}

/// Remove `path` and everything in it; a missing `path` is not an error. What wharf's user
/// cannot remove itself (a job's files owned by subordinate ids, folders a job made 0000 under
/// a user namespace) is removed from inside a user namespace with the mapping `ids`, by
/// `init_exe __sandbox-remove`.
pub fn remove_tree(path: &Path, ids: IdMapping, init_exe: &Path) -> Result<(), StateError> {
    let first = match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => e,
    };
    if !ids.in_user_namespace() {
        return Err(StateError::Remove {
            path: path.to_path_buf(),
            why: first.to_string(),
        });
    }
    let failed = |why: String| StateError::Remove {
        path: path.to_path_buf(),
        why: format!("{first}, and from inside a user namespace: {why}"),
    };
    let request = serde_json::to_vec(&RemoveRequest {
        ids,
        path: path.to_path_buf(),
    })
    .map_err(|e| failed(e.to_string()))?;
    let mut child = Command::new(init_exe)
        .arg(crate::REMOVE_ARG)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("starting {}: {e}", init_exe.display())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&request)
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr
        .lines()
        .find_map(|l| l.strip_prefix(crate::SETUP_ERROR_PREFIX))
        .map_or_else(|| out.status.to_string(), str::to_string);
    Err(failed(why))
}

/// What `__sandbox-remove` reads on its stdin.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RemoveRequest {
    pub(crate) ids: IdMapping,
    pub(crate) path: PathBuf,
}

fn open_lock(path: &Path) -> Result<File, StateError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| StateError::Lock {
            path: path.to_path_buf(),
            source,
        })
}

/// The parent's lock, held (blocking) for as long as the returned file is open.
fn lock_parent(parent: &Path) -> Result<File, StateError> {
    std::fs::create_dir_all(parent).map_err(|source| StateError::Create {
        path: parent.to_path_buf(),
        source,
    })?;
    let path = parent.join(PARENT_LOCK);
    let lock = open_lock(&path)?;
    flock(&lock, FlockOperation::LockExclusive).map_err(|e| StateError::Lock {
        path,
        source: e.into(),
    })?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_INIT: &str = "/nonexistent/wharf";

    #[test]
    fn a_claimed_folder_is_never_reaped_and_a_released_one_is() {
        let parent = tempfile::tempdir().unwrap();
        let live = StateDir::claim(parent.path(), "job").unwrap();
        let dead = StateDir::claim(parent.path(), "job").unwrap();
        assert_ne!(live.path(), dead.path());
        std::fs::create_dir_all(dead.path().join("upper/a/b")).unwrap();
        let dead_path = dead.path().to_path_buf();
        drop(dead); // as a kill -9 would: the lock goes, the folder stays
        let reaped = reap(parent.path(), IdMapping::Host, Path::new(NO_INIT)).unwrap();
        assert_eq!(reaped.len(), 1, "{reaped:?}");
        assert_eq!(reaped[0].path, dead_path);
        assert!(reaped[0].removed.is_ok());
        assert!(!dead_path.exists());
        assert!(live.path().join(LOCK).exists(), "a live folder was reaped");
    }

    #[test]
    fn a_folder_without_a_lock_file_is_an_older_wharfs_and_is_reaped() {
        let parent = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(parent.path().join("build/step_script/upper")).unwrap();
        let reaped = reap(parent.path(), IdMapping::Host, Path::new(NO_INIT)).unwrap();
        assert_eq!(reaped.len(), 1);
        assert!(!parent.path().join("build").exists());
    }

    #[test]
    fn a_long_job_name_still_makes_a_valid_folder_name() {
        let parent = tempfile::tempdir().unwrap();
        let name = "j".repeat(255);
        let state = StateDir::claim(parent.path(), &name).unwrap();
        assert!(state.path().join(LOCK).exists());
    }

    #[test]
    fn a_missing_parent_has_nothing_to_reap() {
        let parent = tempfile::tempdir().unwrap();
        let gone = parent.path().join("sandbox");
        assert!(
            reap(&gone, IdMapping::Host, Path::new(NO_INIT))
                .unwrap()
                .is_empty()
        );
        assert!(!gone.exists(), "reaping created the folder");
    }

    #[test]
    fn removing_a_claimed_folder_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let state = StateDir::claim(parent.path(), "job").unwrap();
        std::fs::create_dir_all(state.path().join("upper/x")).unwrap();
        let path = state.path().to_path_buf();
        state.remove(IdMapping::Host, Path::new(NO_INIT)).unwrap();
        assert!(!path.exists());
    }
}
