//! The tower layers of keycard, one module per step of the request path:
//!
//! ```text
//! request ─► auth::SessionLoadLayer ─► persist::PersistLayer ─► headers::InjectHeadersLayer ─► handler
//!               key → KeyId → store.load_shared → policies → Session in the extensions
//! response ◄─ SessionLoad ◄─ Persist (saves the metadata delta once, if any) ◄─ InjectHeadersBuilder ◄─ handler
//! ```
//!
//! Layers that need the session ([`persist`], [`headers`]) must be stacked inside
//! [`auth::SessionLoadLayer`]; outside it they answer 500 and log why at the first request rather
//! than silently skip. Rejections are JSON `{"error": "..."}` responses; the inner service's error
//! type passes through untouched. Response bodies must implement `From<Bytes>` (axum's `Body`,
//! `http_body_util::Full`, ...) so rejections can carry their JSON body.

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
pub mod headers;
mod normalize;
pub mod persist;
mod response;
pub mod rewrite;
mod scope;
pub mod session;
#[cfg(test)]
mod test_support;
