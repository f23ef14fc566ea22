//! Checking a token: the signature with a pinned key, then the time claims with their skews and
//! the allowed issuers, audiences and subjects — each failure answered with Tyk's status and
//! message (`gateway/mw_jwt.go`).

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Map, Value};

use super::keys::JwtKey;

/// A refusal: the status and the `error` message of the JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) message: Cow<'static, str>,
}

impl Rejection {
    pub(crate) const fn new(status: StatusCode, message: &'static str) -> Self {
        Self {
            status,
            message: Cow::Borrowed(message),
        }
    }

    pub(crate) fn owned(status: StatusCode, message: String) -> Self {
        Self {
            status,
            message: Cow::Owned(message),
        }
    }

    /// Tyk's answer to a token it cannot verify (bad signature, unknown `kid`, malformed).
    pub(crate) const NOT_AUTHORIZED: Self = Self::new(StatusCode::FORBIDDEN, "Key not authorized");
    /// Tyk's answer to an `alg` the key is not pinned to (including `none`).
    pub(crate) const UNEXPECTED_ALG: Self = Self::new(
        StatusCode::FORBIDDEN,
        "Key not authorized: Unexpected signing method",
    );
    /// Tyk's answer when the JWT middleware finds no token (400; 401 only with Tyk's
    /// protected-resource metadata enabled).
    pub(crate) const MISSING: Self =
        Self::new(StatusCode::BAD_REQUEST, "Authorization field missing");

    /// A claim check failed: 401 `Key not authorized: <why>`.
    fn claims(why: impl std::fmt::Display) -> Self {
        Self::owned(
            StatusCode::UNAUTHORIZED,
            format!("Key not authorized: {why}"),
        )
    }
}

/// The claim checks run after the signature (Tyk: `validateClaims`).
#[derive(Clone, Debug, Default)]
pub(super) struct ClaimRules {
    pub(super) expires_at_skew: u64,
    pub(super) issued_at_skew: u64,
    pub(super) not_before_skew: u64,
    pub(super) issuers: Vec<String>,
    pub(super) audiences: Vec<String>,
    pub(super) subjects: Vec<String>,
}

/// A token whose signature and claims checked out.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) header: Header,
    pub(crate) claims: Map<String, Value>,
}

/// The `alg` of a header jsonwebtoken would not parse (`none`, say), if it has one.
fn raw_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

/// The header of `token`, or Tyk's refusal: an `alg` that is there but is not one we verify is
/// an unexpected signing method; anything else unreadable is not authorized.
pub(super) fn header(token: &str) -> Result<Header, Rejection> {
    jsonwebtoken::decode_header(token).map_err(|_| match raw_alg(token) {
        Some(_) => Rejection::UNEXPECTED_ALG,
        None => Rejection::NOT_AUTHORIZED,
    })
}

/// Verifies the signature of `token` with the first of `keys` that is pinned to its `alg`
/// and accepts it. No key at all (an unknown `kid`) is not authorized; keys that are all
/// pinned to other algorithms make an unexpected signing method.
pub(super) fn signature<'k>(
    token: &str,
    alg: Algorithm,
    keys: impl IntoIterator<Item = &'k Arc<JwtKey>>,
) -> Result<Verified, Rejection> {
    let (mut any, mut pinned) = (false, false);
    for key in keys {
        any = true;
        if !key.accepts(alg) {
            continue;
        }
        pinned = true;
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation) {
            Ok(data) => {
                return Ok(Verified {
                    header: data.header,
                    claims: data.claims,
                });
            }
            Err(error) => match error.kind() {
                ErrorKind::InvalidAlgorithm => return Err(Rejection::UNEXPECTED_ALG),
                _ => tracing::debug!(%error, "keycard: JWT not verified with this key"),
            },
        }
    }
    Err(if pinned || !any {
        Rejection::NOT_AUTHORIZED
    } else {
        Rejection::UNEXPECTED_ALG
    })
}

/// A numeric claim as unix seconds (`None` when absent or not a number).
fn seconds(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    value.as_i64().or_else(|| value.as_f64().map(|f| f as i64))
}

impl ClaimRules {
    /// The claim checks, in Tyk's order and with its messages (401 `Key not authorized: ...`).
    pub(super) fn check(&self, claims: &Map<String, Value>, now: i64) -> Result<(), Rejection> {
        // Tyk checks all three and reports the last failure (its `vErr.Inner` is overwritten).
        let mut failed = None;
        let skew = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
        if seconds(claims, "exp").is_some_and(|exp| now - skew(self.expires_at_skew) > exp) {
            failed = Some("token has expired");
        }
        if seconds(claims, "iat").is_some_and(|iat| now + skew(self.issued_at_skew) < iat) {
            failed = Some("token used before issued");
        }
        if seconds(claims, "nbf").is_some_and(|nbf| now + skew(self.not_before_skew) < nbf) {
            failed = Some("token is not valid yet");
        }
        if let Some(why) = failed {
            return Err(Rejection::claims(why));
        }
        if !self.issuers.is_empty() {
            match claims.get("iss") {
                None => {
                    return Err(Rejection::claims(
                        "issuer claim is required but not present in token",
                    ));
                }
                Some(Value::String(iss)) if self.issuers.contains(iss) => {}
                Some(Value::String(iss)) => {
                    return Err(Rejection::claims(format!("invalid issuer claim: {iss}")));
                }
                Some(_) => return Err(Rejection::claims("issuer claim must be a string")),
            }
        }
        if !self.audiences.is_empty() {
            let audiences: Vec<&str> = match claims.get("aud") {
                None => {
                    return Err(Rejection::claims(
                        "audience claim is required but not present in token",
                    ));
                }
                Some(Value::String(aud)) => vec![aud],
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
                Some(_) => return Err(Rejection::claims("invalid audience claim format")),
            };
            if !audiences
                .iter()
                .any(|aud| self.audiences.iter().any(|a| a == aud))
            {
                // Go's `%v` of a string slice: `[a b]`.
                return Err(Rejection::claims(format!(
                    "no matching audience found in token: [{}]",
                    audiences.join(" ")
                )));
            }
        }
        if !self.subjects.is_empty() {
            let sub = claims.get("sub").and_then(Value::as_str).unwrap_or("");
            if !self.subjects.iter().any(|s| s == sub) {
                return Err(Rejection::claims(format!("invalid subject value: {sub}")));
            }
        }
        Ok(())
    }
}

/// The value at `path`: the literal claim name first, then (for a dotted path) the nested
/// lookup, as Tyk's `getClaimValue` does.
pub(crate) fn claim<'c>(claims: &'c Map<String, Value>, path: &str) -> Option<&'c Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    if !path.contains('.') {
        return None;
    }
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.as_object()?.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        let Value::Object(map) = value else {
            unreachable!()
        };
        map
    }

    #[test]
    fn time_claims_use_their_skews_and_report_the_last_failure() {
        let rules = ClaimRules {
            expires_at_skew: 10,
            ..ClaimRules::default()
        };
        assert!(rules.check(&map(json!({"exp": 95})), 100).is_ok());
        let err = rules.check(&map(json!({"exp": 80})), 100).unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert_eq!(err.message, "Key not authorized: token has expired");
        let err = rules
            .check(&map(json!({"exp": 80, "nbf": 200})), 100)
            .unwrap_err();
        assert_eq!(err.message, "Key not authorized: token is not valid yet");
        let err = rules.check(&map(json!({"iat": 200})), 100).unwrap_err();
        assert_eq!(err.message, "Key not authorized: token used before issued");
    }

    #[test]
    fn issuer_audience_subject_messages_are_tyks() {
        let rules = ClaimRules {
            issuers: vec!["https://idp".into()],
            audiences: vec!["api".into()],
            subjects: vec!["alice".into()],
            ..ClaimRules::default()
        };
        let check = |v: Value| rules.check(&map(v), 0).map_err(|e| e.message.into_owned());
        assert_eq!(
            check(json!({})),
            Err("Key not authorized: issuer claim is required but not present in token".into())
        );
        assert_eq!(
            check(json!({"iss": 1})),
            Err("Key not authorized: issuer claim must be a string".into())
        );
        assert_eq!(
            check(json!({"iss": "x", "aud": "api", "sub": "alice"})),
            Err("Key not authorized: invalid issuer claim: x".into())
        );
        assert_eq!(
            check(json!({"iss": "https://idp", "aud": ["a", "b"]})),
            Err("Key not authorized: no matching audience found in token: [a b]".into())
        );
        assert_eq!(
            check(json!({"iss": "https://idp", "aud": 3})),
            Err("Key not authorized: invalid audience claim format".into())
        );
        assert_eq!(
            check(json!({"iss": "https://idp", "aud": ["x", "api"], "sub": "bob"})),
            Err("Key not authorized: invalid subject value: bob".into())
        );
        assert_eq!(
            check(json!({"iss": "https://idp", "aud": "api", "sub": "alice"})),
            Ok(())
        );
    }

    #[test]
    fn claim_paths_try_the_literal_name_first() {
        let claims = map(json!({"a.b": "literal", "a": {"b": "nested"}, "x": {"y": {"z": 1}}}));
        assert_eq!(claim(&claims, "a.b"), Some(&json!("literal")));
        assert_eq!(claim(&claims, "x.y.z"), Some(&json!(1)));
        assert_eq!(claim(&claims, "x.q"), None);
    }
}
