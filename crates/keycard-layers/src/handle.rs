//! The per-request session handle.
//!
//! [`SessionLoadLayer`](crate::auth::SessionLoadLayer) puts a [`SessionHandle`] into the request
//! extensions. Every later layer and the handler share it: a write through one clone is visible
//! to all of them at once (Auth0: "changes are immediately available"), and is recorded in a
//! [`MetadataDelta`] that [`PersistLayer`](crate::persist::PersistLayer) saves once, after the
//! response.
//!
//! ```
//! use keycard_layers::handle::SessionHandle;
//! use keycard_core::metadata::MetadataLimits;
//! use keycard_core::session::Session;
//! use serde_json::json;
//!
//! let handle = SessionHandle::new(Session::default(), MetadataLimits::auth0());
//! handle.set_metadata("plan", json!("gold")).unwrap();
//! assert_eq!(handle.get("plan"), Some(json!("gold")));
//!
//! // Writes are checked against the limits.
//! let err = handle.set_metadata("bad key!", json!("x")).unwrap_err();
//! assert_eq!(err.to_string(), "Metadata keys may only include letters, numbers, underscores, or hyphens");
//!
//! // Setting the same value again records nothing.
//! handle.set_metadata("plan", json!("gold")).unwrap();
//! assert_eq!(handle.changes().len(), 1);
//! ```

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use keycard_core::key::KeyId;
use keycard_core::metadata::{Metadata, MetadataDelta, MetadataError, MetadataLimits};
use keycard_core::session::Session;
use serde_json::Value;

/// A cheap, clonable handle to the session of one request.
///
/// Reads see the session as this request sees it: the stored session with its policies applied,
/// plus the writes made so far in this request. Writes are validated against the configured
/// [`MetadataLimits`].
#[derive(Clone)]
pub struct SessionHandle {
    inner: Arc<Mutex<HandleState>>,
}

struct HandleState {
    /// Shared with the store's decoded copy until the first write (copy on write).
    session: Arc<Session>,
    delta: MetadataDelta,
    limits: MetadataLimits,
}

impl SessionHandle {
    /// A handle over `session` (the policy-applied view) whose writes are checked by `limits`.
    pub fn new(session: Session, limits: MetadataLimits) -> Self {
        Self::shared(Arc::new(session), limits)
    }

    /// A handle over a session shared with others (as [`SessionStore::load_shared`] returns
    /// it); it is copied on the first write, so the others never see this request's changes.
    ///
    /// [`SessionStore::load_shared`]: keycard_core::store::SessionStore::load_shared
    pub fn shared(session: Arc<Session>, limits: MetadataLimits) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HandleState {
                session,
                delta: MetadataDelta::new(),
                limits,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HandleState> {
        // Every mutation below completes before it can panic, so a poisoned lock still holds a
        // consistent session and delta.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.lock().session.meta_data.get(key).cloned()
    }

    /// A copy of the whole metadata map.
    pub fn metadata(&self) -> Metadata {
        self.lock().session.meta_data.clone()
    }

    /// Runs `f` on the metadata without copying it. Do not call other methods of this handle
    /// from inside `f` (the handle is locked while `f` runs).
    pub fn with_metadata<R>(&self, f: impl FnOnce(&Metadata) -> R) -> R {
        f(&self.lock().session.meta_data)
    }

    /// Runs `f` on the whole session view without copying it (same caveat as
    /// [`with_metadata`](Self::with_metadata)).
    pub fn with_session<R>(&self, f: impl FnOnce(&Session) -> R) -> R {
        f(&self.lock().session)
    }

    /// The hashed key the session is stored under.
    pub fn key_id(&self) -> KeyId {
        self.lock().session.key_id.clone()
    }

    /// The session's alias.
    pub fn alias(&self) -> String {
        self.lock().session.alias.clone()
    }

    /// The session's tags (its own and its policies').
    pub fn tags(&self) -> Vec<String> {
        self.lock().session.tags.clone()
    }

    /// The session's expiry in unix seconds (`0`: never).
    pub fn expires(&self) -> i64 {
        self.lock().session.expires
    }

    /// Sets `key` to `value` (Auth0 Actions' `setMetadata`). Checked against the limits; setting
    /// the current value again records nothing.
    pub fn set_metadata(&self, key: impl Into<String>, value: Value) -> Result<(), MetadataError> {
        let key = key.into();
        let mut state = self.lock();
        state.limits.check_entry(&key, &value)?;
        let HandleState {
            session,
            delta,
            limits,
        } = &mut *state;
        match session.meta_data.get(&key) {
            Some(current) if *current == value => return Ok(()),
            Some(_) => {}
            None => limits.check_count(session.meta_data.len() + 1)?,
        }
        Arc::make_mut(session)
            .meta_data
            .insert(key.clone(), value.clone());
        delta.set(key, value);
        Ok(())
    }

    /// Removes `key` (Auth0 Actions' `deleteMetadata`); returns whether it was there.
    pub fn delete_metadata(&self, key: &str) -> bool {
        let mut state = self.lock();
        if !state.session.meta_data.contains_key(key) {
            return false;
        }
        Arc::make_mut(&mut state.session).meta_data.remove(key);
        state.delta.delete(key);
        true
    }

    /// Removes every entry (Auth0 Actions' `evictMetadata`).
    pub fn evict_metadata(&self) {
        let mut state = self.lock();
        if !state.session.meta_data.is_empty() {
            Arc::make_mut(&mut state.session).meta_data.clear();
            state.delta.evict();
        }
    }

    /// The changes recorded so far.
    pub fn changes(&self) -> MetadataDelta {
        self.lock().delta.clone()
    }

    /// Whether this request changed the metadata.
    pub fn is_changed(&self) -> bool {
        !self.lock().delta.is_empty()
    }

    /// Takes the recorded changes, leaving none: what persist saves.
    pub fn take_changes(&self) -> MetadataDelta {
        std::mem::take(&mut self.lock().delta)
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("SessionHandle")
            .field("key_id", &state.session.key_id.short())
            .field("changes", &state.delta.len())
            .finish_non_exhaustive()
    }
}

/// Put into the request extensions by a session-load layer in optional mode when the request
/// carried no key: later layers proceed without a session instead of reporting that the
/// session-load layer is missing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSession;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn handle(limits: MetadataLimits) -> SessionHandle {
        let Value::Object(meta) = json!({"a": "1", "b": "2"}) else {
            unreachable!()
        };
        SessionHandle::new(Session::new(meta), limits)
    }

    #[test]
    fn writes_are_visible_through_every_clone() {
        let h = handle(MetadataLimits::tyk());
        let other = h.clone();
        h.set_metadata("c", json!(3)).unwrap();
        assert_eq!(other.get("c"), Some(json!(3)));
        assert!(other.delete_metadata("a"));
        assert_eq!(h.get("a"), None);
    }

    #[test]
    fn delta_records_changes_in_order_and_skips_no_ops() {
        let h = handle(MetadataLimits::tyk());
        h.set_metadata("a", json!("1")).unwrap(); // unchanged
        assert!(!h.delete_metadata("missing"));
        assert!(!h.is_changed());
        h.set_metadata("a", json!("x")).unwrap();
        h.delete_metadata("b");
        let mut expected = MetadataDelta::new();
        expected.set("a", json!("x")).delete("b");
        assert_eq!(h.take_changes(), expected);
        assert!(!h.is_changed());
    }

    #[test]
    fn writes_copy_a_shared_session_and_leave_the_original() {
        let Value::Object(meta) = json!({"a": "1", "b": "2"}) else {
            unreachable!()
        };
        let stored = Arc::new(Session::new(meta));
        let h = SessionHandle::shared(stored.clone(), MetadataLimits::tyk());
        h.set_metadata("a", json!("1")).unwrap(); // no change: no copy
        h.with_session(|s| assert!(std::ptr::eq(s, &*stored)));
        h.set_metadata("a", json!("x")).unwrap();
        h.delete_metadata("b");
        assert_eq!(h.get("a"), Some(json!("x")));
        assert_eq!(stored.meta_data["a"], "1");
        assert_eq!(stored.meta_data["b"], "2");
        let other = SessionHandle::shared(stored.clone(), MetadataLimits::tyk());
        other.evict_metadata();
        assert_eq!(stored.meta_data.len(), 2);
    }

    #[test]
    fn evict_clears_and_records() {
        let h = handle(MetadataLimits::tyk());
        h.evict_metadata();
        assert!(h.metadata().is_empty());
        assert_eq!(h.changes().len(), 1);
    }

    #[test]
    fn entry_count_limit_applies_to_new_keys_only() {
        let h = handle(MetadataLimits::auth0().max_entries(2));
        assert!(matches!(
            h.set_metadata("c", json!("3")),
            Err(MetadataError::TooLarge { .. })
        ));
        h.set_metadata("a", json!("changed")).unwrap();
        assert!(!h.metadata().contains_key("c"));
    }
}
