//! `--memory` and `--pids-limit` for real: the sandbox executor (as root through this machine's
//! cgroup v1 hierarchies; rootless, where no limit can apply and the log says so) and the Docker
//! executor (dockerd). The cgroup v2 delegated path cannot be produced on a hybrid-cgroup
//! machine: `wharf-sandbox`'s `cgroup.rs` unit tests check its file writes on a fake group.

use crate::support::*;
use std::path::{Path, PathBuf};
use wharf_testkit::Registry;

const USER: &str = "ci-bot";
const PASS: &str = "limits-pass";

/// A job over 64 MiB: `tail` holds the whole of a line without newline.
const MEMORY_HOG: &str = "hog:\n  image: IMAGE\n  script:\n    - head -c 300m /dev/zero | tail >/dev/null\n    - echo survived\n";
/// A job forking more sleepers than 20 processes allow.
const FORK_LOOP: &str = "forks:\n  image: IMAGE\n  script:\n    - i=0; while [ $i -lt 60 ]; do sleep 31351 & i=$((i+1)); done; echo forks=$i\n";

/// The busybox test image, pushed to `reg` (the sandbox pulls it with wharf's own client).
fn image_in(reg: &Registry) -> String {
    let image = format!("{}/busybox:limits", reg.host());
    let layout = tempfile::tempdir().unwrap();
    wharf_testkit::build_busybox_image(layout.path(), &[])
        .unwrap()
        .push(&image, Some((USER, PASS)))
        .unwrap();
    image
}

fn auth_var(reg: &Registry) -> String {
    let json = serde_json::json!({"auths": {reg.host(): {"auth": b64(&format!("{USER}:{PASS}"))}}});
    format!("DOCKER_AUTH_CONFIG={json}")
}

/// A registry holding the test image, a project whose pipeline is `job` (`IMAGE` replaced by
/// it), an empty image store, and the `--variable` with the registry's credentials.
fn sandbox_job(job: &str) -> (Registry, Project, tempfile::TempDir, String) {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let p = Project::pipeline(&job.replace("IMAGE", &image_in(&reg)));
    let var = auth_var(&reg);
    (reg, p, tempfile::tempdir().unwrap(), var)
}

/// Folders named `wharf-<pid>-*` (the groups wharf process `pid` makes) anywhere in the
/// cgroup hierarchies.
fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, prefix: &str, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                found.push(path.clone());
            }
            if depth > 0 {
                walk(&path, prefix, depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        &format!("wharf-{pid}-"),
        6,
        &mut found,
    );
    found
}

/// `wharf run --executor sandbox` (no Docker daemon) with `args`; asserts that no cgroup of that
/// wharf is left afterwards.
fn sandbox_run(p: &Project, home: &Path, args: &[&str]) -> Run {
    let mut command = p.wharf();
    command
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("WHARF_HOME", home)
        .args(["run", "--executor", "sandbox"])
        .args(args);
    run_leaving_no_cgroup(command)
}

/// Run `command` (wharf) to its end; asserts that no cgroup of that wharf is left afterwards.
fn run_leaving_no_cgroup(mut command: std::process::Command) -> Run {
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let run = Run::from(child.wait_with_output().unwrap());
    assert_eq!(
        cgroups_of(pid),
        Vec::<PathBuf>::new(),
        "cgroups left behind"
    );
    run
}

#[test]
#[ignore = "needs root (namespaces, cgroups) and docker-registry: run by scripts/test-all.sh"]
fn the_sandbox_kills_a_job_over_its_memory_limit_and_says_so() {
    let (_reg, p, home, var) = sandbox_job(MEMORY_HOG);
    let run = sandbox_run(&p, home.path(), &["--memory", "64m", "--variable", &var]);
    run.assert_code(1)
        .assert_contains("Limits: --memory 64 MiB (cgroup")
        .assert_contains("the job's memory limit (64 MiB) was reached")
        .assert_lacks("survived");
    // The same job without the limit runs to its end: the limit did it.
    let run = sandbox_run(
        &p,
        home.path(),
        &["--pull-policy", "never", "--variable", &var],
    );
    run.assert_code(0).assert_contains("survived");
}

#[test]
#[ignore = "needs root (namespaces, cgroups) and docker-registry: run by scripts/test-all.sh"]
fn the_sandbox_stops_a_fork_loop_at_its_pids_limit() {
    let (_reg, p, home, var) = sandbox_job(FORK_LOOP);
    let run = sandbox_run(&p, home.path(), &["--pids-limit", "20", "--variable", &var]);
    run.assert_code(1)
        .assert_contains("Limits: --pids-limit 20 (cgroup")
        .assert_contains("can't fork")
        .assert_lacks("forks=60");
}

#[test]
#[ignore = "needs root (to become a user without root with setpriv) and docker-registry: run by scripts/test-all.sh"]
fn a_rootless_sandbox_says_which_limits_it_cannot_apply_and_still_runs_the_job() {
    let (_reg, p, home, var) =
        sandbox_job("small:\n  image: IMAGE\n  script: [echo ran-unlimited]\n");
    let (uid, gid) = system_user("wharf-e2e-limits", None);
    let mut command = wharf_as(uid, gid, &p, home.path());
    command
        .args(["run", "--executor", "sandbox", "--memory", "64m"])
        .args(["--pids-limit", "20", "--variable", &var]);
    let run = run_leaving_no_cgroup(command);
    run.assert_code(0)
        .assert_contains("--memory 64 MiB and --pids-limit 20 not applied: ")
        .assert_contains("Delegate=yes")
        .assert_contains("ran-unlimited");
    assert_eq!(run.all().matches("not applied").count(), 1, "{}", run.all());
}

#[test]
#[ignore = "needs root (namespaces, cgroups) and docker-registry: run by scripts/test-all.sh"]
fn the_groups_of_a_wharf_killed_with_kill_9_are_removed_by_the_next_run() {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let image = image_in(&reg);
    let p = Project::pipeline(&format!(
        "hang:\n  image: {image}\n  script: [sleep 31352]\n"
    ));
    let home = tempfile::tempdir().unwrap();
    let var = auth_var(&reg);
    let mut killed = p
        .wharf()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("WHARF_HOME", home.path())
        .args(["run", "--executor", "sandbox", "--pids-limit", "50"])
        .args(["--variable", &var])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = killed.id();
    let mut left = Vec::new();
    for _ in 0..200 {
        left = cgroups_of(pid);
        let running = left.iter().any(|g| {
            std::fs::read_to_string(g.join("cgroup.procs")).is_ok_and(|t| t.lines().count() > 1)
        });
        if running {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!left.is_empty(), "the job never ran in its group");
    killed.kill().unwrap(); // SIGKILL: none of wharf's cleanup runs
    killed.wait().unwrap();
    // The job dies with wharf (PR_SET_PDEATHSIG); its empty group stays until the next run.
    let p2 = Project::pipeline(&format!("quick:\n  image: {image}\n  script: ['true']\n"));
    sandbox_run(
        &p2,
        home.path(),
        &["--pids-limit", "50", "--pull-policy", "never"],
    )
    .assert_code(0);
    assert_eq!(
        cgroups_of(pid),
        Vec::<PathBuf>::new(),
        "the killed run's groups are left"
    );
}

#[test]
fn the_shell_executor_says_it_cannot_limit() {
    let p = Project::pipeline("plain:\n  script: [echo ran]\n");
    p.run(&[
        "run",
        "--executor",
        "shell",
        "--memory",
        "1g",
        "--pids-limit",
        "100",
    ])
    .assert_code(0)
    .assert_contains("--memory 1 GiB and --pids-limit 100 not applied: the shell executor")
    .assert_contains("ran");
}

#[test]
fn a_bad_size_names_the_flag() {
    let p = Project::pipeline("plain:\n  script: [echo ran]\n");
    p.run(&["run", "--memory", "12x"])
        .assert_code(2)
        .assert_contains("--memory")
        .assert_contains("`12x` is not a memory size");
    p.run(&["run", "--pids-limit", "0"])
        .assert_code(2)
        .assert_contains("--pids-limit");
}

/// `wharf run --executor docker` of `job` (its image: the busybox test image loaded as `tag`).
fn docker_run(job: &str, tag: &str, args: &[&str]) -> (Project, Run) {
    let p = Project::pipeline(&job.replace("IMAGE", tag));
    let run = p.run(
        &[
            &["run", "--executor", "docker", "--pull-policy", "never"][..],
            args,
        ]
        .concat(),
    );
    assert_no_containers(&p);
    (p, run)
}

#[test]
#[ignore = "needs dockerd: run by scripts/test-all.sh"]
fn docker_kills_a_job_over_its_memory_limit_and_wharf_says_so() {
    let tag = "wharf-limits-busybox:1";
    load_busybox_into_docker(tag);
    let (_p, run) = docker_run(MEMORY_HOG, tag, &["--memory", "64m"]);
    run.assert_code(1)
        .assert_contains("Limits of every job container: --memory 64 MiB")
        .assert_contains("the job's memory limit (64 MiB) was reached")
        .assert_lacks("survived");
    let (_p, run) = docker_run(FORK_LOOP, tag, &["--pids-limit", "20"]);
    run.assert_code(1)
        .assert_contains("can't fork")
        .assert_lacks("forks=60");
    let _ = std::process::Command::new("docker")
        .args(["rmi", tag])
        .output();
}
