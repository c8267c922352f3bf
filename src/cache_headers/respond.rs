//! What the [`CacheHeaders`](super::CacheHeaders) service does to a
//! response (its [`ResponseFuture`]): `Cache-Control` and `Vary` from the rules (RFC 9111 §5.2,
//! RFC 9110 §12.5.5), a generated `ETag` (RFC 9110 §8.8.3), and the
//! request's preconditions evaluated against it (RFC 9110 §13.2.2): the
//! response as it is, a 304 or a 412.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, ETAG, LAST_MODIFIED};
use http::response::Parts;
use http::{HeaderValue, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::conditional::{self, Current, Evaluation};
use super::{Config, HttpDate, RequestCtx, etag, policy};
use crate::body::ResponseBody;
use crate::decision::{Decision, EdgeLayer, Reason};
use crate::rejection::Problem;

pin_project! {
    /// Response future of [`CacheHeaders`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
        ctx: Option<RequestCtx>,
        config: Arc<Config>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateOwn]
    enum State<F, B> {
        Waiting { #[pin] future: F },
        Buffering {
            #[pin]
            body: B,
            parts: Parts,
            first: Option<Bytes>,
            rest: Option<BytesMut>,
            len: u64,
        },
        Done,
    }
}

impl<F, B> ResponseFuture<F, B> {
    /// Waits for `future`, the inner service's answer.
    pub(super) fn new(future: F, ctx: Option<RequestCtx>, config: Arc<Config>) -> Self {
        Self {
            state: State::Waiting { future },
            ctx,
            config,
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Waiting { .. } => "waiting",
            State::Buffering { .. } => "buffering",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

enum Step<B> {
    Respond(Response<ResponseBody<B>>),
    Buffer(Parts, B),
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { future } => {
                    let response = ready!(future.poll(cx))?;
                    let Some(ctx) = this.ctx.as_ref() else {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(response.map(ResponseBody::new)));
                    };
                    match on_response(this.config, ctx, response) {
                        Step::Respond(response) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Ok(response));
                        }
                        Step::Buffer(parts, body) => {
                            this.state.set(State::Buffering {
                                body,
                                parts,
                                first: None,
                                rest: None,
                                len: 0,
                            });
                        }
                    }
                }
                StateProj::Buffering {
                    mut body,
                    parts: _,
                    first,
                    rest,
                    len,
                } => {
                    let max = this.config.max_etag_body;
                    let outcome = loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => {
                                let Ok(data) = frame.into_data() else {
                                    tracing::debug!(
                                        "dropping trailers of a body buffered for its ETag"
                                    );
                                    continue;
                                };
                                *len = len.saturating_add(data.len() as u64);
                                // Only the bytes actually sent decide: a body
                                // whose hint is stale (its total rather than
                                // what remains) still gets its tag.
                                if *len > max {
                                    // More than its exact size hint said,
                                    // past the cap: a bug of the inner
                                    // service, answered as one. Handing on
                                    // what was read would mean boxing every
                                    // buffered body (an allocation on every
                                    // tagged response).
                                    break Err(
                                        "the response body is longer than its exact size hint",
                                    );
                                }
                                if let Some(rest) = rest {
                                    rest.extend_from_slice(&data);
                                } else if let Some(head) = first.take() {
                                    // The hint only sizes the buffer, and
                                    // never past the cap (it may lie).
                                    let promised =
                                        len.saturating_add(body.size_hint().lower()).min(max);
                                    let capacity = usize::try_from(promised).unwrap_or(0);
                                    let mut joined = BytesMut::with_capacity(capacity);
                                    joined.extend_from_slice(&head);
                                    joined.extend_from_slice(&data);
                                    *rest = Some(joined);
                                } else {
                                    *first = Some(data);
                                }
                            }
                            Some(Err(_)) => break Err("the response body failed"),
                            None => {
                                let bytes = match rest.take() {
                                    Some(rest) => rest.freeze(),
                                    None => first.take().unwrap_or_default(),
                                };
                                break Ok(bytes);
                            }
                        }
                    };
                    let StateOwn::Buffering { parts, .. } =
                        this.state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state is buffering");
                    };
                    let ctx = this.ctx.as_ref().expect("buffering only with a context");
                    let response = match outcome {
                        Ok(bytes) => finish_buffered(this.config, ctx, parts, bytes),
                        Err(reason) => {
                            tracing::error!(reason, "cannot send the response");
                            this.config.rejections.http_response(
                                Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
                                    .with_detail("the response could not be produced")
                                    .with_decision(Decision::new(
                                        EdgeLayer::CacheHeaders,
                                        Reason::Internal,
                                    )),
                            )
                        }
                    };
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// Whether the request's preconditions are evaluated against a response
/// with this status: any 2xx (RFC 9110 §13.2.1), 206 included, since the
/// preconditions (§13.2.2 steps 1-4) come before the Range step.
fn evaluates_preconditions(status: StatusCode) -> bool {
    status.is_success()
}

/// Whether the layer may generate an `ETag` for a response with this
/// status: 2xx except 206 (a tag of a part would not be the tag of the
/// representation).
fn may_generate_etag(status: StatusCode) -> bool {
    status.is_success() && status != StatusCode::PARTIAL_CONTENT
}

/// Statuses that always get `no-store`: the auth errors (401, 403, 407)
/// and 429. They depend on who asks and when; a stored one would be served
/// to other clients or after the client may proceed.
fn is_never_stored(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED
            | StatusCode::FORBIDDEN
            | StatusCode::PROXY_AUTHENTICATION_REQUIRED
            | StatusCode::TOO_MANY_REQUESTS
    )
}

/// Sets `Cache-Control` and `Vary` from the rules and defaults.
fn apply_policy(config: &Config, ctx: &RequestCtx, parts: &mut Parts) {
    let status = parts.status;
    // A 304 carries what the 200 would have had (RFC 9110 §15.4.5).
    let rule_status = if status == StatusCode::NOT_MODIFIED {
        StatusCode::OK
    } else {
        status
    };
    let headers = &mut parts.headers;
    if is_never_stored(status) {
        // RFC 6585 §4, RFC 9111 §5.2.2.5: 429 and auth errors are
        // `no-store`, whatever a rule, the error default or the handler says.
        if !policy::has_no_store(headers.get_all(CACHE_CONTROL)) {
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        return;
    }
    let has_own = headers.contains_key(CACHE_CONTROL);
    let rule = config
        .rules
        .iter()
        .enumerate()
        .find(|(i, rule)| ctx.rules & (1 << i) != 0 && rule.matches_status(rule_status))
        .map(|(_, rule)| rule);
    match rule {
        Some(rule) => {
            if !has_own || rule.replace_existing {
                let value = if ctx.authorized {
                    &rule.authorized
                } else {
                    &rule.value
                };
                headers.insert(CACHE_CONTROL, value.clone());
            }
            policy::merge_vary(headers, &rule.vary_names, rule.vary.as_ref());
        }
        None if !has_own => {
            if status.is_client_error() || status.is_server_error() {
                headers.insert(CACHE_CONTROL, config.error_value.clone());
            } else if ctx.authorized {
                headers.insert(CACHE_CONTROL, config.authorized_value.clone());
            }
        }
        None => {}
    }
}

/// The response head arrived: set policies, then answer, or buffer the body
/// to hash it.
fn on_response<B>(config: &Config, ctx: &RequestCtx, response: Response<B>) -> Step<B>
where
    B: Body<Data = Bytes>,
{
    let (mut parts, body) = response.into_parts();
    apply_policy(config, ctx, &mut parts);
    let status = parts.status;

    if status == StatusCode::NOT_MODIFIED {
        // A handler's own 304 (e.g. from `Preconditions::check`).
        conditional::keep_on_304(&mut parts.headers);
        return Step::Respond(Response::from_parts(parts, ResponseBody::empty()));
    }

    // HEAD: hash only a body that is really there (a framework may hand us
    // the GET body); an empty one would give a tag the GET does not have.
    let min_len = if ctx.head { 1 } else { 0 };
    let hash = config.etag
        && ctx.safe
        && may_generate_etag(status)
        && !parts.headers.contains_key(ETAG)
        && !policy::has_no_store(parts.headers.get_all(CACHE_CONTROL))
        && body
            .size_hint()
            .exact()
            .is_some_and(|n| (min_len..=config.max_etag_body).contains(&n));
    if hash {
        return Step::Buffer(parts, body);
    }
    Step::Respond(evaluate_response(
        config,
        ctx,
        parts,
        ResponseBody::new(body),
    ))
}

/// The body was buffered: tag it, then answer.
fn finish_buffered<B>(
    config: &Config,
    ctx: &RequestCtx,
    mut parts: Parts,
    bytes: Bytes,
) -> Response<ResponseBody<B>> {
    let mut etag = config.make_etag.make_etag(&bytes);
    if let Some(coding) = parts.headers.get(CONTENT_ENCODING) {
        // RFC 9110 §8.8.3.3: the tag differs per encoding, and caches must
        // key on Accept-Encoding (Vary, RFC 9110 §12.5.5).
        etag = etag.with_suffix(coding.as_bytes());
        policy::merge_vary(&mut parts.headers, &[ACCEPT_ENCODING], None);
    }
    parts.headers.insert(ETAG, etag.into());
    evaluate_response(config, ctx, parts, ResponseBody::full(bytes))
}

/// Evaluates the request's preconditions against a 2xx response's own
/// validators (206 included): proceed with it, or turn it into a 304 or 412.
fn evaluate_response<B>(
    config: &Config,
    ctx: &RequestCtx,
    mut parts: Parts,
    body: ResponseBody<B>,
) -> Response<ResponseBody<B>> {
    if !ctx.preconditions.is_conditional() || !evaluates_preconditions(parts.status) {
        return Response::from_parts(parts, body);
    }
    let etag = parts
        .headers
        .get(ETAG)
        .and_then(|v| etag::parse_single(v.as_bytes()));
    let last_modified = parts
        .headers
        .get(LAST_MODIFIED)
        .and_then(|v| HttpDate::from_header_value(v).ok());
    let current = Current {
        exists: true,
        etag,
        last_modified,
    };
    let method = ctx.preconditions.method();
    match conditional::evaluate(method, ctx.preconditions.headers(), current) {
        Evaluation::Proceed => Response::from_parts(parts, body),
        Evaluation::NotModified => {
            drop(body);
            parts.status = StatusCode::NOT_MODIFIED;
            conditional::mark_not_modified(&mut parts.extensions);
            conditional::keep_on_304(&mut parts.headers);
            Response::from_parts(parts, ResponseBody::empty())
        }
        Evaluation::PreconditionFailed => config
            .rejections
            .http_response(conditional::precondition_failed()),
    }
}
