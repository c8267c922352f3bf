//! OpenTelemetry instruments of a response cache (features
//! `response-cache` and `otel`), read from its counters when the meter
//! provider collects: nothing is added to a request's path.

use std::sync::{Arc, Weak};

use opentelemetry::metrics::MeterProvider;
use opentelemetry::{InstrumentationScope, KeyValue};

use super::engine::{CacheStats, Engine};
use super::handle::ResponseCacheHandle;

/// Attribute of `tower_edge.response_cache.requests`: how the cache
/// answered (`hit`, `miss`, `stale`, `collapsed`, `bypassed`).
pub const RESPONSE_CACHE_RESULT: &str = "tower_edge.response_cache.result";

impl ResponseCacheHandle {
    /// Registers the cache's instruments with `provider`:
    ///
    /// | instrument | kind | unit | attributes | value |
    /// |---|---|---|---|---|
    /// | `tower_edge.response_cache.requests` | counter | `{request}` | `tower_edge.response_cache.result`: `hit` (fresh, 304s included), `miss` (forwarded to the handler), `stale` (`stale-while-revalidate`, `stale-if-error`), `collapsed` (waited for another request's fill), `bypassed` (Redis failed) | requests by how the cache answered |
    /// | `tower_edge.response_cache.stored` | counter | `{entry}` | none | responses stored |
    /// | `tower_edge.response_cache.evicted` | counter | `{entry}` | none | entries evicted to keep the memory tier within its bytes |
    /// | `tower_edge.response_cache.invalidated` | counter | `{entry}` | none | entries removed by unsafe methods, groups and purges |
    /// | `tower_edge.response_cache.memory.usage` | gauge | `By` | none | bytes the memory tier holds |
    /// | `tower_edge.response_cache.memory.entries` | gauge | `{entry}` | none | entries the memory tier holds |
    ///
    /// The hit ratio is `hit / (hit + miss + stale + collapsed)`. The
    /// instruments hold the cache weakly: they stop reporting once every
    /// clone of the layer, its services and handles is dropped.
    ///
    /// ```
    /// use tower_edge::response_cache::ResponseCacheLayer;
    ///
    /// let meter_provider = opentelemetry::global::meter_provider();
    /// # let _runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # let _entered = _runtime.enter();
    /// let cache = ResponseCacheLayer::new();
    /// cache.handle().register_metrics(meter_provider.as_ref());
    /// ```
    pub fn register_metrics<P: MeterProvider + ?Sized>(&self, provider: &P) {
        let scope = InstrumentationScope::builder("tower-edge")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let meter = provider.meter_with_scope(scope);
        let engine = Arc::downgrade(&self.config.engine);
        let stats = move |engine: &Weak<Engine>| engine.upgrade().map(|e| e.stats());

        let weak = Weak::clone(&engine);
        meter
            .u64_observable_counter("tower_edge.response_cache.requests")
            .with_unit("{request}")
            .with_description("Requests through the response cache, by how it answered.")
            .with_callback(move |observer| {
                if let Some(s) = stats(&weak) {
                    for (result, n) in by_result(&s) {
                        observer.observe(n, &[KeyValue::new(RESPONSE_CACHE_RESULT, result)]);
                    }
                }
            })
            .build();
        let counters: [EntryCounter; 3] = [
            (
                "tower_edge.response_cache.stored",
                "Responses stored.",
                |s| s.stored,
            ),
            (
                "tower_edge.response_cache.evicted",
                "Entries evicted to keep the memory tier within its bytes.",
                |s| s.evicted,
            ),
            (
                "tower_edge.response_cache.invalidated",
                "Entries removed by unsafe methods, groups and purges.",
                |s| s.invalidated,
            ),
        ];
        for (name, description, read) in counters {
            let weak = Weak::clone(&engine);
            meter
                .u64_observable_counter(name)
                .with_unit("{entry}")
                .with_description(description)
                .with_callback(move |observer| {
                    if let Some(s) = stats(&weak) {
                        observer.observe(read(&s), &[]);
                    }
                })
                .build();
        }
        let weak = Weak::clone(&engine);
        meter
            .u64_observable_gauge("tower_edge.response_cache.memory.usage")
            .with_unit("By")
            .with_description("Bytes the response cache's memory tier holds.")
            .with_callback(move |observer| {
                if let Some(s) = stats(&weak) {
                    observer.observe(s.bytes, &[]);
                }
            })
            .build();
        meter
            .u64_observable_gauge("tower_edge.response_cache.memory.entries")
            .with_unit("{entry}")
            .with_description("Entries the response cache's memory tier holds.")
            .with_callback(move |observer| {
                if let Some(s) = stats(&engine) {
                    observer.observe(s.entries, &[]);
                }
            })
            .build();
    }
}

/// An entry counter: its name, description and where its value is read.
type EntryCounter = (&'static str, &'static str, fn(&CacheStats) -> u64);

/// The request counters by result, in the order of the table above.
fn by_result(stats: &CacheStats) -> [(&'static str, u64); 5] {
    [
        ("hit", stats.hits),
        ("miss", stats.misses),
        ("stale", stats.stale_served),
        ("collapsed", stats.collapsed),
        ("bypassed", stats.redis_bypassed),
    ]
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use tower::{Layer, ServiceExt};

    use super::*;
    use crate::response_cache::ResponseCacheLayer;

    fn points(metrics: &[ResourceMetrics], name: &str) -> Vec<(Vec<KeyValue>, u64)> {
        let metric = metrics
            .iter()
            .flat_map(|r| r.scope_metrics())
            .flat_map(|s| s.metrics())
            .filter(|m| m.name() == name)
            .last()
            .unwrap_or_else(|| panic!("{name} not exported"));
        match metric.data() {
            AggregatedMetrics::U64(MetricData::Sum(sum)) => sum
                .data_points()
                .map(|p| (p.attributes().cloned().collect(), p.value()))
                .collect(),
            AggregatedMetrics::U64(MetricData::Gauge(gauge)) => gauge
                .data_points()
                .map(|p| (p.attributes().cloned().collect(), p.value()))
                .collect(),
            other => panic!("{name}: {other:?}"),
        }
    }

    fn result(points: &[(Vec<KeyValue>, u64)], name: &str) -> u64 {
        points
            .iter()
            .find(|(attrs, _)| {
                attrs
                    .iter()
                    .any(|kv| kv.key.as_str() == RESPONSE_CACHE_RESULT && kv.value.as_str() == name)
            })
            .map_or(0, |(_, n)| *n)
    }

    // RFC 9211 §2.1 (`hit`) and §2.2 (`fwd=miss`): a miss that stores, then
    // two hits, read back from the exported instruments.
    #[tokio::test]
    async fn hits_misses_and_stores_are_exported() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let cache = ResponseCacheLayer::new();
        cache.handle().register_metrics(&provider);
        let service = cache.layer(tower::service_fn(|_r: http::Request<()>| async {
            let mut response = http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"product"),
            ));
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("public, max-age=60"),
            );
            Ok::<_, std::convert::Infallible>(response)
        }));
        for _ in 0..3 {
            let request = http::Request::get("/products/1").body(()).unwrap();
            let response = service.clone().oneshot(request).await.unwrap();
            let _ = http_body_util::BodyExt::collect(response.into_body()).await;
        }
        provider.force_flush().unwrap();
        let exported = exporter.get_finished_metrics().unwrap();
        let requests = points(&exported, "tower_edge.response_cache.requests");
        assert_eq!(
            (result(&requests, "hit"), result(&requests, "miss")),
            (2, 1),
            "{requests:?}"
        );
        assert_eq!(
            points(&exported, "tower_edge.response_cache.stored")[0].1,
            1
        );
        assert_eq!(
            points(&exported, "tower_edge.response_cache.memory.entries")[0].1,
            1
        );
        assert!(points(&exported, "tower_edge.response_cache.memory.usage")[0].1 > 0);
        let _ = provider.meter("unused");
    }
}
