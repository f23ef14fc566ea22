//! Session load: find the API key, load the session behind it, and refuse requests that have no
//! valid session (Tyk's auth-key middleware; spec `auth.md`).
//!
//! | case | status | body |
//! | --- | --- | --- |
//! | no key in any source | 401 | `{"error":"Authorization field missing"}` |
//! | unknown key, key shorter than the minimum, or a policy that does not exist | 403 | `{"error":"Access to this API has been disallowed"}` |
//! | inactive session (its own flag or a policy's) | 403 | `{"error":"Key is inactive, please renew"}` |
//! | `expires` set and in the past | 401 | `{"error":"Key has expired, please renew"}` |
//! | store unreachable or timed out | 503 | `{"error":"Session store unavailable"}` |
//!
//! A 401 carries `WWW-Authenticate: Bearer` when the key is (or would be) read from the
//! `Authorization` header. The raw key never appears in logs; traces carry the first 8 hex
//! characters of its hash at most.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::{Request, StatusCode};
//! use keycard_core::key::{ApiKey, KeyId};
//! use keycard_core::session::Session;
//! use keycard_core::store::{MemoryStore, SessionStore};
//! use keycard_layers::auth::{KeySource, SessionLoadLayer};
//! use keycard_layers::handle::SessionHandle;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! let meta = serde_json::json!({"user_id": "u-1"}).as_object().unwrap().clone();
//! let id = KeyId::of(&ApiKey::new("secret-key"));
//! store.create(Session::new(meta).with_key_id(id)).await.unwrap();
//!
//! let app = Router::new()
//!     .route(
//!         "/",
//!         get(|axum::Extension(session): axum::Extension<SessionHandle>| async move {
//!             session.get("user_id").unwrap().to_string()
//!         }),
//!     )
//!     .layer(
//!         SessionLoadLayer::new(store)
//!             .key_sources([KeySource::authorization(), KeySource::query("api_key")])
//!             .strip_credential(),
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

mod future;
mod layer;
mod source;

pub use self::future::ResponseFuture;
pub use self::layer::{DEFAULT_MIN_KEY_LENGTH, SessionLoad, SessionLoadLayer};
pub use self::source::KeySource;

#[cfg(test)]
mod tests;
