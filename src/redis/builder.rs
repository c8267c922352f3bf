//! Configuration of the [`RedisBackend`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::cluster::ClusterClient;

use super::backend::{FailureHook, RedisBackend, Target};
use super::breaker::Breaker;
use super::{
    CONNECT_TIMEOUT, DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_TRIP_AFTER, FailureKind,
};
use crate::ConfigError;

impl RedisBackend {
    /// A backend on the Redis at `url` (`redis://[user:password@]host:port[/db]`)
    /// with the defaults; connects on first use.
    ///
    /// # Errors
    ///
    /// When `url` does not parse (field `url`).
    pub fn new(url: impl Into<String>) -> Result<Self, ConfigError> {
        Self::builder(url).build()
    }

    /// A builder for a backend on the Redis at `url`.
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder::with_nodes(vec![url.into()], false)
    }

    /// A builder for a backend on a Redis Cluster reached through `nodes`
    /// (some of its nodes' URLs; the rest is discovered).
    pub fn cluster_builder<I, S>(nodes: I) -> RedisBackendBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisBackendBuilder::with_nodes(nodes.into_iter().map(Into::into).collect(), true)
    }
}

/// Builds a [`RedisBackend`]; from [`RedisBackend::builder`] or
/// [`RedisBackend::cluster_builder`].
pub struct RedisBackendBuilder {
    nodes: Vec<String>,
    cluster: bool,
    timeout: Duration,
    retry_interval: Duration,
    trip_after: Duration,
    on_failure: Option<FailureHook>,
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("nodes", &self.nodes.len())
            .field("cluster", &self.cluster)
            .field("timeout", &self.timeout)
            .field("retry_interval", &self.retry_interval)
            .field("trip_after", &self.trip_after)
            .field("on_failure", &self.on_failure.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisBackendBuilder {
    pub(crate) fn with_nodes(nodes: Vec<String>, cluster: bool) -> Self {
        Self {
            nodes,
            cluster,
            timeout: DEFAULT_TIMEOUT,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            trip_after: DEFAULT_TRIP_AFTER,
            on_failure: None,
        }
    }

    /// The most a call waits for Redis's reply (default
    /// [`DEFAULT_TIMEOUT`], 20 ms; 1 ms to 60 s). The time starts when the
    /// call hands its command to the connection, and a reply that arrived
    /// while this process waited for a CPU still counts (the call gets one
    /// more turn of the scheduler before it times out). A timed-out call
    /// counts as a failure; it does not trip the backend on its own (see
    /// [`trip_after`](Self::trip_after)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long calls skip Redis once the backend has tripped, before trying
    /// it again (default [`DEFAULT_RETRY_INTERVAL`]; at most 1 h; zero never
    /// trips: every call tries Redis).
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// How long calls must keep failing, with no successful reply in
    /// between, before the backend trips and skips Redis for the
    /// [`retry_interval`](Self::retry_interval) (default
    /// [`DEFAULT_TRIP_AFTER`], 100 ms; at most 60 s; zero trips on the first
    /// failure). A burst of timeouts from one scheduling stall, followed by
    /// replies, does not trip it; a Redis that is down or stalled does.
    pub fn trip_after(mut self, duration: Duration) -> Self {
        self.trip_after = duration;
        self
    }

    /// The metrics hook: called with the kind of every failed call (not
    /// for calls skipped while the backend is tripped). Replaces an earlier
    /// hook; keep it cheap, it runs on the request path.
    pub fn on_failure(mut self, hook: impl Fn(FailureKind) + Send + Sync + 'static) -> Self {
        self.on_failure = Some(Arc::new(hook));
        self
    }

    /// Reports each failed call to the OpenTelemetry counter
    /// `tower_edge.rate_limit.store.errors` with `error.type` `timeout`,
    /// `connection` or `response` (an [`on_failure`](Self::on_failure)
    /// hook).
    #[cfg(feature = "otel")]
    pub fn metrics(self, metrics: crate::otel::EdgeMetrics) -> Self {
        self.on_failure(move |kind| metrics.store_error(kind.as_str()))
    }

    /// Checks the configuration and builds the backend, without connecting.
    ///
    /// # Errors
    ///
    /// A URL that does not parse (`url`), no Cluster node (`cluster_nodes`),
    /// a `timeout` outside 1 ms..=60 s, a `trip_after` over 60 s, a
    /// `retry_interval` over 1 h.
    pub fn build(self) -> Result<RedisBackend, ConfigError> {
        if self.timeout < Duration::from_millis(1) || self.timeout > Duration::from_secs(60) {
            return Err(ConfigError::new("timeout", "must be between 1 ms and 60 s"));
        }
        if self.trip_after > Duration::from_secs(60) {
            return Err(ConfigError::new("trip_after", "must be at most 60 s"));
        }
        if self.retry_interval > Duration::from_secs(3600) {
            return Err(ConfigError::new("retry_interval", "must be at most 1 h"));
        }
        let target = if self.cluster {
            if self.nodes.is_empty() {
                return Err(ConfigError::new(
                    "cluster_nodes",
                    "give at least one node URL",
                ));
            }
            let client = ClusterClient::builder(self.nodes.iter().map(String::as_str))
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(self.timeout.max(Duration::from_millis(100)))
                .retries(1)
                .build()
                .map_err(|e| ConfigError::new("cluster_nodes", redact(&e)))?;
            Target::Cluster(Box::new(client))
        } else {
            let url = self.nodes.first().map_or("", String::as_str);
            let client =
                redis::Client::open(url).map_err(|e| ConfigError::new("url", redact(&e)))?;
            Target::Single(client)
        };
        Ok(RedisBackend::from_parts(
            target,
            self.timeout,
            Breaker::new(self.trip_after, self.retry_interval),
            self.on_failure,
        ))
    }
}

/// The error's kind and category only: a URL may carry a password.
fn redact(error: &redis::RedisError) -> String {
    format!("invalid Redis URL ({:?})", error.kind())
}
