//! The session behind a key.
//!
//! Field names follow Tyk's session JSON (`meta_data`, `alias`, `org_id`, `expires`, `is_inactive`,
//! `apply_policies`, `tags`, `rate`, `per`, `quota_*`, `date_created`, `last_updated`), so a Tyk
//! key definition deserialises as is; unknown Tyk fields are ignored.
//!
//! ```
//! use keycard_core::session::SessionRecord;
//! use serde_json::json;
//!
//! let session: SessionRecord = serde_json::from_value(json!({
//!     "alias": "alice",
//!     "expires": 0,
//!     "meta_data": {"user_id": "u-1", "tenant_id": "acme"},
//!     "apply_policies": ["gold"],
//! }))
//! .unwrap();
//! assert_eq!(session.meta_data["user_id"], "u-1");
//! assert!(!session.is_expired_at(4_000_000_000));
//! ```

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};

use crate::key::{ApiKey, KeyId};
use crate::metadata::Metadata;

/// A session: identity, state, limits and metadata.
///
/// Every field is optional in JSON (missing fields take their default) and unknown fields are
/// ignored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
#[non_exhaustive]
pub struct SessionRecord {
    /// The hashed key this session is stored under (never the raw key).
    #[serde(skip_serializing_if = "is_empty_id")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, read_only))]
    pub key_id: KeyId,
    /// A human-readable owner name (Auth0's `user_id` in the sessions API).
    pub alias: String,
    /// The organisation the key belongs to.
    pub org_id: String,
    /// Expiry as unix seconds; `0` (or any value below 1) means never.
    pub expires: i64,
    /// A disabled key: requests are refused with 403.
    pub is_inactive: bool,
    /// Policies applied to the session on every load, in order.
    #[serde(deserialize_with = "null_as_default")]
    pub apply_policies: Vec<String>,
    /// Free-form tags.
    #[serde(deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    /// Requests allowed per `per` seconds (rate limiting, kept for Tyk compatibility).
    pub rate: f64,
    /// The rate window in seconds.
    pub per: f64,
    /// Quota: maximum requests per renewal period (`-1` = unlimited).
    pub quota_max: i64,
    /// Quota: requests left in this period.
    pub quota_remaining: i64,
    /// Quota: the renewal period in seconds.
    pub quota_renewal_rate: i64,
    /// Quota: when the quota next renews (unix seconds).
    pub quota_renews: i64,
    /// The metadata (Tyk's `meta_data`).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    #[serde(deserialize_with = "null_as_default")]
    pub meta_data: Metadata,
    /// Creation time (unix seconds). Tyk writes an RFC 3339 string here; a string that is not a
    /// number is read as 0 and the store sets the time.
    #[serde(deserialize_with = "lenient_unix")]
    pub date_created: i64,
    /// Last change (unix seconds). Tyk writes a string of digits here; both forms are read.
    #[serde(deserialize_with = "lenient_unix")]
    pub last_updated: i64,
    /// Optimistic-concurrency version, incremented by the store on every write. A replace that
    /// carries a non-zero version succeeds only while it is still the stored one; `0` replaces
    /// unconditionally.
    pub version: u64,
    /// When the session was last used through the session-load stage (unix seconds; `0`: never,
    /// or activity is not tracked). Written at most once per tracking interval, so it lags the
    /// real last use by up to that interval (Auth0's `last_interacted_at`).
    #[serde(skip_serializing_if = "is_zero")]
    pub last_interacted_at: i64,
    /// The client the session was first and last used from, as the session-load stage saw it
    /// (Auth0's `device`); `None` until the first tracked use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
}

/// The client a session was first and last used from (Auth0's session `device`, without the
/// autonomous system numbers, which keycard does not know). Empty strings where the request
/// carried no `User-Agent` or the client address was unknown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Device {
    /// The `User-Agent` of the first tracked request.
    pub initial_user_agent: String,
    /// The client IP of the first tracked request.
    pub initial_ip: String,
    /// The `User-Agent` of the latest tracked request.
    pub last_user_agent: String,
    /// The client IP of the latest tracked request.
    pub last_ip: String,
}

impl Device {
    /// A device first seen now, from `ip` with `user_agent`.
    pub fn first(ip: impl Into<String>, user_agent: impl Into<String>) -> Self {
        let (ip, user_agent) = (ip.into(), user_agent.into());
        Self {
            initial_user_agent: user_agent.clone(),
            initial_ip: ip.clone(),
            last_user_agent: user_agent,
            last_ip: ip,
        }
    }

    /// Records a later use from `ip` with `user_agent` (the initial values are kept).
    pub fn seen(&mut self, ip: impl Into<String>, user_agent: impl Into<String>) {
        self.last_ip = ip.into();
        self.last_user_agent = user_agent.into();
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes a reference.
fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl SessionRecord {
    /// A new, never-expiring session with the given metadata.
    pub fn new(meta_data: Metadata) -> Self {
        Self {
            meta_data,
            quota_max: -1,
            quota_remaining: -1,
            ..Self::default()
        }
    }

    /// A new, never-expiring record for the raw key `key`, stored under the key's id
    /// ([`KeyId::of`]). The raw key is not kept.
    ///
    /// ```
    /// use keycard_core::session::SessionRecord;
    /// use serde_json::json;
    ///
    /// let record = SessionRecord::for_key("secret-key").metadata(json!({"user_id": "u-1"}));
    /// assert_eq!(record.meta_data["user_id"], "u-1");
    /// assert_eq!(record.key_id, keycard_core::key::KeyId::of(&keycard_core::key::ApiKey::new("secret-key")));
    /// ```
    pub fn for_key(key: &str) -> Self {
        Self::new(Metadata::new()).with_key(key)
    }

    /// Sets the key id to the id of the raw key `key` (builder style; the raw key is not kept),
    /// hashed with plain SHA-256, the default [`KeyHasher`](crate::key::KeyHasher). A stack with
    /// a keyed hasher needs [`with_key_hashed`](Self::with_key_hashed).
    pub fn with_key(self, key: &str) -> Self {
        self.with_key_id(KeyId::of(&ApiKey::new(key)))
    }

    /// Like [`with_key`](Self::with_key), hashing `key` with `hasher` (the stack's).
    pub fn with_key_hashed(self, key: &str, hasher: &crate::key::KeyHasher) -> Self {
        self.with_key_id(hasher.key_id(&ApiKey::new(key)))
    }

    /// Sets the metadata from a JSON object, such as `json!({"user_id": "u-1"})` (builder style).
    ///
    /// # Panics
    /// When `metadata` is not a JSON object; use [`try_metadata`](Self::try_metadata) for
    /// values that come from input.
    #[track_caller]
    pub fn metadata(self, metadata: serde_json::Value) -> Self {
        match self.try_metadata(metadata) {
            Ok(record) => record,
            Err(other) => panic!("session metadata must be a JSON object, not {other}"),
        }
    }

    /// Sets the metadata from a JSON object; any other value is handed back.
    ///
    /// # Errors
    /// When `metadata` is not a JSON object.
    pub fn try_metadata(mut self, metadata: serde_json::Value) -> Result<Self, serde_json::Value> {
        match metadata {
            serde_json::Value::Object(map) => {
                self.meta_data = map;
                Ok(self)
            }
            other => Err(other),
        }
    }

    /// Sets the key id (builder style).
    pub fn with_key_id(mut self, key_id: KeyId) -> Self {
        self.key_id = key_id;
        self
    }

    /// Sets the alias (builder style).
    pub fn with_alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = alias.into();
        self
    }

    /// Sets the expiry in unix seconds (builder style).
    pub fn with_expires(mut self, expires: i64) -> Self {
        self.expires = expires;
        self
    }

    /// Sets the policies to apply (builder style).
    pub fn with_policies<I, S>(mut self, policies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.apply_policies = policies.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `expires` is set and before `now` (unix seconds).
    pub fn is_expired_at(&self, now: i64) -> bool {
        self.expires >= 1 && self.expires < now
    }

    /// Whether the session has expired now.
    pub fn is_expired(&self) -> bool {
        self.is_expired_at(unix_now())
    }

    /// When the session becomes idle under an idle timeout of `idle_timeout` seconds: its last
    /// tracked use ([`last_interacted_at`](Self::last_interacted_at)), or its creation when it
    /// was never used, plus the timeout. `None` when neither time is known.
    pub fn idle_expires_at(&self, idle_timeout: i64) -> Option<i64> {
        let since = self.last_interacted_at.max(self.date_created);
        (since > 0).then(|| since.saturating_add(idle_timeout))
    }
}

/// The current time in unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn is_empty_id(id: &KeyId) -> bool {
    id.as_str().is_empty()
}

/// `null` read as the field's default: Tyk's schema marks `meta_data`, `tags` and
/// `apply_policies` nullable, and older Tyk exports write `null` there.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn lenient_unix<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Text(String),
        Null(()),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::Int(n) => n,
        // Truncation is the intent: sub-second precision is not kept.
        #[allow(clippy::cast_possible_truncation)]
        Raw::Float(f) => f as i64,
        Raw::Text(s) => s.trim().parse().unwrap_or(0),
        Raw::Null(()) => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_tyk_session() {
        let session: SessionRecord = serde_json::from_value(json!({
            "allowance": 1000, "rate": 1000, "per": 1, "expires": -1, "quota_max": -1,
            "org_id": "53ac07777cbb8c2d53000002", "is_inactive": false,
            "date_created": "2024-03-01T10:00:00Z", "last_updated": "1709287200",
            "access_rights": {}, "meta_data": {"user_id": "u-1", "n": 2},
            "apply_policies": ["p1"], "tags": ["t"], "alias": "alice"
        }))
        .unwrap();
        assert_eq!(session.alias, "alice");
        assert_eq!(session.meta_data["n"], 2);
        assert_eq!(session.date_created, 0);
        assert_eq!(session.last_updated, 1_709_287_200);
        assert!(!session.is_expired_at(i64::MAX));
    }

    #[test]
    fn expiry_at_or_after_now_is_live() {
        let session = SessionRecord::default().with_expires(100);
        assert!(!session.is_expired_at(100));
        assert!(session.is_expired_at(101));
    }

    #[test]
    fn activity_round_trips_and_is_absent_when_unset() {
        let plain = serde_json::to_value(SessionRecord::default()).unwrap();
        assert!(plain.get("device").is_none() && plain.get("last_interacted_at").is_none());
        let mut session = SessionRecord {
            last_interacted_at: 1_700_000_000,
            device: Some(Device::first("10.0.0.1", "curl/8")),
            ..SessionRecord::default()
        };
        session.device.as_mut().unwrap().seen("10.0.0.2", "curl/9");
        let back: SessionRecord =
            serde_json::from_str(&serde_json::to_string(&session).unwrap()).unwrap();
        assert_eq!(back, session);
        let device = back.device.unwrap();
        assert_eq!(
            (device.initial_ip.as_str(), device.last_ip.as_str()),
            ("10.0.0.1", "10.0.0.2")
        );
        assert_eq!(session.idle_expires_at(60), Some(1_700_000_060));
        assert_eq!(SessionRecord::default().idle_expires_at(60), None);
    }

    #[test]
    fn round_trips() {
        let session = SessionRecord::new(Metadata::new())
            .with_alias("a")
            .with_policies(["p"]);
        let back: SessionRecord =
            serde_json::from_str(&serde_json::to_string(&session).unwrap()).unwrap();
        assert_eq!(back, session);
    }
}
