//! The state a [`JwksKeySource`](super::JwksKeySource) shares between its
//! clones: the key set, the single-flight refetch with its cooldown, the
//! unknown-`kid` cache, and the background refresh.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use http::Uri;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::error::JwksError;
use super::fetch::{HttpClient, check_uri};
use super::jwk::{self, KeySet};
use crate::sync::{lock, read, write};
use crate::ttl_map::TtlMap;

#[derive(Debug, Default)]
pub(super) struct Flight {
    pub(super) running: bool,
    /// When the last refetch for an unknown `kid` started.
    pub(super) last_refetch: Option<Instant>,
}

/// Unknown `kid`s, each remembered for the least cache lifetime, the
/// oldest evicted first when full (see [`TtlMap`]); empty after a fetch.
pub(super) type NegativeCache = TtlMap<Box<str>, (), Instant>;

pub(super) struct Inner {
    /// The discovery URL and the issuer it must name, until resolved.
    pub(super) discovery: Option<(Uri, Option<String>)>,
    pub(super) jwks_uri: RwLock<Option<Uri>>,
    pub(super) client: HttpClient,
    pub(super) min_ttl: Duration,
    pub(super) max_ttl: Duration,
    pub(super) cooldown: Duration,
    pub(super) allow_http: bool,
    /// The snapshot: read-locked only to clone the `Arc` or look a key up,
    /// replaced after a fetch completes.
    pub(super) keys: RwLock<Arc<KeySet>>,
    pub(super) generation: AtomicU64,
    pub(super) set_fingerprint: AtomicU64,
    pub(super) flight: Mutex<Flight>,
    /// Bumped when a fetch ends; waiters of the single flight watch it.
    pub(super) done: watch::Sender<u64>,
    /// When the background task fetches next.
    pub(super) refresh_at: Mutex<Instant>,
    pub(super) negative: NegativeCache,
    pub(super) fetches: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) last_error: Mutex<Option<JwksError>>,
    /// Dropped with `Inner`: wakes the background task to stop.
    pub(super) _shutdown: oneshot::Sender<()>,
    #[cfg(feature = "otel")]
    pub(super) metrics: Option<crate::otel::EdgeMetrics>,
}

impl Inner {
    pub(super) fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&read(&self.keys))
    }

    pub(super) fn last_error(&self) -> Option<JwksError> {
        lock(&self.last_error).clone()
    }

    /// Starts a fetch in its own task unless one runs (then joins it).
    /// With `cooldown` (a refetch for an unknown `kid`), refuses (`None`)
    /// within the cooldown of the last such refetch, whatever its outcome.
    /// The receiver changes when the fetch ends.
    pub(super) fn start_fetch(self: &Arc<Self>, cooldown: bool) -> Option<watch::Receiver<u64>> {
        let mut flight = lock(&self.flight);
        let done = self.done.subscribe();
        if flight.running {
            return Some(done);
        }
        let now = Instant::now();
        if cooldown {
            if flight
                .last_refetch
                .is_some_and(|at| now < at + self.cooldown)
            {
                return None;
            }
            flight.last_refetch = Some(now);
        }
        flight.running = true;
        drop(flight);
        let inner = Arc::clone(self);
        // Its own task: a request that gives up does not cancel the fetch
        // the others wait for. The fetch ends within the timeout.
        tokio::spawn(async move { inner.fetch_and_store().await });
        Some(done)
    }

    pub(super) async fn fetch_and_store(&self) {
        let next = match self.fetch().await {
            Ok((set, ttl, hash)) => {
                let changed = self.set_fingerprint.swap(hash, Ordering::AcqRel) != hash;
                let count = set.len();
                *write(&self.keys) = Arc::new(set);
                if changed {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    self.negative.clear();
                }
                self.fetches.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_error) = None;
                #[cfg(feature = "otel")]
                if let Some(metrics) = &self.metrics {
                    metrics.jwks_fetch_succeeded();
                }
                tracing::debug!(keys = count, changed, ttl_s = ttl.as_secs(), "JWKS fetched");
                ttl - ttl / 10
            }
            Err(err) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "otel")]
                if let Some(metrics) = &self.metrics {
                    metrics.jwks_fetch_failed(err.error_type());
                }
                // Debug of the text (escaped): it may quote the fetched
                // document or the server's answer, bytes from outside.
                tracing::warn!(
                    error = ?err.to_string(),
                    "JWKS fetch failed; the last good keys keep serving"
                );
                *lock(&self.last_error) = Some(err);
                self.cooldown
            }
        };
        *lock(&self.refresh_at) = Instant::now() + next;
        // Under the flight lock: a request that starts the next fetch in
        // between would otherwise subscribe before this signal and take it
        // for the end of its own fetch (and look its kid up too early).
        let mut flight = lock(&self.flight);
        flight.running = false;
        self.done.send_modify(|n| *n = n.wrapping_add(1));
        drop(flight);
    }

    /// One fetch: discovery first when needed, then the set.
    pub(super) async fn fetch(&self) -> Result<(KeySet, Duration, u64), JwksError> {
        let known = read(&self.jwks_uri).clone();
        let uri = match known {
            Some(uri) => uri,
            None => {
                let uri = self.discover().await?;
                *write(&self.jwks_uri) = Some(uri.clone());
                uri
            }
        };
        let fetched = self
            .client
            .get(&uri, "application/jwk-set+json, application/json")
            .await?;
        let set =
            jwk::parse_set(&fetched.body).map_err(|e| JwksError::InvalidJson(e.to_string()))?;
        if set.len() == 0 {
            return Err(JwksError::Empty);
        }
        let ttl = fetched
            .cache_control
            .as_deref()
            .and_then(jwk::max_age)
            .unwrap_or(self.min_ttl)
            .clamp(self.min_ttl, self.max_ttl);
        let hash = set.fingerprint();
        Ok((set, ttl, hash))
    }

    pub(super) async fn discover(&self) -> Result<Uri, JwksError> {
        #[derive(serde::Deserialize)]
        struct Document {
            issuer: Option<String>,
            jwks_uri: Option<String>,
        }
        let Some((url, issuer)) = &self.discovery else {
            return Err(JwksError::Discovery("no discovery URL".into()));
        };
        let fetched = self.client.get(url, "application/json").await?;
        let document: Document = serde_json::from_slice(&fetched.body)
            .map_err(|e| JwksError::InvalidJson(e.to_string()))?;
        if let Some(expected) = issuer
            && document.issuer.as_deref() != Some(expected.as_str())
        {
            return Err(JwksError::Discovery(format!(
                "`issuer` is {:?}, expected {expected:?}",
                document.issuer.unwrap_or_default()
            )));
        }
        let jwks_uri = document
            .jwks_uri
            .ok_or_else(|| JwksError::Discovery("no `jwks_uri`".into()))?;
        check_uri("jwks_uri", &jwks_uri, self.allow_http)
            .map_err(|e| JwksError::Discovery(e.to_string()))
    }
}

/// Spawns the background refresh: it sleeps until `refresh_at`, fetches
/// (or joins a running fetch), and stops when the source is dropped.
pub(super) fn spawn_refresher(inner: &Arc<Inner>, mut shutdown: oneshot::Receiver<()>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        loop {
            // Subscribed before `refresh_at` is read: a fetch that ends
            // meanwhile (and moves `refresh_at`) wakes us.
            let (at, mut done) = {
                let Some(inner) = weak.upgrade() else { return };
                let done = inner.done.subscribe();
                let at = *lock(&inner.refresh_at);
                if Instant::now() < at {
                    (at, done)
                } else {
                    match inner.start_fetch(false) {
                        Some(done) => (at + inner.max_ttl, done),
                        None => (Instant::now() + inner.cooldown, done),
                    }
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep_until(at) => {}
                _ = done.changed() => {}
            }
        }
    });
}
