//! Logging for the examples: JSON lines or text on stdout, and, with
//! feature `otel` and `OTEL_EXPORTER_OTLP_ENDPOINT`, the same events as
//! OpenTelemetry log records over OTLP.
//!
//! Self-contained (it needs `tower-edge`, `tracing`, `tracing-subscriber`,
//! `serde_json`, and with feature `otel` the `opentelemetry` crates): the
//! shop example, another package, includes this file with `#[path]`.
//!
//! `LOG_FORMAT=json` writes one JSON object per line:
//!
//! | key | value |
//! |---|---|
//! | `timestamp` | RFC 3339, UTC, microseconds |
//! | `level` | `ERROR` ... `TRACE` |
//! | `target` | the module (or `tower_edge::access_log`) |
//! | `message` | the event's message |
//! | `correlation_id` | the request's ID (the correlation layer's `request` span) |
//! | `trace_id`, `span_id` | the current OpenTelemetry span (the request's server span), feature `otel` |
//! | `route` | the route template, when known |
//! | `subject` | the authenticated subject, when there is one |
//! | *the event's fields* | under their own names (`http.response.status_code`...) |
//!
//! Anything else (`LOG_FORMAT` unset or `text`) is tracing-subscriber's
//! human format, for a person at a terminal: a log shipper should be told
//! `LOG_FORMAT=json` explicitly, not guess from a terminal. `RUST_LOG`
//! filters (default `info`).
//!
//! Untrusted text (a token's subject, a header echoed in a message) is
//! written by `serde_json`, which escapes every control character: a value
//! with a newline stays on its line.

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The span fields copied onto every line logged under the span.
const SPAN_FIELDS: [&str; 3] = ["correlation_id", "route", "subject"];

/// The output format, from `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// tracing-subscriber's format for people.
    Text,
}

impl Format {
    /// `LOG_FORMAT=json` (any case) is [`Format::Json`]; anything else text.
    pub fn from_env() -> Self {
        match std::env::var("LOG_FORMAT") {
            Ok(value) if value.trim().eq_ignore_ascii_case("json") => Self::Json,
            _ => Self::Text,
        }
    }
}

/// What [`init`] installed; flushes the OTLP log exporter when dropped.
#[must_use = "dropping it stops exporting logs over OTLP"]
pub struct Logging {
    #[cfg(feature = "otel")]
    logs: Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
}

impl Drop for Logging {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.logs.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("logger provider shutdown: {err}");
        }
    }
}

/// Installs the process's subscriber: [`Format::from_env`] on stdout,
/// `RUST_LOG` (default `info`), and with feature `otel` and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` a bridge exporting every event as an
/// OpenTelemetry log record over OTLP/HTTP, with the trace context current
/// when it was logged.
pub fn init() -> Result<Logging, Box<dyn std::error::Error + Send + Sync>> {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stdout = match Format::from_env() {
        Format::Json => json_layer(std::io::stdout).boxed(),
        Format::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
    };
    let registry = Registry::default()
        .with(SpanFieldsLayer)
        .with(stdout.with_filter(filter()));
    #[cfg(feature = "otel")]
    {
        let (bridge, logs) = otlp_bridge()?;
        registry.with(bridge).try_init()?;
        Ok(Logging { logs })
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.try_init()?;
        Ok(Logging {})
    }
}

/// A subscriber writing JSON lines to `writer`, filtered by `filter`
/// (`RUST_LOG` syntax): for tests, which read the lines back.
pub fn json_subscriber<W>(
    writer: W,
    filter: &str,
) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    Registry::default()
        .with(SpanFieldsLayer)
        .with(json_layer(writer).with_filter(EnvFilter::new(filter)))
}

/// The stdout layer of [`Format::Json`].
fn json_layer<S, W>(writer: W) -> impl Layer<S> + Send + Sync + 'static
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .event_format(JsonLines)
        .with_writer(writer)
}

/// Feature `otel`: the OTLP log bridge ([`otel_bridge`]), when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
#[cfg(feature = "otel")]
#[allow(clippy::type_complexity)]
fn otlp_bridge<S>() -> Result<
    (
        Option<Box<dyn Layer<S> + Send + Sync>>,
        Option<opentelemetry_sdk::logs::SdkLoggerProvider>,
    ),
    Box<dyn std::error::Error + Send + Sync>,
>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        return Ok((None, None));
    }
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .build()?;
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_batch_exporter(exporter)
        .build();
    let bridge = otel_bridge(&provider)?.boxed();
    Ok((Some(bridge), Some(provider)))
}

/// Feature `otel`: a layer that hands every event (at `RUST_LOG`'s levels,
/// default `info`) to `provider` as an OpenTelemetry log record, whose
/// trace context is the span current when the event was logged (the
/// request's server span). The crates that export (hyper, h2, reqwest,
/// tonic, opentelemetry) are kept out, so exporting a record never logs a
/// record to export.
#[cfg(feature = "otel")]
pub fn otel_bridge<S>(
    provider: &opentelemetry_sdk::logs::SdkLoggerProvider,
) -> Result<impl Layer<S> + Send + Sync + 'static, Box<dyn std::error::Error + Send + Sync>>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for exporter_crate in [
        "hyper",
        "h2",
        "reqwest",
        "tonic",
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry_otlp",
    ] {
        filter = filter.add_directive(format!("{exporter_crate}=off").parse()?);
    }
    Ok(
        opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(provider)
            .with_filter(filter),
    )
}

/// The selected fields of a span ([`SPAN_FIELDS`]), kept in its extensions
/// for [`JsonLines`], updated when a layer records one later (the route,
/// the subject).
#[derive(Default)]
struct SpanFields(BTreeMap<&'static str, String>);

struct SpanFieldsLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanFieldsLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut fields);
        if !fields.0.is_empty() {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(fields) => values.record(fields),
            None => {
                let mut fields = SpanFields::default();
                values.record(&mut fields);
                if !fields.0.is_empty() {
                    extensions.insert(fields);
                }
            }
        }
    }
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(name) = SPAN_FIELDS.iter().find(|name| **name == field.name()) {
            self.0.insert(name, value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(name) = SPAN_FIELDS.iter().find(|name| **name == field.name()) {
            self.0.insert(name, format!("{value:?}"));
        }
    }
}

/// The event's fields, as JSON values.
struct EventFields(Map<String, Value>);

impl EventFields {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for EventFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `message` is `format_args!`: its Debug is the text itself.
        self.put(field, format!("{value:?}").into());
    }
}

/// [`Format::Json`]: one object per event, on one line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        line.insert("timestamp".into(), timestamp.into());
        let metadata = event.metadata();
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());

        // Outermost span first, so an inner span's value wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (name, value) in &fields.0 {
                        line.insert((*name).into(), value.clone().into());
                    }
                }
            }
        }
        if !line.contains_key("correlation_id")
            && let Some(id) = tower_edge::correlation::CorrelationId::current()
        {
            line.insert("correlation_id".into(), id.as_str().into());
        }
        #[cfg(feature = "otel")]
        {
            use opentelemetry::trace::TraceContextExt;
            let cx = opentelemetry::Context::current();
            let span = cx.span();
            let context = span.span_context();
            if context.is_valid() {
                line.insert("trace_id".into(), context.trace_id().to_string().into());
                line.insert("span_id".into(), context.span_id().to_string().into());
            }
        }

        // The event's own fields last: they win (the access log names the
        // server span explicitly, even when logged after it ended).
        let mut fields = EventFields(Map::new());
        event.record(&mut fields);
        for (name, value) in fields.0 {
            line.insert(name, value);
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}
