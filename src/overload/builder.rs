//! The layer's builder: limits, partitions, keys, exemptions, queue,
//! checked at `build`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use http::HeaderValue;

use super::adaptive::{AdaptiveLimit, AdaptiveState};
use super::keyed::{KeyLimit, KeyLimiter};
use super::limiter::{Classifier, GlobalLimiter, OTHER, Partitions};
use super::queue::Queue;
use super::{DEFAULT_EXEMPT_PATHS, OverloadLayer, Predicate, Shared};
use crate::ConfigError;
use crate::rate_limit::client_ip::options::{ClientIpOptions, client_ip_setters};
use crate::rate_limit::store::{Clock, MonotonicClock};
use crate::rate_limit::{RequestInfo, UnknownKey};
use crate::rejection::Rejections;

/// A partition of the global limit with a guaranteed share.
///
/// A request belongs to the first partition whose predicate holds (a
/// partition without one takes every request that reaches it); requests
/// of no partition share what the partitions leave unreserved.
///
/// ```
/// use tower_edge::overload::Partition;
///
/// // "Authenticated 80 %, anonymous 20 %".
/// let authenticated = Partition::authenticated(80);
/// let anonymous = Partition::new("anonymous", 20);
/// // Your own rule: a header your gateway sets.
/// let internal = Partition::new("internal", 10).when(|req| req.headers().contains_key("x-internal"));
/// # let _ = (authenticated, anonymous, internal);
/// ```
pub struct Partition {
    name: String,
    percent: u8,
    when: Option<Arc<Classifier>>,
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("name", &self.name)
            .field("percent", &self.percent)
            .field("when", &self.when.is_some())
            .finish()
    }
}

impl Partition {
    /// A partition guaranteed `percent` % of the limit (rounded down),
    /// taking every request that reaches it (see [`when`](Self::when)).
    pub fn new(name: impl Into<String>, percent: u8) -> Self {
        Self {
            name: name.into(),
            percent,
            when: None,
        }
    }

    /// Requests with an authenticated [`Subject`](crate::Subject) (put
    /// there by the authentication layer, so stack this layer after it),
    /// named `authenticated`.
    pub fn authenticated(percent: u8) -> Self {
        Self::new("authenticated", percent).when(|req| req.subject().is_some())
    }

    /// Only requests for which `predicate` holds belong to this partition.
    pub fn when(
        mut self,
        predicate: impl Fn(&RequestInfo<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.when = Some(Arc::new(predicate));
        self
    }
}

enum GlobalSpec {
    Fixed(usize),
    Adaptive(AdaptiveLimit),
}

/// Builds an [`OverloadLayer`]; from [`OverloadLayer::builder`].
pub struct OverloadLayerBuilder {
    global: Option<GlobalSpec>,
    partitions: Vec<Partition>,
    per_key: Option<KeyLimit>,
    max_keys: usize,
    unknown_key: UnknownKey,
    exempt_paths: Vec<String>,
    exempt: Option<Arc<Predicate>>,
    client_ip: ClientIpOptions,
    rejections: Rejections,
    retry_after: Duration,
    queue: Option<(usize, Duration)>,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for OverloadLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverloadLayerBuilder")
            .field("partitions", &self.partitions)
            .field("per_key", &self.per_key)
            .field("exempt_paths", &self.exempt_paths)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// The default cap on keys tracked by a per-key limit (keys are tracked
/// only while they have requests in flight).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

impl OverloadLayerBuilder {
    client_ip_setters!(client_ip);

    pub(super) fn new() -> Self {
        Self {
            global: None,
            partitions: Vec::new(),
            per_key: None,
            max_keys: DEFAULT_MAX_KEYS,
            unknown_key: UnknownKey::default(),
            exempt_paths: DEFAULT_EXEMPT_PATHS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            exempt: None,
            client_ip: ClientIpOptions::default(),
            rejections: Rejections::default(),
            retry_after: Duration::from_secs(1),
            queue: None,
            clock: None,
        }
    }

    /// A fixed global limit: at most `limit` requests in flight.
    pub fn max_in_flight(mut self, limit: usize) -> Self {
        self.global = Some(GlobalSpec::Fixed(limit));
        self
    }

    /// An adaptive global limit (Gradient2, AIMD, or your own algorithm).
    pub fn adaptive(mut self, limit: AdaptiveLimit) -> Self {
        self.global = Some(GlobalSpec::Adaptive(limit));
        self
    }

    /// Adds a partition of the global limit with a guaranteed share (in
    /// the order added; the first whose predicate holds takes a request).
    pub fn partition(mut self, partition: Partition) -> Self {
        self.partitions.push(partition);
        self
    }

    /// A per-key in-flight limit (answered 429 when reached).
    pub fn per_key(mut self, limit: KeyLimit) -> Self {
        self.per_key = Some(limit);
        self
    }

    /// The cap on keys the per-key limit tracks at once (default
    /// [`DEFAULT_MAX_KEYS`]); a new key past it is shed with 503.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// What happens to a request whose key cannot be found (default: one
    /// shared bucket).
    pub fn unknown_key(mut self, mode: UnknownKey) -> Self {
        self.unknown_key = mode;
        self
    }

    /// Paths that skip every limit, matched exactly (default
    /// [`DEFAULT_EXEMPT_PATHS`]: health and readiness checks, so a load
    /// balancer never takes an overloaded replica for a dead one). Replaces
    /// the list; pass an empty list to exempt nothing.
    pub fn exempt_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.exempt_paths = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Requests for which `predicate` holds skip every limit (besides the
    /// exempt paths).
    pub fn exempt(
        mut self,
        predicate: impl Fn(&RequestInfo<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.exempt = Some(Arc::new(predicate));
        self
    }

    /// How rejections are rendered (default problem+json).
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.rejections = rejections;
        self
    }

    /// The `Retry-After` of a shed request, rounded up to whole seconds
    /// (default 1 s).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// A short LIFO queue (off by default): up to `capacity` requests over
    /// the global limit wait up to `max_wait` for a slot, newest first,
    /// and are shed (503) at the deadline.
    pub fn queue(mut self, capacity: usize, max_wait: Duration) -> Self {
        self.queue = Some((capacity, max_wait));
        self
    }

    /// The clock latencies are measured with (default: monotonic; tests:
    /// paused tokio time).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// No limit at all (`max_in_flight`); a global limit of 0
    /// (`max_in_flight`); adaptive bounds that are 0, crossed, or do not
    /// hold the initial limit (`adaptive`); partitions without a global
    /// limit, with a share of 0 or a total above 100 %, or a name empty,
    /// repeated or `other` (`partition`); a per-key limit of 0 or a bad
    /// name (`per_key`); `max_keys` of 0; a queue without a global limit,
    /// of capacity 0 or with no wait (`queue`); a `retry_after` under 1 s;
    /// an exempt path not starting with `/` (`exempt_paths`); a bad CIDR
    /// (`trusted_proxies`); an IPv6 prefix above 128.
    pub fn build(mut self) -> Result<OverloadLayer, ConfigError> {
        if self.global.is_none() && self.per_key.is_none() {
            return Err(ConfigError::new(
                "max_in_flight",
                "set a global limit (max_in_flight or adaptive) or a per-key limit (per_key)",
            ));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        if self.retry_after < Duration::from_secs(1) {
            return Err(ConfigError::new("retry_after", "must be at least 1 s"));
        }
        if let Some(path) = self.exempt_paths.iter().find(|p| !p.starts_with('/')) {
            return Err(ConfigError::new(
                "exempt_paths",
                format!("`{path}` must start with `/`"),
            ));
        }
        let ip = self.client_ip.config()?;
        let clock = self
            .clock
            .take()
            .unwrap_or_else(|| Arc::new(MonotonicClock::default()));
        let global = match self.global.take() {
            None => {
                if !self.partitions.is_empty() {
                    return Err(ConfigError::new(
                        "partition",
                        "partitions need a global limit",
                    ));
                }
                if self.queue.is_some() {
                    return Err(ConfigError::new("queue", "a queue needs a global limit"));
                }
                None
            }
            Some(spec) => Some(self.global_limiter(spec, clock)?),
        };
        let keyed = match self.per_key.take() {
            None => None,
            Some(limit) => Some(KeyLimiter::new(limit, self.max_keys, self.unknown_key)?),
        };
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        let simple = keyed.is_none()
            && self.exempt.is_none()
            && global.as_ref().is_some_and(|g| g.partitions.is_none());
        let exempt_bits = self
            .exempt_paths
            .iter()
            .fold(0, |mask, path| mask | super::service::path_bit(path));
        Ok(OverloadLayer {
            shared: Arc::new(Shared {
                global,
                keyed,
                exempt_paths: self.exempt_paths.into_iter().map(Into::into).collect(),
                exempt_bits,
                simple,
                exempt: self.exempt,
                ip,
                rejections: self.rejections,
                retry_after: HeaderValue::from(secs),
                shed_overloaded: AtomicU64::new(0),
                shed_queue_timeout: AtomicU64::new(0),
                shed_concurrency: AtomicU64::new(0),
            }),
        })
    }

    fn global_limiter(
        &mut self,
        spec: GlobalSpec,
        clock: Arc<dyn Clock>,
    ) -> Result<GlobalLimiter, ConfigError> {
        let (initial, adaptive) = match spec {
            GlobalSpec::Fixed(0) => {
                return Err(ConfigError::new("max_in_flight", "must be at least 1"));
            }
            GlobalSpec::Fixed(limit) => (limit, None),
            GlobalSpec::Adaptive(limit) => {
                if limit.min == 0 || limit.min > limit.max {
                    return Err(ConfigError::new(
                        "adaptive",
                        format!(
                            "bounds {}..={} must satisfy 1 <= min <= max",
                            limit.min, limit.max
                        ),
                    ));
                }
                if !(limit.min..=limit.max).contains(&limit.initial) {
                    return Err(ConfigError::new(
                        "adaptive",
                        format!(
                            "initial limit {} must be within {}..={}",
                            limit.initial, limit.min, limit.max
                        ),
                    ));
                }
                (limit.initial, Some(AdaptiveState::new(limit, clock)))
            }
        };
        let partitions = if self.partitions.is_empty() {
            None
        } else if self.partitions.len() > super::limiter::MAX_PARTITIONS {
            return Err(ConfigError::new(
                "partition",
                format!("at most {} partitions", super::limiter::MAX_PARTITIONS),
            ));
        } else {
            let mut total = 0u32;
            let mut configured: Vec<(Arc<str>, u8, Option<Arc<Classifier>>)> = Vec::new();
            for partition in std::mem::take(&mut self.partitions) {
                let name = partition.name;
                if name.is_empty() || name == OTHER || configured.iter().any(|(n, ..)| **n == *name)
                {
                    return Err(ConfigError::new(
                        "partition",
                        format!("name `{name}` must be non-empty, unique and not `{OTHER}`"),
                    ));
                }
                if partition.percent == 0 || partition.percent > 100 {
                    return Err(ConfigError::new(
                        "partition",
                        format!("`{name}`: the share must be from 1 to 100 %"),
                    ));
                }
                total += u32::from(partition.percent);
                configured.push((Arc::from(name), partition.percent, partition.when));
            }
            if total > 100 {
                return Err(ConfigError::new(
                    "partition",
                    format!("the shares add up to {total} %, more than 100 %"),
                ));
            }
            Some(Partitions::new(configured))
        };
        let queue = match self.queue {
            None => None,
            Some((0, _)) => return Err(ConfigError::new("queue", "capacity must be at least 1")),
            Some((_, wait)) if wait.is_zero() => {
                return Err(ConfigError::new("queue", "max_wait must be above 0"));
            }
            Some((capacity, wait)) => Some(Queue::new(capacity, wait)),
        };
        Ok(GlobalLimiter {
            limit: AtomicUsize::new(initial),
            in_flight: AtomicUsize::new(0),
            partitions,
            adaptive,
            queue,
        })
    }
}
