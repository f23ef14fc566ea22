//! keycard tenant routing: `/orders/*` rewritten to each tenant's shard from session metadata.
//!
//! ```sh
//! cargo run -p keycard-examples --example tenant_routing
//! ```
//! Environment: `KEYCARD_ADDR` (default `127.0.0.1:8080`), `RUST_LOG` (default `info`).

use keycard_examples::{addr_from_env, init_tracing, shutdown_signal, tenant_routing};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let addr = addr_from_env("KEYCARD_ADDR", "127.0.0.1:8080")?;

    let store = tenant_routing::demo_store()?;
    let app = tenant_routing::app(store)?;
    let listener = keycard_examples::bind(addr).await?;
    let addr = listener.local_addr()?;

    println!("keycard tenant routing listening on http://{addr}");
    println!("rule: /orders/* → /shards/$tyk_meta.shard/orders/*");
    for (key, tenant, shard) in tenant_routing::DEMO_TENANTS {
        println!("tenant {tenant:?}: key {key:?}, shard {shard:?}");
    }
    let [(acme_key, _, acme_shard), (globex_key, _, _)] = tenant_routing::DEMO_TENANTS;
    println!();
    println!("try:");
    println!("  curl -H 'Authorization: Bearer {acme_key}' http://{addr}/orders/42");
    println!("  curl -H 'Authorization: Bearer {globex_key}' http://{addr}/orders/42/items");
    println!("  curl -i http://{addr}/orders/42                                   # 401: no key");
    println!(
        "  curl -i -H 'Authorization: Bearer {globex_key}' http://{addr}/shards/{acme_shard}/orders/42  # 404: not your shard"
    );
    println!();
    println!("Ctrl-C stops the server.");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
