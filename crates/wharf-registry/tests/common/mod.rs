//! Helpers shared by the in-process test binaries (`api.rs`, `conformance.rs`): a registry on a
//! temp dir driven through the router with tower's `oneshot`, and small request/response helpers.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;
use wharf_registry::auth::{AllowAll, Authorizer};
use wharf_registry::{Config, app_state, router};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

pub struct Reg {
    pub app: Router,
    pub dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

pub fn config(root: &Path) -> Config {
    Config {
        root: root.to_path_buf(),
        ..Config::default()
    }
}

pub fn app_at(root: &Path, auth: Arc<dyn Authorizer>) -> Router {
    router(
        app_state(&config(root), auth).expect("state"),
        Router::new(),
    )
}

pub fn registry() -> Reg {
    registry_with(Arc::new(AllowAll))
}

pub fn registry_with(auth: Arc<dyn Authorizer>) -> Reg {
    let dir = tempfile::tempdir().expect("tempdir");
    Reg {
        app: app_at(dir.path(), auth),
        dir,
    }
}

impl Reg {
    pub fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Resp {
        send(&self.app, method, uri, headers, body).await
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Resp {
        self.send(method, uri, headers, Body::from(body.to_vec()))
            .await
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, &[], b"").await
    }

    /// Monolithic push; returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = digest_of(data);
        let r = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                data,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        digest
    }

    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.call(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body,
        )
        .await
    }

    /// Pushes a config and one layer, then an image manifest tagged `tag`; returns its bytes.
    pub async fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> Vec<u8> {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let c = self.push_blob(repo, config).await;
        let l = self.push_blob(repo, layer).await;
        let manifest = image_manifest(&c, config.len(), &l, layer.len(), None);
        let r = self.push_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        manifest
    }
}

pub async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

pub fn image_manifest(
    config: &str,
    config_size: usize,
    layer: &str,
    layer_size: usize,
    subject: Option<(&str, usize)>,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}],
    });
    if let Some((digest, size)) = subject {
        m["subject"] =
            serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": size});
        m["artifactType"] = serde_json::json!("application/vnd.example.sig");
        m["annotations"] = serde_json::json!({"org.example": "yes"});
    }
    serde_json::to_vec(&m).expect("json")
}
