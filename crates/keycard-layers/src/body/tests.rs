use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

use super::decode::tests::encode;
use super::{BodyConfigError, BodyRule, Scope, TransformBodyLayer};
use crate::auth::SessionLoadLayer;
use crate::context::ContextValues;
use crate::session::Session;
use crate::test_support::{KEY, store};

const VECTOR: &str = r#"{"id":"{{ id }}","u":{{ _tyk_meta.name|tojson }}}"#;

/// What the handler of [`app`] saw: the request's headers and body.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Option<(HeaderMap, Bytes)>>>);

impl Seen {
    fn get(&self) -> (HeaderMap, Bytes) {
        self.0.lock().unwrap().clone().expect("the handler ran")
    }

    fn ran(&self) -> bool {
        self.0.lock().unwrap().is_some()
    }
}

/// `POST /{*path}` records the request and echoes its body; `GET /json` answers `{"n":1}`;
/// `GET /raw?b=...` answers the query value as-is.
async fn echo_app(meta: Value, transform: TransformBodyLayer) -> (Router, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let router = Router::new()
        .route(
            "/{*path}",
            post(move |headers: HeaderMap, body: Bytes| async move {
                *record.0.lock().unwrap() = Some((headers, body.clone()));
                body
            })
            .get(|| async { axum::Json(json!({"n": 1})) }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(SessionLoadLayer::new(store(meta).await))
                .layer(transform),
        );
    (router, seen)
}

fn post_req(path: &str, body: impl Into<Body>, extra: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::post(path).header("authorization", KEY);
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    builder.body(body.into()).unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn json_body(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| panic!("not JSON: {bytes:?}"))
}

fn request_rule(rule: BodyRule) -> super::TransformBodyBuilder {
    TransformBodyLayer::request().rule(Scope::path("/t/*").method(Method::POST), rule)
}

#[tokio::test]
async fn spec_vector_renders_body_and_metadata() {
    let transform = request_rule(BodyRule::json(VECTOR).session_data())
        .build()
        .unwrap();
    let (app, seen) = echo_app(json!({"name": "John Smith"}), transform).await;
    let (status, _, body) = send(&app, post_req("/t/x", r#"{"id":1234567}"#, &[])).await;
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"id":"1234567","u":"John Smith"}"#);
    let (headers, _) = seen.get();
    assert_eq!(headers[header::CONTENT_LENGTH], body.len().to_string());
}

#[tokio::test]
async fn request_body_one_byte_over_the_limit_is_413_and_at_the_limit_passes() {
    let body = r#"{"id":1234567}"#; // 14 bytes
    let transform = request_rule(BodyRule::json(VECTOR).session_data())
        .limit(body.len())
        .build()
        .unwrap();
    let (app, seen) = echo_app(json!({"name": "J"}), transform).await;
    let (status, _, out) = send(&app, post_req("/t/x", body, &[])).await;
    assert_eq!(status, 200);
    assert_eq!(out, r#"{"id":"1234567","u":"J"}"#);

    let over = r#"{"id":12345678}"#;
    let (status, headers, out) = send(&app, post_req("/t/x", over, &[])).await;
    assert_eq!(status, 413);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(json_body(&out), json!({"error": "Request body too large"}));

    // Streamed without a length: the limit is enforced while reading.
    let stream = chunked(&[&over[..7], &over[7..]]);
    let (status, _, out) = send(&app, post_req("/t/x", stream, &[])).await;
    assert_eq!(status, 413);
    assert_eq!(json_body(&out), json!({"error": "Request body too large"}));
    let stream = chunked(&[&body[..7], &body[7..]]);
    assert_eq!(send(&app, post_req("/t/x", stream, &[])).await.0, 200);
    assert!(seen.ran());
}

/// A body fed chunk by chunk through a channel, with no size hint (like a chunked upload).
struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn channel_body() -> (tokio::sync::mpsc::UnboundedSender<Bytes>, ChannelBody) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (tx, ChannelBody(rx))
}

/// A body of `chunks`, complete, with no size hint.
fn chunked(chunks: &[&str]) -> Body {
    let (tx, body) = channel_body();
    for chunk in chunks {
        tx.send(Bytes::copy_from_slice(chunk.as_bytes())).unwrap();
    }
    Body::new(body)
}

#[tokio::test]
async fn invalid_request_body_is_400_and_never_reaches_the_handler() {
    let transform = TransformBodyLayer::request()
        .rule(Scope::path("/t/json"), BodyRule::json("{{ a }}"))
        .rule(Scope::path("/t/xml"), BodyRule::xml("{{ a }}"))
        .build()
        .unwrap();
    let (app, seen) = echo_app(json!({}), transform).await;
    let (status, _, out) = send(&app, post_req("/t/json", "{not json", &[])).await;
    assert_eq!(status, 400);
    assert_eq!(
        json_body(&out),
        json!({"error": "Request body is not valid JSON"})
    );
    let (status, _, out) = send(&app, post_req("/t/xml", "<a><b></a>", &[])).await;
    assert_eq!(status, 400);
    assert_eq!(
        json_body(&out),
        json!({"error": "Request body is not valid XML"})
    );
    let corrupt = post_req("/t/json", "not gzip", &[("content-encoding", "gzip")]);
    assert_eq!(send(&app, corrupt).await.0, 400);
    let (status, _, out) = send(
        &app,
        post_req("/t/json", "{}", &[("content-encoding", "zstd")]),
    )
    .await;
    assert_eq!(status, 415);
    assert_eq!(
        json_body(&out),
        json!({"error": "Unsupported content encoding"})
    );
    assert!(!seen.ran());
}

#[tokio::test]
async fn template_runtime_error_is_500_on_requests_and_502_on_responses() {
    // Adding a string to a number fails at render time, not at build time.
    let failing = r#"{{ n + "x" }}"#;
    let transform = request_rule(BodyRule::json(failing)).build().unwrap();
    let (app, seen) = echo_app(json!({}), transform).await;
    let (status, _, out) = send(&app, post_req("/t/x", r#"{"n":1}"#, &[])).await;
    assert_eq!(status, 500);
    assert_eq!(json_body(&out), json!({"error": "Body transform failed"}));
    assert!(!seen.ran());

    let transform = TransformBodyLayer::response()
        .rule(Scope::path("/json"), BodyRule::json(failing))
        .build()
        .unwrap();
    let (app, _) = echo_app(json!({}), transform).await;
    let (status, _, out) = send(&app, get_req("/json")).await;
    assert_eq!(status, 502);
    assert_eq!(json_body(&out), json!({"error": "Body transform failed"}));
}

#[tokio::test]
async fn running_out_of_fuel_is_a_runtime_error() {
    let transform = request_rule(BodyRule::json(
        "{% for i in range(1000) %}{{ i }}{% endfor %}",
    ))
    .fuel(100)
    .build()
    .unwrap();
    let (app, _) = echo_app(json!({}), transform).await;
    assert_eq!(send(&app, post_req("/t/x", "", &[])).await.0, 500);
}

fn get_req(path: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", KEY)
        .body(Body::empty())
        .unwrap()
}

/// A router answering `GET /` with `body` under `content-encoding: coding`.
fn encoded_upstream(coding: &'static str, body: &'static [u8]) -> Router {
    Router::new().route(
        "/",
        get(move || async move {
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_ENCODING, coding)
                .body(Body::from(encode(coding, body)))
                .unwrap()
        }),
    )
}

#[tokio::test]
async fn compressed_upstream_responses_are_decoded_transformed_and_sent_plain() {
    for coding in ["gzip", "deflate", "br"] {
        let transform = TransformBodyLayer::response()
            .rule(
                Scope::path("/"),
                BodyRule::json(
                    r#"{"data":{{ array|tojson }},"served_to":{{ _tyk_meta.user_id|tojson }}}"#,
                )
                .session_data(),
            )
            .build()
            .unwrap();
        let app = encoded_upstream(coding, b"[1,2,3]").layer(
            ServiceBuilder::new()
                .layer(SessionLoadLayer::new(
                    store(json!({"user_id": "u-1"})).await,
                ))
                .layer(transform),
        );
        let (status, headers, out) = send(&app, get_req("/")).await;
        assert_eq!(status, 200, "{coding}");
        assert_eq!(
            json_body(&out),
            json!({"data": [1, 2, 3], "served_to": "u-1"}),
            "{coding}"
        );
        assert!(headers.get(header::CONTENT_ENCODING).is_none(), "{coding}");
        assert_eq!(headers[header::CONTENT_LENGTH], out.len().to_string());
    }
}

#[tokio::test]
async fn compressed_request_bodies_are_decoded_and_bombs_refused() {
    let transform = request_rule(BodyRule::json(r#"{"got":{{ a|tojson }}}"#))
        .limit(1024)
        .build()
        .unwrap();
    let (app, seen) = echo_app(json!({}), transform).await;
    let gz = encode("gzip", br#"{"a":"x"}"#);
    let (status, _, out) = send(&app, post_req("/t/x", gz, &[("content-encoding", "gzip")])).await;
    assert_eq!(status, 200);
    assert_eq!(out, r#"{"got":"x"}"#);
    assert!(seen.get().0.get(header::CONTENT_ENCODING).is_none());

    let bomb = encode("gzip", &[b' '; 64 * 1024]);
    assert!(bomb.len() < 1024);
    let (status, _, out) = send(
        &app,
        post_req("/t/x", bomb, &[("content-encoding", "gzip")]),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(json_body(&out), json!({"error": "Request body too large"}));
}

#[tokio::test]
async fn unselected_requests_and_responses_pass_through_byte_identical() {
    let transform = TransformBodyLayer::request()
        .rule(
            Scope::path("/t/*").method(Method::POST),
            BodyRule::json("{}"),
        )
        .rule(
            Scope::path("/only-json"),
            BodyRule::json("{}").when_content_type("application/json"),
        )
        .build()
        .unwrap();
    let (app, seen) = echo_app(json!({}), transform).await;
    let original = "{not json at all, and never parsed}";
    let length = original.len().to_string();
    for path in ["/other", "/only-json"] {
        let headers = [("content-type", "text/plain"), ("content-length", &length)];
        let request = post_req(path, original, &headers);
        let (status, _, out) = send(&app, request).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(out, original);
        let (headers, body) = seen.get();
        assert_eq!(body, original);
        assert_eq!(headers[header::CONTENT_LENGTH], original.len().to_string());
    }
}

#[tokio::test]
async fn unselected_bodies_stream_without_buffering() {
    // The handler answers as soon as it has read the first request chunk, with a response body
    // that sends its second chunk only after the client has read the first. A layer that
    // buffered either body would wait forever.
    let (first_read_tx, first_read_rx) = tokio::sync::oneshot::channel::<()>();
    let first_read_rx = Arc::new(Mutex::new(Some(first_read_rx)));
    let router = Router::new().route(
        "/stream",
        post(move |body: Body| {
            let first_read_rx = first_read_rx.clone();
            async move {
                let mut body = body;
                let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
                let (tx, response_body) = channel_body();
                tx.send(first).unwrap();
                let first_read = first_read_rx.lock().unwrap().take().unwrap();
                tokio::spawn(async move {
                    first_read.await.unwrap();
                    tx.send(Bytes::from_static(b"-second")).unwrap();
                });
                Response::new(Body::new(response_body))
            }
        }),
    );
    let transform = TransformBodyLayer::response()
        .rule(Scope::path("/json"), BodyRule::json("{}"))
        .build()
        .unwrap();
    let request_transform = request_rule(BodyRule::json("{}")).build().unwrap();
    let app = router.layer(
        ServiceBuilder::new()
            .layer(SessionLoadLayer::new(store(json!({})).await))
            .layer(request_transform)
            .layer(transform),
    );
    let (request_tx, request_body) = channel_body();
    request_tx.send(Bytes::from_static(b"first")).unwrap();
    let request = post_req("/stream", Body::new(request_body), &[]);
    let wait = Duration::from_secs(5);
    let response = tokio::time::timeout(wait, app.oneshot(request))
        .await
        .expect("request body not buffered")
        .unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(wait, body.frame())
        .await
        .expect("streamed");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "first");
    first_read_tx.send(()).unwrap();
    let second = tokio::time::timeout(wait, body.frame())
        .await
        .expect("streamed");
    let second = second.unwrap().unwrap();
    assert_eq!(second.into_data().unwrap(), "-second");
    drop(request_tx);
}

#[tokio::test]
async fn response_transform_sees_the_handlers_metadata_changes_and_context() {
    let transform = TransformBodyLayer::response()
        .rule(
            Scope::path("/r/*"),
            BodyRule::json(
                r#"{"data":{{ value|tojson }},"plan":{{ _tyk_meta.plan|tojson }},"path":"{{ _tyk_context.path }}","h":"{{ _tyk_context.headers_X_Name }}","q":"{{ _tyk_context.request_data_q }}","region":"{{ _tyk_context.region }}","id":"{{ _tyk_context.request_id }}"}"#,
            )
            .session_data()
            .output_content_type("application/vnd.keycard+json"),
        )
        .build()
        .unwrap();
    let router = Router::new().route(
        "/r/{x}",
        get(|Extension(session): Extension<Session>| async move {
            session.set("plan", json!("gold")).unwrap();
            axum::Json(json!("hello"))
        }),
    );
    let app = router
        .layer(transform)
        .layer(axum::middleware::from_fn(
            |mut request: axum::extract::Request, next: axum::middleware::Next| async move {
                ContextValues::insert_into(request.extensions_mut(), "region", "eu");
                next.run(request).await
            },
        ))
        .layer(SessionLoadLayer::new(store(json!({"plan": "free"})).await));
    let request = Request::get("/r/1?q=v%201")
        .header("authorization", KEY)
        .header("x-name", "alice")
        .header("x-request-id", "rid-1")
        .body(Body::empty())
        .unwrap();
    let (status, headers, out) = send(&app, request).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/vnd.keycard+json"
    );
    assert_eq!(
        json_body(&out),
        json!({"data": "hello", "plan": "gold", "path": "/r/1", "h": "alice", "q": "v 1", "region": "eu", "id": "rid-1"})
    );
}

#[tokio::test]
async fn invalid_upstream_body_passes_through_and_oversized_is_502() {
    let transform = TransformBodyLayer::response()
        .rule(Scope::path("/*"), BodyRule::json("{{ n }}"))
        .limit(16)
        .build()
        .unwrap();
    let router = Router::new()
        .route("/html", get(|| async { "<p>oops</p>" }))
        .route(
            "/big",
            get(|| async { axum::Json(json!({"n": "123456789"})) }),
        )
        .route(
            "/big-stream",
            get(|| async { Body::new(chunked(&["{\"n\":", "\"123456789abcdef\"}"])) }),
        )
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }));
    let app = router.layer(transform);
    let (status, headers, out) =
        send(&app, Request::get("/html").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(out, "<p>oops</p>");
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    for path in ["/big", "/big-stream"] {
        let (status, _, out) = send(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(status, 502, "{path}");
        assert_eq!(
            json_body(&out),
            json!({"error": "Upstream response too large to transform"})
        );
    }
    let (status, _, out) = send(&app, Request::get("/empty").body(Body::empty()).unwrap()).await;
    assert_eq!(status, 204);
    assert!(out.is_empty());
}

#[tokio::test]
async fn a_client_cannot_pose_as_the_session() {
    let transform = request_rule(
        BodyRule::json(r#"{{ _tyk_meta.tenant }}|{{ _tyk_context.path }}"#).session_data(),
    )
    .build()
    .unwrap();
    let (app, _) = echo_app(json!({"tenant": "acme"}), transform).await;
    let body = r#"{"_tyk_meta":{"tenant":"evil"},"_tyk_context":{"path":"/evil"}}"#;
    let (_, _, out) = send(&app, post_req("/t/x", body, &[])).await;
    assert_eq!(out, "acme|/t/x");
}

#[tokio::test]
async fn xml_request_becomes_json() {
    let transform = request_rule(
        BodyRule::xml(r#"{"id":{{ order["-id"]|tojson }},"items":{{ order.item|tojson }}}"#)
            .output_content_type("application/json"),
    )
    .build()
    .unwrap();
    let (app, seen) = echo_app(json!({}), transform).await;
    let xml = r#"<order id="7"><item>a</item><item>b</item></order>"#;
    let (status, _, out) = send(
        &app,
        post_req("/t/x", xml, &[("content-type", "application/xml")]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json_body(&out), json!({"id": "7", "items": ["a", "b"]}));
    assert_eq!(seen.get().0[header::CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn a_rule_that_needs_the_session_outside_session_load_is_500() {
    let transform = request_rule(BodyRule::json(VECTOR).session_data())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/t/x", post(|| async { "reached" }))
        .layer(transform);
    let (status, _, out) = send(&app, post_req("/t/x", "{}", &[])).await;
    assert_eq!(status, 500);
    assert_eq!(
        json_body(&out),
        json!({"error": "Server misconfigured: session layer missing"})
    );
}

#[tokio::test]
async fn works_around_services_whose_bodies_are_not_from_bytes() {
    // A service answering with a body type that has no `From<Bytes>` (like hyper's `Incoming`
    // from a proxy client): the layer still transforms and still rejects.
    let inner = tower::service_fn(|_: Request<super::TransformedBody<Body>>| async {
        let (tx, body) = channel_body();
        tx.send(Bytes::from_static(br#"{"a":1}"#)).unwrap();
        Ok::<_, Infallible>(Response::new(body))
    });
    let transform = TransformBodyLayer::response()
        .rule(Scope::path("/*"), BodyRule::json("a={{ a }}"))
        .build()
        .unwrap();
    let response = ServiceBuilder::new()
        .layer(transform)
        .service(inner)
        .oneshot(Request::get("/x").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "a=1"
    );
}

#[test]
fn bad_rules_fail_at_build_time() {
    let err = request_rule(BodyRule::json("{{ unclosed"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, BodyConfigError::Template { rule: 0, .. }),
        "{err}"
    );
    let err = request_rule(BodyRule::json("{{ _tyk_meta.name }}"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, BodyConfigError::SessionDataDisabled { rule: 0 }),
        "{err}"
    );
    let err = request_rule(BodyRule::json("{}").output_content_type("a\nb"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, BodyConfigError::InvalidContentType { rule: 0, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn whole_body_can_be_wrapped_or_merged() {
    let merge = r#"{"tenant_id":{{ _tyk_meta.tenant_id|tojson }}{% for k, v in _body|items if k != "tenant_id" %},{{ k|tojson }}:{{ v|tojson }}{% endfor %}}"#;
    let transform = request_rule(BodyRule::json(merge).session_data())
        .build()
        .unwrap();
    let (app, _) = echo_app(json!({"tenant_id": "acme"}), transform).await;
    let body = r#"{"item":"book","tenant_id":"evil","n":[1,{"a":null}]}"#;
    let (_, _, out) = send(&app, post_req("/t/x", body, &[])).await;
    assert_eq!(
        json_body(&out),
        json!({"tenant_id": "acme", "item": "book", "n": [1, {"a": null}]})
    );
    let (_, _, out) = send(&app, post_req("/t/x", "", &[])).await;
    assert_eq!(json_body(&out), json!({"tenant_id": "acme"}));
}

#[tokio::test]
async fn missing_values_render_empty_or_null_and_attributes_of_nothing_fail() {
    let transform = TransformBodyLayer::request()
        .rule(Scope::path("/t/print"), BodyRule::json("[{{ missing }}]"))
        .rule(
            Scope::path("/t/json"),
            BodyRule::json("{{ missing|tojson }}"),
        )
        .rule(Scope::path("/t/attr"), BodyRule::json("{{ missing.attr }}"))
        .build()
        .unwrap();
    let (app, _) = echo_app(json!({}), transform).await;
    let (status, _, out) = send(&app, post_req("/t/print", "{}", &[])).await;
    assert_eq!((status, &out[..]), (StatusCode::OK, &b"[]"[..]));
    let (status, _, out) = send(&app, post_req("/t/json", "{}", &[])).await;
    assert_eq!((status, &out[..]), (StatusCode::OK, &b"null"[..]));
    let (status, _, _) = send(&app, post_req("/t/attr", "{}", &[])).await;
    assert_eq!(status, 500);
}
