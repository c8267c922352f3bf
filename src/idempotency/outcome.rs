//! Which outcomes are stored, and what of them: the status, allowlisted
//! headers, the body bytes and (gRPC) the trailers.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// An outcome kept for replay: status, allowlisted headers, body, trailers.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl fmt::Debug for StoredResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredResponse")
            .field("status", &self.status)
            .field("headers", &self.headers.len())
            .field("body", &self.body.len())
            .field("trailers", &self.trailers.as_ref().map(HeaderMap::len))
            .finish()
    }
}

impl StoredResponse {
    /// An outcome to store. `Set-Cookie` is never kept, in headers or
    /// trailers, whoever builds it.
    pub fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        trailers: Option<HeaderMap>,
    ) -> Self {
        headers.remove(http::header::SET_COOKIE);
        let trailers = trailers.map(|mut t| {
            t.remove(http::header::SET_COOKIE);
            t
        });
        Self {
            status,
            headers,
            body,
            trailers,
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stored headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body bytes.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The trailers, if the response had any.
    pub fn trailers(&self) -> Option<&HeaderMap> {
        self.trailers.as_ref()
    }

    /// Bytes this outcome holds (for memory bounds).
    pub fn size(&self) -> usize {
        let map = |m: &HeaderMap| {
            m.iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 32)
                .sum::<usize>()
        };
        64 + self.body.len() + map(&self.headers) + self.trailers.as_ref().map_or(0, map)
    }

    /// A compact binary form (for network stores).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::with_capacity(self.size() + 16);
        out.put_u16(self.status.as_u16());
        put_map(&mut out, &self.headers);
        match &self.trailers {
            Some(t) => {
                out.put_u8(1);
                put_map(&mut out, t);
            }
            None => out.put_u8(0),
        }
        out.put_slice(&self.body);
        out.to_vec()
    }

    /// Reads what [`encode`](Self::encode) wrote; `None` if it is not that.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        Self::decode_shared(&Bytes::copy_from_slice(bytes))
    }

    /// [`decode`](Self::decode) of a buffer the outcome may keep: the
    /// header values and the body are slices of it, not copies (a replay
    /// from Redis decodes every time).
    pub(crate) fn decode_shared(bytes: &Bytes) -> Option<Self> {
        let mut buf = &bytes[..];
        if buf.remaining() < 2 {
            return None;
        }
        let status = StatusCode::from_u16(buf.get_u16()).ok()?;
        let headers = get_map(bytes, &mut buf)?;
        if buf.remaining() < 1 {
            return None;
        }
        let trailers = match buf.get_u8() {
            0 => None,
            1 => Some(get_map(bytes, &mut buf)?),
            _ => return None,
        };
        let body = bytes.slice_ref(buf);
        Some(Self::new(status, headers, body, trailers))
    }

    /// Its parts, moved out: status, headers, body, trailers.
    pub(crate) fn into_parts(self) -> (StatusCode, HeaderMap, Bytes, Option<HeaderMap>) {
        (self.status, self.headers, self.body, self.trailers)
    }
}

fn put_map(out: &mut BytesMut, map: &HeaderMap) {
    out.put_u32(map.len() as u32);
    for (name, value) in map {
        out.put_u16(name.as_str().len() as u16);
        out.put_slice(name.as_str().as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
}

/// A map of `put_map`'s from `buf`, a tail of `whole`: values are slices
/// of `whole`. Sized for one more field than it holds (a replay adds
/// `Idempotent-Replayed`).
fn get_map(whole: &Bytes, buf: &mut &[u8]) -> Option<HeaderMap> {
    if buf.remaining() < 4 {
        return None;
    }
    let count = buf.get_u32() as usize;
    let mut map = HeaderMap::with_capacity(count.min(64) + 1);
    for _ in 0..count {
        if buf.remaining() < 2 {
            return None;
        }
        let len = usize::from(buf.get_u16());
        if buf.remaining() < len {
            return None;
        }
        let name = HeaderName::from_bytes(&buf[..len]).ok()?;
        buf.advance(len);
        if buf.remaining() < 4 {
            return None;
        }
        let len = buf.get_u32() as usize;
        if buf.remaining() < len {
            return None;
        }
        let value = HeaderValue::from_maybe_shared(whole.slice_ref(&buf[..len])).ok()?;
        buf.advance(len);
        map.append(name, value);
    }
    Some(map)
}

/// Which outcomes are stored (and replayed); any other releases the key,
/// so a retry runs the request again.
///
/// The default (draft-07 §2.6 leaves it to the resource): HTTP **2xx**
/// and **4xx except 408, 409, 425 and 429** (a timeout, a conflict, too
/// early, rate limited: a retry may well succeed); gRPC status **0 OK, 3
/// INVALID_ARGUMENT, 5 NOT_FOUND, 6 ALREADY_EXISTS, 7 PERMISSION_DENIED,
/// 9 FAILED_PRECONDITION, 11 OUT_OF_RANGE, 12 UNIMPLEMENTED, 16
/// UNAUTHENTICATED** (the codes a retry would get again). A 5xx, any other
/// gRPC status, a handler error, a response body that fails, a request
/// dropped before its response is complete, and an answer of another
/// tower-edge layer further in (one carrying a
/// [`Decision`](crate::decision::Decision): a route's scope check, a
/// limiter) always release the key.
///
/// ```
/// use http::StatusCode;
/// use tower_edge::idempotency::StoredOutcomes;
///
/// let outcomes = StoredOutcomes::default().without(StatusCode::NOT_FOUND);
/// assert!(outcomes.stores(StatusCode::CREATED));
/// assert!(!outcomes.stores(StatusCode::NOT_FOUND));
/// assert!(!outcomes.stores(StatusCode::TOO_MANY_REQUESTS));
/// assert!(!outcomes.stores(StatusCode::INTERNAL_SERVER_ERROR));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StoredOutcomes {
    /// Bit `status - 100` of 100..=599.
    http: [u64; 8],
    /// Bit `code` of 0..=16.
    grpc: u32,
}

impl fmt::Debug for StoredOutcomes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let http: Vec<u16> = (100..600).filter(|s| self.bit(*s)).collect();
        let grpc: Vec<u32> = (0..17).filter(|c| self.grpc & (1 << c) != 0).collect();
        f.debug_struct("StoredOutcomes")
            .field("http", &http)
            .field("grpc", &grpc)
            .finish()
    }
}

impl Default for StoredOutcomes {
    fn default() -> Self {
        let mut outcomes = Self {
            http: [0; 8],
            grpc: 0,
        };
        for status in (200..300).chain(400..500) {
            outcomes.set(status, true);
        }
        for status in [408, 409, 425, 429] {
            outcomes.set(status, false);
        }
        for code in [0, 3, 5, 6, 7, 9, 11, 12, 16] {
            outcomes.grpc |= 1 << code;
        }
        outcomes
    }
}

impl StoredOutcomes {
    fn bit(&self, status: u16) -> bool {
        let i = usize::from(status.saturating_sub(100));
        (100..600).contains(&status) && self.http[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, status: u16, on: bool) {
        if (100..600).contains(&status) {
            let i = usize::from(status - 100);
            if on {
                self.http[i / 64] |= 1 << (i % 64);
            } else {
                self.http[i / 64] &= !(1 << (i % 64));
            }
        }
    }

    /// Also stores responses of `status` (never a 5xx: see
    /// [`IdempotencyLayerBuilder::stored_outcomes`](super::IdempotencyLayerBuilder::stored_outcomes)).
    pub fn with(mut self, status: StatusCode) -> Self {
        self.set(status.as_u16(), true);
        self
    }

    /// Releases the key on responses of `status`.
    pub fn without(mut self, status: StatusCode) -> Self {
        self.set(status.as_u16(), false);
        self
    }

    /// Also stores gRPC responses of status `code` (0 to 16).
    pub fn with_grpc(mut self, code: u8) -> Self {
        if code <= 16 {
            self.grpc |= 1 << code;
        }
        self
    }

    /// Releases the key on gRPC responses of status `code`.
    pub fn without_grpc(mut self, code: u8) -> Self {
        if code <= 16 {
            self.grpc &= !(1 << code);
        }
        self
    }

    /// Whether an HTTP response of `status` is stored.
    pub fn stores(&self, status: StatusCode) -> bool {
        self.bit(status.as_u16())
    }

    /// Whether a gRPC response of `grpc-status` `code` is stored.
    pub fn stores_grpc(&self, code: u32) -> bool {
        code <= 16 && self.grpc & (1 << code) != 0
    }

    /// Whether some 5xx is stored (refused at build).
    pub(crate) fn stores_server_error(&self) -> Option<u16> {
        (500..600).find(|s| self.bit(*s))
    }
}

/// The response headers a replay carries by default: the representation
/// and what points at it, never `Set-Cookie` (nor anything about this
/// connection or this moment: `Date`, `Content-Length` are made afresh).
pub const DEFAULT_REPLAYED_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-language",
    "content-location",
    "location",
    "etag",
    "last-modified",
    "link",
    "cache-control",
    "vary",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_refuses_garbage() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("link", HeaderValue::from_static("</a>"));
        headers.append("link", HeaderValue::from_static("</b>"));
        headers.insert("set-cookie", HeaderValue::from_static("s=1"));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let stored = StoredResponse::new(
            StatusCode::CREATED,
            headers,
            Bytes::from_static(b"{\"id\":1}"),
            Some(trailers),
        );
        assert!(stored.headers().get("set-cookie").is_none());
        let bytes = stored.encode();
        assert_eq!(StoredResponse::decode(&bytes), Some(stored.clone()));
        for cut in 0..12 {
            assert_eq!(StoredResponse::decode(&bytes[..cut]), None);
        }
        let plain = StoredResponse::new(StatusCode::OK, HeaderMap::new(), Bytes::new(), None);
        assert_eq!(StoredResponse::decode(&plain.encode()), Some(plain));
    }

    // draft-ietf-httpapi-idempotency-key-header-07 §2.6 leaves it to the
    // resource; ours: 2xx and 4xx except 408, 409, 425, 429 (RFC 9110
    // §15.5.9, §15.5.10, RFC 8470 §5.2, RFC 6585 §4: a retry may succeed).
    #[test]
    fn default_outcomes_are_2xx_and_4xx_but_retryable_ones() {
        let o = StoredOutcomes::default();
        for s in [200, 201, 204, 299, 400, 401, 404, 422, 499] {
            assert!(o.stores(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [100, 301, 304, 408, 409, 425, 429, 500, 503, 599] {
            assert!(!o.stores(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        assert!(o.stores_grpc(0) && o.stores_grpc(3) && !o.stores_grpc(14) && !o.stores_grpc(99));
        assert_eq!(o.stores_server_error(), None);
        assert_eq!(
            o.with(StatusCode::BAD_GATEWAY).stores_server_error(),
            Some(502)
        );
    }
}
