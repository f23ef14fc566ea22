//! keycard quickstart: an axum app on the in-memory store with one demo session.
//!
//! ```sh
//! cargo quickstart            # = cargo run -p keycard-examples --example quickstart
//! ```
//! Environment: `KEYCARD_ADDR` (default `127.0.0.1:8080`), `KEYCARD_DEMO_KEY` (default
//! `demo-key`), `RUST_LOG` (default `info`).

use keycard_examples::{addr_from_env, init_tracing, quickstart, shutdown_signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let addr = addr_from_env("KEYCARD_ADDR", "127.0.0.1:8080")?;
    let key = keycard_examples::demo_key();

    let store = quickstart::demo_store(&key)?;
    let app = quickstart::app(store)?;
    let listener = keycard_examples::bind(addr).await?;
    let addr = listener.local_addr()?;

    println!("keycard quickstart listening on http://{addr}");
    println!(
        "demo session: key {key:?}, metadata {}",
        quickstart::demo_metadata()
    );
    println!();
    println!("try:");
    println!("  curl -i http://{addr}/whoami                                   # 401: no key");
    println!("  curl -i -H 'Authorization: Bearer nope' http://{addr}/whoami  # 403: unknown key");
    println!("  curl -H 'Authorization: Bearer {key}' http://{addr}/whoami");
    println!(
        "  curl -H 'Authorization: Bearer {key}' http://{addr}/echo       # headers the handler got"
    );
    println!("  curl -X POST -H 'Authorization: Bearer {key}' http://{addr}/visits");
    println!();
    println!("Ctrl-C stops the server.");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
