//! The adaptive limit: an algorithm turns measured latency and drops into
//! the next limit, bounded by a minimum and a maximum.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use crate::rate_limit::store::Clock;

use super::algorithms::{
    Aimd, DEFAULT_INITIAL_LIMIT, DEFAULT_MAX_LIMIT, DEFAULT_MIN_LIMIT, Gradient2, LimitAlgorithm,
    Sample,
};

/// An adaptive global limit: an algorithm, an initial limit and bounds.
///
/// ```
/// use tower_edge::overload::{AdaptiveLimit, Aimd};
///
/// let default = AdaptiveLimit::gradient2(); // initial 20, from 4 to 1000
/// let aimd = AdaptiveLimit::new(Aimd::default()).initial(50).min(10).max(500);
/// # let _ = (default, aimd);
/// ```
pub struct AdaptiveLimit {
    pub(crate) algorithm: Box<dyn LimitAlgorithm>,
    pub(crate) initial: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("initial", &self.initial)
            .field("min", &self.min)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl AdaptiveLimit {
    /// `algorithm`, starting at [`DEFAULT_INITIAL_LIMIT`], bounded by
    /// [`DEFAULT_MIN_LIMIT`] and [`DEFAULT_MAX_LIMIT`].
    pub fn new(algorithm: impl LimitAlgorithm) -> Self {
        Self {
            algorithm: Box::new(algorithm),
            initial: DEFAULT_INITIAL_LIMIT,
            min: DEFAULT_MIN_LIMIT,
            max: DEFAULT_MAX_LIMIT,
        }
    }

    /// [`Gradient2`] with its defaults: the recommended algorithm.
    pub fn gradient2() -> Self {
        Self::new(Gradient2::default())
    }

    /// [`Aimd`] with its defaults.
    pub fn aimd() -> Self {
        Self::new(Aimd::default())
    }

    /// The limit before any sample (default [`DEFAULT_INITIAL_LIMIT`]).
    pub fn initial(mut self, limit: usize) -> Self {
        self.initial = limit;
        self
    }

    /// The lowest the limit goes (default [`DEFAULT_MIN_LIMIT`]).
    pub fn min(mut self, limit: usize) -> Self {
        self.min = limit;
        self
    }

    /// The highest the limit goes (default [`DEFAULT_MAX_LIMIT`]).
    pub fn max(mut self, limit: usize) -> Self {
        self.max = limit;
        self
    }
}

/// The running adaptive limit of a layer.
pub(crate) struct AdaptiveState {
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
    min: usize,
    max: usize,
    clock: Arc<dyn Clock>,
}

impl AdaptiveState {
    pub(crate) fn new(mut limit: AdaptiveLimit, clock: Arc<dyn Clock>) -> Self {
        limit.algorithm.start(limit.initial, limit.min, limit.max);
        Self {
            algorithm: Mutex::new(limit.algorithm),
            min: limit.min,
            max: limit.max,
            clock,
        }
    }

    #[inline]
    pub(crate) fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Feeds one sample to the algorithm and stores the new limit; skips
    /// the sample when another thread is updating.
    pub(crate) fn record(
        &self,
        limit: &AtomicUsize,
        started: Duration,
        in_flight: usize,
        dropped: bool,
    ) {
        let mut algorithm = match self.algorithm.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let sample = Sample {
            latency: self.now().saturating_sub(started),
            in_flight,
            dropped,
            limit: limit.load(Ordering::Relaxed),
        };
        let next = algorithm.update(&sample).clamp(self.min, self.max);
        limit.store(next, Ordering::Relaxed);
    }
}
