//! RedisStore beyond the conformance suite: cache staleness across nodes, corrupt data, a dead
//! or hung server, a cluster failover, writes waiting for replicas, and per-user delete.

use std::time::{Duration, Instant};

use keycard_core::key::KeyId;
use keycard_core::session::SessionRecord;
use keycard_core::store::{SessionStore, StoreError};
use keycard_redis::fred::interfaces::HashesInterface;
use keycard_redis::{CacheConfig, RedisStore};
use keycard_tests::redis_support::{
    RedisCluster, RedisServer, connect, key_id as id, set_one as set, shared_store, unique_prefix,
};
use serde_json::json;

#[tokio::test]
async fn cached_node_sees_another_nodes_write_within_50ms() {
    let prefix = unique_prefix("staleness");
    let node = |prefix: &str| {
        connect(
            RedisStore::url(&keycard_tests::redis_support::redis_url())
                .unwrap()
                .prefix(prefix)
                .cache(CacheConfig::default()),
        )
    };
    let (a, b) = (node(&prefix).await, node(&prefix).await);
    let key = id("staleness");
    a.create(SessionRecord::default().with_key_id(key.clone()))
        .await
        .unwrap();

    let mut worst = Duration::ZERO;
    let mut figures = Vec::new();
    for round in 0..20_i64 {
        // Warm B's cache and check it serves from it.
        assert!(b.load(&key).await.unwrap().is_some());
        assert!(b.is_cached(&key), "B did not cache the session");
        let written = a.apply(&key, &set("round", json!(round))).await.unwrap();
        assert!(written.is_some());
        let start = Instant::now();
        loop {
            let seen = b.load(&key).await.unwrap().unwrap();
            if seen.meta_data.get("round") == Some(&json!(round)) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "B still stale after 2 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let stale_for = start.elapsed();
        figures.push(stale_for);
        worst = worst.max(stale_for);
    }
    figures.sort();
    eprintln!(
        "staleness window over {} writes: median {:?}, worst {:?}",
        figures.len(),
        figures[figures.len() / 2],
        worst
    );
    assert!(worst <= Duration::from_millis(50), "stale for {worst:?}");

    // Delete through A: B stops serving the session too.
    a.delete(&key).await.unwrap().unwrap();
    let start = Instant::now();
    while b.load(&key).await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "deleted session still served by B"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::test]
async fn own_writes_invalidate_the_cache_at_once() {
    let store = connect(shared_store("own-writes").cache(CacheConfig::default())).await;
    let key = id("own-writes");
    store
        .create(SessionRecord::default().with_key_id(key.clone()))
        .await
        .unwrap();
    store.load(&key).await.unwrap().unwrap();
    assert!(store.is_cached(&key));
    store.apply(&key, &set("a", json!(1))).await.unwrap();
    assert!(!store.is_cached(&key));
    assert_eq!(store.load(&key).await.unwrap().unwrap().meta_data["a"], 1);
    let mut session = store.load(&key).await.unwrap().unwrap();
    session.alias = "x".into();
    store.replace(session).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap().unwrap().alias, "x");
    store.delete(&key).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), None);
}

#[tokio::test]
async fn cache_is_bounded() {
    let store =
        connect(shared_store("bounded").cache(CacheConfig::new(5, Duration::from_secs(10)))).await;
    for n in 0..20 {
        let key = id(&format!("bounded-{n}"));
        store
            .create(SessionRecord::default().with_key_id(key.clone()))
            .await
            .unwrap();
        store.load(&key).await.unwrap().unwrap();
    }
    let cached = (0..20)
        .filter(|n| store.is_cached(&id(&format!("bounded-{n}"))))
        .count();
    assert_eq!(cached, 5);
}

#[tokio::test]
async fn corrupt_session_json_is_reported_as_corrupt() {
    let store = connect(shared_store("corrupt")).await;
    let key = id("corrupt");
    store
        .create(SessionRecord::default().with_key_id(key.clone()))
        .await
        .unwrap();
    let redis_key = store.session_key(&key);
    let _: () = store
        .client()
        .hset(&redis_key, ("b", "{not json"))
        .await
        .unwrap();
    assert!(matches!(
        store.load(&key).await,
        Err(StoreError::Corrupt(_))
    ));
    let _: () = store
        .client()
        .hset(&redis_key, [("b", "{}"), ("m:bad", "[1,")])
        .await
        .unwrap();
    assert!(matches!(
        store.load(&key).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.apply(&key, &set("a", json!(1))).await,
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn invalid_configuration_is_refused_at_build_time() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let braces = RedisStore::url("redis://127.0.0.1:6379")
            .unwrap()
            .prefix("a{b}")
            .connect()
            .await;
        assert!(matches!(
            braces,
            Err(keycard_redis::ConnectError::Config(_))
        ));
        assert!(RedisStore::url("not a url").is_err());
    });
}

const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// Scheduling slack on a loaded 2-core machine.
const MARGIN: Duration = Duration::from_millis(400);

async fn assert_unavailable_in_time(store: &RedisStore, key: &KeyId, what: &str) {
    let start = Instant::now();
    let result = store.load(key).await;
    let took = start.elapsed();
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{what}: load gave {result:?}"
    );
    assert!(took <= COMMAND_TIMEOUT + MARGIN, "{what}: took {took:?}");
    eprintln!("{what}: Unavailable after {took:?}");
}

async fn assert_recovers_within_2s(store: &RedisStore, key: &KeyId, what: &str) {
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = store.load(key).await {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what}: no successful load 2 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("{what}: loads again after {:?}", start.elapsed());
}

#[tokio::test]
async fn hung_or_dead_redis_is_unavailable_within_the_timeout_and_recovers() {
    // AOF with fsync on every write keeps the session across the kill and restart.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = connect(
        RedisStore::url(&server.url())
            .unwrap()
            .prefix(unique_prefix("fault"))
            .command_timeout(COMMAND_TIMEOUT),
    )
    .await;
    let key = id("fault");
    store
        .create(SessionRecord::default().with_key_id(key.clone()))
        .await
        .unwrap();

    // Hung: the process is frozen, the socket stays open.
    server.pause();
    assert_unavailable_in_time(&store, &key, "hung").await;
    let start = Instant::now();
    let applied = store.apply(&key, &set("a", json!(1))).await;
    assert!(
        matches!(applied, Err(StoreError::Unavailable(_))),
        "{applied:?}"
    );
    assert!(start.elapsed() <= COMMAND_TIMEOUT + MARGIN);
    server.resume();
    assert_recovers_within_2s(&store, &key, "resumed").await;

    // Dead: killed (connection refused while it is down).
    server.kill();
    assert_unavailable_in_time(&store, &key, "dead").await;
    assert_unavailable_in_time(&store, &key, "still dead").await;
    server.restart();
    assert_recovers_within_2s(&store, &key, "restarted").await;

    // Hung, then killed while hung, then restarted.
    server.pause();
    assert_unavailable_in_time(&store, &key, "hung again").await;
    server.kill();
    server.restart();
    assert_recovers_within_2s(&store, &key, "restarted after hang").await;
    let applied = store
        .apply(&key, &set("b", json!(2)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(applied.meta_data["b"], 2);
}

/// Sets `during = round` on every session; records the round in `acked` for the writes that
/// returned `Ok`. Returns how many failed and the last error.
async fn write_round(
    store: &RedisStore,
    keys: &[KeyId],
    round: i64,
    acked: &mut [i64],
) -> (usize, Option<String>) {
    let mut failed = 0;
    let mut last_error = None;
    for (n, key) in keys.iter().enumerate() {
        match store.apply(key, &set("during", json!(round))).await {
            Ok(Some(_)) => acked[n] = round,
            Ok(None) => panic!("session {n} vanished"),
            Err(StoreError::Unavailable(e)) => {
                failed += 1;
                last_error = Some(e.to_string());
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    (failed, last_error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_keeps_acknowledged_writes() {
    let mut cluster = RedisCluster::start(3, 1);
    let store = connect(
        RedisStore::cluster(cluster.hosts())
            .prefix(unique_prefix("failover"))
            .min_replicas_ack(1),
    )
    .await;
    let keys: Vec<KeyId> = (0..30).map(|n| id(&format!("failover-{n}"))).collect();
    for key in &keys {
        store
            .create(SessionRecord::default().with_key_id(key.clone()))
            .await
            .unwrap();
        store
            .apply(key, &set("before", json!(key.short())))
            .await
            .unwrap()
            .unwrap();
    }

    // Kill the primary of the first session's slot.
    let slot = keycard_redis::fred::util::redis_keyslot(store.session_key(&keys[0]).as_bytes());
    let victim = cluster.primary_of_slot(slot);
    let victim_port = cluster.nodes[victim].port;
    let on_victim: Vec<usize> = (0..keys.len())
        .filter(|&n| {
            let slot =
                keycard_redis::fred::util::redis_keyslot(store.session_key(&keys[n]).as_bytes());
            cluster.primary_of_slot(slot) == victim
        })
        .collect();
    cluster.nodes[victim].kill();
    eprintln!(
        "killed primary on port {victim_port}; {} of {} sessions on its slots",
        on_victim.len(),
        keys.len()
    );

    // Keep writing through the failover; remember which writes were acknowledged. Until the
    // replica is promoted the victim's sessions are unavailable; after it, they load again, but
    // writes there cannot be acknowledged by a replica (the promoted node has none) until the old
    // primary rejoins as its replica.
    let start = Instant::now();
    let mut acked = vec![0_i64; keys.len()];
    let mut round = 0_i64;
    let mut loads_back = None;
    while loads_back.is_none() {
        round += 1;
        let (failed, error) = write_round(&store, &keys, round, &mut acked).await;
        let mut all_load = true;
        for n in &on_victim {
            all_load &= store.load(&keys[*n]).await.is_ok();
        }
        if all_load {
            loads_back = Some(start.elapsed());
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "sessions on the dead primary's slots still unavailable after 30 s \
             ({failed} writes failing, last error {error:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "sessions on the dead primary's slots load again {:?} after the kill",
        loads_back.unwrap()
    );

    cluster.nodes[victim].restart();
    let rejoined = Instant::now();
    loop {
        round += 1;
        let (failed, error) = write_round(&store, &keys, round, &mut acked).await;
        if failed == 0 {
            break;
        }
        assert!(
            rejoined.elapsed() < Duration::from_secs(30),
            "writes not acknowledged 30 s after the old primary came back \
             ({failed} failing, last error {error:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "every write acknowledged again {:?} after the old primary restarted",
        rejoined.elapsed()
    );

    for (n, key) in keys.iter().enumerate() {
        let session = store.load(key).await.unwrap().expect("session survived");
        assert_eq!(
            session.meta_data["before"],
            json!(key.short()),
            "session {n}"
        );
        // Rounds only grow: a later (perhaps unacknowledged) write may have overwritten an
        // acknowledged one, but never an older value.
        let during = session.meta_data["during"].as_i64().unwrap();
        assert!(
            during >= acked[n],
            "acknowledged write {} lost on session {n}",
            acked[n]
        );
    }
    let listed = store.list_keys(None, 100).await.unwrap();
    assert_eq!(listed.items.len(), keys.len());
    drop(cluster);
}

fn add(key: &str, by: i64) -> keycard_core::metadata::MetadataDelta {
    [keycard_core::metadata::MetadataChange::Increment {
        key: key.to_owned(),
        by,
    }]
    .into_iter()
    .collect()
}

fn cached(prefix: &str) -> keycard_redis::RedisStoreBuilder {
    RedisStore::url(&keycard_tests::redis_support::redis_url())
        .unwrap()
        .prefix(prefix)
        .cache(CacheConfig::default())
}

#[tokio::test]
async fn a_nodes_own_save_keeps_its_cache_entry_current() {
    let prefix = unique_prefix("write-through");
    let node = connect(cached(&prefix)).await;
    let plain = connect(
        RedisStore::url(&keycard_tests::redis_support::redis_url())
            .unwrap()
            .prefix(&prefix),
    )
    .await;
    let key = id("write-through");
    node.create(SessionRecord::default().with_key_id(key.clone()))
        .await
        .unwrap();
    let loaded = node.load(&key).await.unwrap().unwrap();
    assert!(node.is_cached(&key), "the load filled the cache");
    assert_eq!(loaded.version, 1);
    for round in 1..=20_i64 {
        let version = node
            .save_changes(&key, &set("round", json!(round)))
            .await
            .unwrap()
            .unwrap();
        // The entry moved with the write instead of being thrown away...
        assert!(
            node.is_cached(&key),
            "round {round}: the own write dropped the entry"
        );
        let seen = node.load(&key).await.unwrap().unwrap();
        // ...and is exactly what Redis holds.
        let stored = plain.load(&key).await.unwrap().unwrap();
        assert_eq!(seen.version, version);
        assert_eq!(seen, stored, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_a_foreign_writer_never_leaves_a_cached_node_stale() {
    let prefix = unique_prefix("write-race");
    let node = connect(cached(&prefix)).await;
    let foreign = connect(
        RedisStore::url(&keycard_tests::redis_support::redis_url())
            .unwrap()
            .prefix(&prefix),
    )
    .await;
    let key = id("write-race");
    node.create(SessionRecord::default().with_key_id(key.clone()))
        .await
        .unwrap();
    const ROUNDS: i64 = 300;
    let local = {
        let (node, key) = (node.clone(), key.clone());
        tokio::spawn(async move {
            let mut versions = Vec::new();
            for _ in 0..ROUNDS {
                versions.push(node.load(&key).await.unwrap().unwrap().version);
                node.save_changes(&key, &add("local", 1))
                    .await
                    .unwrap()
                    .unwrap();
            }
            versions
        })
    };
    let remote = {
        let (foreign, key) = (foreign.clone(), key.clone());
        tokio::spawn(async move {
            for _ in 0..ROUNDS {
                foreign
                    .save_changes(&key, &add("foreign", 1))
                    .await
                    .unwrap()
                    .unwrap();
            }
        })
    };
    let deadline = Duration::from_secs(60);
    let versions = tokio::time::timeout(deadline, local)
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(deadline, remote)
        .await
        .unwrap()
        .unwrap();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "the node's reads went back in time or missed its own write: {versions:?}"
    );
    // Within the invalidation delay, the node serves exactly what Redis holds.
    let stored = foreign.load(&key).await.unwrap().unwrap();
    assert_eq!(stored.meta_data["local"], json!(ROUNDS));
    assert_eq!(stored.meta_data["foreign"], json!(ROUNDS));
    let start = Instant::now();
    loop {
        let seen = node.load(&key).await.unwrap().unwrap();
        if seen == stored {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still stale after 1 s: {seen:?} vs {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_are_not_queued_behind_a_write_waiting_for_replicas() {
    // No replica at all: every acknowledged write waits the whole WAIT timeout (3/4 of the
    // command timeout) and then fails.
    let server = RedisServer::start();
    let prefix = unique_prefix("wait");
    let timeout = Duration::from_secs(2);
    let wait = timeout * 3 / 4;
    let plain = connect(RedisStore::url(&server.url()).unwrap().prefix(&prefix)).await;
    let acked = connect(
        RedisStore::url(&server.url())
            .unwrap()
            .prefix(&prefix)
            .command_timeout(timeout)
            .min_replicas_ack(1),
    )
    .await;
    let key = id("wait");
    plain
        .create(SessionRecord::default().with_key_id(key.clone()))
        .await
        .unwrap();

    let started = Instant::now();
    let write = tokio::spawn({
        let (acked, key) = (acked.clone(), key.clone());
        async move {
            let result = acked.apply(&key, &set("a", json!(1))).await;
            (result, started.elapsed())
        }
    });
    // Let the write reach its WAIT (its script is one round trip on loopback).
    tokio::time::sleep(Duration::from_millis(200)).await;
    for n in 0..5 {
        let load = Instant::now();
        let session = acked.load(&key).await.unwrap().expect("session");
        let took = load.elapsed();
        assert!(
            !write.is_finished(),
            "load {n}: the write finished before its WAIT timed out"
        );
        assert!(
            took < wait / 4,
            "load {n} took {took:?}: queued behind a WAIT of {wait:?}"
        );
        assert_eq!(session.meta_data["a"], 1, "the write itself happened");
    }
    let (result, took) = write.await.unwrap();
    match result {
        Err(StoreError::Unavailable(e)) => {
            assert!(e.to_string().contains("0 of 1 replicas"), "{e}")
        }
        other => panic!("a write no replica acknowledged gave {other:?}"),
    }
    assert!(
        took >= wait,
        "the write returned after {took:?}, before WAIT ended"
    );
    eprintln!("write failed unacknowledged after {took:?}; loads meanwhile answered at once");
}

/// Races `delete_by_alias` against creates of the same alias and writes to the user's sessions.
/// Checks: every session created before the delete began is gone and reported; none of them
/// comes back (writes after find nothing); sessions created meanwhile are either reported deleted
/// and gone, or still there and listed. With `atomic`, an observer reading all the sessions that
/// existed before in one command never sees some gone and others not.
async fn race_delete_by_alias(store: RedisStore, atomic: bool) {
    const BEFORE: usize = 40;
    let alias = "racing-user";
    let before: Vec<KeyId> = (0..BEFORE)
        .map(|n| id(&format!("race-before-{n}")))
        .collect();
    for key in &before {
        store
            .create(
                SessionRecord::default()
                    .with_key_id(key.clone())
                    .with_alias(alias),
            )
            .await
            .unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let creator = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let mut created = Vec::new();
            for n in 0..2_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = id(&format!("race-during-{n}"));
                let session = SessionRecord::default()
                    .with_key_id(key.clone())
                    .with_alias(alias);
                if store.create(session).await.is_ok() {
                    created.push(key);
                }
            }
            created
        }
    });
    let writer = tokio::spawn({
        let (store, stop, before) = (store.clone(), stop.clone(), before.clone());
        async move {
            let mut gone = 0;
            for round in 0..2_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let key = &before[round % before.len()];
                if store
                    .apply(key, &set("w", json!(round)))
                    .await
                    .unwrap()
                    .is_none()
                {
                    gone += 1;
                }
            }
            gone
        }
    });
    let observer = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        let keys: Vec<String> = before.iter().map(|k| store.session_key(k)).collect();
        async move {
            let mut partial = Vec::new();
            for _ in 0..5_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) || !atomic {
                    break;
                }
                let found: i64 = keycard_redis::fred::interfaces::KeysInterface::exists(
                    store.client(),
                    keys.clone(),
                )
                .await
                .unwrap();
                if found != 0 && found != BEFORE as i64 {
                    partial.push(found);
                }
                tokio::task::yield_now().await;
            }
            partial
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let deleted = tokio::time::timeout(Duration::from_secs(10), store.delete_by_alias(alias))
        .await
        .expect("delete_by_alias finished within 10 s")
        .unwrap();
    eprintln!(
        "delete_by_alias removed {} sessions in {:?}",
        deleted.len(),
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let created = tokio::time::timeout(Duration::from_secs(10), creator)
        .await
        .unwrap()
        .unwrap();
    let gone_writes = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .unwrap()
        .unwrap();
    let partial = tokio::time::timeout(Duration::from_secs(10), observer)
        .await
        .unwrap()
        .unwrap();

    let deleted_ids: std::collections::HashSet<KeyId> =
        deleted.iter().map(|s| s.key_id.clone()).collect();
    assert!(deleted.iter().all(|s| s.alias == alias));
    for (n, key) in before.iter().enumerate() {
        assert!(
            deleted_ids.contains(key),
            "session {n} from before was not reported deleted"
        );
        assert!(
            store.load(key).await.unwrap().is_none(),
            "session {n} from before survived"
        );
        assert!(
            store
                .apply(key, &set("late", json!(1)))
                .await
                .unwrap()
                .is_none(),
            "a write after the delete recreated session {n}"
        );
        assert!(
            store.load(key).await.unwrap().is_none(),
            "session {n} came back"
        );
    }
    assert!(gone_writes > 0, "the writer never met a deleted session");
    let listed = store.list_by_alias(alias, None, 5_000).await.unwrap();
    let listed: std::collections::HashSet<KeyId> =
        listed.items.into_iter().map(|s| s.key_id).collect();
    for key in &created {
        let stored = store.load(key).await.unwrap().is_some();
        assert_eq!(
            stored,
            !deleted_ids.contains(key),
            "a session created during the delete is neither deleted nor kept"
        );
        assert_eq!(
            listed.contains(key),
            stored,
            "listing disagrees with the store"
        );
    }
    assert!(
        partial.is_empty(),
        "an observer saw the user's sessions partly deleted {} times (sessions left of \
         {BEFORE}: {:?})",
        partial.len(),
        &partial[..partial.len().min(5)]
    );
    eprintln!(
        "{} created during the race, {} of them deleted",
        created.len(),
        created.iter().filter(|k| deleted_ids.contains(k)).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_alias_is_atomic_on_a_single_server() {
    let store = connect(shared_store("delete-alias")).await;
    race_delete_by_alias(store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_alias_in_a_cluster_leaves_nothing_from_before_and_resurrects_nothing() {
    let cluster = RedisCluster::start(3, 0);
    let store =
        connect(RedisStore::cluster(cluster.hosts()).prefix(unique_prefix("delete-alias"))).await;
    race_delete_by_alias(store, false).await;
    drop(cluster);
}

/// A server that lost its scripts (a restart, a promoted replica: `SCRIPT FLUSH` here) still
/// loads sessions: the load script is loaded again on `NOSCRIPT` and the load asked once more;
/// with the cache, the session is then cached as any load's.
#[tokio::test]
async fn loads_survive_a_server_that_lost_its_scripts() {
    let server = RedisServer::start();
    for cache in [false, true] {
        let mut builder = RedisStore::url(&server.url())
            .unwrap()
            .prefix(unique_prefix("noscript"));
        if cache {
            builder = builder.cache(CacheConfig::default());
        }
        let store = connect(builder).await;
        let key = id("noscript");
        store
            .create(SessionRecord::default().with_key_id(key.clone()))
            .await
            .unwrap();
        store.apply(&key, &set("n", json!(7))).await.unwrap();
        let flushed = server.cli(&["SCRIPT", "FLUSH"]);
        assert_eq!(String::from_utf8_lossy(&flushed.stdout).trim(), "OK");
        let loaded = store.load(&key).await.unwrap().expect("the session");
        assert_eq!(loaded.meta_data["n"], 7);
        assert_eq!(loaded.version, 2);
        assert!(store.load(&id("noscript-missing")).await.unwrap().is_none());
        if cache {
            assert!(store.is_cached(&key));
        }
    }
}
