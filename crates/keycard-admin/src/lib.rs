//! The keycard management API: one axum [`Router`] with a Tyk-compatible keys and policies API
//! (`/tyk/...`), an Auth0-compatible sessions API (`/api/v2/...`), OIDC back-channel logout when a
//! session is deleted, and its OpenAPI 3.1 document at `/openapi.json`, derived from the handlers.
//!
//! OAuth2 clients (Tyk's `/tyk/oauth/clients/...`, `/tyk/oauth/authorize-client`) are on the same
//! router; the client-facing token endpoints (`/oauth/token`, `/oauth/revoke`,
//! `/oauth/revoke_all`) are on [`AdminApi::oauth_router`], for the public listener. An issued
//! token is a session in the store, carrying its client's `meta_data` where the session lacks
//! the key ([`OAuthClients`]).
//!
//! Mount the router where you like (its own listener, or `Router::nest` under a prefix); it works
//! on the same [`SessionStore`] and [`MemoryPolicies`] the keycard layers read.
//!
//! ```
//! use axum::body::Body;
//! use http::{Request, StatusCode};
//! use http_body_util::BodyExt;
//! use keycard_admin::{AdminApi, AdminToken};
//! use keycard_core::store::MemoryStore;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! let api = AdminApi::builder(store.clone())
//!     .tyk_secret("change-me-to-a-long-secret")
//!     .admin_token(AdminToken::new("ops", "s3cr3t-token-of-32-characters!!", ["read:sessions"]))
//!     .build()
//!     .expect("secrets of at least 16 bytes");
//!
//! // Create a key through the Tyk API: the raw key is in this response, and only here.
//! let response = api
//!     .router()
//!     .oneshot(
//!         Request::post("/tyk/keys")
//!             .header("x-tyk-authorization", "change-me-to-a-long-secret")
//!             .body(Body::from(r#"{"alias": "alice", "meta_data": {"plan": "gold"}}"#))
//!             .unwrap(),
//!     )
//!     .await
//!     .unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! let created: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(created["action"], "added");
//!
//! // Read it back as an Auth0 session (id = key hash, user_id = alias).
//! let hash = created["key_hash"].as_str().unwrap();
//! let response = api
//!     .router()
//!     .oneshot(
//!         Request::get(format!("/api/v2/sessions/{hash}"))
//!             .header("authorization", "Bearer s3cr3t-token-of-32-characters!!")
//!             .body(Body::empty())
//!             .unwrap(),
//!     )
//!     .await
//!     .unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! let session: serde_json::Value = serde_json::from_slice(&body).unwrap();
//! assert_eq!(session["user_id"], "alice");
//! assert_eq!(session["session_metadata"]["plan"], "gold");
//! # }
//! ```
//!
//! # Authentication
//! - `/tyk/...`: header `X-Tyk-Authorization` must equal the secret set with
//!   [`AdminApiBuilder::tyk_secret`]; without a secret every Tyk request is refused.
//! - `/api/v2/...`: `Authorization: Bearer <token>` with one of the [`AdminToken`]s, whose scopes
//!   (`read:sessions`, `update:sessions`, `delete:sessions`) decide what it may do.
//! - `/openapi.json` is public: it describes the API, it holds no data.
//!
//! Secrets are at least [`MIN_SECRET_LENGTH`] bytes. A client that presents
//! [`DEFAULT_MAX_FAILURES`] wrong credentials within [`DEFAULT_FAILURE_WINDOW`] gets 429 (in the
//! API's error shape, with `Retry-After`) on every authenticated route until the window ends
//! ([`AdminApiBuilder::auth_failures`]); each failure is logged at `WARN` (target
//! `keycard::admin`) with the client address, never the presented secret.
//!
//! Secrets are compared in constant time (both sides are SHA-256 hashed first, then compared
//! with [`subtle`](https://docs.rs/subtle)), so neither their content nor their length leaks
//! through response timing.
//!
//! # Audit
//! Every change (create, replace, patch, delete of a key, session or policy) emits one `INFO`
//! event with target `keycard::audit`, carrying the actor (the admin token's *name*, or
//! `tyk-secret`), the first 8 characters of the session id and the metadata keys that changed —
//! never a secret, a raw key or a metadata value.

#![forbid(unsafe_code)]
// The workspace denies `unreachable_pub` already; restated here at `deny`, not `warn`, because a
// crate attribute overrides the workspace level and `warn` would lower it for this crate.
#![deny(unreachable_pub)]

mod audit;
mod auth;
mod body;
mod credentials;
mod error;
pub mod logout;
mod oauth;
mod openapi;
mod sessions;
mod state;
mod throttle;
mod time;
mod tyk;

use std::sync::Arc;

use axum::Router;
use keycard_core::key::KeyHasher;
use keycard_core::metadata::MetadataLimits;
use keycard_core::policy::MemoryPolicies;
use keycard_core::ratelimit::Quotas;
use keycard_core::store::SessionStore;

pub use crate::credentials::AdminToken;
pub use crate::logout::{BackChannelLogout, LogoutStats};
pub use crate::oauth::OAuthClients;
pub use crate::throttle::{DEFAULT_FAILURE_WINDOW, DEFAULT_MAX_FAILURES};

use crate::credentials::Secret;
use crate::logout::LogoutSender;
use crate::state::AdminState;
use crate::throttle::FailureThrottle;

/// The default minimum length of a custom key (`POST /tyk/keys/{key}`): Tyk's
/// `min_token_length` default, 3.
pub const DEFAULT_MIN_KEY_LENGTH: usize = 3;

/// The minimum length of a custom key in [strict](AdminApiBuilder::strict) mode.
pub const STRICT_MIN_KEY_LENGTH: usize = 16;

/// The minimum length, in bytes, of the Tyk secret and of every admin bearer token.
pub const MIN_SECRET_LENGTH: usize = 16;

/// An [`AdminApi`] that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminConfigError {
    /// The Tyk secret is shorter than [`MIN_SECRET_LENGTH`] (an empty one disables the Tyk API).
    #[error("the Tyk secret must be at least {min} bytes (it is {len})")]
    ShortTykSecret {
        /// The secret's length.
        len: usize,
        /// [`MIN_SECRET_LENGTH`].
        min: usize,
    },
    /// An admin token is shorter than [`MIN_SECRET_LENGTH`].
    #[error("admin token {name:?} must be at least {min} bytes (it is {len})")]
    ShortToken {
        /// The token's name.
        name: String,
        /// The token's length.
        len: usize,
        /// [`MIN_SECRET_LENGTH`].
        min: usize,
    },
    /// Failure throttling needs at least one allowed failure and a non-zero window.
    #[error("auth_failures needs max >= 1 and a non-zero window")]
    InvalidThrottle,
}

/// The management API: build it with [`AdminApi::builder`], then mount [`AdminApi::router`].
#[derive(Clone, Debug)]
pub struct AdminApi {
    router: Router,
    oauth_router: Router,
    logout_stats: LogoutStats,
}

impl AdminApi {
    /// Starts a builder over `store` (any [`SessionStore`]: a `MemoryStore`, an
    /// `Arc<dyn SessionStore>`, a Redis store...).
    pub fn builder(store: impl SessionStore) -> AdminApiBuilder {
        AdminApiBuilder {
            store: Arc::new(store),
            policies: MemoryPolicies::new(),
            tyk_secret: None,
            tyk_secret_len: 0,
            tokens: Vec::new(),
            max_failures: DEFAULT_MAX_FAILURES,
            key_hasher: KeyHasher::default(),
            failure_window: DEFAULT_FAILURE_WINDOW,
            tyk_limits: MetadataLimits::tyk(),
            min_key_length: None,
            strict: false,
            logout: None,
            quotas: None,
            idle_timeout: None,
            oauth: OAuthClients::new(),
            oauth_lifetimes: crate::oauth::store::Lifetimes::default(),
        }
    }

    /// The router (cheap to clone: axum routers share their routes).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The router, consuming the API.
    pub fn into_router(self) -> Router {
        self.router
    }

    /// The client-facing OAuth endpoints, to mount on the public listener beside the app
    /// (`Router::merge`): `POST /oauth/token`, `POST /oauth/revoke`, `POST /oauth/revoke_all`.
    /// They authenticate OAuth clients, not admins; the clients are managed on
    /// [`router`](Self::router) (`/tyk/oauth/clients/...`). See the `oauth` module docs.
    pub fn oauth_router(&self) -> Router {
        self.oauth_router.clone()
    }

    /// Counters of back-channel logout deliveries (all zero when none is configured).
    pub fn logout_stats(&self) -> LogoutStats {
        self.logout_stats.clone()
    }
}

impl From<AdminApi> for Router {
    fn from(api: AdminApi) -> Self {
        api.router
    }
}

/// Configures an [`AdminApi`]; created by [`AdminApi::builder`].
#[must_use]
pub struct AdminApiBuilder {
    store: Arc<dyn SessionStore>,
    policies: MemoryPolicies,
    tyk_secret: Option<Secret>,
    tyk_secret_len: usize,
    tokens: Vec<AdminToken>,
    max_failures: u32,
    failure_window: std::time::Duration,
    key_hasher: KeyHasher,
    tyk_limits: MetadataLimits,
    min_key_length: Option<usize>,
    strict: bool,
    logout: Option<BackChannelLogout>,
    quotas: Option<Quotas>,
    idle_timeout: Option<i64>,
    oauth: OAuthClients,
    oauth_lifetimes: crate::oauth::store::Lifetimes,
}

impl AdminApiBuilder {
    /// The session-load stage's idle timeout (`Activity::idle_timeout` in `keycard-layers`; the
    /// `Keycard` builder's `admin_api` passes its own): the Auth0 sessions API shows
    /// `idle_expires_at` from it. Without it, `idle_expires_at` is `null`.
    pub fn idle_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.idle_timeout = Some(i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX).max(1));
        self
    }

    /// The quotas the rate-limit stage counts (`RateLimitLayer::quotas` in `keycard-layers`;
    /// the `Keycard` builder's `admin_api` passes its own): key reads show the live
    /// `quota_remaining` and `quota_renews`, `POST /tyk/keys/reset/{key}` resets a key's quota,
    /// and creating or replacing a key resets its own quota unless `?suppress_reset=1` (Tyk).
    /// Without them, key reads show the stored fields and the reset answers 501.
    pub fn quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = Some(quotas);
        self
    }

    /// The policy set the `/tyk/policies` API manages and key reads apply. Pass the same
    /// (cheaply cloned, shared) set the session layers use. Default: a new, empty set.
    pub fn policies(mut self, policies: MemoryPolicies) -> Self {
        self.policies = policies;
        self
    }

    /// The secret `X-Tyk-Authorization` must carry, at least [`MIN_SECRET_LENGTH`] bytes
    /// ([`build`](Self::build) refuses a shorter one). Without one (or with an empty one) every
    /// `/tyk/...` request is refused with 403.
    pub fn tyk_secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.tyk_secret = Secret::new(secret.as_ref());
        self.tyk_secret_len = secret.as_ref().len();
        self
    }

    /// How raw keys become key ids when keys are created or named by their raw value (default
    /// [`KeyHasher::sha256`], Tyk's). It must be the hasher of the session-load stage:
    /// `keycard::Keycard::admin_api` passes it on.
    pub fn key_hasher(mut self, hasher: KeyHasher) -> Self {
        self.key_hasher = hasher;
        self
    }

    /// How many wrong credentials a client may present per `window` before every
    /// authenticated request it makes is answered 429 with `Retry-After` until the window ends
    /// (default [`DEFAULT_MAX_FAILURES`] per [`DEFAULT_FAILURE_WINDOW`]). Clients are told apart
    /// by their TCP peer address (IPv6 by /64), so serve the router with
    /// `into_make_service_with_connect_info::<SocketAddr>()`; without it all clients share one
    /// budget.
    pub fn auth_failures(mut self, max: u32, window: std::time::Duration) -> Self {
        self.max_failures = max;
        self.failure_window = window;
        self
    }

    /// Adds a bearer token for the `/api/v2` sessions API. Call once per token.
    pub fn admin_token(mut self, token: AdminToken) -> Self {
        self.tokens.push(token);
        self
    }

    /// The metadata limits of Tyk key and policy writes (default [`MetadataLimits::tyk`]).
    /// The Auth0 sessions API always checks [`MetadataLimits::auth0`].
    pub fn tyk_limits(mut self, limits: MetadataLimits) -> Self {
        self.tyk_limits = limits;
        self
    }

    /// The minimum length of a custom key given to `POST /tyk/keys/{key}`
    /// (default [`DEFAULT_MIN_KEY_LENGTH`], Tyk's; [`STRICT_MIN_KEY_LENGTH`] in strict mode).
    pub fn min_key_length(mut self, chars: usize) -> Self {
        self.min_key_length = Some(chars);
        self
    }

    /// Stricter than Tyk on the `/tyk/` API: `POST` of a key or policy that exists is 409
    /// instead of overwriting it, and custom keys need [`STRICT_MIN_KEY_LENGTH`] characters.
    /// Off by default, so Tyk's clients and scripts behave as against Tyk.
    pub fn strict(mut self) -> Self {
        self.strict = true;
        self
    }

    /// The OAuth clients (and pending grants) the client API manages and the token endpoint
    /// authenticates (default: a new, empty set). Pass the same value to every API that should
    /// share them.
    pub fn oauth(mut self, clients: OAuthClients) -> Self {
        self.oauth = clients;
        self
    }

    /// How long OAuth access tokens live (default one hour; the issued session's `expires`)
    /// and refresh tokens (default 14 days, Tyk's `oauth_refresh_token_expire`), whole seconds.
    pub fn oauth_lifetimes(
        mut self,
        access: std::time::Duration,
        refresh: std::time::Duration,
    ) -> Self {
        let seconds =
            |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1);
        self.oauth_lifetimes.access = seconds(access);
        self.oauth_lifetimes.refresh = seconds(refresh);
        self
    }

    /// Sends OIDC back-channel logout tokens when sessions are deleted through the API.
    pub fn back_channel_logout(mut self, logout: BackChannelLogout) -> Self {
        self.logout = Some(logout);
        self
    }

    /// Builds the API.
    ///
    /// # Errors
    /// A Tyk secret or admin token shorter than [`MIN_SECRET_LENGTH`] bytes, or an
    /// [`auth_failures`](Self::auth_failures) budget of zero.
    pub fn build(self) -> Result<AdminApi, AdminConfigError> {
        if self.tyk_secret_len > 0 && self.tyk_secret_len < MIN_SECRET_LENGTH {
            return Err(AdminConfigError::ShortTykSecret {
                len: self.tyk_secret_len,
                min: MIN_SECRET_LENGTH,
            });
        }
        if let Some(token) = self.tokens.iter().find(|t| t.len() < MIN_SECRET_LENGTH) {
            return Err(AdminConfigError::ShortToken {
                name: token.name().to_owned(),
                len: token.len(),
                min: MIN_SECRET_LENGTH,
            });
        }
        if self.max_failures == 0 || self.failure_window.is_zero() {
            return Err(AdminConfigError::InvalidThrottle);
        }
        let min_key_length = self.min_key_length.unwrap_or(if self.strict {
            STRICT_MIN_KEY_LENGTH
        } else {
            DEFAULT_MIN_KEY_LENGTH
        });
        if self.tyk_secret.is_some()
            && min_key_length < STRICT_MIN_KEY_LENGTH
            && !self.key_hasher.is_keyed()
        {
            tracing::warn!(
                target: "keycard::admin",
                min_key_length,
                "custom keys this short, hashed with plain SHA-256, can be recovered from their public \
                 id (session id, logout sid, Redis key); use KeyHasher::hmac_sha256 or strict()"
            );
        }
        let sender = LogoutSender::new(self.logout);
        let logout_stats = sender.stats();
        let state = Arc::new(AdminState {
            store: self.store,
            policies: self.policies,
            policy_writes: tokio::sync::Mutex::new(()),
            tyk_secret: self.tyk_secret,
            tokens: self.tokens,
            tyk_limits: self.tyk_limits,
            min_key_length,
            strict: self.strict,
            logout: sender,
            throttle: FailureThrottle::new(self.max_failures, self.failure_window),
            oauth_throttle: FailureThrottle::new(self.max_failures, self.failure_window),
            key_hasher: self.key_hasher,
            quotas: self.quotas,
            idle_timeout: self.idle_timeout,
            oauth: self.oauth,
            oauth_lifetimes: self.oauth_lifetimes,
        });
        Ok(AdminApi {
            router: openapi::routes()
                .split()
                .0
                .with_state(state.clone())
                .layer(axum::middleware::map_response(no_store)),
            oauth_router: openapi::oauth_routes()
                .with_state(state)
                .layer(axum::middleware::map_response(no_store)),
            logout_stats,
        })
    }
}

/// `Cache-Control: no-store` on every answer: creation answers carry the raw key, the others
/// session metadata, and neither belongs in a browser or proxy cache.
async fn no_store(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

impl std::fmt::Debug for AdminApiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApiBuilder")
            .field(
                "tyk_secret",
                &self.tyk_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("tokens", &self.tokens)
            .field("max_failures", &self.max_failures)
            .field("key_hasher", &self.key_hasher)
            .field("failure_window", &self.failure_window)
            .field("tyk_limits", &self.tyk_limits)
            .field("min_key_length", &self.min_key_length)
            .field("logout", &self.logout)
            .field("quotas", &self.quotas)
            .field("oauth", &self.oauth)
            .finish_non_exhaustive()
    }
}
