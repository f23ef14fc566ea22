//! The state every handler of the API shares.

use std::sync::Arc;

use keycard_core::key::KeyHasher;
use keycard_core::metadata::MetadataLimits;
use keycard_core::policy::MemoryPolicies;
use keycard_core::store::SessionStore;

use crate::credentials::{AdminToken, Secret};
use crate::logout::LogoutSender;
use crate::oauth::store::{Lifetimes, OAuthClients};
use crate::throttle::FailureThrottle;

/// What every handler sees.
pub(crate) struct AdminState {
    pub(crate) store: Arc<dyn SessionStore>,
    pub(crate) policies: MemoryPolicies,
    /// Serialises policy writes made here, so "create if absent" is not a race between two
    /// admin requests (the layers only read policies).
    pub(crate) policy_writes: tokio::sync::Mutex<()>,
    pub(crate) tyk_secret: Option<Secret>,
    pub(crate) tokens: Vec<AdminToken>,
    pub(crate) tyk_limits: MetadataLimits,
    pub(crate) min_key_length: usize,
    /// Strict mode: `POST` of an existing key or policy is 409 (Tyk overwrites).
    pub(crate) strict: bool,
    pub(crate) logout: LogoutSender,
    pub(crate) throttle: FailureThrottle,
    /// Failed OAuth client authentications (`/oauth/token`, `/oauth/revoke*`): the same budget
    /// as the admin secrets', counted apart from them.
    pub(crate) oauth_throttle: FailureThrottle,
    pub(crate) key_hasher: KeyHasher,
    /// What the rate-limit stage counts: live `quota_remaining`, quota resets.
    pub(crate) quotas: Option<keycard_core::ratelimit::Quotas>,
    /// The load stage's idle timeout in seconds, for the sessions' `idle_expires_at`.
    pub(crate) idle_timeout: Option<i64>,
    /// OAuth clients and their pending grants.
    pub(crate) oauth: OAuthClients,
    pub(crate) oauth_lifetimes: Lifetimes,
}

pub(crate) type SharedState = Arc<AdminState>;
