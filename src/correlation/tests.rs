use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Service, ServiceBuilder, ServiceExt};

use super::*;
use crate::rejection::{Problem, Rejections};

type Body = Full<Bytes>;

/// An inner service that reports what it saw: the ID in the extensions and
/// the ID header on the request.
async fn echo_handler(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let ext = req
        .extensions()
        .get::<CorrelationId>()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let header = req
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let current = CorrelationId::current()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    Ok(Response::new(Full::from(format!(
        "{ext}|{header}|{current}"
    ))))
}

async fn call(layer: CorrelationIdLayer, req: Request<Body>) -> (Response<Body>, String) {
    let res = ServiceBuilder::new()
        .layer(layer)
        .service_fn(echo_handler)
        .oneshot(req)
        .await
        .unwrap();
    let seen = String::from_utf8(
        http_body_util::BodyExt::collect(res.body().clone())
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    (res, seen)
}

fn request_with(value: HeaderValue) -> Request<Body> {
    let mut req = Request::new(Body::default());
    req.headers_mut().insert("x-request-id", value);
    req
}

fn assert_fresh_uuid(value: &HeaderValue) -> uuid::Uuid {
    let uuid = uuid::Uuid::parse_str(value.to_str().unwrap()).expect("a UUID");
    assert_eq!(uuid.get_version_num(), 7);
    uuid
}

// Correlation IDs (the module docs' rule; no RFC defines `x-request-id`): a
// valid incoming ID is echoed, in the request extensions, and set on the
// request for the inner service.
#[tokio::test]
async fn valid_incoming_id_is_kept_everywhere() {
    let (res, seen) = call(
        CorrelationIdLayer::new(),
        request_with(HeaderValue::from_static("abc-123.x:y_z")),
    )
    .await;
    assert_eq!(res.headers()["x-request-id"], "abc-123.x:y_z");
    assert_eq!(seen, "abc-123.x:y_z|abc-123.x:y_z|abc-123.x:y_z");
}

#[tokio::test]
async fn missing_id_is_generated_as_uuid_v7() {
    let (res, seen) = call(CorrelationIdLayer::new(), Request::new(Body::default())).await;
    let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_fresh_uuid(&res.headers()["x-request-id"]);
    assert_eq!(seen, format!("{id}|{id}|{id}"));
}

// An ID outside ^[A-Za-z0-9._:-]{1,128}$ is replaced by a fresh UUID
// (RFC 9562 §5.7) and never reflected (CWE-113). Tab, 10 KB, non-ASCII,
// empty, disallowed punctuation and 129 characters are tested here; CR/LF
// cannot be represented in an `http::HeaderValue` at all (see the next
// test) and are covered on a real socket in tests/correlation_socket.rs.
#[tokio::test]
async fn invalid_incoming_ids_are_replaced_and_never_reflected() {
    let ten_kb = "a".repeat(10 * 1024);
    let too_long = "b".repeat(129);
    let cases: Vec<HeaderValue> = vec![
        HeaderValue::from_static("abc\tdef"),
        HeaderValue::from_str(&ten_kb).unwrap(),
        HeaderValue::from_str(&too_long).unwrap(),
        HeaderValue::from_bytes("idé-ü".as_bytes()).unwrap(),
        HeaderValue::from_bytes(&[0x80, 0xff, b'a']).unwrap(),
        HeaderValue::from_static(""),
        HeaderValue::from_static("a b"),
        HeaderValue::from_static("<script>alert(1)</script>"),
        HeaderValue::from_static("a;b=c"),
        HeaderValue::from_static("\"quoted\""),
    ];
    for bad in cases {
        let (res, seen) = call(CorrelationIdLayer::new(), request_with(bad.clone())).await;
        let echoed = &res.headers()["x-request-id"];
        assert_ne!(echoed, &bad);
        assert_fresh_uuid(echoed);
        assert!(
            !seen.contains(std::str::from_utf8(bad.as_bytes()).unwrap_or("\u{0}"))
                || bad.is_empty()
        );
        assert_eq!(res.headers().get_all("x-request-id").iter().count(), 1);
    }
}

#[test]
fn crlf_cannot_enter_a_header_value() {
    // RFC 9110 §5.5: CR and LF are not allowed in field values; `http`
    // refuses them, so the layer never sees them, and the default rule
    // refuses them too (tested in id.rs).
    assert!(HeaderValue::from_bytes(b"abc\r\nset-cookie: x=y").is_err());
    assert!(HeaderValue::from_bytes(b"abc\rdef").is_err());
    assert!(HeaderValue::from_bytes(b"abc\ndef").is_err());
}

#[tokio::test]
async fn exactly_128_characters_are_accepted() {
    let max = "Z".repeat(128);
    let (res, _) = call(
        CorrelationIdLayer::new(),
        request_with(HeaderValue::from_str(&max).unwrap()),
    )
    .await;
    assert_eq!(res.headers()["x-request-id"], max.as_str());
}

#[tokio::test]
async fn alternative_header_is_accepted_and_echoed_under_the_main_name() {
    let layer = CorrelationIdLayer::builder()
        .also_accept(HeaderName::from_static("x-correlation-id"))
        .build()
        .unwrap();
    let mut req = Request::new(Body::default());
    req.headers_mut()
        .insert("x-correlation-id", HeaderValue::from_static("corr-1"));
    let (res, seen) = call(layer.clone(), req).await;
    assert_eq!(res.headers()["x-request-id"], "corr-1");
    assert_eq!(seen, "corr-1|corr-1|corr-1");

    // The main header wins when both are present.
    let mut req = request_with(HeaderValue::from_static("main-1"));
    req.headers_mut()
        .insert("x-correlation-id", HeaderValue::from_static("corr-1"));
    let (res, _) = call(layer, req).await;
    assert_eq!(res.headers()["x-request-id"], "main-1");
}

#[tokio::test]
async fn custom_header_predicate_and_generator() {
    let layer = CorrelationIdLayer::builder()
        .header(HeaderName::from_static("x-trace"))
        .validate_with(|id| id.starts_with("ok-"))
        .generator(|| "generated".parse::<CorrelationId>().unwrap())
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(layer).service_fn(echo_handler);

    let mut req = Request::new(Body::default());
    req.headers_mut()
        .insert("x-trace", HeaderValue::from_static("ok-1"));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.headers()["x-trace"], "ok-1");

    let mut req = Request::new(Body::default());
    req.headers_mut()
        .insert("x-trace", HeaderValue::from_static("nope"));
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.headers()["x-trace"], "generated");

    // A custom rule never admits non-visible-ASCII values.
    let permissive = CorrelationIdLayer::builder()
        .validate_with(|_| true)
        .build()
        .unwrap();
    let (res, _) = call(permissive, request_with(HeaderValue::from_static("a\tb"))).await;
    assert_fresh_uuid(&res.headers()["x-request-id"]);
}

// Regression (review): `max_length` bounded only the default rule, so a
// custom rule admitted a 10 KB ID into every log line (CWE-779). The
// module's rule: `{1,128}`, configurable.
#[tokio::test]
async fn max_length_bounds_a_custom_rule_too() {
    let layer = CorrelationIdLayer::builder()
        .validate_with(|id| id.starts_with("ok-"))
        .build()
        .unwrap();
    let long = format!("ok-{}", "a".repeat(10_000));
    let (res, _) = call(
        layer.clone(),
        request_with(HeaderValue::from_str(&long).unwrap()),
    )
    .await;
    assert_fresh_uuid(&res.headers()["x-request-id"]);
    let at_limit = format!("ok-{}", "a".repeat(125));
    let (res, _) = call(
        layer,
        request_with(HeaderValue::from_str(&at_limit).unwrap()),
    )
    .await;
    assert_eq!(res.headers()["x-request-id"], at_limit.as_str());
    let short = CorrelationIdLayer::builder()
        .validate_with(|id| id.starts_with("ok-"))
        .max_length(4)
        .build()
        .unwrap();
    let (res, _) = call(
        short.clone(),
        request_with(HeaderValue::from_static("ok-1")),
    )
    .await;
    assert_eq!(res.headers()["x-request-id"], "ok-1");
    let (res, _) = call(short, request_with(HeaderValue::from_static("ok-12"))).await;
    assert_fresh_uuid(&res.headers()["x-request-id"]);
}

// Regression (review): the span was at INFO level, so under a `warn` filter
// it was never entered and warnings inside lost the ID. The module's
// rule: every log line inside carries it.
#[tokio::test]
async fn log_lines_carry_the_id_under_a_warn_filter() {
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let service = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .service_fn(|_req: Request<Body>| async {
            tracing::warn!("inside the handler");
            Ok::<_, Infallible>(Response::new(Body::default()))
        });
    service
        .oneshot(request_with(HeaderValue::from_static("warn-filter-id")))
        .await
        .unwrap();
    let out = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let line = out
        .lines()
        .find(|line| line.contains("inside the handler"))
        .expect("the warning is logged");
    assert!(line.contains("correlation_id=\"warn-filter-id\""), "{line}");
}

#[tokio::test]
async fn max_length_is_configurable() {
    let layer = CorrelationIdLayer::builder().max_length(4).build().unwrap();
    let (res, _) = call(
        layer.clone(),
        request_with(HeaderValue::from_static("abcd")),
    )
    .await;
    assert_eq!(res.headers()["x-request-id"], "abcd");
    let (res, _) = call(layer, request_with(HeaderValue::from_static("abcde"))).await;
    assert_fresh_uuid(&res.headers()["x-request-id"]);
}

#[test]
fn bad_configuration_names_the_field() {
    let err = CorrelationIdLayer::builder()
        .max_length(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_length");
    let err = CorrelationIdLayer::builder()
        .also_accept(X_REQUEST_ID)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "also_accept");
}

// Responses produced by layers inside (rejections) carry the ID.
#[tokio::test]
async fn rejections_from_inner_layers_carry_the_id() {
    let svc = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .service_fn(|req: Request<Body>| async move {
            let res: Response<crate::body::ResponseBody<Body>> =
                Rejections::default().respond(Problem::new(StatusCode::TOO_MANY_REQUESTS), &req);
            Ok::<_, Infallible>(res)
        });
    let res = svc
        .oneshot(request_with(HeaderValue::from_static("rej-1")))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["x-request-id"], "rej-1");
}

#[tokio::test]
async fn the_id_overrides_a_different_one_set_by_the_handler() {
    let svc = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .service_fn(|_req: Request<Body>| async move {
            let mut res = Response::new(Body::default());
            res.headers_mut()
                .insert("x-request-id", HeaderValue::from_static("other"));
            Ok::<_, Infallible>(res)
        });
    let res = svc
        .oneshot(request_with(HeaderValue::from_static("mine")))
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "mine");
}

// Outgoing calls made inside the handler carry the ID without the handler
// passing it.
#[tokio::test]
async fn outgoing_calls_inside_the_handler_carry_the_id() {
    let client = ServiceBuilder::new()
        .layer(PropagateCorrelationIdLayer::new())
        .service_fn(|req: Request<Body>| async move {
            let sent = req.headers().get("x-request-id").cloned();
            Ok::<_, Infallible>(Response::new(sent))
        });
    let svc = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .service_fn(move |_req: Request<Body>| {
            let client = client.clone();
            async move {
                tokio::task::yield_now().await;
                let sent = client
                    .oneshot(Request::new(Body::default()))
                    .await?
                    .into_body();
                let sent = sent
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                Ok::<_, Infallible>(Response::new(Body::from(sent)))
            }
        });
    let res = svc
        .oneshot(request_with(HeaderValue::from_static("out-1")))
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "out-1");

    // Outside any request, nothing is added.
    let client = ServiceBuilder::new()
        .layer(PropagateCorrelationIdLayer::new())
        .service_fn(|req: Request<Body>| async move {
            Ok::<_, Infallible>(Response::new(req.headers().contains_key("x-request-id")))
        });
    assert!(
        !client
            .oneshot(Request::new(Body::default()))
            .await
            .unwrap()
            .into_body()
    );
}

#[tokio::test]
async fn explicit_outgoing_header_is_kept() {
    let client = ServiceBuilder::new()
        .layer(PropagateCorrelationIdLayer::new())
        .service_fn(|req: Request<Body>| async move {
            Ok::<_, Infallible>(Response::new(req.headers()["x-request-id"].clone()))
        });
    let mut req = Request::new(Body::default());
    req.headers_mut()
        .insert("x-request-id", HeaderValue::from_static("explicit"));
    let id: CorrelationId = "ambient".parse().unwrap();
    let res = with_correlation_id(id, client.oneshot(req)).await.unwrap();
    assert_eq!(res.body(), "explicit");
}

#[tokio::test]
async fn current_id_is_cleared_after_the_request() {
    let mut svc = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .service_fn(echo_handler);
    svc.ready()
        .await
        .unwrap()
        .call(request_with(HeaderValue::from_static("gone")))
        .await
        .unwrap();
    assert!(CorrelationId::current().is_none());
}

// Every clone of the service shares one configuration.
#[test]
fn clones_share_one_configuration() {
    let layer = CorrelationIdLayer::builder().max_length(9).build().unwrap();
    let a = layer.layer(tower::service_fn(echo_handler));
    let b = a.clone();
    assert!(Arc::ptr_eq(&a.config, &b.config));
    assert!(Arc::ptr_eq(&a.config, &layer.config));
}

#[tokio::test]
async fn a_repeated_incoming_header_reaches_the_handler_once() {
    // The handler sees exactly the final ID, once.
    let mut req = request_with(HeaderValue::from_static("first-id"));
    req.headers_mut()
        .append("x-request-id", HeaderValue::from_static("second-id"));
    let seen_values = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .service_fn(|req: Request<Body>| async move {
            let values: Vec<String> = req
                .headers()
                .get_all("x-request-id")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            Ok::<_, Infallible>(Response::new(Body::from(values.join(","))))
        })
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(seen_values.headers()["x-request-id"], "first-id");
    let body = http_body_util::BodyExt::collect(seen_values.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "first-id");
}
