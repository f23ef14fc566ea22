//! What the `admin_*` tests share: a running admin API on loopback, requests with each API's
//! credentials, seeded sessions and a store that is down.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use http::{Method, StatusCode};
use keycard_admin::{AdminApi, AdminApiBuilder, AdminToken, LogoutStats};
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::metadata::Metadata;
use keycard_core::policy::MemoryPolicies;
use keycard_core::session::SessionRecord;
use keycard_core::store::{MemoryStore, SessionStore};
use keycard_tests::http::{request, spawn};
use keycard_tests::stores::UnavailableStore;
use serde_json::Value;

pub const TYK_SECRET: &str = "tyk-secret-for-tests";
/// Holds every sessions scope.
pub const ALL: &str = "token-with-every-scope";
/// Holds `read:sessions` only.
pub const READ_ONLY: &str = "token-read-only-sessions";
/// Holds `update:session` (the singular form Auth0 also accepts) only.
pub const UPDATE_SINGULAR: &str = "token-update-singular";
/// Holds no scope at all.
pub const NO_SCOPE: &str = "token-without-scopes";

/// A running admin API.
pub struct Admin {
    pub addr: SocketAddr,
    pub store: MemoryStore,
    pub policies: MemoryPolicies,
    pub stats: LogoutStats,
}

/// The test credentials; the failure budget is raised because tests present wrong credentials
/// on purpose, many times (`admin_auth` tests the default budget).
fn configured(store: impl SessionStore, policies: MemoryPolicies) -> AdminApiBuilder {
    let quotas = keycard_core::ratelimit::Quotas::new(
        std::sync::Arc::new(keycard_core::ratelimit::MemoryRateLimiter::new()),
        std::sync::Arc::new(keycard_core::ratelimit::Buckets::new()),
    );
    AdminApi::builder(store)
        .policies(policies)
        .quotas(quotas)
        .auth_failures(10_000, std::time::Duration::from_secs(60))
        .tyk_secret(TYK_SECRET)
        .admin_token(AdminToken::new(
            "ops",
            ALL,
            ["read:sessions", "update:sessions", "delete:sessions"],
        ))
        .admin_token(AdminToken::new("reader", READ_ONLY, ["read:sessions"]))
        .admin_token(AdminToken::new(
            "singular",
            UPDATE_SINGULAR,
            ["update:session"],
        ))
        .admin_token(AdminToken::new("nobody", NO_SCOPE, Vec::<String>::new()))
}

/// The API over a fresh `MemoryStore`, with the test credentials.
pub async fn start() -> Admin {
    start_with(|builder| builder).await
}

/// Like [`start`], with more configuration.
pub async fn start_with(configure: impl FnOnce(AdminApiBuilder) -> AdminApiBuilder) -> Admin {
    let store = MemoryStore::new();
    let policies = MemoryPolicies::new();
    let api = configure(configured(store.clone(), policies.clone()))
        .build()
        .expect("the test configuration builds");
    let stats = api.logout_stats();
    let addr = spawn(api.into_router()).await;
    Admin {
        addr,
        store,
        policies,
        stats,
    }
}

/// The API over a store that is always down.
pub async fn start_down() -> SocketAddr {
    spawn(
        configured(UnavailableStore, MemoryPolicies::new())
            .build()
            .expect("the test configuration builds")
            .into_router(),
    )
    .await
}

impl Admin {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A Tyk API call with the right secret.
    pub async fn tyk(&self, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        tyk(self.addr, method, path, body).await
    }

    /// An Auth0 API call with `token` and a JSON body.
    pub async fn auth0(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        auth0(self.addr, method, path, token, body).await
    }

    /// Stores a session for `alias` with `meta` under a fresh key; returns its id.
    pub async fn seed(&self, alias: &str, meta: Value) -> KeyId {
        seed(&self.store, alias, meta).await
    }

    pub async fn stored(&self, id: &KeyId) -> Option<SessionRecord> {
        self.store.load(id).await.unwrap()
    }
}

pub async fn tyk(addr: SocketAddr, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
    let url = format!("http://{addr}{path}");
    let (status, _, body) = request(
        method,
        &url,
        &[("x-tyk-authorization", TYK_SECRET)],
        body.to_owned(),
    )
    .await;
    (status, body)
}

pub async fn auth0(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: &str,
    body: &str,
) -> (StatusCode, Value) {
    let url = format!("http://{addr}{path}");
    let bearer = format!("Bearer {token}");
    let (status, _, body) = request(
        method,
        &url,
        &[
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ],
        body.to_owned(),
    )
    .await;
    (status, body)
}

pub async fn seed(store: &MemoryStore, alias: &str, meta: Value) -> KeyId {
    let Value::Object(meta) = meta else {
        panic!("metadata must be an object")
    };
    let id = KeyId::of(&ApiKey::generate());
    store
        .create(
            SessionRecord::new(meta)
                .with_key_id(id.clone())
                .with_alias(alias),
        )
        .await
        .unwrap();
    id
}

/// `n` metadata entries `k0..` = `"v"`.
pub fn entries(n: usize) -> Metadata {
    (0..n)
        .map(|i| (format!("k{i}"), Value::from("v")))
        .collect()
}
