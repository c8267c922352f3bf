//! Property tests of the in-memory GCRA store and of the `RateLimit` /
//! `Retry-After` headers, on random schedules with an injected clock.
//!
//! GCRA (ITU-T I.371, virtual scheduling): T = period / quota,
//! τ = T·(burst − 1); deny when now < TAT − τ; on allow
//! TAT = max(TAT, now) + T. Hence in any window [a, b] at most
//! `burst + ⌊(b − a) / T⌋` requests are allowed. `r` and `t`
//! (draft-ietf-httpapi-ratelimit-headers-11 §4.1.1, §4.1.2) derive from the
//! GCRA state; 429 carries `Retry-After: <ceil seconds>` (RFC 6585 §4,
//! RFC 9110 §10.2.3).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use proptest::prelude::*;
use tower::{Service, ServiceExt};
use tower_edge::rate_limit::{Global, Key, LimitRateLayer, MemoryStore, Policy, Quota};
use tower_layer::Layer;

/// A clock the test moves by hand (nanoseconds).
fn manual_clock() -> (
    Arc<AtomicU64>,
    impl Fn() -> Duration + Send + Sync + 'static,
) {
    let now = Arc::new(AtomicU64::new(1_000_000_000));
    let read = Arc::clone(&now);
    (now, move || {
        Duration::from_nanos(read.load(Ordering::SeqCst))
    })
}

fn quota() -> impl Strategy<Value = Quota> {
    (1u32..50, 1u64..5, 1u32..12).prop_map(|(count, secs, burst)| {
        Quota::new(count, Duration::from_secs(secs)).with_burst(burst)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // GCRA: in every window of the schedule, allowed ≤ burst + ⌊len / T⌋.
    #[test]
    fn allowed_requests_never_exceed_burst_plus_elapsed_over_t(
        quota in quota(),
        // Gaps between requests, in nanoseconds: bursts (0) and pauses.
        gaps in prop::collection::vec(prop_oneof![
            3 => Just(0u64),
            3 => 0u64..50_000_000,
            2 => 0u64..2_000_000_000,
        ], 1..120),
    ) {
        let (now, clock) = manual_clock();
        let store = MemoryStore::builder().clock(clock).build();
        let key = Key::from_bytes(b"client");
        let t = u64::try_from(quota.emission_interval().as_nanos()).unwrap();
        let mut allowed_at = Vec::new();
        for gap in gaps {
            now.fetch_add(gap, Ordering::SeqCst);
            let decision = store.check_now(&key, &quota, 1);
            if decision.is_allowed() {
                allowed_at.push(now.load(Ordering::SeqCst));
                prop_assert_eq!(decision.retry_after(), Duration::ZERO);
            } else {
                prop_assert!(decision.retry_after() > Duration::ZERO);
            }
            prop_assert!(decision.remaining() < u64::from(quota.burst()));
        }
        let burst = u64::from(quota.burst());
        for (i, start) in allowed_at.iter().enumerate() {
            for (j, end) in allowed_at.iter().enumerate().skip(i) {
                let count = (j - i + 1) as u64;
                prop_assert!(
                    count <= burst + (end - start) / t,
                    "{} allowed in {} ns with burst {} and T {} ns",
                    count, end - start, burst, t
                );
            }
        }
    }

    // The headers agree with the decisions: after a response with `r=R`,
    // exactly R more requests at the same instant are allowed; after `t=S`
    // seconds the bucket is full again (the next request leaves
    // burst − 1), and one second earlier it is not; a 429's `Retry-After`
    // is the wait after which the request is allowed.
    #[test]
    fn ratelimit_headers_match_the_decisions(
        quota in quota(),
        steps in prop::collection::vec((prop_oneof![
            2 => Just(0u64),
            1 => 0u64..3_000_000_000,
        ], 0u8..3), 1..25),
    ) {
        let (now, clock) = manual_clock();
        let layer = LimitRateLayer::builder()
            .policy(Policy::new("p", quota).key(Global))
            .clock(clock)
            .build()
            .unwrap();
        let mut service = layer.layer(tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut send = move || {
            runtime.block_on(async {
                service.ready().await.unwrap().call(Request::new(())).await.unwrap()
            })
        };
        let burst = u64::from(quota.burst());
        const SECOND: u64 = 1_000_000_000;
        for (gap, probe) in steps {
            now.fetch_add(gap, Ordering::SeqCst);
            let response = send();
            let (r, t) = parse_ratelimit(&response);
            let at = now.load(Ordering::SeqCst);
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                prop_assert_eq!(r, 0);
                let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                prop_assert!(retry >= 1);
                prop_assert!(retry <= t, "retry-after {} beyond t {}", retry, t);
                // Retry-After is rounded up: by then the request passes.
                now.store(at + retry * SECOND, Ordering::SeqCst);
                prop_assert_eq!(send().status(), StatusCode::OK, "denied after Retry-After");
                continue;
            }
            prop_assert_eq!(response.status(), StatusCode::OK);
            prop_assert!(r < burst);
            // An allowed request takes a cell of T > 0: the bucket is not full.
            prop_assert!(t >= 1);
            match probe {
                0 => {
                    // Exactly r more requests now.
                    for _ in 0..r {
                        prop_assert_eq!(send().status(), StatusCode::OK);
                    }
                    let denied = send();
                    prop_assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
                    prop_assert_eq!(parse_ratelimit(&denied).0, 0);
                }
                1 => {
                    // Full after t seconds: the next request leaves burst − 1.
                    now.store(at + t * SECOND, Ordering::SeqCst);
                    let full = send();
                    prop_assert_eq!(full.status(), StatusCode::OK);
                    prop_assert_eq!(parse_ratelimit(&full).0, burst - 1, "not full after t={}", t);
                }
                _ => {
                    // Not yet full one second before t.
                    now.store(at + (t - 1) * SECOND, Ordering::SeqCst);
                    let early = send();
                    prop_assert!(
                        early.status() == StatusCode::TOO_MANY_REQUESTS
                            || parse_ratelimit(&early).0 + 2 <= burst,
                        "full already one second before t={}", t
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // Every quota that parses keeps its burst, however high its rate: a new
    // key gets exactly `burst` requests at one instant. (A rate above one
    // per nanosecond used to parse, with T rounded to 0 and a burst of 1.)
    #[test]
    fn every_quota_that_parses_allows_its_burst(
        count in prop_oneof![1u32..1000, any::<u32>()],
        secs in 1u64..5,
        burst in 1u32..64,
    ) {
        let Ok(quota) = format!("{count}/{secs}s burst {burst}").parse::<Quota>() else {
            prop_assert!(u64::from(count) > secs * 1_000_000_000, "{}/{}s refused", count, secs);
            return Ok(());
        };
        let (_, clock) = manual_clock();
        let store = MemoryStore::builder().clock(clock).build();
        let key = Key::from_bytes(b"client");
        let allowed = (0..=burst)
            .filter(|_| store.check_now(&key, &quota, 1).is_allowed())
            .count();
        prop_assert_eq!(allowed, burst as usize, "{}", quota);
    }
}

/// `r` and `t` of `RateLimit: "p";r=R;t=S`.
fn parse_ratelimit(response: &Response<impl Sized>) -> (u64, u64) {
    let value = response.headers()["ratelimit"].to_str().unwrap();
    let mut r = None;
    let mut t = None;
    for param in value.split(';').skip(1) {
        let (name, number) = param.split_once('=').unwrap();
        match name {
            "r" => r = Some(number.parse().unwrap()),
            "t" => t = Some(number.parse().unwrap()),
            other => panic!("unexpected parameter {other} in {value}"),
        }
    }
    (r.unwrap(), t.unwrap())
}
