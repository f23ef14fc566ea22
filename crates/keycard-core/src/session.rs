//! The session behind a key.
//!
//! Field names follow Tyk's session JSON (`meta_data`, `alias`, `org_id`, `expires`, `is_inactive`,
//! `apply_policies`, `tags`, `rate`, `per`, `quota_*`, `date_created`, `last_updated`), so a Tyk
//! key definition deserialises as is. Every other field of Tyk's `SessionState` (`access_rights`,
//! `allowance`, `throttle_interval`, `basic_auth_data`, ...) is kept as it came in
//! [`extra`](SessionRecord::extra): stored and written back, not acted on. The JSON times are
//! Tyk's: `date_created` an RFC 3339 string (Go's `time.Time`), `last_updated` a string of unix
//! seconds; numbers and digit strings are read too.
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

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::key::{ApiKey, KeyId};
use crate::metadata::Metadata;

/// A session: identity, state, limits and metadata.
///
/// Every field is optional in JSON (missing fields take their default; `null` reads as the
/// default of `meta_data`, `tags`, `apply_policies` and the times) and fields it does not name are
/// kept in [`extra`](Self::extra).
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
// For the schema only (the serde impls are below): every field may be left out.
#[cfg_attr(feature = "openapi", serde(default))]
#[non_exhaustive]
pub struct SessionRecord {
    /// The hashed key this session is stored under (never the raw key).
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
    pub apply_policies: Vec<String>,
    /// Free-form tags.
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
    pub meta_data: Metadata,
    /// Creation time (unix seconds; `0` = not known, and the store sets it). In JSON an RFC 3339
    /// string, as Tyk writes it (`2024-03-13T03:56:46Z`), left out when `0`; unix seconds as a
    /// number or a string of digits are read too.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub date_created: i64,
    /// Last change (unix seconds). In JSON a string of unix seconds, as Tyk writes it
    /// (`"1710302206"`), left out when `0`; a number or an RFC 3339 string is read too.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "1710302206"))]
    pub last_updated: i64,
    /// Optimistic-concurrency version, incremented by the store on every write. A replace that
    /// carries a non-zero version succeeds only while it is still the stored one; `0` replaces
    /// unconditionally.
    pub version: u64,
    /// When the session was last used through the session-load stage (unix seconds; `0`: never,
    /// or activity is not tracked). Written at most once per tracking interval, so it lags the
    /// real last use by up to that interval (Auth0's `last_interacted_at`).
    pub last_interacted_at: i64,
    /// The client the session was first and last used from, as the session-load stage saw it
    /// (Auth0's `device`); `None` until the first tracked use.
    pub device: Option<Device>,
    /// The session's other fields, as they came (Tyk's `access_rights`, `allowance`,
    /// `throttle_interval`, `throttle_retry_limit`, `basic_auth_data`, `jwt_data`, `monitor`,
    /// ...): stored and written back with the session, not acted on. An entry named like one of
    /// the fields above is never written (the field is).
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub extra: Map<String, Value>,
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

/// The JSON names of the typed fields, in the order they are written.
const FIELDS: &[&str] = &[
    "key_id",
    "alias",
    "org_id",
    "expires",
    "is_inactive",
    "apply_policies",
    "tags",
    "rate",
    "per",
    "quota_max",
    "quota_remaining",
    "quota_renewal_rate",
    "quota_renews",
    "meta_data",
    "date_created",
    "last_updated",
    "version",
    "last_interacted_at",
    "device",
];

impl Serialize for SessionRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.key_id.as_str().is_empty() {
            map.serialize_entry("key_id", &self.key_id)?;
        }
        map.serialize_entry("alias", &self.alias)?;
        map.serialize_entry("org_id", &self.org_id)?;
        map.serialize_entry("expires", &self.expires)?;
        map.serialize_entry("is_inactive", &self.is_inactive)?;
        map.serialize_entry("apply_policies", &self.apply_policies)?;
        map.serialize_entry("tags", &self.tags)?;
        map.serialize_entry("rate", &self.rate)?;
        map.serialize_entry("per", &self.per)?;
        map.serialize_entry("quota_max", &self.quota_max)?;
        map.serialize_entry("quota_remaining", &self.quota_remaining)?;
        map.serialize_entry("quota_renewal_rate", &self.quota_renewal_rate)?;
        map.serialize_entry("quota_renews", &self.quota_renews)?;
        map.serialize_entry("meta_data", &self.meta_data)?;
        // Go leaves a zero `time.Time` and an empty string out (`omitzero`).
        if self.date_created != 0 {
            map.serialize_entry(
                "date_created",
                &crate::civil::format_rfc3339(self.date_created),
            )?;
        }
        if self.last_updated != 0 {
            map.serialize_entry("last_updated", &self.last_updated.to_string())?;
        }
        map.serialize_entry("version", &self.version)?;
        if self.last_interacted_at != 0 {
            map.serialize_entry("last_interacted_at", &self.last_interacted_at)?;
        }
        if let Some(device) = &self.device {
            map.serialize_entry("device", device)?;
        }
        for (name, value) in &self.extra {
            if !FIELDS.contains(&name.as_str()) {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

/// A JSON member name: one of the typed fields, or another (kept in `extra`). Only the other
/// names are allocated.
enum Field {
    KeyId,
    Alias,
    OrgId,
    Expires,
    IsInactive,
    ApplyPolicies,
    Tags,
    Rate,
    Per,
    QuotaMax,
    QuotaRemaining,
    QuotaRenewalRate,
    QuotaRenews,
    MetaData,
    DateCreated,
    LastUpdated,
    Version,
    LastInteractedAt,
    Device,
    Other(String),
}

impl Field {
    fn of(name: &str) -> Self {
        match name {
            "key_id" => Self::KeyId,
            "alias" => Self::Alias,
            "org_id" => Self::OrgId,
            "expires" => Self::Expires,
            "is_inactive" => Self::IsInactive,
            "apply_policies" => Self::ApplyPolicies,
            "tags" => Self::Tags,
            "rate" => Self::Rate,
            "per" => Self::Per,
            "quota_max" => Self::QuotaMax,
            "quota_remaining" => Self::QuotaRemaining,
            "quota_renewal_rate" => Self::QuotaRenewalRate,
            "quota_renews" => Self::QuotaRenews,
            "meta_data" => Self::MetaData,
            "date_created" => Self::DateCreated,
            "last_updated" => Self::LastUpdated,
            "version" => Self::Version,
            "last_interacted_at" => Self::LastInteractedAt,
            "device" => Self::Device,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Ok(Field::of(name))
            }
        }
        deserializer.deserialize_identifier(Name)
    }
}

impl<'de> Deserialize<'de> for SessionRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Record;
        impl<'de> Visitor<'de> for Record {
            type Value = SessionRecord;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a session object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SessionRecord, A::Error> {
                let mut record = SessionRecord::default();
                while let Some(field) = map.next_key::<Field>()? {
                    match field {
                        Field::KeyId => record.key_id = map.next_value()?,
                        Field::Alias => record.alias = map.next_value()?,
                        Field::OrgId => record.org_id = map.next_value()?,
                        Field::Expires => record.expires = map.next_value::<WholeNumber>()?.0,
                        Field::IsInactive => record.is_inactive = map.next_value()?,
                        Field::ApplyPolicies => {
                            record.apply_policies = map.next_value::<NullAsDefault<_>>()?.0;
                        }
                        Field::Tags => record.tags = map.next_value::<NullAsDefault<_>>()?.0,
                        Field::Rate => record.rate = map.next_value()?,
                        Field::Per => record.per = map.next_value()?,
                        Field::QuotaMax => record.quota_max = map.next_value::<WholeNumber>()?.0,
                        Field::QuotaRemaining => {
                            record.quota_remaining = map.next_value::<WholeNumber>()?.0
                        }
                        Field::QuotaRenewalRate => {
                            record.quota_renewal_rate = map.next_value::<WholeNumber>()?.0
                        }
                        Field::QuotaRenews => {
                            record.quota_renews = map.next_value::<WholeNumber>()?.0
                        }
                        Field::MetaData => {
                            record.meta_data = map.next_value::<NullAsDefault<_>>()?.0;
                        }
                        Field::DateCreated => {
                            record.date_created = map.next_value::<LenientUnix>()?.0;
                        }
                        Field::LastUpdated => {
                            record.last_updated = map.next_value::<LenientUnix>()?.0;
                        }
                        Field::Version => record.version = map.next_value()?,
                        Field::LastInteractedAt => {
                            record.last_interacted_at = map.next_value::<WholeNumber>()?.0;
                        }
                        Field::Device => record.device = map.next_value()?,
                        Field::Other(name) => {
                            let value = map.next_value()?;
                            record.extra.insert(name, value);
                        }
                    }
                }
                Ok(record)
            }
        }
        deserializer.deserialize_map(Record)
    }
}

/// `null` read as the field's default, for `#[serde(deserialize_with = ...)]`: Tyk's schemas mark
/// many fields nullable (`meta_data`, `tags`, `apply_policies`, a rewrite's trigger groups...), and
/// Tyk's exports write `null` there.
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// [`null_as_default`] as a type, for a visitor's `next_value`.
struct NullAsDefault<T>(T);

impl<'de, T: Default + Deserialize<'de>> Deserialize<'de> for NullAsDefault<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        null_as_default(deserializer).map(Self)
    }
}

/// An integer field, also read from a JSON number with a zero fraction (`1.712895619e+09`,
/// `3600.0`): what JavaScript and Python clients and YAML-converted examples (Tyk's swagger
/// writes its `int64` examples so) send. A fraction or a value out of range is an error.
pub(crate) struct WholeNumber(pub(crate) i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Whole;
        impl Visitor<'_> for Whole {
            type Value = i64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
                Ok(n)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
                i64::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &self))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<i64, E> {
                // Within ±2^63 and whole: the cast is exact.
                #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                if n.fract() == 0.0 && n >= i64::MIN as f64 && n < i64::MAX as f64 {
                    Ok(n as i64)
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(n), &self))
                }
            }
        }
        deserializer.deserialize_any(Whole).map(Self)
    }
}

/// [`WholeNumber`] for a serde `deserialize_with`.
pub(crate) fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    WholeNumber::deserialize(deserializer).map(|n| n.0)
}

/// Unix seconds from any of the forms a time takes in session JSON: a number, a string of
/// digits (Tyk's `last_updated`), an RFC 3339 string (Tyk's `date_created`), or `null`. Any
/// other string reads as 0 ("not known").
struct LenientUnix(i64);

impl<'de> Deserialize<'de> for LenientUnix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Text(String),
            Null(()),
        }
        Ok(Self(match Raw::deserialize(deserializer)? {
            Raw::Int(n) => n,
            // Truncation is the intent: sub-second precision is not kept.
            #[allow(clippy::cast_possible_truncation)]
            Raw::Float(f) => f as i64,
            Raw::Text(s) => {
                let s = s.trim();
                s.parse()
                    .ok()
                    .or_else(|| crate::civil::parse_rfc3339(s))
                    .unwrap_or(0)
            }
            Raw::Null(()) => 0,
        }))
    }
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
        assert_eq!(session.date_created, 1_709_287_200);
        assert_eq!(session.last_updated, 1_709_287_200);
        assert!(!session.is_expired_at(i64::MAX));
        // Fields keycard does not act on are kept as they came.
        assert_eq!(session.extra["allowance"], 1000);
        assert_eq!(session.extra["access_rights"], json!({}));
        assert!(!session.extra.contains_key("alias"));
    }

    #[test]
    fn writes_tyk_times_and_keeps_other_fields() {
        let mut session: SessionRecord = serde_json::from_value(json!({
            "date_created": "2024-03-13T03:56:46.568042549Z", "last_updated": "1710302206",
            "throttle_interval": 10, "basic_auth_data": {"password": "", "hash_type": ""},
            "meta_data": null, "tags": null, "apply_policies": null,
        }))
        .unwrap();
        assert_eq!(session.date_created, 1_710_302_206);
        assert!(session.meta_data.is_empty() && session.tags.is_empty());
        // A typed field's name in `extra` is never written twice.
        session.extra.insert("alias".into(), json!("shadow"));
        let text = serde_json::to_string(&session).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["date_created"], "2024-03-13T03:56:46Z");
        assert_eq!(back["last_updated"], "1710302206");
        assert_eq!(back["throttle_interval"], 10);
        assert_eq!(
            back["basic_auth_data"],
            json!({"password": "", "hash_type": ""})
        );
        assert_eq!(back["alias"], "");
        assert_eq!(text.matches("\"alias\"").count(), 1, "{text}");
        // Zero times are left out, as Go leaves out zero values.
        let zero = serde_json::to_value(SessionRecord::default()).unwrap();
        assert!(zero.get("date_created").is_none() && zero.get("last_updated").is_none());
        // Numbers, digit strings and null are read too; a string that is no time reads 0.
        for (raw, unix) in [
            (json!(1_600_000_000), 1_600_000_000),
            (json!("1600000000"), 1_600_000_000),
            (json!(1.6e9), 1_600_000_000),
            (json!(null), 0),
            (json!("yesterday"), 0),
        ] {
            let read: SessionRecord =
                serde_json::from_value(json!({"date_created": raw, "last_updated": raw})).unwrap();
            assert_eq!(
                (read.date_created, read.last_updated),
                (unix, unix),
                "{raw}"
            );
        }
    }

    #[test]
    fn a_field_of_the_wrong_type_is_an_error() {
        let whole: SessionRecord =
            serde_json::from_value(json!({"expires": 1.712895619e9, "quota_max": 3600.0})).unwrap();
        assert_eq!((whole.expires, whole.quota_max), (1_712_895_619, 3600));
        for bad in [
            json!({"expires": "soon"}),
            json!({"tags": "a"}),
            json!([1]),
            json!({"quota_max": 1.5}),
            json!({"expires": 1e300}),
            json!({"quota_renews": u64::MAX}),
        ] {
            assert!(
                serde_json::from_value::<SessionRecord>(bad.clone()).is_err(),
                "{bad}"
            );
        }
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
        let mut session = SessionRecord::new(Metadata::new())
            .with_alias("a")
            .with_policies(["p"]);
        session.date_created = 1_700_000_000;
        session.last_updated = 1_700_000_001;
        session.extra.insert("allowance".into(), json!(5.5));
        let back: SessionRecord =
            serde_json::from_str(&serde_json::to_string(&session).unwrap()).unwrap();
        assert_eq!(back, session);
    }
}
