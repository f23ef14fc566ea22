use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Limited;
use http_body_util::combinators::Collect;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::apply::{Matched, Refusal, rewrite};
use super::layer::Config;
use crate::session::Session;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a request whose body is being buffered needs once the body is in.
pub(super) struct Pending<S> {
    pub(super) inner: S,
    pub(super) parts: Parts,
    pub(super) matched: Matched,
    pub(super) handle: Option<Session>,
    pub(super) config: Arc<Config>,
}

pin_project! {
    /// The response future of [`UrlRewrite`](super::UrlRewrite).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        Buffering {
            #[pin]
            collect: Collect<Limited<B>>,
            pending: Option<Pending<S>>,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
        Done {
            response: Option<S::Response>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    pub(super) fn inner(future: S::Future) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    pub(super) fn done(response: S::Response) -> Self {
        Self {
            state: State::Done {
                response: Some(response),
            },
        }
    }

    pub(super) fn buffering(collect: Collect<Limited<B>>, pending: Pending<S>) -> Self {
        Self {
            state: State::Buffering {
                collect,
                pending: Some(pending),
            },
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    B: Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<BoxError>,
    ResBody: From<Bytes>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Buffering { collect, pending } => {
                    let collected = ready!(collect.poll(cx));
                    let Pending {
                        mut inner,
                        parts,
                        matched,
                        handle,
                        config,
                    } = pending.take().expect("polled after completion");
                    let next = match collected {
                        Ok(collected) => {
                            let body = collected.to_bytes();
                            // The inner service gets the body exactly as it came.
                            let mut request = Request::from_parts(parts, B::from(body.clone()));
                            match rewrite(
                                &config,
                                &matched,
                                &mut request,
                                handle.as_ref(),
                                Some(&body[..]),
                            ) {
                                Ok(()) => State::Inner {
                                    future: inner.call(request),
                                },
                                Err(refusal) => State::Done {
                                    response: Some(refusal.response()),
                                },
                            }
                        }
                        Err(error) => {
                            let refusal = if error.is::<http_body_util::LengthLimitError>() {
                                Refusal::BodyTooLarge
                            } else {
                                tracing::debug!(%error, "keycard: request body could not be read");
                                Refusal::BodyUnreadable
                            };
                            State::Done {
                                response: Some(refusal.response()),
                            }
                        }
                    };
                    this.state.set(next);
                }
                StateProj::Inner { future } => return future.poll(cx),
                StateProj::Done { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            }
        }
    }
}
