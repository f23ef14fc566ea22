use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderMap, Request, StatusCode};
use keycard_core::ratelimit::{
    Decision, LimiterFuture, Limits, ManualClock, MemoryRateLimiter, Quota, QuotaState, RateLimiter,
};
use keycard_core::session::{SessionRecord, unix_now};
use keycard_core::store::{MemoryStore, SessionStore, StoreError};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{RateLimitHeaders, RateLimitLayer};
use crate::auth::SessionLoadLayer;

async fn store(keys: &[(&str, f64, Value)]) -> MemoryStore {
    let store = MemoryStore::new();
    for (key, rate, meta) in keys {
        let mut record = SessionRecord::for_key(key).metadata(meta.clone());
        (record.rate, record.per) = (*rate, 60.0);
        store.create(record).await.unwrap();
    }
    store
}

fn app(store: MemoryStore, layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
        .layer(SessionLoadLayer::new(store))
}

async fn call(app: &Router, key: &str) -> (StatusCode, HeaderMap, Value) {
    let request = Request::get("/")
        .header("authorization", key)
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

async fn passed(app: &Router, key: &str, times: usize) -> usize {
    let mut passed = 0;
    for _ in 0..times {
        passed += usize::from(call(app, key).await.0 == StatusCode::OK);
    }
    passed
}

#[tokio::test]
async fn over_the_limit_gets_429_with_tyk_body_and_headers() {
    let store = store(&[("key-a", 2.0, json!({}))]).await;
    let layer = RateLimitLayer::new(MemoryRateLimiter::new()).headers(RateLimitHeaders::RateLimits);
    let app = app(store, layer);
    let (status, headers, _) = call(&app, "key-a").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-ratelimit-limit"], "2");
    assert_eq!(headers["x-ratelimit-remaining"], "1");
    let reset: i64 = headers["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((unix_now() + 59..=unix_now() + 61).contains(&reset));
    assert_eq!(call(&app, "key-a").await.0, StatusCode::OK);

    let (status, headers, body) = call(&app, "key-a").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, json!({"error": "Rate Limit Exceeded"}));
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["retry-after"], "60");
    assert_eq!(headers["x-ratelimit-limit"], "2");
    assert_eq!(headers["x-ratelimit-remaining"], "0");
}

#[tokio::test]
async fn window_slides_on_the_limiter_clock() {
    let store = store(&[("key-a", 1.0, json!({}))]).await;
    let clock = ManualClock::new();
    let limiter = MemoryRateLimiter::new().clock(clock.clone());
    let app = app(store, RateLimitLayer::new(limiter));
    assert_eq!(passed(&app, "key-a", 3).await, 1);
    clock.advance(Duration::from_secs(59));
    let (status, headers, _) = call(&app, "key-a").await;
    assert_eq!(
        (status, &headers["retry-after"]),
        (StatusCode::TOO_MANY_REQUESTS, &"1".parse().unwrap())
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(passed(&app, "key-a", 3).await, 1);
}

#[tokio::test]
async fn rate_zero_or_less_disables_the_limit() {
    let store = store(&[("key-a", 0.0, json!({})), ("key-b", -1.0, json!({}))]).await;
    let app = app(store, RateLimitLayer::new(MemoryRateLimiter::new()));
    assert_eq!(passed(&app, "key-a", 5).await, 5);
    assert_eq!(passed(&app, "key-b", 5).await, 5);
    assert!(
        call(&app, "key-a")
            .await
            .1
            .get("x-ratelimit-limit")
            .is_none()
    );
}

#[tokio::test]
async fn rate_limit_pattern_shares_a_bucket_per_org() {
    let pattern = json!({"org_id": "org-1", "rate_limit_pattern": "$tyk_meta.org_id"});
    let other = json!({"org_id": "org-2", "rate_limit_pattern": "$tyk_meta.org_id"});
    let store = store(&[
        ("key-a", 3.0, pattern.clone()),
        ("key-b", 3.0, pattern),
        ("key-c", 3.0, other),
    ])
    .await;
    let app = app(store, RateLimitLayer::new(MemoryRateLimiter::new()));
    assert_eq!(passed(&app, "key-a", 2).await, 2);
    assert_eq!(passed(&app, "key-b", 2).await, 1);
    assert_eq!(passed(&app, "key-c", 4).await, 3);
}

#[tokio::test]
async fn pattern_with_every_variable_missing_falls_back_to_the_key() {
    let meta = json!({"rate_limit_pattern": "$tyk_meta.a|$tyk_meta.b"});
    let store = store(&[("key-a", 2.0, meta.clone()), ("key-b", 2.0, meta)]).await;
    let app = app(store, RateLimitLayer::new(MemoryRateLimiter::new()));
    assert_eq!(passed(&app, "key-a", 3).await, 2);
    assert_eq!(
        passed(&app, "key-b", 3).await,
        2,
        "not one shared \"|\" bucket"
    );
}

#[tokio::test]
async fn layer_pattern_applies_to_sessions_without_their_own() {
    let store = store(&[
        ("key-a", 2.0, json!({"tenant": "t1"})),
        ("key-b", 2.0, json!({"tenant": "t1"})),
        (
            "key-c",
            2.0,
            json!({"tenant": "t1", "rate_limit_pattern": "own"}),
        ),
        ("key-d", 2.0, json!({})),
    ])
    .await;
    let layer = RateLimitLayer::new(MemoryRateLimiter::new())
        .pattern("$tyk_meta.tenant")
        .unwrap();
    let app = app(store, layer);
    assert_eq!(passed(&app, "key-a", 1).await, 1);
    assert_eq!(passed(&app, "key-b", 2).await, 1);
    assert_eq!(passed(&app, "key-c", 3).await, 2);
    assert_eq!(passed(&app, "key-d", 3).await, 2);
}

#[test]
fn invalid_layer_pattern_fails_at_build_time() {
    assert!(
        RateLimitLayer::new(MemoryRateLimiter::new())
            .pattern("${tyk_meta.x")
            .is_err()
    );
}

struct Down;

impl RateLimiter for Down {
    fn check<'a>(&'a self, _: &'a str, _: Limits) -> LimiterFuture<'a> {
        Box::pin(async { Err::<Decision, _>(StoreError::unavailable("connection refused")) })
    }

    fn quota<'a>(&'a self, _: &'a str, _: Quota) -> LimiterFuture<'a, QuotaState> {
        Box::pin(async { Err(StoreError::unavailable("connection refused")) })
    }

    fn reset_quota<'a>(&'a self, _: &'a str) -> LimiterFuture<'a, ()> {
        Box::pin(async { Err(StoreError::unavailable("connection refused")) })
    }
}

#[tokio::test]
async fn limiter_down_is_503_by_default_and_passes_when_failing_open() {
    let store = store(&[("key-a", 2.0, json!({}))]).await;
    let closed = app(store.clone(), RateLimitLayer::new(Down));
    let (status, _, body) = call(&closed, "key-a").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, json!({"error": "Rate limiter unavailable"}));

    let open = app(store, RateLimitLayer::new(Down).fail_open());
    let (status, headers, _) = call(&open, "key-a").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("x-ratelimit-limit").is_none());
}

#[tokio::test]
async fn headers_off_leaves_only_retry_after() {
    let store = store(&[("key-a", 1.0, json!({}))]).await;
    let layer = RateLimitLayer::new(MemoryRateLimiter::new()).headers(RateLimitHeaders::Off);
    let app = app(store, layer);
    assert!(
        call(&app, "key-a")
            .await
            .1
            .get("x-ratelimit-limit")
            .is_none()
    );
    let (status, headers, _) = call(&app, "key-a").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "60");
    assert!(headers.get("x-ratelimit-remaining").is_none());
}

#[tokio::test]
async fn outside_the_load_stage_is_a_loud_500() {
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(MemoryRateLimiter::new()));
    assert_eq!(
        call(&app, "key-a").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn pattern_reads_context_values() {
    let store = store(&[("key-a", 2.0, json!({})), ("key-b", 2.0, json!({}))]).await;
    let layer = RateLimitLayer::new(MemoryRateLimiter::new())
        .pattern("team-$tyk_context.headers_X_Team")
        .unwrap();
    let app = app(store, layer);
    let team = |key: &str, team: &str| {
        Request::get("/")
            .header("authorization", key)
            .header("x-team", team)
            .body(Body::empty())
            .unwrap()
    };
    let mut passed = 0;
    for key in ["key-a", "key-b", "key-a"] {
        let response = app.clone().oneshot(team(key, "red")).await.unwrap();
        passed += usize::from(response.status() == StatusCode::OK);
    }
    assert_eq!(passed, 2, "one bucket for team red across both keys");
    let blue = app.clone().oneshot(team("key-a", "blue")).await.unwrap();
    assert_eq!(blue.status(), StatusCode::OK);
}

#[tokio::test]
async fn admitted_requests_see_the_decision_as_context_values() {
    use super::RateLimitValues;
    let store = store(&[("key-a", 5.0, json!({}))]).await;
    let app = Router::new()
        .route(
            "/",
            get(
                |axum::Extension(values): axum::Extension<RateLimitValues>| async move {
                    axum::Json(json!([
                        values.get("rate_limit_limit"),
                        values.get("rate_limit_remaining"),
                        values.get("rate_limit_reset").is_some(),
                    ]))
                },
            ),
        )
        .layer(RateLimitLayer::new(MemoryRateLimiter::new()))
        .layer(SessionLoadLayer::new(store));
    let (status, _, body) = call(&app, "key-a").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!(["5", "4", true]));
}

async fn quota_store(key: &str, rate: f64, quota_max: i64, renewal: i64) -> MemoryStore {
    let store = MemoryStore::new();
    let mut record = SessionRecord::for_key(key);
    (record.rate, record.per) = (rate, 60.0);
    (record.quota_max, record.quota_renewal_rate) = (quota_max, renewal);
    store.create(record).await.unwrap();
    store
}

#[tokio::test]
async fn quota_used_up_is_tyk_403_and_quota_headers_are_the_default() {
    let store = quota_store("key-q", 0.0, 2, 3600).await;
    let app = app(store, RateLimitLayer::new(MemoryRateLimiter::new()));
    let (status, headers, _) = call(&app, "key-q").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-ratelimit-limit"], "2");
    assert_eq!(headers["x-ratelimit-remaining"], "1");
    let reset: i64 = headers["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((unix_now() + 3599..=unix_now() + 3601).contains(&reset));
    assert_eq!(call(&app, "key-q").await.0, StatusCode::OK);

    let (status, headers, body) = call(&app, "key-q").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, json!({"error": "Quota exceeded"}));
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        headers.get("x-ratelimit-limit").is_none(),
        "Tyk sends quota headers on proxied responses only"
    );
    assert!(headers.get("retry-after").is_none());
}

#[tokio::test]
async fn quota_renews_on_the_limiter_clock() {
    let store = quota_store("key-q", 0.0, 1, 10).await;
    let clock = ManualClock::new();
    let limiter = MemoryRateLimiter::new().clock(clock.clone());
    let app = app(store, RateLimitLayer::new(limiter));
    assert_eq!(passed(&app, "key-q", 3).await, 1);
    clock.advance(Duration::from_secs(9));
    assert_eq!(passed(&app, "key-q", 1).await, 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(passed(&app, "key-q", 3).await, 1, "a new period");
}

#[tokio::test]
async fn rate_limited_before_the_quota_is_counted() {
    let store = quota_store("key-rq", 1.0, 5, 0).await;
    let limiter = MemoryRateLimiter::new();
    let layer = RateLimitLayer::new(limiter.clone()).headers(RateLimitHeaders::RateLimits);
    let app = app(store, layer);
    assert_eq!(call(&app, "key-rq").await.0, StatusCode::OK);
    let (status, headers, body) = call(&app, "key-rq").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body, json!({"error": "Rate Limit Exceeded"}));
    assert_eq!(headers["x-ratelimit-limit"], "1", "rate_limits mode");
    let record = SessionRecord::for_key("key-rq");
    let bucket = keycard_core::ratelimit::Buckets::key_bucket(&record.key_id);
    assert_eq!(
        limiter.quota_sync(&bucket, Quota::new(5, None)).remaining,
        4,
        "the 429 did not use quota"
    );
}

#[tokio::test]
async fn ietf_draft_headers_name_each_limit() {
    let store = quota_store("key-i", 10.0, 100, 3600).await;
    let layer = RateLimitLayer::new(MemoryRateLimiter::new())
        .headers(RateLimitHeaders::Off)
        .ietf_headers();
    let app = app(store, layer);
    let (status, headers, _) = call(&app, "key-i").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["ratelimit-policy"],
        r#""rate";q=10;w=60, "quota";q=100;w=3600"#
    );
    assert_eq!(
        headers["ratelimit"],
        r#""rate";r=9;t=60, "quota";r=99;t=3600"#
    );
    assert!(headers.get("x-ratelimit-limit").is_none());
}

#[tokio::test]
async fn ietf_draft_headers_on_a_429_and_without_renewal() {
    let store = quota_store("key-i", 1.0, 5, 0).await;
    let layer = RateLimitLayer::new(MemoryRateLimiter::new()).ietf_headers();
    let app = app(store, layer);
    let (_, headers, _) = call(&app, "key-i").await;
    assert_eq!(
        headers["ratelimit-policy"],
        r#""rate";q=1;w=60, "quota";q=5"#
    );
    assert_eq!(headers["ratelimit"], r#""rate";r=0;t=60, "quota";r=4"#);
    let (status, headers, _) = call(&app, "key-i").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["ratelimit"], r#""rate";r=0;t=60, "quota";r=4"#);
}

#[tokio::test]
async fn admitted_requests_see_the_quota_as_context_values() {
    use super::RateLimitValues;
    let store = quota_store("key-c", 0.0, 7, 60).await;
    let app = Router::new()
        .route(
            "/",
            get(
                |axum::Extension(values): axum::Extension<RateLimitValues>| async move {
                    axum::Json(json!([
                        values.get("quota_limit"),
                        values.get("quota_remaining"),
                        values.get("quota_reset").is_some(),
                        values.get("rate_limit_limit"),
                    ]))
                },
            ),
        )
        .layer(RateLimitLayer::new(MemoryRateLimiter::new()))
        .layer(SessionLoadLayer::new(store));
    let (status, _, body) = call(&app, "key-c").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!(["7", "6", true, null]));
}

#[tokio::test]
async fn a_header_rule_renders_the_quota_left() {
    use crate::headers::InjectHeadersLayer;
    let store = quota_store("key-h", 0.0, 3, 60).await;
    let inject = InjectHeadersLayer::request()
        .set("x-quota-left", "$tyk_context.quota_remaining")
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move {
                headers["x-quota-left"].to_str().unwrap().to_owned()
            }),
        )
        .layer(inject)
        .layer(RateLimitLayer::new(MemoryRateLimiter::new()))
        .layer(SessionLoadLayer::new(store));
    let request = || {
        Request::get("/")
            .header("authorization", "key-h")
            .body(Body::empty())
            .unwrap()
    };
    for left in ["2", "1"] {
        let response = app.clone().oneshot(request()).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 64)
            .await
            .unwrap();
        assert_eq!(body, left);
    }
}

#[tokio::test]
async fn limits_set_by_a_policy_apply() {
    use keycard_core::policy::{MemoryPolicies, Policy};
    let policies = MemoryPolicies::new();
    let mut gold = Policy::new("gold");
    (gold.rate, gold.per) = (5.0, 60.0);
    (gold.quota_max, gold.quota_renewal_rate) = (2, 3600);
    policies.insert(gold);
    let store = MemoryStore::new();
    let mut record = SessionRecord::for_key("key-p");
    record.apply_policies = vec!["gold".into()];
    store.create(record).await.unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(MemoryRateLimiter::new()).ietf_headers())
        .layer(SessionLoadLayer::new(store).policies(policies));
    let (status, headers, _) = call(&app, "key-p").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers["ratelimit-policy"],
        r#""rate";q=5;w=60, "quota";q=2;w=3600"#
    );
    assert_eq!(call(&app, "key-p").await.0, StatusCode::OK);
    assert_eq!(call(&app, "key-p").await.0, StatusCode::FORBIDDEN);
}
