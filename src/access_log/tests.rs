//! Unit tests of the access log's plumbing; the lines themselves are read
//! in `tests/access_log.rs`, through one process-wide subscriber.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

use super::*;

#[tokio::test]
async fn the_body_passes_unchanged_and_the_head_too() {
    let service = ServiceBuilder::new()
        .layer(AccessLogLayer::new())
        .service_fn(|_req: Request<()>| async {
            let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
            *response.status_mut() = StatusCode::CREATED;
            Ok::<_, Infallible>(response)
        });
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello");
}

#[cfg(feature = "otel")]
#[test]
fn a_route_extension_names_the_route() {
    let mut extensions = http::Extensions::new();
    assert_eq!(record::request_route(&extensions), None);
    extensions.insert(crate::otel::Route::from_static("/users/{id}"));
    assert_eq!(
        record::request_route(&extensions).as_deref(),
        Some("/users/{id}")
    );
}

#[cfg(feature = "rate-limit")]
#[test]
fn the_client_ip_is_the_peer_by_default_and_the_limiters_view_when_asked() {
    use crate::rate_limit::{LimitRateLayer, PeerAddr, Policy, Quota};
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(PeerAddr("10.0.0.1:4000".parse().unwrap()));
    request
        .headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let resolve = |layer: &AccessLogLayer| {
        let client_ip = layer.shared.client_ip.as_ref().unwrap();
        client_ip(request.headers(), request.extensions())
    };
    // Untrusted peer: the forwarding header is the client's own text.
    assert_eq!(
        resolve(&AccessLogLayer::new()),
        Some("10.0.0.1".parse().unwrap())
    );
    let limiter = LimitRateLayer::builder()
        .policy(Policy::new("ip", Quota::per_second(1)))
        .trusted_proxies(["10.0.0.0/8"])
        .build()
        .unwrap();
    let layer = AccessLogLayer::builder()
        .client_ip_as(&limiter)
        .build()
        .unwrap();
    assert_eq!(resolve(&layer), Some("203.0.113.9".parse().unwrap()));
}
