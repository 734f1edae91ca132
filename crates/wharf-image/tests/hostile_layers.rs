//! The malicious-layer corpus: layers that try to write outside their folder (`../`, absolute
//! paths, symbolic links and hard links pointing out, a link replaced by a folder). A sentinel
//! tree beside the layer folder is fingerprinted before and after: it must not change, with
//! `openat2` and with the checked walk.

mod common;

use std::path::Path;

use common::{Layer, fingerprint};
use wharf_fs::{Resolve, Root};
use wharf_image::unpack;

fn sentinel(base: &Path) -> std::path::PathBuf {
    let s = base.join("sentinel");
    std::fs::create_dir_all(s.join("dir")).expect("sentinel");
    std::fs::write(s.join("secret"), b"do not touch").expect("secret");
    std::fs::write(s.join("dir/file"), b"inner").expect("inner");
    s
}

fn hostile_layers(sentinel: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let abs = sentinel.to_string_lossy().into_owned();
    vec![
        (
            "dot-dot paths",
            Layer::new()
                .file("../sentinel/secret", b"pwned", 0o644)
                .file("../../../../../../../../tmp-wharf-escape", b"pwned", 0o644)
                .file("a/../../sentinel/new", b"pwned", 0o644)
                .finish(),
        ),
        (
            "absolute paths",
            Layer::new()
                .file(&format!("{abs}/secret"), b"pwned", 0o644)
                .file(&format!("{abs}/created"), b"pwned", 0o644)
                .finish(),
        ),
        (
            "absolute symlink then a file through it",
            Layer::new()
                .symlink("out", &abs)
                .file("out/secret", b"pwned", 0o644)
                .file("out/created", b"pwned", 0o644)
                .dir("out/newdir", 0o755)
                .finish(),
        ),
        (
            "relative symlink climbing out",
            Layer::new()
                .symlink("up", "../../../../../../..")
                .file(&format!("up{abs}/secret"), b"pwned", 0o644)
                .symlink("rel", "../sentinel")
                .file("rel/secret", b"pwned", 0o644)
                .finish(),
        ),
        (
            "hard link to a host file, then written",
            Layer::new()
                .hardlink("h", &format!("{abs}/secret"))
                .hardlink("h2", "../sentinel/secret")
                .file("h", b"pwned", 0o644)
                .finish(),
        ),
        (
            "symlink replaced by a folder",
            Layer::new()
                .symlink("d", &format!("{abs}/dir"))
                .dir("d", 0o777)
                .file("d/file", b"pwned", 0o644)
                .finish(),
        ),
        (
            "symlinked parent of a whiteout and an opaque mark",
            Layer::new()
                .symlink("w", &abs)
                .whiteout("w", "secret")
                .opaque("w/dir")
                .finish(),
        ),
        (
            "hard link through a symlinked folder",
            Layer::new()
                .symlink("s", &abs)
                .hardlink("copy", "s/secret")
                .finish(),
        ),
        (
            "symlink as the file to set xattrs and modes on",
            Layer::new()
                .symlink("m", &format!("{abs}/secret"))
                .file_with_xattrs("m", b"x", &[("user.evil", b"1")])
                .finish(),
        ),
    ]
}

fn run(walk: bool) {
    let base = tempfile::tempdir().expect("tempdir");
    let sentinel = sentinel(base.path());
    let before = fingerprint(base.path(), &["layers"]);
    for (name, layer) in hostile_layers(&sentinel) {
        let dir = base.path().join("layers").join(name.replace(' ', "-"));
        std::fs::create_dir_all(&dir).expect("layer dir");
        let mut root = Root::open(&dir, Resolve::InRoot).expect("root");
        if walk {
            root = root.force_walk();
        }
        // Refusing the layer is fine; writing outside is not.
        let _ = unpack::apply_layer(layer.as_slice(), &root, wharf_image::is_root()).and_then(
            |(mut report, links)| unpack::copy_up_links(&root, &[], &links, false, &mut report),
        );
        let after = fingerprint(base.path(), &["layers"]);
        assert_eq!(before, after, "{name}: the sentinel changed");
    }
    assert!(!Path::new("/tmp-wharf-escape").exists());
    assert!(
        !Path::new("/secret").exists() || std::fs::read("/secret").ok() != Some(b"pwned".to_vec())
    );
}

#[test]
fn hostile_layers_write_nothing_outside_with_openat2() {
    run(false);
}

#[test]
fn hostile_layers_write_nothing_outside_with_the_checked_walk() {
    run(true);
}

#[test]
fn escaping_entries_land_inside_the_layer() {
    let base = tempfile::tempdir().expect("tempdir");
    let sentinel = sentinel(base.path());
    let abs = sentinel.to_string_lossy().into_owned();
    let dir = base.path().join("layer");
    std::fs::create_dir(&dir).expect("dir");
    let root = Root::open(&dir, Resolve::InRoot).expect("root");
    let layer = Layer::new()
        .file("../escaped", b"x", 0o644)
        .dir(&abs, 0o755)
        .symlink("out", &abs)
        .file("out/through", b"y", 0o644)
        .finish();
    unpack::apply_layer(layer.as_slice(), &root, false).expect("apply");
    // As in a chroot: `..` stops at the top, an absolute link starts at the layer's root.
    assert_eq!(std::fs::read(dir.join("escaped")).expect("escaped"), b"x");
    assert_eq!(
        std::fs::read(dir.join(abs.trim_start_matches('/')).join("through")).expect("through"),
        b"y"
    );
}

/// A reader that counts what is read from it.
struct Counted<R> {
    inner: R,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// A tar whose first entry is an extension of `kind` claiming 1 GiB (a few KiB once
/// compressed), then a file: the stream is generated as it is read, never held here.
fn huge_extension_then_a_file(kind: tar::EntryType) -> impl std::io::Read {
    let mut extension = tar::Header::new_gnu();
    extension.set_entry_type(kind);
    extension.set_size(1 << 30);
    extension.as_gnu_mut().expect("a GNU header").name[..13].copy_from_slice(b"././@LongLink");
    extension.set_cksum();
    let mut file = Layer::new();
    let file = file.file("after", b"data", 0o644).finish();
    std::io::Read::chain(
        std::io::Read::chain(
            std::io::Cursor::new(extension.as_bytes().to_vec()),
            std::io::Read::take(std::io::repeat(b'a'), 1 << 30),
        ),
        std::io::Cursor::new(file),
    )
}

/// Regression: the tar reader read a GNU long name or a PAX extension whole into memory,
/// whatever size its header claimed, before handing over the entry: a layer of a few KiB of
/// zstd made `wharf pull` allocate gigabytes. Now the stream stops a few MiB past the last
/// entry, and the layer is refused naming why.
#[test]
fn an_oversized_long_name_or_pax_extension_is_refused_before_it_is_read_whole() {
    for kind in [
        tar::EntryType::GNULongName,
        tar::EntryType::GNULongLink,
        tar::EntryType::XHeader,
    ] {
        let base = tempfile::tempdir().expect("tempdir");
        let root = Root::open(base.path(), Resolve::InRoot).expect("root");
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let layer = Counted {
            inner: huge_extension_then_a_file(kind),
            read: read.clone(),
        };
        let err = unpack::apply_layer(layer, &root, false).expect_err("an oversized header");
        assert!(
            err.to_string().contains("larger than 4 MiB"),
            "{kind:?}: {err}"
        );
        assert!(read.get() < 8 << 20, "{kind:?}: {} bytes read", read.get());
    }
}
