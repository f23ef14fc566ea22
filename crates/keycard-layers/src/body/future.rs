//! The response future: read the request body, call the inner service, read the response body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode, request, response};
use http_body::Body;
use minijinja::Value;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::config::{Config, Refusal, has_no_body, set_body_headers, set_head_headers};
use super::data::ContextObject;
use super::transformed::TransformedBody;
use crate::response::json_error;
use crate::session::Session;

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// Reads a whole body into memory, failing past `limit` bytes. (Trailers are dropped: the
    /// transformed body replaces the whole message body.)
    pub(super) struct ReadBody<B> {
        #[pin]
        body: B,
        buffer: BytesMut,
        limit: usize,
    }
}

/// Why a body could not be read whole.
pub(super) enum ReadError {
    TooLarge,
    Body(BoxError),
}

impl<B> ReadBody<B> {
    pub(super) fn new(body: B, limit: usize) -> Self {
        Self {
            body,
            buffer: BytesMut::new(),
            limit,
        }
    }
}

impl<B> Future for ReadBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Bytes, ReadError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let Some(frame) = ready!(this.body.as_mut().poll_frame(cx)) else {
                return Poll::Ready(Ok(std::mem::take(this.buffer).freeze()));
            };
            let frame = frame.map_err(|e| ReadError::Body(e.into()))?;
            if let Ok(data) = frame.into_data() {
                if this.buffer.len() + data.len() > *this.limit {
                    return Poll::Ready(Err(ReadError::TooLarge));
                }
                this.buffer.extend_from_slice(&data);
            }
        }
    }
}

/// A request whose body is being read for rule `rule`.
pub(super) struct ReadRequest<S> {
    pub(super) config: Arc<Config>,
    pub(super) rule: usize,
    pub(super) parts: request::Parts,
    pub(super) inner: S,
    pub(super) handle: Option<Session>,
}

pub(super) fn request_too_large<B: From<Bytes>>() -> Response<B> {
    json_error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
}

impl<S> ReadRequest<S> {
    /// The transformed request, or the rejection to answer with.
    fn finish<B, R: From<Bytes>>(
        self,
        read: Result<Bytes, ReadError>,
    ) -> Result<(S, Request<TransformedBody<B>>), Response<R>> {
        let Self {
            config,
            rule,
            mut parts,
            inner,
            handle,
        } = self;
        let raw = match read {
            Ok(raw) => raw,
            Err(ReadError::TooLarge) => return Err(request_too_large()),
            Err(ReadError::Body(error)) => {
                tracing::warn!(%error, path = parts.uri.path(), "keycard: request body could not be read");
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    "Request body could not be read",
                ));
            }
        };
        let rule = &config.rules[rule];
        let context = rule
            .uses_context
            .then(|| ContextObject::capture(&parts.uri, &parts.headers, &parts.extensions));
        match config.transform(rule, &parts.headers, raw, handle.as_ref(), context) {
            Ok(body) => {
                set_body_headers(&mut parts.headers, rule, body.len());
                Ok((
                    inner,
                    Request::from_parts(parts, TransformedBody::bytes(body)),
                ))
            }
            Err(Refusal::TooLarge) => Err(request_too_large()),
            Err(Refusal::UnsupportedEncoding(coding)) => {
                tracing::info!(
                    coding,
                    path = parts.uri.path(),
                    "keycard: request body has an unsupported content-encoding"
                );
                Err(json_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Unsupported content encoding",
                ))
            }
            Err(Refusal::Invalid(why)) => {
                tracing::debug!(%why, path = parts.uri.path(), "keycard: request body refused");
                let message = format!("Request body is not valid {}", rule.format.name());
                Err(json_error(StatusCode::BAD_REQUEST, &message))
            }
            Err(Refusal::NotAnObject) => Err(json_error(
                StatusCode::BAD_REQUEST,
                "Request body must be a JSON object",
            )),
            Err(Refusal::Render(error)) => {
                tracing::error!(%error, template = rule.name, path = parts.uri.path(), "keycard: request body transform failed");
                Err(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Body transform failed",
                ))
            }
        }
    }
}

/// What the response rules need once the response arrives.
pub(super) struct ResponsePlan {
    pub(super) config: Arc<Config>,
    /// The rules whose scope matched the request, in order.
    pub(super) candidates: Vec<usize>,
    pub(super) handle: Option<Session>,
    /// The request's context, when a candidate reads `_tyk_context`.
    pub(super) context: Option<Value>,
    /// A HEAD request: nothing is rendered, but the headers are those the GET's transformed
    /// response would have, less the length no one can know without rendering.
    pub(super) head: bool,
}

impl ResponsePlan {
    /// The rule for this response, if any.
    fn select<B>(&self, response: &Response<B>) -> Option<usize> {
        if has_no_body(response.status()) {
            return None;
        }
        self.candidates
            .iter()
            .copied()
            .find(|&i| self.config.rules[i].accepts(response.headers()))
    }
}

fn upstream_too_large<B: From<Bytes>>() -> Response<B> {
    json_error(
        StatusCode::BAD_GATEWAY,
        "Upstream response too large to transform",
    )
}

/// A response whose body is being read for rule `rule`.
struct ReadResponse {
    plan: ResponsePlan,
    rule: usize,
    parts: response::Parts,
}

impl ReadResponse {
    fn finish<B>(self, read: Result<Bytes, ReadError>) -> Response<TransformedBody<B>> {
        let Self {
            plan,
            rule,
            mut parts,
        } = self;
        let raw = match read {
            Ok(raw) => raw,
            Err(ReadError::TooLarge) => return upstream_too_large(),
            Err(ReadError::Body(error)) => {
                tracing::warn!(%error, "keycard: upstream response body could not be read");
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    "Upstream response could not be read",
                );
            }
        };
        let config = &plan.config;
        let rule = &config.rules[rule];
        let context = plan.context;
        match config.transform(
            rule,
            &parts.headers,
            raw.clone(),
            plan.handle.as_ref(),
            context,
        ) {
            Ok(body) => {
                set_body_headers(&mut parts.headers, rule, body.len());
                Response::from_parts(parts, TransformedBody::bytes(body))
            }
            Err(Refusal::TooLarge) => upstream_too_large(),
            // Spec: a response the rule cannot read reaches the client as the upstream sent it.
            Err(Refusal::Invalid(why) | Refusal::UnsupportedEncoding(why)) => {
                tracing::warn!(%why, template = rule.name, format = rule.format.name(), "keycard: upstream response body not transformed, passed through");
                Response::from_parts(parts, TransformedBody::bytes(raw))
            }
            Err(Refusal::NotAnObject) => {
                tracing::warn!(
                    template = rule.name,
                    "keycard: upstream response body is not a JSON object; passed through"
                );
                Response::from_parts(parts, TransformedBody::bytes(raw))
            }
            Err(Refusal::Render(error)) => {
                tracing::error!(%error, template = rule.name, "keycard: response body transform failed");
                json_error(StatusCode::BAD_GATEWAY, "Body transform failed")
            }
        }
    }
}

pin_project! {
    /// The response future of [`TransformBody`](super::TransformBody).
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<TransformedBody<ReqBody>>>,
    {
        #[pin]
        state: State<S, S::Future, ReqBody, ResBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F, ReqBody, ResBody> {
        ReadRequest {
            #[pin]
            read_body: ReadBody<ReqBody>,
            read: Option<ReadRequest<S>>,
        },
        Inner {
            #[pin]
            future: F,
            plan: Option<ResponsePlan>,
        },
        ReadResponse {
            #[pin]
            read_body: ReadBody<ResBody>,
            read: Option<ReadResponse>,
        },
        Done {
            response: Option<Response<TransformedBody<ResBody>>>,
        },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<TransformedBody<ReqBody>>>,
{
    pub(super) fn inner(future: S::Future, plan: Option<ResponsePlan>) -> Self {
        Self {
            state: State::Inner { future, plan },
        }
    }

    pub(super) fn read_request(read_body: ReadBody<ReqBody>, read: ReadRequest<S>) -> Self {
        Self {
            state: State::ReadRequest {
                read_body,
                read: Some(read),
            },
        }
    }

    pub(super) fn done(response: Response<TransformedBody<ResBody>>) -> Self {
        Self {
            state: State::Done {
                response: Some(response),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<TransformedBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body<Data = Bytes>,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Output = Result<Response<TransformedBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::ReadRequest { read_body, read } => {
                    let result = ready!(read_body.poll(cx));
                    let read = read.take().expect("polled after completion");
                    match read.finish(result) {
                        Ok((mut inner, request)) => {
                            let future = inner.call(request);
                            state.set(State::Inner { future, plan: None });
                        }
                        Err(rejection) => return Poll::Ready(Ok(rejection)),
                    }
                }
                StateProj::Inner { future, plan } => {
                    let response = ready!(future.poll(cx))?;
                    let selected = plan
                        .take()
                        .and_then(|plan| plan.select(&response).map(|rule| (plan, rule)));
                    let Some((plan, rule)) = selected else {
                        return Poll::Ready(Ok(response.map(TransformedBody::original)));
                    };
                    if plan.head {
                        let mut response = response.map(TransformedBody::original);
                        set_head_headers(response.headers_mut(), &plan.config.rules[rule]);
                        return Poll::Ready(Ok(response));
                    }
                    let limit = plan.config.limit;
                    if response.body().size_hint().lower() > limit as u64 {
                        return Poll::Ready(Ok(upstream_too_large()));
                    }
                    let (parts, body) = response.into_parts();
                    state.set(State::ReadResponse {
                        read_body: ReadBody::new(body, limit),
                        read: Some(ReadResponse { plan, rule, parts }),
                    });
                }
                StateProj::ReadResponse { read_body, read } => {
                    let result = ready!(read_body.poll(cx));
                    let read = read.take().expect("polled after completion");
                    return Poll::Ready(Ok(read.finish(result)));
                }
                StateProj::Done { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            }
        }
    }
}
