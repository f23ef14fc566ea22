//! The session-load layer and its builder methods.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use keycard_core::key::KeyHasher;
use keycard_core::metadata::MetadataLimits;
use keycard_core::policy::{NoPolicies, PolicySource};
use keycard_core::store::SessionStore;

use super::activity::{Activity, Tracker};
use super::config::Config;
use super::source::KeySource;
use crate::context::ForwardedFor;

/// The default minimum key length: shorter keys are treated as unknown keys.
pub const DEFAULT_MIN_KEY_LENGTH: usize = 3;

/// Loads the session behind the request's API key and puts a [`Session`](crate::session::Session)
/// into the request extensions. See the [module docs](super) for the responses it sends.
#[derive(Clone)]
pub struct SessionLoadLayer {
    pub(super) config: Arc<Config>,
}

impl SessionLoadLayer {
    /// A layer that loads sessions from `store`, reading the key from the `Authorization`
    /// header, with no policies, the Tyk metadata limits and the key required. The credential
    /// is removed from the request once its key id is computed.
    pub fn new(store: impl SessionStore) -> Self {
        Self::from_shared_store(Arc::new(store))
    }

    /// Like [`new`](Self::new), for a store that is already shared.
    pub fn from_shared_store(store: Arc<dyn SessionStore>) -> Self {
        Self {
            config: Arc::new(Config {
                store,
                policies: Arc::new(NoPolicies),
                sources: vec![KeySource::authorization()],
                limits: MetadataLimits::tyk(),
                optional: false,
                keep_credential: false,
                expose_token: false,
                min_key_length: DEFAULT_MIN_KEY_LENGTH,
                forwarded_for: ForwardedFor::Ignore,
                key_hasher: KeyHasher::default(),
                #[cfg(feature = "jwt")]
                jwt: None,
                unsaved_reported: Arc::new(AtomicBool::new(false)),
                activity: None,
            }),
        }
    }

    /// Tracks when each session is used and from which client (`last_interacted_at`, `device`
    /// on the stored record: what the Auth0 sessions API shows), and refuses sessions idle past
    /// [`Activity::idle_timeout`]. Writes are coalesced: at most one per session per
    /// [`Activity::interval`] (default 60 s), made by the first request that finds the record
    /// older, before it goes on; every other request pays one integer comparison.
    pub fn track_activity(mut self, activity: Activity) -> Self {
        self.config_mut().activity = Some(Arc::new(Tracker::new(activity)));
        self
    }

    /// The store sessions are loaded from (the one a save stage must write to).
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.config.store
    }

    /// Copy-on-write: configuring a clone leaves the original as it was.
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Where to look for the key, in order; the first non-empty value wins.
    ///
    /// # Panics
    /// If `sources` is empty.
    pub fn key_sources(mut self, sources: impl IntoIterator<Item = KeySource>) -> Self {
        let sources: Vec<_> = sources.into_iter().collect();
        assert!(
            !sources.is_empty(),
            "SessionLoadLayer needs at least one key source"
        );
        self.config_mut().sources = sources;
        self
    }

    /// The policies sessions may list in `apply_policies`.
    pub fn policies(mut self, policies: impl PolicySource) -> Self {
        self.config_mut().policies = Arc::new(policies);
        self
    }

    /// Like [`policies`](Self::policies), for policies that are already shared (with the
    /// management API, say: both must see the same set).
    pub fn shared_policies(mut self, policies: Arc<dyn PolicySource>) -> Self {
        self.config_mut().policies = policies;
        self
    }

    /// The limits every metadata write through the [`Session`](crate::session::Session) is
    /// checked against.
    pub fn limits(mut self, limits: MetadataLimits) -> Self {
        self.config_mut().limits = limits;
        self
    }

    /// Optional mode: a request without a key continues without a session (later layers see
    /// [`NoSession`](crate::session::NoSession)); a bad key is still rejected.
    pub fn optional(mut self) -> Self {
        self.config_mut().optional = true;
        self
    }

    /// Leaves the credential (the header, query parameter or cookie it came from) on the
    /// request. By default it is removed as soon as the key id is computed, so the key never
    /// reaches a handler or an upstream.
    pub fn keep_credential(mut self) -> Self {
        self.config_mut().keep_credential = true;
        self
    }

    /// Makes the raw key readable as `$tyk_context.token` (Tyk compatibility) by keeping an
    /// [`ApiKey`](keycard_core::key::ApiKey) in the request extensions. Off by default: keys
    /// should not travel past authentication.
    pub fn expose_token(mut self) -> Self {
        self.config_mut().expose_token = true;
        self
    }

    /// Keys shorter than this many characters are unknown keys (default
    /// [`DEFAULT_MIN_KEY_LENGTH`]).
    pub fn min_key_length(mut self, chars: usize) -> Self {
        self.config_mut().min_key_length = chars;
        self
    }

    /// Where `$tyk_context.remote_addr` comes from, for every later stage (default: the peer
    /// address; see [`ForwardedFor`]).
    pub fn forwarded_for(mut self, forwarded_for: ForwardedFor) -> Self {
        self.config_mut().forwarded_for = forwarded_for;
        self
    }

    /// How raw keys become key ids (default [`KeyHasher::sha256`], Tyk's hashing). Use the
    /// same hasher wherever keys are created (the admin API) — see [`KeyHasher`].
    pub fn key_hasher(mut self, hasher: KeyHasher) -> Self {
        self.config_mut().key_hasher = hasher;
        self
    }

    /// The activity tracking of [`track_activity`](Self::track_activity), when on.
    pub fn activity(&self) -> Option<Activity> {
        self.config
            .activity
            .as_ref()
            .map(|tracker| tracker.activity)
    }

    /// Sessions from signed tokens (feature `jwt`): the credential is a JWT, verified and
    /// turned into a generated session as [`JwtAuth`](super::jwt::JwtAuth) says, instead of an
    /// API key looked up in the store. The key sources, policies, limits, hasher and store of
    /// this layer apply to those sessions.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn jwt(mut self, jwt: super::jwt::JwtAuth) -> Self {
        self.config_mut().jwt = Some(jwt);
        self
    }

    /// The hasher of [`key_hasher`](Self::key_hasher).
    pub fn hasher(&self) -> &KeyHasher {
        &self.config.key_hasher
    }
}
