//! Sandbox tier: the seed pipeline in its image with no Docker daemon (DOCKER_HOST points
//! nowhere), the image pulled by wharf itself from Debian's docker-registry with htpasswd and
//! with token auth, credentials from DOCKER_AUTH_CONFIG.

use crate::support::*;
use wharf_testkit::Registry;

pub(crate) const USER: &str = "ci-bot";
pub(crate) const PASS: &str = "'I(Bx}yr}~Dk>?>?s3cr3t";

pub(crate) fn seed_in_registry(reg: &Registry) -> (String, tempfile::TempDir) {
    let image = format!("{}/node:10-alpine", reg.host());
    let layout = tempfile::tempdir().unwrap();
    unique_seed_layout(layout.path())
        .push(&image, Some((USER, PASS)))
        .unwrap();
    (image, layout)
}

pub(crate) fn auth_json(host: &str) -> String {
    serde_json::json!({"auths": {host: {"auth": b64(&format!("{USER}:{PASS}"))}}}).to_string()
}

/// `wharf run` with no Docker daemon reachable and its own image store.
pub(crate) fn run_without_docker(p: &Project, home: &std::path::Path, args: &[&str]) -> Run {
    Run::from(
        p.wharf()
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("WHARF_HOME", home)
            .args(args)
            .output()
            .unwrap(),
    )
}

/// A job in `image` as its `builder` user that says who it runs as, keeps `out/` as artifact and
/// leaves files of its own outside the build folder (in its upper folder).
fn builder_job(image: &str) -> String {
    format!(
        "build:
  image:
    name: {image}
    docker:
      user: builder
  script:
    - echo \"whoami=$(id -u):$(id -g)\"
    - mkdir -p out && echo made > out/result
    - mkdir -p /tmp/x/d && touch /tmp/x/d/f && chmod 755 /tmp/x/d
  artifacts:
    paths: [out/]
"
    )
}

/// A busybox image whose /etc/passwd has `builder` (1001:1002), pushed to `reg` as `users:1`.
fn image_with_builder_user(reg: &Registry) -> String {
    let image = format!("{}/users:1", reg.host());
    let layout = tempfile::tempdir().unwrap();
    let files: [(&str, &[u8], u32); 2] = [
        (
            "/etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nbuilder:x:1001:1002:b:/home/b:/bin/sh\n",
            0o644,
        ),
        ("/etc/group", b"root:x:0:\nbuilders:x:1002:\n", 0o644),
    ];
    wharf_testkit::build_busybox_image(layout.path(), &files)
        .unwrap()
        .push(&image, Some((USER, PASS)))
        .unwrap();
    image
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn the_seed_pipeline_runs_in_its_image_without_docker() {
    for reg in [
        Registry::start_basic(&[(USER, PASS)]).unwrap(),
        Registry::start_token(&[(USER, PASS)]).unwrap(),
    ] {
        let (image, _layout) = seed_in_registry(&reg);
        let p = Project::seed(Some(&image));
        let before = p.user_tree();
        let home = tempfile::tempdir().unwrap();
        let json = auth_json(&reg.host());
        let var = format!("DOCKER_AUTH_CONFIG={json}");
        let run = run_without_docker(
            &p,
            home.path(),
            &["run", "--executor", "sandbox", "--variable", &var],
        );
        if std::env::var_os("SHOW").is_some() {
            eprintln!("{}", run.all());
        }
        run.assert_code(0)
            .assert_contains("Using sandbox executor with image")
            .assert_contains("Authenticating with credentials from $DOCKER_AUTH_CONFIG")
            .assert_contains("<h1>built for staging</h1>")
            .assert_contains("Job succeeded");
        let tar = p
            .path()
            .join(".wharf/artifacts/build-staging/dist-staging.tar");
        assert!(tar_list(&tar).contains(&"dist/index.html".to_string()));
        assert_eq!(before, p.user_tree(), "the user's files changed");
        p.assert_no_secrets(&run, &[PASS, &b64(&format!("{USER}:{PASS}")), &json]);
        // `auto` with no daemon picks the sandbox and says why; the image is already local.
        let run = run_without_docker(
            &p,
            home.path(),
            &["run", "--pull-policy", "never", "--variable", &var],
        );
        run.assert_code(0)
            .assert_contains("No Docker daemon")
            .assert_contains("runs in wharf's sandbox")
            .assert_contains("Job succeeded");
        // Nothing of the sandboxes is left.
        assert_eq!(sandbox_state_folders(&p), Vec::<String>::new());
    }
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn every_credential_source_pulls_for_the_sandbox_with_basic_and_token_auth() {
    use crate::docker::{install_helper, write_config};
    for reg in [
        Registry::start_basic(&[(USER, PASS)]).unwrap(),
        Registry::start_token(&[(USER, PASS)]).unwrap(),
    ] {
        let (image, _layout) = seed_in_registry(&reg);
        let host = reg.host();
        let json = auth_json(&host);
        // (what the log names, how the source is set up on the project)
        type Setup = Box<dyn Fn(&Project, &mut std::process::Command)>;
        let sources: Vec<(String, Setup)> = vec![
            (
                "$DOCKER_AUTH_CONFIG".into(),
                Box::new(move |_, cmd| {
                    cmd.env("DOCKER_AUTH_CONFIG", &json);
                }),
            ),
            ("config.json".into(), {
                let host = host.clone();
                Box::new(move |p, cmd| {
                    let dir = p.home.path().join("docker-config");
                    write_config(
                        &dir,
                        &serde_json::json!({"auths": {host.clone(): {"username": USER, "password": PASS}}}),
                    );
                    cmd.env("DOCKER_CONFIG", dir);
                })
            }),
            ("docker-credential-wharftest".into(), {
                let host = host.clone();
                Box::new(move |p, cmd| {
                    let bin = p.home.path().join("bin");
                    install_helper(&bin, "wharftest", &host);
                    write_config(
                        &p.home.path().join(".docker"),
                        &serde_json::json!({"credHelpers": {host.clone(): "wharftest"}}),
                    );
                    let path = std::env::var("PATH").unwrap_or_default();
                    cmd.env("PATH", format!("{}:{path}", bin.display()));
                })
            }),
        ];
        for (named, setup) in &sources {
            let p = Project::seed(Some(&image));
            let home = tempfile::tempdir().unwrap();
            let mut cmd = p.wharf();
            cmd.env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
                .env("WHARF_HOME", home.path())
                .args(["run", "--executor", "sandbox"]);
            setup(&p, &mut cmd);
            let run = Run::from(cmd.output().unwrap());
            run.assert_code(0)
                .assert_contains("Authenticating with credentials from")
                .assert_contains(named.as_str())
                .assert_contains("<h1>built for staging</h1>");
            p.assert_no_secrets(&run, &[PASS, &b64(&format!("{USER}:{PASS}"))]);
        }
    }
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn without_credentials_the_sandbox_pull_explains_the_fix() {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let (image, _layout) = seed_in_registry(&reg);
    let p = Project::seed(Some(&image));
    let home = tempfile::tempdir().unwrap();
    let run = run_without_docker(&p, home.path(), &["run", "--executor", "sandbox"]);
    run.assert_code(1)
        .assert_contains(&reg.host())
        .assert_contains("DOCKER_AUTH_CONFIG");
}

/// Host processes whose command line is exactly `words`.
pub(crate) fn processes(words: &[&str]) -> usize {
    let wanted = words.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .count()
}

pub(crate) fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

/// A job started in the sandbox beside a `quick` one (which does nothing), and what it needs to
/// go on (its registry, project and image store).
struct StartedJob {
    _registry: Registry,
    _layout: tempfile::TempDir,
    project: Project,
    home: tempfile::TempDir,
    wharf: std::process::Child,
}

/// A project with the job `name` running `script` and a job `quick`, both in the seed image
/// from a registry; `wharf run <name>` in the sandbox started, not waited for.
fn start_beside_quick(name: &str, script: &[&str]) -> StartedJob {
    let registry = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let (image, layout) = seed_in_registry(&registry);
    let mut pipeline = format!("{name}:\n  image: {image}\n  script:\n");
    for line in script {
        pipeline += &format!("    - {line}\n");
    }
    pipeline += &format!("quick:\n  image: {image}\n  script: ['true']\n");
    let project = Project::pipeline(&pipeline);
    let home = tempfile::tempdir().unwrap();
    let var = format!("DOCKER_AUTH_CONFIG={}", auth_json(&registry.host()));
    let wharf = project
        .wharf()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("WHARF_HOME", home.path())
        .args(["run", name, "--executor", "sandbox", "--variable", &var])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    StartedJob {
        _registry: registry,
        _layout: layout,
        project,
        home,
        wharf,
    }
}

/// `wharf run quick` in the sandbox, its image already in the store.
fn run_quick(p: &Project, home: &std::path::Path) -> Run {
    run_without_docker(
        p,
        home,
        &[
            "run",
            "quick",
            "--executor",
            "sandbox",
            "--pull-policy",
            "never",
        ],
    )
}

/// What `.wharf/sandbox` holds besides its own lock file: sandbox state folders.
pub(crate) fn sandbox_state_folders(p: &Project) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(p.path().join(".wharf/sandbox")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    names.sort();
    names
}

/// Mounts of this (the host's) mount namespace under `path`.
fn host_mounts_under(path: &std::path::Path) -> Vec<String> {
    let path = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&path))
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn kill_9_of_wharf_kills_every_process_of_the_job_and_the_next_run_reaps_its_folders() {
    let started = start_beside_quick("hang", &["sleep 31341 &", "sleep 31342"]);
    let (p, home, mut wharf) = (&started.project, &started.home, started.wharf);
    assert!(
        eventually(|| processes(&["sleep", "31342"]) == 1),
        "the job did not start"
    );
    wharf.kill().unwrap(); // SIGKILL: no cleanup code of wharf runs
    wharf.wait().unwrap();
    assert!(
        eventually(|| processes(&["sleep", "31341"]) + processes(&["sleep", "31342"]) == 0),
        "processes of the job outlived wharf"
    );
    let left = sandbox_state_folders(p);
    assert_eq!(left.len(), 1, "the killed wharf's state folder: {left:?}");
    let run = run_quick(p, home.path());
    run.assert_code(0)
        .assert_contains(&format!(
            "Removed {}",
            p.path().join(".wharf/sandbox").join(&left[0]).display()
        ))
        .assert_contains("left by a wharf that was killed");
    assert_eq!(sandbox_state_folders(p), Vec::<String>::new());
    assert_eq!(host_mounts_under(p.path()), Vec::<String>::new());
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn ctrl_c_of_wharf_mid_job_leaves_no_process_nor_folder() {
    let started = start_beside_quick("hang", &["sleep 31343"]);
    let (p, wharf) = (&started.project, started.wharf);
    assert!(
        (0..10).any(|_| eventually(|| processes(&["sleep", "31343"]) == 1)),
        "the job did not start"
    );
    let run = interrupt(wharf);
    run.assert_contains("Interrupted");
    assert_eq!(processes(&["sleep", "31343"]), 0, "{}", run.all());
    assert_eq!(
        sandbox_state_folders(p),
        Vec::<String>::new(),
        "{}",
        run.all()
    );
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn concurrent_runs_in_one_project_never_reap_each_other() {
    // `hold` writes to its upper folder, says it started, and waits for the test's go.
    let started = start_beside_quick(
        "hold",
        &[
            "echo mine > /tmp/mine",
            "touch started",
            "while [ ! -e go ]; do sleep 1; done",
            "cat /tmp/mine",
        ],
    );
    let (p, home, hold) = (&started.project, &started.home, started.wharf);
    let build = p.path().join(".wharf/builds/hold");
    // The image is pulled first: up to ten rounds of waiting.
    let started = (0..10).any(|_| eventually(|| build.join("started").exists()));
    assert!(started, "the holding job did not start");
    let held = sandbox_state_folders(p);
    assert_eq!(held.len(), 1, "{held:?}");
    let quick = run_quick(p, home.path());
    quick.assert_code(0).assert_contains("Job succeeded");
    assert!(!quick.all().contains("Removed"), "{}", quick.all());
    assert_eq!(
        sandbox_state_folders(p),
        held,
        "the second run touched the first's folder"
    );
    std::fs::write(build.join("go"), "").unwrap();
    let hold = Run::from(hold.wait_with_output().unwrap());
    hold.assert_code(0)
        .assert_contains("mine")
        .assert_contains("Job succeeded");
    assert_eq!(sandbox_state_folders(p), Vec::<String>::new());
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn a_non_root_image_user_gets_the_job_folders_and_its_results_are_collected() {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let image = image_with_builder_user(&reg);
    let p = Project::pipeline(&format!(
        "{}ghost:\n  image:\n    name: {image}\n    docker:\n      user: ghost\n  script: ['true']\n",
        builder_job(&image)
    ));
    let home = tempfile::tempdir().unwrap();
    let var = format!("DOCKER_AUTH_CONFIG={}", auth_json(&reg.host()));
    let run = run_without_docker(
        &p,
        home.path(),
        &["run", "--executor", "sandbox", "--variable", &var],
    );
    run.assert_code(1)
        .assert_contains("whoami=1001:1002")
        .assert_contains("has no user `ghost` in its /etc/passwd");
    let log = p.read(".wharf/logs/build.log");
    assert!(log.contains("Job succeeded"), "{log}");
    assert!(
        p.path().join(".wharf/artifacts/build").exists(),
        "the artifact of the non-root job was not collected"
    );
}

/// A system user with a subordinate id range (created once), for rootless runs that map more
/// than the user itself.
pub(crate) fn user_with_subordinate_ids() -> (u32, u32) {
    const NAME: &str = "wharf-e2e-sub";
    let ids = system_user(NAME, None);
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if !text.lines().any(|l| l.starts_with(&format!("{NAME}:"))) {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)
                .unwrap();
            std::io::Write::write_all(&mut f, format!("{NAME}:400000:65536\n").as_bytes()).unwrap();
        }
    }
    ids
}

#[test]
#[ignore = "needs root (to create a user with subordinate ids), uidmap and docker-registry: run by scripts/test-all.sh"]
fn rootless_with_subordinate_ids_an_image_user_runs_as_itself() {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let image = image_with_builder_user(&reg);
    let p = Project::pipeline(&builder_job(&image));
    let (uid, gid) = user_with_subordinate_ids();
    let home = tempfile::tempdir().unwrap();
    let var = format!("DOCKER_AUTH_CONFIG={}", auth_json(&reg.host()));
    let run = run_rootless(
        &p,
        home.path(),
        (uid, gid),
        &["run", "--executor", "sandbox", "--variable", &var],
    );
    run.assert_code(0).assert_contains("whoami=1001:1002");
    assert!(
        p.path().join(".wharf/artifacts/build").exists(),
        "{}",
        run.all()
    );
    // The job's files in its upper folder belong to subordinate ids wharf's user cannot remove
    // as itself; they go all the same.
    assert_eq!(
        sandbox_state_folders(&p),
        Vec::<String>::new(),
        "{}",
        run.all()
    );
    assert!(!run.all().contains("cannot remove"), "{}", run.all());
}

/// `wharf args` as the user `uid:gid` (made owner of the project and of `home`), with no Docker
/// daemon reachable and its image store in `home`.
pub(crate) fn run_rootless(
    p: &Project,
    home: &std::path::Path,
    (uid, gid): (u32, u32),
    args: &[&str],
) -> Run {
    Run::from(wharf_as(uid, gid, p, home).args(args).output().unwrap())
}

/// Ctrl-C for a running `wharf` (SIGINT), then its output once it has ended.
pub(crate) fn interrupt(wharf: std::process::Child) -> Run {
    let sent = std::process::Command::new("kill")
        .args(["-INT", &wharf.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    Run::from(wharf.wait_with_output().unwrap())
}
