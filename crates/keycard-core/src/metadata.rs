//! Session metadata: the JSON map itself, the limits every write is checked against, and the
//! change log ([`MetadataDelta`]) that persist applies to the stored session.
//!
//! ```
//! use keycard_core::metadata::{Metadata, MetadataDelta, MetadataLimits};
//! use serde_json::json;
//!
//! let limits = MetadataLimits::auth0();
//! let mut delta = MetadataDelta::new();
//! delta.set("plan", json!("gold"));
//! delta.delete("trial");
//! delta.validate(&limits).unwrap();
//!
//! let mut meta = Metadata::new();
//! meta.insert("trial".into(), json!("yes"));
//! delta.apply_to(&mut meta);
//! assert_eq!(serde_json::Value::Object(meta), json!({"plan": "gold"}));
//!
//! // Auth0 allows string values only.
//! assert!(limits.check_entry("visits", &json!(3)).is_err());
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A session's metadata: a JSON object (Tyk's `meta_data`, Auth0's `session_metadata`).
pub type Metadata = serde_json::Map<String, Value>;

/// Which characters a metadata key may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyCharset {
    /// Any non-empty string.
    Any,
    /// ASCII letters, digits, `_` and `-` (Auth0).
    Restricted,
}

/// What a key or value length is counted in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    /// Unicode scalar values (Rust's `chars()`).
    #[default]
    Chars,
    /// UTF-16 code units: JavaScript's `String.length`, which Auth0's services (Node.js) count in.
    /// A character outside the Basic Multilingual Plane (most emoji) counts 2.
    Utf16,
}

impl LengthUnit {
    /// The length of `text` in this unit.
    pub fn len(self, text: &str) -> usize {
        match self {
            Self::Chars => text.chars().count(),
            Self::Utf16 => text.encode_utf16().count(),
        }
    }
}

/// Bounds enforced on every metadata write: handle setters, the admin API and policies.
///
/// Two profiles cover the reference systems: [`MetadataLimits::auth0`] (25 string entries, keys and
/// values of at most 255 UTF-16 code units, keys `[A-Za-z0-9_-]`) and [`MetadataLimits::tyk`] (any
/// JSON value, larger bounds). Both can be adjusted with the builder methods.
///
/// ```
/// use keycard_core::metadata::{MetadataError, MetadataLimits};
/// use serde_json::json;
///
/// let auth0 = MetadataLimits::auth0();
/// // Auth0 counts like JavaScript: an emoji is two UTF-16 code units.
/// assert!(auth0.check_entry("mood", &json!("😀".repeat(127))).is_ok());
/// assert!(auth0.check_entry("mood", &json!("😀".repeat(128))).is_err());
///
/// // Values that will be sent in headers can be checked when they are written.
/// let tyk = MetadataLimits::tyk().header_safe_values(true);
/// assert_eq!(
///     tyk.check_entry("user_id", &json!("u-1\r\nx-admin: yes")),
///     Err(MetadataError::NotHeaderSafe { key: "user_id".into() }),
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataLimits {
    max_entries: usize,
    max_key_chars: usize,
    max_value_chars: usize,
    key_charset: KeyCharset,
    string_values_only: bool,
    #[serde(default)]
    length_unit: LengthUnit,
    #[serde(default)]
    header_safe_values: bool,
}

impl MetadataLimits {
    /// Auth0's session metadata limits: at most 25 entries, keys and values of at most 255
    /// characters counted as UTF-16 code units (JavaScript's `length`), keys of letters, digits,
    /// `_` and `-`, string values only.
    pub const fn auth0() -> Self {
        Self {
            max_entries: 25,
            max_key_chars: 255,
            max_value_chars: 255,
            key_charset: KeyCharset::Restricted,
            string_values_only: true,
            length_unit: LengthUnit::Utf16,
            header_safe_values: false,
        }
    }

    /// A permissive profile for Tyk-style metadata: any JSON value, at most 1024 entries, keys of
    /// at most 1024 characters and values of at most 65 536 characters (JSON-encoded length for
    /// non-strings).
    pub const fn tyk() -> Self {
        Self {
            max_entries: 1024,
            max_key_chars: 1024,
            max_value_chars: 65_536,
            key_charset: KeyCharset::Any,
            string_values_only: false,
            length_unit: LengthUnit::Chars,
            header_safe_values: false,
        }
    }

    /// Sets the maximum number of entries.
    pub const fn max_entries(mut self, max: usize) -> Self {
        self.max_entries = max;
        self
    }

    /// Sets the maximum key length in characters.
    pub const fn max_key_chars(mut self, max: usize) -> Self {
        self.max_key_chars = max;
        self
    }

    /// Sets the maximum value length in characters (JSON-encoded length for non-string values).
    pub const fn max_value_chars(mut self, max: usize) -> Self {
        self.max_value_chars = max;
        self
    }

    /// Sets which characters keys may contain.
    pub const fn key_charset(mut self, charset: KeyCharset) -> Self {
        self.key_charset = charset;
        self
    }

    /// Sets whether only string values are accepted.
    pub const fn string_values_only(mut self, yes: bool) -> Self {
        self.string_values_only = yes;
        self
    }

    /// Sets what lengths are counted in (default [`LengthUnit::Chars`]; Auth0's profile counts
    /// [`LengthUnit::Utf16`]).
    pub const fn length_unit(mut self, unit: LengthUnit) -> Self {
        self.length_unit = unit;
        self
    }

    /// Refuses string values (and strings nested in JSON values) that cannot be a header value:
    /// any control character other than tab (CR, LF and NUL among them). Off by default; turn it
    /// on where metadata is meant to be sent in headers, so a bad value is refused when it is
    /// written instead of failing every request that renders it.
    pub const fn header_safe_values(mut self, yes: bool) -> Self {
        self.header_safe_values = yes;
        self
    }

    /// Checks one entry (key and value) against the limits.
    pub fn check_entry(&self, key: &str, value: &Value) -> Result<(), MetadataError> {
        let key_chars = self.length_unit.len(key);
        if key_chars == 0 {
            return Err(MetadataError::EmptyKey);
        }
        if key_chars > self.max_key_chars {
            return Err(self.size_error());
        }
        if self.key_charset == KeyCharset::Restricted
            && !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(MetadataError::InvalidKey);
        }
        let value_chars = match value {
            Value::String(s) => self.length_unit.len(s),
            _ if self.string_values_only => {
                return Err(MetadataError::NotAString {
                    key: key.to_owned(),
                });
            }
            other => self.length_unit.len(&other.to_string()),
        };
        if value_chars > self.max_value_chars {
            return Err(self.size_error());
        }
        if self.header_safe_values && !header_safe(value) {
            return Err(MetadataError::NotHeaderSafe {
                key: key.to_owned(),
            });
        }
        Ok(())
    }

    /// Checks a whole metadata map (every entry and the entry count).
    pub fn check(&self, metadata: &Metadata) -> Result<(), MetadataError> {
        self.check_count(metadata.len())?;
        metadata
            .iter()
            .try_for_each(|(key, value)| self.check_entry(key, value))
    }

    /// Checks an entry count.
    pub fn check_count(&self, entries: usize) -> Result<(), MetadataError> {
        if entries > self.max_entries {
            return Err(self.size_error());
        }
        Ok(())
    }

    fn size_error(&self) -> MetadataError {
        MetadataError::TooLarge {
            max_entries: self.max_entries,
            max_chars: self.max_key_chars.max(self.max_value_chars),
        }
    }
}

/// Whether every string in `value` can be (part of) a header value: no control character but tab.
fn header_safe(value: &Value) -> bool {
    let text = |s: &str| !s.chars().any(|c| c.is_control() && c != '\t');
    match value {
        Value::String(s) => text(s),
        Value::Array(items) => items.iter().all(header_safe),
        Value::Object(fields) => fields.iter().all(|(k, v)| text(k) && header_safe(v)),
        _ => true,
    }
}

impl Default for MetadataLimits {
    /// The permissive Tyk profile.
    fn default() -> Self {
        Self::tyk()
    }
}

/// A metadata write that breaks the configured [`MetadataLimits`]. The messages are Auth0's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Too many entries, or a key or value too long.
    #[error(
        "Metadata must not exceed {max_entries} entries. Each key and value must be ≤ {max_chars} characters."
    )]
    TooLarge {
        /// The configured maximum number of entries.
        max_entries: usize,
        /// The configured maximum key/value length in characters.
        max_chars: usize,
    },
    /// A key with characters outside `[A-Za-z0-9_-]`.
    #[error("Metadata keys may only include letters, numbers, underscores, or hyphens")]
    InvalidKey,
    /// An empty key.
    #[error("Metadata keys must not be empty")]
    EmptyKey,
    /// A non-string value where only strings are allowed.
    #[error("Metadata values must be strings, but the value of \"{key}\" is not")]
    NotAString {
        /// The key whose value was not a string.
        key: String,
    },
    /// A value with a control character (CR, LF, NUL...) where
    /// [`MetadataLimits::header_safe_values`] is on.
    #[error(
        "Metadata value of \"{key}\" cannot be sent in a header: it contains a control character"
    )]
    NotHeaderSafe {
        /// The key whose value was refused.
        key: String,
    },
    /// A typed value that does not serialise to JSON (a map with non-string keys, a failing
    /// `Serialize` impl).
    #[error("Metadata value of \"{key}\" is not JSON: {reason}")]
    NotJson {
        /// The key the value was meant for.
        key: String,
        /// What serde reported.
        reason: String,
    },
}

/// One recorded metadata change. The names follow Auth0 Actions
/// (`api.session.setMetadata` / `deleteMetadata` / `evictMetadata`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetadataChange {
    /// Set `key` to `value`.
    Set {
        /// The metadata key.
        key: String,
        /// The new value.
        value: Value,
    },
    /// Remove `key`.
    Delete {
        /// The metadata key.
        key: String,
    },
    /// Remove every entry.
    Evict,
    /// Add `by` to the integer under `key`, atomically in the store: concurrent increments of one
    /// key add up exactly (where concurrent `Set`s of one key keep the last). A missing key, or a
    /// value that is not an integer in the `i64` range, becomes `by`; a sum that would overflow
    /// `i64` leaves the value as it is.
    Increment {
        /// The metadata key.
        key: String,
        /// The amount to add (negative to subtract).
        by: i64,
    },
}

/// An ordered list of metadata changes, applied atomically to the stored session by persist.
///
/// Applying a delta touches only the keys it names, so concurrent requests changing different keys
/// of one session all survive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MetadataDelta {
    changes: Vec<MetadataChange>,
}

impl MetadataDelta {
    /// An empty delta.
    pub const fn new() -> Self {
        Self {
            changes: Vec::new(),
        }
    }

    /// Records `key = value`.
    pub fn set(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        self.changes.push(MetadataChange::Set {
            key: key.into(),
            value,
        });
        self
    }

    /// Records the removal of `key`.
    pub fn delete(&mut self, key: impl Into<String>) -> &mut Self {
        self.changes
            .push(MetadataChange::Delete { key: key.into() });
        self
    }

    /// Records the removal of every entry. Earlier changes are dropped: they can have no effect.
    pub fn evict(&mut self) -> &mut Self {
        self.changes.clear();
        self.changes.push(MetadataChange::Evict);
        self
    }

    /// Records `key += by`. Merged into an increment of `key` recorded just before it.
    pub fn increment(&mut self, key: impl Into<String>, by: i64) -> &mut Self {
        let key = key.into();
        if let Some(MetadataChange::Increment {
            key: last,
            by: total,
        }) = self.changes.last_mut()
            && *last == key
            && let Some(sum) = total.checked_add(by)
        {
            *total = sum;
            return self;
        }
        self.changes.push(MetadataChange::Increment { key, by });
        self
    }

    /// Whether a `Set`, `Delete` or `Evict` recorded so far decides the value of `key`, so that
    /// a later change of `key` can be recorded as a plain `Set` of the value the caller computed.
    pub fn decides(&self, key: &str) -> bool {
        self.changes.iter().any(|change| match change {
            MetadataChange::Set { key: k, .. } | MetadataChange::Delete { key: k } => k == key,
            MetadataChange::Evict => true,
            MetadataChange::Increment { .. } => false,
        })
    }

    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The number of recorded changes.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// The recorded changes, in order.
    pub fn changes(&self) -> &[MetadataChange] {
        &self.changes
    }

    /// The keys this delta names (for audit logs); `None` stands for an eviction.
    pub fn keys(&self) -> impl Iterator<Item = Option<&str>> {
        self.changes.iter().map(|change| match change {
            MetadataChange::Set { key, .. }
            | MetadataChange::Delete { key }
            | MetadataChange::Increment { key, .. } => Some(key.as_str()),
            MetadataChange::Evict => None,
        })
    }

    /// Checks every `Set` entry against `limits` (the resulting entry count is checked where the
    /// delta is applied to a known map).
    pub fn validate(&self, limits: &MetadataLimits) -> Result<(), MetadataError> {
        self.changes.iter().try_for_each(|change| match change {
            MetadataChange::Set { key, value } => limits.check_entry(key, value),
            MetadataChange::Increment { key, by } => limits.check_entry(key, &Value::from(*by)),
            MetadataChange::Delete { .. } | MetadataChange::Evict => Ok(()),
        })
    }

    /// Applies the changes, in order, to `metadata`.
    pub fn apply_to(&self, metadata: &mut Metadata) {
        for change in &self.changes {
            match change {
                MetadataChange::Set { key, value } => {
                    metadata.insert(key.clone(), value.clone());
                }
                MetadataChange::Delete { key } => {
                    metadata.remove(key);
                }
                MetadataChange::Evict => metadata.clear(),
                MetadataChange::Increment { key, by } => {
                    if let Some(next) = incremented(metadata.get(key), *by) {
                        metadata.insert(key.clone(), next.into());
                    }
                }
            }
        }
    }
}

/// The value of an integer entry after adding `by` (see [`MetadataChange::Increment`]): `None`
/// when the sum would overflow, which leaves the entry as it is.
pub fn incremented(current: Option<&Value>, by: i64) -> Option<i64> {
    match current.and_then(Value::as_i64) {
        Some(current) => current.checked_add(by),
        None => Some(by),
    }
}

impl FromIterator<MetadataChange> for MetadataDelta {
    fn from_iter<I: IntoIterator<Item = MetadataChange>>(iter: I) -> Self {
        Self {
            changes: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Metadata {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn auth0_accepts_255_and_rejects_256_characters() {
        let limits = MetadataLimits::auth0();
        let ok = "k".repeat(255);
        assert_eq!(limits.check_entry(&ok, &json!(ok)), Ok(()));
        let long = "k".repeat(256);
        let message =
            "Metadata must not exceed 25 entries. Each key and value must be ≤ 255 characters.";
        assert_eq!(
            limits
                .check_entry(&long, &json!("v"))
                .unwrap_err()
                .to_string(),
            message
        );
        assert_eq!(
            limits
                .check_entry("k", &json!(long))
                .unwrap_err()
                .to_string(),
            message
        );
    }

    #[test]
    fn auth0_counts_characters_not_bytes() {
        let value = "é".repeat(255);
        assert_eq!(
            MetadataLimits::auth0().check_entry("k", &json!(value)),
            Ok(())
        );
    }

    #[test]
    fn auth0_rejects_26_entries() {
        let limits = MetadataLimits::auth0();
        let meta: Metadata = (0..26).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert!(matches!(
            limits.check(&meta),
            Err(MetadataError::TooLarge { .. })
        ));
        let meta: Metadata = (0..25).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(limits.check(&meta), Ok(()));
    }

    #[test]
    fn auth0_rejects_bad_keys_and_non_strings() {
        let limits = MetadataLimits::auth0();
        assert_eq!(
            limits
                .check_entry("bad key!", &json!("v"))
                .unwrap_err()
                .to_string(),
            "Metadata keys may only include letters, numbers, underscores, or hyphens"
        );
        assert_eq!(
            limits.check_entry("n", &json!(1)).unwrap_err().to_string(),
            "Metadata values must be strings, but the value of \"n\" is not"
        );
        assert_eq!(
            limits.check_entry("", &json!("v")),
            Err(MetadataError::EmptyKey)
        );
    }

    #[test]
    fn tyk_profile_accepts_any_json() {
        let limits = MetadataLimits::tyk();
        assert_eq!(
            limits.check_entry("a.b/c", &json!({"x": [1, true]})),
            Ok(())
        );
        let big = json!("x".repeat(70_000));
        assert!(limits.check_entry("k", &big).is_err());
    }

    #[test]
    fn delta_applies_in_order() {
        let mut meta = map(json!({"a": "1", "b": "2"}));
        let mut delta = MetadataDelta::new();
        delta
            .set("c", json!("3"))
            .delete("a")
            .set("a", json!("again"));
        delta.apply_to(&mut meta);
        assert_eq!(
            Value::Object(meta),
            json!({"a": "again", "b": "2", "c": "3"})
        );
    }

    #[test]
    fn evict_drops_earlier_changes_and_keeps_later_ones() {
        let mut delta = MetadataDelta::new();
        delta.set("a", json!(1)).evict().set("b", json!(2));
        assert_eq!(delta.len(), 2);
        let mut meta = map(json!({"old": true}));
        delta.apply_to(&mut meta);
        assert_eq!(Value::Object(meta), json!({"b": 2}));
    }

    #[test]
    fn delta_serialises_as_a_list_of_ops() {
        let mut delta = MetadataDelta::new();
        delta.set("a", json!("x")).delete("b").evict();
        let json = serde_json::to_value(&delta).unwrap();
        assert_eq!(json, json!([{"op": "evict"}]));
        let mut delta = MetadataDelta::new();
        delta.set("a", json!("x")).delete("b");
        let json = serde_json::to_value(&delta).unwrap();
        assert_eq!(
            json,
            json!([{"op": "set", "key": "a", "value": "x"}, {"op": "delete", "key": "b"}])
        );
        assert_eq!(
            serde_json::from_value::<MetadataDelta>(json).unwrap(),
            delta
        );
    }

    #[test]
    fn increments_add_to_integers_and_replace_anything_else() {
        let mut meta = map(json!({"n": 40, "s": "x", "f": 1.5, "big": u64::MAX, "max": i64::MAX}));
        let mut delta = MetadataDelta::new();
        delta
            .increment("n", 1)
            .increment("n", 1)
            .increment("s", 3)
            .increment("f", 1)
            .increment("big", 1)
            .increment("max", 1)
            .increment("new", -5);
        // Consecutive increments of one key are one change.
        assert_eq!(delta.len(), 6);
        delta.apply_to(&mut meta);
        assert_eq!(
            Value::Object(meta),
            json!({"n": 42, "s": 3, "f": 1, "big": 1, "max": i64::MAX, "new": -5})
        );
        assert_eq!(
            serde_json::to_value(&delta).unwrap()[0],
            json!({"op": "increment", "key": "n", "by": 2})
        );
    }

    #[test]
    fn increments_are_values_the_limits_check() {
        let mut delta = MetadataDelta::new();
        delta.increment("visits", 1);
        assert!(delta.validate(&MetadataLimits::tyk()).is_ok());
        assert!(matches!(
            delta.validate(&MetadataLimits::auth0()),
            Err(MetadataError::NotAString { .. })
        ));
    }

    #[test]
    fn a_set_delete_or_evict_decides_a_key_and_an_increment_does_not() {
        let mut delta = MetadataDelta::new();
        delta.increment("a", 1);
        assert!(!delta.decides("a"));
        delta.delete("b");
        assert!(delta.decides("b") && !delta.decides("c"));
        delta.evict();
        assert!(delta.decides("c"));
    }
}
