//! `POST /tyk/oauth/authorize-client`: the resource owner's app, having had its user approve
//! the client, asks for an authorization code (Tyk's `HandleGenerateAuthCodeData`). keycard
//! has no login page: the app authenticates its users and calls this with the Tyk secret.

use axum::extract::State;
use axum::response::Response;
use http::StatusCode;
use keycard_core::key::ApiKey;
use keycard_core::policy::PolicySource;
use keycard_core::session::{SessionRecord, unix_now};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::issue::policy_template;
use super::store::{Challenge, CodeGrant, Grant};
use super::token::is_pkce_value;
use super::wire::{Form, OAuth, OAuthError, invalid_request, oauth_error};
use crate::auth::{TykAdmin, TykRefusals};
use crate::body::TooLarge;
use crate::error::{Shape, json};
use crate::state::SharedState;

/// The parameters (form-encoded, or a JSON object; Tyk's names). The handler reads them from
/// [`Form`]; this type documents them in the OpenAPI document.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // read through `Form`, kept for the schema
pub(crate) struct AuthorizeRequest {
    /// `code` (the implicit flow's `token` is not offered).
    response_type: String,
    /// The client.
    client_id: String,
    /// The client's registered redirect URI (default: that one).
    redirect_uri: Option<String>,
    /// Passed back in `redirect_to`.
    state: Option<String>,
    /// A session (Tyk's session JSON) the tokens are made from; default: the client's policy.
    key_rules: Option<String>,
    /// PKCE (RFC 7636): the challenge.
    code_challenge: Option<String>,
    /// `S256` (recommended) or `plain` (the default, as RFC 7636 says).
    code_challenge_method: Option<String>,
}

/// The code, and where to send the user's browser.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuthorizeAnswer {
    /// The authorization code: single use, valid for a minute.
    code: String,
    /// The request's `state`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    state: Option<String>,
    /// The redirect URI with `code` (and `state`) added, when the client has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    redirect_to: Option<String>,
}

const KEY_RULES_INVALID: &str = "key_rules must be a session object (Tyk's session JSON)";

/// Issue an authorization code for a client (the resource owner approved it)
///
/// Errors are RFC 6749's `{"error", "error_description"}`.
#[utoipa::path(
    post,
    path = "/tyk/oauth/authorize-client",
    tag = "tyk",
    security(("tykSecret" = [])),
    request_body(content = AuthorizeRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = OK, description = "The code", body = AuthorizeAnswer),
        (status = BAD_REQUEST, description = "A parameter is missing or wrong: `invalid_request`, `unsupported_response_type`, or `unauthorized_client` (the client has no policy and no key_rules were given)", body = OAuthError, example = json!(OAuth::body(StatusCode::BAD_REQUEST, "response_type is required"))),
        TykRefusals,
        TooLarge<OAuth>,
    ),
)]
pub(crate) async fn authorize_client(
    _: TykAdmin,
    State(state): State<SharedState>,
    form: Form,
) -> Response {
    match form.get("response_type") {
        None => return invalid_request("response_type is required"),
        Some("code") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_response_type",
                "response_type must be code",
            );
        }
    }
    let Some(client_id) = form.get("client_id") else {
        return invalid_request("client_id is required");
    };
    let Some(client) = state.oauth.get(client_id) else {
        return invalid_request("client_id is not a registered client");
    };
    let redirect_uri = match form.get("redirect_uri") {
        None => client.redirect_uri.clone(),
        Some(given) if given == client.redirect_uri => given.to_owned(),
        Some(_) => {
            return invalid_request("redirect_uri is not the one registered for this client");
        }
    };
    let template = match form.get("key_rules") {
        Some(rules) => match serde_json::from_str::<SessionRecord>(rules) {
            Ok(template) => {
                if let Err(error) = state.tyk_limits.check(&template.meta_data) {
                    return invalid_request(&error.to_string());
                }
                if let Some(missing) = template
                    .apply_policies
                    .iter()
                    .find(|id| state.policies.policy(id).is_none())
                {
                    return invalid_request(&format!("Policy {missing:?} does not exist"));
                }
                template
            }
            Err(_) => return invalid_request(KEY_RULES_INVALID),
        },
        None => match policy_template(&state, &client) {
            Ok(template) => template,
            Err(refused) => return refused.response(),
        },
    };
    let challenge = match (
        form.get("code_challenge"),
        form.get("code_challenge_method"),
    ) {
        (None, None) => None,
        (None, Some(_)) => return invalid_request("code_challenge_method without code_challenge"),
        (Some(challenge), method) => {
            if !is_pkce_value(challenge) {
                return invalid_request(
                    "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
                );
            }
            match method {
                Some("S256") => Some(Challenge::S256(challenge.to_owned())),
                None | Some("plain") => Some(Challenge::Plain(challenge.to_owned())),
                Some(_) => return invalid_request("code_challenge_method must be S256 or plain"),
            }
        }
    };
    let code = ApiKey::generate().expose().to_owned();
    state.oauth.save_code(
        &code,
        CodeGrant {
            grant: Grant {
                client_id: client.client_id.clone(),
                template,
            },
            redirect_uri: redirect_uri.clone(),
            challenge,
            expires: unix_now().saturating_add(state.oauth_lifetimes.code),
        },
    );
    let client_state = form.get("state").map(str::to_owned);
    let redirect_to = (!redirect_uri.is_empty()).then(|| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("code", &code);
        if let Some(s) = &client_state {
            query.append_pair("state", s);
        }
        let separator = if redirect_uri.contains('?') { '&' } else { '?' };
        format!("{redirect_uri}{separator}{}", query.finish())
    });
    json(
        StatusCode::OK,
        &AuthorizeAnswer {
            code,
            state: client_state,
            redirect_to,
        },
    )
}
