//! OAuth2 clients whose metadata flows into the sessions they are issued: the app behind
//! keycard's layers plus the public token endpoints on one listener, the management API (where
//! clients are created) on another.
//!
//! ```text
//! POST /tyk/oauth/clients/create {"meta_data": {"plan": "gold"}, "policy_id": "oauth-basic"}  (admin)
//! POST /oauth/token grant_type=client_credentials  (app listener, client id + secret)
//! GET  /echo  Authorization: Bearer <access_token>  →  x-plan: gold   ($tyk_meta.plan)
//! ```

use axum::Router;
use keycard::admin::OAuthClients;
use keycard::prelude::*;

use crate::admin::AdminDemoError;
use crate::quickstart;

/// The policy the demo's clients issue client-credentials tokens from.
pub const DEMO_POLICY: &str = "oauth-basic";

/// The two routers of the OAuth example, over one store.
pub struct OAuthDemo {
    /// The quickstart routes (`/whoami`, `/visits`, `/echo`) behind keycard's layers, merged
    /// with the client-facing OAuth endpoints (`/oauth/token`, `/oauth/revoke`,
    /// `/oauth/revoke_all`).
    pub app: Router,
    /// The management API, with the OAuth client API (`/tyk/oauth/clients/...`) and
    /// `/tyk/oauth/authorize-client`.
    pub admin: Router,
    /// The OAuth clients both routers share.
    pub clients: OAuthClients,
}

/// The request headers of the demo app: `x-user-id` and `x-plan` from `$tyk_meta.user_id` and
/// `$tyk_meta.plan`.
///
/// # Errors
/// Never in practice (literal rules).
pub fn headers() -> Result<InjectHeadersLayer, keycard::headers::HeaderConfigError> {
    InjectHeadersLayer::request()
        .set("x-user-id", "$tyk_meta.user_id")
        .set("x-plan", "$tyk_meta.plan")
        .build()
}

/// Builds both over `store`, the Tyk API guarded by `tyk_secret`, with the policy
/// [`DEMO_POLICY`] in the shared policy set.
///
/// # Errors
/// [`AdminDemoError::Secret`] when `tyk_secret` is shorter than
/// [`MIN_SECRET_LENGTH`](keycard::admin::MIN_SECRET_LENGTH) bytes.
pub fn build(store: impl SessionStore, tyk_secret: &str) -> Result<OAuthDemo, AdminDemoError> {
    let keycard = Keycard::new(store).request_headers(headers()?);
    keycard.policy_set().insert(Policy::new(DEMO_POLICY));
    let clients = OAuthClients::new();
    let api = keycard
        .admin_api()
        .tyk_secret(tyk_secret)
        .oauth(clients.clone())
        .build()?;
    Ok(OAuthDemo {
        app: keycard.wrap(quickstart::routes()).merge(api.oauth_router()),
        admin: api.into_router(),
        clients,
    })
}
