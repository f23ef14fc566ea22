//! The client-facing endpoints: `POST /oauth/token` (RFC 6749 §3.2, with the
//! `client_credentials`, `authorization_code` + PKCE and `refresh_token` grants),
//! `POST /oauth/revoke` (RFC 7009) and `POST /oauth/revoke_all` (Tyk's).

use axum::extract::State;
use axum::response::Response;
use base64::Engine as _;
use http::StatusCode;
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::session::unix_now;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::issue::{CLIENT_FIELD, issue, policy_template};
use super::store::{Challenge, Client, Grant};
use super::wire::{Form, Refused, invalid_grant, invalid_request, oauth_error};
use crate::error::{Shape, Tyk, json};
use crate::state::SharedState;

const BAD_CLIENT: &str = "Client authentication failed";
const GRANT_MISSING: &str = "grant_type is required";
const CODE_INVALID: &str = "The authorization code is invalid, expired or used";
const REDIRECT_MISMATCH: &str = "redirect_uri does not match the authorization request";
const VERIFIER_MISSING: &str =
    "code_verifier is required: the authorization request had a code_challenge";
const VERIFIER_UNEXPECTED: &str =
    "code_verifier was sent, but the authorization request had no code_challenge";
const VERIFIER_MISMATCH: &str = "code_verifier does not match the code_challenge";
const REFRESH_INVALID: &str = "The refresh token is invalid, expired or used";

// Tyk's words (gateway/api.go) for the revoke endpoints.
const CLIENT_ID_EMPTY: &str = "client_id is required";
const CLIENT_SECRET_EMPTY: &str = "client_secret is required";
const CLIENT_SECRET_WRONG: &str = "client secret is wrong";
const CLIENT_UNKNOWN: &str = "error getting oauth client";
const TOKEN_EMPTY: &str = "token is required";

/// Tyk's `{"status": "ok", "message": ...}`.
#[derive(Serialize)]
struct TykOk {
    status: &'static str,
    message: &'static str,
}

fn tyk_ok(message: &'static str) -> Response {
    json(
        StatusCode::OK,
        &TykOk {
            status: "ok",
            message,
        },
    )
}

/// The authenticated client of a token request (401 `invalid_client` otherwise). Failures
/// count against the client's (its IP's) budget, as the admin secrets' do: past it, 429
/// `invalid_client` with `Retry-After`, whatever the credentials.
fn authenticated(state: &SharedState, form: &Form) -> Result<Client, Refused> {
    let attempt = state.oauth_throttle.attempt(form.peer).map_err(|wait| {
        Refused::from(crate::auth::retry_after(wait, |seconds| {
            oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_client",
                &crate::auth::too_many_failures_message(seconds),
            )
        }))
    })?;
    let refused = || {
        Refused::from(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            BAD_CLIENT,
        ))
    };
    let client = form
        .client_credentials()
        .ok()
        .and_then(|credentials| match credentials {
            (Some(id), Some(secret)) => state.oauth.authenticate(&id, &secret),
            _ => None,
        });
    match client {
        Some(client) => Ok(client),
        None => {
            attempt.failed();
            tracing::warn!(target: "keycard::admin", client = %form.peer, "OAuth client authentication failed");
            Err(refused())
        }
    }
}

/// Exchange a grant for an access token
pub(crate) async fn token(State(state): State<SharedState>, form: Form) -> Response {
    let client = match authenticated(&state, &form) {
        Ok(client) => client,
        Err(refused) => return refused.response(),
    };
    let answer = match form.get("grant_type") {
        None => return invalid_request(GRANT_MISSING),
        Some("client_credentials") => {
            // RFC 6749 §4.4.3: no refresh token for this grant.
            let template = match policy_template(&state, &client) {
                Ok(template) => template,
                Err(refused) => return refused.response(),
            };
            let grant = Grant {
                client_id: client.client_id,
                template,
            };
            issue(&state, grant, false).await
        }
        Some("authorization_code") => {
            let grant = match code_grant(&state, &client, &form) {
                Ok(grant) => grant,
                Err(refused) => return refused.response(),
            };
            issue(&state, grant, true).await
        }
        Some("refresh_token") => {
            let Some(token) = form.get("refresh_token") else {
                return invalid_request("refresh_token is required");
            };
            // Single use: taken now, whatever follows; a refresh issues a new one.
            let Some(refresh) = state.oauth.take_refresh(token) else {
                return invalid_grant(REFRESH_INVALID);
            };
            if refresh.grant.client_id != client.client_id || refresh.expires < unix_now() {
                return invalid_grant(REFRESH_INVALID);
            }
            let answer = issue(&state, refresh.grant.clone(), true).await;
            if answer.is_ok() {
                // The access token the refresh token came with ends with it.
                // (A store that cannot be reached is logged: that token lives to its expiry.)
                let _ = revoke_access(&state, &client.client_id, &refresh.access).await;
            } else {
                // Nothing was issued: the refresh token stays usable.
                state.oauth.save_refresh(token, refresh);
            }
            answer
        }
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials, authorization_code or refresh_token",
            );
        }
    };
    match answer {
        Ok(answer) => {
            let mut response = json(StatusCode::OK, &answer);
            // RFC 6749 §5.1.
            response.headers_mut().insert(
                http::header::PRAGMA,
                http::HeaderValue::from_static("no-cache"),
            );
            response
        }
        Err(refused) => refused,
    }
}

/// The grant of an `authorization_code` request: the code taken (single use), its client,
/// redirect URI and PKCE verifier checked.
fn code_grant(state: &SharedState, client: &Client, form: &Form) -> Result<Grant, Refused> {
    let code = form
        .get("code")
        .ok_or_else(|| Refused::from(invalid_request("code is required")))?;
    let pending = state
        .oauth
        .take_code(code)
        .ok_or_else(|| Refused::from(invalid_grant(CODE_INVALID)))?;
    if pending.grant.client_id != client.client_id || pending.expires < unix_now() {
        return Err(invalid_grant(CODE_INVALID).into());
    }
    // RFC 6749 §4.1.3: the redirect_uri of the authorization request, if it had one.
    if !pending.redirect_uri.is_empty() && form.get("redirect_uri") != Some(&pending.redirect_uri) {
        return Err(invalid_grant(REDIRECT_MISMATCH).into());
    }
    match (&pending.challenge, form.get("code_verifier")) {
        (None, None) => {}
        // RFC 9700 §2.1.1: a verifier without a challenge is refused (PKCE downgrade).
        (None, Some(_)) => return Err(invalid_grant(VERIFIER_UNEXPECTED).into()),
        (Some(_), None) => return Err(invalid_grant(VERIFIER_MISSING).into()),
        (Some(challenge), Some(verifier)) => {
            if !is_pkce_value(verifier) || !challenge_matches(challenge, verifier) {
                return Err(invalid_grant(VERIFIER_MISMATCH).into());
            }
        }
    }
    Ok(pending.grant)
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]` (challenges too).
pub(crate) fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// RFC 7636 §4.6, compared in constant time.
fn challenge_matches(challenge: &Challenge, verifier: &str) -> bool {
    let (expected, computed) = match challenge {
        Challenge::S256(expected) => (
            expected.as_str(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes())),
        ),
        Challenge::Plain(expected) => (expected.as_str(), verifier.to_owned()),
    };
    expected.len() == computed.len() && bool::from(expected.as_bytes().ct_eq(computed.as_bytes()))
}

/// Deletes an access token session of `client_id` (only one issued to that client). A store
/// that cannot be reached is logged: the token then lives until its expiry.
async fn revoke_access(
    state: &SharedState,
    client_id: &str,
    key_id: &KeyId,
) -> Result<(), Response> {
    match state.store.load(key_id).await {
        Ok(Some(session))
            if session.extra.get(CLIENT_FIELD).and_then(|v| v.as_str()) == Some(client_id) =>
        {
            state
                .store
                .delete(key_id)
                .await
                .map_err(|e| Tyk::store_error(&e))?;
            state.oauth.untrack(client_id, key_id);
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(target: "keycard::admin", session = key_id.short(), %e, "could not revoke an OAuth access token");
            Err(Tyk::store_error(&e))
        }
    }
}

/// The client of a revoke request, authenticated with Tyk's answers.
fn revoking_client(state: &SharedState, form: &Form) -> Result<Client, Refused> {
    let attempt = state
        .oauth_throttle
        .attempt(form.peer)
        .map_err(|wait| Refused::from(crate::auth::too_many_failures::<Tyk>(wait)))?;
    let refused = |status, message| {
        tracing::warn!(target: "keycard::admin", client = %form.peer, "OAuth client authentication failed (revoke)");
        Refused::from(Tyk::error(status, message))
    };
    let client = revoking_client_checked(state, form, refused);
    if client.is_err() {
        attempt.failed();
    }
    client
}

fn revoking_client_checked(
    state: &SharedState,
    form: &Form,
    refused: impl Fn(StatusCode, &'static str) -> Refused,
) -> Result<Client, Refused> {
    let (id, secret) = form
        .client_credentials()
        .map_err(|()| refused(StatusCode::UNAUTHORIZED, CLIENT_SECRET_WRONG))?;
    let Some(id) = id else {
        return Err(refused(StatusCode::UNAUTHORIZED, CLIENT_ID_EMPTY));
    };
    let Some(secret) = secret else {
        return Err(refused(StatusCode::UNAUTHORIZED, CLIENT_SECRET_EMPTY));
    };
    if state.oauth.get(&id).is_none() {
        return Err(refused(StatusCode::NOT_FOUND, CLIENT_UNKNOWN));
    }
    state
        .oauth
        .authenticate(&id, &secret)
        .ok_or_else(|| refused(StatusCode::UNAUTHORIZED, CLIENT_SECRET_WRONG))
}

/// Revoke one token (RFC 7009): `token`, `token_type_hint` (`access_token` / `refresh_token`).
///
/// Unlike Tyk's, the client must authenticate (RFC 7009 §2.1), and only its own tokens are
/// revoked. An unknown token is answered 200, as RFC 7009 §2.2 asks.
pub(crate) async fn revoke(State(state): State<SharedState>, form: Form) -> Response {
    let client = match revoking_client(&state, &form) {
        Ok(client) => client,
        Err(refused) => return refused.response(),
    };
    let Some(token) = form.get("token") else {
        return Tyk::error(StatusCode::BAD_REQUEST, TOKEN_EMPTY);
    };
    let hint = form.get("token_type_hint");
    if hint != Some("access_token") {
        state.oauth.revoke_refresh(&client.client_id, token);
    }
    if hint != Some("refresh_token") {
        let key_id = state.key_hasher.key_id(&ApiKey::new(token));
        if let Err(failed) = revoke_access(&state, &client.client_id, &key_id).await {
            return failed;
        }
    }
    tyk_ok("token revoked successfully")
}

/// Revoke every token of a client (Tyk's `revoke_all`): `client_id`, `client_secret`.
pub(crate) async fn revoke_all(State(state): State<SharedState>, form: Form) -> Response {
    let client = match revoking_client(&state, &form) {
        Ok(client) => client,
        Err(refused) => return refused.response(),
    };
    // Deleted first, forgotten after: a store that fails half-way leaves the rest to a retry.
    for key_id in state.oauth.tokens_of(&client.client_id) {
        if let Err(e) = state.store.delete(&key_id).await {
            return Tyk::store_error(&e);
        }
    }
    state.oauth.forget_grants(&client.client_id);
    tracing::info!(target: "keycard::audit", actor = %format!("oauth-client:{}", client.client_id), "all OAuth tokens revoked");
    tyk_ok("tokens revoked successfully")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = Challenge::S256("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned());
        assert!(is_pkce_value(verifier));
        assert!(challenge_matches(&challenge, verifier));
        assert!(!challenge_matches(&challenge, &verifier.replace('d', "e")));
        assert!(challenge_matches(
            &Challenge::Plain(verifier.to_owned()),
            verifier
        ));
    }

    #[test]
    fn pkce_values_are_43_to_128_unreserved_characters() {
        assert!(!is_pkce_value(&"a".repeat(42)));
        assert!(is_pkce_value(&"a".repeat(128)));
        assert!(!is_pkce_value(&"a".repeat(129)));
        assert!(!is_pkce_value(&format!("{}+", "a".repeat(43))));
    }
}
