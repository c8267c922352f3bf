//! Stateless JWT bearer authentication (RFC 6750, 7519, 7515, 8725, 9068)
//! and scope checks.
//!
//! [`JwtAuthLayer`] finds the access token (by default in
//! `Authorization: Bearer`), verifies it with keys from your configuration,
//! validates its claims and puts them in the request extensions:
//!
//! * [`Claims<T>`] for your claims type `T` (default [`StandardClaims`]);
//! * [`Subject`](crate::Subject) from `sub`, which the per-user rate limiter
//!   keys on;
//! * [`Scopes`] from `scope` / `scp`, which [`RequireScopeLayer`] checks.
//!
//! Rejections follow RFC 6750 §3 and go through [`crate::rejection`]:
//!
//! | situation | HTTP | gRPC |
//! |---|---|---|
//! | no token (required mode) | 401 `Bearer realm="api"` | 16 |
//! | bad, expired, wrongly signed token | 401 `Bearer realm="api", error="invalid_token", error_description="…"` | 16 |
//! | two tokens, `Bearer` without a token | 400 `error="invalid_request"` | 16 |
//! | missing scope | 403 `error="insufficient_scope", scope="…"` | 7 |
//!
//! Every rejection carries `Cache-Control: no-store`. The client only sees
//! these generic texts; what failed exactly ([`JwtError`]) is logged at
//! DEBUG level and stored in the rejection response's extensions.
//!
//! # Security rules
//!
//! * Algorithms come from the configuration, never from the token: the
//!   allow-list defaults to the algorithms of the configured keys, and each
//!   [`VerificationKey`] is bound to one algorithm. `none` cannot be
//!   configured.
//! * The header is decoded once by the layer itself: `crit` (even empty),
//!   `zip` and JWE (`enc`, five segments) are rejected; `jwk`, `jku`, `x5u`
//!   and `x5c` are never read. `kid` is an exact, case-sensitive lookup.
//! * The token length is capped (default 8 KiB) before any decoding.
//! * `exp` is required, `nbf` checked, both with a leeway (default 60 s);
//!   `exp`, `nbf` and `iat` must be JSON numbers. Configured issuers and
//!   audiences are required and matched exactly.
//! * Query-string tokens (`access_token`) are off by default (RFC 6750
//!   §2.3); when enabled, 2xx responses to such requests get
//!   `Cache-Control: private`.
//!
//! # Verified-token cache
//!
//! A verified token's claims are cached (default 4096 tokens, keyed by an
//! XXH3 hash of the token with a random per-layer seed, the full token
//! compared on a hit, so a collision never serves another token) until its
//! `exp` or [`cache_ttl`](JwtAuthLayerBuilder::cache_ttl), so a client that
//! sends the same token again skips the signature check. Entries verified
//! under an older key-set [generation](KeySource::generation) are not served.
//! Memory is bounded by `cache_capacity × (token length + claims)`: a full
//! cache drops the expired entries at the front of its insertion order, then
//! its oldest entry (per shard, in constant time, never a scan). Turn it
//! off with [`cache(false)`](JwtAuthLayerBuilder::cache). Failed
//! verifications are not cached; the scope check runs on every request.
//!
//! # Crypto backend
//!
//! Signatures are checked by `jsonwebtoken` with its `rust_crypto` backend
//! by default (RustCrypto's `rsa`, `p256`, `p384`, `ed25519-dalek`,
//! `hmac`): pure Rust, no C toolchain or cmake, builds on every target.
//!
//! The `aws-lc-rs` feature verifies RS*, PS* and ES* signatures with
//! aws-lc-rs instead (and gives the JWKS client's TLS the same provider):
//! several times faster per token the cache has not seen yet, at the cost of
//! a C compiler and cmake at build time. Turn it on when most tokens are new
//! (short-lived service tokens, many users behind one gateway) and they are
//! RSA or ECDSA; HMAC and EdDSA stay on RustCrypto, where aws-lc-rs is not
//! faster. [`CryptoBackend::for_algorithm`] says which library a build uses,
//! and each layer logs it at `debug` level when it is built.
//!
//! The layer names the library itself rather than going through
//! jsonwebtoken's process-wide `CryptoProvider`: an application that also
//! enables jsonwebtoken's `aws_lc_rs` feature (Cargo unifies the features,
//! and jsonwebtoken then has no default provider), or installs a provider of
//! its own, changes nothing here.
//!
//! # Default setup
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_edge::jwt_auth::{Algorithm, Claims, JwtAuthLayer, VerificationKey};
//! use tower_edge::{ServiceBuilderExt, Subject};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let secret = b"an HS256 secret of at least 32 bytes!";
//! let layer = JwtAuthLayer::builder()
//!     .key(VerificationKey::hmac(Algorithm::HS256, secret).unwrap())
//!     .build()
//!     .unwrap();
//!
//! let service = ServiceBuilder::new().jwt_auth(layer).service_fn(|req: Request<String>| async move {
//!     let claims = req.extensions().get::<Claims>().unwrap();
//!     let subject = req.extensions().get::<Subject>().unwrap();
//!     assert_eq!(claims.sub.as_deref(), Some(subject.as_str()));
//!     Ok::<_, std::convert::Infallible>(Response::new(format!("hello {subject}")))
//! });
//!
//! // A token, as your identity provider would issue it.
//! let exp = jsonwebtoken::get_current_timestamp() + 300;
//! # let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
//! let token = jsonwebtoken::encode(
//!     &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
//!     &serde_json::json!({ "sub": "user-42", "exp": exp }),
//!     &jsonwebtoken::EncodingKey::from_secret(secret).unwrap(),
//! )
//! .unwrap();
//!
//! let request = Request::builder()
//!     .header("authorization", format!("Bearer {token}"))
//!     .body(String::new())
//!     .unwrap();
//! let response = service.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // No token: 401 with the RFC 6750 challenge.
//! let response = service.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], r#"Bearer realm="api""#);
//! # }
//! ```
//!
//! # Customised
//!
//! Your own claims type, RS256 keys selected by `kid`, issuer, audience,
//! `typ`, a required scope, optional mode and a cookie:
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_edge::jwt_auth::{Algorithm, Claims, JwtAuthLayer, VerificationKey};
//!
//! #[derive(serde::Deserialize)]
//! struct MyClaims {
//!     sub: String,
//!     tenant: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let public_pem = include_bytes!("testdata/rsa_public.pem");
//! let layer = JwtAuthLayer::builder()
//!     .claims::<MyClaims>()
//!     .key(VerificationKey::rsa_pem(Algorithm::RS256, public_pem).unwrap().with_kid("2026-11"))
//!     .issuer("https://idp.example.com")
//!     .audience("orders-api")
//!     .typ("at+jwt")
//!     .leeway(Duration::from_secs(30))
//!     .require_scope("orders:read")
//!     .optional()
//!     .cookie("access_token")
//!     .realm("orders")
//!     .cache_capacity(10_000)
//!     .cache_ttl(Duration::from_secs(300))
//!     .build()
//!     .expect("valid configuration");
//!
//! let service = ServiceBuilder::new().layer(layer).service_fn(|req: Request<String>| async move {
//!     let body = match req.extensions().get::<Claims<MyClaims>>() {
//!         Some(claims) => format!("{} of {}", claims.sub, claims.tenant),
//!         None => "anonymous".to_owned(),
//!     };
//!     Ok::<_, std::convert::Infallible>(Response::new(body))
//! });
//!
//! // Optional mode: an anonymous request passes, without claims.
//! let response = service.clone().oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! // A present but invalid token is still rejected.
//! let request = Request::builder()
//!     .header("cookie", "access_token=not.a.token")
//!     .body(String::new())
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert!(response.headers()["www-authenticate"]
//!     .to_str()
//!     .unwrap()
//!     .starts_with(r#"Bearer realm="orders", error="invalid_token""#));
//! # }
//! ```

mod algorithm;
mod authenticate;
mod backend;
mod builder;
mod cache;
mod claims;
mod error;
mod future;
mod header;
mod hmac_key;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub mod jwks;
mod key;
mod key_source;
mod registered;
mod scope;
mod service;
mod token;
mod verify;

use std::time::Duration;

pub use algorithm::Algorithm;
pub use backend::CryptoBackend;
pub use builder::{AuthMode, JwtAuthLayerBuilder};
pub use claims::{Claims, Scopes, StandardClaims};
pub use error::JwtError;
pub use future::ResponseFuture;
pub use key::VerificationKey;
pub use key_source::{KeyLookup, KeyRefresh, KeySource, StaticKeys};
pub use scope::{RequireScope, RequireScopeFuture, RequireScopeLayer, RequireScopeLayerBuilder};
pub use service::{JwtAuth, JwtAuthLayer};

/// The default `realm` of the challenges.
pub const DEFAULT_REALM: &str = "api";
/// The default maximum token length: 8 KiB.
pub const DEFAULT_MAX_TOKEN_LENGTH: usize = 8 * 1024;
/// The default clock leeway for `exp` and `nbf`: 60 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// The default capacity of the verified-token cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

#[cfg(test)]
mod tests;
