//! Tyk's keys and policies API driven as Tyk's own gateway swagger shows it: every request body is
//! the swagger's `requestBody` example of its operation (`tests/fixtures/tyk/swagger-requests.json`,
//! by `operationId`), and every answer is validated against the swagger's response schema for it
//! (`tests/fixtures/tyk/swagger-schemas.json`). A key must come back with every `SessionState`
//! field it was written with, on the memory store and on Redis.

mod admin_support;

use std::sync::LazyLock;

use admin_support::{TYK_SECRET, start};
use http::{Method, StatusCode};
use keycard_admin::AdminApi;
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::policy::MemoryPolicies;
use keycard_core::store::SessionStore;
use keycard_tests::http::{request, spawn};
use keycard_tests::redis_support::{connect, shared_store};
use serde_json::{Value, json};

const SCHEMAS: &str = include_str!("../fixtures/tyk/swagger-schemas.json");
const REQUESTS: &str = include_str!("../fixtures/tyk/swagger-requests.json");

static DEFS: LazyLock<Value> = LazyLock::new(|| {
    let schemas: Value = serde_json::from_str(SCHEMAS).expect("the schema fixture is JSON");
    schemas["$defs"].clone()
});

/// The swagger's request example of `operation`.
fn example(operation: &str) -> Value {
    let requests: Value = serde_json::from_str(REQUESTS).expect("the request fixture is JSON");
    let body = &requests["operations"][operation]["body"];
    assert!(body.is_object(), "no example for {operation}");
    body.clone()
}

/// Fails unless `body` is valid against the swagger schema `name` (formats checked: a
/// `date_created` must be an RFC 3339 date-time).
#[track_caller]
fn assert_schema(name: &str, body: &Value) {
    let schema = json!({"$ref": format!("#/$defs/{name}"), "$defs": *DEFS});
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .offline()
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema {name}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name}:\n{}\n{body:#}",
        errors.join("\n")
    );
}

/// Fails unless every field of `sent` is in `shown` with the same value, but `except`. Numbers
/// compare as numbers (the swagger's YAML writes `2592000.0` where Go writes `2592000`).
#[track_caller]
fn assert_kept(sent: &Value, shown: &Value, except: &[&str]) {
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
            }
            _ => a == b,
        }
    }
    let sent = sent.as_object().expect("an object was sent");
    for (name, value) in sent {
        if except.contains(&name.as_str()) {
            continue;
        }
        assert!(
            shown.get(name).is_some_and(|shown| same(value, shown)),
            "{name}: sent {value}, shown {}",
            shown.get(name).unwrap_or(&Value::Null)
        );
    }
}

async fn call(
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (status, _, answer) = request(
        method,
        &format!("http://{addr}{path}"),
        &[("x-tyk-authorization", TYK_SECRET)],
        body,
    )
    .await;
    (status, answer)
}

/// Creates the swagger's example policy (`addPolicy`), which the key examples apply.
async fn add_example_policy(addr: std::net::SocketAddr) -> Value {
    let policy = example("addPolicy");
    let (status, answer) = call(addr, Method::POST, "/tyk/policies", &policy).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_schema("ApiModifyKeySuccess", &answer);
    assert_eq!(answer["key"], policy["id"]);
    assert_eq!(
        (&answer["status"], &answer["action"]),
        (&json!("ok"), &json!("added"))
    );
    policy
}

/// The fields a write sets itself, as Tyk does: `last_updated` is the time of the write, and with
/// quotas counted `quota_remaining` / `quota_renews` are the live counter's.
const STAMPED: &[&str] = &[
    "last_updated",
    "quota_remaining",
    "quota_renews",
    "date_created",
];

/// `date_created` as sent is kept (keycard keeps an imported key's creation time; Tyk stamps the
/// time of the create), shown in UTC to the second, as Go's RFC 3339.
#[track_caller]
fn assert_created_at(sent: &Value, shown: &Value) {
    let sent = sent["date_created"]
        .as_str()
        .expect("the example has a date_created");
    let unix = keycard_core::civil::parse_rfc3339(sent).expect("the example's time parses");
    assert_eq!(
        shown["date_created"],
        keycard_core::civil::format_rfc3339(unix)
    );
}

#[tokio::test]
async fn created_keys_show_every_session_state_field_they_were_written_with() {
    let admin = start().await;
    add_example_policy(admin.addr).await;
    for (operation, path) in [
        ("addKey", "/tyk/keys".to_owned()),
        ("createKey", "/tyk/keys/create".to_owned()),
        ("createCustomKey", "/tyk/keys/customKey".to_owned()),
    ] {
        let sent = example(operation);
        let before = keycard_core::session::unix_now();
        let (status, answer) = call(admin.addr, Method::POST, &path, &sent).await;
        assert_eq!(status, StatusCode::OK, "{operation}: {answer}");
        assert_schema("ApiModifyKeySuccess", &answer);
        assert_eq!(
            (&answer["status"], &answer["action"]),
            (&json!("ok"), &json!("added"))
        );
        let key = answer["key"].as_str().unwrap().to_owned();
        if operation == "createCustomKey" {
            assert_eq!(key, "customKey");
        }
        let (status, shown) = call(
            admin.addr,
            Method::GET,
            &format!("/tyk/keys/{key}"),
            &Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{operation}: {shown}");
        assert_schema("SessionState", &shown);
        assert_kept(&sent, &shown, STAMPED);
        assert_created_at(&sent, &shown);
        let updated: i64 = shown["last_updated"].as_str().unwrap().parse().unwrap();
        assert!(updated >= before, "{operation}: last_updated {updated}");
        // Nothing counted yet: the whole quota is left (Tyk: quota_max minus the counter).
        assert_eq!(shown["quota_remaining"], sent["quota_max"], "{operation}");
        // And the hash names the same key.
        let hash = answer["key_hash"].as_str().unwrap();
        let (status, by_hash) = call(
            admin.addr,
            Method::GET,
            &format!("/tyk/keys/{hash}?hashed=1"),
            &Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(by_hash["access_rights"], shown["access_rights"]);
    }
    let (status, list) = call(admin.addr, Method::GET, "/tyk/keys", &Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_schema("ApiAllKeys", &list);
    assert_eq!(list["keys"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn an_updated_key_shows_the_update_and_keeps_its_creation_time() {
    let admin = start().await;
    add_example_policy(admin.addr).await;
    let (_, created) = call(
        admin.addr,
        Method::POST,
        "/tyk/keys/customKey",
        &example("createCustomKey"),
    )
    .await;
    assert_eq!(created["action"], "added");
    let (_, first) = call(admin.addr, Method::GET, "/tyk/keys/customKey", &Value::Null).await;

    let mut sent = example("updateKey");
    sent.as_object_mut().unwrap().remove("date_created");
    let (status, answer) = call(
        admin.addr,
        Method::PUT,
        "/tyk/keys/customKey?suppress_reset=1",
        &sent,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_schema("ApiModifyKeySuccess", &answer);
    assert_eq!(
        (&answer["key"], &answer["action"]),
        (&json!("customKey"), &json!("modified"))
    );
    let (_, shown) = call(admin.addr, Method::GET, "/tyk/keys/customKey", &Value::Null).await;
    assert_schema("SessionState", &shown);
    assert_kept(&sent, &shown, STAMPED);
    // Tyk keeps the creation date on update (gateway/api.go: `DateCreated = originalKey.DateCreated`).
    assert_eq!(shown["date_created"], first["date_created"]);
}

#[tokio::test]
async fn preview_answers_the_session_a_create_would_store_and_stores_nothing() {
    let admin = start().await;
    add_example_policy(admin.addr).await;
    let sent = example("validateAKeyDefinition");
    let (status, shown) = call(admin.addr, Method::POST, "/tyk/keys/preview", &sent).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_schema("SessionState", &shown);
    assert_kept(&sent, &shown, &["last_updated", "date_created"]);
    assert!(admin.store.is_empty(), "a preview stores nothing");

    let (status, answer) = call(
        admin.addr,
        Method::POST,
        "/tyk/keys/preview",
        &json!({"apply_policies": ["nope"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_schema("ApiStatusMessage", &answer);
    assert_eq!(
        answer,
        json!({"status": "error", "message": "Policy \"nope\" does not exist"})
    );
    let (status, _, answer) = request(
        Method::POST,
        &admin.url("/tyk/keys/preview"),
        &[("x-tyk-authorization", TYK_SECRET)],
        "{not json".to_owned(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        json!({"status": "error", "message": "Request malformed"})
    );
}

#[tokio::test]
async fn policies_of_a_hashed_key_are_set_as_the_swagger_shows() {
    let admin = start().await;
    add_example_policy(admin.addr).await;
    let (_, created) = call(
        admin.addr,
        Method::POST,
        "/tyk/keys",
        &json!({"alias": "a", "meta_data": {"own": 1}}),
    )
    .await;
    let hash = created["key_hash"].as_str().unwrap().to_owned();

    let sent = example("setPoliciesToHashedKey");
    let (status, answer) = call(
        admin.addr,
        Method::POST,
        &format!("/tyk/keys/policy/{hash}"),
        &sent,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_schema("ApiModifyKeySuccess", &answer);
    // Tyk answers the hash it was given and `updated` (gateway/api.go, handleUpdateHashedKey).
    assert_eq!(
        (&answer["key"], &answer["status"], &answer["action"]),
        (&json!(hash), &json!("ok"), &json!("updated"))
    );
    let stored = admin
        .stored(&KeyId::from_hash(&hash).unwrap())
        .await
        .unwrap();
    assert_eq!(stored.apply_policies, ["5ead7120575961000181867e"]);
    assert_eq!(stored.meta_data["own"], 1, "the rest of the key is kept");

    // `policy` (deprecated) is added after the list.
    let (status, _) = call(
        admin.addr,
        Method::POST,
        &format!("/tyk/keys/policy/{hash}"),
        &json!({"apply_policies": null, "policy": "5ead7120575961000181867e"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    for (body, status, message) in [
        ("{", StatusCode::BAD_REQUEST, "Couldn't decode instruction"),
        (
            r#"{"apply_policies": ["missing"]}"#,
            StatusCode::BAD_REQUEST,
            "Policy \"missing\" does not exist",
        ),
    ] {
        let (got, _, answer) = request(
            Method::POST,
            &admin.url(&format!("/tyk/keys/policy/{hash}")),
            &[("x-tyk-authorization", TYK_SECRET)],
            body.to_owned(),
        )
        .await;
        assert_eq!(
            (got, answer),
            (status, json!({"status": "error", "message": message})),
            "{body}"
        );
    }
    let unknown = KeyId::of(&ApiKey::new("nobody")).as_str().to_owned();
    for path in [
        format!("/tyk/keys/policy/{unknown}"),
        "/tyk/keys/policy/not-a-hash".to_owned(),
    ] {
        let (status, answer) = call(admin.addr, Method::POST, &path, &sent).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_schema("ApiStatusMessage", &answer);
        assert_eq!(
            answer,
            json!({"status": "error", "message": "Key not found"})
        );
    }
}

#[tokio::test]
async fn policies_show_every_field_they_were_written_with() {
    let admin = start().await;
    let sent = add_example_policy(admin.addr).await;
    let id = sent["id"].as_str().unwrap();
    let (status, shown) = call(
        admin.addr,
        Method::GET,
        &format!("/tyk/policies/{id}"),
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_schema("Policy", &shown);
    assert_kept(&sent, &shown, &[]);

    let update = example("updatePolicy");
    let (status, answer) = call(
        admin.addr,
        Method::PUT,
        &format!("/tyk/policies/{}", update["id"].as_str().unwrap()),
        &update,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_schema("ApiModifyKeySuccess", &answer);
    let (_, list) = call(admin.addr, Method::GET, "/tyk/policies", &Value::Null).await;
    let list = list.as_array().expect("an array of policies");
    assert_eq!(list.len(), 1);
    assert_schema("Policy", &list[0]);
    assert_kept(&update, &list[0], &[]);
}

#[tokio::test]
async fn error_answers_have_tyk_status_message_shape() {
    let admin = start().await;
    let (status, answer) = call(admin.addr, Method::GET, "/tyk/keys/not-there", &Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_schema("ApiStatusMessage", &answer);
    let (status, _, answer) =
        request(Method::GET, &admin.url("/tyk/keys"), &[], String::new()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_schema("ApiStatusMessage", &answer);
    // A number that is not a whole one where Tyk has an int64, a time that is no time where
    // one is a number: refused as Tyk's body, nothing stored.
    for body in [
        json!({"quota_max": 1.5}),
        json!({"expires": 1e300}),
        json!({"quota_renews": "soon"}),
        json!({"tags": "a"}),
    ] {
        let (status, answer) = call(admin.addr, Method::POST, "/tyk/keys", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(
            answer,
            json!({"status": "error", "message": "Request malformed"}),
            "{body}"
        );
    }
    assert!(admin.store.is_empty());
    // A policy path that is no hash (other spellings included) names no key; one that is not
    // UTF-8 is refused as every Tyk path is.
    let upper = KeyId::of(&ApiKey::new("k")).as_str().to_uppercase();
    for path in [
        format!("/tyk/keys/policy/{upper}"),
        "/tyk/keys/policy/..%2F..".to_owned(),
    ] {
        let (status, answer) = call(admin.addr, Method::POST, &path, &json!({})).await;
        assert_eq!(
            (status, answer),
            (
                StatusCode::NOT_FOUND,
                json!({"status": "error", "message": "Key not found"})
            ),
            "{path}"
        );
    }
    let (status, answer) = call(admin.addr, Method::POST, "/tyk/keys/policy/%FF", &json!({})).await;
    assert_eq!(
        (status, answer),
        (
            StatusCode::BAD_REQUEST,
            json!({"status": "error", "message": "Invalid path parameter"})
        )
    );
    // Older Tyk exports write `null` for the nullable fields: read as empty.
    let (status, answer) = call(admin.addr, Method::POST, "/tyk/keys", &json!({"meta_data": null, "tags": null, "apply_policies": null, "access_rights": null, "oauth_keys": null})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, shown) = call(
        admin.addr,
        Method::GET,
        &format!("/tyk/keys/{}", answer["key"].as_str().unwrap()),
        &Value::Null,
    )
    .await;
    assert_schema("SessionState", &shown);
}

/// The same round trip on Redis: the fields keycard does not act on are stored with the session
/// (in its base record) and come back unchanged, through an update of its metadata too.
#[tokio::test]
async fn redis_keeps_every_session_state_field() {
    let store = connect(shared_store("tyk_compat_fields")).await;
    let policies = MemoryPolicies::new();
    let api = AdminApi::builder(store.clone())
        .policies(policies)
        .tyk_secret(TYK_SECRET)
        .build()
        .unwrap();
    let addr = spawn(api.into_router()).await;
    add_example_policy(addr).await;
    let sent = example("createCustomKey");
    let (status, answer) = call(addr, Method::POST, "/tyk/keys/customKey", &sent).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (_, shown) = call(addr, Method::GET, "/tyk/keys/customKey", &Value::Null).await;
    assert_schema("SessionState", &shown);
    assert_kept(&sent, &shown, STAMPED);
    assert_created_at(&sent, &shown);

    // A metadata delta (what a request's handler saves) keeps the other fields.
    let id = KeyId::of(&ApiKey::new("customKey"));
    let mut delta = keycard_core::metadata::MetadataDelta::default();
    delta.set("visits", json!(1));
    store.apply(&id, &delta).await.unwrap();
    let (_, after) = call(addr, Method::GET, "/tyk/keys/customKey", &Value::Null).await;
    assert_eq!(after["meta_data"]["visits"], 1);
    for field in [
        "access_rights",
        "allowance",
        "throttle_interval",
        "throttle_retry_limit",
        "enable_detailed_recording",
    ] {
        assert_eq!(after[field], sent[field], "{field}");
    }
    store.delete(&id).await.unwrap();
}
