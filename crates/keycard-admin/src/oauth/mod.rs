//! OAuth2 clients and the tokens they are issued, as Tyk's OAuth does: the client's
//! `meta_data` is copied into every issued session, for the keys the session lacks.
//!
//! - On the admin router (Tyk secret): the client API (`/tyk/oauth/clients/...`, Tyk's) and
//!   `POST /tyk/oauth/authorize-client` (the resource owner's app asks for a code).
//! - On [`AdminApi::oauth_router`](crate::AdminApi::oauth_router), for the public listener:
//!   `POST /oauth/token` (`client_credentials`, `authorization_code` with PKCE,
//!   `refresh_token`), `POST /oauth/revoke`, `POST /oauth/revoke_all`.
//!
//! Access tokens are opaque 256-bit values; each is a session in the session store under its
//! key id, like any key, with `oauth_client_id` set and `expires` at now + the access lifetime.
//! The load stage reads it from `Authorization: Bearer <token>` as it reads any key. See
//! `docs/oauth.md`.
//!
//! Why not an OAuth2 server crate: oxide-auth is the maintained one, but it brings its own
//! registrar, authorizer and issuer (token store) abstractions and its own request/response
//! model. keycard needs Tyk's client API and error bodies and tokens that are sessions in the
//! existing `SessionStore`; fitting oxide-auth to that means implementing its storage traits
//! over ours and translating both ways, more code than the three grants themselves
//! (RFC 6749 §4.1, §4.4, §6 and RFC 7636 are small).

pub(crate) mod authorize;
pub(crate) mod clients;
mod issue;
pub(crate) mod store;
mod token;
mod wire;

pub use self::store::OAuthClients;
pub(crate) use self::token::{revoke, revoke_all, token};
pub(crate) use self::wire::OAuthError;
