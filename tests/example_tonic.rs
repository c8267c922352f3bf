//! Drives the tonic example over a real socket with a generated client.

#[allow(dead_code)]
#[path = "../examples/tonic.rs"]
mod example;

mod support;

use std::time::Duration;

use example::common::{self, Config};
use example::proto::HelloRequest;
use example::proto::greeter_client::GreeterClient;
use support::socket;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic::Code;
use tonic::transport::Channel;
use tower_edge::rate_limit::Quota;

/// The example on a free port, until the test ends.
async fn listen(config: Config) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, config, std::future::pending()));
    addr
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn start(config: Config) -> Channel {
    connect(listen(config).await).await
}

fn hello(token: Option<&str>) -> tonic::Request<HelloRequest> {
    let mut request = tonic::Request::new(HelloRequest { name: "Ada".into() });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

#[tokio::test]
async fn a_token_with_the_scope_gets_a_reply_with_its_subject() {
    let config = Config::default();
    let token = common::dev_token(&config);
    let mut client = GreeterClient::new(start(config).await);
    let mut request = hello(Some(&token));
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-call-1".parse().unwrap());
    let response = client.say_hello(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "grpc-call-1"
    );
    assert!(response.metadata().get("ratelimit").is_some());
    let reply = response.into_inner();
    assert_eq!(reply.message, "Hello, Ada!");
    assert_eq!(reply.subject, "dev-user");
    assert_eq!(reply.correlation_id, "grpc-call-1");
}

#[tokio::test]
async fn no_token_or_a_bad_one_is_unauthenticated() {
    // gRPC status 16 for RFC 6750 401s.
    let config = Config::default();
    let mut client = GreeterClient::new(start(config.clone()).await);
    let status = client.say_hello(hello(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let status = client
        .say_hello(hello(Some("not.a.token")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let other_secret = Config {
        jwt_secret: "another-secret-of-at-least-thirty-two-bytes".into(),
        ..config
    };
    let forged = common::dev_token(&other_secret);
    let status = client.say_hello(hello(Some(&forged))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_token_without_the_scope_is_permission_denied() {
    // gRPC status 7 for RFC 6750 403 insufficient_scope.
    let config = Config::default();
    let token = common::token(&config, "ann", "products:read", Duration::from_secs(60));
    let mut client = GreeterClient::new(start(config).await);
    let status = client.say_hello(hello(Some(&token))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn calls_over_the_subjects_quota_are_resource_exhausted() {
    // gRPC status 8 for 429.
    let config = Config {
        rate_limit: Quota::per_minute(2),
        flood_guard: Quota::per_minute(100),
        ..Config::default()
    };
    let token = common::dev_token(&config);
    let other = common::token(&config, "bob", "greeter:call", Duration::from_secs(60));
    let mut client = GreeterClient::new(start(config).await);
    client.say_hello(hello(Some(&token))).await.unwrap();
    client.say_hello(hello(Some(&token))).await.unwrap();
    let status = client.say_hello(hello(Some(&token))).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    // Per subject: another user from the same address still passes.
    let reply = client.say_hello(hello(Some(&other))).await.unwrap();
    assert_eq!(reply.into_inner().subject, "bob");
}

// The `peer_ip` hook finds tonic's `TcpConnectInfo`, so the flood guard
// sees the client: behind a trusted proxy (the test client on loopback)
// each `x-forwarded-for` client has its own bucket. Without the peer
// address both would share the one "unknown" bucket.
#[tokio::test]
async fn the_flood_guard_sees_each_client_behind_a_trusted_proxy() {
    let config = Config {
        flood_guard: Quota::per_minute(1),
        trusted_proxies: vec!["127.0.0.1/32".into()],
        ..Config::default()
    };
    let token = common::dev_token(&config);
    let mut client = GreeterClient::new(start(config).await);
    let from = |ip: &str| {
        let mut request = hello(Some(&token));
        request
            .metadata_mut()
            .insert("x-forwarded-for", ip.parse().unwrap());
        request
    };
    client.say_hello(from("198.51.100.1")).await.unwrap();
    let status = client.say_hello(from("198.51.100.1")).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    client.say_hello(from("198.51.100.2")).await.unwrap();
}

#[tokio::test]
async fn health_needs_no_token() {
    let channel = start(Config::default()).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "greeter.v1.Greeter".into(),
        })
        .await
        .unwrap();
    assert!(response.metadata().get("x-request-id").is_some());
    assert_eq!(
        response.into_inner().status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

#[tokio::test]
async fn reflection_lists_the_greeter_without_a_token() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut reflection = ServerReflectionClient::new(start(Config::default()).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("not a service list: {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"greeter.v1.Greeter"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}

// A signed token carries whatever its issuer put in `sub`, and issuers
// accept user-chosen names: a subject with a newline and ANSI escapes must
// not write a line of its own (a forged entry) or colour the terminal that
// tails the log (CWE-117). The example logs it with `?` (Debug), which
// escapes both.
#[tokio::test]
async fn a_subject_with_a_newline_and_ansi_escapes_cannot_forge_a_log_line() {
    support::logs::install();
    let config = Config::default();
    let subject = "log-forger\n2026-01-01T00:00:00Z  INFO forged line\u{1b}[31m";
    let token = common::token(&config, subject, "greeter:call", Duration::from_secs(60));
    let mut client = GreeterClient::new(start(config).await);
    let reply = client.say_hello(hello(Some(&token))).await.unwrap();
    assert_eq!(reply.into_inner().subject, subject);

    let logs = support::logs::captured();
    let greeting: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("greeting") && line.contains("log-forger"))
        .collect();
    assert_eq!(greeting.len(), 1, "the subject is logged once: {logs}");
    assert!(
        greeting[0].contains("forged line"),
        "the whole subject stays on the line that logs it: {logs}"
    );
    for line in logs.lines().filter(|line| line.contains("forged line")) {
        assert!(line.contains("log-forger"), "a forged line: {line:?}");
    }
    assert!(
        !logs.contains('\u{1b}'),
        "a raw ESC reached the log: {logs:?}"
    );
}

// Slowloris over HTTP/2 (review finding 4). hyper's header read timeout is
// HTTP/1 only; its HTTP/2 server waits for the client's connection preface
// (RFC 9113 §3.4) without a deadline. The example gives the preface the
// header read timeout: a client that sends half of it, or nothing, loses
// the connection. Before, both stayed open (and held up graceful shutdown,
// which waits for every connection).
#[tokio::test]
async fn a_half_sent_connection_preface_is_closed_after_the_header_read_timeout() {
    let config = Config {
        header_read_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let token = common::dev_token(&config);
    let addr = listen(config).await;
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(socket::HALF_H2_PREFACE).await.unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();

    socket::assert_closed_within("half", &mut half, socket::PROMPTLY).await;
    socket::assert_closed_within("silent", &mut silent, socket::PROMPTLY).await;
    // A client that sends its preface at once is served as before.
    let mut client = GreeterClient::new(connect(addr).await);
    client.say_hello(hello(Some(&token))).await.unwrap();
}

// With MAX_CONNECTIONS = 2 and two HTTP/2 connections open, the server does
// not accept a third (it waits in the listen backlog: its call gets no
// answer) until one of the two closes. Before, there was no limit.
#[tokio::test]
async fn connections_over_max_connections_wait_until_one_closes() {
    let config = Config {
        max_connections: 2,
        ..Config::default()
    };
    let token = common::dev_token(&config);
    let addr = listen(config).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(socket::H2_PREFACE_AND_SETTINGS)
            .await
            .unwrap();
        // The server's SETTINGS: the connection was accepted.
        socket::first_bytes(&mut stream, socket::PROMPTLY).await;
        open.push(stream);
    }
    let mut third = tokio::spawn(async move {
        let mut client = GreeterClient::new(connect(addr).await);
        client.say_hello(hello(Some(&token))).await
    });
    let early = tokio::time::timeout(Duration::from_millis(500), &mut third).await;
    assert!(early.is_err(), "served at once: {early:?}");

    drop(open.pop());
    let reply = tokio::time::timeout(socket::PROMPTLY, third)
        .await
        .expect("served once a connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(reply.into_inner().subject, "dev-user");
}

// Graceful shutdown waits for every open connection to close. A client
// that stops halfway through its preface is closed after the header read
// timeout, so it cannot hold the shutdown up for ever. Before, it did.
#[tokio::test]
async fn graceful_shutdown_is_not_held_up_by_a_half_sent_preface() {
    let config = Config {
        header_read_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(example::serve(listener, config, async {
        let _ = stopped.await;
    }));
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(socket::HALF_H2_PREFACE).await.unwrap();
    // The server's SETTINGS: the connection was accepted.
    socket::first_bytes(&mut half, socket::PROMPTLY).await;

    stop.send(()).unwrap();
    tokio::time::timeout(socket::PROMPTLY, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

// MAX_IN_FLIGHT with a slow origin (ORIGIN_DELAY_MS): a call over the
// global in-flight limit gets UNAVAILABLE (14) at once, trailers-only,
// never an HTTP 503 (gRPC status codes; gRPC over HTTP/2, "Responses").
#[cfg(feature = "overload")]
#[tokio::test]
async fn calls_over_max_in_flight_are_unavailable() {
    let config = Config {
        max_in_flight: 1,
        origin_delay: std::time::Duration::from_secs(1),
        ..Config::default()
    };
    let token = common::dev_token(&config);
    let channel = start(config).await;
    let mut first = GreeterClient::new(channel.clone());
    let mut second = GreeterClient::new(channel);
    let slow = tokio::spawn(async move { first.say_hello(hello(Some(&token))).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let token = common::dev_token(&Config::default());
    let status = second.say_hello(hello(Some(&token))).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(slow.await.unwrap().is_ok(), "the admitted call completes");
}

// `SayHello` with `idempotency-key` metadata (draft-ietf-httpapi-
// idempotency-key-header-07 over gRPC): a retry gets the first reply (the
// same correlation ID), another message with the key 9
// FAILED_PRECONDITION, never an HTTP status; without the key each call runs.
#[tokio::test]
async fn say_hello_with_an_idempotency_key_replays_the_first_reply() {
    let config = Config::default();
    let token = common::dev_token(&config);
    let mut client = GreeterClient::new(start(config).await);
    let keyed = |name: &str| {
        let mut request = hello(Some(&token));
        request.get_mut().name = name.into();
        request
            .metadata_mut()
            .insert("idempotency-key", "\"hello-1\"".parse().unwrap());
        request
    };
    let first = client.say_hello(keyed("Ada")).await.unwrap();
    let retry = client.say_hello(keyed("Ada")).await.unwrap();
    assert_eq!(retry.metadata().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(retry.get_ref(), first.get_ref());
    let other = client.say_hello(keyed("Bob")).await.unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);
    let a = client.say_hello(hello(Some(&token))).await.unwrap();
    let b = client.say_hello(hello(Some(&token))).await.unwrap();
    assert_ne!(a.get_ref().correlation_id, b.get_ref().correlation_id);
}
