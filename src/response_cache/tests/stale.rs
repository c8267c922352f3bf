//! Stale entries (RFC 5861).

use super::*;

/// A handler whose answers are numbered, with these fields; `fail` makes
/// it answer 500 from then on.
fn numbered(
    cc: &'static str,
    fail: Arc<std::sync::atomic::AtomicBool>,
) -> impl Fn(Request<Full<Bytes>>) -> std::future::Ready<Response<Full<Bytes>>> + Clone + Send + Sync
{
    let n = Arc::new(AtomicUsize::new(0));
    move |_| {
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        let status = if fail.load(Ordering::SeqCst) {
            500
        } else {
            200
        };
        std::future::ready(
            Response::builder()
                .status(status)
                .header("cache-control", cc)
                .body(Full::from(format!("v{i}")))
                .unwrap(),
        )
    }
}

// RFC 5861 §3: within `stale-while-revalidate` the stale entry is served
// at once and refreshed once in the background, however many requests
// come meanwhile.
#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_refreshes_exactly_once() {
    let layer = ResponseCacheLayer::new();
    let (svc, n) = service(&layer, {
        let numbered = numbered("max-age=10, stale-while-revalidate=30", Arc::default());
        move |req| {
            let answer = numbered(req);
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                answer.await
            }
        }
    });
    let mut svc = svc;
    assert_eq!(get(&mut svc, "/s").await.body, "v1");
    tokio::time::advance(Duration::from_secs(15)).await;
    for round in 0..2 {
        for _ in 0..10 {
            let stale = get(&mut svc, "/s").await;
            assert_eq!(stale.body, "v1");
            let status = stale.cache_status();
            assert!(status.contains_key("hit"));
            // 15 s old (and a few ms), fresh for 10: 5 to 6 s stale.
            assert!(matches!(status["ttl"].as_str(), "-5" | "-6"));
            assert_eq!(status["detail"], "stale-while-revalidate");
            assert_eq!(stale.reason, Some(crate::decision::Reason::CacheStale));
        }
        // Let the background refresh run (it takes 200 ms): one, however
        // many stale answers before and while it runs.
        tokio::time::sleep(Duration::from_millis(10 * (round + 1))).await;
        assert_eq!(calls(&n), 2, "one refresh started");
    }
    // The refresh lands; the fresh entry answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls(&n), 2);
    let fresh = get(&mut svc, "/s").await;
    assert_eq!(fresh.body, "v2");
    assert!(matches!(fresh.cache_status()["ttl"].as_str(), "9" | "10"));
    assert_eq!(layer.handle().stats().stale_served, 20);
    // Past the window, the stale entry is not served: the request waits.
    tokio::time::advance(Duration::from_secs(50)).await;
    let late = get(&mut svc, "/s").await;
    assert_eq!(late.body, "v3");
    assert_eq!(calls(&n), 3);
}

// RFC 5861 §4: within `stale-if-error`, a 500 from the handler is replaced
// by the stale entry; past it, the 500 goes through.
#[tokio::test(start_paused = true)]
async fn stale_if_error_on_a_500() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let layer = ResponseCacheLayer::new();
    let (mut svc, _) = service(
        &layer,
        numbered("max-age=10, stale-if-error=60", Arc::clone(&fail)),
    );
    assert_eq!(get(&mut svc, "/e").await.body, "v1");
    fail.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(20)).await;
    let stale = get(&mut svc, "/e").await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body, "v1");
    let status = stale.cache_status();
    assert_eq!(status["fwd"], "stale");
    assert_eq!(status["fwd-status"], "500");
    assert_eq!(status["ttl"], "-10");
    tokio::time::advance(Duration::from_secs(60)).await;
    let error = get(&mut svc, "/e").await;
    assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
}

// `must-revalidate` forbids serving stale (RFC 9111 §5.2.2.2), even with
// the RFC 5861 windows.
#[tokio::test(start_paused = true)]
async fn must_revalidate_forbids_stale() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let layer = ResponseCacheLayer::new();
    let (mut svc, n) = service(
        &layer,
        numbered(
            "max-age=10, must-revalidate, stale-while-revalidate=60, stale-if-error=60",
            Arc::clone(&fail),
        ),
    );
    get(&mut svc, "/m").await;
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(get(&mut svc, "/m").await.body, "v2");
    assert_eq!(calls(&n), 2);
    fail.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(get(&mut svc, "/m").await.status, 500);
}

// RFC 5861 §4: a timeout counts as an error: past `origin_timeout`, the
// stale entry answers; the handler's service error too.
#[tokio::test(start_paused = true)]
async fn stale_if_error_on_timeout_and_service_error() {
    let layer = ResponseCacheLayer::builder()
        .origin_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (mut svc, n) = service(&layer, {
        let slow = Arc::clone(&slow);
        move |_| {
            let slow = slow.load(Ordering::SeqCst);
            async move {
                if slow {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                Response::builder()
                    .header("cache-control", "max-age=10, stale-if-error=60")
                    .body(Full::from(if slow { "late" } else { "early" }))
                    .unwrap()
            }
        }
    });
    get(&mut svc, "/t").await;
    slow.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(20)).await;
    let stale = get(&mut svc, "/t").await;
    assert_eq!(stale.body, "early");
    assert_eq!(stale.cache_status()["fwd"], "stale");
    assert!(!stale.cache_status().contains_key("fwd-status"));
    assert_eq!(calls(&n), 2);

    // A service error.
    let layer = ResponseCacheLayer::new();
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&failing);
    let inner = tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let fail = flag.load(Ordering::SeqCst);
        async move {
            if fail {
                return Err("down");
            }
            Ok(Response::builder()
                .header("cache-control", "max-age=1, stale-if-error=60")
                .body(Full::from("kept"))
                .unwrap())
        }
    });
    let mut svc = layer.layer(inner);
    let request = || Request::get("/x").body(Full::<Bytes>::default()).unwrap();
    let first = svc.ready().await.unwrap().call(request()).await.unwrap();
    first.into_body().collect().await.unwrap();
    failing.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    let stale = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert_eq!(
        stale.into_body().collect().await.unwrap().to_bytes(),
        "kept"
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(svc.ready().await.unwrap().call(request()).await.is_err());
}
