//! `wharf doctor` on this machine: its test sandbox really runs (as root, and rootless as
//! nobody through util-linux's `setpriv`).

use std::process::Command;

/// Runs `wharf doctor` with a temporary folder of its own, and checks that it leaves nothing
/// there (regression: run rootless, every run left overlayfs's `work/work`, mode 0000, in
/// `/tmp`).
fn doctor(as_nobody: bool) -> (i32, String) {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let wharf = env!("CARGO_BIN_EXE_wharf");
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", wharf]);
        c
    } else {
        Command::new(wharf)
    };
    let out = cmd
        .arg("doctor")
        .env("HOME", "/tmp")
        .env_remove("DOCKER_HOST")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "wharf doctor left {left:?}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
#[ignore = "needs root: namespaces, overlayfs and mounts"]
fn doctor_runs_a_test_sandbox_as_root() {
    let (code, out) = doctor(false);
    assert!(
        out.contains("ok    sandbox (namespaces + overlayfs): a test sandbox ran (as root"),
        "{out}"
    );
    assert!(out.contains("user namespaces: enabled"), "{out}");
    // As the sandbox executor will: v1 hierarchies as root count (this machine is hybrid).
    assert!(
        out.contains("ok    limits (--memory, --pids-limit): applied through cgroup"),
        "{out}"
    );
    // Every problem found comes with its fix.
    for (i, line) in out.lines().enumerate() {
        if line.starts_with("warn") || line.starts_with("FAIL") {
            let next = out.lines().nth(i + 1).unwrap_or("");
            assert!(
                next.trim_start().starts_with("fix:")
                    || line.contains("fix")
                    || line.contains("Docker"),
                "no fix for: {line}"
            );
        }
    }
    assert_eq!(code, i32::from(out.contains("FAIL")), "{out}");
}

#[test]
#[ignore = "needs root: to become an unprivileged user with setpriv"]
fn doctor_runs_a_test_sandbox_rootless() {
    let (_, out) = doctor(true);
    assert!(
        out.contains(
            "a test sandbox ran (rootless, in a user namespace mapping uid 65534 to root)"
        ),
        "{out}"
    );
    assert!(out.contains("subordinate ids"), "{out}");
    assert!(
        out.contains("warn  limits (--memory, --pids-limit): ") && out.contains("Delegate=yes"),
        "{out}"
    );
}
