//! Issuing an access token: a new session in the session store, built from the grant's
//! template, the client's metadata copied in where the session lacks the key (Tyk's
//! `SaveAccess`), and, when asked, a refresh token.

use axum::response::Response;
use http::StatusCode;
use keycard_core::key::ApiKey;
use keycard_core::policy::PolicySource;
use keycard_core::session::{SessionRecord, unix_now};
use serde::Serialize;
use serde_json::Value;

use super::store::{Client, Grant, RefreshGrant};
use super::wire::{OAuth, Refused, invalid_request, oauth_error};
use crate::audit::{self, MetadataChange};
use crate::error::Shape;
use crate::state::AdminState;

/// Tyk's words when a client has neither key rules nor a policy to make a session from
/// (`gateway/oauth_manager.go`, `SaveAccess`).
pub(crate) const NO_TEMPLATE: &str = "Couldn't use policy or key rules to create token, failing";

/// The session field naming the client a token was issued to (Tyk's `oauth_client_id`).
pub(crate) const CLIENT_FIELD: &str = "oauth_client_id";

/// The token endpoint's answer (RFC 6749 §5.1).
#[derive(Serialize)]
pub(crate) struct TokenAnswer {
    access_token: String,
    token_type: &'static str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

/// The session template of a client without key rules: its policy, applied on every load.
pub(crate) fn policy_template(
    state: &AdminState,
    client: &Client,
) -> Result<SessionRecord, Refused> {
    if client.policy_id.is_empty() || state.policies.policy(&client.policy_id).is_none() {
        let refused = oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client", NO_TEMPLATE);
        return Err(refused.into());
    }
    let mut template = SessionRecord::default();
    template.apply_policies = vec![client.policy_id.clone()];
    Ok(template)
}

/// The session a grant issues for `client`: the template, with each client metadata key added
/// only where the template lacks it (Tyk: the session may override client values).
pub(crate) fn session_for(client: &Client, template: &SessionRecord) -> SessionRecord {
    let mut session = template.clone();
    for (key, value) in &client.meta_data {
        if !session.meta_data.contains_key(key) {
            session.meta_data.insert(key.clone(), value.clone());
        }
    }
    session
}

/// Issues an access token (and a refresh token when `refresh`) for `grant`.
pub(crate) async fn issue(
    state: &AdminState,
    grant: Grant,
    refresh: bool,
) -> Result<TokenAnswer, Response> {
    let Some(client) = state.oauth.get(&grant.client_id) else {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client no longer exists",
        ));
    };
    let mut session = session_for(&client, &grant.template);
    if let Err(error) = state.tyk_limits.check(&session.meta_data) {
        return Err(invalid_request(&error.to_string()));
    }
    let key = ApiKey::generate();
    let key_id = state.key_hasher.key_id(&key);
    let now = unix_now();
    let expires = now.saturating_add(state.oauth_lifetimes.access);
    session.key_id = key_id.clone();
    session.version = 0;
    session.expires = expires;
    session.date_created = 0;
    session.last_updated = 0;
    session.extra.insert(
        CLIENT_FIELD.to_owned(),
        Value::String(client.client_id.clone()),
    );
    let created = state
        .store
        .create(session)
        .await
        .map_err(|e| OAuth::store_error(&e))?;
    audit::session(
        &format!("oauth-client:{}", client.client_id),
        "created",
        &key_id,
        &MetadataChange::replaced(&created.meta_data),
    );
    state
        .oauth
        .track(&client.client_id, key_id.clone(), expires, now);
    let refresh_token = refresh.then(|| {
        let token = ApiKey::generate();
        state.oauth.save_refresh(
            token.expose(),
            RefreshGrant {
                grant,
                access: key_id,
                expires: now.saturating_add(state.oauth_lifetimes.refresh),
            },
        );
        token.expose().to_owned()
    });
    Ok(TokenAnswer {
        access_token: key.expose().to_owned(),
        token_type: "bearer",
        expires_in: state.oauth_lifetimes.access,
        refresh_token,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn client_metadata_fills_only_the_keys_the_session_lacks() {
        let client = Client {
            meta_data: json!({"plan": "gold", "tier": "client"})
                .as_object()
                .unwrap()
                .clone(),
            ..Client::default()
        };
        let template = SessionRecord::default().metadata(json!({"tier": "session"}));
        let session = session_for(&client, &template);
        assert_eq!(
            Value::Object(session.meta_data),
            json!({"plan": "gold", "tier": "session"})
        );
    }
}
