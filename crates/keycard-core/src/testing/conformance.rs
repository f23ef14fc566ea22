//! The behaviour every [`SessionStore`] must have, as one async fn run against each store.
//!
//! The store must be empty (for Redis: a fresh prefix) and built with an expiry grace of
//! [`GRACE`]. Run it from a multi-threaded tokio test on your own store:
//!
//! ```
//! use std::sync::Arc;
//! use keycard_core::store::MemoryStore;
//! use keycard_core::testing::conformance::{GRACE, conformance};
//!
//! #[tokio::test(flavor = "multi_thread")]
//! async fn my_store_keeps_the_contract() {
//!     conformance(Arc::new(MemoryStore::with_expiry_grace(GRACE))).await;
//! }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::key::{ApiKey, KeyId};
use crate::metadata::MetadataDelta;
use crate::session::{SessionRecord, unix_now};
use crate::store::{SessionStore, StoreError};
use serde_json::json;

/// The expiry grace period the store under test must be built with.
pub const GRACE: Duration = Duration::from_secs(2);

fn id(name: &str) -> KeyId {
    KeyId::of(&ApiKey::new(format!("conformance-{name}")))
}

fn delta(f: impl FnOnce(&mut MetadataDelta)) -> MetadataDelta {
    let mut d = MetadataDelta::new();
    f(&mut d);
    d
}

/// Runs every conformance check against `store`.
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub async fn conformance<S: SessionStore>(store: Arc<S>) {
    create_is_exclusive(&*store).await;
    load_returns_what_was_stored(&*store).await;
    shared_loads_follow_every_write(&*store).await;
    replace_checks_existence_and_version(&*store).await;
    apply_is_ordered_set_if_exists_and_keeps_expiry(&*store).await;
    delete_returns_the_session(&*store).await;
    list_by_alias_pages(&*store).await;
    list_keys_pages(&*store).await;
    delete_by_alias_deletes_that_users_sessions_only(&*store).await;
    concurrent_applies_all_survive(store.clone()).await;
    increments_add_up_exactly(store.clone()).await;
    increments_follow_the_integer_rules(&*store).await;
    expired_sessions_are_visible_inside_grace_only(&*store).await;
    activity_is_stored_and_kept_by_metadata_writes(&*store).await;
}

/// `last_interacted_at` and `device` (what the load stage's activity tracking writes) are
/// stored by `create` and `replace`, and a metadata delta leaves them as they are.
async fn activity_is_stored_and_kept_by_metadata_writes(store: &impl SessionStore) {
    let mut session = SessionRecord::default()
        .with_key_id(id("activity"))
        .with_alias("active");
    session.last_interacted_at = 1_700_000_000;
    session.device = Some(crate::session::Device::first("192.0.2.1", "agent/1 ☃"));
    let created = store.create(session.clone()).await.unwrap();
    let loaded = store.load(&id("activity")).await.unwrap().unwrap();
    assert_eq!(loaded.last_interacted_at, 1_700_000_000);
    assert_eq!(loaded.device, session.device);
    assert_eq!(loaded, created);

    let mut touched = loaded;
    touched.last_interacted_at = 1_700_000_060;
    if let Some(device) = touched.device.as_mut() {
        device.seen("2001:db8::7", "agent/2");
    }
    store.replace(touched.clone()).await.unwrap();
    let set = delta(|d| {
        d.set("plan", json!("gold"));
    });
    let applied = store.apply(&id("activity"), &set).await.unwrap().unwrap();
    assert_eq!(applied.last_interacted_at, 1_700_000_060);
    assert_eq!(applied.device, touched.device);
    let device = applied.device.unwrap();
    assert_eq!(
        (device.initial_ip.as_str(), device.last_ip.as_str()),
        ("192.0.2.1", "2001:db8::7")
    );
    assert_eq!(device.initial_user_agent, "agent/1 ☃");
    let reloaded = store.load(&id("activity")).await.unwrap().unwrap();
    assert_eq!(reloaded.last_interacted_at, 1_700_000_060);
    assert_eq!(reloaded.meta_data["plan"], "gold");

    // A session without activity stays without it.
    let plain = store
        .create(SessionRecord::default().with_key_id(id("activity-none")))
        .await
        .unwrap();
    assert_eq!((plain.last_interacted_at, plain.device), (0, None));
}

/// `apply` on a missing session returns `None` and does not create it.
async fn assert_apply_is_a_no_op(store: &impl SessionStore, key_id: &KeyId) {
    let set = delta(|d| {
        d.set("a", json!(1));
    });
    assert_eq!(store.apply(key_id, &set).await.unwrap(), None);
    assert_eq!(store.save_changes(key_id, &set).await.unwrap(), None);
    assert_eq!(store.load(key_id).await.unwrap(), None);
}

async fn create_is_exclusive(store: &impl SessionStore) {
    let before = unix_now();
    let created = store
        .create(SessionRecord::default().with_key_id(id("create")))
        .await
        .unwrap();
    assert_eq!(created.version, 1);
    assert!(created.date_created >= before - 1 && created.last_updated >= before - 1);
    assert!(matches!(
        store
            .create(SessionRecord::default().with_key_id(id("create")))
            .await,
        Err(StoreError::AlreadyExists)
    ));
    // A given creation time is kept.
    let mut dated = SessionRecord::default().with_key_id(id("create-dated"));
    dated.date_created = 1_600_000_000;
    assert_eq!(
        store.create(dated).await.unwrap().date_created,
        1_600_000_000
    );
}

async fn load_returns_what_was_stored(store: &impl SessionStore) {
    assert_eq!(store.load(&id("missing")).await.unwrap(), None);
    let mut session = SessionRecord::default()
        .with_key_id(id("load"))
        .with_alias("loader")
        .with_policies(["gold", "silver"]);
    session.tags = vec!["a".into(), "b".into()];
    session.rate = 12.5;
    session.quota_max = -1;
    session.meta_data.insert("user_id".into(), json!("u-1"));
    session.meta_data.insert("empty_object".into(), json!({}));
    session.meta_data.insert("empty_array".into(), json!([]));
    session
        .meta_data
        .insert("big".into(), json!(9_007_199_254_740_993_u64));
    session.meta_data.insert("max".into(), json!(u64::MAX));
    session.meta_data.insert("min".into(), json!(i64::MIN));
    session.meta_data.insert("float".into(), json!(0.1 + 0.2));
    session.meta_data.insert("tiny".into(), json!(5e-324));
    session.meta_data.insert(
        "nested".into(),
        json!({"a": {}, "b": [1, {"c": null}], "d": "é\u{0}"}),
    );
    // Fields the session does not type (Tyk's `access_rights`, `allowance`, ...) are kept.
    session.extra.insert(
        "access_rights".into(),
        json!({"api": {"api_id": "api", "versions": ["Default"], "allowed_urls": []}}),
    );
    session.extra.insert("allowance".into(), json!(1000.5));
    session
        .extra
        .insert("throttle_retry_limit".into(), json!(-1));
    let created = store.create(session.clone()).await.unwrap();
    let loaded = store.load(&id("load")).await.unwrap().unwrap();
    assert_eq!(loaded, created);
    assert_eq!(loaded.meta_data, session.meta_data);
    assert_eq!(loaded.extra, session.extra);
    assert_eq!(loaded.apply_policies, ["gold", "silver"]);
    assert_eq!(loaded.tags, ["a", "b"]);

    // An empty metadata map stays an (empty) object.
    store
        .create(SessionRecord::default().with_key_id(id("load-empty")))
        .await
        .unwrap();
    let empty = store.load(&id("load-empty")).await.unwrap().unwrap();
    assert_eq!(
        serde_json::to_value(&empty).unwrap()["meta_data"],
        json!({})
    );
    // ... also after an evict.
    let evicted = store
        .apply(
            &id("load"),
            &delta(|d| {
                d.evict();
            }),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::to_value(&evicted).unwrap()["meta_data"],
        json!({})
    );
    assert_eq!(
        evicted.extra, session.extra,
        "a metadata write keeps the other fields"
    );
}

/// `load_shared` (what the session-load layer calls on every request) answers as `load` does,
/// after every kind of write, including a delete and a re-create under the same key.
async fn shared_loads_follow_every_write(store: &impl SessionStore) {
    async fn shared(store: &impl SessionStore) -> Option<Arc<SessionRecord>> {
        let shared = store.load_shared(&id("shared")).await.unwrap();
        let loaded = store.load(&id("shared")).await.unwrap();
        assert_eq!(shared.as_deref(), loaded.as_ref());
        shared
    }
    let key = id("shared");
    let named = |alias: &str| {
        SessionRecord::default()
            .with_key_id(key.clone())
            .with_alias(alias)
    };
    assert!(shared(store).await.is_none());
    store.create(named("one")).await.unwrap();
    assert_eq!(shared(store).await.unwrap().alias, "one");
    let first = shared(store).await.unwrap();
    store
        .apply(
            &key,
            &delta(|d| {
                d.set("plan", json!("gold"));
            }),
        )
        .await
        .unwrap();
    let applied = shared(store).await.unwrap();
    assert_eq!(applied.meta_data["plan"], "gold");
    assert!(first.meta_data.is_empty(), "an earlier copy never changes");
    store.replace(named("two")).await.unwrap();
    assert_eq!(shared(store).await.unwrap().alias, "two");
    store.delete(&key).await.unwrap();
    assert!(shared(store).await.is_none());
    store.create(named("three")).await.unwrap();
    let recreated = shared(store).await.unwrap();
    assert_eq!((recreated.alias.as_str(), recreated.version), ("three", 1));
    store.delete(&key).await.unwrap();
}

async fn replace_checks_existence_and_version(store: &impl SessionStore) {
    assert!(matches!(
        store
            .replace(SessionRecord::default().with_key_id(id("replace")))
            .await,
        Err(StoreError::NotFound)
    ));
    let mut created = store
        .create(
            SessionRecord::default()
                .with_key_id(id("replace"))
                .with_alias("r1"),
        )
        .await
        .unwrap();
    created.date_created = 1; // ignored: replace keeps the stored creation time
    let mut stale = created.clone();
    stale.version = 7;
    assert!(matches!(
        store.replace(stale).await,
        Err(StoreError::Conflict {
            expected: 7,
            found: 1
        })
    ));
    let mut next = created.clone().with_alias("r2");
    next.meta_data.insert("k".into(), json!("v"));
    let replaced = store.replace(next).await.unwrap();
    assert_eq!(replaced.version, 2);
    assert_ne!(replaced.date_created, 1);
    let loaded = store.load(&id("replace")).await.unwrap().unwrap();
    assert_eq!(loaded, replaced);
    // Version 0 replaces unconditionally.
    let mut any = loaded.clone();
    any.version = 0;
    any.meta_data.clear();
    assert_eq!(store.replace(any).await.unwrap().version, 3);
    assert!(
        store
            .load(&id("replace"))
            .await
            .unwrap()
            .unwrap()
            .meta_data
            .is_empty()
    );
    // The alias index follows the alias.
    assert!(
        store
            .list_by_alias("r1", None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        store.list_by_alias("r2", None, 10).await.unwrap().items[0].key_id,
        id("replace")
    );
}

async fn apply_is_ordered_set_if_exists_and_keeps_expiry(store: &impl SessionStore) {
    let far = unix_now() + 100_000;
    let mut session = SessionRecord::default()
        .with_key_id(id("apply"))
        .with_expires(far);
    session.meta_data.insert("keep".into(), json!(1));
    session.meta_data.insert("gone".into(), json!(2));
    session
        .meta_data
        .insert("big".into(), json!(18_446_744_073_709_551_615_u64));
    store.create(session).await.unwrap();

    let applied = store
        .apply(
            &id("apply"),
            &delta(|d| {
                d.set("a", json!("1"))
                    .delete("gone")
                    .set("a", json!({"x": 1}))
                    .set("b", json!(9_007_199_254_740_993_i64))
                    .delete("never-there");
            }),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(applied.version, 2);
    assert_eq!(applied.expires, far);
    assert_eq!(
        serde_json::Value::Object(applied.meta_data.clone()),
        json!({"keep": 1, "a": {"x": 1}, "b": 9_007_199_254_740_993_i64, "big": 18_446_744_073_709_551_615_u64})
    );
    assert_eq!(store.load(&id("apply")).await.unwrap().unwrap(), applied);

    // Evict then set: only the later set survives.
    let evicted = store
        .apply(
            &id("apply"),
            &delta(|d| {
                d.evict().set("after", json!(true));
            }),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(evicted.meta_data),
        json!({"after": true})
    );
    assert_eq!(evicted.version, 3);
    assert_eq!(evicted.expires, far);

    // `save_changes` (persist's call) applies the same way and answers only the new version.
    let saved = store
        .save_changes(
            &id("apply"),
            &delta(|d| {
                d.set("after", json!(false)).set("more", json!([1]));
            }),
        )
        .await
        .unwrap();
    assert_eq!(saved, Some(4));
    let reloaded = store.load(&id("apply")).await.unwrap().unwrap();
    assert_eq!(
        (reloaded.version, reloaded.expires),
        (4, far),
        "version bumped, expiry kept"
    );
    assert_eq!(
        serde_json::Value::Object(reloaded.meta_data),
        json!({"after": false, "more": [1]})
    );

    // Never recreates a deleted (or never created) session.
    assert_apply_is_a_no_op(store, &id("apply-none")).await;
    store.delete(&id("apply")).await.unwrap().unwrap();
    assert_apply_is_a_no_op(store, &id("apply")).await;
    assert_eq!(store.load(&id("apply")).await.unwrap(), None);
}

async fn delete_returns_the_session(store: &impl SessionStore) {
    assert_eq!(store.delete(&id("delete")).await.unwrap(), None);
    let created = store
        .create(
            SessionRecord::default()
                .with_key_id(id("delete"))
                .with_alias("del"),
        )
        .await
        .unwrap();
    assert_eq!(store.delete(&id("delete")).await.unwrap(), Some(created));
    assert_eq!(store.delete(&id("delete")).await.unwrap(), None);
    assert_eq!(store.load(&id("delete")).await.unwrap(), None);
    assert!(
        store
            .list_by_alias("del", None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    // Created again after a delete: a new session, listed once.
    store
        .create(
            SessionRecord::default()
                .with_key_id(id("delete"))
                .with_alias("del"),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .list_by_alias("del", None, 10)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    store.delete(&id("delete")).await.unwrap().unwrap();
}

/// `delete_by_alias` deletes and returns every session of the alias, more than a page of them,
/// and nothing else; a second call finds nothing.
async fn delete_by_alias_deletes_that_users_sessions_only(store: &impl SessionStore) {
    let user: Vec<KeyId> = (0..130).map(|n| id(&format!("user-del-{n}"))).collect();
    for key_id in &user {
        let session = SessionRecord::default()
            .with_key_id(key_id.clone())
            .with_alias("user-del");
        store.create(session).await.unwrap();
    }
    let other = id("user-del-other");
    let session = SessionRecord::default()
        .with_key_id(other.clone())
        .with_alias("user-del-2");
    store.create(session).await.unwrap();
    let mut deleted: Vec<KeyId> = store
        .delete_by_alias("user-del")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.key_id)
        .collect();
    deleted.sort();
    let mut expected = user.clone();
    expected.sort();
    assert_eq!(deleted, expected, "every session of the user, returned");
    for key_id in &user {
        assert!(store.load(key_id).await.unwrap().is_none());
    }
    assert!(
        store.load(&other).await.unwrap().is_some(),
        "another user's session stays"
    );
    assert!(store.delete_by_alias("user-del").await.unwrap().is_empty());
    store.delete(&other).await.unwrap();
}

async fn list_by_alias_pages(store: &impl SessionStore) {
    let mut expected: Vec<KeyId> = (0..7).map(|n| id(&format!("alias-{n}"))).collect();
    for key_id in &expected {
        store
            .create(
                SessionRecord::default()
                    .with_key_id(key_id.clone())
                    .with_alias("pager"),
            )
            .await
            .unwrap();
    }
    store
        .create(
            SessionRecord::default()
                .with_key_id(id("alias-other"))
                .with_alias("pager-2"),
        )
        .await
        .unwrap();
    // One of them deleted, one moved to another alias: neither is listed.
    store.delete(&expected.remove(3)).await.unwrap().unwrap();
    let moved = expected.remove(0);
    let mut session = store.load(&moved).await.unwrap().unwrap();
    session.alias = "pager-3".into();
    store.replace(session).await.unwrap();
    expected.sort();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let page = store
            .list_by_alias("pager", cursor.as_deref(), 2)
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        assert!(page.items.iter().all(|s| s.alias == "pager"));
        seen.extend(page.items.into_iter().map(|s| s.key_id));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(cursor, None, "paging did not end");
    assert_eq!(seen, expected);

    let all = store.list_by_alias("pager", None, 100).await.unwrap();
    assert_eq!(all.items.len(), 5);
    assert_eq!(all.next, None);
    let exact = store.list_by_alias("pager", None, 5).await.unwrap();
    assert_eq!((exact.items.len(), exact.next), (5, None));
    assert!(
        store
            .list_by_alias("nobody", None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

async fn list_keys_pages(store: &impl SessionStore) {
    let mut expected = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let page = store.list_keys(cursor.as_deref(), 3).await.unwrap();
        assert!(page.items.len() <= 3);
        expected.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(cursor, None, "paging did not end");
    let mut sorted = expected.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(expected, sorted, "listed in key-id order, each once");
    assert!(expected.contains(&id("load")));
    assert!(
        !expected.contains(&id("apply")),
        "a deleted session is not listed"
    );
    let whole = store.list_keys(None, 1000).await.unwrap();
    assert_eq!(whole.items, expected);
    assert_eq!(whole.next, None);
}

async fn concurrent_applies_all_survive<S: SessionStore>(store: Arc<S>) {
    const N: usize = 1000;
    store
        .create(SessionRecord::default().with_key_id(id("concurrent")))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..N {
        let store = store.clone();
        tasks.spawn(async move {
            let d = delta(|d| {
                d.set(format!("k{n}"), json!(n));
            });
            store.apply(&id("concurrent"), &d).await
        });
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    while let Some(result) = tokio::time::timeout_at(deadline.into(), tasks.join_next())
        .await
        .expect("1000 applies finish within 60 s")
    {
        assert!(result.unwrap().unwrap().is_some());
    }
    eprintln!("{N} concurrent applies took {:?}", started.elapsed());
    let session = store.load(&id("concurrent")).await.unwrap().unwrap();
    assert_eq!(session.meta_data.len(), N);
    assert_eq!(session.version, 1 + N as u64);
    for n in 0..N {
        assert_eq!(session.meta_data[&format!("k{n}")], json!(n));
    }
}

/// 1000 concurrent increments of one key (with a `Set` of another key in each delta) end at
/// exactly +1000: the store adds, it does not overwrite.
async fn increments_add_up_exactly<S: SessionStore>(store: Arc<S>) {
    const N: i64 = 1000;
    store
        .create(
            SessionRecord::default()
                .with_key_id(id("increments"))
                .metadata(json!({"n": 5})),
        )
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..N {
        let store = store.clone();
        tasks.spawn(async move {
            let d = delta(|d| {
                d.increment("n", 1).set(format!("k{}", n % 10), json!(n));
            });
            store.save_changes(&id("increments"), &d).await
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(result) = tokio::time::timeout_at(deadline.into(), tasks.join_next())
        .await
        .expect("1000 increments finish within 60 s")
    {
        assert!(result.unwrap().unwrap().is_some());
    }
    let session = store.load(&id("increments")).await.unwrap().unwrap();
    assert_eq!(
        session.meta_data["n"],
        json!(5 + N),
        "every increment counted"
    );
    assert_eq!(session.version, 1 + N as u64);
}

/// A missing key or a non-integer value becomes the increment; an overflow leaves the value;
/// negative increments subtract; large integers stay exact.
async fn increments_follow_the_integer_rules(store: &impl SessionStore) {
    let big = 9_007_199_254_740_993_i64; // 2^53 + 1: a double would round it
    store
        .create(
            SessionRecord::default()
                .with_key_id(id("increment-rules"))
                .metadata(json!({
                    "text": "x", "float": 1.5, "max": i64::MAX, "big": big, "neg": -3,
                    "huge": u64::MAX, "obj": {}
                })),
        )
        .await
        .unwrap();
    let d = delta(|d| {
        d.increment("missing", 7)
            .increment("text", 2)
            .increment("float", 1)
            .increment("max", 1)
            .increment("big", 1)
            .increment("neg", -4)
            .increment("huge", 1)
            .increment("obj", 1);
    });
    store
        .save_changes(&id("increment-rules"), &d)
        .await
        .unwrap()
        .expect("the session exists");
    let session = store.load(&id("increment-rules")).await.unwrap().unwrap();
    assert_eq!(
        serde_json::Value::Object(session.meta_data),
        json!({
            "missing": 7, "text": 2, "float": 1, "max": i64::MAX, "big": big + 1, "neg": -7,
            "huge": 1, "obj": 1
        })
    );
    // The same delta on a missing session creates nothing.
    assert_eq!(
        store.save_changes(&id("increment-none"), &d).await.unwrap(),
        None
    );
    assert_eq!(store.load(&id("increment-none")).await.unwrap(), None);
}

async fn expired_sessions_are_visible_inside_grace_only(store: &impl SessionStore) {
    let now = unix_now();
    // Expired a second ago: inside the grace period, loadable and reported expired.
    store
        .create(
            SessionRecord::default()
                .with_key_id(id("expired"))
                .with_expires(now - 1),
        )
        .await
        .unwrap();
    // Expired long ago: past the grace period already.
    store
        .create(
            SessionRecord::default()
                .with_key_id(id("long-expired"))
                .with_expires(now - 100),
        )
        .await
        .unwrap();
    let session = store.load(&id("expired")).await.unwrap().unwrap();
    assert!(session.is_expired());
    assert_eq!(store.load(&id("long-expired")).await.unwrap(), None);
    assert!(
        !store
            .list_keys(None, 1000)
            .await
            .unwrap()
            .items
            .contains(&id("long-expired"))
    );

    // Gone once the grace period is over (bounded wait).
    let gone_by = Instant::now() + GRACE + Duration::from_secs(3);
    loop {
        if store.load(&id("expired")).await.unwrap().is_none() {
            break;
        }
        assert!(
            Instant::now() < gone_by,
            "expired session still loadable after its grace period"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        unix_now() > now - 1 + i64::try_from(GRACE.as_secs()).unwrap(),
        "gone before the grace period ended"
    );
    assert_apply_is_a_no_op(store, &id("expired")).await;
}
