//! Our `JwtAuthLayer` without its cache against the floor: a hand-written
//! service that takes the `Authorization: Bearer` token, calls
//! `jsonwebtoken::decode` (the same crate and backend, `rust_crypto`, that
//! we verify with) and puts the claims in the request extensions. Same
//! tokens, same validation: `iss`, `aud`, `exp` (required) with 60 s
//! leeway, the algorithm pinned by the key.
//!
//! With `--features aws-lc-rs`, both sides verify RS256 and ES256 with
//! aws-lc-rs (our `aws-lc-rs` feature; the floor's jsonwebtoken process
//! default), so each provider is compared with itself.
//!
//! HS256, RS256 and ES256, tokens signed at setup with the test-only keys of
//! `src/jwt_auth/testdata/`.

#[path = "../../common/mod.rs"]
mod common;

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use tower::{Layer, Service};
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, VerificationKey};

const HS_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &[u8] = include_bytes!("../../../src/jwt_auth/testdata/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../../src/jwt_auth/testdata/rsa_public.pem");
const EC256_PRIVATE: &[u8] = include_bytes!("../../../src/jwt_auth/testdata/ec256_private.pem");
const EC256_PUBLIC: &[u8] = include_bytes!("../../../src/jwt_auth/testdata/ec256_public.pem");

const ISSUER: &str = "https://idp.example.com";
const AUDIENCE: &str = "orders-api";

/// The claims the floor deserializes (what our `StandardClaims` holds for
/// these tokens).
#[derive(Clone, serde::Deserialize)]
#[allow(dead_code)]
struct FloorClaims {
    iss: String,
    aud: String,
    sub: String,
    exp: u64,
    iat: u64,
    scope: String,
}

struct Case {
    name: &'static str,
    ours: VerificationKey,
    floor: (jsonwebtoken::Algorithm, DecodingKey),
    bearer: HeaderValue,
}

fn cases() -> Vec<Case> {
    // With both jsonwebtoken providers compiled in, jsonwebtoken has no
    // process default: the floor's `decode` (and the signing below) use
    // aws-lc-rs, the library our layer names for RS256 and ES256 then.
    // HS256 stays on RustCrypto in our layer (see `CryptoBackend`).
    #[cfg(feature = "aws-lc-rs")]
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
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
        let token = jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("signed");
        HeaderValue::try_from(format!("Bearer {token}")).expect("a header value")
    };
    use jsonwebtoken::Algorithm as J;
    vec![
        Case {
            name: "hs256",
            ours: VerificationKey::hmac(Algorithm::HS256, HS_SECRET).expect("HS256 key"),
            floor: (
                J::HS256,
                DecodingKey::from_secret(HS_SECRET).expect("HS256 secret"),
            ),
            bearer: sign(
                J::HS256,
                EncodingKey::from_secret(HS_SECRET).expect("HS256 secret"),
            ),
        },
        Case {
            name: "rs256",
            ours: VerificationKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC).expect("RS256 key"),
            floor: (
                J::RS256,
                DecodingKey::from_rsa_pem(RSA_PUBLIC).expect("RSA public key"),
            ),
            bearer: sign(
                J::RS256,
                EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("RSA private key"),
            ),
        },
        Case {
            name: "es256",
            ours: VerificationKey::ec_pem(Algorithm::ES256, EC256_PUBLIC).expect("ES256 key"),
            floor: (
                J::ES256,
                DecodingKey::from_ec_pem(EC256_PUBLIC).expect("EC public key"),
            ),
            bearer: sign(
                J::ES256,
                EncodingKey::from_ec_pem(EC256_PRIVATE).expect("EC private key"),
            ),
        },
    ]
}

fn handler() -> impl Service<
    Request<common::ReqBody>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|_request: Request<common::ReqBody>| {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"hello")))))
    })
}

/// The floor: bearer token out of the header, `jsonwebtoken::decode`,
/// claims into the extensions; 401 with an empty body otherwise.
fn floor(
    alg: jsonwebtoken::Algorithm,
    key: DecodingKey,
) -> impl Service<
    Request<common::ReqBody>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.leeway = 60;
    let mut inner = handler();
    tower::service_fn(move |mut request: Request<common::ReqBody>| {
        let claims = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .and_then(|token| jsonwebtoken::decode::<FloorClaims>(token, &key, &validation).ok());
        let future = claims.map(|claims| {
            request.extensions_mut().insert(claims.claims);
            inner.call(request)
        });
        async move {
            match future {
                Some(future) => future.await,
                None => {
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = StatusCode::UNAUTHORIZED;
                    Ok(response)
                }
            }
        }
    })
}

fn jwt(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("jwt_vs_raw_decode");
    for case in cases() {
        let bearer = case.bearer.clone();
        let request = move || common::get("/hello", &[(AUTHORIZATION, bearer.clone())]);
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("bare", case.name),
            handler(),
            &request,
            common::ok_with_len(5),
        );
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("raw_decode", case.name),
            floor(case.floor.0, case.floor.1),
            &request,
            common::ok_with_len(5),
        );
        let ours = JwtAuthLayer::builder()
            .key(case.ours)
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .cache(false)
            .build()
            .expect("a valid configuration");
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("tower_edge_uncached", case.name),
            ours.layer(handler()),
            &request,
            common::ok_with_len(5),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = jwt
}
criterion_main!(benches);
