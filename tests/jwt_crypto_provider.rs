//! The JWT layer verifies with jsonwebtoken's RustCrypto backend whatever
//! the process-wide jsonwebtoken `CryptoProvider` is.
//!
//! An application can end up with no usable process default: when it (or
//! another crate) enables jsonwebtoken's `aws_lc_rs` feature next to our
//! `rust_crypto`, Cargo unifies the features and jsonwebtoken has no single
//! default, so every call that goes through the default panics. This test
//! binary (a process of its own) installs a default whose verifier panics:
//! the layer must never reach it.

use std::convert::Infallible;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response, StatusCode};
use jsonwebtoken::crypto::{CryptoProvider, KeyUtils, rust_crypto};
use jsonwebtoken::{Algorithm as J, EncodingKey, Header};
use tower::{Layer, ServiceExt, service_fn};
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, VerificationKey};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &[u8] = include_bytes!("../src/jwt_auth/testdata/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../src/jwt_auth/testdata/rsa_public.pem");
const EC256_PRIVATE: &[u8] = include_bytes!("../src/jwt_auth/testdata/ec256_private.pem");
const EC256_PUBLIC: &[u8] = include_bytes!("../src/jwt_auth/testdata/ec256_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("../src/jwt_auth/testdata/ed25519_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("../src/jwt_auth/testdata/ed25519_public.pem");

/// Signs like RustCrypto (so the test can make tokens), but panics when
/// asked to verify, as jsonwebtoken does when it has no single default.
static NO_VERIFY: CryptoProvider = CryptoProvider {
    signer_factory: |alg, key| (rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key),
    verifier_factory: |_, _| panic!("the process-default CryptoProvider was used to verify"),
    key_utils: KeyUtils::new_unimplemented(),
};

#[tokio::test]
async fn verification_never_uses_the_process_default_provider() {
    NO_VERIFY
        .install_default()
        .expect("no default installed yet in this test process");
    let layer = JwtAuthLayer::builder()
        .key(
            VerificationKey::hmac(Algorithm::HS256, SECRET)
                .unwrap()
                .with_kid("hs"),
        )
        .key(
            VerificationKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC)
                .unwrap()
                .with_kid("rs"),
        )
        .key(
            VerificationKey::ec_pem(Algorithm::ES256, EC256_PUBLIC)
                .unwrap()
                .with_kid("es"),
        )
        .key(
            VerificationKey::ed_pem(Algorithm::EdDSA, ED_PUBLIC)
                .unwrap()
                .with_kid("ed"),
        )
        .build()
        .unwrap();
    let service = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let claims = serde_json::json!({ "sub": "ann", "exp": exp });
    let keys = [
        (J::HS256, "hs", EncodingKey::from_secret(SECRET).unwrap()),
        (
            J::RS256,
            "rs",
            EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        ),
        (
            J::ES256,
            "es",
            EncodingKey::from_ec_pem(EC256_PRIVATE).unwrap(),
        ),
        (
            J::EdDSA,
            "ed",
            EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        ),
    ];
    for (alg, kid, key) in keys {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        let request = |token: &str| {
            Request::builder()
                .header("authorization", format!("Bearer {token}"))
                .body(())
                .unwrap()
        };
        let response = service.clone().oneshot(request(&token)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{alg:?}");

        // A wrong signature is still a 401.
        let (message, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{message}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        let response = service.clone().oneshot(request(&forged)).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{alg:?}");
    }
}

mod support;

// Issue 26: the library that checks each algorithm's signatures is named in
// a debug line when a layer is built (RSA through aws-lc-rs with the
// `aws-lc-rs` feature, RustCrypto otherwise; EdDSA on RustCrypto always).
#[test]
fn building_a_layer_logs_the_library_of_each_algorithm() {
    support::logs::install();
    JwtAuthLayer::builder()
        .key(VerificationKey::rsa_pem(Algorithm::RS256, RSA_PUBLIC).unwrap())
        .key(VerificationKey::ed_pem(Algorithm::EdDSA, ED_PUBLIC).unwrap())
        .build()
        .unwrap();
    let logs = support::logs::captured();
    let rsa = if cfg!(feature = "aws-lc-rs") {
        "aws-lc-rs"
    } else {
        "RustCrypto"
    };
    let logged = |alg: &str, backend: &str| {
        logs.lines().any(|line| {
            line.contains("DEBUG")
                && line.contains(&format!("algorithm={alg}"))
                && line.contains(&format!("backend=\"{backend}\""))
        })
    };
    assert!(logged("RS256", rsa), "{logs}");
    assert!(logged("EdDSA", "RustCrypto"), "{logs}");
}
