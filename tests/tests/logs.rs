//! What the logs say, captured per test (each test sets its own subscriber, so this binary holds
//! only such tests: a callsite first hit with no subscriber would stay silent): no raw key ever
//! appears in a log line, on any path; a refused header value names the header and the key id.

use axum::Router;
use axum::routing::get;
use keycard::headers::{HeaderRule, InjectHeadersLayer, InvalidValue};
use keycard::persist::PersistLayer;
use keycard::prelude::{MemoryStore, SessionLoadLayer, SessionStore};
use keycard::session::Session;
use keycard::session::{SessionRecord, unix_now};
use keycard_tests::http::{Client, spawn};
use keycard_tests::logs::Captured;
use keycard_tests::stores::{ReadOnlyStore, UnavailableStore};
use serde_json::json;
use tower::ServiceBuilder;

const KEYS: [&str; 4] = [
    "raw-secret-live-key",
    "raw-secret-expired-key",
    "raw-secret-unknown-key",
    "raw-secret-policy-key",
];

// One thread: the subscriber set for this test sees the server tasks too.
#[tokio::test(flavor = "current_thread")]
async fn raw_keys_never_reach_the_logs() {
    let (captured, _guard) = Captured::start(tracing::Level::TRACE);

    let store = MemoryStore::new();
    let sessions = [
        (KEYS[0], SessionRecord::default()),
        (
            KEYS[1],
            SessionRecord::default().with_expires(unix_now() - 10),
        ),
        (KEYS[3], SessionRecord::default().with_policies(["missing"])),
    ];
    for (key, session) in sessions {
        store.create(session.with_key(key)).await.unwrap();
    }
    let routes = || {
        Router::new().route(
            "/",
            get(|session: Session| async move {
                session.set("seen", json!(true)).unwrap();
            }),
        )
    };
    let app = |store: MemoryStore| {
        let read_only = ReadOnlyStore(store.clone());
        routes().layer(
            ServiceBuilder::new()
                .layer(SessionLoadLayer::new(store))
                .layer(PersistLayer::new(read_only)),
        )
    };
    let client = Client::new(spawn(app(store)).await);
    let down = Client::new(spawn(routes().layer(SessionLoadLayer::new(UnavailableStore))).await);

    for key in KEYS {
        let auth = format!("Bearer {key}");
        client.get("/", &[("authorization", &auth)]).await;
        down.get("/", &[("authorization", &auth)]).await;
    }

    let logs = captured.text();
    for expected in [
        "unknown key",
        "expired key",
        "does not exist",
        "session store failed",
        "saving session metadata failed",
    ] {
        assert!(
            logs.contains(expected),
            "no {expected:?} line was logged:\n{logs}"
        );
    }
    for key in KEYS {
        assert!(!logs.contains(key), "raw key {key} in logs:\n{logs}");
    }
}

/// The quickstart's echo router behind a session load and `inject`, over a store holding
/// `header-key` with `meta`.
async fn echo_client(meta: serde_json::Value, inject: InjectHeadersLayer) -> Client {
    let store = MemoryStore::new();
    store.insert_key("header-key", meta).unwrap();
    let app = keycard_examples::quickstart::echo_router().layer(
        ServiceBuilder::new()
            .layer(SessionLoadLayer::new(store))
            .layer(inject),
    );
    Client::new(spawn(app).await)
}

/// A value that cannot be a header: rejected with 500 and a warning that names the header and
/// the key id (never the raw key); or, with `InvalidValue::Omit`, the header is left out (the
/// client's copy too) and the request goes on.
#[tokio::test(flavor = "current_thread")]
async fn invalid_values_are_logged_with_header_and_key_id_or_omitted() {
    let (captured, _guard) = Captured::start(tracing::Level::WARN);

    let meta = json!({"user_id": "u-1", "display": "Eve\r\nX-Admin: yes"});
    let reject = InjectHeadersLayer::request()
        .set("x-user-id", "$tyk_meta.user_id")
        .set("x-display-name", "$tyk_meta.display")
        .build()
        .unwrap();
    let client_reject = echo_client(meta.clone(), reject).await;
    let response = client_reject
        .get("/", &[("authorization", "Bearer header-key")])
        .await;
    assert_eq!(response.status, 500);
    assert_eq!(response.json(), json!({"error": "Invalid header value"}));
    let key_id = keycard::key::KeyId::of(&keycard::key::ApiKey::new("header-key")).to_string();
    let logs = captured.text();
    let line = logs
        .lines()
        .find(|line| line.contains("x-display-name"))
        .unwrap_or_else(|| panic!("no warning names the header: {logs}"));
    assert!(line.contains(&key_id), "{line}");
    assert!(
        !logs.contains("header-key"),
        "the raw key was logged: {logs}"
    );

    let omit = InjectHeadersLayer::request()
        .set("x-user-id", "$tyk_meta.user_id")
        .rule(HeaderRule::set("x-display-name", "$tyk_meta.display").on_invalid(InvalidValue::Omit))
        .build()
        .unwrap();
    let client_omit = echo_client(meta, omit).await;
    let response = client_omit
        .get(
            "/",
            &[
                ("authorization", "Bearer header-key"),
                ("x-display-name", "client"),
            ],
        )
        .await;
    assert_eq!(response.status, 200);
    let seen = response.json();
    assert_eq!(seen["x-user-id"], "u-1");
    assert!(seen.get("x-display-name").is_none(), "{seen}");
    assert!(seen.get("x-admin").is_none(), "{seen}");
}
