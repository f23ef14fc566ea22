//! The response future of the session-load stage.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use keycard_core::key::KeyId;
use keycard_core::session::SessionRecord;
use keycard_core::store::StoreError;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::activity;
use super::config::{Admitted, Config};
use crate::context::ClientAddr;
use crate::session::Session;

/// What the load step found.
pub(super) enum Loaded {
    /// The store's answer for an API key's id.
    Stored(KeyId, Result<Option<Arc<SessionRecord>>, StoreError>),
    /// A token's generated session, or why the token was refused.
    #[cfg(feature = "jwt")]
    Token(Result<super::jwt::Admitted, super::jwt::Rejection>),
}

/// The store lookup (or token check). The store is a trait object, so this one step is boxed;
/// the inner service's future is not.
pub(super) type LoadFuture = Pin<Box<dyn Future<Output = Loaded> + Send>>;

/// The activity write of the rare request that records it (see `activity`).
type TouchFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

pin_project! {
    /// The response future of [`SessionLoad`](super::SessionLoad).
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
        Loading {
            load: LoadFuture,
            request: Option<Request<ReqBody>>,
            inner: Option<S>,
            config: Arc<Config>,
            www_authenticate: bool,
        },
        Touching {
            touch: TouchFuture,
            request: Option<Request<ReqBody>>,
            inner: Option<S>,
            session: Session,
            config: Arc<Config>,
        },
        Inner {
            #[pin]
            future: S::Future,
            // The session and config, to say so when no save stage took its changes.
            check: Option<(Session, Arc<Config>)>,
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
    pub(super) fn inner(future: S::Future) -> Self {
        Self {
            state: State::Inner {
                future,
                check: None,
            },
        }
    }

    pub(super) fn reject(response: S::Response) -> Self {
        Self {
            state: State::Done {
                response: Some(response),
            },
        }
    }

    pub(super) fn load(
        load: LoadFuture,
        request: Request<ReqBody>,
        inner: S,
        config: Arc<Config>,
        www_authenticate: bool,
    ) -> Self {
        Self {
            state: State::Loading {
                load,
                request: Some(request),
                inner: Some(inner),
                config,
                www_authenticate,
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
                StateProj::Loading {
                    load,
                    request,
                    inner,
                    config,
                    www_authenticate,
                } => {
                    let admitted = match ready!(load.as_mut().poll(cx)) {
                        Loaded::Stored(key_id, loaded) => config
                            .admit(&key_id, loaded)
                            .map(|admitted| (key_id, admitted, Vec::<(String, String)>::new()))
                            .map_err(|refusal| refusal.response(*www_authenticate)),
                        #[cfg(feature = "jwt")]
                        Loaded::Token(Ok(token)) => {
                            let key_id = token.key_id;
                            config
                                .admit(&key_id, Ok(Some(token.record)))
                                .map(|admitted| (key_id, admitted, token.context))
                                .map_err(|refusal| refusal.response(*www_authenticate))
                        }
                        #[cfg(feature = "jwt")]
                        Loaded::Token(Err(rejection)) => Err(crate::response::json_error(
                            rejection.status,
                            &rejection.message,
                        )),
                    };
                    let next = match admitted {
                        Ok((key_id, Admitted { session, touch }, context)) => {
                            let mut request = request.take().expect("polled after completion");
                            request.extensions_mut().insert(session.clone());
                            for (name, value) in context {
                                crate::context::ContextValues::insert_into(
                                    request.extensions_mut(),
                                    name,
                                    value,
                                );
                            }
                            let mut inner = inner.take().expect("polled after completion");
                            match touch {
                                None => State::Inner {
                                    future: inner.call(request),
                                    check: Some((session, config.clone())),
                                },
                                Some((tracker, now)) => {
                                    let ip = request.extensions().get::<ClientAddr>().map(|a| a.0);
                                    let user_agent = activity::user_agent(request.headers());
                                    let touch = tracker.touch(
                                        config.store.clone(),
                                        key_id,
                                        ip,
                                        user_agent,
                                        now,
                                    );
                                    State::Touching {
                                        touch: Box::pin(touch),
                                        request: Some(request),
                                        inner: Some(inner),
                                        session,
                                        config: config.clone(),
                                    }
                                }
                            }
                        }
                        Err(response) => State::Done {
                            response: Some(response),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Touching {
                    touch,
                    request,
                    inner,
                    session,
                    config,
                } => {
                    ready!(touch.as_mut().poll(cx));
                    let request = request.take().expect("polled after completion");
                    let mut inner = inner.take().expect("polled after completion");
                    let next = State::Inner {
                        future: inner.call(request),
                        check: Some((session.clone(), config.clone())),
                    };
                    this.state.set(next);
                }
                StateProj::Inner { future, check } => {
                    let output = ready!(future.poll(cx));
                    if let Some((session, config)) = check.take() {
                        config.check_saved(&session);
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
