//! Which requests get gRPC-shaped rejections, and how those look: see
//! [`GrpcProtocol`].

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode, Version};
use percent_encoding::{AsciiSet, CONTROLS};

use super::{Problem, extend_replacing};
use crate::body::ResponseBody;

/// The gRPC status codes our layers answer with.
///
/// Codes follow `google.rpc.Code`; the numeric value is what goes into the
/// `grpc-status` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 2: an error that maps to no other code.
    Unknown,
    /// 3: the client sent an invalid request.
    InvalidArgument,
    /// 7: authenticated, but not allowed (missing scope).
    PermissionDenied,
    /// 8: a quota is exhausted (rate limited).
    ResourceExhausted,
    /// 9: a precondition of the call failed.
    FailedPrecondition,
    /// 10: aborted by a concurrency conflict (the idempotency layer: the
    /// first call with this key is still running).
    Aborted,
    /// 13: an internal error.
    Internal,
    /// 14: the service is unavailable (e.g. the rate-limit store is down and
    /// the layer fails closed).
    Unavailable,
    /// 16: missing or invalid credentials.
    Unauthenticated,
}

impl GrpcCode {
    /// The numeric code as sent in `grpc-status`.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Unknown => 2,
            Self::InvalidArgument => 3,
            Self::PermissionDenied => 7,
            Self::ResourceExhausted => 8,
            Self::FailedPrecondition => 9,
            Self::Aborted => 10,
            Self::Internal => 13,
            Self::Unavailable => 14,
            Self::Unauthenticated => 16,
        }
    }

    /// The gRPC code that corresponds to an HTTP status, as the gRPC
    /// HTTP-to-gRPC mapping suggests for the statuses our layers produce.
    pub fn from_http_status(status: StatusCode) -> Self {
        match status {
            StatusCode::BAD_REQUEST => Self::InvalidArgument,
            StatusCode::UNAUTHORIZED => Self::Unauthenticated,
            StatusCode::FORBIDDEN => Self::PermissionDenied,
            StatusCode::TOO_MANY_REQUESTS => Self::ResourceExhausted,
            StatusCode::PRECONDITION_FAILED => Self::FailedPrecondition,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            s if s.is_server_error() => Self::Internal,
            _ => Self::Unknown,
        }
    }

    fn header_value(self) -> HeaderValue {
        match self {
            Self::Unknown => HeaderValue::from_static("2"),
            Self::InvalidArgument => HeaderValue::from_static("3"),
            Self::PermissionDenied => HeaderValue::from_static("7"),
            Self::ResourceExhausted => HeaderValue::from_static("8"),
            Self::FailedPrecondition => HeaderValue::from_static("9"),
            Self::Aborted => HeaderValue::from_static("10"),
            Self::Internal => HeaderValue::from_static("13"),
            Self::Unavailable => HeaderValue::from_static("14"),
            Self::Unauthenticated => HeaderValue::from_static("16"),
        }
    }
}

/// The gRPC protocol a request speaks, which decides how tower-edge's
/// layers answer it.
///
/// A rejection is shaped for gRPC only when the request really is a gRPC
/// call, because a gRPC rejection is an HTTP **200**: a forward-auth proxy
/// (nginx `auth_request`, Traefik ForwardAuth, Envoy `ext_authz`) or a naive
/// client takes any 2xx for "allowed", and a CDN may store it. So:
///
/// * **gRPC** (gRPC over HTTP/2 protocol spec, "Requests"): `content-type`
///   `application/grpc` or `application/grpc+<subtype>`, optionally with
///   parameters, on an HTTP/2 (or HTTP/3) request. gRPC needs HTTP/2
///   trailers, so the same content type over HTTP/1.x is not gRPC.
/// * **gRPC-Web** (gRPC-Web protocol, `PROTOCOL-WEB.md`):
///   `application/grpc-web`, `application/grpc-web+<subtype>`,
///   `application/grpc-web-text` and `application/grpc-web-text+<subtype>`,
///   over any HTTP version (browsers speak HTTP/1.1 too).
///
/// Type and subtype compare case-insensitively (RFC 9110 §8.3.1); anything
/// else (`application/grpcfoo`, `application/grpc+`, gRPC over HTTP/1.1)
/// gets the HTTP answer.
///
/// The rejection itself is *trailers-only* for both: HTTP 200, the
/// request's content type echoed, `grpc-status` and a percent-encoded
/// `grpc-message` in the response **headers**, an empty body. gRPC-Web has
/// no HTTP trailers (its trailers travel in a body frame), and a
/// trailers-only answer is the one form where the status sits in the
/// headers for both protocols, so a browser client reads it the same way.
/// Every gRPC rejection carries `Cache-Control: no-store` (RFC 9111
/// §5.2.2.5), like the HTTP ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrpcProtocol {
    /// gRPC over HTTP/2: `application/grpc[+subtype]`.
    Grpc,
    /// gRPC-Web, binary: `application/grpc-web[+subtype]`.
    GrpcWeb,
    /// gRPC-Web, base64 text: `application/grpc-web-text[+subtype]`.
    GrpcWebText,
}

impl GrpcProtocol {
    /// The protocol of a request with this HTTP version and these headers;
    /// `None` when the request is not gRPC and gets HTTP answers.
    ///
    /// ```
    /// use http::{HeaderMap, HeaderValue, Version, header::CONTENT_TYPE};
    /// use tower_edge::rejection::GrpcProtocol;
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
    /// assert_eq!(GrpcProtocol::of_request(Version::HTTP_2, &headers), Some(GrpcProtocol::Grpc));
    /// // gRPC needs HTTP/2: over HTTP/1.1 the same request gets HTTP answers.
    /// assert_eq!(GrpcProtocol::of_request(Version::HTTP_11, &headers), None);
    /// ```
    pub fn of_request(version: Version, headers: &HeaderMap) -> Option<Self> {
        Self::of_content_type(version, headers.get(CONTENT_TYPE)?)
    }

    /// The protocol a request's first `content-type` value names, on an
    /// HTTP request of `version`.
    pub(crate) fn of_content_type(version: Version, content_type: &HeaderValue) -> Option<Self> {
        let protocol = Self::of_media_type(content_type.as_bytes())?;
        match protocol {
            Self::Grpc if !matches!(version, Version::HTTP_2 | Version::HTTP_3) => None,
            protocol => Some(protocol),
        }
    }

    /// The protocol a media type names, whatever the HTTP version (for
    /// responses: a gRPC server's answer).
    pub(crate) fn of_media_type(value: &[u8]) -> Option<Self> {
        // RFC 9110 §8.3.1: media-type = type "/" subtype parameters, where
        // parameters start with OWS ";".
        let end = value.iter().position(|&b| b == b';').unwrap_or(value.len());
        let media_type = value[..end].trim_ascii();
        const BASE: &[u8] = b"application/grpc";
        if media_type.len() < BASE.len() || !media_type[..BASE.len()].eq_ignore_ascii_case(BASE) {
            return None;
        }
        let rest = &media_type[BASE.len()..];
        let (protocol, rest) = if let Some(rest) = strip_prefix_ignore_case(rest, b"-web-text") {
            (Self::GrpcWebText, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(rest, b"-web") {
            (Self::GrpcWeb, rest)
        } else {
            (Self::Grpc, rest)
        };
        match rest {
            [] => Some(protocol),
            // `+<subtype>`: a non-empty token (RFC 9110 §5.6.2).
            [b'+', subtype @ ..] if !subtype.is_empty() && subtype.iter().all(|&b| is_tchar(b)) => {
                Some(protocol)
            }
            _ => None,
        }
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (value.len() >= prefix.len() && value[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &value[prefix.len()..])
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a request is a gRPC or gRPC-Web call and gets gRPC-shaped
/// rejections (see [`GrpcProtocol`]).
pub fn is_grpc(version: Version, request_headers: &HeaderMap) -> bool {
    GrpcProtocol::of_request(version, request_headers).is_some()
}

/// The `content-type` of a gRPC request (see [`is_grpc`]), echoed on its
/// rejections.
pub(crate) fn grpc_content_type(version: Version, headers: &HeaderMap) -> Option<&HeaderValue> {
    let value = headers.get(CONTENT_TYPE)?;
    GrpcProtocol::of_content_type(version, value).map(|_| value)
}

/// Characters percent-encoded in `grpc-message`: everything outside
/// printable ASCII, and `%` itself (gRPC over HTTP/2 protocol spec).
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// The trailers-only answer to a gRPC request (see [`GrpcProtocol`]).
pub(super) fn grpc_response<B>(
    problem: Problem,
    content_type: HeaderValue,
) -> Response<ResponseBody<B>> {
    let mut response = Response::new(ResponseBody::empty());
    if let Some(decision) = problem.decision {
        response.extensions_mut().insert(decision);
    }
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("grpc-status", problem.grpc_code.header_value());
    let message = problem.detail.as_deref().unwrap_or(&problem.title);
    let encoded = percent_encoding::utf8_percent_encode(message, GRPC_MESSAGE).to_string();
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        headers.insert("grpc-message", value);
    }
    extend_replacing(headers, problem.headers);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::Rejections;
    use http_body_util::Empty;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        h
    }

    fn of(version: Version, content_type: &str) -> Option<GrpcProtocol> {
        GrpcProtocol::of_request(version, &headers(content_type))
    }

    // gRPC over HTTP/2 protocol spec, "Requests": Content-Type
    // "application/grpc" [("+proto" / "+json" / {custom})]; parameters per
    // RFC 9110 §8.3.1, type and subtype case-insensitive.
    #[test]
    fn grpc_is_its_media_type_over_http2() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+json",
            "Application/GRPC",
            "APPLICATION/GRPC+PROTO",
            "application/grpc; charset=utf-8",
            "application/grpc+proto ;x=y",
        ] {
            assert_eq!(of(Version::HTTP_2, ct), Some(GrpcProtocol::Grpc), "{ct}");
            assert_eq!(of(Version::HTTP_3, ct), Some(GrpcProtocol::Grpc), "{ct}");
        }
    }

    // Security review finding: a plain HTTP/1.1 client sending a gRPC
    // content type got a 200 rejection, which forward-auth proxies read as
    // "allowed". gRPC needs HTTP/2.
    #[test]
    fn grpc_over_http1_is_not_grpc() {
        for version in [Version::HTTP_09, Version::HTTP_10, Version::HTTP_11] {
            for ct in [
                "application/grpc",
                "APPLICATION/GRPC",
                "application/grpc+proto",
            ] {
                assert_eq!(of(version, ct), None, "{version:?} {ct}");
            }
        }
    }

    #[test]
    fn lookalikes_are_not_grpc_on_any_version() {
        for version in [Version::HTTP_11, Version::HTTP_2] {
            for ct in [
                "application/grpcfoo",
                "application/grpc+",
                "application/grpc+pro to",
                "application/grpc+proto/x",
                "application/grpc-webfoo",
                "application/grpc-web+",
                "application/grpc-web-textual",
                "application/grpc-",
                "application/gr",
                "application/json",
                "text/grpc",
                "xapplication/grpc",
            ] {
                assert_eq!(of(version, ct), None, "{version:?} {ct}");
            }
        }
        assert_eq!(
            GrpcProtocol::of_request(Version::HTTP_2, &HeaderMap::new()),
            None
        );
    }

    // gRPC-Web protocol (PROTOCOL-WEB.md): application/grpc-web[+proto],
    // application/grpc-web-text[+proto]; browsers use HTTP/1.1 as well.
    #[test]
    fn grpc_web_is_grpc_on_any_version() {
        for version in [Version::HTTP_11, Version::HTTP_2] {
            for (ct, protocol) in [
                ("application/grpc-web", GrpcProtocol::GrpcWeb),
                ("application/grpc-web+proto", GrpcProtocol::GrpcWeb),
                ("Application/gRPC-Web", GrpcProtocol::GrpcWeb),
                ("application/grpc-web-text", GrpcProtocol::GrpcWebText),
                ("application/grpc-web-text+proto", GrpcProtocol::GrpcWebText),
                (
                    "application/grpc-web-text; charset=utf-8",
                    GrpcProtocol::GrpcWebText,
                ),
            ] {
                assert_eq!(of(version, ct), Some(protocol), "{version:?} {ct}");
                assert!(is_grpc(version, &headers(ct)));
            }
        }
    }

    #[test]
    fn only_the_first_content_type_counts() {
        let mut h = headers("application/json");
        h.append(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        assert!(!is_grpc(Version::HTTP_2, &h));
    }

    #[test]
    fn grpc_web_rejection_is_trailers_only_with_status_in_headers() {
        let request = http::Request::builder()
            .version(Version::HTTP_11)
            .header(CONTENT_TYPE, "application/grpc-web-text+proto")
            .body(())
            .unwrap();
        let response = Rejections::default()
            .respond::<Empty<bytes::Bytes>, _>(Problem::new(StatusCode::UNAUTHORIZED), &request);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "application/grpc-web-text+proto"
        );
        assert_eq!(response.headers()["grpc-status"], "16");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn lookalike_gets_the_http_answer() {
        for (version, ct) in [
            (Version::HTTP_11, "application/grpcfoo"),
            (Version::HTTP_11, "APPLICATION/GRPC"),
            (Version::HTTP_11, "application/grpc"),
            (Version::HTTP_2, "application/grpcfoo"),
        ] {
            let request = http::Request::builder()
                .version(version)
                .header(CONTENT_TYPE, ct)
                .body(())
                .unwrap();
            let response = Rejections::default().respond::<Empty<bytes::Bytes>, _>(
                Problem::new(StatusCode::UNAUTHORIZED),
                &request,
            );
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{version:?} {ct}"
            );
            assert!(response.headers().get("grpc-status").is_none());
            assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        }
    }
}
