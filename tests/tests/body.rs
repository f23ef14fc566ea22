//! Body transforms (`docs/body.md`) over real HTTP, through the `body_enrichment` example stack.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::routing::{get, post};
use bytes::Bytes;
use http::Method;
use keycard::prelude::MemoryStore;
use keycard_examples::body_enrichment::{self, BODY_LIMIT};
use keycard_examples::quickstart::{DEFAULT_DEMO_KEY, demo_store};
use keycard_tests::http::{Client, TestResponse, spawn};
use serde_json::{Value, json};

const AUTH: (&str, &str) = ("authorization", "Bearer demo-key");
const JSON: (&str, &str) = ("content-type", "application/json");

async fn store() -> MemoryStore {
    demo_store(DEFAULT_DEMO_KEY).unwrap()
}

async fn example_client() -> Client {
    Client::new(spawn(body_enrichment::app(store().await).unwrap()).await)
}

/// The example's layers around `routes`.
async fn client_around(routes: Router) -> Client {
    Client::new(spawn(body_enrichment::wrap(routes, store().await).unwrap()).await)
}

async fn post_orders(client: &Client, body: impl Into<Bytes>) -> TestResponse {
    client
        .send(Method::POST, "/orders", &[AUTH, JSON], Some(body.into()))
        .await
}

#[tokio::test]
async fn posted_order_gets_the_session_tenant_and_the_response_is_wrapped() {
    let client = example_client().await;
    let response = post_orders(&client, r#"{"item":"book","tenant_id":"evil","qty":2}"#).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({
            "data": {"item": "book", "qty": 2, "tenant_id": "acme"},
            "served_to": "u-demo"
        })
    );
    assert_eq!(
        response.headers[header::CONTENT_LENGTH],
        response.body.len().to_string()
    );
}

#[tokio::test]
async fn listed_orders_are_wrapped_with_served_to() {
    let response = example_client().await.get("/orders", &[AUTH]).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.json(),
        json!({
            "data": [{"id": 1, "item": "book"}, {"id": 2, "item": "pen"}],
            "served_to": "u-demo"
        })
    );
}

#[tokio::test]
async fn invalid_json_is_400_with_the_spec_message() {
    let response = post_orders(&example_client().await, "{oops").await;
    assert_eq!(response.status, 400);
    assert_eq!(
        response.json(),
        json!({"error": "Request body is not valid JSON"})
    );
}

/// `POST /orders` answering with what it received: the byte count and the tenant.
fn counting_orders() -> Router {
    Router::new().route(
        "/orders",
        post(|body: Bytes| async move {
            let order: Value = serde_json::from_slice(&body).unwrap();
            axum::Json(json!({"bytes": body.len(), "tenant_id": order["tenant_id"]}))
        }),
    )
}

/// A JSON object of exactly `len` bytes.
fn order_of_len(len: usize) -> String {
    let frame = r#"{"item":""}"#.len();
    format!(r#"{{"item":"{}"}}"#, "x".repeat(len - frame))
}

#[tokio::test]
async fn request_body_at_the_limit_passes_and_one_byte_over_is_413() {
    let client = client_around(counting_orders()).await;
    let at_limit = order_of_len(BODY_LIMIT);
    assert_eq!(at_limit.len(), BODY_LIMIT);
    let response = post_orders(&client, at_limit).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["data"]["tenant_id"], "acme");

    let response = post_orders(&client, order_of_len(BODY_LIMIT + 1)).await;
    assert_eq!(response.status, 413);
    assert_eq!(response.json(), json!({"error": "Request body too large"}));
}

#[tokio::test]
async fn gzip_upstream_response_is_transformed_and_sent_uncompressed() {
    let routes = Router::new().route(
        "/orders",
        get(|| async {
            let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gzip.write_all(br#"[{"id":7}]"#).unwrap();
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::CONTENT_ENCODING, "gzip"),
                ],
                gzip.finish().unwrap(),
            )
        }),
    );
    let response = client_around(routes).await.get("/orders", &[AUTH]).await;
    assert_eq!(response.status, 200);
    assert!(response.headers.get(header::CONTENT_ENCODING).is_none());
    assert_eq!(
        response.json(),
        json!({"data": [{"id": 7}], "served_to": "u-demo"})
    );
}

#[tokio::test]
async fn unselected_routes_pass_through_byte_identical() {
    let seen: Arc<Mutex<Option<(HeaderMap, Bytes)>>> = Arc::default();
    let record = seen.clone();
    let routes = body_enrichment::routes().route(
        "/raw",
        post(move |headers: HeaderMap, body: Bytes| async move {
            *record.lock().unwrap() = Some((headers, body.clone()));
            ([(header::CONTENT_TYPE, "application/json")], body)
        }),
    );
    let client = client_around(routes).await;
    let original = Bytes::from_static(b"{not json, \x00\xff and never parsed");
    let response = client
        .send(Method::POST, "/raw", &[AUTH, JSON], Some(original.clone()))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, original);
    let (headers, body) = seen.lock().unwrap().take().expect("handler ran");
    assert_eq!(body, original);
    assert_eq!(headers[header::CONTENT_LENGTH], original.len().to_string());

    let health = client.get("/health", &[AUTH]).await;
    assert_eq!((health.status.as_u16(), health.text()), (200, "ok".into()));
}

/// JSON that is valid but not an object is the client's mistake, not the template's: 400 with a
/// clear message, and the handler is never called.
#[tokio::test]
async fn a_body_that_is_not_an_object_is_400_not_500() {
    let client = example_client().await;
    for body in ["[1,2]", r#""x""#, "42", "null", "true"] {
        let response = post_orders(&client, body).await;
        assert_eq!(response.status, 400, "{body}");
        assert_eq!(
            response.json(),
            json!({"error": "Request body must be a JSON object"}),
            "{body}"
        );
    }
}

/// The example's routes with a `POST /orders` that answers with the exact bytes it received.
async fn raw_echo_client() -> Client {
    client_around(Router::new().route(
        "/orders",
        post(|body: Bytes| async move { String::from_utf8_lossy(&body).into_owned() }),
    ))
    .await
}

/// `_tyk_meta`, `_tyk_context` and `_body` in a client body are dropped: not template variables
/// and not in `_body`, so they never reach the handler.
#[tokio::test]
async fn reserved_body_keys_never_reach_the_handler() {
    let response = post_orders(
        &raw_echo_client().await,
        r#"{"_tyk_meta":{"tenant_id":"evil"},"_tyk_context":{"path":"/x"},"_body":{"a":1},"item":"book"}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), r#"{"item":"book","tenant_id":"acme"}"#);
}

/// A Go backend's decoder fills `TenantID` from `TENANT_ID`, `Tenant_Id` or `tenant_ıd` (dotless
/// i) as well: every such key is dropped, and the session's value comes last (decoders keeping
/// duplicates keep the last).
#[tokio::test]
async fn tenant_id_under_another_case_is_dropped_too() {
    let response = post_orders(
        &raw_echo_client().await,
        r#"{"TENANT_ID":"globex","Tenant_Id":"globex","tenant_ıd":"globex","item":"book"}"#,
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), r#"{"item":"book","tenant_id":"acme"}"#);
}

/// HEAD answers with the headers GET would: the GET's body is transformed, so the HEAD must not
/// announce the untransformed length (RFC 9110 §9.3.2, §8.6).
#[tokio::test]
async fn head_never_reports_the_untransformed_length() {
    let client = example_client().await;
    let get = client.get("/orders", &[AUTH]).await;
    assert_eq!(get.status, 200);
    let head = client.send(Method::HEAD, "/orders", &[AUTH], None).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    match head.headers.get(header::CONTENT_LENGTH) {
        None => {}
        Some(length) => assert_eq!(
            length.to_str().unwrap(),
            get.headers[header::CONTENT_LENGTH].to_str().unwrap(),
            "a HEAD content-length must be the GET's"
        ),
    }
    assert_eq!(
        head.headers[header::CONTENT_TYPE],
        get.headers[header::CONTENT_TYPE]
    );
}

/// Scopes match the normalised path (RFC 3986 §6.2.2): `/%6Frders` is `/orders`, so the
/// transform scoped to `POST /orders` applies, and the service is handed `/orders` too.
#[tokio::test]
async fn percent_encoded_path_is_in_the_orders_scope() {
    let routes = Router::new().fallback(|uri: http::Uri, body: Bytes| async move {
        axum::Json(json!({
            "uri": uri.to_string(),
            "body": serde_json::from_slice::<Value>(&body).ok(),
        }))
    });
    let client = client_around(routes).await;
    for path in [
        "/%6Frders",
        "/%6frders",
        "/%6F%72%64%65%72%73",
        "//orders",
        "///%6Frders",
    ] {
        let response = client
            .send(
                Method::POST,
                path,
                &[AUTH, JSON],
                Some(Bytes::from_static(br#"{"item":"book","tenant_id":"evil"}"#)),
            )
            .await;
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(
            response.json(),
            json!({
                "data": {"uri": "/orders", "body": {"item": "book", "tenant_id": "acme"}},
                "served_to": "u-demo"
            }),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_dot_segment_is_400_before_any_body_rule() {
    let client = example_client().await;
    for path in [
        "/x/../orders",
        "/x/%2e%2e/orders",
        r"/x/..\orders",
        "/x/..%5Corders",
    ] {
        let response = client
            .send(
                Method::POST,
                path,
                &[AUTH, JSON],
                Some(Bytes::from_static(b"{}")),
            )
            .await;
        assert_eq!(response.status, 400, "{path}: {}", response.text());
        assert_eq!(
            response.json(),
            json!({"error": "Invalid request path"}),
            "{path}"
        );
    }
}

/// A 206 is never transformed, so a `Range` request would fetch the raw upstream body past the
/// response rule: the range is not forwarded where a response rule may apply.
#[tokio::test]
async fn a_range_request_cannot_skip_the_response_transform() {
    let routes = Router::new().route(
        "/orders",
        get(|headers: HeaderMap| async move {
            if headers.contains_key(header::RANGE) {
                let mut response = axum::response::IntoResponse::into_response(r#"{"raw":true}"#);
                *response.status_mut() = http::StatusCode::PARTIAL_CONTENT;
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return response;
            }
            axum::response::IntoResponse::into_response(axum::Json(json!([{"id": 1}])))
        }),
    );
    let client = client_around(routes).await;
    let response = client
        .get(
            "/orders",
            &[AUTH, ("range", "bytes=0-"), ("if-range", "\"x\"")],
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({"data": [{"id": 1}], "served_to": "u-demo"})
    );
}
