use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use http::{HeaderMap, Method, Request, StatusCode};
use keycard_core::store::MemoryStore;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

use super::{HeaderRules, InjectHeadersLayer, Scope};
use crate::auth::SessionLoadLayer;
use crate::session::Session;
use crate::test_support::{KEY, store};

/// An app whose handler answers with the request headers it received as JSON, counting calls.
fn echo(store: MemoryStore, inject: InjectHeadersLayer, calls: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "/{*path}",
            get(move |headers: HeaderMap| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let map: serde_json::Map<String, Value> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
                    .collect();
                axum::Json(Value::Object(map))
            })
            .post(|Extension(session): Extension<Session>| async move {
                session.set("plan", json!("changed")).unwrap();
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(SessionLoadLayer::new(store))
                .layer(inject),
        )
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

fn get_req(path: &str, extra: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(path).header("authorization", KEY);
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn spec_vector_injects_replaces_and_removes() {
    let store = store(json!({"user_id": "u-1", "tenant": "acme"})).await;
    let inject = InjectHeadersLayer::request()
        .set("X-User-Id", "$tyk_meta.user_id")
        .set("X-Tenant", "$tyk_meta.tenant")
        .remove("Authorization")
        .build()
        .unwrap();
    let app = echo(store, inject, Arc::default());
    let (status, _, seen) = send(&app, get_req("/x", &[("x-user-id", "admin")])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["x-user-id"], "u-1");
    assert_eq!(seen["x-tenant"], "acme");
    assert!(seen.get("authorization").is_none());
}

#[tokio::test]
async fn crlf_in_metadata_fails_with_500_and_nothing_reaches_the_handler() {
    let store = store(json!({"x": "a\r\nSet-Cookie: s=1"})).await;
    let inject = InjectHeadersLayer::request()
        .set("X-A", "$tyk_meta.x")
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = echo(store, inject, calls.clone());
    let (status, headers, body) = send(&app, get_req("/x", &[])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, json!({"error": "Invalid header value"}));
    assert!(headers.get("set-cookie").is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn missing_variable_is_empty_or_omitted() {
    let store = store(json!({})).await;
    let inject = InjectHeadersLayer::request()
        .set("x-empty", "[$tyk_meta.nope]")
        .set_or_omit("x-omitted", "$tyk_meta.nope")
        .build()
        .unwrap();
    let (_, _, seen) = send(
        &echo(store, inject, Arc::default()),
        get_req("/x", &[("x-omitted", "client")]),
    )
    .await;
    assert_eq!(seen["x-empty"], "[]");
    // An omitted header is never the client's: its copy is removed.
    assert!(seen.get("x-omitted").is_none(), "{seen}");
}

#[tokio::test]
async fn scoped_request_rules_run_after_global_and_win() {
    let store = store(json!({"user_id": "u-1"})).await;
    let inject = InjectHeadersLayer::request()
        .set("x-who", "global")
        .scoped(
            Scope::path("/admin/*").method(Method::GET),
            HeaderRules::new().set("x-who", "scoped $tyk_meta.user_id"),
        )
        .build()
        .unwrap();
    let app = echo(store, inject, Arc::default());
    let (_, _, seen) = send(&app, get_req("/admin/users", &[])).await;
    assert_eq!(seen["x-who"], "scoped u-1");
    let (_, _, seen) = send(&app, get_req("/public", &[])).await;
    assert_eq!(seen["x-who"], "global");
}

#[tokio::test]
async fn response_rules_render_from_the_session_after_the_handler_and_global_wins() {
    let store = store(json!({"plan": "gold"})).await;
    let inject = InjectHeadersLayer::response()
        .set("x-plan", "$tyk_meta.plan")
        .set("x-path", "$tyk_context.path")
        .scoped(
            Scope::path("/*"),
            HeaderRules::new()
                .set("x-plan", "scoped")
                .set("x-scoped", "yes"),
        )
        .build()
        .unwrap();
    let app = echo(store, inject, Arc::default());
    let (_, headers, _) = send(&app, get_req("/a", &[])).await;
    assert_eq!(headers["x-plan"], "gold");
    assert_eq!(headers["x-scoped"], "yes");
    assert_eq!(headers["x-path"], "/a");
    let request = Request::post("/a")
        .header("authorization", KEY)
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = send(&app, request).await;
    assert_eq!(headers["x-plan"], "changed");
}

#[tokio::test]
async fn invalid_template_or_name_is_a_build_error() {
    let err = InjectHeadersLayer::request()
        .set("x-a", "${tyk_meta.open")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("x-a"), "{err}");
    let err = InjectHeadersLayer::request()
        .set("bad header", "v")
        .build()
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid header name \"bad header\"");
}

#[tokio::test]
async fn outside_session_load_fails_loudly() {
    let inject = InjectHeadersLayer::request().set("x", "y").build().unwrap();
    let app = Router::new()
        .route("/", get(|| async { "reached" }))
        .layer(inject);
    let (status, _, body) = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({"error": "Server misconfigured: session layer missing"})
    );
}

#[tokio::test]
async fn request_id_is_stable_between_rules() {
    let store = store(json!({})).await;
    let inject = InjectHeadersLayer::request()
        .set("x-a", "$tyk_context.request_id")
        .set("x-b", "$tyk_context.request_id")
        .build()
        .unwrap();
    let (_, _, seen) = send(&echo(store, inject, Arc::default()), get_req("/x", &[])).await;
    assert_eq!(seen["x-a"].as_str().unwrap().len(), 36);
    assert_eq!(seen["x-a"], seen["x-b"]);
}
