//! Configuration of the [`IdempotencyLayer`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::fingerprint::{Fingerprinter, RequestFingerprint};
use super::key::DEFAULT_MAX_KEY_LENGTH;
use super::memory::MemoryStore;
use super::outcome::{DEFAULT_REPLAYED_HEADERS, StoredOutcomes};
use super::route::Route;
use super::scope::{ScopeExtractor, SubjectOrClientIp};
use super::service::IdempotencyLayer;
use super::state::Config;
use super::store::IdempotencyStore;
use super::{InFlight, OnStoreError};
use crate::ConfigError;
use crate::rate_limit::client_ip::options::{ClientIpOptions, client_ip_setters};
use crate::rejection::Rejections;

/// Default cap on a request body buffered for its fingerprint: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default cap on a response body stored for replay: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Default lease of a claim: longer than any request should run.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Default retention of a stored outcome: 24 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Default `Retry-After` of a 409 while the first request runs.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Builds an [`IdempotencyLayer`]; see the [module docs](super).
pub struct IdempotencyLayerBuilder {
    store: Option<Arc<dyn IdempotencyStore>>,
    methods: Vec<Method>,
    routes: Vec<Route>,
    scope: Arc<dyn ScopeExtractor>,
    client_ip: ClientIpOptions,
    fingerprinter: Arc<dyn Fingerprinter>,
    max_key_length: usize,
    max_body_bytes: usize,
    max_response_bytes: usize,
    lease: Duration,
    retention: Duration,
    in_flight: InFlight,
    retry_after: Duration,
    outcomes: StoredOutcomes,
    replayed_headers: Vec<String>,
    on_store_error: OnStoreError,
    rejections: Rejections,
}

impl fmt::Debug for IdempotencyLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayerBuilder")
            .field("methods", &self.methods)
            .field("routes", &self.routes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl Default for IdempotencyLayerBuilder {
    fn default() -> Self {
        Self {
            store: None,
            methods: vec![Method::POST, Method::PATCH],
            routes: Vec::new(),
            scope: Arc::new(SubjectOrClientIp),
            client_ip: ClientIpOptions::default(),
            fingerprinter: Arc::new(RequestFingerprint::new()),
            max_key_length: DEFAULT_MAX_KEY_LENGTH,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            lease: DEFAULT_LEASE,
            retention: DEFAULT_RETENTION,
            in_flight: InFlight::Conflict,
            retry_after: DEFAULT_RETRY_AFTER,
            outcomes: StoredOutcomes::default(),
            replayed_headers: DEFAULT_REPLAYED_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            on_store_error: OnStoreError::default(),
            rejections: Rejections::default(),
        }
    }
}

impl IdempotencyLayerBuilder {
    client_ip_setters!(client_ip);

    /// Where keys live (default: a [`MemoryStore`] of this layer, with the
    /// default bounds). Give every replica the same Redis store to
    /// recognise a retry on whichever replica it lands.
    pub fn store(mut self, store: impl IdempotencyStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The methods the layer applies to (default `POST` and `PATCH`, the
    /// methods that are not idempotent, RFC 9110 §9.2.2).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = methods.into_iter().collect();
        self
    }

    /// Applies the layer to `route` only (call it once per route; the first
    /// route that matches decides). Without routes the layer applies to
    /// every path, with the key optional.
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Who a key belongs to (default [`SubjectOrClientIp`]). A request
    /// whose scope cannot be found runs without idempotency (logged once):
    /// never one shared scope, where a client could receive another's
    /// stored response.
    pub fn scope(mut self, scope: impl ScopeExtractor) -> Self {
        self.scope = Arc::new(scope);
        self
    }

    /// What makes two requests the same (default [`RequestFingerprint`]:
    /// method, path and query, body).
    pub fn fingerprint(mut self, fingerprinter: impl Fingerprinter) -> Self {
        self.fingerprinter = Arc::new(fingerprinter);
        self
    }

    /// The longest key accepted, in characters (default
    /// [`DEFAULT_MAX_KEY_LENGTH`]; 1 to 1024).
    pub fn max_key_length(mut self, max: usize) -> Self {
        self.max_key_length = max;
        self
    }

    /// The largest request body buffered for its fingerprint (default
    /// [`DEFAULT_MAX_BODY_BYTES`]); a larger one is answered 413.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// The largest response body stored for replay (default
    /// [`DEFAULT_MAX_RESPONSE_BYTES`]); a larger one is sent as it comes
    /// and releases the key (so a retry runs again).
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// How long a claim holds the key before another request may take it
    /// over (default [`DEFAULT_LEASE`]): longer than the slowest request,
    /// or a slow first request and its retry both run.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long an outcome is replayed (default [`DEFAULT_RETENTION`]).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// What a duplicate gets while the first request runs (default
    /// [`InFlight::Conflict`]).
    pub fn in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = in_flight;
        self
    }

    /// The `Retry-After` of a 409 (default [`DEFAULT_RETRY_AFTER`], whole
    /// seconds, rounded up).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Which outcomes are stored and replayed (default
    /// [`StoredOutcomes::default`]). A 5xx is never stored: refused at
    /// build.
    pub fn stored_outcomes(mut self, outcomes: StoredOutcomes) -> Self {
        self.outcomes = outcomes;
        self
    }

    /// The response headers a replay carries (default
    /// [`DEFAULT_REPLAYED_HEADERS`]). `Set-Cookie` is refused at build.
    pub fn replayed_headers<I, S>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.replayed_headers = headers.into_iter().map(Into::into).collect();
        self
    }

    /// What happens when the store fails (default [`OnStoreError::Allow`]).
    pub fn on_store_error(mut self, policy: OnStoreError) -> Self {
        self.on_store_error = policy;
        self
    }

    /// How rejections are rendered (default problem+json).
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.rejections = rejections;
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A bad `trusted_proxies` network, no `methods`, a `route` path not
    /// starting with `/`, `max_key_length` outside 1..=1024, a
    /// `max_body_bytes` or `max_response_bytes` of 0, a `lease` or
    /// `retention` of 0, a `lease` longer than the `retention`, a zero
    /// wait deadline (`in_flight`), a `retry_after` of 0, stored 5xx
    /// (`stored_outcomes`), a bad or `Set-Cookie` `replayed_headers` name.
    pub fn build(self) -> Result<IdempotencyLayer, ConfigError> {
        let ip = self.client_ip.config()?;
        if self.methods.is_empty() {
            return Err(ConfigError::new("methods", "name at least one method"));
        }
        if let Some(route) = self.routes.iter().find(|r| !r.path().starts_with('/')) {
            return Err(ConfigError::new(
                "route",
                format!("the path `{}` must start with `/`", route.path()),
            ));
        }
        if !(1..=1024).contains(&self.max_key_length) {
            return Err(ConfigError::new("max_key_length", "must be 1 to 1024"));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::new("max_body_bytes", "must be at least 1"));
        }
        if self.max_response_bytes == 0 {
            return Err(ConfigError::new("max_response_bytes", "must be at least 1"));
        }
        if self.lease.is_zero() {
            return Err(ConfigError::new("lease", "must be longer than zero"));
        }
        if self.retention.is_zero() {
            return Err(ConfigError::new("retention", "must be longer than zero"));
        }
        if self.lease > self.retention {
            return Err(ConfigError::new(
                "lease",
                "must not be longer than the retention",
            ));
        }
        if let InFlight::Wait(deadline) = self.in_flight
            && deadline.is_zero()
        {
            return Err(ConfigError::new(
                "in_flight",
                "the wait deadline must be longer than zero",
            ));
        }
        if self.retry_after.is_zero() {
            return Err(ConfigError::new("retry_after", "must be at least 1 ms"));
        }
        if let Some(status) = self.outcomes.stores_server_error() {
            return Err(ConfigError::new(
                "stored_outcomes",
                format!(
                    "{status} is a server error: it must release the key so a retry runs again"
                ),
            ));
        }
        let mut replayed_headers = Vec::with_capacity(self.replayed_headers.len());
        for name in &self.replayed_headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::new("replayed_headers", format!("`{name}` is not a header name"))
            })?;
            if name == http::header::SET_COOKIE {
                return Err(ConfigError::new(
                    "replayed_headers",
                    "Set-Cookie is never replayed (it would hand one client's session to a retry)",
                ));
            }
            replayed_headers.push(name);
        }
        let secs = self.retry_after.as_millis().div_ceil(1000).max(1);
        let retry_after = HeaderValue::from_str(&secs.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("1"));
        Ok(IdempotencyLayer::from_config(Config {
            store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
            methods: self.methods,
            routes: self.routes,
            scope: self.scope,
            ip,
            fingerprinter: self.fingerprinter,
            max_key_length: self.max_key_length,
            max_body_bytes: self.max_body_bytes,
            max_response_bytes: self.max_response_bytes,
            lease: self.lease,
            retention: self.retention,
            in_flight: self.in_flight,
            retry_after,
            outcomes: self.outcomes,
            replayed_headers,
            on_store_error: self.on_store_error,
            rejections: self.rejections,
            store_errors: AtomicU64::new(0),
            store_down: AtomicBool::new(false),
            unscoped_logged: AtomicBool::new(false),
        }))
    }
}

impl IdempotencyLayer {
    /// A builder, to configure the layer.
    pub fn builder() -> IdempotencyLayerBuilder {
        IdempotencyLayerBuilder::default()
    }
}
