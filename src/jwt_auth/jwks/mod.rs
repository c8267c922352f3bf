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

mod fetch;
mod jwk;

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use http::Uri;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::key::{Algorithm, KeyLookup, KeyRefresh, KeySource};
use crate::config::ConfigError;
use crate::sync::{lock, read, write};
use crate::ttl_map::TtlMap;
use fetch::HttpClient;
use jwk::KeySet;

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

/// Why a fetch of the key set (or of the discovery document) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The fetch took longer than the timeout.
    #[error("JWKS fetch timed out")]
    Timeout,
    /// The connection or the HTTP exchange failed.
    #[error("JWKS fetch failed: {0}")]
    Connect(String),
    /// The server answered with a status other than 200.
    #[error("JWKS endpoint answered HTTP {0}")]
    Status(u16),
    /// The response is larger than the size cap.
    #[error("JWKS response exceeds the size cap")]
    TooLarge,
    /// The response is not a JWK Set (RFC 7517 §5) in JSON.
    #[error("JWKS response is not a JWK Set: {0}")]
    InvalidJson(String),
    /// The set has no key this crate can use.
    #[error("JWKS response has no usable signature key")]
    Empty,
    /// The discovery document is invalid: no `jwks_uri`, or an `issuer`
    /// other than the configured one (OpenID Connect Discovery §4.3).
    #[error("OpenID discovery document rejected: {0}")]
    Discovery(String),
    /// The source is misconfigured (see [`ConfigError`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl JwksError {
    /// A short, fixed name of the failure, used as the `error.type` of the
    /// `tower_edge.jwks.fetches` metric: `timeout`, `connect`, `status`,
    /// `too_large`, `invalid_json`, `empty`, `discovery`, `config`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect(_) => "connect",
            Self::Status(_) => "status",
            Self::TooLarge => "too_large",
            Self::InvalidJson(_) => "invalid_json",
            Self::Empty => "empty",
            Self::Discovery(_) => "discovery",
            Self::Config(_) => "config",
        }
    }
}

/// Where the key set is.
#[derive(Debug, Clone)]
enum Location {
    Jwks(String),
    Discovery { url: String, issuer: Option<String> },
}

/// Builds a [`JwksKeySource`]; from [`JwksKeySource::from_jwks_url`],
/// [`from_discovery_url`](JwksKeySource::from_discovery_url) or
/// [`from_issuer`](JwksKeySource::from_issuer).
#[derive(Debug)]
pub struct JwksKeySourceBuilder {
    location: Location,
    timeout: Duration,
    max_size: usize,
    min_ttl: Duration,
    max_ttl: Duration,
    cooldown: Duration,
    negative_capacity: usize,
    allow_http: bool,
    #[cfg(feature = "otel")]
    metrics: Option<crate::otel::EdgeMetrics>,
}

impl JwksKeySourceBuilder {
    fn new(location: Location) -> Self {
        Self {
            location,
            timeout: DEFAULT_TIMEOUT,
            max_size: DEFAULT_MAX_RESPONSE_SIZE,
            min_ttl: DEFAULT_MIN_CACHE_LIFETIME,
            max_ttl: DEFAULT_MAX_CACHE_LIFETIME,
            cooldown: DEFAULT_COOLDOWN,
            negative_capacity: DEFAULT_NEGATIVE_CACHE_CAPACITY,
            allow_http: false,
            #[cfg(feature = "otel")]
            metrics: None,
        }
    }

    /// The timeout of one fetch, connect to last body byte (default 5 s; at
    /// most 366 days).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest response body accepted, in bytes (default 256 KiB).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// Bounds of the cache lifetime taken from `Cache-Control: max-age`
    /// (default 5 minutes – 24 hours; `max` at most 366 days). Without
    /// `max-age`, `min` is used.
    pub fn cache_lifetime(mut self, min: Duration, max: Duration) -> Self {
        self.min_ttl = min;
        self.max_ttl = max;
        self
    }

    /// The least time between two refetches caused by unknown `kid`s
    /// (default 30 s; at most 366 days), and the retry interval after a
    /// failed fetch.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// How many unknown `kid`s are remembered (default 1024; 0 turns the
    /// negative cache off).
    pub fn negative_cache_capacity(mut self, capacity: usize) -> Self {
        self.negative_capacity = capacity;
        self
    }

    /// Accept `http://` URLs for any host (default: only for loopback
    /// hosts). Plain HTTP lets anyone on the path swap the keys.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Count fetches in the `tower_edge.jwks.fetches` counter of `metrics`.
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub fn metrics(mut self, metrics: crate::otel::EdgeMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Checks the configuration and fetches the key set once; fails when
    /// that first fetch fails (fail fast at start-up).
    ///
    /// # Errors
    ///
    /// A [`JwksError::Config`] naming the field, or the first fetch's
    /// error.
    pub async fn build(self) -> Result<JwksKeySource, JwksError> {
        let (inner, shutdown) = self.prepare()?;
        let mut done = inner.start_fetch(false).expect("no fetch runs yet");
        spawn_refresher(&inner, shutdown);
        let _ = done.changed().await;
        if inner.keys().len() == 0 {
            return Err(inner
                .last_error()
                .unwrap_or_else(|| JwksError::Connect("the first fetch did not finish".into())));
        }
        Ok(JwksKeySource { inner })
    }

    /// Checks the configuration and returns at once; the first fetch runs
    /// in the background and tokens are rejected (401) until it succeeds.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field, or `runtime` when called
    /// outside a Tokio runtime.
    pub fn build_lazy(self) -> Result<JwksKeySource, ConfigError> {
        let (inner, shutdown) = self.prepare()?;
        // The background task fetches at once.
        *lock(&inner.refresh_at) = Instant::now();
        spawn_refresher(&inner, shutdown);
        Ok(JwksKeySource { inner })
    }

    fn prepare(self) -> Result<(Arc<Inner>, oneshot::Receiver<()>), ConfigError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new(
                "runtime",
                "a JWKS key source must be built inside a Tokio runtime",
            ));
        }
        let url = match &self.location {
            Location::Jwks(url) => url,
            Location::Discovery { url, .. } => url,
        };
        let field = match self.location {
            Location::Jwks(_) => "jwks_url",
            Location::Discovery { .. } => "discovery_url",
        };
        let first = check_uri(field, url, self.allow_http)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be above zero"));
        }
        if self.max_size == 0 {
            return Err(ConfigError::new("max_response_size", "must be above zero"));
        }
        if self.min_ttl.is_zero() || self.min_ttl > self.max_ttl {
            return Err(ConfigError::new(
                "cache_lifetime",
                "the lower bound must be above zero and at most the upper bound",
            ));
        }
        // Added to `Instant`s on the request path: a bound keeps that from
        // overflowing (which panics), whatever the configuration.
        if self.max_ttl > MAX_INTERVAL {
            return Err(ConfigError::new(
                "cache_lifetime",
                "the upper bound must be at most 366 days",
            ));
        }
        if self.timeout > MAX_INTERVAL {
            return Err(ConfigError::new("timeout", "must be at most 366 days"));
        }
        if self.cooldown.is_zero() || self.cooldown > MAX_INTERVAL {
            return Err(ConfigError::new(
                "cooldown",
                "must be above zero and at most 366 days",
            ));
        }
        let client = HttpClient::new(self.timeout, self.max_size)
            .map_err(|e| ConfigError::new("tls", e.to_string()))?;
        let (jwks_uri, discovery) = match self.location {
            Location::Jwks(_) => (Some(first), None),
            Location::Discovery { issuer, .. } => (None, Some((first, issuer))),
        };
        let (done, _) = watch::channel(0);
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let inner = Arc::new(Inner {
            discovery,
            jwks_uri: RwLock::new(jwks_uri),
            client,
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            cooldown: self.cooldown,
            allow_http: self.allow_http,
            keys: RwLock::new(Arc::new(KeySet::default())),
            generation: AtomicU64::new(0),
            set_fingerprint: AtomicU64::new(0),
            flight: Mutex::new(Flight::default()),
            done,
            refresh_at: Mutex::new(Instant::now() + self.max_ttl),
            negative: NegativeCache::new(self.negative_capacity),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
            _shutdown: shutdown_tx,
            #[cfg(feature = "otel")]
            metrics: self.metrics,
        });
        Ok((inner, shutdown_rx))
    }
}

/// `url` as a `Uri` with an authority, `https`, or `http` when allowed.
fn check_uri(field: &'static str, url: &str, allow_http: bool) -> Result<Uri, ConfigError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| ConfigError::new(field, "not a valid URL"))?;
    let Some(host) = uri.host() else {
        return Err(ConfigError::new(field, "needs a host"));
    };
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if allow_http || is_loopback(host) => Ok(uri),
        Some("http") => Err(ConfigError::new(
            field,
            "must be https:// (http:// only for loopback hosts, or with `allow_http(true)`)",
        )),
        _ => Err(ConfigError::new(field, "must be an https:// URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

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

#[derive(Debug, Default)]
struct Flight {
    running: bool,
    /// When the last refetch for an unknown `kid` started.
    last_refetch: Option<Instant>,
}

/// Unknown `kid`s, each remembered for the least cache lifetime, the
/// oldest evicted first when full (see [`TtlMap`]); empty after a fetch.
type NegativeCache = TtlMap<Box<str>, (), Instant>;

struct Inner {
    /// The discovery URL and the issuer it must name, until resolved.
    discovery: Option<(Uri, Option<String>)>,
    jwks_uri: RwLock<Option<Uri>>,
    client: HttpClient,
    min_ttl: Duration,
    max_ttl: Duration,
    cooldown: Duration,
    allow_http: bool,
    /// The snapshot: read-locked only to clone the `Arc` or look a key up,
    /// replaced after a fetch completes.
    keys: RwLock<Arc<KeySet>>,
    generation: AtomicU64,
    set_fingerprint: AtomicU64,
    flight: Mutex<Flight>,
    /// Bumped when a fetch ends; waiters of the single flight watch it.
    done: watch::Sender<u64>,
    /// When the background task fetches next.
    refresh_at: Mutex<Instant>,
    negative: NegativeCache,
    fetches: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<JwksError>>,
    /// Dropped with `Inner`: wakes the background task to stop.
    _shutdown: oneshot::Sender<()>,
    #[cfg(feature = "otel")]
    metrics: Option<crate::otel::EdgeMetrics>,
}

impl Inner {
    fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&read(&self.keys))
    }

    fn last_error(&self) -> Option<JwksError> {
        lock(&self.last_error).clone()
    }

    /// Starts a fetch in its own task unless one runs (then joins it).
    /// With `cooldown` (a refetch for an unknown `kid`), refuses (`None`)
    /// within the cooldown of the last such refetch, whatever its outcome.
    /// The receiver changes when the fetch ends.
    fn start_fetch(self: &Arc<Self>, cooldown: bool) -> Option<watch::Receiver<u64>> {
        let mut flight = lock(&self.flight);
        let done = self.done.subscribe();
        if flight.running {
            return Some(done);
        }
        let now = Instant::now();
        if cooldown {
            if flight
                .last_refetch
                .is_some_and(|at| now < at + self.cooldown)
            {
                return None;
            }
            flight.last_refetch = Some(now);
        }
        flight.running = true;
        drop(flight);
        let inner = Arc::clone(self);
        // Its own task: a request that gives up does not cancel the fetch
        // the others wait for. The fetch ends within the timeout.
        tokio::spawn(async move { inner.fetch_and_store().await });
        Some(done)
    }

    async fn fetch_and_store(&self) {
        let next = match self.fetch().await {
            Ok((set, ttl, hash)) => {
                let changed = self.set_fingerprint.swap(hash, Ordering::AcqRel) != hash;
                let count = set.len();
                *write(&self.keys) = Arc::new(set);
                if changed {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    self.negative.clear();
                }
                self.fetches.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_error) = None;
                #[cfg(feature = "otel")]
                if let Some(metrics) = &self.metrics {
                    metrics.jwks_fetch_succeeded();
                }
                tracing::debug!(keys = count, changed, ttl_s = ttl.as_secs(), "JWKS fetched");
                ttl - ttl / 10
            }
            Err(err) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "otel")]
                if let Some(metrics) = &self.metrics {
                    metrics.jwks_fetch_failed(err.error_type());
                }
                // Debug of the text (escaped): it may quote the fetched
                // document or the server's answer, bytes from outside.
                tracing::warn!(
                    error = ?err.to_string(),
                    "JWKS fetch failed; the last good keys keep serving"
                );
                *lock(&self.last_error) = Some(err);
                self.cooldown
            }
        };
        *lock(&self.refresh_at) = Instant::now() + next;
        // Under the flight lock: a request that starts the next fetch in
        // between would otherwise subscribe before this signal and take it
        // for the end of its own fetch (and look its kid up too early).
        let mut flight = lock(&self.flight);
        flight.running = false;
        self.done.send_modify(|n| *n = n.wrapping_add(1));
        drop(flight);
    }

    /// One fetch: discovery first when needed, then the set.
    async fn fetch(&self) -> Result<(KeySet, Duration, u64), JwksError> {
        let known = read(&self.jwks_uri).clone();
        let uri = match known {
            Some(uri) => uri,
            None => {
                let uri = self.discover().await?;
                *write(&self.jwks_uri) = Some(uri.clone());
                uri
            }
        };
        let fetched = self
            .client
            .get(&uri, "application/jwk-set+json, application/json")
            .await?;
        let set =
            jwk::parse_set(&fetched.body).map_err(|e| JwksError::InvalidJson(e.to_string()))?;
        if set.len() == 0 {
            return Err(JwksError::Empty);
        }
        let ttl = fetched
            .cache_control
            .as_deref()
            .and_then(jwk::max_age)
            .unwrap_or(self.min_ttl)
            .clamp(self.min_ttl, self.max_ttl);
        let hash = set.fingerprint();
        Ok((set, ttl, hash))
    }

    async fn discover(&self) -> Result<Uri, JwksError> {
        #[derive(serde::Deserialize)]
        struct Document {
            issuer: Option<String>,
            jwks_uri: Option<String>,
        }
        let Some((url, issuer)) = &self.discovery else {
            return Err(JwksError::Discovery("no discovery URL".into()));
        };
        let fetched = self.client.get(url, "application/json").await?;
        let document: Document = serde_json::from_slice(&fetched.body)
            .map_err(|e| JwksError::InvalidJson(e.to_string()))?;
        if let Some(expected) = issuer
            && document.issuer.as_deref() != Some(expected.as_str())
        {
            return Err(JwksError::Discovery(format!(
                "`issuer` is {:?}, expected {expected:?}",
                document.issuer.unwrap_or_default()
            )));
        }
        let jwks_uri = document
            .jwks_uri
            .ok_or_else(|| JwksError::Discovery("no `jwks_uri`".into()))?;
        check_uri("jwks_uri", &jwks_uri, self.allow_http)
            .map_err(|e| JwksError::Discovery(e.to_string()))
    }
}

/// Spawns the background refresh: it sleeps until `refresh_at`, fetches
/// (or joins a running fetch), and stops when the source is dropped.
fn spawn_refresher(inner: &Arc<Inner>, mut shutdown: oneshot::Receiver<()>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        loop {
            // Subscribed before `refresh_at` is read: a fetch that ends
            // meanwhile (and moves `refresh_at`) wakes us.
            let (at, mut done) = {
                let Some(inner) = weak.upgrade() else { return };
                let done = inner.done.subscribe();
                let at = *lock(&inner.refresh_at);
                if Instant::now() < at {
                    (at, done)
                } else {
                    match inner.start_fetch(false) {
                        Some(done) => (at + inner.max_ttl, done),
                        None => (Instant::now() + inner.cooldown, done),
                    }
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep_until(at) => {}
                _ = done.changed() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests;
