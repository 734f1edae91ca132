//! Large request bodies read with a raised receive low-water mark (`body_pacing`): over a real
//! socket, the end of a body that comes late is still read and answered, and the connection goes
//! on with its next request.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: usize = 1024 * 1024;

/// One answer on a keep-alive connection: status and body (`Content-Length` framed).
async fn read_answer(conn: &mut TcpStream, pending: &mut Vec<u8>) -> (u16, String, Vec<u8>) {
    let head_end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut buf = vec![0u8; 64 * 1024];
        let n = conn.read(&mut buf).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(pending[..head_end].to_vec()).expect("ASCII head");
    let status: u16 = head[9..12].parse().expect("status");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    let location = header("location");
    pending.drain(..head_end);
    while pending.len() < length {
        let mut buf = vec![0u8; 1024 * 1024];
        let n = conn.read(&mut buf).await.expect("read");
        assert!(n > 0, "the server closed the connection mid-answer");
        pending.extend_from_slice(&buf[..n]);
    }
    let body = pending.drain(..length).collect();
    (status, location, body)
}

#[tokio::test]
async fn a_large_upload_whose_end_comes_late_is_answered_and_the_connection_goes_on() {
    let reg = registry_on_socket().await;
    let addr = reg.socket.as_ref().expect("socket").addr;
    let exchange = async {
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let mut pending = Vec::new();
        conn.write_all(
            b"POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\nHost: r\r\nContent-Length: 0\r\n\r\n",
        )
        .await
        .expect("write");
        let (status, location, _) = read_answer(&mut conn, &mut pending).await;
        assert_eq!(status, 202);

        let blob: Vec<u8> = (0..5 * MIB + 123).map(|i| (i % 251) as u8).collect();
        let digest = digest_of(&blob);
        let head = format!(
            "PUT {} HTTP/1.1\r\nHost: r\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\n\r\n",
            with_digest(&location, &digest),
            blob.len()
        );
        // The head with the body's first bytes, as curl sends it: hyper reads some of the body
        // before the route asks for it.
        let (first, rest) = blob.split_at(100 * 1024);
        let (middle, last) = rest.split_at(rest.len() - 300 * 1024);
        conn.write_all(&[head.as_bytes(), first].concat())
            .await
            .expect("write");
        for piece in middle.chunks(64 * 1024) {
            conn.write_all(piece).await.expect("write");
        }
        // Less than the mark is left, and it comes late.
        tokio::time::sleep(Duration::from_millis(200)).await;
        conn.write_all(last).await.expect("write");
        let (status, _, _) = read_answer(&mut conn, &mut pending).await;
        assert_eq!(status, 201, "the upload is stored");

        // The same connection serves the next request, a small one read at once.
        conn.write_all(
            format!("GET /v2/team/app/blobs/{digest} HTTP/1.1\r\nHost: r\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let (status, _, body) = read_answer(&mut conn, &mut pending).await;
        assert_eq!(status, 200);
        assert!(body == blob, "the blob reads back whole");
    };
    // A guard against a hung server (the failure this test looks for), not a timing assertion.
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .expect("the server answers every request");
}

/// curl, a client we did not write, as the registry bench and most scripts use it: `-T` sends
/// the body with its `Content-Length` (so it is paced) in 64 KiB writes after `Expect:
/// 100-continue`. Once at full speed and once held to 2 MB/s (a slow link: the mark is never
/// reached, and every paced wait ends at its limit), each upload followed by a GET on the same
/// connection (`--next`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_uploads_at_full_speed_and_slowly_are_stored_and_the_connection_goes_on() {
    let found = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "this test needs curl (apt-get install curl)");
    let reg = registry_on_socket().await;
    let addr = reg.socket.as_ref().expect("socket").addr;
    let dir = tempfile::tempdir().expect("tempdir");
    for (round, rate) in [(1u8, None), (2, Some("2M"))] {
        let blob: Vec<u8> = (0..5 * MIB + 77).map(|i| (i % 253) as u8 ^ round).collect();
        let digest = digest_of(&blob);
        let file = dir.path().join(format!("blob-{round}"));
        std::fs::write(&file, &blob).expect("write");
        let started = reg
            .call(http::Method::POST, "/v2/team/app/blobs/uploads/", &[], b"")
            .await;
        assert_eq!(started.status.as_u16(), 202);
        let location = with_digest(started.header("location"), &digest);
        let base = format!("http://{addr}");
        let read_back = dir.path().join(format!("read-{round}"));
        let mut curl = tokio::process::Command::new("curl");
        curl.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects}\\n",
        ]);
        if let Some(rate) = rate {
            curl.args(["--limit-rate", rate]);
        }
        curl.arg("-T")
            .arg(&file)
            .args(["-H", "Content-Type: application/octet-stream"])
            .arg(format!("{base}{location}"))
            .arg("--next")
            .args(["-sS", "-w", "%{http_code} %{num_connects}\\n", "-o"])
            .arg(&read_back)
            .arg(format!("{base}/v2/team/app/blobs/{digest}"));
        // A guard against a hung upload (the failure this test looks for), not a timing
        // assertion: the slow round takes about 3 s.
        let out = tokio::time::timeout(Duration::from_secs(60), curl.output())
            .await
            .expect("curl ends")
            .expect("curl runs");
        let answers = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "round {round}: {answers} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            answers.lines().collect::<Vec<_>>(),
            ["201 1", "200 0"],
            "round {round}: the upload is stored, and the GET reuses its connection"
        );
        assert!(
            std::fs::read(&read_back).expect("read back") == blob,
            "round {round}: the blob reads back whole"
        );
    }
}
