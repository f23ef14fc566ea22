//! Signed auth tokens over real HTTP: Tyk's `MasherySHA256` / `MasheryMD5` check (the client
//! sends `hex(hash(token + secret + unix_seconds))`, Tyk's `signature_validator/hash.go`) and
//! the recommended HMAC-SHA256 mode, with the secret from `$tyk_meta.individual_secret`.
//! The clock is fixed so the skew bounds are exact.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use hmac::{Hmac, Mac};
use http::{HeaderName, Method, StatusCode};
use keycard::prelude::*;
use keycard::signature::{SignatureAlgorithm, SignatureLayer};
use keycard_tests::http::{request, spawn};
use md5::Md5;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_700_000_000;
const KEY: &str = "alice-key";
const NO_SECRET_KEY: &str = "bob-key-without-secret";
const SECRET: &str = "s3cret";
const REFUSED: &str = "Request signature verification failed";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tyk's client-side computation: `hex(SHA256(token + secret + decimal(ts)))`.
fn sha256_signature(token: &str, secret: &str, ts: i64) -> String {
    hex(&Sha256::digest(format!("{token}{secret}{ts}").as_bytes()))
}

fn store() -> MemoryStore {
    let store = MemoryStore::new();
    store
        .insert(SessionRecord::for_key(KEY).metadata(json!({"individual_secret": SECRET})))
        .unwrap();
    store
        .insert(SessionRecord::for_key(NO_SECRET_KEY).metadata(json!({"plan": "gold"})))
        .unwrap();
    store
}

async fn serve(layer: SignatureLayer, expose_token: bool) -> SocketAddr {
    let mut keycard = Keycard::new(store());
    if expose_token {
        keycard = keycard.expose_token();
    }
    let routes = Router::new().route("/", get(|| async { "signed" }));
    spawn(keycard.after_load(layer).wrap(routes)).await
}

fn tyk_layer(skew: u64) -> SignatureLayer {
    SignatureLayer::tyk("$tyk_meta.individual_secret")
        .unwrap()
        .header(HeaderName::from_static("signature"))
        .allowed_clock_skew(skew)
        .clock(|| NOW)
}

async fn call(
    addr: SocketAddr,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut all = vec![("authorization", key)];
    all.extend_from_slice(headers);
    let (status, _, body) = request(Method::GET, &format!("http://{addr}{path}"), &all, "").await;
    (status, body)
}

#[tokio::test]
async fn the_signature_is_tyk_s_sha256_of_token_secret_and_seconds() {
    // Known answer, computed outside Rust: `printf %s alice-keys3cret1700000000 | sha256sum`.
    assert_eq!(
        sha256_signature(KEY, SECRET, NOW),
        "79307d178ab36172a6fd832e4cc27640885705571a59fcbe9de6f7bf7f7ebfac"
    );
    let addr = serve(tyk_layer(0), true).await;
    let (status, body) = call(
        addr,
        "/",
        KEY,
        &[(
            "signature",
            "79307d178ab36172a6fd832e4cc27640885705571a59fcbe9de6f7bf7f7ebfac",
        )],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Upper-case hex decodes to the same bytes.
    let upper = sha256_signature(KEY, SECRET, NOW).to_uppercase();
    assert_eq!(
        call(addr, "/", KEY, &[("signature", &upper)]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn valid_within_the_skew_and_refused_one_second_past_it() {
    let skew = 30;
    let addr = serve(tyk_layer(skew as u64), true).await;
    for offset in [0, 1, -1, skew, -skew] {
        let signature = sha256_signature(KEY, SECRET, NOW + offset);
        let (status, body) = call(addr, "/", KEY, &[("signature", &signature)]).await;
        assert_eq!(status, StatusCode::OK, "offset {offset}: {body}");
    }
    for offset in [skew + 1, -(skew + 1)] {
        let signature = sha256_signature(KEY, SECRET, NOW + offset);
        let (status, body) = call(addr, "/", KEY, &[("signature", &signature)]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "offset {offset}");
        assert_eq!(body, json!({"error": REFUSED}));
    }
    // Skew 0 (Tyk's default): only the current second.
    let addr = serve(tyk_layer(0), true).await;
    let late = sha256_signature(KEY, SECRET, NOW + 1);
    assert_eq!(
        call(addr, "/", KEY, &[("signature", &late)]).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn missing_wrong_and_unreadable_signatures_are_refused() {
    let addr = serve(tyk_layer(5), true).await;
    let refused = (StatusCode::UNAUTHORIZED, json!({"error": REFUSED}));
    let other_secret = sha256_signature(KEY, "other", NOW);
    let other_key = sha256_signature("another-key", SECRET, NOW);
    for headers in [
        vec![],
        vec![("signature", "")],
        vec![("signature", "not hex at all")],
        vec![("signature", "abc")],
        vec![("signature", other_secret.as_str())],
        vec![("signature", other_key.as_str())],
    ] {
        assert_eq!(call(addr, "/", KEY, &headers).await, refused, "{headers:?}");
    }
}

#[tokio::test]
async fn an_empty_secret_is_a_failure_even_with_a_matching_hash() {
    let addr = serve(tyk_layer(5), true).await;
    // The session has no `individual_secret`: the template renders "", which Tyk refuses; a
    // signature made with the empty secret must not pass.
    let signature = sha256_signature(NO_SECRET_KEY, "", NOW);
    let (status, body) = call(addr, "/", NO_SECRET_KEY, &[("signature", &signature)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"error": REFUSED}));
}

#[tokio::test]
async fn error_code_and_message_are_configurable() {
    let addr = serve(
        tyk_layer(0).error(StatusCode::FORBIDDEN, "Bad signature"),
        true,
    )
    .await;
    let (status, body) = call(addr, "/", KEY, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"error": "Bad signature"}));
}

#[tokio::test]
async fn a_query_parameter_wins_over_the_header_when_set() {
    let addr = serve(tyk_layer(0).query("sig"), true).await;
    let good = sha256_signature(KEY, SECRET, NOW);
    let bad = sha256_signature(KEY, "other", NOW);
    let path = format!("/?sig={good}");
    assert_eq!(
        call(addr, &path, KEY, &[("signature", &bad)]).await.0,
        StatusCode::OK
    );
    let path = format!("/?sig={bad}");
    assert_eq!(
        call(addr, &path, KEY, &[("signature", &good)]).await.0,
        StatusCode::UNAUTHORIZED
    );
    // An empty parameter falls back to the header (Tyk).
    assert_eq!(
        call(addr, "/?sig=", KEY, &[("signature", &good)]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_legacy_md5_variant_is_tyk_s() {
    // `printf %s alice-keys3cret1700000000 | md5sum`.
    assert_eq!(
        hex(&Md5::digest(format!("{KEY}{SECRET}{NOW}").as_bytes())),
        "88c466ac5393cbb3c304696b09f9b287"
    );
    let addr = serve(tyk_layer(0).algorithm(SignatureAlgorithm::MasheryMd5), true).await;
    let ok = call(
        addr,
        "/",
        KEY,
        &[("signature", "88c466ac5393cbb3c304696b09f9b287")],
    )
    .await;
    assert_eq!(ok.0, StatusCode::OK);
    let sha = sha256_signature(KEY, SECRET, NOW);
    assert_eq!(
        call(addr, "/", KEY, &[("signature", &sha)]).await.0,
        StatusCode::UNAUTHORIZED
    );
}

fn hmac_signature(token: &str, secret: &str, ts: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{token}.{ts}").as_bytes());
    hex(&mac.finalize().into_bytes())
}

#[tokio::test]
async fn the_hmac_mode_checks_the_client_timestamp_within_the_skew() {
    // `printf %s alice-key.1700000000 | openssl dgst -sha256 -hmac s3cret`.
    assert_eq!(
        hmac_signature(KEY, SECRET, NOW),
        "b198d64df8feff93141096d2b2ef5e8b6d1fa62d913478b5350ce8a6dbd231eb"
    );
    let skew = 300;
    let layer = SignatureLayer::hmac_sha256("$tyk_meta.individual_secret")
        .unwrap()
        .clock(|| NOW);
    let addr = serve(layer, true).await;
    let signed = |ts: i64| (hmac_signature(KEY, SECRET, ts), ts.to_string());
    for offset in [0, skew, -skew] {
        let (signature, ts) = signed(NOW + offset);
        let headers = [
            ("x-signature", signature.as_str()),
            ("x-signature-timestamp", ts.as_str()),
        ];
        assert_eq!(
            call(addr, "/", KEY, &headers).await.0,
            StatusCode::OK,
            "offset {offset}"
        );
    }
    let refused = (StatusCode::UNAUTHORIZED, json!({"error": REFUSED}));
    for offset in [skew + 1, -(skew + 1)] {
        let (signature, ts) = signed(NOW + offset);
        let headers = [
            ("x-signature", signature.as_str()),
            ("x-signature-timestamp", ts.as_str()),
        ];
        assert_eq!(
            call(addr, "/", KEY, &headers).await,
            refused,
            "offset {offset}"
        );
    }
    // The timestamp is part of what is signed: another one does not verify.
    let (signature, _) = signed(NOW);
    let moved = (NOW + 1).to_string();
    let headers = [
        ("x-signature", signature.as_str()),
        ("x-signature-timestamp", moved.as_str()),
    ];
    assert_eq!(call(addr, "/", KEY, &headers).await, refused);
    // Without a timestamp, or with one that is not a number.
    for ts in [None, Some("soon")] {
        let mut headers = vec![("x-signature", signature.as_str())];
        if let Some(ts) = ts {
            headers.push(("x-signature-timestamp", ts));
        }
        assert_eq!(call(addr, "/", KEY, &headers).await, refused, "{ts:?}");
    }
    // An empty secret fails here too.
    let ts = NOW.to_string();
    let empty = hmac_signature(NO_SECRET_KEY, "", NOW);
    let headers = [
        ("x-signature", empty.as_str()),
        ("x-signature-timestamp", ts.as_str()),
    ];
    assert_eq!(call(addr, "/", NO_SECRET_KEY, &headers).await, refused);
}

#[tokio::test]
async fn a_load_stage_that_drops_the_raw_key_is_a_loud_500() {
    let addr = serve(tyk_layer(0), false).await;
    let signature = sha256_signature(KEY, SECRET, NOW);
    let (status, body) = call(addr, "/", KEY, &[("signature", &signature)]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({"error": "Server misconfigured: signature check needs the raw key"})
    );
}
