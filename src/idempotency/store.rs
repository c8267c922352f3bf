//! What a store of idempotency keys does: claim, complete, release.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::fingerprint::Fingerprint;
use super::outcome::StoredResponse;
use super::scope::StoreKey;

/// Who holds a key: a number that differs with every claim of the key (a
/// counter in memory, random in Redis), so a holder whose lease expired
/// (and was taken over) cannot complete or release the key in the newer
/// holder's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(u64);

impl FencingToken {
    /// A token of the given value (stores make them).
    pub const fn new(value: u64) -> Self {
        Self(value)
    }

    /// The value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// What [`IdempotencyStore::claim`] found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Claim {
    /// The key is this request's now: run it, then
    /// [`complete`](IdempotencyStore::complete) or
    /// [`release`](IdempotencyStore::release) with `token`.
    Acquired {
        /// The fencing token of this claim.
        token: FencingToken,
        /// A previous holder's lease had expired (it died mid-request).
        took_over: bool,
    },
    /// Another request with the same fingerprint holds the lease.
    InFlight,
    /// The key completed with this outcome, for this fingerprint.
    Completed(Arc<StoredResponse>),
    /// The key is held or completed for another fingerprint: nothing is
    /// replayed (draft-07 §2.7: 422).
    Mismatch,
}

/// What [`IdempotencyStore::complete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Completion {
    /// The outcome is stored and will be replayed.
    Stored,
    /// The token no longer holds the key (its lease expired and another
    /// request claimed it, or it was released): nothing was written.
    Fenced,
}

/// A store failed (a network store's error); the layer applies its
/// [`OnStoreError`](super::OnStoreError).
#[derive(Debug)]
pub struct StoreError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error with `message`, caused by `source`.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

type Boxed<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// The future a store returns: an answer known now (the memory store, no
/// allocation) or a boxed future (a network store).
#[must_use = "futures do nothing unless polled"]
pub struct StoreFuture<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    Ready(Option<Result<T, StoreError>>),
    Boxed(Boxed<T>),
}

impl<T> StoreFuture<T> {
    /// An answer known now.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self {
            inner: Inner::Ready(Some(result)),
        }
    }

    /// An answer that needs I/O.
    pub fn boxed(future: impl Future<Output = Result<T, StoreError>> + Send + 'static) -> Self {
        Self {
            inner: Inner::Boxed(Box::pin(future)),
        }
    }

    /// The answer if it is already known, else the future back.
    ///
    /// # Errors
    ///
    /// The future, when the answer needs I/O.
    pub fn into_ready(self) -> Result<Result<T, StoreError>, Self> {
        match self.inner {
            Inner::Ready(Some(result)) => Ok(result),
            inner => Err(Self { inner }),
        }
    }
}

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Ready(_) => "ready",
            Inner::Boxed(_) => "pending",
        };
        f.debug_tuple("StoreFuture").field(&kind).finish()
    }
}

impl<T> Unpin for StoreFuture<T> {}

impl<T> Future for StoreFuture<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            Inner::Ready(result) => Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err(StoreError::new("StoreFuture polled after completion"))),
            ),
            Inner::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

/// Where idempotency keys live: the [`MemoryStore`](super::MemoryStore) of
/// one replica, or a shared one (`RedisStore`, feature `redis`) so a retry
/// landing on another replica finds the key.
///
/// Every transition is atomic in the store, and every one checks the
/// request's fingerprint before it stores or returns anything (a
/// fingerprint checked on one path and not another is how duplicate
/// payloads get replayed: AWS Lambda Powertools' bugs).
///
/// * `claim`: no live entry (none, released, lease expired, retention
///   over) → take the key with a lease of `lease` and a new, larger
///   [`FencingToken`]; held or completed for another fingerprint →
///   [`Claim::Mismatch`]; held → [`Claim::InFlight`]; completed →
///   [`Claim::Completed`].
/// * `complete`: only while `token` still holds the key and the
///   fingerprint is the claim's; stores `response` for `retention`.
/// * `release`: only while `token` still holds the key; frees it.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for a request of `fingerprint`.
    fn claim(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> StoreFuture<Claim>;

    /// Stores the outcome of the claim `token`.
    fn complete(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        token: FencingToken,
        response: Arc<StoredResponse>,
        retention: Duration,
    ) -> StoreFuture<Completion>;

    /// Frees the key held by `token` (the request failed: a retry runs
    /// again).
    fn release(&self, key: &StoreKey, token: FencingToken) -> StoreFuture<()>;
}

impl<T: IdempotencyStore + ?Sized> IdempotencyStore for Arc<T> {
    fn claim(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> StoreFuture<Claim> {
        (**self).claim(key, fingerprint, lease)
    }

    fn complete(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        token: FencingToken,
        response: Arc<StoredResponse>,
        retention: Duration,
    ) -> StoreFuture<Completion> {
        (**self).complete(key, fingerprint, token, response, retention)
    }

    fn release(&self, key: &StoreKey, token: FencingToken) -> StoreFuture<()> {
        (**self).release(key, token)
    }
}
