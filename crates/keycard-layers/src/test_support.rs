//! Helpers the layers' unit tests share.

use keycard_core::key::{ApiKey, KeyId};
use keycard_core::session::SessionRecord;
use keycard_core::store::{MemoryStore, SessionStore};
use serde_json::Value;

/// The `Authorization` value for the session [`store`] creates.
pub(crate) const KEY: &str = "Bearer test-key";

/// A store holding one session with metadata `meta` (an object) under the raw key `test-key`.
pub(crate) async fn store(meta: Value) -> MemoryStore {
    let meta = meta.as_object().expect("metadata is an object").clone();
    store_with("test-key", SessionRecord::new(meta)).await
}

/// A store holding `session` under the raw key `key`.
pub(crate) async fn store_with(key: &str, session: SessionRecord) -> MemoryStore {
    let store = MemoryStore::new();
    let session = session.with_key_id(KeyId::of(&ApiKey::new(key)));
    store.create(session).await.unwrap();
    store
}
