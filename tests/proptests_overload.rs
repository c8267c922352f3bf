//! Property tests of the overload layer's limits on random schedules of
//! arrivals and completions, through the public API.
//!
//! Partitioned limits (Netflix concurrency-limits' partitioned limiter,
//! with strict reservations): with shares s_i = ⌊limit · p_i / 100⌋,
//! * the requests in flight never exceed the limit;
//! * a request of partition i is always admitted while partition i has
//!   fewer than s_i in flight (its guaranteed share), whatever the others do;
//! * a shed request was refused only when its partition was at or over its
//!   share and Σ max(in flight_j, s_j) had reached the limit.
//!   Per-key limits: no key ever has more than its limit in flight, and
//!   the key map is empty once everything completed.

use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use proptest::prelude::*;
use tower::Service;
use tower_edge::Subject;
use tower_edge::overload::{KeyLimit, OverloadLayer, Partition};
use tower_edge::rate_limit::SubjectOnly;
use tower_layer::Layer;

type Held = Response<tower_edge::overload::OverloadBody<String>>;

#[derive(Clone)]
struct Ok200;

impl Service<Request<()>> for Ok200 {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(String::new())))
    }
}

fn call<S>(service: &mut S, request: Request<()>) -> Held
where
    S: Service<Request<()>, Response = Held, Error = Infallible>,
{
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut future = std::pin::pin!(service.call(request));
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(response)) => response,
        _ => panic!("the layer made a request wait"),
    }
}

/// A request of partition `p` (0: `a`, 1: `b`, 2: no partition).
fn request(p: u8) -> Request<()> {
    let mut request = Request::new(());
    if p < 2 {
        request
            .extensions_mut()
            .insert(Subject::new(if p == 0 { "a" } else { "b" }));
    }
    request
}

#[derive(Debug, Clone)]
enum Op {
    Arrive(u8),
    Complete(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => (0u8..3).prop_map(Op::Arrive),
            2 => any::<usize>().prop_map(Op::Complete),
        ],
        1..300,
    )
}

proptest! {
    #[test]
    fn partitions_keep_the_limit_and_every_guaranteed_share(
        limit in 1usize..40,
        pa in 1u8..80,
        pb in 1u8..20,
        ops in ops(),
    ) {
        let layer = OverloadLayer::builder()
            .max_in_flight(limit)
            .partition(Partition::new("a", pa).when(|r| r.subject().is_some_and(|s| s.as_str() == "a")))
            .partition(Partition::new("b", pb).when(|r| r.subject().is_some_and(|s| s.as_str() == "b")))
            .build()
            .unwrap();
        let shares = [limit * usize::from(pa) / 100, limit * usize::from(pb) / 100, 0];
        let mut service = layer.layer(Ok200);
        let mut held: Vec<(u8, Held)> = Vec::new();
        for op in ops {
            match op {
                Op::Arrive(p) => {
                    let in_flight = |p: u8| held.iter().filter(|(q, _)| *q == p).count();
                    let counts = [in_flight(0), in_flight(1), in_flight(2)];
                    let reserved: usize = (0..3).map(|i| counts[i].max(shares[i])).sum();
                    let response = call(&mut service, request(p));
                    let i = usize::from(p);
                    if response.status() == StatusCode::OK {
                        prop_assert!(counts[i] < shares[i] || reserved < limit);
                        held.push((p, response));
                    } else {
                        prop_assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
                        prop_assert!(counts[i] >= shares[i], "refused under its share");
                        prop_assert!(reserved >= limit, "refused with room left");
                    }
                }
                Op::Complete(n) if !held.is_empty() => {
                    let index = n % held.len();
                    held.swap_remove(index);
                }
                Op::Complete(_) => {}
            }
            prop_assert!(held.len() <= limit);
            prop_assert_eq!(layer.stats().in_flight, held.len());
        }
        drop(held);
        prop_assert_eq!(layer.stats().in_flight, 0);
    }

    #[test]
    fn per_key_limits_hold_and_forget_idle_keys(
        max in 1u32..5,
        ops in prop::collection::vec((0u8..6, any::<bool>(), any::<usize>()), 1..300),
    ) {
        let layer = OverloadLayer::builder()
            .per_key(KeyLimit::new("per-subject", max).key(SubjectOnly))
            .build()
            .unwrap();
        let mut service = layer.layer(Ok200);
        let mut held: Vec<(u8, Held)> = Vec::new();
        for (key, arrive, n) in ops {
            if arrive || held.is_empty() {
                let mut request = Request::new(());
                request.extensions_mut().insert(Subject::new(format!("user-{key}")));
                let before = held.iter().filter(|(k, _)| *k == key).count();
                let response = call(&mut service, request);
                if before < max as usize {
                    prop_assert_eq!(response.status(), StatusCode::OK);
                    held.push((key, response));
                } else {
                    prop_assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
                }
            } else {
                let index = n % held.len();
                held.swap_remove(index);
            }
            let mut keys: Vec<u8> = held.iter().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            keys.dedup();
            prop_assert_eq!(layer.stats().tracked_keys, Some(keys.len()));
        }
        drop(held);
        prop_assert_eq!(layer.stats().tracked_keys, Some(0));
    }
}
