//! Whether a filled entry goes to the Redis tier, and the fill lease held
//! meanwhile: released when the fill ends without storing (a response the
//! cache may not keep, a failed handler or load, a body past the cap), so
//! no replica waits out `lock_timeout` for an entry that never comes.

#[cfg(feature = "redis")]
use std::sync::Arc;

#[cfg(feature = "redis")]
use super::remote::RemoteTier;

/// See the module docs. Dropping it unused releases the lease.
pub(crate) struct RemoteFill {
    /// Store in Redis too (the layer has a Redis tier that answered).
    store: bool,
    /// The lease this process holds: the tier, the key's id, the token.
    #[cfg(feature = "redis")]
    lease: Option<(Arc<RemoteTier>, String, u64)>,
    /// The task renewing the lease while the fill runs.
    #[cfg(feature = "redis")]
    renewal: Option<tokio::task::AbortHandle>,
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
            #[cfg(feature = "redis")]
            renewal: None,
        }
    }

    /// Store in Redis too, without a lease (another replica's ran out, or
    /// a stale entry is replaced).
    pub(crate) fn unleased() -> Self {
        Self {
            store: true,
            #[cfg(feature = "redis")]
            lease: None,
            #[cfg(feature = "redis")]
            renewal: None,
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
        Self {
            store: true,
            renewal: remote.spawn_renewal(&id, token),
            lease: Some((remote, id, token)),
        }
    }

    /// The token to store with (`Some(0)`: no lease held), or `None`: not
    /// in Redis. The store releases the lease, so dropping no longer does.
    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
    pub(crate) fn take_for_store(mut self) -> Option<u64> {
        #[cfg(feature = "redis")]
        let token = {
            self.stop_renewal();
            self.lease.take().map_or(0, |(_, _, token)| token)
        };
        #[cfg(not(feature = "redis"))]
        let token = 0;
        self.store.then_some(token)
    }
}

#[cfg(feature = "redis")]
impl RemoteFill {
    fn stop_renewal(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
    }
}

impl Drop for RemoteFill {
    fn drop(&mut self) {
        #[cfg(feature = "redis")]
        self.stop_renewal();
        #[cfg(feature = "redis")]
        if let Some((remote, id, token)) = self.lease.take() {
            remote.spawn_release(&id, token);
        }
    }
}
