//! Micro-benchmarks of keycard-core's hot paths: `cargo bench -p keycard-core`.

use std::borrow::Cow;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::metadata::{Metadata, MetadataDelta};
use keycard_core::policy::{MemoryPolicies, Policy, apply_policies};
use keycard_core::session::SessionRecord;
use keycard_core::store::{MemoryStore, SessionStore};
use keycard_core::vars::{Template, Vars};
use serde_json::{Value, json};

/// MemoryStore futures are ready at once: poll once, no runtime in the measurement.
fn now<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("MemoryStore futures are always ready"),
    }
}

fn meta(value: Value) -> Metadata {
    value.as_object().cloned().expect("an object")
}

fn five_entries() -> Metadata {
    meta(json!({
        "user_id": "u-1234567", "tenant_id": "acme", "plan": "gold",
        "shard": "eu-2", "flags": "beta,new-ui"
    }))
}

struct BenchVars {
    meta: Metadata,
}

impl Vars for BenchVars {
    fn metadata(&self) -> Option<&Metadata> {
        Some(&self.meta)
    }

    fn context(&self, name: &str) -> Option<Cow<'_, str>> {
        (name == "path").then_some(Cow::Borrowed("/orders/7"))
    }
}

fn templates(c: &mut Criterion) {
    let vars = BenchVars {
        meta: five_entries(),
    };
    let mut group = c.benchmark_group("template");
    let cases = [
        ("header/0 vars", "static-value"),
        ("header/1 var", "$tyk_meta.user_id"),
        (
            "header/3 vars",
            "$tyk_meta.user_id@$tyk_meta.tenant_id via $tyk_context.path",
        ),
    ];
    for (name, source) in cases {
        let template = Template::parse(source).expect("valid template");
        group.bench_function(name, |b| {
            b.iter(|| black_box(&template).render_header(black_box(&vars)))
        });
    }
    let cases = [
        ("path/0 vars", "/static/path"),
        ("path/1 var", "/shards/$tyk_meta.shard/orders"),
        (
            "path/3 vars",
            "/t/$tyk_meta.tenant_id/s/$tyk_meta.shard?u=$tyk_meta.user_id",
        ),
    ];
    for (name, source) in cases {
        let template = Template::parse_url(source).expect("valid template");
        group.bench_function(name, |b| {
            b.iter(|| black_box(&template).render_url(black_box(&vars)))
        });
    }
    group.finish();
}

fn hashing(c: &mut Criterion) {
    let key = ApiKey::new("3f9a1c0e5b7d4a2e9c8b6d5f4e3a2b1c");
    c.bench_function("key/sha256 KeyId::of", |b| {
        b.iter(|| KeyId::of(black_box(&key)))
    });
    c.bench_function("key/generate", |b| b.iter(ApiKey::generate));
}

fn memory_store(c: &mut Criterion) {
    let store = MemoryStore::new();
    let ids: Vec<KeyId> = (0..10_000)
        .map(|i| KeyId::of(&ApiKey::new(format!("key-{i}"))))
        .collect();
    for id in &ids {
        now(store.create(SessionRecord::new(five_entries()).with_key_id(id.clone())))
            .expect("create");
    }
    let id = &ids[4242];
    c.bench_function("memory_store/load (10k sessions)", |b| {
        b.iter(|| now(store.load(black_box(id))))
    });
    c.bench_function("memory_store/load_shared (10k sessions)", |b| {
        b.iter(|| now(store.load_shared(black_box(id))))
    });
    let mut delta = MetadataDelta::new();
    delta.set("visits", json!(1));
    c.bench_function("memory_store/apply 1 set (10k sessions)", |b| {
        b.iter(|| now(store.apply(black_box(id), black_box(&delta))))
    });
}

fn policies(c: &mut Criterion) {
    let source = MemoryPolicies::new();
    source.insert(
        Policy::new("gold")
            .with_meta("plan", json!("gold"))
            .with_meta("quota", json!("high"))
            .with_tag("paid"),
    );
    source.insert(
        Policy::new("eu")
            .with_meta("region", json!("eu"))
            .with_tag("eu"),
    );
    let session = SessionRecord::new(five_entries()).with_policies(["gold", "eu"]);
    c.bench_function("policy/merge 2 policies into 5 entries", |b| {
        b.iter_batched_ref(
            || session.clone(),
            |s| apply_policies(s, &source),
            criterion::BatchSize::SmallInput,
        )
    });
}

fn deltas(c: &mut Criterion) {
    let mut delta = MetadataDelta::new();
    delta
        .set("visits", json!(3))
        .set("plan", json!("platinum"))
        .delete("flags")
        .set("last_seen", json!("2026-11-22"))
        .set("shard", json!("eu-3"));
    c.bench_function("delta/apply 5 changes to 5 entries", |b| {
        b.iter_batched_ref(
            five_entries,
            |m| delta.apply_to(m),
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, templates, hashing, memory_store, policies, deltas);
criterion_main!(benches);
