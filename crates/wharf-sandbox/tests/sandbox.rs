//! The sandbox end to end: real namespaces, overlayfs and mounts (root tier), on a busybox-static
//! root folder built by the test.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::time::Duration;
use wharf_sandbox::{Bind, IdMapping, Network, RootFs, SETUP_ERROR_PREFIX, SETUP_FAILED, Spec};

const INIT: &str = env!("CARGO_BIN_EXE_wharf-sandbox-init");
const BUSYBOX: &str = "/usr/bin/busybox";

/// A root folder with busybox and its applets in /bin.
fn busybox_root(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .unwrap();
    for applet in String::from_utf8(out.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
    }
}

struct Layers {
    _tmp: tempfile::TempDir,
    lower: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    merged: PathBuf,
}

fn layers() -> Layers {
    let tmp = tempfile::tempdir().unwrap();
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|d| tmp.path().join(d));
    for d in [&lower, &upper, &work, &merged] {
        std::fs::create_dir_all(d).unwrap();
    }
    busybox_root(&lower);
    Layers {
        _tmp: tmp,
        lower,
        upper,
        work,
        merged,
    }
}

fn spec(l: &Layers, script: &str) -> Spec {
    Spec {
        root: RootFs::Overlay {
            lower: vec![l.lower.clone()],
            upper: l.upper.clone(),
            work: l.work.clone(),
            merged: l.merged.clone(),
            options: vec![],
        },
        binds: vec![],
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![
            ("PATH".into(), "/bin".into()),
            ("GREETING".into(), "hello from the sandbox".into()),
        ],
        cwd: "/builds/project".into(),
        user: None,
        hostname: "job-host".into(),
        ids: IdMapping::Host,
        network: Network::Host,
        cgroups: Vec::new(),
    }
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(spec: &Spec) -> Ran {
    let child = wharf_sandbox::spawn(spec, Path::new(INIT)).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Host processes whose command line is exactly `cmdline` (NUL-separated words).
fn host_processes(cmdline: &[&str]) -> usize {
    let wanted = cmdline.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .count()
}

async fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[tokio::test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
async fn the_command_runs_as_the_only_process_of_its_own_namespaces() {
    let l = layers();
    let ran = run(&spec(
        &l,
        "echo pid=$$; hostname; echo \"$GREETING\"; pwd; id -u; ls /proc | grep -c '^[0-9]'; exit 7",
    ))
    .await;
    assert_eq!(ran.code, 7, "{}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    // PID 1 is the init; the command is its first child.
    assert_eq!(
        lines,
        [
            "pid=2",
            "job-host",
            "hello from the sandbox",
            "/builds/project",
            "0",
            // init, sh, and the `ls` of the pipeline (grep reads its output)... processes
            // visible: only the sandbox's own.
            lines[5]
        ]
    );
    let visible: usize = lines[5].parse().unwrap();
    assert!(
        visible <= 4,
        "the sandbox sees {visible} processes: {}",
        ran.stdout
    );
}

#[tokio::test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
async fn writes_land_in_the_upper_folder_and_the_layer_is_untouched() {
    let l = layers();
    let ran = run(&spec(
        &l,
        "echo data > /new-file && rm /bin/true && ls /bin/true",
    ))
    .await;
    assert_ne!(ran.code, 0);
    assert!(l.lower.join("bin/true").symlink_metadata().is_ok());
    assert_eq!(
        std::fs::read_to_string(l.upper.join("new-file")).unwrap(),
        "data\n"
    );
    assert!(!l.lower.join("new-file").exists());
}

#[tokio::test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
async fn processes_left_behind_die_with_the_command() {
    let l = layers();
    let ran = run(&spec(&l, "sleep 31337 & echo started")).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(
        wait_until(|| host_processes(&["sleep", "31337"]) == 0).await,
        "a background process outlived the sandbox"
    );
}

#[tokio::test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
async fn killing_the_sandbox_kills_its_whole_tree() {
    let l = layers();
    let mut child = wharf_sandbox::spawn(&spec(&l, "sleep 31338 & sleep 31339"), Path::new(INIT))
        .await
        .unwrap();
    assert!(wait_until(|| host_processes(&["sleep", "31339"]) == 1).await);
    // As `kill -9` of wharf or a timeout does: only the first stage gets the signal.
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(
        wait_until(
            || host_processes(&["sleep", "31338"]) + host_processes(&["sleep", "31339"]) == 0
        )
        .await,
        "processes of a killed sandbox survived"
    );
}

#[tokio::test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
async fn a_link_in_the_image_cannot_redirect_a_bind_onto_the_host() {
    let l = layers();
    let host = tempfile::tempdir().unwrap();
    let sentinel = host.path().join("sentinel");
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("keep"), "host data").unwrap();
    // The image says /builds is the host's sentinel folder.
    std::os::unix::fs::symlink(&sentinel, l.lower.join("builds")).unwrap();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("source.txt"), "project file").unwrap();
    let mut s = spec(
        &l,
        "cat /builds/project/source.txt; echo; echo overwrite > /builds/project/keep",
    );
    s.binds.push(Bind {
        source: project.path().to_path_buf(),
        target: "/builds/project".into(),
        read_only: false,
    });
    let ran = run(&s).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout, "project file\n");
    // The bind landed inside the root, where the link leads *in the root*.
    assert_eq!(
        std::fs::read_to_string(sentinel.join("keep")).unwrap(),
        "host data"
    );
    assert_eq!(std::fs::read_dir(&sentinel).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(project.path().join("keep")).unwrap(),
        "overwrite\n"
    );
}

#[tokio::test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
async fn read_only_binds_refuse_writes() {
    let l = layers();
    let cache = tempfile::tempdir().unwrap();
    let mut s = spec(&l, "echo x > /cache/file");
    s.binds.push(Bind {
        source: cache.path().to_path_buf(),
        target: "/cache".into(),
        read_only: true,
    });
    let ran = run(&s).await;
    assert_ne!(ran.code, 0);
    assert!(ran.stderr.contains("Read-only"), "{}", ran.stderr);
    assert!(!cache.path().join("file").exists());
}

#[tokio::test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
async fn a_loopback_network_has_only_lo_and_it_is_up() {
    let l = layers();
    let mut s = spec(
        &l,
        "ip -o link | cut -d: -f2; ping -c1 -W2 127.0.0.1 >/dev/null && echo ping",
    );
    s.network = Network::Loopback;
    let ran = run(&s).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout, " lo\nping\n");
}

#[tokio::test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
async fn a_user_namespace_maps_root_to_the_caller() {
    let l = layers();
    let mut s = spec(&l, "id -u; cat /proc/self/uid_map");
    s.ids = IdMapping::SingleId { uid: 0, gid: 0 };
    let ran = run(&s).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let words: Vec<&str> = ran.stdout.split_whitespace().collect();
    assert_eq!(words, ["0", "0", "0", "1"]);
}

#[tokio::test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
async fn a_setup_failure_says_why_and_runs_nothing() {
    let l = layers();
    let mut s = spec(&l, "echo ran");
    s.binds.push(Bind {
        source: "/nonexistent/wharf-source".into(),
        target: "/x".into(),
        read_only: false,
    });
    let ran = run(&s).await;
    assert_eq!(ran.code, SETUP_FAILED);
    assert_eq!(ran.stdout, "");
    assert!(
        ran.stderr.starts_with(&format!(
            "{SETUP_ERROR_PREFIX}bind source /nonexistent/wharf-source"
        )),
        "{}",
        ran.stderr
    );
}

#[test]
fn debug_output_never_shows_environment_values() {
    let l = layers();
    let mut s = spec(&l, "true");
    s.env.push(("TOKEN".into(), "s3cr3t-value".into()));
    let shown = format!("{s:?}");
    assert!(shown.contains("TOKEN"));
    assert!(!shown.contains("s3cr3t-value"));
}

/// Rootless: an unprivileged user (nobody, through util-linux's `setpriv`) runs the init; root
/// inside is that user outside, the overlay is mounted inside the user namespace (`userxattr`),
/// the network is loopback only.
#[tokio::test]
#[ignore = "needs root: to become an unprivileged user with setpriv"]
async fn an_unprivileged_user_runs_a_sandbox_in_a_user_namespace() {
    use std::os::unix::fs::{PermissionsExt, chown};
    let l = layers();
    let nobody = 65534;
    std::fs::set_permissions(l._tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in [&l.upper, &l.work, &l.merged] {
        chown(d, Some(nobody), Some(nobody)).unwrap();
    }
    let mut s = spec(&l, "id -u; echo made > /made-here; cat /proc/self/uid_map");
    s.ids = IdMapping::SingleId {
        uid: nobody,
        gid: nobody,
    };
    s.network = Network::Loopback;
    if let RootFs::Overlay { options, .. } = &mut s.root {
        options.push("userxattr".into());
    }
    let mut child = tokio::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", INIT])
        .arg(wharf_sandbox::INIT_ARG)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let json = serde_json::to_vec(&s).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &json)
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words, ["0", "0", "65534", "1"]);
    let made = std::fs::metadata(l.upper.join("made-here")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(made.uid(), nobody, "root inside is nobody outside");
}

#[tokio::test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
async fn the_command_runs_as_the_given_ids() {
    let l = layers();
    let mut s = spec(&l, "echo $(id -u) $(id -g)");
    s.user = Some((1001, 50));
    let ran = run(&s).await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert_eq!(ran.stdout.trim(), "1001 50");
    s.ids = IdMapping::SingleId { uid: 0, gid: 0 };
    let ran = run(&s).await;
    assert_eq!(ran.code, SETUP_FAILED);
    assert!(
        ran.stderr.contains("cannot run as 1001:50"),
        "{}",
        ran.stderr
    );
}

/// A tree its owner cannot remove as itself (a 0000 folder with a file in it, as a job may leave
/// in its upper folder) is removed by `__sandbox-remove` from inside a user namespace, where the
/// owner is root.
#[test]
#[ignore = "needs root: to become an unprivileged user with setpriv"]
fn the_remove_stage_removes_what_its_user_cannot_remove_as_itself() {
    use std::os::unix::fs::{PermissionsExt, chown};
    let nobody = 65534;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(state.join("upper/locked")).unwrap();
    std::fs::write(state.join("upper/locked/f"), "f").unwrap();
    for p in ["", "upper", "upper/locked", "upper/locked/f"] {
        chown(state.join(p), Some(nobody), Some(nobody)).unwrap();
    }
    std::fs::set_permissions(
        state.join("upper/locked"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let as_nobody = |program: &str| {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
        c
    };
    let plain = as_nobody("rm").arg("-rf").arg(&state).output().unwrap();
    assert!(!plain.status.success(), "nobody removed it as itself");
    let mut child = as_nobody(INIT)
        .arg(wharf_sandbox::REMOVE_ARG)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ids = IdMapping::SingleId {
        uid: nobody,
        gid: nobody,
    };
    let request = serde_json::json!({"ids": ids, "path": state});
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        &serde_json::to_vec(&request).unwrap(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!state.exists());
}
