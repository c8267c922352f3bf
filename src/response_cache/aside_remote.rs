//! Cache-aside across replicas: a value looked up in the Redis tier after
//! a miss in memory, and one load per key across replicas through the
//! tier's fill lease (see [`remote`](super::remote)).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

use super::engine::Engine;
use super::entry::{Entry, KeyParts};
use super::remote::{Found, RemoteTier};
use super::remote_fill::RemoteFill;
use super::remote_step::{ensure_subscription, pick};

/// What the Redis tier had for a cache-aside key.
pub(super) enum Shared {
    /// A fresh entry, now in the memory tier too.
    Kept(Arc<Entry>),
    /// Nothing usable: load, and store in Redis (with the fill lease when
    /// this replica holds it; without when another replica's fill timed
    /// out, or a stale entry is replaced).
    Load(RemoteFill),
    /// No Redis tier, or Redis failed (counted as a bypass): load, and keep
    /// the value in this process only.
    Local,
}

/// Looks `key` up in the Redis tier, waiting at most `lock_timeout` for
/// another replica's load of it.
pub(super) async fn lookup(engine: &Arc<Engine>, key: &KeyParts, lock_timeout: Duration) -> Shared {
    let Some(remote) = engine.remote.as_ref() else {
        return Shared::Local;
    };
    let id = RemoteTier::id(key);
    let deadline = Instant::now() + lock_timeout;
    loop {
        match remote.lookup(&id).await {
            Err(_) => {
                remote.bypassed.fetch_add(1, Ordering::Relaxed);
                return Shared::Local;
            }
            Ok(Found::Lease(token)) => {
                return Shared::Load(RemoteFill::leased(Arc::clone(remote), id, token));
            }
            Ok(Found::Filling) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Ok(Found::Filling) => return Shared::Load(RemoteFill::unleased()),
            Ok(Found::Variants(variants)) => {
                let uri_group = engine.hasher.uri(&key.path, "");
                let now = Instant::now();
                return match pick(engine, variants, key, uri_group, &HeaderMap::new()) {
                    Some(entry) if entry.is_fresh(now) => {
                        let entry = Arc::new(entry);
                        engine.memory.insert(Arc::clone(&entry));
                        Shared::Kept(entry)
                    }
                    _ => Shared::Load(RemoteFill::unleased()),
                };
            }
        }
    }
}

/// Starts the purge subscription of `engine` if it has a Redis tier, so
/// that invalidations published by other replicas reach the values this
/// process keeps.
pub(super) fn subscribe(engine: &Arc<Engine>) {
    if let Some(remote) = engine.remote.as_ref() {
        ensure_subscription(engine, remote);
    }
}
