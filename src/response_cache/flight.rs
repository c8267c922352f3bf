//! One fill per key in a process: the first miss of a key leads, the
//! others wait (bounded) for its entry (nginx's `proxy_cache_lock`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::memory::ByHash;
use crate::sync::lock;

/// The fill of one key in progress.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    done: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Flight {
    /// Ready once the fill ended (stored or given up).
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut wakers = lock(&self.wakers);
        if self.done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    fn finish(&self) {
        self.done.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *lock(&self.wakers));
        for waker in wakers {
            waker.wake();
        }
    }
}

/// The fills in progress, by primary key.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<ByHash<Arc<Flight>>>,
}

/// Joining a key's fill.
#[derive(Debug)]
pub(crate) enum Join {
    /// No fill ran: this request fills; the guard ends it when dropped.
    Lead(FlightGuard),
    /// Another request fills: wait for it.
    Follow(Arc<Flight>),
}

impl Flights {
    pub(crate) fn join(self: &Arc<Self>, key: u64) -> Join {
        let mut map = lock(&self.map);
        if let Some(flight) = map.get(&key) {
            return Join::Follow(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::default());
        map.insert(key, Arc::clone(&flight));
        Join::Lead(FlightGuard {
            flights: Arc::clone(self),
            key,
            flight,
        })
    }
}

/// Held by the request that fills a key; dropping it ends the fill and
/// wakes the waiters (after the entry is stored, or when the fill gave up).
#[derive(Debug)]
pub(crate) struct FlightGuard {
    flights: Arc<Flights>,
    key: u64,
    flight: Arc<Flight>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        {
            let mut map = lock(&self.flights.map);
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        self.flight.finish();
    }
}
