//! What makes two requests "the same request": a fingerprint of the
//! method, the path and query, chosen headers and the body.

use std::fmt;

use http::HeaderName;
use http::request::Parts;
use sha2::{Digest, Sha256};

/// A SHA-256 digest that identifies a request's payload.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// A fingerprint of your own (any 32 bytes; a digest of what matters).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// SHA-256 over `parts`, each prefixed by its length (so `("ab", "c")`
    /// and `("a", "bc")` differ).
    pub fn of<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", &crate::hex::string(&self.0)[..12])
    }
}

/// Computes the fingerprint of a request from its head and its buffered
/// body. Closures `Fn(&Parts, &[u8]) -> Fingerprint` are fingerprinters.
pub trait Fingerprinter: Send + Sync + 'static {
    /// The fingerprint of the request.
    fn fingerprint(&self, head: &Parts, body: &[u8]) -> Fingerprint;
}

impl<F> Fingerprinter for F
where
    F: Fn(&Parts, &[u8]) -> Fingerprint + Send + Sync + 'static,
{
    fn fingerprint(&self, head: &Parts, body: &[u8]) -> Fingerprint {
        self(head, body)
    }
}

/// The default fingerprint: method, path and query, the values of the
/// chosen headers (every field line, in order; none by default) and the
/// body bytes.
#[derive(Debug, Clone, Default)]
pub struct RequestFingerprint {
    headers: Vec<HeaderName>,
}

impl RequestFingerprint {
    /// Method, path and query, body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also the values of `header` (e.g. `content-type`).
    pub fn header(mut self, header: HeaderName) -> Self {
        self.headers.push(header);
        self
    }
}

impl Fingerprinter for RequestFingerprint {
    fn fingerprint(&self, head: &Parts, body: &[u8]) -> Fingerprint {
        let mut hasher = Sha256::new();
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        part(head.method.as_str().as_bytes());
        let target = head
            .uri
            .path_and_query()
            .map_or(head.uri.path(), |pq| pq.as_str());
        part(target.as_bytes());
        for name in &self.headers {
            part(name.as_str().as_bytes());
            for value in head.headers.get_all(name) {
                part(value.as_bytes());
            }
            part(b"\n");
        }
        part(body);
        Fingerprint(hasher.finalize().into())
    }
}
