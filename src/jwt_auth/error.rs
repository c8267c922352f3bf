//! Why a token was refused.

use super::algorithm::Algorithm;

/// Why a token was refused. For logs and metrics: the client only sees the
/// RFC 6750 error code and a generic description.
///
/// The layer puts it in the extensions of its rejection response and logs
/// it at DEBUG level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The request carries no token (in required mode).
    #[error("no bearer token in the request")]
    Missing,
    /// The request carries more than one token (two methods, two
    /// `Authorization` lines, a repeated cookie or query parameter).
    #[error("more than one token in the request")]
    Duplicate,
    /// An `Authorization: Bearer` header without a token.
    #[error("malformed Authorization header")]
    MalformedAuthorization,
    /// The token is longer than the configured maximum (checked before any
    /// decoding).
    #[error("token longer than {max} bytes")]
    TooLong {
        /// The configured maximum.
        max: usize,
    },
    /// The token has five segments: an encrypted JWE, which is not accepted.
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    /// The token is not three base64url segments with JSON header and
    /// claims.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header `alg` names no supported algorithm (`none`, `None`...).
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    /// The header `alg` is supported but not in the allow-list.
    #[error("algorithm {0} is not allowed")]
    AlgorithmNotAllowed(Algorithm),
    /// The header has a `crit` member (RFC 7515 §4.1.11): no extension is
    /// understood, so the token is rejected, even when `crit` is empty.
    #[error("header has a `crit` member")]
    CriticalHeader,
    /// The header has a `zip` member (compressed payload), not accepted.
    #[error("compressed tokens (`zip`) are not accepted")]
    Compressed,
    /// The header `typ` is missing or differs from the configured one.
    #[error("wrong or missing `typ` header")]
    WrongType,
    /// No key matches the token's `kid` (or algorithm).
    #[error("no key for this kid and algorithm")]
    UnknownKey,
    /// The key found for the `kid` is bound to another algorithm.
    #[error("the key for this kid is bound to another algorithm than {0}")]
    KeyAlgorithmMismatch(Algorithm),
    /// The signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    /// A required claim is missing.
    #[error("missing required claim `{0}`")]
    MissingClaim(String),
    /// A registered claim has the wrong type (a non-numeric `exp`, `nbf` or
    /// `iat`, a non-string `iss`...) or is repeated.
    #[error("claim `{0}` has the wrong type or is repeated")]
    InvalidClaim(&'static str),
    /// `iss` is not one of the configured issuers.
    #[error("issuer not accepted")]
    WrongIssuer,
    /// No `aud` value is one of the configured audiences.
    #[error("audience not accepted")]
    WrongAudience,
    /// The claims do not deserialize into the configured claims type.
    #[error("claims do not match the expected type: {0}")]
    ClaimsType(String),
}

impl JwtError {
    /// Whether the error is about the request (RFC 6750 `invalid_request`,
    /// 400) rather than the token (`invalid_token`, 401).
    pub fn is_invalid_request(&self) -> bool {
        matches!(self, Self::Duplicate | Self::MalformedAuthorization)
    }
}
