//! What reaches `wharf registry serve` before any request: a PROXY protocol header (v1 text or
//! v2 binary) at the start of a connection, and the `X-Forwarded-For` chain a balancer passes
//! on. Any bytes: no panic, and an address the PROXY header names comes back only from a
//! header that parsed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wharf_registry::client_addr::{TrustedProxies, parse_trusted_proxy};
use wharf_registry::proxy_header::read_proxy_header;

#[derive(Arbitrary, Debug)]
struct Input {
    /// `PROXY ` (v1) or the v2 signature before the bytes, or neither.
    start: u8,
    header: Vec<u8>,
    trusted: Vec<String>,
    forwarded: Vec<String>,
}

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

fuzz_target!(|input: Input| {
    let mut bytes = match input.start % 3 {
        0 => b"PROXY ".to_vec(),
        1 => V2_SIGNATURE.to_vec(),
        _ => Vec::new(),
    };
    bytes.extend_from_slice(&input.header);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut stream = &bytes[..];
    let _ = runtime.block_on(read_proxy_header(&mut stream));

    let nets = input
        .trusted
        .iter()
        .take(4)
        .filter_map(|t| parse_trusted_proxy(t).ok())
        .collect();
    let proxies = TrustedProxies::new(nets);
    let mut headers = http::HeaderMap::new();
    for f in input.forwarded.iter().take(4) {
        if let Ok(v) = http::HeaderValue::from_str(f) {
            headers.append("x-forwarded-for", v);
        }
    }
    for peer in [IpAddr::V4(Ipv4Addr::LOCALHOST), "::1".parse().expect("ip")] {
        let _ = proxies.client_of(peer, &headers);
    }
});
