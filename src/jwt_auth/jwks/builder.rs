//! The builder of [`JwksKeySource`] and its checks of the configuration.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::error::JwksError;
use super::fetch::{HttpClient, check_uri};
use super::jwk::KeySet;
use super::state::{Flight, Inner, NegativeCache, spawn_refresher};
use super::{
    DEFAULT_COOLDOWN, DEFAULT_MAX_CACHE_LIFETIME, DEFAULT_MAX_RESPONSE_SIZE,
    DEFAULT_MIN_CACHE_LIFETIME, DEFAULT_NEGATIVE_CACHE_CAPACITY, DEFAULT_TIMEOUT, JwksKeySource,
    MAX_INTERVAL,
};
use crate::config::ConfigError;
use crate::sync::lock;

/// Where the key set is.
#[derive(Debug, Clone)]
pub(super) enum Location {
    Jwks(String),
    Discovery { url: String, issuer: Option<String> },
}

/// Builds a [`JwksKeySource`]; from [`JwksKeySource::from_jwks_url`],
/// [`from_discovery_url`](JwksKeySource::from_discovery_url) or
/// [`from_issuer`](JwksKeySource::from_issuer).
#[derive(Debug)]
pub struct JwksKeySourceBuilder {
    pub(super) location: Location,
    timeout: Duration,
    max_size: usize,
    min_ttl: Duration,
    max_ttl: Duration,
    cooldown: Duration,
    negative_capacity: usize,
    allow_http: bool,
    #[cfg(feature = "otel")]
    metrics: Option<crate::otel::EdgeMetrics>,
}

impl JwksKeySourceBuilder {
    pub(super) fn new(location: Location) -> Self {
        Self {
            location,
            timeout: DEFAULT_TIMEOUT,
            max_size: DEFAULT_MAX_RESPONSE_SIZE,
            min_ttl: DEFAULT_MIN_CACHE_LIFETIME,
            max_ttl: DEFAULT_MAX_CACHE_LIFETIME,
            cooldown: DEFAULT_COOLDOWN,
            negative_capacity: DEFAULT_NEGATIVE_CACHE_CAPACITY,
            allow_http: false,
            #[cfg(feature = "otel")]
            metrics: None,
        }
    }

    /// The timeout of one fetch, connect to last body byte (default 5 s; at
    /// most 366 days).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest response body accepted, in bytes (default 256 KiB).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// Bounds of the cache lifetime taken from `Cache-Control: max-age`
    /// (default 5 minutes – 24 hours; `max` at most 366 days). Without
    /// `max-age`, `min` is used.
    pub fn cache_lifetime(mut self, min: Duration, max: Duration) -> Self {
        self.min_ttl = min;
        self.max_ttl = max;
        self
    }

    /// The least time between two refetches caused by unknown `kid`s
    /// (default 30 s; at most 366 days), and the retry interval after a
    /// failed fetch.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// How many unknown `kid`s are remembered (default 1024; 0 turns the
    /// negative cache off).
    pub fn negative_cache_capacity(mut self, capacity: usize) -> Self {
        self.negative_capacity = capacity;
        self
    }

    /// Accept `http://` URLs for any host (default: only for loopback
    /// hosts). Plain HTTP lets anyone on the path swap the keys.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Count fetches in the `tower_edge.jwks.fetches` counter of `metrics`.
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub fn metrics(mut self, metrics: crate::otel::EdgeMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Checks the configuration and fetches the key set once; fails when
    /// that first fetch fails (fail fast at start-up).
    ///
    /// # Errors
    ///
    /// A [`JwksError::Config`] naming the field, or the first fetch's
    /// error.
    pub async fn build(self) -> Result<JwksKeySource, JwksError> {
        let (inner, shutdown) = self.prepare()?;
        let mut done = inner.start_fetch(false).expect("no fetch runs yet");
        spawn_refresher(&inner, shutdown);
        let _ = done.changed().await;
        if inner.keys().len() == 0 {
            return Err(inner
                .last_error()
                .unwrap_or_else(|| JwksError::Connect("the first fetch did not finish".into())));
        }
        Ok(JwksKeySource::from_inner(inner))
    }

    /// Checks the configuration and returns at once; the first fetch runs
    /// in the background and tokens are rejected (401) until it succeeds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field, or `runtime` when called
    /// outside a Tokio runtime.
    pub fn build_lazy(self) -> Result<JwksKeySource, ConfigError> {
        let (inner, shutdown) = self.prepare()?;
        // The background task fetches at once.
        *lock(&inner.refresh_at) = Instant::now();
        spawn_refresher(&inner, shutdown);
        Ok(JwksKeySource::from_inner(inner))
    }

    fn prepare(self) -> Result<(Arc<Inner>, oneshot::Receiver<()>), ConfigError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new(
                "runtime",
                "a JWKS key source must be built inside a Tokio runtime",
            ));
        }
        let url = match &self.location {
            Location::Jwks(url) => url,
            Location::Discovery { url, .. } => url,
        };
        let field = match self.location {
            Location::Jwks(_) => "jwks_url",
            Location::Discovery { .. } => "discovery_url",
        };
        let first = check_uri(field, url, self.allow_http)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be above zero"));
        }
        if self.max_size == 0 {
            return Err(ConfigError::new("max_response_size", "must be above zero"));
        }
        if self.min_ttl.is_zero() || self.min_ttl > self.max_ttl {
            return Err(ConfigError::new(
                "cache_lifetime",
                "the lower bound must be above zero and at most the upper bound",
            ));
        }
        // Added to `Instant`s on the request path: a bound keeps that from
        // overflowing (which panics), whatever the configuration.
        if self.max_ttl > MAX_INTERVAL {
            return Err(ConfigError::new(
                "cache_lifetime",
                "the upper bound must be at most 366 days",
            ));
        }
        if self.timeout > MAX_INTERVAL {
            return Err(ConfigError::new("timeout", "must be at most 366 days"));
        }
        if self.cooldown.is_zero() || self.cooldown > MAX_INTERVAL {
            return Err(ConfigError::new(
                "cooldown",
                "must be above zero and at most 366 days",
            ));
        }
        let client = HttpClient::new(self.timeout, self.max_size)
            .map_err(|e| ConfigError::new("tls", e.to_string()))?;
        let (jwks_uri, discovery) = match self.location {
            Location::Jwks(_) => (Some(first), None),
            Location::Discovery { issuer, .. } => (None, Some((first, issuer))),
        };
        let (done, _) = watch::channel(0);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let inner = Arc::new(Inner {
            discovery,
            jwks_uri: RwLock::new(jwks_uri),
            client,
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            cooldown: self.cooldown,
            allow_http: self.allow_http,
            keys: RwLock::new(Arc::new(KeySet::default())),
            generation: AtomicU64::new(0),
            set_fingerprint: AtomicU64::new(0),
            flight: Mutex::new(Flight::default()),
            done,
            refresh_at: Mutex::new(Instant::now() + self.max_ttl),
            negative: NegativeCache::new(self.negative_capacity),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
            _shutdown: shutdown_tx,
            #[cfg(feature = "otel")]
            metrics: self.metrics,
        });
        Ok((inner, shutdown_rx))
    }
}
