//! Integration tests of keycard live in `tests/`; this library holds what they share.

pub mod http {
    //! Real HTTP on loopback: serve a router on a free port, send one request, read the answer.
    //!
    //! Small and generic on purpose: every test file that speaks HTTP uses these two functions.

    use std::net::SocketAddr;

    use ::http::{HeaderMap, Method, Request, StatusCode};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use serde_json::Value;

    /// Serves `router` on `127.0.0.1` on a free port, in a background task of the current runtime.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn spawn(router: axum::Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("serve the router");
        });
        addr
    }

    /// Sends one request and returns the status, the headers and the body as JSON: `Null` for an
    /// empty body, a `String` holding the text when the body is not JSON.
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
        let client = Client::builder(TokioExecutor::new()).build_http();
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
}
