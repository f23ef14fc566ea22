//! The two error shapes — Tyk's `{"status":"error","message":...}` and Auth0's
//! `{"statusCode":...,"error":...,"message":...}` — as the types that serialise them (and
//! document them: [`ToSchema`]), and JSON responses.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use keycard_core::store::StoreError;
use serde::Serialize;
use utoipa::openapi::{self, ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

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
    /// The error body.
    type Body: Serialize + ToSchema;

    /// The body of an error response with `message`.
    fn body(status: StatusCode, message: impl Into<String>) -> Self::Body;

    /// An error response with `message`.
    fn error(status: StatusCode, message: impl Into<String>) -> Response {
        json(status, &Self::body(status, message))
    }

    /// The documentation of an error response: `description`, the body's schema and, as the
    /// example, the body [`Shape::error`] sends with `message`.
    fn documented(status: StatusCode, description: &str, message: &str) -> openapi::Response {
        let example = serde_json::to_value(Self::body(status, message)).ok();
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(openapi::Ref::from_schema_name(Self::Body::name())))
                    .example(example)
                    .build(),
            )
            .build()
    }

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

/// Tyk's error body.
#[derive(Serialize, ToSchema)]
pub(crate) struct TykError {
    // No doc comment on an inlined enum: utoipa would put it in an `allOf` with an object.
    #[schema(inline)]
    status: TykErrorStatus,
    /// What went wrong.
    message: String,
}

/// The `status` of a Tyk error: always `error`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum TykErrorStatus {
    Error,
}

impl Shape for Tyk {
    type Body = TykError;

    fn body(_: StatusCode, message: impl Into<String>) -> TykError {
        TykError {
            status: TykErrorStatus::Error,
            message: message.into(),
        }
    }
}

/// Auth0's `{"statusCode":...,"error":...,"message":...}`.
pub(crate) struct Auth0;

/// Auth0's error body.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Auth0Error {
    /// The HTTP status code.
    status_code: u16,
    /// The status code's reason phrase.
    error: String,
    /// What went wrong.
    message: String,
    /// Auth0 repeats the reason of a refused token here (`{"error": "Invalid token"}`); absent
    /// on other errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    attributes: Option<Auth0ErrorAttributes>,
}

/// The `attributes` of an Auth0 error.
#[derive(Serialize, ToSchema)]
pub(crate) struct Auth0ErrorAttributes {
    /// The reason, as in `message`.
    error: String,
}

impl Auth0 {
    /// The body Auth0's Management API answers for a token it does not accept:
    /// `{"statusCode":401,"error":"Unauthorized","message":"Invalid token","attributes":{"error":"Invalid token"}}`
    /// (as Auth0 users report it verbatim, e.g. auth0-community/auth0-drupal#130 for
    /// `GET /api/v2/users/{id}`, auth0/auth0-authorization-extension#231).
    pub(crate) fn invalid_token_body(message: &str) -> Auth0Error {
        Auth0Error {
            attributes: Some(Auth0ErrorAttributes {
                error: message.to_owned(),
            }),
            ..Self::body(StatusCode::UNAUTHORIZED, message)
        }
    }
}

impl Shape for Auth0 {
    type Body = Auth0Error;

    fn body(status: StatusCode, message: impl Into<String>) -> Auth0Error {
        Auth0Error {
            status_code: status.as_u16(),
            error: status.canonical_reason().unwrap_or("Error").to_owned(),
            message: message.into(),
            attributes: None,
        }
    }
}

/// The documented answers of [`Shape::store_error`] (500 and 503), for every route that reads
/// or writes the store: `responses(StoreFailures<Tyk>)` in a handler's `#[utoipa::path]`.
pub(crate) struct StoreFailures<S>(PhantomData<S>);

impl<S: Shape> IntoResponses for StoreFailures<S> {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        [
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The session store holds something unreadable",
                STORE_FAILED,
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "The session store is unreachable",
                STORE_UNAVAILABLE,
            ),
        ]
        .into_iter()
        .map(|(status, description, message)| {
            (
                status.as_str().to_owned(),
                RefOr::T(S::documented(status, description, message)),
            )
        })
        .collect()
    }
}
