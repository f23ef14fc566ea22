//! The Tyk-compatible keys and policies API over real HTTP: every route, every error body.

mod admin_support;

use admin_support::{TYK_SECRET, start, start_down, start_with};
use http::{Method, StatusCode};
use keycard_admin::AdminApiBuilder;
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::policy::{Policy, PolicySource};
use keycard_tests::http::request;
use serde_json::{Value, json};

fn tyk_error(message: &str) -> Value {
    json!({"status": "error", "message": message})
}

const FORBIDDEN: &str = "Attempted administrative access with invalid or missing key!";

#[tokio::test]
async fn missing_or_wrong_secret_gets_403_on_every_route() {
    let admin = start().await;
    let routes = [
        (Method::GET, "/tyk/keys"),
        (Method::POST, "/tyk/keys"),
        (Method::POST, "/tyk/keys/create"),
        (Method::POST, "/tyk/keys/some-custom-key-value"),
        (Method::GET, "/tyk/keys/k"),
        (Method::PUT, "/tyk/keys/k"),
        (Method::DELETE, "/tyk/keys/k"),
        (Method::POST, "/tyk/keys/preview"),
        (Method::POST, "/tyk/keys/policy/k"),
        (Method::POST, "/tyk/keys/reset/k"),
        (Method::GET, "/tyk/policies"),
        (Method::POST, "/tyk/policies"),
        (Method::GET, "/tyk/policies/p"),
        (Method::PUT, "/tyk/policies/p"),
        (Method::DELETE, "/tyk/policies/p"),
    ];
    let wrong = [
        vec![],
        vec![("x-tyk-authorization", "wrong")],
        vec![("x-tyk-authorization", "")],
        vec![("x-tyk-authorization", &TYK_SECRET[..TYK_SECRET.len() - 1])],
        vec![("authorization", TYK_SECRET)],
    ];
    for (method, path) in routes {
        for headers in &wrong {
            let (status, _, body) = request(method.clone(), &admin.url(path), headers, "{}").await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path} {headers:?}");
            assert_eq!(body, tyk_error(FORBIDDEN), "{method} {path}");
        }
    }
    assert!(admin.store.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn without_a_configured_secret_every_tyk_request_is_refused() {
    let api = keycard_admin::AdminApi::builder(keycard_core::store::MemoryStore::new())
        .build()
        .unwrap();
    let addr = keycard_tests::http::spawn(api.into_router()).await;
    for secret in ["", "anything"] {
        let (status, _, body) = request(
            Method::GET,
            &format!("http://{addr}/tyk/keys"),
            &[("x-tyk-authorization", secret)],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body, tyk_error(FORBIDDEN));
    }
}

#[tokio::test]
async fn generated_key_is_returned_once_and_stored_hashed() {
    let admin = start().await;
    for path in ["/tyk/keys", "/tyk/keys/create"] {
        let (status, body) = admin
            .tyk(
                Method::POST,
                path,
                r#"{"alias": "alice", "meta_data": {"plan": "gold", "n": 2}, "access_rights": {}}"#,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["action"], "added");
        let key = body["key"].as_str().unwrap();
        assert_eq!(key.len(), 64);
        let id = KeyId::of(&ApiKey::new(key));
        assert_eq!(body["key_hash"], id.as_str());
        assert_eq!(
            body.as_object().unwrap().len(),
            4,
            "key, status, action, key_hash"
        );

        let stored = admin.stored(&id).await.expect("stored under the hash");
        assert_eq!(stored.alias, "alice");
        assert_eq!(stored.meta_data["plan"], "gold");
        assert!(
            !serde_json::to_string(&stored).unwrap().contains(key),
            "the raw key is not stored"
        );

        let (status, session) = admin
            .tyk(Method::GET, &format!("/tyk/keys/{key}"), "")
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(session["meta_data"], json!({"plan": "gold", "n": 2}));
        assert!(
            !session.to_string().contains(key),
            "read never returns the raw key"
        );
        let (status, by_hash) = admin
            .tyk(Method::GET, &format!("/tyk/keys/{id}?hashed=true"), "")
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(by_hash, session);
    }
    assert_eq!(admin.store.len(), 2);
}

/// Tyk (gateway/api.go, handleAddOrUpdate; middleware.go, `defaultMinTokenLength = 3`): a
/// custom key needs 3 characters, and POSTing an existing one overwrites it. Strict mode keeps
/// 16 characters and 409.
#[tokio::test]
async fn custom_keys_follow_tyk_and_strict_mode_is_stricter() {
    let admin = start().await;
    let (status, body) = admin.tyk(Method::POST, "/tyk/keys/ab", "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        tyk_error("Key is too short: a custom key needs at least 3 characters")
    );
    assert!(admin.store.is_empty());

    let key = "abc";
    let id = KeyId::of(&ApiKey::new(key));
    for alias in ["bob", "eve"] {
        let (status, body) = admin
            .tyk(
                Method::POST,
                &format!("/tyk/keys/{key}"),
                &json!({"alias": alias}).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body,
            json!({"key": key, "status": "ok", "action": "added", "key_hash": id.as_str()})
        );
    }
    assert_eq!(
        admin.stored(&id).await.unwrap().alias,
        "eve",
        "overwritten, as Tyk"
    );

    let strict = start_with(AdminApiBuilder::strict).await;
    let (status, body) = strict.tyk(Method::POST, "/tyk/keys/short", "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        tyk_error("Key is too short: a custom key needs at least 16 characters")
    );
    let key = "a-custom-key-of-enough-length";
    let path = format!("/tyk/keys/{key}");
    let (status, _) = strict.tyk(Method::POST, &path, r#"{"alias": "bob"}"#).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = strict.tyk(Method::POST, &path, r#"{"alias": "eve"}"#).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, tyk_error("Key already exists"));
    let id = KeyId::of(&ApiKey::new(key));
    assert_eq!(strict.stored(&id).await.unwrap().alias, "bob");
}

/// A key created already expired would be handed out with a 200 and never work (or, as Tyk
/// does, silently never expire): it is refused.
#[tokio::test]
async fn a_key_created_already_expired_is_400() {
    let admin = start().await;
    let message =
        "Key expiry is in the past: use a future unix time, or 0 for a key that never expires";
    for path in ["/tyk/keys", "/tyk/keys/a-custom-key"] {
        let (status, body) = admin
            .tyk(Method::POST, path, r#"{"expires": 1000000000}"#)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body, tyk_error(message), "{path}");
    }
    assert!(admin.store.is_empty());
    let (status, _) = admin
        .tyk(Method::POST, "/tyk/keys", r#"{"expires": 0}"#)
        .await;
    assert_eq!(status, StatusCode::OK, "0 never expires");
}

#[tokio::test]
async fn get_applies_policies_and_unknown_keys_are_404() {
    let admin = start().await;
    admin.policies.insert(
        Policy::new("gold")
            .with_meta("plan", json!("gold"))
            .with_tag("paid"),
    );
    let (_, created) = admin
        .tyk(
            Method::POST,
            "/tyk/keys",
            r#"{"meta_data": {"plan": "free", "user": "u1"}, "apply_policies": ["gold"]}"#,
        )
        .await;
    let key = created["key"].as_str().unwrap();
    let (status, session) = admin
        .tyk(Method::GET, &format!("/tyk/keys/{key}"), "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(session["meta_data"], json!({"plan": "gold", "user": "u1"}));
    assert_eq!(session["tags"], json!(["paid"]));
    let id = KeyId::of(&ApiKey::new(key));
    assert_eq!(
        admin.stored(&id).await.unwrap().meta_data["plan"],
        "free",
        "policy values are never written into the key"
    );

    for path in [
        "/tyk/keys/no-such-key",
        "/tyk/keys/not-a-hash?hashed=true",
        &format!("/tyk/keys/{}?hashed=true", "0".repeat(64)),
    ] {
        let (status, body) = admin.tyk(Method::GET, path, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body, tyk_error("Key not found"));
    }
}

#[tokio::test]
async fn put_replaces_the_session_and_checks_versions() {
    let admin = start().await;
    let (_, created) = admin
        .tyk(
            Method::POST,
            "/tyk/keys",
            r#"{"alias": "a", "meta_data": {"old": "x"}}"#,
        )
        .await;
    let key = created["key"].as_str().unwrap();
    let id = KeyId::of(&ApiKey::new(key));

    let (status, body) = admin
        .tyk(
            Method::PUT,
            &format!("/tyk/keys/{key}"),
            r#"{"alias": "b", "meta_data": {"new": "y"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Tyk answers with the key as the path gave it (gateway/api.go, handleAddOrUpdate:
    // `Key: keyName`); the answer is `Cache-Control: no-store`.
    assert_eq!(
        body,
        json!({"key": key, "status": "ok", "action": "modified", "key_hash": id.as_str()}),
    );
    let stored = admin.stored(&id).await.unwrap();
    assert_eq!(stored.alias, "b");
    assert_eq!(Value::Object(stored.meta_data.clone()), json!({"new": "y"}));

    let (status, body) = admin
        .tyk(
            Method::PUT,
            &format!("/tyk/keys/{id}?hashed=true"),
            r#"{"alias": "c", "version": 1}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        tyk_error("Key was changed concurrently: reload it and retry")
    );
    let (status, _) = admin
        .tyk(
            Method::PUT,
            &format!("/tyk/keys/{id}?hashed=true"),
            &format!(r#"{{"alias": "c", "version": {}}}"#, stored.version),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(admin.stored(&id).await.unwrap().alias, "c");

    let (status, body) = admin
        .tyk(Method::PUT, "/tyk/keys/no-such-key-anywhere", "{}")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, tyk_error("Key is not found"));
}

#[tokio::test]
async fn delete_removes_the_key_once() {
    let admin = start().await;
    let (_, created) = admin.tyk(Method::POST, "/tyk/keys", "{}").await;
    let key = created["key"].as_str().unwrap();
    let id = KeyId::of(&ApiKey::new(key));
    let (status, body) = admin
        .tyk(Method::DELETE, &format!("/tyk/keys/{key}"), "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"key": key, "status": "ok", "action": "deleted", "key_hash": id.as_str()})
    );
    assert!(admin.stored(&id).await.is_none());
    for path in [
        format!("/tyk/keys/{key}"),
        format!("/tyk/keys/{id}?hashed=true"),
    ] {
        let (status, body) = admin.tyk(Method::DELETE, &path, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, tyk_error("There is no such key found"));
    }

    let (_, created) = admin.tyk(Method::POST, "/tyk/keys", "{}").await;
    let hash = created["key_hash"].as_str().unwrap();
    let (status, _) = admin
        .tyk(Method::DELETE, &format!("/tyk/keys/{hash}?hashed=true"), "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(admin.store.is_empty());
}

#[tokio::test]
async fn list_pages_key_hashes() {
    let admin = start().await;
    let mut hashes = Vec::new();
    for _ in 0..5 {
        let (_, created) = admin.tyk(Method::POST, "/tyk/keys", "{}").await;
        hashes.push(created["key_hash"].as_str().unwrap().to_owned());
    }
    hashes.sort();
    let (status, all) = admin.tyk(Method::GET, "/tyk/keys", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all, json!({"keys": hashes}));

    let mut seen = Vec::new();
    let mut path = "/tyk/keys?take=2".to_owned();
    loop {
        let (status, page) = admin.tyk(Method::GET, &path, "").await;
        assert_eq!(status, StatusCode::OK);
        let keys = page["keys"].as_array().unwrap();
        assert!(keys.len() <= 2);
        seen.extend(keys.iter().map(|k| k.as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => path = format!("/tyk/keys?take=2&from={next}"),
            None => break,
        }
    }
    assert_eq!(seen, hashes);

    for take in ["0", "1001", "x", "-1"] {
        let (status, body) = admin
            .tyk(Method::GET, &format!("/tyk/keys?take={take}"), "")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "take={take}");
        assert_eq!(
            body,
            tyk_error("take must be an integer between 1 and 1000")
        );
    }
}

#[tokio::test]
async fn bad_bodies_get_400_and_store_nothing() {
    let admin = start().await;
    let huge = "x".repeat(65_537);
    let cases = [
        ("not json", "Request malformed".to_owned()),
        ("", "Request malformed".to_owned()),
        (r#"{"meta_data": []}"#, "Request malformed".to_owned()),
        (r#"{"alias": 7}"#, "Request malformed".to_owned()),
        (
            &format!(r#"{{"meta_data": {{"big": "{huge}"}}}}"#),
            "Metadata must not exceed 1024 entries. Each key and value must be ≤ 65536 characters."
                .to_owned(),
        ),
        (
            r#"{"meta_data": {"": "empty key"}}"#,
            "Metadata keys must not be empty".to_owned(),
        ),
        (
            r#"{"apply_policies": ["nope"]}"#,
            r#"Policy "nope" does not exist"#.to_owned(),
        ),
    ];
    for (body, message) in &cases {
        for path in ["/tyk/keys", "/tyk/keys/a-custom-key-long-enough"] {
            let (status, answer) = admin.tyk(Method::POST, path, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body:.40}");
            assert_eq!(answer, tyk_error(message), "{path} {body:.40}");
        }
    }
    assert!(admin.store.is_empty());

    // The same checks guard PUT; the stored session is unchanged.
    let id = admin.seed("a", json!({"keep": "me"})).await;
    for (body, message) in &cases {
        let (status, answer) = admin
            .tyk(Method::PUT, &format!("/tyk/keys/{id}?hashed=true"), body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(answer, tyk_error(message));
    }
    assert_eq!(admin.stored(&id).await.unwrap().meta_data["keep"], "me");

    let strict =
        start_with(|b| b.tyk_limits(keycard_core::metadata::MetadataLimits::auth0())).await;
    let (status, answer) = strict
        .tyk(
            Method::POST,
            "/tyk/keys",
            r#"{"meta_data": {"bad key!": "v"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer,
        tyk_error("Metadata keys may only include letters, numbers, underscores, or hyphens")
    );
}

/// With `header_safe_values` on, a value that could never be sent in a header (CR/LF, also
/// nested in JSON) is refused when it is written, on keys and on policies; off (the Tyk default),
/// it is stored as Tyk stores it.
#[tokio::test]
async fn header_safe_profile_refuses_control_characters_at_write_time() {
    use keycard_core::metadata::MetadataLimits;
    let strict = start_with(|b| b.tyk_limits(MetadataLimits::tyk().header_safe_values(true))).await;
    let cases = [
        (
            r#"{"meta_data": {"user_id": "u-1\r\nX-Admin: yes"}}"#,
            "user_id",
        ),
        (r#"{"meta_data": {"tags": ["ok", "bad\n"]}}"#, "tags"),
        (r#"{"meta_data": {"nul": "a\u0000b"}}"#, "nul"),
    ];
    for (body, key) in cases {
        let message = format!(
            "Metadata value of \"{key}\" cannot be sent in a header: it contains a control character"
        );
        let (status, answer) = strict.tyk(Method::POST, "/tyk/keys", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer, tyk_error(&message), "{body}");
        let (status, answer) = strict.tyk(Method::POST, "/tyk/policies", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "policy {body}");
        assert_eq!(answer, tyk_error(&message), "policy {body}");
    }
    assert!(strict.store.is_empty());
    let (status, _) = strict
        .tyk(
            Method::POST,
            "/tyk/keys",
            r#"{"meta_data": {"note": "tab\tis fine"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = start()
        .await
        .tyk(Method::POST, "/tyk/keys", cases[0].0)
        .await;
    assert_eq!(status, StatusCode::OK, "off by default, as in Tyk");
}

/// Tyk reads any non-empty `hashed` value as "the path holds the hash" (gateway/api.go,
/// keyHandler), and its schema lets `meta_data`, `tags` and `apply_policies` be `null`
/// (swagger.yml, SessionState: `nullable: true`): both as Tyk.
#[tokio::test]
async fn tyk_nullable_fields_and_any_hashed_value_are_read_as_tyk_does() {
    let admin = start().await;
    let body =
        r#"{"alias": "old-export", "meta_data": null, "tags": null, "apply_policies": null}"#;
    let (status, created) = admin.tyk(Method::POST, "/tyk/keys", body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let hash = created["key_hash"].as_str().unwrap().to_owned();
    for hashed in ["true", "1", "yes"] {
        let (status, session) = admin
            .tyk(
                Method::GET,
                &format!("/tyk/keys/{hash}?hashed={hashed}"),
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "hashed={hashed}");
        assert_eq!(session["alias"], "old-export");
        assert_eq!(session["meta_data"], json!({}));
        assert_eq!(session["tags"], json!([]));
    }
    let (status, _) = admin
        .tyk(Method::GET, &format!("/tyk/keys/{hash}?hashed="), "")
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an empty value is not hashed"
    );
}

#[tokio::test]
async fn policies_crud() {
    let admin = start().await;
    let (status, body) = admin.tyk(Method::GET, "/tyk/policies", "").await;
    assert_eq!((status, body), (StatusCode::OK, json!([])));

    let (status, body) = admin
        .tyk(
            Method::POST,
            "/tyk/policies",
            r#"{"id": "gold", "name": "Gold", "meta_data": {"plan": "gold"}, "tags": ["paid"]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"key": "gold", "status": "ok", "action": "added"})
    );
    assert_eq!(
        admin.policies.policy("gold").unwrap().meta_data["plan"],
        "gold"
    );

    // Tyk overwrites a policy POSTed again (handleAddOrUpdatePolicy writes the file); strict
    // mode refuses.
    let strict = start_with(AdminApiBuilder::strict).await;
    {
        let admin = &strict;
        let (status, _) = admin
            .tyk(Method::POST, "/tyk/policies", r#"{"id": "gold"}"#)
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = admin
            .tyk(Method::POST, "/tyk/policies", r#"{"id": "gold"}"#)
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body, tyk_error("Policy already exists"));
    }
    let (status, body) = admin
        .tyk(
            Method::POST,
            "/tyk/policies",
            r#"{"id": "gold", "name": "Gold", "meta_data": {"plan": "gold"}, "tags": ["paid"]}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"key": "gold", "status": "ok", "action": "added"})
    );

    let (status, body) = admin
        .tyk(Method::POST, "/tyk/policies", r#"{"name": "no id"}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    let generated = body["key"].as_str().unwrap().to_owned();
    assert!(!generated.is_empty());

    let (status, body) = admin.tyk(Method::GET, "/tyk/policies/gold", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "Gold");
    assert_eq!(body["meta_data"], json!({"plan": "gold"}));

    let (status, body) = admin.tyk(Method::GET, "/tyk/policies", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 2);

    let (status, body) = admin
        .tyk(
            Method::PUT,
            "/tyk/policies/gold",
            r#"{"id": "other", "meta_data": {"plan": "platinum"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        tyk_error(
            "Request ID does not match that in policy! For Update operations these must match."
        )
    );
    let (status, body) = admin
        .tyk(
            Method::PUT,
            "/tyk/policies/gold",
            r#"{"id": "gold", "meta_data": {"plan": "platinum"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"key": "gold", "status": "ok", "action": "modified"})
    );
    assert_eq!(
        admin.policies.policy("gold").unwrap().meta_data["plan"],
        "platinum"
    );
    assert!(admin.policies.policy("other").is_none());

    let (status, body) = admin.tyk(Method::DELETE, "/tyk/policies/gold", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"key": "gold", "status": "ok", "action": "deleted"})
    );
    assert!(admin.policies.policy("gold").is_none());

    for (method, body) in [(Method::GET, ""), (Method::PUT, "{}"), (Method::DELETE, "")] {
        let (status, answer) = admin.tyk(method.clone(), "/tyk/policies/gold", body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(answer, tyk_error("Policy not found"));
    }

    let (status, answer) = admin.tyk(Method::POST, "/tyk/policies", "{oops").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer, tyk_error("Request malformed"));
}

#[tokio::test]
async fn store_down_is_503_in_tyk_shape() {
    let addr = start_down().await;
    let hash = "0".repeat(64);
    for (method, path, body) in [
        (Method::GET, "/tyk/keys".to_owned(), ""),
        (Method::POST, "/tyk/keys".to_owned(), "{}"),
        (Method::GET, format!("/tyk/keys/{hash}?hashed=true"), ""),
        (Method::PUT, format!("/tyk/keys/{hash}?hashed=true"), "{}"),
        (Method::DELETE, format!("/tyk/keys/{hash}?hashed=true"), ""),
    ] {
        let (status, answer) = admin_support::tyk(addr, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {path}");
        assert_eq!(answer, tyk_error("Session store unavailable"));
    }
}
