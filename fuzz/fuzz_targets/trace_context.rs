//! traceparent / tracestate / baggage through the public OtelLayer with the
//! W3C propagator: never a panic; an incoming trace is continued only when
//! the single traceparent line matches the grammar.
#![no_main]

use std::convert::Infallible;
use std::sync::OnceLock;

use http::{HeaderName, Request, Response};
use libfuzzer_sys::fuzz_target;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower::{Layer, ServiceExt};
use tower_edge::otel::OtelLayer;

fn layer() -> &'static OtelLayer {
    static LAYER: OnceLock<(SdkTracerProvider, OtelLayer)> = OnceLock::new();
    &LAYER
        .get_or_init(|| {
            let provider = SdkTracerProvider::builder().build();
            let layer = OtelLayer::builder()
                .tracer_provider(&provider)
                .propagator(TraceContextPropagator::new())
                .build()
                .unwrap();
            (provider, layer)
        })
        .1
}

/// W3C Trace Context §3.2.2.
fn valid_traceparent(value: &[u8]) -> bool {
    // Header text only (what `HeaderValue::to_str` accepts): a value with
    // bytes past ASCII or control characters is not a traceparent.
    if !value
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return false;
    }
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let fields: Vec<&str> = text.split('-').collect();
    fields.len() >= 4
        && hex(fields[0], 2)
        && fields[0] != "ff"
        && hex(fields[1], 32)
        && fields[1].bytes().any(|b| b != b'0')
        && hex(fields[2], 16)
        && fields[2].bytes().any(|b| b != b'0')
        && hex(fields[3], 2)
        && (fields.len() == 4 || fields[0] != "00")
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let lines = fuzz_support::header_lines(rest);
    let names = [
        HeaderName::from_static("traceparent"),
        HeaderName::from_static("tracestate"),
        HeaderName::from_static("baggage"),
    ];
    let mut request = Request::new(());
    for (i, line) in lines.iter().enumerate() {
        // Bits of the selector pick the header of the first lines.
        let pick = if i < 4 {
            usize::from((selector >> (2 * i)) & 3) % 3
        } else {
            i % 3
        };
        request
            .headers_mut()
            .append(names[pick].clone(), line.clone());
    }
    let traceparents: Vec<_> = request
        .headers()
        .get_all("traceparent")
        .iter()
        .cloned()
        .collect();
    let service = layer().layer(tower::service_fn(|_req: Request<()>| async {
        let cx = opentelemetry::Context::current();
        let trace_id = cx.span().span_context().trace_id().to_string();
        let mut response = Response::new(());
        response.extensions_mut().insert(trace_id);
        Ok::<_, Infallible>(response)
    }));
    let response = fuzz_support::block_on(service.oneshot(request)).unwrap();
    let trace_id = response.extensions().get::<String>().unwrap();
    let continued = traceparents.len() == 1
        && traceparents[0].as_bytes().get(3..35) == Some(trace_id.as_bytes());
    let valid = traceparents.len() == 1 && valid_traceparent(traceparents[0].as_bytes());
    assert_eq!(continued, valid, "{traceparents:?} -> {trace_id}");
});
