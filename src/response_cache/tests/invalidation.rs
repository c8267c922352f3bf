//! Invalidation: unsafe methods, groups, purges.

use super::*;

/// A handler that stores GETs (with `Cache-Groups` by path) and answers
/// unsafe methods with `status` and the fields the request asked for in
/// `x-answer-*`.
fn shop()
-> impl Fn(Request<Full<Bytes>>) -> std::future::Ready<Response<Full<Bytes>>> + Clone + Send + Sync
{
    move |req: Request<Full<Bytes>>| {
        let mut response = Response::new(Full::from(req.uri().to_string()));
        if req.method() == http::Method::GET {
            let id = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
            response.headers_mut().insert(
                "cache-control",
                http::HeaderValue::from_static("max-age=60"),
            );
            response.headers_mut().insert(
                "cache-groups",
                http::HeaderValue::from_str(&format!("\"products\", \"product-{id}\"")).unwrap(),
            );
        } else {
            for (name, value) in req.headers() {
                if let Some(answer) = name.as_str().strip_prefix("x-answer-") {
                    response.headers_mut().insert(
                        http::HeaderName::from_bytes(answer.as_bytes()).unwrap(),
                        value.clone(),
                    );
                }
            }
            if let Some(status) = req.headers().get("x-status") {
                *response.status_mut() = StatusCode::from_bytes(status.as_bytes()).unwrap();
            }
        }
        std::future::ready(response)
    }
}

async fn unsafe_request(svc: &mut Svc, method: &str, uri: &str, fields: &[(&str, &str)]) -> Got {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::default())
        .unwrap();
    for (name, value) in fields {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    send(svc, request).await
}

// RFC 9111 §4.4: a non-error response to an unsafe method invalidates its
// target URI (every variant), and the `Location` / `Content-Location`
// paths; an error response invalidates nothing.
#[tokio::test]
async fn unsafe_methods_invalidate_their_uri() {
    let layer = ResponseCacheLayer::new();
    let (mut svc, _) = service(&layer, shop());
    for uri in ["/products/1", "/products/2", "/products/3"] {
        get(&mut svc, uri).await;
        assert!(get(&mut svc, uri).await.is_hit());
    }
    let failed = unsafe_request(&mut svc, "PUT", "/products/1", &[("x-status", "409")]).await;
    assert_eq!(failed.cache_status()["fwd"], "method");
    assert_eq!(failed.cache_status()["fwd-status"], "409");
    assert!(get(&mut svc, "/products/1").await.is_hit());
    unsafe_request(&mut svc, "PUT", "/products/1", &[]).await;
    assert!(!get(&mut svc, "/products/1").await.is_hit());
    assert!(get(&mut svc, "/products/2").await.is_hit());
    unsafe_request(
        &mut svc,
        "POST",
        "/products",
        &[
            ("x-status", "201"),
            ("x-answer-location", "/products/2"),
            ("x-answer-content-location", "/products/3"),
        ],
    )
    .await;
    assert!(!get(&mut svc, "/products/2").await.is_hit());
    assert!(!get(&mut svc, "/products/3").await.is_hit());
    // Safe methods that are not cached pass with `fwd=method`.
    let options = unsafe_request(&mut svc, "OPTIONS", "/products/2", &[]).await;
    assert_eq!(options.cache_status()["fwd"], "method");
    assert!(get(&mut svc, "/products/2").await.is_hit());
}

// RFC 9875 §2-§3: `Cache-Groups` tags stored responses; a
// `Cache-Group-Invalidation` on an unsafe method's response purges them.
#[tokio::test]
async fn group_invalidation() {
    let layer = ResponseCacheLayer::new();
    let (mut svc, _) = service(&layer, shop());
    for uri in ["/products/1", "/products/2", "/list?page=1"] {
        get(&mut svc, uri).await;
    }
    unsafe_request(
        &mut svc,
        "POST",
        "/somewhere-else",
        &[("x-answer-cache-group-invalidation", "\"product-1\"")],
    )
    .await;
    assert!(!get(&mut svc, "/products/1").await.is_hit());
    assert!(get(&mut svc, "/products/2").await.is_hit());
    assert!(get(&mut svc, "/list?page=1").await.is_hit());
    unsafe_request(
        &mut svc,
        "DELETE",
        "/elsewhere",
        &[("x-answer-cache-group-invalidation", "\"products\"")],
    )
    .await;
    for uri in ["/products/1", "/products/2"] {
        assert!(!get(&mut svc, uri).await.is_hit(), "{uri}");
    }
    assert!(layer.handle().stats().invalidated >= 3);
}

// The purge API: by group, by path (all its variants), everything.
#[tokio::test]
async fn purges_in_code() {
    let layer = ResponseCacheLayer::new();
    let handle = layer.handle();
    let (mut svc, _) = service(&layer, shop());
    for uri in ["/products/1", "/products/2", "/products/7?b=2&a=1"] {
        get(&mut svc, uri).await;
    }
    assert_eq!(handle.purge_group("product-2"), 1);
    assert_eq!(handle.purge_group("product-2"), 0);
    assert!(!get(&mut svc, "/products/2").await.is_hit());
    // The query is normalised as the keys are.
    assert_eq!(handle.purge_path("/products/7?a=1&b=2"), 1);
    assert_eq!(handle.purge_path("/products/1"), 1);
    assert_eq!(handle.stats().entries, 1);
    handle.clear();
    assert_eq!(handle.stats().entries, 0);
    assert_eq!(handle.stats().bytes, 0);
}
