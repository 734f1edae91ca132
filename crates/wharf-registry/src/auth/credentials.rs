//! The passwords the registry checks: people in the htpasswd file, and robots (CI users) whose
//! secrets live in files of their own, so rotating a robot's secret never touches anyone's
//! password. Both are re-read when the files change, so `wharf registry user add` and a secret
//! rotation take effect on a running server without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::error::AuthError;
use super::htpasswd::{self, Htpasswd};

/// Identifies one version of a file, to notice rewrites (atomic renames change the inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    match std::fs::metadata(path) {
        Ok(m) => Stamp {
            path: path.to_path_buf(),
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        },
        Err(_) => Stamp {
            path: path.to_path_buf(),
            modified: None,
            len: 0,
            inode: 0,
        },
    }
}

struct Loaded {
    people: Htpasswd,
    /// robot name -> SHA-256 of its secret (compared in constant time).
    robots: HashMap<String, [u8; 32]>,
    stamps: Vec<Stamp>,
    /// A hash checked for unknown users so that a miss costs as much as a hit.
    dummy: OnceLock<Option<String>>,
}

pub struct Credentials {
    htpasswd: Option<PathBuf>,
    robots: Vec<(String, PathBuf)>,
    loaded: RwLock<Arc<Loaded>>,
    generation: AtomicU64,
    /// Stamps of the last reload that failed, so a broken file is reported once, not per request.
    failed: Mutex<Option<Vec<Stamp>>>,
    fingerprint_key: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("htpasswd", &self.htpasswd)
            .field("robots", &self.robots)
            .finish_non_exhaustive()
    }
}

fn read_robot_secret(name: &str, path: &Path) -> Result<[u8; 32], AuthError> {
    use std::os::unix::fs::PermissionsExt as _;
    let text = std::fs::read_to_string(path).map_err(AuthError::io(path))?;
    let secret = text.lines().next().unwrap_or_default().trim();
    if secret.is_empty() {
        return Err(AuthError::Config(format!(
            "robot {name:?}: its secret file {} is empty",
            path.display()
        )));
    }
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(robot = name, file = %path.display(), "robot secret file is readable by other users: chmod 600 it");
        }
    }
    Ok(Sha256::digest(secret.as_bytes()).into())
}

fn load(htpasswd_path: Option<&Path>, robots: &[(String, PathBuf)]) -> Result<Loaded, AuthError> {
    let mut stamps = Vec::new();
    let people = match htpasswd_path {
        Some(p) => {
            stamps.push(stamp(p));
            Htpasswd::load(p)?
        }
        None => Htpasswd::default(),
    };
    let mut secrets = HashMap::new();
    for (name, path) in robots {
        stamps.push(stamp(path));
        if people.hash_of(name).is_some() {
            return Err(AuthError::Config(format!(
                "robot {name:?} has the name of a user of the htpasswd file: rename one of them"
            )));
        }
        secrets.insert(name.clone(), read_robot_secret(name, path)?);
    }
    Ok(Loaded {
        people,
        robots: secrets,
        stamps,
        dummy: OnceLock::new(),
    })
}

impl Credentials {
    /// Load every file now (errors are fatal at start). `fingerprint_key` is a server secret
    /// mixed into refresh-token fingerprints.
    pub fn load(
        htpasswd: Option<PathBuf>,
        robots: Vec<(String, PathBuf)>,
        fingerprint_key: [u8; 32],
    ) -> Result<Credentials, AuthError> {
        for (name, _) in &robots {
            htpasswd::validate_user(name)
                .map_err(|m| AuthError::Config(format!("robot name: {m}")))?;
        }
        let loaded = load(htpasswd.as_deref(), &robots)?;
        Ok(Credentials {
            htpasswd,
            robots,
            loaded: RwLock::new(Arc::new(loaded)),
            generation: AtomicU64::new(0),
            failed: Mutex::new(None),
            fingerprint_key,
        })
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Bumped on every reload; cached verifications of an older generation are void.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Re-read the files if any of them changed. A broken new version is logged and the last
    /// good one kept (a typo must not lock everyone out).
    pub fn reload_if_changed(&self) {
        let current = self.current();
        let now: Vec<Stamp> = current.stamps.iter().map(|s| stamp(&s.path)).collect();
        if now == current.stamps {
            return;
        }
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if failed.as_ref() == Some(&now) {
            return;
        }
        match load(self.htpasswd.as_deref(), &self.robots) {
            Ok(loaded) => {
                *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded);
                self.generation.fetch_add(1, Ordering::SeqCst);
                *failed = None;
                tracing::info!("credential files changed: reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "credential files changed but cannot be loaded: keeping the previous version");
                *failed = Some(now);
            }
        }
    }

    /// Whether `user` is a known user or robot.
    pub fn knows(&self, user: &str) -> bool {
        let c = self.current();
        c.people.hash_of(user).is_some() || c.robots.contains_key(user)
    }

    pub fn user_count(&self) -> usize {
        let c = self.current();
        c.people.len() + c.robots.len()
    }

    /// Check a password. Slow (bcrypt): call it off the async workers.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.reload_if_changed();
        let c = self.current();
        if let Some(digest) = c.robots.get(user) {
            let given: [u8; 32] = Sha256::digest(password.as_bytes()).into();
            return bool::from(given.ct_eq(digest));
        }
        match c.people.hash_of(user) {
            // bcrypt looks at the first 72 bytes only: a longer password would log in with any
            // tail. Compared in full, it can never match.
            Some(_) if password.len() > htpasswd::BCRYPT_MAX_PASSWORD_BYTES => {
                tracing::warn!(
                    user,
                    "refused a password longer than 72 bytes (bcrypt would ignore the rest)"
                );
                false
            }
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                // Spend the time a real check takes, so response times do not tell which user
                // names exist.
                let dummy = c.dummy.get_or_init(|| {
                    bcrypt::hash(
                        "wharf-dummy-password",
                        c.people.max_cost().unwrap_or(htpasswd::DEFAULT_COST),
                    )
                    .ok()
                });
                if let Some(d) = dummy {
                    let _ = bcrypt::verify(password, d);
                }
                false
            }
        }
    }

    /// A value that changes whenever `user`'s password or secret changes (or the user goes):
    /// refresh tokens carry it, so a new password revokes them. Keyed by a server secret, so it
    /// says nothing about the password. `None` for unknown users.
    pub fn fingerprint(&self, user: &str) -> Option<String> {
        self.reload_if_changed();
        let c = self.current();
        let material: Vec<u8> = if let Some(d) = c.robots.get(user) {
            d.to_vec()
        } else {
            c.people.hash_of(user)?.as_bytes().to_vec()
        };
        let mut h = Sha256::new();
        h.update(self.fingerprint_key);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(&material);
        Some(hex::encode(&h.finalize()[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        // Through a rename, as editors and `wharf registry user` do.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ht = dir.path().join("htpasswd");
        let robot = dir.path().join("ci.secret");
        write(
            &ht,
            &format!(
                "alice:{}\n",
                htpasswd::hash_password("alice-pw", 4).unwrap()
            ),
        );
        write(&robot, "robot-secret-1\n");
        (dir, ht, robot)
    }

    #[test]
    fn passwords_past_72_bytes_never_match() {
        // bcrypt reads 72 bytes: the first 72 plus any tail would pass for the 72-byte password.
        let dir = tempfile::tempdir().unwrap();
        let ht = dir.path().join("htpasswd");
        let long = "p".repeat(72);
        write(
            &ht,
            &format!("alice:{}\n", htpasswd::hash_password(&long, 4).unwrap()),
        );
        let c = Credentials::load(Some(ht), vec![], [7; 32]).unwrap();
        assert!(c.verify("alice", &long));
        assert!(!c.verify("alice", &format!("{long}junk")));
        assert!(!c.verify("alice", &format!("{long}p")));
    }

    #[test]
    fn people_and_robots_verify() {
        let (_d, ht, robot) = setup();
        let c = Credentials::load(Some(ht), vec![("ci".into(), robot)], [7; 32]).unwrap();
        assert!(c.verify("alice", "alice-pw"));
        assert!(!c.verify("alice", "wrong"));
        assert!(c.verify("ci", "robot-secret-1"));
        assert!(!c.verify("ci", "robot-secret-2"));
        assert!(!c.verify("nobody", "alice-pw"));
        assert!(c.knows("ci") && c.knows("alice") && !c.knows("nobody"));
        assert_eq!(c.user_count(), 2);
    }

    #[test]
    fn rotating_a_robot_secret_touches_nobody_else() {
        let (_d, ht, robot) = setup();
        let c = Credentials::load(Some(ht), vec![("ci".into(), robot.clone())], [7; 32]).unwrap();
        let alice_fp = c.fingerprint("alice").unwrap();
        let ci_fp = c.fingerprint("ci").unwrap();
        let g = c.generation();
        write(&robot, "robot-secret-2\n");
        assert!(c.verify("ci", "robot-secret-2"));
        assert!(!c.verify("ci", "robot-secret-1"));
        assert!(c.verify("alice", "alice-pw"));
        assert!(c.generation() > g);
        assert_eq!(c.fingerprint("alice").unwrap(), alice_fp);
        assert_ne!(c.fingerprint("ci").unwrap(), ci_fp);
    }

    #[test]
    fn a_broken_reload_keeps_the_last_good_file() {
        let (_d, ht, robot) = setup();
        let c = Credentials::load(Some(ht.clone()), vec![("ci".into(), robot)], [7; 32]).unwrap();
        write(&ht, "alice:$apr1$legacy\n");
        assert!(c.verify("alice", "alice-pw"));
        write(&ht, "");
        assert!(!c.verify("alice", "alice-pw"), "removing the user works");
        assert_eq!(c.fingerprint("alice"), None);
    }

    #[test]
    fn robot_names_must_not_shadow_people() {
        let (_d, ht, robot) = setup();
        let e = Credentials::load(Some(ht), vec![("alice".into(), robot)], [7; 32]).unwrap_err();
        assert!(e.to_string().contains("robot \"alice\""), "{e}");
    }

    #[test]
    fn fingerprints_depend_on_the_server_key() {
        let (_d, ht, _robot) = setup();
        let a = Credentials::load(Some(ht.clone()), vec![], [1; 32]).unwrap();
        let b = Credentials::load(Some(ht), vec![], [2; 32]).unwrap();
        assert_ne!(a.fingerprint("alice"), b.fingerprint("alice"));
        assert_eq!(a.fingerprint("nobody"), None);
    }
}
