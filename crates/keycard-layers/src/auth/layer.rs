use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use keycard_core::key::KeyId;
use keycard_core::metadata::MetadataLimits;
use keycard_core::policy::{NoPolicies, PolicySource, apply_policies};
use keycard_core::session::{Session, unix_now};
use keycard_core::store::{SessionStore, StoreError};
use tower_layer::Layer;
use tower_service::Service;

use super::future::{LoadFuture, ResponseFuture};
use super::source::KeySource;
use crate::handle::{NoSession, SessionHandle};

/// The default minimum key length: shorter keys are treated as unknown keys.
pub const DEFAULT_MIN_KEY_LENGTH: usize = 3;

/// Loads the session behind the request's API key and puts a [`SessionHandle`] into the request
/// extensions. See the [module docs](super) for the responses it sends.
#[derive(Clone)]
pub struct SessionLoadLayer {
    config: Arc<Config>,
}

#[derive(Clone)]
pub(super) struct Config {
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) policies: Arc<dyn PolicySource>,
    pub(super) sources: Vec<KeySource>,
    pub(super) limits: MetadataLimits,
    pub(super) optional: bool,
    pub(super) strip_credential: bool,
    pub(super) min_key_length: usize,
}

impl SessionLoadLayer {
    /// A layer that loads sessions from `store`, reading the key from the `Authorization`
    /// header, with no policies, the Tyk metadata limits, the key required, and the credential
    /// left on the request.
    pub fn new(store: impl SessionStore) -> Self {
        Self::from_shared_store(Arc::new(store))
    }

    /// Like [`new`](Self::new), for a store that is already shared.
    pub fn from_shared_store(store: Arc<dyn SessionStore>) -> Self {
        Self {
            config: Arc::new(Config {
                store,
                policies: Arc::new(NoPolicies),
                sources: vec![KeySource::authorization()],
                limits: MetadataLimits::tyk(),
                optional: false,
                strip_credential: false,
                min_key_length: DEFAULT_MIN_KEY_LENGTH,
            }),
        }
    }

    /// Copy-on-write: configuring a clone leaves the original as it was.
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Where to look for the key, in order; the first non-empty value wins.
    ///
    /// # Panics
    /// If `sources` is empty.
    pub fn key_sources(mut self, sources: impl IntoIterator<Item = KeySource>) -> Self {
        let sources: Vec<_> = sources.into_iter().collect();
        assert!(
            !sources.is_empty(),
            "SessionLoadLayer needs at least one key source"
        );
        self.config_mut().sources = sources;
        self
    }

    /// The policies sessions may list in `apply_policies`.
    pub fn policies(mut self, policies: impl PolicySource) -> Self {
        self.config_mut().policies = Arc::new(policies);
        self
    }

    /// The limits every metadata write through the [`SessionHandle`] is checked against.
    pub fn limits(mut self, limits: MetadataLimits) -> Self {
        self.config_mut().limits = limits;
        self
    }

    /// Optional mode: a request without a key continues without a session (later layers see
    /// [`NoSession`]); a bad key is still rejected.
    pub fn optional(mut self) -> Self {
        self.config_mut().optional = true;
        self
    }

    /// Removes the credential (the header, query parameter or cookie it came from) before the
    /// request goes further, so the key never reaches an upstream.
    pub fn strip_credential(mut self) -> Self {
        self.config_mut().strip_credential = true;
        self
    }

    /// Keys shorter than this many characters are unknown keys (default
    /// [`DEFAULT_MIN_KEY_LENGTH`]).
    pub fn min_key_length(mut self, chars: usize) -> Self {
        self.config_mut().min_key_length = chars;
        self
    }
}

impl<S> Layer<S> for SessionLoadLayer {
    type Service = SessionLoad<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionLoad {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of [`SessionLoadLayer`].
#[derive(Clone)]
pub struct SessionLoad<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SessionLoad<S> {
    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionLoad<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<Bytes>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let found = config
            .sources
            .iter()
            .find_map(|source| source.find(&request).map(|key| (source, key)));
        let Some((source, key)) = found else {
            if config.optional {
                request.extensions_mut().insert(NoSession);
                return ResponseFuture::inner(self.inner.call(request));
            }
            let www_authenticate = config.sources.iter().any(KeySource::is_authorization);
            return ResponseFuture::reject(Rejection::Missing.response(www_authenticate));
        };
        if config.strip_credential {
            source.strip(&mut request);
        }
        let www_authenticate = source.is_authorization();
        if key.len() < config.min_key_length {
            tracing::debug!("keycard: key shorter than the minimum length");
            return ResponseFuture::reject(Rejection::UnknownKey.response(www_authenticate));
        }
        let key_id = KeyId::of(&key);
        request.extensions_mut().insert(key);
        let store = config.store.clone();
        let load: LoadFuture = Box::pin(async move {
            let loaded = store.load_shared(&key_id).await;
            (key_id, loaded)
        });
        // The clone that was driven to readiness is the one that gets the call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::load(load, request, inner, config.clone(), www_authenticate)
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rejection {
    Missing,
    UnknownKey,
    Inactive,
    Expired,
    Unavailable,
}

impl Rejection {
    pub(super) fn response<B: From<Bytes>>(self, www_authenticate: bool) -> Response<B> {
        let (status, message) = match self {
            Self::Missing => (StatusCode::UNAUTHORIZED, "Authorization field missing"),
            Self::UnknownKey => (
                StatusCode::FORBIDDEN,
                "Access to this API has been disallowed",
            ),
            Self::Inactive => (StatusCode::FORBIDDEN, "Key is inactive, please renew"),
            Self::Expired => (StatusCode::UNAUTHORIZED, "Key has expired, please renew"),
            Self::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Session store unavailable"),
        };
        let mut response = crate::response::json_error(status, message);
        if www_authenticate && status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl Config {
    /// Turns a store answer into the session the request sees, or a rejection.
    pub(super) fn admit(
        &self,
        key_id: &KeyId,
        loaded: Result<Option<Arc<Session>>, StoreError>,
    ) -> Result<SessionHandle, Rejection> {
        let key = key_id.short();
        let mut session = match loaded {
            Ok(Some(session)) => session,
            Ok(None) => {
                tracing::debug!(key, "keycard: unknown key");
                return Err(Rejection::UnknownKey);
            }
            Err(error) => {
                tracing::error!(key, error = %error, cause = ?std::error::Error::source(&error), "keycard: session store failed");
                return Err(Rejection::Unavailable);
            }
        };
        // The stored session is shared (see `SessionStore::load_shared`): only a session that
        // lists policies is copied here, to hold its policy-applied view.
        if !session.apply_policies.is_empty()
            && let Err(missing) = apply_policies(Arc::make_mut(&mut session), &*self.policies)
        {
            tracing::warn!(key, policy = %missing.id, "keycard: session lists a policy that does not exist");
            return Err(Rejection::UnknownKey);
        }
        if session.is_inactive {
            tracing::debug!(key, "keycard: inactive key");
            return Err(Rejection::Inactive);
        }
        if session.is_expired_at(unix_now()) {
            tracing::debug!(key, "keycard: expired key");
            return Err(Rejection::Expired);
        }
        // Stores return the session under the id it was loaded by; only a store that leaves the
        // field empty pays for a copy.
        if session.key_id != *key_id {
            Arc::make_mut(&mut session).key_id = key_id.clone();
        }
        Ok(SessionHandle::shared(session, self.limits.clone()))
    }
}
