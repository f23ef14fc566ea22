//! The keys logout tokens are signed with.

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey};

use super::error::LogoutConfigError;

/// The shortest HS256 secret accepted, in bytes: RFC 7518 §3.2 requires a key of at least the
/// hash output's size, 256 bits.
pub const MIN_HS256_SECRET_LENGTH: usize = 32;

/// The key logout tokens are signed with: ES256 or RS256 (recommended: a receiver then holds
/// only the public key and cannot sign tokens itself), or HS256 with a shared secret.
#[derive(Clone)]
pub struct LogoutSigner {
    pub(super) algorithm: Algorithm,
    pub(super) key: EncodingKey,
    pub(super) key_id: Option<String>,
}

impl LogoutSigner {
    /// HS256 with a shared secret of at least [`MIN_HS256_SECRET_LENGTH`] bytes. Everyone
    /// who verifies these tokens can also sign them: give each receiver its own secret
    /// ([`LogoutReceiver::signer`](super::LogoutReceiver::signer)), or use an asymmetric key.
    ///
    /// # Errors
    /// [`LogoutConfigError::ShortSecret`] for a shorter (or empty) secret.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, LogoutConfigError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_HS256_SECRET_LENGTH {
            return Err(LogoutConfigError::ShortSecret {
                len: secret.len(),
                min: MIN_HS256_SECRET_LENGTH,
            });
        }
        Ok(Self::unchecked(
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
        ))
    }

    /// RS256 with a PEM-encoded RSA private key (PKCS#1 or PKCS#8).
    ///
    /// # Errors
    /// [`LogoutConfigError::InvalidKey`] when `pem` is not an RSA private key that can sign.
    pub fn rs256_pem(pem: impl AsRef<[u8]>) -> Result<Self, LogoutConfigError> {
        let key = EncodingKey::from_rsa_pem(pem.as_ref()).map_err(|e| invalid("RS256", &e))?;
        Self::checked(Algorithm::RS256, key)
    }

    /// ES256 with a PEM-encoded P-256 private key (PKCS#8, `BEGIN PRIVATE KEY`, as
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes it).
    ///
    /// # Errors
    /// [`LogoutConfigError::InvalidKey`] when `pem` is not a P-256 private key that can sign.
    pub fn es256_pem(pem: impl AsRef<[u8]>) -> Result<Self, LogoutConfigError> {
        let key = EncodingKey::from_ec_pem(pem.as_ref()).map_err(|e| invalid("ES256", &e))?;
        Self::checked(Algorithm::ES256, key)
    }

    /// Sets the `kid` header, so receivers can pick the key from the issuer's JWKS.
    pub fn key_id(mut self, kid: impl Into<String>) -> Self {
        self.key_id = Some(kid.into());
        self
    }

    fn unchecked(algorithm: Algorithm, key: EncodingKey) -> Self {
        Self {
            algorithm,
            key,
            key_id: None,
        }
    }

    /// A PEM block only says "EC" or "RSA": signing once here finds a P-384 key given to
    /// ES256 or a too-short RSA key at build time instead of at every delivery.
    fn checked(algorithm: Algorithm, key: EncodingKey) -> Result<Self, LogoutConfigError> {
        jsonwebtoken::crypto::sign(b"keycard logout key check", &key, algorithm)
            .map_err(|e| invalid(&format!("{algorithm:?}"), &e))?;
        Ok(Self::unchecked(algorithm, key))
    }
}

fn invalid(algorithm: &str, error: &jsonwebtoken::errors::Error) -> LogoutConfigError {
    LogoutConfigError::InvalidKey(format!("{algorithm}: {error}"))
}

impl fmt::Debug for LogoutSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutSigner")
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .field("key_id", &self.key_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hs256_secrets_under_256_bits_are_refused() {
        for len in [0, 1, 31] {
            assert!(
                matches!(
                    LogoutSigner::hs256(vec![b'k'; len]),
                    Err(LogoutConfigError::ShortSecret { len: l, min: 32 }) if l == len
                ),
                "{len} bytes"
            );
        }
        assert!(LogoutSigner::hs256([b'k'; 32]).is_ok());
    }

    #[test]
    fn keys_that_are_not_keys_are_refused() {
        for result in [
            LogoutSigner::rs256_pem("not a pem"),
            LogoutSigner::es256_pem("not a pem"),
        ] {
            assert!(matches!(result, Err(LogoutConfigError::InvalidKey(_))));
        }
    }
}
