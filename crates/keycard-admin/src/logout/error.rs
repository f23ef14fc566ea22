//! What makes a back-channel logout configuration invalid.

/// A back-channel logout configuration is invalid. URLs in it have their userinfo redacted
/// (`http://***@host/...`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutConfigError {
    /// The signing key does not parse, or does not fit its algorithm (an ES256 key must be a
    /// P-256 key, an RS256 key an RSA key of at least 2048 bits).
    #[error("invalid signing key: {0}")]
    InvalidKey(String),
    /// The HS256 secret is shorter than [`MIN_HS256_SECRET_LENGTH`](super::MIN_HS256_SECRET_LENGTH) bytes (RFC 7518 §3.2:
    /// the key must be at least as long as the hash output, 256 bits).
    #[error("the HS256 secret must be at least {min} bytes (it is {len})")]
    ShortSecret {
        /// The secret's length.
        len: usize,
        /// [`MIN_HS256_SECRET_LENGTH`](super::MIN_HS256_SECRET_LENGTH).
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
    /// [`LogoutReceiver::allow_plaintext`](super::LogoutReceiver::allow_plaintext).
    #[error(
        "back-channel logout URL {0:?} gets session_metadata over plain http: use https:// or allow_plaintext()"
    )]
    PlaintextMetadata(String),
    /// A root certificate is not a PEM-encoded X.509 certificate.
    #[error("invalid root certificate: {0}")]
    InvalidCertificate(String),
}
