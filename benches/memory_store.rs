//! Memory per tracked key of the in-memory rate limiter (`MemoryStore`):
//! inserts 1,000,000 distinct client IPs through the public API
//! (`MemoryStore::check_now` with `Key::ip`) and reads the process's RSS
//! (`VmRSS` in `/proc/self/status`) before and after. Linux only.
//!
//! ```text
//! cargo bench --bench memory_store
//! ```
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it inserts
//! 20,000 keys only, as a smoke run.
//!
//! Three stores, each measured in a fresh state of this process (one after
//! the other, the previous one dropped):
//!
//! * `cap=2M`: a cap above 1M, so all 1M keys stay tracked (bytes/key);
//! * `cap=default`: the default cap (100k keys): what 1M distinct clients
//!   cost with the defaults (bounded by eviction);
//! * the theoretical size of an entry for comparison.

mod common;

use std::hint::black_box;

use tower_edge::rate_limit::{Key, MemoryStore, Quota};

fn keys() -> u32 {
    if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        20_000
    }
}

/// Slow enough that no key's bucket is full again during the run, so the
/// amortised sweep drops nothing.
const QUOTA: Quota = Quota::per_hour(10);

fn fill(label: &str, store: MemoryStore) {
    let keys = keys();
    let before = common::rss_bytes();
    for n in 0..keys {
        let d = store.check_now(&Key::ip(common::nth_ip(n)), &QUOTA, 1);
        assert!(d.is_allowed());
    }
    let after = common::rss_bytes();
    let tracked = store.len();
    let delta = after.saturating_sub(before);
    println!(
        "{label}: inserted={keys} tracked={tracked} rss_before={:.1}MiB rss_after={:.1}MiB \
         delta={:.1}MiB bytes_per_inserted_key={:.1} bytes_per_tracked_key={:.1}",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        delta as f64 / 1048576.0,
        delta as f64 / f64::from(keys),
        delta as f64 / tracked.max(1) as f64,
    );
    black_box(&store);
    drop(store);
    println!(
        "{label}: rss_after_drop={:.1}MiB",
        common::rss_bytes() as f64 / 1048576.0
    );
}

fn main() {
    let entry = std::mem::size_of::<(Key, u64)>();
    // hashbrown: one control byte per bucket; at most 7/8 of the buckets
    // full, the bucket count a power of two, so after the last growth a
    // table is between 7/16 and 7/8 full.
    let keys = keys();
    let shards = 64u64;
    let per_shard = u64::from(keys) / shards;
    let buckets = (per_shard * 8 / 7 + 1).next_power_of_two();
    let theoretical = (entry as u64 + 1) * buckets * shards;
    println!(
        "entry: size_of::<Key>()={} size_of::<(Key, u64)>()={entry} (+1 control byte); \
         {keys} keys in 64 shards of ~{per_shard} keys -> {buckets} buckets per shard \
         (load {:.0}%) -> {:.1} bytes/key in the tables",
        std::mem::size_of::<Key>(),
        per_shard as f64 * 100.0 / buckets as f64,
        theoretical as f64 / f64::from(keys),
    );
    println!(
        "rss_at_start={:.1}MiB",
        common::rss_bytes() as f64 / 1048576.0
    );
    fill("cap=2M", MemoryStore::builder().max_keys(2_000_000).build());
    fill("cap=default(100k)", MemoryStore::new());
}
