//! The quickstart stack on Redis: run two of these on different ports and they share sessions.
//!
//! ```sh
//! cargo run -p keycard-examples --example redis
//! KEYCARD_ADDR=127.0.0.1:8081 cargo run -p keycard-examples --example redis   # a second node
//! ```
//! Environment: `REDIS_URL` (default `redis://127.0.0.1:6379`), `KEYCARD_PREFIX` (default
//! `keycard-demo`), `KEYCARD_ADDR` (default `127.0.0.1:8080`), `KEYCARD_DEMO_KEY` (default `demo-key`).

use keycard_examples::{addr_from_env, init_tracing, quickstart, redis_store, shutdown_signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let addr = addr_from_env("KEYCARD_ADDR", "127.0.0.1:8080")?;
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = std::env::var("KEYCARD_PREFIX").unwrap_or_else(|_| "keycard-demo".to_owned());
    let key = keycard_examples::demo_key();

    let store = redis_store::demo_store(&url, &prefix, &key).await.map_err(|e| {
        format!("{e} (is Redis running? `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no`)")
    })?;
    let app = quickstart::app(store)?;
    let listener = keycard_examples::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shown = keycard::redis::redact_url(&url);
    println!("keycard on Redis ({shown}, prefix {prefix:?}) listening on http://{addr}");
    println!("try:");
    println!("  curl -H 'Authorization: Bearer {key}' http://{addr}/whoami");
    println!("  curl -X POST -H 'Authorization: Bearer {key}' http://{addr}/visits");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
