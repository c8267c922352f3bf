//! Redis helpers of the benches that use a real Redis (`REDIS_URL`,
//! default `redis://127.0.0.1:6379`): included by path where needed, so
//! the benches without Redis do not build them.

/// The Redis the benches use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
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
