//! The response future of the rate-limit stage.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Extensions, HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use keycard_core::ratelimit::Decision;
use keycard_core::store::StoreError;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::config::{Config, RateLimitHeaders};
use crate::context::ContextValues;
use crate::response::json_error;

/// The limiter check. The limiter is a trait object, so this one step is boxed; the inner
/// service's future is not.
pub(super) type CheckFuture = Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send>>;

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Checking {
            check: CheckFuture,
            request: Option<Request<ReqBody>>,
            inner: Option<S>,
            config: Arc<Config>,
        },
        Inner {
            #[pin]
            future: S::Future,
            // The decision, for the headers of the response.
            decision: Option<Decision>,
            headers: RateLimitHeaders,
        },
        Done {
            response: Option<S::Response>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>>,
{
    pub(super) fn inner(future: S::Future, decision: Option<Decision>, config: &Config) -> Self {
        Self {
            state: State::Inner {
                future,
                decision,
                headers: config.headers,
            },
        }
    }

    pub(super) fn done(response: S::Response) -> Self {
        Self {
            state: State::Done {
                response: Some(response),
            },
        }
    }

    pub(super) fn checking(
        check: CheckFuture,
        request: Request<ReqBody>,
        inner: S,
        config: Arc<Config>,
    ) -> Self {
        Self {
            state: State::Checking {
                check,
                request: Some(request),
                inner: Some(inner),
                config,
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking {
                    check,
                    request,
                    inner,
                    config,
                } => {
                    let checked = ready!(check.as_mut().poll(cx));
                    let decision = match checked {
                        Ok(decision) if !decision.allowed => {
                            let response = refused(&decision, config.headers);
                            this.state.set(State::Done {
                                response: Some(response),
                            });
                            continue;
                        }
                        Ok(decision) => Some(decision),
                        Err(error) => {
                            tracing::error!(%error, cause = ?std::error::Error::source(&error), fail_open = config.fail_open, "keycard: rate limiter check failed");
                            if !config.fail_open {
                                this.state.set(State::Done {
                                    response: Some(json_error(
                                        StatusCode::SERVICE_UNAVAILABLE,
                                        "Rate limiter unavailable",
                                    )),
                                });
                                continue;
                            }
                            None
                        }
                    };
                    let mut request = request.take().expect("polled after completion");
                    if let Some(decision) = &decision {
                        publish(request.extensions_mut(), decision);
                    }
                    let mut inner = inner.take().expect("polled after completion");
                    let headers = config.headers;
                    this.state.set(State::Inner {
                        future: inner.call(request),
                        decision,
                        headers,
                    });
                }
                StateProj::Inner {
                    future,
                    decision,
                    headers,
                } => {
                    let mut output = ready!(future.poll(cx));
                    if let (Ok(response), Some(decision)) = (&mut output, decision.as_ref()) {
                        set_headers(response.headers_mut(), decision, *headers);
                    }
                    return Poll::Ready(output);
                }
                StateProj::Done { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            }
        }
    }
}

/// Tyk's 429, with `Retry-After` (whole seconds, rounded up) and the rate-limit headers.
fn refused<B: From<Bytes>>(decision: &Decision, mode: RateLimitHeaders) -> Response<B> {
    let mut response = json_error(StatusCode::TOO_MANY_REQUESTS, "Rate Limit Exceeded");
    let headers = response.headers_mut();
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(whole_seconds(decision).max(1)),
    );
    set_headers(headers, decision, mode);
    response
}

fn whole_seconds(decision: &Decision) -> u64 {
    let reset = decision.reset_after;
    reset.as_secs() + u64::from(reset.subsec_nanos() > 0)
}

fn set_headers(headers: &mut HeaderMap, decision: &Decision, mode: RateLimitHeaders) {
    match mode {
        RateLimitHeaders::RateLimits => {
            let reset = reset_at(decision);
            headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
            headers.insert(
                "x-ratelimit-remaining",
                HeaderValue::from(decision.remaining),
            );
            headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
        }
        RateLimitHeaders::Off => {}
    }
}

/// The decision as context values, for later stages' templates and the handler (Tyk's
/// `$tyk_context.rate_limit_limit`, `rate_limit_remaining`, `rate_limit_reset`).
fn publish(extensions: &mut Extensions, decision: &Decision) {
    ContextValues::insert_into(extensions, "rate_limit_limit", decision.limit.to_string());
    ContextValues::insert_into(
        extensions,
        "rate_limit_remaining",
        decision.remaining.to_string(),
    );
    ContextValues::insert_into(
        extensions,
        "rate_limit_reset",
        reset_at(decision).to_string(),
    );
}

/// Unix seconds when the oldest counted request leaves the window.
fn reset_at(decision: &Decision) -> i64 {
    keycard_core::session::unix_now()
        .saturating_add(i64::try_from(whole_seconds(decision)).unwrap_or(i64::MAX))
}
