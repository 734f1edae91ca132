//! Docker tier: `services:` in one shared network namespace (no Docker networks), reached from the
//! job by alias and on 127.0.0.1, readiness waits, variable isolation, cleanup, and service images
//! from a password-protected registry. Run by `scripts/test-all.sh` (`--include-ignored`).

use crate::support::*;
use base64::Engine as _;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wharf_testkit::{OciLayout, Registry, build_busybox_image};

/// Local images for one test: `base` (the busybox fixture) and `web` (the same with
/// `EXPOSE 8080`, so wharf waits for that port). Removed from dockerd when dropped.
struct Images {
    base: String,
    web: String,
}

/// The busybox fixture without npm: an image of its own, so loading and removing it never races
/// with the other Docker tests' tags of the seed image.
fn services_layout() -> &'static OciLayout {
    static LAYOUT: OnceLock<OciLayout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let dir = wharf_testkit::process_tempdir("wharf-svc-fixture-").unwrap();
        build_busybox_image(&dir, &[]).unwrap()
    })
}

impl Images {
    fn new(name: &str) -> Self {
        assert!(
            Command::new("docker")
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "dockerd does not answer: run through scripts/test-all.sh"
        );
        let id = std::process::id();
        let base = format!("wharf-e2e-{name}-base:{id}");
        let web = format!("wharf-e2e-{name}-web:{id}");
        services_layout().load_into_docker(&base).unwrap();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cid=$(docker create --pull never {base}) && docker export $cid | docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' -c 'EXPOSE 8080' -c 'CMD [\"sh\"]' - {web} >/dev/null && docker rm $cid >/dev/null"
            ))
            .status()
            .unwrap();
        assert!(status.success());
        Self { base, web }
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.base, &self.web])
            .output();
    }
}

/// A service command serving `text` (a shell expression) over HTTP on `port`.
fn serve(port: u16, text: &str) -> String {
    format!(
        "[\"sh\", \"-c\", \"mkdir -p /www && {text} > /www/index.html && exec httpd -f -p {port} -h /www\"]"
    )
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn service_is_reached_by_alias_default_alias_and_loopback_then_removed() {
    let img = Images::new("alias");
    // The default aliases of `wharf-e2e-alias-web:<pid>`: the name without the tag.
    let default_alias = img.web.split(':').next().unwrap().to_string();
    let p = Project::pipeline(&format!(
        r#"job:
  image: {base}
  services:
    - name: {web}
      alias: web, www2
      command: {cmd}
  script:
    - wget -q -O- http://web:8080/
    - wget -q -O- http://www2:8080/
    - wget -q -O- http://{default_alias}:8080/
    - wget -q -O- http://127.0.0.1:8080/
"#,
        base = img.base,
        web = img.web,
        cmd = serve(8080, "echo hello-from-service"),
    ));
    let run = p.run(&["run", "--pull-policy", "never"]);
    run.assert_code(0)
        .assert_contains(&format!("Starting service {} ...", img.web))
        .assert_contains("Waiting for services to be up and running (timeout 30 seconds)...")
        .assert_lacks("probably didn't start properly")
        .assert_contains("Job succeeded");
    assert_eq!(
        run.stdout.matches("hello-from-service").count(),
        4,
        "{}",
        run.stdout
    );
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn services_see_the_jobs_build_folder_at_the_same_path() {
    // GitLab mounts the builds volume into services: a service serving /builds over HTTP sees
    // the project's files and what the script writes, at $CI_PROJECT_DIR.
    let img = Images::new("buildsvol");
    let p = Project::new(&[
        ("hello.txt", "from-the-project\n"),
        (
            ".gitlab-ci.yml",
            &format!(
                r#"job:
  image: {base}
  services:
    - name: {web}
      alias: web
      command: ["sh", "-c", "exec httpd -f -p 8080 -h /builds"]
  script:
    - echo "made-by-$CI_JOB_NAME" > made.txt
    - wget -q -O- "http://web:8080/${{CI_PROJECT_DIR#/builds/}}/hello.txt"
    - wget -q -O- "http://web:8080/${{CI_PROJECT_DIR#/builds/}}/made.txt"
"#,
                base = img.base,
                web = img.web,
            ),
        ),
    ]);
    let run = p.run(&["run", "--pull-policy", "never"]);
    run.assert_code(0)
        .assert_contains("from-the-project")
        .assert_contains("made-by-job")
        .assert_contains("Job succeeded");
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn two_services_share_the_namespace_and_healthcheck_port_is_waited_for() {
    let img = Images::new("two");
    let p = Project::pipeline(&format!(
        r#"job:
  image: {base}
  services:
    - name: {web}
      alias: web
      command: {cmd}
    # No EXPOSE in this image: HEALTHCHECK_TCP_PORT says which port to wait for.
    - name: {base}
      alias: db
      variables:
        HEALTHCHECK_TCP_PORT: "5432"
      command: ["sh", "-c", "sleep 1; mkdir -p /db && echo pong-from-db > /db/index.html && exec httpd -f -p 5432 -h /db"]
  script:
    - wget -q -O- http://web:8080/
    # HTTP rather than `echo | nc`: busybox nc may close on stdin's EOF before the reply.
    - wget -q -O- http://db:5432/
    - wget -q -O- http://127.0.0.1:5432/
"#,
        base = img.base,
        web = img.web,
        cmd = serve(8080, "echo hello-from-web"),
    ));
    let run = p.run(&["run", "--pull-policy", "never"]);
    run.assert_code(0)
        .assert_contains("hello-from-web")
        .assert_lacks("probably didn't start properly");
    assert_eq!(
        run.stdout.matches("pong-from-db").count(),
        2,
        "{}",
        run.stdout
    );
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn service_variables_stay_with_the_service_and_secrets_never_reach_it() {
    let img = Images::new("vars");
    let secret = "svc-s3cret-value-42";
    let p = Project::pipeline(&format!(
        r#"variables:
  PUBLIC_NAME: visible
job:
  image: {base}
  services:
    - name: {web}
      alias: web
      variables:
        GREETING: hi-$PUBLIC_NAME
      command: {cmd}
  script:
    - wget -q -O /tmp/env http://web:8080/
    - grep -q '^GREETING=hi-visible$' /tmp/env && echo service-has-its-variable
    - grep -q '^PUBLIC_NAME=visible$' /tmp/env && echo service-has-public-variable
    - grep -q TOKEN /tmp/env || echo service-lacks-masked
    - grep -q DOCKER_AUTH_CONFIG /tmp/env || echo service-lacks-auth
    - test -z "$GREETING" && echo job-lacks-service-variable
"#,
        base = img.base,
        web = img.web,
        cmd = serve(8080, "env"),
    ));
    let vars = p.home.path().join("vars.yml");
    write(
        &vars,
        &format!("TOKEN: {{value: {secret}, masked: true}}\n"),
    );
    let auth = serde_json::json!({"auths": {"example.invalid": {"auth": base64::engine::general_purpose::STANDARD.encode("u:p")}}}).to_string();
    let run = p.run(&[
        "run",
        "--pull-policy",
        "never",
        "--variables-file",
        vars.to_str().unwrap(),
        "--variable",
        &format!("DOCKER_AUTH_CONFIG={auth}"),
    ]);
    run.assert_code(0)
        .assert_contains("service-has-its-variable")
        .assert_contains("service-has-public-variable")
        .assert_contains("service-lacks-masked")
        .assert_contains("service-lacks-auth")
        .assert_contains("job-lacks-service-variable");
    p.assert_no_secrets(&run, &[secret]);
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn services_are_removed_after_a_failed_job_and_an_early_exit_is_a_warning() {
    let img = Images::new("fail");
    let p = Project::pipeline(&format!(
        r#"crashing-service:
  image: {base}
  services:
    - name: {web}
      alias: web
      command: ["sh", "-c", "echo boom-from-service; exit 7"]
  script:
    - echo job-still-runs
failing-job:
  image: {base}
  services:
    - name: {web}
      alias: web
      command: {cmd}
  script:
    - wget -q -O- http://web:8080/
    - exit 3
"#,
        base = img.base,
        web = img.web,
        cmd = serve(8080, "echo up"),
    ));
    let run = p.run(&["run", "--pull-policy", "never"]);
    run.assert_code(1).assert_contains("exit code 3");
    let crashing = p.read(".wharf/logs/crashing-service.log");
    assert!(
        crashing.contains("probably didn't start properly")
            && crashing.contains("exit code 7")
            && crashing.contains("boom-from-service")
            && crashing.contains("job-still-runs")
            && crashing.contains("Job succeeded"),
        "{crashing}"
    );
    // The service's own output stays out of a healthy job's log.
    let failing = p.read(".wharf/logs/failing-job.log");
    assert!(!failing.contains("probably didn't start"), "{failing}");
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn ctrl_c_removes_the_service_containers() {
    let img = Images::new("cancel");
    let p = Project::pipeline(&format!(
        "job:\n  image: {base}\n  services:\n    - name: {web}\n      alias: web\n      command: {cmd}\n  script:\n    - echo started\n    - sleep 60\n",
        base = img.base,
        web = img.web,
        cmd = serve(8080, "echo up"),
    ));
    let child = p
        .wharf()
        .args(["run", "--pull-policy", "never"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the job container runs next to the service.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !containers_of(&p).contains("step_script") {
        assert!(
            Instant::now() < deadline,
            "the job container never appeared"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        containers_of(&p).contains("-service-0-web"),
        "{}",
        containers_of(&p)
    );
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let run = Run::from(child.wait_with_output().unwrap());
    run.assert_code(130).assert_contains("canceled");
    assert_no_containers(&p);
}

#[test]
#[ignore = "needs dockerd and docker-registry: run by scripts/test-all.sh"]
fn service_image_from_a_protected_registry_uses_the_jobs_docker_auth_config() {
    const USER: &str = "svc-bot";
    const PASS: &str = "sv+c/p4ss'word";
    let reg = Registry::start_basic(&[(USER, PASS)]).unwrap();
    let host = reg.host();
    let job_image = format!("{host}/job:1");
    let svc_image = format!("{host}/team/svc:1");
    services_layout()
        .push(&job_image, Some((USER, PASS)))
        .unwrap();
    services_layout()
        .push(&svc_image, Some((USER, PASS)))
        .unwrap();
    // host is 127.0.0.1:<port>: the default aliases drop the port.
    let alias = "127.0.0.1-team-svc";
    let p = Project::pipeline(&format!(
        r#"job:
  image: {job_image}
  services:
    - name: {svc_image}
      variables:
        HEALTHCHECK_TCP_PORT: "8080"
      command: {cmd}
  script:
    - wget -q -O- http://{alias}:8080/
    - wget -q -O- http://127.0.0.1__team__svc:8080/
"#,
        cmd = serve(8080, "echo served-from-private-image"),
    ));
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
    let auth = serde_json::json!({"auths": {host.clone(): {"auth": b64}}}).to_string();
    let run = p.run(&["run", "--variable", &format!("DOCKER_AUTH_CONFIG={auth}")]);
    run.assert_code(0)
        .assert_contains(&format!("Starting service {svc_image} ..."))
        .assert_contains(&format!("Pulling docker image {svc_image} ..."));
    assert_eq!(
        run.stdout
            .matches("Authenticating with credentials from $DOCKER_AUTH_CONFIG")
            .count(),
        2,
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.matches("served-from-private-image").count(),
        2,
        "{}",
        run.stdout
    );
    p.assert_no_secrets(&run, &[PASS, &b64, &auth]);
    assert_no_containers(&p);

    // Without credentials the service image is refused like a job image: a configuration error.
    let p2 = Project::pipeline(&format!(
        "job:\n  image: {job_image}\n  services: [{svc_image}]\n  script: [echo never]\n"
    ));
    let only_job = serde_json::json!({"auths": {format!("{host}/job"): {"auth": base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"))}}}).to_string();
    let run = p2.run(&[
        "run",
        "--variable",
        &format!("DOCKER_AUTH_CONFIG={only_job}"),
    ]);
    run.assert_code(1)
        .assert_contains(&format!("Failed to pull image {svc_image}"))
        .assert_contains("runner_configuration_error")
        .assert_lacks("echo never");
    assert_no_containers(&p2);
    for image in [&job_image, &svc_image] {
        let _ = Command::new("docker").args(["rmi", "-f", image]).output();
    }
}
