//! The rewrite service: matches, buffers a payload when a trigger needs it, rewrites, calls on.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use tower_layer::Layer;
use tower_service::Service;

use super::apply::{Matched, Refusal, rewrite};
use super::future::{Pending, ResponseFuture};
use super::layer::{Config, UrlRewriteLayer};
use crate::context::RequestId;
use crate::response::missing_session_layer;
use crate::session::Session;

impl<S> Layer<S> for UrlRewriteLayer {
    type Service = UrlRewrite<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UrlRewrite {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of [`UrlRewriteLayer`].
#[derive(Clone, Debug)]
pub struct UrlRewrite<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> UrlRewrite<S> {
    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for UrlRewrite<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ReqBody: Body<Data = Bytes> + From<Bytes>,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<Bytes>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let handle = request.extensions().get::<Session>().cloned();
        if !crate::session::loaded(request.extensions()) {
            return ResponseFuture::done(missing_session_layer("UrlRewriteLayer"));
        }
        // Patterns match the normalised path (already so behind the session-load stage).
        if let Err(why) = crate::normalize::request(&mut request) {
            return ResponseFuture::done(Refusal::InvalidPath(why).response());
        }
        let config = &self.config;
        let Some(matched) = Matched::find(config, request.method(), request.uri()) else {
            return ResponseFuture::inner(self.inner.call(request));
        };
        if config.uses_request_id {
            RequestId::get_or_create(&mut request);
        }
        if config.rules[matched.rule].reads_payload() {
            let declared = request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|length| length > config.body_limit as u64) {
                return ResponseFuture::done(Refusal::BodyTooLarge.response());
            }
            let (parts, body) = request.into_parts();
            // The clone that was driven to readiness is the one that gets the call.
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            let collect = Limited::new(body, config.body_limit).collect();
            return ResponseFuture::buffering(
                collect,
                Pending {
                    inner,
                    parts,
                    matched,
                    handle,
                    config: config.clone(),
                },
            );
        }
        match rewrite(config, &matched, &mut request, handle.as_ref(), None) {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(refusal) => ResponseFuture::done(refusal.response()),
        }
    }
}
