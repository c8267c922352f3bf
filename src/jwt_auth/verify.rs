//! Token parsing and verification: the raw header checks jsonwebtoken does
//! not do, the signature check through jsonwebtoken's RustCrypto backend,
//! and the claim validation, each part of the token decoded once.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, IgnoredAny};

use super::key::{Algorithm, VerificationKey};
use super::tap;

/// Checks the signature of `parsed` with jsonwebtoken's RustCrypto backend,
/// named rather than taken from jsonwebtoken's process-wide default
/// provider: that default does not exist (and `jsonwebtoken::crypto::verify`
/// panics) when Cargo unified jsonwebtoken's `aws_lc_rs` feature, enabled
/// elsewhere in the application, with our `rust_crypto`. An installed
/// process default is not used either: the layer always verifies the same
/// way.
fn signature_is_valid(parsed: &Parsed<'_>, key: &VerificationKey) -> bool {
    use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;

    let Ok(verifier) =
        (DEFAULT_PROVIDER.verifier_factory)(&parsed.alg.to_jsonwebtoken(), key.decoding_key())
    else {
        return false;
    };
    let Ok(signature) = URL_SAFE_NO_PAD.decode(parsed.signature) else {
        return false;
    };
    verifier
        .verify(parsed.message.as_bytes(), &signature)
        .is_ok()
}

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

/// A token whose header passed every check, split into its parts.
#[derive(Debug)]
pub(crate) struct Parsed<'t> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Cow<'t, str>>,
    /// `header.payload`, the signed message.
    message: &'t str,
    payload: &'t str,
    signature: &'t str,
}

/// The verification settings (everything but the keys).
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) max_len: usize,
    pub(crate) typ: Option<Box<str>>,
    pub(crate) issuers: Vec<Box<str>>,
    pub(crate) audiences: Vec<Box<str>>,
    pub(crate) leeway: i64,
    /// Names of claims that must be present.
    pub(crate) required: Vec<Box<str>>,
}

/// The registered claims the layer needs, borrowed from the payload.
#[derive(Debug, Default)]
pub(crate) struct Registered<'a> {
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) iss: Option<Cow<'a, str>>,
    pub(crate) sub: Option<Cow<'a, str>>,
    pub(crate) aud: Option<Vec<Cow<'a, str>>>,
    pub(crate) jti: Option<Cow<'a, str>>,
    pub(crate) scope: Option<Cow<'a, str>>,
    pub(crate) scp: Option<Vec<Cow<'a, str>>>,
    /// Bit i set: `rules.required[i]` is present (for non-registered names).
    pub(crate) others_present: u64,
}

impl Registered<'_> {
    fn has(&self, name: &str, index: usize) -> bool {
        match name {
            "exp" => self.exp.is_some(),
            "nbf" => self.nbf.is_some(),
            "iat" => self.iat.is_some(),
            "iss" => self.iss.is_some(),
            "sub" => self.sub.is_some(),
            "aud" => self.aud.is_some(),
            "jti" => self.jti.is_some(),
            "scope" => self.scope.is_some(),
            "scp" => self.scp.is_some(),
            _ => index < 64 && self.others_present & (1 << index) != 0,
        }
    }

    /// The scopes, from `scope` (space separated) or else `scp` (array or
    /// space-separated string), joined by single spaces: one allocation
    /// (none when there is no scope).
    pub(crate) fn scopes(&self) -> Arc<str> {
        fn joined(s: &str) -> bool {
            !s.starts_with(' ') && !s.ends_with(' ') && !s.contains("  ")
        }
        match (&self.scope, self.scp.as_deref()) {
            (Some(scope), _) if joined(scope) => return Arc::from(&**scope),
            (None, Some([one])) if joined(one) => return Arc::from(&**one),
            (None, None | Some([])) => return Arc::from(""),
            _ => {}
        }
        let mut out = String::new();
        let mut push = |scope: &str| {
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(s);
            }
        };
        if let Some(scope) = &self.scope {
            push(scope);
        } else if let Some(list) = &self.scp {
            list.iter().for_each(|s| push(s));
        }
        Arc::from(out)
    }
}

/// Maximum decoded header size held on the stack.
const HEADER_BUF: usize = 512;
/// Maximum decoded payload size held on the stack.
const PAYLOAD_BUF: usize = 1024;

impl Rules {
    /// Checks the token's shape and header, without any crypto.
    pub(crate) fn parse<'t>(&self, token: &'t str) -> Result<Parsed<'t>, JwtError> {
        if token.len() > self.max_len {
            return Err(JwtError::TooLong { max: self.max_len });
        }
        // Up to 5 dots counted (memchr-based splitting, not a byte loop):
        // only 2 (JWS) and 4 (JWE) mean anything.
        let dots = token.splitn(6, '.').count() - 1;
        match dots {
            2 => {}
            4 => return Err(JwtError::Encrypted),
            _ => return Err(JwtError::Malformed("not three segments")),
        }
        let (message, signature) = token.rsplit_once('.').expect("two dots");
        let (header, payload) = message.split_once('.').expect("two dots");
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(JwtError::Malformed("empty segment"));
        }

        let mut stack = [0u8; HEADER_BUF];
        let heap;
        let decoded: &[u8] = if header.len() / 4 * 3 + 3 <= HEADER_BUF {
            let n = URL_SAFE_NO_PAD
                .decode_slice(header, &mut stack)
                .map_err(|_| JwtError::Malformed("header is not base64url"))?;
            &stack[..n]
        } else {
            heap = URL_SAFE_NO_PAD
                .decode(header)
                .map_err(|_| JwtError::Malformed("header is not base64url"))?;
            &heap
        };
        // RFC 7515 §4: the header is a JSON object. serde's derived
        // `Deserialize` would also read an array (`["RS256"]`) by position.
        if decoded.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(JwtError::Malformed("header is not a JSON object"));
        }
        // RFC 7515 §4: the header is UTF-8 JSON; serde_json does not check
        // the strings it skips (members we ignore).
        if std::str::from_utf8(decoded).is_err() {
            return Err(JwtError::Malformed("header is not UTF-8"));
        }
        let raw: RawHeader<'_> = serde_json::from_slice(decoded)
            .map_err(|_| JwtError::Malformed("header is not a JSON object"))?;
        if raw.crit {
            return Err(JwtError::CriticalHeader);
        }
        if raw.zip {
            return Err(JwtError::Compressed);
        }
        if raw.enc {
            return Err(JwtError::Encrypted);
        }
        let alg = Algorithm::from_name(&raw.alg).ok_or(JwtError::UnsupportedAlgorithm)?;
        if !self.algorithms.contains(&alg) {
            return Err(JwtError::AlgorithmNotAllowed(alg));
        }
        if let Some(expected) = &self.typ
            && !raw
                .typ
                .as_deref()
                .is_some_and(|typ| typ_matches(expected, typ))
        {
            return Err(JwtError::WrongType);
        }
        // The kid borrows from the stack buffer: own it (it is short).
        let kid = raw.kid.map(|kid| Cow::Owned(kid.into_owned()));
        Ok(Parsed {
            alg,
            kid,
            message,
            payload,
            signature,
        })
    }

    /// Verifies the signature of `parsed` with `key`, then decodes and
    /// validates the claims and deserializes them into `T`.
    pub(crate) fn verify<T: serde::de::DeserializeOwned>(
        &self,
        parsed: &Parsed<'_>,
        key: &VerificationKey,
        now: i64,
    ) -> Result<Verified<T>, JwtError> {
        if key.algorithm() != parsed.alg {
            return Err(JwtError::KeyAlgorithmMismatch(parsed.alg));
        }
        if !signature_is_valid(parsed, key) {
            return Err(JwtError::InvalidSignature);
        }
        let mut stack = [0u8; PAYLOAD_BUF];
        let heap;
        let payload: &[u8] = if parsed.payload.len() / 4 * 3 + 3 <= PAYLOAD_BUF {
            let n = URL_SAFE_NO_PAD
                .decode_slice(parsed.payload, &mut stack)
                .map_err(|_| JwtError::Malformed("payload is not base64url"))?;
            &stack[..n]
        } else {
            heap = URL_SAFE_NO_PAD
                .decode(parsed.payload)
                .map_err(|_| JwtError::Malformed("payload is not base64url"))?;
            &heap
        };
        // RFC 7519 §7.2 step 10: the claims are UTF-8 JSON. serde_json
        // does not check strings it skips (members nobody reads).
        if std::str::from_utf8(payload).is_err() {
            return Err(JwtError::Malformed("claims are not UTF-8"));
        }
        // One pass: `T` and the registered claims together. On any failure,
        // the slow path below names it exactly (registered claims first,
        // then their validation, then `T`).
        let bad = Cell::new(None);
        let mut state = tap::State::new(&self.required, &bad);
        let (claims, registered) = match tap::deserialize::<T>(payload, &mut state) {
            Ok(claims) => {
                let registered = state.out;
                self.validate(&registered, now)?;
                (claims, registered)
            }
            Err(_) => {
                drop(state);
                let registered = self.registered(payload)?;
                self.validate(&registered, now)?;
                let claims: T = serde_json::from_slice(payload)
                    .map_err(|e| JwtError::ClaimsType(e.to_string()))?;
                (claims, registered)
            }
        };
        Ok(Verified {
            claims,
            exp: registered.exp.unwrap_or(i64::MAX),
            // An empty `sub` names nobody: no subject, as without `sub`
            // (else all such tokens would share one subject's quota).
            sub: registered
                .sub
                .as_deref()
                .filter(|sub| !sub.is_empty())
                .map(Into::into),
            scopes: registered.scopes(),
        })
    }

    /// The registered claims alone, with the exact error.
    fn registered<'p>(&self, payload: &'p [u8]) -> Result<Registered<'p>, JwtError> {
        let bad = Cell::new(None);
        let mut state = tap::State::new(&self.required, &bad);
        match tap::deserialize::<IgnoredAny>(payload, &mut state) {
            Ok(IgnoredAny) => Ok(state.out),
            Err(_) => Err(match bad.get() {
                Some(claim) => JwtError::InvalidClaim(claim),
                None => JwtError::Malformed("claims are not a JSON object"),
            }),
        }
    }

    fn validate(&self, claims: &Registered<'_>, now: i64) -> Result<(), JwtError> {
        let exp = claims
            .exp
            .ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = claims.nbf
            && now.saturating_add(self.leeway) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        for (index, name) in self.required.iter().enumerate() {
            if !claims.has(name, index) {
                return Err(JwtError::MissingClaim(name.to_string()));
            }
        }
        if !self.issuers.is_empty() {
            let iss = claims
                .iss
                .as_deref()
                .ok_or_else(|| JwtError::MissingClaim("iss".into()))?;
            if !self.issuers.iter().any(|i| **i == *iss) {
                return Err(JwtError::WrongIssuer);
            }
        }
        if !self.audiences.is_empty() {
            let aud = claims
                .aud
                .as_deref()
                .ok_or_else(|| JwtError::MissingClaim("aud".into()))?;
            if !aud
                .iter()
                .any(|a| self.audiences.iter().any(|c| **c == **a))
            {
                return Err(JwtError::WrongAudience);
            }
        }
        Ok(())
    }
}

/// What a successful verification yields.
#[derive(Debug)]
pub(crate) struct Verified<T> {
    pub(crate) claims: T,
    /// `exp` as a Unix timestamp.
    pub(crate) exp: i64,
    pub(crate) sub: Option<Arc<str>>,
    /// Joined by single spaces.
    pub(crate) scopes: Arc<str>,
}

/// `typ` comparison (RFC 7515 §4.1.9, RFC 9068 §4): case-insensitive, with
/// an implied `application/` prefix.
pub(crate) fn typ_matches(expected: &str, actual: &str) -> bool {
    fn strip(s: &str) -> &str {
        const PREFIX: &str = "application/";
        // Compared as bytes: `s` comes from the token, and its byte 12 may
        // fall inside a character (slicing the `str` there would panic).
        // When the ASCII prefix matches, byte 12 is a character boundary.
        if s.len() > PREFIX.len()
            && s.as_bytes()[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes())
        {
            &s[PREFIX.len()..]
        } else {
            s
        }
    }
    strip(expected).eq_ignore_ascii_case(strip(actual))
}

/// The header members we act on. `jwk`, `jku`, `x5u`, `x5c` and every other
/// member are skipped unread: keys never come from the token.
#[derive(serde::Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    zip: bool,
    #[serde(default, deserialize_with = "present")]
    enc: bool,
}

fn present<'de, D: de::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

use serde::Deserialize as _;
