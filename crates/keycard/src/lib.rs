#![doc = include_str!("../../../README.md")]
//!
//! # Crate map
//!
//! | module | what |
//! | --- | --- |
//! | [`auth`] | `SessionLoadLayer`: key → session → [`handle::SessionHandle`] in the request |
//! | [`persist`] | `PersistLayer`: saves the request's metadata changes once, atomically |
//! | [`headers`] | `InjectHeaders`: request/response headers from `$tyk_meta` / `$tyk_context` templates |
//! | [`rewrite`] | `UrlRewrite`: rewrite the URL from regex rules, `$tyk_meta` / `$tyk_context` and triggers (wrap the whole `Router`) |
//! | [`body`] | `TransformBody`: request/response bodies from minijinja templates (feature `body`) |
//! | [`extract`] | the axum `Session` extractor (feature `axum`) |
//! | `admin` | the management API router (feature `admin`, crate `keycard-admin`) |
//! | `redis` | `RedisStore`: sessions in Redis with a local cache (feature `redis`, crate `keycard-redis`) |
//! | [`context`] | `$tyk_context` values and the API to add your own |
//! | [`session`], [`metadata`], [`store`], [`policy`], [`key`], [`vars`] | the core model (crate `keycard-core`) |

#![forbid(unsafe_code)]

#[cfg(feature = "admin")]
pub use keycard_admin as admin;
pub use keycard_core::{key, metadata, policy, session, store, vars};
#[cfg(feature = "body")]
pub use keycard_layers::body;
#[cfg(feature = "axum")]
pub use keycard_layers::extract;
pub use keycard_layers::{auth, context, handle, headers, persist, rewrite};
#[cfg(feature = "redis")]
pub use keycard_redis as redis;

/// The types most stacks need.
pub mod prelude {
    pub use crate::auth::{KeySource, SessionLoadLayer};
    #[cfg(feature = "body")]
    pub use crate::body::{BodyRule, TransformBody};
    #[cfg(feature = "axum")]
    pub use crate::extract::Session;
    pub use crate::handle::SessionHandle;
    pub use crate::headers::{InjectHeaders, Scope};
    pub use crate::key::{ApiKey, KeyId};
    pub use crate::metadata::{Metadata, MetadataLimits};
    pub use crate::persist::PersistLayer;
    pub use crate::policy::{MemoryPolicies, Policy};
    pub use crate::rewrite::{RewriteRule, Trigger, UrlRewrite};
    pub use crate::store::{MemoryStore, SessionStore};
}
