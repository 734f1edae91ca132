//! `services:` for the sandbox executor, with the Docker executor's semantics
//! (`crate::services`: aliases, variables, readiness, warnings) and no daemon.
//!
//! A job and its services share one network namespace, held by a small process of its own
//! ([`NetworkHolder`]) rather than by the first service as with Docker: a service that exits
//! early takes nothing with it. The namespace has only loopback: each service is reached on
//! 127.0.0.1 and by its aliases (an `/etc/hosts` every sandbox of the job gets). The host's
//! network is not reachable from such a job (wharf has no user-mode network yet; a job without
//! services runs in the host's network).
//!
//! Readiness as with Docker: every `EXPOSE`d TCP port of a service's image (or its
//! `HEALTHCHECK_TCP_PORT`) is waited for, bounded, reading the holder's `/proc/<pid>/net/tcp`.

use super::image::{StoredImage, image_user};
use super::root::{name_binds, overlay_root};
use crate::failure::{JobFailure, Stop};
use crate::log::JobLog;
use crate::options::SandboxNetwork;
use crate::services::{self as common, PlannedService};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wharf_sandbox::{Bind, IdMapping, Network, NetworkHolder, Spec};

/// Bytes of a service's own output kept for the "didn't start properly" warning.
const OUTPUT_KEPT: usize = 16 * 1024;

/// The running services of one job, and the network the job's scripts join.
pub(super) struct SandboxServices {
    /// The network of their own (`--sandbox-network isolated`); `None`: the host's.
    holder: Option<NetworkHolder>,
    running: Vec<RunningService>,
    /// `/etc/hosts` of the job and its services: localhost and every alias on 127.0.0.1.
    hosts_file: PathBuf,
}

struct RunningService {
    planned: PlannedService,
    child: tokio::process::Child,
    /// The end of its output (stdout and stderr).
    output: Arc<Mutex<VecDeque<u8>>>,
    /// The task copying its output into `output`: it ends when the service's pipes close.
    output_copier: Option<tokio::task::JoinHandle<()>>,
    /// Ports waited for.
    ports: Vec<u16>,
}

impl SandboxServices {
    pub(super) fn network(&self) -> Network {
        self.holder
            .as_ref()
            .map_or(Network::Host, NetworkHolder::network)
    }

    /// TCP ports listening in the services' network.
    fn listening_ports(&self) -> Vec<u16> {
        match &self.holder {
            Some(holder) => holder.listening_ports(),
            None => wharf_sandbox::listening_ports_of("/proc/self"),
        }
        .unwrap_or_default()
    }

    /// `/etc/hosts` with the services' aliases, and the host's `/etc/resolv.conf`.
    pub(super) fn name_binds(&self) -> Vec<Bind> {
        name_binds(&self.hosts_file)
    }

    /// Kill every service, then the network holder.
    pub(super) async fn stop(mut self) {
        for service in self.running.iter_mut().rev() {
            let _ = service.child.kill().await;
        }
        if let Some(holder) = self.holder {
            holder.stop().await;
        }
    }
}

/// How long an exited service's last output may take to reach us: its pipes close at its exit,
/// unless a process it left behind holds them.
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

impl RunningService {
    /// Take the child's output pipes and keep the end of what they carry.
    fn new(planned: PlannedService, mut child: tokio::process::Child, ports: Vec<u16>) -> Self {
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let mut chunks = crate::executor::output_of(&mut child);
        let kept = output.clone();
        let output_copier = tokio::spawn(async move {
            while let Some(chunk) = chunks.recv().await {
                if let Ok(mut out) = kept.lock() {
                    out.extend(chunk.bytes);
                    let excess = out.len().saturating_sub(OUTPUT_KEPT);
                    out.drain(..excess);
                }
            }
        });
        RunningService {
            planned,
            child,
            output,
            output_copier: Some(output_copier),
            ports,
        }
    }

    /// Wait (bounded) until the output written before the service exited has been read: the
    /// exit is seen by `try_wait` before the copier has read the pipes' last bytes, and those
    /// are the lines that say why it exited.
    async fn drain_output(&mut self) {
        if let Some(copier) = self.output_copier.take() {
            let _ = tokio::time::timeout(OUTPUT_DRAIN, copier).await;
        }
    }

    fn last_lines(&self) -> String {
        let bytes: Vec<u8> = self
            .output
            .lock()
            .map(|o| o.iter().copied().collect())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(common::LOG_LINES)..].join("\n")
    }
}

/// What the services of one job share with it.
pub(super) struct Setup<'a> {
    pub(super) ids: IdMapping,
    pub(super) network: SandboxNetwork,
    /// The job's sandbox state folder: each service's overlay goes under it.
    pub(super) state_dir: &'a Path,
    /// The job's host name (in `/etc/hosts` with the aliases).
    pub(super) hostname: &'a str,
    /// Mounted into every service at the job's project path, as GitLab does.
    pub(super) build_dir: &'a Path,
    pub(super) project_dir_in_job: &'a str,
    pub(super) cancel: tokio::sync::watch::Receiver<bool>,
    /// wharf itself, the init of every sandbox.
    pub(super) init: &'a Path,
}

/// Start the (pulled) services in a network of their own, then wait until they are ready. A
/// service that does not come up is a warning, as in GitLab; a network that cannot be set up is
/// a system failure.
pub(super) async fn start(
    planned: Vec<PlannedService>,
    images: Vec<StoredImage>,
    setup: Setup<'_>,
    log: &mut JobLog,
) -> Result<SandboxServices, Stop> {
    let holder = match setup.network {
        SandboxNetwork::Isolated => {
            let holder = NetworkHolder::start(setup.ids, setup.init)
                .await
                .map_err(|e| JobFailure::system(e.to_string()))?;
            log.info(
                "The job and its services share a network of their own with only loopback: services answer on 127.0.0.1 and by alias; the host's network is not reachable from this job (`--sandbox-network host` shares the host's)",
            );
            Some(holder)
        }
        SandboxNetwork::Host => {
            log.info(
                "The job and its services share the host's network (--sandbox-network host): services listen on the host's loopback and answer by alias; the job reaches what the host reaches",
            );
            None
        }
    };
    // With the host's network, the host's own names stay (the aliases are added to them).
    let host_names = match setup.network {
        SandboxNetwork::Host => std::fs::read_to_string("/etc/hosts").ok(),
        SandboxNetwork::Isolated => None,
    };
    let services_dir = setup.state_dir.join("services");
    std::fs::create_dir_all(&services_dir)
        .map_err(|e| JobFailure::system(format!("creating {}: {e}", services_dir.display())))?;
    let all_aliases = common::all_aliases(&planned);
    let hosts_file = services_dir.join("hosts");
    std::fs::write(
        &hosts_file,
        hosts_text(host_names.as_deref(), setup.hostname, &all_aliases),
    )
    .map_err(|e| JobFailure::system(format!("writing {}: {e}", hosts_file.display())))?;
    let mut services = SandboxServices {
        holder,
        running: Vec::new(),
        hosts_file,
    };
    for (i, (svc, image)) in planned.into_iter().zip(images).enumerate() {
        match start_one(&setup, &services, i, &svc, &image).await {
            Ok(child) => services.running.push(child),
            Err(why) => log.warn(&common::not_started(&svc, &why, "")),
        }
    }
    match wait_ready(&mut services, setup.cancel.clone(), log).await {
        Ok(()) => Ok(services),
        Err(stop) => {
            services.stop().await;
            Err(stop)
        }
    }
}

/// Start service `i` in its own overlay of `image`, in the shared network.
async fn start_one(
    setup: &Setup<'_>,
    services: &SandboxServices,
    i: usize,
    svc: &PlannedService,
    image: &StoredImage,
) -> Result<RunningService, String> {
    let ids = setup.ids;
    let config = &image.config;
    let user = image_user(&svc.image, &image.lower, config.user.as_deref(), None)
        .map_err(|e| e.to_string())?;
    if !ids.maps(user.uid, user.gid) {
        return Err(format!(
            "it runs as {user}, which this sandbox does not map (no subordinate ids for wharf's user)"
        ));
    }
    // Docker's rule: an entrypoint given for the service drops the image's `Cmd` too.
    let (entrypoint, cmd) = match &svc.entrypoint {
        Some(e) => (e.clone(), svc.command.clone()),
        None => (
            config.entrypoint.clone().unwrap_or_default(),
            if svc.command.is_empty() {
                config.cmd.clone().unwrap_or_default()
            } else {
                svc.command.clone()
            },
        ),
    };
    let argv: Vec<String> = entrypoint
        .into_iter()
        .chain(cmd)
        .filter(|a| !a.is_empty())
        .collect();
    if argv.is_empty() {
        return Err("its image has no command and the service gives none".into());
    }
    // The image's variables, then the service's (which win, as `docker run -e`).
    let mut env = config.env_pairs();
    for kv in &svc.env {
        if let Some((k, v)) = kv.split_once('=') {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
    }
    let root = overlay_root(
        &setup.state_dir.join(format!("service-{i}")),
        &image.lower,
        ids,
    )
    .map_err(|e| e.to_string())?;
    let mut binds = vec![Bind {
        source: setup.build_dir.to_path_buf(),
        target: setup.project_dir_in_job.to_string(),
        read_only: false,
    }];
    binds.extend(services.name_binds());
    let spec = Spec {
        root,
        binds,
        argv,
        env,
        cwd: config
            .working_dir
            .clone()
            .filter(|d| d.starts_with('/'))
            .unwrap_or_else(|| "/".into()),
        user: Some((user.uid, user.gid)),
        hostname: svc
            .aliases
            .first()
            .cloned()
            .unwrap_or_else(|| "service".into()),
        ids,
        network: services.network(),
        // Services get no limits, as in GitLab (a service's are its own settings).
        cgroups: Vec::new(),
    };
    let child = wharf_sandbox::spawn(&spec, setup.init)
        .await
        .map_err(|e| e.to_string())?;
    let ports = match svc.healthcheck_port {
        Some(p) => vec![p],
        None => {
            let exposed: Vec<String> = config
                .exposed_ports
                .iter()
                .flat_map(|m| m.keys().cloned())
                .collect();
            common::exposed_tcp_ports(&exposed)
        }
    };
    Ok(RunningService::new(svc.clone(), child, ports))
}

/// `/etc/hosts` for the job's sandboxes: `base` (the host's file) or the usual localhost lines,
/// then the job's host name and every alias on 127.0.0.1 (they all share one loopback).
fn hosts_text(base: Option<&str>, hostname: &str, aliases: &[String]) -> String {
    let mut text = match base {
        Some(base) if base.ends_with('\n') || base.is_empty() => base.to_string(),
        Some(base) => format!("{base}\n"),
        None => String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    };
    text.push_str("127.0.0.1\t");
    text.push_str(hostname);
    for alias in aliases {
        text.push(' ');
        text.push_str(alias);
    }
    text.push('\n');
    text
}

/// Wait (bounded) until every started service listens on its ports; one that exits or stays
/// silent is a warning with its last output lines.
async fn wait_ready(
    services: &mut SandboxServices,
    mut cancel: tokio::sync::watch::Receiver<bool>,
    log: &mut JobLog,
) -> Result<(), Stop> {
    let timeout = common::DEFAULT_TIMEOUT;
    log.info(&format!(
        "Waiting for services to be up and running (timeout {} seconds)...",
        timeout.as_secs()
    ));
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<usize> = (0..services.running.len()).collect();
    loop {
        let listening = services.listening_ports();
        let mut still = Vec::new();
        for i in pending {
            let service = &mut services.running[i];
            if let Ok(Some(status)) = service.child.try_wait() {
                service.drain_output().await;
                log.warn(&common::not_started(
                    &service.planned,
                    &format!(
                        "the service exited early (exit code {})",
                        status.code().unwrap_or(-1)
                    ),
                    &service.last_lines(),
                ));
                continue;
            }
            if !service.ports.iter().all(|p| listening.contains(p)) {
                still.push(i);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            for &i in &pending {
                let service = &services.running[i];
                let ports: Vec<String> = service.ports.iter().map(|x| format!("{x}/tcp")).collect();
                log.warn(&common::not_started(
                    &service.planned,
                    &format!(
                        "nothing listens on {} after {} seconds",
                        ports.join(", "),
                        timeout.as_secs()
                    ),
                    &service.last_lines(),
                ));
            }
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(common::POLL) => {}
            _ = cancel.changed() => return Err(Stop::Canceled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: CI saw "the service exited early" with no output, because the exit was seen
    /// before the copier task had read the pipes. On a current-thread runtime the copier cannot
    /// run until we await, so without `drain_output` the output here is always empty.
    #[tokio::test(flavor = "current_thread")]
    async fn an_exited_services_last_output_is_read_before_it_is_shown() {
        let child = tokio::process::Command::new("sh")
            .args([
                "-c",
                "echo SERVICE_WORD=goodbye; echo to-stderr >&2; exit 3",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let planned = PlannedService {
            image: "busybox".into(),
            image_ref: wharf_oci::ImageRef::parse("busybox").unwrap(),
            pull_policy: Vec::new(),
            aliases: vec!["quitter".into()],
            entrypoint: None,
            command: Vec::new(),
            env: Vec::new(),
            healthcheck_port: None,
        };
        let mut service = RunningService::new(planned, child, Vec::new());
        // Block the thread (no await) until the process has exited.
        let status = loop {
            if let Some(status) = service.child.try_wait().unwrap() {
                break status;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(3));
        service.drain_output().await;
        let lines = service.last_lines();
        assert!(lines.contains("SERVICE_WORD=goodbye"), "{lines:?}");
        assert!(lines.contains("to-stderr"), "{lines:?}");
    }

    #[test]
    fn hosts_put_every_alias_on_loopback() {
        let text = hosts_text(None, "runner-wharf-test", &["db".into(), "my-web".into()]);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(
            text.contains("\n127.0.0.1\trunner-wharf-test db my-web\n"),
            "{text}"
        );
        let text = hosts_text(Some("10.1.2.3\tbuildcache"), "job", &["db".into()]);
        assert_eq!(text, "10.1.2.3\tbuildcache\n127.0.0.1\tjob db\n");
    }
}
