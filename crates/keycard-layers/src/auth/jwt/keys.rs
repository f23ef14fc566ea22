//! Verification keys: the ones given in configuration, and the ones a JWKS URL serves (fetched
//! with hyper-util's client over rustls, cached, refreshed on an unknown `kid`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};

/// Why a key could not be built from configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtKeyError {
    /// The PEM or secret could not be read as a key of that kind.
    #[error("invalid JWT key: {0}")]
    Invalid(String),
    /// The algorithm does not match the key (an RSA key for `HS256`, say).
    #[error("algorithm {alg:?} cannot be used with a {family:?} key")]
    WrongAlgorithm {
        /// The algorithm asked for.
        alg: Algorithm,
        /// The key's family.
        family: AlgorithmFamily,
    },
    /// A JWKS URL that is not an absolute `http://` or `https://` URL.
    #[error("invalid JWKS URL {0:?}")]
    InvalidUrl(String),
}

/// One verification key, pinned to the algorithms it may verify: a token whose `alg` is not
/// among them is refused before any signature check (no `alg: none`, no HS/RS confusion).
#[derive(Clone)]
pub struct JwtKey {
    pub(super) kid: Option<String>,
    pub(super) key: DecodingKey,
    /// Built once: which algorithms, and no claim checks (they are done afterwards with Tyk's
    /// messages and skews).
    pub(super) validation: Arc<Validation>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

fn validation(algorithms: Vec<Algorithm>) -> Arc<Validation> {
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms;
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    Arc::new(validation)
}

impl JwtKey {
    fn pinned(key: DecodingKey, alg: Algorithm) -> Result<Self, JwtKeyError> {
        if key.family() != alg.family() {
            return Err(JwtKeyError::WrongAlgorithm {
                alg,
                family: key.family(),
            });
        }
        Ok(Self {
            kid: None,
            key,
            validation: validation(vec![alg]),
        })
    }

    /// A shared secret for `HS256`, `HS384` or `HS512`.
    ///
    /// # Errors
    /// When `alg` is not an HMAC algorithm.
    pub fn hmac(alg: Algorithm, secret: impl AsRef<[u8]>) -> Result<Self, JwtKeyError> {
        Self::pinned(DecodingKey::from_secret(secret.as_ref()), alg)
    }

    /// An RSA public key (PEM: `PUBLIC KEY`, `RSA PUBLIC KEY` or a certificate) for one of
    /// `RS256`..`PS512`.
    ///
    /// # Errors
    /// When the PEM is not an RSA key, or `alg` is not an RSA algorithm.
    pub fn rsa_pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, JwtKeyError> {
        let key = DecodingKey::from_rsa_pem(pem.as_ref())
            .map_err(|e| JwtKeyError::Invalid(e.to_string()))?;
        Self::pinned(key, alg)
    }

    /// An EC public key (PEM) for `ES256` (P-256) or `ES384` (P-384).
    ///
    /// # Errors
    /// When the PEM is not an EC key, or `alg` is not an ECDSA algorithm.
    pub fn ec_pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, JwtKeyError> {
        let key = DecodingKey::from_ec_pem(pem.as_ref())
            .map_err(|e| JwtKeyError::Invalid(e.to_string()))?;
        Self::pinned(key, alg)
    }

    /// An Ed25519 public key (PEM) for `EdDSA`.
    ///
    /// # Errors
    /// When the PEM is not an Ed25519 key.
    pub fn ed_pem(pem: impl AsRef<[u8]>) -> Result<Self, JwtKeyError> {
        let key = DecodingKey::from_ed_pem(pem.as_ref())
            .map_err(|e| JwtKeyError::Invalid(e.to_string()))?;
        Self::pinned(key, Algorithm::EdDSA)
    }

    /// Only tokens whose header names this `kid` use this key. A key without one is tried for
    /// tokens that carry no `kid` (or a `kid` no key has).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Whether this key may verify a token signed with `alg`.
    pub(super) fn accepts(&self, alg: Algorithm) -> bool {
        self.validation.algorithms.contains(&alg)
    }
}

/// The algorithms a JWK may verify: its `alg` when it names one; otherwise what its key type
/// allows (every RSA algorithm for `RSA`, the curve's one for `EC`, `EdDSA` for Ed25519).
/// Symmetric keys (`oct`) from a URL are never used: a JWKS is public.
fn jwk_algorithms(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Vec<Algorithm>> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa.algorithms().to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(named) => {
            let named = match named {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::PS384 => Algorithm::PS384,
                KeyAlgorithm::PS512 => Algorithm::PS512,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            };
            by_type.contains(&named).then(|| vec![named])
        }
    }
}

/// The usable keys of a JWKS document; keys that cannot be used are skipped (and logged).
pub(super) fn keys_of(set: &JwkSet) -> Vec<Arc<JwtKey>> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let algorithms = jwk_algorithms(jwk)?;
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => Some(Arc::new(JwtKey {
                    kid: jwk.common.key_id.clone(),
                    key,
                    validation: validation(algorithms),
                })),
                Err(error) => {
                    tracing::warn!(kid = ?jwk.common.key_id, %error, "keycard: JWKS key skipped");
                    None
                }
            }
        })
        .collect()
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The HTTP(S) client JWKS and discovery fetches use: hyper-util's pooled client with rustls on
/// the aws-lc-rs provider (the one jsonwebtoken builds) and Mozilla's roots — the stack the
/// back-channel logout sender already uses, so no second HTTP or TLS stack is built.
pub(super) fn client() -> HttpsClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    http.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// The largest JWKS or discovery document read (1 MiB).
const MAX_DOCUMENT: usize = 1 << 20;

/// GETs `uri` and parses the JSON answer (200 only, at most [`MAX_DOCUMENT`] bytes, within
/// `timeout`).
pub(super) async fn fetch_json<T: serde::de::DeserializeOwned>(
    client: &HttpsClient,
    uri: &Uri,
    timeout: Duration,
) -> Result<T, String> {
    let fetch = async {
        let response = client
            .get(uri.clone())
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT)
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| format!("not a valid document: {e}"))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// Parses a JWKS or discovery URL.
pub(super) fn parse_url(url: &str) -> Result<Uri, JwtKeyError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| JwtKeyError::InvalidUrl(url.to_owned()))?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(uri),
        _ => Err(JwtKeyError::InvalidUrl(url.to_owned())),
    }
}

/// How a [`Jwks`] refreshes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Refresh {
    /// Keys older than this are refreshed in the background (the old ones keep serving).
    pub(super) max_age: Duration,
    /// At most one fetch per this interval for unknown `kid`s.
    pub(super) min_interval: Duration,
    /// A fetch that takes longer fails.
    pub(super) timeout: Duration,
}

impl Default for Refresh {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(600),
            min_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Where a [`Jwks`] learns its URL: given, or from an OpenID provider's discovery document.
#[derive(Clone, Debug)]
pub(super) enum JwksLocation {
    Url(Uri),
    Discovery(Uri),
}

#[derive(serde::Deserialize)]
struct Discovery {
    jwks_uri: String,
}

/// The keys of one JWKS URL, cached.
///
/// Reads never wait: the cached list sits behind a `std` lock held only to clone an `Arc`.
/// Fetches are single-flight (one async mutex; a request that waited for another's fetch
/// re-reads the keys instead of fetching again) and rate-limited for unknown `kid`s; a failed
/// fetch keeps the keys there were (stale while revalidate).
pub(super) struct Jwks {
    location: JwksLocation,
    refresh: Refresh,
    client: HttpsClient,
    keys: RwLock<Arc<Vec<Arc<JwtKey>>>>,
    /// When the last fetch was attempted, and when the last one succeeded.
    times: Mutex<(Option<Instant>, Option<Instant>)>,
    /// Bumped by every fetch attempt: a waiter that sees it moved knows a fetch just ran.
    attempts: AtomicU64,
    fetching: tokio::sync::Mutex<()>,
    resolved: RwLock<Option<Uri>>,
}

impl Jwks {
    pub(super) fn new(location: JwksLocation, refresh: Refresh) -> Self {
        Self {
            location,
            refresh,
            client: client(),
            keys: RwLock::new(Arc::new(Vec::new())),
            times: Mutex::new((None, None)),
            attempts: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
            resolved: RwLock::new(None),
        }
    }

    /// Where the keys come from.
    pub(super) fn location(&self) -> &JwksLocation {
        &self.location
    }

    /// The cached keys (no fetch).
    pub(super) fn cached(&self) -> Arc<Vec<Arc<JwtKey>>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn times(&self) -> (Option<Instant>, Option<Instant>) {
        *self.times.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the cache was never filled or is older than `max_age`.
    pub(super) fn is_stale(&self) -> bool {
        self.times()
            .1
            .is_none_or(|at| at.elapsed() >= self.refresh.max_age)
    }

    /// Fetches again unless a fetch ran while this caller waited for the lock, or one was
    /// attempted less than `min_interval` ago — the very first fetch always runs, and a failing
    /// server is not asked more often than a working one. Returns whether keys may have
    /// changed.
    pub(super) async fn refresh(&self) -> bool {
        let seen = self.attempts.load(Ordering::Acquire);
        let _single_flight = self.fetching.lock().await;
        if self.attempts.load(Ordering::Acquire) != seen {
            return true;
        }
        if let (Some(at), _) = self.times()
            && at.elapsed() < self.refresh.min_interval
        {
            return false;
        }
        self.fetch().await
    }

    /// Starts a background refresh when the keys are stale and no fetch is running; the
    /// request goes on with the keys there are.
    pub(super) fn revalidate(self: &Arc<Self>) {
        if !self.is_stale() || self.fetching.try_lock().is_err() {
            return;
        }
        // While the server fails the keys stay stale: no task per request, one per interval.
        if let (Some(at), _) = self.times()
            && at.elapsed() < self.refresh.min_interval
        {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let this = self.clone();
            runtime.spawn(async move { this.refresh().await });
        }
    }

    async fn jwks_uri(&self) -> Result<Uri, String> {
        match &self.location {
            JwksLocation::Url(uri) => Ok(uri.clone()),
            JwksLocation::Discovery(discovery) => {
                if let Some(uri) = self
                    .resolved
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                {
                    return Ok(uri);
                }
                let document: Discovery =
                    fetch_json(&self.client, discovery, self.refresh.timeout).await?;
                let uri = parse_url(&document.jwks_uri).map_err(|e| e.to_string())?;
                *self.resolved.write().unwrap_or_else(|e| e.into_inner()) = Some(uri.clone());
                Ok(uri)
            }
        }
    }

    async fn fetch(&self) -> bool {
        let started = Instant::now();
        self.times.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(started);
        let result = match self.jwks_uri().await {
            Ok(uri) => fetch_json::<JwkSet>(&self.client, &uri, self.refresh.timeout).await,
            Err(error) => Err(format!("discovery: {error}")),
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(set) => {
                let keys = keys_of(&set);
                tracing::debug!(keys = keys.len(), "keycard: JWKS fetched");
                *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                self.times.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(started);
                true
            }
            Err(error) => {
                tracing::warn!(location = ?self.location, %error, "keycard: JWKS fetch failed; the cached keys stay in use");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn algorithms(jwk: serde_json::Value) -> Option<Vec<Algorithm>> {
        jwk_algorithms(&serde_json::from_value(jwk).unwrap())
    }

    #[test]
    fn jwks_keys_are_pinned_by_alg_or_key_type() {
        let rsa = json!({"kty": "RSA", "n": "sXch", "e": "AQAB"});
        assert_eq!(
            algorithms(rsa.clone()),
            Some(AlgorithmFamily::Rsa.algorithms().to_vec())
        );
        let mut pinned = rsa.clone();
        pinned["alg"] = json!("PS256");
        assert_eq!(algorithms(pinned), Some(vec![Algorithm::PS256]));
        // An alg that does not fit the key type: the key is not used.
        let mut wrong = rsa.clone();
        wrong["alg"] = json!("ES256");
        assert_eq!(algorithms(wrong), None);
        let mut encryption = rsa;
        encryption["use"] = json!("enc");
        assert_eq!(algorithms(encryption), None);
        let p384 = json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"});
        assert_eq!(algorithms(p384), Some(vec![Algorithm::ES384]));
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"});
        assert_eq!(algorithms(ed), Some(vec![Algorithm::EdDSA]));
        // A symmetric key in a public JWKS is never trusted.
        let oct = json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"});
        assert_eq!(algorithms(oct), None);
    }

    #[test]
    fn configured_keys_refuse_algorithms_of_another_family() {
        let err = JwtKey::hmac(Algorithm::RS256, b"secret").unwrap_err();
        assert!(matches!(err, JwtKeyError::WrongAlgorithm { .. }), "{err}");
        assert!(
            JwtKey::hmac(Algorithm::HS384, b"secret")
                .unwrap()
                .accepts(Algorithm::HS384)
        );
        assert!(
            !JwtKey::hmac(Algorithm::HS384, b"secret")
                .unwrap()
                .accepts(Algorithm::HS256)
        );
        assert!(matches!(
            JwtKey::rsa_pem(Algorithm::RS256, "not a pem"),
            Err(JwtKeyError::Invalid(_))
        ));
        assert!(matches!(
            parse_url("ftp://idp/jwks"),
            Err(JwtKeyError::InvalidUrl(_))
        ));
        assert!(parse_url("https://idp.example/jwks.json").is_ok());
    }
}
