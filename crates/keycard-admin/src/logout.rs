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

mod receiver;
mod sender;
mod signer;
mod tls;

use std::fmt;
use std::time::Duration;

use rustls::RootCertStore;

pub use self::receiver::LogoutReceiver;
pub(crate) use self::sender::LogoutSender;
pub use self::sender::LogoutStats;
pub use self::signer::{LogoutSigner, MIN_HS256_SECRET_LENGTH};

/// The default delivery timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default bound on deliveries in flight at once, over every receiver.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;
/// How long a logout token is valid: `exp` = `iat` + this.
pub const TOKEN_LIFETIME_SECS: i64 = 120;
/// The event a logout token carries.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A back-channel logout configuration is invalid. URLs in it have their userinfo redacted
/// (`http://***@host/...`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutConfigError {
    /// The signing key does not parse, or does not fit its algorithm (an ES256 key must be a
    /// P-256 key, an RS256 key an RSA key of at least 2048 bits).
    #[error("invalid signing key: {0}")]
    InvalidKey(String),
    /// The HS256 secret is shorter than [`MIN_HS256_SECRET_LENGTH`] bytes (RFC 7518 §3.2:
    /// the key must be at least as long as the hash output, 256 bits).
    #[error("the HS256 secret must be at least {min} bytes (it is {len})")]
    ShortSecret {
        /// The secret's length.
        len: usize,
        /// [`MIN_HS256_SECRET_LENGTH`].
        min: usize,
    },
    /// The receiver URL does not parse, or has no host.
    #[error("invalid back-channel logout URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (userinfo redacted).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The receiver URL is neither `http://` nor `https://`.
    #[error("back-channel logout URL {0:?}: only http:// and https:// receivers are supported")]
    UnsupportedScheme(String),
    /// A receiver that gets `session_metadata` is plain `http://` and not marked
    /// [`LogoutReceiver::allow_plaintext`].
    #[error(
        "back-channel logout URL {0:?} gets session_metadata over plain http: use https:// or allow_plaintext()"
    )]
    PlaintextMetadata(String),
    /// A root certificate is not a PEM-encoded X.509 certificate.
    #[error("invalid root certificate: {0}")]
    InvalidCertificate(String),
}

/// Where logout tokens go, how they are signed and how they travel.
#[derive(Clone)]
pub struct BackChannelLogout {
    issuer: String,
    signer: LogoutSigner,
    receivers: Vec<LogoutReceiver>,
    timeout: Duration,
    max_in_flight: usize,
    custom_roots: RootCertStore,
    built_in_roots: bool,
}

impl BackChannelLogout {
    /// Tokens issued by `issuer` (the `iss` claim), signed by `signer` (unless a receiver has
    /// its own), to no receiver yet.
    pub fn new(issuer: impl Into<String>, signer: LogoutSigner) -> Self {
        Self {
            issuer: issuer.into(),
            signer,
            receivers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            custom_roots: RootCertStore::empty(),
            built_in_roots: true,
        }
    }

    /// Adds a receiver.
    ///
    /// # Errors
    /// [`LogoutConfigError::PlaintextMetadata`] for an `http://` receiver with
    /// [`include_metadata(true)`](LogoutReceiver::include_metadata) that is not marked
    /// [`allow_plaintext`](LogoutReceiver::allow_plaintext).
    pub fn receiver(mut self, receiver: LogoutReceiver) -> Result<Self, LogoutConfigError> {
        if receiver.sends_metadata_in_cleartext() && !receiver.plaintext_allowed() {
            return Err(LogoutConfigError::PlaintextMetadata(
                receiver.redacted_url().to_owned(),
            ));
        }
        self.receivers.push(receiver);
        Ok(self)
    }

    /// How long one delivery may take before it counts as failed (default 5 s). The time a
    /// delivery waits for its turn (see [`max_in_flight`](Self::max_in_flight)) is not counted.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many deliveries may be in flight at once, over every receiver (default
    /// [`DEFAULT_MAX_IN_FLIGHT`]); the others wait in order. 0 counts as 1. Deleting 300
    /// sessions with 3 receivers makes 900 deliveries: without a bound they would all open
    /// connections at the same moment.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        self
    }

    /// Trusts the certificate(s) in `pem` (one or more `CERTIFICATE` blocks) as roots for
    /// `https://` receivers, besides Mozilla's (see [`built_in_roots`](Self::built_in_roots)):
    /// a private CA, or a receiver's self-signed certificate.
    ///
    /// # Errors
    /// [`LogoutConfigError::InvalidCertificate`] when `pem` holds no certificate or one that
    /// does not parse.
    pub fn root_certificate(mut self, pem: impl AsRef<[u8]>) -> Result<Self, LogoutConfigError> {
        tls::add_roots(&mut self.custom_roots, pem.as_ref())?;
        Ok(self)
    }

    /// Whether Mozilla's root certificates (the `webpki-roots` set) are trusted (default
    /// `true`). `false` trusts only the [`root_certificate`](Self::root_certificate)s.
    pub fn built_in_roots(mut self, yes: bool) -> Self {
        self.built_in_roots = yes;
        self
    }
}

impl fmt::Debug for BackChannelLogout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackChannelLogout")
            .field("issuer", &self.issuer)
            .field("signer", &self.signer)
            .field("receivers", &self.receivers)
            .field("timeout", &self.timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("custom_roots", &self.custom_roots.len())
            .field("built_in_roots", &self.built_in_roots)
            .finish()
    }
}
