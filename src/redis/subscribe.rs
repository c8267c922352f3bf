//! A pub/sub subscription of a store's own on the backend's Redis (the
//! response cache's invalidation channel): a connection apart from the
//! shared one, which `SUBSCRIBE` would take over.

use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;

use super::backend::Target;
use super::failure::{Failure, RedisFailure};
use super::{CONNECT_TIMEOUT, RedisBackend};

/// The messages of one channel.
pub(crate) struct Subscription {
    stream: Pin<Box<redis::aio::PubSubStream>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

impl Subscription {
    /// Subscribes to `channel` on a connection of its own. Redis Cluster
    /// is not supported yet (`Err`).
    pub(crate) async fn open(backend: &RedisBackend, channel: &str) -> Result<Self, RedisFailure> {
        let Target::Single(client) = backend.target() else {
            return Err(RedisFailure::bad_reply(
                "pub/sub subscriptions need a single Redis node",
            ));
        };
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connect).await {
            Ok(Ok(pubsub)) => Ok(Self {
                stream: Box::pin(pubsub.into_on_message()),
            }),
            Ok(Err(error)) => Err(RedisFailure::new(Failure::Redis(error))),
            Err(_) => Err(RedisFailure::new(Failure::Timeout(CONNECT_TIMEOUT))),
        }
    }

    /// The next message's payload; `None` once the connection closed.
    pub(crate) async fn next(&mut self) -> Option<Vec<u8>> {
        let message = std::future::poll_fn(|cx| self.stream.as_mut().poll_next(cx)).await?;
        Some(message.get_payload_bytes().to_vec())
    }
}
