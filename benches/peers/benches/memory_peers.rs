//! Memory per tracked key: our `MemoryStore` against raw `governor`'s keyed
//! limiter (`RateLimiter::keyed`, a `DashMap<IpAddr, InMemoryState>`), each
//! given 1,000,000 distinct client IPs, in one process one after the other.
//! Reads `VmRSS` from `/proc/self/status` (Linux only).
//!
//! ```text
//! cd benches/peers && cargo bench --bench memory_peers
//! ```

#[path = "../../common/mod.rs"]
mod common;

use std::hint::black_box;
use std::num::NonZeroU32;

use governor::{Quota as GovernorQuota, RateLimiter};
use tower_edge::rate_limit::{Key, MemoryStore, Quota};

const KEYS: u32 = 1_000_000;

/// RSS growth while `tracked` fills a limiter (which it leaks, so it is
/// still there when RSS is read), in bytes per key; prints it.
fn measure(label: &str, tracked: impl FnOnce() -> usize) -> f64 {
    let before = common::rss_bytes();
    let len = tracked();
    let delta = common::rss_bytes().saturating_sub(before);
    let per_key = delta as f64 / f64::from(KEYS);
    println!(
        "{label}: keys={KEYS} tracked={len} rss_delta={:.1}MiB bytes_per_key={per_key:.1}",
        delta as f64 / 1048576.0
    );
    per_key
}

fn main() {
    // 10 per hour: no key's bucket is full again during the run, so
    // neither side may forget a key.
    let ours = measure("tower-edge MemoryStore (cap 2M)", || {
        let store = MemoryStore::builder().max_keys(2_000_000).build();
        let quota = Quota::per_hour(10);
        for n in 0..KEYS {
            assert!(
                store
                    .check_now(&Key::ip(common::nth_ip(n)), &quota, 1)
                    .is_allowed()
            );
        }
        let len = store.len();
        // Alive when RSS is read: leaked, freed when the process exits.
        std::mem::forget(black_box(store));
        len
    });
    let governor = measure("governor keyed (DashMap)", || {
        let limiter = RateLimiter::keyed(GovernorQuota::per_hour(NonZeroU32::new(10).unwrap()));
        for n in 0..KEYS {
            assert!(limiter.check_key(&common::nth_ip(n)).is_ok());
        }
        let len = limiter.len();
        std::mem::forget(black_box(limiter));
        len
    });
    println!("ratio ours/governor bytes per key: {:.2}", ours / governor);
}
