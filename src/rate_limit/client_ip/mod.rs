//! The client's IP address: the TCP peer, or behind trusted proxies the
//! first untrusted address of the forwarding header, walked right to left.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use http::{Extensions, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::ConfigError;
use crate::list::{self, Quoting};

/// The TCP peer's address, put in the request extensions by your server.
///
/// The rate limiter looks for the peer address in this order: `PeerAddr`; the
/// hook given to
/// [`LimitRateLayerBuilder::peer_addr_with`](super::LimitRateLayerBuilder::peer_addr_with);
/// a bare [`SocketAddr`] extension (what a hand-written hyper accept loop
/// typically inserts); axum's `ConnectInfo<SocketAddr>` (feature `axum`,
/// from `into_make_service_with_connect_info`).
///
/// ```
/// use std::net::SocketAddr;
/// use tower_edge::rate_limit::PeerAddr;
///
/// let peer: SocketAddr = "192.0.2.1:50000".parse().unwrap();
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(PeerAddr(peer));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr(pub SocketAddr);

/// Which forwarding header trusted proxies write. Read only the one your
/// proxies set: a header they do not touch is entirely client-controlled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:80"`.
    Forwarded,
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`, or a
/// single address; RFC 4632 §3.1), matched by [`ipnet`]. An IPv4-mapped
/// IPv6 address (`::ffff:10.0.0.0/8`) is read as the IPv4 address it maps,
/// with an IPv4 prefix length, and so are the addresses it is matched
/// against.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr(IpNet);

impl Cidr {
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR network"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max),
            None => Some(max),
        };
        prefix
            .and_then(|prefix| IpNet::new(addr, prefix).ok())
            .map(Self)
            .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))
    }
}

pub(crate) type PeerHook = Arc<dyn Fn(&Extensions) -> Option<IpAddr> + Send + Sync>;

/// How the client IP is found; part of the layer's configuration.
#[derive(Clone)]
pub(crate) struct ClientIpConfig {
    pub(crate) trusted: Vec<Cidr>,
    pub(crate) header: ForwardedHeader,
    pub(crate) ipv6_prefix: u8,
    pub(crate) peer_hook: Option<PeerHook>,
}

impl Default for ClientIpConfig {
    fn default() -> Self {
        Self {
            trusted: Vec::new(),
            header: ForwardedHeader::XForwardedFor,
            ipv6_prefix: 64,
            peer_hook: None,
        }
    }
}

impl fmt::Debug for ClientIpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIp")
            .field("trusted_proxies", &self.trusted)
            .field("header", &self.header)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("peer_hook", &self.peer_hook.is_some())
            .finish()
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl ClientIpConfig {
    pub(crate) fn parse_trusted<I, S>(proxies: I) -> Result<Vec<Cidr>, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        proxies
            .into_iter()
            .map(|s| {
                s.as_ref()
                    .parse()
                    .map_err(|m| ConfigError::new("trusted_proxies", m))
            })
            .collect()
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(ip))
    }

    pub(crate) fn peer(&self, extensions: &Extensions) -> Option<IpAddr> {
        if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
            return Some(addr.ip());
        }
        if let Some(ip) = self.peer_hook.as_ref().and_then(|hook| hook(extensions)) {
            return Some(ip);
        }
        if let Some(addr) = extensions.get::<SocketAddr>() {
            return Some(addr.ip());
        }
        #[cfg(feature = "axum")]
        if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
            return Some(info.0.ip());
        }
        None
    }

    /// The client IP (see [`super::RequestInfo::client_ip`]).
    pub(crate) fn resolve(&self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        let peer = self.peer(extensions)?.to_canonical();
        // No trusted proxies (the default): the peer is the client, and no
        // header is read.
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            // An untrusted peer: its forwarding headers are its own words.
            return Some(peer);
        }
        let mut client = peer;
        // All lines are one list (RFC 9110 §5.3), walked from the right
        // (the list kit's right-anchored reverse walk): what the nearest
        // proxy appended is read first and intact, whatever the client
        // wrote to its left (bytes that are not ASCII, an unbalanced quote).
        // The client's part only counts if the walk gets there. Empty
        // elements are kept: like garbage, they stop the walk.
        let (name, quoting) = match self.header {
            ForwardedHeader::XForwardedFor => (X_FORWARDED_FOR, Quoting::None),
            ForwardedHeader::Forwarded => (http::header::FORWARDED, Quoting::Rfc9110),
        };
        let lines = headers.get_all(name).iter().map(HeaderValue::as_bytes);
        for element in list::elements_rev(lines, quoting) {
            let node = match self.header {
                ForwardedHeader::XForwardedFor => xff_node(element),
                ForwardedHeader::Forwarded => forwarded_for(element),
            };
            match step(self, node) {
                Step::Next(ip) => client = ip,
                Step::Done(ip) => return Some(ip),
                Step::Stop => return Some(client),
            }
        }
        // Every hop was trusted: the request started inside the trusted
        // network, at the leftmost (trusted) address.
        Some(client)
    }
}

enum Step {
    /// A trusted hop: keep walking.
    Next(IpAddr),
    /// The first untrusted address: the client.
    Done(IpAddr),
    /// Not an address (`unknown`, obfuscated, garbage): what lies left of it
    /// cannot be trusted; the client is the last trusted hop.
    Stop,
}

fn step(config: &ClientIpConfig, node: Option<IpAddr>) -> Step {
    match node {
        Some(ip) if config.is_trusted(ip) => Step::Next(ip),
        Some(ip) => Step::Done(ip),
        None => Step::Stop,
    }
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:8080`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:8080`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        // `[::ffff:192.0.2.1]` is the IPv4 client, as when written bare.
        return ip
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| IpAddr::V6(ip).to_canonical());
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (ip, port) = node.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// One `X-Forwarded-For` entry as an address; `None` when it is not one
/// (including bytes that are not ASCII).
fn xff_node(entry: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(entry)
        .ok()
        .and_then(|entry| parse_node(entry.trim()))
}

/// The address in the `for` parameter of one `Forwarded` element, or
/// `None` when it has none or the element is malformed (RFC 7239 §4:
/// `name=value` pairs separated by `;`, a value a token or a quoted string,
/// each parameter at most once). Unquoted values may hold `:` and brackets,
/// as some proxies write them.
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let is_space = |b: u8| b == b' ' || b == b'\t';
    // The raw `for` value, and whether it is a quoted string with escapes:
    // only that one is ever copied.
    let mut found: Option<(&[u8], bool)> = None;
    let mut i = 0;
    let n = element.len();
    loop {
        while i < n && is_space(element[i]) {
            i += 1;
        }
        if i == n {
            break;
        }
        if element[i] == b';' {
            // An empty pair.
            i += 1;
            continue;
        }
        let start = i;
        while i < n && element[i] != b'=' && element[i] != b';' && !is_space(element[i]) {
            i += 1;
        }
        let name = &element[start..i];
        if i == n || element[i] != b'=' || name.contains(&b'"') {
            return None;
        }
        i += 1;
        let (value, escaped) = if element.get(i) == Some(&b'"') {
            i += 1;
            let start = i;
            let mut escaped = false;
            loop {
                match *element.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        element.get(i + 1)?;
                        escaped = true;
                        i += 2;
                    }
                    _ => i += 1,
                }
            }
            i += 1;
            (&element[start..i - 1], escaped)
        } else {
            let start = i;
            while i < n && element[i] != b';' && !is_space(element[i]) {
                i += 1;
            }
            let value = &element[start..i];
            if value.contains(&b'"') {
                return None;
            }
            (value, false)
        };
        while i < n && is_space(element[i]) {
            i += 1;
        }
        if i < n && element[i] != b';' {
            return None;
        }
        if name.eq_ignore_ascii_case(b"for") {
            if found.is_some() {
                // A parameter given twice: malformed.
                return None;
            }
            found = Some((value, escaped));
        }
    }
    let (value, escaped) = found?;
    if escaped {
        // `\x` stands for `x` (RFC 9110 §5.6.4).
        let mut unescaped = Vec::with_capacity(value.len());
        let mut bytes = value.iter();
        while let Some(&b) = bytes.next() {
            unescaped.push(if b == b'\\' { *bytes.next()? } else { b });
        }
        parse_node(std::str::from_utf8(&unescaped).ok()?)
    } else {
        parse_node(std::str::from_utf8(value).ok()?)
    }
}

pub(crate) mod options;

#[cfg(test)]
mod tests;
