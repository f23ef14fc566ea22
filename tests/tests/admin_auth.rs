//! Admin authentication under attack: wrong credentials are throttled per client (429 with
//! `Retry-After`, in each API's error shape, even for the right credential), every failure is
//! logged without the presented secret, and secrets too short to resist guessing are refused
//! when the API is built.

use http::{Method, StatusCode};
use keycard_admin::{AdminApi, AdminConfigError, AdminToken, DEFAULT_MAX_FAILURES};
use keycard_core::store::MemoryStore;
use keycard_tests::http::{request, spawn};
use keycard_tests::logs::Captured;
use serde_json::json;

const SECRET: &str = "a-tyk-secret-for-the-throttle";
const TOKEN: &str = "a-bearer-token-for-the-throttle";

/// Captures this thread's `WARN` events until the guard drops. Every test here that logs sets
/// one (on a current-thread runtime, so the server tasks log to it too).
fn capture_warnings() -> (Captured, tracing::subscriber::DefaultGuard) {
    Captured::start(tracing::Level::WARN)
}

#[tokio::test(flavor = "current_thread")]
async fn wrong_credentials_are_throttled_per_client_and_logged_without_the_secret() {
    let (captured, _guard) = capture_warnings();

    let api = AdminApi::builder(MemoryStore::new())
        .tyk_secret(SECRET)
        .admin_token(AdminToken::new("ops", TOKEN, ["read:sessions"]))
        .build()
        .unwrap();
    let addr = spawn(api.into_router()).await;
    let tyk = |secret: &'static str| {
        let url = format!("http://{addr}/tyk/keys");
        async move { request(Method::GET, &url, &[("x-tyk-authorization", secret)], "").await }
    };

    let (status, _, _) = tyk(SECRET).await;
    assert_eq!(status, StatusCode::OK);
    // A missing credential is not a guess: it does not count.
    for _ in 0..(2 * DEFAULT_MAX_FAILURES) {
        let url = format!("http://{addr}/tyk/keys");
        let (status, _, _) = request(Method::GET, &url, &[], "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    for _ in 0..DEFAULT_MAX_FAILURES {
        let (status, _, body) = tyk("wrong-guess-of-the-secret").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            json!({"status": "error", "message": "Attempted administrative access with invalid or missing key!"})
        );
    }
    // Budget spent: even the right secret is 429 now, so a lucky guess cannot be told apart.
    let (status, headers, body) = tyk(SECRET).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        body,
        json!({"status": "error", "message": format!("Too many failed authentication attempts; retry in {retry} seconds")})
    );
    // The same client is throttled on the Auth0 API too, in Auth0's shape.
    let url = format!("http://{addr}/api/v2/users/alice/sessions");
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = request(Method::GET, &url, &[("authorization", &bearer)], "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["statusCode"], 429);
    assert_eq!(body["error"], "Too Many Requests");
    // The document stays public.
    let (status, _, _) =
        request(Method::GET, &format!("http://{addr}/openapi.json"), &[], "").await;
    assert_eq!(status, StatusCode::OK);

    let logs = captured.text();
    let failures = logs
        .lines()
        .filter(|line| line.contains("admin authentication failed"))
        .collect::<Vec<_>>();
    assert_eq!(failures.len(), DEFAULT_MAX_FAILURES as usize, "{logs}");
    assert!(
        failures.iter().all(|line| line.contains("127.0.0.1")),
        "{logs}"
    );
    assert!(
        !logs.contains("wrong-guess-of-the-secret"),
        "the presented secret was logged"
    );
    assert!(!logs.contains(SECRET) && !logs.contains(TOKEN));
}

/// Another client keeps its own budget: a fresh API counts bearer failures the same way and
/// answers them 401 until the budget is spent.
#[tokio::test(flavor = "current_thread")]
async fn bearer_failures_count_and_a_configured_budget_applies() {
    let (captured, _guard) = capture_warnings();
    let api = AdminApi::builder(MemoryStore::new())
        .admin_token(AdminToken::new("ops", TOKEN, ["read:sessions"]))
        .auth_failures(2, std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let addr = spawn(api.into_router()).await;
    let url = format!("http://{addr}/api/v2/users/alice/sessions");
    for _ in 0..2 {
        let (status, _, body) = request(
            Method::GET,
            &url,
            &[("authorization", "Bearer not-the-token-at-all")],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["message"], "Invalid token");
    }
    let bearer = format!("Bearer {TOKEN}");
    let (status, headers, body) =
        request(Method::GET, &url, &[("authorization", &bearer)], "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry = headers["retry-after"].to_str().unwrap();
    assert_eq!(
        body,
        json!({
            "statusCode": 429,
            "error": "Too Many Requests",
            "message": format!("Too many failed authentication attempts; retry in {retry} seconds"),
        })
    );
    assert!(!captured.text().contains("not-the-token-at-all"));
}

#[test]
fn secrets_shorter_than_16_bytes_are_refused_at_build_time() {
    let short_secret = AdminApi::builder(MemoryStore::new())
        .tyk_secret("x")
        .build();
    assert!(matches!(
        short_secret,
        Err(AdminConfigError::ShortTykSecret { len: 1, min: 16 })
    ));
    let short_token = AdminApi::builder(MemoryStore::new())
        .admin_token(AdminToken::new("tiny", "t", ["read:sessions"]))
        .build();
    let Err(error) = short_token else {
        panic!("a 1-byte token was accepted");
    };
    assert_eq!(
        error.to_string(),
        r#"admin token "tiny" must be at least 16 bytes (it is 1)"#
    );
    assert!(
        AdminApi::builder(MemoryStore::new())
            .tyk_secret("")
            .build()
            .is_ok(),
        "an empty secret disables the Tyk API"
    );
    assert!(matches!(
        AdminApi::builder(MemoryStore::new())
            .auth_failures(0, std::time::Duration::from_secs(1))
            .build(),
        Err(AdminConfigError::InvalidThrottle)
    ));
}

/// With no Tyk secret the Tyk API is off: its header is no guess, so it cannot spend the budget
/// the bearer tokens share (one client's noise would otherwise lock the sessions API).
#[tokio::test]
async fn tyk_headers_do_not_count_when_the_tyk_api_is_off() {
    let api = AdminApi::builder(MemoryStore::new())
        .admin_token(AdminToken::new("ops", TOKEN, ["read:sessions"]))
        .build()
        .unwrap();
    let addr = spawn(api.into_router()).await;
    for _ in 0..(3 * DEFAULT_MAX_FAILURES) {
        let url = format!("http://{addr}/tyk/keys");
        let (status, _, _) = request(
            Method::GET,
            &url,
            &[("x-tyk-authorization", "any-guess-at-all")],
            "",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let url = format!("http://{addr}/api/v2/users/alice/sessions");
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = request(Method::GET, &url, &[("authorization", &bearer)], "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
