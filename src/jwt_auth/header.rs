//! The JWS header (RFC 7515 §4), checked by the layer itself before any
//! key lookup or crypto: the token's shape, `alg` against the allow-list,
//! `typ`, and the members that are refused (`crit`, `zip`, `enc`).

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, IgnoredAny};

use super::algorithm::Algorithm;
use super::error::JwtError;

/// A token whose header passed every check, split into its parts.
#[derive(Debug)]
pub(crate) struct Parsed<'t> {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<Cow<'t, str>>,
    /// `header.payload`, the signed message.
    pub(crate) message: &'t str,
    pub(crate) payload: &'t str,
    pub(crate) signature: &'t str,
}

/// The header settings of the layer.
#[derive(Debug)]
pub(crate) struct HeaderRules {
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) max_len: usize,
    pub(crate) typ: Option<Box<str>>,
}

/// Maximum decoded header size held on the stack.
const HEADER_BUF: usize = 512;

impl HeaderRules {
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
        // the strings it skips (members we ignore). Checked once here, then
        // read from the `str` (no second check per string).
        let Ok(decoded) = std::str::from_utf8(decoded) else {
            return Err(JwtError::Malformed("header is not UTF-8"));
        };
        let raw: RawHeader<'_> = serde_json::from_str(decoded)
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
