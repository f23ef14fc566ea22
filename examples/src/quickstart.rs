//! The quickstart stack: an axum app whose requests carry session metadata.
//!
//! ```text
//! request ─► Keycard: load ─► request headers ─► /whoami, /visits, /echo
//! response ◄─ Keycard: save (only when the handler changed something) ◄─┘
//! ```
//!
//! - `GET /whoami` — the session's metadata as JSON;
//! - `POST /visits` — increments metadata `visits` through the [`Session`] extractor and returns
//!   `{"visits": n}`; the store adds the increment atomically, so concurrent calls all count;
//! - `GET /echo` — the headers the handler received, with lower-case names: `x-user-id` and
//!   `x-tenant-id` injected from metadata, `authorization` removed.

use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use keycard::headers::HeaderConfigError;
use keycard::prelude::*;
use keycard::store::StoreError;
use serde_json::{Map, Value, json};

/// The default demo key.
pub const DEFAULT_DEMO_KEY: &str = "demo-key";

/// The demo session's metadata.
pub fn demo_metadata() -> Value {
    json!({"user_id": "u-demo", "tenant_id": "acme", "plan": "gold"})
}

/// A [`MemoryStore`] holding one demo session under `key`.
///
/// # Errors
/// Only if the store refuses the session (not for a new in-memory store).
pub fn demo_store(key: &str) -> Result<MemoryStore, StoreError> {
    let store = MemoryStore::new();
    store.insert(
        SessionRecord::for_key(key)
            .metadata(demo_metadata())
            .with_alias("demo"),
    )?;
    Ok(store)
}

/// The header rules: `X-User-Id` and `X-Tenant-Id` from metadata. (The key itself never gets
/// this far: the load stage removes the credential.)
///
/// # Errors
/// Never for these literal rules; the signature mirrors [`keycard::headers::InjectHeadersBuilder::build`].
pub fn identity_headers() -> Result<InjectHeadersLayer, HeaderConfigError> {
    InjectHeadersLayer::request()
        .set("x-user-id", "$tyk_meta.user_id")
        .set("x-tenant-id", "$tyk_meta.tenant_id")
        .build()
}

/// The quickstart routes, without keycard.
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
pub fn app(store: impl SessionStore) -> Result<Router, HeaderConfigError> {
    wrap(routes(), store)
}

/// The quickstart's [`Keycard`] over `store`: load, [`identity_headers`], save.
///
/// # Errors
/// If the header rules do not build (they are literals, so never in practice).
pub fn keycard(
    store: impl SessionStore,
) -> Result<Keycard<keycard::Identity, keycard::Identity, InjectHeadersLayer>, HeaderConfigError> {
    Ok(Keycard::new(store).request_headers(identity_headers()?))
}

/// Wraps `routes` (any routes, a proxy...) in the quickstart stack over `store`.
///
/// # Errors
/// If the header rules do not build (they are literals, so never in practice).
pub fn wrap(routes: Router, store: impl SessionStore) -> Result<Router, HeaderConfigError> {
    Ok(keycard(store)?.wrap(routes))
}

async fn whoami(session: Session) -> Json<Value> {
    Json(Value::Object(session.metadata()))
}

async fn visits(session: Session) -> Result<Json<Value>, MetadataRejection> {
    let visits = session.increment("visits", 1)?;
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
