//! Docker `services:` with GitLab's semantics, without Docker networks.
//!
//! wharf never creates Docker networks (dockerd here runs with `--bridge=none`, and a network per
//! job is state that can leak). Instead a job and its services share one network namespace:
//! - the first service owns it, created with `ExtraHosts` mapping every alias of every service
//!   (explicit `alias:` values and GitLab's default aliases) to 127.0.0.1;
//! - the other services and the job's containers join it with `network_mode: container:<first>`,
//!   so they share its `/etc/hosts` and its loopback: a service listening on 5432 is reachable
//!   from the job as `postgres:5432` and as `127.0.0.1:5432`.
//!
//! Differences from GitLab, on purpose or by construction:
//! - Two services cannot listen on the same port (they share one loopback); in GitLab each has
//!   its own address. Such a service fails to bind, which the readiness warning shows.
//! - If the first service exits early, the namespace is gone: the job then runs in a namespace of
//!   its own (with the aliases still in its `/etc/hosts`), after a warning.
//!
//! Like GitLab, every service gets the job's build folder mounted at the job's project path; it
//! is empty when the service starts and filled (sources, caches, artifacts) before the script.
//!
//! Readiness: for every `EXPOSE`d TCP port of a service's image (or `HEALTHCHECK_TCP_PORT` from
//! its variables, as GitLab), wharf waits (bounded) until a socket in the shared namespace
//! listens on it. It reads `/proc/<pid>/net/tcp` and `tcp6` of the service's init process, with
//! the PID from `State.Pid`, from the host. That needs no helper image (wharf is air-gapped and
//! pulls only what the pipeline names), no `docker exec` (not every image has a shell), and no
//! privileges (unlike `nsenter`, which needs CAP_SYS_ADMIN). It works when dockerd runs on this
//! host, in this PID namespace, which wharf checks (the process's cgroup names the container);
//! otherwise it only waits until the service runs, and says so.

use crate::engine::{ContainerSpec, Engine};
use crate::failure::{JobFailure, Stop};
use crate::log::JobLog;
use crate::vars::{JobVariable, VarSet};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wharf_ci::{Job, PullPolicy};
use wharf_oci::ImageRef;

/// GitLab's `wait_for_services_timeout` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is checked while waiting.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// Lines of a service's own output shown when it did not start properly.
pub(crate) const LOG_LINES: usize = 20;

/// One `services:` entry, resolved against the job's variables, ready to pull and start.
#[derive(Debug, Clone)]
pub struct PlannedService {
    /// The image name, variables expanded.
    pub image: String,
    pub image_ref: ImageRef,
    /// The service's `pull_policy:` (empty: the runner's default).
    pub pull_policy: Vec<PullPolicy>,
    /// Host names for it: `alias:` values first, then GitLab's default aliases.
    pub aliases: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub command: Vec<String>,
    /// `KEY=value`: the job's non-secret variables plus the service's own.
    pub env: Vec<String>,
    /// `HEALTHCHECK_TCP_PORT` from the service's variables: the only port waited for.
    pub healthcheck_port: Option<u16>,
}

/// Resolve the job's `services:`: names, aliases, variables. Errors are configuration errors,
/// naming the entry's position.
pub(crate) fn plan(job: &Job, vars: &VarSet) -> Result<Vec<PlannedService>, JobFailure> {
    let mut out = Vec::new();
    for svc in &job.services {
        let image = vars.expand(&svc.name);
        let image_ref = ImageRef::parse(&image).map_err(|e| {
            JobFailure::configuration(format!("{}: service image `{image}`: {e}", svc.span))
        })?;
        let mut aliases = Vec::new();
        for alias in split_aliases(&svc.alias) {
            let alias = vars.expand(&alias);
            if !valid_alias(&alias) {
                return Err(JobFailure::configuration(format!(
                    "{}: service alias `{alias}` is not a valid host name",
                    svc.span
                ))
                .with_hint(
                    "use letters, digits, `-`, `_` and `.`, starting with a letter or digit",
                ));
            }
            aliases.push(alias);
        }
        aliases.extend(default_aliases(&image));
        dedup(&mut aliases);
        let own = service_vars(vars, &svc.variables);
        let healthcheck_port = own
            .resolved("HEALTHCHECK_TCP_PORT")
            .and_then(|p| p.trim().parse::<u16>().ok());
        out.push(PlannedService {
            image,
            image_ref,
            pull_policy: svc.pull_policy.clone(),
            aliases,
            entrypoint: svc
                .entrypoint
                .as_ref()
                .map(|e| e.iter().map(|a| vars.expand(a)).collect()),
            command: svc
                .command
                .as_ref()
                .map(|c| c.iter().map(|a| vars.expand(a)).collect())
                .unwrap_or_default(),
            env: env_list(&own),
            healthcheck_port,
        });
    }
    Ok(out)
}

/// `alias:` values: each entry may hold several names, separated by commas or spaces.
pub fn split_aliases(raw: &[String]) -> Vec<String> {
    let mut out: Vec<String> = raw
        .iter()
        .flat_map(|a| a.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    dedup(&mut out);
    out
}

/// GitLab's default aliases for a service image: the name without tag, digest and registry port,
/// with `/` turned into `__`, and (when different) into `-`.
/// `registry.example.com:5000/team/db:15` -> `registry.example.com__team__db`,
/// `registry.example.com-team-db`.
pub fn default_aliases(image: &str) -> Vec<String> {
    let name = image.split('@').next().unwrap_or(image);
    // A tag is a `:` after the last `/` (a `:` before it is a registry port).
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let name = match name.split_once('/') {
        Some((first, rest)) => match first.split_once(':') {
            Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{host}/{rest}")
            }
            _ => name.to_string(),
        },
        None => name.to_string(),
    };
    if name.is_empty() {
        return Vec::new();
    }
    let primary = name.replace('/', "__");
    let secondary = name.replace('/', "-");
    if primary == secondary {
        vec![primary]
    } else {
        vec![primary, secondary]
    }
}

/// A name usable in `/etc/hosts` (and as a Docker `ExtraHosts` entry, which splits at `:`).
fn valid_alias(alias: &str) -> bool {
    alias.len() <= 253
        && alias
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Every alias of every service, each once: the names the job's `/etc/hosts` maps to loopback.
pub(crate) fn all_aliases(planned: &[PlannedService]) -> Vec<String> {
    let mut all: Vec<String> = planned.iter().flat_map(|s| s.aliases.clone()).collect();
    dedup(&mut all);
    all
}

fn dedup(v: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    v.retain(|a| seen.insert(a.clone()));
}

/// What a service sees: the job's variables minus every secret (masked ones, file-type ones,
/// `DOCKER_AUTH_CONFIG`), then the service's own `variables:`, which win.
pub fn service_vars(job_vars: &VarSet, own: &[wharf_ci::Variable]) -> VarSet {
    let mut out = VarSet::default();
    for v in job_vars.iter() {
        if v.masked || v.file || v.name == "DOCKER_AUTH_CONFIG" {
            continue;
        }
        out.set(v.clone());
    }
    for v in own {
        out.set(JobVariable {
            name: v.name.clone(),
            value: v.value.clone(),
            masked: false,
            file: false,
            expand: v.expand,
        });
    }
    out
}

fn env_list(vars: &VarSet) -> Vec<String> {
    vars.iter()
        .map(|v| {
            let value = if v.expand {
                vars.resolved(&v.name).unwrap_or_default()
            } else {
                v.value.clone()
            };
            format!("{}={value}", v.name)
        })
        .collect()
}

pub use wharf_sandbox::listening_ports;

/// TCP ports from an image's `ExposedPorts` (`"5432/tcp"`, `"8080"`); UDP/SCTP ones are skipped.
pub fn exposed_tcp_ports(exposed: &[String]) -> Vec<u16> {
    let mut ports: Vec<u16> = exposed
        .iter()
        .filter_map(|p| {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            (proto == "tcp").then(|| port.parse().ok()).flatten()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// How the job's containers attach to the services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobNetwork {
    pub network_mode: Option<String>,
    pub extra_hosts: Vec<String>,
}

/// Naming and labelling for the service containers, from the Docker executor (the same names and
/// labels as the job's script containers).
pub struct StartOptions<'a> {
    /// `wharf-<project>-<pipeline>-<job>`: the service containers get `-service-<n>-<alias>`.
    pub name_prefix: &'a str,
    /// The job containers' labels (`wharf.job`, `wharf.pipeline`); `wharf.service` is added.
    pub labels: &'a HashMap<String, String>,
    /// Bind mounts every service gets: the job's build folder, as GitLab mounts the builds
    /// volume into services.
    pub binds: &'a [String],
    pub timeout: Duration,
    pub cancel: watch::Receiver<bool>,
}

/// The running services of one job. Remove them with [`Services::remove`]; if that is never
/// reached (a dropped future, a panic), `Drop` removes them anyway.
pub struct Services {
    /// Container ids, the namespace owner first.
    containers: Vec<String>,
    /// `DOCKER_HOST`, for the `Drop` fallback's own connection.
    host: String,
    all_aliases: Vec<String>,
}

impl Services {
    pub fn none() -> Self {
        Self {
            containers: Vec::new(),
            host: String::new(),
            all_aliases: Vec::new(),
        }
    }

    /// Where the job's containers go: into the first service's namespace while it runs.
    pub async fn job_network(&self, engine: &Engine, log: &mut JobLog) -> JobNetwork {
        let Some(owner) = self.containers.first() else {
            return JobNetwork::default();
        };
        match engine.container_state(owner).await {
            Ok(state) if state.running => JobNetwork {
                network_mode: Some(format!("container:{owner}")),
                extra_hosts: Vec::new(),
            },
            _ => {
                log.warn("the first service is not running, so the services' network is gone: the job runs without them");
                JobNetwork {
                    network_mode: None,
                    extra_hosts: hosts_entries(&self.all_aliases),
                }
            }
        }
    }

    /// Remove every service container (force, with anonymous volumes).
    pub async fn remove(mut self, engine: &Engine) {
        for id in std::mem::take(&mut self.containers).iter().rev() {
            engine.remove(id).await;
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        if self.containers.is_empty() {
            return;
        }
        // Reached only when `remove` was not awaited (the job's future was dropped): no async
        // context can be relied on here, so a thread with its own runtime and connection does it.
        let ids = std::mem::take(&mut self.containers);
        let host = self.host.clone();
        let worker = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(engine) = Engine::connect(Some(&host)).await {
                    for id in ids.iter().rev() {
                        engine.remove(id).await;
                    }
                }
            });
        });
        let _ = worker.join();
    }
}

fn hosts_entries(aliases: &[String]) -> Vec<String> {
    aliases.iter().map(|a| format!("{a}:127.0.0.1")).collect()
}

/// Create and start the (already pulled) services in one shared network namespace, then wait
/// until they are ready. A service that does not come up is a warning, as in GitLab; Docker API
/// errors are system failures, and every container created so far is removed.
pub(crate) async fn start(
    engine: &Engine,
    planned: &[PlannedService],
    opts: StartOptions<'_>,
    log: &mut JobLog,
) -> Result<Services, Stop> {
    let all_aliases = all_aliases(planned);
    let mut services = Services {
        containers: Vec::new(),
        host: engine.host().to_string(),
        all_aliases: all_aliases.clone(),
    };
    if planned.is_empty() {
        return Ok(services);
    }
    // (index in `planned`, container id) of the services that started.
    let mut started: Vec<(usize, String)> = Vec::new();
    for (i, svc) in planned.iter().enumerate() {
        let mut labels = opts.labels.clone();
        labels.insert("wharf.service".to_string(), svc.image.clone());
        let owner = services.containers.first().cloned();
        let spec = ContainerSpec {
            name: format!(
                "{}-service-{i}-{}",
                opts.name_prefix,
                svc.aliases.first().map(String::as_str).unwrap_or("service")
            ),
            image: svc.image.clone(),
            entrypoint: svc.entrypoint.clone(),
            cmd: svc.command.clone(),
            env: svc.env.clone(),
            labels,
            binds: opts.binds.to_vec(),
            network_mode: owner.as_ref().map(|o| format!("container:{o}")),
            extra_hosts: if owner.is_none() {
                hosts_entries(&all_aliases)
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        let id = match engine.create(&spec).await {
            Ok(id) => id,
            Err(e) => {
                services.remove(engine).await;
                return Err(JobFailure::system(format!(
                    "creating the service container for {}: {e}",
                    svc.image
                ))
                .into());
            }
        };
        services.containers.push(id.clone());
        if let Err(e) = engine.start(&id).await {
            let owner_gone = match &owner {
                Some(o) => !engine.container_state(o).await.is_ok_and(|s| s.running),
                None => false,
            };
            if owner_gone {
                // The first service exited already: its namespace cannot be joined.
                log.warn(&format!(
                    "Service {} could not start: the first service, which holds the services' network, is not running ({e})",
                    svc.image
                ));
                continue;
            }
            services.remove(engine).await;
            return Err(JobFailure::system(format!(
                "starting the service container for {}: {e}",
                svc.image
            ))
            .into());
        }
        started.push((i, id));
    }
    match wait_ready(engine, planned, &started, opts.timeout, opts.cancel, log).await {
        Ok(()) => Ok(services),
        Err(status) => {
            services.remove(engine).await;
            Err(status)
        }
    }
}

/// What a service is still waited for.
struct Pending<'a> {
    svc: &'a PlannedService,
    id: &'a str,
    ports: Vec<u16>,
    /// Rounds in a row its sockets could not be read.
    probe_misses: u8,
}

/// A process that is exiting loses its /proc before dockerd marks it stopped: only after this
/// many unreadable rounds does wharf conclude it cannot see the sockets at all.
const PROBE_MISSES_BEFORE_GIVING_UP: u8 = 3;

async fn wait_ready(
    engine: &Engine,
    planned: &[PlannedService],
    started: &[(usize, String)],
    timeout: Duration,
    mut cancel: watch::Receiver<bool>,
    log: &mut JobLog,
) -> Result<(), Stop> {
    log.info(&format!(
        "Waiting for services to be up and running (timeout {} seconds)...",
        timeout.as_secs()
    ));
    let mut pending: Vec<Pending<'_>> = Vec::new();
    for (i, id) in started {
        let svc = &planned[*i];
        let ports = match svc.healthcheck_port {
            Some(p) => vec![p],
            None => match engine.inspect_image(&svc.image).await {
                Ok(Some(info)) => exposed_tcp_ports(&info.exposed_ports),
                _ => Vec::new(),
            },
        };
        pending.push(Pending {
            svc,
            id,
            ports,
            probe_misses: 0,
        });
    }
    let deadline = Instant::now() + timeout;
    let mut said_no_probe = false;
    loop {
        let mut still = Vec::new();
        for p in pending {
            let state = match engine.container_state(p.id).await {
                Ok(s) => s,
                Err(e) => {
                    log.warn(&format!("Service {}: {e}", p.svc.image));
                    continue;
                }
            };
            if !state.running {
                let logs = engine.logs_tail(p.id, LOG_LINES).await.unwrap_or_default();
                log.warn(&not_started(
                    p.svc,
                    &format!(
                        "the service exited early ({}, exit code {})",
                        state.status,
                        state.exit_code.unwrap_or(-1)
                    ),
                    &logs,
                ));
                continue;
            }
            if p.ports.is_empty() {
                continue;
            }
            match probe_ports(p.id, state.pid) {
                Some(listening) => {
                    if !p.ports.iter().all(|port| listening.contains(port)) {
                        still.push(p);
                    }
                }
                // The process may be exiting, its /proc already gone: look again next round,
                // where an early exit is reported.
                None if p.probe_misses < PROBE_MISSES_BEFORE_GIVING_UP => {
                    still.push(Pending {
                        probe_misses: p.probe_misses + 1,
                        ..p
                    });
                }
                None => {
                    if !said_no_probe {
                        said_no_probe = true;
                        log.info("Cannot see the services' sockets from here (dockerd runs elsewhere): waiting only until they run");
                    }
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            for p in &pending {
                let logs = engine.logs_tail(p.id, LOG_LINES).await.unwrap_or_default();
                let ports: Vec<String> = p.ports.iter().map(|x| format!("{x}/tcp")).collect();
                log.warn(&not_started(
                    p.svc,
                    &format!(
                        "nothing listens on {} after {} seconds",
                        ports.join(", "),
                        timeout.as_secs()
                    ),
                    &logs,
                ));
            }
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = cancel.changed() => return Err(Stop::Canceled),
        }
    }
}

/// GitLab's warning shape for a service that did not come up, with its last output lines.
pub(crate) fn not_started(svc: &PlannedService, why: &str, logs: &str) -> String {
    let alias = svc.aliases.first().map(String::as_str).unwrap_or("");
    let mut text = format!(
        "Service {} (alias {alias}) probably didn't start properly.\n\nHealth check error:\n{why}\n\nService container logs:\n",
        svc.image
    );
    for line in logs.lines() {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("*********");
    text
}

/// The TCP ports listening in the namespace of container `id`, whose init process is `pid` in
/// dockerd's PID namespace. `None` when that process is not visible as the container's from
/// here (dockerd on another host, or in another PID namespace).
fn probe_ports(id: &str, pid: i64) -> Option<Vec<u16>> {
    if pid <= 0 {
        return None;
    }
    let proc_dir = Path::new("/proc").join(pid.to_string());
    let cgroup = std::fs::read_to_string(proc_dir.join("cgroup")).ok()?;
    if !cgroup.contains(id) {
        return None;
    }
    let mut ports = Vec::new();
    for table in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(proc_dir.join(table)) {
            ports.extend(listening_ports(&text));
        }
    }
    Some(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_aliases_follow_gitlab() {
        assert_eq!(default_aliases("postgres:15"), ["postgres"]);
        assert_eq!(default_aliases("postgres"), ["postgres"]);
        assert_eq!(
            default_aliases("tutum/wordpress:latest"),
            ["tutum__wordpress", "tutum-wordpress"]
        );
        assert_eq!(
            default_aliases("registry.example.com:5000/team/db:15"),
            [
                "registry.example.com__team__db",
                "registry.example.com-team-db"
            ]
        );
        assert_eq!(
            default_aliases("127.0.0.1:5000/svc"),
            ["127.0.0.1__svc", "127.0.0.1-svc"]
        );
        assert_eq!(
            default_aliases("docker.io/library/nginx@sha256:abcd"),
            ["docker.io__library__nginx", "docker.io-library-nginx"]
        );
        assert_eq!(
            default_aliases("localhost:5000/a/b:1@sha256:ff"),
            ["localhost__a__b", "localhost-a-b"]
        );
    }

    #[test]
    fn aliases_split_on_commas_and_spaces() {
        let raw = vec!["db, pg".to_string(), "postgres  db".to_string()];
        assert_eq!(split_aliases(&raw), ["db", "pg", "postgres"]);
        assert!(split_aliases(&[" , ".to_string()]).is_empty());
    }

    #[test]
    fn alias_validation() {
        for ok in ["db", "my-db", "tutum__wordpress", "a.b.c", "1db"] {
            assert!(valid_alias(ok), "{ok}");
        }
        for bad in ["", "-db", "_db", "db:5432", "d b", "db/x", "dé"] {
            assert!(!valid_alias(bad), "{bad}");
        }
    }

    fn job_vars() -> VarSet {
        let mut v = VarSet::default();
        v.set_plain("CI_JOB_NAME", "test");
        v.set_plain("DB_NAME", "app");
        v.set(JobVariable {
            name: "API_TOKEN".into(),
            value: "s3cr3t-token".into(),
            masked: true,
            file: false,
            expand: true,
        });
        v.set(JobVariable {
            name: "DOCKER_AUTH_CONFIG".into(),
            value: "{\"auths\":{}}".into(),
            masked: false,
            file: false,
            expand: true,
        });
        v.set(JobVariable {
            name: "KUBECONFIG".into(),
            value: "apiVersion: v1".into(),
            masked: false,
            file: true,
            expand: true,
        });
        v
    }

    fn yaml_var(name: &str, value: &str) -> wharf_ci::Variable {
        wharf_ci::Variable {
            name: name.into(),
            value: value.into(),
            expand: true,
            span: None,
        }
    }

    #[test]
    fn services_get_public_job_variables_and_their_own_only() {
        let own = vec![
            yaml_var("POSTGRES_DB", "$DB_NAME"),
            yaml_var("LEAK", "x${API_TOKEN}x"),
            yaml_var("DB_NAME", "override"),
        ];
        let env = env_list(&service_vars(&job_vars(), &own));
        assert!(env.contains(&"CI_JOB_NAME=test".to_string()), "{env:?}");
        assert!(env.contains(&"DB_NAME=override".to_string()), "{env:?}");
        // Expanded against what the service sees (its own DB_NAME wins).
        assert!(env.contains(&"POSTGRES_DB=override".to_string()), "{env:?}");
        // A masked variable is not there, and referencing it expands to nothing.
        assert!(env.contains(&"LEAK=xx".to_string()), "{env:?}");
        for e in &env {
            assert!(!e.contains("s3cr3t-token"), "{env:?}");
            assert!(!e.starts_with("API_TOKEN="), "{env:?}");
            assert!(!e.starts_with("DOCKER_AUTH_CONFIG="), "{env:?}");
            assert!(!e.starts_with("KUBECONFIG="), "{env:?}");
        }
    }

    #[test]
    fn exposed_ports_keep_tcp_only() {
        let exposed: Vec<String> = ["5432/tcp", "53/udp", "8080", "9000/sctp", "x/tcp"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(exposed_tcp_ports(&exposed), [5432, 8080]);
    }

    #[test]
    fn probe_refuses_a_process_that_is_not_the_container() {
        // Our own process is not in a container named "not-a-container-id".
        let me = i64::from(std::process::id());
        assert_eq!(probe_ports("not-a-container-id", me), None);
        assert_eq!(probe_ports("x", 0), None);
    }
}
