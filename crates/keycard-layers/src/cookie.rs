//! The one `Cookie` header parser: the session-load stage reads and strips its key cookie with
//! it, and `$tyk_context.cookies_<name>` reads through it.

use http::HeaderMap;
use http::header::{self, HeaderValue};

/// The `name=value` pairs of one `Cookie` header value; a value in double quotes is read
/// without them (RFC 6265 §4.1.1 allows them; Go's `net/http`, which Tyk uses, drops them).
fn pairs(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(';').filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some((name.trim(), value))
    })
}

/// The value of the first cookie in the request's `Cookie` headers whose name `matches`.
pub(crate) fn find(headers: &HeaderMap, matches: impl Fn(&str) -> bool) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(pairs)
        .find(|(n, _)| matches(n))
        .map(|(_, v)| v)
}

/// Removes every cookie called `name` from the request's `Cookie` headers (a header left empty
/// goes).
pub(crate) fn strip(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| {
            let Ok(text) = value.to_str() else {
                return Some(value.clone());
            };
            let rest: Vec<&str> = text
                .split(';')
                .map(str::trim)
                .filter(|pair| pair.split_once('=').is_none_or(|(n, _)| n.trim() != name))
                .filter(|pair| !pair.is_empty())
                .collect();
            // Joining valid header text with "; " stays valid.
            (!rest.is_empty()).then(|| HeaderValue::from_str(&rest.join("; ")).ok())?
        })
        .collect();
    headers.remove(header::COOKIE);
    for value in kept {
        headers.append(header::COOKIE, value);
    }
}
