//! Who made a request, as the layers decided it: the authenticated
//! [`Subject`], and the markers an authentication layer leaves on a request
//! it let through without one (anonymous, or a token without `sub`).
//!
//! Every layer that keys by client reads this module, never `jwt_auth`; the
//! axum adapter ([`crate::extract`]) turns the markers into answers.

use std::fmt;
use std::sync::Arc;

/// Who made the request, once authenticated: the `sub` claim of a verified
/// JWT, or whatever your own authentication middleware decides.
///
/// The JWT layer inserts it into the request extensions next to the claims;
/// layers further in (such as a per-user rate limit) read it from there
/// without knowing how the request was authenticated. Your own middleware can
/// insert one too, and everything downstream works the same.
///
/// As a handler argument (feature `axum`), `Subject` answers 401 with the
/// JWT layer's challenge when that layer let the request through without a
/// subject (optional mode and no token, or a token whose `sub` is missing or
/// empty), and 500 when nothing provided one; `Option<Subject>` never
/// rejects. Key extractors treat an empty subject as none.
///
/// ```
/// use tower_edge::Subject;
///
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert(Subject::new("user-42"));
/// assert_eq!(request.extensions().get::<Subject>().unwrap().as_str(), "user-42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(Arc<str>);

impl Subject {
    /// A subject with the given identifier.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Subject").field(&&*self.0).finish()
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an authentication layer answers a request it let through without a
/// principal, for whatever answers later (extractors, `RequireScopeLayer`):
/// its bare challenge, the challenge for a token without a subject, and its
/// `Rejections`. One per layer, shared by every request's marker.
#[cfg(feature = "jwt-auth")]
#[derive(Debug)]
pub(crate) struct AuthAnswers {
    pub(crate) missing: http::HeaderValue,
    #[cfg(feature = "axum")]
    pub(crate) no_subject: http::HeaderValue,
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) rejections: crate::rejection::Rejections,
}

/// Marks a request an authentication layer let through anonymously
/// (optional mode), with how to answer should something further in require
/// a token.
#[cfg(feature = "jwt-auth")]
#[derive(Clone, Debug)]
pub(crate) struct Anonymous(pub(crate) Arc<AuthAnswers>);

#[cfg(feature = "jwt-auth")]
impl Anonymous {
    /// The layer's bare `WWW-Authenticate` challenge.
    pub(crate) fn challenge(&self) -> &http::HeaderValue {
        &self.0.missing
    }
}

/// Marks a request whose verified token names no subject (no `sub`, or an
/// empty one), with how to answer should the [`Subject`] extractor be used.
#[cfg(all(feature = "jwt-auth", feature = "axum"))]
#[derive(Clone, Debug)]
pub(crate) struct NoSubject(pub(crate) Arc<AuthAnswers>);
