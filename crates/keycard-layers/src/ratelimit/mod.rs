//! Rate limits and quotas keyed by the session (reference: `docs/ratelimit.md` in the
//! repository).
//!
//! [`RateLimitLayer`] reads the limits from the request's session, after policies — Tyk's
//! `rate` requests per `per` seconds (`rate <= 0` disables it) and `quota_max` requests per
//! `quota_renewal_rate` seconds (`quota_max <= 0` disables it; a renewal rate of 0 never renews)
//! — and counts the request in a bucket of a [`RateLimiter`](keycard_core::ratelimit::RateLimiter):
//!
//! - the **bucket** is the key's own by default; a session's `meta_data.rate_limit_pattern`
//!   (set on the key or by a policy), or else the layer's [`pattern`](RateLimitLayer::pattern),
//!   is a template over `$tyk_meta` / `$tyk_context` whose value names a shared bucket
//!   (`$tyk_meta.org_id`: one bucket per organisation), for the rate and the quota alike. Each
//!   distinct pattern is compiled once. When every variable of the pattern is missing, the
//!   bucket is the key's own (Tyk would put all such sessions in one bucket named by the
//!   pattern's literals, such as `"|"`).
//! - over the rate: 429 `{"error":"Rate Limit Exceeded"}` (Tyk's text) with `Retry-After`;
//!   quota used up: 403 `{"error":"Quota exceeded"}`; a refused request is counted by neither;
//! - headers ([`RateLimitHeaders`]): Tyk's two modes — `quotas` (the default: the quota on
//!   admitted responses) and `rate_limits` (the rate, on 429s too) — and the IETF draft's
//!   `RateLimit-Policy` / `RateLimit` with [`ietf_headers`](RateLimitLayer::ietf_headers);
//! - admitted requests carry the decision ([`RateLimitValues`], a request extension) as context
//!   values for later stages and the handler: `$tyk_context.rate_limit_limit`,
//!   `rate_limit_remaining`, `rate_limit_reset`, `quota_limit`, `quota_remaining`, `quota_reset`
//!   (as Tyk);
//! - the limiter failing (Redis down): 503 `{"error":"Rate limiter unavailable"}`, logged with
//!   the cause, or the request goes on with [`fail_open`](RateLimitLayer::fail_open).
//!
//! Requests without a session (an optional load stage let them through) are not limited here.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::{Request, StatusCode};
//! use keycard_core::ratelimit::MemoryRateLimiter;
//! use keycard_core::session::SessionRecord;
//! use keycard_core::store::{MemoryStore, SessionStore};
//! use keycard_layers::auth::SessionLoadLayer;
//! use keycard_layers::ratelimit::{RateLimitHeaders, RateLimitLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! let mut session = SessionRecord::for_key("secret-key");
//! (session.rate, session.per) = (2.0, 60.0); // two requests a minute
//! store.create(session).await.unwrap();
//!
//! let app = Router::new().route("/", get(|| async { "ok" })).layer(
//!     ServiceBuilder::new()
//!         .layer(SessionLoadLayer::new(store))
//!         .layer(RateLimitLayer::new(MemoryRateLimiter::new()).headers(RateLimitHeaders::RateLimits)),
//! );
//!
//! let request = || Request::get("/").header("authorization", "secret-key").body(axum::body::Body::empty()).unwrap();
//! for remaining in ["1", "0"] {
//!     let response = app.clone().oneshot(request()).await.unwrap();
//!     assert_eq!(response.status(), StatusCode::OK);
//!     assert_eq!(response.headers()["x-ratelimit-remaining"], remaining);
//! }
//! let refused = app.clone().oneshot(request()).await.unwrap();
//! assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(refused.headers()["retry-after"], "60");
//! # }
//! ```

mod config;
mod future;
mod layer;
mod service;
#[cfg(test)]
mod tests;
pub(crate) mod values;

pub use config::RateLimitHeaders;
pub use future::ResponseFuture;
pub use layer::RateLimitLayer;
pub use service::RateLimit;
pub use values::RateLimitValues;
