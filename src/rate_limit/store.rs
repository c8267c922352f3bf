//! The plug-in API for store implementers: the store trait, the check it
//! answers, its decision, the clock, and the GCRA arithmetic every store
//! shares.
//!
//! Users configure a store on a [`Policy`](super::Policy) with
//! [`Policy::store`](super::Policy::store); implementing one takes
//! [`RateLimitStore`] (answer a [`Check`] with a [`Decision`] through a
//! [`StoreFuture`]) and, for the same decisions as the built-in stores,
//! [`gcra`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::key::Key;
use super::quota::Quota;

/// What a store decided for one request under one policy.
///
/// Everything the response headers need comes from here, computed from the
/// key's GCRA state after the request was counted (when allowed) or
/// refused (when denied):
///
/// * [`remaining`](Self::remaining): how many more unit-cost requests would
///   be allowed right now (`r` of the `RateLimit` header);
/// * [`reset`](Self::reset): how long until the key's bucket is full again,
///   i.e. until its TAT (`t`, rounded up to seconds);
/// * [`retry_after`](Self::retry_after): for a denied request, how long until
///   the same request would be allowed (`Retry-After`, rounded up); zero
///   when allowed.
///
/// A Redis (Lua) store returns the same four numbers; [`gcra`] computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    remaining: u64,
    reset: Duration,
    retry_after: Duration,
}

impl Decision {
    /// An allowed request.
    pub const fn allowed(remaining: u64, reset: Duration) -> Self {
        Self {
            allowed: true,
            remaining,
            reset,
            retry_after: Duration::ZERO,
        }
    }

    /// A denied request that may be retried after `retry_after`.
    pub const fn denied(remaining: u64, reset: Duration, retry_after: Duration) -> Self {
        Self {
            allowed: false,
            remaining,
            reset,
            retry_after,
        }
    }

    /// Whether the request may go through.
    pub const fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// Unit-cost requests still allowed right now.
    pub const fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Time until the bucket is full again (the key's TAT minus now).
    pub const fn reset(&self) -> Duration {
        self.reset
    }

    /// Time until a denied request would be allowed; zero when allowed.
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

/// The generic cell rate algorithm, as every store applies it.
///
/// `tat` is the key's theoretical arrival time (`None` for a key never seen
/// or forgotten), `now` the store's clock, both on the same time line. With
/// `T = quota.emission_interval()`, `τ = quota.tolerance()` and a request
/// costing `cost` cells:
///
/// ```text
/// base    = max(TAT, now)
/// new_TAT = base + cost·T
/// allowed ⇔ now ≥ new_TAT − τ − T          (cost 1: deny when now < TAT − τ)
/// allowed:  store new_TAT; r = ⌊(now + τ + T − new_TAT) / T⌋; reset = new_TAT − now
/// denied:   keep TAT;      r = ⌊(now + τ + T − base) / T⌋;    reset = base − now;
///           retry_after = new_TAT − τ − T − now
/// ```
///
/// Returns the decision and, when allowed, the TAT to store. A request
/// costing more than the burst is never allowed; its `retry_after` is the
/// time until the bucket is full.
///
/// ```
/// use std::time::Duration;
/// use tower_edge::rate_limit::{Quota, store::gcra};
///
/// let quota = Quota::per_second(2); // T = 500 ms, τ = 500 ms
/// let now = Duration::from_secs(10);
/// let (first, tat) = gcra(None, now, &quota, 1);
/// assert!(first.is_allowed());
/// assert_eq!(first.remaining(), 1);
/// let (second, tat) = gcra(tat, now, &quota, 1);
/// assert_eq!(second.remaining(), 0);
/// let (third, none) = gcra(tat, now, &quota, 1);
/// assert!(!third.is_allowed() && none.is_none());
/// assert_eq!(third.retry_after(), Duration::from_millis(500));
/// assert_eq!(third.reset(), Duration::from_secs(1));
/// ```
pub fn gcra(
    tat: Option<Duration>,
    now: Duration,
    quota: &Quota,
    cost: u32,
) -> (Decision, Option<Duration>) {
    let now_ns = nanos(now);
    let (decision, new_tat) = gcra_nanos(tat.map(nanos), now_ns, quota, cost);
    (decision, new_tat.map(Duration::from_nanos))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// [`gcra`] on nanoseconds: the memory store's hot path.
pub(crate) fn gcra_nanos(
    tat: Option<u64>,
    now: u64,
    quota: &Quota,
    cost: u32,
) -> (Decision, Option<u64>) {
    // A validated quota has T ≥ 1 ns; `max` only keeps an unvalidated one
    // (given to `gcra` or `check_now` directly) from dividing by zero.
    let t = quota.interval_nanos().max(1);
    let tau = quota.tolerance_nanos();
    let base = tat.map_or(now, |tat| tat.max(now));
    let new_tat = base.saturating_add(t.saturating_mul(u64::from(cost)));
    let horizon = now.saturating_add(tau).saturating_add(t);
    if cost <= quota.burst() && new_tat <= horizon {
        let remaining = (horizon - new_tat) / t;
        let decision = Decision::allowed(remaining, Duration::from_nanos(new_tat - now));
        (decision, Some(new_tat))
    } else {
        let remaining = horizon.saturating_sub(base) / t;
        let reset = Duration::from_nanos(base - now);
        let retry_after = if cost > quota.burst() {
            reset
        } else {
            Duration::from_nanos(new_tat - horizon)
        };
        (Decision::denied(remaining, reset, retry_after), None)
    }
}

/// A store could not answer (network error, timeout...).
///
/// The layer then fails open (the default: the request goes through and the
/// error is counted and logged) or closed (503 / gRPC `UNAVAILABLE`), as
/// configured with
/// [`LimitRateLayerBuilder::on_store_error`](super::LimitRateLayerBuilder::on_store_error).
#[derive(Debug, thiserror::Error)]
#[error("rate-limit store error: {message}")]
pub struct StoreError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error explained by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

type BoxedCheck = Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send + 'static>>;

/// The future a [`RateLimitStore`] returns: either an answer that is already
/// there (the memory store: no allocation, no boxing) or a boxed future (a
/// network store).
#[must_use = "futures do nothing unless polled"]
pub struct StoreFuture {
    inner: Inner,
}

enum Inner {
    Ready(Option<Result<Decision, StoreError>>),
    Boxed(BoxedCheck),
}

impl StoreFuture {
    /// An answer known now.
    pub fn ready(result: Result<Decision, StoreError>) -> Self {
        Self {
            inner: Inner::Ready(Some(result)),
        }
    }

    /// An answer that needs I/O.
    pub fn boxed(
        future: impl Future<Output = Result<Decision, StoreError>> + Send + 'static,
    ) -> Self {
        Self {
            inner: Inner::Boxed(Box::pin(future)),
        }
    }

    /// The answer if it is already known, else the future back.
    pub fn into_ready(self) -> Result<Result<Decision, StoreError>, Self> {
        match self.inner {
            Inner::Ready(Some(result)) => Ok(result),
            inner => Err(Self { inner }),
        }
    }
}

impl fmt::Debug for StoreFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Ready(_) => "ready",
            Inner::Boxed(_) => "pending",
        };
        f.debug_tuple("StoreFuture").field(&kind).finish()
    }
}

impl Future for StoreFuture {
    type Output = Result<Decision, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            Inner::Ready(result) => Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err(StoreError::new("StoreFuture polled after completion"))),
            ),
            Inner::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

/// One check a store is asked to make.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Check<'a> {
    /// The policy's name; a shared store (Redis) puts it in its keys so
    /// policies never share a bucket. The memory store is per policy and
    /// ignores it.
    pub policy: &'a str,
    /// The key's bucket.
    pub key: &'a Key,
    /// The policy's quota.
    pub quota: &'a Quota,
    /// Cells this request consumes (1 unless the policy has a cost
    /// function).
    pub cost: u32,
}

impl<'a> Check<'a> {
    /// A check of `key` under `policy`'s `quota`, costing `cost` cells.
    pub fn new(policy: &'a str, key: &'a Key, quota: &'a Quota, cost: u32) -> Self {
        Self {
            policy,
            key,
            quota,
            cost,
        }
    }
}

/// Where GCRA state lives: the default [`MemoryStore`](super::MemoryStore),
/// or a shared store such as Redis so that N replicas share one quota.
///
/// A store applies [`gcra`] atomically per key: it reads the key's TAT,
/// decides, and stores the new TAT when allowed — all as one step (a lock in
/// memory, one Lua script in Redis) — and answers with the [`Decision`].
/// The layer turns that decision into the response and its headers, so a
/// new store needs no change to the layer.
///
/// A Redis implementation runs one Lua script per check: the key (from
/// [`Check::policy`] and the [`Key`]'s `Display` form, with a hash tag for
/// Cluster) in `KEYS[1]`; `T`, `τ` and the cost in `ARGV`; time from
/// `redis.call('TIME')`; the [`gcra`] formulas; `SET ... PX` the new TAT to
/// expire when it passes; and it returns `allowed`, `remaining`, `reset` and
/// `retry_after` (e.g. in microseconds) for [`Decision::allowed`] /
/// [`Decision::denied`].
///
/// The trait is object-safe: the layer holds `Arc<dyn RateLimitStore>`. The
/// memory store answers with [`StoreFuture::ready`], so its hot path has no
/// allocation; a network store returns [`StoreFuture::boxed`].
pub trait RateLimitStore: Send + Sync + fmt::Debug + 'static {
    /// Counts `check.cost` cells for `check.key` if the quota allows it.
    fn check(&self, check: Check<'_>) -> StoreFuture;

    /// How many keys the store tracks, when it knows (`None` by default,
    /// e.g. for a remote store).
    fn len(&self) -> Option<usize> {
        None
    }

    /// Whether the store tracks no key (`None` when it does not know).
    fn is_empty(&self) -> Option<bool> {
        self.len().map(|n| n == 0)
    }
}

impl<S: RateLimitStore + ?Sized> RateLimitStore for std::sync::Arc<S> {
    fn check(&self, check: Check<'_>) -> StoreFuture {
        (**self).check(check)
    }

    fn len(&self) -> Option<usize> {
        (**self).len()
    }
}

/// The time line of the [`MemoryStore`](super::MemoryStore): a monotonic
/// duration since an arbitrary origin.
///
/// Inject your own to make tests exact: any `Fn() -> Duration` is a clock,
/// e.g. one driven by paused tokio time:
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let origin = tokio::time::Instant::now();
/// let clock = move || origin.elapsed();
/// let store = tower_edge::rate_limit::MemoryStore::builder().clock(clock).build();
/// # let _ = store;
/// # }
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Now, as time elapsed since the clock's origin.
    fn now(&self) -> Duration;
}

impl<F> Clock for F
where
    F: Fn() -> Duration + Send + Sync + 'static,
{
    fn now(&self) -> Duration {
        self()
    }
}

/// The default clock: monotonic time since the clock was made, read from
/// the CPU's time-stamp counter where it is reliable (through `quanta`,
/// calibrated once per process against the OS clock, which it falls back
/// to otherwise): about a third of the cost of [`std::time::Instant::now`]
/// on the request path.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: quanta::Instant,
}

/// The process's `quanta` clock, calibrated once. Reading it directly skips
/// `quanta::Instant::now`'s thread-local check for a mocked clock.
fn tsc_clock() -> &'static quanta::Clock {
    static CLOCK: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self {
            origin: tsc_clock().now(),
        }
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Duration {
        tsc_clock().now().saturating_duration_since(self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    // GCRA (ITU-T I.371, virtual scheduling): T = period / quota,
    // τ = T·(burst − 1); deny when now < TAT − τ; on allow
    // TAT = max(TAT, now) + T.
    #[test]
    fn gcra_follows_the_standard_formulas() {
        // 10/s burst 3: T = 100 ms, τ = 200 ms.
        let quota = Quota::per_second(10).with_burst(3);
        let now = 1_000 * MS;
        let (d, tat) = gcra_nanos(None, now, &quota, 1);
        assert_eq!(tat, Some(now + 100 * MS));
        assert_eq!(d, Decision::allowed(2, Duration::from_millis(100)));
        let (d, tat) = gcra_nanos(tat, now, &quota, 1);
        assert_eq!(tat, Some(now + 200 * MS));
        assert_eq!(d.remaining(), 1);
        let (d, tat) = gcra_nanos(tat, now, &quota, 1);
        assert_eq!(tat, Some(now + 300 * MS));
        assert_eq!(d.remaining(), 0);
        // TAT − τ = now + 100 ms > now: denied, TAT unchanged.
        let (d, none) = gcra_nanos(Some(now + 300 * MS), now, &quota, 1);
        assert_eq!(none, None);
        assert_eq!(
            d,
            Decision::denied(0, Duration::from_millis(300), Duration::from_millis(100))
        );
        // Exactly at TAT − τ: allowed, TAT = max(TAT, now) + T.
        let at = now + 100 * MS;
        let (d, tat) = gcra_nanos(Some(now + 300 * MS), at, &quota, 1);
        assert!(d.is_allowed());
        assert_eq!(tat, Some(now + 400 * MS));
        // Long idle: TAT in the past is replaced by now.
        let later = now + 10_000 * MS;
        let (_, tat) = gcra_nanos(Some(now + 400 * MS), later, &quota, 1);
        assert_eq!(tat, Some(later + 100 * MS));
    }

    #[test]
    fn cost_consumes_several_cells() {
        let quota = Quota::per_second(10).with_burst(5);
        let now = 0;
        let (d, tat) = gcra_nanos(None, now, &quota, 4);
        assert_eq!(d.remaining(), 1);
        assert_eq!(tat, Some(400 * MS));
        // 2 more do not fit (only 1 left): retry when one more cell drips in.
        let (d, _) = gcra_nanos(tat, now, &quota, 2);
        assert!(!d.is_allowed());
        assert_eq!(d.remaining(), 1);
        assert_eq!(d.retry_after(), Duration::from_millis(100));
        // More than the burst: never, retry_after is the time to full.
        let (d, _) = gcra_nanos(None, now, &quota, 6);
        assert!(!d.is_allowed());
        assert_eq!(d.remaining(), 5);
    }
}
