//! The store conformance suite against every store: memory, Redis standalone, Redis Cluster.

use std::sync::Arc;
use std::time::Duration;

use keycard_core::store::MemoryStore;
use keycard_redis::RedisStore;
use keycard_tests::redis_support::{RedisCluster, connect, shared_store, unique_prefix};
use keycard_tests::store_conformance::{GRACE, conformance};

#[tokio::test]
async fn memory_store_conforms() {
    conformance(Arc::new(MemoryStore::with_expiry_grace(GRACE))).await;
}

#[tokio::test]
async fn redis_store_conforms() {
    let store = connect(
        shared_store("conformance")
            .expiry_grace(GRACE)
            .command_timeout(Duration::from_secs(10)),
    )
    .await;
    conformance(Arc::new(store)).await;
}

#[tokio::test]
async fn redis_store_with_cache_conforms() {
    let store = connect(
        shared_store("conformance-cache")
            .expiry_grace(GRACE)
            .command_timeout(Duration::from_secs(10))
            .cache(keycard_redis::CacheConfig::default()),
    )
    .await;
    conformance(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_conforms() {
    let cluster = RedisCluster::start(3, 0);
    let store = connect(
        RedisStore::cluster(cluster.hosts())
            .prefix(unique_prefix("conformance-cluster"))
            .expiry_grace(GRACE)
            .command_timeout(Duration::from_secs(10)),
    )
    .await;
    conformance(Arc::new(store)).await;
    drop(cluster);
}
