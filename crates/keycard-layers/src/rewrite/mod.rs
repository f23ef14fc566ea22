//! URL rewrite from session metadata, request context and trigger conditions (Tyk's URL rewrite
//! middleware; reference: `docs/rewrite.md` in the repository).
//!
//! A [`RewriteRule`] has a regex, `match_pattern`, matched against the request's normalised
//! path and its query as sent (`/orders/7?x=1`; see [Path normalisation](#path-normalisation)),
//! and a target template,
//! `rewrite_to`: `$N` is capture group `N` (`$0` the whole match, an unknown group renders
//! empty), plus `$tyk_meta.KEY` and `$tyk_context.NAME` (see [`keycard_core::vars`]).
//!
//! - **The first rule that matches wins**, in the order added; the others are not consulted.
//!   All patterns are compiled once into one regex set, so many rules cost one pass. A rule may
//!   be limited to a method ([`RewriteRule::method`]) and tied to Tyk's endpoint `path`
//!   ([`RewriteRule::path`]): the first rule whose method and path fit takes the request, whether
//!   or not its pattern then matches (Tyk's endpoint semantics; case-sensitive unless
//!   [`UrlRewriteBuilder::ignore_endpoint_case`]).
//! - **Decoded retry** (as in Tyk): a pattern that does not match a text with `%` escapes is
//!   tried again on the percent-decoded text (`/users/john%20doe` matches `^/users/john doe$`).
//!   Groups are read back from the request's own text, so decoding decides whether a rule
//!   matches, never what lands in the target (`%252e%252e` stays so; **differs from Tyk**, which
//!   inserts the decoded text).
//! - **No match: the request is untouched**, even if one of the rule's triggers would fire
//!   (triggers are evaluated only for a matched rule, so they publish nothing either).
//! - The rendered target replaces path and query; the original query survives only if the
//!   target captures it (`(.*)` → `$1&new=1`), as in Tyk. A target without a leading `/` gets
//!   one. The original URI (normalised) is kept in the [`RewrittenFrom`] extension.
//! - **Absolute targets** (`http://host/...`, `https://...`, as written in the template)
//!   replace scheme and authority too, for a proxy handler downstream to send the request
//!   there; the `Host` header is left for that handler to set. See
//!   [Absolute targets](#absolute-targets).
//! - **[`Trigger`]s** are tried in order; the first that fires supplies its own `rewrite_to`.
//!   Its matches become context values (below), published in the request's
//!   [`ContextValues`](crate::context::ContextValues) before the target renders, so the
//!   trigger's `rewrite_to` and every later layer (header injection, the handler) read them.
//!
//! # Path normalisation
//! The path a pattern matches is normalised once per request, at the top of the stack (the
//! session-load stage; this layer does it itself when it runs without one), and the request
//! goes on with that path, so the pattern, the later stages and the upstream see one path
//! (RFC 3986 §6.2.2): escaped unreserved characters are decoded (`/%6frders/7` is
//! `/orders/7`), other escapes get uppercase hex (`%2f` → `%2F`), the query is left as sent.
//!
//! **Dot segments are refused, not removed** (400 `{"error":"Invalid request path"}`): `.` and
//! `..` in any spelling (`%2e%2e`, `%2E.`, `.%2e`) and those hidden behind `\`, `%5C` or `%2F`
//! (`..\..\us-2`, `..%2F..%2Fus-2`), which an upstream that takes `\` for `/` or decodes `%2F`
//! before it resolves dots would climb with. With `^/orders/(.*)` →
//! `/shards/$tyk_meta.shard/orders/$1`, `/orders/../../us-2/orders/1` would otherwise become
//! `/shards/eu-1/orders/../../us-2/orders/1`: another tenant's shard behind a normalising
//! upstream. Clients normalise their paths before they send them, so only a crafted request has
//! a dot segment, and refusing it routes nothing to a path its sender did not write. A
//! malformed escape (`%zz`) is refused the same way.
//!
//! # Encoding and safety
//! Captured text is inserted as the request had it and is never expanded again: a client who
//! sends `/p/$tyk_meta.secret` gets that literal text, not the secret (**fix**: Tyk expands it).
//! `$tyk_meta` / `$tyk_context` values are percent-encoded as one path segment before the
//! target's first `?` and form-encoded after it (metadata `"eu/1"` renders `eu%2F1`; a space is
//! `%20` in the path, **differs from Tyk**'s `+`, and `+` in the query). Arrays render as in Tyk
//! (elements escaped, empty ones dropped, see [`keycard_core::vars::render_value`]).
//!
//! No captured or variable text lets the result leave the target's fixed prefix: a path
//! segment holding captured or variable text that is, or hides, a dot segment (the same test as
//! for request paths) is refused: 400 `{"error":"Invalid request path"}` when captured text
//! made it (half a segment captured: `^/f/x(.*)` on `/f/x..`), 500
//! `{"error":"Invalid rewrite target"}` when metadata or context did (`..`, `../admin`,
//! `..\admin`; **changed**: `../admin` used to be sent as `..%2Fadmin`). Percent signs in
//! values are data: `%2e%2e` is sent as `%252e%252e`.
//!
//! The rendered path is then normalised like a request path, with leading slashes collapsed to
//! one (`//evil.example/x` would name a host to anything that resolves it against a base URL);
//! a dot segment written in the template itself (`/a/../b`) has no normalised form and is 500
//! `{"error":"Invalid rewrite target"}`.
//!
//! # Absolute targets
//! A target is absolute only when its template *starts with* the literal text `http://` or
//! `https://`; what a variable or a capture renders (`$1` = `https://evil.example/x`) is always
//! a path. Captured and variable text never changes scheme or authority:
//! - a capture (`$N`) before the `/`, `?` or `#` that ends the authority is a build error
//!   (`http://backend.internal$1` let `/api@evil.example/x` reach `evil.example`): write
//!   `http://backend.internal/$1`;
//! - `$tyk_meta` / `$tyk_context` may name the host (`http://${tyk_meta.shard}.internal/`); a
//!   `$tyk_meta` value of the form `host:port` keeps its port (as in Tyk), any other value is
//!   percent-encoded, so it cannot add userinfo or a path (`@`, `/`); `$tyk_context` values are
//!   always encoded.
//!
//! **Per-key upstreams**: a target that starts with `$tyk_meta.KEY` whose value is an
//! `http(s)://` URL (`$tyk_meta.upstream/orders`, `upstream = "http://orders.internal:8080"`) is
//! absolute, the value giving scheme, authority and an optional path prefix (Tyk leaves values
//! starting with `http` unescaped). The value must be `scheme://host[:port][/path]` (500
//! `{"error":"Invalid rewrite target"}` otherwise, and for a capture that would land in its
//! authority, `$tyk_meta.upstream$1`), and its host and port must be in the allow-list below.
//! A URL value anywhere else stays one encoded path segment (**differs from Tyk**).
//!
//! Every absolute target needs an allow-list, [`UrlRewriteBuilder::allow_hosts`]: without one
//! [`build`](UrlRewriteBuilder::build) fails with [`RewriteConfigError::AllowListRequired`]
//! (**differs from Tyk and from earlier versions of this crate**, which sent a rewrite to any
//! host, metadata `upstream = "169.254.169.254"` included). An entry matches host **and** port;
//! an entry without a port stands for the scheme's default port (80, 443), so `cache.internal`
//! does not allow `http://cache.internal:6379/`. Schemes other than `http` and `https` are a
//! build error.
//!
//! # Responses
//! | case | status | body |
//! | --- | --- | --- |
//! | a dot segment in the request path (any spelling, or behind `\`, `%5C`, `%2F`), captured text that makes one in the target, or a malformed `%` escape in the path | 400 | `{"error":"Invalid request path"}` |
//! | a variable makes a dot segment (any spelling), the template has one, the target is not a valid URL, a per-key upstream is not `scheme://host[:port][/path]` or a capture would land in its authority | 500 | `{"error":"Invalid rewrite target"}` |
//! | absolute target (written, or a per-key upstream) whose host and port are not in the allow-list | 500 | `{"error":"Rewrite target not allowed"}` |
//! | payload trigger: body over the limit (default 1 MiB, [`UrlRewriteBuilder::body_limit`]) | 413 | `{"error":"Request body too large"}` |
//! | payload trigger: the body fails mid-read | 400 | `{"error":"Failed to read request body"}` |
//! | stacked outside `SessionLoadLayer` (no session, no [`NoSession`](crate::session::NoSession)) | 500 | `{"error":"Server misconfigured: session layer missing"}` |
//!
//! Behind a session-load layer in optional mode, a request without a session renders
//! `$tyk_meta` variables empty and fires no `session_meta_matches`.
//!
//! # Trigger context values
//! Group indices `g` start at 0 for the first capture group; `i` indexes a header's or query
//! parameter's values, or counts matching path segments or payload matches. The whole match is
//! stored without `-<g>`; an optional group that did not take part is empty (Tyk).
//!
//! | option group | context keys |
//! | --- | --- |
//! | `header_matches` | `trigger-<n>-<Header-Name>-<i>[-<g>]` (canonical case: `X-Test`) |
//! | `query_val_matches` | `trigger-<n>-<param>-<i>[-<g>]` |
//! | `path_part_matches` | `trigger-<n>-<name>-<i>[-<g>]` |
//! | `session_meta_matches` | `trigger-<n>-<key>[-<g>]` (string values only) |
//! | `request_context_matches` | `trigger-<n>-<name>[-<g>]` (string values only) |
//! | `payload_matches` | `trigger-<n>-payload` (first match), `trigger-<n>-payload-<i>[-<g>]` (first 64 matches) |
//!
//! `on: any` fires at the first group that fires (later groups are not evaluated); `on: all`
//! needs every group to fire, and within a group every entry. Only the trigger that fires
//! publishes values (**differs from Tyk**, which also leaves the partial matches of triggers
//! that did not fire). A `reverse` entry fires for a present value that does not match and
//! publishes nothing. A rule with a payload trigger buffers the body of every request it
//! matches (within the limit) and passes it on byte for byte.
//!
//! # Where it goes: around the whole `Router`
//! axum picks a route *before* middleware added with `Router::layer` runs, so a rewrite in
//! there would change the URI after the routing decision and the handler for the new path
//! would never run. Wrap the router from outside instead, with `SessionLoadLayer` outside the
//! rewrite (it needs the session for `$tyk_meta`):
//! `ServiceBuilder::new().layer(session_load).layer(rewrite).service(router)`, served with
//! `axum::serve(listener, axum::ServiceExt::into_make_service(service))`. Request bodies must
//! implement `From<Bytes>` (axum's `Body` does; map hyper's `Incoming` into it first).
//!
//! # Example
//!
//! ```
//! use axum::body::Body;
//! use axum::extract::Path;
//! use axum::{Router, routing::get};
//! use http::Request;
//! use keycard_core::store::MemoryStore;
//! use keycard_layers::auth::SessionLoadLayer;
//! use keycard_layers::rewrite::{RewriteRule, Trigger, UrlRewriteLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! store.insert_key("secret-key", serde_json::json!({"shard": "eu-2"}))?;
//!
//! let rewrite = UrlRewriteLayer::rules()
//!     .rule(
//!         RewriteRule::new(r"^/orders/(\d+)$", "/shards/$tyk_meta.shard/orders/$1").trigger(
//!             Trigger::any()
//!                 .header("X-Test", r"hello-(\w+)")
//!                 .rewrite_to("/shards/test/orders/$1?who=$tyk_context.trigger-0-X-Test-0-0"),
//!         ),
//!     )
//!     .build()?;
//!
//! let router = Router::new().route(
//!     "/shards/{shard}/orders/{id}",
//!     get(|Path((shard, id)): Path<(String, String)>, uri: http::Uri| async move {
//!         format!("shard {shard}, order {id}, uri {uri}")
//!     }),
//! );
//! // Outside the router: routing happens after the rewrite.
//! let app = ServiceBuilder::new()
//!     .layer(SessionLoadLayer::new(store))
//!     .layer(rewrite)
//!     .service(router);
//!
//! let text = |response: http::Response<Body>| async move {
//!     let bytes = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
//!     String::from_utf8(bytes.to_vec()).unwrap()
//! };
//! let request = Request::get("/orders/7")
//!     .header("authorization", "Bearer secret-key")
//!     .body(Body::empty())?;
//! let response = app.clone().oneshot(request).await?;
//! assert_eq!(text(response).await, "shard eu-2, order 7, uri /shards/eu-2/orders/7");
//!
//! let request = Request::get("/orders/8")
//!     .header("authorization", "Bearer secret-key")
//!     .header("x-test", "hello-world")
//!     .body(Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(
//!     text(response).await,
//!     "shard test, order 8, uri /shards/test/orders/8?who=world"
//! );
//! # Ok(())
//! # }
//! ```

mod apply;
mod future;
mod layer;
mod rule;
mod service;

pub use self::apply::RewrittenFrom;
pub use self::future::ResponseFuture;
pub use self::layer::{DEFAULT_BODY_LIMIT, UrlRewriteBuilder, UrlRewriteLayer};
pub use self::rule::{RegexMatch, RewriteConfigError, RewriteRule, Trigger, TriggerOn};
pub use self::service::UrlRewrite;

#[cfg(test)]
mod tests;
