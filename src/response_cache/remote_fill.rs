//! Whether a filled entry goes to the Redis tier, and the fill lease held
//! meanwhile: renewed while the fill runs, and released when the fill
//! ends without storing (a response the cache may not keep, a failed
//! handler or load, a body past the cap), so no replica waits for an
//! entry that never comes.

#[cfg(feature = "redis")]
use std::sync::Arc;

#[cfg(feature = "redis")]
use super::remote::RemoteTier;

/// See the module docs. Dropping it unused releases the lease.
pub(crate) struct RemoteFill {
    /// Store in Redis too (the layer has a Redis tier that answered).
    store: bool,
    #[cfg(feature = "redis")]
    lease: Option<Lease>,
}

/// A fill lease this process holds; dropped, it stops its renewal and
/// releases the lease.
#[cfg(feature = "redis")]
struct Lease {
    remote: Arc<RemoteTier>,
    id: String,
    token: u64,
    /// The task renewing it while the fill runs.
    renewal: Option<tokio::task::AbortHandle>,
}

#[cfg(feature = "redis")]
impl Lease {
    /// The token to store with: the store releases the lease, so nothing
    /// else does.
    fn into_token(mut self) -> u64 {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let token = self.token;
        self.token = 0;
        token
    }
}

#[cfg(feature = "redis")]
impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        // 0: handed over to the store (see `into_token`).
        if self.token != 0 {
            self.remote.spawn_release(&self.id, self.token);
        }
    }
}

impl std::fmt::Debug for RemoteFill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        #[cfg(feature = "redis")]
        let leased = self.lease.is_some();
        #[cfg(not(feature = "redis"))]
        let leased = false;
        f.debug_struct("RemoteFill")
            .field("store", &self.store)
            .field("leased", &leased)
            .finish()
    }
}

impl RemoteFill {
    /// Nothing goes to Redis (no tier, Redis failed, or not asked).
    pub(crate) fn none() -> Self {
        Self {
            store: false,
            #[cfg(feature = "redis")]
            lease: None,
        }
    }

    /// Store in Redis too, without a lease (another replica's ran out, or
    /// a stale entry is replaced).
    pub(crate) fn unleased() -> Self {
        Self {
            store: true,
            #[cfg(feature = "redis")]
            lease: None,
        }
    }

    /// `unleased` when `remote` is true, else `none`.
    pub(crate) fn when(remote: bool) -> Self {
        if remote {
            Self::unleased()
        } else {
            Self::none()
        }
    }

    /// Store in Redis too, releasing the lease `token` of the key `id`;
    /// the lease is renewed until then.
    #[cfg(feature = "redis")]
    pub(crate) fn leased(remote: Arc<RemoteTier>, id: String, token: u64) -> Self {
        let renewal = remote.spawn_renewal(&id, token);
        Self {
            store: true,
            lease: Some(Lease {
                remote,
                id,
                token,
                renewal,
            }),
        }
    }

    /// The token to store with (`Some(0)`: no lease held), or `None`: not
    /// in Redis. The store releases the lease, so dropping no longer does.
    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
    pub(crate) fn take_for_store(mut self) -> Option<u64> {
        #[cfg(feature = "redis")]
        let token = self.lease.take().map_or(0, Lease::into_token);
        #[cfg(not(feature = "redis"))]
        let token = 0;
        self.store.then_some(token)
    }
}
