//! Tenant routing: each tenant's `/orders/*` is rewritten to its own shard, chosen by session
//! metadata, before axum routes the request.
//!
//! ```text
//! request ─► Keycard: load ─► rewrite ─► Router
//!            (key → session)   /orders/42 → /shards/$tyk_meta.shard/orders/42
//!                                            └─► /shards/{shard}/orders/{*rest}
//! ```
//!
//! The rewrite wraps the whole [`Router`] from outside: axum picks the route before middleware
//! added with `Router::layer` runs, so a rewrite in there would come too late. Metadata lands in
//! the path percent-encoded as one segment, and the path is normalised before the rule sees it:
//! `/%6Frders/7` is `/orders/7`, while a dot segment in the client's path (`/orders/../../us-2/..`,
//! `%2e%2e`, `..%5C`) is 400 and a shard whose value would climb out of `/shards/` (`../admin`)
//! is 500, so no tenant reaches another's shard through an upstream that resolves dots. The
//! shard handler also checks the path's shard is the caller's own, so calling
//! `/shards/<another tenant's shard>/...` directly gets a 404.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keycard::prelude::*;
use keycard::rewrite::RewriteConfigError;
use keycard::store::StoreError;
use serde_json::json;

/// The demo tenants: (API key, tenant, shard).
pub const DEMO_TENANTS: [(&str, &str, &str); 2] = [
    ("acme-key", "acme", "eu-1"),
    ("globex-key", "globex", "us-2"),
];

/// Stores a session for `tenant` on `shard` under `key`.
///
/// # Errors
/// If the store refuses the session (not for a new in-memory store).
pub fn add_tenant(
    store: &MemoryStore,
    key: &str,
    tenant: &str,
    shard: &str,
) -> Result<(), StoreError> {
    let record = SessionRecord::for_key(key)
        .metadata(json!({ "tenant": tenant, "shard": shard }))
        .with_alias(tenant);
    store.insert(record)?;
    Ok(())
}

/// A [`MemoryStore`] holding the [`DEMO_TENANTS`].
///
/// # Errors
/// Only if the store refuses a session (not for a new in-memory store).
pub fn demo_store() -> Result<MemoryStore, StoreError> {
    let store = MemoryStore::new();
    for (key, tenant, shard) in DEMO_TENANTS {
        add_tenant(&store, key, tenant, shard)?;
    }
    Ok(store)
}

/// The rewrite: `/orders/*` → `/shards/$tyk_meta.shard/orders/*` (the capture takes the query
/// along).
///
/// # Errors
/// Never for this literal rule; the signature mirrors [`keycard::rewrite::UrlRewriteBuilder::build`].
pub fn shard_rewrite() -> Result<UrlRewriteLayer, RewriteConfigError> {
    UrlRewriteLayer::rules()
        .rule(RewriteRule::new(
            r"^/orders/(.*)",
            "/shards/$tyk_meta.shard/orders/$1",
        ))
        .build()
}

/// The shard routes, without keycard's layers: `/shards/{shard}/orders/{*rest}` answers
/// `{"shard": ..., "order": ...}` for the caller's own shard, 404 for any other.
pub fn routes() -> Router {
    Router::new().route("/shards/{shard}/orders/{*rest}", get(order))
}

/// The tenant-routing service over `store`: [`routes`] wrapped in [`Keycard`] with
/// [`shard_rewrite`].
///
/// # Errors
/// If the rewrite rule does not build (a literal, so never in practice).
pub fn app(store: impl SessionStore) -> Result<Router, RewriteConfigError> {
    Ok(Keycard::new(store).rewrite(shard_rewrite()?).wrap(routes()))
}

async fn order(session: Session, Path((shard, rest)): Path<(String, String)>) -> Response {
    // Defence in depth: the rewrite only ever sends a tenant to its own shard, but a client can
    // also call `/shards/...` directly.
    if session.get::<String>("shard").ok().flatten().as_deref() != Some(shard.as_str()) {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "Not found"}))).into_response();
    }
    Json(json!({ "shard": shard, "order": rest })).into_response()
}
