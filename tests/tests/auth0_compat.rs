//! Auth0 compatibility of the sessions API: requests shaped as Auth0's Management API docs and
//! Node SDK send them, responses validated against JSON Schemas transcribed from Auth0's
//! published session type (`tests/fixtures/auth0/`, sources in `tests/fixtures/README.md`), never
//! against keycard's own output.

use http::{Method, StatusCode};
use keycard::prelude::MemoryStore;
use keycard_examples::admin;
use keycard_tests::http::{Client, spawn};
use serde_json::{Value, json};

const SESSION_SCHEMA: &str = include_str!("../fixtures/auth0/session.schema.json");
const PAGE_SCHEMA: &str = include_str!("../fixtures/auth0/user-sessions.schema.json");
const SESSION_URI: &str = "https://keycard.invalid/tests/fixtures/auth0/session.schema.json";

const TYK_SECRET: &str = "tyk-secret-for-auth0-compat";
const TOKEN: &str = "admin-token-for-auth0-compat";

fn schema(text: &str) -> Value {
    serde_json::from_str(text).expect("a fixture schema is JSON")
}

/// Validates `instance` against `schema_text` (which may refer to the session schema).
fn errors(schema_text: &str, instance: &Value) -> Vec<String> {
    let registry = jsonschema::Registry::new()
        .extend([(SESSION_URI, schema(SESSION_SCHEMA))])
        .and_then(jsonschema::RegistryBuilder::prepare)
        .expect("the session schema registers");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .with_registry(&registry)
        .offline()
        .build(&schema(schema_text))
        .expect("the fixture schema compiles");
    validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// A session as Auth0's type has it, and only members that type names: the schema accepts
/// extra members (as the SDK's types do), so keycard inventing one is caught here.
fn assert_auth0_session(session: &Value) {
    let found = errors(SESSION_SCHEMA, session);
    assert!(found.is_empty(), "{found:#?}\n{session:#}");
    let schema = schema(SESSION_SCHEMA);
    let named = |pointer: &str| -> Vec<String> {
        schema
            .pointer(pointer)
            .and_then(Value::as_object)
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let (top, device) = (
        named("/properties"),
        named("/$defs/SessionDeviceMetadata/properties"),
    );
    for member in session.as_object().unwrap().keys() {
        assert!(
            top.contains(member),
            "{member} is not a member of Auth0's session"
        );
    }
    for member in session["device"].as_object().unwrap().keys() {
        assert!(device.contains(member), "device.{member} is not Auth0's");
    }
}

struct Api {
    app: Client,
    admin: Client,
}

impl Api {
    /// `GET` as Auth0's docs show it: `authorization: Bearer`, `accept: application/json`.
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let bearer = format!("Bearer {TOKEN}");
        let response = self
            .admin
            .get(
                path,
                &[("authorization", &bearer), ("accept", "application/json")],
            )
            .await;
        (response.status, response.json())
    }

    /// A Tyk key for `alias` with `meta_data`; returns the raw key and its hash.
    async fn create_key(&self, alias: &str, meta_data: Value) -> (String, String) {
        let body = json!({"alias": alias, "meta_data": meta_data}).to_string();
        let created = self
            .admin
            .send(
                Method::POST,
                "/tyk/keys",
                &[("x-tyk-authorization", TYK_SECRET)],
                Some(body.into()),
            )
            .await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text());
        let created = created.json();
        (
            created["key"].as_str().unwrap().to_owned(),
            created["key_hash"].as_str().unwrap().to_owned(),
        )
    }
}

async fn start() -> Api {
    let demo = admin::build(MemoryStore::new(), TYK_SECRET, TOKEN).unwrap();
    Api {
        app: Client::new(spawn(demo.app).await),
        admin: Client::new(spawn(demo.admin).await),
    }
}

#[tokio::test]
async fn sessions_in_every_state_have_auth0s_shape() {
    let api = start().await;
    // Used through the layers (device, last_interacted_at), with Tyk-written non-strings.
    let (key, used) = api
        .create_key("alice", json!({"user_id": "u-1", "n": 2, "tags": ["a"]}))
        .await;
    let bearer = format!("Bearer {key}");
    let response = api
        .app
        .get(
            "/echo",
            &[
                ("authorization", &bearer),
                ("user-agent", "Mozilla/5.0 (compat test)"),
            ],
        )
        .await;
    assert_eq!(response.status, StatusCode::OK);
    // Never used, no metadata, and without an alias.
    let (_, unused) = api.create_key("alice", json!({})).await;
    let (_, aliasless) = api.create_key("", json!({"a": "b"})).await;

    for id in [&used, &unused, &aliasless] {
        let (status, session) = api.get(&format!("/api/v2/sessions/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{session}");
        assert_auth0_session(&session);
    }
    let (_, session) = api.get(&format!("/api/v2/sessions/{used}")).await;
    assert_eq!(
        session["device"]["initial_user_agent"],
        "Mozilla/5.0 (compat test)"
    );
    assert_eq!(session["session_metadata"]["n"], "2");
    let (_, session) = api.get(&format!("/api/v2/sessions/{aliasless}")).await;
    assert_eq!(session["user_id"], "", "a key without an alias");
}

/// `PATCH /api/v2/sessions/{id}` as the SDK sends `sessions.update(id, {session_metadata})`:
/// `content-type: application/json`, the body `{"session_metadata": {...}}`.
#[tokio::test]
async fn the_updated_session_has_auth0s_shape() {
    let api = start().await;
    let (_, id) = api.create_key("alice", json!({"plan": "gold"})).await;
    let bearer = format!("Bearer {TOKEN}");
    let body = json!({"session_metadata": {"plan": "platinum", "seats": "5"}}).to_string();
    let response = api
        .admin
        .send(
            Method::PATCH,
            &format!("/api/v2/sessions/{id}"),
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
                ("accept", "application/json"),
            ],
            Some(body.into()),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let session = response.json();
    assert_auth0_session(&session);
    assert_eq!(
        session["session_metadata"],
        json!({"plan": "platinum", "seats": "5"})
    );
}

/// `GET /api/v2/users/{user_id}/sessions?take=` then `?from=<next>`, as the SDK's pager asks.
#[tokio::test]
async fn a_users_session_pages_have_auth0s_shape() {
    let api = start().await;
    for _ in 0..3 {
        api.create_key("bob", json!({"k": "v"})).await;
    }
    let mut seen = 0;
    let mut path = "/api/v2/users/bob/sessions?take=2".to_owned();
    loop {
        let (status, page) = api.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let found = errors(PAGE_SCHEMA, &page);
        assert!(found.is_empty(), "{found:#?}\n{page:#}");
        for session in page["sessions"].as_array().unwrap() {
            assert_auth0_session(session);
            assert_eq!(session["user_id"], "bob");
            seen += 1;
        }
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v2/users/bob/sessions?take=2&from={next}"),
            None => break,
        }
    }
    assert_eq!(seen, 3);
}

/// The schemas can fail: what Auth0's type refuses, they refuse.
#[test]
fn the_schemas_refuse_what_auth0s_type_refuses() {
    let good = json!({
        "id": "x", "user_id": "u", "created_at": "2024-03-01T10:00:00.000Z",
        "expires_at": null, "device": {"initial_ip": null}, "clients": [],
        "authentication": {"methods": []}, "session_metadata": {"a": "b"}
    });
    assert!(errors(SESSION_SCHEMA, &good).is_empty());
    for (member, bad) in [
        ("session_metadata", json!({"n": 2})),
        ("session_metadata", json!({"long": "x".repeat(256)})),
        ("created_at", json!("yesterday")),
        ("created_at", json!(1_709_287_200)),
        ("device", json!({"initial_asn": null})),
        ("device", json!({"last_user_agent": 5})),
        ("clients", json!({})),
        ("cookie", json!({"mode": "forever"})),
        ("user_id", json!(null)),
    ] {
        let mut session = good.clone();
        session[member] = bad.clone();
        assert!(
            !errors(SESSION_SCHEMA, &session).is_empty(),
            "{member} = {bad} was accepted"
        );
    }
    let page = json!({"sessions": [good.clone()], "next": 5});
    assert!(!errors(PAGE_SCHEMA, &page).is_empty());
}
