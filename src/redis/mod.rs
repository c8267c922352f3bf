//! One Redis backend for every Redis-backed layer of a process: a single
//! node or a Cluster, one multiplexed connection, and the same timeout,
//! circuit breaker and failure accounting for every call.
//!
//! [`RedisBackend`] is what users configure; the layers' stores (the rate
//! limiter's [`RedisStore`](crate::rate_limit::redis::RedisStore) today) are
//! a few Lua [`Script`]s on top of it. Build one backend and give clones of
//! it to every store of the process: clones share the connection, the
//! breaker and the counters.
//!
//! # What a call gets
//!
//! * **Lazy connect.** Building never connects; the first call does, in the
//!   background (it needs a tokio runtime), and Redis is used as soon as it
//!   answers. Start-up never waits for Redis; [`RedisBackend::ping`] can, if
//!   you want it to. A single node is reached through a `redis`
//!   `ConnectionManager`, which reconnects by itself with a back-off (50 ms
//!   doubling to 500 ms); a Cluster connection is retried in the
//!   background with a back-off of 50 ms doubling to 2 s.
//! * **Per-call timeout** ([`RedisBackendBuilder::timeout`], 20 ms by
//!   default), counted from when the call hands its command to the
//!   connection; a timed-out call gets one more turn of the scheduler, so a
//!   reply that arrived while this process waited for a CPU still counts.
//! * **Circuit breaker.** The backend *trips* only on sustained failure:
//!   when calls have kept failing, with no successful reply in between, for
//!   [`trip_after`](RedisBackendBuilder::trip_after) (100 ms). Once
//!   tripped, calls fail at once, without a round trip, for
//!   [`retry_interval`](RedisBackendBuilder::retry_interval) (250 ms),
//!   logged once per outage. [`RedisBackend::health`] tells whether it is
//!   tripped.
//! * **Scripts.** A [`Script`] is sent with `EVALSHA`; on `NOSCRIPT` (after
//!   `SCRIPT FLUSH`, a restart or a failover) the call is sent again as
//!   `EVAL` with the script's text, which runs it and caches it for the next
//!   `EVALSHA` in one command. Scripts read the time of Redis with
//!   `redis.call('TIME')`, so replicas need no synchronised clocks. Keys are
//!   passed in `KEYS` and share one Cluster hash tag (`{...}`), so a script
//!   runs on Redis Cluster.
//! * **Failure reporting.** A failed call returns a [`RedisFailure`] whose
//!   [`kind`](RedisFailure::kind) says what failed; the caller applies its
//!   own fallback (the rate limiter: a local memory limiter, or its
//!   layer's failure policy, fail open or closed). Every failed call is
//!   counted ([`RedisBackend::failures`]) and passed to the
//!   [`on_failure`](RedisBackendBuilder::on_failure) metrics hook.
//!
//! ```
//! use std::time::Duration;
//! use tower_edge::rate_limit::redis::RedisStore;
//! use tower_edge::redis::RedisBackend;
//!
//! # fn main() -> Result<(), tower_edge::ConfigError> {
//! let backend = RedisBackend::builder("redis://127.0.0.1:6379") // does not connect yet
//!     .timeout(Duration::from_millis(20))
//!     .build()?;
//! // Every Redis-backed store of the process on the same connection.
//! let store = RedisStore::with_backend(backend.clone()).key_prefix("my-api:rl").build()?;
//! assert_eq!(backend.failures(), 0);
//! # let _ = store; Ok(()) }
//! ```

mod backend;
pub(crate) mod breaker;
mod builder;
mod failure;
pub(crate) mod key;
mod script;
#[cfg(feature = "response-cache")]
pub(crate) mod subscribe;

pub use backend::{Health, RedisBackend};
pub use builder::RedisBackendBuilder;
pub use failure::{FailureKind, RedisFailure};
pub use script::{Script, ScriptCall};

use std::time::Duration;

/// Default per-call timeout: well above a healthy Redis's p99 under load,
/// short enough that a stalled Redis costs a request at most 20 ms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(20);
/// Default pause after the backend trips before calls try Redis again.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Default time calls must keep failing, without a success, before the
/// backend trips (see [`RedisBackendBuilder::trip_after`]).
pub const DEFAULT_TRIP_AFTER: Duration = Duration::from_millis(100);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// `call` within `timeout`, counted from its first poll (when the command
/// is handed to the connection). When the timer fires, the call gets one
/// more turn of the scheduler: a reply the connection received while this
/// task waited for a CPU is not a Redis timeout.
pub(crate) async fn within<F: Future>(timeout: Duration, call: F) -> Result<F::Output, ()> {
    let mut call = std::pin::pin!(call);
    if let Ok(output) = tokio::time::timeout(timeout, call.as_mut()).await {
        return Ok(output);
    }
    tokio::task::yield_now().await;
    // A zero timeout polls `call` once more before it gives up.
    tokio::time::timeout(Duration::ZERO, call)
        .await
        .map_err(|_| ())
}
