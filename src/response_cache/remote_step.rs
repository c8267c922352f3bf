//! The Redis tier's part in a request (a lookup, the fill lease, waiting
//! for another replica's fill) and the purge subscription; see
//! [`remote`](super::remote).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;

use super::Config;
use super::codec;
use super::engine::Engine;
use super::entry::{Entry, KeyParts};
use super::remote::{Found, RemoteTier};
use super::remote_fill::RemoteFill;
use super::respond::{Miss, RemoteFuture, RemoteOutcome};
use crate::redis::RedisBackend;
use crate::redis::subscribe::Subscription;

/// Applies the purges other replicas publish to this replica's memory
/// tier, resubscribing after a lost connection (and clearing the tier
/// then: what was published meanwhile is lost).
async fn listen(backend: RedisBackend, channel: String, engine: Weak<Engine>) {
    loop {
        if let Ok(mut subscription) = Subscription::open(&backend, &channel).await {
            match engine.upgrade() {
                Some(engine) => engine.memory.clear(),
                None => return,
            }
            while let Some(message) = subscription.next().await {
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                if let Ok(message) = std::str::from_utf8(&message) {
                    engine.purge_local(message);
                }
            }
        }
        if engine.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Starts this engine's purge subscription the first time it is needed
/// (a request through the layer or a cache-aside load, whichever comes
/// first).
pub(crate) fn ensure_subscription(engine: &Arc<Engine>, remote: &RemoteTier) {
    if let Some((backend, channel)) = remote.claim_subscription()
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        runtime.spawn(listen(backend, channel, Arc::downgrade(engine)));
    }
}

/// The first fresh-enough variant of `found` for a request with `headers`,
/// decoded and ready for the memory tier.
pub(crate) fn pick(
    engine: &Engine,
    variants: Vec<(Bytes, Duration)>,
    key: &KeyParts,
    uri_group: u64,
    headers: &HeaderMap,
) -> Option<Entry> {
    variants.into_iter().find_map(|(bytes, age)| {
        let entry = codec::decode(bytes, age, &engine.hasher, uri_group, key.hash)?;
        (entry.key == *key && entry.matches_vary(headers)).then_some(entry)
    })
}

/// The Redis step of a key this process fills (see the module docs).
pub(crate) fn remote_lookup(config: &Arc<Config>, miss: &Miss) -> RemoteFuture {
    let engine = Arc::clone(&config.engine);
    let Some(remote) = engine.remote.clone() else {
        return Box::pin(std::future::ready(RemoteOutcome::Fill(
            RemoteFill::unleased(),
        )));
    };
    ensure_subscription(&engine, &remote);
    let key = miss.key.clone();
    let uri_group = miss.uri_group;
    let headers = miss.request_headers.clone();
    let authorized = miss.authorized;
    let deadline = tokio::time::Instant::now() + config.lock_timeout;
    Box::pin(async move {
        let id = RemoteTier::id(&key);
        loop {
            match remote.lookup(&id).await {
                Err(_) => {
                    remote.bypassed.fetch_add(1, Ordering::Relaxed);
                    return RemoteOutcome::Down;
                }
                Ok(Found::Lease(token)) => {
                    return RemoteOutcome::Fill(RemoteFill::leased(remote, id, token));
                }
                Ok(Found::Variants(variants)) => {
                    let now = tokio::time::Instant::now();
                    return match pick(&engine, variants, &key, uri_group, &headers) {
                        Some(entry)
                            if entry.is_fresh(now)
                                && (!authorized || entry.verdict.shareable_with_authorization) =>
                        {
                            let entry = Arc::new(entry);
                            engine.memory.insert(Arc::clone(&entry));
                            RemoteOutcome::Hit(entry)
                        }
                        _ => RemoteOutcome::Fill(RemoteFill::unleased()),
                    };
                }
                Ok(Found::Filling) => {
                    if tokio::time::Instant::now() >= deadline {
                        return RemoteOutcome::Fill(RemoteFill::unleased());
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
    })
}
