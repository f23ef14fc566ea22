#![doc = include_str!("../../../README.md")]
//!
//! # Crate map
//!
//! | item | what |
//! | --- | --- |
//! | [`Keycard`] | the whole stack from one builder, in data-flow order: load → rate limit → rewrite → headers → body → your service → save |
//! | [`session`] | [`Session`](session::Session): the request's session and the axum extractor; [`SessionRecord`](session::SessionRecord): the stored form |
//! | [`auth`] | `SessionLoadLayer`: key → session → [`Session`](session::Session) in the request |
//! | [`ratelimit`] | `RateLimitLayer`: per-key or per-pattern (`rate_limit_pattern`) rate limits and quotas from the session (sliding window or GCRA); `MemoryRateLimiter` (and `RedisRateLimiter` in `redis`) |
//! | [`persist`] | `PersistLayer`: saves the request's metadata changes once, atomically |
//! | [`headers`] | `InjectHeadersLayer`: request/response headers from `$tyk_meta` / `$tyk_context` templates |
//! | [`rewrite`] | `UrlRewriteLayer`: rewrite the URL from regex rules, `$tyk_meta` / `$tyk_context` and triggers |
//! | [`signature`] | `SignatureLayer`: signed auth tokens (Tyk's `MasherySHA256`, and a recommended HMAC-SHA256 mode) |
//! | [`body`] | `TransformBodyLayer`: request/response bodies from minijinja templates (feature `body`) |
//! | `admin` | the management API router (feature `admin`, crate `keycard-admin`) |
//! | `redis` | `RedisStore`: sessions in Redis with a local cache (feature `redis`, crate `keycard-redis`) |
//! | [`context`] | `$tyk_context` values and the API to add your own |
//! | [`metadata`], [`store`], [`policy`], [`key`], [`vars`] | the core model (crate `keycard-core`) |

#![forbid(unsafe_code)]

mod stack;

#[cfg(feature = "admin")]
pub use keycard_admin as admin;
pub use keycard_core::{key, metadata, policy, store, vars};
#[cfg(feature = "body")]
pub use keycard_layers::body;
pub use keycard_layers::{auth, context, forward, headers, persist, rewrite, signature};
#[cfg(feature = "redis")]
pub use keycard_redis as redis;

pub use self::stack::{Keycard, KeycardService};

/// Rate limiting: the stage ([`RateLimitLayer`](ratelimit::RateLimitLayer)) and its backends
/// ([`MemoryRateLimiter`](ratelimit::MemoryRateLimiter); `keycard::redis::RedisRateLimiter` with
/// feature `redis`).
pub mod ratelimit {
    pub use keycard_core::ratelimit::*;
    pub use keycard_layers::ratelimit::*;
}
/// The layer of a stage a [`Keycard`] leaves out (re-exported from `tower-layer`).
pub use tower_layer::Identity;

/// The request's session ([`Session`](session::Session), also the axum extractor) and the
/// stored record ([`SessionRecord`](session::SessionRecord)).
pub mod session {
    pub use keycard_core::session::{SessionRecord, unix_now};
    #[cfg(feature = "axum")]
    pub use keycard_layers::session::{MetadataRejection, SessionRejection};
    pub use keycard_layers::session::{NoSession, Session};
}

/// The types most stacks need.
pub mod prelude {
    pub use crate::Keycard;
    pub use crate::auth::{KeySource, SessionLoadLayer};
    #[cfg(feature = "body")]
    pub use crate::body::{BodyRule, TransformBodyLayer};
    pub use crate::headers::{HeaderRules, InjectHeadersLayer, Scope};
    pub use crate::key::{ApiKey, KeyId};
    pub use crate::metadata::{Metadata, MetadataLimits};
    pub use crate::persist::PersistLayer;
    pub use crate::policy::{MemoryPolicies, Policy};
    pub use crate::ratelimit::{MemoryRateLimiter, RateLimitLayer};
    pub use crate::rewrite::{RewriteRule, Trigger, UrlRewriteLayer};
    #[cfg(feature = "axum")]
    pub use crate::session::MetadataRejection;
    pub use crate::session::{Session, SessionRecord};
    pub use crate::store::{MemoryStore, SessionStore};
}
