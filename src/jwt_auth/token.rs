//! Finding the token in a request.

use std::borrow::Cow;

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, Uri};

use super::error::JwtError;

/// Where the layer looks for the token. `Authorization: Bearer` is on by
/// default; the others are opt-in.
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenSources {
    pub(crate) authorization: bool,
    pub(crate) cookie: Option<Box<str>>,
    pub(crate) header: Option<HeaderName>,
    pub(crate) query: bool,
}

/// A token found in a request.
#[derive(Debug)]
pub(crate) struct Found<'r> {
    pub(crate) token: Cow<'r, str>,
    /// It came from the `access_token` query parameter.
    pub(crate) from_query: bool,
}

impl TokenSources {
    /// The one token of the request, `None` when there is none, or an error
    /// when there are several (RFC 6750 §3.1 `invalid_request`).
    pub(crate) fn find<'r>(
        &self,
        headers: &'r HeaderMap,
        uri: &'r Uri,
    ) -> Result<Option<Found<'r>>, JwtError> {
        let mut found: Option<Found<'r>> = None;
        let mut put = |token: Cow<'r, str>, from_query: bool| {
            if found.is_some() {
                return Err(JwtError::Duplicate);
            }
            found = Some(Found { token, from_query });
            Ok(())
        };

        if self.authorization {
            let mut lines = headers.get_all(AUTHORIZATION).iter();
            if let Some(first) = lines.next() {
                if lines.next().is_some() {
                    return Err(JwtError::Duplicate);
                }
                if let Some(token) = bearer(first.as_bytes())? {
                    put(Cow::Borrowed(token), false)?;
                }
            }
        }
        if let Some(name) = &self.header {
            let mut lines = headers.get_all(name).iter();
            if let Some(first) = lines.next() {
                if lines.next().is_some() {
                    return Err(JwtError::Duplicate);
                }
                let value = first
                    .to_str()
                    .map_err(|_| JwtError::Malformed("token header is not text"))?
                    .trim();
                if !value.is_empty() {
                    put(Cow::Borrowed(value), false)?;
                }
            }
        }
        if let Some(cookie_name) = &self.cookie {
            for line in headers.get_all(COOKIE) {
                let Ok(line) = line.to_str() else { continue };
                for pair in line.split(';') {
                    if let Some((name, value)) = pair.trim().split_once('=')
                        && name.trim() == &**cookie_name
                    {
                        let value = value.trim().trim_matches('"');
                        put(Cow::Borrowed(value), false)?;
                    }
                }
            }
        }
        if self.query
            && let Some(query) = uri.query()
        {
            for pair in query.split('&') {
                if let Some(value) = pair.strip_prefix("access_token=") {
                    let decoded = percent_encoding::percent_decode_str(value)
                        .decode_utf8()
                        .map_err(|_| JwtError::Malformed("access_token is not UTF-8"))?;
                    put(decoded, true)?;
                }
            }
        }
        Ok(found)
    }
}

/// The token of an `Authorization` value with the `Bearer` scheme (any
/// case), `None` for another scheme.
fn bearer(value: &[u8]) -> Result<Option<&str>, JwtError> {
    const SCHEME: &[u8] = b"bearer";
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return Ok(None);
    }
    let rest = &value[SCHEME.len()..];
    match rest.first() {
        // "Bearer" alone: the scheme without its credentials.
        None => return Err(JwtError::MalformedAuthorization),
        Some(b' ') => {}
        // "Bearerx...": another scheme.
        Some(_) => return Ok(None),
    }
    let token = std::str::from_utf8(rest)
        .map_err(|_| JwtError::MalformedAuthorization)?
        .trim_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(JwtError::MalformedAuthorization);
    }
    Ok(Some(token))
}
