//! Where sessions live: the [`SessionStore`] trait and the embedded [`MemoryStore`].
//!
//! The trait is shaped for a networked store: every operation is one request (one round trip to
//! Redis), and metadata changes travel as a [`MetadataDelta`] that the store applies atomically to
//! whatever is stored *now* — never a read-modify-write of the whole document by the caller.
//!
//! ```
//! use keycard_core::key::{ApiKey, KeyId};
//! use keycard_core::metadata::MetadataDelta;
//! use keycard_core::session::SessionRecord;
//! use keycard_core::store::{MemoryStore, SessionStore};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keycard_core::store::StoreError> {
//! let store = MemoryStore::new();
//! let id = KeyId::of(&ApiKey::new("demo-key"));
//! store.create(SessionRecord::default().with_key_id(id.clone())).await?;
//!
//! let mut delta = MetadataDelta::new();
//! delta.set("plan", json!("gold"));
//! let updated = store.apply(&id, &delta).await?.expect("session exists");
//! assert_eq!(updated.meta_data["plan"], "gold");
//! assert_eq!(store.load(&id).await?.unwrap().version, 2);
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::key::KeyId;
use crate::metadata::MetadataDelta;
use crate::session::{SessionRecord, unix_now};

mod record;

use record::{Body, Corrupt, Record, Slot};

/// A boxed error, as carried by [`StoreError::Unavailable`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The future a [`SessionStore`] operation returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or did not answer in time. Clients see 503.
    #[error("session store unavailable")]
    Unavailable(#[source] BoxError),
    /// `create` found a session under that key already.
    #[error("a session with this key already exists")]
    AlreadyExists,
    /// `replace` found no session under that key.
    #[error("session not found")]
    NotFound,
    /// `replace` was given a version that is no longer the stored one.
    #[error("session was changed concurrently (version {expected} expected, {found} stored)")]
    Conflict {
        /// The version the caller based its change on.
        expected: u64,
        /// The version in the store.
        found: u64,
    },
    /// The stored data could not be read.
    #[error("stored session could not be read: {0}")]
    Corrupt(String),
    /// The caller's input cannot be stored (it says why).
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// Wraps a transport or timeout error as [`StoreError::Unavailable`].
    pub fn unavailable(error: impl Into<BoxError>) -> Self {
        Self::Unavailable(error.into())
    }
}

/// One page of a listing, with the cursor of the next page.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass this as `after` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Storage for sessions, keyed by [`KeyId`].
///
/// Implementations must make [`apply`](SessionStore::apply) atomic and set-if-exists, keep the
/// session's expiry when applying a delta, and bump [`SessionRecord::version`] on every write.
pub trait SessionStore: Send + Sync + 'static {
    /// Loads a session; `None` when there is none (or it is past its expiry grace period).
    fn load<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>>;

    /// Loads a session to be shared read-only, as the session-load layer does on every request.
    ///
    /// The default wraps [`load`](SessionStore::load). Stores that keep decoded sessions (the
    /// [`MemoryStore`], a cached `RedisStore`) override it to hand out the same `Arc` until the
    /// session changes, so a request that only reads metadata copies nothing. An override must
    /// answer exactly what `load` would; a wrapper store should forward it (and `save_changes`)
    /// to the store it wraps, or that store's sharing is lost.
    fn load_shared<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<Arc<SessionRecord>>> {
        Box::pin(async move { Ok(self.load(key_id).await?.map(Arc::new)) })
    }

    /// Stores a new session under `session.key_id`; [`StoreError::AlreadyExists`] if taken.
    /// Sets `version` to 1 and fills `date_created`/`last_updated` when they are 0.
    fn create(&self, session: SessionRecord) -> StoreFuture<'_, SessionRecord>;

    /// Replaces a stored session; [`StoreError::NotFound`] when absent. A non-zero
    /// `session.version` must equal the stored version ([`StoreError::Conflict`] otherwise);
    /// `0` replaces unconditionally. Keeps `date_created`, bumps `version`.
    fn replace(&self, session: SessionRecord) -> StoreFuture<'_, SessionRecord>;

    /// Applies a metadata delta atomically to the stored session and returns the result;
    /// `Ok(None)` if the session does not exist (it is never recreated).
    fn apply<'a>(
        &'a self,
        key_id: &'a KeyId,
        delta: &'a MetadataDelta,
    ) -> StoreFuture<'a, Option<SessionRecord>>;

    /// Applies a delta exactly as [`apply`](SessionStore::apply) does, for a caller that needs
    /// only the new [`SessionRecord::version`] (`None`: the session does not exist). This is what
    /// persist calls after every request that changed metadata. The default calls `apply`; a
    /// networked store overrides it so the updated session need not travel back. An override
    /// must have `apply`'s effect exactly.
    fn save_changes<'a>(
        &'a self,
        key_id: &'a KeyId,
        delta: &'a MetadataDelta,
    ) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move { Ok(self.apply(key_id, delta).await?.map(|s| s.version)) })
    }

    /// Deletes a session and returns what was stored.
    fn delete<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>>;

    /// The sessions whose alias is `alias`, ordered by key id, at most `limit`, after the cursor.
    fn list_by_alias<'a>(
        &'a self,
        alias: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<SessionRecord>>;

    /// All key ids, ordered, at most `limit`, after the cursor.
    fn list_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<KeyId>>;

    /// Deletes every session whose alias is `alias` (a user's sessions) and returns what was
    /// stored. The default lists a page at a time and deletes each session: every session that
    /// had the alias when the call started is gone when it returns `Ok`, but others may see some
    /// gone and some not meanwhile. Stores that can do better say so (`RedisStore`: one script on
    /// a single server).
    fn delete_by_alias<'a>(&'a self, alias: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
        Box::pin(async move {
            let (mut deleted, mut after) = (Vec::new(), None::<String>);
            loop {
                let page = self.list_by_alias(alias, after.as_deref(), 100).await?;
                for listed in page.items {
                    // `None`: deleted meanwhile by someone else.
                    if let Some(session) = self.delete(&listed.key_id).await? {
                        deleted.push(session);
                    }
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => return Ok(deleted),
                }
            }
        })
    }
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<T: SessionStore + ?Sized> SessionStore for $ty {
            fn load<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
                (**self).load(key_id)
            }
            fn load_shared<'a>(
                &'a self,
                key_id: &'a KeyId,
            ) -> StoreFuture<'a, Option<Arc<SessionRecord>>> {
                (**self).load_shared(key_id)
            }
            fn create(&self, session: SessionRecord) -> StoreFuture<'_, SessionRecord> {
                (**self).create(session)
            }
            fn replace(&self, session: SessionRecord) -> StoreFuture<'_, SessionRecord> {
                (**self).replace(session)
            }
            fn apply<'a>(
                &'a self,
                key_id: &'a KeyId,
                delta: &'a MetadataDelta,
            ) -> StoreFuture<'a, Option<SessionRecord>> {
                (**self).apply(key_id, delta)
            }
            fn save_changes<'a>(
                &'a self,
                key_id: &'a KeyId,
                delta: &'a MetadataDelta,
            ) -> StoreFuture<'a, Option<u64>> {
                (**self).save_changes(key_id, delta)
            }
            fn delete<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
                (**self).delete(key_id)
            }
            fn list_by_alias<'a>(
                &'a self,
                alias: &'a str,
                after: Option<&'a str>,
                limit: usize,
            ) -> StoreFuture<'a, Page<SessionRecord>> {
                (**self).list_by_alias(alias, after, limit)
            }
            fn list_keys<'a>(
                &'a self,
                after: Option<&'a str>,
                limit: usize,
            ) -> StoreFuture<'a, Page<KeyId>> {
                (**self).list_keys(after, limit)
            }
            fn delete_by_alias<'a>(
                &'a self,
                alias: &'a str,
            ) -> StoreFuture<'a, Vec<SessionRecord>> {
                (**self).delete_by_alias(alias)
            }
        }
    )*};
}

forward_store!(Arc<T>, Box<T>);

/// The default expiry grace period: how long an expired session is kept so that requests with its
/// key get 401 `Key has expired, please renew` rather than 403 for an unknown key.
pub const DEFAULT_EXPIRY_GRACE: Duration = Duration::from_secs(3600);

/// Sweep expired sessions after this many writes.
const SWEEP_EVERY_WRITES: u64 = 1024;
/// ...or when this many seconds passed since the last sweep (checked on writes).
const SWEEP_EVERY_SECS: i64 = 60;

/// An in-process store: the default, nothing to install. Cheap to clone; clones share the data.
///
/// Expired sessions are kept for a grace period ([`DEFAULT_EXPIRY_GRACE`] unless set with
/// [`MemoryStore::with_expiry_grace`]), are invisible to `load` after it, and are swept out
/// periodically on writes, so the map does not grow without bound.
///
/// Sessions are kept in a compact encoded form (a few hundred bytes each with a handful of
/// metadata entries, rather than a `SessionRecord` and its metadata map); `load` rebuilds the
/// [`SessionRecord`]. [`load_shared`](SessionStore::load_shared), which the session-load layer calls on
/// every request, hands out the same decoded `Arc<SessionRecord>` until the session is written again,
/// from a bounded table (1024 entries, at most one per key), so the requests of a busy key neither
/// decode nor copy it.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<MemoryInner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug)]
struct MemoryInner {
    state: RwLock<MemoryState>,
    grace_secs: i64,
    writes: AtomicU64,
    decoded: Decoded,
}

#[derive(Debug, Default)]
struct MemoryState {
    /// The sessions, in key id order (`list_keys` pages through it).
    sessions: BTreeMap<Slot, Record>,
    /// `(hash of the alias, key id)` of every session: `list_by_alias` pages through one hash's
    /// range, in key id order, and skips the sessions whose alias merely shares the hash. Hashing
    /// keeps a second copy of every alias out of memory; the keys are random per store.
    by_alias: BTreeSet<(u64, Slot)>,
    alias_hasher: RandomState,
    last_sweep: i64,
    /// The stamp of the last record written.
    last_stamp: u64,
}

/// How many decoded sessions a [`MemoryStore`] keeps for [`SessionStore::load_shared`].
const DECODED_SLOTS: usize = 1024;

/// Recently loaded sessions, decoded and shared, so that the requests of a busy key neither decode
/// nor copy its session. A direct-mapped table indexed by the key, so a key has at most one entry
/// (its latest); an entry is served only while its stamp is the stored record's, so any write makes
/// it stale without an explicit invalidation.
struct Decoded(Box<[RwLock<Option<DecodedEntry>>]>);

/// A decoded session and the stamp of the record it was decoded from.
type DecodedEntry = (u64, Arc<SessionRecord>);

impl Decoded {
    fn new(slots: usize) -> Self {
        Self((0..slots).map(|_| RwLock::new(None)).collect())
    }

    fn get(
        &self,
        slot: &Slot,
        record: &Record,
        key_id: &KeyId,
    ) -> Result<Arc<SessionRecord>, Corrupt> {
        let entry = &self.0[slot.spread() % self.0.len()];
        // An entry is only ever replaced whole, so a poisoned lock is still consistent.
        if let Some((stamp, session)) = &*entry.read().unwrap_or_else(|e| e.into_inner())
            && *stamp == record.stamp
        {
            return Ok(session.clone());
        }
        let session = Arc::new(record.session(key_id.clone())?);
        let fresh = Some((record.stamp, session.clone()));
        // The entry it replaces is dropped after the lock is released.
        let _evicted = std::mem::replace(
            &mut *entry.write().unwrap_or_else(|e| e.into_inner()),
            fresh,
        );
        Ok(session)
    }
}

impl fmt::Debug for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoded")
            .field("slots", &self.0.len())
            .finish_non_exhaustive()
    }
}

impl MemoryState {
    /// A stamp no record of this store has had: every record written gets a new one.
    fn next_stamp(&mut self) -> u64 {
        self.last_stamp += 1;
        self.last_stamp
    }

    fn alias_hash(&self, alias: &str) -> u64 {
        self.alias_hasher.hash_one(alias)
    }

    /// The alias index entry of a stored record (a record that does not decode was indexed under
    /// some hash that cannot be recomputed; its entry stays behind and listings skip it).
    fn indexed(&self, slot: &Slot, record: &Record) -> (u64, Slot) {
        (
            self.alias_hash(record.alias().unwrap_or_default()),
            slot.clone(),
        )
    }
}

impl From<Corrupt> for StoreError {
    fn from(Corrupt: Corrupt) -> Self {
        StoreError::Corrupt("an in-memory session record did not decode".to_owned())
    }
}

impl MemoryStore {
    /// Stores a new session now ([`SessionStore::create`] without the future): the memory
    /// store answers at once.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] when a live session has that key id.
    pub fn insert(&self, mut session: SessionRecord) -> Result<SessionRecord, StoreError> {
        let slot = Slot::of(session.key_id.as_str());
        let body = Body::encode(&session);
        self.inner.write_op(|state, now| {
            if let Some(existing) = state.sessions.get(&slot) {
                if self.inner.live(existing, now) {
                    return Err(StoreError::AlreadyExists);
                }
                let entry = state.indexed(&slot, existing);
                state.by_alias.remove(&entry);
            }
            if session.date_created == 0 {
                session.date_created = now;
            }
            session.last_updated = now;
            session.version = 1;
            let entry = (state.alias_hash(&session.alias), slot.clone());
            state.by_alias.insert(entry);
            let stamp = state.next_stamp();
            state
                .sessions
                .insert(slot, Record::new(&session, body, stamp));
            Ok(session)
        })
    }

    /// Stores a new, never-expiring session for the raw key `key` with `metadata`, a JSON
    /// object such as `json!({"user_id": "u-1"})`: the shortest way to seed a demo or a test.
    /// Only the key's hash is kept.
    ///
    /// ```
    /// use keycard_core::store::MemoryStore;
    /// use serde_json::json;
    ///
    /// let store = MemoryStore::new();
    /// let record = store.insert_key("demo-key", json!({"user_id": "u-demo"})).unwrap();
    /// assert_eq!(record.version, 1);
    /// assert!(store.insert_key("demo-key", json!({})).is_err(), "keys are unique");
    /// assert!(store.insert_key("other-key", json!([1])).is_err(), "metadata is an object");
    /// ```
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] when the key has a live session; [`StoreError::Invalid`]
    /// when `metadata` is not a JSON object.
    pub fn insert_key(
        &self,
        key: &str,
        metadata: serde_json::Value,
    ) -> Result<SessionRecord, StoreError> {
        self.insert_key_hashed(key, &crate::key::KeyHasher::default(), metadata)
    }

    /// Like [`insert_key`](Self::insert_key), with the key id made by `hasher`: what a stack
    /// built with a keyed hasher (`KeyHasher::hmac_sha256`) looks keys up by.
    ///
    /// ```
    /// use keycard_core::key::{ApiKey, KeyHasher};
    /// use keycard_core::store::MemoryStore;
    /// use serde_json::json;
    ///
    /// let hasher = KeyHasher::hmac_sha256(b"a server secret of at least 32 bytes!")?;
    /// let store = MemoryStore::new();
    /// let record = store.insert_key_hashed("demo-key", &hasher, json!({"user_id": "u-1"}))?;
    /// assert_eq!(record.key_id, hasher.key_id(&ApiKey::new("demo-key")));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`insert_key`](Self::insert_key).
    pub fn insert_key_hashed(
        &self,
        key: &str,
        hasher: &crate::key::KeyHasher,
        metadata: serde_json::Value,
    ) -> Result<SessionRecord, StoreError> {
        let record = SessionRecord::new(crate::metadata::Metadata::new())
            .with_key_hashed(key, hasher)
            .try_metadata(metadata)
            .map_err(|other| {
                StoreError::Invalid(format!(
                    "session metadata must be a JSON object, not {other}"
                ))
            })?;
        self.insert(record)
    }

    /// An empty store with the default expiry grace period.
    pub fn new() -> Self {
        Self::with_expiry_grace(DEFAULT_EXPIRY_GRACE)
    }

    /// An empty store that keeps expired sessions for `grace` (zero: gone at expiry).
    pub fn with_expiry_grace(grace: Duration) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                state: RwLock::new(MemoryState {
                    last_sweep: unix_now(),
                    ..MemoryState::default()
                }),
                grace_secs: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
                writes: AtomicU64::new(0),
                decoded: Decoded::new(DECODED_SLOTS),
            }),
        }
    }

    /// The number of stored sessions, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.inner.read().sessions.len()
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every session past its grace period now.
    pub fn sweep(&self) {
        let now = unix_now();
        let mut state = self.inner.write();
        self.inner.sweep_locked(&mut state, now);
    }
}

impl MemoryInner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, MemoryState> {
        // A panic while holding the lock cannot leave the maps half-updated (every write is a
        // single insert/remove pair), so a poisoned lock is still consistent.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MemoryState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, record: &Record, now: i64) -> bool {
        record.expires < 1 || record.expires.saturating_add(self.grace_secs) >= now
    }

    fn sweep_locked(&self, state: &mut MemoryState, now: i64) {
        let dead: Vec<Slot> = state
            .sessions
            .iter()
            .filter(|(_, record)| !self.live(record, now))
            .map(|(slot, _)| slot.clone())
            .collect();
        for slot in dead {
            if let Some(record) = state.sessions.remove(&slot) {
                let entry = state.indexed(&slot, &record);
                state.by_alias.remove(&entry);
            }
        }
        state.last_sweep = now;
    }

    /// Reads the live record of `key_id` (if any) with `read`, under the read lock.
    fn read_live<T>(
        &self,
        key_id: &KeyId,
        read: impl FnOnce(&Slot, &Record) -> Result<T, Corrupt>,
    ) -> Result<Option<T>, StoreError> {
        let slot = Slot::of(key_id.as_str());
        let now = unix_now();
        let state = self.read();
        match state.sessions.get(&slot) {
            Some(record) if self.live(record, now) => Ok(Some(read(&slot, record)?)),
            _ => Ok(None),
        }
    }

    /// Runs a write under the lock and sweeps when due.
    fn write_op<T>(&self, op: impl FnOnce(&mut MemoryState, i64) -> T) -> T {
        let now = unix_now();
        let mut state = self.write();
        let out = op(&mut state, now);
        let writes = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if writes.is_multiple_of(SWEEP_EVERY_WRITES) || now - state.last_sweep >= SWEEP_EVERY_SECS {
            self.sweep_locked(&mut state, now);
        }
        out
    }
}

fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(result))
}

fn page_after<'a, K: Ord + 'a, T>(
    iter: impl Iterator<Item = (&'a K, T)>,
    limit: usize,
    cursor: impl Fn(&K) -> String,
) -> Page<T> {
    let mut items = Vec::new();
    let mut next = None;
    let mut last: Option<&K> = None;
    for (key, item) in iter {
        if items.len() == limit {
            next = last.map(&cursor);
            break;
        }
        items.push(item);
        last = Some(key);
    }
    Page { items, next }
}

/// A listing cursor is a key id; one that is not sorts where its string would.
fn cursor_of(slot: &Slot) -> String {
    slot.key_id().as_str().to_owned()
}

impl SessionStore for MemoryStore {
    fn load<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        ready(
            self.inner
                .read_live(key_id, |_, record| record.session(key_id.clone())),
        )
    }

    fn load_shared<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<Arc<SessionRecord>>> {
        ready(self.inner.read_live(key_id, |slot, record| {
            self.inner.decoded.get(slot, record, key_id)
        }))
    }

    fn create(&self, session: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        ready(self.insert(session))
    }

    fn replace(&self, mut session: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        let slot = Slot::of(session.key_id.as_str());
        let body = Body::encode(&session);
        ready(self.inner.write_op(|state, now| {
            let stamp = state.next_stamp();
            let Some(stored) = state
                .sessions
                .get_mut(&slot)
                .filter(|record| self.inner.live(record, now))
            else {
                return Err(StoreError::NotFound);
            };
            if session.version != 0 && session.version != stored.version {
                return Err(StoreError::Conflict {
                    expected: session.version,
                    found: stored.version,
                });
            }
            session.date_created = stored.date_created;
            session.last_updated = now;
            session.version = stored.version + 1;
            let old = std::mem::replace(stored, Record::new(&session, body, stamp));
            if old.alias().ok() != Some(session.alias.as_str()) {
                let entry = state.indexed(&slot, &old);
                state.by_alias.remove(&entry);
                let entry = (state.alias_hash(&session.alias), slot);
                state.by_alias.insert(entry);
            }
            Ok(session)
        }))
    }

    fn apply<'a>(
        &'a self,
        key_id: &'a KeyId,
        delta: &'a MetadataDelta,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        let slot = Slot::of(key_id.as_str());
        ready(self.inner.write_op(|state, now| {
            let stamp = state.next_stamp();
            let Some(stored) = state
                .sessions
                .get_mut(&slot)
                .filter(|record| self.inner.live(record, now))
            else {
                return Ok(None);
            };
            let mut session = stored.session(key_id.clone())?;
            delta.apply_to(&mut session.meta_data);
            session.version += 1;
            session.last_updated = now;
            *stored = Record::new(&session, Body::encode(&session), stamp);
            Ok(Some(session))
        }))
    }

    fn delete<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        let slot = Slot::of(key_id.as_str());
        let removed = self.inner.write_op(|state, now| {
            let record = state.sessions.remove(&slot)?;
            let entry = state.indexed(&slot, &record);
            state.by_alias.remove(&entry);
            self.inner.live(&record, now).then_some(record)
        });
        // Decoded outside the lock: the record is no longer shared.
        let session = removed.map(|record| record.session(key_id.clone()));
        ready(session.transpose().map_err(StoreError::from))
    }

    fn list_by_alias<'a>(
        &'a self,
        alias: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<SessionRecord>> {
        let now = unix_now();
        let state = self.inner.read();
        let hash = state.alias_hash(alias);
        let start = match after {
            Some(cursor) => Bound::Excluded((hash, Slot::of(cursor))),
            None => Bound::Included((hash, Slot::min())),
        };
        let iter = state
            .by_alias
            .range((start, Bound::Unbounded))
            .take_while(|(h, _)| *h == hash)
            .filter_map(|(_, slot)| {
                let record = state.sessions.get(slot)?;
                let wanted = self.inner.live(record, now) && record.alias().ok() == Some(alias);
                wanted.then_some((slot, (slot, record)))
            });
        let page = page_after(iter, limit, cursor_of);
        let items = page
            .items
            .into_iter()
            .map(|(slot, record)| record.session(slot.key_id()))
            .collect::<Result<Vec<_>, _>>();
        ready(
            items
                .map(|items| Page {
                    items,
                    next: page.next,
                })
                .map_err(StoreError::from),
        )
    }

    fn list_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<KeyId>> {
        let now = unix_now();
        let state = self.inner.read();
        let start = match after {
            Some(cursor) => Bound::Excluded(Slot::of(cursor)),
            None => Bound::Unbounded,
        };
        let iter = state
            .sessions
            .range((start, Bound::Unbounded))
            .filter(|(_, record)| self.inner.live(record, now))
            .map(|(slot, _)| (slot, slot.key_id()));
        ready(Ok(page_after(iter, limit, cursor_of)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ApiKey;
    use serde_json::json;

    fn id(n: u32) -> KeyId {
        KeyId::of(&ApiKey::new(format!("key-{n}")))
    }

    fn session(n: u32) -> SessionRecord {
        SessionRecord::default()
            .with_key_id(id(n))
            .with_alias("alice")
    }

    #[tokio::test]
    async fn create_is_exclusive_and_versions() {
        let store = MemoryStore::new();
        let created = store.create(session(1)).await.unwrap();
        assert_eq!(created.version, 1);
        assert!(created.date_created > 0);
        assert!(matches!(
            store.create(session(1)).await,
            Err(StoreError::AlreadyExists)
        ));
    }

    #[tokio::test]
    async fn shared_loads_share_one_decode_until_the_session_changes() {
        let store = MemoryStore::new();
        store.create(session(1)).await.unwrap();
        let first = store.load_shared(&id(1)).await.unwrap().unwrap();
        let again = store.load_shared(&id(1)).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(*first, store.load(&id(1)).await.unwrap().unwrap());

        let mut delta = MetadataDelta::new();
        delta.set("plan", json!("gold"));
        store.apply(&id(1), &delta).await.unwrap();
        let changed = store.load_shared(&id(1)).await.unwrap().unwrap();
        assert_eq!(changed.meta_data["plan"], "gold");
        assert_eq!(changed.version, 2);
        // The copy handed out before the write is unchanged.
        assert!(first.meta_data.is_empty());

        store.replace(session(1).with_alias("bob")).await.unwrap();
        assert_eq!(
            store.load_shared(&id(1)).await.unwrap().unwrap().alias,
            "bob"
        );
    }

    #[tokio::test]
    async fn a_busy_key_keeps_one_decoded_copy_however_often_it_is_written() {
        let store = MemoryStore::new();
        store.create(session(1)).await.unwrap();
        let mut delta = MetadataDelta::new();
        for n in 0..50 {
            delta.set("n", json!(n));
            store.apply(&id(1), &delta).await.unwrap();
            let loaded = store.load_shared(&id(1)).await.unwrap().unwrap();
            assert_eq!(loaded.meta_data["n"], n);
        }
        let held = store
            .inner
            .decoded
            .0
            .iter()
            .filter(|entry| entry.read().unwrap().is_some())
            .count();
        assert_eq!(held, 1);
    }

    #[tokio::test]
    async fn a_recreated_session_is_never_served_from_its_old_decode() {
        let store = MemoryStore::new();
        store.create(session(1)).await.unwrap();
        let old = store.load_shared(&id(1)).await.unwrap().unwrap();
        store.delete(&id(1)).await.unwrap();
        assert!(store.load_shared(&id(1)).await.unwrap().is_none());
        // Same key, same version (1) as before: only the stamp tells them apart.
        store.create(session(1).with_alias("carol")).await.unwrap();
        let new = store.load_shared(&id(1)).await.unwrap().unwrap();
        assert_eq!((old.version, new.version), (1, 1));
        assert_eq!(new.alias, "carol");
    }

    #[tokio::test]
    async fn shared_loads_of_many_sessions_stay_correct_past_the_table_size() {
        let store = MemoryStore::new();
        let n = u32::try_from(DECODED_SLOTS).unwrap() + 100;
        for i in 0..n {
            store
                .create(session(i).with_alias(format!("a{i}")))
                .await
                .unwrap();
        }
        for _ in 0..2 {
            for i in (0..n).step_by(7) {
                let loaded = store.load_shared(&id(i)).await.unwrap().unwrap();
                assert_eq!(loaded.alias, format!("a{i}"));
                assert_eq!(loaded.key_id, id(i));
            }
        }
    }

    #[tokio::test]
    async fn default_store_keeps_the_default_grace_period() {
        let store = MemoryStore::default();
        let expired = session(1).with_expires(unix_now() - 10);
        store.create(expired).await.unwrap();
        assert!(store.load_shared(&id(1)).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn replace_checks_version_and_existence() {
        let store = MemoryStore::new();
        assert!(matches!(
            store.replace(session(1)).await,
            Err(StoreError::NotFound)
        ));
        store.create(session(1)).await.unwrap();
        let mut stale = session(1);
        stale.version = 7;
        assert!(matches!(
            store.replace(stale).await,
            Err(StoreError::Conflict {
                expected: 7,
                found: 1
            })
        ));
        let replaced = store.replace(session(1).with_alias("bob")).await.unwrap();
        assert_eq!(replaced.version, 2);
        let page = store.list_by_alias("bob", None, 10).await.unwrap();
        assert_eq!(page.items.len(), 1);
        assert!(
            store
                .list_by_alias("alice", None, 10)
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }

    #[tokio::test]
    async fn apply_never_recreates_a_deleted_session() {
        let store = MemoryStore::new();
        store.create(session(1)).await.unwrap();
        assert!(store.delete(&id(1)).await.unwrap().is_some());
        let mut delta = MetadataDelta::new();
        delta.set("a", json!("b"));
        assert_eq!(store.apply(&id(1), &delta).await.unwrap(), None);
        assert_eq!(store.load(&id(1)).await.unwrap(), None);
        assert!(store.delete(&id(1)).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn apply_keeps_expiry() {
        let store = MemoryStore::new();
        let far = unix_now() + 10_000;
        store.create(session(1).with_expires(far)).await.unwrap();
        let mut delta = MetadataDelta::new();
        delta.set("a", json!("b"));
        let applied = store.apply(&id(1), &delta).await.unwrap().unwrap();
        assert_eq!(applied.expires, far);
    }

    #[tokio::test]
    async fn expired_sessions_are_kept_for_the_grace_period_then_swept() {
        let store = MemoryStore::new();
        store
            .create(session(1).with_expires(unix_now() - 10))
            .await
            .unwrap();
        assert!(store.load(&id(1)).await.unwrap().unwrap().is_expired());

        let strict = MemoryStore::with_expiry_grace(Duration::ZERO);
        strict
            .create(session(1).with_expires(unix_now() - 10))
            .await
            .unwrap();
        assert_eq!(strict.load(&id(1)).await.unwrap(), None);
        assert_eq!(strict.len(), 1);
        strict.sweep();
        assert!(strict.is_empty());
    }

    #[tokio::test]
    async fn writes_sweep_dead_sessions_without_an_explicit_call() {
        let store = MemoryStore::with_expiry_grace(Duration::ZERO);
        let past = unix_now() - 10;
        for n in 0..2000 {
            store.create(session(n).with_expires(past)).await.unwrap();
        }
        assert!(store.len() < 1024, "{} sessions kept", store.len());
    }

    #[tokio::test]
    async fn listings_page_with_cursors() {
        let store = MemoryStore::new();
        for n in 0..5 {
            store.create(session(n)).await.unwrap();
        }
        store
            .create(
                SessionRecord::default()
                    .with_key_id(id(99))
                    .with_alias("zed"),
            )
            .await
            .unwrap();
        let first = store.list_by_alias("alice", None, 2).await.unwrap();
        assert_eq!(first.items.len(), 2);
        let second = store
            .list_by_alias("alice", first.next.as_deref(), 2)
            .await
            .unwrap();
        let third = store
            .list_by_alias("alice", second.next.as_deref(), 2)
            .await
            .unwrap();
        assert_eq!(third.items.len(), 1);
        assert_eq!(third.next, None);
        let mut seen: Vec<_> = [first, second, third]
            .into_iter()
            .flat_map(|p| p.items)
            .map(|s| s.key_id)
            .collect();
        seen.dedup();
        assert_eq!(seen.len(), 5);

        let keys = store.list_keys(None, 10).await.unwrap();
        assert_eq!(keys.items.len(), 6);
        assert_eq!(keys.next, None);
    }

    #[tokio::test]
    async fn every_field_survives_the_store() {
        let store = MemoryStore::new();
        let mut full = SessionRecord::new(
            json!({"user_id": "u-1", "n": -3, "f": 1.5, "deep": {"a": [true, null]}})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .with_key_id(id(1))
        .with_alias("alice")
        .with_expires(unix_now() + 10_000)
        .with_policies(["gold", "eu"]);
        full.org_id = "org-1".into();
        full.is_inactive = true;
        full.tags = vec!["t".into()];
        full.rate = 10.0;
        full.per = 1.0;
        full.quota_max = 100;
        full.quota_remaining = 42;
        full.quota_renewal_rate = 3600;
        full.quota_renews = 1_800_000_000;
        full.date_created = 1_600_000_000;

        let created = store.create(full.clone()).await.unwrap();
        assert_eq!(created.date_created, 1_600_000_000);
        assert_eq!(store.load(&id(1)).await.unwrap().as_ref(), Some(&created));

        let mut delta = MetadataDelta::new();
        delta.set("plan", json!("gold")).delete("n");
        let applied = store.apply(&id(1), &delta).await.unwrap().unwrap();
        let mut expected = created.clone();
        delta.apply_to(&mut expected.meta_data);
        expected.version = 2;
        expected.last_updated = applied.last_updated;
        assert_eq!(applied, expected);
        assert_eq!(store.load(&id(1)).await.unwrap().as_ref(), Some(&applied));

        let listed = store.list_by_alias("alice", None, 10).await.unwrap();
        assert_eq!(listed.items, vec![applied.clone()]);

        let mut changed = applied.clone().with_alias("bob");
        changed.tags.clear();
        let replaced = store.replace(changed).await.unwrap();
        assert_eq!(replaced.version, 3);
        assert_eq!(replaced.date_created, 1_600_000_000);
        assert_eq!(store.load(&id(1)).await.unwrap().as_ref(), Some(&replaced));
        assert!(
            store
                .list_by_alias("alice", None, 10)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert_eq!(store.delete(&id(1)).await.unwrap(), Some(replaced));
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn non_canonical_key_ids_are_stored_and_listed_in_string_order() {
        // Key ids deserialised from JSON are not checked; the store keeps them as strings and
        // orders them among the digests exactly as the strings sort.
        let store = MemoryStore::new();
        let odd: Vec<KeyId> = ["", "0", "zzz", &"A".repeat(64), &"f".repeat(65)]
            .iter()
            .map(|s| serde_json::from_value(json!(s)).unwrap())
            .collect();
        let mut all: Vec<KeyId> = (0..6).map(id).chain(odd.iter().cloned()).collect();
        for key in &all {
            store
                .create(
                    SessionRecord::default()
                        .with_key_id(key.clone())
                        .with_alias("mix"),
                )
                .await
                .unwrap();
        }
        for key in &odd {
            assert_eq!(&store.load(key).await.unwrap().unwrap().key_id, key);
        }
        all.sort();

        let mut listed = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store.list_keys(cursor.as_deref(), 3).await.unwrap();
            listed.extend(page.items);
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(listed, all);

        let mut by_alias = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store
                .list_by_alias("mix", cursor.as_deref(), 4)
                .await
                .unwrap();
            by_alias.extend(page.items.into_iter().map(|s| s.key_id));
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(by_alias, all);

        // A cursor that is no key id still pages from where its string sorts.
        let after = store.list_keys(Some("1"), 100).await.unwrap();
        let expected: Vec<KeyId> = all.iter().filter(|k| k.as_str() > "1").cloned().collect();
        assert_eq!(after.items, expected);
        assert!(store.delete(&odd[0]).await.unwrap().is_some());
        assert_eq!(store.len(), all.len() - 1);
    }

    #[tokio::test]
    async fn expired_sessions_leave_the_alias_index_when_swept() {
        let store = MemoryStore::with_expiry_grace(Duration::ZERO);
        store
            .create(session(1).with_expires(unix_now() - 10))
            .await
            .unwrap();
        store.create(session(2)).await.unwrap();
        store.sweep();
        assert_eq!(store.inner.read().by_alias.len(), 1);
        let page = store.list_by_alias("alice", None, 10).await.unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].key_id, id(2));
    }
}
