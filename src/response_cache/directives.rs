//! Whether a shared cache may store a response, and for how long
//! (RFC 9111 §3, §4.2.1, §5.2.2; RFC 5861; RFC 9213 targeted fields).
//!
//! The directives come from the cache's targeted field (RFC 9213, ours is
//! `Edge-Cache-Control` by default) when the response has a valid one,
//! else from `Cache-Control` and `Expires`; `no-store` and `private` in
//! `Cache-Control` keep a response out whatever the targeted field says. Everything is read with the
//! crate's one directive scanner ([`crate::cache_control`]).

use std::time::Duration;

use http::header::{AGE, CACHE_CONTROL, DATE, EXPIRES, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::cache_control::directives;
use crate::cache_headers::HttpDate;

/// RFC 9111 §1.2.2: a delta-seconds too large to represent is 2^31.
const DELTA_MAX: u64 = 1 << 31;

/// The response directives a shared cache acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) no_store: bool,
    /// An unqualified `private` (§5.2.2.7).
    pub(crate) private: bool,
    pub(crate) public: bool,
    /// `no-cache`, qualified or not (§5.2.2.4): stored, never reused
    /// without going to the origin.
    pub(crate) no_cache: bool,
    /// `must-revalidate` or `proxy-revalidate` (§5.2.2.2, §5.2.2.8): never
    /// served stale.
    pub(crate) must_revalidate: bool,
    pub(crate) s_maxage: Option<u64>,
    pub(crate) max_age: Option<u64>,
    pub(crate) stale_while_revalidate: Option<u64>,
    pub(crate) stale_if_error: Option<u64>,
    /// A freshness directive given twice or with a bad value: the response
    /// is treated as stale (§4.2.1), so not stored.
    pub(crate) conflicting: bool,
}

/// delta-seconds (RFC 9111 §1.2.2), tolerating the quoted form
/// (§5.2: recipients accept it); `None` when not one.
fn delta_seconds(value: Option<&[u8]>, strict: bool) -> Option<u64> {
    let mut value = value?;
    if !strict && value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
        value = &value[1..value.len() - 1];
    }
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: u64 = 0;
    for &b in value {
        n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    Some(n.min(DELTA_MAX))
}

impl Directives {
    /// The directives of these field lines. `strict` reads them as an
    /// RFC 9651 dictionary (a targeted field, RFC 9213 §2.1): a bad value
    /// makes the whole field invalid (`None`).
    pub(crate) fn parse<'a>(
        lines: impl IntoIterator<Item = &'a [u8]>,
        strict: bool,
    ) -> Option<Self> {
        let mut d = Self::default();
        let mut seen_any = false;
        for directive in directives(lines) {
            seen_any = true;
            let flag = |d: &mut Self, set: fn(&mut Self) -> &mut bool| -> bool {
                // A boolean member (`private` or `private=?1`) in a
                // dictionary; a field-qualified value in `Cache-Control`.
                match directive.value() {
                    Some(b"?0") if strict => {}
                    Some(b"?1") | None => *set(d) = true,
                    Some(_) if strict => return false,
                    Some(_) => *set(d) = true,
                }
                true
            };
            let delta = |d: &mut Self, slot: fn(&mut Self) -> &mut Option<u64>| -> bool {
                match delta_seconds(directive.value(), strict) {
                    Some(n) if slot(d).is_none() => *slot(d) = Some(n),
                    // Twice, or not a number: stale (§4.2.1).
                    _ => d.conflicting = true,
                }
                !(strict && d.conflicting)
            };
            let ok = if directive.is("no-store") {
                flag(&mut d, |d| &mut d.no_store)
            } else if directive.is("private") {
                if directive.value().is_some() && !strict {
                    // `private="field"`: shared caches may store the rest
                    // (§5.2.2.7); this cache does not strip fields, so it
                    // stores nothing.
                    d.private = true;
                    true
                } else {
                    flag(&mut d, |d| &mut d.private)
                }
            } else if directive.is("public") {
                flag(&mut d, |d| &mut d.public)
            } else if directive.is("no-cache") {
                flag(&mut d, |d| &mut d.no_cache)
            } else if directive.is("must-revalidate") || directive.is("proxy-revalidate") {
                flag(&mut d, |d| &mut d.must_revalidate)
            } else if directive.is("s-maxage") {
                delta(&mut d, |d| &mut d.s_maxage)
            } else if directive.is("max-age") {
                delta(&mut d, |d| &mut d.max_age)
            } else if directive.is("stale-while-revalidate") {
                delta(&mut d, |d| &mut d.stale_while_revalidate)
            } else if directive.is("stale-if-error") {
                delta(&mut d, |d| &mut d.stale_if_error)
            } else {
                // Unknown directives are ignored (§5.2.3).
                true
            };
            if !ok {
                return None;
            }
        }
        // RFC 9213 §2.1: an empty targeted field is ignored.
        if strict && !seen_any {
            return None;
        }
        Some(d)
    }
}

/// What the cache may do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// The freshness lifetime (§4.2.1).
    pub(crate) lifetime: Duration,
    /// The age the response already had (its `Age` field, §4.2.3).
    pub(crate) initial_age: Duration,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
    pub(crate) must_revalidate: bool,
    pub(crate) no_cache: bool,
    /// May serve requests carrying `Authorization` (§3.5: `public`,
    /// `s-maxage` or `must-revalidate`).
    pub(crate) shareable_with_authorization: bool,
}

/// Why a response is not stored (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    Status,
    NoStore,
    Private,
    SetCookie,
    VaryStar,
    NoFreshness,
    Conflicting,
}

/// The statuses this cache stores: those RFC 9110 §15.1 calls
/// heuristically cacheable (and so understood by every cache). 206 (a
/// part), 401, 403, 429, 503 and every other 5xx but 501 are never stored.
pub(crate) fn storable_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether `Vary` lists `*` (RFC 9111 §4.1: never matches).
pub(crate) fn varies_on_everything(headers: &HeaderMap) -> bool {
    crate::list::members(
        headers.get_all(VARY).iter().map(HeaderValue::as_bytes),
        crate::list::Quoting::None,
    )
    .any(|m| m == b"*")
}

/// The cache's decision on a response (RFC 9111 §3): `targeted` is the
/// cache's own field (RFC 9213), `rule_lifetime` a lifetime set in code
/// for responses without a targeted field, `authorized` whether the
/// request carried `Authorization` and no rule keys by principal.
pub(crate) fn verdict(
    status: StatusCode,
    headers: &HeaderMap,
    targeted: &HeaderName,
    rule_lifetime: Option<Duration>,
    authorized: bool,
) -> Result<Verdict, NotStored> {
    if !storable_status(status) {
        return Err(NotStored::Status);
    }
    if headers.contains_key(SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    if varies_on_everything(headers) {
        return Err(NotStored::VaryStar);
    }
    let lines = |name: &HeaderName| headers.get_all(name).iter().map(HeaderValue::as_bytes);
    let cache_control = Directives::parse(lines(&CACHE_CONTROL), false).unwrap_or_default();
    // RFC 9213 §2.2: a valid targeted field replaces `Cache-Control` and
    // `Expires` for this cache; an invalid or empty one is ignored.
    let targeted = if headers.contains_key(targeted) {
        Directives::parse(lines(targeted), true)
    } else {
        None
    };
    let d = targeted.unwrap_or(cache_control);
    // Stricter than RFC 9213 §2.2 on purpose: `no-store` or `private` in
    // `Cache-Control` keeps a response out of this cache even when the
    // targeted field gives it a lifetime (a per-user answer is never
    // shared by mistake).
    if d.no_store || cache_control.no_store {
        return Err(NotStored::NoStore);
    }
    if d.private || cache_control.private {
        return Err(NotStored::Private);
    }
    if d.conflicting {
        return Err(NotStored::Conflicting);
    }
    let now = HttpDate::now().unix_seconds();
    let lifetime = match (d.s_maxage, d.max_age) {
        (Some(s), _) => Some(s),
        (None, Some(m)) => Some(m),
        (None, None) if targeted.is_some() => None,
        (None, None) => expires_lifetime(headers, now)?,
    };
    let lifetime = match lifetime.map(Duration::from_secs).or(rule_lifetime) {
        Some(lifetime) => lifetime,
        None => return Err(NotStored::NoFreshness),
    };
    let shareable = d.public || d.s_maxage.is_some() || d.must_revalidate;
    if authorized && !shareable {
        // RFC 9111 §3.5.
        return Err(NotStored::Private);
    }
    let initial_age = match headers
        .get(AGE)
        .map(|v| delta_seconds(Some(v.as_bytes()), true))
    {
        Some(Some(age)) => age,
        _ => 0,
    };
    Ok(Verdict {
        lifetime,
        initial_age: Duration::from_secs(initial_age),
        stale_while_revalidate: Duration::from_secs(d.stale_while_revalidate.unwrap_or(0)),
        stale_if_error: Duration::from_secs(d.stale_if_error.unwrap_or(0)),
        must_revalidate: d.must_revalidate,
        no_cache: d.no_cache,
        shareable_with_authorization: shareable,
    })
}

/// `Expires` minus `Date` (RFC 9111 §4.2.1, §5.3): `Ok(None)` without
/// `Expires`; an invalid or repeated `Expires` means already expired,
/// which stores nothing.
fn expires_lifetime(headers: &HeaderMap, now: u64) -> Result<Option<u64>, NotStored> {
    let mut lines = headers.get_all(EXPIRES).iter();
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    if lines.next().is_some() {
        return Err(NotStored::Conflicting);
    }
    let expires = HttpDate::from_header_value(first)
        .map_err(|_| NotStored::NoFreshness)?
        .unix_seconds();
    let date = headers
        .get(DATE)
        .and_then(|v| HttpDate::from_header_value(v).ok())
        .map_or(now, HttpDate::unix_seconds);
    match expires.checked_sub(date) {
        Some(lifetime) if lifetime > 0 => Ok(Some(lifetime.min(DELTA_MAX))),
        _ => Err(NotStored::NoFreshness),
    }
}
