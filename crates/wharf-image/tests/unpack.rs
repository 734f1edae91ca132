//! The unpack corpus, applied without a registry: each image is a list of layers built here,
//! unpacked layer by layer into overlayfs form, then flattened; the merged tree is compared with
//! what overlayfs (and so Docker) shows. `docker_compare.rs` checks the same images against
//! Docker itself.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use common::{Layer, fingerprint};
use wharf_fs::{Resolve, Root};
use wharf_image::unpack::{self, LayerReport, USER_OPAQUE_XATTR};

/// Unpack `layers` (bottom first) into `base/layer-N`, then flatten into `base/merged`.
fn unpack_all(base: &Path, layers: &[Vec<u8>], walk: bool) -> Vec<LayerReport> {
    let as_root = wharf_image::is_root();
    let mut roots: Vec<Root> = Vec::new();
    let mut reports = Vec::new();
    for (i, tar) in layers.iter().enumerate() {
        let dir = base.join(format!("layer-{i}"));
        std::fs::create_dir(&dir).expect("layer dir");
        let mut root = Root::open(&dir, Resolve::InRoot).expect("root");
        if walk {
            root = root.force_walk();
        }
        let (mut report, links) =
            unpack::apply_layer(tar.as_slice(), &root, as_root).expect("apply layer");
        unpack::copy_up_links(&root, &roots, &links, as_root, &mut report).expect("links");
        roots.push(root);
        reports.push(report);
    }
    let merged = base.join("merged");
    std::fs::create_dir(&merged).expect("merged");
    let dest = Root::open(&merged, Resolve::NoSymlinks).expect("dest");
    wharf_image::flatten::flatten_layers(&roots, &dest, as_root).expect("flatten");
    reports
}

fn merged(layers: &[Vec<u8>]) -> (tempfile::TempDir, BTreeMap<String, String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    unpack_all(dir.path(), layers, false);
    let tree = fingerprint(&dir.path().join("merged"), &[]);
    // The checked walk must give the very same tree.
    let walked = tempfile::tempdir().expect("tempdir");
    unpack_all(walked.path(), layers, true);
    assert_eq!(
        tree,
        fingerprint(&walked.path().join("merged"), &[]),
        "openat2 and the checked walk disagree"
    );
    (dir, tree)
}

fn paths(tree: &BTreeMap<String, String>) -> Vec<&str> {
    tree.keys().map(String::as_str).collect()
}

fn base_layer() -> Vec<u8> {
    Layer::new()
        .dir("a", 0o755)
        .file("a/x", b"x", 0o644)
        .file("a/y", b"y", 0o644)
        .dir("b", 0o755)
        .file("b/z", b"z", 0o644)
        .dir("d", 0o755)
        .file("d/old1", b"1", 0o644)
        .dir("d/sub", 0o755)
        .file("d/sub/old2", b"2", 0o644)
        .finish()
}

#[test]
fn whiteouts_remove_files_and_folders_of_lower_layers() {
    let top = Layer::new().whiteout("a", "x").whiteout("", "b").finish();
    let (_dir, tree) = merged(&[base_layer(), top]);
    let p = paths(&tree);
    assert!(p.contains(&"a/y") && !p.contains(&"a/x"), "{p:?}");
    assert!(!p.iter().any(|p| p.starts_with('b')), "{p:?}");
    assert!(p.contains(&"d/sub/old2"));
}

#[test]
fn opaque_folders_hide_lower_content_in_every_entry_order() {
    let orders: Vec<Vec<u8>> = vec![
        Layer::new().opaque("d").file("d/new", b"n", 0o644).finish(),
        Layer::new().file("d/new", b"n", 0o644).opaque("d").finish(),
        Layer::new()
            .dir("d", 0o700)
            .file("d/new", b"n", 0o644)
            .opaque("d")
            .finish(),
        Layer::new()
            .opaque("d")
            .dir("d", 0o700)
            .file("d/new", b"n", 0o644)
            .finish(),
    ];
    for (i, top) in orders.into_iter().enumerate() {
        let (_dir, tree) = merged(&[base_layer(), top]);
        let under_d: Vec<&str> = paths(&tree)
            .into_iter()
            .filter(|p| p.starts_with("d/"))
            .collect();
        assert_eq!(under_d, vec!["d/new"], "order {i}");
        assert!(tree.contains_key("a/x"), "order {i}");
    }
}

#[test]
fn a_whiteout_hides_only_lower_layers() {
    // Whiteout before the new entry, and after it: the layer's own entry stays either way.
    for top in [
        Layer::new()
            .whiteout("a", "x")
            .file("a/x", b"new", 0o600)
            .finish(),
        Layer::new()
            .file("a/x", b"new", 0o600)
            .whiteout("a", "x")
            .finish(),
    ] {
        let (dir, tree) = merged(&[base_layer(), top]);
        assert!(tree["a/x"].starts_with("file 0600"), "{}", tree["a/x"]);
        assert_eq!(
            std::fs::read(dir.path().join("merged/a/x")).expect("read"),
            b"new"
        );
    }
}

#[test]
fn layer_folders_hold_overlayfs_whiteouts_and_opaque_marks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let top = Layer::new()
        .whiteout("a", "x")
        .opaque("d")
        .file("d/new", b"n", 0o644)
        .finish();
    let reports = unpack_all(dir.path(), &[base_layer(), top], false);
    assert_eq!((reports[1].whiteouts, reports[1].opaque_dirs), (1, 1));
    let layer = dir.path().join("layer-1");
    let meta = std::fs::symlink_metadata(layer.join("a/x")).expect("whiteout");
    assert!(meta.file_type().is_char_device());
    assert!(!layer.join("a/.wh.x").exists() && !layer.join("d/.wh..wh..opq").exists());
    let root = Root::open(&layer, Resolve::NoSymlinks).expect("root");
    assert_eq!(
        root.xattr("d", OsStr::new(USER_OPAQUE_XATTR))
            .expect("xattr")
            .as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn hard_links_to_lower_layer_files_become_copies() {
    let lower = Layer::new()
        .dir("h", 0o755)
        .file("h/orig", b"original", 0o640)
        .finish();
    let top = Layer::new()
        .hardlink("h/link2", "h/orig")
        .hardlink("h/link3", "h/orig")
        .file("h/mine", b"m", 0o644)
        .hardlink("h/mine2", "h/mine")
        .finish();
    let (dir, tree) = merged(&[lower, top]);
    for p in ["h/orig", "h/link2", "h/link3"] {
        assert!(tree[p].starts_with("file 0640"), "{p}: {}", tree[p]);
        assert_eq!(
            std::fs::read(dir.path().join("merged").join(p)).expect("read"),
            b"original"
        );
    }
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| {
        std::fs::metadata(dir.path().join("merged").join(p))
            .expect("meta")
            .ino()
    };
    assert_eq!(
        ino("h/mine"),
        ino("h/mine2"),
        "links within a layer stay links"
    );
}

#[test]
fn a_file_under_a_lower_symlinked_folder_makes_a_real_folder() {
    // The lib64 case: overlay engines show a real folder with only the new file.
    let lower = Layer::new()
        .dir("usr", 0o755)
        .dir("usr/lib64", 0o755)
        .file("usr/lib64/libc.so", b"libc", 0o755)
        .symlink("lib64", "usr/lib64")
        .finish();
    let top = Layer::new().file("lib64/ld.so", b"ld", 0o755).finish();
    let (_dir, tree) = merged(&[lower, top]);
    assert!(tree["lib64"].starts_with("dir 0755"), "{}", tree["lib64"]);
    assert!(tree.contains_key("lib64/ld.so"));
    assert!(!tree.contains_key("lib64/libc.so"));
    assert!(tree.contains_key("usr/lib64/libc.so"));
}

#[test]
fn modes_setuid_and_locked_folders_survive() {
    let lower = Layer::new()
        .dir("locked", 0o000)
        .file("locked/inside", b"i", 0o600)
        .owned_file("suid", b"s", 0o4755, 1000, 1000)
        .file("sgid", b"g", 0o2711)
        .dir("sticky", 0o1777)
        .finish();
    let top = Layer::new()
        .file("locked2/deep/f", b"f", 0o644)
        .dir("locked2", 0o000)
        .finish();
    let (_dir, tree) = merged(&[lower, top]);
    assert!(tree["locked"].starts_with("dir 0000"), "{}", tree["locked"]);
    assert!(tree.contains_key("locked/inside"));
    assert!(tree["locked2"].starts_with("dir 0000"));
    assert!(
        tree["locked2/deep"].starts_with("dir 0755"),
        "implied folders are 0755"
    );
    assert!(tree["sgid"].starts_with("file 2711"), "{}", tree["sgid"]);
    assert!(tree["sticky"].starts_with("dir 1777"));
    if wharf_image::is_root() {
        assert!(
            tree["suid"].starts_with("file 4755 1000:1000"),
            "{}",
            tree["suid"]
        );
    }
}

#[test]
fn devices_fifos_and_xattrs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = Layer::new()
        .dir("dev", 0o755)
        .device("dev/null", tar::EntryType::Char, 1, 3)
        .fifo("pipe")
        .file_with_xattrs(
            "attrs",
            b"a",
            &[("user.wharf.test", b"v"), ("trusted.overlay.opaque", b"y")],
        )
        .file_with_xattrs("privileged", b"p", &[("trusted.wharf.test", b"t")])
        .finish();
    let reports = unpack_all(dir.path(), &[layer], false);
    let merged = dir.path().join("merged");
    let tree = fingerprint(&merged, &[]);
    assert!(tree["pipe"].starts_with("fifo"));
    if wharf_image::is_root() {
        assert!(
            tree["dev/null"].starts_with("dev 0600"),
            "{}",
            tree["dev/null"]
        );
        assert_eq!(reports[0].skipped_devices, 0);
    } else {
        assert!(!tree.contains_key("dev/null"));
        assert_eq!(reports[0].skipped_devices, 1);
    }
    let root = Root::open(dir.path().join("layer-0"), Resolve::NoSymlinks).expect("root");
    assert_eq!(
        root.xattr("attrs", OsStr::new("user.wharf.test"))
            .expect("xattr")
            .as_deref(),
        Some(&b"v"[..])
    );
    // overlayfs's own attributes never come from a layer.
    assert_eq!(
        root.xattr("attrs", OsStr::new("trusted.overlay.opaque"))
            .ok()
            .flatten(),
        None
    );
    // `trusted.*` only as root; without root it is counted, not fatal.
    let trusted = root
        .xattr("privileged", OsStr::new("trusted.wharf.test"))
        .ok()
        .flatten();
    if wharf_image::is_root() {
        assert_eq!(trusted.as_deref(), Some(&b"t"[..]));
        assert_eq!(reports[0].skipped_xattrs, 1, "only the overlay one");
    } else {
        assert_eq!(trusted, None);
        assert_eq!(reports[0].skipped_xattrs, 2);
    }
}

#[test]
fn later_entries_of_a_layer_replace_earlier_ones() {
    let layer = Layer::new()
        .file("f", b"first", 0o644)
        .file("f", b"second", 0o600)
        .dir("g", 0o755)
        .file("g/inner", b"i", 0o644)
        .symlink("g", "f")
        .finish();
    let (dir, tree) = merged(&[layer]);
    assert_eq!(
        std::fs::read(dir.path().join("merged/f")).expect("f"),
        b"second"
    );
    assert!(tree["g"].starts_with("link -> f "), "{}", tree["g"]);
    assert!(!tree.contains_key("g/inner"));
}

#[test]
fn a_pax_global_header_is_not_a_file() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut global = tar::Header::new_ustar();
    let record = b"52 comment=0123456789012345678901234567890123456789\n";
    global.set_entry_type(tar::EntryType::XGlobalHeader);
    global.set_path("pax_global_header").expect("path");
    global.set_size(record.len() as u64);
    global.set_cksum();
    builder.append(&global, &record[..]).expect("global");
    let mut file = tar::Header::new_gnu();
    file.set_path("f").expect("path");
    file.set_size(1);
    file.set_mode(0o644);
    file.set_cksum();
    builder.append(&file, &b"x"[..]).expect("file");
    let (_dir, tree) = merged(&[builder.into_inner().expect("tar")]);
    assert_eq!(paths(&tree), vec!["f"]);
}

/// The whole corpus again as an unprivileged user (owners not set, devices skipped, 0000 folders
/// still filled and flattened): this test binary re-run under `setpriv` as nobody.
#[test]
#[ignore = "needs root (drops to nobody with setpriv): run by scripts/test-all.sh"]
fn the_corpus_unpacks_without_root() {
    assert!(
        wharf_image::is_root(),
        "run as root: it drops to nobody itself"
    );
    let exe = std::env::current_exe().expect("test binary");
    // nobody cannot remove the 0000 folders its tests unpack: they go in a folder that is
    // removed here, as root (they were left in the system's temporary folder by every run).
    let scratch = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o777))
        .expect("chmod");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args(["--skip", "the_corpus_unpacks_without_root"])
        .env("TMPDIR", scratch.path())
        .output()
        .expect("setpriv");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("test result: ok. 10 passed"), "{text}");
}
