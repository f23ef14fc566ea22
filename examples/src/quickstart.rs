//! The quickstart stack: an axum app whose requests carry session metadata.
//!
//! ```text
//! request ─► SessionLoadLayer ─► PersistLayer ─► InjectHeaders ─► /whoami, /visits, /echo
//! ```
//!
//! - `GET /whoami` — the session's metadata as JSON;
//! - `POST /visits` — increments metadata `visits` through the [`Session`] extractor and returns
//!   `{"visits": n}` (saved by persist after the response);
//! - `GET /echo` — the headers the handler received, with lower-case names: `x-user-id` and
//!   `x-tenant-id` injected from metadata, `authorization` removed.

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use keycard::extract::MetadataRejection;
use keycard::headers::HeaderConfigError;
use keycard::prelude::*;
use keycard::session::Session as StoredSession;
use keycard::store::StoreError;
use serde_json::{Map, Value, json};
use tower::ServiceBuilder;

/// The default demo key.
pub const DEFAULT_DEMO_KEY: &str = "demo-key";

/// The demo session's metadata.
pub fn demo_metadata() -> Metadata {
    let Value::Object(meta) = json!({"user_id": "u-demo", "tenant_id": "acme", "plan": "gold"})
    else {
        unreachable!("a JSON object literal")
    };
    meta
}

/// A [`MemoryStore`] holding one demo session under `key`.
///
/// # Errors
/// Only if the store refuses the session (not for a new in-memory store).
pub async fn demo_store(key: &str) -> Result<MemoryStore, StoreError> {
    let store = MemoryStore::new();
    let session = StoredSession::new(demo_metadata())
        .with_key_id(KeyId::of(&ApiKey::new(key)))
        .with_alias("demo");
    store.create(session).await?;
    Ok(store)
}

/// The header rules: `X-User-Id` and `X-Tenant-Id` from metadata; `Authorization` removed so
/// the key never travels further.
///
/// # Errors
/// Never for these literal rules; the signature mirrors [`InjectHeaders::build`].
pub fn identity_headers() -> Result<keycard::headers::InjectHeadersLayer, HeaderConfigError> {
    InjectHeaders::request()
        .remove("authorization")
        .set("x-user-id", "$tyk_meta.user_id")
        .set("x-tenant-id", "$tyk_meta.tenant_id")
        .build()
}

/// The quickstart routes, without keycard's layers.
pub fn routes() -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/visits", post(visits))
        .route("/echo", get(echo))
}

/// The quickstart app: [`routes`] wrapped by [`wrap`].
///
/// # Errors
/// If the header rules do not build (they are literals, so never in practice).
pub fn app(store: impl SessionStore + Clone) -> Result<Router, HeaderConfigError> {
    wrap(routes(), store)
}

/// Wraps any routes in the quickstart layers: SessionLoad → Persist → InjectHeaders over `store`.
///
/// # Errors
/// If the header rules do not build (they are literals, so never in practice).
pub fn wrap(routes: Router, store: impl SessionStore + Clone) -> Result<Router, HeaderConfigError> {
    Ok(routes.layer(
        ServiceBuilder::new()
            .layer(SessionLoadLayer::new(store.clone()))
            .layer(PersistLayer::new(store))
            .layer(identity_headers()?),
    ))
}

async fn whoami(session: Session) -> Json<Value> {
    Json(Value::Object(session.metadata()))
}

async fn visits(session: Session) -> Result<Json<Value>, MetadataRejection> {
    let visits = session.get("visits").and_then(|v| v.as_u64()).unwrap_or(0) + 1;
    session.set_metadata("visits", json!(visits))?;
    Ok(Json(json!({ "visits": visits })))
}

/// A router that answers every path with the request headers it received (the `/echo` handler).
pub fn echo_router() -> Router {
    Router::new().fallback(echo)
}

async fn echo(headers: HeaderMap) -> Json<Value> {
    let mut seen = Map::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        seen.entry(name.as_str()).or_insert(Value::String(value));
    }
    Json(Value::Object(seen))
}
