//! Remote key sets: a [`KeySource`] backed by a JWKS endpoint (RFC 7517),
//! found directly or through OpenID Connect discovery.
//!
//! Production identity providers (Auth0, Keycloak, Cognito, Entra ID,
//! Google) publish their signing keys as a JSON Web Key Set and rotate
//! them. [`JwksKeySource`] fetches the set, keeps it in memory and serves
//! [`find`](KeySource::find) from a snapshot without waiting on the network:
//!
//! * **Cache lifetime** from the response's `Cache-Control: max-age`,
//!   clamped to [`cache_lifetime`](JwksKeySourceBuilder::cache_lifetime)
//!   bounds (default 5 min – 24 h); no `max-age` (or `no-cache`,
//!   `no-store`) means the lower bound. A background task refetches the
//!   set at 90 % of its lifetime; requests never wait on it, and no lock is
//!   held across a fetch (the new set is swapped in when it is complete).
//! * **Unknown `kid`**: a token signed with a key the set does not have
//!   causes one refetch, shared by every concurrent request that waits for
//!   it (single-flight); after that, at most one refetch per
//!   [`cooldown`](JwksKeySourceBuilder::cooldown) (default 30 s), whether
//!   it succeeded or failed. Tokens arriving during the cooldown with
//!   another unknown `kid` are rejected at once. A `kid` still unknown after
//!   a refetch is remembered (a bounded negative cache, default 1024 `kid`s,
//!   for the lower cache-lifetime bound or until the set changes) and
//!   rejected without causing another refetch.
//! * **Failures** (timeout, connection error, a status other than 200, a
//!   body over the size cap, invalid JSON, a set without a usable key):
//!   the last good keys keep serving; the failure is logged at WARN level
//!   and counted ([`failure_count`](JwksKeySource::failure_count),
//!   [`last_error`](JwksKeySource::last_error), and with feature `otel` the
//!   `tower_edge.jwks.fetches` counter of
//!   [`EdgeMetrics`](crate::otel::EdgeMetrics)); a failed background fetch
//!   is retried after the cooldown.
//! * **Start-up**: [`build`](JwksKeySourceBuilder::build) waits for the
//!   first fetch and fails when it fails (fail fast);
//!   [`build_lazy`](JwksKeySourceBuilder::build_lazy) returns at once and
//!   the layer answers 401 until the first keys arrive.
//!
//! # Which keys are used (RFC 7517, RFC 7518 §6, RFC 8037)
//!
//! Keys of type `RSA` (at least 2048 bits), `EC` on `P-256` / `P-384` and
//! `OKP` on `Ed25519` are used. A key is skipped (and logged at DEBUG) when
//! its `kty` or curve is unknown, its `use` is not `sig`, its `key_ops` do
//! not include `verify`, its `alg` is not one this crate verifies or does
//! not fit its type, or its members are invalid (for RSA: a modulus and
//! exponent the RSA verification would refuse). The header parameters
//! `jku`, `jwk`, `x5u`, `x5c` of a token are never used (RFC 8725 §3.10).
//!
//! A key with `alg` verifies only tokens whose header `alg` is the same: a
//! token with that `kid` but another `alg` is rejected (401). A key
//! **without** `alg` verifies tokens of every algorithm its type allows —
//! RSA: `RS256/384/512` and `PS256/384/512`; P-256: `ES256`; P-384:
//! `ES384`; Ed25519: `EdDSA` — that the layer's
//! [`algorithms`](super::JwtAuthLayerBuilder::algorithms) allow-list also
//! admits. Keep that list to what your provider signs with (usually just
//! `RS256`).
//!
//! A token without `kid` is verified with the set's only key for its
//! algorithm, and rejected when there are several.
//!
//! # HTTP client
//!
//! hyper-util's pooled client over `hyper-rustls` with the `ring` crypto
//! provider (needs only a C compiler, no cmake, no OpenSSL) and Mozilla's
//! root certificates from `webpki-roots`, so it works in `scratch` and
//! distroless images. `https://` is required, except for loopback hosts
//! (`localhost`, `127.0.0.0/8`, `[::1]`, for tests and sidecars) or with
//! [`allow_http`](JwksKeySourceBuilder::allow_http). Redirects are not
//! followed. Each fetch (connect, headers and body) has a
//! [`timeout`](JwksKeySourceBuilder::timeout) (default 5 s) and the body a
//! [size cap](JwksKeySourceBuilder::max_response_size) (default 256 KiB).
//!
//! # Tokio
//!
//! The source needs a Tokio runtime: building it spawns the background
//! refresh task (`build_lazy` outside a runtime is a configuration error).
//! The task holds only a weak reference and stops when the last clone of
//! the source (and of the layer holding it) is dropped.
//!
//! # Default setup
//!
//! The layer's allow-list is required with a key source:
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_edge::jwt_auth::jwks::JwksKeySource;
//! use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer};
//! use tower_edge::ServiceBuilderExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! # let jwks_url = serve(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).await;
//! // e.g. "https://YOUR_TENANT.eu.auth0.com/.well-known/jwks.json"
//! let keys = JwksKeySource::from_jwks_url(jwks_url)
//!     .build()
//!     .await
//!     .expect("the identity provider's keys");
//! assert_eq!(keys.len(), 1);
//!
//! let layer = JwtAuthLayer::builder()
//!     .key_source(keys)
//!     .algorithms([Algorithm::EdDSA])
//!     .build()
//!     .unwrap();
//! let service = ServiceBuilder::new()
//!     .jwt_auth(layer)
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     });
//! let response = service.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # }
//! # /// A local server: `/jwks` answers `jwks`, `/.well-known/openid-configuration`
//! # /// a discovery document naming it, with the server as the issuer.
//! # async fn serve(jwks: &'static str) -> String {
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let base = format!("http://{}", listener.local_addr().unwrap());
//! #     let discovery = serde_json::json!({ "issuer": base, "jwks_uri": format!("{base}/jwks") }).to_string();
//! #     let app = axum::Router::new()
//! #         .route("/jwks", axum::routing::get(move || async move { jwks }))
//! #         .route("/.well-known/openid-configuration", axum::routing::get(move || async move { discovery }));
//! #     tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
//! #     format!("{base}/jwks")
//! # }
//! ```
//!
//! # Customised: Keycloak through OpenID Connect discovery
//!
//! The issuer is the realm URL; discovery reads
//! `{issuer}/.well-known/openid-configuration`, checks that its `issuer`
//! is yours and fetches its `jwks_uri`. The audience is the client (or the
//! audience mapper) your API is registered as; for Auth0 the issuer is
//! `https://YOUR_TENANT.eu.auth0.com/` (trailing slash included) and the
//! audience your API's identifier.
//!
//! ```
//! use std::time::Duration;
//! use tower_edge::jwt_auth::jwks::JwksKeySource;
//! use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! # let jwks_url = serve(r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#).await;
//! # let issuer = jwks_url.trim_end_matches("/jwks").to_owned();
//! // e.g. "https://keycloak.example.com/realms/acme"
//! let keys = JwksKeySource::from_issuer(&issuer)
//!     .timeout(Duration::from_secs(3))
//!     .cache_lifetime(Duration::from_secs(60), Duration::from_secs(3600))
//!     .cooldown(Duration::from_secs(10))
//!     .max_response_size(64 * 1024)
//!     .build_lazy() // answer 401 until the first keys arrive
//!     .expect("valid configuration");
//!
//! let layer = JwtAuthLayer::builder()
//!     .key_source(keys.clone())
//!     .algorithms([Algorithm::RS256, Algorithm::EdDSA])
//!     .issuer(issuer)
//!     .audience("orders-api")
//!     .build()
//!     .unwrap();
//! # while keys.is_empty() { tokio::time::sleep(Duration::from_millis(10)).await; }
//! # assert_eq!(keys.fetch_count(), 1);
//! # drop(layer);
//! # }
//! # async fn serve(jwks: &'static str) -> String {
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let base = format!("http://{}", listener.local_addr().unwrap());
//! #     let discovery = serde_json::json!({ "issuer": base, "jwks_uri": format!("{base}/jwks") }).to_string();
//! #     let app = axum::Router::new()
//! #         .route("/jwks", axum::routing::get(move || async move { jwks }))
//! #         .route("/.well-known/openid-configuration", axum::routing::get(move || async move { discovery }));
//! #     tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
//! #     format!("{base}/jwks")
//! # }
//! ```

mod builder;
mod error;
mod fetch;
mod jwk;
mod state;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::Uri;
use tokio::time::Instant;

pub use builder::JwksKeySourceBuilder;
pub use error::JwksError;

use super::algorithm::Algorithm;
use super::key_source::{KeyLookup, KeyRefresh, KeySource};
use crate::sync::read;
use builder::Location;
use state::Inner;
#[cfg(test)]
use {fetch::check_uri, state::NegativeCache};

/// The longest cache lifetime, cooldown or timeout accepted: these are added
/// to `Instant`s while requests are served, which must not overflow.
const MAX_INTERVAL: Duration = Duration::from_secs(366 * 24 * 3600);

/// The default timeout of one fetch: 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default size cap of a JWKS or discovery response: 256 KiB.
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 256 * 1024;
/// The default lower bound of the cache lifetime: 5 minutes.
pub const DEFAULT_MIN_CACHE_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// The default upper bound of the cache lifetime: 24 hours.
pub const DEFAULT_MAX_CACHE_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// The default least time between two refetches: 30 seconds.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
/// The default capacity of the unknown-`kid` cache.
pub const DEFAULT_NEGATIVE_CACHE_CAPACITY: usize = 1024;

const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// A [`KeySource`] backed by a JWKS endpoint; see the [module docs](self).
///
/// Cheap to clone: clones share the key set, the single-flight refetch
/// and the counters. The background refresh stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct JwksKeySource {
    inner: Arc<Inner>,
}

impl fmt::Debug for JwksKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksKeySource")
            .field("jwks_uri", &*read(&self.inner.jwks_uri))
            .field("keys", &self.len())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl JwksKeySource {
    fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// A source that fetches the JWK Set at `url` (e.g.
    /// `https://YOUR_TENANT.eu.auth0.com/.well-known/jwks.json`).
    pub fn from_jwks_url(url: impl Into<String>) -> JwksKeySourceBuilder {
        JwksKeySourceBuilder::new(Location::Jwks(url.into()))
    }

    /// A source that reads the OpenID Connect discovery document at `url`
    /// (ending in `/.well-known/openid-configuration`) and fetches its
    /// `jwks_uri`. The document's `issuer` is not checked; prefer
    /// [`from_issuer`](Self::from_issuer).
    pub fn from_discovery_url(url: impl Into<String>) -> JwksKeySourceBuilder {
        JwksKeySourceBuilder::new(Location::Discovery {
            url: url.into(),
            issuer: None,
        })
    }

    /// A source for the OpenID Connect provider `issuer`: reads
    /// `{issuer}/.well-known/openid-configuration`, requires its `issuer`
    /// to equal `issuer` exactly (OpenID Connect Discovery §4.3) and
    /// fetches its `jwks_uri`.
    pub fn from_issuer(issuer: impl Into<String>) -> JwksKeySourceBuilder {
        let issuer = issuer.into();
        let url = format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'));
        JwksKeySourceBuilder::new(Location::Discovery {
            url,
            issuer: Some(issuer),
        })
    }

    /// The number of usable keys (JWKs) in the current set.
    pub fn len(&self) -> usize {
        self.inner.keys().len()
    }

    /// Whether no key has arrived yet (or the only fetches failed).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Successful fetches so far.
    pub fn fetch_count(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// Failed fetches so far.
    pub fn failure_count(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// The error of the last fetch, when it failed (`None` after a
    /// success).
    pub fn last_error(&self) -> Option<JwksError> {
        self.inner.last_error()
    }

    /// The JWKS URL in use (after discovery, once it succeeded).
    pub fn jwks_uri(&self) -> Option<String> {
        read(&self.inner.jwks_uri).as_ref().map(Uri::to_string)
    }
}

impl KeySource for JwksKeySource {
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup {
        self.inner.keys().find(kid, alg)
    }

    fn refresh(&self, kid: Option<&str>, alg: Algorithm) -> Option<KeyRefresh> {
        if let Some(kid) = kid
            && self.inner.negative.get(kid, Instant::now()).is_some()
        {
            return None;
        }
        let mut done = self.inner.start_fetch(true)?;
        let inner = Arc::clone(&self.inner);
        let kid: Option<Box<str>> = kid.map(Into::into);
        Some(Box::pin(async move {
            let _ = done.changed().await;
            let lookup = inner.keys().find(kid.as_deref(), alg);
            if let (KeyLookup::UnknownKid, Some(kid)) = (&lookup, kid) {
                let now = Instant::now();
                inner.negative.insert(kid, (), now + inner.min_ttl, now);
            }
            lookup
        }))
    }

    fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests;
