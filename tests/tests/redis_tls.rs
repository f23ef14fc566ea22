//! RedisStore over TLS (`rediss://`, feature `tls`) against a real `redis-server` speaking only
//! TLS, with a CA and a server certificate generated in the test.

use std::error::Error as _;
use std::time::{Duration, Instant};

use keycard_core::session::SessionRecord;
use keycard_core::store::SessionStore;
use keycard_redis::{ConnectError, RedisStore};
use keycard_tests::redis_support::{RedisServer, key_id, set_one, unique_prefix};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;

/// A CA (its certificate as PEM, and an issuer to sign with).
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A server certificate for 127.0.0.1 and localhost signed by `issuer`: (cert PEM, key PEM).
fn server_cert(issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn tls_server() -> (RedisServer, String) {
    let (ca_pem, issuer) = ca("keycard test CA");
    let (cert, key) = server_cert(&issuer);
    (RedisServer::start_tls(&cert, &key, &ca_pem), ca_pem)
}

#[tokio::test]
async fn sessions_round_trip_over_tls_with_a_private_ca() {
    let (server, ca_pem) = tls_server();
    let store = RedisStore::url(&format!("rediss://127.0.0.1:{}", server.port))
        .unwrap()
        .prefix(unique_prefix("tls"))
        .tls_root_certificate(ca_pem)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("TLS connection refused: {e} ({:?})", e.source()));
    let key = key_id("tls");
    store
        .create(
            SessionRecord::default()
                .with_key_id(key.clone())
                .with_alias("tls-user"),
        )
        .await
        .unwrap();
    let applied = store
        .apply(&key, &set_one("plan", json!("gold")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(applied.version, 2);
    let loaded = store.load(&key).await.unwrap().expect("session");
    assert_eq!(loaded.meta_data["plan"], "gold");
    assert_eq!(loaded.alias, "tls-user");
    // The session really is on the TLS-only server.
    let stored = server.cli(&["hget", &store.session_key(&key), "m:plan"]);
    assert_eq!(String::from_utf8_lossy(&stored.stdout).trim(), "\"gold\"");
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused_with_a_clear_error() {
    let (server, _) = tls_server();
    let (other_ca, _) = ca("some other CA");
    let connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let result = RedisStore::url(&format!("rediss://127.0.0.1:{}", server.port))
        .unwrap()
        .connect_timeout(connect_timeout)
        .tls_root_certificate(other_ca)
        .connect()
        .await;
    let took = started.elapsed();
    let error = result
        .map(drop)
        .expect_err("an untrusted certificate was accepted");
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(matches!(error, ConnectError::Connect(_)), "{chain}");
    assert!(
        chain.contains("UnknownIssuer") || chain.contains("certificate"),
        "the error does not say the certificate is the problem: {chain}"
    );
    assert!(took < connect_timeout * 3, "refused after {took:?}");
    eprintln!("refused after {took:?}: {chain}");
}

#[test]
fn a_pem_without_a_certificate_is_refused_at_connect() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(
        RedisStore::url("rediss://127.0.0.1:1")
            .unwrap()
            .tls_root_certificate("no certificate here")
            .connect(),
    );
    match result {
        Err(ConnectError::Config(message)) => assert!(message.contains("CERTIFICATE"), "{message}"),
        other => panic!("expected a configuration error, got {:?}", other.map(drop)),
    }
}

/// fred's own connector for a TLS URL asks rustls for the process-wide crypto provider, which
/// panics in this build (ring for fred, aws-lc-rs for other crates, none installed).
#[test]
fn tls_urls_build_in_a_build_with_two_crypto_providers() {
    for url in [
        "rediss://127.0.0.1:6380",
        "rediss-cluster://127.0.0.1:7000?node=127.0.0.1:7001",
        "valkeys://127.0.0.1:6380",
    ] {
        let built = std::panic::catch_unwind(|| RedisStore::url(url).map(drop));
        assert!(matches!(built, Ok(Ok(()))), "{url}: {built:?}");
    }
}
