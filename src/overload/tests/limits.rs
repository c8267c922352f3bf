//! Per-key limits, partitions with guaranteed shares, and the queue.

use super::*;

// Per-key limit: 429 (RFC 6585 §4) with Retry-After and the RateLimit
// fields, the quota unit `concurrent-requests`
// (draft-ietf-httpapi-ratelimit-headers-11, RateLimit-Policy `q`, `qu`;
// RateLimit `r`); other keys are unaffected.
#[test]
fn per_key_limit_is_429_with_ratelimit_fields() {
    let layer = OverloadLayer::builder()
        .per_key(KeyLimit::new("per-ip", 2).key(ClientIp))
        .build()
        .unwrap();
    let mut service = layer.layer(Ok200::default());
    let held = [
        call_now(&mut service, from("192.0.2.1:1")),
        call_now(&mut service, from("192.0.2.1:2")),
    ];
    let limited = call_now(&mut service, from("192.0.2.1:3"));
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(
        limited.headers()["ratelimit-policy"],
        r#""per-ip";q=2;qu="concurrent-requests""#
    );
    assert_eq!(limited.headers()["ratelimit"], r#""per-ip";r=0"#);
    let d = decision(&limited);
    assert_eq!(
        (d.reason(), d.policy()),
        (Reason::ConcurrencyLimited, Some("per-ip"))
    );
    assert_eq!(
        call_now(&mut service, from("192.0.2.2:1")).status(),
        StatusCode::OK
    );
    assert_eq!(layer.stats().shed_concurrency_limited, 1);
    assert_eq!(layer.stats().tracked_keys, Some(1));
    drop(held);
    // Keys are forgotten once nothing of theirs is in flight.
    assert_eq!(layer.stats().tracked_keys, Some(0));
    assert_eq!(
        call_now(&mut service, from("192.0.2.1:4")).status(),
        StatusCode::OK
    );
}

// gRPC callers over a per-key limit get RESOURCE_EXHAUSTED (8).
#[test]
fn grpc_per_key_limit_is_resource_exhausted() {
    let layer = OverloadLayer::builder()
        .per_key(KeyLimit::new("per-client", 1))
        .build()
        .unwrap();
    let mut service = layer.layer(Ok200::default());
    let request = || {
        let mut req = grpc("/shop.Orders/List");
        req.extensions_mut().insert(Subject::new("alice"));
        req
    };
    let _held = call_now(&mut service, request());
    let limited = call_now(&mut service, request());
    assert_eq!(limited.status(), StatusCode::OK);
    assert_eq!(limited.headers()["grpc-status"], "8");
}

// Key state is bounded: past `max_keys` keys with requests in flight, a
// new key is shed (503) instead of growing the map.
#[test]
fn per_key_state_is_bounded() {
    let layer = OverloadLayer::builder()
        .per_key(KeyLimit::new("per-ip", 4).key(ClientIp))
        .max_keys(16)
        .build()
        .unwrap();
    let mut service = layer.layer(Ok200::default());
    let mut held = Vec::new();
    let mut shed = 0;
    for i in 0..1000u32 {
        let peer = format!("10.{}.{}.{}:1", i >> 16, (i >> 8) & 255, i & 255);
        let response = call_now(&mut service, from(&peer));
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            shed += 1;
        }
        held.push(response);
    }
    let tracked = layer.stats().tracked_keys.unwrap();
    // Exactly the cap (1000 random keys fill each of the 16 shards).
    assert_eq!(tracked, 16);
    assert_eq!(shed, 1000 - tracked);
    drop(held);
    assert_eq!(layer.stats().tracked_keys, Some(0));
}

// Netflix concurrency-limits' partitioned limiter: a partition under its
// guaranteed share always gets in, so a flood from one partition does not
// take another's share.
#[test]
fn a_flood_from_one_partition_does_not_take_another_share() {
    let layer = OverloadLayer::builder()
        .max_in_flight(10)
        .partition(Partition::authenticated(80))
        .partition(Partition::new("anonymous", 20))
        .build()
        .unwrap();
    let mut service = layer.layer(Ok200::default());
    let authenticated = || {
        let mut req = get("/");
        req.extensions_mut().insert(Subject::new("alice"));
        req
    };
    // An anonymous flood: 100 requests held in flight.
    let mut held = Vec::new();
    let mut anonymous_ok = 0;
    for _ in 0..100 {
        let response = call_now(&mut service, get("/"));
        if response.status() == StatusCode::OK {
            anonymous_ok += 1;
        } else {
            let d = decision(&response);
            assert_eq!(d.policy(), Some("anonymous"));
        }
        held.push(response);
    }
    assert_eq!(
        anonymous_ok, 2,
        "anonymous gets its 20 % while authenticated holds 80 %"
    );
    // Authenticated clients still get all of their 80 %.
    for i in 0..8 {
        let response = call_now(&mut service, authenticated());
        assert_eq!(response.status(), StatusCode::OK, "#{i}");
        held.push(response);
    }
    assert_eq!(
        call_now(&mut service, authenticated()).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let stats = layer.stats();
    assert_eq!(stats.in_flight, 10);
    let names: Vec<_> = stats
        .partitions
        .iter()
        .map(|p| (&*p.name, p.in_flight, p.share, p.shed))
        .collect();
    assert_eq!(
        names,
        [
            ("authenticated", 8, 8, 1),
            ("anonymous", 2, 2, 98),
            ("other", 0, 0, 0)
        ]
    );
    drop(held);

    // And the other way round: an authenticated flood leaves anonymous
    // its 20 %.
    let mut held: Vec<_> = (0..50)
        .map(|_| call_now(&mut service, authenticated()))
        .collect();
    assert_eq!(
        held.iter().filter(|r| r.status() == StatusCode::OK).count(),
        8
    );
    held.push(call_now(&mut service, get("/")));
    held.push(call_now(&mut service, get("/")));
    assert!(held[50..].iter().all(|r| r.status() == StatusCode::OK));
}

// Shares below 100 % leave a common pool any partition may use.
#[test]
fn unreserved_capacity_is_shared() {
    let layer = OverloadLayer::builder()
        .max_in_flight(10)
        .partition(Partition::authenticated(50))
        .build()
        .unwrap();
    let mut service = layer.layer(Ok200::default());
    // Anonymous requests ("other") get the unreserved half, no more.
    let held: Vec<_> = (0..20).map(|_| call_now(&mut service, get("/"))).collect();
    assert_eq!(
        held.iter().filter(|r| r.status() == StatusCode::OK).count(),
        5
    );
    let stats = layer.stats();
    assert_eq!(stats.partitions[1].in_flight, 5);
    assert_eq!(&*stats.partitions[1].name, "other");
}

#[tokio::test(start_paused = true)]
async fn the_queue_admits_newest_first_and_sheds_at_the_deadline() {
    let layer = OverloadLayer::builder()
        .max_in_flight(1)
        .queue(2, Duration::from_millis(50))
        .build()
        .unwrap();
    let mut service = layer.layer(Ok200::default());
    let held = call_now(&mut service, get("/"));
    let first = tokio::spawn(service.clone().oneshot(get("/first")));
    tokio::task::yield_now().await;
    let second = tokio::spawn(service.clone().oneshot(get("/second")));
    tokio::task::yield_now().await;
    assert_eq!(layer.stats().queued, 2);
    // The queue is full: the next one is shed at once.
    assert_eq!(
        call_now(&mut service, get("/third")).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    drop(held);
    // LIFO: the newest waiter gets the slot.
    let second = second.await.unwrap().unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert!(!first.is_finished());
    // The first one waits until its deadline, then is shed.
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(decision(&first).reason(), Reason::QueueTimeout);
    drop(second);
    let stats = layer.stats();
    assert_eq!(
        (
            stats.shed_queue_timeout,
            stats.shed_overloaded,
            stats.in_flight
        ),
        (1, 1, 0)
    );
}
