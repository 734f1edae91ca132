//! The OCI distribution-spec conformance suite, v1.1.1, re-expressed in Rust against the
//! in-process router. One concern, long because the official suite is: its cases stay together
//! and in its order, so the two can be compared side by side.
//!
//! The official suite (`conformance/` in opencontainers/distribution-spec: `01_pull_test.go`,
//! `02_push_test.go`, `03_discovery_test.go`, `04_management_test.go`, fixtures in `setup.go`) is
//! Go + ginkgo v2 and cannot be built offline here. This file walks the same cases in the same
//! order, each recorded under its official title, sending the same requests and accepting the same
//! statuses. Where the official suite accepts several answers (200 or 202, "2xx or 405"...) and
//! the spec prefers one, we assert the one we mean to give, so a drift is caught here even when
//! the official suite would not notice it. Fixture contents are our own; only their shapes follow
//! `setup.go` (a config with inline `data` and an unknown field, an empty-layers manifest, a
//! 42-byte blob split 22+20 for the chunked upload, five referrers of one subject...).
//!
//! Like the official binary, each workflow runs against one repository in order, state carrying
//! from case to case; `whole_suite_*` also run all four workflows one after the other on one
//! repository, as the official binary does with every workflow enabled
//! (`OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1`,
//! `OCI_AUTOMATIC_CROSSMOUNT=1`), once with the default `OCI_DELETE_MANIFEST_BEFORE_BLOBS=true`
//! and once with `false` (teardowns unlink blobs while manifests still name them), and once more
//! over a loopback socket to the real server (`serve_on`), requests framed as Go's client frames
//! them (a caller's `Content-Length` header ignored, query values escaped).
//!
//! The official suite read for this: the v1.1.x ginkgo-v2 files at opencontainers/distribution-spec
//! commits 47008ca9 (01_pull_test.go), 11b8e3fb (02_push_test.go), b5f09ebe (03_discovery_test.go,
//! setup.go) and 3c7a4ac8 (04_management_test.go): 79 cases, which matches the 62 passed +
//! 12 failed + 5 skipped that v1.1.1 reports for Docker's registry 2.8.2.
//!
//! | official category    | cases | pass here | not applicable here |
//! |----------------------|-------|-----------|---------------------|
//! | Pull                 | 24    | 23        | 1                   |
//! | Push                 | 29    | 27        | 2                   |
//! | Content Discovery    | 16    | 15        | 1                   |
//! | Content Management   | 10    | 10        | 0                   |
//! | total                | 79    | 75        | 4                   |
//!
//! No case fails. The four not run are skipped by the official suite too, by its own switches:
//! - Pull / Setup "Get tag name from environment" and Content Discovery / Setup "Populate registry
//!   with test tags (no push)": they only read `OCI_TAG_NAME` / `OCI_TAG_LIST` when the suite is
//!   told not to push its own fixtures; we always push them.
//! - Push / Cross-Repository Blob Mount "Cross-mounting of nonexistent blob should yield session
//!   id": runs only when the mount of an existing blob answered 202; ours answers 201 (the spec's
//!   preferred outcome). A failed mount falling back to a 202 session is checked anyway, by
//!   "Cross-mounting of a blob without the from argument should yield session id" and by
//!   `mount_of_a_blob_whose_file_is_gone_falls_back_to_an_upload_session` below.
//! - Push / Cross-Repository Blob Mount "Cross-mounting without from, and automatic content
//!   discovery disabled should return a 202": wharf mounts without `from` from any repository the
//!   caller may pull from, so only its "enabled ... should return a 201" twin applies (and passes).
//!
//! Deliberate differences: none. Where the official suite is lenient we are stricter (see above),
//! and "GET start of tag is set by `last` query parameter" checks the second page itself (the
//! official case re-checks the first page's list).

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use common::*;
use http::Method;
use sha2::{Digest as _, Sha256};

/// The suite's `<name>` (OCI_NAMESPACE) and the target of the cross-repository mount.
const NAME: &str = "oci/conformance";
const CROSSMOUNT_NAME: &str = "conformance-crossmount";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The tag the pull, discovery and management workflows push (`testTagName`).
const TEST_TAG: &str = "tagtest0";
const EMPTY_LAYER_TAG: &str = "emptylayer";
/// Not a valid tag: the suite uses it for "nonexistent manifest" and expects 404, not 400.
const NONEXISTENT_MANIFEST: &str = ".INVALID_MANIFEST_NAME";
const ANNOTATION_KEY: &str = "org.example.conformance.case";
const ARTIFACT_TYPE_A: &str = "application/vnd.example.conformance.a";
const ARTIFACT_TYPE_B: &str = "application/vnd.example.conformance.b";
const ARTIFACT_TYPE_INDEX: &str = "application/vnd.example.conformance.index";
/// The error codes the official suite accepts in an error body (its `errorCodes`).
const OFFICIAL_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];

// ---------------------------------------------------------------------------------------------
// Recording cases

/// The outcome of every official case of one workflow, by title.
struct Suite {
    workflow: &'static str,
    passed: Vec<&'static str>,
    failed: Vec<String>,
    not_applicable: Vec<&'static str>,
}

impl Suite {
    fn new(workflow: &'static str) -> Suite {
        Suite {
            workflow,
            passed: Vec::new(),
            failed: Vec::new(),
            not_applicable: Vec::new(),
        }
    }

    fn record(&mut self, title: &'static str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.passed.push(title),
            Err(why) => self.failed.push(format!("{title}: {why}")),
        }
    }

    /// A case the official suite skips under the configuration we mirror (see the file's header).
    fn not_applicable(&mut self, title: &'static str) {
        self.not_applicable.push(title);
    }

    /// Every official case of the workflow is accounted for, and none failed.
    fn finish(self, cases: usize, not_applicable: usize) {
        let counted = self.passed.len() + self.failed.len() + self.not_applicable.len();
        assert_eq!(
            counted, cases,
            "{}: {counted} cases recorded, the official suite has {cases}",
            self.workflow
        );
        assert!(
            self.failed.is_empty(),
            "{}: {} of {cases} cases fail:\n  {}",
            self.workflow,
            self.failed.len(),
            self.failed.join("\n  ")
        );
        assert_eq!(
            self.not_applicable.len(),
            not_applicable,
            "{}: not applicable: {:?}",
            self.workflow,
            self.not_applicable
        );
    }
}

/// Runs `$body` (which may use `?` on `Result<_, String>` and `.await`) as the official case
/// `$title`.
macro_rules! case {
    ($suite:expr, $title:expr, $body:block) => {{
        let outcome: Result<(), String> = async {
            $body
            Ok(())
        }
        .await;
        $suite.record($title, outcome);
    }};
}

/// `r` has a status the official suite accepts, and it is `preferred`, the one the spec prefers
/// and wharf gives.
fn status(r: &Resp, official: &[u16], preferred: u16) -> Result<(), String> {
    let got = r.status.as_u16();
    let body = String::from_utf8_lossy(&r.body);
    if !official.contains(&got) {
        return Err(format!(
            "status {got} (the official suite accepts {official:?}); body {body}"
        ));
    }
    if got != preferred {
        return Err(format!(
            "status {got}: the official suite accepts it, but wharf should answer {preferred}; body {body}"
        ));
    }
    Ok(())
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// The official suite's `if h := Docker-Content-Digest; h != "" { h == digest }`; we also
/// require the header, which wharf always sends.
fn content_digest(r: &Resp, digest: &str) -> Result<(), String> {
    ensure(r.header("docker-content-digest") == digest, || {
        format!(
            "Docker-Content-Digest {:?}, expected {digest}",
            r.header("docker-content-digest")
        )
    })
}

fn location(r: &Resp) -> Result<String, String> {
    let l = r.header("location");
    ensure(!l.is_empty(), || "no Location header".to_string())?;
    Ok(l.to_string())
}

/// `location` with `key=value` appended to its query (an upload URL may carry its own query),
/// the value escaped as Go's `url.Values` does on the wire (`sha256%3A...`, `oci%2Fconformance`).
fn with_query(location: &str, key: &str, value: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    let value: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    format!("{location}{sep}{key}={value}")
}

fn tags_of(r: &Resp) -> Vec<String> {
    r.json()["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Fixtures (shapes as in the official setup.go, contents our own)

#[derive(Clone)]
struct Blob {
    data: Vec<u8>,
    digest: String,
}

impl Blob {
    fn new(data: Vec<u8>) -> Blob {
        let digest = digest_of(&data);
        Blob { data, digest }
    }
    fn len(&self) -> String {
        self.data.len().to_string()
    }
    fn descriptor(&self, media_type: &str) -> serde_json::Value {
        serde_json::json!({"mediaType": media_type, "digest": self.digest, "size": self.data.len()})
    }
}

/// `len` deterministic bytes that look random (the official suite seeds math/rand).
fn pseudo_random(len: usize, seed: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut counter = 0u32;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update(counter.to_be_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// Go's `json.MarshalIndent(v, "", "\t")`: manifests are pushed pretty-printed, not canonical.
fn pretty(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut ser).expect("serialize");
    out
}

struct Fixtures {
    /// One config per workflow (the suite makes them unique with a random author).
    configs: Vec<Blob>,
    layer: Blob,
    /// One image manifest per workflow: `configs[i]` and `layer`.
    manifests: Vec<Blob>,
    empty_layer_manifest: Blob,
    /// The streamed upload's blob.
    blob_a: Blob,
    /// The chunked upload's blob: 42 bytes sent as 0-21 then 22-41.
    blob_b: Blob,
    empty_json: Blob,
    ref_blob_a: Blob,
    ref_blob_b: Blob,
    /// Referrers of `manifests[4]`: artifact type in the config media type (A, B), in
    /// `artifactType` (A, B), and an index of the two A manifests.
    refs_a_config: Blob,
    refs_a_layer: Blob,
    refs_b_config: Blob,
    refs_b_layer: Blob,
    refs_index: Blob,
    /// A referrer of `manifests[3]`, pushed while that subject does not exist.
    refs_c_layer: Blob,
    /// The annotation each referrer carries, by digest.
    annotations: BTreeMap<String, String>,
    /// A digest nothing has.
    dummy_digest: String,
}

impl Fixtures {
    fn new() -> Fixtures {
        let b64 = |data: &[u8]| base64::engine::general_purpose::STANDARD.encode(data);
        let configs: Vec<Blob> = (0..5)
            .map(|i| {
                Blob::new(pretty(&serde_json::json!({
                    "author": format!("conformance-author-{i}"),
                    "architecture": "amd64",
                    "os": "linux",
                    "rootfs": {"type": "layers", "diff_ids": []},
                })))
            })
            .collect();
        let layer = Blob::new(b"an opaque layer: a registry never looks inside one".to_vec());
        let manifests = configs
            .iter()
            .map(|config| {
                let mut config_descriptor = config.descriptor(CONFIG_TYPE);
                // As in setup.go: inline `data`, and a field no spec defines, both to be kept
                // verbatim and not rejected.
                config_descriptor["data"] = b64(&config.data).into();
                config_descriptor["newUnspecifiedField"] = b64(b"hello world").into();
                Blob::new(pretty(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": config_descriptor,
                    "layers": [layer.descriptor(LAYER_TYPE)],
                })))
            })
            .collect::<Vec<_>>();
        let empty_layer_manifest = Blob::new(pretty(&serde_json::json!({
            "schemaVersion": 2,
            "config": configs[1].descriptor(CONFIG_TYPE),
            "layers": [],
        })));
        let empty_json = Blob::new(b"{}".to_vec());
        let ref_blob_a = Blob::new(b"referrer payload a".to_vec());
        let ref_blob_b = Blob::new(b"referrer payload b".to_vec());
        let subject = manifests[4].descriptor(OCI_MANIFEST);
        let mut annotations = BTreeMap::new();
        let mut referrer = |body: serde_json::Value, note: Option<&str>| {
            let blob = Blob::new(pretty(&body));
            if let Some(note) = note {
                annotations.insert(blob.digest.clone(), note.to_string());
            }
            blob
        };
        let config_artifact = |blob: &Blob, artifact_type: &str, note: &str| {
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": blob.descriptor(artifact_type),
                "subject": subject,
                "layers": [empty_json.descriptor(EMPTY_TYPE)],
                "annotations": {ANNOTATION_KEY: note},
            })
        };
        let layer_artifact =
            |blob: &Blob, artifact_type: &str, subject: &serde_json::Value, note: Option<&str>| {
                let mut m = serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "artifactType": artifact_type,
                    "config": empty_json.descriptor(EMPTY_TYPE),
                    "subject": subject,
                    "layers": [blob.descriptor(artifact_type)],
                });
                if let Some(note) = note {
                    m["annotations"] = serde_json::json!({ ANNOTATION_KEY: note });
                }
                m
            };
        let refs_a_config = referrer(
            config_artifact(&ref_blob_a, ARTIFACT_TYPE_A, "config a"),
            Some("config a"),
        );
        let refs_b_config = referrer(
            config_artifact(&ref_blob_b, ARTIFACT_TYPE_B, "config b"),
            Some("config b"),
        );
        let refs_a_layer = referrer(
            layer_artifact(&ref_blob_a, ARTIFACT_TYPE_A, &subject, Some("layer a")),
            Some("layer a"),
        );
        let refs_b_layer = referrer(
            layer_artifact(&ref_blob_b, ARTIFACT_TYPE_B, &subject, Some("layer b")),
            Some("layer b"),
        );
        let refs_c_layer = referrer(
            layer_artifact(
                &ref_blob_b,
                ARTIFACT_TYPE_B,
                &manifests[3].descriptor(OCI_MANIFEST),
                None,
            ),
            None,
        );
        let refs_index = referrer(
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "artifactType": ARTIFACT_TYPE_INDEX,
                "manifests": [refs_a_config.descriptor(OCI_MANIFEST), refs_a_layer.descriptor(OCI_MANIFEST)],
                "subject": subject,
                "annotations": {ANNOTATION_KEY: "index"},
            }),
            Some("index"),
        );
        Fixtures {
            configs,
            layer,
            manifests,
            empty_layer_manifest,
            blob_a: Blob::new(pseudo_random(42, "blob a")),
            blob_b: Blob::new(pseudo_random(42, "blob b")),
            empty_json,
            ref_blob_a,
            ref_blob_b,
            refs_a_config,
            refs_a_layer,
            refs_b_config,
            refs_b_layer,
            refs_index,
            refs_c_layer,
            annotations,
            dummy_digest: digest_of(b"hello world"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests the workflows repeat

/// The suite's two-step push (POST, then PUT to the Location with the digest); the setup cases
/// accept any 2xx.
async fn post_put_blob(reg: &Reg, blob: &Blob) -> Result<Resp, String> {
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/{NAME}/blobs/uploads/"),
            &[],
            b"",
        )
        .await;
    status(&r, &[202], 202)?;
    let len = blob.len();
    let r = reg
        .call(
            Method::PUT,
            &with_query(&location(&r)?, "digest", &blob.digest),
            &[
                ("content-type", "application/octet-stream"),
                ("content-length", &len),
            ],
            &blob.data,
        )
        .await;
    status(&r, &[200, 201, 202, 204], 201)?;
    Ok(r)
}

async fn put_manifest(reg: &Reg, reference: &str, media_type: &str, body: &[u8]) -> Resp {
    reg.push_manifest(NAME, reference, media_type, body).await
}

async fn delete(reg: &Reg, what: &str, reference: &str) -> Resp {
    reg.call(
        Method::DELETE,
        &format!("/v2/{NAME}/{what}/{reference}"),
        &[],
        b"",
    )
    .await
}

async fn head(reg: &Reg, uri: &str) -> Resp {
    reg.call(Method::HEAD, uri, &[], b"").await
}

async fn get_accept(reg: &Reg, uri: &str, accept: &str) -> Resp {
    reg.call(Method::GET, uri, &[("accept", accept)], b"").await
}

/// `OCI_DELETE_MANIFEST_BEFORE_BLOBS`: the order of each workflow's teardown (true by default).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Teardown {
    ManifestsFirst,
    BlobsFirst,
}

impl Teardown {
    /// `true` for the manifest step, `false` for the blob step, in this order.
    fn steps(self) -> [bool; 2] {
        match self {
            Teardown::ManifestsFirst => [true, false],
            Teardown::BlobsFirst => [false, true],
        }
    }
}

/// Any 2xx, or 405 for a registry that refuses deletes: the teardown cases' accepted set.
const DELETED_OR_REFUSED: &[u16] = &[200, 201, 202, 203, 204, 205, 206, 405];
const DELETED_GONE_OR_REFUSED: &[u16] = &[200, 201, 202, 203, 204, 205, 206, 404, 405];

// ---------------------------------------------------------------------------------------------
// 01_pull_test.go: 24 cases

async fn pull(reg: &Reg, f: &Fixtures, order: Teardown) -> Suite {
    let mut s = Suite::new("Pull");
    let m = &f.manifests;

    // Setup
    case!(s, "Populate registry with test blob", {
        post_put_blob(reg, &f.configs[0]).await?;
    });
    case!(s, "Populate registry with test blob", {
        post_put_blob(reg, &f.configs[1]).await?;
    });
    case!(s, "Populate registry with test layer", {
        post_put_blob(reg, &f.layer).await?;
    });
    case!(s, "Populate registry with test manifest", {
        let r = put_manifest(reg, TEST_TAG, OCI_MANIFEST, &m[0].data).await;
        status(&r, &[200, 201, 202, 204], 201)?;
    });
    case!(s, "Populate registry with test manifest", {
        let r = put_manifest(reg, &m[1].digest, OCI_MANIFEST, &m[1].data).await;
        status(&r, &[200, 201, 202, 204], 201)?;
    });
    s.not_applicable("Get tag name from environment");

    // Pull blobs
    case!(
        s,
        "HEAD request to nonexistent blob should result in 404 response",
        {
            let r = head(reg, &format!("/v2/{NAME}/blobs/{}", f.dummy_digest)).await;
            status(&r, &[404], 404)?;
        }
    );
    case!(s, "HEAD request to existing blob should yield 200", {
        let r = head(reg, &format!("/v2/{NAME}/blobs/{}", f.configs[0].digest)).await;
        status(&r, &[200], 200)?;
        content_digest(&r, &f.configs[0].digest)?;
        // Not checked by the official case; the spec requires the size on HEAD.
        ensure(r.header("content-length") == f.configs[0].len(), || {
            format!("Content-Length {:?}", r.header("content-length"))
        })?;
    });
    case!(s, "GET nonexistent blob should result in 404 response", {
        let r = reg
            .get(&format!("/v2/{NAME}/blobs/{}", f.dummy_digest))
            .await;
        status(&r, &[404], 404)?;
    });
    case!(s, "GET request to existing blob URL should yield 200", {
        let r = reg
            .get(&format!("/v2/{NAME}/blobs/{}", f.configs[0].digest))
            .await;
        status(&r, &[200], 200)?;
        ensure(r.body[..] == f.configs[0].data[..], || {
            "the body is not the blob".to_string()
        })?;
    });

    // Pull manifests
    case!(
        s,
        "HEAD request to nonexistent manifest should return 404",
        {
            let r = head(reg, &format!("/v2/{NAME}/manifests/{NONEXISTENT_MANIFEST}")).await;
            status(&r, &[404], 404)?;
        }
    );
    for (i, title) in [
        "HEAD request to manifest[0] path (digest) should yield 200 response",
        "HEAD request to manifest[1] path (digest) should yield 200 response",
    ]
    .into_iter()
    .enumerate()
    {
        case!(s, title, {
            let r = reg
                .call(
                    Method::HEAD,
                    &format!("/v2/{NAME}/manifests/{}", m[i].digest),
                    &[("accept", OCI_MANIFEST)],
                    b"",
                )
                .await;
            status(&r, &[200], 200)?;
            content_digest(&r, &m[i].digest)?;
        });
    }
    case!(
        s,
        "HEAD request to manifest path (tag) should yield 200 response",
        {
            let r = reg
                .call(
                    Method::HEAD,
                    &format!("/v2/{NAME}/manifests/{TEST_TAG}"),
                    &[("accept", OCI_MANIFEST)],
                    b"",
                )
                .await;
            status(&r, &[200], 200)?;
            content_digest(&r, &m[0].digest)?;
        }
    );
    case!(s, "GET nonexistent manifest should return 404", {
        let r = reg
            .get(&format!("/v2/{NAME}/manifests/{NONEXISTENT_MANIFEST}"))
            .await;
        status(&r, &[404], 404)?;
    });
    for (i, title) in [
        "GET request to manifest[0] path (digest) should yield 200 response",
        "GET request to manifest[1] path (digest) should yield 200 response",
    ]
    .into_iter()
    .enumerate()
    {
        case!(s, title, {
            let uri = format!("/v2/{NAME}/manifests/{}", m[i].digest);
            let r = get_accept(reg, &uri, OCI_MANIFEST).await;
            status(&r, &[200], 200)?;
            // The stored bytes, not a re-serialization: the digest must still match.
            ensure(r.body[..] == m[i].data[..], || {
                "the body is not the pushed manifest".to_string()
            })?;
            ensure(r.header("content-type") == OCI_MANIFEST, || {
                format!("Content-Type {:?}", r.header("content-type"))
            })?;
        });
    }
    case!(
        s,
        "GET request to manifest path (tag) should yield 200 response",
        {
            let uri = format!("/v2/{NAME}/manifests/{TEST_TAG}");
            let r = get_accept(reg, &uri, OCI_MANIFEST).await;
            status(&r, &[200], 200)?;
            content_digest(&r, &m[0].digest)?;
        }
    );

    // Error codes
    case!(
        s,
        "400 response body should contain OCI-conforming JSON message",
        {
            let r = reg
                .call(
                    Method::GET,
                    &format!("/v2/{NAME}/manifests/sha256:totallywrong"),
                    &[("content-type", OCI_MANIFEST)],
                    b"blablabla",
                )
                .await;
            status(&r, &[400, 404], 400)?;
            let code = r.code();
            ensure(OFFICIAL_ERROR_CODES.contains(&code.as_str()), || {
                format!("error code {code:?} is not one the suite knows")
            })?;
        }
    );

    // Teardown
    for manifests in order.steps() {
        if manifests {
            case!(s, "Delete manifest[0] created in setup", {
                status(
                    &delete(reg, "manifests", &m[0].digest).await,
                    DELETED_OR_REFUSED,
                    202,
                )?;
            });
            case!(s, "Delete manifest[1] created in setup", {
                status(
                    &delete(reg, "manifests", &m[1].digest).await,
                    DELETED_OR_REFUSED,
                    202,
                )?;
            });
            continue;
        }
        case!(s, "Delete config[0] blob created in setup", {
            status(
                &delete(reg, "blobs", &f.configs[0].digest).await,
                DELETED_GONE_OR_REFUSED,
                202,
            )?;
        });
        case!(s, "Delete config[1] blob created in setup", {
            status(
                &delete(reg, "blobs", &f.configs[1].digest).await,
                DELETED_GONE_OR_REFUSED,
                202,
            )?;
        });
        case!(s, "Delete layer blob created in setup", {
            status(
                &delete(reg, "blobs", &f.layer.digest).await,
                DELETED_GONE_OR_REFUSED,
                202,
            )?;
        });
    }
    s
}

// ---------------------------------------------------------------------------------------------
// 02_push_test.go: 29 cases

async fn push(reg: &Reg, f: &Fixtures, order: Teardown) -> Suite {
    let mut s = Suite::new("Push");
    let uploads = format!("/v2/{NAME}/blobs/uploads/");
    let mut last_location = String::new();

    // Blob Upload Streamed
    case!(
        s,
        "PATCH request with blob in body should yield 202 response",
        {
            let r = reg.call(Method::POST, &uploads, &[], b"").await;
            let session = location(&r)?;
            let r = reg
                .call(
                    Method::PATCH,
                    &session,
                    &[("content-type", "application/octet-stream")],
                    &f.blob_a.data,
                )
                .await;
            status(&r, &[202], 202)?;
            ensure(r.header("range") == "0-41", || {
                format!("Range {:?} after 42 bytes", r.header("range"))
            })?;
            last_location = location(&r)?;
        }
    );
    case!(
        s,
        "PUT request to session URL with digest should yield 201 response",
        {
            // The official case sets a Content-Length header but no body; Go's client sends
            // the body's length (0), so the request carries no bytes.
            let r = reg
                .call(
                    Method::PUT,
                    &with_query(&last_location, "digest", &f.blob_a.digest),
                    &[("content-type", "application/octet-stream")],
                    b"",
                )
                .await;
            status(&r, &[201], 201)?;
            ensure(
                location(&r)? == format!("/v2/{NAME}/blobs/{}", f.blob_a.digest),
                || format!("Location {:?}", r.header("location")),
            )?;
        }
    );

    // Blob Upload Monolithic
    case!(s, "GET nonexistent blob should result in 404 response", {
        let r = reg
            .get(&format!("/v2/{NAME}/blobs/{}", f.dummy_digest))
            .await;
        status(&r, &[404], 404)?;
    });
    let mut monolithic_status = 0;
    case!(
        s,
        "POST request with digest and blob should yield a 201 or 202",
        {
            let len = f.configs[1].len();
            let r = reg
                .call(
                    Method::POST,
                    &with_query(&uploads, "digest", &f.configs[1].digest),
                    &[
                        ("content-length", &len),
                        ("content-type", "application/octet-stream"),
                    ],
                    &f.configs[1].data,
                )
                .await;
            monolithic_status = r.status.as_u16();
            location(&r)?;
            status(&r, &[201, 202], 201)?;
        }
    );
    case!(
        s,
        "GET request to blob URL from prior request should yield 200 or 404 based on response code",
        {
            let r = reg
                .get(&format!("/v2/{NAME}/blobs/{}", f.configs[1].digest))
                .await;
            let expected = if monolithic_status == 202 { 404 } else { 200 };
            status(&r, &[expected], expected)?;
        }
    );
    case!(s, "POST request should yield a session ID", {
        let r = reg.call(Method::POST, &uploads, &[], b"").await;
        status(&r, &[202], 202)?;
        last_location = location(&r)?;
        ensure(
            last_location.starts_with(&format!("/v2/{NAME}/blobs/uploads/")),
            || format!("Location {last_location:?}"),
        )?;
    });
    case!(s, "PUT upload of a blob should yield a 201 Response", {
        let len = f.configs[1].len();
        let r = reg
            .call(
                Method::PUT,
                &with_query(&last_location, "digest", &f.configs[1].digest),
                &[
                    ("content-length", &len),
                    ("content-type", "application/octet-stream"),
                ],
                &f.configs[1].data,
            )
            .await;
        location(&r)?;
        status(&r, &[201], 201)?;
    });
    case!(
        s,
        "GET request to existing blob should yield 200 response",
        {
            let r = reg
                .get(&format!("/v2/{NAME}/blobs/{}", f.configs[1].digest))
                .await;
            status(&r, &[200], 200)?;
        }
    );
    case!(
        s,
        "PUT upload of a layer blob should yield a 201 Response",
        {
            let r = reg.call(Method::POST, &uploads, &[], b"").await;
            let session = location(&r)?;
            let len = f.layer.len();
            let r = reg
                .call(
                    Method::PUT,
                    &with_query(&session, "digest", &f.layer.digest),
                    &[
                        ("content-length", &len),
                        ("content-type", "application/octet-stream"),
                    ],
                    &f.layer.data,
                )
                .await;
            location(&r)?;
            status(&r, &[201], 201)?;
        }
    );
    case!(
        s,
        "GET request to existing layer should yield 200 response",
        {
            let r = reg
                .get(&format!("/v2/{NAME}/blobs/{}", f.layer.digest))
                .await;
            status(&r, &[200], 200)?;
        }
    );

    // Blob Upload Chunked: 42 bytes as 0-21 and 22-41 (no OCI-Chunk-Min-Length from us).
    let b = &f.blob_b.data;
    let (chunk1, chunk2) = b.split_at(22);
    let (range1, range2) = ("0-21", "22-41");
    let mut first_session = String::new();
    case!(s, "Out-of-order blob upload should return 416", {
        let r = reg
            .call(Method::POST, &uploads, &[("content-length", "0")], b"")
            .await;
        let session = location(&r)?;
        ensure(r.header("oci-chunk-min-length").is_empty(), || {
            "wharf sets no chunk minimum".to_string()
        })?;
        let r = reg
            .call(
                Method::PATCH,
                &session,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", "20"),
                    ("content-range", range2),
                ],
                chunk2,
            )
            .await;
        status(&r, &[416], 416)?;
    });
    case!(s, "PATCH request with first chunk should return 202", {
        let r = reg
            .call(Method::POST, &uploads, &[("content-length", "0")], b"")
            .await;
        first_session = location(&r)?;
        let r = reg
            .call(
                Method::PATCH,
                &first_session,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", "22"),
                    ("content-range", range1),
                ],
                chunk1,
            )
            .await;
        status(&r, &[202], 202)?;
        ensure(r.header("range") == range1, || {
            format!("Range {:?}", r.header("range"))
        })?;
    });
    case!(s, "Retry previous blob chunk should return 416", {
        let r = reg
            .call(
                Method::PATCH,
                &first_session,
                &[
                    ("content-type", "application/octet-stream"),
                    ("content-length", "22"),
                    ("content-range", range1),
                ],
                chunk1,
            )
            .await;
        status(&r, &[416], 416)?;
    });
    case!(
        s,
        "Get on stale blob upload should return 204 with a range and location",
        {
            let r = reg.get(&first_session).await;
            status(&r, &[204], 204)?;
            last_location = location(&r)?;
            ensure(r.header("range") == range1, || {
                format!("Range {:?}", r.header("range"))
            })?;
        }
    );
    case!(s, "PATCH request with second chunk should return 202", {
        let r = reg
            .call(
                Method::PATCH,
                &last_location,
                &[
                    ("content-length", "20"),
                    ("content-range", range2),
                    ("content-type", "application/octet-stream"),
                ],
                chunk2,
            )
            .await;
        status(&r, &[202], 202)?;
        last_location = location(&r)?;
        ensure(r.header("range") == "0-41", || {
            format!("Range {:?}", r.header("range"))
        })?;
    });
    case!(s, "PUT request with digest should return 201", {
        let r = reg
            .call(
                Method::PUT,
                &with_query(&last_location, "digest", &f.blob_b.digest),
                &[
                    ("content-length", "0"),
                    ("content-type", "application/octet-stream"),
                ],
                b"",
            )
            .await;
        status(&r, &[201], 201)?;
        location(&r)?;
        let r = reg
            .get(&format!("/v2/{NAME}/blobs/{}", f.blob_b.digest))
            .await;
        ensure(r.body[..] == b[..], || {
            "the chunks were not joined in order".to_string()
        })?;
    });

    // Cross-Repository Blob Mount
    let cross_uploads = format!("/v2/{CROSSMOUNT_NAME}/blobs/uploads/");
    case!(
        s,
        "Cross-mounting of a blob without the from argument should yield session id",
        {
            let r = reg
                .call(
                    Method::POST,
                    &with_query(&cross_uploads, "mount", &f.dummy_digest),
                    &[],
                    b"",
                )
                .await;
            status(&r, &[202], 202)?;
            ensure(location(&r)?.starts_with(&cross_uploads), || {
                format!("Location {:?}", r.header("location"))
            })?;
        }
    );
    let mut mount_status = 0;
    case!(
        s,
        "POST request to mount another repository's blob should return 201 or 202",
        {
            let uri = with_query(
                &with_query(&cross_uploads, "mount", &f.blob_a.digest),
                "from",
                NAME,
            );
            let r = reg.call(Method::POST, &uri, &[], b"").await;
            mount_status = r.status.as_u16();
            last_location = r.header("location").to_string();
            status(&r, &[201, 202], 201)?;
        }
    );
    if mount_status == 201 {
        case!(
            s,
            "GET request to test digest within cross-mount namespace should return 200",
            {
                let expected = format!("/v2/{CROSSMOUNT_NAME}/blobs/{}", f.blob_a.digest);
                ensure(last_location == expected, || {
                    format!("Location {last_location:?}, expected {expected:?}")
                })?;
                status(&reg.get(&last_location).await, &[200], 200)?;
            }
        );
        s.not_applicable("Cross-mounting of nonexistent blob should yield session id");
        // OCI_AUTOMATIC_CROSSMOUNT=true: wharf finds a source repository by itself.
        case!(
            s,
            "Cross-mounting without from, and automatic content discovery enabled should return a 201",
            {
                let r = reg
                    .call(
                        Method::POST,
                        &with_query(&cross_uploads, "mount", &f.blob_a.digest),
                        &[],
                        b"",
                    )
                    .await;
                status(&r, &[201], 201)?;
            }
        );
        s.not_applicable(
            "Cross-mounting without from, and automatic content discovery disabled should return a 202",
        );
    } else {
        // The official suite would run the 202 branch; for us a 202 here is already a failure
        // recorded above, so these record that the 201 branch could not be checked.
        for title in [
            "GET request to test digest within cross-mount namespace should return 200",
            "Cross-mounting of nonexistent blob should yield session id",
            "Cross-mounting without from, and automatic content discovery enabled should return a 201",
            "Cross-mounting without from, and automatic content discovery disabled should return a 202",
        ] {
            s.record(title, Err("the mount above did not answer 201".to_string()));
        }
    }

    // Manifest Upload
    case!(s, "GET nonexistent manifest should return 404", {
        let r = reg
            .get(&format!("/v2/{NAME}/manifests/{NONEXISTENT_MANIFEST}"))
            .await;
        status(&r, &[404], 404)?;
    });
    case!(s, "PUT should accept a manifest upload", {
        for i in 0..4 {
            let tag = format!("test{i}");
            let r = put_manifest(reg, &tag, OCI_MANIFEST, &f.manifests[1].data).await;
            location(&r)?;
            status(&r, &[201], 201)?;
            content_digest(&r, &f.manifests[1].digest)?;
        }
    });
    let mut empty_layer_pushed = false;
    case!(
        s,
        "Registry should accept a manifest upload with no layers",
        {
            let r = put_manifest(
                reg,
                EMPTY_LAYER_TAG,
                OCI_MANIFEST,
                &f.empty_layer_manifest.data,
            )
            .await;
            // The official case only warns when this is refused; wharf accepts it.
            status(&r, &[201], 201)?;
            location(&r)?;
            empty_layer_pushed = true;
        }
    );
    case!(
        s,
        "GET request to manifest URL (digest) should yield 200 response",
        {
            let uri = format!("/v2/{NAME}/manifests/{}", f.manifests[1].digest);
            status(&get_accept(reg, &uri, OCI_MANIFEST).await, &[200], 200)?;
        }
    );

    // Teardown
    for manifests in order.steps() {
        if manifests {
            case!(s, "Delete manifest created in tests", {
                status(
                    &delete(reg, "manifests", &f.manifests[1].digest).await,
                    DELETED_OR_REFUSED,
                    202,
                )?;
                if empty_layer_pushed {
                    status(
                        &delete(reg, "manifests", &f.empty_layer_manifest.digest).await,
                        DELETED_OR_REFUSED,
                        202,
                    )?;
                }
            });
            continue;
        }
        case!(s, "Delete config blob created in tests", {
            status(
                &delete(reg, "blobs", &f.configs[1].digest).await,
                DELETED_GONE_OR_REFUSED,
                202,
            )?;
        });
        case!(s, "Delete layer blob created in setup", {
            status(
                &delete(reg, "blobs", &f.layer.digest).await,
                DELETED_GONE_OR_REFUSED,
                202,
            )?;
        });
    }
    s
}

// ---------------------------------------------------------------------------------------------
// 03_discovery_test.go: 16 cases

async fn discovery(reg: &Reg, f: &Fixtures, order: Teardown) -> Suite {
    let mut s = Suite::new("Content Discovery");
    let m = &f.manifests;
    let ok_2xx: &[u16] = &[200, 201, 202, 203, 204];

    // Setup
    case!(s, "Populate registry with test blob", {
        post_put_blob(reg, &f.configs[2]).await?;
    });
    case!(s, "Populate registry with test layer", {
        post_put_blob(reg, &f.layer).await?;
    });
    case!(s, "Populate registry with test tags", {
        for i in 0..4 {
            let r = put_manifest(reg, &format!("test{i}"), OCI_MANIFEST, &m[2].data).await;
            status(&r, ok_2xx, 201)?;
        }
    });
    s.not_applicable("Populate registry with test tags (no push)");
    case!(s, "References setup", {
        ensure(
            f.empty_json.digest
                == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            || "the empty JSON blob's digest".to_string(),
        )?;
        post_put_blob(reg, &f.empty_json).await?;
        // Referrers pushed before their subject exists.
        post_put_blob(reg, &f.ref_blob_a).await?;
        for (blob, media_type) in [
            (&f.refs_a_config, OCI_MANIFEST),
            (&f.refs_a_layer, OCI_MANIFEST),
            (&f.refs_index, OCI_INDEX),
        ] {
            let r = put_manifest(reg, &blob.digest, media_type, &blob.data).await;
            status(&r, ok_2xx, 201)?;
            ensure(r.header("oci-subject") == m[4].digest, || {
                format!("OCI-Subject {:?}", r.header("oci-subject"))
            })?;
        }
        // The subject itself, then referrers pushed after it.
        post_put_blob(reg, &f.configs[4]).await?;
        post_put_blob(reg, &f.layer).await?;
        let r = put_manifest(reg, TEST_TAG, OCI_MANIFEST, &m[4].data).await;
        status(&r, ok_2xx, 201)?;
        post_put_blob(reg, &f.ref_blob_b).await?;
        for blob in [&f.refs_b_config, &f.refs_b_layer] {
            let r = put_manifest(reg, &blob.digest, OCI_MANIFEST, &blob.data).await;
            status(&r, ok_2xx, 201)?;
            ensure(r.header("oci-subject") == m[4].digest, || {
                format!("OCI-Subject {:?}", r.header("oci-subject"))
            })?;
        }
        // A referrer of a subject that is never pushed.
        let c = &f.refs_c_layer;
        let r = put_manifest(reg, &c.digest, OCI_MANIFEST, &c.data).await;
        status(&r, ok_2xx, 201)?;
        ensure(r.header("oci-subject") == m[3].digest, || {
            format!("OCI-Subject {:?}", r.header("oci-subject"))
        })?;
    });

    // Test content discovery endpoints (listing tags)
    let tags_uri = format!("/v2/{NAME}/tags/list");
    let mut num_tags = 0;
    case!(s, "GET request to list tags should yield 200 response", {
        let r = reg.get(&tags_uri).await;
        status(&r, &[200], 200)?;
        let tags = tags_of(&r);
        num_tags = tags.len();
        ensure(
            ["test0", "test1", "test2", "test3", TEST_TAG]
                .iter()
                .all(|t| tags.iter().any(|x| x == t)),
            || format!("tags {tags:?}"),
        )?;
    });
    let half = num_tags / 2;
    case!(
        s,
        "GET number of tags should be limitable by `n` query parameter",
        {
            let r = reg.get(&format!("{tags_uri}?n={half}")).await;
            status(&r, &[200], 200)?;
            let tags = tags_of(&r);
            ensure(tags.len() == half, || format!("{half} asked, got {tags:?}"))?;
        }
    );
    case!(s, "GET start of tag is set by `last` query parameter", {
        let first = tags_of(&reg.get(&format!("{tags_uri}?n={half}")).await);
        let last = first.last().ok_or("an empty first page")?;
        let r = reg
            .get(&with_query(&format!("{tags_uri}?n={half}"), "last", last))
            .await;
        status(&r, &[200], 200)?;
        let next = tags_of(&r);
        ensure(next.len() <= half && next.iter().all(|t| t > last), || {
            format!("after {last:?}: {next:?}")
        })?;
    });

    // Test content discovery endpoints (listing references)
    let referrers = |digest: &str| format!("/v2/{NAME}/referrers/{digest}");
    let index_of = |r: &Resp| -> Result<Vec<serde_json::Value>, String> {
        ensure(r.header("content-type") == OCI_INDEX, || {
            format!("Content-Type {:?}", r.header("content-type"))
        })?;
        r.json()["manifests"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("not an index: {}", String::from_utf8_lossy(&r.body)))
    };
    let annotated = |entries: &[serde_json::Value]| -> Result<(), String> {
        for e in entries {
            let digest = e["digest"].as_str().unwrap_or("");
            let annotations = e["annotations"].as_object();
            ensure(
                annotations.map(|a| a.len()) == Some(1)
                    && e["annotations"][ANNOTATION_KEY].as_str()
                        == f.annotations.get(digest).map(String::as_str),
                || format!("annotations of {digest}: {:?}", e["annotations"]),
            )?;
        }
        Ok(())
    };
    case!(
        s,
        "GET request to nonexistent blob should result in empty 200 response",
        {
            let r = reg.get(&referrers(&f.dummy_digest)).await;
            status(&r, &[200], 200)?;
            let entries = index_of(&r)?;
            ensure(entries.is_empty(), || format!("{entries:?}"))?;
        }
    );
    case!(s, "GET request to existing blob should yield 200", {
        let r = reg.get(&referrers(&m[4].digest)).await;
        status(&r, &[200], 200)?;
        let entries = index_of(&r)?;
        ensure(entries.len() == 5, || {
            format!("{} referrers", entries.len())
        })?;
        ensure(entries[0]["digest"] != entries[1]["digest"], || {
            "duplicate entries".to_string()
        })?;
        annotated(&entries)?;
    });
    case!(
        s,
        "GET request to existing blob with filter should yield 200",
        {
            let r = reg
                .get(&format!(
                    "{}?artifactType={ARTIFACT_TYPE_A}",
                    referrers(&m[4].digest)
                ))
                .await;
            status(&r, &[200], 200)?;
            let entries = index_of(&r)?;
            // Filtering is optional in the spec; wharf filters and says so.
            ensure(r.header("oci-filters-applied") == "artifactType", || {
                format!("OCI-Filters-Applied {:?}", r.header("oci-filters-applied"))
            })?;
            ensure(entries.len() == 2, || {
                format!("{} referrers", entries.len())
            })?;
            annotated(&entries)?;
        }
    );
    case!(s, "GET request to missing manifest should yield 200", {
        let r = reg.get(&referrers(&m[3].digest)).await;
        status(&r, &[200], 200)?;
        let entries = index_of(&r)?;
        ensure(
            entries.len() == 1 && entries[0]["digest"] == f.refs_c_layer.digest.as_str(),
            || format!("{entries:?}"),
        )?;
    });

    // Teardown: the official file puts "Delete created manifest & associated tags" before or
    // after the two blob deletes, and "References teardown" deletes its manifests before or after
    // its blobs.
    for manifests in order.steps() {
        if manifests {
            case!(s, "Delete created manifest & associated tags", {
                for reference in [
                    &f.refs_index.digest,
                    &m[2].digest,
                    &m[4].digest,
                    &f.refs_a_config.digest,
                    &f.refs_a_layer.digest,
                    TEST_TAG,
                    &f.refs_b_config.digest,
                    &f.refs_b_layer.digest,
                    &f.refs_c_layer.digest,
                ] {
                    let r = delete(reg, "manifests", reference).await;
                    // The tag went with manifests[4], deleted just before it.
                    let preferred = if reference == TEST_TAG { 404 } else { 202 };
                    status(&r, DELETED_GONE_OR_REFUSED, preferred)
                        .map_err(|e| format!("{reference}: {e}"))?;
                }
            });
            continue;
        }
        case!(s, "Delete config blob created in tests", {
            status(
                &delete(reg, "blobs", &f.configs[2].digest).await,
                DELETED_OR_REFUSED,
                202,
            )?;
        });
        case!(s, "Delete layer blob created in setup", {
            status(
                &delete(reg, "blobs", &f.layer.digest).await,
                DELETED_OR_REFUSED,
                202,
            )?;
        });
    }
    case!(s, "References teardown", {
        for manifests in order.steps() {
            if manifests {
                // The manifests went in "Delete created manifest & associated tags".
                for reference in [
                    &f.refs_index.digest,
                    &f.refs_a_config.digest,
                    &f.refs_a_layer.digest,
                    &m[4].digest,
                    &f.refs_b_config.digest,
                    &f.refs_b_layer.digest,
                ] {
                    status(
                        &delete(reg, "manifests", reference).await,
                        DELETED_GONE_OR_REFUSED,
                        404,
                    )
                    .map_err(|e| format!("{reference}: {e}"))?;
                }
                continue;
            }
            for blob in [&f.configs[4], &f.ref_blob_a, &f.ref_blob_b, &f.empty_json] {
                status(
                    &delete(reg, "blobs", &blob.digest).await,
                    DELETED_GONE_OR_REFUSED,
                    202,
                )
                .map_err(|e| format!("{}: {e}", blob.digest))?;
            }
        }
    });
    s
}

// ---------------------------------------------------------------------------------------------
// 04_management_test.go: 10 cases

async fn management(reg: &Reg, f: &Fixtures) -> Suite {
    let mut s = Suite::new("Content Management");
    let m3 = &f.manifests[3];
    let tags_uri = format!("/v2/{NAME}/tags/list");

    // Setup
    case!(s, "Populate registry with test config blob", {
        post_put_blob(reg, &f.configs[3]).await?;
    });
    case!(s, "Populate registry with test layer", {
        post_put_blob(reg, &f.layer).await?;
    });
    case!(s, "Populate registry with test tag", {
        let r = put_manifest(reg, TEST_TAG, OCI_MANIFEST, &m3.data).await;
        status(&r, &[200, 201, 202, 204], 201)?;
    });
    let mut num_tags = 0;
    case!(
        s,
        "Check how many tags there are before anything gets deleted",
        {
            let r = reg.get(&tags_uri).await;
            status(&r, &[200], 200)?;
            num_tags = tags_of(&r).len();
        }
    );

    // Manifest delete
    case!(
        s,
        "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)",
        {
            let r = delete(reg, "manifests", TEST_TAG).await;
            status(&r, &[400, 202, 405], 202)?;
        }
    );
    case!(
        s,
        "DELETE request to manifest (digest) should yield 202 response unless already deleted",
        {
            // Deleting the tag left the manifest: it is still there to delete.
            let r = delete(reg, "manifests", &m3.digest).await;
            status(&r, &[202, 404], 202)?;
        }
    );
    case!(
        s,
        "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed",
        {
            let r = reg
                .get(&format!("/v2/{NAME}/manifests/{}", m3.digest))
                .await;
            status(&r, &[404, 200], 404)?;
        }
    );
    case!(
        s,
        "GET request to tags list should reflect manifest deletion",
        {
            let r = reg.get(&tags_uri).await;
            status(&r, &[200], 200)?;
            let tags = tags_of(&r);
            ensure(tags.len() < num_tags, || {
                format!("{num_tags} tags before, now {tags:?}")
            })?;
        }
    );

    // Blob delete
    case!(s, "DELETE request to blob URL should yield 202 response", {
        for blob in [&f.configs[3], &f.layer] {
            let r = delete(reg, "blobs", &blob.digest).await;
            status(&r, &[202, 404, 405], 202)?;
        }
    });
    case!(
        s,
        "GET request to deleted blob URL should yield 404 response",
        {
            let r = reg
                .get(&format!("/v2/{NAME}/blobs/{}", f.configs[3].digest))
                .await;
            status(&r, &[404], 404)?;
        }
    );
    s
}

// ---------------------------------------------------------------------------------------------
// The tests

async fn pull_workflow() {
    pull(&registry(), &Fixtures::new(), Teardown::ManifestsFirst)
        .await
        .finish(24, 1);
}

async fn push_workflow() {
    push(&registry(), &Fixtures::new(), Teardown::ManifestsFirst)
        .await
        .finish(29, 2);
}

async fn content_discovery_workflow() {
    discovery(&registry(), &Fixtures::new(), Teardown::ManifestsFirst)
        .await
        .finish(16, 1);
}

async fn content_management_workflow() {
    management(&registry(), &Fixtures::new())
        .await
        .finish(10, 0);
}

/// As the official binary runs: every workflow, in order, on one repository, so each one meets
/// what the previous ones left (deleted links, re-pushed blobs, re-used tags).
async fn whole_suite(reg: Reg, order: Teardown) {
    let f = Fixtures::new();
    let suites = [
        pull(&reg, &f, order).await,
        push(&reg, &f, order).await,
        discovery(&reg, &f, order).await,
        management(&reg, &f).await,
    ];
    let failed: Vec<String> = suites
        .iter()
        .flat_map(|s| s.failed.iter().map(move |c| format!("{}: {c}", s.workflow)))
        .collect();
    let passed: usize = suites.iter().map(|s| s.passed.len()).sum();
    let skipped: usize = suites.iter().map(|s| s.not_applicable.len()).sum();
    assert!(
        failed.is_empty(),
        "{order:?}: failing cases:\n  {}",
        failed.join("\n  ")
    );
    assert_eq!((passed, skipped), (75, 4), "{order:?}");
}

async fn whole_suite_in_order_on_one_repository() {
    whole_suite(registry(), Teardown::ManifestsFirst).await;
}

/// `OCI_DELETE_MANIFEST_BEFORE_BLOBS=false`: blobs are unlinked while manifests still name them.
async fn whole_suite_deleting_blobs_before_manifests() {
    whole_suite(registry(), Teardown::BlobsFirst).await;
}

/// The same over a loopback socket to `serve_on`, with requests framed as Go's client frames
/// them: what the in-process router cannot show (HEAD and 204 framing, query escaping).
async fn whole_suite_over_a_socket() {
    let reg = registry_on_socket().await;
    // Only hyper's encoder adds `Date`: these requests really cross the socket.
    assert!(!reg.get("/v2/").await.header("date").is_empty());
    whole_suite(reg, Teardown::ManifestsFirst).await;
}

// ---------------------------------------------------------------------------------------------
// Regressions for deviations found while writing this file, and the spec points the official
// suite leaves to a branch it does not take against wharf.

/// The suite's "nonexistent manifest" is `.INVALID_MANIFEST_NAME`, outside the tag grammar:
/// wharf answered 400 MANIFEST_INVALID where the suite requires 404.
async fn manifest_references_outside_the_tag_grammar_are_unknown_not_invalid() {
    let reg = registry();
    let uri = format!("/v2/{NAME}/manifests/{NONEXISTENT_MANIFEST}");
    for method in [Method::GET, Method::HEAD, Method::DELETE] {
        let r = reg.call(method.clone(), &uri, &[], b"").await;
        assert_eq!(r.status.as_u16(), 404, "{method}");
        if method != Method::HEAD {
            assert_eq!(r.code(), "MANIFEST_UNKNOWN", "{method}");
        }
    }
    // Pushing under such a tag stays the client's mistake.
    let f = Fixtures::new();
    let r = put_manifest(
        &reg,
        NONEXISTENT_MANIFEST,
        OCI_MANIFEST,
        &f.manifests[0].data,
    )
    .await;
    assert_eq!(r.status.as_u16(), 400);
    // A malformed digest is still a 400 too (the suite's "400 response body" case).
    let r = reg
        .get(&format!("/v2/{NAME}/manifests/sha256:totallywrong"))
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code().as_str()),
        (400, "DIGEST_INVALID")
    );
}

/// A mount names a blob the source repository links to, but whose file is gone from storage
/// (deleted by hand): the spec's answer to a mount that cannot be done is an ordinary upload
/// session (202), never a 201 for content that is not there.
async fn mount_of_a_blob_whose_file_is_gone_falls_back_to_an_upload_session() {
    let reg = registry();
    let data = b"a layer whose file an operator removed";
    let digest = reg.push_blob("src", data).await;
    // `dst` links it too, so the "already present in the target" shortcut is exercised.
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status.as_u16(), 201);

    let removed = reg
        .storage
        .blob_delete(&wharf_registry::names::Digest::parse(&digest).expect("digest"))
        .await
        .expect("delete behind the registry's back");
    assert!(removed, "the blob was stored");

    for (target, query) in [
        ("fresh", format!("mount={digest}&from=src")),
        ("dst", format!("mount={digest}&from=src")),
        ("auto", format!("mount={digest}")),
        ("dst", format!("mount={digest}")),
    ] {
        let r = reg
            .call(
                Method::POST,
                &format!("/v2/{target}/blobs/uploads/?{query}"),
                &[],
                b"",
            )
            .await;
        assert_eq!(r.status.as_u16(), 202, "{target}?{query}");
        assert!(
            r.header("location")
                .starts_with(&format!("/v2/{target}/blobs/uploads/")),
            "{target}?{query}: Location {:?}",
            r.header("location")
        );
        assert_eq!(
            reg.get(&format!("/v2/{target}/blobs/{digest}"))
                .await
                .status
                .as_u16(),
            404,
            "{target}: nothing to serve"
        );
    }

    // The session it fell back to is a real one: finishing it brings the blob back.
    let r = reg
        .call(
            Method::POST,
            &format!("/v2/fresh/blobs/uploads/?mount={digest}&from=src"),
            &[],
            b"",
        )
        .await;
    let session = r.header("location").to_string();
    let r = reg
        .call(
            Method::PUT,
            &with_query(&session, "digest", &digest),
            &[],
            data,
        )
        .await;
    assert_eq!(r.status.as_u16(), 201);
    let r = reg.get(&format!("/v2/fresh/blobs/{digest}")).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &data[..]));
}

on_each_backend!(
    pull_workflow,
    push_workflow,
    content_discovery_workflow,
    content_management_workflow,
    whole_suite_in_order_on_one_repository,
    whole_suite_deleting_blobs_before_manifests,
    whole_suite_over_a_socket,
    manifest_references_outside_the_tag_grammar_are_unknown_not_invalid,
    mount_of_a_blob_whose_file_is_gone_falls_back_to_an_upload_session,
);
