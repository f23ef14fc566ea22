//! A Tyk session document (`user.SessionState` JSON) read and rewritten without touching what
//! keycard does not change: the top-level object (and `meta_data`) is kept as an ordered list of
//! `(name, raw JSON text)` entries, so every field keycard leaves alone is written back byte for
//! byte — Tyk's numbers, floats, nested objects and fields keycard has never heard of.

use std::fmt;

use keycard_core::metadata::{MetadataChange, MetadataDelta, incremented};
use keycard_core::session::SessionRecord;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The field keycard keeps its optimistic-concurrency version in. Tyk ignores it on read and
/// drops it when it rewrites the session itself (see [`Doc::version`]).
pub(crate) const VERSION_FIELD: &str = "keycard_version";

/// One JSON object as ordered `(name, raw value)` entries.
#[derive(Debug, Default)]
pub(crate) struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some((name, raw)) = map.next_entry::<String, Box<RawValue>>()? {
                    entries.push((name, raw));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl Entries {
    fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))
    }

    /// The raw value of `name` (the last one, as Go's decoder reads duplicates).
    fn get(&self, name: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &**v)
    }

    /// Sets `name` to `raw`: in place of its last occurrence (earlier duplicates dropped), or
    /// appended.
    fn set(&mut self, name: &str, raw: Box<RawValue>) {
        match self.0.iter().rposition(|(n, _)| n == name) {
            Some(at) => {
                self.0[at].1 = raw;
                let mut i = 0;
                self.0.retain(|(n, _)| {
                    i += 1;
                    n != name || i - 1 == at
                });
            }
            None => self.0.push((name.to_owned(), raw)),
        }
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    fn to_text(&self) -> String {
        let mut out = String::with_capacity(
            self.0
                .iter()
                .map(|(n, v)| n.len() + v.get().len() + 4)
                .sum::<usize>()
                + 2,
        );
        out.push('{');
        for (i, (name, raw)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&Value::String(name.clone()).to_string());
            out.push(':');
            out.push_str(raw.get());
        }
        out.push('}');
        out
    }
}

fn raw(value: &Value) -> Box<RawValue> {
    // Serialising a `Value` cannot fail, and its text is valid JSON.
    RawValue::from_string(value.to_string()).unwrap_or_else(|_| null())
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable!("null is JSON"))
}

/// A stored session: its text as Redis holds it, its entries, and the record keycard reads
/// from it.
#[derive(Debug)]
pub(crate) struct Doc {
    pub(crate) text: String,
    entries: Entries,
    pub(crate) record: SessionRecord,
}

impl Doc {
    /// Reads a stored document; the record gets no key id (the caller sets it).
    pub(crate) fn parse(text: String) -> Result<Self, String> {
        let entries = Entries::parse(&text)?;
        // The record reads Tyk's times (RFC 3339 `date_created`, digit-string `last_updated`)
        // and keeps every field it does not name in `extra`.
        let mut record: SessionRecord =
            serde_json::from_str(&text).map_err(|e| format!("not a Tyk session: {e}"))?;
        record.extra.remove(VERSION_FIELD);
        record.version = match entries
            .get(VERSION_FIELD)
            .map(|v| serde_json::from_str::<u64>(v.get()))
        {
            Some(Ok(version)) if version > 0 => version,
            _ => derived_version(&text),
        };
        Ok(Self {
            text,
            entries,
            record,
        })
    }

    /// The document after `delta` is applied to its metadata, `last_updated` set to `now` and
    /// the version bumped. Metadata entries the delta does not name keep their text.
    pub(crate) fn applied(&self, delta: &MetadataDelta, now: i64) -> Result<String, String> {
        let mut entries = Entries(self.entries.0.clone());
        let mut meta = match entries.get("meta_data") {
            Some(raw) if raw.get().trim() != "null" => {
                Entries::parse(raw.get()).map_err(|e| format!("meta_data is {e}"))?
            }
            _ => Entries::default(),
        };
        for change in delta.changes() {
            match change {
                MetadataChange::Set { key, value } => meta.set(key, raw(value)),
                MetadataChange::Delete { key } => meta.remove(key),
                MetadataChange::Evict => meta.0.clear(),
                MetadataChange::Increment { key, by } => {
                    let current = meta
                        .get(key)
                        .and_then(|v| serde_json::from_str::<Value>(v.get()).ok());
                    if let Some(next) = incremented(current.as_ref(), *by) {
                        meta.set(key, raw(&Value::from(next)));
                    }
                }
            }
        }
        let meta_text = meta.to_text();
        entries.set(
            "meta_data",
            RawValue::from_string(meta_text).map_err(|e| e.to_string())?,
        );
        self.stamp(&mut entries, now);
        Ok(entries.to_text())
    }

    /// The document with the fields of `record` written over the stored ones — only those
    /// whose value changed; every other field keeps its text.
    pub(crate) fn replaced(&self, record: &SessionRecord, now: i64) -> Result<String, String> {
        let mut entries = Entries(self.entries.0.clone());
        let new = fields(record)?;
        let old = fields(&self.record)?;
        for (name, value) in &new {
            if old.get(name) != Some(value)
                || entries.get(name).is_none() && !is_default(name, value)
            {
                entries.set(name, raw(value));
            }
        }
        self.stamp(&mut entries, now);
        Ok(entries.to_text())
    }

    /// `last_updated` as Tyk writes it (unix seconds as a string) and the next version.
    fn stamp(&self, entries: &mut Entries, now: i64) {
        entries.set("last_updated", raw(&Value::String(now.to_string())));
        entries.set(
            VERSION_FIELD,
            raw(&Value::from(self.record.version.saturating_add(1))),
        );
    }

    /// The session's metadata as the document holds it (what `meta_data` decodes to).
    #[cfg(test)]
    pub(crate) fn meta_text(&self) -> Option<&str> {
        self.entries.get("meta_data").map(RawValue::get)
    }
}

/// A new document for `record`, in Tyk's field names and formats, version 1.
pub(crate) fn create(record: &SessionRecord) -> Result<String, String> {
    let mut entries = Entries::default();
    for (name, value) in fields(record)? {
        entries.set(&name, raw(&value));
    }
    entries.set(VERSION_FIELD, raw(&Value::from(1u64)));
    Ok(entries.to_text())
}

/// The record's fields as Tyk's JSON has them (the record serialises in Tyk's names and time
/// formats, its `extra` fields as they came), minus the key id and version.
fn fields(record: &SessionRecord) -> Result<Map<String, Value>, String> {
    let Value::Object(mut map) = serde_json::to_value(record).map_err(|e| e.to_string())? else {
        return Err("a session record is not a JSON object".to_owned());
    };
    map.remove("key_id");
    map.remove("version");
    Ok(map)
}

/// Whether a field absent from a Tyk document reads as `value` (Go omits zero values).
fn is_default(name: &str, value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || name == "last_updated" && s == "0",
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The version of a document no keycard wrote last (Tyk rewrote it, dropping
/// [`VERSION_FIELD`]): derived from its text, with the top bit set so it never equals a
/// counted version, so a `replace` based on an earlier read conflicts when the text changed.
fn derived_version(text: &str) -> u64 {
    (1 << 63) | (super::hash::murmur3_x64_128(text.as_bytes(), 0).0 >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TYK: &str = r#"{"allowance":1000,"rate":1000,"per":1,"expires":0,"quota_max":-1,"quota_renews":1449051461,"quota_remaining":-1,"quota_renewal_rate":60,"access_rights":{"3":{"api_name":"Tyk Test API","api_id":"3","versions":["Default"],"allowed_urls":[]}},"org_id":"53ac07777cbb8c2d53000002","date_created":"2024-03-01T10:00:00.123456789+02:00","big":12345678901234567890123,"f":1.10,"meta_data":{"n":1e+21,"keep":"x"},"tags":["a"],"alias":"bob","last_updated":"1709287200"}"#;

    #[test]
    fn reads_tyk_fields_and_times() {
        let doc = Doc::parse(TYK.to_owned()).unwrap();
        assert_eq!(doc.record.alias, "bob");
        assert_eq!(doc.record.rate, 1000.0);
        assert_eq!(doc.record.date_created, 1_709_280_000);
        assert_eq!(doc.record.last_updated, 1_709_287_200);
        assert!(doc.record.version >= 1 << 63, "no keycard version: derived");
        assert_eq!(doc.record.meta_data["keep"], "x");
    }

    #[test]
    fn apply_rewrites_only_the_metadata_it_names() {
        let doc = Doc::parse(TYK.to_owned()).unwrap();
        let mut delta = MetadataDelta::new();
        delta.set("plan", json!("gold")).increment("count", 2);
        let text = doc.applied(&delta, 1_800_000_000).unwrap();
        let expected = TYK
            .replace(
                r#""meta_data":{"n":1e+21,"keep":"x"}"#,
                r#""meta_data":{"n":1e+21,"keep":"x","plan":"gold","count":2}"#,
            )
            .replace(
                r#""last_updated":"1709287200""#,
                r#""last_updated":"1800000000""#,
            )
            .trim_end_matches('}')
            .to_owned()
            + &format!(r#","keycard_version":{}}}"#, doc.record.version + 1);
        assert_eq!(text, expected);
        let again = Doc::parse(text).unwrap();
        assert_eq!(again.record.version, doc.record.version + 1);
        assert_eq!(
            again.meta_text().unwrap(),
            r#"{"n":1e+21,"keep":"x","plan":"gold","count":2}"#
        );
    }

    #[test]
    fn replace_writes_only_changed_fields() {
        let doc = Doc::parse(TYK.to_owned()).unwrap();
        let mut record = doc.record.clone();
        record.alias = "carol".into();
        let text = doc.replaced(&record, 1_800_000_000).unwrap();
        assert!(text.contains(r#""alias":"carol""#));
        for kept in [
            r#""date_created":"2024-03-01T10:00:00.123456789+02:00""#,
            r#""big":12345678901234567890123"#,
            r#""f":1.10"#,
            r#""rate":1000,"#,
            r#""meta_data":{"n":1e+21,"keep":"x"}"#,
            r#""access_rights":{"3":{"api_name":"Tyk Test API","api_id":"3","versions":["Default"],"allowed_urls":[]}}"#,
        ] {
            assert!(text.contains(kept), "{kept} in {text}");
        }
    }

    #[test]
    fn created_documents_read_back_as_the_record() {
        let mut record = SessionRecord::default()
            .with_alias("a")
            .metadata(json!({"u": u64::MAX}));
        record.date_created = 1_600_000_000;
        record.last_updated = 1_600_000_001;
        let text = create(&record).unwrap();
        assert!(
            text.contains(r#""date_created":"2020-09-13T12:26:40Z""#),
            "{text}"
        );
        assert!(text.contains(r#""last_updated":"1600000001""#), "{text}");
        let back = Doc::parse(text).unwrap().record;
        record.version = 1;
        assert_eq!(back, record);
    }
}
