//! Request bodies and path parameters with rejections in each API's error shape, so axum's
//! plain-text rejections never reach a client.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::response::Response;
use http::request::Parts;
use http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::IntoResponses;
use utoipa::openapi::{self, RefOr};

use crate::error::{Auth0, Shape, Tyk};

/// Tyk's answer to a body that does not parse.
pub(crate) const TYK_MALFORMED: &str = "Request malformed";
/// The answer to a body over axum's limit (2 MB by default).
const TOO_LARGE: &str = "Request body too large";
/// The answer to a path parameter that is not UTF-8 once percent-decoded.
pub(crate) const INVALID_PARAM: &str = "Invalid path parameter";
/// The Auth0 answer to a body without a JSON content type.
pub(crate) const AUTH0_NOT_JSON: &str = "Content-Type must be application/json";
/// The Auth0 answer to a body that is not JSON.
pub(crate) const AUTH0_INVALID_JSON: &str = "Invalid request payload JSON format";

async fn bytes<S: Shape, St: Send + Sync>(req: Request, state: &St) -> Result<Bytes, Response> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            S::error(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE)
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
        tyk_json(req, state, TYK_MALFORMED).await.map(Self)
    }
}

/// The body of Tyk's `POST /tyk/keys/policy/{key}`, refused in Tyk's words for it.
pub(crate) struct TykInstruction<T>(pub(crate) T);

/// What Tyk answers a `POST /tyk/keys/policy/{key}` body that does not parse.
pub(crate) const TYK_BAD_INSTRUCTION: &str = "Couldn't decode instruction";

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for TykInstruction<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        tyk_json(req, state, TYK_BAD_INSTRUCTION).await.map(Self)
    }
}

async fn tyk_json<T: DeserializeOwned, St: Send + Sync>(
    req: Request,
    state: &St,
    malformed: &str,
) -> Result<T, Response> {
    let body = bytes::<Tyk, St>(req, state).await?;
    serde_json::from_slice(&body).map_err(|_| Tyk::error(StatusCode::BAD_REQUEST, malformed))
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
                AUTH0_NOT_JSON,
            ));
        }
        let body = bytes::<Auth0, St>(req, state).await?;
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|_| Auth0::error(StatusCode::BAD_REQUEST, AUTH0_INVALID_JSON))
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
            .map_err(|_| S::error(StatusCode::BAD_REQUEST, INVALID_PARAM))
    }
}

/// The documented 413 of [`TykJson`] and [`Auth0Json`]: `responses(TooLarge<Tyk>)` in the
/// `#[utoipa::path]` of every handler that reads a body.
pub(crate) struct TooLarge<S>(PhantomData<S>);

impl<S: Shape> IntoResponses for TooLarge<S> {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        let status = StatusCode::PAYLOAD_TOO_LARGE;
        let response = S::documented(status, "The body is over 2 MB", TOO_LARGE);
        BTreeMap::from([(status.as_str().to_owned(), RefOr::T(response))])
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
