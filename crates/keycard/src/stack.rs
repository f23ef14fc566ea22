//! [`Keycard`]: the whole stack from one builder, in the order the data flows.
//!
//! ```text
//! request ─► load ─► rate limit ─► (after_load) ─► rewrite ─► request headers ─► request body ─► your service
//! response ◄─ save ◄──────────────────────────── response headers ◄─ response body ◄─┘
//! ```
//!
//! The store is given once: the save stage always writes where the load stage read, so a change
//! a handler makes is never dropped for want of a persist layer. Stages that are not configured
//! cost nothing (they are [`Identity`] layers). Wrap the whole `Router` — the rewrite must run
//! before axum picks a route — and serve the result (`keycard.layer(service)` keeps the exact
//! service type instead of a `Router`):
//!
//! ```
//! use axum::{Router, routing::get};
//! use keycard::prelude::*;
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! store.insert_key("demo-key", json!({"user_id": "u-demo", "shard": "eu-1"}))?;
//!
//! let keycard = Keycard::new(store)
//!     .rewrite(UrlRewriteLayer::rules()
//!         .rule(RewriteRule::new("^/orders/(.*)", "/shards/$tyk_meta.shard/orders/$1"))
//!         .build()?)
//!     .request_headers(InjectHeadersLayer::request()
//!         .set("x-user-id", "$tyk_meta.user_id")
//!         .build()?);
//!
//! let router = Router::new().route("/shards/{shard}/orders/{id}", get(|| async { "order" }));
//! let app: Router = keycard.wrap(router);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # drop(listener); return Ok(());
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! The individual layers ([`SessionLoadLayer`], [`RateLimitLayer`], [`PersistLayer`], [`UrlRewriteLayer`],
//! [`InjectHeadersLayer`], `TransformBodyLayer`) stay public for stacks of your own.

use std::sync::Arc;

use keycard_core::metadata::MetadataLimits;
use keycard_core::policy::MemoryPolicies;
use keycard_core::store::SessionStore;
use keycard_layers::auth::{KeySource, SessionLoad, SessionLoadLayer};
#[cfg(feature = "body")]
use keycard_layers::body::TransformBodyLayer;
use keycard_layers::context::ForwardedFor;
use keycard_layers::headers::InjectHeadersLayer;
use keycard_layers::persist::{Persist, PersistLayer};
use keycard_layers::ratelimit::RateLimitLayer;
use keycard_layers::rewrite::UrlRewriteLayer;
use tower_layer::{Identity, Layer};

/// The keycard stack: session load, the stages you configure, and the save, composed in
/// data-flow order around your service. The [crate docs](crate) show the stages.
///
/// The type parameters are the stages' layers ([`Identity`] where a stage is not configured);
/// you never need to name them.
#[derive(Clone)]
#[must_use = "a Keycard does nothing until it wraps a service: keycard.layer(router)"]
pub struct Keycard<
    AfterLoad = Identity,
    Rewrite = Identity,
    RequestHeaders = Identity,
    RequestBody = Identity,
    ResponseBody = Identity,
    ResponseHeaders = Identity,
    RateLimit = Identity,
> {
    load: SessionLoadLayer,
    persist: PersistLayer,
    policies: MemoryPolicies,
    /// The rate-limit stage's quotas, for `admin_api`.
    quotas: Option<keycard_core::ratelimit::Quotas>,
    rate_limit: RateLimit,
    after_load: AfterLoad,
    rewrite: Rewrite,
    request_headers: RequestHeaders,
    request_body: RequestBody,
    response_body: ResponseBody,
    response_headers: ResponseHeaders,
}

impl Keycard {
    /// A stack over `store`: sessions are loaded from it and their changes saved to it.
    /// Defaults: the key from `Authorization` (`Bearer` optional), required; Tyk metadata limits;
    /// no policies; the credential removed before your service sees the request.
    pub fn new(store: impl SessionStore) -> Self {
        Self::from_shared_store(Arc::new(store))
    }

    /// Like [`new`](Self::new), for a store that is already shared (with the management API,
    /// say).
    pub fn from_shared_store(store: Arc<dyn SessionStore>) -> Self {
        let policies = MemoryPolicies::new();
        Self {
            persist: PersistLayer::from_shared_store(store.clone()),
            load: SessionLoadLayer::from_shared_store(store).policies(policies.clone()),
            policies,
            quotas: None,
            rate_limit: Identity::new(),
            after_load: Identity::new(),
            rewrite: Identity::new(),
            request_headers: Identity::new(),
            request_body: Identity::new(),
            response_body: Identity::new(),
            response_headers: Identity::new(),
        }
    }
}

/// Rebuilds a `Keycard` with one stage replaced (and its type with it): every field is moved
/// as it is except the named one.
macro_rules! with_stage {
    ($self:ident, $field:ident = $value:expr) => {
        with_stage!(@build $self, $field = $value;
            load persist policies quotas rate_limit after_load rewrite request_headers request_body response_body response_headers)
    };
    (@build $self:ident, $field:ident = $value:expr; $($all:ident)*) => {{
        let mut value = Some($value);
        Keycard {
            $($all: with_stage!(@pick $self, $field, value, $all),)*
        }
    }};
    (@pick $self:ident, rate_limit, $value:ident, rate_limit) => { $value.take().unwrap() };
    (@pick $self:ident, after_load, $value:ident, after_load) => { $value.take().unwrap() };
    (@pick $self:ident, rewrite, $value:ident, rewrite) => { $value.take().unwrap() };
    (@pick $self:ident, request_headers, $value:ident, request_headers) => { $value.take().unwrap() };
    (@pick $self:ident, request_body, $value:ident, request_body) => { $value.take().unwrap() };
    (@pick $self:ident, response_body, $value:ident, response_body) => { $value.take().unwrap() };
    (@pick $self:ident, response_headers, $value:ident, response_headers) => { $value.take().unwrap() };
    (@pick $self:ident, $field:ident, $value:ident, $other:ident) => { $self.$other };
}

impl<A, R, QH, QB, SB, SH, RL> Keycard<A, R, QH, QB, SB, SH, RL> {
    fn map_load(mut self, f: impl FnOnce(SessionLoadLayer) -> SessionLoadLayer) -> Self {
        self.load = f(self.load);
        self
    }

    /// Where to look for the key, in order ([`SessionLoadLayer::key_sources`]).
    ///
    /// # Panics
    /// If `sources` is empty.
    pub fn key_sources(self, sources: impl IntoIterator<Item = KeySource>) -> Self {
        self.map_load(|load| load.key_sources(sources))
    }

    /// The policies sessions may list in `apply_policies` (default: an empty set). The set is
    /// shared, not copied: policies added to it later (by the management API from
    /// `admin_api`, say) apply from the next request.
    pub fn policies(mut self, policies: MemoryPolicies) -> Self {
        self.load = self.load.policies(policies.clone());
        self.policies = policies;
        self
    }

    /// The policy set the stack applies (see [`policies`](Self::policies)).
    pub fn policy_set(&self) -> &MemoryPolicies {
        &self.policies
    }

    /// The management API over this stack's store, policy set, key hasher and rate-limit
    /// quotas: what the API writes is what the stack reads, with nothing to wire twice (feature
    /// `admin`).
    #[cfg(feature = "admin")]
    pub fn admin_api(&self) -> keycard_admin::AdminApiBuilder {
        let mut builder = keycard_admin::AdminApi::builder(self.store().clone())
            .policies(self.policies.clone())
            .key_hasher(self.load.hasher().clone());
        if let Some(idle) = self.load.activity().and_then(|a| a.idle_timeout_value()) {
            builder = builder.idle_timeout(idle);
        }
        match &self.quotas {
            Some(quotas) => builder.quotas(quotas.clone()),
            None => builder,
        }
    }

    /// How raw keys become key ids, for the load stage and the admin API built by
    /// `admin_api` (feature `admin`) ([`SessionLoadLayer::key_hasher`]). Default: SHA-256, as
    /// Tyk; `KeyHasher::hmac_sha256(secret)` is recommended for new deployments.
    pub fn key_hasher(self, hasher: keycard_core::key::KeyHasher) -> Self {
        self.map_load(|load| load.key_hasher(hasher))
    }

    /// Records when each session is used and from which client, at most one store write per
    /// session per interval, and refuses sessions idle past the idle timeout
    /// ([`SessionLoadLayer::track_activity`]); `admin_api` shows it (Auth0's
    /// `last_interacted_at`, `device`, `idle_expires_at`).
    pub fn track_activity(self, activity: keycard_layers::auth::Activity) -> Self {
        self.map_load(|load| load.track_activity(activity))
    }

    /// The limits every metadata write is checked against (default: the Tyk profile).
    pub fn limits(self, limits: MetadataLimits) -> Self {
        self.map_load(|load| load.limits(limits))
    }

    /// Sessions from signed tokens instead of API keys ([`SessionLoadLayer::jwt`]; feature
    /// `jwt`). The stack's policies, limits, hasher and store apply to the generated sessions,
    /// and metadata a handler writes to one is saved like any other session's.
    #[cfg(feature = "jwt")]
    pub fn jwt(self, jwt: keycard_layers::auth::jwt::JwtAuth) -> Self {
        self.map_load(|load| load.jwt(jwt))
    }

    /// Lets requests without a key through, without a session ([`SessionLoadLayer::optional`]).
    pub fn optional(self) -> Self {
        self.map_load(SessionLoadLayer::optional)
    }

    /// Leaves the credential on the request ([`SessionLoadLayer::keep_credential`]).
    pub fn keep_credential(self) -> Self {
        self.map_load(SessionLoadLayer::keep_credential)
    }

    /// Lets templates read the raw key as `$tyk_context.token`
    /// ([`SessionLoadLayer::expose_token`]).
    pub fn expose_token(self) -> Self {
        self.map_load(SessionLoadLayer::expose_token)
    }

    /// Keys shorter than this are unknown keys ([`SessionLoadLayer::min_key_length`]).
    pub fn min_key_length(self, chars: usize) -> Self {
        self.map_load(|load| load.min_key_length(chars))
    }

    /// Where `$tyk_context.remote_addr` comes from, for every stage
    /// ([`SessionLoadLayer::forwarded_for`]).
    pub fn forwarded_for(self, forwarded_for: ForwardedFor) -> Self {
        self.map_load(|load| load.forwarded_for(forwarded_for))
    }

    /// When a save fails, log it and keep the response instead of answering 503
    /// ([`PersistLayer::keep_response_on_failure`]).
    pub fn keep_response_on_save_failure(mut self) -> Self {
        self.persist = self.persist.keep_response_on_failure();
        self
    }

    /// A layer of your own right after the session is loaded (and rate-limited), before the
    /// rewrite: where guards that decide on the session go. It sees the request's
    /// [`Session`](keycard_layers::session::Session) in the extensions.
    pub fn after_load<L>(self, layer: L) -> Keycard<L, R, QH, QB, SB, SH, RL> {
        with_stage!(self, after_load = layer)
    }

    /// The rate-limit stage ([`RateLimitLayer`]), right after the session is loaded and before
    /// the [`after_load`](Self::after_load) layer: limits from the session's `rate` / `per`,
    /// buckets from its `rate_limit_pattern`.
    pub fn rate_limit(
        mut self,
        layer: RateLimitLayer,
    ) -> Keycard<A, R, QH, QB, SB, SH, RateLimitLayer> {
        self.quotas = Some(layer.quotas());
        with_stage!(self, rate_limit = layer)
    }

    /// The URL rewrite stage. It runs before the header rules, so they can read the
    /// `trigger-*` context values it publishes.
    pub fn rewrite(
        self,
        layer: UrlRewriteLayer,
    ) -> Keycard<A, UrlRewriteLayer, QH, QB, SB, SH, RL> {
        with_stage!(self, rewrite = layer)
    }

    /// The request header rules (built by [`InjectHeadersLayer::request`]).
    ///
    /// # Panics
    /// If `layer` holds response rules: pass those to
    /// [`response_headers`](Self::response_headers).
    pub fn request_headers(
        self,
        layer: InjectHeadersLayer,
    ) -> Keycard<A, R, InjectHeadersLayer, QB, SB, SH, RL> {
        assert!(
            layer.is_request(),
            "Keycard::request_headers got InjectHeadersLayer::response() rules; pass them to response_headers"
        );
        with_stage!(self, request_headers = layer)
    }

    /// The response header rules (built by [`InjectHeadersLayer::response`]); they run after
    /// the response body rules.
    ///
    /// # Panics
    /// If `layer` holds request rules: pass those to [`request_headers`](Self::request_headers).
    pub fn response_headers(
        self,
        layer: InjectHeadersLayer,
    ) -> Keycard<A, R, QH, QB, SB, InjectHeadersLayer, RL> {
        assert!(
            !layer.is_request(),
            "Keycard::response_headers got InjectHeadersLayer::request() rules; pass them to request_headers"
        );
        with_stage!(self, response_headers = layer)
    }

    /// The request body rules (built by `TransformBodyLayer::request`; feature `body`).
    ///
    /// # Panics
    /// If `layer` holds response rules: pass those to [`response_body`](Self::response_body).
    #[cfg(feature = "body")]
    pub fn request_body(
        self,
        layer: TransformBodyLayer,
    ) -> Keycard<A, R, QH, TransformBodyLayer, SB, SH, RL> {
        assert!(
            layer.is_request(),
            "Keycard::request_body got TransformBodyLayer::response() rules; pass them to response_body"
        );
        with_stage!(self, request_body = layer)
    }

    /// The response body rules (built by `TransformBodyLayer::response`; feature `body`).
    ///
    /// # Panics
    /// If `layer` holds request rules: pass those to [`request_body`](Self::request_body).
    #[cfg(feature = "body")]
    pub fn response_body(
        self,
        layer: TransformBodyLayer,
    ) -> Keycard<A, R, QH, QB, TransformBodyLayer, SH, RL> {
        assert!(
            !layer.is_request(),
            "Keycard::response_body got TransformBodyLayer::request() rules; pass them to request_body"
        );
        with_stage!(self, response_body = layer)
    }

    /// The store sessions are loaded from and saved to.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        self.load.store()
    }

    /// Wraps a whole axum `Router` in the stack and hands back a `Router`, ready for
    /// `axum::serve(listener, app)` (feature `axum`). Use [`layer`](Self::layer) to keep the
    /// exact service type instead.
    #[cfg(feature = "axum")]
    pub fn wrap(&self, router: axum::Router) -> axum::Router
    where
        Self: Layer<axum::Router>,
        <Self as Layer<axum::Router>>::Service: tower_service::Service<
                axum::extract::Request,
                Error = std::convert::Infallible,
                Response: axum::response::IntoResponse,
                Future: Send + 'static,
            > + Clone
            + Send
            + Sync
            + 'static,
    {
        // The stack must see the request before routing (the rewrite changes the path), so it
        // wraps the router and the result is served as the fallback of an empty one.
        axum::Router::new().fallback_service(<Self as Layer<axum::Router>>::layer(self, router))
    }

    /// Wraps `inner` (your whole `Router`, a proxy, any service) in the stack. The same as
    /// [`Layer::layer`], without importing the trait.
    pub fn layer<S>(&self, inner: S) -> KeycardService<S, A, R, QH, QB, SB, SH, RL>
    where
        SB: Layer<S>,
        QB: Layer<SB::Service>,
        SH: Layer<QB::Service>,
        QH: Layer<SH::Service>,
        R: Layer<QH::Service>,
        A: Layer<R::Service>,
        RL: Layer<A::Service>,
    {
        <Self as Layer<S>>::layer(self, inner)
    }
}

/// The service a [`Keycard`] makes of `S`: the stages nested in data-flow order.
pub type KeycardService<
    S,
    A = Identity,
    R = Identity,
    QH = Identity,
    QB = Identity,
    SB = Identity,
    SH = Identity,
    RL = Identity,
> = SessionLoad<
    Persist<
        <RL as Layer<
            <A as Layer<
                <R as Layer<
                    <QH as Layer<
                        <SH as Layer<<QB as Layer<<SB as Layer<S>>::Service>>::Service>>::Service,
                    >>::Service,
                >>::Service,
            >>::Service,
        >>::Service,
    >,
>;

impl<S, A, R, QH, QB, SB, SH, RL> Layer<S> for Keycard<A, R, QH, QB, SB, SH, RL>
where
    SB: Layer<S>,
    QB: Layer<SB::Service>,
    SH: Layer<QB::Service>,
    QH: Layer<SH::Service>,
    R: Layer<QH::Service>,
    A: Layer<R::Service>,
    RL: Layer<A::Service>,
{
    type Service = KeycardService<S, A, R, QH, QB, SB, SH, RL>;

    fn layer(&self, inner: S) -> Self::Service {
        // Innermost first: the response body rules see the service's response first, the
        // response header rules after them, the save last.
        let inner = self.response_body.layer(inner);
        let inner = self.request_body.layer(inner);
        let inner = self.response_headers.layer(inner);
        let inner = self.request_headers.layer(inner);
        let inner = self.rewrite.layer(inner);
        let inner = self.after_load.layer(inner);
        let inner = self.rate_limit.layer(inner);
        self.load.layer(self.persist.layer(inner))
    }
}
