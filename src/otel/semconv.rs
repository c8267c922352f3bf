//! Attribute names and the small parsers that turn requests and responses
//! into semantic-convention values.

use std::borrow::Cow;

use http::{HeaderMap, Method, Request, StatusCode, Version};
use opentelemetry::Key;
use opentelemetry_semantic_conventions::attribute;

use crate::rejection::GrpcProtocol;

// Stable attribute names come from `opentelemetry-semantic-conventions`
// (the release matching our `opentelemetry`).
pub(crate) const HTTP_REQUEST_METHOD: Key = Key::from_static_str(attribute::HTTP_REQUEST_METHOD);
pub(crate) const HTTP_REQUEST_METHOD_ORIGINAL: Key =
    Key::from_static_str(attribute::HTTP_REQUEST_METHOD_ORIGINAL);
pub(crate) const HTTP_RESPONSE_STATUS_CODE: Key =
    Key::from_static_str(attribute::HTTP_RESPONSE_STATUS_CODE);
pub(crate) const HTTP_ROUTE: Key = Key::from_static_str(attribute::HTTP_ROUTE);
pub(crate) const URL_PATH: Key = Key::from_static_str(attribute::URL_PATH);
pub(crate) const URL_SCHEME: Key = Key::from_static_str(attribute::URL_SCHEME);
pub(crate) const ERROR_TYPE: Key = Key::from_static_str(attribute::ERROR_TYPE);
pub(crate) const SERVER_ADDRESS: Key = Key::from_static_str(attribute::SERVER_ADDRESS);
pub(crate) const SERVER_PORT: Key = Key::from_static_str(attribute::SERVER_PORT);
pub(crate) const USER_AGENT_ORIGINAL: Key = Key::from_static_str(attribute::USER_AGENT_ORIGINAL);
pub(crate) const NETWORK_PROTOCOL_VERSION: Key =
    Key::from_static_str(attribute::NETWORK_PROTOCOL_VERSION);
// Copied by hand: in opentelemetry-semantic-conventions 0.33 these are
// behind its `semconv_experimental` feature (`rpc.system`, `rpc.service`
// and `rpc.grpc.status_code` also deprecated there, for `rpc.system.name`,
// a fully-qualified `rpc.method` and `rpc.response.status_code`). They are the names of the RPC semantic
// conventions this layer follows; switching to the new ones is a change of
// what is emitted, for its own release.
pub(crate) const RPC_SYSTEM: Key = Key::from_static_str("rpc.system");
pub(crate) const RPC_SERVICE: Key = Key::from_static_str("rpc.service");
pub(crate) const RPC_METHOD: Key = Key::from_static_str("rpc.method");
pub(crate) const RPC_METHOD_ORIGINAL: Key = Key::from_static_str("rpc.method_original");
pub(crate) const RPC_GRPC_STATUS_CODE: Key = Key::from_static_str("rpc.grpc.status_code");
/// Attribute carrying the request's correlation ID on the server span.
pub const CORRELATION_ID: &str = "correlation_id";

/// `http.request.method`: the known methods as they are, anything else
/// `_OTHER` (HTTP semconv); the second value is the name used in the span
/// name (`HTTP` for `_OTHER`).
pub(crate) fn method(method: &Method) -> (&'static str, &'static str) {
    let known = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => return ("_OTHER", "HTTP"),
    };
    (known, known)
}

/// `network.protocol.version`.
pub(crate) fn protocol_version(version: Version) -> Option<&'static str> {
    Some(match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => return None,
    })
}

/// `server.address` and `server.port` from the request target (HTTP/2
/// `:authority`) or else the `Host` header.
pub(crate) fn server_address<B>(request: &Request<B>) -> Option<(String, Option<u16>)> {
    let authority = match request.uri().authority() {
        Some(authority) => authority.clone(),
        None => request
            .headers()
            .get(http::header::HOST)?
            .to_str()
            .ok()?
            .parse::<http::uri::Authority>()
            .ok()?,
    };
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host.to_owned(), authority.port_u16()))
}

/// `error.type` for a 5xx status: the code as text.
pub(crate) fn status_error_type(status: StatusCode) -> Cow<'static, str> {
    Cow::Borrowed(match status.as_u16() {
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return Cow::Owned(status.as_str().to_owned()),
    })
}

/// Whether `template` is a catch-all mounted at the gRPC service of `path`
/// (`/pkg.Greeter/{*rest}` for `/pkg.Greeter/SayHello`; `*rest` before axum
/// 0.8): how a gRPC service is mounted in axum. It says nothing about the
/// method. A catch-all elsewhere (`/{*path}`) is an ordinary template.
pub(crate) fn is_service_catch_all(template: &str, path: &str) -> bool {
    let Some((prefix, last)) = template.rsplit_once('/') else {
        return false;
    };
    let catch_all = (last.starts_with("{*") && last.ends_with('}')) || last.starts_with('*');
    catch_all
        && !prefix.is_empty()
        && path
            .rsplit_once('/')
            .is_some_and(|(service, _)| service == prefix)
}

/// `rpc.service` and `rpc.method` of a gRPC path `/package.Service/Method`:
/// exactly two segments, the service one or more protobuf identifiers
/// (`[A-Za-z_][A-Za-z0-9_]*`) joined by `.`, the method one identifier.
pub(crate) fn grpc_method(path: &str) -> Option<(&str, &str)> {
    fn identifier(s: &str) -> bool {
        s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (service.split('.').all(identifier) && identifier(method)).then_some((service, method))
}

/// Whether a response head is a gRPC server's answer to the call (HTTP 200
/// with a gRPC content type or a `grpc-status`), as opposed to a router's
/// 404/405, a service error, or a rejection by a tower-edge layer (which
/// answers before any method is looked up).
pub(crate) fn answered_by_grpc_server(parts: &http::response::Parts) -> bool {
    parts.status == StatusCode::OK
        && (parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|ct| GrpcProtocol::of_media_type(ct.as_bytes()).is_some())
            || parts.headers.contains_key("grpc-status"))
        && parts
            .extensions
            .get::<crate::decision::Decision>()
            .is_none_or(|decision| !decision.is_answer())
}

/// The `grpc-status` of a response (in its headers for trailers-only
/// responses, or in trailers).
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    value.parse().ok().filter(|&code| code <= 16)
}

/// Whether a gRPC status marks the server span as an error (RPC semconv:
/// UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE,
/// DATA_LOSS).
pub(crate) fn grpc_server_error(code: u16) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// The reason an auth failure is counted under, if the response is one:
/// a 401, a 403 with `WWW-Authenticate`, or a 400 whose challenge says
/// `error="invalid_request"` (RFC 6750 §3.1).
pub(crate) fn auth_failure(status: StatusCode, headers: &HeaderMap) -> Option<&'static str> {
    let challenges = headers.get_all(http::header::WWW_AUTHENTICATE);
    let mut any = false;
    let mut reason = None;
    for value in challenges {
        any = true;
        if let Some(error) = auth_error_param(value.as_bytes()) {
            reason = Some(known_auth_error(error));
            break;
        }
    }
    match status {
        StatusCode::UNAUTHORIZED if !any => Some("unknown"),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if any => {
            Some(reason.unwrap_or("missing_credentials"))
        }
        StatusCode::BAD_REQUEST if reason == Some("invalid_request") => reason,
        _ => None,
    }
}

fn known_auth_error(error: &[u8]) -> &'static str {
    match error {
        b"invalid_request" => "invalid_request",
        b"invalid_token" => "invalid_token",
        b"insufficient_scope" => "insufficient_scope",
        // Keep the attribute's values bounded.
        _ => "other",
    }
}

/// The value of the `error` auth-param of a challenge (quoted or token).
fn auth_error_param(value: &[u8]) -> Option<&[u8]> {
    let name = b"error";
    let mut from = 0;
    while let Some(offset) = find(&value[from..], name) {
        let start = from + offset;
        from = start + name.len();
        let boundary = start == 0 || matches!(value[start - 1], b' ' | b'\t' | b',');
        if !boundary {
            continue;
        }
        let rest = trim_start(&value[from..]);
        let Some(rest) = rest.strip_prefix(b"=") else {
            continue;
        };
        let rest = trim_start(rest);
        return Some(match rest.strip_prefix(b"\"") {
            Some(quoted) => {
                let end = quoted.iter().position(|&b| b == b'"')?;
                &quoted[..end]
            }
            None => {
                let end = rest
                    .iter()
                    .position(|&b| matches!(b, b',' | b' ' | b'\t'))
                    .unwrap_or(rest.len());
                &rest[..end]
            }
        });
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// The name of the first policy in `RateLimit-Policy` (else `RateLimit`):
/// the key of its first list member, an sf-string or a token
/// (draft-ietf-httpapi-ratelimit-headers).
pub(crate) fn rate_limit_policy(headers: &HeaderMap) -> Cow<'static, str> {
    ["ratelimit-policy", "ratelimit"]
        .into_iter()
        .find_map(|name| first_policy_name(headers.get(name)?.as_bytes()))
        .map(|name| Cow::Owned(name.to_owned()))
        .unwrap_or(Cow::Borrowed("unknown"))
}

fn first_policy_name(value: &[u8]) -> Option<&str> {
    let value = trim_start(value);
    let end = value
        .iter()
        .position(|&b| matches!(b, b';' | b','))
        .unwrap_or(value.len());
    let mut item = &value[..end];
    while let [rest @ .., b' ' | b'\t'] = item {
        item = rest;
    }
    let name = match item.strip_prefix(b"\"") {
        Some(quoted) => quoted.strip_suffix(b"\"")?,
        None => item,
    };
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/*".contains(b));
    if ok {
        std::str::from_utf8(name).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn auth_failure_reasons() {
        // RFC 6750 §3: no `error` attribute when credentials were missing.
        let cases = [
            (
                401,
                vec![("www-authenticate", r#"Bearer realm="api""#)],
                Some("missing_credentials"),
            ),
            (
                401,
                vec![(
                    "www-authenticate",
                    r#"Bearer realm="api", error_description="x", error="invalid_token""#,
                )],
                Some("invalid_token"),
            ),
            (
                403,
                vec![(
                    "www-authenticate",
                    r#"Bearer error="insufficient_scope", scope="a""#,
                )],
                Some("insufficient_scope"),
            ),
            (
                401,
                vec![("www-authenticate", "Bearer error=invalid_request")],
                Some("invalid_request"),
            ),
            (
                401,
                vec![("www-authenticate", r#"Bearer error="made_up""#)],
                Some("other"),
            ),
            (401, vec![], Some("unknown")),
            (403, vec![], None),
            (200, vec![], None),
            // The JWT layer's 400s (two tokens, `Bearer` without one).
            (
                400,
                vec![(
                    "www-authenticate",
                    r#"Bearer realm="api", error="invalid_request""#,
                )],
                Some("invalid_request"),
            ),
            (400, vec![], None),
            (
                400,
                vec![("www-authenticate", r#"Bearer error="invalid_token""#)],
                None,
            ),
        ];
        for (status, pairs, expected) in cases {
            let got = auth_failure(StatusCode::from_u16(status).unwrap(), &headers(&pairs));
            assert_eq!(got, expected, "{status} {pairs:?}");
        }
    }

    #[test]
    fn policy_names() {
        // draft-ietf-httpapi-ratelimit-headers: `"name";q=..;w=..` as RFC 9651 list.
        let cases = [
            (
                vec![(
                    "ratelimit-policy",
                    r#""per-ip";q=100;w=60, "per-user";q=10"#,
                )],
                "per-ip",
            ),
            (vec![("ratelimit", r#""burst";r=0;t=3"#)], "burst"),
            (vec![("ratelimit", "token;r=0;t=3")], "token"),
            (vec![("ratelimit", r#""bad name";r=0"#)], "unknown"),
            (vec![], "unknown"),
        ];
        for (pairs, expected) in cases {
            assert_eq!(rate_limit_policy(&headers(&pairs)), expected, "{pairs:?}");
        }
    }

    #[test]
    fn grpc_paths_and_codes() {
        assert_eq!(
            grpc_method("/pkg.Greeter/SayHello"),
            Some(("pkg.Greeter", "SayHello"))
        );
        assert_eq!(grpc_method("/Svc/_m2"), Some(("Svc", "_m2")));
        // Exactly two segments of protobuf identifiers, nothing else.
        for bad in [
            "/a/b/c",
            "/",
            "//M",
            "/Svc/",
            "/users/42",
            "/pkg.Svc/1m",
            "/pkg..Svc/M",
            "/.Svc/M",
            "/pkg.Svc./M",
            "/pkg.Svc/Say-Hello",
            "/pkg.Svc/Say%48ello",
            "/pkg.Svc/M/",
            "pkg.Svc/M",
        ] {
            assert_eq!(grpc_method(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_status(&headers(&[("grpc-status", "8")])), Some(8));
        assert_eq!(grpc_status(&headers(&[("grpc-status", "99")])), None);
        // RPC semconv: server span error only for 2, 4, 12, 13, 14, 15.
        let errors: Vec<u16> = (0..=16).filter(|&c| grpc_server_error(c)).collect();
        assert_eq!(errors, [2, 4, 12, 13, 14, 15]);
    }
}
