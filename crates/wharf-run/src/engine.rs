//! The Docker Engine API, through bollard, plus our own image-pull call.
//!
//! Why our own pull: bollard 0.21 encodes `X-Registry-Auth` with *standard* base64, while dockerd
//! decodes it as base64url and, for a pull, silently falls back to *no credentials* when decoding
//! fails. Passwords whose JSON encodes to `+` or `/` would then fail with "no basic auth
//! credentials" at random. The Docker CLI, docker-py and podman all send base64url.

use base64::Engine as _;
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use std::collections::HashMap;
use tokio::sync::watch;
use wharf_oci::RegistryAuth;

const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "cannot reach the Docker daemon at {host}: {reason}\n  fix: start dockerd (or set DOCKER_HOST), or run jobs without `image:` through `--executor shell`"
    )]
    Unreachable { host: String, reason: String },
    #[error("Docker daemon error: {0}")]
    Api(String),
    #[error("canceled")]
    Canceled,
}

/// Why a pull failed, as GitLab's runner classifies it: only `Network` is worth a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullFailure {
    /// The registry wants credentials and none were sent.
    NoCredentials(String),
    /// Credentials were sent and the registry refused them.
    Denied(String),
    /// The image or tag does not exist.
    NotFound(String),
    /// Connection problems; retried.
    Network(String),
    Other(String),
}

impl PullFailure {
    pub fn classify(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        let msg = message.to_string();
        if m.contains("no basic auth credentials") || m.contains("authentication required") {
            Self::NoCredentials(msg)
        } else if m.contains("unauthorized")
            || m.contains("denied")
            || m.contains("incorrect username or password")
            || m.contains("forbidden")
        {
            Self::Denied(msg)
        } else if m.contains("manifest unknown")
            || m.contains("not found")
            || m.contains("does not exist")
            || m.contains("name unknown")
        {
            Self::NotFound(msg)
        } else if m.contains("connection refused")
            || m.contains("timeout")
            || m.contains("no such host")
            || m.contains("connection reset")
            || m.contains("eof")
            || m.contains("network is unreachable")
            || m.contains("temporary failure")
            || m.contains("tls handshake")
        {
            Self::Network(msg)
        } else {
            Self::Other(msg)
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::NoCredentials(m)
            | Self::Denied(m)
            | Self::NotFound(m)
            | Self::Network(m)
            | Self::Other(m) => m,
        }
    }
}

/// What happened to a pull's progress stream, for the job log.
pub enum PullEvent {
    /// A status worth keeping in the log ("Pulling from node", "Digest: ...", "Status: ...").
    Status(String),
    /// Transient progress ("a1b2: Downloading 3.1MB/10MB"): terminal only.
    Progress(String),
}

pub struct Engine {
    docker: Docker,
    host: String,
    api_version: String,
    /// The daemon maps container users to other host users (`userns-remap`, rootless).
    remaps_users: bool,
}

#[derive(Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    /// Empty: the image's own `CMD`.
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub binds: Vec<String>,
    /// Empty: the image's own `WORKDIR`.
    pub working_dir: String,
    pub labels: HashMap<String, String>,
    pub user: Option<String>,
    /// `container:<id>` to join another container's network namespace (services); `None`: the
    /// daemon's default. wharf never creates Docker networks.
    pub network_mode: Option<String>,
    /// `/etc/hosts` entries (`name:ip`). Only allowed on the container that owns the namespace:
    /// the ones joining it share its `/etc/hosts`.
    pub extra_hosts: Vec<String>,
    /// `HostConfig.Memory` in bytes, with `MemorySwap` the same (no swap on top: the limit is
    /// real). `None`: unlimited.
    pub memory: Option<u64>,
    /// `HostConfig.PidsLimit`. `None`: unlimited.
    pub pids_limit: Option<u64>,
}

pub struct ImageInfo {
    pub id: String,
    pub repo_digests: Vec<String>,
    /// `EXPOSE`d ports as the image config lists them (`"5432/tcp"`, `"53/udp"`).
    pub exposed_ports: Vec<String>,
    /// The config's `User` (`name`, `uid`, `uid:gid`...); empty: root.
    pub user: String,
}

/// What a container is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub running: bool,
    /// The container's init process as dockerd's PID namespace sees it (0 when not running).
    pub pid: i64,
    pub exit_code: Option<i64>,
    /// dockerd's word for it: `created`, `running`, `exited`...
    pub status: String,
    /// The kernel killed a process of the container for reaching its memory limit.
    pub oom_killed: bool,
}

impl Engine {
    /// Connect to `DOCKER_HOST` (or the default socket) and agree on an API version.
    pub async fn connect(docker_host: Option<&str>) -> Result<Self, EngineError> {
        let host = docker_host
            .filter(|h| !h.is_empty())
            .unwrap_or(DEFAULT_HOST)
            .to_string();
        let unreachable = |reason: String| EngineError::Unreachable {
            host: host.clone(),
            reason,
        };
        let docker = Docker::connect_with_host(&host).map_err(|e| unreachable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let v = docker.client_version();
        let api_version = format!("{}.{}", v.major_version, v.minor_version);
        // A daemon that does not say is taken as mapping no users, as most do.
        let security_options = docker
            .info()
            .await
            .ok()
            .and_then(|info| info.security_options)
            .unwrap_or_default();
        Ok(Self {
            docker,
            host,
            api_version,
            remaps_users: remaps_users(&security_options),
        })
    }

    pub async fn inspect_image(&self, image: &str) -> Result<Option<ImageInfo>, EngineError> {
        match self.docker.inspect_image(image).await {
            Ok(info) => {
                let config = info.config.unwrap_or_default();
                Ok(Some(ImageInfo {
                    id: info.id.unwrap_or_default(),
                    repo_digests: info.repo_digests.unwrap_or_default(),
                    exposed_ports: config.exposed_ports.unwrap_or_default(),
                    user: config.user.unwrap_or_default(),
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::Api(e.to_string())),
        }
    }

    /// `POST /images/create` with base64url `X-Registry-Auth`; calls `on_event` for progress.
    pub async fn pull(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
        on_event: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<(), PullFailure> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("fromImage", image)
            .finish();
        let uri = format!("/v{}/images/create?{query}", self.api_version);
        let mut req = hyper::Request::post(uri).header(hyper::header::HOST, "docker");
        if let Some(auth) = auth {
            req = req.header("X-Registry-Auth", registry_auth_header(auth));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| PullFailure::Other(e.to_string()))?;
        let response = self.send(req).await.map_err(PullFailure::Network)?;
        let status = response.status();
        let mut body = response.into_body();
        let mut buf: Vec<u8> = Vec::new();
        let mut error: Option<String> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| PullFailure::Network(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if let Some(e) = handle_pull_line(&line, on_event) {
                    error = Some(e);
                }
            }
        }
        if !buf.is_empty() {
            if let Some(e) = handle_pull_line(&buf, on_event) {
                error = Some(e);
            }
        }
        if let Some(e) = error {
            return Err(PullFailure::classify(&e));
        }
        if !status.is_success() {
            return Err(PullFailure::classify(&format!("HTTP {status}")));
        }
        Ok(())
    }

    async fn send(
        &self,
        req: hyper::Request<Empty<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        if let Some(path) = self.host.strip_prefix("unix://") {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| e.to_string())?;
            send_over(stream, req).await
        } else if let Some(addr) = self
            .host
            .strip_prefix("tcp://")
            .or_else(|| self.host.strip_prefix("http://"))
        {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            send_over(stream, req).await
        } else {
            Err(format!(
                "unsupported DOCKER_HOST `{}` (use unix:// or tcp://)",
                self.host
            ))
        }
    }

    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
            env: Some(spec.env.clone()),
            working_dir: (!spec.working_dir.is_empty()).then(|| spec.working_dir.clone()),
            labels: Some(spec.labels.clone()),
            user: spec.user.clone(),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            host_config: Some(HostConfig {
                binds: Some(spec.binds.clone()),
                network_mode: spec.network_mode.clone(),
                extra_hosts: (!spec.extra_hosts.is_empty()).then(|| spec.extra_hosts.clone()),
                memory: spec.memory.map(saturating_i64),
                memory_swap: spec.memory.map(saturating_i64),
                pids_limit: spec.pids_limit.map(saturating_i64),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| EngineError::Api(e.to_string()))?;
        Ok(created.id)
    }

    /// Start `id`, stream its output to `on_output`, and return its exit code. On cancel the
    /// caller removes the container.
    pub async fn run(
        &self,
        id: &str,
        on_output: &mut (dyn FnMut(&[u8]) + Send),
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<i64, EngineError> {
        // Output comes from the container's log, followed from the start, not from an attach:
        // dockerd subscribes an attach to the live stream and then replays the log, so a job
        // that runs during the replay (a loaded machine) had its whole output twice; and an
        // attach without the replay can miss the first lines. The log is one ordered source.
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| EngineError::Api(e.to_string()))?;
        let logs_opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .follow(true)
            .build();
        let mut output = self.docker.logs(id, Some(logs_opts));
        loop {
            tokio::select! {
                item = output.next() => match item {
                    Some(Ok(chunk)) => on_output(&chunk.into_bytes()),
                    Some(Err(e)) => {
                        return Err(EngineError::Api(format!(
                            "reading the job container's output: {e}\n  fix: use a log driver dockerd can read back (json-file or local, the default)"
                        )));
                    }
                    None => break,
                },
                _ = cancel.changed() => return Err(EngineError::Canceled),
            }
        }
        let wait_opts = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut wait = self.docker.wait_container(id, Some(wait_opts));
        tokio::select! {
            status = wait.next() => match status {
                Some(Ok(s)) => Ok(s.status_code),
                // bollard turns a non-zero exit into an error; it is still just an exit code.
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
                Some(Err(e)) => Err(EngineError::Api(e.to_string())),
                None => Err(EngineError::Api("wait returned nothing".into())),
            },
            _ = cancel.changed() => Err(EngineError::Canceled),
        }
    }

    /// Start a created container without attaching to it (service containers: their output
    /// stays out of the job log).
    pub async fn start(&self, id: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| EngineError::Api(e.to_string()))
    }

    pub async fn container_state(&self, id: &str) -> Result<ContainerState, EngineError> {
        let info = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| EngineError::Api(e.to_string()))?;
        let state = info.state.unwrap_or_default();
        Ok(ContainerState {
            running: state.running.unwrap_or(false),
            pid: state.pid.unwrap_or(0),
            exit_code: state.exit_code,
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }

    /// The last `lines` lines of a container's output (stdout and stderr), for warnings.
    pub async fn logs_tail(&self, id: &str, lines: usize) -> Result<String, EngineError> {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.docker.logs(id, Some(opts));
        let mut out = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => out.extend_from_slice(&chunk.into_bytes()),
                Err(e) => return Err(EngineError::Api(e.to_string())),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Whether a container's uid is another uid on this host (`userns-remap`, rootless
    /// dockerd): then wharf cannot know which host user a job's user is.
    pub fn remaps_users(&self) -> bool {
        self.remaps_users
    }

    /// `DOCKER_HOST` as connected to, so a cleanup can reconnect from another thread.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Read files of `image` (absolute paths) from a container created from it and never
    /// started: dockerd resolves each path inside the image's own root, so nothing in the image
    /// can lead the read elsewhere, and nothing of the image runs. A missing file, or one that
    /// is not a regular file, is `None`; a file over `limit` bytes is an error. The container
    /// carries `labels` and is removed before this returns.
    pub async fn read_image_files(
        &self,
        image: &str,
        paths: &[&str],
        limit: u64,
        labels: &HashMap<String, String>,
    ) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // Never run: a command only because dockerd refuses to create a container of an
            // image that has neither `Cmd` nor `Entrypoint`.
            cmd: Some(vec!["true".to_string()]),
            labels: Some(labels.clone()),
            network_disabled: Some(true),
            ..Default::default()
        };
        let id = self
            .docker
            .create_container(None, body)
            .await
            .map_err(|e| EngineError::Api(e.to_string()))?
            .id;
        let mut files = Vec::new();
        let mut result = Ok(());
        for path in paths {
            match self.archived_file_following_links(&id, path, limit).await {
                Ok(file) => files.push(file),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.remove(&id).await;
        result.map(|()| files)
    }

    /// [`Engine::archived_file`], following a link there as the container would (dockerd
    /// archives the link itself), at most [`MAX_LINKS_FOLLOWED`] of them.
    async fn archived_file_following_links(
        &self,
        id: &str,
        path: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let mut path = path.to_string();
        for _ in 0..=MAX_LINKS_FOLLOWED {
            match self.archived_file(id, &path, limit).await? {
                Some(ArchivedFile::Content(content)) => return Ok(Some(content)),
                Some(ArchivedFile::Link(target)) => path = link_target_path(&path, &target),
                None => return Ok(None),
            }
        }
        Err(EngineError::Api(format!(
            "{path} in the image: more than {MAX_LINKS_FOLLOWED} links in a row"
        )))
    }

    /// `GET /containers/{id}/archive?path=...`: the tar dockerd makes of one file, unpacked.
    /// dockerd resolves the path inside the container's root.
    async fn archived_file(
        &self,
        id: &str,
        path: &str,
        limit: u64,
    ) -> Result<Option<ArchivedFile>, EngineError> {
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut stream = self.docker.download_from_container(id, Some(options));
        let mut tar = Vec::new();
        // The tar's own headers and padding come on top of the file.
        let tar_limit = limit.saturating_add(64 * 1024);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    tar.extend_from_slice(&bytes);
                    if tar.len() as u64 > tar_limit {
                        return Err(EngineError::Api(format!(
                            "{path} in the image is larger than {limit} bytes"
                        )));
                    }
                }
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(None),
                Err(e) => return Err(EngineError::Api(format!("reading {path}: {e}"))),
            }
        }
        single_file_of_tar(&tar, limit)
            .map_err(|e| EngineError::Api(format!("reading {path} from the image: {e}")))
    }

    /// Remove a container and its anonymous volumes; a container already gone is fine.
    pub async fn remove(&self, id: &str) {
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        let _ = self.docker.remove_container(id, Some(opts)).await;
    }
}

/// The Engine API's integers are signed; a limit beyond `i64::MAX` is as good as none.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// dockerd's `SecurityOptions` (`name=seccomp,profile=builtin`, `name=userns`, `name=rootless`)
/// say it runs containers in a user namespace of their own.
fn remaps_users(security_options: &[String]) -> bool {
    security_options.iter().any(|option| {
        option
            .split(',')
            .any(|field| matches!(field, "name=userns" | "name=rootless"))
    })
}

/// Links followed when reading a file of an image, as the kernel's own limit for a path.
const MAX_LINKS_FOLLOWED: usize = 40;

/// One file of a container, as dockerd archives it.
#[derive(Debug, PartialEq, Eq)]
enum ArchivedFile {
    Content(Vec<u8>),
    /// A symbolic link, with its target as written.
    Link(String),
}

/// Where the link at `path` (absolute) leads: an absolute target as it is, a relative one from
/// the link's folder. dockerd resolves the result inside the container's root, `..` included.
fn link_target_path(path: &str, target: &str) -> String {
    if target.starts_with('/') {
        return target.to_string();
    }
    let folder = path.rsplit_once('/').map_or("", |(folder, _)| folder);
    format!("{folder}/{target}")
}

/// The first entry of `tar`: a regular file's content (at most `limit` bytes) or a link's
/// target; `None` for anything else.
fn single_file_of_tar(tar: &[u8], limit: u64) -> Result<Option<ArchivedFile>, std::io::Error> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(tar);
    let Some(entry) = archive.entries()?.next() else {
        return Ok(None);
    };
    let entry = entry?;
    match entry.header().entry_type() {
        tar::EntryType::Regular => {}
        tar::EntryType::Symlink => {
            return Ok(entry
                .link_name()?
                .map(|target| ArchivedFile::Link(target.to_string_lossy().into_owned())));
        }
        _ => return Ok(None),
    }
    if entry.size() > limit {
        return Err(std::io::Error::other(format!("larger than {limit} bytes")));
    }
    let mut content = Vec::new();
    entry.take(limit).read_to_end(&mut content)?;
    Ok(Some(ArchivedFile::Content(content)))
}

async fn send_over<S>(
    stream: S,
    req: hyper::Request<Empty<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await.map_err(|e| e.to_string())
}

/// dockerd's `X-Registry-Auth`: base64url of the auth entry's JSON.
pub fn registry_auth_header(auth: &RegistryAuth) -> String {
    let mut map = serde_json::Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            map.insert(k.to_string(), serde_json::Value::String(v.clone()));
        }
    };
    put("username", &auth.username);
    put("password", &auth.password);
    put("identitytoken", &auth.identity_token);
    put("registrytoken", &auth.registry_token);
    map.insert(
        "serveraddress".into(),
        serde_json::Value::String(auth.server_address.clone()),
    );
    let json = serde_json::Value::Object(map).to_string();
    base64::engine::general_purpose::URL_SAFE.encode(json)
}

/// Returns the error message if the line carries one.
fn handle_pull_line(line: &[u8], on_event: &mut (dyn FnMut(PullEvent) + Send)) -> Option<String> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return None;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(trimmed) else {
        return Some(String::from_utf8_lossy(trimmed).into_owned());
    };
    if let Some(e) = v
        .get("error")
        .and_then(|e| e.as_str())
        .or_else(|| v.get("message").and_then(|e| e.as_str()))
    {
        return Some(e.to_string());
    }
    let status = v.get("status").and_then(|s| s.as_str()).unwrap_or_default();
    let id = v.get("id").and_then(|s| s.as_str());
    let progress = v.get("progress").and_then(|s| s.as_str());
    let text = match id {
        Some(id) => format!("{id}: {status}"),
        None => status.to_string(),
    };
    match (status, progress) {
        ("Downloading" | "Extracting" | "Waiting" | "Verifying Checksum", p) => on_event(
            PullEvent::Progress(format!("{text} {}", p.unwrap_or_default())),
        ),
        _ if id.is_some() && !status.starts_with("Pulling from") => {
            on_event(PullEvent::Progress(text))
        }
        _ => on_event(PullEvent::Status(text)),
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_namespaces_are_read_from_the_daemons_security_options() {
        let options = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!remaps_users(&options(&[
            "name=apparmor",
            "name=seccomp,profile=builtin",
            "name=cgroupns"
        ])));
        assert!(remaps_users(&options(&[
            "name=seccomp,profile=builtin",
            "name=userns"
        ])));
        assert!(remaps_users(&options(&["name=rootless"])));
    }

    #[test]
    fn links_in_an_image_lead_where_the_container_would_find_them() {
        assert_eq!(
            link_target_path("/etc/passwd", "/var/lib/passwd"),
            "/var/lib/passwd"
        );
        assert_eq!(
            link_target_path("/etc/passwd", "../usr/etc/passwd"),
            "/etc/../usr/etc/passwd"
        );
        assert_eq!(
            link_target_path("/etc/passwd", "passwd.real"),
            "/etc/passwd.real"
        );
    }

    #[test]
    fn one_file_of_a_tar_its_content_or_its_link() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, "passwd", &b"root\n"[..])
            .unwrap();
        let file = builder.into_inner().unwrap();
        assert_eq!(
            single_file_of_tar(&file, 5).unwrap(),
            Some(ArchivedFile::Content(b"root\n".to_vec()))
        );
        assert!(single_file_of_tar(&file, 4).is_err());

        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "passwd", "../usr/etc/passwd")
            .unwrap();
        let link = builder.into_inner().unwrap();
        assert_eq!(
            single_file_of_tar(&link, 5).unwrap(),
            Some(ArchivedFile::Link("../usr/etc/passwd".into()))
        );
        assert_eq!(single_file_of_tar(&[], 5).unwrap(), None);
    }

    #[test]
    fn classifies_daemon_messages() {
        let cases = [
            (
                "Get \"https://r.example.com/v2/node/manifests/10\": no basic auth credentials",
                "nocreds",
            ),
            (
                "Head \"http://127.0.0.1:5000/v2/node/manifests/10\": unauthorized: authentication required",
                "nocreds",
            ),
            ("unauthorized: incorrect username or password", "denied"),
            (
                "denied: requested access to the resource is denied",
                "denied",
            ),
            (
                "manifest for 127.0.0.1:5000/node:11 not found: manifest unknown: manifest unknown",
                "notfound",
            ),
            (
                "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
                "network",
            ),
            ("something odd", "other"),
        ];
        for (msg, want) in cases {
            let got = match PullFailure::classify(msg) {
                PullFailure::NoCredentials(_) => "nocreds",
                PullFailure::Denied(_) => "denied",
                PullFailure::NotFound(_) => "notfound",
                PullFailure::Network(_) => "network",
                PullFailure::Other(_) => "other",
            };
            assert_eq!(got, want, "{msg}");
        }
    }

    #[test]
    fn auth_header_is_base64url_and_round_trips() {
        // This password's JSON encodes to '+' and '/' in standard base64 (the bollard bug).
        let auth = RegistryAuth {
            username: Some("ci".into()),
            password: Some("'I(Bx}yr}~Dk>?>?".into()),
            server_address: "127.0.0.1:5000".into(),
            ..Default::default()
        };
        let header = registry_auth_header(&auth);
        assert!(!header.contains('+') && !header.contains('/'), "{header}");
        let json = base64::engine::general_purpose::URL_SAFE
            .decode(&header)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["password"], "'I(Bx}yr}~Dk>?>?");
        assert_eq!(v["serveraddress"], "127.0.0.1:5000");
        assert!(v.get("identitytoken").is_none());
    }
}
