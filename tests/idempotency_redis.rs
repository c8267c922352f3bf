//! The idempotency layer on Redis: one execution per key across services
//! sharing one Redis, replays, fencing, TTLs, and Redis killed mid-request
//! under each failure policy. Needs a Redis on 127.0.0.1:6379 (the tests
//! say what to install otherwise) and `redis-server` for the outage tests.
//!
//! Sources: draft-ietf-httpapi-idempotency-key-header-07 ("draft-07").

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::sync::Notify;
use tower::{Layer, ServiceExt};
use tower_edge::idempotency::{
    Claim, Completion, Fingerprint, IdempotencyKey, IdempotencyLayer, IdempotencyStore, InFlight,
    OnStoreError, RedisStore, RequestBody, Scope, StoreKey, StoredResponse,
};
use tower_edge::rate_limit::PeerAddr;
use tower_edge::redis::RedisBackend;

mod support;
use support::redis::{OwnRedis, SHARED, shared_redis, unique_prefix};

fn store(url: &str, test: &str) -> RedisStore {
    let backend = RedisBackend::builder(url)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    RedisStore::with_backend(backend)
        .key_prefix(unique_prefix(test))
        .build()
        .unwrap()
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    let mut request = Request::post("/orders")
        .header("idempotency-key", "\"order-1\"")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([192, 0, 2, 9], 4000))));
    request
}

type Req = Request<RequestBody<Full<Bytes>>>;
type Res = Result<Response<Full<Bytes>>, Infallible>;

/// A handler that counts its runs, and, when gated, waits for the gate.
fn handler(
    runs: Arc<AtomicUsize>,
    gate: Option<Arc<Notify>>,
) -> impl tower::Service<
    Req,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Res> + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |_request: Req| {
        let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = gate.clone();
        async move {
            match gate {
                Some(gate) => gate.notified().await,
                // Long enough for the others to arrive while it runs.
                None => tokio::time::sleep(Duration::from_millis(200)).await,
            }
            let mut response = Response::new(Full::new(Bytes::from(format!("{{\"id\":{n}}}"))));
            *response.status_mut() = StatusCode::CREATED;
            response
                .headers_mut()
                .insert("location", format!("/orders/{n}").parse().unwrap());
            Ok(response)
        }
    })
}

// draft-07 §2.7: exactly one execution per key across every replica
// sharing the store, under any interleaving: 50 concurrent requests on
// one service, then on two services (own backends) sharing one Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_run_once_on_redis_and_across_two_services() {
    shared_redis();
    for services in [1, 2] {
        let runs = Arc::new(AtomicUsize::new(0));
        let prefix = unique_prefix("c50");
        let layers: Vec<_> = (0..services)
            .map(|_| {
                let backend = RedisBackend::builder(SHARED)
                    .timeout(Duration::from_millis(500))
                    .build()
                    .unwrap();
                IdempotencyLayer::builder()
                    .store(
                        RedisStore::with_backend(backend)
                            .key_prefix(&prefix)
                            .build()
                            .unwrap(),
                    )
                    .in_flight(InFlight::Wait(Duration::from_secs(20)))
                    .on_store_error(OnStoreError::Reject)
                    .build()
                    .unwrap()
            })
            .collect();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let service = layers[i % services].layer(handler(Arc::clone(&runs), None));
                tokio::spawn(service.oneshot(post("{\"product_id\":1,\"quantity\":2}")))
            })
            .collect();
        let mut bodies = Vec::new();
        let mut replayed = 0;
        for task in tasks {
            let response = task.await.unwrap().unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            replayed += usize::from(response.headers().contains_key("idempotent-replayed"));
            bodies.push(response.into_body().collect().await.unwrap().to_bytes());
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{services} service(s)");
        assert_eq!(replayed, 49);
        assert!(bodies.iter().all(|b| b == "{\"id\":1}"));
        for layer in &layers {
            assert_eq!(layer.store_errors(), 0);
        }
    }
}

// draft-07 §2.6/§2.7 through Redis: byte-identical marked replay, 422 for
// another payload; every key has a TTL (Redis `PTTL` > 0).
#[tokio::test]
async fn replay_and_mismatch_through_redis_with_a_ttl_on_every_key() {
    let mut conn = shared_redis();
    let store = store(SHARED, "rp");
    let runs = Arc::new(AtomicUsize::new(0));
    let service = IdempotencyLayer::builder()
        .store(store.clone())
        .build()
        .unwrap()
        .layer(handler(Arc::clone(&runs), Some(Arc::new(Notify::new()))));
    let gate = Arc::new(Notify::new());
    let service_gated = IdempotencyLayer::builder()
        .store(store.clone())
        .build()
        .unwrap()
        .layer(handler(Arc::clone(&runs), Some(Arc::clone(&gate))));
    let first = tokio::spawn(service_gated.oneshot(post("a")));
    // While in flight: the key has the lease TTL.
    let pattern = format!("{}*", store_prefix(&store));
    let keys = wait_for_keys(&mut conn, &pattern).await;
    assert_eq!(keys.len(), 1);
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query(&mut conn).unwrap();
    assert!(ttl > 0, "in-flight key without TTL");
    gate.notify_one();
    let first = first.await.unwrap().unwrap();
    let first_head = (first.status(), first.headers()["location"].clone());
    let first_body = first.into_body().collect().await.unwrap().to_bytes();
    let retry = service.clone().oneshot(post("a")).await.unwrap();
    assert_eq!(
        (retry.status(), retry.headers()["location"].clone()),
        first_head
    );
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(
        retry.into_body().collect().await.unwrap().to_bytes(),
        first_body
    );
    let other = service.clone().oneshot(post("b")).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let ttl: i64 = redis::cmd("PTTL").arg(&keys[0]).query(&mut conn).unwrap();
    assert!(
        ttl > 3_600_000,
        "completed key keeps the retention TTL: {ttl}"
    );
}

fn store_prefix(store: &RedisStore) -> String {
    let debug = format!("{store:?}");
    let start = debug.find("key_prefix: \"").unwrap() + 13;
    debug[start..].split('"').next().unwrap().to_owned()
}

async fn wait_for_keys(conn: &mut redis::Connection, pattern: &str) -> Vec<String> {
    for _ in 0..500 {
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(conn).unwrap();
        if !keys.is_empty() {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no key under {pattern}");
}

// A crashed holder's lease expires and frees the key; its late completion
// is refused by the fencing token, so the newer outcome is kept.
#[tokio::test]
async fn lease_expiry_and_fencing_on_redis() {
    shared_redis();
    let store = store(SHARED, "fence");
    let key = StoreKey::new(
        &Scope::from_bytes(b"client"),
        &IdempotencyKey::parse(b"\"k\"", 255).unwrap(),
    );
    let fp = Fingerprint::from_bytes([7; 32]);
    let lease = Duration::from_millis(100);
    let day = Duration::from_secs(86_400);
    let Claim::Acquired {
        token: old,
        took_over: false,
    } = store.claim(&key, &fp, lease).await.unwrap()
    else {
        panic!("first claim")
    };
    assert!(matches!(
        store.claim(&key, &fp, lease).await.unwrap(),
        Claim::InFlight
    ));
    assert!(matches!(
        store
            .claim(&key, &Fingerprint::from_bytes([8; 32]), lease)
            .await
            .unwrap(),
        Claim::Mismatch
    ));
    tokio::time::sleep(Duration::from_millis(150)).await; // the holder "crashed"
    let Claim::Acquired {
        token: new,
        took_over: true,
    } = store.claim(&key, &fp, lease).await.unwrap()
    else {
        panic!("takeover")
    };
    assert_ne!(new, old);
    let outcome = |body: &'static str| {
        Arc::new(StoredResponse::new(
            StatusCode::CREATED,
            http::HeaderMap::new(),
            Bytes::from_static(body.as_bytes()),
            None,
        ))
    };
    assert_eq!(store.release(&key, old).await.ok(), Some(()));
    assert_eq!(
        store
            .complete(&key, &fp, old, outcome("late"), day)
            .await
            .unwrap(),
        Completion::Fenced
    );
    assert_eq!(
        store
            .complete(&key, &fp, new, outcome("new"), day)
            .await
            .unwrap(),
        Completion::Stored
    );
    let Claim::Completed(stored) = store.claim(&key, &fp, lease).await.unwrap() else {
        panic!("completed")
    };
    assert_eq!(stored.body(), "new");
}

/// Runs one request whose handler is held while Redis is killed, then a
/// second request while Redis is down.
async fn kill_redis_mid_request(policy: OnStoreError) -> (StatusCode, StatusCode, usize, u64) {
    let mut server = OwnRedis::on_free_port();
    server.start();
    let backend = RedisBackend::builder(server.url())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    backend.ping(Duration::from_secs(5)).await.unwrap();
    let layer = IdempotencyLayer::builder()
        .store(RedisStore::with_backend(backend).build().unwrap())
        .on_store_error(policy)
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let first = tokio::spawn(
        layer
            .layer(handler(Arc::clone(&runs), Some(Arc::clone(&gate))))
            .oneshot(post("x")),
    );
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop(); // killed while the handler runs
    gate.notify_one();
    let first = first.await.unwrap().unwrap().status();
    let open_gate = Arc::new(Notify::new());
    open_gate.notify_one();
    let second = layer
        .layer(handler(Arc::clone(&runs), Some(open_gate)))
        .oneshot(post("x"))
        .await
        .unwrap();
    (
        first,
        second.status(),
        runs.load(Ordering::SeqCst),
        layer.store_errors(),
    )
}

// Redis unreachable: fail open serves without idempotency (counted),
// fail closed answers 503; the request in flight when Redis died still
// gets its handler's response.
#[tokio::test]
async fn redis_killed_mid_request_under_each_failure_policy() {
    let (first, second, runs, errors) = kill_redis_mid_request(OnStoreError::Allow).await;
    assert_eq!(first, StatusCode::CREATED);
    assert_eq!(second, StatusCode::CREATED);
    assert_eq!(runs, 2);
    assert!(
        errors >= 2,
        "completion and the second claim failed: {errors}"
    );

    let (first, second, runs, errors) = kill_redis_mid_request(OnStoreError::Reject).await;
    assert_eq!(first, StatusCode::CREATED);
    assert_eq!(second, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(runs, 1);
    assert!(errors >= 2);
}

// Start-up never waits for Redis: building against a dead address is
// instant, and the first request gets the failure policy's answer.
#[tokio::test]
async fn start_up_never_waits_for_redis() {
    let url = format!("redis://127.0.0.1:{}", support::redis::free_port());
    let layer = IdempotencyLayer::builder()
        .store(store(&url, "dead"))
        .on_store_error(OnStoreError::Reject)
        .build()
        .unwrap();
    let response = layer
        .layer(handler(
            Arc::new(AtomicUsize::new(0)),
            Some(Arc::new(Notify::new())),
        ))
        .oneshot(post("x"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// Calls of `command` Redis counted (`INFO commandstats`).
fn calls_of(conn: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

// A replay is one plain `SET NX GET` (what a `GET` costs Redis), no
// script; a first claim is the same command; only completing (and a key
// found in flight) runs a script. Counted on a Redis of the test's own.
#[tokio::test]
async fn a_replay_is_one_plain_command_without_a_script() {
    let mut redis = OwnRedis::on_free_port();
    redis.start();
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let store = store(&redis.url(), "plain");
    let key = StoreKey::new(
        &Scope::from_bytes(b"client"),
        &IdempotencyKey::parse(b"\"k\"", 255).unwrap(),
    );
    let fp = Fingerprint::from_bytes([7; 32]);
    let lease = Duration::from_secs(10);
    let scripts = |conn: &mut redis::Connection| calls_of(conn, "evalsha") + calls_of(conn, "eval");
    let Claim::Acquired { token, .. } = store.claim(&key, &fp, lease).await.unwrap() else {
        panic!("first claim")
    };
    assert_eq!(
        scripts(&mut conn),
        0,
        "a free key is claimed without a script"
    );
    let stored = Arc::new(StoredResponse::new(
        StatusCode::CREATED,
        http::HeaderMap::new(),
        Bytes::from_static(b"done"),
        None,
    ));
    let day = Duration::from_secs(86_400);
    assert_eq!(
        store.complete(&key, &fp, token, stored, day).await.unwrap(),
        Completion::Stored
    );
    let (sets, scripts_before) = (calls_of(&mut conn, "set"), scripts(&mut conn));
    for _ in 0..3 {
        let Claim::Completed(replay) = store.claim(&key, &fp, lease).await.unwrap() else {
            panic!("replay")
        };
        assert_eq!(replay.body(), "done");
    }
    assert!(matches!(
        store
            .claim(&key, &Fingerprint::from_bytes([8; 32]), lease)
            .await
            .unwrap(),
        Claim::Mismatch
    ));
    assert_eq!(calls_of(&mut conn, "set"), sets + 4);
    assert_eq!(scripts(&mut conn), scripts_before, "no script for a replay");
}
