//! What the crate logs about a request cannot forge log lines: error texts
//! that carry bytes from outside (a claim name from the token, a store's
//! message that may echo a key) are logged with Debug, which escapes
//! newlines and control characters (CWE-117).
//!
//! Layer-level, with the process-wide capturing subscriber of
//! `tests/support/logs.rs` (ANSI sanitization off: the test sees what the
//! crate emits, not what one subscriber repairs).

mod support;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, ServiceExt, service_fn};
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, VerificationKey};
use tower_edge::rate_limit::store::{Check, RateLimitStore, StoreError, StoreFuture};
use tower_edge::rate_limit::{LimitRateLayer, PeerAddr, Policy, Quota};

const SECRET: &[u8] = b"log-escaping-test-secret-32-byte";

/// A line break and a colour escape, then what a forged entry would say.
fn forged(marker: &str) -> String {
    format!("{marker}\n2026-01-01T00:00:00Z  INFO forged {marker}\u{1b}[31m")
}

/// Every captured line with `marker` also holds `message` (no line of its
/// own), at least `count` of them; and no raw ESC anywhere.
fn assert_escaped(marker: &str, message: &str, count: usize) {
    let logs = support::logs::captured();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(marker)).collect();
    assert!(lines.len() >= count, "{count} lines with {marker}: {logs}");
    for line in lines {
        assert!(line.contains(message), "a forged line: {line:?}");
        assert!(line.contains(&format!("forged {marker}")), "{line:?}");
    }
    assert!(
        !logs.contains('\u{1b}'),
        "a raw ESC reached the log: {logs:?}"
    );
}

async fn ok(_: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::default()))
}

// The claims type decides which claims exist; serde names an unknown one in
// its error (`unknown field ...`) as the token wrote it, and the layer logs
// that error at DEBUG when it rejects the token.
#[tokio::test]
async fn a_claim_name_in_a_rejected_token_is_logged_escaped() {
    support::logs::install();
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        sub: String,
        exp: u64,
    }
    let layer = JwtAuthLayer::builder()
        .key(VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .claims::<Strict>()
        .build()
        .unwrap();
    let mut claims = serde_json::json!({
        "sub": "ann",
        "exp": jsonwebtoken::get_current_timestamp() + 600,
    });
    claims[forged("forged-claim")] = serde_json::json!(1);
    // jsonwebtoken signs with its process default, which a build with both
    // of its providers (tower-edge's `aws-lc-rs` feature) does not have.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    let request = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let response = layer.layer(service_fn(ok)).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_escaped("forged-claim", "bearer token rejected", 1);
}

/// A store whose errors repeat the key they failed on, as a store may.
#[derive(Debug)]
struct EchoingStore;

impl RateLimitStore for EchoingStore {
    fn check(&self, _: Check<'_>) -> StoreFuture {
        StoreFuture::ready(Err(StoreError::new(format!(
            "no bucket for key {}",
            forged("forged-store")
        ))))
    }
}

// The first failure is logged at WARN, the next ones at DEBUG: both escaped.
#[tokio::test]
async fn a_store_error_is_logged_escaped() {
    support::logs::install();
    let layer = LimitRateLayer::builder()
        .policy(Policy::new("remote", Quota::per_minute(10)).store(EchoingStore))
        .build()
        .unwrap();
    let service = layer.layer(service_fn(ok));
    for _ in 0..2 {
        let mut request = Request::new(Full::default());
        request
            .extensions_mut()
            .insert(PeerAddr("192.0.2.1:1".parse().unwrap()));
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "fails open");
    }
    assert_escaped("forged-store", "rate-limit store failed", 2);
}
