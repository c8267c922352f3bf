//! The pools' metrics, named as the OpenTelemetry database-client semantic
//! conventions name them (semconv "Database client connection metrics"):
//!
//! | instrument | kind | unit | attributes |
//! |---|---|---|---|
//! | `db.client.connection.count` | up-down counter (observed) | `{connection}` | `db.client.connection.pool.name`, `db.client.connection.state` (`idle` / `used`) |
//! | `db.client.connection.max` | up-down counter (observed) | `{connection}` | pool name |
//! | `db.client.connection.pending_requests` | up-down counter (observed) | `{request}` | pool name |
//! | `db.client.connection.wait_time` | histogram | `s` | pool name |
//! | `db.client.connection.timeouts` | counter | `{timeout}` | pool name |
//!
//! They go to the global meter provider (the Prometheus exporter of
//! [`crate::telemetry`]), with the request metrics of tower-edge's layers.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

/// The attribute naming the pool.
pub const POOL_NAME: &str = "db.client.connection.pool.name";
/// The attribute saying whether a connection is `idle` or `used`.
pub const STATE: &str = "db.client.connection.state";

/// The instruments a pool records into while it works (the observed ones
/// are read from the pools by [`Db::register_metrics`](super::Db::register_metrics)).
#[derive(Clone, Debug)]
pub struct PoolInstruments {
    wait_time: Histogram<f64>,
    timeouts: Counter<u64>,
}

/// The shop's meter.
pub fn meter() -> Meter {
    opentelemetry::global::meter("tower-edge-shop")
}

impl PoolInstruments {
    /// The instruments, on the global meter provider.
    pub fn global() -> Self {
        Self::new(&meter())
    }

    /// The instruments, on `meter`.
    pub fn new(meter: &Meter) -> Self {
        Self {
            wait_time: meter
                .f64_histogram("db.client.connection.wait_time")
                .with_unit("s")
                .with_description("The time it took to obtain an open connection from the pool")
                .with_boundaries(vec![
                    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
                ])
                .build(),
            timeouts: meter
                .u64_counter("db.client.connection.timeouts")
                .with_unit("{timeout}")
                .with_description(
                    "The number of connection timeouts that have occurred trying to obtain a \
                     connection from the pool",
                )
                .build(),
        }
    }

    pub(super) fn wait_time(&self, pool: &'static str, seconds: f64) {
        self.wait_time
            .record(seconds, &[KeyValue::new(POOL_NAME, pool)]);
    }

    pub(super) fn timeout(&self, pool: &'static str) {
        self.timeouts.add(1, &[KeyValue::new(POOL_NAME, pool)]);
    }
}

/// A count as an OTel integer.
pub(super) fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
