//! OIDC back-channel logout (OpenID Connect Back-Channel Logout 1.0): when the API deletes a
//! session, every configured receiver gets a signed logout token.
//!
//! Each delivery is a `POST` of `application/x-www-form-urlencoded` `logout_token=<JWT>`, run in
//! a spawned task with a timeout (5 s by default), so it never delays the `DELETE` answer. At
//! most [`max_in_flight`](BackChannelLogout::max_in_flight) deliveries (16 by default) are in
//! flight at once, whatever the number of sessions and receivers; the others wait their turn.
//! 200 and 204 count as delivered, anything else (another status, an error, the timeout) as
//! failed; each outcome is logged (target `keycard::logout`) and counted in [`LogoutStats`].
//!
//! The token: header `typ: logout+jwt`; claims `iss`, `aud` (the receiver's client id), `iat`,
//! `exp` (= `iat` + 120 s), `jti` (random), `events` with the back-channel logout event, `sid`
//! (the session id, i.e. the key hash), `sub` (the alias, when the session has one), no `nonce`,
//! and — for receivers that opt in, as Auth0 does — `session_metadata`.
//!
//! Signing: one default [`LogoutSigner`] and, per receiver, an optional
//! [`LogoutReceiver::signer`] of its own. Prefer an asymmetric key (ES256 or RS256): receivers
//! then hold only the public key and cannot forge tokens. With HS256 every receiver that holds
//! the secret can sign tokens any other receiver sharing it accepts, so give each receiver its
//! own secret.
//!
//! Transport: `https://` receivers are reached over TLS (rustls, Mozilla's root certificates
//! plus any [`root_certificate`](BackChannelLogout::root_certificate)); `http://` ones in
//! cleartext. A receiver that gets `session_metadata` must be `https://` unless it is marked
//! [`allow_plaintext`](LogoutReceiver::allow_plaintext) (which logs a warning when the API is
//! built), so the metadata does not cross the network readable by accident.
//!
//! ```
//! use keycard_admin::{AdminApi, BackChannelLogout};
//! use keycard_admin::logout::{LogoutReceiver, LogoutSigner};
//! use keycard_core::store::MemoryStore;
//!
//! # fn main() -> Result<(), keycard_admin::logout::LogoutConfigError> {
//! let logout = BackChannelLogout::new(
//!     "https://auth.example.com/",
//!     LogoutSigner::hs256(b"a-secret-of-at-least-32-bytes-for-the-app")?,
//! )
//! .receiver(LogoutReceiver::new("http://app.internal/backchannel-logout", "app-client-id")?)?
//! .receiver(
//!     LogoutReceiver::new("https://crm.example.com/logout", "crm-client-id")?
//!         .signer(LogoutSigner::hs256(b"another-secret-of-32-bytes-for-the-crm")?)
//!         .include_metadata(true),
//! )?
//! .max_in_flight(8);
//! let api = AdminApi::builder(MemoryStore::new())
//!     .back_channel_logout(logout)
//!     .build()
//!     .expect("no secret too short");
//! assert_eq!(api.logout_stats().delivered(), 0);
//! # Ok(())
//! # }
//! ```

mod config;
mod error;
mod receiver;
mod sender;
mod signer;
mod tls;

pub use self::config::{BackChannelLogout, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT};
pub use self::error::LogoutConfigError;
pub use self::receiver::LogoutReceiver;
pub(crate) use self::sender::LogoutSender;
pub use self::sender::{BACKCHANNEL_LOGOUT_EVENT, LogoutStats, TOKEN_LIFETIME_SECS};
pub use self::signer::{LogoutSigner, MIN_HS256_SECRET_LENGTH};
