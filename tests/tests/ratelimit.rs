//! The rate-limit stage over real HTTP: exactly N of 1000 concurrent requests pass, for a rate
//! (sliding window and GCRA) and for a quota (memory, two instances on one Redis, a Redis
//! cluster), `rate_limit_pattern` buckets per organisation and its per-key fallback, Tyk's 429
//! and 403, the window sliding and the quota renewing on Redis' clock, quotas surviving a
//! restart, the admin API's live `quota_remaining` and reset, and Redis going away mid-run
//! (503 JSON) and coming back within 2 s.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use keycard::prelude::*;
use keycard::ratelimit::{Algorithm, RateLimitHeaders, RateLimiter};
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

/// A session for `key` with a quota of `max` requests per `renewal` seconds and no rate.
fn quota_session(key: &str, max: i64, renewal: i64) -> SessionRecord {
    let mut record = SessionRecord::for_key(key);
    (record.quota_max, record.quota_renewal_rate) = (max, renewal);
    record
}

/// An instance: the stack over `store` with `limiter`, served on loopback.
async fn instance(store: impl SessionStore, limiter: impl RateLimiter) -> Client {
    let keycard = Keycard::new(store).rate_limit(RateLimitLayer::new(limiter));
    Client::new(spawn(keycard.wrap(routes())).await)
}

/// Sends `n` concurrent `GET /` with `key`, spread over `clients`; returns how many passed.
/// Every answer must be 200, 429 or 403; the whole run is bounded in time.
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
        assert!(
            [200, 429, 403].contains(&status),
            "unexpected status {status}"
        );
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
async fn exactly_100_of_1000_concurrent_requests_pass_a_quota_and_a_gcra_rate_on_memory() {
    let store = MemoryStore::new();
    store
        .create(quota_session("q-mem", 100, 3600))
        .await
        .unwrap();
    store
        .create(session("gcra-mem", 100.0, 3600.0, json!({})))
        .await
        .unwrap();
    let client = instance(store.clone(), MemoryRateLimiter::new()).await;
    assert_eq!(concurrent_gets(&[client], "q-mem", 1000).await, 100);
    let gcra = MemoryRateLimiter::new().algorithm(Algorithm::Gcra);
    let client = instance(store, gcra).await;
    assert_eq!(concurrent_gets(&[client], "gcra-mem", 1000).await, 100);
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

    // The same for a quota, and for a GCRA rate.
    a.create(quota_session("q-redis", 100, 3600)).await.unwrap();
    assert_eq!(concurrent_gets(&clients, "q-redis", 1000).await, 100);
    a.create(session("gcra-redis", 100.0, 3600.0, json!({})))
        .await
        .unwrap();
    let gcra = [
        instance(
            a.clone(),
            RedisRateLimiter::new(&a).algorithm(Algorithm::Gcra),
        )
        .await,
        instance(
            b.clone(),
            RedisRateLimiter::new(&b).algorithm(Algorithm::Gcra),
        )
        .await,
    ];
    assert_eq!(concurrent_gets(&gcra, "gcra-redis", 1000).await, 100);
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
    a.create(quota_session("q-cluster", 100, 3600))
        .await
        .unwrap();
    assert_eq!(concurrent_gets(&clients, "q-cluster", 1000).await, 100);
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
    // Tyk's `rate_limits` header mode: the rate's headers, on the 429 too.
    let layer = RateLimitLayer::new(MemoryRateLimiter::new()).headers(RateLimitHeaders::RateLimits);
    let client = Client::new(spawn(Keycard::new(store).rate_limit(layer).wrap(routes())).await);
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

/// What [`hammer`] saw: when, the status, the body of a refusal.
type Seen = Vec<(std::time::Instant, u16, Value)>;

/// Requests from a background task, one after another, until told to stop (or 60 s): every
/// status seen, with when it was seen.
fn hammer(
    client: Client,
    key: &str,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Seen>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let header = auth(key);
    let task = tokio::spawn(async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while !*stopped.borrow_and_update() && std::time::Instant::now() < deadline {
            let response = client.get("/", &[("authorization", &header)]).await;
            let body = if response.status == 200 {
                Value::Null
            } else {
                response.json()
            };
            seen.push((std::time::Instant::now(), response.status.as_u16(), body));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_is_503_json_and_limits_again_within_2_s_of_its_return() {
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
    let mut record = session("rl-down", 1_000_000.0, 60.0, json!({}));
    (record.quota_max, record.quota_renewal_rate) = (1_000_000, 3600);
    sessions.create(record).await.unwrap();
    let client = instance(sessions, RedisRateLimiter::new(&limiter_store)).await;

    let (stop, run) = hammer(client, "rl-down");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    server.restart();
    let back_at = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.send(true).unwrap();
    let seen = run.await.unwrap();

    assert_eq!(
        seen.first().map(|s| s.1),
        Some(200),
        "limits while Redis is up"
    );
    let mut saw_503 = false;
    for (_, status, body) in &seen {
        assert!([200, 503].contains(status), "unexpected {status} {body}");
        if *status == 503 {
            assert_eq!(body, &json!({"error": "Rate limiter unavailable"}));
            saw_503 = true;
        }
    }
    assert!(saw_503, "Redis was down for a second: some request saw it");
    let first_ok = seen
        .iter()
        .find(|(at, status, _)| *at > back_at && *status == 200)
        .map(|(at, ..)| at.duration_since(back_at))
        .expect("a request passed after Redis returned");
    assert!(
        first_ok <= Duration::from_secs(2),
        "back {first_ok:?} after Redis returned"
    );
    let last_503 = seen.iter().rposition(|s| s.1 == 503).unwrap();
    assert!(
        seen[last_503 + 1..].iter().all(|s| s.1 == 200),
        "once back, it stays back"
    );
}

/// A store and a limiter on the shared Redis under a fresh prefix.
async fn redis_store(test: &str) -> RedisStore {
    connect(
        RedisStore::url(&redis_url())
            .unwrap()
            .prefix(unique_prefix(test)),
    )
    .await
}

#[tokio::test]
async fn quota_is_tyk_403_renews_on_the_redis_clock_and_survives_a_restart() {
    let store = redis_store("ratelimit-quota").await;
    store.create(quota_session("q-renew", 2, 1)).await.unwrap();
    let client = instance(store.clone(), RedisRateLimiter::new(&store)).await;
    let header = auth("q-renew");
    let first = client.get("/", &[("authorization", &header)]).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["x-ratelimit-limit"], "2", "Tyk's quotas mode");
    assert_eq!(first.headers["x-ratelimit-remaining"], "1");
    assert_eq!(
        client.get("/", &[("authorization", &header)]).await.status,
        200
    );
    let refused = client.get("/", &[("authorization", &header)]).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.json(), json!({"error": "Quota exceeded"}));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(sequential_gets(&client, "q-renew", 3).await, 2, "renewed");

    // A quota that never renews, counted by one instance, then by a new one (a restart).
    store
        .create(quota_session("q-restart", 5, 0))
        .await
        .unwrap();
    assert_eq!(sequential_gets(&client, "q-restart", 3).await, 3);
    drop(client);
    let again = connect(
        RedisStore::url(&redis_url())
            .unwrap()
            .prefix(store.prefix()),
    )
    .await;
    let client = instance(again.clone(), RedisRateLimiter::new(&again)).await;
    assert_eq!(
        sequential_gets(&client, "q-restart", 5).await,
        2,
        "the count lives in Redis, not in the process"
    );
}

#[tokio::test]
async fn admin_api_shows_the_live_quota_and_resets_it() {
    const SECRET: &str = "a-tyk-secret-of-enough-length";
    let store = redis_store("ratelimit-admin").await;
    let keycard =
        Keycard::new(store.clone()).rate_limit(RateLimitLayer::new(RedisRateLimiter::new(&store)));
    let admin = keycard.admin_api().tyk_secret(SECRET).build().unwrap();
    let admin = Client::new(spawn(admin.into_router()).await);
    let client = Client::new(spawn(keycard.wrap(routes())).await);
    let tyk = [
        ("x-tyk-authorization", SECRET),
        ("content-type", "application/json"),
    ];
    let (admin, tyk) = (&admin, &tyk);
    let admin_call = |method: http::Method, path: &str, body: &str| {
        let body = (!body.is_empty()).then(|| bytes::Bytes::from(body.to_owned()));
        let path = path.to_owned();
        async move { admin.send(method, &path, tyk, body).await }
    };

    let key = "quota-admin-key-0001";
    let created = admin_call(
        http::Method::POST,
        &format!("/tyk/keys/{key}"),
        r#"{"quota_max": 10, "quota_renewal_rate": 3600, "quota_remaining": 10}"#,
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(sequential_gets(&client, key, 3).await, 3);

    let shown = admin_call(http::Method::GET, &format!("/tyk/keys/{key}"), "").await;
    assert_eq!(
        shown.json()["quota_remaining"],
        7,
        "live, not the stored 10"
    );
    let renews = shown.json()["quota_renews"].as_i64().unwrap();
    let now = keycard::session::unix_now();
    assert!(
        (now + 3590..=now + 3601).contains(&renews),
        "renews {renews}"
    );

    // A write with suppress_reset=1 keeps the count; one without resets it (Tyk).
    let body = r#"{"quota_max": 10, "quota_renewal_rate": 3600, "meta_data": {"a": 1}}"#;
    let put = admin_call(
        http::Method::PUT,
        &format!("/tyk/keys/{key}?suppress_reset=1"),
        body,
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.text());
    let shown = admin_call(http::Method::GET, &format!("/tyk/keys/{key}"), "").await;
    assert_eq!(shown.json()["quota_remaining"], 7);
    let put = admin_call(http::Method::PUT, &format!("/tyk/keys/{key}"), body).await;
    assert_eq!(put.status, 200);
    let shown = admin_call(http::Method::GET, &format!("/tyk/keys/{key}"), "").await;
    assert_eq!(shown.json()["quota_remaining"], 10);

    // The reset endpoint.
    assert_eq!(sequential_gets(&client, key, 10).await, 10);
    assert_eq!(sequential_gets(&client, key, 1).await, 0);
    let reset = admin_call(http::Method::POST, &format!("/tyk/keys/reset/{key}"), "").await;
    assert_eq!(reset.status, 200, "{}", reset.text());
    assert_eq!(reset.json()["action"], "reset");
    assert_eq!(reset.json()["status"], "ok");
    assert_eq!(
        sequential_gets(&client, key, 11).await,
        10,
        "a full quota again"
    );
    let missing = admin_call(http::Method::POST, "/tyk/keys/reset/no-such-key-here", "").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.json(),
        json!({"status": "error", "message": "Key not found"})
    );
}

#[tokio::test]
async fn a_pattern_bucket_shares_one_quota_and_its_reset() {
    const SECRET: &str = "a-tyk-secret-of-enough-length";
    let store = redis_store("ratelimit-org-quota").await;
    let keycard =
        Keycard::new(store.clone()).rate_limit(RateLimitLayer::new(RedisRateLimiter::new(&store)));
    for key in ["org-quota-a", "org-quota-b"] {
        let mut record = quota_session(key, 4, 3600)
            .metadata(json!({"org_id": "o1", "rate_limit_pattern": "$tyk_meta.org_id"}));
        record.quota_remaining = 4;
        store.create(record).await.unwrap();
    }
    let client = Client::new(spawn(keycard.wrap(routes())).await);
    assert_eq!(sequential_gets(&client, "org-quota-a", 3).await, 3);
    assert_eq!(
        sequential_gets(&client, "org-quota-b", 3).await,
        1,
        "one org, one quota"
    );
    let admin = keycard.admin_api().tyk_secret(SECRET).build().unwrap();
    let admin = Client::new(spawn(admin.into_router()).await);
    let tyk = [("x-tyk-authorization", SECRET)];
    let reset = admin.post("/tyk/keys/reset/org-quota-a", &tyk).await;
    assert_eq!(reset.status, 200, "{}", reset.text());
    assert_eq!(
        sequential_gets(&client, "org-quota-b", 5).await,
        4,
        "the org's quota reset"
    );
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
    let keycard = Keycard::new(store).after_load(guard).rate_limit(
        RateLimitLayer::new(MemoryRateLimiter::new()).headers(RateLimitHeaders::RateLimits),
    );
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

#[tokio::test]
async fn redis_gcra_refills_one_request_per_interval_and_absurd_rates_stay_exact() {
    use keycard::ratelimit::{Limit, Limits};
    let store = redis_store("ratelimit-gcra").await;
    let limiter = RedisRateLimiter::new(&store).algorithm(Algorithm::Gcra);
    let limits = Limits::rate(Limit::new(2, Duration::from_millis(1000)));
    assert!(limiter.check("k:gcra", limits).await.unwrap().allowed());
    assert!(limiter.check("k:gcra", limits).await.unwrap().allowed());
    let refused = limiter.check("k:gcra", limits).await.unwrap();
    assert!(!refused.allowed());
    let wait = refused.rate.unwrap().reset_after;
    assert!(
        wait <= Duration::from_millis(500),
        "one token every 500 ms, {wait:?}"
    );
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    assert!(
        limiter.check("k:gcra", limits).await.unwrap().allowed(),
        "a token back"
    );
    assert!(!limiter.check("k:gcra", limits).await.unwrap().allowed());

    // A rate past 2^53 saturates instead of wrapping in the script; GCRA counts in whole
    // microseconds, so it admits at most one request per µs (10^6 a second).
    let absurd = Limits::rate(Limit::from_tyk(1e30, 1.0).unwrap());
    for (limiter, remaining) in [(RedisRateLimiter::new(&store), 1 << 53), (limiter, 999_999)] {
        let decision = limiter.check("k:absurd", absurd).await.unwrap();
        assert!(decision.allowed());
        assert_eq!(decision.rate.unwrap().remaining, remaining);
    }
}

/// `CLIENT TRACKINGINFO` of a client's connection: its flags (`["off"]` when not tracking).
async fn tracking_flags(client: &keycard::redis::fred::clients::Client) -> Vec<String> {
    use keycard::redis::fred::interfaces::ClientLike;
    use keycard::redis::fred::types::{ClusterHash, CustomCommand, Value as RedisValue};
    let command = CustomCommand::new_static("CLIENT", ClusterHash::FirstKey, false);
    let info: RedisValue = client.custom(command, vec!["TRACKINGINFO"]).await.unwrap();
    let fields: Vec<RedisValue> = info.into_array();
    let at = fields
        .iter()
        .position(|v| v.as_str().as_deref() == Some("flags"))
        .expect("TRACKINGINFO has flags");
    fields[at + 1]
        .clone()
        .into_array()
        .into_iter()
        .filter_map(|v| v.as_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cached_store_the_limiter_has_an_untracked_connection_of_its_own() {
    use keycard::redis::CacheConfig;
    let prefix = unique_prefix("ratelimit-cached");
    let store = connect(
        RedisStore::url(&redis_url())
            .unwrap()
            .prefix(&prefix)
            .cache(CacheConfig::default()),
    )
    .await;
    assert!(
        tracking_flags(store.client())
            .await
            .contains(&"on".to_owned())
    );
    let limiter = RedisRateLimiter::connect(&store).await.unwrap();
    assert_eq!(tracking_flags(limiter.client()).await, ["off"]);
    assert_eq!(limiter.bucket_key("b"), format!("{prefix}:{{r:b}}"));

    store
        .create(session("rl-cached", 100.0, 60.0, json!({})))
        .await
        .unwrap();
    let client = instance(store.clone(), limiter).await;
    assert_eq!(concurrent_gets(&[client], "rl-cached", 300).await, 100);
    let plain = connect(RedisStore::url(&redis_url()).unwrap().prefix(&prefix)).await;
    let shared = RedisRateLimiter::connect(&plain).await.unwrap();
    assert_eq!(
        tracking_flags(shared.client()).await,
        ["off"],
        "no cache: the store's own connection"
    );
}
