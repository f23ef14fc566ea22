//! Tyk's own URL rewrite and variable test tables, run against our stack over real HTTP.
//!
//! Every case names the Go test it comes from (`gateway/mw_url_rewrite_test.go` in
//! TykTechnologies/tyk unless said otherwise) and uses its inputs as that table gives them: the
//! rule as a Tyk `url_rewrites` entry (JSON, Tyk's field names), the request, the session
//! metadata. A case asserts Tyk's expected result; where we deliberately differ it asserts our
//! answer and names the divergence (listed in CHANGELOG.md and docs/divergences.md).
//!
//! The stack is `SessionLoadLayer` (optional, so a request without a key has no session), a
//! stage publishing request context values where the Tyk case sets some, the URL rewrite, the
//! request header stage, and a service that answers with the URI and the `x-` headers it was
//! handed.

use axum::Router;
use axum::extract::{Json, Request};
use http::Method;
use keycard::context::ContextValues;
use keycard::headers::InjectHeadersLayer;
use keycard::prelude::{MemoryStore, RewriteRule, SessionLoadLayer, UrlRewriteLayer};
use keycard::rewrite::UrlRewriteBuilder;
use keycard_tests::http::{Client, TestResponse, spawn_service};
use serde_json::{Value, json};
use tower::ServiceBuilder;

const KEY: (&str, &str) = ("authorization", "Bearer tyk-key");

/// The service behind the stack: the URI it was handed and its `x-` headers.
fn echo() -> Router {
    Router::new().fallback(|request: Request| async move {
        let headers: serde_json::Map<String, Value> = request
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-"))
            .map(|(name, value)| {
                (
                    name.to_string(),
                    Value::from(String::from_utf8_lossy(value.as_bytes()).into_owned()),
                )
            })
            .collect();
        Json(json!({"uri": request.uri().to_string(), "headers": headers}))
    })
}

/// One Tyk table case's surroundings.
#[derive(Default)]
struct Setup {
    /// Session metadata; `None`: the request carries no key, so has no session.
    meta: Option<Value>,
    /// Request context values an earlier stage publishes (Tyk's `ctxSetData`).
    context: Vec<(&'static str, &'static str)>,
    /// Request headers `name: template` set after the rewrite.
    headers: Vec<(&'static str, &'static str)>,
}

async fn serve(setup: Setup, rewrite: UrlRewriteLayer) -> (Client, bool) {
    let store = MemoryStore::new();
    let with_key = setup.meta.is_some();
    if let Some(meta) = setup.meta {
        store.insert_key("tyk-key", meta).unwrap();
    }
    let mut inject = InjectHeadersLayer::request();
    for (name, template) in setup.headers {
        inject = inject.set(name, template);
    }
    let context = setup.context;
    let stack = ServiceBuilder::new()
        .layer(SessionLoadLayer::new(store).optional())
        .map_request(move |mut request: Request| {
            for (name, value) in &context {
                ContextValues::insert_into(request.extensions_mut(), *name, *value);
            }
            request
        })
        .layer(rewrite)
        .layer(inject.build().unwrap())
        .service(echo());
    (Client::new(spawn_service(stack).await), with_key)
}

/// `rules` read as Tyk `url_rewrites` entries.
fn tyk_rules(entries: Value) -> UrlRewriteBuilder {
    let rules: Vec<RewriteRule> = serde_json::from_value(entries).unwrap();
    UrlRewriteLayer::rules().extend_rules(rules)
}

async fn send(
    setup: Setup,
    rewrite: UrlRewriteLayer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&'static str>,
) -> TestResponse {
    let (client, with_key) = serve(setup, rewrite).await;
    let mut all = headers.to_vec();
    if with_key {
        all.push(KEY);
    }
    client
        .send(
            method,
            path,
            &all,
            body.map(|b| bytes::Bytes::from_static(b.as_bytes())),
        )
        .await
}

/// The URI the service was handed.
async fn uri_after(setup: Setup, entries: Value, method: Method, path: &str) -> String {
    uri_with(setup, entries, method, path, &[], None).await
}

async fn uri_with(
    setup: Setup,
    entries: Value,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&'static str>,
) -> String {
    let rewrite = tyk_rules(entries).build().unwrap();
    let response = send(setup, rewrite, method, path, headers, body).await;
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.json()["uri"].as_str().unwrap().to_owned()
}

// --- TestRewriter (the `testRewriterData` table) ---

/// `TestRewriter`: every row of `testRewriterData`, as (row name, match_pattern, rewrite_to,
/// request, Tyk's result).
#[tokio::test]
async fn test_rewriter_table() {
    let rows = [
        // Normalisation decodes `%2D` to `-` before any pattern sees the path.
        (
            "Encoded",
            "/test/payment-intents",
            "/change/to/me",
            "/test/payment%2Dintents",
            "/change/to/me",
        ),
        (
            "Straight",
            "/test/straight/rewrite",
            "/change/to/me",
            "/test/straight/rewrite",
            "/change/to/me",
        ),
        // Tyk's result is `change/to/VALUE`, which its proxy joins to the upstream's path as
        // `/change/to/VALUE`: the request line the upstream gets is the same.
        (
            "OneVal",
            "test/val/(.*)",
            "change/to/$1",
            "/test/val/VALUE",
            "/change/to/VALUE",
        ),
        (
            "OneVal Special Case",
            "test/val/(.*)",
            "/test/val/$1",
            "/test/val/VALUE%2C",
            "/test/val/VALUE%2C",
        ),
        (
            "OneVal Special Case With Query Param Encoded",
            "test/val/(.*)",
            "/test/val/$1",
            "/test/val/VALUE%2C?a=te%2Cst",
            "/test/val/VALUE%2C?a=te%2Cst",
        ),
        (
            "ThreeVals",
            "/test/val/(.*)/space/(.*)/and/then/(.*)",
            "/change/to/$1/$2/$3",
            "/test/val/ONE/space/TWO/and/then/THREE",
            "/change/to/ONE/TWO/THREE",
        ),
        (
            "Reverse",
            "/test/val/(.*)/space/(.*)/and/then/(.*)",
            "/change/to/$3/$2/$1",
            "/test/val/ONE/space/TWO/and/then/THREE",
            "/change/to/THREE/TWO/ONE",
        ),
        (
            "Missing",
            "/test/val/(.*)/space/(.*)/and/then/(.*)",
            "/change/to/$1/$2",
            "/test/val/ONE/space/TWO/and/then/THREE",
            "/change/to/ONE/TWO",
        ),
        (
            "MissingAgain",
            "/test/val/(.*)/space/(.*)/and/then/(.*)",
            "/change/to/$3/$1",
            "/test/val/ONE/space/TWO/and/then/THREE",
            "/change/to/THREE/ONE",
        ),
        (
            "QS",
            "(.*)",
            "$1&newParam=that",
            "/foo/bar?param1=this",
            "/foo/bar?param1=this&newParam=that",
        ),
        (
            "QS2",
            "/test/val/(.*)/space/(.*)/and/then(.*)",
            "/change/to/$2/$1$3",
            "/test/val/ONE/space/TWO/and/then?param1=this",
            "/change/to/TWO/ONE?param1=this",
        ),
    ];
    for (row, pattern, to, path, want) in rows {
        let entries = json!([{"match_pattern": pattern, "rewrite_to": to}]);
        let uri = uri_after(Setup::default(), entries, Method::GET, path).await;
        assert_eq!(uri, want, "TestRewriter/{row}");
    }
}

/// `TestRewriter/MatchEncodedChars`: Tyk matches `^(.+)%2[Dd](.+)$` against the path as sent,
/// `/test/payment%2Dintents`, and rewrites. **Divergence** (patterns see the normalised path):
/// every stage and the upstream see one path, in which an escaped unreserved character is
/// decoded (`%2D` is `-`), so a pattern written for the escape never matches and the request
/// goes on untouched, as `/test/payment-intents`.
#[tokio::test]
async fn test_rewriter_match_encoded_chars_diverges() {
    let entries = json!([{"match_pattern": "^(.+)%2[Dd](.+)$", "rewrite_to": "/change/to/me"}]);
    let uri = uri_after(
        Setup::default(),
        entries,
        Method::GET,
        "/test/payment%2Dintents",
    )
    .await;
    assert_eq!(uri, "/test/payment-intents");
}

// --- the percent-decoded retry (Tyk's `urlRewrite`, TT-9327) ---

/// Tyk retries a pattern that does not match on the percent-decoded path (`urlRewrite` in
/// gateway/mw_url_rewrite.go, `containsEscapedChars` / `url.PathUnescape`); so do we.
#[tokio::test]
async fn a_pattern_that_fails_is_retried_on_the_decoded_path() {
    let entries = json!([
        {"match_pattern": "^/users/john doe$", "rewrite_to": "/found/john"},
        {"match_pattern": "^/docs/([^/]+)/([^/?]+)", "rewrite_to": "/d/$2/$1"},
    ]);
    let uri = uri_after(
        Setup::default(),
        entries.clone(),
        Method::GET,
        "/users/john%20doe",
    )
    .await;
    assert_eq!(uri, "/found/john");
    // `a%2Fb` is one segment as sent, two once decoded: the decoded text matches, and the
    // groups are read back from the request's own text.
    let uri = uri_after(Setup::default(), entries, Method::GET, "/docs/a%2Fb").await;
    assert_eq!(uri, "/d/b/a");
}

/// What lands in the target is the request's own (normalised) text, never the decoded one:
/// **divergence** from Tyk, which inserts the decoded groups, so `/f/%252e%252e/admin` becomes
/// `/files/%2e%2e/admin` there, a `..` for an upstream that decodes once more. Here the group
/// keeps its escapes, and the dot-segment refusal and the normalised-path invariant hold.
#[tokio::test]
async fn a_decoded_match_inserts_the_request_text_not_the_decoded_text() {
    let entries = json!([{"match_pattern": "^/f/(%2e%2e)/(.*)$", "rewrite_to": "/files/$1/$2"}]);
    let uri = uri_after(
        Setup::default(),
        entries,
        Method::GET,
        "/f/%252e%252e/admin",
    )
    .await;
    assert_eq!(uri, "/files/%252e%252e/admin");
    // A dot segment hidden behind an escape is refused before any pattern runs, decoded or not.
    let rewrite = tyk_rules(json!([{"match_pattern": "^/f/(.*)$", "rewrite_to": "/files/$1"}]))
        .build()
        .unwrap();
    let response = send(
        Setup::default(),
        rewrite,
        Method::GET,
        "/f/%2e%2e%2Fadmin",
        &[],
        None,
    )
    .await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json(), json!({"error": "Invalid request path"}));
}

// --- TestURLRewriteCaseSensitivity: the endpoint `path` ---

/// `TestURLRewriteCaseSensitivity`: an entry's `path` (and `method`) decide whether it applies;
/// `path` is case-sensitive (Tyk's default).
#[tokio::test]
async fn test_url_rewrite_case_sensitivity() {
    for (row, relative_path, requested_path, want) in [
        (
            "Relative path lower, requested path lower",
            "/get",
            "/get",
            "/xyz",
        ),
        (
            "Relative path lower, requested path upper",
            "/get",
            "/Get",
            "/Get",
        ),
        (
            "Relative path upper, requested path lower",
            "/Get",
            "/get",
            "/get",
        ),
        (
            "Relative path upper, requested path upper",
            "/Get",
            "/Get",
            "/xyz",
        ),
    ] {
        let entries = json!([{
            "path": relative_path,
            "method": "GET",
            "match_pattern": requested_path,
            "rewrite_to": "/xyz",
        }]);
        let uri = uri_after(Setup::default(), entries, Method::GET, requested_path).await;
        assert_eq!(uri, want, "TestURLRewriteCaseSensitivity/{row}");
    }
}

/// With Tyk's `ignore_endpoint_case` the `path` matches in any case (`generateRegex` in
/// gateway/api_definition.go prefixes `(?i)`); `match_pattern` stays case-sensitive.
#[tokio::test]
async fn ignore_endpoint_case_makes_the_path_case_insensitive() {
    for (relative_path, requested_path, want) in [
        ("/get", "/Get", "/xyz"),
        ("/Get", "/get", "/xyz"),
        ("/get", "/get", "/xyz"),
    ] {
        let rewrite = tyk_rules(json!([{
            "path": relative_path,
            "method": "GET",
            "match_pattern": requested_path,
            "rewrite_to": "/xyz",
        }]))
        .ignore_endpoint_case(true)
        .build()
        .unwrap();
        let response = send(
            Setup::default(),
            rewrite,
            Method::GET,
            requested_path,
            &[],
            None,
        )
        .await;
        assert_eq!(
            response.json()["uri"],
            want,
            "{relative_path} {requested_path}"
        );
    }
    // The pattern itself is still matched as written.
    let rewrite = tyk_rules(json!([{
        "path": "/get", "method": "GET", "match_pattern": "^/get$", "rewrite_to": "/xyz",
    }]))
    .ignore_endpoint_case(true)
    .build()
    .unwrap();
    let response = send(Setup::default(), rewrite, Method::GET, "/GET", &[], None).await;
    assert_eq!(response.json()["uri"], "/GET");
}

/// The first entry whose method and path fit takes the request, even when its pattern then does
/// not match (`FindSpecMatchesStatus` returns one entry; `urlRewrite` runs it alone). `path`
/// has Tyk's endpoint syntax: `{id}` is one segment, and the regex is unanchored.
#[tokio::test]
async fn the_first_endpoint_that_fits_decides() {
    let entries = json!([
        {"path": "/orders/{id}", "method": "GET", "match_pattern": "^/orders/(\\d+)$",
         "rewrite_to": "/v2/orders/$1"},
        {"path": "/orders/{id}", "method": "GET", "match_pattern": "^/orders/(.*)$",
         "rewrite_to": "/fallback/$1"},
        {"path": "/orders/{id}", "method": "POST", "match_pattern": "^/orders/(.*)$",
         "rewrite_to": "/posted/$1"},
    ]);
    let uri = uri_after(Setup::default(), entries.clone(), Method::GET, "/orders/7").await;
    assert_eq!(uri, "/v2/orders/7");
    // The first entry fits `/orders/abc` by path and method: it decides, and does not rewrite.
    let uri = uri_after(
        Setup::default(),
        entries.clone(),
        Method::GET,
        "/orders/abc",
    )
    .await;
    assert_eq!(uri, "/orders/abc");
    // Another method: the first two entries do not fit.
    let uri = uri_after(
        Setup::default(),
        entries.clone(),
        Method::POST,
        "/orders/abc",
    )
    .await;
    assert_eq!(uri, "/posted/abc");
    // Unanchored, as Tyk's endpoint regexes are (prefix and suffix matching off by default).
    let uri = uri_after(Setup::default(), entries, Method::GET, "/api/orders/9").await;
    assert_eq!(uri, "/api/orders/9");
}

#[test]
fn an_endpoint_path_that_is_not_a_regex_is_a_build_error() {
    let error = tyk_rules(
        json!([{"path": "/a(", "method": "GET", "match_pattern": "a",
        "rewrite_to": "/b"}]),
    )
    .build()
    .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid regex at rule 0 path:"),
        "{error}"
    );
}

// --- TestRewriterTriggers ---

/// One `TestRewriterTriggers` row: its name, the request, and the rule (pattern
/// `match_pattern`, default `rewrite_to` `/change/to/me/ignore`, the triggers as Tyk JSON).
struct TriggerRow {
    name: &'static str,
    method: Method,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
    setup: fn() -> Setup,
    triggers: Value,
    want: &'static str,
}

fn rx(pattern: &str) -> Value {
    json!({"match_rx": pattern, "reverse": false})
}

fn not_rx(pattern: &str) -> Value {
    json!({"match_rx": pattern, "reverse": true})
}

fn trigger(on: &str, options: Value, to: &str) -> Value {
    json!({"on": on, "options": options, "rewrite_to": to})
}

fn session() -> Setup {
    Setup {
        meta: Some(json!({"rewrite": "bar-baz", "somevar": "someval"})),
        ..Setup::default()
    }
}

fn trigger_rows() -> Vec<TriggerRow> {
    let get = |name, path, headers, triggers, want| TriggerRow {
        name,
        method: Method::GET,
        path,
        headers,
        body: None,
        setup: Setup::default,
        triggers,
        want,
    };
    let post = |name, headers, triggers, want| TriggerRow {
        name,
        method: Method::POST,
        path: "/test/pl/rewrite",
        headers,
        body: Some(r#"{"foo":"bar"}"#),
        setup: Setup::default,
        triggers,
        want,
    };
    let to = "/change/to/me/$tyk_context.trigger-0-X-Test-0";
    let straight = "/test/straight/rewrite";
    let query = "/test/query/rewrite?x_test=foo";
    vec![
        get(
            "Header Single",
            straight,
            &[("x-test", "hello")],
            json!([trigger(
                "any",
                json!({"header_matches": {"x-test": rx("hello")}}),
                to
            )]),
            "/change/to/me/hello",
        ),
        get(
            "Header Single Group",
            straight,
            &[("x-test", "hello-world")],
            json!([trigger(
                "any",
                json!({"header_matches": {"x-test": rx("hello-(\\w+)")}}),
                "/change/to/me/$tyk_context.trigger-0-X-Test-0-0"
            )]),
            "/change/to/me/world",
        ),
        get(
            "Header Multi Any",
            straight,
            &[("x-test-Two", "bar")],
            json!([trigger(
                "any",
                json!({"header_matches": {"x-test": rx("hello"), "x-test-Two": rx("bar")}}),
                "/change/to/me/$tyk_context.trigger-0-X-Test-Two-0"
            )]),
            "/change/to/me/bar",
        ),
        get(
            "Header Multi All Fail",
            straight,
            &[("x-test-Two", "bar")],
            json!([trigger(
                "all",
                json!({"header_matches": {"x-test": rx("hello"), "x-test-Two": rx("bar")}}),
                "/change/to/me/$tyk_context.trigger-0-X-Test-Two-0"
            )]),
            "/change/to/me/ignore",
        ),
        get(
            "Header Multi All Pass",
            straight,
            &[("x-test-Two", "bar"), ("x-test", "hello")],
            json!([trigger(
                "all",
                json!({"header_matches": {"x-test": rx("hello"), "x-test-Two": rx("bar")}}),
                to
            )]),
            "/change/to/me/hello",
        ),
        get(
            "Header Many Multi Any Pass",
            straight,
            &[("y-test", "baz"), ("y-test-Two", "qux")],
            json!([
                trigger(
                    "any",
                    json!({"header_matches": {"x-test": rx("hello"), "x-test-Two": rx("bar")}}),
                    to
                ),
                trigger(
                    "any",
                    json!({"header_matches": {"y-test": rx("baz"), "y-test-Two": rx("fnee")}}),
                    "/change/to/me/$tyk_context.trigger-1-Y-Test-0"
                ),
            ]),
            "/change/to/me/baz",
        ),
        get(
            "Header Reverse Logic Any Pass",
            straight,
            &[("x-test", "hello"), ("x-test-Two", "world")],
            json!([trigger(
                "any",
                json!({"header_matches": {"x-test": rx("hello"), "x-test-Two": not_rx("w.*")}}),
                to
            )]),
            "/change/to/me/hello",
        ),
        get(
            "Header Reverse Logic All Fail",
            straight,
            &[("x-test", "hello"), ("x-test-Two", "world")],
            json!([trigger(
                "all",
                json!({"header_matches": {"x-test": rx("hello"), "x-test-Two": not_rx("w.*")}}),
                to
            )]),
            "/change/to/me/ignore",
        ),
        get(
            "Query Single",
            query,
            &[],
            json!([trigger(
                "any",
                json!({"query_val_matches": {"x_test": rx("foo")}}),
                "/change/to/me/$tyk_context.trigger-0-x_test-0"
            )]),
            "/change/to/me/foo",
        ),
        get(
            "Query Single Group",
            "/test/query/rewrite?x_test=foo-bar",
            &[],
            json!([trigger(
                "any",
                json!({"query_val_matches": {"x_test": rx("foo-(\\w+)")}}),
                "/change/to/me/$tyk_context.trigger-0-x_test-0-0"
            )]),
            "/change/to/me/bar",
        ),
        get(
            "Query Multi All",
            "/test/query/rewrite?x_test=foo&y_test=bar",
            &[],
            json!([trigger(
                "all",
                json!({"query_val_matches": {"x_test": rx("foo"), "y_test": rx("bar")}}),
                "/change/to/me/$tyk_context.trigger-0-y_test-0"
            )]),
            "/change/to/me/bar",
        ),
        get(
            "Multi Multi Type Any",
            query,
            &[("y-test", "qux")],
            json!([trigger(
                "any",
                json!({"query_val_matches": {"x_test": rx("foo")},
                       "header_matches": {"y-test": rx("bar")}}),
                "/change/to/me/$tyk_context.trigger-0-x_test-0"
            )]),
            "/change/to/me/foo",
        ),
        get(
            "Multi Multi Type All",
            query,
            &[("y-test", "bar")],
            json!([trigger(
                "all",
                json!({"query_val_matches": {"x_test": rx("foo")},
                       "header_matches": {"y-test": rx("bar")}}),
                "/change/to/me/$tyk_context.trigger-0-Y-Test-0"
            )]),
            "/change/to/me/bar",
        ),
        get(
            "Multi Multi Type All Fail",
            query,
            &[("y-test", "bar"), ("z-test", "fnee")],
            json!([trigger(
                "all",
                json!({"query_val_matches": {"x_test": rx("foo")},
                       "header_matches": {"y-test": rx("bar"), "z-test": rx("baz")}}),
                "/change/to/me/$tyk_context.trigger-0-Y-Test-0"
            )]),
            "/change/to/me/ignore",
        ),
        get(
            "Multi Multi Type Reverse Logic All Fail (on: all)",
            query,
            &[("y-test", "bar"), ("z-test", "baz")],
            json!([trigger(
                "all",
                json!({"query_val_matches": {"x_test": rx("foo")},
                       "header_matches": {"y-test": rx("bar"), "z-test": not_rx("baz")}}),
                "/change/to/me/$tyk_context.trigger-0-Y-Test-0"
            )]),
            "/change/to/me/ignore",
        ),
        get(
            "Multi Multi Type Reverse Logic All Fail (on: any)",
            query,
            &[("y-test", "bar"), ("z-test", "baz")],
            json!([trigger(
                "any",
                json!({"query_val_matches": {"x_test": rx("foo")},
                       "header_matches": {"y-test": rx("bar"), "z-test": not_rx("baz")}}),
                "/change/to/me/$tyk_context.trigger-0-Y-Test-0"
            )]),
            "/change/to/me/bar",
        ),
        post(
            "Payload Single",
            &[],
            json!([trigger(
                "any",
                json!({"payload_matches": rx("bar")}),
                "/change/to/me/$tyk_context.trigger-0-payload"
            )]),
            "/change/to/me/bar",
        ),
        TriggerRow {
            body: Some(r#"{"foo":"barxxx", "fooble":"baryyy"}"#),
            ..post(
                "Payload Multiple Match",
                &[],
                json!([trigger(
                    "any",
                    json!({"payload_matches": rx("bar\\w*")}),
                    "/change/to/me/$tyk_context.trigger-0-payload-0/$tyk_context.trigger-0-payload-1"
                )]),
                "/change/to/me/barxxx/baryyy",
            )
        },
        TriggerRow {
            body: Some(r#"{"foo":"barxxx", "fooble":"baryyy"}"#),
            ..post(
                "Payload Multiple Match Groups",
                &[],
                json!([trigger(
                    "any",
                    json!({"payload_matches": rx("bar(\\w*)")}),
                    "/change/to/me/$tyk_context.trigger-0-payload-0-0/$tyk_context.trigger-0-payload-1-0"
                )]),
                "/change/to/me/xxx/yyy",
            )
        },
        post(
            "Multi Type All",
            &[("x-test", "apple")],
            json!([trigger(
                "all",
                json!({"payload_matches": rx("bar"), "header_matches": {"x-test": rx("apple")}}),
                "/change/to/me/$tyk_context.trigger-0-payload-0/$tyk_context.trigger-0-X-Test-0"
            )]),
            "/change/to/me/bar/apple",
        ),
        post(
            "Multi Multi Type Reverse Logic Any 1",
            &[("x-test", "apple")],
            json!([trigger(
                "any",
                json!({"payload_matches": rx("bar"), "header_matches": {"x-test": not_rx("apple")}}),
                "/change/to/me/$tyk_context.trigger-0-payload-0/$tyk_context.trigger-0-X-Test-0"
            )]),
            "/change/to/me/bar/",
        ),
        // Tyk: `/change/to/me//apple`. **Divergence** (runs of `/` merged): a rewritten path is
        // normalised like a request path, so the empty value's `//` is one `/`.
        post(
            "Multi Multi Type Reverse Logic Any 2",
            &[("x-test", "apple")],
            json!([trigger(
                "any",
                json!({"payload_matches": not_rx("bar"), "header_matches": {"x-test": rx("apple")}}),
                "/change/to/me/$tyk_context.trigger-0-payload-0/$tyk_context.trigger-0-X-Test-0"
            )]),
            "/change/to/me/apple",
        ),
        // The same inputs as "Any 1" in Tyk's table. ("Payload Multiple Match Groups" is in
        // Tyk's table twice, with the same inputs; it is here once.)
        post(
            "Multi Multi Type Reverse Logic Any 3",
            &[("x-test", "apple")],
            json!([trigger(
                "any",
                json!({"payload_matches": rx("bar"), "header_matches": {"x-test": not_rx("apple")}}),
                "/change/to/me/$tyk_context.trigger-0-payload-0/$tyk_context.trigger-0-X-Test-0"
            )]),
            "/change/to/me/bar/",
        ),
        get(
            "PathPart Single",
            "/test/foo/rewrite",
            &[],
            json!([trigger(
                "any",
                json!({"path_part_matches": {"pathpart": rx("foo")}}),
                "/change/to/me/$tyk_context.trigger-0-pathpart-0"
            )]),
            "/change/to/me/foo",
        ),
        get(
            "PathPart Single Group",
            "/test/foobar/rewrite",
            &[],
            json!([trigger(
                "any",
                json!({"path_part_matches": {"pathpart": rx("foo(\\w+)")}}),
                "/change/to/me/$tyk_context.trigger-0-pathpart-0-0"
            )]),
            "/change/to/me/bar",
        ),
        get(
            "PathPart MoreParts",
            "/test/foo/rewrite/foo",
            &[],
            json!([trigger(
                "any",
                json!({"path_part_matches": {"pathpart": rx("foo")}}),
                "/change/to/me/$tyk_context.trigger-0-pathpart-0/biz/$tyk_context.trigger-0-pathpart-1"
            )]),
            "/change/to/me/foo/biz/foo",
        ),
        TriggerRow {
            setup: session,
            ..get(
                "Meta Simple",
                "/test/foo/rewrite",
                &[],
                json!([trigger(
                    "any",
                    json!({"session_meta_matches": {"rewrite": rx("bar")}}),
                    "/change/to/me/$tyk_context.trigger-0-rewrite"
                )]),
                "/change/to/me/bar",
            )
        },
        TriggerRow {
            setup: session,
            ..get(
                "Meta Simple Group",
                "/test/foo/rewrite",
                &[],
                json!([trigger(
                    "any",
                    json!({"session_meta_matches": {"rewrite": rx("bar-(\\w+)")}}),
                    "/change/to/me/$tyk_context.trigger-0-rewrite-0"
                )]),
                "/change/to/me/baz",
            )
        },
        TriggerRow {
            setup: session,
            ..get(
                "Meta Value from Session",
                "/test/foo/rewrite",
                &[],
                json!([trigger(
                    "any",
                    json!({"session_meta_matches": {"rewrite": rx("bar")}}),
                    "/change/to/me/$tyk_context.trigger-0-rewrite/$tyk_meta.somevar"
                )]),
                "/change/to/me/bar/someval",
            )
        },
        TriggerRow {
            setup: || Setup {
                context: vec![("rewrite", "bar-baz")],
                ..Setup::default()
            },
            ..get(
                "Request context",
                "/test/foo/rewrite",
                &[],
                json!([trigger(
                    "any",
                    json!({"request_context_matches": {"rewrite": rx("bar")}}),
                    "/change/to/me/$tyk_context.trigger-0-rewrite"
                )]),
                "/change/to/me/bar",
            )
        },
        // Tyk: `/change/to/me/foo//`. **Divergence** (runs of `/` merged), as above.
        TriggerRow {
            setup: || Setup {
                meta: Some(json!({"rewrite": "bar-baz"})),
                ..Setup::default()
            },
            ..get(
                "Variable not found",
                "/test/foo/rewrite",
                &[],
                json!([trigger(
                    "any",
                    json!({"path_part_matches": {"pathpart": rx("foo")}}),
                    "/change/to/me/$tyk_context.trigger-0-pathpart-0/$tyk_context.nonexistent/$tyk_meta.nonexistent"
                )]),
                "/change/to/me/foo/",
            )
        },
        get(
            "Session not found",
            "/test/foo/rewrite",
            &[],
            json!([trigger(
                "any",
                json!({"path_part_matches": {"pathpart": rx("foo")}}),
                "/change/to/me/$tyk_context.trigger-0-pathpart-0/$tyk_meta.nonexistent"
            )]),
            "/change/to/me/foo/",
        ),
    ]
}

/// `TestRewriterTriggers`: every row, the rule's pattern being the row's path without its
/// query (as in the Go table).
#[tokio::test]
async fn test_rewriter_triggers_table() {
    for row in trigger_rows() {
        let pattern = row.path.split('?').next().unwrap();
        let entries = json!([{
            "match_pattern": pattern,
            "rewrite_to": "/change/to/me/ignore",
            "triggers": row.triggers,
        }]);
        let uri = uri_with(
            (row.setup)(),
            entries,
            row.method,
            row.path,
            row.headers,
            row.body,
        )
        .await;
        assert_eq!(uri, row.want, "TestRewriterTriggers/{}", row.name);
    }
}

// --- arrays (TestValToStr) ---

/// `TestValToStr`: an array renders each element (strings as they are, numbers in decimal),
/// query-escaped, joined with `,`; in a header (Tyk's `ReplaceTykVariables(.., false)`) that is
/// the value, in a URL path Tyk query-escapes the joined text once more.
#[tokio::test]
async fn test_val_to_str_arrays_in_headers_and_urls() {
    let meta = json!({
        "list": ["abc", 456, 12.22, 123452342.0, "abc,def", 13],
        "gappy": ["", "a b", null, "c"],
    });
    let setup = Setup {
        meta: Some(meta),
        headers: vec![("x-list", "$tyk_meta.list"), ("x-gappy", "$tyk_meta.gappy")],
        ..Setup::default()
    };
    let rewrite = tyk_rules(json!([{
        "match_pattern": "^/lists$",
        "rewrite_to": "/l/$tyk_meta.list/$tyk_meta.gappy?g=$tyk_meta.gappy",
    }]))
    .build()
    .unwrap();
    let response = send(setup, rewrite, Method::GET, "/lists", &[], None).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.json();
    assert_eq!(
        seen["headers"]["x-list"],
        "abc,456,12.22,123452342,abc%2Cdef,13"
    );
    // Empty elements (and null) are dropped.
    assert_eq!(seen["headers"]["x-gappy"], "a+b,c");
    assert_eq!(
        seen["uri"],
        "/l/abc%2C456%2C12.22%2C123452342%2Cabc%252Cdef%2C13/a%2Bb%2Cc?g=a%2Bb%2Cc"
    );
}

// --- values that start with `http`: the per-key upstream ---

/// Tyk leaves a value that starts with `http` unescaped (`replaceVariables`: "If contains url
/// with domain"), so `$tyk_meta.upstream/orders` sends each key to its own upstream. Here the
/// value must be `scheme://host[:port][/path]` and its host and port must be in `allow_hosts`.
#[tokio::test]
async fn a_per_key_upstream_reaches_an_allowed_host() {
    let rewrite = || {
        tyk_rules(json!([
            {"match_pattern": "^/orders$", "rewrite_to": "$tyk_meta.upstream/orders"},
            {"match_pattern": "^/items/(\\d+)$", "rewrite_to": "http://$tyk_meta.host/items/$1"},
        ]))
        .allow_hosts(["orders-eu.internal:8080", "orders-us.internal"])
        .build()
        .unwrap()
    };
    for (meta, path, want) in [
        (
            json!({"upstream": "http://orders-eu.internal:8080"}),
            "/orders",
            "http://orders-eu.internal:8080/orders",
        ),
        (
            json!({"upstream": "https://orders-us.internal:443/v2"}),
            "/orders",
            "https://orders-us.internal:443/v2/orders",
        ),
        (
            json!({"host": "orders-eu.internal:8080"}),
            "/items/7",
            "http://orders-eu.internal:8080/items/7",
        ),
        (
            json!({"host": "orders-us.internal"}),
            "/items/7",
            "http://orders-us.internal/items/7",
        ),
    ] {
        let setup = Setup {
            meta: Some(meta.clone()),
            ..Setup::default()
        };
        let response = send(setup, rewrite(), Method::GET, path, &[], None).await;
        assert_eq!(response.status, 200, "{meta}: {}", response.text());
        assert_eq!(response.json()["uri"], want, "{meta}");
    }
}

/// A key whose metadata names a host or port outside the allow-list is refused with the answer
/// an absolute target outside the list gets (500: a configuration or data error, not the
/// client's), and a value that is not a plain upstream with the one an invalid target gets.
#[tokio::test]
async fn a_per_key_upstream_outside_the_allow_list_is_refused() {
    let rewrite = || {
        tyk_rules(json!([
            {"match_pattern": "^/orders$", "rewrite_to": "$tyk_meta.upstream/orders"},
            {"match_pattern": "^/items$", "rewrite_to": "http://$tyk_meta.host/items"},
            {"match_pattern": "^/grab/(.*)$", "rewrite_to": "$tyk_meta.upstream$1"},
        ]))
        .allow_hosts(["orders-eu.internal:8080"])
        .build()
        .unwrap()
    };
    let not_allowed = json!({"error": "Rewrite target not allowed"});
    let invalid = json!({"error": "Invalid rewrite target"});
    for (meta, path, want) in [
        (
            json!({"upstream": "http://169.254.169.254"}),
            "/orders",
            &not_allowed,
        ),
        (
            json!({"upstream": "http://orders-eu.internal"}),
            "/orders",
            &not_allowed,
        ),
        (
            json!({"upstream": "http://orders-eu.internal:6379"}),
            "/orders",
            &not_allowed,
        ),
        (
            json!({"host": "orders-eu.internal:6379"}),
            "/items",
            &not_allowed,
        ),
        (json!({"host": "evil.example:8080"}), "/items", &not_allowed),
        // Userinfo, a query, a dot segment: no upstream at all.
        (
            json!({"upstream": "http://evil.example@orders-eu.internal:8080"}),
            "/orders",
            &invalid,
        ),
        (
            json!({"upstream": "http://orders-eu.internal:8080?x=1"}),
            "/orders",
            &invalid,
        ),
        (
            json!({"upstream": "http://orders-eu.internal:8080/a/../../admin"}),
            "/orders",
            &invalid,
        ),
        (
            json!({"host": "evil.example@orders-eu.internal:8080"}),
            "/items",
            &invalid,
        ),
        // A capture right after the upstream would be in its authority: client text never
        // picks the host or port.
        (
            json!({"upstream": "http://orders-eu.internal"}),
            "/grab/:8080/x",
            &invalid,
        ),
    ] {
        let setup = Setup {
            meta: Some(meta.clone()),
            ..Setup::default()
        };
        let response = send(setup, rewrite(), Method::GET, path, &[], None).await;
        assert_eq!(response.status, 500, "{meta}: {}", response.text());
        assert_eq!(&response.json(), want, "{meta}");
    }
}

/// Without `allow_hosts`, no per-key upstream is allowed; a value that is not a URL is a path
/// segment as ever (Tyk escapes it too).
#[tokio::test]
async fn without_an_allow_list_a_per_key_upstream_is_refused() {
    let rewrite = || {
        tyk_rules(
            json!([{"match_pattern": "^/orders$", "rewrite_to": "$tyk_meta.upstream/orders"}]),
        )
        .build()
        .unwrap()
    };
    let setup = Setup {
        meta: Some(json!({"upstream": "http://orders-eu.internal:8080"})),
        ..Setup::default()
    };
    let response = send(setup, rewrite(), Method::GET, "/orders", &[], None).await;
    assert_eq!(response.status, 500);
    assert_eq!(
        response.json(),
        json!({"error": "Rewrite target not allowed"})
    );
    let setup = Setup {
        meta: Some(json!({"upstream": "eu shard"})),
        ..Setup::default()
    };
    let response = send(setup, rewrite(), Method::GET, "/orders", &[], None).await;
    assert_eq!(response.json()["uri"], "/eu%20shard/orders");
}

/// **Divergence** (URL values stay escaped outside the upstream position): Tyk inserts any value
/// that starts with `http` as it is, wherever it stands; here only a leading `$tyk_meta` value
/// is an upstream, and a URL anywhere else is one encoded path segment (or form-encoded in the
/// query), so it cannot add segments, a query or a host.
#[tokio::test]
async fn a_url_value_elsewhere_stays_escaped() {
    let setup = Setup {
        meta: Some(json!({"next": "http://evil.example/x?y=1"})),
        ..Setup::default()
    };
    let rewrite = tyk_rules(json!([{
        "match_pattern": "^/go$",
        "rewrite_to": "/redirect/$tyk_meta.next?to=$tyk_meta.next",
    }]))
    .build()
    .unwrap();
    let response = send(setup, rewrite, Method::GET, "/go", &[], None).await;
    assert_eq!(
        response.json()["uri"],
        "/redirect/http%3A%2F%2Fevil.example%2Fx%3Fy%3D1?to=http%3A%2F%2Fevil.example%2Fx%3Fy%3D1"
    );
}

// --- space in a path ---

/// **Divergence** (space is `%20` in a path): Tyk query-escapes every value
/// (`url.QueryEscape`), so a space becomes `+` even in the path, where `+` is a plus sign. Here
/// a value in the path is percent-encoded (`%20`); in the query it is form-encoded (`+`), as in
/// Tyk.
#[tokio::test]
async fn a_space_is_percent_20_in_the_path_and_plus_in_the_query() {
    let setup = Setup {
        meta: Some(json!({"name": "john doe"})),
        headers: vec![("x-name", "$tyk_meta.name")],
        ..Setup::default()
    };
    let rewrite = tyk_rules(json!([{
        "match_pattern": "^/me$",
        "rewrite_to": "/users/$tyk_meta.name?n=$tyk_meta.name",
    }]))
    .build()
    .unwrap();
    let response = send(setup, rewrite, Method::GET, "/me", &[], None).await;
    let seen = response.json();
    assert_eq!(seen["uri"], "/users/john%20doe?n=john+doe");
    // Headers are not escaped, in Tyk or here.
    assert_eq!(seen["headers"]["x-name"], "john doe");
}
