//! What a session-load stage is configured with, and how it turns a store answer into the
//! request's [`Session`] or a refusal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Response, StatusCode};
use keycard_core::key::KeyId;
use keycard_core::metadata::MetadataLimits;
use keycard_core::policy::{PolicySource, apply_policies};
use keycard_core::session::{SessionRecord, unix_now};
use keycard_core::store::{SessionStore, StoreError};

use super::activity::Tracker;
use super::source::KeySource;
use keycard_core::key::KeyHasher;

use crate::context::ForwardedFor;
use crate::session::Session;

#[derive(Clone)]
pub(super) struct Config {
    pub(super) store: Arc<dyn SessionStore>,
    pub(super) policies: Arc<dyn PolicySource>,
    pub(super) sources: Vec<KeySource>,
    pub(super) limits: MetadataLimits,
    pub(super) optional: bool,
    pub(super) keep_credential: bool,
    pub(super) expose_token: bool,
    pub(super) min_key_length: usize,
    pub(super) forwarded_for: ForwardedFor,
    pub(super) key_hasher: KeyHasher,
    /// Sessions from tokens instead of stored API keys.
    #[cfg(feature = "jwt")]
    pub(super) jwt: Option<super::jwt::JwtAuth>,
    /// Set once a request left changes unsaved (no save stage ran): the error is logged once.
    pub(super) unsaved_reported: Arc<AtomicBool>,
    /// Activity tracking and the idle timeout, when on.
    pub(super) activity: Option<Arc<Tracker>>,
}

/// An admitted request's session, and whether this request records the session's activity.
pub(super) struct Admitted {
    pub(super) session: Session,
    pub(super) touch: Option<(Arc<Tracker>, i64)>,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    Missing,
    UnknownKey,
    Inactive,
    Expired,
    Idle,
    Unavailable,
}

impl Refusal {
    pub(super) fn response<B: From<Bytes>>(self, www_authenticate: bool) -> Response<B> {
        let (status, message) = match self {
            Self::Missing => (StatusCode::UNAUTHORIZED, "Authorization field missing"),
            Self::UnknownKey => (
                StatusCode::FORBIDDEN,
                "Access to this API has been disallowed",
            ),
            Self::Inactive => (StatusCode::FORBIDDEN, "Key is inactive, please renew"),
            // An idle session has expired as far as its client can tell: the same answer.
            Self::Expired | Self::Idle => {
                (StatusCode::UNAUTHORIZED, "Key has expired, please renew")
            }
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
        loaded: Result<Option<Arc<SessionRecord>>, StoreError>,
    ) -> Result<Admitted, Refusal> {
        let key = key_id.short();
        let mut record = match loaded {
            Ok(Some(record)) => record,
            Ok(None) => {
                tracing::debug!(key, "keycard: unknown key");
                return Err(Refusal::UnknownKey);
            }
            Err(error) => {
                tracing::error!(key, error = %error, cause = ?std::error::Error::source(&error), "keycard: session store failed");
                return Err(Refusal::Unavailable);
            }
        };
        // The stored record is shared (see `SessionStore::load_shared`): only a record that
        // lists policies is copied here, to hold its policy-applied view.
        if !record.apply_policies.is_empty()
            && let Err(missing) = apply_policies(Arc::make_mut(&mut record), &*self.policies)
        {
            tracing::warn!(key, policy = %missing.id, "keycard: session lists a policy that does not exist");
            return Err(Refusal::UnknownKey);
        }
        if record.is_inactive {
            tracing::debug!(key, "keycard: inactive key");
            return Err(Refusal::Inactive);
        }
        let now = unix_now();
        if record.is_expired_at(now) {
            tracing::debug!(key, "keycard: expired key");
            return Err(Refusal::Expired);
        }
        let mut touch = None;
        if let Some(tracker) = &self.activity {
            if tracker.is_idle(&record, now) {
                tracing::debug!(key, "keycard: idle session");
                return Err(Refusal::Idle);
            }
            // One comparison when the record is fresh (see `activity`).
            if tracker.claim(key_id, &record, now) {
                touch = Some((tracker.clone(), now));
            }
        }
        // Stores return the record under the id it was loaded by; only a store that leaves the
        // field empty pays for a copy.
        if record.key_id != *key_id {
            Arc::make_mut(&mut record).key_id = key_id.clone();
        }
        Ok(Admitted {
            session: Session::shared(record, self.limits.clone()),
            touch,
        })
    }

    /// Called when the inner service has answered: changes still recorded on the session were
    /// taken by no save stage, so they are lost. Said loudly, once per layer.
    pub(super) fn check_saved(&self, session: &Session) {
        if session.is_changed() && !self.unsaved_reported.swap(true, Ordering::Relaxed) {
            tracing::error!(
                key = session.key_id().short(),
                "keycard: a request changed session metadata but no PersistLayer saved it; the \
                 changes are lost. Stack PersistLayer inside SessionLoadLayer, or use \
                 keycard::Keycard, which always saves (logged once)"
            );
        }
    }
}
