//! The adaptive limit: an algorithm turns measured latency and drops into
//! the next limit, bounded by a minimum and a maximum.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use crate::rate_limit::store::Clock;

use super::algorithms::{Aimd, Gradient2};

/// One measured request, given to a [`LimitAlgorithm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sample {
    /// From admission to the response head (the handler's work, not the
    /// time a client takes to read a streamed body).
    pub latency: Duration,
    /// Requests in flight when this one was admitted, itself included.
    pub in_flight: usize,
    /// The request failed in a way that says the server is overloaded:
    /// the inner service returned an error, or answered 503 or 504.
    pub dropped: bool,
    /// The limit in force when the sample was taken.
    pub limit: usize,
}

impl Sample {
    /// A sample (to test your own [`LimitAlgorithm`]).
    pub const fn new(latency: Duration, in_flight: usize, dropped: bool, limit: usize) -> Self {
        Self {
            latency,
            in_flight,
            dropped,
            limit,
        }
    }
}

/// Computes the next in-flight limit from measured requests.
///
/// The layer calls [`start`](Self::start) once when it is built, then
/// [`update`](Self::update) with samples of completed requests; what
/// `update` returns is clamped to the configured bounds and becomes the
/// limit. Samples arrive from many threads: the layer hands them over one
/// at a time and skips a sample rather than wait while another thread is
/// updating (a sampled estimate loses nothing by it, and no request ever
/// waits on the algorithm).
///
/// Built in: [`Gradient2`] (the default) and [`Aimd`]. Vegas or any other
/// algorithm plugs in through this trait.
pub trait LimitAlgorithm: Send + 'static {
    /// The initial limit and the bounds every limit is clamped to.
    fn start(&mut self, initial: usize, min: usize, max: usize) {
        let _ = (initial, min, max);
    }

    /// The next limit after `sample`.
    fn update(&mut self, sample: &Sample) -> usize;
}

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

/// The default initial adaptive limit.
pub const DEFAULT_INITIAL_LIMIT: usize = 20;
/// The default lower bound of an adaptive limit.
pub const DEFAULT_MIN_LIMIT: usize = 4;
/// The default upper bound of an adaptive limit.
pub const DEFAULT_MAX_LIMIT: usize = 1000;

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
