//! keycard's stacks on RedisStore over real HTTP: concurrent metadata writes, an outage and its
//! recovery, and admin changes seen by the next request through the cache.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::post;
use keycard::prelude::{ApiKey, KeyId, SessionStore};
use keycard::redis::{CacheConfig, RedisStore};
use keycard::session::Session;
use keycard::session::SessionRecord;
use keycard_examples::{admin, quickstart, redis_store};
use keycard_tests::http::{Client, spawn};
use keycard_tests::redis_support::{
    RedisCluster, RedisServer, connect, redis_url, shared_store, unique_prefix,
};
use serde_json::json;

const KEY: &str = "redis-http-key";
const AUTH: (&str, &str) = ("authorization", "Bearer redis-http-key");

async fn seed(store: &RedisStore) {
    let session = SessionRecord::for_key(KEY).metadata(quickstart::demo_metadata());
    store.create(session).await.expect("seed the session");
}

/// 1000 concurrent HTTP requests on one session, each setting a distinct key; all must land.
async fn thousand_concurrent_writes(store: RedisStore) {
    seed(&store).await;
    let routes = axum::Router::new().route(
        "/set/{key}",
        post(|session: Session, Path(key): Path<String>| async move {
            session.set(key, json!("v")).unwrap();
        }),
    );
    let client = Client::new(spawn(quickstart::wrap(routes, store.clone()).unwrap()).await);
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.post(&format!("/set/k{i}"), &[AUTH]).await.status })
        })
        .collect();
    let statuses = tokio::time::timeout(Duration::from_secs(120), async {
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.expect("request task"));
        }
        out
    })
    .await
    .expect("1000 requests finish within 120 s");
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} requests failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );

    let stored = store
        .load(&KeyId::of(&ApiKey::new(KEY)))
        .await
        .unwrap()
        .unwrap();
    let present = (0..1000)
        .filter(|i| stored.meta_data.contains_key(&format!("k{i}")))
        .count();
    assert_eq!(present, 1000);
    assert_eq!(stored.meta_data["user_id"], "u-demo");
    assert_eq!(stored.version, 1001, "one save per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_http_writes_land_in_redis_standalone() {
    // A generous command timeout: 1000 scripts queue on one connection in a debug build.
    let store = connect(shared_store("http-1000").command_timeout(Duration::from_secs(10))).await;
    thousand_concurrent_writes(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_http_writes_land_in_a_redis_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let store = connect(
        RedisStore::cluster(cluster.hosts())
            .prefix(unique_prefix("http-1000-cluster"))
            .command_timeout(Duration::from_secs(10)),
    )
    .await;
    thousand_concurrent_writes(store).await;
    drop(cluster);
}

/// Polls `GET /whoami` until it answers `status`, within `limit`; returns how long it took.
async fn until_status(client: &Client, status: u16, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let response = client.get("/whoami", &[AUTH]).await;
        if response.status == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "no {status} within {limit:?}; last {} {}",
            response.status,
            response.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_503_within_the_timeout_and_recovers_without_a_restart() {
    // Persistence on, so the session survives the server's restart.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let timeout = Duration::from_millis(500);
    let store = connect(
        RedisStore::url(&server.url())
            .unwrap()
            .prefix(unique_prefix("outage"))
            .command_timeout(timeout),
    )
    .await;
    seed(&store).await;
    let client = Client::new(spawn(quickstart::app(store).unwrap()).await);
    assert_eq!(client.get("/whoami", &[AUTH]).await.status, 200);

    // Hung: the process is frozen, connections stay open.
    server.pause();
    let started = Instant::now();
    let response = client.get("/whoami", &[AUTH]).await;
    let hung = started.elapsed();
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({"error": "Session store unavailable"})
    );
    eprintln!("hung Redis: 503 after {hung:?} (command timeout {timeout:?})");
    assert!(
        hung <= timeout + Duration::from_millis(700),
        "503 took {hung:?}"
    );
    server.resume();
    let back = until_status(&client, 200, Duration::from_secs(2)).await;
    eprintln!("resumed Redis: 200 again after {back:?}");

    // Dead: the process is killed, then started again on the same port.
    server.kill();
    let started = Instant::now();
    let response = client.get("/whoami", &[AUTH]).await;
    let dead = started.elapsed();
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({"error": "Session store unavailable"})
    );
    eprintln!("dead Redis: 503 after {dead:?}");
    assert!(
        dead <= timeout + Duration::from_millis(700),
        "503 took {dead:?}"
    );
    server.restart();
    let back = until_status(&client, 200, Duration::from_secs(2)).await;
    eprintln!("restarted Redis: 200 again after {back:?}");
    assert_eq!(
        client.get("/whoami", &[AUTH]).await.json()["user_id"],
        "u-demo"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_store_serves_a_frozen_redis_from_cache_then_answers_503() {
    // Cache hits send nothing to Redis; the store's heartbeat notices the frozen server (within
    // about 1 s + the command timeout) and stops the cache, so requests answer 503 like an
    // uncached store instead of serving possibly revoked sessions for the whole TTL.
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let store = connect(
        RedisStore::url(&server.url())
            .unwrap()
            .prefix(unique_prefix("outage-cached"))
            .command_timeout(timeout)
            .cache(CacheConfig::default()),
    )
    .await;
    seed(&store).await;
    let client = Client::new(spawn(quickstart::app(store).unwrap()).await);
    assert_eq!(client.get("/whoami", &[AUTH]).await.status, 200);
    server.pause();
    let took = until_status(&client, 503, Duration::from_secs(3)).await;
    eprintln!("cached store, frozen Redis: 503 after {took:?}");
    let body = client.get("/whoami", &[AUTH]).await;
    assert_eq!(body.json(), json!({"error": "Session store unavailable"}));
    server.resume();
    let back = until_status(&client, 200, Duration::from_secs(2)).await;
    eprintln!("cached store, resumed Redis: 200 again after {back:?}");
}

#[tokio::test]
async fn admin_patch_is_seen_by_the_next_request_through_the_redis_cache() {
    let prefix = unique_prefix("admin-redis");
    let store = redis_store::demo_store(&redis_url(), &prefix, KEY)
        .await
        .unwrap();
    assert!(store.has_cache());
    let demo = admin::build(store, "tyk-secret-for-redis", "admin-token-for-redis").unwrap();
    let app = Client::new(spawn(demo.app).await);
    let admin = Client::new(spawn(demo.admin).await);
    let hash = KeyId::of(&ApiKey::new(KEY)).to_string();

    // Warm the cache, then change the session through the admin API.
    assert_eq!(
        app.get("/echo", &[AUTH]).await.json()["x-user-id"],
        "u-demo"
    );
    let patch = json!({"session_metadata": {"user_id": "u-patched", "tenant_id": "t2"}});
    let response = admin
        .send(
            http::Method::PATCH,
            &format!("/api/v2/sessions/{hash}"),
            &[
                ("authorization", "Bearer admin-token-for-redis"),
                ("content-type", "application/json"),
            ],
            Some(patch.to_string().into()),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = app.get("/echo", &[AUTH]).await.json();
    assert_eq!(
        (&seen["x-user-id"], &seen["x-tenant-id"]),
        (&json!("u-patched"), &json!("t2"))
    );

    let response = admin
        .send(
            http::Method::DELETE,
            &format!("/api/v2/sessions/{hash}"),
            &[("authorization", "Bearer admin-token-for-redis")],
            None,
        )
        .await;
    assert_eq!(response.status, 202);
    assert_eq!(app.get("/echo", &[AUTH]).await.status, 403);
}

#[tokio::test]
async fn a_change_through_one_cached_node_is_seen_by_another_within_50ms() {
    let prefix = unique_prefix("two-nodes");
    let node_a = redis_store::demo_store(&redis_url(), &prefix, KEY)
        .await
        .unwrap();
    let node_b = redis_store::demo_store(&redis_url(), &prefix, KEY)
        .await
        .unwrap();
    let a = Client::new(spawn(quickstart::app(node_a).unwrap()).await);
    let b = Client::new(spawn(quickstart::app(node_b).unwrap()).await);
    assert!(
        b.get("/whoami", &[AUTH])
            .await
            .json()
            .get("visits")
            .is_none()
    ); // B's cache is warm

    assert_eq!(
        a.post("/visits", &[AUTH]).await.json(),
        json!({"visits": 1})
    );
    let started = Instant::now();
    loop {
        if b.get("/whoami", &[AUTH]).await.json()["visits"] == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "node B still stale after 50 ms"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!("node B saw node A's write after {:?}", started.elapsed());
}
