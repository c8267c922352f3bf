//! The response side of [`TraceAndMeter`](super::TraceAndMeter): what is
//! known when the response head arrives, and what is recorded when the
//! body ends (or the request is dropped): the end of the server span
//! (HTTP and RPC semantic conventions), `http.server.request.duration`, and
//! tower-edge's counters, from the [`Decision`] of a tower-edge answer.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Buf;
use http::{Response, StatusCode};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context as OtelContext, KeyValue, StringValue};
use pin_project_lite::pin_project;

use super::metrics::{
    EdgeMetrics, HttpInstruments, IDEMPOTENCY_REASON, OVERLOAD_PARTITION, OVERLOAD_REASON,
};
use super::route::Route;
use super::semconv::{self, *};
use crate::body_end::{BodyEnd, OnBodyEnd, body_end_wrapper};
use crate::decision::{Decision, EdgeLayer, Reason};

/// The instruments a request records into, shared by every request of a
/// layer.
pub(super) struct Instruments {
    pub(super) http: HttpInstruments,
    pub(super) edge: EdgeMetrics,
}

/// Counts the request as active until dropped (completed or cancelled).
pub(super) struct ActiveRequest {
    pub(super) instruments: Arc<Instruments>,
    pub(super) method: &'static str,
    pub(super) scheme: &'static str,
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.instruments.http.active.add(
            -1,
            &[
                KeyValue::new(HTTP_REQUEST_METHOD, self.method),
                KeyValue::new(URL_SCHEME, self.scheme),
            ],
        );
    }
}

pub(super) struct State {
    pub(super) otel_cx: OtelContext,
    pub(super) start: Instant,
    pub(super) route: Option<Route>,
    pub(super) span_method: &'static str,
    pub(super) grpc: bool,
    /// `Some` when the span is named `{service}/{method}`; the inner value
    /// is the method, kept for `rpc.method` when the span records.
    pub(super) rpc_method: Option<Option<String>>,
    pub(super) protocol: Option<&'static str>,
    pub(super) active: ActiveRequest,
    /// The correlation layer's `request` span when this layer opened it
    /// (a child of the server span); else a disabled span.
    pub(super) request_span: tracing::Span,
}

impl State {
    /// The response head is ready: record what it says; the rest waits for
    /// the end of the body (gRPC status in trailers, duration).
    fn on_head(mut self, parts: &http::response::Parts) -> Completion {
        let status = parts.status;
        let headers = &parts.headers;
        if self.route.is_none()
            && let Some(late) = parts.extensions.get::<Route>()
        {
            let span = self.otel_cx.span();
            if self.rpc_method.is_none() {
                span.update_name(format!("{} {late}", self.span_method));
            }
            span.set_attribute(KeyValue::new(HTTP_ROUTE, late.to_value()));
            self.request_span.record("route", late.as_str());
            self.route = Some(late.clone());
        }
        let span = self.otel_cx.span();
        span.set_attribute(KeyValue::new(
            HTTP_RESPONSE_STATUS_CODE,
            i64::from(status.as_u16()),
        ));
        let error_type = status
            .is_server_error()
            .then(|| semconv::status_error_type(status));
        let grpc_code = if self.grpc {
            semconv::grpc_status(headers)
        } else {
            None
        };
        let method_known = self.rpc_method.is_some() && semconv::answered_by_grpc_server(parts);
        // A tower-edge layer's answer says what it decided; only the
        // answers of other components (a handler, another limiter) are read
        // from their headers.
        let shed = parts
            .extensions
            .get::<Decision>()
            .filter(|decision| decision.layer() == EdgeLayer::Overload)
            .map(|decision| {
                (
                    decision.reason().as_str(),
                    decision
                        .policy_shared()
                        .map(|policy| StringValue::from(Arc::clone(policy))),
                )
            });
        if let Some((reason, partition)) = &shed {
            span.set_attribute(KeyValue::new(OVERLOAD_REASON, *reason));
            if let Some(partition) = partition {
                span.set_attribute(KeyValue::new(OVERLOAD_PARTITION, partition.clone()));
            }
        }
        let idempotency = parts
            .extensions
            .get::<Decision>()
            .filter(|d| d.layer() == EdgeLayer::Idempotency)
            .map(|d| d.reason().as_str());
        if let Some(reason) = idempotency {
            span.set_attribute(KeyValue::new(IDEMPOTENCY_REASON, reason));
        }
        let answer = parts.extensions.get::<Decision>().filter(|d| d.is_answer());
        let (auth, policy) = match answer {
            Some(decision) => (
                decision
                    .reason()
                    .is_auth_failure()
                    .then(|| decision.reason().as_str()),
                (decision.reason() == Reason::RateLimited).then(|| {
                    decision
                        .policy_shared()
                        .map_or(StringValue::from("unknown"), |policy| {
                            StringValue::from(Arc::clone(policy))
                        })
                }),
            ),
            None => (
                semconv::auth_failure(status, headers),
                (status == StatusCode::TOO_MANY_REQUESTS || grpc_code == Some(8))
                    .then(|| semconv::rate_limit_policy(headers).into()),
            ),
        };
        Completion {
            method_known,
            auth,
            policy,
            shed,
            idempotency,
            state: self,
            status: Some(status),
            error_type,
            grpc_code,
        }
    }

    /// Ends a request that has no response head: the inner service failed
    /// (`error_type` is its error's type), or the response future was
    /// dropped (`None`: not an error of the server; the client went away,
    /// or a timeout outside fired).
    fn finish_without_head(self, error_type: Option<&'static str>) {
        drop(Completion {
            method_known: false,
            state: self,
            status: None,
            error_type: error_type.map(Cow::Borrowed),
            grpc_code: None,
            auth: None,
            policy: None,
            shed: None,
            idempotency: None,
        });
    }
}

/// What is known once the response head is ready. Dropping it — at the end
/// of the body, or when the body is dropped early — ends the span and
/// records the metrics.
struct Completion {
    state: State,
    /// A gRPC server answered the call itself (not a router, an error or a
    /// tower-edge rejection): the method may be known, unless it says 12.
    method_known: bool,
    status: Option<StatusCode>,
    error_type: Option<Cow<'static, str>>,
    grpc_code: Option<u16>,
    auth: Option<&'static str>,
    policy: Option<StringValue>,
    /// The overload layer shed the request: its reason and partition.
    shed: Option<(&'static str, Option<StringValue>)>,
    /// The idempotency layer's decision (answered or observed).
    idempotency: Option<&'static str>,
}

impl Completion {
    fn trailers(&mut self, trailers: &http::HeaderMap) {
        if self.state.grpc && self.grpc_code.is_none() {
            self.grpc_code = semconv::grpc_status(trailers);
            if self.grpc_code == Some(8) && self.policy.is_none() {
                self.policy = Some(semconv::rate_limit_policy(trailers).into());
            }
        }
    }

    fn body_failed(&mut self, error_type: &'static str) {
        if self.error_type.is_none() {
            self.error_type = Some(Cow::Borrowed(error_type));
        }
    }

    fn record_duration(&self) {
        let state = &self.state;
        let active = &state.active;
        // A fixed array instead of a Vec: no allocation per request.
        let filler = || KeyValue::new(HTTP_REQUEST_METHOD, active.method);
        let mut attributes = [filler(), filler(), filler(), filler(), filler(), filler()];
        let mut len = 1;
        let mut push = |kv: KeyValue| {
            attributes[len] = kv;
            len += 1;
        };
        push(KeyValue::new(URL_SCHEME, active.scheme));
        if let Some(status) = self.status {
            push(KeyValue::new(
                HTTP_RESPONSE_STATUS_CODE,
                i64::from(status.as_u16()),
            ));
        }
        if let Some(route) = &state.route {
            push(KeyValue::new(HTTP_ROUTE, route.to_value()));
        }
        if let Some(error_type) = &self.error_type {
            push(KeyValue::new(ERROR_TYPE, error_type.clone()));
        }
        if let Some(protocol) = state.protocol {
            push(KeyValue::new(NETWORK_PROTOCOL_VERSION, protocol));
        }
        active
            .instruments
            .http
            .duration
            .record(state.start.elapsed().as_secs_f64(), &attributes[..len]);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let span = self.state.otel_cx.span();
        let mut failed = self.error_type.is_some();
        if let Some(error_type) = &self.error_type {
            span.set_attribute(KeyValue::new(ERROR_TYPE, error_type.clone()));
        }
        if let Some(code) = self.grpc_code {
            span.set_attribute(KeyValue::new(RPC_GRPC_STATUS_CODE, i64::from(code)));
            failed |= semconv::grpc_server_error(code);
        }
        if let Some(rpc_method) = self.state.rpc_method.take() {
            // The client chose the method: unless the server answered the
            // call and knew it, it is `_OTHER`, so made-up methods cannot
            // multiply span names (not even ones rejected before routing).
            if !self.method_known || self.grpc_code == Some(12) {
                span.update_name("_OTHER");
                if let Some(original) = rpc_method {
                    span.set_attribute(KeyValue::new(RPC_METHOD, "_OTHER"));
                    span.set_attribute(KeyValue::new(RPC_METHOD_ORIGINAL, original));
                }
            } else if let Some(method) = rpc_method {
                span.set_attribute(KeyValue::new(RPC_METHOD, method));
            }
        }
        if failed {
            // The description is left empty: the status code says it all.
            span.set_status(Status::error(""));
        }
        span.end();
        self.record_duration();

        let edge = &self.state.active.instruments.edge;
        let auth = match self.grpc_code {
            Some(16) => Some("unauthenticated"),
            Some(7) => Some("permission_denied"),
            _ => self.auth,
        };
        if let Some(reason) = auth {
            edge.auth_failure(reason);
        }
        if let Some(policy) = self.policy.take() {
            edge.rate_limited(policy);
        } else if let Some((reason, partition)) = self.shed.take() {
            // A per-key in-flight limit answers gRPC 8 too: counted here,
            // not as a rate limit.
            edge.overload_shed(reason, partition);
        } else if self.grpc_code == Some(8) {
            edge.rate_limited(StringValue::from("unknown"));
        }
        if self.status == Some(StatusCode::NOT_MODIFIED) {
            edge.not_modified(self.state.route.as_ref());
        }
        if let Some(reason) = self.idempotency {
            edge.idempotency(reason);
        }
    }
}

impl OnBodyEnd for Completion {
    fn frame<D: Buf, E>(&mut self, frame: &Result<http_body::Frame<D>, E>) {
        match frame {
            Ok(frame) => {
                if let Some(trailers) = frame.trailers_ref() {
                    self.trailers(trailers);
                }
            }
            Err(_) => self.body_failed(std::any::type_name::<E>()),
        }
    }

    // Streaming handlers produce the body while it is polled: keep the
    // span current.
    fn polling(&self) -> impl Sized + '_ {
        let attached = self.state.otel_cx.clone().attach();
        // Exited before the context is detached (tuple fields drop in
        // order).
        (self.state.request_span.enter(), attached)
    }
}

pin_project! {
    /// Response body of [`TraceAndMeter`]: the inner body, unchanged. The
    /// server span ends and the duration is recorded when it reaches its
    /// end (reading gRPC trailers on the way) or is dropped.
    pub struct OtelBody<B> {
        #[pin]
        inner: BodyEnd<B, Completion>,
    }
}

impl<B> OtelBody<B> {
    fn new(inner: B, completion: Option<Completion>) -> Self {
        Self {
            inner: BodyEnd::new(inner, completion),
        }
    }

    /// Unwraps the inner body. The span ends now.
    pub fn into_inner(self) -> B {
        self.inner.into_inner()
    }
}

impl<B> fmt::Debug for OtelBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelBody")
            .field("finished", &self.inner.is_finished())
            .finish_non_exhaustive()
    }
}

body_end_wrapper!(OtelBody<B> where B: http_body::Body);

pin_project! {
    /// Response future of [`TraceAndMeter`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Pending,
    }
}

/// The request's state until its response head: dropped before that (the
/// client went away, a timeout fired), it still ends the span and records
/// the duration, with no status code.
struct Pending(Option<State>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            state.finish_without_head(None);
        }
    }
}

impl<F> ResponseFuture<F> {
    /// The future of the inner service's answer to the request `state`
    /// describes.
    pub(super) fn new(inner: F, state: State) -> Self {
        Self {
            inner,
            state: Pending(Some(state)),
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("finished", &self.state.0.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<OtelBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(state) = this.state.0.as_ref() else {
            // Polled after completion: nothing left to record.
            return this
                .inner
                .poll(cx)
                .map_ok(|response| response.map(|inner| OtelBody::new(inner, None)));
        };
        let result = {
            // The server span is the current OpenTelemetry context while the
            // inner service runs, for outgoing propagation and for
            // tracing-opentelemetry.
            let _attached = state.otel_cx.clone().attach();
            let _entered = state.request_span.enter();
            ready!(this.inner.poll(cx))
        };
        let state = this.state.0.take();
        Poll::Ready(match result {
            Ok(response) => {
                let (parts, inner) = response.into_parts();
                let completion = state.map(|state| state.on_head(&parts));
                Ok(Response::from_parts(
                    parts,
                    OtelBody::new(inner, completion),
                ))
            }
            Err(error) => {
                if let Some(state) = state {
                    state.finish_without_head(Some(std::any::type_name::<E>()));
                }
                Err(error)
            }
        })
    }
}
