//! What the OAuth endpoints read and answer: RFC 6749 §5.2 error bodies, form (or JSON) request
//! parameters, and client authentication.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::response::Response;
use base64::Engine as _;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Shape, json};

/// RFC 6749 §5.2's `{"error": code, "error_description": text}`.
pub(crate) struct OAuth;

/// An OAuth error (RFC 6749 §5.2).
#[derive(Serialize, ToSchema)]
pub(crate) struct OAuthError {
    /// The error code: `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unauthorized_client`, `unsupported_grant_type`, `unsupported_response_type`,
    /// `server_error`, `temporarily_unavailable`.
    error: String,
    /// What went wrong.
    error_description: String,
}

impl Shape for OAuth {
    type Body = OAuthError;

    fn body(status: StatusCode, message: impl Into<String>) -> OAuthError {
        let error = match status {
            StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
            StatusCode::INTERNAL_SERVER_ERROR => "server_error",
            StatusCode::UNAUTHORIZED => "invalid_client",
            _ => "invalid_request",
        };
        OAuthError {
            error: error.to_owned(),
            error_description: message.into(),
        }
    }
}

/// An OAuth error response with an explicit code.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = json(
        status,
        &OAuthError {
            error: error.to_owned(),
            error_description: description.to_owned(),
        },
    );
    if status == StatusCode::UNAUTHORIZED {
        // RFC 6749 §5.2: a 401 invalid_client names the scheme the client may use.
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oauth\""),
        );
    }
    response
}

/// A refusal on its way to the client, boxed so the `Result`s that carry it stay small.
pub(crate) struct Refused(Box<Response>);

impl From<Response> for Refused {
    fn from(response: Response) -> Self {
        Self(Box::new(response))
    }
}

impl Refused {
    /// The response.
    pub(crate) fn response(self) -> Response {
        *self.0
    }
}

/// `400 invalid_request`.
pub(crate) fn invalid_request(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// `400 invalid_grant`.
pub(crate) fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// The request's parameters: the form body (`application/x-www-form-urlencoded`), or a JSON
/// object of strings when the content type is `application/json` (Tyk's `JSONToFormValues`);
/// query parameters are not read (RFC 6749 §3.2 wants the token request in the body). The
/// first value of a repeated name wins.
pub(crate) struct Form {
    pub(crate) params: HashMap<String, String>,
    pub(crate) authorization: Option<String>,
    /// The client's throttling key (its IP, IPv6 by /64): failed client authentications are
    /// counted per client.
    pub(crate) peer: std::net::IpAddr,
}

/// The answer to a body over the limit, or unreadable, or JSON that is not an object of
/// strings.
const UNREADABLE: &str = "The request body could not be read as form parameters";

impl<St: Send + Sync> FromRequest<St> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        let peer = crate::throttle::client_of_extensions(req.extensions());
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let json_body = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(';').next().unwrap_or("").trim() == "application/json");
        let body = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                OAuth::error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            } else {
                invalid_request(UNREADABLE)
            }
        })?;
        let mut params = HashMap::new();
        if json_body {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&body).map_err(|_| invalid_request(UNREADABLE))?;
            for (name, value) in object {
                let value = match value {
                    serde_json::Value::String(s) => s,
                    // Tyk's key_rules may come as an object in a JSON body.
                    other if name == "key_rules" => other.to_string(),
                    _ => return Err(invalid_request(UNREADABLE)),
                };
                params.insert(name, value);
            }
        } else {
            for (name, value) in form_urlencoded::parse(&body) {
                params
                    .entry(name.into_owned())
                    .or_insert(value.into_owned());
            }
        }
        Ok(Self {
            params,
            authorization,
            peer,
        })
    }
}

impl Form {
    /// A parameter; an empty value counts as absent.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The client credentials: HTTP Basic (RFC 6749 §2.3.1, each part form-decoded), else the
    /// `client_id` and `client_secret` parameters. `Err` when Basic is malformed.
    pub(crate) fn client_credentials(&self) -> Result<(Option<String>, Option<String>), ()> {
        if let Some(value) = &self.authorization {
            let Some(encoded) = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                .map(|(_, rest)| rest.trim())
            else {
                return Err(());
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| ())?;
            let decoded = String::from_utf8(decoded).map_err(|_| ())?;
            let (id, secret) = decoded.split_once(':').ok_or(())?;
            let unescape = |s: &str| -> String {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            return Ok((Some(unescape(id)), Some(unescape(secret))));
        }
        Ok((
            self.get("client_id").map(str::to_owned),
            self.get("client_secret").map(str::to_owned),
        ))
    }
}
