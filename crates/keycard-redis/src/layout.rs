//! Key names and the session's hash encoding (see the crate docs for the layout).

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use fred::types::{Resp3Frame, Value};
use keycard_core::key::KeyId;
use keycard_core::metadata::{MetadataChange, MetadataDelta};
use keycard_core::session::SessionRecord;
use keycard_core::store::StoreError;

/// The `"<version> <last_updated>"` reply of the version-returning apply script.
pub(crate) fn version_and_time(reply: Value) -> Result<(u64, i64), StoreError> {
    let text = text(reply)?;
    let corrupt = || StoreError::Corrupt(format!("unexpected apply reply {text:?}"));
    let (version, updated) = text.split_once(' ').ok_or_else(corrupt)?;
    Ok((
        version.parse().map_err(|_| corrupt())?,
        updated.parse().map_err(|_| corrupt())?,
    ))
}

/// Expiry deadlines past this (year ~36 800) are treated as "never": `EXPIREAT` would overflow.
const MAX_DEADLINE: i64 = 1 << 40;

/// The names of the keys under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    prefix: String,
    grace_secs: i64,
}

/// The three keys of one index (all in one hash slot): members in key-id order (`lex`), their
/// deadlines (`exp`) and the token of the write that added each (`tok`).
#[derive(Clone, Debug)]
pub(crate) struct IndexKeys {
    pub(crate) lex: String,
    pub(crate) exp: String,
    pub(crate) tok: String,
}

impl IndexKeys {
    fn new(base: String) -> Self {
        Self {
            lex: format!("{base}:lex"),
            exp: format!("{base}:exp"),
            tok: format!("{base}:tok"),
        }
    }

    pub(crate) fn all(&self) -> Vec<String> {
        vec![self.lex.clone(), self.exp.clone(), self.tok.clone()]
    }
}

impl Layout {
    pub(crate) fn new(prefix: String, grace: Duration) -> Self {
        Self {
            prefix,
            grace_secs: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>:{s:<key_id>}`: the session hash.
    pub(crate) fn session(&self, key_id: &KeyId) -> String {
        format!("{}:{{s:{}}}", self.prefix, key_id.as_str())
    }

    /// The key id of a session key of this prefix (for invalidation messages).
    pub(crate) fn key_id_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{s:")?
            .strip_suffix('}')
    }

    /// `<prefix>:{a:<alias>}:{lex,exp,tok}`: the index of one alias.
    pub(crate) fn alias_index(&self, alias: &str) -> IndexKeys {
        IndexKeys::new(format!("{}:{{a:{alias}}}", self.prefix))
    }

    /// `<prefix>:{k:<prefix>}:{lex,exp,tok}`: the index of every key id.
    pub(crate) fn key_index(&self) -> IndexKeys {
        IndexKeys::new(format!("{0}:{{k:{0}}}", self.prefix))
    }

    /// The unix second at which Redis drops the session: one second after the last second of the
    /// grace period, so Redis and `MemoryStore` agree on when a session stops being visible.
    pub(crate) fn deadline(&self, session: &SessionRecord) -> Option<i64> {
        (session.expires >= 1)
            .then(|| {
                session
                    .expires
                    .saturating_add(self.grace_secs)
                    .saturating_add(1)
            })
            .filter(|at| *at < MAX_DEADLINE)
    }

    /// The deadline as an `EXPIREAT` argument (`0` = none).
    pub(crate) fn expire_at_arg(&self, session: &SessionRecord) -> String {
        self.deadline(session).unwrap_or(0).to_string()
    }

    /// The deadline as an index score (`+inf` = none).
    pub(crate) fn index_score(&self, session: &SessionRecord) -> String {
        self.deadline(session)
            .map_or_else(|| "+inf".to_owned(), |at| at.to_string())
    }
}

/// The session without the parts kept in their own fields (and without the key id, which is in
/// the key name), leaving out every field at its default: the smaller the base, the less every
/// load parses. Fields that are absent read back as their defaults.
pub(crate) fn base_json(session: &SessionRecord) -> Result<String, StoreError> {
    static DEFAULTS: LazyLock<serde_json::Map<String, serde_json::Value>> =
        LazyLock::new(|| match serde_json::to_value(SessionRecord::default()) {
            Ok(serde_json::Value::Object(defaults)) => defaults,
            _ => serde_json::Map::new(),
        });
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    let serde_json::Value::Object(mut base) = serde_json::to_value(session).map_err(corrupt)?
    else {
        return Err(StoreError::Corrupt("a session is not a JSON object".into()));
    };
    // Floats compare bit for bit, so `-0.0` (equal to `0.0` as a number) is kept and reads back
    // as it was.
    let is_default = |name: &str, value: &serde_json::Value| {
        DEFAULTS.get(name).is_some_and(|default| {
            match (
                default.is_f64() || value.is_f64(),
                default.as_f64(),
                value.as_f64(),
            ) {
                (true, Some(a), Some(b)) => a.to_bits() == b.to_bits(),
                _ => default == value,
            }
        })
    };
    base.retain(|name, value| {
        !matches!(
            name.as_str(),
            "key_id" | "meta_data" | "version" | "last_updated" | "date_created"
        ) && !is_default(name, value)
    });
    serde_json::to_string(&base).map_err(corrupt)
}

/// `key, raw-json` pairs of the session's metadata.
pub(crate) fn meta_args(session: &SessionRecord, out: &mut Vec<String>) {
    for (key, value) in &session.meta_data {
        out.push(key.clone());
        out.push(value.to_string());
    }
}

/// The delta as flat `ARGV` ops for the apply script.
pub(crate) fn delta_args(delta: &MetadataDelta) -> Vec<String> {
    let mut args = Vec::with_capacity(delta.len() * 3);
    for change in delta.changes() {
        match change {
            MetadataChange::Set { key, value } => {
                args.extend(["s".to_owned(), key.clone(), value.to_string()]);
            }
            MetadataChange::Delete { key } => args.extend(["d".to_owned(), key.clone()]),
            MetadataChange::Evict => args.push("e".to_owned()),
            MetadataChange::Increment { key, by } => {
                args.extend(["i".to_owned(), key.clone(), by.to_string()]);
            }
        }
    }
    args
}

/// A reply field as text.
pub(crate) fn text(value: Value) -> Result<String, StoreError> {
    match value {
        // Already checked UTF-8 by the client.
        Value::String(s) => Ok(s.to_string()),
        other => String::from_utf8(bytes(other)?.to_vec())
            .map_err(|_| StoreError::Corrupt("a stored field is not UTF-8".into())),
    }
}

/// A reply field as bytes (no copy for strings and blobs).
fn bytes(value: Value) -> Result<Bytes, StoreError> {
    match value {
        Value::String(s) => Ok(s.into_inner()),
        Value::Bytes(b) => Ok(b),
        Value::Integer(i) => Ok(i.to_string().into()),
        Value::Double(d) => Ok(d.to_string().into()),
        other => Err(StoreError::Corrupt(format!(
            "unexpected reply {:?}",
            other.kind()
        ))),
    }
}

/// A reply field as an integer.
pub(crate) fn int(value: Value) -> Result<i64, StoreError> {
    let text = text(value)?;
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{text:?} is not an integer")))
}

/// The fields of a session hash, as the reply's own buffers. A session has a handful of fields
/// plus one per metadata entry, so a vector searched linearly beats building a hash map on every
/// load (measured: the map was about a tenth of the instructions of a Redis-backed request).
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<(Bytes, Bytes)>);

impl Fields {
    pub(crate) fn insert(&mut self, name: impl Into<Bytes>, value: impl Into<Bytes>) {
        self.0.push((name.into(), value.into()));
    }

    /// The fields as borrowed slices, to read them by name.
    pub(crate) fn pairs(&self) -> Pairs<'_> {
        Pairs(self.0.iter().map(|(k, v)| (&k[..], &v[..])).collect())
    }
}

/// A session hash's fields as borrowed slices: of a reply's buffers ([`Fields::pairs`]) or of
/// one packed reply ([`decode_packed`]).
pub(crate) struct Pairs<'a>(Vec<(&'a [u8], &'a [u8])>);

impl Pairs<'_> {
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| *k == name.as_bytes())
            .map(|(_, v)| *v)
    }

    /// A field as text (`None` when absent or not UTF-8).
    pub(crate) fn get_str(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.get(name)?).ok()
    }
}

/// A hash reply (RESP3 map or RESP2/Lua flat array) as field → value.
pub(crate) fn hash(value: Value) -> Result<Fields, StoreError> {
    let mut out = Fields::default();
    match value {
        Value::Null => {}
        Value::Map(map) => {
            for (k, v) in map.inner() {
                out.insert(k.into_bytes(), bytes(v)?);
            }
        }
        Value::Array(items) => {
            let mut items = items.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                out.insert(bytes(k)?, bytes(v)?);
            }
        }
        other => {
            return Err(StoreError::Corrupt(format!(
                "unexpected reply {:?}",
                other.kind()
            )));
        }
    }
    Ok(out)
}

/// The reply of the load script (`scripts::LOAD`): the session's fields packed into one string
/// (see [`decode_packed`]), or `None` for no session. `Err(None)` is `NOSCRIPT`: the server lost
/// its script cache.
pub(crate) fn packed_frame(frame: Resp3Frame) -> Result<Option<Bytes>, Option<StoreError>> {
    match frame {
        Resp3Frame::Null => Ok(None),
        Resp3Frame::BlobString { data, .. } => Ok(Some(data)),
        Resp3Frame::BlobError { data, .. } => {
            let message = String::from_utf8_lossy(&data);
            Err(no_script(&message))
        }
        Resp3Frame::SimpleError { data, .. } => Err(no_script(&data)),
        _ => Err(Some(StoreError::Corrupt(
            "unexpected reply: not a packed session".into(),
        ))),
    }
}

fn no_script(message: &str) -> Option<StoreError> {
    (!message.starts_with("NOSCRIPT")).then(|| server_error(message))
}

/// The fields of a packed session, `<length>:<name><length>:<value>` with lengths in bytes, as
/// slices of `data` (no copy, no reference count per field); `None` when one is cut short.
fn unpack(data: &[u8]) -> Option<Pairs<'_>> {
    // A session has a handful of fields plus one per metadata entry.
    let mut pairs = Pairs(Vec::with_capacity(16));
    let mut at = 0;
    let mut next = || -> Option<Option<&[u8]>> {
        if at == data.len() {
            return Some(None);
        }
        let digits = data[at..].iter().position(|&b| b == b':')?;
        if digits == 0 || digits > 10 {
            return None;
        }
        let len = data[at..at + digits].iter().try_fold(0usize, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
        })?;
        let start = at + digits + 1;
        let end = start.checked_add(len).filter(|&end| end <= data.len())?;
        at = end;
        Some(Some(&data[start..end]))
    };
    while let Some(name) = next()? {
        let value = next()??;
        pairs.0.push((name, value));
    }
    Some(pairs)
}

/// A packed session (the load script's reply) decoded; `None` for no session.
pub(crate) fn decode_packed(data: &[u8]) -> Result<Option<SessionRecord>, StoreError> {
    let pairs =
        unpack(data).ok_or_else(|| StoreError::Corrupt("a packed session is cut short".into()))?;
    decode_pairs(&pairs)
}

/// An error reply, classified as the client's own errors are.
fn server_error(message: &str) -> StoreError {
    crate::store::store_error(fred::error::Error::new(
        fred::error::ErrorKind::Unknown,
        message.to_owned(),
    ))
}

/// Rebuilds a session from its hash; `None` for an empty hash (no such key).
pub(crate) fn decode(fields: Fields) -> Result<Option<SessionRecord>, StoreError> {
    decode_pairs(&fields.pairs())
}

fn decode_pairs(fields: &Pairs<'_>) -> Result<Option<SessionRecord>, StoreError> {
    if fields.0.is_empty() {
        return Ok(None);
    }
    let corrupt = |what: &str| StoreError::Corrupt(format!("session hash: {what}"));
    let base = fields.get("b").ok_or_else(|| corrupt("no base field"))?;
    let mut session: SessionRecord = serde_json::from_slice(base)
        .map_err(|e| StoreError::Corrupt(format!("session JSON: {e}")))?;
    let number = |name: &str| -> Result<i64, StoreError> {
        fields
            .get_str(name)
            .ok_or_else(|| corrupt("missing field"))?
            .parse()
            .map_err(|_| corrupt("a number field is not a number"))
    };
    session.date_created = number("c")?;
    session.last_updated = number("u")?;
    session.version = u64::try_from(number("v")?).map_err(|_| corrupt("negative version"))?;
    for (field, raw) in &fields.0 {
        if let Some(key) = field.strip_prefix(b"m:") {
            let key = std::str::from_utf8(key).map_err(|_| corrupt("a field is not UTF-8"))?;
            let value = meta_value(raw)
                .map_err(|e| StoreError::Corrupt(format!("metadata value of {key:?}: {e}")))?;
            session.meta_data.insert(key.to_owned(), value);
        }
    }
    Ok(Some(session))
}

/// A stored metadata value (raw JSON text) as a `Value`. The two common shapes skip the JSON
/// parser: a string without escapes or control characters, and an integer that fits 18 digits
/// (no leading zero, no `-0`); anything else, and anything odd, goes through `serde_json`, so
/// the result is always what `serde_json::from_slice` gives.
fn meta_value(raw: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    if let [b'"', inner @ .., b'"'] = raw
        && !inner.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20)
        && let Ok(text) = std::str::from_utf8(inner)
    {
        return Ok(serde_json::Value::String(text.into()));
    }
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    if (1..=18).contains(&digits.len())
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1 && raw.len() == 1)
        && let Ok(n) = std::str::from_utf8(raw).unwrap_or_default().parse::<i64>()
    {
        return Ok(serde_json::Value::from(n));
    }
    serde_json::from_slice(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycard_core::key::ApiKey;
    use serde_json::json;

    #[test]
    fn keys_of_one_index_share_a_hash_slot() {
        let layout = Layout::new("kc".into(), Duration::from_secs(60));
        for alias in ["", "alice", "a}b", "{x}", "}"] {
            let index = layout.alias_index(alias);
            let slots: Vec<u16> = index
                .all()
                .iter()
                .map(|k| fred::util::redis_keyslot(k.as_bytes()))
                .collect();
            assert!(slots.windows(2).all(|w| w[0] == w[1]), "{alias:?}");
        }
        let id = KeyId::of(&ApiKey::new("k"));
        let key = layout.session(&id);
        assert_eq!(layout.key_id_of(&key), Some(id.as_str()));
        assert_eq!(layout.key_id_of("other:{s:x}"), None);
    }

    #[test]
    fn deadline_is_expiry_plus_grace_plus_one() {
        let layout = Layout::new("kc".into(), Duration::from_secs(60));
        let session = SessionRecord::default().with_expires(1_000);
        assert_eq!(layout.deadline(&session), Some(1_061));
        assert_eq!(layout.expire_at_arg(&SessionRecord::default()), "0");
        assert_eq!(layout.index_score(&SessionRecord::default()), "+inf");
        assert_eq!(
            layout.deadline(&SessionRecord::default().with_expires(i64::MAX)),
            None
        );
    }

    #[test]
    fn base_leaves_out_defaults_and_the_separate_fields() {
        let session = SessionRecord::new(serde_json::Map::new())
            .with_key_id(KeyId::of(&ApiKey::new("k")))
            .with_alias("a")
            .with_expires(1_000);
        assert_eq!(
            base_json(&session).unwrap(),
            r#"{"alias":"a","expires":1000,"quota_max":-1,"quota_remaining":-1}"#
        );
        assert_eq!(base_json(&SessionRecord::default()).unwrap(), "{}");
        let mut negative_zero = SessionRecord::default();
        negative_zero.rate = -0.0;
        assert_eq!(base_json(&negative_zero).unwrap(), r#"{"rate":-0.0}"#);
        // A base written in full (as before) still reads back.
        let mut fields = Fields::default();
        fields.insert("b", serde_json::to_string(&session).unwrap());
        for name in ["c", "u", "v"] {
            fields.insert(name, "1");
        }
        let back = decode(fields).unwrap().unwrap();
        assert_eq!((back.alias.as_str(), back.quota_max), ("a", -1));
    }

    fn blob(text: &str) -> Resp3Frame {
        Resp3Frame::BlobString {
            data: Bytes::copy_from_slice(text.as_bytes()),
            attributes: None,
        }
    }

    #[test]
    fn packed_replies_decode_to_the_session() {
        let text = r#"1:b2:{}1:c1:11:u1:21:v1:36:m:plan6:"gold""#;
        let session = decode_packed(text.as_bytes()).unwrap().unwrap();
        assert_eq!(session.meta_data["plan"], "gold");
        assert_eq!(
            (session.date_created, session.last_updated, session.version),
            (1, 2, 3)
        );
        assert!(decode_packed(b"").unwrap().is_none());
        assert!(packed_frame(Resp3Frame::Null).unwrap().is_none());
        assert_eq!(packed_frame(blob(text)).unwrap().unwrap(), text.as_bytes());
    }

    #[test]
    fn packed_replies_unpack_to_the_fields_and_refuse_cut_ones() {
        // Lengths are in bytes: "m:é" is 4.
        let text = "1:b2:{}1:v1:71:u10:17000000004:m:é3:[1]0:0:";
        let fields = unpack(text.as_bytes()).unwrap();
        assert_eq!(fields.get_str("b"), Some("{}"));
        assert_eq!(fields.get_str("v"), Some("7"));
        assert_eq!(fields.get_str("u"), Some("1700000000"));
        assert_eq!(fields.get_str("m:é"), Some("[1]"));
        assert_eq!(fields.get_str(""), Some(""));
        // Names and values that look like the framing are only bytes inside their lengths.
        let tricky = r#"8:m:1:a:2:5:"3:b"1:b2:{}"#;
        let fields = unpack(tricky.as_bytes()).unwrap();
        assert_eq!(fields.get_str("m:1:a:2:"), Some(r#""3:b""#));
        assert_eq!(fields.get_str("b"), Some("{}"));
        assert!(unpack(b"").unwrap().0.is_empty());
        for cut in [
            "1:b",
            "1:b2:{",
            "x:b",
            "1:b2",
            "99:b",
            ":b",
            "99999999999:b",
            "1:b",
        ] {
            assert!(unpack(cut.as_bytes()).is_none(), "{cut}");
            assert!(
                matches!(decode_packed(cut.as_bytes()), Err(StoreError::Corrupt(_))),
                "{cut}"
            );
        }
        let noscript = Resp3Frame::SimpleError {
            data: "NOSCRIPT No matching script".into(),
            attributes: None,
        };
        assert!(matches!(packed_frame(noscript), Err(None)));
    }

    #[test]
    fn metadata_values_read_as_serde_json_reads_them() {
        for raw in [
            r#""gold""#,
            r#""""#,
            r#""a\"b""#,
            r#""\u00e9""#,
            r#""é☃""#,
            "\"tab\there\"",
            "0",
            "-1",
            "7",
            "-0",
            "01",
            "123456789012345678",
            "1234567890123456789",
            "18446744073709551615",
            "-9223372036854775808",
            "1.5",
            "1e3",
            "true",
            "null",
            r#"[1,"x"]"#,
            r#"{"a":{}}"#,
        ] {
            let ours = meta_value(raw.as_bytes()).map_err(|e| e.to_string());
            let theirs = serde_json::from_str::<serde_json::Value>(raw).map_err(|e| e.to_string());
            assert_eq!(ours, theirs, "{raw}");
            if let (Ok(serde_json::Value::Number(a)), Ok(serde_json::Value::Number(b))) =
                (&ours, &theirs)
            {
                assert_eq!(
                    (a.is_u64(), a.is_i64(), a.is_f64()),
                    (b.is_u64(), b.is_i64(), b.is_f64()),
                    "{raw}"
                );
            }
        }
        // Bytes that are not UTF-8 are an error, as serde_json says.
        assert!(meta_value(b"\"\xff\"").is_err());
    }

    #[test]
    fn raw_error_replies_are_errors() {
        let wrong_type = Resp3Frame::SimpleError {
            data: "WRONGTYPE Operation against a key holding the wrong kind of value".into(),
            attributes: None,
        };
        assert!(matches!(
            packed_frame(wrong_type),
            Err(Some(StoreError::Corrupt(_)))
        ));
        let loading = Resp3Frame::SimpleError {
            data: "LOADING Redis is loading the dataset in memory".into(),
            attributes: None,
        };
        assert!(matches!(
            packed_frame(loading),
            Err(Some(StoreError::Unavailable(_)))
        ));
        assert!(matches!(
            packed_frame(Resp3Frame::Number {
                data: 1,
                attributes: None
            }),
            Err(Some(StoreError::Corrupt(_)))
        ));
    }

    #[test]
    fn session_round_trips_through_fields() {
        let mut session = SessionRecord::default()
            .with_alias("a")
            .with_policies(["p"]);
        session.meta_data.insert("big".into(), json!(u64::MAX));
        session.meta_data.insert("empty".into(), json!({}));
        let mut fields = Fields::default();
        fields.insert("b".to_owned(), base_json(&session).unwrap());
        fields.insert("c".to_owned(), "5".to_owned());
        fields.insert("u".to_owned(), "6".to_owned());
        fields.insert("v".to_owned(), "7".to_owned());
        let mut args = Vec::new();
        meta_args(&session, &mut args);
        for pair in args.chunks(2) {
            fields.insert(format!("m:{}", pair[0]), pair[1].clone());
        }
        let back = decode(fields).unwrap().unwrap();
        assert_eq!(back.meta_data, session.meta_data);
        assert_eq!(
            (back.date_created, back.last_updated, back.version),
            (5, 6, 7)
        );
        assert_eq!(back.apply_policies, ["p"]);
    }
}
