//! The rate-limit service: finds the session's limit and bucket, starts the check.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use keycard_core::ratelimit::Limits;
use tower_layer::Layer;
use tower_service::Service;

use super::config::Config;
use super::future::{CheckFuture, ResponseFuture, admit};
use super::layer::RateLimitLayer;
use crate::context::RequestVars;
use crate::response::missing_session_layer;
use crate::session::Session;

/// The service of [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RateLimit<S> {
    pub(super) fn from_layer(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    /// Wraps `inner` with `layer`'s configuration.
    pub fn new(inner: S, layer: &RateLimitLayer) -> Self {
        Self::from_layer(inner, layer.config.clone())
    }

    /// A [`RateLimitLayer`] over `limiter`.
    pub fn layer(limiter: impl keycard_core::ratelimit::RateLimiter) -> RateLimitLayer {
        RateLimitLayer::new(limiter)
    }

    define_inner_service_accessors!();
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_layer(inner, self.config.clone())
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<Bytes>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if !crate::session::loaded(request.extensions()) {
            return ResponseFuture::done(missing_session_layer("RateLimitLayer"));
        }
        // No session: a request the load stage let through without a key is not limited here.
        let Some(session) = request.extensions().get::<Session>().cloned() else {
            return ResponseFuture::inner(self.inner.call(request), None, &self.config);
        };
        let config = &self.config;
        let checked = session.with_record(|record| {
            let limits = Limits::of(record);
            if limits.is_empty() {
                return None;
            }
            let vars = RequestVars::new(&request, Some(&record.meta_data));
            Some((config.buckets.bucket(record, &vars), limits))
        });
        let Some((bucket, limits)) = checked else {
            return ResponseFuture::inner(self.inner.call(request), None, config);
        };
        // An in-process limiter answers at once: no future, no box.
        if let Some(checked) = config.limiter.check_now(&bucket, limits) {
            let mut request = request;
            return match admit(checked, config, &mut request) {
                Ok(decision) => ResponseFuture::inner(self.inner.call(request), decision, config),
                Err(response) => ResponseFuture::done(response),
            };
        }
        let limiter = config.limiter.clone();
        let check: CheckFuture = Box::pin(async move { limiter.check(&bucket, limits).await });
        // The clone that was driven to readiness is the one that gets the call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::checking(check, request, inner, config.clone())
    }
}
