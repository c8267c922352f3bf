//! The optional short queue: requests over the limit wait up to a deadline
//! for a slot, newest first (LIFO).
//!
//! LIFO because under sustained overload the newest request is the one
//! whose client is most likely still waiting; the oldest ones time out
//! (and are answered 503) instead of being served after their client gave
//! up. The queue is short by design: a deadline of tens of milliseconds
//! absorbs a burst, never a sustained overload.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::sync::lock;

/// Requests waiting for a slot.
pub(crate) struct Queue {
    pub(crate) capacity: usize,
    pub(crate) max_wait: Duration,
    /// Newest last.
    waiters: Mutex<Vec<oneshot::Sender<()>>>,
    /// `waiters.len()`, read without the lock on every release.
    len: AtomicUsize,
}

impl Queue {
    pub(crate) fn new(capacity: usize, max_wait: Duration) -> Self {
        Self {
            capacity,
            max_wait,
            waiters: Mutex::new(Vec::with_capacity(capacity)),
            len: AtomicUsize::new(0),
        }
    }

    /// A place in the queue, or `None` when it is full of live waiters.
    pub(crate) fn enqueue(&self) -> Option<oneshot::Receiver<()>> {
        let mut waiters = lock(&self.waiters);
        if waiters.len() >= self.capacity {
            // Waiters that timed out leave their sender behind.
            waiters.retain(|w| !w.is_closed());
            if waiters.len() >= self.capacity {
                return None;
            }
        }
        let (tx, rx) = oneshot::channel();
        waiters.push(tx);
        self.len.store(waiters.len(), Ordering::Relaxed);
        Some(rx)
    }

    /// A slot was freed: wakes the newest live waiter, which then tries
    /// to take it.
    #[inline]
    pub(crate) fn wake_one(&self) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut waiters = lock(&self.waiters);
        while let Some(waiter) = waiters.pop() {
            if waiter.send(()).is_ok() {
                break;
            }
        }
        self.len.store(waiters.len(), Ordering::Relaxed);
    }

    /// How many wait (live or timed out but not yet removed).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}
