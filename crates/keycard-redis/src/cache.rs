//! The local session cache: bounded, with a TTL backstop, invalidated by Redis client tracking.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keycard_core::metadata::MetadataDelta;
use keycard_core::session::{SessionRecord, unix_now};

/// Settings of the local cache in front of a [`RedisStore`](crate::RedisStore).
///
/// The cache holds sessions as stored (policies are applied by the layers on every load). It is
/// invalidated within milliseconds by Redis client tracking on every write from any node; `ttl` is
/// only a backstop for invalidations lost while a connection was down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The most sessions kept; the oldest entry is dropped first. Default 10 000.
    pub max_entries: usize,
    /// How long an entry is served at most. Default 10 s.
    pub ttl: Duration,
}

impl CacheConfig {
    /// A cache of `max_entries` sessions kept at most `ttl` each.
    pub const fn new(max_entries: usize, ttl: Duration) -> Self {
        Self { max_entries, ttl }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self::new(10_000, Duration::from_secs(10))
    }
}

/// Shards of the invalidation epoch (see [`LocalCache::epoch`]).
const EPOCH_SHARDS: usize = 64;

#[derive(Debug)]
pub(crate) struct LocalCache {
    config: CacheConfig,
    state: Mutex<State>,
    /// Bumped on every invalidation of a key in the shard. A load records the epoch before asking
    /// Redis and fills the cache only if it is unchanged, so an invalidation that overtakes the
    /// reply it concerns cannot leave a stale entry behind.
    epochs: [AtomicU64; EPOCH_SHARDS],
    hasher: RandomState,
    /// False while tracking is not (yet, or no longer) confirmed on every connection: nothing is
    /// served or filled then.
    tracking: AtomicBool,
    /// Grace period of the store: an entry past `expires + grace` is not served.
    grace_secs: i64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Insertion order, for eviction; stale positions (the entry was replaced or removed) are
    /// skipped by comparing `seq`.
    order: VecDeque<(String, u64)>,
    seq: u64,
    /// Per key, the lowest version a fill may bring (left by an own write that could not
    /// advance its entry): a load that read Redis before that write must not fill the cache
    /// afterwards, and no invalidation will come for an own write (`NOLOOP`).
    floors: HashMap<String, u64>,
}

#[derive(Debug)]
struct Entry {
    session: Arc<SessionRecord>,
    at: Instant,
    seq: u64,
    /// Own writes past `session.version + 1`, by version: their replies were handled before the
    /// reply of a write they follow. The entry is not served while any is held (it would miss
    /// a write this node has already acknowledged); they are applied as the gap closes.
    pending: Vec<Pending>,
}

/// An own write held until the write before it is applied.
#[derive(Debug)]
struct Pending {
    version: u64,
    updated: i64,
    delta: MetadataDelta,
}

/// The most own writes an entry holds for a gap; past that it is dropped.
const MAX_PENDING: usize = 64;

impl Entry {
    /// Applies the held writes that now follow on, and forgets those already covered.
    fn drain(&mut self) {
        while let Some(next) = self.pending.first() {
            if next.version <= self.session.version {
                self.pending.remove(0);
            } else if Some(next.version) == self.session.version.checked_add(1) {
                let next = self.pending.remove(0);
                self.session = Arc::new(advanced(&self.session, &next));
                self.at = Instant::now();
            } else {
                break;
            }
        }
    }
}

/// The session after an own write: the delta applied, as the save script applied it.
fn advanced(before: &SessionRecord, write: &Pending) -> SessionRecord {
    let mut after = before.clone();
    write.delta.apply_to(&mut after.meta_data);
    after.version = write.version;
    after.last_updated = write.updated;
    after
}

impl LocalCache {
    pub(crate) fn new(config: CacheConfig, grace: Duration) -> Self {
        Self {
            config,
            state: Mutex::default(),
            epochs: std::array::from_fn(|_| AtomicU64::new(0)),
            hasher: RandomState::new(),
            tracking: AtomicBool::new(false),
            grace_secs: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the maps consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shard(&self, key_id: &str) -> &AtomicU64 {
        let hash = self.hasher.hash_one(key_id);
        // Truncation is the intent: any bits pick a shard.
        #[allow(clippy::cast_possible_truncation)]
        &self.epochs[(hash as usize) % EPOCH_SHARDS]
    }

    /// The token to pass to [`LocalCache::fill`] after the load it precedes.
    pub(crate) fn epoch(&self, key_id: &str) -> u64 {
        self.shard(key_id).load(Ordering::Acquire)
    }

    pub(crate) fn get(&self, key_id: &str) -> Option<Arc<SessionRecord>> {
        if !self.tracking.load(Ordering::Acquire) {
            return None;
        }
        let mut state = self.state();
        let entry = state.entries.get(key_id)?;
        if !entry.pending.is_empty() {
            return None;
        }
        let live = entry.session.expires < 1
            || entry.session.expires.saturating_add(self.grace_secs) >= unix_now();
        if entry.at.elapsed() <= self.config.ttl && live {
            return Some(entry.session.clone());
        }
        state.entries.remove(key_id);
        None
    }

    /// Caches a loaded session unless its shard was invalidated since `epoch` was taken.
    pub(crate) fn fill(&self, session: &Arc<SessionRecord>, epoch: u64) {
        if self.config.max_entries == 0 || !self.tracking.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state();
        // Checked under the lock: `invalidate` bumps the epoch before it takes the lock, so either
        // it sees this entry and removes it, or this check sees the new epoch.
        if self.epoch(session.key_id.as_str()) != epoch {
            return;
        }
        // A load read before an own write may answer after that write advanced the entry, or
        // dropped it leaving a floor: never go back to an older version (versions only grow; a
        // delete invalidates).
        let id = session.key_id.as_str();
        if state
            .entries
            .get(id)
            .is_some_and(|entry| entry.session.version > session.version)
            || state
                .floors
                .get(id)
                .is_some_and(|&floor| floor > session.version)
        {
            return;
        }
        state.floors.remove(id);
        let pending = state
            .entries
            .get_mut(id)
            .map(|entry| std::mem::take(&mut entry.pending))
            .unwrap_or_default();
        state.seq += 1;
        let seq = state.seq;
        let mut entry = Entry {
            session: session.clone(),
            at: Instant::now(),
            seq,
            pending,
        };
        entry.drain();
        state
            .entries
            .insert(session.key_id.as_str().to_owned(), entry);
        state
            .order
            .push_back((session.key_id.as_str().to_owned(), seq));
        while state.entries.len() > self.config.max_entries {
            let Some((id, seq)) = state.order.pop_front() else {
                break;
            };
            if state.entries.get(&id).is_some_and(|e| e.seq == seq) {
                state.entries.remove(&id);
            }
        }
        if state.order.len() > 2 * self.config.max_entries.max(16) {
            let State { entries, order, .. } = &mut *state;
            order.retain(|(id, seq)| entries.get(id).is_some_and(|e| e.seq == *seq));
        }
    }

    /// After this node's own write moved the session in Redis to `version` (with `delta`, at
    /// `updated`): the cached entry follows it if it holds exactly the state before that write
    /// (`version - 1`) and nothing was invalidated in its shard since `epoch` (taken before the
    /// write was sent). Redis bumps the version once per write, so an entry at `version - 1`
    /// plus this write's delta *is* the stored state at `version`. A reply handled before the
    /// one of an earlier own write is held (the entry is not served meanwhile) and applied when
    /// the gap closes; an entry already at `version` or later is kept. Anything else — no entry,
    /// an invalidation since the write was sent, too many held writes — drops the entry and
    /// leaves a floor at `version`, so no load that read Redis before this write fills the cache
    /// with what it read. A foreign write in between shows as a gap that never closes (and its
    /// invalidation drops the entry); one after arrives as an invalidation.
    pub(crate) fn advance(
        &self,
        key_id: &str,
        epoch: u64,
        version: u64,
        updated: i64,
        delta: &MetadataDelta,
    ) {
        let mut state = self.state();
        let serving = self.tracking.load(Ordering::Acquire) && self.epoch(key_id) == epoch;
        match state.entries.get_mut(key_id) {
            Some(entry) if entry.session.version >= version => {}
            Some(entry) if serving && entry.pending.len() < MAX_PENDING => {
                let at = entry.pending.partition_point(|held| held.version < version);
                if entry
                    .pending
                    .get(at)
                    .is_none_or(|held| held.version != version)
                {
                    let write = Pending {
                        version,
                        updated,
                        delta: delta.clone(),
                    };
                    entry.pending.insert(at, write);
                }
                entry.drain();
            }
            _ => {
                state.entries.remove(key_id);
                let floor = state.floors.entry(key_id.to_owned()).or_default();
                *floor = (*floor).max(version);
                if state.floors.len() > self.config.max_entries.max(16) {
                    // Bounded: forgetting the floors is safe only together with every epoch.
                    drop(state);
                    self.clear();
                }
            }
        }
    }

    pub(crate) fn invalidate(&self, key_id: &str) {
        self.shard(key_id).fetch_add(1, Ordering::AcqRel);
        let mut state = self.state();
        state.entries.remove(key_id);
        // The epoch now refuses every load that started before this point, which is all a floor
        // guarded against (a delete and re-create starts the versions over).
        state.floors.remove(key_id);
    }

    pub(crate) fn clear(&self) {
        for epoch in &self.epochs {
            epoch.fetch_add(1, Ordering::AcqRel);
        }
        let mut state = self.state();
        state.entries.clear();
        state.order.clear();
        state.floors.clear();
    }

    /// Whether the cache is serving (tracking confirmed).
    pub(crate) fn is_tracking(&self) -> bool {
        self.tracking.load(Ordering::Acquire)
    }

    /// The configured TTL backstop.
    pub(crate) fn ttl(&self) -> Duration {
        self.config.ttl
    }

    /// Tracking was lost (connection error, reconnect, topology change): stop serving.
    pub(crate) fn tracking_lost(&self) {
        self.tracking.store(false, Ordering::Release);
        self.clear();
    }

    /// Tracking is confirmed on every connection: serve and fill again. Loads that started before
    /// this were read on connections that may not have been tracked, so their epochs are voided.
    pub(crate) fn tracking_on(&self) {
        self.clear();
        self.tracking.store(true, Ordering::Release);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycard_core::key::{ApiKey, KeyId};

    fn session(n: u32) -> Arc<SessionRecord> {
        Arc::new(SessionRecord::default().with_key_id(KeyId::of(&ApiKey::new(format!("k{n}")))))
    }

    fn cache(max: usize, ttl: Duration) -> LocalCache {
        let cache = LocalCache::new(CacheConfig::new(max, ttl), Duration::ZERO);
        cache.tracking_on();
        cache
    }

    #[test]
    fn is_bounded_and_drops_the_oldest() {
        let cache = cache(3, Duration::from_secs(10));
        for n in 0..10 {
            let s = session(n);
            cache.fill(&s, cache.epoch(s.key_id.as_str()));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(session(9).key_id.as_str()).is_some());
        assert!(cache.get(session(0).key_id.as_str()).is_none());
    }

    #[test]
    fn an_invalidation_during_a_load_prevents_the_fill() {
        let cache = cache(10, Duration::from_secs(10));
        let s = session(1);
        let epoch = cache.epoch(s.key_id.as_str());
        cache.invalidate(s.key_id.as_str());
        cache.fill(&s, epoch);
        assert!(cache.get(s.key_id.as_str()).is_none());
    }

    #[test]
    fn entries_expire_after_the_ttl_and_with_the_session() {
        let cache = cache(10, Duration::ZERO);
        let s = session(1);
        cache.fill(&s, cache.epoch(s.key_id.as_str()));
        std::thread::sleep(Duration::from_millis(2));
        assert!(cache.get(s.key_id.as_str()).is_none());

        let cache = self::cache(10, Duration::from_secs(10));
        let dead = Arc::new(Arc::unwrap_or_clone(session(2)).with_expires(unix_now() - 5));
        cache.fill(&dead, cache.epoch(dead.key_id.as_str()));
        assert!(cache.get(dead.key_id.as_str()).is_none());
    }

    fn round(n: i64) -> MetadataDelta {
        let mut delta = MetadataDelta::new();
        delta.set("round", serde_json::json!(n));
        delta
    }

    #[test]
    fn an_own_write_advances_the_entry_only_from_the_version_before_it() {
        let cache = cache(10, Duration::from_secs(10));
        let s = session(1);
        let v = s.version;
        let id = s.key_id.as_str();
        cache.fill(&s, cache.epoch(id));
        cache.advance(id, cache.epoch(id), v + 1, 7, &round(1));
        let advanced = cache.get(id).unwrap();
        assert_eq!(
            (
                advanced.version,
                advanced.last_updated,
                &advanced.meta_data["round"]
            ),
            (v + 1, 7, &serde_json::json!(1))
        );
        // A write two versions on (a foreign write, or an own reply handled early): held, and
        // the entry is not served meanwhile.
        cache.advance(id, cache.epoch(id), v + 3, 9, &round(3));
        assert!(cache.get(id).is_none(), "not served across a gap");
        // A load that read before that write cannot bring the old state back into service.
        cache.fill(&s, cache.epoch(id));
        assert!(cache.get(id).is_none());
        // The own write in the gap arrives: both apply, in order.
        cache.advance(id, cache.epoch(id), v + 2, 8, &round(2));
        let closed = cache.get(id).unwrap();
        assert_eq!(
            (closed.version, &closed.meta_data["round"]),
            (v + 3, &serde_json::json!(3))
        );
        // A later own write that got there first is kept.
        cache.advance(id, cache.epoch(id), v + 2, 8, &round(2));
        assert_eq!(cache.get(id).unwrap().version, v + 3);
        // An invalidation since the write was sent: dropped, with a floor.
        let epoch = cache.epoch(id);
        cache.invalidate(id);
        let mut newer = Arc::unwrap_or_clone(s.clone());
        newer.version = v + 3;
        cache.fill(&Arc::new(newer), cache.epoch(id));
        cache.advance(id, epoch, v + 4, 10, &round(4));
        assert!(cache.get(id).is_none());
        cache.fill(&s, cache.epoch(id));
        assert!(cache.get(id).is_none(), "the floor refuses an older fill");
    }

    #[test]
    fn a_gap_a_fill_covers_is_closed_by_it() {
        let cache = cache(10, Duration::from_secs(10));
        let s = session(1);
        let (v, id) = (s.version, s.key_id.as_str());
        cache.fill(&s, cache.epoch(id));
        cache.advance(id, cache.epoch(id), v + 3, 9, &round(3));
        cache.advance(id, cache.epoch(id), v + 5, 9, &round(5));
        let mut loaded = Arc::unwrap_or_clone(s.clone());
        loaded.version = v + 4;
        cache.fill(&Arc::new(loaded), cache.epoch(id));
        let served = cache.get(id).unwrap();
        assert_eq!(
            (served.version, &served.meta_data["round"]),
            (v + 5, &serde_json::json!(5))
        );
    }

    #[test]
    fn a_late_load_does_not_take_an_advanced_entry_back() {
        let cache = cache(10, Duration::from_secs(10));
        let s = session(1);
        let id = s.key_id.as_str();
        let late = cache.epoch(id); // a load sent now, answered after the write below
        cache.fill(&s, cache.epoch(id));
        cache.advance(id, cache.epoch(id), s.version + 1, 1, &round(1));
        cache.fill(&s, late);
        assert_eq!(cache.get(id).unwrap().version, s.version + 1);
    }

    #[test]
    fn nothing_is_served_without_tracking() {
        let cache = cache(10, Duration::from_secs(10));
        let s = session(1);
        cache.fill(&s, cache.epoch(s.key_id.as_str()));
        cache.tracking_lost();
        assert!(cache.get(s.key_id.as_str()).is_none());
        cache.fill(&s, cache.epoch(s.key_id.as_str()));
        cache.tracking_on();
        assert!(cache.get(s.key_id.as_str()).is_none());
    }
}
