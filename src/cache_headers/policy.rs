//! Typed `Cache-Control` directives and the rules that pick them.

use std::fmt::{self, Write as _};
use std::ops::RangeInclusive;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, StatusCode};

use crate::cache_control::directives;
use crate::config::ConfigError;

/// A typed `Cache-Control` response value (RFC 9111 §5.2.2, RFC 8246
/// `immutable`, RFC 5861 `stale-while-revalidate` / `stale-if-error`).
///
/// Build it by chaining directives on [`CacheControl::new`]; it is checked
/// and rendered once, when the layer is built. Delta-seconds are written as
/// plain tokens (`max-age=300`, never quoted); sub-second parts of a
/// [`Duration`] are dropped.
///
/// ```
/// use std::time::Duration;
/// use tower_edge::cache_headers::CacheControl;
///
/// let cc = CacheControl::new().public().max_age(Duration::from_secs(60)).must_revalidate();
/// assert_eq!(cc.to_string(), "public, max-age=60, must-revalidate");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    public: bool,
    private: bool,
    no_store: bool,
    no_cache: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
    must_revalidate: bool,
    proxy_revalidate: bool,
    no_transform: bool,
    immutable: bool,
    stale_while_revalidate: Option<u64>,
    stale_if_error: Option<u64>,
}

impl CacheControl {
    /// No directive yet; add some.
    pub fn new() -> Self {
        Self::default()
    }

    /// `public`: any cache may store the response, even one to an
    /// authenticated request.
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// `private`: only the user's own (browser) cache may store it.
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// `no-store`: no cache may store it.
    pub fn no_store(mut self) -> Self {
        self.no_store = true;
        self
    }

    /// `no-cache`: caches must revalidate before every reuse.
    pub fn no_cache(mut self) -> Self {
        self.no_cache = true;
        self
    }

    /// `max-age=N`: fresh for `age` (whole seconds).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age.as_secs());
        self
    }

    /// `s-maxage=N`: freshness for shared caches only.
    pub fn s_maxage(mut self, age: Duration) -> Self {
        self.s_maxage = Some(age.as_secs());
        self
    }

    /// `must-revalidate`: never serve stale without revalidating.
    pub fn must_revalidate(mut self) -> Self {
        self.must_revalidate = true;
        self
    }

    /// `proxy-revalidate`: `must-revalidate` for shared caches only.
    pub fn proxy_revalidate(mut self) -> Self {
        self.proxy_revalidate = true;
        self
    }

    /// `no-transform`: intermediaries must not transform the content.
    pub fn no_transform(mut self) -> Self {
        self.no_transform = true;
        self
    }

    /// `immutable` (RFC 8246): the content never changes while fresh.
    pub fn immutable(mut self) -> Self {
        self.immutable = true;
        self
    }

    /// `stale-while-revalidate=N` (RFC 5861).
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.stale_while_revalidate = Some(window.as_secs());
        self
    }

    /// `stale-if-error=N` (RFC 5861).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = Some(window.as_secs());
        self
    }

    /// Whether `no-store` is set.
    pub fn is_no_store(&self) -> bool {
        self.no_store
    }

    /// Whether `public` or `private` is set.
    pub(crate) fn has_visibility(&self) -> bool {
        self.public || self.private
    }

    /// Checks that the directives make sense together.
    pub(crate) fn validate(&self, field: &'static str) -> Result<(), ConfigError> {
        let fail = |msg: &'static str| Err(ConfigError::new(field, msg));
        if *self == Self::default() {
            return fail("no directive set");
        }
        if self.public && self.private {
            return fail("`public` and `private` contradict each other");
        }
        if self.private && self.s_maxage.is_some() {
            return fail("`s-maxage` applies to shared caches, which `private` excludes");
        }
        if self.no_store
            && (self.public
                || self.max_age.is_some()
                || self.s_maxage.is_some()
                || self.immutable
                || self.stale_while_revalidate.is_some()
                || self.stale_if_error.is_some())
        {
            return fail(
                "`no-store` contradicts `public`, `max-age`, `s-maxage`, `immutable` and `stale-*`",
            );
        }
        Ok(())
    }

    /// The value, checked and rendered (once, at build time).
    pub(crate) fn render(&self, field: &'static str) -> Result<HeaderValue, ConfigError> {
        self.validate(field)?;
        HeaderValue::from_str(&self.to_string())
            .map_err(|_| ConfigError::new(field, "does not render to a header value"))
    }
}

impl fmt::Display for CacheControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut put = |f: &mut fmt::Formatter<'_>, name: &str, value: Option<u64>| {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            f.write_str(name)?;
            match value {
                Some(v) => write!(f, "={v}"),
                None => Ok(()),
            }
        };
        let flags = [
            (self.public, "public"),
            (self.private, "private"),
            (self.no_store, "no-store"),
            (self.no_cache, "no-cache"),
        ];
        for (on, name) in flags {
            if on {
                put(f, name, None)?;
            }
        }
        if let Some(v) = self.max_age {
            put(f, "max-age", Some(v))?;
        }
        if let Some(v) = self.s_maxage {
            put(f, "s-maxage", Some(v))?;
        }
        let flags = [
            (self.must_revalidate, "must-revalidate"),
            (self.proxy_revalidate, "proxy-revalidate"),
            (self.no_transform, "no-transform"),
            (self.immutable, "immutable"),
        ];
        for (on, name) in flags {
            if on {
                put(f, name, None)?;
            }
        }
        if let Some(v) = self.stale_while_revalidate {
            put(f, "stale-while-revalidate", Some(v))?;
        }
        if let Some(v) = self.stale_if_error {
            put(f, "stale-if-error", Some(v))?;
        }
        Ok(())
    }
}

/// Which request paths a [`CacheRule`] applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathMatch {
    Any,
    Exact(String),
    /// Segment-aware prefix: `/static` matches `/static` and `/static/x`,
    /// not `/staticx`.
    Prefix(String),
    /// `*` is one non-empty segment, a final `**` any rest.
    Pattern(String),
}

impl PathMatch {
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        let path = match self {
            Self::Any => return Ok(()),
            Self::Exact(p) | Self::Prefix(p) | Self::Pattern(p) => p,
        };
        if !path.starts_with('/') {
            return Err("a path must start with `/`");
        }
        if let Self::Pattern(p) = self {
            let segments: Vec<&str> = p[1..].split('/').collect();
            for (i, segment) in segments.iter().enumerate() {
                if segment.contains("**") && (*segment != "**" || i + 1 != segments.len()) {
                    return Err("`**` may only be the whole last segment of a pattern");
                }
                if segment.contains('*') && !matches!(*segment, "*" | "**") {
                    return Err("`*` must be a whole segment");
                }
            }
        }
        Ok(())
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(p) => p == path,
            Self::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (p.ends_with('/')
                        || path.len() == p.len()
                        || path.as_bytes()[p.len()] == b'/')
            }
            Self::Pattern(p) => {
                let mut pattern = p[1..].split('/');
                let mut segments = path.strip_prefix('/').unwrap_or(path).split('/');
                loop {
                    match (pattern.next(), segments.next()) {
                        (Some("**"), _) => return true,
                        (Some("*"), Some(s)) if !s.is_empty() => {}
                        (Some(lit), Some(s)) if lit != "*" && lit == s => {}
                        (None, None) => return true,
                        _ => return false,
                    }
                }
            }
        }
    }
}

/// One `Cache-Control` policy and the requests and responses it applies to.
///
/// By default a rule applies to every path, to `GET` and `HEAD`, and to
/// 2xx responses (and to 304s, which carry what the 200 would have). Rules
/// are tried in the order given to the layer; the first that matches wins.
/// A handler's own `Cache-Control` is kept unless the rule says
/// [`replace_handler_header`](Self::replace_handler_header). No rule applies
/// to 401, 403, 407 or 429: they always get `no-store`.
///
/// ```
/// use std::time::Duration;
/// use http::{header, StatusCode};
/// use tower_edge::cache_headers::{CacheControl, CacheRule};
///
/// let assets = CacheRule::new(
///     CacheControl::new().public().max_age(Duration::from_secs(31_536_000)).immutable(),
/// )
/// .path_prefix("/assets");
///
/// let not_found = CacheRule::new(CacheControl::new().public().max_age(Duration::from_secs(30)))
///     .path_pattern("/products/*")
///     .statuses([StatusCode::NOT_FOUND])
///     .vary(header::ACCEPT_LANGUAGE);
/// # let _ = (assets, not_found);
/// ```
#[derive(Debug, Clone)]
pub struct CacheRule {
    cache_control: CacheControl,
    path: PathMatch,
    methods: Vec<Method>,
    statuses: Option<Vec<RangeInclusive<u16>>>,
    vary: Vec<HeaderName>,
    replace_existing: bool,
}

impl CacheRule {
    /// A rule that sends `cache_control`.
    pub fn new(cache_control: CacheControl) -> Self {
        Self {
            cache_control,
            path: PathMatch::Any,
            methods: vec![Method::GET, Method::HEAD],
            statuses: None,
            vary: Vec::new(),
            replace_existing: false,
        }
    }

    /// Applies to this path only.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = PathMatch::Exact(path.into());
        self
    }

    /// Applies to paths under `prefix`, segment by segment: `/static`
    /// matches `/static` and `/static/app.js`, not `/statistics`.
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path = PathMatch::Prefix(prefix.into());
        self
    }

    /// Applies to paths matching `pattern`: literal segments, `*` for
    /// exactly one non-empty segment, and a final `**` for any rest
    /// (`/products/*`, `/users/*/avatar`, `/docs/**`).
    pub fn path_pattern(mut self, pattern: impl Into<String>) -> Self {
        self.path = PathMatch::Pattern(pattern.into());
        self
    }

    /// Applies to these methods (default `GET` and `HEAD`).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Applies to responses with these statuses (default: any 2xx).
    /// Accumulates with [`status_range`](Self::status_range).
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        let list = self.statuses.get_or_insert_with(Vec::new);
        list.extend(statuses.into_iter().map(|s| s.as_u16()..=s.as_u16()));
        self
    }

    /// Applies to responses whose status lies in `range` (e.g.
    /// `200..=299`). Accumulates with [`statuses`](Self::statuses).
    pub fn status_range(mut self, range: RangeInclusive<u16>) -> Self {
        self.statuses.get_or_insert_with(Vec::new).push(range);
        self
    }

    /// Adds a header to `Vary` (merged with what the response has, never
    /// duplicated).
    pub fn vary(mut self, name: HeaderName) -> Self {
        self.vary.push(name);
        self
    }

    /// Replaces a `Cache-Control` the handler set itself (by default the
    /// handler's header wins).
    pub fn replace_handler_header(mut self) -> Self {
        self.replace_existing = true;
        self
    }

    pub(crate) fn compile(self, authorized_default: &CacheControl) -> Result<Rule, ConfigError> {
        self.path
            .check()
            .map_err(|msg| ConfigError::new("rule.path", msg))?;
        if self.methods.is_empty() {
            return Err(ConfigError::new("rule.methods", "no method given"));
        }
        let statuses = self.statuses.unwrap_or_else(|| vec![200..=299]);
        if statuses.is_empty() || statuses.iter().any(|r| r.is_empty()) {
            return Err(ConfigError::new("rule.statuses", "empty status range"));
        }
        let value = self.cache_control.render("rule.cache_control")?;
        // RFC 9111 §3.5: responses to requests with Authorization stay
        // private unless the policy says `public` (or `private`) itself.
        let authorized = if self.cache_control.has_visibility() || self.cache_control.no_store {
            value.clone()
        } else {
            let mut merged = self.cache_control.clone();
            merged.private |= authorized_default.private;
            merged.no_store |= authorized_default.no_store;
            merged.no_cache |= authorized_default.no_cache;
            if merged.private {
                merged.s_maxage = None;
            }
            if merged.no_store {
                merged = CacheControl::new().no_store();
            }
            merged.render("rule.cache_control")?
        };
        let vary = render_vary(&self.vary)?;
        Ok(Rule {
            path: self.path,
            methods: self.methods,
            statuses,
            value,
            authorized,
            vary_names: self.vary,
            vary,
            replace_existing: self.replace_existing,
        })
    }
}

fn render_vary(names: &[HeaderName]) -> Result<Option<HeaderValue>, ConfigError> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut text = String::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write!(text, "{name}");
    }
    HeaderValue::from_str(&text)
        .map(Some)
        .map_err(|_| ConfigError::new("rule.vary", "does not render to a header value"))
}

/// A compiled rule, with its values rendered.
#[derive(Debug)]
pub(crate) struct Rule {
    path: PathMatch,
    methods: Vec<Method>,
    statuses: Vec<RangeInclusive<u16>>,
    pub(crate) value: HeaderValue,
    pub(crate) authorized: HeaderValue,
    pub(crate) vary_names: Vec<HeaderName>,
    pub(crate) vary: Option<HeaderValue>,
    pub(crate) replace_existing: bool,
}

impl Rule {
    pub(crate) fn matches_request(&self, method: &Method, path: &str) -> bool {
        self.methods.contains(method) && self.path.matches(path)
    }

    pub(crate) fn matches_status(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        self.statuses.iter().any(|r| r.contains(&s))
    }
}

/// Whether `Cache-Control` lines hold the `no-store` directive (not merely
/// the text, e.g. inside a quoted argument).
pub(crate) fn has_no_store<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    directives(values.into_iter().map(HeaderValue::as_bytes)).any(|d| d.is("no-store"))
}

/// Adds `names` to the response's `Vary` unless already listed (any case)
/// or `Vary: *` is present. Pre-rendered `all` is used when there is no
/// `Vary` yet.
pub(crate) fn merge_vary(
    headers: &mut http::HeaderMap,
    names: &[HeaderName],
    all: Option<&HeaderValue>,
) {
    if names.is_empty() {
        return;
    }
    if !headers.contains_key(http::header::VARY) {
        match all {
            Some(all) => {
                headers.insert(http::header::VARY, all.clone());
            }
            None => {
                if let Ok(Some(all)) = render_vary(names) {
                    headers.insert(http::header::VARY, all);
                }
            }
        }
        return;
    }
    let listed = |name: &HeaderName, headers: &http::HeaderMap| {
        headers.get_all(http::header::VARY).iter().any(|v| {
            v.as_bytes().split(|&b| b == b',').any(|member| {
                let member = member.trim_ascii();
                member == b"*" || member.eq_ignore_ascii_case(name.as_str().as_bytes())
            })
        })
    };
    for name in names {
        if !listed(name, headers) {
            headers.append(
                http::header::VARY,
                HeaderValue::from_str(name.as_str()).expect("a header name is a valid value"),
            );
        }
    }
}

#[cfg(test)]
mod tests;
