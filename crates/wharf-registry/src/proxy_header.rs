//! The PROXY protocol (haproxy's `send-proxy` and `send-proxy-v2`, AWS's network load balancer,
//! ...): a balancer in TCP mode cannot add `X-Forwarded-For` (it may not even see HTTP, when the
//! replicas hold the TLS certificate), so it sends one header with the client's address before
//! the connection's own bytes.
//!
//! With `proxy_protocol = true`, a connection from a trusted proxy must start with that header,
//! and the client it names is the connection's peer from then on: the per-address limits count
//! it, and `X-Forwarded-For` is believed only if that client is itself a trusted proxy. A
//! connection from anyone else is read as it is: a header sent by an untrusted peer would be
//! read as the start of an HTTP request or TLS handshake, and refused there.
//!
//! The header is read byte-exact: nothing after it is consumed, so the TLS handshake or the
//! HTTP request that follows is untouched. Parsing is the `ppp` crate's.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Version 2's signature: its first 12 bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest line, `\r\n` included (the specification's 107 bytes).
const V1_MAX: usize = 107;
/// Version 2's longest address and TLV part accepted: addresses take at most 216 bytes, and
/// haproxy's TLVs (ALPN, authority, unique id, TLS details) a few hundred more.
const V2_MAX_PAYLOAD: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
    /// Closed before its first byte: a balancer's plain TCP health check.
    #[error("the connection closed before sending anything")]
    ClosedBeforeHeader,
    #[error(
        "the connection does not start with a PROXY protocol header (proxy_protocol = true: the balancer must send one, as haproxy's send-proxy or send-proxy-v2 does)"
    )]
    Missing,
    #[error("PROXY protocol header: {0}")]
    Malformed(String),
}

/// Reads the PROXY protocol header at the start of `stream`: the client's address, or `None`
/// when the header names none (v1 `UNKNOWN`, v2 `LOCAL` such as a health check, or an address
/// family other than IPv4 and IPv6): the connection then stays the proxy's own.
pub async fn read_proxy_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut start = [0u8; 5];
    start[0] = match stream.read_u8().await {
        Ok(byte) => byte,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(ProxyHeaderError::ClosedBeforeHeader);
        }
        Err(e) => return Err(e.into()),
    };
    stream.read_exact(&mut start[1..]).await?;
    if &start == b"PROXY" {
        let mut line = start.to_vec();
        while !line.ends_with(b"\r\n") {
            if line.len() >= V1_MAX {
                return Err(ProxyHeaderError::Malformed(format!(
                    "a version 1 header longer than {V1_MAX} bytes"
                )));
            }
            line.push(stream.read_u8().await?);
        }
        let header = ppp::v1::Header::try_from(line.as_slice())
            .map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
        return Ok(match header.addresses {
            ppp::v1::Addresses::Tcp4(a) => {
                Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Tcp6(a) => {
                Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
            }
            ppp::v1::Addresses::Unknown => None,
        });
    }
    if start[..] != V2_SIGNATURE[..5] {
        return Err(ProxyHeaderError::Missing);
    }
    let mut fixed = [0u8; 16];
    fixed[..5].copy_from_slice(&start);
    stream.read_exact(&mut fixed[5..]).await?;
    if &fixed[..12] != V2_SIGNATURE {
        return Err(ProxyHeaderError::Missing);
    }
    let payload = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if payload > V2_MAX_PAYLOAD {
        return Err(ProxyHeaderError::Malformed(format!(
            "a version 2 header announcing {payload} bytes (at most {V2_MAX_PAYLOAD} accepted)"
        )));
    }
    let mut whole = fixed.to_vec();
    whole.resize(16 + payload, 0);
    stream.read_exact(&mut whole[16..]).await?;
    let header = ppp::v2::Header::try_from(whole.as_slice())
        .map_err(|e| ProxyHeaderError::Malformed(e.to_string()))?;
    if header.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        ppp::v2::Addresses::IPv4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::IPv6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a header from `bytes`; also returns what is left unread.
    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyHeaderError>, Vec<u8>) {
        let mut stream = bytes;
        let header = read_proxy_header(&mut stream).await;
        (header, stream.to_vec())
    }

    fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    #[tokio::test]
    async fn version_1_names_the_client_and_leaves_the_request_unread() {
        let (got, rest) =
            read(b"PROXY TCP4 198.51.100.4 10.0.0.5 51234 5000\r\nGET /v2/ HTTP/1.1\r\n").await;
        assert_eq!(got.unwrap(), Some("198.51.100.4:51234".parse().unwrap()));
        assert_eq!(rest, b"GET /v2/ HTTP/1.1\r\n");
        let (got, rest) = read(b"PROXY TCP6 2001:db8::7 fd00::1 443 5000\r\n\x16\x03").await;
        assert_eq!(got.unwrap(), Some("[2001:db8::7]:443".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03", "a TLS handshake after it is untouched");
        // The shortest header: 15 bytes, the handshake right behind it.
        let (got, rest) = read(b"PROXY UNKNOWN\r\n\x16").await;
        assert_eq!(got.unwrap(), None);
        assert_eq!(rest, b"\x16");
    }

    #[tokio::test]
    async fn version_2_names_the_client_and_a_local_command_names_none() {
        let mut ipv4 = vec![198, 51, 100, 4, 10, 0, 0, 5];
        ipv4.extend_from_slice(&51234u16.to_be_bytes());
        ipv4.extend_from_slice(&5000u16.to_be_bytes());
        // A TLV (ALPN "h2") after the addresses, as haproxy sends.
        let mut with_tlv = ipv4.clone();
        with_tlv.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']);
        let mut bytes = v2(1, 0x11, &with_tlv);
        bytes.extend_from_slice(b"GET /");
        let (got, rest) = read(&bytes).await;
        assert_eq!(got.unwrap(), Some("198.51.100.4:51234".parse().unwrap()));
        assert_eq!(rest, b"GET /");
        let (got, rest) = read(&v2(0, 0x00, &[])).await;
        assert_eq!(got.unwrap(), None, "a health check's LOCAL");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn anything_else_is_refused_saying_what_is_wrong() {
        let (got, _) = read(b"GET /v2/ HTTP/1.1\r\n\r\n").await;
        assert!(matches!(got, Err(ProxyHeaderError::Missing)), "{got:?}");
        let (got, _) = read(b"\x16\x03\x01\x02\x00\x01").await;
        assert!(matches!(got, Err(ProxyHeaderError::Missing)), "{got:?}");
        let long = format!("PROXY TCP4 {} \r\n", "1".repeat(200));
        let (got, _) = read(long.as_bytes()).await;
        let err = got.unwrap_err().to_string();
        assert!(err.contains("longer than 107"), "{err}");
        let (got, _) = read(b"PROXY TCP4 not-an-address 10.0.0.5 1 2\r\n").await;
        assert!(
            matches!(got, Err(ProxyHeaderError::Malformed(_))),
            "{got:?}"
        );
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let (got, _) = read(&huge).await;
        let err = got.unwrap_err().to_string();
        assert!(err.contains("65535"), "{err}");
        let (got, _) = read(b"PROX").await;
        assert!(
            matches!(got, Err(ProxyHeaderError::Io(_))),
            "cut short: {got:?}"
        );
        let (got, _) = read(b"").await;
        assert!(
            matches!(got, Err(ProxyHeaderError::ClosedBeforeHeader)),
            "a health check: {got:?}"
        );
    }
}
