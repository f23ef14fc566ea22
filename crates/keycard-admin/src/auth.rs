//! Who is calling: the Tyk secret and the Auth0-style bearer tokens with scopes.
//!
//! Every secret is kept only as its SHA-256 digest, and a presented secret is hashed and compared
//! with `subtle`'s constant-time equality. Hashing first makes both sides 32 bytes, so the
//! comparison time depends on neither the secret's content nor its length; `subtle` (rather than
//! a hand-rolled XOR loop) keeps the optimiser from turning the loop back into an early exit.

use std::fmt;
use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::SharedState;
use crate::error::{Auth0, Shape, Tyk};

/// The actor name audit events use for calls authorised by the Tyk secret.
pub(crate) const TYK_ACTOR: &str = "tyk-secret";

/// A secret kept as its SHA-256 digest.
#[derive(Clone)]
pub(crate) struct Secret([u8; 32]);

impl Secret {
    /// `None` for an empty secret: it would let an empty header in.
    pub(crate) fn new(raw: &[u8]) -> Option<Self> {
        (!raw.is_empty()).then(|| Self(Sha256::digest(raw).into()))
    }

    fn matches(&self, digest: &[u8; 32]) -> bool {
        self.0.ct_eq(digest).into()
    }
}

fn digest(presented: &[u8]) -> [u8; 32] {
    Sha256::digest(presented).into()
}

/// A bearer token of the `/api/v2` sessions API: a name (what audit logs show), the secret token
/// (kept hashed) and the scopes it grants (`read:sessions`, `update:sessions`, `delete:sessions`).
///
/// ```
/// use keycard_admin::AdminToken;
///
/// let token = AdminToken::new("support-desk", "a-long-random-token", ["read:sessions"]);
/// assert_eq!(token.name(), "support-desk");
/// assert!(token.has_scope("read:sessions"));
/// assert!(!format!("{token:?}").contains("a-long-random-token"));
/// ```
#[derive(Clone)]
pub struct AdminToken {
    name: String,
    secret: Option<Secret>,
    scopes: Vec<String>,
}

impl AdminToken {
    /// A token named `name` (shown in audit events, never the token itself) granting `scopes`.
    /// An empty `token` never matches.
    pub fn new<I, S>(name: impl Into<String>, token: impl AsRef<[u8]>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            name: name.into(),
            secret: Secret::new(token.as_ref()),
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }

    /// The token's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scopes the token grants.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(String::as_str)
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// A request authorised by the Tyk secret (`X-Tyk-Authorization`).
pub(crate) struct TykAdmin;

impl FromRequestParts<SharedState> for TykAdmin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get("x-tyk-authorization")
            .map(|value| digest(value.as_bytes()));
        match (&state.tyk_secret, presented) {
            (Some(secret), Some(presented)) if secret.matches(&presented) => Ok(Self),
            _ => Err(Tyk::error(
                StatusCode::FORBIDDEN,
                "Attempted administrative access with invalid or missing key!",
            )),
        }
    }
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

fn unauthorized(message: &str, error: Option<&str>) -> Response {
    let challenge = match error {
        Some(error) => format!("Bearer realm=\"keycard-admin\", error=\"{error}\""),
        None => "Bearer realm=\"keycard-admin\"".to_owned(),
    };
    let mut response = Auth0::error(StatusCode::UNAUTHORIZED, message);
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
            return Err(unauthorized("Missing authentication", None));
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
        let presented = digest(token);
        // Look at every token (no early exit), so timing does not tell which one matched.
        let mut found = None;
        for candidate in &state.tokens {
            let matches = candidate
                .secret
                .as_ref()
                .is_some_and(|secret| secret.matches(&presented));
            if matches && found.is_none() {
                found = Some(candidate);
            }
        }
        let Some(token) = found else {
            return Err(unauthorized("Invalid token", Some("invalid_token")));
        };
        if !S::ANY_OF.iter().any(|scope| token.has_scope(scope)) {
            return Err(Auth0::error(
                StatusCode::FORBIDDEN,
                format!(
                    "Insufficient scope, expected any of: {}",
                    S::ANY_OF.join(",")
                ),
            )
            .into_response());
        }
        Ok(Self {
            actor: token.name.clone(),
            _scope: PhantomData,
        })
    }
}
