//! Shared support for keycard's integration tests: serving a router on loopback, an HTTP client,
//! and store wrappers that count calls.

#![forbid(unsafe_code)]

pub mod http;
pub mod stores;
