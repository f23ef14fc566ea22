//! Body transforms from session metadata and request context (Tyk's request/response body
//! transforms; spec `body.md`).
//!
//! A [`BodyRule`] is a [minijinja](https://docs.rs/minijinja) template (Jinja syntax; Tyk's Go
//! template `{{ ._tyk_meta.name }}` is `{{ _tyk_meta.name }}` here) scoped to a path pattern and
//! method ([`Scope`]) and optionally to content types. Templates are compiled once, when the
//! layer is built, and render with fuel and recursion limits, so a template cannot loop forever.
//!
//! - [`TransformBodyBuilder::request`] rewrites the request body before the inner service sees it;
//! - [`TransformBodyBuilder::response`] rewrites the response body, rendering from the request's
//!   session (including the handler's changes) and a snapshot of the request's context.
//!
//! The first rule whose scope and content type match applies. A message no rule selects passes
//! through untouched and unbuffered (streamed, headers unchanged).
//!
//! # Template data
//! | variable | value |
//! | --- | --- |
//! | the body's keys | a JSON object body's entries, at the top level (`{{ id }}`) |
//! | `array` | a JSON array body |
//! | `value` | any other JSON value (a string, a number...) |
//! | `_body` | the whole parsed body, whatever its shape (`{}` when empty): what Go templates call `{{ . }}`, for wrapping or merging a body (`{% for k, v in _body\|items %}`) |
//! | `<root>` | an XML body ([`BodyRule::xml`]): a map keyed by the root element; attributes are `-name`, text next to attributes or children is `#text`, repeated elements are a list |
//! | `_tyk_meta` | the session metadata, only with [`BodyRule::session_data`] (`{}` on a request without a session) |
//! | `_tyk_context` | the context variables of [`crate::context`], by name: `path`, `path_parts`, `request_id`, `remote_addr`, `headers_<Name>`, `request_data_<k>`, `cookies_<name>`, `token`, and every [`ContextValues`](crate::context::ContextValues) entry |
//!
//! An empty body renders with no body variables (`{}`). A body key named `_tyk_meta`,
//! `_tyk_context` or `_body` is dropped: a client cannot pose as the session. `_tyk_context` is looked up by
//! name and cannot be iterated, so no template dumps every header by accident.
//!
//! # What happens to the message
//! The output replaces the body; `content-length` is recomputed, `content-encoding` and
//! `transfer-encoding` are removed, and `content-type` is set when the rule says so
//! ([`BodyRule::output_content_type`]). A compressed body (`gzip`, `deflate`, `br`, or a list of
//! them) is decoded first and sent on uncompressed; re-compression is a compression layer's job.
//! Bodies are buffered up to [`TransformBodyBuilder::limit`] (default 1 MiB), before and after decoding.
//!
//! | case | request transform | response transform |
//! | --- | --- | --- |
//! | body over the limit | 413 `{"error":"Request body too large"}` | 502 `{"error":"Upstream response too large to transform"}` |
//! | body not valid JSON / XML (or its compression is corrupt) | 400 `{"error":"Request body is not valid JSON"}` (or `XML`) | the original body passes through, a warning is logged |
//! | template runtime error | 500 `{"error":"Body transform failed"}`, cause logged | 502 `{"error":"Body transform failed"}`, cause logged |
//! | unknown `content-encoding` | 415 `{"error":"Unsupported content encoding"}` | the original body passes through, a warning is logged |
//! | body stream fails while read | 400 `{"error":"Request body could not be read"}` | 502 `{"error":"Upstream response could not be read"}` |
//!
//! Tyk sends a half-transformed body on errors; here an error never reaches the upstream (or the
//! client) as a body. Responses without a body (`HEAD`, 1xx, 204, 206, 304) are never
//! transformed.
//!
//! # Body types
//! The layer maps bodies to [`TransformedBody<B>`], either the original body streamed untouched
//! or the transformed bytes, the way tower-http's limit and decompression layers wrap theirs. So
//! it works under axum's `Router::layer` (routes accept any body), around a whole `Router`, and
//! around services whose bodies cannot be built from bytes (hyper's `Incoming`, a reverse proxy's
//! upstream responses). `TransformedBody` is `From<Bytes>`, so keycard's other layers can still
//! answer with their JSON errors around it.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::post};
//! use http::{Method, Request};
//! use keycard_core::store::MemoryStore;
//! use keycard_layers::auth::SessionLoadLayer;
//! use keycard_layers::body::{BodyRule, Scope, TransformBodyLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! store.insert_key("secret-key", serde_json::json!({"name": "John Smith"}))?;
//!
//! let transform = TransformBodyLayer::request()
//!     .rule(
//!         Scope::path("/orders").method(Method::POST),
//!         BodyRule::json(r#"{"id":"{{ id }}","u":{{ _tyk_meta.name|tojson }}}"#).session_data(),
//!     )
//!     .limit(64 * 1024)
//!     .build()?;
//!
//! let app = Router::new()
//!     .route("/orders", post(|body: String| async move { body }))
//!     .layer(ServiceBuilder::new().layer(SessionLoadLayer::new(store)).layer(transform));
//!
//! let request = Request::post("/orders")
//!     .header("authorization", "Bearer secret-key")
//!     .header("content-type", "application/json")
//!     .body(axum::body::Body::from(r#"{"id":1234567}"#))?;
//! let body = app.oneshot(request).await?.into_body();
//! let seen = axum::body::to_bytes(body, 4096).await?;
//! assert_eq!(seen, r#"{"id":"1234567","u":"John Smith"}"#);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, Value};

use crate::session::Session;

mod data;
mod decode;
mod future;
mod rule;
mod service;
#[cfg(test)]
mod tests;

pub use crate::scope::Scope;
pub use future::ResponseFuture;
pub use rule::{BodyFormat, BodyRule};
pub use service::{TransformBody, TransformBodyLayer, TransformedBody};

use data::{CONTEXT, META, body_variables};
use decode::{DecodeError, decode};
use rule::CompiledRule;

/// The default buffering limit: 1 MiB.
pub const DEFAULT_LIMIT: usize = 1024 * 1024;

/// The default fuel of one render: roughly the number of template instructions it may run.
pub const DEFAULT_FUEL: u64 = 100_000;

/// How deep templates may nest (`if`, `for`, filters calling back...) while rendering.
const RECURSION_LIMIT: usize = 100;

/// Which message the rules change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Request,
    Response,
}

/// A body rule that cannot be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyConfigError {
    /// The template does not parse.
    #[error("invalid template in body rule {rule}: {message}")]
    Template {
        /// The rule's position, from 0, in the order the rules were added.
        rule: usize,
        /// Why it does not parse (minijinja's message, with the line).
        message: String,
    },
    /// The template reads `_tyk_meta` but the rule does not enable session data.
    #[error(
        "body rule {rule} reads _tyk_meta but does not enable session data (BodyRule::session_data)"
    )]
    SessionDataDisabled {
        /// The rule's position, from 0.
        rule: usize,
    },
    /// The output content type is not a valid header value.
    #[error("invalid output content type {value:?} in body rule {rule}")]
    InvalidContentType {
        /// The rule's position, from 0.
        rule: usize,
        /// The value given.
        value: String,
    },
}

/// Builds a [`TransformBodyLayer`]: scoped body rules, a buffering limit and a fuel budget.
#[derive(Clone, Debug)]
#[must_use = "call .build() to get the layer"]
pub struct TransformBodyBuilder {
    side: Side,
    rules: Vec<(Scope, BodyRule)>,
    limit: usize,
    fuel: u64,
}

impl TransformBodyBuilder {
    pub(super) fn new(side: Side) -> Self {
        Self {
            side,
            rules: Vec::new(),
            limit: DEFAULT_LIMIT,
            fuel: DEFAULT_FUEL,
        }
    }

    /// Adds `rule` for requests in `scope` (use `Scope::path("*")` for every request). The first
    /// added rule that matches a message applies.
    pub fn rule(mut self, scope: Scope, rule: BodyRule) -> Self {
        self.rules.push((scope, rule));
        self
    }

    /// The most bytes buffered for one body, both as received and once decompressed (default
    /// [`DEFAULT_LIMIT`]).
    pub fn limit(mut self, bytes: usize) -> Self {
        self.limit = bytes;
        self
    }

    /// The fuel of one render (default [`DEFAULT_FUEL`]); a render that runs out fails like any
    /// template runtime error.
    pub fn fuel(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }

    /// Compiles every template and checks every rule.
    pub fn build(self) -> Result<TransformBodyLayer, BodyConfigError> {
        let mut env = Environment::new();
        env.set_fuel(Some(self.fuel));
        env.set_recursion_limit(RECURSION_LIMIT);
        // Output is JSON or XML written by the template author; values print as they are (Tyk).
        env.set_auto_escape_callback(|_| AutoEscape::None);
        let mut rules = Vec::with_capacity(self.rules.len());
        for (index, (scope, rule)) in self.rules.into_iter().enumerate() {
            let name = format!("body-rule-{index}");
            env.add_template_owned(name.clone(), rule.template)
                .map_err(|e| BodyConfigError::Template {
                    rule: index,
                    message: e.to_string(),
                })?;
            let used = env
                .get_template(&name)
                .map_err(|e| BodyConfigError::Template {
                    rule: index,
                    message: e.to_string(),
                })?
                .undeclared_variables(true);
            let reads = |variable: &str| {
                used.iter().any(|u| {
                    u.strip_prefix(variable)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
                })
            };
            if reads(META) && !rule.session_data {
                return Err(BodyConfigError::SessionDataDisabled { rule: index });
            }
            let output_content_type = rule
                .output_content_type
                .map(|value| {
                    HeaderValue::from_str(&value)
                        .map_err(|_| BodyConfigError::InvalidContentType { rule: index, value })
                })
                .transpose()?;
            rules.push(CompiledRule {
                scope,
                format: rule.format,
                name,
                session_data: rule.session_data,
                uses_context: reads(CONTEXT),
                content_types: rule.content_types,
                output_content_type,
            });
        }
        Ok(TransformBodyLayer::new(Arc::new(Config {
            side: self.side,
            env,
            rules,
            limit: self.limit,
        })))
    }
}

/// A built rule set: what every service and future of one layer share.
#[derive(Debug)]
struct Config {
    side: Side,
    env: Environment<'static>,
    rules: Vec<CompiledRule>,
    limit: usize,
}

/// Why a selected body was not transformed.
#[derive(Debug)]
enum Failure {
    /// Over the limit once decoded.
    TooLarge,
    /// A `content-encoding` this layer cannot undo.
    UnsupportedEncoding(String),
    /// Not valid JSON / XML, or not valid for its `content-encoding`.
    Invalid(String),
    /// The template failed while rendering (including running out of fuel).
    Render(minijinja::Error),
}

impl Config {
    /// Renders `rule` over a buffered body whose message has `headers`.
    fn transform(
        &self,
        rule: &CompiledRule,
        headers: &HeaderMap,
        raw: Bytes,
        handle: Option<&Session>,
        context: Option<Value>,
    ) -> Result<Bytes, Failure> {
        let body = decode(headers, raw, self.limit).map_err(|e| match e {
            DecodeError::TooLarge => Failure::TooLarge,
            DecodeError::Unsupported(coding) => Failure::UnsupportedEncoding(coding),
            DecodeError::Corrupt(why) => Failure::Invalid(why),
        })?;
        let mut variables = body_variables(rule.format, &body).map_err(Failure::Invalid)?;
        if rule.session_data {
            let meta = match handle {
                Some(handle) => handle.with_metadata(|metadata| Value::from(Serde(metadata))),
                None => Value::from_pairs(Vec::<(Value, Value)>::new()),
            };
            variables.push((Value::from(META), meta));
        }
        if let Some(context) = context {
            variables.push((Value::from(CONTEXT), context));
        }
        let template = self.env.get_template(&rule.name).map_err(Failure::Render)?;
        let output = template
            .render(Value::from_pairs(variables))
            .map_err(Failure::Render)?;
        Ok(Bytes::from(output))
    }
}

/// The headers of a message whose body became `length` bytes of `rule`'s output.
fn set_body_headers(headers: &mut HeaderMap, rule: &CompiledRule, length: usize) {
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(content_type) = &rule.output_content_type {
        headers.insert(header::CONTENT_TYPE, content_type.clone());
    }
}

/// Statuses whose responses have no body to transform.
fn has_no_body(status: StatusCode) -> bool {
    status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
        )
}
