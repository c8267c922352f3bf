//! Overhead of every default tower-edge layer stacked in the recommended
//! order (correlation ID -> rate limit by client IP -> JWT auth, optional
//! mode, HS256 -> rate limit by subject or IP -> cache headers) around a
//! handler answering 1 KiB of JSON, against that handler bare:
//!
//! * `anonymous`: no token (the JWT layer's "no credentials" path), a
//!   fresh 200 with an ETag;
//! * `authenticated`: a valid bearer token, verified once and then served
//!   from the verified-token cache (the steady state of a client);
//! * `not_modified`: the authenticated request with a matching
//!   `If-None-Match`, answered 304 without a body.
//!
//! The quotas are high enough that nothing is limited, so both limiters do
//! their full work (key, store, `RateLimit` headers) on every request.
//! `otel` is left out, as in `benches/e2e.sh`: without an SDK it measures a
//! no-op.
//!
//! `cargo bench --bench full_stack`

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use jsonwebtoken::{EncodingKey, Header};
use tower::ServiceBuilder;
use tower_edge::cache_headers::CacheHeadersLayer;
use tower_edge::correlation::CorrelationIdLayer;
use tower_edge::jwt_auth::{Algorithm, AuthMode, JwtAuthLayer, VerificationKey};
use tower_edge::rate_limit::{ClientIp, LimitRateLayer, PeerAddr, Policy, Quota, SubjectOrIp};

const SECRET: &[u8] = b"full-stack-bench-secret-of-32-bytes!";
const ALLOW_ALL: Quota = Quota::per_second(1_000_000_000);
const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 50_000);
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn bearer() -> HeaderValue {
    let exp = jsonwebtoken::get_current_timestamp() + 24 * 3600;
    let claims = serde_json::json!({ "sub": "user-42", "exp": exp, "scope": "orders:read" });
    // jsonwebtoken signs with its process default, which a build with both
    // of its providers (tower-edge's `aws-lc-rs` feature) does not have.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let token = jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).expect("HS256 secret"),
    )
    .expect("signed");
    HeaderValue::try_from(format!("Bearer {token}")).expect("a header value")
}

fn full_stack(c: &mut Criterion) {
    let runtime = common::runtime();
    let body = common::json_body(1024);
    let mut json = HeaderMap::new();
    json.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let handler = || common::fixed_handler(json.clone(), body.clone());
    // The same handler as a concrete `service_fn` (the JWT layer needs to
    // see that its inner future is `Send`, which `fixed_handler`'s opaque
    // type does not tell).
    let concrete_handler = || {
        let (json, body) = (json.clone(), body.clone());
        tower::service_fn(move |_request: http::Request<common::ReqBody>| {
            let mut response = http::Response::new(http_body_util::Full::new(body.clone()));
            *response.headers_mut() = json.clone();
            std::future::ready(Ok::<_, std::convert::Infallible>(response))
        })
    };
    let stack = || {
        let per_ip = LimitRateLayer::builder()
            .policy(Policy::new("ip", ALLOW_ALL).key(ClientIp))
            .build()
            .expect("valid per-IP limit");
        let per_client = LimitRateLayer::builder()
            .policy(Policy::new("client", ALLOW_ALL).key(SubjectOrIp))
            .build()
            .expect("valid per-client limit");
        let auth = JwtAuthLayer::builder()
            .key(VerificationKey::hmac(Algorithm::HS256, SECRET).expect("HS256 key"))
            .mode(AuthMode::Optional)
            .build()
            .expect("valid auth");
        ServiceBuilder::new()
            .layer(CorrelationIdLayer::new())
            .layer(per_ip)
            .layer(auth)
            .layer(per_client)
            .layer(CacheHeadersLayer::new())
            .service(concrete_handler())
    };

    // The ETag the stack gives the body, for the conditional case.
    let etag = {
        let mut service = stack();
        let mut request = common::get("/orders", &[]);
        request.extensions_mut().insert(PeerAddr(PEER));
        let (parts, _) = runtime.block_on(common::round_trip(&mut service, request));
        parts.headers[ETAG].clone()
    };
    let token = bearer();
    let request = move |headers: &[(HeaderName, HeaderValue)]| {
        let mut request = common::get("/orders", headers);
        request.extensions_mut().insert(PeerAddr(PEER));
        request
    };
    let anonymous = || request(&[]);
    let authenticated = || request(&[(AUTHORIZATION, token.clone())]);
    let conditional = || {
        request(&[
            (AUTHORIZATION, token.clone()),
            (IF_NONE_MATCH, etag.clone()),
        ])
    };
    let fresh = |parts: &http::response::Parts, body: &Bytes| {
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(body.len(), 1024);
        for name in ["etag", "ratelimit", "x-request-id"] {
            assert!(parts.headers.contains_key(name), "{name} is set");
        }
    };
    let not_modified = |parts: &http::response::Parts, body: &Bytes| {
        assert_eq!(parts.status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        assert!(parts.headers.contains_key(X_REQUEST_ID));
    };

    let mut group = c.benchmark_group("full_stack");
    type MakeRequest<'a> = &'a dyn Fn() -> http::Request<common::ReqBody>;
    type Check<'a> = &'a dyn Fn(&http::response::Parts, &Bytes);
    let cases: [(&str, MakeRequest, Check); 3] = [
        ("anonymous", &anonymous, &fresh),
        ("authenticated", &authenticated, &fresh),
        ("not_modified", &conditional, &not_modified),
    ];
    for (case, make_request, check) in cases {
        let bare_check = |parts: &http::response::Parts, body: &Bytes| {
            assert_eq!(parts.status, StatusCode::OK);
            assert_eq!(body.len(), 1024);
        };
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("bare", case),
            handler(),
            make_request,
            bare_check,
        );
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("tower_edge", case),
            stack(),
            make_request,
            check,
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = full_stack
}
criterion_main!(benches);
