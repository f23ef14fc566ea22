//! OIDC back-channel logout over real HTTP (and HTTPS): local receivers verify every token.
//!
//! Every test that starts an API goes through [`start_logout`], which installs one global
//! subscriber capturing everything this binary logs before any logout callsite is hit, so no
//! test's log lines depend on which test ran first.

mod admin_support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
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
use keycard_core::key::KeyId;
use keycard_core::session::unix_now;
use keycard_tests::http::spawn;
use keycard_tests::logs::Captured;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_rustls::rustls;

const ISSUER: &str = "https://issuer.test/";
const SECRET: &[u8] = b"logout-signing-secret-for-the-tests";
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
    format!(
        "http://{}/logout",
        spawn(receiver_router(name, status, tx)).await
    )
}

/// The routes of [`receiver`].
fn receiver_router(
    name: &'static str,
    status: StatusCode,
    tx: mpsc::UnboundedSender<Delivery>,
) -> Router {
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
    Router::new()
        .route("/logout", post(handle))
        .with_state((name, status, tx))
}

/// A [`receiver`] answering 200 behind TLS, with a certificate for 127.0.0.1 made for this
/// test; returns its `https://` URL and the certificate (PEM), for the client to trust.
async fn tls_receiver(name: &'static str, tx: mpsc::UnboundedSender<Delivery>) -> (String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = receiver_router(name, StatusCode::OK, tx);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(tls),
                        hyper_util::service::TowerToHyperService::new(router),
                    )
                    .await;
            });
        }
    });
    (format!("https://{addr}/logout"), cert.pem())
}

/// How many requests the [`counting_receiver`]s sharing it held at once.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
    seen: AtomicUsize,
}

/// A receiver that holds every delivery 20 ms, answers 204 and records concurrency in `gauge`.
async fn counting_receiver(gauge: Arc<Gauge>) -> String {
    async fn handle(State(gauge): State<Arc<Gauge>>) -> StatusCode {
        let now = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
        gauge.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        gauge.now.fetch_sub(1, Ordering::SeqCst);
        gauge.seen.fetch_add(1, Ordering::SeqCst);
        StatusCode::NO_CONTENT
    }
    let router = Router::new()
        .route("/logout", post(handle))
        .with_state(gauge);
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

async fn wait_for(what: &str, done: impl FnMut() -> bool) {
    wait_up_to(Duration::from_secs(5), what, done).await;
}

async fn wait_up_to(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
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

/// Everything this test binary logged, from the first API started on.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        captured
    })
}

/// The captured lines that contain `needle` (a receiver's port, say).
fn lines_with(needle: &str) -> Vec<String> {
    logs()
        .text()
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_owned)
        .collect()
}

async fn start_logout(logout: BackChannelLogout) -> Admin {
    logs();
    start_with(move |builder| builder.back_channel_logout(logout)).await
}

/// Seeds a session of alice with `meta` and deletes it through the Auth0 API (202); returns its
/// id. The DELETE answers before any delivery.
async fn delete_alices_session(admin: &Admin, meta: Value) -> KeyId {
    let id = admin.seed("alice", meta).await;
    let (status, _) = admin
        .auth0(Method::DELETE, &format!("/api/v2/sessions/{id}"), ALL, "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    id
}

async fn two_receivers(signer: LogoutSigner) -> (Admin, mpsc::UnboundedReceiver<Delivery>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let plain = receiver("plain", StatusCode::OK, tx.clone()).await;
    let with_meta = receiver("with-meta", StatusCode::NO_CONTENT, tx).await;
    let logout = BackChannelLogout::new(ISSUER, signer)
        .receiver(LogoutReceiver::new(&plain, "plain-client").unwrap())
        .unwrap()
        .receiver(
            LogoutReceiver::new(&with_meta, "meta-client")
                .unwrap()
                .include_metadata(true)
                .allow_plaintext(),
        )
        .unwrap();
    (start_logout(logout).await, rx)
}

async fn session_delete_sends_verified_tokens(
    signer: LogoutSigner,
    key: DecodingKey,
    algorithm: Algorithm,
    kid: Option<&str>,
) {
    let (admin, mut rx) = two_receivers(signer).await;
    let id = delete_alices_session(&admin, json!({"plan": "gold", "tenant": "acme"})).await;

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
        LogoutSigner::hs256(SECRET).unwrap(),
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
    let (admin, mut rx) = two_receivers(LogoutSigner::hs256(SECRET).unwrap()).await;
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
    let (admin, mut rx) = two_receivers(LogoutSigner::hs256(SECRET).unwrap()).await;
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
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap())
        .timeout(Duration::from_millis(300))
        .receiver(LogoutReceiver::new(&hanging_receiver().await, "hangs").unwrap())
        .unwrap()
        .receiver(LogoutReceiver::new(&fine, "fine").unwrap())
        .unwrap();
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
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap())
        .receiver(LogoutReceiver::new(&hanging_receiver().await, "hangs").unwrap())
        .unwrap();
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
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap())
        .receiver(LogoutReceiver::new(&broken, "a").unwrap())
        .unwrap()
        .receiver(LogoutReceiver::new(&accepted, "b").unwrap())
        .unwrap()
        .receiver(LogoutReceiver::new(&closed, "c").unwrap())
        .unwrap();
    let admin = start_logout(logout).await;
    delete_alices_session(&admin, json!({})).await;
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
        LogoutReceiver::new("ftp://rp.example/logout", "rp"),
        Err(LogoutConfigError::UnsupportedScheme(url)) if url == "ftp://rp.example/logout"
    ));
    assert!(LogoutReceiver::new("https://rp.example/logout", "rp").is_ok());
    assert!(matches!(
        LogoutReceiver::new("not a url", "rp"),
        Err(LogoutConfigError::InvalidUrl { .. })
    ));
    assert!(matches!(
        LogoutReceiver::new("/relative", "rp"),
        Err(LogoutConfigError::InvalidUrl { .. })
    ));
    let logout = || BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap());
    for pem in [
        "not a pem",
        PRIVATE_PEM,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        assert!(
            matches!(
                logout().root_certificate(pem),
                Err(LogoutConfigError::InvalidCertificate(_))
            ),
            "{pem}"
        );
    }
}

#[test]
fn hs256_secrets_shorter_than_256_bits_are_refused() {
    for secret in [&b""[..], b"short", &[b'k'; 31]] {
        let error = LogoutSigner::hs256(secret).unwrap_err();
        assert!(
            matches!(error, LogoutConfigError::ShortSecret { len, min: 32 } if len == secret.len()),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "the HS256 secret must be at least 32 bytes (it is {})",
                secret.len()
            )
        );
    }
    assert!(LogoutSigner::hs256([b'k'; 32]).is_ok());
}

#[test]
fn es256_and_rs256_refuse_keys_of_another_kind() {
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    for result in [
        LogoutSigner::es256_pem(p384.serialize_pem()),
        LogoutSigner::es256_pem(PRIVATE_PEM),
        LogoutSigner::rs256_pem(p256.serialize_pem()),
        LogoutSigner::es256_pem("not a pem"),
    ] {
        assert!(
            matches!(result, Err(LogoutConfigError::InvalidKey(_))),
            "{result:?}"
        );
    }
    assert!(LogoutSigner::es256_pem(p256.serialize_pem()).is_ok());
}

#[tokio::test]
async fn es256_tokens_verify_with_the_public_key() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    session_delete_sends_verified_tokens(
        LogoutSigner::es256_pem(key.serialize_pem())
            .unwrap()
            .key_id("ec-key"),
        DecodingKey::from_ec_pem(key.public_key_pem().as_bytes()).unwrap(),
        Algorithm::ES256,
        Some("ec-key"),
    )
    .await;
}

#[tokio::test]
async fn each_receiver_gets_tokens_signed_with_its_own_secret() {
    const SECRET_A: &[u8] = b"secret-only-receiver-a-holds-32-bytes";
    const SECRET_B: &[u8] = b"secret-only-receiver-b-holds-32-bytes";
    let (tx, mut rx) = mpsc::unbounded_channel();
    let a = receiver("a", StatusCode::OK, tx.clone()).await;
    let b = receiver("b", StatusCode::OK, tx).await;
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap())
        .receiver(
            LogoutReceiver::new(&a, "a")
                .unwrap()
                .signer(LogoutSigner::hs256(SECRET_A).unwrap().key_id("a-key")),
        )
        .unwrap()
        .receiver(
            LogoutReceiver::new(&b, "b")
                .unwrap()
                .signer(LogoutSigner::hs256(SECRET_B).unwrap()),
        )
        .unwrap();
    let admin = start_logout(logout).await;
    let id = delete_alices_session(&admin, json!({})).await;

    let mut seen = HashSet::new();
    for _ in 0..2 {
        let (name, _, token) = next(&mut rx).await;
        let (own, others, kid) = match name {
            "a" => (SECRET_A, [SECRET_B, SECRET], Some("a-key")),
            _ => (SECRET_B, [SECRET_A, SECRET], None),
        };
        assert_eq!(decode_header(&token).unwrap().kid.as_deref(), kid);
        let claims = verify(
            &token,
            &DecodingKey::from_secret(own),
            Algorithm::HS256,
            name,
        );
        assert_eq!(claims["sid"], id.as_str());
        for other in others {
            let mut validation = Validation::new(Algorithm::HS256);
            validation.set_audience(&[name]);
            let error = decode::<Value>(&token, &DecodingKey::from_secret(other), &validation)
                .expect_err("another receiver's secret does not verify it");
            assert_eq!(
                *error.kind(),
                jsonwebtoken::errors::ErrorKind::InvalidSignature
            );
        }
        seen.insert(name);
    }
    assert_eq!(seen.len(), 2);
    wait_for("2 delivered", || admin.stats.delivered() == 2).await;
}

#[tokio::test]
async fn https_receivers_get_the_token_over_tls_with_a_custom_root() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (url, cert_pem) = tls_receiver("tls", tx).await;
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap())
        .root_certificate(&cert_pem)
        .unwrap()
        .receiver(
            LogoutReceiver::new(&url, "tls-client")
                .unwrap()
                .include_metadata(true),
        )
        .unwrap();
    let admin = start_logout(logout).await;
    let id = delete_alices_session(&admin, json!({"plan": "gold"})).await;

    let (name, content_type, token) = next(&mut rx).await;
    assert_eq!(
        (name, content_type.as_str()),
        ("tls", "application/x-www-form-urlencoded")
    );
    let claims = verify(
        &token,
        &DecodingKey::from_secret(SECRET),
        Algorithm::HS256,
        "tls-client",
    );
    assert_eq!(claims["sid"], id.as_str());
    assert_eq!(claims["session_metadata"], json!({"plan": "gold"}));
    wait_for("1 delivered", || admin.stats.delivered() == 1).await;
    assert_eq!(admin.stats.failed(), 0);
    let port = url.rsplit(':').next().unwrap();
    assert!(
        lines_with(port)
            .iter()
            .all(|line| !line.contains("cleartext")),
        "no cleartext warning for https"
    );
}

#[tokio::test]
async fn https_receivers_with_an_untrusted_certificate_get_nothing_and_count_as_failed() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (url, _cert_pem) = tls_receiver("untrusted", tx).await;
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap())
        .receiver(LogoutReceiver::new(&url, "tls-client").unwrap())
        .unwrap();
    let admin = start_logout(logout).await;
    delete_alices_session(&admin, json!({})).await;
    wait_for("1 failed", || admin.stats.failed() == 1).await;
    assert_eq!(admin.stats.delivered(), 0);
    assert!(
        rx.try_recv().is_err(),
        "no token without a trusted certificate"
    );
    let failed = lines_with(&url)
        .into_iter()
        .find(|l| l.contains("back-channel logout failed"));
    let failed = failed.expect("the failure is logged");
    assert!(failed.contains("WARN"), "{failed}");
    assert!(failed.contains("UnknownIssuer"), "{failed}");
}

#[tokio::test]
async fn metadata_over_plain_http_is_refused_unless_allowed_and_then_warned_about() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let url = receiver("plain", StatusCode::OK, tx).await;
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap());
    let error = logout
        .clone()
        .receiver(
            LogoutReceiver::new(&url, "rp")
                .unwrap()
                .include_metadata(true),
        )
        .unwrap_err();
    assert!(
        matches!(&error, LogoutConfigError::PlaintextMetadata(u) if *u == url),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "back-channel logout URL {url:?} gets session_metadata over plain http: use https:// or allow_plaintext()"
        )
    );

    let logout = logout
        .receiver(
            LogoutReceiver::new(&url, "rp")
                .unwrap()
                .include_metadata(true)
                .allow_plaintext(),
        )
        .unwrap();
    let admin = start_logout(logout).await;
    let warning = lines_with(&url);
    assert_eq!(warning.len(), 1, "one warning when built: {warning:?}");
    assert!(warning[0].contains("WARN"), "{}", warning[0]);
    assert!(warning[0].contains("keycard::logout"), "{}", warning[0]);
    assert!(warning[0].contains("in cleartext"), "{}", warning[0]);

    delete_alices_session(&admin, json!({"plan": "gold"})).await;
    let (_, _, token) = next(&mut rx).await;
    let claims = verify(
        &token,
        &DecodingKey::from_secret(SECRET),
        Algorithm::HS256,
        "rp",
    );
    assert_eq!(claims["session_metadata"], json!({"plan": "gold"}));
}

#[tokio::test]
async fn userinfo_in_receiver_urls_is_redacted_in_logs_debug_and_errors() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let fine = receiver("fine", StatusCode::OK, tx).await;
    let fine_with_password = fine.replacen("http://", "http://alice:s3cret-pw@", 1);
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "http://bob:hunter2-pw@{}/logout",
            listener.local_addr().unwrap()
        )
    };
    let logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap())
        .receiver(
            LogoutReceiver::new(&fine_with_password, "fine")
                .unwrap()
                .include_metadata(true)
                .allow_plaintext(),
        )
        .unwrap()
        .receiver(LogoutReceiver::new(&closed, "closed").unwrap())
        .unwrap();
    let fine_shown = fine.replacen("http://", "http://***@", 1);
    let closed_shown = closed.replacen("bob:hunter2-pw@", "***@", 1);
    let debug = format!("{logout:?}");
    assert!(debug.contains(&format!("uri: {fine_shown}")), "{debug}");
    assert!(debug.contains(&format!("uri: {closed_shown}")), "{debug}");

    let admin = start_logout(logout).await;
    delete_alices_session(&admin, json!({})).await;
    next(&mut rx).await;
    wait_for("1 delivered, 1 failed", || {
        admin.stats.delivered() == 1 && admin.stats.failed() == 1
    })
    .await;

    let fine_lines = lines_with(&format!("receiver={fine_shown}"));
    assert!(
        fine_lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("in cleartext")),
        "{fine_lines:?}"
    );
    assert!(
        fine_lines
            .iter()
            .any(|l| l.contains("INFO") && l.contains("back-channel logout delivered")),
        "{fine_lines:?}"
    );
    let closed_lines = lines_with(&format!("receiver={closed_shown}"));
    assert!(
        closed_lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("back-channel logout failed")),
        "{closed_lines:?}"
    );

    let errors = [
        LogoutReceiver::new("http://carol:pw-carol@exa mple/logout", "rp").unwrap_err(),
        LogoutReceiver::new("ftp://dave:pw-dave@rp.example/logout", "rp").unwrap_err(),
    ];
    assert!(
        matches!(&errors[0], LogoutConfigError::InvalidUrl { url, .. } if url == "http://***@exa mple/logout")
    );
    assert!(
        matches!(&errors[1], LogoutConfigError::UnsupportedScheme(url) if url == "ftp://***@rp.example/logout")
    );
    for error in errors {
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("pw-"), "{shown}");
    }
    let plaintext = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap())
        .receiver(
            LogoutReceiver::new(&fine_with_password, "rp")
                .unwrap()
                .include_metadata(true),
        )
        .unwrap_err();
    assert_eq!(
        plaintext.to_string(),
        format!(
            "back-channel logout URL {fine_shown:?} gets session_metadata over plain http: use https:// or allow_plaintext()"
        )
    );

    let everything = logs().text();
    for secret in ["s3cret-pw", "hunter2-pw", "alice:", "bob:"] {
        assert!(!everything.contains(secret), "{secret:?} logged");
    }
}

/// Seeds `sessions` sessions of one user, deletes them in one request and waits for every
/// delivery to `receivers` counting receivers; returns the most requests they held at once.
async fn bulk_delete_concurrency(
    sessions: usize,
    receivers: usize,
    configure: impl FnOnce(BackChannelLogout) -> BackChannelLogout,
) -> usize {
    let gauge = Arc::new(Gauge::default());
    let mut logout = BackChannelLogout::new(ISSUER, LogoutSigner::hs256(SECRET).unwrap());
    for i in 0..receivers {
        let url = counting_receiver(Arc::clone(&gauge)).await;
        logout = logout
            .receiver(LogoutReceiver::new(&url, format!("rp-{i}")).unwrap())
            .unwrap();
    }
    let admin = start_logout(configure(logout)).await;
    for _ in 0..sessions {
        admin.seed("bulk", json!({})).await;
    }
    let (status, _) = admin
        .auth0(Method::DELETE, "/api/v2/users/bulk/sessions", ALL, "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let total = (sessions * receivers) as u64;
    wait_up_to(Duration::from_secs(30), "every delivery", || {
        admin.stats.delivered() + admin.stats.failed() == total
    })
    .await;
    assert_eq!(admin.stats.delivered(), total, "every delivery arrives");
    assert_eq!(admin.stats.failed(), 0);
    assert_eq!(gauge.seen.load(Ordering::SeqCst), sessions * receivers);
    gauge.max.load(Ordering::SeqCst)
}

#[tokio::test]
async fn a_bulk_delete_keeps_at_most_16_deliveries_in_flight_by_default() {
    let max = bulk_delete_concurrency(300, 3, |logout| logout).await;
    assert_eq!(
        max, 16,
        "deliveries in flight at once: never more, and still concurrent"
    );
}

#[tokio::test]
async fn max_in_flight_bounds_concurrent_deliveries_over_every_receiver() {
    let max = bulk_delete_concurrency(40, 3, |logout| logout.max_in_flight(4)).await;
    assert_eq!(
        max, 4,
        "deliveries in flight at once: never more, and still concurrent"
    );
}
