//! A Redis [`SessionStore`](keycard_core::store::SessionStore) for keycard, on
//! [fred](https://docs.rs/fred) 10: standalone, sentinel and cluster; metadata deltas applied
//! atomically in one round trip; an optional local cache invalidated within milliseconds.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use keycard_core::key::{ApiKey, KeyId};
//! use keycard_core::metadata::MetadataDelta;
//! use keycard_core::session::SessionRecord;
//! use keycard_core::store::SessionStore;
//! use keycard_redis::{CacheConfig, RedisStore};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisStore::url("redis://127.0.0.1:6379")?
//!     .prefix("myapp")
//!     .command_timeout(Duration::from_secs(1))
//!     .cache(CacheConfig::default())
//!     .connect()
//!     .await?;
//!
//! let id = KeyId::of(&ApiKey::new("demo-key"));
//! store.create(SessionRecord::default().with_key_id(id.clone()).with_alias("alice")).await?;
//!
//! let mut delta = MetadataDelta::new();
//! delta.set("plan", json!("gold"));
//! let updated = store.apply(&id, &delta).await?.expect("session exists");
//! assert_eq!(updated.meta_data["plan"], "gold");
//! assert_eq!(updated.version, 2);
//! # Ok(())
//! # }
//! ```
//!
//! Other topologies: [`RedisStore::cluster`], [`RedisStore::sentinel`], or any fred
//! [`Config`](fred::types::config::Config) / [`Builder`](fred::types::Builder) through
//! [`RedisStore::config`] and [`RedisStore::fred_builder`]. fred is re-exported as [`fred`].
//!
//! # Failure behaviour
//! Every store has a reconnect policy (exponential 50–500 ms, forever), a connect timeout
//! (default 2 s), a command timeout (default 1 s, including time queued while reconnecting) and
//! unresponsive-connection detection (a connection without replies for 3× the command timeout is
//! dropped and reconnected). A dead or hung Redis makes every operation fail with
//! [`StoreError::Unavailable`](keycard_core::store::StoreError::Unavailable) within the command
//! timeout; once Redis is back, the same store works again without being rebuilt. A stored value
//! that cannot be read is [`StoreError::Corrupt`](keycard_core::store::StoreError::Corrupt).
//!
//! # Tyk's own layout
//! [`tyk::TykRedisStore`] keeps sessions where and as a Tyk gateway does (one JSON string at
//! `apikey-<hash>`, Tyk's murmur/sha256 key hashing), to run beside an existing Tyk deployment;
//! see [the module](tyk). Everything below describes `RedisStore`'s own layout.
//!
//! # Rate limits
//! [`RedisRateLimiter`] is keycard's rate-limit backend for several instances: an exact sliding
//! window in one sorted set per bucket, one atomic script per check (see [its docs](RedisRateLimiter)).
//!
//! # Key layout
//! `P` is the prefix (default `keycard`, no braces allowed). Braces are Redis Cluster hash tags:
//! every command and script touches keys of one hash slot only.
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `P:{s:<key_id>}` | hash | one session: `b` = the session JSON without metadata, version, times, key id and fields at their default; `v` = version; `c` = `date_created`; `u` = `last_updated`; `i` = index token; `m:<name>` = one metadata entry, its value as JSON text |
//! | `P:{a:<alias>}:lex` | sorted set | key ids with that alias, all scores 0 (key-id order) |
//! | `P:{a:<alias>}:exp` | sorted set | the same key ids, score = when their session's TTL ends (`+inf` = never) |
//! | `P:{a:<alias>}:tok` | hash | key id → token of the write that added the entry |
//! | `P:{k:P}:lex`, `:exp`, `:tok` | as above | the index of every key id under the prefix |
//! | `P:{r:<bucket>}` | sorted set | one rate-limit bucket ([`RedisRateLimiter`]): a member per admitted request, score = its server time in ms; TTL = the window |
//!
//! **Why a hash per session, not one JSON string:** a metadata delta then touches only the fields it
//! names, and values are stored as the JSON text serde wrote. No script decodes a value, so
//! integers beyond 2^53 (Lua numbers are doubles), floats and empty objects (Redis' cjson turns
//! `{}` into `[]`) come back exactly as they went in.
//!
//! **Expiry:** a session with `expires` gets `EXPIREAT expires + grace + 1` (grace:
//! [`RedisStoreBuilder::expiry_grace`], default one hour, as `MemoryStore`), so it is loadable
//! (and reported expired by the layers) during the grace period and gone after it. Metadata
//! deltas write hash fields, which keeps the TTL; `replace` sets it from the new `expires`.
//!
//! # Round trips
//! | operation | round trips | commands |
//! | --- | --- | --- |
//! | `load`, `load_shared` | 1 (0 on a cache hit) | `EVALSHA` load: `HGETALL` packed into one string by the script, so the reply is one frame (decoded from the raw frame); `NOSCRIPT` reloads and asks once more |
//! | `apply` | 1 | `EVALSHA` apply: set-if-exists (`EXISTS`), `HSET`/`HDEL` per change, `HINCRBY v`, `HSET u` (server `TIME`), returns `HGETALL` |
//! | `save_changes` (persist) | 1 | the same script, returning only the new version |
//! | `create` | 2 | index adds (alias, keys; concurrently), then `EVALSHA` create (fails if the key exists) |
//! | `replace` | 2, 3 on an alias change | index adds, `EVALSHA` replace (version check, rewrite, TTL), drop of the old alias entry |
//! | `delete` | 2 | `EVALSHA` delete (returns the hash), index drops (concurrently) |
//! | `list_by_alias`, `list_keys` | 2 per round | an index page (`ZRANGEBYLEX` + tokens), then the sessions (`HGETALL`/`EXISTS`, pipelined) |
//!
//! With [`RedisStoreBuilder::min_replicas_ack`] every write runs on a connection of its own from
//! a small pool, followed by a `WAIT` there: a write that returned `Ok` is then on that many
//! replicas and survives a failover, and the shared connection that carries loads is never held
//! up by a `WAIT`. Scripts are loaded on every primary at connect and called with `EVALSHA`; a
//! `NOSCRIPT` (a promoted replica, a restarted server) reloads them and retries once.
//!
//! # Index consistency in cluster mode
//! A session and its index entries live in different slots, so they cannot change in one atomic
//! step. The rules that keep listings right:
//! - Entries are added *before* the session is written: a stored session is always listed.
//! - Entries are removed *after* the session is deleted or its alias changed, compare-and-delete
//!   on the token of the write that added them: an entry re-written meanwhile by a concurrent
//!   create or replace stays.
//! - Listings verify every entry against the session (exists; same alias) and skip those that
//!   do not match; skipped entries whose token is older than a minute are removed on the way.
//! - Entries carry their session's TTL deadline (it only grows) and each index write sweeps up
//!   to 64 entries past it, so sessions that simply expire do not pile up in the indexes.
//!
//! Listings are ordered by key id, and the cursor is the last key id returned, as in
//! `MemoryStore`. A page may hold fewer than `limit` sessions (with a `next` cursor) when it met
//! many stale entries.
//!
//! # Local cache
//! [`RedisStoreBuilder::cache`] puts a bounded cache ([`CacheConfig`]: entries, TTL backstop of
//! 10 s) in front of `load`. It switches the connection to RESP3 and turns on Redis **client
//! tracking** (default mode, `NOLOOP`): the server remembers which session keys this client read
//! and pushes an invalidation on the same connection as soon as any other client changes them —
//! every write path of every other node, `redis-cli`, and also TTL expiry and eviction. A store's
//! own writes update or drop its entry themselves. Guards against stale entries:
//! - a load fills the cache only if no invalidation of that key arrived while it was in flight,
//!   and never takes an entry back to an older version;
//! - the store's own `save_changes` advances its entry to the saved state (tracking runs with
//!   `NOLOOP`) when the entry held exactly the version before the write and nothing was
//!   invalidated since it was sent, and drops it otherwise;
//! - a connection error, reconnection or cluster topology change empties the cache and stops it
//!   until tracking is confirmed again on every connection;
//! - a heartbeat `PING` (every quarter of the TTL, at most every second) catches a hung or
//!   unreachable Redis that cache hits alone would never notice: when it fails the cache stops
//!   serving (requests then meet the command timeout and answer 503), so a node cut off from Redis
//!   serves sessions other nodes may have revoked for about one interval plus the command timeout
//!   at most, not for the whole TTL. When Redis answers again, tracking is re-enabled and the
//!   cache starts empty. (In cluster mode the PING reaches one node.)

#![forbid(unsafe_code)]

pub use fred;

mod cache;
mod config;
mod layout;
mod ratelimit;
mod scripts;
mod store;
#[cfg(feature = "tls")]
mod tls;
pub mod tyk;

pub use cache::CacheConfig;
pub use config::{
    ConnectError, DEFAULT_ACK_CONNECTIONS, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PREFIX, RedisStoreBuilder, redact_url,
};
pub use ratelimit::RedisRateLimiter;
pub use store::RedisStore;
