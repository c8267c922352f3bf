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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    ///
    /// Rendered on the stack (every hit renders one): a name too long for
    /// the buffer takes `render_long`.
    pub(crate) fn render(&self, name: &str) -> HeaderValue {
        let mut out = Member {
            bytes: [0; MEMBER_CAP],
            len: 0,
        };
        if !out.push(name.as_bytes()) {
            return self.render_long(name);
        }
        let fits = (!self.hit || out.push(b"; hit"))
            && self
                .fwd
                .is_none_or(|fwd| out.push(b"; fwd=") && out.push(fwd.as_str().as_bytes()))
            && self
                .fwd_status
                .is_none_or(|status| out.push(b"; fwd-status=") && out.push_int(status.into()))
            && self
                .ttl
                .is_none_or(|ttl| out.push(b"; ttl=") && out.push_int(ttl))
            && (!self.stored || out.push(b"; stored"))
            && (!self.collapsed || out.push(b"; collapsed"))
            && self
                .detail
                .is_none_or(|detail| out.push(b"; detail=") && out.push(detail.as_bytes()));
        if !fits {
            return self.render_long(name);
        }
        HeaderValue::from_bytes(&out.bytes[..out.len])
            .expect("tokens and integers are valid field values")
    }

    /// `render` through a `String`, for any length.
    fn render_long(&self, name: &str) -> HeaderValue {
        let mut out = String::with_capacity(name.len() + 64);
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

/// The bytes of a member rendered on the stack.
const MEMBER_CAP: usize = 192;

/// A `Cache-Status` member being rendered on the stack.
struct Member {
    bytes: [u8; MEMBER_CAP],
    len: usize,
}

impl Member {
    /// Appends `more`; false when it does not fit.
    #[inline]
    fn push(&mut self, more: &[u8]) -> bool {
        let Some(dest) = self.bytes.get_mut(self.len..self.len + more.len()) else {
            return false;
        };
        dest.copy_from_slice(more);
        self.len += more.len();
        true
    }

    /// Appends `value` in decimal (an RFC 9651 Integer, §3.3.1).
    #[inline]
    fn push_int(&mut self, value: i64) -> bool {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        (value >= 0 || self.push(b"-")) && self.push(&digits[at..])
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The stack rendering and the `String` one agree on every parameter
    /// (RFC 9211 §2: `hit`, `fwd`, `fwd-status`, `ttl` — negative when
    /// stale, §2.4 —, `stored`, `collapsed`, `detail`).
    #[test]
    fn stack_render_matches_the_string_render() {
        let statuses = [
            Status::hit(30),
            Status::hit(0),
            Status::hit(-7),
            Status::hit(i64::MIN),
            Status::hit(i64::MAX),
            Status {
                fwd: Some(Fwd::VaryMiss),
                fwd_status: Some(200),
                stored: true,
                collapsed: true,
                detail: Some("stale-while-revalidate"),
                ..Status::default()
            },
            Status::forward(Fwd::Bypass),
            Status::default(),
        ];
        for status in statuses {
            assert_eq!(
                status.render("tower-edge"),
                status.render_long("tower-edge"),
                "{status:?}"
            );
        }
        assert_eq!(
            Status::hit(-7).render("tower-edge"),
            "tower-edge; hit; ttl=-7"
        );
    }

    /// A cache name too long for the stack buffer still renders whole.
    #[test]
    fn long_names_fall_back() {
        let name = "c".repeat(MEMBER_CAP + 10);
        let status = Status::hit(12);
        assert_eq!(
            status.render(&name).to_str().unwrap(),
            format!("{name}; hit; ttl=12")
        );
        let near = "c".repeat(MEMBER_CAP - 8);
        assert_eq!(
            status.render(&near).to_str().unwrap(),
            format!("{near}; hit; ttl=12")
        );
    }
}
