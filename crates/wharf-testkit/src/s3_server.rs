//! An S3 server started for a test binary: its endpoint, the keys of its one user, fresh
//! buckets, and signed requests for what the tests check behind the registry's back. Two
//! implementations start one: [`crate::rgw`] (Ceph's RADOS gateway, strict like AWS) and
//! [`crate::moto`] (moto's server, a second reading of the S3 API modelled on AWS's answers).
//!
//! A server's processes are spawned from a thread that lives as long as the test process, under
//! `setpriv --pdeathsig KILL`, so they die with the test binary even though a `static` is never
//! dropped.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::Error;
use crate::error::{IoContext as _, command_output};

/// The region the test clients sign for (both servers accept any).
pub const REGION: &str = "us-east-1";

/// A running S3 server: its endpoint and the S3 keys of its one user.
pub struct S3Server {
    endpoint: String,
    access_key: String,
    secret_key: String,
    buckets: AtomicU32,
    /// Ceph's config file, for `radosgw-admin` (RGW only).
    ceph_conf: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key stays out of test output.
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl S3Server {
    pub(crate) fn new(endpoint: String, access_key: &str, secret_key: &str) -> S3Server {
        S3Server {
            endpoint,
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            buckets: AtomicU32::new(0),
            ceph_conf: None,
        }
    }

    /// The same, for a Ceph RGW administered with `conf`.
    pub(crate) fn with_ceph_conf(mut self, conf: std::path::PathBuf) -> S3Server {
        self.ceph_conf = Some(conf);
        self
    }

    /// Limits `bucket` to `max_bytes` with an RGW bucket quota (`radosgw-admin quota`). Errors
    /// on a server without quotas (moto).
    pub fn limit_bucket(&self, bucket: &str, max_bytes: u64) -> Result<(), Error> {
        let conf = self
            .ceph_conf
            .as_ref()
            .ok_or_else(|| Error::Invalid(format!("{} has no bucket quotas", self.endpoint)))?;
        let max_size = max_bytes.to_string();
        let steps: [&[&str]; 2] = [
            &[
                "quota",
                "set",
                "--quota-scope=bucket",
                "--bucket",
                bucket,
                "--max-size",
                &max_size,
            ],
            &[
                "quota",
                "enable",
                "--quota-scope=bucket",
                "--bucket",
                bucket,
            ],
        ];
        for args in steps {
            command_output(
                Command::new("radosgw-admin")
                    .arg("-c")
                    .arg(conf)
                    .args(args)
                    .stdin(Stdio::null()),
                || format!("radosgw-admin {}", args.join(" ")),
            )?;
        }
        Ok(())
    }

    /// The server in `cell`, started by `start` on first use (`what` names it in errors).
    pub(crate) fn shared(
        cell: &'static OnceLock<Result<S3Server, String>>,
        what: &str,
        start: fn(&mut Vec<Child>) -> Result<S3Server, Error>,
    ) -> Result<&'static S3Server, Error> {
        cell.get_or_init(|| {
            // Started on a thread that never ends: the processes' parent-death signal fires
            // when the thread that spawned them exits, which a test thread soon does.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("{what} processes"))
                .spawn(move || {
                    let mut children = Vec::new();
                    let started = start(&mut children).map_err(|e| e.to_string());
                    let _ = tx.send(started);
                    loop {
                        std::thread::park();
                    }
                })
                .map_err(|e| e.to_string())?;
            rx.recv().map_err(|e| e.to_string())?
        })
        .as_ref()
        .map_err(|e| Error::Invalid(format!("starting {what}: {e}")))
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

    /// A new bucket (as [`S3Server::bucket`]) with this server's address and keys, for a
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

/// Starts `bin args` under `setpriv --pdeathsig KILL`, its output in `log`; `packages` names
/// what provides `bin` when it cannot start.
pub(crate) fn daemon(log: &Path, bin: &str, args: &[&str], packages: &str) -> Result<Child, Error> {
    let out = std::fs::File::create(log).ctx(|| format!("creating {}", log.display()))?;
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
        .ctx(|| format!("starting {bin} ({packages})"))
}

/// Waits until `child`, started as `server`, listens on 127.0.0.1:`port`. An error with
/// `output()` (its logs) if it exits first or `timeout` passes.
pub fn wait_listening(
    server: &'static str,
    child: &mut Child,
    port: u16,
    timeout: Duration,
    output: impl Fn() -> String,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let reason = if let Ok(Some(status)) = child.try_wait() {
            format!("it exited ({status})")
        } else if Instant::now() > deadline {
            format!("it is not listening after {} s", timeout.as_secs())
        } else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        return Err(Error::NotReady {
            server,
            addr: format!("127.0.0.1:{port}"),
            reason,
            stderr: output(),
        });
    }
    Ok(())
}

/// A new temporary folder named `prefix` and a random tail, removed once this process has
/// exited: for a fixture kept in a `static`, which is never dropped (a `TempDir` there was left
/// in the temporary folder by every run of the tests).
pub fn process_tempdir(prefix: &str) -> Result<std::path::PathBuf, Error> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .ctx(|| format!("creating a temporary folder {prefix}*"))?
        .keep();
    watch_and_remove(&dir);
    Ok(dir)
}

/// Removes `dir` once this process has exited (a `static` fixture is never dropped).
pub(crate) fn watch_and_remove(dir: &Path) {
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
