//! The response future of [`LimitRate`]: the inner service's future with
//! the rate-limit headers to add, a rejection, or a request waiting for a
//! network store.

use super::*;

/// The state of a request waiting for a network store.
pub(super) struct Waiting<S, B> {
    pub(super) inner: S,
    pub(super) request: Request<B>,
    pub(super) config: Arc<Config>,
    pub(super) set: Option<usize>,
    /// Index of the first policy in `keys`.
    pub(super) first: usize,
    pub(super) current: usize,
    pub(super) pending: StoreFuture,
    pub(super) keys: Vec<Option<(Key, u32)>>,
    pub(super) outcome: Outcome,
}

pin_project! {
    /// Response future of [`LimitRate`].
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        kind: Kind<S, ReqBody, ResBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Inner {
            #[pin]
            future: S::Future,
            headers: AddHeaders,
        },
        Rejected {
            response: Option<Response<ResponseBody<ResBody>>>,
        },
        Waiting {
            state: Option<Box<Waiting<S, ReqBody>>>,
        },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(super) fn inner(future: S::Future, headers: AddHeaders) -> Self {
        Self {
            kind: Kind::Inner { future, headers },
        }
    }

    pub(super) fn rejected(response: Response<ResponseBody<ResBody>>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn waiting(state: Box<Waiting<S, ReqBody>>) -> Self {
        Self {
            kind: Kind::Waiting { state: Some(state) },
        }
    }
}

impl<S, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Rejected { .. } => "rejected",
            Kind::Waiting { .. } => "waiting for the store",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            let next = match kind.as_mut().project() {
                KindProj::Inner { future, headers } => {
                    let mut response = ready!(future.poll(cx))?;
                    std::mem::take(headers).apply(response.headers_mut());
                    return Poll::Ready(Ok(response.map(ResponseBody::new)));
                }
                KindProj::Rejected { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response));
                }
                KindProj::Waiting { state } => {
                    let waiting = state.as_mut().expect("polled after completion");
                    let result = ready!(Pin::new(&mut waiting.pending).poll(cx));
                    let config = Arc::clone(&waiting.config);
                    let set = config.set(waiting.set);
                    let mut stop =
                        apply(&config, set, waiting.current, result, &mut waiting.outcome);
                    if !stop {
                        let first = waiting.first;
                        let keys = &mut waiting.keys;
                        match drive(
                            &config,
                            set,
                            waiting.current + 1,
                            |i| keys[i - first].take(),
                            &mut waiting.outcome,
                        ) {
                            Progress::Finished => stop = true,
                            Progress::Pending(index, pending) => {
                                waiting.current = index;
                                waiting.pending = pending;
                            }
                        }
                    }
                    if !stop {
                        continue;
                    }
                    let mut waiting = state.take().expect("present");
                    let outcome = std::mem::take(&mut waiting.outcome);
                    if outcome.denied || outcome.store_failed {
                        let response = reject(&config, set, outcome, &waiting.request);
                        Kind::Rejected {
                            response: Some(response),
                        }
                    } else {
                        let headers = outcome.headers(&config, set);
                        Kind::Inner {
                            future: waiting.inner.call(waiting.request),
                            headers,
                        }
                    }
                }
            };
            kind.set(next);
        }
    }
}
