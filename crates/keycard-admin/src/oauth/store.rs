//! Where OAuth clients and grants live: [`OAuthClients`], in memory.
//!
//! Access tokens are not here: they are sessions in the [`SessionStore`](keycard_core::store::SessionStore),
//! stored under their key id like any key. This store keeps the clients (secrets hashed), the
//! pending authorization codes and the refresh tokens (both hashed, single use), and which
//! access tokens each client was issued (for `revoke_all` and client deletion).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hmac::{Hmac, Mac};
use keycard_core::key::KeyId;
use keycard_core::metadata::Metadata;
use keycard_core::session::{SessionRecord, unix_now};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// A registered OAuth client, as stored (its secret is kept only as a keyed hash).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Client {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    /// The API the client was created for; empty: every API (Tyk stores such a client for
    /// every OAuth API).
    pub(crate) api_id: String,
    pub(crate) policy_id: String,
    pub(crate) meta_data: Metadata,
    pub(crate) description: String,
}

/// How long what the endpoints issue lives, in seconds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lifetimes {
    /// Access tokens (the session's `expires`): 3600, osin's default.
    pub(crate) access: i64,
    /// Refresh tokens: 14 days, Tyk's `oauth_refresh_token_expire` default.
    pub(crate) refresh: i64,
    /// Authorization codes: 60, a short window (osin lets a code live for minutes; one minute is enough for a redirect).
    pub(crate) code: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            access: 3600,
            refresh: 14 * 24 * 3600,
            code: 60,
        }
    }
}

/// The digest a secret, code or refresh token is kept as.
pub(crate) type Digest = [u8; 32];

/// What a grant issues sessions from: the client and the session template (Tyk's `key_rules`
/// or the client's policy).
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub(crate) client_id: String,
    pub(crate) template: SessionRecord,
}

/// A PKCE challenge (RFC 7636).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    S256(String),
    Plain(String),
}

/// An authorization code waiting for its exchange.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    pub(crate) grant: Grant,
    pub(crate) redirect_uri: String,
    pub(crate) challenge: Option<Challenge>,
    pub(crate) expires: i64,
}

/// A refresh token: the grant it renews and the access token it was issued with.
#[derive(Clone, Debug)]
pub(crate) struct RefreshGrant {
    pub(crate) grant: Grant,
    pub(crate) access: KeyId,
    pub(crate) expires: i64,
}

/// Below this many pending codes and refresh tokens, lapsed ones are not swept.
const PRUNE_FLOOR: usize = 1024;

#[derive(Default)]
struct State {
    clients: HashMap<String, (Client, Digest)>,
    codes: HashMap<Digest, CodeGrant>,
    refresh: HashMap<Digest, RefreshGrant>,
    /// client id → (access token id, expiry).
    tokens: HashMap<String, Vec<(KeyId, i64)>>,
    /// The size of `codes` + `refresh` at which lapsed grants are next swept: doubling, so a
    /// sweep costs O(1) per grant stored, amortised.
    prune_at: usize,
}

impl State {
    /// Drops lapsed codes and refresh tokens once the tables have grown past `prune_at`.
    fn prune(&mut self, now: i64) {
        if self.codes.len() + self.refresh.len() < self.prune_at.max(PRUNE_FLOOR) {
            return;
        }
        self.codes.retain(|_, c| c.expires >= now);
        self.refresh.retain(|_, r| r.expires >= now);
        self.prune_at = (self.codes.len() + self.refresh.len()) * 2;
    }
}

/// The OAuth clients of an [`AdminApi`](crate::AdminApi) and their pending grants, in memory
/// (cheap to clone; clones share the clients). Pass the same value to
/// [`AdminApiBuilder::oauth`](crate::AdminApiBuilder::oauth) of every API that should see them.
///
/// Client secrets, authorization codes and refresh tokens are kept as HMAC-SHA256 digests under
/// a random key made when the store is created. A slow password hash (argon2, bcrypt) is for
/// secrets people choose, with little entropy to search; these are 256-bit random values (a
/// client secret given on create must be at least 16 bytes), which no search recovers from a
/// fast hash, and the key means a copy of the digests alone cannot be checked against guesses.
#[derive(Clone)]
pub struct OAuthClients {
    state: Arc<RwLock<State>>,
    key: Arc<Hmac<Sha256>>,
}

impl Default for OAuthClients {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for OAuthClients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClients")
            .field("clients", &self.len())
            .finish_non_exhaustive()
    }
}

impl OAuthClients {
    /// An empty store.
    ///
    /// # Panics
    /// If the operating system has no random source.
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system random source failed");
        Self {
            state: Arc::default(),
            key: Arc::new(Hmac::new_from_slice(&key).expect("HMAC accepts keys of any length")),
        }
    }

    /// How many clients are registered.
    pub fn len(&self) -> usize {
        self.read().clients.len()
    }

    /// Whether no client is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The keyed digest of a secret, code or refresh token.
    pub(crate) fn digest(&self, raw: &str) -> Digest {
        let mut mac = Hmac::clone(&self.key);
        mac.update(raw.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Stores `client` with `secret`; whether it replaced one.
    pub(crate) fn put(&self, client: Client, secret: &str) -> bool {
        let digest = self.digest(secret);
        self.write()
            .clients
            .insert(client.client_id.clone(), (client, digest))
            .is_some()
    }

    /// Stores `client` if its id is free; `false` when taken.
    pub(crate) fn put_new(&self, client: Client, secret: &str) -> bool {
        let digest = self.digest(secret);
        let mut state = self.write();
        if state.clients.contains_key(&client.client_id) {
            return false;
        }
        state
            .clients
            .insert(client.client_id.clone(), (client, digest));
        true
    }

    /// Replaces a client's fields, keeping its secret; `false` when absent.
    pub(crate) fn update(&self, client: Client) -> bool {
        match self.write().clients.get_mut(&client.client_id) {
            Some(stored) => {
                stored.0 = client;
                true
            }
            None => false,
        }
    }

    /// Gives a client a new secret; `false` when absent.
    pub(crate) fn rotate(&self, client_id: &str, secret: &str) -> bool {
        let digest = self.digest(secret);
        match self.write().clients.get_mut(client_id) {
            Some(stored) => {
                stored.1 = digest;
                true
            }
            None => false,
        }
    }

    /// The client `client_id`.
    pub(crate) fn get(&self, client_id: &str) -> Option<Client> {
        self.read()
            .clients
            .get(client_id)
            .map(|(client, _)| client.clone())
    }

    /// The clients visible to API `api_id` (theirs, and those of every API), by id.
    pub(crate) fn list(&self, api_id: &str) -> Vec<Client> {
        let mut clients: Vec<Client> = self
            .read()
            .clients
            .values()
            .filter(|(c, _)| c.api_id.is_empty() || c.api_id == api_id)
            .map(|(c, _)| c.clone())
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        clients
    }

    /// The client, when `secret` is its secret (compared in constant time).
    pub(crate) fn authenticate(&self, client_id: &str, secret: &str) -> Option<Client> {
        let presented = self.digest(secret);
        let state = self.read();
        let (client, digest) = state.clients.get(client_id)?;
        bool::from(digest.ct_eq(&presented)).then(|| client.clone())
    }

    /// Removes a client with its pending codes, refresh tokens and the record of its access
    /// tokens (delete those from the session store first: [`tokens_of`](Self::tokens_of));
    /// whether it existed.
    pub(crate) fn remove(&self, client_id: &str) -> bool {
        let mut state = self.write();
        let existed = state.clients.remove(client_id).is_some();
        Self::drop_grants(&mut state, client_id);
        existed
    }

    /// The access tokens issued to a client (still tracked).
    pub(crate) fn tokens_of(&self, client_id: &str) -> Vec<KeyId> {
        self.read()
            .tokens
            .get(client_id)
            .map(|tokens| tokens.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default()
    }

    /// The live access tokens issued to a client, with their expiry, oldest first.
    pub(crate) fn live_tokens_of(&self, client_id: &str, now: i64) -> Vec<(KeyId, i64)> {
        self.read()
            .tokens
            .get(client_id)
            .map(|tokens| {
                tokens
                    .iter()
                    .filter(|(_, until)| *until >= now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets a client's pending codes, refresh tokens and access tokens (`revoke_all`, once
    /// the access tokens are deleted from the session store).
    pub(crate) fn forget_grants(&self, client_id: &str) {
        Self::drop_grants(&mut self.write(), client_id);
    }

    fn drop_grants(state: &mut State, client_id: &str) {
        state.codes.retain(|_, c| c.grant.client_id != client_id);
        state.refresh.retain(|_, r| r.grant.client_id != client_id);
        state.tokens.remove(client_id);
    }

    /// Records an access token issued to `client_id`, dropping its lapsed ones.
    pub(crate) fn track(&self, client_id: &str, access: KeyId, expires: i64, now: i64) {
        let mut state = self.write();
        let tokens = state.tokens.entry(client_id.to_owned()).or_default();
        tokens.retain(|(_, until)| *until >= now);
        tokens.push((access, expires));
    }

    /// Forgets an access token of `client_id`.
    pub(crate) fn untrack(&self, client_id: &str, access: &KeyId) {
        if let Some(tokens) = self.write().tokens.get_mut(client_id) {
            tokens.retain(|(id, _)| id != access);
        }
    }

    /// Stores a pending code.
    pub(crate) fn save_code(&self, code: &str, grant: CodeGrant) {
        let digest = self.digest(code);
        let mut state = self.write();
        state.codes.insert(digest, grant);
        state.prune(unix_now());
    }

    /// Takes a code: it is gone afterwards, used or not (single use).
    pub(crate) fn take_code(&self, code: &str) -> Option<CodeGrant> {
        let digest = self.digest(code);
        self.write().codes.remove(&digest)
    }

    /// Stores a refresh token.
    pub(crate) fn save_refresh(&self, token: &str, grant: RefreshGrant) {
        let digest = self.digest(token);
        let mut state = self.write();
        state.refresh.insert(digest, grant);
        state.prune(unix_now());
    }

    /// Takes a refresh token (single use: a refresh issues a new one).
    pub(crate) fn take_refresh(&self, token: &str) -> Option<RefreshGrant> {
        let digest = self.digest(token);
        self.write().refresh.remove(&digest)
    }

    /// Removes a refresh token of `client_id`; whether there was one.
    pub(crate) fn revoke_refresh(&self, client_id: &str, token: &str) -> bool {
        let digest = self.digest(token);
        let mut state = self.write();
        match state.refresh.get(&digest) {
            Some(grant) if grant.grant.client_id == client_id => {
                state.refresh.remove(&digest);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, api: &str) -> Client {
        Client {
            client_id: id.to_owned(),
            api_id: api.to_owned(),
            ..Client::default()
        }
    }

    #[test]
    fn secrets_are_checked_and_rotated() {
        let store = OAuthClients::new();
        assert!(store.put_new(client("c1", ""), "first-secret-long-enough"));
        assert!(!store.put_new(client("c1", ""), "other"));
        assert!(
            store
                .authenticate("c1", "first-secret-long-enough")
                .is_some()
        );
        assert!(
            store
                .authenticate("c1", "first-secret-long-enougH")
                .is_none()
        );
        assert!(
            store
                .authenticate("c2", "first-secret-long-enough")
                .is_none()
        );
        assert!(store.rotate("c1", "second-secret-long-enough"));
        assert!(
            store
                .authenticate("c1", "first-secret-long-enough")
                .is_none()
        );
        assert!(
            store
                .authenticate("c1", "second-secret-long-enough")
                .is_some()
        );
    }

    #[test]
    fn lapsed_grants_are_swept_as_the_tables_grow() {
        let store = OAuthClients::new();
        let grant = |expires| RefreshGrant {
            grant: Grant {
                client_id: "c".to_owned(),
                template: SessionRecord::default(),
            },
            access: KeyId::default(),
            expires,
        };
        for n in 0..PRUNE_FLOOR {
            store.save_refresh(&format!("lapsed-{n}"), grant(1));
        }
        let live = unix_now() + 3600;
        store.save_refresh("live", grant(live));
        let state = store.read();
        assert_eq!(state.refresh.len(), 1, "the lapsed ones were swept");
        drop(state);
        assert!(store.take_refresh("live").is_some());
    }

    #[test]
    fn digests_are_keyed_per_store() {
        assert_ne!(
            OAuthClients::new().digest("x"),
            OAuthClients::new().digest("x")
        );
    }

    #[test]
    fn listing_shows_the_api_s_clients_and_those_of_every_api() {
        let store = OAuthClients::new();
        store.put(client("b", "api-1"), "s");
        store.put(client("a", ""), "s");
        store.put(client("c", "api-2"), "s");
        let ids: Vec<String> = store
            .list("api-1")
            .into_iter()
            .map(|c| c.client_id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
    }
}
