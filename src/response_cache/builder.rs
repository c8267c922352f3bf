//! Configuration of the [`ResponseCacheLayer`].

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::engine::Engine;
use super::status::is_token;
use super::{
    Config, DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_MEMORY_BYTES, DEFAULT_NAME,
    QueryKey, ResponseCacheLayer, ResponseCacheRule, TARGETED_FIELD,
};
use crate::config::ConfigError;

/// The most rules a layer takes.
const MAX_RULES: usize = 64;

/// Builds a [`ResponseCacheLayer`]; from [`ResponseCacheLayer::builder`].
#[derive(Debug, Clone)]
pub struct ResponseCacheLayerBuilder {
    rules: Vec<ResponseCacheRule>,
    query: QueryKey,
    targeted: HeaderName,
    max_entry_bytes: usize,
    max_memory_bytes: usize,
    lock_timeout: Duration,
    origin_timeout: Option<Duration>,
    name: String,
    make_etag: bool,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis::RedisBackend>,
    #[cfg(feature = "redis")]
    redis_key_prefix: String,
}

impl ResponseCacheLayerBuilder {
    pub(super) fn new() -> Self {
        Self {
            rules: Vec::new(),
            query: QueryKey::default(),
            targeted: TARGETED_FIELD,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            origin_timeout: None,
            name: DEFAULT_NAME.to_owned(),
            make_etag: true,
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "redis")]
            redis_key_prefix: "tower-edge:cache".to_owned(),
        }
    }

    /// Adds a rule; rules are tried in the order added, the first whose
    /// path matches wins (at most 64).
    pub fn rule(mut self, rule: ResponseCacheRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// How the query string takes part in the key (default
    /// [`QueryKey::Sorted`]).
    pub fn query(mut self, query: QueryKey) -> Self {
        self.query = query;
        self
    }

    /// The targeted cache-control field this cache reads (RFC 9213;
    /// default [`TARGETED_FIELD`], `Edge-Cache-Control`).
    pub fn targeted_field(mut self, name: HeaderName) -> Self {
        self.targeted = name;
        self
    }

    /// The largest body stored (default 1 MiB): larger ones, and bodies of
    /// unknown length that grow past it, stream through unstored.
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.max_entry_bytes = bytes;
        self
    }

    /// The bytes the memory tier holds at most (default 64 MiB); the
    /// oldest entries are evicted first.
    pub fn max_memory_bytes(mut self, bytes: usize) -> Self {
        self.max_memory_bytes = bytes;
        self
    }

    /// How long a request waits for another request's fill of its key
    /// before it runs the handler itself (default 5 s). Across replicas a
    /// fill that takes longer keeps others waiting only while its replica
    /// is alive: the Redis lease lives 1 s unless renewed.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// When a stale entry may answer on error (`stale-if-error`), the
    /// handler gets this long before the stale entry is served instead
    /// (RFC 5861 §4; default: no limit).
    pub fn origin_timeout(mut self, timeout: Duration) -> Self {
        self.origin_timeout = Some(timeout);
        self
    }

    /// The cache's name in `Cache-Status` (an RFC 9651 Token; default
    /// `tower-edge`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Whether a stored 2xx without `ETag` (and without
    /// `Content-Encoding`) gets the xxh3 tag of its body, the one the
    /// cache-headers layer makes (default `true`).
    pub fn etag(mut self, enabled: bool) -> Self {
        self.make_etag = enabled;
        self
    }

    /// A Redis tier behind the memory tier, shared by every replica (see
    /// the module docs' "Redis tier"); clones of one
    /// [`RedisBackend`](crate::redis::RedisBackend) share its connection.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis(mut self, backend: crate::redis::RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// The prefix of the Redis keys (default `tower-edge:cache`): one per
    /// application sharing a Redis.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn redis_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.redis_key_prefix = prefix.into();
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// More than 64 rules or a bad rule; `max_entry_bytes` of 0 or above
    /// `max_memory_bytes`; a `lock_timeout` of 0 or over a minute; a zero
    /// `origin_timeout`; a `name` that is no Token; a targeted field that
    /// is `Cache-Control`.
    pub fn build(self) -> Result<ResponseCacheLayer, ConfigError> {
        if self.rules.len() > MAX_RULES {
            return Err(ConfigError::new("rules", "at most 64 rules"));
        }
        let rules = self
            .rules
            .into_iter()
            .map(ResponseCacheRule::compile)
            .collect::<Result<Vec<_>, _>>()?;
        if self.max_entry_bytes == 0 {
            return Err(ConfigError::new("max_entry_bytes", "must be at least 1"));
        }
        if self.max_memory_bytes < self.max_entry_bytes {
            return Err(ConfigError::new(
                "max_memory_bytes",
                "must be at least `max_entry_bytes`",
            ));
        }
        if self.lock_timeout.is_zero() || self.lock_timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "lock_timeout",
                "must be more than 0 and at most 60 s",
            ));
        }
        if self.origin_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new("origin_timeout", "must be more than 0"));
        }
        if !is_token(&self.name) {
            return Err(ConfigError::new(
                "name",
                "must be an RFC 9651 Token (a letter or `*`, then token characters)",
            ));
        }
        if self.targeted == http::header::CACHE_CONTROL {
            return Err(ConfigError::new(
                "targeted_field",
                "must be a field of its own (RFC 9213), not `Cache-Control`",
            ));
        }
        #[allow(unused_mut)]
        let mut engine = Engine::new(self.max_memory_bytes);
        #[cfg(feature = "redis")]
        {
            crate::redis::key::validate_prefix(&self.redis_key_prefix)
                .map_err(|e| ConfigError::new("redis_key_prefix", e.message().to_owned()))?;
            engine.remote = self.redis.map(|backend| {
                Arc::new(super::remote::RemoteTier::new(
                    backend,
                    self.redis_key_prefix,
                    self.lock_timeout,
                ))
            });
        }
        Ok(ResponseCacheLayer {
            config: Arc::new(Config {
                engine: Arc::new(engine),
                rules,
                query: self.query,
                targeted: self.targeted,
                max_entry_bytes: self.max_entry_bytes,
                lock_timeout: self.lock_timeout,
                origin_timeout: self.origin_timeout,
                name: self.name.into_boxed_str(),
                make_etag: self.make_etag,
            }),
        })
    }
}
