//! The sandbox's root and name files: a fresh overlay per sandbox, and the
//! `/etc/hosts` and `/etc/resolv.conf` binds.

use crate::failure::JobFailure;
use std::path::PathBuf;
use wharf_sandbox::{Bind, IdMapping, RootFs};

/// A fresh overlay of `lower` in `state`, a folder that does not exist yet (its upper, work and
/// mount folders are made there).
pub(super) fn overlay_root(
    state: &std::path::Path,
    lower: &[PathBuf],
    ids: IdMapping,
) -> Result<RootFs, JobFailure> {
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
