//! The JSON error responses keycard sends to clients: `{"error": "<message>"}`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// A `{"error": message}` response with `content-type: application/json`.
pub(crate) fn json_error<B: From<Bytes>>(status: StatusCode, message: &str) -> Response<B> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(B::from(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The response for a request whose path cannot be normalised (a dot segment in any spelling,
/// a malformed escape): see `normalize`.
pub(crate) fn invalid_request_path<B: From<Bytes>>(
    why: crate::normalize::InvalidPath,
) -> Response<B> {
    tracing::debug!(?why, "keycard: request path refused");
    json_error(StatusCode::BAD_REQUEST, "Invalid request path")
}

/// The response for a layer that needs a session but runs outside any session-load layer. It is a
/// configuration error, reported loudly (error log + 500) rather than silently skipped.
pub(crate) fn missing_session_layer<B: From<Bytes>>(layer: &'static str) -> Response<B> {
    tracing::error!(
        layer,
        "keycard: {layer} found no session on the request; stack it inside SessionLoadLayer \
         (ServiceBuilder order: SessionLoadLayer first, then {layer})"
    );
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Server misconfigured: session layer missing",
    )
}
