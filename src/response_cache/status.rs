//! The `Cache-Status` member this cache adds to every response it handles
//! (RFC 9211 §2): an RFC 9651 List member, the cache's name as a Token
//! with parameters.

use std::fmt::Write as _;

use http::{HeaderName, HeaderValue};

/// `Cache-Status` (RFC 9211).
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why the request went to the handler (RFC 9211 §2.2 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fwd {
    /// The cache was configured not to handle this request.
    Bypass,
    /// The request method is not cacheable (an unsafe method).
    Method,
    /// No entry for the URI.
    UriMiss,
    /// Entries for the URI, none for the request's `Vary` fields.
    VaryMiss,
    /// An entry that this request may not use (`Authorization`, §3.5).
    Miss,
    /// The entry is stale (or must be revalidated: `no-cache`).
    Stale,
}

impl Fwd {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Method => "method",
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Miss => "miss",
            Self::Stale => "stale",
        }
    }
}

/// What this cache did for one response.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Status {
    pub(crate) hit: bool,
    pub(crate) fwd: Option<Fwd>,
    pub(crate) fwd_status: Option<u16>,
    /// Seconds of freshness left; negative when stale (§2.4).
    pub(crate) ttl: Option<i64>,
    pub(crate) stored: bool,
    pub(crate) collapsed: bool,
    /// `detail` (§2.8), a Token.
    pub(crate) detail: Option<&'static str>,
}

impl Status {
    pub(crate) fn hit(ttl: i64) -> Self {
        Self {
            hit: true,
            ttl: Some(ttl),
            ..Self::default()
        }
    }

    pub(crate) fn forward(fwd: Fwd) -> Self {
        Self {
            fwd: Some(fwd),
            ..Self::default()
        }
    }

    /// The member, `name` first (a valid Token, checked at build).
    pub(crate) fn render(&self, name: &str) -> HeaderValue {
        let mut out = String::with_capacity(64);
        out.push_str(name);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            out.push_str("; fwd=");
            out.push_str(fwd.as_str());
        }
        if let Some(status) = self.fwd_status {
            let _ = write!(out, "; fwd-status={status}");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(out, "; ttl={ttl}");
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(detail) = self.detail {
            out.push_str("; detail=");
            out.push_str(detail);
        }
        HeaderValue::from_str(&out).expect("tokens and integers are valid field values")
    }
}

/// Whether `name` is an RFC 9651 Token (§3.3.4), as RFC 9211 §2 wants the
/// cache's identifier.
pub(crate) fn is_token(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    (first.is_ascii_alphabetic() || first == b'*')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b))
}
