//! The response future of [`JwtAuth`](super::JwtAuth), and the `Cache-Control` rule for
//! query-string tokens (RFC 6750 §2.3).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;
use crate::cache_control::make_private;

/// Wraps the inner body; marks 2xx responses to query-token requests
/// `Cache-Control: private` (RFC 6750 §2.3).
pub(super) fn finish_response<B>(
    response: Response<B>,
    private: bool,
) -> Response<ResponseBody<B>> {
    let mut response = response.map(ResponseBody::new);
    if private && response.status().is_success() {
        make_private(response.headers_mut());
    }
    response
}

type BoxedResponse<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// Response future of [`JwtAuth`](super::JwtAuth).
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Rejected { response: Option<Response<ResponseBody<B>>> },
        Inner { #[pin] future: F, private: bool },
        Boxed { future: BoxedResponse<B, E> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(super) fn reject(response: Response<ResponseBody<B>>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn inner(future: F, private: bool) -> Self {
        Self {
            kind: Kind::Inner { future, private },
        }
    }

    pub(super) fn boxed(future: BoxedResponse<B, E>) -> Self {
        Self {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Rejected { .. } => "rejected",
            Kind::Inner { .. } => "inner",
            Kind::Boxed { .. } => "refreshing keys",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            KindProj::Inner { future, private } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => Poll::Ready(Ok(finish_response(response, *private))),
                Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
                Poll::Pending => Poll::Pending,
            },
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}
