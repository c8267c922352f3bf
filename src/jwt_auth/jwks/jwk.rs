//! JWK Set parsing (RFC 7517, RFC 7518 §6, RFC 8037) and the key set the
//! source serves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::super::algorithm::Algorithm;
use super::super::key::VerificationKey;
use super::super::key_source::KeyLookup;
use crate::cache_control::directives;

/// The keys of one fetched set.
#[derive(Debug, Default)]
pub(super) struct KeySet {
    /// Keys by `kid`; a JWK without `alg` yields one key per algorithm its
    /// type allows, all under its `kid`.
    by_kid: HashMap<Arc<str>, Vec<Arc<VerificationKey>>>,
    without_kid: Vec<Arc<VerificationKey>>,
    /// The number of usable JWKs (not of derived keys).
    jwks: usize,
    /// What the set holds, whatever the order of its keys and the layout
    /// of the document: a refetch that returns the same keys reordered or
    /// reformatted is no change (which would empty the token caches).
    fingerprint: u64,
}

impl KeySet {
    pub(super) fn len(&self) -> usize {
        self.jwks
    }

    pub(super) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    pub(super) fn find(&self, kid: Option<&str>, alg: Algorithm) -> KeyLookup {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                // A key with this kid bound to another algorithm is still
                // answered: the layer then rejects the token with
                // `KeyAlgorithmMismatch` instead of refetching.
                Some(keys) => KeyLookup::Found(Arc::clone(
                    keys.iter()
                        .find(|k| k.algorithm() == alg)
                        .unwrap_or(&keys[0]),
                )),
                None => KeyLookup::UnknownKid,
            },
            None => {
                // Without a kid: the only key (with or without kid) for alg.
                let mut candidates = self
                    .without_kid
                    .iter()
                    .chain(self.by_kid.values().flatten())
                    .filter(|k| k.algorithm() == alg);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => KeyLookup::Found(Arc::clone(only)),
                    _ => KeyLookup::UnknownKid,
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// The members of one JWK this crate reads; others are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    alg: Option<String>,
    kid: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// Why a JWK was skipped (logged at DEBUG).
fn skip(index: usize, kid: Option<&str>, why: &str) {
    tracing::debug!(index, kid, reason = why, "JWKS: key skipped");
}

/// Parses a JWK Set document. `Err` only when the document is not a JSON
/// object with a `keys` array; unusable keys are skipped.
pub(super) fn parse_set(body: &[u8]) -> Result<KeySet, serde_json::Error> {
    let raw: RawSet = serde_json::from_slice(body)?;
    let mut set = KeySet::default();
    // Each member re-serialised (no layout), the hashes sorted (no order).
    let mut members: Vec<u64> = raw
        .keys
        .iter()
        .map(|value| xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(value).unwrap_or_default()))
        .collect();
    members.sort_unstable();
    set.fingerprint = members
        .iter()
        .fold(xxhash_rust::xxh3::Xxh3Default::new(), |mut h, m| {
            h.update(&m.to_le_bytes());
            h
        })
        .digest();
    for (index, value) in raw.keys.into_iter().enumerate() {
        let jwk: RawJwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(_) => {
                skip(index, None, "malformed member");
                continue;
            }
        };
        let kid = jwk.kid.as_deref();
        match keys_of(&jwk) {
            Ok(keys) => {
                set.jwks += 1;
                let keys: Vec<Arc<VerificationKey>> = keys
                    .into_iter()
                    .map(|k| {
                        Arc::new(match kid {
                            Some(kid) => k.with_kid(kid),
                            None => k,
                        })
                    })
                    .collect();
                match kid {
                    Some(kid) => set.by_kid.entry(Arc::from(kid)).or_default().extend(keys),
                    None => set.without_kid.extend(keys),
                }
            }
            Err(why) => skip(index, kid, why),
        }
    }
    Ok(set)
}

/// The significant bits of a base64url modulus (`None`: not base64url).
fn rsa_modulus_bits(n: &str) -> Option<usize> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n)
        .ok()?;
    let significant = bytes
        .iter()
        .position(|&b| b != 0)
        .map_or(&[][..], |i| &bytes[i..]);
    Some(match significant.first() {
        Some(first) => (significant.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    })
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

fn member(m: &Option<String>) -> Result<&str, &'static str> {
    m.as_deref().ok_or("missing key member")
}

/// The verification keys of one JWK, or why it is skipped.
fn keys_of(jwk: &RawJwk) -> Result<Vec<VerificationKey>, &'static str> {
    // RFC 7517 §4.2: only signature keys.
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("`use` is not `sig`");
    }
    // RFC 7517 §4.3: only keys that may verify.
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Err("`key_ops` lacks `verify`");
    }
    let alg = match jwk.alg.as_deref() {
        Some(name) => Some(Algorithm::from_name(name).ok_or("unsupported `alg`")?),
        None => None,
    };
    let crv = jwk.crv.as_deref();
    // The algorithms the key may be used with: its `alg`, else every one
    // its type allows (the layer's allow-list narrows them further).
    let algs: Vec<Algorithm> = match (jwk.kty.as_str(), crv) {
        ("RSA", _) => RSA_ALGS.to_vec(),
        ("EC", Some("P-256")) => vec![Algorithm::ES256],
        ("EC", Some("P-384")) => vec![Algorithm::ES384],
        ("EC", _) => return Err("unsupported EC curve"),
        ("OKP", Some("Ed25519")) => vec![Algorithm::EdDSA],
        ("OKP", _) => return Err("unsupported OKP curve"),
        _ => return Err("unsupported `kty`"),
    };
    let algs = match alg {
        Some(alg) if algs.contains(&alg) => vec![alg],
        Some(_) => return Err("`alg` does not fit the key type"),
        None => algs,
    };
    algs.into_iter()
        .map(|alg| {
            let key = match jwk.kty.as_str() {
                "RSA" => {
                    let n = member(&jwk.n)?;
                    // RFC 7518 §3.3: RSA keys of at least 2048 bits.
                    if rsa_modulus_bits(n).is_none_or(|bits| bits < 2048) {
                        return Err("RSA modulus shorter than 2048 bits");
                    }
                    VerificationKey::rsa_components(alg, n, member(&jwk.e)?)
                }
                "EC" => VerificationKey::ec_components(alg, member(&jwk.x)?, member(&jwk.y)?),
                _ => VerificationKey::ed_components(alg, member(&jwk.x)?),
            };
            key.map_err(|_| "invalid key material")
        })
        .collect()
}

/// The `max-age` of a `Cache-Control` value, if any; `no-cache` and
/// `no-store` count as 0.
pub(super) fn max_age(cache_control: &str) -> Option<Duration> {
    let mut found = None;
    for directive in directives([cache_control.as_bytes()]) {
        if directive.is("no-cache") || directive.is("no-store") {
            return Some(Duration::ZERO);
        }
        if directive.is("max-age") {
            let value = std::str::from_utf8(directive.value().unwrap_or_default())
                .unwrap_or_default()
                .trim_matches('"');
            found = value.parse::<u64>().ok().map(Duration::from_secs).or(found);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9111 §5.2.2.1 (max-age), §5.2.2.4 (no-cache), §5.2.2.5 (no-store).
    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("MAX-AGE=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("max-age=600, no-cache"), Some(Duration::ZERO));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
        assert_eq!(max_age(""), None);
        // A directive named inside a quoted argument is not one (RFC 9110
        // §5.6.4).
        assert_eq!(
            max_age(r#"private="a, no-cache , b", max-age=60"#),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn not_a_set_is_an_error_and_bad_members_are_skipped() {
        assert!(parse_set(b"not json").is_err());
        assert!(parse_set(br#"{"nokeys": []}"#).is_err());
        assert!(parse_set(br#"[]"#).is_err());
        // A member of the wrong JSON type skips the key, not the set.
        let set = parse_set(br#"{"keys": [{"kty": "OKP", "use": 5}, {"kty": 7}, 3]}"#).unwrap();
        assert_eq!(set.len(), 0);
    }

    /// The `kid` of the key `find` answers, or `None` for "no single key".
    fn found(set: &KeySet, kid: Option<&str>, alg: Algorithm) -> Option<Option<String>> {
        match set.find(kid, alg) {
            KeyLookup::Found(key) => {
                assert_eq!(key.algorithm(), alg);
                Some(key.kid().map(str::to_owned))
            }
            KeyLookup::UnknownKid => None,
        }
    }

    // RFC 8037 §A.2's public key, and the same with one bit changed (a
    // second key: the set does not check that x is on the curve).
    const X1: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const X2: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURs";

    fn ed(kid: Option<&str>, x: &str) -> String {
        match kid {
            Some(kid) => {
                format!(r#"{{"kty": "OKP", "crv": "Ed25519", "kid": "{kid}", "x": "{x}"}}"#)
            }
            None => format!(r#"{{"kty": "OKP", "crv": "Ed25519", "x": "{x}"}}"#),
        }
    }

    fn set(keys: &[String]) -> KeySet {
        parse_set(format!(r#"{{"keys": [{}]}}"#, keys.join(", ")).as_bytes()).unwrap()
    }

    // A token without `kid` (RFC 7515 §4.1.4 makes it optional): verified
    // with the set's only key for its algorithm, with or without a `kid`
    // of its own; refused when the choice is ambiguous or there is none.
    #[test]
    fn a_token_without_kid_uses_the_only_key_for_its_algorithm() {
        let alg = Algorithm::EdDSA;
        let one = set(&[ed(Some("k1"), X1)]);
        assert_eq!(found(&one, None, alg), Some(Some("k1".into())));
        assert_eq!(found(&one, None, Algorithm::RS256), None);
        let anonymous = set(&[ed(None, X1)]);
        assert_eq!(found(&anonymous, None, alg), Some(None));
        assert_eq!(found(&anonymous, Some("k1"), alg), None);
        let two = set(&[ed(Some("k1"), X1), ed(Some("k2"), X2)]);
        assert_eq!(found(&two, None, alg), None);
        assert_eq!(found(&two, Some("k2"), alg), Some(Some("k2".into())));
        let mixed = set(&[ed(Some("k1"), X1), ed(None, X2)]);
        assert_eq!(found(&mixed, None, alg), None);
        assert_eq!(found(&mixed, Some("k1"), alg), Some(Some("k1".into())));
    }

    // Regression (review): a refetch that returned the same keys in another
    // order or layout counted as new keys, so one unknown-`kid` token per
    // cooldown emptied the verified-token cache. The fingerprint is of the
    // keys, not of the bytes.
    #[test]
    fn the_fingerprint_ignores_key_order_and_layout() {
        let a = ed(Some("k1"), X1);
        let b = ed(Some("k2"), X2);
        let base = set(&[a.clone(), b.clone()]).fingerprint();
        assert_eq!(set(&[b.clone(), a.clone()]).fingerprint(), base);
        let spaced = parse_set(format!("{{ \"keys\" :\n [ {a} ,\n {b} ] }}").as_bytes()).unwrap();
        assert_eq!(spaced.fingerprint(), base);
        assert_ne!(set(std::slice::from_ref(&a)).fingerprint(), base);
        assert_ne!(set(&[a, ed(Some("k2"), X1)]).fingerprint(), base);
    }

    // RFC 7518 §3.3: an RSA key below 2048 bits is not used, counted to
    // the bit. Regression (review): the count by base64 characters let
    // moduli of 2035 to 2047 bits through.
    #[test]
    fn short_rsa_keys_are_skipped() {
        use base64::Engine;
        let set = parse_set(br#"{"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB"}]}"#)
            .unwrap();
        assert_eq!(set.len(), 0);
        let modulus = |lead: &[u8], len: usize| {
            let mut n = lead.to_vec();
            n.resize(len - 1, 0);
            n.push(1); // odd
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(n)
        };
        for (n, bits) in [
            (modulus(&[0x80], 256), 2048),
            (modulus(&[0x00, 0x80], 257), 2048),
            (modulus(&[0x40], 256), 2047),
            (modulus(&[0x80], 255), 2040),
        ] {
            assert_eq!(rsa_modulus_bits(&n), Some(bits));
            let set = parse_set(
                format!(r#"{{"keys": [{{"kty": "RSA", "kid": "k", "alg": "RS256", "n": "{n}", "e": "AQAB"}}]}}"#)
                    .as_bytes(),
            )
            .unwrap();
            assert_eq!(set.len(), usize::from(bits >= 2048), "{bits} bits");
        }
    }
}
