//! The quickstart stack on [`RedisStore`]: sessions shared by every process that points at the
//! same Redis, with the local cache on.

use keycard::prelude::*;
use keycard::redis::{CacheConfig, ConnectError, RedisStore};
use keycard::store::StoreError;

use crate::quickstart::demo_metadata;

/// Why the demo store could not be prepared.
#[derive(Debug)]
pub enum DemoStoreError {
    /// The URL is invalid or Redis did not answer.
    Connect(ConnectError),
    /// Seeding the demo session failed.
    Store(StoreError),
}

impl std::fmt::Display for DemoStoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect to Redis: {e}"),
            Self::Store(e) => write!(f, "cannot seed the demo session: {e}"),
        }
    }
}

impl std::error::Error for DemoStoreError {}

/// Connects to `url` (with the local cache on) under key prefix `prefix`, and makes sure the demo
/// session exists under `key` — created, or reset to the demo metadata if it was already there.
///
/// # Errors
/// When Redis cannot be reached or refuses the session.
pub async fn demo_store(url: &str, prefix: &str, key: &str) -> Result<RedisStore, DemoStoreError> {
    let store = RedisStore::url(url)
        .map_err(DemoStoreError::Connect)?
        .prefix(prefix)
        .cache(CacheConfig::default())
        .connect()
        .await
        .map_err(DemoStoreError::Connect)?;
    let session = SessionRecord::for_key(key)
        .metadata(demo_metadata())
        .with_alias("demo");
    match store.create(session.clone()).await {
        Ok(_) => {}
        Err(StoreError::AlreadyExists) => {
            store
                .replace(session)
                .await
                .map_err(DemoStoreError::Store)?;
        }
        Err(other) => return Err(DemoStoreError::Store(other)),
    }
    Ok(store)
}
