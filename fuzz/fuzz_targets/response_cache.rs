//! The response cache's reading of response directives (`Cache-Control`,
//! the targeted `Edge-Cache-Control`, `Expires`), `Vary` and
//! `Cache-Groups`, and the layer itself with arbitrary request fields:
//! never a panic; `no-store`, `private`, `Set-Cookie` and `Vary: *` are
//! never stored (RFC 9111 §3, §4.1); a request with `Authorization` only
//! gets a shared entry the response allows (§3.5).
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, Service, ServiceExt};
use tower_edge::__fuzz::response_cache_verdict;
use tower_edge::response_cache::ResponseCacheLayer;

/// Whether any line of `name` has `member` as a whole list member.
fn has_member(headers: &HeaderMap, name: &str, member: &str) -> bool {
    headers.get_all(name).iter().any(|line| {
        line.as_bytes()
            .split(|&b| b == b',')
            .any(|m| m.trim_ascii().eq_ignore_ascii_case(member.as_bytes()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let lines = fuzz_support::header_lines(rest);
    let response_names = [
        "cache-control",
        "edge-cache-control",
        "vary",
        "cache-groups",
        "expires",
        "age",
        "set-cookie",
    ];
    let mut response_headers = HeaderMap::new();
    let mut request_headers = HeaderMap::new();
    for (i, line) in lines.iter().enumerate() {
        if i % 2 == 0 {
            let name = response_names[(i / 2) % response_names.len()];
            if name != "set-cookie" || selector & 1 == 1 {
                response_headers.append(HeaderName::from_static(name), line.clone());
            }
        } else {
            // The fields responses commonly vary on.
            let name = ["accept-language", "accept", "origin"][(i / 2) % 3];
            request_headers.append(HeaderName::from_static(name), line.clone());
        }
    }
    let status = [200u16, 203, 204, 206, 301, 401, 403, 404, 429, 500, 503][usize::from(selector >> 4) % 11];
    let authorized = selector & 2 == 2;
    let verdict = response_cache_verdict(status, &response_headers, authorized);
    if verdict.is_some() {
        assert!(!matches!(status, 206 | 401 | 403 | 429 | 500 | 503));
        assert!(!response_headers.contains_key("set-cookie"));
        assert!(!has_member(&response_headers, "vary", "*"));
        assert!(!has_member(&response_headers, "cache-control", "no-store"));
        assert!(!has_member(&response_headers, "cache-control", "private"));
    }
    if let Some((_, shareable)) = verdict
        && authorized
    {
        assert!(shareable);
    }

    // Through the layer: two requests, never a panic; a hit only for what
    // the verdict stores.
    let layer = ResponseCacheLayer::new();
    let answer = response_headers.clone();
    let mut service = layer.layer(tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let mut response = Response::new(Full::new(Bytes::from_static(b"body")));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        *response.headers_mut() = answer.clone();
        async move { Ok::<_, Infallible>(response) }
    }));
    fuzz_support::block_on(async {
        let mut hit = false;
        for _ in 0..2 {
            let mut request = Request::get("/r?b=1&a=2").body(Full::default()).unwrap();
            *request.headers_mut() = request_headers.clone();
            if authorized {
                request
                    .headers_mut()
                    .insert("authorization", http::HeaderValue::from_static("Bearer x"));
            }
            let response = service.ready().await.unwrap().call(request).await.unwrap();
            hit = response
                .headers()
                .get_all("cache-status")
                .iter()
                .any(|v| v.as_bytes().starts_with(b"tower-edge; hit"));
            let _ = response.into_body().collect().await;
        }
        if hit {
            assert!(verdict.is_some());
        }
    });
});
