//! Why a call to Redis did not answer: what callers apply their fallback on.

use std::fmt;
use std::time::Duration;

/// The kind of a [`RedisFailure`], also the `error.type` of metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Redis did not answer within the backend's timeout.
    Timeout,
    /// No connection: not made yet, dropped, refused, the backend tripped
    /// (see [`RedisFailure::is_tripped`]), or no tokio runtime to make it.
    Connection,
    /// Redis answered with an error, or with a reply of the wrong shape.
    Response,
}

impl FailureKind {
    /// `timeout`, `connection` or `response`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::Response => "response",
        }
    }
}

#[derive(Debug)]
pub(crate) enum Failure {
    Timeout(Duration),
    /// The first connection is still being made (Redis Cluster): no call
    /// failed, so nothing is counted or logged; a failed connect attempt is.
    Connecting,
    Reply(String),
    Redis(redis::RedisError),
    NoRuntime,
    Down,
}

impl Failure {
    pub(crate) fn kind(&self) -> FailureKind {
        match self {
            Failure::Timeout(_) => FailureKind::Timeout,
            Failure::Connecting | Failure::NoRuntime | Failure::Down => FailureKind::Connection,
            Failure::Redis(e) if e.is_io_error() || e.is_connection_dropped() => {
                FailureKind::Connection
            }
            Failure::Redis(_) | Failure::Reply(_) => FailureKind::Response,
        }
    }
}

/// A call to Redis that did not answer: the caller applies its fallback.
///
/// The message never carries a password (URLs are not quoted).
#[derive(Debug)]
pub struct RedisFailure {
    pub(crate) failure: Failure,
}

impl RedisFailure {
    pub(crate) fn new(failure: Failure) -> Self {
        Self { failure }
    }

    /// A reply that Redis sent but that does not have the shape the caller
    /// expects (counted as a [`FailureKind::Response`] failure).
    pub fn bad_reply(message: impl Into<String>) -> Self {
        Self::new(Failure::Reply(message.into()))
    }

    /// What failed.
    pub fn kind(&self) -> FailureKind {
        self.failure.kind()
    }

    /// True when the call was not sent because the backend is tripped (see
    /// [`RedisBackendBuilder::retry_interval`](super::RedisBackendBuilder::retry_interval)),
    /// or because its first connection is still being made: such calls are
    /// neither counted nor logged again.
    pub fn is_tripped(&self) -> bool {
        matches!(self.failure, Failure::Down | Failure::Connecting)
    }

    /// True when no tokio runtime runs, so no connection can be made.
    pub fn is_no_runtime(&self) -> bool {
        matches!(self.failure, Failure::NoRuntime)
    }
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            Failure::Timeout(timeout) => write!(f, "Redis did not answer within {timeout:?}"),
            Failure::Connecting => f.write_str("still connecting to Redis"),
            Failure::Reply(message) => f.write_str(message),
            Failure::Redis(_) => f.write_str("Redis call failed"),
            Failure::NoRuntime => f.write_str("the Redis backend needs a tokio runtime to connect"),
            Failure::Down => f.write_str("Redis is unavailable; retrying soon"),
        }
    }
}

impl std::error::Error for RedisFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Redis(e) => Some(e),
            _ => None,
        }
    }
}
