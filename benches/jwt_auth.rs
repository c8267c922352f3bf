//! Overhead of `JwtAuthLayer` around a trivial handler, for HS256, RS256
//! and ES256 tokens with `iss`, `aud` and `exp` validated: uncached (every
//! request verifies the signature, `.cache(false)`) and a cache hit (the
//! default cache, the same token again).
//!
//! Tokens are signed once at setup with `jsonwebtoken::encode` and the test
//! keys of `src/jwt_auth/testdata/` (test-only keys).
//!
//! `cargo bench --bench jwt_auth`

mod common;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use jsonwebtoken::{EncodingKey, Header};
use tower::Layer;
use tower_edge::Subject;
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, VerificationKey};

const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &[u8] = include_bytes!("../src/jwt_auth/testdata/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../src/jwt_auth/testdata/rsa_public.pem");
const EC256_PRIVATE: &[u8] = include_bytes!("../src/jwt_auth/testdata/ec256_private.pem");
const EC256_PUBLIC: &[u8] = include_bytes!("../src/jwt_auth/testdata/ec256_public.pem");

const ISSUER: &str = "https://idp.example.com";
const AUDIENCE: &str = "orders-api";

/// One algorithm's case: its name, the layer's key, a signed token.
struct Case {
    name: &'static str,
    key: VerificationKey,
    bearer: HeaderValue,
}

fn cases() -> Vec<Case> {
    let exp = jsonwebtoken::get_current_timestamp() + 24 * 3600;
    let claims = serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "exp": exp,
        "iat": exp - 24 * 3600,
        "scope": "orders:read orders:write",
    });
    let sign = |alg: jsonwebtoken::Algorithm, key: EncodingKey| {
        // jsonwebtoken signs with its process default, which a build with both
        // of its providers (tower-edge's `aws-lc-rs` feature) does not have.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("signed");
        HeaderValue::try_from(format!("Bearer {token}")).expect("a header value")
    };
    vec![
        Case {
            name: "hs256",
            key: VerificationKey::hmac(Algorithm::HS256, HS_SECRET).expect("HS256 key"),
            bearer: sign(
                jsonwebtoken::Algorithm::HS256,
                EncodingKey::from_secret(HS_SECRET).expect("HS256 secret"),
            ),
        },
        Case {
            name: "rs256",
            key: VerificationKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC).expect("RS256 key"),
            bearer: sign(
                jsonwebtoken::Algorithm::RS256,
                EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("RSA private key"),
            ),
        },
        Case {
            name: "es256",
            key: VerificationKey::ec_pem(Algorithm::ES256, EC256_PUBLIC).expect("ES256 key"),
            bearer: sign(
                jsonwebtoken::Algorithm::ES256,
                EncodingKey::from_ec_pem(EC256_PRIVATE).expect("EC private key"),
            ),
        },
    ]
}

fn layer(key: VerificationKey, cache: bool) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .key(key)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(cache)
        .build()
        .expect("a valid configuration")
}

fn jwt_auth(c: &mut Criterion) {
    let runtime = common::runtime();
    let body = Bytes::from_static(b"hello");
    // The handler proves the layer let the request through authenticated.
    let handler = || {
        let body = body.clone();
        tower::service_fn(move |request: http::Request<common::ReqBody>| {
            let status = match request.extensions().get::<Subject>() {
                Some(subject) if subject.as_str() == "user-42" => StatusCode::OK,
                _ => StatusCode::IM_A_TEAPOT,
            };
            let mut response = http::Response::new(http_body_util::Full::new(body.clone()));
            *response.status_mut() = status;
            std::future::ready(Ok::<_, std::convert::Infallible>(response))
        })
    };
    let bare = || common::fixed_handler(HeaderMap::new(), body.clone());

    let mut group = c.benchmark_group("jwt_auth");
    for case in cases() {
        let bearer = case.bearer.clone();
        let request = move || common::get("/hello", &[(AUTHORIZATION, bearer.clone())]);
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("bare", case.name),
            bare(),
            &request,
            common::ok_with_len(5),
        );
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("tower_edge_uncached", case.name),
            layer(case.key.clone(), false).layer(handler()),
            &request,
            common::ok_with_len(5),
        );
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("tower_edge_cache_hit", case.name),
            layer(case.key, true).layer(handler()),
            &request,
            common::ok_with_len(5),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = jwt_auth
}
criterion_main!(benches);
