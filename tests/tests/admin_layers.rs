//! The admin example end to end: a change made through the management API is seen by the very
//! next request of that session through keycard's layers.

use keycard::prelude::MemoryStore;
use keycard_examples::admin;
use keycard_tests::http::{Client, spawn};
use serde_json::json;

const TYK: (&str, &str) = ("x-tyk-authorization", "test-tyk-secret-long");
const ADMIN: (&str, &str) = ("authorization", "Bearer test-admin-token");

#[tokio::test]
async fn create_call_patch_delete_through_the_admin_api_and_the_layers() {
    let demo = admin::build(MemoryStore::new(), TYK.1, "test-admin-token").unwrap();
    let app = Client::new(spawn(demo.app).await);
    let admin = Client::new(spawn(demo.admin).await);

    let body = json!({"alias": "alice", "meta_data": {"user_id": "u-alice", "tenant_id": "acme"}});
    let created = admin
        .send(
            http::Method::POST,
            "/tyk/keys",
            &[TYK],
            Some(body.to_string().into()),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let created = created.json();
    let key = created["key"].as_str().unwrap().to_owned();
    let hash = created["key_hash"].as_str().unwrap().to_owned();
    let auth = format!("Bearer {key}");
    let auth = [("authorization", auth.as_str())];

    let seen = app.get("/echo", &auth).await.json();
    assert_eq!(
        (&seen["x-user-id"], &seen["x-tenant-id"]),
        (&json!("u-alice"), &json!("acme"))
    );

    let patch = json!({"session_metadata": {"user_id": "u-bob", "tenant_id": "globex"}});
    let patched = admin
        .send(
            http::Method::PATCH,
            &format!("/api/v2/sessions/{hash}"),
            &[ADMIN, ("content-type", "application/json")],
            Some(patch.to_string().into()),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());

    let seen = app.get("/echo", &auth).await.json();
    assert_eq!(
        (&seen["x-user-id"], &seen["x-tenant-id"]),
        (&json!("u-bob"), &json!("globex"))
    );

    // A handler's change is visible to the admin API too.
    assert_eq!(
        app.post("/visits", &auth).await.json(),
        json!({"visits": 1})
    );
    let session = admin
        .get(&format!("/api/v2/sessions/{hash}"), &[ADMIN])
        .await
        .json();
    // Auth0's session_metadata holds strings only ("an object with string values (max 255
    // chars)", the Node SDK's `SessionMetadata`): the counter is shown JSON-encoded, so GET ->
    // PATCH round-trips (docs/admin.md).
    assert_eq!(session["session_metadata"]["visits"], "1");

    let deleted = admin
        .send(
            http::Method::DELETE,
            &format!("/api/v2/sessions/{hash}"),
            &[ADMIN],
            None,
        )
        .await;
    assert_eq!(deleted.status, 202);
    let refused = app.get("/echo", &auth).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.json(),
        json!({"error": "Access to this API has been disallowed"})
    );
}

/// The admin example's management API and app share one policy set: a policy created through
/// `/tyk/policies` applies to the app's next request (its metadata shows, the key is not locked
/// out), and deactivating it gives the inactive-key answer, not a missing-policy one.
#[tokio::test]
async fn a_policy_created_through_the_admin_api_applies_to_the_app() {
    let demo = admin::build(MemoryStore::new(), TYK.1, "test-admin-token").unwrap();
    let app = Client::new(spawn(demo.app).await);
    let admin = Client::new(spawn(demo.admin).await);
    let send = |method: http::Method, path: &'static str, body: serde_json::Value| {
        let admin = &admin;
        async move {
            admin
                .send(method, path, &[TYK], Some(body.to_string().into()))
                .await
        }
    };

    let policy = json!({"id": "gold", "meta_data": {"plan": "gold"}});
    let created = send(http::Method::POST, "/tyk/policies", policy).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let key =
        json!({"alias": "alice", "apply_policies": ["gold"], "meta_data": {"user_id": "u-alice"}});
    let created = send(http::Method::POST, "/tyk/keys", key).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let auth = format!("Bearer {}", created.json()["key"].as_str().unwrap());
    let auth = [("authorization", auth.as_str())];

    let whoami = app.get("/whoami", &auth).await;
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    assert_eq!(whoami.json(), json!({"user_id": "u-alice", "plan": "gold"}));

    let inactive = json!({"meta_data": {"plan": "gold"}, "is_inactive": true});
    let updated = send(http::Method::PUT, "/tyk/policies/gold", inactive).await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    let refused = app.get("/whoami", &auth).await;
    assert_eq!(refused.status, 403);
    assert_eq!(
        refused.json(),
        json!({"error": "Key is inactive, please renew"})
    );
}

/// With a keyed hasher on the `Keycard`, the admin API it builds names sessions by the same
/// HMAC: a custom key created through `/tyk/keys/{key}` authenticates at the app, and its public
/// id (the Auth0 session `id`, the Tyk `key_hash`) is not the key's plain SHA-256, so it cannot
/// be used to test guesses offline. Every admin answer is `Cache-Control: no-store`.
#[tokio::test]
async fn a_keyed_hasher_is_shared_by_the_stack_and_its_admin_api() {
    use keycard::key::{ApiKey, KeyHasher, KeyId};
    use keycard::prelude::Keycard;

    let hasher = KeyHasher::hmac_sha256("a-server-secret-of-32-bytes-or-more").unwrap();
    let keycard = Keycard::new(MemoryStore::new()).key_hasher(hasher.clone());
    let admin = keycard
        .admin_api()
        .tyk_secret(TYK.1)
        .admin_token(keycard::admin::AdminToken::new(
            "ops",
            ADMIN.1.trim_start_matches("Bearer "),
            ["read:sessions"],
        ))
        .build()
        .unwrap()
        .into_router();
    let app = Client::new(spawn(keycard.wrap(keycard_examples::quickstart::routes())).await);
    let admin = Client::new(spawn(admin).await);

    let custom = "a-custom-key-a-user-chose";
    let created = admin
        .send(
            http::Method::POST,
            &format!("/tyk/keys/{custom}"),
            &[TYK],
            Some(json!({"meta_data": {"user_id": "u-1"}}).to_string().into()),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(created.headers["cache-control"], "no-store");
    let hash = created.json()["key_hash"].as_str().unwrap().to_owned();
    let key = ApiKey::new(custom);
    assert_eq!(hash, hasher.key_id(&key).as_str());
    assert_ne!(hash, KeyId::of(&key).as_str());

    let auth = format!("Bearer {custom}");
    let whoami = app
        .get("/whoami", &[("authorization", auth.as_str())])
        .await;
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    assert_eq!(whoami.json()["user_id"], "u-1");

    let session = admin
        .get(&format!("/api/v2/sessions/{hash}"), &[ADMIN])
        .await;
    assert_eq!(session.status, 200);
    assert_eq!(session.headers["cache-control"], "no-store");
    assert_eq!(session.json()["id"], hash);
    let generated = admin
        .send(http::Method::POST, "/tyk/keys", &[TYK], Some("{}".into()))
        .await;
    assert_eq!(generated.headers["cache-control"], "no-store");

    // A session seeded in code with the same hasher authenticates too.
    let seeded = MemoryStore::new();
    seeded
        .insert_key_hashed("a-seeded-key", &hasher, json!({"user_id": "u-2"}))
        .unwrap();
    let app = Keycard::new(seeded).key_hasher(hasher);
    let app = Client::new(spawn(app.wrap(keycard_examples::quickstart::routes())).await);
    let whoami = app
        .get("/whoami", &[("authorization", "Bearer a-seeded-key")])
        .await;
    assert_eq!(whoami.json()["user_id"], "u-2");
}
