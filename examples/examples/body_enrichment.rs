//! keycard body enrichment: request JSON gains `tenant_id` from session metadata; response JSON
//! is wrapped as `{"data": ..., "served_to": user_id}`.
//!
//! ```sh
//! cargo run -p keycard-examples --example body_enrichment
//! ```
//! Environment: `KEYCARD_ADDR` (default `127.0.0.1:8080`), `KEYCARD_DEMO_KEY` (default
//! `demo-key`), `RUST_LOG` (default `info`).

use keycard_examples::{addr_from_env, body_enrichment, init_tracing, quickstart, shutdown_signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let addr = addr_from_env("KEYCARD_ADDR", "127.0.0.1:8080")?;
    let key = keycard_examples::demo_key();

    let store = quickstart::demo_store(&key)?;
    let app = body_enrichment::app(store)?;
    let listener = keycard_examples::bind(addr).await?;
    let addr = listener.local_addr()?;

    println!("keycard body_enrichment listening on http://{addr}");
    println!(
        "demo session: key {key:?}, metadata {}",
        quickstart::demo_metadata()
    );
    println!();
    println!("try:");
    println!(
        "  curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n       \
         -d '{{\"item\":\"book\",\"tenant_id\":\"evil\"}}' http://{addr}/orders   # tenant_id from the session"
    );
    println!(
        "  curl -H 'Authorization: Bearer {key}' http://{addr}/orders                # wrapped with served_to"
    );
    println!(
        "  curl -i -H 'Authorization: Bearer {key}' -d '{{oops' http://{addr}/orders # 400: not valid JSON"
    );
    println!(
        "  curl -H 'Authorization: Bearer {key}' http://{addr}/health                # no rule: untouched"
    );
    println!();
    println!("Ctrl-C stops the server.");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
