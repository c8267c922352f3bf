//! The layer's configuration once built, shared by every clone.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};

use super::fingerprint::Fingerprinter;
use super::outcome::StoredOutcomes;
use super::route::Route;
use super::scope::ScopeExtractor;
use super::store::IdempotencyStore;
use super::{InFlight, OnStoreError};
use crate::rate_limit::client_ip::ClientIpConfig;
use crate::rejection::Rejections;

/// The layer's configuration, shared by every clone.
pub(crate) struct Config {
    pub(crate) store: Arc<dyn IdempotencyStore>,
    pub(crate) methods: Vec<Method>,
    pub(crate) routes: Vec<Route>,
    pub(crate) scope: Arc<dyn ScopeExtractor>,
    pub(crate) ip: ClientIpConfig,
    pub(crate) fingerprinter: Arc<dyn Fingerprinter>,
    pub(crate) max_key_length: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_response_bytes: usize,
    pub(crate) lease: Duration,
    pub(crate) retention: Duration,
    pub(crate) in_flight: InFlight,
    pub(crate) retry_after: HeaderValue,
    pub(crate) outcomes: StoredOutcomes,
    pub(crate) replayed_headers: Vec<HeaderName>,
    pub(crate) on_store_error: OnStoreError,
    pub(crate) rejections: Rejections,
    pub(crate) store_errors: AtomicU64,
    /// The store failed and has not answered since (log once per outage).
    pub(crate) store_down: AtomicBool,
    pub(crate) unscoped_logged: AtomicBool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("methods", &self.methods)
            .field("routes", &self.routes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("lease", &self.lease)
            .field("retention", &self.retention)
            .field("in_flight", &self.in_flight)
            .field("outcomes", &self.outcomes)
            .field("on_store_error", &self.on_store_error)
            .finish_non_exhaustive()
    }
}
