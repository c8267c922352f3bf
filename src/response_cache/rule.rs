//! Rules in code: which requests the cache handles and how, matched by
//! path like the cache-headers layer's rules.

use std::time::Duration;

use crate::cache_headers::PathMatch;
use crate::config::ConfigError;

/// How the cache treats the requests whose path matches; rules are tried
/// in the order given to the layer, the first match wins. Without a
/// matching rule a request is cached as its response's headers say.
///
/// ```
/// use std::time::Duration;
/// use tower_edge::response_cache::ResponseCacheRule;
///
/// // Every user's own copy of /me, for 10 s on the server.
/// let me = ResponseCacheRule::new().path("/me").per_subject().lifetime(Duration::from_secs(10));
/// // Never cache the admin pages.
/// let admin = ResponseCacheRule::new().path_prefix("/admin").bypass();
/// # let _ = (me, admin);
/// ```
#[derive(Debug, Clone)]
pub struct ResponseCacheRule {
    path: PathMatch,
    per_subject: bool,
    lifetime: Option<Duration>,
    bypass: bool,
}

impl Default for ResponseCacheRule {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseCacheRule {
    /// A rule for every path that changes nothing yet.
    pub fn new() -> Self {
        Self {
            path: PathMatch::Any,
            per_subject: false,
            lifetime: None,
            bypass: false,
        }
    }

    /// Applies to this path only.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = PathMatch::Exact(path.into());
        self
    }

    /// Applies to paths under `prefix`, segment by segment (`/static`
    /// matches `/static/app.js`, not `/statistics`).
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path = PathMatch::Prefix(prefix.into());
        self
    }

    /// Applies to paths matching `pattern`: literal segments, `*` for one
    /// non-empty segment, a final `**` for any rest (`/products/*`).
    pub fn path_pattern(mut self, pattern: impl Into<String>) -> Self {
        self.path = PathMatch::Pattern(pattern.into());
        self
    }

    /// One entry per principal: the key includes the request's
    /// [`Subject`](crate::Subject) (put in the request extensions by the
    /// authentication layer), so a request with `Authorization` is served
    /// its own entry whatever its response's `Cache-Control` says (RFC
    /// 9111 §3.5 does not apply: nothing is shared). A request without a
    /// subject bypasses the cache.
    pub fn per_subject(mut self) -> Self {
        self.per_subject = true;
        self
    }

    /// The server lifetime of responses that carry no targeted field
    /// (`Edge-Cache-Control`) nor `s-maxage` / `max-age` / `Expires`: like
    /// a targeted field in code. `no-store`, `private` and `Set-Cookie`
    /// still keep a response out.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// The cache leaves these requests alone (`Cache-Status:
    /// fwd=bypass`).
    pub fn bypass(mut self) -> Self {
        self.bypass = true;
        self
    }

    pub(crate) fn compile(self) -> Result<Self, ConfigError> {
        self.path
            .check()
            .map_err(|msg| ConfigError::new("rule.path", msg))?;
        if self.lifetime.is_some_and(|l| l.is_zero()) {
            return Err(ConfigError::new("rule.lifetime", "must be at least 1 s"));
        }
        if self.bypass && (self.per_subject || self.lifetime.is_some()) {
            return Err(ConfigError::new(
                "rule.bypass",
                "a bypass rule takes no `per_subject` or `lifetime`",
            ));
        }
        Ok(self)
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        self.path.matches(path)
    }

    pub(crate) fn is_bypass(&self) -> bool {
        self.bypass
    }

    pub(crate) fn is_per_subject(&self) -> bool {
        self.per_subject
    }

    pub(crate) fn rule_lifetime(&self) -> Option<Duration> {
        self.lifetime
    }
}
