use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use keycard_core::store::MemoryStore;
use keycard_core::vars::TemplateError;
use serde_json::{Value, json};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt, service_fn};

use super::rule::canonical_header_name;
use super::{RegexMatch, RewriteConfigError, RewriteRule, RewrittenFrom, Trigger, UrlRewriteLayer};
use crate::auth::SessionLoadLayer;
use crate::context::ContextValues;
use crate::headers::InjectHeadersLayer;
use crate::test_support::{KEY, store};

/// What the inner service received: the request parts (URI, extensions) and the body.
type Seen = Arc<Mutex<Vec<(Parts, Bytes)>>>;

type App = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// An inner service that records each request and answers 200 with its URI.
fn recorder(seen: Seen) -> BoxCloneService<Request<Body>, Response<Body>, Infallible> {
    BoxCloneService::new(service_fn(move |request: Request<Body>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let uri = parts.uri.to_string();
            seen.lock().unwrap().push((parts, body));
            Ok::<_, Infallible>(Response::new(Body::from(uri)))
        }
    }))
}

/// SessionLoad → rewrite → recorder, with the session `meta`.
async fn stack(meta: Value, rewrite: UrlRewriteLayer) -> (App, Seen) {
    let seen = Seen::default();
    let service = ServiceBuilder::new()
        .layer(SessionLoadLayer::new(store(meta).await))
        .layer(rewrite)
        .service(recorder(seen.clone()));
    (BoxCloneService::new(service), seen)
}

fn rules(rules: impl IntoIterator<Item = RewriteRule>) -> UrlRewriteLayer {
    UrlRewriteLayer::rules()
        .extend_rules(rules)
        .build()
        .unwrap()
}

fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(uri).header("authorization", KEY);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

fn post(uri: &str, body: &'static str) -> Request<Body> {
    Request::post(uri)
        .header("authorization", KEY)
        .body(Body::from(body))
        .unwrap()
}

async fn send(app: &App, request: Request<Body>) -> (StatusCode, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// The URI the inner service saw last.
fn last_uri(seen: &Seen) -> String {
    seen.lock().unwrap().last().unwrap().0.uri.to_string()
}

/// The context value `name` the inner service saw last.
fn context(seen: &Seen, name: &str) -> Option<String> {
    let seen = seen.lock().unwrap();
    let values = seen.last().unwrap().0.extensions.get::<ContextValues>()?;
    values.get(name).map(str::to_owned)
}

fn error(message: &str) -> String {
    json!({ "error": message }).to_string()
}

// --- rewrite.md vectors ---

#[tokio::test]
async fn whole_path_capture_keeps_the_original_query() {
    let (app, seen) = stack(
        json!({}),
        rules([RewriteRule::new("(.*)", "$1&newParam=that")]),
    )
    .await;
    let (status, _) = send(&app, get("/foo/bar?param1=this", &[])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(last_uri(&seen), "/foo/bar?param1=this&newParam=that");
}

#[tokio::test]
async fn metadata_and_capture_route_to_the_shard() {
    let rule = RewriteRule::new(r"^/orders/(.*)", "/shards/$tyk_meta.shard/orders/$1");
    let (app, seen) = stack(json!({"shard": "eu-2"}), rules([rule])).await;
    send(&app, get("/orders/7", &[])).await;
    assert_eq!(last_uri(&seen), "/shards/eu-2/orders/7");
    let seen = seen.lock().unwrap();
    let from = seen[0].0.extensions.get::<RewrittenFrom>().unwrap();
    assert_eq!(from.0, "/orders/7");
}

#[tokio::test]
async fn header_trigger_publishes_match_and_groups_and_supplies_its_target() {
    let rule = RewriteRule::new(r"^/orders/(\d+)", "/orders/$1").trigger(
        Trigger::any()
            .header("X-Test", r"hello-(\w+)")
            .rewrite_to("/greet/$tyk_context.trigger-0-X-Test-0-0/$1"),
    );
    let (app, seen) = stack(json!({}), rules([rule])).await;
    send(&app, get("/orders/7", &[("x-test", "hello-world")])).await;
    assert_eq!(last_uri(&seen), "/greet/world/7");
    assert_eq!(
        context(&seen, "trigger-0-X-Test-0").as_deref(),
        Some("hello-world")
    );
    assert_eq!(
        context(&seen, "trigger-0-X-Test-0-0").as_deref(),
        Some("world")
    );
}

// --- Tyk-compatible trigger context keys ---

#[tokio::test]
async fn header_trigger_keys_use_the_canonical_name_and_index_every_value() {
    let rule = RewriteRule::new("^/h", "/none").trigger(
        Trigger::any()
            .header("x-multi-value", r"v(\d)")
            .rewrite_to("/fired"),
    );
    let (app, seen) = stack(json!({}), rules([rule])).await;
    let request = Request::get("/h")
        .header("authorization", KEY)
        .header("x-multi-value", "nope")
        .header("x-multi-value", "v2")
        .body(Body::empty())
        .unwrap();
    send(&app, request).await;
    assert_eq!(last_uri(&seen), "/fired");
    assert_eq!(context(&seen, "trigger-0-X-Multi-Value-0"), None);
    assert_eq!(
        context(&seen, "trigger-0-X-Multi-Value-1").as_deref(),
        Some("v2")
    );
    assert_eq!(
        context(&seen, "trigger-0-X-Multi-Value-1-0").as_deref(),
        Some("2")
    );
    assert_eq!(canonical_header_name("x-TEST-name"), "X-Test-Name");
}

#[tokio::test]
async fn query_trigger_keys_index_the_parameter_values() {
    let rule = RewriteRule::new("^/q", "/none").trigger(
        Trigger::any()
            .query("q", r"([a-z])(\d)")
            .rewrite_to("/fired/$tyk_context.trigger-0-q-1-1"),
    );
    let (app, seen) = stack(json!({}), rules([rule])).await;
    send(&app, get("/q?q=a1&other=x&q=b2", &[])).await;
    assert_eq!(last_uri(&seen), "/fired/2");
    for (key, value) in [
        ("trigger-0-q-0", "a1"),
        ("trigger-0-q-0-0", "a"),
        ("trigger-0-q-0-1", "1"),
        ("trigger-0-q-1", "b2"),
        ("trigger-0-q-1-0", "b"),
        ("trigger-0-q-1-1", "2"),
    ] {
        assert_eq!(context(&seen, key).as_deref(), Some(value), "{key}");
    }
}

#[tokio::test]
async fn query_trigger_reads_decoded_values() {
    let rule = RewriteRule::new("^/q", "/none")
        .trigger(Trigger::any().query("name", "^a b$").rewrite_to("/fired"));
    let (app, seen) = stack(json!({}), rules([rule])).await;
    send(&app, get("/q?name=a+b", &[])).await;
    assert_eq!(context(&seen, "trigger-0-name-0").as_deref(), Some("a b"));
}

#[tokio::test]
async fn path_part_trigger_keys_count_matching_segments() {
    let rule = RewriteRule::new("^/p/", "/none").trigger(
        Trigger::any()
            .path_part("part", r"^id-(\d+)$")
            .rewrite_to("/fired"),
    );
    let (app, seen) = stack(json!({}), rules([rule])).await;
    send(&app, get("/p/id-12/x/id-34", &[])).await;
    assert_eq!(last_uri(&seen), "/fired");
    assert_eq!(context(&seen, "trigger-0-part-0").as_deref(), Some("id-12"));
    assert_eq!(context(&seen, "trigger-0-part-0-0").as_deref(), Some("12"));
    assert_eq!(context(&seen, "trigger-0-part-1").as_deref(), Some("id-34"));
    assert_eq!(context(&seen, "trigger-0-part-1-0").as_deref(), Some("34"));
}

#[tokio::test]
async fn session_meta_trigger_keys_have_no_index_and_consider_strings_only() {
    let rule = RewriteRule::new("^/m", "/none")
        .trigger(
            Trigger::any()
                .session_meta("level", ".*")
                .rewrite_to("/numeric"),
        )
        .trigger(
            Trigger::any()
                .session_meta("plan", r"gold-(\d)")
                .rewrite_to("/gold/$tyk_context.trigger-1-plan-0"),
        );
    let (app, seen) = stack(json!({"plan": "gold-3", "level": 7}), rules([rule])).await;
    send(&app, get("/m", &[])).await;
    assert_eq!(last_uri(&seen), "/gold/3");
    assert_eq!(context(&seen, "trigger-1-plan").as_deref(), Some("gold-3"));
    assert_eq!(context(&seen, "trigger-1-plan-0").as_deref(), Some("3"));
    assert_eq!(context(&seen, "trigger-0-level"), None);
}

#[tokio::test]
async fn request_context_trigger_reads_context_variables_and_values_set_earlier() {
    let rule = RewriteRule::new("^/c", "/none").trigger(
        Trigger::all()
            .context("headers_X_Region", r"eu-(\w+)")
            .context("tier", "^(gold)$")
            .rewrite_to("/fired"),
    );
    let rewrite = rules([rule]);
    let seen = Seen::default();
    // A layer before the rewrite publishes `tier`, as any layer or handler may.
    let app = ServiceBuilder::new()
        .layer(SessionLoadLayer::new(store(json!({})).await))
        .map_request(|mut request: Request<Body>| {
            ContextValues::insert_into(request.extensions_mut(), "tier", "gold");
            request
        })
        .layer(rewrite)
        .service(recorder(seen.clone()));
    let app = BoxCloneService::new(app);
    send(&app, get("/c", &[("x-region", "eu-west")])).await;
    assert_eq!(last_uri(&seen), "/fired");
    assert_eq!(
        context(&seen, "trigger-0-headers_X_Region").as_deref(),
        Some("eu-west")
    );
    assert_eq!(
        context(&seen, "trigger-0-headers_X_Region-0").as_deref(),
        Some("west")
    );
    assert_eq!(context(&seen, "trigger-0-tier").as_deref(), Some("gold"));
    assert_eq!(context(&seen, "trigger-0-tier-0").as_deref(), Some("gold"));
}

#[tokio::test]
async fn payload_trigger_keys_and_the_body_passes_unchanged() {
    let rule = RewriteRule::new("^/pay", "/none").trigger(
        Trigger::any()
            .payload(r"id=(\d+)")
            .rewrite_to("/ids/$tyk_context.trigger-0-payload-1-0"),
    );
    let (app, seen) = stack(json!({}), rules([rule])).await;
    send(&app, post("/pay", "id=12&id=34")).await;
    assert_eq!(last_uri(&seen), "/ids/34");
    for (key, value) in [
        ("trigger-0-payload", "id=12"),
        ("trigger-0-payload-0", "id=12"),
        ("trigger-0-payload-0-0", "12"),
        ("trigger-0-payload-1", "id=34"),
        ("trigger-0-payload-1-0", "34"),
    ] {
        assert_eq!(context(&seen, key).as_deref(), Some(value), "{key}");
    }
    assert_eq!(seen.lock().unwrap()[0].1, "id=12&id=34");
}

#[tokio::test]
async fn payload_trigger_that_does_not_fire_still_passes_the_body_unchanged() {
    let rule = RewriteRule::new("^/pay", "/plain")
        .trigger(Trigger::any().payload("never").rewrite_to("/fired"));
    let (app, seen) = stack(json!({}), rules([rule])).await;
    send(&app, post("/pay", "{\"a\":1}")).await;
    assert_eq!(last_uri(&seen), "/plain");
    assert_eq!(seen.lock().unwrap()[0].1, "{\"a\":1}");
}

#[tokio::test]
async fn body_over_the_limit_is_413_and_never_reaches_the_service() {
    let rule = RewriteRule::new("^/pay", "/plain")
        .trigger(Trigger::any().payload("x").rewrite_to("/fired"));
    let rewrite = UrlRewriteLayer::rules()
        .rule(rule)
        .body_limit(4)
        .build()
        .unwrap();
    let (app, seen) = stack(json!({}), rewrite).await;
    // Streamed (no content-length): found while reading.
    let (status, body) = send(&app, post("/pay", "xxxxx")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body, error("Request body too large"));
    // Declared: refused before reading.
    let request = Request::post("/pay")
        .header("authorization", KEY)
        .header("content-length", "5")
        .body(Body::from("xxxxx"))
        .unwrap();
    let (status, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body, error("Request body too large"));
    assert!(seen.lock().unwrap().is_empty());
    // Within the limit, fine.
    assert_eq!(send(&app, post("/pay", "xxxx")).await.0, StatusCode::OK);
    assert_eq!(last_uri(&seen), "/fired");
}

#[tokio::test]
async fn unreadable_body_is_400() {
    let rule = RewriteRule::new("^/pay", "/plain")
        .trigger(Trigger::any().payload("x").rewrite_to("/fired"));
    let (app, seen) = stack(json!({}), rules([rule])).await;
    let request = Request::post("/pay")
        .header("authorization", KEY)
        .body(Body::new(FailingBody))
        .unwrap();
    let (status, body) = send(&app, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, error("Failed to read request body"));
    assert!(seen.lock().unwrap().is_empty());
}

/// A body whose first frame is an error (a client that went away).
struct FailingBody;

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::other("client went away"))))
    }
}

#[tokio::test]
async fn second_trigger_uses_its_own_number() {
    let rule = RewriteRule::new("^/n", "/none")
        .trigger(Trigger::any().header("x-a", "(a)").rewrite_to("/a"))
        .trigger(
            Trigger::any()
                .header("x-b", "(b)")
                .rewrite_to("/b/$tyk_context.trigger-1-X-B-0-0"),
        );
    let (app, seen) = stack(json!({}), rules([rule])).await;
    send(&app, get("/n", &[("x-b", "b")])).await;
    assert_eq!(last_uri(&seen), "/b/b");
    assert_eq!(context(&seen, "trigger-1-X-B-0").as_deref(), Some("b"));
}

// --- any / all / reverse ---

#[tokio::test]
async fn all_needs_every_group_and_every_entry() {
    let trigger = Trigger::all()
        .header("x-a", "^yes$")
        .header("x-b", "^yes$")
        .query("q", "^1$")
        .rewrite_to("/all");
    let rule = RewriteRule::new("^/t", "/plain").trigger(trigger);
    let (app, seen) = stack(json!({}), rules([rule])).await;

    send(&app, get("/t?q=1", &[("x-a", "yes")])).await;
    assert_eq!(last_uri(&seen), "/plain");
    // A trigger that did not fire publishes nothing (Tyk would leave `trigger-0-X-A-0`).
    assert_eq!(context(&seen, "trigger-0-X-A-0"), None);

    send(&app, get("/t?q=2", &[("x-a", "yes"), ("x-b", "yes")])).await;
    assert_eq!(last_uri(&seen), "/plain");

    send(&app, get("/t?q=1", &[("x-a", "yes"), ("x-b", "yes")])).await;
    assert_eq!(last_uri(&seen), "/all");
    assert_eq!(context(&seen, "trigger-0-X-B-0").as_deref(), Some("yes"));
    assert_eq!(context(&seen, "trigger-0-q-0").as_deref(), Some("1"));
}

#[tokio::test]
async fn any_fires_on_the_first_group_that_fires() {
    let trigger = Trigger::any()
        .header("x-a", "^yes$")
        .query("q", "^(1)$")
        .rewrite_to("/any");
    let rule = RewriteRule::new("^/t", "/plain").trigger(trigger);
    let (app, seen) = stack(json!({}), rules([rule])).await;
    send(&app, get("/t?q=1", &[])).await;
    assert_eq!(last_uri(&seen), "/any");
    send(&app, get("/t?q=1", &[("x-a", "yes")])).await;
    assert_eq!(last_uri(&seen), "/any");
    // Headers come first and fired, so the query group was not evaluated.
    assert_eq!(context(&seen, "trigger-0-q-0"), None);
    send(&app, get("/t?q=2", &[])).await;
    assert_eq!(last_uri(&seen), "/plain");
}

#[tokio::test]
async fn reverse_fires_for_a_present_value_that_does_not_match() {
    let trigger = Trigger::any()
        .header("x-beta", RegexMatch::new("^on$").reverse())
        .rewrite_to("/stable");
    let rule = RewriteRule::new("^/r", "/plain").trigger(trigger);
    let (app, seen) = stack(json!({}), rules([rule])).await;
    send(&app, get("/r", &[("x-beta", "off")])).await;
    assert_eq!(last_uri(&seen), "/stable");
    assert_eq!(context(&seen, "trigger-0-X-Beta-0"), None);
    send(&app, get("/r", &[("x-beta", "on")])).await;
    assert_eq!(last_uri(&seen), "/plain");
    // Absent is not "present and not matching" (as in Tyk).
    send(&app, get("/r", &[])).await;
    assert_eq!(last_uri(&seen), "/plain");
}

// --- rule selection ---

#[tokio::test]
async fn first_matching_rule_wins() {
    let (app, seen) = stack(
        json!({}),
        rules([
            RewriteRule::new("^/a/b", "/first"),
            RewriteRule::new("^/a", "/second"),
        ]),
    )
    .await;
    send(&app, get("/a/b", &[])).await;
    assert_eq!(last_uri(&seen), "/first");
    send(&app, get("/a/c", &[])).await;
    assert_eq!(last_uri(&seen), "/second");
}

#[tokio::test]
async fn no_match_leaves_the_request_untouched_even_if_a_trigger_would_fire() {
    let rule = RewriteRule::new("^/orders/", "/x")
        .trigger(Trigger::any().header("x-test", ".*").rewrite_to("/y"));
    let (app, seen) = stack(json!({}), rules([rule])).await;
    send(&app, get("/other?q=1", &[("x-test", "anything")])).await;
    assert_eq!(last_uri(&seen), "/other?q=1");
    let seen = seen.lock().unwrap();
    assert!(seen[0].0.extensions.get::<ContextValues>().is_none());
    assert!(seen[0].0.extensions.get::<RewrittenFrom>().is_none());
}

#[tokio::test]
async fn method_limits_a_rule_and_disabled_rules_are_skipped() {
    let disabled: RewriteRule = serde_json::from_value(json!({
        "match_pattern": "^/m", "rewrite_to": "/disabled", "disabled": true
    }))
    .unwrap();
    assert!(disabled.is_disabled());
    let (app, seen) = stack(
        json!({}),
        rules([
            disabled,
            RewriteRule::new("^/m", "/posted").method(Method::POST),
            RewriteRule::new("^/m", "/any"),
        ]),
    )
    .await;
    send(&app, get("/m", &[])).await;
    assert_eq!(last_uri(&seen), "/any");
    send(&app, post("/m", "")).await;
    assert_eq!(last_uri(&seen), "/posted");
}

#[tokio::test]
async fn a_single_rule_is_held_to_its_method_and_its_pattern() {
    // One rule takes the path without the rule set: method and pattern must still decide.
    let (app, seen) = stack(
        json!({}),
        rules([RewriteRule::new("^/m/(\\w+)$", "/posted/$1").method(Method::POST)]),
    )
    .await;
    send(&app, get("/m/a", &[])).await;
    assert_eq!(last_uri(&seen), "/m/a");
    send(&app, post("/m/b", "")).await;
    assert_eq!(last_uri(&seen), "/posted/b");
    send(&app, post("/m/b/c", "")).await;
    assert_eq!(last_uri(&seen), "/m/b/c");
}

/// Tyk's endpoint syntax (`httputil.PreparePathRegexp`): `{name}` one segment, `/*/` one
/// segment, a trailing `/*` any rest; unanchored.
#[tokio::test]
async fn endpoint_paths_use_tyk_syntax() {
    let (app, seen) = stack(
        json!({}),
        rules([
            RewriteRule::new("(.*)", "/param$1").path("^/p/{id}$"),
            RewriteRule::new("(.*)", "/middle$1").path("^/m/*/x$"),
            RewriteRule::new("(.*)", "/rest$1").path("^/r/*"),
            RewriteRule::new("(.*)", "/none$1"),
        ]),
    )
    .await;
    for (path, want) in [
        ("/p/7", "/param/p/7"),
        ("/p/7/8", "/none/p/7/8"),
        ("/m/a/x", "/middle/m/a/x"),
        ("/m/a/b/x", "/none/m/a/b/x"),
        ("/r/", "/rest/r/"),
        ("/r/a/b", "/rest/r/a/b"),
    ] {
        send(&app, get(path, &[])).await;
        assert_eq!(last_uri(&seen), want, "{path}");
    }
}

/// The decoded retry finds the rule; every group comes from the request's own text, including
/// one that spans escapes, and the query (decoded too) is matched as well.
#[tokio::test]
async fn decoded_retry_reads_groups_from_the_request_text() {
    let (app, seen) = stack(
        json!({}),
        rules([
            RewriteRule::new("^/a/(x y)/(.*)$", "/b/$1/$2"),
            RewriteRule::new("^/q\\?k=(v w)$", "/q2?k=$1"),
        ]),
    )
    .await;
    send(&app, get("/a/x%20y/%C3%A9%2F1", &[])).await;
    assert_eq!(last_uri(&seen), "/b/x%20y/%C3%A9%2F1");
    send(&app, get("/q?k=v%20w", &[])).await;
    assert_eq!(last_uri(&seen), "/q2?k=v%20w");
    // Not UTF-8 once decoded: no retry, untouched.
    send(&app, get("/a/x%FFy/z", &[])).await;
    assert_eq!(last_uri(&seen), "/a/x%FFy/z");
}

/// Rules are tried in order, each on the text and then on its decoded form, before the next
/// rule: a decoded match of an earlier rule wins over a plain match of a later one.
#[tokio::test]
async fn each_rule_is_retried_decoded_before_the_next_rule() {
    let (app, seen) = stack(
        json!({}),
        rules([
            RewriteRule::new("^/a b$", "/first"),
            RewriteRule::new("^/a%20b$", "/second"),
        ]),
    )
    .await;
    send(&app, get("/a%20b", &[])).await;
    assert_eq!(last_uri(&seen), "/first");
}

#[tokio::test]
async fn target_without_a_leading_slash_gets_one() {
    let (app, seen) = stack(
        json!({}),
        rules([RewriteRule::new(
            r"(\w+)/(\w+)",
            "my/service?value1=$1&value2=$2",
        )]),
    )
    .await;
    send(&app, get("/match/me", &[])).await;
    assert_eq!(last_uri(&seen), "/my/service?value1=match&value2=me");
}

// --- encoding and safety ---

/// Changed: `../admin` used to be sent as `/shards/..%2Fadmin/...`, one segment for RFC 3986
/// but `/admin/...` for an upstream that decodes `%2F` before it resolves dots.
#[tokio::test]
async fn traversal_in_metadata_is_500_invalid_rewrite_target() {
    let rule = RewriteRule::new(r"^/orders/(.*)", "/shards/$tyk_meta.shard/orders/$1");
    for shard in ["../admin", r"..\admin", "a/../.."] {
        let (app, seen) = stack(json!({ "shard": shard }), rules([rule.clone()])).await;
        let (status, body) = send(&app, get("/orders/7", &[])).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{shard}");
        assert_eq!(body, error("Invalid rewrite target"));
        assert!(seen.lock().unwrap().is_empty());
    }
    // A slash that hides no dot segment stays encoded in the one segment.
    let (app, seen) = stack(json!({"shard": "eu/1"}), rules([rule])).await;
    send(&app, get("/orders/7", &[])).await;
    assert_eq!(last_uri(&seen), "/shards/eu%2F1/orders/7");
}

#[tokio::test]
async fn a_dot_segment_in_the_request_path_is_400_in_every_spelling() {
    let rule = RewriteRule::new(r"^/orders/(.*)", "/shards/$tyk_meta.shard/orders/$1");
    let (app, seen) = stack(json!({"shard": "eu-1"}), rules([rule])).await;
    for path in [
        "/orders/../../us-2/orders/1",
        "/orders/%2e%2e/%2E%2E/us-2/orders/1",
        "/orders/%2E./.%2e/us-2/orders/1",
        r"/orders/..\..\us-2",
        "/orders/..%5c..%5Cus-2",
        "/orders/..%2F..%2fus-2",
        "/orders/%zz",
    ] {
        let (status, body) = send(&app, get(path, &[])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body, error("Invalid request path"), "{path}");
    }
    assert!(seen.lock().unwrap().is_empty());
}

/// Half a segment captured can make a dot segment with the target's literal text: refused as
/// the client's doing.
#[tokio::test]
async fn a_capture_that_makes_a_dot_segment_is_400() {
    let rule = RewriteRule::new(r"^/files/x(.*)", "/store/$tyk_meta.shard/$1");
    let (app, seen) = stack(json!({"shard": "eu-1"}), rules([rule])).await;
    for path in [
        "/files/x..",
        "/files/x.",
        "/files/x%2e%2E",
        "/files/x..%5Cup",
    ] {
        let (status, body) = send(&app, get(path, &[])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body, error("Invalid request path"), "{path}");
    }
    assert!(seen.lock().unwrap().is_empty());
    send(&app, get("/files/x.txt", &[])).await;
    assert_eq!(last_uri(&seen), "/store/eu-1/.txt");
}

#[tokio::test]
async fn patterns_match_and_the_service_gets_the_normalised_path() {
    let rule = RewriteRule::new(r"^/orders/(\d+)$", "/shards/$tyk_meta.shard/orders/$1");
    let (app, seen) = stack(json!({"shard": "eu-1"}), rules([rule])).await;
    send(&app, get("/%6frders/%37", &[])).await;
    assert_eq!(last_uri(&seen), "/shards/eu-1/orders/7");
    // The original is the normalised request, as every stage saw it.
    let from = seen.lock().unwrap()[0]
        .0
        .extensions
        .get::<RewrittenFrom>()
        .cloned();
    assert_eq!(from.unwrap().0, "/orders/7");
    // Unmatched: still normalised, hex in uppercase, the query as sent.
    send(&app, get("/%6Fther/a%2fb?q=%6F", &[])).await;
    assert_eq!(last_uri(&seen), "/other/a%2Fb?q=%6F");
}

#[tokio::test]
async fn the_rewritten_path_is_normalised_and_never_starts_with_two_slashes() {
    let (app, seen) = stack(
        json!({}),
        rules([
            RewriteRule::new(r"^/p(.*)", "$1"),
            RewriteRule::new(r"^/lit", "/%7euser/%2fx"),
            RewriteRule::new(r"^/dots", "/a/../b"),
        ]),
    )
    .await;
    send(&app, get("/p//evil.example/x?y=1", &[])).await;
    assert_eq!(last_uri(&seen), "/evil.example/x?y=1");
    send(&app, get("/lit", &[])).await;
    assert_eq!(last_uri(&seen), "/~user/%2Fx");
    // A dot segment written in the target has no normalised form.
    let (status, body) = send(&app, get("/dots", &[])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, error("Invalid rewrite target"));
}

#[tokio::test]
async fn only_a_target_written_absolute_is_absolute() {
    let (app, seen) = stack(
        json!({"s": "https"}),
        rules([
            RewriteRule::new(r"^/go/(.*)", "$1"),
            RewriteRule::new(r"^/meta", "$tyk_meta.s://evil.example/x"),
        ]),
    )
    .await;
    send(
        &app,
        get("http://front.example/go/https://evil.example/x", &[]),
    )
    .await;
    // Runs of `/` are merged when the path is normalised; the capture stays in the path.
    assert_eq!(
        last_uri(&seen),
        "http://front.example/https:/evil.example/x"
    );
    send(&app, get("/meta", &[])).await;
    assert_eq!(last_uri(&seen), "/https:/evil.example/x");
}

#[tokio::test]
async fn dot_dot_metadata_is_500_invalid_rewrite_target() {
    let rule = RewriteRule::new(r"^/orders/(.*)", "/shards/$tyk_meta.shard/orders/$1");
    for shard in ["..", "."] {
        let (app, seen) = stack(json!({ "shard": shard }), rules([rule.clone()])).await;
        let (status, body) = send(&app, get("/orders/7", &[])).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{shard}");
        assert_eq!(body, error("Invalid rewrite target"));
        assert!(seen.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn captured_client_text_is_never_expanded() {
    let rule = RewriteRule::new(r"^/p/(.*)", "/q/$1?h=$tyk_context.headers_X_Name").trigger(
        Trigger::any()
            .header("x-name", r"(.*)")
            .rewrite_to("/t/$1/$tyk_context.trigger-0-X-Name-0-0"),
    );
    let (app, seen) = stack(json!({"x": "s3cr3t"}), rules([rule])).await;
    send(&app, get("/p/$tyk_meta.x", &[("x-name", "$tyk_meta.x")])).await;
    let uri = last_uri(&seen);
    // The path capture is inserted as sent; the header value is encoded, not expanded.
    assert_eq!(uri, "/t/$tyk_meta.x/%24tyk_meta.x");
    assert!(!uri.contains("s3cr3t"));

    let plain = RewriteRule::new(r"^/p/(.*)", "/q/$1?h=$tyk_context.headers_X_Name");
    let (plain_app, seen) = stack(json!({"x": "s3cr3t"}), rules([plain])).await;
    send(
        &plain_app,
        get("/p/$tyk_meta.x", &[("x-name", "$tyk_meta.x")]),
    )
    .await;
    assert_eq!(last_uri(&seen), "/q/$tyk_meta.x?h=%24tyk_meta.x");
}

#[tokio::test]
async fn metadata_is_percent_encoded_in_the_path_and_form_encoded_in_the_query() {
    let rule = RewriteRule::new("^/u", "/users/$tyk_meta.uid?u=$tyk_meta.uid");
    let (app, seen) = stack(json!({"uid": "u 1/2"}), rules([rule])).await;
    send(&app, get("/u", &[])).await;
    assert_eq!(last_uri(&seen), "/users/u%201%2F2?u=u+1%2F2");
}

#[tokio::test]
async fn target_that_is_not_a_url_is_500() {
    let rule = RewriteRule::new("^/bad", "/has space");
    let (app, _) = stack(json!({}), rules([rule])).await;
    let (status, body) = send(&app, get("/bad", &[])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, error("Invalid rewrite target"));
}

// --- absolute targets ---

#[tokio::test]
async fn absolute_target_changes_scheme_and_authority() {
    let rule = RewriteRule::new(
        r"^/orders/(.*)",
        "http://${tyk_meta.shard}.internal:8080/orders/$1",
    );
    let rewrite = UrlRewriteLayer::rules()
        .rule(rule)
        .allow_hosts(["EU-2.internal:8080"])
        .build()
        .unwrap();
    let (app, seen) = stack(json!({"shard": "eu-2"}), rewrite).await;
    assert_eq!(send(&app, get("/orders/7", &[])).await.0, StatusCode::OK);
    let seen = seen.lock().unwrap();
    let uri = &seen[0].0.uri;
    assert_eq!(uri.scheme_str(), Some("http"));
    assert_eq!(uri.authority().unwrap().as_str(), "eu-2.internal:8080");
    assert_eq!(uri.path(), "/orders/7");
}

#[tokio::test]
async fn absolute_target_outside_the_allow_list_is_500() {
    let rule = RewriteRule::new(r"^/orders/(.*)", "https://$tyk_meta.shard/orders/$1");
    let rewrite = UrlRewriteLayer::rules()
        .rule(rule)
        .allow_hosts(["eu-2.internal", "eu-3.internal:8443"])
        .build()
        .unwrap();
    let (app, seen) = stack(json!({"shard": "evil.example"}), rewrite).await;
    let (status, body) = send(&app, get("/orders/7", &[])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, error("Rewrite target not allowed"));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn allow_list_entry_with_a_port_matches_that_port_only() {
    let layer = |target: &str| {
        UrlRewriteLayer::rules()
            .rule(RewriteRule::new("^/x", target))
            .allow_hosts(["h.internal:8443"])
            .build()
            .unwrap()
    };
    let (same_port, _) = stack(json!({}), layer("https://h.internal:8443/x")).await;
    assert_eq!(send(&same_port, get("/x", &[])).await.0, StatusCode::OK);
    let (other_port, _) = stack(json!({}), layer("https://h.internal:9000/x")).await;
    assert_eq!(
        send(&other_port, get("/x", &[])).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

/// Changed: an entry without a port used to allow every port (`:6379`, `:22`).
#[tokio::test]
async fn allow_list_entry_without_a_port_means_the_default_port() {
    let layer = |target: &str| {
        UrlRewriteLayer::rules()
            .rule(RewriteRule::new("^/x", target))
            .allow_hosts(["h.internal"])
            .build()
            .unwrap()
    };
    for target in [
        "http://h.internal/x",
        "http://h.internal:80/x",
        "https://h.internal/x",
        "https://H.INTERNAL:443/x",
    ] {
        let (app, seen) = stack(json!({}), layer(target)).await;
        assert_eq!(
            send(&app, get("/x", &[])).await.0,
            StatusCode::OK,
            "{target}"
        );
        assert!(last_uri(&seen).eq_ignore_ascii_case(target), "{target}");
    }
    for target in [
        "http://h.internal:6379/x",
        "http://h.internal:22/x",
        "http://h.internal:443/x",
        "https://h.internal:80/x",
        "http://h.internal.evil.example/x",
    ] {
        let (app, seen) = stack(json!({}), layer(target)).await;
        let (status, body) = send(&app, get("/x", &[])).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{target}");
        assert_eq!(body, error("Rewrite target not allowed"), "{target}");
        assert!(seen.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn ipv6_allow_list_entries_match_the_bracketed_host() {
    let rewrite = UrlRewriteLayer::rules()
        .rule(RewriteRule::new("^/a", "http://[::1]:8080/a"))
        .rule(RewriteRule::new("^/b", "http://[::1]/b"))
        .allow_hosts(["[::1]:8080"])
        .build()
        .unwrap();
    let (app, seen) = stack(json!({}), rewrite).await;
    assert_eq!(send(&app, get("/a", &[])).await.0, StatusCode::OK);
    assert_eq!(last_uri(&seen), "http://[::1]:8080/a");
    let (status, body) = send(&app, get("/b", &[])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, error("Rewrite target not allowed"));
}

#[tokio::test]
async fn relative_target_keeps_the_request_scheme_and_authority() {
    let (app, seen) = stack(json!({}), rules([RewriteRule::new("^/a", "/b")])).await;
    send(&app, get("http://front.example/a?x=1", &[])).await;
    assert_eq!(last_uri(&seen), "http://front.example/b");
}

// --- session ---

#[tokio::test]
async fn outside_session_load_fails_loudly() {
    let seen = Seen::default();
    let app = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(rules([RewriteRule::new("^/a", "/b")]))
            .service(recorder(seen.clone())),
    );
    let (status, body) = send(&app, get("/a", &[])).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, error("Server misconfigured: session layer missing"));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn optional_session_renders_missing_metadata_empty() {
    let seen = Seen::default();
    let rule = RewriteRule::new(r"^/orders/(.*)", "/shards/$tyk_meta.shard/orders/$1").trigger(
        Trigger::any()
            .session_meta("shard", ".*")
            .rewrite_to("/meta"),
    );
    let app = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(SessionLoadLayer::new(MemoryStore::new()).optional())
            .layer(rules([rule]))
            .service(recorder(seen.clone())),
    );
    let request = Request::get("/orders/7").body(Body::empty()).unwrap();
    assert_eq!(send(&app, request).await.0, StatusCode::OK);
    // The empty shard leaves `//`, merged when the target path is normalised.
    assert_eq!(last_uri(&seen), "/shards/orders/7");
}

#[tokio::test]
async fn trigger_values_reach_later_layers() {
    let rule = RewriteRule::new("^/o", "/plain").trigger(
        Trigger::any()
            .header("X-Test", r"hello-(\w+)")
            .rewrite_to("/fired"),
    );
    let inject = InjectHeadersLayer::request()
        .set("x-who", "$tyk_context.trigger-0-X-Test-0-0")
        .build()
        .unwrap();
    let seen = Seen::default();
    let app = BoxCloneService::new(
        ServiceBuilder::new()
            .layer(SessionLoadLayer::new(store(json!({})).await))
            .layer(rules([rule]))
            .layer(inject)
            .service(recorder(seen.clone())),
    );
    send(&app, get("/o", &[("x-test", "hello-world")])).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0.uri, "/fired");
    assert_eq!(seen[0].0.headers["x-who"], "world");
}

// --- configuration ---

#[test]
fn invalid_configurations_are_build_errors() {
    let build = |rule: RewriteRule| UrlRewriteLayer::rules().rule(rule).build().unwrap_err();

    let err = build(RewriteRule::new("(unclosed", "/x"));
    assert!(
        matches!(&err, RewriteConfigError::Regex { at, .. } if at == "rule 0 match_pattern"),
        "{err}"
    );

    let err = build(RewriteRule::new("^/a", "/x${tyk_meta.k"));
    assert_eq!(
        err,
        RewriteConfigError::Template {
            at: "rule 0 rewrite_to".into(),
            source: TemplateError::Unterminated { offset: 2 }
        }
    );

    let err = build(RewriteRule::new("^/a", "ftp://host/x"));
    assert!(matches!(err, RewriteConfigError::Scheme { .. }), "{err}");

    let err = build(RewriteRule::new("^/a(.*)", "http://backend.internal$1"));
    assert_eq!(
        err,
        RewriteConfigError::Template {
            at: "rule 0 rewrite_to".into(),
            source: TemplateError::CaptureInAuthority { offset: 23 }
        }
    );

    let err = build(RewriteRule::new("^/a", "http://backend.internal/a"));
    assert_eq!(
        err,
        RewriteConfigError::AllowListRequired {
            at: "rule 0 rewrite_to".into()
        }
    );
    let empty = UrlRewriteLayer::rules()
        .rule(
            RewriteRule::new("^/a", "/b").trigger(
                Trigger::any()
                    .header("x-a", "1")
                    .rewrite_to("HTTPS://$tyk_meta.h/a"),
            ),
        )
        .allow_hosts(Vec::<String>::new())
        .build()
        .unwrap_err();
    assert_eq!(
        empty,
        RewriteConfigError::AllowListRequired {
            at: "rule 0 trigger 0 rewrite_to".into()
        }
    );
    for entry in [
        "", "h:", "h:x", "h:0", "h:65536", "u@h", "h/x", "[::1", "[]:80", "[::1]80", "h:1:2",
    ] {
        let err = UrlRewriteLayer::rules()
            .rule(RewriteRule::new("^/a", "http://h/a"))
            .allow_hosts([entry])
            .build()
            .unwrap_err();
        assert_eq!(
            err,
            RewriteConfigError::AllowedHost {
                entry: entry.into()
            }
        );
    }

    let err = build(
        RewriteRule::new("^/a", "/x").trigger(Trigger::any().header("X-T", "(").rewrite_to("/y")),
    );
    assert_eq!(
        err.to_string().split(':').next().unwrap(),
        r#"invalid regex at rule 0 trigger 0 header_matches["X-T"]"#
    );

    let err = build(RewriteRule::new("^/a", "/x").trigger(Trigger::all().rewrite_to("/y")));
    assert_eq!(err.to_string(), "rule 0 trigger 0 has no match options");

    let err = build(RewriteRule::new("^/a", "/x").trigger(Trigger::any().header("bad name", "x")));
    assert!(
        matches!(err, RewriteConfigError::HeaderName { .. }),
        "{err}"
    );

    let bad_method: RewriteRule = serde_json::from_value(
        json!({"match_pattern": "^/a", "rewrite_to": "/x", "method": "BAD METHOD"}),
    )
    .unwrap();
    assert!(matches!(
        build(bad_method),
        RewriteConfigError::Method { rule: 0, .. }
    ));
}

#[tokio::test]
async fn tyk_url_rewrite_json_deserialises_and_runs() {
    let rules_json = json!([{
        "path": "/orders/{rest}",
        "method": "GET",
        "match_pattern": "^/orders/(.*)",
        "rewrite_to": "/shards/$tyk_meta.shard/orders/$1",
        "triggers": [{
            "on": "all",
            "options": {
                "header_matches": {"X-Test": {"match_rx": "hello-(\\w+)", "reverse": false}},
                "query_val_matches": null,
                "path_part_matches": {},
                "session_meta_matches": {"shard": {"match_rx": "^eu-"}},
                "request_context_matches": null,
                "payload_matches": {"match_rx": ""}
            },
            "rewrite_to": "/test/$tyk_context.trigger-0-X-Test-0-0/orders/$1"
        }]
    }]);
    let parsed: Vec<RewriteRule> = serde_json::from_value(rules_json).unwrap();
    let rewrite = UrlRewriteLayer::rules()
        .extend_rules(parsed)
        .build()
        .unwrap();
    let (app, seen) = stack(json!({"shard": "eu-2"}), rewrite).await;
    send(&app, get("/orders/7", &[("x-test", "hello-world")])).await;
    assert_eq!(last_uri(&seen), "/test/world/orders/7");
    // The whole match, not the whole value (as in Tyk).
    assert_eq!(context(&seen, "trigger-0-shard").as_deref(), Some("eu-"));
    send(&app, get("/orders/8", &[])).await;
    assert_eq!(last_uri(&seen), "/shards/eu-2/orders/8");
}
