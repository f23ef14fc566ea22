//! Delivering logout tokens: one task per session and receiver, at most `max_in_flight` at
//! once, each outcome logged and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::Full;
use jsonwebtoken::Header;
use keycard_core::key::KeyId;
use keycard_core::metadata::Metadata;
use keycard_core::session::{SessionRecord, unix_now};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::config::BackChannelLogout;
use super::receiver::LogoutReceiver;
use super::tls::{self, HttpsClient};

/// How long a logout token is valid: `exp` = `iat` + this.
pub const TOKEN_LIFETIME_SECS: i64 = 120;
/// The event a logout token carries.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

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

    /// Deliveries that failed: another status, a connection or TLS error, or the timeout.
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
    client: HttpsClient,
    /// One permit per delivery in flight, over every receiver.
    permits: Semaphore,
}

impl LogoutSender {
    pub(crate) fn new(config: Option<BackChannelLogout>) -> Self {
        let inner = config
            .filter(|config| !config.receivers.is_empty())
            .map(|config| {
                warn_about_cleartext(&config);
                Arc::new(SenderInner {
                    client: tls::client(
                        &config.custom_roots,
                        config.built_in_roots,
                        config.timeout,
                    ),
                    permits: Semaphore::new(config.max_in_flight),
                    config,
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
                let outcome = inner.deliver_in_turn(receiver, &ended).await;
                let receiver = receiver.redacted_url();
                match outcome {
                    Ok(status) => {
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(target: "keycard::logout", %receiver, session = ended.sid.short(), status = status.as_u16(), "back-channel logout delivered");
                    }
                    Err(error) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target: "keycard::logout", %receiver, session = ended.sid.short(), error, "back-channel logout failed");
                    }
                }
            });
        }
    }
}

/// Configuration-time warnings: metadata a receiver was allowed to get in cleartext.
fn warn_about_cleartext(config: &BackChannelLogout) {
    for receiver in &config.receivers {
        if receiver.sends_metadata_in_cleartext() {
            tracing::warn!(target: "keycard::logout", receiver = %receiver.redacted_url(), "session_metadata will be sent to this back-channel logout receiver in cleartext (plain http, allow_plaintext)");
        }
    }
}

impl SenderInner {
    /// Waits for a permit, then delivers within the timeout (the wait is not timed: under a
    /// burst the last deliveries would otherwise fail without being tried).
    async fn deliver_in_turn(
        &self,
        receiver: &LogoutReceiver,
        ended: &Ended,
    ) -> Result<StatusCode, String> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| "the sender is shut down".to_owned())?;
        tokio::time::timeout(self.config.timeout, self.deliver(receiver, ended))
            .await
            .unwrap_or_else(|_| Err("timed out".to_owned()))
    }

    fn token(&self, receiver: &LogoutReceiver, ended: &Ended) -> Result<String, String> {
        let signer = receiver.signer.as_ref().unwrap_or(&self.config.signer);
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
            .map_err(|e| error_chain(&e))?;
        match response.status() {
            status @ (StatusCode::OK | StatusCode::NO_CONTENT) => Ok(status),
            status => Err(format!("receiver answered {status}")),
        }
    }
}

/// The error and its sources: hyper's own message ("client error (Connect)") hides the TLS or
/// connection reason in them.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// 128 random bits, hex: the `jti`.
fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
