//! [`TykRedisStore`]: sessions in Tyk's own Redis layout.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use fred::clients::Client;
use fred::error::Error as FredError;
use fred::interfaces::{ClientLike, KeysInterface};
use fred::prelude::{Builder, Config, ReconnectPolicy};
use fred::types::scan::ScanType;
use fred::types::scripts::Script;
use fred::types::{Expiration, SetOptions, Value};
use futures_util::StreamExt as _;
use keycard_core::key::{KeyHasher, KeyId};
use keycard_core::metadata::MetadataDelta;
use keycard_core::session::{SessionRecord, unix_now};
use keycard_core::store::{Page, SessionStore, StoreError, StoreFuture};

use super::doc::{self, Doc};
use super::hash::{TykHashFunction, TykKeyHash};
use crate::config::{ConnectError, RedisStoreBuilder};
use crate::store::store_error;

/// Tyk's prefix of session keys (`RedisCluster{KeyPrefix: "apikey-"}` in Tyk's gateway).
pub const TYK_KEY_PREFIX: &str = "apikey-";

/// Read-modify-write attempts of one write before it gives up with `Unavailable`.
const MAX_ATTEMPTS: u32 = 16;
/// Writes of this store to one session are serialised by one of this many locks, so its own
/// concurrent writes do not race each other's compare-and-set; only foreign writers (Tyk, other
/// nodes) make a write retry.
const LOCK_STRIPES: usize = 64;
/// `list_keys` / `list_by_alias` refuse to list more keys than this under the prefix.
const MAX_LISTED: usize = 1_000_000;
/// Sessions read at once while a listing checks candidates.
const LIST_BATCH: usize = 100;

/// `KEYS[1]` session. `ARGV`: the text read, the text to write, TTL mode (`keep`, `persist`, or
/// unix seconds for `EXAT`). Returns 0 gone, 1 changed since read (nothing written), 2 written.
/// Lua compares strings only; it never decodes the JSON (its numbers are doubles).
const COMPARE_AND_SET: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cur ~= ARGV[1] then return 1 end
if ARGV[3] == 'keep' then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
elseif ARGV[3] == 'persist' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[3])
end
return 2
";

/// A [`SessionStore`] on sessions as Tyk stores them; see the [module docs](super).
///
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct TykRedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    prefix: String,
    hash: TykKeyHash,
    grace: i64,
    cas: Script,
    locks: Box<[tokio::sync::Mutex<()>]>,
    stripes: RandomState,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            runtime.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
}

impl std::fmt::Debug for TykRedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TykRedisStore")
            .field("prefix", &self.inner.prefix)
            .field("key_hash", &self.inner.hash)
            .field("expiry_grace_secs", &self.inner.grace)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TykRedisStore`]: the connection settings of a [`RedisStoreBuilder`] plus Tyk's
/// layout (key prefix, key hashing). Start from [`TykRedisStore::url`] or
/// [`TykRedisStore::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct TykRedisStoreBuilder {
    redis: RedisStoreBuilder,
    prefix: String,
    hash: TykKeyHash,
}

impl TykRedisStore {
    /// A store for a Redis URL (the URLs [`RedisStore::url`](crate::RedisStore::url) takes).
    ///
    /// # Errors
    /// [`ConnectError::Config`] if the URL cannot be parsed.
    pub fn url(url: &str) -> Result<TykRedisStoreBuilder, ConnectError> {
        Ok(Self::builder(crate::RedisStore::url(url)?))
    }

    /// A store for a fred [`Config`] (any topology, credentials, TLS...).
    pub fn config(config: Config) -> TykRedisStoreBuilder {
        Self::builder(crate::RedisStore::config(config))
    }

    /// A store with the connection settings of a [`RedisStoreBuilder`] (topology, timeouts,
    /// reconnect policy, expiry grace). Its key prefix, cache and `min_replicas_ack` do not
    /// apply here: the layout is Tyk's, and this store has no cache and does not `WAIT`.
    pub fn builder(redis: RedisStoreBuilder) -> TykRedisStoreBuilder {
        TykRedisStoreBuilder {
            redis,
            prefix: TYK_KEY_PREFIX.to_owned(),
            hash: TykKeyHash::new(),
        }
    }
}

impl TykRedisStoreBuilder {
    /// The prefix of session keys (default [`TYK_KEY_PREFIX`], `apikey-`, as Tyk's gateway).
    /// Change it only for a Tyk that writes elsewhere, or to isolate tests.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Tyk's `hash_keys` (default on); see [`TykKeyHash::hash_keys`].
    pub fn hash_keys(mut self, on: bool) -> Self {
        self.hash = self.hash.hash_keys(on);
        self
    }

    /// Tyk's `hash_key_function`; see [`TykKeyHash::hash_key_function`].
    pub fn hash_key_function(mut self, function: TykHashFunction) -> Self {
        self.hash = self.hash.hash_key_function(function);
        self
    }

    /// The org of the fronted APIs; see [`TykKeyHash::org_id`].
    pub fn org_id(mut self, org_id: impl Into<String>) -> Self {
        self.hash = self.hash.org_id(org_id);
        self
    }

    /// All of Tyk's key hashing settings at once.
    pub fn key_hash(mut self, hash: TykKeyHash) -> Self {
        self.hash = hash;
        self
    }

    /// How long one command may take (default 1 s); as [`RedisStoreBuilder::command_timeout`].
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.redis = self.redis.command_timeout(timeout);
        self
    }

    /// How long opening a connection may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.redis = self.redis.connect_timeout(timeout);
        self
    }

    /// How long past its `expires` a session stays loadable (reported expired: 401) before
    /// keycard treats it as gone (default one hour). Tyk itself answers "expired" until the
    /// key's TTL ends; give a long grace to follow it.
    pub fn expiry_grace(mut self, grace: Duration) -> Self {
        self.redis = self.redis.expiry_grace(grace);
        self
    }

    /// The reconnect policy (default: exponential backoff from 50 ms to 500 ms, forever).
    pub fn reconnect_policy(mut self, policy: ReconnectPolicy) -> Self {
        self.redis = self.redis.reconnect_policy(policy);
        self
    }

    /// Connects and loads the compare-and-set script.
    ///
    /// # Errors
    /// [`ConnectError::Config`] for an invalid configuration (an empty prefix),
    /// [`ConnectError::Connect`] when Redis cannot be reached within the connect timeout.
    pub async fn connect(self) -> Result<TykRedisStore, ConnectError> {
        if self.prefix.is_empty() {
            return Err(ConnectError::Config(
                "the Tyk key prefix must be non-empty (Tyk's is \"apikey-\")".into(),
            ));
        }
        let redis = self.redis.finish()?;
        let client = fred_client(&redis.fred)?;
        let cas = Script::from_lua(COMPARE_AND_SET);
        let budget = redis.connect_timeout + redis.command_timeout * 2;
        let setup = async {
            client.init().await?;
            cas.load(&client).await?;
            Ok::<_, FredError>(())
        };
        let result = match tokio::time::timeout(budget, setup).await {
            Ok(result) => result,
            Err(_) => Err(FredError::new(
                fred::error::ErrorKind::Timeout,
                "connecting to Redis timed out",
            )),
        };
        if let Err(error) = result {
            let _ = client.quit().await;
            return Err(ConnectError::Connect(error));
        }
        let grace = i64::try_from(redis.expiry_grace.as_secs()).unwrap_or(i64::MAX);
        Ok(TykRedisStore {
            inner: Arc::new(Inner {
                client,
                prefix: self.prefix,
                hash: self.hash,
                grace,
                cas,
                locks: (0..LOCK_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
                stripes: RandomState::new(),
            }),
        })
    }
}

fn fred_client(builder: &Builder) -> Result<Client, ConnectError> {
    builder.build().map_err(ConnectError::Connect)
}

/// What the compare-and-set did.
enum Cas {
    Gone,
    Changed,
    Written,
}

/// How a write treats the key's TTL.
enum Ttl {
    Keep,
    Persist,
    At(i64),
}

impl Ttl {
    fn arg(&self) -> String {
        match self {
            Self::Keep => "keep".to_owned(),
            Self::Persist => "persist".to_owned(),
            Self::At(at) => at.to_string(),
        }
    }
}

fn corrupt(key_id: &KeyId, why: String) -> StoreError {
    StoreError::Corrupt(format!("Tyk session {}: {why}", key_id.short()))
}

fn gave_up(what: &str) -> StoreError {
    StoreError::unavailable(format!(
        "{what}: the Tyk session kept changing under {MAX_ATTEMPTS} compare-and-set attempts"
    ))
}

/// A key id for a Redis key suffix that is not a SHA-256 digest (Tyk's murmur hashes, raw keys).
fn key_id_of(suffix: &str) -> KeyId {
    KeyId::from_hash(suffix).unwrap_or_else(|| {
        serde_json::from_value(serde_json::Value::String(suffix.to_owned())).unwrap_or_default()
    })
}

/// `pattern` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Jittered exponential backoff before retry `attempt` (1 ms up to about 50 ms).
async fn backoff(attempt: u32) {
    let base = 1u64 << attempt.min(5);
    let jitter = RandomState::new().hash_one((attempt, std::time::SystemTime::now())) % (base + 1);
    tokio::time::sleep(Duration::from_millis((base + jitter).min(50))).await;
}

impl TykRedisStore {
    /// The fred client, for operations outside the store (health checks, tests).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The Redis key of a session: the prefix and the key id (Tyk's hash of the key).
    pub fn session_key(&self, key_id: &KeyId) -> String {
        format!("{}{}", self.inner.prefix, key_id.as_str())
    }

    /// Tyk's key hashing this store was built with.
    pub fn key_hash(&self) -> &TykKeyHash {
        &self.inner.hash
    }

    /// The [`KeyHasher`] of a stack in front of this store ([`TykKeyHash::key_hasher`]):
    /// `Keycard::new(store.clone()).key_hasher(store.key_hasher())`.
    pub fn key_hasher(&self) -> KeyHasher {
        self.inner.hash.key_hasher()
    }

    /// The key id of a presented key in this layout ([`TykKeyHash::hash`]).
    pub fn key_id(&self, key: &str) -> KeyId {
        key_id_of(&self.inner.hash.hash(key))
    }
}

impl Inner {
    fn key(&self, key_id: &KeyId) -> String {
        format!("{}{}", self.prefix, key_id.as_str())
    }

    /// Whether a stored session is still visible: not past `expires` + grace.
    fn live(&self, record: &SessionRecord, now: i64) -> bool {
        record.expires < 1 || record.expires.saturating_add(self.grace) >= now
    }

    /// The TTL a session with `expires` gets: it ends one second after the grace period.
    fn ttl_for(&self, expires: i64) -> Option<i64> {
        (expires >= 1).then(|| expires.saturating_add(self.grace).saturating_add(1))
    }

    fn lock(&self, key_id: &KeyId) -> &tokio::sync::Mutex<()> {
        let at = usize::try_from(self.stripes.hash_one(key_id.as_str()) % LOCK_STRIPES as u64)
            .unwrap_or_default();
        &self.locks[at]
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.client
            .get::<Option<String>, _>(key)
            .await
            .map_err(store_error)
    }

    /// The stored document, if there is one and it is live.
    async fn read(&self, key_id: &KeyId) -> Result<Option<Doc>, StoreError> {
        let Some(text) = self.get(&self.key(key_id)).await? else {
            return Ok(None);
        };
        let mut doc = Doc::parse(text).map_err(|why| corrupt(key_id, why))?;
        if !self.live(&doc.record, unix_now()) {
            return Ok(None);
        }
        doc.record.key_id = key_id.clone();
        Ok(Some(doc))
    }

    async fn compare_and_set(
        &self,
        key: String,
        old: &str,
        new: String,
        ttl: &Ttl,
    ) -> Result<Cas, StoreError> {
        let reply = self
            .cas
            .evalsha_with_reload::<Value, _, _>(
                &self.client,
                vec![key],
                vec![old.to_owned(), new, ttl.arg()],
            )
            .await
            .map_err(store_error)?;
        match reply.as_i64() {
            Some(0) => Ok(Cas::Gone),
            Some(1) => Ok(Cas::Changed),
            Some(2) => Ok(Cas::Written),
            _ => Err(StoreError::Corrupt(format!(
                "unexpected compare-and-set reply {:?}",
                reply.kind()
            ))),
        }
    }

    /// The record a written text reads back as.
    fn written(key_id: &KeyId, text: String) -> Result<SessionRecord, StoreError> {
        let mut record = Doc::parse(text).map_err(|why| corrupt(key_id, why))?.record;
        record.key_id = key_id.clone();
        Ok(record)
    }

    async fn apply(
        &self,
        key_id: &KeyId,
        delta: &MetadataDelta,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let _serialised = self.lock(key_id).lock().await;
        for attempt in 0..MAX_ATTEMPTS {
            let Some(doc) = self.read(key_id).await? else {
                return Ok(None);
            };
            let text = doc
                .applied(delta, unix_now())
                .map_err(|why| corrupt(key_id, why))?;
            match self
                .compare_and_set(self.key(key_id), &doc.text, text.clone(), &Ttl::Keep)
                .await?
            {
                Cas::Written => return Ok(Some(Self::written(key_id, text)?)),
                Cas::Gone => return Ok(None),
                Cas::Changed => backoff(attempt).await,
            }
        }
        Err(gave_up("metadata delta not applied"))
    }

    async fn create(&self, mut session: SessionRecord) -> Result<SessionRecord, StoreError> {
        if session.key_id.as_str().is_empty() {
            return Err(StoreError::Invalid("a session needs a key id".into()));
        }
        let now = unix_now();
        if session.date_created == 0 {
            session.date_created = now;
        }
        session.last_updated = now;
        let text = doc::create(&session).map_err(StoreError::Invalid)?;
        let key = self.key(&session.key_id);
        let ttl = self.ttl_for(session.expires);
        let _serialised = self.lock(&session.key_id).lock().await;
        for attempt in 0..MAX_ATTEMPTS {
            let set: Option<String> = self
                .client
                .set(
                    key.as_str(),
                    text.as_str(),
                    ttl.map(Expiration::EXAT),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .map_err(store_error)?;
            if set.is_some() {
                return Self::written(&session.key_id, text);
            }
            // Taken: by a live session, or by one past its grace period that Tyk keeps (no TTL),
            // which a create may take over, as `MemoryStore` does.
            let Some(existing) = self.get(&key).await? else {
                continue;
            };
            let dead = Doc::parse(existing.clone()).is_ok_and(|doc| !self.live(&doc.record, now));
            if !dead {
                return Err(StoreError::AlreadyExists);
            }
            let mode = ttl.map_or(Ttl::Persist, Ttl::At);
            match self
                .compare_and_set(key.clone(), &existing, text.clone(), &mode)
                .await?
            {
                Cas::Written => return Self::written(&session.key_id, text),
                Cas::Gone | Cas::Changed => backoff(attempt).await,
            }
        }
        Err(gave_up("session not created"))
    }

    async fn replace(&self, session: SessionRecord) -> Result<SessionRecord, StoreError> {
        let key_id = session.key_id.clone();
        let _serialised = self.lock(&key_id).lock().await;
        for attempt in 0..MAX_ATTEMPTS {
            let Some(doc) = self.read(&key_id).await? else {
                return Err(StoreError::NotFound);
            };
            if session.version != 0 && session.version != doc.record.version {
                return Err(StoreError::Conflict {
                    expected: session.version,
                    found: doc.record.version,
                });
            }
            let mut next = session.clone();
            next.date_created = doc.record.date_created;
            let text = doc
                .replaced(&next, unix_now())
                .map_err(StoreError::Invalid)?;
            // The TTL changes only with `expires`: a TTL Tyk set (its session lifetime) stays.
            let ttl = if next.expires == doc.record.expires {
                Ttl::Keep
            } else {
                self.ttl_for(next.expires).map_or(Ttl::Persist, Ttl::At)
            };
            match self
                .compare_and_set(self.key(&key_id), &doc.text, text.clone(), &ttl)
                .await?
            {
                Cas::Written => return Self::written(&key_id, text),
                Cas::Gone => return Err(StoreError::NotFound),
                Cas::Changed => backoff(attempt).await,
            }
        }
        Err(gave_up("session not replaced"))
    }

    async fn delete(&self, key_id: &KeyId) -> Result<Option<SessionRecord>, StoreError> {
        let text: Option<String> = self
            .client
            .getdel(self.key(key_id))
            .await
            .map_err(store_error)?;
        let Some(text) = text else { return Ok(None) };
        let record = Self::written(key_id, text)?;
        Ok(self.live(&record, unix_now()).then_some(record))
    }

    /// Every key id under the prefix (string keys only), sorted: one `SCAN` of the keyspace
    /// (of every primary in a cluster).
    async fn scan_ids(&self) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut keys = if self.client.is_clustered() {
            self.client
                .scan_cluster_buffered(pattern, Some(1000), Some(ScanType::String))
                .boxed()
        } else {
            self.client
                .scan_buffered(pattern, Some(1000), Some(ScanType::String))
                .boxed()
        };
        let mut ids = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(store_error)?;
            if let Some(id) = key
                .as_str()
                .and_then(|k| k.strip_prefix(self.prefix.as_str()))
            {
                ids.push(id.to_owned());
            }
            if ids.len() > MAX_LISTED {
                return Err(StoreError::Invalid(format!(
                    "more than {MAX_LISTED} sessions under {:?}: Tyk's layout has no index to list them by",
                    self.prefix
                )));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The live sessions after `after`, in key-id order, that `keep` accepts: at most `limit`,
    /// with a cursor when there are more.
    async fn list(
        &self,
        after: Option<&str>,
        limit: usize,
        keep: impl Fn(&SessionRecord) -> bool,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let ids = self.scan_ids().await?;
        let start = after.map_or(0, |cursor| ids.partition_point(|id| id.as_str() <= cursor));
        let mut items = Vec::new();
        for batch in ids[start..].chunks(LIST_BATCH) {
            let reads = batch.iter().map(|id| {
                let key_id = key_id_of(id);
                async move { self.read(&key_id).await.map(|doc| doc.map(|d| d.record)) }
            });
            for record in futures_util::future::join_all(reads).await {
                match record {
                    Ok(Some(record)) if keep(&record) => items.push(record),
                    // Gone meanwhile, or past its grace period; a stored value that is not a
                    // Tyk session is skipped too (it shows in `load`).
                    Ok(_) | Err(StoreError::Corrupt(_)) => {}
                    Err(other) => return Err(other),
                }
                if items.len() > limit {
                    items.truncate(limit);
                    let next = items.last().map(|s| s.key_id.as_str().to_owned());
                    return Ok(Page { items, next });
                }
            }
        }
        Ok(Page { items, next: None })
    }
}

impl SessionStore for TykRedisStore {
    fn load<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(async move { Ok(self.inner.read(key_id).await?.map(|doc| doc.record)) })
    }

    fn create(&self, session: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        Box::pin(self.inner.create(session))
    }

    fn replace(&self, session: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        Box::pin(self.inner.replace(session))
    }

    fn apply<'a>(
        &'a self,
        key_id: &'a KeyId,
        delta: &'a MetadataDelta,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(self.inner.apply(key_id, delta))
    }

    fn delete<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(self.inner.delete(key_id))
    }

    fn list_by_alias<'a>(
        &'a self,
        alias: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<SessionRecord>> {
        Box::pin(self.inner.list(after, limit, move |s| s.alias == alias))
    }

    fn list_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<KeyId>> {
        Box::pin(async move {
            let page = self.inner.list(after, limit, |_| true).await?;
            Ok(Page {
                items: page.items.into_iter().map(|s| s.key_id).collect(),
                next: page.next,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_escape_glob_characters() {
        assert_eq!(glob_escape("apikey-"), "apikey-");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn murmur_hashes_become_key_ids_as_they_are() {
        assert_eq!(key_id_of("319d3ab3").as_str(), "319d3ab3");
        let digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(key_id_of(digest), KeyId::from_hash(digest).unwrap());
    }
}
