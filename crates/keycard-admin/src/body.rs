//! Request bodies and path parameters with rejections in each API's error shape, so axum's
//! plain-text rejections never reach a client.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::response::Response;
use http::request::Parts;
use http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Auth0, Shape, Tyk};

async fn bytes<S: Shape, St: Send + Sync>(req: Request, state: &St) -> Result<Bytes, Response> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            S::error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
        } else {
            S::error(StatusCode::BAD_REQUEST, "Request body could not be read")
        }
    })
}

/// A Tyk JSON body (session or policy). Like Tyk, the content type is not checked (Tyk's own
/// examples send none); anything that does not parse is Tyk's 400 `Request malformed`.
pub(crate) struct TykJson<T>(pub(crate) T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for TykJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        let body = bytes::<Tyk, St>(req, state).await?;
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|_| Tyk::error(StatusCode::BAD_REQUEST, "Request malformed"))
    }
}

/// An Auth0 JSON body: `Content-Type: application/json` (415 otherwise) and valid JSON (400
/// `Invalid request payload JSON format` otherwise). The handler validates the structure.
pub(crate) struct Auth0Json(pub(crate) Value);

fn is_json(parts: &Request) -> bool {
    parts
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

impl<St: Send + Sync> FromRequest<St> for Auth0Json {
    type Rejection = Response;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(Auth0::error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type must be application/json",
            ));
        }
        let body = bytes::<Auth0, St>(req, state).await?;
        serde_json::from_slice(&body).map(Self).map_err(|_| {
            Auth0::error(
                StatusCode::BAD_REQUEST,
                "Invalid request payload JSON format",
            )
        })
    }
}

/// The single path parameter of a route, with a rejection in the API's shape.
pub(crate) struct Param<S>(pub(crate) String, pub(crate) PhantomData<S>);

impl<S: Shape, St: Send + Sync> FromRequestParts<St> for Param<S> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value, PhantomData))
            .map_err(|_| S::error(StatusCode::BAD_REQUEST, "Invalid path parameter"))
    }
}

/// Query parameters as `(name, value)` pairs.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The value of query parameter `name`, the last one wins.
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Parses `take` within `1..=max` (default `default`); `Err` carries the bad value.
pub(crate) fn take_param(
    pairs: &[(String, String)],
    default: usize,
    max: usize,
) -> Result<usize, ()> {
    match query_value(pairs, "take") {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(()),
        },
    }
}
