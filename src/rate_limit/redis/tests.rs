use super::*;

#[test]
fn keys_carry_prefix_hash_tag_and_policy() {
    let ip = Key::ip("192.0.2.1".parse().unwrap());
    assert_eq!(
        redis_key("app:rl", "burst", &ip),
        "app:rl:{ip:192.0.2.1}:burst"
    );
    let v6 = Key::ip_grouped("2001:db8::1".parse().unwrap(), 64);
    assert_eq!(redis_key("a", "p", &v6), "a:{ip:2001:db8::}:p");
    assert_eq!(redis_key("a", "p", &Key::global()), "a:{global}:p");
    assert_eq!(
        redis_key("a", "p", &Key::from_u64(0xab)),
        "a:{h:00000000000000ab}:p"
    );
    // A policy name with braces comes after the tag: the tag stays the key.
    let key = redis_key("a", "we{ir}d", &Key::unknown());
    assert_eq!(hash_tag(&key), "unknown");
    // Two policies, one client: different keys, same slot.
    let a = redis_key("a", "burst", &ip);
    let b = redis_key("a", "hourly", &ip);
    assert_ne!(a, b);
    assert_eq!(hash_tag(&a), hash_tag(&b));
}

/// The part of a key Redis Cluster hashes (its hash-tag rule).
fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[test]
fn prefix_is_validated_naming_the_field() {
    for bad in [
        "",
        "has space",
        "br{ace",
        "br}ace",
        "tab\t",
        "é",
        &"x".repeat(65),
    ] {
        let err = RedisStore::builder("redis://127.0.0.1")
            .key_prefix(bad)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "key_prefix", "{bad:?}");
    }
    assert!(
        RedisStore::builder("redis://127.0.0.1")
            .key_prefix("my-app:rl")
            .build()
            .is_ok()
    );
}

#[test]
fn bad_configuration_names_the_field() {
    let field = |b: RedisStoreBuilder| b.build().unwrap_err().field().to_owned();
    assert_eq!(field(RedisStore::builder("not a url")), "url");
    assert_eq!(field(RedisStore::builder("http://127.0.0.1")), "url");
    assert_eq!(
        field(RedisStore::builder("redis://h").timeout(Duration::ZERO)),
        "timeout"
    );
    assert_eq!(
        field(RedisStore::builder("redis://h").timeout(Duration::from_secs(61))),
        "timeout"
    );
    assert_eq!(
        field(RedisStore::builder("redis://h").fallback_max_keys(0)),
        "fallback_max_keys"
    );
    assert_eq!(
        field(RedisStore::cluster_builder(Vec::<String>::new())),
        "cluster_nodes"
    );
    // A password in the URL never reaches the message.
    let err = RedisStore::builder("redis://:s3cret@h:notaport")
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

// The wire form of one check: EVALSHA of the script's SHA-1, one key, then
// ARGV in the order gcra.lua reads them (T, tau, cost, burst).
#[test]
fn a_check_sends_one_evalsha_with_the_scripts_arguments() {
    let script = Script::new(SCRIPT);
    let sha = script.sha1();
    assert_eq!(sha.len(), 40);
    assert_eq!(sha, redis::Script::new(SCRIPT).get_hash());
    let quota = Quota::per_second(4).with_burst(3); // T = 250 ms, tau = 500 ms
    let call = gcra_call(&script, "p:{h:00000000000000ab}:api", &quota, 2);
    let expected = format!(
        "*8\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n1\r\n\
         $26\r\np:{{h:00000000000000ab}}:api\r\n$9\r\n250000000\r\n\
         $9\r\n500000000\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        String::from_utf8(call.evalsha().get_packed_command()).unwrap(),
        expected
    );
    // On NOSCRIPT: the same call as EVAL with the script's text.
    let eval = String::from_utf8(call.eval().get_packed_command()).unwrap();
    let expected = format!(
        "*8\r\n$4\r\nEVAL\r\n${}\r\n{SCRIPT}\r\n$1\r\n1\r\n\
         $26\r\np:{{h:00000000000000ab}}:api\r\n$9\r\n250000000\r\n\
         $9\r\n500000000\r\n$1\r\n2\r\n$1\r\n3\r\n",
        SCRIPT.len()
    );
    assert_eq!(eval, expected);
}

#[test]
fn script_replies_become_decisions() {
    let ms = Duration::from_millis;
    assert_eq!(
        parse_reply(&[1, 4, 100_000_000, 0]).unwrap(),
        Decision::allowed(4, ms(100))
    );
    assert_eq!(
        parse_reply(&[0, 0, 300_000_000, 100_000_000]).unwrap(),
        Decision::denied(0, ms(300), ms(100))
    );
    for bad in [
        &[][..],
        &[1, 2, 3],
        &[1, 2, 3, 4, 5],
        &[2, 0, 0, 0],
        &[1, -1, 0, 0],
        &[0, 0, -5, 0],
        &[0, 0, 0, -1],
    ] {
        assert!(parse_reply(bad).is_err(), "{bad:?}");
    }
}

// Building never connects and needs no runtime; a check outside a runtime
// is a store error (the layer's failure policy applies), not a panic.
#[test]
fn builds_and_fails_cleanly_without_a_runtime() {
    let store = RedisStore::builder("redis://127.0.0.1:1")
        .fallback(RedisFallback::Error)
        .build()
        .unwrap();
    let quota = Quota::per_second(1);
    let result = store
        .check(Check::new("p", &Key::global(), &quota, 1))
        .into_ready()
        .expect("answered at once");
    assert!(result.unwrap_err().to_string().contains("tokio runtime"));
    assert_eq!(store.failures(), 1);

    // The default fallback limits locally instead (security review: a
    // failing store must keep limiting).
    let store = RedisStore::new("redis://127.0.0.1:1").unwrap();
    for expected in [true, false] {
        let decision = store
            .check(Check::new("p", &Key::global(), &quota, 1))
            .into_ready()
            .expect("answered at once")
            .expect("a local decision");
        assert_eq!(decision.is_allowed(), expected);
    }
    assert_eq!(store.failures(), 2);
}

#[test]
fn fallback_memory_limits_locally_per_policy() {
    let store = RedisStore::builder("redis://127.0.0.1:1")
        .fallback(RedisFallback::Memory)
        .build()
        .unwrap();
    let quota = Quota::per_hour(2);
    let check = |policy| {
        store
            .check(Check::new(policy, &Key::global(), &quota, 1))
            .into_ready()
            .expect("answered at once")
            .unwrap()
    };
    assert_eq!(check("a").remaining(), 1);
    assert_eq!(check("a").remaining(), 0);
    assert!(!check("a").is_allowed());
    // Another policy has its own local bucket.
    assert!(check("b").is_allowed());
}

#[test]
fn deny_cache_answers_until_retry_after_and_is_bounded() {
    let cache = DenyCache::new(2);
    let now = Instant::now();
    let denied = Decision::denied(0, Duration::from_secs(3), Duration::from_secs(1));
    cache.insert(Key::from_u64(1), 1, &denied, now);
    let hit = cache
        .get(&Key::from_u64(1), 1, now + Duration::from_millis(400))
        .unwrap();
    assert!(!hit.is_allowed());
    assert_eq!(hit.retry_after(), Duration::from_millis(600));
    assert_eq!(hit.reset(), Duration::from_millis(2600));
    // A cheaper request may fit: ask Redis.
    cache.insert(Key::from_u64(2), 3, &denied, now);
    assert!(cache.get(&Key::from_u64(2), 1, now).is_none());
    assert!(cache.get(&Key::from_u64(2), 3, now).is_some());
    // Full: a third key takes the place of another, the cache stays at
    // its capacity.
    cache.insert(Key::from_u64(3), 1, &denied, now);
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&Key::from_u64(3), 1, now).is_some());
    // Once Retry-After passed, the entry is gone and room is made.
    let later = now + Duration::from_secs(1);
    cache.insert(Key::from_u64(4), 1, &denied, later);
    assert!(cache.get(&Key::from_u64(4), 1, later).is_some());
    assert!(cache.len() <= 2);
}

// Regression (review): a full cache swept every entry, under its lock, on
// every denial it could not store, and then did not store it. A client
// with many limited keys made each denial cost a scan and a Redis call.
// Now (TtlMap) a full cache does constant work per insert: it evicts by
// insertion order, never holds more than its capacity, and stores and
// serves every new denial.
#[test]
fn a_full_deny_cache_stays_bounded_and_serves_new_denials() {
    let cache = DenyCache::new(100);
    let now = Instant::now();
    let denied = Decision::denied(0, Duration::from_secs(60), Duration::from_secs(60));
    for i in 0..100 {
        cache.insert(Key::from_u64(i), 1, &denied, now);
    }
    for i in 100..1_100 {
        let at = now + Duration::from_millis(i - 100);
        cache.insert(Key::from_u64(i), 1, &denied, at);
        assert!(cache.get(&Key::from_u64(i), 1, at).is_some(), "key {i}");
        assert_eq!(cache.len(), 100);
    }
}

// One backend for every store of a process: stores built on it share its
// failure count; backend settings belong to the backend's builder.
#[test]
fn stores_share_one_backend_and_its_settings() {
    use crate::redis::{Health, RedisBackend};
    let backend = RedisBackend::builder("redis://127.0.0.1:1")
        .build()
        .unwrap();
    let a = RedisStore::with_backend(backend.clone())
        .key_prefix("a")
        .fallback(RedisFallback::Error)
        .build()
        .unwrap();
    let b = RedisStore::with_backend(backend.clone())
        .key_prefix("b")
        .build()
        .unwrap();
    let quota = Quota::per_second(1);
    for store in [&a, &b] {
        let _ = store
            .check(Check::new("p", &Key::global(), &quota, 1))
            .into_ready()
            .expect("answered at once (no runtime)");
    }
    assert_eq!(backend.failures(), 2);
    assert_eq!(a.failures(), 2);
    assert_eq!(b.backend().failures(), 2);
    assert_eq!(backend.health(), Health::Up);
    for (field, builder) in [
        (
            "timeout",
            RedisStore::with_backend(backend.clone()).timeout(Duration::from_millis(5)),
        ),
        (
            "trip_after",
            RedisStore::with_backend(backend.clone()).trip_after(Duration::ZERO),
        ),
        (
            "retry_interval",
            RedisStore::with_backend(backend.clone()).retry_interval(Duration::ZERO),
        ),
    ] {
        assert_eq!(builder.build().unwrap_err().field(), field);
    }
}
