//! The two init stages, run in fresh processes of the init executable (wharf itself):
//! `__sandbox-init` enters the namespaces, `__sandbox-pid1` is PID 1 inside them. Both read the
//! [`Spec`] as JSON from stdin. Errors end the stage with [`SETUP_FAILED`] and one line on
//! stderr prefixed with [`SETUP_ERROR_PREFIX`].

use crate::{IdMapping, Network, RootFs, SETUP_ERROR_PREFIX, SETUP_FAILED, Spec};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, chdir, pivot_root, sethostname};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use wharf_fs::{Resolve, Root};

/// First argument that makes the init executable run the first stage.
pub const INIT_ARG: &str = "__sandbox-init";
/// First argument of the second stage (PID 1 of the sandbox).
pub const PID1_ARG: &str = "__sandbox-pid1";
/// First argument that makes the init executable exit 0 at once: the command `wharf doctor`'s
/// test sandbox runs (wharf itself, bound into an empty root).
pub const NOOP_ARG: &str = "__sandbox-noop";

/// Run the stage `args` names (the process's arguments after the program name), if it names
/// one: `Some(exit code)`. Call it first thing in `main`, before any thread exists: entering a
/// user namespace needs a single-threaded process.
pub fn dispatch(args: &[String]) -> Option<i32> {
    let stage = match args.first().map(String::as_str) {
        Some(INIT_ARG) => enter_namespaces,
        Some(PID1_ARG) => pid1,
        Some(NOOP_ARG) => return Some(0),
        _ => return None,
    };
    Some(match read_spec().and_then(stage) {
        Ok(code) => code,
        Err(Setup(why)) => {
            let _ = writeln!(std::io::stderr(), "{SETUP_ERROR_PREFIX}{why}");
            SETUP_FAILED
        }
    })
}

/// Why the sandbox could not be set up.
struct Setup(String);

fn setup<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> Setup {
    move |e| Setup(format!("{what}: {e}"))
}

fn read_spec() -> Result<Spec, Setup> {
    // Die with the parent: a killed wharf (or a killed first stage) takes the sandbox down.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(setup("PR_SET_PDEATHSIG"))?;
    let mut json = Vec::new();
    std::io::stdin()
        .read_to_end(&mut json)
        .map_err(setup("reading the sandbox specification"))?;
    serde_json::from_slice(&json).map_err(setup("the sandbox specification"))
}

/// Stage 1: user namespace (when asked), then mount/pid/uts/ipc(/net); start PID 1.
fn enter_namespaces(spec: Spec) -> Result<i32, Setup> {
    match spec.ids {
        IdMapping::Host => {}
        IdMapping::SingleId { uid, gid } => {
            unshare(CloneFlags::CLONE_NEWUSER).map_err(setup("entering a user namespace"))?;
            // An unprivileged process may map only its own ids, and only with setgroups denied.
            write_proc("/proc/self/setgroups", "deny")?;
            write_proc("/proc/self/uid_map", &format!("0 {uid} 1"))?;
            write_proc("/proc/self/gid_map", &format!("0 {gid} 1"))?;
        }
        IdMapping::Subordinate {
            uid,
            gid,
            uid_start,
            gid_start,
            count,
        } => {
            // The setuid newuidmap/newgidmap must run outside the new namespace: a helper is
            // started before it exists and maps this process once told it has entered it.
            let me = std::process::id().to_string();
            let mut mapper = Command::new("/bin/sh")
                .args([
                    "-c",
                    "read _ && newuidmap \"$1\" 0 \"$2\" 1 1 \"$3\" \"$4\" && newgidmap \"$1\" 0 \"$5\" 1 1 \"$6\" \"$4\"",
                    "sh",
                    &me,
                    &uid.to_string(),
                    &uid_start.to_string(),
                    &count.to_string(),
                    &gid.to_string(),
                    &gid_start.to_string(),
                ])
                .env_clear()
                .env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .map_err(setup("starting newuidmap (install the uidmap package)"))?;
            unshare(CloneFlags::CLONE_NEWUSER).map_err(setup("entering a user namespace"))?;
            if let Some(mut go) = mapper.stdin.take() {
                go.write_all(b"\n")
                    .map_err(setup("telling newuidmap to map the ids"))?;
            }
            let status = mapper.wait().map_err(setup("waiting for newuidmap"))?;
            if !status.success() {
                return Err(Setup(format!(
                    "newuidmap/newgidmap could not map {uid_start}..+{count} ({status}): check /etc/subuid and /etc/subgid"
                )));
            }
        }
    }
    if spec.network == Network::Loopback {
        // Before the pid namespace: its first child becomes its PID 1, and `ip` exiting would
        // end the namespace before the real PID 1 starts.
        unshare(CloneFlags::CLONE_NEWNET).map_err(setup("entering a network namespace"))?;
        bring_up_loopback()?;
    }
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    unshare(flags).map_err(setup("entering new namespaces"))?;
    let json = serde_json::to_vec(&spec).map_err(setup("the sandbox specification"))?;
    let mut pid1 = Command::new("/proc/self/exe")
        .arg(PID1_ARG)
        .env_clear()
        .stdin(Stdio::piped())
        .spawn()
        .map_err(setup("starting the sandbox's PID 1"))?;
    if let Some(mut stdin) = pid1.stdin.take() {
        stdin
            .write_all(&json)
            .map_err(setup("handing PID 1 the specification"))?;
    }
    let status = pid1.wait().map_err(setup("waiting for the sandbox"))?;
    Ok(exit_code(status))
}

fn write_proc(path: &str, text: &str) -> Result<(), Setup> {
    std::fs::write(path, text).map_err(setup(format!("writing {path}")))
}

/// `ip link set lo up` in the new network namespace (iproute2: part of every Debian install).
fn bring_up_loopback() -> Result<(), Setup> {
    let status = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .status()
        .map_err(setup("running `ip link set lo up` (install iproute2)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(Setup(format!("`ip link set lo up` failed ({status})")))
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Stage 2, PID 1 of the new pid namespace: build the root, pivot into it, run the command and
/// reap every process until it ends. Returning ends the namespace and everything left in it.
fn pid1(spec: Spec) -> Result<i32, Setup> {
    // Nothing mounted from here on may reach the host's mount table.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(setup("making the mounts private"))?;
    let root_path = mount_root(&spec.root)?;
    let root = Root::open(&root_path, Resolve::InRoot)
        .map_err(setup(format!("opening the root {}", root_path.display())))?;
    mount_proc_and_dev(&root)?;
    for bind in &spec.binds {
        mount_bind(&root, &bind.source, &bind.target, bind.read_only)?;
    }
    sethostname(&spec.hostname).map_err(setup("setting the host name"))?;
    drop(root);
    chdir(&root_path).map_err(setup("entering the root"))?;
    // The old root is stacked under the new one and detached: nothing of the host stays visible.
    pivot_root(".", ".").map_err(setup("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(setup("detaching the host's root"))?;
    chdir("/").map_err(setup("entering /"))?;
    std::fs::create_dir_all(&spec.cwd)
        .map_err(setup(format!("creating the working folder {}", spec.cwd)))?;
    run(&spec)
}

/// Mount the root file system; its path.
fn mount_root(root: &RootFs) -> Result<std::path::PathBuf, Setup> {
    match root {
        RootFs::Overlay {
            lower,
            upper,
            work,
            merged,
            options,
        } => {
            let lower: Vec<String> = lower.iter().map(|p| escape_overlay(p)).collect();
            let mut data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                escape_overlay(upper),
                escape_overlay(work)
            );
            for o in options {
                data.push(',');
                data.push_str(o);
            }
            mount(
                Some("overlay"),
                merged,
                Some("overlay"),
                MsFlags::empty(),
                Some(data.as_str()),
            )
            .map_err(setup(format!(
                "mounting the overlay on {}",
                merged.display()
            )))?;
            Ok(merged.clone())
        }
        RootFs::Folder(path) => {
            // pivot_root needs a mount point.
            mount(
                Some(path),
                path,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(setup(format!("binding the root {}", path.display())))?;
            Ok(path.clone())
        }
    }
}

/// overlayfs splits its options on `,` and `:`; both are escaped with `\`.
fn escape_overlay(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `/proc` of the new pid namespace, and a `/dev` of its own: a tmpfs with the host's harmless
/// character devices bound in (creating device nodes is not allowed in a user namespace).
fn mount_proc_and_dev(root: &Root) -> Result<(), Setup> {
    let proc_dir = dir_in(root, "proc")?;
    mount(
        Some("proc"),
        fd_path(&proc_dir).as_str(),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(setup("mounting /proc"))?;
    let dev_dir = dir_in(root, "dev")?;
    mount(
        Some("tmpfs"),
        fd_path(&dev_dir).as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=755,size=65536k"),
    )
    .map_err(setup("mounting /dev"))?;
    // The fd above is the folder under the mount: open the tmpfs itself.
    let dev = dir_in(root, "dev")?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let placeholder = dev
            .create_new(name, 0o666)
            .map_err(setup(format!("creating /dev/{name}")))?;
        mount(
            Some(Path::new("/dev").join(name).as_path()),
            fd_path(&placeholder).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(setup(format!("binding /dev/{name}")))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        dev.symlink(target, link)
            .map_err(setup(format!("linking /dev/{link}")))?;
    }
    dev.create_dir("shm", 0o1777)
        .map_err(setup("creating /dev/shm"))?;
    let shm = dir_in(&dev, "shm")?;
    mount(
        Some("shm"),
        fd_path(&shm).as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777,size=65536k"),
    )
    .map_err(setup("mounting /dev/shm"))?;
    Ok(())
}

/// The folder `path` inside `root` (created if missing), resolved inside it.
fn dir_in(root: &Root, path: &str) -> Result<Root, Setup> {
    root.create_dir_all(path, 0o755)
        .map_err(setup(format!("creating {path} in the root")))?;
    root.open_dir(path, Resolve::InRoot)
        .map_err(setup(format!("opening {path} in the root")))
}

/// `source` (a host path) bound at `target` inside `root`. Links on the way to the target are
/// resolved inside the root (an image's `/var/run -> /run` works; a link to a host path leads to
/// that path inside the root); the target is created like the source (folder or empty file).
fn mount_bind(root: &Root, source: &Path, target: &str, read_only: bool) -> Result<(), Setup> {
    let is_dir = std::fs::metadata(source)
        .map_err(setup(format!("bind source {}", source.display())))?
        .is_dir();
    let inside = resolve_in_root(root, target)?;
    let open = |root: &Root| -> Result<Box<dyn AsFd>, Setup> {
        if is_dir {
            return Ok(Box::new(dir_in(root, &inside)?));
        }
        if let Some(parent) = Path::new(&inside).parent().and_then(Path::to_str) {
            if !parent.is_empty() {
                root.create_dir_all(parent, 0o755)
                    .map_err(setup(format!("creating {parent} in the root")))?;
            }
        }
        match root.open_read(&inside) {
            Ok(f) => Ok(Box::new(f)),
            Err(_) => Ok(Box::new(
                root.create_new(&inside, 0o644)
                    .map_err(setup(format!("creating {target} in the root")))?,
            )),
        }
    };
    let target_fd = open(root)?;
    mount(
        Some(source),
        fd_path(target_fd.as_ref()).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(setup(format!("binding {} at {target}", source.display())))?;
    if read_only {
        // The fd above holds what is under the new mount: open the target again to reach the
        // mount itself, and remount that read-only.
        let mounted = open(root)?;
        mount(
            None::<&str>,
            fd_path(mounted.as_ref()).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(setup(format!("making {target} read-only")))?;
    }
    Ok(())
}

/// Most links followed while resolving one path (Linux's own limit).
const MAX_LINK_HOPS: usize = 40;

/// `path` as the command will see it: every symbolic link on the way resolved inside `root`
/// (absolute targets start at the root, `..` stops at it), as a root-relative path without
/// links. Parts that do not exist yet are kept as written.
fn resolve_in_root(root: &Root, path: &str) -> Result<String, Setup> {
    let mut done: Vec<String> = Vec::new();
    let mut todo: std::collections::VecDeque<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let mut hops = 0;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let candidate = if done.is_empty() {
            part.clone()
        } else {
            format!("{}/{part}", done.join("/"))
        };
        let is_link = root
            .try_metadata(&candidate)
            .map_err(setup(format!("resolving {path} in the root")))?
            .is_some_and(|m| m.file_type().is_symlink());
        if !is_link {
            done.push(part);
            continue;
        }
        hops += 1;
        if hops > MAX_LINK_HOPS {
            return Err(Setup(format!(
                "resolving {path} in the root: more than {MAX_LINK_HOPS} symbolic links"
            )));
        }
        let target = root
            .read_link(&candidate)
            .map_err(setup(format!("resolving {path} in the root")))?;
        let target = target.to_string_lossy();
        if target.starts_with('/') {
            done.clear();
        }
        for c in target.split('/').rev().filter(|c| !c.is_empty()) {
            todo.push_front(c.to_string());
        }
    }
    Ok(done.join("/"))
}

fn fd_path(fd: &dyn AsFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// Start the command and reap every process until it ends: its exit code (128 + signal).
fn run(spec: &Spec) -> Result<i32, Setup> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(Setup("no command to run".into()));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null());
    if let Some((uid, gid)) = spec.user {
        if !spec.ids.maps(uid, gid) {
            return Err(Setup(format!(
                "cannot run as {uid}:{gid}: this sandbox's user namespace does not map it"
            )));
        }
        command.uid(uid).gid(gid);
    }
    let child = command
        .spawn()
        .map_err(setup(format!("starting `{program}` in the sandbox")))?;
    let job = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == job => return Ok(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == job => {
                return Ok(128 + signal as i32);
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Setup(format!("waiting for the command: {e}"))),
        }
    }
}
