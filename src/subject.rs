//! The authenticated principal of a request, shared between layers.

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

#[cfg(feature = "axum")]
crate::extract::extension_extractor!(
    Subject,
    "JwtAuthLayer (or your own authentication)",
    authenticated subject
);
