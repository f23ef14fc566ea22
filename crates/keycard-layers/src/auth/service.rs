//! The session-load service.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::config::{Config, Refusal};
use super::future::{LoadFuture, Loaded, ResponseFuture};
use super::layer::SessionLoadLayer;
use super::source::GENERATED_IDENTITY_PREFIX;
use crate::context::ClientAddr;
use crate::response::invalid_request_path;
use crate::session::NoSession;

/// The service of [`SessionLoadLayer`].
#[derive(Clone)]
pub struct SessionLoad<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SessionLoad<S> {
    /// Wraps `inner` with the configuration of `layer`.
    pub fn new(inner: S, layer: &SessionLoadLayer) -> Self {
        Self::from_layer(inner, layer.config.clone())
    }

    pub(super) fn from_layer(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    define_inner_service_accessors!();
}

impl<S> Layer<S> for SessionLoadLayer {
    type Service = SessionLoad<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionLoad::from_layer(inner, self.config.clone())
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
        // Context every later stage reads, resolved once here: the normalised path first, so
        // every later stage and the service match and see one path.
        if let Err(why) = crate::normalize::request(&mut request) {
            return ResponseFuture::reject(invalid_request_path(why));
        }
        if let Some(ip) = config
            .forwarded_for
            .client_addr(request.headers(), request.extensions())
        {
            request.extensions_mut().insert(ClientAddr(ip));
        }
        let found = config
            .sources
            .iter()
            .find_map(|source| source.find(&request).map(|key| (source, key)));
        let Some((source, key)) = found else {
            if config.optional {
                request.extensions_mut().insert(NoSession);
                return ResponseFuture::inner(self.inner.call(request));
            }
            #[cfg(feature = "jwt")]
            if config.jwt.is_some() {
                let missing = super::jwt::Rejection::MISSING;
                return ResponseFuture::reject(crate::response::json_error(
                    missing.status,
                    &missing.message,
                ));
            }
            let www_authenticate = config.sources.iter().any(|s| s.is_authorization());
            return ResponseFuture::reject(Refusal::Missing.response(www_authenticate));
        };
        if !config.keep_credential {
            source.strip(&mut request);
        }
        let www_authenticate = source.is_authorization();
        let Some(key) = key else {
            tracing::debug!("keycard: credential is not visible ASCII");
            return ResponseFuture::reject(Refusal::UnknownKey.response(www_authenticate));
        };
        #[cfg(feature = "jwt")]
        if let Some(jwt) = &config.jwt {
            let (jwt, config_for_load) = (jwt.clone(), config.clone());
            if config.expose_token {
                request.extensions_mut().insert(key.clone());
            }
            let load: LoadFuture = Box::pin(async move {
                let c = &*config_for_load;
                Loaded::Token(
                    jwt.admit(
                        key.expose(),
                        &*c.store,
                        &*c.policies,
                        &c.key_hasher,
                        &c.limits,
                    )
                    .await,
                )
            });
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::load(load, request, inner, config.clone(), false);
        }
        if key.len() < config.min_key_length {
            tracing::debug!("keycard: key shorter than the minimum length");
            return ResponseFuture::reject(Refusal::UnknownKey.response(www_authenticate));
        }
        if key.expose().starts_with(GENERATED_IDENTITY_PREFIX) {
            tracing::debug!("keycard: an API key in the generated-session namespace");
            return ResponseFuture::reject(Refusal::UnknownKey.response(www_authenticate));
        }
        let key_id = config.key_hasher.key_id(&key);
        // The raw key goes no further unless templates were allowed to read it.
        if config.expose_token {
            request.extensions_mut().insert(key);
        }
        let store = config.store.clone();
        let load: LoadFuture = Box::pin(async move {
            let loaded = store.load_shared(&key_id).await;
            Loaded::Stored(key_id, loaded)
        });
        // The clone that was driven to readiness is the one that gets the call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::load(load, request, inner, config.clone(), www_authenticate)
    }
}
