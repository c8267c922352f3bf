//! The layer's builder: policies, routes, client IP, headers, failure
//! policy, checked at `build`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use super::*;

/// Builds a [`LimitRateLayer`]; from [`LimitRateLayer::builder`].
pub struct LimitRateLayerBuilder {
    pub(super) policies: Vec<Policy>,
    pub(super) routes: Vec<(String, Vec<Policy>)>,
    pub(super) exempt: Option<Arc<Predicate>>,
    pub(super) client_ip: client_ip::options::ClientIpOptions,
    pub(super) headers: HeaderStyle,
    pub(super) unknown_key: UnknownKey,
    pub(super) on_store_error: OnStoreError,
    pub(super) rejections: Rejections,
    pub(super) max_keys: usize,
    pub(super) clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for LimitRateLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitRateLayerBuilder")
            .field("policies", &self.policies)
            .field("routes", &self.routes)
            .field("client_ip", &self.client_ip)
            .field("headers", &self.headers)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

impl LimitRateLayerBuilder {
    client_ip::options::client_ip_setters!(client_ip);

    /// Adds a policy checked on every request (in the order added) unless
    /// its path has [`route`](Self::route) policies.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policies.push(policy);
        self
    }

    /// Adds a policy for requests whose path is `prefix` or below it
    /// (`/login` matches `/login` and `/login/x`, not `/loginx`). Paths with
    /// route policies use them *instead of* the default ones; the longest
    /// matching prefix wins. Call it several times for several policies.
    pub fn route(mut self, prefix: impl Into<String>, policy: Policy) -> Self {
        let prefix = prefix.into();
        match self.routes.iter_mut().find(|(p, _)| *p == prefix) {
            Some((_, policies)) => policies.push(policy),
            None => self.routes.push((prefix, vec![policy])),
        }
        self
    }

    /// Requests for which `predicate` is true skip rate limiting (and get
    /// no rate-limit headers).
    pub fn exempt(
        mut self,
        predicate: impl Fn(&RequestInfo<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.exempt = Some(Arc::new(predicate));
        self
    }

    /// Which rate-limit headers responses carry (default
    /// [`HeaderStyle::Ietf`]).
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.headers = style;
        self
    }

    /// What happens to a request without a key (default
    /// [`UnknownKey::SharedBucket`]).
    pub fn unknown_key(mut self, mode: UnknownKey) -> Self {
        self.unknown_key = mode;
        self
    }

    /// What happens when a store fails (default [`OnStoreError::Allow`]).
    pub fn on_store_error(mut self, mode: OnStoreError) -> Self {
        self.on_store_error = mode;
        self
    }

    /// How rejections are rendered (default problem+json).
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.rejections = rejections;
        self
    }

    /// The key cap of each default memory store (default
    /// [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The clock of the default memory stores and of the layer's log
    /// throttling (tests: paused tokio time).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    fn build_set(
        &self,
        policies: Vec<Policy>,
        names: &mut Vec<String>,
    ) -> Result<PolicySet, ConfigError> {
        let mut built = Vec::with_capacity(policies.len());
        let mut header = String::new();
        for policy in policies {
            let name = &policy.name;
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
            {
                return Err(ConfigError::new(
                    "policy",
                    format!("name {name:?} must be non-empty printable ASCII without `\"` or `\\`"),
                ));
            }
            if names.contains(name) {
                return Err(ConfigError::new(
                    "policy",
                    format!("name `{name}` is used twice"),
                ));
            }
            names.push(name.clone());
            policy.quota.validate("quota")?;
            let sf_name = format!("\"{name}\"");
            if !header.is_empty() {
                header.push_str(", ");
            }
            header.push_str(&format!(
                "{sf_name};q={};w={}",
                policy.quota.count(),
                policy.quota.period().as_secs()
            ));
            let store = match policy.store {
                Some(store) => store,
                None => Arc::new(
                    MemoryStore::builder()
                        .max_keys(self.max_keys)
                        .clock(self.layer_clock())
                        .build(),
                ),
            };
            built.push(BuiltPolicy {
                name: Arc::from(policy.name.as_str()),
                ratelimit_prefix: format!("{sf_name};r=").into(),
                quota: policy.quota,
                key: policy.key,
                cost: policy.cost,
                store,
                legacy_limit: HeaderValue::from(policy.quota.count()),
            });
        }
        let policy_header = HeaderValue::try_from(header)
            .map_err(|_| ConfigError::new("policy", "name is not a valid header value"))?;
        Ok(PolicySet {
            policies: built,
            policy_header: Some(policy_header),
        })
    }

    fn layer_clock(&self) -> LayerClock {
        match &self.clock {
            Some(clock) => LayerClock::Custom(Arc::clone(clock)),
            None => LayerClock::Monotonic(MonotonicClock::default()),
        }
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// No policy; a policy name that is empty, repeated or not printable
    /// ASCII; a zero count, burst or period, a period that is not whole
    /// seconds or is longer than a year, or a rate above one request per
    /// nanosecond (`quota`); a bad CIDR (`trusted_proxies`); an IPv6 prefix
    /// above 128; a route prefix not starting with `/`; `max_keys` of 0.
    pub fn build(mut self) -> Result<LimitRateLayer, ConfigError> {
        if self.policies.is_empty() {
            return Err(ConfigError::new("policy", "add at least one policy"));
        }
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        let ip = self.client_ip.config()?;
        let mut names = Vec::new();
        let policies = std::mem::take(&mut self.policies);
        let default = self.build_set(policies, &mut names)?;
        let mut routes = Vec::new();
        for (prefix, policies) in std::mem::take(&mut self.routes) {
            if !prefix.starts_with('/') {
                return Err(ConfigError::new(
                    "route",
                    format!("prefix `{prefix}` must start with `/`"),
                ));
            }
            routes.push((prefix, self.build_set(policies, &mut names)?));
        }
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        let clock = self.layer_clock();
        Ok(LimitRateLayer {
            config: Arc::new(Config {
                default,
                routes,
                exempt: self.exempt,
                ip,
                headers: self.headers,
                unknown_key: self.unknown_key,
                on_store_error: self.on_store_error,
                rejections: self.rejections,
                unknown_warned: AtomicBool::new(false),
                store_errors: AtomicU64::new(0),
                store_error_warned_at: AtomicU64::new(0),
                store_errors_at_warning: AtomicU64::new(0),
                clock,
            }),
        })
    }
}
