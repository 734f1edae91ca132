//! Sandbox tier: `services:` with no Docker daemon. The service is a real server from Debian's
//! packages (`docker-registry`, with its own binary and libc in an image built here), reached by
//! alias and on 127.0.0.1 from the job, waited for through its image's `EXPOSE`; as root and
//! rootless with subordinate ids; early exits and cancel; nothing left afterwards.

use crate::sandbox::*;
use crate::support::*;
use serde_json::json;
use std::sync::OnceLock;
use wharf_testkit::Registry;

/// The service image's registry configuration: no auth, storage in the service's own overlay.
const REGISTRY_CONFIG: &str = "version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
";

/// busybox + Debian's `docker-registry` (a Go binary linked to libc only) with `EXPOSE 5000`,
/// as an OCI layout, built once.
fn registry_service_layout() -> &'static wharf_testkit::OciLayout {
    static LAYOUT: OnceLock<wharf_testkit::OciLayout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let read = |p: &str| {
            std::fs::read(p).unwrap_or_else(|e| {
                panic!("{p}: {e} (install docker-registry: scripts/test-all.sh does)")
            })
        };
        let binary = read("/usr/bin/docker-registry");
        let libc = read("/lib/x86_64-linux-gnu/libc.so.6");
        let loader = read("/lib64/ld-linux-x86-64.so.2");
        let files: [(&str, &[u8], u32); 4] = [
            ("/usr/bin/docker-registry", &binary, 0o755),
            ("/lib/x86_64-linux-gnu/libc.so.6", &libc, 0o755),
            ("/lib64/ld-linux-x86-64.so.2", &loader, 0o755),
            (
                "/etc/docker/registry/config.yml",
                REGISTRY_CONFIG.as_bytes(),
                0o644,
            ),
        ];
        let config = json!({
            "ExposedPorts": {"5000/tcp": {}},
            "Cmd": ["docker-registry", "serve", "/etc/docker/registry/config.yml"],
        });
        let dir = wharf_testkit::process_tempdir("wharf-registry-service-").unwrap();
        wharf_testkit::build_busybox_image_with_config(
            &dir,
            &files,
            config.as_object().unwrap().clone(),
        )
        .unwrap()
    })
}

/// The job image (the seed's busybox) and the registry service image, pushed to `reg`.
fn images(reg: &Registry) -> (String, String, tempfile::TempDir) {
    let (job_image, layout) = seed_in_registry(reg);
    let service = format!("{}/tools/registry:2", reg.host());
    registry_service_layout()
        .push(&service, Some((USER, PASS)))
        .unwrap();
    (job_image, service, layout)
}

/// A job whose service is the registry: reached by alias, by GitLab's default alias and on
/// loopback; it pushes nothing, it asks the registry's API. Its last line tries the image's own
/// registry, which listens on the host's loopback: `401` when the job shares the host's network,
/// refused when the network is the job's own.
fn pipeline(job_image: &str, service: &str) -> String {
    format!(
        r#"check:
  image: {job_image}
  services:
    - name: {service}
      alias: registry
  script:
    - wget -q -O- http://registry:5000/v2/ && echo " <- by alias"
    - wget -q -O- http://{default_alias}:5000/v2/ && echo " <- by default alias"
    - wget -q -O- http://127.0.0.1:5000/v2/ && echo " <- on loopback"
    - wget -q -O- http://registry:5000/v2/_catalog
    - wget -q -O- http://{host_registry}/v2/ 2>&1 | head -n 1 | sed 's/^/host-says /' || true
"#,
        default_alias = default_alias(service),
        host_registry = service.split('/').next().unwrap(),
    )
}

/// GitLab's first default alias: the name without registry port and tag, `/` as `__`.
fn default_alias(image: &str) -> String {
    let (host, path) = image.split_once('/').unwrap();
    let host = host.split(':').next().unwrap();
    let path = path.rsplit_once(':').map_or(path, |(p, _)| p);
    format!("{host}/{path}").replace('/', "__")
}

fn assert_served(run: &Run) {
    run.assert_code(0)
        .assert_contains("Starting service")
        .assert_contains("Waiting for services to be up and running (timeout 30 seconds)...")
        .assert_lacks("probably didn't start properly")
        .assert_contains("{} <- by alias")
        .assert_contains("{} <- by default alias")
        .assert_contains("{} <- on loopback")
        .assert_contains(r#"{"repositories":[]}"#)
        .assert_contains("Job succeeded");
}

/// Registry services of `p`'s jobs still running: told apart from other tests' by the job's
/// variables a service gets (`CI_PROJECT_DIR=/builds/<project folder name>`).
fn registry_services_of(p: &Project) -> usize {
    let name = p.path().file_name().unwrap().to_string_lossy().into_owned();
    let mark = format!("CI_PROJECT_DIR=/builds/{name}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.starts_with(b"docker-registry\0"))
                && std::fs::read(e.path().join("environ"))
                    .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&mark))
        })
        .count()
}

fn assert_nothing_left(p: &Project) {
    assert!(
        eventually(|| registry_services_of(p) == 0),
        "the service outlived its job"
    );
    let sandbox = p.path().join(".wharf/sandbox");
    let left = std::process::Command::new("find")
        .arg(&sandbox)
        .args(["-maxdepth", "4", "-printf", "%M %u %p\n"])
        .output()
        .unwrap();
    assert_eq!(
        sandbox_state_folders(p),
        Vec::<String>::new(),
        "left in {}:\n{}",
        sandbox.display(),
        String::from_utf8_lossy(&left.stdout)
    );
}

/// The registry-service pipeline run in the sandbox, as root or as `rootless` (a user with
/// subordinate ids), with `flags` added to `wharf run`: the run, after checking that it was
/// served and left nothing behind.
fn served_registry_service_job(rootless: Option<(u32, u32)>, flags: &[&str]) -> Run {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let (job_image, service, _layout) = images(&reg);
    let p = Project::pipeline(&pipeline(&job_image, &service));
    let home = tempfile::tempdir().unwrap();
    let var = format!("DOCKER_AUTH_CONFIG={}", auth_json(&reg.host()));
    let mut args = vec!["run", "--executor", "sandbox", "--variable", &var];
    args.extend_from_slice(flags);
    let run = match rootless {
        Some(ids) => run_rootless(&p, home.path(), ids, &args),
        None => run_without_docker(&p, home.path(), &args),
    };
    if std::env::var_os("SHOW").is_some() {
        eprintln!("{}", run.all());
    }
    assert_served(&run);
    assert_nothing_left(&p);
    run
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn a_real_server_as_a_service_is_reached_by_alias_and_on_loopback() {
    served_registry_service_job(None, &[])
        .assert_contains("share a network of their own with only loopback")
        .assert_contains(
            "host-says wget: can't connect to remote host (127.0.0.1): Connection refused",
        );
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn with_the_hosts_network_the_job_reaches_the_host_and_its_services() {
    served_registry_service_job(None, &["--sandbox-network", "host"])
        .assert_contains("share the host's network")
        .assert_contains("host-says wget: server returned error: HTTP/1.1 401 Unauthorized");
}

#[test]
#[ignore = "needs root (to create a user with subordinate ids), uidmap and docker-registry: run by scripts/test-all.sh"]
fn rootless_services_share_the_jobs_network() {
    served_registry_service_job(Some(user_with_subordinate_ids()), &[])
        .assert_contains("share a network of their own with only loopback");
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn a_service_that_exits_early_is_a_warning_with_its_output() {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let (job_image, layout) = seed_in_registry(&reg);
    let p = Project::pipeline(&format!(
        r#"check:
  image: {job_image}
  services:
    - name: {job_image}
      alias: quitter
      command: ["sh", "-c", "env | grep SERVICE_WORD; exit 3"]
      variables:
        SERVICE_WORD: goodbye
        HEALTHCHECK_TCP_PORT: "7"
  script:
    - echo job-ran
"#
    ));
    let home = tempfile::tempdir().unwrap();
    let var = format!("DOCKER_AUTH_CONFIG={}", auth_json(&reg.host()));
    let run = run_without_docker(
        &p,
        home.path(),
        &["run", "--executor", "sandbox", "--variable", &var],
    );
    drop(layout);
    run.assert_code(0)
        .assert_contains("probably didn't start properly")
        .assert_contains("the service exited early (exit code 3)")
        .assert_contains("SERVICE_WORD=goodbye")
        .assert_contains("job-ran")
        .assert_contains("Job succeeded");
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn a_timeout_ends_the_job_and_its_services() {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let (job_image, service, _layout) = images(&reg);
    let p = Project::pipeline(&format!(
        "check:\n  image: {job_image}\n  timeout: 3s\n  services: [{service}]\n  script:\n    - sleep 31351\n"
    ));
    let home = tempfile::tempdir().unwrap();
    let var = format!("DOCKER_AUTH_CONFIG={}", auth_json(&reg.host()));
    let run = run_without_docker(
        &p,
        home.path(),
        &["run", "--executor", "sandbox", "--variable", &var],
    );
    run.assert_code(1).assert_contains("timeout");
    assert_eq!(processes(&["sleep", "31351"]), 0);
    assert_nothing_left(&p);
}

/// A job sleeping `sleep 31352` next to the registry service, started by a `wharf run` whose
/// output is piped; returns once the job and its service run.
fn start_hanging_job(reg: &Registry, home: &std::path::Path) -> (Project, std::process::Child) {
    let (job_image, service, _layout) = images(reg);
    let p = Project::pipeline(&format!(
        "check:\n  image: {job_image}\n  services: [{service}]\n  script:\n    - sleep 31352\n"
    ));
    let var = format!("DOCKER_AUTH_CONFIG={}", auth_json(&reg.host()));
    let child = p
        .wharf()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("WHARF_HOME", home)
        .args(["run", "--executor", "sandbox", "--variable", &var])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(|| processes(&["sleep", "31352"]) == 1),
        "the job did not start"
    );
    assert_eq!(registry_services_of(&p), 1);
    (p, child)
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn kill_9_of_wharf_takes_the_services_down_too() {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let home = tempfile::tempdir().unwrap();
    let (p, mut wharf) = start_hanging_job(&reg, home.path());
    wharf.kill().unwrap(); // SIGKILL: no cleanup code of wharf runs
    wharf.wait().unwrap();
    assert!(
        eventually(|| processes(&["sleep", "31352"]) + registry_services_of(&p) == 0),
        "processes of the job or its service outlived wharf"
    );
}

#[test]
#[ignore = "needs root (namespaces, overlayfs) and docker-registry: run by scripts/test-all.sh"]
fn ctrl_c_cancels_the_job_and_ends_its_services() {
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let home = tempfile::tempdir().unwrap();
    let (p, child) = start_hanging_job(&reg, home.path());
    let run = interrupt(child);
    run.assert_code(130).assert_contains("canceled");
    assert_eq!(processes(&["sleep", "31352"]), 0);
    assert_nothing_left(&p);
}
