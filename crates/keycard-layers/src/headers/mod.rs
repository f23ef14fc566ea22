//! Header injection from session metadata and request context (Tyk's request/response header
//! transforms; reference: `docs/headers.md` in the repository).
//!
//! A rule set removes headers, then sets headers from templates (`$tyk_meta.KEY`,
//! `$tyk_context.NAME`; see [`keycard_core::vars`]). Setting *replaces* any value the header
//! had, so a client-sent `X-User-Id: admin` never survives next to the injected one. Rules are
//! global or scoped to a path pattern and method:
//!
//! - [`InjectHeadersLayer::request`]: global rules first, then scoped ones (scoped win);
//! - [`InjectHeadersLayer::response`]: scoped first, then global (global wins), as in Tyk. Response
//!   values are rendered from the request's session (including the handler's changes) and
//!   context.
//!
//! A missing variable renders as the empty string (Tyk); [`InjectHeadersBuilder::set_or_omit`] leaves
//! the header out instead — and removes the client's copy, so an omitted identity header is never
//! the client's. A rendered value that is not a valid header value (CR, LF, NUL...) is never sent:
//! by default ([`InvalidValue::Reject`]) the request fails with 500
//! `{"error":"Invalid header value"}`, nothing is half-applied, and a warning names the header and
//! the session's key id; a rule built with [`HeaderRule::on_invalid`]`(`[`InvalidValue::Omit`]`)`
//! leaves that header out (and removes the client's copy) instead. To refuse such values when they
//! are written, see `MetadataLimits::header_safe_values` in `keycard_core::metadata`.
//!
//! # Look-alike client headers
//!
//! Many backends read a header under more than one spelling: CGI/WSGI/Rack servers turn both
//! `X-User-Id` and `X_User_Id` into `HTTP_X_USER_ID`, and some join the two values. So on the
//! request side every header a rule sets or removes also removes the client headers whose name
//! differs from it only in `_` versus `-` (names are already case-insensitive). A client's
//! `X_User_Id: admin` therefore never reaches the backend beside the injected `x-user-id`.
//! [`InjectHeadersBuilder::keep_lookalikes`] turns this off.
//!
//! Scopes ([`Scope`]) match the request's normalised path (RFC 3986 §6.2.2, done once by the
//! session-load stage; see [`crate::auth`]): `/%6Frders/7` is in `/orders/*`. A path that
//! cannot be normalised (a dot segment in any spelling, a malformed escape) is answered 400
//! `{"error":"Invalid request path"}`.
//!
//! Metadata is not a secret store (Auth0's warning): a response rule that echoes metadata to the
//! client is the user's explicit choice.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::{HeaderMap, Request};
//! use keycard_core::store::MemoryStore;
//! use keycard_layers::auth::SessionLoadLayer;
//! use keycard_layers::headers::{HeaderRules, InjectHeadersLayer, Scope};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! store.insert_key("secret-key", serde_json::json!({"user_id": "u-1", "tenant": "acme"}))?;
//!
//! let inject = InjectHeadersLayer::request()
//!     .set("x-user-id", "$tyk_meta.user_id")
//!     .set("x-tenant", "$tyk_meta.tenant")
//!     .scoped(Scope::path("/admin/*"), HeaderRules::new().set("x-admin", "yes"))
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/whoami", get(|headers: HeaderMap| async move { format!("{headers:?}") }))
//!     .layer(ServiceBuilder::new().layer(SessionLoadLayer::new(store)).layer(inject));
//!
//! let request = Request::get("/whoami")
//!     .header("authorization", "Bearer secret-key")
//!     .header("x-user-id", "admin")
//!     .body(axum::body::Body::empty())?;
//! let body = app.oneshot(request).await?.into_body();
//! let seen = String::from_utf8(axum::body::to_bytes(body, 4096).await?.to_vec())?;
//! assert!(seen.contains(r#""x-user-id": "u-1""#));
//! assert!(!seen.contains("admin") && !seen.contains("authorization"));
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use keycard_core::metadata::Metadata;
use keycard_core::vars::{RenderError, Template, TemplateError, Variable, Vars};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::{RequestId, RequestVars};
use crate::response::{invalid_request_path, json_error, missing_session_layer};
pub use crate::scope::Scope;
use crate::session::Session;

/// Which message the rules change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Request,
    Response,
}

/// An ordered list of header rules: removals, then sets.
#[derive(Clone, Debug, Default)]
pub struct HeaderRules {
    specs: Vec<Spec>,
}

#[derive(Clone, Debug)]
enum Spec {
    Remove(String),
    Set(HeaderRule),
}

/// What a rule does with a rendered value that cannot be a header value (CR, LF, NUL...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidValue {
    /// Fail the request with 500 `{"error":"Invalid header value"}` (the default).
    #[default]
    Reject,
    /// Leave the header out, removing the client's copy.
    Omit,
}

/// One "set" rule with its options, for [`HeaderRules::rule`] and [`InjectHeadersBuilder::rule`].
///
/// ```
/// use keycard_layers::headers::{HeaderRule, InjectHeadersLayer, InvalidValue};
///
/// let inject = InjectHeadersLayer::request()
///     .rule(
///         HeaderRule::set("x-display-name", "$tyk_meta.display_name")
///             .omit_if_missing()
///             .on_invalid(InvalidValue::Omit),
///     )
///     .build()?;
/// # Ok::<(), keycard_layers::headers::HeaderConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct HeaderRule {
    name: String,
    template: String,
    omit_if_missing: bool,
    on_invalid: InvalidValue,
}

impl HeaderRule {
    /// Sets header `name` to the rendered `template`, replacing any value it had.
    pub fn set(name: impl Into<String>, template: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            template: template.into(),
            omit_if_missing: false,
            on_invalid: InvalidValue::Reject,
        }
    }

    /// Leaves the header out (removing the client's copy) when a variable the template names
    /// is missing, instead of rendering it as the empty string (Tyk #2358).
    pub fn omit_if_missing(mut self) -> Self {
        self.omit_if_missing = true;
        self
    }

    /// What to do when the rendered value cannot be a header value (default
    /// [`InvalidValue::Reject`]).
    pub fn on_invalid(mut self, on_invalid: InvalidValue) -> Self {
        self.on_invalid = on_invalid;
        self
    }
}

impl HeaderRules {
    /// An empty rule list, for [`InjectHeadersBuilder::scoped`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes header `name`.
    pub fn remove(mut self, name: impl Into<String>) -> Self {
        self.specs.push(Spec::Remove(name.into()));
        self
    }

    /// Sets header `name` to the rendered `template`, replacing any value it had. Missing
    /// variables render as the empty string.
    pub fn set(self, name: impl Into<String>, template: impl Into<String>) -> Self {
        self.rule(HeaderRule::set(name, template))
    }

    /// Like [`set`](Self::set), but leaves the header out (and removes the client's copy) when
    /// a variable the template names is missing (Tyk #2358).
    pub fn set_or_omit(self, name: impl Into<String>, template: impl Into<String>) -> Self {
        self.rule(HeaderRule::set(name, template).omit_if_missing())
    }

    /// Adds a set rule with its options.
    pub fn rule(mut self, rule: HeaderRule) -> Self {
        self.specs.push(Spec::Set(rule));
        self
    }

    fn compile(&self) -> Result<CompiledRules, HeaderConfigError> {
        let mut rules = CompiledRules::default();
        for spec in &self.specs {
            let name = match spec {
                Spec::Remove(name) => {
                    let name = header_name(name)?;
                    rules.remove.push(name.clone());
                    name
                }
                Spec::Set(rule) => {
                    let name = header_name(&rule.name)?;
                    rules.set.push(SetRule {
                        name: name.clone(),
                        template: Template::parse(&rule.template).map_err(|source| {
                            HeaderConfigError::Template {
                                header: rule.name.clone(),
                                source,
                            }
                        })?,
                        omit_if_missing: rule.omit_if_missing,
                        on_invalid: rule.on_invalid,
                    });
                    name
                }
            };
            rules.lookalike_keys.push(lookalike_key(name.as_str()));
        }
        Ok(rules)
    }
}

/// Takes the injected `names` out of the message's `Connection` header. A field `Connection`
/// names is hop-by-hop: the next forwarder (keycard's own [`crate::forward`] included) drops
/// it, so a client sending `Connection: x-user-id` would otherwise have the injected identity
/// removed before it reaches the backend. Other tokens (`close`, `keep-alive`, `upgrade`...)
/// stay; a `Connection` left with none is removed.
fn unlist_from_connection(headers: &mut HeaderMap, names: &[&HeaderName]) {
    let listed = |token: &str| names.iter().any(|n| n.as_str().eq_ignore_ascii_case(token));
    let tokens: Vec<String> = crate::forward::connection_tokens(headers)
        .map(str::to_owned)
        .collect();
    if !tokens.iter().any(|token| listed(token)) {
        return;
    }
    let kept: Vec<&str> = tokens
        .iter()
        .map(String::as_str)
        .filter(|token| !listed(token))
        .collect();
    headers.remove(header::CONNECTION);
    if let Ok(value) = HeaderValue::from_str(&kept.join(", "))
        && !kept.is_empty()
    {
        headers.insert(header::CONNECTION, value);
    }
}

/// The form two header names share when a CGI-style backend reads them as one: `_` and `-`
/// alike (names are lowercase already).
fn lookalike_key(name: &str) -> String {
    name.replace('_', "-")
}

fn header_name(name: &str) -> Result<HeaderName, HeaderConfigError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| HeaderConfigError::InvalidName(name.to_owned()))
}

/// A header rule that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderConfigError {
    /// Not a valid header name.
    #[error("invalid header name {0:?}")]
    InvalidName(String),
    /// The value template does not parse.
    #[error("invalid template for header {header:?}: {source}")]
    Template {
        /// The header the template is for.
        header: String,
        /// Why it does not parse.
        #[source]
        source: TemplateError,
    },
}

/// Builds an [`InjectHeadersLayer`]: global rules plus scoped rule sets.
#[derive(Clone, Debug)]
#[must_use = "call .build() to get the layer"]
pub struct InjectHeadersBuilder {
    side: Side,
    global: HeaderRules,
    scoped: Vec<(Scope, HeaderRules)>,
    strip_lookalikes: bool,
}

impl InjectHeadersBuilder {
    fn new(side: Side) -> Self {
        Self {
            side,
            global: HeaderRules::default(),
            scoped: Vec::new(),
            strip_lookalikes: side == Side::Request,
        }
    }

    /// Keeps client headers that differ from a set or removed name only in `_` versus `-`
    /// (removed by default on the request side; see [the module docs](self#look-alike-client-headers)).
    pub fn keep_lookalikes(mut self) -> Self {
        self.strip_lookalikes = false;
        self
    }

    /// A global set rule with its options. See [`HeaderRule`].
    pub fn rule(mut self, rule: HeaderRule) -> Self {
        self.global = self.global.rule(rule);
        self
    }

    /// A global rule: removes header `name`.
    pub fn remove(mut self, name: impl Into<String>) -> Self {
        self.global = self.global.remove(name);
        self
    }

    /// A global rule: sets header `name` from `template`. See [`HeaderRules::set`].
    pub fn set(mut self, name: impl Into<String>, template: impl Into<String>) -> Self {
        self.global = self.global.set(name, template);
        self
    }

    /// A global rule: sets header `name` unless a variable is missing. See
    /// [`HeaderRules::set_or_omit`].
    pub fn set_or_omit(mut self, name: impl Into<String>, template: impl Into<String>) -> Self {
        self.global = self.global.set_or_omit(name, template);
        self
    }

    /// Rules that apply only to requests in `scope`.
    pub fn scoped(mut self, scope: Scope, rules: HeaderRules) -> Self {
        self.scoped.push((scope, rules));
        self
    }

    /// Parses every header name and template.
    pub fn build(self) -> Result<InjectHeadersLayer, HeaderConfigError> {
        let global = self.global.compile()?;
        let scoped = self
            .scoped
            .iter()
            .map(|(scope, rules)| Ok((scope.clone(), rules.compile()?)))
            .collect::<Result<Vec<_>, HeaderConfigError>>()?;
        let all_sets = || {
            global
                .set
                .iter()
                .chain(scoped.iter().flat_map(|(_, rules)| &rules.set))
        };
        let context_names: Vec<String> = all_sets()
            .flat_map(|rule| rule.template.variables())
            .filter_map(|variable| match variable {
                Variable::Context(name) => Some(name.to_owned()),
                _ => None,
            })
            .collect();
        let uses_request_id = context_names.iter().any(|n| n == "request_id");
        Ok(InjectHeadersLayer {
            config: Arc::new(Config {
                side: self.side,
                global,
                scoped,
                context_names,
                uses_request_id,
                strip_lookalikes: self.strip_lookalikes,
            }),
        })
    }
}

#[derive(Debug, Default)]
struct CompiledRules {
    remove: Vec<HeaderName>,
    set: Vec<SetRule>,
    /// [`lookalike_key`] of every name the rules set or remove.
    lookalike_keys: Vec<String>,
}

#[derive(Debug)]
struct SetRule {
    name: HeaderName,
    template: Template,
    omit_if_missing: bool,
    on_invalid: InvalidValue,
}

/// A header of the applicable rules, rendered: a value to set, or `None` to leave it out.
type RenderedHeader<'a> = (&'a HeaderName, Option<HeaderValue>);

#[derive(Debug)]
struct Config {
    side: Side,
    global: CompiledRules,
    scoped: Vec<(Scope, CompiledRules)>,
    /// Context variables the templates read (snapshotted for response rules).
    context_names: Vec<String>,
    uses_request_id: bool,
    strip_lookalikes: bool,
}

impl Config {
    /// The rule sets that apply to a request, in application order.
    fn applicable(&self, method: &Method, path: &str) -> Cow<'static, [usize]> {
        if self.scoped.is_empty() {
            return Cow::Borrowed(&[0]);
        }
        let scoped = self
            .scoped
            .iter()
            .enumerate()
            .filter(|(_, (scope, _))| scope.matches(method, path))
            .map(|(i, _)| i + 1);
        Cow::Owned(match self.side {
            Side::Request => std::iter::once(0).chain(scoped).collect(),
            Side::Response => scoped.chain(std::iter::once(0)).collect(),
        })
    }

    fn rules(&self, index: usize) -> &CompiledRules {
        match index {
            0 => &self.global,
            i => &self.scoped[i - 1].1,
        }
    }

    /// Renders every applicable rule; nothing is changed yet, so a failure leaves no partial
    /// result behind. `Err` names the header whose value was refused.
    fn render(
        &self,
        sets: &[usize],
        vars: &(impl Vars + ?Sized),
    ) -> Result<Vec<RenderedHeader<'_>>, &HeaderName> {
        let count = sets.iter().map(|&index| self.rules(index).set.len()).sum();
        let mut rendered = Vec::with_capacity(count);
        for &index in sets {
            for rule in &self.rules(index).set {
                let value = match rule.template.render_header(vars) {
                    Ok(value) if value.missing && rule.omit_if_missing => None,
                    Ok(value) => Some(value.value),
                    Err(RenderError::InvalidHeaderValue)
                        if rule.on_invalid == InvalidValue::Omit =>
                    {
                        None
                    }
                    Err(_) => return Err(&rule.name),
                };
                rendered.push((&rule.name, value));
            }
        }
        Ok(rendered)
    }

    /// Applies the removals of `sets` (with the client's look-alikes of every name the rules
    /// touch, when on), then the rendered values (later ones replace earlier).
    fn write(&self, sets: &[usize], rendered: Vec<RenderedHeader<'_>>, headers: &mut HeaderMap) {
        if self.strip_lookalikes {
            self.remove_lookalikes(sets, headers);
        }
        for &index in sets {
            for name in &self.rules(index).remove {
                headers.remove(name);
            }
        }
        // Only a message with a `Connection` header needs the injected names (no allocation
        // otherwise: this runs on every request).
        let unlist = headers.contains_key(header::CONNECTION);
        let mut injected = Vec::new();
        for (name, value) in rendered {
            match value {
                Some(value) => {
                    headers.insert(name.clone(), value);
                    if unlist {
                        injected.push(name);
                    }
                }
                None => {
                    headers.remove(name);
                }
            }
        }
        if unlist {
            unlist_from_connection(headers, &injected);
        }
    }

    /// Removes every header whose name is a look-alike (`_` for `-`) of one the rules touch.
    /// Only names with an `_` can be one, so a request without any costs one scan of its names.
    fn remove_lookalikes(&self, sets: &[usize], headers: &mut HeaderMap) {
        let lookalikes: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().contains('_'))
            .filter(|name| {
                let key = lookalike_key(name.as_str());
                sets.iter()
                    .any(|&index| self.rules(index).lookalike_keys.contains(&key))
            })
            .cloned()
            .collect();
        for name in lookalikes {
            headers.remove(name);
        }
    }
}

/// Injects headers; built by [`InjectHeadersBuilder`].
#[derive(Clone, Debug)]
pub struct InjectHeadersLayer {
    config: Arc<Config>,
}

impl InjectHeadersLayer {
    /// Rules applied to the request before it reaches the inner service.
    pub fn request() -> InjectHeadersBuilder {
        InjectHeadersBuilder::new(Side::Request)
    }

    /// Rules applied to the response, rendered from the request's session and context.
    pub fn response() -> InjectHeadersBuilder {
        InjectHeadersBuilder::new(Side::Response)
    }

    /// Whether these rules change the request (else the response).
    pub fn is_request(&self) -> bool {
        self.config.side == Side::Request
    }
}

impl<S> Layer<S> for InjectHeadersLayer {
    type Service = InjectHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InjectHeaders {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of [`InjectHeadersLayer`].
#[derive(Clone, Debug)]
pub struct InjectHeaders<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> InjectHeaders<S> {
    define_inner_service_accessors!();
}

/// The 500 for a rendered value that cannot be a header value, logged with the header and the
/// session's key id (never the key, never the value).
fn invalid_header_value<B: From<Bytes>>(
    side: Side,
    header: &HeaderName,
    session: Option<&Session>,
) -> Response<B> {
    let key_id = session.map(|session| session.key_id().to_string());
    tracing::warn!(
        header = %header,
        key_id = key_id.as_deref().unwrap_or("-"),
        side = ?side,
        "keycard: header rule rendered a value that cannot be a header (CR, LF, NUL...); \
         request refused (HeaderRule::on_invalid(InvalidValue::Omit) leaves the header out instead)"
    );
    json_error(StatusCode::INTERNAL_SERVER_ERROR, "Invalid header value")
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for InjectHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let handle = request.extensions().get::<Session>().cloned();
        if !crate::session::loaded(request.extensions()) {
            return ResponseFuture::done(missing_session_layer("InjectHeadersLayer"));
        }
        let config = &self.config;
        // Scopes match the normalised path (already so behind the session-load stage).
        if let Err(why) = crate::normalize::request(&mut request) {
            return ResponseFuture::done(invalid_request_path(why));
        }
        if config.uses_request_id {
            RequestId::get_or_create(&mut request);
        }
        let sets = config.applicable(request.method(), request.uri().path());
        match config.side {
            Side::Request => {
                let rendered = with_metadata(handle.as_ref(), |metadata| {
                    let vars = RequestVars::new(&request, metadata);
                    config.render(&sets, &vars)
                });
                match rendered {
                    Ok(rendered) => {
                        config.write(&sets, rendered, request.headers_mut());
                        ResponseFuture::inner(self.inner.call(request), None)
                    }
                    Err(header) => ResponseFuture::done(invalid_header_value(
                        Side::Request,
                        header,
                        handle.as_ref(),
                    )),
                }
            }
            Side::Response => {
                let vars = RequestVars::new(&request, None);
                let context = config
                    .context_names
                    .iter()
                    .filter_map(|name| Some((name.clone(), vars.context(name)?.into_owned())))
                    .collect();
                let plan = ResponsePlan {
                    config: config.clone(),
                    sets,
                    handle,
                    context,
                };
                ResponseFuture::inner(self.inner.call(request), Some(plan))
            }
        }
    }
}

fn with_metadata<R>(handle: Option<&Session>, f: impl FnOnce(Option<&Metadata>) -> R) -> R {
    match handle {
        Some(handle) => handle.with_metadata(|metadata| f(Some(metadata))),
        None => f(None),
    }
}

/// What a response rule set needs once the response arrives.
struct ResponsePlan {
    config: Arc<Config>,
    sets: Cow<'static, [usize]>,
    handle: Option<Session>,
    context: HashMap<String, String>,
}

struct SnapshotVars<'a> {
    metadata: Option<&'a Metadata>,
    context: &'a HashMap<String, String>,
}

impl Vars for SnapshotVars<'_> {
    fn metadata(&self) -> Option<&Metadata> {
        self.metadata
    }

    fn context(&self, name: &str) -> Option<Cow<'_, str>> {
        self.context.get(name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

impl ResponsePlan {
    fn apply<B: From<Bytes>>(self, mut response: Response<B>) -> Response<B> {
        let rendered = with_metadata(self.handle.as_ref(), |metadata| {
            let vars = SnapshotVars {
                metadata,
                context: &self.context,
            };
            self.config.render(&self.sets, &vars)
        });
        match rendered {
            Ok(rendered) => {
                self.config
                    .write(&self.sets, rendered, response.headers_mut());
                response
            }
            Err(header) => invalid_header_value(Side::Response, header, self.handle.as_ref()),
        }
    }
}

pin_project! {
    /// The response future of [`InjectHeaders`].
    pub struct ResponseFuture<F, T> {
        #[pin]
        state: State<F, T>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T> {
        Inner {
            #[pin]
            future: F,
            plan: Option<ResponsePlan>,
        },
        Done {
            response: Option<T>,
        },
    }
}

impl<F, T> ResponseFuture<F, T> {
    fn inner(future: F, plan: Option<ResponsePlan>) -> Self {
        Self {
            state: State::Inner { future, plan },
        }
    }

    fn done(response: T) -> Self {
        Self {
            state: State::Done {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, Response<B>>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<Bytes>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future, plan } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(match plan.take() {
                    Some(plan) => plan.apply(response),
                    None => response,
                }))
            }
            StateProj::Done { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

#[cfg(test)]
mod tests;
