//! The servers the harness compares. Every one answers `GET /hello` with the same small JSON body
//! and `POST /visit` by changing one session entry (where there is a session).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderValue};
use axum::routing::{get, post};
use axum::{Json, Router};
use keycard::prelude::*;
use keycard::redis::{CacheConfig, RedisRateLimiter, RedisStore};
use keycard::{Identity, KeycardService};
use serde_json::{Value, json};

/// The key every keycard configuration is seeded with.
pub(crate) const BENCH_KEY: &str = "bench-key-0001-0002-0003";

/// One server configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Config {
    /// A bare axum handler returning the same JSON.
    Bare,
    /// keycard's full stack on the in-memory store.
    KeycardMemory,
    /// keycard's full stack on RedisStore, no local cache.
    KeycardRedis,
    /// keycard's full stack on RedisStore with the local cache.
    KeycardRedisCached,
    /// keycard-memory with the rate-limit stage (sliding window and a quota, in memory).
    KeycardMemoryRateLimit,
    /// keycard-memory with sessions from an HS256 JWT instead of an API key.
    KeycardMemoryJwt,
    /// keycard-redis with the rate-limit stage on Redis.
    KeycardRedisRateLimit,
    /// keycard-redis-cached with the rate-limit stage on Redis.
    KeycardRedisCachedRateLimit,
    /// tower-sessions with its in-memory store: the peer.
    TowerSessionsMemory,
    /// tower-sessions with tower-sessions-redis-store: the Redis peer.
    TowerSessionsRedis,
}

impl Config {
    /// Every configuration, in table order.
    pub(crate) const ALL: [Config; 10] = [
        Self::Bare,
        Self::KeycardMemory,
        Self::KeycardMemoryJwt,
        Self::KeycardRedis,
        Self::KeycardRedisCached,
        Self::KeycardMemoryRateLimit,
        Self::KeycardRedisRateLimit,
        Self::KeycardRedisCachedRateLimit,
        Self::TowerSessionsMemory,
        Self::TowerSessionsRedis,
    ];

    /// The name used on the command line and in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare-axum",
            Self::KeycardMemory => "keycard-memory",
            Self::KeycardRedis => "keycard-redis",
            Self::KeycardRedisCached => "keycard-redis-cached",
            Self::KeycardMemoryRateLimit => "keycard-memory-ratelimit",
            Self::KeycardMemoryJwt => "keycard-memory-jwt",
            Self::KeycardRedisRateLimit => "keycard-redis-ratelimit",
            Self::KeycardRedisCachedRateLimit => "keycard-redis-cached-ratelimit",
            Self::TowerSessionsMemory => "tower-sessions-memory",
            Self::TowerSessionsRedis => "tower-sessions-redis",
        }
    }

    /// What the configuration is, for the table.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Self::Bare => "axum handler, same JSON body, no session",
            Self::KeycardMemory => {
                "SessionLoad + Persist + 3 injected headers + 1 rewrite, MemoryStore"
            }
            Self::KeycardRedis => "the same stack on RedisStore (fred, no local cache)",
            Self::KeycardRedisCached => {
                "the same stack on RedisStore with the local cache (client tracking)"
            }
            Self::KeycardMemoryRateLimit => {
                "keycard-memory + RateLimitLayer (sliding window + quota, MemoryRateLimiter)"
            }
            Self::KeycardMemoryJwt => {
                "keycard-memory with a JwtAuth: HS256 token verified per request, metadata from claims"
            }
            Self::KeycardRedisRateLimit => {
                "keycard-redis + RateLimitLayer (sliding window + quota, RedisRateLimiter)"
            }
            Self::KeycardRedisCachedRateLimit => {
                "keycard-redis-cached + RateLimitLayer (RedisRateLimiter)"
            }
            Self::TowerSessionsMemory => {
                "tower-sessions 0.14 MemoryStore; handler reads 3 values, sets 3 headers"
            }
            Self::TowerSessionsRedis => {
                "tower-sessions 0.14 + tower-sessions-redis-store 0.16 (fred); same handler"
            }
        }
    }

    /// Whether requests authenticate with a cookie from `POST /login` (tower-sessions) rather
    /// than the bench key.
    pub(crate) fn uses_login_cookie(self) -> bool {
        matches!(self, Self::TowerSessionsMemory | Self::TowerSessionsRedis)
    }
}

impl FromStr for Config {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| format!("unknown config {name:?}"))
    }
}

fn hello_body() -> Json<Value> {
    Json(json!({"ok": true, "service": "bench", "items": [1, 2, 3]}))
}

/// What `loadtest serve` runs: the measured app, and the harness's control routes (the stored
/// session's version, cleanup) on a listener of their own, so that no measured request pays for
/// routing around them.
pub(crate) struct Server {
    pub(crate) app: App,
    pub(crate) control: Router,
}

/// The measured service. keycard's stack wraps the whole router (as the rewrite layer requires)
/// and is served directly, the way the README and the examples serve it.
pub(crate) enum App {
    Router(Router),
    Keycard(KeycardStack),
    KeycardLimited(KeycardLimitedStack),
}

/// [`Keycard`] with a rewrite and request headers around the router (served as the service
/// itself, not wrapped back into a `Router`).
pub(crate) type KeycardStack =
    KeycardService<Router, Identity, UrlRewriteLayer, InjectHeadersLayer>;

/// [`KeycardStack`] with the rate-limit stage.
pub(crate) type KeycardLimitedStack = KeycardService<
    Router,
    Identity,
    UrlRewriteLayer,
    InjectHeadersLayer,
    Identity,
    Identity,
    Identity,
    RateLimitLayer,
>;

impl Server {
    fn app(app: Router) -> Self {
        Self {
            app: App::Router(app),
            control: Router::new(),
        }
    }
}

/// The server for `config`.
pub(crate) async fn server(config: Config) -> Result<Server, Box<dyn std::error::Error>> {
    Ok(match config {
        Config::Bare => Server::app(
            Router::new()
                .route("/hello", get(|| async { hello_body() }))
                .route("/visit", post(|| async { hello_body() })),
        ),
        Config::KeycardMemory => keycard_server(seeded_memory_store().await?, None)?,
        Config::KeycardMemoryJwt => jwt_server()?,
        Config::KeycardRedis => keycard_server(seeded_redis_store(false).await?, None)?,
        Config::KeycardRedisCached => keycard_server(seeded_redis_store(true).await?, None)?,
        Config::KeycardMemoryRateLimit => {
            let limiter = RateLimitLayer::new(MemoryRateLimiter::new());
            keycard_server(seeded_memory_store().await?, Some(limiter))?
        }
        Config::KeycardRedisRateLimit | Config::KeycardRedisCachedRateLimit => {
            let cached = config == Config::KeycardRedisCachedRateLimit;
            let store = seeded_redis_store(cached).await?;
            let limiter = RateLimitLayer::new(RedisRateLimiter::connect(&store).await?);
            keycard_server(store, Some(limiter))?
        }
        Config::TowerSessionsMemory => Server::app(tower_sessions_router()),
        Config::TowerSessionsRedis => Server::app(tower_sessions_redis_router().await?),
    })
}

fn bench_metadata() -> Value {
    json!({
        "user_id": "u-bench", "tenant_id": "acme", "plan": "gold",
        "shard": "eu-2", "region": "eu-west"
    })
}

/// The bench session: the metadata, and a rate and quota that a run never reaches (so the
/// rate-limit configurations count every request and refuse none; the others ignore them).
fn bench_session() -> SessionRecord {
    let mut session = SessionRecord::for_key(BENCH_KEY).metadata(bench_metadata());
    (session.rate, session.per) = (1e9, 1.0);
    (session.quota_max, session.quota_renewal_rate) = (i64::MAX, 3600);
    session
}

async fn seeded_memory_store() -> Result<MemoryStore, Box<dyn std::error::Error>> {
    let store = MemoryStore::new();
    store.create(bench_session()).await?;
    Ok(store)
}

/// The Redis the keycard and tower-sessions Redis configurations use.
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A RedisStore under a prefix of this server process, seeded with the bench session. The
/// session expires in an hour (plus the grace period), so an interrupted run leaves nothing
/// behind for long; `POST /__cleanup` deletes it at the end of a normal run.
async fn seeded_redis_store(cache: bool) -> Result<RedisStore, Box<dyn std::error::Error>> {
    let mut builder =
        RedisStore::url(&redis_url())?.prefix(format!("keycard-bench-{}", std::process::id()));
    if cache {
        builder = builder.cache(CacheConfig::default());
    }
    let store = builder.connect().await?;
    let session = bench_session().with_expires(keycard::session::unix_now() + 3600);
    store.create(session).await?;
    Ok(store)
}

/// keycard's full stack around the whole router, built with [`Keycard`]: load (the credential
/// removed) → rewrite (`/hello` → `/v1/hello/$tyk_meta.shard`) → 3 request headers → handler →
/// save.
/// The control listener answers `GET /__stats` with the stored session's `version`, which every
/// save bumps once, and `visits`, the number of changes the handler made (the harness compares
/// the two), and deletes the session on `POST /__cleanup`.
fn keycard_server<St: SessionStore + Clone>(
    store: St,
    rate_limit: Option<RateLimitLayer>,
) -> Result<Server, Box<dyn std::error::Error>> {
    keycard_server_with(store, rate_limit, None, KeyId::of(&ApiKey::new(BENCH_KEY)))
}

/// The HS256 secret of `keycard-memory-jwt`; the driver mints [`bench_token`] with it.
pub(crate) const BENCH_JWT_SECRET: &[u8] = b"keycard-bench-hs256-secret-0001";

/// The token `keycard-memory-jwt` is driven with: the bench metadata as claims, valid for a day.
pub(crate) fn bench_token() -> Result<String, Box<dyn std::error::Error>> {
    use keycard::auth::jwt::Algorithm;
    let mut claims = bench_metadata();
    claims["sub"] = json!("u-bench");
    claims["exp"] = json!(keycard::session::unix_now() + 86_400);
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(BENCH_JWT_SECRET),
    )?)
}

/// keycard-memory with sessions from the bench token: created on the first request, its
/// metadata mapped from the claims; every request verifies the HS256 signature.
fn jwt_server() -> Result<Server, Box<dyn std::error::Error>> {
    use keycard::auth::jwt::{Algorithm, JwtAuth, JwtKey, namespaced_identity};
    let mut jwt = JwtAuth::new()
        .key(JwtKey::hmac(Algorithm::HS256, BENCH_JWT_SECRET)?)
        .default_policies(["bench"]);
    for key in ["user_id", "tenant_id", "plan", "shard", "region"] {
        jwt = jwt.claim_to_metadata(key, key);
    }
    let key_id = KeyId::of(&ApiKey::new(namespaced_identity("", None, "u-bench")));
    keycard_server_with(MemoryStore::new(), None, Some(jwt), key_id)
}

fn keycard_server_with<St: SessionStore + Clone>(
    store: St,
    rate_limit: Option<RateLimitLayer>,
    jwt: Option<keycard::auth::jwt::JwtAuth>,
    key_id: KeyId,
) -> Result<Server, Box<dyn std::error::Error>> {
    let inject = InjectHeadersLayer::request()
        .set("x-user-id", "$tyk_meta.user_id")
        .set("x-tenant-id", "$tyk_meta.tenant_id")
        .set("x-plan", "$tyk_meta.plan")
        .build()?;
    let rewrite = UrlRewriteLayer::rules()
        .rule(RewriteRule::new("^/hello$", "/v1/hello/$tyk_meta.shard"))
        .build()?;
    // Changes the handler made: persist must save each exactly once.
    let visits = Arc::new(AtomicU64::new(0));
    let counter = visits.clone();
    let routes = Router::new()
        .route("/v1/hello/{shard}", get(|| async { hello_body() }))
        .route(
            "/visit",
            post(move |session: Session| {
                let counter = counter.clone();
                async move {
                    let response = keycard_visit(session).await;
                    if response.is_ok() {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    response
                }
            }),
        );
    let mut keycard = Keycard::new(store.clone());
    if let Some(jwt) = jwt {
        keycard.policy_set().insert(Policy::new("bench"));
        keycard = keycard.jwt(jwt);
    }
    let keycard = keycard.rewrite(rewrite).request_headers(inject);
    let app = match rate_limit {
        Some(layer) => App::KeycardLimited(keycard.rate_limit(layer).layer(routes)),
        None => App::Keycard(keycard.layer(routes)),
    };
    let stats_store = store.clone();
    let cleanup_id = key_id.clone();
    let control = Router::new()
        .route(
            "/__cleanup",
            post(move || async move {
                let deleted = store.delete(&cleanup_id).await.is_ok();
                Json(json!({ "deleted": deleted }))
            }),
        )
        .route(
            "/__stats",
            get(move || async move {
                let id = &key_id;
                let version = stats_store.load(id).await.ok().flatten().map(|s| s.version);
                let visits = visits.load(Ordering::Relaxed);
                Json(json!({ "version": version, "visits": visits }))
            }),
        );
    Ok(Server { app, control })
}

async fn keycard_visit(session: Session) -> Result<Json<Value>, MetadataRejection> {
    session.increment("visits", 1)?;
    Ok(hello_body())
}

/// The peer: tower-sessions. `POST /login` creates a session holding the same metadata;
/// `GET /hello` reads three values and sets the same three headers (on the response: tower-sessions
/// has no request-header injection, so the handler does the equivalent work itself).
fn tower_sessions_router() -> Router {
    use tower_sessions::{MemoryStore as TsMemoryStore, SessionManagerLayer};
    let layer = SessionManagerLayer::new(TsMemoryStore::default()).with_secure(false);
    tower_sessions_routes().layer(layer)
}

/// The Redis peer: tower-sessions-redis-store over a fred pool.
async fn tower_sessions_redis_router() -> Result<Router, Box<dyn std::error::Error>> {
    use tower_sessions::SessionManagerLayer;
    use tower_sessions_redis_store::RedisStore as TsRedisStore;
    use tower_sessions_redis_store::fred::prelude::{ClientLike, Config as FredConfig, Pool};
    let pool = Pool::new(FredConfig::from_url(&redis_url())?, None, None, None, 1)?;
    pool.init().await?;
    let layer = SessionManagerLayer::new(TsRedisStore::new(pool)).with_secure(false);
    Ok(tower_sessions_routes().layer(layer))
}

fn tower_sessions_routes() -> Router {
    use tower_sessions::Session as TsSession;

    async fn login(session: TsSession) -> Json<Value> {
        let Value::Object(fields) = bench_metadata() else {
            unreachable!("bench_metadata is an object literal")
        };
        for (key, value) in fields {
            if session.insert(&key, value).await.is_err() {
                return Json(json!({"error": "session store failed"}));
            }
        }
        Json(json!({"ok": true}))
    }

    async fn hello(session: TsSession) -> (HeaderMap, Json<Value>) {
        let mut headers = HeaderMap::new();
        for (key, header) in [
            ("user_id", "x-user-id"),
            ("tenant_id", "x-tenant-id"),
            ("plan", "x-plan"),
        ] {
            let value: Option<String> = session.get(key).await.ok().flatten();
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(header, value);
            }
        }
        (headers, hello_body())
    }

    async fn visit(session: TsSession) -> Json<Value> {
        let visits: u64 = session.get("visits").await.ok().flatten().unwrap_or(0);
        let _ = session.insert("visits", visits + 1).await;
        hello_body()
    }

    Router::new()
        .route("/login", post(login))
        .route("/hello", get(hello))
        .route("/visit", post(visit))
}
