//! Every answer a tower-edge layer makes itself carries a
//! [`Decision`](tower_edge::decision::Decision) in its extensions, on HTTP
//! and gRPC answers alike; answers of the handler carry none.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_edge::cache_headers::{CacheHeadersLayer, Preconditions, Representation};
use tower_edge::decision::{Decision, EdgeLayer, Reason};
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, RequireScopeLayer, VerificationKey};
use tower_edge::rate_limit::store::{Check, RateLimitStore, StoreError, StoreFuture};
use tower_edge::rate_limit::{Global, LimitRateLayer, OnStoreError, Policy, Quota};

const SECRET: &[u8] = b"an HS256 secret of at least 32 bytes!";

async fn ok(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("{}")))
}

fn request(headers: &[(&'static str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get("/items");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::default()).unwrap()
}

fn grpc(headers: &[(&'static str, &str)]) -> Request<Full<Bytes>> {
    let mut request = request(headers);
    *request.version_mut() = http::Version::HTTP_2;
    *request.method_mut() = http::Method::POST;
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    request
}

fn token(scope: &str) -> String {
    let claims = serde_json::json!({"sub": "alice", "exp": 4_000_000_000u64, "scope": scope});
    // jsonwebtoken signs with its process default, which a build with both
    // of its providers (tower-edge's `aws-lc-rs` feature) does not have.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn decision<B>(response: &Response<B>) -> (EdgeLayer, Reason) {
    let decision = response
        .extensions()
        .get::<Decision>()
        .unwrap_or_else(|| panic!("no Decision on a {}", response.status()));
    (decision.layer(), decision.reason())
}

#[tokio::test]
async fn jwt_auth_answers_carry_the_marker() {
    let layer = JwtAuthLayer::builder()
        .key(VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .require_scope("write")
        .build()
        .unwrap();
    let service = layer.layer(service_fn(ok));
    let bearer = |t: &str| format!("Bearer {t}");
    let cases = [
        (vec![], StatusCode::UNAUTHORIZED, Reason::MissingCredentials),
        (
            vec![("authorization", bearer("not.a.token"))],
            StatusCode::UNAUTHORIZED,
            Reason::InvalidToken,
        ),
        (
            vec![
                ("authorization", bearer(&token("write"))),
                ("authorization", bearer(&token("write"))),
            ],
            StatusCode::BAD_REQUEST,
            Reason::InvalidRequest,
        ),
        (
            vec![("authorization", bearer(&token("read")))],
            StatusCode::FORBIDDEN,
            Reason::InsufficientScope,
        ),
    ];
    for (headers, status, reason) in cases {
        let headers: Vec<_> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = service.clone().oneshot(request(&headers)).await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(
            decision(&response),
            (EdgeLayer::JwtAuth, reason),
            "{status}"
        );
        // gRPC: the same marker on a trailers-only answer.
        let response = service.clone().oneshot(grpc(&headers)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            decision(&response),
            (EdgeLayer::JwtAuth, reason),
            "gRPC {status}"
        );
    }
    let allowed = service
        .clone()
        .oneshot(request(&[("authorization", &bearer(&token("write")))]))
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert!(allowed.extensions().get::<Decision>().is_none());
}

#[tokio::test]
async fn require_scope_answers_carry_the_marker() {
    let service = ServiceBuilder::new()
        .layer(
            JwtAuthLayer::builder()
                .key(VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap())
                .optional()
                .build()
                .unwrap(),
        )
        .layer(RequireScopeLayer::builder().scope("admin").build().unwrap())
        .service_fn(ok);
    let response = service.clone().oneshot(request(&[])).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        decision(&response),
        (EdgeLayer::JwtAuth, Reason::MissingCredentials)
    );
    let auth = format!("Bearer {}", token("read"));
    let response = service
        .oneshot(request(&[("authorization", &auth)]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        decision(&response),
        (EdgeLayer::JwtAuth, Reason::InsufficientScope)
    );
}

#[derive(Debug)]
struct BrokenStore;

impl RateLimitStore for BrokenStore {
    fn check(&self, _: Check<'_>) -> StoreFuture {
        StoreFuture::ready(Err(StoreError::new("connection refused")))
    }
}

#[tokio::test]
async fn rate_limit_answers_carry_the_marker_and_the_policy() {
    let service = LimitRateLayer::builder()
        .policy(Policy::new("burst", Quota::per_minute(100)).key(Global))
        .policy(Policy::new("per hour", Quota::per_hour(1)).key(Global))
        .build()
        .unwrap()
        .layer(service_fn(ok));
    let first = service.clone().oneshot(request(&[])).await.unwrap();
    assert!(first.extensions().get::<Decision>().is_none());
    for request in [request(&[]), grpc(&[])] {
        let limited = service.clone().oneshot(request).await.unwrap();
        assert_eq!(
            decision(&limited),
            (EdgeLayer::RateLimit, Reason::RateLimited)
        );
        let marker = limited.extensions().get::<Decision>().unwrap();
        assert_eq!(marker.policy(), Some("per hour"));
    }

    let broken = LimitRateLayer::builder()
        .policy(
            Policy::new("p", Quota::per_minute(1))
                .key(Global)
                .store(BrokenStore),
        )
        .on_store_error(OnStoreError::Reject)
        .build()
        .unwrap()
        .layer(service_fn(ok));
    let response = broken.oneshot(request(&[])).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        decision(&response),
        (EdgeLayer::RateLimit, Reason::StoreUnavailable)
    );
}

#[tokio::test]
async fn cache_headers_answers_carry_the_marker() {
    let service = CacheHeadersLayer::new().layer(service_fn(ok));
    let plain = service.clone().oneshot(request(&[])).await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(plain.extensions().get::<Decision>().is_none());
    let etag = plain.headers()[header::ETAG].to_str().unwrap().to_owned();

    let response = service
        .clone()
        .oneshot(request(&[("if-none-match", &etag)]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        decision(&response),
        (EdgeLayer::CacheHeaders, Reason::NotModified)
    );

    let response = service
        .oneshot(request(&[("if-match", "\"other\"")]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        decision(&response),
        (EdgeLayer::CacheHeaders, Reason::PreconditionFailed)
    );

    // A handler's own conditional answers (`Preconditions::check`).
    let mut headers = http::HeaderMap::new();
    headers.insert("if-none-match", HeaderValue::from_static("\"v1\""));
    let preconditions = Preconditions::from_request(&http::Method::GET, &headers);
    let current = Representation::new().etag("\"v1\"".parse().unwrap());
    let answer = preconditions.check(&current).unwrap_err();
    let response = answer.into_http_response::<Full<Bytes>>();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        decision(&response),
        (EdgeLayer::CacheHeaders, Reason::NotModified)
    );
}
