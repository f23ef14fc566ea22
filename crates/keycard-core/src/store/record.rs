//! The compact form [`MemoryStore`](super::MemoryStore) keeps a session in.
//!
//! A [`SessionRecord`] is about 220 bytes inline and its metadata map is a B-tree node plus two heap
//! strings per entry. At a million sessions that dominates the store's memory, so the store keeps
//! instead:
//!
//! - the key id as a [`Slot`]: the 32-byte digest rather than 64 hex characters (and not repeated
//!   inside the record; `load` and `apply` hand the caller's key id back, listings re-encode it);
//! - a [`Record`]: the four fields the store reads or stamps itself (`expires`, `date_created`,
//!   `last_updated`, `version`) inline, and everything else encoded into one boxed byte slice — one
//!   allocation per session instead of a dozen.
//!
//! The encoding is private to this process (nothing is persisted) and is only ever read back by
//! [`Record::session`], which rebuilds an equal [`SessionRecord`]. It is:
//!
//! ```text
//! body    = flags:u8 alias:str org_id:str policies:strs tags:strs
//!           [rate:f64] [per:f64]                      (present when the flag bit is set)
//!           quota_max:int quota_remaining:int quota_renewal_rate:int quota_renews:int
//!           meta:object
//!           [last_interacted_at:int device:(0 | 1 str str str str)]   (when HAS_ACTIVITY is set;
//!                                       initial_user_agent initial_ip last_user_agent last_ip)
//!           [extra:object]                            (when HAS_EXTRA is set)
//! str     = len:uint bytes          strs = n:uint str*        object = n:uint (str value)*
//! value   = 0 null | 1 false | 2 true | 3 uint (u64) | 4 int (negative i64) | 5 f64 (8 bytes LE)
//!         | 6 str | 7 n:uint value* (array) | 8 object
//! uint    = LEB128                  int = zig-zag LEB128
//! ```
//!
//! Numbers keep their kind (`u64`, negative `i64`, `f64`), so a decoded [`Value`] compares equal to
//! the original; floats are stored bit for bit.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::key::{KeyId, hex_into, parse_digest};
use crate::metadata::Metadata;
use crate::session::SessionRecord;

/// A key id as the store's maps hold it. A canonical id (64 lower-case hex characters, what
/// [`KeyId::of`] and [`KeyId::from_hash`] produce) is kept as its 32-byte digest; anything else
/// (an empty id, a deserialised odd one) as the string itself.
///
/// Orders exactly as the key id strings do, so listings and cursors are unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    Digest([u8; 32]),
    Other(Box<str>),
}

impl Slot {
    /// The slot of a key id (or of a listing cursor, which is a key id string).
    pub(super) fn of(id: &str) -> Self {
        parse_digest(id).map_or_else(|| Self::Other(id.into()), Self::Digest)
    }

    /// Well-spread bits of the key id, to index small tables by.
    pub(super) fn spread(&self) -> usize {
        match self {
            // A digest is uniformly distributed already.
            Self::Digest(digest) => {
                usize::from_le_bytes(std::array::from_fn(|i| digest[i % digest.len()]))
            }
            Self::Other(id) => {
                use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
                // Truncation is the intent: any bits pick an entry.
                #[allow(clippy::cast_possible_truncation)]
                let spread = BuildHasherDefault::<DefaultHasher>::default().hash_one(id) as usize;
                spread
            }
        }
    }

    /// The smallest slot: the empty key id.
    pub(super) fn min() -> Self {
        Self::Other(Box::default())
    }

    /// The key id this slot stands for.
    pub(super) fn key_id(&self) -> KeyId {
        match self {
            Self::Digest(digest) => KeyId::unchecked(hex(digest).as_str()),
            Self::Other(id) => KeyId::unchecked(id),
        }
    }
}

impl Ord for Slot {
    fn cmp(&self, other: &Self) -> Ordering {
        // Hex digits sort like the nibbles they encode, so digests compare as their hex strings.
        match (self, other) {
            (Self::Digest(a), Self::Digest(b)) => a.cmp(b),
            (Self::Other(a), Self::Other(b)) => a.cmp(b),
            (Self::Digest(a), Self::Other(b)) => hex(a).as_str().cmp(b),
            (Self::Other(a), Self::Digest(b)) => (**a).cmp(hex(b).as_str()),
        }
    }
}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A 64-character hex digest on the stack.
struct Hex([u8; 64]);

impl Hex {
    fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn hex(digest: &[u8; 32]) -> Hex {
    let mut out = [0u8; 64];
    hex_into(digest, &mut out);
    Hex(out)
}

/// A stored session without its key id (the map key holds that).
#[derive(Clone, Debug)]
pub(super) struct Record {
    pub(super) expires: i64,
    pub(super) date_created: i64,
    pub(super) last_updated: i64,
    pub(super) version: u64,
    /// Unique to this write of the record within its store: what the store's table of decoded
    /// sessions checks an entry against.
    pub(super) stamp: u64,
    body: Body,
}

/// Every other field of a session, encoded (see the module documentation).
#[derive(Clone, Debug)]
pub(super) struct Body(Box<[u8]>);

/// A record that does not decode: a bug in this module, never bad input.
#[derive(Debug)]
pub(super) struct Corrupt;

const INACTIVE: u8 = 1;
const HAS_RATE: u8 = 2;
const HAS_PER: u8 = 4;
const HAS_EXTRA: u8 = 8;
/// `last_interacted_at` or `device` is set: both follow the metadata.
const HAS_ACTIVITY: u8 = 16;

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const UINT: u8 = 3;
const NEG_INT: u8 = 4;
const FLOAT: u8 = 5;
const STRING: u8 = 6;
const ARRAY: u8 = 7;
const OBJECT: u8 = 8;

impl Body {
    /// Encodes everything of `session` but its key id, expiry, timestamps and version.
    pub(super) fn encode(session: &SessionRecord) -> Self {
        // Destructured so that a new `SessionRecord` field fails to compile here until it is stored.
        let SessionRecord {
            key_id: _,
            alias,
            org_id,
            expires: _,
            is_inactive,
            apply_policies,
            tags,
            rate,
            per,
            quota_max,
            quota_remaining,
            quota_renewal_rate,
            quota_renews,
            meta_data,
            date_created: _,
            last_updated: _,
            version: _,
            last_interacted_at,
            device,
            extra,
        } = session;
        let mut out = Writer(Vec::with_capacity(128));
        let mut flags = 0;
        if *is_inactive {
            flags |= INACTIVE;
        }
        if rate.to_bits() != 0 {
            flags |= HAS_RATE;
        }
        if per.to_bits() != 0 {
            flags |= HAS_PER;
        }
        if !extra.is_empty() {
            flags |= HAS_EXTRA;
        }
        if *last_interacted_at != 0 || device.is_some() {
            flags |= HAS_ACTIVITY;
        }
        out.byte(flags);
        out.str(alias);
        out.str(org_id);
        out.strs(apply_policies);
        out.strs(tags);
        if flags & HAS_RATE != 0 {
            out.f64(*rate);
        }
        if flags & HAS_PER != 0 {
            out.f64(*per);
        }
        for n in [quota_max, quota_remaining, quota_renewal_rate, quota_renews] {
            out.int(*n);
        }
        out.object(meta_data);
        if flags & HAS_ACTIVITY != 0 {
            out.int(*last_interacted_at);
            match device {
                None => out.byte(0),
                Some(device) => {
                    out.byte(1);
                    out.str(&device.initial_user_agent);
                    out.str(&device.initial_ip);
                    out.str(&device.last_user_agent);
                    out.str(&device.last_ip);
                }
            }
        }
        if flags & HAS_EXTRA != 0 {
            out.object(extra);
        }
        Self(out.0.into_boxed_slice())
    }
}

impl Record {
    /// The record of `session`, whose other fields `body` encodes.
    pub(super) fn new(session: &SessionRecord, body: Body, stamp: u64) -> Self {
        Self {
            expires: session.expires,
            date_created: session.date_created,
            last_updated: session.last_updated,
            version: session.version,
            stamp,
            body,
        }
    }

    /// The alias, read without decoding the rest.
    pub(super) fn alias(&self) -> Result<&str, Corrupt> {
        let mut reader = Reader(&self.body.0);
        reader.byte()?;
        reader.str()
    }

    /// The session this record holds, under `key_id`.
    pub(super) fn session(&self, key_id: KeyId) -> Result<SessionRecord, Corrupt> {
        let mut reader = Reader(&self.body.0);
        let flags = reader.byte()?;
        let alias = reader.str()?.to_owned();
        let org_id = reader.str()?.to_owned();
        let apply_policies = reader.strs()?;
        let tags = reader.strs()?;
        let rate = if flags & HAS_RATE != 0 {
            reader.f64()?
        } else {
            0.0
        };
        let per = if flags & HAS_PER != 0 {
            reader.f64()?
        } else {
            0.0
        };
        let quota_max = reader.int()?;
        let quota_remaining = reader.int()?;
        let quota_renewal_rate = reader.int()?;
        let quota_renews = reader.int()?;
        let meta_data = reader.object()?;
        let (last_interacted_at, device) = if flags & HAS_ACTIVITY != 0 {
            let at = reader.int()?;
            let device = match reader.byte()? {
                0 => None,
                1 => Some(crate::session::Device {
                    initial_user_agent: reader.str()?.to_owned(),
                    initial_ip: reader.str()?.to_owned(),
                    last_user_agent: reader.str()?.to_owned(),
                    last_ip: reader.str()?.to_owned(),
                }),
                _ => return Err(Corrupt),
            };
            (at, device)
        } else {
            (0, None)
        };
        let extra = if flags & HAS_EXTRA != 0 {
            reader.object()?
        } else {
            Map::new()
        };
        if !reader.0.is_empty() {
            return Err(Corrupt);
        }
        Ok(SessionRecord {
            key_id,
            alias,
            org_id,
            expires: self.expires,
            is_inactive: flags & INACTIVE != 0,
            apply_policies,
            tags,
            rate,
            per,
            quota_max,
            quota_remaining,
            quota_renewal_rate,
            quota_renews,
            meta_data,
            date_created: self.date_created,
            last_updated: self.last_updated,
            version: self.version,
            last_interacted_at,
            device,
            extra,
        })
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    fn uint(&mut self, mut n: u64) {
        while n >= 0x80 {
            // Truncation is the point: the low 7 bits, with the continuation bit.
            #[allow(clippy::cast_possible_truncation)]
            self.0.push((n as u8) | 0x80);
            n >>= 7;
        }
        #[allow(clippy::cast_possible_truncation)]
        self.0.push(n as u8);
    }

    fn len(&mut self, n: usize) {
        self.uint(n as u64);
    }

    fn int(&mut self, n: i64) {
        // Zig-zag: small magnitudes of either sign take one byte (-1 is common: unlimited quota).
        #[allow(clippy::cast_sign_loss)]
        self.uint(((n << 1) ^ (n >> 63)) as u64);
    }

    fn f64(&mut self, f: f64) {
        self.0.extend_from_slice(&f.to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn strs(&mut self, list: &[String]) {
        self.len(list.len());
        for s in list {
            self.str(s);
        }
    }

    fn object(&mut self, map: &Metadata) {
        self.len(map.len());
        for (key, value) in map {
            self.str(key);
            self.value(value);
        }
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.byte(NULL),
            Value::Bool(false) => self.byte(FALSE),
            Value::Bool(true) => self.byte(TRUE),
            Value::Number(n) => {
                // Without serde_json's `arbitrary_precision` a number is exactly one of these.
                if let Some(u) = n.as_u64() {
                    self.byte(UINT);
                    self.uint(u);
                } else if let Some(i) = n.as_i64() {
                    self.byte(NEG_INT);
                    self.int(i);
                } else {
                    self.byte(FLOAT);
                    self.f64(n.as_f64().unwrap_or_default());
                }
            }
            Value::String(s) => {
                self.byte(STRING);
                self.str(s);
            }
            Value::Array(items) => {
                self.byte(ARRAY);
                self.len(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::Object(map) => {
                self.byte(OBJECT);
                self.object(map);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, Corrupt> {
        let (&b, rest) = self.0.split_first().ok_or(Corrupt)?;
        self.0 = rest;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(Corrupt)?;
        self.0 = rest;
        Ok(head)
    }

    fn uint(&mut self) -> Result<u64, Corrupt> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(Corrupt)
    }

    fn len(&mut self) -> Result<usize, Corrupt> {
        usize::try_from(self.uint()?).map_err(|_| Corrupt)
    }

    fn int(&mut self) -> Result<i64, Corrupt> {
        let z = self.uint()?;
        #[allow(clippy::cast_possible_wrap)]
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn f64(&mut self) -> Result<f64, Corrupt> {
        let bytes = self.bytes(8)?.try_into().map_err(|_| Corrupt)?;
        Ok(f64::from_le_bytes(bytes))
    }

    fn str(&mut self) -> Result<&'a str, Corrupt> {
        let n = self.len()?;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| Corrupt)
    }

    fn strs(&mut self) -> Result<Vec<String>, Corrupt> {
        let n = self.len()?;
        let mut list = Vec::with_capacity(n.min(self.0.len()));
        for _ in 0..n {
            list.push(self.str()?.to_owned());
        }
        Ok(list)
    }

    fn object(&mut self) -> Result<Metadata, Corrupt> {
        let n = self.len()?;
        let mut map = Map::new();
        for _ in 0..n {
            let key = self.str()?.to_owned();
            let value = self.value()?;
            map.insert(key, value);
        }
        Ok(map)
    }

    fn value(&mut self) -> Result<Value, Corrupt> {
        Ok(match self.byte()? {
            NULL => Value::Null,
            FALSE => Value::Bool(false),
            TRUE => Value::Bool(true),
            UINT => Value::Number(self.uint()?.into()),
            NEG_INT => Value::Number(self.int()?.into()),
            FLOAT => Value::Number(Number::from_f64(self.f64()?).ok_or(Corrupt)?),
            STRING => Value::String(self.str()?.to_owned()),
            ARRAY => {
                let n = self.len()?;
                let mut items = Vec::with_capacity(n.min(self.0.len()));
                for _ in 0..n {
                    items.push(self.value()?);
                }
                Value::Array(items)
            }
            OBJECT => Value::Object(self.object()?),
            _ => return Err(Corrupt),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::ApiKey;
    use serde_json::json;

    fn round_trip(session: &SessionRecord) -> SessionRecord {
        let record = Record::new(session, Body::encode(session), 1);
        assert_eq!(record.alias().unwrap(), session.alias);
        record.session(session.key_id.clone()).unwrap()
    }

    fn every_field() -> SessionRecord {
        SessionRecord {
            key_id: KeyId::of(&ApiKey::new("k")),
            alias: "alice ☃".into(),
            org_id: "org-53ac07777cbb8c2d".into(),
            expires: 1_900_000_000,
            is_inactive: true,
            apply_policies: vec!["gold".into(), String::new(), "eu".into()],
            tags: vec!["t1".into(), "t2".into()],
            rate: 1000.5,
            per: -0.25,
            quota_max: i64::MAX,
            quota_remaining: i64::MIN,
            quota_renewal_rate: 3600,
            quota_renews: 1_709_287_200,
            meta_data: json!({"user_id": "u-1", "n": 2, "nested": {"a": [1, "x", null]}})
                .as_object()
                .cloned()
                .unwrap(),
            date_created: 1_700_000_000,
            last_updated: 1_700_000_001,
            version: u64::MAX,
            last_interacted_at: 1_700_000_002,
            device: Some(crate::session::Device {
                initial_user_agent: "Mozilla/5.0 ☃".into(),
                initial_ip: "10.0.0.1".into(),
                last_user_agent: "curl/8.5".into(),
                last_ip: "2001:db8::1".into(),
            }),
            extra: json!({"access_rights": {"api": {"api_id": "api", "versions": ["Default"]}},
                "allowance": 1000.0, "throttle_retry_limit": -1})
            .as_object()
            .cloned()
            .unwrap(),
        }
    }

    #[test]
    fn every_session_field_round_trips() {
        let session = every_field();
        assert_eq!(round_trip(&session), session);
    }

    #[test]
    fn defaults_round_trip() {
        for session in [
            SessionRecord::default(),
            SessionRecord::new(Metadata::new()),
            SessionRecord::default().with_expires(-1),
        ] {
            assert_eq!(round_trip(&session), session);
        }
    }

    #[test]
    fn each_field_alone_round_trips() {
        // One non-default field at a time, so a field that leaks into another is caught.
        let full = every_field();
        let base = SessionRecord::default();
        let variants = [
            SessionRecord {
                alias: full.alias.clone(),
                ..base.clone()
            },
            SessionRecord {
                org_id: full.org_id.clone(),
                ..base.clone()
            },
            SessionRecord {
                is_inactive: true,
                ..base.clone()
            },
            SessionRecord {
                apply_policies: full.apply_policies.clone(),
                ..base.clone()
            },
            SessionRecord {
                tags: full.tags.clone(),
                ..base.clone()
            },
            SessionRecord {
                rate: 2.0,
                ..base.clone()
            },
            SessionRecord {
                per: 60.0,
                ..base.clone()
            },
            SessionRecord {
                quota_max: -1,
                ..base.clone()
            },
            SessionRecord {
                quota_remaining: 7,
                ..base.clone()
            },
            SessionRecord {
                quota_renewal_rate: 86_400,
                ..base.clone()
            },
            SessionRecord {
                quota_renews: 1_800_000_000,
                ..base.clone()
            },
            SessionRecord {
                meta_data: full.meta_data.clone(),
                ..base.clone()
            },
            SessionRecord {
                last_interacted_at: full.last_interacted_at,
                ..base.clone()
            },
            SessionRecord {
                device: full.device.clone(),
                ..base.clone()
            },
            SessionRecord {
                device: Some(crate::session::Device::default()),
                ..base.clone()
            },
        ];
        for session in variants {
            assert_eq!(round_trip(&session), session);
        }
    }

    #[test]
    fn floats_are_kept_bit_for_bit() {
        for f in [-0.0, f64::MIN_POSITIVE, f64::MAX, f64::NAN, 0.1 + 0.2] {
            let session = SessionRecord {
                rate: f,
                per: -f,
                ..SessionRecord::default()
            };
            let back = round_trip(&session);
            assert_eq!(back.rate.to_bits(), f.to_bits());
            assert_eq!(back.per.to_bits(), (-f).to_bits());
        }
    }

    #[test]
    fn every_json_value_round_trips_with_its_number_kind() {
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(1),
            json!(u64::MAX),
            json!(-1),
            json!(i64::MIN),
            json!(0.0),
            json!(-0.0),
            json!(1.5),
            json!(0.1 + 0.2),
            json!(1e300),
            json!(""),
            json!("é ☃ \u{0} \"quoted\""),
            json!("x".repeat(70_000)),
            json!([]),
            json!({}),
            json!([1, [2, [3, {"deep": [{}]}]], "s", null, false, -7, 2.5]),
            json!({"a": {"b": {"c": [u64::MAX, i64::MIN, 1e-300]}}, "": "empty key"}),
        ];
        for value in values {
            let mut meta = Metadata::new();
            meta.insert("k".into(), value.clone());
            let session = SessionRecord::new(meta);
            let back = round_trip(&session).meta_data.remove("k").unwrap();
            assert_eq!(back, value);
            if let (Value::Number(a), Value::Number(b)) = (&back, &value) {
                assert_eq!(
                    (a.is_u64(), a.is_i64(), a.is_f64()),
                    (b.is_u64(), b.is_i64(), b.is_f64())
                );
                assert_eq!(a.as_f64().map(f64::to_bits), b.as_f64().map(f64::to_bits));
            }
        }
    }

    #[test]
    fn truncated_or_padded_bodies_are_corrupt_not_a_panic() {
        let body = Body::encode(&every_field()).0;
        for len in 0..body.len() {
            let record = Record {
                expires: 0,
                date_created: 0,
                last_updated: 0,
                version: 0,
                stamp: 0,
                body: Body(body[..len].into()),
            };
            assert!(record.session(KeyId::default()).is_err(), "length {len}");
        }
        let mut padded = body.to_vec();
        padded.push(0);
        let record = Record::new(&SessionRecord::default(), Body(padded.into()), 1);
        assert!(record.session(KeyId::default()).is_err());
    }

    #[test]
    fn slots_order_like_key_id_strings() {
        let digest = KeyId::of(&ApiKey::new("a")).as_str().to_owned();
        let mut ids: Vec<String> = vec![
            String::new(),
            "0".into(),
            "g".into(),
            "zzz".into(),
            "f".repeat(64),
            "0".repeat(64),
            "0".repeat(63),
            "0".repeat(65),
            "A".repeat(64),
            digest.to_uppercase(),
            digest[..63].to_owned(),
            format!("{digest}0"),
            digest.clone(),
            "é".into(),
        ];
        ids.extend((0..50).map(|i| KeyId::of(&ApiKey::new(format!("k{i}"))).to_string()));
        let mut by_slot: Vec<Slot> = ids.iter().map(|id| Slot::of(id)).collect();
        by_slot.sort();
        ids.sort();
        let back: Vec<String> = by_slot.iter().map(|s| s.key_id().to_string()).collect();
        assert_eq!(back, ids);
        assert!(matches!(Slot::of(&digest), Slot::Digest(_)));
        assert!(matches!(Slot::of(&digest.to_uppercase()), Slot::Other(_)));
        assert!(by_slot.iter().all(|s| Slot::min() <= *s));
    }

    #[test]
    fn slot_key_id_round_trips() {
        let id = KeyId::of(&ApiKey::new("abc"));
        assert_eq!(Slot::of(id.as_str()).key_id(), id);
        assert_eq!(Slot::of("odd id").key_id().as_str(), "odd id");
        assert_eq!(Slot::min().key_id(), KeyId::default());
    }
}
