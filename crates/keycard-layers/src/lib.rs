//! The tower layers of keycard, one module per stage of the request path. `keycard::Keycard`
//! composes them in this order; each also works alone in any `ServiceBuilder`:
//!
//! ```text
//! request ─► auth::SessionLoadLayer ─► rewrite::UrlRewriteLayer ─► headers::InjectHeadersLayer::request
//!            key → KeyId → store →      path from $tyk_meta,          identity headers set,
//!            policies → Session         trigger-* context values      client look-alikes removed
//!        ─► body::TransformBodyLayer::request ─► your service
//! response ◄─ persist::PersistLayer ◄─ headers::InjectHeadersLayer::response ◄─ body::TransformBodyLayer::response ◄─┘
//!             one atomic metadata delta, if any
//! ```
//!
//! Layers that need the session ([`persist`], [`headers`], [`rewrite`], `body`) must be stacked
//! inside [`auth::SessionLoadLayer`]; outside it they answer 500 and log why at the first request
//! rather than silently skip. Rejections are JSON `{"error": "..."}` responses; the inner
//! service's error type passes through untouched. Response bodies must implement `From<Bytes>`
//! (axum's `Body`, `http_body_util::Full`, ...) so rejections can carry their JSON body.
//! [`forward`] has the hop-by-hop rules for services that forward requests on.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod macros;

pub mod auth;
#[cfg(feature = "body")]
#[cfg_attr(docsrs, doc(cfg(feature = "body")))]
pub mod body;
pub mod context;
mod cookie;
pub mod forward;
pub mod headers;
mod normalize;
pub mod persist;
pub mod ratelimit;
mod response;
pub mod rewrite;
mod scope;
pub mod session;
pub mod signature;
#[cfg(test)]
mod test_support;
