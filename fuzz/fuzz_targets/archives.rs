//! Hostile archives: an image layer (`wharf_image::unpack::apply_layer`, what `wharf pull` and
//! the sandbox executor unpack from any registry), a runner cache (`unpack_tar`, gitlab-runner's
//! `tarzstd` caches) and a job's artifacts (`unpack_zip`, what another job uploaded). Whatever
//! the archive holds (`..`, absolute names, links out and then through them, hard links to
//! anything, devices, whiteouts, long and PAX names, sizes that lie), unpacking must not panic,
//! must not hang, and must not touch anything outside its folder: a folder `outside` beside it,
//! with a file `secret` in it, stays exactly as it was, and nothing else appears beside the two.
//!
//! The archives are built from the input (entries whose names, link targets and kinds come from
//! pieces that matter, or from arbitrary bytes), or the input's bytes are the archive itself.
#![no_main]

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wharf_fs::{Resolve, Root};

/// Pieces of names and link targets; `@OUT` becomes the absolute path of `outside`.
const PIECES: [&str; 14] = [
    "a",
    "b",
    "..",
    ".",
    "",
    "/",
    "outside",
    "secret",
    ".wh.a",
    ".wh..wh..opq",
    "@OUT",
    "dev",
    "a/b",
    "../outside",
];

#[derive(Arbitrary, Debug)]
enum Input {
    Layer {
        as_root: bool,
        gzip: bool,
        entries: Vec<Entry>,
    },
    CacheTar(Vec<Entry>),
    Zip(Vec<Entry>),
    RawLayer(Vec<u8>),
    /// Arbitrary bytes after zstd's magic, as a `+zstd` layer is read.
    RawZstdLayer(Vec<u8>),
    RawZip(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Entry {
    name: Text,
    kind: Kind,
    mode: u16,
    /// A GNU long-name entry or a PAX `path` record carries the name.
    long: u8,
}

#[derive(Arbitrary, Debug)]
enum Text {
    Pieces(Vec<u8>),
    Any(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File {
        data: Vec<u8>,
        declared: Option<u64>,
    },
    Dir,
    Symlink(Text),
    HardLink(Text),
    CharDevice(u8, u8),
    Fifo,
}

fn text(t: &Text, out: &Path) -> Vec<u8> {
    match t {
        Text::Pieces(picks) => {
            let parts: Vec<String> = picks
                .iter()
                .take(8)
                .map(|p| {
                    let piece = PIECES[usize::from(*p) % PIECES.len()];
                    piece.replace("@OUT", &out.display().to_string())
                })
                .collect();
            parts.join("/").into_bytes()
        }
        Text::Any(bytes) => bytes.iter().copied().take(300).collect(),
    }
}

fn tar_of(entries: &[Entry], out: &Path) -> Vec<u8> {
    let mut tar = Vec::new();
    for e in entries.iter().take(32) {
        let name = text(&e.name, out);
        let mut header = tar::Header::new_gnu();
        let (kind, data, declared) = match &e.kind {
            Kind::File { data, declared } => (
                tar::EntryType::Regular,
                data.iter().copied().take(4096).collect::<Vec<u8>>(),
                *declared,
            ),
            Kind::Dir => (tar::EntryType::Directory, Vec::new(), None),
            Kind::Symlink(t) => {
                set_link(&mut header, &text(t, out));
                (tar::EntryType::Symlink, Vec::new(), None)
            }
            Kind::HardLink(t) => {
                set_link(&mut header, &text(t, out));
                (tar::EntryType::Link, Vec::new(), None)
            }
            Kind::CharDevice(major, minor) => {
                let _ = header.set_device_major(u32::from(*major));
                let _ = header.set_device_minor(u32::from(*minor));
                (tar::EntryType::Char, Vec::new(), None)
            }
            Kind::Fifo => (tar::EntryType::Fifo, Vec::new(), None),
        };
        // The name: in the header (cut to its 100 bytes), in a GNU long-name entry before it,
        // or in a PAX extended header before it.
        match e.long % 3 {
            1 => {
                let mut long = tar::Header::new_gnu();
                long.set_entry_type(tar::EntryType::GNULongName);
                let mut payload = name.clone();
                payload.push(0);
                long.set_size(payload.len() as u64);
                long.as_gnu_mut().expect("gnu").name[..13].copy_from_slice(b"././@LongLink");
                long.set_cksum();
                push_entry(&mut tar, &long, &payload);
            }
            2 => {
                let mut record = Vec::new();
                let body_len = b" path=".len() + name.len() + 1;
                // A record's length counts its own digits.
                let mut len = body_len + 1;
                while len.to_string().len() + body_len != len {
                    len = len.to_string().len() + body_len;
                }
                record.extend_from_slice(len.to_string().as_bytes());
                record.extend_from_slice(b" path=");
                record.extend_from_slice(&name);
                record.push(b'\n');
                let mut pax = tar::Header::new_ustar();
                pax.set_entry_type(tar::EntryType::XHeader);
                pax.set_size(record.len() as u64);
                pax.set_cksum();
                push_entry(&mut tar, &pax, &record);
            }
            _ => {}
        }
        let field = &mut header.as_old_mut().name;
        let n = name.len().min(field.len());
        field[..n].copy_from_slice(&name[..n]);
        header.set_entry_type(kind);
        header.set_mode(u32::from(e.mode) & 0o7777);
        header.set_size(declared.unwrap_or(data.len() as u64).min(1 << 20));
        header.set_cksum();
        // The header's size may lie: the data written is what the input gave.
        push_entry(&mut tar, &header, &data);
    }
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

fn set_link(header: &mut tar::Header, target: &[u8]) {
    let field = &mut header.as_old_mut().linkname;
    let n = target.len().min(field.len());
    field[..n].copy_from_slice(&target[..n]);
}

fn push_entry(tar: &mut Vec<u8>, header: &tar::Header, data: &[u8]) {
    tar.extend_from_slice(header.as_bytes());
    tar.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    tar.extend(std::iter::repeat_n(0u8, pad));
}

fn zip_of(entries: &[Entry], out: &Path) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for e in entries.iter().take(32) {
        let name = String::from_utf8_lossy(&text(&e.name, out)).into_owned();
        let options = options.unix_permissions(u32::from(e.mode) & 0o7777);
        let _ = match &e.kind {
            Kind::File { data, .. } => zip
                .start_file(name, options)
                .and_then(|()| zip.write_all(data).map_err(Into::into)),
            Kind::Dir => zip.add_directory(name, options),
            Kind::Symlink(t) | Kind::HardLink(t) => zip.add_symlink(
                name,
                String::from_utf8_lossy(&text(t, out)).into_owned(),
                options,
            ),
            Kind::CharDevice(..) | Kind::Fifo => Ok(()),
        };
    }
    zip.finish().map(|c| c.into_inner()).unwrap_or_default()
}

/// Everything under `dir` that is not under `dest`: (path, kind and size, mode, content).
fn outside_state(dir: &Path) -> Vec<(String, u64, u32, Vec<u8>)> {
    let mut seen = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in read.flatten() {
            let path = entry.path();
            if path == dir.join("dest") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let content = if meta.is_file() {
                std::fs::read(&path).unwrap_or_default()
            } else {
                Vec::new()
            };
            seen.push((
                path.display().to_string(),
                meta.size(),
                meta.mode(),
                content,
            ));
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    seen.sort();
    seen
}

fuzz_target!(|input: Input| {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("outside");
    std::fs::create_dir(&out).expect("outside");
    std::fs::write(out.join("secret"), b"do not touch").expect("secret");
    let dest = dir.path().join("dest");
    std::fs::create_dir(&dest).expect("dest");
    let before = outside_state(dir.path());
    match &input {
        Input::Layer {
            as_root,
            gzip,
            entries,
        } => {
            let tar = tar_of(entries, &out);
            let root = Root::open(&dest, Resolve::InRoot).expect("root");
            if *gzip {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&tar).expect("gzip");
                let data = gz.finish().expect("gzip");
                let _ = wharf_image::unpack::apply_layer(
                    flate2::read::MultiGzDecoder::new(&data[..]),
                    &root,
                    *as_root,
                );
            } else {
                let _ = wharf_image::unpack::apply_layer(&tar[..], &root, *as_root);
            }
        }
        Input::RawLayer(bytes) => {
            let root = Root::open(&dest, Resolve::InRoot).expect("root");
            let _ = wharf_image::unpack::apply_layer(&bytes[..], &root, true);
        }
        Input::RawZstdLayer(bytes) => {
            let root = Root::open(&dest, Resolve::InRoot).expect("root");
            let mut data = wharf_image::zstd_frames::ZSTD_MAGIC.to_vec();
            data.extend_from_slice(bytes);
            let frames = wharf_image::zstd_frames::ZstdFrames::new(&data[..]);
            let _ = wharf_image::unpack::apply_layer(frames, &root, true);
        }
        Input::CacheTar(entries) => {
            let tar = tar_of(entries, &out);
            let root = Root::open(&dest, Resolve::NoSymlinks).expect("root");
            let _ = wharf_gitlab::runner::artifacts::unpack_tar(
                &tar[..],
                Path::new("cache.tar"),
                &root,
                1 << 20,
            );
        }
        Input::Zip(_) | Input::RawZip(_) => {
            let data = match &input {
                Input::Zip(entries) => zip_of(entries, &out),
                Input::RawZip(bytes) => bytes.clone(),
                _ => unreachable!(),
            };
            let archive = dir.path().join("artifacts.zip");
            std::fs::write(&archive, &data).expect("zip");
            let root = Root::open(&dest, Resolve::NoSymlinks).expect("root");
            let _ = wharf_gitlab::runner::artifacts::unpack_zip(&archive, &root, 1 << 20);
            std::fs::remove_file(&archive).expect("remove zip");
        }
    }
    let after = outside_state(dir.path());
    assert_eq!(
        before, after,
        "something outside the archive's folder changed"
    );
});
