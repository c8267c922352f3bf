//! Redis helpers of the benches that use a real Redis (`REDIS_URL`,
//! default `redis://127.0.0.1:6379`): included by path where needed, so
//! the benches without Redis do not build them.

/// The Redis the benches use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The numbers of requests in flight a Redis throughput bench runs at:
/// 1, 16 and 64, or those listed in `INFLIGHT` (`INFLIGHT=16`, to profile
/// one of them alone).
pub fn inflight_levels() -> Vec<usize> {
    match std::env::var("INFLIGHT") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().parse().expect("INFLIGHT lists numbers"))
            .collect(),
        Err(_) => vec![1, 16, 64],
    }
}

/// Deletes the keys a bench run left under `prefix` (nothing when Redis
/// is away), and says how many.
pub fn delete_keys(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_connection() else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(chunk).query(&mut conn);
    }
    println!("# deleted {} bench keys under {prefix}:*", keys.len());
}

/// `GET` of a `value_bytes`-byte value through redis-rs's
/// `ConnectionManager` (the client `RedisBackend` drives), `inflight` at
/// once for `measure`, on `runtime`: gets per second. The floor of any
/// layer answering from one Redis round trip through redis-rs, next to
/// `redis-benchmark GET` (the server's and a C client's ceiling).
pub fn redis_rs_get_per_s(
    runtime: &tokio::runtime::Runtime,
    value_bytes: usize,
    inflight: usize,
    measure: std::time::Duration,
) -> f64 {
    use std::sync::Arc;
    // `SKIP_GET_FLOOR=1`: our side alone (to profile or count it).
    if std::env::var_os("SKIP_GET_FLOOR").is_some() {
        return 0.0;
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    let key = format!("te-bench:redis-rs-floor:{}", std::process::id());
    let client = redis::Client::open(redis_url()).expect("a valid REDIS_URL");
    let done = Arc::new(AtomicU64::new(0));
    let start = runtime.block_on(async {
        let mut conn = redis::aio::ConnectionManager::new(client)
            .await
            .expect("Redis answers");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(vec![b'x'; value_bytes])
            .query_async(&mut conn)
            .await
            .expect("SET");
        let start = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..inflight {
            let mut conn = conn.clone();
            let (key, done) = (key.clone(), Arc::clone(&done));
            tasks.spawn(async move {
                while start.elapsed() < measure {
                    let value: Vec<u8> = redis::cmd("GET")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .expect("GET");
                    assert_eq!(value.len(), value_bytes);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
        start
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}
