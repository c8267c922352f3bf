//! Conditional requests (RFC 9110 §13): one evaluation for the layer and
//! for handlers.

use http::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE, LAST_MODIFIED, TRAILER,
    TRANSFER_ENCODING,
};
use http::{HeaderMap, HeaderName, Method, Response, StatusCode, Version};

use super::date::HttpDate;
use super::etag::{ETag, TagList, TagRef, match_list};
use crate::body::ResponseBody;
use crate::decision::{Decision, EdgeLayer, Reason};
use crate::rejection::{GrpcProtocol, Problem, Rejections};

/// What the current representation of the target resource is, as far as
/// preconditions care: its validators, or that there is none.
///
/// ```
/// use tower_edge::cache_headers::{ETag, HttpDate, Representation};
///
/// let current = Representation::new()
///     .etag(ETag::strong("v7").unwrap())
///     .last_modified(HttpDate::from_unix_seconds(1_700_000_000).unwrap());
/// let nothing_yet = Representation::missing(); // e.g. a PUT that creates
/// # let _ = (current, nothing_yet);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Representation {
    etag: Option<ETag>,
    last_modified: Option<HttpDate>,
    missing: bool,
}

impl Representation {
    /// A current representation exists (so `If-Match: *` is true and
    /// `If-None-Match: *` false); add its validators.
    pub fn new() -> Self {
        Self::default()
    }

    /// The resource has no current representation (not created yet, or
    /// deleted).
    pub fn missing() -> Self {
        Self {
            missing: true,
            ..Self::default()
        }
    }

    /// Its entity tag.
    pub fn etag(mut self, etag: ETag) -> Self {
        self.etag = Some(etag);
        self
    }

    /// Its last modification date.
    pub fn last_modified(mut self, date: HttpDate) -> Self {
        self.last_modified = Some(date);
        self
    }

    /// Whether a current representation exists.
    pub fn exists(&self) -> bool {
        !self.missing
    }
}

/// The validators the evaluation compares with, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Current<'a> {
    pub(crate) exists: bool,
    pub(crate) etag: Option<TagRef<'a>>,
    pub(crate) last_modified: Option<HttpDate>,
}

/// The result of evaluating preconditions (RFC 9110 §13.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    /// All conditions hold (or none applies): perform the method.
    Proceed,
    /// `If-None-Match` or `If-Modified-Since` is false on a GET or HEAD:
    /// answer 304 Not Modified.
    NotModified,
    /// A precondition failed: answer 412 Precondition Failed.
    PreconditionFailed,
}

/// The conditional headers of one request, to evaluate against the current
/// representation.
///
/// The [`CacheHeadersLayer`](super::CacheHeadersLayer) evaluates them for
/// you on GET and HEAD, after the handler ran. A handler uses this type to
/// decide *before* doing the work: a `PUT` or `DELETE` with `If-Match` must
/// be refused with 412 before it changes anything (RFC 9110 §13.1.1), and a
/// `GET` can skip the database when the client's copy is current.
///
/// Build it from any request's method and headers with
/// [`Preconditions::from_request`], or take it as an axum handler argument
/// (feature `axum`; it reads the request headers, no layer needed).
///
/// ```
/// use http::{HeaderMap, Method};
/// use tower_edge::cache_headers::{ETag, Preconditions, Representation};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("if-match", "\"v1\"".parse().unwrap());
/// let preconditions = Preconditions::from_request(&Method::PUT, &headers);
///
/// // The stored version is v2: someone else wrote in between.
/// let current = Representation::new().etag(ETag::strong("v2").unwrap());
/// let refused = preconditions.check(&current).unwrap_err();
/// assert_eq!(refused.status(), http::StatusCode::PRECONDITION_FAILED);
/// let response = refused.into_http_response::<http_body_util::Empty<bytes::Bytes>>();
/// assert_eq!(response.status(), 412);
/// ```
#[derive(Debug, Clone)]
pub struct Preconditions {
    method: Method,
    /// Only the four conditional fields; empty (unallocated) when none.
    headers: HeaderMap,
}

const CONDITIONAL: [http::HeaderName; 4] = [
    IF_MATCH,
    IF_NONE_MATCH,
    IF_MODIFIED_SINCE,
    IF_UNMODIFIED_SINCE,
];

/// What one pass over a request's fields finds for the cache-headers layer.
struct Scanned {
    /// The conditional fields (when asked for), in order.
    conditional: HeaderMap,
    authorized: bool,
    grpc: bool,
}

/// One pass over `headers` (cheaper than a hashed lookup per name: most
/// requests carry a few fields and no conditional one). `grpc` is what the
/// rejection module calls gRPC (one predicate for both).
fn scan_fields(version: Version, headers: &HeaderMap, conditional: bool) -> Scanned {
    let mut scanned = Scanned {
        conditional: HeaderMap::new(),
        authorized: false,
        grpc: false,
    };
    let mut content_type_seen = false;
    // The values of one name come together, the first (what `get`
    // returns) first.
    for (name, value) in headers {
        if name == CONTENT_TYPE {
            if !content_type_seen {
                scanned.grpc = GrpcProtocol::of_content_type(version, value).is_some();
            }
            content_type_seen = true;
        } else if name == AUTHORIZATION {
            scanned.authorized = true;
        } else if conditional && CONDITIONAL.contains(name) {
            scanned.conditional.append(name.clone(), value.clone());
        }
    }
    scanned
}

impl Preconditions {
    /// The preconditions of a request with this method and these headers.
    pub fn from_request(method: &Method, headers: &HeaderMap) -> Self {
        Self {
            method: method.clone(),
            headers: scan_fields(Version::HTTP_11, headers, true).conditional,
        }
    }

    /// What the cache-headers layer reads from a request: its
    /// preconditions (only when `conditional`, else none) and whether it
    /// carries `Authorization`; `None` for a gRPC request.
    pub(crate) fn scan(
        method: &Method,
        version: Version,
        headers: &HeaderMap,
        conditional: bool,
    ) -> Option<(Self, bool)> {
        let scanned = scan_fields(version, headers, conditional);
        if scanned.grpc {
            return None;
        }
        let preconditions = Self {
            method: method.clone(),
            headers: scanned.conditional,
        };
        Some((preconditions, scanned.authorized))
    }

    /// Whether the request carries any conditional header.
    pub fn is_conditional(&self) -> bool {
        !self.headers.is_empty()
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The conditional fields of the request.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Evaluates the preconditions against `current` (RFC 9110 §13.2.2).
    ///
    /// Call it only where the response without preconditions would be 2xx:
    /// after authentication, authorisation and existence checks, so that a
    /// 401, 404 or 429 is never turned into a 304 or 412.
    pub fn evaluate(&self, current: &Representation) -> Evaluation {
        evaluate(
            &self.method,
            &self.headers,
            Current {
                exists: current.exists(),
                etag: current.etag.as_ref().map(ETag::as_ref),
                last_modified: current.last_modified,
            },
        )
    }

    /// [`evaluate`](Self::evaluate), with a ready 304 or 412 response when
    /// the handler must stop.
    ///
    /// # Errors
    ///
    /// The request must not proceed: send the returned response.
    pub fn check(&self, current: &Representation) -> Result<(), ConditionalResponse> {
        match self.evaluate(current) {
            Evaluation::Proceed => Ok(()),
            Evaluation::NotModified => Err(ConditionalResponse {
                status: StatusCode::NOT_MODIFIED,
                etag: current.etag.clone(),
                last_modified: current.last_modified,
            }),
            Evaluation::PreconditionFailed => Err(ConditionalResponse {
                status: StatusCode::PRECONDITION_FAILED,
                etag: None,
                last_modified: None,
            }),
        }
    }
}

/// A 304 Not Modified or 412 Precondition Failed a handler must send
/// instead of doing the work; from [`Preconditions::check`].
///
/// The 304 carries the representation's `ETag` (or its `Last-Modified` when
/// it has no tag) and no body; the [`CacheHeadersLayer`](super::CacheHeadersLayer)
/// adds the `Cache-Control` and `Vary` the 200 would have had. The 412 is a
/// problem response built by [`Rejections`].
#[derive(Debug, Clone)]
pub struct ConditionalResponse {
    status: StatusCode,
    etag: Option<ETag>,
    last_modified: Option<HttpDate>,
}

impl ConditionalResponse {
    /// 304 or 412.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response, with a default problem+json body for a 412.
    pub fn into_http_response<B>(self) -> Response<ResponseBody<B>> {
        self.into_http_response_with(&Rejections::default())
    }

    /// The response, the 412 body rendered by `rejections`.
    pub fn into_http_response_with<B>(self, rejections: &Rejections) -> Response<ResponseBody<B>> {
        if self.status == StatusCode::PRECONDITION_FAILED {
            return rejections.http_response(precondition_failed());
        }
        let mut response = Response::new(ResponseBody::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        mark_not_modified(response.extensions_mut());
        let headers = response.headers_mut();
        match (self.etag, self.last_modified) {
            (Some(etag), _) => {
                headers.insert(ETAG, etag.into());
            }
            (None, Some(date)) => {
                headers.insert(LAST_MODIFIED, date.to_header_value());
            }
            (None, None) => {}
        }
        response
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for ConditionalResponse {
    fn into_response(self) -> axum_core::response::Response {
        self.into_http_response_with::<axum_core::body::Body>(&Rejections::default())
            .map(axum_core::body::Body::new)
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for Preconditions {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::from_request(&parts.method, &parts.headers))
    }
}

/// The 412 problem.
pub(crate) fn precondition_failed() -> Problem {
    Problem::new(StatusCode::PRECONDITION_FAILED)
        .with_detail("a precondition of the request (If-Match or If-Unmodified-Since) is false")
        .with_decision(Decision::new(
            EdgeLayer::CacheHeaders,
            Reason::PreconditionFailed,
        ))
}

/// The marker of a 304 answered by this module (RFC 9110 §15.4.5).
pub(crate) fn mark_not_modified(extensions: &mut http::Extensions) {
    extensions.insert(Decision::new(EdgeLayer::CacheHeaders, Reason::NotModified));
}

/// RFC 9110 §13.2.2, in order. `headers` are the request's; only the four
/// conditional fields are read.
///
/// * Ignored for CONNECT, OPTIONS and TRACE (§13.2.1).
/// * A malformed `If-Match` fails (412): a client that asked for a
///   precondition never gets an unguarded write. A malformed
///   `If-None-Match` is ignored (it never produces a 304) but, being
///   present, still disables `If-Modified-Since`.
/// * Invalid dates, and date fields given as lists, are ignored
///   (§13.1.3, §13.1.4).
pub(crate) fn evaluate(method: &Method, headers: &HeaderMap, current: Current<'_>) -> Evaluation {
    if headers.is_empty() || matches!(*method, Method::CONNECT | Method::OPTIONS | Method::TRACE) {
        return Evaluation::Proceed;
    }
    let get_or_head = matches!(*method, Method::GET | Method::HEAD);

    // Step 1: If-Match (strong comparison), else step 2: If-Unmodified-Since.
    if headers.contains_key(IF_MATCH) {
        let holds = match match_list(headers.get_all(IF_MATCH), current.etag, true) {
            TagList::Any => current.exists,
            TagList::Tags { matched } => matched && current.exists,
            TagList::Malformed => false,
        };
        if !holds {
            return Evaluation::PreconditionFailed;
        }
    } else if let Some(date) = HttpDate::from_single_line(headers.get_all(IF_UNMODIFIED_SINCE))
        && let Some(last_modified) = current.last_modified
        && last_modified > date
    {
        return Evaluation::PreconditionFailed;
    }

    // Step 3: If-None-Match (weak comparison), else step 4:
    // If-Modified-Since for GET and HEAD.
    if headers.contains_key(IF_NONE_MATCH) {
        let matched = match match_list(headers.get_all(IF_NONE_MATCH), current.etag, false) {
            TagList::Any => current.exists,
            TagList::Tags { matched } => matched && current.exists,
            TagList::Malformed => false,
        };
        if matched {
            return if get_or_head {
                Evaluation::NotModified
            } else {
                Evaluation::PreconditionFailed
            };
        }
    } else if get_or_head
        && let Some(date) = HttpDate::from_single_line(headers.get_all(IF_MODIFIED_SINCE))
        && let Some(last_modified) = current.last_modified
        && last_modified <= date
    {
        return Evaluation::NotModified;
    }
    Evaluation::Proceed
}

/// The fields a 304 drops whenever present: the representation metadata of
/// RFC 9110 §8 that describes content the 304 does not have
/// (`Content-Type`, `Content-Encoding`, `Content-Language`,
/// `Content-Length`), the framing of that content (`Content-Range`,
/// `Transfer-Encoding`, `Trailer`) and its digest (`Content-Digest`,
/// RFC 9530). `Content-Location` and `ETag` are representation metadata
/// that §15.4.5 lists, so they stay.
const DROP_ON_304: [HeaderName; 8] = [
    CONTENT_TYPE,
    CONTENT_ENCODING,
    CONTENT_LANGUAGE,
    CONTENT_LENGTH,
    CONTENT_RANGE,
    TRANSFER_ENCODING,
    TRAILER,
    HeaderName::from_static("content-digest"),
];

/// Removes the representation metadata a 304 should not carry
/// (RFC 9110 §15.4.5): the fields of [`DROP_ON_304`], and `Last-Modified`
/// when there is an `ETag` (it "might be useful if the response does not
/// have an ETag field"). Every other field stays: `Cache-Control`, `Vary`,
/// `Set-Cookie` and the other fields §15.4.5 lists, and fields that are no
/// representation metadata at all (CORS, `Link`, `Age`, security headers,
/// custom ones), which a client still needs on a 304.
///
/// `Content-Length` always goes: a 304 may only carry the 200's, and
/// dropping it is always allowed.
pub(crate) fn keep_on_304(headers: &mut HeaderMap) {
    for name in &DROP_ON_304 {
        headers.remove(name);
    }
    if headers.contains_key(ETAG) {
        headers.remove(LAST_MODIFIED);
    }
}

#[cfg(test)]
mod tests;
