//! The admin credentials: the Tyk secret and the Auth0-style bearer tokens with scopes.
//!
//! Every secret is kept only as its SHA-256 digest, and a presented secret is hashed and compared
//! with `subtle`'s constant-time equality. Hashing first makes both sides 32 bytes, so the
//! comparison time depends on neither the secret's content nor its length; `subtle` (rather than
//! a hand-rolled XOR loop) keeps the optimiser from turning the loop back into an early exit.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret kept as its SHA-256 digest.
#[derive(Clone)]
pub(crate) struct Secret([u8; 32]);

impl Secret {
    /// `None` for an empty secret: it would let an empty header in.
    pub(crate) fn new(raw: &[u8]) -> Option<Self> {
        (!raw.is_empty()).then(|| Self(Sha256::digest(raw).into()))
    }

    /// Whether `digest` (of a presented secret) is this secret's, in constant time.
    pub(crate) fn matches(&self, digest: &[u8; 32]) -> bool {
        self.0.ct_eq(digest).into()
    }
}

/// The digest a presented secret is compared by.
pub(crate) fn digest(presented: &[u8]) -> [u8; 32] {
    Sha256::digest(presented).into()
}

/// A bearer token of the `/api/v2` sessions API: a name (what audit logs show), the secret token
/// (kept hashed) and the scopes it grants (`read:sessions`, `update:sessions`, `delete:sessions`).
///
/// ```
/// use keycard_admin::AdminToken;
///
/// let token = AdminToken::new("support-desk", "a-long-random-token", ["read:sessions"]);
/// assert_eq!(token.name(), "support-desk");
/// assert!(token.has_scope("read:sessions"));
/// assert!(!format!("{token:?}").contains("a-long-random-token"));
/// ```
#[derive(Clone)]
pub struct AdminToken {
    name: String,
    secret: Option<Secret>,
    len: usize,
    scopes: Vec<String>,
}

impl AdminToken {
    /// A token named `name` (shown in audit events, never the token itself) granting `scopes`.
    /// An empty `token` never matches.
    pub fn new<I, S>(name: impl Into<String>, token: impl AsRef<[u8]>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            name: name.into(),
            secret: Secret::new(token.as_ref()),
            len: token.as_ref().len(),
            scopes: scopes.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether `presented` (a [`digest`]) is this token's, in constant time.
    pub(crate) fn matches(&self, presented: &[u8; 32]) -> bool {
        self.secret
            .as_ref()
            .is_some_and(|secret| secret.matches(presented))
    }

    /// The token's length in bytes (checked against the minimum when the API is built).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The token's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scopes the token grants.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(String::as_str)
    }

    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}
