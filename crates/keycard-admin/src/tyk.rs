//! The Tyk-compatible keys and policies API (`/tyk/keys...`, `/tyk/policies...`).
//!
//! Requests and answers are Tyk's (its gateway swagger and `gateway/api.go`): a session
//! round-trips every `SessionState` field (the ones keycard does not act on are stored as they
//! came), times are Tyk's strings, writes answer `{key, status, action}` with the key as the path
//! gave it. Divergences, on purpose (CHANGELOG lists each with its reason):
//! - every write answers `key_hash` beside `key`;
//! - a `version` that is no longer the stored one makes a `PUT` 409 (optimistic concurrency), a
//!   missing policy in `apply_policies` is 400 at write time instead of a broken key at request
//!   time, a key created already expired is 400;
//! - a posted `date_created` is kept (an import keeps its keys' creation times; Tyk stamps now);
//! - `POST /tyk/keys/preview` answers a body that does not parse with 400 (Tyk: 500);
//! - `GET /tyk/keys` pages with `?from=<cursor>&take=<n>` and answers `next` when there is more;
//! - [`strict`](crate::AdminApiBuilder::strict) mode refuses re-posting a key or a policy (409)
//!   and custom keys under 16 characters.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::StatusCode;
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::policy::{Policy, apply_policies};
use keycard_core::session::{SessionRecord, null_as_default};
use keycard_core::store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{self, MetadataChange};
use crate::auth::{TYK_ACTOR, TykAdmin, TykRefusals};
use crate::body::{Param, TooLarge, TykInstruction, TykJson, query_pairs, query_value, take_param};
use crate::error::{Shape, StoreFailures, Tyk, TykError, json};
use crate::state::{AdminState, SharedState};

type TykParam = Param<Tyk>;

const KEYS_PAGE_DEFAULT: usize = 100;
const KEYS_PAGE_MAX: usize = 1000;

const MALFORMED: &str = crate::body::TYK_MALFORMED;
const KEY_EXISTS: &str = "Key already exists";
const KEY_CONFLICT: &str = "Key was changed concurrently: reload it and retry";
const GET_NOT_FOUND: &str = "Key not found";
/// The quota reset of an API built without the rate-limit stage's quotas.
const NO_QUOTAS: &str = "Quotas are not counted by this API: build it with the rate-limit stage's quotas (Keycard::admin_api does)";
const PUT_NOT_FOUND: &str = "Key is not found";
const DELETE_NOT_FOUND: &str = "There is no such key found";
const POLICY_EXISTS: &str = "Policy already exists";
/// Tyk's words for a PUT whose body names another policy (gateway/api.go, handleAddOrUpdatePolicy).
const POLICY_ID_MISMATCH: &str =
    "Request ID does not match that in policy! For Update operations these must match.";
/// A key created already expired: Tyk silently makes it never expire; we refuse it, since the
/// 200 would hand out a key that works forever (or, in a store that drops expired sessions, not
/// at all).
const EXPIRED_ON_CREATE: &str =
    "Key expiry is in the past: use a future unix time, or 0 for a key that never expires";

/// What a write of a key or a policy answers.
#[derive(Serialize, ToSchema)]
pub(crate) struct TykAction {
    /// A created key: the raw key, shown only here. A replaced or deleted key: the key as the
    /// path gave it (Tyk). A policy: its id.
    key: String,
    // No doc comments on inlined enums: utoipa would put them in an `allOf` with an object.
    #[schema(inline)]
    status: TykOk,
    #[schema(inline)]
    action: ActionKind,
    /// The key hash (key writes only): the key's id in the Auth0 sessions API and with
    /// `?hashed=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key_hash: Option<String>,
}

/// The `status` of a Tyk write: always `ok`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum TykOk {
    Ok,
}

/// The `action` of a Tyk write: what was done.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum ActionKind {
    Added,
    Modified,
    Deleted,
    Reset,
    Updated,
}

fn action(action: ActionKind, key: &str, key_id: &KeyId) -> Response {
    let body = TykAction {
        key: key.to_owned(),
        status: TykOk::Ok,
        action,
        key_hash: Some(key_id.as_str().to_owned()),
    };
    json(StatusCode::OK, &body)
}

/// A page of key hashes.
#[derive(Serialize, ToSchema)]
pub(crate) struct KeyList {
    /// Key hashes, in order.
    keys: Vec<String>,
    /// The cursor of the next page (`?from=`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    next: Option<String>,
}

fn bad_request(message: impl Into<String>) -> Response {
    Tyk::error(StatusCode::BAD_REQUEST, message)
}

/// The key a path names: the raw key (hashed with the API's key hasher), or with
/// `?hashed=true` its id.
fn key_id(state: &AdminState, key: &str, query: Option<&str>) -> Option<KeyId> {
    let pairs = query_pairs(query);
    // Tyk reads any non-empty `hashed` value as "the path holds the hash" (gateway/api.go,
    // `keyHandler`: `Query().Get("hashed") != ""`), so `hashed=yes` does too.
    let hashed = query_value(&pairs, "hashed").is_some_and(|value| !value.is_empty());
    if hashed {
        KeyId::from_hash(key)
    } else {
        Some(state.key_hasher.key_id(&ApiKey::new(key)))
    }
}

/// Tyk's `?suppress_reset=1`: a key write that leaves the key's quota counter alone.
fn suppress_reset(query: Option<&str>) -> bool {
    query_value(&query_pairs(query), "suppress_reset") == Some("1")
}

impl AdminState {
    /// After a key is written: Tyk resets its quota (the key's own counter; a pattern bucket
    /// shared with other keys is left alone) unless `?suppress_reset=1`. The write has
    /// happened; a limiter that cannot be reached is logged, not answered.
    async fn reset_written_quota(&self, key_id: &KeyId, query: Option<&str>) {
        let Some(quotas) = &self.quotas else { return };
        if suppress_reset(query) {
            return;
        }
        if let Err(error) = quotas.reset_key(key_id).await {
            tracing::warn!(target: "keycard::admin", session = key_id.short(), %error, "key written, but its quota could not be reset");
        }
    }

    /// The session as the API shows it: its policies applied and, when quotas are counted
    /// here, the live `quota_remaining` and `quota_renews`.
    async fn shown(&self, key_id: &KeyId, mut session: SessionRecord) -> SessionRecord {
        let stored = session.clone();
        if let Err(missing) = apply_policies(&mut session, &self.policies) {
            // The same session is refused with 403 at request time; show what is stored.
            tracing::warn!(target: "keycard::admin", session = key_id.short(), policy = %missing.id, "key lists a policy that does not exist");
            return stored;
        }
        // What Tyk shows without a counter to read: the whole quota, as nothing was used
        // (gateway/api.go, handleGetDetail: `quota_max` minus a missing counter).
        let unused = |session: &mut SessionRecord| {
            if session.quota_max != -1 {
                session.quota_remaining = session.quota_max.max(0);
            }
        };
        let Some(quotas) = &self.quotas else {
            unused(&mut session);
            return session;
        };
        match quotas.live(&session).await {
            Ok(Some(live)) => {
                session.quota_remaining = i64::try_from(live.remaining).unwrap_or(i64::MAX);
                if let Some(after) = live.renews_after {
                    let seconds =
                        i64::try_from(after.as_secs_f64().ceil() as u64).unwrap_or(i64::MAX);
                    session.quota_renews =
                        keycard_core::session::unix_now().saturating_add(seconds);
                }
            }
            Ok(None) => unused(&mut session),
            // Tyk shows the stored value when it cannot read the counter.
            Err(error) => {
                tracing::warn!(target: "keycard::admin", session = key_id.short(), %error, "cannot read the live quota; showing the stored one");
            }
        }
        session
    }

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

    async fn create_key(
        &self,
        key: ApiKey,
        mut session: SessionRecord,
        query: Option<&str>,
    ) -> Response {
        if let Err(message) = self.check_session(&session) {
            return bad_request(message);
        }
        if session.expires > 1 && session.expires <= keycard_core::session::unix_now() {
            return bad_request(EXPIRED_ON_CREATE);
        }
        let key_id = self.key_hasher.key_id(&key);
        session.key_id = key_id.clone();
        session.version = 0;
        let mut event = "created";
        let created = match self.store.create(session.clone()).await {
            // Tyk's POST of an existing custom key overwrites it; the audit trail says so.
            Err(StoreError::AlreadyExists) if !self.strict => {
                event = "replaced";
                self.store.replace(session).await
            }
            other => other,
        };
        match created {
            Ok(created) => {
                audit::session(
                    TYK_ACTOR,
                    event,
                    &key_id,
                    &MetadataChange::replaced(&created.meta_data),
                );
                self.reset_written_quota(&key_id, query).await;
                action(ActionKind::Added, key.expose(), &key_id)
            }
            Err(StoreError::AlreadyExists) => Tyk::error(StatusCode::CONFLICT, KEY_EXISTS),
            Err(e) => Tyk::store_error(&e),
        }
    }
}

/// Create a key with a generated value
///
/// The answer's `key` is the raw key: it is shown here and never again (the store keeps its hash).
#[utoipa::path(
    post,
    path = "/tyk/keys",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("suppress_reset" = Option<String>, Query, description = "`1`: leave the key's quota counter alone (Tyk); otherwise writing a key resets its own quota, when the API counts quotas")),
    request_body = SessionRecord,
    responses(
        (status = OK, description = "Created", body = TykAction),
        (status = BAD_REQUEST, description = "The body does not parse, its metadata is over the limits, or it names a policy that does not exist", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, MALFORMED))),
        (status = CONFLICT, description = "A generated key collided with an existing one (strict mode; 256 random bits make it practically impossible)", body = TykError, example = json!(Tyk::body(StatusCode::CONFLICT, KEY_EXISTS))),
        TykRefusals,
        TooLarge<Tyk>,
        StoreFailures<Tyk>,
    ),
)]
pub(crate) async fn create_generated(
    _: TykAdmin,
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
    TykJson(session): TykJson<SessionRecord>,
) -> Response {
    state
        .create_key(ApiKey::generate(), session, query.as_deref())
        .await
}

/// Create a key with a generated value (Tyk's other path for `POST /tyk/keys`)
///
/// The answer's `key` is the raw key: it is shown here and never again (the store keeps its hash).
#[utoipa::path(
    post,
    path = "/tyk/keys/create",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("suppress_reset" = Option<String>, Query, description = "`1`: leave the key's quota counter alone (Tyk); otherwise writing a key resets its own quota, when the API counts quotas")),
    request_body = SessionRecord,
    responses(
        (status = OK, description = "Created", body = TykAction),
        (status = BAD_REQUEST, description = "The body does not parse, its metadata is over the limits, or it names a policy that does not exist", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, MALFORMED))),
        (status = CONFLICT, description = "A generated key collided with an existing one (strict mode; 256 random bits make it practically impossible)", body = TykError, example = json!(Tyk::body(StatusCode::CONFLICT, KEY_EXISTS))),
        TykRefusals,
        TooLarge<Tyk>,
        StoreFailures<Tyk>,
    ),
)]
pub(crate) async fn create_generated_alias(
    admin: TykAdmin,
    state: State<SharedState>,
    query: RawQuery,
    body: TykJson<SessionRecord>,
) -> Response {
    create_generated(admin, state, query, body).await
}

/// Create a key with a custom value
///
/// The key must have at least the configured number of characters (3 by default, as Tyk; 16 in
/// strict mode).
#[utoipa::path(
    post,
    path = "/tyk/keys/{key}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("key" = String, Path, description = "The raw key"), ("suppress_reset" = Option<String>, Query, description = "`1`: leave the key's quota counter alone (Tyk); otherwise writing a key resets its own quota, when the API counts quotas")),
    request_body = SessionRecord,
    responses(
        (status = OK, description = "Created", body = TykAction),
        (status = BAD_REQUEST, description = "The key is shorter than the minimum (3 characters as Tyk, 16 in strict mode), the body does not parse, its metadata is over the limits, its `expires` is in the past, or it names a policy that does not exist; or the path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, MALFORMED))),
        (status = CONFLICT, description = "The key exists (strict mode only; Tyk, and the default, overwrite it)", body = TykError, example = json!(Tyk::body(StatusCode::CONFLICT, KEY_EXISTS))),
        TykRefusals,
        TooLarge<Tyk>,
        StoreFailures<Tyk>,
    ),
)]
pub(crate) async fn create_custom(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(key, ..): TykParam,
    RawQuery(query): RawQuery,
    TykJson(session): TykJson<SessionRecord>,
) -> Response {
    let key = ApiKey::new(key);
    if key.len() < state.min_key_length {
        return bad_request(format!(
            "Key is too short: a custom key needs at least {} characters",
            state.min_key_length
        ));
    }
    state.create_key(key, session, query.as_deref()).await
}

/// Get a key's session, its policies applied
///
/// A session naming a policy that no longer exists is shown as stored.
#[utoipa::path(
    get,
    path = "/tyk/keys/{key}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("key" = String, Path, description = "The raw key, or its hash with `?hashed=true`"), ("hashed" = Option<String>, Query, description = "Any non-empty value (`true`, `1`, `yes`), as in Tyk: the path holds the key hash, not the raw key")),
    responses(
        (status = OK, description = "The session", body = SessionRecord),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, crate::body::INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such key", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, GET_NOT_FOUND))),
        TykRefusals,
        StoreFailures<Tyk>,
    ),
)]
pub(crate) async fn get_key(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(key, ..): TykParam,
    RawQuery(query): RawQuery,
) -> Response {
    const NOT_FOUND: &str = GET_NOT_FOUND;
    let Some(key_id) = key_id(&state, &key, query.as_deref()) else {
        return Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    match state.store.load(&key_id).await {
        Ok(Some(session)) => json(StatusCode::OK, &state.shown(&key_id, session).await),
        Ok(None) => Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND),
        Err(e) => Tyk::store_error(&e),
    }
}

/// Replace a key's session
///
/// With a non-zero `version` (the one read), the replace succeeds only while it is still the
/// stored one.
#[utoipa::path(
    put,
    path = "/tyk/keys/{key}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("key" = String, Path, description = "The raw key, or its hash with `?hashed=true`"), ("hashed" = Option<String>, Query, description = "Any non-empty value (`true`, `1`, `yes`), as in Tyk: the path holds the key hash, not the raw key"), ("suppress_reset" = Option<String>, Query, description = "`1`: leave the key's quota counter alone (Tyk); otherwise writing a key resets its own quota, when the API counts quotas")),
    request_body = SessionRecord,
    responses(
        (status = OK, description = "Replaced; `key` is the path's key as given, as Tyk answers, and `key_hash` the hash", body = TykAction),
        (status = BAD_REQUEST, description = "The body does not parse, its metadata is over the limits, or it names a policy that does not exist; or the path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, MALFORMED))),
        (status = NOT_FOUND, description = "No such key", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, PUT_NOT_FOUND))),
        (status = CONFLICT, description = "`version` is no longer the stored one", body = TykError, example = json!(Tyk::body(StatusCode::CONFLICT, KEY_CONFLICT))),
        TykRefusals,
        TooLarge<Tyk>,
        StoreFailures<Tyk>,
    ),
)]
pub(crate) async fn put_key(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(key, ..): TykParam,
    RawQuery(query): RawQuery,
    TykJson(mut session): TykJson<SessionRecord>,
) -> Response {
    const NOT_FOUND: &str = PUT_NOT_FOUND;
    let Some(key_id) = key_id(&state, &key, query.as_deref()) else {
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
            state.reset_written_quota(&key_id, query.as_deref()).await;
            action(ActionKind::Modified, &key, &key_id)
        }
        Err(StoreError::NotFound) => Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND),
        Err(StoreError::Conflict { .. }) => Tyk::error(StatusCode::CONFLICT, KEY_CONFLICT),
        Err(e) => Tyk::store_error(&e),
    }
}

/// Reset a key's quota
///
/// Forgets what the quota of the bucket the key is counted in has counted: its own, or the
/// bucket of its `rate_limit_pattern` when that resolves from its metadata (every key sharing
/// it starts over). The next request starts a new period.
#[utoipa::path(
    post,
    path = "/tyk/keys/reset/{key}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("key" = String, Path, description = "The raw key, or its hash with `?hashed=true`"), ("hashed" = Option<String>, Query, description = "Any non-empty value (`true`, `1`, `yes`), as in Tyk: the path holds the key hash, not the raw key")),
    responses(
        (status = OK, description = "Reset; `key` is the path's key as given, `key_hash` the hash", body = TykAction),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, crate::body::INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such key", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, GET_NOT_FOUND))),
        (status = NOT_IMPLEMENTED, description = "The API was built without the rate-limit stage's quotas", body = TykError, example = json!(Tyk::body(StatusCode::NOT_IMPLEMENTED, NO_QUOTAS))),
        TykRefusals,
        StoreFailures<Tyk>,
    ),
)]
pub(crate) async fn reset_quota(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(key, ..): TykParam,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(quotas) = &state.quotas else {
        return Tyk::error(StatusCode::NOT_IMPLEMENTED, NO_QUOTAS);
    };
    let Some(key_id) = key_id(&state, &key, query.as_deref()) else {
        return Tyk::error(StatusCode::NOT_FOUND, GET_NOT_FOUND);
    };
    let mut session = match state.store.load(&key_id).await {
        Ok(Some(session)) => session,
        Ok(None) => return Tyk::error(StatusCode::NOT_FOUND, GET_NOT_FOUND),
        Err(e) => return Tyk::store_error(&e),
    };
    // The bucket follows the pattern a policy may set; a missing policy leaves the stored one.
    let stored = session.clone();
    if apply_policies(&mut session, &state.policies).is_err() {
        session = stored;
    }
    match quotas.reset(&session).await {
        Ok(()) => {
            tracing::info!(target: "keycard::admin", session = key_id.short(), actor = TYK_ACTOR, "quota reset");
            action(ActionKind::Reset, &key, &key_id)
        }
        Err(e) => Tyk::store_error(&e),
    }
}

/// Delete a key
///
/// Sends an OIDC back-channel logout for the session when one is configured.
#[utoipa::path(
    delete,
    path = "/tyk/keys/{key}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("key" = String, Path, description = "The raw key, or its hash with `?hashed=true`"), ("hashed" = Option<String>, Query, description = "Any non-empty value (`true`, `1`, `yes`), as in Tyk: the path holds the key hash, not the raw key")),
    responses(
        (status = OK, description = "Deleted; `key` is the path's key as given (raw, or the hash with `hashed`), as Tyk answers, and `key_hash` the hash", body = TykAction),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, crate::body::INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such key", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, DELETE_NOT_FOUND))),
        TykRefusals,
        StoreFailures<Tyk>,
    ),
)]
pub(crate) async fn delete_key(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(key, ..): TykParam,
    RawQuery(query): RawQuery,
) -> Response {
    const NOT_FOUND: &str = DELETE_NOT_FOUND;
    let Some(key_id) = key_id(&state, &key, query.as_deref()) else {
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
            action(ActionKind::Deleted, &key, &key_id)
        }
        Ok(None) => Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND),
        Err(e) => Tyk::store_error(&e),
    }
}

/// Preview a key definition
///
/// The session as a key created from this body would be shown, its policies applied, without
/// storing anything; the same checks as a create (limits, policies that exist).
#[utoipa::path(
    post,
    path = "/tyk/keys/preview",
    tag = "tyk",
    security(("tykSecret" = [])),
    request_body = SessionRecord,
    responses(
        (status = OK, description = "The session a create would store, its policies applied", body = SessionRecord),
        (status = BAD_REQUEST, description = "The body does not parse (Tyk: 500 `Unmarshalling failed`), its metadata is over the limits, or it names a policy that does not exist", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, MALFORMED))),
        TykRefusals,
        TooLarge<Tyk>,
    ),
)]
pub(crate) async fn preview_key(
    _: TykAdmin,
    State(state): State<SharedState>,
    TykJson(mut session): TykJson<SessionRecord>,
) -> Response {
    if let Err(message) = state.check_session(&session) {
        return bad_request(message);
    }
    let now = keycard_core::session::unix_now();
    session.last_updated = now;
    if session.date_created == 0 {
        session.date_created = now;
    }
    session.key_id = KeyId::default();
    session.version = 0;
    // Every policy exists (checked above), so this cannot fail.
    let _ = apply_policies(&mut session, &state.policies);
    json(StatusCode::OK, &session)
}

/// The body of `POST /tyk/keys/policy/{key}` (Tyk's `PolicyUpdateObj`).
#[derive(Default, Deserialize, ToSchema)]
#[serde(default)]
pub(crate) struct PolicyUpdate {
    /// One policy id (deprecated in Tyk), added after `apply_policies`.
    policy: String,
    /// The policies the key gets, replacing its list.
    #[serde(deserialize_with = "null_as_default")]
    apply_policies: Vec<String>,
}

/// Set the policies of a key named by its hash
///
/// Replaces the key's `apply_policies` with the body's (and its `policy`, when given); every other
/// field is kept. The path holds the key hash, as in Tyk.
#[utoipa::path(
    post,
    path = "/tyk/keys/policy/{key}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("key" = String, Path, description = "The key hash")),
    request_body = PolicyUpdate,
    responses(
        (status = OK, description = "Updated; `key` is the key hash, as Tyk answers", body = TykAction),
        (status = BAD_REQUEST, description = "The body does not parse (Tyk's words), or it names a policy that does not exist; or the path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, crate::body::TYK_BAD_INSTRUCTION))),
        (status = NOT_FOUND, description = "No such key", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, GET_NOT_FOUND))),
        (status = CONFLICT, description = "The key changed while it was updated, more often than a retry absorbs", body = TykError, example = json!(Tyk::body(StatusCode::CONFLICT, KEY_CONFLICT))),
        TykRefusals,
        TooLarge<Tyk>,
        StoreFailures<Tyk>,
    ),
)]
pub(crate) async fn set_key_policies(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(key, ..): TykParam,
    TykInstruction(update): TykInstruction<PolicyUpdate>,
) -> Response {
    let mut policies = update.apply_policies;
    if !update.policy.is_empty() {
        policies.push(update.policy);
    }
    if let Some(missing) = policies
        .iter()
        .find(|id| keycard_core::policy::PolicySource::policy(&state.policies, id).is_none())
    {
        return bad_request(format!("Policy {missing:?} does not exist"));
    }
    let Some(key_id) = KeyId::from_hash(&key) else {
        return Tyk::error(StatusCode::NOT_FOUND, GET_NOT_FOUND);
    };
    // Read, change the list, replace at the version read; a concurrent write retries.
    for _ in 0..3 {
        let mut session = match state.store.load(&key_id).await {
            Ok(Some(session)) => session,
            Ok(None) => return Tyk::error(StatusCode::NOT_FOUND, GET_NOT_FOUND),
            Err(e) => return Tyk::store_error(&e),
        };
        session.apply_policies.clone_from(&policies);
        session.key_id = key_id.clone();
        match state.store.replace(session).await {
            Ok(_) => {
                tracing::info!(target: "keycard::admin", session = key_id.short(), actor = TYK_ACTOR, policies = ?policies, "key policies set");
                return action(ActionKind::Updated, key_id.as_str(), &key_id);
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(StoreError::NotFound) => return Tyk::error(StatusCode::NOT_FOUND, GET_NOT_FOUND),
            Err(e) => return Tyk::store_error(&e),
        }
    }
    Tyk::error(StatusCode::CONFLICT, KEY_CONFLICT)
}

/// List key hashes, a page at a time
#[utoipa::path(
    get,
    path = "/tyk/keys",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(
        ("from" = Option<String>, Query, description = "Cursor: the `next` of the previous page"),
        ("take" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size (default 100)"),
    ),
    responses(
        (status = OK, description = "A page of key hashes", body = KeyList),
        (status = BAD_REQUEST, description = "`take` is not an integer in 1..=1000", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, take_message()))),
        TykRefusals,
        StoreFailures<Tyk>,
    ),
)]
pub(crate) async fn list_keys(
    _: TykAdmin,
    State(state): State<SharedState>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query_pairs(query.as_deref());
    let Ok(take) = take_param(&pairs, KEYS_PAGE_DEFAULT, KEYS_PAGE_MAX) else {
        return bad_request(take_message());
    };
    match state
        .store
        .list_keys(query_value(&pairs, "from"), take)
        .await
    {
        Ok(page) => {
            let keys = page.items.iter().map(|id| id.as_str().to_owned()).collect();
            json(
                StatusCode::OK,
                &KeyList {
                    keys,
                    next: page.next,
                },
            )
        }
        Err(e) => Tyk::store_error(&e),
    }
}

fn take_message() -> String {
    format!("take must be an integer between 1 and {KEYS_PAGE_MAX}")
}

const POLICY_NOT_FOUND: &str = "Policy not found";

fn policy_action(action: ActionKind, id: &str) -> Response {
    let body = TykAction {
        key: id.to_owned(),
        status: TykOk::Ok,
        action,
        key_hash: None,
    };
    json(StatusCode::OK, &body)
}

impl AdminState {
    /// The checks every policy write makes; `Err` is the 400 message.
    fn check_policy(&self, policy: &Policy) -> Result<(), String> {
        self.tyk_limits
            .check(&policy.meta_data)
            .map_err(|e| e.to_string())
    }
}

/// List every policy, ordered by id
#[utoipa::path(
    get,
    path = "/tyk/policies",
    tag = "tyk",
    security(("tykSecret" = [])),
    responses(
        (status = OK, description = "Every policy", body = Vec<Policy>),
        TykRefusals,
    ),
)]
pub(crate) async fn list_policies(_: TykAdmin, State(state): State<SharedState>) -> Response {
    let all: Vec<Policy> = state
        .policies
        .list()
        .iter()
        .map(|p| Policy::clone(p))
        .collect();
    json(StatusCode::OK, &all)
}

/// Get a policy
#[utoipa::path(
    get,
    path = "/tyk/policies/{id}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("id" = String, Path, description = "The policy id")),
    responses(
        (status = OK, description = "The policy", body = Policy),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, crate::body::INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such policy", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, POLICY_NOT_FOUND))),
        TykRefusals,
    ),
)]
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

/// Create a policy
///
/// An id is generated when the body has none.
#[utoipa::path(
    post,
    path = "/tyk/policies",
    tag = "tyk",
    security(("tykSecret" = [])),
    request_body = Policy,
    responses(
        (status = OK, description = "Created; `key` is the policy id", body = TykAction),
        (status = BAD_REQUEST, description = "The body does not parse or its metadata is over the limits", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, MALFORMED))),
        (status = CONFLICT, description = "A policy with this id exists (strict mode only; Tyk overwrites it)", body = TykError, example = json!(Tyk::body(StatusCode::CONFLICT, POLICY_EXISTS))),
        TykRefusals,
        TooLarge<Tyk>,
    ),
)]
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
    // Tyk's POST of an existing policy overwrites it; strict mode refuses.
    if state.strict
        && keycard_core::policy::PolicySource::policy(&state.policies, &policy.id).is_some()
    {
        return Tyk::error(StatusCode::CONFLICT, POLICY_EXISTS);
    }
    audit::policy(TYK_ACTOR, "created", &policy.id, &policy.meta_data);
    let id = policy.id.clone();
    state.policies.insert(policy);
    policy_action(ActionKind::Added, &id)
}

/// Replace a policy
///
/// A body `id` must be the path's (Tyk's 400 otherwise); a body without one takes the path's.
#[utoipa::path(
    put,
    path = "/tyk/policies/{id}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("id" = String, Path, description = "The policy id")),
    request_body = Policy,
    responses(
        (status = OK, description = "Replaced; `key` is the policy id", body = TykAction),
        (status = BAD_REQUEST, description = "The body does not parse or its metadata is over the limits; or the path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, MALFORMED))),
        (status = NOT_FOUND, description = "No such policy", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, POLICY_NOT_FOUND))),
        TykRefusals,
        TooLarge<Tyk>,
    ),
)]
pub(crate) async fn put_policy(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(id, ..): TykParam,
    TykJson(mut policy): TykJson<Policy>,
) -> Response {
    if let Err(message) = state.check_policy(&policy) {
        return bad_request(message);
    }
    if !policy.id.is_empty() && policy.id != id {
        return bad_request(POLICY_ID_MISMATCH);
    }
    policy.id.clone_from(&id);
    let _guard = state.policy_writes.lock().await;
    if keycard_core::policy::PolicySource::policy(&state.policies, &id).is_none() {
        return Tyk::error(StatusCode::NOT_FOUND, POLICY_NOT_FOUND);
    }
    audit::policy(TYK_ACTOR, "replaced", &id, &policy.meta_data);
    state.policies.insert(policy);
    policy_action(ActionKind::Modified, &id)
}

/// Delete a policy
#[utoipa::path(
    delete,
    path = "/tyk/policies/{id}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("id" = String, Path, description = "The policy id")),
    responses(
        (status = OK, description = "Deleted; `key` is the policy id", body = TykAction),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, crate::body::INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such policy", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, POLICY_NOT_FOUND))),
        TykRefusals,
    ),
)]
pub(crate) async fn delete_policy(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(id, ..): TykParam,
) -> Response {
    let _guard = state.policy_writes.lock().await;
    match state.policies.remove(&id) {
        Some(removed) => {
            audit::policy(TYK_ACTOR, "deleted", &id, &removed.meta_data);
            policy_action(ActionKind::Deleted, &id)
        }
        None => Tyk::error(StatusCode::NOT_FOUND, POLICY_NOT_FOUND),
    }
}
