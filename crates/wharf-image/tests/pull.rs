//! Pulls from real registries on loopback (Debian's docker-registry, htpasswd and token auth),
//! with credentials from DOCKER_AUTH_CONFIG and from a docker config file; refusals explained as
//! the Docker executor explains them; pull policies; two processes pulling one image at once;
//! rm and prune.

mod common;

use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use common::{Layer, fingerprint, write_layout};
use wharf_image::{ImageError, PullEvent, PullOptions, PullPolicy, Store};
use wharf_oci::{CredentialSources, Secret};
use wharf_testkit::Registry;

const USER: &str = "puller";
const PASSWORD: &str = "s3cret-pa55";

fn corpus_layers() -> Vec<Vec<u8>> {
    vec![
        Layer::new()
            .dir("etc", 0o755)
            .file("etc/os-release", b"ID=wharf-test\n", 0o644)
            .dir("d", 0o755)
            .file("d/old", b"old", 0o644)
            .dir("h", 0o755)
            .file("h/orig", b"original", 0o640)
            .file("gone", b"gone", 0o644)
            .finish(),
        Layer::new()
            .whiteout("", "gone")
            .opaque("d")
            .file("d/new", b"new", 0o644)
            .hardlink("h/link", "h/orig")
            .finish(),
    ]
}

fn auth_config(registry: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    serde_json::json!({"auths": {registry: {"auth": auth}}}).to_string()
}

fn options(auth_config: Option<String>) -> PullOptions {
    PullOptions {
        sources: CredentialSources {
            runner_auth_config: auth_config.map(Secret),
            // An empty HOME: ambient logins of the machine never count.
            home_dir: Some(std::env::temp_dir().join("wharf-image-test-no-home")),
            ..CredentialSources::default()
        },
        ..PullOptions::default()
    }
}

/// Collects events.
#[derive(Default)]
struct Events(Mutex<Vec<PullEvent>>);

impl Events {
    fn push(&self, e: PullEvent) {
        self.0.lock().expect("lock").push(e);
    }
    fn take(&self) -> Vec<PullEvent> {
        std::mem::take(&mut *self.0.lock().expect("lock"))
    }
}

fn started_layers(events: &[PullEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, PullEvent::LayerStart { .. }))
        .count()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn push_corpus(
    registry: &Registry,
    name: &str,
    creds: Option<(&str, &str)>,
) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = write_layout(dir.path(), &corpus_layers());
    let reference = format!("{}/{name}", registry.host());
    layout.push(&reference, creds).expect("push");
    (dir, reference)
}

fn check_corpus_tree(store: &Store, record: &wharf_image::ImageRecord) {
    let out = tempfile::tempdir().expect("tempdir");
    let merged = out.path().join("rootfs");
    store.flatten(record, &merged).expect("flatten");
    let tree = fingerprint(&merged, &[]);
    let paths: Vec<&str> = tree.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        vec![
            "d",
            "d/new",
            "etc",
            "etc/os-release",
            "h",
            "h/link",
            "h/orig"
        ],
        "{tree:#?}"
    );
    assert_eq!(
        std::fs::read(merged.join("h/link")).expect("link"),
        b"original"
    );
}

#[test]
#[ignore = "needs docker-registry and skopeo: run by .ci/run"]
fn pulls_from_a_basic_auth_registry_with_docker_auth_config_and_policies() {
    let registry = Registry::start_basic(&[(USER, PASSWORD)]).expect("registry");
    let (_layout, reference) = push_corpus(&registry, "corpus/app:1", Some((USER, PASSWORD)));
    let home = tempfile::tempdir().expect("home");
    let store = Store::open(home.path()).expect("store");
    let opts = options(Some(auth_config(&registry.host(), USER, PASSWORD)));
    let events = Events::default();
    let on_event = |e: PullEvent| events.push(e);
    let rt = rt();

    let record = rt
        .block_on(wharf_image::pull(&store, &reference, &opts, &on_event))
        .expect("pull");
    let first = events.take();
    assert!(
        first.iter().any(
            |e| matches!(e, PullEvent::Credentials(s) if s.starts_with("$DOCKER_AUTH_CONFIG"))
        ),
        "{first:?}"
    );
    assert_eq!(started_layers(&first), 2);
    assert_eq!(record.layers.len(), 2);
    check_corpus_tree(&store, &record);
    let listed = store.images().expect("images");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].reference.ends_with("/corpus/app:1"));

    // `always` with everything present: the manifest only, no layer fetched.
    let again = rt
        .block_on(wharf_image::pull(&store, &reference, &opts, &on_event))
        .expect("re-pull");
    assert_eq!(again.manifest_digest, record.manifest_digest);
    assert_eq!(started_layers(&events.take()), 0);

    // `if-not-present`: no registry at all.
    let local_only = PullOptions {
        policies: vec![PullPolicy::IfNotPresent],
        ..options(None)
    };
    rt.block_on(wharf_image::pull(
        &store,
        &reference,
        &local_only,
        &on_event,
    ))
    .expect("if-not-present");
    assert!(
        events
            .take()
            .iter()
            .any(|e| matches!(e, PullEvent::Info(i) if i.contains("if-not-present")))
    );

    // `never` for an image not in the store.
    let never = PullOptions {
        policies: vec![PullPolicy::Never],
        ..options(None)
    };
    let err = rt
        .block_on(wharf_image::pull(
            &store,
            &format!("{}/corpus/other:1", registry.host()),
            &never,
            &on_event,
        ))
        .expect_err("never");
    assert!(matches!(err, ImageError::NotPresent { .. }), "{err}");
    assert!(err.to_string().contains("pull policy is \"never\""));

    // A fallback list: `never` fails, `if-not-present` pulls.
    let fallback = PullOptions {
        policies: vec![PullPolicy::Never, PullPolicy::IfNotPresent],
        ..opts.clone()
    };
    let other_home = tempfile::tempdir().expect("home");
    let other = Store::open(other_home.path()).expect("store");
    rt.block_on(wharf_image::pull(&other, &reference, &fallback, &on_event))
        .expect("fallback");
    let log = events.take();
    assert!(log.iter().any(|e| matches!(e, PullEvent::Warning(w) if w.contains("Failed to pull image with policy \"never\""))), "{log:?}");
    assert!(
        log.iter()
            .any(|e| matches!(e, PullEvent::Info(i) if i.contains("Attempt #2")))
    );
}

#[test]
#[ignore = "needs docker-registry and skopeo: run by .ci/run"]
fn credentials_from_a_docker_config_file_and_explained_refusals() {
    let registry = Registry::start_basic(&[(USER, PASSWORD)]).expect("registry");
    let (_layout, reference) = push_corpus(&registry, "corpus/cfg:1", Some((USER, PASSWORD)));
    let rt = rt();
    let nothing = |_e: PullEvent| {};

    // ~/.docker/config.json
    let user_home = tempfile::tempdir().expect("home");
    std::fs::create_dir(user_home.path().join(".docker")).expect("dir");
    std::fs::write(
        user_home.path().join(".docker/config.json"),
        auth_config(&registry.host(), USER, PASSWORD),
    )
    .expect("config");
    let from_file = PullOptions {
        sources: CredentialSources {
            home_dir: Some(user_home.path().to_path_buf()),
            ..CredentialSources::default()
        },
        ..PullOptions::default()
    };
    let home = tempfile::tempdir().expect("store");
    let store = Store::open(home.path()).expect("store");
    let events = Events::default();
    let on_event = |e: PullEvent| events.push(e);
    rt.block_on(wharf_image::pull(&store, &reference, &from_file, &on_event))
        .expect("pull with config.json");
    let config_path = user_home.path().join(".docker/config.json");
    assert!(
        events
            .take()
            .iter()
            .any(|e| matches!(e, PullEvent::Credentials(s) if Path::new(s) == config_path))
    );

    // No credentials: the refusal, then every source looked at and the fix.
    let fresh = tempfile::tempdir().expect("store");
    let fresh_store = Store::open(fresh.path()).expect("store");
    let err = rt
        .block_on(wharf_image::pull(
            &fresh_store,
            &reference,
            &options(None),
            &nothing,
        ))
        .expect_err("no credentials");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "Failed to pull image {reference}: registry {} requires credentials",
            registry.host()
        )),
        "{text}"
    );
    assert!(text.contains("DOCKER_AUTH_CONFIG"), "{text}");

    // Wrong password: which source and entry were rejected, never the password.
    let wrong = options(Some(auth_config(&registry.host(), USER, "wrong-password")));
    let err = rt
        .block_on(wharf_image::pull(
            &fresh_store,
            &reference,
            &wrong,
            &nothing,
        ))
        .expect_err("wrong password");
    let text = err.to_string();
    assert!(
        text.contains("rejected the credentials from $DOCKER_AUTH_CONFIG"),
        "{text}"
    );
    assert!(err.hint().is_some_and(|h| h.contains("wharf login")));
    assert!(!text.contains("wrong-password") && !format!("{err:?}").contains("wrong-password"));
    assert!(fresh_store.images().expect("images").is_empty());
}

#[test]
#[ignore = "needs docker-registry and skopeo: run by .ci/run"]
fn pulls_from_a_token_auth_registry() {
    let registry = Registry::start_token(&[(USER, PASSWORD)]).expect("registry");
    let (_layout, reference) = push_corpus(&registry, "team/tok:1", Some((USER, PASSWORD)));
    let home = tempfile::tempdir().expect("store");
    let store = Store::open(home.path()).expect("store");
    let rt = rt();
    let record = rt
        .block_on(wharf_image::pull(
            &store,
            &reference,
            &options(Some(auth_config(&registry.host(), USER, PASSWORD))),
            &|_e| {},
        ))
        .expect("pull");
    check_corpus_tree(&store, &record);
    let requests = registry.token_requests();
    assert!(
        requests.iter().any(|r| r.user.as_deref() == Some(USER)
            && r.scopes.iter().any(|s| s == "repository:team/tok:pull")),
        "{requests:?}"
    );
    // An identity token, as `docker login` / `wharf login` store for a token registry: used
    // with the OAuth2 refresh-token grant, never the password.
    let login = rt
        .block_on(wharf_oci::login(&wharf_oci::LoginRequest {
            registry: registry.host(),
            username: USER.into(),
            password: Secret(PASSWORD.into()),
            insecure: false,
        }))
        .expect("login");
    let identity = login.identity_token.expect("a refresh token").0;
    let by_identity = serde_json::json!({"auths": {registry.host(): {"identitytoken": identity}}});
    let before = registry.token_requests().len();
    let other_home = tempfile::tempdir().expect("store");
    rt.block_on(wharf_image::pull(
        &Store::open(other_home.path()).expect("store"),
        &reference,
        &options(Some(by_identity.to_string())),
        &|_e| {},
    ))
    .expect("pull with an identity token");
    let refreshed = &registry.token_requests()[before..];
    assert!(
        refreshed
            .iter()
            .any(|r| r.grant_type.as_deref() == Some("refresh_token") && r.had_refresh_token),
        "{refreshed:?}"
    );

    let err = rt
        .block_on(wharf_image::pull(
            &Store::open(home.path().join("other")).expect("store"),
            &reference,
            &options(Some(auth_config(&registry.host(), USER, "nope"))),
            &|_e| {},
        ))
        .expect_err("wrong password");
    assert!(matches!(err, ImageError::Credentials { .. }), "{err}");
}

/// The child side of the two-process test: pulls `WHARF_TEST_PULL_REF` into
/// `WHARF_TEST_PULL_HOME` when those are set; does nothing otherwise.
#[test]
#[ignore = "helper of two_processes_pull_one_image_at_once"]
fn child_pull() {
    let (Ok(reference), Ok(home)) = (
        std::env::var("WHARF_TEST_PULL_REF"),
        std::env::var("WHARF_TEST_PULL_HOME"),
    ) else {
        return;
    };
    let store = Store::open(&home).expect("store");
    rt().block_on(wharf_image::pull(
        &store,
        &reference,
        &options(None),
        &|_e| {},
    ))
    .expect("child pull");
}

#[test]
#[ignore = "needs docker-registry and skopeo: run by .ci/run"]
fn two_processes_pull_one_image_at_once_then_rm_and_prune() {
    let registry = Registry::start_open().expect("registry");
    let (_layout, reference) = push_corpus(&registry, "corpus/race:1", None);
    let home = tempfile::tempdir().expect("store");
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_pull", "--include-ignored", "--nocapture"])
                .env("WHARF_TEST_PULL_REF", &reference)
                .env("WHARF_TEST_PULL_HOME", home.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success());
    }
    let store = Store::open(home.path()).expect("store");
    let images = store.images().expect("images");
    assert_eq!(images.len(), 1);
    check_corpus_tree(&store, &images[0]);
    let leftovers: Vec<_> = std::fs::read_dir(home.path().join("tmp"))
        .expect("tmp")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A second image sharing the first layer: prune keeps what it still uses.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layers = corpus_layers();
    layers.truncate(1);
    let shared_ref = format!("{}/corpus/base:1", registry.host());
    write_layout(dir.path(), &layers)
        .push(&shared_ref, None)
        .expect("push");
    let base = rt()
        .block_on(wharf_image::pull(
            &store,
            &shared_ref,
            &options(None),
            &|_e| {},
        ))
        .expect("pull base");
    store.remove_image(&images[0].reference).expect("rm");
    assert!(matches!(
        store.remove_image(&images[0].reference),
        Err(ImageError::UnknownImage { .. })
    ));
    let report = store.prune().expect("prune");
    assert_eq!(report.layers, 1, "{report:?}");
    assert!(store.has_layer(&base.layers[0].chain_id));
    assert!(!store.has_layer(&images[0].layers[1].chain_id));
    assert!(store.has_blob(&base.layers[0].digest));
    assert!(!store.has_blob(&images[0].layers[1].digest));
    check_corpus_tree_base(&store, &base);
}

fn check_corpus_tree_base(store: &Store, record: &wharf_image::ImageRecord) {
    let out = tempfile::tempdir().expect("tempdir");
    let merged = out.path().join("rootfs");
    store.flatten(record, &merged).expect("flatten");
    assert!(merged.join("gone").is_file() && merged.join("d/old").is_file());
}
