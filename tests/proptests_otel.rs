//! Property tests of the W3C trace-context parsing through the public
//! `OtelLayer`: the handler sees the incoming trace id iff `traceparent`
//! matches the grammar, and the incoming `tracestate` iff it does too.
//!
//! W3C Trace Context §3.2: traceparent `00-<32 hex>-<16 hex>-<2 hex>`,
//! lowercase; all-zero ids and version ff invalid → new trace. §3.3:
//! tracestate ≤ 32 members; a bad tracestate never breaks traceparent.

use std::convert::Infallible;

use http::{HeaderValue, Request, Response};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use proptest::prelude::*;
use tower::{Service, ServiceExt};
use tower_edge::otel::OtelLayer;
use tower_layer::Layer;

/// W3C Trace Context §3.2.2, written independently of the crate.
fn traceparent_ok(value: &[u8]) -> bool {
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
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let fields: Vec<&str> = text.split('-').collect();
    if fields.len() < 4 {
        return false;
    }
    let (version, trace, span, flags) = (fields[0], fields[1], fields[2], fields[3]);
    hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(span, 16)
        && span.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (fields.len() == 4 || version != "00")
}

/// Sends the headers; returns (trace id, tracestate) the handler saw.
fn send(traceparent: Option<HeaderValue>, tracestate: &[HeaderValue]) -> (String, String) {
    let provider = SdkTracerProvider::builder().build();
    let layer = OtelLayer::builder()
        .tracer_provider(&provider)
        .propagator(TraceContextPropagator::new())
        .build()
        .unwrap();
    let mut service = layer.layer(tower::service_fn(|_req: Request<()>| async {
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let context = span.span_context();
        let mut response = Response::new(());
        response.extensions_mut().insert((
            context.trace_id().to_string(),
            context.trace_state().header(),
        ));
        Ok::<_, Infallible>(response)
    }));
    let mut request = Request::new(());
    if let Some(value) = traceparent {
        request.headers_mut().insert("traceparent", value);
    }
    for value in tracestate {
        request.headers_mut().append("tracestate", value.clone());
    }
    let response = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async { service.ready().await.unwrap().call(request).await.unwrap() });
    response
        .extensions()
        .get::<(String, String)>()
        .cloned()
        .unwrap()
}

fn hex(n: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(b"0123456789abcdef".to_vec()),
            1 => prop::sample::select(b"ABCDEFgxz-+ 0".to_vec()),
        ],
        n.saturating_sub(1)..=n + 1,
    )
    .prop_map(|b| String::from_utf8(b).unwrap())
}

fn traceparent() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Near the grammar: each field may be off by a character or a case.
        (
            prop_oneof![hex(2), Just("00".to_owned()), Just("ff".to_owned())],
            prop_oneof![hex(32), Just("0".repeat(32))],
            prop_oneof![hex(16), Just("0".repeat(16))],
            hex(2),
            prop_oneof![
                Just(String::new()),
                Just("-".to_owned()),
                Just("-x".to_owned()),
                Just("x".to_owned()),
                // Found by fuzzing: a later version's extra fields with
                // bytes past ASCII must not continue the trace.
                Just("-caf\u{e9}".to_owned()),
                Just("-a\u{7f}".to_owned())
            ],
            prop::sample::select(vec!["-", "_", "--"]),
        )
            .prop_map(|(v, t, s, f, tail, sep)| {
                format!("{v}-{t}{sep}{s}-{f}{tail}").into_bytes()
            }),
        // Strictly valid, any version.
        (
            "[0-9a-e][0-9a-f]",
            "[0-9a-f]{31}[1-9a-f]",
            "[1-9a-f][0-9a-f]{15}",
            "[0-9a-f]{2}",
        )
            .prop_map(|(v, t, s, f)| format!("{v}-{t}-{s}-{f}").into_bytes()),
        // Anything.
        prop::collection::vec(any::<u8>(), 0..70),
    ]
}

/// A tracestate list member per W3C Trace Context §3.3.1.3.
fn member() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            "[a-z][a-z0-9_*/-]{0,8}",
            "[a-z0-9][a-z0-9_*/-]{0,5}@[a-z][a-z0-9_*/-]{0,5}",
        ],
        "[!-+--<>-~]([ !-+--<>-~]{0,10}[!-+--<>-~])?",
    )
        .prop_map(|(k, v)| format!("{k}={v}"))
}

fn bad_member() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "Upper=1",
        "1=x",
        "k=",
        "=v",
        "novalue",
        "k=a=b",
        "k=caf\u{e9}",
        "@s=1",
        "t@=1",
    ])
    .prop_map(str::to_owned)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // A traceparent is continued iff it matches the grammar.
    #[test]
    fn traceparent_is_accepted_iff_it_matches_the_grammar(value in traceparent()) {
        let Ok(header) = HeaderValue::from_bytes(&value) else {
            return Ok(());
        };
        let (trace_id, _) = send(Some(header), &[]);
        let incoming = std::str::from_utf8(&value).ok().and_then(|t| t.get(3..35));
        let continued = incoming == Some(trace_id.as_str());
        prop_assert_eq!(continued, traceparent_ok(&value), "{:?} gave trace {}", String::from_utf8_lossy(&value), trace_id);
    }

    // A valid tracestate (1 to 32 unique members, over one or more lines)
    // is kept; an invalid one (a bad member, 33 members, a duplicate key) is
    // dropped; the traceparent is continued either way.
    #[test]
    fn tracestate_is_kept_iff_valid_and_never_breaks_traceparent(
        members in prop::collection::vec(member(), 1..36),
        bad in prop::option::of((bad_member(), any::<prop::sample::Index>())),
        lines in 1usize..3,
    ) {
        let mut members = members;
        let has_bad = bad.is_some();
        if let Some((bad, at)) = bad {
            let at = at.index(members.len() + 1);
            members.insert(at, bad);
        }
        let keys: Vec<&str> = members.iter().map(|m| m.split('=').next().unwrap()).collect();
        let unique = keys.iter().enumerate().all(|(i, k)| !keys[..i].contains(k));
        let valid = !has_bad && members.len() <= 32 && unique;
        let per_line = members.len().div_ceil(lines);
        let values: Vec<HeaderValue> = members
            .chunks(per_line)
            .map(|chunk| HeaderValue::from_str(&chunk.join(",")).unwrap())
            .collect();
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace_id, state) = send(Some(HeaderValue::from_static(parent)), &values);
        prop_assert_eq!(trace_id.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        if valid {
            prop_assert_eq!(state, members.join(","));
        } else {
            prop_assert_eq!(state, "");
        }
    }
}

// Regression (found by the property above): a `tracestate` line that is not
// ASCII text made only that line disappear, and the other lines were kept
// as if the list were valid. The whole list is invalid and dropped.
#[test]
fn a_non_ascii_tracestate_line_drops_the_whole_list() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let lines = [
        HeaderValue::from_bytes("k=caf\u{e9}".as_bytes()).unwrap(),
        HeaderValue::from_static("a=1"),
    ];
    let (trace_id, state) = send(Some(HeaderValue::from_static(parent)), &lines);
    assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(state, "");
    let (_, state) = send(Some(HeaderValue::from_static(parent)), &lines[1..]);
    assert_eq!(state, "a=1");
}
