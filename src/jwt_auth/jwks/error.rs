//! Why a fetch of the key set failed.

use crate::config::ConfigError;

/// Why a fetch of the key set (or of the discovery document) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The fetch took longer than the timeout.
    #[error("JWKS fetch timed out")]
    Timeout,
    /// The connection or the HTTP exchange failed.
    #[error("JWKS fetch failed: {0}")]
    Connect(String),
    /// The server answered with a status other than 200.
    #[error("JWKS endpoint answered HTTP {0}")]
    Status(u16),
    /// The response is larger than the size cap.
    #[error("JWKS response exceeds the size cap")]
    TooLarge,
    /// The response is not a JWK Set (RFC 7517 §5) in JSON.
    #[error("JWKS response is not a JWK Set: {0}")]
    InvalidJson(String),
    /// The set has no key this crate can use.
    #[error("JWKS response has no usable signature key")]
    Empty,
    /// The discovery document is invalid: no `jwks_uri`, or an `issuer`
    /// other than the configured one (OpenID Connect Discovery §4.3).
    #[error("OpenID discovery document rejected: {0}")]
    Discovery(String),
    /// The source is misconfigured (see [`ConfigError`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl JwksError {
    /// A short, fixed name of the failure, used as the `error.type` of the
    /// `tower_edge.jwks.fetches` metric: `timeout`, `connect`, `status`,
    /// `too_large`, `invalid_json`, `empty`, `discovery`, `config`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect(_) => "connect",
            Self::Status(_) => "status",
            Self::TooLarge => "too_large",
            Self::InvalidJson(_) => "invalid_json",
            Self::Empty => "empty",
            Self::Discovery(_) => "discovery",
            Self::Config(_) => "config",
        }
    }
}
