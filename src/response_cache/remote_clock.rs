//! Redis's clock, read here without asking Redis every time.
//!
//! Entries in the Redis tier carry the Redis `TIME` at which they were
//! stored, so their age does not depend on which replica stored or reads
//! them, nor on how far its clock is off (RFC 9111 §4.2.3 leaves a shared
//! cache to compute ages; every replica must agree). A lookup used to send
//! `TIME` with its `HGETALL`: a two-command pipeline, whose bookkeeping in
//! the client cost a hit from Redis more than the second command itself.
//!
//! This keeps the offset between Redis's clock and this process's
//! monotonic clock, sampled from a `TIME` reply at most [`SAMPLE_EVERY`]
//! ago; a lookup sends `TIME` only when the sample is older. The sample
//! counts from when its request was sent, so the estimate runs ahead of
//! Redis by at most one round trip: ages come out older, never younger.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// How old a sample may be before a lookup asks for `TIME` again.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// No sample yet.
const NONE: i64 = i64::MIN;

/// Redis's clock as an offset from this process's monotonic clock.
pub(crate) struct RemoteClock {
    origin: Instant,
    /// Redis time minus local time (both in ms; local: since `origin`).
    offset_ms: AtomicI64,
    /// Local time of the sample (ms since `origin`), or [`NONE`].
    sampled_ms: AtomicI64,
}

impl RemoteClock {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            offset_ms: AtomicI64::new(0),
            sampled_ms: AtomicI64::new(NONE),
        }
    }

    /// This process's clock, in ms since the clock was made.
    pub(crate) fn local_ms(&self) -> i64 {
        i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// The offset to add to this process's clock (ms) for Redis's, when
    /// a sample younger than [`SAMPLE_EVERY`] is at hand at `local_ms`;
    /// `None`: ask Redis for `TIME`.
    pub(crate) fn fresh_offset_at(&self, local_ms: i64) -> Option<i64> {
        // Acquire: the offset stored before the first sample is seen.
        let sampled = self.sampled_ms.load(Ordering::Acquire);
        let fresh =
            sampled != NONE && local_ms.saturating_sub(sampled) < SAMPLE_EVERY.as_millis() as i64;
        fresh.then(|| self.offset_ms.load(Ordering::Relaxed))
    }

    /// Records Redis's `redis_ms` from a request sent at `sent_local_ms`.
    pub(crate) fn sample(&self, redis_ms: i64, sent_local_ms: i64) {
        // The offset before the sample time (Release: a reader that sees
        // the first sample sees its offset). A reader that sees a newer
        // sample time with an older offset is off by a second's drift at
        // most, which whole-second ages do not show.
        self.offset_ms
            .store(redis_ms.saturating_sub(sent_local_ms), Ordering::Relaxed);
        self.sampled_ms.store(sent_local_ms, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_redis_time_from_a_sample() {
        let clock = RemoteClock::new();
        assert_eq!(clock.fresh_offset_at(0), None);
        // Redis said 1 700 000 000 000 for a request sent at local 500.
        clock.sample(1_700_000_000_000, 500);
        assert_eq!(clock.fresh_offset_at(500), Some(1_699_999_999_500));
        assert_eq!(
            clock.fresh_offset_at(1_499).map(|offset| 800 + offset),
            Some(1_700_000_000_300)
        );
        // A second later the sample is stale: the next lookup asks again.
        assert_eq!(clock.fresh_offset_at(1_500), None);
        clock.sample(1_700_000_002_100, 2_500);
        assert_eq!(
            clock.fresh_offset_at(2_600).map(|offset| 2_600 + offset),
            Some(1_700_000_002_200)
        );
    }

    #[test]
    fn local_time_runs_forward() {
        let clock = RemoteClock::new();
        let a = clock.local_ms();
        std::thread::sleep(Duration::from_millis(5));
        assert!(clock.local_ms() >= a + 5);
    }
}
