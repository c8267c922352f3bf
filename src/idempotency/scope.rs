//! Whose key it is: keys are scoped by principal, so one client never
//! receives another client's stored response.

use std::fmt;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use super::key::IdempotencyKey;
use crate::Subject;
use crate::rate_limit::RequestInfo;

/// The principal a key belongs to: a SHA-256 of who it is (subject, IP
/// address or your own bytes, each tagged with its kind, so a subject
/// never equals an IP or a custom scope).
///
/// Collision-resistant: two principals share a scope only if they are the
/// same, unlike the rate limiter's 64-bit [`Key`](crate::rate_limit::Key).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope([u8; 32]);

impl Scope {
    fn tagged(tag: u8, bytes: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update([tag]);
        hasher.update(bytes);
        Self(hasher.finalize().into())
    }

    /// The scope of an authenticated subject.
    pub fn subject(subject: &Subject) -> Self {
        Self::tagged(b's', subject.as_str().as_bytes())
    }

    /// The scope of a client IP address (IPv4-mapped IPv6 counts as IPv4).
    pub fn ip(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::tagged(b'4', &v4.octets()),
            IpAddr::V6(v6) => Self::tagged(b'6', &v6.octets()),
        }
    }

    /// A scope of your own (a tenant, an API key...).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self::tagged(b'k', bytes)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Scope({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// Finds the [`Scope`] of a request. `None`: no principal is known (no
/// subject, no peer address): see
/// [`IdempotencyLayerBuilder::scope`](super::IdempotencyLayerBuilder::scope).
///
/// Closures `Fn(&RequestInfo<'_>) -> Option<Scope>` are extractors.
pub trait ScopeExtractor: Send + Sync + 'static {
    /// The scope of `request`.
    fn scope(&self, request: &RequestInfo<'_>) -> Option<Scope>;
}

impl<F> ScopeExtractor for F
where
    F: Fn(&RequestInfo<'_>) -> Option<Scope> + Send + Sync + 'static,
{
    fn scope(&self, request: &RequestInfo<'_>) -> Option<Scope> {
        self(request)
    }
}

/// The default scope: the [`Subject`] an authentication layer put in the
/// request extensions (a non-empty one), else the client IP (the TCP peer,
/// or behind [trusted proxies](super::IdempotencyLayerBuilder::trusted_proxies)
/// the first untrusted forwarded address).
#[derive(Debug, Clone, Copy, Default)]
pub struct SubjectOrClientIp;

impl ScopeExtractor for SubjectOrClientIp {
    fn scope(&self, request: &RequestInfo<'_>) -> Option<Scope> {
        match request.subject() {
            Some(subject) => Some(Scope::subject(subject)),
            None => request.client_ip().map(Scope::ip),
        }
    }
}

/// One key in one scope, as stores see it: SHA-256 of the scope and the
/// key. Its hex form names the key in a network store.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey([u8; 32]);

impl StoreKey {
    /// The store key of `key` in `scope`.
    pub fn new(scope: &Scope, key: &IdempotencyKey) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(scope.0);
        hasher.update(key.as_str().as_bytes());
        Self(hasher.finalize().into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        crate::hex::string(&self.0)
    }

    /// Lowercase hex, on the stack (the Redis key of every request).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn hex_digits(&self) -> [u8; 64] {
        let mut out = [0; 64];
        crate::hex::encode_into(&self.0, &mut out);
        out
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({})", &self.to_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_digits_spell_to_hex() {
        let mut bytes = [0u8; 32];
        bytes
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 37) as u8);
        let key = super::StoreKey(bytes);
        assert_eq!(
            std::str::from_utf8(&key.hex_digits()).unwrap(),
            key.to_hex()
        );
    }
}
