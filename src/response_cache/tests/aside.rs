//! Cache-aside on the engine.

use super::*;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct User {
    id: u32,
    name: String,
}

// One load per key in a process: 50 concurrent callers, one load.
#[tokio::test(start_paused = true)]
async fn one_load_per_key() {
    let cache = ResponseCacheLayer::new().cache_aside();
    let loads = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            let loads = Arc::clone(&loads);
            tokio::spawn(async move {
                cache
                    .get_or_load("user:42", Duration::from_secs(30), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, Infallible>(User {
                            id: 42,
                            name: "Ada".into(),
                        })
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().name, "Ada");
    }
    assert_eq!(calls(&loads), 1);
    // Past its lifetime, loaded again.
    tokio::time::advance(Duration::from_secs(31)).await;
    let user: User = cache
        .get_or_load("user:42", Duration::from_secs(30), || async {
            Ok::<_, Infallible>(User {
                id: 42,
                name: "Grace".into(),
            })
        })
        .await
        .unwrap();
    assert_eq!(user.name, "Grace");
}

// Failed loads are not kept; negative caching is opt-in and has its own
// lifetime.
#[tokio::test(start_paused = true)]
async fn errors_are_not_kept_and_negative_caching_is_opt_in() {
    let cache = ResponseCacheLayer::new().cache_aside();
    let failed: Result<u32, &str> = cache
        .get_or_load("k", Duration::from_secs(30), || async { Err("db down") })
        .await;
    assert_eq!(failed, Err("db down"));
    let ok: Result<u32, &str> = cache
        .get_or_load("k", Duration::from_secs(30), || async { Ok(7) })
        .await;
    assert_eq!(ok, Ok(7));

    let loads = Arc::new(AtomicUsize::new(0));
    let missing = async || {
        let loads = Arc::clone(&loads);
        cache
            .get_or_load_optional::<u32, Infallible, _, _>(
                "user:404",
                Duration::from_secs(30),
                Duration::from_secs(5),
                || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok(None)
                },
            )
            .await
            .unwrap()
    };
    assert_eq!(missing().await, None);
    assert_eq!(missing().await, None);
    assert_eq!(calls(&loads), 1);
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(missing().await, None);
    assert_eq!(calls(&loads), 2);
}

// Invalidation by key and by group (the group a response's
// `Cache-Group-Invalidation` names purges values too).
#[tokio::test]
async fn invalidation_by_key_and_group() {
    let layer = ResponseCacheLayer::new();
    let cache = layer.cache_aside();
    let ttl = Duration::from_secs(30);
    let value = |v: u32| move || async move { Ok::<_, Infallible>(v) };
    assert_eq!(cache.get_or_load("a", ttl, value(1)).await, Ok(1));
    assert_eq!(cache.get_or_load("a", ttl, value(2)).await, Ok(1));
    assert!(cache.invalidate("a"));
    assert!(!cache.invalidate("a"));
    assert_eq!(cache.get_or_load("a", ttl, value(3)).await, Ok(3));
    assert_eq!(
        cache
            .get_or_load_in("p1", ttl, &["products"], value(10))
            .await,
        Ok(10)
    );
    assert_eq!(
        cache
            .get_or_load_in("p2", ttl, &["products"], value(20))
            .await,
        Ok(20)
    );
    assert_eq!(cache.invalidate_group("products"), 2);
    assert_eq!(cache.get_or_load("p1", ttl, value(11)).await, Ok(11));
    // A response's `Cache-Group-Invalidation` reaches them.
    assert_eq!(
        cache
            .get_or_load_in("p3", ttl, &["products"], value(30))
            .await,
        Ok(30)
    );
    let (mut svc, _) = service(
        &layer,
        answering(&[("cache-group-invalidation", "\"products\"")], ""),
    );
    send(&mut svc, Request::post("/x").body(Full::default()).unwrap()).await;
    assert_eq!(cache.get_or_load("p3", ttl, value(31)).await, Ok(31));
    assert_eq!(cache.get_or_load("a", ttl, value(4)).await, Ok(3));
}
