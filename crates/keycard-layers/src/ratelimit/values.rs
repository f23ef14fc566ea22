//! The decision of the rate-limit stage as context values, computed when read.

use std::time::Duration;

use keycard_core::ratelimit::Decision;

/// The rate-limit stage's decision on an admitted request (a request extension), read by
/// `$tyk_context.rate_limit_limit`, `rate_limit_remaining`, `rate_limit_reset` (when the
/// session has a rate), `quota_limit`, `quota_remaining` and `quota_reset` (when it has a quota;
/// `quota_reset` while a period runs). The values are rendered when a template or handler reads
/// them, so a request that reads none pays for none.
///
/// ```
/// # use keycard_layers::ratelimit::RateLimitValues;
/// # fn handler(values: Option<&RateLimitValues>) {
/// if let Some(values) = values {
///     let left = values.get("quota_remaining"); // Some("41"), or None without a quota
/// #   let _ = left;
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitValues {
    decision: Decision,
    /// Unix seconds when the decision was made.
    now: i64,
}

impl RateLimitValues {
    pub(super) fn new(decision: Decision, now: i64) -> Self {
        Self { decision, now }
    }

    /// The limiter's decision.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The context value `name`, if it is one of this stage's and the session has its limit.
    pub fn get(&self, name: &str) -> Option<String> {
        let rate = self.decision.rate.as_ref();
        let quota = self.decision.quota.as_ref();
        let value = match name {
            "rate_limit_limit" => rate?.limit,
            "rate_limit_remaining" => rate?.remaining,
            "rate_limit_reset" => return Some(reset_at(self.now, rate?.reset_after).to_string()),
            "quota_limit" => quota?.limit,
            "quota_remaining" => quota?.remaining,
            "quota_reset" => {
                return Some(reset_at(self.now, quota?.renews_after?).to_string());
            }
            _ => return None,
        };
        Some(value.to_string())
    }
}

/// Whole seconds, rounded up.
pub(super) fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Unix seconds `after` from `now`, rounded up.
pub(super) fn reset_at(now: i64, after: Duration) -> i64 {
    now.saturating_add(i64::try_from(whole_seconds(after)).unwrap_or(i64::MAX))
}
