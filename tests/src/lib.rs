//! Shared pieces of keycard's integration tests: the store conformance suite and the Redis
//! helpers (shared server, unique prefixes, throwaway servers and clusters).

#![forbid(unsafe_code)]

pub mod redis_support;
pub mod store_conformance;
