//! A relying party that receives logout tokens, and how its URL is shown.

use std::fmt;

use http::Uri;

use super::error::LogoutConfigError;
use super::signer::LogoutSigner;

/// A relying party that receives logout tokens.
#[derive(Clone)]
pub struct LogoutReceiver {
    /// Where requests go: the URL without its userinfo, so no client log can show it.
    pub(super) uri: Uri,
    /// The URL as logs, `Debug` and errors show it (userinfo redacted).
    shown: String,
    pub(super) audience: String,
    pub(super) include_metadata: bool,
    pub(super) signer: Option<LogoutSigner>,
    allow_plaintext: bool,
}

impl LogoutReceiver {
    /// A receiver at `url` (its `backchannel_logout_uri`, `https://` or `http://`) whose client
    /// id is `audience`.
    ///
    /// # Errors
    /// [`LogoutConfigError::InvalidUrl`] when `url` does not parse or has no host,
    /// [`LogoutConfigError::UnsupportedScheme`] for another scheme than `http` and `https`.
    pub fn new(url: &str, audience: impl Into<String>) -> Result<Self, LogoutConfigError> {
        let invalid = |reason: String| LogoutConfigError::InvalidUrl {
            url: redact_userinfo(url),
            reason,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
        if uri.host().is_none() {
            return Err(invalid("no host".to_owned()));
        }
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(LogoutConfigError::UnsupportedScheme(redact_userinfo(url)));
        }
        Ok(Self {
            uri: without_userinfo(uri).map_err(invalid)?,
            shown: redact_userinfo(url),
            audience: audience.into(),
            include_metadata: false,
            signer: None,
            allow_plaintext: false,
        })
    }

    /// Adds the `session_metadata` claim to this receiver's tokens (default: not sent). An
    /// `http://` receiver also needs [`allow_plaintext`](Self::allow_plaintext).
    pub fn include_metadata(mut self, yes: bool) -> Self {
        self.include_metadata = yes;
        self
    }

    /// Signs this receiver's tokens with `signer` instead of the
    /// [`BackChannelLogout`](super::BackChannelLogout)'s, so that receivers sharing no key
    /// cannot forge tokens for each other.
    pub fn signer(mut self, signer: LogoutSigner) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Lets an `http://` receiver get `session_metadata` in cleartext (refused otherwise); the
    /// API logs a warning for it when it is built. Use it only on a network you trust.
    pub fn allow_plaintext(mut self) -> Self {
        self.allow_plaintext = true;
        self
    }

    pub(super) fn sends_metadata_in_cleartext(&self) -> bool {
        self.include_metadata && self.uri.scheme_str() == Some("http")
    }

    pub(super) fn plaintext_allowed(&self) -> bool {
        self.allow_plaintext
    }

    /// The URL as logs and `Debug` show it: without the password (or user name) it may carry.
    pub(super) fn redacted_url(&self) -> &str {
        &self.shown
    }
}

impl fmt::Debug for LogoutReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutReceiver")
            .field("uri", &format_args!("{}", self.shown))
            .field("audience", &self.audience)
            .field("include_metadata", &self.include_metadata)
            .field("signer", &self.signer)
            .field("allow_plaintext", &self.allow_plaintext)
            .finish()
    }
}

/// `uri` without `user:pass@`: nothing is derived from the userinfo (no `Authorization`), and
/// the HTTP client's own logs (hyper-util names pool keys by authority) never carry it.
fn without_userinfo(uri: Uri) -> Result<Uri, String> {
    let Some(at) = uri.authority().and_then(|a| a.as_str().rfind('@')) else {
        return Ok(uri);
    };
    let mut parts = uri.into_parts();
    let authority = parts
        .authority
        .take()
        .map(|a| a.as_str()[at + 1..].to_owned());
    parts.authority = authority
        .map(|a| a.parse())
        .transpose()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    Uri::from_parts(parts).map_err(|e| e.to_string())
}

/// `scheme://user:pass@host/path` → `scheme://***@host/path`; anything without userinfo as is.
/// Works on text that does not parse as a URI too (error messages quote what was given).
pub(super) fn redact_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_redacted_and_the_rest_kept() {
        for (url, shown) in [
            (
                "http://user:pass@host:8080/logout?x=1",
                "http://***@host:8080/logout?x=1",
            ),
            ("https://token@host/a@b", "https://***@host/a@b"),
            ("http://host/logout", "http://host/logout"),
            ("http://host/path@x", "http://host/path@x"),
            ("user:pass@host/x", "***@host/x"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_userinfo(url), shown, "{url}");
        }
    }

    #[test]
    fn requests_go_to_the_url_without_its_userinfo() {
        let receiver = LogoutReceiver::new("http://u:p@h:1/l?q=1", "rp").unwrap();
        assert_eq!(receiver.uri, "http://h:1/l?q=1");
        assert_eq!(receiver.redacted_url(), "http://***@h:1/l?q=1");
        let receiver = LogoutReceiver::new("https://h/l", "rp").unwrap();
        assert_eq!(receiver.uri, "https://h/l");
        assert_eq!(receiver.redacted_url(), "https://h/l");
    }
}
