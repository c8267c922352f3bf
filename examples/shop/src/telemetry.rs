//! Metrics and logs.
//!
//! Metrics: the OpenTelemetry SDK with its Prometheus exporter, chosen
//! over `prometheus-client` because tower-edge's layers already record
//! OTel instruments (`http.server.request.duration`, `tower_edge.*`)
//! through the global meter provider: one pipeline renders them and the
//! pool metrics, with the OTel names turned into Prometheus ones by the
//! exporter (dots to underscores, unit suffixes, `_total` on counters).
//! The same provider could as well push OTLP.
//!
//! Logs: `tracing-subscriber`'s text format, JSON with `LOG_FORMAT=json`.

use std::sync::OnceLock;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

/// The installed provider and the registry the exporter fills.
static METRICS: OnceLock<(SdkMeterProvider, prometheus::Registry)> = OnceLock::new();

/// Installs the global meter provider with a Prometheus exporter (once per
/// process) and returns the registry `/metrics` renders.
///
/// # Panics
///
/// If the exporter cannot be built (it has no fallible configuration
/// here).
pub fn install_metrics() -> prometheus::Registry {
    let (_, registry) = METRICS.get_or_init(|| {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .expect("the Prometheus exporter builds");
        let provider = SdkMeterProvider::builder()
            .with_reader(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name("tower-edge-shop")
                    .build(),
            )
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        (provider, registry)
    });
    registry.clone()
}

/// The Prometheus text exposition of `registry`.
pub fn render(registry: &prometheus::Registry) -> String {
    let mut buffer = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::error!(error = %err, "metrics encoding failed");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Installs the log subscriber: `RUST_LOG` filters (default `info`),
/// `LOG_FORMAT=json` for one JSON object per line.
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        builder.init();
    }
}
