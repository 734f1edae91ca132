//! A small tmpfs of a test's own, to fill up: what a full disk does to a component (root only).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;
use crate::error::{IoContext as _, command_output};

/// A tmpfs mounted with `options` (`size=8m`, `nr_inodes=...`) on a fresh temporary folder,
/// unmounted when dropped (before the folder itself goes).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts it; needs root.
    pub fn mount(options: &str) -> Result<Tmpfs, Error> {
        let dir = tempfile::tempdir().ctx(|| "creating the mount point".to_string())?;
        command_output(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", options, "tmpfs"])
                .arg(dir.path()),
            || format!("mount -t tmpfs -o {options} (needs root)"),
        )?;
        Ok(Tmpfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left with one file, until the disk refuses more; returns that file.
    pub fn fill(&self) -> Result<PathBuf, Error> {
        let path = self.path().join("filler");
        let mut file =
            std::fs::File::create(&path).ctx(|| format!("creating {}", path.display()))?;
        let block = vec![7u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => return Ok(path),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return Ok(path),
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("filling {}", path.display()),
                        source: e,
                    });
                }
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
