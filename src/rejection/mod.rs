//! One place that builds every error response of every layer.
//!
//! Layers in this crate never fail a request with a service error (hyper
//! would drop the connection); they answer with a response built here, so all
//! of them look alike:
//!
//! * **HTTP** clients get an RFC 9457 `application/problem+json` document
//!   with `type`, `title`, `status` and `detail`, plus the headers the status
//!   requires (`WWW-Authenticate`, `Retry-After`...) and
//!   `Cache-Control: no-store`.
//! * **gRPC** clients (`application/grpc[+subtype]` over HTTP/2, and
//!   gRPC-Web over any version; see [`GrpcProtocol`]) get a *trailers-only*
//!   response: HTTP 200, the request's own gRPC content type, `grpc-status`
//!   and a percent-encoded `grpc-message`, `Cache-Control: no-store`, and an
//!   empty body. A gRPC client never sees 401, 403 or 429, which its
//!   library would map to `UNKNOWN` or `UNAVAILABLE`. Anything else that
//!   merely looks like gRPC (`application/grpcfoo`, `application/grpc` over
//!   HTTP/1.1) gets the HTTP answer: a 200 to a client that is not gRPC
//!   would read as "allowed" to a forward-auth proxy.
//!
//! The body format is replaceable through one trait, [`RejectionBody`]. The
//! status and the required headers are set by the layer, so a custom body can
//! never lose them.
//!
//! # Example: a plain-text body instead of problem+json
//!
//! ```
//! use bytes::Bytes;
//! use http::{HeaderValue, StatusCode};
//! use tower_edge::rejection::{Problem, RenderedBody, Rejections};
//!
//! let rejections = Rejections::new(|problem: &Problem| RenderedBody {
//!     content_type: HeaderValue::from_static("text/plain; charset=utf-8"),
//!     body: Bytes::from(format!("{}: {}", problem.status().as_u16(), problem.title())),
//! });
//!
//! let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS)
//!     .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
//! let request = http::Request::new(());
//! let response = rejections.respond::<http_body_util::Empty<Bytes>, _>(problem, &request);
//! assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
//! // The required headers are still there.
//! assert_eq!(response.headers()["retry-after"], "3");
//! assert_eq!(response.headers()["cache-control"], "no-store");
//! assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;
use crate::decision::Decision;

mod grpc;

pub(crate) use grpc::grpc_content_type;
pub use grpc::{GrpcCode, GrpcProtocol, is_grpc};

/// The 401 for a request that reached something needing a token (a route,
/// an extractor) without one: the authentication layer let it through in
/// optional mode, or its token names no subject.
#[cfg(any(feature = "jwt-auth", feature = "axum"))]
pub(crate) fn token_required(challenge: HeaderValue) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED)
        .with_detail("a bearer token is required")
        .with_header(http::header::WWW_AUTHENTICATE, challenge)
        .with_decision(Decision::new(
            crate::decision::EdgeLayer::JwtAuth,
            crate::decision::Reason::MissingCredentials,
        ))
}

/// What went wrong, independent of how it is rendered.
///
/// Members follow RFC 9457: `type` (a URI, `about:blank` by default),
/// `title` (defaults to the status' reason phrase), `status` and an optional
/// `detail`. Headers added with [`Problem::with_header`] are *required*
/// headers: they are sent whatever the body format. A [`Decision`] added
/// with [`Problem::with_decision`] goes into the response extensions, on
/// HTTP and gRPC answers alike.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    type_uri: Cow<'static, str>,
    title: Cow<'static, str>,
    detail: Option<Cow<'static, str>>,
    grpc_code: GrpcCode,
    headers: HeaderMap,
    decision: Option<Decision>,
}

impl Problem {
    /// A problem with the given status, `type` `about:blank`, the status'
    /// reason phrase as title and the matching gRPC code.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            type_uri: Cow::Borrowed("about:blank"),
            title: Cow::Borrowed(status.canonical_reason().unwrap_or("Error")),
            detail: None,
            grpc_code: GrpcCode::from_http_status(status),
            headers: HeaderMap::new(),
            decision: None,
        }
    }

    /// Sets the `type` member (a URI reference identifying the problem type).
    pub fn with_type(mut self, type_uri: impl Into<Cow<'static, str>>) -> Self {
        self.type_uri = type_uri.into();
        self
    }

    /// Sets the `title` member (a short, human-readable summary).
    pub fn with_title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the `detail` member (an explanation specific to this occurrence).
    /// It is also the `grpc-message` of gRPC rejections.
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Overrides the gRPC status code derived from the HTTP status.
    pub fn with_grpc_code(mut self, code: GrpcCode) -> Self {
        self.grpc_code = code;
        self
    }

    /// Adds a header the response must carry whatever the body format
    /// (`WWW-Authenticate`, `Retry-After`, `RateLimit`...). Appends, so a
    /// header may be given several times.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Says which tower-edge layer answered and why: the [`Decision`] is
    /// put in the extensions of the response (HTTP or gRPC), for the layers
    /// and metrics outside to read. Every layer of this crate sets one on
    /// the problems it answers with.
    pub fn with_decision(mut self, decision: Decision) -> Self {
        self.decision = Some(decision);
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `type` member.
    pub fn type_uri(&self) -> &str {
        &self.type_uri
    }

    /// The `title` member.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The `detail` member, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The gRPC status code used for gRPC requests.
    pub fn grpc_code(&self) -> GrpcCode {
        self.grpc_code
    }

    /// The required headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The layer's decision, if one was set.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_ref()
    }
}

/// A rendered rejection body and its media type.
#[derive(Debug, Clone)]
pub struct RenderedBody {
    /// The `Content-Type` of `body`.
    pub content_type: HeaderValue,
    /// The body bytes.
    pub body: Bytes,
}

/// Renders the body of an HTTP rejection.
///
/// Implement it (or pass a closure `Fn(&Problem) -> RenderedBody`) to replace
/// the default RFC 9457 [`ProblemJson`] body. The status code and required
/// headers are not yours to change: the layer sets them.
pub trait RejectionBody: Send + Sync + 'static {
    /// Renders `problem` into a body.
    fn render(&self, problem: &Problem) -> RenderedBody;
}

impl<F> RejectionBody for F
where
    F: Fn(&Problem) -> RenderedBody + Send + Sync + 'static,
{
    fn render(&self, problem: &Problem) -> RenderedBody {
        self(problem)
    }
}

/// The default body: RFC 9457 `application/problem+json`.
///
/// ```json
/// {"type":"about:blank","title":"Too Many Requests","status":429,"detail":"..."}
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemJson;

const PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

impl RejectionBody for ProblemJson {
    fn render(&self, problem: &Problem) -> RenderedBody {
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            #[serde(rename = "type")]
            type_uri: &'a str,
            title: &'a str,
            status: u16,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a str>,
        }
        let doc = Doc {
            type_uri: problem.type_uri(),
            title: problem.title(),
            status: problem.status().as_u16(),
            detail: problem.detail(),
        };
        // Serialising a struct of strings and an integer cannot fail.
        let body = serde_json::to_vec(&doc).unwrap_or_default();
        RenderedBody {
            content_type: PROBLEM_JSON,
            body: Bytes::from(body),
        }
    }
}

/// Builds rejection responses; every layer holds one (cheap to clone).
///
/// The default renders [`ProblemJson`]. Give your own [`RejectionBody`] to
/// [`Rejections::new`] and hand the result to each layer's builder.
#[derive(Clone)]
pub struct Rejections {
    body: Arc<dyn RejectionBody>,
}

impl Default for Rejections {
    fn default() -> Self {
        Self::new(ProblemJson)
    }
}

impl fmt::Debug for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejections").finish_non_exhaustive()
    }
}

impl Rejections {
    /// Rejections rendered by `body`.
    pub fn new(body: impl RejectionBody) -> Self {
        Self {
            body: Arc::new(body),
        }
    }

    /// The response for `problem`, shaped for `request`: trailers-only
    /// gRPC when the request is a gRPC or gRPC-Web call (see
    /// [`GrpcProtocol`]), an HTTP problem response otherwise.
    pub fn respond<B, R>(
        &self,
        problem: Problem,
        request: &http::Request<R>,
    ) -> Response<ResponseBody<B>> {
        self.respond_as(
            problem,
            grpc_content_type(request.version(), request.headers()).cloned(),
        )
    }

    /// [`respond`](Self::respond) with the request's gRPC content type
    /// taken beforehand (`None`: not gRPC).
    pub(crate) fn respond_as<B>(
        &self,
        problem: Problem,
        grpc_content_type: Option<HeaderValue>,
    ) -> Response<ResponseBody<B>> {
        match grpc_content_type {
            Some(content_type) => grpc::grpc_response(problem, content_type),
            None => self.http_response(problem),
        }
    }

    /// The HTTP problem response for `problem`, whatever the request.
    pub fn http_response<B>(&self, problem: Problem) -> Response<ResponseBody<B>> {
        let rendered = self.body.render(&problem);
        let mut response = Response::new(ResponseBody::full(rendered.body));
        *response.status_mut() = problem.status;
        if let Some(decision) = problem.decision {
            response.extensions_mut().insert(decision);
        }
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, rendered.content_type);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        extend_replacing(headers, problem.headers);
        response
    }
}

/// Moves `extra` into `headers`; a name present in `extra` replaces what
/// `headers` had, repeated names in `extra` are all kept.
fn extend_replacing(headers: &mut HeaderMap, extra: HeaderMap) {
    let mut last: Option<HeaderName> = None;
    for (name, value) in extra {
        match name {
            Some(name) => {
                headers.insert(name.clone(), value);
                last = Some(name);
            }
            None => {
                if let Some(name) = &last {
                    headers.append(name.clone(), value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{EdgeLayer, Reason};
    use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
    use http_body::Body as _;
    use http_body_util::{BodyExt, Empty};

    type Body = ResponseBody<Empty<Bytes>>;

    /// A gRPC call: the content type over HTTP/2.
    fn grpc_request(content_type: &'static str) -> http::Request<()> {
        http::Request::builder()
            .version(http::Version::HTTP_2)
            .header(CONTENT_TYPE, content_type)
            .body(())
            .unwrap()
    }

    async fn body_json(response: Response<Body>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    // RFC 9457 §3: type, title, status, detail members; media type
    // application/problem+json.
    #[tokio::test]
    async fn http_rejection_is_problem_json_with_required_headers() {
        let problem = Problem::new(StatusCode::UNAUTHORIZED)
            .with_detail("token \"expired\"")
            .with_header(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"api\""),
            );
        let response: Response<Body> =
            Rejections::default().respond(problem, &http::Request::new(()));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer realm=\"api\"");
        let json = body_json(response).await;
        assert_eq!(
            json,
            serde_json::json!({
                "type": "about:blank",
                "title": "Unauthorized",
                "status": 401,
                "detail": "token \"expired\"",
            })
        );
    }

    #[tokio::test]
    async fn detail_is_omitted_when_absent_and_type_title_customisable() {
        let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS)
            .with_type("https://example.com/probs/rate-limited")
            .with_title("Slow down");
        let response: Response<Body> = Rejections::default().http_response(problem);
        let json = body_json(response).await;
        assert_eq!(json["type"], "https://example.com/probs/rate-limited");
        assert_eq!(json["title"], "Slow down");
        assert_eq!(json["status"], 429);
        assert!(json.get("detail").is_none());
    }

    #[test]
    fn required_header_may_override_default_cache_control_and_repeat() {
        let problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_header(CACHE_CONTROL, HeaderValue::from_static("no-cache"))
            .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
            .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        let response: Response<Body> = Rejections::default().http_response(problem);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
        let auth: Vec<_> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(auth, ["Bearer", "Basic"]);
    }

    // gRPC over HTTP/2 protocol: trailers-only response, HTTP 200,
    // grpc-status, percent-encoded grpc-message, request's content-type.
    #[tokio::test]
    async fn grpc_rejection_is_trailers_only_with_status_and_echoed_content_type() {
        let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS).with_detail("rate limited");
        let response: Response<Body> =
            Rejections::default().respond(problem, &grpc_request("application/grpc+proto"));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc+proto");
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(response.headers()["grpc-message"], "rate limited");
        // RFC 9111 §5.2.2.5: no shared cache keeps a rejection, gRPC or not.
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert!(response.body().is_end_stream());
        assert!(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .is_empty()
        );
    }

    #[test]
    fn grpc_codes_follow_http_status() {
        let cases = [
            (StatusCode::UNAUTHORIZED, "16"),
            (StatusCode::FORBIDDEN, "7"),
            (StatusCode::TOO_MANY_REQUESTS, "8"),
            (StatusCode::SERVICE_UNAVAILABLE, "14"),
            (StatusCode::BAD_REQUEST, "3"),
            (StatusCode::INTERNAL_SERVER_ERROR, "13"),
        ];
        for (status, code) in cases {
            let response: Response<Body> = Rejections::default()
                .respond(Problem::new(status), &grpc_request("application/grpc"));
            assert_eq!(response.status(), StatusCode::OK, "{status}");
            assert_eq!(response.headers()["grpc-status"], code, "{status}");
        }
        let overridden =
            Problem::new(StatusCode::BAD_REQUEST).with_grpc_code(GrpcCode::Unauthenticated);
        let response: Response<Body> =
            Rejections::default().respond(overridden, &grpc_request("application/grpc"));
        assert_eq!(response.headers()["grpc-status"], "16");
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        let problem =
            Problem::new(StatusCode::UNAUTHORIZED).with_detail("bad token: 100% wrong\r\nx\tü");
        let response: Response<Body> =
            Rejections::default().respond(problem, &grpc_request("application/grpc"));
        assert_eq!(
            response.headers()["grpc-message"],
            "bad token: 100%25 wrong%0D%0Ax%09%C3%BC"
        );
        // Without a detail, the title is the message.
        let response: Response<Body> = Rejections::default().respond(
            Problem::new(StatusCode::FORBIDDEN),
            &grpc_request("application/grpc"),
        );
        assert_eq!(response.headers()["grpc-message"], "Forbidden");
    }

    #[test]
    fn the_decision_is_in_the_extensions_of_http_and_grpc_answers() {
        let decision = Decision::new(EdgeLayer::RateLimit, Reason::RateLimited).with_policy("p");
        let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS).with_decision(decision.clone());
        assert_eq!(problem.decision(), Some(&decision));
        let http: Response<Body> = Rejections::default().http_response(problem.clone());
        assert_eq!(http.extensions().get::<Decision>(), Some(&decision));
        let grpc: Response<Body> =
            Rejections::default().respond(problem, &grpc_request("application/grpc"));
        assert_eq!(grpc.extensions().get::<Decision>(), Some(&decision));
        // None set, none sent.
        let plain: Response<Body> =
            Rejections::default().http_response(Problem::new(StatusCode::BAD_REQUEST));
        assert!(plain.extensions().get::<Decision>().is_none());
    }

    #[tokio::test]
    async fn custom_body_keeps_status_and_required_headers() {
        let rejections = Rejections::new(|p: &Problem| RenderedBody {
            content_type: HeaderValue::from_static("text/plain"),
            body: Bytes::from(p.title().to_owned()),
        });
        let problem = Problem::new(StatusCode::TOO_MANY_REQUESTS)
            .with_header(RETRY_AFTER, HeaderValue::from_static("7"));
        let response: Response<Body> = rejections.respond(problem.clone(), &http::Request::new(()));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[RETRY_AFTER], "7");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[CONTENT_TYPE], "text/plain");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "Too Many Requests");
        // gRPC requests still get the trailers-only shape, not the custom body.
        let response: Response<Body> =
            rejections.respond(problem, &grpc_request("application/grpc"));
        assert_eq!(response.headers()["grpc-status"], "8");
        assert!(response.body().is_end_stream());
    }
}
