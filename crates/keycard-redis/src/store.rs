//! [`RedisStore`]: the [`SessionStore`] implementation.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fred::clients::{Client, ExclusivePool};
use fred::error::Error as FredError;
use fred::interfaces::TrackingInterface;
use fred::interfaces::{ClientLike, EventInterface, HashesInterface, KeysInterface};
use fred::prelude::{Builder, Config, ServerConfig};
use fred::types::{ClusterHash, CustomCommand, Value};
use keycard_core::key::KeyId;
use keycard_core::metadata::MetadataDelta;
use keycard_core::session::{SessionRecord, unix_now};
use keycard_core::store::{Page, SessionStore, StoreError, StoreFuture};
use tokio::task::JoinHandle;

use crate::cache::LocalCache;
use crate::config::{ConnectError, RedisStoreBuilder};
use crate::layout::{self, IndexKeys, Layout};
use crate::scripts::Scripts;

/// Index entries pointing at no (or another) session are removed by a listing only when their
/// token is older than this, so an entry a concurrent create/replace just wrote (and whose session
/// write has not landed yet) is never removed. Generous to cover clock skew between nodes.
const CLEAN_AFTER_SECS: i64 = 60;
/// Index entries read per round of a listing at most.
const LIST_BATCH: usize = 500;
/// Rounds of a listing at most (a page ends early, with a cursor, after this many).
const LIST_ROUNDS: usize = 32;

/// A [`SessionStore`] on Redis (standalone, sentinel or cluster) through fred.
///
/// Cheap to clone; clones share the connection and the cache. See the [crate docs](crate) for
/// the key layout, the round trips of each operation and the cache.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    layout: Layout,
    scripts: Scripts,
    cache: Option<Arc<LocalCache>>,
    command_timeout: Duration,
    min_replicas_ack: u32,
    /// The connections of writes that wait for replicas (with `min_replicas_ack` only).
    acks: Option<ExclusivePool>,
    tasks: Vec<JoinHandle<Result<(), FredError>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, acks) = (self.client.clone(), self.acks.take());
            runtime.spawn(async move {
                let _ = client.quit().await;
                if let Some(acks) = acks {
                    let _ = acks.quit().await;
                }
            });
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.layout.prefix())
            .field("cache", &self.inner.cache.is_some())
            .field("command_timeout", &self.inner.command_timeout)
            .field("min_replicas_ack", &self.inner.min_replicas_ack)
            .finish_non_exhaustive()
    }
}

/// Transport, timeout and server errors are `Unavailable` (clients see 503); a key of the wrong
/// type under our prefix is corrupt data.
pub(crate) fn store_error(error: FredError) -> StoreError {
    if error.details().starts_with("WRONGTYPE") {
        StoreError::Corrupt(error.details().to_owned())
    } else {
        StoreError::unavailable(error)
    }
}

/// A fresh index token: `<unix seconds>.<64 random bits>`. The time lets a listing tell a stale
/// entry from one being written right now.
fn new_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one((n, std::time::SystemTime::now()));
    format!("{}.{random:016x}", unix_now())
}

fn token_is_old(token: &str) -> bool {
    token
        .split_once('.')
        .and_then(|(secs, _)| secs.parse::<i64>().ok())
        .is_none_or(|secs| secs + CLEAN_AFTER_SECS < unix_now())
}

fn key_id_from(member: String) -> KeyId {
    KeyId::from_hash(&member).unwrap_or_else(|| {
        serde_json::from_value(serde_json::Value::String(member)).unwrap_or_default()
    })
}

/// Whether a script reply reports a write (the scripts answer `false`, a nil, when they wrote
/// nothing).
fn is_some(reply: &Value) -> bool {
    !matches!(reply, Value::Null)
}

fn array(value: Value) -> Result<Vec<Value>, StoreError> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(StoreError::Corrupt(format!(
            "unexpected script reply {:?}",
            other.kind()
        ))),
    }
}

impl RedisStore {
    pub(crate) async fn connect_with(builder: RedisStoreBuilder) -> Result<Self, ConnectError> {
        let client = builder.fred.build().map_err(ConnectError::Connect)?;
        let acks = match builder.min_replicas_ack {
            0 => None,
            _ => Some(
                builder
                    .fred
                    .build_exclusive_pool(builder.ack_connections)
                    .map_err(ConnectError::Connect)?,
            ),
        };
        let scripts = Scripts::new();
        let budget = builder.connect_timeout + builder.command_timeout * 2;
        let setup = async {
            client.init().await?;
            if let Some(acks) = &acks {
                acks.init().await?;
            }
            for script in scripts.all() {
                script.load(&client).await?;
            }
            Ok::<_, FredError>(())
        };
        let failed = match tokio::time::timeout(budget, setup).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(_) => Some(FredError::new(
                fred::error::ErrorKind::Timeout,
                "connecting to Redis timed out",
            )),
        };
        if let Some(error) = failed {
            let _ = client.quit().await;
            if let Some(acks) = &acks {
                let _ = acks.quit().await;
            }
            return Err(ConnectError::Connect(error));
        }
        let layout = Layout::new(builder.prefix, builder.expiry_grace);
        let mut tasks = Vec::new();
        let cache = match builder.cache {
            Some(config) => {
                let cache = Arc::new(LocalCache::new(config, builder.expiry_grace));
                tasks = track(&client, &cache, &layout, builder.command_timeout);
                enable_tracking(&client, &cache)
                    .await
                    .map_err(ConnectError::Connect)?;
                Some(cache)
            }
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                layout,
                scripts,
                cache,
                command_timeout: builder.command_timeout,
                min_replicas_ack: builder.min_replicas_ack,
                acks,
                tasks,
            }),
        })
    }

    /// Connects to a Redis URL with the default settings (see [`RedisStore::url`]).
    ///
    /// # Errors
    /// As [`RedisStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::url(url)?.connect().await
    }

    /// The fred client, for operations outside the store (health checks, tests).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The Redis key a session is stored under (a hash; see the crate docs).
    pub fn session_key(&self, key_id: &KeyId) -> String {
        self.inner.layout.session(key_id)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.layout.prefix()
    }

    /// Whether the local cache is on.
    pub fn has_cache(&self) -> bool {
        self.inner.cache.is_some()
    }

    /// Whether the local cache holds a servable entry for `key_id` (diagnostics and tests).
    pub fn is_cached(&self, key_id: &KeyId) -> bool {
        self.inner
            .cache
            .as_ref()
            .is_some_and(|cache| cache.get(key_id.as_str()).is_some())
    }

    /// Drops every entry of the local cache (no-op without a cache).
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.inner.cache {
            cache.clear();
        }
    }
}

/// Listens for invalidations and connection events. Tracking state lives on each connection, so
/// any error, reconnection or topology change stops the cache until tracking is on again.
fn track(
    client: &Client,
    cache: &Arc<LocalCache>,
    layout: &Layout,
    command_timeout: Duration,
) -> Vec<JoinHandle<Result<(), FredError>>> {
    let on_invalidation = {
        let (cache, layout) = (cache.clone(), layout.clone());
        client.on_invalidation(move |invalidation| {
            if invalidation.keys.is_empty() {
                // A flush (or the server's tracking table overflowed): everything may be stale.
                cache.clear();
            }
            for key in &invalidation.keys {
                match key.as_str().map(|k| layout.key_id_of(k)) {
                    Some(Some(id)) => cache.invalidate(id),
                    Some(None) => {}
                    None => cache.clear(),
                }
            }
            Ok(())
        })
    };
    let on_error = {
        let cache = cache.clone();
        client.on_error(move |(error, server)| {
            tracing::debug!(%error, ?server, "redis connection error: local cache off until tracking resumes");
            cache.tracking_lost();
            async { Ok(()) }
        })
    };
    let on_unresponsive = {
        let cache = cache.clone();
        client.on_unresponsive(move |_| {
            cache.tracking_lost();
            async { Ok(()) }
        })
    };
    let retrack = |cache: Arc<LocalCache>, client: Client| async move {
        cache.tracking_lost();
        for attempt in 0..5u32 {
            match enable_tracking(&client, &cache).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::warn!(%error, attempt, "could not re-enable redis client tracking");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        Ok(())
    };
    let on_reconnect = {
        let (cache, tracked) = (cache.clone(), client.clone());
        client.on_reconnect(move |_| retrack(cache.clone(), tracked.clone()))
    };
    let on_cluster_change = {
        let (cache, tracked) = (cache.clone(), client.clone());
        client.on_cluster_change(move |_| retrack(cache.clone(), tracked.clone()))
    };
    vec![
        on_invalidation,
        on_error,
        on_unresponsive,
        on_reconnect,
        on_cluster_change,
        heartbeat(client.clone(), cache.clone(), command_timeout),
    ]
}

/// How often the heartbeat checks the connection while the cache is on.
fn heartbeat_interval(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Cache hits send no command, so a hung or partitioned Redis would go unnoticed — and a node
/// cut off from Redis would keep serving sessions other nodes have changed or revoked until the
/// TTL. A PING on an interval bounds that window to about one interval plus the command timeout:
/// when it fails the cache stops serving, and when it answers again tracking is re-enabled (which
/// also clears the cache, so nothing from before the gap is served).
fn heartbeat(
    client: Client,
    cache: Arc<LocalCache>,
    command_timeout: Duration,
) -> JoinHandle<Result<(), FredError>> {
    let interval = heartbeat_interval(cache.ttl());
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let alive = matches!(
                tokio::time::timeout(command_timeout, client.ping::<()>(None)).await,
                Ok(Ok(()))
            );
            if !alive {
                if cache.is_tracking() {
                    tracing::debug!("redis heartbeat failed: local cache off until Redis answers");
                }
                cache.tracking_lost();
            } else if !cache.is_tracking()
                && let Err(error) = enable_tracking(&client, &cache).await
            {
                tracing::debug!(%error, "redis heartbeat: client tracking not re-enabled yet");
            }
        }
    })
}

async fn enable_tracking(client: &Client, cache: &LocalCache) -> Result<(), FredError> {
    client
        // NOLOOP: this node's own writes send it no invalidation. Every write path of the store
        // drops (or, for `save_changes`, advances) its entry itself once Redis answered, so an
        // invalidation of its own could only arrive later and throw away the advanced entry.
        .start_tracking(Vec::<String>::new(), false, false, false, true)
        .await?;
    cache.tracking_on();
    Ok(())
}

impl Inner {
    async fn eval(
        &self,
        script: &fred::types::scripts::Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, StoreError> {
        script
            .evalsha_with_reload::<Value, _, _>(&self.client, keys, args)
            .await
            .map_err(store_error)
    }

    /// Runs a script that writes the session at `key`. Without `min_replicas_ack` it goes on
    /// the shared connection. With it, the script and a `WAIT` (when `wrote` says the reply is
    /// a write) run on a connection of the acknowledgement pool, taken for this write alone:
    /// `WAIT` blocks the connection it is sent on, so on the shared connection it would hold up
    /// every other request's commands until the replicas answer.
    ///
    /// `WAIT` counts the replicas that have the last write *of its own connection*, so it proves
    /// nothing when sent on another one — as fred does when it reconnects between the write and
    /// the `WAIT` (a failover, for one). The write is therefore bracketed by `CLIENT SETNAME
    /// <nonce>` and `CLIENT GETNAME`: a name that did not survive means the connection changed,
    /// and the write is reported `Unavailable` (it may still have happened).
    async fn write(
        &self,
        script: &fred::types::scripts::Script,
        keys: Vec<String>,
        args: Vec<String>,
        wrote: fn(&Value) -> bool,
    ) -> Result<Value, StoreError> {
        let Some(acks) = &self.acks else {
            return self.eval(script, keys, args).await;
        };
        let key = keys.first().map_or("", String::as_str);
        let client = tokio::time::timeout(self.command_timeout, acks.acquire())
            .await
            .map_err(|_| {
                StoreError::unavailable(
                    "no connection free for a write that waits for replicas \
                     (see RedisStoreBuilder::ack_connections)",
                )
            })?;
        let node = ClusterHash::Custom(fred::util::redis_keyslot(key.as_bytes()));
        let nonce = format!("keycard-ack-{}", new_token().replace('.', "-"));
        let client_command = || CustomCommand::new_static("CLIENT", node.clone(), false);
        client
            .custom::<(), _>(client_command(), vec!["SETNAME", nonce.as_str()])
            .await
            .map_err(store_error)?;
        let reply = script
            .evalsha_with_reload::<Value, _, _>(&client, keys.clone(), args)
            .await
            .map_err(store_error)?;
        if !wrote(&reply) {
            return Ok(reply);
        }
        let wanted = self.min_replicas_ack;
        let wait_ms = (self.command_timeout * 3 / 4).as_millis().max(1);
        let pipeline = client.pipeline();
        let wait = CustomCommand::new_static("WAIT", node.clone(), false);
        let wait_args = vec![i64::from(wanted).to_string(), wait_ms.to_string()];
        pipeline
            .custom::<(), _>(wait, wait_args)
            .await
            .map_err(store_error)?;
        pipeline
            .custom::<(), _>(client_command(), vec!["GETNAME"])
            .await
            .map_err(store_error)?;
        let (acked, name): (i64, Option<String>) = pipeline.all().await.map_err(store_error)?;
        if name.as_deref() != Some(nonce.as_str()) {
            return Err(StoreError::unavailable(
                "the connection to Redis changed between a write and its WAIT: \
                 replication not confirmed",
            ));
        }
        if acked < i64::from(wanted) {
            return Err(StoreError::unavailable(format!(
                "write acknowledged by {acked} of {wanted} replicas"
            )));
        }
        Ok(reply)
    }

    /// Deletes a session (only if its alias is `alias`, when given) and then its index entries.
    async fn delete_session(
        &self,
        key_id: &KeyId,
        alias: Option<&str>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let key = self.layout.session(key_id);
        let args = alias.map(str::to_owned).into_iter().collect();
        let reply = self
            .write(&self.scripts.delete, vec![key], args, is_some)
            .await;
        self.invalidate(key_id);
        let fields = layout::hash(reply?)?;
        let token = fields.pairs().get_str("i").unwrap_or_default().to_owned();
        let Some(session) = layout::decode(fields)? else {
            return Ok(None);
        };
        let entry = vec![key_id.as_str().to_owned(), token];
        let dropped = tokio::try_join!(
            self.index_drop(self.layout.alias_index(&session.alias), entry.clone()),
            self.index_drop(self.layout.key_index(), entry),
        );
        if let Err(error) = dropped {
            tracing::debug!(%error, "could not drop index entries of a deleted session");
        }
        Ok(Some(session.with_key_id(key_id.clone())))
    }

    fn invalidate(&self, key_id: &KeyId) {
        if let Some(cache) = &self.cache {
            cache.invalidate(key_id.as_str());
        }
    }

    /// Runs an apply script (`apply` or `apply_version`) for `delta` and drops the local cache
    /// entry whatever the outcome.
    async fn apply_script(
        &self,
        script: &fred::types::scripts::Script,
        key_id: &KeyId,
        delta: &MetadataDelta,
    ) -> Result<Value, StoreError> {
        let key = self.layout.session(key_id);
        let reply = self
            .write(script, vec![key], layout::delta_args(delta), is_some)
            .await;
        self.invalidate(key_id);
        reply
    }

    async fn index_add(
        &self,
        index: IndexKeys,
        key_id: &KeyId,
        score: &str,
        token: &str,
    ) -> Result<(), StoreError> {
        let args = vec![
            key_id.as_str().to_owned(),
            score.to_owned(),
            token.to_owned(),
        ];
        self.eval(&self.scripts.index_add, index.all(), args)
            .await
            .map(drop)
    }

    /// Adds (or touches) the session's entries in its alias index and the key index, with a fresh
    /// token, and returns the token. Called *before* the session write, so a stored session is
    /// never missing from its indexes; an entry whose write then fails is skipped by listings and
    /// cleaned later.
    async fn index(&self, session: &SessionRecord) -> Result<String, StoreError> {
        let token = new_token();
        let score = self.layout.index_score(session);
        tokio::try_join!(
            self.index_add(
                self.layout.alias_index(&session.alias),
                &session.key_id,
                &score,
                &token
            ),
            self.index_add(self.layout.key_index(), &session.key_id, &score, &token),
        )?;
        Ok(token)
    }

    /// Compare-and-delete of index entries (`member, token` pairs).
    async fn index_drop(&self, index: IndexKeys, entries: Vec<String>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.eval(&self.scripts.index_drop, index.all(), entries)
            .await
            .map(drop)
    }

    /// One page of an index: `(member, token)` after `after`, in key-id order.
    async fn index_page(
        &self,
        index: &IndexKeys,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let from = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let reply = self
            .eval(
                &self.scripts.index_page,
                index.all(),
                vec![from, count.to_string()],
            )
            .await?;
        let mut parts = array(reply)?.into_iter();
        let (Some(members), Some(tokens)) = (parts.next(), parts.next()) else {
            return Err(StoreError::Corrupt("unexpected index page reply".into()));
        };
        let members = array(members)?;
        let tokens = array(tokens)?;
        members
            .into_iter()
            .zip(tokens.into_iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(member, token)| {
                let token = match token {
                    Some(Value::Null) | None => None,
                    Some(t) => Some(layout::text(t)?),
                };
                Ok((layout::text(member)?, token))
            })
            .collect()
    }

    /// One `EVALSHA` of the load script (the hash packed into one string: one reply frame
    /// instead of two per field), or a cache hit: the cached `Arc` itself, which `load` unwraps
    /// (copying only a session the cache also holds).
    async fn load_arc(&self, key_id: &KeyId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let epoch = match &self.cache {
            Some(cache) => {
                if let Some(session) = cache.get(key_id.as_str()) {
                    return Ok(Some(session));
                }
                Some(cache.epoch(key_id.as_str()))
            }
            None => None,
        };
        // Raw, so the reply is decoded once, by `layout`, rather than first into the client's
        // generic values. Routed by the key (argument 2: `sha 1 key`). A server that lost its
        // scripts (restart, failover) answers `NOSCRIPT`: load them and ask once more.
        let evalsha = CustomCommand::new_static("EVALSHA", ClusterHash::Offset(2), false);
        let args = || {
            vec![
                Value::String(self.scripts.load.sha1().clone()),
                Value::Integer(1),
                Value::String(self.layout.session(key_id).into()),
            ]
        };
        let reply = self
            .client
            .custom_raw(evalsha.clone(), args())
            .await
            .map_err(store_error)?;
        let packed = match layout::packed_frame(reply) {
            Ok(packed) => packed,
            Err(Some(error)) => return Err(error),
            Err(None) => {
                self.scripts
                    .load
                    .load(&self.client)
                    .await
                    .map_err(store_error)?;
                let reply = self
                    .client
                    .custom_raw(evalsha, args())
                    .await
                    .map_err(store_error)?;
                layout::packed_frame(reply).map_err(|error| {
                    error.unwrap_or_else(|| {
                        StoreError::Unavailable("NOSCRIPT after loading the script".into())
                    })
                })?
            }
        };
        let session = match packed {
            Some(data) => layout::decode_packed(&data)?,
            None => None,
        }
        .map(|s| Arc::new(s.with_key_id(key_id.clone())));
        if let (Some(cache), Some(epoch), Some(session)) = (&self.cache, epoch, &session) {
            cache.fill(session, epoch);
        }
        Ok(session)
    }

    async fn load_many(&self, ids: &[String]) -> Result<Vec<Option<SessionRecord>>, StoreError> {
        let pipeline = self.client.pipeline();
        for id in ids {
            let key = self.layout.session(&key_id_from(id.clone()));
            pipeline.hgetall::<(), _>(key).await.map_err(store_error)?;
        }
        let replies = pipeline.try_all::<Value>().await;
        replies
            .into_iter()
            .zip(ids)
            .map(|(reply, id)| {
                let session = layout::decode(layout::hash(reply.map_err(store_error)?)?)?;
                Ok(session.map(|s| s.with_key_id(key_id_from(id.clone()))))
            })
            .collect()
    }

    async fn exist_many(&self, ids: &[String]) -> Result<Vec<bool>, StoreError> {
        let pipeline = self.client.pipeline();
        for id in ids {
            let key = self.layout.session(&key_id_from(id.clone()));
            pipeline.exists::<(), _>(key).await.map_err(store_error)?;
        }
        let replies = pipeline.try_all::<i64>().await;
        replies
            .into_iter()
            .map(|r| r.map(|n| n > 0).map_err(store_error))
            .collect()
    }

    /// Walks an index from `after`, keeping the entries `verify` accepts, until `limit + 1` are
    /// found (to know whether there is a next page) or the index ends. Entries that point
    /// nowhere are removed on the way (when old enough, see [`CLEAN_AFTER_SECS`]).
    async fn list<T, F, Fut>(
        &self,
        index: &IndexKeys,
        after: Option<&str>,
        limit: usize,
        verify: F,
    ) -> Result<Page<T>, StoreError>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: Future<Output = Result<Vec<Option<T>>, StoreError>>,
        T: Send,
    {
        let mut items: Vec<(String, T)> = Vec::new();
        if limit == 0 {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let wanted = limit.saturating_add(1);
        let mut cursor = after.map(str::to_owned);
        let mut stale = Vec::new();
        let mut exhausted = false;
        for _ in 0..LIST_ROUNDS {
            let count = (wanted - items.len()).min(LIST_BATCH);
            let batch = self.index_page(index, cursor.as_deref(), count).await?;
            exhausted = batch.len() < count;
            let Some((last, _)) = batch.last() else { break };
            cursor = Some(last.clone());
            let ids: Vec<String> = batch.iter().map(|(m, _)| m.clone()).collect();
            for ((member, token), found) in batch.into_iter().zip(verify(ids).await?) {
                match found {
                    Some(item) => items.push((member, item)),
                    None => {
                        if let Some(token) = token.filter(|t| token_is_old(t)) {
                            stale.extend([member, token]);
                        }
                    }
                }
            }
            if exhausted || items.len() >= wanted {
                break;
            }
        }
        if let Err(error) = self.index_drop(index.clone(), stale).await {
            tracing::debug!(%error, "could not clean stale index entries");
        }
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|(m, _)| m.clone())
        } else if exhausted {
            None
        } else {
            cursor
        };
        Ok(Page {
            items: items.into_iter().map(|(_, item)| item).collect(),
            next,
        })
    }
}

impl SessionStore for RedisStore {
    fn load<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(async move { Ok(self.inner.load_arc(key_id).await?.map(Arc::unwrap_or_clone)) })
    }

    fn load_shared<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<Arc<SessionRecord>>> {
        Box::pin(self.inner.load_arc(key_id))
    }

    fn create(&self, mut session: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        Box::pin(async move {
            let inner = &*self.inner;
            let token = inner.index(&session).await?;
            let key = inner.layout.session(&session.key_id);
            let mut args = vec![
                layout::base_json(&session)?,
                session.date_created.to_string(),
                inner.layout.expire_at_arg(&session),
                token,
            ];
            layout::meta_args(&session, &mut args);
            let reply = inner
                .write(&inner.scripts.create, vec![key], args, is_some)
                .await;
            inner.invalidate(&session.key_id);
            let reply = reply?;
            if matches!(reply, Value::Null) {
                return Err(StoreError::AlreadyExists);
            }
            let mut parts = array(reply)?.into_iter();
            let (Some(created), Some(now)) = (parts.next(), parts.next()) else {
                return Err(StoreError::Corrupt("unexpected create reply".into()));
            };
            session.date_created = layout::int(created)?;
            session.last_updated = layout::int(now)?;
            session.version = 1;
            Ok(session)
        })
    }

    fn replace(&self, mut session: SessionRecord) -> StoreFuture<'_, SessionRecord> {
        Box::pin(async move {
            let inner = &*self.inner;
            let token = inner.index(&session).await?;
            let key = inner.layout.session(&session.key_id);
            let mut args = vec![
                session.version.to_string(),
                layout::base_json(&session)?,
                inner.layout.expire_at_arg(&session),
                token,
            ];
            layout::meta_args(&session, &mut args);
            let reply = inner
                .write(
                    &inner.scripts.replace,
                    vec![key.clone()],
                    args,
                    |reply| matches!(reply, Value::Array(parts) if parts.len() > 1),
                )
                .await;
            inner.invalidate(&session.key_id);
            let mut parts = array(reply?)?.into_iter();
            match parts.next().map(layout::int).transpose()? {
                Some(0) => return Err(StoreError::NotFound),
                Some(1) => {
                    let found = parts.next().map(layout::int).transpose()?.unwrap_or(0);
                    return Err(StoreError::Conflict {
                        expected: session.version,
                        found: u64::try_from(found).unwrap_or(0),
                    });
                }
                Some(2) => {}
                _ => return Err(StoreError::Corrupt("unexpected replace reply".into())),
            }
            let mut field = || {
                parts
                    .next()
                    .ok_or_else(|| StoreError::Corrupt("short replace reply".into()))
            };
            let version = layout::int(field()?)?;
            session.version = u64::try_from(version)
                .map_err(|_| StoreError::Corrupt("negative version".into()))?;
            session.date_created = layout::int(field()?)?;
            session.last_updated = layout::int(field()?)?;
            let old_base = layout::text(field()?)?;
            let old_token = layout::text(field()?)?;
            let old_alias = serde_json::from_str::<SessionRecord>(&old_base)
                .map(|s| s.alias)
                .ok();
            if let Some(old_alias) = old_alias.filter(|a| *a != session.alias) {
                let entry = vec![session.key_id.as_str().to_owned(), old_token];
                if let Err(error) = inner
                    .index_drop(inner.layout.alias_index(&old_alias), entry)
                    .await
                {
                    // Harmless: listings skip and later clean the entry.
                    tracing::debug!(%error, "could not drop the old alias index entry");
                }
            }
            Ok(session)
        })
    }

    fn apply<'a>(
        &'a self,
        key_id: &'a KeyId,
        delta: &'a MetadataDelta,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(async move {
            let inner = &*self.inner;
            let reply = inner
                .apply_script(&inner.scripts.apply, key_id, delta)
                .await?;
            if matches!(reply, Value::Null) {
                return Ok(None);
            }
            let session =
                layout::decode(layout::hash(reply)?)?.map(|s| s.with_key_id(key_id.clone()));
            Ok(session)
        })
    }

    fn save_changes<'a>(
        &'a self,
        key_id: &'a KeyId,
        delta: &'a MetadataDelta,
    ) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let inner = &*self.inner;
            let key = inner.layout.session(key_id);
            // Taken before the write is sent: an invalidation from here on voids the advance.
            let epoch = inner
                .cache
                .as_ref()
                .map(|cache| cache.epoch(key_id.as_str()));
            let reply = inner
                .write(
                    &inner.scripts.apply_version,
                    vec![key],
                    layout::delta_args(delta),
                    is_some,
                )
                .await;
            let saved = match reply {
                Ok(Value::Null) => Ok(None),
                Ok(reply) => layout::version_and_time(reply).map(Some),
                Err(error) => Err(error),
            };
            match (&inner.cache, epoch, &saved) {
                // This node's own write: the cached entry moves with it (see `LocalCache::advance`).
                (Some(cache), Some(epoch), Ok(Some((version, updated)))) => {
                    cache.advance(key_id.as_str(), epoch, *version, *updated, delta);
                }
                _ => inner.invalidate(key_id),
            }
            let Some((version, _)) = saved? else {
                return Ok(None);
            };
            Ok(Some(version))
        })
    }

    fn delete<'a>(&'a self, key_id: &'a KeyId) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(self.inner.delete_session(key_id, None))
    }

    fn delete_by_alias<'a>(&'a self, alias: &'a str) -> StoreFuture<'a, Vec<SessionRecord>> {
        Box::pin(RedisStore::delete_by_alias(self, alias))
    }

    fn list_by_alias<'a>(
        &'a self,
        alias: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<SessionRecord>> {
        Box::pin(async move {
            let inner = &*self.inner;
            inner
                .list(
                    &inner.layout.alias_index(alias),
                    after,
                    limit,
                    |ids| async move {
                        let sessions = inner.load_many(&ids).await?;
                        Ok(sessions
                            .into_iter()
                            .map(|s| s.filter(|s| s.alias == alias))
                            .collect())
                    },
                )
                .await
        })
    }

    fn list_keys<'a>(
        &'a self,
        after: Option<&'a str>,
        limit: usize,
    ) -> StoreFuture<'a, Page<KeyId>> {
        Box::pin(async move {
            let inner = &*self.inner;
            inner
                .list(&inner.layout.key_index(), after, limit, |ids| async move {
                    let exist = inner.exist_many(&ids).await?;
                    Ok(ids
                        .into_iter()
                        .zip(exist)
                        .map(|(id, found)| found.then(|| key_id_from(id)))
                        .collect())
                })
                .await
        })
    }
}

impl RedisStore {
    /// Deletes every session whose alias is `alias` — a user's sessions, as the Auth0
    /// `DELETE /api/v2/users/{id}/sessions` does — and returns them (in key-id order on
    /// standalone and sentinel).
    ///
    /// **Standalone and sentinel: atomic.** One script finds the sessions in the alias index,
    /// checks each one's stored alias and deletes them with their index entries, in one step:
    /// no client ever sees some of the user's sessions deleted and others not, and every
    /// session that has this alias when the script runs is deleted. A create or replace that
    /// has not written its session yet when the script runs is not deleted (it ends after
    /// the delete, and its session stays).
    ///
    /// **Cluster: safe, not atomic.** Sessions live in different hash slots, which no script can
    /// span. The index is walked page by page and each session deleted on its own (each
    /// deletion atomic, as [`delete`](SessionStore::delete)). Guaranteed: every session that had
    /// this alias when the call started (its create or replace returned before) and still has
    /// it is deleted by the time the call returns `Ok`; none of them comes back (a later write
    /// finds no session: deltas and replaces never recreate one); sessions created while the call
    /// runs may or may not be deleted. Other clients may see some of the sessions gone and others
    /// not while it runs.
    ///
    /// With [`min_replicas_ack`](RedisStoreBuilder::min_replicas_ack), each deletion waits for
    /// the replicas as any write does (the whole script on standalone).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis fails; some sessions may be deleted then (in
    /// cluster mode), and calling again finishes the job. [`StoreError::Corrupt`] for a stored
    /// session that cannot be read (standalone: nothing is deleted then).
    pub async fn delete_by_alias(&self, alias: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let inner = &*self.inner;
        if inner.client.is_clustered() {
            return self.delete_by_alias_in_steps(alias).await;
        }
        let mut keys = inner.layout.alias_index(alias).all();
        keys.extend(inner.layout.key_index().all());
        let session_prefix = format!("{}:{{s:", inner.layout.prefix());
        // The script's keys are its indexes (one slot each, no cluster here); `write` routes
        // by the first, which is where a standalone server takes everything anyway.
        let reply = inner
            .write(
                &inner.scripts.delete_alias,
                keys,
                vec![session_prefix, alias.to_owned()],
                |reply| matches!(reply, Value::Array(items) if !items.is_empty()),
            )
            .await;
        let mut deleted = Vec::new();
        let mut failure = None;
        for pair in array(reply?)? {
            let mut parts = array(pair)?.into_iter();
            let (Some(member), Some(fields)) = (parts.next(), parts.next()) else {
                return Err(StoreError::Corrupt(
                    "unexpected delete-by-alias reply".into(),
                ));
            };
            let key_id = key_id_from(layout::text(member)?);
            inner.invalidate(&key_id);
            match layout::decode(layout::hash(fields)?) {
                Ok(Some(session)) => deleted.push(session.with_key_id(key_id)),
                Ok(None) => {}
                // Deleted all the same; reported after every cache entry is dropped.
                Err(error) => failure = Some(error),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(deleted),
        }
    }

    /// [`delete_by_alias`](Self::delete_by_alias) in cluster mode: page, delete, repeat.
    async fn delete_by_alias_in_steps(
        &self,
        alias: &str,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut deleted = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .list_by_alias(alias, after.as_deref(), LIST_BATCH)
                .await?;
            for listed in page.items {
                // Deleted only if it still has the alias: one whose alias changed since the
                // listing is another user's now.
                if let Some(session) = self
                    .inner
                    .delete_session(&listed.key_id, Some(alias))
                    .await?
                {
                    deleted.push(session);
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(deleted),
            }
        }
    }
}

/// Where a store starts: the constructors of its builder.
impl RedisStore {
    /// A store for a Redis URL: `redis://` or `rediss://` (standalone, TLS needs the `tls`
    /// feature), `redis-cluster://host:port?node=host:port`, `redis-sentinel://...`
    /// (see fred's `Config::from_url`). TLS schemes (`rediss`, `rediss-cluster`,
    /// `rediss-sentinel`, `valkeys`...) trust the system's root certificates; for a private CA
    /// add [`RedisStoreBuilder::tls_root_certificate`].
    ///
    /// # Errors
    /// [`ConnectError::Config`] if the URL cannot be parsed.
    pub fn url(url: &str) -> Result<RedisStoreBuilder, ConnectError> {
        // Without a TLS feature fred would connect to a `rediss://` URL in plain text.
        let tls_scheme = ["rediss", "valkeys"]
            .into_iter()
            .find(|scheme| url.starts_with(scheme));
        let Some(tls_scheme) = tls_scheme else {
            let config = Config::from_url(url).map_err(|e| ConnectError::Config(e.to_string()))?;
            return Ok(Self::config(config));
        };
        if cfg!(not(feature = "tls")) {
            return Err(ConnectError::Config(
                "TLS (rediss://) needs the `tls` feature of keycard-redis".into(),
            ));
        }
        // Parsed as the plain scheme, then given our connector: fred's default one for a
        // TLS scheme asks rustls for a process-wide crypto provider, which panics in a build
        // that enables two (ring here, aws-lc-rs for another crate).
        let plain = format!(
            "{}{}",
            &tls_scheme[..tls_scheme.len() - 1],
            &url[tls_scheme.len()..]
        );
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut config =
            Config::from_url(&plain).map_err(|e| ConnectError::Config(e.to_string()))?;
        #[cfg(feature = "tls")]
        {
            config.tls = Some(crate::tls::system_roots()?);
        }
        Ok(Self::config(config))
    }

    /// A store for a fred [`Config`] (any topology, credentials, TLS, database...).
    pub fn config(config: Config) -> RedisStoreBuilder {
        Self::fred_builder(Builder::from_config(config))
    }

    /// A store for a fred [`Builder`], for settings this builder does not cover (TCP options,
    /// sentinel credentials...).
    pub fn fred_builder(builder: Builder) -> RedisStoreBuilder {
        RedisStoreBuilder::new(builder)
    }

    /// A store behind Redis Sentinel: the sentinels' addresses and the monitored service name.
    pub fn sentinel<H: Into<String>>(
        sentinels: impl IntoIterator<Item = (H, u16)>,
        service_name: impl Into<String>,
    ) -> RedisStoreBuilder {
        let hosts: Vec<(String, u16)> = sentinels.into_iter().map(|(h, p)| (h.into(), p)).collect();
        Self::config(Config {
            server: ServerConfig::new_sentinel(hosts, service_name.into()),
            ..Config::default()
        })
    }

    /// A store on a Redis Cluster, given some of its nodes (the rest are discovered).
    pub fn cluster<H: Into<String>>(
        nodes: impl IntoIterator<Item = (H, u16)>,
    ) -> RedisStoreBuilder {
        let hosts: Vec<(String, u16)> = nodes.into_iter().map(|(h, p)| (h.into(), p)).collect();
        Self::config(Config {
            server: ServerConfig::new_clustered(hosts),
            ..Config::default()
        })
    }
}

impl RedisStoreBuilder {
    /// Connects, loads the scripts and (with a cache) starts client tracking.
    ///
    /// # Errors
    /// [`ConnectError::Config`] for an invalid configuration, [`ConnectError::Connect`] when Redis
    /// cannot be reached within the connect timeout.
    pub async fn connect(self) -> Result<RedisStore, ConnectError> {
        RedisStore::connect_with(self.finish()?).await
    }
}
