//! The cache-headers layer with arbitrary conditional request headers and
//! an arbitrary handler `Cache-Control` / `ETag` / `Last-Modified`: never a
//! panic, never a 500, a 304 only for a 2xx GET/HEAD, a 412 only for a
//! 2xx or 412.
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE,
    LAST_MODIFIED,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt};
use tower_edge::cache_headers::CacheHeadersLayer;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let lines = fuzz_support::header_lines(rest);
    let method = match selector % 4 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::PUT,
        _ => Method::POST,
    };
    let status = match (selector >> 2) % 4 {
        0 => StatusCode::OK,
        1 => StatusCode::NOT_FOUND,
        2 => StatusCode::PRECONDITION_FAILED,
        _ => StatusCode::NO_CONTENT,
    };
    // Lines go round-robin to four request and three response headers.
    let request_names = [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
    ];
    let response_names = [CACHE_CONTROL, ETAG, LAST_MODIFIED];
    let mut request = Request::builder()
        .method(method.clone())
        .uri("/r")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let mut response_headers = http::HeaderMap::new();
    for (i, line) in lines.iter().enumerate() {
        match i % 7 {
            n @ 0..4 => {
                request
                    .headers_mut()
                    .append(request_names[n].clone(), line.clone());
            }
            n => {
                response_headers.append(response_names[n - 4].clone(), line.clone());
            }
        }
    }
    let handler = tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let headers = response_headers.clone();
        async move {
            let mut response = Response::new(Full::new(Bytes::from_static(b"representation")));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            Ok::<_, Infallible>(response)
        }
    });
    let service = CacheHeadersLayer::new().layer(handler);
    let response = fuzz_support::block_on(service.oneshot(request)).unwrap();
    let got = response.status();
    assert_ne!(got, StatusCode::INTERNAL_SERVER_ERROR);
    if got == StatusCode::NOT_MODIFIED {
        assert!(status.is_success() && (method == Method::GET || method == Method::HEAD));
        let body = fuzz_support::block_on(response.into_body().collect()).unwrap();
        assert!(body.to_bytes().is_empty());
    } else if got == StatusCode::PRECONDITION_FAILED {
        assert!(status.is_success() || status == StatusCode::PRECONDITION_FAILED);
    } else {
        assert_eq!(got, status);
    }
});
