//! The stacks behind keycard's runnable examples, as a library so integration tests build exactly
//! what a user runs.
//!
//! - [`quickstart`]: an axum app on the in-memory store (`cargo quickstart`).
//! - [`admin`]: the quickstart plus the management API on a second port.
//! - [`oauth`]: OAuth2 clients with metadata, the token endpoint beside the app, the client API
//!   on the admin listener.
//! - [`body_enrichment`]: request bodies enriched with `tenant_id` from metadata, responses
//!   wrapped with `served_to`.
//! - [`redis_store`]: the quickstart stack on `RedisStore` with its local cache.
//! - [`identity_propagation`]: the same layers in front of a reverse proxy, so a backend receives
//!   `X-User-Id` / `X-Tenant-Id` it can trust.
//! - [`tenant_routing`]: a URL rewrite around the whole router sends each tenant's `/orders/*` to
//!   its shard from session metadata.
//! - [`tls`]: HTTPS for a listener (PEM files, or a generated development certificate).

#![forbid(unsafe_code)]

pub mod admin;
pub mod body_enrichment;
pub mod identity_propagation;
pub mod oauth;
pub mod quickstart;
pub mod redis_store;
pub mod tenant_routing;
pub mod tls;

use std::net::SocketAddr;

/// Reads a socket address from the environment variable `var`, or `default`.
///
/// # Errors
/// When the variable is set but is not a socket address.
pub fn addr_from_env(var: &str, default: &str) -> Result<SocketAddr, String> {
    let raw = std::env::var(var).unwrap_or_else(|_| default.to_owned());
    raw.parse()
        .map_err(|e| format!("{var}={raw:?} is not a socket address (like 127.0.0.1:8080): {e}"))
}

/// Binds a TCP listener on `addr`, with an error that says which address and what to change.
///
/// # Errors
/// When the address cannot be bound (in use, not local...).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e} (set KEYCARD_ADDR to another address)"))
}

/// The demo key: `KEYCARD_DEMO_KEY`, default [`quickstart::DEFAULT_DEMO_KEY`].
pub fn demo_key() -> String {
    std::env::var("KEYCARD_DEMO_KEY").unwrap_or_else(|_| quickstart::DEFAULT_DEMO_KEY.to_owned())
}

/// Logs to stderr, `RUST_LOG` controlling the level (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// Resolves when the process receives Ctrl-C (graceful shutdown for `axum::serve`).
pub async fn shutdown_signal() {
    if let Err(error) = tokio::signal::ctrl_c().await {
        tracing::warn!(%error, "cannot listen for Ctrl-C; stop the process another way");
        std::future::pending::<()>().await;
    }
}
