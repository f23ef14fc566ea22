//! Where a request's API key comes from, and how it is stripped before going upstream.

use std::fmt;

use http::header::{self, HeaderName};
use http::{Request, Uri};
use keycard_core::key::ApiKey;

/// How the identities of generated (JWT / OIDC) sessions begin before they are hashed into key
/// ids. An API key that begins so is refused as an unknown key, with or without the `jwt`
/// feature: otherwise a client that sends `jwt:<org>:<user>` as an API key to an opaque-key
/// stack on the same store would load that user's generated session.
pub(crate) const GENERATED_IDENTITY_PREFIX: &str = "jwt:";

/// One place to look for the API key. A [`SessionLoadLayer`](super::SessionLoadLayer) tries its
/// sources in order; the first non-empty value wins.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySource(Source);

#[derive(Clone, PartialEq, Eq)]
enum Source {
    Header(HeaderName),
    Query(String),
    Cookie(String),
}

impl KeySource {
    /// The `Authorization` header; a leading `Bearer ` (any case) is stripped. The default.
    pub fn authorization() -> Self {
        Self(Source::Header(header::AUTHORIZATION))
    }

    /// A request header, e.g. `KeySource::header(HeaderName::from_static("x-api-key"))`.
    /// `Authorization` behaves as [`KeySource::authorization`].
    pub fn header(name: HeaderName) -> Self {
        Self(Source::Header(name))
    }

    /// A query parameter.
    pub fn query(name: impl Into<String>) -> Self {
        Self(Source::Query(name.into()))
    }

    /// A cookie.
    pub fn cookie(name: impl Into<String>) -> Self {
        Self(Source::Cookie(name.into()))
    }

    /// Whether this source is the `Authorization` header (401s then carry
    /// `WWW-Authenticate: Bearer`).
    pub fn is_authorization(&self) -> bool {
        matches!(&self.0, Source::Header(name) if name == header::AUTHORIZATION)
    }

    /// The key in this source: `None` when absent (empty values count as absent),
    /// `Some(None)` for a header that is there but is not visible ASCII (a bad credential, not
    /// a missing one).
    pub(crate) fn find<B>(&self, request: &Request<B>) -> Option<Option<ApiKey>> {
        let key = match &self.0 {
            Source::Header(name) => {
                let Ok(value) = request.headers().get(name)?.to_str() else {
                    return Some(None);
                };
                let value = value.trim();
                if name == header::AUTHORIZATION {
                    strip_bearer(value)
                } else {
                    value
                }
                .to_owned()
            }
            Source::Query(name) => form_urlencoded::parse(request.uri().query()?.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())?,
            Source::Cookie(name) => {
                crate::cookie::find(request.headers(), |n| n == name)?.to_owned()
            }
        };
        (!key.is_empty()).then(|| Some(ApiKey::new(key)))
    }

    /// Removes the credential from the request so it never reaches an upstream.
    pub(crate) fn strip<B>(&self, request: &mut Request<B>) {
        match &self.0 {
            Source::Header(name) => {
                request.headers_mut().remove(name);
            }
            Source::Query(name) => {
                if let Some(uri) = without_query_param(request.uri(), name) {
                    *request.uri_mut() = uri;
                }
            }
            Source::Cookie(name) => crate::cookie::strip(request.headers_mut(), name),
        }
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Header(name) => write!(f, "KeySource::header({name})"),
            Source::Query(name) => write!(f, "KeySource::query({name})"),
            Source::Cookie(name) => write!(f, "KeySource::cookie({name})"),
        }
    }
}

fn strip_bearer(value: &str) -> &str {
    // The value arrives trimmed, so a bare scheme ("Bearer ") is just "Bearer": no key.
    if value.eq_ignore_ascii_case("bearer") {
        return "";
    }
    match value.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => value[7..].trim_start(),
        _ => value,
    }
}

fn without_query_param(uri: &Uri, name: &str) -> Option<Uri> {
    let query = uri.query()?;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            form_urlencoded::parse(key.as_bytes())
                .next()
                .is_none_or(|(k, _)| k != name)
        })
        .collect();
    let path = uri.path();
    let path_and_query = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn found(source: &KeySource, request: &Request<()>) -> Option<String> {
        source
            .find(request)
            .map(|k| k.expect("visible ASCII").expose().to_owned())
    }

    #[test]
    fn authorization_strips_bearer_in_any_case() {
        let source = KeySource::authorization();
        for value in ["Bearer abc", "bearer abc", "BEARER   abc", "abc"] {
            let req = request("/", &[("authorization", value)]);
            assert_eq!(found(&source, &req).as_deref(), Some("abc"), "{value}");
        }
        assert_eq!(
            found(&source, &request("/", &[("authorization", "Bearer ")])),
            None
        );
    }

    #[test]
    fn other_headers_are_taken_as_is() {
        let source = KeySource::header(HeaderName::from_static("x-api-key"));
        let req = request("/", &[("x-api-key", "Bearer abc")]);
        assert_eq!(found(&source, &req).as_deref(), Some("Bearer abc"));
    }

    #[test]
    fn query_and_cookie_sources() {
        let req = request(
            "/p?a=1&key=k%201&b=2",
            &[("cookie", "x=1; session=\"s-1\""), ("cookie", "y=2")],
        );
        assert_eq!(
            found(&KeySource::query("key"), &req).as_deref(),
            Some("k 1")
        );
        assert_eq!(
            found(&KeySource::cookie("session"), &req).as_deref(),
            Some("s-1")
        );
        assert_eq!(found(&KeySource::cookie("y"), &req).as_deref(), Some("2"));
        assert_eq!(found(&KeySource::cookie("nope"), &req), None);
    }

    #[test]
    fn strip_removes_only_the_credential() {
        let mut req = request("http://h/p?a=1&key=k&b=2", &[("cookie", "x=1; session=s")]);
        KeySource::query("key").strip(&mut req);
        assert_eq!(req.uri(), "http://h/p?a=1&b=2");
        KeySource::query("a").strip(&mut req);
        KeySource::query("b").strip(&mut req);
        assert_eq!(req.uri(), "http://h/p");
        KeySource::cookie("session").strip(&mut req);
        assert_eq!(req.headers()["cookie"], "x=1");
        KeySource::cookie("x").strip(&mut req);
        assert!(req.headers().get("cookie").is_none());
    }
}
