//! keycard in front of a backend: the backend receives `X-User-Id` / `X-Tenant-Id` it can trust.
//!
//! ```sh
//! cargo run -p keycard-examples --example identity_propagation
//! UPSTREAM_URL=http://127.0.0.1:9000 cargo run -p keycard-examples --example identity_propagation
//! ```
//! Without `UPSTREAM_URL` a stand-in backend that echoes the headers it receives is started on a
//! free loopback port, so you can see exactly what an upstream gets. Environment:
//! `KEYCARD_ADDR` (default `127.0.0.1:8080`), `KEYCARD_DEMO_KEY` (default `demo-key`).

use axum::http::Uri;
use keycard_examples::{
    addr_from_env, identity_propagation, init_tracing, quickstart, shutdown_signal,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let addr = addr_from_env("KEYCARD_ADDR", "127.0.0.1:8080")?;
    let key = keycard_examples::demo_key();

    let upstream: Uri = match std::env::var("UPSTREAM_URL") {
        Ok(url) => url
            .parse()
            .map_err(|e| format!("UPSTREAM_URL={url:?}: {e}"))?,
        Err(_) => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let upstream = listener.local_addr()?;
            tokio::spawn(async move {
                if let Err(error) =
                    axum::serve(listener, identity_propagation::echo_upstream()).await
                {
                    tracing::error!(%error, "stand-in upstream stopped");
                }
            });
            println!("stand-in upstream (echoes the headers it receives) on http://{upstream}");
            format!("http://{upstream}").parse()?
        }
    };

    let store = quickstart::demo_store(&key)?;
    let app = identity_propagation::app(store, upstream.clone())?;
    let listener = keycard_examples::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("keycard gateway on http://{addr} → {upstream}");
    println!("try:");
    println!(
        "  curl -H 'Authorization: Bearer {key}' -H 'X-User-Id: admin' http://{addr}/anything"
    );
    println!("  (the upstream sees x-user-id: u-demo, x-tenant-id: acme, and no authorization)");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
