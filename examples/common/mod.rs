//! Configuration shared by the examples: environment variables, the JWT
//! layer, the rate-limit stores and a ready-made development token.
//!
//! Everything an example reads from its environment is in [`Config`]; the
//! two functions that turn it into infrastructure — [`auth_layer`] (keys)
//! and [`rate_limit_store`] (where buckets live) — are the places to plug
//! a JWKS key source or a Redis store.

pub mod logging;
pub mod orders;
pub mod response_cache;

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, StatusCode, header};
use tower_edge::ConfigError;
use tower_edge::jwt_auth::{Algorithm, AuthMode, JwtAuthLayer, VerificationKey};
use tower_edge::rate_limit::store::RateLimitStore;
use tower_edge::rate_limit::{
    ClientIp, LimitRateLayerBuilder, MemoryStore, Policy, Quota, SubjectOrIp,
};
use tower_edge::rejection::Problem;

pub mod overload;

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
    /// `HEADER_READ_TIMEOUT_MS`: how long a client has to send a request
    /// head (HTTP/1) or its connection preface (HTTP/2) before the server
    /// closes the connection. See [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// `MAX_CONNECTIONS`: how many connections are open at once; the next
    /// ones wait in the listen backlog until one closes. See
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// `JWT_JWKS_URL`: verify tokens with the identity provider's rotating
    /// keys (RS256, PS256, ES256, EdDSA) instead of `JWT_SECRET`
    /// (feature `jwks`).
    #[cfg(feature = "jwks")]
    pub jwks: Option<tower_edge::jwt_auth::jwks::JwksKeySource>,
    /// `REDIS_URL`: keep the rate-limit buckets in Redis, shared by every
    /// replica, instead of in this process (feature `redis`).
    #[cfg(feature = "redis")]
    pub redis: Option<tower_edge::rate_limit::redis::RedisStore>,
    /// `REDIS_URL`: the one connection every Redis-backed layer of the
    /// example shares (rate limits, and the layers that keep state in
    /// Redis); `None` keeps everything in this process (feature `redis`).
    #[cfg(feature = "redis")]
    pub redis_backend: Option<tower_edge::redis::RedisBackend>,
    /// `ORIGIN_DELAY_MS`: every handler of the example sleeps this long
    /// first (default 0), to watch conflicts, coalescing and shedding by
    /// hand. See [`origin_delay`].
    pub origin_delay: Duration,
    /// `ORIGIN_CAPACITY`: at most this many handlers run their
    /// `ORIGIN_DELAY_MS` at once, the others wait for a turn, like requests
    /// waiting for a database pool (default: no bound). Makes overload
    /// visible: past it, latency grows with the queue.
    pub origin_capacity: Option<usize>,
    /// `MAX_IN_FLIGHT`: the global in-flight limit (feature `overload`).
    /// See [`overload::DEFAULT_MAX_IN_FLIGHT`].
    pub max_in_flight: usize,
    /// `MAX_IN_FLIGHT_PER_CLIENT`: the in-flight limit of each client
    /// (feature `overload`; default `MAX_IN_FLIGHT / 8`).
    pub max_in_flight_per_client: Option<u32>,
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
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            #[cfg(feature = "jwks")]
            jwks: None,
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "redis")]
            redis_backend: None,
            origin_delay: Duration::ZERO,
            origin_capacity: None,
            max_in_flight: overload::DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_per_client: None,
        }
    }
}

/// How long a client has to send a request head, by default: 10 s.
///
/// A real client sends its head at once, in one or two packets; 10 s leaves
/// room for a slow mobile link, and a slow client ("slowloris") holds a
/// connection for 10 s, not for ever (no timer: axum's default) or 30 s
/// (hyper's default once a timer is set).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections are open at once, by default: 512.
///
/// Half the usual limit of open files of a process on Linux (`ulimit -n`,
/// 1024), so the server stops accepting before `accept` fails for lack of
/// file descriptors, with room left for the listener, log files and a
/// Redis connection. Raise both together for more.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

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
        if let Some(ms) = var("HEADER_READ_TIMEOUT_MS") {
            let ms: u64 = ms
                .parse()
                .map_err(|e| format!("HEADER_READ_TIMEOUT_MS: {e}"))?;
            if ms == 0 {
                return Err("HEADER_READ_TIMEOUT_MS: at least 1 (ms)".into());
            }
            config.header_read_timeout = Duration::from_millis(ms);
        }
        if let Some(max) = var("MAX_CONNECTIONS") {
            let max: usize = max.parse().map_err(|e| format!("MAX_CONNECTIONS: {e}"))?;
            if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&max) {
                return Err(format!(
                    "MAX_CONNECTIONS: from 1 to {}",
                    tokio::sync::Semaphore::MAX_PERMITS
                )
                .into());
            }
            config.max_connections = max;
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
            let backend = tower_edge::redis::RedisBackend::builder(url.as_str());
            // Redis failures counted as `tower_edge.rate_limit.store.errors`
            // (the deploy's `TowerEdgeRedisErrors` alert reads it).
            #[cfg(feature = "otel")]
            let backend = backend.metrics(tower_edge::otel::EdgeMetrics::global());
            let backend = backend.build()?;
            let store = RedisStore::with_backend(backend.clone())
                .key_prefix("tower-edge-example:rl")
                .fallback(RedisFallback::Memory)
                .build()?;
            println!("rate limits: buckets in Redis (shared by every replica)");
            config.redis = Some(store);
            config.redis_backend = Some(backend);
        }
        #[cfg(not(feature = "redis"))]
        if var("REDIS_URL").is_some() {
            println!("note: REDIS_URL needs `--features redis`; ignoring it");
        }
        if let Some(ms) = var("ORIGIN_DELAY_MS") {
            let ms: u64 = ms.parse().map_err(|e| format!("ORIGIN_DELAY_MS: {e}"))?;
            config.origin_delay = Duration::from_millis(ms);
            println!("ORIGIN_DELAY_MS: every handler sleeps {ms} ms first");
        }
        if let Some(n) = var("ORIGIN_CAPACITY") {
            let n: usize = n.parse().map_err(|e| format!("ORIGIN_CAPACITY: {e}"))?;
            if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&n) {
                return Err("ORIGIN_CAPACITY: at least 1".into());
            }
            config.origin_capacity = Some(n);
            println!("ORIGIN_CAPACITY: at most {n} handlers at once, the others queue");
        }
        if let Some(max) = var("MAX_IN_FLIGHT") {
            config.max_in_flight = overload::parse_max_in_flight(&max)?;
        }
        if let Some(max) = var("MAX_IN_FLIGHT_PER_CLIENT") {
            let max = overload::parse_max_in_flight(&max)?;
            config.max_in_flight_per_client = Some(u32::try_from(max).unwrap_or(u32::MAX));
        }
        #[cfg(feature = "overload")]
        println!(
            "overload: at most {} requests in flight, {} per client (MAX_IN_FLIGHT)",
            config.max_in_flight,
            overload::per_client_in_flight(&config)
        );
        config.refuse_public_dev_secret()?;
        println!(
            "JWT: issuer {:?}, audience {:?}",
            config.jwt_issuer, config.jwt_audience
        );
        println!(
            "rate limits: {} per client, {} per IP (flood guard)",
            config.rate_limit, config.flood_guard
        );
        println!(
            "connections: at most {} open, {} ms to send a request head \
             (MAX_CONNECTIONS, HEADER_READ_TIMEOUT_MS)",
            config.max_connections,
            config.header_read_timeout.as_millis()
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
pub fn flood_guard(config: &Config) -> LimitRateLayerBuilder {
    tower_edge::rate_limit::LimitRateLayer::builder()
        .policy(
            Policy::new("ip", config.flood_guard)
                .key(ClientIp)
                .store(rate_limit_store(config)),
        )
        .trusted_proxies(&config.trusted_proxies)
}

/// The per-client quota: policy `"client"`, keyed by the token's subject,
/// or by client IP for anonymous requests.
pub fn per_client(config: &Config) -> LimitRateLayerBuilder {
    tower_edge::rate_limit::LimitRateLayer::builder()
        .policy(
            Policy::new("client", config.rate_limit)
                .key(SubjectOrIp)
                .store(rate_limit_store(config)),
        )
        .trusted_proxies(&config.trusted_proxies)
}

/// The scopes of the development token.
pub const DEV_SCOPES: &str = "products:read products:write orders:write greeter:call";

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
    // jsonwebtoken signs with its process default, which a build with both
    // of its providers (tower-edge's `aws-lc-rs` feature) does not have.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
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

// Connections: bounds against slow clients (slowloris).
//
// Three limits, each because the others cannot do its job:
//
// * `MAX_CONNECTIONS`: a semaphore around `accept`, each connection holding
//   a permit until it closes. This is what bounds open connections (and so
//   file descriptors and memory): at the limit the server stops accepting,
//   and new connections wait in the kernel's listen backlog, unanswered,
//   until one closes. (tonic's `concurrency_limit_per_connection` bounds
//   requests per connection, not connections.)
// * `HEADER_READ_TIMEOUT_MS` for HTTP/1: hyper's
//   `http1::Builder::header_read_timeout`, which needs a timer. hyper arms
//   it whenever it starts reading a request head, so it also closes a
//   kept-alive connection that stays silent that long between requests
//   (RFC 9112 §9.5 lets a server close an inactive connection).
// * The same timeout for the first bytes of a connection ([`Connection`]):
//   hyper-util's `auto::Builder` reads the first bytes itself to tell
//   HTTP/1 from HTTP/2, with no deadline, and hyper's HTTP/2 server waits
//   for the client connection preface (RFC 9113 §3.4) with none either.
//
// After its preface an HTTP/2 connection has no per-request head deadline
// in hyper: PINGs ([`H2_KEEPALIVE_INTERVAL`]) close it when the peer stops
// answering, and a client that answers them but sends nothing keeps its
// connection, one of `MAX_CONNECTIONS`.

/// Silence after which the server PINGs an HTTP/2 client (RFC 9113 §6.7).
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long an HTTP/2 client has to answer a PING before the server closes
/// the connection.
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Accepts connections while fewer than `max_connections` are open, each
/// with the header read timeout on its first bytes.
#[derive(Debug)]
pub struct Acceptor {
    listener: tokio::net::TcpListener,
    permits: Arc<tokio::sync::Semaphore>,
    header_read_timeout: Duration,
}

impl Acceptor {
    /// Accepts on `listener` with `config`'s limits.
    pub fn new(listener: tokio::net::TcpListener, config: &Config) -> Self {
        Self {
            listener,
            permits: Arc::new(tokio::sync::Semaphore::new(config.max_connections)),
            header_read_timeout: config.header_read_timeout,
        }
    }

    /// The next connection, once one of the `max_connections` places is
    /// free. Cancel-safe (a place taken by a cancelled call is given back).
    pub async fn accept(&self) -> (Connection, SocketAddr) {
        loop {
            // The place first: while none is free, nothing is accepted.
            let permit = Arc::clone(&self.permits)
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let connection = Connection::new(stream, permit, self.header_read_timeout);
                    return (connection, peer);
                }
                // As axum::serve does: a client that gave up before we
                // accepted is no reason to stop; anything else (no file
                // descriptors left...) would fail again at once, so wait.
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                    ) => {}
                Err(err) => {
                    tracing::error!(error = ?err, "accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_incoming(
        self,
    ) -> impl tokio_stream::Stream<Item = Result<Connection, std::convert::Infallible>> + Send {
        use tokio_stream::StreamExt as _;
        let acceptor = Arc::new(self);
        tokio_stream::iter(std::iter::repeat(acceptor))
            .then(|acceptor| async move { Ok(acceptor.accept().await.0) })
    }
}

/// An accepted TCP connection: holds its place among `max_connections`
/// until dropped, and fails its reads (so the server closes it) if its
/// first bytes are not in within the header read timeout.
///
/// "First bytes": until they differ from the HTTP/2 preface (an HTTP/1
/// request line, whose head hyper's own header read timeout then bounds)
/// or complete it (HTTP/2).
#[derive(Debug)]
pub struct Connection {
    stream: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// Until the first bytes are in.
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// How many octets of the HTTP/2 preface came so far.
    preface_seen: usize,
}

impl Connection {
    fn new(
        stream: tokio::net::TcpStream,
        permit: tokio::sync::OwnedSemaphorePermit,
        header_read_timeout: Duration,
    ) -> Self {
        Self {
            stream,
            _permit: permit,
            deadline: Some(Box::pin(tokio::time::sleep(header_read_timeout))),
            preface_seen: 0,
        }
    }

    /// Whether `bytes`, read after the previous ones, settle the protocol.
    fn settles(&mut self, bytes: &[u8]) -> bool {
        let seen = self.preface_seen;
        let n = bytes.len().min(H2_PREFACE.len() - seen);
        if bytes[..n] != H2_PREFACE[seen..seen + n] {
            return true; // not HTTP/2
        }
        self.preface_seen += n;
        self.preface_seen == H2_PREFACE.len()
    }
}

impl tokio::io::AsyncRead for Connection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        let before = buf.filled().len();
        let read = std::pin::Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.deadline.is_some() {
            match read {
                Poll::Ready(Ok(())) => {
                    if this.settles(&buf.filled()[before..]) {
                        this.deadline = None;
                    }
                }
                Poll::Pending => {
                    let deadline = this.deadline.as_mut().expect("checked above");
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no request within the header read timeout",
                        )));
                    }
                }
                Poll::Ready(Err(_)) => {}
            }
        }
        read
    }
}

impl tokio::io::AsyncWrite for Connection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// tonic puts the TCP addresses in each request's extensions, as for a
/// plain `TcpStream` (the rate limiters read the peer from there).
impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

/// hyper-util's server (HTTP/1 and HTTP/2) with the header read timeout
/// and HTTP/2 PINGs. Both need a timer (hyper docs: `header_read_timeout`
/// "requires a `Timer`"; without one even hyper's 30 s default is not
/// enforced, which is the case under `axum::serve`).
pub fn http_builder(
    config: &Config,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT);
    builder
}

/// Serves HTTP/1 and HTTP/2 (and HTTP/1 upgrades) on `listener` with the
/// limits of `config` until `shutdown`, then stops listening and drains
/// the open connections. `service_for(peer)` is the service of a new
/// connection from `peer`.
pub async fn serve_http<F, S, B>(
    listener: tokio::net::TcpListener,
    config: &Config,
    service_for: F,
    shutdown: impl std::future::Future<Output = ()>,
) where
    F: Fn(SocketAddr) -> S,
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<tower::BoxError>,
{
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    let acceptor = Acceptor::new(listener, config);
    let builder = http_builder(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            (connection, peer) = acceptor.accept() => {
                let service = TowerToHyperService::new(service_for(peer));
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(connection), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        // `?` (Debug, escaped) for anything a client may shape.
                        tracing::debug!(error = ?err, "connection error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(acceptor); // stop listening: new clients are refused, not left waiting
    graceful.shutdown().await;
}

/// The innermost layer of the examples: every handler sleeps
/// [`Config::origin_delay`] first, like a slow database would make it
/// (`ORIGIN_DELAY_MS`). `None` when the delay is zero, so the default stack
/// pays nothing for it.
pub fn origin_delay(config: &Config) -> Option<OriginDelayLayer> {
    (!config.origin_delay.is_zero()).then(|| OriginDelayLayer {
        delay: config.origin_delay,
        capacity: config
            .origin_capacity
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
    })
}

/// See [`origin_delay`].
#[derive(Debug, Clone)]
pub struct OriginDelayLayer {
    delay: Duration,
    /// `ORIGIN_CAPACITY`: the turns to sleep, shared by every request.
    capacity: Option<Arc<tokio::sync::Semaphore>>,
}

impl<S> tower::Layer<S> for OriginDelayLayer {
    type Service = OriginDelay<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OriginDelay {
            inner,
            delay: self.delay,
            capacity: self.capacity.clone(),
        }
    }
}

/// See [`origin_delay`].
#[derive(Debug, Clone)]
pub struct OriginDelay<S> {
    inner: S,
    delay: Duration,
    capacity: Option<Arc<tokio::sync::Semaphore>>,
}

impl<S, R> tower::Service<R> for OriginDelay<S>
where
    S: tower::Service<R> + Clone + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // The ready service goes into the future; its clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let delay = self.delay;
        let capacity = self.capacity.clone();
        Box::pin(async move {
            let _turn = match &capacity {
                Some(turns) => turns.acquire().await.ok(),
                None => None,
            };
            tokio::time::sleep(delay).await;
            inner.call(request).await
        })
    }
}
