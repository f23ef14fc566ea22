//! Serve a router on a free loopback port and talk to it over real HTTP/1.1.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower::Service;

/// Serves `router` on `127.0.0.1:0` in a background task (with `ConnectInfo`), returning its
/// address. The server lives as long as the test's runtime.
pub async fn spawn(router: Router) -> SocketAddr {
    spawn_service(router).await
}

/// Like [`spawn`], for any tower service of axum requests: a stack that wraps the router from
/// outside, such as a URL rewrite (axum routes before `Router::layer` middleware runs).
pub async fn spawn_service<S>(service: S) -> SocketAddr
where
    S: Service<axum::extract::Request, Response = axum::response::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    let make_service =
        axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<SocketAddr>(
            service,
        );
    tokio::spawn(async move {
        axum::serve(listener, make_service)
            .await
            .expect("test server failed");
    });
    addr
}

/// A response, read whole.
#[derive(Debug)]
pub struct TestResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body bytes.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON (panics with the body text if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 client for one server address.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    inner: HyperClient<HttpConnector, Full<Bytes>>,
}

impl Client {
    /// A client for the server at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            inner: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends `method path` with `headers` and an optional body; panics on transport errors
    /// (a test failure, with the reason).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> TestResponse {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .expect("valid test request");
        let response = self
            .inner
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("read body").to_bytes();
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET path` with headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        self.send(Method::GET, path, headers, None).await
    }

    /// `POST path` with headers and no body.
    pub async fn post(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        self.send(Method::POST, path, headers, None).await
    }
}

/// Sends one request to a full URL and returns the status, the headers and the body as JSON:
/// `Null` for an empty body, a `String` holding the text when the body is not JSON.
///
/// A new client per call: tests run on different runtimes, and pooled connections must not
/// outlive the runtime that opened them.
///
/// # Panics
/// If the request cannot be built or sent.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (StatusCode, HeaderMap, Value) {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(body.into()))
        .expect("a valid request");
    let client: HyperClient<HttpConnector, Full<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build_http();
    let response = client.request(request).await.expect("send the request");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("read the body").to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (parts.status, parts.headers, value)
}

/// Writes `request` (a whole HTTP/1.1 message, written by hand: what a hostile client sends and
/// HTTP clients refuse to) to `addr` and returns everything the server answers until it closes
/// the connection (send `connection: close`), within 5 seconds.
///
/// # Panics
/// If the connection fails or the server does not answer in time.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    stream.write_all(request).await.expect("write the request");
    let mut response = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut response),
    )
    .await
    .expect("the server answers within 5 s")
    .expect("read the response");
    String::from_utf8_lossy(&response).into_owned()
}
