//! Whole-tree operations built on the confined primitives: listing, removing, copying. Every
//! step resolves its path again under the root, so no descriptor chain grows with the depth of
//! a tree and a tree changed mid-way can only make a step fail, never lead it out.

use crate::error::{FileKind, Result};
use crate::{Root, temp_name};
use rustix::fs::{AtFlags, Timestamps};
use rustix::io::Errno;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What [`Root::copy_tree`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of regular-file content copied.
    pub bytes: u64,
    /// FIFOs, sockets and device nodes, which are never opened nor copied (source paths).
    pub skipped: Vec<(PathBuf, FileKind)>,
}

/// Permission bits kept by copies: setuid and setgid are dropped (a copy made by a privileged
/// process must not hand out its privileges), the sticky bit is kept.
const COPY_MODE_MASK: u32 = 0o1777;

impl Root {
    /// Every entry below the directory `path` (empty: the root), as paths relative to the root
    /// with their kinds: parents before their contents, names sorted at each level. Symbolic
    /// links are listed, never followed.
    pub fn walk(&self, path: impl AsRef<Path>) -> Result<Vec<(PathBuf, FileKind)>> {
        let mut out = Vec::new();
        let mut pending = vec![path.as_ref().to_path_buf()];
        while let Some(dir) = pending.pop() {
            for e in self.read_dir(&dir)? {
                let child = dir.join(&e.name);
                if e.kind == FileKind::Dir {
                    pending.push(child.clone());
                }
                out.push((child, e.kind));
            }
        }
        // Paths compare component by component: parents come before their contents.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Remove `path` and, for a directory, everything in it, never following a symbolic link.
    /// A missing `path` is not an error. Folders a job made unwritable (0555, 0000) are made
    /// writable first, so they can be emptied.
    pub fn remove_all(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        match self.try_metadata(path)? {
            None => Ok(()),
            Some(m) if m.is_dir() => {
                self.clear_dir(path)?;
                self.remove_dir(path)
            }
            Some(_) => self.remove_file(path),
        }
    }

    /// Remove everything in the directory `path` but keep the directory (it may be
    /// bind-mounted somewhere, which a new directory would not be).
    pub fn clear_dir(&self, path: impl AsRef<Path>) -> Result<()> {
        // Post-order without recursion: (folder, emptied yet).
        let mut stack: Vec<(PathBuf, bool)> = vec![(path.as_ref().to_path_buf(), false)];
        let top = path.as_ref().to_path_buf();
        while let Some((dir, emptied)) = stack.pop() {
            if emptied {
                if dir != top {
                    self.with_writable_parent(&dir, |r| r.remove_dir(&dir))?;
                }
                continue;
            }
            let entries = match self.read_dir(&dir) {
                Err(e) if is_access_denied(&e) => {
                    self.set_permissions(&dir, 0o700)?;
                    self.read_dir(&dir)?
                }
                other => other?,
            };
            stack.push((dir.clone(), true));
            for e in entries {
                let child = dir.join(&e.name);
                if e.kind == FileKind::Dir {
                    stack.push((child, false));
                } else {
                    self.with_writable_parent(&child, |r| r.remove_file(&child))?;
                }
            }
        }
        Ok(())
    }

    /// Run `op`; if it is denied, make the parent folder of `path` writable and run it again.
    fn with_writable_parent(&self, path: &Path, op: impl Fn(&Root) -> Result<()>) -> Result<()> {
        match op(self) {
            Err(e) if is_access_denied(&e) => {
                let parent = path.parent().unwrap_or(Path::new(""));
                self.set_permissions(parent, 0o700)?;
                op(self)
            }
            other => other,
        }
    }

    /// Copy `from` (a file, a symbolic link or a whole directory tree in this root) to `to` in
    /// `dest`, which may be this root or another one:
    /// - symbolic links are copied as links (their targets as written), never followed;
    /// - regular files are copied with their permission bits (without setuid and setgid) and
    ///   modification time; hard links become separate files;
    /// - FIFOs, sockets and devices are skipped, without being opened, and listed in the report;
    /// - in `dest`, a directory merges into an existing directory and replaces anything else;
    ///   a file or link replaces whatever is there, atomically (a temporary name renamed over),
    ///   so nothing is ever written through a link or into a hard-linked file already there.
    pub fn copy_tree(
        &self,
        from: impl AsRef<Path>,
        dest: &Root,
        to: impl AsRef<Path>,
    ) -> Result<CopyReport> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let mut report = CopyReport::default();
        let kind = FileKind::from(self.metadata(from)?.file_type());
        if kind != FileKind::Dir {
            self.copy_entry(from, kind, dest, to, &mut report)?;
            return Ok(report);
        }
        // Folders get their final mode (maybe read-only) once they are filled.
        let mut modes: Vec<(PathBuf, u32)> = Vec::new();
        let mode = self.metadata(from)?.mode();
        dest.ensure_dir(to)?;
        modes.push((to.to_path_buf(), mode));
        report.dirs += 1;
        let mut pending = vec![(from.to_path_buf(), to.to_path_buf())];
        while let Some((src_dir, dst_dir)) = pending.pop() {
            for e in self.read_dir(&src_dir)? {
                let (s, d) = (src_dir.join(&e.name), dst_dir.join(&e.name));
                if e.kind == FileKind::Dir {
                    let mode = self.metadata(&s)?.mode();
                    dest.ensure_dir(&d)?;
                    modes.push((d.clone(), mode));
                    report.dirs += 1;
                    pending.push((s, d));
                } else {
                    self.copy_entry(&s, e.kind, dest, &d, &mut report)?;
                }
            }
        }
        for (d, mode) in modes.iter().rev() {
            dest.set_permissions(d, mode & COPY_MODE_MASK)?;
        }
        Ok(report)
    }

    fn copy_entry(
        &self,
        src: &Path,
        kind: FileKind,
        dest: &Root,
        dst: &Path,
        report: &mut CopyReport,
    ) -> Result<()> {
        match kind {
            FileKind::File => {
                let mut file = self.open_read(src)?;
                let meta = file
                    .metadata()
                    .map_err(|e| self.io("reading the attributes of", src, e))?;
                dest.clear_for_replacement(dst)?;
                let (dir, name) = dest.entry(dst, "written")?;
                let modified = Timestamps {
                    last_access: rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_OMIT,
                    },
                    last_modification: rustix::fs::Timespec {
                        tv_sec: meta.mtime(),
                        tv_nsec: meta.mtime_nsec() as _,
                    },
                };
                let bytes = dest.write_replacing(
                    &dir,
                    &name,
                    dst,
                    meta.mode() & COPY_MODE_MASK & 0o777,
                    |out| {
                        let n = std::io::copy(&mut file, out)?;
                        rustix::fs::futimens(&*out, &modified)?;
                        Ok(n)
                    },
                )?;
                report.files += 1;
                report.bytes += bytes;
            }
            FileKind::Symlink => {
                let target = self.read_link(src)?;
                dest.clear_for_replacement(dst)?;
                let (dir, name) = dest.entry(dst, "written")?;
                let temp = temp_name();
                rustix::fs::symlinkat(&target, &dir, &temp)
                    .map_err(|e| dest.io("creating the symbolic link", dst, e.into()))?;
                if let Err(e) = rustix::fs::renameat(&dir, &temp, &dir, &name) {
                    let _ = rustix::fs::unlinkat(&dir, &temp, AtFlags::empty());
                    return Err(dest.io("replacing", dst, e.into()));
                }
                report.symlinks += 1;
            }
            FileKind::Dir => {
                let sub = self.copy_tree(src, dest, dst)?;
                report.files += sub.files;
                report.dirs += sub.dirs;
                report.symlinks += sub.symlinks;
                report.bytes += sub.bytes;
                report.skipped.extend(sub.skipped);
            }
            other => report.skipped.push((src.to_path_buf(), other)),
        }
        Ok(())
    }

    /// Make room for a file or link at `path`: a directory there is removed (a rename cannot
    /// replace one); anything else is left for the rename to replace.
    fn clear_for_replacement(&self, path: &Path) -> Result<()> {
        match self.try_metadata(path)? {
            Some(m) if m.is_dir() => self.remove_all(path),
            _ => Ok(()),
        }
    }

    /// A writable directory at `path`: an existing one is kept (made writable for its owner
    /// while it is filled), anything else is replaced by a new one.
    fn ensure_dir(&self, path: &Path) -> Result<()> {
        match self.try_metadata(path)? {
            Some(m) if m.is_dir() => {
                if m.mode() & 0o700 != 0o700 {
                    self.set_permissions(path, m.mode() | 0o700)?;
                }
                Ok(())
            }
            Some(_) => {
                self.remove_all(path)?;
                self.create_dir(path, 0o700)
            }
            None => self.create_dir(path, 0o700),
        }
    }
}

fn is_access_denied(e: &crate::Error) -> bool {
    e.io_error()
        .and_then(std::io::Error::raw_os_error)
        .is_some_and(|c| c == Errno::ACCESS.raw_os_error() || c == Errno::PERM.raw_os_error())
}
