//! Sessions from tokens (`docs/jwt.md`), over real HTTP: tokens minted here, keys served by a
//! JWKS server on loopback that rotates its keys mid-test, and every refusal with Tyk's status
//! and body (`gateway/mw_jwt.go`, `gateway/mw_openid.go`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{EncodingKey, Header, encode};
use keycard::Keycard;
use keycard::auth::jwt::{Algorithm, JwtAuth, JwtKey, OidcProvider, namespaced_identity};
use keycard::headers::InjectHeadersLayer;
use keycard::key::{ApiKey, KeyHasher};
use keycard::policy::{MemoryPolicies, Policy};
use keycard::session::{Session, unix_now};
use keycard::store::{MemoryStore, SessionStore};
use keycard_tests::http::{Client, TestResponse, spawn};
use serde_json::{Value, json};

const SECRET: &[u8] = b"a-shared-secret-for-hs256-tests!";

fn policies() -> MemoryPolicies {
    let policies = MemoryPolicies::new();
    policies.insert(
        Policy::new("gold")
            .with_meta("plan", json!("gold"))
            .with_tag("t-gold"),
    );
    policies.insert(Policy::new("silver").with_meta("plan", json!("silver")));
    policies
}

/// `/` answers the session's metadata and the `x-sub` header rendered from
/// `$tyk_context.jwt_claims_sub`; `/write` stores `written` in the session.
fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|session: Session, headers: http::HeaderMap| async move {
                axum::Json(json!({
                    "meta": Value::Object(session.metadata()),
                    "alias": session.alias(),
                    "expires": session.expires(),
                    "tags": session.tags(),
                    "x_sub": headers.get("x-sub").map(|v| v.to_str().unwrap().to_owned()),
                    "x_org": headers.get("x-org").map(|v| v.to_str().unwrap().to_owned()),
                }))
            }),
        )
        .route(
            "/write",
            get(|session: Session| async move {
                session.insert("written", "by-the-first-request").unwrap();
                "written"
            }),
        )
}

async fn serve(store: impl SessionStore, jwt: JwtAuth) -> Client {
    let keycard = Keycard::new(store)
        .policies(policies())
        .jwt(jwt)
        .request_headers(
            InjectHeadersLayer::request()
                .set("x-sub", "$tyk_context.jwt_claims_sub")
                .set("x-org", "$tyk_meta.org_id")
                .build()
                .unwrap(),
        );
    Client::new(spawn(keycard.wrap(routes())).await)
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn later() -> i64 {
    unix_now() + 3600
}

async fn get_with(client: &Client, path: &str, token: &str) -> TestResponse {
    client
        .get(path, &[("authorization", &format!("Bearer {token}"))])
        .await
}

fn assert_error(response: &TestResponse, status: u16, message: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.json(), json!({ "error": message }));
}

fn hs_auth() -> JwtAuth {
    JwtAuth::new()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .policy_claim("pol")
        .org_id("acme")
        .claim_to_metadata("org_id", "org.id")
        .claim_to_metadata_refreshed("roles", "realm_access.roles")
}

#[tokio::test]
async fn first_request_creates_the_session_and_the_second_reuses_it() {
    let store = MemoryStore::new();
    let client = serve(store.clone(), hs_auth()).await;
    let exp = later();
    let claims = json!({"sub": "alice", "pol": "gold", "exp": exp, "org": {"id": "org-7"},
                        "realm_access": {"roles": ["reader"]}});
    let token = hs256(&claims);

    let first = get_with(&client, "/write", &token).await;
    assert_eq!(first.status, 200, "{}", first.text());

    let second = get_with(&client, "/", &token).await.json();
    let key_id =
        KeyHasher::sha256().key_id(&ApiKey::new(namespaced_identity("acme", None, "alice")));
    assert_eq!(second["meta"]["written"], "by-the-first-request");
    assert_eq!(second["meta"]["TykJWTSessionID"], key_id.as_str());
    assert_eq!(second["meta"]["org_id"], "org-7");
    assert_eq!(second["meta"]["roles"], json!(["reader"]));
    assert_eq!(second["meta"]["plan"], "gold");
    assert_eq!(second["alias"], "alice");
    assert_eq!(second["expires"], exp);
    assert_eq!(second["x_sub"], "alice");
    assert_eq!(second["x_org"], "org-7");
    assert_eq!(store.len(), 1);
    let stored = store.load(&key_id).await.unwrap().unwrap();
    assert_eq!(stored.apply_policies, ["gold"]);
    // Policy metadata is applied to the view, never stored.
    assert!(stored.meta_data.get("plan").is_none());
}

/// Tyk misses policy metadata on a session's very first request (its create replaces the
/// metadata after the policy merge); here the first request sees it.
#[tokio::test]
async fn policy_metadata_is_there_on_the_first_request() {
    let client = serve(MemoryStore::new(), hs_auth()).await;
    let token = hs256(&json!({"sub": "bob", "pol": "gold", "exp": later()}));
    let first = get_with(&client, "/", &token).await.json();
    assert_eq!(first["meta"]["plan"], "gold");
    assert_eq!(first["tags"], json!(["t-gold"]));
}

#[tokio::test]
async fn a_changed_policy_claim_reapplies_policies_and_refreshed_claims_follow() {
    let store = MemoryStore::new();
    let client = serve(store.clone(), hs_auth()).await;
    let exp = later();
    let gold = hs256(
        &json!({"sub": "carol", "pol": "gold", "exp": exp, "org": {"id": "o1"},
                             "realm_access": {"roles": ["a"]}}),
    );
    assert_eq!(get_with(&client, "/write", &gold).await.status, 200);
    let silver = hs256(&json!({"sub": "carol", "pol": "silver", "exp": exp + 60,
                               "org": {"id": "o2"}, "realm_access": {"roles": ["a", "b"]}}));
    let body = get_with(&client, "/", &silver).await.json();
    assert_eq!(body["meta"]["plan"], "silver");
    assert_eq!(body["meta"]["written"], "by-the-first-request");
    // `roles` is refreshed from every token; `org_id` only set on create.
    assert_eq!(body["meta"]["roles"], json!(["a", "b"]));
    assert_eq!(body["meta"]["org_id"], "o1");
    // A longer-lived token extends the session.
    assert_eq!(body["expires"], exp + 60);
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn concurrent_first_requests_of_one_subject_make_one_session() {
    let store = MemoryStore::new();
    let client = serve(store.clone(), hs_auth()).await;
    let token = hs256(&json!({"sub": "dave", "pol": "gold", "exp": later()}));
    let requests = (0..8).map(|_| {
        let (client, token) = (client.clone(), token.clone());
        tokio::spawn(async move { get_with(&client, "/", &token).await.status })
    });
    for status in futures_join(requests).await {
        assert_eq!(status, 200);
    }
    assert_eq!(store.len(), 1);
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.unwrap());
    }
    out
}

#[tokio::test]
async fn bad_hs256_tokens_get_tyks_statuses_and_bodies() {
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let auth = hs_auth()
        .key(
            JwtKey::rsa_pem(Algorithm::RS256, rsa.public_key_pem())
                .unwrap()
                .with_kid("rsa"),
        )
        .allowed_issuers(["https://idp.example"])
        .allowed_audiences(["api"]);
    let client = serve(MemoryStore::new(), auth).await;
    let good = json!({"sub": "erin", "pol": "gold", "exp": later(), "iss": "https://idp.example", "aud": "api"});
    let with = |patch: Value| {
        let mut claims = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    };
    assert_eq!(get_with(&client, "/", &hs256(&good)).await.status, 200);

    let missing = client.get("/", &[]).await;
    assert_error(&missing, 400, "Authorization field missing");

    let expired = hs256(&with(json!({"exp": unix_now() - 10})));
    assert_error(
        &get_with(&client, "/", &expired).await,
        401,
        "Key not authorized: token has expired",
    );
    let early = hs256(&with(json!({"nbf": unix_now() + 600})));
    assert_error(
        &get_with(&client, "/", &early).await,
        401,
        "Key not authorized: token is not valid yet",
    );
    let issuer = hs256(&with(json!({"iss": "https://evil.example"})));
    assert_error(
        &get_with(&client, "/", &issuer).await,
        401,
        "Key not authorized: invalid issuer claim: https://evil.example",
    );
    let no_issuer = hs256(&with(json!({"iss": null})));
    assert_error(
        &get_with(&client, "/", &no_issuer).await,
        401,
        "Key not authorized: issuer claim is required but not present in token",
    );
    let audience = hs256(&with(json!({"aud": ["web", "other"]})));
    assert_error(
        &get_with(&client, "/", &audience).await,
        401,
        "Key not authorized: no matching audience found in token: [web other]",
    );

    // `alg: none`: an unsigned token.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    assert_error(
        &get_with(&client, "/", &none).await,
        403,
        "Key not authorized: Unexpected signing method",
    );

    // HS/RS confusion: HS256 "signed" with the RSA public key as the secret, naming the RSA
    // key's kid. The RSA key is pinned to RS256, so the HMAC is never computed with it.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let confused = encode(
        &header,
        &good,
        &EncodingKey::from_secret(rsa.public_key_pem().as_bytes()),
    )
    .unwrap();
    // The HS256 key has no kid, so it is tried too — and the signature does not match it.
    assert_error(
        &get_with(&client, "/", &confused).await,
        403,
        "Key not authorized",
    );
    let rs_only = serve(
        MemoryStore::new(),
        JwtAuth::new()
            .key(JwtKey::rsa_pem(Algorithm::RS256, rsa.public_key_pem()).unwrap())
            .policy_claim("pol"),
    )
    .await;
    assert_error(
        &get_with(&rs_only, "/", &confused).await,
        403,
        "Key not authorized: Unexpected signing method",
    );
    assert_error(
        &get_with(&rs_only, "/", &none).await,
        403,
        "Key not authorized: Unexpected signing method",
    );

    let wrong_secret = encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(b"another"),
    )
    .unwrap();
    assert_error(
        &get_with(&client, "/", &wrong_secret).await,
        403,
        "Key not authorized",
    );
    assert_error(
        &get_with(&client, "/", "not.a.jwt").await,
        403,
        "Key not authorized",
    );

    let no_policy = hs256(&with(json!({"pol": null})));
    assert_error(
        &get_with(&client, "/", &no_policy).await,
        403,
        "key not authorized: no matching policy found",
    );
    let unknown_policy = hs256(&with(json!({"pol": "platinum"})));
    assert_error(
        &get_with(&client, "/", &unknown_policy).await,
        403,
        "key not authorized: no matching policy",
    );
    let no_subject = hs256(&with(json!({"sub": null})));
    assert_error(
        &get_with(&client, "/", &no_subject).await,
        403,
        "no suitable claims for user ID were found",
    );
    let empty_subject = hs256(&with(json!({"sub": ""})));
    assert_error(
        &get_with(&client, "/", &empty_subject).await,
        403,
        "found an empty user ID in sub claim",
    );
}

#[tokio::test]
async fn mapped_claims_are_checked_against_the_metadata_limits() {
    let auth = hs_auth();
    let keycard = Keycard::new(MemoryStore::new())
        .policies(policies())
        .limits(keycard::metadata::MetadataLimits::auth0())
        .jwt(auth);
    let client = Client::new(spawn(keycard.wrap(routes())).await);
    // Auth0's profile stores strings only: an array of roles is refused.
    let token = hs256(&json!({"sub": "fay", "pol": "gold", "exp": later(),
                              "realm_access": {"roles": ["a"]}}));
    let response = get_with(&client, "/", &token).await;
    assert_eq!(response.status, 403);
    let message = response.json()["error"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with(
            "key not authorized: claim realm_access.roles cannot be stored as metadata: "
        ),
        "{message}"
    );
}

/// A JWKS server: serves `keys`, counts fetches, fails with 500 while `failing`.
#[derive(Clone, Default)]
struct Jwks {
    keys: Arc<RwLock<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    issuer: Arc<RwLock<String>>,
}

impl Jwks {
    fn set(&self, keys: Vec<Jwk>) {
        *self.keys.write().unwrap() = keys;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    async fn start(&self) -> String {
        let app = Router::new()
            .route(
                "/jwks.json",
                get(|State(jwks): State<Jwks>| async move {
                    jwks.fetches.fetch_add(1, Ordering::SeqCst);
                    if jwks.failing.load(Ordering::SeqCst) {
                        return Err(http::StatusCode::INTERNAL_SERVER_ERROR);
                    }
                    let keys = jwks.keys.read().unwrap().clone();
                    Ok(axum::Json(JwkSet { keys }))
                }),
            )
            .route(
                "/.well-known/openid-configuration",
                get(|State(jwks): State<Jwks>| async move {
                    let issuer = jwks.issuer.read().unwrap().clone();
                    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks.json")}))
                }),
            )
            .with_state(self.clone());
        let base = format!("http://{}", spawn(app).await);
        *self.issuer.write().unwrap() = base.clone();
        base
    }
}

/// A signing key and its public JWK.
struct Signer {
    alg: Algorithm,
    kid: String,
    key: EncodingKey,
    jwk: Jwk,
}

impl Signer {
    fn new(alg: Algorithm, kid: &str) -> Self {
        let pair = match alg {
            Algorithm::RS256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256),
            Algorithm::ES256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            other => panic!("no test key for {other:?}"),
        }
        .unwrap();
        let pem = pair.serialize_pem();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(pem.as_bytes()),
        }
        .unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            alg,
            kid: kid.to_owned(),
            key,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.key).unwrap()
    }
}

fn jwks_auth(base: &str, min_interval: Duration) -> JwtAuth {
    JwtAuth::new()
        .jwks(&format!("{base}/jwks.json"))
        .unwrap()
        .jwks_refresh(
            Duration::from_secs(600),
            min_interval,
            Duration::from_secs(2),
        )
        .skip_kid()
        .policy_claim("pol")
}

#[tokio::test]
async fn rs256_and_es256_keys_from_a_jwks_that_rotates() {
    let server = Jwks::default();
    let base = server.start().await;
    let rsa = Signer::new(Algorithm::RS256, "rsa-1");
    let ec = Signer::new(Algorithm::ES256, "ec-2");
    server.set(vec![rsa.jwk.clone()]);
    let store = MemoryStore::new();
    let client = serve(store.clone(), jwks_auth(&base, Duration::ZERO)).await;
    let claims = json!({"sub": "gina", "pol": "gold", "exp": later()});

    assert_eq!(
        get_with(&client, "/write", &rsa.sign(&claims)).await.status,
        200
    );
    assert_eq!(server.fetches(), 1);
    // A cached key: no fetch.
    assert_eq!(get_with(&client, "/", &rsa.sign(&claims)).await.status, 200);
    assert_eq!(server.fetches(), 1);

    // The IdP rotates to an EC key: its kid is unknown, so the JWKS is fetched again.
    server.set(vec![ec.jwk.clone()]);
    let body = get_with(&client, "/", &ec.sign(&claims)).await;
    assert_eq!(body.status, 200, "{}", body.text());
    assert_eq!(server.fetches(), 2);
    // Same subject, same session, whichever key signed the token.
    assert_eq!(body.json()["meta"]["written"], "by-the-first-request");
    assert_eq!(store.len(), 1);
    // The retired key is gone from the set.
    assert_error(
        &get_with(&client, "/", &rsa.sign(&claims)).await,
        403,
        "Key not authorized",
    );

    // Concurrent requests with one unknown kid share one fetch.
    let next = Signer::new(Algorithm::ES256, "ec-3");
    server.set(vec![ec.jwk.clone(), next.jwk.clone()]);
    let before = server.fetches();
    let token = next.sign(&claims);
    let requests = (0..8).map(|_| {
        let (client, token) = (client.clone(), token.clone());
        tokio::spawn(async move { get_with(&client, "/", &token).await.status })
    });
    for status in futures_join(requests).await {
        assert_eq!(status, 200);
    }
    assert_eq!(server.fetches(), before + 1);
}

#[tokio::test]
async fn unknown_kids_fetch_at_most_once_per_interval() {
    let server = Jwks::default();
    let base = server.start().await;
    let known = Signer::new(Algorithm::ES256, "known");
    server.set(vec![known.jwk.clone()]);
    let client = serve(
        MemoryStore::new(),
        jwks_auth(&base, Duration::from_secs(60)),
    )
    .await;
    let claims = json!({"sub": "hal", "pol": "gold", "exp": later()});
    assert_eq!(
        get_with(&client, "/", &known.sign(&claims)).await.status,
        200
    );
    let stranger = Signer::new(Algorithm::ES256, "stranger");
    for _ in 0..5 {
        assert_error(
            &get_with(&client, "/", &stranger.sign(&claims)).await,
            403,
            "Key not authorized",
        );
    }
    assert_eq!(
        server.fetches(),
        1,
        "the first fetch was less than 60 s ago"
    );
}

#[tokio::test]
async fn cached_keys_keep_serving_while_the_jwks_server_fails() {
    let server = Jwks::default();
    let base = server.start().await;
    let key = Signer::new(Algorithm::RS256, "k1");
    server.set(vec![key.jwk.clone()]);
    // Keys are stale at once: every request revalidates in the background.
    let auth = jwks_auth(&base, Duration::ZERO).jwks_refresh(
        Duration::ZERO,
        Duration::ZERO,
        Duration::from_secs(2),
    );
    let client = serve(MemoryStore::new(), auth).await;
    let claims = json!({"sub": "ivy", "pol": "gold", "exp": later()});
    assert_eq!(get_with(&client, "/", &key.sign(&claims)).await.status, 200);
    server.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(get_with(&client, "/", &key.sign(&claims)).await.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.fetches() >= 2, "background refreshes were attempted");
}

#[tokio::test]
async fn oidc_sessions_from_a_discovered_provider() {
    let server = Jwks::default();
    let issuer = server.start().await;
    let key = Signer::new(Algorithm::RS256, "oidc-1");
    server.set(vec![key.jwk.clone()]);
    let provider = OidcProvider::new(issuer.clone())
        .unwrap()
        .client("web-app", "gold");
    let store = MemoryStore::new();
    let client = serve(
        store.clone(),
        JwtAuth::oidc([provider]).segregate_by_client(),
    )
    .await;
    let claims = json!({"sub": "jo", "iss": issuer, "aud": "web-app", "exp": later()});

    let body = get_with(&client, "/", &key.sign(&claims)).await;
    assert_eq!(body.status, 200, "{}", body.text());
    let body = body.json();
    assert_eq!(body["meta"]["ClientID"], "web-app");
    assert_eq!(body["meta"]["plan"], "gold");
    assert_eq!(body["alias"], "web-app:jo");
    let key_id =
        KeyHasher::sha256().key_id(&ApiKey::new(namespaced_identity("", Some("web-app"), "jo")));
    assert_eq!(body["meta"]["TykJWTSessionID"], key_id.as_str());

    let other_client = json!({"sub": "jo", "iss": issuer, "aud": "mobile", "exp": later()});
    assert_error(
        &get_with(&client, "/", &key.sign(&other_client)).await,
        401,
        "Key not authorised",
    );
    let other_issuer =
        json!({"sub": "jo", "iss": "https://elsewhere", "aud": "web-app", "exp": later()});
    assert_error(
        &get_with(&client, "/", &key.sign(&other_issuer)).await,
        401,
        "Key not authorised",
    );
    let expired = json!({"sub": "jo", "iss": issuer, "aud": "web-app", "exp": unix_now() - 60});
    assert_error(
        &get_with(&client, "/", &key.sign(&expired)).await,
        401,
        "Key not authorised",
    );
    assert_eq!(store.len(), 1);
}

#[tokio::test]
async fn scopes_map_to_policies() {
    let auth = JwtAuth::new()
        .key(JwtKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .scope_claim("scp")
        .scope_policy("orders:read", "silver")
        .scope_policy("orders:admin", "gold")
        .default_policies(["silver"]);
    let store = MemoryStore::new();
    let client = serve(store.clone(), auth).await;
    let exp = later();
    let admin = hs256(&json!({"sub": "kim", "scp": "orders:read orders:admin", "exp": exp}));
    let body = get_with(&client, "/", &admin).await.json();
    // Mapped in the map's order: silver, then gold; the later policy wins `plan`.
    assert_eq!(body["meta"]["plan"], "gold");
    let reader = hs256(&json!({"sub": "kim", "scp": ["orders:read"], "exp": exp}));
    assert_eq!(
        get_with(&client, "/", &reader).await.json()["meta"]["plan"],
        "silver"
    );
    // No scope claim: the defaults.
    let plain = hs256(&json!({"sub": "lee", "exp": exp}));
    assert_eq!(
        get_with(&client, "/", &plain).await.json()["meta"]["plan"],
        "silver"
    );
    let unmapped = hs256(&json!({"sub": "kim", "scp": "billing", "exp": exp}));
    assert_error(
        &get_with(&client, "/", &unmapped).await,
        403,
        "key not authorized: no matching policy found in scope claim",
    );
}

#[tokio::test]
async fn eddsa_and_hs512_keys_from_configuration() {
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let auth = JwtAuth::new()
        .key(JwtKey::ed_pem(ed.public_key_pem()).unwrap().with_kid("ed"))
        .key(
            JwtKey::hmac(Algorithm::HS512, SECRET)
                .unwrap()
                .with_kid("hs"),
        )
        .skip_kid()
        .policy_claim("pol");
    let client = serve(MemoryStore::new(), auth).await;
    let claims = json!({"sub": "max", "pol": "gold", "exp": later()});
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed".into());
    let key = EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).unwrap();
    assert_eq!(
        get_with(&client, "/", &encode(&header, &claims, &key).unwrap())
            .await
            .status,
        200
    );
    let mut header = Header::new(Algorithm::HS512);
    header.kid = Some("hs".into());
    let token = encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
    assert_eq!(get_with(&client, "/", &token).await.status, 200);
    // HS256 with the HS512 secret: that key is pinned to HS512.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".into());
    let token = encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
    assert_error(
        &get_with(&client, "/", &token).await,
        403,
        "Key not authorized: Unexpected signing method",
    );
}

/// The same flow on Redis: the session and what a handler wrote survive across tokens.
#[tokio::test]
async fn generated_sessions_persist_on_redis() {
    use keycard_tests::redis_support::{connect, shared_store};
    let store = connect(shared_store("jwt_sessions")).await;
    let client = serve(store.clone(), hs_auth()).await;
    let exp = later();
    let first = hs256(&json!({"sub": "ned", "pol": "gold", "exp": exp}));
    assert_eq!(get_with(&client, "/write", &first).await.status, 200);
    let second = hs256(&json!({"sub": "ned", "pol": "silver", "exp": exp + 5}));
    let body = get_with(&client, "/", &second).await.json();
    assert_eq!(body["meta"]["written"], "by-the-first-request");
    assert_eq!(body["meta"]["plan"], "silver");
    assert_eq!(body["expires"], exp + 5);
    let key_id = KeyHasher::sha256().key_id(&ApiKey::new(namespaced_identity("acme", None, "ned")));
    let stored = store.load(&key_id).await.unwrap().unwrap();
    assert_eq!(stored.apply_policies, ["silver"]);
    assert_eq!(stored.meta_data["TykJWTSessionID"], key_id.as_str());
    store.delete(&key_id).await.unwrap();
}

#[tokio::test]
async fn a_jwks_server_that_is_down_is_asked_once_per_interval() {
    let server = Jwks::default();
    let base = server.start().await;
    server.failing.store(true, Ordering::SeqCst);
    let client = serve(
        MemoryStore::new(),
        jwks_auth(&base, Duration::from_secs(60)),
    )
    .await;
    let key = Signer::new(Algorithm::ES256, "k");
    let claims = json!({"sub": "oz", "pol": "gold", "exp": later()});
    for _ in 0..3 {
        assert_error(
            &get_with(&client, "/", &key.sign(&claims)).await,
            403,
            "Key not authorized",
        );
    }
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn skews_give_leeway_to_the_time_claims() {
    let auth = hs_auth()
        .expires_at_skew(120)
        .not_before_skew(120)
        .issued_at_skew(120);
    let client = serve(MemoryStore::new(), auth).await;
    let now = unix_now();
    let lenient = hs256(
        &json!({"sub": "pat", "pol": "gold", "exp": now - 60, "nbf": now + 60, "iat": now + 60}),
    );
    assert_eq!(get_with(&client, "/", &lenient).await.status, 200);
    let too_old = hs256(&json!({"sub": "pat", "pol": "gold", "exp": now - 600}));
    assert_error(
        &get_with(&client, "/", &too_old).await,
        401,
        "Key not authorized: token has expired",
    );
    let too_early = hs256(&json!({"sub": "pat", "pol": "gold", "iat": now + 600}));
    assert_error(
        &get_with(&client, "/", &too_early).await,
        401,
        "Key not authorized: token used before issued",
    );
}

/// An opaque-key stack on the same store cannot be made to load a generated session by sending
/// its namespaced identity as an API key.
#[tokio::test]
async fn an_api_key_cannot_name_a_generated_session() {
    let store = MemoryStore::new();
    let jwt_client = serve(store.clone(), hs_auth()).await;
    let token = hs256(&json!({"sub": "quinn", "pol": "gold", "exp": later()}));
    assert_eq!(get_with(&jwt_client, "/", &token).await.status, 200);
    let keycard = Keycard::new(store.clone()).policies(policies());
    let api_client = Client::new(spawn(keycard.wrap(routes())).await);
    let identity = namespaced_identity("acme", None, "quinn");
    assert_error(
        &get_with(&api_client, "/", &identity).await,
        403,
        "Access to this API has been disallowed",
    );
}
