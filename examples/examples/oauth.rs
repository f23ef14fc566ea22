//! keycard OAuth2: create a client with `meta_data`, get a token, call the app with it, and see
//! the client's metadata in the session (`$tyk_meta.plan` → `x-plan`).
//!
//! ```sh
//! cargo run -p keycard-examples --example oauth
//! ```
//! Environment: `KEYCARD_ADDR` (default `127.0.0.1:8080`), `KEYCARD_ADMIN_ADDR` (default
//! `127.0.0.1:8081`), `TYK_SECRET` (a demo default is printed; set your own).

use keycard::prelude::MemoryStore;
use keycard_examples::{addr_from_env, bind, init_tracing, oauth, shutdown_signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let addr = addr_from_env("KEYCARD_ADDR", "127.0.0.1:8080")?;
    let admin_addr = addr_from_env("KEYCARD_ADMIN_ADDR", "127.0.0.1:8081")?;
    let tyk_secret =
        std::env::var("TYK_SECRET").unwrap_or_else(|_| "demo-tyk-secret-change-me".to_owned());

    let demo = oauth::build(MemoryStore::new(), &tyk_secret)?;
    let app_listener = bind(addr).await?;
    let admin_listener = bind(admin_addr).await?;
    let (addr, admin_addr) = (app_listener.local_addr()?, admin_listener.local_addr()?);
    let policy = oauth::DEMO_POLICY;

    println!(
        "app   on http://{addr}   (/whoami, /echo, /oauth/token, /oauth/revoke, /oauth/revoke_all)"
    );
    println!("admin on http://{admin_addr} (/tyk/oauth/clients/..., /tyk/oauth/authorize-client)");
    println!("demo secret: TYK_SECRET={tyk_secret} (set your own)");
    println!();
    println!("1. create a client with metadata (its secret is answered once):");
    println!(
        "   curl -s -X POST http://{admin_addr}/tyk/oauth/clients/create -H 'X-Tyk-Authorization: {tyk_secret}' \\"
    );
    println!(
        "     -d '{{\"client_id\":\"demo-client\",\"redirect_uri\":\"http://localhost/cb\",\"policy_id\":\"{policy}\",\"meta_data\":{{\"plan\":\"gold\",\"user_id\":\"u-client\"}}}}'"
    );
    println!("2. get a token (client credentials):");
    println!(
        "   curl -s -X POST http://{addr}/oauth/token -u 'demo-client:<secret>' -d grant_type=client_credentials"
    );
    println!("3. call the app: x-plan is $tyk_meta.plan, copied from the client:");
    println!("   curl -s -H 'Authorization: Bearer <access_token>' http://{addr}/echo");
    println!(
        "4. authorization code with PKCE (the verifier below matches the challenge, RFC 7636 appendix B):"
    );
    println!(
        "   curl -s -X POST http://{admin_addr}/tyk/oauth/authorize-client -H 'X-Tyk-Authorization: {tyk_secret}' \\"
    );
    println!(
        "     -d response_type=code -d client_id=demo-client -d redirect_uri=http://localhost/cb \\"
    );
    println!(
        "     -d code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM -d code_challenge_method=S256 \\"
    );
    println!("     --data-urlencode 'key_rules={{\"meta_data\":{{\"user_id\":\"u-alice\"}}}}'");
    println!(
        "   curl -s -X POST http://{addr}/oauth/token -u 'demo-client:<secret>' -d grant_type=authorization_code \\"
    );
    println!(
        "     -d code=<code> -d redirect_uri=http://localhost/cb -d code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    );
    println!("   (user_id stays u-alice: client metadata fills only the keys the session lacks)");
    println!(
        "5. refresh: curl -s -X POST http://{addr}/oauth/token -u 'demo-client:<secret>' -d grant_type=refresh_token -d refresh_token=<refresh_token>"
    );
    println!(
        "6. revoke:  curl -s -X POST http://{addr}/oauth/revoke -u 'demo-client:<secret>' -d token=<access_token>"
    );
    println!("   then step 3 answers 403.");

    let app = axum::serve(app_listener, demo.app).with_graceful_shutdown(shutdown_signal());
    let admin = axum::serve(
        admin_listener,
        demo.admin
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal());
    tokio::try_join!(async { app.await }, async { admin.await })?;
    Ok(())
}
