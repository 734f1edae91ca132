//! A CNCF distribution (`docker-registry`) child process on a free loopback port.

use std::fs;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{IoContext as _, command_output};
use crate::token::{ISSUER, SERVICE, TokenRequestLog, TokenServer};
use crate::{Error, http};

/// Path of the Debian `docker-registry` binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// The htpasswd realm of [`Registry::start_basic`].
pub const BASIC_REALM: &str = "basic-realm";
/// How long [`Registry`] constructors wait for `GET /v2/` to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`Registry`] authenticates clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// No authentication.
    Open,
    /// HTTP Basic against an htpasswd (bcrypt) file.
    Basic,
    /// Docker token authentication against the in-process token server.
    Token,
}

/// A running `docker-registry serve` process listening on `127.0.0.1:<port>`, with its
/// own temporary storage. Dropping it kills the process (and the token server, if any)
/// and removes the temporary directory.
pub struct Registry {
    child: Child,
    port: u16,
    kind: AuthKind,
    token: Option<TokenServer>,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .field("kind", &self.kind)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry without authentication.
    pub fn start_open() -> Result<Registry, Error> {
        Self::start(false, AuthKind::Open, String::new(), None, None, |_| Ok(()))
    }

    /// A registry without authentication on an S3 bucket (distribution's S3 driver, with its
    /// default redirects of blob GET/HEAD to presigned URLs), for comparisons with wharf on the
    /// same S3 server. It runs without `AWS_CA_BUNDLE`, which makes its driver panic at start.
    pub fn start_open_on_s3(s3: &S3Bucket) -> Result<Registry, Error> {
        Self::start(
            false,
            AuthKind::Open,
            String::new(),
            None,
            Some(s3.storage_yaml()),
            |_| Ok(()),
        )
    }

    /// Docker Hub's shape: Docker token authentication (as [`Registry::start_token`]) and the
    /// blobs on an S3 bucket, a blob GET answered with a 307 to a presigned URL of the S3
    /// server, which a client must fetch without the registry's `Authorization` header.
    pub fn start_token_on_s3(users: &[(&str, &str)], s3: &S3Bucket) -> Result<Registry, Error> {
        Self::token(users, Some(s3.storage_yaml()))
    }

    /// A registry with htpasswd (bcrypt) authentication for `users`, realm `basic-realm`.
    pub fn start_basic(users: &[(&str, &str)]) -> Result<Registry, Error> {
        Self::basic(users, false)
    }

    fn basic(users: &[(&str, &str)], access_log: bool) -> Result<Registry, Error> {
        let entries = users
            .iter()
            .map(|(u, p)| htpasswd_entry(u, p))
            .collect::<Result<Vec<_>, _>>()?;
        Self::start(
            access_log,
            AuthKind::Basic,
            String::new(),
            None,
            None,
            move |dir: &Path| {
                let file = dir.join("htpasswd");
                fs::write(&file, entries.concat()).ctx(|| format!("writing {}", file.display()))?;
                Ok(())
            },
        )
    }

    /// [`Registry::start_basic`] that also writes an access log (one line per request, naming
    /// the method and URL), read with [`Registry::access_log`]: to count upstream requests.
    pub fn start_basic_logged(users: &[(&str, &str)]) -> Result<Registry, Error> {
        Self::basic(users, true)
    }

    /// The access log of a [`Registry::start_basic_logged`] registry (distribution writes it to
    /// stdout in the combined log format: `"GET /v2/... HTTP/1.1" 200 ...`).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// Kills the registry process (its storage stays): an upstream that went down.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A registry with Docker token authentication, backed by an in-process token server
    /// that knows `users` (they get pull and push on every repository; anonymous gets nothing).
    pub fn start_token(users: &[(&str, &str)]) -> Result<Registry, Error> {
        Self::token(users, None)
    }

    fn token(users: &[(&str, &str)], storage: Option<String>) -> Result<Registry, Error> {
        let server = TokenServer::start(users)?;
        let cert = server.state.signer.cert_pem().to_string();
        let realm = server.realm();
        Self::start(
            false,
            AuthKind::Token,
            realm,
            Some(server),
            storage,
            move |dir: &Path| {
                let file = dir.join("token-root.pem");
                fs::write(&file, &cert).ctx(|| format!("writing {}", file.display()))?;
                Ok(())
            },
        )
    }

    fn start(
        access_log: bool,
        kind: AuthKind,
        realm: String,
        token: Option<TokenServer>,
        storage: Option<String>,
        prepare: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<Registry, Error> {
        let dir = tempfile::Builder::new()
            .prefix("wharf-registry-")
            .tempdir()
            .ctx(|| "creating the registry temp dir".to_string())?;
        prepare(dir.path())?;
        let port = free_port()?;
        let config = config_yaml(
            dir.path(),
            port,
            kind,
            &realm,
            storage.as_deref(),
            access_log,
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).ctx(|| format!("writing {}", config_path.display()))?;

        let log = |name: &str| -> Result<fs::File, Error> {
            let p = dir.path().join(name);
            fs::File::create(&p).ctx(|| format!("creating {}", p.display()))
        };
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log("stdout.log")?)
            .stderr(log("stderr.log")?);
        for (k, _) in std::env::vars_os() {
            let k_str = k.to_string_lossy();
            if k_str.starts_with("REGISTRY_") || k_str.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .spawn()
            .ctx(|| format!("starting {REGISTRY_BIN} (Debian package docker-registry)"))?;
        let mut registry = Registry {
            child,
            port,
            kind,
            token,
            dir,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/v2/", self.url());
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("the process exited: {status}")));
            }
            let last = match http::get(&url, &[]) {
                Ok(r) if r.status == 200 || r.status == 401 => return Ok(()),
                Ok(r) => format!("GET /v2/ answered {}", r.status),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(
                    self.not_ready(format!("timed out after {READY_TIMEOUT:?}; last: {last}"))
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn not_ready(&self, reason: String) -> Error {
        Error::NotReady {
            server: "registry",
            addr: self.host(),
            reason,
            stderr: self.stderr_tail(),
        }
    }

    /// The last few KiB of the registry's log (distribution logs to stderr).
    pub fn stderr_tail(&self) -> String {
        let mut text = String::new();
        for name in ["stderr.log", "stdout.log"] {
            let mut buf = Vec::new();
            if fs::File::open(self.dir.path().join(name))
                .and_then(|mut f| f.read_to_end(&mut buf))
                .is_ok()
            {
                text.push_str(&String::from_utf8_lossy(&buf));
            }
        }
        let keep = 4096;
        if text.len() > keep {
            let mut start = text.len() - keep;
            while !text.is_char_boundary(start) {
                start += 1;
            }
            text = text[start..].to_string();
        }
        text
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How this registry authenticates.
    pub fn auth_kind(&self) -> AuthKind {
        self.kind
    }

    /// The registry's temporary directory (config, storage, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The storage root directory.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The token realm (`http://127.0.0.1:P/token`) of a token registry.
    pub fn token_url(&self) -> Option<String> {
        self.token.as_ref().map(TokenServer::realm)
    }

    /// The `service` a token registry expects (`wharf-test-registry`).
    pub fn service(&self) -> Option<&'static str> {
        self.token.as_ref().map(|_| SERVICE)
    }

    /// Mint a bearer token for `user` (a known user) and `scope` (one or more
    /// space-separated scopes such as `repository:app:pull`), usable as
    /// `Authorization: Bearer` and as Docker's `registrytoken`.
    pub fn issue_token(&self, user: &str, scope: &str) -> Result<String, Error> {
        let server = self.token.as_ref().ok_or(Error::NotTokenAuth)?;
        if !server.state.knows(user) {
            return Err(Error::UnknownUser(user.to_string()));
        }
        let scopes: Vec<&str> = scope.split_whitespace().collect();
        let access = crate::token::grant(Some(user), &scopes);
        server.state.signer.sign(user, &access)
    }

    /// Requests the token server has answered so far (empty for non-token registries).
    pub fn token_requests(&self) -> Vec<TokenRequestLog> {
        self.token
            .as_ref()
            .map(|t| t.state.log())
            .unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The token server and the temp dir are dropped after this.
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").ctx(|| "binding 127.0.0.1:0".to_string())?;
    let port = listener
        .local_addr()
        .ctx(|| "reading the bound port".to_string())?
        .port();
    Ok(port)
}

fn htpasswd_entry(user: &str, password: &str) -> Result<String, Error> {
    let out = command_output(
        Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .stdin(Stdio::null()),
        || format!("htpasswd -Bbn {user} <redacted> (Debian package apache2-utils)"),
    )?;
    Ok(format!("{}\n", out.trim()))
}

fn yaml_str(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::Value::String(s.to_string()).to_string()
}

/// An S3 bucket for [`Registry::start_open_on_s3`] and [`Registry::start_token_on_s3`]
/// (path-style, plain http).
#[derive(Clone)]
pub struct S3Bucket {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Bucket {
    /// The registry config's `storage:` section for this bucket (distribution's S3 driver).
    fn storage_yaml(&self) -> String {
        format!(
            "storage:\n  s3:\n    accesskey: {}\n    secretkey: {}\n    region: {}\n    \
             regionendpoint: {}\n    bucket: {}\n    secure: false\n    v4auth: true\n    \
             rootdirectory: /registry\n",
            yaml_str(&self.access_key),
            yaml_str(&self.secret_key),
            yaml_str(&self.region),
            yaml_str(&self.endpoint),
            yaml_str(&self.bucket),
        )
    }
}

/// `storage`: a YAML `storage:` section replacing the filesystem one.
fn config_yaml(
    dir: &Path,
    port: u16,
    kind: AuthKind,
    realm: &str,
    storage: Option<&str>,
    access_log: bool,
) -> String {
    let p = |name: &str| yaml_str(&dir.join(name).to_string_lossy());
    let auth = match kind {
        AuthKind::Open => String::new(),
        AuthKind::Basic => format!(
            "auth:\n  htpasswd:\n    realm: {}\n    path: {}\n",
            yaml_str(BASIC_REALM),
            p("htpasswd")
        ),
        AuthKind::Token => format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            yaml_str(realm),
            yaml_str(SERVICE),
            yaml_str(ISSUER),
            p("token-root.pem")
        ),
    };
    let secret = format!("wharf-testkit-{}-{port}", std::process::id());
    let storage = match storage {
        Some(section) => section.to_string(),
        None => format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n",
            p("storage")
        ),
    };
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: {no_access_log}\n\
         {storage}  delete:\n    enabled: true\n  \
         cache:\n    blobdescriptor: inmemory\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {addr}\n  secret: {secret}\n\
         health:\n  storagedriver:\n    enabled: false\n\
         {auth}",
        addr = yaml_str(&format!("127.0.0.1:{port}")),
        secret = yaml_str(&secret),
        no_access_log = !access_log,
    )
}
