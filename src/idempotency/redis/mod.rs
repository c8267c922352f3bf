//! The Redis store of idempotency keys, on the crate's shared
//! [`RedisBackend`]: every replica sharing it recognises a retry.
//!
//! * A claim is one plain command, `SET key <in flight> NX GET PX <2 ×
//!   lease>`: it takes a free key, or returns a completed key's outcome (a
//!   replay costs Redis what a `GET` does, no script). Only a key found in
//!   flight goes on to the claim script, which tells a running lease from
//!   an expired one (taken over) by the key's own TTL: the time is Redis's,
//!   so replicas need no synchronised clocks. Completing and releasing are
//!   one atomic Lua script each. Needs Redis 7.0 or later (`SET` with both
//!   `NX` and `GET`).
//! * Every claim has a random fencing token, checked by complete and
//!   release, so a holder whose lease expired cannot complete or release
//!   the key in a newer holder's place.
//! * One string per key, `<prefix>:{<hex of SHA-256(scope, key)>}:s`, with
//!   a Cluster hash tag: `'f'`, fingerprint, token and lease while in
//!   flight; `'c'`, fingerprint and outcome once completed. Every key has a
//!   TTL: twice the lease while in flight, the retention once completed; a
//!   released key is deleted.
//! * The stored outcome (status, allowlisted headers, body, trailers) is
//!   bounded by the layer's response cap, streamed or chunked alike.
//! * Connection, per-call timeout, circuit breaker and failure counting
//!   are the backend's. Building never connects; start-up never waits for
//!   Redis. A failed call is a [`StoreError`]: the layer's
//!   [`OnStoreError`](super::OnStoreError) decides (serve without
//!   idempotency, logged once per outage and counted; or 503).
//!
//! ```
//! use tower_edge::idempotency::{IdempotencyLayer, RedisStore};
//! use tower_edge::redis::RedisBackend;
//!
//! # fn main() -> Result<(), tower_edge::ConfigError> {
//! let backend = RedisBackend::builder("redis://127.0.0.1:6379").build()?; // does not connect
//! let store = RedisStore::with_backend(backend).key_prefix("orders-api:idem").build()?;
//! let layer = IdempotencyLayer::builder().store(store).build()?;
//! # let _ = layer; Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::fingerprint::Fingerprint;
use super::outcome::StoredResponse;
use super::scope::StoreKey;
use super::store::{Claim, Completion, FencingToken, IdempotencyStore, StoreError, StoreFuture};
use crate::ConfigError;
use crate::redis::{RedisBackend, RedisFailure, Script};

/// Default key prefix; give each application sharing a Redis its own.
pub const DEFAULT_KEY_PREFIX: &str = "tower-edge:idem";

struct Scripts {
    claim: Script,
    complete: Script,
    release: Script,
}

struct Inner {
    backend: RedisBackend,
    scripts: Scripts,
    prefix: Box<str>,
}

/// An [`IdempotencyStore`] in Redis (one node or a Cluster); see the
/// [module docs](self). Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("backend", &self.inner.backend)
            .field("key_prefix", &self.inner.prefix)
            .finish()
    }
}

/// Builds a [`RedisStore`].
#[derive(Debug)]
pub struct RedisStoreBuilder {
    backend: Result<RedisBackend, ConfigError>,
    prefix: String,
}

impl RedisStoreBuilder {
    /// The prefix of every key (default [`DEFAULT_KEY_PREFIX`]): 1 to 64
    /// printable ASCII characters, without spaces, `{` or `}`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Checks the configuration and builds the store, without connecting.
    ///
    /// # Errors
    ///
    /// A bad `url` (from [`RedisStore::new`]) or `key_prefix`.
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        crate::redis::key::validate_prefix(&self.prefix)?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                backend: self.backend?,
                scripts: Scripts {
                    claim: Script::new(include_str!("claim.lua")),
                    complete: Script::new(include_str!("complete.lua")),
                    release: Script::new(include_str!("release.lua")),
                },
                prefix: self.prefix.into_boxed_str(),
            }),
        })
    }
}

impl RedisStore {
    /// A store on the Redis at `url` with a backend of its own and the
    /// defaults; connects on first use.
    ///
    /// # Errors
    ///
    /// When `url` does not parse (field `url`).
    pub fn new(url: impl Into<String>) -> Result<Self, ConfigError> {
        RedisStoreBuilder {
            backend: RedisBackend::builder(url).build(),
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
        .build()
    }

    /// A builder for a store on `backend`, shared with the other
    /// Redis-backed stores of the process.
    pub fn with_backend(backend: RedisBackend) -> RedisStoreBuilder {
        RedisStoreBuilder {
            backend: Ok(backend),
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
        }
    }

    /// The backend the store runs on.
    pub fn backend(&self) -> &RedisBackend {
        &self.inner.backend
    }

    fn redis_key(&self, key: &StoreKey) -> String {
        // `s` (a string); `k` was the hash of releases before 0.2, which
        // never meets this layout.
        let digits = key.hex_digits();
        let tag = crate::hex::as_str(&digits);
        crate::redis::key::tagged_key_from_parts(&self.inner.prefix, tag, &["s"])
    }
}

fn store_error(failure: RedisFailure) -> StoreError {
    StoreError::with_source(failure.to_string(), failure)
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn int(value: &redis::Value) -> Option<i64> {
    match value {
        redis::Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// A token as the scripts compare it: 16 lowercase hex digits.
fn hex(token: FencingToken) -> [u8; 16] {
    crate::hex::u64_digits(token.get())
}

/// A fresh random fencing token.
fn new_token() -> FencingToken {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CLAIMS: AtomicU64 = AtomicU64::new(0);
    let n = CLAIMS.fetch_add(1, Ordering::Relaxed);
    FencingToken::new(RandomState::new().hash_one((n, std::time::SystemTime::now())))
}

fn undecodable() -> RedisFailure {
    RedisFailure::bad_reply("undecodable stored idempotency outcome")
}

/// The reply of the claim's `SET NX GET`: the claim, or `None` when the
/// key is in flight (the script decides whether its lease runs).
fn parse_set(
    reply: redis::Value,
    fingerprint: &Fingerprint,
    token: FencingToken,
) -> Result<Option<Claim>, RedisFailure> {
    let value = match reply {
        redis::Value::Nil => {
            return Ok(Some(Claim::Acquired {
                token,
                took_over: false,
            }));
        }
        redis::Value::BulkString(value) => value,
        _ => {
            return Err(RedisFailure::bad_reply(
                "unexpected idempotency claim reply",
            ));
        }
    };
    match (value.first(), value.get(1..33)) {
        (Some(b'c'), Some(fp)) if fp == &fingerprint.as_bytes()[..] => {
            // The reply's buffer, kept: the replay's fields and body are
            // slices of it.
            StoredResponse::decode_shared(&Bytes::from(value).slice(33..))
                .map(|stored| Some(Claim::Completed(Arc::new(stored))))
                .ok_or_else(undecodable)
        }
        (Some(b'c'), Some(_)) => Ok(Some(Claim::Mismatch)),
        (Some(b'f'), Some(_)) => Ok(None),
        _ => Err(RedisFailure::bad_reply("unexpected idempotency key value")),
    }
}

/// The claim script's reply.
fn parse_claim(reply: Vec<redis::Value>, token: FencingToken) -> Result<Claim, RedisFailure> {
    let bad = || RedisFailure::bad_reply("unexpected idempotency claim reply");
    match reply.first().and_then(int).ok_or_else(bad)? {
        0 => {
            let took_over = reply.get(1).and_then(int).ok_or_else(bad)? == 1;
            Ok(Claim::Acquired { token, took_over })
        }
        1 => Ok(Claim::InFlight),
        2 => match reply.get(1) {
            Some(redis::Value::BulkString(bytes)) => StoredResponse::decode(bytes)
                .map(|stored| Claim::Completed(Arc::new(stored)))
                .ok_or_else(undecodable),
            _ => Err(bad()),
        },
        3 => Ok(Claim::Mismatch),
        _ => Err(bad()),
    }
}

impl IdempotencyStore for RedisStore {
    fn claim(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> StoreFuture<Claim> {
        let redis_key = self.redis_key(key);
        let token = new_token();
        let lease = ms(lease);
        let fingerprint = *fingerprint;
        // `f<fingerprint><token><lease ms>`, built on the stack.
        let mut in_flight = [0u8; 1 + 32 + 16 + 20];
        in_flight[0] = b'f';
        in_flight[1..33].copy_from_slice(fingerprint.as_bytes());
        in_flight[33..49].copy_from_slice(&hex(token));
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(lease).as_bytes();
        let len = 49 + digits.len();
        in_flight[49..len].copy_from_slice(digits);
        // Sized up front: growing the buffers cost more than the command.
        let mut set = redis::Cmd::with_capacity(7, 3 + redis_key.len() + len + 2 + 3 + 2 + 20);
        set.arg("SET")
            .arg(&redis_key)
            .arg(&in_flight[..len])
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(lease.saturating_mul(2));
        let parse = move |reply| parse_set(reply, &fingerprint, token);
        let first = match self.inner.backend.command_map(set, parse) {
            Ok(reply) => reply,
            Err(failure) => return StoreFuture::ready(Err(store_error(failure))),
        };
        let store = self.clone();
        StoreFuture::boxed(async move {
            if let Some(claim) = first.await.map_err(store_error)? {
                return Ok(claim);
            }
            // In flight: the script tells a running lease from an expired one.
            let call = store
                .inner
                .scripts
                .claim
                .call_with_capacity(&[&redis_key], 3, 32 + 20 + 16)
                .arg(&fingerprint.as_bytes()[..])
                .arg(lease)
                .arg(&hex(token)[..]);
            let reply = store
                .inner
                .backend
                .eval_map(call, move |reply| parse_claim(reply, token))
                .map_err(store_error)?;
            reply.await.map_err(store_error)
        })
    }

    fn complete(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        token: FencingToken,
        response: Arc<StoredResponse>,
        retention: Duration,
    ) -> StoreFuture<Completion> {
        let redis_key = self.redis_key(key);
        let outcome = response.encode();
        let call = self
            .inner
            .scripts
            .complete
            .call_with_capacity(&[&redis_key], 4, 32 + 40 + outcome.len())
            .arg(&fingerprint.as_bytes()[..])
            .arg(&hex(token)[..])
            .arg(outcome)
            .arg(ms(retention));
        let parse = |stored: i64| {
            Ok(if stored == 1 {
                Completion::Stored
            } else {
                Completion::Fenced
            })
        };
        match self.inner.backend.eval_map(call, parse) {
            Ok(reply) => StoreFuture::boxed(async move { reply.await.map_err(store_error) }),
            Err(failure) => StoreFuture::ready(Err(store_error(failure))),
        }
    }

    fn release(&self, key: &StoreKey, token: FencingToken) -> StoreFuture<()> {
        let redis_key = self.redis_key(key);
        let call = self
            .inner
            .scripts
            .release
            .call_with_capacity(&[&redis_key], 1, 20)
            .arg(&hex(token)[..]);
        match self.inner.backend.eval_map(call, |_: i64| Ok(())) {
            Ok(reply) => StoreFuture::boxed(async move { reply.await.map_err(store_error) }),
            Err(failure) => StoreFuture::ready(Err(store_error(failure))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_sixteen_lowercase_digits() {
        for value in [1, 0xab, 0x0123_4567_89ab_cdef, u64::MAX] {
            let token = FencingToken::new(value);
            let expected = format!("{value:016x}");
            assert_eq!(&hex(token)[..], expected.as_bytes());
        }
    }
}
