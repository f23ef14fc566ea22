//! Helpers the layers' unit tests share.

use keycard_core::session::SessionRecord;
use keycard_core::store::{MemoryStore, SessionStore};
use serde_json::Value;

/// The `Authorization` value for the session [`store`] creates.
pub(crate) const KEY: &str = "Bearer test-key";

/// A store holding one session with metadata `meta` (an object) under the raw key `test-key`.
pub(crate) async fn store(meta: Value) -> MemoryStore {
    store_with(
        "test-key",
        SessionRecord::new(Default::default()).metadata(meta),
    )
    .await
}

/// A store holding `session` under the raw key `key`.
pub(crate) async fn store_with(key: &str, session: SessionRecord) -> MemoryStore {
    let store = MemoryStore::new();
    store.create(session.with_key(key)).await.unwrap();
    store
}
