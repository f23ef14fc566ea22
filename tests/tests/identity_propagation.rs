//! The identity_propagation example (layers in front of a reverse proxy) against a local upstream.

use keycard_examples::{identity_propagation, quickstart};
use keycard_tests::http::{Client, spawn};
use serde_json::json;

#[tokio::test]
async fn upstream_receives_trusted_identity_headers_and_no_key() {
    let upstream = spawn(identity_propagation::echo_upstream()).await;
    let store = quickstart::demo_store("proxy-key").unwrap();
    let gateway =
        identity_propagation::app(store, format!("http://{upstream}").parse().unwrap()).unwrap();
    let client = Client::new(spawn(gateway).await);

    let response = client
        .get(
            "/orders/7?expand=items",
            &[
                ("authorization", "Bearer proxy-key"),
                ("x-user-id", "admin"),
                ("x-extra", "kept"),
            ],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.json();
    assert_eq!(seen["x-user-id"], "u-demo");
    assert_eq!(seen["x-tenant-id"], "acme");
    assert_eq!(seen["x-extra"], "kept");
    assert!(seen.get("authorization").is_none(), "{seen}");
    assert_eq!(seen["host"], upstream.to_string());

    let response = client
        .get("/orders/7", &[("authorization", "Bearer wrong")])
        .await;
    assert_eq!(response.status, 403);
}

#[tokio::test]
async fn unreachable_upstream_is_502_with_json() {
    // Bind then drop a listener: the port is free and nothing answers on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let store = quickstart::demo_store("proxy-key").unwrap();
    let gateway =
        identity_propagation::app(store, format!("http://{port}").parse().unwrap()).unwrap();
    let client = Client::new(spawn(gateway).await);
    let response = client
        .get("/", &[("authorization", "Bearer proxy-key")])
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.json(), json!({"error": "Upstream unavailable"}));
}
