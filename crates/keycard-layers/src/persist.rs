//! Persist-on-change: after the inner service answers, save the metadata changes the request made
//! (reference: `docs/persist.md` in the repository).
//!
//! Most applications get this stage from `keycard::Keycard`, which always adds it with the store
//! the load stage reads; stack it yourself only in a custom stack.
//!
//! If the [`Session`] recorded changes, they are applied to the store **once**, as one
//! atomic [`MetadataDelta`](keycard_core::metadata::MetadataDelta) — concurrent requests that
//! change different keys of one session all survive; a request that changed nothing causes no
//! store call at all. The save happens whatever the status, and also when the inner service
//! returns an error. A session deleted meanwhile is not recreated.
//!
//! If the save fails, the response is replaced by 503 `{"error":"Session could not be saved"}`
//! (Auth0: a failed metadata write fails the transaction), unless the layer was built with
//! [`PersistLayer::keep_response_on_failure`], which logs the failure and keeps the response.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::post};
//! use http::{Request, StatusCode};
//! use keycard_core::store::{MemoryStore, SessionStore};
//! use keycard_layers::auth::SessionLoadLayer;
//! use keycard_layers::persist::PersistLayer;
//! use keycard_layers::session::Session;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! let id = store.insert_key("secret-key", serde_json::json!({})).unwrap().key_id;
//!
//! let app = Router::new()
//!     .route("/plan", post(|session: Session| async move { session.insert("plan", "gold").unwrap() }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(SessionLoadLayer::new(store.clone()))
//!             .layer(PersistLayer::new(store.clone())),
//!     );
//!
//! let request = Request::post("/plan")
//!     .header("authorization", "Bearer secret-key")
//!     .body(axum::body::Body::empty())
//!     .unwrap();
//! assert_eq!(app.oneshot(request).await.unwrap().status(), StatusCode::OK);
//! assert_eq!(store.load(&id).await.unwrap().unwrap().meta_data["plan"], "gold");
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use keycard_core::store::{SessionStore, StoreError};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::response::{json_error, missing_session_layer};
use crate::session::Session;

/// Saves the request's metadata changes after the response. Stack it inside
/// [`SessionLoadLayer`](crate::auth::SessionLoadLayer).
#[derive(Clone)]
pub struct PersistLayer {
    store: Arc<dyn SessionStore>,
    keep_response_on_failure: bool,
}

impl PersistLayer {
    /// Saves changes to `store` (the same store the session-load layer reads).
    pub fn new(store: impl SessionStore) -> Self {
        Self::from_shared_store(Arc::new(store))
    }

    /// Like [`new`](Self::new), for a store that is already shared.
    pub fn from_shared_store(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            keep_response_on_failure: false,
        }
    }

    /// When a save fails, log it and keep the response instead of answering 503.
    pub fn keep_response_on_failure(mut self) -> Self {
        self.keep_response_on_failure = true;
        self
    }
}

impl<S> Layer<S> for PersistLayer {
    type Service = Persist<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Persist {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`PersistLayer`].
#[derive(Clone)]
pub struct Persist<S> {
    inner: S,
    layer: PersistLayer,
}

impl<S> Persist<S> {
    define_inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Persist<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let handle = request.extensions().get::<Session>().cloned();
        if !crate::session::loaded(request.extensions()) {
            return ResponseFuture {
                state: State::Done {
                    result: Some(Ok(missing_session_layer("PersistLayer"))),
                },
            };
        }
        ResponseFuture {
            state: State::Inner {
                future: self.inner.call(request),
                handle,
                layer: Some(self.layer.clone()),
            },
        }
    }
}

type ApplyFuture = Pin<Box<dyn Future<Output = Result<bool, StoreError>> + Send>>;

pin_project! {
    /// The response future of [`Persist`].
    pub struct ResponseFuture<F, T, E> {
        #[pin]
        state: State<F, T, E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T, E> {
        Inner {
            #[pin]
            future: F,
            handle: Option<Session>,
            layer: Option<PersistLayer>,
        },
        Saving {
            apply: ApplyFuture,
            result: Option<Result<T, E>>,
            keep_response: bool,
            key: String,
        },
        Done {
            result: Option<Result<T, E>>,
        },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F, Response<ResBody>, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Inner {
                    future,
                    handle,
                    layer,
                } => {
                    let result = ready!(future.poll(cx));
                    let Some(handle) = handle.as_ref() else {
                        return Poll::Ready(result);
                    };
                    let changes = handle.take_changes();
                    if changes.is_empty() {
                        return Poll::Ready(result);
                    }
                    let layer = layer.take().expect("polled after completion");
                    let key_id = handle.key_id();
                    let key = key_id.short().to_owned();
                    let store = layer.store;
                    let apply: ApplyFuture = Box::pin(async move {
                        store
                            .save_changes(&key_id, &changes)
                            .await
                            .map(|version| version.is_some())
                    });
                    this.state.set(State::Saving {
                        apply,
                        result: Some(result),
                        keep_response: layer.keep_response_on_failure,
                        key,
                    });
                }
                StateProj::Saving {
                    apply,
                    result,
                    keep_response,
                    key,
                } => {
                    let saved = ready!(apply.as_mut().poll(cx));
                    let result = result.take().expect("polled after completion");
                    let result = match saved {
                        Ok(true) => result,
                        Ok(false) => {
                            tracing::info!(key = %key, "keycard: session was deleted during the request; its metadata changes were dropped");
                            result
                        }
                        Err(error) => {
                            tracing::error!(key = %key, error = %error, cause = ?std::error::Error::source(&error), "keycard: saving session metadata failed");
                            match result {
                                Ok(_) if !*keep_response => Ok(json_error(
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    "Session could not be saved",
                                )),
                                other => other,
                            }
                        }
                    };
                    return Poll::Ready(result);
                }
                StateProj::Done { result } => {
                    return Poll::Ready(result.take().expect("polled after completion"));
                }
            }
        }
    }
}
