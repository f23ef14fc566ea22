//! Body enrichment: request bodies gain the caller's `tenant_id` from session metadata, and
//! response bodies are wrapped with who they were served to.
//!
//! ```text
//! request ─► Keycard: load ─► request body ────────────────────────► /orders
//!                             POST /orders: body + tenant_id     response body: GET|POST /orders
//!                             from _tyk_meta (the client's       JSON wrapped
//!                             tenant_id is overwritten)          as {"data": ..., "served_to":
//!                                                                user_id}
//! ```
//!
//! (The request body rule runs on the way in, the response body rule on the way out.)
//!
//! - `POST /orders` — the handler answers with the order it received, so you see the injected
//!   `tenant_id`; the response transform wraps it;
//! - `GET /orders` — a list of orders, wrapped the same way;
//! - `GET /health` — no rule selects it: body and headers stream through untouched.

use axum::routing::get;
use axum::{Json, Router};
use http::Method;
use keycard::body::{BodyConfigError, BodyRule, Scope, TransformBodyLayer};
use keycard::prelude::{Keycard, SessionStore};
use serde_json::{Value, json};

/// The most bytes of a request or response body the layers buffer (both sides).
pub const BODY_LIMIT: usize = 64 * 1024;

/// The request template: the client's JSON object with `tenant_id` set from the session.
///
/// Every client key that a backend could read as `tenant_id` is dropped, not only the exact one:
/// Go's `encoding/json` matches field names case-insensitively, folding each character as
/// `ToUpper(ToLower(c))` (so `TENANT_ID` and `tenant_ıd`, with a dotless i, both fill a
/// `TenantID` field), which `key|lower|upper` mirrors — for every character but `İ` (U+0130),
/// which Rust lowers to `i` plus a combining dot, so `tenant_İd` passes the filter. The
/// session's value is written last for that reason too: Go's decoder, and most others, keep the
/// last of two matching keys. The rule is
/// [`objects_only`](keycard::body::BodyRule::objects_only), so a body that is not an object is a
/// 400 and never reaches the template.
pub const ENRICH_TEMPLATE: &str = r#"{{ "{" }}{% for key, value in _body|items if key|lower|upper != "TENANT_ID" %}{{ key|tojson }}:{{ value|tojson }},{% endfor %}"tenant_id":{{ _tyk_meta.tenant_id|tojson }}}"#;

/// The response template: `{"data": <the upstream JSON>, "served_to": <user_id>}`.
pub const WRAP_TEMPLATE: &str =
    r#"{"data":{{ _body|tojson }},"served_to":{{ _tyk_meta.user_id|tojson }}}"#;

/// `POST /orders`: the request body, enriched with `tenant_id`.
///
/// # Errors
/// Never for these literal rules; the signature mirrors [`keycard::body::TransformBodyBuilder::build`].
pub fn enrich_requests() -> Result<TransformBodyLayer, BodyConfigError> {
    TransformBodyLayer::request()
        .rule(
            Scope::path("/orders").method(Method::POST),
            BodyRule::json(ENRICH_TEMPLATE)
                .session_data()
                .objects_only()
                .output_content_type("application/json"),
        )
        .limit(BODY_LIMIT)
        .build()
}

/// `/orders` (any method): JSON responses wrapped with `served_to`.
///
/// # Errors
/// Never for these literal rules; the signature mirrors [`keycard::body::TransformBodyBuilder::build`].
pub fn wrap_responses() -> Result<TransformBodyLayer, BodyConfigError> {
    TransformBodyLayer::response()
        .rule(
            Scope::path("/orders"),
            BodyRule::json(WRAP_TEMPLATE)
                .session_data()
                .when_content_type("application/json"),
        )
        .limit(BODY_LIMIT)
        .build()
}

/// The example's routes, without keycard's layers.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/orders",
            get(|| async { Json(json!([{"id": 1, "item": "book"}, {"id": 2, "item": "pen"}])) })
                .post(|Json(order): Json<Value>| async move { Json(order) }),
        )
        .route("/health", get(|| async { "ok" }))
}

/// The example app: [`routes`] wrapped by [`wrap`].
///
/// # Errors
/// If the body rules do not build (they are literals, so never in practice).
pub fn app(store: impl SessionStore) -> Result<Router, BodyConfigError> {
    wrap(routes(), store)
}

/// Wraps `routes` in the example's stack over `store`: [`Keycard`] with [`enrich_requests`]
/// and [`wrap_responses`].
///
/// # Errors
/// If the body rules do not build (they are literals, so never in practice).
pub fn wrap(routes: Router, store: impl SessionStore) -> Result<Router, BodyConfigError> {
    let keycard = Keycard::new(store)
        .request_body(enrich_requests()?)
        .response_body(wrap_responses()?);
    Ok(keycard.wrap(routes))
}
