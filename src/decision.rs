//! What a tower-edge layer decided, for the layers and metrics outside it.
//!
//! When a layer of this crate answers a request itself (a 401 from the
//! authentication layer, a 429 from the rate limiter, a 304 from the cache
//! headers layer...), the response carries one [`Decision`] in its
//! extensions: which layer answered ([`EdgeLayer`]), why ([`Reason`]) and,
//! for a rate limit, which policy. Other layers read the marker instead of
//! parsing each other's headers; the OpenTelemetry layer counts auth
//! failures and rate-limited requests from it.
//!
//! The marker is on HTTP and gRPC answers alike (a gRPC rejection is an
//! HTTP 200 whose `grpc-status` says what happened), so a reader never needs
//! to know the shape of the answer. A response without a `Decision` was not
//! made by a tower-edge layer: the handler, a router or another middleware
//! answered. A layer that let a request through may still mark the
//! handler's response with an [observed](Decision::observed) decision (the
//! idempotency layer: a lease taken over, a store error passed through);
//! [`Decision::is_answer`] tells the two apart.
//!
//! ```
//! use http::StatusCode;
//! use tower_edge::decision::{Decision, EdgeLayer, Reason};
//! use tower_edge::rejection::{Problem, Rejections};
//!
//! let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS)
//!     .with_decision(Decision::new(EdgeLayer::RateLimit, Reason::RateLimited).with_policy("per-ip"));
//! let response = Rejections::default()
//!     .respond::<http_body_util::Empty<bytes::Bytes>, _>(problem, &http::Request::new(()));
//! let decision = response.extensions().get::<Decision>().unwrap();
//! assert_eq!(decision.layer(), EdgeLayer::RateLimit);
//! assert_eq!(decision.reason(), Reason::RateLimited);
//! assert_eq!(decision.policy(), Some("per-ip"));
//! ```

use std::fmt;
use std::sync::Arc;

/// Which tower-edge layer answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EdgeLayer {
    /// The JWT authentication layer (`JwtAuthLayer`), the scope check of a
    /// route (`RequireScope`), or the axum extractors of what they provide
    /// (`Subject`...).
    JwtAuth,
    /// The rate limiter ([`LimitRateLayer`](crate::rate_limit::LimitRateLayer)).
    RateLimit,
    /// The cache headers layer (`CacheHeadersLayer`) or the conditional
    /// responses of `Preconditions::check`.
    CacheHeaders,
    /// The overload protection layer (`OverloadLayer`): a request shed
    /// because too many were in flight.
    Overload,
    /// The idempotency layer (`IdempotencyLayer`).
    Idempotency,
    /// The response cache (`ResponseCacheLayer`): a hit, a 304 from a
    /// stored entry, or a stale entry served.
    ResponseCache,
}

impl EdgeLayer {
    /// A short, fixed name (`jwt_auth`, `rate_limit`, `cache_headers`,
    /// `overload`, `idempotency`, `response_cache`), fit for a metric
    /// attribute.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::JwtAuth => "jwt_auth",
            Self::RateLimit => "rate_limit",
            Self::CacheHeaders => "cache_headers",
            Self::Overload => "overload",
            Self::Idempotency => "idempotency",
            Self::ResponseCache => "response_cache",
        }
    }
}

impl fmt::Display for EdgeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the layer answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No credentials where they are required (401 without an `error`
    /// auth-param, RFC 6750 §3.1).
    MissingCredentials,
    /// The request carries credentials in a malformed or ambiguous way
    /// (400, `error="invalid_request"`, RFC 6750 §3.1).
    InvalidRequest,
    /// The token is expired, invalid, or unfit for this use (401,
    /// `error="invalid_token"`, RFC 6750 §3.1).
    InvalidToken,
    /// The token lacks a required scope (403,
    /// `error="insufficient_scope"`, RFC 6750 §3.1).
    InsufficientScope,
    /// A rate-limit policy denied the request (429, RFC 6585 §4); the
    /// [`Decision::policy`] names it.
    RateLimited,
    /// A layer's shared store failed: the layer refused (503, RFC 9110
    /// §15.6.4), or — an observed decision — let the request through
    /// without it (fail open).
    StoreUnavailable,
    /// The client's copy is current (304, RFC 9110 §15.4.5).
    NotModified,
    /// A precondition of the request is false (412, RFC 9110 §15.5.13).
    PreconditionFailed,
    /// The layer could not produce the response (500, RFC 9110 §15.6.1).
    Internal,
    /// The server is overloaded: the in-flight limit (global, or the
    /// request's partition share) is reached and the request was shed
    /// (503, RFC 9110 §15.6.4); the [`Decision::policy`] names the
    /// partition when the layer has partitions.
    Overloaded,
    /// The request waited in the overload layer's queue until its deadline
    /// without getting a slot (503, RFC 9110 §15.6.4).
    QueueTimeout,
    /// A per-key in-flight limit is reached: this client has too many
    /// requests in flight (429, RFC 6585 §4); the [`Decision::policy`]
    /// names the limit.
    ConcurrencyLimited,
    /// A required `Idempotency-Key` is missing (400,
    /// draft-ietf-httpapi-idempotency-key-header-07 §2.7).
    MissingIdempotencyKey,
    /// The `Idempotency-Key` is malformed, too long or repeated (400,
    /// draft-07 §2.1, §2.7).
    InvalidIdempotencyKey,
    /// The request body is over the layer's buffering cap (413, RFC 9110
    /// §15.5.14).
    ContentTooLarge,
    /// The first request with this key is still running (409, draft-07
    /// §2.7): a conflict.
    RequestInFlight,
    /// The key was used before with another payload (422, draft-07 §2.7):
    /// a mismatch.
    KeyReused,
    /// The stored outcome of the key's first request was replayed.
    Replayed,
    /// The request body could not be read to the end (400, RFC 9110
    /// §15.5.1), so it could not be fingerprinted.
    UnreadableBody,
    /// The request took over a key whose previous holder's lease expired
    /// (it died mid-request), or its own completion was refused because it
    /// lost its lease (fenced). Observed: the handler answered.
    LeaseExpired,
    /// The response cache answered from a fresh stored response
    /// (RFC 9111 §4).
    CacheHit,
    /// The response cache answered with a stale stored response
    /// (`stale-while-revalidate` or `stale-if-error`, RFC 5861).
    CacheStale,
    /// The response cache answered a request that waited for another
    /// request's fill of its key (RFC 9211 §2.6 `collapsed`).
    CacheCollapsed,
}

impl Reason {
    /// A short, fixed name (`missing_credentials`, `invalid_request`,
    /// `invalid_token`, `insufficient_scope`, `rate_limited`,
    /// `store_unavailable`, `not_modified`, `precondition_failed`,
    /// `internal`, `overloaded`, `queue_timeout`, `concurrency_limited`,
    /// `missing_idempotency_key`, `invalid_idempotency_key`,
    /// `content_too_large`, `request_in_flight`, `key_reused`, `replayed`,
    /// `unreadable_body`, `lease_expired`, `cache_hit`, `cache_stale`,
    /// `cache_collapsed`), fit for a metric attribute. The four auth reasons
    /// are the `error` codes of RFC 6750 §3.1 (and `missing_credentials`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::RateLimited => "rate_limited",
            Self::StoreUnavailable => "store_unavailable",
            Self::NotModified => "not_modified",
            Self::PreconditionFailed => "precondition_failed",
            Self::Internal => "internal",
            Self::Overloaded => "overloaded",
            Self::QueueTimeout => "queue_timeout",
            Self::ConcurrencyLimited => "concurrency_limited",
            Self::MissingIdempotencyKey => "missing_idempotency_key",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::ContentTooLarge => "content_too_large",
            Self::RequestInFlight => "request_in_flight",
            Self::KeyReused => "key_reused",
            Self::Replayed => "replayed",
            Self::UnreadableBody => "unreadable_body",
            Self::LeaseExpired => "lease_expired",
            Self::CacheHit => "cache_hit",
            Self::CacheStale => "cache_stale",
            Self::CacheCollapsed => "cache_collapsed",
        }
    }

    /// Whether the request was refused for its credentials or scope (the
    /// first four reasons).
    pub const fn is_auth_failure(self) -> bool {
        matches!(
            self,
            Self::MissingCredentials
                | Self::InvalidRequest
                | Self::InvalidToken
                | Self::InsufficientScope
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The marker a tower-edge layer puts in the extensions of a response it
/// answered itself: see the [module documentation](self).
///
/// Cheap to clone: two enums and an optional shared policy name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Decision {
    layer: EdgeLayer,
    reason: Reason,
    policy: Option<Arc<str>>,
    answered: bool,
}

impl Decision {
    /// `layer` answered for `reason`, no policy named.
    pub const fn new(layer: EdgeLayer, reason: Reason) -> Self {
        Self {
            layer,
            reason,
            policy: None,
            answered: true,
        }
    }

    /// `layer` let the request through to the handler, but something worth
    /// counting happened (an idempotency lease taken over, a store error
    /// passed through): the handler's response carries the marker, with
    /// [`is_answer`](Self::is_answer) false.
    pub const fn observed(layer: EdgeLayer, reason: Reason) -> Self {
        Self {
            layer,
            reason,
            policy: None,
            answered: false,
        }
    }

    /// Whether the layer answered the request itself (every marker but an
    /// [`observed`](Self::observed) one).
    pub const fn is_answer(&self) -> bool {
        self.answered
    }

    /// Names the policy that decided (the rate-limit policy that denied).
    pub fn with_policy(mut self, policy: impl Into<Arc<str>>) -> Self {
        self.policy = Some(policy.into());
        self
    }

    /// The authentication layer refused with `status`: 400 is a malformed
    /// request, 403 a missing scope, 401 missing credentials (`missing`) or
    /// a bad token (RFC 6750 §3.1).
    #[cfg(feature = "jwt-auth")]
    pub(crate) const fn auth(status: http::StatusCode, missing: bool) -> Self {
        let reason = match status.as_u16() {
            400 => Reason::InvalidRequest,
            403 => Reason::InsufficientScope,
            _ if missing => Reason::MissingCredentials,
            _ => Reason::InvalidToken,
        };
        Self::new(EdgeLayer::JwtAuth, reason)
    }

    /// The token lacks a required scope (RFC 6750 §3.1).
    #[cfg(feature = "jwt-auth")]
    pub(crate) const fn insufficient_scope() -> Self {
        Self::new(EdgeLayer::JwtAuth, Reason::InsufficientScope)
    }

    /// The rate-limit policy `policy` denied (RFC 6585 §4).
    #[cfg(feature = "rate-limit")]
    pub(crate) fn rate_limited(policy: &Arc<str>) -> Self {
        Self::new(EdgeLayer::RateLimit, Reason::RateLimited).with_policy(Arc::clone(policy))
    }

    /// The rate limiter's store failed and the limiter refuses then.
    #[cfg(feature = "rate-limit")]
    pub(crate) const fn store_unavailable() -> Self {
        Self::new(EdgeLayer::RateLimit, Reason::StoreUnavailable)
    }

    /// The layer that answered.
    pub const fn layer(&self) -> EdgeLayer {
        self.layer
    }

    /// Why it answered.
    pub const fn reason(&self) -> Reason {
        self.reason
    }

    /// The policy that decided, when the layer has named ones.
    pub fn policy(&self) -> Option<&str> {
        self.policy.as_deref()
    }

    /// [`policy`](Self::policy), shared (no copy of the name).
    pub fn policy_shared(&self) -> Option<&Arc<str>> {
        self.policy.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_fixed_and_auth_reasons_are_the_rfc_6750_codes() {
        let decision = Decision::new(EdgeLayer::JwtAuth, Reason::InvalidToken);
        assert_eq!(decision.layer().as_str(), "jwt_auth");
        assert_eq!(decision.reason().to_string(), "invalid_token");
        assert!(decision.reason().is_auth_failure());
        assert_eq!(decision.policy(), None);
        assert!(!Reason::RateLimited.is_auth_failure());
        let limited =
            Decision::new(EdgeLayer::RateLimit, Reason::RateLimited).with_policy("per hour");
        assert_eq!(limited.policy(), Some("per hour"));
        assert_eq!(limited.clone(), limited);
        assert!(limited.is_answer());
        let observed = Decision::observed(EdgeLayer::Idempotency, Reason::LeaseExpired);
        assert!(!observed.is_answer());
        assert_ne!(
            observed,
            Decision::new(EdgeLayer::Idempotency, Reason::LeaseExpired)
        );
        assert_eq!(
            (observed.layer().as_str(), observed.reason().as_str()),
            ("idempotency", "lease_expired")
        );
    }
}
