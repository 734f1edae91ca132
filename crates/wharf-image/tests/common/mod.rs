//! Shared by the wharf-image tests: layers built entry by entry, OCI layouts from them, and
//! tree fingerprints to compare unpacked trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// A tar layer built entry by entry (uncompressed).
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Layer {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Complete);
        Layer { builder }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn append(&mut self, mut h: tar::Header, path: &str, data: &[u8]) -> &mut Self {
        // set_path refuses `..`: write the name bytes directly, as a hostile tool would.
        {
            let name = &mut h.as_old_mut().name;
            name.fill(0);
            name[..path.len()].copy_from_slice(path.as_bytes());
        }
        h.set_cksum();
        self.builder.append(&h, data).expect("append");
        self
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.append(Self::header(tar::EntryType::Directory, mode, 0), path, &[])
    }

    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) -> &mut Self {
        self.append(
            Self::header(tar::EntryType::Regular, mode, data.len() as u64),
            path,
            data,
        )
    }

    pub fn owned_file(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.append(h, path, data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        h.set_link_name_literal(target).expect("link name");
        self.append(h, path, &[])
    }

    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        h.set_link_name_literal(target).expect("link name");
        self.append(h, path, &[])
    }

    pub fn device(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = Self::header(kind, 0o600, 0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.append(h, path, &[])
    }

    pub fn fifo(&mut self, path: &str) -> &mut Self {
        self.append(Self::header(tar::EntryType::Fifo, 0o644, 0), path, &[])
    }

    pub fn whiteout(&mut self, dir: &str, name: &str) -> &mut Self {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&path, b"", 0o644)
    }

    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"", 0o644)
    }

    /// A file with extended attributes (PAX `SCHILY.xattr.*`).
    pub fn file_with_xattrs(
        &mut self,
        path: &str,
        data: &[u8],
        xattrs: &[(&str, &[u8])],
    ) -> &mut Self {
        let records: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
            .expect("pax");
        self.file(path, data, 0o644)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().expect("tar")
    }
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Write an OCI image layout with these (uncompressed) layers, gzip-compressed, into `dir`.
pub fn write_layout(dir: &Path, layers: &[Vec<u8>]) -> wharf_testkit::OciLayout {
    write_layout_mixed(dir, layers, &vec![false; layers.len()])
}

/// zstd as some builders write it: each layer split in two frames, a skippable frame between.
pub fn zstd_frames(layer: &[u8]) -> Vec<u8> {
    use ruzstd::encoding::{CompressionLevel, compress_to_vec};
    let (a, b) = layer.split_at(layer.len() / 2);
    let mut out = compress_to_vec(a, CompressionLevel::Fastest);
    out.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, b'w', b'h', b'f']);
    out.extend_from_slice(&compress_to_vec(b, CompressionLevel::Fastest));
    out
}

/// [`write_layout`] with zstd layers (`tar+zstd`, [`zstd_frames`]) when `zstd`.
#[allow(dead_code)] // not every test file uses every helper
pub fn write_layout_compressed(
    dir: &Path,
    layers: &[Vec<u8>],
    zstd: bool,
) -> wharf_testkit::OciLayout {
    write_layout_mixed(dir, layers, &vec![zstd; layers.len()])
}

/// [`write_layout`] with the layer `i` compressed with zstd when `zstd[i]`, else gzip.
pub fn write_layout_mixed(
    dir: &Path,
    layers: &[Vec<u8>],
    zstd: &[bool],
) -> wharf_testkit::OciLayout {
    assert_eq!(layers.len(), zstd.len(), "one compression per layer");
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("blobs dir");
    let put = |data: &[u8]| {
        let digest = sha(data);
        fs::write(blobs.join(&digest["sha256:".len()..]), data).expect("blob");
        digest
    };
    let mut diff_ids = Vec::new();
    let mut descriptors = Vec::new();
    for (layer, &zstd) in layers.iter().zip(zstd) {
        diff_ids.push(sha(layer));
        let (compressed, media_type) = if zstd {
            (
                zstd_frames(layer),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            )
        } else {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(layer).expect("gzip");
            (
                gz.finish().expect("gzip"),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        };
        let digest = put(&compressed);
        descriptors.push(serde_json::json!({
            "mediaType": media_type,
            "digest": digest,
            "size": compressed.len(),
        }));
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_bytes = serde_json::to_vec(&config).expect("json");
    let config_digest = put(&config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_bytes.len(),
        },
        "layers": descriptors,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("json");
    let manifest_digest = put(&manifest_bytes);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": wharf_testkit::LAYOUT_TAG},
        }],
    });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
    wharf_testkit::OciLayout {
        path: dir.to_path_buf(),
        manifest_digest,
    }
}

/// Every entry under `root` (not following links): type, mode, owner, size, content hash, link
/// target, device numbers. `skip` drops paths (and what is under them).
pub fn fingerprint(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<String, String>) {
    use std::os::unix::fs::PermissionsExt;
    // Without root, a 0000 folder is unreadable even to its owner: open it up while walking it.
    let restore = match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let mode = fs::symlink_metadata(dir)
                .expect("lstat")
                .permissions()
                .mode();
            fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o500)).expect("chmod");
            Some(mode)
        }
        _ => None,
    };
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        if skip
            .iter()
            .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
        {
            continue;
        }
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let ft = meta.file_type();
        let owner = format!("{}:{}", meta.uid(), meta.gid());
        let mode = format!("{:04o}", meta.mode() & 0o7777);
        let desc = if ft.is_dir() {
            format!("dir {mode} {owner}")
        } else if ft.is_symlink() {
            format!(
                "link -> {} {owner}",
                fs::read_link(&path).expect("readlink").display()
            )
        } else if ft.is_file() {
            format!(
                "file {mode} {owner} {} {}",
                meta.len(),
                sha(&fs::read(&path).expect("read"))
            )
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("dev {mode} {owner} {:x}", meta.rdev())
        } else if ft.is_fifo() {
            format!("fifo {mode} {owner}")
        } else {
            "other".to_string()
        };
        out.insert(rel, desc);
        if ft.is_dir() {
            walk(root, &path, skip, out);
        }
    }
    if let Some(mode) = restore {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).expect("chmod back");
    }
}

/// Differences between two fingerprints, one line each (empty when equal).
pub fn diff(
    a_name: &str,
    a: &BTreeMap<String, String>,
    b_name: &str,
    b: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("{k}: only in {a_name} ({v})")),
            Some(w) if w != v => out.push(format!("{k}: {a_name} {v} / {b_name} {w}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push(format!("{k}: only in {b_name} ({v})"));
        }
    }
    out
}
