//! The quickstart stack plus the management API on a second listener: operators create keys,
//! patch session metadata and revoke sessions over HTTP, and the very next request through the
//! layers sees the change.

use axum::Router;
use keycard::admin::{AdminConfigError, AdminToken};
use keycard::auth::Activity;
use keycard::headers::HeaderConfigError;
use keycard::prelude::*;

use crate::quickstart;

/// Scopes the demo admin token carries: everything the sessions API knows.
pub const ADMIN_SCOPES: [&str; 3] = ["read:sessions", "update:sessions", "delete:sessions"];

/// Why the admin example does not build.
#[derive(Debug, thiserror::Error)]
pub enum AdminDemoError {
    /// The quickstart's header rules (literals: never in practice).
    #[error(transparent)]
    Headers(#[from] HeaderConfigError),
    /// A secret that is too short.
    #[error(transparent)]
    Secret(#[from] AdminConfigError),
}

/// The two routers of the admin example, over one store.
pub struct AdminDemo {
    /// The quickstart app (`/whoami`, `/visits`, `/echo`) behind keycard's layers.
    pub app: Router,
    /// The management API (`/tyk/...`, `/api/v2/...`, `/openapi.json`).
    pub admin: Router,
}

/// Builds both over `store`, tracking session activity ([`Activity::new`]: at most one write per
/// session per minute), with the Tyk API guarded by `tyk_secret` and the Auth0 API by one
/// bearer token named `ops` with [`ADMIN_SCOPES`]. The management API comes from the app's own
/// [`Keycard`] ([`Keycard::admin_api`]), so both share one store and one policy set: a policy
/// created through `/tyk/policies` applies to the app's next request.
///
/// # Errors
/// [`AdminDemoError::Secret`] when `tyk_secret` or `admin_token` is shorter than
/// [`MIN_SECRET_LENGTH`](keycard::admin::MIN_SECRET_LENGTH) bytes.
pub fn build(
    store: impl SessionStore,
    tyk_secret: &str,
    admin_token: &str,
) -> Result<AdminDemo, AdminDemoError> {
    // Activity tracking on, so the sessions API shows `last_interacted_at` and `device`.
    let keycard = quickstart::keycard(store)?.track_activity(Activity::new());
    let admin = keycard
        .admin_api()
        .tyk_secret(tyk_secret)
        .admin_token(AdminToken::new("ops", admin_token, ADMIN_SCOPES))
        .build()?
        .into_router();
    Ok(AdminDemo {
        app: keycard.wrap(quickstart::routes()),
        admin,
    })
}
