//! Helpers shared by the in-process test binaries (`api.rs`, `conformance.rs`): a registry on a
//! temp dir driven through the router with tower's `oneshot`, and small request/response helpers.
//!
//! Tests listed in [`on_each_backend!`] run once per storage backend: `fs::<name>` on the
//! filesystem, `s3::<name>` on a fresh bucket of a real Ceph RGW and `moto::<name>` on one of
//! moto's S3 server, a second implementation (`#[ignore]`d tiers, run by
//! `scripts/test-all.sh`), with blob GET/HEAD redirected to presigned URLs as in production.

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod interposed;
pub mod s3_relay;

use std::net::SocketAddr;
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
use wharf_registry::config::{Secret, StorageConfig};
use wharf_registry::storage::Storage;
use wharf_registry::{AppState, Config, app_state, router};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `location` (an upload URL, which may carry its own query) with `digest=` appended.
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Where a test's registry keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Fs,
    S3,
}

/// Which S3 server a test on S3 uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Implementation {
    /// Ceph's RADOS gateway: strict like AWS.
    Rgw,
    /// moto's server: a second implementation, modelled on AWS's answers.
    Moto,
}

tokio::task_local! {
    static BACKEND: Backend;
    static S3_IMPLEMENTATION: S3Implementation;
}

/// The backend of the running test (set by [`on_each_backend!`]; the filesystem otherwise).
pub fn backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Fs)
}

/// The S3 server of the running test: moto's inside [`on_moto`], Ceph's RGW otherwise.
pub fn s3_server() -> &'static wharf_testkit::S3Server {
    match S3_IMPLEMENTATION
        .try_with(|i| *i)
        .unwrap_or(S3Implementation::Rgw)
    {
        S3Implementation::Rgw => {
            wharf_testkit::rgw::shared().expect("Ceph RGW (ceph-mon ceph-osd radosgw)")
        }
        S3Implementation::Moto => wharf_testkit::moto::shared()
            .expect("moto's S3 server (scripts/test-all.sh installs it)"),
    }
}

/// Runs `test` with registries on S3: on the server [`on_moto`] chose around it, else on RGW.
pub async fn on_s3<F: std::future::Future>(test: F) -> F::Output {
    let implementation = S3_IMPLEMENTATION
        .try_with(|i| *i)
        .unwrap_or(S3Implementation::Rgw);
    BACKEND
        .scope(Backend::S3, S3_IMPLEMENTATION.scope(implementation, test))
        .await
}

/// Runs `test` with registries on moto's S3 server (an `on_s3` inside stays there).
pub async fn on_moto<F: std::future::Future>(test: F) -> F::Output {
    S3_IMPLEMENTATION
        .scope(S3Implementation::Moto, on_s3(test))
        .await
}

/// Declares the `fs::` and `s3::` variants of plain `async fn` tests of this file.
#[macro_export]
macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name().await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                #[ignore = "needs Ceph RGW: run by scripts/test-all.sh"]
                async fn $name() {
                    super::common::on_s3(super::$name()).await
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test]
                #[ignore = "needs moto's S3 server: run by scripts/test-all.sh"]
                async fn $name() {
                    super::common::on_moto(super::$name()).await
                }
            )*
        }
    };
}

/// Declares the `rgw::` and `moto::` variants of plain `async fn` tests of this file that run
/// on S3 only (each wraps its body in [`on_s3`], which keeps the server chosen here).
#[macro_export]
macro_rules! on_each_s3_server {
    ($($name:ident),* $(,)?) => {
        mod rgw {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs Ceph RGW: run by scripts/test-all.sh"]
                async fn $name() {
                    super::$name().await
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs moto's S3 server: run by scripts/test-all.sh"]
                async fn $name() {
                    super::common::on_moto(super::$name()).await
                }
            )*
        }
    };
}

pub struct Reg {
    pub app: Router,
    pub dir: tempfile::TempDir,
    /// The configuration the server was started with (its storage: a temp dir or a bucket).
    pub config: Config,
    /// The server's storage, to change things behind its back.
    pub storage: Arc<dyn Storage>,
    /// Set by [`registry_on_socket`]: requests then go over a loopback socket to the real server.
    pub socket: Option<Socket>,
}

/// A real server on 127.0.0.1; dropping this stops it.
pub struct Socket {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
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

/// A configuration for the current [`backend`]: `root` for the filesystem, a fresh bucket on
/// the test's [`s3_server`] for S3 (with `root` still holding local files such as auth keys).
pub fn config(root: &Path) -> Config {
    let mut config = Config {
        root: root.to_path_buf(),
        ..Config::default()
    };
    if backend() == Backend::S3 {
        let server = s3_server();
        let bucket = server.bucket().expect("a fresh bucket");
        config.storage = StorageConfig {
            url: Some(format!("s3://{bucket}/registry")),
            endpoint: Some(server.endpoint().to_string()),
            region: Some(wharf_testkit::REGION.to_string()),
            access_key_id: Some(Secret::new(server.access_key())),
            secret_access_key: Some(Secret::new(server.secret_key())),
            ..StorageConfig::default()
        };
    }
    config
}

pub fn app_with(config: &Config, auth: Arc<dyn Authorizer>) -> Router {
    router(app_state(config, auth).expect("state"), Router::new())
}

pub fn app_at(root: &Path, auth: Arc<dyn Authorizer>) -> Router {
    app_with(&config(root), auth)
}

pub fn registry() -> Reg {
    registry_with(Arc::new(AllowAll))
}

pub fn registry_with(auth: Arc<dyn Authorizer>) -> Reg {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    registry_configured(dir, config, auth)
}

/// A registry started with `config` (made by [`config`] for `dir`, then changed by the test).
pub fn registry_configured(
    dir: tempfile::TempDir,
    config: Config,
    auth: Arc<dyn Authorizer>,
) -> Reg {
    let state: AppState = app_state(&config, auth).expect("state");
    Reg {
        storage: state.registry.storage().clone(),
        app: router(state, Router::new()),
        dir,
        config,
        socket: None,
    }
}

/// A registry served by `serve_on` on 127.0.0.1 (no auth), for what only the wire shows:
/// hyper's framing of HEAD and 204 answers, query escaping, connection handling.
pub async fn registry_on_socket() -> Reg {
    let reg = registry();
    let mut served = replica_on_socket(&reg.config).await;
    served.dir = reg.dir;
    served
}

/// A server started with `config`, as `wharf registry serve` would, on its own loopback port:
/// with S3 storage, a replica of every other server on the same bucket (its own upload sessions
/// in memory, nothing else shared).
pub async fn replica_on_socket(config: &Config) -> Reg {
    let state = app_state(config, Arc::new(AllowAll)).expect("state");
    let storage = state.registry.storage().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(wharf_registry::serve_on(
        listener,
        config.clone(),
        state,
        Router::new(),
        async {
            // Resolves when the sender is dropped with the `Reg`.
            let _ = stopped.await;
        },
    ));
    Reg {
        app: Router::new(),
        dir: tempfile::tempdir().expect("tempdir"),
        config: config.clone(),
        storage,
        socket: Some(Socket { addr, _stop: stop }),
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
        let r = match &self.socket {
            Some(socket) => send_over_socket(socket.addr, method.clone(), uri, headers, body).await,
            None => send(&self.app, method.clone(), uri, headers, body).await,
        };
        follow_blob_redirect(r, method, headers).await
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

/// `r` answers a request a full storage refused: `507`, what to do, and nothing of `hidden`
/// (the server's root folder, its bucket).
pub fn assert_storage_full(r: &Resp, hidden: &str) {
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert!(body.contains("storage is full"), "{body}");
    assert!(body.contains("wharf registry gc"), "{body}");
    assert!(
        !body.contains(hidden),
        "{hidden} reached the client: {body}"
    );
}

impl Reg {
    /// Starts a chunked upload in `repo`, sends `chunk` to it and returns its location and the
    /// answer to that `PATCH`.
    pub async fn patch_new_upload(&self, repo: &str, chunk: &[u8]) -> (String, Resp) {
        let location = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/"),
                &[],
                b"",
            )
            .await
            .header("location")
            .to_string();
        let r = self.call(Method::PATCH, &location, &[], chunk).await;
        (location, r)
    }

    /// How many bytes the storage holds for the upload at `location`.
    pub async fn upload_size(&self, location: &str) -> u64 {
        let id = location.rsplit('/').next().expect("id");
        let status = self.storage.upload_info(id).await.expect("info");
        status.expect("the upload session").object.size
    }
}

/// Follows a `307` to storage (S3's presigned blob URLs) as clients do: same method, the same
/// headers (`Range`...) but no credentials. The registry's `Docker-Content-Digest` was on the
/// redirect, which the client saw too: kept when storage's answer has none.
pub async fn follow_blob_redirect(r: Resp, method: Method, headers: &[(&str, &str)]) -> Resp {
    if r.status != StatusCode::TEMPORARY_REDIRECT {
        return r;
    }
    let location = url::Url::parse(r.header("location")).expect("an absolute redirect");
    let addr: SocketAddr = format!(
        "{}:{}",
        location.host_str().expect("host"),
        location.port_or_known_default().expect("port")
    )
    .parse()
    .expect("a loopback address");
    let target = match location.query() {
        Some(q) => format!("{}?{q}", location.path()),
        None => location.path().to_string(),
    };
    let kept: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .copied()
        .collect();
    let mut followed = send_over_socket(addr, method, &target, &kept, Body::empty()).await;
    if !followed.headers.contains_key("docker-content-digest")
        && let Some(digest) = r.headers.get("docker-content-digest")
    {
        followed
            .headers
            .insert("docker-content-digest", digest.clone());
    }
    followed
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

/// One HTTP/1.1 request on a fresh connection (`Connection: close`, so the answer ends at EOF).
/// Like Go's client, the body's own length is sent and a caller's `Content-Length` is ignored.
pub async fn send_over_socket(
    addr: SocketAddr,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Resp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.collect().await.expect("request body").to_bytes();
    let mut request = format!("{method} {uri} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("content-length") {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if !body.is_empty() || matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await?;
        // One write, so that a small body arrives with the head: a server that answers
        // without reading the body (docker-registry's monolithic POST) and closes finds it
        // already read, and closes with a FIN instead of resetting the connection (a reset can
        // reach us before its answer, which is then lost).
        let mut head_and_body = request.into_bytes();
        head_and_body.extend_from_slice(&body);
        conn.write_all(&head_and_body).await?;
        let mut response = Vec::new();
        conn.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    // A guard against a hung server, not a timing assertion.
    let response = tokio::time::timeout(std::time::Duration::from_secs(30), exchange)
        .await
        .expect("the server answers")
        .unwrap_or_else(|e| panic!("{method} {uri} on {addr}: {e}"));
    parse_response(&response)
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of the response head");
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').expect("header line");
        headers.append(
            http::HeaderName::from_bytes(k.trim().as_bytes()).expect("header name"),
            http::HeaderValue::from_str(v.trim()).expect("header value"),
        );
    }
    let rest = &raw[split + 4..];
    let chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status: StatusCode::from_u16(code).expect("status"),
        headers,
        body: Bytes::from(body),
    }
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_field = std::str::from_utf8(&raw[..eol]).expect("ASCII chunk size");
        let size = usize::from_str_radix(size_field.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
}
