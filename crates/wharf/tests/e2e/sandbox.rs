//! Sandbox tier: the seed pipeline in its image with no Docker daemon (DOCKER_HOST points
//! nowhere), the image pulled by wharf itself from Debian's docker-registry with htpasswd and
//! with token auth, credentials from DOCKER_AUTH_CONFIG.

use crate::support::*;
use wharf_testkit::Registry;

const USER: &str = "ci-bot";
const PASS: &str = "'I(Bx}yr}~Dk>?>?s3cr3t";

fn seed_in_registry(reg: &Registry) -> (String, tempfile::TempDir) {
    let image = format!("{}/node:10-alpine", reg.host());
    let layout = tempfile::tempdir().unwrap();
    unique_seed_layout(layout.path())
        .push(&image, Some((USER, PASS)))
        .unwrap();
    (image, layout)
}

fn auth_json(host: &str) -> String {
    serde_json::json!({"auths": {host: {"auth": b64(&format!("{USER}:{PASS}"))}}}).to_string()
}

/// `wharf run` with no Docker daemon reachable and its own image store.
fn run_without_docker(p: &Project, home: &std::path::Path, args: &[&str]) -> Run {
    Run::from(
        p.wharf()
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .env("WHARF_HOME", home)
            .args(args)
            .output()
            .unwrap(),
    )
}

/// A job in `image` as its `builder` user that says who it runs as and keeps `out/` as artifact.
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
        assert!(!p.path().join(".wharf/sandbox/build-staging").exists());
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
fn processes(words: &[&str]) -> usize {
    let wanted = words.join("\0") + "\0";
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == wanted.as_bytes()))
        .count()
}

fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn kill_9_of_wharf_kills_every_process_of_the_job() {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let (image, _layout) = seed_in_registry(&reg);
    let p = Project::pipeline(&format!(
        "hang:\n  image: {image}\n  script:\n    - sleep 31341 &\n    - sleep 31342\n"
    ));
    let home = tempfile::tempdir().unwrap();
    let var = format!("DOCKER_AUTH_CONFIG={}", auth_json(&reg.host()));
    let mut wharf = p
        .wharf()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("WHARF_HOME", home.path())
        .args(["run", "--executor", "sandbox", "--variable", &var])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
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
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn a_non_root_image_user_gets_the_job_folders_and_its_results_are_collected() {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let image = image_with_builder_user(&reg);
    let p = Project::pipeline(&format!(
        "{}ghost:\n  image:\n    name: {image}\n    docker:\n      user: ghost\n  script: [true]\n",
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
fn user_with_subordinate_ids() -> (u32, u32) {
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
    let run = Run::from(
        wharf_as(uid, gid, &p, home.path())
            .args(["run", "--executor", "sandbox", "--variable", &var])
            .output()
            .unwrap(),
    );
    run.assert_code(0).assert_contains("whoami=1001:1002");
    assert!(
        p.path().join(".wharf/artifacts/build").exists(),
        "{}",
        run.all()
    );
}
