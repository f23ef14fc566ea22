//! API keys and their hashed identities.
//!
//! A raw key ([`ApiKey`]) exists only while a request is being authenticated or when the admin API
//! hands a new key out once. Everything else — stores, logs, traces, errors — sees the [`KeyId`],
//! the hex digest of the key made by a [`KeyHasher`]: plain SHA-256 by default (Tyk's hashing,
//! so a Tyk layout and Tyk clients see the ids they expect), or HMAC-SHA-256 with a server
//! secret, recommended for new deployments.
//!
//! Why a keyed hash: the key id is public — it is the Auth0 session `id`, the logout token's
//! `sid`, the Redis key name. With plain SHA-256, anyone who sees an id can test guesses of a
//! user-chosen custom key offline; with HMAC they would need the server secret too. Generated
//! keys (256 random bits) cannot be guessed either way.
//!
//! ```
//! use keycard_core::key::{ApiKey, KeyId};
//!
//! let key = ApiKey::new("demo-key");
//! let id = KeyId::of(&key);
//! assert_eq!(id.as_str().len(), 64);
//! assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
//! assert_eq!(id.short(), &id.as_str()[..8]);
//!
//! let fresh = ApiKey::generate();
//! assert_eq!(fresh.expose().len(), 64); // 256 random bits, hex
//! ```

use std::fmt;

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A raw API key as a client presents it. Its `Debug` output is redacted and it has no `Display`,
/// so it cannot end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a raw key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// A new random key: 256 bits from the operating system's CSPRNG, hex-encoded.
    ///
    /// # Panics
    /// If the operating system has no random source (a broken platform, not a runtime condition).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system random source failed");
        Self(hex(&bytes))
    }

    /// The raw key. Only for the places that must hand it over: the `token` context variable the
    /// user asked for, and the admin API's one-time creation response.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key's length in characters (`min_key_length` checks).
    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The identity of a session at rest: the SHA-256 hex digest of its API key.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// The id of a raw key.
    pub fn of(key: &ApiKey) -> Self {
        Self(hex(&Sha256::digest(key.0.as_bytes())))
    }

    /// Wraps an id that is already a hash (for example one given to the admin API with
    /// `?hashed=true`). Returns `None` unless it is 64 lower-case hex characters.
    pub fn from_hash(hash: &str) -> Option<Self> {
        parse_digest(hash).map(|_| Self(hash.to_owned()))
    }

    /// Wraps any string without checking it (cursors, store internals).
    pub(crate) fn unchecked(id: &str) -> Self {
        Self(id.to_owned())
    }

    /// The hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 hex characters: what traces and logs carry.
    pub fn short(&self) -> &str {
        self.0.get(..8).unwrap_or(&self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How raw keys become [`KeyId`]s. Every component that turns a raw key into an id — the
/// session-load stage, the admin API, [`SessionRecord::with_key`](crate::session::SessionRecord)
/// fixtures — must use the same hasher: `keycard::Keycard::key_hasher` sets it for the stack and
/// the admin API it builds.
///
/// ```
/// use keycard_core::key::{ApiKey, KeyHasher, KeyId};
///
/// let key = ApiKey::new("a-custom-key-chosen-by-a-user");
/// assert_eq!(KeyHasher::sha256().key_id(&key), KeyId::of(&key));
///
/// let keyed = KeyHasher::hmac_sha256(b"a server secret of at least 32 bytes!")?;
/// let id = keyed.key_id(&key);
/// assert_ne!(id, KeyId::of(&key));
/// assert_eq!(id.as_str().len(), 64);
/// assert!(!format!("{keyed:?}").contains("server secret"));
/// # Ok::<(), keycard_core::key::KeyHasherError>(())
/// ```
#[derive(Clone, Default)]
pub struct KeyHasher(Hashing);

#[derive(Clone, Default)]
enum Hashing {
    #[default]
    Sha256,
    /// The HMAC state after the secret was absorbed, cloned per key.
    Hmac(Arc<Hmac<Sha256>>),
    /// A store layout's own key hashing ([`KeyHasher::custom`]).
    Custom(&'static str, CustomHash),
}

/// The function of a [`KeyHasher::custom`] hasher.
type CustomHash = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// A [`KeyHasher`] that cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyHasherError {
    /// The HMAC secret is shorter than [`KeyHasher::MIN_SECRET_LEN`] bytes.
    #[error("the key-hashing secret must be at least {min} bytes (it is {len})")]
    ShortSecret {
        /// The secret's length.
        len: usize,
        /// [`KeyHasher::MIN_SECRET_LEN`].
        min: usize,
    },
}

impl KeyHasher {
    /// The shortest HMAC secret accepted: 32 bytes, SHA-256's output size (RFC 2104 §3).
    pub const MIN_SECRET_LEN: usize = 32;

    /// Plain SHA-256 of the key, hex: Tyk's key hashing and [`KeyId::of`] (the default).
    pub fn sha256() -> Self {
        Self(Hashing::Sha256)
    }

    /// HMAC-SHA-256 of the key under `secret`, hex. Keep the secret with the deployment's other
    /// secrets: changing it changes every key id (every stored session becomes unreachable).
    ///
    /// # Errors
    /// [`KeyHasherError::ShortSecret`] for a secret under [`MIN_SECRET_LEN`](Self::MIN_SECRET_LEN)
    /// bytes.
    pub fn hmac_sha256(secret: impl AsRef<[u8]>) -> Result<Self, KeyHasherError> {
        let secret = secret.as_ref();
        if secret.len() < Self::MIN_SECRET_LEN {
            return Err(KeyHasherError::ShortSecret {
                len: secret.len(),
                min: Self::MIN_SECRET_LEN,
            });
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        Ok(Self(Hashing::Hmac(Arc::new(mac))))
    }

    /// A hasher given by a function from the raw key to its id, for a store whose layout was
    /// fixed by another system — `keycard_redis::tyk::TykKeyHash` hashes as Tyk does (murmur3
    /// variants, or the raw key when Tyk's `hash_keys` is off). `name` shows in `Debug`. The id
    /// is taken as the function returns it: it need not be 64 hex characters, and a function
    /// that returns the raw key puts the raw key where key ids go (store keys, traces).
    ///
    /// ```
    /// use keycard_core::key::{ApiKey, KeyHasher};
    ///
    /// let upper = KeyHasher::custom("upper", |key| key.to_uppercase());
    /// assert_eq!(upper.key_id(&ApiKey::new("abc")).as_str(), "ABC");
    /// assert_eq!(format!("{upper:?}"), "KeyHasher::Custom(upper)");
    /// ```
    pub fn custom(
        name: &'static str,
        hash: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> Self {
        Self(Hashing::Custom(name, Arc::new(hash)))
    }

    /// Whether this is the keyed (HMAC) hasher.
    pub fn is_keyed(&self) -> bool {
        matches!(self.0, Hashing::Hmac(_))
    }

    /// The id of `key`.
    pub fn key_id(&self, key: &ApiKey) -> KeyId {
        match &self.0 {
            Hashing::Sha256 => KeyId::of(key),
            Hashing::Hmac(mac) => {
                let mut mac = Hmac::clone(mac);
                mac.update(key.0.as_bytes());
                KeyId(hex(&mac.finalize().into_bytes()))
            }
            Hashing::Custom(_, hash) => KeyId(hash(&key.0)),
        }
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Hashing::Sha256 => f.write_str("KeyHasher::Sha256"),
            Hashing::Hmac(_) => f.write_str("KeyHasher::HmacSha256(<redacted>)"),
            Hashing::Custom(name, _) => write!(f, "KeyHasher::Custom({name})"),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Writes `bytes` as lower-case hex into `out`, two characters per byte.
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// The digest a canonical key id stands for: `Some` only for exactly 64 lower-case hex characters.
pub(crate) fn parse_digest(id: &str) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let bytes = id.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_sha256_hex() {
        // sha256("abc") from FIPS 180-2.
        assert_eq!(
            KeyId::of(&ApiKey::new("abc")).as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hmac_key_ids_follow_rfc_4231() {
        // RFC 4231 test case 2 (key "Jefe") has a 4-byte key, under our minimum; test case 6's
        // 131-byte key of 0xaa bytes, data "Test Using Larger Than Block-Size Key - Hash Key
        // First", is long enough.
        let hasher = KeyHasher::hmac_sha256([0xaa; 131]).unwrap();
        let data = ApiKey::new("Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hasher.key_id(&data).as_str(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            KeyHasher::hmac_sha256([1; 31]).unwrap_err(),
            KeyHasherError::ShortSecret { len: 31, min: 32 }
        );
        assert!(!KeyHasher::default().is_keyed() && hasher.is_keyed());
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(ApiKey::generate(), ApiKey::generate());
    }

    #[test]
    fn from_hash_accepts_only_digests() {
        let id = KeyId::of(&ApiKey::new("abc"));
        assert_eq!(KeyId::from_hash(id.as_str()), Some(id));
        assert_eq!(KeyId::from_hash("abc"), None);
        assert_eq!(KeyId::from_hash(&"G".repeat(64)), None);
    }
}
