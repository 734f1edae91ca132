//! Memory and pids limits for a sandbox, through cgroups.
//!
//! The caller finds out once what this machine allows ([`Support::detect`]), then makes one
//! group per sandbox ([`JobCgroup::create`]: `wharf-<pid>-<n>` under its own group, limits
//! written), hands its folders to the sandbox in [`crate::Spec::cgroups`] ([`crate::spawn`]
//! moves the first init stage in before handing it its spec, so every process of the job is
//! counted), asks after
//! the job whether the memory limit was reached, and removes the group (dropping it does).
//!
//! - cgroup v2, where the caller's own group is delegated to it (writable, with `memory` and
//!   `pids` in `cgroup.controllers`): `memory.max`, `memory.swap.max` 0, `pids.max`;
//!   `memory.events` `oom_kill` tells a reached limit.
//! - cgroup v1 (legacy or hybrid hierarchies, as root): the `memory` and `pids` hierarchies,
//!   found in `/proc/self/mountinfo`; `memory.limit_in_bytes` (and `memory.memsw.limit_in_bytes`
//!   when swap accounting exists), `pids.max`; `memory.oom_control` `oom_kill` (else
//!   `memory.failcnt`) tells a reached limit.
//! - Anything else: [`Support::Unavailable`] says why and what fixes it; the caller says so in
//!   the job log and runs the job without limits.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A job's resource limits: GitLab runner's `[runners.docker] memory` and `pids_limit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of memory, swap included (the job gets no swap on top, as Docker's `MemorySwap`
    /// set to the same value).
    pub memory: Option<u64>,
    /// Most processes and threads at once.
    pub pids: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        self.memory.is_none() && self.pids.is_none()
    }

    /// The limits asked for, as the flags that ask: `--memory 64 MiB and --pids-limit 20`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(bytes) = self.memory {
            parts.push(format!("--memory {}", human_bytes(bytes)));
        }
        if let Some(pids) = self.pids {
            parts.push(format!("--pids-limit {pids}"));
        }
        parts.join(" and ")
    }
}

/// `bytes` in the largest binary unit that divides it (`64 MiB`), else in bytes.
pub fn human_bytes(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("writing `{value}` to {}: {source}", path.display())]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("creating the cgroup {}: {source}", path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("removing the cgroup {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How this machine can limit a sandbox this process starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// cgroup v2: the caller's own group, delegated to it.
    V2 { parent: PathBuf },
    /// cgroup v1: the caller's groups in the `memory` and `pids` hierarchies, writable (root).
    V1 { memory: PathBuf, pids: PathBuf },
    /// No limits: why, and what fixes it.
    Unavailable { why: String, fix: String },
}

impl Support {
    /// What this process may do, from `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        decide(
            &parse_mountinfo(&read("/proc/self/mountinfo")),
            &parse_proc_cgroup(&read("/proc/self/cgroup")),
        )
    }

    /// How limits are applied, for the job log and `wharf doctor`.
    pub fn describe(&self) -> String {
        match self {
            Support::V2 { parent } => format!("cgroup v2, delegated group {}", parent.display()),
            Support::V1 { memory, pids } => format!(
                "cgroup v1 as root, groups under {} and {}",
                memory.display(),
                pids.display()
            ),
            Support::Unavailable { why, .. } => why.clone(),
        }
    }
}

/// A cgroup file system mounted on this machine (a line of `/proc/self/mountinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    /// Which group of the hierarchy the mount shows at its mount point (`/` unless mounted from
    /// inside a container).
    root: String,
    mount_point: PathBuf,
    /// `cgroup2`, or v1 with these controllers (`memory`, `pids`, `cpu,cpuacct`...).
    v1_controllers: Option<Vec<String>>,
}

/// Options of a v1 cgroup mount that are not controllers.
const V1_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "xattr",
    "noprefix",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

/// The cgroup mounts of a `/proc/<pid>/mountinfo` text.
fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            // `id parent major:minor root mount-point options [optional...] - type source super`
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fs_type = right.next()?;
            let _source = right.next()?;
            let super_options = right.next().unwrap_or_default();
            let (root, mount_point) = (unescape(left.get(3)?), unescape(left.get(4)?));
            let v1_controllers = match fs_type {
                "cgroup2" => None,
                "cgroup" => Some(
                    super_options
                        .split(',')
                        .filter(|o| !V1_OPTIONS.contains(o) && !o.contains('='))
                        .map(str::to_string)
                        .collect(),
                ),
                _ => return None,
            };
            Some(CgroupMount {
                root,
                mount_point: PathBuf::from(mount_point),
                v1_controllers,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and `\` as `\ooo` octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(b) => {
                out.push(b);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The groups of a `/proc/<pid>/cgroup` text: (v1 controllers, empty for v2; group path).
fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _hierarchy = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((controllers, path.to_string()))
        })
        .collect()
}

/// The folder of group `path` under `mount` (`None` when the mount does not show it).
fn group_dir(mount: &CgroupMount, path: &str) -> Option<PathBuf> {
    let below = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root.as_str())?
    };
    let below = below.trim_start_matches('/');
    if below.is_empty() {
        return Some(mount.mount_point.clone());
    }
    Some(mount.mount_point.join(below))
}

fn writable(dir: &Path) -> bool {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
}

const FIX_DELEGATE: &str = "run wharf as root, or in a cgroup v2 group delegated to its user (systemd `Delegate=yes`: `systemd-run --user --scope -p Delegate=yes wharf run ...`)";

/// What the mounts and this process's groups allow: v2 when delegated, else v1 when its groups
/// are writable, else why not.
fn decide(mounts: &[CgroupMount], groups: &[(Vec<String>, String)]) -> Support {
    let mut v2_refusal = None;
    let v2_group = groups.iter().find(|(c, _)| c.is_empty()).map(|(_, p)| p);
    let v2_mount = mounts.iter().find(|m| m.v1_controllers.is_none());
    if let Some(dir) = v2_mount.zip(v2_group).and_then(|(m, p)| group_dir(m, p)) {
        let controllers =
            std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if has("memory") && has("pids") {
            if writable(&dir) {
                return Support::V2 { parent: dir };
            }
            v2_refusal = Some(Support::Unavailable {
                why: format!(
                    "cgroup v2, and this process's group {} is not delegated to its user",
                    dir.display()
                ),
                fix: FIX_DELEGATE.into(),
            });
        }
    }
    let v1_dir = |controller: &str| {
        let mount = mounts.iter().find(|m| {
            m.v1_controllers
                .as_ref()
                .is_some_and(|c| c.iter().any(|x| x == controller))
        })?;
        let (_, path) = groups
            .iter()
            .find(|(c, _)| c.iter().any(|x| x == controller))?;
        group_dir(mount, path)
    };
    if let (Some(memory), Some(pids)) = (v1_dir("memory"), v1_dir("pids")) {
        if writable(&memory) && writable(&pids) {
            return Support::V1 { memory, pids };
        }
        return v2_refusal.unwrap_or(Support::Unavailable {
            why: "the memory and pids controllers are cgroup v1 hierarchies here (legacy or hybrid cgroups), where only root may make groups".into(),
            fix: FIX_DELEGATE.into(),
        });
    }
    v2_refusal.unwrap_or(Support::Unavailable {
        why: "no cgroup hierarchy with the memory and pids controllers is mounted".into(),
        fix: "mount cgroup v2 with them (`mount -t cgroup2 none /sys/fs/cgroup`, on systemd: boot with `systemd.unified_cgroup_hierarchy=1`)".into(),
    })
}

/// Groups made by this process, numbered.
static NEXT_GROUP: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// One sandbox's group (in v1: one per limited hierarchy), limits written. Dropping it kills
/// what is left in it and removes it.
#[derive(Debug)]
pub struct JobCgroup {
    dirs: Vec<PathBuf>,
    version: Version,
    limits: Limits,
}

impl JobCgroup {
    /// A new group with `limits` written; `None` when there is nothing to limit or `support`
    /// is [`Support::Unavailable`]. Groups a killed wharf left there are removed first.
    pub fn create(support: &Support, limits: Limits) -> Result<Option<Self>, CgroupError> {
        if limits.is_empty() {
            return Ok(None);
        }
        let name = format!(
            "wharf-{}-{}",
            std::process::id(),
            NEXT_GROUP.fetch_add(1, Ordering::Relaxed)
        );
        let (version, parents) = match support {
            Support::Unavailable { .. } => return Ok(None),
            Support::V2 { parent } => {
                enable_controllers(parent, limits)?;
                (Version::V2, vec![parent.clone()])
            }
            Support::V1 { memory, pids } => {
                let mut parents = Vec::new();
                if limits.memory.is_some() {
                    parents.push(memory.clone());
                }
                if limits.pids.is_some() {
                    parents.push(pids.clone());
                }
                (Version::V1, parents)
            }
        };
        let mut group = JobCgroup {
            dirs: Vec::new(),
            version,
            limits,
        };
        for parent in parents {
            reap_abandoned(&parent);
            let dir = parent.join(&name);
            std::fs::create_dir(&dir).map_err(|source| CgroupError::Create {
                path: dir.clone(),
                source,
            })?;
            // Kept from here on, so an error below still removes it.
            group.dirs.push(dir);
        }
        group.write_limits()?;
        Ok(Some(group))
    }

    fn write_limits(&self) -> Result<(), CgroupError> {
        let Limits { memory, pids } = self.limits;
        for dir in &self.dirs {
            match self.version {
                Version::V2 => {
                    if let Some(bytes) = memory {
                        write(&dir.join("memory.max"), &bytes.to_string())?;
                        write_if_present(&dir.join("memory.swap.max"), "0")?;
                    }
                    if let Some(n) = pids {
                        write(&dir.join("pids.max"), &n.to_string())?;
                    }
                }
                Version::V1 => {
                    if let Some(bytes) =
                        memory.filter(|_| dir.join("memory.limit_in_bytes").exists())
                    {
                        // memory+swap may not be below memory: memory first.
                        write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                        write_if_present(
                            &dir.join("memory.memsw.limit_in_bytes"),
                            &bytes.to_string(),
                        )?;
                    }
                    if let Some(n) = pids.filter(|_| dir.join("pids.max").exists()) {
                        write(&dir.join("pids.max"), &n.to_string())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The group's folders, for [`crate::Spec::cgroups`].
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether the kernel killed a process of the group for reaching the memory limit.
    pub fn memory_limit_reached(&self) -> bool {
        let read = |dir: &PathBuf, file: &str| std::fs::read_to_string(dir.join(file)).ok();
        let counter = |text: &str, key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse::<u64>().unwrap_or(0))
            })
        };
        self.dirs.iter().any(|dir| match self.version {
            Version::V2 => read(dir, "memory.events")
                .and_then(|t| counter(&t, "oom_kill"))
                .is_some_and(|n| n > 0),
            Version::V1 => {
                match read(dir, "memory.oom_control").and_then(|t| counter(&t, "oom_kill")) {
                    Some(kills) => kills > 0,
                    // Kernels before 4.13 do not count kills: the limit was hit at least.
                    None => read(dir, "memory.failcnt")
                        .and_then(|t| t.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0),
                }
            }
        })
    }

    /// Kill what is left in the group and remove it.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.remove_dirs()
    }

    fn remove_dirs(&mut self) -> Result<(), CgroupError> {
        let mut result = Ok(());
        for dir in std::mem::take(&mut self.dirs) {
            if let Err(e) = remove_group(&dir) {
                result = Err(e);
            }
        }
        result
    }
}

impl Drop for JobCgroup {
    fn drop(&mut self) {
        let _ = self.remove_dirs();
    }
}

/// Move process `pid` into each group of `dirs` ([`crate::spawn`]: the first init stage, before
/// it has its spec, so before it starts anything: every process of the job is born inside).
pub(crate) fn move_into(dirs: &[PathBuf], pid: u32) -> Result<(), CgroupError> {
    for dir in dirs {
        write(&dir.join("cgroup.procs"), &pid.to_string())?;
    }
    Ok(())
}

/// In v2 a child group gets a controller only when its parent lists it in
/// `cgroup.subtree_control`.
fn enable_controllers(parent: &Path, limits: Limits) -> Result<(), CgroupError> {
    let file = parent.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&file).unwrap_or_default();
    let wanted: Vec<&str> = [limits.memory.map(|_| "memory"), limits.pids.map(|_| "pids")]
        .into_iter()
        .flatten()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let value = wanted
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    match write(&file, &value) {
        // v2's no-internal-process rule: a group holding processes (wharf itself, started in
        // its own delegated scope) cannot give its children controllers. wharf moves into a
        // leaf group of its own first, as container engines do, and asks again.
        Err(CgroupError::Write { source, .. })
            if source.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32) =>
        {
            let own = parent.join(format!("wharf-{}-self", std::process::id()));
            match std::fs::create_dir(&own) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(CgroupError::Create { path: own, source }),
            }
            write(&own.join("cgroup.procs"), &std::process::id().to_string())?;
            write(&file, &value)
        }
        other => other,
    }
}

/// Remove `dir` once its processes are gone: what is left is killed first (a job's processes
/// die with its PID 1, and take a moment to).
fn remove_group(dir: &Path) -> Result<(), CgroupError> {
    let mut last = None;
    for _ in 0..200 {
        kill_members(dir);
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(CgroupError::Remove {
        path: dir.to_path_buf(),
        source: last.unwrap_or_else(|| std::io::Error::other("still busy")),
    })
}

fn kill_members(dir: &Path) {
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Remove the groups a wharf killed with `kill -9` left under `parent`: `wharf-<pid>-<n>` whose
/// process is gone, what is left in them killed.
fn reap_abandoned(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("wharf-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            // Its job may still be dying (killed with its wharf a moment ago), or be an orphan:
            // either way it belongs to no running wharf.
            let _ = remove_group(&entry.path());
        }
    }
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

fn write_if_present(path: &Path, value: &str) -> Result<(), CgroupError> {
    if path.exists() {
        write(path, value)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's mountinfo (hybrid: v1 controllers, a v2 mount with only `hugetlb`), with
    /// a systemd-style line and an escaped mount point added.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:15 - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 31 0:39 / /mnt/with\\040space rw - cgroup cgroup rw,cpu,cpuacct
24 1 254:0 / / rw,relatime - ext4 /dev/vda rw
";

    const HYBRID_PROC: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/process_api/9be997980d252030c56f5d7e1b3f094a
2:cpu,cpuacct:/
0::/
";

    #[test]
    fn mountinfo_gives_every_cgroup_mount_with_its_controllers() {
        let mounts = parse_mountinfo(HYBRID);
        let shown: Vec<(String, Option<Vec<String>>)> = mounts
            .iter()
            .map(|m| {
                (
                    m.mount_point.display().to_string(),
                    m.v1_controllers.clone(),
                )
            })
            .collect();
        let v1 = |c: &[&str]| Some(c.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            shown,
            vec![
                ("/sys/fs/cgroup/cpu".into(), v1(&["cpu"])),
                ("/sys/fs/cgroup/memory".into(), v1(&["memory"])),
                ("/sys/fs/cgroup/pids".into(), v1(&["pids"])),
                ("/sys/fs/cgroup/systemd".into(), v1(&[])),
                ("/sys/fs/cgroup/unified".into(), None),
                ("/mnt/with space".into(), v1(&["cpu", "cpuacct"])),
            ]
        );
        assert!(mounts.iter().all(|m| m.root == "/"));
    }

    #[test]
    fn proc_cgroup_gives_each_hierarchys_group() {
        let groups = parse_proc_cgroup(HYBRID_PROC);
        assert_eq!(
            groups[2],
            (
                vec!["memory".to_string()],
                "/process_api/9be997980d252030c56f5d7e1b3f094a".to_string()
            )
        );
        assert_eq!(groups[3].0, vec!["cpu".to_string(), "cpuacct".to_string()]);
        assert_eq!(groups[4], (vec![], "/".to_string()));
    }

    #[test]
    fn a_mount_of_a_subgroup_shows_the_groups_below_it() {
        // Inside a container without a cgroup namespace: the host's group is the mount's root.
        let mount = CgroupMount {
            root: "/docker/abc".into(),
            mount_point: "/sys/fs/cgroup/memory".into(),
            v1_controllers: Some(vec!["memory".into()]),
        };
        assert_eq!(
            group_dir(&mount, "/docker/abc/job"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/job"))
        );
        assert_eq!(group_dir(&mount, "/elsewhere"), None);
    }

    #[test]
    fn v1_hierarchies_are_used_when_no_v2_group_has_the_controllers() {
        // A fake tree shaped like the hybrid machine: a v2 mount with only hugetlb.
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| root.path().join(p);
        for d in ["memory/process_api/x", "pids", "unified"] {
            std::fs::create_dir_all(at(d)).unwrap();
        }
        std::fs::write(at("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        let mounts =
            parse_mountinfo(&HYBRID.replace("/sys/fs/cgroup", &root.path().display().to_string()));
        let groups = parse_proc_cgroup(&HYBRID_PROC.replace(
            "/process_api/9be997980d252030c56f5d7e1b3f094a",
            "/process_api/x",
        ));
        let support = decide(&mounts, &groups);
        if nix::unistd::geteuid().is_root() {
            assert_eq!(
                support,
                Support::V1 {
                    memory: at("memory/process_api/x"),
                    pids: at("pids"),
                }
            );
        }
        // Without these controllers anywhere: why, and the fix.
        let Support::Unavailable { why, fix } = decide(&mounts[..1], &groups) else {
            panic!("limits without a memory controller");
        };
        assert!(why.contains("no cgroup hierarchy"), "{why}");
        assert!(fix.contains("cgroup2"), "{fix}");
    }

    /// A fake cgroup2 group: this machine (hybrid cgroups) cannot produce a delegated v2 group,
    /// so the v2 file writes are checked against plain files shaped like one.
    fn fake_v2_group() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
        dir
    }

    #[test]
    fn a_delegated_v2_group_is_found_from_mountinfo() {
        let group = fake_v2_group();
        let mountinfo = format!(
            "41 31 0:38 / {} rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n",
            group.path().display()
        );
        let support = decide(&parse_mountinfo(&mountinfo), &parse_proc_cgroup("0::/\n"));
        assert_eq!(
            support,
            Support::V2 {
                parent: group.path().to_path_buf()
            }
        );
    }

    #[test]
    fn v2_limits_are_written_and_the_group_removed() {
        let parent = fake_v2_group();
        let support = Support::V2 {
            parent: parent.path().to_path_buf(),
        };
        let limits = Limits {
            memory: Some(64 << 20),
            pids: Some(20),
        };
        let group = JobCgroup::create(&support, limits).unwrap().unwrap();
        let [dir] = group.dirs() else {
            panic!("one v2 group: {:?}", group.dirs());
        };
        let dir = dir.clone();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with(&format!("wharf-{}-", std::process::id())),
            "{name}"
        );
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("pids.max"), "20");
        assert_eq!(
            std::fs::read_to_string(parent.path().join("cgroup.subtree_control")).unwrap(),
            "+memory +pids"
        );
        // No swap accounting, no file to write; with it, no swap on top of the memory.
        assert!(!dir.join("memory.swap.max").exists());
        std::fs::write(dir.join("memory.swap.max"), "max").unwrap();
        group.write_limits().unwrap();
        assert_eq!(read("memory.swap.max"), "0");
        std::fs::write(
            dir.join("memory.events"),
            "low 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(group.memory_limit_reached());
        std::fs::write(dir.join("memory.events"), "max 3\noom 0\noom_kill 0\n").unwrap();
        assert!(!group.memory_limit_reached());
        // A real group's files go with it; plain files must be removed first.
        for f in ["memory.max", "memory.swap.max", "pids.max", "memory.events"] {
            std::fs::remove_file(dir.join(f)).unwrap();
        }
        group.remove().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn controllers_already_enabled_are_not_written_again() {
        let parent = fake_v2_group();
        std::fs::write(
            parent.path().join("cgroup.subtree_control"),
            "memory pids\n",
        )
        .unwrap();
        enable_controllers(
            parent.path(),
            Limits {
                memory: Some(1),
                pids: Some(1),
            },
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(parent.path().join("cgroup.subtree_control")).unwrap(),
            "memory pids\n"
        );
    }

    #[test]
    fn groups_left_by_a_dead_wharf_are_reaped_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        let dead = parent.path().join(format!("wharf-{}-0", i32::MAX));
        let live = parent
            .path()
            .join(format!("wharf-{}-0", std::process::id()));
        let other = parent.path().join("wharf-not-a-pid");
        for d in [&dead, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        reap_abandoned(parent.path());
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
    }

    #[test]
    fn limits_read_as_the_flags_that_ask() {
        let limits = Limits {
            memory: Some(64 << 20),
            pids: Some(20),
        };
        assert_eq!(limits.describe(), "--memory 64 MiB and --pids-limit 20");
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
        assert_eq!(human_bytes(1536), "1536 bytes");
    }
}
