//! The tenant_routing example (URL rewrite around the whole router) over real HTTP.

use keycard::prelude::MemoryStore;
use keycard_examples::tenant_routing;
use keycard_tests::http::{Client, spawn_service};
use serde_json::json;

const ACME: (&str, &str) = ("authorization", "Bearer acme-key");
const GLOBEX: (&str, &str) = ("authorization", "Bearer globex-key");

async fn client(store: MemoryStore) -> Client {
    Client::new(spawn_service(tenant_routing::app(store).unwrap()).await)
}

async fn demo_client() -> Client {
    client(tenant_routing::demo_store().unwrap()).await
}

#[tokio::test]
async fn each_tenant_reaches_its_own_shard() {
    let client = demo_client().await;
    let response = client.get("/orders/42", &[ACME]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"shard": "eu-1", "order": "42"}));

    let response = client.get("/orders/42/items", &[GLOBEX]).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"shard": "us-2", "order": "42/items"})
    );
}

#[tokio::test]
async fn a_query_does_not_change_the_shard_or_order() {
    let client = demo_client().await;
    let response = client.get("/orders/7?expand=items", &[ACME]).await;
    assert_eq!(response.json(), json!({"shard": "eu-1", "order": "7"}));
}

#[tokio::test]
async fn without_a_key_the_session_layer_answers_401() {
    let client = demo_client().await;
    let response = client.get("/orders/42", &[]).await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json(),
        json!({"error": "Authorization field missing"})
    );
}

#[tokio::test]
async fn unmatched_paths_are_untouched_and_another_tenants_shard_is_404() {
    let client = demo_client().await;
    // `/shards/...` matches no rule: routed as sent.
    let response = client.get("/shards/eu-1/orders/5", &[ACME]).await;
    assert_eq!(response.json(), json!({"shard": "eu-1", "order": "5"}));
    let response = client.get("/shards/eu-1/orders/5", &[GLOBEX]).await;
    assert_eq!(response.status, 404);
    assert_eq!(response.json(), json!({"error": "Not found"}));
}

#[tokio::test]
async fn traversal_metadata_stays_under_shards() {
    let store = MemoryStore::new();
    tenant_routing::add_tenant(&store, "evil-key", "evil", "../admin").unwrap();
    let client = client(store).await;
    let response = client
        .get("/orders/7", &[("authorization", "Bearer evil-key")])
        .await;
    // Rewritten to `/shards/..%2Fadmin/orders/7`: still the shard route, its `{shard}` segment
    // decoded to the tenant's own (odd) shard name.
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"shard": "../admin", "order": "7"}));
}

#[tokio::test]
async fn dot_dot_metadata_is_500_invalid_rewrite_target() {
    let store = MemoryStore::new();
    tenant_routing::add_tenant(&store, "dots-key", "dots", "..").unwrap();
    let client = client(store).await;
    let response = client
        .get("/orders/7", &[("authorization", "Bearer dots-key")])
        .await;
    assert_eq!(response.status, 500);
    assert_eq!(response.json(), json!({"error": "Invalid rewrite target"}));
}

#[tokio::test]
async fn client_text_naming_a_variable_stays_literal() {
    let client = demo_client().await;
    let response = client.get("/orders/$tyk_meta.tenant", &[ACME]).await;
    assert_eq!(
        response.json(),
        json!({"shard": "eu-1", "order": "$tyk_meta.tenant"})
    );
}
