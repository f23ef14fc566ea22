//! Identity propagation: keycard's layers in front of a reverse proxy.
//!
//! ```text
//! client ─► Keycard: load ─► request headers ─► proxy ─► upstream
//!           (key → session,   X-User-Id, X-Tenant-Id set
//!            credential removed)
//! ```
//!
//! The backend trusts `X-User-Id` / `X-Tenant-Id` because keycard *replaces* whatever the client
//! sent under those names and strips the key.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use keycard::forward::{is_forwardable, remove_hop_by_hop};
use keycard::headers::HeaderConfigError;
use keycard::prelude::*;
use serde_json::json;

/// Forwards every request to one upstream (`http://host:port`, plain HTTP/1.1).
#[derive(Clone)]
pub struct Proxy {
    client: Client<HttpConnector, Body>,
    upstream: Uri,
}

impl Proxy {
    /// A proxy to `upstream`, e.g. `http://127.0.0.1:9000`.
    pub fn new(upstream: Uri) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            upstream,
        }
    }

    /// Sends `request` upstream and returns its response, without the hop-by-hop headers of
    /// either side (RFC 9110 §7.6.1, including the ones `Connection` names); 502 with a JSON body
    /// when the upstream cannot be reached. `CONNECT` and `TRACE` are not forwarded (405): this
    /// proxy opens no tunnels, and a `TRACE` would echo the injected identity headers.
    pub async fn forward(&self, mut request: Request) -> Response {
        if !is_forwardable(request.method()) {
            return method_not_allowed();
        }
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let mut parts = self.upstream.clone().into_parts();
        parts.path_and_query = path_and_query.parse().ok();
        let Ok(uri) = Uri::from_parts(parts) else {
            return bad_gateway("Upstream URL could not be built");
        };
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        remove_hop_by_hop(headers);
        headers.remove(header::HOST);
        match self.client.request(request).await {
            Ok(response) => {
                let mut response = response.map(Body::new);
                remove_hop_by_hop(response.headers_mut());
                response
            }
            Err(error) => {
                tracing::warn!(%error, upstream = %self.upstream, "upstream request failed");
                bad_gateway("Upstream unavailable")
            }
        }
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    let mut response = (status, json!({ "error": message }).to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_gateway(message: &str) -> Response {
    json_error(StatusCode::BAD_GATEWAY, message)
}

/// The methods the proxy forwards, for the `Allow` header a 405 must carry.
const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

fn method_not_allowed() -> Response {
    let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(FORWARDED_METHODS));
    response
}

async fn proxy(State(proxy): State<Proxy>, request: Request) -> Result<Response, Infallible> {
    Ok(proxy.forward(request).await)
}

/// The gateway: every path is proxied to `upstream` through the quickstart stack over `store`.
///
/// # Errors
/// If the header rules do not build (they are literals, so never in practice).
pub fn app(store: impl SessionStore, upstream: Uri) -> Result<Router, HeaderConfigError> {
    let proxy = Router::new()
        .fallback(proxy)
        .with_state(Proxy::new(upstream));
    crate::quickstart::wrap(proxy, store)
}

/// A stand-in backend that answers every request with the headers it received, as JSON.
pub fn echo_upstream() -> Router {
    crate::quickstart::echo_router()
}
