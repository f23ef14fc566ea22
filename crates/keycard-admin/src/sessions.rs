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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};

use crate::audit::{self, MetadataChange};
use crate::auth::{Bearer, BearerRefusals, DeleteSessions, ReadSessions, UpdateSessions};
use crate::body::{
    AUTH0_INVALID_JSON, AUTH0_NOT_JSON, Auth0Json, INVALID_PARAM, Param, TooLarge, query_pairs,
    query_value, take_param,
};
use crate::error::{Auth0, Auth0Error, Shape, StoreFailures, json};
use crate::state::SharedState;
use crate::time::iso8601;

type Auth0Param = Param<Auth0>;

const NOT_FOUND: &str = "The session does not exist";
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 100;

fn not_found() -> Response {
    Auth0::error(StatusCode::NOT_FOUND, NOT_FOUND)
}

fn bad_request(message: impl Into<String>) -> Response {
    Auth0::error(StatusCode::BAD_REQUEST, message)
}

/// The 400 message of an empty or blank `user_id` (Auth0's wording for a too-short path value).
const BLANK_USER_ID: &str =
    "Path validation error: 'String is too short (0 chars), minimum 1' on property user_id.";

/// The `user_id` path parameter, refused when empty or blank: the store lists sessions with no
/// alias under the empty one, so `/api/v2/users//sessions` must not reach it.
fn blank_user_id(user_id: &str) -> Option<Response> {
    user_id
        .trim()
        .is_empty()
        .then(|| bad_request(BLANK_USER_ID))
}

/// A session as the Auth0 API shows it: the members of Auth0's session type (the Node SDK's
/// `SessionResponseContent`), each from what keycard knows, `null` where Auth0's type allows it
/// and keycard does not know, absent where it does not allow `null` (the device's ASNs, `cookie`).
#[derive(Serialize, ToSchema)]
pub(crate) struct Auth0Session {
    /// The session id: the key hash.
    id: String,
    /// The user: the session's alias; `""` for a key created without one (a Tyk key with no
    /// `alias`), which no `/api/v2/users/{user_id}/sessions` call lists.
    user_id: String,
    /// Creation time.
    #[schema(format = DateTime)]
    created_at: String,
    /// Last change (any write of the stored session, activity records included).
    #[schema(format = DateTime)]
    updated_at: String,
    /// When the user authenticated: the key's creation (a key is its own authentication).
    #[schema(format = DateTime)]
    authenticated_at: String,
    /// When the session ends if unused: the last tracked use (or creation) plus the load
    /// stage's idle timeout; `null` without an idle timeout.
    #[schema(format = DateTime, required)]
    idle_expires_at: Option<String>,
    /// Expiry; `null` when the session never expires.
    #[schema(format = DateTime, required)]
    expires_at: Option<String>,
    /// The last use through the layers, as recorded (at most once per tracking interval);
    /// `null` when never recorded (activity tracking off, or the session never used).
    #[schema(format = DateTime, required)]
    last_interacted_at: Option<String>,
    /// The client the session was first and last used from.
    device: Auth0Device,
    /// The OAuth clients of the session: always empty (an API key has none).
    clients: Vec<Auth0Client>,
    /// How the user authenticated: no methods (an API key is none of Auth0's).
    authentication: Auth0Authentication,
    /// The session's own metadata (policy values not merged in), as strings: a value written
    /// through the Tyk API that is not a string is shown JSON-encoded (`2` as `"2"`), so what GET
    /// returns can be sent back by PATCH as is.
    #[schema(schema_with = shown_metadata)]
    session_metadata: Metadata,
}

/// Auth0's session `device`, without the ASNs (unknown to keycard; Auth0's type does not allow
/// `null` for them).
#[derive(Serialize, ToSchema)]
pub(crate) struct Auth0Device {
    /// The `User-Agent` of the first tracked use; absent when not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_user_agent: Option<String>,
    /// The client IP of the first tracked use; `null` when not known.
    #[schema(required)]
    initial_ip: Option<String>,
    /// The `User-Agent` of the latest tracked use; absent when not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_user_agent: Option<String>,
    /// The client IP of the latest tracked use; `null` when not known.
    #[schema(required)]
    last_ip: Option<String>,
}

/// An OAuth client of a session (Auth0's `SessionClientMetadata`).
#[derive(Serialize, ToSchema)]
pub(crate) struct Auth0Client {
    /// The client id.
    client_id: String,
}

/// Auth0's `SessionAuthenticationSignals`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Auth0Authentication {
    /// The authentication methods completed: always empty.
    methods: Vec<Value>,
}

/// The schema of `session_metadata` as GET and PATCH return it: an object of strings.
fn shown_metadata() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "The session's own metadata. Every value is a string: a non-string value written \
             through the Tyk API is shown JSON-encoded (2 as \"2\", {\"a\":1} as \"{\\\"a\\\":1}\").",
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(
            ObjectBuilder::new().schema_type(Type::String).into(),
        ))))
        .into()
}

/// The metadata as the Auth0 API shows it: strings as they are, any other value JSON-encoded.
fn shown(metadata: &Metadata) -> Metadata {
    metadata
        .iter()
        .map(|(key, value)| {
            let shown = match value {
                Value::String(_) => value.clone(),
                other => Value::String(other.to_string()),
            };
            (key.clone(), shown)
        })
        .collect()
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// A session as the Auth0 API shows it, under the load stage's idle timeout (seconds).
fn view(session: &SessionRecord, idle_timeout: Option<i64>) -> Auth0Session {
    let device = session.device.as_ref();
    let text = |f: fn(&keycard_core::session::Device) -> &str| device.and_then(|d| non_empty(f(d)));
    Auth0Session {
        id: session.key_id.as_str().to_owned(),
        user_id: session.alias.clone(),
        created_at: iso8601(session.date_created),
        updated_at: iso8601(session.last_updated),
        authenticated_at: iso8601(session.date_created),
        idle_expires_at: idle_timeout
            .and_then(|timeout| session.idle_expires_at(timeout))
            .map(iso8601),
        expires_at: (session.expires >= 1).then(|| iso8601(session.expires)),
        last_interacted_at: (session.last_interacted_at > 0)
            .then(|| iso8601(session.last_interacted_at)),
        device: Auth0Device {
            initial_user_agent: text(|d| &d.initial_user_agent),
            initial_ip: text(|d| &d.initial_ip),
            last_user_agent: text(|d| &d.last_user_agent),
            last_ip: text(|d| &d.last_ip),
        },
        clients: Vec::new(),
        authentication: Auth0Authentication {
            methods: Vec::new(),
        },
        session_metadata: shown(&session.meta_data),
    }
}

/// A page of a user's sessions.
#[derive(Serialize, ToSchema)]
pub(crate) struct Auth0SessionList {
    /// The sessions, in order.
    sessions: Vec<Auth0Session>,
    /// The cursor of the next page (`?from=`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next: Option<String>,
}

/// The body of `PATCH /api/v2/sessions/{id}`: `session_metadata` and nothing else (`{}`, with
/// no member, changes nothing).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionPatch {
    /// The new metadata, replacing the old; `null` or `{}` clears it. At most 25 entries, keys
    /// of letters, digits, `_` and `-`, string values; keys and values of at most 255 characters
    /// (`MetadataLimits::auth0`).
    #[schema(required, schema_with = auth0_metadata)]
    session_metadata: Option<Metadata>,
}

/// The schema of metadata within [`MetadataLimits::auth0`], or `null`.
fn auth0_metadata() -> RefOr<Schema> {
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(255));
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(255))
        .pattern(Some("^[A-Za-z0-9_-]+$"));
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Object,
            Type::Null,
        ]))
        .max_properties(Some(25))
        .property_names(Some(name))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(value.into()))))
        .into()
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
/// The metadata a PATCH body sets; `None` for `{}`, which Auth0 accepts and which changes
/// nothing (the SDK's own `sessions.update(id, {})` example).
fn patch_metadata(body: Value) -> Result<Option<Metadata>, String> {
    let Value::Object(body) = body else {
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
    match body.get("session_metadata") {
        None => return Ok(None),
        Some(Value::Null | Value::Object(_)) => {}
        Some(other) => {
            return Err(format!(
                "Payload validation error: 'Expected type object but found type {}' on property session_metadata.",
                json_type(other)
            ));
        }
    }
    // The checks above answer in Auth0's words; what passes them is a `SessionPatch`.
    let patch: SessionPatch = serde_json::from_value(Value::Object(body))
        .map_err(|e| format!("Payload validation error: '{e}'."))?;
    let metadata = patch.session_metadata.unwrap_or_default();
    MetadataLimits::auth0()
        .check(&metadata)
        .map_err(|e| e.to_string())?;
    Ok(Some(metadata))
}

/// Get a session
#[utoipa::path(
    get,
    path = "/api/v2/sessions/{id}",
    tag = "sessions",
    security(("bearer" = ["read:sessions"])),
    params(("id" = String, Path, description = "The session id (the key hash)")),
    responses(
        (status = OK, description = "The session", body = Auth0Session),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = Auth0Error, example = json!(Auth0::body(StatusCode::BAD_REQUEST, INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such session", body = Auth0Error, example = json!(Auth0::body(StatusCode::NOT_FOUND, NOT_FOUND))),
        BearerRefusals<ReadSessions>,
        StoreFailures<Auth0>,
    ),
)]
pub(crate) async fn get_session(
    _: Bearer<ReadSessions>,
    State(state): State<SharedState>,
    Param(id, ..): Auth0Param,
) -> Response {
    let Some(key_id) = KeyId::from_hash(&id) else {
        return not_found();
    };
    match state.store.load(&key_id).await {
        Ok(Some(session)) => json(StatusCode::OK, &view(&session, state.idle_timeout)),
        Ok(None) => not_found(),
        Err(e) => Auth0::store_error(&e),
    }
}

/// Replace a session's metadata
///
/// Atomically: one evict-and-set change of the stored session.
#[utoipa::path(
    patch,
    path = "/api/v2/sessions/{id}",
    tag = "sessions",
    security(("bearer" = ["update:sessions"]), ("bearer" = ["update:session"])),
    params(("id" = String, Path, description = "The session id (the key hash)")),
    request_body = SessionPatch,
    responses(
        (status = OK, description = "The updated session", body = Auth0Session),
        (status = BAD_REQUEST, description = "The body is not JSON, not exactly `{\"session_metadata\": ...}`, or over the limits; or the path is not UTF-8", body = Auth0Error, example = json!(Auth0::body(StatusCode::BAD_REQUEST, AUTH0_INVALID_JSON))),
        (status = NOT_FOUND, description = "No such session", body = Auth0Error, example = json!(Auth0::body(StatusCode::NOT_FOUND, NOT_FOUND))),
        (status = UNSUPPORTED_MEDIA_TYPE, description = "The content type is not JSON", body = Auth0Error, example = json!(Auth0::body(StatusCode::UNSUPPORTED_MEDIA_TYPE, AUTH0_NOT_JSON))),
        BearerRefusals<UpdateSessions>,
        TooLarge<Auth0>,
        StoreFailures<Auth0>,
    ),
)]
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
        Ok(Some(metadata)) => metadata,
        Ok(None) => {
            return match state.store.load(&key_id).await {
                Ok(Some(session)) => json(StatusCode::OK, &view(&session, state.idle_timeout)),
                Ok(None) => not_found(),
                Err(e) => Auth0::store_error(&e),
            };
        }
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
            json(StatusCode::OK, &view(&session, state.idle_timeout))
        }
        Ok(None) => not_found(),
        Err(e) => Auth0::store_error(&e),
    }
}

fn take_message() -> String {
    format!("Query validation error: 'take' must be an integer between 1 and {PAGE_MAX}.")
}

fn accepted() -> Response {
    let mut response = Response::default();
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

/// Delete a session
///
/// Answers 202, then sends an OIDC back-channel logout in the background when one is configured.
/// A session that does not exist (never did, or already deleted) is 202 too: Auth0 documents no
/// 404 for this route (202, 400, 401, 403 and 429 only; its Node SDK's `sessions.delete` throws no
/// `NotFoundError`), so deleting is idempotent. `revoke` answers 404 instead, as Auth0 documents.
#[utoipa::path(
    delete,
    path = "/api/v2/sessions/{id}",
    tag = "sessions",
    security(("bearer" = ["delete:sessions"])),
    params(("id" = String, Path, description = "The session id (the key hash)")),
    responses(
        (status = ACCEPTED, description = "Deleted, or there was no such session"),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = Auth0Error, example = json!(Auth0::body(StatusCode::BAD_REQUEST, INVALID_PARAM))),
        BearerRefusals<DeleteSessions>,
        StoreFailures<Auth0>,
    ),
)]
pub(crate) async fn delete_session(
    caller: Bearer<DeleteSessions>,
    State(state): State<SharedState>,
    Param(id, ..): Auth0Param,
) -> Response {
    end_session(&caller, &state, &id, accepted).await
}

/// Deletes the session `id` (audit, back-channel logout) and answers 202, or `absent()` when
/// there is no such session.
async fn end_session(
    caller: &Bearer<DeleteSessions>,
    state: &SharedState,
    id: &str,
    absent: fn() -> Response,
) -> Response {
    let Some(key_id) = KeyId::from_hash(id) else {
        return absent();
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
        Ok(None) => absent(),
        Err(e) => Auth0::store_error(&e),
    }
}

/// Revoke a session
///
/// Auth0's revoke: the session ends as with `DELETE` (202, back-channel logout), but a session
/// that does not exist is 404, as Auth0 documents for this route. Auth0 also asks for
/// `delete:refresh_tokens`, since it revokes the session's refresh tokens too; keycard sessions
/// have none, so `delete:sessions` is enough.
#[utoipa::path(
    post,
    path = "/api/v2/sessions/{id}/revoke",
    tag = "sessions",
    security(("bearer" = ["delete:sessions"])),
    params(("id" = String, Path, description = "The session id (the key hash)")),
    responses(
        (status = ACCEPTED, description = "Revoked"),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = Auth0Error, example = json!(Auth0::body(StatusCode::BAD_REQUEST, INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such session", body = Auth0Error, example = json!(Auth0::body(StatusCode::NOT_FOUND, NOT_FOUND))),
        BearerRefusals<DeleteSessions>,
        StoreFailures<Auth0>,
    ),
)]
pub(crate) async fn revoke_session(
    caller: Bearer<DeleteSessions>,
    State(state): State<SharedState>,
    Param(id, ..): Auth0Param,
) -> Response {
    end_session(&caller, &state, &id, not_found).await
}

/// List a user's sessions, a page at a time
#[utoipa::path(
    get,
    path = "/api/v2/users/{user_id}/sessions",
    tag = "sessions",
    security(("bearer" = ["read:sessions"])),
    params(
        ("user_id" = String, Path, description = "The user id (the sessions' alias)"),
        ("from" = Option<String>, Query, description = "Cursor: the `next` of the previous page"),
        ("take" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size (default 50)"),
    ),
    responses(
        (status = OK, description = "A page of sessions", body = Auth0SessionList),
        (status = BAD_REQUEST, description = "`take` is not an integer in 1..=100, `user_id` is empty or blank, or the path is not UTF-8", body = Auth0Error, example = json!(Auth0::body(StatusCode::BAD_REQUEST, take_message()))),
        BearerRefusals<ReadSessions>,
        StoreFailures<Auth0>,
    ),
)]
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
        return bad_request(take_message());
    };
    let from = query_value(&pairs, "from").filter(|from| !from.is_empty());
    match state.store.list_by_alias(&user_id, from, take).await {
        Ok(page) => {
            let body = Auth0SessionList {
                sessions: page
                    .items
                    .iter()
                    .map(|session| view(session, state.idle_timeout))
                    .collect(),
                next: page.next,
            };
            json(StatusCode::OK, &body)
        }
        Err(e) => Auth0::store_error(&e),
    }
}

/// Delete every session of a user
///
/// Sends an OIDC back-channel logout for each when one is configured. A user without sessions
/// is not an error.
#[utoipa::path(
    delete,
    path = "/api/v2/users/{user_id}/sessions",
    tag = "sessions",
    security(("bearer" = ["delete:sessions"])),
    params(("user_id" = String, Path, description = "The user id (the sessions' alias)")),
    responses(
        (status = ACCEPTED, description = "Deleted"),
        (status = BAD_REQUEST, description = "`user_id` is empty or blank, or the path is not UTF-8", body = Auth0Error, example = json!(Auth0::body(StatusCode::BAD_REQUEST, BLANK_USER_ID))),
        BearerRefusals<DeleteSessions>,
        StoreFailures<Auth0>,
    ),
)]
pub(crate) async fn delete_user_sessions(
    caller: Bearer<DeleteSessions>,
    State(state): State<SharedState>,
    Param(user_id, ..): Auth0Param,
) -> Response {
    if let Some(refused) = blank_user_id(&user_id) {
        return refused;
    }
    // One step where the store can (a single Redis server: one script); see
    // `SessionStore::delete_by_alias` for what each store guarantees.
    match state.store.delete_by_alias(&user_id).await {
        Ok(deleted) => {
            for session in deleted {
                audit::session(
                    &caller.actor,
                    "deleted",
                    &session.key_id,
                    &MetadataChange::replaced(&session.meta_data),
                );
                state.logout.session_ended(session);
            }
            accepted()
        }
        Err(e) => Auth0::store_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The schema of a PATCH body states `MetadataLimits::auth0`, to the character.
    #[test]
    fn the_documented_patch_limits_are_auth0s() {
        let schema = serde_json::to_value(auth0_metadata()).unwrap();
        let limit = |pointer: &str| {
            usize::try_from(schema.pointer(pointer).unwrap().as_u64().unwrap()).unwrap()
        };
        let (entries, key_chars, value_chars) = (
            limit("/maxProperties"),
            limit("/propertyNames/maxLength"),
            limit("/additionalProperties/maxLength"),
        );
        let limits = MetadataLimits::auth0();
        let map =
            |n: usize| -> Metadata { (0..n).map(|i| (format!("k{i}"), json!("v"))).collect() };
        assert!(limits.check(&map(entries)).is_ok());
        assert!(limits.check(&map(entries + 1)).is_err());
        assert!(
            limits
                .check_entry(&"k".repeat(key_chars), &json!("v"))
                .is_ok()
        );
        assert!(
            limits
                .check_entry(&"k".repeat(key_chars + 1), &json!("v"))
                .is_err()
        );
        assert!(
            limits
                .check_entry("k", &json!("v".repeat(value_chars)))
                .is_ok()
        );
        assert!(
            limits
                .check_entry("k", &json!("v".repeat(value_chars + 1)))
                .is_err()
        );
        assert!(
            limits.check_entry("k", &json!(1)).is_err(),
            "string values only"
        );
        assert_eq!(schema["propertyNames"]["pattern"], "^[A-Za-z0-9_-]+$");
        assert!(limits.check_entry("a-Z_9", &json!("v")).is_ok());
        assert!(limits.check_entry("a.b", &json!("v")).is_err());
    }

    #[test]
    fn patch_body_must_be_exactly_session_metadata() {
        assert_eq!(
            patch_metadata(json!({"session_metadata": {"a": "b"}}))
                .unwrap()
                .unwrap()["a"],
            "b"
        );
        assert!(
            patch_metadata(json!({"session_metadata": null}))
                .unwrap()
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            patch_metadata(json!({"session_metadata": {}, "x": 1})).unwrap_err(),
            "Payload validation error: 'Additional properties not allowed: x'."
        );
        assert_eq!(
            patch_metadata(json!({})),
            Ok(None),
            "Auth0 accepts {{}}: no change"
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
