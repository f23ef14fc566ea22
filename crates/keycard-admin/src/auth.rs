//! Who is calling: extractors that check the Tyk secret and the bearer tokens' scopes against
//! the [credentials](crate::credentials) the API was built with.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use utoipa::IntoResponses;
use utoipa::openapi::{self, HeaderBuilder, RefOr};

use crate::credentials::digest;
use crate::error::{Auth0, Shape, Tyk};
use crate::state::SharedState;
use crate::throttle::client_of;

/// The actor name audit events use for calls authorised by the Tyk secret.
pub(crate) const TYK_ACTOR: &str = "tyk-secret";

/// The message of the 403 without the right `X-Tyk-Authorization` (Tyk's own words).
const TYK_REFUSED: &str = "Attempted administrative access with invalid or missing key!";
/// The message of the 401 without an `Authorization` header.
const MISSING_AUTHENTICATION: &str = "Missing authentication";

/// A request authorised by the Tyk secret (`X-Tyk-Authorization`).
pub(crate) struct TykAdmin;

impl FromRequestParts<SharedState> for TykAdmin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let refused = || Tyk::error(StatusCode::FORBIDDEN, TYK_REFUSED);
        // No secret configured: the Tyk API is off, and no header is a guess worth counting.
        let (Some(secret), Some(value)) =
            (&state.tyk_secret, parts.headers.get("x-tyk-authorization"))
        else {
            return Err(refused());
        };
        let client = client_of(parts);
        let attempt = state
            .throttle
            .attempt(client)
            .map_err(too_many_failures::<Tyk>)?;
        if secret.matches(&digest(value.as_bytes())) {
            return Ok(Self);
        }
        attempt.failed();
        tracing::warn!(target: "keycard::admin", %client, api = "tyk", "admin authentication failed: wrong X-Tyk-Authorization");
        Err(refused())
    }
}

/// The documented refusal of [`TykAdmin`]: `responses(TykRefusals)` in every Tyk handler's
/// `#[utoipa::path]`.
pub(crate) struct TykRefusals;

impl IntoResponses for TykRefusals {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        let status = StatusCode::FORBIDDEN;
        let response = Tyk::documented(
            status,
            "`X-Tyk-Authorization` is missing or wrong (or the API has no Tyk secret)",
            TYK_REFUSED,
        );
        BTreeMap::from([
            (status.as_str().to_owned(), RefOr::T(response)),
            throttled::<Tyk>(),
        ])
    }
}

/// The documented 429 of a client that spent its failure budget, with `Retry-After`.
fn throttled<S: Shape>() -> (String, RefOr<openapi::Response>) {
    let status = StatusCode::TOO_MANY_REQUESTS;
    let mut response = S::documented(
        status,
        "This client presented too many wrong credentials in the failure window; every \
         authenticated request is refused until it ends, whatever its credential",
        &too_many_failures_message(30),
    );
    response.headers.insert(
        header::RETRY_AFTER.as_str().to_owned(),
        HeaderBuilder::new()
            .schema(Some(
                openapi::schema::ObjectBuilder::new().schema_type(openapi::schema::Type::Integer),
            ))
            .description(Some("Seconds until the failure window ends"))
            .build()
            .into(),
    );
    (status.as_str().to_owned(), RefOr::T(response))
}

pub(crate) fn too_many_failures_message(seconds: u64) -> String {
    format!("Too many failed authentication attempts; retry in {seconds} seconds")
}

/// The scopes an Auth0 route accepts (any one of them).
pub(crate) trait RequiredScope: Send + Sync + 'static {
    /// Accepted scopes; the first is the canonical one.
    const ANY_OF: &'static [&'static str];
}

/// `read:sessions`.
pub(crate) struct ReadSessions;
impl RequiredScope for ReadSessions {
    const ANY_OF: &'static [&'static str] = &["read:sessions"];
}

/// `update:sessions` (Auth0 also accepts `update:session`).
pub(crate) struct UpdateSessions;
impl RequiredScope for UpdateSessions {
    const ANY_OF: &'static [&'static str] = &["update:sessions", "update:session"];
}

/// `delete:sessions`.
pub(crate) struct DeleteSessions;
impl RequiredScope for DeleteSessions {
    const ANY_OF: &'static [&'static str] = &["delete:sessions"];
}

/// A request authorised by an admin bearer token holding one of `S::ANY_OF`; carries the
/// token's name for audit events. Checked before the body is read, so a caller without the
/// scope learns nothing about body validation.
pub(crate) struct Bearer<S> {
    pub(crate) actor: String,
    _scope: PhantomData<S>,
}

/// 429 in the API's shape, with `Retry-After` in whole seconds (rounded up).
pub(crate) fn too_many_failures<S: Shape>(wait: Duration) -> Response {
    retry_after(wait, |seconds| {
        S::error(
            StatusCode::TOO_MANY_REQUESTS,
            too_many_failures_message(seconds),
        )
    })
}

/// The answer of a client over its failure budget: `answer(seconds)` (`wait` rounded up to
/// whole seconds) with `Retry-After`.
pub(crate) fn retry_after(wait: Duration, answer: impl FnOnce(u64) -> Response) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = answer(seconds);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn insufficient_scope<S: RequiredScope>() -> String {
    format!(
        "Insufficient scope, expected any of: {}",
        S::ANY_OF.join(",")
    )
}

fn unauthorized(message: &str, error: Option<&str>) -> Response {
    let challenge = match error {
        Some(error) => format!("Bearer realm=\"keycard-admin\", error=\"{error}\""),
        None => "Bearer realm=\"keycard-admin\"".to_owned(),
    };
    let mut response = if error == Some("invalid_token") {
        crate::error::json(
            StatusCode::UNAUTHORIZED,
            &Auth0::invalid_token_body(message),
        )
    } else {
        Auth0::error(StatusCode::UNAUTHORIZED, message)
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

impl<S: RequiredScope> FromRequestParts<SharedState> for Bearer<S> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized(MISSING_AUTHENTICATION, None));
        };
        let token = value
            .as_bytes()
            .split_at_checked(7)
            .filter(|(scheme, token)| scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty())
            .map(|(_, token)| token);
        let Some(token) = token else {
            return Err(unauthorized(
                "Bad HTTP authentication header format",
                Some("invalid_request"),
            ));
        };
        let client = client_of(parts);
        let attempt = state
            .throttle
            .attempt(client)
            .map_err(too_many_failures::<Auth0>)?;
        let presented = digest(token);
        // Look at every token (no early exit), so timing does not tell which one matched.
        let mut found = None;
        for candidate in &state.tokens {
            if candidate.matches(&presented) && found.is_none() {
                found = Some(candidate);
            }
        }
        let Some(token) = found else {
            attempt.failed();
            tracing::warn!(target: "keycard::admin", %client, api = "auth0", "admin authentication failed: unknown bearer token");
            return Err(unauthorized("Invalid token", Some("invalid_token")));
        };
        if !S::ANY_OF.iter().any(|scope| token.has_scope(scope)) {
            return Err(
                Auth0::error(StatusCode::FORBIDDEN, insufficient_scope::<S>()).into_response(),
            );
        }
        Ok(Self {
            actor: token.name().to_owned(),
            _scope: PhantomData,
        })
    }
}

/// The documented refusals of [`Bearer<S>`]: `responses(BearerRefusals<ReadSessions>)` in every
/// Auth0 handler's `#[utoipa::path]`, next to `security(("bearer" = [...]))` naming each scope
/// of `S::ANY_OF` (a test holds the two together).
pub(crate) struct BearerRefusals<S>(PhantomData<S>);

impl<S: RequiredScope> IntoResponses for BearerRefusals<S> {
    fn responses() -> BTreeMap<String, RefOr<openapi::Response>> {
        let mut unauthorized = Auth0::documented(
            StatusCode::UNAUTHORIZED,
            "No `Authorization: Bearer` header, a malformed one, or an unknown token",
            MISSING_AUTHENTICATION,
        );
        unauthorized.headers.insert(
            header::WWW_AUTHENTICATE.as_str().to_owned(),
            HeaderBuilder::new()
                .schema(Some(openapi::schema::ObjectBuilder::new().schema_type(openapi::schema::Type::String)))
                .description(Some(
                    "`Bearer realm=\"keycard-admin\"`, with `error=\"invalid_request\"` or `error=\"invalid_token\"` when a header was sent",
                ))
                .build()
                .into(),
        );
        let forbidden = Auth0::documented(
            StatusCode::FORBIDDEN,
            "The token holds none of the scopes the operation accepts",
            &insufficient_scope::<S>(),
        );
        BTreeMap::from([
            (
                StatusCode::UNAUTHORIZED.as_str().to_owned(),
                RefOr::T(unauthorized),
            ),
            (
                StatusCode::FORBIDDEN.as_str().to_owned(),
                RefOr::T(forbidden),
            ),
            throttled::<Auth0>(),
        ])
    }
}
