//! Any sequence of requests a client can send to `wharf registry serve` (the router, in
//! process, on the filesystem backend) gets an answer: no panic, and no `5xx` for what is only
//! the client's input. Requests are built from pieces that reach deep into the handlers (known
//! repository names, digests of blobs pushed at start, upload locations and tokens the registry
//! handed out earlier in the same input, manifests naming those blobs), each piece also
//! replaceable by arbitrary text.
//!
//! Three registries live for the whole process, with access control `none`, `basic` and `token`
//! (htpasswd user `u`, password `p`), each with a `[[proxy]]` entry `hub/` whose upstream does
//! not answer (127.0.0.1:9, the discard port, closed here): a `502`/`503`/`504` is allowed
//! under that prefix only, where it is the upstream's failure and says so.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use axum::Router;
use axum::body::Body;
use base64::Engine as _;
use http::{Method, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;
use wharf_registry::auth::{AuthConfig, ServerFacts, build};
use wharf_registry::{Config, app_state, router};

const NAMES: [&str; 4] = ["a", "lib/b", "c/d/e", "hub/library/x"];
const TAGS: [&str; 3] = ["latest", "v1", "1.0"];
const CONTENT_TYPES: [&str; 7] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/octet-stream",
    "application/json",
];

#[derive(Arbitrary, Debug)]
struct Input {
    /// Which registry: access control `none`, `basic` or `token`.
    mode: u8,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
struct Step {
    method: Meth,
    target: Target,
    query: Option<String>,
    headers: Vec<Hdr>,
    body: Payload,
    auth: Auth,
}

#[derive(Arbitrary, Debug)]
enum Meth {
    Get,
    Head,
    Put,
    Post,
    Patch,
    Delete,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Ref {
    Tag(u8),
    Digest(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Target {
    Base,
    Catalog,
    Token,
    Manifest(Name, Ref),
    Blob(Name, Ref),
    UploadStart(Name),
    /// A `Location` the registry answered earlier (index), with arbitrary text appended.
    Upload(u8, String),
    Tags(Name),
    Referrers(Name, Ref),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Hdr {
    ContentType(u8),
    Range(String),
    ContentRange(String),
    Accept(String),
    Any(String, String),
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Empty,
    Bytes(Vec<u8>),
    /// A blob pushed at start (index).
    Blob(u8),
    Manifest {
        index: bool,
        config: u8,
        layers: Vec<(u8, Option<u64>)>,
        subject: Option<u8>,
        artifact_type: Option<String>,
        extra: Option<String>,
    },
}

#[derive(Arbitrary, Debug)]
enum Auth {
    None,
    Good,
    Basic(String, String),
    /// A token the registry's token service handed out earlier in this input (index).
    Issued(u8),
    Bearer(String),
    Raw(String),
}

struct Registries {
    runtime: tokio::runtime::Runtime,
    /// Access control `none`, `basic` and `token`.
    apps: [Router; 3],
    blobs: Vec<(String, Vec<u8>)>,
    _dir: tempfile::TempDir,
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn registries() -> &'static Registries {
    static REGISTRIES: OnceLock<Registries> = OnceLock::new();
    REGISTRIES.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("htpasswd"),
            format!(
                "u:{}\n",
                wharf_registry::auth::htpasswd::hash_password("p", 4).expect("hash")
            ),
        )
        .expect("htpasswd");
        let apps = {
            let _guard = runtime.enter();
            ["none", "basic", "token"].map(|mode| registry(dir.path(), mode))
        };
        let blobs: Vec<(String, Vec<u8>)> = [
            b"layer one".to_vec(),
            b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec(),
            vec![0u8; 70_000],
            Vec::new(),
        ]
        .into_iter()
        .map(|b| (digest_of(&b), b))
        .collect();
        let registries = Registries {
            runtime,
            apps,
            blobs,
            _dir: dir,
        };
        // The blobs exist in every known repository of every registry (seeded here, checked).
        registries.runtime.block_on(async {
            for app in &registries.apps {
                for name in &NAMES[..3] {
                    for (digest, data) in &registries.blobs {
                        let req =
                            Request::post(format!("/v2/{name}/blobs/uploads/?digest={digest}"))
                                .header("authorization", good_basic())
                                .header("host", "127.0.0.1:5000")
                                .body(Body::from(data.clone()))
                                .expect("request");
                        let resp = app.clone().oneshot(req).await.expect("answer");
                        // Token mode answers 401 to Basic: push through a token.
                        if resp.status().as_u16() == 401 {
                            let token = issue_token(app, name).await;
                            let req =
                                Request::post(format!("/v2/{name}/blobs/uploads/?digest={digest}"))
                                    .header("authorization", format!("Bearer {token}"))
                                    .header("host", "127.0.0.1:5000")
                                    .body(Body::from(data.clone()))
                                    .expect("request");
                            let resp = app.clone().oneshot(req).await.expect("answer");
                            assert_eq!(resp.status().as_u16(), 201, "seeding {name} {digest}");
                        } else {
                            assert_eq!(resp.status().as_u16(), 201, "seeding {name} {digest}");
                        }
                    }
                }
            }
        });
        registries
    })
}

/// A registry under `dir/<mode>` with access control `mode` (htpasswd `dir/htpasswd`) and a
/// `[[proxy]]` entry `hub/` whose upstream does not answer.
fn registry(dir: &std::path::Path, mode: &str) -> Router {
    let root = dir.join(mode);
    let text = format!(
        "root = {root:?}\n\
         [[proxy]]\nprefix = \"hub/\"\nupstream = \"http://127.0.0.1:9\"\nttl = \"1h\"\n",
        root = root.display().to_string()
    );
    let config = Config::parse(&text, &dir.join("r.toml")).expect("config");
    let table: toml::Table =
        toml::from_str(&format!("mode = {mode:?}\nhtpasswd = \"htpasswd\"\n")).expect("auth");
    let auth = AuthConfig::from_table(&table, dir).expect("auth config");
    let setup = build(
        &auth,
        &ServerFacts {
            root,
            tls: false,
            default_host: "127.0.0.1:5000".into(),
        },
    )
    .expect("auth");
    router(
        app_state(&config, setup.authorizer).expect("state"),
        setup.routes.unwrap_or_default(),
    )
}

fn good_basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:p")
    )
}

async fn issue_token(app: &Router, name: &str) -> String {
    let req = Request::get(format!(
        "/token?service=127.0.0.1:5000&scope=repository:{name}:pull,push,delete"
    ))
    .header("authorization", good_basic())
    .header("host", "127.0.0.1:5000")
    .body(Body::empty())
    .expect("request");
    let resp = app.clone().oneshot(req).await.expect("answer");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("token json");
    json["token"].as_str().expect("token").to_string()
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

fn name_of(n: &Name) -> String {
    match n {
        Name::Known(i) => pick(&NAMES, *i).to_string(),
        Name::Any(s) => s.clone(),
    }
}

fn reference_of(r: &Ref, blobs: &[(String, Vec<u8>)], manifests: &[String]) -> String {
    match r {
        Ref::Tag(i) => pick(&TAGS, *i).to_string(),
        Ref::Digest(i) => {
            let all: Vec<&str> = blobs
                .iter()
                .map(|(d, _)| d.as_str())
                .chain(manifests.iter().map(String::as_str))
                .collect();
            pick(&all, *i).to_string()
        }
        Ref::Any(s) => s.clone(),
    }
}

fn manifest_body(p: &Payload, blobs: &[(String, Vec<u8>)], manifests: &[String]) -> Vec<u8> {
    let Payload::Manifest {
        index,
        config,
        layers,
        subject,
        artifact_type,
        extra,
    } = p
    else {
        return Vec::new();
    };
    let blob = |i: u8| &blobs[usize::from(i) % blobs.len()];
    let descriptor = |i: u8, size: Option<u64>, media: &str| {
        let (digest, data) = blob(i);
        serde_json::json!({
            "mediaType": media,
            "digest": digest,
            "size": size.unwrap_or(data.len() as u64),
        })
    };
    let mut doc = if *index {
        let children: Vec<serde_json::Value> = layers
            .iter()
            .map(|(i, size)| {
                let digest = manifests
                    .get(usize::from(*i) % manifests.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| blob(*i).0.clone());
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": size.unwrap_or(100),
                    "platform": {"architecture": "amd64", "os": "linux"},
                })
            })
            .collect();
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": children,
        })
    } else {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(*config, None, "application/vnd.oci.image.config.v1+json"),
            "layers": layers
                .iter()
                .map(|(i, size)| descriptor(*i, *size, "application/vnd.oci.image.layer.v1.tar"))
                .collect::<Vec<_>>(),
        })
    };
    if let Some(s) = subject {
        let digest = manifests
            .get(usize::from(*s) % manifests.len().max(1))
            .cloned()
            .unwrap_or_else(|| blob(*s).0.clone());
        doc["subject"] = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": 100,
        });
    }
    if let Some(t) = artifact_type {
        doc["artifactType"] = serde_json::Value::String(t.clone());
    }
    if let Some(e) = extra {
        doc["annotations"] = serde_json::json!({ "x": e });
    }
    serde_json::to_vec(&doc).expect("json")
}

fuzz_target!(|input: Input| {
    let regs = registries();
    let app = &regs.apps[usize::from(input.mode) % regs.apps.len()];
    regs.runtime.block_on(async {
        let mut locations: Vec<String> = Vec::new();
        let mut tokens: Vec<String> = Vec::new();
        let mut manifests: Vec<String> = Vec::new();
        for step in input.steps.iter().take(16) {
            let name = match &step.target {
                Target::Manifest(n, _)
                | Target::Blob(n, _)
                | Target::UploadStart(n)
                | Target::Tags(n)
                | Target::Referrers(n, _) => name_of(n),
                _ => String::new(),
            };
            let mut path = match &step.target {
                Target::Base => "/v2/".to_string(),
                Target::Catalog => "/v2/_catalog".to_string(),
                Target::Token => "/token".to_string(),
                Target::Manifest(_, r) => format!(
                    "/v2/{name}/manifests/{}",
                    reference_of(r, &regs.blobs, &manifests)
                ),
                Target::Blob(_, r) => format!(
                    "/v2/{name}/blobs/{}",
                    reference_of(r, &regs.blobs, &manifests)
                ),
                Target::UploadStart(_) => format!("/v2/{name}/blobs/uploads/"),
                Target::Upload(i, tail) => {
                    match locations.get(usize::from(*i) % locations.len().max(1)) {
                        Some(l) => format!("{l}{tail}"),
                        None => format!("/v2/a/blobs/uploads/{tail}"),
                    }
                }
                Target::Tags(_) => format!("/v2/{name}/tags/list"),
                Target::Referrers(_, r) => format!(
                    "/v2/{name}/referrers/{}",
                    reference_of(r, &regs.blobs, &manifests)
                ),
                Target::Raw(s) => s.clone(),
            };
            if let Some(q) = &step.query {
                path.push(if path.contains('?') { '&' } else { '?' });
                path.push_str(q);
            }
            // What hyper would refuse before any handler sees it.
            let Ok(uri) = path.parse::<http::Uri>() else {
                continue;
            };
            let method = match &step.method {
                Meth::Get => Method::GET,
                Meth::Head => Method::HEAD,
                Meth::Put => Method::PUT,
                Meth::Post => Method::POST,
                Meth::Patch => Method::PATCH,
                Meth::Delete => Method::DELETE,
                Meth::Other(s) => match Method::from_bytes(s.as_bytes()) {
                    Ok(m) => m,
                    Err(_) => continue,
                },
            };
            let mut req = Request::builder()
                .method(method.clone())
                .uri(uri)
                .header("host", "127.0.0.1:5000");
            for h in &step.headers {
                let (k, v) = match h {
                    Hdr::ContentType(i) => (
                        "content-type".to_string(),
                        pick(&CONTENT_TYPES, *i).to_string(),
                    ),
                    Hdr::Range(v) => ("range".into(), v.clone()),
                    Hdr::ContentRange(v) => ("content-range".into(), v.clone()),
                    Hdr::Accept(v) => ("accept".into(), v.clone()),
                    Hdr::Any(k, v) => {
                        // hyper sets these from the body itself.
                        let lower = k.to_ascii_lowercase();
                        if lower == "content-length"
                            || lower == "transfer-encoding"
                            || lower == "host"
                        {
                            continue;
                        }
                        (k.clone(), v.clone())
                    }
                };
                let (Ok(k), Ok(v)) = (
                    http::HeaderName::from_bytes(k.as_bytes()),
                    http::HeaderValue::from_str(&v),
                ) else {
                    continue;
                };
                req = req.header(k, v);
            }
            let authorization = match &step.auth {
                Auth::None => None,
                Auth::Good => Some(good_basic()),
                Auth::Basic(u, p) => Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )),
                Auth::Issued(i) => tokens
                    .get(usize::from(*i) % tokens.len().max(1))
                    .map(|t| format!("Bearer {t}")),
                Auth::Bearer(t) => Some(format!("Bearer {t}")),
                Auth::Raw(r) => Some(r.clone()),
            };
            if let Some(a) = authorization {
                match http::HeaderValue::from_str(&a) {
                    Ok(v) => req = req.header("authorization", v),
                    Err(_) => continue,
                }
            }
            let body = match &step.body {
                Payload::Empty => Vec::new(),
                Payload::Bytes(b) => b.clone(),
                Payload::Blob(i) => regs.blobs[usize::from(*i) % regs.blobs.len()].1.clone(),
                m @ Payload::Manifest { .. } => manifest_body(m, &regs.blobs, &manifests),
            };
            let sent_manifest =
                matches!(step.target, Target::Manifest(..)) && method == Method::PUT;
            let body_digest = digest_of(&body);
            let req = req.body(Body::from(body)).expect("request");
            let shown = format!("{method} {path}");
            let resp = app.clone().oneshot(req).await.expect("the router answers");
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp
                .into_body()
                .collect()
                .await
                .expect("the answer's body reads to its end")
                .to_bytes();
            let upstream_failure = name.starts_with("hub/") && matches!(status, 502..=504);
            assert!(
                status < 500 || upstream_failure,
                "{shown} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
            if status == 202 {
                if let Some(l) = location {
                    if l.starts_with('/') && locations.len() < 8 {
                        locations.push(l);
                    }
                }
            }
            if sent_manifest && status == 201 {
                manifests.push(body_digest);
            }
            if matches!(step.target, Target::Token) && status == 200 {
                if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) {
                    if let Some(t) = json["token"].as_str() {
                        tokens.push(t.to_string());
                    }
                }
            }
        }
    });
});
