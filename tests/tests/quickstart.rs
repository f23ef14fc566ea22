//! The quickstart stack, built from the examples' library, over real HTTP.

use axum::extract::Path;
use axum::routing::post;
use keycard::prelude::{ApiKey, KeyId, MemoryStore, SessionStore};
use keycard::session::Session;
use keycard_examples::quickstart;
use keycard_tests::http::{Client, spawn};
use keycard_tests::stores::CountingStore;
use serde_json::json;

const KEY: &str = "k-test-123";
const AUTH: (&str, &str) = ("authorization", "Bearer k-test-123");

async fn quickstart_client() -> (Client, CountingStore<MemoryStore>) {
    let store = CountingStore::new(quickstart::demo_store(KEY).unwrap());
    let addr = spawn(quickstart::app(store.clone()).unwrap()).await;
    (Client::new(addr), store)
}

#[tokio::test]
async fn whoami_without_a_key_is_401() {
    let (client, _) = quickstart_client().await;
    let response = client.get("/whoami", &[]).await;
    assert_eq!(response.status, 401);
    assert_eq!(response.headers["content-type"], "application/json");
    assert_eq!(response.headers["www-authenticate"], "Bearer");
    assert_eq!(
        response.json(),
        json!({"error": "Authorization field missing"})
    );
}

#[tokio::test]
async fn whoami_with_an_unknown_key_is_403() {
    let (client, _) = quickstart_client().await;
    let response = client
        .get("/whoami", &[("authorization", "Bearer nope")])
        .await;
    assert_eq!(response.status, 403);
    assert_eq!(
        response.json(),
        json!({"error": "Access to this API has been disallowed"})
    );
}

#[tokio::test]
async fn whoami_returns_the_demo_metadata() {
    let (client, _) = quickstart_client().await;
    let response = client.get("/whoami", &[AUTH]).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"user_id": "u-demo", "tenant_id": "acme", "plan": "gold"})
    );
}

#[tokio::test]
async fn echo_shows_injected_identity_and_no_authorization() {
    let (client, _) = quickstart_client().await;
    let seen = client
        .get("/echo", &[AUTH, ("x-user-id", "admin")])
        .await
        .json();
    assert_eq!(seen["x-user-id"], "u-demo");
    assert_eq!(seen["x-tenant-id"], "acme");
    assert!(seen.get("authorization").is_none(), "{seen}");
}

#[tokio::test]
async fn visits_persist_across_requests() {
    let (client, _) = quickstart_client().await;
    assert_eq!(
        client.post("/visits", &[AUTH]).await.json(),
        json!({"visits": 1})
    );
    assert_eq!(
        client.post("/visits", &[AUTH]).await.json(),
        json!({"visits": 2})
    );
    let meta = client.get("/whoami", &[AUTH]).await.json();
    assert_eq!(meta["visits"], 2);
}

#[tokio::test]
async fn a_request_that_changes_nothing_writes_nothing_and_a_change_writes_once() {
    let (client, store) = quickstart_client().await;
    let writes_at_start = store.writes(); // the demo session was created before wrapping
    for path in ["/whoami", "/echo", "/whoami"] {
        assert_eq!(client.get(path, &[AUTH]).await.status, 200);
    }
    assert_eq!(client.get("/whoami", &[]).await.status, 401);
    assert_eq!(store.writes(), writes_at_start);
    assert_eq!(store.loads(), 3);

    assert_eq!(client.post("/visits", &[AUTH]).await.status, 200);
    assert_eq!(store.writes(), writes_at_start + 1);
}

#[tokio::test]
async fn a_thousand_concurrent_requests_setting_distinct_keys_all_survive() {
    let store = quickstart::demo_store(KEY).unwrap();
    let routes = axum::Router::new().route(
        "/set/{key}",
        post(|session: Session, Path(key): Path<String>| async move {
            session.set(key, json!("v")).unwrap();
        }),
    );
    let addr = spawn(quickstart::wrap(routes, store.clone()).unwrap()).await;
    let client = Client::new(addr);

    let requests = (0..1000).map(|i| {
        let client = client.clone();
        tokio::spawn(async move { client.post(&format!("/set/k{i}"), &[AUTH]).await.status })
    });
    let deadline = std::time::Duration::from_secs(60);
    let statuses = tokio::time::timeout(deadline, futures_join_all(requests))
        .await
        .expect("1000 requests finish within 60 s");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let stored = store
        .load(&KeyId::of(&ApiKey::new(KEY)))
        .await
        .unwrap()
        .unwrap();
    let written = (0..1000)
        .filter(|i| stored.meta_data.contains_key(&format!("k{i}")))
        .count();
    assert_eq!(written, 1000);
    assert_eq!(stored.meta_data["user_id"], "u-demo");
}

async fn futures_join_all<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("request task panicked"));
    }
    out
}
