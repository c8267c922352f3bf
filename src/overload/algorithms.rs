//! What a limit algorithm is ([`LimitAlgorithm`], fed [`Sample`]s) and the
//! built-in ones: [`Gradient2`] and [`Aimd`].

use std::time::Duration;

/// The default initial adaptive limit.
pub const DEFAULT_INITIAL_LIMIT: usize = 20;
/// The default lower bound of an adaptive limit.
pub const DEFAULT_MIN_LIMIT: usize = 4;
/// The default upper bound of an adaptive limit.
pub const DEFAULT_MAX_LIMIT: usize = 1000;

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

/// Netflix's Gradient2 (`concurrency-limits`): the limit follows the ratio
/// of a long-term average latency to the latest latency.
///
/// With `long` an exponential average of latencies (over `long_window`
/// samples) and `short` the latest latency:
///
/// * `gradient = clamp(tolerance · long / short, 0.5, 1.0)`: latency above
///   the tolerated ratio shrinks the limit (at most halving it per
///   sample), latency at or below it leaves room to grow;
/// * `next = limit · gradient + queue_size`, smoothed:
///   `limit = limit · (1 − smoothing) + next · smoothing`;
/// * while fewer than half the limit are in flight, the limit stays: the
///   server is not the bottleneck, and growing it would only mean a
///   larger burst later;
/// * when `long` is more than twice `short` (latency fell back after a
///   spike), `long` decays by 5 % per sample so the limit recovers instead
///   of holding on to the spike's average.
///
/// Defaults: tolerance 1.5, smoothing 0.2, queue size 4, long window 600
/// samples (Netflix's defaults).
#[derive(Debug, Clone)]
pub struct Gradient2 {
    tolerance: f64,
    smoothing: f64,
    queue_size: f64,
    long_window: u32,
    estimate: f64,
    min: f64,
    max: f64,
    long: Option<f64>,
    samples: u32,
}

impl Default for Gradient2 {
    fn default() -> Self {
        Self {
            tolerance: 1.5,
            smoothing: 0.2,
            queue_size: 4.0,
            long_window: 600,
            estimate: DEFAULT_INITIAL_LIMIT as f64,
            min: DEFAULT_MIN_LIMIT as f64,
            max: DEFAULT_MAX_LIMIT as f64,
            long: None,
            samples: 0,
        }
    }
}

/// Samples averaged plainly before the exponential average starts.
const WARMUP: u32 = 10;

impl Gradient2 {
    /// How much latency above the long-term average is tolerated before
    /// the limit shrinks (default 1.5; at least 1).
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = if tolerance.is_finite() {
            tolerance.max(1.0)
        } else {
            1.5
        };
        self
    }

    /// How fast the limit moves towards each new estimate (default 0.2;
    /// from 0 exclusive to 1).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = if smoothing.is_finite() {
            smoothing.clamp(0.01, 1.0)
        } else {
            0.2
        };
        self
    }

    /// How many requests may queue in the server above the ideal limit,
    /// which is also how fast the limit grows (default 4).
    pub fn queue_size(mut self, queue_size: u32) -> Self {
        self.queue_size = f64::from(queue_size);
        self
    }

    /// How many samples the long-term average spans (default 600).
    pub fn long_window(mut self, samples: u32) -> Self {
        self.long_window = samples.max(1);
        self
    }

    fn long_average(&mut self, short: f64) -> f64 {
        self.samples = self.samples.saturating_add(1);
        let long = match self.long {
            None => short,
            Some(long) if self.samples <= WARMUP => long + (short - long) / f64::from(self.samples),
            Some(long) => {
                let factor = 2.0 / (f64::from(self.long_window) + 1.0);
                long * (1.0 - factor) + short * factor
            }
        };
        self.long = Some(long);
        long
    }
}

impl LimitAlgorithm for Gradient2 {
    fn start(&mut self, initial: usize, min: usize, max: usize) {
        self.estimate = initial as f64;
        self.min = min as f64;
        self.max = max as f64;
    }

    fn update(&mut self, sample: &Sample) -> usize {
        // Nanoseconds, at least one: a zero latency must not divide by 0.
        let short = (sample.latency.as_nanos() as f64).max(1.0);
        let mut long = self.long_average(short);
        if long / short > 2.0 {
            long *= 0.95;
            self.long = Some(long);
        }
        if (sample.in_flight as f64) < self.estimate / 2.0 {
            return self.estimate as usize;
        }
        let gradient = (self.tolerance * long / short).clamp(0.5, 1.0);
        let next = self.estimate * gradient + self.queue_size;
        let next = self.estimate * (1.0 - self.smoothing) + next * self.smoothing;
        self.estimate = next.clamp(self.min, self.max);
        self.estimate as usize
    }
}

/// Additive increase, multiplicative decrease: the limit grows by one
/// while requests succeed with at least half the limit in flight, and is
/// multiplied by `backoff` (default 0.9) on a drop or a latency above
/// `latency_threshold` (default 5 s, Netflix's default timeout).
#[derive(Debug, Clone)]
pub struct Aimd {
    backoff: f64,
    latency_threshold: Duration,
    estimate: f64,
    min: f64,
    max: f64,
}

impl Default for Aimd {
    fn default() -> Self {
        Self {
            backoff: 0.9,
            latency_threshold: Duration::from_secs(5),
            estimate: DEFAULT_INITIAL_LIMIT as f64,
            min: DEFAULT_MIN_LIMIT as f64,
            max: DEFAULT_MAX_LIMIT as f64,
        }
    }
}

impl Aimd {
    /// The factor applied on a drop (default 0.9; from 0.5 to 1
    /// exclusive).
    pub fn backoff(mut self, ratio: f64) -> Self {
        self.backoff = if ratio.is_finite() {
            ratio.clamp(0.5, 0.99)
        } else {
            0.9
        };
        self
    }

    /// A latency above this counts as a drop (default 5 s).
    pub fn latency_threshold(mut self, threshold: Duration) -> Self {
        self.latency_threshold = threshold;
        self
    }
}

impl LimitAlgorithm for Aimd {
    fn start(&mut self, initial: usize, min: usize, max: usize) {
        self.estimate = initial as f64;
        self.min = min as f64;
        self.max = max as f64;
    }

    fn update(&mut self, sample: &Sample) -> usize {
        if sample.dropped || sample.latency > self.latency_threshold {
            self.estimate = (self.estimate * self.backoff).max(self.min);
        } else if sample.in_flight as f64 * 2.0 >= self.estimate {
            self.estimate = (self.estimate + 1.0).min(self.max);
        }
        self.estimate as usize
    }
}
