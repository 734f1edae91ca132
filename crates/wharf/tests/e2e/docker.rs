//! Docker tier: the seed pipeline for real, through dockerd, against Debian's docker-registry with
//! htpasswd (Basic) and token auth, with credentials from every source wharf reads.
//! Run by `scripts/test-all.sh` (`cargo test -- --include-ignored`), which starts dockerd.

use crate::support::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use wharf_testkit::Registry;

const USER: &str = "ci-bot";
/// Its DOCKER_AUTH_CONFIG entry encodes to `+` and `/` in standard base64: the regression test
/// for dockerd silently dropping X-Registry-Auth that is not base64url.
const PASS: &str = "'I(Bx}yr}~Dk>?>?s3cr3t";
const REPO: &str = "node:10-alpine";

/// A registry holding the seed image (one of its own: see `unique_seed_layout`); removes the
/// image from dockerd when dropped.
struct Env {
    reg: Registry,
    image: String,
    _layout_dir: tempfile::TempDir,
}

impl Env {
    fn basic() -> Self {
        Self::with(Registry::start_basic(&[(USER, PASS)]).unwrap())
    }
    fn token() -> Self {
        Self::with(Registry::start_token(&[(USER, PASS)]).unwrap())
    }
    fn with(reg: Registry) -> Self {
        assert!(
            docker_answers(),
            "dockerd does not answer: run through scripts/test-all.sh"
        );
        let image = format!("{}/{REPO}", reg.host());
        let layout_dir = tempfile::tempdir().unwrap();
        unique_seed_layout(layout_dir.path())
            .push(&image, Some((USER, PASS)))
            .unwrap();
        Self {
            reg,
            image,
            _layout_dir: layout_dir,
        }
    }
    fn host(&self) -> String {
        self.reg.host()
    }
    fn auth_config(&self, user: &str, pass: &str) -> String {
        auth_json(&self.host(), user, pass)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

fn auth_json(host: &str, user: &str, pass: &str) -> String {
    serde_json::json!({"auths": {host: {"auth": b64(&format!("{user}:{pass}"))}}}).to_string()
}

/// Every secret of the test user, as it could leak.
fn secrets() -> Vec<String> {
    vec![PASS.to_string(), b64(&format!("{USER}:{PASS}"))]
}

/// The job ran, its artifact and cache were saved, the user's tree is untouched, no container is
/// left, and no secret leaked.
fn assert_seed_succeeded(
    p: &Project,
    run: &Run,
    before: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
    extra_secrets: &[&str],
) {
    run.assert_code(0)
        .assert_contains("<h1>built for staging</h1>")
        .assert_contains("Job succeeded");
    let tar = p
        .path()
        .join(".wharf/artifacts/build-staging/dist-staging.tar");
    assert!(tar_list(&tar).contains(&"dist/index.html".to_string()));
    assert!(
        p.path()
            .join(".wharf/cache/default/node_modules/.install-count")
            .exists()
    );
    let log = p.read(".wharf/logs/build-staging.log");
    assert!(log.contains("Job succeeded"));
    // Each line of output exactly once (an attach-based reader duplicated it under load).
    assert_eq!(log.matches("$ npm install").count(), 1, "{log}");
    assert_eq!(
        log.matches("<h1>built for staging</h1>").count(),
        1,
        "{log}"
    );
    assert_eq!(before, &p.user_tree(), "the user's files changed");
    assert_no_containers(p);
    let mut all: Vec<String> = secrets();
    all.extend(extra_secrets.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    p.assert_no_secrets(run, &refs);
}

pub(crate) fn write_config(dir: &Path, json: &serde_json::Value) {
    write(&dir.join("config.json"), &json.to_string());
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn without_credentials_the_job_fails_fast_and_explains_the_fix() {
    for env in [Env::basic(), Env::token()] {
        let p = Project::seed(Some(&env.image));
        let started = Instant::now();
        let run = p.run(&["run"]);
        let host = env.host();
        run.assert_code(1)
            .assert_contains(&format!("registry {host} requires credentials"))
            .assert_contains("$DOCKER_AUTH_CONFIG")
            .assert_contains(
                &p.home
                    .path()
                    .join(".docker/config.json")
                    .display()
                    .to_string(),
            )
            .assert_contains(&format!("\"{host}\""))
            .assert_contains(&format!("wharf login {host}"))
            .assert_contains("runner_configuration_error")
            .assert_lacks("Will be retried")
            .assert_lacks("system failure");
        // Not retried: one pull attempt only.
        assert_eq!(
            run.stdout.matches("Pulling docker image").count(),
            1,
            "{}",
            run.stdout
        );
        assert!(started.elapsed() < Duration::from_secs(60));
        assert_no_containers(&p);
    }
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn docker_auth_config_variable_works_with_basic_and_token_registries() {
    for env in [Env::basic(), Env::token()] {
        let p = Project::seed(Some(&env.image));
        let before = p.user_tree();
        let json = env.auth_config(USER, PASS);
        let run = p.run(&["run", "--variable", &format!("DOCKER_AUTH_CONFIG={json}")]);
        run.assert_contains("Authenticating with credentials from $DOCKER_AUTH_CONFIG")
            .assert_contains("Using docker image sha256:");
        assert_seed_succeeded(&p, &run, &before, &[&json]);
    }
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn variables_files_yaml_and_dotenv_carry_docker_auth_config() {
    let env = Env::basic();
    let json = env.auth_config(USER, PASS);
    for (name, text) in [
        ("vars.yml", format!("DOCKER_AUTH_CONFIG: '{json}'\n")),
        ("vars.env", format!("DOCKER_AUTH_CONFIG='{json}'\n")),
    ] {
        let p = Project::seed(Some(&env.image));
        let before = p.user_tree();
        let file = p.home.path().join(name);
        write(&file, &text);
        let run = p.run(&["run", "--variables-file", file.to_str().unwrap()]);
        run.assert_contains("Authenticating with credentials from $DOCKER_AUTH_CONFIG");
        assert_seed_succeeded(&p, &run, &before, &[&json]);
    }
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn runner_environment_value_is_used_and_replaced_whole_by_a_pipeline_value() {
    let env = Env::basic();
    let json = env.auth_config(USER, PASS);
    let p = Project::seed(Some(&env.image));
    let before = p.user_tree();
    let run = Run::from(
        p.wharf()
            .arg("run")
            .env("DOCKER_AUTH_CONFIG", &json)
            .output()
            .unwrap(),
    );
    run.assert_contains("Authenticating with credentials from $DOCKER_AUTH_CONFIG");
    assert_seed_succeeded(&p, &run, &before, &[&json]);

    // A pipeline value with an entry for another registry replaces the runner's whole: the two
    // documents are never merged, so this registry has no credentials.
    let other = auth_json("other.example.com", USER, PASS);
    let run = Run::from(
        p.wharf()
            .args(["run", "--variable", &format!("DOCKER_AUTH_CONFIG={other}")])
            .env("DOCKER_AUTH_CONFIG", &json)
            .output()
            .unwrap(),
    );
    run.assert_code(1)
        .assert_contains(&format!("registry {} requires credentials", env.host()));
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn docker_config_files_and_entry_fields() {
    let env = Env::token();
    let host = env.host();
    // $DOCKER_CONFIG/config.json, with username/password fields.
    let p = Project::seed(Some(&env.image));
    let before = p.user_tree();
    let cfg = p.home.path().join("docker-config");
    write_config(
        &cfg,
        &serde_json::json!({"auths": {host.clone(): {"username": USER, "password": PASS}}}),
    );
    let run = Run::from(
        p.wharf()
            .arg("run")
            .env("DOCKER_CONFIG", &cfg)
            .output()
            .unwrap(),
    );
    run.assert_contains(&format!(
        "Authenticating with credentials from {}",
        cfg.join("config.json").display()
    ));
    assert_seed_succeeded(&p, &run, &before, &[]);

    // ~/.docker/config.json with a registrytoken (a bearer token used as is).
    let p = Project::seed(Some(&env.image));
    let before = p.user_tree();
    let token = env.reg.issue_token(USER, "repository:node:pull").unwrap();
    write_config(
        &p.home.path().join(".docker"),
        &serde_json::json!({"auths": {host.clone(): {"registrytoken": token}}}),
    );
    let run = p.run(&["run"]);
    run.assert_contains(&format!(
        "Authenticating with credentials from {}",
        p.home.path().join(".docker/config.json").display()
    ));
    assert_seed_succeeded(&p, &run, &before, &[&token]);
}

/// A credential helper as docker-credential-<name>: `get` answers for `host`, `list` lists it.
pub(crate) fn install_helper(dir: &Path, name: &str, host: &str) {
    let script = format!(
        "#!/bin/sh\ncase \"$1\" in\n  get) read url; if [ \"$url\" = '{host}' ]; then printf '%s' '{{\"ServerURL\":\"{host}\",\"Username\":\"{USER}\",\"Secret\":\"{secret}\"}}'; else echo 'credentials not found in native keychain'; exit 1; fi ;;\n  list) printf '%s' '{{\"{host}\":\"{USER}\"}}' ;;\n  *) exit 1 ;;\nesac\n",
        secret = PASS.replace('\'', "'\\''"),
    );
    let path = dir.join(format!("docker-credential-{name}"));
    write(&path, &script);
    make_executable(&path);
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn credential_helpers_cred_helpers_and_creds_store() {
    let env = Env::basic();
    let host = env.host();
    for (label, config) in [
        (
            "credHelpers",
            serde_json::json!({"credHelpers": {host.clone(): "wharftest"}}),
        ),
        ("credsStore", serde_json::json!({"credsStore": "wharftest"})),
    ] {
        let p = Project::seed(Some(&env.image));
        let before = p.user_tree();
        let bin = p.home.path().join("bin");
        install_helper(&bin, "wharftest", &host);
        write_config(&p.home.path().join(".docker"), &config);
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let run = Run::from(p.wharf().arg("run").env("PATH", path).output().unwrap());
        run.assert_contains("Authenticating with credentials from docker-credential-wharftest");
        assert!(run.stdout.contains(label), "{label}: {}", run.stdout);
        assert_seed_succeeded(&p, &run, &before, &[]);
    }
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn rejected_credentials_name_the_source_and_are_not_retried() {
    let env = Env::token();
    let p = Project::seed(Some(&env.image));
    let bad = env.auth_config(USER, "wrong-password-123");
    let run = p.run(&["run", "--variable", &format!("DOCKER_AUTH_CONFIG={bad}")]);
    run.assert_code(1)
        .assert_contains(&format!(
            "registry {} rejected the credentials from $DOCKER_AUTH_CONFIG",
            env.host()
        ))
        .assert_contains("runner_configuration_error")
        .assert_lacks("Will be retried");
    p.assert_no_secrets(&run, &["wrong-password-123", &bad]);
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn unknown_image_is_a_configuration_error() {
    let env = Env::basic();
    let p = Project::seed(Some(&format!("{}/node:does-not-exist", env.host())));
    let run = p.run(&[
        "run",
        "--variable",
        &format!("DOCKER_AUTH_CONFIG={}", env.auth_config(USER, PASS)),
    ]);
    run.assert_code(1)
        .assert_contains("not found on registry")
        .assert_lacks("Will be retried");
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn network_errors_are_retried_then_reported_as_external_dependency() {
    let port = wharf_testkit::free_port().unwrap();
    let p = Project::seed(Some(&format!("127.0.0.1:{port}/{REPO}")));
    p.run(&["run"])
        .assert_code(1)
        .assert_contains("Will be retried in")
        .assert_contains("after 3 attempts")
        .assert_contains("runner_external_dependency_failure");
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn login_checks_and_stores_like_docker_login() {
    for env in [Env::basic(), Env::token()] {
        let host = env.host();
        let p = Project::seed(Some(&env.image));
        let cfg = p.home.path().join(".docker");
        write_config(
            &cfg,
            &serde_json::json!({"auths": {"keep.example.com": {"auth": b64("a:b")}}, "psFormat": "x"}),
        );
        let login = |pass: &str, extra: &[&str]| {
            let mut cmd = p.wharf();
            cmd.args(["login", &host, "-u", USER, "--password-stdin"])
                .args(extra)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{pass}\n").as_bytes())
                .unwrap();
            Run::from(child.wait_with_output().unwrap())
        };
        // Wrong password: refused, nothing stored.
        let run = login("not-the-password", &[]);
        run.assert_code(1).assert_contains(&host);
        p.assert_no_secrets(&run, &["not-the-password"]);
        assert!(
            !std::fs::read_to_string(cfg.join("config.json"))
                .unwrap()
                .contains(&host)
        );

        let run = login(PASS, &[]);
        run.assert_code(0).assert_contains("Login Succeeded");
        p.assert_no_secrets(&run, &[PASS]);
        let text = std::fs::read_to_string(cfg.join("config.json")).unwrap();
        let stored: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(stored["psFormat"], "x");
        assert!(stored["auths"]["keep.example.com"].is_object());
        assert_login_stored(&text, &host, env.reg.token_url().is_some(), USER, PASS);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(cfg.join("config.json"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );

        // And the stored entry makes the seed pipeline work.
        let before = p.user_tree();
        let run = p.run(&["run"]);
        assert_seed_succeeded(&p, &run, &before, &[]);
        if env.reg.token_url().is_some() {
            assert!(
                env.reg
                    .token_requests()
                    .iter()
                    .any(|r| r.grant_type.as_deref() == Some("refresh_token") && r.status == 200),
                "dockerd did not use the identity token"
            );
        }

        // --print-auth-config: checked, printed, not stored; the output works as the variable.
        let run = login(PASS, &["--print-auth-config"]);
        run.assert_code(0);
        let printed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(
            printed["auths"][host.as_str()]["auth"],
            b64(&format!("{USER}:{PASS}"))
        );
        let p2 = Project::seed(Some(&env.image));
        let before = p2.user_tree();
        let run = p2.run(&[
            "run",
            "--variable",
            &format!("DOCKER_AUTH_CONFIG={}", run.stdout.trim()),
        ]);
        assert_seed_succeeded(&p2, &run, &before, &[]);
    }
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn ctrl_c_removes_the_job_container_and_exits_130() {
    let env = Env::basic();
    let p = Project::pipeline(&format!(
        "job:\n  image: {}\n  script:\n    - echo started\n    - sleep 60\n",
        env.image
    ));
    let child = p
        .wharf()
        .args([
            "run",
            "--variable",
            &format!("DOCKER_AUTH_CONFIG={}", env.auth_config(USER, PASS)),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while containers_of(&p).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the job container never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let run = Run::from(out);
    run.assert_code(130).assert_contains("canceled");
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn entrypoint_is_respected_and_can_be_cleared() {
    // An image whose ENTRYPOINT prints a marker before running the command it is given.
    let tag = format!("wharf-e2e-entrypoint:{}", std::process::id());
    let layout_dir = tempfile::tempdir().unwrap();
    unique_seed_layout(layout_dir.path())
        .load_into_docker(&format!("{tag}-base"))
        .unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cid=$(docker create {tag}-base) && docker export $cid | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'ENTRYPOINT [\"/bin/sh\", \"-c\", \"echo from-entrypoint; exec \\\"$@\\\"\", \"ep\"]' - {tag} >/dev/null && docker rm $cid >/dev/null"
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let p = Project::pipeline(&format!(
        "kept:\n  image: {tag}\n  script: [echo job-ran]\ncleared:\n  image:\n    name: {tag}\n    entrypoint: [\"\"]\n  script: [echo job-ran]\n"
    ));
    let run = p.run(&["run", "--pull-policy", "never"]);
    run.assert_code(0);
    let kept = p.read(".wharf/logs/kept.log");
    let cleared = p.read(".wharf/logs/cleared.log");
    assert!(
        kept.contains("from-entrypoint") && kept.contains("job-ran"),
        "{kept}"
    );
    assert!(
        !cleared.contains("from-entrypoint") && cleared.contains("job-ran"),
        "{cleared}"
    );
    let _ = Command::new("docker")
        .args(["rmi", "-f", &tag, &format!("{tag}-base")])
        .output();
}

/// A user that may talk to dockerd but is not root (created once; the docker tier runs as root).
fn docker_user() -> (u32, u32) {
    system_user("wharf-e2e", Some("docker"))
}

/// Give the project and its HOME to the user of [`docker_user`]; its uid and gid.
pub(crate) fn give_to_docker_user(p: &Project) -> (u32, u32) {
    let (uid, gid) = docker_user();
    for dir in [p.path(), p.home.path()] {
        let ok = Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    (uid, gid)
}

/// `wharf <args>` in the project, run as the user of [`docker_user`] with the project's HOME.
pub(crate) fn wharf_as_docker_user(p: &Project, args: &[&str]) -> Run {
    let (uid, gid) = docker_user();
    Run::from(
        Command::new("setpriv")
            .args([
                "--reuid",
                &uid.to_string(),
                "--regid",
                &gid.to_string(),
                "--init-groups",
                "--",
            ])
            .arg(env!("CARGO_BIN_EXE_wharf"))
            .args(args)
            .current_dir(p.path())
            .env("HOME", p.home.path())
            .env_remove("DOCKER_CONFIG")
            .output()
            .unwrap(),
    )
}

#[test]
#[ignore = "needs dockerd, docker-registry and root: run by scripts/test-all.sh"]
fn a_non_root_user_gets_back_every_file_the_container_created() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::basic();
    let p = Project::seed(Some(&env.image));
    let (uid, _) = give_to_docker_user(&p);
    let before = p.user_tree();
    let json = env.auth_config(USER, PASS);
    let run = wharf_as_docker_user(
        &p,
        &["run", "--variable", &format!("DOCKER_AUTH_CONFIG={json}")],
    );
    assert_seed_succeeded(&p, &run, &before, &[&json]);
    // node_modules/, dist/ and the tar were made by root inside the container.
    let root_owned: Vec<String> = walkdir::WalkDir::new(p.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.metadata().is_ok_and(|m| m.uid() != uid))
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(
        root_owned.is_empty(),
        "files not owned by the user: {root_owned:?}"
    );
    assert!(
        p.path()
            .join(".wharf/builds/build-staging/node_modules/.install-count")
            .exists()
    );
}
