//! Hostile trees against the public API, each case run twice: with `openat2` and with the
//! checked walk forced (the path kernels before 5.6 take). A sentinel folder outside the root
//! is fingerprinted before and after: nothing in it may change.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wharf_fs::{Error, FileKind, Resolve, Root};

struct Fixture {
    _dir: tempfile::TempDir,
    /// The tree operations are confined to.
    root: PathBuf,
    /// Outside the root: symlinks in the root point here. Must never change.
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(outside.join("etc")).unwrap();
        std::fs::write(outside.join("etc/shadow"), "root:SECRET-HASH:19000::::::\n").unwrap();
        std::fs::write(outside.join("etc/hostname"), "host\n").unwrap();
        std::fs::create_dir_all(outside.join("cron.d")).unwrap();
        Self {
            _dir: dir,
            root,
            outside,
        }
    }

    fn open(&self, resolve: Resolve, walk: bool) -> Root {
        let r = Root::open(&self.root, resolve).unwrap();
        if walk { r.force_walk() } else { r }
    }

    fn ln(&self, target: &str, link: &str) {
        let p = self.root.join(link);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn outside_str(&self) -> String {
        self.outside.to_string_lossy().into_owned()
    }
}

/// Every entry under `dir`: kind, mode, owner, size, mtime, content. Links are not followed.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let content = if m.is_file() {
                String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned()
            } else if m.file_type().is_symlink() {
                std::fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            } else {
                String::new()
            };
            if m.is_dir() {
                pending.push(e.path());
            }
            out.insert(
                e.path().strip_prefix(dir).unwrap().to_path_buf(),
                format!(
                    "{:o} {}:{} {} {}.{} {content}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec()
                ),
            );
        }
    }
    out
}

/// Run `case` with openat2 and with the walk, each on a fresh fixture, checking the sentinel.
fn both(case: impl Fn(&Fixture, bool)) {
    for walk in [false, true] {
        let f = Fixture::new();
        let before = fingerprint(&f.outside);
        case(&f, walk);
        assert_eq!(
            before,
            fingerprint(&f.outside),
            "the folder outside the root changed (walk: {walk})"
        );
    }
}

#[track_caller]
fn assert_escapes<T: std::fmt::Debug>(r: wharf_fs::Result<T>) -> Error {
    match r {
        Err(e @ (Error::Escapes { .. } | Error::Absolute { .. })) => e,
        other => panic!("expected an escape to be refused, got {other:?}"),
    }
}

#[test]
fn openat2_is_used_on_this_kernel_and_the_walk_can_be_forced() {
    let f = Fixture::new();
    // The machine this runs on has Linux >= 5.6; the forced walk says so.
    assert!(
        Root::open(&f.root, Resolve::Beneath)
            .unwrap()
            .uses_openat2()
    );
    assert!(!f.open(Resolve::Beneath, true).uses_openat2());
}

#[test]
fn a_link_to_slash_is_never_followed_out() {
    both(|f, walk| {
        f.ln("/", "hostroot");
        f.ln(&f.outside_str(), "abs");
        let r = f.open(Resolve::Beneath, walk);
        let e = assert_escapes(r.open_read("hostroot/etc/shadow"));
        let text = e.to_string();
        assert!(text.contains("hostroot/etc/shadow"), "{text}");
        assert!(text.contains("`hostroot` -> `/`"), "{text}");
        assert!(text.contains(&f.root.display().to_string()), "{text}");
        assert_escapes(r.open_read("abs/etc/shadow"));
        assert_escapes(r.create_new("abs/cron.d/pwned", 0o644));
        assert_escapes(r.create_dir_all("abs/cron.d/new/deeper", 0o755));
        assert_escapes(r.replace_file("abs/cron.d/pwned", 0o644, b"x"));
        assert_escapes(r.symlink("/", "abs/cron.d/l"));
        assert_escapes(r.metadata("abs/etc/shadow"));
        assert_escapes(r.read_dir("abs/etc"));
        assert_escapes(r.set_permissions("abs/etc/shadow", 0o777));
        assert_escapes(r.set_times("abs/etc/shadow", None, Some(std::time::UNIX_EPOCH)));
        assert_escapes(r.remove_file("abs/etc/shadow"));
        assert_escapes(r.remove_all("abs/etc"));
        assert_escapes(r.open_dir("abs/etc", Resolve::Beneath));
        // The link itself is an entry of the tree: it can be read and removed.
        assert_eq!(r.read_link("hostroot").unwrap(), Path::new("/"));
        r.remove_all("abs").unwrap();
        assert!(!f.root.join("abs").exists() && f.outside.join("etc/shadow").exists());
    });
}

#[test]
fn relative_chains_out_are_refused_and_inside_ones_followed() {
    both(|f, walk| {
        f.write("a/b/c/real.txt", "inside");
        f.ln("../../..", "a/b/up");
        f.ln("up/../outside", "a/b/twice");
        f.ln("../b/c", "a/b/in");
        f.ln("in", "a/b/in2");
        let r = f.open(Resolve::Beneath, walk);
        assert_escapes(r.open_read("a/b/up/outside/etc/shadow"));
        assert_escapes(r.open_read("a/b/twice/etc/shadow"));
        assert_escapes(r.open_read("a/../../outside/etc/shadow"));
        assert_escapes(r.open_read("../outside/etc/shadow"));
        // Links and `..` that stay inside are fine.
        let mut text = String::new();
        std::io::Read::read_to_string(&mut r.open_read("a/b/in2/real.txt").unwrap(), &mut text)
            .unwrap();
        assert_eq!(text, "inside");
        assert!(r.open_read("a/b/../b/c/real.txt").is_ok());
    });
}

#[test]
fn in_root_mode_clamps_absolute_links_and_dotdot_to_the_root() {
    both(|f, walk| {
        f.write("etc/shadow", "the image's own");
        f.ln("/", "hostroot");
        f.ln("../../../../etc", "a/b/up");
        let r = f.open(Resolve::InRoot, walk);
        for p in [
            "hostroot/etc/shadow",
            "a/b/up/shadow",
            "/etc/shadow",
            "../../etc/shadow",
        ] {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut r.open_read(p).unwrap(), &mut text).unwrap();
            assert_eq!(text, "the image's own", "{p}");
        }
        // A write through an absolute link lands in the root.
        r.create_dir_all("hostroot/cron.d", 0o755).unwrap();
        r.create_new("hostroot/cron.d/pwned", 0o644).unwrap();
        assert!(f.root.join("cron.d/pwned").exists());
    });
}

#[test]
fn no_symlinks_mode_refuses_any_link_on_the_way() {
    both(|f, walk| {
        f.write("state/real/x", "x");
        f.ln("real", "state/link");
        let r = f.open(Resolve::NoSymlinks, walk);
        match r.open_read("state/link/x") {
            Err(Error::Symlink { link, .. }) => assert_eq!(link, Path::new("state/link")),
            other => panic!("{other:?}"),
        }
        assert!(r.open_read("state/real/x").is_ok());
        assert_escapes(r.open_read("/etc/hostname"));
        assert_escapes(r.open_read("state/../../outside/etc/hostname"));
    });
}

#[test]
fn the_last_component_is_never_followed() {
    both(|f, walk| {
        let shadow = f.outside.join("etc/shadow");
        f.ln(&shadow.to_string_lossy(), "e.env");
        f.ln(&f.outside.join("cron.d").to_string_lossy(), "out");
        let r = f.open(Resolve::Beneath, walk);
        match r.open_read("e.env") {
            Err(Error::WrongKind {
                found: FileKind::Symlink,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(r.create_new("e.env", 0o644).is_err());
        assert!(r.open_append("e.env", 0o644).is_err());
        assert!(r.open_dir("out", Resolve::Beneath).is_err());
        assert!(r.read_dir("out").is_err());
        // Attribute changes on a link leave its target alone.
        r.set_permissions("e.env", 0o777).unwrap();
        r.set_times("e.env", None, Some(std::time::UNIX_EPOCH))
            .unwrap();
        if rustix::process::geteuid().is_root() {
            r.set_owner("e.env", Some(4242), Some(4242)).unwrap();
            assert_eq!(
                std::fs::symlink_metadata(f.root.join("e.env"))
                    .unwrap()
                    .uid(),
                4242
            );
        }
        // Replacing the link replaces the link, not the file it points to.
        r.replace_file("e.env", 0o600, b"A=1\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(f.root.join("e.env")).unwrap(),
            "A=1\n"
        );
        assert!(r.metadata("out").unwrap().file_type().is_symlink());
        // A hard link of a link is a link.
        r.hard_link("out", "out2").unwrap();
        assert!(r.metadata("out2").unwrap().file_type().is_symlink());
    });
}

#[test]
fn a_symlink_swapped_for_a_folder_mid_operation_never_leads_out() {
    // A job keeps replacing `d` with a link to the outside folder and back while the
    // operations run: whatever each one finds, nothing may land outside.
    both(|f, walk| {
        let root = f.root.clone();
        let target = f.outside.join("cron.d");
        std::fs::create_dir(root.join("d")).unwrap();
        // The swapper makes a bounded number of swaps; the operations run until it is done.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let done = done.clone();
            let root = root.clone();
            std::thread::spawn(move || {
                for n in 0..2_000u32 {
                    let _ = std::fs::remove_dir_all(root.join("d"));
                    let _ = std::fs::remove_file(root.join("d"));
                    if n % 2 == 0 {
                        let _ = std::os::unix::fs::symlink(&target, root.join("d"));
                    } else {
                        let _ = std::fs::create_dir(root.join("d"));
                    }
                }
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            })
        };
        let r = f.open(Resolve::Beneath, walk);
        // A few names over and over: fresh names each round would let `d` grow faster than
        // the swapper can empty it, and the test would never end.
        let mut i = 0u32;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            let n = i % 4;
            let _ = r.create_new(format!("d/f{n}"), 0o644);
            let _ = r.replace_file(format!("d/g{n}"), 0o644, b"x");
            let _ = r.create_dir_all(format!("d/h{n}/deep"), 0o755);
            let _ = r.set_permissions("d", 0o777);
            i += 1;
        }
        swapper.join().unwrap();
    });
}

#[test]
fn fifos_and_devices_are_refused_without_being_opened() {
    both(|f, walk| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            f.root.join("fifo").as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let r = f.open(Resolve::Beneath, walk);
        // Opening a FIFO for reading would block forever: it must be refused at once.
        match r.open_read("fifo") {
            Err(Error::WrongKind {
                found: FileKind::Fifo,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(r.open_append("fifo", 0o644).is_err());
        if rustix::process::geteuid().is_root() {
            // A block device node a container made (here: a loop device's numbers).
            rustix::fs::mknodat(
                rustix::fs::CWD,
                f.root.join("disk").as_path(),
                rustix::fs::FileType::BlockDevice,
                rustix::fs::Mode::from_raw_mode(0o600),
                rustix::fs::makedev(7, 0),
            )
            .unwrap();
            match r.open_read("disk") {
                Err(Error::WrongKind {
                    found: FileKind::BlockDevice,
                    ..
                }) => {}
                other => panic!("{other:?}"),
            }
        }
    });
}

#[test]
fn replacing_a_hard_linked_file_never_writes_into_the_other_link() {
    both(|f, walk| {
        // (Outside the sentinel: a hard link across folders of one filesystem.)
        let victim = f.root.parent().unwrap().join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::hard_link(&victim, f.root.join("x")).unwrap();
        let r = f.open(Resolve::Beneath, walk);
        r.replace_file("x", 0o644, b"overwritten").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let mut appended = r.open_append("y", 0o644).unwrap();
        std::io::Write::write_all(&mut appended, b"log").unwrap();
        assert_eq!(std::fs::read_to_string(f.root.join("y")).unwrap(), "log");
    });
}

#[test]
fn copy_tree_keeps_links_as_links_and_drops_privileges() {
    both(|f, walk| {
        f.write("src/dir/a.txt", "a");
        f.write("src/suid", "#!/bin/sh\n");
        std::fs::set_permissions(
            f.root.join("src/suid"),
            std::fs::Permissions::from_mode(0o6755),
        )
        .unwrap();
        f.ln("/", "src/hostroot");
        f.ln("dir/a.txt", "src/rel");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            f.root.join("src/fifo").as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        std::fs::hard_link(f.outside.join("etc/hostname"), f.root.join("src/hl")).unwrap();
        // The destination already holds a link where the copy has a folder: the copy must
        // replace the link, not write through it.
        f.ln(&f.outside.join("cron.d").to_string_lossy(), "dst/dir");
        let r = f.open(Resolve::Beneath, walk);
        let report = r.copy_tree("src", &r, "dst").unwrap();
        assert_eq!(
            report.skipped,
            vec![(PathBuf::from("src/fifo"), FileKind::Fifo)]
        );
        assert_eq!(report.symlinks, 2);
        assert_eq!(report.files, 3);
        assert_eq!(
            std::fs::read_link(f.root.join("dst/hostroot")).unwrap(),
            Path::new("/")
        );
        assert!(
            std::fs::symlink_metadata(f.root.join("dst/dir"))
                .unwrap()
                .is_dir()
        );
        assert_eq!(
            std::fs::read_to_string(f.root.join("dst/dir/a.txt")).unwrap(),
            "a"
        );
        let mode = std::fs::metadata(f.root.join("dst/suid")).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o755, "setuid/setgid dropped");
        // A hard link is copied as a separate file (writing the copy changes nothing outside).
        assert_eq!(
            std::fs::read_to_string(f.root.join("dst/hl")).unwrap(),
            "host\n"
        );
        assert_eq!(std::fs::metadata(f.root.join("dst/hl")).unwrap().nlink(), 1);
        // Modification times survive the copy.
        assert_eq!(
            std::fs::metadata(f.root.join("src/dir/a.txt"))
                .unwrap()
                .mtime(),
            std::fs::metadata(f.root.join("dst/dir/a.txt"))
                .unwrap()
                .mtime()
        );
        // Copying into another root, whose links stay links.
        let other = tempfile::tempdir().unwrap();
        let dest = Root::open(other.path(), Resolve::Beneath).unwrap();
        r.copy_tree("src", &dest, "").unwrap();
        assert!(
            std::fs::symlink_metadata(other.path().join("hostroot"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    });
}

#[test]
fn remove_all_and_clear_dir_never_follow_and_handle_read_only_folders() {
    both(|f, walk| {
        f.write("b/deep/x", "x");
        f.ln(&f.outside_str(), "b/out");
        f.ln(&f.outside.join("etc/shadow").to_string_lossy(), "b/deep/s");
        f.write("ro/inner/file", "y");
        std::fs::set_permissions(
            f.root.join("ro/inner"),
            std::fs::Permissions::from_mode(0o555),
        )
        .unwrap();
        std::fs::set_permissions(f.root.join("ro"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        let r = f.open(Resolve::Beneath, walk);
        r.clear_dir("").unwrap();
        assert_eq!(std::fs::read_dir(&f.root).unwrap().count(), 0);
        assert!(f.root.is_dir());
        r.remove_all("never-existed").unwrap();
    });
}

#[test]
fn walk_lists_entries_without_following_links() {
    both(|f, walk| {
        f.write("a/b/c.txt", "c");
        f.write("a-c", "");
        f.ln(&f.outside_str(), "a/out");
        let r = f.open(Resolve::Beneath, walk);
        let listed: Vec<(String, FileKind)> = r
            .walk("")
            .unwrap()
            .into_iter()
            .map(|(p, k)| (p.to_string_lossy().into_owned(), k))
            .collect();
        assert_eq!(
            listed,
            [
                ("a".to_string(), FileKind::Dir),
                ("a/b".into(), FileKind::Dir),
                ("a/b/c.txt".into(), FileKind::File),
                ("a/out".into(), FileKind::Symlink),
                ("a-c".into(), FileKind::File),
            ]
        );
    });
}

#[test]
fn sub_roots_and_errors_name_root_and_path() {
    both(|f, walk| {
        f.write("builds/job/x", "x");
        f.ln("job", "builds/alias");
        let state = f.open(Resolve::NoSymlinks, walk);
        let build = state.open_dir("builds/job", Resolve::Beneath).unwrap();
        assert_eq!(build.path(), f.root.join("builds/job"));
        assert!(build.metadata("x").unwrap().is_file());
        // A build folder replaced by a link is not opened through the link.
        assert!(state.open_dir("builds/alias", Resolve::Beneath).is_err());
        let e = build.open_read("missing/file").unwrap_err();
        assert!(e.is_not_found());
        let text = e.to_string();
        assert!(text.contains("missing/file"), "{text}");
        assert!(
            text.contains(&f.root.join("builds/job").display().to_string()),
            "{text}"
        );
        match build.create_new("", 0o644) {
            Err(Error::NoName { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(state.try_metadata("builds/nothing/here").unwrap().is_none());
    });
}
