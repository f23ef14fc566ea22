//! OIDC back-channel logout (OpenID Connect Back-Channel Logout 1.0): when the API deletes a
//! session, every configured receiver gets a signed logout token.
//!
//! Each delivery is a `POST` of `application/x-www-form-urlencoded` `logout_token=<JWT>`, run in
//! its own spawned task with a timeout (5 s by default), so it never delays the `DELETE` answer.
//! 200 and 204 count as delivered, anything else (another status, an error, the timeout) as
//! failed; each outcome is logged (target `keycard::logout`) and counted in [`LogoutStats`].
//!
//! The token: header `typ: logout+jwt`; claims `iss`, `aud` (the receiver's client id), `iat`,
//! `exp` (= `iat` + 120 s), `jti` (random), `events` with the back-channel logout event, `sid`
//! (the session id, i.e. the key hash), `sub` (the alias, when the session has one), no `nonce`,
//! and — for receivers that opt in, as Auth0 does — `session_metadata`.
//!
//! Receivers are reached over plain HTTP (`http://`); an `https://` receiver is refused when it
//! is configured, see [`LogoutConfigError::UnsupportedScheme`].
//!
//! ```
//! use keycard_admin::{AdminApi, BackChannelLogout};
//! use keycard_admin::logout::{LogoutReceiver, LogoutSigner};
//! use keycard_core::store::MemoryStore;
//!
//! # fn main() -> Result<(), keycard_admin::logout::LogoutConfigError> {
//! let logout = BackChannelLogout::new("https://auth.example.com/", LogoutSigner::hs256(b"shared-secret"))
//!     .receiver(LogoutReceiver::new("http://app.internal/backchannel-logout", "app-client-id")?)
//!     .receiver(
//!         LogoutReceiver::new("http://crm.internal/logout", "crm-client-id")?.include_metadata(true),
//!     );
//! let api = AdminApi::builder(MemoryStore::new())
//!     .back_channel_logout(logout)
//!     .build()
//!     .expect("no secret too short");
//! assert_eq!(api.logout_stats().delivered(), 0);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keycard_core::key::KeyId;
use keycard_core::metadata::Metadata;
use keycard_core::session::{SessionRecord, unix_now};
use serde::Serialize;
use serde_json::{Value, json};

/// The default delivery timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a logout token is valid: `exp` = `iat` + this.
pub const TOKEN_LIFETIME_SECS: i64 = 120;
/// The event a logout token carries.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A back-channel logout configuration is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogoutConfigError {
    /// The RS256 private key is not a PEM-encoded RSA key.
    #[error("invalid RS256 signing key: {0}")]
    InvalidKey(String),
    /// The receiver URL does not parse, or has no host.
    #[error("invalid back-channel logout URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The receiver URL is not `http://` (TLS is not built in yet).
    #[error("back-channel logout URL {0:?}: only http:// receivers are supported")]
    UnsupportedScheme(String),
}

/// The key logout tokens are signed with.
#[derive(Clone)]
pub struct LogoutSigner {
    algorithm: Algorithm,
    key: EncodingKey,
    key_id: Option<String>,
}

impl LogoutSigner {
    /// HS256 with a shared secret.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Self {
        Self {
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(secret.as_ref()),
            key_id: None,
        }
    }

    /// RS256 with a PEM-encoded RSA private key (PKCS#1 or PKCS#8).
    pub fn rs256_pem(pem: impl AsRef<[u8]>) -> Result<Self, LogoutConfigError> {
        let key = EncodingKey::from_rsa_pem(pem.as_ref())
            .map_err(|e| LogoutConfigError::InvalidKey(e.to_string()))?;
        Ok(Self {
            algorithm: Algorithm::RS256,
            key,
            key_id: None,
        })
    }

    /// Sets the `kid` header, so receivers can pick the key from the issuer's JWKS.
    pub fn key_id(mut self, kid: impl Into<String>) -> Self {
        self.key_id = Some(kid.into());
        self
    }
}

impl fmt::Debug for LogoutSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogoutSigner")
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// A relying party that receives logout tokens.
#[derive(Clone, Debug)]
pub struct LogoutReceiver {
    uri: Uri,
    audience: String,
    include_metadata: bool,
}

impl LogoutReceiver {
    /// A receiver at `url` (its `backchannel_logout_uri`) whose client id is `audience`.
    pub fn new(url: &str, audience: impl Into<String>) -> Result<Self, LogoutConfigError> {
        let invalid = |reason: String| LogoutConfigError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
        if uri.host().is_none() {
            return Err(invalid("no host".to_owned()));
        }
        if uri.scheme_str() != Some("http") {
            return Err(LogoutConfigError::UnsupportedScheme(url.to_owned()));
        }
        Ok(Self {
            uri,
            audience: audience.into(),
            include_metadata: false,
        })
    }

    /// Adds the `session_metadata` claim to this receiver's tokens (default: not sent).
    pub fn include_metadata(mut self, yes: bool) -> Self {
        self.include_metadata = yes;
        self
    }
}

/// Where logout tokens go and how they are signed.
#[derive(Clone, Debug)]
pub struct BackChannelLogout {
    issuer: String,
    signer: LogoutSigner,
    receivers: Vec<LogoutReceiver>,
    timeout: Duration,
}

impl BackChannelLogout {
    /// Tokens issued by `issuer` (the `iss` claim), signed by `signer`, to no receiver yet.
    pub fn new(issuer: impl Into<String>, signer: LogoutSigner) -> Self {
        Self {
            issuer: issuer.into(),
            signer,
            receivers: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Adds a receiver.
    pub fn receiver(mut self, receiver: LogoutReceiver) -> Self {
        self.receivers.push(receiver);
        self
    }

    /// How long one delivery may take before it counts as failed (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Counters of logout deliveries, shared with the running API (clone it freely).
#[derive(Clone, Debug, Default)]
pub struct LogoutStats {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl LogoutStats {
    /// Deliveries answered with 200 or 204.
    pub fn delivered(&self) -> u64 {
        self.inner.delivered.load(Ordering::Relaxed)
    }

    /// Deliveries that failed: another status, a connection error or the timeout.
    pub fn failed(&self) -> u64 {
        self.inner.failed.load(Ordering::Relaxed)
    }
}

/// The claims of a logout token.
#[derive(Serialize)]
struct LogoutClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    events: Value,
    sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_metadata: Option<&'a Metadata>,
}

/// What a deleted session leaves for its logout tokens.
struct Ended {
    sid: KeyId,
    sub: Option<String>,
    metadata: Metadata,
}

/// Sends logout tokens for deleted sessions (a no-op without configuration).
pub(crate) struct LogoutSender {
    inner: Option<Arc<SenderInner>>,
    stats: LogoutStats,
}

struct SenderInner {
    config: BackChannelLogout,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl LogoutSender {
    pub(crate) fn new(config: Option<BackChannelLogout>) -> Self {
        let inner = config
            .filter(|config| !config.receivers.is_empty())
            .map(|config| {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(config.timeout));
                Arc::new(SenderInner {
                    config,
                    client: Client::builder(TokioExecutor::new()).build(connector),
                })
            });
        Self {
            inner,
            stats: LogoutStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> LogoutStats {
        self.stats.clone()
    }

    /// Starts one delivery per receiver for `session`, in the background.
    pub(crate) fn session_ended(&self, session: SessionRecord) {
        let Some(inner) = &self.inner else { return };
        let ended = Arc::new(Ended {
            sid: session.key_id,
            sub: (!session.alias.is_empty()).then_some(session.alias),
            metadata: session.meta_data,
        });
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(target: "keycard::logout", "no tokio runtime: back-channel logout not sent");
            let receivers = inner.config.receivers.len() as u64;
            self.stats
                .inner
                .failed
                .fetch_add(receivers, Ordering::Relaxed);
            return;
        };
        for index in 0..inner.config.receivers.len() {
            let inner = Arc::clone(inner);
            let ended = Arc::clone(&ended);
            let stats = Arc::clone(&self.stats.inner);
            runtime.spawn(async move {
                let receiver = &inner.config.receivers[index];
                let outcome = tokio::time::timeout(
                    inner.config.timeout,
                    inner.deliver(receiver, &ended),
                )
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()));
                match outcome {
                    Ok(status) => {
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(target: "keycard::logout", receiver = %receiver.uri, session = ended.sid.short(), status = status.as_u16(), "back-channel logout delivered");
                    }
                    Err(error) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target: "keycard::logout", receiver = %receiver.uri, session = ended.sid.short(), error, "back-channel logout failed");
                    }
                }
            });
        }
    }
}

impl SenderInner {
    fn token(&self, receiver: &LogoutReceiver, ended: &Ended) -> Result<String, String> {
        let signer = &self.config.signer;
        let mut header = Header::new(signer.algorithm);
        header.typ = Some("logout+jwt".to_owned());
        header.kid.clone_from(&signer.key_id);
        let iat = unix_now();
        let claims = LogoutClaims {
            iss: &self.config.issuer,
            aud: &receiver.audience,
            iat,
            exp: iat + TOKEN_LIFETIME_SECS,
            jti: random_id(),
            events: json!({ BACKCHANNEL_LOGOUT_EVENT: {} }),
            sid: ended.sid.as_str(),
            sub: ended.sub.as_deref(),
            session_metadata: receiver.include_metadata.then_some(&ended.metadata),
        };
        jsonwebtoken::encode(&header, &claims, &signer.key).map_err(|e| e.to_string())
    }

    async fn deliver(
        &self,
        receiver: &LogoutReceiver,
        ended: &Ended,
    ) -> Result<StatusCode, String> {
        let token = self.token(receiver, ended)?;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("logout_token", &token)
            .finish();
        let request = Request::builder()
            .method(Method::POST)
            .uri(receiver.uri.clone())
            .header(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        match response.status() {
            status @ (StatusCode::OK | StatusCode::NO_CONTENT) => Ok(status),
            status => Err(format!("receiver answered {status}")),
        }
    }
}

/// 128 random bits, hex: the `jti`.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
