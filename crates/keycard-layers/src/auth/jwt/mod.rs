//! Sessions from tokens (feature `jwt`): JSON Web Tokens and OpenID Connect ID tokens become
//! sessions, as Tyk's JWT and OIDC middlewares make them (reference: `docs/jwt.md` in the
//! repository).
//!
//! The session-load stage, given a [`JwtAuth`] ([`SessionLoadLayer::jwt`]), reads the bearer
//! token from its key sources and:
//!
//! 1. verifies the signature with a key pinned to its algorithm — a configured [`JwtKey`]
//!    (HS256/384/512 secret, RS*/PS*, ES256/384 or EdDSA PEM) or a key of a JWKS URL, cached and
//!    fetched again (rate-limited, single-flight) for a `kid` it does not have;
//! 2. checks `exp` / `iat` / `nbf` with their skews and the allowed issuers, audiences and
//!    subjects;
//! 3. takes the identity from `kid` (unless [`JwtAuth::skip_kid`]), the subject claims, or
//!    `sub`, and the key id from the stack's [`KeyHasher`](keycard_core::key::KeyHasher) over
//!    [`namespaced_identity`] (`jwt:<org>:<identity>`);
//! 4. loads that session, or creates it (policies from the policy claim, the scope map or the
//!    defaults; metadata `TykJWTSessionID`, plus the mapped claims), or updates it when the
//!    token asks for other policies, a later expiry or new refreshed claims;
//! 5. applies its policies before your service runs — on the first request too, where Tyk
//!    misses the policies' metadata — and publishes every claim as
//!    `$tyk_context.jwt_claims_<name>`.
//!
//! | case | status | body |
//! | --- | --- | --- |
//! | no token | 400 | `{"error":"Authorization field missing"}` |
//! | malformed, bad signature, unknown `kid` | 403 | `{"error":"Key not authorized"}` |
//! | `alg` the key is not pinned to (`none`, HS256 against an RSA key, ...) | 403 | `{"error":"Key not authorized: Unexpected signing method"}` |
//! | expired / not yet valid / issued in the future | 401 | `{"error":"Key not authorized: token has expired"}` (`token is not valid yet`, `token used before issued`) |
//! | issuer / audience / subject not allowed | 401 | `{"error":"Key not authorized: invalid issuer claim: <iss>"}` (and Tyk's other messages) |
//! | no identity claim | 403 | `{"error":"no suitable claims for user ID were found"}` |
//! | no policy, or an unknown one | 403 | `{"error":"key not authorized: no matching policy found"}` / `{"error":"key not authorized: no matching policy"}` |
//! | OIDC: unknown issuer or client, or any validation failure | 401 | `{"error":"Key not authorised"}` |
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::{Request, StatusCode};
//! use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
//! use keycard_core::policy::{MemoryPolicies, Policy};
//! use keycard_core::store::MemoryStore;
//! use keycard_layers::auth::SessionLoadLayer;
//! use keycard_layers::auth::jwt::{JwtAuth, JwtKey};
//! use keycard_layers::session::Session;
//! use serde_json::json;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let policies = MemoryPolicies::new();
//! policies.insert(Policy::new("gold").with_meta("plan", json!("gold")));
//! let jwt = JwtAuth::new()
//!     .key(JwtKey::hmac(Algorithm::HS256, b"demo-secret").unwrap())
//!     .policy_claim("pol")
//!     .claim_to_metadata("org_id", "org.id");
//! let app = Router::new()
//!     .route("/", get(|s: Session| async move {
//!         format!("{} {}", s.get::<String>("plan").unwrap().unwrap(), s.get::<String>("org_id").unwrap().unwrap())
//!     }))
//!     .layer(SessionLoadLayer::new(MemoryStore::new()).policies(policies).jwt(jwt));
//!
//! let claims = json!({"sub": "alice", "pol": "gold", "org": {"id": "acme"}, "exp": 4102444800_i64});
//! let token = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"demo-secret")).unwrap();
//! let request = Request::get("/").header("authorization", format!("Bearer {token}"));
//! let response = app.oneshot(request.body(axum::body::Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
//! assert_eq!(body, "gold acme");
//! # }
//! ```
//!
//! [`SessionLoadLayer::jwt`]: super::SessionLoadLayer::jwt

mod auth;
mod generate;
mod keys;
mod verify;

pub use self::auth::{JwtAuth, OidcProvider};
pub use self::generate::{CLIENT_ID_KEY, SESSION_ID_KEY, namespaced_identity};
pub use self::keys::{JwtKey, JwtKeyError};
pub use jsonwebtoken::Algorithm;

pub(crate) use self::auth::Admitted;
pub(crate) use self::verify::Rejection;
