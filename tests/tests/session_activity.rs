//! Session activity tracked by the load stage (`Keycard::track_activity`), over real HTTP: the
//! device and `last_interacted_at` recorded on first sight and at most once per interval after,
//! the idle timeout's refusal, and what the Auth0 sessions API shows of it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use keycard::Keycard;
use keycard::auth::Activity;
use keycard_core::key::{ApiKey, KeyId};
use keycard_core::session::{Device, SessionRecord, unix_now};
use keycard_core::store::{MemoryStore, SessionStore};
use keycard_tests::http::{Client, spawn};
use keycard_tests::stores::CountingStore;
use serde_json::{Value, json};

const KEY: &str = "activity-test-key-0001";
const ADMIN_TOKEN: &str = "activity-test-admin-token";

struct Stack {
    app: Client,
    admin: Client,
    store: CountingStore<MemoryStore>,
}

async fn start(activity: Activity) -> Stack {
    let store = CountingStore::new(MemoryStore::new());
    let keycard = Keycard::from_shared_store(Arc::new(store.clone())).track_activity(activity);
    let admin = keycard
        .admin_api()
        .admin_token(keycard::admin::AdminToken::new(
            "ops",
            ADMIN_TOKEN,
            ["read:sessions"],
        ))
        .build()
        .unwrap()
        .into_router();
    let app = keycard.wrap(Router::new().route("/", get(|| async { "ok" })));
    Stack {
        app: Client::new(spawn(app).await),
        admin: Client::new(spawn(admin).await),
        store,
    }
}

fn id() -> KeyId {
    KeyId::of(&ApiKey::new(KEY))
}

impl Stack {
    async fn seed(&self, record: SessionRecord) {
        self.store
            .create(record.with_key_id(id()).with_alias("alice"))
            .await
            .unwrap();
    }

    async fn call(&self, user_agent: &str) -> (StatusCode, Value) {
        let bearer = format!("Bearer {KEY}");
        let response = self
            .app
            .get(
                "/",
                &[("authorization", &bearer), ("user-agent", user_agent)],
            )
            .await;
        let body = if response.status == StatusCode::OK {
            Value::Null
        } else {
            response.json()
        };
        (response.status, body)
    }

    async fn stored(&self) -> SessionRecord {
        self.store.load(&id()).await.unwrap().unwrap()
    }

    async fn auth0_view(&self) -> Value {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let response = self
            .admin
            .get(
                &format!("/api/v2/sessions/{}", id().as_str()),
                &[("authorization", &bearer)],
            )
            .await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        response.json()
    }
}

/// Sleeps until the unix second changes `n` times (activity times are whole seconds).
async fn next_seconds(n: i64) {
    let start = unix_now();
    while unix_now() < start + n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn first_use_records_the_device_and_later_uses_write_once_per_interval() {
    let stack = start(Activity::new().interval(Duration::from_secs(1))).await;
    stack.seed(SessionRecord::new(Default::default())).await;
    assert_eq!(stack.stored().await.device, None);
    let writes = stack.store.writes();

    let before = unix_now();
    assert_eq!(stack.call("first-agent/1.0").await.0, StatusCode::OK);
    let session = stack.stored().await;
    assert_eq!(
        session.device,
        Some(Device::first("127.0.0.1", "first-agent/1.0"))
    );
    assert!(session.last_interacted_at >= before);
    assert_eq!(stack.store.writes(), writes + 1, "one activity write");

    // Within the interval: no write, whatever the user agent.
    let (loads, writes) = (stack.store.loads(), stack.store.writes());
    if unix_now() == session.last_interacted_at {
        assert_eq!(stack.call("second-agent/2.0").await.0, StatusCode::OK);
        assert_eq!(stack.store.writes(), writes, "no write within the interval");
        assert_eq!(
            stack.store.loads(),
            loads + 1,
            "one load, as without tracking"
        );
    }

    next_seconds(1).await;
    assert_eq!(stack.call("third-agent/3.0").await.0, StatusCode::OK);
    let later = stack.stored().await;
    let device = later.device.clone().unwrap();
    assert_eq!(device.initial_user_agent, "first-agent/1.0", "initial kept");
    assert_eq!(device.last_user_agent, "third-agent/3.0");
    assert_eq!(device.last_ip, "127.0.0.1");
    assert!(later.last_interacted_at > session.last_interacted_at);
    assert_eq!(stack.store.writes(), writes + 1);

    // The Auth0 view of it.
    let view = stack.auth0_view().await;
    assert_eq!(
        view["device"],
        json!({
            "initial_user_agent": "first-agent/1.0",
            "initial_ip": "127.0.0.1",
            "last_user_agent": "third-agent/3.0",
            "last_ip": "127.0.0.1",
        })
    );
    let at = view["last_interacted_at"].as_str().unwrap();
    assert!(at.ends_with(".000Z") && at.len() == 24, "{at}");
    assert_eq!(view["idle_expires_at"], Value::Null, "no idle timeout");
}

#[tokio::test]
async fn concurrent_requests_of_a_stale_session_write_once() {
    let stack = start(Activity::new()).await;
    stack.seed(SessionRecord::new(Default::default())).await;
    let writes = stack.store.writes();
    let calls = (0..16).map(|i| {
        let stack = &stack;
        async move { stack.call(&format!("agent/{i}")).await.0 }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(stack.store.writes(), writes + 1, "coalesced to one write");
    assert!(stack.stored().await.device.is_some());
}

#[tokio::test]
async fn an_idle_session_is_refused_as_an_expired_one() {
    let idle = Duration::from_secs(60);
    let stack = start(Activity::new().idle_timeout(idle)).await;
    let mut record = SessionRecord::new(Default::default());
    record.date_created = unix_now() - 120;
    record.last_interacted_at = unix_now() - 61;
    stack.seed(record).await;
    let last = stack.stored().await.last_interacted_at;
    // The Auth0 view says when it went idle: the last use plus the timeout.
    let view = stack.auth0_view().await;
    assert_eq!(view["idle_expires_at"], iso(last + 60));

    let (status, body) = stack.call("agent").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"error": "Key has expired, please renew"}));
    assert_eq!(
        stack.stored().await.last_interacted_at,
        last,
        "a refused request records nothing"
    );

    // Used within the timeout: admitted, and the use is recorded.
    let mut fresh = stack.stored().await;
    fresh.last_interacted_at = unix_now() - 59;
    fresh.version = 0;
    stack.store.replace(fresh).await.unwrap();
    assert_eq!(stack.call("agent").await.0, StatusCode::OK);
    assert!(stack.stored().await.last_interacted_at >= unix_now() - 1);
}

/// A session never used is idle from its creation.
#[tokio::test]
async fn a_never_used_session_idles_from_its_creation() {
    let stack = start(Activity::new().idle_timeout(Duration::from_secs(60))).await;
    let mut record = SessionRecord::new(Default::default());
    record.date_created = unix_now() - 61;
    stack.seed(record).await;
    let (status, body) = stack.call("agent").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, json!({"error": "Key has expired, please renew"}));
    assert_eq!(stack.stored().await.device, None);
}

#[tokio::test]
async fn without_tracking_nothing_is_written_or_refused() {
    let store = CountingStore::new(MemoryStore::new());
    let app = Keycard::from_shared_store(Arc::new(store.clone()))
        .wrap(Router::new().route("/", get(|| async { "ok" })));
    let app = Client::new(spawn(app).await);
    let mut record = SessionRecord::new(Default::default()).with_key_id(id());
    record.last_interacted_at = 1; // long idle, but no idle timeout
    store.create(record).await.unwrap();
    let writes = store.writes();
    let bearer = format!("Bearer {KEY}");
    let response = app.get("/", &[("authorization", &bearer)]).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(store.writes(), writes);
    assert_eq!(store.load(&id()).await.unwrap().unwrap().device, None);
}

/// `unix` as Auth0's `YYYY-MM-DDTHH:MM:SS.000Z`.
fn iso(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (y, m, d) = keycard_core::civil::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
