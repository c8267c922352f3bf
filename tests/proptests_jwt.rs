//! Property tests of JWT token handling through the public layer: arbitrary
//! input never panics, never yields a 5xx, and nothing but a token signed
//! by the configured key is accepted.
//!
//! RFC 6750 §3.1: bad client input gets a clear answer (400 / 401), never a
//! panic or a 500 (RFC 9110 §15.5, §15.6). RFC 8725 §3.1: algorithms come
//! from the configuration; `none` is rejected; a token MACed with another
//! key is rejected.

use std::convert::Infallible;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, Response, StatusCode};
use proptest::prelude::*;
use tower::{Service, ServiceExt};
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, VerificationKey};
use tower_layer::Layer;

const SECRET: &[u8] = b"the configured HS256 secret, 32+ bytes";

/// An `exp` far in the future (2096).
const EXP: u64 = 4_000_000_000;
const VALID_PAYLOAD: &str = r#"{"sub":"u","exp":4000000000}"#;
/// Headers a correctly signed token may carry and pass: `jwk` is ignored,
/// never used to find a key (RFC 8725 §3.10).
const VALID_HEADERS: [&str; 3] = [
    r#"{"alg":"HS256","typ":"JWT"}"#,
    r#"{"alg":"HS256"}"#,
    r#"{"alg":"HS256","jwk":{"kty":"oct","k":"AAAA"}}"#,
];

fn send(authorization: HeaderValue) -> StatusCode {
    send_to(None, authorization)
}

/// [`send`] through a layer that requires `typ` when one is given.
fn send_to(typ: Option<&str>, authorization: HeaderValue) -> StatusCode {
    let mut builder =
        JwtAuthLayer::builder().key(VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap());
    if let Some(typ) = typ {
        builder = builder.typ(typ);
    }
    let layer = builder.build().unwrap();
    let mut service = layer.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let mut request = Request::new(());
    request
        .headers_mut()
        .insert(http::header::AUTHORIZATION, authorization);
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async { service.ready().await.unwrap().call(request).await.unwrap() })
        .status()
}

/// A compact JWS over the exact header and payload text, HMAC-SHA256 with
/// `secret` (jsonwebtoken's own signing: no extra dependency).
fn sign(secret: &[u8], header: &str, payload: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    // jsonwebtoken signs with its process default, which a build with both
    // of its providers (tower-edge's `aws-lc-rs` feature) does not have.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let signature = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
        jsonwebtoken::Algorithm::HS256,
    )
    .unwrap();
    format!("{signing_input}.{signature}")
}

fn json_header() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(VALID_HEADERS[0].to_owned()),
        Just(VALID_HEADERS[1].to_owned()),
        Just(VALID_HEADERS[2].to_owned()),
        Just(r#"{"alg":"none"}"#.to_owned()),
        Just(r#"{"alg":"NoNe"}"#.to_owned()),
        Just(r#"{"alg":"HS512"}"#.to_owned()),
        Just(r#"{"alg":"RS256"}"#.to_owned()),
        Just(r#"{"alg":"HS256","crit":[]}"#.to_owned()),
        Just(r#"{"alg":"HS256","zip":"DEF"}"#.to_owned()),
        Just(r#"{"alg":"HS256","kid":"other"}"#.to_owned()),
        Just(r#"{"alg":"HS256","alg":"none"}"#.to_owned()),
        Just(r#"{"alg":"HS256","enc":"A128GCM"}"#.to_owned()),
        "[ -~]{0,40}",
    ]
}

fn json_payload() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(VALID_PAYLOAD.to_owned()),
        Just(format!(r#"{{"sub":"u","exp":"{EXP}"}}"#)),
        Just(format!(r#"{{"sub":"u","exp":{EXP},"nbf":"0"}}"#)),
        Just(format!(r#"{{"sub":"u","exp":{EXP},"nbf":{EXP}}}"#)),
        Just(r#"{"sub":"u"}"#.to_owned()),
        Just(r#"{"sub":"u","exp":1}"#.to_owned()),
        Just(format!(r#"{{"sub":1,"exp":{EXP}}}"#)),
        "[ -~]{0,40}",
    ]
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        "[A-Za-z0-9_=+/-]{0,20}",
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Arbitrary header text never panics and never passes.
    #[test]
    fn arbitrary_authorization_values_are_rejected(
        value in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..120),
            "(Bearer|bearer|BEARER|Basic) [ -~]{0,100}".prop_map(String::into_bytes),
            "Bearer [A-Za-z0-9_-]{0,30}\\.[A-Za-z0-9_-]{0,30}\\.[A-Za-z0-9_-]{0,30}(\\.[A-Za-z0-9_-]{0,5}){0,3}".prop_map(String::into_bytes),
        ],
    ) {
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            return Ok(());
        };
        let status = send(value);
        prop_assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST,
            "{}", status
        );
    }

    // Well-formed JWS structure with arbitrary header, payload and
    // signature, or signed with another key: never accepted.
    #[test]
    fn unsigned_or_missigned_tokens_are_rejected(
        header in json_header(),
        payload in json_payload(),
        signature in segment(),
        other_secret in prop::collection::vec(any::<u8>(), 32..40),
    ) {
        let forged = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(&header),
            URL_SAFE_NO_PAD.encode(&payload),
            signature
        );
        let status = send(HeaderValue::from_str(&format!("Bearer {forged}")).unwrap());
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", forged);

        prop_assume!(other_secret != SECRET);
        let token = sign(&other_secret, &header, &payload);
        let status = send(HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", token);
    }

    // Signed with the configured key: accepted exactly when header and
    // claims are acceptable (so the two properties above can fail).
    #[test]
    fn tokens_signed_by_the_configured_key_pass_only_when_valid(
        header in json_header(),
        payload in json_payload(),
    ) {
        let token = sign(SECRET, &header, &payload);
        let status = send(HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        if VALID_HEADERS.contains(&header.as_str()) && payload == VALID_PAYLOAD {
            prop_assert_eq!(status, StatusCode::OK, "{}", token);
        } else {
            prop_assert_eq!(status, StatusCode::UNAUTHORIZED, "{} {}", header, payload);
        }
    }

    // Regression (review): a `typ` whose 12th byte fell inside a character
    // panicked in the `application/` prefix comparison. Any `typ` a
    // correctly signed token carries gets 200 or 401, never a panic.
    #[test]
    fn any_typ_is_answered_without_a_panic(
        typ in prop_oneof!["\\PC{0,16}", "application\\PC{0,4}", "(at\\+jwt|AT\\+JWT)"],
    ) {
        let header = serde_json::json!({ "alg": "HS256", "typ": typ }).to_string();
        let token = sign(SECRET, &header, VALID_PAYLOAD);
        let status = send_to(
            Some("at+jwt"),
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let expected = if typ.eq_ignore_ascii_case("at+jwt") {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        prop_assert_eq!(status, expected, "typ {:?}", typ);
    }
}
