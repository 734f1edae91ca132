//! Manifests, indexes and image configs: the OCI and Docker schema 2 media types, platform
//! selection in an index, and chain ids.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header of a manifest request: every type wharf pulls.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// `os/arch[/variant]`, e.g. `linux/amd64`, `linux/arm64/v8`.
    pub fn parse(text: &str) -> Option<Platform> {
        let mut parts = text.split('/');
        let os = parts.next().filter(|s| !s.is_empty())?;
        let architecture = parts.next().filter(|s| !s.is_empty())?;
        let variant = parts.next().map(str::to_owned);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            architecture: architecture.into(),
            os: os.into(),
            variant,
        })
    }

    pub fn linux_amd64() -> Platform {
        Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        }
    }
}

/// What a manifest request returned.
#[derive(Debug)]
pub enum Fetched {
    /// An index / manifest list: pick one entry.
    Index(Vec<Descriptor>),
    /// An image manifest: its config and layers, bottom first.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// Why a manifest document cannot be used (the caller names the image and registry).
#[derive(Debug, PartialEq, Eq)]
pub enum ManifestProblem {
    Schema1,
    Invalid(String),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "schemaVersion", default)]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    manifests: Option<Vec<Descriptor>>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
}

/// Parse a manifest document, by its `Content-Type` (or its own `mediaType`, or its shape).
pub fn parse(content_type: &str, body: &[u8]) -> Result<Fetched, ManifestProblem> {
    let content_type = content_type.split(';').next().unwrap_or_default().trim();
    if matches!(content_type, DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED) {
        return Err(ManifestProblem::Schema1);
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| {
        ManifestProblem::Invalid(format!(
            "not a manifest (JSON error at line {} column {})",
            e.line(),
            e.column()
        ))
    })?;
    if raw.schema_version == 1 {
        return Err(ManifestProblem::Schema1);
    }
    let media_type = raw.media_type.as_deref().unwrap_or(content_type);
    let is_index = matches!(media_type, OCI_INDEX | DOCKER_LIST)
        || (raw.manifests.is_some() && raw.layers.is_none());
    if is_index {
        return Ok(Fetched::Index(raw.manifests.unwrap_or_default()));
    }
    match (raw.config, raw.layers) {
        (Some(config), Some(layers)) => Ok(Fetched::Image { config, layers }),
        _ => Err(ManifestProblem::Invalid(format!(
            "a manifest without config or layers (media type `{media_type}`)"
        ))),
    }
}

/// The entry of an index for `wanted`: same os and architecture, and the variant when one is
/// asked for (`linux/arm64` takes any arm64 variant, preferring `v8`).
pub fn select_platform<'a>(entries: &'a [Descriptor], wanted: &Platform) -> Option<&'a Descriptor> {
    let matches = |d: &&Descriptor| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == wanted.os
                && p.architecture == wanted.architecture
                && (wanted.variant.is_none() || p.variant == wanted.variant)
        })
    };
    let mut found: Vec<&Descriptor> = entries.iter().filter(matches).collect();
    found.sort_by_key(|d| {
        let variant = d.platform.as_ref().and_then(|p| p.variant.as_deref());
        match variant {
            None => 0,
            Some("v8") => 1,
            Some(_) => 2,
        }
    });
    found.first().copied()
}

/// The parts of an image config wharf reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The chain ids of a stack of layers (OCI image spec): the first is its diff id, each next one
/// `sha256(parent_chain_id + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id.clone(),
            Some(parent) => sha256_digest(format!("{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The hex part of a `sha256:<64 hex>` digest, or `None` for any other form (only sha256 is
/// stored; the hex is used as a file name, so it is checked strictly).
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(platform: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{platform}"),
            size: 1,
            platform: Platform::parse(platform),
        }
    }

    #[test]
    fn selects_the_platform() {
        let entries = [
            desc("linux/arm64/v8"),
            desc("linux/amd64"),
            desc("windows/amd64"),
        ];
        let amd = select_platform(&entries, &Platform::linux_amd64()).expect("amd64");
        assert_eq!(amd.digest, "sha256:linux/amd64");
        let arm =
            select_platform(&entries, &Platform::parse("linux/arm64").expect("p")).expect("arm64");
        assert_eq!(arm.digest, "sha256:linux/arm64/v8");
        assert!(select_platform(&entries, &Platform::parse("linux/s390x").expect("p")).is_none());
    }

    #[test]
    fn refuses_schema1() {
        let body = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert_eq!(
            parse("application/json", body).err(),
            Some(ManifestProblem::Schema1)
        );
        assert_eq!(
            parse(DOCKER_SCHEMA1_SIGNED, b"{}").err(),
            Some(ManifestProblem::Schema1)
        );
    }

    #[test]
    fn parses_index_and_manifest() {
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"x","digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert!(matches!(parse(OCI_INDEX, index), Ok(Fetched::Index(v)) if v.len() == 1));
        let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"c","digest":"sha256:c","size":2},"layers":[{"mediaType":"l","digest":"sha256:l","size":3}]}"#;
        assert!(
            matches!(parse(DOCKER_MANIFEST, manifest), Ok(Fetched::Image { layers, .. }) if layers.len() == 1)
        );
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(sha256_hex(&ids[1]).is_some());
        assert!(sha256_hex("sha256:../../etc").is_none());
    }
}
