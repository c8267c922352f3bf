//! The response future of [`RequireScope`](super::RequireScope).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

pin_project! {
    /// Response future of [`RequireScope`](super::RequireScope): the inner
    /// service's answer, or the rejection when a scope is missing.
    pub struct RequireScopeFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Rejected { response: Option<Response<ResponseBody<B>>> },
        Inner { #[pin] future: F },
    }
}

impl<F, B> RequireScopeFuture<F, B> {
    pub(super) fn reject(response: Response<ResponseBody<B>>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }
}

impl<F, B> fmt::Debug for RequireScopeFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Rejected { .. } => "rejected",
            Kind::Inner { .. } => "inner",
        };
        f.debug_struct("RequireScopeFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for RequireScopeFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            KindProj::Inner { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(ResponseBody::new))),
        }
    }
}
