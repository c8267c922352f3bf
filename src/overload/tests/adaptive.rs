//! The adaptive limit: the algorithms on synthetic samples, and the layer
//! under load on paused tokio time.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::task::Poll;

use super::*;
use crate::rate_limit::store::Clock;

const MS: Duration = Duration::from_millis(1);

fn sample(latency: Duration, in_flight: usize, limit: usize) -> Sample {
    Sample::new(latency, in_flight, false, limit)
}

/// Feeds `n` samples of `latency` with the limit fully used.
fn feed(algorithm: &mut impl LimitAlgorithm, limit: &mut usize, latency: Duration, n: usize) {
    for _ in 0..n {
        *limit = algorithm
            .update(&sample(latency, *limit, *limit))
            .clamp(4, 1000);
    }
}

// Gradient2 (Netflix concurrency-limits): the limit grows while latency
// holds, falls when latency rises above tolerance × the long-term average,
// and grows back once latency returns.
#[test]
fn gradient2_converges_down_under_added_latency_and_back_up_after() {
    let mut g = Gradient2::default();
    g.start(20, 4, 1000);
    let mut limit = 20;
    feed(&mut g, &mut limit, 10 * MS, 300);
    let steady = limit;
    assert!(steady >= 200, "grows while latency holds: {steady}");
    feed(&mut g, &mut limit, 100 * MS, 60);
    let loaded = limit;
    assert!(
        loaded <= steady / 10,
        "falls under added latency: {steady} -> {loaded}"
    );
    feed(&mut g, &mut limit, 10 * MS, 300);
    assert!(
        limit >= steady * 3 / 4,
        "grows back after: {loaded} -> {limit} (was {steady})"
    );
}

// An application-limited server (fewer than half the limit in flight)
// does not grow its limit: growth needs evidence of demand.
#[test]
fn gradient2_does_not_grow_an_unused_limit() {
    let mut g = Gradient2::default();
    g.start(100, 4, 1000);
    for _ in 0..500 {
        assert_eq!(g.update(&sample(10 * MS, 10, 100)), 100);
    }
}

// A zero latency (a clock that did not move) must not divide by zero.
#[test]
fn gradient2_survives_zero_latency() {
    let mut g = Gradient2::default();
    g.start(20, 4, 1000);
    for _ in 0..100 {
        let limit = g.update(&sample(Duration::ZERO, 20, 20));
        assert!((4..=1000).contains(&limit));
    }
}

// AIMD: additive increase while requests succeed with the limit used,
// multiplicative decrease on a drop or a latency over the threshold.
#[test]
fn aimd_increases_by_one_and_backs_off_on_drops_and_slow_requests() {
    let mut a = Aimd::default().backoff(0.5).latency_threshold(100 * MS);
    a.start(20, 4, 1000);
    assert_eq!(a.update(&sample(10 * MS, 20, 20)), 21);
    assert_eq!(a.update(&sample(10 * MS, 21, 21)), 22);
    assert_eq!(a.update(&sample(10 * MS, 1, 22)), 22, "unused: no growth");
    assert_eq!(a.update(&Sample::new(10 * MS, 22, true, 22)), 11);
    assert_eq!(a.update(&sample(200 * MS, 11, 11)), 5);
    assert_eq!(a.update(&sample(200 * MS, 5, 5)), 4, "never under min");
}

fn tokio_clock() -> impl Clock {
    let origin = tokio::time::Instant::now();
    move || origin.elapsed()
}

/// `clients` tasks, each sending a request every `think` (answered or
/// shed), for `run`; returns how many were shed. Every shed answer must
/// come on the first poll (no waiting).
async fn load<S>(service: &S, clients: usize, think: Duration, run: Duration) -> usize
where
    S: Service<Request<Body>, Response = Response<OverloadBody<Body>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let shed = Arc::new(AtomicUsize::new(0));
    let end = tokio::time::Instant::now() + run;
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let mut service = service.clone();
            let shed = Arc::clone(&shed);
            // Clients spread over one think time, not all at one instant.
            let start = think * u32::try_from(i).unwrap() / u32::try_from(clients).unwrap();
            tokio::spawn(async move {
                tokio::time::sleep(start).await;
                while tokio::time::Instant::now() < end {
                    let future = service.ready().await.unwrap().call(get("/"));
                    let mut future = Box::pin(future);
                    let first =
                        std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
                    let response = match first {
                        Poll::Ready(response) => response.unwrap(),
                        Poll::Pending => {
                            let response = future.await.unwrap();
                            assert_ne!(
                                response.status(),
                                StatusCode::SERVICE_UNAVAILABLE,
                                "a shed request waited"
                            );
                            response
                        }
                    };
                    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                        shed.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(response.into_body().collect().await);
                    tokio::time::sleep(think).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    shed.load(Ordering::Relaxed)
}

/// A handler that sleeps `latency_ms` and records the most requests it
/// ever had running at once.
#[derive(Clone, Default)]
struct Slow {
    latency_ms: Arc<AtomicU64>,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
}

impl Service<Request<Body>> for Slow {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let now = this.running.fetch_add(1, Ordering::SeqCst) + 1;
            this.max_running.fetch_max(now, Ordering::SeqCst);
            let ms = this.latency_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            this.running.fetch_sub(1, Ordering::SeqCst);
            Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
    }
}

// The scenario: a handler slowed from 1 ms to 200 ms. With a
// fixed limit of 20 and 100 clients sending every 10 ms (10 000 req/s),
// nothing is shed at 1 ms (10 in flight); at 200 ms the excess is shed at
// once and the handler never runs more than 20 requests.
#[tokio::test(start_paused = true)]
async fn a_slowed_handler_keeps_in_flight_under_the_limit_and_sheds_at_once() {
    let layer = OverloadLayer::new(20);
    let handler = Slow::default();
    handler.latency_ms.store(1, Ordering::SeqCst);
    let service = layer.layer(handler.clone());
    let shed = load(&service, 100, 10 * MS, Duration::from_secs(1)).await;
    assert_eq!(shed, 0, "nothing shed at 1 ms");
    handler.latency_ms.store(200, Ordering::SeqCst);
    let shed = load(&service, 100, 10 * MS, Duration::from_secs(2)).await;
    assert!(shed > 1000, "the excess is shed: {shed}");
    assert!(handler.max_running.load(Ordering::SeqCst) <= 20);
    assert_eq!(layer.stats().shed_overloaded, shed as u64);
    assert_eq!(layer.stats().in_flight, 0);
}

// The adaptive layer end to end on paused time: Gradient2 from measured
// latencies lowers the limit when the handler slows down and raises it
// again when it recovers.
#[tokio::test(start_paused = true)]
async fn the_adaptive_limit_follows_the_handler_latency() {
    let layer = OverloadLayer::builder()
        .adaptive(AdaptiveLimit::gradient2().initial(20).min(4).max(200))
        .clock(tokio_clock())
        .build()
        .unwrap();
    let handler = Slow::default();
    handler.latency_ms.store(10, Ordering::SeqCst);
    let service = layer.layer(handler.clone());
    load(&service, 300, MS, Duration::from_secs(2)).await;
    let steady = layer.stats().limit.unwrap();
    assert!(steady >= 150, "grows while latency holds: {steady}");
    handler.latency_ms.store(100, Ordering::SeqCst);
    load(&service, 300, MS, Duration::from_millis(500)).await;
    let loaded = layer.stats().limit.unwrap();
    assert!(
        loaded <= steady / 4,
        "falls under added latency: {steady} -> {loaded}"
    );
    handler.latency_ms.store(10, Ordering::SeqCst);
    load(&service, 300, MS, Duration::from_secs(2)).await;
    let recovered = layer.stats().limit.unwrap();
    assert!(
        recovered >= 150,
        "grows back after: {loaded} -> {recovered}"
    );
}
