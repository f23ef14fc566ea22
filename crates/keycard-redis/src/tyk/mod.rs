//! Tyk's own Redis layout: [`TykRedisStore`] reads and writes sessions where and as a Tyk
//! gateway does, so keycard can run beside an existing Tyk deployment — load the keys Tyk
//! wrote, and write metadata back in a form Tyk reads.
//!
//! ```no_run
//! use keycard_core::metadata::MetadataDelta;
//! use keycard_core::store::SessionStore;
//! use keycard_redis::tyk::{TykHashFunction, TykRedisStore};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Tyk's settings: `hash_keys: true`, `hash_key_function: "murmur64"`, the APIs' org.
//! let store = TykRedisStore::url("redis://127.0.0.1:6379")?
//!     .hash_keys(true)
//!     .hash_key_function(TykHashFunction::Murmur64)
//!     .org_id("5e9d9544a1dcd60001d0ed20")
//!     .connect()
//!     .await?;
//!
//! // A key as Tyk generates it, and where Tyk keeps its session.
//! let key = store.key_hash().generate_key();
//! let id = store.key_id(&key); // murmur64 of the key: 16 hex characters
//! assert_eq!(store.session_key(&id), format!("apikey-{id}"));
//!
//! // Tyk wrote the session (its JSON, as is); keycard reads it and changes metadata.
//! if let Some(session) = store.load(&id).await? {
//!     println!("{} of org {}", session.alias, session.org_id);
//!     let mut delta = MetadataDelta::new();
//!     delta.set("plan", json!("gold"));
//!     store.apply(&id, &delta).await?; // only `meta_data.plan` and `last_updated` change
//! }
//! // In a stack, key ids must be Tyk's hashes:
//! // `Keycard::new(store.clone()).key_hasher(store.key_hasher())`.
//! # Ok(())
//! # }
//! ```
//!
//! # The layout
//! One Redis **string** per session at `apikey-<hash>` (Tyk's gateway uses the fixed prefix
//! `apikey-`; [`TykRedisStoreBuilder::prefix`] changes it), holding Tyk's `user.SessionState`
//! JSON. `<hash>` is Tyk's `storage.HashKey` of the key ([`TykKeyHash`]):
//!
//! | Tyk setting | key presented | Redis key suffix |
//! | --- | --- | --- |
//! | `hash_keys: false` | any | the raw key (so the key id *is* the raw key: avoid) |
//! | `hash_keys: true` | base64 JSON `{"org":..,"id":..,"h":"murmur64"}` (generated with a `hash_key_function`) | the hex digest with the function in `"h"`: `murmur64` 16, `murmur128` 32, `sha256` 64 hex characters |
//! | `hash_keys: true` | anything else: legacy `orgID + uuid` keys, JSON keys without a known `"h"` | `murmur32`, 8 hex characters (Tyk's legacy variant, see [`TykHashFunction::Murmur32`]) |
//! | with [`org_id`](TykRedisStoreBuilder::org_id) | a key that is not that org's (a custom key such as `customKey`) | the hash of Tyk's `GenerateToken(org, key, hash_key_function)`, as `POST /tyk/keys/{key}` stored it |
//!
//! Field mapping: `rate`, `per`, `quota_max`, `quota_remaining`, `quota_renewal_rate`,
//! `quota_renews`, `expires`, `is_inactive`, `org_id`, `alias`, `apply_policies`, `tags` and
//! `meta_data` are the same names in both; `date_created` is Go's RFC 3339 time (read to unix
//! seconds, written as `YYYY-MM-DDTHH:MM:SSZ`), `last_updated` a string of unix seconds. Every
//! other field (`access_rights`, `allowance`, `basic_auth_data`, `hmac_string`, ...) is kept
//! exactly as stored. keycard adds one field, `keycard_version` (its optimistic-concurrency
//! counter); Tyk ignores it and drops it when it rewrites the session, and a session without it
//! reads with a version derived from its text (top bit set), so a `replace` based on a read from
//! before a Tyk write conflicts.
//!
//! # Writes
//! Every write is a read-modify-write under optimistic concurrency: the store reads the JSON,
//! rewrites it in Rust, and a Lua script sets the new text only if the stored text is still
//! the one read (`GET` + compare + `SET ... KEEPTTL`, one atomic script); otherwise it reads
//! again (at most 16 attempts, jittered backoff, then `StoreError::Unavailable`). This store's
//! own writes to one session queue on a local lock, so only writers elsewhere (Tyk, other nodes)
//! cause retries. Lua never decodes the JSON, and the rewrite replaces only what changed:
//!
//! | operation | atomic | writes |
//! | --- | --- | --- |
//! | `apply`, `save_changes` | yes (compare-and-set) | the `meta_data` entries the delta names (the others keep their text), `last_updated`, `keycard_version`; TTL kept |
//! | `create` | yes (`SET NX`, with `EXAT expires + grace + 1` when `expires` is set) | a new Tyk session document from the record |
//! | `replace` | yes (compare-and-set, version checked) | only the fields whose value changed, `last_updated`, `keycard_version`; `date_created` kept; TTL changed only when `expires` changed |
//! | `delete` | yes (`GETDEL`) | — |
//!
//! A delta never recreates a deleted session and never rewrites a field it did not change, so
//! a Tyk change that lands between keycard's read and write makes keycard read again rather
//! than be lost. (The reverse is Tyk's behaviour: Tyk's own writes are a plain `SET` of the
//! whole session, so a keycard change that lands while Tyk holds an older copy is overwritten —
//! as between two Tyk gateways.)
//!
//! # Expiry
//! A session is loadable until `expires + grace` ([`TykRedisStoreBuilder::expiry_grace`],
//! default one hour; the layers answer 401 "expired" meanwhile) and absent after, whether or not
//! Redis still holds it: Tyk keeps expired keys until their TTL.
//!
//! # Listing, aliases, users
//! Tyk keeps no index — no alias index, no per-user index, no list of keys. Here
//! `list_keys` and `list_by_alias` `SCAN` every string key under the prefix (every primary in a
//! cluster), sort them, and read sessions in the page's range (`list_by_alias` reads until it
//! has found a page of that alias): correct and in key-id order, but each page costs a scan of
//! the whole keyspace and, for an alias, reads of sessions up to the page; over 1,000,000 keys
//! under the prefix they fail with `StoreError::Invalid`. Fine for admin use on a few thousand
//! sessions; not for a per-request path.
//!
//! # Divergences from Tyk
//! - Tyk's `SessionDetail` tries several forms of a presented key (the org-wrapped form, the key
//!   as presented, and each `hash_key_function_fallback`); a key id here is one pure function of
//!   the key, so keys stored under the other forms (from before a change of
//!   `hash_key_function`) are not found.
//! - `date_created` is written with whole seconds (keycard keeps unix seconds); an unchanged
//!   `date_created` keeps Tyk's text, nanoseconds and zone included.
//! - No local cache and no `WAIT` for replicas in this layout.

mod doc;
mod hash;
mod store;

pub use hash::{TykHashFunction, TykKeyHash};
pub use store::{TYK_KEY_PREFIX, TykRedisStore, TykRedisStoreBuilder};
