//! The core of keycard: the session model, metadata limits and deltas, the [`SessionStore`]
//! trait with the embedded [`MemoryStore`], key hashing, policies and the `$tyk_meta` /
//! `$tyk_context` variable language.
//!
//! Most users reach these types through the `keycard` facade crate.
//!
//! [`SessionStore`]: store::SessionStore
//! [`MemoryStore`]: store::MemoryStore

#![forbid(unsafe_code)]

pub mod civil;
pub mod key;
pub mod metadata;
pub mod policy;
pub mod ratelimit;
pub mod session;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod vars;
