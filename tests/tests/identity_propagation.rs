//! The identity_propagation example (layers in front of a reverse proxy) against a local upstream.

use keycard_examples::{identity_propagation, quickstart};
use keycard_tests::http::{Client, raw_request, spawn};
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

/// A gateway over the demo store in front of the echo upstream; returns its address.
async fn gateway() -> std::net::SocketAddr {
    let upstream = spawn(identity_propagation::echo_upstream()).await;
    let store = quickstart::demo_store("proxy-key").unwrap();
    let app =
        identity_propagation::app(store, format!("http://{upstream}").parse().unwrap()).unwrap();
    spawn(app).await
}

/// Connection-scoped fields never reach the upstream (RFC 9110 §7.6.1): the fixed ones and those
/// the client's `Connection` header names.
#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let addr = gateway().await;
    let response = raw_request(
        addr,
        b"GET /orders HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer proxy-key\r\n\
          connection: close, x-hop-secret\r\nx-hop-secret: for-the-gateway\r\n\
          keep-alive: timeout=5\r\nte: trailers\r\nupgrade: h2c\r\n\
          proxy-connection: keep-alive\r\ntrailer: x-t\r\nx-kept: yes\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    for name in [
        "x-hop-secret",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "trailer",
    ] {
        assert!(seen.get(name).is_none(), "{name} was forwarded: {seen}");
    }
    assert_eq!(seen["x-kept"], "yes");
    assert_eq!(seen["x-user-id"], "u-demo");
}

/// `CONNECT` (a tunnel) and `TRACE` (which would echo the injected identity back) are answered
/// by the gateway with 405, an `Allow` header and a JSON error, and never reach the upstream.
#[tokio::test]
async fn connect_and_trace_are_refused_not_forwarded() {
    let addr = gateway().await;
    for request in [
        &b"TRACE /orders HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer proxy-key\r\nconnection: close\r\n\r\n"[..],
        b"CONNECT 127.0.0.1:6379 HTTP/1.1\r\nhost: 127.0.0.1:6379\r\nauthorization: Bearer proxy-key\r\nconnection: close\r\n\r\n",
    ] {
        let response = raw_request(addr, request).await;
        let lower = response.to_ascii_lowercase();
        assert!(response.starts_with("HTTP/1.1 405"), "{response}");
        assert!(
            lower.contains("\r\nallow: get, head, post, put, patch, delete, options\r\n"),
            "{response}"
        );
        assert!(response.ends_with(r#"{"error":"Method not allowed"}"#), "{response}");
    }
}

/// A client that names the identity headers in `Connection` (making them hop-by-hop) cannot get
/// them dropped on the way to the backend: the header stage takes its own names out of
/// `Connection` after injecting them.
#[tokio::test]
async fn connection_cannot_strip_the_injected_identity() {
    let addr = gateway().await;
    let response = raw_request(
        addr,
        b"GET /orders HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer proxy-key\r\n\
          connection: close, x-user-id, X-Tenant-Id\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(seen["x-user-id"], "u-demo", "{seen}");
    assert_eq!(seen["x-tenant-id"], "acme", "{seen}");
}
