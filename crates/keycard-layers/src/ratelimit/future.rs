//! The response future of the rate-limit stage.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use keycard_core::ratelimit::{Decision, QuotaState, RateState, Verdict};
use keycard_core::store::StoreError;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::config::{Config, RateLimitHeaders};
use super::values::{RateLimitValues, reset_at, whole_seconds};
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
            // The decision and when it was made (unix seconds), for the headers of the response.
            decision: Option<(Decision, i64)>,
            headers: Headers,
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
    pub(super) fn inner(
        future: S::Future,
        decision: Option<(Decision, i64)>,
        config: &Config,
    ) -> Self {
        Self {
            state: State::Inner {
                future,
                decision,
                headers: Headers::of(config),
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
                    let mut request = request.take().expect("polled after completion");
                    match admit(checked, config, &mut request) {
                        Ok(decision) => {
                            let mut inner = inner.take().expect("polled after completion");
                            let headers = Headers::of(config);
                            this.state.set(State::Inner {
                                future: inner.call(request),
                                decision,
                                headers,
                            });
                        }
                        Err(response) => this.state.set(State::Done {
                            response: Some(response),
                        }),
                    }
                }
                StateProj::Inner {
                    future,
                    decision,
                    headers,
                } => {
                    let mut output = ready!(future.poll(cx));
                    if let (Ok(response), Some((decision, now))) = (&mut output, decision.as_ref())
                    {
                        headers.set(response.headers_mut(), decision, *now);
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

/// What a check's outcome means for the request: go on (with the decision and when it was
/// made, published as [`RateLimitValues`]), or this response (429, 403, 503).
pub(super) fn admit<B, ReqBody>(
    checked: Result<Decision, StoreError>,
    config: &Config,
    request: &mut Request<ReqBody>,
) -> Result<Option<(Decision, i64)>, Response<B>>
where
    B: From<Bytes>,
{
    let now = keycard_core::session::unix_now();
    match checked {
        Ok(decision) if decision.allowed() => {
            request
                .extensions_mut()
                .insert(RateLimitValues::new(decision, now));
            Ok(Some((decision, now)))
        }
        Ok(decision) => Err(refused(&decision, Headers::of(config), now)),
        Err(error) => {
            tracing::error!(%error, cause = ?std::error::Error::source(&error), fail_open = config.fail_open, "keycard: rate limiter check failed");
            if config.fail_open {
                Ok(None)
            } else {
                Err(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Rate limiter unavailable",
                ))
            }
        }
    }
}

/// The header modes of a layer.
#[derive(Clone, Copy)]
pub(super) struct Headers {
    mode: RateLimitHeaders,
    ietf: bool,
}

const LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const IETF_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const IETF_RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

impl Headers {
    fn of(config: &Config) -> Self {
        Self {
            mode: config.headers,
            ietf: config.ietf,
        }
    }

    /// The headers of a response: admitted (the service's) or refused (429 / 403); `now` in
    /// unix seconds.
    fn set(self, headers: &mut HeaderMap, decision: &Decision, now: i64) {
        match self.mode {
            RateLimitHeaders::RateLimits => {
                if let Some(rate) = &decision.rate {
                    let reset = Some(reset_at(now, rate.reset_after));
                    set_x_ratelimit(headers, rate.limit, rate.remaining, reset);
                }
            }
            // Tyk sets quota headers late, on the proxied response: refusals carry none.
            RateLimitHeaders::Quotas if decision.allowed() => {
                if let Some(quota) = &decision.quota {
                    let reset = quota.renews_after.map(|after| reset_at(now, after));
                    set_x_ratelimit(headers, quota.limit, quota.remaining, reset);
                }
            }
            RateLimitHeaders::Quotas | RateLimitHeaders::Off => {}
        }
        if self.ietf {
            set_ietf(headers, decision);
        }
    }
}

/// Tyk's 429 (with `Retry-After`, whole seconds rounded up) or 403, with the headers of the
/// modes.
fn refused<B: From<Bytes>>(decision: &Decision, modes: Headers, now: i64) -> Response<B> {
    let mut response = match decision.verdict {
        Verdict::QuotaExceeded => json_error(StatusCode::FORBIDDEN, "Quota exceeded"),
        _ => json_error(StatusCode::TOO_MANY_REQUESTS, "Rate Limit Exceeded"),
    };
    let headers = response.headers_mut();
    if let (Verdict::RateLimited, Some(rate)) = (decision.verdict, &decision.rate) {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(whole_seconds(rate.reset_after).max(1)),
        );
    }
    modes.set(headers, decision, now);
    response
}

fn set_x_ratelimit(headers: &mut HeaderMap, limit: u64, remaining: u64, reset: Option<i64>) {
    headers.insert(LIMIT, HeaderValue::from(limit));
    headers.insert(REMAINING, HeaderValue::from(remaining));
    match reset {
        Some(reset) => {
            headers.insert(RESET, HeaderValue::from(reset));
        }
        None => {
            headers.remove(RESET);
        }
    }
}

/// draft-ietf-httpapi-ratelimit-headers-09: `RateLimit-Policy` (a list of policies, `q` the
/// quota, `w` the window in seconds) and `RateLimit` (`r` remaining, `t` seconds to reset),
/// one item per limit the session has, named `"rate"` and `"quota"`.
fn set_ietf(headers: &mut HeaderMap, decision: &Decision) {
    use std::fmt::Write as _;
    let (mut policy, mut current) = (String::new(), String::new());
    let mut item =
        |name: &str, quota: u64, window: Option<u64>, remaining: u64, reset: Option<u64>| {
            let sep = if policy.is_empty() { "" } else { ", " };
            let _ = write!(policy, "{sep}\"{name}\";q={quota}");
            if let Some(window) = window {
                let _ = write!(policy, ";w={window}");
            }
            let _ = write!(current, "{sep}\"{name}\";r={remaining}");
            if let Some(reset) = reset {
                let _ = write!(current, ";t={reset}");
            }
        };
    if let Some(RateState {
        limit,
        window,
        remaining,
        reset_after,
    }) = decision.rate
    {
        item(
            "rate",
            limit,
            Some(whole_seconds(window)),
            remaining,
            Some(whole_seconds(reset_after)),
        );
    }
    if let Some(QuotaState {
        limit,
        period,
        remaining,
        renews_after,
    }) = decision.quota
    {
        item(
            "quota",
            limit,
            period.map(whole_seconds),
            remaining,
            renews_after.map(whole_seconds),
        );
    }
    if policy.is_empty() {
        return;
    }
    for (name, value) in [(IETF_POLICY, policy), (IETF_RATELIMIT, current)] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
}
