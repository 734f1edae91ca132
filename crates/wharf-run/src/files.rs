//! Moving files between the user's project, job build folders, caches and artifacts.
//! Nothing here writes outside `.wharf/` of the project, and published folders (cache,
//! artifacts) are written to a temporary sibling first and renamed into place, so an interrupted
//! job never leaves a half-written cache or artifact set.

use globset::{GlobBuilder, GlobMatcher};
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use wharf_fs::{FileKind, Resolve, Root};

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("invalid pattern `{pattern}`: {reason}")]
    Pattern { pattern: String, reason: String },
    /// Refused or failed inside a confined folder (the error names the folder and the path).
    #[error(transparent)]
    Confined(#[from] wharf_fs::Error),
}

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> FilesError + 'p {
    move |source| FilesError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The project's files as a job sees them: in a git work tree, tracked plus untracked files that
/// are not ignored (uncommitted edits included); elsewhere every file. `.git/` and `.wharf/` are
/// never part of it. Paths are relative to the project folder.
pub fn snapshot(project: &Path) -> Result<Vec<PathBuf>, FilesError> {
    let git = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(project)
        .stderr(std::process::Stdio::null())
        .output();
    let mut files: Vec<PathBuf> = match git {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            // Deleted-but-tracked files are listed by --cached; a job must not see them.
            .filter(|p| project.join(p).symlink_metadata().is_ok())
            .collect(),
        _ => walkdir::WalkDir::new(project)
            .min_depth(1)
            .into_iter()
            .filter_entry(|e| {
                !(e.depth() == 1 && (e.file_name() == ".git" || e.file_name() == ".wharf"))
            })
            .filter_map(Result::ok)
            .filter(|e| !e.file_type().is_dir())
            .filter_map(|e| e.path().strip_prefix(project).ok().map(Path::to_path_buf))
            .collect(),
    };
    files.retain(|p| !p.starts_with(".wharf") && !p.starts_with(".git"));
    files.sort();
    Ok(files)
}

/// Copy `files` (relative to `from`) into `to`, keeping modes and symlinks (as links: never
/// followed). Both sides are confined: a path leading out of either folder is refused.
pub fn copy_files(from: &Path, files: &[PathBuf], to: &Path) -> Result<(), FilesError> {
    let source = Root::open(from, Resolve::Beneath)?;
    let dest = Root::open(to, Resolve::Beneath)?;
    for rel in files {
        if let Some(parent) = non_empty_parent(rel) {
            dest.create_dir_all(parent, 0o777)?;
        }
        source.copy_tree(rel, &dest, rel)?;
    }
    Ok(())
}

fn non_empty_parent(rel: &Path) -> Option<&Path> {
    rel.parent().filter(|p| !p.as_os_str().is_empty())
}

/// A folder a job controls (its build folder), opened so that nothing in it (a symbolic link,
/// `..`) can lead an operation outside it.
pub fn job_tree(path: &Path) -> Result<Root, FilesError> {
    Ok(Root::open(path, Resolve::Beneath)?)
}

/// Copy everything in the folder `src` (a saved cache or artifact set) into the job tree `dest`,
/// merging with what is there. Symbolic links are copied as links and never followed on either
/// side; a folder replaces a link in its way (nothing is written through a link); FIFOs and
/// devices are skipped and returned.
pub fn restore_tree(src: &Path, dest: &Root) -> Result<Vec<(PathBuf, FileKind)>, FilesError> {
    let source = Root::open(src, Resolve::Beneath)?;
    let mut skipped = Vec::new();
    // Entry by entry: the folder `src` itself (0700, made by wharf) must not give its mode to
    // the build folder.
    for e in source.read_dir("")? {
        skipped.extend(source.copy_tree(&e.name, dest, &e.name)?.skipped);
    }
    Ok(skipped)
}

/// Remove a folder tree if it exists, never following a link in it. Folders a job made
/// unwritable or unreadable (0000) are removed too: the job's temporary folder holds file
/// variables, which must never be left behind.
pub fn remove_tree(path: &Path) -> Result<(), FilesError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FilesError::Io {
            action: "removing",
            path: path.to_path_buf(),
            source: e,
        }),
        Ok(m) if m.is_dir() => {
            Root::open(path, Resolve::NoSymlinks)?.clear_dir("")?;
            std::fs::remove_dir(path).map_err(io_err("removing", path))
        }
        Ok(_) => std::fs::remove_file(path).map_err(io_err("removing", path)),
    }
}

/// Empties `path` (creating it if missing) but keeps the folder itself: it may be bind-mounted
/// into running containers (a job's services), which would keep seeing a removed folder. Never
/// follows a link in it; folders a job made unreadable (0000) are emptied too.
pub fn clear_dir(path: &Path) -> Result<(), FilesError> {
    // A shell job can reach `.wharf/` and leave a link where another job's folder goes: the
    // link goes, never what it points to.
    if std::fs::symlink_metadata(path).is_ok_and(|m| !m.is_dir()) {
        std::fs::remove_file(path).map_err(io_err("removing", path))?;
    }
    std::fs::create_dir_all(path).map_err(io_err("creating", path))?;
    Root::open(path, Resolve::NoSymlinks)?.clear_dir("")?;
    Ok(())
}

/// How the files wharf prepared for a job (sources, caches, artifacts, scripts, file
/// variables) become usable by a job whose scripts run as another user than wharf's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandOver {
    /// wharf runs as root: the files become the job user's (gitlab-runner's
    /// `FF_DISABLE_UMASK_FOR_DOCKER_EXECUTOR` way).
    Chown { uid: u32, gid: u32 },
    /// wharf cannot chown: everyone may read and write them (gitlab-runner's default, its
    /// `umask 0000`), inside folders only wharf's user can enter on this host (see [`fence`]).
    OpenModes,
}

/// Hand the folder `path` and everything in it over to a job's user, never following a link:
/// links themselves are left as they are (Linux gives them no mode, and their owner does not
/// decide who may replace them), special files too.
pub fn hand_over(path: &Path, how: HandOver) -> Result<(), FilesError> {
    let root = Root::open(path, Resolve::Beneath)?;
    let wharf_uid = rustix::process::geteuid().as_raw();
    let mut entries = vec![(PathBuf::new(), FileKind::Dir)];
    entries.extend(root.walk("")?);
    for (rel, kind) in entries {
        if !matches!(kind, FileKind::Dir | FileKind::File) {
            continue;
        }
        match how {
            HandOver::Chown { uid, gid } => root.set_owner(&rel, Some(uid), Some(gid))?,
            HandOver::OpenModes => {
                let meta = root.metadata(&rel)?;
                let mode = meta.permissions().mode() & 0o7777;
                let open = open_mode(mode, kind == FileKind::Dir);
                // What the job's user made (in the script folder, between two scripts) is its
                // own to open, which its scripts do on exit; wharf may not change it.
                if open != mode && meta.uid() == wharf_uid {
                    root.set_permissions(&rel, open)?;
                }
            }
        }
    }
    Ok(())
}

/// Readable and writable by all; searchable (folders) or runnable (files already runnable by
/// someone) by all: `chmod a+rwX`.
fn open_mode(mode: u32, is_dir: bool) -> u32 {
    let runnable = is_dir || mode & 0o111 != 0;
    mode | 0o666 | if runnable { 0o111 } else { 0 }
}

/// Close the folder holding the job folder `job_dir` (wharf's own `builds`, `tmp`) to everyone
/// but wharf's user: the job folder is opened up for a job's user ([`HandOver::OpenModes`]), who
/// reaches it through its container's mounts, never through the folder around it.
pub fn fence(job_dir: &Path) -> Result<(), FilesError> {
    let Some(holder) = job_dir.parent() else {
        return Ok(());
    };
    let (Some(around), Some(name)) = (holder.parent(), holder.file_name()) else {
        return Ok(());
    };
    // Never through a link: one where wharf's folder goes (a shell job can reach `.wharf/`)
    // is refused, and the job's folders are not opened up behind it.
    let around = Root::open(around, Resolve::NoSymlinks)?;
    if !around.metadata(name)?.is_dir() {
        return Err(FilesError::Io {
            action: "closing to other users",
            path: holder.to_path_buf(),
            source: io::Error::other("not a folder"),
        });
    }
    around.set_permissions(name, 0o700)?;
    Ok(())
}

/// Result of matching artifact or cache `paths:` in a build folder.
#[derive(Debug, Default)]
pub struct Matched {
    /// Relative paths of files, symlinks and folders to copy.
    pub entries: Vec<PathBuf>,
    /// Patterns that matched nothing (GitLab warns "no matching files").
    pub unmatched: Vec<String>,
    /// Patterns refused because they lead outside the build folder, with the reason.
    pub outside: Vec<(String, String)>,
}

impl Matched {
    /// Add more entries (e.g. untracked files), keeping the list sorted, without duplicates and
    /// without entries already covered by a listed folder.
    pub fn add_entries(&mut self, more: Vec<PathBuf>) {
        self.entries.extend(more);
        self.entries.sort();
        self.entries.dedup();
        let mut kept: Vec<PathBuf> = Vec::new();
        for e in std::mem::take(&mut self.entries) {
            if !kept.iter().any(|k| e.starts_with(k)) {
                kept.push(e);
            }
        }
        self.entries = kept;
    }
}

/// The project's files that git tracks (`git ls-files --cached`), or `None` outside a git work
/// tree.
pub fn tracked(project: &Path) -> Option<Vec<PathBuf>> {
    let out = Command::new("git")
        .args(["ls-files", "-z", "--cached"])
        .current_dir(project)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(
        out.stdout
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .collect(),
    )
}

/// GitLab's `untracked: true`: the files in the build folder that git does not track (ignored
/// ones included, as `git ls-files --others` without excludes lists them), minus `exclude`
/// patterns. Tracked means tracked in the project's repository; outside a git work tree, every
/// file that was not part of the source `snapshot` (what the job created) counts as untracked.
pub fn untracked(
    build: &Root,
    project: &Path,
    snapshot: &[PathBuf],
    exclude: &[String],
) -> Result<Vec<PathBuf>, FilesError> {
    let known: std::collections::HashSet<PathBuf> = tracked(project)
        .unwrap_or_else(|| snapshot.to_vec())
        .into_iter()
        .collect();
    let excludes = exclude
        .iter()
        .map(|p| glob(p))
        .collect::<Result<Vec<_>, _>>()?;
    let git = Path::new(".git");
    let mut out: Vec<PathBuf> = walk(build, Path::new(""))
        .into_iter()
        .filter(|(rel, kind)| *kind != FileKind::Dir && !rel.starts_with(git))
        .map(|(rel, _)| rel)
        .filter(|rel| !known.contains(rel) && !excludes.iter().any(|g| g.is_match(rel)))
        .collect();
    out.sort();
    Ok(out)
}

/// Every entry below the folder `dir` of `root` (paths relative to the root), sorted; symbolic
/// links are listed, never followed. A folder that cannot be read (a job made it 0000) is listed
/// but not entered.
fn walk(root: &Root, dir: &Path) -> Vec<(PathBuf, FileKind)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = root.read_dir(&d) else {
            continue;
        };
        for e in entries {
            let child = d.join(&e.name);
            if e.kind == FileKind::Dir {
                pending.push(child.clone());
            }
            out.push((child, e.kind));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What `.wharf/artifacts/<job>.json` records about a job's artifacts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArtifactsMeta {
    pub job: String,
    /// `artifacts:name` expanded; GitLab's default is `artifacts`.
    pub name: String,
    /// `artifacts:expire_in` as written: recorded only, wharf never deletes artifacts.
    pub expire_in: Option<String>,
    /// The saved paths, relative to the artifacts folder.
    pub paths: Vec<String>,
    /// `reports:` files other than dotenv that were kept (relative paths).
    pub reports: Vec<String>,
    /// RFC 3339, UTC.
    pub created: String,
}

/// Write `meta` next to the artifacts folder as `<slug>.json`, atomically.
pub fn write_artifacts_meta(
    artifacts_root: &Path,
    slug: &str,
    meta: &ArtifactsMeta,
) -> Result<PathBuf, FilesError> {
    std::fs::create_dir_all(artifacts_root).map_err(io_err("creating", artifacts_root))?;
    let path = artifacts_root.join(format!("{slug}.json"));
    let mut text = serde_json::to_string_pretty(meta).unwrap_or_default();
    text.push('\n');
    let tmp = artifacts_root.join(format!(".{slug}.json.tmp"));
    std::fs::write(&tmp, text).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err("publishing", &path))?;
    Ok(path)
}

/// `time` as RFC 3339 in UTC to the second (`2024-05-01T12:00:00Z`).
pub fn rfc3339_utc(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Match GitLab `paths:` patterns (plain paths, folders, `*`, `**` globs) inside the job tree
/// `root`, minus `exclude` patterns. As GitLab's runner, a path leading outside the tree (absolute,
/// `..` above it, or through a symbolic link pointing out) is skipped with its reason; symbolic
/// links are matched as links and never followed out.
pub fn match_paths(
    root: &Root,
    patterns: &[String],
    exclude: &[String],
) -> Result<Matched, FilesError> {
    let mut out = Matched::default();
    let excludes = exclude
        .iter()
        .map(|p| glob(p))
        .collect::<Result<Vec<_>, _>>()?;
    let excluded = |rel: &Path| excludes.iter().any(|g| g.is_match(rel));
    let mut all_entries: Option<Vec<PathBuf>> = None;
    for raw in patterns {
        let rel = match inside_path(raw) {
            Ok(rel) => rel,
            Err(reason) => {
                out.outside.push((raw.clone(), reason.to_string()));
                continue;
            }
        };
        let pattern = rel.to_string_lossy();
        let before = out.entries.len();
        if pattern.contains(['*', '?', '[', '{']) {
            let matcher = glob(&pattern)?;
            let entries = all_entries.get_or_insert_with(|| {
                walk(root, Path::new(""))
                    .into_iter()
                    .map(|(p, _)| p)
                    .collect()
            });
            for f in entries.iter() {
                if matcher.is_match(f) && !excluded(f) {
                    out.entries.push(f.clone());
                }
            }
        } else {
            let meta = match root.try_metadata(&rel) {
                Ok(m) => m,
                Err(e) if e.is_confinement() => {
                    out.outside.push((raw.clone(), e.to_string()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match meta {
                Some(_) if excluded(&rel) => {}
                Some(m) if excludes.is_empty() || !m.is_dir() => out.entries.push(rel),
                // A folder with excludes: list its files one by one.
                Some(_) => out.entries.extend(
                    walk(root, &rel)
                        .into_iter()
                        .filter(|(p, kind)| *kind != FileKind::Dir && !excluded(p))
                        .map(|(p, _)| p),
                ),
                None => {}
            }
        }
        if out.entries.len() == before {
            out.unmatched.push(raw.clone());
        }
    }
    // A folder already listed covers everything below it.
    out.add_entries(Vec::new());
    Ok(out)
}

/// GitLab's runner takes an absolute path inside the project folder (`$CI_PROJECT_DIR/dist`) as
/// the relative path it names (`dist`); any other pattern is returned as it is (and refused by
/// [`match_paths`] if it leads out). `project_dir` is `CI_PROJECT_DIR` as the job sees it.
pub fn relative_to_project(pattern: &str, project_dir: Option<&str>) -> String {
    let inside = project_dir
        .map(|d| d.trim_end_matches('/'))
        .filter(|d| !d.is_empty())
        .and_then(|d| pattern.strip_prefix(d))
        .and_then(|rest| rest.strip_prefix('/'));
    inside.unwrap_or(pattern).to_string()
}

/// `raw` as a path inside the build folder (`./` and `a/..` folded away), or why it is not one.
fn inside_path(raw: &str) -> Result<PathBuf, &'static str> {
    let trimmed = raw.trim_end_matches('/');
    let mut out = PathBuf::new();
    for c in Path::new(trimmed).components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err(
                    "an absolute path: paths are relative to the project folder ($CI_PROJECT_DIR), not uploaded",
                );
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err("`..` leads outside the project folder ($CI_PROJECT_DIR)");
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("names no file (an empty path or the project folder itself)");
    }
    Ok(out)
}

fn glob(pattern: &str) -> Result<GlobMatcher, FilesError> {
    GlobBuilder::new(pattern.trim_start_matches("./"))
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| FilesError::Pattern {
            pattern: pattern.to_string(),
            reason: e.to_string(),
        })
}

/// Copy `entries` from the job tree `root` into a fresh folder that replaces `dest` atomically.
/// Links are copied as links, never followed; FIFOs and devices are skipped and returned.
pub fn publish(
    root: &Root,
    entries: &[PathBuf],
    dest: &Path,
) -> Result<Vec<(PathBuf, FileKind)>, FilesError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(parent)
        .map_err(io_err("creating a staging folder in", parent))?;
    let stage = Root::open(staging.path(), Resolve::NoSymlinks)?;
    let mut skipped = Vec::new();
    for rel in entries {
        if let Some(dir) = non_empty_parent(rel) {
            stage.create_dir_all(dir, 0o755)?;
        }
        skipped.extend(root.copy_tree(rel, &stage, rel)?.skipped);
    }
    let staged = staging.keep();
    let old = parent.join(format!(
        ".old-{}",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    remove_tree(&old)?;
    if dest.exists() {
        std::fs::rename(dest, &old).map_err(io_err("replacing", dest))?;
    }
    std::fs::rename(&staged, dest).map_err(io_err("publishing", dest))?;
    remove_tree(&old)?;
    Ok(skipped)
}

/// A job name as a folder name: GitLab job names may hold spaces, `/` and `:` (`job 1/3`).
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

/// The folders of one job's run: where caches and artifacts live (`.wharf/`), the project the
/// job's files come from, and its build folder.
pub struct JobDirs<'a> {
    /// `.wharf/` of the project.
    pub wharf_dir: &'a Path,
    /// The user's project folder (key files are read from here: the job cannot change them).
    pub project_dir: &'a Path,
    /// The project's files (relative), as copied into the build folder.
    pub snapshot: &'a [PathBuf],
    pub build_dir: &'a Path,
}

impl JobDirs<'_> {
    /// `p` relative to the project folder, for messages.
    pub(crate) fn relative(&self, p: &Path) -> String {
        p.strip_prefix(self.project_dir)
            .unwrap_or(p)
            .display()
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_dir_empties_in_place_without_following_links() {
        use std::os::unix::fs::MetadataExt;
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "keep.txt");
        let dir = tempfile::tempdir().unwrap();
        let build = dir.path().join("build");
        clear_dir(&build).unwrap();
        let inode = std::fs::metadata(&build).unwrap().ino();
        touch(&build, "a/b/c.txt");
        touch(&build, ".hidden");
        std::os::unix::fs::symlink(outside.path(), build.join("link")).unwrap();
        clear_dir(&build).unwrap();
        assert_eq!(std::fs::read_dir(&build).unwrap().count(), 0);
        assert_eq!(std::fs::metadata(&build).unwrap().ino(), inode);
        assert!(outside.path().join("keep.txt").exists());
        // The folder itself replaced by a link (a shell job can reach .wharf/): the link goes.
        std::fs::remove_dir(&build).unwrap();
        std::os::unix::fs::symlink(outside.path(), &build).unwrap();
        clear_dir(&build).unwrap();
        assert!(outside.path().join("keep.txt").exists());
        assert!(build.symlink_metadata().unwrap().is_dir());
    }

    /// A build folder with a file, a script, a folder, and links out of it to a file and a
    /// folder outside, whose modes and owners must not change.
    fn tree_with_links_out() -> (tempfile::TempDir, tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::symlink;
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "secret");
        std::fs::set_permissions(
            outside.path().join("secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let build = dir.path().join("build");
        touch(&build, "src/main.c");
        touch(&build, "run.sh");
        let set = |rel: &str, mode| {
            std::fs::set_permissions(build.join(rel), std::fs::Permissions::from_mode(mode))
                .unwrap()
        };
        set("src/main.c", 0o600);
        set("run.sh", 0o700);
        set("src", 0o700);
        set("", 0o700);
        symlink(outside.path().join("secret"), build.join("to-file")).unwrap();
        symlink(outside.path(), build.join("to-dir")).unwrap();
        (outside, dir, build)
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    #[test]
    fn open_modes_open_the_tree_to_all_and_never_what_links_lead_to() {
        let (outside, _dir, build) = tree_with_links_out();
        let outside_mode = mode_of(outside.path());
        hand_over(&build, HandOver::OpenModes).unwrap();
        assert_eq!(mode_of(&build), 0o777);
        assert_eq!(mode_of(&build.join("src")), 0o777);
        assert_eq!(mode_of(&build.join("src/main.c")), 0o666);
        assert_eq!(mode_of(&build.join("run.sh")), 0o777);
        assert_eq!(mode_of(&outside.path().join("secret")), 0o600);
        assert_eq!(mode_of(outside.path()), outside_mode);
    }

    #[test]
    fn chown_gives_the_tree_to_the_user_and_never_what_links_lead_to() {
        use std::os::unix::fs::MetadataExt;
        if !rustix::process::geteuid().is_root() {
            // Giving files away needs root; the Docker tier covers it as root too.
            return;
        }
        let (outside, _dir, build) = tree_with_links_out();
        let job_user = HandOver::Chown {
            uid: 4242,
            gid: 4343,
        };
        hand_over(&build, job_user).unwrap();
        for rel in ["", "src", "src/main.c", "run.sh"] {
            let meta = std::fs::symlink_metadata(build.join(rel)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), (4242, 4343), "{rel}");
        }
        for outside in [outside.path().to_path_buf(), outside.path().join("secret")] {
            assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0);
        }
        assert_eq!(mode_of(&build.join("src/main.c")), 0o600);
    }

    #[test]
    fn open_modes_leave_what_the_jobs_user_made_to_it() {
        if !rustix::process::geteuid().is_root() {
            // Files of another user need root to make.
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "step_script.sh");
        touch(dir.path(), "made-by-job");
        std::os::unix::fs::chown(dir.path().join("made-by-job"), Some(4242), None).unwrap();
        for rel in ["step_script.sh", "made-by-job"] {
            std::fs::set_permissions(dir.path().join(rel), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        hand_over(dir.path(), HandOver::OpenModes).unwrap();
        assert_eq!(mode_of(&dir.path().join("step_script.sh")), 0o666);
        // Not wharf's: a chmod would fail for a non-root wharf, and the job opens it itself.
        assert_eq!(mode_of(&dir.path().join("made-by-job")), 0o600);
    }

    #[test]
    fn a_fence_closes_wharfs_folder_and_refuses_a_link_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("builds/job")).unwrap();
        fence(&dir.path().join("builds/job")).unwrap();
        assert_eq!(mode_of(&dir.path().join("builds")), 0o700);
        assert_ne!(mode_of(&dir.path().join("builds/job")), 0o700);
        let outside = tempfile::tempdir().unwrap();
        std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("tmp")).unwrap();
        assert!(fence(&dir.path().join("tmp/job")).is_err());
        assert_eq!(mode_of(outside.path()), 0o755);
    }

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    }

    #[test]
    fn matches_plain_folders_globs_and_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "dist/index.html",
            "dist/a/b.js",
            "out-1.tar",
            "out-2.tar",
            "src/x.rs",
        ] {
            touch(d.path(), f);
        }
        let pats: Vec<String> = ["dist/", "out-*.tar", "missing.txt", "../etc/passwd", "/etc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = match_paths(&job_tree(d.path()).unwrap(), &pats, &[]).unwrap();
        let names: Vec<_> = m
            .entries
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["dist", "out-1.tar", "out-2.tar"]);
        assert_eq!(m.unmatched, ["missing.txt"]);
        let outside: Vec<&str> = m.outside.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(outside, ["../etc/passwd", "/etc"]);
    }

    #[test]
    fn paths_through_links_out_of_the_tree_are_refused_and_links_kept_as_links() {
        let outside = tempfile::tempdir().unwrap();
        touch(outside.path(), "secret.txt");
        let d = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", d.path().join("hostroot")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
        touch(d.path(), "real/ok.txt");
        std::os::unix::fs::symlink("real", d.path().join("inlink")).unwrap();
        let secret = format!("hostroot{}/secret.txt", outside.path().display());
        let pats: Vec<String> = [
            secret.as_str(),
            "out/secret.txt",
            "out",
            "inlink/ok.txt",
            "a/../real",
            "real/../../x",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let tree = job_tree(d.path()).unwrap();
        let m = match_paths(&tree, &pats, &[]).unwrap();
        assert_eq!(
            m.entries,
            [
                PathBuf::from("inlink/ok.txt"),
                PathBuf::from("out"),
                PathBuf::from("real")
            ]
        );
        let refused: Vec<&str> = m.outside.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(refused, [secret.as_str(), "out/secret.txt", "real/../../x"]);
        assert!(m.outside[0].1.contains("leads outside"), "{:?}", m.outside);
        // Globs never go down a link.
        let m = match_paths(&tree, &["out/*".into(), "hostroot/**".into()], &[]).unwrap();
        assert!(m.entries.is_empty(), "{:?}", m.entries);

        let dest = d.path().join("published");
        publish(&tree, &m.entries, &dest).unwrap();
        let all = match_paths(&tree, &["out".into(), "inlink/ok.txt".into()], &[]).unwrap();
        publish(&tree, &all.entries, &dest).unwrap();
        assert!(
            dest.join("out")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("inlink/ok.txt")).unwrap(),
            "real/ok.txt"
        );
    }

    #[test]
    fn restore_never_writes_through_a_link_in_the_build_folder() {
        let outside = tempfile::tempdir().unwrap();
        let d = tempfile::tempdir().unwrap();
        let saved = d.path().join("saved");
        touch(&saved, "out/pwned");
        let build = d.path().join("build");
        std::fs::create_dir_all(&build).unwrap();
        // A link a first artifact set (or the job's services) left where a folder is restored.
        std::os::unix::fs::symlink(outside.path(), build.join("out")).unwrap();
        restore_tree(&saved, &job_tree(&build).unwrap()).unwrap();
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert!(build.join("out").symlink_metadata().unwrap().is_dir());
        assert_eq!(
            std::fs::read_to_string(build.join("out/pwned")).unwrap(),
            "out/pwned"
        );
        // And the other way round: a saved link replaces a folder, and is not followed.
        let saved_link = d.path().join("saved-link");
        std::fs::create_dir_all(&saved_link).unwrap();
        std::os::unix::fs::symlink(outside.path(), saved_link.join("out")).unwrap();
        restore_tree(&saved_link, &job_tree(&build).unwrap()).unwrap();
        assert!(
            build
                .join("out")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn absolute_paths_inside_the_project_are_relative_ones() {
        let dir = Some("/builds/app");
        assert_eq!(relative_to_project("/builds/app/dist", dir), "dist");
        assert_eq!(relative_to_project("/builds/app/", dir), "");
        assert_eq!(
            relative_to_project("/builds/application/x", dir),
            "/builds/application/x"
        );
        assert_eq!(relative_to_project("/etc/passwd", dir), "/etc/passwd");
        assert_eq!(relative_to_project("dist", None), "dist");
    }

    #[test]
    fn double_star_and_exclude() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a/x.log", "a/b/y.log", "a/b/keep.txt", "z.log"] {
            touch(d.path(), f);
        }
        let tree = job_tree(d.path()).unwrap();
        let m = match_paths(&tree, &["a/**/*.log".into()], &[]).unwrap();
        assert_eq!(
            m.entries,
            [PathBuf::from("a/b/y.log"), PathBuf::from("a/x.log")]
        );
        let m = match_paths(
            &tree,
            &["a".into()],
            &["a/**/*.log".into(), "a/*.log".into()],
        )
        .unwrap();
        assert_eq!(m.entries, [PathBuf::from("a/b/keep.txt")]);
    }

    #[test]
    fn publish_replaces_atomically() {
        let d = tempfile::tempdir().unwrap();
        let build = d.path().join("build");
        touch(&build, "dist/new.txt");
        let dest = d.path().join("artifacts/job");
        touch(&dest, "stale.txt");
        publish(&job_tree(&build).unwrap(), &[PathBuf::from("dist")], &dest).unwrap();
        assert!(dest.join("dist/new.txt").exists());
        assert!(!dest.join("stale.txt").exists());
        let leftovers: Vec<_> = std::fs::read_dir(d.path().join("artifacts"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn untracked_lists_what_git_does_not_track() {
        let d = tempfile::tempdir().unwrap();
        let project = d.path().join("project");
        touch(&project, "src/a.c");
        touch(&project, "notes.txt");
        let git = |args: &[&str]| {
            assert!(
                Command::new("git")
                    .args(args)
                    .current_dir(&project)
                    .output()
                    .unwrap()
                    .status
                    .success()
            );
        };
        git(&["init", "-q"]);
        git(&["add", "src/a.c"]);
        let build = d.path().join("build");
        for f in ["src/a.c", "notes.txt", "out/bin", "out/x.log", ".git/HEAD"] {
            touch(&build, f);
        }
        let snapshot = vec![PathBuf::from("notes.txt"), PathBuf::from("src/a.c")];
        let tree = job_tree(&build).unwrap();
        let got = untracked(&tree, &project, &snapshot, &["out/*.log".into()]).unwrap();
        // notes.txt is untracked in git (not added), so it counts, as in GitLab.
        assert_eq!(got, [PathBuf::from("notes.txt"), PathBuf::from("out/bin")]);
        // Outside git: whatever the snapshot did not hold.
        let plain = d.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let got = untracked(&tree, &plain, &snapshot, &[]).unwrap();
        assert_eq!(got, [PathBuf::from("out/bin"), PathBuf::from("out/x.log")]);
    }

    #[test]
    fn add_entries_keeps_folders_covering_files() {
        let mut m = Matched {
            entries: vec![PathBuf::from("dist")],
            ..Default::default()
        };
        m.add_entries(vec![PathBuf::from("dist/a.js"), PathBuf::from("b.txt")]);
        assert_eq!(m.entries, [PathBuf::from("b.txt"), PathBuf::from("dist")]);
    }

    #[test]
    fn artifacts_meta_round_trips_and_dates_format() {
        let d = tempfile::tempdir().unwrap();
        let meta = ArtifactsMeta {
            job: "build 1/2".into(),
            name: "build-main".into(),
            expire_in: Some("1 week".into()),
            paths: vec!["dist".into()],
            reports: vec!["junit.xml".into()],
            created: rfc3339_utc(std::time::UNIX_EPOCH),
        };
        let path = write_artifacts_meta(d.path(), "build_1_2", &meta).unwrap();
        assert_eq!(path, d.path().join("build_1_2.json"));
        let back: ArtifactsMeta =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.created, "1970-01-01T00:00:00Z");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_827_696);
        assert_eq!(rfc3339_utc(t), "2000-02-29T12:34:56Z");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_735_689_599);
        assert_eq!(rfc3339_utc(t), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("build-staging"), "build-staging");
        assert_eq!(slug("job 1/3"), "job_1_3");
        assert_eq!(slug(".hidden"), "_.hidden");
    }
}
