//! The builder of [`JwtAuthLayer`] and its checks of the configuration.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::algorithm::Algorithm;
use super::authenticate::{Challenges, Clock, Shared, system_now};
use super::backend::CryptoBackend;
use super::cache::TokenCache;
use super::claims::StandardClaims;
use super::header::HeaderRules;
use super::key::VerificationKey;
use super::key_source::{KeySource, StaticKeys};
use super::scope::{ScopeRule, valid_realm};
use super::service::JwtAuthLayer;
use super::token::TokenSources;
use super::verify::Rules;
use super::{DEFAULT_CACHE_CAPACITY, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_LENGTH, DEFAULT_REALM};
use crate::config::ConfigError;
use crate::rejection::Rejections;

/// Whether the layer rejects requests without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMode {
    /// Requests without a token get 401 (the default).
    #[default]
    Required,
    /// Requests without a token pass, without claims; a present but invalid
    /// token is still rejected.
    Optional,
}

/// Builds a [`JwtAuthLayer`]; from [`JwtAuthLayer::builder`].
pub struct JwtAuthLayerBuilder<T = StandardClaims> {
    keys: StaticKeys,
    key_errors: Vec<ConfigError>,
    source: Option<Arc<dyn KeySource>>,
    algorithms: Option<Vec<Algorithm>>,
    issuers: Vec<Box<str>>,
    audiences: Vec<Box<str>>,
    leeway: Duration,
    required: Vec<Box<str>>,
    typ: Option<Box<str>>,
    max_len: usize,
    realm: Box<str>,
    mode: AuthMode,
    sources: TokenSources,
    scopes: Vec<Box<str>>,
    cache: bool,
    cache_capacity: usize,
    cache_ttl: Option<Duration>,
    rejections: Rejections,
    clock: Clock,
    _claims: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for JwtAuthLayerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayerBuilder")
            .field("keys", &self.keys.len())
            .field("key_source", &self.source.is_some())
            .field("algorithms", &self.algorithms)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .field("typ", &self.typ)
            .field("realm", &self.realm)
            .field("mode", &self.mode)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl<T> JwtAuthLayerBuilder<T> {
    /// Deserialize the claims into `U` instead (any `DeserializeOwned`
    /// type); handlers read [`Claims<U>`](super::Claims).
    pub fn claims<U>(self) -> JwtAuthLayerBuilder<U> {
        JwtAuthLayerBuilder {
            keys: self.keys,
            key_errors: self.key_errors,
            source: self.source,
            algorithms: self.algorithms,
            issuers: self.issuers,
            audiences: self.audiences,
            leeway: self.leeway,
            required: self.required,
            typ: self.typ,
            max_len: self.max_len,
            realm: self.realm,
            mode: self.mode,
            sources: self.sources,
            scopes: self.scopes,
            cache: self.cache,
            cache_capacity: self.cache_capacity,
            cache_ttl: self.cache_ttl,
            rejections: self.rejections,
            clock: self.clock,
            _claims: PhantomData,
        }
    }

    /// Adds a verification key (call once per key). Several keys are
    /// selected by their exact `kid`.
    pub fn key(mut self, key: VerificationKey) -> Self {
        if let Err(err) = self.keys.insert(key) {
            self.key_errors.push(err);
        }
        self
    }

    /// Takes keys from `source` (e.g. a JWKS set) instead of
    /// [`key`](Self::key); then [`algorithms`](Self::algorithms) is required.
    pub fn key_source(mut self, source: impl KeySource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The algorithm allow-list (default: the algorithms of the keys given
    /// to [`key`](Self::key)). Tokens with any other `alg` are rejected
    /// before a key is looked up.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// An accepted issuer (`iss`, exact match); call once per issuer. When
    /// any is configured, `iss` is required.
    pub fn issuer(mut self, issuer: impl Into<Box<str>>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// An accepted audience (`aud`, exact match, any of the token's
    /// values); call once per audience. When any is configured, `aud` is
    /// required.
    pub fn audience(mut self, audience: impl Into<Box<str>>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The clock skew tolerated for `exp` and `nbf` (default 60 s, at most
    /// 5 minutes).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// A claim that must be present (any name); call once per claim. `exp`
    /// is always required.
    pub fn require_claim(mut self, name: impl Into<Box<str>>) -> Self {
        self.required.push(name.into());
        self
    }

    /// Requires the header `typ` (e.g. `at+jwt`, RFC 9068 §4), compared
    /// case-insensitively with an implied `application/` prefix.
    pub fn typ(mut self, typ: impl Into<Box<str>>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// The longest token accepted, checked before any decoding (default
    /// 8 KiB).
    pub fn max_token_length(mut self, max: usize) -> Self {
        self.max_len = max;
        self
    }

    /// The `realm` of the `WWW-Authenticate` challenges (default `api`).
    pub fn realm(mut self, realm: impl Into<Box<str>>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Sets the mode (default [`AuthMode::Required`]).
    pub fn mode(mut self, mode: AuthMode) -> Self {
        self.mode = mode;
        self
    }

    /// Shorthand for `mode(AuthMode::Optional)`: requests without a token
    /// pass anonymously.
    pub fn optional(self) -> Self {
        self.mode(AuthMode::Optional)
    }

    /// Whether to read `Authorization: Bearer` (default `true`).
    pub fn authorization_header(mut self, enabled: bool) -> Self {
        self.sources.authorization = enabled;
        self
    }

    /// Also read the token from the cookie `name` (off by default).
    pub fn cookie(mut self, name: impl Into<Box<str>>) -> Self {
        self.sources.cookie = Some(name.into());
        self
    }

    /// Also read the raw token from the header `name` (off by default).
    pub fn header(mut self, name: HeaderName) -> Self {
        self.sources.header = Some(name);
        self
    }

    /// Also read the token from the `access_token` query parameter (off by
    /// default, RFC 6750 §2.3 discourages it); 2xx responses to such
    /// requests get `Cache-Control: private`.
    pub fn query_parameter(mut self, enabled: bool) -> Self {
        self.sources.query = enabled;
        self
    }

    /// A scope every token must grant (call once per scope); tokens without
    /// it get 403 `insufficient_scope`. For per-route scopes use
    /// [`RequireScopeLayer`](super::RequireScopeLayer).
    pub fn require_scope(mut self, scope: impl Into<Box<str>>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Whether to cache verified tokens (default `true`).
    pub fn cache(mut self, enabled: bool) -> Self {
        self.cache = enabled;
        self
    }

    /// The most tokens the cache holds (default 4096): an exact bound, for
    /// any capacity. Zero makes [`build`](Self::build) fail; turn the cache
    /// off with [`cache(false)`](Self::cache) instead.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// The longest a token is served from the cache (default: until its
    /// `exp`).
    ///
    /// The cache counts whole seconds: a fraction of a second is dropped,
    /// and a TTL below one second (which would cache nothing) makes
    /// [`build`](Self::build) fail. Turn the cache off with
    /// [`cache(false)`](Self::cache) instead.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }

    /// How rejection bodies are rendered (default problem+json).
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.rejections = rejections;
        self
    }

    #[cfg(test)]
    pub(crate) fn clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// Names the field: no key (`key`), two keys with one `kid`, two keys
    /// without a `kid` for one algorithm, or a key whose algorithm is not
    /// allowed (`key`), both keys and a key source (`key_source`), an empty
    /// allow-list or none with a key source (`algorithms`), a realm with
    /// `"` or `\` (`realm`), a leeway above 5 minutes (`leeway`), a zero
    /// `max_token_length` or `cache_capacity`, a `cache_ttl` below one
    /// second, a bad scope token (`require_scope`), more than 64
    /// `require_claim`s, no token source left (`authorization_header`), an
    /// empty `typ`, issuer or audience.
    pub fn build(self) -> Result<JwtAuthLayer<T>, ConfigError> {
        if let Some(err) = self.key_errors.into_iter().next() {
            return Err(err);
        }
        let (keys, algorithms): (Arc<dyn KeySource>, Vec<Algorithm>) = match self.source {
            Some(source) => {
                if !self.keys.is_empty() {
                    return Err(ConfigError::new(
                        "key_source",
                        "give either keys or a key source, not both",
                    ));
                }
                let algorithms = self
                    .algorithms
                    .ok_or_else(|| ConfigError::new("algorithms", "required with a key source"))?;
                (source, algorithms)
            }
            None => {
                if self.keys.is_empty() {
                    return Err(ConfigError::new("key", "give at least one key"));
                }
                let algorithms = match self.algorithms {
                    Some(allowed) => {
                        if let Some(alg) = self.keys.algorithms().find(|a| !allowed.contains(a)) {
                            return Err(ConfigError::new(
                                "key",
                                format!(
                                    "a key is bound to {alg}, which `algorithms` does not allow"
                                ),
                            ));
                        }
                        allowed
                    }
                    None => {
                        let mut algs: Vec<Algorithm> = Vec::new();
                        for alg in self.keys.algorithms() {
                            if !algs.contains(&alg) {
                                algs.push(alg);
                            }
                        }
                        algs
                    }
                };
                (Arc::new(self.keys), algorithms)
            }
        };
        if algorithms.is_empty() {
            return Err(ConfigError::new(
                "algorithms",
                "allow at least one algorithm",
            ));
        }
        for &alg in &algorithms {
            tracing::debug!(
                algorithm = %alg,
                backend = CryptoBackend::for_algorithm(alg).name(),
                "jwt_auth: signatures of this algorithm are verified with this crypto library"
            );
        }
        if !valid_realm(&self.realm) {
            return Err(ConfigError::new(
                "realm",
                "printable ASCII without `\"` or `\\` (RFC 6750 §3)",
            ));
        }
        if self.leeway > Duration::from_secs(300) {
            return Err(ConfigError::new("leeway", "at most 5 minutes"));
        }
        if self.max_len == 0 {
            return Err(ConfigError::new("max_token_length", "must be at least 1"));
        }
        if self.cache && self.cache_capacity == 0 {
            return Err(ConfigError::new(
                "cache_capacity",
                "must be at least 1 (or turn the cache off with `cache(false)`)",
            ));
        }
        if self.cache
            && self
                .cache_ttl
                .is_some_and(|ttl| ttl < Duration::from_secs(1))
        {
            return Err(ConfigError::new(
                "cache_ttl",
                "must be at least 1 second: the cache counts whole seconds, so a shorter \
                 TTL would cache nothing (turn the cache off with `cache(false)`)",
            ));
        }
        if self.typ.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new("typ", "must not be empty"));
        }
        if self.issuers.iter().any(|i| i.is_empty()) {
            return Err(ConfigError::new("issuer", "must not be empty"));
        }
        if self.audiences.iter().any(|a| a.is_empty()) {
            return Err(ConfigError::new("audience", "must not be empty"));
        }
        if self.required.len() > 64 {
            return Err(ConfigError::new("require_claim", "at most 64 claims"));
        }
        if !(self.sources.authorization
            || self.sources.cookie.is_some()
            || self.sources.header.is_some()
            || self.sources.query)
        {
            return Err(ConfigError::new(
                "authorization_header",
                "no token source left: enable a cookie, header or query parameter",
            ));
        }
        let scopes = if self.scopes.is_empty() {
            None
        } else {
            Some(ScopeRule::new(&self.realm, self.scopes, "require_scope")?)
        };
        let challenges = Challenges::new(&self.realm, &self.rejections)?;
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let cache = self.cache.then(|| {
            TokenCache::new(
                self.cache_capacity,
                self.cache_ttl
                    .map(|ttl| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            )
        });
        Ok(JwtAuthLayer::from_shared(Arc::new(Shared {
            rules: Rules {
                header: HeaderRules {
                    algorithms,
                    max_len: self.max_len,
                    typ: self.typ,
                },
                issuers: self.issuers,
                audiences: self.audiences,
                leeway,
                required: self.required,
            },
            keys,
            sources: self.sources,
            optional: self.mode == AuthMode::Optional,
            scopes,
            cache,
            challenges,
            rejections: self.rejections,
            clock: self.clock,
        })))
    }
}

impl JwtAuthLayer<StandardClaims> {
    /// A builder: give at least one [`key`](JwtAuthLayerBuilder::key) (or a
    /// [`key_source`](JwtAuthLayerBuilder::key_source)). Claims are
    /// [`StandardClaims`] unless you call
    /// [`claims`](JwtAuthLayerBuilder::claims).
    pub fn builder() -> JwtAuthLayerBuilder<StandardClaims> {
        JwtAuthLayerBuilder {
            keys: StaticKeys::new(),
            key_errors: Vec::new(),
            source: None,
            algorithms: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            required: Vec::new(),
            typ: None,
            max_len: DEFAULT_MAX_TOKEN_LENGTH,
            realm: DEFAULT_REALM.into(),
            mode: AuthMode::Required,
            sources: TokenSources {
                authorization: true,
                ..TokenSources::default()
            },
            scopes: Vec::new(),
            cache: true,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            cache_ttl: None,
            rejections: Rejections::default(),
            clock: Arc::new(system_now),
            _claims: PhantomData,
        }
    }
}
