//! The response future of [`ResponseCache`](super::ResponseCache), and
//! the background refresh of `stale-while-revalidate`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::Config;
use super::body::CacheBody;
use super::engine::Counters;
use super::flight::Flight;
use super::lookup::{Plan, Step, invalidate, step};
use super::remote_fill::RemoteFill;
use super::respond::{Miss, RemoteFuture, RemoteOutcome, forwarded, from_entry};
use super::status::{Fwd, Status};

pin_project! {
    #[project = StateProj]
    enum State<F, S, R, B> {
        Ready { response: Option<Response<CacheBody<B>>> },
        Forward { #[pin] future: F, #[pin] deadline: Option<Sleep> },
        Follow {
            #[pin]
            deadline: Sleep,
            flight: Arc<Flight>,
            service: Option<S>,
            request: Option<Request<R>>,
        },
        Remote {
            lookup: RemoteFuture,
            service: Option<S>,
            request: Option<Request<R>>,
        },
    }
}

#[cfg(not(feature = "redis"))]
fn remote_lookup(_config: &Arc<Config>, _miss: &Miss) -> RemoteFuture {
    Box::pin(std::future::ready(RemoteOutcome::Fill(
        RemoteFill::unleased(),
    )))
}
#[cfg(feature = "redis")]
use super::remote_step::remote_lookup;

pin_project! {
    /// Response future of [`ResponseCache`](super::ResponseCache).
    pub struct ResponseFuture<F, S, R, B> {
        #[pin]
        state: State<F, S, R, B>,
        plan: Option<Plan>,
        config: Arc<Config>,
    }
}

impl<F, S, R, B> fmt::Debug for ResponseFuture<F, S, R, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, S, R, B> ResponseFuture<F, S, R, B> {
    pub(crate) fn ready(response: Response<CacheBody<B>>, config: &Arc<Config>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
            plan: None,
            config: Arc::clone(config),
        }
    }

    pub(crate) fn forward(future: F, plan: Plan, config: &Arc<Config>) -> Self {
        Self {
            state: State::Forward {
                future,
                deadline: origin_deadline(config, &plan),
            },
            plan: Some(plan),
            config: Arc::clone(config),
        }
    }

    pub(crate) fn remote(
        miss: Box<Miss>,
        service: S,
        request: Request<R>,
        config: &Arc<Config>,
    ) -> Self {
        Self {
            state: State::Remote {
                lookup: remote_lookup(config, &miss),
                service: Some(service),
                request: Some(request),
            },
            plan: Some(Plan::Miss(miss)),
            config: Arc::clone(config),
        }
    }

    pub(crate) fn follow(
        flight: Arc<Flight>,
        service: S,
        request: Request<R>,
        config: &Arc<Config>,
    ) -> Self {
        Self {
            state: State::Follow {
                deadline: tokio::time::sleep(config.lock_timeout),
                flight,
                service: Some(service),
                request: Some(request),
            },
            plan: None,
            config: Arc::clone(config),
        }
    }
}

/// A timer on the handler when a stale entry may answer should it be slow
/// (RFC 5861 §4 counts a timeout as an error).
fn origin_deadline(config: &Config, plan: &Plan) -> Option<Sleep> {
    let timeout = config.origin_timeout?;
    match plan {
        Plan::Miss(miss) if miss.stale.is_some() => Some(tokio::time::sleep(timeout)),
        _ => None,
    }
}

/// Serves the stale entry of `miss` in place of a failed answer.
fn stale_answer<B>(
    config: &Config,
    miss: &Miss,
    fwd_status: Option<StatusCode>,
) -> Option<Response<CacheBody<B>>> {
    let entry = miss.stale.as_ref()?;
    let now = Instant::now();
    if !entry.may_serve_on_error(now) {
        return None;
    }
    let status = Status {
        fwd: Some(Fwd::Stale),
        fwd_status: fwd_status.map(|s| s.as_u16()),
        detail: Some("stale-if-error"),
        ..Status::hit(entry.ttl(now))
    };
    let status = Status {
        hit: false,
        ..status
    };
    let age = entry.age(now);
    // No preconditions: the client gets the stale body (it asked for a
    // fresh one).
    let response = from_entry(
        config,
        entry,
        &http::Method::GET,
        &http::HeaderMap::new(),
        age,
        status,
    )?;
    Counters::add(&config.engine.counters.stale_served);
    Some(response)
}

/// RFC 5861 §4: "an error is any situation that would result in a 500,
/// 502, 503, or 504 HTTP response status code being returned".
fn is_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

impl<F, S, R, B, E> Future for ResponseFuture<F, S, R, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    S: Service<Request<R>, Response = Response<B>, Error = E, Future = F>,
    B: Body<Data = Bytes>,
{
    type Output = Result<Response<CacheBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                StateProj::Ready { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
                StateProj::Follow {
                    deadline,
                    flight,
                    service,
                    request,
                } => {
                    if flight.poll_done(cx).is_pending() && deadline.poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let request = request.take().expect("polled after completion");
                    let mut service = service.take().expect("polled after completion");
                    let next = match step(this.config, &request, true) {
                        Step::Answer(response) | Step::Refresh(response, _) => State::Ready {
                            response: Some(response),
                        },
                        Step::Forward(plan) => {
                            let deadline = origin_deadline(this.config, &plan);
                            *this.plan = Some(plan);
                            State::Forward {
                                future: service.call(request),
                                deadline,
                            }
                        }
                        Step::Remote(miss) => {
                            let lookup = remote_lookup(this.config, &miss);
                            *this.plan = Some(Plan::Miss(miss));
                            State::Remote {
                                lookup,
                                service: Some(service),
                                request: Some(request),
                            }
                        }
                        Step::Follow(_) => unreachable!("a second wait is a forward"),
                    };
                    self.as_mut().project().state.set(next);
                }
                StateProj::Remote {
                    lookup,
                    service,
                    request,
                } => {
                    let outcome = ready!(lookup.as_mut().poll(cx));
                    let request = request.take().expect("polled after completion");
                    let mut service = service.take().expect("polled after completion");
                    let Some(Plan::Miss(mut miss)) = this.plan.take() else {
                        unreachable!("a Redis lookup is for a miss")
                    };
                    let config = this.config;
                    match outcome {
                        RemoteOutcome::Hit(entry) => {
                            let age = entry.age(Instant::now());
                            let status = Status {
                                detail: Some("redis"),
                                ..Status::hit(entry.ttl_at(age))
                            };
                            if let Some(response) = from_entry(
                                config,
                                &entry,
                                request.method(),
                                request.headers(),
                                age,
                                status,
                            ) {
                                Counters::add(&config.engine.counters.hits);
                                // The guard goes: the waiters find it.
                                drop(miss);
                                self.as_mut().project().state.set(State::Ready {
                                    response: Some(response),
                                });
                                continue;
                            }
                            miss.store = false;
                        }
                        RemoteOutcome::Fill(remote) => miss.remote = remote,
                        RemoteOutcome::Down => {
                            miss.store = false;
                            miss.fwd = Fwd::Bypass;
                            miss.remote = RemoteFill::none();
                        }
                    }
                    let plan = Plan::Miss(miss);
                    let deadline = origin_deadline(config, &plan);
                    let future = service.call(request);
                    *this.plan = Some(plan);
                    self.as_mut()
                        .project()
                        .state
                        .set(State::Forward { future, deadline });
                }
                StateProj::Forward { future, deadline } => {
                    let outcome = match future.poll(cx) {
                        Poll::Ready(outcome) => outcome,
                        Poll::Pending => {
                            if let Some(deadline) = deadline.as_pin_mut() {
                                ready!(deadline.poll(cx));
                                if let Some(Plan::Miss(miss)) = this.plan.as_ref()
                                    && let Some(response) = stale_answer(this.config, miss, None)
                                {
                                    return Poll::Ready(Ok(response));
                                }
                            }
                            return Poll::Pending;
                        }
                    };
                    let config = this.config;
                    let plan = this.plan.take().unwrap_or(Plan::Pass);
                    return Poll::Ready(match (outcome, plan) {
                        (Ok(response), Plan::Pass) => Ok(response.map(CacheBody::inner)),
                        (Ok(response), Plan::Bypass(fwd)) => {
                            Ok(forwarded(config, response, None, Status::forward(fwd)))
                        }
                        (Ok(response), Plan::Invalidate(inv)) => {
                            let status = response.status();
                            if status.is_success() || status.is_redirection() {
                                invalidate(config, &inv, response.headers());
                            }
                            Ok(forwarded(
                                config,
                                response,
                                None,
                                Status::forward(Fwd::Method),
                            ))
                        }
                        (Ok(response), Plan::Miss(miss)) => {
                            if is_error(response.status())
                                && let Some(stale) =
                                    stale_answer(config, &miss, Some(response.status()))
                            {
                                Ok(stale)
                            } else {
                                let status = Status {
                                    collapsed: miss.collapsed,
                                    ..Status::forward(miss.fwd)
                                };
                                Ok(forwarded(config, response, Some(miss), status))
                            }
                        }
                        (Err(error), Plan::Miss(miss)) => {
                            stale_answer(config, &miss, None).ok_or(error)
                        }
                        (Err(error), _) => Err(error),
                    });
                }
            }
        }
    }
}

/// Conditional and range fields: a refresh asks for the whole response.
const NOT_FOR_REFRESH: [http::HeaderName; 6] = [
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_MATCH,
    http::header::IF_UNMODIFIED_SINCE,
    http::header::IF_RANGE,
    http::header::RANGE,
];

/// Runs `request` on `service` in the background and stores the answer
/// (`stale-while-revalidate`, RFC 5861 §3); the fill guard in `miss`
/// keeps it the key's only refresh.
pub(crate) fn spawn_refresh<S, R, B>(
    mut service: S,
    mut request: Request<R>,
    miss: Box<Miss>,
    config: Arc<Config>,
) where
    S: Service<Request<R>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
{
    for name in &NOT_FOR_REFRESH {
        request.headers_mut().remove(name);
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        if std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .is_err()
        {
            return;
        }
        let Ok(response) = service.call(request).await else {
            return;
        };
        if is_error(response.status()) {
            return;
        }
        let status = Status::forward(Fwd::Stale);
        let body = forwarded(&config, response, Some(miss), status).into_body();
        let mut body = std::pin::pin!(body);
        // Drain it: the copy is stored when it ends.
        while let Some(Ok(_)) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {}
    });
}
