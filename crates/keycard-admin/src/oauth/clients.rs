//! Tyk's OAuth client API (`/tyk/oauth/clients/...`), behind the Tyk secret.
//!
//! Bodies and answers are Tyk's `NewClientRequest` (`gateway/api.go`). Divergences, on purpose
//! (CHANGELOG lists each): the secret is stored hashed, so it is answered only by create and
//! rotate, never by a read; a posted secret needs 16 bytes; a body that does not parse is 400
//! `Request malformed` (Tyk: 500 `Unmarshalling failed`); metadata over the limits is 400; a
//! deleted client's tokens are revoked with it.

use axum::extract::{FromRequestParts, Path, State};
use axum::response::Response;
use http::StatusCode;
use http::request::Parts;
use keycard_core::key::ApiKey;
use keycard_core::metadata::Metadata;
use keycard_core::policy::PolicySource;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::store::Client;
use crate::auth::{TYK_ACTOR, TykAdmin, TykRefusals};
use crate::body::{INVALID_PARAM, Param, TYK_MALFORMED, TooLarge, TykJson};
use crate::error::{Shape, StoreFailures, Tyk, TykError, json};
use crate::state::{AdminState, SharedState};

const NOT_FOUND: &str = "OAuth Client ID not found";
const CLIENT_EXISTS: &str = "OAuth client already exists";
/// Tyk's words (gateway/api.go, `createOauthClient`).
const NO_POLICY: &str = "Policy doesn't exist";
const SHORT_SECRET: &str = "The client secret must be at least 16 bytes";
const META_NOT_OBJECT: &str = "meta_data must be a JSON object";

/// The shortest client secret accepted on create (generated ones are 64 hex characters).
const MIN_CLIENT_SECRET: usize = 16;

/// A client as Tyk's API takes it (`NewClientRequest`).
#[derive(Default, Deserialize, ToSchema)]
#[serde(default)]
pub(crate) struct ClientRequest {
    /// The client id; generated (32 hex characters) when empty.
    client_id: String,
    /// The redirect URI the authorization code flow must use.
    redirect_uri: String,
    /// The API the client belongs to; empty: every API.
    api_id: String,
    /// The policy client-credentials tokens (and code grants without `key_rules`) are made from.
    policy_id: String,
    /// The client secret (create only); generated (64 hex characters) when empty.
    secret: String,
    /// Metadata copied into every session issued to the client, for the keys the session
    /// lacks.
    #[schema(value_type = Object)]
    meta_data: Option<Value>,
    /// Free text.
    description: String,
}

/// A client as the API answers it (Tyk's `NewClientRequest`).
#[derive(Serialize, ToSchema)]
pub(crate) struct ClientAnswer {
    /// The client id.
    client_id: String,
    /// The registered redirect URI.
    redirect_uri: String,
    /// The API the client belongs to (absent: every API).
    #[serde(skip_serializing_if = "String::is_empty")]
    api_id: String,
    /// The client's policy.
    #[serde(skip_serializing_if = "String::is_empty")]
    policy_id: String,
    /// The secret: answered only by create and rotate (it is stored hashed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    secret: Option<String>,
    /// The client's metadata.
    #[schema(value_type = Object)]
    meta_data: Metadata,
    /// Free text.
    description: String,
}

impl ClientAnswer {
    fn of(client: Client, secret: Option<String>) -> Self {
        Self {
            client_id: client.client_id,
            redirect_uri: client.redirect_uri,
            api_id: client.api_id,
            policy_id: client.policy_id,
            secret,
            meta_data: client.meta_data,
            description: client.description,
        }
    }
}

/// What a delete answers (Tyk's `apiModifyKeySuccess`).
#[derive(Serialize, ToSchema)]
pub(crate) struct ClientDeleted {
    /// The client id.
    key: String,
    /// `ok`.
    status: String,
    /// `deleted`.
    action: String,
}

/// An access token of a client (Tyk's `OAuthClientToken`).
#[derive(Serialize, ToSchema)]
pub(crate) struct ClientToken {
    /// The token's key hash (its session id), never the token.
    code: String,
    /// When it expires (unix seconds).
    expires: i64,
}

/// `/{api_id}/{client_id}`, with Tyk's 400 for a path that is not UTF-8.
pub(crate) struct ClientPath {
    api_id: String,
    client_id: String,
}

impl<St: Send + Sync> FromRequestParts<St> for ClientPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|Path((api_id, client_id))| Self { api_id, client_id })
            .map_err(|_| Tyk::error(StatusCode::BAD_REQUEST, INVALID_PARAM))
    }
}

fn bad_request(message: impl Into<String>) -> Response {
    Tyk::error(StatusCode::BAD_REQUEST, message)
}

impl AdminState {
    /// The checks of a client write; `Err` is the 400 message.
    fn check_client(&self, request: &ClientRequest) -> Result<Metadata, String> {
        let meta_data = match &request.meta_data {
            None | Some(Value::Null) => Metadata::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(META_NOT_OBJECT.to_owned()),
        };
        self.tyk_limits
            .check(&meta_data)
            .map_err(|e| e.to_string())?;
        if !request.policy_id.is_empty() && self.policies.policy(&request.policy_id).is_none() {
            return Err(NO_POLICY.to_owned());
        }
        Ok(meta_data)
    }

    /// The client `path` names, when it belongs to the path's API (or to every API).
    fn client_at(&self, path: &ClientPath) -> Option<Client> {
        self.oauth
            .get(&path.client_id)
            .filter(|c| c.api_id.is_empty() || c.api_id == path.api_id)
    }
}

fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw).expect("the operating system random source failed");
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Create an OAuth client
///
/// The answer holds the secret: shown here (and by rotate) only, the store keeps its hash.
#[utoipa::path(
    post,
    path = "/tyk/oauth/clients/create",
    tag = "tyk",
    security(("tykSecret" = [])),
    request_body = ClientRequest,
    responses(
        (status = OK, description = "Created (or, as in Tyk, replaced)", body = ClientAnswer),
        (status = BAD_REQUEST, description = "The body does not parse, its metadata is not an object or is over the limits, its policy does not exist, or its secret is under 16 bytes", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, TYK_MALFORMED))),
        (status = CONFLICT, description = "The client id is taken (strict mode only; Tyk, and the default, replace the client)", body = TykError, example = json!(Tyk::body(StatusCode::CONFLICT, CLIENT_EXISTS))),
        TykRefusals,
        TooLarge<Tyk>,
    ),
)]
pub(crate) async fn create_client(
    _: TykAdmin,
    State(state): State<SharedState>,
    TykJson(request): TykJson<ClientRequest>,
) -> Response {
    let meta_data = match state.check_client(&request) {
        Ok(meta_data) => meta_data,
        Err(message) => return bad_request(message),
    };
    if !request.secret.is_empty() && request.secret.len() < MIN_CLIENT_SECRET {
        return bad_request(SHORT_SECRET);
    }
    let secret = if request.secret.is_empty() {
        ApiKey::generate().expose().to_owned()
    } else {
        request.secret
    };
    let client = Client {
        client_id: if request.client_id.is_empty() {
            random_hex(16)
        } else {
            request.client_id
        },
        redirect_uri: request.redirect_uri,
        api_id: request.api_id,
        policy_id: request.policy_id,
        meta_data,
        description: request.description,
    };
    if state.strict {
        if !state.oauth.put_new(client.clone(), &secret) {
            return Tyk::error(StatusCode::CONFLICT, CLIENT_EXISTS);
        }
    } else {
        state.oauth.put(client.clone(), &secret);
    }
    tracing::info!(target: "keycard::audit", actor = TYK_ACTOR, client = %client.client_id, metadata_keys = ?client.meta_data.keys().collect::<Vec<_>>(), "OAuth client created");
    json(StatusCode::OK, &ClientAnswer::of(client, Some(secret)))
}

/// List an API's OAuth clients
///
/// The clients created for the API and those created without an `api_id` (for every API); no
/// secrets.
#[utoipa::path(
    get,
    path = "/tyk/oauth/clients/{api_id}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("api_id" = String, Path, description = "The API id")),
    responses(
        (status = OK, description = "The clients, by id", body = Vec<ClientAnswer>),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, INVALID_PARAM))),
        TykRefusals,
    ),
)]
pub(crate) async fn list_clients(
    _: TykAdmin,
    State(state): State<SharedState>,
    Param(api_id, ..): Param<Tyk>,
) -> Response {
    let clients: Vec<ClientAnswer> = state
        .oauth
        .list(&api_id)
        .into_iter()
        .map(|c| ClientAnswer::of(c, None))
        .collect();
    json(StatusCode::OK, &clients)
}

/// Get an OAuth client
///
/// Without its secret (stored hashed; Tyk answers it).
#[utoipa::path(
    get,
    path = "/tyk/oauth/clients/{api_id}/{client_id}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("api_id" = String, Path, description = "The API id"), ("client_id" = String, Path, description = "The client id")),
    responses(
        (status = OK, description = "The client", body = ClientAnswer),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such client for this API", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, NOT_FOUND))),
        TykRefusals,
    ),
)]
pub(crate) async fn get_client(
    _: TykAdmin,
    State(state): State<SharedState>,
    path: ClientPath,
) -> Response {
    match state.client_at(&path) {
        Some(client) => json(StatusCode::OK, &ClientAnswer::of(client, None)),
        None => Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND),
    }
}

/// Update an OAuth client
///
/// Replaces its redirect URI, policy, metadata and description; the id, API and secret stay
/// (rotate changes the secret). Tokens already issued keep the metadata they were issued with.
#[utoipa::path(
    put,
    path = "/tyk/oauth/clients/{api_id}/{client_id}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("api_id" = String, Path, description = "The API id"), ("client_id" = String, Path, description = "The client id")),
    request_body = ClientRequest,
    responses(
        (status = OK, description = "Updated", body = ClientAnswer),
        (status = BAD_REQUEST, description = "The body does not parse, its metadata is not an object or is over the limits, or its policy does not exist; or the path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, TYK_MALFORMED))),
        (status = NOT_FOUND, description = "No such client for this API", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, NOT_FOUND))),
        TykRefusals,
        TooLarge<Tyk>,
    ),
)]
pub(crate) async fn put_client(
    _: TykAdmin,
    State(state): State<SharedState>,
    path: ClientPath,
    TykJson(request): TykJson<ClientRequest>,
) -> Response {
    let Some(mut client) = state.client_at(&path) else {
        return Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let meta_data = match state.check_client(&request) {
        Ok(meta_data) => meta_data,
        Err(message) => return bad_request(message),
    };
    client.redirect_uri = request.redirect_uri;
    client.policy_id = request.policy_id;
    client.meta_data = meta_data;
    client.description = request.description;
    if !state.oauth.update(client.clone()) {
        return Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    tracing::info!(target: "keycard::audit", actor = TYK_ACTOR, client = %client.client_id, metadata_keys = ?client.meta_data.keys().collect::<Vec<_>>(), "OAuth client updated");
    json(StatusCode::OK, &ClientAnswer::of(client, None))
}

/// Rotate an OAuth client's secret
///
/// The answer holds the new secret; the old one stops working at once. Issued tokens stay.
#[utoipa::path(
    put,
    path = "/tyk/oauth/clients/{api_id}/{client_id}/rotate",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("api_id" = String, Path, description = "The API id"), ("client_id" = String, Path, description = "The client id")),
    responses(
        (status = OK, description = "Rotated", body = ClientAnswer),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such client for this API", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, NOT_FOUND))),
        TykRefusals,
    ),
)]
pub(crate) async fn rotate_client(
    _: TykAdmin,
    State(state): State<SharedState>,
    path: ClientPath,
) -> Response {
    let Some(client) = state.client_at(&path) else {
        return Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let secret = ApiKey::generate().expose().to_owned();
    if !state.oauth.rotate(&client.client_id, &secret) {
        return Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND);
    }
    tracing::info!(target: "keycard::audit", actor = TYK_ACTOR, client = %client.client_id, "OAuth client secret rotated");
    json(StatusCode::OK, &ClientAnswer::of(client, Some(secret)))
}

/// List an OAuth client's access tokens
///
/// The live ones, oldest first, by key hash (Tyk, with `hash_keys`); Tyk's `?page=` is not
/// offered.
#[utoipa::path(
    get,
    path = "/tyk/oauth/clients/{api_id}/{client_id}/tokens",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("api_id" = String, Path, description = "The API id"), ("client_id" = String, Path, description = "The client id")),
    responses(
        (status = OK, description = "The tokens", body = Vec<ClientToken>),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such client for this API", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, NOT_FOUND))),
        TykRefusals,
    ),
)]
pub(crate) async fn client_tokens(
    _: TykAdmin,
    State(state): State<SharedState>,
    path: ClientPath,
) -> Response {
    let Some(client) = state.client_at(&path) else {
        return Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    let now = keycard_core::session::unix_now();
    let tokens: Vec<ClientToken> = state
        .oauth
        .live_tokens_of(&client.client_id, now)
        .into_iter()
        .map(|(key_id, expires)| ClientToken {
            code: key_id.as_str().to_owned(),
            expires,
        })
        .collect();
    json(StatusCode::OK, &tokens)
}

/// Delete an OAuth client
///
/// Its access tokens are deleted from the session store first, then its pending codes and
/// refresh tokens go with the client.
#[utoipa::path(
    delete,
    path = "/tyk/oauth/clients/{api_id}/{client_id}",
    tag = "tyk",
    security(("tykSecret" = [])),
    params(("api_id" = String, Path, description = "The API id"), ("client_id" = String, Path, description = "The client id")),
    responses(
        (status = OK, description = "Deleted", body = ClientDeleted),
        (status = BAD_REQUEST, description = "The path is not UTF-8", body = TykError, example = json!(Tyk::body(StatusCode::BAD_REQUEST, INVALID_PARAM))),
        (status = NOT_FOUND, description = "No such client for this API", body = TykError, example = json!(Tyk::body(StatusCode::NOT_FOUND, NOT_FOUND))),
        TykRefusals,
        StoreFailures<Tyk>,
    ),
)]
pub(crate) async fn delete_client(
    _: TykAdmin,
    State(state): State<SharedState>,
    path: ClientPath,
) -> Response {
    let Some(client) = state.client_at(&path) else {
        return Tyk::error(StatusCode::NOT_FOUND, NOT_FOUND);
    };
    for key_id in state.oauth.tokens_of(&client.client_id) {
        if let Err(e) = state.store.delete(&key_id).await {
            return Tyk::store_error(&e);
        }
    }
    state.oauth.remove(&client.client_id);
    tracing::info!(target: "keycard::audit", actor = TYK_ACTOR, client = %client.client_id, "OAuth client deleted");
    json(
        StatusCode::OK,
        &ClientDeleted {
            key: client.client_id,
            status: "ok".to_owned(),
            action: "deleted".to_owned(),
        },
    )
}
