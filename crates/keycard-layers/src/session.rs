//! The request's session: one cheap, clonable [`Session`] per request, and the axum extractor of
//! the same name (feature `axum`).
//!
//! The session-load stage puts a [`Session`] into the request extensions. Every later stage and
//! the handler share it: a write through one clone is visible to all of them at once (Auth0:
//! "changes are immediately available"), and is recorded in a [`MetadataDelta`] that the save
//! stage applies to the store once, atomically, after the response.
//!
//! ```
//! use keycard_core::metadata::MetadataLimits;
//! use keycard_core::session::SessionRecord;
//! use keycard_layers::session::Session;
//! use serde_json::json;
//!
//! let session = Session::new(SessionRecord::default(), MetadataLimits::tyk());
//!
//! // Typed access: anything `Serialize` in, anything `Deserialize` out.
//! session.insert("plan", "gold").unwrap();
//! session.insert("seats", 5).unwrap();
//! assert_eq!(session.get::<String>("plan").unwrap().as_deref(), Some("gold"));
//!
//! // Counters add up exactly in the store, whatever other requests do meanwhile.
//! assert_eq!(session.increment("visits", 1).unwrap(), 1);
//!
//! // Setting the current value again records nothing.
//! session.insert("plan", "gold").unwrap();
//! assert_eq!(session.changes().len(), 3);
//!
//! // Writes are checked against the limits (here Auth0's: string values only).
//! let strict = Session::new(SessionRecord::default(), MetadataLimits::auth0());
//! let err = strict.insert("bad key!", "x").unwrap_err();
//! assert_eq!(err.to_string(), "Metadata keys may only include letters, numbers, underscores, or hyphens");
//! ```
//!
//! In a handler, name `Session` as an argument (or `Option<Session>` where the stack lets
//! requests without a key through):
//!
//! ```
//! use axum::{Json, Router, routing::post};
//! use keycard_layers::session::{MetadataRejection, Session};
//! use serde_json::{Value, json};
//!
//! async fn visit(session: Session) -> Result<Json<Value>, MetadataRejection> {
//!     let visits = session.increment("visits", 1)?;
//!     Ok(Json(json!({ "visits": visits })))
//! }
//!
//! let app: Router = Router::new().route("/visits", post(visit));
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use keycard_core::key::KeyId;
use keycard_core::metadata::{Metadata, MetadataDelta, MetadataError, MetadataLimits, incremented};
use keycard_core::session::SessionRecord;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The session of one request: cheap to clone, every clone sees the same state.
///
/// Reads see the session as this request sees it: the stored record with its policies applied,
/// plus the writes made so far in this request. Writes are validated against the configured
/// [`MetadataLimits`] and recorded as a [`MetadataDelta`] for the save stage.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Mutex<State>>,
}

struct State {
    /// Shared with the store's decoded copy until the first write (copy on write).
    record: Arc<SessionRecord>,
    delta: MetadataDelta,
    limits: MetadataLimits,
}

impl Session {
    /// A session over `record` (the policy-applied view) whose writes are checked by `limits`.
    pub fn new(record: SessionRecord, limits: MetadataLimits) -> Self {
        Self::shared(Arc::new(record), limits)
    }

    /// A session over a record shared with others (as [`SessionStore::load_shared`] returns
    /// it); it is copied on the first write, so the others never see this request's changes.
    ///
    /// [`SessionStore::load_shared`]: keycard_core::store::SessionStore::load_shared
    pub fn shared(record: Arc<SessionRecord>, limits: MetadataLimits) -> Self {
        Self {
            inner: Arc::new(Mutex::new(State {
                record,
                delta: MetadataDelta::new(),
                limits,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation below completes before it can panic, so a poisoned lock still holds a
        // consistent record and delta.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value under `key`, deserialised as `T`; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// When the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, serde_json::Error> {
        self.with_metadata(|meta| meta.get(key).map(T::deserialize).transpose())
    }

    /// The raw JSON value under `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.lock().record.meta_data.get(key).cloned()
    }

    /// A copy of the whole metadata map.
    pub fn metadata(&self) -> Metadata {
        self.lock().record.meta_data.clone()
    }

    /// Runs `f` on the metadata without copying it. Do not call other methods of this session
    /// from inside `f` (it is locked while `f` runs).
    pub fn with_metadata<R>(&self, f: impl FnOnce(&Metadata) -> R) -> R {
        f(&self.lock().record.meta_data)
    }

    /// Runs `f` on the whole record view without copying it (same caveat as
    /// [`with_metadata`](Self::with_metadata)).
    pub fn with_record<R>(&self, f: impl FnOnce(&SessionRecord) -> R) -> R {
        f(&self.lock().record)
    }

    /// The hashed key the session is stored under.
    pub fn key_id(&self) -> KeyId {
        self.lock().record.key_id.clone()
    }

    /// The session's alias.
    pub fn alias(&self) -> String {
        self.lock().record.alias.clone()
    }

    /// The session's tags (its own and its policies').
    pub fn tags(&self) -> Vec<String> {
        self.lock().record.tags.clone()
    }

    /// The session's expiry in unix seconds (`0`: never).
    pub fn expires(&self) -> i64 {
        self.lock().record.expires
    }

    /// Stores `value` under `key`. Checked against the limits; storing the current value again
    /// records nothing. `None` and `()` are stored as JSON `null` (see [`set`](Self::set) for
    /// Auth0's "null deletes").
    ///
    /// # Errors
    /// When the entry breaks the limits, or `value` does not serialise to JSON.
    pub fn insert(
        &self,
        key: impl Into<String>,
        value: impl Serialize,
    ) -> Result<(), MetadataError> {
        let key = key.into();
        let value = serde_json::to_value(value).map_err(|error| MetadataError::NotJson {
            key: key.clone(),
            reason: error.to_string(),
        })?;
        self.insert_value(key, value)
    }

    /// Auth0 Actions' `api.session.setMetadata(key, value)`: stores `value`, and a `null` value
    /// removes the entry.
    ///
    /// # Errors
    /// When the entry breaks the limits.
    pub fn set(&self, key: impl Into<String>, value: Value) -> Result<(), MetadataError> {
        let key = key.into();
        if value.is_null() {
            self.remove(&key);
            return Ok(());
        }
        self.insert_value(key, value)
    }

    fn insert_value(&self, key: String, value: Value) -> Result<(), MetadataError> {
        let mut state = self.lock();
        state.limits.check_entry(&key, &value)?;
        let State {
            record,
            delta,
            limits,
        } = &mut *state;
        match record.meta_data.get(&key) {
            Some(current) if *current == value => return Ok(()),
            Some(_) => {}
            None => limits.check_count(record.meta_data.len() + 1)?,
        }
        Arc::make_mut(record)
            .meta_data
            .insert(key.clone(), value.clone());
        delta.set(key, value);
        Ok(())
    }

    /// Adds `by` to the integer under `key` and returns the value this request now sees. The
    /// store applies it as an increment, so concurrent increments from any number of requests
    /// and instances add up exactly. A missing key, or a value that is not an integer, starts
    /// from 0; a sum that would overflow `i64` leaves the value as it is.
    ///
    /// # Errors
    /// When the entry breaks the limits (the Auth0 profile stores strings only).
    pub fn increment(&self, key: impl Into<String>, by: i64) -> Result<i64, MetadataError> {
        let key = key.into();
        let mut state = self.lock();
        let State {
            record,
            delta,
            limits,
        } = &mut *state;
        let current = record.meta_data.get(&key);
        let Some(next) = incremented(current, by) else {
            return Ok(current.and_then(Value::as_i64).unwrap_or_default());
        };
        let value = Value::from(next);
        limits.check_entry(&key, &value)?;
        if current.is_none() {
            limits.check_count(record.meta_data.len() + 1)?;
        }
        if by == 0 && current == Some(&value) {
            return Ok(next);
        }
        // After a set, delete or evict of `key` in this request, this request's view decides
        // the stored value; otherwise the store adds `by` to whatever it holds then.
        if delta.decides(&key) {
            delta.set(key.clone(), value.clone());
        } else {
            delta.increment(key.clone(), by);
        }
        Arc::make_mut(record).meta_data.insert(key, value);
        Ok(next)
    }

    /// Removes `key` (Auth0 Actions' `deleteMetadata`); returns whether it was there.
    pub fn remove(&self, key: &str) -> bool {
        let mut state = self.lock();
        if !state.record.meta_data.contains_key(key) {
            return false;
        }
        Arc::make_mut(&mut state.record).meta_data.remove(key);
        state.delta.delete(key);
        true
    }

    /// Removes every entry (Auth0 Actions' `evictMetadata`).
    pub fn clear(&self) {
        let mut state = self.lock();
        if !state.record.meta_data.is_empty() {
            Arc::make_mut(&mut state.record).meta_data.clear();
            state.delta.evict();
        }
    }

    /// The changes recorded so far.
    pub fn changes(&self) -> MetadataDelta {
        self.lock().delta.clone()
    }

    /// Whether this request changed the metadata (and the changes are not saved yet).
    pub fn is_changed(&self) -> bool {
        !self.lock().delta.is_empty()
    }

    /// Takes the recorded changes, leaving none: what the save stage applies.
    pub fn take_changes(&self) -> MetadataDelta {
        std::mem::take(&mut self.lock().delta)
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Session")
            .field("key_id", &state.record.key_id.short())
            .field("changes", &state.delta.len())
            .finish_non_exhaustive()
    }
}

/// Put into the request extensions by a session-load stage in optional mode when the request
/// carried no key: later stages proceed without a session instead of reporting that the
/// session-load stage is missing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSession;

/// Whether the request went through a session-load stage: it holds a [`Session`], or the
/// [`NoSession`] marker of optional mode. Stages that need the session answer 500 when not.
pub(crate) fn loaded(extensions: &http::Extensions) -> bool {
    extensions.get::<Session>().is_some() || extensions.get::<NoSession>().is_some()
}

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;
    use keycard_core::metadata::MetadataError;

    use super::{NoSession, Session};
    use crate::response::{json_error, missing_session_layer};

    /// Why a [`Session`] could not be extracted.
    #[derive(Debug)]
    pub enum SessionRejection {
        /// The session-load stage let the request through without a key (optional mode);
        /// extract `Option<Session>` to accept that. Answers 401 `Authorization field missing`.
        NoSession,
        /// No session-load stage ran: a configuration error. Answers 500 and logs why.
        LayerMissing,
    }

    impl std::fmt::Display for SessionRejection {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                Self::NoSession => "the request carried no key",
                Self::LayerMissing => "no session-load stage ran for this request",
            })
        }
    }

    impl std::error::Error for SessionRejection {}

    impl IntoResponse for SessionRejection {
        fn into_response(self) -> Response {
            match self {
                Self::NoSession => json_error::<axum::body::Body>(
                    StatusCode::UNAUTHORIZED,
                    "Authorization field missing",
                ),
                Self::LayerMissing => missing_session_layer("the Session extractor"),
            }
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for Session {
        type Rejection = SessionRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            if let Some(session) = parts.extensions.get::<Session>() {
                return Ok(session.clone());
            }
            if parts.extensions.get::<NoSession>().is_some() {
                return Err(SessionRejection::NoSession);
            }
            Err(SessionRejection::LayerMissing)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
        type Rejection = SessionRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            match <Self as FromRequestParts<S>>::from_request_parts(parts, state).await {
                Ok(session) => Ok(Some(session)),
                Err(SessionRejection::NoSession) => Ok(None),
                Err(other) => Err(other),
            }
        }
    }

    /// A metadata write a handler made broke the limits: 400 with the limit's message, so
    /// handlers can use `?` on [`Session::insert`], [`Session::set`] and
    /// [`Session::increment`].
    #[derive(Debug)]
    pub struct MetadataRejection(pub MetadataError);

    impl From<MetadataError> for MetadataRejection {
        fn from(error: MetadataError) -> Self {
            Self(error)
        }
    }

    impl std::fmt::Display for MetadataRejection {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }

    impl std::error::Error for MetadataRejection {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    impl IntoResponse for MetadataRejection {
        fn into_response(self) -> Response {
            json_error::<axum::body::Body>(StatusCode::BAD_REQUEST, &self.0.to_string())
        }
    }
}

#[cfg(feature = "axum")]
pub use self::extract::{MetadataRejection, SessionRejection};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(limits: MetadataLimits) -> Session {
        Session::new(
            SessionRecord::default().metadata(json!({"a": "1", "b": "2"})),
            limits,
        )
    }

    #[test]
    fn writes_are_visible_through_every_clone() {
        let s = session(MetadataLimits::tyk());
        let other = s.clone();
        s.insert("c", 3).unwrap();
        assert_eq!(other.get::<i64>("c").unwrap(), Some(3));
        assert!(other.remove("a"));
        assert_eq!(s.get_value("a"), None);
    }

    #[test]
    fn typed_values_round_trip() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Prefs {
            theme: String,
            seats: u32,
        }
        let s = session(MetadataLimits::tyk());
        let prefs = Prefs {
            theme: "dark".into(),
            seats: 3,
        };
        s.insert("prefs", &prefs).unwrap();
        assert_eq!(s.get::<Prefs>("prefs").unwrap(), Some(prefs));
        assert_eq!(
            s.get_value("prefs"),
            Some(json!({"theme": "dark", "seats": 3}))
        );
        assert_eq!(s.get::<Prefs>("missing").unwrap(), None);
        assert!(s.get::<u32>("a").is_err(), "a string is not a u32");
        let mut not_json = std::collections::HashMap::new();
        not_json.insert((1, 2), "x");
        assert!(matches!(
            s.insert("bad", not_json),
            Err(MetadataError::NotJson { .. })
        ));
    }

    #[test]
    fn set_with_null_deletes_and_insert_of_none_stores_null() {
        let s = session(MetadataLimits::tyk());
        s.set("a", Value::Null).unwrap();
        assert_eq!(s.get_value("a"), None);
        s.insert("b", None::<String>).unwrap();
        assert_eq!(s.get_value("b"), Some(Value::Null));
    }

    #[test]
    fn delta_records_changes_in_order_and_skips_no_ops() {
        let s = session(MetadataLimits::tyk());
        s.insert("a", "1").unwrap(); // unchanged
        assert!(!s.remove("missing"));
        assert!(!s.is_changed());
        s.insert("a", "x").unwrap();
        s.remove("b");
        let mut expected = MetadataDelta::new();
        expected.set("a", json!("x")).delete("b");
        assert_eq!(s.take_changes(), expected);
        assert!(!s.is_changed());
    }

    #[test]
    fn increments_are_recorded_as_increments_until_the_request_decides_the_value() {
        let s = session(MetadataLimits::tyk());
        assert_eq!(s.increment("n", 2).unwrap(), 2);
        assert_eq!(s.increment("n", 3).unwrap(), 5);
        let mut expected = MetadataDelta::new();
        expected.increment("n", 5);
        assert_eq!(s.changes(), expected);
        // After a set, the request's view is what the store must end with.
        s.insert("m", 10).unwrap();
        assert_eq!(s.increment("m", 1).unwrap(), 11);
        assert_eq!(
            s.changes().changes().last(),
            expected_set("m", 11).changes().first()
        );
        // A string starts from 0.
        assert_eq!(s.increment("a", 1).unwrap(), 1);
    }

    fn expected_set(key: &str, value: i64) -> MetadataDelta {
        let mut delta = MetadataDelta::new();
        delta.set(key, json!(value));
        delta
    }

    #[test]
    fn increments_are_checked_against_the_limits() {
        let s = session(MetadataLimits::auth0());
        assert!(matches!(
            s.increment("n", 1),
            Err(MetadataError::NotAString { .. })
        ));
        assert!(!s.is_changed());
        let s = session(MetadataLimits::tyk().max_entries(2));
        assert!(matches!(
            s.increment("n", 1),
            Err(MetadataError::TooLarge { .. })
        ));
    }

    #[test]
    fn writes_copy_a_shared_record_and_leave_the_original() {
        let stored = Arc::new(SessionRecord::default().metadata(json!({"a": "1", "b": "2"})));
        let s = Session::shared(stored.clone(), MetadataLimits::tyk());
        s.insert("a", "1").unwrap(); // no change: no copy
        s.with_record(|r| assert!(std::ptr::eq(r, &*stored)));
        s.insert("a", "x").unwrap();
        s.remove("b");
        assert_eq!(s.get_value("a"), Some(json!("x")));
        assert_eq!(stored.meta_data["a"], "1");
        assert_eq!(stored.meta_data["b"], "2");
        let other = Session::shared(stored.clone(), MetadataLimits::tyk());
        other.clear();
        assert_eq!(stored.meta_data.len(), 2);
    }

    #[test]
    fn clear_empties_and_records() {
        let s = session(MetadataLimits::tyk());
        s.clear();
        assert!(s.metadata().is_empty());
        assert_eq!(s.changes().len(), 1);
    }

    #[test]
    fn entry_count_limit_applies_to_new_keys_only() {
        let s = session(MetadataLimits::auth0().max_entries(2));
        assert!(matches!(
            s.insert("c", "3"),
            Err(MetadataError::TooLarge { .. })
        ));
        s.insert("a", "changed").unwrap();
        assert!(!s.metadata().contains_key("c"));
    }
}
