//! Session load: find the API key, load the session behind it, and refuse requests that have no
//! valid session (Tyk's auth-key middleware; reference: `docs/auth.md` in the repository).
//!
//! | case | status | body |
//! | --- | --- | --- |
//! | a `.` / `..` path segment in any spelling (`%2e%2e`, `.%2e`, or behind `\`, `%5C`, `%2F`), or a malformed `%` escape | 400 | `{"error":"Invalid request path"}` |
//! | no key in any source | 401 | `{"error":"Authorization field missing"}` |
//! | unknown key, key shorter than the minimum, a key beginning `jwt:` (the generated-session namespace), a key header that is not visible ASCII, or a policy that does not exist | 403 | `{"error":"Access to this API has been disallowed"}` |
//! | inactive session (its own flag or a policy's) | 403 | `{"error":"Key is inactive, please renew"}` |
//! | `expires` set and in the past | 401 | `{"error":"Key has expired, please renew"}` |
//! | unused for longer than the idle timeout ([`SessionLoadLayer::track_activity`], [`Activity::idle_timeout`]) | 401 | `{"error":"Key has expired, please renew"}` |
//! | store unreachable or timed out | 503 | `{"error":"Session store unavailable"}` |
//!
//! The path is normalised here, once per request, before anything else (RFC 3986 §6.2.2:
//! escaped unreserved characters decoded, other escapes in uppercase hex; dot segments
//! refused, not removed): every later stage (rewrite patterns, header and body scopes,
//! `$tyk_context.path`) and the service see that one path, so `/%6Frders` is `/orders` for all
//! of them.
//!
//! A 401 carries `WWW-Authenticate: Bearer` when the key is (or would be) read from the
//! `Authorization` header. The raw key never appears in logs; traces carry the first 8 hex
//! characters of its hash at most. Once the key id is computed the credential is removed from
//! the request (unless [`SessionLoadLayer::keep_credential`]) and the raw key is dropped (unless
//! [`SessionLoadLayer::expose_token`] lets `$tyk_context.token` read it).
//!
//! With `SessionLoadLayer::jwt` (feature `jwt`) the credential is a signed token and the session
//! is generated from its claims instead: see `jwt` for that mode and its answers.
//!
//! Most applications use this layer through `keycard::Keycard`, which adds the save stage and the
//! others in data-flow order; use it alone to build a custom stack.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::{Request, StatusCode};
//! use keycard_core::store::MemoryStore;
//! use keycard_layers::auth::{KeySource, SessionLoadLayer};
//! use keycard_layers::session::Session;
//! use serde_json::json;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! store.insert_key("secret-key", json!({"user_id": "u-1"})).unwrap();
//!
//! let app = Router::new()
//!     .route(
//!         "/",
//!         get(|session: Session| async move { session.get::<String>("user_id").unwrap().unwrap() }),
//!     )
//!     .layer(
//!         SessionLoadLayer::new(store)
//!             .key_sources([KeySource::authorization(), KeySource::query("api_key")]),
//!     );
//!
//! let request = Request::get("/?api_key=secret-key").body(axum::body::Body::empty()).unwrap();
//! let response = app.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//!
//! let response = app.oneshot(Request::get("/").body(axum::body::Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], "Bearer");
//! # }
//! ```

mod activity;
mod config;
mod future;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jwt;
mod layer;
mod service;
mod source;

pub use self::activity::{Activity, DEFAULT_ACTIVITY_INTERVAL};
pub use self::future::ResponseFuture;
pub use self::layer::{DEFAULT_MIN_KEY_LENGTH, SessionLoadLayer};
pub use self::service::SessionLoad;
pub use self::source::KeySource;

#[cfg(test)]
mod tests;
