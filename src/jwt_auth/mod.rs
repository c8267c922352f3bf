//! Stateless JWT bearer authentication (RFC 6750, 7519, 7515, 8725, 9068)
//! and scope checks.
//!
//! [`JwtAuthLayer`] finds the access token (by default in
//! `Authorization: Bearer`), verifies it with keys from your configuration,
//! validates its claims and puts them in the request extensions:
//!
//! * [`Claims<T>`] for your claims type `T` (default [`StandardClaims`]);
//! * [`Subject`] from `sub`, which the per-user rate limiter
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
//! Memory is bounded by `cache_capacity × (token length + claims)`. Turn it
//! off with [`cache(false)`](JwtAuthLayerBuilder::cache). Failed
//! verifications are not cached; the scope check runs on every request.
//!
//! # Crypto backend
//!
//! Signatures are checked by `jsonwebtoken` with its `rust_crypto` backend
//! (RustCrypto's `rsa`, `p256`, `p384`, `ed25519-dalek`, `hmac`): pure Rust,
//! no C toolchain or cmake, builds on every target. `aws_lc_rs` is faster
//! (mostly for RSA) but needs cmake and a C compiler; it is not enabled.
//!
//! The layer names that backend itself rather than going through
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

mod cache;
mod claims;
#[cfg(feature = "jwks")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
pub mod jwks;
mod key;
mod scope;
mod tap;
mod token;
mod verify;

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;

pub use claims::{Claims, Scopes, StandardClaims};
pub use key::{Algorithm, KeyLookup, KeyRefresh, KeySource, StaticKeys, VerificationKey};
pub use scope::{RequireScope, RequireScopeLayer, RequireScopeLayerBuilder};
pub use verify::JwtError;

use crate::body::ResponseBody;
use crate::cache_control::{Directive, directives};
use crate::config::ConfigError;
#[cfg(feature = "axum")]
use crate::principal::NoSubject;
use crate::principal::{Anonymous, AuthAnswers, Subject};
use crate::rejection::{GrpcCode, Problem, Rejections};
use cache::{Cached, TokenCache};
use scope::{ScopeRule, valid_realm};
use token::TokenSources;
use verify::{Parsed, Rules};

/// The default `realm` of the challenges.
pub const DEFAULT_REALM: &str = "api";
/// The default maximum token length: 8 KiB.
pub const DEFAULT_MAX_TOKEN_LENGTH: usize = 8 * 1024;
/// The default clock leeway for `exp` and `nbf`: 60 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// The default capacity of the verified-token cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What a verified token yields, cached and put in the extensions.
#[derive(Debug)]
pub(crate) struct Authenticated<T> {
    claims: Claims<T>,
    subject: Option<Subject>,
    scopes: Scopes,
}

/// Pre-rendered `WWW-Authenticate` values.
#[derive(Debug)]
struct Challenges {
    /// The bare challenge and the layer's `Rejections`, shared with the
    /// markers the layer leaves on requests it lets through without a
    /// principal, so that what answers later answers as this layer does.
    answers: Arc<AuthAnswers>,
    invalid: HeaderValue,
    expired: HeaderValue,
    duplicate: HeaderValue,
    malformed_authorization: HeaderValue,
}

impl Challenges {
    fn new(realm: &str, rejections: &Rejections) -> Result<Self, ConfigError> {
        let render = |rest: &str| {
            HeaderValue::try_from(format!("Bearer realm=\"{realm}\"{rest}"))
                .map_err(|_| ConfigError::new("realm", "not a valid header value"))
        };
        Ok(Self {
            answers: Arc::new(AuthAnswers {
                missing: render("")?,
                #[cfg(feature = "axum")]
                no_subject: render(
                    ", error=\"invalid_token\", error_description=\"the access token has no subject\"",
                )?,
                rejections: rejections.clone(),
            }),
            invalid: render(
                ", error=\"invalid_token\", error_description=\"the access token is invalid\"",
            )?,
            expired: render(
                ", error=\"invalid_token\", error_description=\"the access token expired\"",
            )?,
            duplicate: render(
                ", error=\"invalid_request\", error_description=\"more than one access token\"",
            )?,
            malformed_authorization: render(
                ", error=\"invalid_request\", error_description=\"malformed Authorization header\"",
            )?,
        })
    }
}

struct Shared<T> {
    rules: Rules,
    keys: Arc<dyn KeySource>,
    sources: TokenSources,
    optional: bool,
    scopes: Option<ScopeRule>,
    cache: Option<TokenCache<Cached<T>>>,
    challenges: Challenges,
    rejections: Rejections,
    clock: Clock,
}

enum Outcome<T> {
    Authenticated(Cached<T>),
    Rejected(JwtError),
    /// A key refresh, with the key-set generation read before it started:
    /// the lookup runs inside the refresh, so reading the generation after
    /// it could see a set swapped in after the lookup (and cache the token
    /// under it).
    Refresh(KeyRefresh, u64),
}

impl<T: DeserializeOwned + Send + Sync + 'static> Shared<T> {
    /// Authenticates `token`, from the cache or by verifying it.
    fn authenticate(&self, token: &str) -> Outcome<T> {
        let now = (self.clock)();
        let generation = self.keys.generation();
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.get(token, now, generation)
        {
            return Outcome::Authenticated(hit);
        }
        let parsed = match self.rules.parse(token) {
            Ok(parsed) => parsed,
            Err(err) => return Outcome::Rejected(err),
        };
        match self.keys.find(parsed.kid.as_deref(), parsed.alg) {
            KeyLookup::Found(key) => self.finish(token, &parsed, &key, now, generation),
            KeyLookup::UnknownKid => match self.keys.refresh(parsed.kid.as_deref(), parsed.alg) {
                Some(refresh) => Outcome::Refresh(refresh, generation),
                None => Outcome::Rejected(JwtError::UnknownKey),
            },
        }
    }

    /// After a key refresh: look the key up in the answer and verify. A
    /// verified token is cached under the generation read before the
    /// refresh: when the refresh changed the set, the entry is not served,
    /// and the token's next request finds its key and caches it then.
    fn authenticate_after_refresh(
        &self,
        token: &str,
        lookup: KeyLookup,
        generation: u64,
    ) -> Outcome<T> {
        let now = (self.clock)();
        let parsed = match self.rules.parse(token) {
            Ok(parsed) => parsed,
            Err(err) => return Outcome::Rejected(err),
        };
        match lookup {
            KeyLookup::Found(key) => self.finish(token, &parsed, &key, now, generation),
            KeyLookup::UnknownKid => Outcome::Rejected(JwtError::UnknownKey),
        }
    }

    fn finish(
        &self,
        token: &str,
        parsed: &Parsed<'_>,
        key: &VerificationKey,
        now: i64,
        generation: u64,
    ) -> Outcome<T> {
        match self.rules.verify::<T>(parsed, key, now) {
            Ok(verified) => {
                let authenticated = Arc::new(Authenticated {
                    claims: Claims::new(verified.claims),
                    subject: verified.sub.map(Subject::new),
                    scopes: Scopes::from_joined(verified.scopes),
                });
                if let Some(cache) = &self.cache {
                    cache.insert(
                        token,
                        verified.exp,
                        now,
                        generation,
                        Arc::clone(&authenticated),
                    );
                }
                Outcome::Authenticated(authenticated)
            }
            Err(err) => Outcome::Rejected(err),
        }
    }

    fn problem(&self, err: &JwtError) -> Problem {
        let c = &self.challenges;
        let (status, challenge, detail) = match err {
            JwtError::Missing => (
                StatusCode::UNAUTHORIZED,
                &c.answers.missing,
                "a bearer token is required",
            ),
            JwtError::Duplicate => (
                StatusCode::BAD_REQUEST,
                &c.duplicate,
                "more than one access token",
            ),
            JwtError::MalformedAuthorization => (
                StatusCode::BAD_REQUEST,
                &c.malformed_authorization,
                "malformed Authorization header",
            ),
            JwtError::Expired => (
                StatusCode::UNAUTHORIZED,
                &c.expired,
                "the access token expired",
            ),
            _ => (
                StatusCode::UNAUTHORIZED,
                &c.invalid,
                "the access token is invalid",
            ),
        };
        Problem::new(status)
            .with_detail(detail)
            .with_grpc_code(GrpcCode::Unauthenticated)
            .with_header(WWW_AUTHENTICATE, challenge.clone())
            .with_decision(crate::decision::Decision::auth(
                status,
                matches!(err, JwtError::Missing),
            ))
    }

    fn reject<B, R>(&self, err: JwtError, request: &Request<R>) -> Response<ResponseBody<B>> {
        // Debug of the text, not Display: `ClaimsType` quotes serde, which
        // names an unknown claim as the token spelled it (newlines and
        // escapes included), so Display could write a forged log line.
        tracing::debug!(error = ?err.to_string(), "bearer token rejected");
        let mut response = self.rejections.respond(self.problem(&err), request);
        response.extensions_mut().insert(err);
        response
    }

    /// Checks the required scopes, then puts what the token yields in the
    /// request. `false`: a required scope is missing (answer with
    /// [`Shared::deny_scope`]).
    fn admit<R>(&self, request: &mut Request<R>, authenticated: &Authenticated<T>) -> bool {
        if let Some(rule) = &self.scopes
            && !rule.allows(&authenticated.scopes)
        {
            return false;
        }
        let extensions = request.extensions_mut();
        extensions.insert(authenticated.claims.clone());
        extensions.insert(authenticated.scopes.clone());
        if let Some(subject) = &authenticated.subject {
            extensions.insert(subject.clone());
        } else {
            // For the `Subject` extractor: 401 `invalid_token` (the token
            // does not name who it is for), not "no layer" (500).
            #[cfg(feature = "axum")]
            extensions.insert(NoSubject(Arc::clone(&self.challenges.answers)));
        }
        true
    }

    fn deny_scope<B, R>(&self, request: &Request<R>) -> Response<ResponseBody<B>> {
        tracing::debug!("bearer token lacks a required scope");
        let problem = self
            .scopes
            .as_ref()
            .map_or_else(|| Problem::new(StatusCode::FORBIDDEN), ScopeRule::problem);
        self.rejections.respond(problem, request)
    }
}

/// Whether the layer rejects requests without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMode {
    /// Requests without a token get 401 (the default).
    #[default]
    Required,
    /// Requests without a token pass, without claims; a present but invalid
    /// token is still rejected.
    Optional,
}

/// Builds a [`JwtAuthLayer`]; from [`JwtAuthLayer::builder`].
pub struct JwtAuthLayerBuilder<T = StandardClaims> {
    keys: StaticKeys,
    key_errors: Vec<ConfigError>,
    source: Option<Arc<dyn KeySource>>,
    algorithms: Option<Vec<Algorithm>>,
    issuers: Vec<Box<str>>,
    audiences: Vec<Box<str>>,
    leeway: Duration,
    required: Vec<Box<str>>,
    typ: Option<Box<str>>,
    max_len: usize,
    realm: Box<str>,
    mode: AuthMode,
    sources: TokenSources,
    scopes: Vec<Box<str>>,
    cache: bool,
    cache_capacity: usize,
    cache_ttl: Option<Duration>,
    rejections: Rejections,
    clock: Clock,
    _claims: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for JwtAuthLayerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayerBuilder")
            .field("keys", &self.keys.len())
            .field("key_source", &self.source.is_some())
            .field("algorithms", &self.algorithms)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .field("typ", &self.typ)
            .field("realm", &self.realm)
            .field("mode", &self.mode)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl<T> JwtAuthLayerBuilder<T> {
    /// Deserialize the claims into `U` instead (any `DeserializeOwned`
    /// type); handlers read [`Claims<U>`].
    pub fn claims<U>(self) -> JwtAuthLayerBuilder<U> {
        JwtAuthLayerBuilder {
            keys: self.keys,
            key_errors: self.key_errors,
            source: self.source,
            algorithms: self.algorithms,
            issuers: self.issuers,
            audiences: self.audiences,
            leeway: self.leeway,
            required: self.required,
            typ: self.typ,
            max_len: self.max_len,
            realm: self.realm,
            mode: self.mode,
            sources: self.sources,
            scopes: self.scopes,
            cache: self.cache,
            cache_capacity: self.cache_capacity,
            cache_ttl: self.cache_ttl,
            rejections: self.rejections,
            clock: self.clock,
            _claims: PhantomData,
        }
    }

    /// Adds a verification key (call once per key). Several keys are
    /// selected by their exact `kid`.
    pub fn key(mut self, key: VerificationKey) -> Self {
        if let Err(err) = self.keys.insert(key) {
            self.key_errors.push(err);
        }
        self
    }

    /// Takes keys from `source` (e.g. a JWKS set) instead of
    /// [`key`](Self::key); then [`algorithms`](Self::algorithms) is required.
    pub fn key_source(mut self, source: impl KeySource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The algorithm allow-list (default: the algorithms of the keys given
    /// to [`key`](Self::key)). Tokens with any other `alg` are rejected
    /// before a key is looked up.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// An accepted issuer (`iss`, exact match); call once per issuer. When
    /// any is configured, `iss` is required.
    pub fn issuer(mut self, issuer: impl Into<Box<str>>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// An accepted audience (`aud`, exact match, any of the token's
    /// values); call once per audience. When any is configured, `aud` is
    /// required.
    pub fn audience(mut self, audience: impl Into<Box<str>>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The clock skew tolerated for `exp` and `nbf` (default 60 s, at most
    /// 5 minutes).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// A claim that must be present (any name); call once per claim. `exp`
    /// is always required.
    pub fn require_claim(mut self, name: impl Into<Box<str>>) -> Self {
        self.required.push(name.into());
        self
    }

    /// Requires the header `typ` (e.g. `at+jwt`, RFC 9068 §4), compared
    /// case-insensitively with an implied `application/` prefix.
    pub fn typ(mut self, typ: impl Into<Box<str>>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// The longest token accepted, checked before any decoding (default
    /// 8 KiB).
    pub fn max_token_length(mut self, max: usize) -> Self {
        self.max_len = max;
        self
    }

    /// The `realm` of the `WWW-Authenticate` challenges (default `api`).
    pub fn realm(mut self, realm: impl Into<Box<str>>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Sets the mode (default [`AuthMode::Required`]).
    pub fn mode(mut self, mode: AuthMode) -> Self {
        self.mode = mode;
        self
    }

    /// Shorthand for `mode(AuthMode::Optional)`: requests without a token
    /// pass anonymously.
    pub fn optional(self) -> Self {
        self.mode(AuthMode::Optional)
    }

    /// Whether to read `Authorization: Bearer` (default `true`).
    pub fn authorization_header(mut self, enabled: bool) -> Self {
        self.sources.authorization = enabled;
        self
    }

    /// Also read the token from the cookie `name` (off by default).
    pub fn cookie(mut self, name: impl Into<Box<str>>) -> Self {
        self.sources.cookie = Some(name.into());
        self
    }

    /// Also read the raw token from the header `name` (off by default).
    pub fn header(mut self, name: HeaderName) -> Self {
        self.sources.header = Some(name);
        self
    }

    /// Also read the token from the `access_token` query parameter (off by
    /// default, RFC 6750 §2.3 discourages it); 2xx responses to such
    /// requests get `Cache-Control: private`.
    pub fn query_parameter(mut self, enabled: bool) -> Self {
        self.sources.query = enabled;
        self
    }

    /// A scope every token must grant (call once per scope); tokens without
    /// it get 403 `insufficient_scope`. For per-route scopes use
    /// [`RequireScopeLayer`].
    pub fn require_scope(mut self, scope: impl Into<Box<str>>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Whether to cache verified tokens (default `true`).
    pub fn cache(mut self, enabled: bool) -> Self {
        self.cache = enabled;
        self
    }

    /// The most tokens the cache holds (default 4096): an exact bound, for
    /// any capacity. Zero makes [`build`](Self::build) fail; turn the cache
    /// off with [`cache(false)`](Self::cache) instead.
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// The longest a token is served from the cache (default: until its
    /// `exp`).
    ///
    /// The cache counts whole seconds: a fraction of a second is dropped,
    /// and a TTL below one second (which would cache nothing) makes
    /// [`build`](Self::build) fail. Turn the cache off with
    /// [`cache(false)`](Self::cache) instead.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl);
        self
    }

    /// How rejection bodies are rendered (default problem+json).
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.rejections = rejections;
        self
    }

    #[cfg(test)]
    pub(crate) fn clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// Names the field: no key (`key`), two keys with one `kid`, two keys
    /// without a `kid` for one algorithm, or a key whose algorithm is not
    /// allowed (`key`), both keys and a key source (`key_source`), an empty
    /// allow-list or none with a key source (`algorithms`), a realm with
    /// `"` or `\` (`realm`), a leeway above 5 minutes (`leeway`), a zero
    /// `max_token_length` or `cache_capacity`, a `cache_ttl` below one
    /// second, a bad scope token (`require_scope`), more than 64
    /// `require_claim`s, no token source left (`authorization_header`), an
    /// empty `typ`, issuer or audience.
    pub fn build(self) -> Result<JwtAuthLayer<T>, ConfigError> {
        if let Some(err) = self.key_errors.into_iter().next() {
            return Err(err);
        }
        let (keys, algorithms): (Arc<dyn KeySource>, Vec<Algorithm>) = match self.source {
            Some(source) => {
                if !self.keys.is_empty() {
                    return Err(ConfigError::new(
                        "key_source",
                        "give either keys or a key source, not both",
                    ));
                }
                let algorithms = self
                    .algorithms
                    .ok_or_else(|| ConfigError::new("algorithms", "required with a key source"))?;
                (source, algorithms)
            }
            None => {
                if self.keys.is_empty() {
                    return Err(ConfigError::new("key", "give at least one key"));
                }
                let algorithms = match self.algorithms {
                    Some(allowed) => {
                        if let Some(alg) = self.keys.algorithms().find(|a| !allowed.contains(a)) {
                            return Err(ConfigError::new(
                                "key",
                                format!(
                                    "a key is bound to {alg}, which `algorithms` does not allow"
                                ),
                            ));
                        }
                        allowed
                    }
                    None => {
                        let mut algs: Vec<Algorithm> = Vec::new();
                        for alg in self.keys.algorithms() {
                            if !algs.contains(&alg) {
                                algs.push(alg);
                            }
                        }
                        algs
                    }
                };
                (Arc::new(self.keys), algorithms)
            }
        };
        if algorithms.is_empty() {
            return Err(ConfigError::new(
                "algorithms",
                "allow at least one algorithm",
            ));
        }
        if !valid_realm(&self.realm) {
            return Err(ConfigError::new(
                "realm",
                "printable ASCII without `\"` or `\\` (RFC 6750 §3)",
            ));
        }
        if self.leeway > Duration::from_secs(300) {
            return Err(ConfigError::new("leeway", "at most 5 minutes"));
        }
        if self.max_len == 0 {
            return Err(ConfigError::new("max_token_length", "must be at least 1"));
        }
        if self.cache && self.cache_capacity == 0 {
            return Err(ConfigError::new(
                "cache_capacity",
                "must be at least 1 (or turn the cache off with `cache(false)`)",
            ));
        }
        if self.cache
            && self
                .cache_ttl
                .is_some_and(|ttl| ttl < Duration::from_secs(1))
        {
            return Err(ConfigError::new(
                "cache_ttl",
                "must be at least 1 second: the cache counts whole seconds, so a shorter \
                 TTL would cache nothing (turn the cache off with `cache(false)`)",
            ));
        }
        if self.typ.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new("typ", "must not be empty"));
        }
        if self.issuers.iter().any(|i| i.is_empty()) {
            return Err(ConfigError::new("issuer", "must not be empty"));
        }
        if self.audiences.iter().any(|a| a.is_empty()) {
            return Err(ConfigError::new("audience", "must not be empty"));
        }
        if self.required.len() > 64 {
            return Err(ConfigError::new("require_claim", "at most 64 claims"));
        }
        if !(self.sources.authorization
            || self.sources.cookie.is_some()
            || self.sources.header.is_some()
            || self.sources.query)
        {
            return Err(ConfigError::new(
                "authorization_header",
                "no token source left: enable a cookie, header or query parameter",
            ));
        }
        let scopes = if self.scopes.is_empty() {
            None
        } else {
            Some(ScopeRule::new(&self.realm, self.scopes, "require_scope")?)
        };
        let challenges = Challenges::new(&self.realm, &self.rejections)?;
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let cache = self.cache.then(|| {
            TokenCache::new(
                self.cache_capacity,
                self.cache_ttl
                    .map(|ttl| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)),
            )
        });
        Ok(JwtAuthLayer {
            shared: Arc::new(Shared {
                rules: Rules {
                    algorithms,
                    max_len: self.max_len,
                    typ: self.typ,
                    issuers: self.issuers,
                    audiences: self.audiences,
                    leeway,
                    required: self.required,
                },
                keys,
                sources: self.sources,
                optional: self.mode == AuthMode::Optional,
                scopes,
                cache,
                challenges,
                rejections: self.rejections,
                clock: self.clock,
            }),
        })
    }
}

/// Layer that applies [`JwtAuth`]: bearer-token authentication. See the
/// [module docs](self).
pub struct JwtAuthLayer<T = StandardClaims> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for JwtAuthLayer<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for JwtAuthLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("algorithms", &self.shared.rules.algorithms)
            .field("optional", &self.shared.optional)
            .finish_non_exhaustive()
    }
}

impl JwtAuthLayer<StandardClaims> {
    /// A builder: give at least one [`key`](JwtAuthLayerBuilder::key) (or a
    /// [`key_source`](JwtAuthLayerBuilder::key_source)). Claims are
    /// [`StandardClaims`] unless you call
    /// [`claims`](JwtAuthLayerBuilder::claims).
    pub fn builder() -> JwtAuthLayerBuilder<StandardClaims> {
        JwtAuthLayerBuilder {
            keys: StaticKeys::new(),
            key_errors: Vec::new(),
            source: None,
            algorithms: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            required: Vec::new(),
            typ: None,
            max_len: DEFAULT_MAX_TOKEN_LENGTH,
            realm: DEFAULT_REALM.into(),
            mode: AuthMode::Required,
            sources: TokenSources {
                authorization: true,
                ..TokenSources::default()
            },
            scopes: Vec::new(),
            cache: true,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            cache_ttl: None,
            rejections: Rejections::default(),
            clock: Arc::new(system_now),
            _claims: PhantomData,
        }
    }
}

impl<T> JwtAuthLayer<T> {
    /// How many verified tokens the cache holds now (0 when it is off).
    pub fn cached_tokens(&self) -> usize {
        self.shared.cache.as_ref().map_or(0, TokenCache::len)
    }
}

impl<S, T> Layer<S> for JwtAuthLayer<T> {
    type Service = JwtAuth<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Middleware that authenticates bearer tokens; see [`JwtAuthLayer`].
///
/// The inner service must be `Clone + Send + 'static` (as axum, hyper and
/// tonic services are): when a [`KeySource`] refreshes its keys, the request
/// and the ready inner service move into a boxed future. That rare path is
/// the only one that boxes; cached and uncached verifications answer
/// without allocating a future.
pub struct JwtAuth<S, T = StandardClaims> {
    inner: S,
    shared: Arc<Shared<T>>,
}

impl<S: Clone, T> Clone for JwtAuth<S, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, T> fmt::Debug for JwtAuth<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, T> JwtAuth<S, T> {
    /// How many verified tokens the shared cache holds now.
    pub fn cached_tokens(&self) -> usize {
        self.shared.cache.as_ref().map_or(0, TokenCache::len)
    }
}

impl<S, T, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuth<S, T>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    ReqBody: Send + 'static,
    ResBody: 'static,
    T: DeserializeOwned + Send + Sync + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let (outcome, from_query) = match shared.sources.find(request.headers(), request.uri()) {
            Err(err) => return ResponseFuture::reject(shared.reject(err, &request)),
            Ok(None) if shared.optional => {
                request
                    .extensions_mut()
                    .insert(Anonymous(Arc::clone(&shared.challenges.answers)));
                return ResponseFuture::inner(self.inner.call(request), false);
            }
            Ok(None) => {
                return ResponseFuture::reject(shared.reject(JwtError::Missing, &request));
            }
            Ok(Some(found)) => {
                let outcome = shared.authenticate(&found.token);
                let token = match &outcome {
                    Outcome::Refresh(..) => Some(found.token.into_owned()),
                    _ => None,
                };
                ((outcome, token), found.from_query)
            }
        };
        match outcome {
            (Outcome::Authenticated(authenticated), _) => {
                if shared.admit(&mut request, &authenticated) {
                    ResponseFuture::inner(self.inner.call(request), from_query)
                } else {
                    ResponseFuture::reject(shared.deny_scope(&request))
                }
            }
            (Outcome::Rejected(err), _) => ResponseFuture::reject(shared.reject(err, &request)),
            (Outcome::Refresh(refresh, generation), token) => {
                // The slow path (a remote key set refetches): box it, with
                // the ready inner service moved in.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let shared = Arc::clone(&self.shared);
                let token = token.unwrap_or_default();
                ResponseFuture::boxed(Box::pin(async move {
                    let lookup = refresh.await;
                    let authenticated =
                        match shared.authenticate_after_refresh(&token, lookup, generation) {
                            Outcome::Authenticated(authenticated) => authenticated,
                            Outcome::Rejected(err) => {
                                return Ok(shared.reject(err, &request));
                            }
                            Outcome::Refresh(..) => {
                                return Ok(shared.reject(JwtError::UnknownKey, &request));
                            }
                        };
                    if !shared.admit(&mut request, &authenticated) {
                        return Ok(shared.deny_scope(&request));
                    }
                    let response = inner.call(request).await?;
                    Ok(finish_response(response, from_query))
                }))
            }
        }
    }
}

/// Wraps the inner body; marks 2xx responses to query-token requests
/// `Cache-Control: private` (RFC 6750 §2.3).
fn finish_response<B>(response: Response<B>, private: bool) -> Response<ResponseBody<B>> {
    let mut response = response.map(ResponseBody::new);
    if private && response.status().is_success() {
        make_private(response.headers_mut());
    }
    response
}

/// Makes the response unstorable by shared caches without weakening what
/// the handler set (RFC 9111 §5.2.2): with `private` or `no-store` on any
/// line, nothing to do; otherwise every directive is kept and `private`
/// added, in place of `public` and of a field-qualified `private="..."`
/// (which lets shared caches store the rest).
fn make_private(headers: &mut http::HeaderMap) {
    fn lines(headers: &http::HeaderMap) -> impl Iterator<Item = Directive<'_>> {
        directives(
            headers
                .get_all(CACHE_CONTROL)
                .iter()
                .map(HeaderValue::as_bytes),
        )
    }
    let mut rewrite = false;
    for directive in lines(headers) {
        if directive.is("no-store") || (directive.is("private") && directive.value().is_none()) {
            return;
        }
        rewrite |= directive.is("public") || directive.is("private");
    }
    if !rewrite {
        // Another line: the existing ones stay as they are.
        headers.append(CACHE_CONTROL, HeaderValue::from_static("private"));
        return;
    }
    let mut merged = b"private".to_vec();
    for directive in lines(headers) {
        if directive.is("public") || directive.is("private") {
            continue;
        }
        merged.extend_from_slice(b", ");
        merged.extend_from_slice(directive.as_bytes());
    }
    // The parts come from valid header values: this cannot fail, but
    // should it, the strictest answer is the safe one.
    let merged = HeaderValue::from_bytes(&merged)
        .unwrap_or_else(|_| HeaderValue::from_static("private, no-store"));
    headers.insert(CACHE_CONTROL, merged);
}

type BoxedResponse<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// Response future of [`JwtAuth`] and [`RequireScope`].
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Rejected { response: Option<Response<ResponseBody<B>>> },
        Inner { #[pin] future: F, private: bool },
        Boxed { future: BoxedResponse<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    fn reject(response: Response<ResponseBody<B>>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    fn inner(future: F, private: bool) -> Self {
        Self {
            kind: Kind::Inner { future, private },
        }
    }

    fn boxed(future: BoxedResponse<B, E>) -> Self {
        Self {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Rejected { .. } => "rejected",
            Kind::Inner { .. } => "inner",
            Kind::Boxed { .. } => "refreshing keys",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            KindProj::Inner { future, private } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => Poll::Ready(Ok(finish_response(response, *private))),
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            },
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests;
