//! A second S3 implementation for tests: moto's server (`moto_server`, from PyPI's
//! `moto[server]`, which `scripts/test-all.sh` installs in a virtualenv), in memory on
//! 127.0.0.1. It is written from AWS's documented and observed answers rather than from Ceph's
//! code: its ETags, error codes, listing pages and presigned URLs are another reading of the API,
//! and it is laxer than RGW where that does not change what wharf relies on (it checks no
//! signatures; it does enforce the 5 MiB minimum part and `If-None-Match: *`).
//!
//! One server per test binary ([`shared`], under a second to start), a fresh bucket per test.
//! The binary is `$WHARF_TEST_MOTO_SERVER`, else `moto_server` on `PATH`.

use std::process::Child;
use std::sync::OnceLock;
use std::time::Duration;

use crate::Error;
use crate::error::IoContext as _;
use crate::registry::free_port;
use crate::s3_server::{self, S3Server, watch_and_remove};

/// How long the server may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The moto server to run.
fn binary() -> String {
    std::env::var("WHARF_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_string())
}

/// The test binary's moto server, started on first use.
pub fn shared() -> Result<&'static S3Server, Error> {
    static SHARED: OnceLock<Result<S3Server, String>> = OnceLock::new();
    S3Server::shared(&SHARED, "moto's S3 server", start)
}

fn start(children: &mut Vec<Child>) -> Result<S3Server, Error> {
    let dir = tempfile::Builder::new()
        .prefix("wharf-moto-")
        .tempdir()
        .ctx(|| "creating the moto server's folder".to_string())?
        .keep();
    watch_and_remove(&dir);
    let port = free_port()?;
    let log = dir.join("moto_server.out");
    let bin = binary();
    children.push(s3_server::daemon(
        &log,
        &bin,
        &["-H", "127.0.0.1", "-p", &port.to_string()],
        "pip install 'moto[server]', or run scripts/test-all.sh, which installs it; \
         WHARF_TEST_MOTO_SERVER names the binary",
    )?);
    let started = children.last_mut().expect("just pushed");
    s3_server::wait_listening("moto's S3 server", started, port, READY_TIMEOUT, || {
        std::fs::read_to_string(&log).unwrap_or_default()
    })?;
    // moto checks no signatures: any keys will do, and these name themselves in a log.
    Ok(S3Server::new(
        format!("http://127.0.0.1:{port}"),
        "wharf-test-access-key",
        "wharf-test-secret-key",
    ))
}
