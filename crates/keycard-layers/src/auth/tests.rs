use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use http::{HeaderMap, Request, StatusCode};
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::policy::{MemoryPolicies, Policy};
use keycard_core::session::{SessionRecord, unix_now};
use keycard_core::store::{MemoryStore, SessionStore};
use keycard_core::testing::stores::UnavailableStore;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{KeySource, SessionLoadLayer};
use crate::session::{NoSession, Session};
use crate::test_support::store_with;

fn app(layer: SessionLoadLayer) -> Router {
    Router::new()
        .route(
            "/",
            get(
                |handle: Option<Extension<Session>>,
                 none: Option<Extension<NoSession>>,
                 headers: HeaderMap| async move {
                    let user = handle.map(|Extension(h)| h.get_value("user_id"));
                    axum::Json(json!({
                        "user": user,
                        "anonymous": none.is_some(),
                        "authorization": headers.get("authorization").is_some(),
                        "cookie": headers.get("cookie").map(|v| v.to_str().unwrap().to_owned()),
                    }))
                },
            ),
        )
        .layer(layer)
}

async fn call(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

fn get_with(header: Option<&str>) -> Request<Body> {
    let mut builder = Request::get("/");
    if let Some(value) = header {
        builder = builder.header("authorization", value);
    }
    builder.body(Body::empty()).unwrap()
}

fn meta(value: Value) -> keycard_core::metadata::Metadata {
    SessionRecord::default().metadata(value).meta_data
}

#[tokio::test]
async fn missing_key_gets_401_with_www_authenticate() {
    let store = MemoryStore::new();
    let (status, headers, body) = call(&app(SessionLoadLayer::new(store)), get_with(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body, json!({"error": "Authorization field missing"}));
}

/// The path is normalised before anything else: a dot segment is refused even without a key,
/// and the service is handed the normalised path.
#[tokio::test]
async fn the_path_is_normalised_first_and_dot_segments_are_400() {
    let app = Router::new()
        .fallback(|uri: http::Uri| async move { axum::Json(json!({"uri": uri.to_string()})) })
        .layer(SessionLoadLayer::new(MemoryStore::new()).optional());
    for path in ["/a/../b", "/a/%2E%2e/b", "/a/..%5Cb", "/a/%zz"] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let (status, _, body) = call(&app, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body, json!({"error": "Invalid request path"}), "{path}");
    }
    let request = Request::get("/%61/%2fb?q=%61").body(Body::empty()).unwrap();
    let (status, _, body) = call(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"uri": "/a/%2Fb?q=%61"}));
}

#[tokio::test]
async fn missing_key_from_a_query_source_has_no_www_authenticate() {
    let layer = SessionLoadLayer::new(MemoryStore::new()).key_sources([KeySource::query("key")]);
    let (status, headers, _) = call(&app(layer), get_with(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get("www-authenticate").is_none());
}

#[tokio::test]
async fn unknown_and_short_keys_get_403() {
    let store = store_with("ab", SessionRecord::default()).await;
    let app = app(SessionLoadLayer::new(store));
    for key in ["Bearer nope", "Bearer ab"] {
        let (status, headers, body) = call(&app, get_with(Some(key))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{key}");
        assert!(headers.get("www-authenticate").is_none());
        assert_eq!(
            body,
            json!({"error": "Access to this API has been disallowed"})
        );
    }
}

/// `jwt:` begins the identities generated sessions' ids are hashed from: an API key spelled so
/// would name a JWT session, so it is refused before any store call.
#[tokio::test]
async fn keys_in_the_generated_session_namespace_get_403() {
    let store = store_with("jwt:acme:alice", SessionRecord::default()).await;
    let (status, _, body) = call(
        &app(SessionLoadLayer::new(store)),
        get_with(Some("Bearer jwt:acme:alice")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"error": "Access to this API has been disallowed"})
    );
}

#[tokio::test]
async fn valid_key_loads_the_session() {
    let store = store_with(
        "good-key",
        SessionRecord::new(meta(json!({"user_id": "u-1"}))),
    )
    .await;
    let (status, _, body) = call(
        &app(SessionLoadLayer::new(store)),
        get_with(Some("Bearer good-key")),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"], "u-1");
    assert_eq!(
        body["authorization"], false,
        "the credential is removed by default"
    );
}

#[tokio::test]
async fn inactive_key_gets_403_and_so_does_an_inactive_policy() {
    let mut session = SessionRecord::default();
    session.is_inactive = true;
    let store = store_with("key-1", session).await;
    let (status, _, body) = call(&app(SessionLoadLayer::new(store)), get_with(Some("key-1"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"error": "Key is inactive, please renew"}));

    let policies = MemoryPolicies::new();
    policies.insert(Policy::new("off").inactive());
    let store = store_with("key-1", SessionRecord::default().with_policies(["off"])).await;
    let layer = SessionLoadLayer::new(store).policies(policies);
    let (status, _, body) = call(&app(layer), get_with(Some("key-1"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"error": "Key is inactive, please renew"}));
}

#[tokio::test]
async fn expired_key_gets_401_with_message() {
    let store = store_with(
        "key-1",
        SessionRecord::default().with_expires(unix_now() - 5),
    )
    .await;
    let (status, headers, body) =
        call(&app(SessionLoadLayer::new(store)), get_with(Some("key-1"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
    assert_eq!(body, json!({"error": "Key has expired, please renew"}));
}

#[tokio::test]
async fn unknown_policy_gets_403() {
    let store = store_with("key-1", SessionRecord::default().with_policies(["gone"])).await;
    let (status, _, body) = call(&app(SessionLoadLayer::new(store)), get_with(Some("key-1"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"error": "Access to this API has been disallowed"})
    );
}

#[tokio::test]
async fn policies_shape_the_view() {
    let policies = MemoryPolicies::new();
    policies.insert(Policy::new("p").with_meta("user_id", json!("from-policy")));
    let store = store_with(
        "key-1",
        SessionRecord::new(meta(json!({"user_id": "own"}))).with_policies(["p"]),
    )
    .await;
    let layer = SessionLoadLayer::new(store.clone()).policies(policies);
    let app = app(layer);
    for _ in 0..2 {
        let (_, _, body) = call(&app, get_with(Some("key-1"))).await;
        assert_eq!(body["user"], "from-policy");
    }
    let id = KeyId::of(&ApiKey::new("key-1"));
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.meta_data["user_id"], "own");
    // The policy view never reaches the store's shared copy either.
    let shared = store.load_shared(&id).await.unwrap().unwrap();
    assert_eq!(shared.meta_data["user_id"], "own");
}

#[tokio::test]
async fn store_down_gets_503() {
    let layer = SessionLoadLayer::from_shared_store(Arc::new(UnavailableStore));
    let (status, _, body) = call(&app(layer), get_with(Some("key-1"))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({"error": "Session store unavailable"}));
}

#[tokio::test]
async fn optional_mode_lets_keyless_requests_through_but_not_bad_keys() {
    let layer = SessionLoadLayer::new(MemoryStore::new()).optional();
    let app = app(layer);
    let (status, _, body) = call(&app, get_with(None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["anonymous"], true);
    let (status, _, _) = call(&app, get_with(Some("Bearer bad-key"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn credential_is_stripped_unless_kept() {
    let store = store_with("key-1", SessionRecord::default()).await;
    let layer = SessionLoadLayer::new(store.clone());
    let (_, _, body) = call(&app(layer), get_with(Some("Bearer key-1"))).await;
    assert_eq!(body["authorization"], false);
    let layer = SessionLoadLayer::new(store.clone()).keep_credential();
    let (_, _, body) = call(&app(layer), get_with(Some("Bearer key-1"))).await;
    assert_eq!(body["authorization"], true);

    let layer = SessionLoadLayer::new(store).key_sources([KeySource::cookie("kc")]);
    let request = Request::get("/")
        .header("cookie", "theme=dark; kc=key-1")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = call(&app(layer), request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["cookie"], "theme=dark");
}

#[tokio::test]
async fn sources_are_tried_in_order() {
    let store = store_with("key-1", SessionRecord::new(meta(json!({"user_id": "u"})))).await;
    let layer = SessionLoadLayer::new(store).key_sources([
        KeySource::header(http::HeaderName::from_static("x-api-key")),
        KeySource::query("key"),
    ]);
    let request = Request::get("/?key=key-1").body(Body::empty()).unwrap();
    let (status, _, _) = call(&app(layer.clone()), request).await;
    assert_eq!(status, StatusCode::OK);
    let request = Request::get("/?key=key-1")
        .header("x-api-key", "wrong")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = call(&app(layer), request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn configuring_a_clone_leaves_the_original_unchanged() {
    let store = store_with("key-1", SessionRecord::default()).await;
    let base = SessionLoadLayer::new(store);
    let optional = base.clone().optional();
    let (status, _, _) = call(&app(optional), get_with(None)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(&app(base), get_with(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
