//! Configuration of the [`RedisStore`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::deny::DenyCache;
use super::{
    DEFAULT_DENY_CACHE_CAPACITY, DEFAULT_KEY_PREFIX, RedisFallback, RedisStore, SCRIPT, Store,
};
use crate::ConfigError;
use crate::rate_limit::memory::{DEFAULT_MAX_KEYS, MemoryStore};
use crate::redis::{RedisBackend, RedisBackendBuilder, Script};

/// Where the store's backend comes from.
enum Source {
    /// Built with the store, from these settings.
    Own(RedisBackendBuilder),
    /// Shared with other stores; `conflict` names a backend setting given
    /// to this builder anyway (an error at `build`).
    Shared {
        backend: RedisBackend,
        conflict: Option<&'static str>,
    },
}

/// Builds a [`RedisStore`]; from [`RedisStore::builder`],
/// [`RedisStore::cluster_builder`] (a backend of its own) or
/// [`RedisStore::with_backend`] (a shared [`RedisBackend`]).
pub struct RedisStoreBuilder {
    source: Source,
    prefix: String,
    fallback: RedisFallback,
    fallback_max_keys: usize,
    deny_cache_capacity: usize,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("RedisStoreBuilder");
        match &self.source {
            Source::Own(builder) => s.field("backend", builder),
            Source::Shared { backend, .. } => s.field("backend", backend),
        };
        s.field("key_prefix", &self.prefix)
            .field("fallback", &self.fallback)
            .field("deny_cache_capacity", &self.deny_cache_capacity)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    pub(super) fn own(backend: RedisBackendBuilder) -> Self {
        Self::with_source(Source::Own(backend))
    }

    pub(super) fn shared(backend: RedisBackend) -> Self {
        Self::with_source(Source::Shared {
            backend,
            conflict: None,
        })
    }

    fn with_source(source: Source) -> Self {
        Self {
            source,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            fallback: RedisFallback::default(),
            fallback_max_keys: DEFAULT_MAX_KEYS,
            deny_cache_capacity: DEFAULT_DENY_CACHE_CAPACITY,
        }
    }

    /// Applies a backend setting to the store's own backend; on a shared
    /// backend, remembers `field` for the error of `build`.
    fn backend(
        mut self,
        field: &'static str,
        set: impl FnOnce(RedisBackendBuilder) -> RedisBackendBuilder,
    ) -> Self {
        self.source = match self.source {
            Source::Own(builder) => Source::Own(set(builder)),
            Source::Shared { backend, conflict } => Source::Shared {
                backend,
                conflict: conflict.or(Some(field)),
            },
        };
        self
    }

    /// The prefix of every key (default [`DEFAULT_KEY_PREFIX`]): give each
    /// application sharing a Redis its own. 1 to 64 printable ASCII
    /// characters, without spaces, `{` or `}`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The backend's per-call timeout: see
    /// [`RedisBackendBuilder::timeout`]. Only for a store with a backend of
    /// its own (set it on a shared backend's builder).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.backend("timeout", |b| b.timeout(timeout))
    }

    /// The backend's retry interval: see
    /// [`RedisBackendBuilder::retry_interval`]. Only for a store with a
    /// backend of its own.
    pub fn retry_interval(self, interval: Duration) -> Self {
        self.backend("retry_interval", |b| b.retry_interval(interval))
    }

    /// How long calls must keep failing before the backend trips: see
    /// [`RedisBackendBuilder::trip_after`]. Only for a store with a backend
    /// of its own.
    pub fn trip_after(self, duration: Duration) -> Self {
        self.backend("trip_after", |b| b.trip_after(duration))
    }

    /// What checks get while Redis fails (default [`RedisFallback::Memory`]).
    pub fn fallback(mut self, fallback: RedisFallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// The key cap of the local [`MemoryStore`] of
    /// [`RedisFallback::Memory`] (default [`DEFAULT_MAX_KEYS`]).
    pub fn fallback_max_keys(mut self, max_keys: usize) -> Self {
        self.fallback_max_keys = max_keys;
        self
    }

    /// How many limited keys are remembered locally so their requests are
    /// denied without a round trip until their `Retry-After` passes
    /// (default [`DEFAULT_DENY_CACHE_CAPACITY`]; 0 turns the cache off).
    /// When full, expired denials are swept at most once a second, and a
    /// new denial otherwise takes the place of an arbitrary one.
    pub fn deny_cache_capacity(mut self, capacity: usize) -> Self {
        self.deny_cache_capacity = capacity;
        self
    }

    /// Reports each failed Redis call to
    /// `tower_edge.rate_limit.store.errors` with `error.type` `timeout`,
    /// `connection` or `response`: see [`RedisBackendBuilder::metrics`].
    /// Only for a store with a backend of its own.
    #[cfg(feature = "otel")]
    pub fn metrics(self, metrics: crate::otel::EdgeMetrics) -> Self {
        self.backend("metrics", |b| b.metrics(metrics))
    }

    /// Checks the configuration and builds the store, without connecting.
    ///
    /// # Errors
    ///
    /// A URL that does not parse (`url`), no Cluster node (`cluster_nodes`),
    /// a bad `key_prefix`, a `timeout` outside 1 ms..=60 s, a
    /// `fallback_max_keys` of 0, a backend setting (`timeout`,
    /// `retry_interval`, `trip_after`, `metrics`) on a store built
    /// [`with_backend`](RedisStore::with_backend).
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        crate::redis::key::validate_prefix(&self.prefix)?;
        if self.fallback_max_keys == 0 {
            return Err(ConfigError::new("fallback_max_keys", "must be at least 1"));
        }
        let backend = match self.source {
            Source::Own(builder) => builder.build()?,
            Source::Shared {
                conflict: Some(field),
                ..
            } => {
                return Err(ConfigError::new(
                    field,
                    "set it on the shared RedisBackend's builder",
                ));
            }
            Source::Shared { backend, .. } => backend,
        };
        Ok(RedisStore {
            inner: Arc::new(Store {
                backend,
                script: Script::new(SCRIPT),
                prefix: self.prefix.into_boxed_str(),
                fallback: (self.fallback == RedisFallback::Memory).then(|| {
                    MemoryStore::builder()
                        .max_keys(self.fallback_max_keys)
                        .build()
                }),
                deny: (self.deny_cache_capacity > 0)
                    .then(|| DenyCache::new(self.deny_cache_capacity)),
            }),
        })
    }
}
