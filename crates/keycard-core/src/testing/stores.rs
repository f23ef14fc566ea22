//! Store wrappers for tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::key::KeyId;
use crate::metadata::MetadataDelta;
use crate::session::SessionRecord;
use crate::store::{Page, SessionStore, StoreError, StoreFuture};

/// Wraps a store and counts its calls; clones share the counters.
#[derive(Clone, Debug)]
pub struct CountingStore<S> {
    inner: S,
    counts: Arc<Counts>,
}

/// The call counters of a [`CountingStore`].
#[derive(Debug, Default)]
pub struct Counts {
    /// `load` and `load_shared` calls.
    pub loads: AtomicUsize,
    /// Calls that write: `create`, `replace`, `apply`, `save_changes`, `delete`.
    pub writes: AtomicUsize,
}

impl<S> CountingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }

    /// The number of `load` and `load_shared` calls so far.
    pub fn loads(&self) -> usize {
        self.counts.loads.load(Ordering::SeqCst)
    }

    /// The number of writing calls so far.
    pub fn writes(&self) -> usize {
        self.counts.writes.load(Ordering::SeqCst)
    }

    fn wrote(&self) {
        self.counts.writes.fetch_add(1, Ordering::SeqCst);
    }
}

impl<S: SessionStore> SessionStore for CountingStore<S> {
    fn load<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        self.counts.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key_id)
    }

    fn load_shared<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<Arc<SessionRecord>>> {
        self.counts.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_shared(key_id)
    }

    fn create(&self, session: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        self.wrote();
        self.inner.create(session)
    }

    fn replace(&self, session: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        self.wrote();
        self.inner.replace(session)
    }

    fn apply<'a>(
        &'a self,
        key_id: &'a KeyId,
        delta: &'a MetadataDelta,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        self.wrote();
        self.inner.apply(key_id, delta)
    }

    fn save_changes<'a>(
        &'a self,
        key_id: &'a KeyId,
        delta: &'a MetadataDelta,
    ) -> StoreFuture<'a, Option<u64>> {
        self.wrote();
        self.inner.save_changes(key_id, delta)
    }

    fn delete<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        self.wrote();
        self.inner.delete(key_id)
    }

    fn list_by_alias<'a>(
        &'a self,
        alias: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<SessionRecord>> {
        self.inner.list_by_alias(alias, after, limit)
    }

    fn list_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<KeyId>> {
        self.inner.list_keys(after, limit)
    }
}

/// A store that fails every call as if its server were down.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnavailableStore;

fn unavailable<'a, T: Send + 'a>() -> StoreFuture<'a, T> {
    Box::pin(async { Err(StoreError::unavailable("connection refused (test store)")) })
}

impl SessionStore for UnavailableStore {
    fn load<'a>(&'a self, _: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        unavailable()
    }

    fn create(&self, _: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        unavailable()
    }

    fn replace(&self, _: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        unavailable()
    }

    fn apply<'a>(
        &'a self,
        _: &'a KeyId,
        _: &'a MetadataDelta,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        unavailable()
    }

    fn delete<'a>(&'a self, _: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        unavailable()
    }

    fn list_by_alias<'a>(
        &'a self,
        _: &'a str,
        _: Option<&'a str>,
        _: usize,
    ) -> StoreFuture<'a, Page<SessionRecord>> {
        unavailable()
    }

    fn list_keys<'a>(&'a self, _: Option<&'a str>, _: usize) -> StoreFuture<'a, Page<KeyId>> {
        unavailable()
    }
}

/// Loads from `inner` but fails every write (`save_changes` included, through `apply`): persist's
/// failure path.
#[derive(Clone, Debug)]
pub struct ReadOnlyStore<S>(pub S);

impl<S: SessionStore> SessionStore for ReadOnlyStore<S> {
    fn load<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        self.0.load(key_id)
    }

    fn load_shared<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<Arc<SessionRecord>>> {
        self.0.load_shared(key_id)
    }

    fn create(&self, _: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        unavailable()
    }

    fn replace(&self, _: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        unavailable()
    }

    fn apply<'a>(
        &'a self,
        _: &'a KeyId,
        _: &'a MetadataDelta,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        unavailable()
    }

    fn delete<'a>(&'a self, _: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        unavailable()
    }

    fn list_by_alias<'a>(
        &'a self,
        alias: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<SessionRecord>> {
        self.0.list_by_alias(alias, after, limit)
    }

    fn list_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<KeyId>> {
        self.0.list_keys(after, limit)
    }
}
