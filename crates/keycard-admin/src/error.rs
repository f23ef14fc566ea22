//! The two error shapes — Tyk's `{"status":"error","message":...}` and Auth0's
//! `{"statusCode":...,"error":...,"message":...}` — and JSON responses.

use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use keycard_core::store::StoreError;
use serde::Serialize;
use serde_json::json;

/// The message of a 503 when the store is unreachable (the cause is logged, not sent).
pub(crate) const STORE_UNAVAILABLE: &str = "Session store unavailable";
/// The message of a 500 when the store holds something unreadable.
const STORE_FAILED: &str = "Internal error while reading the session store";

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An API's error shape.
pub(crate) trait Shape: Send + Sync + 'static {
    /// An error response with `message`.
    fn error(status: StatusCode, message: impl Into<String>) -> Response;

    /// The response to a store failure the handler has no specific answer for.
    fn store_error(error: &StoreError) -> Response {
        match error {
            StoreError::Unavailable(_) => {
                tracing::error!(target: "keycard::admin", error = %error, cause = ?std::error::Error::source(error), "session store unavailable");
                Self::error(StatusCode::SERVICE_UNAVAILABLE, STORE_UNAVAILABLE)
            }
            other => {
                tracing::error!(target: "keycard::admin", error = %other, "session store failed");
                Self::error(StatusCode::INTERNAL_SERVER_ERROR, STORE_FAILED)
            }
        }
    }
}

/// Tyk's `{"status":"error","message":...}`.
pub(crate) struct Tyk;

impl Shape for Tyk {
    fn error(status: StatusCode, message: impl Into<String>) -> Response {
        json(
            status,
            &json!({"status": "error", "message": message.into()}),
        )
    }
}

/// Auth0's `{"statusCode":...,"error":...,"message":...}`.
pub(crate) struct Auth0;

impl Shape for Auth0 {
    fn error(status: StatusCode, message: impl Into<String>) -> Response {
        json(
            status,
            &json!({
                "statusCode": status.as_u16(),
                "error": status.canonical_reason().unwrap_or("Error"),
                "message": message.into(),
            }),
        )
    }
}
