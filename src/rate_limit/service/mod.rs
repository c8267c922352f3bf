//! The service and how decisions become headers; its response future is
//! in [`future`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{CACHE_CONTROL, EXPIRES, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::key::{Key, RequestInfo};
use super::store::{Check, Decision, StoreError, StoreFuture};
use super::{Config, OnStoreError, PolicySet, UnknownKey};

mod future;

use crate::body::ResponseBody;
use crate::rejection::Problem;
pub use future::ResponseFuture;
use future::Waiting;

pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Middleware that limits the rate of requests per key (GCRA quotas,
/// `RateLimit` headers, 429 answers); see the [module docs](super). Made by
/// [`LimitRateLayer`](super::LimitRateLayer) or [`LimitRate::new`].
///
/// Every clone shares the layer's state (stores, counters) through one
/// `Arc`: one limiter for all connections. Named apart from
/// `tower::limit::RateLimit` (a fixed number of requests per interval for
/// the whole service), so both can be imported.
pub struct LimitRate<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
}

impl<S> LimitRate<S> {
    /// Wraps `inner` with the limits of `layer` (what
    /// [`Layer::layer`](tower_layer::Layer::layer) does); services made
    /// from one layer share its state.
    pub fn new(inner: S, layer: &super::LimitRateLayer) -> Self {
        tower_layer::Layer::layer(layer, inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the middleware.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for LimitRate<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for LimitRate<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitRate")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

/// Seconds rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// Bytes held on the stack by [`Rendered`] before it moves to the heap:
/// enough for the `RateLimit` value of a few policies with short names.
const INLINE: usize = 128;

/// A header value rendered on the stack (on the heap past [`INLINE`]
/// bytes), so the only allocation is the `HeaderValue`'s own copy.
///
/// Measured, not assumed (2026-12-03): a plain `String` built with
/// `push_str` and `itoa`, then `HeaderValue::from_bytes`, costs 6454
/// instructions per request on `rate_limit/tower_edge/hot_ip` against 5556
/// with this buffer (+16 %; `bare` 3010 both), and 18174 against 16384 on
/// `full_stack/tower_edge/anonymous` (+11 %; `bare` 3659 / 3643): the
/// `String` adds a heap allocation (and its growth) per request on top of
/// the `HeaderValue` copy.
/// `bash benches/icount.sh rate_limit rate_limit/bare/hot_ip
/// rate_limit/tower_edge/hot_ip` and `bash benches/icount.sh full_stack
/// full_stack/bare/anonymous full_stack/tower_edge/anonymous`.
pub(crate) struct Rendered {
    inline: [u8; INLINE],
    len: usize,
    spill: Vec<u8>,
}

impl Default for Rendered {
    fn default() -> Self {
        Self {
            inline: [0; INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }
}

impl Rendered {
    #[inline(always)]
    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end <= INLINE && self.spill.is_empty() {
            self.inline[self.len..end].copy_from_slice(bytes);
            self.len = end;
        } else {
            self.push_spilled(bytes);
        }
    }

    /// [`push`](Self::push) past [`INLINE`] bytes: out of line, so the
    /// common path inlines to a few stores.
    #[cold]
    #[inline(never)]
    fn push_spilled(&mut self, bytes: &[u8]) {
        if self.spill.is_empty() {
            self.spill.extend_from_slice(&self.inline[..self.len]);
        }
        self.spill.extend_from_slice(bytes);
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.len == 0 && self.spill.is_empty()
    }
}

/// Decisions gathered for one request, policy by policy.
#[derive(Default)]
pub(crate) struct Outcome {
    ratelimit: Rendered,
    /// (policy index, decision) of the decision that speaks for the request:
    /// the denial, else the one with the fewest remaining requests.
    tightest: Option<(usize, Decision)>,
    denied: bool,
    store_failed: bool,
}

impl Outcome {
    #[inline]
    fn record(&mut self, set: &PolicySet, index: usize, decision: Decision, render: bool) {
        if render {
            let out = &mut self.ratelimit;
            if !out.is_empty() {
                out.push(b", ");
            }
            // `"name";r=<remaining>;t=<seconds>`
            out.push(set.policies[index].ratelimit_prefix.as_bytes());
            out.push(itoa::Buffer::new().format(decision.remaining()).as_bytes());
            out.push(b";t=");
            out.push(
                itoa::Buffer::new()
                    .format(ceil_secs(decision.reset()))
                    .as_bytes(),
            );
        }
        let tighter = match &self.tightest {
            None => true,
            Some((_, best)) => {
                !decision.is_allowed()
                    || decision.remaining() < best.remaining()
                    || (decision.remaining() == best.remaining() && decision.reset() > best.reset())
            }
        };
        if tighter {
            self.tightest = Some((index, decision));
        }
        self.denied |= !decision.is_allowed();
    }

    /// The headers for the response, allowed or limited.
    #[inline(always)]
    fn headers(&self, config: &Config, set: &PolicySet) -> AddHeaders {
        let mut headers = AddHeaders::default();
        if config.headers.ietf() {
            headers.policy = set.policy_header.clone();
            if !self.ratelimit.is_empty() {
                headers.ratelimit = HeaderValue::from_bytes(self.ratelimit.as_bytes()).ok();
            }
        }
        if config.headers.legacy()
            && let Some((index, decision)) = self.tightest
        {
            headers.legacy = Some(Box::new([
                set.policies[index].legacy_limit.clone(),
                HeaderValue::from(decision.remaining()),
                HeaderValue::from(ceil_secs(decision.reset())),
            ]));
        }
        headers
    }
}

/// Rate-limit headers to put on a response: no `HeaderMap` of their own,
/// so no allocation beyond the `RateLimit` value (`RateLimit-Policy` is
/// rendered once per policy set and shared).
#[derive(Default)]
pub(crate) struct AddHeaders {
    policy: Option<HeaderValue>,
    ratelimit: Option<HeaderValue>,
    /// Boxed: the future carries these headers, and a small future is
    /// cheaper to move (the legacy style is not the default).
    legacy: Option<Box<[HeaderValue; 3]>>,
}

impl AddHeaders {
    /// On a response: structured lists of nested limiters add up; the
    /// legacy single values of an inner limiter win.
    #[inline]
    fn apply(self, target: &mut HeaderMap) {
        if let Some(policy) = self.policy {
            target.append(RATELIMIT_POLICY, policy);
        }
        let ietf = self.ratelimit.is_some();
        if let Some(ratelimit) = self.ratelimit {
            target.append(RATELIMIT, ratelimit);
        }
        let legacy = self.legacy.is_some();
        if let Some(legacy) = self.legacy
            && !target.contains_key(X_LIMIT)
        {
            let [limit, remaining, reset] = *legacy;
            target.insert(X_LIMIT, limit);
            target.insert(X_REMAINING, remaining);
            target.insert(X_RESET, reset);
        }
        if (ietf || legacy) && (target.contains_key(CACHE_CONTROL) || target.contains_key(EXPIRES))
        {
            keep_from_shared_caches(target, ietf, legacy);
        }
    }

    fn into_problem(self, mut problem: Problem) -> Problem {
        if let Some(policy) = self.policy {
            problem = problem.with_header(RATELIMIT_POLICY, policy);
        }
        if let Some(ratelimit) = self.ratelimit {
            problem = problem.with_header(RATELIMIT, ratelimit);
        }
        if let Some(legacy) = self.legacy {
            let [limit, remaining, reset] = *legacy;
            problem = problem
                .with_header(X_LIMIT, limit)
                .with_header(X_REMAINING, remaining)
                .with_header(X_RESET, reset);
        }
        problem
    }
}

/// On a response a shared cache may store, marks the per-client fields
/// (`RateLimit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`; not the
/// policy, which is everyone's) with a qualified `private` (RFC 9111
/// §5.2.2.7): shared caches must not store them, so they never serve one
/// client's quota to another, and may still store the rest. A cache that
/// does not implement the qualified form treats the whole response as
/// private, which leaks nothing either. Nested limiters add the line once.
fn keep_from_shared_caches(target: &mut HeaderMap, ietf: bool, legacy: bool) {
    const IETF: HeaderValue = HeaderValue::from_static(r#"private="RateLimit""#);
    const LEGACY: HeaderValue =
        HeaderValue::from_static(r#"private="X-RateLimit-Remaining, X-RateLimit-Reset""#);
    const BOTH: HeaderValue = HeaderValue::from_static(
        r#"private="RateLimit, X-RateLimit-Remaining, X-RateLimit-Reset""#,
    );
    let mark = match (ietf, legacy) {
        (true, true) => BOTH,
        (true, false) => IETF,
        _ => LEGACY,
    };
    if crate::cache_control::shared_cache_may_store(target)
        && !target
            .get_all(CACHE_CONTROL)
            .iter()
            .any(|line| *line == mark)
    {
        target.append(CACHE_CONTROL, mark);
    }
}

/// What the key of policy `index` is, or `None` to skip the policy.
#[inline]
fn key_for(
    config: &Config,
    set: &PolicySet,
    index: usize,
    info: &RequestInfo<'_>,
) -> Option<(Key, u32)> {
    let policy = &set.policies[index];
    let key = match policy.key.extract(info) {
        Some(key) => key,
        None => {
            if !config.unknown_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    policy = &*policy.name,
                    mode = ?config.unknown_key,
                    "rate limit: no key found for a request (is the peer address in the \
                     request extensions?); further occurrences are logged at debug level"
                );
            } else {
                tracing::debug!(policy = &*policy.name, "rate limit: no key for request");
            }
            match config.unknown_key {
                UnknownKey::SharedBucket => Key::unknown(),
                UnknownKey::Skip => return None,
            }
        }
    };
    let cost = policy.cost.as_ref().map_or(1, |cost| cost(info));
    Some((key, cost))
}

enum Progress {
    Finished,
    Pending(usize, StoreFuture),
}

/// Checks policies from `from` on, synchronously while stores answer at
/// once; stops at the first denial.
fn drive(
    config: &Config,
    set: &PolicySet,
    from: usize,
    mut key: impl FnMut(usize) -> Option<(Key, u32)>,
    outcome: &mut Outcome,
) -> Progress {
    for index in from..set.policies.len() {
        let Some((k, cost)) = key(index) else {
            continue;
        };
        let policy = &set.policies[index];
        let future = policy
            .store
            .check(Check::new(&policy.name, &k, &policy.quota, cost));
        match future.into_ready() {
            Ok(result) => {
                if apply(config, set, index, result, outcome) {
                    return Progress::Finished;
                }
            }
            Err(pending) => return Progress::Pending(index, pending),
        }
    }
    Progress::Finished
}

/// Records one store answer; true when checking must stop.
#[inline(always)]
fn apply(
    config: &Config,
    set: &PolicySet,
    index: usize,
    result: Result<Decision, StoreError>,
    outcome: &mut Outcome,
) -> bool {
    match result {
        Ok(decision) => {
            outcome.record(set, index, decision, config.headers.ietf());
            !decision.is_allowed()
        }
        Err(error) => {
            config.store_failed(&set.policies[index].name, &error);
            match config.on_store_error {
                OnStoreError::Allow => false,
                OnStoreError::Reject => {
                    outcome.store_failed = true;
                    true
                }
            }
        }
    }
}

fn reject<B, R>(
    config: &Config,
    set: &PolicySet,
    outcome: Outcome,
    request: &Request<R>,
) -> Response<ResponseBody<B>> {
    if outcome.store_failed {
        let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("the rate limiter is unavailable")
            .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
            .with_decision(crate::decision::Decision::store_unavailable());
        return config.rejections.respond(problem, request);
    }
    let (index, decision) = outcome
        .tightest
        .unwrap_or((0, Decision::denied(0, Duration::ZERO, Duration::ZERO)));
    let retry_after = ceil_secs(decision.retry_after()).max(1);
    let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS)
        .with_detail(format!(
            "rate limit `{}` exceeded; retry in {retry_after} s",
            set.policies[index].name
        ))
        .with_header(RETRY_AFTER, HeaderValue::from(retry_after))
        .with_decision(crate::decision::Decision::rate_limited(
            &set.policies[index].name,
        ));
    let problem = outcome.headers(config, set).into_problem(problem);
    config.rejections.respond(problem, request)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for LimitRate<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let info = RequestInfo::new(
            request.method(),
            request.uri(),
            request.headers(),
            request.extensions(),
            &config.ip,
        );
        if config.exempt.as_ref().is_some_and(|exempt| exempt(&info)) {
            return ResponseFuture::inner(self.inner.call(request), AddHeaders::default());
        }
        let set_index = config.set_for(request.uri());
        let set = config.set(set_index);
        let mut outcome = Outcome::default();
        match drive(
            config,
            set,
            0,
            |i| key_for(config, set, i, &info),
            &mut outcome,
        ) {
            Progress::Finished => {
                if outcome.denied || outcome.store_failed {
                    let response = reject(config, set, outcome, &request);
                    ResponseFuture::rejected(response)
                } else {
                    let headers = outcome.headers(config, set);
                    ResponseFuture::inner(self.inner.call(request), headers)
                }
            }
            Progress::Pending(index, pending) => {
                // A network store: compute the remaining keys now, while the
                // request is at hand, then wait with the ready inner service.
                let keys = (index..set.policies.len())
                    .map(|i| {
                        if i == index {
                            None
                        } else {
                            key_for(config, set, i, &info)
                        }
                    })
                    .collect();
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(Box::new(Waiting {
                    inner,
                    request,
                    config: Arc::clone(&self.config),
                    set: set_index,
                    first: index,
                    current: index,
                    pending,
                    keys,
                    outcome,
                }))
            }
        }
    }
}
