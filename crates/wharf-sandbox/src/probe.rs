//! What this machine lets the sandbox do, each finding with the command that fixes a problem:
//! for `wharf doctor` and for choosing an executor. The decisive check runs a real sandbox (user
//! namespace when not root, overlayfs, pivot_root) on an empty layer.

use crate::{Bind, IdMapping, Network, RootFs, Spec};
use std::path::{Path, PathBuf};

/// How a finding counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, with a limit worth knowing.
    Warn,
    /// Stops the sandbox (or the feature named) from working.
    Fail,
}

/// One thing checked.
#[derive(Debug, Clone)]
pub struct Finding {
    /// What was checked, e.g. "user namespaces".
    pub check: &'static str,
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// The exact command (or step) that fixes it, when something needs fixing.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn problem(
        check: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check,
            verdict,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The calling user's ids (the sandbox maps root inside to them).
pub fn caller_ids() -> (u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    )
}

/// The id mapping a sandbox started by this process uses: none as root; else the caller and
/// their subordinate ids when `/etc/subuid` and `/etc/subgid` give them a range and `newuidmap`
/// and `newgidmap` are installed; else the caller alone.
pub fn id_mapping() -> IdMapping {
    match caller_ids() {
        (0, _) => IdMapping::Host,
        (uid, gid) => match subordinate_ranges(uid) {
            Some((uid_start, gid_start, count)) => IdMapping::Subordinate {
                uid,
                gid,
                uid_start,
                gid_start,
                count,
            },
            None => IdMapping::SingleId { uid, gid },
        },
    }
}

/// The login name of `uid` (from the passwd database), when it has one.
fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// `(first subordinate uid, first subordinate gid, ids in both)` for `uid`, when usable.
fn subordinate_ranges(uid: u32) -> Option<(u32, u32, u32)> {
    let tools = ["/usr/bin/newuidmap", "/usr/bin/newgidmap"]
        .iter()
        .all(|p| Path::new(p).exists());
    if !tools {
        return None;
    }
    let name = user_name(uid);
    let range = |file: &str| -> Option<(u32, u32)> {
        std::fs::read_to_string(file)
            .ok()?
            .lines()
            .find_map(|line| {
                let mut f = line.split(':');
                let who = f.next()?;
                let start = f.next()?.trim().parse().ok()?;
                let count = f.next()?.trim().parse().ok()?;
                (Some(who) == name.as_deref() || who == uid.to_string()).then_some((start, count))
            })
    };
    let (uid_start, uid_count) = range("/etc/subuid")?;
    let (gid_start, gid_count) = range("/etc/subgid")?;
    let count = uid_count.min(gid_count);
    (count > 0).then_some((uid_start, gid_start, count))
}

/// The kernel's switches for user namespaces.
pub fn user_namespaces() -> Finding {
    const CHECK: &str = "user namespaces";
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Finding::problem(
            CHECK,
            Verdict::Fail,
            "user.max_user_namespaces is 0",
            "sudo sysctl -w user.max_user_namespaces=15000",
        );
    }
    let rootless = caller_ids().0 != 0;
    if rootless && read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Finding::problem(
            CHECK,
            Verdict::Fail,
            "kernel.unprivileged_userns_clone is 0: users without root cannot create them",
            "sudo sysctl -w kernel.unprivileged_userns_clone=1",
        );
    }
    if rootless
        && read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
    {
        return Finding::problem(
            CHECK,
            Verdict::Fail,
            "AppArmor restricts unprivileged user namespaces",
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
        );
    }
    Finding::ok(CHECK, "enabled")
}

/// Subordinate id ranges (`/etc/subuid`, `newuidmap`): without them a rootless sandbox maps only
/// the caller, so files of other owners in an image show as `nobody`.
pub fn subordinate_ids() -> Finding {
    const CHECK: &str = "subordinate ids";
    let (uid, _) = caller_ids();
    if uid == 0 {
        return Finding::ok(CHECK, "not needed as root");
    }
    let user = user_name(uid).unwrap_or_else(|| uid.to_string());
    match subordinate_ranges(uid) {
        Some((start, _, count)) => Finding::ok(
            CHECK,
            format!("{user} has {start}..+{count}: images may run as their own non-root users"),
        ),
        None => Finding::problem(
            CHECK,
            Verdict::Warn,
            format!(
                "no range for {user} in /etc/subuid and /etc/subgid, or newuidmap/newgidmap missing: the sandbox maps only {user}, so files of other owners show as nobody and images whose user is not root are refused"
            ),
            format!(
                "sudo apt install uidmap && sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"
            ),
        ),
    }
}

/// Whether the sandbox can apply `--memory` and `--pids-limit`: exactly what the executor will
/// do ([`crate::cgroup::Support::detect`]), cgroup v2 delegated or v1 as root.
pub fn limits() -> Finding {
    const CHECK: &str = "limits (--memory, --pids-limit)";
    match crate::cgroup::Support::detect() {
        crate::cgroup::Support::Unavailable { why, fix } => Finding::problem(
            CHECK,
            Verdict::Warn,
            format!("{why}: sandbox jobs run without them (the job log says so)"),
            fix,
        ),
        support => Finding::ok(CHECK, format!("applied through {}", support.describe())),
    }
}

/// `/dev/net/tun` (for a user-mode network such as pasta).
pub fn tun() -> Finding {
    const CHECK: &str = "/dev/net/tun";
    match nix::unistd::access(
        "/dev/net/tun",
        nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK,
    ) {
        Ok(()) => Finding::ok(CHECK, "usable"),
        Err(_) if Path::new("/dev/net/tun").exists() => Finding::problem(
            CHECK,
            Verdict::Warn,
            "present but not usable by this user: jobs use the host network",
            "sudo chmod 0666 /dev/net/tun",
        ),
        Err(_) => Finding::problem(
            CHECK,
            Verdict::Warn,
            "missing: jobs use the host network",
            "sudo modprobe tun",
        ),
    }
}

/// Open files and processes this user may have.
pub fn rlimits() -> Finding {
    use nix::sys::resource::{Resource, getrlimit};
    const CHECK: &str = "resource limits";
    let files = getrlimit(Resource::RLIMIT_NOFILE).ok();
    let procs = getrlimit(Resource::RLIMIT_NPROC).ok();
    let show = |l: Option<(u64, u64)>| match l {
        Some((soft, hard)) => format!("{soft}/{hard}"),
        None => "unknown".into(),
    };
    let detail = format!(
        "open files {}, processes {} (soft/hard)",
        show(files),
        show(procs)
    );
    match files {
        Some((soft, _)) if soft < 1024 => Finding::problem(
            CHECK,
            Verdict::Warn,
            detail,
            "ulimit -n 4096 (or LimitNOFILE= in the service unit)",
        ),
        _ => Finding::ok(CHECK, detail),
    }
}

/// The decisive check: run a real sandbox (the same way jobs run) on an empty layer with the
/// host's `/usr` and libraries bound in read-only, the init executable running `true`... as
/// itself: `init_exe __sandbox-noop` is bound at `/wharf-probe`.
pub async fn sandbox_runs(init_exe: &Path, scratch: &Path) -> Finding {
    const CHECK: &str = "sandbox (namespaces + overlayfs)";
    let dirs = ["lower", "upper", "work", "merged"].map(|d| scratch.join(d));
    for d in &dirs {
        if let Err(e) = std::fs::create_dir_all(d) {
            return Finding::problem(
                CHECK,
                Verdict::Fail,
                format!("cannot create {}: {e}", d.display()),
                format!("make {} writable", scratch.display()),
            );
        }
    }
    let [lower, upper, work, merged] = dirs;
    let ids = id_mapping();
    // The host's libraries for wharf itself: real folders are bound read-only; merged-usr links
    // (`/lib64 -> usr/lib64`) are recreated in the empty layer.
    let mut binds = Vec::new();
    for p in ["/usr", "/lib", "/lib64", "/bin", "/lib32"] {
        let Ok(meta) = Path::new(p).symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            binds.push(Bind {
                source: PathBuf::from(p),
                target: p.into(),
                read_only: true,
            });
        } else if meta.is_symlink() {
            if let Ok(target) = std::fs::read_link(p) {
                let _ = std::os::unix::fs::symlink(target, lower.join(&p[1..]));
            }
        }
    }
    binds.push(Bind {
        source: init_exe.to_path_buf(),
        target: "/wharf-probe".into(),
        read_only: true,
    });
    let spec = Spec {
        root: RootFs::Overlay {
            lower: vec![lower],
            upper,
            work,
            merged,
            options: if ids == IdMapping::Host {
                vec![]
            } else {
                vec!["userxattr".into()]
            },
        },
        binds,
        argv: vec!["/wharf-probe".into(), crate::NOOP_ARG.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/".into(),
        user: None,
        hostname: "wharf-probe".into(),
        ids,
        network: Network::Host,
        cgroups: Vec::new(),
    };
    let outcome = match crate::spawn(&spec, init_exe).await {
        Ok(child) => child.wait_with_output().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    // Rootless, overlayfs leaves its `work/work` folder mode 0000 owned by the user, which
    // a plain removal cannot list: removed as the sandbox removes a job's folders.
    let _ = crate::state::remove_tree(scratch, ids, init_exe);
    match outcome {
        Ok(out) if out.status.success() => {
            let how = match ids {
                IdMapping::Host => "as root, no user namespace".to_string(),
                IdMapping::SingleId { uid, .. } => {
                    format!("rootless, in a user namespace mapping uid {uid} to root")
                }
                IdMapping::Subordinate {
                    uid,
                    uid_start,
                    count,
                    ..
                } => format!(
                    "rootless, in a user namespace mapping uid {uid} to root and {uid_start}..+{count} to 1..{count}"
                ),
            };
            Finding::ok(CHECK, format!("a test sandbox ran ({how})"))
        }
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            Finding::problem(
                CHECK,
                Verdict::Fail,
                format!("a test sandbox failed: {why}"),
                fix_for(&why),
            )
        }
        Err(why) => Finding::problem(
            CHECK,
            Verdict::Fail,
            format!("a test sandbox could not start: {why}"),
            fix_for(&why),
        ),
    }
}

/// The likely fix for a failed test sandbox, from its message.
fn fix_for(why: &str) -> String {
    if why.contains("user namespace") {
        "enable user namespaces (see the check above), or run wharf as root".into()
    } else if why.contains("overlay") {
        "use a kernel with overlayfs in user namespaces (Linux 5.11 or later), or run wharf as root"
            .into()
    } else {
        "run `wharf doctor` as root to see whether the kernel or the user's rights are the cause"
            .into()
    }
}
