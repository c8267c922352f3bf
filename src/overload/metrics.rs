//! OpenTelemetry gauges of an overload layer (features `overload` and
//! `otel`): what is in flight and the current limit, read when the meter
//! provider collects. Shed requests are counted by the `OtelLayer` from
//! their decision marker (`tower_edge.overload.shed`).

use std::sync::{Arc, Weak};

use opentelemetry::metrics::{AsyncInstrument, MeterProvider};
use opentelemetry::{InstrumentationScope, KeyValue};

use super::{OverloadLayer, Shared};
use crate::otel::OVERLOAD_PARTITION;

impl OverloadLayer {
    /// Registers the layer's gauges with `provider`:
    ///
    /// | instrument | unit | attributes | value |
    /// |---|---|---|---|
    /// | `tower_edge.overload.in_flight` | `{request}` | `tower_edge.overload.partition` when the layer has partitions (one point each, `other` included) | requests holding a slot of the global limit |
    /// | `tower_edge.overload.limit` | `{request}` | none | the global limit now (adaptive or fixed) |
    ///
    /// The gauges hold the layer weakly: they stop reporting once every
    /// clone of the layer and its services is dropped. A layer without a
    /// global limit reports nothing.
    pub fn register_gauges<P: MeterProvider + ?Sized>(&self, provider: &P) {
        let scope = InstrumentationScope::builder("tower-edge")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let meter = provider.meter_with_scope(scope);
        let weak = Arc::downgrade(&self.shared);
        let in_flight = Weak::clone(&weak);
        meter
            .u64_observable_gauge("tower_edge.overload.in_flight")
            .with_unit("{request}")
            .with_description("Requests in flight under the overload layer's global limit.")
            .with_callback(move |observer| observe_in_flight(&in_flight, observer))
            .build();
        meter
            .u64_observable_gauge("tower_edge.overload.limit")
            .with_unit("{request}")
            .with_description("The overload layer's global in-flight limit.")
            .with_callback(move |observer| {
                if let Some(stats) = weak.upgrade().map(|shared| stats_of(&shared))
                    && let Some(limit) = stats.limit
                {
                    observer.observe(limit as u64, &[]);
                }
            })
            .build();
    }
}

fn stats_of(shared: &Arc<Shared>) -> super::OverloadStats {
    OverloadLayer {
        shared: Arc::clone(shared),
    }
    .stats()
}

fn observe_in_flight(shared: &Weak<Shared>, observer: &dyn AsyncInstrument<u64>) {
    let Some(shared) = shared.upgrade() else {
        return;
    };
    let stats = stats_of(&shared);
    if stats.limit.is_none() {
        return;
    }
    if stats.partitions.is_empty() {
        observer.observe(stats.in_flight as u64, &[]);
    }
    for partition in stats.partitions {
        observer.observe(
            partition.in_flight as u64,
            &[KeyValue::new(
                OVERLOAD_PARTITION,
                partition.name.to_string(),
            )],
        );
    }
}
