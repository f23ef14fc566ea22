//! Micro-benchmarks of keycard-layers' per-request cost: `cargo bench -p keycard-layers`.
//!
//! Every case drives a service built once, outside the measured loop, with
//! `tower::ServiceExt::oneshot` on a tokio current-thread runtime (`rt.block_on`), the way a
//! server clones its service for each request. Requests are built in the (unmeasured) setup;
//! the inner service is trivial and answers at once, so the figures are the layers' own cost
//! plus the runtime and `oneshot` overhead that `stack/bare inner` measures alone.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::metadata::{Metadata, MetadataLimits};
use keycard_core::session::SessionRecord;
use keycard_core::store::{MemoryStore, SessionStore};
use keycard_layers::auth::SessionLoadLayer;
use keycard_layers::body::{BodyRule, Scope, TransformBodyLayer};
use keycard_layers::headers::InjectHeadersLayer;
use keycard_layers::persist::PersistLayer;
use keycard_layers::rewrite::{RewriteRule, UrlRewriteLayer};
use keycard_layers::session::Session;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, ServiceExt};

const KEY: &str = "3f9a1c0e5b7d4a2e9c8b6d5f4e3a2b1c";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
}

/// Times one `oneshot` of a clone of `service` per iteration, on a fresh request from `make`
/// (built outside the measurement).
fn bench_oneshot<R, S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    rt: &Runtime,
    service: &S,
    make: impl Fn() -> R,
) where
    S: Service<R> + Clone,
{
    group.bench_function(name, |b| {
        b.iter_batched(
            &make,
            |request| rt.block_on(service.clone().oneshot(request)),
            BatchSize::SmallInput,
        )
    });
}

fn five_entries() -> Metadata {
    json!({
        "user_id": "u-1234567", "tenant_id": "acme", "plan": "gold",
        "shard": "eu-2", "flags": "beta,new-ui"
    })
    .as_object()
    .cloned()
    .expect("an object")
}

/// The handle `SessionLoadLayer` would have put into the request (for the single-layer cases).
fn handle() -> Session {
    Session::new(SessionRecord::new(five_entries()), MetadataLimits::tyk())
}

/// A request as a client sends it: a few ordinary headers and the API key.
fn request(method: Method, uri: &str, body: Bytes) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "api.example.com")
        .header("user-agent", "keycard-bench/1.0")
        .header("accept", "application/json")
        .header("authorization", format!("Bearer {KEY}"));
    if !body.is_empty() {
        builder = builder
            .header("content-type", "application/json")
            .header("content-length", body.len());
    }
    builder.body(Full::new(body)).expect("a valid request")
}

static VISITS: AtomicU64 = AtomicU64::new(0);

/// The trivial inner service: answers 200 at once.
#[derive(Clone, Copy)]
enum Handler {
    /// Touches nothing.
    Noop,
    /// Reads one metadata value, changes nothing.
    Read,
    /// Sets one metadata value to a new value (so every request has a change to persist).
    Write,
}

impl<B> Service<Request<B>> for Handler {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let session = request.extensions().get::<Session>();
        match (*self, session) {
            (Self::Read, Some(session)) => {
                black_box(session.get_value("plan"));
            }
            (Self::Write, Some(session)) => {
                let visits = VISITS.fetch_add(1, Ordering::Relaxed);
                session
                    .set("visits", json!(visits))
                    .expect("within the limits");
            }
            _ => {}
        }
        let ok = Bytes::from_static(br#"{"ok":true}"#);
        ready(Ok(Response::new(Full::new(ok))))
    }
}

/// An inner service that returns what it received (URI, a header, the body), for the sanity
/// checks run once before measuring.
async fn echo<B: http_body::Body<Data = Bytes>>(
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await else {
        panic!("the body reads");
    };
    let user = parts.headers.get("x-user-id").cloned();
    let text = format!("{} {user:?} {}", parts.uri, body.to_bytes().len());
    Ok(Response::new(Full::new(Bytes::from(text))))
}

async fn text(response: Response<impl http_body::Body<Data = Bytes>>) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    let Ok(body) = response.into_body().collect().await else {
        panic!("the body reads");
    };
    String::from_utf8(body.to_bytes().to_vec()).expect("UTF-8")
}

/// An order of exactly `size` bytes of JSON: a few fields and as many line items as fit.
fn order_body(size: usize) -> Bytes {
    let order = |items: &[Value], note: &str| {
        json!({
            "order_id": 1234567,
            "customer": {"id": "c-42", "name": "Ada Lovelace", "email": "ada@example.com"},
            "currency": "EUR",
            "note": note,
            "items": items,
        })
    };
    let item = |i: usize| {
        json!({
            "sku": format!("SKU-{i:06}"), "name": format!("Widget number {i}"),
            "qty": i % 7 + 1, "unit_price": 9.5 + i as f64, "tags": ["blue", "large"]
        })
    };
    let length = |value: &Value| serde_json::to_vec(value).expect("JSON").len();
    let mut items = Vec::new();
    while length(&order(&items, "")) + length(&item(items.len())) < size {
        items.push(item(items.len()));
    }
    let note = "x".repeat(size - length(&order(&items, "")));
    let body = serde_json::to_vec(&order(&items, &note)).expect("JSON");
    assert_eq!(body.len(), size);
    Bytes::from(body)
}

/// Request-side body transform: wrap the body in `data` and add fields read from the body and
/// from the session.
fn body(c: &mut Criterion) {
    let rt = runtime();
    let template = r#"{"data": {{ _body|tojson }}, "order_id": {{ order_id|tojson }}, "customer_id": {{ customer.id|tojson }}, "item_count": {{ items|length }}, "tenant_id": {{ _tyk_meta.tenant_id|tojson }}, "user_id": {{ _tyk_meta.user_id|tojson }}, "plan": {{ _tyk_meta.plan|tojson }}}"#;
    let layer = TransformBodyLayer::request()
        .rule(
            Scope::path("/orders").method(Method::POST),
            BodyRule::json(template)
                .session_data()
                .when_content_type("application/json"),
        )
        .build()
        .expect("a valid rule");
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(Handler::Noop);
    let checked = ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(echo));

    let mut group = c.benchmark_group("body");
    for (name, size) in [("request 1 KiB", 1024), ("request 64 KiB", 64 * 1024)] {
        let body = order_body(size);
        let make = || {
            let mut request = request(Method::POST, "/orders", body.clone());
            request.extensions_mut().insert(handle());
            request
        };
        let seen = rt.block_on(async {
            let Ok(response) = checked.clone().oneshot(make()).await;
            text(response).await
        });
        let out_len: usize = seen
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a length");
        assert!(
            out_len > size + 100,
            "{name}: the body was transformed ({seen})"
        );

        group.throughput(Throughput::Bytes(size as u64));
        bench_oneshot(&mut group, name, &rt, &service, make);
    }
    group.finish();
}

/// URL rewrite: one rule, and 50 rules where the matching one is last or none matches.
fn rewrite(c: &mut Criterion) {
    let rt = runtime();
    let rule = |i: usize| {
        RewriteRule::new(
            format!(r"^/api/v1/service-{i:02}/orders/(\d+)$"),
            format!("/shards/$tyk_meta.shard/service-{i:02}/orders/$1"),
        )
    };
    let build = |n: usize| {
        UrlRewriteLayer::rules()
            .extend_rules((0..n).map(rule))
            .build()
            .expect("valid rules")
    };
    let cases = [
        ("1 rule", 1, "/api/v1/service-00/orders/7", true),
        ("1 rule (no match)", 1, "/api/v1/catalog/items/7", false),
        (
            "50 rules (last matches)",
            50,
            "/api/v1/service-49/orders/7",
            true,
        ),
        ("50 rules (no match)", 50, "/api/v1/catalog/items/7", false),
    ];
    let mut group = c.benchmark_group("rewrite");
    for (name, rules, uri, matches) in cases {
        let layer = build(rules);
        let make = || {
            let mut request = request(Method::GET, uri, Bytes::new());
            request.extensions_mut().insert(handle());
            request
        };
        let checked = ServiceBuilder::new()
            .layer(layer.clone())
            .service(tower::service_fn(echo));
        let seen = rt.block_on(async {
            let Ok(response) = checked.oneshot(make()).await;
            text(response).await
        });
        assert_eq!(seen.starts_with("/shards/eu-2/"), matches, "{name}: {seen}");

        let service = ServiceBuilder::new().layer(layer).service(Handler::Noop);
        bench_oneshot(&mut group, name, &rt, &service, make);
    }
    group.finish();
}

/// The whole request path: SessionLoad (MemoryStore, 10k sessions) + URL rewrite (1 rule) +
/// Persist + InjectHeadersBuilder (3 variables), against the bare inner service.
fn stack(c: &mut Criterion) {
    let rt = runtime();
    let store = MemoryStore::new();
    rt.block_on(async {
        for i in 0..10_000 {
            let id = KeyId::of(&ApiKey::new(format!("key-{i}")));
            store
                .create(SessionRecord::new(five_entries()).with_key_id(id))
                .await
                .expect("create");
        }
        let id = KeyId::of(&ApiKey::new(KEY));
        store
            .create(SessionRecord::new(five_entries()).with_key_id(id))
            .await
            .expect("create");
    });
    let rewrite = UrlRewriteLayer::rules()
        .rule(RewriteRule::new(
            r"^/api/orders/(\d+)$",
            "/shards/$tyk_meta.shard/orders/$1",
        ))
        .build()
        .expect("a valid rule");
    let inject = InjectHeadersLayer::request()
        .remove("authorization")
        .set("x-user-id", "$tyk_meta.user_id")
        .set("x-tenant-id", "$tyk_meta.tenant_id")
        .set("x-plan", "$tyk_meta.plan")
        .build()
        .expect("valid rules");
    let layers = ServiceBuilder::new()
        .layer(SessionLoadLayer::new(store.clone()))
        .layer(rewrite)
        .layer(PersistLayer::new(store.clone()))
        .layer(inject);

    let read = || request(Method::GET, "/api/orders/7", Bytes::new());
    let write = || {
        let body = Bytes::from_static(br#"{"note":"leave at the door"}"#);
        request(Method::POST, "/api/orders/7", body)
    };
    let checked = layers.clone().service(tower::service_fn(echo));
    let seen = rt.block_on(async {
        let Ok(response) = checked.oneshot(read()).await;
        text(response).await
    });
    assert_eq!(seen, r#"/shards/eu-2/orders/7 Some("u-1234567") 0"#);

    let bare = Handler::Read;
    let reader = layers.clone().service(Handler::Read);
    let writer = layers.service(Handler::Write);
    let Ok(response) = rt.block_on(writer.clone().oneshot(write()));
    assert_eq!(response.status(), StatusCode::OK);
    let saved = rt.block_on(store.load(&KeyId::of(&ApiKey::new(KEY))));
    let saved = saved.expect("load").expect("the session");
    assert!(
        saved.meta_data.contains_key("visits"),
        "the write persisted"
    );

    let mut group = c.benchmark_group("stack");
    bench_oneshot(&mut group, "bare inner", &rt, &bare, read);
    bench_oneshot(&mut group, "read", &rt, &reader, read);
    bench_oneshot(&mut group, "write", &rt, &writer, write);
    group.finish();
}

criterion_group!(benches, body, rewrite, stack);
criterion_main!(benches);
