//! When failing calls mean "Redis is down": a circuit breaker that trips on
//! sustained failure, not on one slow reply.
//!
//! A single timeout says little on a loaded machine: the timer also counts
//! the time this process's tasks waited for a CPU, and one scheduling stall
//! times out every call in flight at once. Tripping on that moved every
//! check to the fallback for a whole retry interval (a security review
//! pushed a limiter to fail open by load alone). So the breaker trips only
//! when calls have kept failing, with no success in between, for at least
//! [`trip_after`](super::RedisBackendBuilder::trip_after); a stall followed
//! by successful replies resets it. While tripped, checks skip Redis for
//! the retry interval; the first failure after it trips again at once (the
//! streak only ends with a success).
//!
//! Lock-free: two atomics of nanoseconds since the backend was built.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) struct Breaker {
    origin: Instant,
    trip_after: u64,
    retry_interval: u64,
    /// When the current streak of failures began (nanoseconds since
    /// `origin`, at least 1); 0: the last call succeeded.
    failing_since: AtomicU64,
    /// Until when checks skip Redis (nanoseconds since `origin`); 0: closed.
    open_until: AtomicU64,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Breaker {
    pub(crate) fn new(trip_after: Duration, retry_interval: Duration) -> Self {
        Self {
            origin: Instant::now(),
            trip_after: nanos(trip_after),
            retry_interval: nanos(retry_interval),
            failing_since: AtomicU64::new(0),
            open_until: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        nanos(self.origin.elapsed()).max(1)
    }

    /// Whether checks skip Redis now.
    pub(crate) fn is_open(&self) -> bool {
        // Closed (the usual case): no clock reading on every call.
        self.open_until.load(Ordering::Relaxed) != 0 && self.is_open_at(self.now())
    }

    fn is_open_at(&self, now: u64) -> bool {
        let until = self.open_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    /// Records a failed call; true when it trips the breaker.
    pub(crate) fn failure(&self) -> bool {
        self.failure_at(self.now())
    }

    fn failure_at(&self, now: u64) -> bool {
        let since =
            match self
                .failing_since
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => now,
                Err(since) => since,
            };
        if now.saturating_sub(since) < self.trip_after || self.retry_interval == 0 {
            return false;
        }
        self.open_until
            .store(now.saturating_add(self.retry_interval), Ordering::Relaxed);
        true
    }

    /// Records a successful call: the streak ends and the breaker closes.
    pub(crate) fn success(&self) {
        // Loads first: the healthy path writes nothing shared.
        if self.failing_since.load(Ordering::Relaxed) != 0 {
            self.failing_since.store(0, Ordering::Relaxed);
        }
        if self.open_until.load(Ordering::Relaxed) != 0 {
            self.open_until.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn breaker() -> Breaker {
        Breaker::new(Duration::from_millis(100), Duration::from_millis(250))
    }

    // Security review finding: one stall timing out every call in flight
    // tripped the store and moved checks to the fallback.
    #[test]
    fn a_burst_of_failures_at_once_does_not_trip() {
        let b = breaker();
        for i in 0..60 {
            assert!(!b.failure_at(10 * MS + i * 1000), "call {i}");
        }
        assert!(!b.is_open_at(11 * MS));
        // Replies come again: the streak ends.
        b.success();
        for i in 0..60 {
            assert!(!b.failure_at(150 * MS + i * 1000));
        }
        assert!(!b.is_open_at(151 * MS));
    }

    #[test]
    fn sustained_failure_trips_for_the_retry_interval() {
        let b = breaker();
        assert!(!b.failure_at(10 * MS));
        assert!(!b.failure_at(60 * MS));
        assert!(b.failure_at(110 * MS));
        assert!(b.is_open_at(111 * MS));
        assert!(b.is_open_at(359 * MS));
        assert!(!b.is_open_at(360 * MS));
        // Still failing after the interval: trips again at once.
        assert!(b.failure_at(361 * MS));
        assert!(b.is_open_at(362 * MS));
        // A success closes it and ends the streak.
        b.success();
        assert!(!b.is_open_at(363 * MS));
        assert!(!b.failure_at(364 * MS));
    }

    #[test]
    fn zero_trip_after_trips_on_the_first_failure() {
        let b = Breaker::new(Duration::ZERO, Duration::from_millis(250));
        assert!(b.failure_at(5 * MS));
        assert!(b.is_open_at(6 * MS));
    }

    #[test]
    fn zero_retry_interval_never_opens() {
        let b = Breaker::new(Duration::ZERO, Duration::ZERO);
        assert!(!b.failure_at(5 * MS));
        assert!(!b.failure_at(500 * MS));
        assert!(!b.is_open_at(501 * MS));
    }
}
