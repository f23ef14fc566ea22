//! Body transforms from session metadata and request context (Tyk's request/response body
//! transforms; reference: `docs/body.md` in the repository).
//!
//! A [`BodyRule`] is a [minijinja](https://docs.rs/minijinja) template (Jinja syntax; Tyk's Go
//! template `{{ ._tyk_meta.name }}` is `{{ _tyk_meta.name }}` here) scoped to a path pattern and
//! method ([`Scope`]) and optionally to content types. Templates are compiled once, when the
//! layer is built, and render with fuel and recursion limits, so a template cannot loop forever.
//!
//! - [`TransformBodyLayer::request`] rewrites the request body before the inner service sees it;
//! - [`TransformBodyLayer::response`] rewrites the response body, rendering from the request's
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
//! `_tyk_context` or `_body` is dropped, from the top level and from `_body` alike: a client cannot
//! pose as the session, and a template that copies `_body` never forwards them. `_tyk_context` is
//! looked up by name and cannot be iterated, so no template dumps every header by accident.
//!
//! A template that iterates or merges the body's entries (`_body|items`) needs an object: mark
//! its rule [`BodyRule::objects_only`] so `[1,2]`, `"x"`, `42` or `null` from a client is a 400
//! instead of a failing render (a 500 is for the operator's own template errors).
//!
//! # Pitfall: a backend may read a key under another spelling
//! A template that overwrites a key (`tenant_id` from the session) must drop every client key the
//! backend would read as the same field, not only the exact one. Go's `encoding/json` matches
//! field names case-insensitively (`TENANT_ID`, `Tenant_Id`, even `tenant_ıd` with a dotless i,
//! since it folds characters as `ToUpper(ToLower(c))`), and many decoders keep the last of two
//! duplicate keys. Filter with `key|lower|upper != "TENANT_ID"` and write the session's value
//! last; the `body_enrichment` example shows the template.
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
//! | body not a JSON object, rule [`objects_only`](BodyRule::objects_only) | 400 `{"error":"Request body must be a JSON object"}` | the original body passes through, a warning is logged |
//! | template runtime error | 500 `{"error":"Body transform failed"}`, cause logged | 502 `{"error":"Body transform failed"}`, cause logged |
//! | unknown `content-encoding` | 415 `{"error":"Unsupported content encoding"}` | the original body passes through, a warning is logged |
//! | body stream fails while read | 400 `{"error":"Request body could not be read"}` | 502 `{"error":"Upstream response could not be read"}` |
//! | a dot segment in the path (any spelling) or a malformed escape | 400 `{"error":"Invalid request path"}` | the same, before the request goes on |
//!
//! Scopes match the request's normalised path (RFC 3986 §6.2.2, done once by the session-load
//! stage, or here in a stack without one): `POST /%6Frders` is in `Scope::path("/orders")`, and
//! the service is handed `/orders`.
//!
//! Tyk sends a half-transformed body on errors; here an error never reaches the upstream (or the
//! client) as a body. Responses without a body (1xx, 204, 206, 304) are never transformed. A
//! `HEAD` response is matched as its `GET` and gets the headers the transformed `GET` would
//! have, except `content-length`, which is removed: only rendering the body could tell it, and a
//! HEAD must not announce a length the GET would not have.
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

mod config;
mod data;
mod decode;
mod future;
mod rule;
mod service;
#[cfg(test)]
mod tests;
mod transformed;

pub use crate::scope::Scope;
pub use config::{
    BodyConfigError, DEFAULT_FUEL, DEFAULT_LIMIT, TransformBodyBuilder, TransformBodyLayer,
};
pub use future::ResponseFuture;
pub use rule::{BodyFormat, BodyRule};
pub use service::TransformBody;
pub use transformed::TransformedBody;
