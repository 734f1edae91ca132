//! nginx (Debian's `nginx-light`) in front of `wharf registry serve` (ignored tier): the
//! configuration README shows under "Deployment with nginx", run for real. nginx buffers
//! request bodies and answers by default and limits bodies to 1 MiB; a registry needs all of
//! that off, and the client's `Host` passed on (the token realm is built from it).

use crate::registry::{
    PASS, Served, USER, alice_after_a_guesser, assert_readme_shows, pull_to_layout,
};
use crate::support::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The `http` block README shows: nginx on `port` over `backends`, passing the client's address
/// in `X-Forwarded-For` (the replicas list nginx in `trusted_proxies`).
pub(crate) fn nginx_http_block(port: u16, backends: &[String]) -> String {
    let servers: String = backends
        .iter()
        .map(|b| format!("    server {b};\n"))
        .collect();
    format!(
        "http {{\n  upstream replicas {{\n{servers}  }}\n  server {{\n    listen 127.0.0.1:{port};\n    \
         client_max_body_size 0;\n    location / {{\n      proxy_pass http://replicas;\n      \
         proxy_http_version 1.1;\n      proxy_request_buffering off;\n      proxy_buffering off;\n      \
         proxy_read_timeout 15m;\n      proxy_send_timeout 15m;\n      \
         proxy_set_header Host $http_host;\n      \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n"
    )
}

/// `nginx` in the foreground with [`nginx_http_block`] over `backend`; killed when dropped.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(backend: &Served) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = wharf_testkit::free_port().unwrap();
        let d = dir.path().display();
        // Test-only settings around README's block: foreground, files in the test's folder.
        let temps: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .iter()
            .map(|t| format!("{t}_temp_path {d}/{t};\n"))
            .collect();
        let block = nginx_http_block(port, &[backend.host()]);
        let http = block.replacen("http {\n", &format!("http {{\n{temps}access_log off;\n"), 1);
        let config = format!(
            "daemon off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{}}\n{http}"
        );
        let file = dir.path().join("nginx.conf");
        std::fs::write(&file, config).unwrap();
        let mut child = Command::new("nginx")
            .arg("-c")
            .arg(&file)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (Debian package nginx-light)");
        wharf_testkit::wait_listening("nginx", &mut child, port, Duration::from_secs(10), || {
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// README's nginx block, in both authentication modes: skopeo pushes and pulls through it (in
/// token mode through the realm built from the `Host` nginx passes on), and the replica, which
/// trusts nginx, counts each client: a guesser out of attempts does not put alice out, and the
/// access log names both.
#[test]
#[ignore = "needs nginx, curl and skopeo: run by scripts/test-all.sh"]
fn through_nginx_skopeo_pushes_and_pulls_and_each_client_is_counted() {
    for mode in ["basic", "token"] {
        let args = ["--trusted-proxy", "127.0.0.1"].map(String::from);
        let served = Served::start_with(mode, &args, &[("WHARF_LOG", "info")]);
        let nginx = Nginx::start(&served);
        let reference = format!("{}/team/nginx:{mode}", nginx.host());
        seed_layout().push(&reference, Some((USER, PASS))).unwrap();
        pull_to_layout(&reference);

        let login = if mode == "token" {
            "/token?service=wharf-registry&scope=repository:team/nginx:pull"
        } else {
            "/v2/"
        };
        let alice = alice_after_a_guesser(&nginx.host(), login, mode);
        assert_eq!(alice, 200, "{mode}: another client behind nginx logs in");
        let log = served.log();
        assert!(
            log.contains("client=\"127.0.0.5\"") && log.contains("client=\"127.0.0.66\""),
            "{mode}: the access log names each client, not nginx:\n{log}"
        );
        served.assert_log_has_no_secrets();
    }
}

/// README shows the block this test runs.
#[test]
fn readme_shows_the_nginx_config_the_tests_use() {
    assert_readme_shows("nginx", "Deployment with nginx", nginx_http_block);
}
