//! A real S3 server for tests: Ceph's RADOS gateway (Debian packages `ceph-mon ceph-osd radosgw
//! ceph-common`) on a single-node cluster on 127.0.0.1, one monitor and one `memstore` OSD, cephx
//! keys made at start. It enforces AWS's rules (5 MiB minimum part, conditional writes, presigned
//! ranges), unlike laxer S3 stand-ins.
//!
//! One cluster per test binary ([`shared`], about 12-25 s to start), a fresh bucket per test
//! ([`S3Server::bucket`]). The daemons die with the test binary (see [`crate::s3_server`]); a
//! small watcher removes the cluster's folder afterwards.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::Error;
use crate::error::IoContext as _;
use crate::registry::free_port;
use crate::s3_server::{self, S3Server, watch_and_remove};

/// The phases of the cluster's preparation (config, keys, mkfs); see the script's header.
const SETUP_SCRIPT: &str = include_str!("rgw-setup.sh");
/// How long the gateway may take to answer after its daemons started.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Whether the Ceph daemons are installed (tests that need them are `#[ignore]`d tiers, but a
/// clear message beats a spawn error).
pub fn rgw_available() -> bool {
    [
        "ceph-mon",
        "ceph-osd",
        "radosgw",
        "radosgw-admin",
        "setpriv",
        "curl",
    ]
    .iter()
    .all(|bin| {
        Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// The test binary's gateway, started on first use.
pub fn shared() -> Result<&'static S3Server, Error> {
    static SHARED: OnceLock<Result<S3Server, String>> = OnceLock::new();
    S3Server::shared(&SHARED, "Ceph RGW", start)
}

fn start(children: &mut Vec<Child>) -> Result<S3Server, Error> {
    let dir = tempfile::Builder::new()
        .prefix("wharf-rgw-")
        .tempdir()
        .ctx(|| "creating the cluster folder".to_string())?
        .keep();
    watch_and_remove(&dir);
    let script = dir.join("rgw-setup.sh");
    std::fs::write(&script, SETUP_SCRIPT).ctx(|| format!("writing {}", script.display()))?;
    let mon_port = free_port()?;
    let rgw_port = free_port()?;
    let phase = |name: &str| -> Result<String, Error> {
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg(mon_port.to_string())
            .arg(rgw_port.to_string())
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .ctx(|| format!("running rgw-setup.sh {name}"))?;
        if !out.status.success() {
            return Err(Error::Command {
                command: format!("rgw-setup.sh {name}"),
                status: out.status.to_string(),
                stderr: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stderr),
                    logs_tail(&dir)
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let conf = dir.join("ceph.conf");
    let conf = conf.to_string_lossy().into_owned();
    phase("conf")?;
    children.push(daemon(&dir, "ceph-mon", &["-c", &conf, "-i", "a", "-f"])?);
    let osd_id = phase("osd")?;
    children.push(daemon(
        &dir,
        "ceph-osd",
        &["-c", &conf, "-i", &osd_id, "-f"],
    )?);
    phase("rgw")?;
    children.push(daemon(
        &dir,
        "radosgw",
        &["-c", &conf, "-n", "client.rgw.a", "-f"],
    )?);
    let radosgw = children.last_mut().expect("just pushed");
    s3_server::wait_listening("Ceph RGW", radosgw, rgw_port, READY_TIMEOUT, || {
        logs_tail(&dir)
    })?;
    let keys = phase("user")?;
    let (access_key, secret_key) = keys
        .split_once(' ')
        .ok_or_else(|| Error::Invalid("rgw-setup.sh user printed no keys".to_string()))?;
    Ok(S3Server::new(
        format!("http://127.0.0.1:{rgw_port}"),
        access_key,
        secret_key,
    )
    .with_ceph_conf(dir.join("ceph.conf")))
}

/// Starts one of the cluster's daemons, its output in the cluster's log folder.
fn daemon(dir: &Path, bin: &str, args: &[&str]) -> Result<Child, Error> {
    let log = dir.join("log").join(format!("{bin}.out"));
    s3_server::daemon(
        &log,
        bin,
        args,
        "Debian packages ceph-mon ceph-osd radosgw ceph-common",
    )
}

/// The end of every log of the cluster, for start-up errors.
fn logs_tail(dir: &Path) -> String {
    let mut out = String::new();
    let Ok(entries) = std::fs::read_dir(dir.join("log")) else {
        return out;
    };
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out.push_str(&format!("\n--- {} ---\n", entry.path().display()));
        out.push_str(&lines[lines.len().saturating_sub(15)..].join("\n"));
    }
    out
}
