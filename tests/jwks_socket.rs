//! The JWKS key source against a real HTTP server on 127.0.0.1 that counts
//! its fetches (RFC 7517; key rotation per OpenID Connect Core 1.0
//! §10.1.1; caching, refetch and failure rules of the `jwks` module docs).
//!
//! The JWKs are derived in [`jwk`] from the PEM/DER fixtures of
//! `src/jwt_auth/testdata/` (see the header of `src/jwt_auth/tests.rs` for
//! the OpenSSL commands that made them): RSA `n`/`e` from the PKCS#1 DER
//! `RSAPublicKey`, EC `x`/`y` and Ed25519 `x` from the tail of the
//! `SubjectPublicKeyInfo` (the uncompressed point, the raw key).

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Response as AxumResponse};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};
use tower::{Layer, ServiceExt, service_fn};
use tower_edge::jwt_auth::jwks::{JwksError, JwksKeySource};
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, JwtError, KeyLookup, KeySource};

const RSA_PRIVATE: &[u8] = include_bytes!("../src/jwt_auth/testdata/rsa_private.pem");
const RSA_PKCS1_DER: &[u8] = include_bytes!("../src/jwt_auth/testdata/rsa_public_pkcs1.der");
const EC256_PRIVATE: &[u8] = include_bytes!("../src/jwt_auth/testdata/ec256_private.pem");
const EC256_DER: &[u8] = include_bytes!("../src/jwt_auth/testdata/ec256_public.der");
const EC384_PRIVATE: &[u8] = include_bytes!("../src/jwt_auth/testdata/ec384_private.pem");
const EC384_PEM: &str = include_str!("../src/jwt_auth/testdata/ec384_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("../src/jwt_auth/testdata/ed25519_private.pem");
const ED_DER: &[u8] = include_bytes!("../src/jwt_auth/testdata/ed25519_public.der");

/// JWKs of the fixture keys.
mod jwk {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// One DER TLV: (content, rest).
    fn tlv(der: &[u8]) -> (&[u8], &[u8]) {
        let (len, head) = match der[1] {
            n if n < 0x80 => (n as usize, 2),
            n => {
                let octets = (n & 0x7f) as usize;
                let len = der[2..2 + octets]
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | *b as usize);
                (len, 2 + octets)
            }
        };
        (&der[head..head + len], &der[head + len..])
    }

    pub(super) fn rsa(kid: &str) -> Value {
        let (seq, _) = tlv(RSA_PKCS1_DER);
        let (n, rest) = tlv(seq);
        let (e, _) = tlv(rest);
        let n = n.strip_prefix(&[0]).unwrap_or(n);
        json!({ "kty": "RSA", "kid": kid, "n": b64(n), "e": b64(e) })
    }

    pub(super) fn ec256(kid: &str) -> Value {
        let point = &EC256_DER[EC256_DER.len() - 65..];
        assert_eq!(point[0], 4);
        json!({ "kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..]) })
    }

    pub(super) fn ec384(kid: &str) -> Value {
        let body: String = EC384_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).unwrap();
        let point = &der[der.len() - 97..];
        assert_eq!(point[0], 4);
        json!({ "kty": "EC", "crv": "P-384", "kid": kid, "x": b64(&point[1..49]), "y": b64(&point[49..]) })
    }

    pub(super) fn ed(kid: &str) -> Value {
        json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(&ED_DER[ED_DER.len() - 32..]) })
    }

    pub(super) fn with(mut jwk: Value, member: &str, value: Value) -> Value {
        jwk[member] = value;
        jwk
    }

    pub(super) fn set(keys: &[Value]) -> String {
        json!({ "keys": keys }).to_string()
    }
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A token signed with the fixture key of `alg`, with header `kid`.
fn token(alg: jsonwebtoken::Algorithm, kid: &str) -> String {
    signed(alg, Some(kid))
}

/// A token signed with the fixture key of `alg`, with header `kid` if any.
fn signed(alg: jsonwebtoken::Algorithm, kid: Option<&str>) -> String {
    use jsonwebtoken::Algorithm as J;
    let key = match alg {
        J::RS256 | J::RS384 | J::RS512 | J::PS256 | J::PS384 | J::PS512 => {
            EncodingKey::from_rsa_pem(RSA_PRIVATE)
        }
        J::ES256 => EncodingKey::from_ec_pem(EC256_PRIVATE),
        J::ES384 => EncodingKey::from_ec_pem(EC384_PRIVATE),
        J::EdDSA => EncodingKey::from_ed_pem(ED_PRIVATE),
        _ => unreachable!("no HMAC keys in a JWKS"),
    }
    .unwrap();
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    // A distinct `jti` per token: no verified-token cache hit across tests.
    static N: AtomicUsize = AtomicUsize::new(0);
    let claims = json!({ "sub": "ann", "exp": now() + 600, "jti": N.fetch_add(1, Ordering::Relaxed).to_string() });
    // jsonwebtoken signs with its process default, which a build with both
    // of its providers (tower-edge's `aws-lc-rs` feature) does not have.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// A token with an arbitrary `kid` and a meaningless signature.
fn unsigned_token(alg: &str, kid: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(json!({ "alg": alg, "kid": kid }).to_string());
    let claims = URL_SAFE_NO_PAD.encode(json!({ "sub": "x", "exp": now() + 600 }).to_string());
    format!("{header}.{claims}.c2lnbmF0dXJl")
}

/// What the test server answers on `/jwks`.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
    cache_control: Option<&'static str>,
    delay: Duration,
    /// Answer without `Content-Length` (streamed body).
    stream: bool,
}

impl Reply {
    fn ok(body: String) -> Self {
        Self {
            status: 200,
            body,
            cache_control: None,
            delay: Duration::ZERO,
            stream: false,
        }
    }
}

struct ServerState {
    reply: Mutex<Reply>,
    discovery: Mutex<Value>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    /// When set, `/jwks` waits for this before answering.
    gate: Mutex<Option<Arc<Notify>>>,
}

struct Server {
    base: String,
    state: Arc<ServerState>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(reply: Reply) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ServerState {
            reply: Mutex::new(reply),
            discovery: Mutex::new(json!({ "issuer": base, "jwks_uri": format!("{base}/jwks") })),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            gate: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/jwks", axum::routing::get(jwks))
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(|State(s): State<Arc<ServerState>>| async move {
                    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
                    s.discovery.lock().unwrap().to_string()
                }),
            )
            .with_state(Arc::clone(&state));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            base,
            state,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("{}/jwks", self.base)
    }

    fn set_reply(&self, reply: Reply) {
        *self.state.reply.lock().unwrap() = reply;
    }

    fn hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection: the server is down.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap();
    }
}

async fn jwks(State(s): State<Arc<ServerState>>) -> AxumResponse<Body> {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let gate = s.gate.lock().unwrap().clone();
    if let Some(gate) = gate {
        gate.notified().await;
    }
    let reply = s.reply.lock().unwrap().clone();
    tokio::time::sleep(reply.delay).await;
    let body = if reply.stream {
        let chunks = reply
            .body
            .into_bytes()
            .chunks(512)
            .map(|c| Ok::<_, Infallible>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>();
        Body::from_stream(tokio_stream::iter(chunks))
    } else {
        Body::from(reply.body)
    };
    let mut response = AxumResponse::new(body);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/jwk-set+json"),
    );
    if let Some(cc) = reply.cache_control {
        response
            .headers_mut()
            .insert("cache-control", HeaderValue::from_static(cc));
    }
    response
}

const ALL: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn layer(source: &JwksKeySource, algorithms: impl IntoIterator<Item = Algorithm>) -> JwtAuthLayer {
    JwtAuthLayer::builder()
        .key_source(source.clone())
        .algorithms(algorithms)
        .build()
        .unwrap()
}

/// Sends a request with `token` through `layer`; the response and the
/// rejection reason, if any.
async fn send(layer: &JwtAuthLayer, token: &str) -> (StatusCode, Option<JwtError>) {
    let service = layer.layer(service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let request = Request::builder()
        .header("authorization", format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    (
        response.status(),
        response.extensions().get::<JwtError>().cloned(),
    )
}

/// Waits (bounded) until `condition` holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

use jsonwebtoken::Algorithm as J;

fn random() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0u8)
}

// RFC 7517 §4.5, OpenID Connect Core 1.0 §10.1.1 (an unfamiliar kid means
// refetch the set): a rotated-in key is
// found by a refetch, a rotated-out key stops verifying.
#[tokio::test]
async fn rotation_new_kid_appears_and_old_kid_is_removed() {
    let server = Server::start(Reply::ok(jwk::set(&[jwk::rsa("old")]))).await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .build()
        .await
        .unwrap();
    let layer = layer(&source, ALL);
    assert_eq!(
        send(&layer, &token(J::RS256, "old")).await,
        (StatusCode::OK, None)
    );
    assert_eq!(server.hits(), 1);
    let generation = source.generation();

    server.set_reply(Reply::ok(jwk::set(&[jwk::ec256("new")])));
    let old = token(J::RS256, "old");
    // Verified (and cached) under the old set.
    assert_eq!(send(&layer, &old).await.0, StatusCode::OK);
    // The new kid: one refetch, then it verifies.
    assert_eq!(
        send(&layer, &token(J::ES256, "new")).await.0,
        StatusCode::OK
    );
    assert_eq!(server.hits(), 2);
    assert_ne!(source.generation(), generation);
    // The old kid is gone: even the cached verification is not served.
    let (status, err) = send(&layer, &old).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err, Some(JwtError::UnknownKey));
    // Within the cooldown: no further fetch for it.
    assert_eq!(server.hits(), 2);
    // A clone shares the same set and counters.
    let clone = source.clone();
    assert_eq!(clone.fetch_count(), 2);
    assert!(matches!(
        clone.find(Some("new"), Algorithm::ES256),
        KeyLookup::Found(_)
    ));
}

// RFC 7515 §4.1.4: `kid` is optional. A token without one is verified by
// the set's only key for its algorithm; with two candidates it is refused
// (no trying keys in turn), and such tokens cost at most one refetch per
// cooldown, like unknown `kid`s.
#[tokio::test]
async fn a_token_without_kid_is_verified_by_the_only_key_for_its_algorithm() {
    let server = Server::start(Reply::ok(jwk::set(&[jwk::rsa("k1"), jwk::ed("k2")]))).await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .build()
        .await
        .unwrap();
    let one_each = layer(&source, ALL);
    assert_eq!(
        send(&one_each, &signed(J::RS256, None)).await,
        (StatusCode::OK, None)
    );
    assert_eq!(
        send(&one_each, &signed(J::EdDSA, None)).await,
        (StatusCode::OK, None)
    );
    let (status, err) = send(&one_each, &signed(J::ES256, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err, Some(JwtError::UnknownKey));
    server.stop().await;

    let server = Server::start(Reply::ok(jwk::set(&[jwk::rsa("k1"), jwk::rsa("k3")]))).await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .build()
        .await
        .unwrap();
    let two_rsa = layer(&source, ALL);
    for _ in 0..10 {
        let (status, err) = send(&two_rsa, &signed(J::RS256, None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(err, Some(JwtError::UnknownKey));
    }
    assert!(server.hits() <= 2, "{} fetches", server.hits());
    // With its `kid`, the same token verifies.
    assert_eq!(
        send(&two_rsa, &token(J::RS256, "k3")).await,
        (StatusCode::OK, None)
    );
    server.stop().await;
}

// The refetch on an unfamiliar kid (OpenID Connect Core 1.0 §10.1.1) is
// bounded: 1000 tokens with random kids cause at most one fetch per
// cooldown, the refetch single-flight and shared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kids_cause_at_most_one_fetch_per_cooldown() {
    let server = Server::start(Reply::ok(jwk::set(&[jwk::ed("k")]))).await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .cooldown(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let layer = layer(&source, [Algorithm::EdDSA]);
    assert_eq!(server.hits(), 1);
    for round in 0..2 {
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..1000 {
            let layer = layer.clone();
            let kid = format!("random-{round}-{i}-{:x}", random());
            requests.spawn(async move { send(&layer, &unsigned_token("EdDSA", &kid)).await });
        }
        while let Some(result) = requests.join_next().await {
            let (status, err) = result.unwrap();
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(err, Some(JwtError::UnknownKey));
        }
        // Exactly one refetch for both rounds together.
        assert_eq!(server.hits(), 2, "round {round}");
    }
    assert_eq!(source.fetch_count(), 2);
    // The known key still verifies without a fetch.
    assert_eq!(send(&layer, &token(J::EdDSA, "k")).await.0, StatusCode::OK);
    assert_eq!(server.hits(), 2);
}

// The cooldown counts from the last fetch, successful or not: after it, one
// more refetch, and a kid still unknown after it is remembered.
#[tokio::test]
async fn after_the_cooldown_one_more_refetch_and_unknown_kids_are_remembered() {
    let server = Server::start(Reply::ok(jwk::set(&[jwk::ed("k")]))).await;
    let cooldown = Duration::from_millis(300);
    let source = JwksKeySource::from_jwks_url(server.url())
        .cooldown(cooldown)
        .build()
        .await
        .unwrap();
    let layer = layer(&source, [Algorithm::EdDSA]);
    let ghost = unsigned_token("EdDSA", "ghost");
    assert_eq!(send(&layer, &ghost).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(server.hits(), 2);
    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;
    // "ghost" was unknown after a refetch: the negative cache answers.
    assert_eq!(send(&layer, &ghost).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(server.hits(), 2);
    // Another unknown kid after the cooldown: one more refetch.
    assert_eq!(
        send(&layer, &unsigned_token("EdDSA", "other")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.hits(), 3);
    // A failed refetch starts the cooldown too.
    server.set_reply(Reply {
        status: 500,
        ..Reply::ok(String::new())
    });
    tokio::time::sleep(cooldown + Duration::from_millis(100)).await;
    send(&layer, &unsigned_token("EdDSA", "third")).await;
    assert_eq!(server.hits(), 4);
    assert_eq!(source.last_error(), Some(JwksError::Status(500)));
    send(&layer, &unsigned_token("EdDSA", "fourth")).await;
    assert_eq!(server.hits(), 4);
}

// Requests never wait on a refresh when valid keys are present;
// no lock is held across the fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_keys_never_wait_on_a_running_refetch() {
    let server = Server::start(Reply::ok(jwk::set(&[jwk::ed("k")]))).await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .build()
        .await
        .unwrap();
    let layer = layer(&source, [Algorithm::EdDSA]);
    let gate = Arc::new(Notify::new());
    *server.state.gate.lock().unwrap() = Some(Arc::clone(&gate));

    let waiting = {
        let layer = layer.clone();
        tokio::spawn(async move { send(&layer, &unsigned_token("EdDSA", "unknown")).await })
    };
    eventually("the refetch reaches the server", || server.hits() == 2).await;
    // The refetch hangs in the server; a known key verifies meanwhile.
    assert_eq!(send(&layer, &token(J::EdDSA, "k")).await.0, StatusCode::OK);
    assert!(!waiting.is_finished());
    gate.notify_one();
    assert_eq!(waiting.await.unwrap().0, StatusCode::UNAUTHORIZED);
}

// The last good keys keep serving when a fetch fails (`jwks` module docs,
// "Failures").
#[tokio::test]
async fn server_down_old_keys_keep_working() {
    let server = Server::start(Reply::ok(jwk::set(&[jwk::ec384("k")]))).await;
    let cooldown = Duration::from_millis(200);
    let source = JwksKeySource::from_jwks_url(server.url())
        .cooldown(cooldown)
        .build()
        .await
        .unwrap();
    let layer = layer(&source, [Algorithm::ES384]);
    server.stop().await;
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    assert_eq!(
        send(&layer, &unsigned_token("ES384", "new")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(source.failure_count(), 1);
    assert!(matches!(source.last_error(), Some(JwksError::Connect(_))));
    assert_eq!(send(&layer, &token(J::ES384, "k")).await.0, StatusCode::OK);
    assert_eq!(source.len(), 1);
}

// Fetches have a timeout (`jwks` module docs, "HTTP client").
#[tokio::test]
async fn slow_server_times_out() {
    let server = Server::start(Reply {
        delay: Duration::from_secs(30),
        ..Reply::ok(jwk::set(&[jwk::ed("k")]))
    })
    .await;
    let err = JwksKeySource::from_jwks_url(server.url())
        .timeout(Duration::from_millis(200))
        .build()
        .await
        .unwrap_err();
    assert_eq!(err, JwksError::Timeout);
}

// Garbage, oversized (with and without Content-Length), non-200 and empty
// sets: the fail-fast build reports them; a running source keeps its keys.
#[tokio::test]
async fn bad_responses_fail_and_the_last_good_keys_keep_serving() {
    let good = jwk::set(&[jwk::ed("k")]);
    let padded = format!("{good}{}", " ".repeat(4096));
    let only_unusable = jwk::set(&[jwk::with(jwk::ed("enc"), "use", json!("enc"))]);
    type Expected = fn(&JwksError) -> bool;
    let cases: Vec<(Reply, Expected)> = vec![
        (Reply::ok("<html>not json</html>".into()), |e| {
            matches!(e, JwksError::InvalidJson(_))
        }),
        (Reply::ok(r#"{"keys": {}}"#.into()), |e| {
            matches!(e, JwksError::InvalidJson(_))
        }),
        (Reply::ok(padded.clone()), |e| *e == JwksError::TooLarge),
        (
            Reply {
                stream: true,
                ..Reply::ok(padded.clone())
            },
            |e| *e == JwksError::TooLarge,
        ),
        (
            Reply {
                status: 503,
                ..Reply::ok(good.clone())
            },
            |e| *e == JwksError::Status(503),
        ),
        (
            Reply {
                status: 204,
                ..Reply::ok(String::new())
            },
            |e| *e == JwksError::Status(204),
        ),
        (Reply::ok(jwk::set(&[])), |e| *e == JwksError::Empty),
        (Reply::ok(only_unusable), |e| *e == JwksError::Empty),
    ];
    let server = Server::start(Reply::ok(good.clone())).await;
    let cooldown = Duration::from_millis(100);
    let running = JwksKeySource::from_jwks_url(server.url())
        .max_response_size(2048)
        .cooldown(cooldown)
        .build()
        .await
        .unwrap();
    let layer = layer(&running, [Algorithm::EdDSA]);
    for (i, (reply, expected)) in cases.into_iter().enumerate() {
        server.set_reply(reply);
        let err = JwksKeySource::from_jwks_url(server.url())
            .max_response_size(2048)
            .build()
            .await
            .unwrap_err();
        assert!(expected(&err), "case {i}: {err:?}");

        tokio::time::sleep(cooldown + Duration::from_millis(20)).await;
        // (The background task also retries failed fetches every cooldown.)
        let failures = running.failure_count();
        let (status, _) = send(&layer, &unsigned_token("EdDSA", &format!("unknown-{i}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let last = running.last_error().expect("the refetch failed");
        assert!(expected(&last), "case {i}: {last:?}");
        assert!(running.failure_count() > failures, "case {i}");
        assert_eq!(
            send(&layer, &token(J::EdDSA, "k")).await.0,
            StatusCode::OK,
            "case {i}"
        );
    }
    assert_eq!(running.fetch_count(), 1);
}

// OpenID Connect Discovery 1.0 §4: `jwks_uri` from the provider metadata;
// §4.3: its `issuer` must be the one configured.
#[tokio::test]
async fn discovery_document_leads_to_the_jwks_uri() {
    let server = Server::start(Reply::ok(jwk::set(&[jwk::ed("k")]))).await;
    let source = JwksKeySource::from_issuer(&server.base)
        .build()
        .await
        .unwrap();
    assert_eq!(source.jwks_uri(), Some(server.url()));
    let layer = layer(&source, [Algorithm::EdDSA]);
    assert_eq!(send(&layer, &token(J::EdDSA, "k")).await.0, StatusCode::OK);
    assert_eq!(server.state.discovery_hits.load(Ordering::SeqCst), 1);

    // An explicit discovery URL works the same.
    let url = format!("{}/.well-known/openid-configuration", server.base);
    let source = JwksKeySource::from_discovery_url(url.clone())
        .build()
        .await
        .unwrap();
    assert_eq!(source.len(), 1);

    // Another issuer in the document: rejected.
    *server.state.discovery.lock().unwrap() =
        json!({ "issuer": "https://evil.example", "jwks_uri": server.url() });
    let err = JwksKeySource::from_issuer(&server.base)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, JwksError::Discovery(_)), "{err:?}");
    // No jwks_uri, or a plain-http one on another host: rejected.
    *server.state.discovery.lock().unwrap() = json!({ "issuer": server.base });
    let err = JwksKeySource::from_issuer(&server.base)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, JwksError::Discovery(_)), "{err:?}");
    *server.state.discovery.lock().unwrap() =
        json!({ "issuer": server.base, "jwks_uri": "http://idp.example.com/jwks" });
    let err = JwksKeySource::from_discovery_url(url)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, JwksError::Discovery(_)), "{err:?}");
}

// RFC 7517 §4.2 (`use`), §4.3 (`key_ops`), §4.1 (`kty`): keys that are not
// for verifying signatures, or of unknown types, are skipped.
#[tokio::test]
async fn keys_not_for_signature_verification_are_skipped() {
    let server = Server::start(Reply::ok(jwk::set(&[
        jwk::ed("ok"),
        jwk::with(jwk::rsa("enc"), "use", json!("enc")),
        jwk::with(jwk::ec256("ops"), "key_ops", json!(["encrypt", "wrapKey"])),
        jwk::with(jwk::ec384("verify"), "key_ops", json!(["verify"])),
        json!({ "kty": "oct", "kid": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA" }),
        json!({ "kty": "XYZ", "kid": "xyz", "x": "AAAA" }),
        jwk::with(jwk::ed("x448"), "crv", json!("X448")),
        jwk::with(jwk::rsa("rsa-oaep"), "alg", json!("RSA-OAEP")),
    ])))
    .await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .build()
        .await
        .unwrap();
    assert_eq!(source.len(), 2);
    let layer = layer(&source, ALL);
    assert_eq!(send(&layer, &token(J::EdDSA, "ok")).await.0, StatusCode::OK);
    assert_eq!(
        send(&layer, &token(J::ES384, "verify")).await.0,
        StatusCode::OK
    );
    for (alg, kid) in [(J::RS256, "enc"), (J::ES256, "ops"), (J::RS256, "rsa-oaep")] {
        let (status, err) = send(&layer, &token(alg, kid)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{kid}");
        assert_eq!(err, Some(JwtError::UnknownKey), "{kid}");
    }
}

// An RSA key the RSA verification refuses (even modulus, exponent 1) is
// skipped like any unusable key; the good key of the same set still serves.
#[tokio::test]
async fn unusable_rsa_keys_are_skipped_and_the_good_one_serves() {
    let good = jwk::rsa("good");
    let mut n = URL_SAFE_NO_PAD.decode(good["n"].as_str().unwrap()).unwrap();
    *n.last_mut().unwrap() &= 0xfe;
    let server = Server::start(Reply::ok(jwk::set(&[
        jwk::with(jwk::rsa("even-n"), "n", json!(URL_SAFE_NO_PAD.encode(&n))),
        jwk::with(jwk::rsa("e-1"), "e", json!("AQ")),
        good,
    ])))
    .await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .build()
        .await
        .unwrap();
    assert_eq!(source.len(), 1);
    let layer = layer(&source, [Algorithm::RS256]);
    assert_eq!(
        send(&layer, &token(J::RS256, "good")).await.0,
        StatusCode::OK
    );
    for kid in ["even-n", "e-1"] {
        let (status, err) = send(&layer, &token(J::RS256, kid)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{kid}");
        assert_eq!(err, Some(JwtError::UnknownKey), "{kid}");
    }
}

// RFC 7517 §4.4 / RFC 8725 §3.1: a key's `alg` is honoured; a key without
// `alg` serves the algorithms of its type that the allow-list admits.
#[tokio::test]
async fn the_alg_of_a_key_is_honoured() {
    let server = Server::start(Reply::ok(jwk::set(&[
        jwk::with(jwk::rsa("rs384"), "alg", json!("RS384")),
        jwk::rsa("any-rsa"),
        jwk::with(jwk::ec256("es"), "alg", json!("ES256")),
    ])))
    .await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .build()
        .await
        .unwrap();
    let layer = layer(
        &source,
        [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::PS256,
            Algorithm::ES256,
        ],
    );
    assert_eq!(
        send(&layer, &token(J::RS384, "rs384")).await.0,
        StatusCode::OK
    );
    let (status, err) = send(&layer, &token(J::RS256, "rs384")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err, Some(JwtError::KeyAlgorithmMismatch(Algorithm::RS256)));
    // Without `alg`: any allowed RSA algorithm.
    assert_eq!(
        send(&layer, &token(J::RS256, "any-rsa")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&layer, &token(J::PS256, "any-rsa")).await.0,
        StatusCode::OK
    );
    // ... but not one outside the allow-list.
    let (status, err) = send(&layer, &token(J::RS512, "any-rsa")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err, Some(JwtError::AlgorithmNotAllowed(Algorithm::RS512)));
    // An RSA token under an EC key's kid.
    let (status, err) = send(&layer, &token(J::RS256, "es")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(err, Some(JwtError::KeyAlgorithmMismatch(Algorithm::RS256)));
    // None of this caused a refetch.
    assert_eq!(server.hits(), 1);
}

/// How many times the server was fetched within `window` of building a
/// source with cache lifetime bounds `min`..`max`, the server answering
/// with `cache_control`. No request: only the background refresh fetches.
async fn fetches_within(
    cache_control: &'static str,
    min: Duration,
    max: Duration,
    window: Duration,
) -> usize {
    let server = Server::start(Reply {
        cache_control: Some(cache_control),
        ..Reply::ok(jwk::set(&[jwk::ed("k")]))
    })
    .await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .cache_lifetime(min, max)
        .build()
        .await
        .unwrap();
    tokio::time::sleep(window).await;
    let hits = server.hits();
    drop(source);
    hits
}

// max-age within the bounds sets the refresh interval (less a tenth): with
// `max-age=1` and bounds 50 ms – 30 s, one refetch about every 900 ms; the
// lower bound would give ~40 in the window, the upper bound none.
#[tokio::test]
async fn background_refresh_follows_max_age() {
    let hits = fetches_within(
        "public, max-age=1",
        Duration::from_millis(50),
        Duration::from_secs(30),
        Duration::from_millis(2100),
    )
    .await;
    assert!((2..=4).contains(&hits), "{hits} fetches, expected 3");
}

// max-age=0 is raised to the lower bound: one refetch about every 360 ms,
// not a fetch loop.
#[tokio::test]
async fn background_refresh_clamps_max_age_to_the_lower_bound() {
    let hits = fetches_within(
        "max-age=0",
        Duration::from_millis(400),
        Duration::from_secs(30),
        Duration::from_millis(1500),
    )
    .await;
    // Wide on purpose (a loaded CI machine delays timers); a fetch loop
    // makes hundreds.
    assert!((2..=6).contains(&hits), "{hits} fetches, expected 4 or 5");
}

// A day of max-age is cut to the upper bound: one refetch about every
// 270 ms (the lower bound would give ~20 in the window).
#[tokio::test]
async fn background_refresh_clamps_max_age_to_the_upper_bound() {
    let hits = fetches_within(
        "max-age=86400",
        Duration::from_millis(50),
        Duration::from_millis(300),
        Duration::from_millis(1000),
    )
    .await;
    // At least one refetch (without the clamp there is none in the window);
    // wide on purpose for a loaded machine.
    assert!((2..=6).contains(&hits), "{hits} fetches, expected 4");
}

// The background refresh picks up a new set without any request, and stops
// when the source (and every layer holding it) is dropped.
#[tokio::test]
async fn background_refresh_picks_up_new_keys_and_stops_when_dropped() {
    let server = Server::start(Reply {
        cache_control: Some("public, max-age=86400"),
        ..Reply::ok(jwk::set(&[jwk::ed("first")]))
    })
    .await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .cache_lifetime(Duration::from_millis(100), Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    server.set_reply(Reply {
        cache_control: Some("max-age=60"),
        ..Reply::ok(jwk::set(&[jwk::ed("second")]))
    });
    // No request: the background task picks the new set up by itself.
    eventually("the background refresh fetched the new set", || {
        matches!(
            source.find(Some("second"), Algorithm::EdDSA),
            KeyLookup::Found(_)
        )
    })
    .await;
    eventually("several refreshes", || server.hits() >= 4).await;
    let layer = layer(&source, [Algorithm::EdDSA]);
    drop(source);
    // The layer still holds the source: refreshes go on.
    let hits = server.hits();
    eventually("a refresh while the layer lives", || server.hits() > hits).await;
    drop(layer);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hits = server.hits();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(server.hits() <= hits + 1, "{} > {hits} + 1", server.hits());
}

// Start-up without fail-fast: 401 until the keys arrive.
#[tokio::test]
async fn lazy_start_rejects_until_the_first_keys_arrive() {
    let server = Server::start(Reply {
        status: 503,
        ..Reply::ok(String::new())
    })
    .await;
    let source = JwksKeySource::from_jwks_url(server.url())
        .cooldown(Duration::from_millis(100))
        .build_lazy()
        .unwrap();
    let layer = layer(&source, [Algorithm::EdDSA]);
    eventually("the first fetch failed", || source.failure_count() >= 1).await;
    assert!(source.is_empty());
    let (status, _) = send(&layer, &token(J::EdDSA, "k")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    server.set_reply(Reply::ok(jwk::set(&[jwk::ed("k")])));
    eventually("the keys arrived", || !source.is_empty()).await;
    assert_eq!(send(&layer, &token(J::EdDSA, "k")).await.0, StatusCode::OK);
    assert_eq!(source.last_error(), None);
}

// The fetches are counted in `tower_edge.jwks.fetches`, failures with
// `error.type` (OTel semantic conventions, error.type).
#[cfg(feature = "otel")]
#[tokio::test]
async fn fetches_are_counted_in_the_otel_metric() {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let server = Server::start(Reply::ok(jwk::set(&[jwk::ed("k")]))).await;
    let cooldown = Duration::from_millis(100);
    let source = JwksKeySource::from_jwks_url(server.url())
        .cooldown(cooldown)
        .metrics(tower_edge::otel::EdgeMetrics::new(&provider))
        .build()
        .await
        .unwrap();
    let layer = layer(&source, [Algorithm::EdDSA]);
    server.set_reply(Reply {
        status: 502,
        ..Reply::ok(String::new())
    });
    tokio::time::sleep(cooldown + Duration::from_millis(20)).await;
    send(&layer, &unsigned_token("EdDSA", "unknown")).await;
    let failures = source.failure_count();
    assert!(failures >= 1);

    provider.force_flush().unwrap();
    let exported = exporter.get_finished_metrics().unwrap();
    let metric = exported
        .iter()
        .rev()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .find(|m| m.name() == "tower_edge.jwks.fetches")
        .expect("the jwks fetch counter is exported");
    let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else {
        panic!("not a u64 sum: {:?}", metric.data());
    };
    let mut ok = 0;
    let mut failed = 0;
    for point in sum.data_points() {
        let attributes: Vec<_> = point.attributes().collect();
        if attributes.is_empty() {
            ok += point.value();
        } else {
            assert_eq!(attributes[0].key.as_str(), "error.type");
            assert_eq!(attributes[0].value.as_str(), "status");
            failed += point.value();
        }
    }
    assert_eq!(ok, 1);
    assert!(failed >= 1 && failed <= source.failure_count(), "{failed}");
}
