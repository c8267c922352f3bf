//! Signature and claims: the signature check through jsonwebtoken's
//! provider of the [`CryptoBackend`] (RFC 7515 §5.2), then the claim validation of RFC 7519
//! §7.2 and RFC 8725 §3 on the registered claims, then the caller's claims
//! type, each part of the token decoded once.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::backend::CryptoBackend;
use super::error::JwtError;
use super::header::{HeaderRules, Parsed};
use super::key::VerificationKey;
use super::registered::Registered;

/// Checks the signature of `parsed` with the library [`CryptoBackend`]
/// names for its algorithm (RFC 7515 §5.2), named rather than taken from
/// jsonwebtoken's process-wide default provider: that default does not
/// exist (and `jsonwebtoken::crypto::verify` panics) when Cargo unified
/// jsonwebtoken's `aws_lc_rs` feature, enabled elsewhere in the application,
/// with our `rust_crypto`. An installed process default is not used either:
/// the layer always verifies the same way.
fn signature_is_valid(parsed: &Parsed<'_>, key: &VerificationKey) -> bool {
    if let Some(hmac) = key.keyed_hmac() {
        // At most 64 octets (HS512): decoded on the stack.
        let mut signature = [0u8; 66];
        let Ok(n) = URL_SAFE_NO_PAD.decode_slice(parsed.signature, &mut signature) else {
            return false;
        };
        return hmac.verifies(parsed.message.as_bytes(), &signature[..n]);
    }

    let Ok(verifier) = (CryptoBackend::for_algorithm(parsed.alg)
        .provider()
        .verifier_factory)(&parsed.alg.to_jsonwebtoken(), key.decoding_key())
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

/// The verification settings (everything but the keys).
#[derive(Debug)]
pub(crate) struct Rules {
    pub(crate) header: HeaderRules,
    pub(crate) issuers: Vec<Box<str>>,
    pub(crate) audiences: Vec<Box<str>>,
    pub(crate) leeway: i64,
    /// Names of claims that must be present.
    pub(crate) required: Vec<Box<str>>,
}

/// Maximum decoded payload size held on the stack.
const PAYLOAD_BUF: usize = 1024;

impl Rules {
    /// Checks the token's shape and header, without any crypto.
    pub(crate) fn parse<'t>(&self, token: &'t str) -> Result<Parsed<'t>, JwtError> {
        self.header.parse(token)
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
        let Ok(payload) = std::str::from_utf8(payload) else {
            return Err(JwtError::Malformed("claims are not UTF-8"));
        };
        // Two plain passes: the registered claims, checked first (so that
        // their errors are named exactly), then the caller's type; both from
        // the `str` (no second UTF-8 check per string).
        let registered = Registered::read(payload, &self.required)?;
        self.validate(&registered, now)?;
        let claims: T =
            serde_json::from_str(payload).map_err(|e| JwtError::ClaimsType(e.to_string()))?;
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
