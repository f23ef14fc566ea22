//! Audit events: one `keycard::audit` event per change, naming the actor and the metadata keys,
//! never a secret, a raw key or a metadata value. (Its own test binary: it installs a global
//! subscriber.)

mod admin_support;

use admin_support::{ALL, TYK_SECRET, start};
use http::{Method, StatusCode};
use keycard_tests::logs::Captured;

#[tokio::test]
async fn every_change_emits_one_audit_event_without_secrets_or_values() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();

    let admin = start().await;
    let (status, created) = admin
        .tyk(
            Method::POST,
            "/tyk/keys",
            r#"{"alias": "alice", "meta_data": {"plan": "value-one"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let key = created["key"].as_str().unwrap().to_owned();
    let hash = created["key_hash"].as_str().unwrap().to_owned();
    let (status, _) = admin
        .auth0(
            Method::PATCH,
            &format!("/api/v2/sessions/{hash}"),
            ALL,
            r#"{"session_metadata": {"tier": "value-two"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin
        .tyk(
            Method::PUT,
            &format!("/tyk/keys/{hash}?hashed=true"),
            r#"{"alias": "alice", "meta_data": {"zone": "value-three"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin
        .tyk(
            Method::POST,
            "/tyk/policies",
            r#"{"id": "gold", "meta_data": {"p": "value-four"}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = admin
        .auth0(Method::DELETE, &format!("/api/v2/sessions/{hash}"), ALL, "")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Reads and refused writes are not changes.
    admin.tyk(Method::GET, "/tyk/keys", "").await;
    admin
        .auth0(
            Method::PATCH,
            &format!("/api/v2/sessions/{hash}"),
            ALL,
            "{}",
        )
        .await;

    let log = captured.text();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("keycard::audit"))
        .collect();
    assert_eq!(audit.len(), 5, "{log}");
    let short = &hash[..8];
    let expect = [
        ("actor=\"tyk-secret\"", "action=\"created\"", "[\"plan\"]"),
        ("actor=\"ops\"", "action=\"patched\"", "[\"tier\"]"),
        ("actor=\"tyk-secret\"", "action=\"replaced\"", "[\"zone\"]"),
        (
            "actor=\"tyk-secret\"",
            "action=\"created\"",
            "policy=\"gold\"",
        ),
        ("actor=\"ops\"", "action=\"deleted\"", "[\"zone\"]"),
    ];
    for (line, (actor, action, keys)) in audit.iter().zip(expect) {
        assert!(line.contains(actor), "{line}");
        assert!(line.contains(action), "{line}");
        assert!(line.contains(keys), "{line}");
        if !line.contains("policy=") {
            assert!(line.contains(&format!("session=\"{short}\"")), "{line}");
        }
    }
    for secret in [key.as_str(), hash.as_str(), TYK_SECRET, ALL] {
        assert!(!log.contains(secret), "the log holds a secret or full id");
    }
    for value in ["value-one", "value-two", "value-three", "value-four"] {
        assert!(!log.contains(value), "the log holds a metadata value");
    }
}
