//! OIDC back-channel logout over real HTTP: a local receiver verifies every token.

mod admin_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use admin_support::{ALL, Admin, start_with};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use http::{HeaderMap, Method, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use keycard_admin::BackChannelLogout;
use keycard_admin::logout::{LogoutConfigError, LogoutReceiver, LogoutSigner};
use keycard_core::session::unix_now;
use keycard_tests::http::spawn;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const ISSUER: &str = "https://issuer.test/";
const SECRET: &[u8] = b"logout-signing-secret-for-tests";
const PRIVATE_PEM: &str = include_str!("../fixtures/logout_rs256_private.pem");
const PUBLIC_PEM: &str = include_str!("../fixtures/logout_rs256_public.pem");
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a receiver got: its name, the content type and the logout token.
type Delivery = (&'static str, String, String);

/// A receiver that forwards every delivery and answers `status`.
async fn receiver(
    name: &'static str,
    status: StatusCode,
    tx: mpsc::UnboundedSender<Delivery>,
) -> String {
    async fn handle(
        State((name, status, tx)): State<(
            &'static str,
            StatusCode,
            mpsc::UnboundedSender<Delivery>,
        )>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let token = form_urlencoded::parse(&body)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        tx.send((name, content_type, token)).unwrap();
        status
    }
    let router = Router::new()
        .route("/logout", post(handle))
        .with_state((name, status, tx));
    format!("http://{}/logout", spawn(router).await)
}

/// A receiver that accepts connections and never answers.
async fn hanging_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    format!("http://{addr}/logout")
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a delivery within 5 s")
        .expect("channel open")
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Verifies signature, header and every claim; returns the claims.
fn verify(token: &str, key: &DecodingKey, algorithm: Algorithm, audience: &str) -> Value {
    let header = decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    assert_eq!(header.alg, algorithm);
    let mut validation = Validation::new(algorithm);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "iat"]);
    let claims = decode::<Value>(token, key, &validation)
        .expect("signature and claims verify")
        .claims;
    let iat = claims["iat"].as_i64().unwrap();
    assert!((unix_now() - iat).abs() <= 5, "iat is now");
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 120);
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(jti.len(), 32);
    assert!(jti.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(claims["events"], json!({ EVENT: {} }));
    assert!(claims.get("nonce").is_none(), "a logout token has no nonce");
    claims
}

async fn start_logout(logout: BackChannelLogout) -> Admin {
    start_with(move |builder| builder.back_channel_logout(logout)).await
}

async fn two_receivers(signer: LogoutSigner) -> (Admin, mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let plain = receiver("plain", StatusCode::OK, tx.clone()).await;
    let with_meta = receiver("with-meta", StatusCode::NO_CONTENT, tx).await;
    let logout = BackChannelLogout::new(ISSUER, signer)
        .receiver(LogoutReceiver::new(&plain, "plain-client").unwrap())
        .receiver(
            LogoutReceiver::new(&with_meta, "meta-client")
                .unwrap()
                .include_metadata(true),
        );
    (start_logout(logout).await, rx)
}

async fn session_delete_sends_verified_tokens(
    signer: LogoutSigner,
    key: DecodingKey,
    algorithm: Algorithm,
    kid: Option<&str>,
) {
    let (admin, mut rx) = two_receivers(signer).await;
    let id = admin
        .seed("alice", json!({"plan": "gold", "tenant": "acme"}))
        .await;
    let (status, _) = admin
        .auth0(Method::DELETE, &format!("/api/v2/sessions/{id}"), ALL, "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let mut seen = HashSet::new();
    for _ in 0..2 {
        let (name, content_type, token) = next(&mut rx).await;
        assert_eq!(content_type, "application/x-www-form-urlencoded");
        assert_eq!(decode_header(&token).unwrap().kid.as_deref(), kid);
        let audience = if name == "plain" {
            "plain-client"
        } else {
            "meta-client"
        };
        let claims = verify(&token, &key, algorithm, audience);
        assert_eq!(claims["sid"], id.as_str());
        assert_eq!(claims["sub"], "alice");
        if name == "plain" {
            assert!(claims.get("session_metadata").is_none(), "not opted in");
        } else {
            assert_eq!(
                claims["session_metadata"],
                json!({"plan": "gold", "tenant": "acme"})
            );
        }
        seen.insert(name);
    }
    assert_eq!(seen.len(), 2);
    wait_for("2 delivered", || admin.stats.delivered() == 2).await;
    assert_eq!(admin.stats.failed(), 0);
}

#[tokio::test]
async fn hs256_tokens_carry_every_claim_and_metadata_only_when_opted_in() {
    session_delete_sends_verified_tokens(
        LogoutSigner::hs256(SECRET),
        DecodingKey::from_secret(SECRET),
        Algorithm::HS256,
        None,
    )
    .await;
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_public_key() {
    session_delete_sends_verified_tokens(
        LogoutSigner::rs256_pem(PRIVATE_PEM)
            .unwrap()
            .key_id("test-key"),
        DecodingKey::from_rsa_pem(PUBLIC_PEM.as_bytes()).unwrap(),
        Algorithm::RS256,
        Some("test-key"),
    )
    .await;
}

#[tokio::test]
async fn deleting_a_users_sessions_logs_each_out() {
    let (admin, mut rx) = two_receivers(LogoutSigner::hs256(SECRET)).await;
    let mut ids = HashSet::new();
    for _ in 0..3 {
        ids.insert(admin.seed("bob", json!({})).await.to_string());
    }
    let (status, _) = admin
        .auth0(Method::DELETE, "/api/v2/users/bob/sessions", ALL, "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let key = DecodingKey::from_secret(SECRET);
    let mut sids = HashSet::new();
    let mut jtis = HashSet::new();
    for _ in 0..6 {
        let (name, _, token) = next(&mut rx).await;
        if name == "plain" {
            let claims = verify(&token, &key, Algorithm::HS256, "plain-client");
            sids.insert(claims["sid"].as_str().unwrap().to_owned());
            jtis.insert(claims["jti"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(sids, ids);
    assert_eq!(jtis.len(), 3, "every token has its own jti");
    wait_for("6 delivered", || admin.stats.delivered() == 6).await;
}

#[tokio::test]
async fn tyk_key_delete_logs_out_too_and_sub_is_absent_without_alias() {
    let (admin, mut rx) = two_receivers(LogoutSigner::hs256(SECRET)).await;
    let id = admin.seed("", json!({})).await;
    let (status, _) = admin
        .tyk(Method::DELETE, &format!("/tyk/keys/{id}?hashed=true"), "")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (name, _, token) = next(&mut rx).await;
    let audience = if name == "plain" {
        "plain-client"
    } else {
        "meta-client"
    };
    let claims = verify(
        &token,
        &DecodingKey::from_secret(SECRET),
        Algorithm::HS256,
        audience,
    );
    assert_eq!(claims["sid"], id.as_str());
    assert!(claims.get("sub").is_none());
}

#[tokio::test]
async fn a_hanging_receiver_never_delays_the_delete_and_counts_as_failed() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fine = receiver("fine", StatusCode::OK, tx).await;
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET))
        .timeout(Duration::from_millis(300))
        .receiver(LogoutReceiver::new(&hanging_receiver().await, "hangs").unwrap())
        .receiver(LogoutReceiver::new(&fine, "fine").unwrap());
    let admin = start_logout(logout).await;
    let id = admin.seed("alice", json!({})).await;

    let started = Instant::now();
    let (status, _) = admin
        .auth0(Method::DELETE, &format!("/api/v2/sessions/{id}"), ALL, "")
        .await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(took < Duration::from_millis(250), "DELETE took {took:?}");

    next(&mut rx).await;
    wait_for("1 delivered, 1 failed", || {
        admin.stats.delivered() == 1 && admin.stats.failed() == 1
    })
    .await;
}

#[tokio::test]
async fn a_hanging_receiver_with_the_default_timeout_does_not_delay_the_delete() {
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET))
        .receiver(LogoutReceiver::new(&hanging_receiver().await, "hangs").unwrap());
    let admin = start_logout(logout).await;
    let id = admin.seed("alice", json!({})).await;
    let started = Instant::now();
    let (status, _) = admin
        .auth0(Method::DELETE, &format!("/api/v2/sessions/{id}"), ALL, "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(started.elapsed() < Duration::from_millis(250));
    assert_eq!(
        admin.stats.failed() + admin.stats.delivered(),
        0,
        "still pending"
    );
}

#[tokio::test]
async fn error_statuses_and_unreachable_receivers_count_as_failed() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let broken = receiver("broken", StatusCode::INTERNAL_SERVER_ERROR, tx.clone()).await;
    let accepted = receiver("accepted", StatusCode::ACCEPTED, tx).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/logout", listener.local_addr().unwrap())
    };
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET))
        .receiver(LogoutReceiver::new(&broken, "a").unwrap())
        .receiver(LogoutReceiver::new(&accepted, "b").unwrap())
        .receiver(LogoutReceiver::new(&closed, "c").unwrap());
    let admin = start_logout(logout).await;
    let id = admin.seed("alice", json!({})).await;
    let (status, _) = admin
        .auth0(Method::DELETE, &format!("/api/v2/sessions/{id}"), ALL, "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    next(&mut rx).await;
    next(&mut rx).await;
    wait_for("3 failed", || admin.stats.failed() == 3).await;
    assert_eq!(admin.stats.delivered(), 0, "only 200 and 204 are success");
}

#[test]
fn bad_configuration_is_refused_when_built() {
    assert!(matches!(
        LogoutSigner::rs256_pem("not a pem"),
        Err(LogoutConfigError::InvalidKey(_))
    ));
    assert!(matches!(
        LogoutReceiver::new("https://rp.example/logout", "rp"),
        Err(LogoutConfigError::UnsupportedScheme(_))
    ));
    assert!(matches!(
        LogoutReceiver::new("not a url", "rp"),
        Err(LogoutConfigError::InvalidUrl { .. })
    ));
    assert!(matches!(
        LogoutReceiver::new("/relative", "rp"),
        Err(LogoutConfigError::InvalidUrl { .. })
    ));
}
