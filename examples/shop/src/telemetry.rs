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
//! Traces: the OTel SDK's tracer provider (W3C trace context in and out),
//! exporting over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; without
//! it spans are still made, so every log line carries its trace ID.
//!
//! Logs: the examples' `common::logging` (shared with them): text for a
//! person, JSON lines with `LOG_FORMAT=json` (correlation ID, trace and
//! span IDs, route, subject), and over OTLP with the endpoint set.

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

/// What [`init_logging`] installed: flushes spans and logs when dropped.
#[must_use = "dropping it stops exporting spans and logs"]
pub struct Telemetry {
    tracer: opentelemetry_sdk::trace::SdkTracerProvider,
    _logging: crate::common::logging::Logging,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(err) = self.tracer.shutdown() {
            eprintln!("tracer provider shutdown: {err}");
        }
    }
}

/// Installs the tracer provider and the W3C trace-context propagator,
/// then the log subscriber (`RUST_LOG` filters, default `info`;
/// `LOG_FORMAT=json` for one JSON object per line; OTLP with
/// `OTEL_EXPORTER_OTLP_ENDPOINT`).
///
/// # Errors
///
/// When an OTLP exporter cannot be built or a subscriber is installed
/// already.
pub fn init_logging() -> Result<Telemetry, Box<dyn std::error::Error + Send + Sync>> {
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    let resource = Resource::builder()
        .with_service_name("tower-edge-shop")
        .build();
    let mut tracer = SdkTracerProvider::builder().with_resource(resource);
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        tracer = tracer.with_batch_exporter(spans);
    }
    let tracer = tracer.build();
    opentelemetry::global::set_tracer_provider(tracer.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let logging = crate::common::logging::init()?;
    Ok(Telemetry {
        tracer,
        _logging: logging,
    })
}
