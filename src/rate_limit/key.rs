//! Rate-limit keys and the extractors that find them in a request.

use std::cell::OnceCell;
use std::fmt;
use std::net::IpAddr;

use http::{Extensions, HeaderMap, HeaderName, Method, Uri};

use super::client_ip::ClientIpConfig;
use crate::Subject;

/// The bucket a request is counted in: small and `Copy` (an IP address or a
/// 64-bit hash), never a per-request `String`.
///
/// Strings (subjects, API keys, routes) are hashed with XXH3-64, which is
/// stable across processes, so replicas sharing a Redis store agree on keys.
/// Its [`Display`](fmt::Display) form (`ip:192.0.2.1`, `sub:1f…`, `h:…`,
/// `global`, `unknown`) is what a remote store uses as its key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(Repr);

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Repr {
    Ip(IpAddr),
    Subject(u64),
    Hash(u64),
    Global,
    Unknown,
}

impl Key {
    /// The key of an IP address, as given (no prefix grouping; see
    /// [`Key::ip_grouped`]).
    pub fn ip(ip: IpAddr) -> Self {
        Self(Repr::Ip(ip.to_canonical()))
    }

    /// The key of an IP address with IPv6 addresses grouped by their first
    /// `ipv6_prefix` bits (a client usually owns a whole /64). IPv4-mapped
    /// IPv6 addresses count as IPv4.
    pub fn ip_grouped(ip: IpAddr, ipv6_prefix: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                Self(Repr::Ip(IpAddr::V6((u128::from(v6) & mask).into())))
            }
            v4 => Self(Repr::Ip(v4)),
        }
    }

    /// The key of an authenticated subject.
    pub fn subject(subject: &Subject) -> Self {
        Self(Repr::Subject(xxhash_rust::xxh3::xxh3_64(
            subject.as_str().as_bytes(),
        )))
    }

    /// The key of arbitrary bytes (an API key, a tenant id...), hashed.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(Repr::Hash(xxhash_rust::xxh3::xxh3_64(bytes)))
    }

    /// A key from your own 64-bit identifier or hash.
    pub const fn from_u64(id: u64) -> Self {
        Self(Repr::Hash(id))
    }

    /// The one bucket of a global limit.
    pub const fn global() -> Self {
        Self(Repr::Global)
    }

    /// The shared bucket of requests whose key could not be found (see
    /// [`UnknownKey::SharedBucket`](super::UnknownKey::SharedBucket)).
    pub const fn unknown() -> Self {
        Self(Repr::Unknown)
    }

    /// A key made of two keys (per user *and* route, per API key *and*
    /// IP...). Order matters.
    pub fn combine(self, other: Key) -> Self {
        let mut buf = [0u8; 2 * 18];
        let a = self.to_bytes();
        let b = other.to_bytes();
        buf[..18].copy_from_slice(&a);
        buf[18..].copy_from_slice(&b);
        Self(Repr::Hash(xxhash_rust::xxh3::xxh3_64(&buf)))
    }

    /// The IP address when this is an IP key.
    pub fn as_ip(&self) -> Option<IpAddr> {
        match self.0 {
            Repr::Ip(ip) => Some(ip),
            _ => None,
        }
    }

    fn to_bytes(self) -> [u8; 18] {
        let mut out = [0u8; 18];
        match self.0 {
            Repr::Ip(IpAddr::V4(v4)) => {
                out[0] = 1;
                out[1..5].copy_from_slice(&v4.octets());
            }
            Repr::Ip(IpAddr::V6(v6)) => {
                out[0] = 2;
                out[1..17].copy_from_slice(&v6.octets());
            }
            Repr::Subject(h) => {
                out[0] = 3;
                out[1..9].copy_from_slice(&h.to_le_bytes());
            }
            Repr::Hash(h) => {
                out[0] = 4;
                out[1..9].copy_from_slice(&h.to_le_bytes());
            }
            Repr::Global => out[0] = 5,
            Repr::Unknown => out[0] = 6,
        }
        out
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Repr::Ip(ip) => write!(f, "ip:{ip}"),
            Repr::Subject(h) => write!(f, "sub:{h:016x}"),
            Repr::Hash(h) => write!(f, "h:{h:016x}"),
            Repr::Global => f.write_str("global"),
            Repr::Unknown => f.write_str("unknown"),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// What a [`KeyExtractor`] sees of a request: its head, and the client IP
/// resolved once per request (through trusted proxies, see
/// [`LimitRateLayerBuilder::trusted_proxies`](super::LimitRateLayerBuilder::trusted_proxies)).
pub struct RequestInfo<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
    ip_config: &'a ClientIpConfig,
    client_ip: OnceCell<Option<IpAddr>>,
}

impl fmt::Debug for RequestInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestInfo")
            .field("method", self.method)
            .field("uri", self.uri)
            .finish_non_exhaustive()
    }
}

impl<'a> RequestInfo<'a> {
    pub(crate) fn new(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        extensions: &'a Extensions,
        ip_config: &'a ClientIpConfig,
    ) -> Self {
        Self {
            method,
            uri,
            headers,
            extensions,
            ip_config,
            client_ip: OnceCell::new(),
        }
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        self.method
    }

    /// The request URI.
    pub fn uri(&self) -> &Uri {
        self.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        self.headers
    }

    /// The request extensions.
    pub fn extensions(&self) -> &Extensions {
        self.extensions
    }

    /// The authenticated subject, if an authentication layer put one in the
    /// extensions. An empty subject names nobody and counts as none (else
    /// every token with `"sub": ""` would share one bucket).
    pub fn subject(&self) -> Option<&Subject> {
        self.extensions
            .get::<Subject>()
            .filter(|subject| !subject.as_str().is_empty())
    }

    /// The client's IP address: the TCP peer, or — when the peer is a
    /// trusted proxy — the first untrusted address found walking the
    /// forwarding header right to left. `None` when no peer address is
    /// known.
    pub fn client_ip(&self) -> Option<IpAddr> {
        *self
            .client_ip
            .get_or_init(|| self.ip_config.resolve(self.headers, self.extensions))
    }

    /// [`client_ip`](Self::client_ip) as a key, IPv6 grouped by the
    /// configured prefix (/64 by default).
    pub fn client_ip_key(&self) -> Option<Key> {
        self.client_ip()
            .map(|ip| Key::ip_grouped(ip, self.ip_config.ipv6_prefix))
    }
}

/// Finds the key of a request for one policy.
///
/// Returning `None` means "no key for this request" and triggers the
/// layer's [`UnknownKey`](super::UnknownKey) answer. Closures
/// `Fn(&RequestInfo<'_>) -> Option<Key>` are extractors; a pair `(A, B)` of
/// extractors keys by both (see [`Key::combine`]).
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of `request`, if it has one.
    fn extract(&self, request: &RequestInfo<'_>) -> Option<Key>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&RequestInfo<'_>) -> Option<Key> + Send + Sync + 'static,
{
    fn extract(&self, request: &RequestInfo<'_>) -> Option<Key> {
        self(request)
    }
}

impl<A: KeyExtractor, B: KeyExtractor> KeyExtractor for (A, B) {
    fn extract(&self, request: &RequestInfo<'_>) -> Option<Key> {
        Some(self.0.extract(request)?.combine(self.1.extract(request)?))
    }
}

/// Keys by client IP ([`RequestInfo::client_ip_key`]): the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientIp;

impl KeyExtractor for ClientIp {
    fn extract(&self, request: &RequestInfo<'_>) -> Option<Key> {
        request.client_ip_key()
    }
}

/// Keys authenticated requests by their [`Subject`] and anonymous ones by
/// client IP; a subject never shares a bucket with an IP, so a user behind
/// an exhausted anonymous IP bucket keeps their own quota.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubjectOrIp;

impl KeyExtractor for SubjectOrIp {
    fn extract(&self, request: &RequestInfo<'_>) -> Option<Key> {
        match request.subject() {
            Some(subject) => Some(Key::subject(subject)),
            None => request.client_ip_key(),
        }
    }
}

/// Keys by [`Subject`] only; anonymous requests have no key (see
/// [`UnknownKey`](super::UnknownKey); [`UnknownKey::Skip`](super::UnknownKey::Skip)
/// exempts them from this policy).
#[derive(Debug, Clone, Copy, Default)]
pub struct SubjectOnly;

impl KeyExtractor for SubjectOnly {
    fn extract(&self, request: &RequestInfo<'_>) -> Option<Key> {
        request.subject().map(Key::subject)
    }
}

/// Keys by the value of a header, hashed (an API key). A request without the
/// header, or with an empty first value, has no key. When the header comes
/// several times, the first value is the key: the one `HeaderMap::get`, and
/// so most authentication code, reads. (Sending the header twice therefore
/// does not move a client out of its own bucket.)
#[derive(Debug, Clone)]
pub struct HeaderKey(HeaderName);

impl HeaderKey {
    /// Keys by the value of `name`.
    pub fn new(name: HeaderName) -> Self {
        Self(name)
    }
}

impl KeyExtractor for HeaderKey {
    fn extract(&self, request: &RequestInfo<'_>) -> Option<Key> {
        request
            .headers()
            .get(&self.0)
            .filter(|value| !value.is_empty())
            .map(|value| Key::from_bytes(value.as_bytes()))
    }
}

/// Keys by method and path (combine it with another extractor for "per
/// client per route"). Mind that paths with IDs make one key per ID.
#[derive(Debug, Clone, Copy, Default)]
pub struct MethodAndPath;

impl KeyExtractor for MethodAndPath {
    fn extract(&self, request: &RequestInfo<'_>) -> Option<Key> {
        let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
        hasher.update(request.method().as_str().as_bytes());
        hasher.update(b" ");
        hasher.update(request.uri().path().as_bytes());
        Some(Key::from_u64(hasher.digest()))
    }
}

/// One bucket for every request: a global limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl KeyExtractor for Global {
    fn extract(&self, _request: &RequestInfo<'_>) -> Option<Key> {
        Some(Key::global())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    // IPv6 clients are keyed by /64 by default (RFC 4291 §2.5.4: the low
    // 64 bits are the interface ID, which a host may change at will,
    // RFC 8981).
    #[test]
    fn ipv6_is_grouped_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Key::ip_grouped(a, 64), Key::ip_grouped(b, 64));
        assert_ne!(Key::ip_grouped(a, 64), Key::ip_grouped(c, 64));
        assert_eq!(Key::ip_grouped(a, 48), Key::ip_grouped(c, 48));
        assert_ne!(Key::ip_grouped(a, 128), Key::ip_grouped(b, 128));
        assert_eq!(
            Key::ip_grouped(a, 64).as_ip(),
            Some("2001:db8:1:2::".parse().unwrap())
        );
        assert_eq!(
            Key::ip_grouped(a, 0).as_ip(),
            Some(Ipv6Addr::UNSPECIFIED.into())
        );
        // IPv4 and IPv4-mapped IPv6 are one key, never grouped.
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = Ipv4Addr::new(192, 0, 2, 7).into();
        assert_eq!(Key::ip_grouped(mapped, 64), Key::ip(v4));
        assert_ne!(Key::ip(v4), Key::ip(Ipv4Addr::new(192, 0, 2, 8).into()));
    }

    #[test]
    fn keys_of_different_kinds_never_collide_and_display() {
        let subject = Key::subject(&Subject::new("alice"));
        assert_ne!(subject, Key::from_bytes(b"alice"));
        assert_eq!(subject, Key::subject(&Subject::new("alice")));
        let ip = Key::ip("192.0.2.1".parse().unwrap());
        assert_ne!(ip.combine(subject), subject.combine(ip));
        assert_eq!(ip.to_string(), "ip:192.0.2.1");
        assert!(subject.to_string().starts_with("sub:"));
        assert_eq!(Key::global().to_string(), "global");
        assert_eq!(Key::unknown().to_string(), "unknown");
        assert!(std::mem::size_of::<Key>() <= 24);
    }
}
