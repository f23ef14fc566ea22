//! The axum extractor for the request's session.
//!
//! ```
//! use axum::{Json, Router, routing::post};
//! use keycard_layers::extract::Session;
//! use serde_json::{Value, json};
//!
//! async fn visit(session: Session) -> Result<Json<Value>, keycard_layers::extract::MetadataRejection> {
//!     let visits = session.get("visits").and_then(|v| v.as_u64()).unwrap_or(0) + 1;
//!     session.set_metadata("visits", json!(visits))?;
//!     Ok(Json(json!({ "visits": visits })))
//! }
//!
//! // Stack SessionLoadLayer and PersistLayer around the router (see the `auth` module).
//! let app: Router = Router::new().route("/visits", post(visit));
//! ```
//!
//! `Option<Session>` extracts `None` where a session-load layer in optional mode let a request
//! without a key through.

use std::ops::Deref;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};

use http::StatusCode;
use http::request::Parts;
use keycard_core::metadata::MetadataError;

use crate::handle::{NoSession, SessionHandle};
use crate::response::{json_error, missing_session_layer};

/// The request's session: a [`SessionHandle`] (it derefs to one).
#[derive(Clone, Debug)]
pub struct Session(pub SessionHandle);

impl Deref for Session {
    type Target = SessionHandle;

    fn deref(&self) -> &SessionHandle {
        &self.0
    }
}

/// Why a [`Session`] could not be extracted.
#[derive(Debug)]
pub enum SessionRejection {
    /// The session-load layer let the request through without a key (optional mode); extract
    /// `Option<Session>` to accept that.
    NoSession,
    /// No session-load layer ran: a configuration error.
    LayerMissing,
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            Self::NoSession => json_error::<axum::body::Body>(
                StatusCode::UNAUTHORIZED,
                "Authorization field missing",
            ),
            Self::LayerMissing => missing_session_layer("the Session extractor"),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(handle) = parts.extensions.get::<SessionHandle>() {
            return Ok(Self(handle.clone()));
        }
        if parts.extensions.get::<NoSession>().is_some() {
            return Err(SessionRejection::NoSession);
        }
        Err(SessionRejection::LayerMissing)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = SessionRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match <Self as FromRequestParts<S>>::from_request_parts(parts, state).await {
            Ok(session) => Ok(Some(session)),
            Err(SessionRejection::NoSession) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

/// A metadata write a handler made broke the limits: 400 with the limit's message, so handlers
/// can use `?` on [`SessionHandle::set_metadata`].
#[derive(Debug)]
pub struct MetadataRejection(pub MetadataError);

impl From<MetadataError> for MetadataRejection {
    fn from(error: MetadataError) -> Self {
        Self(error)
    }
}

impl IntoResponse for MetadataRejection {
    fn into_response(self) -> Response {
        json_error::<axum::body::Body>(StatusCode::BAD_REQUEST, &self.0.to_string())
    }
}
