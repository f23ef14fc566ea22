//! keycard with sessions from JWTs: an HS256 secret, a policy claim, claims copied into
//! metadata. It mints demo tokens at start and prints ready-to-paste commands.
//!
//! ```sh
//! cargo run -p keycard-examples --example jwt
//! ```
//! Environment: `KEYCARD_ADDR` (default `127.0.0.1:8080`), `JWT_SECRET` (default a demo secret),
//! `RUST_LOG` (default `info`).

use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{EncodingKey, Header, encode};
use keycard::auth::jwt::{Algorithm, JwtAuth, JwtKey};
use keycard::prelude::*;
use keycard::session::unix_now;
use keycard_examples::{addr_from_env, init_tracing, shutdown_signal};
use serde_json::{Value, json};

async fn whoami(session: Session) -> Json<Value> {
    Json(
        json!({"alias": session.alias(), "expires": session.expires(), "metadata": session.metadata()}),
    )
}

async fn visit(session: Session) -> Result<Json<Value>, MetadataRejection> {
    Ok(Json(json!({"visits": session.increment("visits", 1)?})))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let addr = addr_from_env("KEYCARD_ADDR", "127.0.0.1:8080")?;
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| "keycard-demo-secret".to_owned());

    let policies = MemoryPolicies::new();
    policies.insert(Policy::new("gold").with_meta("plan", json!("gold")));
    policies.insert(Policy::new("silver").with_meta("plan", json!("silver")));
    let jwt = JwtAuth::new()
        .key(JwtKey::hmac(Algorithm::HS256, secret.as_bytes())?)
        .policy_claim("pol")
        .org_id("demo")
        .claim_to_metadata("org_id", "org.id")
        .claim_to_metadata_refreshed("roles", "realm_access.roles");
    let headers = InjectHeadersLayer::request()
        .set("x-user", "$tyk_context.jwt_claims_sub")
        .set("x-org", "$tyk_meta.org_id")
        .build()?;
    let keycard = Keycard::new(MemoryStore::new())
        .policies(policies)
        .jwt(jwt)
        .request_headers(headers);
    let app = keycard.wrap(
        Router::new()
            .route("/whoami", get(whoami))
            .route("/visits", post(visit))
            .route(
                "/echo",
                get(|h: http::HeaderMap| async move {
                    format!("x-user={:?} x-org={:?}\n", h.get("x-user"), h.get("x-org"))
                }),
            ),
    );

    let key = EncodingKey::from_secret(secret.as_bytes());
    let mint = |claims: Value| encode(&Header::new(Algorithm::HS256), &claims, &key);
    let exp = unix_now() + 3600;
    let gold = mint(json!({"sub": "alice", "pol": "gold", "exp": exp,
                           "org": {"id": "acme"}, "realm_access": {"roles": ["reader"]}}))?;
    let silver = mint(json!({"sub": "alice", "pol": "silver", "exp": exp + 60,
                             "org": {"id": "acme"}, "realm_access": {"roles": ["reader", "writer"]}}))?;
    let expired = mint(json!({"sub": "alice", "pol": "gold", "exp": unix_now() - 60}))?;
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "mallory", "pol": "gold", "exp": exp}),
        &EncodingKey::from_secret(b"not-the-secret"),
    )?;

    let listener = keycard_examples::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("keycard jwt example listening on http://{addr} (HS256 secret {secret:?})");
    println!();
    println!("try:");
    println!("  curl -i http://{addr}/whoami                                   # 400: no token");
    println!(
        "  curl -H 'Authorization: Bearer {gold}' http://{addr}/whoami   # creates alice's session (gold)"
    );
    println!("  curl -X POST -H 'Authorization: Bearer {gold}' http://{addr}/visits");
    println!("  curl -H 'Authorization: Bearer {gold}' http://{addr}/echo");
    println!(
        "  curl -H 'Authorization: Bearer {silver}' http://{addr}/whoami # same session: silver, visits kept, roles refreshed"
    );
    println!(
        "  curl -i -H 'Authorization: Bearer {expired}' http://{addr}/whoami # 401: token has expired"
    );
    println!(
        "  curl -i -H 'Authorization: Bearer {forged}' http://{addr}/whoami  # 403: bad signature"
    );
    println!();
    println!("Ctrl-C stops the server.");

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
