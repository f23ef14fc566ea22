//! The request path every stage matches and the service is handed: normalised once, at the
//! top of the stack, so a scope or a rewrite pattern never sees one path while the upstream
//! sees another (`/%6Frders` skipping rules written for `/orders`).
//!
//! RFC 3986 §6.2.2 syntax-based normalisation of the path (the query is left as sent):
//! - percent-encoded unreserved characters (`A-Za-z0-9-._~`) are decoded (`%6F` → `o`,
//!   `%2E` → `.`), every other escape keeps its byte with uppercase hex (`%2f` → `%2F`);
//! - dot segments are **refused**, not removed: a `.` or `..` segment in any spelling (`..`,
//!   `%2e%2e`, `%2E.`, `.%2e`) or hidden behind `\`, `%5C` or `%2F` (`..\..\x`, `..%2F..%2Fx`,
//!   which servers that take `\` for `/`, or decode `%2F` before they resolve dots, treat as
//!   dot segments) is answered 400 `{"error":"Invalid request path"}`, and so is a malformed
//!   escape (`%zz`, a lone `%`). Clients normalise their paths before they send them, so only
//!   a crafted request has one; removing them instead would quietly route such a request to a
//!   path its sender did not write;
//! - runs of `/` are collapsed (`//orders` → `/orders`), as nginx's `merge_slashes` and many
//!   routers do, so `//orders` cannot skip a rule scoped to `/orders` and reach a backend that
//!   merges them.
//!
//! Hand-written rather than taken from a crate: `percent-encoding` only decodes everything (which
//! would turn `%2F` into a separator); `url` follows WHATWG, which removes `%2e` dot segments
//! and maps `\` to `/` but neither decodes unreserved escapes nor uppercases hex; `fluent-uri`
//! does RFC 3986 §6.2.2 fully, but only for input that is strict RFC 3986 (it refuses the `{`,
//! `|`, `"` that the `http` crate, and Tyk, accept in paths) and it cannot refuse instead of
//! remove. The dot-segment test is shared with the rewrite's renderer
//! ([`hides_dot_segment`]), so a request path and a rewritten one are held to the same rule.

use std::borrow::Cow;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Uri};
use keycard_core::vars::hides_dot_segment;

/// Marks a request whose path [`request`] has normalised (a request extension), so later
/// stages do not do it again.
#[derive(Clone, Copy, Debug)]
struct Normalized;

/// Why a path cannot be normalised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InvalidPath {
    /// A `.` or `..` segment, in any spelling or hidden behind `\`, `%5C`, `%2F`.
    DotSegment,
    /// A `%` not followed by two hex digits.
    MalformedEscape,
}

/// Normalises `request`'s path in place, once: a request already normalised (by the
/// session-load stage, at the top of the stack) is left as it is. Every stage that matches the
/// path calls this first, so it also holds in stacks without the session-load stage.
pub(crate) fn request<B>(request: &mut Request<B>) -> Result<(), InvalidPath> {
    if request.extensions().get::<Normalized>().is_some() {
        return Ok(());
    }
    if let Some(uri) = normalized_uri(request.uri())? {
        *request.uri_mut() = uri;
    }
    request.extensions_mut().insert(Normalized);
    Ok(())
}

/// `uri` with its path normalised, or `None` when it already is.
fn normalized_uri(uri: &Uri) -> Result<Option<Uri>, InvalidPath> {
    let Some(path_and_query) = uri.path_and_query() else {
        return Ok(None);
    };
    let Cow::Owned(normal) = path(path_and_query.path())? else {
        return Ok(None);
    };
    let mut text = normal;
    if let Some(query) = path_and_query.query() {
        text.push('?');
        text.push_str(query);
    }
    // Decoding only ever yields unreserved characters, which are valid wherever an escape was.
    let path_and_query = PathAndQuery::from_maybe_shared(Bytes::from(text))
        .map_err(|_| InvalidPath::MalformedEscape)?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts)
        .map(Some)
        .map_err(|_| InvalidPath::MalformedEscape)
}

/// The normalised form of `path` (borrowed when it already is), or why it has none.
pub(crate) fn path(path: &str) -> Result<Cow<'_, str>, InvalidPath> {
    let normal = percent_normalized(path)?;
    // A dot segment needs a dot, plain or escaped (`%2e` is decoded above; what escapes remain
    // are checked segment by segment): most paths have neither and skip the scan.
    let may_hide = normal.bytes().any(|b| b == b'.' || b == b'%');
    if may_hide && normal.split('/').any(hides_dot_segment) {
        return Err(InvalidPath::DotSegment);
    }
    if normal.contains("//") {
        let mut merged = String::with_capacity(normal.len());
        for c in normal.chars() {
            if !(c == '/' && merged.ends_with('/')) {
                merged.push(c);
            }
        }
        return Ok(Cow::Owned(merged));
    }
    Ok(normal)
}

/// A scope pattern in the form of the paths it is matched against: escapes normalised as
/// [`path`] does, dots left alone (a pattern is not a path), a malformed escape kept as
/// written (no normalised path has one, so it matches nothing).
pub(crate) fn pattern(pattern: &str) -> String {
    percent_normalized(pattern).map_or_else(|_| pattern.to_owned(), Cow::into_owned)
}

/// Decodes escaped unreserved characters and uppercases the hex of the others.
fn percent_normalized(text: &str) -> Result<Cow<'_, str>, InvalidPath> {
    let Some(first) = text.find('%') else {
        return Ok(Cow::Borrowed(text));
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    out.push_str(&text[..first]);
    let mut at = first;
    while at < bytes.len() {
        let Some(next) = text[at..].find('%').map(|offset| at + offset) else {
            out.push_str(&text[at..]);
            break;
        };
        out.push_str(&text[at..next]);
        let hex = |i: usize| {
            bytes
                .get(next + i)
                .and_then(|&b| char::from(b).to_digit(16))
                .ok_or(InvalidPath::MalformedEscape)
        };
        let byte = u8::try_from(hex(1)? * 16 + hex(2)?).expect("two hex digits fit a byte");
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push_str(&text[next + 1..next + 3].to_ascii_uppercase());
        }
        at = next + 3;
    }
    if out == text {
        return Ok(Cow::Borrowed(text));
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal(text: &str) -> Result<String, InvalidPath> {
        path(text).map(Cow::into_owned)
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_other_hex_uppercased() {
        assert_eq!(normal("/%6Frders/%37").unwrap(), "/orders/7");
        assert_eq!(normal("/%6frders").unwrap(), "/orders");
        assert_eq!(normal("/a%2fb%3a%C3%a9").unwrap(), "/a%2Fb%3A%C3%A9");
        assert_eq!(normal("/%7E%2D%5F%2E%41z").unwrap(), "/~-_.Az");
        // `%25` stays an escape: `%252e` is the text `%2e`, not a dot.
        assert_eq!(normal("/%252e%252e").unwrap(), "/%252e%252e");
    }

    #[test]
    fn runs_of_slashes_are_collapsed() {
        assert_eq!(normal("//orders").unwrap(), "/orders");
        assert_eq!(normal("/a///b//%6F").unwrap(), "/a/b/o");
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for text in ["/", "/orders/7", "/a%2Fb", "/{id}|x", "", "*"] {
            assert!(matches!(path(text), Ok(Cow::Borrowed(_))), "{text}");
        }
    }

    #[test]
    fn dot_segments_are_refused_in_every_spelling() {
        for text in [
            "/..",
            "/.",
            "/a/../b",
            "/a/./b",
            "/a/..",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/%2E./x",
            "/.%2e/x",
            "/%2e/x",
            r"/..\x",
            r"/a\..\x",
            "/..%5cx",
            "/..%5Cx",
            "/%2e%2e%5cx",
            "/..%2fx",
            "/..%2Fx",
            "/x%2F..%2Fy",
        ] {
            assert_eq!(normal(text), Err(InvalidPath::DotSegment), "{text}");
        }
        for text in [
            "/...",
            "/a..",
            "/v1.2",
            "/.well-known/x",
            "/a%2Eb",
            r"/a\b",
            "/a%5Cb",
        ] {
            assert!(normal(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for text in ["/%", "/%4", "/%zz", "/a%g1", "/%%41"] {
            assert_eq!(normal(text), Err(InvalidPath::MalformedEscape), "{text}");
        }
    }

    #[test]
    fn patterns_are_normalised_like_paths_but_keep_their_dots_and_stars() {
        assert_eq!(pattern("/%6Frders/*"), "/orders/*");
        assert_eq!(pattern("/a%2fb/../*"), "/a%2Fb/../*");
        assert_eq!(pattern("/bad%zz"), "/bad%zz");
    }

    #[test]
    fn the_request_is_normalised_once_and_keeps_its_query() {
        let mut request = Request::get("http://h.example/%6Frders/%37?q=%6F&r=%2e%2e")
            .body(())
            .unwrap();
        super::request(&mut request).unwrap();
        assert_eq!(request.uri(), "http://h.example/orders/7?q=%6F&r=%2e%2e");
        // Marked: a later stage does not normalise again (here: would not refuse).
        *request.uri_mut() = Uri::from_static("/a/../b");
        assert_eq!(super::request(&mut request), Ok(()));

        let mut request = Request::get("/x/%2e%2e/y").body(()).unwrap();
        assert_eq!(super::request(&mut request), Err(InvalidPath::DotSegment));
    }
}
