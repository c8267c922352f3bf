//! OpenTelemetry for every request: W3C trace-context propagation, an HTTP
//! (or gRPC) server span and the HTTP server metrics, per the semantic
//! conventions; the API crate only, so you choose the SDK and exporter.
//!
//! TODO module docs

mod layer;
mod metrics;
mod propagation;
mod route;
mod semconv;

pub use layer::{IncomingTrace, OtelLayer, OtelLayerBuilder, OtelService, ResponseFuture};
pub use metrics::{DURATION_BUCKETS, EdgeMetrics, RATE_LIMIT_POLICY};
pub(crate) use propagation::Propagation;
pub use route::{MakeRoute, RequestHead, Route};
pub use semconv::CORRELATION_ID;

#[cfg(test)]
mod tests;
