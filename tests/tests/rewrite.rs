//! The tenant_routing example (URL rewrite around the whole router) over real HTTP.

use axum::Router;
use axum::extract::Json;
use http::Uri;
use keycard::prelude::{Keycard, MemoryStore, RewriteRule, Trigger, UrlRewriteLayer};
use keycard::rewrite::RewriteConfigError;
use keycard_examples::tenant_routing;
use keycard_tests::http::{Client, spawn_service};
use serde_json::json;

const ACME: (&str, &str) = ("authorization", "Bearer acme-key");
const GLOBEX: (&str, &str) = ("authorization", "Bearer globex-key");

async fn client(store: MemoryStore) -> Client {
    Client::new(spawn_service(tenant_routing::app(store).unwrap()).await)
}

async fn demo_client() -> Client {
    client(tenant_routing::demo_store().unwrap()).await
}

#[tokio::test]
async fn each_tenant_reaches_its_own_shard() {
    let client = demo_client().await;
    let response = client.get("/orders/42", &[ACME]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"shard": "eu-1", "order": "42"}));

    let response = client.get("/orders/42/items", &[GLOBEX]).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"shard": "us-2", "order": "42/items"})
    );
}

#[tokio::test]
async fn a_query_does_not_change_the_shard_or_order() {
    let client = demo_client().await;
    let response = client.get("/orders/7?expand=items", &[ACME]).await;
    assert_eq!(response.json(), json!({"shard": "eu-1", "order": "7"}));
}

#[tokio::test]
async fn without_a_key_the_session_layer_answers_401() {
    let client = demo_client().await;
    let response = client.get("/orders/42", &[]).await;
    assert_eq!(response.status, 401);
    assert_eq!(
        response.json(),
        json!({"error": "Authorization field missing"})
    );
}

#[tokio::test]
async fn unmatched_paths_are_untouched_and_another_tenants_shard_is_404() {
    let client = demo_client().await;
    // `/shards/...` matches no rule: routed as sent.
    let response = client.get("/shards/eu-1/orders/5", &[ACME]).await;
    assert_eq!(response.json(), json!({"shard": "eu-1", "order": "5"}));
    let response = client.get("/shards/eu-1/orders/5", &[GLOBEX]).await;
    assert_eq!(response.status, 404);
    assert_eq!(response.json(), json!({"error": "Not found"}));
}

#[tokio::test]
async fn dot_dot_metadata_is_500_invalid_rewrite_target() {
    let store = MemoryStore::new();
    tenant_routing::add_tenant(&store, "dots-key", "dots", "..").unwrap();
    let client = client(store).await;
    let response = client
        .get("/orders/7", &[("authorization", "Bearer dots-key")])
        .await;
    assert_eq!(response.status, 500);
    assert_eq!(response.json(), json!({"error": "Invalid rewrite target"}));
}

#[tokio::test]
async fn client_text_naming_a_variable_stays_literal() {
    let client = demo_client().await;
    let response = client.get("/orders/$tyk_meta.tenant", &[ACME]).await;
    assert_eq!(
        response.json(),
        json!({"shard": "eu-1", "order": "$tyk_meta.tenant"})
    );
}

// --- path traversal and normalisation (the shard rewrite, `^/orders/(.*)`) ---

fn invalid_path() -> serde_json::Value {
    json!({"error": "Invalid request path"})
}

/// A dot segment in any spelling would let an upstream that normalises leave the tenant's shard
/// (`/shards/eu-1/orders/../../us-2/orders/1` is `/shards/us-2/orders/1` there): refused before
/// any rule is matched.
#[tokio::test]
async fn dot_segments_in_the_path_are_400_in_every_spelling() {
    let client = demo_client().await;
    for path in [
        "/orders/../../us-2/orders/1",
        "/orders/%2e%2e/%2e%2e/us-2/orders/1",
        "/orders/%2E%2E/%2E%2E/us-2/orders/1",
        "/orders/%2E./%2E./us-2/orders/1",
        "/orders/.%2e/.%2e/us-2/orders/1",
        "/orders/./1",
        "/orders/%2e/1",
        "/orders/1/..",
        r"/orders/..\..\us-2\orders\1",
        "/orders/..%5c..%5cus-2%5corders%5c1",
        "/orders/..%5C..%5Cus-2%5Corders%5C1",
        "/orders/%2e%2e%5c%2e%2e%5cus-2%5corders%5c1",
        "/orders/..%2f..%2fus-2%2forders%2f1",
        "/orders/..%2F..%2Fus-2%2Forders%2F1",
        // Path parameters: Tomcat and Jetty resolve `..;x` as `..`.
        "/orders/..;/..;/us-2/orders/1",
        "/orders/..;jsessionid=1/us-2",
        "/orders/.%3B/1",
    ] {
        let response = client.get(path, &[ACME]).await;
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        assert_eq!(response.json(), invalid_path(), "{path}");
    }
}

#[tokio::test]
async fn malformed_percent_encoding_is_400() {
    let client = demo_client().await;
    for path in ["/orders/%zz", "/orders/7%", "/orders/%4"] {
        let response = client.get(path, &[ACME]).await;
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        assert_eq!(response.json(), invalid_path(), "{path}");
    }
}

/// Dots that are not a whole segment are ordinary characters.
#[tokio::test]
async fn dots_inside_a_segment_are_fine() {
    let client = demo_client().await;
    let response = client.get("/orders/v1.2..3/a%2Eb", &[ACME]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({"shard": "eu-1", "order": "v1.2..3/a.b"})
    );
}

/// The rule matches the normalised path: percent-encoded unreserved characters are decoded
/// first (RFC 3986 §6.2.2.2), so `/%6frders/7` is `/orders/7`.
#[tokio::test]
async fn percent_encoded_path_matches_the_shard_rule() {
    let client = demo_client().await;
    for path in ["/%6frders/7", "/%6Frders/7", "/%6F%72%64%65%72%73/%37"] {
        let response = client.get(path, &[ACME]).await;
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(
            response.json(),
            json!({"shard": "eu-1", "order": "7"}),
            "{path}"
        );
    }
}

/// Changed: `../admin` used to be sent as `/shards/..%2Fadmin/orders/7` (200), which an
/// upstream that decodes `%2F` before it resolves dots takes for `/shards/admin/orders/7`.
#[tokio::test]
async fn metadata_with_a_hidden_dot_segment_is_500_invalid_rewrite_target() {
    for shard in ["../admin", r"..\admin", "x/../../admin", "./x"] {
        let store = MemoryStore::new();
        tenant_routing::add_tenant(&store, "evil-key", "evil", shard).unwrap();
        let client = client(store).await;
        let response = client
            .get("/orders/7", &[("authorization", "Bearer evil-key")])
            .await;
        assert_eq!(response.status, 500, "{shard}");
        assert_eq!(
            response.json(),
            json!({"error": "Invalid rewrite target"}),
            "{shard}"
        );
    }
}

/// Percent signs in metadata are data: `%2e%2e` is sent as `%252e%252e`, never as dots.
#[tokio::test]
async fn encoded_dots_in_metadata_stay_literal() {
    let store = MemoryStore::new();
    tenant_routing::add_tenant(&store, "pct-key", "pct", "%2e%2e").unwrap();
    let client = client(store).await;
    let response = client
        .get("/orders/7", &[("authorization", "Bearer pct-key")])
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"shard": "%2e%2e", "order": "7"}));
}

// --- absolute targets ---

/// A stack whose service answers with the URI it was handed (where a proxy would send the
/// request), behind `rewrite`, for a session with `meta`.
async fn echo_client(meta: serde_json::Value, rewrite: UrlRewriteLayer) -> Client {
    let store = MemoryStore::new();
    store.insert_key("echo-key", meta).unwrap();
    let routes =
        Router::new().fallback(|uri: Uri| async move { Json(json!({"uri": uri.to_string()})) });
    Client::new(spawn_service(Keycard::new(store).rewrite(rewrite).wrap(routes)).await)
}

const ECHO: (&str, &str) = ("authorization", "Bearer echo-key");

#[test]
fn a_capture_in_the_authority_is_a_build_error() {
    for target in [
        "http://backend.internal$1",
        "http://backend.internal:$1/x",
        "https://$1/x",
        "http://$1.internal/x",
    ] {
        let error = UrlRewriteLayer::rules()
            .rule(RewriteRule::new("^/api(.*)", target))
            .allow_hosts(["backend.internal"])
            .build()
            .expect_err(target);
        assert!(
            matches!(error, RewriteConfigError::Template { .. }),
            "{target}: {error}"
        );
        assert!(
            error.to_string().contains("scheme or authority"),
            "{target}: {error}"
        );
    }
}

#[test]
fn an_absolute_target_without_an_allow_list_is_a_build_error() {
    let error = UrlRewriteLayer::rules()
        .rule(RewriteRule::new("^/api/(.*)", "http://backend.internal/$1"))
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "rule 0 rewrite_to is an absolute URL but no host is allowed: list every host it may \
         reach with allow_hosts([\"host\", \"host:port\"])"
    );
    let error = UrlRewriteLayer::rules()
        .rule(
            RewriteRule::new("^/a", "/b").trigger(
                Trigger::any()
                    .header("x-a", "1")
                    .rewrite_to("https://$tyk_meta.upstream/x"),
            ),
        )
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("rule 0 trigger 0 rewrite_to is an absolute URL")
    );
}

#[test]
fn an_allow_list_entry_that_is_not_host_or_host_port_is_a_build_error() {
    for entry in ["h:abc", "h:", "user@h", "h/x", "", "h:70000"] {
        let error = UrlRewriteLayer::rules()
            .rule(RewriteRule::new("^/a", "http://h/a"))
            .allow_hosts([entry])
            .build()
            .expect_err(entry);
        assert!(
            error
                .to_string()
                .starts_with(&format!("invalid allow_hosts entry {entry:?}")),
            "{entry}: {error}"
        );
    }
}

/// Captured text lands after the target's own `/`: it can only ever be path.
#[tokio::test]
async fn captured_text_cannot_change_the_host() {
    let rewrite = UrlRewriteLayer::rules()
        .rule(RewriteRule::new("^/api(.*)", "http://backend.internal/$1"))
        .allow_hosts(["backend.internal"])
        .build()
        .unwrap();
    let client = echo_client(json!({}), rewrite).await;
    for (path, uri) in [
        (
            "/api@evil.example/x",
            "http://backend.internal/@evil.example/x",
        ),
        (
            "/api.evil.example/x",
            "http://backend.internal/.evil.example/x",
        ),
        ("/api:6379/x", "http://backend.internal/:6379/x"),
        (
            "/api//evil.example/x",
            "http://backend.internal/evil.example/x",
        ),
    ] {
        let response = client.get(path, &[ECHO]).await;
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(response.json(), json!({ "uri": uri }), "{path}");
    }
}

/// A target that does not start with `http://` or `https://` as written is a path, whatever
/// its variables or captures render.
#[tokio::test]
async fn captured_or_variable_text_cannot_make_a_target_absolute() {
    let rewrite = UrlRewriteLayer::rules()
        .rule(RewriteRule::new("^/go/(.*)", "$1"))
        .rule(RewriteRule::new(
            "^/meta",
            "$tyk_meta.scheme://evil.example/x",
        ))
        .build()
        .unwrap();
    let client = echo_client(json!({"scheme": "https"}), rewrite).await;
    // The request path's `//` is merged first (`/go/https:/evil.example/x`); either way the
    // capture lands in a path, never in an authority.
    let response = client.get("/go/https://evil.example/x", &[ECHO]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"uri": "/https:/evil.example/x"}));
    let response = client.get("/go//evil.example/x", &[ECHO]).await;
    assert_eq!(response.json(), json!({"uri": "/evil.example/x"}));
    let response = client.get("/meta", &[ECHO]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({"uri": "/https:/evil.example/x"}));
}

#[tokio::test]
async fn metadata_host_outside_the_allow_list_is_500_not_allowed() {
    let rewrite = UrlRewriteLayer::rules()
        .rule(RewriteRule::new(
            "^/latest",
            "http://$tyk_meta.upstream/latest",
        ))
        .allow_hosts(["backend.internal"])
        .build()
        .unwrap();
    for upstream in [
        "169.254.169.254",
        "evil.example",
        "backend.internal.evil.example",
    ] {
        let client = echo_client(json!({ "upstream": upstream }), rewrite.clone()).await;
        let response = client.get("/latest", &[ECHO]).await;
        assert_eq!(response.status, 500, "{upstream}");
        assert_eq!(
            response.json(),
            json!({"error": "Rewrite target not allowed"}),
            "{upstream}"
        );
    }
    // A port may come with the host, as in Tyk (which inserts such a value as it is,
    // gateway/mw_url_rewrite.go `replaceVariables`); host and port are then held to the list:
    // `backend.internal` allows port 80 only. This used to be 500 `Invalid rewrite target`.
    let client = echo_client(
        json!({"upstream": "backend.internal:6379"}),
        rewrite.clone(),
    )
    .await;
    let response = client.get("/latest", &[ECHO]).await;
    assert_eq!(response.status, 500);
    assert_eq!(
        response.json(),
        json!({"error": "Rewrite target not allowed"})
    );
    // Userinfo is not `host[:port]`: percent-encoded, so it is no authority at all.
    let client = echo_client(
        json!({"upstream": "evil.example@backend.internal"}),
        rewrite.clone(),
    )
    .await;
    let response = client.get("/latest", &[ECHO]).await;
    assert_eq!(response.status, 500);
    assert_eq!(response.json(), json!({"error": "Invalid rewrite target"}));
    let client = echo_client(json!({"upstream": "backend.internal"}), rewrite).await;
    let response = client.get("/latest", &[ECHO]).await;
    assert_eq!(
        response.json(),
        json!({"uri": "http://backend.internal/latest"})
    );
}

/// An entry without a port allows the scheme's default port only.
#[tokio::test]
async fn allow_list_entries_match_host_and_port() {
    let rewrite = UrlRewriteLayer::rules()
        .rule(RewriteRule::new(
            "^/http/(\\d+)",
            "http://cache.internal:$tyk_meta.p/$1",
        ))
        .rule(RewriteRule::new("^/plain", "http://cache.internal/plain"))
        .rule(RewriteRule::new("^/tls", "https://cache.internal/tls"))
        .rule(RewriteRule::new("^/alt-default", "http://alt.internal/alt"))
        .rule(RewriteRule::new("^/alt", "http://alt.internal:8080/alt"))
        .allow_hosts(["cache.internal", "ALT.internal:8080"])
        .build()
        .unwrap();
    for port in ["6379", "22", "443", "8080"] {
        let client = echo_client(json!({ "p": port }), rewrite.clone()).await;
        let response = client.get("/http/1", &[ECHO]).await;
        assert_eq!(response.status, 500, "{port}");
        assert_eq!(
            response.json(),
            json!({"error": "Rewrite target not allowed"}),
            "{port}"
        );
    }
    let client = echo_client(json!({"p": "80"}), rewrite.clone()).await;
    let response = client.get("/http/1", &[ECHO]).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({"uri": "http://cache.internal:80/1"})
    );
    for (path, uri) in [
        ("/plain", "http://cache.internal/plain"),
        ("/tls", "https://cache.internal/tls"),
        ("/alt", "http://alt.internal:8080/alt"),
    ] {
        let response = client.get(path, &[ECHO]).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.json(), json!({ "uri": uri }), "{path}");
    }
    let response = client.get("/alt-default", &[ECHO]).await;
    assert_eq!(response.status, 500);
    assert_eq!(
        response.json(),
        json!({"error": "Rewrite target not allowed"})
    );
}
