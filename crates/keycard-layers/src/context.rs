//! Request context variables: what `$tyk_context.NAME` reads (reference: `docs/variables.md`).
//!
//! | name | value |
//! | --- | --- |
//! | `path` | the request path, normalised by the session-load stage (see [`crate::auth`]) |
//! | `path_parts` | the path's non-empty segments joined by `,` |
//! | `remote_addr` | the client IP ([`ClientAddr`], resolved once by the session-load stage): the peer ([`PeerAddr`], or axum's `ConnectInfo<SocketAddr>`), or an `X-Forwarded-For` entry counted from the right past the proxies you trust ([`ForwardedFor`]) |
//! | `request_id` | the `x-request-id` header, else a UUID v4 generated once per request ([`RequestId`]) |
//! | `headers_<Name>` | the first value of header `Name` (`_` stands for `-`, any case) |
//! | `request_data_<k>` | the first value of query parameter `k` |
//! | `cookies_<name>` | cookie `name` (`_` in the variable matches `-` in the cookie name) |
//! | `rate_limit_limit`, `rate_limit_remaining`, `rate_limit_reset`, `quota_limit`, `quota_remaining`, `quota_reset` | the decision of the rate-limit stage, on admitted requests ([`crate::ratelimit::RateLimitValues`]) |
//! | `jwt_claims_<name>` | the token's header field or claim `<name>`, with a JWT source (feature `jwt`, `auth::jwt`); strings as they are, other values as JSON |
//! | `token` | the raw API key — only where the session-load stage was told to expose it (`expose_token`, for Tyk compatibility); empty otherwise |
//! | anything else | a value put into the request's [`ContextValues`] by a layer or handler |
//!
//! Layers and handlers add their own values through [`ContextValues`]:
//!
//! ```
//! use keycard_layers::context::ContextValues;
//!
//! let mut request = http::Request::new(());
//! ContextValues::insert_into(request.extensions_mut(), "region", "eu-west");
//! let values = request.extensions().get::<ContextValues>().unwrap();
//! assert_eq!(values.get("region"), Some("eu-west"));
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use http::{Extensions, HeaderMap, Request, Uri};
use keycard_core::key::ApiKey;
use keycard_core::metadata::Metadata;
use keycard_core::vars::Vars;

use crate::ratelimit::values::RateLimitValues;

/// Context values added by layers and handlers, read by `$tyk_context.NAME` (a request extension).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContextValues(HashMap<String, String>);

impl ContextValues {
    /// The value called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Sets `name` to `value`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    /// Sets `name` to `value` in the `ContextValues` of `extensions`, creating them if needed.
    pub fn insert_into(
        extensions: &mut Extensions,
        name: impl Into<String>,
        value: impl Into<String>,
    ) {
        match extensions.get_mut::<Self>() {
            Some(values) => values.insert(name, value),
            None => {
                let mut values = Self::default();
                values.insert(name, value);
                extensions.insert(values);
            }
        }
    }
}

/// The peer address of the connection (a request extension). Servers that do not use axum's
/// `ConnectInfo` can insert this themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The request id: the `x-request-id` header, or a UUID v4 generated once per request and kept
/// in the extensions so every layer renders the same id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The request's id, generated and stored on first use.
    pub fn get_or_create<B>(request: &mut Request<B>) -> &str {
        if request.extensions().get::<Self>().is_none() {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
            request.extensions_mut().insert(Self(id));
        }
        &request
            .extensions()
            .get::<Self>()
            .expect("inserted above")
            .0
    }
}

/// Where the client address (`$tyk_context.remote_addr`) comes from. The session-load stage
/// resolves it once per request into a [`ClientAddr`]; every later stage reads that.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedFor {
    /// The connection's peer address only (the default).
    #[default]
    Ignore,
    /// Behind this many proxies that you run, each appending the address it saw to
    /// `X-Forwarded-For`: the client is that many entries from the right. Entries further left
    /// were written by the client and are never used; with fewer entries than proxies the peer
    /// address is used. `Proxies(0)` is [`Ignore`](Self::Ignore).
    Proxies(u8),
}

impl ForwardedFor {
    /// The client address of a request with these `headers` and `extensions`.
    pub fn client_addr(self, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
        if let Self::Proxies(hops @ 1..) = self {
            let mut entries: Vec<&str> = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .collect();
            let hops = usize::from(hops);
            if entries.len() >= hops {
                let entry = entries.swap_remove(entries.len() - hops).trim();
                if let Ok(ip) = entry.parse() {
                    return Some(ip);
                }
            }
        }
        peer_addr(extensions)
    }
}

/// The client address the session-load stage resolved for this request (a request extension),
/// read by `$tyk_context.remote_addr` in every later stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The connection's peer: [`PeerAddr`], or axum's `ConnectInfo<SocketAddr>`.
fn peer_addr(extensions: &Extensions) -> Option<IpAddr> {
    if let Some(PeerAddr(addr)) = extensions.get::<PeerAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0.ip());
    }
    None
}

/// A request's variables: its session metadata and its context, borrowed from the request.
pub(crate) struct RequestVars<'a> {
    pub(crate) metadata: Option<&'a Metadata>,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) extensions: &'a Extensions,
}

impl<'a> RequestVars<'a> {
    /// The variables of `request`, with `metadata` from its session.
    pub(crate) fn new<B>(request: &'a Request<B>, metadata: Option<&'a Metadata>) -> Self {
        Self {
            metadata,
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    fn remote_addr(&self) -> Option<IpAddr> {
        match self.extensions.get::<ClientAddr>() {
            Some(ClientAddr(ip)) => Some(*ip),
            None => peer_addr(self.extensions),
        }
    }
}

impl Vars for RequestVars<'_> {
    fn metadata(&self) -> Option<&Metadata> {
        self.metadata
    }

    fn context(&self, name: &str) -> Option<Cow<'_, str>> {
        if let Some(value) = self
            .extensions
            .get::<ContextValues>()
            .and_then(|values| values.get(name))
        {
            return Some(Cow::Borrowed(value));
        }
        match name {
            "path" => return Some(Cow::Borrowed(self.uri.path())),
            "path_parts" => {
                let parts: Vec<&str> = self
                    .uri
                    .path()
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .collect();
                return Some(Cow::Owned(parts.join(",")));
            }
            "remote_addr" => return self.remote_addr().map(|ip| Cow::Owned(ip.to_string())),
            "request_id" => {
                return self
                    .extensions
                    .get::<RequestId>()
                    .map(|id| Cow::Borrowed(id.0.as_str()))
                    .or_else(|| {
                        self.headers
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .map(Cow::Borrowed)
                    });
            }
            "token" => {
                return self
                    .extensions
                    .get::<ApiKey>()
                    .map(|key| Cow::Borrowed(key.expose()));
            }
            "rate_limit_limit"
            | "rate_limit_remaining"
            | "rate_limit_reset"
            | "quota_limit"
            | "quota_remaining"
            | "quota_reset" => {
                return self
                    .extensions
                    .get::<RateLimitValues>()
                    .and_then(|values| values.get(name))
                    .map(Cow::Owned);
            }
            _ => {}
        }
        if let Some(header) = name.strip_prefix("headers_") {
            let header = header.replace('_', "-");
            return self
                .headers
                .get(header.as_str())
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed);
        }
        if let Some(param) = name.strip_prefix("request_data_") {
            return form_urlencoded::parse(self.uri.query()?.as_bytes())
                .find(|(k, _)| k == param)
                .map(|(_, v)| v);
        }
        if let Some(cookie) = name.strip_prefix("cookies_") {
            return crate::cookie::find(self.headers, |n| n.replace('-', "_") == cookie)
                .map(Cow::Borrowed);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycard_core::vars::Template;

    fn render(template: &str, request: &Request<()>) -> String {
        let vars = RequestVars::new(request, None);
        Template::parse(template).unwrap().render_text(&vars).value
    }

    #[test]
    fn request_derived_values() {
        let mut request = Request::builder()
            .uri("/a/b/c?k=v%201&k=second")
            .header("X-Name", "alice")
            .header("cookie", "sess-id=s1; other=o; quoted=\"q v\"")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr("10.0.0.7:5000".parse().unwrap()));
        request.extensions_mut().insert(ApiKey::new("raw-key"));
        assert_eq!(render("$tyk_context.path", &request), "/a/b/c");
        assert_eq!(render("$tyk_context.path_parts", &request), "a,b,c");
        assert_eq!(render("$tyk_context.headers_X_Name", &request), "alice");
        assert_eq!(render("$tyk_context.headers_x_name", &request), "alice");
        assert_eq!(render("$tyk_context.request_data_k", &request), "v 1");
        assert_eq!(render("$tyk_context.cookies_sess_id", &request), "s1");
        // One cookie parser for keys and context: quotes are not part of the value.
        assert_eq!(render("$tyk_context.cookies_quoted", &request), "q v");
        assert_eq!(render("$tyk_context.remote_addr", &request), "10.0.0.7");
        assert_eq!(render("$tyk_context.token", &request), "raw-key");
        assert_eq!(render("[$tyk_context.nope]", &request), "[]");
    }

    #[test]
    fn request_id_is_generated_once_or_taken_from_the_header() {
        let mut request = Request::new(());
        let first = RequestId::get_or_create(&mut request).to_owned();
        assert_eq!(first.len(), 36);
        assert_eq!(RequestId::get_or_create(&mut request), first);
        assert_eq!(render("$tyk_context.request_id", &request), first);

        let mut request = Request::builder()
            .header("x-request-id", "abc")
            .body(())
            .unwrap();
        assert_eq!(RequestId::get_or_create(&mut request), "abc");
    }

    #[test]
    fn forwarded_for_counts_trusted_proxies_from_the_right() {
        let mut request = Request::builder()
            // The client wrote the first entry; our two proxies appended the other two.
            .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
            .header("x-forwarded-for", "10.0.0.1")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert(PeerAddr("127.0.0.1:1".parse().unwrap()));
        let (headers, extensions) = (request.headers(), request.extensions());
        let client =
            |trust: ForwardedFor| trust.client_addr(headers, extensions).unwrap().to_string();
        assert_eq!(client(ForwardedFor::Ignore), "127.0.0.1");
        assert_eq!(client(ForwardedFor::Proxies(0)), "127.0.0.1");
        assert_eq!(client(ForwardedFor::Proxies(1)), "10.0.0.1");
        assert_eq!(client(ForwardedFor::Proxies(2)), "203.0.113.9");
        assert_eq!(client(ForwardedFor::Proxies(3)), "6.6.6.6");
        // More proxies than entries: the header cannot be trusted, the peer is used.
        assert_eq!(client(ForwardedFor::Proxies(4)), "127.0.0.1");
        // Without a resolved ClientAddr, templates see the peer.
        assert_eq!(render("$tyk_context.remote_addr", &request), "127.0.0.1");
        request
            .extensions_mut()
            .insert(ClientAddr("203.0.113.9".parse().unwrap()));
        assert_eq!(render("$tyk_context.remote_addr", &request), "203.0.113.9");
    }

    #[test]
    fn client_text_is_never_expanded() {
        let request = Request::builder()
            .header("x-name", "$tyk_meta.secret")
            .body(())
            .unwrap();
        assert_eq!(
            render("hi $tyk_context.headers_X_Name", &request),
            "hi $tyk_meta.secret"
        );
    }

    #[test]
    fn inserted_values_win() {
        let mut request = Request::new(());
        ContextValues::insert_into(request.extensions_mut(), "path", "custom");
        assert_eq!(render("$tyk_context.path", &request), "custom");
    }
}
