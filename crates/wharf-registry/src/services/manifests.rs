//! Manifests: push (validated, with every referenced blob/manifest present), get, delete, and the
//! referrers index fed by `subject`.

use std::collections::HashSet;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::names::{Digest, Reference, RepoName, validate_tag};
use crate::services::{Registry, digests_of, keys};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1";

/// A content descriptor as it appears in manifests and the referrers index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(
        rename = "artifactType",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub urls: Option<Vec<String>>,
}

/// The fields of image manifests and indexes the registry needs; everything else is kept
/// verbatim in the stored bytes.
#[derive(Debug, Deserialize)]
struct ManifestDoc {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What a successful manifest push produced.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    /// Set when the manifest has a `subject`: answered as `OCI-Subject`.
    pub subject: Option<Digest>,
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// Layers that the spec lets a registry not hold (pulled from `urls` by clients).
fn is_non_distributable(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
        || media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
}

fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

fn parse_descriptor_digest(d: &Descriptor, what: &str) -> Result<Digest, RegistryError> {
    Digest::parse(&d.digest).map_err(|_| {
        RegistryError::ManifestInvalid(format!(
            "{what} has an invalid or unsupported digest {:?}",
            d.digest
        ))
    })
}

/// How many referrer documents a referrers listing reads at once.
const REFERRERS_READ_AHEAD: usize = 16;

impl Registry {
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PushedManifest, RegistryError> {
        if body.len() > self.limits.manifest_max_bytes {
            return Err(RegistryError::ManifestTooLarge {
                limit: self.limits.manifest_max_bytes,
            });
        }
        let digest = Digest::of(&body);
        if let Reference::Digest(expected) = reference {
            if *expected != digest {
                return Err(RegistryError::DigestInvalid(format!(
                    "manifest pushed as {expected} has digest {digest}"
                )));
            }
        }
        let doc: ManifestDoc = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::ManifestInvalid(format!("not a JSON manifest: {e}")))?;
        let header_type = content_type
            .map(essence)
            .filter(|t| !t.is_empty() && *t != "application/json");
        let media_type = match (header_type, doc.media_type.as_deref()) {
            (Some(h), Some(d)) if h != d => {
                return Err(RegistryError::ManifestInvalid(format!(
                    "Content-Type {h} does not match the manifest's mediaType {d}"
                )));
            }
            (Some(h), _) => h.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) if doc.manifests.is_some() => OCI_INDEX.to_string(),
            (None, None) => OCI_MANIFEST.to_string(),
        };
        if media_type.starts_with(DOCKER_SCHEMA1) || doc.schema_version == Some(1) {
            return Err(RegistryError::ManifestInvalid(
                "Docker image manifest schema 1 is deprecated and not accepted; push with a current client \
                 (Docker schema 2 or OCI)"
                    .to_string(),
            ));
        }
        if doc.schema_version != Some(2) {
            return Err(RegistryError::ManifestInvalid(
                "schemaVersion must be 2".to_string(),
            ));
        }

        // Validate the shape and collect what must exist before the manifest may.
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = doc.config.as_ref().ok_or_else(|| {
                    RegistryError::ManifestInvalid("an image manifest needs a config".to_string())
                })?;
                blobs.push((parse_descriptor_digest(config, "config")?, config.size));
                let layers = doc.layers.as_deref().unwrap_or_default();
                if doc.layers.is_none() {
                    return Err(RegistryError::ManifestInvalid(
                        "an image manifest needs layers".to_string(),
                    ));
                }
                for layer in layers {
                    let d = parse_descriptor_digest(layer, "a layer")?;
                    if is_non_distributable(&layer.media_type) && layer.urls.is_some() {
                        continue;
                    }
                    blobs.push((d, layer.size));
                }
            }
            OCI_INDEX | DOCKER_LIST => {
                let manifests = doc.manifests.as_ref().ok_or_else(|| {
                    RegistryError::ManifestInvalid("an index needs manifests".to_string())
                })?;
                for m in manifests {
                    children.push(parse_descriptor_digest(m, "an index entry")?);
                }
            }
            other => {
                return Err(RegistryError::ManifestInvalid(format!(
                    "unsupported manifest media type {other:?} (OCI image manifest or index, Docker schema 2 \
                     manifest or manifest list)"
                )));
            }
        }
        let subject = match &doc.subject {
            Some(s) => Some(parse_descriptor_digest(s, "subject")?),
            None => None,
        };

        // A manifest may name one blob many times (a 4 MiB manifest holds about 28,000
        // descriptors): each check below is several storage calls (on S3, requests, one a
        // write), so each distinct descriptor is checked once.
        let mut seen = HashSet::new();
        blobs.retain(|blob| seen.insert(blob.clone()));
        let mut seen = HashSet::new();
        children.retain(|child| seen.insert(child.clone()));
        for (blob, size) in &blobs {
            // A gc running now (on any replica) either deleted the blob already, and this push
            // is refused, or keeps it (see `services::gc`).
            let info = self.use_blob(blob).await?;
            let linked = self
                .storage
                .meta_info(&keys::layer_link(repo, blob))
                .await?
                .is_some();
            match info {
                Some(info) if linked => {
                    if u64::try_from(*size).ok() != Some(info.size) {
                        return Err(RegistryError::ManifestInvalid(format!(
                            "descriptor of {blob} says {size} bytes, the blob has {}",
                            info.size
                        )));
                    }
                }
                _ => {
                    return Err(RegistryError::ManifestBlobUnknown {
                        digest: blob.to_string(),
                    });
                }
            }
        }
        for child in &children {
            let unknown = || RegistryError::ManifestBlobUnknown {
                digest: child.to_string(),
            };
            let media_type = self
                .storage
                .meta_get(&keys::revision(repo, child))
                .await?
                .ok_or_else(unknown)?;
            if self.use_blob(child).await?.is_none() {
                return Err(unknown());
            }
            // Kept like the blobs above: a gc must not take the child out of the repository.
            self.keep_revision(repo, child, media_type).await?;
        }

        // Content first, then the repository's link, then the referrer entry, then the tag: a
        // crash between steps leaves nothing pointing at missing content. Stored when missing
        // (or just taken by a gc): a blob written now is young, so no gc takes it.
        if self.use_blob(&digest).await?.is_none() {
            self.storage.blob_put(&digest, body.clone()).await?;
        }
        self.keep_revision(repo, &digest, Bytes::from(media_type.clone()))
            .await?;
        if let (Some(subject), Some(_)) = (&subject, &doc.subject) {
            let artifact_type = doc.artifact_type.clone().or_else(|| {
                doc.config
                    .as_ref()
                    .map(|c| c.media_type.clone())
                    .filter(|_| media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST)
            });
            let descriptor = Descriptor {
                media_type: media_type.clone(),
                digest: digest.to_string(),
                size: body.len() as i64,
                artifact_type,
                annotations: doc.annotations.clone(),
                urls: None,
            };
            let json = serde_json::to_vec(&descriptor)
                .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
            self.storage
                .meta_put(&keys::referrer(repo, subject, &digest), Bytes::from(json))
                .await?;
        }
        if let Reference::Tag(tag) = reference {
            validate_tag(tag)?;
            self.storage
                .meta_put(&keys::tag(repo, tag), Bytes::from(digest.to_string()))
                .await?;
        }
        Ok(PushedManifest { digest, subject })
    }

    /// Resolves a reference to a manifest of this repository.
    pub async fn stat_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest, RegistryError> {
        let unknown = || RegistryError::ManifestUnknown {
            reference: reference.to_string(),
        };
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(tag) => self.tag_target(repo, tag).await?.ok_or_else(unknown)?,
        };
        let media_type = self
            .storage
            .meta_get(&keys::revision(repo, &digest))
            .await?
            .ok_or_else(unknown)?;
        let info = self.storage.blob_info(&digest).await?.ok_or_else(unknown)?;
        Ok(StoredManifest {
            digest,
            media_type: String::from_utf8_lossy(&media_type).into_owned(),
            size: info.size,
        })
    }

    pub async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(StoredManifest, Bytes), RegistryError> {
        let stored = self.stat_manifest(repo, reference).await?;
        let body = self
            .storage
            .blob_read_small(&stored.digest, self.limits.manifest_max_bytes as u64)
            .await?;
        Ok((stored, body))
    }

    /// Deletes a tag (by tag), or a manifest and every tag pointing at it (by digest).
    pub async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        let unknown = || RegistryError::ManifestUnknown {
            reference: reference.to_string(),
        };
        match reference {
            Reference::Tag(tag) => {
                if !self.storage.meta_delete(&keys::tag(repo, tag)).await? {
                    return Err(unknown());
                }
            }
            Reference::Digest(digest) => {
                if self
                    .storage
                    .meta_info(&keys::revision(repo, digest))
                    .await?
                    .is_none()
                {
                    return Err(unknown());
                }
                for tag in self.storage.meta_list(&keys::tags(repo)).await? {
                    if self.tag_target(repo, &tag).await?.as_ref() == Some(digest) {
                        self.storage.meta_delete(&keys::tag(repo, &tag)).await?;
                    }
                }
                self.remove_revision(repo, digest).await?;
            }
        }
        Ok(())
    }

    /// Takes manifest `digest` out of `repo` (its revision and referrer entry), leaving tags
    /// alone: the caller has dealt with them.
    pub(crate) async fn remove_revision(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let body = self
            .storage
            .blob_read_small(digest, self.limits.manifest_max_bytes as u64)
            .await
            .ok();
        let subject = body
            .and_then(|b| serde_json::from_slice::<ManifestDoc>(&b).ok())
            .and_then(|doc| doc.subject)
            .and_then(|s| Digest::parse(&s.digest).ok());
        if let Some(subject) = subject {
            self.storage
                .meta_delete(&keys::referrer(repo, &subject, digest))
                .await?;
        }
        self.storage
            .meta_delete(&keys::revision(repo, digest))
            .await?;
        Ok(())
    }

    /// The manifests of `repo` whose `subject` is `subject`, optionally only of one artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let referrers = digests_of(
            self.storage
                .meta_list(&keys::referrers(repo, subject))
                .await?,
        );
        // One small document per referrer: read REFERRERS_READ_AHEAD at once (on S3 each is a
        // request), in listing order.
        let documents: Vec<Option<Bytes>> = futures_util::stream::iter(referrers)
            .map(|referrer| async move {
                self.storage
                    .meta_get(&keys::referrer(repo, subject, &referrer))
                    .await
            })
            .buffered(REFERRERS_READ_AHEAD)
            .try_collect()
            .await?;
        Ok(documents
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_slice::<Descriptor>(&json).ok())
            .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
            .collect())
    }

    /// The digests a manifest refers to (config, layers, child manifests, subject): for gc.
    pub(crate) fn manifest_references(body: &[u8]) -> Vec<Digest> {
        let Ok(doc) = serde_json::from_slice::<ManifestDoc>(body) else {
            return Vec::new();
        };
        doc.config
            .iter()
            .chain(doc.layers.iter().flatten())
            .chain(doc.manifests.iter().flatten())
            .filter_map(|d| Digest::parse(&d.digest).ok())
            .collect()
    }

    /// Whether a stored manifest is an index (its references are manifests, not blobs).
    pub(crate) fn manifest_children(body: &[u8]) -> Vec<Digest> {
        let Ok(doc) = serde_json::from_slice::<ManifestDoc>(body) else {
            return Vec::new();
        };
        doc.manifests
            .iter()
            .flatten()
            .filter_map(|d| Digest::parse(&d.digest).ok())
            .collect()
    }
}
