//! Header injection vectors (`docs/headers.md`, `docs/variables.md`) over real HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use keycard::headers::InjectHeadersLayer;
use keycard::prelude::{MemoryStore, SessionLoadLayer};
use keycard_examples::quickstart::echo_router;
use keycard_tests::http::{Client, spawn};
use serde_json::{Value, json};
use tower::ServiceBuilder;

const AUTH: (&str, &str) = ("authorization", "Bearer header-key");

async fn client(meta: Value, inject: InjectHeadersLayer, routes: Router) -> Client {
    let store = MemoryStore::new();
    store.insert_key("header-key", meta).unwrap();
    let app = routes.layer(
        ServiceBuilder::new()
            .layer(SessionLoadLayer::new(store))
            .layer(inject),
    );
    Client::new(spawn(app).await)
}

#[tokio::test]
async fn upstream_sees_metadata_headers_and_no_authorization() {
    let inject = InjectHeadersLayer::request()
        .set("X-User-Id", "$tyk_meta.user_id")
        .set("X-Tenant", "$tyk_meta.tenant")
        .remove("Authorization")
        .build()
        .unwrap();
    let client = client(
        json!({"user_id": "u-1", "tenant": "acme"}),
        inject,
        echo_router(),
    )
    .await;
    let seen = client
        .get("/", &[AUTH, ("x-user-id", "admin")])
        .await
        .json();
    assert_eq!(seen["x-user-id"], "u-1");
    assert_eq!(seen["x-tenant"], "acme");
    assert!(seen.get("authorization").is_none());
}

#[tokio::test]
async fn value_rendering_vectors() {
    let inject = InjectHeadersLayer::request()
        .set("x-uid", "$tyk_meta.uid")
        .set("x-typed", "n=$tyk_meta.n f=$tyk_meta.f b=$tyk_meta.b")
        .set("x-longest", "/$tyk_meta.a/$tyk_meta.ab")
        .set("x-missing", "[$tyk_meta.missing]")
        .set("x-dot", "$tyk_meta.tier.")
        .set("x-nested", "$tyk_meta.o.k")
        .set("x-object", "$tyk_meta.o")
        .set("x-list", "$tyk_meta.l")
        .set("x-echo", "hi $tyk_context.headers_X_Name")
        .build()
        .unwrap();
    let meta = json!({
        "uid": "u-17", "n": 42, "f": 12.5, "b": true, "a": "X", "ab": "Y",
        "tier": "gold", "o": {"k": "v"}, "l": ["a", "b", 3]
    });
    let client = client(meta, inject, echo_router()).await;
    let seen = client
        .get("/", &[AUTH, ("x-name", "$tyk_meta.uid")])
        .await
        .json();
    assert_eq!(seen["x-uid"], "u-17");
    assert_eq!(seen["x-typed"], "n=42 f=12.5 b=true");
    assert_eq!(seen["x-longest"], "/X/Y");
    assert_eq!(seen["x-missing"], "[]");
    assert_eq!(seen["x-dot"], "gold.");
    assert_eq!(seen["x-nested"], "v");
    assert_eq!(seen["x-object"], r#"{"k":"v"}"#);
    assert_eq!(seen["x-list"], "a,b,3");
    assert_eq!(seen["x-echo"], "hi $tyk_meta.uid");
}

#[tokio::test]
async fn header_injection_attempt_is_500_and_never_reaches_upstream() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let routes = Router::new().route(
        "/",
        get(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "reached"
        }),
    );
    let inject = InjectHeadersLayer::request()
        .set("X-A", "$tyk_meta.x")
        .build()
        .unwrap();
    let client = client(json!({"x": "a\r\nSet-Cookie: s=1"}), inject, routes).await;
    let response = client.get("/", &[AUTH]).await;
    assert_eq!(response.status, 500);
    assert_eq!(response.json(), json!({"error": "Invalid header value"}));
    assert!(response.headers.get("set-cookie").is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn response_header_rule_reaches_the_client() {
    let inject = InjectHeadersLayer::response()
        .set("x-plan", "$tyk_meta.plan")
        .set_or_omit("x-absent", "$tyk_meta.none")
        .build()
        .unwrap();
    let routes = Router::new().route("/", get(|| async { "ok" }));
    let client = client(json!({"plan": "gold"}), inject, routes).await;
    let response = client.get("/", &[AUTH]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["x-plan"], "gold");
    assert!(response.headers.get("x-absent").is_none());
    assert_eq!(response.text(), "ok");
}

/// An omitted identity header is removed, not left as the client sent it: with an optional
/// session and no key, and with a session that has no `user_id`.
#[tokio::test]
async fn set_or_omit_removes_the_clients_copy() {
    let inject = || {
        InjectHeadersLayer::request()
            .set_or_omit("x-user-id", "$tyk_meta.user_id")
            .build()
            .unwrap()
    };
    let store = MemoryStore::new();
    store
        .insert_key("header-key", json!({"plan": "gold"}))
        .unwrap();
    let app = echo_router().layer(
        ServiceBuilder::new()
            .layer(SessionLoadLayer::new(store).optional())
            .layer(inject()),
    );
    let client = Client::new(spawn(app).await);
    for headers in [
        &[("x-user-id", "admin")][..],
        &[AUTH, ("x-user-id", "admin")],
    ] {
        let response = client.get("/", headers).await;
        assert_eq!(response.status, 200);
        let seen = response.json();
        assert!(seen.get("x-user-id").is_none(), "{seen}");
    }
}

/// `X_User_Id` is `HTTP_X_USER_ID` to a CGI/WSGI backend, the same as `X-User-Id`: every spelling
/// that differs only in `_`/`-` (and case) is removed beside the injected header, on set, omitted
/// and removed names alike; `keep_lookalikes` keeps them.
#[tokio::test]
async fn lookalike_client_headers_never_reach_the_backend() {
    let rules = || {
        InjectHeadersLayer::request()
            .set("x-user-id", "$tyk_meta.user_id")
            .set_or_omit("x-tenant-id", "$tyk_meta.tenant_id")
            .remove("x-internal")
    };
    let spoofed = [
        AUTH,
        ("x-user-id", "admin"),
        ("X_User_Id", "admin"),
        ("x_user-id", "admin"),
        ("X-TENANT_ID", "globex"),
        ("x_internal", "yes"),
        ("x-unrelated_name", "kept"),
    ];
    let stripping = client(
        json!({"user_id": "u-1"}),
        rules().build().unwrap(),
        echo_router(),
    )
    .await;
    let seen = stripping.get("/", &spoofed).await.json();
    assert_eq!(seen["x-user-id"], "u-1");
    for name in [
        "x_user_id",
        "x_user-id",
        "x-tenant_id",
        "x-tenant-id",
        "x_internal",
    ] {
        assert!(
            seen.get(name).is_none(),
            "{name} reached the backend: {seen}"
        );
    }
    assert_eq!(seen["x-unrelated_name"], "kept");

    let keeping = client(
        json!({"user_id": "u-1"}),
        rules().keep_lookalikes().build().unwrap(),
        echo_router(),
    )
    .await;
    let seen = keeping.get("/", &spoofed).await.json();
    assert_eq!(seen["x-user-id"], "u-1");
    assert_eq!(seen["x_user_id"], "admin");
}

/// Scopes match the normalised path (RFC 3986 §6.2.2): `/%6Frders/7` is in `/orders/*`, and the
/// service is handed `/orders/7`.
#[tokio::test]
async fn percent_encoded_path_is_in_the_scope() {
    use keycard::prelude::{HeaderRules, Keycard, Scope};
    let store = MemoryStore::new();
    store
        .insert_key("header-key", json!({"tenant": "acme"}))
        .unwrap();
    let inject = InjectHeadersLayer::request()
        .scoped(
            Scope::path("/orders/*"),
            HeaderRules::new().set("x-tenant", "$tyk_meta.tenant"),
        )
        .build()
        .unwrap();
    let routes = Router::new().fallback(|uri: http::Uri, headers: http::HeaderMap| async move {
        axum::Json(json!({
            "uri": uri.to_string(),
            "tenant": headers.get("x-tenant").map(|v| v.to_str().unwrap().to_owned()),
        }))
    });
    let client = Client::new(spawn(Keycard::new(store).request_headers(inject).wrap(routes)).await);
    for path in ["/%6Frders/7", "/%6frders/7", "/orders/%37"] {
        let seen = client.get(path, &[AUTH]).await.json();
        assert_eq!(
            seen,
            json!({"uri": "/orders/7", "tenant": "acme"}),
            "{path}"
        );
    }
    let seen = client.get("/other/7", &[AUTH]).await.json();
    assert_eq!(seen, json!({"uri": "/other/7", "tenant": null}));
}
