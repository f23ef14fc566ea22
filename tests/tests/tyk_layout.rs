//! Tyk's own Redis layout (`keycard_redis::tyk::TykRedisStore`): sessions written exactly as Tyk
//! writes them (`SET apikey-<hash> <json>`, fixtures from Tyk's swagger and test helpers, see
//! `tests/fixtures/tyk/README.md`) load through the store and through a real HTTP stack, a
//! handler's metadata changes are written back, and the JSON in Redis is still Tyk's session with
//! every other field byte for byte. Also the store conformance suite, and deltas from two nodes.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use keycard::headers::InjectHeadersLayer;
use keycard::prelude::*;
use keycard_core::policy::{MemoryPolicies, Policy};
use keycard_core::testing::conformance::{GRACE, conformance};
use keycard_redis::fred::interfaces::KeysInterface;
use keycard_redis::fred::types::Expiration;
use keycard_redis::tyk::{TykHashFunction, TykKeyHash, TykRedisStore, TykRedisStoreBuilder};
use keycard_tests::http::{Client, spawn};
use keycard_tests::redis_support::{redis_url, unique_prefix};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

const SWAGGER_SESSION: &str = include_str!("../fixtures/tyk/swagger-getKey.json");
const STANDARD_SESSION: &str = include_str!("../fixtures/tyk/standard-session.json");
/// `getKey`'s example key id in Tyk's swagger: org id + uuid (a legacy key, murmur32).
const SWAGGER_KEY: &str = "5e9d9544a1dcd60001d0ed20e7f75f9e03534825b7aef9df749582e5";
const SWAGGER_ORG: &str = "5e9d9544a1dcd60001d0ed20";

/// A store on the shared Redis under a prefix of its own (`<unique>:apikey-`).
fn builder(test: &str) -> TykRedisStoreBuilder {
    TykRedisStore::url(&redis_url())
        .expect("REDIS_URL is a valid redis:// URL")
        .prefix(format!("{}:apikey-", unique_prefix(test)))
}

async fn connect(builder: TykRedisStoreBuilder) -> TykRedisStore {
    match builder.connect().await {
        Ok(store) => store,
        Err(error) => panic!(
            "cannot connect to Redis ({error:?}). Start it with `redis-server --daemonize yes \
             --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no` or set REDIS_URL"
        ),
    }
}

/// Writes `json` where Tyk would for `key`, as Tyk does (`SET`, with Tyk's session lifetime as
/// the TTL when given).
async fn tyk_writes(store: &TykRedisStore, key: &str, json: &str, ttl: Option<i64>) -> String {
    let redis_key = store.session_key(&store.key_id(key));
    let _: () = store
        .client()
        .set(
            &redis_key,
            json.trim_end(),
            ttl.map(Expiration::EX),
            None,
            false,
        )
        .await
        .unwrap();
    redis_key
}

async fn stored(store: &TykRedisStore, redis_key: &str) -> String {
    let text: Option<String> = store.client().get(redis_key).await.unwrap();
    text.expect("the session is still in Redis")
}

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text).expect("valid JSON") {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// The raw text of each top-level field of a JSON object.
fn raw_fields(text: &str) -> BTreeMap<String, String> {
    let raw: BTreeMap<String, Box<RawValue>> = serde_json::from_str(text).expect("valid JSON");
    raw.into_iter()
        .map(|(k, v)| (k, v.get().to_owned()))
        .collect()
}

/// After keycard's write, `after` is `before` with the new metadata: every field keycard does
/// not own has its original text exactly, `meta_data` holds the original entries (their text
/// too) plus `added`, `last_updated` is (now) a Tyk timestamp string, and the only other new
/// field is `keycard_version`.
fn assert_still_tyks(before: &str, after: &str, added: &Value) {
    let (old, new) = (raw_fields(before), raw_fields(after));
    for (name, text) in &old {
        if name == "meta_data" || name == "last_updated" {
            continue;
        }
        assert_eq!(new.get(name), Some(text), "field {name} kept byte for byte");
    }
    let extra: Vec<&String> = new
        .keys()
        .filter(|n| !old.contains_key(*n) && !["meta_data", "last_updated"].contains(&n.as_str()))
        .collect();
    assert_eq!(extra, ["keycard_version"], "no other field added");
    let after_obj = object(after);
    let updated = after_obj["last_updated"]
        .as_str()
        .expect("last_updated is a string");
    assert!(
        updated.parse::<i64>().is_ok(),
        "last_updated {updated:?} is unix seconds"
    );
    let mut meta = object(before)
        .remove("meta_data")
        .and_then(|m| m.as_object().cloned())
        .unwrap_or_default();
    for (k, v) in added.as_object().unwrap() {
        meta.insert(k.clone(), v.clone());
    }
    assert_eq!(after_obj["meta_data"], Value::Object(meta));
    // And Tyk's own reader would take it: every Tyk field keeps its JSON type.
    for (name, value) in object(before) {
        assert_eq!(
            std::mem::discriminant(&after_obj[&name]),
            std::mem::discriminant(&value),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tyk_store_keeps_the_store_contract() {
    conformance(std::sync::Arc::new(
        connect(builder("tyk-conformance").expiry_grace(GRACE)).await,
    ))
    .await;
}

#[tokio::test]
async fn the_swagger_session_loads_with_tyks_fields_mapped() {
    let store = connect(builder("tyk-swagger-load")).await;
    tyk_writes(&store, SWAGGER_KEY, SWAGGER_SESSION, None).await;
    // murmur32 of the legacy key, 8 hex characters, under Tyk's prefix.
    let id = store.key_id(SWAGGER_KEY);
    assert_eq!(
        id.as_str(),
        TykHashFunction::Murmur32.hex(SWAGGER_KEY.as_bytes())
    );
    assert!(store.session_key(&id).ends_with(&format!("apikey-{id}")));

    let session = store
        .load(&id)
        .await
        .unwrap()
        .expect("the session Tyk wrote");
    assert_eq!(session.alias, "portal-key");
    assert_eq!(session.org_id, SWAGGER_ORG);
    assert_eq!((session.rate, session.per), (1000.0, 60.0));
    assert_eq!(session.quota_max, 10000);
    assert_eq!(session.quota_renews, 1_723_207_234);
    assert_eq!(session.quota_renewal_rate, 3600);
    assert_eq!(session.quota_remaining, 0, "left out by Tyk's omitzero");
    assert_eq!(session.apply_policies, ["5ead7120575961000181867e"]);
    assert_eq!(session.tags, ["security", "edge", "edge-eu"]);
    assert_eq!(session.meta_data["user_type"], "mobile_user");
    assert_eq!(
        session.meta_data["tyk_developer_id"],
        "62b3fb9a1d5e4f00017226f5"
    );
    // "2024-08-09T14:40:34.87614+03:00" = 11:40:34 UTC.
    assert_eq!(session.date_created, 1_723_203_634);
    assert_eq!(session.last_updated, 1_723_203_634);
    assert_eq!(session.expires, 0);
    assert!(
        session.version >= 1 << 63,
        "Tyk's write carries no keycard version"
    );
    assert_eq!(
        store.load_shared(&id).await.unwrap().as_deref(),
        Some(&session)
    );
    assert!(
        store
            .load(&store.key_id("some-other-key"))
            .await
            .unwrap()
            .is_none()
    );
}

/// Tyk's sessions through the whole stack: `$tyk_meta` headers from what Tyk stored, a handler
/// that changes metadata, and Tyk's JSON afterwards.
async fn round_trip_over_http(store: TykRedisStore, key: &str, fixture: &str) {
    let redis_key = tyk_writes(&store, key, fixture, Some(86_400)).await;
    let before = stored(&store, &redis_key).await;
    let policies = MemoryPolicies::new();
    policies.insert(Policy::new("5ead7120575961000181867e"));
    let headers = InjectHeadersLayer::request()
        .set("x-user-type", "$tyk_meta.user_type")
        .set("x-org", "$tyk_meta.tyk_developer_id")
        .build()
        .unwrap();
    let routes = Router::new()
        .route(
            "/whoami",
            get(|headers: HeaderMap| async move {
                let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_owned());
                axum::Json(json!({"user_type": h("x-user-type"), "developer": h("x-org")}))
            }),
        )
        .route(
            "/upgrade",
            post(|session: Session| async move {
                session.set("plan", json!("gold")).unwrap();
                session
                    .set("seats", json!(9_007_199_254_740_993_u64))
                    .unwrap();
                session.increment("logins", 1).unwrap().to_string()
            }),
        );
    let keycard = Keycard::new(store.clone())
        .key_hasher(store.key_hasher())
        .policies(policies)
        .request_headers(headers);
    let client = Client::new(spawn(keycard.wrap(routes)).await);
    let auth = format!("Bearer {key}");
    let auth = [("authorization", auth.as_str())];

    let seen = client.get("/whoami", &auth).await;
    assert_eq!(seen.status, 200, "{}", seen.text());
    let meta = object(fixture)
        .get("meta_data")
        .cloned()
        .unwrap_or(json!({}));
    // A missing entry renders as an empty header value.
    let expected = |name: &str| meta.get(name).cloned().unwrap_or(json!(""));
    assert_eq!(
        seen.json(),
        json!({"user_type": expected("user_type"), "developer": expected("tyk_developer_id")})
    );
    assert_eq!(
        client
            .get(
                "/whoami",
                &[("authorization", "Bearer not-a-tyk-key-at-all")]
            )
            .await
            .status,
        403
    );

    let upgraded = client.post("/upgrade", &auth).await;
    assert_eq!(upgraded.status, 200, "{}", upgraded.text());
    assert_eq!(upgraded.text(), "1");
    let after = stored(&store, &redis_key).await;
    assert_still_tyks(
        &before,
        &after,
        &json!({"plan": "gold", "seats": 9_007_199_254_740_993_u64, "logins": 1}),
    );
    assert!(
        after.contains(r#""seats":9007199254740993"#),
        "exact integer: {after}"
    );
    // A delta keeps the TTL Tyk set (its session lifetime).
    let ttl: i64 = store.client().ttl(&redis_key).await.unwrap();
    assert!((86_000..=86_400).contains(&ttl), "ttl {ttl}");

    // The next request sees the change; the policy's view is not written back.
    let again = client.post("/upgrade", &auth).await;
    assert_eq!(again.text(), "2");
    let text = stored(&store, &redis_key).await;
    assert_eq!(object(&text)["meta_data"]["logins"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_murmur32_key_from_tyks_swagger_round_trips_over_http() {
    let store = connect(builder("tyk-http-legacy")).await;
    round_trip_over_http(store, SWAGGER_KEY, SWAGGER_SESSION).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_key_is_found_where_tyks_api_stored_it() {
    // POST /tyk/keys/customKey answers key "5e9d9544a1dcd60001d0ed20customKey" (swagger's
    // createCustomKey): Tyk stored the session under that token; a client presents "customKey".
    let store = connect(builder("tyk-http-custom").org_id(SWAGGER_ORG)).await;
    assert_eq!(
        store.key_id("customKey"),
        store.key_id("5e9d9544a1dcd60001d0ed20customKey")
    );
    assert_eq!(
        store.key_id("customKey").as_str(),
        TykHashFunction::Murmur32.hex(b"5e9d9544a1dcd60001d0ed20customKey")
    );
    round_trip_over_http(store, "customKey", SWAGGER_SESSION).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_keys_hash_with_the_function_they_carry() {
    for function in [
        TykHashFunction::Murmur64,
        TykHashFunction::Murmur128,
        TykHashFunction::Sha256,
        TykHashFunction::Murmur32,
    ] {
        let store = connect(
            builder(&format!("tyk-http-{function}"))
                .hash_key_function(function)
                .org_id("default"),
        )
        .await;
        let key = store.key_hash().generate_key();
        let id = store.key_id(&key);
        assert_eq!(id.as_str(), function.hex(key.as_bytes()), "{function}");
        round_trip_over_http(store, &key, STANDARD_SESSION).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hash_keys_off_the_raw_key_is_the_redis_key() {
    let store = connect(builder("tyk-http-raw").hash_keys(false)).await;
    let key = TykKeyHash::new().org_id("default").generate_key();
    assert!(
        store
            .session_key(&store.key_id(&key))
            .ends_with(&format!("apikey-{key}"))
    );
    round_trip_over_http(store, &key, STANDARD_SESSION).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_two_nodes_add_up_on_one_tyk_session() {
    let prefix = format!("{}:apikey-", unique_prefix("tyk-two-nodes"));
    let node = || {
        TykRedisStore::url(&redis_url())
            .unwrap()
            .prefix(prefix.clone())
            .connect()
    };
    let (a, b) = (node().await.unwrap(), node().await.unwrap());
    let redis_key = tyk_writes(&a, SWAGGER_KEY, SWAGGER_SESSION, None).await;
    let id = a.key_id(SWAGGER_KEY);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..400 {
        let store = if n % 2 == 0 { a.clone() } else { b.clone() };
        let id = id.clone();
        tasks.spawn(async move {
            let mut delta = keycard_core::metadata::MetadataDelta::new();
            delta
                .increment("hits", 1)
                .set(format!("k{}", n % 7), json!(n));
            store.save_changes(&id, &delta).await
        });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Some(done) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .unwrap()
    {
        assert!(done.unwrap().unwrap().is_some());
    }
    let after = stored(&a, &redis_key).await;
    let meta = &object(&after)["meta_data"];
    assert_eq!(meta["hits"], 400, "every increment of both nodes counted");
    assert_eq!(meta["user_type"], "mobile_user", "Tyk's metadata kept");
    assert_eq!(
        object(&after)["access_rights"],
        object(SWAGGER_SESSION)["access_rights"]
    );
}

#[tokio::test]
async fn a_tyk_rewrite_meanwhile_is_kept_and_conflicts_a_stale_replace() {
    let store = connect(builder("tyk-rewrite")).await;
    let redis_key = tyk_writes(&store, SWAGGER_KEY, SWAGGER_SESSION, None).await;
    let id = store.key_id(SWAGGER_KEY);
    let loaded = store.load(&id).await.unwrap().unwrap();
    // Tyk rewrites the session (its API's PUT: new quota, its own fields).
    let rewritten = SWAGGER_SESSION
        .trim_end()
        .replace(r#""quota_max":10000"#, r#""quota_max":20000"#);
    tyk_writes(&store, SWAGGER_KEY, &rewritten, None).await;
    let mut stale = loaded.clone();
    stale.alias = "mine".into();
    assert!(matches!(
        store.replace(stale).await,
        Err(keycard_core::store::StoreError::Conflict { .. })
    ));
    let mut delta = keycard_core::metadata::MetadataDelta::new();
    delta.set("plan", json!("gold"));
    let applied = store.apply(&id, &delta).await.unwrap().unwrap();
    assert_eq!(
        (applied.quota_max, applied.meta_data["plan"].clone()),
        (20000, json!("gold"))
    );
    let after = stored(&store, &redis_key).await;
    assert_still_tyks(&rewritten, &after, &json!({"plan": "gold"}));
    // A replace based on the current version goes through and writes only what changed.
    let mut fresh = store.load(&id).await.unwrap().unwrap();
    fresh.alias = "renamed".into();
    let replaced = store.replace(fresh).await.unwrap();
    assert_eq!(replaced.alias, "renamed");
    assert_eq!(replaced.date_created, 1_723_203_634);
    let text = stored(&store, &redis_key).await;
    assert!(
        text.contains(r#""date_created":"2024-08-09T14:40:34.87614+03:00""#),
        "{text}"
    );
    assert!(text.contains(r#""alias":"renamed""#));
    // Tyk has no index: listings scan the prefix.
    let listed = store.list_by_alias("renamed", None, 10).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        store.list_keys(None, 10).await.unwrap().items,
        std::slice::from_ref(&id)
    );
    assert_eq!(
        store.delete(&id).await.unwrap().map(|s| s.alias),
        Some("renamed".into())
    );
}
