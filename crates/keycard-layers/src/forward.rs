//! Helpers for services that forward requests to another server (reverse proxies, gateways):
//! what must not travel past one hop (RFC 9110 §7.6.1) and which methods are not forwarded.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, Method};
//! use keycard_layers::forward::{is_forwardable, remove_hop_by_hop};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("connection", HeaderValue::from_static("keep-alive, x-hop"));
//! headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
//! headers.insert("x-hop", HeaderValue::from_static("only for the next hop"));
//! headers.insert("x-user-id", HeaderValue::from_static("u-1"));
//! remove_hop_by_hop(&mut headers);
//! assert_eq!(headers.len(), 1);
//! assert!(headers.contains_key("x-user-id"));
//!
//! assert!(is_forwardable(&Method::GET));
//! assert!(!is_forwardable(&Method::CONNECT) && !is_forwardable(&Method::TRACE));
//! ```

use http::header::{self, HeaderName};
use http::{HeaderMap, Method};

/// Fields that describe a connection, not the message: RFC 9110 §7.6.1 lists `Connection`,
/// `Proxy-Connection`, `Keep-Alive`, `TE`, `Transfer-Encoding` and `Upgrade`; `Trailer` and
/// the `Proxy-Authenticate`/`Proxy-Authorization` pair belong to the proxy hop too.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Removes every hop-by-hop field from `headers`: the fixed list above and every field the
/// `Connection` header names (`Connection: close, x-hop` removes `x-hop`). A forwarder that does
/// not implement protocol upgrades drops `Upgrade`, so the next hop never switches protocols on
/// a connection that was not asked to.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The non-empty, trimmed tokens of every `Connection` header (`close`, `keep-alive`, field
/// names...), in order.
pub(crate) fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Whether a forwarder should pass requests with `method` on. `CONNECT` asks for a tunnel,
/// which a request forwarder does not open, and `TRACE` echoes the request — cookies and the
/// identity headers just injected — back to whoever sent it (cross-site tracing); both are
/// answered by the forwarder (405) instead.
pub fn is_forwardable(method: &Method) -> bool {
    method != Method::CONNECT && method != Method::TRACE
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn connection_named_fields_go_even_across_several_connection_headers() {
        let mut headers = HeaderMap::new();
        headers.append("connection", HeaderValue::from_static("x-a , X-B"));
        headers.append("connection", HeaderValue::from_static("x-c,,bad name"));
        for name in ["x-a", "x-b", "x-c", "te", "upgrade", "proxy-connection"] {
            headers.insert(name, HeaderValue::from_static("1"));
        }
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.keys().collect::<Vec<_>>(), ["x-kept"]);
    }
}
