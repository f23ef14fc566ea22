//! The `Keycard` stack over real HTTP: increments that add up exactly across instances (memory,
//! Redis, cluster), the quickstart's `/visits` under concurrency, the data-flow order (a header
//! rule reads what the rewrite published), the credential never reaching the handler, and a
//! stack without a save stage saying so.

use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use keycard::context::ForwardedFor;
use keycard::persist::PersistLayer;
use keycard::prelude::*;
use keycard::redis::RedisStore;
use keycard_examples::{quickstart, redis_store};
use keycard_tests::http::{Client, raw_request, spawn};
use keycard_tests::logs::Captured;
use keycard_tests::redis_support::{RedisCluster, connect, redis_url, unique_prefix};
use serde_json::{Value, json};
use tower::ServiceBuilder;

const KEY: &str = "stack-test-key";
const AUTH: (&str, &str) = ("authorization", "Bearer stack-test-key");

/// `POST /count` increments `count` by one.
fn counting_routes() -> Router {
    Router::new().route(
        "/count",
        post(|session: Session| async move { session.increment("count", 1).unwrap().to_string() }),
    )
}

/// Sends `n` concurrent `POST path` requests spread over `clients`; every one must answer 200.
async fn concurrent_posts(clients: &[Client], path: &'static str, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = clients[i % clients.len()].clone();
        tasks.spawn(async move { client.post(path, &[AUTH]).await.status });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let mut done = 0;
    while let Some(status) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .expect("the requests finish within 120 s")
    {
        assert_eq!(status.unwrap(), 200);
        done += 1;
    }
    assert_eq!(done, n);
}

/// Two app instances (two stacks, two servers) over stores that share one backend: 1000
/// concurrent increments through both end at exactly +1000.
async fn two_instances_count_exactly<S: SessionStore + Clone>(a: S, b: S) {
    a.create(SessionRecord::for_key(KEY).metadata(json!({"count": 0})))
        .await
        .unwrap();
    let clients = [
        Client::new(spawn(Keycard::new(a.clone()).wrap(counting_routes())).await),
        Client::new(spawn(Keycard::new(b).wrap(counting_routes())).await),
    ];
    concurrent_posts(&clients, "/count", 1000).await;
    let id = KeyId::of(&ApiKey::new(KEY));
    let stored = a.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.meta_data["count"], 1000);
    assert_eq!(stored.version, 1001, "one save per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_two_instances_add_up_on_memory() {
    let store = MemoryStore::new();
    two_instances_count_exactly(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_two_instances_add_up_on_redis() {
    let prefix = unique_prefix("stack-increments");
    let a = connect(RedisStore::url(&redis_url()).unwrap().prefix(&prefix)).await;
    let b = connect(RedisStore::url(&redis_url()).unwrap().prefix(&prefix)).await;
    two_instances_count_exactly(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_from_two_instances_add_up_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let prefix = unique_prefix("stack-increments-cluster");
    let node = || {
        RedisStore::cluster(cluster.hosts())
            .prefix(&prefix)
            .command_timeout(Duration::from_secs(10))
    };
    two_instances_count_exactly(connect(node()).await, connect(node()).await).await;
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_counts_300_concurrent_visits_exactly() {
    let store = quickstart::demo_store(KEY).unwrap();
    let client = Client::new(spawn(quickstart::app(store).unwrap()).await);
    concurrent_posts(std::slice::from_ref(&client), "/visits", 300).await;
    let whoami = client.get("/whoami", &[AUTH]).await.json();
    assert_eq!(whoami["visits"], 300);
    let next = client.post("/visits", &[AUTH]).await.json();
    assert_eq!(next, json!({"visits": 301}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_example_counts_300_concurrent_visits_exactly() {
    let prefix = unique_prefix("stack-redis-visits");
    let store = redis_store::demo_store(&redis_url(), &prefix, KEY)
        .await
        .unwrap();
    let client = Client::new(spawn(quickstart::app(store).unwrap()).await);
    concurrent_posts(std::slice::from_ref(&client), "/visits", 300).await;
    let whoami = client.get("/whoami", &[AUTH]).await.json();
    assert_eq!(whoami["visits"], 300);
}

#[tokio::test]
async fn typed_values_round_trip_through_the_store() {
    let store = MemoryStore::new();
    store.insert_key(KEY, json!({})).unwrap();
    let routes = Router::new()
        .route(
            "/write",
            post(|session: Session| async move {
                session.insert("seats", 3_u32).unwrap();
                session
                    .insert("prefs", json!({"theme": "dark", "langs": ["en", "fr"]}))
                    .unwrap();
            }),
        )
        .route(
            "/read",
            get(|session: Session| async move {
                let seats: u32 = session.get("seats").unwrap().unwrap();
                let langs: Vec<String> = session
                    .get::<Value>("prefs")
                    .unwrap()
                    .map(|p| serde_json::from_value(p["langs"].clone()).unwrap())
                    .unwrap();
                format!("{seats} {}", langs.join(","))
            }),
        );
    let client = Client::new(spawn(Keycard::new(store).wrap(routes)).await);
    assert_eq!(client.post("/write", &[AUTH]).await.status, 200);
    assert_eq!(client.get("/read", &[AUTH]).await.text(), "3 en,fr");
}

/// The rewrite runs before the header rules, so a header rule can read the `trigger-*` context
/// value a rewrite trigger published on the same request.
#[tokio::test]
async fn a_header_rule_reads_what_the_rewrite_trigger_published() {
    let store = MemoryStore::new();
    store.insert_key(KEY, json!({"user_id": "u-1"})).unwrap();
    let rewrite = UrlRewriteLayer::rules()
        .rule(
            RewriteRule::new("^/orders/(.*)", "/v1/orders/$1").trigger(
                Trigger::any()
                    .header("X-Variant", r"beta-(\w+)")
                    .rewrite_to("/v2/orders/$1"),
            ),
        )
        .build()
        .unwrap();
    let headers = InjectHeadersLayer::request()
        .set("x-variant-name", "$tyk_context.trigger-0-X-Variant-0-0")
        .set("x-user-id", "$tyk_meta.user_id")
        .build()
        .unwrap();
    let echo = |version: &'static str| {
        move |headers: HeaderMap| async move {
            let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
            axum::Json(json!({
                "version": version,
                "variant": header("x-variant-name"),
                "user": header("x-user-id"),
                "authorization": header("authorization"),
            }))
        }
    };
    let routes = Router::new()
        .route("/v1/orders/{id}", get(echo("v1")))
        .route("/v2/orders/{id}", get(echo("v2")));
    let keycard = Keycard::new(store)
        .rewrite(rewrite)
        .request_headers(headers);
    let client = Client::new(spawn(keycard.wrap(routes)).await);

    let seen = client
        .get("/orders/7", &[AUTH, ("x-variant", "beta-blue")])
        .await
        .json();
    assert_eq!(
        seen,
        json!({"version": "v2", "variant": "blue", "user": "u-1", "authorization": null})
    );
    let seen = client.get("/orders/7", &[AUTH]).await.json();
    assert_eq!(seen["version"], "v1");
    assert_eq!(
        seen["variant"], "",
        "no trigger fired: the variable renders empty, as in Tyk"
    );
}

/// The raw key leaves the request at the load stage: the handler never sees the credential, and
/// `$tyk_context.token` renders only where the stack opted in.
#[tokio::test]
async fn the_raw_key_stops_at_the_load_stage_unless_exposed() {
    let store = MemoryStore::new();
    store.insert_key(KEY, json!({})).unwrap();
    let headers = || {
        InjectHeadersLayer::request()
            .set("x-token", "$tyk_context.token")
            .build()
            .unwrap()
    };
    let routes = || {
        Router::new().route(
            "/",
            get(|headers: HeaderMap| async move {
                let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
                axum::Json(
                    json!({"authorization": header("authorization"), "token": header("x-token")}),
                )
            }),
        )
    };
    let plain = Keycard::new(store.clone()).request_headers(headers());
    let client = Client::new(spawn(plain.wrap(routes())).await);
    assert_eq!(
        client.get("/", &[AUTH]).await.json(),
        json!({"authorization": null, "token": ""})
    );
    let exposed = Keycard::new(store)
        .request_headers(headers())
        .expose_token();
    let client = Client::new(spawn(exposed.wrap(routes())).await);
    assert_eq!(
        client.get("/", &[AUTH]).await.json(),
        json!({"authorization": null, "token": KEY})
    );
}

/// A custom stack that lets handlers change metadata but has no PersistLayer: the changes cannot
/// be saved, and the first such request logs an error naming the missing layer (once).
// One thread: the subscriber set for this test sees the server tasks too.
#[tokio::test(flavor = "current_thread")]
async fn a_stack_without_a_save_stage_logs_an_error_naming_it() {
    let (captured, _guard) = Captured::start(tracing::Level::INFO);

    let store = MemoryStore::new();
    store.insert_key(KEY, json!({})).unwrap();
    let routes = counting_routes().route("/read", get(|| async { "read" }));
    let no_save = routes
        .clone()
        .layer(ServiceBuilder::new().layer(SessionLoadLayer::new(store.clone())));
    let client = Client::new(spawn(no_save).await);
    assert_eq!(client.get("/read", &[AUTH]).await.status, 200);
    assert!(
        !captured.text().contains("PersistLayer"),
        "a read changes nothing: nothing to report"
    );
    assert_eq!(client.post("/count", &[AUTH]).await.status, 200);
    assert_eq!(client.post("/count", &[AUTH]).await.status, 200);
    let logs = captured.text();
    assert_eq!(
        logs.matches("no PersistLayer saved it").count(),
        1,
        "one error, at the first request:\n{logs}"
    );
    assert!(logs.contains("ERROR"), "logged as an error:\n{logs}");
    assert!(!logs.contains(KEY), "no raw key in the log:\n{logs}");

    // With the save stage, nothing is reported.
    let captured_before = captured.text().len();
    let saved = routes.layer(
        ServiceBuilder::new()
            .layer(SessionLoadLayer::new(store.clone()))
            .layer(PersistLayer::new(store)),
    );
    let client = Client::new(spawn(saved).await);
    assert_eq!(client.post("/count", &[AUTH]).await.text(), "1");
    assert_eq!(client.post("/count", &[AUTH]).await.text(), "2");
    assert!(!captured.text()[captured_before..].contains("PersistLayer"));
}

#[tokio::test]
async fn a_key_header_with_non_ascii_bytes_is_a_bad_credential_not_a_missing_one() {
    let addr = spawn(Keycard::new(MemoryStore::new()).wrap(counting_routes())).await;
    // Written by hand: HTTP clients refuse to send such a header, a hostile client does not.
    let mut request =
        b"POST /count HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: Bearer caf"
            .to_vec();
    request.extend_from_slice(b"\xc3\xa9-key\r\ncontent-length: 0\r\n\r\n");
    let response = raw_request(addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.ends_with(r#"{"error":"Access to this API has been disallowed"}"#),
        "{response}"
    );
    let response = Client::new(addr).post("/count", &[]).await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json(),
        json!({"error": "Authorization field missing"})
    );
}

/// `X-Forwarded-For` is client-controlled at its left end: with one trusted proxy the client is
/// the last entry, whatever the client prepended; with `Ignore` it is the peer address.
#[tokio::test]
async fn the_client_address_is_counted_from_the_right() {
    let routes = Router::new().route(
        "/ip",
        get(
            |headers: HeaderMap| async move { headers["x-client-ip"].to_str().unwrap().to_owned() },
        ),
    );
    let store = MemoryStore::new();
    store.insert_key(KEY, json!({})).unwrap();
    let headers = || {
        InjectHeadersLayer::request()
            .set("x-client-ip", "$tyk_context.remote_addr")
            .build()
            .unwrap()
    };
    let one_proxy = Keycard::new(store.clone())
        .forwarded_for(ForwardedFor::Proxies(1))
        .request_headers(headers());
    let client = Client::new(spawn(one_proxy.wrap(routes.clone())).await);
    let spoofed = [AUTH, ("x-forwarded-for", "6.6.6.6, 203.0.113.9")];
    assert_eq!(client.get("/ip", &spoofed).await.text(), "203.0.113.9");
    let ignoring = Keycard::new(store)
        .forwarded_for(ForwardedFor::Ignore)
        .request_headers(headers());
    let client = Client::new(spawn(ignoring.wrap(routes)).await);
    assert_eq!(client.get("/ip", &spoofed).await.text(), "127.0.0.1");
}
