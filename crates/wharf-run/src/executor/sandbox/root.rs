//! The sandbox's root and name files: a fresh overlay per sandbox, its removal, and the
//! `/etc/hosts` and `/etc/resolv.conf` binds.

use crate::failure::JobFailure;
use std::path::PathBuf;
use wharf_sandbox::{Bind, IdMapping, RootFs};

/// A fresh overlay of `lower` in `state` (its upper, work and mount folders, emptied first).
pub(super) fn overlay_root(
    state: &std::path::Path,
    lower: &[PathBuf],
    ids: IdMapping,
) -> Result<RootFs, JobFailure> {
    remove_state(state);
    let [upper, work, merged] = ["upper", "work", "merged"].map(|d| state.join(d));
    for d in [&upper, &work, &merged] {
        std::fs::create_dir_all(d)
            .map_err(|e| JobFailure::system(format!("creating {}: {e}", d.display())))?;
    }
    Ok(RootFs::Overlay {
        lower: lower.to_vec(),
        upper,
        work,
        merged,
        options: if ids.in_user_namespace() {
            vec!["userxattr".into()]
        } else {
            Vec::new()
        },
    })
}

/// Remove a sandbox's state folder. overlayfs leaves its `work/work` folder with mode 0000, which
/// only root could list: folders of wharf's own user are opened up first.
pub(super) fn remove_state(state: &std::path::Path) {
    fn open_up(dir: &std::path::Path) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            return;
        };
        if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
            return;
        }
        if meta.mode() & 0o700 != 0o700 {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                open_up(&entry.path());
            }
        }
    }
    if std::fs::remove_dir_all(state).is_err() && state.exists() {
        open_up(state);
        let _ = std::fs::remove_dir_all(state);
    }
}

/// `hosts` as the sandbox's `/etc/hosts`, and the host's `/etc/resolv.conf`, read-only.
pub(super) fn name_binds(hosts: &std::path::Path) -> Vec<Bind> {
    [
        (hosts, "/etc/hosts"),
        (std::path::Path::new("/etc/resolv.conf"), "/etc/resolv.conf"),
    ]
    .into_iter()
    .filter(|(source, _)| source.exists())
    .map(|(source, target)| Bind {
        source: source.to_path_buf(),
        target: target.into(),
        read_only: true,
    })
    .collect()
}
