//! `wharf registry import`: an OCI image layout into a registry's storage, offline.
//!
//! The layout is input like a push: every file it names is opened as a regular file only (a
//! FIFO would hang the import, a device such as `/dev/zero` would never end), checked against
//! the size its descriptor gives, and streamed, so a layer of any size takes no more memory
//! than a push does. Every blob is hashed before anything is written: a bad layout imports
//! nothing. An image index (a multi-platform image, as `skopeo copy --all` writes it) is
//! imported with its children, each child manifest stored before the index that names it.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use sha2::{Digest as _, Sha256};
use wharf_registry::names::{Digest, Reference, RepoName};
use wharf_registry::storage::ByteStream;

/// `index.json` at most: one manifest's entry is a few hundred bytes.
const MAX_INDEX_BYTES: u64 = 4 << 20;
/// Read size while hashing and importing.
const CHUNK: usize = 1 << 20;

/// One blob the manifest names: its digest, and its size when the descriptor gives one.
struct Wanted {
    digest: Digest,
    size: Option<u64>,
}

/// Opens `path` for reading if it is a regular file; returns it and its length. `O_NONBLOCK`
/// so that opening a FIFO does not wait for a writer (it has no effect on a regular file).
fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening {}", path.display()))?;
    let file = std::fs::File::from(fd);
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{}: not a regular file ({}): refused, nothing imported",
            path.display(),
            wharf_fs::FileKind::from(meta.file_type()).describe()
        );
    }
    Ok((file, meta.len()))
}

/// The whole of the small file `path` (`what`, for messages), at most `limit` bytes.
fn read_small(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if len > limit {
        bail!(
            "{}: {what} of {len} bytes, more than the {limit} allowed: refused, nothing imported",
            path.display()
        );
    }
    let mut data = Vec::new();
    file.take(limit)
        .read_to_end(&mut data)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(data)
}

/// Where blob `digest` is in `layout`: a checked digest, so never outside `blobs/sha256/`.
fn blob_path(layout: &Path, digest: &Digest) -> PathBuf {
    layout.join("blobs/sha256").join(digest.hex())
}

/// A digest named in `file` (for messages); only sha256, the one the registry stores.
fn parse_digest(text: &str, layout: &Path, file: &str) -> Result<Digest> {
    Digest::parse(text)
        .map_err(|e| anyhow::anyhow!("{}: {file}: digest `{text}`: {e}", layout.display()))
}

/// Checks `wanted`'s file in `layout`: a regular file, of the size its descriptor gives, with
/// that digest (hashed as it is read, `CHUNK` at a time). Returns its length.
fn verify(layout: &Path, wanted: &Wanted) -> Result<u64> {
    let path = blob_path(layout, &wanted.digest);
    let (mut file, len) = open_regular(&path)?;
    if let Some(size) = wanted.size.filter(|&size| size != len) {
        bail!(
            "{}: blob {} is {len} bytes, the manifest says {size}: refused, nothing imported",
            layout.display(),
            wanted.digest
        );
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut read = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        read += n as u64;
        hasher.update(&buf[..n]);
    }
    let actual = Digest::from_hasher(hasher);
    if read != len || actual != wanted.digest {
        bail!(
            "{}: blob {} has digest {actual}: refused, nothing imported",
            layout.display(),
            wanted.digest
        );
    }
    Ok(len)
}

/// The `len` bytes of blob `digest` of `layout` as a stream.
async fn stream_blob(layout: &Path, digest: &Digest, len: u64) -> Result<ByteStream> {
    use tokio::io::AsyncReadExt as _;
    let (file, _) = open_regular(&blob_path(layout, digest))?;
    let file = tokio::fs::File::from_std(file).take(len);
    Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
        file, CHUNK,
    )))
}

/// How deep image indexes may nest (an index of indexes...): real layouts have one level.
const MAX_INDEX_DEPTH: usize = 4;
/// Manifests in one import at most: a multi-platform image has a few dozen (platforms and their
/// attestations). They are held in memory until written, up to 4 MiB each.
const MAX_MANIFESTS: usize = 1000;
/// The annotation of `index.json` that names an entry (`skopeo copy ... oci:DIR:REF`).
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A manifest of the layout, read and checked against its digest.
struct Manifest {
    digest: Digest,
    bytes: Vec<u8>,
    media_type: Option<String>,
}

/// What an import writes: the blobs, then the manifests in order (an index after its children).
#[derive(Default)]
struct Plan {
    blobs: Vec<Wanted>,
    manifests: Vec<Manifest>,
}

impl Plan {
    /// Reads the manifest `descriptor` names (`from` says where, for messages) and, for an
    /// image index, its children before it; adds each image manifest's blobs (once each).
    fn add(
        &mut self,
        layout: &Path,
        descriptor: &serde_json::Value,
        from: &str,
        depth: usize,
    ) -> Result<()> {
        let digest = parse_digest(
            descriptor["digest"].as_str().unwrap_or_default(),
            layout,
            from,
        )?;
        if self.manifests.iter().any(|m| m.digest == digest) {
            return Ok(()); // named twice: read and planned once
        }
        if self.manifests.len() >= MAX_MANIFESTS {
            bail!(
                "{}: {from}: more than {MAX_MANIFESTS} manifests: refused, nothing imported",
                layout.display()
            );
        }
        let limit = wharf_registry::services::Limits::default().manifest_max_bytes as u64;
        let bytes = read_small(&blob_path(layout, &digest), "manifest", limit)?;
        let actual = Digest::of(&bytes);
        if actual != digest {
            bail!(
                "{}: manifest {digest} has digest {actual}: refused, nothing imported",
                layout.display()
            );
        }
        let doc: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: manifest {digest}: not JSON", layout.display()))?;
        if let Some(children) = doc["manifests"].as_array() {
            if depth >= MAX_INDEX_DEPTH {
                bail!(
                    "{}: manifest {digest}: image indexes nested more than {MAX_INDEX_DEPTH} deep: refused",
                    layout.display()
                );
            }
            for child in children {
                self.add(layout, child, &format!("index {digest}"), depth + 1)?;
            }
        } else {
            let descriptors = doc["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(doc.get("config"));
            for d in descriptors {
                let Some(text) = d["digest"].as_str() else {
                    continue;
                };
                let blob = parse_digest(text, layout, &format!("manifest {digest}"))?;
                if !self.blobs.iter().any(|w| w.digest == blob) {
                    self.blobs.push(Wanted {
                        digest: blob,
                        size: d["size"].as_u64(),
                    });
                }
            }
        }
        let media_type = doc["mediaType"]
            .as_str()
            .or(descriptor["mediaType"].as_str())
            .map(str::to_string);
        self.manifests.push(Manifest {
            digest,
            bytes,
            media_type,
        });
        Ok(())
    }
}

/// The entry of `index.json` to import: the only one, or the one whose ref name is `wanted`.
fn pick_entry<'a>(
    index_path: &Path,
    entries: &'a [serde_json::Value],
    wanted: Option<&str>,
) -> Result<&'a serde_json::Value> {
    let ref_of = |e: &serde_json::Value| e["annotations"][REF_NAME].as_str().map(str::to_string);
    let refs = || {
        let names: Vec<String> = entries.iter().filter_map(ref_of).collect();
        if names.is_empty() {
            "none has a ref name".to_string()
        } else {
            format!("refs: {}", names.join(", "))
        }
    };
    match (wanted, entries) {
        (_, []) => bail!("{}: no manifest in it", index_path.display()),
        (None, [only]) => Ok(only),
        (None, _) => bail!(
            "{}: {} manifests ({}): choose one with --ref",
            index_path.display(),
            entries.len(),
            refs()
        ),
        (Some(name), _) => entries
            .iter()
            .find(|e| ref_of(e).as_deref() == Some(name))
            .with_context(|| {
                format!(
                    "{}: no manifest with ref {name} ({})",
                    index_path.display(),
                    refs()
                )
            }),
    }
}

/// `wharf registry import`: `layout` (its entry with ref name `layout_ref`, or its only one)
/// into `config`'s storage as `repo:reference`. An image index is imported with its children.
/// Prints what was imported.
pub(crate) async fn import(
    config: &wharf_registry::Config,
    layout: &Path,
    layout_ref: Option<&str>,
    repo: &RepoName,
    reference: &Reference,
) -> Result<()> {
    let index_path = layout.join("index.json");
    let index: serde_json::Value =
        serde_json::from_slice(&read_small(&index_path, "index", MAX_INDEX_BYTES)?)
            .with_context(|| format!("{}: not JSON", index_path.display()))?;
    let entries = index["manifests"].as_array().map_or(&[][..], Vec::as_slice);
    let entry = pick_entry(&index_path, entries, layout_ref)?;
    let mut plan = Plan::default();
    plan.add(layout, entry, "index.json", 0)?;

    // Every blob checked before anything is written. Off the async threads: it reads files.
    let layout_owned = layout.to_path_buf();
    let (blobs, lengths) = tokio::task::spawn_blocking(move || {
        let lengths: Result<Vec<u64>> = plan
            .blobs
            .iter()
            .map(|w| verify(&layout_owned, w))
            .collect();
        (plan.blobs, lengths)
    })
    .await
    .context("checking the layout's blobs")?;
    let lengths = lengths?;

    let location = config
        .storage_location()
        .map_err(anyhow::Error::msg)?
        .to_string();
    let storage = wharf_registry::open_storage(config)
        .with_context(|| format!("registry storage {location}"))?;
    let limits = wharf_registry::services::Limits::default();
    let registry = wharf_registry::services::Registry::new(storage, limits);
    for (w, len) in blobs.iter().zip(lengths) {
        let body = stream_blob(layout, &w.digest, len).await?;
        registry
            .import_blob_stream(repo, &w.digest, body)
            .await
            .with_context(|| format!("{}: importing blob {}", layout.display(), w.digest))?;
    }
    let mut children = plan.manifests;
    let Some(top) = children.pop() else {
        bail!("{}: nothing to import", layout.display());
    };
    let child_count = children.len();
    for child in children {
        registry
            .put_manifest(
                repo,
                &Reference::Digest(child.digest.clone()),
                child.media_type.as_deref(),
                child.bytes.into(),
            )
            .await
            .with_context(|| format!("{}: manifest {}", layout.display(), child.digest))?;
    }
    let pushed = registry
        .put_manifest(repo, reference, top.media_type.as_deref(), top.bytes.into())
        .await?;
    let children = if child_count == 0 {
        String::new()
    } else {
        format!(", {child_count} child manifests")
    };
    println!(
        "{location}: imported {} as {repo}:{reference} ({} blobs{children}, manifest {})",
        layout.display(),
        blobs.len(),
        pushed.digest
    );
    Ok(())
}
