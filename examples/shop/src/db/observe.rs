//! The pools' observed instruments (`db.client.connection.count`, `.max`,
//! `.pending_requests`; see [`super::metrics`]), read at each scrape.

use opentelemetry::KeyValue;

use super::metrics::{POOL_NAME, STATE, meter, to_i64};
use super::pool::DbPool;

/// Registers the observed instruments of `pools` on the global meter
/// provider.
pub fn register(pools: &[DbPool]) {
    let meter = meter();
    let counted = pools.to_vec();
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
    let sized = pools.to_vec();
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
    let waiting = pools.to_vec();
    meter
        .i64_observable_up_down_counter("db.client.connection.pending_requests")
        .with_unit("{request}")
        .with_description("The number of current pending requests for an open connection")
        .with_callback(move |observer| {
            for pool in &waiting {
                observer.observe(
                    to_i64(pool.pending()),
                    &[KeyValue::new(POOL_NAME, pool.name().as_str())],
                );
            }
        })
        .build();
}
