//! A gRPC service (tonic) behind tower-edge's layers.
//!
//! ```text
//! cargo run --example tonic
//! ```
//!
//! The protobuf code in `examples/proto/` is generated ahead of time with a
//! pure-Rust compiler (see `examples/proto/gen`), so no system `protoc` is
//! needed. gRPC health (`grpc.health.v1.Health`) and server reflection are
//! served too, so `grpcurl` works without the .proto file.
//!
//! Layers: every RPC goes through the correlation ID and a per-IP flood
//! guard (server-wide `Server::layer`). The Greeter alone adds, with
//! [`tonic::service::LayerExt::named_layer`], JWT auth in required mode,
//! the per-subject quota and the `greeter:call` scope, so health checks and
//! reflection work without a token. Rejections are gRPC statuses: 16
//! `UNAUTHENTICATED` (no or bad token), 7 `PERMISSION_DENIED` (scope
//! missing), 8 `RESOURCE_EXHAUSTED` (rate limited). `SayHello` is
//! idempotent when called with `idempotency-key` metadata: a retry gets the
//! first reply (see `tower_edge::idempotency` for the codes).
//!
//! Connections, against slow clients ("slowloris"): at most
//! `MAX_CONNECTIONS` (default 512) are open at once, further clients wait
//! in the listen backlog until one closes; and a client has
//! `HEADER_READ_TIMEOUT_MS` (default 10 000) to send its HTTP/2 connection
//! preface (RFC 9113 §3.4), else the server closes the connection.
//! Without that deadline, a client that sends half a preface, or nothing,
//! holds its connection for ever, and holds up graceful shutdown, which
//! waits for every connection.
//!
//! The limit of what a timeout does here: hyper's header read timeout is
//! for HTTP/1 only, and after the preface an HTTP/2 connection has no
//! deadline for the headers of its requests. PINGs after 30 s of silence
//! (answered within 10 s) close a connection whose peer stopped answering;
//! a client that answers PINGs but sends nothing keeps its connection, so
//! `MAX_CONNECTIONS` is what bounds how many such clients there are.
//! tonic's `concurrency_limit_per_connection` would not: it bounds the
//! requests of one connection, not connections. See `common` for why these
//! defaults.
//!
//! Environment (all optional): `BIND` (default `127.0.0.1:50051`),
//! `JWT_SECRET`, `JWT_ISSUER`, `JWT_AUDIENCE`, `RATE_LIMIT`,
//! `TRUSTED_PROXIES`, `MAX_CONNECTIONS`, `HEADER_READ_TIMEOUT_MS`,
//! `RUST_LOG`.

#[path = "common/mod.rs"]
pub mod common;

use tonic::service::LayerExt;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Request, Response, Status};
use tower::ServiceBuilder;
use tower_edge::Subject;
use tower_edge::access_log::AccessLogLayer;
use tower_edge::correlation::{CorrelationId, CorrelationIdLayer};
use tower_edge::idempotency::Route;
use tower_edge::jwt_auth::{AuthMode, RequireScopeLayer};

use common::Config;

/// Code generated from `examples/proto/greeter.proto`.
#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod proto {
    include!("proto/greeter.v1.rs");

    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("proto/greeter_descriptor.bin");
}

use proto::greeter_server::{Greeter, GreeterServer};
use proto::{HelloReply, HelloRequest};

/// The Greeter implementation.
#[derive(Debug, Default)]
pub struct MyGreeter;

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        // The layers put these in the request extensions.
        let correlation_id = request
            .extensions()
            .get::<CorrelationId>()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        let subject = request
            .extensions()
            .get::<Subject>()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        let name = request.into_inner().name;
        // `?`: Debug escapes newlines and control characters. The subject
        // is the token's `sub`, a value the client chose at its identity
        // provider; with `%` (Display) a `sub` holding "\n" writes a forged
        // log line and ANSI escapes reach the terminal (CWE-117). Log every
        // value from a request this way.
        tracing::info!(?subject, "greeting");
        Ok(Response::new(HelloReply {
            message: format!("Hello, {name}!"),
            subject,
            correlation_id,
        }))
    }
}

/// The gRPC path of `SayHello`, the idempotent unary method.
pub const SAY_HELLO: &str = "/greeter.v1.Greeter/SayHello";

/// The client IP from tonic's connection info, for the rate limiters.
fn peer_ip(extensions: &http::Extensions) -> Option<std::net::IpAddr> {
    let info = extensions.get::<TcpConnectInfo>()?;
    info.remote_addr().map(|addr| addr.ip())
}

/// Serves the Greeter, health and reflection on `listener` until `shutdown`.
///
/// # Errors
///
/// A configuration a layer refuses (before serving), or a transport error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<GreeterServer<MyGreeter>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    // Every RPC, outermost first: correlation ID, per-IP flood guard.
    let flood_guard = common::flood_guard(&config)
        .peer_addr_with(peer_ip)
        .build()?;
    let everyone = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        // One line per call, with the client IP the flood guard keys by.
        .layer(
            AccessLogLayer::builder()
                .client_ip_as(&flood_guard)
                .build()?,
        )
        .layer(common::overload::global_shedding(&config)?)
        .layer(flood_guard);

    // The Greeter only: a token, the per-subject quota, the scope.
    let greeter = ServiceBuilder::new()
        .layer(common::auth_layer(&config, AuthMode::Required)?)
        .layer(
            common::per_client(&config)
                .peer_addr_with(peer_ip)
                .build()?,
        )
        .layer(common::overload::per_client(&config, peer_ip)?)
        .layer(
            RequireScopeLayer::builder()
                .scope("greeter:call")
                .realm(common::REALM)
                .build()?,
        )
        .option_layer(common::origin_delay(&config))
        // `SayHello` with `idempotency-key` metadata is idempotent: a retry
        // gets the first reply (its correlation ID shows it), another name
        // with the same key 9 FAILED_PRECONDITION, a duplicate in flight 10
        // ABORTED. Without the key it runs as usual.
        .layer(
            common::orders::idempotency(&config, &[Route::exact(SAY_HELLO).key_optional()])?
                .peer_addr_with(peer_ip)
                .build()?,
        )
        .named_layer(GreeterServer::new(MyGreeter));

    // The connection limits (see `common`): `Acceptor` holds the number of
    // open connections to MAX_CONNECTIONS and gives each the header read
    // timeout for its HTTP/2 preface; PINGs close a connection whose peer
    // stops answering. tonic's `concurrency_limit_per_connection` would
    // bound requests per connection, not connections.
    let incoming = common::Acceptor::new(listener, &config).into_incoming();
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(common::H2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(common::H2_KEEPALIVE_TIMEOUT))
        .layer(everyone)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(greeter)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

#[allow(dead_code)] // unused when the example is compiled into its test
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // JSON lines with `LOG_FORMAT=json`; logs over OTLP too with `otel`.
    let _logging = common::logging::init()?;
    let config = Config::from_env("127.0.0.1:50051").map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    println!();
    println!("tower-edge tonic example listening on {addr}");
    println!();
    common::print_dev_token(&config);
    println!();
    println!("Try (with grpcurl; reflection is on):");
    println!("  grpcurl -plaintext {addr} list");
    println!("  grpcurl -plaintext {addr} grpc.health.v1.Health/Check");
    println!(
        "  grpcurl -plaintext -d '{{\"name\":\"Ada\"}}' {addr} greeter.v1.Greeter/SayHello   # Unauthenticated"
    );
    println!(
        "  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"name\":\"Ada\"}}' {addr} greeter.v1.Greeter/SayHello"
    );
    println!(
        "  grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -H 'idempotency-key: hello-1' -d '{{\"name\":\"Ada\"}}' {addr} greeter.v1.Greeter/SayHello   # twice: same reply"
    );
    println!();
    println!("Ctrl-C stops the server gracefully.");
    serve(listener, config, common::shutdown_signal()).await
}
