//! A real S3 server for tests: Ceph's RADOS gateway (Debian packages `ceph-mon ceph-osd radosgw
//! ceph-common`) on a single-node cluster on 127.0.0.1, one monitor and one `memstore` OSD, cephx
//! keys made at start. It enforces AWS's rules (5 MiB minimum part, conditional writes, presigned
//! ranges), unlike laxer S3 stand-ins.
//!
//! One cluster per test binary ([`Rgw::shared`], about 12-25 s to start), a fresh bucket per test
//! ([`Rgw::bucket`]). The daemons are spawned from a thread that lives as long as the test
//! process, under `setpriv --pdeathsig KILL`, so they die with the test binary even though a
//! `static` is never dropped; a small watcher removes the cluster's folder afterwards.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::Error;
use crate::error::IoContext as _;
use crate::registry::free_port;

/// The phases of the cluster's preparation (config, keys, mkfs); see the script's header.
const SETUP_SCRIPT: &str = include_str!("rgw-setup.sh");
/// How long the gateway may take to answer after its daemons started.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// The region the test clients sign for (RGW accepts any).
pub const REGION: &str = "us-east-1";

/// A running gateway: its endpoint and the S3 keys of its one user.
pub struct Rgw {
    endpoint: String,
    access_key: String,
    secret_key: String,
    dir: PathBuf,
    buckets: AtomicU32,
}

impl std::fmt::Debug for Rgw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key stays out of test output.
        f.debug_struct("Rgw")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

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

impl Rgw {
    /// The test binary's cluster, started on first use.
    pub fn shared() -> Result<&'static Rgw, Error> {
        static SHARED: OnceLock<Result<Rgw, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                // Started on a thread that never ends: the daemons' parent-death signal fires
                // when the thread that spawned them exits, which a test thread soon does.
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::Builder::new()
                    .name("rgw-daemons".into())
                    .spawn(move || {
                        let mut children = Vec::new();
                        let started = Rgw::start(&mut children).map_err(|e| e.to_string());
                        let _ = tx.send(started);
                        loop {
                            std::thread::park();
                        }
                    })
                    .map_err(|e| e.to_string())?;
                rx.recv().map_err(|e| e.to_string())?
            })
            .as_ref()
            .map_err(|e| Error::Invalid(format!("starting Ceph RGW: {e}")))
    }

    fn start(children: &mut Vec<Child>) -> Result<Rgw, Error> {
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
        let deadline = Instant::now() + READY_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", rgw_port)).is_err() {
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    addr: format!("127.0.0.1:{rgw_port}"),
                    reason: "the RADOS gateway is not listening".to_string(),
                    stderr: logs_tail(&dir),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let keys = phase("user")?;
        let (access_key, secret_key) = keys
            .split_once(' ')
            .ok_or_else(|| Error::Invalid("rgw-setup.sh user printed no keys".to_string()))?;
        Ok(Rgw {
            endpoint: format!("http://127.0.0.1:{rgw_port}"),
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            dir,
            buckets: AtomicU32::new(0),
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// Creates a new empty bucket and returns its name.
    pub fn bucket(&self) -> Result<String, Error> {
        let n = self.buckets.fetch_add(1, Ordering::Relaxed);
        let name = format!("wharf-test-{}-{n}", std::process::id());
        self.s3_request("PUT", &format!("/{name}"))?;
        Ok(name)
    }

    /// A new bucket (as [`Rgw::bucket`]) with this gateway's address and keys, for a
    /// docker-registry on S3 ([`crate::Registry::start_open_on_s3`]).
    pub fn new_s3_bucket(&self) -> Result<crate::S3Bucket, Error> {
        Ok(crate::S3Bucket {
            endpoint: self.endpoint().to_string(),
            region: REGION.to_string(),
            bucket: self.bucket()?,
            access_key: self.access_key().to_string(),
            secret_key: self.secret_key().to_string(),
        })
    }

    /// A signed request without a body (curl's SigV4); fails unless the answer is 2xx.
    pub fn s3_request(&self, method: &str, path: &str) -> Result<String, Error> {
        // SHA-256 of the empty payload: RGW wants the header, curl does not send it by itself.
        const EMPTY_SHA256: &str =
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let out = Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}", "-X", method])
            .arg("--aws-sigv4")
            .arg(format!("aws:amz:{REGION}:s3"))
            .arg("--user")
            .arg(format!("{}:{}", self.access_key, self.secret_key))
            .arg("-H")
            .arg(format!("x-amz-content-sha256: {EMPTY_SHA256}"))
            .arg(format!("{}{path}", self.endpoint))
            .output()
            .ctx(|| format!("curl {method} {path}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        if !out.status.success() || !code.starts_with('2') {
            return Err(Error::Command {
                command: format!("S3 {method} {path}"),
                status: code.to_string(),
                stderr: format!("{body}{}", String::from_utf8_lossy(&out.stderr)),
            });
        }
        Ok(body.to_string())
    }
}

/// Starts `bin args` under `setpriv --pdeathsig KILL`, its output in the cluster's log folder.
fn daemon(dir: &Path, bin: &str, args: &[&str]) -> Result<Child, Error> {
    let log = dir.join("log").join(format!("{bin}.out"));
    let out = std::fs::File::create(&log).ctx(|| format!("creating {}", log.display()))?;
    let err = out
        .try_clone()
        .ctx(|| format!("opening {}", log.display()))?;
    Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", bin])
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .ctx(|| format!("starting {bin} (Debian packages ceph-mon ceph-osd radosgw ceph-common)"))
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

/// Removes `dir` once this process has exited (a `static` fixture is never dropped).
fn watch_and_remove(dir: &Path) {
    let _ = Command::new("setsid")
        .args([
            "sh",
            "-c",
            "while kill -0 \"$0\" 2>/dev/null; do sleep 2; done; rm -rf \"$1\"",
        ])
        .arg(std::process::id().to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
