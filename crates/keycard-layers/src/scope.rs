//! Where a rule applies: a path pattern and optionally a method. Shared by the layers whose rules
//! are scoped (`headers`, `body`). Patterns match the request's normalised path (see
//! `normalize`; the layers normalise before they match), so `/%6Frders` is in `/orders/*`.

use http::Method;

/// Where scoped rules apply: a path pattern (`*` matches any run of characters, so `/orders/*`
/// matches everything under `/orders/`) and optionally a method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pattern: String,
    method: Option<Method>,
}

impl Scope {
    /// Requests whose path matches `pattern`, any method. The path is the normalised one
    /// (RFC 3986 §6.2.2: `%6F` is `o`, other escapes in uppercase hex), and so is the pattern:
    /// `/%6frders/*` and `/orders/*` are the same scope.
    pub fn path(pattern: impl Into<String>) -> Self {
        Self {
            pattern: crate::normalize::pattern(&pattern.into()),
            method: None,
        }
    }

    /// Only requests with this method.
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Whether a request with `method` and `path` is in this scope.
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && glob(&self.pattern, path)
    }
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob("/orders/*", "/orders/7"));
        assert!(glob("/orders/*", "/orders/"));
        assert!(!glob("/orders/*", "/orders"));
        assert!(glob("/a/*/c", "/a/b/c"));
        assert!(!glob("/a/*/c", "/a/b/d"));
        assert!(glob("/exact", "/exact"));
        assert!(!glob("/exact", "/exact/more"));
        assert!(glob("*", "/anything"));
    }

    #[test]
    fn method_narrows_the_scope() {
        let scope = Scope::path("/orders/*").method(Method::POST);
        assert!(scope.matches(&Method::POST, "/orders/1"));
        assert!(!scope.matches(&Method::GET, "/orders/1"));
    }

    #[test]
    fn patterns_are_normalised_like_paths() {
        assert_eq!(Scope::path("/%6frders/*"), Scope::path("/orders/*"));
        assert!(Scope::path("/a%2fb").matches(&Method::GET, "/a%2Fb"));
    }
}
