//! keycard quickstart + management API: create a key, use it, patch its metadata, revoke it.
//!
//! ```sh
//! cargo run -p keycard-examples --example admin
//! ```
//! Environment: `KEYCARD_ADDR` (default `127.0.0.1:8080`), `KEYCARD_ADMIN_ADDR` (default
//! `127.0.0.1:8081`), `TYK_SECRET` and `ADMIN_TOKEN` (demo defaults are printed; set your own).
//!
//! HTTPS for the admin listener (the Auth0 SDKs speak only `https://`):
//! `KEYCARD_ADMIN_TLS=dev` generates a self-signed certificate for localhost, 127.0.0.1 and ::1
//! into `KEYCARD_ADMIN_TLS_DIR` (default `target/keycard-dev-tls`) and prints how to trust it;
//! `KEYCARD_ADMIN_TLS_CERT` + `KEYCARD_ADMIN_TLS_KEY` serve your own PEM files.
//!
//! ```sh
//! KEYCARD_ADMIN_TLS=dev cargo run -p keycard-examples --example admin
//! ```

use keycard::prelude::MemoryStore;
use keycard_examples::tls::{self, TlsSetup};
use keycard_examples::{addr_from_env, admin, init_tracing, shutdown_signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let addr = addr_from_env("KEYCARD_ADDR", "127.0.0.1:8080")?;
    let admin_addr = addr_from_env("KEYCARD_ADMIN_ADDR", "127.0.0.1:8081")?;
    let tyk_secret =
        std::env::var("TYK_SECRET").unwrap_or_else(|_| "demo-tyk-secret-change-me".to_owned());
    let admin_token =
        std::env::var("ADMIN_TOKEN").unwrap_or_else(|_| "demo-admin-token-change-me".to_owned());

    let tls_setup = TlsSetup::from_env("KEYCARD_ADMIN_TLS")?;

    let demo = admin::build(MemoryStore::new(), &tyk_secret, &admin_token)?;
    let app_listener = keycard_examples::bind(addr).await?;
    let admin_listener = keycard_examples::bind(admin_addr).await?;
    let (addr, admin_addr) = (app_listener.local_addr()?, admin_listener.local_addr()?);

    // `curl` plus the flag that trusts the admin certificate, when TLS is on.
    let (scheme, curl) = match &tls_setup {
        Some(setup) => (
            "https",
            format!("curl --cacert {}", setup.cert_path.display()),
        ),
        None => ("http", "curl".to_owned()),
    };
    println!("app   on http://{addr}   (/whoami, /visits, /echo)");
    println!("admin on {scheme}://{admin_addr} (/tyk/keys, /api/v2/sessions, /openapi.json)");
    if let Some(setup) = &tls_setup {
        println!("admin TLS certificate: {}", setup.cert_path.display());
        for hint in setup.trust_hints() {
            println!("  {hint}");
        }
        println!(
            "  the Auth0 SDK: new ManagementClient({{ domain: \"{admin_addr}\", token: \"{admin_token}\" }})"
        );
    }
    println!("demo secrets: TYK_SECRET={tyk_secret} ADMIN_TOKEN={admin_token} (set your own)");
    println!();
    println!("1. create a key (the raw key is returned once):");
    println!(
        "   {curl} -s -X POST {scheme}://{admin_addr}/tyk/keys -H 'X-Tyk-Authorization: {tyk_secret}' \\"
    );
    println!(
        "     -d '{{\"alias\":\"alice\",\"meta_data\":{{\"user_id\":\"u-alice\",\"tenant_id\":\"acme\"}}}}'"
    );
    println!(
        "2. call the app with it:   curl -s -H 'Authorization: Bearer <key>' http://{addr}/echo"
    );
    println!("3. patch the metadata:");
    println!(
        "   {curl} -s -X PATCH {scheme}://{admin_addr}/api/v2/sessions/<key_hash> -H 'Authorization: Bearer {admin_token}' \\"
    );
    println!(
        "     -H 'Content-Type: application/json' -d '{{\"session_metadata\":{{\"user_id\":\"u-bob\",\"tenant_id\":\"globex\"}}}}'"
    );
    println!(
        "4. the next request sees it: curl -s -H 'Authorization: Bearer <key>' http://{addr}/echo"
    );
    println!(
        "5. revoke: {curl} -s -X DELETE {scheme}://{admin_addr}/api/v2/sessions/<key_hash> -H 'Authorization: Bearer {admin_token}'"
    );
    println!("   then step 2 answers 403.");

    let app = axum::serve(app_listener, demo.app).with_graceful_shutdown(shutdown_signal());
    let admin = async {
        match tls_setup {
            Some(setup) => {
                tls::serve(
                    admin_listener,
                    setup.acceptor(),
                    demo.admin,
                    shutdown_signal(),
                )
                .await
            }
            // With the peer address, so the admin API throttles failed logins per client.
            None => {
                axum::serve(
                    admin_listener,
                    demo.admin
                        .into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown_signal())
                .await
            }
        }
    };
    tokio::try_join!(async { app.await }, admin)?;
    Ok(())
}
