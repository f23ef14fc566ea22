//! The Tyk-compatible keys and policies API (`/tyk/keys...`, `/tyk/policies...`).
//!
//! Divergences from Tyk, on purpose:
//! - the raw key appears in the creation response only; `modified`/`deleted` answers carry the
//!   key hash in `key` (Tyk echoes the key you sent);
//! - creating a key that exists is 409 `Key already exists`, a `version` that is no longer the
//!   stored one makes a `PUT` 409 (optimistic concurrency), a missing policy in `apply_policies`
//!   is 400 at write time instead of a broken key at request time;
//! - `GET /tyk/keys` pages with `?from=<cursor>&take=<n>` and answers `next` when there is more.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::StatusCode;
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::policy::{Policy, apply_policies};
use keycard_core::session::SessionRecord;
use keycard_core::store::StoreError;
use serde_json::{Value, json};

use crate::audit::{self, MetadataChange};
use crate::auth::{TYK_ACTOR, TykAdmin};
use crate::body::{Param, TykJson, query_pairs, query_value, take_param};
use crate::error::{Shape, Tyk, json};
use crate::state::{AdminState, SharedState};

type TykParam = Param<Tyk>;

const KEYS_PAGE_DEFAULT: usize = 100;
const KEYS_PAGE_MAX: usize = 1000;

fn action(action: &str, key: &str, key_id: &KeyId) -> Response {
    json(
        StatusCode::OK,
        &json!({"key": key, "status": "ok", "action": action, "key_hash": key_id.as_str()}),
    )
}

fn bad_request(message: impl Into<String>) -> Response {
    Tyk::error(StatusCode::BAD_REQUEST, message)
}

/// The key a path names: the raw key, or with `?hashed=true` its hash.
fn key_id(key: &str, query: Option<&str>) -> Option<KeyId> {
    let pairs = query_pairs(query);
    let hashed = matches!(query_value(&pairs, "hashed"), Some("true" | "1"));
    if hashed {
        KeyId::from_hash(key)
    } else {
        Some(KeyId::of(&ApiKey::new(key)))
    }
}

impl AdminState {
    /// The checks every key write makes before touching the store; `Err` is the 400 message.
    fn check_session(&self, session: &SessionRecord) -> Result<(), String> {
        self.tyk_limits
            .check(&session.meta_data)
            .map_err(|e| e.to_string())?;
        if let Some(missing) = session
            .apply_policies
            .iter()
            .find(|id| keycard_core::policy::PolicySource::policy(&self.policies, id).is_none())
        {
            return Err(format!("Policy {missing:?} does not exist"));
        }
        Ok(())
    }

    async fn create_key(&self, key: ApiKey, mut session: SessionRecord) -> Response {
        if let Err(message) = self.check_session(&session) {
            return bad_request(message);
        }
        let key_id = KeyId::of(&key);
        session.key_id = key_id.clone();
        session.version = 0;
        match self.store.create(session).await {
            Ok(created) => {
                audit::session(
                    TYK_ACTOR,
                    "created",
                    &key_id,
                    &MetadataChange::replaced(&created.meta_data),
                );
                action("added", key.expose(), &key_id)
            }
            Err(StoreError::AlreadyExists) => {
                Tyk::error(StatusCode::CONFLICT, "Key already exists")
            }
            Err(e) => Tyk::store_error(&e),
        }
    }
}

/// `POST /tyk/keys` and `POST /tyk/keys/create`: a generated key.
pub(crate) async fn create_generated(
    _: TykAdmin,
    State(state): State<SharedState>,
    TykJson(session): TykJson<SessionRecord>,
) -> Response {
    state.create_key(ApiKey::generate(), session).await
}

/// `POST /tyk/keys/{key}`: a custom key.
pub(crate) async fn create_custom(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(key, ..): TykParam,
    TykJson(session): TykJson<SessionRecord>,
) -> Response {
    let key = ApiKey::new(key);
    if key.len() < state.min_key_length {
        return bad_request(format!(
            "Key is too short: a custom key needs at least {} characters",
            state.min_key_length
        ));
    }
    state.create_key(key, session).await
}

/// `GET /tyk/keys/{key}`: the session with its policies applied.
pub(crate) async fn get_key(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(key, ..): TykParam,
    RawQuery(query): RawQuery,
) -> Response {
    const NOT_FOUND: &str = "Key not found";
    let Some(key_id) = key_id(&key, query.as_deref()) else {
        return Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    match state.store.load(&key_id).await {
        Ok(Some(mut session)) => {
            let stored = session.clone();
            if let Err(missing) = apply_policies(&mut session, &state.policies) {
                // The same session is refused with 403 at request time; show what is stored.
                tracing::warn!(target: "keycard::admin", session = key_id.short(), policy = %missing.id, "key lists a policy that does not exist");
                session = stored;
            }
            json(StatusCode::OK, &session)
        }
        Ok(None) => Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND),
        Err(e) => Tyk::store_error(&e),
    }
}

/// `PUT /tyk/keys/{key}`: replaces the session.
pub(crate) async fn put_key(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(key, ..): TykParam,
    RawQuery(query): RawQuery,
    TykJson(mut session): TykJson<SessionRecord>,
) -> Response {
    const NOT_FOUND: &str = "Key is not found";
    let Some(key_id) = key_id(&key, query.as_deref()) else {
        return Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    if let Err(message) = state.check_session(&session) {
        return bad_request(message);
    }
    session.key_id = key_id.clone();
    match state.store.replace(session).await {
        Ok(replaced) => {
            audit::session(
                TYK_ACTOR,
                "replaced",
                &key_id,
                &MetadataChange::replaced(&replaced.meta_data),
            );
            action("modified", key_id.as_str(), &key_id)
        }
        Err(StoreError::NotFound) => Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND),
        Err(StoreError::Conflict { .. }) => Tyk::error(
            StatusCode::CONFLICT,
            "Key was changed concurrently: reload it and retry",
        ),
        Err(e) => Tyk::store_error(&e),
    }
}

/// `DELETE /tyk/keys/{key}`: deletes the session and sends back-channel logout.
pub(crate) async fn delete_key(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(key, ..): TykParam,
    RawQuery(query): RawQuery,
) -> Response {
    const NOT_FOUND: &str = "There is no such key found";
    let Some(key_id) = key_id(&key, query.as_deref()) else {
        return Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    match state.store.delete(&key_id).await {
        Ok(Some(session)) => {
            audit::session(
                TYK_ACTOR,
                "deleted",
                &key_id,
                &MetadataChange::replaced(&session.meta_data),
            );
            state.logout.session_ended(session);
            action("deleted", key_id.as_str(), &key_id)
        }
        Ok(None) => Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND),
        Err(e) => Tyk::store_error(&e),
    }
}

/// `GET /tyk/keys?from=&take=`: key hashes, paged.
pub(crate) async fn list_keys(
    _: TykAdmin,
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query_pairs(query.as_deref());
    let Ok(take) = take_param(&pairs, KEYS_PAGE_DEFAULT, KEYS_PAGE_MAX) else {
        return bad_request(format!(
            "take must be an integer between 1 and {KEYS_PAGE_MAX}"
        ));
    };
    match state
        .store
        .list_keys(query_value(&pairs, "from"), take)
        .await
    {
        Ok(page) => {
            let keys: Vec<&str> = page.items.iter().map(KeyId::as_str).collect();
            let mut body = json!({ "keys": keys });
            if let Some(next) = page.next {
                body["next"] = Value::String(next);
            }
            json(StatusCode::OK, &body)
        }
        Err(e) => Tyk::store_error(&e),
    }
}

const POLICY_NOT_FOUND: &str = "Policy not found";

fn policy_action(action: &str, id: &str) -> Response {
    json(
        StatusCode::OK,
        &json!({"key": id, "status": "ok", "action": action}),
    )
}

impl AdminState {
    /// The checks every policy write makes; `Err` is the 400 message.
    fn check_policy(&self, policy: &Policy) -> Result<(), String> {
        self.tyk_limits
            .check(&policy.meta_data)
            .map_err(|e| e.to_string())
    }
}

/// `GET /tyk/policies`: every policy, ordered by id.
pub(crate) async fn list_policies(_: TykAdmin, State(state): State<SharedState>) -> Response {
    let all: Vec<Policy> = state
        .policies
        .list()
        .iter()
        .map(|p| Policy::clone(p))
        .collect();
    json(StatusCode::OK, &all)
}

/// `GET /tyk/policies/{id}`.
pub(crate) async fn get_policy(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(id, ..): TykParam,
) -> Response {
    match keycard_core::policy::PolicySource::policy(&state.policies, &id) {
        Some(policy) => json(StatusCode::OK, &*policy),
        None => Tyk::error(StatusCode::NOT_FOUND, POLICY_NOT_FOUND),
    }
}

/// `POST /tyk/policies`: a new policy (an id is generated when the body has none).
pub(crate) async fn create_policy(
    _: TykAdmin,
    State(state): State<SharedState>,
    TykJson(mut policy): TykJson<Policy>,
) -> Response {
    if let Err(message) = state.check_policy(&policy) {
        return bad_request(message);
    }
    if policy.id.is_empty() {
        policy.id = ApiKey::generate().expose()[..24].to_owned();
    }
    let _guard = state.policy_writes.lock().await;
    if keycard_core::policy::PolicySource::policy(&state.policies, &policy.id).is_some() {
        return Tyk::error(StatusCode::CONFLICT, "Policy already exists");
    }
    audit::policy(TYK_ACTOR, "created", &policy.id, &policy.meta_data);
    let id = policy.id.clone();
    state.policies.insert(policy);
    policy_action("added", &id)
}

/// `PUT /tyk/policies/{id}`: replaces a policy (the path's id wins over the body's).
pub(crate) async fn put_policy(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(id, ..): TykParam,
    TykJson(mut policy): TykJson<Policy>,
) -> Response {
    if let Err(message) = state.check_policy(&policy) {
        return bad_request(message);
    }
    policy.id.clone_from(&id);
    let _guard = state.policy_writes.lock().await;
    if keycard_core::policy::PolicySource::policy(&state.policies, &id).is_none() {
        return Tyk::error(StatusCode::NOT_FOUND, POLICY_NOT_FOUND);
    }
    audit::policy(TYK_ACTOR, "replaced", &id, &policy.meta_data);
    state.policies.insert(policy);
    policy_action("modified", &id)
}

/// `DELETE /tyk/policies/{id}`.
pub(crate) async fn delete_policy(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(id, ..): TykParam,
) -> Response {
    let _guard = state.policy_writes.lock().await;
    match state.policies.remove(&id) {
        Some(removed) => {
            audit::policy(TYK_ACTOR, "deleted", &id, &removed.meta_data);
            policy_action("deleted", &id)
        }
        None => Tyk::error(StatusCode::NOT_FOUND, POLICY_NOT_FOUND),
    }
}
