//! Shared support for keycard's integration tests: serving a router on loopback and an HTTP
//! client, store wrappers that count or fail calls, the store conformance suite, and the Redis
//! helpers (shared server, unique prefixes, throwaway servers and clusters).

#![forbid(unsafe_code)]

pub mod http;
pub mod logs;
pub mod redis_support;
pub use keycard_core::testing::{conformance as store_conformance, stores};
