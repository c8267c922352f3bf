//! A request's hold on the limits: released when the response body ends
//! or is dropped.

use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use super::limiter::Slot;
use crate::rate_limit::Key;

/// The slots one request holds (its key's, the global limit's) until it
/// is dropped; the first [`record`](Self::record) feeds the adaptive limit.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    slot: Option<Slot>,
    key: Option<Key>,
    /// Clock reading at admission, in nanoseconds (adaptive limits only).
    started: u64,
    /// Requests in flight at admission, this one included (saturating).
    in_flight: u32,
    sampled: bool,
}

impl Permit {
    /// A permit holding `key`'s slot only (the global slot comes later, if
    /// the layer has a global limit).
    #[inline]
    pub(crate) fn new(shared: Arc<Shared>, key: Option<Key>) -> Self {
        Self {
            shared,
            slot: None,
            key,
            started: 0,
            in_flight: 0,
            sampled: false,
        }
    }

    /// A permit holding the global `slot` only, taken with `in_flight`
    /// requests in flight (what [`new`](Self::new) then
    /// [`hold`](Self::hold) make, in one go for the fast path).
    #[inline]
    pub(crate) fn holding(shared: Arc<Shared>, slot: Slot, in_flight: usize) -> Self {
        let started = adaptive_start(&shared);
        Self {
            sampled: started.is_none(),
            shared,
            slot: Some(slot),
            key: None,
            started: started.unwrap_or(0),
            in_flight: u32::try_from(in_flight).unwrap_or(u32::MAX),
        }
    }

    /// Adds the global `slot`, taken with `in_flight` requests in flight.
    #[inline]
    pub(crate) fn hold(&mut self, slot: Slot, in_flight: usize) {
        self.slot = Some(slot);
        self.in_flight = u32::try_from(in_flight).unwrap_or(u32::MAX);
        match adaptive_start(&self.shared) {
            Some(started) => self.started = started,
            None => self.sampled = true,
        }
    }

    /// The response head is here (or the inner service failed): feeds the
    /// adaptive limit with the latency so far, once.
    #[inline]
    pub(crate) fn record(&mut self, dropped: bool) {
        if std::mem::replace(&mut self.sampled, true) || self.slot.is_none() {
            return;
        }
        if let Some(global) = &self.shared.global
            && let Some(adaptive) = &global.adaptive
        {
            adaptive.record(
                &global.limit,
                Duration::from_nanos(self.started),
                self.in_flight as usize,
                dropped,
            );
        }
    }
}

/// The clock reading an adaptive limit measures a request's latency from
/// (nanoseconds); `None` without an adaptive limit: nothing to record, the
/// permit is born sampled (`record` returns at its first check).
#[inline]
fn adaptive_start(shared: &Shared) -> Option<u64> {
    let adaptive = shared.global.as_ref()?.adaptive.as_ref()?;
    Some(u64::try_from(adaptive.now().as_nanos()).unwrap_or(u64::MAX))
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        // A request dropped before its response head (the client left, a
        // timeout outside fired) still says its latency was at least this.
        self.record(false);
        if let (Some(key), Some(keyed)) = (self.key, &self.shared.keyed) {
            keyed.release(key);
        }
        if let (Some(slot), Some(global)) = (self.slot, &self.shared.global) {
            global.release(slot);
        }
    }
}

impl Permit {
    /// The layer's shared state.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The layer's shared state, as its `Arc`.
    pub(crate) fn shared_arc(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// How long a queued request waits at most.
    pub(crate) fn queue_wait(&self) -> Duration {
        self.shared
            .global
            .as_ref()
            .and_then(|g| g.queue.as_ref())
            .map_or(Duration::ZERO, |q| q.max_wait)
    }
}
