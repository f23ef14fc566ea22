//! Signed auth tokens: Tyk's "auth token with signature" check, and a keyed HMAC-SHA256
//! variant that keycard recommends.
//!
//! The stage runs after [`SessionLoadLayer`](crate::auth::SessionLoadLayer) (it resolves its
//! secret from the request's session, `$tyk_meta.KEY`) and needs the raw key the client sent,
//! so the load stage must keep it: [`SessionLoadLayer::expose_token`](crate::auth::SessionLoadLayer::expose_token).
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode};
//! use hmac::{Hmac, Mac};
//! use keycard_core::session::{SessionRecord, unix_now};
//! use keycard_core::store::MemoryStore;
//! use keycard_layers::auth::SessionLoadLayer;
//! use keycard_layers::signature::SignatureLayer;
//! use serde_json::json;
//! use sha2::Sha256;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryStore::new();
//! store
//!     .insert(SessionRecord::for_key("alice-key").metadata(json!({"individual_secret": "s3cret"})))
//!     .unwrap();
//! let app = ServiceBuilder::new()
//!     .layer(SessionLoadLayer::new(store).expose_token())
//!     .layer(SignatureLayer::hmac_sha256("$tyk_meta.individual_secret").unwrap())
//!     .service(Router::new().route("/", get(|| async { "signed" })));
//!
//! // The client signs `token || "." || timestamp` with its secret and sends both.
//! let ts = unix_now().to_string();
//! let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
//! mac.update(format!("alice-key.{ts}").as_bytes());
//! let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
//! let request = Request::get("/")
//!     .header("authorization", "alice-key")
//!     .header("x-signature", signature)
//!     .header("x-signature-timestamp", ts)
//!     .body(Body::empty())
//!     .unwrap();
//! assert_eq!(app.clone().oneshot(request).await.unwrap().status(), StatusCode::OK);
//!
//! let unsigned = Request::get("/").header("authorization", "alice-key").body(Body::empty()).unwrap();
//! assert_eq!(app.oneshot(unsigned).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```
//!
//! # Modes
//! - [`SignatureLayer::tyk`] (`MasherySHA256`) and [`SignatureAlgorithm::MasheryMd5`] (legacy,
//!   for clients written against Tyk only): the client sends
//!   `hex(SHA256(token + secret + unix_seconds))` and no timestamp; the stage tries every second
//!   of `now ± allowed_clock_skew`, as Tyk's `signature_validator` does.
//! - [`SignatureLayer::hmac_sha256`] (recommended): the client sends the timestamp
//!   (`X-Signature-Timestamp`) and `hex(HMAC-SHA256(secret, token + "." + timestamp))`. HMAC has
//!   no length-extension weakness, the secret is a key rather than text concatenated next to
//!   data the client controls, and the explicit timestamp means one MAC per request instead of a
//!   search over the skew window (`2 × skew + 1` hashes per request in Tyk's mode).
//!
//! Every comparison is constant-time (`subtle`, `Mac::verify_slice`).
//!
//! # Refusals
//! All with the configured status and message (default 401
//! `Request signature verification failed`, Tyk's), in keycard's `{"error": ...}` shape: the
//! signature is missing or empty, not hex, or wrong; the secret renders empty (for example its
//! metadata key is missing); the timestamp (HMAC mode) is missing, not a number or outside the
//! skew; the request has no key (an optional load stage let it through without one).
//! A stack without the load stage, or whose load stage does not keep the raw key, answers 500
//! and logs why.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderName, Request, Response, StatusCode};
use keycard_core::key::ApiKey;
use keycard_core::vars::{Template, TemplateError};
use md5::Md5;
use pin_project_lite::pin_project;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RequestVars;
use crate::response::{json_error, missing_session_layer};
use crate::session::Session;

/// Tyk's default refusal message (`gateway/mw_auth_key.go`).
pub const DEFAULT_ERROR_MESSAGE: &str = "Request signature verification failed";
/// The default signature header. Tyk has no default (its `header` must be configured).
pub const DEFAULT_HEADER: &str = "x-signature";
/// The default timestamp header of the HMAC mode.
pub const DEFAULT_TIMESTAMP_HEADER: &str = "x-signature-timestamp";
/// The default allowed clock skew of the HMAC mode, in seconds (Tyk's modes default to 0, as
/// Tyk).
pub const DEFAULT_HMAC_SKEW: u64 = 300;

const NO_RAW_KEY: &str = "Server misconfigured: signature check needs the raw key";

/// How the signature is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// Tyk's `MasherySHA256`: `hex(SHA256(token + secret + unix_seconds))`.
    MasherySha256,
    /// Tyk's `MasheryMD5`: `hex(MD5(token + secret + unix_seconds))`. Legacy: MD5 is broken as
    /// a hash; offered only so clients written for Tyk keep working.
    MasheryMd5,
    /// keycard's recommended mode: `hex(HMAC-SHA256(secret, token + "." + timestamp))`, the
    /// timestamp sent in its own header.
    HmacSha256,
}

impl SignatureAlgorithm {
    /// Parses Tyk's `algorithm` names (`MasherySHA256`, `MasheryMD5`) and `HmacSHA256`.
    pub fn from_tyk(name: &str) -> Option<Self> {
        match name {
            "MasherySHA256" => Some(Self::MasherySha256),
            "MasheryMD5" => Some(Self::MasheryMd5),
            "HmacSHA256" => Some(Self::HmacSha256),
            _ => None,
        }
    }
}

/// The clock the stage reads (unix seconds); replaceable for tests.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

struct Config {
    algorithm: SignatureAlgorithm,
    secret: Template,
    header: HeaderName,
    query: Option<String>,
    timestamp_header: HeaderName,
    skew: u64,
    status: StatusCode,
    message: String,
    now: Clock,
}

/// The layer checking signed auth tokens; see the [module docs](self).
#[derive(Clone)]
pub struct SignatureLayer {
    config: Arc<Config>,
}

impl fmt::Debug for SignatureLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureLayer")
            .field("algorithm", &self.config.algorithm)
            .field("secret", &self.config.secret.source())
            .field("header", &self.config.header)
            .field("query", &self.config.query)
            .field("skew", &self.config.skew)
            .field("status", &self.config.status)
            .finish_non_exhaustive()
    }
}

impl SignatureLayer {
    fn with(algorithm: SignatureAlgorithm, secret: &str, skew: u64) -> Result<Self, TemplateError> {
        Ok(Self {
            config: Arc::new(Config {
                algorithm,
                secret: Template::parse(secret)?,
                header: HeaderName::from_static(DEFAULT_HEADER),
                query: None,
                timestamp_header: HeaderName::from_static(DEFAULT_TIMESTAMP_HEADER),
                skew,
                status: StatusCode::UNAUTHORIZED,
                message: DEFAULT_ERROR_MESSAGE.to_owned(),
                now: Arc::new(keycard_core::session::unix_now),
            }),
        })
    }

    /// Tyk's check (`MasherySHA256`) with `secret`, a literal or a template such as
    /// `$tyk_meta.individual_secret`; `allowed_clock_skew` 0, as Tyk.
    ///
    /// # Errors
    /// A secret template that does not parse.
    pub fn tyk(secret: &str) -> Result<Self, TemplateError> {
        Self::with(SignatureAlgorithm::MasherySha256, secret, 0)
    }

    /// The recommended HMAC-SHA256 check with `secret` (a literal or a template), allowed clock
    /// skew [`DEFAULT_HMAC_SKEW`].
    ///
    /// # Errors
    /// A secret template that does not parse.
    pub fn hmac_sha256(secret: &str) -> Result<Self, TemplateError> {
        Self::with(SignatureAlgorithm::HmacSha256, secret, DEFAULT_HMAC_SKEW)
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::get_mut(&mut self.config).expect("a layer is configured before it is cloned")
    }

    /// The algorithm (Tyk's `algorithm`).
    pub fn algorithm(mut self, algorithm: SignatureAlgorithm) -> Self {
        self.config_mut().algorithm = algorithm;
        self
    }

    /// The header carrying the signature (Tyk's `header`; matched case-insensitively).
    pub fn header(mut self, name: HeaderName) -> Self {
        self.config_mut().header = name;
        self
    }

    /// Also read the signature from query parameter `name` (Tyk's `use_param` / `param_name`):
    /// a non-empty value there wins over the header, as in Tyk.
    pub fn query(mut self, name: impl Into<String>) -> Self {
        self.config_mut().query = Some(name.into());
        self
    }

    /// The header carrying the timestamp (HMAC mode).
    pub fn timestamp_header(mut self, name: HeaderName) -> Self {
        self.config_mut().timestamp_header = name;
        self
    }

    /// How many seconds the signed time may be before or after now (Tyk's
    /// `allowed_clock_skew`); both bounds are inclusive.
    pub fn allowed_clock_skew(mut self, seconds: u64) -> Self {
        self.config_mut().skew = seconds;
        self
    }

    /// The status and message of every refusal (Tyk's `error_code`, `error_message`).
    pub fn error(mut self, status: StatusCode, message: impl Into<String>) -> Self {
        let config = self.config_mut();
        config.status = status;
        config.message = message.into();
        self
    }

    /// The clock, unix seconds (default the system clock): for tests of the skew bounds.
    pub fn clock(mut self, now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.config_mut().now = Arc::new(now);
        self
    }
}

impl<S> Layer<S> for SignatureLayer {
    type Service = Signature<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Signature {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of [`SignatureLayer`].
#[derive(Clone)]
pub struct Signature<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> fmt::Debug for Signature<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signature").finish_non_exhaustive()
    }
}

impl<S> Signature<S> {
    /// Wraps `inner` with `layer`'s configuration.
    pub fn new(inner: S, layer: &SignatureLayer) -> Self {
        layer.layer(inner)
    }

    define_inner_service_accessors!();
}

/// Why a request is refused (logged at debug level; the client sees the configured message).
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    NoKey,
    NoSignature,
    EmptySecret,
    NoTimestamp,
    Mismatch,
}

impl Config {
    fn verify<B>(
        &self,
        request: &Request<B>,
        key: &ApiKey,
        session: &Session,
    ) -> Result<(), Failure> {
        let signature = self.signature(request).ok_or(Failure::NoSignature)?;
        let secret = session.with_metadata(|metadata| {
            self.secret
                .render_text(&RequestVars::new(request, Some(metadata)))
                .value
        });
        if secret.is_empty() {
            return Err(Failure::EmptySecret);
        }
        let presented = decode_hex(&signature).ok_or(Failure::Mismatch)?;
        let now = (self.now)();
        let skew = i64::try_from(self.skew).unwrap_or(i64::MAX);
        match self.algorithm {
            SignatureAlgorithm::HmacSha256 => {
                let ts = request
                    .headers()
                    .get(&self.timestamp_header)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .ok_or(Failure::NoTimestamp)?;
                if now.abs_diff(ts) > self.skew {
                    return Err(Failure::Mismatch);
                }
                let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                    .expect("HMAC accepts keys of any length");
                mac.update(key.expose().as_bytes());
                mac.update(b".");
                mac.update(ts.to_string().as_bytes());
                mac.verify_slice(&presented).map_err(|_| Failure::Mismatch)
            }
            algorithm => {
                // Tyk's order: now, then now+i and now-i for i = 1..=skew. Every candidate is
                // compared (no early exit on the comparison itself), each in constant time.
                let mut found = false;
                for offset in 0..=skew {
                    for t in [now.saturating_add(offset), now.saturating_sub(offset)] {
                        let expected = mashery(algorithm, key.expose(), &secret, t);
                        found |= bool::from(expected.as_slice().ct_eq(&presented));
                        if offset == 0 {
                            break;
                        }
                    }
                }
                if found {
                    Ok(())
                } else {
                    Err(Failure::Mismatch)
                }
            }
        }
    }

    fn signature<B>(&self, request: &Request<B>) -> Option<String> {
        if let Some(name) = &self.query {
            let value = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty());
            if value.is_some() {
                return value;
            }
        }
        request
            .headers()
            .get(&self.header)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

/// Tyk's `MasherySha256Sum` / `MasheryMd5sum`: the digest of `token + secret + decimal(t)`.
fn mashery(algorithm: SignatureAlgorithm, token: &str, secret: &str, t: i64) -> Vec<u8> {
    let t = t.to_string();
    match algorithm {
        SignatureAlgorithm::MasheryMd5 => {
            let mut hash = Md5::new();
            hash.update(token.as_bytes());
            hash.update(secret.as_bytes());
            hash.update(t.as_bytes());
            hash.finalize().to_vec()
        }
        _ => {
            let mut hash = Sha256::new();
            hash.update(token.as_bytes());
            hash.update(secret.as_bytes());
            hash.update(t.as_bytes());
            hash.finalize().to_vec()
        }
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    text.chunks(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Signature<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if !crate::session::loaded(request.extensions()) {
            return ResponseFuture::done(missing_session_layer("SignatureLayer"));
        }
        let config = &self.config;
        let checked = match request.extensions().get::<Session>() {
            None => Err(Failure::NoKey),
            Some(session) => match request.extensions().get::<ApiKey>() {
                None => {
                    tracing::error!(
                        "keycard: SignatureLayer needs the raw key; build SessionLoadLayer with \
                         expose_token() (Keycard::expose_token)"
                    );
                    return ResponseFuture::done(json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        NO_RAW_KEY,
                    ));
                }
                Some(key) => config.verify(&request, key, session),
            },
        };
        match checked {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(why) => {
                tracing::debug!(?why, "keycard: request signature refused");
                ResponseFuture::done(json_error(config.status, &config.message))
            }
        }
    }
}

pin_project! {
    /// The response future of [`Signature`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Inner { #[pin] future: F },
        Done { response: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }

    fn done(response: Response<B>) -> Self {
        Self {
            state: State::Done {
                response: Some(response),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => Poll::Ready(ready!(future.poll(cx))),
            StateProj::Done { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn mashery_sha256_is_the_digest_of_token_secret_and_seconds() {
        // hex(SHA256("abc" + "s" + "100")), the concatenation Tyk's MasherySha256Sum hashes.
        let expected = hex(&Sha256::digest(b"abcs100"));
        assert_eq!(
            hex(&mashery(SignatureAlgorithm::MasherySha256, "abc", "s", 100)),
            expected
        );
        assert_eq!(
            hex(&mashery(SignatureAlgorithm::MasheryMd5, "abc", "s", 100)),
            hex(&Md5::digest(b"abcs100"))
        );
    }

    #[test]
    fn hex_decoding_accepts_both_cases_and_refuses_the_rest() {
        assert_eq!(decode_hex("0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }

    #[test]
    fn tyk_algorithm_names_parse() {
        assert_eq!(
            SignatureAlgorithm::from_tyk("MasherySHA256"),
            Some(SignatureAlgorithm::MasherySha256)
        );
        assert_eq!(
            SignatureAlgorithm::from_tyk("MasheryMD5"),
            Some(SignatureAlgorithm::MasheryMd5)
        );
        assert_eq!(SignatureAlgorithm::from_tyk("sha1"), None);
    }
}
