//! No raw key ever appears in a log line, on any path (captured tracing output at TRACE level).

use axum::Router;
use axum::routing::get;
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
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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
