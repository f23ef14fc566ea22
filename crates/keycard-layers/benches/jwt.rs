//! JWT verification cost per request: `cargo bench -p keycard-layers --features jwt --bench jwt`.
//!
//! Each case drives a `SessionLoadLayer` in JWT mode, built once, with `oneshot` on a tokio
//! current-thread runtime, over a token minted once. The session exists after the first
//! request, so the figures are the steady state: signature check with a cached key, claim
//! checks, key id, one store load, policies applied. `api key` is the same stack with an opaque
//! key, for comparison.

use std::convert::Infallible;
use std::future::{Ready, ready};

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use jsonwebtoken::{EncodingKey, Header, encode};
use keycard_core::policy::{MemoryPolicies, Policy};
use keycard_core::store::MemoryStore;
use keycard_layers::auth::SessionLoadLayer;
use keycard_layers::auth::jwt::{Algorithm, JwtAuth, JwtKey};
use serde_json::json;
use tokio::runtime::Runtime;
use tower::{Layer, ServiceExt, service_fn};

type Body = Full<Bytes>;

fn ok(_: Request<Body>) -> Ready<Result<Response<Body>, Infallible>> {
    ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

fn claims() -> serde_json::Value {
    json!({"sub": "bench-user", "pol": "gold", "iss": "https://idp.example", "exp": 4102444800_i64,
           "org": {"id": "acme"}})
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let policies = MemoryPolicies::new();
    policies.insert(Policy::new("gold").with_meta("plan", json!("gold")));
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).ok();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256 key");
    let mut cases = vec![(
        "HS256",
        JwtKey::hmac(Algorithm::HS256, b"bench-secret").unwrap(),
        encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"bench-secret"),
        )
        .unwrap(),
    )];
    cases.push((
        "ES256",
        JwtKey::ec_pem(Algorithm::ES256, ec.public_key_pem()).unwrap(),
        encode(
            &Header::new(Algorithm::ES256),
            &claims(),
            &EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
        )
        .unwrap(),
    ));
    if let Some(rsa) = rsa {
        cases.push((
            "RS256",
            JwtKey::rsa_pem(Algorithm::RS256, rsa.public_key_pem()).unwrap(),
            encode(
                &Header::new(Algorithm::RS256),
                &claims(),
                &EncodingKey::from_rsa_pem(rsa.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap(),
        ));
    }
    let mut group = c.benchmark_group("jwt");
    for (name, key, token) in cases {
        let jwt = JwtAuth::new()
            .key(key)
            .policy_claim("pol")
            .allowed_issuers(["https://idp.example"])
            .claim_to_metadata("org_id", "org.id");
        let service = SessionLoadLayer::new(MemoryStore::new())
            .policies(policies.clone())
            .jwt(jwt)
            .layer(service_fn(ok));
        let request = || {
            Request::get("/")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::default())
                .unwrap()
        };
        // The first request creates the session; the measured ones load it.
        let first = rt.block_on(service.clone().oneshot(request())).unwrap();
        assert_eq!(first.status(), 200, "{name}");
        group.bench_function(format!("verify + load/{name}"), |b| {
            b.iter_batched(
                request,
                |r| rt.block_on(service.clone().oneshot(r)),
                BatchSize::SmallInput,
            )
        });
    }
    let store = MemoryStore::new();
    store
        .insert_key("3f9a1c0e5b7d4a2e9c8b6d5f4e3a2b1c", json!({"plan": "gold"}))
        .unwrap();
    let service = SessionLoadLayer::new(store).layer(service_fn(ok));
    group.bench_function("api key (no JWT)", |b| {
        b.iter_batched(
            || {
                Request::get("/")
                    .header("authorization", "Bearer 3f9a1c0e5b7d4a2e9c8b6d5f4e3a2b1c")
                    .body(Body::default())
                    .unwrap()
            },
            |r| rt.block_on(service.clone().oneshot(r)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
