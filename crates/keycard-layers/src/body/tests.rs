use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::session::Session;
use keycard_core::store::{MemoryStore, SessionStore};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt};

use super::decode::tests::encode;
use super::{BodyConfigError, BodyRule, Scope, TransformBody, TransformBodyLayer};
use crate::auth::SessionLoadLayer;
use crate::context::ContextValues;
use crate::handle::SessionHandle;

const KEY: &str = "Bearer test-key";
const VECTOR: &str = r#"{"id":"{{ id }}","u":{{ _tyk_meta.name|tojson }}}"#;

async fn store(meta: Value) -> MemoryStore {
    let store = MemoryStore::new();
    let session = Session::new(meta.as_object().unwrap().clone())
        .with_key_id(KeyId::of(&ApiKey::new("test-key")));
    store.create(session).await.unwrap();
    store
}

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
async fn app(meta: Value, transform: TransformBodyLayer) -> (Router, Seen) {
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

fn request_rule(rule: BodyRule) -> TransformBody {
    TransformBody::request().rule(Scope::path("/t/*").method(Method::POST), rule)
}

#[tokio::test]
async fn spec_vector_renders_body_and_metadata() {
    let transform = request_rule(BodyRule::json(VECTOR).session_data())
        .build()
        .unwrap();
    let (app, seen) = app(json!({"name": "John Smith"}), transform).await;
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
    let (app, seen) = app(json!({"name": "J"}), transform).await;
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
