//! Policies: shared settings a session inherits by listing them in `apply_policies`.
//!
//! Policies are applied to the *view* a request sees, on every load (a cache hit too); they are
//! never written into the stored key. The merge follows Tyk (`internal/policy/apply.go`):
//! metadata — policy beats key, later policy beats earlier, keys only on the session survive;
//! tags — union without duplicates; inactive — if the session or any policy is.
//!
//! ```
//! use keycard_core::policy::{MemoryPolicies, Policy, apply_policies};
//! use keycard_core::session::SessionRecord;
//! use serde_json::json;
//!
//! let policies = MemoryPolicies::new();
//! policies.insert(Policy::new("gold").with_meta("plan", json!("gold")));
//!
//! let mut session: SessionRecord = serde_json::from_value(json!({
//!     "meta_data": {"plan": "free", "user_id": "u-1"},
//!     "apply_policies": ["gold"],
//! })).unwrap();
//! apply_policies(&mut session, &policies).unwrap();
//! assert_eq!(session.meta_data["plan"], "gold");
//! assert_eq!(session.meta_data["user_id"], "u-1");
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::metadata::Metadata;
use crate::session::SessionRecord;

/// A policy: Tyk's policy object, the fields keycard acts on typed and every other field (Tyk's
/// `access_rights`, `org_id`, `active`, `partitions`, `key_expires_in`, ...) kept as it came in
/// [`extra`](Self::extra). `null` reads as empty for `meta_data` and `tags`, as Tyk's schema
/// allows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
#[non_exhaustive]
pub struct Policy {
    /// The id sessions refer to in `apply_policies`.
    pub id: String,
    /// A display name.
    pub name: String,
    /// Metadata copied over the session's on load.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    #[serde(deserialize_with = "crate::session::null_as_default")]
    pub meta_data: Metadata,
    /// Tags added to the session's.
    #[serde(deserialize_with = "crate::session::null_as_default")]
    pub tags: Vec<String>,
    /// Disables every session the policy is applied to.
    pub is_inactive: bool,
    /// Requests per `per` seconds; applied when above 0.
    pub rate: f64,
    /// The rate window in seconds.
    pub per: f64,
    /// Quota maximum; applied when not 0.
    #[serde(deserialize_with = "crate::session::whole_number")]
    pub quota_max: i64,
    /// Quota renewal period in seconds; applied when not 0.
    #[serde(deserialize_with = "crate::session::whole_number")]
    pub quota_renewal_rate: i64,
    /// The policy's other fields, as they came: stored and shown, not acted on.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub extra: Map<String, Value>,
}

impl Policy {
    /// An empty policy with the given id.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }

    /// Adds a metadata entry (builder style).
    pub fn with_meta(mut self, key: impl Into<String>, value: Value) -> Self {
        self.meta_data.insert(key.into(), value);
        self
    }

    /// Adds a tag (builder style).
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Marks the policy inactive (builder style).
    pub fn inactive(mut self) -> Self {
        self.is_inactive = true;
        self
    }
}

/// Where policies come from.
pub trait PolicySource: Send + Sync + 'static {
    /// The policy with this id, if there is one.
    fn policy(&self, id: &str) -> Option<Arc<Policy>>;
}

impl<T: PolicySource + ?Sized> PolicySource for Arc<T> {
    fn policy(&self, id: &str) -> Option<Arc<Policy>> {
        (**self).policy(id)
    }
}

/// A policy source with no policies: any session that lists one is refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPolicies;

impl PolicySource for NoPolicies {
    fn policy(&self, _id: &str) -> Option<Arc<Policy>> {
        None
    }
}

/// An in-memory policy set, shared between clones (the admin API changes it, the layers read it).
#[derive(Clone, Debug, Default)]
pub struct MemoryPolicies {
    policies: Arc<RwLock<HashMap<String, Arc<Policy>>>>,
}

impl MemoryPolicies {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a policy; returns the one it replaced.
    pub fn insert(&self, policy: Policy) -> Option<Arc<Policy>> {
        self.write().insert(policy.id.clone(), Arc::new(policy))
    }

    /// Removes a policy.
    pub fn remove(&self, id: &str) -> Option<Arc<Policy>> {
        self.write().remove(id)
    }

    /// Every policy, ordered by id.
    pub fn list(&self) -> Vec<Arc<Policy>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Policy>>> {
        // Inserts and removes are single map operations: a poisoned lock is still consistent.
        self.policies.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Policy>>> {
        self.policies.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl PolicySource for MemoryPolicies {
    fn policy(&self, id: &str) -> Option<Arc<Policy>> {
        self.read().get(id).cloned()
    }
}

/// A session lists a policy that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy {id:?} does not exist")]
pub struct PolicyNotFound {
    /// The missing policy id.
    pub id: String,
}

/// Applies the session's policies, in order, to `session` (the view a request sees).
pub fn apply_policies(
    session: &mut SessionRecord,
    source: &(impl PolicySource + ?Sized),
) -> Result<(), PolicyNotFound> {
    for id in &session.apply_policies {
        let policy = source
            .policy(id)
            .ok_or_else(|| PolicyNotFound { id: id.clone() })?;
        for (key, value) in &policy.meta_data {
            session.meta_data.insert(key.clone(), value.clone());
        }
        for tag in &policy.tags {
            if !session.tags.contains(tag) {
                session.tags.push(tag.clone());
            }
        }
        session.is_inactive |= policy.is_inactive;
        if policy.rate > 0.0 {
            session.rate = policy.rate;
            session.per = policy.per;
        }
        if policy.quota_max != 0 {
            session.quota_max = policy.quota_max;
        }
        if policy.quota_renewal_rate != 0 {
            session.quota_renewal_rate = policy.quota_renewal_rate;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(meta: Value, policies: &[&str]) -> SessionRecord {
        let Value::Object(meta) = meta else {
            unreachable!()
        };
        SessionRecord::new(meta).with_policies(policies.iter().copied())
    }

    #[test]
    fn later_policy_beats_earlier_and_policy_beats_key() {
        let source = MemoryPolicies::new();
        source.insert(
            Policy::new("a")
                .with_meta("x", json!("a"))
                .with_meta("y", json!("a")),
        );
        source.insert(Policy::new("b").with_meta("y", json!("b")));
        let mut s = session(json!({"x": "key", "only": "key"}), &["a", "b"]);
        apply_policies(&mut s, &source).unwrap();
        assert_eq!(
            Value::Object(s.meta_data),
            json!({"x": "a", "y": "b", "only": "key"})
        );
    }

    #[test]
    fn tags_union_and_inactive_spreads() {
        let source = MemoryPolicies::new();
        source.insert(Policy::new("a").with_tag("t1").with_tag("t2"));
        source.insert(Policy::new("b").with_tag("t2").inactive());
        let mut s = session(json!({}), &["a", "b"]);
        s.tags = vec!["t1".into(), "own".into()];
        apply_policies(&mut s, &source).unwrap();
        assert_eq!(s.tags, ["t1", "own", "t2"]);
        assert!(s.is_inactive);
    }

    #[test]
    fn missing_policy_is_an_error() {
        let mut s = session(json!({}), &["nope"]);
        assert_eq!(
            apply_policies(&mut s, &NoPolicies),
            Err(PolicyNotFound { id: "nope".into() })
        );
    }
}
