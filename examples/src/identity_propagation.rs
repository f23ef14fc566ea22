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
use keycard::headers::HeaderConfigError;
use keycard::prelude::*;
use serde_json::json;

/// Headers that describe one hop, not the message: never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [header::HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

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

    /// Sends `request` upstream and returns its response; 502 with a JSON body when the upstream
    /// cannot be reached.
    pub async fn forward(&self, mut request: Request) -> Response {
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
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
        headers.remove(header::HOST);
        match self.client.request(request).await {
            Ok(response) => {
                let mut response = response.map(Body::new);
                for name in &HOP_BY_HOP {
                    response.headers_mut().remove(name);
                }
                response
            }
            Err(error) => {
                tracing::warn!(%error, upstream = %self.upstream, "upstream request failed");
                bad_gateway("Upstream unavailable")
            }
        }
    }
}

fn bad_gateway(message: &str) -> Response {
    let mut response = (
        StatusCode::BAD_GATEWAY,
        json!({ "error": message }).to_string(),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
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
