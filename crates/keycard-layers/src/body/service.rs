//! The layer, its service and the body type it hands on.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::config::{Config, Side, TransformBodyLayer};
use super::data::ContextObject;
use super::future::{
    BoxError, ReadBody, ReadRequest, ResponseFuture, ResponsePlan, request_too_large,
};
use super::transformed::TransformedBody;
use crate::context::RequestId;
use crate::response::{invalid_request_path, missing_session_layer};
use crate::session::Session;

impl<S> Layer<S> for TransformBodyLayer {
    type Service = TransformBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TransformBody {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of [`TransformBodyLayer`].
#[derive(Clone, Debug)]
pub struct TransformBody<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> TransformBody<S> {
    define_inner_service_accessors!();
}

/// The request's session handle; `Err` when a rule needs the session and the request went through
/// no session-load layer at all.
fn session<B>(request: &Request<B>, needed: bool) -> Result<Option<Session>, ()> {
    let handle = request.extensions().get::<Session>().cloned();
    if needed && !crate::session::loaded(request.extensions()) {
        return Err(());
    }
    Ok(handle)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TransformBody<S>
where
    S: Service<Request<TransformedBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: Body<Data = Bytes>,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<TransformedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        // Scopes match the normalised path (already so behind the session-load stage).
        if let Err(why) = crate::normalize::request(&mut request) {
            return ResponseFuture::done(invalid_request_path(why));
        }
        let (method, path) = (request.method(), request.uri().path());
        match config.side {
            Side::Request => {
                let selected = config.rules.iter().position(|rule| {
                    rule.scope.matches(method, path) && rule.accepts(request.headers())
                });
                let Some(index) = selected else {
                    return ResponseFuture::inner(
                        self.inner.call(request.map(TransformedBody::original)),
                        None,
                    );
                };
                let rule = &config.rules[index];
                let Ok(handle) = session(&request, rule.session_data) else {
                    return ResponseFuture::done(missing_session_layer("TransformBodyLayer"));
                };
                if rule.uses_context {
                    RequestId::get_or_create(&mut request);
                }
                if request.body().size_hint().lower() > config.limit as u64 {
                    return ResponseFuture::done(request_too_large());
                }
                let (parts, body) = request.into_parts();
                // The service polled ready is the one that will be called, once the body is in.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::read_request(
                    ReadBody::new(body, config.limit),
                    ReadRequest {
                        config: config.clone(),
                        rule: index,
                        parts,
                        inner,
                        handle,
                    },
                )
            }
            Side::Response => {
                // A HEAD response carries the headers the GET would (RFC 9110 §9.3.2), so it
                // is matched as the GET.
                let head = method == Method::HEAD;
                let as_method = if head { &Method::GET } else { method };
                let candidates: Vec<usize> = (0..config.rules.len())
                    .filter(|&i| config.rules[i].scope.matches(as_method, path))
                    .collect();
                if candidates.is_empty() {
                    return ResponseFuture::inner(
                        self.inner.call(request.map(TransformedBody::original)),
                        None,
                    );
                }
                if head {
                    let plan = ResponsePlan {
                        config: config.clone(),
                        candidates,
                        handle: None,
                        context: None,
                        head,
                    };
                    return ResponseFuture::inner(
                        self.inner.call(request.map(TransformedBody::original)),
                        Some(plan),
                    );
                }
                // A 206 is never transformed, so a client asking for a range would get the raw
                // upstream body: the range is not forwarded when a rule may transform the answer.
                request.headers_mut().remove(http::header::RANGE);
                request.headers_mut().remove(http::header::IF_RANGE);
                let rules = || candidates.iter().map(|&i| &config.rules[i]);
                let Ok(handle) = session(&request, rules().any(|rule| rule.session_data)) else {
                    return ResponseFuture::done(missing_session_layer("TransformBodyLayer"));
                };
                let context = rules().any(|rule| rule.uses_context).then(|| {
                    RequestId::get_or_create(&mut request);
                    ContextObject::capture(request.uri(), request.headers(), request.extensions())
                });
                let plan = ResponsePlan {
                    config: config.clone(),
                    candidates,
                    handle,
                    context,
                    head,
                };
                ResponseFuture::inner(
                    self.inner.call(request.map(TransformedBody::original)),
                    Some(plan),
                )
            }
        }
    }
}
