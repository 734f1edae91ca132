//! Pulling an image into the store: credentials, pull policies, the manifest (and platform),
//! then every missing layer fetched concurrently, verified while it streams, and unpacked as it
//! arrives; layers are published bottom first (a hard link to a lower layer needs it there).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, mpsc};
use wharf_oci::{CredentialSources, ImageRef};

use crate::client::RegistryClient;
use crate::error::{ImageError, store_err};
use crate::manifest::{self, Descriptor, Fetched, ImageConfig, ManifestProblem, Platform};
use crate::store::{ImageRecord, LayerMeta, LayerRecord, Store};
use crate::unpack::{self, LayerReport, LowerLink};
use crate::zstd_frames::{ZSTD_MAGIC, ZstdFrames};

/// The most layers an image may stack: Docker's limit (moby's `maxLayerDepth`), past which it
/// answers "max depth exceeded".
pub const MAX_LAYERS: usize = 125;

/// GitLab's pull policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Always ask the registry (one manifest request when everything is present).
    Always,
    /// Use the local image when there is one, else pull.
    IfNotPresent,
    /// Never pull: the image must be present.
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::IfNotPresent => "if-not-present",
            PullPolicy::Never => "never",
        }
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Tried in order (GitLab's fallback list); empty means `always`.
    pub policies: Vec<PullPolicy>,
    pub platform: Platform,
    /// Plain http / unverified TLS for a non-loopback registry.
    pub insecure: bool,
    /// Layers downloaded at once.
    pub concurrency: usize,
    pub sources: CredentialSources,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            policies: vec![PullPolicy::Always],
            platform: Platform::linux_amd64(),
            insecure: false,
            concurrency: 4,
            sources: CredentialSources::default(),
        }
    }
}

/// What happens during a pull, for the caller's log or progress display. No secrets.
#[derive(Debug, Clone)]
pub enum PullEvent {
    /// `Authenticating with credentials from <source>`.
    Credentials(String),
    Warning(String),
    Info(String),
    /// The image manifest's digest.
    Manifest(String),
    LayerStart {
        digest: String,
        size: u64,
    },
    LayerProgress {
        digest: String,
        bytes: u64,
    },
    LayerDone {
        digest: String,
        report: LayerReport,
    },
    LayerPresent {
        digest: String,
    },
}

pub type OnEvent<'a> = &'a (dyn Fn(PullEvent) + Send + Sync);

/// Make `image` present in `store` under the pull policies; returns its record.
pub async fn pull(
    store: &Store,
    image: &str,
    opts: &PullOptions,
    on_event: OnEvent<'_>,
) -> Result<ImageRecord, ImageError> {
    let reference = ImageRef::parse(image)?;
    let key = record_key(&reference);
    let policies = if opts.policies.is_empty() {
        vec![PullPolicy::Always]
    } else {
        opts.policies.clone()
    };
    let local = store.image(&key).filter(|r| store.is_complete(r));
    let mut last_error = None;
    for (attempt, policy) in policies.iter().enumerate() {
        if attempt > 0 {
            on_event(PullEvent::Info(format!(
                "Attempt #{}: Trying \"{}\" pull policy",
                attempt + 1,
                policy.as_str()
            )));
        }
        let result = match (policy, &local) {
            (PullPolicy::IfNotPresent, Some(record)) => {
                on_event(PullEvent::Info(
                    "Using locally found image version due to \"if-not-present\" pull policy"
                        .into(),
                ));
                Ok(record.clone())
            }
            (PullPolicy::Never, Some(record)) => Ok(record.clone()),
            (PullPolicy::Never, None) => Err(ImageError::NotPresent {
                image: image.to_owned(),
            }),
            _ => {
                pull_from_registry(
                    store,
                    image,
                    &reference,
                    &key,
                    local.as_ref(),
                    opts,
                    on_event,
                )
                .await
            }
        };
        match result {
            Ok(record) => return Ok(record),
            Err(e) if attempt + 1 < policies.len() => {
                on_event(PullEvent::Warning(format!(
                    "Failed to pull image with policy \"{}\": {e}",
                    policy.as_str()
                )));
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(ImageError::NotPresent {
        image: image.to_owned(),
    }))
}

/// `registry/repository:tag` (or `@digest`): the key of an image record.
pub fn record_key(reference: &ImageRef) -> String {
    let base = reference.registry_path();
    match (&reference.digest, &reference.tag) {
        (Some(d), _) => format!("{base}@{d}"),
        (None, Some(t)) => format!("{base}:{t}"),
        (None, None) => format!("{base}:latest"),
    }
}

async fn pull_from_registry(
    store: &Store,
    image: &str,
    reference: &ImageRef,
    key: &str,
    local: Option<&ImageRecord>,
    opts: &PullOptions,
    on_event: OnEvent<'_>,
) -> Result<ImageRecord, ImageError> {
    // Credential helpers are programs: off the async workers.
    let resolution = {
        let reference = reference.clone();
        let sources = opts.sources.clone();
        tokio::task::spawn_blocking(move || wharf_oci::resolve(&reference, &sources))
            .await
            .unwrap_or_default()
    };
    for w in &resolution.warnings {
        on_event(PullEvent::Warning(w.clone()));
    }
    if let Some(found) = &resolution.found {
        on_event(PullEvent::Credentials(found.source.clone()));
    }
    let client = RegistryClient::new(
        image,
        reference.clone(),
        resolution,
        opts.insecure,
        local.and_then(|r| r.endpoint.clone()),
    )?;
    let tag_or_digest = reference
        .digest
        .clone()
        .or_else(|| reference.tag.clone())
        .unwrap_or_else(|| "latest".into());
    let (mut manifest_digest, mut body, mut content_type) =
        fetch_manifest(&client, &tag_or_digest, reference.digest.as_deref()).await?;
    let mut parsed = parse_manifest(&client, &content_type, &body)?;
    if let Fetched::Index(entries) = &parsed {
        let chosen = manifest::select_platform(entries, &opts.platform).ok_or_else(|| {
            ImageError::NoPlatform {
                image: image.to_owned(),
                wanted: opts.platform.to_string(),
                available: entries
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })?;
        let digest = chosen.digest.clone();
        (manifest_digest, body, content_type) =
            fetch_manifest(&client, &digest, Some(&digest)).await?;
        parsed = parse_manifest(&client, &content_type, &body)?;
    }
    let Fetched::Image { config, layers } = parsed else {
        return Err(ImageError::Protocol {
            image: image.to_owned(),
            registry: reference.registry.clone(),
            what: "manifest".into(),
            detail: "an index inside an index".into(),
        });
    };
    // A stack deeper than Docker's is refused before anything is fetched: each layer is a
    // folder of its own and a lower layer of every mount, so a registry that sends thousands
    // of layers (a 4 MiB manifest holds about 28,000) would fill the disk and the mount table.
    if layers.len() > MAX_LAYERS {
        return Err(ImageError::Protocol {
            image: image.to_owned(),
            registry: reference.registry.clone(),
            what: "manifest".into(),
            detail: format!(
                "{} layers, more than the {MAX_LAYERS} an image may stack (Docker refuses it too: \
                 \"max depth exceeded\"); rebuild the image with fewer layers, e.g. by merging \
                 RUN steps or with a multi-stage build",
                layers.len()
            ),
        });
    }
    on_event(PullEvent::Manifest(manifest_digest.clone()));
    let endpoint = client.base().await;
    if let Some(record) = local
        && record.manifest_digest == manifest_digest
    {
        // Up to date: one manifest round trip.
        return Ok(record.clone());
    }

    // Both may wait (for a prune, for another pull of this image): off the async workers.
    let (reaped, _shared, _image_lock) = {
        let store = store.clone();
        let digest = manifest_digest.clone();
        tokio::task::spawn_blocking(move || {
            // Work starts: what killed pulls left goes first (unless a pull runs now).
            let reaped = store.reap_tmp()?;
            let shared = store.lock_shared()?;
            Ok::<_, ImageError>((reaped, shared, store.lock_image(&digest)?))
        })
        .await
        .map_err(|e| join_error(image, e))??
    };
    if let Some(n @ 1..) = reaped {
        on_event(PullEvent::Info(format!(
            "Removed {n} leftover(s) of interrupted pulls from {}",
            store.home().join("tmp").display()
        )));
    }
    if !store.has_blob(&manifest_digest) {
        store.write_blob(&manifest_digest, &body)?;
    }
    let config_bytes = if store.has_blob(&config.digest) {
        store.read_blob(&config.digest)?
    } else {
        let data = fetch_small_blob(&client, &config.digest).await?;
        store.write_blob(&config.digest, &data)?;
        data
    };
    let config_doc: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| ImageError::Protocol {
            image: image.to_owned(),
            registry: reference.registry.clone(),
            what: "image config".into(),
            detail: e.to_string(),
        })?;
    let diff_ids = config_doc.rootfs.diff_ids;
    if diff_ids.len() != layers.len() {
        return Err(ImageError::Protocol {
            image: image.to_owned(),
            registry: reference.registry.clone(),
            what: "image config".into(),
            detail: format!(
                "{} layers in the manifest but {} diff ids in the config",
                layers.len(),
                diff_ids.len()
            ),
        });
    }
    let chain_ids = manifest::chain_ids(&diff_ids);
    let records: Vec<LayerRecord> = layers
        .iter()
        .zip(diff_ids.iter().zip(&chain_ids))
        .map(|(d, (diff_id, chain_id))| LayerRecord {
            digest: d.digest.clone(),
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
            size: d.size,
        })
        .collect();
    fetch_layers(
        store,
        &client,
        &layers,
        &records,
        opts.concurrency,
        on_event,
    )
    .await?;
    let record = ImageRecord {
        reference: key.to_owned(),
        manifest_digest,
        config_digest: config.digest.clone(),
        layers: records,
        pulled_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        endpoint,
    };
    store.save_image(&record)?;
    Ok(record)
}

fn join_error(image: &str, e: tokio::task::JoinError) -> ImageError {
    ImageError::Layer {
        image: image.to_owned(),
        digest: String::new(),
        detail: format!("a worker failed: {e}"),
    }
}

fn parse_manifest(
    client: &RegistryClient,
    content_type: &str,
    body: &[u8],
) -> Result<Fetched, ImageError> {
    manifest::parse(content_type, body).map_err(|p| match p {
        ManifestProblem::Schema1 => ImageError::Schema1 {
            image: client.image().to_owned(),
        },
        ManifestProblem::Invalid(detail) => ImageError::Protocol {
            image: client.image().to_owned(),
            registry: client.registry().to_owned(),
            what: "manifest".into(),
            detail,
        },
    })
}

/// The manifest at `tag_or_digest`: `(digest, body, content type)`, checked against `expected`.
async fn fetch_manifest(
    client: &RegistryClient,
    tag_or_digest: &str,
    expected: Option<&str>,
) -> Result<(String, Vec<u8>, String), ImageError> {
    let fetch = client
        .get(
            &format!("manifests/{tag_or_digest}"),
            &[("Accept", manifest::ACCEPT.to_owned())],
        )
        .await?;
    let content_type = fetch
        .response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = read_body(client, fetch, "manifest", MAX_MANIFEST_BYTES).await?;
    let digest = manifest::sha256_digest(&body);
    if let Some(expected) = expected
        && expected != digest
    {
        return Err(ImageError::DigestMismatch {
            image: client.image().to_owned(),
            registry: client.registry().to_owned(),
            what: "the manifest".into(),
            expected: expected.to_owned(),
            actual: digest,
        });
    }
    Ok((digest, body, content_type))
}

/// The most a manifest may weigh, as registries (Docker's distribution, wharf's) accept.
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// The most an image config may weigh: a few KiB usually, far more than any real one.
const MAX_CONFIG_BYTES: usize = 16 << 20;

/// A whole (small) response body, `what` of at most `limit` bytes; a broken transfer is a
/// network error naming the URL, and a longer body is refused without reading it all (the
/// registry decides how long it is).
async fn read_body(
    client: &RegistryClient,
    mut fetch: crate::client::Fetch,
    what: &str,
    limit: usize,
) -> Result<Vec<u8>, ImageError> {
    match wharf_oci::body_up_to(&mut fetch.response, limit).await {
        Ok(Some(body)) => Ok(body),
        Ok(None) => Err(ImageError::Protocol {
            registry: client.registry().to_owned(),
            what: what.to_owned(),
            image: client.image().to_owned(),
            detail: format!("{} is larger than {} MiB: refused", fetch.url, limit >> 20),
        }),
        Err(e) => Err(ImageError::Network {
            image: client.image().to_owned(),
            registry: client.registry().to_owned(),
            detail: format!("{}: {}", fetch.url, wharf_oci::describe_http_error(&e)),
        }),
    }
}

async fn fetch_small_blob(client: &RegistryClient, digest: &str) -> Result<Vec<u8>, ImageError> {
    let fetch = client.get(&format!("blobs/{digest}"), &[]).await?;
    let body = read_body(client, fetch, "image config", MAX_CONFIG_BYTES).await?;
    let actual = manifest::sha256_digest(&body);
    if actual != digest {
        return Err(ImageError::DigestMismatch {
            image: client.image().to_owned(),
            registry: client.registry().to_owned(),
            what: "the image config".into(),
            expected: digest.to_owned(),
            actual,
        });
    }
    Ok(body)
}

/// One layer unpacked into a temporary folder, not yet published.
struct Unpacked {
    temp: PathBuf,
    report: LayerReport,
    links: Vec<LowerLink>,
}

async fn fetch_layers(
    store: &Store,
    client: &RegistryClient,
    layers: &[Descriptor],
    records: &[LayerRecord],
    concurrency: usize,
    on_event: OnEvent<'_>,
) -> Result<(), ImageError> {
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut pending = Vec::new();
    for (desc, record) in layers.iter().zip(records) {
        if store.has_layer(&record.chain_id) {
            on_event(PullEvent::LayerPresent {
                digest: desc.digest.clone(),
            });
            pending.push(None);
            continue;
        }
        let semaphore = semaphore.clone();
        pending.push(Some(async move {
            let _permit = semaphore.acquire().await;
            fetch_layer(store, client, desc, &record.diff_id, on_event).await
        }));
    }
    // Run them all at once (bounded by the semaphore), publish in order.
    let mut futures: Vec<_> = pending.into_iter().map(|f| f.map(Box::pin)).collect();
    let mut results: Vec<Option<Result<Unpacked, ImageError>>> =
        (0..futures.len()).map(|_| None).collect();
    {
        let mut running: Vec<_> = futures
            .iter_mut()
            .enumerate()
            .filter_map(|(i, f)| f.as_mut().map(|f| (i, f)))
            .collect();
        let joined = join_all_indexed(&mut running).await;
        for (i, r) in joined {
            results[i] = Some(r);
        }
    }
    let as_root = crate::is_root();
    for (i, record) in records.iter().enumerate() {
        let Some(result) = results[i].take() else {
            continue;
        };
        let mut unpacked = match result {
            Ok(u) => u,
            Err(e) => {
                // Clean up every unpublished folder before failing.
                for r in results
                    .iter_mut()
                    .skip(i + 1)
                    .filter_map(Option::take)
                    .flatten()
                {
                    let _ = crate::store::remove_tree(&r.temp);
                }
                return Err(e);
            }
        };
        if !unpacked.links.is_empty() {
            let layer_root = wharf_fs::Root::open(&unpacked.temp, wharf_fs::Resolve::InRoot)?;
            let mut lowers = Vec::new();
            for lower in &records[..i] {
                lowers.push(wharf_fs::Root::open(
                    store.layer_dir(&lower.chain_id)?,
                    wharf_fs::Resolve::InRoot,
                )?);
            }
            unpack::copy_up_links(
                &layer_root,
                &lowers,
                &unpacked.links,
                as_root,
                &mut unpacked.report,
            )
            .map_err(|e| ImageError::Layer {
                image: client.image().to_owned(),
                digest: record.digest.clone(),
                detail: e.to_string(),
            })?;
        }
        let meta = LayerMeta {
            diff_id: record.diff_id.clone(),
            report: unpacked.report.clone(),
        };
        store.publish_layer(&unpacked.temp, &record.chain_id, &meta)?;
        on_event(PullEvent::LayerDone {
            digest: record.digest.clone(),
            report: unpacked.report,
        });
    }
    Ok(())
}

/// Await every future, returning `(index, output)` pairs.
async fn join_all_indexed<F, T>(
    futures: &mut [(usize, &mut std::pin::Pin<Box<F>>)],
) -> Vec<(usize, T)>
where
    F: std::future::Future<Output = T>,
{
    let mut out = Vec::new();
    let mut done = vec![false; futures.len()];
    std::future::poll_fn(|cx| {
        for (k, (i, f)) in futures.iter_mut().enumerate() {
            if done[k] {
                continue;
            }
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                done[k] = true;
                out.push((*i, v));
            }
        }
        if done.iter().all(|d| *d) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out
}

/// Download one layer blob into the store while unpacking it into a temporary folder.
async fn fetch_layer(
    store: &Store,
    client: &RegistryClient,
    desc: &Descriptor,
    diff_id: &str,
    on_event: OnEvent<'_>,
) -> Result<Unpacked, ImageError> {
    let layer_error = |detail: String| ImageError::Layer {
        image: client.image().to_owned(),
        digest: desc.digest.clone(),
        detail,
    };
    on_event(PullEvent::LayerStart {
        digest: desc.digest.clone(),
        size: desc.size,
    });
    let temp_dir = store.temp_path("layer");
    std::fs::create_dir(&temp_dir).map_err(store_err(&temp_dir, "creating the folder"))?;
    let (tx, rx) = mpsc::channel::<bytes_chunk::Chunk>(32);
    let unpacker = {
        let temp_dir = temp_dir.clone();
        tokio::task::spawn_blocking(move || unpack_stream(ChannelReader::new(rx), &temp_dir))
    };
    let downloaded = if store.has_blob(&desc.digest) {
        feed_from_file(store, &desc.digest, tx).await
    } else {
        download(store, client, desc, tx, on_event).await
    };
    let unpacked = unpacker.await.map_err(|e| join_error(client.image(), e))?;
    let cleanup = |e: ImageError| {
        let _ = crate::store::remove_tree(&temp_dir);
        e
    };
    downloaded.map_err(cleanup)?;
    let (report, links, actual_diff_id) = unpacked.map_err(|e| cleanup(layer_error(e)))?;
    if actual_diff_id != diff_id {
        return Err(cleanup(ImageError::DigestMismatch {
            image: client.image().to_owned(),
            registry: client.registry().to_owned(),
            what: format!("the uncompressed layer {}", desc.digest),
            expected: diff_id.to_owned(),
            actual: actual_diff_id,
        }));
    }
    Ok(Unpacked {
        temp: temp_dir,
        report,
        links,
    })
}

mod bytes_chunk {
    /// One piece of a blob on its way to the unpacker.
    pub type Chunk = Vec<u8>;
}

async fn feed_from_file(
    store: &Store,
    digest: &str,
    tx: mpsc::Sender<bytes_chunk::Chunk>,
) -> Result<(), ImageError> {
    let path = store.blob_path(digest)?;
    let mut file = std::fs::File::open(&path).map_err(store_err(&path, "reading the blob"))?;
    loop {
        let mut buf = vec![0u8; 1 << 20];
        let n = file
            .read(&mut buf)
            .map_err(store_err(&path, "reading the blob"))?;
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        if tx.send(buf).await.is_err() {
            return Ok(()); // the unpacker stopped: its error says why
        }
    }
}

/// Stream the blob from the registry into the store and to the unpacker, verifying its digest;
/// after a broken connection, resume with `Range` (3 times).
async fn download(
    store: &Store,
    client: &RegistryClient,
    desc: &Descriptor,
    tx: mpsc::Sender<bytes_chunk::Chunk>,
    on_event: OnEvent<'_>,
) -> Result<(), ImageError> {
    use std::io::Write as _;
    let (temp, mut file) = store.temp_file()?;
    let mut hasher = Sha256::new();
    let mut offset: u64 = 0;
    let mut resumes = 0;
    let mut unpacker_failed = false;
    let mut fetch = client.get(&format!("blobs/{}", desc.digest), &[]).await?;
    let result = loop {
        match fetch.response.chunk().await {
            // The manifest gives the size (containerd refuses a blob of another size too);
            // without this, a registry sending an endless layer would fill the disk. A size of
            // 0 is "not given", as for containerd.
            Ok(Some(chunk)) if desc.size > 0 && offset + chunk.len() as u64 > desc.size => {
                break Err(ImageError::Protocol {
                    image: client.image().to_owned(),
                    registry: client.registry().to_owned(),
                    what: format!("layer {}", desc.digest),
                    detail: format!(
                        "{}: more than the {} bytes the manifest gives for it: refused, nothing kept",
                        fetch.url, desc.size
                    ),
                });
            }
            Ok(Some(chunk)) => {
                hasher.update(&chunk);
                if let Err(e) = file.write_all(&chunk) {
                    break Err(store_err(&temp, "writing the blob")(e));
                }
                offset += chunk.len() as u64;
                on_event(PullEvent::LayerProgress {
                    digest: desc.digest.clone(),
                    bytes: offset,
                });
                // After the unpacker failed, the rest is still read and hashed: bytes damaged
                // on the way are a digest mismatch; a layer that arrives whole and still
                // cannot be unpacked (or a full disk) is the unpacker's error to report.
                if !unpacker_failed && tx.send(chunk.to_vec()).await.is_err() {
                    unpacker_failed = true;
                }
            }
            Ok(None) => break Ok(()),
            Err(e) if resumes < 3 => {
                resumes += 1;
                on_event(PullEvent::Warning(format!(
                    "layer {}: connection broke after {offset} bytes ({}); resuming",
                    desc.digest,
                    wharf_oci::describe_http_error(&e)
                )));
                let next = client
                    .get(
                        &format!("blobs/{}", desc.digest),
                        &[("Range", format!("bytes={offset}-"))],
                    )
                    .await?;
                if next.response.status().as_u16() != 206 {
                    break Err(ImageError::Network {
                        image: client.image().to_owned(),
                        registry: client.registry().to_owned(),
                        detail: format!(
                            "{}: the registry does not resume downloads (HTTP {} to a Range request)",
                            next.url,
                            next.response.status().as_u16()
                        ),
                    });
                }
                fetch = next;
            }
            Err(e) => {
                break Err(ImageError::Network {
                    image: client.image().to_owned(),
                    registry: client.registry().to_owned(),
                    detail: format!("{}: {}", fetch.url, wharf_oci::describe_http_error(&e)),
                });
            }
        }
    };
    drop(tx);
    drop(file);
    let finish = result.and_then(|()| {
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != desc.digest {
            return Err(ImageError::DigestMismatch {
                image: client.image().to_owned(),
                registry: client.registry().to_owned(),
                what: format!("layer {}", desc.digest),
                expected: desc.digest.clone(),
                actual,
            });
        }
        if unpacker_failed {
            // Its error follows (`fetch_layer`); the blob of a layer that failed is not kept.
            let _ = std::fs::remove_file(&temp);
            return Ok(());
        }
        store.publish_blob(&temp, &desc.digest)
    });
    if finish.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    finish
}

/// Decompress (gzip, or none) and apply; returns the report, the links to lower layers and the
/// diff id (sha256 of the uncompressed stream).
fn unpack_stream(
    reader: ChannelReader,
    dir: &std::path::Path,
) -> Result<(LayerReport, Vec<LowerLink>, String), String> {
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let magic = reader.fill_buf().map_err(|e| e.to_string())?.to_vec();
    let decoded: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if magic.starts_with(&ZSTD_MAGIC) {
        Box::new(ZstdFrames::new(reader))
    } else {
        Box::new(reader)
    };
    let mut hashing = HashingReader {
        inner: decoded,
        hasher: Sha256::new(),
    };
    let root = wharf_fs::Root::open(dir, wharf_fs::Resolve::InRoot).map_err(|e| e.to_string())?;
    let (report, links) =
        unpack::apply_layer(&mut hashing, &root, crate::is_root()).map_err(|e| e.to_string())?;
    // Trailing bytes after the tar's end blocks are part of the diff id too.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| e.to_string())?;
    let diff_id = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
    Ok((report, links, diff_id))
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The blocking side of the download channel.
struct ChannelReader {
    rx: mpsc::Receiver<bytes_chunk::Chunk>,
    current: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<bytes_chunk::Chunk>) -> Self {
        ChannelReader {
            rx,
            current: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.current.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
