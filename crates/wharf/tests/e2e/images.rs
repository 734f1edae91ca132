//! `wharf pull` and `wharf images` against `wharf registry serve` (Basic and token auth): the
//! store, re-pulls, refusals explained as for the Docker executor, rm and prune. No daemon.

use crate::registry::{PASS, Served, USER, wharf};
use crate::support::*;
use std::path::Path;

fn auth_config(host: &str, user: &str, pass: &str) -> String {
    format!(
        r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
        b64(&format!("{user}:{pass}"))
    )
}

fn pull(home: &Path, image: &str, auth: Option<&str>) -> Run {
    let mut cmd = wharf();
    cmd.args(["pull", image, "--home"])
        .arg(home)
        .env("HOME", home.join("no-home"))
        .env_remove("DOCKER_CONFIG")
        .env_remove("WHARF_HOME");
    match auth {
        Some(a) => cmd.env("DOCKER_AUTH_CONFIG", a),
        None => cmd.env_remove("DOCKER_AUTH_CONFIG"),
    };
    Run::from(cmd.output().unwrap())
}

fn images(home: &Path, args: &[&str]) -> Run {
    let mut cmd = wharf();
    cmd.arg("images").args(args).env("WHARF_HOME", home);
    Run::from(cmd.output().unwrap())
}

fn pull_cycle(auth_mode: &str) {
    let served = Served::start(auth_mode);
    let host = served.host();
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = unique_seed_layout(layout_dir.path());
    let image = format!("{host}/team/seed:1");
    layout.push(&image, Some((USER, PASS))).unwrap();
    let home = tempfile::tempdir().unwrap();
    let auth = auth_config(&host, USER, PASS);

    let first = pull(home.path(), &image, Some(&auth));
    first
        .assert_code(0)
        .assert_contains("Authenticating with credentials from $DOCKER_AUTH_CONFIG")
        .assert_contains(&format!("Pulled {image}"))
        .assert_lacks(PASS);
    let layers = std::fs::read_dir(home.path().join("layers"))
        .unwrap()
        .count();
    assert!(layers >= 2, "a layer folder and its .json");
    let unpacked: Vec<_> = std::fs::read_dir(home.path().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert!(unpacked[0].join("bin/busybox").is_file());
    assert!(unpacked[0].join("usr/local/bin/npm").is_file());

    pull(home.path(), &image, Some(&auth))
        .assert_code(0)
        .assert_lacks("downloading");

    images(home.path(), &[])
        .assert_code(0)
        .assert_contains(&image)
        .assert_contains("MB");

    // Refusals: no credentials, then a wrong password; the password never shows.
    let fresh = tempfile::tempdir().unwrap();
    pull(fresh.path(), &image, None)
        .assert_code(2)
        .assert_contains(&format!("registry {host} requires credentials"))
        .assert_contains("DOCKER_AUTH_CONFIG");
    pull(
        fresh.path(),
        &image,
        Some(&auth_config(&host, USER, "not-the-password")),
    )
    .assert_code(2)
    .assert_contains("rejected the credentials from $DOCKER_AUTH_CONFIG")
    .assert_contains("wharf login")
    .assert_lacks("not-the-password");

    // `--home` before the subcommand (WHARF_HOME points elsewhere).
    let elsewhere = tempfile::tempdir().unwrap();
    let home_flag = home.path().to_str().unwrap();
    images(elsewhere.path(), &["--home", home_flag, "rm", &image]).assert_code(0);
    images(home.path(), &["rm", &image])
        .assert_code(2)
        .assert_contains("no image");
    images(home.path(), &["prune"])
        .assert_code(0)
        .assert_contains("1 unpacked layers");
    assert_eq!(
        std::fs::read_dir(home.path().join("layers"))
            .unwrap()
            .count(),
        0
    );
    served.assert_log_has_no_secrets();
}

#[test]
#[ignore = "needs skopeo and busybox-static: run by scripts/test-all.sh"]
fn pull_from_wharf_registry_with_basic_auth() {
    pull_cycle("basic");
}

#[test]
#[ignore = "needs skopeo and busybox-static: run by scripts/test-all.sh"]
fn pull_from_wharf_registry_with_token_auth() {
    pull_cycle("token");
}

/// `wharf registry import [EXTRA...] LAYOUT NAME` into the storage at `root`.
fn import_layout(root: &Path, extra: &[&str], layout: &Path, name: &str) -> Run {
    Run::from(
        wharf()
            .args(["registry", "import", "--root"])
            .arg(root)
            .args(extra)
            .arg(layout)
            .arg(name)
            .output()
            .unwrap(),
    )
}

/// `wharf pull` of `name` from `served`, with the test user's credentials, succeeds.
fn assert_pulls(served: &Served, name: &str) {
    let home = tempfile::tempdir().unwrap();
    let image = format!("{}/{name}", served.host());
    pull(
        home.path(),
        &image,
        Some(&auth_config(&served.host(), USER, PASS)),
    )
    .assert_code(0)
    .assert_contains(&format!("Pulled {image}"));
}

/// The file of `layout`'s (one, gzip) layer: its largest blob.
fn layer_of(layout: &wharf_testkit::OciLayout) -> std::path::PathBuf {
    std::fs::read_dir(layout.path.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

/// `wharf registry import` puts an OCI layout into a registry's storage (here while the server
/// runs, as an air-gapped seeding would before it starts): the image then pulls with
/// credentials; a layout whose blob does not match its digest is refused and imports nothing.
#[test]
fn an_imported_oci_layout_is_served_and_a_corrupt_one_is_refused() {
    let served = Served::start("basic");
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = unique_seed_layout(layout_dir.path());
    let import = |name: &str| import_layout(&served.root(), &[], &layout.path, name);
    import("team/imported:1")
        .assert_code(0)
        .assert_contains("imported")
        .assert_contains(&layout.manifest_digest);
    assert_pulls(&served, "team/imported:1");

    // Corrupt the (gzip) layer blob: its content no longer has the digest the manifest names.
    let biggest = layer_of(&layout);
    let mut bytes = std::fs::read(&biggest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&biggest, bytes).unwrap();
    import("team/corrupt:1")
        .assert_code(2)
        .assert_contains("has digest");
    let home = tempfile::tempdir().unwrap();
    let corrupt = format!("{}/team/corrupt:1", served.host());
    pull(
        home.path(),
        &corrupt,
        Some(&auth_config(&served.host(), USER, PASS)),
    )
    .assert_code(2)
    .assert_contains("not found");
}

/// `wharf registry import` of `layout` into the storage at `root` as `name`, stopped (and the
/// test failed) if it has not ended within 60 s: a layout that names a FIFO or a device must
/// not hang it.
fn import_within_a_minute(root: &Path, layout: &Path, name: &str) -> Run {
    let mut child = wharf()
        .args(["registry", "import", "--root"])
        .arg(root)
        .arg(layout)
        .arg(name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("`wharf registry import` of {} hangs", layout.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Run::from(child.wait_with_output().unwrap())
}

/// Regular files under `root` (none if it does not exist).
fn files_under(root: &Path) -> usize {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

/// A layout is input like a push: a blob that is a link to `/dev/zero` (it was read until the
/// memory ran out), a FIFO (it waited for a writer forever), a layer longer than its
/// descriptor says, a manifest that is not what `index.json` names, an image index over more
/// than 1,000 manifests and an `index.json` past its bound are each refused with the file and
/// the reason, and nothing is written. The same layout, restored, then imports.
#[test]
fn a_hostile_oci_layout_is_refused_without_hanging_and_imports_nothing() {
    let root_dir = tempfile::tempdir().unwrap();
    let root = root_dir.path().join("registry");
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = unique_seed_layout(layout_dir.path());
    let blobs = layout.path.join("blobs/sha256");
    let layer = layer_of(&layout);
    let layer_bytes = std::fs::read(&layer).unwrap();
    let manifest = blobs.join(layout.manifest_digest.trim_start_matches("sha256:"));
    let manifest_bytes = std::fs::read(&manifest).unwrap();
    let index = layout.path.join("index.json");
    let index_bytes = std::fs::read(&index).unwrap();

    let refused = |expected: &str| {
        import_within_a_minute(&root, &layout.path, "team/hostile:1")
            .assert_code(2)
            .assert_contains(expected);
        assert_eq!(files_under(&root), 0, "nothing is written");
    };

    std::fs::remove_file(&layer).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &layer).unwrap();
    refused("not a regular file (a character device): refused, nothing imported");

    std::fs::remove_file(&layer).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&layer)
            .status()
            .unwrap()
            .success()
    );
    refused("not a regular file (a FIFO (named pipe)): refused, nothing imported");

    std::fs::remove_file(&layer).unwrap();
    let mut longer = layer_bytes.clone();
    longer.push(0);
    std::fs::write(&layer, &longer).unwrap();
    refused(&format!(
        "is {} bytes, the manifest says {}: refused, nothing imported",
        longer.len(),
        layer_bytes.len()
    ));
    std::fs::write(&layer, &layer_bytes).unwrap();

    let mut other = manifest_bytes.clone();
    other.push(b'\n');
    std::fs::write(&manifest, &other).unwrap();
    refused(&format!(
        "manifest {} has digest sha256:",
        layout.manifest_digest
    ));
    std::fs::write(&manifest, &manifest_bytes).unwrap();

    // An image index over more manifests than any real image has.
    let base: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let children: Vec<serde_json::Value> = (0..1001)
        .map(|n| {
            let mut child = base.clone();
            child["annotations"] = serde_json::json!({ "n": n.to_string() });
            let bytes = serde_json::to_vec(&child).unwrap();
            let digest = wharf_registry::names::Digest::of(&bytes);
            std::fs::write(blobs.join(digest.hex()), &bytes).unwrap();
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest.to_string(),
                "size": bytes.len(),
            })
        })
        .collect();
    let wide = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children,
    }))
    .unwrap();
    let wide_digest = wharf_registry::names::Digest::of(&wide);
    std::fs::write(blobs.join(wide_digest.hex()), &wide).unwrap();
    std::fs::write(
        &index,
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": wide_digest.to_string(),
                "size": wide.len(),
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    refused("more than 1000 manifests: refused, nothing imported");

    let mut huge = vec![b' '; 5 << 20];
    huge.extend_from_slice(&index_bytes);
    let huge_len = huge.len();
    std::fs::write(&index, huge).unwrap();
    refused(&format!(
        "index of {huge_len} bytes, more than the 4194304 allowed"
    ));
    std::fs::write(&index, &index_bytes).unwrap();

    import_within_a_minute(&root, &layout.path, "team/hostile:1")
        .assert_code(0)
        .assert_contains(&layout.manifest_digest);
    assert!(files_under(&root) > 0);
}

/// A layout holding a multi-platform image (an image index over two images, as `skopeo copy
/// --all` writes one) beside a second entry in `index.json`: without `--ref` the import is
/// refused naming the refs; with it, each platform's manifest is stored before the index, the
/// tag pulls (wharf picks this machine's platform) and the other platform's manifest is there
/// by digest.
#[test]
fn an_image_index_layout_imports_with_its_platforms_and_ref_picks_the_entry() {
    use wharf_registry::names::Digest;
    let served = Served::start("basic");
    let dir = tempfile::tempdir().unwrap();
    let here = unique_seed_layout(&dir.path().join("here"));
    let other = unique_seed_layout(&dir.path().join("other"));
    let blobs = here.path.join("blobs/sha256");
    for entry in std::fs::read_dir(other.path.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), blobs.join(entry.file_name())).unwrap();
    }
    let host_arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let descriptor = |layout: &wharf_testkit::OciLayout, arch: &str| {
        let hex = layout.manifest_digest.trim_start_matches("sha256:");
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": layout.manifest_digest,
            "size": std::fs::metadata(blobs.join(hex)).unwrap().len(),
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [descriptor(&here, host_arch), descriptor(&other, "s390x")],
    }))
    .unwrap();
    let index_digest = Digest::of(&index);
    std::fs::write(blobs.join(index_digest.hex()), &index).unwrap();
    let mut single = descriptor(&here, host_arch);
    single["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "single"});
    std::fs::write(
        here.path.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": index_digest.to_string(),
                    "size": index.len(),
                    "annotations": {"org.opencontainers.image.ref.name": "multi"},
                },
                single,
            ],
        }))
        .unwrap(),
    )
    .unwrap();
    let import =
        |extra: &[&str], name: &str| import_layout(&served.root(), extra, &here.path, name);

    import(&[], "team/multi:1")
        .assert_code(2)
        .assert_contains("2 manifests (refs: multi, single): choose one with --ref");
    import(&["--ref", "nope"], "team/multi:1")
        .assert_code(2)
        .assert_contains("no manifest with ref nope (refs: multi, single)");
    import(&["--ref", "multi"], "team/multi:1")
        .assert_code(0)
        .assert_contains("(4 blobs, 2 child manifests, manifest ")
        .assert_contains(&index_digest.to_string());

    assert_pulls(&served, "team/multi:1");
    let other_manifest = wharf_testkit::http::get(
        &format!(
            "http://{}/v2/team/multi/manifests/{}",
            served.host(),
            other.manifest_digest
        ),
        &[
            (
                "Authorization",
                &format!("Basic {}", b64(&format!("{USER}:{PASS}"))),
            ),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ],
    )
    .unwrap();
    assert_eq!(other_manifest.status, 200, "{}", other_manifest.text());

    // The single image of the same layout, by its ref.
    import(&["--ref", "single"], "team/single:1")
        .assert_code(0)
        .assert_contains(&format!("(2 blobs, manifest {})", here.manifest_digest));
}
