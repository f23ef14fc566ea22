//! The Auth0-compatible sessions API (`/api/v2/sessions/{id}`, `/api/v2/users/{user_id}/sessions`).
//!
//! `id` is the key hash and `user_id` the session's alias. `session_metadata` is the session's
//! own metadata — what `PATCH` replaces — without policy values merged in (the Tyk `GET` shows
//! the merged view, as Tyk does).

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::StatusCode;
use keycard_core::key::KeyId;
use keycard_core::metadata::{Metadata, MetadataDelta, MetadataLimits};
use keycard_core::session::SessionRecord;
use serde_json::{Value, json};

use crate::audit::{self, MetadataChange};
use crate::auth::{Bearer, DeleteSessions, ReadSessions, UpdateSessions};
use crate::body::{Auth0Json, Param, query_pairs, query_value, take_param};
use crate::error::{Auth0, Shape, json};
use crate::state::SharedState;
use crate::time::iso8601;

type Auth0Param = Param<Auth0>;

const NOT_FOUND: &str = "The session does not exist";
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 100;
/// How many sessions a per-user delete removes per listing round trip.
const DELETE_BATCH: usize = 100;

fn not_found() -> Response {
    Auth0::error(StatusCode::NOT_FOUND, NOT_FOUND)
}

fn bad_request(message: impl Into<String>) -> Response {
    Auth0::error(StatusCode::BAD_REQUEST, message)
}

/// The `user_id` path parameter, refused when empty or blank: the store lists sessions with no
/// alias under the empty one, so `/api/v2/users//sessions` must not reach it.
fn blank_user_id(user_id: &str) -> Option<Response> {
    user_id.trim().is_empty().then(|| {
        bad_request(
            "Path validation error: 'String is too short (0 chars), minimum 1' on property user_id.",
        )
    })
}

/// A session as the Auth0 API shows it.
fn view(session: &SessionRecord) -> Value {
    json!({
        "id": session.key_id.as_str(),
        "user_id": session.alias,
        "created_at": iso8601(session.date_created),
        "updated_at": iso8601(session.last_updated),
        "expires_at": (session.expires >= 1).then(|| iso8601(session.expires)),
        "session_metadata": session.meta_data,
    })
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Validates a PATCH body: exactly `{"session_metadata": {...} | null}`, within Auth0's limits.
fn patch_metadata(body: Value) -> Result<Metadata, String> {
    let Value::Object(mut body) = body else {
        return Err(format!(
            "Payload validation error: 'Expected type object but found type {}'.",
            json_type(&body)
        ));
    };
    if let Some(extra) = body.keys().find(|k| *k != "session_metadata") {
        return Err(format!(
            "Payload validation error: 'Additional properties not allowed: {extra}'."
        ));
    }
    let metadata = match body.remove("session_metadata") {
        None => {
            return Err(
                "Payload validation error: 'Missing required property: session_metadata'."
                    .to_owned(),
            );
        }
        Some(Value::Null) => Metadata::new(),
        Some(Value::Object(metadata)) => metadata,
        Some(other) => {
            return Err(format!(
                "Payload validation error: 'Expected type object but found type {}' on property session_metadata.",
                json_type(&other)
            ));
        }
    };
    MetadataLimits::auth0()
        .check(&metadata)
        .map_err(|e| e.to_string())?;
    Ok(metadata)
}

/// `GET /api/v2/sessions/{id}`.
pub(crate) async fn get_session(
    _: Bearer<ReadSessions>,
    State(state): State<SharedState>,
    Param(id, ..): Auth0Param,
) -> Response {
    let Some(key_id) = KeyId::from_hash(&id) else {
        return not_found();
    };
    match state.store.load(&key_id).await {
        Ok(Some(session)) => json(StatusCode::OK, &view(&session)),
        Ok(None) => not_found(),
        Err(e) => Auth0::store_error(&e),
    }
}

/// `PATCH /api/v2/sessions/{id}`: replaces the metadata, atomically (one evict-and-set delta).
pub(crate) async fn patch_session(
    caller: Bearer<UpdateSessions>,
    State(state): State<SharedState>,
    Param(id, ..): Auth0Param,
    Auth0Json(body): Auth0Json,
) -> Response {
    let Some(key_id) = KeyId::from_hash(&id) else {
        return not_found();
    };
    let metadata = match patch_metadata(body) {
        Ok(metadata) => metadata,
        Err(message) => return bad_request(message),
    };
    let mut delta = MetadataDelta::new();
    delta.evict();
    for (key, value) in metadata {
        delta.set(key, value);
    }
    match state.store.apply(&key_id, &delta).await {
        Ok(Some(session)) => {
            let change = MetadataChange {
                keys: delta.keys().flatten().collect(),
                replaced: true,
            };
            audit::session(&caller.actor, "patched", &key_id, &change);
            json(StatusCode::OK, &view(&session))
        }
        Ok(None) => not_found(),
        Err(e) => Auth0::store_error(&e),
    }
}

fn accepted() -> Response {
    let mut response = Response::default();
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

/// `DELETE /api/v2/sessions/{id}`: 202, then back-channel logout in the background.
pub(crate) async fn delete_session(
    caller: Bearer<DeleteSessions>,
    State(state): State<SharedState>,
    Param(id, ..): Auth0Param,
) -> Response {
    let Some(key_id) = KeyId::from_hash(&id) else {
        return not_found();
    };
    match state.store.delete(&key_id).await {
        Ok(Some(session)) => {
            audit::session(
                &caller.actor,
                "deleted",
                &key_id,
                &MetadataChange::replaced(&session.meta_data),
            );
            state.logout.session_ended(session);
            accepted()
        }
        Ok(None) => not_found(),
        Err(e) => Auth0::store_error(&e),
    }
}

/// `GET /api/v2/users/{user_id}/sessions?from=&take=`.
pub(crate) async fn list_user_sessions(
    _: Bearer<ReadSessions>,
    State(state): State<SharedState>,
    Param(user_id, ..): Auth0Param,
    RawQuery(query): RawQuery,
) -> Response {
    if let Some(refused) = blank_user_id(&user_id) {
        return refused;
    }
    let pairs = query_pairs(query.as_deref());
    let Ok(take) = take_param(&pairs, PAGE_DEFAULT, PAGE_MAX) else {
        return bad_request(format!(
            "Query validation error: 'take' must be an integer between 1 and {PAGE_MAX}."
        ));
    };
    let from = query_value(&pairs, "from").filter(|from| !from.is_empty());
    match state.store.list_by_alias(&user_id, from, take).await {
        Ok(page) => {
            let sessions: Vec<Value> = page.items.iter().map(view).collect();
            let mut body = json!({ "sessions": sessions });
            if let Some(next) = page.next {
                body["next"] = Value::String(next);
            }
            json(StatusCode::OK, &body)
        }
        Err(e) => Auth0::store_error(&e),
    }
}

/// `DELETE /api/v2/users/{user_id}/sessions`: removes (and logs out) every session of the user.
pub(crate) async fn delete_user_sessions(
    caller: Bearer<DeleteSessions>,
    State(state): State<SharedState>,
    Param(user_id, ..): Auth0Param,
) -> Response {
    if let Some(refused) = blank_user_id(&user_id) {
        return refused;
    }
    let mut after: Option<String> = None;
    loop {
        let page = match state
            .store
            .list_by_alias(&user_id, after.as_deref(), DELETE_BATCH)
            .await
        {
            Ok(page) => page,
            Err(e) => return Auth0::store_error(&e),
        };
        for listed in page.items {
            match state.store.delete(&listed.key_id).await {
                Ok(Some(session)) => {
                    audit::session(
                        &caller.actor,
                        "deleted",
                        &session.key_id,
                        &MetadataChange::replaced(&session.meta_data),
                    );
                    state.logout.session_ended(session);
                }
                // Deleted meanwhile by someone else: nothing left to do.
                Ok(None) => {}
                Err(e) => return Auth0::store_error(&e),
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return accepted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_body_must_be_exactly_session_metadata() {
        assert_eq!(
            patch_metadata(json!({"session_metadata": {"a": "b"}})).unwrap()["a"],
            "b"
        );
        assert!(
            patch_metadata(json!({"session_metadata": null}))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            patch_metadata(json!({"session_metadata": {}, "x": 1})).unwrap_err(),
            "Payload validation error: 'Additional properties not allowed: x'."
        );
        assert_eq!(
            patch_metadata(json!({})).unwrap_err(),
            "Payload validation error: 'Missing required property: session_metadata'."
        );
        assert_eq!(
            patch_metadata(json!([])).unwrap_err(),
            "Payload validation error: 'Expected type object but found type array'."
        );
        assert_eq!(
            patch_metadata(json!({"session_metadata": "x"})).unwrap_err(),
            "Payload validation error: 'Expected type object but found type string' on property session_metadata."
        );
    }
}
