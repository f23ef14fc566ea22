//! Session activity: when a session was last used and from which client (Auth0's
//! `last_interacted_at` and `device`), and the idle timeout that ends unused sessions.
//!
//! The cost model: the session-load stage already has the loaded record and the current time
//! (for the expiry check), so deciding that a request needs no write is one integer comparison
//! (`now - last_interacted_at < interval`): no lock, no allocation, no store call. Only a request
//! that finds the record older than the interval takes the lock of [`Tracker::recent`] (so
//! concurrent requests of one session, or a cache that still serves the old record, do not all
//! write), and only the one that claims the slot builds the IP and user-agent strings and writes
//! the record: at most one store write per session per interval per process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keycard_core::key::KeyId;
use keycard_core::session::{Device, SessionRecord};
use keycard_core::store::{SessionStore, StoreError};

/// How the session-load stage tracks activity ([`SessionLoadLayer::track_activity`]).
///
/// [`SessionLoadLayer::track_activity`]: super::SessionLoadLayer::track_activity
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Activity {
    interval: Duration,
    idle_timeout: Option<Duration>,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// The default interval between two activity writes of one session.
pub const DEFAULT_ACTIVITY_INTERVAL: Duration = Duration::from_secs(60);

/// The longest user agent kept (longer ones are cut at a character boundary).
const MAX_USER_AGENT: usize = 512;

impl Activity {
    /// Tracking with the default interval ([`DEFAULT_ACTIVITY_INTERVAL`]) and no idle timeout.
    pub fn new() -> Self {
        Self {
            interval: DEFAULT_ACTIVITY_INTERVAL,
            idle_timeout: None,
        }
    }

    /// At most one activity write per session per `interval` (whole seconds; at least one).
    /// `last_interacted_at` and the device's `last_*` lag the real last use by up to this.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Refuse a session unused for longer than `timeout` (whole seconds), as an expired one is
    /// refused (401 `Key has expired, please renew`). Measured from the last tracked use, or
    /// from creation for a session never used. The interval is shortened to half the timeout
    /// when it is longer, so a session in use is never seen as idle.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// The idle timeout, when one is set.
    pub fn idle_timeout_value(&self) -> Option<Duration> {
        self.idle_timeout
    }
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1)
}

/// The tracking state of one layer (shared by its clones).
pub(super) struct Tracker {
    /// As configured.
    pub(super) activity: Activity,
    /// Seconds between two writes of one session.
    interval: i64,
    /// Seconds of disuse after which a session is refused.
    idle_timeout: Option<i64>,
    /// Sessions this process wrote (or is writing) activity for, and when: a loaded record that
    /// is stale but listed here within the interval is not written again.
    recent: Mutex<HashMap<KeyId, i64>>,
}

/// The table of [`Tracker::recent`] is pruned of entries older than the interval when it
/// grows past this.
const RECENT_PRUNE_AT: usize = 4096;

impl Tracker {
    pub(super) fn new(activity: Activity) -> Self {
        let idle_timeout = activity.idle_timeout.map(seconds);
        let mut interval = seconds(activity.interval);
        if let Some(idle) = idle_timeout {
            interval = interval.min((idle / 2).max(1));
        }
        Self {
            activity,
            interval,
            idle_timeout,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `record` has been unused past the idle timeout at `now`.
    pub(super) fn is_idle(&self, record: &SessionRecord, now: i64) -> bool {
        self.idle_timeout
            .and_then(|timeout| record.idle_expires_at(timeout))
            .is_some_and(|at| at < now)
    }

    /// Whether this request should write the session's activity: the record is older than the
    /// interval and no other request of this process claimed the write within it. Claims it.
    pub(super) fn claim(&self, key_id: &KeyId, record: &SessionRecord, now: i64) -> bool {
        // The hot path: a record written within the interval needs nothing more.
        if now.saturating_sub(record.last_interacted_at) < self.interval {
            return false;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = recent.get(key_id)
            && now.saturating_sub(*at) < self.interval
        {
            return false;
        }
        if recent.len() >= RECENT_PRUNE_AT {
            let interval = self.interval;
            recent.retain(|_, at| now.saturating_sub(*at) < interval);
        }
        recent.insert(key_id.clone(), now);
        true
    }

    /// Writes `now`, `ip` and `user_agent` as the session's last activity (and as its initial
    /// device on first sight). Best effort: a session deleted meanwhile is left alone, a
    /// concurrent change is retried once on the fresh record, a failing store is logged and the
    /// request goes on.
    pub(super) async fn touch(
        self: Arc<Self>,
        store: Arc<dyn SessionStore>,
        key_id: KeyId,
        ip: Option<IpAddr>,
        user_agent: String,
        now: i64,
    ) {
        let ip = ip.map(|ip| ip.to_string()).unwrap_or_default();
        for _ in 0..2 {
            let mut record = match store.load(&key_id).await {
                Ok(Some(record)) => record,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(key = key_id.short(), %error, "keycard: cannot record session activity");
                    return;
                }
            };
            if now.saturating_sub(record.last_interacted_at) < self.interval {
                return; // Another process wrote it meanwhile.
            }
            record.key_id = key_id.clone();
            record.last_interacted_at = now;
            match &mut record.device {
                Some(device) => device.seen(ip.clone(), user_agent.clone()),
                None => record.device = Some(Device::first(ip.clone(), user_agent.clone())),
            }
            match store.replace(record).await {
                Ok(_) | Err(StoreError::NotFound) => return,
                Err(StoreError::Conflict { .. }) => {}
                Err(error) => {
                    tracing::warn!(key = key_id.short(), %error, "keycard: cannot record session activity");
                    return;
                }
            }
        }
    }
}

/// The request's `User-Agent`, at most [`MAX_USER_AGENT`] bytes; empty when absent.
pub(super) fn user_agent(headers: &http::HeaderMap) -> String {
    let Some(value) = headers.get(http::header::USER_AGENT) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let mut end = text.len().min(MAX_USER_AGENT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keycard_core::key::ApiKey;

    fn record(last: i64) -> SessionRecord {
        let mut record = SessionRecord::new(keycard_core::metadata::Metadata::new());
        record.last_interacted_at = last;
        record
    }

    fn recent(tracker: &Tracker) -> usize {
        tracker.recent.lock().unwrap().len()
    }

    #[test]
    fn a_fresh_record_is_decided_without_the_table() {
        let tracker = Tracker::new(Activity::new());
        let id = KeyId::of(&ApiKey::new("k"));
        assert!(!tracker.claim(&id, &record(1_000), 1_059));
        assert_eq!(recent(&tracker), 0, "the hot path never takes the lock");
    }

    #[test]
    fn a_stale_record_is_claimed_once_per_interval() {
        let tracker = Tracker::new(Activity::new().interval(Duration::from_secs(10)));
        let (a, b) = (KeyId::of(&ApiKey::new("a")), KeyId::of(&ApiKey::new("b")));
        // First sight (never interacted) and a stale record alike.
        assert!(tracker.claim(&a, &record(0), 1_000));
        assert!(
            !tracker.claim(&a, &record(0), 1_009),
            "claimed within the interval"
        );
        assert!(tracker.claim(&b, &record(0), 1_009), "per session");
        assert!(tracker.claim(&a, &record(0), 1_010), "the next interval");
    }

    #[test]
    fn the_table_is_pruned_of_old_claims() {
        let tracker = Tracker::new(Activity::new().interval(Duration::from_secs(10)));
        for i in 0..RECENT_PRUNE_AT {
            assert!(tracker.claim(&KeyId::of(&ApiKey::new(format!("k{i}"))), &record(0), 1_000));
        }
        assert!(tracker.claim(&KeyId::of(&ApiKey::new("late")), &record(0), 1_100));
        assert_eq!(recent(&tracker), 1);
    }

    #[test]
    fn idleness_counts_from_the_last_use_or_creation() {
        let tracker = Tracker::new(
            Activity::new()
                .interval(Duration::from_secs(600))
                .idle_timeout(Duration::from_secs(60)),
        );
        assert_eq!(tracker.interval, 30, "at most half the idle timeout");
        assert!(!tracker.is_idle(&record(1_000), 1_060));
        assert!(tracker.is_idle(&record(1_000), 1_061));
        let mut created = record(0);
        created.date_created = 2_000;
        assert!(!tracker.is_idle(&created, 2_060));
        assert!(tracker.is_idle(&created, 2_061));
        assert!(!tracker.is_idle(&record(0), i64::MAX), "no time known");
        let untimed = Tracker::new(Activity::new());
        assert!(!untimed.is_idle(&record(1), i64::MAX));
    }

    #[test]
    fn user_agents_are_cut_at_a_character_boundary() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(user_agent(&headers), "");
        let long = format!("a{}", "é".repeat(600));
        headers.insert(http::header::USER_AGENT, long.parse().unwrap());
        let cut = user_agent(&headers);
        assert!(cut.len() <= MAX_USER_AGENT && long.starts_with(&cut));
        assert_eq!(cut.len(), MAX_USER_AGENT - 1);
    }
}
