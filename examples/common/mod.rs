//! Configuration shared by the examples: environment variables, the JWT
//! layer, the rate-limit stores and a ready-made development token.
//!
//! Everything an example reads from its environment is in [`Config`]; the
//! two functions that turn it into infrastructure — [`auth_layer`] (keys)
//! and [`rate_limit_store`] (where buckets live) — are the places to plug
//! a JWKS key source or a Redis store.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, StatusCode, header};
use tower_edge::ConfigError;
use tower_edge::jwt_auth::{Algorithm, AuthMode, JwtAuthLayer, VerificationKey};
use tower_edge::rate_limit::{
    ClientIp, MemoryStore, Policy, Quota, RateLimitLayerBuilder, RateLimitStore, SubjectOrIp,
};
use tower_edge::rejection::Problem;

/// The `realm` of every `WWW-Authenticate` challenge.
pub const REALM: &str = "tower-edge-example";

/// The 401 for a route that needs a token when the request has none (the
/// JWT layer runs in optional mode, so public routes work anonymously).
pub fn token_required() -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED)
        .with_detail("a bearer token is required")
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tower-edge-example\""),
        )
}

/// For local development only: anyone who reads this file can mint tokens.
const DEV_SECRET: &str = "tower-edge-dev-secret-do-not-use-in-production";

/// Everything the examples read from the environment (all optional).
#[derive(Debug, Clone)]
pub struct Config {
    /// `BIND`: the listening address.
    pub bind: SocketAddr,
    /// `JWT_SECRET`: the HS256 secret tokens are signed with.
    pub jwt_secret: String,
    /// `JWT_ISSUER`: the required `iss`.
    pub jwt_issuer: String,
    /// `JWT_AUDIENCE`: the required `aud`.
    pub jwt_audience: String,
    /// `RATE_LIMIT`: the quota of each client (a subject, or an IP when
    /// anonymous).
    pub rate_limit: Quota,
    /// The coarse per-IP flood guard, ten times `rate_limit`.
    pub flood_guard: Quota,
    /// `TRUSTED_PROXIES`: comma-separated CIDRs whose `X-Forwarded-For` is
    /// believed.
    pub trusted_proxies: Vec<String>,
    /// `JWT_JWKS_URL`: verify tokens with the identity provider's rotating
    /// keys (RS256, PS256, ES256, EdDSA) instead of `JWT_SECRET`
    /// (feature `jwks`).
    #[cfg(feature = "jwks")]
    pub jwks: Option<tower_edge::jwt_auth::jwks::JwksKeySource>,
    /// `REDIS_URL`: keep the rate-limit buckets in Redis, shared by every
    /// replica, instead of in this process (feature `redis`).
    #[cfg(feature = "redis")]
    pub redis: Option<tower_edge::rate_limit::redis::RedisStore>,
}

impl Default for Config {
    fn default() -> Self {
        let rate_limit = Quota::per_minute(600).with_burst(60);
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            jwt_secret: DEV_SECRET.to_owned(),
            jwt_issuer: "https://idp.example.test".to_owned(),
            jwt_audience: "tower-edge-example".to_owned(),
            rate_limit,
            flood_guard: flood_guard_for(rate_limit),
            trusted_proxies: Vec::new(),
            #[cfg(feature = "jwks")]
            jwks: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

/// Ten times the per-client quota, per IP: high enough that a NAT full of
/// honest clients passes, low enough to stop a flood before it costs a
/// signature check.
pub fn flood_guard_for(quota: Quota) -> Quota {
    Quota::new(quota.count().saturating_mul(10), quota.period())
        .with_burst(quota.burst().saturating_mul(10))
}

impl Config {
    /// Reads the environment; `default_bind` is the example's own port.
    pub fn from_env(default_bind: &str) -> Result<Self, Box<dyn Error>> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut config = Self {
            bind: var("BIND")
                .as_deref()
                .unwrap_or(default_bind)
                .parse()
                .map_err(|e| format!("BIND: {e}"))?,
            ..Self::default()
        };
        match var("JWT_SECRET") {
            Some(secret) if secret.len() < 32 => {
                return Err("JWT_SECRET: an HS256 secret must be at least 32 bytes".into());
            }
            Some(secret) => config.jwt_secret = secret,
            None => println!("JWT_SECRET not set: using the built-in development secret"),
        }
        if let Some(issuer) = var("JWT_ISSUER") {
            config.jwt_issuer = issuer;
        }
        if let Some(audience) = var("JWT_AUDIENCE") {
            config.jwt_audience = audience;
        }
        if let Some(quota) = var("RATE_LIMIT") {
            config.rate_limit = quota.parse().map_err(|e| format!("RATE_LIMIT: {e}"))?;
            config.flood_guard = flood_guard_for(config.rate_limit);
        }
        if let Some(proxies) = var("TRUSTED_PROXIES") {
            config.trusted_proxies = proxies.split(',').map(|p| p.trim().to_owned()).collect();
        }
        #[cfg(feature = "jwks")]
        if let Some(url) = var("JWT_JWKS_URL") {
            // Starts at once; tokens get 401 until the first keys arrive.
            let keys = tower_edge::jwt_auth::jwks::JwksKeySource::from_jwks_url(url.as_str())
                .build_lazy()?;
            println!(
                "JWT: keys from the JWKS at {url} (bring a token from that identity provider)"
            );
            config.jwks = Some(keys);
        }
        #[cfg(not(feature = "jwks"))]
        if var("JWT_JWKS_URL").is_some() {
            println!("note: JWT_JWKS_URL needs `--features jwks`; ignoring it");
        }
        #[cfg(feature = "redis")]
        if let Some(url) = var("REDIS_URL") {
            use tower_edge::rate_limit::redis::{RedisFallback, RedisStore};
            // Never connects here: a Redis that is down at start-up is
            // treated like one that fails later (local buckets meanwhile).
            let store = RedisStore::builder(url.as_str())
                .key_prefix("tower-edge-example:rl")
                .fallback(RedisFallback::Memory)
                .build()?;
            println!("rate limits: buckets in Redis (shared by every replica)");
            config.redis = Some(store);
        }
        #[cfg(not(feature = "redis"))]
        if var("REDIS_URL").is_some() {
            println!("note: REDIS_URL needs `--features redis`; ignoring it");
        }
        config.refuse_public_dev_secret()?;
        println!(
            "JWT: issuer {:?}, audience {:?}",
            config.jwt_issuer, config.jwt_audience
        );
        println!(
            "rate limits: {} per client, {} per IP (flood guard)",
            config.rate_limit, config.flood_guard
        );
        Ok(config)
    }
}

impl Config {
    /// Whether tokens are verified with the built-in development secret,
    /// which anyone who reads this file knows.
    pub fn uses_dev_secret(&self) -> bool {
        #[cfg(feature = "jwks")]
        if self.jwks.is_some() {
            return false;
        }
        self.jwt_secret == DEV_SECRET
    }

    /// Refuses to listen beyond loopback with the development secret:
    /// anyone could mint tokens for the server.
    pub fn refuse_public_dev_secret(&self) -> Result<(), String> {
        if self.uses_dev_secret() && !self.bind.ip().is_loopback() {
            return Err(format!(
                "JWT_SECRET: the built-in development secret is public, so anyone could mint \
                 tokens; set JWT_SECRET (32+ random bytes) to listen on {}",
                self.bind
            ));
        }
        Ok(())
    }
}

/// Prints the development token, but only while the development secret is
/// in use: a token signed with your own `JWT_SECRET` does not belong in a
/// terminal or a log.
pub fn print_dev_token(config: &Config) {
    if let Some(token) = printable_dev_token(config) {
        println!("Development token (1 h, scopes `{DEV_SCOPES}`):");
        println!();
        println!("  export TOKEN={token}");
    } else {
        println!("No development token printed: JWT_SECRET (or a JWKS) is set.");
        println!("Export a token from your identity provider as TOKEN to try the commands.");
    }
}

/// [`dev_token`] when the development secret is in use, else `None`.
pub fn printable_dev_token(config: &Config) -> Option<String> {
    config.uses_dev_secret().then(|| dev_token(config))
}

/// The JWT layer: HS256 with `jwt_secret` (or the JWKS of `JWT_JWKS_URL`),
/// issuer and audience required.
pub fn auth_layer(config: &Config, mode: AuthMode) -> Result<JwtAuthLayer, ConfigError> {
    let builder = JwtAuthLayer::builder();
    #[cfg(feature = "jwks")]
    let builder = match &config.jwks {
        Some(keys) => builder.key_source(keys.clone()).algorithms([
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ]),
        None => builder.key(VerificationKey::hmac(Algorithm::HS256, &config.jwt_secret)?),
    };
    #[cfg(not(feature = "jwks"))]
    let builder = builder.key(VerificationKey::hmac(Algorithm::HS256, &config.jwt_secret)?);
    builder
        .issuer(config.jwt_issuer.as_str())
        .audience(config.jwt_audience.as_str())
        .realm(REALM)
        .mode(mode)
        .build()
}

/// Where one policy's buckets live: in Redis when `REDIS_URL` is set (one
/// quota for all replicas), else in this process.
pub fn rate_limit_store(config: &Config) -> Arc<dyn RateLimitStore> {
    #[cfg(feature = "redis")]
    if let Some(redis) = &config.redis {
        return Arc::new(redis.clone());
    }
    let _ = config;
    Arc::new(MemoryStore::new())
}

/// The coarse per-IP flood guard: policy `"ip"`, keyed by client IP.
pub fn flood_guard(config: &Config) -> RateLimitLayerBuilder {
    tower_edge::rate_limit::RateLimitLayer::builder()
        .policy(
            Policy::new("ip", config.flood_guard)
                .key(ClientIp)
                .store(rate_limit_store(config)),
        )
        .trusted_proxies(&config.trusted_proxies)
}

/// The per-client quota: policy `"client"`, keyed by the token's subject,
/// or by client IP for anonymous requests.
pub fn per_client(config: &Config) -> RateLimitLayerBuilder {
    tower_edge::rate_limit::RateLimitLayer::builder()
        .policy(
            Policy::new("client", config.rate_limit)
                .key(SubjectOrIp)
                .store(rate_limit_store(config)),
        )
        .trusted_proxies(&config.trusted_proxies)
}

/// The scopes of the development token.
pub const DEV_SCOPES: &str = "products:read products:write greeter:call";

/// An HS256 token for `subject` with `scope`, valid for `ttl`, as an
/// identity provider would issue it.
pub fn token(config: &Config, subject: &str, scope: &str, ttl: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = serde_json::json!({
        "sub": subject,
        "iss": config.jwt_issuer,
        "aud": config.jwt_audience,
        "iat": now,
        "exp": now + ttl.as_secs(),
        "scope": scope,
    });
    // `auth_layer` has already refused a secret too short to sign with.
    let key = jsonwebtoken::EncodingKey::from_secret(config.jwt_secret.as_bytes())
        .expect("a valid HS256 secret");
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, &claims, &key).expect("HS256 signing does not fail")
}

/// A one-hour token for `dev-user` with [`DEV_SCOPES`].
pub fn dev_token(config: &Config) -> String {
    token(config, "dev-user", DEV_SCOPES, Duration::from_secs(3600))
}

/// Resolves on Ctrl-C (or SIGTERM on Unix), for graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    println!("shutting down");
}
