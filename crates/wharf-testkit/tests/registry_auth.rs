//! End-to-end checks of the testkit against the real Debian `docker-registry`, skopeo and,
//! when it answers, the Docker daemon. Run with `cargo test -p wharf-testkit -- --include-ignored`.

use std::path::Path;
use std::process::{Command, Stdio};

use wharf_testkit::{OciLayout, Registry, build_busybox_image, http, inspect_raw, npm_stand_in};

const ALICE: (&str, &str) = ("alice", "wonder-land-42");

fn fixture(dir: &Path) -> OciLayout {
    build_busybox_image(dir, &[("/usr/local/bin/npm", npm_stand_in(), 0o755)])
        .expect("build fixture image")
}

fn manifest_get(
    registry: &Registry,
    repo: &str,
    tag: &str,
    bearer: Option<&str>,
) -> http::Response {
    let url = format!("{}/v2/{repo}/manifests/{tag}", registry.url());
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", "application/vnd.oci.image.manifest.v1+json")];
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    http::get(&url, &headers).expect("manifest GET")
}

#[test]
#[ignore = "needs docker-registry and skopeo: run by .ci/run"]
fn basic_registry_requires_credentials() {
    let registry = Registry::start_basic(&[ALICE]).expect("start basic registry");
    let v2 = http::get(&format!("{}/v2/", registry.url()), &[]).expect("GET /v2/");
    assert_eq!(v2.status, 401);
    assert!(
        v2.header("www-authenticate")
            .unwrap_or_default()
            .contains("basic-realm"),
        "{v2:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let image = fixture(dir.path());
    let reference = format!("{}/wharf/busybox:1", registry.host());

    let err = image
        .push(&reference, None)
        .expect_err("anonymous push must fail");
    assert!(!err.to_string().contains(ALICE.1));
    let err = image
        .push(&reference, Some((ALICE.0, "wrong")))
        .expect_err("bad password must fail");
    assert!(!err.to_string().contains("wrong"), "{err}");
    image
        .push(&reference, Some(ALICE))
        .expect("push with creds");

    assert!(
        inspect_raw(&reference, None).is_err(),
        "anonymous inspect must fail"
    );
    let raw = inspect_raw(&reference, Some(ALICE)).expect("inspect with creds");
    let digest = format!("sha256:{}", hex_sha256(raw.as_bytes()));
    assert_eq!(digest, image.manifest_digest);
}

#[test]
#[ignore = "needs docker-registry and skopeo: run by .ci/run"]
fn token_registry_push_and_pull() {
    let registry = Registry::start_token(&[ALICE]).expect("start token registry");
    let v2 = http::get(&format!("{}/v2/", registry.url()), &[]).expect("GET /v2/");
    assert_eq!(v2.status, 401);
    let challenge = v2
        .header("www-authenticate")
        .unwrap_or_default()
        .to_string();
    let realm = registry.token_url().expect("token url");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&realm) && challenge.contains("wharf-test-registry"),
        "{challenge}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let image = fixture(dir.path());
    let reference = format!("{}/team/app:2", registry.host());

    assert!(
        image.push(&reference, None).is_err(),
        "anonymous push must fail"
    );
    assert!(
        image.push(&reference, Some((ALICE.0, "nope"))).is_err(),
        "bad password must fail"
    );
    image
        .push(&reference, Some(ALICE))
        .expect("push through the token flow");

    assert!(
        inspect_raw(&reference, None).is_err(),
        "anonymous pull must be denied"
    );
    let raw = inspect_raw(&reference, Some(ALICE)).expect("pull manifest with creds");
    assert_eq!(
        format!("sha256:{}", hex_sha256(raw.as_bytes())),
        image.manifest_digest
    );

    let log = registry.token_requests();
    assert!(
        log.iter()
            .any(|l| l.user.as_deref() == Some("alice") && l.status == 200),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l.status == 401),
        "bad password answered 401: {log:?}"
    );
    assert!(
        !format!("{log:?}").contains(ALICE.1),
        "the log never holds passwords"
    );
}

#[test]
#[ignore = "needs docker-registry and skopeo: run by .ci/run"]
fn refresh_token_flow_and_issued_tokens() {
    let registry = Registry::start_token(&[ALICE]).expect("start token registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = fixture(dir.path());
    image
        .push(&format!("{}/team/app:3", registry.host()), Some(ALICE))
        .expect("push");
    let realm = registry.token_url().expect("token url");
    let service = "wharf-test-registry";
    let scope = "repository:team/app:pull";
    let basic = format!("Basic {}", b64(&format!("{}:{}", ALICE.0, ALICE.1)));

    // Anonymous: a token, but it grants nothing.
    let anon =
        http::get(&format!("{realm}?service={service}&scope={scope}"), &[]).expect("anon token");
    assert_eq!(anon.status, 200, "{}", anon.text());
    let anon_token = anon.json().expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(
        manifest_get(&registry, "team/app", "3", Some(&anon_token)).status,
        401
    );

    // Bad credentials: 401.
    let bad = format!("Basic {}", b64("alice:bad"));
    let denied = http::get(
        &format!("{realm}?service={service}"),
        &[("Authorization", &bad)],
    )
    .expect("bad creds");
    assert_eq!(denied.status, 401);

    // docker-login style GET with offline_token=true -> refresh token.
    let login = http::get(
        &format!("{realm}?service={service}&offline_token=true&client_id=docker&account=alice"),
        &[("Authorization", &basic)],
    )
    .expect("login");
    assert_eq!(login.status, 200, "{}", login.text());
    let body = login.json().expect("json");
    assert!(body["expires_in"].as_u64().expect("expires_in") >= 60);
    assert!(
        body["issued_at"]
            .as_str()
            .expect("issued_at")
            .ends_with('Z')
    );
    assert_eq!(body["token"], body["access_token"]);
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string();

    // OAuth2 refresh -> access token accepted by the registry.
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", service),
        ("client_id", "registry-client"),
        ("scope", scope),
    ];
    let refreshed = http::post_form(&realm, &[], &form).expect("refresh");
    assert_eq!(refreshed.status, 200, "{}", refreshed.text());
    let access = refreshed.json().expect("json")["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let m = manifest_get(&registry, "team/app", "3", Some(&access));
    assert_eq!(m.status, 200, "{}\n{}", m.text(), registry.stderr_tail());
    assert_eq!(
        m.header("docker-content-digest"),
        Some(image.manifest_digest.as_str())
    );

    // An unknown refresh token is refused.
    let forged = [
        ("grant_type", "refresh_token"),
        ("refresh_token", "forged"),
        ("service", service),
    ];
    assert_eq!(
        http::post_form(&realm, &[], &forged)
            .expect("forged")
            .status,
        401
    );

    // OAuth2 password grant with access_type=offline.
    let pw = [
        ("grant_type", "password"),
        ("username", ALICE.0),
        ("password", ALICE.1),
        ("access_type", "offline"),
        ("service", service),
        ("scope", scope),
    ];
    let granted = http::post_form(&realm, &[], &pw).expect("password grant");
    assert_eq!(granted.status, 200, "{}", granted.text());
    let body = granted.json().expect("json");
    assert!(body["refresh_token"].is_string());
    let t = body["access_token"].as_str().expect("access_token");
    assert_eq!(
        manifest_get(&registry, "team/app", "3", Some(t)).status,
        200
    );

    // issue_token output is a working bearer; a token for another repo is not.
    let issued = registry.issue_token("alice", scope).expect("issue_token");
    let m = manifest_get(&registry, "team/app", "3", Some(&issued));
    assert_eq!(m.status, 200, "{}", m.text());
    let other = registry
        .issue_token("alice", "repository:other:pull")
        .expect("issue_token");
    assert_eq!(
        manifest_get(&registry, "team/app", "3", Some(&other)).status,
        401
    );
    assert!(registry.issue_token("mallory", scope).is_err());

    let log = registry.token_requests();
    assert!(
        log.iter().any(|l| l.method == "POST"
            && l.grant_type.as_deref() == Some("refresh_token")
            && l.had_refresh_token
            && l.user.as_deref() == Some("alice")),
        "{log:?}"
    );
    assert!(!format!("{log:?}").contains(ALICE.1));
}

fn docker_answers() -> bool {
    Command::new("docker")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn docker(config: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new("docker")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn docker");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("docker output")
}

#[test]
#[ignore = "needs dockerd, docker-registry and skopeo: run by scripts/test-all.sh"]
fn docker_login_and_pull_through_token_registry() {
    // This tier runs only where scripts/test-all.sh started dockerd: a missing daemon is a
    // failure, not a skip.
    assert!(
        docker_answers(),
        "dockerd does not answer: run through scripts/test-all.sh"
    );
    let registry = Registry::start_token(&[ALICE]).expect("start token registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = fixture(&dir.path().join("layout"));
    let reference = format!("{}/wharf/docker-pull:1", registry.host());
    image.push(&reference, Some(ALICE)).expect("push");

    let config = dir.path().join("docker-config");
    std::fs::create_dir_all(&config).expect("config dir");
    let login = docker(
        &config,
        &["login", "-u", ALICE.0, "--password-stdin", &registry.host()],
        Some(ALICE.1),
    );
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let stored = std::fs::read_to_string(config.join("config.json")).expect("config.json");
    assert!(
        stored.contains("identitytoken"),
        "docker login keeps a refresh token: {stored}"
    );
    assert!(!stored.contains(ALICE.1));

    let pull = docker(&config, &["pull", &reference], None);
    let run = docker(
        &config,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &reference,
            "sh",
            "-c",
            "cd /tmp && npm install && cat node_modules/.install-count",
        ],
        None,
    );
    let rmi = docker(&config, &["rmi", "-f", &reference], None);
    assert!(
        pull.status.success(),
        "{}",
        String::from_utf8_lossy(&pull.stderr)
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("added 3 packages"));
    assert!(
        rmi.status.success(),
        "{}",
        String::from_utf8_lossy(&rmi.stderr)
    );

    let log = registry.token_requests();
    assert!(
        log.iter()
            .any(|l| l.method == "GET" && l.offline && l.status == 200),
        "docker login asks for an offline token: {log:?}"
    );
    assert!(
        log.iter().any(|l| l.method == "POST"
            && l.grant_type.as_deref() == Some("refresh_token")
            && l.status == 200),
        "the daemon pulls with the refresh token: {log:?}"
    );

    let logout = docker(&config, &["logout", &registry.host()], None);
    assert!(logout.status.success());
}

#[test]
#[ignore = "needs dockerd, docker-registry and skopeo: run by scripts/test-all.sh"]
fn load_into_docker_runs_the_npm_stand_in() {
    // This tier runs only where scripts/test-all.sh started dockerd: a missing daemon is a
    // failure, not a skip.
    assert!(
        docker_answers(),
        "dockerd does not answer: run through scripts/test-all.sh"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let image = fixture(dir.path());
    let tag = format!("wharf-testkit-load:{}", std::process::id());
    image.load_into_docker(&tag).expect("load into docker");
    let script = "cd /tmp && npm install && npm run build:prod && cat dist/index.html \
                  && npm run clean && test ! -e dist && ! npm run lint";
    let run = docker(
        &dir.path().join("cfg"),
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            "API_URL=http://api.test",
            &tag,
            "sh",
            "-c",
            script,
        ],
        None,
    );
    let rmi = docker(&dir.path().join("cfg"), &["rmi", "-f", &tag], None);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("<h1>built for prod</h1>") && stdout.contains("http://api.test"),
        "{stdout}"
    );
    assert!(rmi.status.success());
}

#[test]
#[ignore = "needs docker-registry and skopeo: run by .ci/run"]
fn open_registry_and_cleanup() {
    let registry = Registry::start_open().expect("start open registry");
    let dir = registry.dir().to_path_buf();
    assert_eq!(
        http::get(&format!("{}/v2/", registry.url()), &[])
            .expect("GET")
            .status,
        200
    );
    assert!(registry.token_url().is_none());
    assert!(registry.issue_token("alice", "repository:x:pull").is_err());
    let layout_dir = tempfile::tempdir().expect("tempdir");
    let image = fixture(layout_dir.path());
    let reference = format!("{}/open/app:1", registry.host());
    image
        .push(&reference, None)
        .expect("anonymous push to an open registry");
    assert!(inspect_raw(&reference, None).is_ok());
    let port = registry.port();
    drop(registry);
    assert!(!dir.exists(), "temp dir removed on drop");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "process killed on drop"
    );
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
