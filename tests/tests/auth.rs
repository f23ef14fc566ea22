//! Every response case of `docs/auth.md`, over real HTTP.

use axum::Router;
use axum::routing::get;
use keycard::auth::{KeySource, SessionLoadLayer};
use keycard::persist::PersistLayer;
use keycard::policy::{MemoryPolicies, Policy};
use keycard::prelude::{MemoryStore, SessionStore};
use keycard::session::Session;
use keycard::session::{SessionRecord, unix_now};
use keycard_tests::http::{Client, TestResponse, spawn};
use keycard_tests::stores::{ReadOnlyStore, UnavailableStore};
use serde_json::{Value, json};
use tower::ServiceBuilder;

fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|session: Session| async move { axum::Json(Value::Object(session.metadata())) }),
        )
        .route(
            "/touch",
            get(|session: Session| async move {
                session.set("touched", json!(true)).unwrap();
                "touched"
            }),
        )
}

async fn seeded() -> (MemoryStore, MemoryPolicies) {
    let store = MemoryStore::new();
    let policies = MemoryPolicies::new();
    policies.insert(Policy::new("off").inactive());
    policies.insert(Policy::new("gold").with_meta("plan", json!("gold")));
    let mut inactive = SessionRecord::default();
    inactive.is_inactive = true;
    let sessions = [
        ("good-key", SessionRecord::default().with_policies(["gold"])),
        ("inactive-key", inactive),
        (
            "policy-off-key",
            SessionRecord::default().with_policies(["off"]),
        ),
        (
            "expired-key",
            SessionRecord::default().with_expires(unix_now() - 60),
        ),
        (
            "future-key",
            SessionRecord::default().with_expires(unix_now() + 3600),
        ),
        (
            "ghost-policy-key",
            SessionRecord::default().with_policies(["ghost"]),
        ),
        ("ab", SessionRecord::default()),
    ];
    for (key, session) in sessions {
        store.create(session.with_key(key)).await.unwrap();
    }
    (store, policies)
}

async fn client(layer: SessionLoadLayer) -> Client {
    Client::new(spawn(routes().layer(layer)).await)
}

fn assert_error(response: &TestResponse, status: u16, message: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.headers["content-type"], "application/json");
    assert_eq!(response.json(), json!({ "error": message }));
}

#[tokio::test]
async fn every_auth_case_answers_with_its_status_and_body() {
    let (store, policies) = seeded().await;
    let client = client(SessionLoadLayer::new(store).policies(policies)).await;
    let bearer = |key: &str| format!("Bearer {key}");
    let cases: [(Option<&str>, u16, &str); 8] = [
        (None, 401, "Authorization field missing"),
        (
            Some("unknown-key"),
            403,
            "Access to this API has been disallowed",
        ),
        (Some("ab"), 403, "Access to this API has been disallowed"),
        (Some("inactive-key"), 403, "Key is inactive, please renew"),
        (Some("policy-off-key"), 403, "Key is inactive, please renew"),
        (Some("expired-key"), 401, "Key has expired, please renew"),
        (
            Some("ghost-policy-key"),
            403,
            "Access to this API has been disallowed",
        ),
        (Some(""), 401, "Authorization field missing"),
    ];
    for (key, status, message) in cases {
        let header = key.map(bearer);
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        let response = client.get("/", &headers).await;
        assert_error(&response, status, message);
        let challenged = response
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap());
        assert_eq!(challenged, (status == 401).then_some("Bearer"), "{key:?}");
    }
    for key in ["good-key", "future-key"] {
        let response = client.get("/", &[("authorization", &bearer(key))]).await;
        assert_eq!(response.status, 200, "{key}: {}", response.text());
    }
    let response = client
        .get("/", &[("authorization", "Bearer good-key")])
        .await;
    assert_eq!(response.json()["plan"], "gold");
}

#[tokio::test]
async fn store_unavailable_is_503() {
    let client = client(SessionLoadLayer::new(UnavailableStore)).await;
    let response = client
        .get("/", &[("authorization", "Bearer some-key")])
        .await;
    assert_error(&response, 503, "Session store unavailable");
}

#[tokio::test]
async fn failed_save_is_503_unless_told_to_keep_the_response() {
    let (store, policies) = seeded().await;
    let read_only = ReadOnlyStore(store);
    let strict = routes().layer(
        ServiceBuilder::new()
            .layer(SessionLoadLayer::new(read_only.clone()).policies(policies.clone()))
            .layer(PersistLayer::new(read_only.clone())),
    );
    let client = Client::new(spawn(strict).await);
    let auth = [("authorization", "Bearer good-key")];
    assert_eq!(
        client.get("/", &auth).await.status,
        200,
        "reads need no save"
    );
    assert_error(
        &client.get("/touch", &auth).await,
        503,
        "Session could not be saved",
    );

    let lenient = routes().layer(
        ServiceBuilder::new()
            .layer(SessionLoadLayer::new(read_only.clone()).policies(policies))
            .layer(PersistLayer::new(read_only).keep_response_on_failure()),
    );
    let client = Client::new(spawn(lenient).await);
    let response = client.get("/touch", &auth).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "touched");
}

#[tokio::test]
async fn query_and_cookie_keys_work_and_can_be_stripped() {
    let (store, policies) = seeded().await;
    let layer = SessionLoadLayer::new(store)
        .policies(policies)
        .key_sources([KeySource::query("api_key"), KeySource::cookie("kc")]);
    let client = client(layer).await;
    assert_eq!(client.get("/?api_key=good-key", &[]).await.status, 200);
    assert_eq!(
        client.get("/", &[("cookie", "kc=good-key")]).await.status,
        200
    );
    let response = client.get("/?api_key=nope", &[]).await;
    assert_error(&response, 403, "Access to this API has been disallowed");
    let response = client
        .get("/", &[("authorization", "Bearer good-key")])
        .await;
    assert_error(&response, 401, "Authorization field missing");
    assert!(response.headers.get("www-authenticate").is_none());
}

#[tokio::test]
async fn optional_mode_serves_keyless_requests_without_a_session() {
    let (store, policies) = seeded().await;
    let routes = Router::new().route(
        "/",
        get(|session: Option<Session>| async move {
            if session.is_some() {
                "session"
            } else {
                "anonymous"
            }
        }),
    );
    let app = routes.layer(SessionLoadLayer::new(store).policies(policies).optional());
    let client = Client::new(spawn(app).await);
    assert_eq!(client.get("/", &[]).await.text(), "anonymous");
    assert_eq!(
        client
            .get("/", &[("authorization", "Bearer good-key")])
            .await
            .text(),
        "session"
    );
    let response = client.get("/", &[("authorization", "Bearer nope")]).await;
    assert_error(&response, 403, "Access to this API has been disallowed");
}
