//! The address a request comes from, for the per-address limits (failed logins, upload
//! sessions of anonymous clients): the connection's peer or, when that peer is a trusted proxy
//! (the load balancer in front of the replicas), the client that proxy names in
//! `X-Forwarded-For`.
//!
//! Behind a load balancer every connection comes from the balancer. Without this, one client out
//! of failed logins put every client out (each got `429` for its password), and whoever guessed
//! alice's password made alice wait, wherever she logged in from.
//!
//! Only the proxies in `trusted_proxies` are believed: anyone can send `X-Forwarded-For`, so a
//! connection from any other address is counted under that address, whatever the header says.
//! The header is read from the right. Each proxy appends the address it got the request from, so
//! the rightmost entry that is not a trusted proxy is the client. Whatever the client wrote into
//! the header itself is further left, and is never reached.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;
use ipnet::IpNet;

/// Entries of `X-Forwarded-For` looked at, from the right, at most. Real chains are a few
/// proxies long; this bounds the work a long header can ask for.
const MAX_HOPS: usize = 32;

/// The address a request is counted under (a request extension, set by
/// [`resolve_client_addr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// Parses one `trusted_proxies` entry: a network (`10.0.0.0/8`, `fd00::/8`) or one address
/// (`127.0.0.1`, `::1`).
pub fn parse_trusted_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    text.parse::<IpNet>().map_err(|_| {
        format!(
            "trusted proxy {text:?} is neither an address nor a network: write it like 10.0.0.5, 10.0.0.0/8 or fd00::/8"
        )
    })
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    /// Entries that trust every address of their family (`0.0.0.0/0`, `::/0`): with one, any
    /// client picks the address it is counted under by sending `X-Forwarded-For`.
    pub fn everyone(&self) -> Vec<IpNet> {
        self.0
            .iter()
            .filter(|net| net.prefix_len() == 0)
            .copied()
            .collect()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that came over a connection from `peer`.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        // From the right, without collecting: a client may send a long header of its own.
        let hops_from_the_right = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            // A value that is not text is a hop that is not an address (the walk stops there),
            // never one to skip: skipping would reach what the client wrote further left.
            .flat_map(|value| value.to_str().unwrap_or("(not text)").rsplit(','));
        let mut client = peer;
        for hop in hops_from_the_right.take(MAX_HOPS) {
            // A hop a trusted proxy wrote that is not an address: its proxy is the last one
            // known, and is counted as the client.
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, also with a port (`1.2.3.4:5678`, `[::1]:80`, as
/// some balancers write it) or in brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

/// The axum middleware: puts the request's [`ClientAddr`] in its extensions.
pub async fn resolve_client_addr(
    State(trusted): State<Arc<TrustedProxies>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    {
        let client = trusted.client_of(peer, req.headers());
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(
            nets.iter()
                .map(|n| parse_trusted_proxy(n).unwrap())
                .collect(),
        )
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let none = TrustedProxies::default();
        let h = forwarded(&["203.0.113.9"]);
        assert_eq!(none.client_of(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }

    #[test]
    fn a_header_from_an_untrusted_peer_is_ignored() {
        let t = trusted(&["10.0.0.0/24"]);
        let h = forwarded(&["10.0.0.7"]);
        assert_eq!(t.client_of(ip("198.51.100.4"), &h), ip("198.51.100.4"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client_and_a_forged_left_part_is_not_reached() {
        let t = trusted(&["10.0.0.0/24", "fd00::/8"]);
        // The client forged "192.0.2.1"; the first balancer appended 198.51.100.4, the second
        // the first's address.
        let h = forwarded(&["192.0.2.1, 198.51.100.4", "10.0.0.5"]);
        assert_eq!(t.client_of(ip("10.0.0.6"), &h), ip("198.51.100.4"));
        let h = forwarded(&["2001:db8::7"]);
        assert_eq!(t.client_of(ip("fd00::1"), &h), ip("2001:db8::7"));
    }

    #[test]
    fn a_trusted_peer_without_a_header_or_with_only_proxies_is_the_leftmost_known() {
        let t = trusted(&["10.0.0.0/24"]);
        assert_eq!(
            t.client_of(ip("10.0.0.6"), &HeaderMap::new()),
            ip("10.0.0.6")
        );
        let h = forwarded(&["10.0.0.9,10.0.0.8"]);
        assert_eq!(t.client_of(ip("10.0.0.6"), &h), ip("10.0.0.9"));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_read() {
        let t = trusted(&["127.0.0.1"]);
        for (hop, want) in [
            ("198.51.100.4:5123", "198.51.100.4"),
            ("[2001:db8::7]:443", "2001:db8::7"),
            ("[2001:db8::7]", "2001:db8::7"),
            ("::ffff:198.51.100.4", "198.51.100.4"),
        ] {
            let h = forwarded(&[hop]);
            assert_eq!(t.client_of(ip("127.0.0.1"), &h), ip(want), "{hop}");
        }
        // The peer itself as an IPv4-mapped address (a dual-stack listener).
        let h = forwarded(&["198.51.100.4"]);
        assert_eq!(t.client_of(ip("::ffff:127.0.0.1"), &h), ip("198.51.100.4"));
    }

    #[test]
    fn a_hop_that_is_not_an_address_stops_at_the_last_proxy_known() {
        let t = trusted(&["10.0.0.0/24"]);
        let h = forwarded(&["198.51.100.4, unknown, 10.0.0.5"]);
        assert_eq!(t.client_of(ip("10.0.0.6"), &h), ip("10.0.0.5"));
        let h = forwarded(&["garbage"]);
        assert_eq!(t.client_of(ip("10.0.0.6"), &h), ip("10.0.0.6"));
    }

    #[test]
    fn a_value_that_is_not_text_stops_the_walk_instead_of_being_skipped() {
        let t = trusted(&["10.0.0.0/24"]);
        let mut h = forwarded(&["198.51.100.5"]);
        h.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff, 10.0.0.5").unwrap(),
        );
        assert_eq!(
            t.client_of(ip("10.0.0.6"), &h),
            ip("10.0.0.6"),
            "the forged 198.51.100.5 further left is not reached"
        );
    }

    #[test]
    fn a_long_chain_of_proxies_is_read_only_so_far() {
        let t = trusted(&["10.0.0.0/8"]);
        let mut chain: Vec<String> = vec!["198.51.100.4".to_string()];
        chain.extend((0..100).map(|i| format!("10.0.{}.{}", i / 250, i % 250 + 1)));
        let h = forwarded(&[&chain.join(",")]);
        let client = t.client_of(ip("10.9.9.9"), &h);
        assert!(t.trusts(client), "stopped inside the chain at {client}");
    }

    #[test]
    fn entries_that_trust_everyone_are_named() {
        assert!(trusted(&["10.0.0.0/8", "::1"]).everyone().is_empty());
        let all = trusted(&["10.0.0.0/8", "0.0.0.0/0", "::/0"]).everyone();
        let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["0.0.0.0/0", "::/0"]);
    }

    #[test]
    fn entries_parse_as_networks_or_single_addresses() {
        assert_eq!(
            parse_trusted_proxy("127.0.0.1").unwrap(),
            "127.0.0.1/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_trusted_proxy(" fd00::/8 ").unwrap(),
            "fd00::/8".parse::<IpNet>().unwrap()
        );
        let err = parse_trusted_proxy("10.0.0.0/33").unwrap_err();
        assert!(
            err.contains("10.0.0.0/33") && err.contains("10.0.0.0/8"),
            "{err}"
        );
    }
}
