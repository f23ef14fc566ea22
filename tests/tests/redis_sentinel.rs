//! RedisStore behind real Redis Sentinel processes: a primary, a replica and three sentinels on
//! free loopback ports, through a requested failover and through the death of the primary.

use std::time::{Duration, Instant};

use keycard_core::key::KeyId;
use keycard_core::session::SessionRecord;
use keycard_core::store::{SessionStore, StoreError};
use keycard_redis::RedisStore;
use keycard_tests::redis_support::{
    RedisSentinel, cli_text, connect, key_id, set_one, unique_prefix,
};
use serde_json::json;

const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// How long after a failover starts the store must take writes again. A requested failover
/// takes about 11 s here with acknowledged writes: Sentinel turns the old primary into a replica
/// of the new one (so that writes can be acknowledged again) only some 8 s after the switch.
const RECOVERY: Duration = Duration::from_secs(20);
const SESSIONS: usize = 20;

async fn store_on(deployment: &RedisSentinel, prefix: &str, acks: u32) -> RedisStore {
    connect(
        RedisStore::sentinel(deployment.hosts(), deployment.service.clone())
            .prefix(prefix)
            .command_timeout(COMMAND_TIMEOUT)
            .min_replicas_ack(acks),
    )
    .await
}

/// Creates the sessions and writes `before` on each; every write is acknowledged by the replica.
async fn sessions_before(store: &RedisStore, name: &str) -> Vec<KeyId> {
    let keys: Vec<KeyId> = (0..SESSIONS)
        .map(|n| key_id(&format!("{name}-{n}")))
        .collect();
    for key in &keys {
        store
            .create(
                SessionRecord::default()
                    .with_key_id(key.clone())
                    .with_alias("sentinel-user"),
            )
            .await
            .unwrap();
        store
            .apply(key, &set_one("before", json!(key.short())))
            .await
            .unwrap()
            .unwrap();
    }
    keys
}

/// Writes `during = round` on every session, round after round, until the sentinels agree on a
/// primary other than `old` and a whole round after that succeeded; returns the new primary's port
/// and how long that took. Records in `acked` the rounds of the writes that returned `Ok`.
async fn write_through_failover(
    store: &RedisStore,
    deployment: &RedisSentinel,
    old: u16,
    keys: &[KeyId],
    acked: &mut [i64],
) -> (u16, Duration) {
    let start = Instant::now();
    let mut new = None;
    for round in 1_i64.. {
        let promoted_before_round = new.is_some();
        let mut last_error = None;
        for (n, key) in keys.iter().enumerate() {
            match store.apply(key, &set_one("during", json!(round))).await {
                Ok(Some(_)) => acked[n] = round,
                Ok(None) => panic!("session {n} vanished during the failover"),
                Err(StoreError::Unavailable(e)) => {
                    // The rest of the round would fail the same way; a failing acknowledged
                    // write costs a whole `WAIT`.
                    last_error = Some(e.to_string());
                    break;
                }
                Err(other) => panic!("unexpected error during the failover: {other:?}"),
            }
        }
        if let (true, None, Some(port)) = (promoted_before_round, &last_error, new) {
            return (port, start.elapsed());
        }
        assert!(
            start.elapsed() < RECOVERY,
            "{RECOVERY:?} after the failover began: new primary {new:?}, last write error \
             {last_error:?}"
        );
        if new.is_none() {
            new = deployment.new_primary(old);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!("rounds are unbounded")
}

/// Every session still has what was written before the failover, and no acknowledged write
/// during it was lost (rounds only grow, so a session may hold a later round, never an older one).
async fn assert_survived(store: &RedisStore, keys: &[KeyId], acked: &[i64]) {
    for (n, key) in keys.iter().enumerate() {
        let session = store.load(key).await.unwrap().expect("session survived");
        assert_eq!(
            session.meta_data["before"],
            json!(key.short()),
            "session {n}"
        );
        let during = session.meta_data["during"].as_i64().unwrap_or(0);
        assert!(
            during >= acked[n],
            "acknowledged write {} lost on session {n}",
            acked[n]
        );
    }
    let listed = store
        .list_by_alias("sentinel-user", None, 100)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), keys.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_sessions_and_acknowledged_writes_resume() {
    let deployment = RedisSentinel::start(1, 3);
    let store = store_on(&deployment, &unique_prefix("sentinel-failover"), 1).await;
    let keys = sessions_before(&store, "sentinel-failover").await;
    let old = deployment.primary_port_by(0).expect("a primary");
    assert_eq!(old, deployment.servers[0].port);

    deployment.failover();
    let mut acked = vec![0_i64; keys.len()];
    let (new, took) = write_through_failover(&store, &deployment, old, &keys, &mut acked).await;
    eprintln!("requested failover {old} -> {new}: every write acknowledged again after {took:?}");

    assert_survived(&store, &keys, &acked).await;
    // The writes land on the promoted server, and the demoted one follows it.
    let session_key = store.session_key(&keys[0]);
    let stored = cli_text(new, &["hget", &session_key, "m:during"]);
    assert_eq!(stored, acked[0].to_string());
    let old_role = cli_text(old, &["info", "replication"]);
    assert!(old_role.contains("role:slave"), "{old_role}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_promotes_the_replica_when_the_primary_dies() {
    let mut deployment = RedisSentinel::start(1, 3);
    let prefix = unique_prefix("sentinel-kill");
    // Writes before the kill are acknowledged by the replica, so they must survive it. After the
    // kill the promoted server has no replica until the old one comes back, so the writes that
    // follow go through a store that does not wait for one.
    let acked_store = store_on(&deployment, &prefix, 1).await;
    let plain_store = store_on(&deployment, &prefix, 0).await;
    let keys = sessions_before(&acked_store, "sentinel-kill").await;
    let old = deployment.primary_port_by(0).expect("a primary");

    let killed = Instant::now();
    deployment.servers[0].kill();
    let mut acked = vec![0_i64; keys.len()];
    let (new, took) =
        write_through_failover(&plain_store, &deployment, old, &keys, &mut acked).await;
    eprintln!("primary {old} killed: writes succeed again after {took:?}");
    assert_eq!(new, deployment.servers[1].port, "the replica was promoted");
    assert_eq!(deployment.server_on(new), 1);

    // Both stores read everything: what was acknowledged before the kill and after it.
    assert_survived(&plain_store, &keys, &acked).await;
    let start = Instant::now();
    while acked_store.load(&keys[0]).await.is_err() {
        assert!(
            start.elapsed() < RECOVERY,
            "the other store never followed the failover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_survived(&acked_store, &keys, &acked).await;
    eprintln!("failover after a kill complete in {:?}", killed.elapsed());
}
