//! The rate-limit stage over real HTTP: exactly N of 1000 concurrent requests pass (memory, two
//! instances on one Redis, a Redis cluster), `rate_limit_pattern` buckets per organisation and
//! its per-key fallback, Tyk's 429, the window sliding on Redis' clock, and Redis going away
//! (503 JSON) and coming back.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use keycard::prelude::*;
use keycard::ratelimit::RateLimiter;
use keycard::redis::{RedisRateLimiter, RedisStore};
use keycard_tests::http::{Client, spawn};
use keycard_tests::redis_support::{RedisCluster, RedisServer, connect, redis_url, unique_prefix};
use serde_json::{Value, json};

fn routes() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn auth(key: &str) -> String {
    format!("Bearer {key}")
}

/// A session for `key` allowing `rate` requests per `per` seconds, with metadata `meta`.
fn session(key: &str, rate: f64, per: f64, meta: Value) -> SessionRecord {
    let mut record = SessionRecord::for_key(key).metadata(meta);
    (record.rate, record.per) = (rate, per);
    record
}

/// An instance: the stack over `store` with `limiter`, served on loopback.
async fn instance(store: impl SessionStore, limiter: impl RateLimiter) -> Client {
    let keycard = Keycard::new(store).rate_limit(RateLimitLayer::new(limiter));
    Client::new(spawn(keycard.wrap(routes())).await)
}

/// Sends `n` concurrent `GET /` with `key`, spread over `clients`; returns how many passed.
/// Every answer must be 200 or 429; the whole run is bounded in time.
async fn concurrent_gets(clients: &[Client], key: &str, n: usize) -> usize {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = clients[i % clients.len()].clone();
        let value = auth(key);
        tasks.spawn(async move { client.get("/", &[("authorization", &value)]).await.status });
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (mut passed, mut done) = (0, 0);
    while let Some(status) = tokio::time::timeout_at(deadline, tasks.join_next())
        .await
        .expect("the requests finish within 120 s")
    {
        let status = status.unwrap().as_u16();
        assert!(status == 200 || status == 429, "unexpected status {status}");
        passed += usize::from(status == 200);
        done += 1;
    }
    assert_eq!(done, n);
    passed
}

async fn sequential_gets(client: &Client, key: &str, n: usize) -> usize {
    let mut passed = 0;
    for _ in 0..n {
        let status = client
            .get("/", &[("authorization", &auth(key))])
            .await
            .status;
        passed += usize::from(status == 200);
    }
    passed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_100_of_1000_concurrent_requests_pass_on_memory() {
    let store = MemoryStore::new();
    store
        .create(session("rl-mem", 100.0, 60.0, json!({})))
        .await
        .unwrap();
    let client = instance(store, MemoryRateLimiter::new()).await;
    assert_eq!(concurrent_gets(&[client], "rl-mem", 1000).await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_100_of_1000_concurrent_requests_pass_across_two_instances_on_redis() {
    let prefix = unique_prefix("ratelimit-two");
    let a = connect(RedisStore::url(&redis_url()).unwrap().prefix(&prefix)).await;
    let b = connect(RedisStore::url(&redis_url()).unwrap().prefix(&prefix)).await;
    a.create(session("rl-redis", 100.0, 60.0, json!({})))
        .await
        .unwrap();
    let clients = [
        instance(a.clone(), RedisRateLimiter::new(&a)).await,
        instance(b.clone(), RedisRateLimiter::new(&b)).await,
    ];
    assert_eq!(concurrent_gets(&clients, "rl-redis", 1000).await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_100_of_1000_concurrent_requests_pass_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let prefix = unique_prefix("ratelimit-cluster");
    let node = || {
        RedisStore::cluster(cluster.hosts())
            .prefix(&prefix)
            .command_timeout(Duration::from_secs(10))
    };
    let (a, b) = (connect(node()).await, connect(node()).await);
    a.create(session("rl-cluster", 100.0, 60.0, json!({})))
        .await
        .unwrap();
    let clients = [
        instance(a.clone(), RedisRateLimiter::new(&a)).await,
        instance(b.clone(), RedisRateLimiter::new(&b)).await,
    ];
    assert_eq!(concurrent_gets(&clients, "rl-cluster", 1000).await, 100);
    drop(cluster);
}

#[tokio::test]
async fn rate_limit_pattern_puts_one_org_in_one_bucket_and_another_org_in_another() {
    let org = |id: &str| json!({"org_id": id, "rate_limit_pattern": "$tyk_meta.org_id"});
    let store = MemoryStore::new();
    for (key, id) in [
        ("org1-a", "org-1"),
        ("org1-b", "org-1"),
        ("org2-a", "org-2"),
    ] {
        store
            .create(session(key, 4.0, 60.0, org(id)))
            .await
            .unwrap();
    }
    let client = instance(store, MemoryRateLimiter::new()).await;
    assert_eq!(sequential_gets(&client, "org1-a", 3).await, 3);
    assert_eq!(
        sequential_gets(&client, "org1-b", 3).await,
        1,
        "org-1 shares one bucket"
    );
    assert_eq!(
        sequential_gets(&client, "org2-a", 5).await,
        4,
        "org-2 has its own"
    );
}

#[tokio::test]
async fn pattern_with_every_variable_missing_falls_back_to_one_bucket_per_key() {
    let meta = json!({"rate_limit_pattern": "$tyk_meta.developer_id|$tyk_meta.plan_id"});
    let store = MemoryStore::new();
    for key in ["nopat-a", "nopat-b"] {
        store
            .create(session(key, 2.0, 60.0, meta.clone()))
            .await
            .unwrap();
    }
    let client = instance(store, MemoryRateLimiter::new()).await;
    assert_eq!(sequential_gets(&client, "nopat-a", 3).await, 2);
    assert_eq!(
        sequential_gets(&client, "nopat-b", 3).await,
        2,
        "no shared \"|\" bucket"
    );
}

#[tokio::test]
async fn refused_request_is_tyk_429_with_retry_after_and_rate_limit_headers() {
    let store = MemoryStore::new();
    store
        .create(session("rl-429", 1.0, 30.0, json!({})))
        .await
        .unwrap();
    let client = instance(store, MemoryRateLimiter::new()).await;
    let header = auth("rl-429");
    let first = client.get("/", &[("authorization", &header)]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["x-ratelimit-limit"], "1");
    assert_eq!(first.headers["x-ratelimit-remaining"], "0");

    let refused = client.get("/", &[("authorization", &header)]).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json(), json!({"error": "Rate Limit Exceeded"}));
    assert_eq!(refused.headers["content-type"], "application/json");
    assert_eq!(refused.headers["retry-after"], "30");
    assert_eq!(refused.headers["x-ratelimit-limit"], "1");
    assert_eq!(refused.headers["x-ratelimit-remaining"], "0");
    let reset: i64 = refused.headers["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let now = keycard::session::unix_now();
    assert!(
        (now + 29..=now + 31).contains(&reset),
        "reset {reset}, now {now}"
    );
}

#[tokio::test]
async fn redis_window_slides_on_the_server_clock() {
    let store = connect(
        RedisStore::url(&redis_url())
            .unwrap()
            .prefix(unique_prefix("ratelimit-slide")),
    )
    .await;
    store
        .create(session("rl-slide", 2.0, 0.5, json!({})))
        .await
        .unwrap();
    let client = instance(store.clone(), RedisRateLimiter::new(&store)).await;
    assert_eq!(sequential_gets(&client, "rl-slide", 3).await, 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sequential_gets(&client, "rl-slide", 3).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unavailable_is_503_json_and_limits_again_once_it_is_back() {
    let mut server = RedisServer::start();
    let limiter_store = connect(
        RedisStore::url(&server.url())
            .unwrap()
            .prefix(unique_prefix("ratelimit-down"))
            .command_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(300)),
    )
    .await;
    let sessions = MemoryStore::new();
    sessions
        .create(session("rl-down", 100.0, 60.0, json!({})))
        .await
        .unwrap();
    let client = instance(sessions, RedisRateLimiter::new(&limiter_store)).await;
    let header = auth("rl-down");
    assert_eq!(
        client.get("/", &[("authorization", &header)]).await.status,
        200
    );

    server.kill();
    let down = client.get("/", &[("authorization", &header)]).await;
    assert_eq!(down.status, 503);
    assert_eq!(down.json(), json!({"error": "Rate limiter unavailable"}));

    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let back = loop {
        let status = client.get("/", &[("authorization", &header)]).await.status;
        if status == 200 || std::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(back, 200, "limits again within 5 s of Redis returning");
}

#[tokio::test]
async fn rate_limit_runs_before_an_after_load_guard_and_both_stay() {
    let store = MemoryStore::new();
    store
        .create(session("rl-guard", 1.0, 60.0, json!({})))
        .await
        .unwrap();
    let guard = axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            let mut response = next.run(request).await;
            let seen = http::HeaderValue::from_static("seen");
            response.headers_mut().insert("x-guard", seen);
            response
        },
    );
    let keycard = Keycard::new(store)
        .after_load(guard)
        .rate_limit(RateLimitLayer::new(MemoryRateLimiter::new()));
    let client = Client::new(spawn(keycard.wrap(routes())).await);
    let header = auth("rl-guard");
    let first = client.get("/", &[("authorization", &header)]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["x-guard"], "seen");
    assert_eq!(first.headers["x-ratelimit-limit"], "1");
    let refused = client.get("/", &[("authorization", &header)]).await;
    assert_eq!(refused.status, 429);
    assert!(
        refused.headers.get("x-guard").is_none(),
        "refused before the guard"
    );
}
