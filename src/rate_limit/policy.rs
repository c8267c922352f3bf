//! A policy: one quota on one kind of key, in one store.

use std::fmt;
use std::sync::Arc;

use super::key::{ClientIp, KeyExtractor, RequestInfo};
use super::quota::Quota;
use super::store::RateLimitStore;
#[cfg(doc)]
use super::{MemoryStore, store};

pub(super) type CostFn = dyn Fn(&RequestInfo<'_>) -> u32 + Send + Sync;

/// One quota applied to one kind of key: per-IP bursts, per-user hourly...
///
/// ```
/// use tower_edge::rate_limit::{HeaderKey, Policy, Quota};
///
/// let per_api_key = Policy::new("api-key", Quota::per_minute(600).with_burst(60))
///     .key(HeaderKey::new(http::HeaderName::from_static("x-api-key")))
///     .cost(|req| if req.method() == http::Method::POST { 5 } else { 1 });
/// # let _ = per_api_key;
/// ```
pub struct Policy {
    pub(super) name: String,
    pub(super) quota: Quota,
    pub(super) key: Arc<dyn KeyExtractor>,
    pub(super) cost: Option<Arc<CostFn>>,
    pub(super) store: Option<Arc<dyn RateLimitStore>>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// A policy named `name` (shown in the headers: printable ASCII without
    /// `"` or `\`, unique per layer) allowing `quota` per client IP, in a
    /// memory store.
    pub fn new(name: impl Into<String>, quota: Quota) -> Self {
        Self {
            name: name.into(),
            quota,
            key: Arc::new(ClientIp),
            cost: None,
            store: None,
        }
    }

    /// How the key is found (default [`ClientIp`]).
    pub fn key(mut self, extractor: impl KeyExtractor) -> Self {
        self.key = Arc::new(extractor);
        self
    }

    /// How many cells a request consumes (default 1).
    pub fn cost(mut self, cost: impl Fn(&RequestInfo<'_>) -> u32 + Send + Sync + 'static) -> Self {
        self.cost = Some(Arc::new(cost));
        self
    }

    /// Where the GCRA state lives (default: a [`MemoryStore`] of this
    /// policy, with the layer's `max_keys`). A memory store must not be
    /// shared between policies (keys would mix); a remote store separates
    /// them by [`store::Check::policy`].
    pub fn store(mut self, store: impl RateLimitStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }
}
