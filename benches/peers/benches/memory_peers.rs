//! Memory per tracked key: our `MemoryStore` against raw `governor`'s keyed
//! limiter (`RateLimiter::keyed`, a `DashMap<IpAddr, InMemoryState>`), each
//! given 1,000,000 distinct client IPs, in one process one after the other.
//! Reads `VmRSS` from `/proc/self/status` (Linux only).
//!
//! ```text
//! cd benches/peers && cargo bench --bench memory_peers
//! ```

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;

use governor::{Quota as GovernorQuota, RateLimiter};
use tower_edge::rate_limit::{Key, MemoryStore, Quota};

const KEYS: u32 = 1_000_000;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status")
        .expect("this bench reads /proc/self/status (Linux only)");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// The `n`-th address of 10.0.0.0/8.
fn nth_ip(n: u32) -> IpAddr {
    let [_, a, b, c] = n.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(10, a, b, c))
}

/// RSS growth while `tracked` fills a limiter (which it leaks, so it is
/// still there when RSS is read), in bytes per key; prints it.
fn measure(label: &str, tracked: impl FnOnce() -> usize) -> f64 {
    let before = rss_bytes();
    let len = tracked();
    let delta = rss_bytes().saturating_sub(before);
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
            assert!(store.check_now(&Key::ip(nth_ip(n)), &quota, 1).is_allowed());
        }
        let len = store.len();
        // Alive when RSS is read: leaked, freed when the process exits.
        std::mem::forget(black_box(store));
        len
    });
    let governor = measure("governor keyed (DashMap)", || {
        let limiter = RateLimiter::keyed(GovernorQuota::per_hour(NonZeroU32::new(10).unwrap()));
        for n in 0..KEYS {
            assert!(limiter.check_key(&nth_ip(n)).is_ok());
        }
        let len = limiter.len();
        std::mem::forget(black_box(limiter));
        len
    });
    println!("ratio ours/governor bytes per key: {:.2}", ours / governor);
}
