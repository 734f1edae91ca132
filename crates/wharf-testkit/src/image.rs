//! Fixture images: a busybox-static OCI image layout, pushed with skopeo.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::error::{IoContext as _, command_output};

/// The busybox binary copied into fixture images (Debian package busybox-static).
pub const BUSYBOX: &str = "/usr/bin/busybox";
/// The tag written into `index.json` (`org.opencontainers.image.ref.name`).
pub const LAYOUT_TAG: &str = "latest";
/// Modification time of every tar entry, for reproducible layers.
const MTIME: u64 = 0;

/// One stand-in for npm, shared with the seed example so both run the same script.
const NPM_STAND_IN: &str = include_str!("../../../examples/seed/bin/npm");

/// A POSIX sh script to install as `/usr/local/bin/npm` (mode 0755) in fixture images:
/// `npm install`, `npm run clean`, `npm run build:<env>`; anything else exits 1.
pub fn npm_stand_in() -> &'static [u8] {
    NPM_STAND_IN.as_bytes()
}

/// An OCI image layout on disk, tagged [`LAYOUT_TAG`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciLayout {
    /// The layout directory (holds `index.json`, `oci-layout`, `blobs/sha256/`).
    pub path: PathBuf,
    /// `sha256:...` of the image manifest (kept by pushes: the layer is already gzip).
    pub manifest_digest: String,
}

enum Entry {
    Dir(u32),
    File(Vec<u8>, u32),
    Symlink(String),
}

/// Build a single-layer busybox image layout in `dir` (created if missing):
/// `/bin/busybox` (0755) with a `/bin/<applet>` symlink for every applet of
/// `busybox --list` (so `/bin/sh`), `/tmp` (1777), `/etc/passwd` and `/etc/group` with root,
/// plus `extra_files` as `(absolute path in image, contents, mode)`; extra files replace
/// base entries of the same path and get their parent directories created (0755).
/// Config: `Env=[PATH=/usr/local/bin:/usr/bin:/bin:.]`, `Cmd=["sh"]`, linux/amd64.
///
/// Why `.` in PATH: the seed pipeline runs `source build-vars.sh`, which needs a shell that finds
/// sourced files in the current directory (bash does; busybox ash only when built with
/// ASH_BASH_SOURCE_CURDIR). Debian's busybox-static is built without it, and POSIX `.` searches
/// PATH only, so the fixture stands in for such a shell this way.
/// The layer is a gzip tar with fixed timestamps and owners, so output is reproducible.
pub fn build_busybox_image(
    dir: &Path,
    extra_files: &[(&str, &[u8], u32)],
) -> Result<OciLayout, Error> {
    build_busybox_image_with_config(dir, extra_files, serde_json::Map::new())
}

/// [`build_busybox_image`] with `config` merged over the image config's `config` object (e.g.
/// `ExposedPorts`, `Cmd`, `User`: what a service image declares).
pub fn build_busybox_image_with_config(
    dir: &Path,
    extra_files: &[(&str, &[u8], u32)],
    config: serde_json::Map<String, serde_json::Value>,
) -> Result<OciLayout, Error> {
    let mut runtime = serde_json::Map::new();
    runtime.insert("Env".into(), json!(["PATH=/usr/local/bin:/usr/bin:/bin:."]));
    runtime.insert("Cmd".into(), json!(["sh"]));
    runtime.extend(config);
    let busybox =
        fs::read(BUSYBOX).ctx(|| format!("reading {BUSYBOX} (Debian package busybox-static)"))?;
    let applets = busybox_applets()?;

    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for d in [
        "bin",
        "dev",
        "etc",
        "proc",
        "root",
        "sys",
        "usr",
        "usr/bin",
        "usr/local",
        "usr/local/bin",
        "var",
    ] {
        entries.insert(d.to_string(), Entry::Dir(0o755));
    }
    entries.insert("root".to_string(), Entry::Dir(0o700));
    entries.insert("tmp".to_string(), Entry::Dir(0o1777));
    entries.insert("var/tmp".to_string(), Entry::Dir(0o1777));
    entries.insert("bin/busybox".to_string(), Entry::File(busybox, 0o755));
    for applet in applets.iter().chain(std::iter::once(&"sh".to_string())) {
        if applet != "busybox" {
            entries.insert(
                format!("bin/{applet}"),
                Entry::Symlink("busybox".to_string()),
            );
        }
    }
    entries.insert(
        "etc/passwd".to_string(),
        Entry::File(
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                .to_vec(),
            0o644,
        ),
    );
    entries.insert(
        "etc/group".to_string(),
        Entry::File(b"root:x:0:\nnogroup:x:65534:\n".to_vec(), 0o644),
    );
    for (path, data, mode) in extra_files {
        let rel = path.trim_start_matches('/');
        if rel.is_empty()
            || rel
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(Error::Invalid(format!(
                "bad path for an image file: {path:?}"
            )));
        }
        let mut parent = Path::new(rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            entries
                .entry(p.to_string_lossy().into_owned())
                .or_insert(Entry::Dir(0o755));
            parent = p.parent();
        }
        entries.insert(rel.to_string(), Entry::File(data.to_vec(), *mode));
    }

    let tar = write_tar(&entries)?;
    let diff_id = sha256_digest(&tar);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar)
        .ctx(|| "compressing the layer".to_string())?;
    let layer = gz.finish().ctx(|| "compressing the layer".to_string())?;

    let config = json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": runtime,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "wharf-testkit build_busybox_image" }],
    });
    let config = to_json_bytes(&config)?;

    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;
    let layer_digest = write_blob(&blobs, &layer)?;
    let config_digest = write_blob(&blobs, &config)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    });
    let manifest = to_json_bytes(&manifest)?;
    let manifest_digest = write_blob(&blobs, &manifest)?;
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "org.opencontainers.image.ref.name": LAYOUT_TAG },
        }],
    });
    let write = |name: &str, data: &[u8]| {
        let p = dir.join(name);
        fs::write(&p, data).ctx(|| format!("writing {}", p.display()))
    };
    write("index.json", &to_json_bytes(&index)?)?;
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(OciLayout {
        path: dir.to_path_buf(),
        manifest_digest,
    })
}

fn busybox_applets() -> Result<Vec<String>, Error> {
    let out = command_output(
        Command::new(BUSYBOX).arg("--list").stdin(Stdio::null()),
        || format!("{BUSYBOX} --list"),
    )?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains('/'))
        .map(str::to_string)
        .collect())
}

fn write_tar(entries: &BTreeMap<String, Entry>) -> Result<Vec<u8>, Error> {
    let err = |e: std::io::Error| Error::Io {
        context: "writing the layer tar".to_string(),
        source: e,
    };
    let mut builder = tar::Builder::new(Vec::new());
    for (path, entry) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        match entry {
            Entry::Dir(mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{path}/"), std::io::empty())
                    .map_err(err)?;
            }
            Entry::File(data, mode) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(data.len() as u64);
                builder
                    .append_data(&mut header, path, data.as_slice())
                    .map_err(err)?;
            }
            Entry::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, path, target)
                    .map_err(err)?;
            }
        }
    }
    builder.into_inner().map_err(err)
}

fn to_json_bytes(v: &serde_json::Value) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::Invalid(format!("serializing JSON: {e}")))
}

fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn write_blob(blobs: &Path, data: &[u8]) -> Result<String, Error> {
    let digest = sha256_digest(data);
    let p = blobs.join(digest.trim_start_matches("sha256:"));
    fs::write(&p, data).ctx(|| format!("writing {}", p.display()))?;
    Ok(digest)
}

/// Registry part of a reference (`127.0.0.1:5000/app:1` -> `127.0.0.1:5000`).
fn registry_of(reference: &str) -> Result<&str, Error> {
    match reference.split_once('/') {
        Some((host, _)) if host.contains(['.', ':']) || host == "localhost" => Ok(host),
        _ => Err(Error::Invalid(format!(
            "reference {reference:?} must start with a registry host (127.0.0.1:PORT/...)"
        ))),
    }
}

/// A containers-auth.json holding `creds` for `registry` (or no credentials at all),
/// so that secrets never appear on a command line and ambient logins are not used.
fn authfile(registry: &str, creds: Option<(&str, &str)>) -> Result<tempfile::NamedTempFile, Error> {
    let auths = match creds {
        Some((user, password)) => {
            json!({ registry: { "auth": BASE64.encode(format!("{user}:{password}")) } })
        }
        None => json!({}),
    };
    let mut file = tempfile::Builder::new()
        .prefix("wharf-auth-")
        .suffix(".json")
        .tempfile()
        .ctx(|| "creating an auth file".to_string())?;
    file.write_all(&to_json_bytes(&json!({ "auths": auths }))?)
        .ctx(|| "writing an auth file".to_string())?;
    Ok(file)
}

/// Run skopeo; errors quote the arguments (which never hold secrets) and stderr.
fn skopeo(args: &[&str]) -> Result<String, Error> {
    command_output(
        Command::new("skopeo")
            .arg("--insecure-policy")
            .args(args)
            .stdin(Stdio::null()),
        || format!("skopeo --insecure-policy {}", args.join(" ")),
    )
}

impl OciLayout {
    fn source(&self) -> Result<String, Error> {
        let path = self.path.to_string_lossy();
        if path.contains(':') {
            return Err(Error::Invalid(format!(
                "OCI layout path must not contain ':': {path}"
            )));
        }
        Ok(format!("oci:{path}:{LAYOUT_TAG}"))
    }

    /// Push to `reference` (e.g. `127.0.0.1:5000/node:10-alpine`) over plain HTTP with
    /// `skopeo copy`, authenticating with `creds` through a temporary auth file.
    pub fn push(&self, reference: &str, creds: Option<(&str, &str)>) -> Result<(), Error> {
        let auth = authfile(registry_of(reference)?, creds)?;
        let auth_path = auth.path().to_string_lossy().into_owned();
        let src = self.source()?;
        let dest = format!("docker://{reference}");
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-authfile",
            &auth_path,
            &src,
            &dest,
        ])?;
        Ok(())
    }

    /// Load into the local Docker daemon as `tag` (`skopeo copy ... docker-daemon:<tag>`).
    pub fn load_into_docker(&self, tag: &str) -> Result<(), Error> {
        let src = self.source()?;
        let dest = format!("docker-daemon:{tag}");
        skopeo(&["copy", "--quiet", &src, &dest])?;
        Ok(())
    }
}

/// `skopeo inspect --raw` of `reference` over plain HTTP: the manifest as served.
/// `creds: None` is an anonymous request (ambient logins are not used).
pub fn inspect_raw(reference: &str, creds: Option<(&str, &str)>) -> Result<String, Error> {
    let auth = authfile(registry_of(reference)?, creds)?;
    let auth_path = auth.path().to_string_lossy().into_owned();
    let target = format!("docker://{reference}");
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--authfile",
        &auth_path,
        &target,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_npm(dir: &Path, args: &[&str], api_url: Option<&str>) -> std::process::Output {
        let script = dir.join("npm.sh");
        fs::write(&script, npm_stand_in()).expect("write script");
        let mut cmd = Command::new("sh");
        cmd.arg(&script)
            .args(args)
            .current_dir(dir)
            .env_remove("API_URL");
        if let Some(u) = api_url {
            cmd.env("API_URL", u);
        }
        cmd.output().expect("run sh")
    }

    #[test]
    fn npm_stand_in_fakes_the_seed_commands() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let out = run_npm(d, &["install"], None);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("added 3 packages"));
        run_npm(d, &["install"], None);
        assert_eq!(
            fs::read_to_string(d.join("node_modules/.install-count"))
                .expect("count")
                .trim(),
            "2"
        );
        assert!(d.join("node_modules/.package-lock.json").exists());

        assert!(
            run_npm(d, &["run", "build:staging"], Some("https://api.example"))
                .status
                .success()
        );
        let html = fs::read_to_string(d.join("dist/index.html")).expect("html");
        assert!(html.contains("<h1>built for staging</h1>"), "{html}");
        assert!(html.contains("https://api.example"), "{html}");

        assert!(run_npm(d, &["run", "clean"], None).status.success());
        assert!(!d.join("dist").exists());

        for bad in [
            &["run", "lint"][..],
            &["publish"][..],
            &[][..],
            &["run", "build:"][..],
        ] {
            let out = run_npm(d, bad, None);
            assert_eq!(out.status.code(), Some(1), "{bad:?}");
            assert!(!out.stderr.is_empty());
        }
    }

    #[test]
    fn references_need_a_registry_host() {
        assert_eq!(
            registry_of("127.0.0.1:5000/a/b:1").ok(),
            Some("127.0.0.1:5000")
        );
        assert!(registry_of("busybox:latest").is_err());
    }

    #[test]
    #[ignore = "needs busybox-static: run by .ci/run"]
    fn layout_is_reproducible_and_complete() {
        let a = tempfile::tempdir().expect("tempdir");
        let b = tempfile::tempdir().expect("tempdir");
        let extra: &[(&str, &[u8], u32)] = &[
            ("/usr/local/bin/npm", npm_stand_in(), 0o755),
            ("/opt/x/y.txt", b"y", 0o600),
        ];
        let la = build_busybox_image(a.path(), extra).expect("build a");
        let lb = build_busybox_image(b.path(), extra).expect("build b");
        assert_eq!(la.manifest_digest, lb.manifest_digest);

        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(a.path().join("index.json")).expect("index"))
                .expect("json");
        assert_eq!(index["manifests"][0]["digest"], la.manifest_digest.as_str());
        let blob = |d: &str| {
            fs::read(
                a.path()
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .expect("blob")
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(&la.manifest_digest)).expect("manifest");
        let layer = blob(
            manifest["layers"][0]["digest"]
                .as_str()
                .expect("layer digest"),
        );
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer.as_slice()));
        let mut seen = BTreeMap::new();
        for e in archive.entries().expect("entries") {
            let e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            seen.insert(
                path,
                (e.header().mode().expect("mode"), e.header().entry_type()),
            );
        }
        assert_eq!(seen["bin/busybox"].0, 0o755);
        assert_eq!(seen["bin/sh"].1, tar::EntryType::Symlink);
        assert!(seen.contains_key("bin/ls"));
        assert_eq!(seen["tmp/"].0, 0o1777);
        assert_eq!(seen["usr/local/bin/npm"].0, 0o755);
        assert!(seen.contains_key("opt/x/"));
        assert_eq!(seen["opt/x/y.txt"].0, 0o600);
    }
}
