//! The back-channel logout configuration: issuer, default signer, receivers, delivery limits
//! and the roots `https://` receivers are checked against.

use std::fmt;
use std::time::Duration;

use rustls::RootCertStore;

use super::error::LogoutConfigError;
use super::receiver::LogoutReceiver;
use super::signer::LogoutSigner;
use super::tls;

/// The default delivery timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default bound on deliveries in flight at once, over every receiver.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

/// Where logout tokens go, how they are signed and how they travel.
#[derive(Clone)]
pub struct BackChannelLogout {
    pub(super) issuer: String,
    pub(super) signer: LogoutSigner,
    pub(super) receivers: Vec<LogoutReceiver>,
    pub(super) timeout: Duration,
    pub(super) max_in_flight: usize,
    pub(super) custom_roots: RootCertStore,
    pub(super) built_in_roots: bool,
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
