//! Tests of the JWT layer, one (or more) per requirement of RFC 6750,
//! RFC 7519, RFC 7515, RFC 8725 and RFC 9068, each test naming its section
//! (JWKS, RFC 7517, is tested in `jwks/tests.rs` and
//! `tests/jwks_socket.rs`).
//!
//! Key fixtures in `testdata/` were generated with OpenSSL 3.0:
//!
//! ```text
//! openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa_private.pem
//! openssl rsa -in rsa_private.pem -pubout -out rsa_public.pem
//! openssl rsa -pubin -in rsa_public.pem -RSAPublicKey_out -outform DER -out rsa_public_pkcs1.der
//! openssl pkey -pubin -in rsa_public.pem -outform DER -out rsa_public.der
//! openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec256_private.pem
//! openssl pkey -in ec256_private.pem -pubout -out ec256_public.pem
//! openssl pkey -pubin -in ec256_public.pem -outform DER -out ec256_public.der
//! openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec384_private.pem
//! openssl pkey -in ec384_private.pem -pubout -out ec384_public.pem
//! openssl genpkey -algorithm ED25519 -out ed25519_private.pem
//! openssl pkey -in ed25519_private.pem -pubout -out ed25519_public.pem
//! openssl pkey -pubin -in ed25519_public.pem -outform DER -out ed25519_public.der
//! ```
//!
//! They are test-only keys: never use them for anything else.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::Algorithm as J;
use jsonwebtoken::EncodingKey;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::body::ResponseBody;
use crate::cache_control::make_private;
use crate::principal::Subject;

const NOW: i64 = 1_800_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

const RSA_PRIVATE: &[u8] = include_bytes!("testdata/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("testdata/rsa_public.pem");
const RSA_PUBLIC_PKCS1_DER: &[u8] = include_bytes!("testdata/rsa_public_pkcs1.der");
const RSA_PUBLIC_DER: &[u8] = include_bytes!("testdata/rsa_public.der");
const EC256_PUBLIC_DER: &[u8] = include_bytes!("testdata/ec256_public.der");
const ED_PUBLIC_DER: &[u8] = include_bytes!("testdata/ed25519_public.der");
const EC256_PRIVATE: &[u8] = include_bytes!("testdata/ec256_private.pem");
const EC256_PUBLIC: &[u8] = include_bytes!("testdata/ec256_public.pem");
const EC384_PRIVATE: &[u8] = include_bytes!("testdata/ec384_private.pem");
const EC384_PUBLIC: &[u8] = include_bytes!("testdata/ec384_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("testdata/ed25519_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("testdata/ed25519_public.pem");

type Body = ResponseBody<String>;

/// jsonwebtoken's signing, with RustCrypto installed as its process default
/// first: a build with both providers (the `aws-lc-rs` feature) has none,
/// and signing always goes through it. The layer never uses that default
/// (`tests/jwt_crypto_provider.rs`).
fn sign_rustcrypto(
    message: &[u8],
    key: &EncodingKey,
    alg: J,
) -> jsonwebtoken::errors::Result<String> {
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    jsonwebtoken::crypto::sign(message, key, alg)
}

/// A compact JWS with exactly the given header and claims JSON.
fn sign(alg: J, header: Value, claims: Value, key: &EncodingKey) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let message = format!("{h}.{c}");
    let signature = sign_rustcrypto(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

fn hs_key() -> EncodingKey {
    EncodingKey::from_secret(SECRET).unwrap()
}

fn claims() -> Value {
    json!({ "sub": "user-1", "exp": NOW + 600, "iat": NOW, "scope": "read write" })
}

/// An HS256 token signed with `SECRET`.
fn hs(claims: Value) -> String {
    sign(
        J::HS256,
        json!({ "alg": "HS256", "typ": "JWT" }),
        claims,
        &hs_key(),
    )
}

fn hs_with_header(header: Value, claims: Value) -> String {
    sign(J::HS256, header, claims, &hs_key())
}

fn builder() -> JwtAuthLayerBuilder {
    JwtAuthLayer::builder()
        .key(VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .clock(|| NOW)
}

fn bearer(token: &str) -> Request<String> {
    Request::builder()
        .uri("/")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap()
}

/// The handler: 200 with the subject and scopes it sees.
async fn echo(request: Request<String>) -> Result<Response<String>, Infallible> {
    let subject = request
        .extensions()
        .get::<Subject>()
        .map_or("-".to_owned(), |s| s.to_string());
    let scopes = request
        .extensions()
        .get::<Scopes>()
        .map_or("-".to_owned(), |s| s.iter().collect::<Vec<_>>().join(","));
    let claims = request.extensions().get::<Claims>().is_some();
    Ok(Response::new(format!(
        "sub={subject} scopes={scopes} claims={claims}"
    )))
}

async fn send<T>(layer: &JwtAuthLayer<T>, request: Request<String>) -> Response<Body>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    layer
        .layer(service_fn(echo))
        .oneshot(request)
        .await
        .unwrap()
}

// Security review finding: `"sub": ""` gave every such token one shared
// subject (one rate-limit bucket). An empty `sub` names nobody: no
// `Subject`, as for a token without `sub` (RFC 7519 §4.1.2).
#[tokio::test]
async fn empty_sub_is_no_subject() {
    let layer = builder().build().unwrap();
    let token = hs(json!({ "sub": "", "exp": NOW + 600, "scope": "read" }));
    let response = send(&layer, bearer(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "sub=- scopes=read claims=true");
}

async fn body(response: Response<Body>) -> String {
    let bytes: Bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn error_of(response: &Response<Body>) -> Option<&JwtError> {
    response.extensions().get::<JwtError>()
}

fn challenge(response: &Response<Body>) -> &str {
    response.headers()[WWW_AUTHENTICATE].to_str().unwrap()
}

const EXPIRED: &str =
    r#"Bearer realm="api", error="invalid_token", error_description="the access token expired""#;
const INVALID: &str =
    r#"Bearer realm="api", error="invalid_token", error_description="the access token is invalid""#;

/// Asserts a 401 invalid_token rejection caused by `expected`.
async fn assert_invalid(layer: &JwtAuthLayer, token: &str, expected: JwtError) {
    let response = send(layer, bearer(token)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{expected:?}");
    assert_eq!(error_of(&response), Some(&expected));
    let expected_challenge = if expected == JwtError::Expired {
        EXPIRED
    } else {
        INVALID
    };
    assert_eq!(challenge(&response), expected_challenge);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
}

async fn assert_ok(layer: &JwtAuthLayer, token: &str) {
    let response = send(layer, bearer(token)).await;
    let error = error_of(&response).cloned();
    assert_eq!(response.status(), StatusCode::OK, "{error:?}");
}

// ---------------------------------------------------------------- sources

// RFC 6750 §2.1: `Authorization: Bearer`; the scheme is case-insensitive
// (RFC 9110 §11.1).
#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let layer = builder().build().unwrap();
    let token = hs(claims());
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let request = Request::builder()
            .header(AUTHORIZATION, format!("{scheme} {token}"))
            .body(String::new())
            .unwrap();
        let response = send(&layer, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{scheme}");
        assert_eq!(
            body(response).await,
            "sub=user-1 scopes=read,write claims=true"
        );
    }
}

// RFC 6750 §3: a request with another scheme has no bearer credentials:
// 401 with a challenge without `error`.
#[tokio::test]
async fn other_scheme_counts_as_no_credentials() {
    let layer = builder().build().unwrap();
    let request = Request::builder()
        .header(AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .body(String::new())
        .unwrap();
    let response = send(&layer, request).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), r#"Bearer realm="api""#);
}

// RFC 6750 §2.2 / custom header: cookie and custom header are opt-in.
#[tokio::test]
async fn cookie_and_custom_header_are_opt_in() {
    let token = hs(claims());
    let cookie = || {
        Request::builder()
            .header(COOKIE, format!("theme=dark; at={token}; lang=en"))
            .body(String::new())
            .unwrap()
    };
    let custom = || {
        Request::builder()
            .header("x-access-token", token.as_str())
            .body(String::new())
            .unwrap()
    };
    let default = builder().build().unwrap();
    assert_eq!(
        send(&default, cookie()).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&default, custom()).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let opted_in = builder()
        .cookie("at")
        .header(HeaderName::from_static("x-access-token"))
        .build()
        .unwrap();
    assert_eq!(send(&opted_in, cookie()).await.status(), StatusCode::OK);
    assert_eq!(send(&opted_in, custom()).await.status(), StatusCode::OK);
}

// RFC 6750 §2.3: the `access_token` query parameter is off by default; when
// enabled, 2xx responses get `Cache-Control: private`.
#[tokio::test]
async fn query_parameter_is_off_by_default_and_marks_responses_private() {
    let token = hs(claims());
    let request = || {
        Request::builder()
            .uri(format!("/items?page=2&access_token={token}"))
            .body(String::new())
            .unwrap()
    };
    let default = builder().build().unwrap();
    let response = send(&default, request()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), r#"Bearer realm="api""#);

    let enabled = builder().query_parameter(true).build().unwrap();
    let response = send(&enabled, request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "private");

    // A header token does not make the response private.
    let response = send(&enabled, bearer(&token)).await;
    assert!(response.headers().get(CACHE_CONTROL).is_none());

    // Non-2xx responses are left alone.
    let not_found = enabled.layer(service_fn(|_req: Request<String>| async {
        let mut response = Response::new(String::new());
        *response.status_mut() = StatusCode::NOT_FOUND;
        Ok::<_, Infallible>(response)
    }));
    let response = not_found.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get(CACHE_CONTROL).is_none());
}

/// The Cache-Control directives of a 2xx answer to a query-token request
/// whose handler set `lines`, lowercased, across every line.
async fn cache_control_after(lines: &[&'static str]) -> Vec<String> {
    let layer = builder().query_parameter(true).build().unwrap();
    let lines = lines.to_vec();
    let service = layer.layer(service_fn(move |_req: Request<String>| {
        let lines = lines.clone();
        async move {
            let mut response = Response::new(String::new());
            for line in lines {
                response
                    .headers_mut()
                    .append(CACHE_CONTROL, HeaderValue::from_static(line));
            }
            Ok::<_, Infallible>(response)
        }
    }));
    let request = Request::builder()
        .uri(format!("/?access_token={}", hs(claims())))
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut directives: Vec<String> = response
        .headers()
        .get_all(CACHE_CONTROL)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect();
    directives.sort();
    directives
}

// RFC 6750 §2.3 + RFC 9111 §5.2.2: `private` is added to what the handler
// set, never in place of a stricter directive, on any line; `public` (and a
// field-qualified `private`) becomes `private`.
#[tokio::test]
async fn query_token_responses_become_private_without_losing_directives() {
    let cases: &[(&[&'static str], &[&str])] = &[
        (&[], &["private"]),
        (&["no-cache"], &["no-cache", "private"]),
        (&["no-store"], &["no-store"]),
        (&["NO-STORE, max-age=0"], &["max-age=0", "no-store"]),
        (
            &["max-age=0, must-revalidate"],
            &["max-age=0", "must-revalidate", "private"],
        ),
        (
            &["max-age=60", "no-cache"],
            &["max-age=60", "no-cache", "private"],
        ),
        (&["max-age=60", "no-store"], &["max-age=60", "no-store"]),
        (&["max-age=60", "Private"], &["max-age=60", "private"]),
        (&["public, max-age=300"], &["max-age=300", "private"]),
        (
            &["max-age=300", "PUBLIC", "no-cache=\"set-cookie\""],
            &["max-age=300", "no-cache=\"set-cookie\"", "private"],
        ),
        (
            &["private=\"x-user\", max-age=30"],
            &["max-age=30", "private"],
        ),
        (
            &["x-not-private-ext, max-age=30"],
            &["max-age=30", "private", "x-not-private-ext"],
        ),
    ];
    for (before, after) in cases {
        assert_eq!(cache_control_after(before).await, *after, "{before:?}");
    }
}

// A comma inside a quoted argument belongs to its directive (RFC 9110
// §5.6.1, §5.6.4), also when the line is rewritten (the parsing itself is
// tested in `crate::cache_control`).
#[test]
fn cache_control_members_respect_quoted_strings() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(r#"public, no-cache="a, private""#),
    );
    make_private(&mut headers);
    assert_eq!(
        headers.get_all(CACHE_CONTROL).iter().collect::<Vec<_>>(),
        [r#"private, no-cache="a, private""#]
    );
}

const DUPLICATE: &str = r#"Bearer realm="api", error="invalid_request", error_description="more than one access token""#;

// RFC 6750 §3.1 / §2: a token presented twice (two methods or two
// Authorization lines) is `invalid_request`, 400.
#[tokio::test]
async fn two_tokens_are_an_invalid_request() {
    let token = hs(claims());
    let layer = builder()
        .query_parameter(true)
        .cookie("at")
        .build()
        .unwrap();

    let two_lines = Request::builder()
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let header_and_query = Request::builder()
        .uri(format!("/?access_token={token}"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let header_and_cookie = Request::builder()
        .header(COOKIE, format!("at={token}"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let two_query = Request::builder()
        .uri(format!("/?access_token={token}&access_token={token}"))
        .body(String::new())
        .unwrap();
    for request in [two_lines, header_and_query, header_and_cookie, two_query] {
        let response = send(&layer, request).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(challenge(&response), DUPLICATE);
        assert_eq!(error_of(&response), Some(&JwtError::Duplicate));
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    }
}

// RFC 6750 §3.1: a malformed request is `invalid_request`.
#[tokio::test]
async fn bearer_without_token_is_an_invalid_request() {
    let layer = builder().build().unwrap();
    for value in ["Bearer", "Bearer ", "Bearer a b"] {
        let request = Request::builder()
            .header(AUTHORIZATION, value)
            .body(String::new())
            .unwrap();
        let response = send(&layer, request).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{value:?}");
        assert!(challenge(&response).contains(r#"error="invalid_request""#));
    }
}

// ------------------------------------------------------------ challenges

// RFC 6750 §3: no credentials → 401 `Bearer realm="..."` without `error`.
#[tokio::test]
async fn no_credentials_get_a_challenge_without_error() {
    let layer = builder().realm("shop").build().unwrap();
    let response = send(&layer, Request::new(String::new())).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), r#"Bearer realm="shop""#);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(error_of(&response), Some(&JwtError::Missing));
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
}

// RFC 6750 §3: bad or expired token → 401 with error="invalid_token" and an
// error_description; the client never sees what exactly failed.
#[tokio::test]
async fn bad_and_expired_tokens_get_invalid_token() {
    let layer = builder().build().unwrap();
    assert_invalid(
        &layer,
        "abc.def.ghi",
        JwtError::Malformed("header is not a JSON object"),
    )
    .await;
    assert_invalid(
        &layer,
        "a.def.ghi",
        JwtError::Malformed("header is not base64url"),
    )
    .await;

    let expired = hs(json!({ "sub": "u", "exp": NOW - 3600 }));
    let response = send(&layer, bearer(&expired)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&response),
        r#"Bearer realm="api", error="invalid_token", error_description="the access token expired""#
    );
    assert_eq!(error_of(&response), Some(&JwtError::Expired));
    let text = body(response).await;
    assert!(text.contains("the access token expired"), "{text}");
}

// RFC 6750 §3: missing scope → 403 error="insufficient_scope", scope="...".
#[tokio::test]
async fn missing_scope_is_403_insufficient_scope() {
    let layer = builder().require_scope("admin").build().unwrap();
    let response = send(&layer, bearer(&hs(claims()))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&response),
        r#"Bearer realm="api", error="insufficient_scope", scope="admin""#
    );
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");

    let mut granted = claims();
    granted["scope"] = json!("read admin");
    assert_eq!(
        send(&layer, bearer(&hs(granted))).await.status(),
        StatusCode::OK
    );
}

// RFC 6750 §3: every 401 carries WWW-Authenticate, and quoted values hold
// no `"` or `\`; configuration that would put one there fails to build.
#[tokio::test]
async fn challenges_never_quote_quotes_or_backslashes() {
    for realm in ["a\"b", "a\\b", "line\nbreak"] {
        let err = builder().realm(realm).build().unwrap_err();
        assert_eq!(err.field(), "realm");
    }
    for scope in ["a\"b", "a\\b", "two words", ""] {
        let err = builder().require_scope(scope).build().unwrap_err();
        assert_eq!(err.field(), "require_scope");
        let err = RequireScopeLayer::builder()
            .scope(scope)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "scope");
    }

    let layer = builder()
        .require_scope("admin")
        .query_parameter(true)
        .build()
        .unwrap();
    let token = hs(claims());
    let requests = vec![
        Request::new(String::new()),
        bearer("x.y.z"),
        bearer(&hs(json!({ "exp": NOW - 3600 }))),
        bearer(&token),
        Request::builder()
            .uri(format!("/?access_token={token}"))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(String::new())
            .unwrap(),
    ];
    for request in requests {
        let response = send(&layer, request).await;
        assert!(!response.status().is_success());
        let value = challenge(&response).to_owned();
        assert!(value.starts_with("Bearer realm=\"api\""), "{value}");
        // Every quoted string: the quotes are balanced and nothing inside
        // is a quote or a backslash.
        assert!(!value.contains('\\'), "{value}");
        assert_eq!(value.matches('"').count() % 2, 0, "{value}");
        for (i, part) in value.split('"').enumerate() {
            if i % 2 == 0 {
                // Outside quotes: parameter names, `=`, `, `.
                assert!(
                    part.chars()
                        .all(|c| c.is_ascii_alphanumeric() || " ,=_".contains(c)),
                    "{value}"
                );
            }
        }
    }
}

// ------------------------------------------------------------ algorithms

// RFC 8725 §3.1: `none` in any case is rejected.
#[tokio::test]
async fn alg_none_in_any_case_is_rejected() {
    let layer = builder().build().unwrap();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
        // With a signature segment, so the only problem is the algorithm.
        let token = format!("{header}.{payload}.c2ln");
        assert_invalid(&layer, &token, JwtError::UnsupportedAlgorithm).await;
        // The unsecured JWS form (empty signature) is rejected too.
        let response = send(&layer, bearer(&format!("{header}.{payload}."))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{alg}");
    }
    // An algorithm name is exact: `hs256` is not HS256.
    let token = hs_with_header(json!({ "alg": "hs256" }), claims());
    assert_invalid(&layer, &token, JwtError::UnsupportedAlgorithm).await;
}

// RFC 8725 §3.1: the algorithm comes from the configured allow-list, not
// from the token.
#[tokio::test]
async fn algorithm_outside_the_allow_list_is_rejected() {
    let layer = builder().build().unwrap();
    let rs = sign(
        J::RS256,
        json!({ "alg": "RS256" }),
        claims(),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    );
    assert_invalid(&layer, &rs, JwtError::AlgorithmNotAllowed(Algorithm::RS256)).await;
    let hs384 = sign(J::HS384, json!({ "alg": "HS384" }), claims(), &hs_key());
    assert_invalid(
        &layer,
        &hs384,
        JwtError::AlgorithmNotAllowed(Algorithm::HS384),
    )
    .await;
}

// RFC 8725 §3.2, CVE-2015-9235: an HS256 token MACed with the RSA public
// key (PEM text) as the secret is rejected when RS256 is configured.
#[tokio::test]
async fn hs256_with_the_rsa_public_key_as_secret_is_rejected() {
    let forged = |kid: Option<&str>| {
        let header = match kid {
            Some(kid) => json!({ "alg": "HS256", "kid": kid }),
            None => json!({ "alg": "HS256" }),
        };
        sign(
            J::HS256,
            header,
            claims(),
            &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
        )
    };
    let rs_only = JwtAuthLayer::builder()
        .key(VerificationKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC).unwrap())
        .clock(|| NOW)
        .build()
        .unwrap();
    assert_invalid(
        &rs_only,
        &forged(None),
        JwtError::AlgorithmNotAllowed(Algorithm::HS256),
    )
    .await;

    // Even with HS256 allowed for another key, the RSA key stays bound to
    // RS256: its kid cannot be used with HS256.
    let both = JwtAuthLayer::builder()
        .key(
            VerificationKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC)
                .unwrap()
                .with_kid("rsa"),
        )
        .key(
            VerificationKey::hmac(Algorithm::HS256, SECRET)
                .unwrap()
                .with_kid("hmac"),
        )
        .clock(|| NOW)
        .build()
        .unwrap();
    assert_invalid(
        &both,
        &forged(Some("rsa")),
        JwtError::KeyAlgorithmMismatch(Algorithm::HS256),
    )
    .await;
    assert_invalid(&both, &forged(Some("hmac")), JwtError::InvalidSignature).await;
}

// CVE-2022-21449 class: an ES256 signature of zeros (r = s = 0) is rejected.
#[tokio::test]
async fn es256_zero_signature_is_rejected() {
    let layer = JwtAuthLayer::builder()
        .key(VerificationKey::ec_pem(Algorithm::ES256, EC256_PUBLIC).unwrap())
        .clock(|| NOW)
        .build()
        .unwrap();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    let zeros = URL_SAFE_NO_PAD.encode([0u8; 64]);
    assert_invalid(
        &layer,
        &format!("{header}.{payload}.{zeros}"),
        JwtError::InvalidSignature,
    )
    .await;
    // DER-shaped zero signature too.
    let der_zeros = URL_SAFE_NO_PAD.encode([0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00]);
    assert_invalid(
        &layer,
        &format!("{header}.{payload}.{der_zeros}"),
        JwtError::InvalidSignature,
    )
    .await;
}

// RFC 8725 §3.1 / jsonwebtoken ≥ 10 needs a crypto backend: a token in every
// supported family is accepted with its right key.
#[tokio::test]
async fn every_family_is_accepted_with_its_key() {
    let cases: Vec<(J, VerificationKey, EncodingKey)> = vec![
        (
            J::HS256,
            VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap(),
            EncodingKey::from_secret(SECRET).unwrap(),
        ),
        (
            J::HS384,
            VerificationKey::hmac(Algorithm::HS384, [7u8; 48]).unwrap(),
            EncodingKey::from_secret(&[7u8; 48]).unwrap(),
        ),
        (
            J::HS512,
            VerificationKey::hmac(Algorithm::HS512, [9u8; 64]).unwrap(),
            EncodingKey::from_secret(&[9u8; 64]).unwrap(),
        ),
        (
            J::RS256,
            VerificationKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC).unwrap(),
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ),
        (
            J::RS384,
            VerificationKey::rsa_der(Algorithm::RS384, RSA_PUBLIC_DER).unwrap(),
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ),
        (
            J::RS512,
            VerificationKey::rsa_der(Algorithm::RS512, RSA_PUBLIC_PKCS1_DER).unwrap(),
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ),
        (
            J::PS256,
            VerificationKey::rsa_pem(Algorithm::PS256, RSA_PUBLIC).unwrap(),
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ),
        (
            J::ES256,
            VerificationKey::ec_pem(Algorithm::ES256, EC256_PUBLIC).unwrap(),
            EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap(),
        ),
        (
            J::ES256,
            VerificationKey::ec_der(Algorithm::ES256, EC256_PUBLIC_DER).unwrap(),
            EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap(),
        ),
        (
            J::ES384,
            VerificationKey::ec_pem(Algorithm::ES384, EC384_PUBLIC).unwrap(),
            EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap(),
        ),
        (
            J::EdDSA,
            VerificationKey::ed_pem(Algorithm::EdDSA, ED_PUBLIC).unwrap(),
            EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        ),
        (
            J::EdDSA,
            VerificationKey::ed_der(Algorithm::EdDSA, ED_PUBLIC_DER).unwrap(),
            EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        ),
    ];
    for (alg, verification, signing) in cases {
        let name = verification.algorithm().as_str();
        let layer = JwtAuthLayer::builder()
            .key(verification)
            .clock(|| NOW)
            .build()
            .unwrap();
        let token = sign(
            alg,
            json!({ "alg": name, "typ": "JWT" }),
            claims(),
            &signing,
        );
        let response = send(&layer, bearer(&token)).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{name}: {:?}",
            error_of(&response)
        );
        // A tampered payload fails in every family.
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let mut other = claims();
        other["sub"] = json!("admin");
        let tampered = format!(
            "{head}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap())
        );
        let response = send(&layer, bearer(&tampered)).await;
        assert_eq!(
            error_of(&response),
            Some(&JwtError::InvalidSignature),
            "{name}"
        );
    }
}

// Keys from JWK members (what a JWKS source builds) verify like PEM keys.
#[tokio::test]
async fn keys_from_jwk_components() {
    use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
    let cases = [
        (J::RS256, EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap()),
        (J::ES256, EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap()),
        (J::ES384, EncodingKey::from_ec_pem(EC384_PRIVATE).unwrap()),
        (J::EdDSA, EncodingKey::from_ed_pem(ED_PRIVATE).unwrap()),
    ];
    for (alg, signing) in cases {
        let jwk = Jwk::from_encoding_key(&signing, alg).unwrap();
        let ours = Algorithm::from_name(&format!("{alg:?}")).unwrap();
        let key = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => VerificationKey::rsa_components(ours, &p.n, &p.e),
            AlgorithmParameters::EllipticCurve(p) => {
                VerificationKey::ec_components(ours, &p.x, &p.y)
            }
            AlgorithmParameters::OctetKeyPair(p) => VerificationKey::ed_components(ours, &p.x),
            other => panic!("unexpected {other:?}"),
        }
        .unwrap();
        let layer = JwtAuthLayer::builder()
            .key(key)
            .clock(|| NOW)
            .build()
            .unwrap();
        let token = sign(alg, json!({ "alg": ours.as_str() }), claims(), &signing);
        assert_ok(&layer, &token).await;
        if let AlgorithmParameters::EllipticCurve(p) = &jwk.algorithm {
            let wrong = if ours == Algorithm::ES256 {
                Algorithm::ES384
            } else {
                Algorithm::ES256
            };
            assert!(VerificationKey::ec_components(wrong, &p.x, &p.y).is_err());
        }
    }
    assert!(VerificationKey::ed_components(Algorithm::EdDSA, "AAAA").is_err());
    assert!(VerificationKey::rsa_components(Algorithm::RS256, "n!", "AQAB").is_err());
}

// ---------------------------------------------------------------- header

// RFC 8725 §3.10: `jwk`, `jku`, `x5u`, `x5c` are never used to find keys.
#[tokio::test]
async fn key_hints_in_the_header_are_ignored() {
    let layer = builder().build().unwrap();
    // A token signed with the attacker's own secret, pointing at it.
    let attacker = EncodingKey::from_secret(b"attacker-secret-attacker-secret!").unwrap();
    let header = json!({
        "alg": "HS256",
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "jwk": { "kty": "oct", "k": URL_SAFE_NO_PAD.encode(b"attacker-secret-attacker-secret!") },
        "x5c": ["MIIB"],
    });
    let forged = sign(J::HS256, header.clone(), claims(), &attacker);
    assert_invalid(&layer, &forged, JwtError::InvalidSignature).await;
    // The same hints on a genuine token change nothing.
    assert_ok(&layer, &hs_with_header(header, claims())).await;
}

// RFC 8725 §3.10: `kid` is an exact, case-sensitive lookup key.
#[tokio::test]
async fn kid_is_an_exact_case_sensitive_lookup() {
    let other_secret = [3u8; 32];
    let layer = JwtAuthLayer::builder()
        .key(
            VerificationKey::hmac(Algorithm::HS256, SECRET)
                .unwrap()
                .with_kid("key-a"),
        )
        .key(
            VerificationKey::hmac(Algorithm::HS256, other_secret)
                .unwrap()
                .with_kid("key-b"),
        )
        .clock(|| NOW)
        .build()
        .unwrap();
    let a = hs_with_header(json!({ "alg": "HS256", "kid": "key-a" }), claims());
    assert_ok(&layer, &a).await;
    let b = sign(
        J::HS256,
        json!({ "alg": "HS256", "kid": "key-b" }),
        claims(),
        &EncodingKey::from_secret(&other_secret).unwrap(),
    );
    assert_ok(&layer, &b).await;
    for kid in ["KEY-A", "key-a ", "key", ""] {
        let token = hs_with_header(json!({ "alg": "HS256", "kid": kid }), claims());
        assert_invalid(&layer, &token, JwtError::UnknownKey).await;
    }
    // key-a's token relabelled as key-b: verified with key-b, fails.
    let relabelled = hs_with_header(json!({ "alg": "HS256", "kid": "key-b" }), claims());
    assert_invalid(&layer, &relabelled, JwtError::InvalidSignature).await;
    // Without a kid and two candidate keys, there is no key to pick.
    assert_invalid(&layer, &hs(claims()), JwtError::UnknownKey).await;
}

// RFC 7515 §4.1.11: a header with `crit` is rejected, even when empty.
#[tokio::test]
async fn crit_header_is_rejected_even_when_empty() {
    let layer = builder().build().unwrap();
    for crit in [json!(["exp"]), json!([]), json!(null), json!("b64")] {
        let token = hs_with_header(json!({ "alg": "HS256", "crit": crit }), claims());
        assert_invalid(&layer, &token, JwtError::CriticalHeader).await;
    }
}

// RFC 8725 §2.8 / RFC 7515 §4: a header member given twice (an `alg`
// smuggled past a lenient parser) is malformed, never "last one wins".
#[tokio::test]
async fn duplicate_header_members_are_rejected() {
    let layer = builder().build().unwrap();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    for header in [
        r#"{"alg":"HS256","alg":"none"}"#,
        r#"{"alg":"HS256","kid":"a","kid":"b"}"#,
    ] {
        let header = URL_SAFE_NO_PAD.encode(header);
        let message = format!("{header}.{payload}");
        let signature = sign_rustcrypto(message.as_bytes(), &hs_key(), J::HS256).unwrap();
        assert_invalid(
            &layer,
            &format!("{message}.{signature}"),
            JwtError::Malformed("header is not a JSON object"),
        )
        .await;
    }
}

// Security review finding / RFC 7515 §4 and RFC 7519 §7.2 (steps 3-4, 10):
// the JOSE header and the claims are UTF-8 JSON. A correctly signed token
// with an invalid UTF-8 byte in a member nobody reads is malformed, not
// accepted.
#[tokio::test]
async fn header_and_claims_must_be_utf8() {
    let layer = builder().build().unwrap();
    let sign_raw = |header: &[u8], payload: &[u8]| {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = sign_rustcrypto(message.as_bytes(), &hs_key(), J::HS256).unwrap();
        format!("{message}.{signature}")
    };
    let payload = serde_json::to_vec(&claims()).unwrap();
    for bad in [&b"\xff"[..], b"\xc3\x28", b"\xed\xa0\x80"] {
        let mut header = br#"{"alg":"HS256","x":""#.to_vec();
        header.extend_from_slice(bad);
        header.extend_from_slice(br#""}"#);
        assert_invalid(
            &layer,
            &sign_raw(&header, &payload),
            JwtError::Malformed("header is not UTF-8"),
        )
        .await;

        let mut claims = payload[..payload.len() - 1].to_vec();
        claims.extend_from_slice(br#","note":""#);
        claims.extend_from_slice(bad);
        claims.extend_from_slice(br#""}"#);
        assert_invalid(
            &layer,
            &sign_raw(br#"{"alg":"HS256"}"#, &claims),
            JwtError::Malformed("claims are not UTF-8"),
        )
        .await;
    }
}

// RFC 9068 §4: `typ` checked when configured, case-insensitively, with an
// implied `application/` prefix.
#[tokio::test]
async fn typ_is_checked_when_configured() {
    let layer = builder().typ("at+jwt").build().unwrap();
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        let token = hs_with_header(json!({ "alg": "HS256", "typ": typ }), claims());
        assert_ok(&layer, &token).await;
    }
    for typ in ["JWT", "application/jwt", "at+jwt2", "applicationat+jwt"] {
        let token = hs_with_header(json!({ "alg": "HS256", "typ": typ }), claims());
        assert_invalid(&layer, &token, JwtError::WrongType).await;
    }
    // Regression (review): a `typ` whose 12th byte falls inside a character
    // panicked while the `application/` prefix was compared.
    for typ in ["applicationé", "aaaaaaaaaaaé", "ééééééé", "application/é"] {
        let token = hs_with_header(json!({ "alg": "HS256", "typ": typ }), claims());
        assert_invalid(&layer, &token, JwtError::WrongType).await;
    }
    let untyped = hs_with_header(json!({ "alg": "HS256" }), claims());
    assert_invalid(&layer, &untyped, JwtError::WrongType).await;
    // Not configured: any typ passes.
    let relaxed = builder().build().unwrap();
    assert_ok(&relaxed, &untyped).await;
}

// RFC 7515 §4: the JOSE header is a JSON object. Regression (review): an
// array was read by position (`["HS256"]` as `alg`), and a trusted key's
// signature over it was accepted.
#[tokio::test]
async fn a_header_that_is_not_an_object_is_malformed() {
    let layer = builder().build().unwrap();
    for header in [
        json!(["HS256"]),
        json!(["HS256", null, "JWT"]),
        json!("HS256"),
    ] {
        let token = hs_with_header(header, claims());
        assert_invalid(
            &layer,
            &token,
            JwtError::Malformed("header is not a JSON object"),
        )
        .await;
    }
}

// RFC 7515 §7.1 / RFC 7516: exactly three segments; JWE (five segments,
// `enc`) and `zip` are rejected.
#[tokio::test]
async fn segments_jwe_and_zip() {
    let layer = builder().build().unwrap();
    let token = hs(claims());
    let (head, rest) = token.split_once('.').unwrap();
    assert_invalid(
        &layer,
        &format!("{head}.{rest}.extra"),
        JwtError::Malformed("not three segments"),
    )
    .await;
    assert_invalid(&layer, head, JwtError::Malformed("not three segments")).await;
    assert_invalid(
        &layer,
        &format!("{head}.x"),
        JwtError::Malformed("not three segments"),
    )
    .await;
    let jwe_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
    assert_invalid(
        &layer,
        &format!("{jwe_header}.a.b.c.d"),
        JwtError::Encrypted,
    )
    .await;
    let enc = hs_with_header(json!({ "alg": "HS256", "enc": "A256GCM" }), claims());
    assert_invalid(&layer, &enc, JwtError::Encrypted).await;
    let zip = hs_with_header(json!({ "alg": "HS256", "zip": "DEF" }), claims());
    assert_invalid(&layer, &zip, JwtError::Compressed).await;
}

// Token length is capped before any decoding (default 8 KiB).
#[tokio::test]
async fn token_longer_than_the_cap_is_rejected_before_decoding() {
    let layer = builder().build().unwrap();
    // 8 KiB + 1 of garbage: rejected for its length, not its shape.
    let long = "a".repeat(DEFAULT_MAX_TOKEN_LENGTH + 1);
    assert_invalid(&layer, &long, JwtError::TooLong { max: 8192 }).await;
    let at_cap = "a".repeat(DEFAULT_MAX_TOKEN_LENGTH);
    assert_invalid(&layer, &at_cap, JwtError::Malformed("not three segments")).await;

    // A genuine token just over a configured cap.
    let token = hs(claims());
    let small = builder().max_token_length(token.len() - 1).build().unwrap();
    assert_invalid(
        &small,
        &token,
        JwtError::TooLong {
            max: token.len() - 1,
        },
    )
    .await;
    let exact = builder().max_token_length(token.len()).build().unwrap();
    assert_ok(&exact, &token).await;
}

// ---------------------------------------------------------------- claims

// RFC 7519 §4.1.4/§4.1.5: `exp` required, `nbf` checked, leeway
// configurable (default 60 s).
#[tokio::test]
async fn exp_required_nbf_checked_with_leeway() {
    let layer = builder().build().unwrap();
    assert_invalid(
        &layer,
        &hs(json!({ "sub": "u" })),
        JwtError::MissingClaim("exp".into()),
    )
    .await;
    // Default leeway 60 s.
    assert_ok(&layer, &hs(json!({ "exp": NOW - 59 }))).await;
    assert_invalid(&layer, &hs(json!({ "exp": NOW - 61 })), JwtError::Expired).await;
    assert_ok(&layer, &hs(json!({ "exp": NOW + 60, "nbf": NOW + 59 }))).await;
    assert_invalid(
        &layer,
        &hs(json!({ "exp": NOW + 600, "nbf": NOW + 61 })),
        JwtError::NotYetValid,
    )
    .await;
    // Fractional NumericDates are numbers too.
    assert_ok(&layer, &hs(json!({ "exp": (NOW + 600) as f64 + 0.5 }))).await;

    let strict = builder().leeway(Duration::ZERO).build().unwrap();
    assert_invalid(&strict, &hs(json!({ "exp": NOW })), JwtError::Expired).await;
    assert_ok(&strict, &hs(json!({ "exp": NOW + 1 }))).await;
    assert_invalid(
        &strict,
        &hs(json!({ "exp": NOW + 60, "nbf": NOW + 1 })),
        JwtError::NotYetValid,
    )
    .await;

    assert_eq!(
        builder()
            .leeway(Duration::from_secs(301))
            .build()
            .unwrap_err()
            .field(),
        "leeway"
    );
}

// GHSA-h395-gr6q-cpjc: a non-numeric `exp`/`nbf`/`iat` is rejected, not
// ignored.
#[tokio::test]
async fn non_numeric_dates_are_rejected() {
    let layer = builder().build().unwrap();
    let bad = [
        ("exp", json!({ "exp": (NOW + 600).to_string() })),
        ("exp", json!({ "exp": null })),
        ("nbf", json!({ "exp": NOW + 600, "nbf": "0" })),
        ("nbf", json!({ "exp": NOW + 600, "nbf": true })),
        ("iat", json!({ "exp": NOW + 600, "iat": "yesterday" })),
        ("iat", json!({ "exp": NOW + 600, "iat": [NOW] })),
    ];
    for (claim, claims) in bad {
        assert_invalid(&layer, &hs(claims), JwtError::InvalidClaim(claim)).await;
    }
    // A repeated registered claim is refused rather than "last one wins".
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
    let payload =
        URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{},"exp":{}}}"#, NOW - 9999, NOW + 600));
    let message = format!("{header}.{payload}");
    let signature = sign_rustcrypto(message.as_bytes(), &hs_key(), J::HS256).unwrap();
    assert_invalid(
        &layer,
        &format!("{message}.{signature}"),
        JwtError::InvalidClaim("exp"),
    )
    .await;
}

// RFC 7519 §4.1.1/§4.1.3, RFC 8725 §3.8-3.9: `iss` and `aud` exact-match a
// configured set and are required when configured.
#[tokio::test]
async fn issuer_and_audience_exact_match_and_required() {
    let layer = builder()
        .issuer("https://idp.example.com")
        .issuer("https://other.example.com")
        .audience("orders")
        .build()
        .unwrap();
    let with = |iss: Value, aud: Value| {
        let mut c = json!({ "exp": NOW + 600 });
        if !iss.is_null() {
            c["iss"] = iss;
        }
        if !aud.is_null() {
            c["aud"] = aud;
        }
        hs(c)
    };
    assert_ok(
        &layer,
        &with(json!("https://idp.example.com"), json!("orders")),
    )
    .await;
    assert_ok(
        &layer,
        &with(
            json!("https://other.example.com"),
            json!(["billing", "orders"]),
        ),
    )
    .await;
    assert_invalid(
        &layer,
        &with(Value::Null, json!("orders")),
        JwtError::MissingClaim("iss".into()),
    )
    .await;
    assert_invalid(
        &layer,
        &with(json!("https://idp.example.com"), Value::Null),
        JwtError::MissingClaim("aud".into()),
    )
    .await;
    for iss in ["https://IDP.example.com", "https://idp.example.com/", "idp"] {
        assert_invalid(
            &layer,
            &with(json!(iss), json!("orders")),
            JwtError::WrongIssuer,
        )
        .await;
    }
    for aud in [json!("Orders"), json!(["billing"]), json!([])] {
        assert_invalid(
            &layer,
            &with(json!("https://idp.example.com"), aud),
            JwtError::WrongAudience,
        )
        .await;
    }
    assert_invalid(
        &layer,
        &with(json!(42), json!("orders")),
        JwtError::InvalidClaim("iss"),
    )
    .await;
}

#[tokio::test]
async fn required_claims_of_any_name() {
    let layer = builder()
        .require_claim("jti")
        .require_claim("tenant")
        .build()
        .unwrap();
    assert_ok(
        &layer,
        &hs(json!({ "exp": NOW + 600, "jti": "1", "tenant": "t" })),
    )
    .await;
    assert_invalid(
        &layer,
        &hs(json!({ "exp": NOW + 600, "jti": "1" })),
        JwtError::MissingClaim("tenant".into()),
    )
    .await;
    assert_invalid(
        &layer,
        &hs(json!({ "exp": NOW + 600, "tenant": "t" })),
        JwtError::MissingClaim("jti".into()),
    )
    .await;
}

#[tokio::test]
async fn custom_claims_type_and_subject_and_scopes() {
    #[derive(serde::Deserialize)]
    struct Mine {
        sub: String,
        tenant: String,
    }
    let layer = builder().claims::<Mine>().build().unwrap();
    let service = layer.layer(service_fn(|req: Request<String>| async move {
        let claims = req.extensions().get::<Claims<Mine>>().unwrap();
        let subject = req.extensions().get::<Subject>().unwrap();
        let scopes = req.extensions().get::<Scopes>().unwrap();
        assert_eq!(subject.as_str(), claims.sub);
        Ok::<_, Infallible>(Response::new(format!(
            "{}@{} {:?}",
            claims.sub, claims.tenant, scopes
        )))
    }));
    let token = hs(json!({ "sub": "ann", "tenant": "acme", "exp": NOW + 600, "scp": ["a", "b"] }));
    let response = service.clone().oneshot(bearer(&token)).await.unwrap();
    assert_eq!(body(response).await, r#"ann@acme ["a", "b"]"#);

    // Claims that do not fit the type: rejected, the log says why.
    let token = hs(json!({ "sub": "ann", "exp": NOW + 600 }));
    let response = service.oneshot(bearer(&token)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(matches!(error_of(&response), Some(JwtError::ClaimsType(_))));
}

#[tokio::test]
async fn standard_claims_keep_registered_and_extra_claims() {
    let layer = builder().build().unwrap();
    let service = layer.layer(service_fn(|req: Request<String>| async move {
        let claims = req.extensions().get::<Claims>().unwrap().clone();
        Ok::<_, Infallible>(Response::new(
            serde_json::to_string(&json!({
                "sub": claims.sub, "aud": claims.aud, "exp": claims.exp, "scp": claims.scp,
                "scope": claims.scope, "tenant": claims.extra.get("tenant"),
            }))
            .unwrap(),
        ))
    }));
    let token =
        hs(json!({ "sub": "s", "aud": "one", "exp": NOW + 600, "scp": "x y", "tenant": "t" }));
    let text = body(service.oneshot(bearer(&token)).await.unwrap()).await;
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value,
        json!({ "sub": "s", "aud": ["one"], "exp": NOW + 600, "scp": ["x y"], "scope": null, "tenant": "t" })
    );
}

// Scopes: `scope` as a space-separated string or `scp` as an array.
#[tokio::test]
async fn scopes_from_scope_string_or_scp_array() {
    let layer = builder().build().unwrap();
    for (claims, expected) in [
        (json!({ "exp": NOW + 600, "scope": "a  b c" }), "a,b,c"),
        (json!({ "exp": NOW + 600, "scp": ["a", "b"] }), "a,b"),
        (json!({ "exp": NOW + 600, "scp": "a b" }), "a,b"),
        (json!({ "exp": NOW + 600 }), ""),
    ] {
        let response = send(&layer, bearer(&hs(claims))).await;
        assert_eq!(
            body(response).await,
            format!("sub=- scopes={expected} claims=true")
        );
    }
}

// ---------------------------------------------------------------- modes

#[tokio::test]
async fn optional_mode_lets_anonymous_requests_pass_but_not_bad_tokens() {
    let layer = builder().optional().query_parameter(true).build().unwrap();
    let response = send(&layer, Request::new(String::new())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await, "sub=- scopes=- claims=false");

    let response = send(&layer, bearer(&hs(claims()))).await;
    assert_eq!(
        body(response).await,
        "sub=user-1 scopes=read,write claims=true"
    );

    let response = send(&layer, bearer("not-a-token")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let expired = hs(json!({ "exp": NOW - 3600 }));
    assert_eq!(
        send(&layer, bearer(&expired)).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let token = hs(claims());
    let twice = Request::builder()
        .uri(format!("/?access_token={token}"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    assert_eq!(send(&layer, twice).await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn require_scope_layer_checks_per_route() {
    let auth = builder().optional().build().unwrap();
    let scope = RequireScopeLayer::builder()
        .scope("write")
        .scope("read")
        .build()
        .unwrap();
    let service = auth.layer(scope.layer(service_fn(echo)));

    let ok = service
        .clone()
        .oneshot(bearer(&hs(claims())))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let mut read_only = claims();
    read_only["scope"] = json!("read");
    let response = service
        .clone()
        .oneshot(bearer(&hs(read_only)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.headers()[WWW_AUTHENTICATE],
        r#"Bearer realm="api", error="insufficient_scope", scope="write read""#
    );

    let anonymous = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()[WWW_AUTHENTICATE],
        r#"Bearer realm="api""#
    );
}

// gRPC: missing/invalid token → grpc-status 16, insufficient scope → 7,
// HTTP 200 trailers-only, never 401/403.
#[tokio::test]
async fn grpc_requests_get_status_16_and_7() {
    let layer = builder().require_scope("admin").build().unwrap();
    let grpc = |auth: Option<String>| {
        let mut builder = Request::builder()
            .method("POST")
            .uri("/pkg.Service/Method")
            .version(http::Version::HTTP_2)
            .header(CONTENT_TYPE, "application/grpc")
            .header("te", "trailers");
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth);
        }
        builder.body(String::new()).unwrap()
    };
    let cases = [
        (None, "16"),
        (Some("Bearer x.y.z".to_owned()), "16"),
        (
            Some(format!("Bearer {}", hs(json!({ "exp": NOW - 3600 })))),
            "16",
        ),
        (Some(format!("Bearer {}", hs(claims()))), "7"),
    ];
    for (auth, status) in cases {
        let response = send(&layer, grpc(auth)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], status);
        assert!(response.headers().contains_key("grpc-message"));
        assert!(body(response).await.is_empty());
    }
    // The per-route scope layer answers gRPC clients the same way.
    let scoped = builder().build().unwrap().layer(
        RequireScopeLayer::builder()
            .scope("admin")
            .build()
            .unwrap()
            .layer(service_fn(echo)),
    );
    let response = scoped
        .clone()
        .oneshot(grpc(Some(format!("Bearer {}", hs(claims())))))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "7");
    let mut admin = claims();
    admin["scope"] = json!("admin");
    let response = scoped
        .oneshot(grpc(Some(format!("Bearer {}", hs(admin)))))
        .await
        .unwrap();
    assert!(response.headers().get("grpc-status").is_none());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes, "sub=user-1 scopes=admin claims=true");

    // Two tokens from a gRPC client: still Unauthenticated.
    let token = hs(claims());
    let mut request = grpc(Some(format!("Bearer {token}")));
    request.headers_mut().append(
        AUTHORIZATION,
        HeaderValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    let response = send(&layer, request).await;
    assert_eq!(response.headers()["grpc-status"], "16");
}

// ---------------------------------------------------------------- cache

/// A key source that counts lookups and can change generation or forget
/// its key.
#[derive(Clone)]
struct Counting {
    finds: Arc<AtomicUsize>,
    generation: Arc<AtomicU64>,
    key: Arc<VerificationKey>,
}

impl Counting {
    fn new() -> Self {
        Self {
            finds: Arc::new(AtomicUsize::new(0)),
            generation: Arc::new(AtomicU64::new(0)),
            key: Arc::new(VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap()),
        }
    }
    fn finds(&self) -> usize {
        self.finds.load(Ordering::SeqCst)
    }
}

impl KeySource for Counting {
    fn find(&self, _kid: Option<&str>, alg: Algorithm) -> KeyLookup {
        self.finds.fetch_add(1, Ordering::SeqCst);
        if alg == Algorithm::HS256 && self.generation.load(Ordering::SeqCst) < 100 {
            KeyLookup::Found(Arc::clone(&self.key))
        } else {
            KeyLookup::UnknownKid
        }
    }
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

fn counting_layer(source: &Counting, clock: &Arc<AtomicI64>) -> JwtAuthLayerBuilder {
    let clock = Arc::clone(clock);
    JwtAuthLayer::builder()
        .key_source(source.clone())
        .algorithms([Algorithm::HS256])
        .clock(move || clock.load(Ordering::SeqCst))
}

// Crypto work is cached: a repeated token skips verification, and
// every clone of the service shares the one cache.
#[tokio::test]
async fn cache_is_shared_by_every_clone_and_skips_verification() {
    let source = Counting::new();
    let clock = Arc::new(AtomicI64::new(NOW));
    let layer = counting_layer(&source, &clock).build().unwrap();
    let service = layer.layer(service_fn(echo));
    let token = hs(claims());

    let mut first = service.clone();
    let response = first
        .ready()
        .await
        .unwrap()
        .call(bearer(&token))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(source.finds(), 1);

    // Another clone (another connection) is served from the same cache.
    let mut second = service.clone();
    let response = second
        .ready()
        .await
        .unwrap()
        .call(bearer(&token))
        .await
        .unwrap();
    assert_eq!(
        body(response).await,
        "sub=user-1 scopes=read,write claims=true"
    );
    assert_eq!(source.finds(), 1);
    assert_eq!(service.cached_tokens(), 1);
    assert_eq!(first.cached_tokens(), 1);
    assert_eq!(layer.cached_tokens(), 1);
}

// The cache honours `exp`: an expired token is never served from it.
#[tokio::test]
async fn cache_honours_expiry() {
    let source = Counting::new();
    let clock = Arc::new(AtomicI64::new(NOW));
    let layer = counting_layer(&source, &clock)
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    let token = hs(json!({ "sub": "u", "exp": NOW + 10 }));
    assert_eq!(send(&layer, bearer(&token)).await.status(), StatusCode::OK);
    clock.store(NOW + 9, Ordering::SeqCst);
    assert_eq!(send(&layer, bearer(&token)).await.status(), StatusCode::OK);
    assert_eq!(source.finds(), 1);
    clock.store(NOW + 10, Ordering::SeqCst);
    let response = send(&layer, bearer(&token)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&response), Some(&JwtError::Expired));
    assert_eq!(
        source.finds(),
        2,
        "verified again, not served from the cache"
    );
}

#[tokio::test]
async fn cache_ttl_and_off_switch() {
    let source = Counting::new();
    let clock = Arc::new(AtomicI64::new(NOW));
    let layer = counting_layer(&source, &clock)
        .cache_ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let token = hs(claims());
    send(&layer, bearer(&token)).await;
    clock.store(NOW + 29, Ordering::SeqCst);
    send(&layer, bearer(&token)).await;
    assert_eq!(source.finds(), 1);
    clock.store(NOW + 30, Ordering::SeqCst);
    assert_eq!(send(&layer, bearer(&token)).await.status(), StatusCode::OK);
    assert_eq!(source.finds(), 2);

    let off_source = Counting::new();
    let off = counting_layer(&off_source, &clock)
        .cache(false)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(send(&off, bearer(&token)).await.status(), StatusCode::OK);
    }
    assert_eq!(off_source.finds(), 3);
    assert_eq!(off.cached_tokens(), 0);
}

// A TTL below one second would cache nothing (the cache counts whole
// seconds): `build` refuses it instead of silently turning the cache off.
#[tokio::test]
async fn sub_second_cache_ttl_is_refused() {
    for ttl in [
        Duration::ZERO,
        Duration::from_millis(500),
        Duration::from_millis(999),
    ] {
        let err = builder().cache_ttl(ttl).build().unwrap_err();
        assert_eq!(err.field(), "cache_ttl", "{ttl:?}");
    }
    // Irrelevant with the cache off.
    builder()
        .cache(false)
        .cache_ttl(Duration::from_millis(500))
        .build()
        .unwrap();
    // One second is the shortest TTL, and it does cache.
    let source = Counting::new();
    let clock = Arc::new(AtomicI64::new(NOW));
    let layer = counting_layer(&source, &clock)
        .cache_ttl(Duration::from_secs(1))
        .build()
        .unwrap();
    let token = hs(claims());
    for _ in 0..2 {
        assert_eq!(send(&layer, bearer(&token)).await.status(), StatusCode::OK);
    }
    assert_eq!(source.finds(), 1);
    assert_eq!(layer.cached_tokens(), 1);
}

// A token cached under one key set is not served once the set changed
// (generation), nor by another layer with other keys.
#[tokio::test]
async fn cache_never_serves_a_token_for_another_key_set() {
    let source = Counting::new();
    let clock = Arc::new(AtomicI64::new(NOW));
    let layer = counting_layer(&source, &clock).build().unwrap();
    let token = hs(claims());
    assert_eq!(send(&layer, bearer(&token)).await.status(), StatusCode::OK);
    // The key is removed from the set: generation changes.
    source.generation.store(100, Ordering::SeqCst);
    let response = send(&layer, bearer(&token)).await;
    assert_eq!(error_of(&response), Some(&JwtError::UnknownKey));

    // Another layer with another key does not see the first one's cache.
    let other = JwtAuthLayer::builder()
        .key(VerificationKey::hmac(Algorithm::HS256, [5u8; 32]).unwrap())
        .clock(|| NOW)
        .build()
        .unwrap();
    let warm = builder().build().unwrap();
    assert_eq!(send(&warm, bearer(&token)).await.status(), StatusCode::OK);
    let response = send(&other, bearer(&token)).await;
    assert_eq!(error_of(&response), Some(&JwtError::InvalidSignature));
}

// Memory is bounded: the cache never holds more than its capacity.
#[tokio::test]
async fn cache_memory_is_bounded() {
    let layer = builder().cache_capacity(32).build().unwrap();
    for i in 0..500 {
        let token = hs(json!({ "sub": format!("user-{i}"), "exp": NOW + 600 }));
        assert_eq!(send(&layer, bearer(&token)).await.status(), StatusCode::OK);
    }
    assert!(layer.cached_tokens() <= 32, "{}", layer.cached_tokens());
    assert!(layer.cached_tokens() > 0);
    // Small capacities too (not rounded up to the shard count).
    for capacity in [1, 3, 20] {
        let layer = builder().cache_capacity(capacity).build().unwrap();
        for i in 0..100 {
            let token = hs(json!({ "sub": format!("user-{i}"), "exp": NOW + 600 }));
            assert_eq!(send(&layer, bearer(&token)).await.status(), StatusCode::OK);
            assert!(layer.cached_tokens() <= capacity, "{capacity}");
        }
        assert!(layer.cached_tokens() > 0);
    }
    assert_eq!(
        builder().cache_capacity(0).build().unwrap_err().field(),
        "cache_capacity"
    );
}

// A failed verification is not cached and a cached token still gets the
// scope check.
#[tokio::test]
async fn cache_hits_still_check_scopes() {
    let layer = builder().require_scope("write").build().unwrap();
    let mut read_only = claims();
    read_only["scope"] = json!("read");
    let token = hs(read_only);
    for _ in 0..2 {
        assert_eq!(
            send(&layer, bearer(&token)).await.status(),
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(layer.cached_tokens(), 1);
    let bad = hs(json!({ "exp": NOW - 3600 }));
    send(&layer, bearer(&bad)).await;
    assert_eq!(layer.cached_tokens(), 1);
}

/// A remote-like source that knows its key only through a refresh, and
/// loses it to a second fetch right after the refresh looked it up: between
/// the lookup and the layer's next look at the generation.
#[derive(Clone, Default)]
struct SwappedAfterRefresh {
    generation: Arc<AtomicU64>,
    removed: Arc<AtomicBool>,
}

impl KeySource for SwappedAfterRefresh {
    fn find(&self, _kid: Option<&str>, _alg: Algorithm) -> KeyLookup {
        KeyLookup::UnknownKid
    }
    fn refresh(&self, _kid: Option<&str>, _alg: Algorithm) -> Option<KeyRefresh> {
        if self.removed.load(Ordering::SeqCst) {
            return None;
        }
        let (generation, removed) = (Arc::clone(&self.generation), Arc::clone(&self.removed));
        Some(Box::pin(async move {
            // The refresh's fetch publishes a set with the key...
            generation.fetch_add(1, Ordering::SeqCst);
            let lookup = KeyLookup::Found(Arc::new(
                VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap(),
            ));
            // ...and another fetch replaces it with a set without it.
            removed.store(true, Ordering::SeqCst);
            generation.fetch_add(1, Ordering::SeqCst);
            lookup
        }))
    }
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

// A token verified after a refresh is cached under the generation read
// before the lookup, so a key set swapped in between invalidates it.
#[tokio::test]
async fn token_verified_after_a_refresh_is_not_cached_past_a_later_swap() {
    let source = SwappedAfterRefresh::default();
    let layer = JwtAuthLayer::builder()
        .key_source(source.clone())
        .algorithms([Algorithm::HS256])
        .clock(|| NOW)
        .build()
        .unwrap();
    let token = hs(claims());
    assert_eq!(send(&layer, bearer(&token)).await.status(), StatusCode::OK);
    assert_eq!(source.generation(), 2);
    // The key is gone: the token is not served from the cache.
    let response = send(&layer, bearer(&token)).await;
    assert_eq!(error_of(&response), Some(&JwtError::UnknownKey));
}

// ----------------------------------------------------------- key sources

/// A remote-like source: unknown until refreshed.
#[derive(Clone)]
struct Refreshing {
    refreshed: Arc<AtomicUsize>,
    knows_after_refresh: bool,
}

impl KeySource for Refreshing {
    fn find(&self, _kid: Option<&str>, _alg: Algorithm) -> KeyLookup {
        KeyLookup::UnknownKid
    }
    fn refresh(&self, kid: Option<&str>, _alg: Algorithm) -> Option<KeyRefresh> {
        let refreshed = Arc::clone(&self.refreshed);
        let knows = self.knows_after_refresh && kid == Some("new");
        Some(Box::pin(async move {
            tokio::task::yield_now().await;
            refreshed.fetch_add(1, Ordering::SeqCst);
            if knows {
                KeyLookup::Found(Arc::new(
                    VerificationKey::hmac(Algorithm::HS256, SECRET)
                        .unwrap()
                        .with_kid("new"),
                ))
            } else {
                KeyLookup::UnknownKid
            }
        }))
    }
}

#[tokio::test]
async fn unknown_kid_asks_the_source_to_refresh() {
    let refreshed = Arc::new(AtomicUsize::new(0));
    let layer = JwtAuthLayer::builder()
        .key_source(Refreshing {
            refreshed: Arc::clone(&refreshed),
            knows_after_refresh: true,
        })
        .algorithms([Algorithm::HS256])
        .clock(|| NOW)
        .build()
        .unwrap();
    let token = hs_with_header(json!({ "alg": "HS256", "kid": "new" }), claims());
    let response = send(&layer, bearer(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body(response).await,
        "sub=user-1 scopes=read,write claims=true"
    );
    assert_eq!(refreshed.load(Ordering::SeqCst), 1);
    // Now cached: no second refresh.
    assert_eq!(send(&layer, bearer(&token)).await.status(), StatusCode::OK);
    assert_eq!(refreshed.load(Ordering::SeqCst), 1);

    let unknown = hs_with_header(json!({ "alg": "HS256", "kid": "other" }), claims());
    let response = send(&layer, bearer(&unknown)).await;
    assert_eq!(error_of(&response), Some(&JwtError::UnknownKey));
    assert_eq!(refreshed.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn closures_are_key_sources() {
    let key = Arc::new(VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap());
    let layer = JwtAuthLayer::builder()
        .key_source(move |kid: Option<&str>, _alg: Algorithm| match kid {
            Some("k1") => KeyLookup::Found(Arc::clone(&key)),
            _ => KeyLookup::UnknownKid,
        })
        .algorithms([Algorithm::HS256])
        .clock(|| NOW)
        .build()
        .unwrap();
    assert_ok(
        &layer,
        &hs_with_header(json!({ "alg": "HS256", "kid": "k1" }), claims()),
    )
    .await;
    assert_invalid(&layer, &hs(claims()), JwtError::UnknownKey).await;
}

// ---------------------------------------------------------------- config

#[test]
fn bad_configuration_fails_at_build_naming_the_field() {
    assert_eq!(JwtAuthLayer::builder().build().unwrap_err().field(), "key");
    assert_eq!(
        VerificationKey::hmac(Algorithm::HS256, b"short")
            .unwrap_err()
            .field(),
        "key"
    );
    assert!(
        VerificationKey::hmac(Algorithm::HS384, SECRET).is_err(),
        "48 bytes needed"
    );
    assert!(VerificationKey::hmac(Algorithm::RS256, SECRET).is_err());
    assert!(VerificationKey::rsa_pem(Algorithm::HS256, RSA_PUBLIC).is_err());
    assert!(VerificationKey::rsa_pem(Algorithm::RS256, EC256_PUBLIC).is_err());
    assert!(VerificationKey::rsa_pem(Algorithm::RS256, b"not a pem").is_err());
    assert!(
        VerificationKey::ec_pem(Algorithm::ES384, EC256_PUBLIC).is_err(),
        "wrong curve"
    );
    assert!(VerificationKey::ec_pem(Algorithm::ES256, RSA_PUBLIC).is_err());
    assert!(VerificationKey::ed_pem(Algorithm::EdDSA, EC256_PUBLIC).is_err());
    assert!(VerificationKey::ed_der(Algorithm::EdDSA, [0u8; 31]).is_err());
    assert!(VerificationKey::ed_der(Algorithm::EdDSA, EC256_PUBLIC_DER).is_err());
    assert!(
        VerificationKey::ec_der(Algorithm::ES384, EC256_PUBLIC_DER).is_err(),
        "wrong curve"
    );
    assert!(VerificationKey::ec_der(Algorithm::ES256, ED_PUBLIC_DER).is_err());
    assert!(VerificationKey::rsa_der(Algorithm::RS256, b"").is_err());

    let key = || VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap();
    let err = JwtAuthLayer::builder()
        .key(key().with_kid("a"))
        .key(key().with_kid("a"))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "key");
    let err = JwtAuthLayer::builder()
        .key(key())
        .key(key())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "key");
    let err = JwtAuthLayer::builder()
        .key(key())
        .algorithms([Algorithm::RS256])
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "key");
    let err = JwtAuthLayer::builder()
        .key_source(StaticKeys::new())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "algorithms");
    let err = JwtAuthLayer::builder()
        .key(key())
        .key_source(StaticKeys::new())
        .algorithms([Algorithm::HS256])
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "key_source");
    assert_eq!(
        builder().max_token_length(0).build().unwrap_err().field(),
        "max_token_length"
    );
    assert_eq!(builder().typ("").build().unwrap_err().field(), "typ");
    assert_eq!(builder().issuer("").build().unwrap_err().field(), "issuer");
    assert_eq!(
        builder().audience("").build().unwrap_err().field(),
        "audience"
    );
    assert_eq!(
        builder()
            .authorization_header(false)
            .build()
            .unwrap_err()
            .field(),
        "authorization_header"
    );
}

// An RSA DER key is validated when it is built: PKCS#1 `RSAPublicKey` or an
// `rsaEncryption` SubjectPublicKeyInfo with a usable modulus and exponent.
#[tokio::test]
async fn rsa_der_keys_are_validated_when_built() {
    let garbage: &[&[u8]] = &[
        EC256_PUBLIC_DER,
        ED_PUBLIC_DER,
        // A SEQUENCE of one INTEGER, a SEQUENCE with a bad length, a bare tag.
        &[0x30, 0x03, 0x02, 0x01, 0x01],
        &[0x30, 0x82, 0xff, 0xff, 0x02, 0x01, 0x01],
        &[0x30],
        // The PKCS#1 key with a trailing byte, and truncated.
        &[RSA_PUBLIC_PKCS1_DER, &[0]].concat(),
        &RSA_PUBLIC_PKCS1_DER[..RSA_PUBLIC_PKCS1_DER.len() - 1],
        &RSA_PUBLIC_DER[..RSA_PUBLIC_DER.len() - 1],
    ];
    for der in garbage {
        let err = VerificationKey::rsa_der(Algorithm::RS256, der).unwrap_err();
        assert_eq!(err.field(), "key", "{der:02x?}");
        assert!(err.message().contains("RSA DER"), "{err}");
    }
    // The SPKI of an RSA key whose algorithm is not rsaEncryption
    // (1.2.840.113549.1.1.1): its last arc changed to 2, which gives
    // 1.2.840.113549.1.1.2 (md2WithRSAEncryption).
    let mut wrong_oid = RSA_PUBLIC_DER.to_vec();
    let rsa_encryption = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let at = wrong_oid
        .windows(rsa_encryption.len())
        .position(|w| w == rsa_encryption)
        .unwrap();
    wrong_oid[at + 8] = 0x02;
    assert!(VerificationKey::rsa_der(Algorithm::RS256, &wrong_oid).is_err());

    let private = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    for der in [RSA_PUBLIC_PKCS1_DER, RSA_PUBLIC_DER] {
        let key = VerificationKey::rsa_der(Algorithm::PS256, der).unwrap();
        let layer = JwtAuthLayer::builder()
            .key(key)
            .clock(|| NOW)
            .build()
            .unwrap();
        let token = sign(J::PS256, json!({ "alg": "PS256" }), claims(), &private);
        assert_ok(&layer, &token).await;
    }
}

/// A PEM document of `der` under `label`.
fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
    .into_bytes()
}

/// The fixture key's PKCS#1 DER with the last byte of its modulus `n`
/// (just before `e` = 65537, `02 03 01 00 01`) made even.
fn even_modulus_pkcs1() -> Vec<u8> {
    let mut der = RSA_PUBLIC_PKCS1_DER.to_vec();
    assert!(der.ends_with(&[0x02, 0x03, 0x01, 0x00, 0x01]));
    let at = der.len() - 6;
    der[at] &= 0xfe;
    der
}

// An RSA PEM key goes through the checks of `rsa_der` once the PEM is
// decoded: a key the RSA verification refuses fails when it is built.
#[tokio::test]
async fn rsa_pem_keys_are_validated_when_built() {
    let garbage: &[&[u8]] = &[
        // What the PEM decoder already refused.
        EC256_PUBLIC,
        b"not a pem",
        // A private key, a SEQUENCE of one INTEGER and a key with an even
        // modulus, all labelled as RSA keys.
        RSA_PRIVATE,
        &pem("RSA PUBLIC KEY", &[0x30, 0x03, 0x02, 0x01, 0x01]),
        &pem("RSA PUBLIC KEY", &even_modulus_pkcs1()),
    ];
    for bad in garbage {
        let err = VerificationKey::rsa_pem(Algorithm::RS256, bad).unwrap_err();
        assert_eq!(err.field(), "key", "{}", String::from_utf8_lossy(bad));
        assert!(err.message().contains("RSA PEM"), "{err}");
    }

    let private = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    for good in [RSA_PUBLIC, &pem("RSA PUBLIC KEY", RSA_PUBLIC_PKCS1_DER)] {
        let key = VerificationKey::rsa_pem(Algorithm::RS256, good).unwrap();
        let layer = JwtAuthLayer::builder()
            .key(key)
            .clock(|| NOW)
            .build()
            .unwrap();
        let token = sign(J::RS256, json!({ "alg": "RS256" }), claims(), &private);
        assert_ok(&layer, &token).await;
    }
}

// RFC 7518 §6.3.1 members `n` and `e` are checked as the RSA verification
// will use them; a key it refuses fails when it is built, saying which.
#[test]
fn rsa_components_are_validated_when_built() {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let even_n = even_modulus_pkcs1();
    // PKCS#1: 30 82 01 0a 02 82 01 01 00 <256 bytes of n> 02 03 <e>.
    let (n, e) = (&RSA_PUBLIC_PKCS1_DER[9..265], &RSA_PUBLIC_PKCS1_DER[267..]);
    assert_eq!(e, [1, 0, 1]);
    VerificationKey::rsa_components(Algorithm::RS256, &b64(n), &b64(e)).unwrap();
    let cases = [
        (String::new(), b64(e), "`n` is empty"),
        (b64(n), String::new(), "`e` is empty"),
        ("n!".into(), b64(e), "`n` is not base64url"),
        (b64(n), "AQAB=".into(), "`e` is not base64url"),
        (b64(&even_n[9..265]), b64(e), "modulus"),
        (b64(n), b64(&[1]), "exponent"),
        (b64(n), b64(&[2]), "exponent"),
        (b64(n), b64(&[1, 0, 0]), "exponent"),
        // 1023 bits, odd: below the 1024 bits the verification accepts.
        (
            b64(&[&[0x7f][..], &[0xff; 127]].concat()),
            b64(e),
            "modulus",
        ),
        // An exponent longer than the modulus.
        (b64(n), b64(&[0xff; 300]), "modulus"),
    ];
    for (n, e, what) in cases {
        let err = VerificationKey::rsa_components(Algorithm::RS256, &n, &e).unwrap_err();
        assert_eq!(err.field(), "key", "n={n} e={e}");
        assert!(err.message().starts_with("RSA n/e: "), "{err}");
        assert!(err.message().to_lowercase().contains(what), "{what}: {err}");
    }
}

// The error says what failed, for logs; the client text stays generic.
#[test]
fn errors_say_what_failed() {
    assert_eq!(JwtError::Expired.to_string(), "token expired");
    assert_eq!(JwtError::WrongIssuer.to_string(), "issuer not accepted");
    assert_eq!(JwtError::InvalidSignature.to_string(), "invalid signature");
    assert_eq!(
        JwtError::AlgorithmNotAllowed(Algorithm::HS256).to_string(),
        "algorithm HS256 is not allowed"
    );
    assert_eq!(
        JwtError::MissingClaim("aud".into()).to_string(),
        "missing required claim `aud`"
    );
    assert!(JwtError::Duplicate.is_invalid_request());
    assert!(!JwtError::Expired.is_invalid_request());
}

#[test]
fn scopes_split_on_spaces() {
    let scopes = Scopes::new(["a b", "", "c"]);
    assert_eq!(scopes.as_str(), "a b c");
    assert_eq!(scopes.len(), 3);
    assert!(scopes.contains("b"));
    assert!(!scopes.contains("a b"));
    assert!(!scopes.contains(""));
    assert!(Scopes::new(Vec::<String>::new()).is_empty());
}

#[test]
fn algorithm_names_are_exact() {
    for alg in Algorithm::ALL {
        assert_eq!(Algorithm::from_name(alg.as_str()), Some(alg));
    }
    for name in ["none", "None", "NONE", "hs256", "RS256 ", "ES512", ""] {
        assert_eq!(Algorithm::from_name(name), None, "{name}");
    }
}

#[test]
fn typ_comparison() {
    use super::header::typ_matches;
    assert!(typ_matches("at+jwt", "application/AT+JWT"));
    assert!(typ_matches("application/at+jwt", "at+jwt"));
    assert!(!typ_matches("at+jwt", "jwt"));
    assert!(!typ_matches("at+jwt", "application/"));
}

// ---------------------------------------------------------------- axum

#[cfg(feature = "axum")]
mod axum_extractors {
    use super::*;
    use axum::Router;
    use axum::routing::get;

    async fn required(claims: Claims) -> String {
        claims.sub.clone().unwrap_or_default()
    }

    async fn optional(claims: Option<Claims>) -> String {
        claims.map_or("anonymous".into(), |c| c.sub.clone().unwrap_or_default())
    }

    fn app(layer: Option<JwtAuthLayer>) -> Router {
        let router = Router::new()
            .route("/required", get(required))
            .route("/optional", get(optional));
        match layer {
            Some(layer) => router.layer(layer),
            None => router,
        }
    }

    fn get_req(path: &str, token: Option<&str>) -> Request<axum::body::Body> {
        let mut builder = Request::builder().uri(path);
        if let Some(token) = token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn claims_extractors_reject_properly() {
        let layer = builder().optional().build().unwrap();
        let token = hs(claims());

        let response = app(Some(layer.clone()))
            .oneshot(get_req("/required", Some(&token)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);

        // Anonymous request on a route that needs claims: 401 + challenge.
        let response = app(Some(layer.clone()))
            .oneshot(get_req("/required", None))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="api""#
        );

        let response = app(Some(layer))
            .oneshot(get_req("/optional", None))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "anonymous");

        // No layer at all: a server misconfiguration, 500.
        let response = app(None)
            .oneshot(get_req("/required", Some(&token)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    async fn scopes(scopes: Scopes) -> String {
        scopes.as_str().to_owned()
    }

    async fn subject(subject: Subject) -> String {
        subject.to_string()
    }

    fn principal_app(layer: Option<JwtAuthLayer>) -> Router {
        let router = Router::new()
            .route("/scopes", get(scopes))
            .route("/subject", get(subject));
        match layer {
            Some(layer) => router.layer(layer),
            None => router,
        }
    }

    async fn status_and_challenge(
        layer: Option<JwtAuthLayer>,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, Option<HeaderValue>) {
        let response = principal_app(layer)
            .oneshot(get_req(path, token))
            .await
            .unwrap();
        let challenge = response.headers().get(WWW_AUTHENTICATE).cloned();
        (response.status(), challenge)
    }

    // Rejections are built in one place (`crate::rejection`): the layer's
    // own 401 with a custom body keeps `WWW-Authenticate` (RFC 6750 §3:
    // every 401 carries it).
    #[tokio::test]
    async fn a_custom_rejection_body_keeps_the_challenge() {
        use crate::rejection::{Problem, Rejections, RenderedBody};
        let rejections = Rejections::new(|p: &Problem| RenderedBody {
            content_type: HeaderValue::from_static("text/plain"),
            body: bytes::Bytes::from(p.title().to_owned()),
        });
        let layer = builder()
            .realm("shop")
            .rejections(rejections)
            .build()
            .unwrap();
        let response = principal_app(Some(layer))
            .oneshot(get_req("/scopes", Some("not.a.token")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert!(
            response.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains(r#"error="invalid_token""#)
        );
        assert_eq!(response.headers()["cache-control"], "no-store");
    }

    // Rejections are built in one place (`crate::rejection`): the extractors
    // answer as the layer does: with its custom `Rejections` (the challenge
    // kept), and as a trailers-only gRPC status 16 (UNAUTHENTICATED, gRPC
    // over HTTP/2 protocol spec) to a gRPC request, never an HTTP 401.
    #[tokio::test]
    async fn extractors_answer_with_the_layers_rejections_and_grpc() {
        use crate::rejection::{Problem, Rejections, RenderedBody};
        let rejections = Rejections::new(|p: &Problem| RenderedBody {
            content_type: HeaderValue::from_static("text/plain"),
            body: bytes::Bytes::from(p.title().to_owned()),
        });
        let layer = builder()
            .optional()
            .realm("shop")
            .rejections(rejections)
            .build()
            .unwrap();
        let no_sub = hs(json!({ "exp": NOW + 600, "scope": "read" }));
        for (path, token) in [("/scopes", None), ("/subject", Some(no_sub.as_str()))] {
            let response = principal_app(Some(layer.clone()))
                .oneshot(get_req(path, token))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(response.headers()["content-type"], "text/plain", "{path}");
            assert!(
                response.headers()[WWW_AUTHENTICATE]
                    .to_str()
                    .unwrap()
                    .starts_with(r#"Bearer realm="shop""#),
                "{path}"
            );

            let mut grpc = get_req(path, token);
            *grpc.version_mut() = http::Version::HTTP_2;
            grpc.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/grpc+proto"),
            );
            let response = principal_app(Some(layer.clone()))
                .oneshot(grpc)
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(response.headers()["grpc-status"], "16", "{path}");
            assert_eq!(
                response.headers()["content-type"],
                "application/grpc+proto",
                "{path}"
            );
        }
    }

    // `Scopes` and `Subject` answer like `Claims`: 401 with the layer's
    // challenge when the layer let the request through without them
    // (anonymous, or a token without `sub`), 500 only without the layer.
    #[tokio::test]
    async fn scopes_and_subject_extractors_answer_401_when_unauthenticated() {
        let layer = builder().optional().realm("shop").build().unwrap();
        let challenge = HeaderValue::from_static(r#"Bearer realm="shop""#);
        let token = hs(claims());
        let no_sub = hs(json!({ "exp": NOW + 600, "scope": "read" }));

        for path in ["/scopes", "/subject"] {
            let (status, _) = status_and_challenge(Some(layer.clone()), path, Some(&token)).await;
            assert_eq!(status, StatusCode::OK, "{path}");

            let anonymous = status_and_challenge(Some(layer.clone()), path, None).await;
            assert_eq!(
                anonymous,
                (StatusCode::UNAUTHORIZED, Some(challenge.clone())),
                "{path}"
            );

            let (status, challenge) = status_and_challenge(None, path, Some(&token)).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
            assert_eq!(challenge, None, "{path}");
        }

        // A valid token without `sub`: scopes yes, subject no. RFC 6750 §3:
        // 401 `invalid_token` (the token is unfit for this use), not the
        // bare "send a token" challenge the client already answered.
        let (status, _) = status_and_challenge(Some(layer.clone()), "/scopes", Some(&no_sub)).await;
        assert_eq!(status, StatusCode::OK);
        let no_subject = status_and_challenge(Some(layer), "/subject", Some(&no_sub)).await;
        assert_eq!(
            no_subject,
            (
                StatusCode::UNAUTHORIZED,
                Some(HeaderValue::from_static(
                    r#"Bearer realm="shop", error="invalid_token", error_description="the access token has no subject""#
                ))
            )
        );
    }

    // The `Claims` extractor of another claims type than the layer's is a
    // misconfiguration (500), even for a token without `sub`.
    #[tokio::test]
    async fn claims_of_another_type_stay_a_misconfiguration() {
        #[derive(serde::Deserialize)]
        struct Other {}
        async fn other(_claims: Claims<Other>) -> &'static str {
            "unreachable"
        }
        let layer = builder().optional().build().unwrap();
        let app = Router::new().route("/other", get(other)).layer(layer);
        let no_sub = hs(json!({ "exp": NOW + 600 }));
        let response = app.oneshot(get_req("/other", Some(&no_sub))).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
