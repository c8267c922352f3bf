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

use super::{Db, PoolName};

/// The attribute naming the pool.
pub const POOL_NAME: &str = "db.client.connection.pool.name";
/// The attribute saying whether a connection is `idle` or `used`.
pub const STATE: &str = "db.client.connection.state";

/// The instruments a pool records into while it works (the observed ones
/// are read from the pools by [`register_observers`]).
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

    pub(super) fn wait_time(&self, pool: PoolName, seconds: f64) {
        self.wait_time
            .record(seconds, &[KeyValue::new(POOL_NAME, pool.as_str())]);
    }

    pub(super) fn timeout(&self, pool: PoolName) {
        self.timeouts
            .add(1, &[KeyValue::new(POOL_NAME, pool.as_str())]);
    }
}

/// Registers the observed instruments (`count`, `max`,
/// `pending_requests`) of `db`'s pools on the global meter provider; they
/// are read at each scrape.
pub fn register_observers(db: &Db) {
    let meter = meter();
    let pools: Vec<_> = db.pools().cloned().collect();
    let counted = pools.clone();
    meter
        .i64_observable_up_down_counter("db.client.connection.count")
        .with_unit("{connection}")
        .with_description(
            "The number of connections that are currently in state described by the state attribute",
        )
        .with_callback(move |observer| {
            for pool in &counted {
                let (idle, used) = pool.connections();
                let name = KeyValue::new(POOL_NAME, pool.name().as_str());
                let idle_attrs = [name.clone(), KeyValue::new(STATE, "idle")];
                observer.observe(to_i64(idle), &idle_attrs);
                observer.observe(to_i64(used), &[name, KeyValue::new(STATE, "used")]);
            }
        })
        .build();
    let sized = pools.clone();
    meter
        .i64_observable_up_down_counter("db.client.connection.max")
        .with_unit("{connection}")
        .with_description("The maximum number of open connections allowed")
        .with_callback(move |observer| {
            for pool in &sized {
                let max = pool.settings().max_connections;
                observer.observe(
                    to_i64(max),
                    &[KeyValue::new(POOL_NAME, pool.name().as_str())],
                );
            }
        })
        .build();
    meter
        .i64_observable_up_down_counter("db.client.connection.pending_requests")
        .with_unit("{request}")
        .with_description("The number of current pending requests for an open connection")
        .with_callback(move |observer| {
            for pool in &pools {
                observer.observe(
                    to_i64(pool.pending()),
                    &[KeyValue::new(POOL_NAME, pool.name().as_str())],
                );
            }
        })
        .build();
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
